/* test_conn.c — conn.c and pubsub.c without a live socket: the client
 * table (ids, lookup, request data, headers), attributes, logical names
 * under both duplicate-name policies, topic subscriptions, what
 * conn_destroy takes with it, the connection gauge, and sends to a
 * connection with no socket.
 *
 * Each test builds an mg_gw on the stack around config_new_defaults() and
 * frees everything at the end, so AddressSanitizer/LeakSanitizer see any
 * leak or double free in the table.  Connections have wsi == NULL: by
 * design conn_close() is then a no-op and sends report MG_SEND_CLOSED. */

#include "conn.h"
#include "log.h"
#include "pubsub.h"
#include "testlib.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Request headers as server.c collects them: lower-case names. */
static const char HEADERS[] = "host\0example.com\0"
                              "x-token\0abc123\0"
                              "empty\0\0"
                              "user-agent\0test/1.0\0";
#define HEADERS_LEN (sizeof(HEADERS) - 1)

static void gw_open(mg_gw *gw, mg_dup_policy dup)
{
    memset(gw, 0, sizeof(*gw));
    gw->cfg = config_new_defaults();
    if (!gw->cfg) {
        perror("config_new_defaults");
        exit(2);
    }
    gw->cfg->duplicate_names = dup;
    gw->metrics = &gw->metrics_own;
    conn_table_init(gw);
    pubsub_init(gw);
}

static void gw_close(mg_gw *gw)
{
    conn_table_free(gw); /* before pubsub_free: destroy detaches from topics */
    CHECK(gw->metrics->connections == 0);
    CHECK(gw->topics.count == 0);
    pubsub_free(gw);
    config_free(gw->cfg);
}

static mg_conn *open_conn(mg_gw *gw)
{
    mg_conn *c = conn_create(gw, NULL, "/ws", "a=1", "127.0.0.1", HEADERS, HEADERS_LEN, NULL);
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "conn_create failed\n");
        exit(2);
    }
    return c;
}

static mg_topic *topic(mg_gw *gw, const char *name)
{
    return dict_get(&gw->topics, name, strlen(name));
}

/* Whether c is in t's subscriber list, and t in c's topic list. */
static int subscribed(const mg_conn *c, const mg_topic *t)
{
    int in_t = 0, in_c = 0;
    for (size_t i = 0; t && i < t->nsubs; i++)
        in_t += t->subs[i] == c;
    for (uint32_t i = 0; i < c->ntopics; i++)
        in_c += c->topics[i] == t;
    return in_t == 1 && in_c == 1;
}

static size_t list_length(const mg_gw *gw)
{
    size_t n = 0;
    for (const mg_conn *c = gw->conn_list; c && n < 1000; c = c->next)
        n++;
    return n;
}

/* ----------------------------------------------------------- the table */

static void test_create(void)
{
    mg_gw gw;
    gw_open(&gw, MG_DUP_REPLACE);
    char path[] = "/ws", query[] = "a=1", remote[] = "127.0.0.1";
    char headers[sizeof(HEADERS)];
    memcpy(headers, HEADERS, sizeof(HEADERS));

    mg_conn *c = conn_create(&gw, NULL, path, query, remote, headers, HEADERS_LEN, NULL);
    CHECK(c != NULL);
    if (!c)
        return;
    /* The request data is copied. */
    memset(path, 0, sizeof(path));
    memset(query, 0, sizeof(query));
    memset(remote, 0, sizeof(remote));
    memset(headers, 0, sizeof(headers));
    CHECK_STR(c->path, "/ws");
    CHECK_STR(c->query, "a=1");
    CHECK_STR(c->remote, "127.0.0.1");
    CHECK(c->headers_len == HEADERS_LEN);
    CHECK_STR(conn_header(c, "host"), "example.com");

    CHECK(c->id == 1);
    CHECK(c->wsi == NULL);
    CHECK(c->state == MG_CONN_OPEN);
    CHECK(c->name == NULL);
    CHECK(c->nattrs == 0 && c->ntopics == 0);
    CHECK(c->q.count == 0 && c->q.bytes == 0);
    CHECK(c->lua_ref == -1);
    CHECK(!conn_is_open(c)); /* no socket */
    CHECK(conn_find(&gw, 1) == c);
    CHECK(gw.conn_list == c);

    /* A NULL query is stored as "". */
    mg_conn *d = conn_create(&gw, NULL, "/ws", NULL, "::1", HEADERS, HEADERS_LEN, NULL);
    CHECK(d != NULL);
    if (d)
        CHECK_STR(d->query, "");
    gw_close(&gw);
}

static void test_ids(void)
{
    mg_gw gw;
    gw_open(&gw, MG_DUP_REPLACE);

    mg_conn *a = open_conn(&gw), *b = open_conn(&gw), *c = open_conn(&gw);
    CHECK(a->id == 1 && b->id == 2 && c->id == 3);
    CHECK(conn_find(&gw, 1) == a);
    CHECK(conn_find(&gw, 2) == b);
    CHECK(conn_find(&gw, 3) == c);
    CHECK(conn_find(&gw, 0) == NULL);
    CHECK(conn_find(&gw, 4) == NULL);
    CHECK(gw.metrics->connections == 3);
    CHECK(gw.metrics->connections_total == 3);
    CHECK(list_length(&gw) == 3);

    conn_destroy(&gw, b);
    CHECK(conn_find(&gw, 2) == NULL);
    CHECK(conn_find(&gw, 1) == a && conn_find(&gw, 3) == c);
    CHECK(gw.metrics->connections == 2);
    CHECK(gw.metrics->connections_total == 3);
    CHECK(list_length(&gw) == 2);

    /* Ids are never reused: the next one is 4, not 2. */
    mg_conn *d = open_conn(&gw);
    CHECK(d->id == 4);
    CHECK(conn_find(&gw, 2) == NULL);
    CHECK(conn_find(&gw, 4) == d);
    CHECK(gw.metrics->connections == 3);
    CHECK(gw.metrics->connections_total == 4);

    /* Destroying the newest and oldest keeps the list consistent. */
    conn_destroy(&gw, d);
    conn_destroy(&gw, a);
    CHECK(gw.conn_list == c && c->prev == NULL && c->next == NULL);
    CHECK(gw.metrics->connections == 1);
    mg_conn *e = open_conn(&gw);
    CHECK(e->id == 5);

    /* Strictly increasing over many. */
    uint64_t last = e->id;
    int increasing = 1;
    for (int i = 0; i < 200; i++) {
        mg_conn *x = open_conn(&gw);
        increasing &= x->id == last + 1;
        last = x->id;
        if (i % 2)
            conn_destroy(&gw, x);
    }
    CHECK(increasing);
    CHECK(gw.metrics->connections == 2 + 100);
    CHECK(list_length(&gw) == gw.metrics->connections);
    CHECK(gw.conns_by_id.count == gw.metrics->connections);
    gw_close(&gw);
}

static void test_headers(void)
{
    mg_gw gw;
    gw_open(&gw, MG_DUP_REPLACE);
    mg_conn *c = open_conn(&gw);

    CHECK_STR(conn_header(c, "host"), "example.com");
    CHECK_STR(conn_header(c, "Host"), "example.com");
    CHECK_STR(conn_header(c, "HOST"), "example.com");
    CHECK_STR(conn_header(c, "X-Token"), "abc123");
    CHECK_STR(conn_header(c, "User-Agent"), "test/1.0");
    CHECK_STR(conn_header(c, "empty"), ""); /* present, empty */
    CHECK(conn_header(c, "missing") == NULL);
    CHECK(conn_header(c, "x-tok") == NULL);       /* prefix of a name */
    CHECK(conn_header(c, "x-token2") == NULL);    /* longer than a name */
    CHECK(conn_header(c, "example.com") == NULL); /* a value, not a name */
    CHECK(conn_header(c, "") == NULL);

    /* No headers at all. */
    mg_conn *d = conn_create(&gw, NULL, "/ws", "", "127.0.0.1", "", 0, NULL);
    CHECK(d != NULL);
    if (d) {
        CHECK(d->headers_len == 0);
        CHECK(conn_header(d, "host") == NULL);
    }
    gw_close(&gw);
}

/* ---------------------------------------------------------- attributes */

static mg_value str_value(const char *s, size_t len)
{
    mg_value v = {0};
    v.type = MG_VAL_STR;
    v.s = (char *)s;
    v.len = len;
    return v;
}

static void test_attributes(void)
{
    mg_gw gw;
    gw_open(&gw, MG_DUP_REPLACE);
    mg_conn *c = open_conn(&gw);
    const mg_value *v;

    CHECK(conn_attr_get(c, "user") == NULL);

    /* String with an embedded NUL, copied. */
    char src[] = "ab\0cd";
    mg_value sv = str_value(src, 5);
    CHECK(conn_attr_set(c, "user", &sv) == 0);
    memset(src, 'z', sizeof(src) - 1);
    v = conn_attr_get(c, "user");
    CHECK(v != NULL);
    if (v) {
        CHECK(v->type == MG_VAL_STR);
        CHECK(v->len == 5);
        CHECK(v->s != src);
        CHECK(memcmp(v->s, "ab\0cd", 5) == 0);
        CHECK(v->s[5] == '\0');
    }

    /* Number and booleans. */
    mg_value nv = {.type = MG_VAL_NUM, .n = 3.25};
    mg_value tv = {.type = MG_VAL_BOOL, .b = 1};
    mg_value fv = {.type = MG_VAL_BOOL, .b = 0};
    CHECK(conn_attr_set(c, "score", &nv) == 0);
    CHECK(conn_attr_set(c, "admin", &tv) == 0);
    CHECK(conn_attr_set(c, "muted", &fv) == 0);
    CHECK(c->nattrs == 4);
    v = conn_attr_get(c, "score");
    CHECK(v && v->type == MG_VAL_NUM && v->n == 3.25);
    v = conn_attr_get(c, "admin");
    CHECK(v && v->type == MG_VAL_BOOL && v->b == 1);
    v = conn_attr_get(c, "muted");
    CHECK(v && v->type == MG_VAL_BOOL && v->b == 0);

    /* Overwrite: same key, new type and value; no new entry. */
    mg_value nv2 = {.type = MG_VAL_NUM, .n = -1e9};
    CHECK(conn_attr_set(c, "user", &nv2) == 0);
    CHECK(c->nattrs == 4);
    v = conn_attr_get(c, "user");
    CHECK(v && v->type == MG_VAL_NUM && v->n == -1e9);
    mg_value long_str = str_value("a much longer string value", 26);
    CHECK(conn_attr_set(c, "score", &long_str) == 0);
    v = conn_attr_get(c, "score");
    CHECK(v && v->type == MG_VAL_STR && v->len == 26 && memcmp(v->s, "a much longer", 13) == 0);
    mg_value empty = str_value("", 0);
    CHECK(conn_attr_set(c, "score", &empty) == 0);
    v = conn_attr_get(c, "score");
    CHECK(v && v->type == MG_VAL_STR && v->len == 0 && v->s && v->s[0] == '\0');
    CHECK(c->nattrs == 4);

    /* nil deletes; the others stay reachable. */
    mg_value nil = {.type = MG_VAL_NIL};
    CHECK(conn_attr_set(c, "user", &nil) == 0);
    CHECK(conn_attr_get(c, "user") == NULL);
    CHECK(c->nattrs == 3);
    CHECK(conn_attr_get(c, "admin") != NULL);
    CHECK(conn_attr_get(c, "muted") != NULL);
    CHECK(conn_attr_get(c, "score") != NULL);
    /* Deleting a missing key is fine and changes nothing. */
    CHECK(conn_attr_set(c, "nobody", &nil) == 0);
    CHECK(c->nattrs == 3);
    /* Keys are exact. */
    CHECK(conn_attr_get(c, "Admin") == NULL);
    CHECK(conn_attr_get(c, "admi") == NULL);

    /* Set again after delete. */
    mg_value sv2 = str_value("back", 4);
    CHECK(conn_attr_set(c, "user", &sv2) == 0);
    v = conn_attr_get(c, "user");
    CHECK(v && v->type == MG_VAL_STR && v->len == 4 && memcmp(v->s, "back", 4) == 0);

    /* Attributes are per connection. */
    mg_conn *d = open_conn(&gw);
    CHECK(conn_attr_get(d, "user") == NULL);

    /* Destroying a conn with string attributes frees them (LeakSanitizer). */
    gw_close(&gw);
}

/* --------------------------------------------------------------- names */

static void test_name_register_rename(void)
{
    mg_gw gw;
    gw_open(&gw, MG_DUP_REPLACE);
    mg_conn *a = open_conn(&gw), *b = open_conn(&gw);
    const char *err = NULL;
    char name[] = "alice";

    CHECK(conn_find_name(&gw, "alice") == NULL);
    CHECK(conn_set_name(&gw, a, name, &err) == 0);
    memset(name, 0, sizeof(name)); /* copied */
    CHECK_STR(a->name, "alice");
    CHECK(conn_find_name(&gw, "alice") == a);
    CHECK(gw.conns_by_name.count == 1);

    /* Same name again: nothing changes. */
    CHECK(conn_set_name(&gw, a, "alice", &err) == 0);
    CHECK(conn_find_name(&gw, "alice") == a);
    CHECK(gw.conns_by_name.count == 1);

    /* Rename: the old name leaves the table. */
    CHECK(conn_set_name(&gw, a, "alicia", &err) == 0);
    CHECK_STR(a->name, "alicia");
    CHECK(conn_find_name(&gw, "alicia") == a);
    CHECK(conn_find_name(&gw, "alice") == NULL);
    CHECK(gw.conns_by_name.count == 1);

    /* The freed name is free for someone else, without evicting anyone. */
    CHECK(conn_set_name(&gw, b, "alice", &err) == 0);
    CHECK(conn_find_name(&gw, "alice") == b);
    CHECK(conn_find_name(&gw, "alicia") == a);
    CHECK_STR(a->name, "alicia");
    CHECK(gw.metrics->evictions[MG_EVICT_REPLACED] == 0);
    CHECK(gw.conns_by_name.count == 2);

    /* Names are case-sensitive. */
    CHECK(conn_find_name(&gw, "Alice") == NULL);

    /* Destroy removes the name. */
    conn_destroy(&gw, a);
    CHECK(conn_find_name(&gw, "alicia") == NULL);
    CHECK(conn_find_name(&gw, "alice") == b);
    CHECK(gw.conns_by_name.count == 1);
    gw_close(&gw);
    CHECK(gw.conns_by_name.count == 0);
}

static void test_name_replace(void)
{
    mg_gw gw;
    gw_open(&gw, MG_DUP_REPLACE);
    log_configure(MG_LOG_ERROR, MG_LOG_TEXT); /* quiet the "replaced" line */
    mg_conn *a = open_conn(&gw), *b = open_conn(&gw);
    const char *err = NULL;

    CHECK(conn_set_name(&gw, a, "bob", &err) == 0);
    CHECK(conn_set_name(&gw, b, "bob", &err) == 0);
    /* The older holder loses the name; the table maps it to the newer. */
    CHECK(a->name == NULL);
    CHECK_STR(b->name, "bob");
    CHECK(conn_find_name(&gw, "bob") == b);
    CHECK(gw.conns_by_name.count == 1);
    CHECK(gw.metrics->evictions[MG_EVICT_REPLACED] == 1);
    /* With no socket conn_close does nothing: a stays open, in the table. */
    CHECK(a->state == MG_CONN_OPEN && a->close_code == 0);
    CHECK(conn_find(&gw, a->id) == a);

    /* The loser can take another name without touching "bob". */
    CHECK(conn_set_name(&gw, a, "robert", &err) == 0);
    CHECK(conn_find_name(&gw, "bob") == b);
    CHECK(conn_find_name(&gw, "robert") == a);

    /* A holder that had renamed away cannot take "bob" from b by destroy. */
    conn_destroy(&gw, a);
    CHECK(conn_find_name(&gw, "bob") == b);
    CHECK(conn_find_name(&gw, "robert") == NULL);

    /* Taking over a name of a conn that is then destroyed. */
    mg_conn *c = open_conn(&gw);
    CHECK(conn_set_name(&gw, c, "bob", &err) == 0);
    CHECK(b->name == NULL);
    CHECK(gw.metrics->evictions[MG_EVICT_REPLACED] == 2);
    conn_destroy(&gw, b); /* b no longer holds it: c keeps "bob" */
    CHECK(conn_find_name(&gw, "bob") == c);
    conn_destroy(&gw, c);
    CHECK(conn_find_name(&gw, "bob") == NULL);
    CHECK(gw.conns_by_name.count == 0);
    gw_close(&gw);
    log_configure(MG_LOG_INFO, MG_LOG_TEXT);
}

static void test_name_reject(void)
{
    mg_gw gw;
    gw_open(&gw, MG_DUP_REJECT);
    mg_conn *a = open_conn(&gw), *b = open_conn(&gw);
    const char *err = NULL;

    CHECK(conn_set_name(&gw, a, "bob", &err) == 0);
    CHECK(err == NULL);
    CHECK(conn_set_name(&gw, b, "bob", &err) == -1);
    CHECK_STR(err, "name taken");
    CHECK_STR(a->name, "bob");
    CHECK(b->name == NULL);
    CHECK(conn_find_name(&gw, "bob") == a);
    CHECK(gw.metrics->evictions[MG_EVICT_REPLACED] == 0);

    /* A rejected rename keeps the conn's current name. */
    err = NULL;
    CHECK(conn_set_name(&gw, b, "bert", &err) == 0);
    CHECK(conn_set_name(&gw, b, "bob", &err) == -1);
    CHECK_STR(err, "name taken");
    CHECK_STR(b->name, "bert");
    CHECK(conn_find_name(&gw, "bert") == b);
    CHECK(conn_find_name(&gw, "bob") == a);

    /* The holder may re-set its own name. */
    CHECK(conn_set_name(&gw, a, "bob", &err) == 0);

    /* Once the holder is gone the name is free. */
    conn_destroy(&gw, a);
    CHECK(conn_find_name(&gw, "bob") == NULL);
    CHECK(conn_set_name(&gw, b, "bob", &err) == 0);
    CHECK(conn_find_name(&gw, "bob") == b);
    CHECK(conn_find_name(&gw, "bert") == NULL);
    CHECK(gw.conns_by_name.count == 1);
    gw_close(&gw);
}

/* -------------------------------------------------------------- pubsub */

static void test_subscribe(void)
{
    mg_gw gw;
    gw_open(&gw, MG_DUP_REPLACE);
    mg_conn *a = open_conn(&gw), *b = open_conn(&gw);

    CHECK(topic(&gw, "news") == NULL);
    CHECK(pubsub_subscribe(&gw, a, "news") == 0);
    mg_topic *t = topic(&gw, "news");
    CHECK(t != NULL);
    if (!t)
        return;
    CHECK_STR(t->name, "news");
    CHECK(t->nsubs == 1 && subscribed(a, t));

    /* Twice is the same as once. */
    CHECK(pubsub_subscribe(&gw, a, "news") == 0);
    CHECK(t->nsubs == 1 && a->ntopics == 1);
    CHECK(topic(&gw, "news") == t);

    CHECK(pubsub_subscribe(&gw, b, "news") == 0);
    CHECK(t->nsubs == 2 && subscribed(b, t));
    CHECK(pubsub_subscribe(&gw, a, "sports") == 0);
    CHECK(a->ntopics == 2);
    CHECK(gw.topics.count == 2);

    /* Unsubscribe one: the topic stays while b is in it. */
    pubsub_unsubscribe(&gw, a, "news");
    CHECK(topic(&gw, "news") == t);
    CHECK(t->nsubs == 1 && t->subs[0] == b);
    CHECK(a->ntopics == 1 && a->topics[0] == topic(&gw, "sports"));
    /* Again, and a topic that does not exist, and one a is not in. */
    pubsub_unsubscribe(&gw, a, "news");
    pubsub_unsubscribe(&gw, a, "nothing");
    CHECK(t->nsubs == 1 && a->ntopics == 1);
    CHECK(topic(&gw, "nothing") == NULL);

    /* The last subscriber leaving removes the topic. */
    pubsub_unsubscribe(&gw, b, "news");
    CHECK(topic(&gw, "news") == NULL);
    CHECK(b->ntopics == 0);
    CHECK(gw.topics.count == 1);

    /* Re-subscribing creates it anew. */
    CHECK(pubsub_subscribe(&gw, b, "news") == 0);
    CHECK(topic(&gw, "news") != NULL && topic(&gw, "news")->nsubs == 1);
    gw_close(&gw);
}

static void test_destroy_leaves_topics(void)
{
    mg_gw gw;
    gw_open(&gw, MG_DUP_REPLACE);
    mg_conn *a = open_conn(&gw), *b = open_conn(&gw);
    const char *names[] = {"t1", "t2", "t3", "t4", "t5", "t6"};

    for (int i = 0; i < 6; i++)
        CHECK(pubsub_subscribe(&gw, a, names[i]) == 0);
    for (int i = 0; i < 3; i++)
        CHECK(pubsub_subscribe(&gw, b, names[i]) == 0);
    CHECK(a->ntopics == 6 && b->ntopics == 3);
    CHECK(gw.topics.count == 6);

    conn_destroy(&gw, a);
    /* a's own topics vanished; the shared ones keep only b. */
    CHECK(gw.topics.count == 3);
    for (int i = 0; i < 3; i++) {
        mg_topic *t = topic(&gw, names[i]);
        CHECK(t && t->nsubs == 1 && t->subs[0] == b);
    }
    for (int i = 3; i < 6; i++)
        CHECK(topic(&gw, names[i]) == NULL);

    conn_destroy(&gw, b);
    CHECK(gw.topics.count == 0);

    /* Many subscribers to one topic, destroyed in a mixed order. */
    mg_conn *cs[20];
    for (int i = 0; i < 20; i++) {
        cs[i] = open_conn(&gw);
        pubsub_subscribe(&gw, cs[i], "room");
    }
    mg_topic *room = topic(&gw, "room");
    CHECK(room && room->nsubs == 20);
    for (int i = 0; i < 20; i += 2)
        conn_destroy(&gw, cs[i]);
    room = topic(&gw, "room");
    CHECK(room && room->nsubs == 10);
    int all_odd = 1;
    for (size_t i = 0; room && i < room->nsubs; i++)
        all_odd &= room->subs[i]->id % 2 == 0; /* cs[odd] have even ids */
    CHECK(all_odd);
    for (int i = 1; i < 20; i += 2)
        conn_destroy(&gw, cs[i]);
    CHECK(topic(&gw, "room") == NULL);
    gw_close(&gw);
}

/* With no sockets nobody receives, and the shared frame is freed. */
static void test_publish_no_sockets(void)
{
    mg_gw gw;
    gw_open(&gw, MG_DUP_REPLACE);
    mg_conn *a = open_conn(&gw), *b = open_conn(&gw);
    pubsub_subscribe(&gw, a, "news");
    pubsub_subscribe(&gw, b, "news");

    CHECK(pubsub_publish(&gw, "news", MG_OP_TEXT, "hi", 2) == 0);
    CHECK(pubsub_publish(&gw, "none", MG_OP_TEXT, "hi", 2) == 0);
    CHECK(pubsub_broadcast(&gw, MG_OP_TEXT, "all", 3, 0) == 0);
    CHECK(a->q.count == 0 && b->q.count == 0);
    CHECK(gw.metrics->messages_out == 0);
    gw_close(&gw);
}

/* ---------------------------------------------------------------- send */

static void test_send_without_socket(void)
{
    mg_gw gw;
    gw_open(&gw, MG_DUP_REPLACE);
    mg_conn *c = open_conn(&gw);

    CHECK(conn_send(&gw, c, MG_OP_TEXT, "hi", 2) == MG_SEND_CLOSED);
    CHECK(c->q.count == 0 && c->q.bytes == 0);
    CHECK(gw.metrics->messages_out == 0 && gw.metrics->bytes_out == 0);

    mg_buf *b = sendq_frame_new(MG_OP_TEXT, "shared", 6);
    CHECK(b != NULL);
    if (b) {
        CHECK(conn_send_shared(&gw, c, b) == MG_SEND_CLOSED);
        CHECK(b->refs == 0);
        sendq_buf_release(b);
    }

    CHECK_STR(conn_send_error(MG_SEND_CLOSED), "connection closed");
    CHECK_STR(conn_send_error(MG_SEND_DROPPED), "send queue full");
    CHECK_STR(conn_send_error(MG_SEND_EVICTED), "slow consumer");
    CHECK_STR(conn_send_error(MG_SEND_NOMEM), "out of memory");
    CHECK(conn_send_error(MG_SEND_OK) == NULL);

    /* conn_close without a socket: no state change. */
    conn_close(&gw, c, 4000, "bye", 1);
    CHECK(c->state == MG_CONN_OPEN && c->close_code == 0);
    gw_close(&gw);
}

/* ------------------------------------------------------------- cleanup */

/* conn_table_free takes everything a connection holds. */
static void test_table_free_everything(void)
{
    mg_gw gw;
    gw_open(&gw, MG_DUP_REPLACE);
    const char *err = NULL;
    char name[16];

    for (int i = 0; i < 50; i++) {
        mg_conn *c = open_conn(&gw);
        snprintf(name, sizeof(name), "user%d", i);
        conn_set_name(&gw, c, name, &err);
        mg_value v = str_value("payload\0x", 9);
        conn_attr_set(c, "k", &v);
        pubsub_subscribe(&gw, c, i % 2 ? "odd" : "even");
        pubsub_subscribe(&gw, c, "all");
        /* Queued data, as if sends were pending. */
        sendq_push_frame(&c->q, MG_OP_TEXT, "queued", 6);
        c->rx = malloc(32);
    }
    CHECK(gw.metrics->connections == 50);
    CHECK(gw.conns_by_name.count == 50);
    CHECK(gw.topics.count == 3);
    CHECK(conn_find_name(&gw, "user7") != NULL && conn_find_name(&gw, "user7")->id == 8);

    conn_table_free(&gw);
    CHECK(gw.conn_list == NULL);
    CHECK(gw.metrics->connections == 0);
    CHECK(gw.metrics->connections_total == 50);
    CHECK(gw.topics.count == 0);
    CHECK(gw.conns_by_id.count == 0 && gw.conns_by_name.count == 0);
    pubsub_free(&gw);
    config_free(gw.cfg);
}

TEST_MAIN("conn", T(test_create), T(test_ids), T(test_headers), T(test_attributes),
          T(test_name_register_rename), T(test_name_replace), T(test_name_reject),
          T(test_subscribe), T(test_destroy_leaves_topics), T(test_publish_no_sockets),
          T(test_send_without_socket), T(test_table_free_everything))
