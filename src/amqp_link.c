/* amqp_link.c — the broker thread: connect, consume, settle, publish
 * (see amqp_link.h).
 *
 * Everything below link_start()/link_post()/link_take()/link_stop() runs on
 * the link's own thread and owns the rabbitmq-c connection.  The thread
 * blocks all signals (the loop reads them from a signalfd) and never
 * calls into Lua or libwebsockets. */
#include "amqp_link.h"

#include <amqp_tcp_socket.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define LINK_CHANNEL 1     /* consuming and settling */
#define LINK_PUB_CHANNEL 2 /* publishing, with confirms: a bad publish closes only this one */
#define LINK_FRAME_MAX 131072
#define LINK_FRAMES_PER_TURN 256 /* then look at the inbox again */
#define LINK_WHY 512

struct amqp_link {
    /* Set at start, read-only afterwards. */
    mg_broker_config cfg; /* deep copy */
    int in_fd, out_fd;    /* eventfds: wake the thread / wake the loop */
    pthread_t thread;

    /* Shared, under mu. */
    pthread_mutex_t mu;
    link_cmd *in, *in_tail;
    link_event *out, *out_tail;
    int stop;
    uint32_t stop_wait_ms;

    /* Thread-private. */
    amqp_connection_state_t conn;
    uint64_t epoch;
    int up;
    int cancel_wanted, cancelled;
    uint64_t seq;
    link_cmd *backlog, *backlog_tail;         /* publishes not sent yet */
    link_cmd *unconfirmed, *unconfirmed_tail; /* sent, waiting for a confirm */
    char **tags;                              /* consumer tag per cfg.consume[i] */
    uint32_t backoff_ms;
    unsigned rand_state;
    size_t undelivered; /* publishes lost at stop (broker down) */
    char why[LINK_WHY]; /* why the connection went down */

    /* A member of a cluster (link_start_member); m_key NULL otherwise. */
    char *m_prefix, *m_key;
    uint32_t m_queue_max;
    int m_fanout;    /* bound to <prefix>.fanout: the node's speaker */
    char *m_queue;   /* thread: this connection's queue */
    char **m_topics; /* thread: bound to <prefix>.publish */
    size_t m_ntopics, m_cap;
    uint64_t m_pending; /* atomic: sends in the inbox */
    size_t out_n;       /* under mu: events in the outbox */
};

/* A member stops reading deliveries while this many events wait for the
 * loop: the broker then holds them (up to the queue's bound). */
#define LINK_OUT_MAX 20000

/* ------------------------------------------------------------ small parts */

static int64_t link_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *link_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static char *link_bytes_str(amqp_bytes_t b)
{
    char *s = malloc(b.len + 1);
    if (s) {
        if (b.len)
            memcpy(s, b.bytes, b.len);
        s[b.len] = '\0';
    }
    return s;
}

static void link_eventfd_bump(int fd)
{
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof(one));
    (void)n; /* EAGAIN only if the counter is saturated: still readable */
}

static void link_eventfd_reset(int fd)
{
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof(v));
    (void)n;
}

static void link_cmd_push(link_cmd **head, link_cmd **tail, link_cmd *c)
{
    c->next = NULL;
    if (*tail)
        (*tail)->next = c;
    else
        *head = c;
    *tail = c;
}

static link_cmd *link_cmd_pop(link_cmd **head, link_cmd **tail)
{
    link_cmd *c = *head;
    if (c) {
        *head = c->next;
        if (!*head)
            *tail = NULL;
        c->next = NULL;
    }
    return c;
}

link_cmd *link_cmd_new(link_cmd_type type)
{
    link_cmd *c = calloc(1, sizeof(*c));
    if (c) {
        c->type = type;
        init_amqp_pool(&c->pool, 1024);
    }
    return c;
}

void link_cmd_free(link_cmd *c)
{
    if (!c)
        return;
    amqp_bytes_free(c->exchange);
    amqp_bytes_free(c->routing_key);
    amqp_bytes_free(c->body);
    empty_amqp_pool(&c->pool);
    free(c);
}

void link_delivery_free(link_delivery *d)
{
    if (!d)
        return;
    amqp_destroy_message(&d->msg);
    free(d->exchange);
    free(d->routing_key);
    free(d->queue);
    free(d);
}

void link_event_free(link_event *e)
{
    if (!e)
        return;
    free(e->text);
    link_delivery_free(e->d);
    free(e);
}

/* -------------------------------------------------------------- mailboxes */

static void link_emit(amqp_link *l, link_event *e)
{
    __atomic_add_fetch(&l->out_n, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&l->mu);
    e->next = NULL;
    if (l->out_tail)
        l->out_tail->next = e;
    else
        l->out = e;
    l->out_tail = e;
    pthread_mutex_unlock(&l->mu);
    link_eventfd_bump(l->out_fd);
}

static void link_emit_simple(amqp_link *l, link_ev_type type, const char *text, uint32_t retry_ms)
{
    link_event *e = calloc(1, sizeof(*e));
    if (!e)
        return;
    e->type = type;
    e->epoch = l->epoch;
    e->text = link_strdup(text);
    e->retry_ms = retry_ms;
    link_emit(l, e);
}

static void link_emit_published(amqp_link *l, uint64_t pub_id, int ok, const char *why)
{
    link_event *e = calloc(1, sizeof(*e));
    if (!e)
        return;
    e->type = LINK_EV_PUBLISHED;
    e->epoch = l->epoch;
    e->pub_id = pub_id;
    e->ok = ok;
    e->text = link_strdup(why);
    link_emit(l, e);
}

link_event *link_take(amqp_link *l)
{
    link_eventfd_reset(l->out_fd);
    pthread_mutex_lock(&l->mu);
    link_event *e = l->out;
    l->out = l->out_tail = NULL;
    __atomic_store_n(&l->out_n, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&l->mu);
    return e;
}

void link_post(amqp_link *l, link_cmd *c)
{
    if (c->type == LINK_CMD_SEND)
        __atomic_add_fetch(&l->m_pending, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&l->mu);
    link_cmd_push(&l->in, &l->in_tail, c);
    pthread_mutex_unlock(&l->mu);
    link_eventfd_bump(l->in_fd);
}

int link_event_fd(const amqp_link *l)
{
    return l->out_fd;
}

static int link_stopping(amqp_link *l)
{
    pthread_mutex_lock(&l->mu);
    int s = l->stop;
    pthread_mutex_unlock(&l->mu);
    return s;
}

/* ----------------------------------------------------------- broker replies */

/* 0 if r is a normal reply, else -1 with "what: reason" in l->why. */
static int link_check(amqp_link *l, amqp_rpc_reply_t r, const char *what)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return 0;
    case AMQP_RESPONSE_NONE:
        snprintf(l->why, sizeof(l->why), "%s: no reply from the broker", what);
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(l->why, sizeof(l->why), "%s: %s", what, amqp_error_string2(r.library_error));
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *m = r.reply.decoded;
            snprintf(l->why, sizeof(l->why), "%s: %.*s", what, (int)m->reply_text.len,
                     (const char *)m->reply_text.bytes);
        } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *m = r.reply.decoded;
            snprintf(l->why, sizeof(l->why), "%s: %.*s", what, (int)m->reply_text.len,
                     (const char *)m->reply_text.bytes);
        } else {
            snprintf(l->why, sizeof(l->why), "%s: broker error (method 0x%08x)", what,
                     (unsigned)r.reply.id);
        }
        break;
    }
    return -1;
}

static int link_check_rpc(amqp_link *l, const char *what)
{
    return link_check(l, amqp_get_rpc_reply(l->conn), what);
}

/* ------------------------------------------------------------- connecting */

static struct timeval link_tv(uint32_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

/* x-arguments of a declared queue, in pool. */
static amqp_table_t link_queue_args(const mg_broker_queue *q, amqp_pool_t *pool)
{
    amqp_table_t t = {0, NULL};
    amqp_table_entry_t *e = amqp_pool_alloc(pool, 3 * sizeof(*e));
    if (!e)
        return t;
    if (q->dead_letter_exchange) {
        e[t.num_entries].key = amqp_cstring_bytes("x-dead-letter-exchange");
        e[t.num_entries].value.kind = AMQP_FIELD_KIND_UTF8;
        e[t.num_entries++].value.value.bytes = amqp_cstring_bytes(q->dead_letter_exchange);
    }
    if (q->dead_letter_routing_key) {
        e[t.num_entries].key = amqp_cstring_bytes("x-dead-letter-routing-key");
        e[t.num_entries].value.kind = AMQP_FIELD_KIND_UTF8;
        e[t.num_entries++].value.value.bytes = amqp_cstring_bytes(q->dead_letter_routing_key);
    }
    if (q->message_ttl_ms) {
        e[t.num_entries].key = amqp_cstring_bytes("x-message-ttl");
        e[t.num_entries].value.kind = AMQP_FIELD_KIND_I64;
        e[t.num_entries++].value.value.i64 = q->message_ttl_ms;
    }
    t.entries = e;
    return t;
}

static int link_declare(amqp_link *l)
{
    char what[300];
    for (size_t i = 0; i < l->cfg.nqueues; i++) {
        const mg_broker_queue *q = &l->cfg.queues[i];
        amqp_pool_t pool;
        init_amqp_pool(&pool, 512);
        amqp_table_t args = link_queue_args(q, &pool);
        amqp_queue_declare(l->conn, LINK_CHANNEL, amqp_cstring_bytes(q->name), 0, 1, 0, 0, args);
        empty_amqp_pool(&pool);
        snprintf(what, sizeof(what), "declaring queue '%s'", q->name);
        if (link_check_rpc(l, what) != 0)
            return -1;
    }
    return 0;
}

static int link_consume(amqp_link *l)
{
    char what[300];
    amqp_basic_qos(l->conn, LINK_CHANNEL, 0, (uint16_t)l->cfg.prefetch, 0);
    if (link_check_rpc(l, "setting prefetch") != 0)
        return -1;
    for (size_t i = 0; i < l->cfg.nconsume; i++) {
        amqp_basic_consume_ok_t *ok =
            amqp_basic_consume(l->conn, LINK_CHANNEL, amqp_cstring_bytes(l->cfg.consume[i]),
                               amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
        snprintf(what, sizeof(what), "consuming queue '%s'", l->cfg.consume[i]);
        if (link_check_rpc(l, what) != 0 || !ok)
            return -1;
        free(l->tags[i]);
        l->tags[i] = link_bytes_str(ok->consumer_tag);
    }
    return 0;
}

/* ---------------------------------------------------- a cluster member */

static int link_member_exchanges(amqp_link *l)
{
    static const char *const kinds[][2] = {
        {"direct", "direct"}, {"publish", "direct"}, {"fanout", "fanout"}};
    char name[160], what[200];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "%s.%s", l->m_prefix, kinds[i][0]);
        amqp_exchange_declare(l->conn, LINK_CHANNEL, amqp_cstring_bytes(name),
                              amqp_cstring_bytes(kinds[i][1]), 0, 1, 0, 0, amqp_empty_table);
        snprintf(what, sizeof(what), "declaring exchange '%s'", name);
        if (link_check_rpc(l, what) != 0)
            return -1;
    }
    return 0;
}

/* Bind (or unbind) the member's queue to <prefix>.<ex> with key. */
static int link_member_bind(amqp_link *l, const char *ex, const char *key, int bind)
{
    char name[160];
    snprintf(name, sizeof(name), "%s.%s", l->m_prefix, ex);
    amqp_bytes_t q = amqp_cstring_bytes(l->m_queue), x = amqp_cstring_bytes(name);
    amqp_bytes_t k = amqp_cstring_bytes(key);
    if (bind)
        amqp_queue_bind(l->conn, LINK_CHANNEL, q, x, k, amqp_empty_table);
    else
        amqp_queue_unbind(l->conn, LINK_CHANNEL, q, x, k, amqp_empty_table);
    return link_check_rpc(l, bind ? "binding the member queue" : "unbinding the member queue");
}

static int link_member_setup(amqp_link *l)
{
    if (link_member_exchanges(l) != 0)
        return -1;
    amqp_table_entry_t e = {
        .key = amqp_cstring_bytes("x-max-length"),
        .value = {.kind = AMQP_FIELD_KIND_I64, .value = {.i64 = (int64_t)l->m_queue_max}}};
    amqp_table_t args = {1, &e};
    amqp_queue_declare_ok_t *ok =
        amqp_queue_declare(l->conn, LINK_CHANNEL, amqp_empty_bytes, 0, 0, 1, 1, args);
    if (link_check_rpc(l, "declaring the member queue") != 0 || !ok)
        return -1;
    free(l->m_queue);
    if (!(l->m_queue = link_bytes_str(ok->queue))) {
        snprintf(l->why, sizeof(l->why), "out of memory");
        return -1;
    }
    if (link_member_bind(l, "direct", l->m_key, 1) != 0 ||
        (l->m_fanout && link_member_bind(l, "fanout", "", 1) != 0))
        return -1;
    for (size_t i = 0; i < l->m_ntopics; i++)
        if (link_member_bind(l, "publish", l->m_topics[i], 1) != 0)
            return -1;
    amqp_basic_consume(l->conn, LINK_CHANNEL, amqp_cstring_bytes(l->m_queue), amqp_empty_bytes, 0,
                       1, 1, amqp_empty_table);
    return link_check_rpc(l, "consuming the member queue");
}

/* The set of topics bound survives reconnects: the queue does not. */
static int link_member_topic(amqp_link *l, link_cmd *c)
{
    char *topic = strndup(c->routing_key.bytes, c->routing_key.len);
    size_t i;
    int rc = 0;
    if (!topic)
        return 0;
    for (i = 0; i < l->m_ntopics && strcmp(l->m_topics[i], topic) != 0; i++)
        ;
    if (c->type == LINK_CMD_BIND && i == l->m_ntopics) {
        if (l->m_ntopics == l->m_cap) {
            size_t cap = l->m_cap ? l->m_cap * 2 : 16;
            char **t = realloc(l->m_topics, cap * sizeof(*t));
            if (!t) {
                free(topic);
                return 0; /* not bound: publishes to it stay on other nodes */
            }
            l->m_topics = t;
            l->m_cap = cap;
        }
        l->m_topics[l->m_ntopics++] = topic;
        topic = NULL;
        if (l->up)
            rc = link_member_bind(l, "publish", l->m_topics[i], 1);
    } else if (c->type == LINK_CMD_UNBIND && i < l->m_ntopics) {
        if (l->up)
            rc = link_member_bind(l, "publish", l->m_topics[i], 0);
        free(l->m_topics[i]);
        l->m_topics[i] = l->m_topics[--l->m_ntopics];
    }
    free(topic);
    return rc;
}

static int link_member_send(amqp_link *l, link_cmd *c)
{
    __atomic_sub_fetch(&l->m_pending, 1, __ATOMIC_RELAXED);
    if (!l->up)
        return 0; /* dropped: cluster traffic is not kept while down */
    int rc = amqp_basic_publish(l->conn, LINK_CHANNEL, c->exchange, c->routing_key, 0, 0, &c->props,
                                c->body);
    if (rc != AMQP_STATUS_OK) {
        snprintf(l->why, sizeof(l->why), "sending to the cluster: %s", amqp_error_string2(rc));
        return -1;
    }
    return 0;
}

uint64_t link_pending_sends(amqp_link *l)
{
    return __atomic_load_n(&l->m_pending, __ATOMIC_RELAXED);
}

static void link_close_conn(amqp_link *l, int graceful)
{
    if (!l->conn)
        return;
    if (graceful) {
        amqp_channel_close(l->conn, LINK_PUB_CHANNEL, AMQP_REPLY_SUCCESS);
        amqp_channel_close(l->conn, LINK_CHANNEL, AMQP_REPLY_SUCCESS);
        amqp_connection_close(l->conn, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(l->conn);
    l->conn = NULL;
    l->up = 0;
}

/* The publishing channel, with confirms; its sequence starts again. */
static int link_open_pub(amqp_link *l)
{
    amqp_channel_open(l->conn, LINK_PUB_CHANNEL);
    if (link_check_rpc(l, "opening the publishing channel") != 0)
        return -1;
    amqp_confirm_select(l->conn, LINK_PUB_CHANNEL);
    if (link_check_rpc(l, "enabling publisher confirms") != 0)
        return -1;
    l->seq = 0;
    return 0;
}

static int link_connect(amqp_link *l)
{
    struct amqp_connection_info info;
    char *url = strdup(l->cfg.url);
    if (!url || amqp_parse_url(url, &info) != AMQP_STATUS_OK) {
        snprintf(l->why, sizeof(l->why), "invalid broker URL");
        free(url);
        return -1;
    }
    const char *vhost = *info.vhost ? info.vhost : "/";
    struct timeval tv = link_tv(l->cfg.connect_timeout_ms);
    errno = 0;
    l->conn = amqp_new_connection();
    amqp_socket_t *sock = l->conn ? amqp_tcp_socket_new(l->conn) : NULL;
    int rc =
        sock ? amqp_socket_open_noblock(sock, info.host, info.port, &tv) : AMQP_STATUS_NO_MEMORY;
    if (rc != AMQP_STATUS_OK) {
        int e = errno;
        snprintf(l->why, sizeof(l->why), "cannot connect to %s:%d: %s", info.host, info.port,
                 rc == AMQP_STATUS_SOCKET_ERROR && e && e != EINPROGRESS
                     ? strerror(e)
                     : "refused or unreachable");
        free(url);
        return -1;
    }
    amqp_set_handshake_timeout(l->conn, &tv);
    amqp_set_rpc_timeout(l->conn, &tv);
    int hb = (int)((l->cfg.heartbeat_ms + 999) / 1000);
    amqp_rpc_reply_t r = amqp_login(l->conn, vhost, 0, LINK_FRAME_MAX, hb, AMQP_SASL_METHOD_PLAIN,
                                    info.user, info.password);
    free(url);
    if (link_check(l, r, "login") != 0)
        return -1;
    amqp_channel_open(l->conn, LINK_CHANNEL);
    if (link_check_rpc(l, "opening a channel") != 0 || link_open_pub(l) != 0)
        return -1;
    if (l->m_key) /* a cluster member: its own queue, no task queues */
        return link_member_setup(l);
    if (link_declare(l) != 0)
        return -1;
    l->cancelled = l->cancel_wanted;
    if (!l->cancel_wanted && link_consume(l) != 0)
        return -1;
    return 0;
}

/* "consuming a, b" for the up event. */
static void link_describe(amqp_link *l, char *buf, size_t n)
{
    struct amqp_connection_info info;
    char *url = strdup(l->cfg.url);
    size_t len = 0;
    if (url && amqp_parse_url(url, &info) == AMQP_STATUS_OK)
        len = (size_t)snprintf(buf, n, "amqp://%s:%d/%s", info.host, info.port, info.vhost);
    free(url);
    if (l->m_key && len < n)
        snprintf(buf + len, n - len, " (member %s, queue %s)", l->m_key,
                 l->m_queue ? l->m_queue : "?");
    for (size_t i = 0; i < l->cfg.nconsume && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", i ? ", " : " (consuming ",
                                l->cfg.consume[i]);
    if (l->cfg.nconsume && len < n)
        snprintf(buf + len, n - len, "%s", l->cancel_wanted ? ", cancelled)" : ")");
}

/* Unconfirmed publishes go back to the front of the backlog: they are
 * sent again on the next connection (at-least-once). */
static void link_requeue_unconfirmed(amqp_link *l)
{
    if (!l->unconfirmed)
        return;
    l->unconfirmed_tail->next = l->backlog;
    if (!l->backlog)
        l->backlog_tail = l->unconfirmed_tail;
    l->backlog = l->unconfirmed;
    l->unconfirmed = l->unconfirmed_tail = NULL;
}

/* ----------------------------------------------------------- publishing */

/* Settle one publish with the broker's answer. */
static void link_publish_done(amqp_link *l, link_cmd *c, int ok, const char *why)
{
    char buf[LINK_WHY];
    if (ok && c->returned) {
        ok = 0;
        snprintf(buf, sizeof(buf), "unroutable: no queue for exchange '%.*s' routing key '%.*s'",
                 (int)c->exchange.len, (const char *)c->exchange.bytes, (int)c->routing_key.len,
                 (const char *)c->routing_key.bytes);
        why = buf;
    }
    if (ok && c->forward && c->epoch == l->epoch && l->up)
        amqp_basic_ack(l->conn, LINK_CHANNEL, c->tag, 0);
    link_emit_published(l, c->pub_id, ok, ok ? NULL : why);
    link_cmd_free(c);
}

static int link_publish(amqp_link *l, link_cmd *c)
{
    int rc = amqp_basic_publish(l->conn, LINK_PUB_CHANNEL, c->exchange, c->routing_key, 1, 0,
                                &c->props, c->body);
    if (rc != AMQP_STATUS_OK) {
        snprintf(l->why, sizeof(l->why), "publishing: %s", amqp_error_string2(rc));
        return -1;
    }
    c->seq = ++l->seq;
    c->returned = 0;
    link_cmd_push(&l->unconfirmed, &l->unconfirmed_tail, c);
    return 0;
}

static int link_flush_backlog(amqp_link *l)
{
    link_cmd *c;
    while ((c = l->backlog)) {
        if (c->forward && c->epoch != l->epoch) {
            link_cmd_pop(&l->backlog, &l->backlog_tail);
            link_publish_done(l, c, 0,
                              "the broker connection was lost before the copy was confirmed "
                              "(the broker requeued the original)");
            continue;
        }
        link_cmd_pop(&l->backlog, &l->backlog_tail);
        if (link_publish(l, c) != 0) {
            c->next = l->backlog; /* back to the front, for the next connection */
            l->backlog = c;
            if (!l->backlog_tail)
                l->backlog_tail = c;
            return -1;
        }
    }
    return 0;
}

/* basic.ack / basic.nack from the broker for our publishes. */
static void link_confirm(amqp_link *l, uint64_t tag, int multiple, int ok)
{
    link_cmd *prev = NULL, *c = l->unconfirmed;
    while (c) {
        link_cmd *next = c->next;
        if (multiple ? c->seq <= tag : c->seq == tag) {
            if (prev)
                prev->next = next;
            else
                l->unconfirmed = next;
            if (l->unconfirmed_tail == c)
                l->unconfirmed_tail = prev;
            link_publish_done(l, c, ok, "the broker refused the message (nack)");
        } else {
            prev = c;
        }
        c = next;
    }
}

/* The broker closed the publishing channel because of a publish (most
 * often: "NOT_FOUND - no exchange 'x'").  Fail the publishes to that
 * exchange, or else the oldest unconfirmed one, so that sending them again
 * cannot close the channel forever; the rest go out again. */
static void link_pub_refused(amqp_link *l, const char *text)
{
    const char *p = strstr(text, "no exchange '");
    const char *end = p ? strchr(p + strlen("no exchange '"), '\'') : NULL;
    size_t n = 0;
    if (end) {
        p += strlen("no exchange '");
        n = (size_t)(end - p);
    } else if (l->unconfirmed) {
        link_publish_done(l, link_cmd_pop(&l->unconfirmed, &l->unconfirmed_tail), 0, text);
    }
    link_requeue_unconfirmed(l);
    if (!end)
        return;
    link_cmd *keep = NULL, *keep_tail = NULL, *c;
    while ((c = link_cmd_pop(&l->backlog, &l->backlog_tail))) {
        if (c->exchange.len == n && memcmp(c->exchange.bytes, p, n) == 0)
            link_publish_done(l, c, 0, text);
        else
            link_cmd_push(&keep, &keep_tail, c);
    }
    l->backlog = keep;
    l->backlog_tail = keep_tail;
}

/* ------------------------------------------------------------ reading */

static char *link_queue_of(amqp_link *l, amqp_bytes_t tag)
{
    for (size_t i = 0; i < l->cfg.nconsume; i++)
        if (l->tags[i] && strlen(l->tags[i]) == tag.len && !memcmp(l->tags[i], tag.bytes, tag.len))
            return strdup(l->cfg.consume[i]);
    return strdup("");
}

static int link_deliver(amqp_link *l, const amqp_frame_t *f)
{
    amqp_basic_deliver_t *m = f->payload.method.decoded;
    link_delivery *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(l->why, sizeof(l->why), "out of memory");
        return -1;
    }
    d->tag = m->delivery_tag;
    d->redelivered = m->redelivered;
    d->exchange = link_bytes_str(m->exchange);
    d->routing_key = link_bytes_str(m->routing_key);
    d->queue = link_queue_of(l, m->consumer_tag);
    amqp_rpc_reply_t r = amqp_read_message(l->conn, f->channel, &d->msg, 0);
    if (link_check(l, r, "reading a message") != 0) {
        free(d->exchange);
        free(d->routing_key);
        free(d->queue);
        free(d);
        return -1;
    }
    link_event *e = calloc(1, sizeof(*e));
    if (!e) {
        link_delivery_free(d);
        snprintf(l->why, sizeof(l->why), "out of memory");
        return -1;
    }
    e->type = LINK_EV_DELIVERY;
    e->epoch = l->epoch;
    e->d = d;
    link_emit(l, e);
    return 0;
}

/* basic.return: a mandatory publish no queue took.  Its confirm follows;
 * mark the oldest matching unconfirmed publish so that confirm fails it. */
static int link_returned(amqp_link *l, const amqp_frame_t *f)
{
    amqp_basic_return_t *m = f->payload.method.decoded;
    char *ex = link_bytes_str(m->exchange), *rk = link_bytes_str(m->routing_key);
    amqp_message_t msg;
    amqp_rpc_reply_t r = amqp_read_message(l->conn, f->channel, &msg, 0);
    for (link_cmd *c = l->unconfirmed; c && ex && rk; c = c->next) {
        if (!c->returned && c->exchange.len == strlen(ex) && c->routing_key.len == strlen(rk) &&
            !memcmp(c->exchange.bytes, ex, c->exchange.len) &&
            !memcmp(c->routing_key.bytes, rk, c->routing_key.len)) {
            c->returned = 1;
            break;
        }
    }
    free(ex);
    free(rk);
    if (link_check(l, r, "reading a returned message") != 0)
        return -1;
    amqp_destroy_message(&msg);
    return 0;
}

static int link_frame(amqp_link *l, const amqp_frame_t *f)
{
    if (f->frame_type != AMQP_FRAME_METHOD)
        return 0;
    void *m = f->payload.method.decoded;
    switch (f->payload.method.id) {
    case AMQP_BASIC_DELIVER_METHOD:
        return link_deliver(l, f);
    case AMQP_BASIC_ACK_METHOD:
        link_confirm(l, ((amqp_basic_ack_t *)m)->delivery_tag, ((amqp_basic_ack_t *)m)->multiple,
                     1);
        return 0;
    case AMQP_BASIC_NACK_METHOD:
        link_confirm(l, ((amqp_basic_nack_t *)m)->delivery_tag, ((amqp_basic_nack_t *)m)->multiple,
                     0);
        return 0;
    case AMQP_BASIC_RETURN_METHOD:
        return link_returned(l, f);
    case AMQP_BASIC_CANCEL_METHOD:
        snprintf(l->why, sizeof(l->why), "the broker cancelled a consumer (queue deleted?)");
        return -1;
    case AMQP_CHANNEL_CLOSE_METHOD: {
        amqp_channel_close_t *c = m;
        amqp_channel_close_ok_t ok = {0};
        snprintf(l->why, sizeof(l->why), "channel closed by the broker: %.*s",
                 (int)c->reply_text.len, (const char *)c->reply_text.bytes);
        amqp_send_method(l->conn, f->channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        if (f->channel != LINK_PUB_CHANNEL)
            return -1;
        link_pub_refused(l, l->why);
        return link_open_pub(l);
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
        amqp_connection_close_t *c = m;
        amqp_connection_close_ok_t ok = {0};
        snprintf(l->why, sizeof(l->why), "connection closed by the broker: %.*s",
                 (int)c->reply_text.len, (const char *)c->reply_text.bytes);
        amqp_send_method(l->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        return -1;
    }
    default:
        return 0;
    }
}

/* Read what has arrived, without blocking; also sends and checks
 * heartbeats (rabbitmq-c does that inside its wait). */
static int link_read(amqp_link *l)
{
    for (int i = 0; i < LINK_FRAMES_PER_TURN; i++) {
        amqp_frame_t f;
        struct timeval tv = {0, 0};
        amqp_maybe_release_buffers(l->conn);
        int rc = amqp_simple_wait_frame_noblock(l->conn, &f, &tv);
        if (rc == AMQP_STATUS_TIMEOUT)
            return 0;
        if (rc != AMQP_STATUS_OK) {
            snprintf(l->why, sizeof(l->why), "%s", amqp_error_string2(rc));
            return -1;
        }
        if (link_frame(l, &f) != 0)
            return -1;
    }
    return 0;
}

/* ----------------------------------------------------------- the inbox */

static int link_settle(amqp_link *l, link_cmd *c)
{
    int rc = 0;
    if (l->up && c->epoch == l->epoch) {
        if (c->type == LINK_CMD_ACK)
            rc = amqp_basic_ack(l->conn, LINK_CHANNEL, c->tag, 0);
        else if (c->type == LINK_CMD_REQUEUE)
            rc = amqp_basic_nack(l->conn, LINK_CHANNEL, c->tag, 0, 1);
        else
            rc = amqp_basic_reject(l->conn, LINK_CHANNEL, c->tag, 0);
        if (rc != AMQP_STATUS_OK)
            snprintf(l->why, sizeof(l->why), "settling a delivery: %s", amqp_error_string2(rc));
    }
    /* else: that connection is gone and RabbitMQ requeued the delivery. */
    link_cmd_free(c);
    return rc == AMQP_STATUS_OK ? 0 : -1;
}

/* Apply every command waiting in the inbox.  Publishes join the backlog. */
static int link_drain_inbox(amqp_link *l)
{
    pthread_mutex_lock(&l->mu);
    link_cmd *c = l->in;
    l->in = l->in_tail = NULL;
    pthread_mutex_unlock(&l->mu);

    int rc = 0;
    while (c) {
        link_cmd *next = c->next;
        switch (c->type) {
        case LINK_CMD_PUBLISH:
            link_cmd_push(&l->backlog, &l->backlog_tail, c);
            break;
        case LINK_CMD_CANCEL:
            l->cancel_wanted = 1;
            link_cmd_free(c);
            break;
        case LINK_CMD_SEND:
            if (link_member_send(l, c) != 0)
                rc = -1;
            link_cmd_free(c);
            break;
        case LINK_CMD_BIND:
        case LINK_CMD_UNBIND:
            if (rc == 0 && link_member_topic(l, c) != 0)
                rc = -1;
            link_cmd_free(c);
            break;
        default:
            if (rc == 0 && link_settle(l, c) != 0)
                rc = -1;
            else if (rc != 0)
                link_cmd_free(c);
            break;
        }
        c = next;
    }
    return rc;
}

static int link_cancel(amqp_link *l)
{
    for (size_t i = 0; i < l->cfg.nconsume; i++) {
        if (!l->tags[i])
            continue;
        amqp_basic_cancel(l->conn, LINK_CHANNEL, amqp_cstring_bytes(l->tags[i]));
        if (link_check_rpc(l, "cancelling a consumer") != 0)
            return -1;
    }
    l->cancelled = 1;
    return 0;
}

/* ------------------------------------------------------------- the thread */

/* Wait for the socket (if up) or the inbox, at most ms. */
static void link_wait(amqp_link *l, int ms)
{
    struct pollfd p[2] = {{.fd = l->in_fd, .events = POLLIN}, {.fd = -1, .events = POLLIN}};
    if (l->up) {
        if (amqp_frames_enqueued(l->conn) || amqp_data_in_buffer(l->conn))
            return;
        p[1].fd = amqp_get_sockfd(l->conn);
    }
    if (poll(p, 2, ms) > 0 && (p[0].revents & POLLIN))
        link_eventfd_reset(l->in_fd);
}

/* One turn while connected: commands, publishes, then what arrived. */
static int link_turn(amqp_link *l)
{
    if (link_drain_inbox(l) != 0)
        return -1;
    if (l->cancel_wanted && !l->cancelled && link_cancel(l) != 0)
        return -1;
    if (link_flush_backlog(l) != 0)
        return -1;
    uint32_t hb = l->cfg.heartbeat_ms;
    if (l->m_key && __atomic_load_n(&l->out_n, __ATOMIC_RELAXED) > LINK_OUT_MAX) {
        /* The loop is behind: let the broker hold what comes (heartbeats
         * are still answered once it catches up, within a turn or two). */
        struct pollfd p = {.fd = l->in_fd, .events = POLLIN};
        poll(&p, 1, 5);
        return 0;
    }
    link_wait(l, hb ? (int)(hb / 4 > 50 ? hb / 4 : 50) : 1000);
    return link_read(l);
}

/* Equal jitter: half the backoff, plus a random share of the other half. */
static uint32_t link_jitter(amqp_link *l)
{
    uint32_t half = l->backoff_ms / 2;
    uint32_t delay = half + (uint32_t)rand_r(&l->rand_state) % (l->backoff_ms - half + 1);
    uint32_t next = l->backoff_ms * 2;
    l->backoff_ms = next > l->cfg.reconnect_max_ms ? l->cfg.reconnect_max_ms : next;
    return delay;
}

/* Down: say so, then wait out the backoff (still taking commands). */
static void link_down(amqp_link *l)
{
    link_close_conn(l, 0);
    l->cancelled = 0;
    link_requeue_unconfirmed(l);
    uint32_t delay = link_jitter(l);
    link_emit_simple(l, LINK_EV_DOWN, l->why, delay);
    int64_t deadline = link_now_ms() + delay;
    while (!link_stopping(l)) {
        int64_t left = deadline - link_now_ms();
        if (left <= 0)
            break;
        link_wait(l, (int)left);
        link_drain_inbox(l); /* settles are dropped: that epoch is gone */
    }
}

static void link_up(amqp_link *l)
{
    char what[LINK_WHY];
    l->up = 1;
    l->epoch++;
    l->backoff_ms = l->cfg.reconnect_min_ms;
    link_describe(l, what, sizeof(what));
    link_emit_simple(l, LINK_EV_UP, what, 0);
}

/* Stopping: send what is pending and wait for its confirms, bounded. */
static void link_finish(amqp_link *l)
{
    int64_t deadline = link_now_ms() + l->stop_wait_ms;
    if (l->up) {
        link_drain_inbox(l);
        if (!l->cancelled)
            link_cancel(l);
        while (l->up && (l->backlog || l->unconfirmed) && link_now_ms() < deadline)
            if (link_flush_backlog(l) != 0 || (link_wait(l, 50), link_read(l)) != 0)
                break;
    } else {
        link_drain_inbox(l);
    }
    link_requeue_unconfirmed(l);
    link_cmd *c;
    while ((c = link_cmd_pop(&l->backlog, &l->backlog_tail))) {
        if (!c->forward)
            l->undelivered++;
        link_cmd_free(c);
    }
    link_close_conn(l, l->up);
}

static void *link_main(void *arg)
{
    amqp_link *l = arg;
    while (!link_stopping(l)) {
        if (!l->up) {
            if (link_connect(l) == 0)
                link_up(l);
            else
                link_down(l);
            continue;
        }
        if (link_turn(l) != 0)
            link_down(l);
    }
    link_finish(l);
    return NULL;
}

/* -------------------------------------------------------- start and stop */

static int link_copy_config(mg_broker_config *dst, const mg_broker_config *src)
{
    *dst = *src;
    dst->url = strdup(src->url);
    dst->queues = calloc(src->nqueues + 1, sizeof(*dst->queues));
    dst->consume = calloc(src->nconsume + 1, sizeof(*dst->consume));
    if (!dst->url || !dst->queues || !dst->consume)
        return -1;
    for (size_t i = 0; i < src->nqueues; i++) {
        dst->queues[i] = src->queues[i];
        dst->queues[i].name = link_strdup(src->queues[i].name);
        dst->queues[i].dead_letter_exchange = link_strdup(src->queues[i].dead_letter_exchange);
        dst->queues[i].dead_letter_routing_key =
            link_strdup(src->queues[i].dead_letter_routing_key);
    }
    for (size_t i = 0; i < src->nconsume; i++)
        dst->consume[i] = link_strdup(src->consume[i]);
    return 0;
}

static void link_free(amqp_link *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->cfg.nqueues; i++) {
        free(l->cfg.queues[i].name);
        free(l->cfg.queues[i].dead_letter_exchange);
        free(l->cfg.queues[i].dead_letter_routing_key);
    }
    for (size_t i = 0; i < l->cfg.nconsume; i++) {
        free(l->cfg.consume[i]);
        if (l->tags)
            free(l->tags[i]);
    }
    free(l->cfg.queues);
    free(l->cfg.consume);
    free(l->cfg.url);
    free(l->tags);
    free(l->m_prefix);
    free(l->m_key);
    free(l->m_queue);
    for (size_t i = 0; i < l->m_ntopics; i++)
        free(l->m_topics[i]);
    free(l->m_topics);
    link_cmd *c;
    while ((c = link_cmd_pop(&l->in, &l->in_tail)))
        link_cmd_free(c);
    for (link_event *e = l->out, *n; e; e = n) {
        n = e->next;
        link_event_free(e);
    }
    if (l->in_fd >= 0)
        close(l->in_fd);
    if (l->out_fd >= 0)
        close(l->out_fd);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static amqp_link *link_begin(const mg_broker_config *cfg, const link_member *m, char *err,
                             size_t errlen)
{
    amqp_link *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&l->mu, NULL);
    l->in_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->out_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->tags = calloc(cfg->nconsume + 1, sizeof(*l->tags));
    l->backoff_ms = cfg->reconnect_min_ms;
    l->rand_state = (unsigned)link_now_ms() ^ (unsigned)getpid();
    if (m) {
        l->m_prefix = link_strdup(m->prefix);
        l->m_key = link_strdup(m->key);
        l->m_queue_max = m->queue_max;
        l->m_fanout = m->fanout;
    }
    if (l->in_fd < 0 || l->out_fd < 0 || !l->tags || link_copy_config(&l->cfg, cfg) != 0 ||
        (m && (!l->m_prefix || !l->m_key))) {
        snprintf(err, errlen, "broker set-up: %s", strerror(errno ? errno : ENOMEM));
        link_free(l);
        return NULL;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&l->thread, NULL, link_main, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the broker thread: %s", strerror(rc));
        link_free(l);
        return NULL;
    }
    pthread_setname_np(l->thread, m ? "mg-cluster" : "mg-broker");
    return l;
}

amqp_link *link_start(const mg_broker_config *cfg, char *err, size_t errlen)
{
    return link_begin(cfg, NULL, err, errlen);
}

amqp_link *link_start_member(const mg_broker_config *cfg, const link_member *m, char *err,
                             size_t errlen)
{
    return link_begin(cfg, m, err, errlen);
}

size_t link_stop(amqp_link *l, uint32_t wait_ms)
{
    if (!l)
        return 0;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    l->stop_wait_ms = wait_ms;
    pthread_mutex_unlock(&l->mu);
    link_eventfd_bump(l->in_fd);
    pthread_join(l->thread, NULL);
    size_t lost = l->undelivered;
    link_free(l);
    return lost;
}
