/* server.h — the libwebsockets side: context, listeners, the protocol
 * callback, handshake checks, and the read and write paths of every
 * WebSocket connection. */
#ifndef MG_SERVER_H
#define MG_SERVER_H

#include "gw.h"

/* Create the lws context, one vhost per listener (+ admin), and adopt
 * signal_fd into the loop.  0, or -1 with the reason in err. */
int server_start(mg_gw *gw, int signal_fd, char *err, size_t errlen);
/* Serve until gw->stopping. */
void server_run(mg_gw *gw);
/* Stop accepting and start closing every connection with 1001. */
void server_drain(mg_gw *gw);
/* Destroy the context (connections still open are closed). */
void server_stop(mg_gw *gw);

/* For fastrx.c, which reads plain connections itself: a data message, a
 * control frame (non-zero: stop reading it), a protocol error (1002, 1009
 * or 1011 with its reason); then server_flush writes what the read
 * queued (or, with io_uring, conn_wake leaves it to the end of the loop
 * turn).  server_uring_failed: gw->uring returned an error; it is freed
 * and moongate goes on with recv() and send(). */
int server_rx_message(mg_gw *gw, mg_conn *c, const unsigned char *data, size_t len, int binary);
int server_rx_control(mg_gw *gw, mg_conn *c, int opcode, const unsigned char *data, size_t len);
void server_rx_error(mg_gw *gw, mg_conn *c, int code, const char *reason);
void server_flush(mg_gw *gw, mg_conn *c);
void server_uring_failed(mg_gw *gw);

/* A descriptor of ours (signalfd, eventfd, a socket) in lws's loop:
 * readable calls RAW_RX_FILE on the WebSocket protocol (server.c's
 * callback), which hands it to its owner; lws closes it at the end.  NULL
 * on failure. */
struct lws *server_watch(mg_gw *gw, int fd);

/* The handshake bound cfg asks for, within what the open-files limit set
 * at start allows (limits.max_handshakes). */
uint32_t server_max_handshakes(const mg_gw *gw, const mg_config *cfg);

#endif
