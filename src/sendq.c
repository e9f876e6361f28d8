/* sendq.c — per-connection ordered send queue of complete WebSocket frames. */
#include "sendq.h"

#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* Smallest private block: a batch of small frames shares one allocation.
 * A connection takes one and frees it every loop turn it sends, so the
 * whole allocation is 1032 bytes, the largest glibc's per-thread cache
 * serves: 4 KiB blocks went through malloc's slower bins.  16 echoes of
 * 32 bytes take 544. */
#define SENDQ_BLOCK (1032 - sizeof(mg_buf))

size_t sendq_frame_header(unsigned char *h, int opcode, size_t len)
{
    h[0] = (unsigned char)(0x80 | (opcode & (0x0f | MG_OP_RSV1)));
    if (len < 126) {
        h[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

static mg_buf *sendq_buf_new(size_t cap)
{
    mg_buf *b = malloc(sizeof(*b) + cap);
    if (!b)
        return NULL;
    b->refs = 0;
    b->len = 0;
    b->cap = cap;
    return b;
}

static size_t sendq_buf_append(mg_buf *b, int opcode, const void *data, size_t len)
{
    size_t h = sendq_frame_header(b->data + b->len, opcode, len);
    if (len)
        memcpy(b->data + b->len + h, data, len);
    b->len += h + len;
    return h + len;
}

mg_buf *sendq_frame_new(int opcode, const void *data, size_t len)
{
    mg_buf *b = sendq_buf_new(MG_FRAME_HDR_MAX + len);
    if (b)
        sendq_buf_append(b, opcode, data, len);
    return b;
}

void sendq_buf_release(mg_buf *b)
{
    if (b && b->refs == 0)
        free(b);
}

static void sendq_unref(mg_buf *b)
{
    if (--b->refs == 0)
        free(b);
}

/* The ring's capacity is a power of two (2, then doubled), so a mask
 * wraps the index (no division on every access). */
static mg_sendq_item *sendq_item(const mg_sendq *q, uint32_t i)
{
    return &q->items[(q->head + i) & (q->cap - 1)];
}

void sendq_init(mg_sendq *q)
{
    memset(q, 0, sizeof(*q));
}

void sendq_clear(mg_sendq *q)
{
    for (uint32_t i = 0; i < q->count; i++)
        sendq_unref(sendq_item(q, i)->buf);
    free(q->items);
    sendq_init(q);
}

/* Length (header included) of the server frame at h, which sendq built. */
static size_t sendq_frame_len(const unsigned char *h)
{
    size_t len = h[1] & 0x7f;
    if (len < 126)
        return 2 + len;
    if (len == 126)
        return 4 + ((size_t)h[2] << 8 | h[3]);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | h[2 + i];
    return 10 + (size_t)v;
}

/* Bytes from the head item's first unsent byte to the end of the frame it
 * is in, 0 if it starts a frame.  Every block begins with a frame header
 * (sendq_frame_new, sendq_buf_new), so the frames are walked from there. */
static size_t sendq_head_rest(const mg_sendq *q)
{
    const mg_sendq_item *it = sendq_item(q, 0);
    size_t pos = 0;
    while (pos < it->off)
        pos += sendq_frame_len(it->buf->data + pos);
    return pos - it->off;
}

void sendq_discard(mg_sendq *q)
{
    if (!q->count)
        return;
    size_t keep = sendq_head_rest(q);
    if (!keep) {
        sendq_clear(q);
        return;
    }
    /* The head keeps the rest of its frame; every other item goes. */
    for (uint32_t i = 1; i < q->count; i++)
        sendq_unref(sendq_item(q, i)->buf);
    mg_sendq_item *it = sendq_item(q, 0);
    it->len = keep < it->len ? keep : it->len;
    q->count = 1;
    q->bytes = it->len;
}

static int sendq_reserve(mg_sendq *q)
{
    if (q->count < q->cap)
        return 0;
    /* Two to start: what an idle connection needs (a ping, a close). */
    uint32_t ncap = q->cap ? q->cap * 2 : 2;
    mg_sendq_item *ni = malloc(ncap * sizeof(*ni));
    if (!ni)
        return -1;
    for (uint32_t i = 0; i < q->count; i++)
        ni[i] = *sendq_item(q, i);
    free(q->items);
    q->items = ni;
    q->cap = ncap;
    q->head = 0;
    return 0;
}

static int sendq_append_item(mg_sendq *q, mg_buf *b, size_t off, size_t len)
{
    if (sendq_reserve(q) != 0)
        return -1;
    mg_sendq_item *it = sendq_item(q, q->count);
    it->buf = b;
    it->off = off;
    it->len = len;
    b->refs++;
    q->count++;
    q->bytes += len;
    return 0;
}

int sendq_push_frame(mg_sendq *q, int opcode, const void *data, size_t len)
{
    size_t need = MG_FRAME_HDR_MAX + len;

    if (q->count) {
        mg_sendq_item *tail = sendq_item(q, q->count - 1);
        mg_buf *b = tail->buf;
        /* Private, and this item ends where the block's used bytes end. */
        if (b->refs == 1 && tail->off + tail->len == b->len && b->cap - b->len >= need) {
            size_t n = sendq_buf_append(b, opcode, data, len);
            tail->len += n;
            q->bytes += n;
            return 0;
        }
    }
    mg_buf *b = sendq_buf_new(need > SENDQ_BLOCK ? need : SENDQ_BLOCK);
    if (!b)
        return -1;
    size_t n = sendq_buf_append(b, opcode, data, len);
    if (sendq_append_item(q, b, 0, n) != 0) {
        free(b);
        return -1;
    }
    return 0;
}

int sendq_push_frame_rest(mg_sendq *q, int opcode, const void *data, size_t len, size_t sent)
{
    mg_buf *b = sendq_frame_new(opcode, data, len);
    if (!b)
        return -1;
    if (sendq_append_item(q, b, sent, b->len - sent) != 0) {
        free(b);
        return -1;
    }
    return 0;
}

int sendq_push_shared(mg_sendq *q, mg_buf *b)
{
    return sendq_append_item(q, b, 0, b->len);
}

size_t sendq_gather(const mg_sendq *q, unsigned char *scratch, size_t cap,
                    const unsigned char **out)
{
    if (!q->count)
        return 0;
    mg_sendq_item *first = sendq_item(q, 0);
    if (q->count == 1 || first->len >= cap || first->len + sendq_item(q, 1)->len > cap) {
        *out = first->buf->data + first->off;
        return first->len;
    }
    size_t n = 0;
    for (uint32_t i = 0; i < q->count; i++) {
        mg_sendq_item *it = sendq_item(q, i);
        if (n + it->len > cap)
            break;
        memcpy(scratch + n, it->buf->data + it->off, it->len);
        n += it->len;
    }
    *out = scratch;
    return n;
}

int sendq_iov(const mg_sendq *q, struct iovec *iov, int max, size_t limit)
{
    int n = 0;
    size_t bytes = 0;
    for (uint32_t i = 0; i < q->count && n < max; i++) {
        mg_sendq_item *it = sendq_item(q, i);
        if (n && bytes + it->len > limit)
            break;
        iov[n].iov_base = it->buf->data + it->off;
        iov[n].iov_len = it->len;
        bytes += it->len;
        n++;
    }
    return n;
}

void sendq_consume(mg_sendq *q, size_t n)
{
    q->bytes -= n;
    while (n && q->count) {
        mg_sendq_item *it = sendq_item(q, 0);
        if (n < it->len) {
            it->off += n;
            it->len -= n;
            return;
        }
        n -= it->len;
        sendq_unref(it->buf);
        q->head = (q->head + 1) & (q->cap - 1);
        q->count--;
    }
    if (!q->count)
        q->head = 0;
}
