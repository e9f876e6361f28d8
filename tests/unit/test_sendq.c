/* test_sendq.c — sendq.c: frame headers byte for byte, packing of small
 * private frames into one block, blocks of their own for big frames,
 * refcounted shared frames across several queues, gathering whole items
 * for one write (in place or copied into scratch), full and partial
 * consumption, ring wrap-around and growth, and clearing.
 *
 * Expected bytes come from ref_frame(), an encoder written here from
 * RFC 6455 section 5.2, not from sendq_frame_header().  Blocks freed too
 * early, twice or never show up under AddressSanitizer/LeakSanitizer. */

#include "sendq.h"
#include "testlib.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* An expected byte stream, grown as frames are added. */
typedef struct stream {
    unsigned char *p;
    size_t len, cap;
} stream;

static void stream_put(stream *s, const void *data, size_t n)
{
    if (s->len + n > s->cap) {
        size_t ncap = s->cap ? s->cap : 256;
        while (ncap < s->len + n)
            ncap *= 2;
        unsigned char *np = realloc(s->p, ncap);
        if (!np) {
            perror("realloc");
            exit(2);
        }
        s->p = np;
        s->cap = ncap;
    }
    if (n)
        memcpy(s->p + s->len, data, n);
    s->len += n;
}

/* Drop the first n bytes (what the queue has sent). */
static void stream_drop(stream *s, size_t n)
{
    memmove(s->p, s->p + n, s->len - n);
    s->len -= n;
}

static void stream_free(stream *s)
{
    free(s->p);
    memset(s, 0, sizeof(*s));
}

/* Append one unmasked FIN server frame, encoded independently of sendq.c. */
static size_t ref_frame(stream *s, int opcode, const void *data, size_t len)
{
    unsigned char h[10];
    size_t hl;
    h[0] = (unsigned char)(0x80 | opcode);
    if (len <= 125) {
        h[1] = (unsigned char)len;
        hl = 2;
    } else if (len <= 65535) {
        h[1] = 126;
        h[2] = (unsigned char)(len / 256);
        h[3] = (unsigned char)(len % 256);
        hl = 4;
    } else {
        uint64_t v = len;
        h[1] = 127;
        for (int i = 9; i >= 2; i--, v /= 256)
            h[i] = (unsigned char)(v % 256);
        hl = 10;
    }
    stream_put(s, h, hl);
    stream_put(s, data, len);
    return hl + len;
}

/* A payload whose bytes depend on seed and position. */
static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed * 31 + i * 7 + 1);
}

/* The i-th queued item, in order. */
static mg_sendq_item *item(const mg_sendq *q, uint32_t i)
{
    return &q->items[(q->head + i) % q->cap];
}

/* Sum of the queued items' lengths, independent of q->bytes. */
static size_t items_total(const mg_sendq *q)
{
    size_t n = 0;
    for (uint32_t i = 0; i < q->count; i++)
        n += item(q, i)->len;
    return n;
}

/* The queue's unsent bytes, item after item, equal want exactly. */
static int queue_equals(const mg_sendq *q, const stream *want)
{
    size_t at = 0;
    for (uint32_t i = 0; i < q->count; i++) {
        const mg_sendq_item *it = item(q, i);
        if (at + it->len > want->len || it->off + it->len > it->buf->len ||
            memcmp(it->buf->data + it->off, want->p + at, it->len) != 0)
            return 0;
        at += it->len;
    }
    return at == want->len && q->bytes == want->len;
}

/* ------------------------------------------------------------ headers */

/* Header for len must be exactly want[0..wlen); bytes after it untouched. */
static void expect_header(int opcode, size_t len, const unsigned char *want, size_t wlen)
{
    unsigned char h[MG_FRAME_HDR_MAX + 4];
    memset(h, 0xEE, sizeof(h));
    size_t n = sendq_frame_header(h, opcode, len);
    CHECK(n == wlen);
    CHECK(memcmp(h, want, wlen) == 0);
    for (size_t i = wlen; i < sizeof(h); i++)
        CHECK(h[i] == 0xEE);
}

static void test_header_lengths(void)
{
    /* 7-bit length. */
    expect_header(MG_OP_TEXT, 0, (const unsigned char[]){0x81, 0x00}, 2);
    expect_header(MG_OP_BINARY, 1, (const unsigned char[]){0x82, 0x01}, 2);
    expect_header(MG_OP_TEXT, 125, (const unsigned char[]){0x81, 0x7D}, 2);
    /* 16-bit length, big-endian. */
    expect_header(MG_OP_TEXT, 126, (const unsigned char[]){0x81, 0x7E, 0x00, 0x7E}, 4);
    expect_header(MG_OP_BINARY, 0x1234, (const unsigned char[]){0x82, 0x7E, 0x12, 0x34}, 4);
    expect_header(MG_OP_TEXT, 65535, (const unsigned char[]){0x81, 0x7E, 0xFF, 0xFF}, 4);
    /* 64-bit length, big-endian, most significant bit 0. */
    expect_header(MG_OP_TEXT, 65536,
                  (const unsigned char[]){0x81, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}, 10);
    expect_header(MG_OP_BINARY, (size_t)1 << 32,
                  (const unsigned char[]){0x82, 0x7F, 0, 0, 0, 0x01, 0, 0, 0, 0}, 10);
    expect_header(MG_OP_BINARY, ((size_t)1 << 32) + 5,
                  (const unsigned char[]){0x82, 0x7F, 0, 0, 0, 0x01, 0, 0, 0, 0x05}, 10);
    expect_header(MG_OP_BINARY, (size_t)0x0102030405060708ULL,
                  (const unsigned char[]){0x82, 0x7F, 1, 2, 3, 4, 5, 6, 7, 8}, 10);
}

static void test_header_opcodes(void)
{
    const int ops[] = {MG_OP_CONT, MG_OP_TEXT, MG_OP_BINARY, MG_OP_CLOSE, MG_OP_PING, MG_OP_PONG};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        unsigned char h[MG_FRAME_HDR_MAX];
        CHECK(sendq_frame_header(h, ops[i], 3) == 2);
        /* FIN set, RSV1-3 clear, opcode in the low nibble; no mask bit. */
        CHECK(h[0] == (0x80 | ops[i]));
        CHECK(h[1] == 3);
    }
    /* Only the low nibble of the opcode and MG_OP_RSV1 (a compressed
     * message) reach the header: RSV2 and RSV3 stay 0. */
    unsigned char h[MG_FRAME_HDR_MAX];
    sendq_frame_header(h, 0x3A, 0);
    CHECK(h[0] == 0x8A);
    sendq_frame_header(h, MG_OP_TEXT | MG_OP_RSV1, 0);
    CHECK(h[0] == 0xC1);
}

/* --------------------------------------------------------- frame_new */

static void test_frame_new(void)
{
    stream want = {0};
    unsigned char payload[300];
    fill(payload, sizeof(payload), 3);

    mg_buf *b = sendq_frame_new(MG_OP_TEXT, "hello", 5);
    CHECK(b != NULL);
    if (b) {
        CHECK(b->refs == 0);
        CHECK(b->len == 7);
        CHECK(b->cap >= b->len);
        CHECK(memcmp(b->data, "\x81\x05hello", 7) == 0);
        sendq_buf_release(b); /* nobody queued it: freed here */
    }

    b = sendq_frame_new(MG_OP_BINARY, payload, sizeof(payload));
    ref_frame(&want, MG_OP_BINARY, payload, sizeof(payload));
    CHECK(b != NULL);
    if (b) {
        CHECK(b->len == want.len && b->len == 4 + sizeof(payload));
        CHECK(memcmp(b->data, want.p, want.len) == 0);
        sendq_buf_release(b);
    }

    /* Empty control frame, no payload pointer. */
    b = sendq_frame_new(MG_OP_PING, NULL, 0);
    CHECK(b != NULL);
    if (b) {
        CHECK(b->len == 2 && b->data[0] == 0x89 && b->data[1] == 0x00);
        sendq_buf_release(b);
    }

    sendq_buf_release(NULL); /* harmless */
    stream_free(&want);
}

/* ------------------------------------------------------------ packing */

static void test_pack_small_frames(void)
{
    mg_sendq q;
    stream want = {0};
    unsigned char payload[64];

    sendq_init(&q);
    CHECK(q.count == 0 && q.bytes == 0 && q.items == NULL);

    /* 60 frames of 0..29 bytes: well under one block. */
    for (unsigned i = 0; i < 60; i++) {
        size_t len = i % 30;
        int op = (i % 3 == 0) ? MG_OP_BINARY : MG_OP_TEXT;
        fill(payload, len, i);
        CHECK(sendq_push_frame(&q, op, payload, len) == 0);
        ref_frame(&want, op, payload, len);
        CHECK(q.count == 1);
        CHECK(q.bytes == want.len);
    }
    CHECK(q.count == 1);
    mg_sendq_item *it = item(&q, 0);
    CHECK(it->buf->refs == 1);
    CHECK(it->off == 0);
    CHECK(it->len == want.len);
    CHECK(it->buf->len == want.len);
    CHECK(queue_equals(&q, &want));

    /* One item: gather offers it in place, whatever scratch is. */
    unsigned char scratch[16];
    const unsigned char *out = NULL;
    size_t n = sendq_gather(&q, scratch, sizeof(scratch), &out);
    CHECK(n == want.len);
    CHECK(out == it->buf->data);

    sendq_clear(&q);
    stream_free(&want);
}

/* Fill a fresh queue's first block with 100-byte frames while the header
 * room (MG_FRAME_HDR_MAX) plus payload fits; count must stay 1 throughout.
 * Returns the block. */
static mg_buf *pack_block(mg_sendq *q, stream *want)
{
    unsigned char payload[100];
    unsigned pushed = 0;

    sendq_init(q);
    fill(payload, sizeof(payload), 9);
    CHECK(sendq_push_frame(q, MG_OP_TEXT, payload, sizeof(payload)) == 0);
    ref_frame(want, MG_OP_TEXT, payload, sizeof(payload));
    mg_buf *b = item(q, 0)->buf;
    CHECK(b->cap >= 1000); /* a block holds a batch of small frames */
    while (b->cap - b->len >= MG_FRAME_HDR_MAX + sizeof(payload) && pushed < 10000) {
        fill(payload, sizeof(payload), ++pushed);
        CHECK(sendq_push_frame(q, MG_OP_TEXT, payload, sizeof(payload)) == 0);
        ref_frame(want, MG_OP_TEXT, payload, sizeof(payload));
        CHECK(q->count == 1);
        CHECK(item(q, 0)->buf == b);
    }
    /* (cap - 110) / 102 frames after the first fit, no more, no fewer. */
    CHECK(pushed == (b->cap - 110) / 102);
    CHECK(b->len == want->len && item(q, 0)->len == want->len && q->bytes == want->len);
    CHECK(queue_equals(q, want));
    return b;
}

/* The first frame that does not fit the tail block starts a new one, and
 * packing resumes there. */
static void test_pack_until_full(void)
{
    mg_sendq q;
    stream want = {0};
    unsigned char payload[100];

    mg_buf *first = pack_block(&q, &want);
    fill(payload, sizeof(payload), 777);
    CHECK(sendq_push_frame(&q, MG_OP_TEXT, payload, sizeof(payload)) == 0);
    ref_frame(&want, MG_OP_TEXT, payload, sizeof(payload));
    CHECK(q.count == 2);
    CHECK(item(&q, 1)->buf != first);
    CHECK(first->len == want.len - 102); /* the full block was not written to */
    CHECK(item(&q, 1)->buf->refs == 1 && item(&q, 1)->off == 0);

    /* ... and the new block takes the following small frames. */
    CHECK(sendq_push_frame(&q, MG_OP_BINARY, "xyz", 3) == 0);
    ref_frame(&want, MG_OP_BINARY, "xyz", 3);
    CHECK(q.count == 2);
    CHECK(item(&q, 1)->len == 102 + 5);
    CHECK(queue_equals(&q, &want));
    CHECK(items_total(&q) == q.bytes);

    sendq_clear(&q);
    stream_free(&want);
}

/* The fit test is "header room + payload <= free bytes", exactly. */
static void test_pack_boundary(void)
{
    mg_sendq q;
    stream want = {0};
    unsigned char payload[120];

    /* Free room minus 10 bytes of payload: fits, appended. */
    mg_buf *b = pack_block(&q, &want);
    size_t room = b->cap - b->len;
    CHECK(room >= MG_FRAME_HDR_MAX && room < 110);
    if (room < MG_FRAME_HDR_MAX || room >= 110)
        return;
    fill(payload, room - MG_FRAME_HDR_MAX, 1);
    CHECK(sendq_push_frame(&q, MG_OP_TEXT, payload, room - MG_FRAME_HDR_MAX) == 0);
    ref_frame(&want, MG_OP_TEXT, payload, room - MG_FRAME_HDR_MAX);
    CHECK(q.count == 1);
    CHECK(b->len == want.len && b->len <= b->cap);
    CHECK(queue_equals(&q, &want));
    /* 8 bytes left: not enough for even an empty frame's header room. */
    CHECK(sendq_push_frame(&q, MG_OP_PONG, NULL, 0) == 0);
    ref_frame(&want, MG_OP_PONG, NULL, 0);
    CHECK(q.count == 2 && item(&q, 1)->buf != b);
    CHECK(queue_equals(&q, &want));
    sendq_clear(&q);
    stream_free(&want);

    /* One byte more than that: a new block. */
    b = pack_block(&q, &want);
    fill(payload, room - MG_FRAME_HDR_MAX + 1, 1);
    CHECK(sendq_push_frame(&q, MG_OP_TEXT, payload, room - MG_FRAME_HDR_MAX + 1) == 0);
    ref_frame(&want, MG_OP_TEXT, payload, room - MG_FRAME_HDR_MAX + 1);
    CHECK(q.count == 2 && item(&q, 1)->buf != b);
    CHECK(b->cap - b->len == room);
    CHECK(queue_equals(&q, &want));
    sendq_clear(&q);
    stream_free(&want);
}

static void test_big_frame_own_block(void)
{
    mg_sendq q;
    stream want = {0};

    sendq_init(&q);
    CHECK(sendq_push_frame(&q, MG_OP_TEXT, "hi", 2) == 0);
    ref_frame(&want, MG_OP_TEXT, "hi", 2);
    size_t block = item(&q, 0)->buf->cap;

    /* Bigger than a whole block (64-bit length header). */
    size_t big = block + 70000;
    unsigned char *payload = malloc(big);
    CHECK(payload != NULL);
    if (!payload)
        return;
    fill(payload, big, 5);
    CHECK(sendq_push_frame(&q, MG_OP_BINARY, payload, big) == 0);
    ref_frame(&want, MG_OP_BINARY, payload, big);
    CHECK(q.count == 2);
    mg_sendq_item *it = item(&q, 1);
    CHECK(it->buf != item(&q, 0)->buf);
    CHECK(it->off == 0 && it->len == 10 + big);
    CHECK(it->buf->cap >= 10 + big);
    CHECK(item(&q, 0)->len == 4); /* the small block kept only "hi" */
    CHECK(queue_equals(&q, &want));

    /* Into an empty queue as well. */
    mg_sendq q2;
    sendq_init(&q2);
    CHECK(sendq_push_frame(&q2, MG_OP_TEXT, payload, block) == 0);
    CHECK(q2.count == 1);
    CHECK(item(&q2, 0)->len == 4 + block);
    CHECK(item(&q2, 0)->buf->cap >= 4 + block);
    CHECK(q2.bytes == 4 + block);

    free(payload);
    sendq_clear(&q);
    sendq_clear(&q2);
    stream_free(&want);
}

/* ------------------------------------------------------------- shared */

static void test_shared_refs(void)
{
    mg_sendq q[3];
    unsigned char scratch[256];
    const unsigned char *out;

    mg_buf *b = sendq_frame_new(MG_OP_TEXT, "broadcast", 9);
    CHECK(b != NULL);
    if (!b)
        return;
    for (int i = 0; i < 3; i++) {
        sendq_init(&q[i]);
        CHECK(sendq_push_shared(&q[i], b) == 0);
        CHECK(b->refs == (uint32_t)(i + 1));
        CHECK(q[i].count == 1 && q[i].bytes == 11);
        CHECK(item(&q[i], 0)->buf == b);
    }
    CHECK(b->refs == 3);
    /* What pubsub_publish does after queueing: a no-op while queued. */
    sendq_buf_release(b);
    CHECK(b->refs == 3);
    CHECK(memcmp(b->data,
                 "\x81\x09"
                 "broadcast",
                 11) == 0);

    for (int i = 0; i < 3; i++) {
        out = NULL;
        size_t n = sendq_gather(&q[i], scratch, sizeof(scratch), &out);
        CHECK(n == 11);
        CHECK(out == b->data); /* in place, not copied */
        if (i < 2) {
            sendq_consume(&q[i], n);
            CHECK(b->refs == (uint32_t)(2 - i));
        } else {
            sendq_consume(&q[i], n); /* the last reference: freed (ASan) */
        }
        CHECK(q[i].count == 0 && q[i].bytes == 0);
    }
    for (int i = 0; i < 3; i++)
        sendq_clear(&q[i]);
}

static void test_shared_partial_consume(void)
{
    mg_sendq q1, q2;
    unsigned char payload[200];
    fill(payload, sizeof(payload), 4);

    mg_buf *b = sendq_frame_new(MG_OP_BINARY, payload, sizeof(payload));
    CHECK(b != NULL);
    if (!b)
        return;
    sendq_init(&q1);
    sendq_init(&q2);
    sendq_push_shared(&q1, b);
    sendq_push_shared(&q2, b);

    /* Each queue keeps its own offset into the same block. */
    sendq_consume(&q1, 50);
    CHECK(item(&q1, 0)->off == 50 && item(&q1, 0)->len == 154);
    CHECK(item(&q2, 0)->off == 0 && item(&q2, 0)->len == 204);
    CHECK(q1.bytes == 154 && q2.bytes == 204);
    CHECK(b->refs == 2);

    const unsigned char *out = NULL;
    unsigned char scratch[8];
    CHECK(sendq_gather(&q1, scratch, sizeof(scratch), &out) == 154);
    CHECK(out == b->data + 50);

    sendq_consume(&q1, 154);
    CHECK(q1.count == 0 && b->refs == 1);
    sendq_clear(&q1);
    sendq_clear(&q2); /* drops the last reference */
    CHECK(q2.count == 0 && q2.bytes == 0);
}

/* Shared blocks are never written to, even when one queue holds the only
 * reference left. */
static void test_private_after_shared(void)
{
    const size_t sizes[] = {0, 1, 100, 125, 126, 200, 65535, 65536};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        mg_sendq q1, q2;
        stream want = {0};
        size_t len = sizes[k];
        unsigned char *payload = malloc(len ? len : 1);
        CHECK(payload != NULL);
        if (!payload)
            return;
        fill(payload, len, (unsigned)k);

        mg_buf *b = sendq_frame_new(MG_OP_BINARY, payload, len);
        CHECK(b != NULL);
        if (!b) {
            free(payload);
            return;
        }
        sendq_init(&q1);
        sendq_init(&q2);
        CHECK(sendq_push_shared(&q1, b) == 0);
        CHECK(sendq_push_shared(&q2, b) == 0);
        ref_frame(&want, MG_OP_BINARY, payload, len);
        size_t blen = b->len;

        /* Two holders. */
        CHECK(sendq_push_frame(&q1, MG_OP_TEXT, "", 0) == 0);
        ref_frame(&want, MG_OP_TEXT, "", 0);
        CHECK(q1.count == 2);
        CHECK(item(&q1, 1)->buf != b);
        CHECK(b->len == blen);

        /* q1 alone holds it now (refs == 1): still not appended to. */
        sendq_clear(&q1);
        CHECK(b->refs == 1);
        CHECK(sendq_push_frame(&q2, MG_OP_TEXT, "a", 1) == 0);
        CHECK(q2.count == 2);
        CHECK(item(&q2, 1)->buf != b);
        CHECK(b->len == blen);
        CHECK(item(&q2, 0)->len == blen);

        /* Pushed once into one queue only (refs 1 from the start). */
        mg_sendq q3;
        mg_buf *c = sendq_frame_new(MG_OP_TEXT, payload, len);
        CHECK(c != NULL);
        if (c) {
            size_t clen = c->len;
            sendq_init(&q3);
            sendq_push_shared(&q3, c);
            CHECK(sendq_push_frame(&q3, MG_OP_TEXT, "", 0) == 0);
            CHECK(q3.count == 2 && item(&q3, 1)->buf != c && c->len == clen);
            sendq_clear(&q3);
        }

        sendq_clear(&q2);
        free(payload);
        stream_free(&want);
    }
}

/* ------------------------------------------------------------- gather */

/* A queue of three items (shared frames) of 102, 204 and 304 bytes. */
static void three_items(mg_sendq *q, stream *want, mg_buf *b[3])
{
    const size_t lens[3] = {100, 200, 300};
    unsigned char payload[300];
    sendq_init(q);
    for (int i = 0; i < 3; i++) {
        fill(payload, lens[i], (unsigned)i + 40);
        b[i] = sendq_frame_new(MG_OP_BINARY, payload, lens[i]);
        if (!b[i]) {
            perror("sendq_frame_new");
            exit(2);
        }
        sendq_push_shared(q, b[i]);
        ref_frame(want, MG_OP_BINARY, payload, lens[i]);
    }
}

static void test_gather(void)
{
    mg_sendq q;
    stream want = {0};
    mg_buf *b[3];
    unsigned char scratch[1024];
    const unsigned char *out;
    size_t n;

    three_items(&q, &want, b);
    CHECK(q.count == 3 && q.bytes == 610 && want.len == 610);

    /* Everything fits: copied into scratch in order. */
    memset(scratch, 0, sizeof(scratch));
    out = NULL;
    n = sendq_gather(&q, scratch, sizeof(scratch), &out);
    CHECK(n == 610);
    CHECK(out == scratch);
    CHECK(memcmp(scratch, want.p, 610) == 0);
    CHECK(q.count == 3 && q.bytes == 610); /* gather does not consume */

    /* Exactly all three. */
    out = NULL;
    CHECK(sendq_gather(&q, scratch, 610, &out) == 610 && out == scratch);

    /* Up to cap, never splitting the third item. */
    memset(scratch, 0, sizeof(scratch));
    out = NULL;
    n = sendq_gather(&q, scratch, 609, &out);
    CHECK(n == 306 && out == scratch);
    CHECK(memcmp(scratch, want.p, 306) == 0);
    out = NULL;
    CHECK(sendq_gather(&q, scratch, 400, &out) == 306 && out == scratch);
    out = NULL;
    CHECK(sendq_gather(&q, scratch, 306, &out) == 306 && out == scratch);

    /* The first two do not fit together: the first alone, in place. */
    out = NULL;
    n = sendq_gather(&q, scratch, 305, &out);
    CHECK(n == 102 && out == b[0]->data);
    out = NULL;
    n = sendq_gather(&q, scratch, 102, &out);
    CHECK(n == 102 && out == b[0]->data);

    /* The first is larger than cap: still offered alone, in place. */
    out = NULL;
    n = sendq_gather(&q, scratch, 50, &out);
    CHECK(n == 102 && out == b[0]->data);

    for (int i = 0; i < 3; i++)
        sendq_buf_release(b[i]); /* no-ops: still queued */
    sendq_clear(&q);
    stream_free(&want);
}

static void test_gather_empty(void)
{
    mg_sendq q;
    unsigned char scratch[16];
    const unsigned char *out = (const unsigned char *)"untouched";
    sendq_init(&q);
    CHECK(sendq_gather(&q, scratch, sizeof(scratch), &out) == 0);
    CHECK(strcmp((const char *)out, "untouched") == 0);
    sendq_consume(&q, 0);
    CHECK(q.count == 0 && q.bytes == 0);
    sendq_clear(&q);
}

/* A private item of several packed frames is one item: gathered whole. */
static void test_gather_packed_item(void)
{
    mg_sendq q;
    stream want = {0};
    unsigned char scratch[64];
    const unsigned char *out;

    sendq_init(&q);
    for (int i = 0; i < 5; i++) {
        CHECK(sendq_push_frame(&q, MG_OP_TEXT, "0123456789", 10) == 0);
        ref_frame(&want, MG_OP_TEXT, "0123456789", 10);
    }
    mg_buf *s = sendq_frame_new(MG_OP_TEXT, "tail", 4);
    CHECK(s != NULL);
    if (!s)
        return;
    sendq_push_shared(&q, s);
    ref_frame(&want, MG_OP_TEXT, "tail", 4);
    CHECK(q.count == 2 && item(&q, 0)->len == 60);

    /* 60 + 6 > 64: the packed item alone, in place. */
    out = NULL;
    CHECK(sendq_gather(&q, scratch, 64, &out) == 60);
    CHECK(out == item(&q, 0)->buf->data);
    /* 66 fits in 66: both, copied. */
    unsigned char big[66];
    out = NULL;
    CHECK(sendq_gather(&q, big, sizeof(big), &out) == 66);
    CHECK(out == big && memcmp(big, want.p, 66) == 0);

    sendq_clear(&q);
    stream_free(&want);
}

/* Items offered in place as pieces of one write (io_uring): at most max
 * of them, and only as many as fit `limit`, except a first one bigger
 * than it; after a partial consume the first piece starts at the rest. */
static void test_iov(void)
{
    mg_sendq q;
    struct iovec iov[4];
    sendq_init(&q);
    CHECK(sendq_iov(&q, iov, 4, 100) == 0);
    mg_buf *b[3];
    for (int i = 0; i < 3; i++) {
        b[i] = sendq_frame_new(MG_OP_TEXT, "0123456789", 10); /* 12 bytes */
        CHECK(b[i] != NULL);
        if (!b[i])
            return;
        sendq_push_shared(&q, b[i]);
    }
    CHECK(sendq_iov(&q, iov, 4, 100) == 3);
    for (int i = 0; i < 3; i++)
        CHECK(iov[i].iov_base == b[i]->data && iov[i].iov_len == 12);
    CHECK(sendq_iov(&q, iov, 2, 100) == 2);                       /* max */
    CHECK(sendq_iov(&q, iov, 4, 30) == 2);                        /* 36 > 30 */
    CHECK(sendq_iov(&q, iov, 4, 5) == 1 && iov[0].iov_len == 12); /* the first whole */
    sendq_consume(&q, 5);
    CHECK(sendq_iov(&q, iov, 4, 100) == 3);
    CHECK(iov[0].iov_base == b[0]->data + 5 && iov[0].iov_len == 7);
    sendq_clear(&q);
}

/* ------------------------------------------------------------ consume */

static void test_consume(void)
{
    mg_sendq q;
    stream want = {0};
    mg_buf *b[3];
    unsigned char scratch[1024];
    const unsigned char *out;

    three_items(&q, &want, b);
    for (int i = 0; i < 3; i++)
        sendq_buf_release(b[i]);

    /* Exactly what was gathered: the first two items go. */
    size_t n = sendq_gather(&q, scratch, 400, &out);
    CHECK(n == 306);
    sendq_consume(&q, n);
    stream_drop(&want, n);
    CHECK(q.count == 1);
    CHECK(q.bytes == 304);
    CHECK(item(&q, 0)->buf == b[2] && item(&q, 0)->off == 0);
    CHECK(queue_equals(&q, &want));

    /* Partial: the offset advances within the item. */
    sendq_consume(&q, 100);
    stream_drop(&want, 100);
    CHECK(q.count == 1);
    CHECK(item(&q, 0)->off == 100 && item(&q, 0)->len == 204);
    CHECK(q.bytes == 204);
    out = NULL;
    CHECK(sendq_gather(&q, scratch, sizeof(scratch), &out) == 204);
    CHECK(out == b[2]->data + 100);
    CHECK(queue_equals(&q, &want));

    /* Another one byte at a time. */
    sendq_consume(&q, 1);
    stream_drop(&want, 1);
    CHECK(item(&q, 0)->off == 101 && q.bytes == 203);

    sendq_consume(&q, 203);
    CHECK(q.count == 0 && q.bytes == 0);
    sendq_clear(&q);
    stream_free(&want);
}

/* A consume that ends inside the second item. */
static void test_consume_across_items(void)
{
    mg_sendq q;
    stream want = {0};
    mg_buf *b[3];

    three_items(&q, &want, b);
    for (int i = 0; i < 3; i++)
        sendq_buf_release(b[i]);
    sendq_consume(&q, 102 + 5);
    stream_drop(&want, 102 + 5);
    CHECK(q.count == 2);
    CHECK(item(&q, 0)->buf == b[1]);
    CHECK(item(&q, 0)->off == 5 && item(&q, 0)->len == 199);
    CHECK(q.bytes == 199 + 304);
    CHECK(queue_equals(&q, &want));

    /* Gather after a partial consume copies from the offset. */
    unsigned char scratch[1024];
    const unsigned char *out = NULL;
    CHECK(sendq_gather(&q, scratch, sizeof(scratch), &out) == 503);
    CHECK(out == scratch && memcmp(scratch, want.p, 503) == 0);

    sendq_clear(&q);
    stream_free(&want);
}

/* The private tail block stays appendable after a partial consume. */
static void test_append_after_partial_consume(void)
{
    mg_sendq q;
    stream want = {0};
    sendq_init(&q);

    for (int i = 0; i < 4; i++) {
        sendq_push_frame(&q, MG_OP_TEXT, "abcdefgh", 8);
        ref_frame(&want, MG_OP_TEXT, "abcdefgh", 8);
    }
    sendq_consume(&q, 13);
    stream_drop(&want, 13);
    CHECK(q.count == 1 && item(&q, 0)->off == 13);

    CHECK(sendq_push_frame(&q, MG_OP_BINARY, "Z", 1) == 0);
    ref_frame(&want, MG_OP_BINARY, "Z", 1);
    CHECK(q.count == 1);
    CHECK(item(&q, 0)->off == 13);
    CHECK(queue_equals(&q, &want));

    sendq_clear(&q);
    stream_free(&want);
}

/* Items keep their order when the ring wraps and then grows. */
static void test_ring_wrap_and_grow(void)
{
    mg_sendq q;
    stream want = {0};
    unsigned char payload[8];
    unsigned seq = 0;
    sendq_init(&q);

    for (int round = 0; round < 40; round++) {
        /* Push a few shared frames, each its own item... */
        int push = 1 + round % 5;
        for (int i = 0; i < push; i++, seq++) {
            fill(payload, sizeof(payload), seq);
            mg_buf *b = sendq_frame_new(MG_OP_BINARY, payload, sizeof(payload));
            CHECK(b != NULL);
            if (!b)
                return;
            CHECK(sendq_push_shared(&q, b) == 0);
            ref_frame(&want, MG_OP_BINARY, payload, sizeof(payload));
        }
        CHECK(queue_equals(&q, &want));
        CHECK(q.count <= q.cap);
        /* ...and send some of the oldest, sometimes mid-item. */
        size_t drop = (size_t)(round % 4) * 10 + (round % 3);
        if (drop > q.bytes)
            drop = q.bytes;
        sendq_consume(&q, drop);
        stream_drop(&want, drop);
        CHECK(queue_equals(&q, &want));
        CHECK(items_total(&q) == q.bytes);
    }
    CHECK(q.count > 4); /* it grew past its first ring */

    /* Gather everything: the exact remaining stream. */
    unsigned char *scratch = malloc(q.bytes);
    CHECK(scratch != NULL);
    if (scratch) {
        const unsigned char *out = NULL;
        size_t n = sendq_gather(&q, scratch, q.bytes, &out);
        CHECK(n == want.len);
        CHECK(memcmp(out, want.p, want.len) == 0);
        sendq_consume(&q, n);
        CHECK(q.count == 0 && q.bytes == 0 && q.head == 0);
        free(scratch);
    }
    sendq_clear(&q);
    stream_free(&want);
}

/* -------------------------------------------------------------- clear */

static void test_clear(void)
{
    mg_sendq q1, q2;
    unsigned char big[5000];
    fill(big, sizeof(big), 8);

    sendq_init(&q1);
    sendq_init(&q2);
    mg_buf *s = sendq_frame_new(MG_OP_TEXT, "shared", 6);
    CHECK(s != NULL);
    if (!s)
        return;
    sendq_push_frame(&q1, MG_OP_TEXT, "one", 3);
    sendq_push_shared(&q1, s);
    sendq_push_shared(&q2, s);
    sendq_push_frame(&q1, MG_OP_BINARY, big, sizeof(big));
    sendq_push_frame(&q1, MG_OP_TEXT, "two", 3);
    CHECK(q1.count == 4);
    CHECK(s->refs == 2);

    sendq_clear(&q1); /* frees its private blocks, drops one reference */
    CHECK(q1.count == 0 && q1.bytes == 0 && q1.items == NULL && q1.cap == 0 && q1.head == 0);
    CHECK(s->refs == 1);
    CHECK(q2.count == 1 && item(&q2, 0)->buf == s);

    /* A cleared queue is usable again. */
    CHECK(sendq_push_frame(&q1, MG_OP_TEXT, "again", 5) == 0);
    CHECK(q1.count == 1 && q1.bytes == 7);
    CHECK(memcmp(item(&q1, 0)->buf->data,
                 "\x81\x05"
                 "again",
                 7) == 0);

    sendq_clear(&q1);
    sendq_clear(&q2); /* the last reference: s is freed (ASan) */
    sendq_clear(&q2); /* clearing an empty queue is fine */
    CHECK(q2.count == 0 && q2.items == NULL);
}

/* sendq_discard: what has not begun to go out is dropped; a frame partly
 * written keeps exactly its unsent end, whether it is packed with others in
 * a private block, a shared block, or the rest of a direct write. */
static void test_discard(void)
{
    mg_sendq q;
    unsigned char big[300];
    fill(big, sizeof(big), 7);

    /* Nothing sent: everything goes. */
    sendq_init(&q);
    sendq_push_frame(&q, MG_OP_TEXT, "one", 3);
    sendq_push_frame(&q, MG_OP_TEXT, "two", 3);
    sendq_discard(&q);
    CHECK(q.count == 0 && q.bytes == 0);

    /* Three small frames packed in one block, cut inside the second: its
     * last 3 bytes stay, the third frame goes. */
    sendq_push_frame(&q, MG_OP_TEXT, "one", 3);   /* bytes 0..4 */
    sendq_push_frame(&q, MG_OP_TEXT, "two!!", 5); /* bytes 5..11 */
    sendq_push_frame(&q, MG_OP_TEXT, "six", 3);   /* bytes 12..16 */
    CHECK(q.count == 1 && q.bytes == 17);
    sendq_consume(&q, 9);
    sendq_discard(&q);
    CHECK(q.count == 1 && q.bytes == 3 && item(&q, 0)->len == 3);
    CHECK(memcmp(item(&q, 0)->buf->data + item(&q, 0)->off, "o!!", 3) == 0);
    sendq_consume(&q, 3);
    CHECK(q.count == 0 && q.bytes == 0);

    /* Cut exactly between two frames: nothing of the rest is kept. */
    sendq_push_frame(&q, MG_OP_TEXT, "one", 3);
    sendq_push_frame(&q, MG_OP_TEXT, "two", 3);
    sendq_consume(&q, 5);
    sendq_discard(&q);
    CHECK(q.count == 0 && q.bytes == 0);

    /* A shared frame (16-bit length) cut after its header: the payload
     * stays, the frames queued behind it go, the block survives for q2. */
    mg_sendq q2;
    sendq_init(&q2);
    mg_buf *s = sendq_frame_new(MG_OP_BINARY, big, sizeof(big));
    sendq_push_shared(&q, s);
    sendq_push_shared(&q2, s);
    sendq_push_frame(&q, MG_OP_TEXT, "after", 5);
    sendq_consume(&q, 4);
    sendq_discard(&q);
    CHECK(q.count == 1 && q.bytes == sizeof(big) && item(&q, 0)->buf == s);
    CHECK(memcmp(item(&q, 0)->buf->data + item(&q, 0)->off, big, sizeof(big)) == 0);
    CHECK(s->refs == 2);
    sendq_clear(&q);
    sendq_clear(&q2);

    /* The rest of a frame written in part directly (its item starts inside
     * the frame): kept whole, or what is left of it. */
    sendq_push_frame_rest(&q, MG_OP_BINARY, big, sizeof(big), 100);
    sendq_push_frame(&q, MG_OP_TEXT, "x", 1);
    sendq_discard(&q);
    CHECK(q.count == 1 && q.bytes == sizeof(big) + 4 - 100);
    sendq_consume(&q, 50);
    sendq_discard(&q);
    CHECK(q.count == 1 && q.bytes == sizeof(big) + 4 - 150);
    sendq_consume(&q, q.bytes);
    CHECK(q.count == 0);

    /* A 64-bit length frame cut in its payload. */
    size_t hn = 70000;
    unsigned char *huge = malloc(hn);
    fill(huge, hn, 3);
    sendq_push_frame(&q, MG_OP_BINARY, huge, hn);
    sendq_push_frame(&q, MG_OP_TEXT, "y", 1);
    sendq_consume(&q, 1000);
    sendq_discard(&q);
    CHECK(q.count == 1 && q.bytes == hn + 10 - 1000);
    CHECK(memcmp(item(&q, 0)->buf->data + item(&q, 0)->off, huge + 990, hn - 990) == 0);
    sendq_clear(&q);
    free(huge);
}

TEST_MAIN("sendq", T(test_header_lengths), T(test_header_opcodes), T(test_frame_new),
          T(test_pack_small_frames), T(test_pack_until_full), T(test_pack_boundary),
          T(test_big_frame_own_block), T(test_shared_refs), T(test_shared_partial_consume),
          T(test_private_after_shared), T(test_gather), T(test_gather_empty),
          T(test_gather_packed_item), T(test_iov), T(test_consume), T(test_consume_across_items),
          T(test_append_after_partial_consume), T(test_ring_wrap_and_grow), T(test_clear),
          T(test_discard))
