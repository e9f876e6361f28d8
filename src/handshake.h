/* handshake.h — WebSocket upgrade requests: checks and what is kept. */
#ifndef MG_HANDSHAKE_H
#define MG_HANDSHAKE_H

#include <libwebsockets.h>

#include "gw.h"

/* The checks on a request's headers, free of lws (a fuzzer drives them):
 * a Sec-WebSocket-Key is base64 of exactly 16 bytes; a comma-separated
 * header (Connection) holds word as one of its tokens, case aside. */
int handshake_key_valid(const char *key);
int handshake_token_has(const char *list, const char *word);

/* Decide whether the upgrade on wsi may proceed.  0 to go on; -1 when it
 * was refused (the HTTP answer is written; the caller hangs up). */
int handshake_check(mg_gw *gw, struct lws *wsi, const char *ws_path, const char *upgrade);

/* The upgrade completed: a new connection from the request, or NULL. */
mg_conn *handshake_accept(mg_gw *gw, struct lws *wsi);

#endif
