/* writer.c — every write to a client's socket (writer.h). */
#include "writer.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "conn.h"
#include "listen.h"
#include "log.h"
#include "uring.h"

#include <openssl/ssl.h>

#define WRITER_SCRATCH (64 * 1024)
/* Writes per io_uring batch: a broadcast to more goes in several. */
#define WRITER_URING_ENTRIES 1024
/* A frame this big goes straight to the socket when nothing waits ahead
 * of it, header and payload in one sendmsg(): its payload is not copied
 * into the queue first.  Smaller frames are queued, so that a loop turn's
 * replies to a socket leave in one write. */
#define WRITER_DIRECT_MIN 4096

/* ---- when: the flush list ----
 *
 * A connection whose queue becomes non-empty joins the flush list, and
 * the list is written at once, one write per socket, without asking lws
 * for a writable callback (a poll() for POLLOUT, and two epoll_ctl calls
 * to set and clear it).  While the loop handles events (gw->dispatching:
 * reads, hooks, a broadcast, an admin request, the broker's wake-up)
 * server_run writes the list once the turn's events are handled.
 * Outside of that (a timer: heartbeat pings, Lua timers) gw->flush_sul
 * writes it as soon as the timer returns, before lws polls.  It is
 * scheduled in the past because lws runs the timers due at the time its
 * pass began: one due "now" would be left for the next pass, after a poll
 * that waits as long as this pass took. */
#define WRITER_FLUSH_NOW (-(lws_usec_t)3600 * LWS_US_PER_SEC)

static void writer_flush_due(lws_sorted_usec_list_t *sul)
{
    writer_flush_all(lws_container_of(sul, mg_gw, flush_sul));
}

void writer_wake(mg_gw *gw, mg_conn *c)
{
    if (c->wr.queued)
        return;
    c->wr.queued = 1;
    c->flush_next = gw->flush_list;
    gw->flush_list = c;
    if (!gw->dispatching && lws_dll2_is_detached(&gw->flush_sul.list))
        lws_sul_schedule(gw->lws, 0, &gw->flush_sul, writer_flush_due, WRITER_FLUSH_NOW);
}

static mg_conn *writer_pop(mg_gw *gw)
{
    mg_conn *c = gw->flush_list;
    if (c) {
        gw->flush_list = c->flush_next;
        c->wr.queued = 0;
    }
    return c;
}

void writer_forget(mg_gw *gw, mg_conn *c)
{
    if (!c->wr.queued)
        return;
    for (mg_conn **p = &gw->flush_list; *p; p = &(*p)->flush_next)
        if (*p == c) {
            *p = c->flush_next;
            c->wr.queued = 0;
            return;
        }
}

/* ---- how: one write ---- */

/* moongate writes c's socket itself: plain TCP that moongate reads. */
static int writer_raw(const mg_conn *c)
{
    return c->fast && !c->tls;
}

/* A write is pending that only POLLOUT can finish: ours, or one lws
 * keeps. */
static int writer_blocked(const mg_conn *c)
{
    return writer_raw(c) ? c->wr.blocked : lws_partial_buffered(c->wsi);
}

/* What a write of n queued bytes to c's socket returned (a count, or
 * -errno): the queue drops what went out, and if the kernel took less the
 * connection waits for POLLOUT.  0, or -1 if the socket failed. */
static int writer_sent(mg_conn *c, ssize_t k, size_t n)
{
    if (k < 0) {
        if (k != -EAGAIN && k != -EWOULDBLOCK && k != -EINTR)
            return -1;
        k = 0;
    }
    sendq_consume(&c->q, (size_t)k);
    if ((size_t)k < n)
        c->wr.blocked = 1;
    return 0;
}

/* One write of whole queued frames: send() where moongate owns the socket
 * (lws_write would touch lws's connection struct, a cache miss per
 * socket in a broadcast); elsewhere lws_write,
 * which keeps what the kernel did not take and writes it before anything
 * else.  0, or -1 if the socket failed. */
static int writer_write_once(mg_gw *gw, mg_conn *c)
{
    const unsigned char *p;
    size_t n = sendq_gather(&c->q, gw->scratch, gw->scratch_cap, &p);
    if (!n)
        return 0;
    if (writer_raw(c)) {
        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        return writer_sent(c, k < 0 ? -errno : k, n);
    }
    if (lws_write(c->wsi, (unsigned char *)p, n, LWS_WRITE_RAW) < 0)
        return -1;
    sendq_consume(&c->q, n);
    return 0;
}

/* The kernel left part of a write: the connection waits for POLLOUT, and
 * until the write is out reading stops (a peer close read now would be a
 * hard close under lws's reader, and a client that does not read has no
 * business being read). */
static void writer_block(mg_gw *gw, mg_conn *c)
{
    gw->metrics->send_blocked++;
    if (!c->wr.paused) {
        lws_rx_flow_control(c->wsi, 0);
        c->wr.paused = 1;
    }
    lws_callback_on_writable(c->wsi);
}

/* After a write: blocked, or what is still to do (more frames, or the
 * end) waits for a writable callback. */
static void writer_after(mg_gw *gw, mg_conn *c)
{
    if (writer_blocked(c))
        writer_block(gw, c);
    else if (c->q.count || c->wr.end == MG_WR_FINISH || c->wr.end == MG_WR_HANGUP)
        lws_callback_on_writable(c->wsi);
}

/* 1 if c may be written now; else a writable callback is already due (or
 * the connection is gone). */
static int writer_may(const mg_conn *c)
{
    return c->wsi && !c->wr.paused && !writer_blocked(c) && c->wr.end != MG_WR_SHUT;
}

/* After a write that failed, or went out in part or whole (rc as
 * writer_write_once returns it). */
static void writer_done(mg_gw *gw, mg_conn *c, int rc)
{
    if (rc != 0) {
        c->wr.end = MG_WR_HANGUP; /* the socket failed: WRITEABLE ends it */
        lws_callback_on_writable(c->wsi);
        return;
    }
    writer_after(gw, c);
}

void writer_flush(mg_gw *gw, mg_conn *c)
{
    if (!writer_may(c))
        return;
    if (!c->fast) {
        /* lws reads it, and may owe it a pong: lws writes that first when
         * the socket is writable, then calls back, and the queue goes out
         * there (writer_writable), after it.  Until then lws reads nothing
         * more of it: what the client sends next (a bad frame lws would
         * drop the connection for, another ping) is parsed only once the
         * replies to what came before are out, so they keep their order. */
        if (!c->wr.paused) {
            lws_rx_flow_control(c->wsi, 0);
            c->wr.paused = 1;
        }
        lws_callback_on_writable(c->wsi);
        return;
    }
    writer_done(gw, c, c->q.count ? writer_write_once(gw, c) : 0);
}

int writer_frame(mg_gw *gw, mg_conn *c, int opcode, const void *data, size_t len)
{
    if (!writer_raw(c) || len < WRITER_DIRECT_MIN || c->q.count || !writer_may(c)) {
        int was_empty = c->q.count == 0;
        if (sendq_push_frame(&c->q, opcode, data, len) != 0)
            return MG_SEND_NOMEM;
        if (was_empty)
            writer_wake(gw, c);
        return MG_SEND_OK;
    }
    unsigned char h[MG_FRAME_HDR_MAX];
    size_t hl = sendq_frame_header(h, opcode, len);
    struct iovec iov[2] = {{h, hl}, {(void *)data, len}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t n = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    size_t sent = n > 0 ? (size_t)n : 0; /* an error shows on the next write or read */
    if (sent == hl + len)
        return MG_SEND_OK;
    if (sendq_push_frame_rest(&c->q, opcode, data, len, sent) != 0)
        return MG_SEND_NOMEM;
    c->wr.blocked = 1;
    writer_block(gw, c);
    return MG_SEND_OK;
}

void writer_end(mg_gw *gw, mg_conn *c, int end)
{
    if (end > c->wr.end)
        c->wr.end = (uint8_t)end;
    writer_wake(gw, c);
}

/* Everything queued is out: 1 if the connection should end now.  After a
 * protocol error the sending side is shut instead, so the client reads
 * the close frame, then EOF, and its own hang-up (or close_timeout) ends
 * the connection: closing at once with its data unread would reset the
 * connection and could destroy the close frame before the client reads
 * it. */
/* Shut the sending side: the client reads what was written, then EOF. */
static void writer_shut(mg_conn *c)
{
#if defined(LWS_WITH_TLS) && !defined(LWS_WITH_MBEDTLS)
    if (lws_is_ssl(c->wsi)) /* the TLS session ends first (close_notify) */
        SSL_shutdown(lws_get_ssl(c->wsi));
#endif
    shutdown(lws_get_socket_fd(c->wsi), SHUT_WR);
    c->wr.end = MG_WR_SHUT;
}

static int writer_finished(mg_conn *c)
{
    if (c->wr.end == MG_WR_HANGUP)
        return 1;
    if (c->wr.end == MG_WR_FINISH)
        writer_shut(c);
    return 0;
}

int writer_writable(mg_gw *gw, mg_conn *c)
{
    if (c->wr.paused) {
        lws_rx_flow_control(c->wsi, 1);
        c->wr.paused = 0;
    }
    c->wr.blocked = 0; /* POLLOUT: the socket takes more */
    if (c->wr.end == MG_WR_SHUT)
        return 0;
    if (writer_write_once(gw, c) != 0)
        return -1;
    if (!c->q.count && !writer_blocked(c) && writer_finished(c))
        return -1;
    writer_after(gw, c);
    return 0;
}

int writer_drain_now(mg_gw *gw, mg_conn *c, int shut)
{
    while (c->q.count)
        if (writer_write_once(gw, c) != 0)
            return -1;
    if (shut && !writer_blocked(c))
        writer_shut(c);
    return 0;
}

/* ---- many at once: the io_uring batch ---- */

void writer_uring_failed(mg_gw *gw)
{
    log_warn("io_uring failed: reading and writing with recv() and send() from now on");
    uring_free(gw->uring);
    gw->uring = NULL;
}

/* uring_done_fn: what became of a batched write (writer_batch_add). */
static void writer_batch_done(void *arg, void *ctx, int res, size_t len)
{
    mg_gw *gw = arg;
    mg_conn *c = ctx;
    int rc = writer_sent(c, res, len);
    gw->metrics->uring_writes += rc == 0;
    writer_done(gw, c, rc);
}

static void writer_batch_run(mg_gw *gw)
{
    if (gw->uring && uring_run(gw->uring, writer_batch_done, gw) < 0)
        writer_uring_failed(gw);
}

/* Queue c's write in the batch: 1 if queued, 0 if it is to be written now
 * (writer_flush). */
static int writer_batch_add(mg_gw *gw, mg_conn *c)
{
    if (!gw->uring || !writer_raw(c) || !c->q.count || !writer_may(c))
        return 0;
    struct iovec iov[URING_IOV];
    int n = sendq_iov(&c->q, iov, URING_IOV, gw->scratch_cap);
    if (uring_add(gw->uring, c->fd, iov, n, c) == 0)
        return 1;
    writer_batch_run(gw); /* full */
    return gw->uring && uring_add(gw->uring, c->fd, iov, n, c) == 0;
}

void writer_flush_all(mg_gw *gw)
{
    mg_conn *c;
    while ((c = writer_pop(gw)))
        if (!writer_batch_add(gw, c))
            writer_flush(gw, c);
    writer_batch_run(gw);
}

/* ---- start and stop ---- */

static void writer_uring_start(mg_gw *gw)
{
    if (!gw->fastrx_on || !listen_any_fast(gw->cfg))
        return; /* no connection is written by moongate */
    if (gw->cfg->uring == MG_URING_OFF) {
        log_info("socket I/O: a recv() and a send() per socket (io.uring: off)");
        return;
    }
    char why[128];
    gw->uring = uring_new(WRITER_URING_ENTRIES, why, sizeof(why));
    if (gw->uring)
        log_info("socket I/O: batched through io_uring");
    else
        log_warn("socket I/O: a recv() and a send() per socket, no io_uring (%s)", why);
}

int writer_start(mg_gw *gw)
{
    gw->scratch_cap = WRITER_SCRATCH;
    gw->scratch = malloc(gw->scratch_cap);
    if (!gw->scratch)
        return -1;
    writer_uring_start(gw);
    return 0;
}

void writer_stop(mg_gw *gw)
{
    uring_free(gw->uring);
    gw->uring = NULL;
    free(gw->scratch);
    gw->scratch = NULL;
}
