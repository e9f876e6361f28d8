/* http.c — plain HTTP answers and the admin API (see http.h). */
#include "http.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "admin.h"
#include "admin_fanout.h"
#include "admin_ops.h"
#include "broker.h"
#include "cluster.h"
#include "fdguard.h"
#include "conn.h"
#include "gwctl.h"
#include "log.h"
#include "lwsc.h"
#include "lwsmem.h"
#include "peer.h"
#include "pubsub.h"
#include "workers.h"

static const char *http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    default:
        return status < 500 ? "Client Error" : "Server Error";
    }
}

/* The response is built here rather than with lws's header helpers: before
 * lws has routed a request (as when an upgrade is refused) they answer
 * "HTTP/1.0" with no reason phrase, which some clients reject.  Every
 * response says "connection: close" and the caller closes after it. */
int http_respond(struct lws *wsi, int status, const char *ctype, const char *body, size_t len,
                 const char *extra_name, const char *extra_value)
{
    char head[512];
    int hn =
        snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\n"
                 "%s%s%s%sconnection: close\r\n\r\n",
                 status, http_reason(status), ctype, len, extra_name ? extra_name : "",
                 extra_name ? " " : "", extra_name ? extra_value : "", extra_name ? "\r\n" : "");
    if (hn < 0 || (size_t)hn >= sizeof(head))
        return -1;
    unsigned char *buf = malloc(LWS_PRE + (size_t)hn + len);
    if (!buf)
        return -1;
    memcpy(buf + LWS_PRE, head, (size_t)hn);
    if (len)
        memcpy(buf + LWS_PRE + hn, body, len);
    int n = lws_write(wsi, buf + LWS_PRE, (size_t)hn + len, LWS_WRITE_RAW);
    free(buf);
    return n < 0 ? -1 : 0;
}

/* ---- admin API ---- */

typedef struct {
    char path[640]; /* the route's target points in here */
    admin_route route;
    char *body;
    size_t len;
    int discard;     /* refused with a body coming: read it and drop it */
    int waiting;     /* for the body: acted on at HTTP_BODY_COMPLETION */
    int reload;      /* POST /reload: ADMIN_RELOAD_WAITING, _OK or _FAILED */
    uint32_t fanout; /* with workers: the request asked of every worker, or 0 */
} admin_session;

enum { ADMIN_RELOAD_NONE, ADMIN_RELOAD_WAITING, ADMIN_RELOAD_OK, ADMIN_RELOAD_FAILED };

/* How long a POST /reload waits for its answer: the config is read on a
 * thread, then the script's main chunk and on_reload run (each within the
 * hook budget, 60 s at most). */
#define ADMIN_RELOAD_WAIT_S 130

size_t http_admin_session_size(void)
{
    return sizeof(admin_session);
}

/* Answer and close (the response says "connection: close"). */
static int admin_reply(struct lws *wsi, int status, const char *ctype, const char *body)
{
    http_respond(wsi, status, ctype, body, strlen(body), NULL, NULL);
    return -1;
}

/* Answer with the JSON in out (freed), and close. */
static int admin_reply_json(struct lws *wsi, int status, json_buf *out, const char *allow)
{
    if (out->oom) {
        json_buf_free(out);
        admin_ops_error(out, 500, "out of memory");
        status = 500;
    }
    http_respond(wsi, status, "application/json", out->p ? out->p : "", out->len,
                 allow ? "allow:" : NULL, allow);
    json_buf_free(out);
    return -1;
}

/* {"error": msg} */
static int admin_reply_error(struct lws *wsi, int status, const char *msg)
{
    json_buf out = {0};
    return admin_reply_json(wsi, admin_ops_error(&out, status, msg), &out, NULL);
}

/* Escape s as a JSON string body into out. */
static void admin_json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", ch);
        } else {
            out[n++] = (char)ch;
        }
    }
    out[n] = '\0';
}

/* Workers running, of how many (1 of 1 with one process). */
static uint32_t admin_workers_up(const mg_gw *gw)
{
    uint32_t up = 0;
    if (!gw->shared)
        return 1;
    for (uint32_t i = 0; i < gw->shared->nworkers; i++)
        up += __atomic_load_n(&gw->shared->slot[i].pid, __ATOMIC_RELAXED) != 0;
    return up;
}

static int admin_health(mg_gw *gw, struct lws *wsi)
{
    char body[1024], paths[256];
    uint64_t conns = gw->metrics->connections;
    if (gw->shared) {
        mg_metrics all;
        workers_metrics_sum(gw->shared, &all);
        conns = all.connections;
    }
    int n = snprintf(body, sizeof(body),
                     "{\"status\":\"%s\",\"connections\":%llu,\"generation\":%llu,"
                     "\"broker\":\"%s\"",
                     gw->draining ? "draining" : "ok", (unsigned long long)conns,
                     (unsigned long long)gw->generation, broker_state(gw));
    if (gw->cluster)
        n += snprintf(body + n, sizeof(body) - (size_t)n, ",\"cluster\":\"%s\",\"node\":\"%s\"",
                      cluster_state(gw), gw->cfg->cluster->node);
    /* The fast paths of this process (lwsc.h): every worker probes its own
     * the same way, so one answers for all. */
    lwsc_json(gw, paths, sizeof(paths));
    n += snprintf(body + n, sizeof(body) - (size_t)n, ",\"libwebsockets\":\"%s\",\"fast_paths\":%s",
                  lws_get_library_version(), paths);
    if (gw->shared) /* which worker answered, and how many run */
        snprintf(body + n, sizeof(body) - (size_t)n,
                 ",\"worker\":%u,\"workers\":%u,\"workers_up\":%u}\n", gw->worker, gw->nworkers,
                 admin_workers_up(gw));
    else
        snprintf(body + n, sizeof(body) - (size_t)n, "}\n");
    return admin_reply(wsi, gw->draining ? 503 : 200, "application/json", body);
}

/* The per-worker series, after the sums. */
static size_t admin_metrics_workers(const mg_gw *gw, char *buf, size_t len)
{
    mg_worker_metrics w[CONFIG_MAX_WORKERS];
    const mg_shared *sh = gw->shared;
    for (uint32_t i = 0; i < sh->nworkers; i++) {
        const mg_worker_slot *sl = &sh->slot[i];
        int32_t pid = __atomic_load_n(&sl->pid, __ATOMIC_RELAXED);
        w[i] = (mg_worker_metrics){
            .worker = i + 1,
            .pid = pid,
            .connections = __atomic_load_n(&sl->metrics.connections, __ATOMIC_RELAXED),
            .restarts = __atomic_load_n(&sl->restarts, __ATOMIC_RELAXED),
            .resident_bytes = pid ? metrics_resident_bytes(pid) : 0,
            .messages_in = __atomic_load_n(&sl->metrics.messages_in, __ATOMIC_RELAXED),
            .peer_dropped = __atomic_load_n(&sl->metrics.peer_dropped, __ATOMIC_RELAXED),
            .open_fds = pid ? metrics_open_fds(pid) : 0,
        };
    }
    return metrics_render_workers(w, sh->nworkers, buf, len);
}

/* process_*: this process, or the master and every worker added up. */
static size_t admin_metrics_process(const mg_gw *gw, char *buf, size_t len)
{
    mg_proc_metrics p = {0};
    if (!gw->shared) {
        metrics_process_add(0, 1, &p);
    } else {
        int first = metrics_process_add(gw->shared->master_pid, 1, &p) != 0;
        for (uint32_t i = 0; i < gw->shared->nworkers; i++) {
            int32_t pid = __atomic_load_n(&gw->shared->slot[i].pid, __ATOMIC_RELAXED);
            if (pid && metrics_process_add(pid, first, &p) == 0)
                first = 0;
        }
    }
    return metrics_render_process(&p, buf, len);
}

/* The exposition's size: the fixed series fit in 32 KiB with room to
 * spare; each worker adds eight labelled lines. */
#define ADMIN_METRICS_BASE 32768
#define ADMIN_METRICS_PER_WORKER 1024

static int admin_metrics(mg_gw *gw, struct lws *wsi)
{
    size_t cap = ADMIN_METRICS_BASE +
                 (gw->shared ? (size_t)gw->shared->nworkers * ADMIN_METRICS_PER_WORKER : 0);
    char *body = malloc(cap);
    if (!body)
        return admin_reply(wsi, 500, "text/plain", "out of memory\n");
    lwsmem_stats st;
    gw->metrics->handshakes_pending = fdguard_pending();
    lwsmem_get_stats(&st);
    mg_mem_metrics mem = {.resident_bytes = metrics_resident_bytes(0),
                          .lws_heap_bytes = st.heap_bytes,
                          .rx_buffers = st.rx_slots,
                          .rx_releases = st.rx_releases,
                          .kept_bytes = st.warm_bytes,
                          .trimmed = st.trimmed};
    const mg_metrics *m = gw->metrics;
    mg_metrics all;
    if (gw->shared) {
        /* Every worker's, added up; reloads are the gateway's (the master
         * counts one per reload of all workers); memory is every worker's
         * (the lws figures are this worker's). */
        workers_metrics_sum(gw->shared, &all);
        all.reloads = gw->shared->reloads;
        all.reload_failures = gw->shared->reload_failures;
        mem.resident_bytes = 0;
        for (uint32_t i = 0; i < gw->shared->nworkers; i++) {
            int32_t pid = __atomic_load_n(&gw->shared->slot[i].pid, __ATOMIC_RELAXED);
            mem.resident_bytes += pid ? metrics_resident_bytes(pid) : 0;
        }
        m = &all;
    }
    size_t n = metrics_render(m, gw->generation, &mem, body, cap - 1);
    n += admin_metrics_process(gw, body + n, cap - 1 - n);
    if (gw->shared)
        n += admin_metrics_workers(gw, body + n, cap - 1 - n);
    body[n] = '\0';
    int rc = admin_reply(wsi, 200, "text/plain; version=0.0.4", body);
    free(body);
    return rc;
}

/* gwctl_done_fn: the reload asked for by the request on wsi has ended. */
static void admin_reloaded(void *arg, int ok)
{
    struct lws *wsi = arg;
    admin_session *s = lws_wsi_user(wsi);
    s->reload = ok ? ADMIN_RELOAD_OK : ADMIN_RELOAD_FAILED;
    lws_callback_on_writable(wsi);
}

static int admin_reload(mg_gw *gw, struct lws *wsi, admin_session *s)
{
    s->reload = ADMIN_RELOAD_WAITING;
    lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, ADMIN_RELOAD_WAIT_S);
    gwctl_reload_all(gw, admin_reloaded, wsi);
    return 0; /* answered when it has ended (admin_reload_answer) */
}

static int admin_reload_answer(mg_gw *gw, struct lws *wsi, admin_session *s)
{
    char body[2300];
    if (s->reload == ADMIN_RELOAD_OK) {
        snprintf(body, sizeof(body), "{\"ok\":true,\"generation\":%llu}\n",
                 (unsigned long long)gw->generation);
        return admin_reply(wsi, 200, "application/json", body);
    }
    char esc[2048];
    admin_json_escape(esc, sizeof(esc), gw->last_reload_error);
    snprintf(body, sizeof(body), "{\"ok\":false,\"error\":\"%s\"}\n", esc);
    return admin_reply(wsi, 500, "application/json", body);
}

static int admin_broadcast(mg_gw *gw, struct lws *wsi, admin_session *s)
{
    char body[128];
    const char *data = s->body ? s->body : "";
    const char *bad = admin_body_check(&s->route, data, s->len);
    if (bad)
        return admin_reply_error(wsi, 400, bad);
    int binary = s->route.binary;
    int op = binary ? MG_OP_BINARY : MG_OP_TEXT;
    long n = pubsub_broadcast(gw, op, data, s->len, 0);
    if (n >= 0) {
        peers_broadcast(gw, op, data, s->len, 0);
        cluster_broadcast(gw, op, data, s->len, 0);
    }
    log_info("admin broadcast of %zu bytes (%s) to %ld connections%s", s->len,
             binary ? "binary" : "text", n, gw->peers ? " here, and to every other worker" : "");
    /* sent: this worker's clients; with workers, the others count theirs
     * in moongate_messages_out_total. */
    if (gw->peers)
        snprintf(body, sizeof(body), "{\"ok\":%s,\"sent\":%ld,\"workers\":%u}\n",
                 n < 0 ? "false" : "true", n, gw->nworkers);
    else
        snprintf(body, sizeof(body), "{\"ok\":%s,\"sent\":%ld}\n", n < 0 ? "false" : "true", n);
    return admin_reply(wsi, n < 0 ? 500 : 200, "application/json", body);
}

/* How long the connection may wait for the workers' answer: their
 * deadline, and room for a loaded machine (admin_fanout.c answers first). */
#define ADMIN_FANOUT_WAIT_S (ADMIN_FANOUT_WAIT_MS / 1000 + 5)

/* With workers: a listing or close asked of every worker (admin_fanout.h),
 * answered when the connection becomes writable. */
static int admin_ask_workers(mg_gw *gw, struct lws *wsi, admin_session *s, const admin_body *b,
                             json_buf *out)
{
    int status = admin_fanout_start(gw, wsi, &s->route, b, &s->fanout, out);
    if (status)
        return status;
    lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, ADMIN_FANOUT_WAIT_S);
    return 0;
}

static int admin_workers_answer(mg_gw *gw, struct lws *wsi, admin_session *s)
{
    json_buf out = {0};
    int status = admin_fanout_take(gw, s->fanout, &out);
    if (!status)
        return 0; /* not yet */
    s->fanout = 0;
    return admin_reply_json(wsi, status, &out, NULL);
}

/* /send, /publish, /clients/{id|name}/close: the JSON body, then the act. */
static int admin_json_act(mg_gw *gw, struct lws *wsi, admin_session *s)
{
    admin_body b;
    json_buf out = {0};
    int status;
    if (admin_body_parse(s->route.action, s->body ? s->body : "", s->len, &b) != 0)
        status = admin_ops_error(&out, 400, b.err);
    else if (s->route.action == ADMIN_SEND)
        status = admin_ops_send(gw, &b, &out);
    else if (s->route.action == ADMIN_PUBLISH)
        status = admin_ops_publish(gw, &b, &out);
    else if (gw->peers)
        status = admin_ask_workers(gw, wsi, s, &b, &out);
    else
        status = admin_ops_close(gw, &s->route, &b, &out);
    admin_body_free(&b);
    return status ? admin_reply_json(wsi, status, &out, NULL) : 0;
}

/* What the route says, now that the body (if any) is in. */
static int admin_act(mg_gw *gw, struct lws *wsi, admin_session *s)
{
    json_buf out = {0};
    int status;
    switch (s->route.action) {
    case ADMIN_CLIENTS:
    case ADMIN_TOPICS:
        if (gw->peers)
            status = admin_ask_workers(gw, wsi, s, NULL, &out);
        else if (s->route.action == ADMIN_CLIENTS)
            status = admin_ops_clients(gw, &s->route, &out);
        else
            status = admin_ops_topics(gw, &s->route, &out);
        return status ? admin_reply_json(wsi, status, &out, NULL) : 0;
    case ADMIN_SEND:
    case ADMIN_PUBLISH:
    case ADMIN_CLOSE:
        return admin_json_act(gw, wsi, s);
    case ADMIN_HEALTH:
        return admin_health(gw, wsi);
    case ADMIN_METRICS:
        return admin_metrics(gw, wsi);
    case ADMIN_RELOAD:
        return admin_reload(gw, wsi, s);
    case ADMIN_BROADCAST:
        return admin_broadcast(gw, wsi, s);
    default:
        return admin_reply_error(wsi, 500, "internal error");
    }
}

/* A header's value into buf, or NULL if the request has none. */
static const char *admin_hdr(struct lws *wsi, enum lws_token_indexes t, char *buf, int len)
{
    if (lws_hdr_total_length(wsi, t) <= 0 || lws_hdr_copy(wsi, buf, len, t) < 0)
        return NULL;
    return buf;
}

static admin_method admin_method_of(struct lws *wsi)
{
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0)
        return ADMIN_GET;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0)
        return ADMIN_POST;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0)
        return ADMIN_HEAD;
    return ADMIN_OTHER;
}

/* The refusal goes out at once.  A body the client is still sending is
 * read and dropped (lws reads exactly Content-Length bytes, within
 * ADMIN_DISCARD_S) before the connection closes: closing with unread bytes
 * would reset it, and the client could lose the answer.  A chunked body,
 * which lws cannot delimit, is drained as far as it has arrived. */
#define ADMIN_DISCARD_S 10

static int admin_refuse(struct lws *wsi, admin_session *s, const admin_req *r)
{
    json_buf out = {0};
    admin_reply_json(wsi, admin_ops_error(&out, s->route.status, s->route.reason), &out,
                     s->route.allow);
    if (r->clen > 0 && !r->chunked) {
        s->discard = 1;
        lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, ADMIN_DISCARD_S);
        return 0;
    }
    if (r->chunked) {
        int fd = lws_get_socket_fd(wsi);
        char sink[4096];
        shutdown(fd, SHUT_WR);
        for (int i = 0; i < 256 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
            ;
    }
    return -1;
}

static int admin_request(mg_gw *gw, struct lws *wsi, admin_session *s, const char *path)
{
    char kind[64], ctype[128], auth[512], clen[32], limit[32], after[512];
    /* A longer path matches no route (a name is at most a few hundred bytes). */
    snprintf(s->path, sizeof(s->path), "%s", strlen(path) < sizeof(s->path) ? path : "/");
    admin_req r = {.method = admin_method_of(wsi),
                   .path = s->path,
                   .kind = lws_get_urlarg_by_name(wsi, "kind=", kind, sizeof(kind)),
                   .limit = lws_get_urlarg_by_name(wsi, "limit=", limit, sizeof(limit)),
                   .after = lws_get_urlarg_by_name(wsi, "after=", after, sizeof(after)),
                   .ctype = admin_hdr(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, ctype, sizeof(ctype)),
                   .auth = admin_hdr(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, auth, sizeof(auth)),
                   .clen = -1,
                   .chunked = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0};
    if (admin_hdr(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, clen, sizeof(clen)))
        r.clen = strtoll(clen, NULL, 10);
    admin_route_request(&r, gw->cfg->admin_token, &s->route);
    if (s->route.action == ADMIN_REFUSE)
        return admin_refuse(wsi, s, &r);
    if (r.method == ADMIN_POST && r.clen > 0) {
        s->waiting = 1;
        return 0; /* the body comes in HTTP_BODY */
    }
    return admin_act(gw, wsi, s);
}

static int admin_body_in(admin_session *s, const void *in, size_t len)
{
    if (s->discard)
        return 0;
    if (s->len + len > ADMIN_BODY_MAX) /* more than Content-Length said */
        return -1;
    char *nb = realloc(s->body, s->len + len + 1);
    if (!nb)
        return -1;
    if (len)
        memcpy(nb + s->len, in, len);
    s->body = nb;
    s->len += len;
    s->body[s->len] = '\0';
    return 0;
}

int http_admin_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
    mg_gw *gw = lws_context_user(lws_get_context(wsi));
    admin_session *s = user;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return admin_request(gw, wsi, s, in);
    case LWS_CALLBACK_HTTP_BODY:
        if (admin_body_in(s, in, len) != 0)
            return admin_reply_error(wsi, 413, "body too large");
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (s->discard)
            return -1;
        if (!s->waiting) /* "Content-Length: 0": acted on already */
            return 0;
        s->waiting = 0;
        return admin_act(gw, wsi, s);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (s && s->reload > ADMIN_RELOAD_WAITING)
            return admin_reload_answer(gw, wsi, s);
        if (s && s->fanout)
            return admin_workers_answer(gw, wsi, s);
        return 0;
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (s && s->reload == ADMIN_RELOAD_WAITING)
            gwctl_reload_forget(gw, wsi);
        if (s && s->fanout) /* an answer that comes now finds nothing */
            admin_fanout_forget(gw, s->fanout);
        if (s) {
            s->fanout = 0;
            s->reload = ADMIN_RELOAD_NONE;
            free(s->body);
            s->body = NULL;
            s->len = 0;
        }
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}
