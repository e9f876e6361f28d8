/* server.h — the gateway on libwebsockets: the context, the protocol
 * callback and the event loop (server.c lists the files it ties
 * together). */
#ifndef MG_SERVER_H
#define MG_SERVER_H

#include "gw.h"

/* Create the lws context, one vhost per listener (+ admin), adopt
 * signal_fd into the loop, and probe the fast paths (lwsc.h).  0, or -1
 * with the reason in err. */
int server_start(mg_gw *gw, int signal_fd, char *err, size_t errlen);
/* Serve until gw->stopping. */
void server_run(mg_gw *gw);
/* Stop accepting and start closing every connection with 1001. */
void server_drain(mg_gw *gw);
/* Destroy the context (connections still open are closed). */
void server_stop(mg_gw *gw);

/* A descriptor of ours (signalfd, eventfd, a socket) in lws's loop:
 * readable calls RAW_RX_FILE on the WebSocket protocol (server.c's
 * callback), which hands it to its owner; lws closes it at the end.  NULL
 * on failure. */
struct lws *server_watch(mg_gw *gw, int fd);

#endif
