/* compress.h — permessage-deflate on a connection: what was negotiated,
 * inflating what the client sends, compressing what the gateway sends.
 *
 * pmd.c is the codec and the negotiation, and knows nothing of
 * connections; this file ties it to them:
 *  - at the upgrade, handshake.c negotiates with the listener's
 *    `compression:` settings (compress_negotiate), and the connection gets
 *    its state (compress_attach: NULL when nothing was negotiated, so a
 *    connection without compression costs one pointer);
 *  - moongate's reader hands over a compressed message's payload piece by
 *    piece (compress_rx); the message comes out inflated, within
 *    limits.max_message_size (a decompression bomb stops there, 1009),
 *    its text checked as UTF-8 as it comes out (1007 at the first bad
 *    byte);
 *  - a message sent to one connection is compressed for it when it is at
 *    least `min_size` bytes (compress_send_frame, from conn_send);
 *  - a broadcast or publish is compressed once per set of connections that
 *    negotiated the same parameters without server context takeover, not
 *    once per connection (mg_fanout); connections with context takeover
 *    compress their own copy, in order.
 * Only connections moongate reads (reader: moongate) negotiate: lws's
 * reader would take RSV1 for a protocol error. */
#ifndef MG_COMPRESS_H
#define MG_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "gw.h"
#include "pmd.h"

struct mg_buf;

/* The gateway-wide streams, when some listener has compression enabled.
 * 0, or -1 (out of memory). */
int compress_start(mg_gw *gw);
void compress_stop(mg_gw *gw);

/* Negotiate an offer (a Sec-WebSocket-Extensions value) under cfg: 1 with
 * *out and the answer's value in resp (PMD_RESPONSE_MAX), else 0. */
int compress_negotiate(const pmd_config *cfg, const char *offer, pmd_params *out, char *resp,
                       size_t resplen);

/* c negotiated p: its state.  0, or -1 (out of memory). */
int compress_attach(mg_gw *gw, mg_conn *c, const pmd_params *p);
void compress_detach(mg_gw *gw, mg_conn *c);
/* Bytes c holds for compression now (its state, zlib streams, the buffer of
 * a message being inflated); 0 without compression. */
size_t compress_conn_memory(const mg_conn *c);

/* The next piece of a compressed message from c (its payload, unmasked);
 * final on the one that ends it.  COMPRESS_MORE, COMPRESS_DONE (the
 * message is at *msg, *len bytes, until the next call), or a close code
 * (1007, 1009, 1011) with *reason. */
enum { COMPRESS_MORE = 0, COMPRESS_DONE = 1 };
int compress_rx(mg_gw *gw, mg_conn *c, const unsigned char *data, size_t len, int final,
                int binary, const unsigned char **msg, size_t *mlen, const char **reason);

/* The message compress_rx returned has been handled. */
void compress_rx_done(mg_conn *c);

/* A data message of len bytes to c: if c compresses it, the payload to
 * send instead (valid until the next call) with *opcode or'ed with
 * MG_OP_RSV1, else data itself.  NULL when out of memory. */
const void *compress_send_frame(mg_gw *gw, mg_conn *c, int *opcode, const void *data,
                                size_t *len);

/* A message of len bytes went to a connection's queue as wire_len
 * compressed bytes (the compression counters of /metrics). */
void compress_sent(mg_gw *gw, size_t len, size_t wire_len);

/* One message for many connections (a broadcast, a publish): the plain
 * frame, and the compressed frames made so far, one per parameter key. */
typedef struct mg_fanout {
    int opcode;
    const void *data;
    size_t len;
    struct mg_buf *plain;
    uint32_t keys[PMD_SHARED_DEFLATERS];
    struct mg_buf *zframes[PMD_SHARED_DEFLATERS];
    size_t zlens[PMD_SHARED_DEFLATERS]; /* their compressed payloads' sizes */
    int nz;
} mg_fanout;

/* 0, or -1 (out of memory). */
int compress_fanout_init(mg_fanout *f, int opcode, const void *data, size_t len);
void compress_fanout_free(mg_fanout *f);
/* The frame c gets: shared by every connection with the same parameters;
 * NULL when c compresses its own copy (context takeover, or more
 * parameter sets than kept) and conn_send does it, or out of memory. */
struct mg_buf *compress_fanout_frame(mg_gw *gw, mg_fanout *f, const mg_conn *c, int *own);
/* b, a frame of f, was queued to a connection: counted if compressed. */
void compress_fanout_sent(mg_gw *gw, const mg_fanout *f, const struct mg_buf *b);

#endif
