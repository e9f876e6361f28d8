/* rx.h — what clients send, from either reader.
 *
 * A connection is read by moongate (fastrx.c) or by libwebsockets
 * (listeners with reader: libwebsockets, and whatever fastrx cannot take); both end
 * here, so limits, UTF-8, the message rate, the text ping and the hooks
 * are the same on both: a data message goes to on_message, a ping gets its
 * pong queued, a close frame is answered (unless it answers ours), and a
 * broken rule gets its close code queued behind the replies already due.
 * Writing is writer.c's. */
#ifndef MG_RX_H
#define MG_RX_H

#include <stddef.h>

#include "gw.h"

/* moongate's reader (wsrx_sink): a whole data message; a control frame
 * (non-zero: read nothing more from c); a protocol error, or a message
 * over the limit (1002, 1007, 1009 or 1011 with its reason): the close
 * frame goes out after what is queued, then the sending side is shut. */
int rx_message(mg_gw *gw, mg_conn *c, const unsigned char *data, size_t len, int binary);
int rx_control(mg_gw *gw, mg_conn *c, int opcode, const unsigned char *data, size_t len);
/* ... a piece of a compressed message (wsrx_sink.zpiece): inflated, and
 * delivered at its end; non-zero when it failed the connection. */
int rx_zpiece(mg_gw *gw, mg_conn *c, const unsigned char *data, size_t len, int final,
              int binary);
void rx_error(mg_gw *gw, mg_conn *c, int code, const char *reason);

/* libwebsockets' reader: LWS_CALLBACK_RECEIVE (a piece of a data
 * message), RECEIVE_PONG, and WS_PEER_INITIATED_CLOSE (0: lws sends its
 * close reply; -1: hang up).  0 unless noted. */
int rx_lws_receive(mg_gw *gw, mg_conn *c, struct lws *wsi, const unsigned char *in, size_t len);
int rx_lws_pong(mg_gw *gw, mg_conn *c, const void *in);
int rx_lws_peer_close(mg_gw *gw, mg_conn *c, unsigned char *in, size_t len);

/* The loop's poll() found fds[ready[0..k-1]] ready: the connections lws
 * reads among them are looked at after the turn (rx_lws_check), where a
 * frame header announcing more than max_message_size fails them with 1009
 * at once, as moongate's reader does (lws calls back only with payload). */
struct pollfd;
void rx_lws_note_ready(mg_gw *gw, struct pollfd *fds, const int *ready, int k);
void rx_lws_check(mg_gw *gw);

#endif
