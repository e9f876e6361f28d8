/* lws-echo.c — the benchmark's naive libwebsockets peer (run by bench/run.sh).
 *
 * A minimal echo + broadcast server written the way the libwebsockets minimal
 * examples write one: every message is copied into a buffer of its own, queued on the
 * connection, and sent with one lws_write() per writable callback.  A message whose
 * first byte is '!' goes to every connection that connected with "sub" in its query
 * (wsload --broadcast subscribers) instead of back to the sender; a broadcast buffer is
 * shared by the subscribers' queues (reference-counted).  Default poll loop, no
 * extensions, default buffer sizes: the pattern users start from, not a tuned server.
 *
 *   lws-echo PORT [ping]   listen on 127.0.0.1:PORT, any path; SIGTERM/SIGINT stop it
 *
 * With "ping", heartbeats through lws's validity policy: a ping after 5 s without
 * traffic, hang-up after 15 s.  Off by default because lws 4.1.6 re-inserts a
 * connection's validity timer into a sorted list (O(connections)) on valid traffic:
 * with 10,000 subscribers one broadcast then takes about a second.  bench/run.sh turns
 * it on for the idle workload, which measures memory with heartbeats on.
 */
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    MAX_SUBS = 20000,       /* a process holds < 20,000 sockets here */
    MAX_QUEUE = 4096,       /* messages waiting on one connection; more are dropped */
    MAX_MESSAGE = 16 << 20, /* a bigger message closes the connection */
};

/* One message to send; LWS_PRE bytes of room before the payload for lws's header. */
struct msg {
    int refs;
    int binary;
    size_t len;
    unsigned char buf[]; /* LWS_PRE + len */
};

struct qnode {
    struct qnode *next;
    struct msg *m;
};

/* Per connection (lws allocates and zeroes it). */
struct pss {
    struct lws *wsi;
    struct qnode *head, *tail;
    int qlen;
    int sub_idx;       /* index in subs[], -1 when not a subscriber */
    unsigned char *rx; /* a message arriving in pieces */
    size_t rxlen, rxcap;
};

static struct pss *subs[MAX_SUBS];
static int nsubs;
static unsigned long long drops;
static volatile sig_atomic_t stopping;
static struct lws_context *context;

static struct msg *msg_new(const void *data, size_t len, int binary)
{
    struct msg *m = malloc(sizeof(*m) + LWS_PRE + len);
    if (!m)
        return NULL;
    m->refs = 1;
    m->binary = binary;
    m->len = len;
    memcpy(m->buf + LWS_PRE, data, len);
    return m;
}

static void msg_unref(struct msg *m)
{
    if (--m->refs == 0)
        free(m);
}

static void enqueue(struct pss *p, struct msg *m)
{
    struct qnode *n = p->qlen < MAX_QUEUE ? malloc(sizeof(*n)) : NULL;
    if (!n) {
        drops++;
        return;
    }
    n->next = NULL;
    n->m = m;
    m->refs++;
    if (p->tail)
        p->tail->next = n;
    else
        p->head = n;
    p->tail = n;
    p->qlen++;
    lws_callback_on_writable(p->wsi);
}

static void dequeue(struct pss *p)
{
    struct qnode *n = p->head;
    p->head = n->next;
    if (!p->head)
        p->tail = NULL;
    p->qlen--;
    msg_unref(n->m);
    free(n);
}

/* A whole message from p: broadcast when it starts with '!', else echo. */
static int deliver(struct pss *p, const void *data, size_t len, int binary)
{
    struct msg *m = msg_new(data, len, binary);
    if (!m)
        return -1;
    if (len > 0 && ((const unsigned char *)data)[0] == '!') {
        for (int i = 0; i < nsubs; i++)
            enqueue(subs[i], m);
    } else {
        enqueue(p, m);
    }
    msg_unref(m);
    return 0;
}

/* A piece of a message: whole messages go straight out, pieces are collected. */
static int on_receive(struct lws *wsi, struct pss *p, const void *in, size_t len)
{
    int final = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
    int binary = lws_frame_is_binary(wsi);
    if (final && p->rxlen == 0)
        return deliver(p, in, len, binary);
    if (p->rxlen + len > MAX_MESSAGE)
        return -1;
    if (p->rxlen + len > p->rxcap) {
        size_t cap = p->rxcap ? p->rxcap : 4096;
        while (cap < p->rxlen + len)
            cap *= 2;
        unsigned char *rx = realloc(p->rx, cap);
        if (!rx)
            return -1;
        p->rx = rx;
        p->rxcap = cap;
    }
    memcpy(p->rx + p->rxlen, in, len);
    p->rxlen += len;
    if (!final)
        return 0;
    size_t total = p->rxlen;
    p->rxlen = 0;
    return deliver(p, p->rx, total, binary);
}

static void on_established(struct lws *wsi, struct pss *p)
{
    char args[128];
    p->wsi = wsi;
    p->sub_idx = -1;
    if (lws_hdr_copy(wsi, args, sizeof(args), WSI_TOKEN_HTTP_URI_ARGS) > 0 && strstr(args, "sub") &&
        nsubs < MAX_SUBS) {
        p->sub_idx = nsubs;
        subs[nsubs++] = p;
    }
}

static void on_closed(struct pss *p)
{
    while (p->head)
        dequeue(p);
    if (p->sub_idx >= 0) { /* swap the last subscriber into the hole */
        subs[p->sub_idx] = subs[--nsubs];
        subs[p->sub_idx]->sub_idx = p->sub_idx;
    }
    free(p->rx);
}

static int on_writeable(struct lws *wsi, struct pss *p)
{
    if (!p->head)
        return 0;
    struct msg *m = p->head->m;
    int n = lws_write(wsi, m->buf + LWS_PRE, m->len, m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
    if (n < (int)m->len)
        return -1;
    dequeue(p);
    if (p->head)
        lws_callback_on_writable(wsi);
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct pss *p = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        on_established(wsi, p);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return on_receive(wsi, p, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return on_writeable(wsi, p);
    case LWS_CALLBACK_CLOSED:
        on_closed(p);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
    if (context)
        lws_cancel_service(context);
}

int main(int argc, char **argv)
{
    static const struct lws_protocols protocols[] = {
        {"bench", callback, sizeof(struct pss), 0, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };
    static const lws_retry_bo_t retry = {.secs_since_valid_ping = 5, .secs_since_valid_hangup = 15};
    int ping = argc == 3 && strcmp(argv[2], "ping") == 0;
    if (argc < 2 || argc > 2 + ping || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535) {
        fprintf(stderr, "usage: lws-echo PORT [ping]\n");
        return 2;
    }
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = atoi(argv[1]);
    info.iface = "127.0.0.1";
    info.protocols = protocols;
    if (ping)
        info.retry_and_idle_policy = &retry;
    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    context = lws_create_context(&info);
    if (!context) {
        fprintf(stderr, "lws-echo: cannot listen on 127.0.0.1:%s\n", argv[1]);
        return 1;
    }
    while (!stopping && lws_service(context, 0) >= 0)
        ;
    lws_context_destroy(context);
    if (drops)
        fprintf(stderr, "lws-echo: %llu messages dropped (queue full)\n", drops);
    return 0;
}
