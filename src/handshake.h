/* handshake.h — WebSocket upgrade requests: checks, what is negotiated,
 * and what is kept. */
#ifndef MG_HANDSHAKE_H
#define MG_HANDSHAKE_H

#include <libwebsockets.h>

#include "gw.h"

/* The checks on a request's headers, free of lws (a fuzzer drives them):
 * a Sec-WebSocket-Key is base64 of exactly 16 bytes; a comma-separated
 * header (Connection) holds word as one of its tokens, case aside. */
int handshake_key_valid(const char *key);
int handshake_token_has(const char *list, const char *word);

/* The upgrade state (gw->upgrade) and the lws protocol table every
 * WebSocket vhost binds, whose callback is cb (handshake.c says why the
 * table is not a constant).  0, or -1 out of memory. */
int handshake_start(mg_gw *gw, lws_callback_function *cb);
const struct lws_protocols *handshake_protocols(const mg_gw *gw);
void handshake_stop(mg_gw *gw);

/* lws runs these in one call for the same wsi, in this order:
 *   HTTP_CONFIRM_UPGRADE  handshake_check: decide whether the upgrade on
 *                         wsi may proceed.  0 to go on; -1 when it was
 *                         refused (the HTTP answer is written; the caller
 *                         hangs up);
 *   FILTER_PROTOCOL_CONNECTION  handshake_filter;
 *   ADD_HEADERS           handshake_add_headers: appends the 101's
 *                         headers moongate negotiated (1 when wsi is not
 *                         an upgrade it knows: let lws go on, -1 when they
 *                         do not fit);
 *   ESTABLISHED           handshake_accept: a new connection from the
 *                         request, or NULL. */
int handshake_check(mg_gw *gw, struct lws *wsi, const char *upgrade);
int handshake_filter(mg_gw *gw, struct lws *wsi);
int handshake_add_headers(mg_gw *gw, struct lws *wsi, struct lws_process_html_args *args);
mg_conn *handshake_accept(mg_gw *gw, struct lws *wsi);

/* For extension negotiation (permessage-deflate), between
 * handshake_check's acceptance and handshake_accept: the
 * Sec-WebSocket-Extensions the client offered ("" none; libwebsockets is
 * kept from seeing it, moongate negotiates extensions itself), and the
 * value the 101 answers with (NULL or "" for none; 0, or -1 when wsi is not
 * the upgrade in flight or value is too long). */
const char *handshake_extensions_offer(const mg_gw *gw, const struct lws *wsi);
int handshake_extensions_answer(mg_gw *gw, const struct lws *wsi, const char *value);

#endif
