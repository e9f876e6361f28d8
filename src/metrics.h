/* metrics.h — the gateway's counters and their Prometheus text form.
 *
 * Modules bump fields of mg_metrics directly (plain integers: one thread);
 * metrics_render() formats them for GET /metrics. */
#ifndef MG_METRICS_H
#define MG_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    MG_EVICT_HEARTBEAT,
    MG_EVICT_SLOW_CONSUMER,
    MG_EVICT_REPLACED,
    MG_EVICT_TOO_BIG,
    MG_EVICT_BAD_UTF8,
    MG_EVICT_RATE,
    MG_EVICT_PROTOCOL,
    MG_EVICT_SHUTDOWN,
    MG_EVICT_COUNT
} mg_evict_reason;

typedef struct mg_metrics {
    uint64_t connections;       /* open now */
    uint64_t connections_total; /* accepted since start */
    uint64_t handshakes_refused;
    uint64_t handshakes_evicted; /* sockets shut for being the oldest in handshake (fdguard.c) */
    uint64_t accept_refused;     /* clients answered 503 for lack of descriptors (fdguard.c) */
    uint64_t handshakes_pending; /* gauge, read when rendered: sockets in their handshake */
    uint64_t messages_in, messages_out;
    uint64_t bytes_in, bytes_out;
    uint64_t lua_errors;
    uint64_t lua_aborts;
    uint64_t hook_calls;
    uint64_t hook_ns; /* time spent in hooks */
    uint64_t reloads, reload_failures;
    uint64_t evictions[MG_EVICT_COUNT];
    uint64_t sendq_drops;
    uint64_t send_blocked; /* writes the client's socket took only part of */
    uint64_t uring_writes; /* writes made through io_uring (uring.h) */
    uint64_t uring_reads;  /* reads made through io_uring (fastrx.c) */

    /* permessage-deflate (compress.c).  Bytes are payload bytes: "wire" is
     * the compressed form, the others the message as the script sees it. */
    uint64_t compression_connections; /* gauge: open connections that negotiated it */
    uint64_t compression_messages_in, compression_in_wire_bytes, compression_in_bytes;
    uint64_t compression_messages_out, compression_out_wire_bytes, compression_out_bytes;
    uint64_t compression_deflates;      /* messages compressed (a shared frame counts once) */
    uint64_t compression_conn_memory;   /* gauge: zlib memory the connections' streams hold */
    uint64_t compression_shared_memory; /* gauge: the gateway-wide streams' (pmd_shared) */

    /* Links to the other workers (peer.c). */
    uint64_t peer_sent, peer_received; /* messages */
    uint64_t peer_dropped;             /* not sent: that worker down, or its link full */

    /* Other nodes over the broker (cluster.c). */
    uint64_t cluster_up; /* gauge: 1 while the member's link is up */
    uint64_t cluster_sent, cluster_received, cluster_dropped;

    /* RabbitMQ bridge (broker.c). */
    uint64_t broker_up; /* gauge: 1 connected */
    uint64_t broker_connects;
    uint64_t broker_deliveries;
    uint64_t broker_acks, broker_requeues, broker_rejects, broker_forwards, broker_lost;
    uint64_t broker_published, broker_publish_failures;
    uint64_t broker_unsettled; /* gauge */
} mg_metrics;

/* Memory gauges, read when /metrics is asked for (http.c). */
typedef struct mg_mem_metrics {
    uint64_t resident_bytes; /* the process's RSS */
    uint64_t lws_heap_bytes; /* libwebsockets' malloc'd memory (lwsmem.c) */
    uint64_t rx_buffers;     /* WebSocket receive buffers (one per connection) */
    uint64_t rx_releases;    /* times one was emptied */
    uint64_t kept_bytes;     /* freed lws buffers kept for reuse (lwsmem.c) */
    uint64_t trimmed;        /* freed lws buffers handed back to the kernel */
} mg_mem_metrics;

/* Prometheus' standard process_* series (read from /proc when /metrics is
 * asked for).  With workers: N they cover the master and every worker:
 * memory, descriptors and CPU added up, the start the master's, the
 * descriptor limit the answering worker's (each has the same). */
typedef struct mg_proc_metrics {
    double cpu_seconds;      /* user + system */
    double start_time;       /* seconds since the epoch */
    uint64_t resident_bytes; /* RSS */
    uint64_t virtual_bytes;
    uint64_t open_fds;
    uint64_t max_fds; /* RLIMIT_NOFILE, soft */
} mg_proc_metrics;

/* One worker, for the per-worker series of /metrics (workers: N). */
typedef struct mg_worker_metrics {
    uint32_t worker;
    int32_t pid; /* 0: not running */
    uint64_t connections, restarts, resident_bytes, messages_in, peer_dropped, open_fds;
} mg_worker_metrics;

const char *metrics_evict_name(mg_evict_reason r);

/* Process pid's resident memory in bytes, this process's if pid is 0
 * (0 if unknown). */
uint64_t metrics_resident_bytes(int pid);

/* Add process pid's figures (this process's if pid is 0) to *p; its
 * start time and descriptor limit replace p's when first is set.  Figures
 * /proc does not show this process (another user's descriptors) count 0.
 * 0, or -1 when pid is gone. */
int metrics_process_add(int pid, int first, mg_proc_metrics *p);

/* Descriptors process pid has open (this process's if 0); 0 if unknown. */
uint64_t metrics_open_fds(int pid);

/* The process_* series; returns bytes written. */
size_t metrics_render_process(const mg_proc_metrics *p, char *buf, size_t len);

/* Format as Prometheus text exposition into buf; returns bytes written
 * (truncated to len). */
size_t metrics_render(const mg_metrics *m, uint64_t generation, const mg_mem_metrics *mem,
                      char *buf, size_t len);

/* The per-worker series (moongate_worker_*{worker="k"}); returns bytes
 * written. */
size_t metrics_render_workers(const mg_worker_metrics *w, size_t n, char *buf, size_t len);

#endif
