/* http.h — plain HTTP answers and the admin API.
 *
 * http_respond() writes a complete HTTP/1.1 response (status, headers,
 * body) on a wsi that is still in HTTP mode; the WebSocket listeners use it
 * to refuse bad upgrades with a proper status, and the admin vhost for
 * every reply.  The admin API (GET /health, GET /metrics, POST /reload,
 * POST /broadcast) is served by http_admin_callback on its own listener. */
#ifndef MG_HTTP_H
#define MG_HTTP_H

#include <libwebsockets.h>
#include <stddef.h>

#include "gw.h"

/* extra_name/extra_value: one more header (e.g. "sec-websocket-version:"),
 * or NULL.  0, or -1 if the response could not be written. */
int http_respond(struct lws *wsi, int status, const char *ctype, const char *body, size_t len,
                 const char *extra_name, const char *extra_value);

int http_admin_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len);

/* Size of the admin protocol's per-session data. */
size_t http_admin_session_size(void);

#endif
