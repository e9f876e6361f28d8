/* test_wsrx.c — wsrx.c: client frames read from a byte stream.
 *
 * A stream of masked frames (every length encoding, fragmented messages
 * with control frames between the fragments, empty frames) is fed whole,
 * one byte at a time, and cut at random points; every way must give the
 * same messages and control frames, in order.  Then each protocol error
 * (1002), the size limit (1009, also across fragments), a sink that stops
 * the read, and the state being freed once a read ends on a boundary.
 * Feeds go through exact-size heap copies, so a read past the end shows up
 * under AddressSanitizer. */

#include "wsrx.h"
#include "testlib.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- building frames ---- */

typedef struct {
    unsigned char *p;
    size_t len, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) {
            perror("realloc");
            exit(2);
        }
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* A client frame: b0 is FIN|RSV|opcode as on the wire. */
static void frame_raw(bytes *b, unsigned b0, const void *payload, size_t n, int masked)
{
    unsigned char h[14];
    size_t hl = 0;
    h[hl++] = (unsigned char)b0;
    unsigned char m = masked ? 0x80 : 0;
    if (n < 126) {
        h[hl++] = (unsigned char)(m | n);
    } else if (n < 65536) {
        h[hl++] = m | 126;
        h[hl++] = (unsigned char)(n >> 8);
        h[hl++] = (unsigned char)n;
    } else {
        h[hl++] = m | 127;
        for (int i = 7; i >= 0; i--)
            h[hl++] = (unsigned char)((uint64_t)n >> (8 * i));
    }
    unsigned char key[4] = {(unsigned char)(0x37 + n), 0xfa, 0x21, (unsigned char)(0x3d ^ n)};
    if (masked)
        memcpy(h + hl, key, 4), hl += 4;
    put(b, h, hl);
    size_t at = b->len;
    put(b, payload, n);
    for (size_t i = 0; masked && i < n; i++)
        b->p[at + i] ^= key[i & 3];
}

static void frame(bytes *b, int fin, int op, const void *payload, size_t n)
{
    frame_raw(b, (fin ? 0x80u : 0) | (unsigned)op, payload, n, 1);
}

/* ---- a sink that records what it gets ---- */

typedef struct {
    bytes log;    /* "M<kind><len>:<data>" / "C<op><len>:<data>" records */
    int messages; /* count */
    int stop_at;  /* stop when this many messages were seen (0: never) */
} rec;

static void rec_add(rec *r, char tag, int sub, const unsigned char *d, size_t n)
{
    char h[48];
    int hl = snprintf(h, sizeof h, "%c%d/%zu:", tag, sub, n);
    put(&r->log, h, (size_t)hl);
    put(&r->log, d, n);
}

static int rec_message(void *arg, const unsigned char *d, size_t n, int binary)
{
    rec *r = arg;
    rec_add(r, 'M', binary, d, n);
    r->messages++;
    return r->stop_at && r->messages >= r->stop_at;
}

static int rec_control(void *arg, int op, const unsigned char *d, size_t n)
{
    rec_add(arg, 'C', op, d, n);
    return 0;
}

static int rec_zpiece(void *arg, const unsigned char *d, size_t n, int final, int binary)
{
    rec_add(arg, 'Z', final * 2 + binary, d, n);
    return 0;
}

static const wsrx_sink sink = {rec_message, rec_control, rec_zpiece};

/* wsrx_feed's flags for feed_cut. */
static unsigned feed_flags;

/* Feed src[0..len) cut at the given offsets (sorted, ascending), the way
 * fastrx does: what wsrx kept goes in front of the next piece. */
static int feed_cut(const unsigned char *src, size_t len, const size_t *cuts, size_t ncuts,
                    uint64_t max, rec *r, int *code, const char **reason, wsrx **st)
{
    size_t from = 0;
    int rc = WSRX_OK;
    for (size_t i = 0; i <= ncuts && rc == WSRX_OK; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        unsigned char kept[WSRX_CARRY_MAX];
        size_t k = wsrx_unread(*st, kept);
        unsigned char *buf = malloc(k + (to - from) + 1);
        memcpy(buf, kept, k);
        memcpy(buf + k, src + from, to - from);
        if (k + (to - from) > 0)
            rc = wsrx_feed(st, buf, k + (to - from), max, feed_flags, &sink, r, code, reason);
        free(buf);
        from = to;
    }
    return rc;
}

static int feed_all(const bytes *b, uint64_t max, rec *r, int *code, const char **reason)
{
    wsrx *st = NULL;
    int rc = feed_cut(b->p, b->len, NULL, 0, max, r, code, reason, &st);
    wsrx_free(&st);
    return rc;
}

/* ---- the stream every split must agree on ---- */

static void build_stream(bytes *b, bytes *want)
{
    static unsigned char big[70000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(0x20 + (i * 7 + 3) % 95); /* text must be UTF-8 */
    const size_t sizes[] = {0, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 70000};
    rec w = {0};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        frame(b, 1, i & 1 ? 0x2 : 0x1, big, sizes[i]);
        rec_message(&w, big, sizes[i], (int)(i & 1));
    }
    /* a fragmented message with a ping, a pong and an empty fragment inside */
    frame(b, 0, 0x1, "Hel", 3);
    frame(b, 1, 0x9, "ping!", 5);
    rec_control(&w, 0x9, (const unsigned char *)"ping!", 5);
    frame(b, 0, 0x0, "", 0);
    frame(b, 1, 0xA, "", 0);
    rec_control(&w, 0xA, (const unsigned char *)"", 0);
    frame(b, 0, 0x0, "lo, ", 4);
    frame(b, 1, 0x0, big, 300);
    unsigned char joined[307];
    memcpy(joined, "Hello, ", 7);
    memcpy(joined + 7, big, 300);
    rec_message(&w, joined, sizeof joined, 0);
    /* an empty fragmented binary message, then a close */
    frame(b, 0, 0x2, "", 0);
    frame(b, 1, 0x0, "", 0);
    rec_message(&w, (const unsigned char *)"", 0, 1);
    frame(b, 1, 0x8,
          "\x03\xe8"
          "bye",
          5);
    rec_control(&w, 0x8,
                (const unsigned char *)"\x03\xe8"
                                       "bye",
                5);
    *want = w.log;
}

static int same(const bytes *a, const bytes *b)
{
    return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

static void test_whole_stream(void)
{
    bytes b = {0}, want = {0};
    build_stream(&b, &want);
    rec r = {0};
    int code = 0;
    const char *reason = NULL;
    CHECK(feed_all(&b, 1 << 20, &r, &code, &reason) == WSRX_OK);
    CHECK(same(&r.log, &want));
    free(b.p), free(want.p), free(r.log.p);
}

static void test_byte_at_a_time(void)
{
    bytes b = {0}, want = {0};
    build_stream(&b, &want);
    size_t *cuts = malloc(b.len * sizeof(*cuts));
    for (size_t i = 0; i + 1 < b.len; i++)
        cuts[i] = i + 1;
    rec r = {0};
    int code = 0;
    const char *reason = NULL;
    wsrx *st = NULL;
    CHECK(feed_cut(b.p, b.len, cuts, b.len - 1, 1 << 20, &r, &code, &reason, &st) == WSRX_OK);
    CHECK(same(&r.log, &want));
    CHECK(st == NULL); /* the stream ended on a boundary: nothing kept */
    free(cuts), free(b.p), free(want.p), free(r.log.p);
}

static void test_random_cuts(void)
{
    bytes b = {0}, want = {0};
    build_stream(&b, &want);
    unsigned seed = 12345;
    for (int round = 0; round < 300; round++) {
        size_t cuts[40], n = 0, at = 0;
        for (; n < 40; n++) {
            seed = seed * 1103515245u + 12345u;
            at += 1 + (seed >> 8) % (round < 150 ? 40 : 20000);
            if (at >= b.len)
                break;
            cuts[n] = at;
        }
        rec r = {0};
        int code = 0;
        const char *reason = NULL;
        wsrx *st = NULL;
        CHECK(feed_cut(b.p, b.len, cuts, n, 1 << 20, &r, &code, &reason, &st) == WSRX_OK);
        CHECK(same(&r.log, &want));
        CHECK(st == NULL);
        wsrx_free(&st);
        free(r.log.p);
    }
    free(b.p), free(want.p);
}

/* ---- errors ---- */

static void expect_error(const char *what, const bytes *b, uint64_t max, int want_code,
                         const char *want_reason, int want_messages)
{
    rec r = {0};
    int code = 0;
    const char *reason = NULL;
    int rc = feed_all(b, max, &r, &code, &reason);
    CHECK(rc == WSRX_ERROR);
    CHECK(code == want_code);
    CHECK_STR(reason, want_reason);
    CHECK(r.messages == want_messages);
    if (rc != WSRX_ERROR || code != want_code || r.messages != want_messages)
        fprintf(stderr, "  case: %s (rc %d code %d messages %d)\n", what, rc, code, r.messages);
    free(r.log.p);
}

static void test_protocol_errors(void)
{
    static unsigned char long_ping[126];
    bytes b = {0};

    frame(&b, 1, 0x1, "ok", 2);
    frame_raw(&b, 0x80 | 0x40 | 0x1, "rsv", 3, 1);
    frame(&b, 1, 0x1, "after", 5);
    expect_error("rsv1", &b, 1000, 1002, "reserved bits set", 1);
    b.len = 0;

    frame(&b, 1, 0x1, "ok", 2);
    frame_raw(&b, 0x81, "plain", 5, 0);
    expect_error("unmasked", &b, 1000, 1002, "unmasked frame", 1);
    b.len = 0;

    frame(&b, 1, 0x3, "x", 1);
    expect_error("opcode 3", &b, 1000, 1002, "unknown opcode", 0);
    b.len = 0;

    frame(&b, 1, 0xB, "x", 1);
    expect_error("opcode 11", &b, 1000, 1002, "unknown opcode", 0);
    b.len = 0;

    frame(&b, 0, 0x9, "x", 1);
    expect_error("fragmented ping", &b, 1000, 1002, "fragmented control frame", 0);
    b.len = 0;

    frame(&b, 1, 0x9, long_ping, sizeof long_ping);
    expect_error("ping of 126", &b, 1000, 1002, "control frame too long", 0);
    b.len = 0;

    frame(&b, 1, 0x0, "x", 1);
    expect_error("stray continuation", &b, 1000, 1002, "continuation frame without a message", 0);
    b.len = 0;

    frame(&b, 0, 0x1, "a", 1);
    frame(&b, 1, 0x1, "b", 1);
    expect_error("text inside text", &b, 1000, 1002, "new message inside a fragmented one", 0);
    b.len = 0;

    static const unsigned char huge[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    put(&b, huge, sizeof huge);
    expect_error("length top bit", &b, UINT64_MAX, 1002, "invalid frame length", 0);
    free(b.p);
}

static void test_size_limit(void)
{
    static unsigned char d[200];
    bytes b = {0};
    frame(&b, 1, 0x2, d, 100);
    rec r = {0};
    int code = 0;
    const char *reason = NULL;
    CHECK(feed_all(&b, 100, &r, &code, &reason) == WSRX_OK); /* exactly at the limit */
    CHECK(r.messages == 1);
    free(r.log.p);

    b.len = 0;
    frame(&b, 1, 0x2, d, 101);
    expect_error("one frame over", &b, 100, 1009, "message too big", 0);

    b.len = 0;
    frame(&b, 0, 0x1, d, 60);
    frame(&b, 1, 0x9, "p", 1);
    frame(&b, 1, 0x0, d, 41);
    expect_error("fragments over", &b, 100, 1009, "message too big", 0);

    /* found at the header, before the payload arrives */
    b.len = 0;
    frame(&b, 1, 0x2, d, 200);
    rec r2 = {0};
    wsrx *st = NULL;
    CHECK(wsrx_feed(&st, b.p, 8, 100, 0, &sink, &r2, &code, &reason) == WSRX_ERROR);
    CHECK(code == 1009);
    wsrx_free(&st);
    free(b.p);
}

static void test_stop_and_state(void)
{
    bytes b = {0};
    frame(&b, 1, 0x1, "one", 3);
    frame(&b, 1, 0x1, "two", 3);
    frame(&b, 1, 0x1, "three", 5);
    rec r = {.stop_at = 2};
    int code = 0;
    const char *reason = NULL;
    wsrx *st = NULL;
    CHECK(wsrx_feed(&st, b.p, b.len, 100, 0, &sink, &r, &code, &reason) == WSRX_STOPPED);
    CHECK(r.messages == 2);
    CHECK(st == NULL);
    free(r.log.p);

    /* half a header: kept, and busy until the rest comes */
    b.len = 0;
    frame(&b, 1, 0x2, "0123456789", 10);
    rec r2 = {0};
    CHECK(wsrx_feed(&st, b.p, 3, 100, 0, &sink, &r2, &code, &reason) == WSRX_OK);
    CHECK(wsrx_busy(st));
    unsigned char kept[WSRX_CARRY_MAX];
    CHECK(wsrx_unread(st, kept) == 3);
    CHECK(wsrx_unread(st, kept) == 3); /* no feed yet: still kept */
    unsigned char rest[64];
    memcpy(rest, kept, 3);
    memcpy(rest + 3, b.p + 3, b.len - 3);
    CHECK(wsrx_feed(&st, rest, b.len, 100, 0, &sink, &r2, &code, &reason) == WSRX_OK);
    CHECK(r2.messages == 1);
    CHECK(st == NULL && !wsrx_busy(st));
    free(r2.log.p);
    free(b.p);
}

/* Invalid UTF-8 fails the connection (1007) in the piece that brings it:
 * the rest of the message never comes, and neither does what follows. */
static void test_utf8_fails_fast(void)
{
    /* fragment 1 valid, fragment 2 invalid, fragment 3 never sent */
    bytes b = {0};
    frame(&b, 0, 0x1, "caf\xc3\xa9 ", 6);
    frame(&b, 0, 0x0, "\xed\xa0\x80", 3); /* a surrogate */
    rec r = {0};
    int code = 0;
    const char *reason = NULL;
    CHECK(feed_all(&b, 1 << 20, &r, &code, &reason) == WSRX_ERROR);
    CHECK(code == 1007);
    CHECK(r.log.len == 0);
    free(r.log.p);

    /* one frame whose payload arrives in pieces: the piece with the bad
     * byte fails it, with the frame's end still to come */
    b.len = 0;
    static const char text[] = "hello \xf4\x90\x80\x80 world"; /* above U+10FFFF */
    frame(&b, 1, 0x1, text, sizeof text - 1);
    size_t hl = b.len - (sizeof text - 1);
    for (size_t cut = hl; cut < hl + 7; cut++) {
        wsrx *st = NULL;
        rec r2 = {0};
        code = 0;
        size_t cuts[1] = {cut};
        /* only the bytes up to the bad one (payload offset 7) are fed */
        int rc = feed_cut(b.p, hl + 8, cuts, 1, 1 << 20, &r2, &code, &reason, &st);
        CHECK(rc == WSRX_ERROR && code == 1007);
        wsrx_free(&st);
        free(r2.log.p);
    }

    /* a character cut across fragments is fine; a message that ends
     * inside one is not */
    b.len = 0;
    frame(&b, 0, 0x1, "\xe2\x82", 2);
    frame(&b, 1, 0x0, "\xac", 1); /* the euro sign */
    rec r3 = {0};
    CHECK(feed_all(&b, 1 << 20, &r3, &code, &reason) == WSRX_OK);
    CHECK(r3.log.len > 0);
    free(r3.log.p);
    b.len = 0;
    frame(&b, 0, 0x1, "ok", 2);
    frame(&b, 1, 0x0, "\xe2\x82", 2);
    rec r4 = {0};
    CHECK(feed_all(&b, 1 << 20, &r4, &code, &reason) == WSRX_ERROR && code == 1007);
    free(r4.log.p);

    /* binary messages are not text */
    b.len = 0;
    frame(&b, 1, 0x2, "\xff\xfe", 2);
    rec r5 = {0};
    CHECK(feed_all(&b, 1 << 20, &r5, &code, &reason) == WSRX_OK);
    free(r5.log.p);
    free(b.p);
}

/* permessage-deflate: RSV1 on a data message's first frame passes its
 * payload on piece by piece (the sink inflates); RSV1 anywhere else, or
 * without the flag, and RSV2/RSV3 always, are 1002. */
static void test_deflate_frames(void)
{
    bytes b = {0};
    /* a compressed text message in two fragments with a ping between */
    frame_raw(&b, 0x40 | 0x1, "AB", 2, 1); /* RSV1, not FIN */
    frame(&b, 1, 0x9, "p", 1);
    frame(&b, 1, 0x0, "CD", 2);
    /* an uncompressed message after it */
    frame(&b, 1, 0x1, "plain", 5);
    /* a whole compressed binary message */
    frame_raw(&b, 0x80 | 0x40 | 0x2, "EF", 2, 1);
    rec want = {0};
    rec_zpiece(&want, (const unsigned char *)"AB", 2, 0, 0);
    rec_control(&want, 0x9, (const unsigned char *)"p", 1);
    rec_zpiece(&want, (const unsigned char *)"CD", 2, 1, 0);
    rec_message(&want, (const unsigned char *)"plain", 5, 0);
    rec_zpiece(&want, (const unsigned char *)"EF", 2, 1, 1);
    feed_flags = WSRX_DEFLATE;
    for (size_t cut = 0; cut <= b.len; cut++) {
        wsrx *st = NULL;
        rec r = {0};
        int code = 0;
        const char *reason = NULL;
        size_t cuts[1] = {cut};
        /* pieces may split differently: compare the bytes of each kind */
        CHECK(feed_cut(b.p, b.len, cuts, 1, 1 << 20, &r, &code, &reason, &st) == WSRX_OK ||
              !"feed");
        if (cut == 0 || cut == b.len)
            CHECK(same(&r.log, &want.log));
        wsrx_free(&st);
        free(r.log.p);
    }
    feed_flags = 0;
    free(want.log.p);

    struct {
        const char *what;
        unsigned b0;
        unsigned flags;
    } bad[] = {
        {"RSV1 without deflate", 0x80 | 0x40 | 0x1, 0},
        {"RSV1 on a ping", 0x80 | 0x40 | 0x9, WSRX_DEFLATE},
        {"RSV2", 0x80 | 0x20 | 0x1, WSRX_DEFLATE},
        {"RSV3", 0x80 | 0x10 | 0x2, WSRX_DEFLATE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        b.len = 0;
        frame_raw(&b, bad[i].b0, "xy", 2, 1);
        wsrx *st = NULL;
        rec r = {0};
        int code = 0;
        const char *reason = NULL;
        CHECK(wsrx_feed(&st, b.p, b.len, 100, bad[i].flags, &sink, &r, &code, &reason) ==
              WSRX_ERROR);
        CHECK(code == 1002);
        if (code != 1002)
            fprintf(stderr, "  case: %s\n", bad[i].what);
        wsrx_free(&st);
        free(r.log.p);
    }
    /* RSV1 on a continuation */
    b.len = 0;
    frame(&b, 0, 0x1, "a", 1);
    frame_raw(&b, 0x80 | 0x40 | 0x0, "b", 1, 1);
    {
        wsrx *st = NULL;
        rec r = {0};
        int code = 0;
        const char *reason = NULL;
        CHECK(wsrx_feed(&st, b.p, b.len, 100, WSRX_DEFLATE, &sink, &r, &code, &reason) ==
              WSRX_ERROR);
        CHECK(code == 1002);
        wsrx_free(&st);
        free(r.log.p);
    }
    free(b.p);
}

TEST_MAIN("wsrx", T(test_deflate_frames), T(test_utf8_fails_fast), T(test_whole_stream), T(test_byte_at_a_time), T(test_random_cuts),
          T(test_protocol_errors), T(test_size_limit), T(test_stop_and_state))
