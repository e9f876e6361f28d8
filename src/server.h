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

#endif
