/* pubsub.c — topics, publish and broadcast with shared frames. */
#include "pubsub.h"

#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "compress.h"
#include "conn.h"
#include "peer.h"

void pubsub_init(mg_gw *gw)
{
    dict_init(&gw->topics);
}

static void pubsub_topic_free(mg_topic *t)
{
    free(t->name);
    free(t->subs);
    free(t);
}

void pubsub_free(mg_gw *gw)
{
    dict_entry *e;
    for (size_t i = 0; (e = dict_next(&gw->topics, &i));)
        pubsub_topic_free(e->val);
    dict_free(&gw->topics);
}

static int pubsub_grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 4;
    void *na = realloc(*arr, ncap * elem);
    if (!na)
        return -1;
    *arr = na;
    *cap = ncap;
    return 0;
}

int pubsub_subscribe(mg_gw *gw, mg_conn *c, const char *name)
{
    size_t len = strlen(name);
    mg_topic *t = dict_get(&gw->topics, name, len);
    for (uint32_t i = 0; t && i < c->ntopics; i++)
        if (c->topics[i] == t)
            return 0;
    if (!t) {
        int err;
        t = calloc(1, sizeof(*t));
        if (!t || !(t->name = strdup(name))) {
            free(t);
            return -1;
        }
        dict_set(&gw->topics, name, len, t, &err);
        if (err) {
            pubsub_topic_free(t);
            return -1;
        }
        peers_interest(gw, name, 1);   /* publishes on other workers come here now */
        cluster_interest(gw, name, 1); /* ... and on other nodes */
    }
    size_t ccap = c->ntopics; /* conn's array grows one at a time: few topics each */
    mg_topic **nt = realloc(c->topics, (ccap + 1) * sizeof(*nt));
    if (!nt)
        return -1;
    c->topics = nt;
    if (pubsub_grow((void **)&t->subs, &t->cap, t->nsubs, sizeof(*t->subs)) != 0)
        return -1;
    t->subs[t->nsubs++] = c;
    c->topics[c->ntopics++] = t;
    return 0;
}

static void pubsub_detach(mg_gw *gw, mg_conn *c, mg_topic *t)
{
    for (size_t i = 0; i < t->nsubs; i++) {
        if (t->subs[i] == c) {
            t->subs[i] = t->subs[--t->nsubs];
            break;
        }
    }
    if (t->nsubs == 0) {
        peers_interest(gw, t->name, 0);
        cluster_interest(gw, t->name, 0);
        dict_del(&gw->topics, t->name, strlen(t->name));
        pubsub_topic_free(t);
    }
}

void pubsub_unsubscribe(mg_gw *gw, mg_conn *c, const char *name)
{
    mg_topic *t = dict_get(&gw->topics, name, strlen(name));
    if (!t)
        return;
    for (uint32_t i = 0; i < c->ntopics; i++) {
        if (c->topics[i] == t) {
            c->topics[i] = c->topics[--c->ntopics];
            pubsub_detach(gw, c, t);
            return;
        }
    }
}

void pubsub_unsubscribe_all(mg_gw *gw, mg_conn *c)
{
    for (uint32_t i = 0; i < c->ntopics; i++)
        pubsub_detach(gw, c, c->topics[i]);
    free(c->topics);
    c->topics = NULL;
    c->ntopics = 0;
}

/* One message of a fan-out to c: the frame every connection like it
 * shares (plain, or compressed once for its parameters), or its own
 * compressed copy. */
static int pubsub_send(mg_gw *gw, mg_conn *c, mg_fanout *f)
{
    int own = 0;
    mg_buf *b = compress_fanout_frame(gw, f, c, &own);
    if (own)
        return conn_send(gw, c, f->opcode, f->data, f->len);
    if (!b)
        return MG_SEND_NOMEM;
    int rc = conn_send_shared(gw, c, b);
    if (rc == MG_SEND_OK)
        compress_fanout_sent(gw, f, b);
    return rc;
}

long pubsub_publish(mg_gw *gw, const char *name, int opcode, const void *data, size_t len)
{
    mg_topic *t = dict_get(&gw->topics, name, strlen(name));
    if (!t)
        return 0;
    mg_fanout f;
    if (compress_fanout_init(&f, opcode, data, len) != 0)
        return -1;
    long sent = 0;
    /* A send may evict a slow consumer, which only marks it closing: the
     * subscriber array is not modified during the loop. */
    for (size_t i = 0; i < t->nsubs; i++)
        if (pubsub_send(gw, t->subs[i], &f) == MG_SEND_OK)
            sent++;
    compress_fanout_free(&f);
    return sent;
}

long pubsub_broadcast(mg_gw *gw, int opcode, const void *data, size_t len, uint64_t except_id)
{
    mg_fanout f;
    if (compress_fanout_init(&f, opcode, data, len) != 0)
        return -1;
    long sent = 0;
    for (mg_conn *c = gw->conn_list; c; c = c->next)
        if (c->id != except_id && pubsub_send(gw, c, &f) == MG_SEND_OK)
            sent++;
    compress_fanout_free(&f);
    return sent;
}
