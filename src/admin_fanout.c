/* admin_fanout.c — the admin API's listings and close across workers
 * (admin_fanout.h). */
#include "admin_fanout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_merge.h"
#include "admin_ops.h"
#include "log.h"

typedef struct fanout {
    mg_gw *gw;
    uint32_t req;    /* the request's id; 0: this slot is free */
    struct lws *wsi; /* who waits: valid while req is (http.c forgets req on close) */
    admin_action action;
    unsigned limit;
    char *arg; /* listings: after= (NULL: none); close: the target */
    size_t arg_len;
    int code; /* close: code and reason (or NULL) */
    char *reason;
    uint64_t waiting;   /* bit k - 1: worker k was asked and owes its part */
    uint64_t answered;  /* ... its part is in parts[k - 1] */
    uint64_t missing;   /* ... could not be asked, or did not answer in time */
    int starting;       /* still asking: the answer is not made yet */
    uint64_t closed;    /* close: the id a worker closed, 0 none yet ... */
    uint32_t closed_by; /* ... and which worker */
    int status;         /* the answer's HTTP status, 0 until it is made */
    json_buf out;       /* the answer */
    json_buf parts[CONFIG_MAX_WORKERS];
    lws_sorted_usec_list_t deadline;
} fanout;

struct admin_fanout {
    fanout f[ADMIN_FANOUT_MAX];
    uint32_t last_req;
};

#define BIT(k) ((uint64_t)1 << ((k)-1))

/* A worker acts on a query only this long before the asker's deadline, so
 * that its answer (a close done) arrives while the asker still waits. */
#define ADMIN_FANOUT_MARGIN_MS 250

static fanout *fanout_find(mg_gw *gw, uint32_t req)
{
    for (int i = 0; req && gw->fanout && i < ADMIN_FANOUT_MAX; i++)
        if (gw->fanout->f[i].req == req)
            return &gw->fanout->f[i];
    return NULL;
}

static void fanout_free_parts(fanout *f)
{
    for (int i = 0; i < CONFIG_MAX_WORKERS; i++)
        json_buf_free(&f->parts[i]);
}

static void fanout_free(fanout *f)
{
    lws_sul_cancel(&f->deadline);
    fanout_free_parts(f);
    json_buf_free(&f->out);
    free(f->arg);
    free(f->reason);
    memset(f, 0, sizeof(*f));
}

/* ,"missing":[k,...] */
static void fanout_missing(const fanout *f, json_buf *out)
{
    json_buf_raw(out, ",\"missing\":[", 12);
    for (uint32_t k = 1, n = 0; k <= f->gw->nworkers; k++)
        if (f->missing & BIT(k))
            json_buf_printf(out, n++ ? ",%u" : "%u", k);
    json_buf_raw(out, "]", 1);
}

static int fanout_page(fanout *f)
{
    mg_gw *gw = f->gw;
    admin_part ps[CONFIG_MAX_WORKERS];
    size_t n = 0;
    for (uint32_t k = 1; k <= gw->nworkers; k++)
        if (f->answered & BIT(k))
            ps[n++] =
                (admin_part){k, (const unsigned char *)f->parts[k - 1].p, f->parts[k - 1].len};
    json_buf *out = &f->out;
    json_buf_raw(out, "{", 1);
    int rc = f->action == ADMIN_TOPICS
                 ? admin_merge_topics(ps, n, f->limit, peers_topics_total(gw), out)
                 : admin_merge_clients(ps, n, f->limit, out);
    if (f->missing) {
        json_buf_raw(out, ",\"partial\":true", 15);
        fanout_missing(f, out);
    }
    json_buf_raw(out, "}\n", 2);
    if (rc == 0 && !out->oom)
        return 200;
    json_buf_free(out);
    return admin_ops_error(out, 500, "out of memory");
}

static int fanout_close_answer(fanout *f)
{
    json_buf *out = &f->out;
    if (f->closed) {
        json_buf_printf(out, "{\"closed\":%llu,\"code\":%d,\"worker\":%u}\n",
                        (unsigned long long)f->closed, f->code, f->closed_by);
        return 200;
    }
    if (!f->missing)
        return admin_ops_no_such_target(out, f->arg, f->arg_len);
    /* The client may be on a worker that did not answer: not a 404. */
    static const char pre[] = "no worker that answered holds client ",
                      post[] = " (not every worker answered)";
    json_buf msg = {0};
    json_buf_raw(&msg, pre, sizeof(pre) - 1);
    json_buf_raw(&msg, f->arg, f->arg_len);
    json_buf_raw(&msg, post, sizeof(post) - 1);
    json_buf_raw(out, "{\"error\":", 9);
    json_buf_str(out, msg.p ? msg.p : "", msg.len);
    json_buf_free(&msg);
    fanout_missing(f, out);
    json_buf_raw(out, "}\n", 2);
    return 503;
}

/* Every part is in, or the wait is over: make the answer and wake the
 * connection that waits for it. */
static void fanout_finish(fanout *f)
{
    if (f->status || f->starting)
        return;
    lws_sul_cancel(&f->deadline);
    f->missing |= f->waiting;
    f->waiting = 0;
    if (f->missing && !f->closed)
        log_warn("admin: %s answered without worker(s) that did not answer within %d ms",
                 f->action == ADMIN_CLOSE    ? "POST /clients/{id|name}/close"
                 : f->action == ADMIN_TOPICS ? "GET /topics"
                                             : "GET /clients",
                 ADMIN_FANOUT_WAIT_MS);
    f->status = f->action == ADMIN_CLOSE ? fanout_close_answer(f) : fanout_page(f);
    fanout_free_parts(f); /* the answer holds what is needed */
    lws_callback_on_writable(f->wsi);
}

static void fanout_deadline(lws_sorted_usec_list_t *sul)
{
    fanout_finish(lws_container_of(sul, fanout, deadline));
}

/* A free slot with a fresh request id, or NULL (too many wait). */
static fanout *fanout_new(mg_gw *gw)
{
    if (!gw->fanout && !(gw->fanout = calloc(1, sizeof(*gw->fanout))))
        return NULL;
    for (int i = 0; i < ADMIN_FANOUT_MAX; i++) {
        fanout *f = &gw->fanout->f[i];
        if (f->req)
            continue;
        if (!++gw->fanout->last_req)
            ++gw->fanout->last_req;
        f->gw = gw;
        f->req = gw->fanout->last_req;
        return f;
    }
    return NULL;
}

/* What the request asks, kept for the queries and the answer. */
static int fanout_fill(fanout *f, struct lws *wsi, const admin_route *rt, const admin_body *b)
{
    f->wsi = wsi;
    f->action = rt->action;
    f->limit = rt->limit;
    const char *arg = rt->action == ADMIN_CLOSE ? rt->target : rt->after;
    f->arg_len = rt->action == ADMIN_CLOSE ? rt->target_len : arg ? strlen(arg) : 0;
    if (arg && !(f->arg = malloc(f->arg_len + 1)))
        return -1;
    if (arg) {
        memcpy(f->arg, arg, f->arg_len);
        f->arg[f->arg_len] = '\0';
    }
    f->code = b ? b->code : 0;
    if (b && b->reason && !(f->reason = strdup(b->reason)))
        return -1;
    if (rt->action == ADMIN_CLIENTS)
        return admin_ops_clients_part(f->gw, f->limit, f->arg, &f->parts[f->gw->worker - 1]);
    if (rt->action == ADMIN_TOPICS)
        return admin_ops_topics_part(f->gw, f->limit, f->arg, &f->parts[f->gw->worker - 1]);
    return 0;
}

/* Ask every other worker; one that cannot be asked is missing. */
static void fanout_ask(fanout *f)
{
    mg_gw *gw = f->gw;
    peers_admin_query q = {.req = f->req,
                           .action = (uint8_t)f->action,
                           .limit = f->limit,
                           .code = f->code,
                           .arg = f->arg,
                           .arg_len = f->arg_len,
                           .reason = f->reason,
                           .expires_ms =
                               gw_clock_ms() + ADMIN_FANOUT_WAIT_MS - ADMIN_FANOUT_MARGIN_MS};
    f->starting = 1;
    for (uint32_t k = 1; k <= gw->nworkers; k++)
        if (k != gw->worker)
            f->waiting |= BIT(k);
    for (uint32_t k = 1; k <= gw->nworkers; k++) {
        if (k != gw->worker && peers_admin_ask(gw, k, &q) != 0 && (f->waiting & BIT(k))) {
            f->waiting &= ~BIT(k);
            f->missing |= BIT(k);
        }
    }
    f->starting = 0;
}

int admin_fanout_start(mg_gw *gw, struct lws *wsi, const admin_route *rt, const admin_body *b,
                       uint32_t *req, json_buf *out)
{
    if (rt->action == ADMIN_CLOSE) { /* ours? then no need to ask */
        uint64_t id = admin_ops_close_here(gw, rt->target, rt->target_len, b->code, b->reason);
        if (id) {
            json_buf_printf(out, "{\"closed\":%llu,\"code\":%d,\"worker\":%u}\n",
                            (unsigned long long)id, b->code, gw->worker);
            return 200;
        }
    }
    fanout *f = fanout_new(gw);
    if (!f) {
        char msg[128];
        snprintf(msg, sizeof(msg), "%d admin requests are waiting for the other workers already",
                 ADMIN_FANOUT_MAX);
        return admin_ops_error(out, 503, msg);
    }
    if (fanout_fill(f, wsi, rt, b) != 0) {
        fanout_free(f);
        return admin_ops_error(out, 500, "out of memory");
    }
    f->answered |= rt->action == ADMIN_CLOSE ? 0 : BIT(gw->worker);
    fanout_ask(f);
    *req = f->req;
    lws_sul_schedule(gw->lws, 0, &f->deadline, fanout_deadline,
                     (lws_usec_t)ADMIN_FANOUT_WAIT_MS * 1000);
    if (!f->waiting) /* nobody to wait for */
        fanout_finish(f);
    return 0;
}

int admin_fanout_take(mg_gw *gw, uint32_t req, json_buf *out)
{
    fanout *f = fanout_find(gw, req);
    if (!f)
        return admin_ops_error(out, 500, "the answer was lost");
    if (!f->status)
        return 0;
    int status = f->status;
    *out = f->out;
    f->out = (json_buf){0};
    fanout_free(f);
    return status;
}

void admin_fanout_forget(mg_gw *gw, uint32_t req)
{
    fanout *f = fanout_find(gw, req);
    if (f)
        fanout_free(f);
}

void admin_fanout_on_reply(mg_gw *gw, uint32_t k, uint32_t req, const void *part, size_t len)
{
    fanout *f = fanout_find(gw, req);
    if (!f || f->status || !(f->waiting & BIT(k)))
        return; /* answered, forgotten, or not asked */
    f->waiting &= ~BIT(k);
    if (f->action == ADMIN_CLOSE) {
        uint64_t id = 0;
        if (len == 8)
            memcpy(&id, part, 8);
        if (id) { /* done: the others have nothing to add */
            f->closed = id;
            f->closed_by = k;
            f->waiting = 0;
        }
    } else if (admin_part_valid(part, len, f->action == ADMIN_TOPICS)) {
        json_buf_raw(&f->parts[k - 1], part, len);
        if (f->parts[k - 1].oom)
            f->missing |= BIT(k);
        else
            f->answered |= BIT(k);
    } else {
        f->missing |= BIT(k); /* it could not make its part */
    }
    if (!f->waiting)
        fanout_finish(f);
}

void admin_fanout_on_gone(mg_gw *gw, uint32_t k)
{
    for (int i = 0; gw->fanout && i < ADMIN_FANOUT_MAX; i++) {
        fanout *f = &gw->fanout->f[i];
        if (!f->req || f->status || !(f->waiting & BIT(k)))
            continue;
        f->waiting &= ~BIT(k);
        f->missing |= BIT(k);
        if (!f->waiting)
            fanout_finish(f);
    }
}

void admin_fanout_on_query(mg_gw *gw, uint32_t k, const peers_admin_query *q)
{
    json_buf part = {0};
    /* Read too late (this worker was stopped, or busy): the asker has
     * answered without us, and a close done now would contradict it. */
    if (gw_clock_ms() >= q->expires_ms) {
        log_warn("admin: a query from worker %u came %lld ms after its deadline: ignored", k,
                 (long long)(gw_clock_ms() - q->expires_ms));
        return;
    }
    unsigned limit = q->limit < 1 ? 1 : q->limit > ADMIN_PAGE_MAX ? ADMIN_PAGE_MAX : q->limit;
    int rc = 0;
    switch (q->action) {
    case ADMIN_CLIENTS:
        rc = admin_ops_clients_part(gw, limit, q->arg, &part);
        break;
    case ADMIN_TOPICS:
        rc = admin_ops_topics_part(gw, limit, q->arg, &part);
        break;
    case ADMIN_CLOSE: {
        uint64_t id = q->arg ? admin_ops_close_here(gw, q->arg, q->arg_len, q->code, q->reason) : 0;
        json_buf_raw(&part, (const char *)&id, 8);
        break;
    }
    default:
        return;
    }
    /* Out of memory: an empty part, which the asker counts as missing. */
    if (rc != 0 || part.oom)
        part.len = 0;
    peers_admin_answer(gw, k, q->req, part.p ? part.p : "", part.len);
    json_buf_free(&part);
}

void admin_fanout_stop(mg_gw *gw)
{
    if (!gw->fanout)
        return;
    for (int i = 0; i < ADMIN_FANOUT_MAX; i++)
        if (gw->fanout->f[i].req)
            fanout_free(&gw->fanout->f[i]);
    free(gw->fanout);
    gw->fanout = NULL;
}
