/* admin_ops.c — the admin API's client and topic endpoints (admin_ops.h). */
#include "admin_ops.h"

#include <stdlib.h>
#include <string.h>

#include "admin_merge.h"
#include "cluster.h"
#include "conn.h"
#include "log.h"
#include "peer.h"
#include "pubsub.h"

int admin_ops_error(json_buf *out, int status, const char *msg)
{
    json_buf_raw(out, "{\"error\":", 9);
    json_buf_cstr(out, msg);
    json_buf_raw(out, "}\n", 2);
    return status;
}

/* {"error": prefix + what}, what being bytes from the request. */
static int admin_ops_error_about(json_buf *out, int status, const char *prefix, const char *what,
                                 size_t n)
{
    size_t pl = strlen(prefix);
    char *msg = malloc(pl + n + 1);
    if (!msg)
        return admin_ops_error(out, 500, "out of memory");
    memcpy(msg, prefix, pl);
    memcpy(msg + pl, what, n);
    json_buf_raw(out, "{\"error\":", 9);
    json_buf_str(out, msg, pl + n);
    json_buf_raw(out, "}\n", 2);
    free(msg);
    return status;
}

/* With workers each client says which worker holds it. */
static void admin_ops_client(const mg_gw *gw, json_buf *out, const mg_conn *c)
{
    const char *proto = conn_protocol(c);
    json_buf_printf(out, "{\"id\":%llu,\"name\":", (unsigned long long)c->id);
    if (c->name)
        json_buf_cstr(out, c->name);
    else
        json_buf_raw(out, "null", 4);
    json_buf_raw(out, ",\"remote\":", 10);
    json_buf_cstr(out, c->remote);
    json_buf_raw(out, ",\"path\":", 8);
    json_buf_cstr(out, c->path);
    json_buf_raw(out, ",\"protocol\":", 12);
    if (proto && *proto)
        json_buf_cstr(out, proto);
    else
        json_buf_raw(out, "null", 4);
    json_buf_printf(out, ",\"connected_at_ms\":%lld,\"queue_bytes\":%zu,\"subscriptions\":[",
                    (long long)c->since_ms, c->q.bytes);
    for (uint32_t i = 0; i < c->ntopics; i++) {
        if (i)
            json_buf_raw(out, ",", 1);
        json_buf_cstr(out, c->topics[i]->name);
    }
    if (gw->peers)
        json_buf_printf(out, "],\"worker\":%u}", gw->worker);
    else
        json_buf_raw(out, "]}", 2);
}

/* Where a page after the client with id after starts.  The list holds the
 * newest first and ids only grow, so a client gone since the last page
 * still marks the place. */
static mg_conn *admin_ops_clients_start(mg_gw *gw, uint64_t after)
{
    if (!after)
        return gw->conn_list;
    mg_conn *c = conn_find(gw, after);
    if (c)
        return c->next;
    for (c = gw->conn_list; c && c->id >= after; c = c->next)
        ;
    return c;
}

int admin_ops_clients_part(mg_gw *gw, unsigned limit, const char *after, json_buf *part)
{
    uint64_t from = after ? admin_parse_id(after, strlen(after)) : 0;
    json_buf one = {0};
    admin_part_begin(part, gw->conns_open);
    unsigned n = 0;
    mg_conn *c = admin_ops_clients_start(gw, from);
    for (; c && n < limit && !admin_part_full(part); c = c->next) {
        if (!conn_is_open(c))
            continue;
        one.len = 0;
        admin_ops_client(gw, &one, c);
        admin_part_client(part, c->id, one.p ? one.p : "", one.len);
        n++;
    }
    while (c && !conn_is_open(c))
        c = c->next;
    if (c)
        admin_part_set_more(part);
    int oom = part->oom || one.oom;
    json_buf_free(&one);
    return oom ? -1 : 0;
}

/* The page of one process: the merge of its own part. */
static int admin_ops_page(mg_gw *gw, const admin_route *rt, json_buf *out, int topics)
{
    json_buf part = {0};
    int rc = topics ? admin_ops_topics_part(gw, rt->limit, rt->after, &part)
                    : admin_ops_clients_part(gw, rt->limit, rt->after, &part);
    admin_part p = {gw->worker, (const unsigned char *)part.p, part.len};
    uint64_t total = 0;
    if (rc == 0 && topics)
        memcpy(&total, part.p, 8); /* the part's head: this process's topics */
    json_buf_raw(out, "{", 1);
    if (rc == 0)
        rc = topics ? admin_merge_topics(&p, 1, rt->limit, total, out)
                    : admin_merge_clients(&p, 1, rt->limit, out);
    json_buf_raw(out, "}\n", 2);
    json_buf_free(&part);
    if (rc == 0 && !out->oom)
        return 200;
    json_buf_free(out);
    return admin_ops_error(out, 500, "out of memory");
}

int admin_ops_clients(mg_gw *gw, const admin_route *rt, json_buf *out)
{
    return admin_ops_page(gw, rt, out, 0);
}

int admin_ops_no_such_target(json_buf *out, const char *t, size_t n)
{
    return admin_ops_error_about(out, 404, "no such client: ", t, n);
}

static int admin_ops_topic_cmp(const void *a, const void *b)
{
    return strcmp((*(mg_topic *const *)a)->name, (*(mg_topic *const *)b)->name);
}

int admin_ops_topics_part(mg_gw *gw, unsigned limit, const char *after, json_buf *part)
{
    /* In name order, so that after= (a name) holds its place while topics
     * come and go. */
    size_t nt = gw->topics.count, k = 0;
    mg_topic **all = malloc((nt ? nt : 1) * sizeof(*all));
    if (!all)
        return -1;
    dict_entry *e;
    for (size_t i = 0; k < nt && (e = dict_next(&gw->topics, &i));)
        all[k++] = e->val;
    qsort(all, k, sizeof(*all), admin_ops_topic_cmp);
    size_t i = 0;
    while (after && i < k && strcmp(all[i]->name, after) <= 0)
        i++;
    admin_part_begin(part, k);
    for (unsigned n = 0; i < k && n < limit && !admin_part_full(part); i++, n++) {
        size_t len = strlen(all[i]->name);
        if (len > UINT16_MAX) /* longer than a part holds: not listed */
            continue;
        admin_part_topic(part, all[i]->name, len, all[i]->nsubs);
    }
    if (i < k)
        admin_part_set_more(part);
    free(all);
    return part->oom ? -1 : 0;
}

int admin_ops_topics(mg_gw *gw, const admin_route *rt, json_buf *out)
{
    return admin_ops_page(gw, rt, out, 1);
}

/* The open client the path names: digits are an id, and the name if no
 * client has that id; anything else is a name. */
static mg_conn *admin_ops_target(mg_gw *gw, const char *t, size_t n)
{
    char name[512];
    uint64_t id = admin_parse_id(t, n);
    mg_conn *c = id ? conn_find(gw, id) : NULL;
    if (!c && n < sizeof(name)) {
        memcpy(name, t, n);
        name[n] = '\0';
        c = conn_find_name(gw, name);
    }
    return conn_is_open(c) ? c : NULL;
}

uint64_t admin_ops_close_here(mg_gw *gw, const char *t, size_t n, int code, const char *reason)
{
    mg_conn *c = admin_ops_target(gw, t, n);
    if (!c)
        return 0;
    log_info("admin: closing client %llu with %d%s%s", (unsigned long long)c->id, code,
             reason ? " " : "", reason ? reason : "");
    uint64_t id = c->id;
    conn_close(gw, c, code, reason, 0);
    return id;
}

int admin_ops_close(mg_gw *gw, const admin_route *rt, const admin_body *b, json_buf *out)
{
    uint64_t id = admin_ops_close_here(gw, rt->target, rt->target_len, b->code, b->reason);
    if (!id)
        return admin_ops_no_such_target(out, rt->target, rt->target_len);
    json_buf_printf(out, "{\"closed\":%llu,\"code\":%d}\n", (unsigned long long)id, b->code);
    return 200;
}

/* A send to no client of this process: to the worker or node that holds
 * it, as gw.send does.  1 handed on. */
static int admin_ops_send_elsewhere(mg_gw *gw, const admin_body *b, int op)
{
    if (b->id)
        return peers_send_id(gw, b->id, op, b->data, b->len) ||
               cluster_send_id(gw, b->id, op, b->data, b->len);
    return peers_send_name(gw, b->name, op, b->data, b->len) ||
           cluster_send_name(gw, b->name, op, b->data, b->len);
}

static int admin_ops_no_such(json_buf *out, const admin_body *b)
{
    char msg[64];
    if (b->id) {
        snprintf(msg, sizeof(msg), "no such client: %llu", (unsigned long long)b->id);
        return admin_ops_error(out, 404, msg);
    }
    return admin_ops_error_about(out, 404, "no such client: ", b->name, strlen(b->name));
}

int admin_ops_send(mg_gw *gw, const admin_body *b, json_buf *out)
{
    int op = b->binary ? MG_OP_BINARY : MG_OP_TEXT;
    mg_conn *c = b->id ? conn_find(gw, b->id) : conn_find_name(gw, b->name);
    if (!c) {
        if (!admin_ops_send_elsewhere(gw, b, op))
            return admin_ops_no_such(out, b);
        json_buf_raw(out, "{\"result\":\"forwarded\"}\n", 23);
        return 200;
    }
    int rc = conn_is_open(c) ? conn_send(gw, c, op, b->data, b->len) : MG_SEND_CLOSED;
    switch (rc) {
    case MG_SEND_OK:
        json_buf_printf(out, "{\"result\":\"queued\",\"id\":%llu}\n", (unsigned long long)c->id);
        return 200;
    case MG_SEND_DROPPED:
    case MG_SEND_EVICTED:
        json_buf_printf(out, "{\"result\":\"dropped\",\"id\":%llu,\"reason\":\"%s\"}\n",
                        (unsigned long long)c->id, conn_send_error(rc));
        return 200;
    case MG_SEND_CLOSED:
        return admin_ops_no_such(out, b);
    default:
        return admin_ops_error(out, 500, "out of memory");
    }
}

int admin_ops_publish(mg_gw *gw, const admin_body *b, json_buf *out)
{
    int op = b->binary ? MG_OP_BINARY : MG_OP_TEXT;
    long n = pubsub_publish(gw, b->name, op, b->data, b->len);
    if (n < 0)
        return admin_ops_error(out, 500, "out of memory");
    /* As gw.publish: to the other workers and nodes with subscribers. */
    peers_publish(gw, b->name, op, b->data, b->len);
    cluster_publish(gw, b->name, op, b->data, b->len);
    if (gw->peers || gw->cluster)
        json_buf_printf(out, "{\"delivered\":%ld,\"forwarded\":true}\n", n);
    else
        json_buf_printf(out, "{\"delivered\":%ld}\n", n);
    return 200;
}
