/* gwctl.c — the gateway's life cycle: config building, reload, drain. */
#include "gwctl.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "budget.h"
#include "fdguard.h"
#include "heartbeat.h"
#include "listen.h"
#include "log.h"
#include "master.h"
#include "notify.h"
#include "script.h"
#include "server.h"

mg_config *gwctl_build_config(const mg_overrides *o, char *err, size_t errlen)
{
    mg_config *cfg =
        o->config_file ? config_load(o->config_file, err, errlen) : config_new_defaults();
    if (!cfg)
        return NULL;
    if (o->listen && config_set_listen(cfg, o->listen, err, errlen) != 0)
        goto fail;
    if (o->path)
        config_set_path(cfg, o->path);
    if (o->script) {
        free(cfg->script);
        if (!(cfg->script = strdup(o->script)))
            goto oom;
    }
    if (config_validate(cfg, err, errlen) != 0)
        goto fail;
    return cfg;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    config_free(cfg);
    return NULL;
}

static int gwctl_same_strv(char *const *a, size_t na, char *const *b, size_t nb)
{
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return 0;
    return 1;
}

static int gwctl_same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Listeners are bound once, with their paths and subprotocols (listen.h);
 * say so if a reload asks for different ones. */
static void gwctl_check_listeners(const mg_config *a, const mg_config *b)
{
    int same = a->nlisteners == b->nlisteners;
    for (size_t i = 0; same && i < a->nlisteners; i++) {
        const mg_listener *x = &a->listeners[i], *y = &b->listeners[i];
        same = x->port == y->port && strcmp(x->host, y->host) == 0 &&
               gwctl_same_strv(x->paths, x->npaths, y->paths, y->npaths) &&
               gwctl_same_strv(x->protocols, x->nprotocols, y->protocols, y->nprotocols) &&
               !x->tls_cert == !y->tls_cert;
    }
    if (!same)
        log_warn("reload: listener changes take effect only after a restart");
    const mg_broker_config *x = a->broker, *y = b->broker;
    if (!x != !y || (x && strcmp(x->url, y->url) != 0))
        log_warn("reload: broker changes take effect only after a restart");
    if (a->admin_port != b->admin_port)
        log_warn("reload: admin listener changes take effect only after a restart");
    if (a->workers != b->workers)
        log_warn("reload: workers changes take effect only after a restart");
    if (a->max_header_size != b->max_header_size)
        log_warn("reload: limits.max_header_size takes effect only after a restart");
    const mg_cluster_config *p = a->cluster, *q = b->cluster;
    if (!p != !q ||
        (p && (strcmp(p->node, q->node) || p->id != q->id || strcmp(p->prefix, q->prefix))))
        log_warn("reload: cluster changes take effect only after a restart");
    if (!gwctl_same_str(a->pid_file, b->pid_file) || !gwctl_same_str(a->log_file, b->log_file) ||
        !gwctl_same_str(a->user, b->user) || !gwctl_same_str(a->group, b->group))
        log_warn("reload: pid_file, log.file, user and group changes take effect only after a "
                 "restart");
}

/* Make cfg the config the C side enforces: limits and heartbeats of every
 * connection, the log, the hook budget. */
static void gwctl_apply(mg_gw *gw, mg_config *cfg)
{
    gw->cfg = cfg;
    log_configure(cfg->log_level, cfg->log_format);
    budget_set(cfg->hook_budget_ms);
    fdguard_set_max(listen_max_handshakes(gw, cfg));
    heartbeat_reconfigure(gw);
}

/* ---- reload ----
 *
 * One reload at a time: its config is built on a thread (gwctl_read), which
 * signals an eventfd the loop watches when it is done; the loop joins it and
 * goes on with the script (gwctl_finish).  Who asked meanwhile waits for the
 * next one. */

#define GWCTL_WAITERS_MAX 64

typedef struct gwctl_waiter {
    gwctl_done_fn fn;
    void *arg;
} gwctl_waiter;

struct mg_reload {
    int efd;     /* eventfd: the config thread is done */
    int running; /* a thread is reading */
    int again;   /* a reload was asked for while it read */
    pthread_t thread;
    int64_t t0;        /* when the reload began, for the log */
    mg_overrides over; /* what the thread reads from (the gateway's own, unchanged) */
    mg_config *cfg;    /* its result, or NULL with err */
    char err[1024];
    gwctl_waiter waiting[GWCTL_WAITERS_MAX]; /* this reload's */
    int nwaiting;
    gwctl_waiter next[GWCTL_WAITERS_MAX]; /* the next one's */
    int nnext;
    /* Reloads of every worker asked of the master (gwctl_reload_all). */
    gwctl_waiter asks[GWCTL_WAITERS_MAX];
    uint32_t ask_seq[GWCTL_WAITERS_MAX];
    int nasks;
    uint32_t last_seq;
    uint32_t last_master_seq; /* the master's latest MG_CTL_RELOAD */
};

static void *gwctl_read(void *arg)
{
    struct mg_reload *r = arg;
    r->cfg = gwctl_build_config(&r->over, r->err, sizeof(r->err));
    uint64_t one = 1;
    (void)!write(r->efd, &one, sizeof(one));
    return NULL;
}

/* Tell this reload's waiters how it ended. */
static void gwctl_tell(struct mg_reload *r, int ok)
{
    int n = r->nwaiting;
    r->nwaiting = 0;
    for (int i = 0; i < n; i++)
        r->waiting[i].fn(r->waiting[i].arg, ok);
}

static int gwctl_reload_failed(mg_gw *gw, char *err)
{
    /* One line: a require()d module's error spans several. */
    for (char *p = err; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    gw->metrics->reload_failures++;
    snprintf(gw->last_reload_error, sizeof(gw->last_reload_error), "%s", err);
    log_error("reload failed: %s", err);
    return -1;
}

/* The config is read (nc, or NULL with err): load the script on it, run
 * on_reload, switch.  0 or -1. */
static int gwctl_finish(mg_gw *gw, mg_config *nc, char *err, size_t errlen, int64_t t0)
{
    mg_script *ns;
    if (!nc)
        return gwctl_reload_failed(gw, err);
    if (gw->draining) {
        config_free(nc);
        snprintf(err, errlen, "shutting down");
        return gwctl_reload_failed(gw, err);
    }
    if (script_prepare(gw, nc, &ns, err, errlen) != 0) {
        config_free(nc);
        return gwctl_reload_failed(gw, err);
    }
    /* on_reload runs with the new config in force, as the script that
     * reads gw.config there expects; if it fails, the old one is back. */
    mg_config *old = gw->cfg;
    gwctl_apply(gw, nc);
    if (script_run_reload(ns, err, errlen) != 0) {
        gwctl_apply(gw, old);
        script_free(ns);
        config_free(nc);
        return gwctl_reload_failed(gw, err);
    }
    script_switch(gw, ns);
    gwctl_check_listeners(old, nc);
    if (nc->max_connections > gw->conn_capacity)
        log_warn("limits.max_connections %u takes effect up to %u connections until a restart "
                 "(the open-files limit is set at start)",
                 nc->max_connections, gw->conn_capacity);
    config_free(old);
    broker_after_reload(gw);
    gw->metrics->reloads++;
    gw->last_reload_error[0] = '\0';
    log_info("reload ok (generation %llu, %lld ms)", (unsigned long long)gw->generation,
             (long long)(gw_clock_ms() - t0));
    return 0;
}

/* Start the thread for the waiters queued as next.  0, or -1 (they have
 * been told it failed). */
static int gwctl_begin(mg_gw *gw)
{
    struct mg_reload *r = gw->reload;
    memcpy(r->waiting, r->next, sizeof(r->next[0]) * (size_t)r->nnext);
    r->nwaiting = r->nnext;
    r->nnext = 0;
    r->again = 0;
    r->t0 = gw_clock_ms();
    r->over = gw->over;
    r->cfg = NULL;
    r->err[0] = '\0';
    int rc = pthread_create(&r->thread, NULL, gwctl_read, r);
    if (rc != 0) {
        snprintf(r->err, sizeof(r->err), "cannot start the config reader: %s", strerror(rc));
        gwctl_reload_failed(gw, r->err);
        gwctl_tell(r, 0);
        return -1;
    }
    r->running = 1;
    /* One process: it is the one systemd watches (a worker's reloads are
     * the master's to announce). */
    if (!gw->shared)
        notify_reloading();
    return 0;
}

void gwctl_reload(mg_gw *gw, gwctl_done_fn done, void *arg)
{
    struct mg_reload *r = gw->reload;
    if (gw->draining || !r) {
        snprintf(gw->last_reload_error, sizeof(gw->last_reload_error), "shutting down");
        if (done)
            done(arg, 0);
        return;
    }
    if (done) {
        if (r->nnext == GWCTL_WAITERS_MAX) {
            snprintf(gw->last_reload_error, sizeof(gw->last_reload_error),
                     "too many reloads waiting");
            done(arg, 0);
            return;
        }
        r->next[r->nnext++] = (gwctl_waiter){done, arg};
    }
    if (r->running)
        r->again = 1; /* when this one ends */
    else
        gwctl_begin(gw);
}

void gwctl_reload_ready(mg_gw *gw)
{
    struct mg_reload *r = gw->reload;
    uint64_t n;
    (void)!read(r->efd, &n, sizeof(n));
    if (!r->running)
        return;
    pthread_join(r->thread, NULL);
    r->running = 0;
    int ok = gwctl_finish(gw, r->cfg, r->err, sizeof(r->err), r->t0) == 0;
    r->cfg = NULL;
    if (!gw->shared)
        notify_ready(ok ? "serving (reloaded)" : "serving (reload failed; old config kept)");
    gwctl_tell(r, ok);
    if (r->again || r->nnext)
        gwctl_begin(gw);
}

void gwctl_reload_forget(mg_gw *gw, void *arg)
{
    struct mg_reload *r = gw->reload;
    if (!r)
        return;
    for (int i = 0; i < r->nwaiting; i++)
        if (r->waiting[i].arg == arg)
            r->waiting[i] = r->waiting[--r->nwaiting];
    for (int i = 0; i < r->nnext; i++)
        if (r->next[i].arg == arg)
            r->next[i] = r->next[--r->nnext];
    for (int i = 0; i < r->nasks; i++)
        if (r->asks[i].arg == arg) {
            r->asks[i] = r->asks[--r->nasks];
            r->ask_seq[i] = r->ask_seq[r->nasks];
        }
}

/* ---- the master's channel (workers: N) ---- */

void gwctl_reload_all(mg_gw *gw, gwctl_done_fn done, void *arg)
{
    struct mg_reload *r = gw->reload;
    if (gw->ctl_fd < 0 || !r) {
        gwctl_reload(gw, done, arg);
        return;
    }
    mg_ctl_msg m = {.type = MG_CTL_RELOAD_ASK, .seq = ++r->last_seq, .worker = gw->worker};
    if (r->nasks == GWCTL_WAITERS_MAX || master_ctl_send(gw->ctl_fd, &m) != 0) {
        snprintf(gw->last_reload_error, sizeof(gw->last_reload_error),
                 r->nasks == GWCTL_WAITERS_MAX ? "too many reloads waiting"
                                               : "cannot reach the master");
        done(arg, 0);
        return;
    }
    r->asks[r->nasks] = (gwctl_waiter){done, arg};
    r->ask_seq[r->nasks++] = m.seq;
}

/* gwctl_done_fn: a reload the master asked for has ended here. */
static void gwctl_tell_master(void *arg, int ok)
{
    mg_gw *gw = arg;
    mg_ctl_msg m = {.type = MG_CTL_RELOADED,
                    .seq = gw->reload ? gw->reload->last_master_seq : 0,
                    .ok = (uint32_t)ok,
                    .worker = gw->worker,
                    .generation = gw->generation};
    if (!ok)
        snprintf(m.error, sizeof(m.error), "%s", gw->last_reload_error);
    if (gw->ctl_fd >= 0)
        master_ctl_send(gw->ctl_fd, &m);
}

static void gwctl_master_done(mg_gw *gw, const mg_ctl_msg *m)
{
    struct mg_reload *r = gw->reload;
    for (int i = 0; r && i < r->nasks; i++) {
        if (r->ask_seq[i] != m->seq)
            continue;
        gwctl_waiter w = r->asks[i];
        r->asks[i] = r->asks[--r->nasks];
        r->ask_seq[i] = r->ask_seq[r->nasks];
        if (!m->ok)
            snprintf(gw->last_reload_error, sizeof(gw->last_reload_error), "%s", m->error);
        w.fn(w.arg, (int)m->ok);
        return;
    }
}

void gwctl_on_ctl(mg_gw *gw)
{
    mg_ctl_msg m;
    for (;;) {
        int passed;
        ssize_t n = master_ctl_recv(gw->ctl_fd, &m, &passed);
        if (passed >= 0) { /* only MG_CTL_LOG_FD carries one */
            if (n == (ssize_t)sizeof(m) && m.type == MG_CTL_LOG_FD && log_adopt(passed) == 0)
                log_info("log file reopened");
            close(passed);
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            if (!gw->draining) {
                log_error("worker %u: the master has gone: draining", gw->worker);
                gwctl_drain(gw);
            }
            return;
        }
        if (n != (ssize_t)sizeof(m))
            return;
        m.error[sizeof(m.error) - 1] = 0;
        if (m.type == MG_CTL_RELOAD) {
            if (gw->reload)
                gw->reload->last_master_seq = m.seq;
            gwctl_reload(gw, gwctl_tell_master, gw);
        } else if (m.type == MG_CTL_RELOAD_DONE) {
            gwctl_master_done(gw, &m);
        }
    }
}

void gwctl_ready(mg_gw *gw)
{
    mg_ctl_msg m = {.type = MG_CTL_READY, .worker = gw->worker, .generation = gw->generation};
    if (gw->ctl_fd >= 0)
        master_ctl_send(gw->ctl_fd, &m);
}

int gwctl_reload_init(mg_gw *gw)
{
    struct mg_reload *r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->efd < 0) {
        free(r);
        return -1;
    }
    gw->reload = r;
    return 0;
}

int gwctl_reload_fd(const mg_gw *gw)
{
    return gw->reload ? gw->reload->efd : -1;
}

void gwctl_reload_stop(mg_gw *gw)
{
    struct mg_reload *r = gw->reload;
    if (!r)
        return;
    if (r->running) {
        pthread_join(r->thread, NULL);
        config_free(r->cfg);
    }
    close(r->efd);
    free(r);
    gw->reload = NULL;
}

static void gwctl_drain_deadline(lws_sorted_usec_list_t *sul)
{
    mg_gw *gw = lws_container_of(sul, mg_gw, drain_sul);
    log_warn("drain timeout: closing %llu connections that did not finish",
             (unsigned long long)gw->metrics->connections);
    gw->stopping = 1;
}

void gwctl_drain(mg_gw *gw)
{
    if (gw->draining) { /* a second signal: stop now */
        gw->stopping = 1;
        return;
    }
    log_info("draining %llu connections", (unsigned long long)gw->metrics->connections);
    if (!gw->shared)
        notify_stopping();
    broker_drain(gw);
    server_drain(gw);
    lws_sul_schedule(gw->lws, 0, &gw->drain_sul, gwctl_drain_deadline,
                     (lws_usec_t)gw->cfg->drain_timeout_ms * 1000);
}

void gwctl_on_signal(mg_gw *gw, int fd)
{
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGHUP:
            log_info("SIGHUP: reloading");
            gwctl_reload(gw, NULL, NULL);
            break;
        case SIGTERM:
        case SIGINT:
        case SIGQUIT:
            gwctl_drain(gw);
            break;
        case SIGUSR1:
            if (log_file_fd() < 0)
                log_info("SIGUSR1: no log.file to reopen (logging to stderr)");
            else if (log_reopen() == 0)
                log_info("SIGUSR1: log file reopened");
            break;
        default:
            break;
        }
    }
}
