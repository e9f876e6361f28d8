/* lwsc.h — what moongate relies on in libwebsockets, checked at start.
 *
 * moongate's speed rests on a few couplings to libwebsockets (README.md
 * in this folder lists them, why each exists, and what to re-check when
 * lws changes).  This file is where they are gated and reported:
 *  - gated: each is tied to the lws versions it was checked against, at
 *    compile time (the headers) and at run time (the library loaded);
 *    under any other version the coupling stays off and moongate runs on
 *    lws's public API alone;
 *  - probed: after the context exists, each fast path is checked to have
 *    taken effect in this process (a hook can be bypassed by how lws was
 *    linked: with -Bsymbolic-functions or LTO lws calls its own exports
 *    directly, not through its PLT);
 *  - reported: one log line per fast path at start, "fast_paths" in
 *    /health, and with io.require_fast_paths a path that is off is a
 *    start-up error instead of a warning. */
#ifndef MG_LWSC_H
#define MG_LWSC_H

#include <stddef.h>

#include "gw.h"

typedef enum {
    LWSC_READER, /* moongate reads its WebSocket connections itself (fastrx.c, writer.c) */
    LWSC_EPOLL,  /* lws's poll() served from an epoll set (evpoll.c) */
    LWSC_URING,  /* those reads and writes batched through io_uring (uring.c) */
    LWSC_TIMERS, /* O(1) inserts into lws's timer list (sul.c) */
    LWSC_ALLOC,  /* lws's buffers from moongate's arenas (lwsmem.c) */
    LWSC_LOGS,   /* lws's log calls filtered before they cost (lwslog.c) */
    LWSC_NPATHS
} lwsc_path;

typedef enum {
    LWSC_OFF,    /* wanted, and not in effect: slower, behaviour unchanged */
    LWSC_ON,     /* in effect */
    LWSC_UNUSED, /* not wanted by this config (no plain listener, io.uring: off) */
} lwsc_state;

typedef struct mg_lwsc {
    char version[64]; /* lws_get_library_version(), as it says */
    int checked; /* the headers and the library are versions the couplings were checked against */
    struct {
        lwsc_state state;
        char why[128]; /* for LWSC_OFF and LWSC_UNUSED */
    } path[LWSC_NPATHS];
} mg_lwsc;

/* 1 if the libwebsockets loaded (and the headers moongate was built with)
 * are versions the couplings were checked against.  In the environment,
 * MOONGATE_LWS_COUPLINGS=trust says yes to any 4.x (for whoever re-checks
 * a new version: README.md), =off says no to all. */
int lwsc_checked(void);

/* After the context, its vhosts and the reader exist: make lws poll once
 * (it must come through evpoll.c), set every path's state, and log one
 * line each.  0; or -1 with the reason in err when io.require_fast_paths
 * is set and a path is off. */
int lwsc_probe(mg_gw *gw, char *err, size_t errlen);

/* Whether c may be read by moongate: the reader path is on. */
int lwsc_reader_on(const mg_gw *gw);

/* The names and states as a JSON object ({"reader":"on",...}) into buf;
 * the length written. */
size_t lwsc_json(const mg_gw *gw, char *buf, size_t cap);

/* The name of a path and of a state, as the log and /health say them. */
const char *lwsc_path_name(lwsc_path p);
const char *lwsc_state_name(lwsc_state s);

void lwsc_free(mg_gw *gw);

#endif
