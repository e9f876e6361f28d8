/* lwsc.c — what moongate relies on in libwebsockets, checked at start
 * (lwsc.h). */
#include "lwsc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evpoll.h"
#include "listen.h"
#include "log.h"
#include "lwslog.h"
#include "lwsmem.h"
#include "sul.h"

/* The versions every coupling in this folder was checked against: the
 * minor releases of lws 4 (README.md says what was checked). */
static int lwsc_minor_checked(int major, int minor)
{
    return major == 4 && (minor == 1 || minor == 3);
}

#if LWS_LIBRARY_VERSION_MAJOR == 4 &&                                                              \
    (LWS_LIBRARY_VERSION_MINOR == 1 || LWS_LIBRARY_VERSION_MINOR == 3)
#define LWSC_HEADERS_CHECKED 1
#else
#define LWSC_HEADERS_CHECKED 0
#endif

/* MOONGATE_LWS_COUPLINGS=trust: any lws 4 counts as checked (for whoever
 * re-checks a new version); =off: none does, and moongate runs on lws's
 * public API alone (to rule the couplings out when hunting a bug). */
static const char *lwsc_override(void)
{
    const char *t = getenv("MOONGATE_LWS_COUPLINGS");
    return t ? t : "";
}

/* Process-wide, like the hooks it gates (sul.c asks on every insert). */
int lwsc_checked(void)
{
    static int known = -1;
    if (known < 0) {
        int major = 0, minor = 0;
        const char *v = lws_get_library_version();
        int parsed = v && sscanf(v, "%d.%d", &major, &minor) == 2;
        known = parsed && strcmp(lwsc_override(), "off") != 0 &&
                ((LWSC_HEADERS_CHECKED && lwsc_minor_checked(major, minor)) ||
                 (major == 4 && strcmp(lwsc_override(), "trust") == 0));
    }
    return known;
}

static const char *const lwsc_names[LWSC_NPATHS] = {
    [LWSC_READER] = "reader", [LWSC_EPOLL] = "epoll",  [LWSC_URING] = "io_uring",
    [LWSC_TIMERS] = "timers", [LWSC_ALLOC] = "memory", [LWSC_LOGS] = "logs",
};

/* What each path does for the operator, as the log line says it. */
static const char *const lwsc_what[LWSC_NPATHS] = {
    [LWSC_READER] = "moongate reads ws:// and wss:// connections itself",
    [LWSC_EPOLL] = "the event loop waits on epoll, not a poll() of every socket",
    [LWSC_URING] = "socket reads and writes are batched through io_uring",
    [LWSC_TIMERS] = "timer inserts are O(1) in libwebsockets' timer list",
    [LWSC_ALLOC] = "libwebsockets' buffers come from moongate's arenas",
    [LWSC_LOGS] = "libwebsockets' debug log calls return at once",
};

/* What is lost while it is off. */
static const char *const lwsc_cost[LWSC_NPATHS] = {
    [LWSC_READER] = "libwebsockets parses frames (slower, and its reader's behaviour: "
                    "docs/operations.md)",
    [LWSC_EPOLL] = "every loop turn polls every socket (slower with many connections)",
    [LWSC_URING] = "a recv() and a send() per socket",
    [LWSC_TIMERS] = "connect storms cost more CPU",
    [LWSC_ALLOC] = "idle connections keep more memory",
    [LWSC_LOGS] = "each of libwebsockets' compiled-in debug log calls costs more CPU",
};

const char *lwsc_path_name(lwsc_path p)
{
    return lwsc_names[p];
}

const char *lwsc_state_name(lwsc_state s)
{
    return s == LWSC_ON ? "on" : s == LWSC_OFF ? "off" : "unused";
}

static void lwsc_set(mg_lwsc *l, lwsc_path p, lwsc_state s, const char *why)
{
    l->path[p].state = s;
    snprintf(l->path[p].why, sizeof(l->path[p].why), "%s", why ? why : "");
}

/* The reason a version gate gives. */
static const char *lwsc_unchecked(void)
{
    if (strcmp(lwsc_override(), "off") == 0)
        return "MOONGATE_LWS_COUPLINGS=off";
    return LWSC_HEADERS_CHECKED ? "libwebsockets version not checked (src/lws/README.md)"
                                : "built with libwebsockets headers of a version not checked";
}

static void lwsc_probe_paths(mg_gw *gw, mg_lwsc *l, int polled)
{
    int checked = lwsc_checked();
    int ours = listen_any_fast(gw->cfg);

    if (!ours)
        lwsc_set(l, LWSC_READER, LWSC_UNUSED, "no listener with reader: moongate");
    else if (!checked)
        lwsc_set(l, LWSC_READER, LWSC_OFF, lwsc_unchecked());
    else if (!polled)
        lwsc_set(l, LWSC_READER, LWSC_OFF, "libwebsockets' poll() does not come through moongate");
    else if (!gw->fastrx_on)
        lwsc_set(l, LWSC_READER, LWSC_OFF, "out of memory for its buffers");
    else
        lwsc_set(l, LWSC_READER, LWSC_ON, NULL);

    if (!polled)
        lwsc_set(l, LWSC_EPOLL, LWSC_OFF, "libwebsockets' poll() does not come through moongate");
    else
        lwsc_set(l, LWSC_EPOLL, LWSC_ON, NULL);

    if (l->path[LWSC_READER].state != LWSC_ON)
        lwsc_set(l, LWSC_URING, LWSC_UNUSED, "moongate writes no socket itself");
    else if (gw->cfg->uring == MG_URING_OFF)
        lwsc_set(l, LWSC_URING, LWSC_UNUSED, "io.uring: off");
    else if (!gw->uring)
        lwsc_set(l, LWSC_URING, LWSC_OFF, "the kernel refused io_uring");
    else
        lwsc_set(l, LWSC_URING, LWSC_ON, NULL);

    if (!checked)
        lwsc_set(l, LWSC_TIMERS, LWSC_OFF, lwsc_unchecked());
    else if (!sul_check(gw->lws))
        lwsc_set(l, LWSC_TIMERS, LWSC_OFF,
                 "libwebsockets calls its own lws_dll2_add_sorted directly (linked with "
                 "-Bsymbolic-functions or LTO)");
    else
        lwsc_set(l, LWSC_TIMERS, LWSC_ON, NULL);

    if (!checked)
        lwsc_set(l, LWSC_ALLOC, LWSC_OFF, lwsc_unchecked());
    else
        lwsc_set(l, LWSC_ALLOC, LWSC_ON, NULL);

    /* Creating the context and the probe's loop turn log lines (at levels
     * nobody asked for): some must have come through lwslog.c. */
    if (!checked)
        lwsc_set(l, LWSC_LOGS, LWSC_OFF, lwsc_unchecked());
    else if (!lwslog_calls())
        lwsc_set(l, LWSC_LOGS, LWSC_OFF,
                 "libwebsockets calls its own log functions directly (linked with "
                 "-Bsymbolic-functions or LTO)");
    else
        lwsc_set(l, LWSC_LOGS, LWSC_ON, NULL);
}

int lwsc_probe(mg_gw *gw, char *err, size_t errlen)
{
    mg_lwsc *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    lwsc_free(gw);
    gw->lwsc = l;
    snprintf(l->version, sizeof(l->version), "%s", lws_get_library_version());
    l->checked = lwsc_checked();
    /* One turn of lws's loop that does not wait: its poll() must have come
     * through evpoll.c. */
    lws_service(gw->lws, -1);
    lwsc_probe_paths(gw, l, evpoll_active());

    log_info("libwebsockets %s%s", l->version, l->checked ? "" : " (not a version checked)");
    int off = 0;
    for (int p = 0; p < LWSC_NPATHS; p++) {
        if (l->path[p].state == LWSC_ON)
            log_info("fast path %s: on (%s)", lwsc_names[p], lwsc_what[p]);
        else if (l->path[p].state == LWSC_UNUSED)
            log_info("fast path %s: unused (%s)", lwsc_names[p], l->path[p].why);
        else {
            off++;
            log_conn(gw->cfg->require_fast_paths ? MG_LOG_ERROR : MG_LOG_WARN, 0,
                     "fast path %s: OFF: %s; %s", lwsc_names[p], l->path[p].why, lwsc_cost[p]);
        }
    }
    if (off && gw->cfg->require_fast_paths) {
        snprintf(err, errlen,
                 "%d fast path%s off and io.require_fast_paths is set (see the lines above)", off,
                 off > 1 ? "s are" : " is");
        return -1;
    }
    return 0;
}

int lwsc_reader_on(const mg_gw *gw)
{
    return gw->lwsc && gw->lwsc->path[LWSC_READER].state == LWSC_ON;
}

size_t lwsc_json(const mg_gw *gw, char *buf, size_t cap)
{
    size_t n = 0;
    if (!gw->lwsc || cap < 3)
        return (size_t)snprintf(buf, cap, "{}");
    buf[n++] = '{';
    for (int p = 0; p < LWSC_NPATHS && n < cap; p++)
        n += (size_t)snprintf(buf + n, cap - n, "%s\"%s\":\"%s\"", p ? "," : "", lwsc_names[p],
                              lwsc_state_name(gw->lwsc->path[p].state));
    if (n + 2 <= cap) {
        buf[n++] = '}';
        buf[n] = '\0';
    }
    return n;
}

void lwsc_free(mg_gw *gw)
{
    free(gw->lwsc);
    gw->lwsc = NULL;
}
