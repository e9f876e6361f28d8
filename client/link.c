/*
 * link.c - moongate-cat's WebSocket link: one lws client connection at a time.
 *
 * States (struct cat.state): WAITING -> CONNECTING -> OPEN -> CLOSING, and back
 * to WAITING with a backoff timer when a connection fails or ends, unless
 * --once or the end of input makes it DONE.
 *
 * Sending: at most once. In LWS_CALLBACK_CLIENT_WRITEABLE the front line of
 * the queue is taken off, handed to lws_write() and freed; whatever happens to
 * the connection afterwards, that line is not sent again. Lines still queued
 * when a connection ends wait for the next one, in order. One message per
 * writable callback; lws_callback_on_writable() asks for the next.
 *
 * Heartbeat: a ping every --ping seconds; if neither a message nor a pong
 * arrives for two intervals, the connection is dropped (and reconnected).
 * Server pings are answered by lws.
 *
 * Backoff: the n-th consecutive failure waits d = min(max, min * 2^(n-1)) ms,
 * jittered uniformly in [d/2, d]. The count starts over when a connection
 * delivered a message or stayed up for CAT_STABLE_US.
 */
#include "cat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void link_connect(lws_sorted_usec_list_t *sul);

/* ---- backoff ---- */

static uint64_t link_random(struct cat *c)
{
    /* xorshift64*, seeded in main() */
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return c->rng * 2685821657736338717ull;
}

static unsigned link_backoff_ms(struct cat *c, unsigned attempt)
{
    uint64_t d = c->opt.backoff_min;

    for (unsigned i = 1; i < attempt && d < c->opt.backoff_max; i++)
        d *= 2;
    if (d > c->opt.backoff_max)
        d = c->opt.backoff_max;
    uint64_t half = d / 2;
    return (unsigned)(half + link_random(c) % (d - half + 1));
}

static void link_schedule_retry(struct cat *c)
{
    unsigned ms = link_backoff_ms(c, ++c->attempt);

    c->state = CAT_WAITING;
    cat_status(c, "# reconnecting in %u ms (attempt %u)", ms, c->attempt);
    lws_sul_schedule(c->ctx, 0, &c->connect_sul, link_connect, (lws_usec_t)ms * LWS_US_PER_MS);
}

/* ---- connection life cycle ---- */

static void link_stop_timers(struct cat *c)
{
    lws_sul_cancel(&c->ping_sul);
    lws_sul_cancel(&c->watchdog_sul);
    lws_sul_cancel(&c->end_sul);
}

static void link_describe_end(struct cat *c, const char *why, char *out, size_t n)
{
    if (why)
        snprintf(out, n, "connect failed: %s", why);
    else if (c->silent)
        snprintf(out, n, "disconnected: 1006 heartbeat timeout");
    else if (c->peer_code)
        snprintf(out, n, "disconnected: %d %s", c->peer_code, c->peer_reason);
    else
        snprintf(out, n, "disconnected: 1006 abnormal closure");
}

/*
 * The current attempt is over: it failed to connect (why != NULL) or the
 * connection closed. Decides between reconnecting and leaving.
 */
static void link_ended(struct cat *c, const char *why)
{
    enum cat_state was = c->state;
    int normal = was == CAT_OPEN && c->peer_code == 1000 && !c->silent;
    char msg[300];

    if (was == CAT_WAITING || was == CAT_DONE)
        return; /* already handled (lws may report twice) */
    c->wsi = NULL;
    link_stop_timers(c);
    c->rx.len = 0;
    if (was == CAT_CLOSING) { /* our close frame went out: done */
        cat_status(c, "# closed");
        cat_finish(c, c->clean_code);
        return;
    }
    link_describe_end(c, why, msg, sizeof(msg));
    if (was == CAT_OPEN && (c->got_message || cat_now() - c->opened_at >= CAT_STABLE_US))
        c->attempt = 0;
    if (c->opt.once && !normal && !c->interrupted) {
        cat_error(c, "%s", msg); /* the outcome: shown even with -q */
        cat_finish(c, 2);
        return;
    }
    cat_status(c, "# %s", msg);
    if (c->interrupted || c->opt.once) {
        cat_finish(c, c->interrupted ? c->clean_code : 0);
        return;
    }
    if (c->stdin_eof && !c->q.count) {
        /* nothing left to send, and it ended without our close */
        cat_finish(c, was != CAT_OPEN || normal ? 0 : 2);
        return;
    }
    link_schedule_retry(c);
    lines_resume(c); /* disconnected: stdin reads on, the queue drops */
}

static void link_connect(lws_sorted_usec_list_t *sul)
{
    struct cat *c = lws_container_of(sul, struct cat, connect_sul);
    struct lws_client_connect_info i;

    memset(&i, 0, sizeof(i));
    i.context = c->ctx;
    i.vhost = c->vh;
    i.address = c->url.address;
    i.port = c->url.port;
    i.path = c->url.path;
    i.host = c->url.host;
    i.local_protocol_name = link_protocol.name;
    if (c->url.tls) {
        i.ssl_connection = LCCSCF_USE_SSL;
        if (c->opt.insecure)
            i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                LCCSCF_ALLOW_INSECURE;
    }
    for (int n = 0; n < c->opt.nheaders; n++) {
        const char *h = c->opt.headers[n];
        if (!strncasecmp(h, "origin:", 7))
            i.origin = h + 7 + strspn(h + 7, " \t");
    }
    c->state = CAT_CONNECTING;
    c->got_message = c->want_ping = c->want_close = c->silent = c->lingering = 0;
    c->peer_code = 0;
    c->peer_reason[0] = c->tls_error[0] = '\0';
    c->wsi = lws_client_connect_via_info(&i);
    if (!c->wsi && c->state == CAT_CONNECTING)
        link_ended(c, "could not start the connection");
}

void link_start(struct cat *c)
{
    lws_sul_schedule(c->ctx, 0, &c->connect_sul, link_connect, 1);
}

/* ---- heartbeat ---- */

static void link_ping_due(lws_sorted_usec_list_t *sul)
{
    struct cat *c = lws_container_of(sul, struct cat, ping_sul);

    if (c->state != CAT_OPEN)
        return;
    c->want_ping = 1;
    lws_callback_on_writable(c->wsi);
    lws_sul_schedule(c->ctx, 0, &c->ping_sul, link_ping_due, c->opt.ping_us);
}

static void link_watchdog(lws_sorted_usec_list_t *sul)
{
    struct cat *c = lws_container_of(sul, struct cat, watchdog_sul);
    lws_usec_t limit = 2 * c->opt.ping_us;
    lws_usec_t quiet = cat_now() - c->last_rx;

    if (c->state != CAT_OPEN)
        return;
    if (quiet < limit) {
        lws_sul_schedule(c->ctx, 0, &c->watchdog_sul, link_watchdog, limit - quiet);
        return;
    }
    cat_status(c, "# nothing received for %.1f s: dropping the connection",
               (double)quiet / LWS_USEC_PER_SEC);
    c->silent = 1;
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void link_close_overdue(lws_sorted_usec_list_t *sul)
{
    struct cat *c = lws_container_of(sul, struct cat, end_sul);

    cat_status(c, "# the server did not answer our close");
    cat_finish(c, 2);
}

static void link_linger_over(lws_sorted_usec_list_t *sul)
{
    struct cat *c = lws_container_of(sul, struct cat, end_sul);

    if (c->state != CAT_OPEN)
        return;
    c->want_close = 1;
    lws_callback_on_writable(c->wsi);
}

/* Input over and all sent: print replies for --linger, then close. */
static void link_linger(struct cat *c)
{
    c->lingering = 1;
    if (!c->opt.linger_us) {
        c->want_close = 1;
        return;
    }
    lws_sul_schedule(c->ctx, 0, &c->end_sul, link_linger_over, c->opt.linger_us);
}

/* ---- events on the connection ---- */

static void link_opened(struct cat *c, struct lws *wsi)
{
    c->wsi = wsi;
    c->state = CAT_OPEN;
    c->opened_at = c->last_rx = cat_now();
    cat_status(c, "# connected to %s (%zu queued lines)", c->opt.url, c->q.count);
    if (c->q.dropped) {
        cat_warn(c, "%lu lines were dropped while disconnected", c->q.dropped);
        c->q.dropped = 0;
    }
    if (c->opt.ping_us) {
        lws_sul_schedule(c->ctx, 0, &c->ping_sul, link_ping_due, c->opt.ping_us);
        lws_sul_schedule(c->ctx, 0, &c->watchdog_sul, link_watchdog, 2 * c->opt.ping_us);
    }
    link_kick(c);
}

static int link_received(struct cat *c, struct lws *wsi, void *in, size_t len)
{
    c->last_rx = cat_now();
    if (lws_is_first_fragment(wsi))
        c->rx.len = 0;
    if (cat_buf_append(&c->rx, in, len)) {
        cat_warn(c, "out of memory for an incoming message");
        return -1;
    }
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
        return 0;
    c->got_message = 1;
    c->attempt = 0;
    if (lines_print(c, c->rx.p ? c->rx.p : (const unsigned char *)"", c->rx.len,
                    lws_frame_is_binary(wsi)) &&
        !c->interrupted) {
        cat_warn(c, "cannot write to stdout: stopping");
        link_stop(c, 2);
    }
    c->rx.len = 0;
    return 0;
}

static void link_peer_close(struct cat *c, const unsigned char *p, size_t len)
{
    if (len < 2) {
        c->peer_code = 1005;
        snprintf(c->peer_reason, sizeof(c->peer_reason), "(no code)");
        return;
    }
    c->peer_code = (p[0] << 8) | p[1];
    size_t n = len - 2 < sizeof(c->peer_reason) - 1 ? len - 2 : sizeof(c->peer_reason) - 1;
    memcpy(c->peer_reason, p + 2, n);
    c->peer_reason[n] = '\0';
}

/* One write per writable callback: our close, a ping, or the next line. */
static int link_writable(struct cat *c, struct lws *wsi)
{
    unsigned char ping[LWS_PRE + 1];
    struct cat_line *l;

    if (c->state != CAT_OPEN)
        return 0;
    if (lws_partial_buffered(wsi)) { /* lws still owns part of a frame */
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (c->want_close) {
        c->state = CAT_CLOSING;
        lws_sul_schedule(c->ctx, 0, &c->end_sul, link_close_overdue, CAT_CLOSE_WAIT_US);
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
        return -1; /* lws sends the close frame and waits for the answer */
    }
    if (c->want_ping) {
        c->want_ping = 0;
        if (lws_write(wsi, ping + LWS_PRE, 0, LWS_WRITE_PING) < 0)
            return -1;
    } else if ((l = lines_pop(c))) {
        /* off the queue before it is written: it cannot be sent twice */
        int r = lws_write(wsi, l->buf + LWS_PRE, l->len,
                          c->opt.binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        free(l);
        lines_resume(c);
        if (r < 0)
            return -1;
    } else if (c->stdin_eof && !c->lingering) {
        link_linger(c);
    }
    if (c->q.count || c->want_ping || c->want_close || (c->stdin_eof && !c->lingering))
        lws_callback_on_writable(wsi);
    return 0;
}

/* Appends the -H headers (Host goes through info.host, Origin info.origin). */
static int link_add_headers(struct cat *c, char **p, size_t room)
{
    for (int n = 0; n < c->opt.nheaders; n++) {
        const char *h = c->opt.headers[n];
        size_t len = strlen(h);
        if (!strncasecmp(h, "host:", 5) || !strncasecmp(h, "origin:", 7))
            continue;
        if (len + 2 > room)
            return -1;
        memcpy(*p, h, len);
        memcpy(*p + len, "\r\n", 2);
        *p += len + 2;
        room -= len + 2;
    }
    return 0;
}

static int link_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    struct cat *c = lws_context_user(lws_get_context(wsi));
    char why[200];

    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        return link_add_headers(c, (char **)in, len);
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        link_opened(c, wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return link_received(c, wsi, in, len);
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        c->last_rx = cat_now();
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return link_writable(c, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        link_peer_close(c, in, len);
        return 0;
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
        /* user: the X509_STORE_CTX, len: OpenSSL's preverify_ok */
        if (!len && X509_STORE_CTX_get_error(user) != X509_V_OK)
            snprintf(c->tls_error, sizeof(c->tls_error), "TLS: %s",
                     X509_verify_cert_error_string(X509_STORE_CTX_get_error(user)));
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        unsigned status = lws_http_client_http_response(wsi);
        if (c->tls_error[0])
            snprintf(why, sizeof(why), "%s", c->tls_error);
        else if (status && status != 101)
            snprintf(why, sizeof(why), "HTTP %u", status);
        else
            snprintf(why, sizeof(why), "%s", in ? (const char *)in : "unknown error");
        why[strcspn(why, "\r\n")] = '\0';
        link_ended(c, why);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_CLOSED:
        link_ended(c, NULL);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

const struct lws_protocols link_protocol = {"moongate-cat", link_callback, 0, 0, 0, NULL, 0};

/* ---- called from the other files ---- */

void link_kick(struct cat *c)
{
    if (c->state == CAT_OPEN && c->wsi && (c->q.count || c->stdin_eof || c->want_close))
        lws_callback_on_writable(c->wsi);
    else if (c->state == CAT_WAITING && c->stdin_eof && !c->q.count)
        cat_finish(c, 0); /* input over, nothing to send, no link */
}

/* SIGINT/SIGTERM: drop what is queued, close with 1000 if open, leave. */
void link_stop(struct cat *c, int clean_code)
{
    size_t n = lines_discard(c);

    c->interrupted = 1;
    c->clean_code = clean_code;
    if (n)
        cat_warn(c, "%zu queued lines not sent", n);
    if (c->state == CAT_OPEN) {
        c->want_close = 1;
        lws_callback_on_writable(c->wsi);
    } else if (c->state != CAT_CLOSING) {
        cat_finish(c, clean_code);
    }
}
