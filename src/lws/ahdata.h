/* ahdata.h — emptying a request header in lws's own copy of it.
 *
 * lws (4.1, 4.3) offers no public way to change a parsed header, and its
 * extension walker drops an upgrade whose Sec-WebSocket-Extensions reaches
 * 255 bytes, without an answer (handshake.c).  README.md in this folder
 * says what this rests on. */
#ifndef MG_AHDATA_H
#define MG_AHDATA_H

#include <libwebsockets.h>

/* Make lws read header t of wsi as empty from now on (its value gets a NUL
 * at its start in lws's header data, of size bytes: the context's
 * max_http_header_data, the scan bound).  0 when lws_hdr_copy() confirms
 * it; -1 when the coupling is off (lwsc_checked) or the value was not
 * found. */
int ahdata_blank(struct lws *wsi, enum lws_token_indexes t, size_t size);

#endif
