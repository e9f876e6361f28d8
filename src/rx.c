/* rx.c — what clients send, from either reader (rx.h). */
#include "rx.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "compress.h"
#include "conn.h"
#include "log.h"
#include "lwsmem.h"
#include "script.h"
#include "utf8.h"
#include "wsrx.h"
#include "writer.h"

typedef enum {
    RX_CLOSE_ANSWER,  /* the answer to our own close frame */
    RX_CLOSE_INVALID, /* a bad body: our 1002 close frame is queued */
    RX_CLOSE_PEER     /* the peer closes: on_disconnect has run */
} rx_close_kind;

/* ---- what both readers do ---- */

/* The client broke a rule: the close frame goes out after what is already
 * queued (replies to what it sent before, in order, as RFC 6455 and
 * Autobahn expect), and nothing more it sends is handled. */
static int rx_fail(mg_gw *gw, mg_conn *c, int code, const char *reason, mg_evict_reason why)
{
    log_conn(MG_LOG_INFO, c->id, "closing: %d %s", code, reason);
    gw->metrics->evictions[why]++;
    conn_close(gw, c, code, reason, 0);
    return 0;
}

/* Token bucket: 1 if the message may pass. */
static int rx_rate_ok(mg_gw *gw, mg_conn *c)
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

/* The client broke the protocol (or sent a message over the limit): its
 * close frame goes out after the replies already queued, nothing more it
 * sends is handled, and then the sending side is shut (RFC 6455 7.1.7:
 * fail the connection), so the client reads the close frame, then EOF. */
static void rx_abort(mg_gw *gw, mg_conn *c, int code, const char *reason)
{
    mg_evict_reason why = code == 1009   ? MG_EVICT_TOO_BIG
                          : code == 1007 ? MG_EVICT_BAD_UTF8
                                         : MG_EVICT_PROTOCOL;
    c->rx_dead = 1;
    if (c->state != MG_CONN_OPEN) {
        writer_end(gw, c, MG_WR_HANGUP);
        return;
    }
    rx_fail(gw, c, code, reason, why);
    writer_end(gw, c, MG_WR_FINISH);
}

/* A whole data message, its text already checked as UTF-8 by the reader. */
static void rx_deliver(mg_gw *gw, mg_conn *c, const unsigned char *data, size_t len, int binary)
{
    const mg_config *cfg = gw->cfg;

    gw->metrics->messages_in++;
    gw->metrics->bytes_in += len;
    if (!rx_rate_ok(gw, c)) {
        rx_fail(gw, c, 1008, "message rate exceeded", MG_EVICT_RATE);
        return;
    }
    if (!binary && cfg->text_ping && len == strlen(cfg->text_ping) &&
        memcmp(data, cfg->text_ping, len) == 0) {
        conn_send(gw, c, MG_OP_TEXT, cfg->text_pong, strlen(cfg->text_pong));
        return;
    }
    script_on_message(gw, c, data, len, binary);
}

/* A close frame body is valid if empty, or a code that may be sent on the
 * wire followed by UTF-8. */
static int rx_close_valid(const unsigned char *in, size_t len, int *code)
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
static rx_close_kind rx_close_received(mg_gw *gw, mg_conn *c, const unsigned char *in, size_t len)
{
    int code = 0;
    if (c->state == MG_CONN_CLOSING)
        return RX_CLOSE_ANSWER;
    if (!rx_close_valid(in, len, &code)) {
        log_conn(MG_LOG_INFO, c->id, "invalid close frame (%zu bytes)", len);
        gw->metrics->evictions[MG_EVICT_PROTOCOL]++;
        conn_close(gw, c, 1002, "invalid close frame", 0);
        return RX_CLOSE_INVALID;
    }
    if (c->state == MG_CONN_OPEN) {
        conn_leave_open(gw, c, MG_CONN_PEER_CLOSED);
        conn_set_close(c, code, len > 2 ? (const char *)in + 2 : "", len > 2 ? len - 2 : 0);
        c->final_window = 1;
        script_on_disconnect(gw, c, c->close_code, conn_close_reason(c));
        c->final_window = 0;
    }
    return RX_CLOSE_PEER;
}

/* ---- moongate's reader (fastrx.c) ---- */

int rx_message(mg_gw *gw, mg_conn *c, const unsigned char *data, size_t len, int binary)
{
    if (c->state == MG_CONN_OPEN) /* after our close frame, only the answer counts */
        rx_deliver(gw, c, data, len, binary);
    return 0;
}

int rx_zpiece(mg_gw *gw, mg_conn *c, const unsigned char *data, size_t len, int final,
              int binary)
{
    const unsigned char *msg;
    size_t mlen;
    const char *reason = NULL;
    if (c->state != MG_CONN_OPEN) /* after our close frame, only the answer counts */
        return 0;
    int rc = compress_rx(gw, c, data, len, final, binary, &msg, &mlen, &reason);
    if (rc == COMPRESS_MORE)
        return 0;
    if (rc != COMPRESS_DONE) {
        rx_abort(gw, c, rc, reason);
        return 1;
    }
    rx_deliver(gw, c, msg, mlen, binary);
    compress_rx_done(c);
    return 0;
}

/* The peer's close frame: answer it (unless it answers ours), then hang up
 * once the queue is out. */
static int rx_close(mg_gw *gw, mg_conn *c, const unsigned char *in, size_t len)
{
    c->rx_dead = 1; /* nothing after a close frame counts */
    writer_end(gw, c, MG_WR_HANGUP);
    if (rx_close_received(gw, c, in, len) == RX_CLOSE_PEER) {
        conn_send_control(gw, c, MG_OP_CLOSE, in, len); /* the echo, after any last message */
        conn_arm_close_timeout(gw, c);
    }
    return 1;
}

int rx_control(mg_gw *gw, mg_conn *c, int opcode, const unsigned char *data, size_t len)
{
    switch (opcode) {
    case MG_OP_PING:
        if (c->state == MG_CONN_OPEN)
            conn_send_control(gw, c, MG_OP_PONG, data, len);
        return 0;
    case MG_OP_CLOSE:
        return rx_close(gw, c, data, len);
    default: /* a pong: the read already counted as a sign of life */
        return 0;
    }
}

/* A frame broke the protocol (or a message the size limit): the close
 * frame goes out, nothing more is read, and the connection ends when the
 * client hangs up or close_timeout passes. */
void rx_error(mg_gw *gw, mg_conn *c, int code, const char *reason)
{
    rx_abort(gw, c, code, reason);
}

/* ---- libwebsockets' reader ---- */

/* A piece of a text message: 0 if its bytes cannot be UTF-8 (checked as
 * they come, so the connection fails in the read that brings them), or
 * if the message ends inside a character. */
static int rx_lws_utf8(mg_conn *c, const unsigned char *in, size_t len, int final)
{
    uint8_t st = (uint8_t)c->rx_u8;
    int ok = utf8_step(&st, in, len) && (!final || st == 0);
    c->rx_u8 = st;
    return ok;
}

int rx_lws_receive(mg_gw *gw, mg_conn *c, struct lws *wsi, const unsigned char *in, size_t len)
{
    if (!c || c->state != MG_CONN_OPEN || c->rx_dead)
        return 0;
    c->last_rx_ms = gw_now(gw);
    if (c->fast && (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))) {
        /* lws parsed this from the bytes that came with the handshake; it
         * cannot hand the rest of the frame over to fastrx. */
        rx_abort(gw, c, 1002, "frame sent before the handshake completed");
        return 0;
    }
    if (!c->rx_active) {
        c->rx_active = 1;
        c->rx_binary = lws_frame_is_binary(wsi) != 0;
        c->rx_len = 0;
        c->rx_u8 = 0;
    }
    int final = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
    size_t total = c->rx_len + len + lws_remaining_packet_payload(wsi);
    if (total > gw->cfg->max_message_size) {
        c->rx_active = 0;
        rx_abort(gw, c, 1009, "message too big");
        return 0;
    }
    if (!c->rx_binary && !rx_lws_utf8(c, in, len, final)) {
        c->rx_active = 0;
        rx_abort(gw, c, 1007, "invalid UTF-8");
        return 0;
    }
    if (final && c->rx_len == 0) { /* whole message in one piece: no copy */
        c->rx_active = 0;
        rx_deliver(gw, c, in, len, c->rx_binary);
        return 0;
    }
    if (wsrx_buf_append(&c->rx, &c->rx_len, &c->rx_cap, in, len) != 0) {
        rx_abort(gw, c, 1011, "out of memory");
        return 0;
    }
    if (final) {
        c->rx_active = 0;
        rx_deliver(gw, c, c->rx, c->rx_len, c->rx_binary);
        c->rx_len = 0;
        if (c->rx_cap > 65536) { /* don't keep a big buffer on an idle connection */
            free(c->rx);
            c->rx = NULL;
            c->rx_cap = 0;
        }
    }
    return 0;
}

int rx_lws_pong(mg_gw *gw, mg_conn *c, const void *in)
{
    if (!c)
        return 0;
    c->last_rx_ms = gw_now(gw);
    /* The receive buffer holds only this pong, and lws is done with it:
     * an idle connection's buffer is back to no resident page. */
    lwsmem_rx_release(in);
    return 0;
}

/* lws's reader: the queue goes out now, then lws sends its close reply
 * (0); after our own 1002, or when this answers our close, hang up (-1). */
int rx_lws_peer_close(mg_gw *gw, mg_conn *c, unsigned char *in, size_t len)
{
    if (!c)
        return 0;
    rx_close_kind k = rx_close_received(gw, c, in, len);
    if (k == RX_CLOSE_ANSWER)
        return -1;
    /* After our 1002 the sending side is shut before lws closes the
     * socket, so the client reads the close frame, then a clean EOF. */
    if (writer_drain_now(gw, c, k == RX_CLOSE_INVALID) != 0)
        return -1;
    return k == RX_CLOSE_INVALID ? -1 : 0;
}

/* What libwebsockets' reader does not tell:
 *
 * lws calls back only with payload, so a frame header announcing more than
 * max_message_size would go unanswered until the payload starts.  After
 * each loop turn, the connections lws reads that were readable are looked
 * at: a frame whose announced length would take the message over the
 * limit fails the connection with 1009 at once, as moongate's reader does.
 * (Control frames carry at most 125 bytes: a length past that is data.) */

static void rx_lws_note(mg_gw *gw, uint64_t id)
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

/* lws's parser found a protocol error (a reserved bit or opcode, a bad
 * control frame...): it has set its close frame (lws_close_reason) and
 * writes it when the socket is writable, and it reads nothing more.  What
 * moongate queued before goes out first, as the replies to what the
 * client sent before the error; once lws's close frame is out, the next
 * writable callback shuts the sending side (writer_end), as moongate's
 * reader does. */
static void rx_lws_failed(mg_gw *gw, mg_conn *c)
{
    const unsigned char *p = lws_get_close_payload(c->wsi);
    int len = lws_get_close_length(c->wsi);
    int code = len >= 2 ? (p[0] << 8) | p[1] : 1002;
    const char *reason = len > 2 ? (const char *)p + 2 : "";
    size_t rlen = len > 2 ? (size_t)len - 2 : 0;
    log_conn(MG_LOG_INFO, c->id, "closing: %d %.*s", code, (int)rlen, reason);
    gw->metrics->evictions[MG_EVICT_PROTOCOL]++;
    conn_leave_open(gw, c, MG_CONN_CLOSING);
    conn_set_close(c, code, reason, rlen);
    conn_arm_close_timeout(gw, c);
    c->rx_dead = 1;
    if (writer_drain_now(gw, c, 0) != 0)
        writer_end(gw, c, MG_WR_HANGUP);
    else
        writer_end(gw, c, MG_WR_FINISH);
}

void rx_lws_check(mg_gw *gw)
{
    for (int i = 0; i < gw->rx_check_n; i++) {
        mg_conn *c = conn_find(gw, gw->rx_check[i]);
        if (!c || !c->wsi || c->state != MG_CONN_OPEN)
            continue;
        if (lws_get_close_length(c->wsi) > 0) {
            rx_lws_failed(gw, c);
            continue;
        }
        uint64_t announced = lws_remaining_packet_payload(c->wsi);
        uint64_t total = announced + (c->rx_active ? c->rx_len : 0);
        if (announced > 125 && total > gw->cfg->max_message_size)
            rx_abort(gw, c, 1009, "message too big");
    }
    gw->rx_check_n = 0;
}

void rx_lws_note_ready(mg_gw *gw, struct pollfd *fds, const int *ready, int k)
{
    for (int j = 0; j < k; j++) {
        mg_conn *c = conn_by_fd(gw, fds[ready[j]].fd);
        if (c && !c->fast && (fds[ready[j]].revents & POLLIN))
            rx_lws_note(gw, c->id);
    }
}
