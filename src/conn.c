/* conn.c — the client table and per-connection state.
 *
 * Connections are indexed by id (dict) and by registered name (dict) and
 * linked in one list for iteration.  Sending goes through conn_send*, which
 * applies the per-connection queue limit and queues the frame; writer.c
 * writes the queues. */
#include "conn.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "cluster.h"
#include "compress.h"
#include "log.h"
#include "peer.h"
#include "pubsub.h"
#include "workers.h"
#include "writer.h"
#include "wsrx.h"

/* Clients in state open went up or down by one; other workers read the
 * count from the shared slot (gw.count("all")). */
static void conn_count(mg_gw *gw, int d)
{
    gw->conns_open += (uint64_t)(int64_t)d;
    if (gw->self)
        __atomic_store_n(&gw->self->conns_open, gw->conns_open, __ATOMIC_RELAXED);
}

/* c lets its name go: out of the table, and the other workers told. */
/* ---- names claimed across workers and nodes ----
 *
 * With workers or a cluster, each name a client takes is a claim stamped
 * with the wall-clock time (comparable across nodes), told to the other
 * workers (peer.c) and nodes (cluster.c); the stamp decides who keeps a
 * name two clients claimed. */

static int conn_claims_on(const mg_gw *gw)
{
    return gw->peers || gw->cluster;
}

static int64_t conn_claim_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void conn_claim_drop(mg_gw *gw, const char *name)
{
    free(dict_del(&gw->claims, name, strlen(name)));
}

int64_t conn_claim_stamp(mg_gw *gw, const char *name)
{
    int64_t *s = dict_get(&gw->claims, name, strlen(name));
    return s ? *s : 0;
}

int conn_claim_wins(const mg_gw *gw, int64_t sa, uint64_t ia, int64_t sb, uint64_t ib)
{
    int newer = sa > sb || (sa == sb && ia > ib);
    return gw->cfg->duplicate_names == MG_DUP_REJECT ? !newer : newer;
}

int conn_claim_contest(mg_gw *gw, const char *name, uint64_t id, int64_t stamp)
{
    mg_conn *c = conn_find_name(gw, name);
    int64_t ours = conn_claim_stamp(gw, name);
    if (!c || !ours)
        return 1;
    if (!conn_claim_wins(gw, stamp, id, ours, c->id))
        return 0; /* ours stands: our claim makes the other side close its client */
    conn_name_lost(gw, c,
                   gw->cfg->duplicate_names == MG_DUP_REJECT
                       ? "name taken"
                       : "a new client with the same id connected");
    return 1;
}

/* c lets its name go: out of the table, and the other workers and nodes
 * told. */
static void conn_drop_name(mg_gw *gw, mg_conn *c)
{
    if (!c->name)
        return;
    if (dict_get(&gw->conns_by_name, c->name, strlen(c->name)) == c) {
        dict_del(&gw->conns_by_name, c->name, strlen(c->name));
        conn_claim_drop(gw, c->name);
        peers_unclaim(gw, c->name, c->id);
        cluster_unclaim(gw, c->name, c->id);
    }
    free(c->name);
    c->name = NULL;
}

void conn_table_init(mg_gw *gw)
{
    dict_init(&gw->conns_by_id);
    dict_init(&gw->conns_by_name);
    dict_init(&gw->claims);
    gw->conn_list = NULL;
    gw->next_conn_id = 1;
}

void conn_table_free(mg_gw *gw)
{
    while (gw->conn_list)
        conn_destroy(gw, gw->conn_list);
    dict_free(&gw->conns_by_id);
    dict_free(&gw->conns_by_name);
    dict_entry *e;
    for (size_t i = 0; (e = dict_next(&gw->claims, &i));)
        free(e->val);
    dict_free(&gw->claims);
}

/* Room for the longest reason a close frame can carry. */
#define CONN_REASON_MAX 123

mg_conn *conn_create(mg_gw *gw, struct lws *wsi, const char *path, const char *query,
                     const char *remote, const char *headers, size_t headers_len,
                     const char *protocol)
{
    mg_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->id = workers_conn_id(gw);
    c->wsi = wsi;
    /* One block for the request's strings: a malloc header, not four. */
    size_t pl = strlen(path ? path : "") + 1, ql = strlen(query ? query : "") + 1;
    size_t rl = strlen(remote ? remote : "") + 1, sl = strlen(protocol ? protocol : "") + 1;
    c->headers = malloc(headers_len + pl + ql + rl + sl);
    if (!c->headers)
        goto oom;
    memcpy(c->headers, headers, headers_len);
    c->headers_len = headers_len;
    c->path = memcpy(c->headers + headers_len, path ? path : "", pl);
    c->query = memcpy(c->path + pl, query ? query : "", ql);
    c->remote = memcpy(c->query + ql, remote ? remote : "", rl);
    memcpy(c->remote + rl, protocol ? protocol : "", sl);
    sendq_init(&c->q);
    c->lua_ref = -1;
    c->fd = -1;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    c->since_ms = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
    c->last_rx_ms = gw->now_ms;
    c->tokens_ms = gw->now_ms;
    c->tokens = gw->cfg->message_burst ? gw->cfg->message_burst : gw->cfg->message_rate;

    int err;
    dict_set(&gw->conns_by_id, &c->id, sizeof(c->id), c, &err);
    if (err)
        goto oom;
    c->next = gw->conn_list;
    if (gw->conn_list)
        gw->conn_list->prev = c;
    gw->conn_list = c;
    gw->metrics->connections++;
    gw->metrics->connections_total++;
    conn_count(gw, +1);
    return c;
oom:
    free(c->headers);
    free(c);
    return NULL;
}

const char *conn_protocol(const mg_conn *c)
{
    const char *p = c->remote + strlen(c->remote) + 1;
    return *p ? p : NULL;
}

void conn_destroy(mg_gw *gw, mg_conn *c)
{
    writer_forget(gw, c);
    pubsub_unsubscribe_all(gw, c);
    conn_drop_name(gw, c);
    dict_del(&gw->conns_by_id, &c->id, sizeof(c->id));
    if (c->prev)
        c->prev->next = c->next;
    else
        gw->conn_list = c->next;
    if (c->next)
        c->next->prev = c->prev;
    gw->metrics->connections--;
    if (c->state == MG_CONN_OPEN)
        conn_count(gw, -1);

    for (uint32_t i = 0; i < c->nattrs; i++) {
        free(c->attrs[i].key);
        value_clear(&c->attrs[i].val);
    }
    free(c->attrs);
    sendq_clear(&c->q);
    free(c->rx);
    wsrx_free(&c->wsrx);
    compress_detach(gw, c);
    free(c->headers); /* and path, query, remote */
    free(c->close_reason);
    free(c);
}

/* The most descriptors the table covers, whatever the limit says. */
#define CONN_FD_MAX (1 << 24)

int conn_fd_table_init(mg_gw *gw)
{
    struct rlimit rl;
    int cap = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        cap = rl.rlim_cur < CONN_FD_MAX ? (int)rl.rlim_cur : CONN_FD_MAX;
    gw->fd_conns = calloc((size_t)cap, sizeof(*gw->fd_conns));
    if (!gw->fd_conns)
        return -1;
    gw->fd_cap = cap;
    return 0;
}

void conn_fd_table_free(mg_gw *gw)
{
    free(gw->fd_conns);
    gw->fd_conns = NULL;
    gw->fd_cap = 0;
}

void conn_fd_bind(mg_gw *gw, mg_conn *c, int fd)
{
    c->fd = fd;
    if (fd >= 0 && fd < gw->fd_cap)
        gw->fd_conns[fd] = c;
}

void conn_fd_unbind(mg_gw *gw, mg_conn *c)
{
    if (conn_by_fd(gw, c->fd) == c)
        gw->fd_conns[c->fd] = NULL;
    c->fd = -1;
}

mg_conn *conn_find(mg_gw *gw, uint64_t id)
{
    return dict_get(&gw->conns_by_id, &id, sizeof(id));
}

mg_conn *conn_find_name(mg_gw *gw, const char *name)
{
    return dict_get(&gw->conns_by_name, name, strlen(name));
}

int conn_is_open(const mg_conn *c)
{
    return c && c->wsi && c->state == MG_CONN_OPEN;
}

const char *conn_header(const mg_conn *c, const char *name)
{
    const char *p = c->headers, *end = c->headers + c->headers_len;
    while (p < end) {
        const char *val = p + strlen(p) + 1;
        if (strcasecmp(p, name) == 0)
            return val;
        p = val + strlen(val) + 1;
    }
    return NULL;
}

int conn_set_name(mg_gw *gw, mg_conn *c, const char *name, const char **err)
{
    size_t len = strlen(name);
    mg_conn *holder = dict_get(&gw->conns_by_name, name, len);

    if (holder == c)
        return 0;
    if (gw->cfg->duplicate_names == MG_DUP_REJECT &&
        (holder || peers_name_free(gw, name) != 0 || cluster_name_free(gw, name) != 0)) {
        *err = "name taken";
        return -1;
    }
    char *copy = strdup(name);
    if (!copy) {
        *err = "out of memory";
        return -1;
    }
    if (holder)
        conn_name_lost(gw, holder, "a new client with the same id connected");
    conn_drop_name(gw, c);
    c->name = copy;
    int derr;
    dict_set(&gw->conns_by_name, copy, len, c, &derr);
    if (derr) {
        *err = "out of memory";
        free(c->name);
        c->name = NULL;
        return -1;
    }
    if (conn_claims_on(gw)) {
        int64_t *stamp = malloc(sizeof(*stamp));
        if (stamp) {
            *stamp = conn_claim_now();
            free(dict_set(&gw->claims, copy, len, stamp, &derr));
            if (derr)
                free(stamp);
            else {
                peers_claim(gw, copy, c->id, *stamp);
                cluster_claim(gw, copy, c->id, *stamp);
            }
        }
    }
    return 0;
}

void conn_name_lost(mg_gw *gw, mg_conn *c, const char *reason)
{
    log_conn(MG_LOG_INFO, c->id, "loses its name '%s': %s", c->name ? c->name : "", reason);
    if (c->name && dict_get(&gw->conns_by_name, c->name, strlen(c->name)) == c) {
        dict_del(&gw->conns_by_name, c->name, strlen(c->name));
        conn_claim_drop(gw, c->name);
    }
    free(c->name);
    c->name = NULL;
    gw->metrics->evictions[MG_EVICT_REPLACED]++;
    conn_close(gw, c, 4001, reason, 0);
}

const mg_value *conn_attr_get(const mg_conn *c, const char *key)
{
    for (uint32_t i = 0; i < c->nattrs; i++)
        if (strcmp(c->attrs[i].key, key) == 0)
            return &c->attrs[i].val;
    return NULL;
}

int conn_attr_set(mg_conn *c, const char *key, const mg_value *v)
{
    uint32_t i;
    for (i = 0; i < c->nattrs; i++)
        if (strcmp(c->attrs[i].key, key) == 0)
            break;
    if (v->type == MG_VAL_NIL) {
        if (i < c->nattrs) {
            free(c->attrs[i].key);
            value_clear(&c->attrs[i].val);
            c->attrs[i] = c->attrs[--c->nattrs];
        }
        return 0;
    }
    if (i == c->nattrs) {
        mg_attr *na = realloc(c->attrs, (c->nattrs + 1) * sizeof(*na));
        if (!na)
            return -1;
        c->attrs = na;
        memset(&na[i], 0, sizeof(na[i]));
        na[i].key = strdup(key);
        if (!na[i].key)
            return -1;
        c->nattrs++;
    }
    return value_copy(&c->attrs[i].val, v);
}

static int conn_can_send(const mg_conn *c)
{
    return c->wsi && (c->state == MG_CONN_OPEN || c->final_window);
}

/* The queue limit: what a slow consumer gets when it is exceeded. */
static int conn_over_limit(mg_gw *gw, mg_conn *c, size_t add)
{
    if (c->q.bytes == 0 || c->q.bytes + add <= gw->cfg->send_queue_max)
        return MG_SEND_OK;
    if (gw->cfg->slow_consumer == MG_SLOW_DROP) {
        gw->metrics->sendq_drops++;
        return MG_SEND_DROPPED;
    }
    log_conn(MG_LOG_WARN, c->id, "slow consumer: %zu bytes queued, closing", c->q.bytes);
    gw->metrics->evictions[MG_EVICT_SLOW_CONSUMER]++;
    conn_close(gw, c, 4002, "slow consumer", 1);
    return MG_SEND_EVICTED;
}

/* Queue a frame (copied) and get the queue written if it was empty. */
static int conn_push(mg_gw *gw, mg_conn *c, int opcode, const void *data, size_t len)
{
    int was_empty = c->q.count == 0;
    if (sendq_push_frame(&c->q, opcode, data, len) != 0)
        return MG_SEND_NOMEM;
    if (was_empty)
        writer_wake(gw, c);
    return MG_SEND_OK;
}

static void conn_count_out(mg_gw *gw, size_t payload)
{
    gw->metrics->messages_out++;
    gw->metrics->bytes_out += payload;
}

int conn_send(mg_gw *gw, mg_conn *c, int opcode, const void *data, size_t len)
{
    if (!conn_can_send(c))
        return MG_SEND_CLOSED;
    int rc = conn_over_limit(gw, c, len);
    if (rc != MG_SEND_OK)
        return rc;
    size_t wlen = len; /* what goes in the frame: compressed, if c compresses it */
    const void *wire = compress_send_frame(gw, c, &opcode, data, &wlen);
    if (!wire)
        return MG_SEND_NOMEM;
    rc = writer_frame(gw, c, opcode, wire, wlen);
    if (rc == MG_SEND_OK) {
        conn_count_out(gw, len);
        if (opcode & MG_OP_RSV1)
            compress_sent(gw, len, wlen);
    }
    return rc;
}

int conn_send_shared(mg_gw *gw, mg_conn *c, mg_buf *b)
{
    if (!conn_can_send(c))
        return MG_SEND_CLOSED;
    int rc = conn_over_limit(gw, c, b->len);
    if (rc != MG_SEND_OK)
        return rc;
    int was_empty = c->q.count == 0;
    if (sendq_push_shared(&c->q, b) != 0)
        return MG_SEND_NOMEM;
    if (was_empty)
        writer_wake(gw, c);
    conn_count_out(gw, b->len);
    return MG_SEND_OK;
}

int conn_send_control(mg_gw *gw, mg_conn *c, int opcode, const void *data, size_t len)
{
    if (!c->wsi)
        return MG_SEND_CLOSED;
    int rc = opcode == MG_OP_CLOSE ? MG_SEND_OK : conn_over_limit(gw, c, len);
    return rc != MG_SEND_OK ? rc : conn_push(gw, c, opcode, data, len);
}

const char *conn_send_error(int rc)
{
    switch (rc) {
    case MG_SEND_CLOSED:
        return "connection closed";
    case MG_SEND_DROPPED:
        return "send queue full";
    case MG_SEND_EVICTED:
        return "slow consumer";
    case MG_SEND_NOMEM:
        return "out of memory";
    default:
        return NULL;
    }
}

void conn_set_close(mg_conn *c, int code, const char *reason, size_t len)
{
    c->close_code = code;
    free(c->close_reason);
    if (len > CONN_REASON_MAX)
        len = CONN_REASON_MAX;
    c->close_reason = malloc(len + 1); /* NULL on OOM reads as "" */
    if (c->close_reason) {
        memcpy(c->close_reason, reason, len);
        c->close_reason[len] = '\0';
    }
}

const char *conn_close_reason(const mg_conn *c)
{
    return c->close_reason ? c->close_reason : "";
}

void conn_leave_open(mg_gw *gw, mg_conn *c, mg_conn_state state)
{
    if (c->state == MG_CONN_OPEN)
        conn_count(gw, -1);
    c->state = state;
}

void conn_close(mg_gw *gw, mg_conn *c, int code, const char *reason, int discard)
{
    if (!c->wsi || c->state != MG_CONN_OPEN)
        return;
    conn_leave_open(gw, c, MG_CONN_CLOSING);
    conn_set_close(c, code, reason ? reason : "", reason ? strlen(reason) : 0);
    if (discard)
        sendq_discard(&c->q); /* a frame partly written is finished first */
    /* The close frame goes through the queue, after everything queued
     * before it; the peer's answer ends the connection (server.c). */
    unsigned char body[2 + CONN_REASON_MAX];
    const char *why = conn_close_reason(c);
    size_t rlen = strlen(why);
    body[0] = (unsigned char)(code >> 8);
    body[1] = (unsigned char)code;
    memcpy(body + 2, why, rlen);
    sendq_push_frame(&c->q, MG_OP_CLOSE, body, 2 + rlen);
    conn_arm_close_timeout(gw, c);
    writer_wake(gw, c);
}

void conn_arm_close_timeout(mg_gw *gw, mg_conn *c)
{
    /* lws timeouts have a granularity of seconds. */
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK,
                    (int)((gw->cfg->close_timeout_ms + 999) / 1000));
}
