/* server.c — the gateway on libwebsockets: the context, the protocol
 * callback, and the event loop.
 *
 * Each concern has its file; this one ties them to lws:
 *   listen.c     listeners, the admin port, the open-files limit, drain
 *   handshake.c  upgrade checks and on_handshake (HTTP_CONFIRM_UPGRADE)
 *   fastrx.c     moongate's reader of ws:// and wss:// sockets (inside poll())
 *   rx.c         what clients send, from either reader
 *   writer.c     every write to a client's socket
 *   src/lws/     the couplings to lws's internals, gated and probed
 * The data path: socket -> reader (fastrx, or lws's RECEIVE) -> rx.c
 * (limits, UTF-8, rate) -> script hook -> conn send queue -> writer.c.
 *
 * Rules this file keeps for lws (src/lws/README.md says what each rests
 * on):
 *  - upgrades are checked in HTTP_CONFIRM_UPGRADE (handshake.c), before
 *    lws's own checks that would drop a bad request without an answer;
 *  - no extension is configured in lws, and no HTTP/2 (ALPN http/1.1):
 *    raw writes bypass both; handshake.c hides extension offers from lws
 *    and negotiates subprotocols through lws's protocol table;
 *  - lws's validity pings are off: heartbeat.c owns liveness;
 *  - a close the gateway starts is a close frame queued behind the data
 *    (conn_close); the peer's answer ends the connection, and lws's
 *    timeout ends it if no answer comes. */
#include "server.h"

#include <stdlib.h>
#include <string.h>

#include "ahdata.h"
#include "broker.h"
#include "cluster.h"
#include "compress.h"
#include "conn.h"
#include "evpoll.h"
#include "fastrx.h"
#include "fdguard.h"
#include "gwctl.h"
#include "handshake.h"
#include "heartbeat.h"
#include "http.h"
#include "listen.h"
#include "log.h"
#include "lwsc.h"
#include "lwsmem.h"
#include "peer.h"
#include "rx.h"
#include "script.h"
#include "static.h"
#include "writer.h"

/* lws's per-thread buffer: its reads of TLS and of lws-read sockets. */
#define SERVER_BUF (64 * 1024)

static int server_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len);

/* The WebSocket listeners' protocols come from handshake.c (subprotocol
 * negotiation names the first one).  No per-session data: a connection's
 * mg_conn is the wsi's opaque user data, which saves lws an allocation per
 * connection. */

static struct lws_protocols server_admin_protocols[] = {
    {"moongate-admin", http_admin_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- a connection's life ---- */

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
    if (listen_fast(wsi) && lwsc_reader_on(gw))
        fastrx_attach(gw, c);
    if (c->pmd && !c->fast) {
        /* lws kept bytes of it (to write, or decrypted): lws's reader
         * would take a compressed frame for a protocol error */
        log_conn(MG_LOG_WARN, c->id,
                 "closing: permessage-deflate was negotiated, but moongate "
                 "cannot read this connection");
        conn_close(gw, c, 1011, "cannot read compressed frames", 0);
    }
    heartbeat_track(gw, c);
    script_on_connect(gw, c);
    return 0;
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

/* A WebSocket path answers 400; anything else is a static file, if
 * static.root is set (read at each request: a reload may change it). */
static int server_http(mg_gw *gw, struct lws *wsi, const char *uri)
{
    const mg_config *cfg = gw->cfg;
    if (listen_match_path(wsi, uri))
        http_respond(wsi, 400, "text/plain", "this is a WebSocket endpoint\n", 29, NULL, NULL);
    else if (cfg->static_root)
        return static_serve(wsi, cfg->static_root,
                            cfg->static_index ? cfg->static_index : "index.html",
                            cfg->static_follow_symlinks, uri);
    else
        http_respond(wsi, 404, "text/plain", "not found\n", 10, NULL, NULL);
    return -1; /* answered with "connection: close" */
}

static int server_dispatch(mg_gw *gw, struct lws *wsi, enum lws_callback_reasons reason, void *user,
                           void *in, size_t len)
{
    mg_conn *c = lws_get_opaque_user_data(wsi); /* NULL until ESTABLISHED */

    switch (reason) {
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        /* lws timeouts have a granularity of seconds. */
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK,
                        (int)((gw->cfg->handshake_timeout_ms + 999) / 1000));
        return 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return handshake_check(gw, wsi, in);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return handshake_filter(gw, wsi);
    case LWS_CALLBACK_ADD_HEADERS: {
        int rc = handshake_add_headers(gw, wsi, in);
        return rc <= 0 ? rc : lws_callback_http_dummy(wsi, reason, user, in, len);
    }
    case LWS_CALLBACK_HTTP:
        return server_http(gw, wsi, in);
    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
        return static_done(wsi);
    case LWS_CALLBACK_ESTABLISHED:
        return server_established(gw, wsi);
    case LWS_CALLBACK_RECEIVE:
        return rx_lws_receive(gw, c, wsi, in, len);
    case LWS_CALLBACK_RECEIVE_PONG:
        return rx_lws_pong(gw, c, in);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return c ? writer_writable(gw, c) : 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        return rx_lws_peer_close(gw, c, in, len);
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

/* Every event lws hands over: while it is handled, writes wait for the end
 * of the loop turn (writer.c), so a turn's replies to a socket leave
 * together. */
static int server_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len)
{
    mg_gw *gw = lws_context_user(lws_get_context(wsi));
    gw->dispatching++;
    int rc = server_dispatch(gw, wsi, reason, user, in, len);
    gw->dispatching--;
    return rc;
}

/* ---- the loop ---- */

/* evpoll_ready_fn: the loop's poll() found fds[ready[0..k-1]] ready. */
static int server_on_ready(void *arg, struct pollfd *fds, const int *ready, int k)
{
    mg_gw *gw = arg;
    rx_lws_note_ready(gw, fds, ready, k);
    return fastrx_on_ready(gw, fds, ready, k);
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
    gw->max_header_size = (size_t)gw->cfg->max_header_size;
    info.max_http_header_data = (unsigned short)gw->max_header_size;
    info.timeout_secs = (unsigned int)((gw->cfg->handshake_timeout_ms + 999) / 1000);
    listen_fd_limit(gw);
    if (conn_fd_table_init(gw) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (lwsc_checked())
        lwsmem_install();
    if (evpoll_start() != 0)
        log_warn("no epoll set: the event loop polls every socket on each turn");
    if (fdguard_start(gw, gw->fd_cap, listen_max_handshakes(gw, gw->cfg)) != 0)
        log_warn("no guard on accept(): sockets in their handshake are not bounded, and running "
                 "out of descriptors makes the loop spin");
    gw->lws = lws_create_context(&info);
    if (!gw->lws) {
        snprintf(err, errlen, "cannot create the libwebsockets context");
        return -1;
    }
    if (handshake_start(gw, server_callback) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (fastrx_start(gw) != 0)
        log_warn("out of memory for moongate's frame reader: libwebsockets parses frames");
    if (writer_start(gw) != 0 || compress_start(gw) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    evpoll_on_ready(server_on_ready, gw);
    if (listen_start(gw, handshake_protocols(gw), server_admin_protocols, err, errlen) != 0)
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
    heartbeat_start(gw);
    return lwsc_probe(gw, err, errlen);
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
        rx_lws_check(gw);
        fastrx_settle(gw);
        /* Other workers first: a client told its name is set may at once
         * ask another worker to send to it (peer.h). */
        peers_flush(gw);
        writer_flush_all(gw);
        server_trim_later(gw);
        gw->clock_stale = 1;
    }
}

void server_drain(mg_gw *gw)
{
    gw->draining = 1;
    listen_stop_accepting(gw);
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
    listen_free(gw);
    handshake_stop(gw);
    evpoll_on_ready(NULL, NULL);
    fastrx_stop(gw);
    writer_stop(gw);
    compress_stop(gw);
    conn_fd_table_free(gw);
    free(gw->rx_check);
    gw->rx_check = NULL;
    gw->rx_check_n = gw->rx_check_cap = 0;
    lwsc_free(gw);
}
