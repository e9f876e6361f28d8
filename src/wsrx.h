/* wsrx.h — reading client WebSocket frames (RFC 6455 section 5) from a
 * byte stream, as recv() returns it.
 *
 * The caller reads into a buffer of its own and feeds it here; frames are
 * unmasked in place, and a message that sits whole in the buffer reaches
 * the sink straight from it, with no copy.  Only what crosses the end of a
 * read is kept between calls: an incomplete header or control frame (at
 * most 139 bytes, put back in front of the next read by wsrx_unread), the
 * unmasking position of a data frame whose payload is still coming, and
 * the message being reassembled.  That state is allocated when a read
 * ends inside a frame or message and freed once a read ends on a message
 * boundary, so an idle connection costs no memory here.
 *
 * Framing is checked as RFC 6455 asks of a server with no extension
 * negotiated, or with permessage-deflate (RFC 7692: RSV1 on a data
 * message's first frame; its payload goes to the sink's zpiece as it
 * comes, and the limit on its compressed size is max_message plus what
 * deflate may add): reserved bits, unknown opcodes, unmasked frames, fragmented
 * or long control frames, stray continuations, a data frame inside a
 * fragmented message and a 64-bit length with its top bit set are
 * protocol errors (1002); a message longer than max_message is 1009,
 * found as soon as the header that makes it too long arrives.  A text
 * message reaches the sink only as valid UTF-8: invalid bytes are 1007,
 * found in the read that brings them, even in the middle of a fragment
 * (RFC 6455 8.1).  Close-frame bodies are the sink's to judge. */
#ifndef MG_WSRX_H
#define MG_WSRX_H

#include <stddef.h>
#include <stdint.h>

/* Longest piece kept between reads: a full header and a control payload. */
#define WSRX_CARRY_MAX (14 + 125)

typedef struct wsrx wsrx;

/* Where frames go.  Each returns 0 to go on reading, non-zero to stop
 * (wsrx_feed then returns WSRX_STOPPED and forgets the rest of the buffer). */
typedef struct wsrx_sink {
    /* A complete data message; data is valid during the call only. */
    int (*message)(void *arg, const unsigned char *data, size_t len, int binary);
    /* A ping, pong or close frame (opcode 0x9, 0xA, 0x8), payload <= 125. */
    int (*control)(void *arg, int opcode, const unsigned char *data, size_t len);
    /* With WSRX_DEFLATE: the next piece of a compressed message's payload
     * (unmasked), as it arrives; final on the piece that ends it.  The
     * sink inflates, and checks the limit and UTF-8 on what comes out. */
    int (*zpiece)(void *arg, const unsigned char *data, size_t len, int final, int binary);
} wsrx_sink;

/* wsrx_feed's flags: permessage-deflate was negotiated, so RSV1 may mark
 * the first frame of a data message as compressed. */
#define WSRX_DEFLATE 1u

enum {
    WSRX_OK = 0,      /* everything consumed; feed more later */
    WSRX_STOPPED = 1, /* a sink callback asked to stop */
    WSRX_ERROR = 2    /* protocol error: *code and *reason say which */
};

/* Consume len bytes at buf (modified: unmasked in place).  *st is the
 * connection's state (NULL to start); it is allocated and freed here.  On
 * WSRX_ERROR, *code is 1002, 1007, 1009 or 1011 (out of memory) and *reason a
 * static string; the stream cannot be resumed after an error. */
int wsrx_feed(wsrx **st, unsigned char *buf, size_t len, uint64_t max_message, unsigned flags,
              const wsrx_sink *sink, void *arg, int *code, const char **reason);

/* Copy the bytes kept from the previous read (an incomplete header or
 * control frame) to buf, which has room for WSRX_CARRY_MAX; returns how
 * many.  The next wsrx_feed must start with them (if no wsrx_feed
 * follows, they stay kept). */
size_t wsrx_unread(wsrx *st, unsigned char *buf);

/* 1 if a message is being reassembled or a frame is incomplete. */
int wsrx_busy(const wsrx *st);

void wsrx_free(wsrx **st);

/* Append n bytes at p to the message buffer *buf (*len bytes used of
 * *cap), doubling it from 4 KiB as needed.  0, or -1 out of memory (the
 * buffer is unchanged).  wsrx reassembles with it, and so does the
 * libwebsockets reader in server.c (TLS connections). */
int wsrx_buf_append(unsigned char **buf, size_t *len, size_t *cap, const unsigned char *p,
                    size_t n);

#endif
