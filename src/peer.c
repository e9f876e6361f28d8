/* peer.c — the links between the worker processes of one gateway (peer.h).
 *
 * A message on a link is a frame: a 32-bit length, then a type byte and
 * the type's fields in host order (both ends are the same binary on the
 * same machine).  The first frame on every link is a hello naming the
 * sender; the receiver takes the sender's process id from the socket
 * (SO_PEERCRED), so that a directory entry is tied to one incarnation of a
 * worker and what a dead one said never outlives it. */
#include "peer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "admin_fanout.h"
#include "cluster.h"
#include "conn.h"
#include "log.h"
#include "pubsub.h"
#include "server.h"
#include "wire.h"
#include "workers.h"

enum {
    PEER_HELLO = 1,   /* u32 worker */
    PEER_SEND_ID,     /* u8 opcode, u64 id, payload */
    PEER_SEND_NAME,   /* u8 opcode, u16 len, name, payload */
    PEER_PUBLISH,     /* u8 opcode, u16 len, topic, payload */
    PEER_BROADCAST,   /* u8 opcode, u64 except, payload */
    PEER_CLAIM,       /* u64 id, i64 stamp, u16 len, name */
    PEER_UNCLAIM,     /* u64 id, u16 len, name */
    PEER_INTEREST,    /* u8 on, u16 len, topic */
    PEER_CLUSTER,     /* cluster.c's, from this node's speaker: opaque */
    PEER_ADMIN_QUERY, /* u8 action, u8 has_arg, u32 req, u32 limit, i32 code, i64 expires,
                         u16 len, arg, reason */
    PEER_ADMIN_REPLY, /* u32 req, part (admin_merge.h) */
};

/* Names and topics are sent with a 16-bit length; longer ones stay local. */
#define PEER_NAME_MAX 65535u
/* A frame longer than this is garbage: the link is dropped. */
#define PEER_FRAME_MAX (1u << 30)
/* Claims, interest and hellos are kept up to this much (data up to
 * PEER_QUEUE_MAX): the directory matters more than one message. */
#define PEER_CONTROL_MAX (64u << 20)
/* A queue this long is written at once, not at the end of the turn. */
#define PEER_FLUSH_NOW (256u << 10)
#define PEER_RETRY_MS 100
/* Reads per readable link per loop turn, so one busy link cannot starve
 * the clients. */
#define PEER_READS 16

typedef struct peer_out { /* our link to one worker */
    int fd;               /* -1: not connected */
    unsigned char *buf;   /* frames, unsent from head to len */
    size_t head, len, cap;
    size_t mark;      /* where the first frame at or after head begins */
    int64_t retry_ms; /* no connect before this, after one failed */
    int queued;       /* on the flush list */
    int32_t pid;      /* the process at the other end */
} peer_out;

typedef struct peer_in { /* a link from another worker */
    struct lws *wsi;
    int fd;
    uint32_t worker; /* from its hello; 0 before */
    int32_t pid;     /* of the process at the other end */
    int gone;        /* read EOF or garbage: lws is closing it */
    unsigned char *buf;
    size_t len, cap;
    struct peer_in *next;
} peer_in;

typedef struct peer_name { /* another worker's client holds a name */
    uint32_t worker;
    int32_t pid;
    uint64_t id;
    int64_t stamp;
} peer_name;

struct mg_peers {
    int lfd;
    struct lws *lwsi;
    peer_in *ins;
    peer_out out[CONFIG_MAX_WORKERS + 1];
    int32_t pid_of[CONFIG_MAX_WORKERS + 1]; /* whose directory entries are held */
    uint32_t flush[CONFIG_MAX_WORKERS];     /* links with bytes to write */
    uint32_t nflush;
    dict names;    /* other workers' names -> peer_name */
    dict interest; /* topic -> uint64_t mask: bit k - 1 for worker k */
    lws_sorted_usec_list_t retry;
};

static socklen_t peer_addr(const mg_gw *gw, uint32_t k, struct sockaddr_un *a)
{
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    /* Abstract (sun_path[0] == 0): nothing on disk to clean up after a
     * crash.  Who may connect is checked on accept (peer_accept). */
    int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "moongate.%016llx.%u",
                     (unsigned long long)gw->shared->key, k);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* ---- outgoing links ---- */

static void peer_out_reset(mg_gw *gw, uint32_t k, const char *why);

/* Frames from mark to len (a frame partly written at head counts). */
static uint64_t peer_out_frames(const peer_out *o)
{
    uint64_t n = o->head < o->mark ? 1 : 0;
    for (size_t at = o->mark; at + 4 <= o->len;) {
        uint32_t fl;
        memcpy(&fl, o->buf + at, 4);
        at += 4 + (size_t)fl;
        n++;
    }
    return n;
}

static void peer_out_reset(mg_gw *gw, uint32_t k, const char *why)
{
    peer_out *o = &gw->peers->out[k];
    if (o->fd < 0)
        return;
    admin_fanout_on_gone(gw, k); /* an admin query to it may be among the lost */
    uint64_t lost = peer_out_frames(o);
    gw->metrics->peer_dropped += lost;
    if (why)
        log_warn("worker %u: link to worker %u lost (%s), %llu message(s) dropped", gw->worker, k,
                 why, (unsigned long long)lost);
    close(o->fd);
    o->fd = -1;
    o->head = o->len = o->mark = 0;
}

static int peer_room(peer_out *o, size_t n)
{
    if (o->head && o->head == o->len)
        o->head = o->len = o->mark = 0;
    if (o->len + n <= o->cap)
        return 0;
    if (o->head) { /* slide the unsent part down first */
        memmove(o->buf, o->buf + o->head, o->len - o->head);
        o->len -= o->head;
        o->mark -= o->head;
        o->head = 0;
        if (o->len + n <= o->cap)
            return 0;
    }
    size_t cap = o->cap ? o->cap : 64 << 10;
    while (cap < o->len + n)
        cap *= 2;
    unsigned char *b = realloc(o->buf, cap);
    if (!b)
        return -1;
    o->buf = b;
    o->cap = cap;
    return 0;
}

/* Append one frame to link k's queue; no checks. */
static int peer_append(peer_out *o, const wire_msg *m)
{
    size_t body = wire_len(m);
    if (peer_room(o, 4 + body) != 0)
        return -1;
    uint32_t fl = (uint32_t)body;
    memcpy(o->buf + o->len, &fl, 4);
    wire_write(o->buf + o->len + 4, m);
    o->len += 4 + body;
    return 0;
}

/* Connected to worker k, or -1 (it is not up: the caller drops). */
static int peer_connect(mg_gw *gw, uint32_t k)
{
    peer_out *o = &gw->peers->out[k];
    if (o->fd >= 0)
        return 0;
    int64_t now = gw_clock_ms();
    if (now < o->retry_ms)
        return -1;
    struct sockaddr_un a;
    socklen_t al = peer_addr(gw, k, &a);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, al) != 0) {
        if (fd >= 0)
            close(fd);
        o->retry_ms = now + PEER_RETRY_MS;
        return -1;
    }
    int sz = 4 << 20; /* the kernel caps it at wmem_max */
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    struct ucred cr = {0};
    socklen_t cl = sizeof(cr);
    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl);
    o->pid = cr.pid;
    o->fd = fd;
    o->head = o->len = o->mark = 0;
    struct {
        uint8_t type;
        uint32_t worker;
    } __attribute__((packed)) h = {PEER_HELLO, gw->worker};
    wire_msg m = {.head = &h, .head_len = sizeof(h)};
    if (peer_append(o, &m) != 0) {
        peer_out_reset(gw, k, "out of memory");
        return -1;
    }
    return 0;
}

/* Write what the socket takes of link k's queue. */
static void peer_write(mg_gw *gw, uint32_t k)
{
    peer_out *o = &gw->peers->out[k];
    while (o->fd >= 0 && o->head < o->len) {
        ssize_t n = send(o->fd, o->buf + o->head, o->len - o->head, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            o->head += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        peer_out_reset(gw, k, n < 0 ? strerror(errno) : "closed");
        return;
    }
    while (o->mark < o->head) { /* keep mark on a frame boundary */
        uint32_t fl;
        memcpy(&fl, o->buf + o->mark, 4);
        o->mark += 4 + (size_t)fl;
    }
    if (o->head == o->len) {
        o->head = o->len = o->mark = 0;
        if (o->cap > (4u << 20)) { /* a burst is over: give its memory back */
            free(o->buf);
            o->buf = NULL;
            o->cap = 0;
        }
    }
}

static void peer_want_flush(mg_peers *p, uint32_t k)
{
    if (!p->out[k].queued) {
        p->out[k].queued = 1;
        p->flush[p->nflush++] = k;
    }
}

/* Queue a frame for worker k: data frames are dropped (and counted) past
 * PEER_QUEUE_MAX, or when k is not up.  0 queued, -1 dropped. */
static int peer_put(mg_gw *gw, uint32_t k, const wire_msg *m, int control)
{
    mg_peers *p = gw->peers;
    peer_out *o = &p->out[k];
    size_t bound = control ? PEER_CONTROL_MAX : PEER_QUEUE_MAX;
    if (peer_connect(gw, k) != 0 || (o->len - o->head) + 4 + wire_len(m) > bound ||
        peer_append(o, m) != 0) {
        gw->metrics->peer_dropped++;
        return -1;
    }
    gw->metrics->peer_sent++;
    peer_want_flush(p, k);
    if (o->len - o->head >= PEER_FLUSH_NOW)
        peer_write(gw, k);
    return 0;
}

/* The same frame to every other worker whose bit is in mask. */
static void peer_put_all(mg_gw *gw, uint64_t mask, const wire_msg *m, int control)
{
    for (uint32_t k = 1; k <= gw->nworkers; k++)
        if (k != gw->worker && (mask >> (k - 1) & 1))
            peer_put(gw, k, m, control);
}

static void peer_retry_due(lws_sorted_usec_list_t *sul)
{
    (void)sul; /* the loop turn this ends runs peers_flush */
}

void peers_flush(mg_gw *gw)
{
    mg_peers *p = gw->peers;
    if (!p || !p->nflush)
        return;
    uint32_t n = p->nflush, left = 0;
    p->nflush = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = p->flush[i];
        p->out[k].queued = 0;
        peer_write(gw, k);
        if (p->out[k].fd >= 0 && p->out[k].head < p->out[k].len) {
            peer_want_flush(p, k);
            left++;
        }
    }
    /* The kernel took part of a queue: come back in a millisecond. */
    if (left && lws_dll2_is_detached(&p->retry.list))
        lws_sul_schedule(gw->lws, 0, &p->retry, peer_retry_due, 1000);
}

/* ---- outgoing messages ---- */

#define PEER_ALL (~(uint64_t)0)

int peers_send_id(mg_gw *gw, uint64_t id, int opcode, const void *data, size_t len)
{
    uint32_t k = workers_owner(gw, id);
    if (!gw->peers || k == gw->worker ||
        (gw->node_id && id % (CONFIG_MAX_NODE_ID + 1) != gw->node_id))
        return 0; /* ours, or another node's (cluster.c) */
    struct {
        uint8_t type, op;
        uint64_t id;
    } __attribute__((packed)) h = {PEER_SEND_ID, (uint8_t)opcode, id};
    wire_msg m = {.head = &h, .head_len = sizeof(h), .data = data, .data_len = len};
    peer_put(gw, k, &m, 0);
    return 1;
}

int peers_send_name(mg_gw *gw, const char *name, int opcode, const void *data, size_t len)
{
    mg_peers *p = gw->peers;
    size_t nl = strlen(name);
    peer_name *pn = p ? dict_get(&p->names, name, nl) : NULL;
    if (!pn)
        return 0;
    wire_op h = {PEER_SEND_NAME, (uint8_t)opcode};
    wire_msg m = {&h, sizeof(h), name, nl, data, len};
    peer_put(gw, pn->worker, &m, 0);
    return 1;
}

void peers_publish(mg_gw *gw, const char *topic, int opcode, const void *data, size_t len)
{
    mg_peers *p = gw->peers;
    size_t tl = strlen(topic);
    uint64_t *mask = p ? dict_get(&p->interest, topic, tl) : NULL;
    if (!mask || !*mask)
        return;
    wire_op h = {PEER_PUBLISH, (uint8_t)opcode};
    wire_msg m = {&h, sizeof(h), topic, tl, data, len};
    peer_put_all(gw, *mask, &m, 0);
}

void peers_broadcast(mg_gw *gw, int opcode, const void *data, size_t len, uint64_t except_id)
{
    if (!gw->peers)
        return;
    struct {
        uint8_t type, op;
        uint64_t except;
    } __attribute__((packed)) h = {PEER_BROADCAST, (uint8_t)opcode, except_id};
    wire_msg m = {.head = &h, .head_len = sizeof(h), .data = data, .data_len = len};
    peer_put_all(gw, PEER_ALL, &m, 0);
}

void peers_relay(mg_gw *gw, uint32_t k, const char *member, const void *frame, size_t len)
{
    if (!gw->peers)
        return;
    uint8_t type = PEER_CLUSTER;
    wire_msg m = {&type, 1, member, strlen(member), frame, len};
    peer_put_all(gw, k ? (uint64_t)1 << (k - 1) : PEER_ALL, &m, 1);
}

int peers_has_name(mg_gw *gw, const char *name)
{
    return gw->peers && dict_get(&gw->peers->names, name, strlen(name)) != NULL;
}

void peers_each_name(mg_gw *gw, peers_name_fn fn, void *arg)
{
    dict_entry *e;
    for (size_t i = 0; gw->peers && (e = dict_next(&gw->peers->names, &i));) {
        const peer_name *pn = e->val;
        fn(arg, e->key, pn->worker, pn->id, pn->stamp);
    }
}

/* ---- names ---- */

static void peer_tell_claim(mg_gw *gw, uint64_t mask, const char *name, size_t nl, uint64_t id,
                            int64_t stamp)
{
    wire_claim h = {PEER_CLAIM, id, stamp};
    wire_msg m = {.head = &h, .head_len = sizeof(h), .str = name, .str_len = nl};
    peer_put_all(gw, mask, &m, 1);
}

int peers_name_free(mg_gw *gw, const char *name)
{
    mg_peers *p = gw->peers;
    if (!p || gw->cfg->duplicate_names != MG_DUP_REJECT)
        return 0;
    return dict_get(&p->names, name, strlen(name)) ? -1 : 0;
}

void peers_claim(mg_gw *gw, const char *name, uint64_t id, int64_t stamp)
{
    mg_peers *p = gw->peers;
    size_t nl = strlen(name);
    if (!p || nl > PEER_NAME_MAX)
        return;
    /* Under replace, another worker's holder is now the loser: forget it
     * here (its worker closes it when this claim arrives). */
    if (gw->cfg->duplicate_names == MG_DUP_REPLACE)
        free(dict_del(&p->names, name, nl));
    peer_tell_claim(gw, PEER_ALL, name, nl, id, stamp);
}

void peers_unclaim(mg_gw *gw, const char *name, uint64_t id)
{
    size_t nl = strlen(name);
    if (!gw->peers || nl > PEER_NAME_MAX)
        return;
    wire_unclaim h = {PEER_UNCLAIM, id};
    wire_msg m = {.head = &h, .head_len = sizeof(h), .str = name, .str_len = nl};
    peer_put_all(gw, PEER_ALL, &m, 1);
}

/* Worker k's client id claimed name at stamp. */
void peers_name_lost(mg_gw *gw, const char *name, uint64_t id, int64_t stamp)
{
    mg_peers *p = gw->peers;
    size_t nl = strlen(name);
    peer_name *pn = p ? dict_get(&p->names, name, nl) : NULL;
    if (pn && conn_claim_wins(gw, stamp, id, pn->stamp, pn->id))
        free(dict_del(&p->names, name, nl));
}

static void peer_on_claim(mg_gw *gw, uint32_t k, int32_t pid, const char *name, uint64_t id,
                          int64_t stamp)
{
    mg_peers *p = gw->peers;
    size_t nl = strlen(name);
    if (!conn_claim_contest(gw, name, id, stamp))
        return;
    peer_name *pn = dict_get(&p->names, name, nl);
    if (pn && pn->worker != k && !conn_claim_wins(gw, stamp, id, pn->stamp, pn->id))
        return;
    if (!pn) {
        int err;
        if (!(pn = malloc(sizeof(*pn))))
            return;
        dict_set(&p->names, name, nl, pn, &err);
        if (err) {
            free(pn);
            return;
        }
    }
    *pn = (peer_name){.worker = k, .pid = pid, .id = id, .stamp = stamp};
    cluster_name_lost(gw, name, id, stamp); /* another node's holder loses to it */
}

static void peer_on_unclaim(mg_gw *gw, uint32_t k, const char *name, uint64_t id)
{
    size_t nl = strlen(name);
    peer_name *pn = dict_get(&gw->peers->names, name, nl);
    if (pn && pn->worker == k && pn->id == id)
        free(dict_del(&gw->peers->names, name, nl));
}

/* ---- topics ---- */

static void peer_tell_interest(mg_gw *gw, uint64_t mask, const char *topic, size_t tl, int on)
{
    uint8_t h[2] = {PEER_INTEREST, (uint8_t)on};
    wire_msg m = {.head = h, .head_len = sizeof(h), .str = topic, .str_len = tl};
    peer_put_all(gw, mask, &m, 1);
}

void peers_interest(mg_gw *gw, const char *topic, int on)
{
    size_t tl = strlen(topic);
    if (gw->peers && tl <= PEER_NAME_MAX)
        peer_tell_interest(gw, PEER_ALL, topic, tl, on);
}

static void peer_on_interest(mg_gw *gw, uint32_t k, const char *topic, int on)
{
    mg_peers *p = gw->peers;
    size_t tl = strlen(topic);
    uint64_t bit = (uint64_t)1 << (k - 1);
    uint64_t *mask = dict_get(&p->interest, topic, tl);
    if (on && !mask) {
        int err;
        if (!(mask = calloc(1, sizeof(*mask))))
            return;
        dict_set(&p->interest, topic, tl, mask, &err);
        if (err) {
            free(mask);
            return;
        }
    }
    if (!mask)
        return;
    *mask = on ? *mask | bit : *mask & ~bit;
    if (!*mask)
        free(dict_del(&p->interest, topic, tl));
}

size_t peers_topics_total(mg_gw *gw)
{
    size_t n = gw->topics.count;
    dict_entry *e;
    for (size_t i = 0; gw->peers && (e = dict_next(&gw->peers->interest, &i));)
        n += dict_get(&gw->topics, e->key, e->klen) == NULL;
    return n;
}

/* ---- the admin API's queries ---- */

typedef struct __attribute__((packed)) peer_admin_head {
    uint8_t type, action, has_arg;
    uint32_t req, limit;
    int32_t code;
    int64_t expires_ms;
} peer_admin_head;

typedef struct __attribute__((packed)) peer_admin_reply_head {
    uint8_t type;
    uint32_t req;
} peer_admin_reply_head;

int peers_admin_ask(mg_gw *gw, uint32_t k, const peers_admin_query *q)
{
    if (!gw->peers || k < 1 || k > gw->nworkers || k == gw->worker || q->arg_len > PEER_NAME_MAX)
        return -1;
    peer_admin_head h = {.type = PEER_ADMIN_QUERY,
                         .action = q->action,
                         .has_arg = q->arg != NULL,
                         .req = q->req,
                         .limit = q->limit,
                         .code = q->code,
                         .expires_ms = q->expires_ms};
    const char *reason = q->reason ? q->reason : "";
    wire_msg m = {.head = &h,
                  .head_len = sizeof(h),
                  .str = q->arg ? q->arg : "",
                  .str_len = q->arg ? q->arg_len : 0,
                  .data = reason,
                  .data_len = strlen(reason)};
    /* Control: a query is small, and an answer is worth more than one
     * message of a flood. */
    return peer_put(gw, k, &m, 1);
}

void peers_admin_answer(mg_gw *gw, uint32_t k, uint32_t req, const void *part, size_t len)
{
    peer_admin_reply_head h = {PEER_ADMIN_REPLY, req};
    wire_msg m = {.head = &h, .head_len = sizeof(h), .data = part, .data_len = len};
    if (gw->peers && k >= 1 && k <= gw->nworkers && k != gw->worker)
        peer_put(gw, k, &m, 1);
}

/* Worker k asks: its query's fields from r, and this worker's part back. */
static void peer_on_admin_query(mg_gw *gw, uint32_t k, wire_rd *r)
{
    peer_admin_head h;
    char sb[256], *heap = NULL, reason[124];
    wire_take(r, &h, sizeof(h));
    char *arg = wire_take_str(r, sb, sizeof(sb), &heap);
    if (r->bad || !arg)
        return;
    /* The reason is the rest, at most 123 bytes (admin_body_parse). */
    size_t rl = (size_t)(r->end - r->p);
    rl = rl < sizeof(reason) - 1 ? rl : sizeof(reason) - 1;
    memcpy(reason, r->p, rl);
    reason[rl] = '\0';
    peers_admin_query q = {.req = h.req,
                           .action = h.action,
                           .limit = h.limit,
                           .code = h.code,
                           .arg = h.has_arg ? arg : NULL,
                           .arg_len = strlen(arg),
                           .reason = rl ? reason : NULL,
                           .expires_ms = h.expires_ms};
    admin_fanout_on_query(gw, k, &q);
    free(heap);
}

/* ---- a worker comes and goes ---- */

static int peer_names_of(const dict_entry *e, void *arg)
{
    return ((const peer_name *)e->val)->worker == *(const uint32_t *)arg;
}

static int peer_interest_of(const dict_entry *e, void *arg)
{
    uint64_t *mask = e->val;
    *mask &= ~((uint64_t)1 << (*(const uint32_t *)arg - 1));
    return *mask == 0;
}

/* Drop what worker k said about its names and topics. */
static void peer_forget(mg_gw *gw, uint32_t k)
{
    dict_del_if(&gw->peers->names, peer_names_of, &k);
    dict_del_if(&gw->peers->interest, peer_interest_of, &k);
}

/* Tell worker k every name our clients hold and every topic they
 * subscribe to (it has just said hello). */
static void peer_tell_state(mg_gw *gw, uint32_t k)
{
    uint64_t only = (uint64_t)1 << (k - 1);
    dict_entry *e;
    for (size_t i = 0; (e = dict_next(&gw->claims, &i));) {
        mg_conn *c = conn_find_name(gw, e->key);
        if (c && e->klen <= PEER_NAME_MAX)
            peer_tell_claim(gw, only, e->key, e->klen, c->id, *(int64_t *)e->val);
    }
    for (size_t i = 0; (e = dict_next(&gw->topics, &i));)
        if (e->klen <= PEER_NAME_MAX)
            peer_tell_interest(gw, only, e->key, e->klen, 1);
}

static void peer_on_hello(mg_gw *gw, peer_in *in, uint32_t k)
{
    mg_peers *p = gw->peers;
    in->worker = k;
    if (p->pid_of[k] != in->pid) {
        /* A new process in slot k: what the old one held is gone. */
        peer_forget(gw, k);
        p->pid_of[k] = in->pid;
    }
    if (p->out[k].fd >= 0 && p->out[k].pid != in->pid)
        peer_out_reset(gw, k, NULL); /* our link led to the old one */
    p->out[k].retry_ms = 0;
    peer_tell_state(gw, k);
    cluster_on_peer_hello(gw, k); /* the names of other nodes, if we speak for this one */
}

/* ---- incoming links ---- */

static void peer_dispatch(mg_gw *gw, peer_in *in, const unsigned char *m, size_t n)
{
    mg_peers *p = gw->peers;
    wire_rd r = {m, m + n, 0};
    uint8_t type, op, on;
    uint64_t id = 0;
    int64_t stamp = 0;
    char sb[256], *heap = NULL, *s;

    wire_take(&r, &type, 1);
    if (type != PEER_HELLO && !in->worker)
        return; /* nothing before a hello */
    if (type != PEER_HELLO)
        gw->metrics->peer_received++;
    /* Directory changes count only from the incarnation the directory
     * holds (an old process's last words are void). */
    int current = p->pid_of[in->worker] == in->pid;
    switch (type) {
    case PEER_HELLO: {
        uint32_t k;
        wire_take(&r, &k, 4);
        if (!r.bad && k >= 1 && k <= gw->nworkers && k != gw->worker)
            peer_on_hello(gw, in, k);
        return;
    }
    case PEER_SEND_ID: {
        wire_take(&r, &op, 1);
        wire_take(&r, &id, 8);
        mg_conn *c = r.bad ? NULL : conn_find(gw, id);
        if (c)
            conn_send(gw, c, op, r.p, (size_t)(r.end - r.p));
        return;
    }
    case PEER_SEND_NAME:
    case PEER_PUBLISH:
        wire_take(&r, &op, 1);
        if (!(s = wire_take_str(&r, sb, sizeof(sb), &heap)))
            return;
        if (type == PEER_PUBLISH) {
            pubsub_publish(gw, s, op, r.p, (size_t)(r.end - r.p));
        } else {
            mg_conn *c = conn_find_name(gw, s);
            if (c)
                conn_send(gw, c, op, r.p, (size_t)(r.end - r.p));
        }
        break;
    case PEER_BROADCAST:
        wire_take(&r, &op, 1);
        wire_take(&r, &id, 8);
        if (!r.bad)
            pubsub_broadcast(gw, op, r.p, (size_t)(r.end - r.p), id);
        return;
    case PEER_CLAIM:
    case PEER_UNCLAIM:
        wire_take(&r, &id, 8);
        if (type == PEER_CLAIM)
            wire_take(&r, &stamp, 8);
        if (!(s = wire_take_str(&r, sb, sizeof(sb), &heap)) || !current)
            break;
        if (type == PEER_CLAIM)
            peer_on_claim(gw, in->worker, in->pid, s, id, stamp);
        else
            peer_on_unclaim(gw, in->worker, s, id);
        break;
    case PEER_CLUSTER:
        if (current)
            cluster_on_relay(gw, r.p, (size_t)(r.end - r.p));
        return;
    case PEER_ADMIN_QUERY:
        r.p = m; /* peer_on_admin_query reads its head whole */
        peer_on_admin_query(gw, in->worker, &r);
        return;
    case PEER_ADMIN_REPLY: {
        uint32_t req;
        wire_take(&r, &req, 4);
        if (!r.bad)
            admin_fanout_on_reply(gw, in->worker, req, r.p, (size_t)(r.end - r.p));
        return;
    }
    case PEER_INTEREST:
        wire_take(&r, &on, 1);
        if ((s = wire_take_str(&r, sb, sizeof(sb), &heap)) && current)
            peer_on_interest(gw, in->worker, s, on);
        break;
    default:
        break;
    }
    free(heap);
}

/* Worker at the other end of in has gone (its process ended). */
static int peer_in_gone(mg_gw *gw, peer_in *in)
{
    mg_peers *p = gw->peers;
    in->gone = 1;
    if (in->worker && p->pid_of[in->worker] == in->pid) {
        peer_forget(gw, in->worker);
        p->pid_of[in->worker] = 0;
        admin_fanout_on_gone(gw, in->worker); /* it will not answer */
        cluster_on_peer_gone(gw, in->worker); /* other nodes forget its names */
    }
    if (in->worker && p->out[in->worker].fd >= 0 && p->out[in->worker].pid == in->pid)
        peer_out_reset(gw, in->worker, NULL);
    return -1; /* lws closes the descriptor */
}

/* Read what is there and act on each whole frame. */
static int peer_read(mg_gw *gw, peer_in *in)
{
    for (int reads = 0; reads < PEER_READS; reads++) {
        if (in->cap - in->len < (16u << 10)) {
            size_t cap = in->cap ? in->cap * 2 : 64u << 10;
            unsigned char *b = realloc(in->buf, cap);
            if (!b)
                return peer_in_gone(gw, in);
            in->buf = b;
            in->cap = cap;
        }
        ssize_t n = read(in->fd, in->buf + in->len, in->cap - in->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0)
            return peer_in_gone(gw, in);
        in->len += (size_t)n;
        size_t at = 0;
        while (in->len - at >= 4) {
            uint32_t fl;
            memcpy(&fl, in->buf + at, 4);
            if (fl == 0 || fl > PEER_FRAME_MAX)
                return peer_in_gone(gw, in);
            if (in->len - at - 4 < fl)
                break;
            peer_dispatch(gw, in, in->buf + at + 4, fl);
            at += 4 + (size_t)fl;
        }
        memmove(in->buf, in->buf + at, in->len - at);
        in->len -= at;
        if (in->len > in->cap / 2 && in->cap < (size_t)PEER_FRAME_MAX * 2) {
            unsigned char *b = realloc(in->buf, in->cap * 2); /* a big frame comes */
            if (!b)
                return peer_in_gone(gw, in);
            in->buf = b;
            in->cap *= 2;
        }
    }
    if (in->len == 0 && in->cap > (4u << 20)) {
        free(in->buf);
        in->buf = NULL;
        in->cap = 0;
    }
    return 1;
}

/* New links from other workers.  accept4 by syscall: libc's is fdguard's
 * on this thread, which counts what it accepts as client handshakes. */
static void peer_accept(mg_gw *gw)
{
    mg_peers *p = gw->peers;
    for (int i = 0; i < 64; i++) {
        int fd = (int)syscall(SYS_accept4, p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        /* The socket's name is guessable: only our own user's processes
         * may speak on it, and root: a worker started as root connects
         * before it becomes user: (privs.h), and SO_PEERCRED tells the
         * credentials of that moment. */
        struct ucred cr;
        socklen_t cl = sizeof(cr);
        peer_in *in = NULL;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0 ||
            (cr.uid != getuid() && cr.uid != 0) || !(in = calloc(1, sizeof(*in)))) {
            close(fd);
            continue;
        }
        in->fd = fd;
        in->pid = cr.pid;
        in->wsi = server_watch(gw, fd);
        if (!in->wsi) {
            close(fd);
            free(in);
            continue;
        }
        in->next = p->ins;
        p->ins = in;
    }
}

int peers_on_readable(mg_gw *gw, struct lws *wsi)
{
    mg_peers *p = gw->peers;
    if (!p)
        return 0;
    if (wsi == p->lwsi) {
        peer_accept(gw);
        return 1;
    }
    for (peer_in *in = p->ins; in; in = in->next)
        if (in->wsi == wsi)
            return in->gone ? -1 : peer_read(gw, in);
    return 0;
}

void peers_on_close(mg_gw *gw, struct lws *wsi)
{
    mg_peers *p = gw->peers;
    if (!p)
        return;
    if (wsi == p->lwsi) {
        p->lwsi = NULL;
        p->lfd = -1;
        return;
    }
    for (peer_in **pp = &p->ins; *pp; pp = &(*pp)->next) {
        peer_in *in = *pp;
        if (in->wsi == wsi) {
            if (!in->gone)
                peer_in_gone(gw, in);
            *pp = in->next;
            free(in->buf);
            free(in);
            return;
        }
    }
}

/* ---- start and stop ---- */

int peers_start(mg_gw *gw, char *err, size_t errlen)
{
    if (!gw->shared || gw->nworkers < 2)
        return 0;
    mg_peers *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    dict_init(&p->names);
    dict_init(&p->interest);
    for (uint32_t k = 0; k <= CONFIG_MAX_WORKERS; k++)
        p->out[k].fd = -1;
    gw->peers = p;
    struct sockaddr_un a;
    socklen_t al = peer_addr(gw, gw->worker, &a);
    p->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&a, al) != 0 || listen(p->lfd, 128) != 0 ||
        !(p->lwsi = server_watch(gw, p->lfd))) {
        snprintf(err, errlen, "worker %u: cannot listen for the other workers: %s", gw->worker,
                 strerror(errno));
        if (p->lfd >= 0)
            close(p->lfd);
        p->lfd = -1;
        return -1;
    }
    /* Say hello to whoever is up: they drop what an earlier process in
     * this slot held, and tell this one their names and topics. */
    for (uint32_t k = 1; k <= gw->nworkers; k++)
        if (k != gw->worker && peer_connect(gw, k) == 0)
            peer_want_flush(p, k);
    return 0;
}

static void peer_free_vals(dict *d)
{
    dict_entry *e;
    for (size_t i = 0; (e = dict_next(d, &i));)
        free(e->val);
    dict_free(d);
}

void peers_stop(mg_gw *gw)
{
    mg_peers *p = gw->peers;
    if (!p)
        return;
    lws_sul_cancel(&p->retry);
    for (uint32_t k = 0; k <= CONFIG_MAX_WORKERS; k++) {
        if (p->out[k].fd >= 0)
            close(p->out[k].fd);
        free(p->out[k].buf);
    }
    while (p->ins) { /* lws closed their descriptors */
        peer_in *in = p->ins;
        p->ins = in->next;
        free(in->buf);
        free(in);
    }
    peer_free_vals(&p->names);
    peer_free_vals(&p->interest);
    free(p);
    gw->peers = NULL;
}
