/* gwctl.c — the gateway's life cycle: config building, reload, drain. */
#include "gwctl.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "budget.h"
#include "heartbeat.h"
#include "log.h"
#include "script.h"
#include "server.h"

int64_t gw_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

mg_config *gwctl_build_config(const mg_overrides *o, char *err, size_t errlen)
{
    mg_config *cfg =
        o->config_file ? config_load(o->config_file, err, errlen) : config_new_defaults();
    if (!cfg)
        return NULL;
    if (o->listen && config_set_listen(cfg, o->listen, err, errlen) != 0)
        goto fail;
    if (o->path && cfg->nlisteners) {
        free(cfg->listeners[0].path);
        if (!(cfg->listeners[0].path = strdup(o->path)))
            goto oom;
    }
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

/* Listeners are bound once; say so if a reload asks for different ones. */
static void gwctl_check_listeners(const mg_config *a, const mg_config *b)
{
    int same = a->nlisteners == b->nlisteners;
    for (size_t i = 0; same && i < a->nlisteners; i++) {
        const mg_listener *x = &a->listeners[i], *y = &b->listeners[i];
        same = x->port == y->port && strcmp(x->host, y->host) == 0 &&
               strcmp(x->path, y->path) == 0 && !x->tls_cert == !y->tls_cert;
    }
    if (!same)
        log_warn("reload: listener changes take effect only after a restart");
    const mg_broker_config *x = a->broker, *y = b->broker;
    if (!x != !y || (x && strcmp(x->url, y->url) != 0))
        log_warn("reload: broker changes take effect only after a restart");
    if (a->admin_port != b->admin_port)
        log_warn("reload: admin listener changes take effect only after a restart");
}

/* Make cfg the config the C side enforces: limits and heartbeats of every
 * connection, the log, the hook budget. */
static void gwctl_apply(mg_gw *gw, mg_config *cfg)
{
    gw->cfg = cfg;
    log_configure(cfg->log_level, cfg->log_format);
    budget_set(cfg->hook_budget_ms);
    heartbeat_reconfigure(gw);
}

static int gwctl_reload_failed(mg_gw *gw, char *err)
{
    /* One line: a require()d module's error spans several. */
    for (char *p = err; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    gw->metrics.reload_failures++;
    snprintf(gw->last_reload_error, sizeof(gw->last_reload_error), "%s", err);
    log_error("reload failed: %s", err);
    return -1;
}

int gwctl_reload(mg_gw *gw)
{
    char err[sizeof(gw->last_reload_error)];
    mg_script *ns;

    if (gw->draining) {
        snprintf(gw->last_reload_error, sizeof(gw->last_reload_error), "shutting down");
        return -1;
    }
    int64_t t0 = gw_clock_ms();
    mg_config *nc = gwctl_build_config(&gw->over, err, sizeof(err));
    if (!nc)
        return gwctl_reload_failed(gw, err);
    if (script_prepare(gw, nc, &ns, err, sizeof(err)) != 0) {
        config_free(nc);
        return gwctl_reload_failed(gw, err);
    }
    /* on_reload runs with the new config in force, as the script that
     * reads gw.config there expects; if it fails, the old one is back. */
    mg_config *old = gw->cfg;
    gwctl_apply(gw, nc);
    if (script_run_reload(ns, err, sizeof(err)) != 0) {
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
    gw->metrics.reloads++;
    gw->last_reload_error[0] = '\0';
    log_info("reload ok (generation %llu, %lld ms)", (unsigned long long)gw->generation,
             (long long)(gw_clock_ms() - t0));
    return 0;
}

static void gwctl_drain_deadline(lws_sorted_usec_list_t *sul)
{
    mg_gw *gw = lws_container_of(sul, mg_gw, drain_sul);
    log_warn("drain timeout: closing %llu connections that did not finish",
             (unsigned long long)gw->metrics.connections);
    gw->stopping = 1;
}

void gwctl_drain(mg_gw *gw)
{
    if (gw->draining) { /* a second signal: stop now */
        gw->stopping = 1;
        return;
    }
    log_info("draining %llu connections", (unsigned long long)gw->metrics.connections);
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
            gwctl_reload(gw);
            break;
        case SIGTERM:
        case SIGINT:
            gwctl_drain(gw);
            break;
        default:
            break;
        }
    }
}
