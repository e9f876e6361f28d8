/* sendq.h — per-connection ordered send queue of complete WebSocket frames.
 *
 * Frames are built once, complete (unmasked server header + payload), into
 * refcounted blocks (mg_buf).  A unicast frame is appended to the private
 * block at the tail of its connection's queue when it fits, so small
 * messages cost no allocation each; a broadcast frame is one block shared by
 * every recipient's queue.  On a writable socket the server takes what
 * sendq_gather() offers — as many whole frames as fit one write — and hands
 * it to libwebsockets as one raw write (see shared/NOTES.md for why). */
#ifndef MG_SENDQ_H
#define MG_SENDQ_H

#include <stddef.h>
#include <stdint.h>

enum {
    MG_OP_CONT = 0x0,
    MG_OP_TEXT = 0x1,
    MG_OP_BINARY = 0x2,
    MG_OP_CLOSE = 0x8,
    MG_OP_PING = 0x9,
    MG_OP_PONG = 0xA,
    /* Or'ed into a data opcode: the frame's RSV1 bit, which marks a
     * compressed message under permessage-deflate (RFC 7692 6). */
    MG_OP_RSV1 = 0x40
};

/* Bytes of header for a server frame with a payload of len bytes. */
#define MG_FRAME_HDR_MAX 10

typedef struct mg_buf {
    uint32_t refs; /* queue items pointing here */
    size_t len;    /* bytes used */
    size_t cap;    /* bytes allocated in data */
    unsigned char data[];
} mg_buf;

typedef struct mg_sendq_item {
    mg_buf *buf;
    size_t off; /* first unsent byte in buf */
    size_t len; /* bytes of this item still to send */
} mg_sendq_item;

typedef struct mg_sendq {
    mg_sendq_item *items; /* ring */
    uint32_t head, count, cap;
    size_t bytes; /* total bytes queued */
} mg_sendq;

/* Write a FIN server frame header for opcode/len into h; returns its size. */
size_t sendq_frame_header(unsigned char *h, int opcode, size_t len);

/* A shareable block holding one frame; refs start at 0.  NULL on OOM. */
mg_buf *sendq_frame_new(int opcode, const void *data, size_t len);
/* Free a block nobody queued (refs == 0). */
void sendq_buf_release(mg_buf *b);

void sendq_init(mg_sendq *q);
/* Drop everything (the connection is gone). */
void sendq_clear(mg_sendq *q);
/* Drop what has not begun to go out: a frame already partly written
 * stays, so that its end, and not a cut, precedes what is queued next. */
void sendq_discard(mg_sendq *q);

/* Append a frame: copied into the private tail block.  0 or -1 (OOM). */
int sendq_push_frame(mg_sendq *q, int opcode, const void *data, size_t len);
/* Append what is left of a frame whose first `sent` bytes (header
 * included) were written already, in its own block.  0 or -1 (OOM). */
int sendq_push_frame_rest(mg_sendq *q, int opcode, const void *data, size_t len, size_t sent);
/* Append a shared block (takes a reference).  0 or -1 (OOM). */
int sendq_push_shared(mg_sendq *q, mg_buf *b);

/* What to write next: whole items only.  A lone item, or a first item that
 * does not fit scratch, is offered in place; otherwise items are copied into
 * scratch while they fit.  Returns the byte count (0 when empty). */
size_t sendq_gather(const mg_sendq *q, unsigned char *scratch, size_t cap,
                    const unsigned char **out);
/* What to write next, in place: the first max items, at most `limit`
 * bytes in all unless the first alone is more (that one is offered
 * whole).  Fills iov, returns how many entries (0 when empty). */
struct iovec;
int sendq_iov(const mg_sendq *q, struct iovec *iov, int max, size_t limit);
/* Drop n bytes from the front (n as returned by sendq_gather, or up to
 * what sendq_iov offered). */
void sendq_consume(mg_sendq *q, size_t n);

#endif
