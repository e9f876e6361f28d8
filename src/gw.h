/* gw.h — the gateway context: the one struct that holds all runtime state.
 *
 * Every module takes an mg_gw *; nothing else is global except the log sink
 * (log.c), the hook-budget watchdog shared with its thread (budget.c),
 * the epoll set behind lws's poll() (evpoll.c: poll() has no context)
 * and the state of lws's allocator hook, which gets no context
 * (lwsmem.c).  Ownership: config (current mg_config), server (lws context
 * and vhosts), conns (client table), topics (pubsub), store (gw.store),
 * script (the live Lua state), broker (the RabbitMQ bridge), metrics. */
#ifndef MG_GW_H
#define MG_GW_H

#include <stdint.h>
#include <time.h>
#include <libwebsockets.h>

#include "config.h"
#include "pmd.h"
#include "dict.h"
#include "metrics.h"

typedef struct mg_conn mg_conn;
typedef struct mg_script mg_script;
typedef struct mg_slot mg_slot;
typedef struct mg_upgrade mg_upgrade;
typedef struct mg_pmd mg_pmd;
typedef struct mg_broker mg_broker;
typedef struct mg_shared mg_shared;
typedef struct mg_worker_slot mg_worker_slot;
typedef struct mg_peers mg_peers;

/* Command-line choices that override the YAML file, re-applied on reload. */
typedef struct mg_overrides {
    const char *config_file; /* -c, or NULL */
    const char *listen;      /* --listen HOST:PORT, or NULL */
    const char *path;        /* --path, or NULL */
    const char *script;      /* --script, or NULL */
} mg_overrides;

typedef struct mg_gw {
    mg_config *cfg;    /* current configuration */
    mg_overrides over; /* command-line overrides */

    struct lws_context *lws;
    struct lws_vhost **vhosts; /* one per listener */
    mg_slot *slots;            /* per-listener data lws points to (server.c) */
    size_t nslots;
    struct lws_vhost *admin_vhost;
    mg_upgrade *upgrade;    /* the upgrade in flight, and lws's protocol table (handshake.c) */
    struct lws *signal_wsi; /* signalfd adopted into the loop */
    lws_sorted_usec_list_t hb_sul;    /* heartbeat sweep */
    lws_sorted_usec_list_t drain_sul; /* drain deadline */
    lws_sorted_usec_list_t trim_sul;  /* lwsmem_trim, a second after it is wanted */
    uint32_t conn_capacity;           /* connections the open-files limit set at start allows */
    uint32_t hs_capacity;             /* ... and sockets in their handshake (fdguard.c) */
    size_t max_header_size;           /* lws's header data, fixed at start (server.c) */
    struct mg_buf *ping_frame;        /* the heartbeat ping, one block every queue shares */

    /* Client table (conn.c). */
    dict conns_by_id;   /* uint64 id -> mg_conn */
    dict conns_by_name; /* name -> mg_conn */
    dict claims;        /* with workers or a cluster: name -> int64_t stamp of its claim */
    mg_conn *conn_list; /* all live connections, for iteration */
    uint64_t next_conn_id;
    uint64_t conns_open; /* in state MG_CONN_OPEN: what gw.count() reports */

    dict topics; /* topic -> mg_topic (pubsub.c) */
    dict store;  /* key -> mg_value (gw.store, mgl_gw.c) */

    mg_broker *broker;          /* RabbitMQ bridge, or NULL (broker.c) */
    struct mg_cluster *cluster; /* membership of a cluster, or NULL (cluster.c) */

    mg_script *script; /* live Lua state (script.c) */
    uint64_t generation;
    char last_reload_error[1024];
    struct mg_reload *reload; /* the reload under way, if any (gwctl.c) */
    struct lws *reload_wsi;   /* its eventfd, adopted into the loop */

    /* Worker processes (master.c, workers.h, peer.c).  With one process:
     * worker 1 of 1, shared NULL, metrics pointing at metrics_own. */
    uint32_t worker, nworkers; /* this process is worker `worker` of `nworkers` */
    uint32_t node_id;          /* cluster.id read at start, 0 without a cluster (cluster.h) */
    mg_shared *shared;         /* the memory the master and its workers share */
    mg_worker_slot *self;      /* this worker's slot in it */
    mg_peers *peers;           /* links to the other workers, or NULL */
    int ctl_fd;                /* socket to the master, or -1 */
    struct lws *ctl_wsi;       /* ... adopted into the loop */
    /* Admin requests waiting for the other workers' answers (admin_fanout.c). */
    struct admin_fanout *fanout;

    mg_metrics *metrics; /* metrics_own, or this worker's shared slot */
    mg_metrics metrics_own;
    int64_t now_ms;  /* monotonic clock: read at most once per loop turn ... */
    int clock_stale; /* ... after the loop waited (see gw_now) */

    unsigned char *scratch; /* gathering buffer for coalesced writes */
    size_t scratch_cap;

    /* permessage-deflate (compress.c): the gateway-wide zlib streams, when
     * a listener has compression enabled, and the buffer a message sent
     * compressed is made in. */
    struct pmd_shared *pmd_shared;
    struct pmd_buf pmd_out;

    mg_conn **fd_conns; /* socket fd -> its WebSocket connection (conn.c) */
    int fd_cap;         /* entries in fd_conns */
    uint64_t *rx_check; /* lws-read connections that were readable (rx.c) */
    int rx_check_n, rx_check_cap;

    /* moongate's own reader (fastrx.c). */
    int fastrx_on;               /* fastrx_start succeeded */
    unsigned char *fastrx_arena; /* where a turn's reads land ... */
    size_t fastrx_used;          /* ... this much of it so far */
    struct fastrx_slot {
        mg_conn *c;       /* whose bytes it holds, or NULL */
        int res;          /* what the read returned */
        size_t at;        /* where in the arena they are */
        struct pollfd *p; /* its entry in the poll() call that read it */
    } * fastrx_slots;
    int fastrx_nslots;      /* slots used this turn */
    unsigned fastrx_turns;  /* where the next turn starts reading */
    struct mg_uring *uring; /* batched reads and writes (uring.h), or NULL */
    struct mg_lwsc *lwsc;   /* what of lws moongate relies on, and whether it holds (lwsc.h) */

    /* Writes without waiting for POLLOUT (writer.c). */
    int dispatching;                  /* handling the loop turn's events: writes wait for its end */
    mg_conn *flush_list;              /* queues that became non-empty meanwhile */
    lws_sorted_usec_list_t flush_sul; /* a timer queued writes: write them when it returns */

    int draining;     /* SIGTERM seen: closing everyone */
    int drain_pipe_w; /* see server_stop_listening() */
    int stopping;     /* leave the loop */
    int exit_code;
    int signal_fd;  /* SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1 (main.c) */
    char *pid_file; /* the pid file this process wrote, removed at exit (pidfile.h) */
} mg_gw;

/* Monotonic milliseconds. */
static inline int64_t gw_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The clock as of this loop turn: read on first use after the loop's wait
 * (a value cached before the wait would make connections look idle longer
 * than they are), then shared by every event of the turn. */
static inline int64_t gw_now(mg_gw *gw)
{
    if (gw->clock_stale) {
        gw->now_ms = gw_clock_ms();
        gw->clock_stale = 0;
    }
    return gw->now_ms;
}

#endif
