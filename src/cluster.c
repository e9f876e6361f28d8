/* cluster.c — several nodes as one gateway over RabbitMQ (cluster.h). */
#include "cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "amqp_link.h"
#include "conn.h"
#include "log.h"
#include "peer.h"
#include "pubsub.h"
#include "server.h"
#include "wire.h"
#include "workers.h"

enum {
    CL_HELLO = 1, /* a node's speaker: tell me your node's names */
    CL_BEACON,    /* a node's speaker: my node is still here */
    CL_FORGET,    /* u16 len, member key or node id: its names are gone */
    CL_REJOIN,    /* relayed by a speaker to its node: claim your names again */
    CL_SEND_ID,   /* u8 opcode, u64 id, payload */
    CL_SEND_NAME, /* u8 opcode, u16 len, name, payload */
    CL_PUBLISH,   /* u8 opcode, u16 len, topic, payload */
    CL_BROADCAST, /* u8 opcode, u64 except, payload */
    CL_CLAIM,     /* u64 id, i64 stamp, u16 len, name */
    CL_UNCLAIM,   /* u64 id, u16 len, name */
};

/* AMQP routing keys are at most 255 bytes: longer topics and names stay
 * on their node. */
#define CL_KEY_MAX 255
#define CL_MEMBER_KEY 32

typedef struct cl_member { /* another member, as last heard */
    int32_t pid;
} cl_member;

typedef struct cl_name { /* another member's client holds a name */
    char member[CL_MEMBER_KEY];
    uint64_t id;
    int64_t stamp;
} cl_name;

typedef struct mg_cluster {
    mg_gw *gw;
    amqp_link *link;
    struct lws *wsi;
    int up;
    char key[CL_MEMBER_KEY]; /* "<node id>.<worker>" */
    char app_id[64];         /* key.pid: who sent a message */
    char x_direct[160], x_publish[160], x_fanout[160];
    int speaker;  /* worker 1: hears the fanout for its node and relays it (peer.c) */
    dict members; /* key -> cl_member */
    dict nodes;   /* node id -> int64_t when last heard from (speaker) */
    dict names;   /* name -> cl_name */
    lws_sorted_usec_list_t beacon;
} mg_cluster;

/* ---- small parts ---- */

/* ---- sending ---- */

static amqp_bytes_t cl_bytes(const char *s)
{
    return amqp_bytes_malloc_dup(amqp_cstring_bytes(s));
}

/* One message to exchange with key, from app_id.  Dropped, and counted,
 * while the link is down or too far behind. */
static void cl_send_as(mg_gw *gw, const char *app_id, const char *exchange, const char *key,
                       const wire_msg *m)
{
    mg_cluster *c = gw->cluster;
    if (!c->up || link_pending_sends(c->link) >= CLUSTER_PENDING_MAX) {
        gw->metrics->cluster_dropped++;
        return;
    }
    link_cmd *cmd = link_cmd_new(LINK_CMD_SEND);
    if (!cmd) {
        gw->metrics->cluster_dropped++;
        return;
    }
    cmd->exchange = cl_bytes(exchange);
    cmd->routing_key = cl_bytes(key);
    cmd->body = amqp_bytes_malloc(wire_len(m));
    cmd->props._flags = AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    cmd->props.delivery_mode = 1; /* transient */
    amqp_pool_alloc_bytes(&cmd->pool, strlen(app_id), &cmd->props.app_id);
    if (!cmd->exchange.bytes || !cmd->routing_key.bytes || !cmd->body.bytes ||
        !cmd->props.app_id.bytes) {
        link_cmd_free(cmd);
        gw->metrics->cluster_dropped++;
        return;
    }
    wire_write(cmd->body.bytes, m);
    memcpy(cmd->props.app_id.bytes, app_id, cmd->props.app_id.len);
    link_post(c->link, cmd);
    gw->metrics->cluster_sent++;
}

static void cl_send(mg_gw *gw, const char *exchange, const char *key, const wire_msg *m)
{
    cl_send_as(gw, gw->cluster->app_id, exchange, key, m);
}

/* A message that is its type byte alone (hello, beacon). */
static void cl_send_type(mg_gw *gw, uint8_t type)
{
    wire_msg m = {.head = &type, .head_len = 1};
    cl_send(gw, gw->cluster->x_fanout, "", &m);
}

static void cl_member_key(uint32_t node, uint32_t worker, char *out)
{
    snprintf(out, CL_MEMBER_KEY, "%u.%u", node, worker);
}

int cluster_send_id(mg_gw *gw, uint64_t id, int opcode, const void *data, size_t len)
{
    mg_cluster *c = gw->cluster;
    if (!c)
        return 0;
    uint32_t node = (uint32_t)(id % (CONFIG_MAX_NODE_ID + 1)), k = workers_owner(gw, id);
    if (node == gw->node_id)
        return 0; /* ours, or this node's other worker's (peer.c) */
    char key[CL_MEMBER_KEY];
    cl_member_key(node, k, key);
    struct {
        uint8_t type, op;
        uint64_t id;
    } __attribute__((packed)) h = {CL_SEND_ID, (uint8_t)opcode, id};
    wire_msg m = {.head = &h, .head_len = sizeof(h), .data = data, .data_len = len};
    cl_send(gw, c->x_direct, key, &m);
    return 1;
}

int cluster_send_name(mg_gw *gw, const char *name, int opcode, const void *data, size_t len)
{
    mg_cluster *c = gw->cluster;
    cl_name *n = c ? dict_get(&c->names, name, strlen(name)) : NULL;
    if (!n)
        return 0;
    wire_op h = {CL_SEND_NAME, (uint8_t)opcode};
    wire_msg m = {&h, sizeof(h), name, strlen(name), data, len};
    cl_send(gw, c->x_direct, n->member, &m);
    return 1;
}

void cluster_publish(mg_gw *gw, const char *topic, int opcode, const void *data, size_t len)
{
    mg_cluster *c = gw->cluster;
    size_t tl = strlen(topic);
    if (!c || tl > CL_KEY_MAX)
        return;
    wire_op h = {CL_PUBLISH, (uint8_t)opcode};
    wire_msg m = {&h, sizeof(h), topic, tl, data, len};
    cl_send(gw, c->x_publish, topic, &m);
}

void cluster_broadcast(mg_gw *gw, int opcode, const void *data, size_t len, uint64_t except_id)
{
    mg_cluster *c = gw->cluster;
    if (!c)
        return;
    struct {
        uint8_t type, op;
        uint64_t except;
    } __attribute__((packed)) h = {CL_BROADCAST, (uint8_t)opcode, except_id};
    wire_msg m = {.head = &h, .head_len = sizeof(h), .data = data, .data_len = len};
    cl_send(gw, c->x_fanout, "", &m);
}

void cluster_interest(mg_gw *gw, const char *topic, int on)
{
    mg_cluster *c = gw->cluster;
    size_t tl = strlen(topic);
    if (!c || tl > CL_KEY_MAX)
        return;
    link_cmd *cmd = link_cmd_new(on ? LINK_CMD_BIND : LINK_CMD_UNBIND);
    if (!cmd)
        return;
    cmd->routing_key = cl_bytes(topic);
    if (!cmd->routing_key.bytes) {
        link_cmd_free(cmd);
        return;
    }
    link_post(c->link, cmd); /* the link keeps the set across reconnects */
}

/* ---- names ---- */

/* A claim frame, flat (for a relay): type, u64 id, i64 stamp, u16 name;
 * h holds at least 19 + CL_KEY_MAX bytes. */
static size_t cl_claim_frame(unsigned char *h, const char *name, size_t nl, uint64_t id,
                             int64_t stamp)
{
    wire_claim c = {CL_CLAIM, id, stamp};
    wire_msg m = {.head = &c, .head_len = sizeof(c), .str = name, .str_len = nl};
    wire_write(h, &m);
    return wire_len(&m);
}

static void cl_tell_claim(mg_gw *gw, const char *exchange, const char *key, const char *name,
                          uint64_t id, int64_t stamp)
{
    wire_claim h = {CL_CLAIM, id, stamp};
    wire_msg m = {.head = &h, .head_len = sizeof(h), .str = name, .str_len = strlen(name)};
    cl_send(gw, exchange, key, &m);
}

int cluster_has_name(mg_gw *gw, const char *name)
{
    mg_cluster *c = gw->cluster;
    return c && dict_get(&c->names, name, strlen(name)) != NULL;
}

int cluster_name_free(mg_gw *gw, const char *name)
{
    mg_cluster *c = gw->cluster;
    if (!c || gw->cfg->duplicate_names != MG_DUP_REJECT)
        return 0;
    return dict_get(&c->names, name, strlen(name)) ? -1 : 0;
}

void cluster_claim(mg_gw *gw, const char *name, uint64_t id, int64_t stamp)
{
    mg_cluster *c = gw->cluster;
    size_t nl = strlen(name);
    if (!c || nl > CL_KEY_MAX)
        return;
    if (gw->cfg->duplicate_names == MG_DUP_REPLACE)
        free(dict_del(&c->names, name, nl));
    cl_tell_claim(gw, c->x_fanout, "", name, id, stamp);
}

void cluster_unclaim(mg_gw *gw, const char *name, uint64_t id)
{
    mg_cluster *c = gw->cluster;
    size_t nl = strlen(name);
    if (!c || nl > CL_KEY_MAX)
        return;
    wire_unclaim h = {CL_UNCLAIM, id};
    wire_msg m = {.head = &h, .head_len = sizeof(h), .str = name, .str_len = nl};
    cl_send(gw, c->x_fanout, "", &m);
}

void cluster_name_lost(mg_gw *gw, const char *name, uint64_t id, int64_t stamp)
{
    mg_cluster *c = gw->cluster;
    size_t nl = strlen(name);
    cl_name *n = c ? dict_get(&c->names, name, nl) : NULL;
    if (n && conn_claim_wins(gw, stamp, id, n->stamp, n->id))
        free(dict_del(&c->names, name, nl));
}

static void cl_on_claim(mg_gw *gw, const char *member, const char *name, uint64_t id, int64_t stamp)
{
    mg_cluster *c = gw->cluster;
    size_t nl = strlen(name);
    if (!conn_claim_contest(gw, name, id, stamp))
        return;
    cl_name *n = dict_get(&c->names, name, nl);
    if (n && strcmp(n->member, member) != 0 && !conn_claim_wins(gw, stamp, id, n->stamp, n->id))
        return;
    if (!n) {
        int err;
        if (!(n = malloc(sizeof(*n))))
            return;
        dict_set(&c->names, name, nl, n, &err);
        if (err) {
            free(n);
            return;
        }
    }
    snprintf(n->member, sizeof(n->member), "%s", member);
    n->id = id;
    n->stamp = stamp;
    peers_name_lost(gw, name, id, stamp); /* this node's other worker's holder loses to it */
}

static void cl_on_unclaim(mg_gw *gw, const char *member, const char *name, uint64_t id)
{
    mg_cluster *c = gw->cluster;
    size_t nl = strlen(name);
    cl_name *n = dict_get(&c->names, name, nl);
    if (n && n->id == id && strcmp(n->member, member) == 0)
        free(dict_del(&c->names, name, nl));
}

/* who is a member key ("3.2") or a node ("3"). */
static int cl_of(const char *member, const char *who)
{
    size_t n = strlen(who);
    return !strncmp(member, who, n) && (member[n] == 0 || (member[n] == '.' && !strchr(who, '.')));
}

static int cl_names_of(const dict_entry *e, void *who)
{
    return cl_of(((const cl_name *)e->val)->member, who);
}

/* Forget the names that member, or every member of a node, holds. */
static void cl_forget(mg_gw *gw, const char *who)
{
    dict_del_if(&gw->cluster->names, cl_names_of, (void *)who);
}

/* A speaker forgets who and has its node forget it too. */
static void cl_forget_all(mg_gw *gw, const char *who)
{
    uint8_t h = CL_FORGET;
    unsigned char f[CL_MEMBER_KEY + 3];
    wire_msg m = {.head = &h, .head_len = 1, .str = who, .str_len = strlen(who)};
    wire_write(f, &m);
    cl_forget(gw, who);
    peers_relay(gw, 0, "", f, wire_len(&m));
}

/* Tell every node to forget the names of member (a worker of ours). */
static void cl_send_forget(mg_gw *gw, const char *member)
{
    uint8_t h = CL_FORGET;
    wire_msg m = {.head = &h, .head_len = 1, .str = member, .str_len = strlen(member)};
    cl_send(gw, gw->cluster->x_fanout, "", &m);
}

/* Answer a speaker's hello: every name of this node, ours and our other
 * workers' (from peer.c's directory). */
struct cl_answer {
    mg_gw *gw;
    const char *to;
};

static void cl_answer_peer(void *arg, const char *name, uint32_t worker, uint64_t id, int64_t stamp)
{
    struct cl_answer *a = arg;
    mg_gw *gw = a->gw;
    char member[CL_MEMBER_KEY];
    cl_member_key(gw->node_id, worker, member);
    size_t nl = strlen(name);
    if (nl > CL_KEY_MAX)
        return;
    wire_claim h = {CL_CLAIM, id, stamp};
    wire_msg m = {.head = &h, .head_len = sizeof(h), .str = name, .str_len = nl};
    /* sent as that worker's claim (pid 0: no incarnation to track), so
     * that the receiver files it under the member a send by name must
     * reach */
    char app_id[CL_MEMBER_KEY + 4];
    snprintf(app_id, sizeof(app_id), "%s.0", member);
    cl_send_as(gw, app_id, gw->cluster->x_direct, a->to, &m);
}

static void cl_tell_names(mg_gw *gw, const char *to)
{
    mg_cluster *c = gw->cluster;
    dict_entry *e;
    for (size_t i = 0; (e = dict_next(&gw->claims, &i));) {
        mg_conn *conn = conn_find_name(gw, e->key);
        if (conn)
            cl_tell_claim(gw, c->x_direct, to, e->key, conn->id, *(int64_t *)e->val);
    }
    struct cl_answer a = {gw, to};
    peers_each_name(gw, cl_answer_peer, &a);
}

/* Our clients claim their names again (members may have forgotten them). */
static void cl_reclaim(mg_gw *gw)
{
    mg_cluster *c = gw->cluster;
    dict_entry *e;
    for (size_t i = 0; (e = dict_next(&gw->claims, &i));) {
        mg_conn *conn = conn_find_name(gw, e->key);
        if (conn)
            cl_tell_claim(gw, c->x_fanout, "", e->key, conn->id, *(int64_t *)e->val);
    }
}

/* ---- members come and go ---- */

/* Note a message from member (app_id "key.pid"): the key, or NULL if it
 * came from this node (its workers were served over peer.c's links) or
 * is malformed.  pid 0: a speaker answering for its node's other workers. */
static const char *cl_heard(mg_gw *gw, const char *app_id, char *key)
{
    mg_cluster *c = gw->cluster;
    const char *dot = strrchr(app_id, '.');
    if (!dot || (size_t)(dot - app_id) >= CL_MEMBER_KEY)
        return NULL;
    memcpy(key, app_id, (size_t)(dot - app_id));
    key[dot - app_id] = 0;
    uint32_t node = (uint32_t)atoi(key);
    if (node == gw->node_id || !strchr(key, '.'))
        return NULL;
    char nk[16];
    snprintf(nk, sizeof(nk), "%u", node);
    int64_t *seen = dict_get(&c->nodes, nk, strlen(nk));
    if (!seen && (seen = malloc(sizeof(*seen)))) {
        int err;
        dict_set(&c->nodes, nk, strlen(nk), seen, &err);
        if (err) {
            free(seen);
            seen = NULL;
        }
    }
    if (seen)
        *seen = gw_now(gw);
    int32_t pid = (int32_t)atoi(dot + 1);
    if (!pid)
        return key;
    size_t kl = strlen(key);
    cl_member *m = dict_get(&c->members, key, kl);
    if (m && m->pid != pid && c->speaker) /* a new process as that member */
        cl_forget_all(gw, key);
    if (!m) {
        int err;
        if (!(m = calloc(1, sizeof(*m))))
            return key;
        dict_set(&c->members, key, kl, m, &err);
        if (err) {
            free(m);
            return key;
        }
    }
    m->pid = pid;
    return key;
}

static int cl_silent(const dict_entry *e, void *arg)
{
    mg_gw *gw = arg;
    if (gw_now(gw) - *(const int64_t *)e->val <= CLUSTER_EXPIRE_MS)
        return 0;
    log_warn("cluster: node %s silent for %d s: its names are forgotten", e->key,
             CLUSTER_EXPIRE_MS / 1000);
    cl_forget_all(gw, e->key); /* the names, not this table */
    return 1;
}

/* A speaker forgets the nodes not heard from for CLUSTER_EXPIRE_MS. */
static void cl_expire(mg_gw *gw)
{
    dict_del_if(&gw->cluster->nodes, cl_silent, gw);
}

/* ---- incoming ---- */

/* A message from member, off the broker (relayed 0; then a speaker
 * passes on what its node's other workers need) or from this node's
 * speaker (relayed 1). */
static void cl_dispatch(mg_gw *gw, const char *from, const unsigned char *m, size_t n, int relayed)
{
    mg_cluster *c = gw->cluster;
    wire_rd r = {m, m + n, 0};
    uint8_t type, op;
    uint64_t id = 0;
    int64_t stamp = 0;
    char sb[300], *heap = NULL, *s = NULL;
    int relay = !relayed && c->speaker;
    wire_take(&r, &type, 1);
    if (!relayed)
        gw->metrics->cluster_received++;
    switch (type) {
    case CL_HELLO:
        if (!relayed)
            cl_tell_names(gw, from);
        break;
    case CL_REJOIN:
        if (relayed)
            cl_reclaim(gw);
        break;
    case CL_FORGET:
        if ((s = wire_take_str(&r, sb, sizeof(sb), &heap))) {
            if (relay)
                cl_forget_all(gw, s);
            else
                cl_forget(gw, s);
        }
        break;
    case CL_SEND_ID: {
        wire_take(&r, &op, 1);
        wire_take(&r, &id, 8);
        mg_conn *conn = r.bad ? NULL : conn_find(gw, id);
        if (conn)
            conn_send(gw, conn, op, r.p, (size_t)(r.end - r.p));
        break;
    }
    case CL_SEND_NAME:
    case CL_PUBLISH:
        wire_take(&r, &op, 1);
        if (!(s = wire_take_str(&r, sb, sizeof(sb), &heap)))
            break;
        if (type == CL_PUBLISH) {
            pubsub_publish(gw, s, op, r.p, (size_t)(r.end - r.p));
        } else {
            mg_conn *conn = conn_find_name(gw, s);
            if (conn)
                conn_send(gw, conn, op, r.p, (size_t)(r.end - r.p));
        }
        break;
    case CL_BROADCAST:
        wire_take(&r, &op, 1);
        wire_take(&r, &id, 8);
        if (r.bad)
            break;
        pubsub_broadcast(gw, op, r.p, (size_t)(r.end - r.p), id);
        if (relay) /* the fanout reaches one worker a node: its speaker */
            peers_broadcast(gw, op, r.p, (size_t)(r.end - r.p), id);
        break;
    case CL_CLAIM:
    case CL_UNCLAIM:
        wire_take(&r, &id, 8);
        if (type == CL_CLAIM)
            wire_take(&r, &stamp, 8);
        if (!(s = wire_take_str(&r, sb, sizeof(sb), &heap)))
            break;
        if (type == CL_CLAIM)
            cl_on_claim(gw, from, s, id, stamp);
        else
            cl_on_unclaim(gw, from, s, id);
        if (relay)
            peers_relay(gw, 0, from, m, n);
        break;
    default: /* CL_BEACON: being heard was the point */
        break;
    }
    free(heap);
}

void cluster_on_relay(mg_gw *gw, const void *data, size_t len)
{
    if (!gw->cluster)
        return;
    wire_rd r = {data, (const unsigned char *)data + len, 0};
    char mb[CL_MEMBER_KEY], *heap = NULL;
    char *member = wire_take_str(&r, mb, sizeof(mb), &heap);
    if (member && !heap && r.p < r.end)
        cl_dispatch(gw, member, r.p, (size_t)(r.end - r.p), 1);
    free(heap);
}

/* Worker k of this node said hello: its speaker tells it every other
 * node's name it knows. */
void cluster_on_peer_hello(mg_gw *gw, uint32_t k)
{
    mg_cluster *c = gw->cluster;
    if (!c || !c->speaker)
        return;
    dict_entry *e;
    for (size_t i = 0; (e = dict_next(&c->names, &i));) {
        const cl_name *n = e->val;
        unsigned char h[300];
        if (e->klen > CL_KEY_MAX)
            continue;
        peers_relay(gw, k, n->member, h, cl_claim_frame(h, e->key, e->klen, n->id, n->stamp));
    }
}

void cluster_on_peer_gone(mg_gw *gw, uint32_t k)
{
    mg_cluster *c = gw->cluster;
    if (!c)
        return;
    char member[CL_MEMBER_KEY];
    cl_member_key(gw->node_id, k, member);
    cl_send_forget(gw, member);
}

static void cl_delivery(mg_gw *gw, link_delivery *d)
{
    const amqp_basic_properties_t *p = &d->msg.properties;
    char app[64], key[CL_MEMBER_KEY];
    if (!(p->_flags & AMQP_BASIC_APP_ID_FLAG) || p->app_id.len >= sizeof(app))
        return;
    memcpy(app, p->app_id.bytes, p->app_id.len);
    app[p->app_id.len] = 0;
    const char *from = cl_heard(gw, app, key);
    if (from && d->msg.body.len)
        cl_dispatch(gw, from, d->msg.body.bytes, d->msg.body.len, 0);
}

/* Up again (or for the first time): claim our names again (other nodes
 * may have forgotten them); a speaker also says hello for its node and
 * has the node's other workers claim theirs again. */
static void cl_joined(mg_gw *gw, const char *what)
{
    mg_cluster *c = gw->cluster;
    c->up = 1;
    gw->metrics->cluster_up = 1;
    log_info("cluster: member %s joined via %s", c->key, what ? what : "the broker");
    if (c->speaker) {
        uint8_t rejoin = CL_REJOIN;
        cl_send_type(gw, CL_HELLO);
        peers_relay(gw, 0, "", &rejoin, 1);
    }
    cl_reclaim(gw);
}

int cluster_on_readable(mg_gw *gw, struct lws *wsi)
{
    mg_cluster *c = gw->cluster;
    if (!c || wsi != c->wsi)
        return 0;
    link_event *e = link_take(c->link);
    while (e) {
        link_event *next = e->next;
        switch (e->type) {
        case LINK_EV_UP:
            cl_joined(gw, e->text);
            break;
        case LINK_EV_DOWN:
            if (c->up)
                log_warn("cluster: broker connection lost (%s): serving this node's clients "
                         "alone; retrying in %u ms",
                         e->text ? e->text : "?", e->retry_ms);
            c->up = 0;
            gw->metrics->cluster_up = 0;
            break;
        case LINK_EV_DELIVERY:
            cl_delivery(gw, e->d);
            break;
        default:
            break;
        }
        link_event_free(e);
        e = next;
    }
    return 1;
}

/* ---- start and stop ---- */

/* A speaker, every CLUSTER_BEACON_MS: say the node is here, forget the
 * silent ones. */
static void cl_tick(lws_sorted_usec_list_t *sul)
{
    mg_cluster *c = lws_container_of(sul, mg_cluster, beacon);
    mg_gw *gw = c->gw;
    if (c->up)
        cl_send_type(gw, CL_BEACON);
    cl_expire(gw);
    lws_sul_schedule(gw->lws, 0, &c->beacon, cl_tick, (lws_usec_t)CLUSTER_BEACON_MS * 1000);
}

const char *cluster_state(const mg_gw *gw)
{
    return !gw->cluster ? "off" : gw->cluster->up ? "up" : "down";
}

int cluster_start(mg_gw *gw, char *err, size_t errlen)
{
    const mg_cluster_config *cc = gw->cfg->cluster;
    if (!cc)
        return 0;
    mg_cluster *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->gw = gw;
    c->speaker = gw->worker <= 1;
    dict_init(&c->members);
    dict_init(&c->nodes);
    dict_init(&c->names);
    cl_member_key(cc->id, gw->worker, c->key);
    snprintf(c->app_id, sizeof(c->app_id), "%s.%d", c->key, (int)getpid());
    snprintf(c->x_direct, sizeof(c->x_direct), "%s.direct", cc->prefix);
    snprintf(c->x_publish, sizeof(c->x_publish), "%s.publish", cc->prefix);
    snprintf(c->x_fanout, sizeof(c->x_fanout), "%s.fanout", cc->prefix);
    gw->cluster = c;
    link_member m = {
        .prefix = cc->prefix, .key = c->key, .queue_max = cc->queue_max, .fanout = c->speaker};
    char why[256];
    c->link = link_start_member(gw->cfg->broker, &m, why, sizeof(why));
    /* lws closes what it adopts; the link closes its own fd. */
    if (!c->link || !(c->wsi = server_watch(gw, dup(link_event_fd(c->link))))) {
        snprintf(err, errlen, "cluster: %s", c->link ? "cannot watch the link" : why);
        return -1;
    }
    log_info("cluster: node %s (id %u), member %s%s, joining through the broker", cc->node, cc->id,
             c->key, c->speaker ? " (the node's speaker)" : "");
    if (c->speaker)
        lws_sul_schedule(gw->lws, 0, &c->beacon, cl_tick, (lws_usec_t)CLUSTER_BEACON_MS * 1000);
    return 0;
}

static void cl_free_vals(dict *d)
{
    dict_entry *e;
    for (size_t i = 0; (e = dict_next(d, &i));)
        free(e->val);
    dict_free(d);
}

void cluster_stop(mg_gw *gw)
{
    mg_cluster *c = gw->cluster;
    if (!c)
        return;
    if (c->up) /* other nodes forget our names now, not when they expire */
        cl_send_forget(gw, c->key);
    lws_sul_cancel(&c->beacon);
    link_stop(c->link, 500);
    cl_free_vals(&c->members);
    cl_free_vals(&c->nodes);
    cl_free_vals(&c->names);
    free(c);
    gw->cluster = NULL;
}
