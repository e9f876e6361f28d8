/* metrics.c — Prometheus text exposition of mg_metrics. */
#include "metrics.h"

#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

static const char *const evict_names[MG_EVICT_COUNT] = {
    "heartbeat", "slow_consumer", "replaced", "too_big", "bad_utf8", "rate", "protocol", "shutdown",
};

const char *metrics_evict_name(mg_evict_reason r)
{
    return evict_names[r];
}

uint64_t metrics_resident_bytes(int pid)
{
    char path[64];
    unsigned long long size = 0, resident = 0;
    if (pid)
        snprintf(path, sizeof(path), "/proc/%d/statm", pid);
    else
        snprintf(path, sizeof(path), "/proc/self/statm");
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void metrics_proc_path(char *out, size_t len, int pid, const char *what)
{
    if (pid)
        snprintf(out, len, "/proc/%d/%s", pid, what);
    else
        snprintf(out, len, "/proc/self/%s", what);
}

uint64_t metrics_open_fds(int pid)
{
    char path[64];
    if (pid == (int)getpid())
        pid = 0;
    metrics_proc_path(path, sizeof(path), pid, "fd");
    DIR *d = opendir(path);
    if (!d)
        return 0;
    uint64_t n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n > 0 && !pid ? n - 1 : n; /* not the one opendir holds */
}

/* The boot time, seconds since the epoch (/proc/stat's btime). */
static double metrics_boot_time(void)
{
    char line[256];
    double bt = 0;
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "btime ", 6)) {
            bt = strtod(line + 6, NULL);
            break;
        }
    fclose(f);
    return bt;
}

int metrics_process_add(int pid, int first, mg_proc_metrics *p)
{
    char path[64], buf[1024];
    metrics_proc_path(path, sizeof(path), pid, "stat");
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* After "pid (comm) ", whose comm may hold spaces and parentheses:
     * fields 3 (state) onwards, utime 14, stime 15, starttime 22, vsize 23,
     * rss 24 (proc(5)). */
    char *q = strrchr(buf, ')');
    if (!q)
        return -1;
    unsigned long long utime, stime, start, vsize, rss;
    if (sscanf(q + 1,
               " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
               "%llu %llu %llu",
               &utime, &stime, &start, &vsize, &rss) != 5)
        return -1;
    double hz = (double)sysconf(_SC_CLK_TCK);
    p->cpu_seconds += (double)(utime + stime) / hz;
    p->virtual_bytes += vsize;
    p->resident_bytes += rss * (uint64_t)sysconf(_SC_PAGESIZE);
    p->open_fds += metrics_open_fds(pid);
    if (first) {
        struct rlimit rl;
        p->start_time = metrics_boot_time() + (double)start / hz;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
            p->max_fds = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    }
    return 0;
}

typedef struct {
    char *buf;
    size_t len, n;
} metrics_out;

static void metrics_printf(metrics_out *o, const char *fmt, ...)
{
    va_list ap;
    if (o->n >= o->len)
        return;
    va_start(ap, fmt);
    int w = vsnprintf(o->buf + o->n, o->len - o->n, fmt, ap);
    va_end(ap);
    if (w > 0)
        o->n = (o->n + (size_t)w < o->len) ? o->n + (size_t)w : o->len;
}

static void metrics_one(metrics_out *o, const char *name, const char *type, const char *help,
                        uint64_t v)
{
    metrics_printf(o, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
                   (unsigned long long)v);
}

static void metrics_broker(metrics_out *o, const mg_metrics *m)
{
    metrics_one(o, "moongate_broker_up", "gauge", "1 while connected to the broker.", m->broker_up);
    metrics_one(o, "moongate_broker_connects_total", "counter", "Successful broker connections.",
                m->broker_connects);
    metrics_one(o, "moongate_broker_deliveries_total", "counter", "Messages consumed.",
                m->broker_deliveries);
    metrics_printf(o, "# HELP moongate_broker_settled_total Consumed messages settled, by how.\n"
                      "# TYPE moongate_broker_settled_total counter\n");
    const char *how[] = {"ack", "requeue", "reject", "forward", "lost"};
    uint64_t n[] = {m->broker_acks, m->broker_requeues, m->broker_rejects, m->broker_forwards,
                    m->broker_lost};
    for (int i = 0; i < 5; i++)
        metrics_printf(o, "moongate_broker_settled_total{how=\"%s\"} %llu\n", how[i],
                       (unsigned long long)n[i]);
    metrics_one(o, "moongate_broker_published_total", "counter", "Messages published.",
                m->broker_published);
    metrics_one(o, "moongate_broker_publish_failures_total", "counter",
                "Publishes refused, returned or not confirmed.", m->broker_publish_failures);
    metrics_one(o, "moongate_broker_unsettled", "gauge", "Consumed messages not settled yet.",
                m->broker_unsettled);
}

static void metrics_compression(metrics_out *o, const mg_metrics *m)
{
    metrics_one(o, "moongate_compression_connections", "gauge",
                "Open connections that negotiated permessage-deflate.", m->compression_connections);
    metrics_one(o, "moongate_compression_messages_in_total", "counter",
                "Compressed messages received.", m->compression_messages_in);
    metrics_one(o, "moongate_compression_in_wire_bytes_total", "counter",
                "Compressed payload bytes received.", m->compression_in_wire_bytes);
    metrics_one(o, "moongate_compression_in_bytes_total", "counter",
                "Bytes the compressed messages received inflated to.", m->compression_in_bytes);
    metrics_one(o, "moongate_compression_messages_out_total", "counter",
                "Compressed messages queued to clients (a broadcast counts once per recipient).",
                m->compression_messages_out);
    metrics_one(o, "moongate_compression_out_wire_bytes_total", "counter",
                "Compressed payload bytes queued to clients.", m->compression_out_wire_bytes);
    metrics_one(o, "moongate_compression_out_bytes_total", "counter",
                "Bytes of the messages queued compressed, before compression.",
                m->compression_out_bytes);
    metrics_one(o, "moongate_compression_deflates_total", "counter",
                "Messages compressed (a frame shared by a broadcast's recipients counts once).",
                m->compression_deflates);
    metrics_one(o, "moongate_compression_memory_bytes", "gauge",
                "zlib memory held for compression: every connection's streams and the "
                "gateway-wide ones, as allocated through zlib's zalloc.",
                m->compression_conn_memory + m->compression_shared_memory);
    metrics_one(o, "moongate_compression_shared_memory_bytes", "gauge",
                "The part of moongate_compression_memory_bytes in the gateway-wide streams "
                "(shared deflaters and inflater).",
                m->compression_shared_memory);
}

size_t metrics_render(const mg_metrics *m, uint64_t generation, const mg_mem_metrics *mem,
                      char *buf, size_t len)
{
    metrics_out o = {buf, len, 0};

    metrics_one(&o, "moongate_connections", "gauge", "Open WebSocket connections.", m->connections);
    metrics_one(&o, "moongate_connections_total", "counter", "Connections accepted.",
                m->connections_total);
    metrics_one(&o, "moongate_handshakes_refused_total", "counter",
                "Upgrade requests refused (bad handshake, limits, on_handshake).",
                m->handshakes_refused);
    metrics_one(&o, "moongate_handshakes_pending", "gauge",
                "Accepted sockets that have not finished their WebSocket handshake.",
                m->handshakes_pending);
    metrics_one(&o, "moongate_handshakes_evicted_total", "counter",
                "Sockets closed in their handshake to make room (limits.max_handshakes).",
                m->handshakes_evicted);
    metrics_one(&o, "moongate_accept_refused_total", "counter",
                "Clients answered 503 at accept() for lack of file descriptors.",
                m->accept_refused);
    metrics_one(&o, "moongate_messages_in_total", "counter", "Messages received.", m->messages_in);
    metrics_one(&o, "moongate_messages_out_total", "counter", "Messages queued to clients.",
                m->messages_out);
    metrics_one(&o, "moongate_bytes_in_total", "counter", "Payload bytes received.", m->bytes_in);
    metrics_one(&o, "moongate_bytes_out_total", "counter", "Payload bytes queued to clients.",
                m->bytes_out);
    metrics_one(&o, "moongate_lua_errors_total", "counter", "Errors raised by Lua hooks.",
                m->lua_errors);
    metrics_one(&o, "moongate_lua_aborts_total", "counter",
                "Hooks aborted for exceeding the budget.", m->lua_aborts);
    metrics_one(&o, "moongate_hook_calls_total", "counter", "Lua hook calls.", m->hook_calls);
    metrics_printf(&o,
                   "# HELP moongate_hook_seconds_total Time spent in Lua hooks (estimated "
                   "from the hook watchdog's ticks).\n"
                   "# TYPE moongate_hook_seconds_total counter\nmoongate_hook_seconds_total %.6f\n",
                   (double)m->hook_ns / 1e9);
    metrics_one(&o, "moongate_reloads_total", "counter", "Successful reloads.", m->reloads);
    metrics_one(&o, "moongate_reload_failures_total", "counter", "Failed reloads.",
                m->reload_failures);
    metrics_one(&o, "moongate_script_generation", "gauge", "Generation of the running script.",
                generation);
    metrics_printf(&o, "# HELP moongate_evictions_total Connections closed by the gateway.\n"
                       "# TYPE moongate_evictions_total counter\n");
    for (int r = 0; r < MG_EVICT_COUNT; r++)
        metrics_printf(&o, "moongate_evictions_total{reason=\"%s\"} %llu\n", evict_names[r],
                       (unsigned long long)m->evictions[r]);
    metrics_one(&o, "moongate_sendq_drops_total", "counter",
                "Messages dropped because a send queue was full.", m->sendq_drops);
    metrics_one(&o, "moongate_send_blocked_total", "counter",
                "Writes a client's socket took only part of (the rest waits for it to drain).",
                m->send_blocked);
    metrics_one(&o, "moongate_uring_writes_total", "counter",
                "Socket writes made in batches through io_uring (0: every write is a send()).",
                m->uring_writes);
    metrics_one(&o, "moongate_uring_reads_total", "counter",
                "Socket reads made in batches through io_uring (0: every read is a recv()).",
                m->uring_reads);
    metrics_one(&o, "moongate_peer_sent_total", "counter",
                "Messages handed to other workers (sends, publishes, broadcasts, names).",
                m->peer_sent);
    metrics_one(&o, "moongate_peer_received_total", "counter",
                "Messages received from other workers.", m->peer_received);
    metrics_one(&o, "moongate_peer_dropped_total", "counter",
                "Messages for other workers dropped: the worker was down, or its link held "
                "more than it read.",
                m->peer_dropped);
    metrics_one(&o, "moongate_cluster_up", "gauge",
                "Workers whose cluster link to the broker is up (0 without a cluster).",
                m->cluster_up);
    metrics_one(&o, "moongate_cluster_sent_total", "counter",
                "Messages handed to the broker for other cluster members.", m->cluster_sent);
    metrics_one(&o, "moongate_cluster_received_total", "counter",
                "Messages received from other cluster members.", m->cluster_received);
    metrics_one(&o, "moongate_cluster_dropped_total", "counter",
                "Messages for other members dropped: the broker link was down or far behind.",
                m->cluster_dropped);
    metrics_broker(&o, m);
    metrics_compression(&o, m);
    metrics_one(&o, "moongate_resident_bytes", "gauge", "Resident memory of the gateway.",
                mem->resident_bytes);
    metrics_one(&o, "moongate_lws_heap_bytes", "gauge",
                "Heap memory held by libwebsockets (receive buffers not included).",
                mem->lws_heap_bytes);
    metrics_one(&o, "moongate_rx_buffers", "gauge",
                "WebSocket receive buffers (64 KiB of address space each; a page resident "
                "from a control frame until the next pong).",
                mem->rx_buffers);
    metrics_one(&o, "moongate_rx_buffer_releases_total", "counter",
                "Times a receive buffer's pages were handed back to the kernel (at a pong).",
                mem->rx_releases);
    metrics_one(&o, "moongate_lws_kept_bytes", "gauge",
                "Freed receive buffers and header tables kept for reuse (at most 256 KiB of "
                "each a second after they were freed).",
                mem->kept_bytes);
    metrics_one(&o, "moongate_lws_trimmed_total", "counter",
                "Freed receive buffers and header tables handed back to the kernel.", mem->trimmed);
    return o.n;
}

size_t metrics_render_process(const mg_proc_metrics *p, char *buf, size_t len)
{
    metrics_out o = {buf, len, 0};
    metrics_printf(&o,
                   "# HELP process_cpu_seconds_total Total user and system CPU time spent in "
                   "seconds.\n# TYPE process_cpu_seconds_total counter\n"
                   "process_cpu_seconds_total %.2f\n",
                   p->cpu_seconds);
    metrics_one(&o, "process_open_fds", "gauge", "Number of open file descriptors.", p->open_fds);
    metrics_one(&o, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
                p->max_fds);
    metrics_one(&o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
                p->virtual_bytes);
    metrics_one(&o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
                p->resident_bytes);
    metrics_printf(&o,
                   "# HELP process_start_time_seconds Start time of the process since unix "
                   "epoch in seconds.\n# TYPE process_start_time_seconds gauge\n"
                   "process_start_time_seconds %.2f\n",
                   p->start_time);
    return o.n;
}

static void metrics_worker_series(metrics_out *o, const char *name, const char *type,
                                  const char *help, const mg_worker_metrics *w, size_t n,
                                  size_t field)
{
    metrics_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (size_t i = 0; i < n; i++) {
        uint64_t v;
        if (field == (size_t)-1)
            v = w[i].pid != 0;
        else
            memcpy(&v, (const char *)&w[i] + field, sizeof(v));
        metrics_printf(o, "%s{worker=\"%u\"} %llu\n", name, w[i].worker, (unsigned long long)v);
    }
}

size_t metrics_render_workers(const mg_worker_metrics *w, size_t n, char *buf, size_t len)
{
    metrics_out o = {buf, len, 0};
    metrics_one(&o, "moongate_workers", "gauge", "Worker processes configured.", n);
    metrics_worker_series(&o, "moongate_worker_up", "gauge", "1 while the worker runs.", w, n,
                          (size_t)-1);
    metrics_worker_series(&o, "moongate_worker_connections", "gauge",
                          "Open WebSocket connections of the worker.", w, n,
                          offsetof(mg_worker_metrics, connections));
    metrics_worker_series(&o, "moongate_worker_restarts_total", "counter",
                          "Workers that ended in this slot and were replaced.", w, n,
                          offsetof(mg_worker_metrics, restarts));
    metrics_worker_series(&o, "moongate_worker_resident_bytes", "gauge",
                          "Resident memory of the worker process.", w, n,
                          offsetof(mg_worker_metrics, resident_bytes));
    metrics_worker_series(&o, "moongate_worker_open_fds", "gauge",
                          "Descriptors the worker has open (compare with process_max_fds).", w, n,
                          offsetof(mg_worker_metrics, open_fds));
    metrics_worker_series(&o, "moongate_worker_messages_in_total", "counter",
                          "Messages the worker received from its clients.", w, n,
                          offsetof(mg_worker_metrics, messages_in));
    metrics_worker_series(&o, "moongate_worker_peer_dropped_total", "counter",
                          "Messages the worker dropped for other workers.", w, n,
                          offsetof(mg_worker_metrics, peer_dropped));
    return o.n;
}
