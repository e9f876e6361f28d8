/* server.c — the libwebsockets side of the gateway.
 *
 * Data path: socket -> RECEIVE (reassembly, limits, UTF-8) -> script hook
 * -> conn send queue -> SERVER_WRITEABLE (one raw write of whole frames).
 * On plain listeners fastrx.c reads instead of lws once the upgrade is
 * done and calls server_rx_* (same limits, UTF-8 and hooks), and moongate
 * writes those connections itself: at the end of the loop turn, all in
 * one batch through io_uring (uring.h), or, without it, right after each
 * read with send().
 * libwebsockets 4.1.6 rules this file keeps (shared/NOTES.md):
 *  - upgrades are checked in HTTP_CONFIRM_UPGRADE (handshake.c), before
 *    lws's own checks that would drop a bad request without an answer;
 *  - no extension is offered, and no HTTP/2 (ALPN http/1.1): raw writes
 *    bypass both;
 *  - a raw write holds complete frames only, is made only when lws holds
 *    no partial write, and reading stops while one is pending; on
 *    connections fastrx reads, moongate writes the socket itself (lws has
 *    nothing of its own to write there) and the queue keeps the rest;
 *  - the queue is flushed when the peer's close arrives, so replies to
 *    what came before it precede lws's close reply;
 *  - a close the gateway starts is a close frame queued behind the data
 *    (conn_close); the peer's answer ends the connection, and lws's timeout
 *    ends it if no answer comes.  (Returning -1 from WRITEABLE after
 *    lws_close_reason makes 4.1.6 drop the socket without waiting.)
 *  - lws's validity pings are off: heartbeat.c owns liveness;
 *  - each connection's 64 KiB receive buffer lives in lwsmem's arena and
 *    is emptied in RECEIVE_PONG.  lws 4.1.6 hands data payloads to the
 *    callback straight from its read buffer; only control frames (ping,
 *    pong, close) are collected in the connection's own buffer, and at a
 *    pong callback it holds that pong and nothing else. */
#include "server.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "broker.h"
#include "cluster.h"
#include "conn.h"
#include "evpoll.h"
#include "fastrx.h"
#include "fdguard.h"
#include "gwctl.h"
#include "handshake.h"
#include "heartbeat.h"
#include "http.h"
#include "log.h"
#include "lwsmem.h"
#include "peer.h"
#include "script.h"
#include "static.h"
#include "sul.h"
#include "uring.h"
#include "utf8.h"
#include "wsrx.h"

#define SERVER_BUF (64 * 1024)
/* Writes per io_uring batch: a broadcast to more goes in several. */
#define SERVER_URING_ENTRIES 1024

/* What lws keeps pointers to for a listener's whole life: copies, so a
 * reload that frees the old config cannot pull them away.  Listeners are
 * fixed at start (a changed listen section needs a restart). */
struct mg_slot {
    size_t idx;
    int fast; /* moongate reads its connections (fastrx.c) */
    char name[32];
    char *path;
};

/* lws must not ping or hang up on its own. */
static const lws_retry_bo_t server_no_validity = {.secs_since_valid_ping = 0,
                                                  .secs_since_valid_hangup = 0};

static int server_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len);

/* No per-session data: a connection's mg_conn is the wsi's opaque user
 * data, which saves lws a 32-byte allocation per connection. */
static const struct lws_protocols server_protocols[] = {
    {"moongate", server_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static struct lws_protocols server_admin_protocols[] = {
    {"moongate-admin", http_admin_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* The WebSocket path of the listener a wsi arrived on. */
static const char *server_ws_path(struct lws *wsi)
{
    mg_slot *sl = lws_vhost_user(lws_get_vhost(wsi));
    return sl ? sl->path : "/";
}

static int server_established(mg_gw *gw, struct lws *wsi)
{
    gw->now_ms = gw_clock_ms(); /* its liveness and ping clocks start now */
    mg_conn *c = handshake_accept(gw, wsi);
    if (!c)
        return -1;
    lws_set_opaque_user_data(wsi, c);
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    conn_fd_bind(gw, c, lws_get_socket_fd(wsi));
    fdguard_upgraded(c->fd);
    mg_slot *sl = lws_vhost_user(lws_get_vhost(wsi));
    if (sl && sl->fast)
        fastrx_attach(gw, c);
    heartbeat_track(gw, c);
    script_on_connect(gw, c);
    return 0;
}

/* ---- reading ---- */

/* The client broke a rule: the close frame goes out after what is already
 * queued (replies to what it sent before, in order, as RFC 6455 and
 * Autobahn expect), and nothing more it sends is handled. */
static int server_fail(mg_gw *gw, mg_conn *c, int code, const char *reason, mg_evict_reason why)
{
    log_conn(MG_LOG_INFO, c->id, "closing: %d %s", code, reason);
    gw->metrics->evictions[why]++;
    conn_close(gw, c, code, reason, 0);
    return 0;
}

/* Token bucket: 1 if the message may pass. */
static int server_rate_ok(mg_gw *gw, mg_conn *c)
{
    const mg_config *cfg = gw->cfg;
    if (!cfg->message_rate)
        return 1;
    double burst = cfg->message_burst ? cfg->message_burst : cfg->message_rate;
    int64_t now = gw_now(gw);
    c->tokens += (double)(now - c->tokens_ms) * cfg->message_rate / 1000.0;
    c->tokens_ms = now;
    if (c->tokens > burst)
        c->tokens = burst;
    if (c->tokens < 1.0)
        return 0;
    c->tokens -= 1.0;
    return 1;
}

static void server_message(mg_gw *gw, mg_conn *c, const unsigned char *data, size_t len, int binary)
{
    const mg_config *cfg = gw->cfg;

    gw->metrics->messages_in++;
    gw->metrics->bytes_in += len;
    if (!binary && !utf8_valid(data, len)) {
        server_fail(gw, c, 1007, "invalid UTF-8", MG_EVICT_BAD_UTF8);
        return;
    }
    if (!server_rate_ok(gw, c)) {
        server_fail(gw, c, 1008, "message rate exceeded", MG_EVICT_RATE);
        return;
    }
    if (!binary && cfg->text_ping && len == strlen(cfg->text_ping) &&
        memcmp(data, cfg->text_ping, len) == 0) {
        conn_send(gw, c, MG_OP_TEXT, cfg->text_pong, strlen(cfg->text_pong));
        return;
    }
    script_on_message(gw, c, data, len, binary);
}

static int server_receive(mg_gw *gw, mg_conn *c, struct lws *wsi, const unsigned char *in,
                          size_t len)
{
    if (!c || c->state != MG_CONN_OPEN)
        return 0;
    c->last_rx_ms = gw_now(gw);
    if (c->fast && (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))) {
        /* lws parsed this from the bytes that came with the handshake; it
         * cannot hand the rest of the frame over to fastrx. */
        server_rx_error(gw, c, 1002, "frame sent before the handshake completed");
        return 0;
    }
    if (!c->rx_active) {
        c->rx_active = 1;
        c->rx_binary = lws_frame_is_binary(wsi) != 0;
        c->rx_len = 0;
    }
    int final = lws_is_final_fragment(wsi);
    size_t total = c->rx_len + len + (final ? 0 : lws_remaining_packet_payload(wsi));
    if (total > gw->cfg->max_message_size) {
        c->rx_active = 0;
        return server_fail(gw, c, 1009, "message too big", MG_EVICT_TOO_BIG);
    }
    if (final && c->rx_len == 0) { /* whole message in one piece: no copy */
        c->rx_active = 0;
        server_message(gw, c, in, len, c->rx_binary);
        return 0;
    }
    if (wsrx_buf_append(&c->rx, &c->rx_len, &c->rx_cap, in, len) != 0)
        return server_fail(gw, c, 1011, "out of memory", MG_EVICT_PROTOCOL);
    if (final) {
        c->rx_active = 0;
        server_message(gw, c, c->rx, c->rx_len, c->rx_binary);
        c->rx_len = 0;
        if (c->rx_cap > 65536) { /* don't keep a big buffer on an idle connection */
            free(c->rx);
            c->rx = NULL;
            c->rx_cap = 0;
        }
    }
    return 0;
}

static int server_pong(mg_gw *gw, mg_conn *c, const void *in)
{
    if (!c)
        return 0;
    c->last_rx_ms = gw_now(gw);
    /* The receive buffer holds only this pong, and lws is done with it:
     * an idle connection's buffer is back to no resident page. */
    lwsmem_rx_release(in);
    return 0;
}

/* ---- reading: fastrx's sink (a connection moongate reads itself) ---- */

int server_rx_message(mg_gw *gw, mg_conn *c, const unsigned char *data, size_t len, int binary)
{
    if (c->state == MG_CONN_OPEN) /* after our close frame, only the answer counts */
        server_message(gw, c, data, len, binary);
    return 0;
}

typedef enum {
    SERVER_CLOSE_ANSWER,  /* the answer to our own close frame */
    SERVER_CLOSE_INVALID, /* a bad body: our 1002 close frame is queued */
    SERVER_CLOSE_PEER     /* the peer closes: on_disconnect has run */
} server_close_kind;

static server_close_kind server_close_received(mg_gw *gw, mg_conn *c, const unsigned char *in,
                                               size_t len);

/* The peer's close frame: answer it (unless it answers ours), then hang up
 * once the queue is out. */
static int server_rx_close(mg_gw *gw, mg_conn *c, const unsigned char *in, size_t len)
{
    c->rx_dead = 1; /* nothing after a close frame counts */
    c->close_after_flush = 1;
    if (server_close_received(gw, c, in, len) == SERVER_CLOSE_PEER) {
        conn_send_control(gw, c, MG_OP_CLOSE, in, len); /* the echo, after any last message */
        conn_arm_close_timeout(gw, c);
    }
    return 1;
}

int server_rx_control(mg_gw *gw, mg_conn *c, int opcode, const unsigned char *data, size_t len)
{
    switch (opcode) {
    case MG_OP_PING:
        if (c->state == MG_CONN_OPEN)
            conn_send_control(gw, c, MG_OP_PONG, data, len);
        return 0;
    case MG_OP_CLOSE:
        return server_rx_close(gw, c, data, len);
    default: /* a pong: the read already counted as a sign of life */
        return 0;
    }
}

/* A frame broke the protocol (or a message the size limit): the close
 * frame goes out, nothing more is read, and the connection ends when the
 * client hangs up or close_timeout passes. */
void server_rx_error(mg_gw *gw, mg_conn *c, int code, const char *reason)
{
    c->rx_dead = 1;
    if (c->state != MG_CONN_OPEN) {
        c->close_after_flush = 1;
        conn_wake(gw, c);
        return;
    }
    server_fail(gw, c, code, reason, code == 1009 ? MG_EVICT_TOO_BIG : MG_EVICT_PROTOCOL);
}

/* ---- reading: what libwebsockets' reader does not tell ----
 *
 * lws calls back only with payload, so a frame header announcing more than
 * max_message_size would go unanswered until the payload starts.  After
 * each loop turn, the connections lws reads that were readable are looked
 * at: a frame whose announced length would take the message over the
 * limit fails the connection with 1009 at once, as moongate's reader does.
 * (Control frames carry at most 125 bytes: a length past that is data.) */

static void server_rx_note(mg_gw *gw, uint64_t id)
{
    if (gw->rx_check_n == gw->rx_check_cap) {
        int cap = gw->rx_check_cap ? gw->rx_check_cap * 2 : 64;
        uint64_t *n = realloc(gw->rx_check, (size_t)cap * sizeof(*n));
        if (!n)
            return; /* unchecked this turn: the payload still is */
        gw->rx_check = n;
        gw->rx_check_cap = cap;
    }
    gw->rx_check[gw->rx_check_n++] = id;
}

static void server_rx_checked(mg_gw *gw)
{
    for (int i = 0; i < gw->rx_check_n; i++) {
        mg_conn *c = conn_find(gw, gw->rx_check[i]);
        if (!c || !c->wsi || c->state != MG_CONN_OPEN)
            continue;
        uint64_t announced = lws_remaining_packet_payload(c->wsi);
        uint64_t total = announced + (c->rx_active ? c->rx_len : 0);
        if (announced > 125 && total > gw->cfg->max_message_size)
            server_fail(gw, c, 1009, "message too big", MG_EVICT_TOO_BIG);
    }
    gw->rx_check_n = 0;
}

/* evpoll_ready_fn: the loop's poll() found fds[ready[0..k-1]] ready. */
static void server_on_ready(void *arg, struct pollfd *fds, const int *ready, int k)
{
    mg_gw *gw = arg;
    for (int j = 0; j < k; j++) {
        mg_conn *c = conn_by_fd(gw, fds[ready[j]].fd);
        if (c && !c->fast && (fds[ready[j]].revents & POLLIN))
            server_rx_note(gw, c->id);
    }
    fastrx_prefetch(gw, fds, ready, k);
}

/* ---- writing ---- */

/* What a write of n queued bytes to c's socket returned (a count, or
 * -errno): the queue drops what went out, and if the kernel took less the
 * connection waits for POLLOUT.  0, or -1 if the socket failed. */
static int server_sent(mg_conn *c, ssize_t k, size_t n)
{
    if (k < 0) {
        if (k != -EAGAIN && k != -EWOULDBLOCK && k != -EINTR)
            return -1;
        k = 0;
    }
    sendq_consume(&c->q, (size_t)k);
    if ((size_t)k < n)
        c->wr_blocked = 1;
    return 0;
}

/* A connection fastrx reads is written with send(): what the kernel does
 * not take stays in the queue, and the connection is blocked until
 * POLLOUT.  Going through lws_write cost a tenth of a broadcast's user
 * time, most of it cache misses on lws's connection struct.  0, or -1 if
 * the socket failed. */
static int server_send(mg_conn *c, const unsigned char *p, size_t n)
{
    ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    return server_sent(c, k < 0 ? -errno : k, n);
}

/* One raw write of whole queued frames.  Elsewhere lws_write keeps what
 * the kernel did not take, and writes it before anything else. */
static int server_write_once(mg_gw *gw, mg_conn *c)
{
    const unsigned char *p;
    size_t n = sendq_gather(&c->q, gw->scratch, gw->scratch_cap, &p);
    if (!n)
        return 0;
    if (c->fast)
        return server_send(c, p, n);
    if (lws_write(c->wsi, (unsigned char *)p, n, LWS_WRITE_RAW) < 0)
        return -1;
    sendq_consume(&c->q, n);
    return 0;
}

/* A write is pending that only POLLOUT can finish. */
static int server_blocked(const mg_conn *c)
{
    return c->fast ? c->wr_blocked : lws_partial_buffered(c->wsi);
}

/* Everything queued is out: 1 if the connection should end now.  After a
 * protocol error (rx_dead without close_after_flush) the write side is
 * shut instead, so the client reads the close frame, then EOF, and its
 * own hang-up (or close_timeout) ends the connection: closing at once
 * with its data unread would reset the connection and could destroy the
 * close frame before the client reads it. */
static int server_flushed(mg_conn *c, struct lws *wsi)
{
    if (c->close_after_flush)
        return 1;
    if (c->rx_dead && !c->wr_shut) {
        shutdown(lws_get_socket_fd(wsi), SHUT_WR);
        c->wr_shut = 1;
    }
    return 0;
}

/* After a write: if the kernel took only part of it (lws keeps the rest,
 * or the queue does), the connection waits for POLLOUT, and until it is
 * out reading stops (a peer close read now would be a hard close under
 * lws's reader, and a client that does not read has no business being
 * read).  Else, what is still to do waits for a writable callback. */
static void server_after_write(mg_gw *gw, mg_conn *c, struct lws *wsi)
{
    if (server_blocked(c)) {
        gw->metrics->send_blocked++;
        lws_rx_flow_control(wsi, 0);
        c->rx_paused = 1;
        lws_callback_on_writable(wsi);
    } else if (c->q.count || c->close_after_flush || (c->rx_dead && !c->wr_shut)) {
        lws_callback_on_writable(wsi);
    }
}

/* 1 if c may be written now; else a writable callback is already due
 * (or the connection is gone). */
static int server_may_write(const mg_conn *c)
{
    return c->wsi && !c->rx_paused && !server_blocked(c);
}

/* After a write that failed, or went out in part or whole (rc as
 * server_write_once returns it). */
static void server_written(mg_gw *gw, mg_conn *c, int rc)
{
    if (rc != 0) {
        c->close_after_flush = 1; /* the socket failed: WRITEABLE ends it */
        lws_callback_on_writable(c->wsi);
        return;
    }
    server_after_write(gw, c, c->wsi);
}

void server_flush(mg_gw *gw, mg_conn *c)
{
    if (server_may_write(c))
        server_written(gw, c, c->q.count ? server_write_once(gw, c) : 0);
}

/* uring_done_fn: what became of a batched write (server_batch_add). */
static void server_batch_done(void *arg, void *ctx, int res, size_t len)
{
    mg_gw *gw = arg;
    mg_conn *c = ctx;
    int rc = server_sent(c, res, len);
    gw->metrics->uring_writes += rc == 0;
    server_written(gw, c, rc);
}

void server_uring_failed(mg_gw *gw)
{
    log_warn("io_uring failed: reading and writing with recv() and send() from now on");
    uring_free(gw->uring);
    gw->uring = NULL;
}

static void server_batch_run(mg_gw *gw)
{
    if (gw->uring && uring_run(gw->uring, server_batch_done, gw) < 0)
        server_uring_failed(gw);
}

/* Queue c's write in the batch (uring.h): 1 if queued, 0 if it is to be
 * written now (server_flush). */
static int server_batch_add(mg_gw *gw, mg_conn *c)
{
    if (!gw->uring || !c->fast || !c->q.count || !server_may_write(c))
        return 0;
    struct iovec iov[URING_IOV];
    int n = sendq_iov(&c->q, iov, URING_IOV, gw->scratch_cap);
    if (uring_add(gw->uring, c->fd, iov, n, c) == 0)
        return 1;
    server_batch_run(gw); /* full */
    return gw->uring && uring_add(gw->uring, c->fd, iov, n, c) == 0;
}

/* Write every connection whose queue filled during the loop turn: those
 * moongate writes itself in batches through io_uring, when it can. */
static void server_flush_all(mg_gw *gw)
{
    mg_conn *c;
    while ((c = conn_flush_pop(gw)))
        if (!server_batch_add(gw, c))
            server_flush(gw, c);
    server_batch_run(gw);
}

/* gw->flush_cb: a timer queued writes (conn_wake). */
static void server_flush_due(lws_sorted_usec_list_t *sul)
{
    server_flush_all(lws_container_of(sul, mg_gw, flush_sul));
}

static int server_writeable(mg_gw *gw, mg_conn *c, struct lws *wsi)
{
    if (!c)
        return 0;
    if (c->rx_paused) {
        lws_rx_flow_control(wsi, 1);
        c->rx_paused = 0;
    }
    c->wr_blocked = 0; /* POLLOUT: the socket takes more */
    if (server_write_once(gw, c) != 0)
        return -1;
    if (!c->q.count && !server_blocked(c) && server_flushed(c, wsi))
        return -1;
    server_after_write(gw, c, wsi);
    return 0;
}

/* ---- closing ---- */

/* A close frame body is valid if empty, or a code that may be sent on the
 * wire followed by UTF-8. */
static int server_close_valid(const unsigned char *in, size_t len, int *code)
{
    if (len == 0) {
        *code = 1005;
        return 1;
    }
    if (len == 1)
        return 0;
    *code = (in[0] << 8) | in[1];
    int ok = (*code >= 1000 && *code <= 1003) || (*code >= 1007 && *code <= 1011) ||
             (*code >= 3000 && *code <= 4999);
    return ok && utf8_valid(in + 2, len - 2);
}

/* What both readers do with a close frame from the peer.  A bad body is
 * not echoed: the answer is a 1002 of our own (under lws's reader, lws
 * has already rewritten a code that may not be sent to 1002, so only
 * 1-byte bodies and non-UTF-8 reasons get here).  A good one ends the
 * connection's open life; on_disconnect may still send a last message,
 * which goes out before the close reply. */
static server_close_kind server_close_received(mg_gw *gw, mg_conn *c, const unsigned char *in,
                                               size_t len)
{
    int code = 0;
    if (c->state == MG_CONN_CLOSING)
        return SERVER_CLOSE_ANSWER;
    if (!server_close_valid(in, len, &code)) {
        log_conn(MG_LOG_INFO, c->id, "invalid close frame (%zu bytes)", len);
        gw->metrics->evictions[MG_EVICT_PROTOCOL]++;
        conn_close(gw, c, 1002, "invalid close frame", 0);
        return SERVER_CLOSE_INVALID;
    }
    if (c->state == MG_CONN_OPEN) {
        conn_leave_open(gw, c, MG_CONN_PEER_CLOSED);
        conn_set_close(c, code, len > 2 ? (const char *)in + 2 : "", len > 2 ? len - 2 : 0);
        c->final_window = 1;
        script_on_disconnect(gw, c, c->close_code, conn_close_reason(c));
        c->final_window = 0;
    }
    return SERVER_CLOSE_PEER;
}

/* lws's reader: the queue goes out now, then lws sends its close reply
 * (0); after our own 1002, or when this answers our close, hang up (-1). */
static int server_peer_close(mg_gw *gw, mg_conn *c, unsigned char *in, size_t len)
{
    if (!c)
        return 0;
    server_close_kind k = server_close_received(gw, c, in, len);
    if (k == SERVER_CLOSE_ANSWER)
        return -1;
    assert(!c->fast); /* lws's reader only: lws_write takes it all */
    while (c->q.count)
        if (server_write_once(gw, c) != 0)
            return -1;
    return k == SERVER_CLOSE_INVALID ? -1 : 0;
}

static void server_closed(mg_gw *gw, struct lws *wsi)
{
    mg_conn *c = lws_get_opaque_user_data(wsi);
    if (!c)
        return;
    fastrx_detach(gw, c);
    conn_fd_unbind(gw, c);
    c->wsi = NULL; /* the socket is gone: sends from on_disconnect fail cleanly */
    if (!c->closed_hook) {
        if (c->state == MG_CONN_OPEN) {
            conn_set_close(c, 1006, "abnormal closure", 16);
            conn_leave_open(gw, c, MG_CONN_CLOSING);
        }
        script_on_disconnect(gw, c, c->close_code, conn_close_reason(c));
    }
    log_conn(MG_LOG_DEBUG, c->id, "closed: %d %s", c->close_code, conn_close_reason(c));
    broker_conn_closed(gw, c->id);
    script_forget_conn(gw, c);
    conn_destroy(gw, c);
    lws_set_opaque_user_data(wsi, NULL);
    if (gw->draining && gw->metrics->connections == 0)
        gw->stopping = 1;
}

/* ---- plain HTTP on a WebSocket listener ---- */

/* The WebSocket path answers 400; anything else is a static file, if
 * static.root is set (read at each request: a reload may change it). */
static int server_http(mg_gw *gw, struct lws *wsi, const char *uri)
{
    const mg_config *cfg = gw->cfg;
    if (strcmp(uri, server_ws_path(wsi)) == 0)
        http_respond(wsi, 400, "text/plain", "this is a WebSocket endpoint\n", 29, NULL, NULL);
    else if (cfg->static_root)
        return static_serve(wsi, cfg->static_root,
                            cfg->static_index ? cfg->static_index : "index.html",
                            cfg->static_follow_symlinks, uri);
    else
        http_respond(wsi, 404, "text/plain", "not found\n", 10, NULL, NULL);
    return -1; /* answered with "connection: close" */
}

static int server_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len)
{
    mg_gw *gw = lws_context_user(lws_get_context(wsi));
    mg_conn *c = lws_get_opaque_user_data(wsi); /* NULL until ESTABLISHED */

    switch (reason) {
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        /* lws timeouts have a granularity of seconds. */
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK,
                        (int)((gw->cfg->handshake_timeout_ms + 999) / 1000));
        return 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return handshake_check(gw, wsi, server_ws_path(wsi), in);
    case LWS_CALLBACK_HTTP:
        return server_http(gw, wsi, in);
    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
        return static_done(wsi);
    case LWS_CALLBACK_ESTABLISHED:
        return server_established(gw, wsi);
    case LWS_CALLBACK_RECEIVE:
        return server_receive(gw, c, wsi, in, len);
    case LWS_CALLBACK_RECEIVE_PONG:
        return server_pong(gw, c, in);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return server_writeable(gw, c, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        return server_peer_close(gw, c, in, len);
    case LWS_CALLBACK_CLOSED:
        server_closed(gw, wsi);
        return 0;
    case LWS_CALLBACK_RAW_RX_FILE: {
        int peer;
        if (wsi == gw->signal_wsi)
            gwctl_on_signal(gw, lws_get_socket_fd(wsi));
        else if (wsi == gw->reload_wsi)
            gwctl_reload_ready(gw);
        else if (wsi == gw->ctl_wsi)
            gwctl_on_ctl(gw);
        else if ((peer = peers_on_readable(gw, wsi)) != 0)
            return peer < 0 ? -1 : 0; /* -1: lws closes a dead link */
        else if (cluster_on_readable(gw, wsi))
            return 0;
        else
            broker_on_events(gw);
        return 0;
    }
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        if (wsi == gw->ctl_wsi)
            gw->ctl_wsi = NULL;
        peers_on_close(gw, wsi);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* ---- context and listeners ---- */

/* moongate reads (and writes) this listener's connections (fastrx.c). */
static int server_listener_fast(const mg_listener *l)
{
    return l->reader == MG_READER_MOONGATE && !l->tls_cert;
}

static int server_slot_init(mg_slot *sl, const mg_config *cfg, size_t i)
{
    sl->idx = i;
    sl->fast = server_listener_fast(&cfg->listeners[i]);
    snprintf(sl->name, sizeof(sl->name), "listener%zu", i);
    sl->path = strdup(cfg->listeners[i].path);
    return sl->path ? 0 : -1;
}

static void server_slot_free(mg_slot *sl)
{
    free(sl->path);
}

static struct lws_vhost *server_vhost(mg_gw *gw, size_t i, char *err, size_t errlen)
{
    const mg_config *cfg = gw->cfg;
    const mg_listener *l = &cfg->listeners[i];
    mg_slot *sl = &gw->slots[i];
    struct lws_context_creation_info v;

    if (server_slot_init(sl, cfg, i) != 0) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    memset(&v, 0, sizeof(v));
    v.vhost_name = sl->name;
    v.iface = l->host;
    v.port = l->port;
    v.protocols = server_protocols;
    v.user = sl;
    v.retry_and_idle_policy = &server_no_validity;
    /* Waiting for request headers is bounded by the handshake timeout. */
    v.keepalive_timeout = (int)((cfg->handshake_timeout_ms + 999) / 1000);
    v.timeout_secs_ah_idle = (unsigned int)v.keepalive_timeout;
    v.alpn = "http/1.1";
    if (!strchr(l->host, ':'))
        v.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    if (l->tls_cert) {
        v.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT; /* lws checks it per vhost */
        v.ssl_cert_filepath = l->tls_cert;
        v.ssl_private_key_filepath = l->tls_key;
    }
    struct lws_vhost *vh = lws_create_vhost(gw->lws, &v);
    if (!vh) {
        snprintf(err, errlen,
                 "cannot listen on %s:%d (address in use or invalid, or bad TLS files)", l->host,
                 l->port);
        return NULL;
    }
    log_info("listening on %s://%s:%d%s", l->tls_cert ? "wss" : "ws", l->host, l->port, l->path);
    return vh;
}

static int server_admin(mg_gw *gw, char *err, size_t errlen)
{
    const mg_config *cfg = gw->cfg;
    struct lws_context_creation_info v;
    if (!cfg->admin_port)
        return 0;
    memset(&v, 0, sizeof(v));
    server_admin_protocols[0].per_session_data_size = http_admin_session_size();
    v.vhost_name = "admin";
    v.iface = cfg->admin_host;
    v.port = cfg->admin_port;
    v.protocols = server_admin_protocols;
    v.retry_and_idle_policy = &server_no_validity;
    v.options = LWS_SERVER_OPTION_DISABLE_IPV6 * (strchr(cfg->admin_host, ':') == NULL);
    gw->admin_vhost = lws_create_vhost(gw->lws, &v);
    if (!gw->admin_vhost) {
        snprintf(err, errlen, "cannot listen on %s:%d for admin", cfg->admin_host, cfg->admin_port);
        return -1;
    }
    log_info("admin on http://%s:%d", cfg->admin_host, cfg->admin_port);
    return 0;
}

/* Descriptors kept for everything but WebSocket connections: listeners,
 * admin, broker, the event loop's own, files a script opens. */
#define SERVER_SPARE_FDS 128

/* libwebsockets sizes its descriptor tables by the soft open-files limit
 * when the context is created, and accepts no descriptor beyond it; and
 * Debian's debug build scans the whole table at every close.  So the soft
 * limit is set to what max_connections needs: raised from a default of
 * 1024 (which would cap the gateway near 1,000 connections), and lowered
 * from a huge one (a 1M limit is an 8 MB scan per close).  A hard limit
 * below the need is reported, and bounds conn_capacity. */
static void server_fd_limit(mg_gw *gw)
{
    const mg_config *cfg = gw->cfg;
    struct rlimit rl;
    rlim_t want = (rlim_t)cfg->max_connections + cfg->max_handshakes + SERVER_SPARE_FDS;
    gw->conn_capacity = cfg->max_connections;
    gw->hs_capacity = cfg->max_handshakes;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
        /* What there is goes to connections, an eighth of it (at least
         * 16) kept for handshakes. */
        want = rl.rlim_max;
        uint32_t room = want > SERVER_SPARE_FDS * 2 ? (uint32_t)(want - SERVER_SPARE_FDS)
                                                    : (uint32_t)(want / 2);
        uint32_t hs = room / 8 > 16 ? room / 8 : 16;
        gw->hs_capacity = hs < cfg->max_handshakes ? hs : cfg->max_handshakes;
        gw->conn_capacity = room > gw->hs_capacity ? room - gw->hs_capacity : 1;
        log_warn("open files: the hard limit (%llu) allows about %u connections and %u "
                 "handshakes at once, fewer than limits.max_connections (%u) and "
                 "limits.max_handshakes (%u); raise it (ulimit -Hn, systemd LimitNOFILE=)",
                 (unsigned long long)rl.rlim_max, gw->conn_capacity, gw->hs_capacity,
                 cfg->max_connections, cfg->max_handshakes);
    }
    if (rl.rlim_cur == want)
        return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        log_warn("open files: cannot set the limit to %llu: %s", (unsigned long long)want,
                 strerror(errno));
        return;
    }
    log_info("open files: limit %llu (was %llu) for limits.max_connections %u and "
             "limits.max_handshakes %u",
             (unsigned long long)want, (unsigned long long)was, cfg->max_connections,
             cfg->max_handshakes);
}

/* The handshake bound a config asks for, within what the open-files limit
 * set at start allows. */
uint32_t server_max_handshakes(const mg_gw *gw, const mg_config *cfg)
{
    return cfg->max_handshakes < gw->hs_capacity ? cfg->max_handshakes : gw->hs_capacity;
}

/* Batched writes for the connections moongate reads (io.uring). */
static void server_uring_start(mg_gw *gw)
{
    int fast = 0;
    for (size_t i = 0; i < gw->cfg->nlisteners; i++)
        fast |= server_listener_fast(&gw->cfg->listeners[i]);
    if (!gw->fastrx_on || !fast)
        return; /* no connection is written by moongate */
    if (gw->cfg->uring == MG_URING_OFF) {
        log_info("socket I/O: a recv() and a send() per socket (io.uring: off)");
        return;
    }
    char why[128];
    gw->uring = uring_new(SERVER_URING_ENTRIES, why, sizeof(why));
    if (gw->uring)
        log_info("socket I/O: batched through io_uring");
    else
        log_warn("socket I/O: a recv() and a send() per socket, no io_uring (%s)", why);
}

struct lws *server_watch(mg_gw *gw, int fd)
{
    lws_sock_file_fd_type f;
    if (fd < 0)
        return NULL;
    f.filefd = fd;
    return lws_adopt_descriptor_vhost(gw->vhosts[0], LWS_ADOPT_RAW_FILE_DESC, f, "moongate", NULL);
}

int server_start(mg_gw *gw, int signal_fd, char *err, size_t errlen)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.user = gw;
    info.pt_serv_buf_size = SERVER_BUF;
    info.timeout_secs = (unsigned int)((gw->cfg->handshake_timeout_ms + 999) / 1000);
    server_fd_limit(gw);
    if (conn_fd_table_init(gw) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    lwsmem_install();
    if (evpoll_start() != 0)
        log_warn("no epoll set: the event loop polls every socket on each turn");
    if (fdguard_start(gw, gw->fd_cap, server_max_handshakes(gw, gw->cfg)) != 0)
        log_warn("no guard on accept(): sockets in their handshake are not bounded, and running "
                 "out of descriptors makes the loop spin");
    gw->lws = lws_create_context(&info);
    if (!gw->lws) {
        snprintf(err, errlen, "cannot create the libwebsockets context");
        return -1;
    }
    if (!sul_check(gw->lws))
        log_warn("libwebsockets' timer list insertion is not ours: connect storms will be slow");
    if (fastrx_start(gw) != 0)
        log_warn("out of memory for moongate's frame reader: libwebsockets parses frames");
    server_uring_start(gw);
    evpoll_on_ready(server_on_ready, gw);
    gw->scratch_cap = SERVER_BUF;
    gw->scratch = malloc(gw->scratch_cap);
    gw->vhosts = calloc(gw->cfg->nlisteners, sizeof(*gw->vhosts));
    gw->slots = calloc(gw->cfg->nlisteners, sizeof(*gw->slots));
    gw->nslots = gw->cfg->nlisteners;
    if (!gw->scratch || !gw->vhosts || !gw->slots) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* With workers, each binds every listener and the admin port with
     * SO_REUSEPORT: the kernel spreads clients, and whichever worker
     * gets an admin request answers for all (http.c). */
    fdguard_share_ports(gw->nworkers > 1);
    int bad = 0;
    for (size_t i = 0; !bad && i < gw->cfg->nlisteners; i++)
        bad = !(gw->vhosts[i] = server_vhost(gw, i, err, errlen));
    if (!bad)
        bad = server_admin(gw, err, errlen) != 0;
    fdguard_share_ports(0);
    if (bad)
        return -1;

    gw->signal_wsi = server_watch(gw, signal_fd);
    gw->reload_wsi = server_watch(gw, gwctl_reload_fd(gw));
    if (gw->ctl_fd >= 0)
        gw->ctl_wsi = server_watch(gw, gw->ctl_fd);
    if (!gw->signal_wsi || !gw->reload_wsi || (gw->ctl_fd >= 0 && !gw->ctl_wsi)) {
        snprintf(err, errlen, "cannot watch signals in the event loop");
        return -1;
    }
    if (peers_start(gw, err, errlen) != 0)
        return -1;
    gw->now_ms = gw_clock_ms();
    gw->flush_cb = server_flush_due;
    heartbeat_start(gw);
    return 0;
}

static void server_trim(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    lwsmem_trim();
}

/* Freed lws buffers are kept for reuse; a second after more than lwsmem
 * keeps warm have piled up (a connect storm is over, or a crowd left), the
 * surplus goes back to the kernel (lwsmem.h). */
static void server_trim_later(mg_gw *gw)
{
    if (!lws_dll2_is_detached(&gw->trim_sul.list) || !lwsmem_trim_wanted())
        return; /* already due, or nothing to do */
    lws_sul_schedule(gw->lws, 0, &gw->trim_sul, server_trim, LWS_US_PER_SEC);
}

void server_run(mg_gw *gw)
{
    while (!gw->stopping) {
        if (lws_service(gw->lws, 0) < 0)
            break;
        server_rx_checked(gw);
        fastrx_settle(gw);
        /* Other workers first: a client told its name is set may at once
         * ask another worker to send to it (peer.h). */
        peers_flush(gw);
        server_flush_all(gw);
        server_trim_later(gw);
        if (!gw->evpoll_checked) {
            gw->evpoll_checked = 1;
            if (!evpoll_active())
                log_warn("libwebsockets' poll() calls do not reach moongate: every loop turn "
                         "polls every socket (slower with many connections)");
        }
        gw->clock_stale = 1;
    }
}

/* Stop accepting on the WebSocket listeners.  lws 4.1.6's own way
 * (lws_context_deprecate) uses the listen wsi after freeing it, so the
 * listen sockets are found by port and replaced, with dup2(), by the read
 * end of a pipe nobody writes: the port is released at once (new connects
 * are refused) and lws goes on polling an fd that never fires.  The admin
 * listener stays up so /health can say "draining". */
static void server_stop_listening(mg_gw *gw)
{
    int pfd[2];
    if (pipe(pfd) != 0)
        return;
    for (int fd = 0; fd < 65536; fd++) {
        int on = 0;
        socklen_t ol = sizeof(on);
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (fcntl(fd, F_GETFD) < 0)
            continue;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &ol) != 0 || !on ||
            getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
            continue;
        int port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                  : ((struct sockaddr_in *)&ss)->sin_port);
        for (size_t i = 0; i < gw->cfg->nlisteners; i++)
            if (gw->cfg->listeners[i].port == port) {
                dup2(pfd[0], fd);
                evpoll_forget(fd);
            }
    }
    close(pfd[0]);
    gw->drain_pipe_w = pfd[1]; /* kept open so the read ends never see EOF */
}

void server_drain(mg_gw *gw)
{
    gw->draining = 1;
    server_stop_listening(gw);
    for (mg_conn *c = gw->conn_list; c; c = c->next) {
        gw->metrics->evictions[MG_EVICT_SHUTDOWN]++;
        conn_close(gw, c, 1001, "server shutting down", 0);
    }
    if (gw->metrics->connections == 0)
        gw->stopping = 1;
}

void server_stop(mg_gw *gw)
{
    if (gw->lws) {
        lws_context_destroy(gw->lws);
        lwsmem_shutdown();
        fdguard_stop();
        evpoll_stop();
    }
    gw->lws = NULL;
    if (gw->drain_pipe_w > 0)
        close(gw->drain_pipe_w);
    for (size_t i = 0; gw->slots && i < gw->nslots; i++)
        server_slot_free(&gw->slots[i]);
    free(gw->slots);
    evpoll_on_ready(NULL, NULL);
    fastrx_stop(gw);
    conn_fd_table_free(gw);
    free(gw->rx_check);
    gw->rx_check = NULL;
    gw->rx_check_n = gw->rx_check_cap = 0;
    uring_free(gw->uring);
    gw->uring = NULL;
    free(gw->scratch);
    free(gw->vhosts);
    gw->slots = NULL;
    gw->scratch = NULL;
    gw->vhosts = NULL;
}
