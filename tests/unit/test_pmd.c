/* test_pmd.c — permessage-deflate (src/pmd.c): negotiation against RFC 7692
 * 7.1, and messages checked against zlib streams made here, independently,
 * with the negotiated windows (the client's side of the connection). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "pmd.h"
#include "testlib.h"

/* ---- the client's side, plain zlib ---- */

/* Compress one message as a client does: sync flush, tail removed. */
static size_t client_deflate(z_stream *z, const void *data, size_t len, unsigned char *out,
                             size_t cap)
{
    z->next_in = (Bytef *)data;
    z->avail_in = (uInt)len;
    z->next_out = out;
    z->avail_out = (uInt)cap;
    int rc = deflate(z, Z_SYNC_FLUSH);
    CHECK(rc == Z_OK || rc == Z_BUF_ERROR);
    CHECK(z->avail_in == 0 && z->avail_out > 0);
    size_t n = cap - z->avail_out;
    CHECK(n >= 4 && memcmp(out + n - 4, "\x00\x00\xff\xff", 4) == 0);
    return n - 4;
}

/* Inflate one message payload as a client does (tail appended); returns
 * the length, or (size_t)-1 on a zlib error. */
static size_t client_inflate(z_stream *z, const unsigned char *in, size_t len, unsigned char *out,
                             size_t cap)
{
    unsigned char *buf = malloc(len + 4);
    memcpy(buf, in, len);
    memcpy(buf + len, "\x00\x00\xff\xff", 4);
    z->next_in = buf;
    z->avail_in = (uInt)(len + 4);
    z->next_out = out;
    z->avail_out = (uInt)cap;
    int rc = inflate(z, Z_SYNC_FLUSH);
    size_t left = z->avail_in;
    free(buf);
    if ((rc != Z_OK && rc != Z_BUF_ERROR) || left != 0)
        return (size_t)-1;
    return cap - z->avail_out;
}

static void zdef_init(z_stream *z, int bits)
{
    memset(z, 0, sizeof(*z));
    CHECK(deflateInit2(z, 6, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
}

static void zinf_init(z_stream *z, int bits)
{
    memset(z, 0, sizeof(*z));
    CHECK(inflateInit2(z, -bits) == Z_OK);
}

static pmd_params params(int sbits, int cbits, int snct, int cnct)
{
    pmd_params p = {0};
    p.server_window_bits = (uint8_t)sbits;
    p.client_window_bits = (uint8_t)cbits;
    p.server_no_context_takeover = (uint8_t)snct;
    p.client_no_context_takeover = (uint8_t)cnct;
    p.mem_level = 8;
    p.level = 1;
    p.min_size = 64;
    return p;
}

/* Text that compresses, different per seed. */
static void fill_text(char *buf, size_t len, unsigned seed)
{
    static const char *words[] = {"moongate ",
                                  "gateway ",
                                  "websocket ",
                                  "deflate ",
                                  "message ",
                                  "{\"type\":\"chat\",",
                                  "\"room\":\"lobby\"} "};
    size_t n = 0;
    while (n < len) {
        seed = seed * 1103515245u + 12345u;
        const char *w = words[(seed >> 16) % 7];
        size_t wl = strlen(w);
        if (wl > len - n)
            wl = len - n;
        memcpy(buf + n, w, wl);
        n += wl;
    }
}

/* ---- negotiation ---- */

static pmd_config cfg_open(void)
{
    pmd_config c;
    pmd_config_default(&c);
    c.enabled = 1;
    c.server_no_context_takeover = 0;
    c.client_no_context_takeover = 0;
    return c;
}

/* Accepted, with exactly this response. */
static void expect_accept(const pmd_config *cfg, const char *offer, const char *resp)
{
    char r[PMD_RESPONSE_MAX];
    pmd_params p;
    int ok = pmd_negotiate(cfg, offer, &p, r, sizeof(r));
    CHECK(ok == 1);
    if (!ok) {
        fprintf(stderr, "  declined: %s\n", offer);
        return;
    }
    CHECK_STR(r, resp);
}

static void expect_decline(const pmd_config *cfg, const char *offer)
{
    char r[PMD_RESPONSE_MAX];
    pmd_params p;
    int ok = pmd_negotiate(cfg, offer, &p, r, sizeof(r));
    CHECK(ok == 0);
    if (ok)
        fprintf(stderr, "  accepted: %s -> %s\n", offer, r);
}

static void test_negotiate_accepts(void)
{
    pmd_config c = cfg_open();
    static const char *table[][2] = {
        {"permessage-deflate", "permessage-deflate"},
        {"permessage-deflate; client_max_window_bits", "permessage-deflate"},
        {"permessage-deflate; client_max_window_bits=10",
         "permessage-deflate; client_max_window_bits=10"},
        {"permessage-deflate; server_max_window_bits=10",
         "permessage-deflate; server_max_window_bits=10"},
        {"permessage-deflate; server_no_context_takeover",
         "permessage-deflate; server_no_context_takeover"},
        {"permessage-deflate; client_no_context_takeover",
         "permessage-deflate; client_no_context_takeover"},
        {"permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=9; client_max_window_bits=8",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=9; client_max_window_bits=8"},
        /* quoted values, escapes, whitespace, case */
        {"permessage-deflate; server_max_window_bits=\"12\"",
         "permessage-deflate; server_max_window_bits=12"},
        {"permessage-deflate; server_max_window_bits=\"1\\2\"",
         "permessage-deflate; server_max_window_bits=12"},
        {"  permessage-deflate ;server_max_window_bits = 11\t, x-foo",
         "permessage-deflate; server_max_window_bits=11"},
        {"PerMessage-Deflate; Server_Max_Window_Bits=9; CLIENT_MAX_WINDOW_BITS",
         "permessage-deflate; server_max_window_bits=9"},
        /* other extensions are skipped, even with odd parameters */
        {"x-webkit-deflate-frame, permessage-deflate", "permessage-deflate"},
        {"foo; server_max_window_bits=3; bar=\"a,b\", permessage-deflate; "
         "client_no_context_takeover",
         "permessage-deflate; client_no_context_takeover"},
        /* the first acceptable offer wins */
        {"permessage-deflate; server_max_window_bits=16, permessage-deflate; "
         "client_max_window_bits",
         "permessage-deflate"},
        {"permessage-deflate; server_max_window_bits=10, permessage-deflate",
         "permessage-deflate; server_max_window_bits=10"},
        {"permessage-deflate; foo, permessage-deflate; server_no_context_takeover",
         "permessage-deflate; server_no_context_takeover"},
        /* malformed offers are skipped to the next comma */
        {"permessage-deflate;;, permessage-deflate", "permessage-deflate"},
        {"=, permessage-deflate", "permessage-deflate"},
        {"permessage-deflate x, permessage-deflate", "permessage-deflate"},
        {", ,permessage-deflate,", "permessage-deflate"},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        expect_accept(&c, table[i][0], table[i][1]);
}

static void test_negotiate_declines(void)
{
    pmd_config c = cfg_open();
    static const char *table[] = {
        "",
        "x-webkit-deflate-frame",
        "permessage-deflate; foo",
        "permessage-deflate; foo=1",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=\"x\"",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=abc",
        "permessage-deflate; server_max_window_bits=\"\"",
        "permessage-deflate; server_max_window_bits=1000000000000000000015",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=\"1 0\"",
        "permessage-deflate; server_max_window_bits=\"10",
        "permessage-deflate; a=\"unterminated, permessage-deflate",
        "permessage-deflate; server_max_window_bits=10 11",
        "permessage-deflate = 1",
        "permessage-deflate-x",
        "deflate; permessage-deflate",
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        expect_decline(&c, table[i]);

    char r[PMD_RESPONSE_MAX];
    pmd_params p;
    CHECK(pmd_negotiate(&c, NULL, &p, r, sizeof(r)) == 0);
    c.enabled = 0;
    expect_decline(&c, "permessage-deflate");
    /* the response does not fit: declined, not cut */
    c.enabled = 1;
    CHECK(pmd_negotiate(&c, "permessage-deflate; server_no_context_takeover", &p, r, 20) == 0);
}

static void test_negotiate_limits(void)
{
    pmd_config c = cfg_open();
    c.client_max_window_bits = 10;
    /* The client cannot be limited unless it says it supports the parameter. */
    expect_decline(&c, "permessage-deflate");
    expect_accept(&c, "permessage-deflate, permessage-deflate; client_max_window_bits",
                  "permessage-deflate; client_max_window_bits=10");
    expect_accept(&c, "permessage-deflate; client_max_window_bits=9",
                  "permessage-deflate; client_max_window_bits=9");
    expect_accept(&c, "permessage-deflate; client_max_window_bits=12",
                  "permessage-deflate; client_max_window_bits=10");

    c = cfg_open();
    c.server_max_window_bits = 10;
    /* A smaller server window is announced even when not asked about. */
    expect_accept(&c, "permessage-deflate", "permessage-deflate; server_max_window_bits=10");
    expect_accept(&c, "permessage-deflate; server_max_window_bits=12",
                  "permessage-deflate; server_max_window_bits=10");
    expect_accept(&c, "permessage-deflate; server_max_window_bits=9",
                  "permessage-deflate; server_max_window_bits=9");

    /* The defaults ask for no context takeover both ways, whatever the offer. */
    pmd_config_default(&c);
    c.enabled = 1;
    expect_accept(&c, "permessage-deflate; client_max_window_bits",
                  "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    pmd_params p;
    char r[PMD_RESPONSE_MAX];
    c.mem_level = 5;
    c.level = 7;
    c.min_size = 100;
    CHECK(pmd_negotiate(&c, "permessage-deflate; server_max_window_bits=11", &p, r, sizeof(r)));
    CHECK(p.server_window_bits == 11 && p.client_window_bits == 15);
    CHECK(p.server_no_context_takeover && p.client_no_context_takeover);
    CHECK(p.mem_level == 5 && p.level == 7 && p.min_size == 100);
    CHECK(pmd_wants(&p, 100) && !pmd_wants(&p, 99));

    const char *why = NULL;
    CHECK(pmd_config_check(&c, &why) == 0 && why == NULL);
    c.server_max_window_bits = 16;
    CHECK(pmd_config_check(&c, &why) == -1 && why && strstr(why, "server_max_window_bits"));
    expect_decline(&c, "permessage-deflate");
    c.server_max_window_bits = 15;
    c.mem_level = 0;
    CHECK(pmd_config_check(&c, &why) == -1 && strstr(why, "mem_level"));
}

/* Many offers and a long header: the last one is found, nothing overruns
 * (the header is in an exact-size heap block for ASan). */
static void test_negotiate_long(void)
{
    pmd_config c = cfg_open();
    size_t cap = 200 * 40 + 64;
    char *h = malloc(cap);
    size_t n = 0;
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(h + n, cap - n, "permessage-deflate; x%d=\"%d\", ", i, i);
    n += (size_t)snprintf(h + n, cap - n, "permessage-deflate; server_max_window_bits=13");
    char *exact = malloc(n + 1);
    memcpy(exact, h, n + 1);
    expect_accept(&c, exact, "permessage-deflate; server_max_window_bits=13");
    /* cut at every length: never an overrun, whatever the answer */
    for (size_t cut = 0; cut <= n; cut += 7) {
        char *part = malloc(cut + 1);
        memcpy(part, exact, cut);
        part[cut] = '\0';
        char r[PMD_RESPONSE_MAX];
        pmd_params p;
        (void)pmd_negotiate(&c, part, &p, r, sizeof(r));
        free(part);
    }
    free(exact);
    free(h);
}

/* ---- messages ---- */

/* Ours to the client, with context takeover: the client's one inflater
 * reads every message, and a repeated message gets shorter. */
static void test_deflate_takeover(void)
{
    pmd_params p = params(15, 15, 0, 0);
    p.level = 6; /* level 1 finds few long matches */
    pmd_conn c;
    pmd_conn_init(&c, &p);
    z_stream zi;
    zinf_init(&zi, 15);
    char msg[1000];
    fill_text(msg, sizeof(msg), 1);
    size_t first = 0;
    for (int i = 0; i < 5; i++) {
        pmd_buf b = {0};
        long n = pmd_deflate(&c, NULL, (unsigned char *)msg, sizeof(msg), &b);
        CHECK(n > 0 && (size_t)n == b.len);
        if (i == 0)
            first = b.len;
        else
            CHECK(b.len < first / 4); /* the whole message is in the window */
        unsigned char out[2000];
        size_t m = client_inflate(&zi, b.data, b.len, out, sizeof(out));
        CHECK(m == sizeof(msg) && memcmp(out, msg, sizeof(msg)) == 0);
        free(b.data);
    }
    CHECK(c.def != NULL);
    inflateEnd(&zi);
    pmd_conn_release(&c);
    CHECK(pmd_conn_memory(&c) == 0);
}

/* Without server context takeover: identical messages compress
 * identically, each readable by a fresh inflater, and the connection
 * holds no deflater. */
static void test_deflate_no_takeover(void)
{
    pmd_shared *sh = pmd_shared_new();
    pmd_params p = params(12, 15, 1, 1);
    pmd_conn c;
    pmd_conn_init(&c, &p);
    char msg[700];
    fill_text(msg, sizeof(msg), 2);
    pmd_buf first = {0};
    for (int i = 0; i < 3; i++) {
        pmd_buf b = {0};
        CHECK(pmd_deflate(&c, sh, (unsigned char *)msg, sizeof(msg), &b) > 0);
        CHECK(pmd_conn_memory(&c) == 0);
        if (i == 0)
            first = b;
        else {
            CHECK(b.len == first.len && memcmp(b.data, first.data, b.len) == 0);
            free(b.data);
        }
        z_stream zi;
        zinf_init(&zi, 12);
        unsigned char out[1000];
        CHECK(client_inflate(&zi, first.data, first.len, out, sizeof(out)) == sizeof(msg));
        CHECK(memcmp(out, msg, sizeof(msg)) == 0);
        inflateEnd(&zi);
    }
    /* the shared path gives the same bytes, with room reserved in front */
    pmd_buf b = {0};
    b.data = malloc(10);
    b.cap = b.len = 10;
    long n = pmd_deflate_shared(sh, &p, (unsigned char *)msg, sizeof(msg), &b);
    CHECK(n == (long)first.len && b.len == 10 + first.len);
    CHECK(memcmp(b.data + 10, first.data, first.len) == 0);
    free(b.data);
    free(first.data);
    CHECK(pmd_shared_memory(sh) > (1u << 14)); /* one deflater, window 12 */
    pmd_shared_free(sh);
}

/* RFC 7692 7.2.3.1: "Hello" is f2 48 cd c9 c9 07 00; an empty message is
 * the single byte 00, with and without context. */
static void test_deflate_known_bytes(void)
{
    pmd_shared *sh = pmd_shared_new();
    for (int snct = 0; snct <= 1; snct++) {
        pmd_params p = params(15, 15, snct, 0);
        pmd_conn c;
        pmd_conn_init(&c, &p);
        for (int i = 0; i < 3; i++) {
            pmd_buf b = {0};
            long n = pmd_deflate(&c, sh, (const unsigned char *)"Hello", 5, &b);
            CHECK(n > 0 && (size_t)n == b.len);
            if (i == 0 || snct)
                CHECK(b.len == 7 && memcmp(b.data, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7) == 0);
            b.len = 0;
            CHECK(pmd_deflate(&c, sh, NULL, 0, &b) == 1);
            CHECK(b.len == 1 && b.data[0] == 0x00);
            b.len = 0;
            CHECK(pmd_deflate(&c, sh, NULL, 0, &b) == 1 && b.data[0] == 0x00);
            free(b.data);
        }
        pmd_conn_release(&c);
    }
    pmd_shared_free(sh);
}

/* Empty messages between others keep the client's context in step. */
static void test_deflate_empty_takeover(void)
{
    pmd_params p = params(15, 15, 0, 0);
    pmd_conn c;
    pmd_conn_init(&c, &p);
    z_stream zi;
    zinf_init(&zi, 15);
    char msg[300];
    fill_text(msg, sizeof(msg), 3);
    for (int i = 0; i < 6; i++) {
        int empty = i % 2;
        pmd_buf b = {0};
        CHECK(pmd_deflate(&c, NULL, (unsigned char *)msg, empty ? 0 : sizeof(msg), &b) > 0);
        unsigned char out[600];
        size_t m = client_inflate(&zi, b.data, b.len, out, sizeof(out));
        CHECK(m == (empty ? 0 : sizeof(msg)));
        CHECK(empty || memcmp(out, msg, sizeof(msg)) == 0);
        free(b.data);
    }
    inflateEnd(&zi);
    pmd_conn_release(&c);
}

/* The client's messages to us, with context takeover both ways and
 * without, and the connection's memory after each. */
static void test_inflate_round_trip(void)
{
    pmd_shared *sh = pmd_shared_new();
    for (int cnct = 0; cnct <= 1; cnct++) {
        pmd_params p = params(15, 11, 1, cnct);
        pmd_conn c;
        pmd_conn_init(&c, &p);
        z_stream zd;
        zdef_init(&zd, 11);
        char msg[1500]; /* within the 2 KiB window */
        fill_text(msg, sizeof(msg), 4);
        size_t lens[4] = {0};
        for (int i = 0; i < 4; i++) {
            unsigned char comp[2000];
            size_t n = client_deflate(&zd, msg, sizeof(msg), comp, sizeof(comp));
            lens[i] = n;
            if (cnct)
                deflateReset(&zd);
            pmd_buf out = {0};
            long m = pmd_inflate(&c, sh, comp, n, 1, 1 << 20, &out);
            CHECK(m == (long)sizeof(msg) && out.len == sizeof(msg));
            CHECK(memcmp(out.data, msg, sizeof(msg)) == 0);
            free(out.data);
            if (cnct)
                CHECK(pmd_conn_memory(&c) == 0);
            else
                CHECK(pmd_conn_memory(&c) > (1u << 11));
        }
        /* with takeover the repeats were sent as references */
        CHECK(cnct ? lens[3] == lens[0] : lens[3] < lens[0] / 4);
        deflateEnd(&zd);
        pmd_conn_release(&c);
        CHECK(pmd_conn_memory(&c) == 0);
    }
    pmd_shared_free(sh);
}

/* A message split into pieces at every position (and byte by byte) reads
 * the same, with and without a shared inflater, and the pieces' output
 * adds up to the message. */
static void test_inflate_fragments(void)
{
    char msg[200];
    fill_text(msg, sizeof(msg), 5);
    z_stream zd;
    zdef_init(&zd, 15);
    unsigned char comp[400];
    size_t n = client_deflate(&zd, msg, sizeof(msg), comp, sizeof(comp));
    deflateEnd(&zd);
    pmd_shared *sh = pmd_shared_new();
    pmd_params p = params(15, 15, 1, 1);
    for (size_t cut = 0; cut <= n; cut++) {
        pmd_conn c;
        pmd_conn_init(&c, &p);
        pmd_buf out = {0};
        long a = pmd_inflate(&c, sh, comp, cut, 0, 1 << 20, &out);
        CHECK(a >= 0 && (size_t)a == out.len);
        CHECK(pmd_conn_memory(&c) > 0); /* mid-message: its own stream */
        long b = pmd_inflate(&c, sh, comp + cut, n - cut, 1, 1 << 20, &out);
        CHECK(b >= 0 && (size_t)(a + b) == sizeof(msg));
        CHECK(out.len == sizeof(msg) && memcmp(out.data, msg, sizeof(msg)) == 0);
        CHECK(pmd_conn_memory(&c) == 0);
        free(out.data);
        pmd_conn_release(&c);
    }
    pmd_conn c;
    pmd_conn_init(&c, &p);
    pmd_buf out = {0};
    long total = 0;
    for (size_t i = 0; i < n; i++) {
        long r = pmd_inflate(&c, NULL, comp + i, 1, 0, 1 << 20, &out);
        CHECK(r >= 0);
        total += r;
    }
    long r = pmd_inflate(&c, NULL, NULL, 0, 1, 1 << 20, &out); /* an empty final frame */
    CHECK(r >= 0 && total + r == (long)sizeof(msg));
    CHECK(out.len == sizeof(msg) && memcmp(out.data, msg, sizeof(msg)) == 0);
    free(out.data);
    pmd_conn_release(&c);
    pmd_shared_free(sh);
}

/* The examples of RFC 7692 7.2.3; a block with BFINAL set followed by 0x00
 * or not; an empty message as 0x00 or as no byte at all. */
static void test_inflate_known_bytes(void)
{
    static const struct {
        const char *in;
        size_t len;
        const char *want;
    } table[] = {
        {"\xf2\x48\xcd\xc9\xc9\x07\x00", 7, "Hello"},
        {"\xf3\x48\xcd\xc9\xc9\x07\x00\x00", 8, "Hello"},
        {"\xf3\x48\xcd\xc9\xc9\x07\x00", 7, "Hello"},
        {"\x00", 1, ""},
        {"", 0, ""},
        /* 7.2.3.5: two blocks, a sync flush between them */
        {"\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00", 13, "Hello"},
        /* 7.2.3.3: a stored block, with the flush's 0x00 and without */
        {"\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00", 11, "Hello"},
        {"\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f", 10, "Hello"},
    };
    pmd_params p = params(15, 15, 0, 0);
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        pmd_conn c;
        pmd_conn_init(&c, &p);
        for (int rep = 0; rep < 2; rep++) { /* and again on the same stream */
            pmd_buf out = {0};
            long n = pmd_inflate(&c, NULL, (const unsigned char *)table[i].in, table[i].len, 1,
                                 1000, &out);
            CHECK(n == (long)strlen(table[i].want));
            CHECK(out.len == strlen(table[i].want));
            CHECK(out.len == 0 || memcmp(out.data, table[i].want, out.len) == 0);
            free(out.data);
        }
        pmd_conn_release(&c);
    }
    /* one stream with context: empty payloads between messages */
    pmd_conn c;
    pmd_conn_init(&c, &p);
    for (size_t i = 0; i < 8; i++) {
        size_t k = i % 4 == 0 ? 0 : i % 4 == 1 ? 3 : i % 4 == 2 ? 4 : 1;
        pmd_buf out = {0};
        long n =
            pmd_inflate(&c, NULL, (const unsigned char *)table[k].in, table[k].len, 1, 1000, &out);
        CHECK(n == (long)strlen(table[k].want));
        free(out.data);
    }
    pmd_conn_release(&c);
    /* 7.2.3.2: the second "Hello" refers to the first */
    pmd_conn_init(&c, &p);
    for (int i = 0; i < 2; i++) {
        pmd_buf out = {0};
        const char *in = i ? "\xf2\x00\x11\x00\x00" : "\xf2\x48\xcd\xc9\xc9\x07\x00";
        CHECK(pmd_inflate(&c, NULL, (const unsigned char *)in, i ? 5 : 7, 1, 1000, &out) == 5);
        CHECK(out.len == 5 && memcmp(out.data, "Hello", 5) == 0);
        free(out.data);
    }
    pmd_conn_release(&c);
}

static void test_inflate_corrupt(void)
{
    char msg[500];
    fill_text(msg, sizeof(msg), 6);
    z_stream zd;
    zdef_init(&zd, 15);
    unsigned char comp[600];
    size_t n = client_deflate(&zd, msg, sizeof(msg), comp, sizeof(comp));
    deflateEnd(&zd);
    static const struct {
        const char *in;
        size_t len;
    } bad[] = {
        {"\xff\xff\xff\xff", 4},     /* block type 3 */
        {"\x00\x05\x00\x00\x00", 5}, /* stored block, LEN and NLEN disagree */
        {"\xf2\x48", 2},             /* stops inside a block */
        {"\xfd\xff\xff", 3},         /* a dynamic block with 288 literal codes */
    };
    pmd_shared *sh = pmd_shared_new();
    for (int cnct = 0; cnct <= 1; cnct++) {
        pmd_params p = params(15, 15, 1, cnct);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            pmd_conn c;
            pmd_conn_init(&c, &p);
            pmd_buf out = {0};
            long r =
                pmd_inflate(&c, sh, (const unsigned char *)bad[i].in, bad[i].len, 1, 1000, &out);
            CHECK(r == PMD_CORRUPT);
            if (r != PMD_CORRUPT)
                fprintf(stderr, "  bad[%zu] cnct=%d -> %ld\n", i, cnct, r);
            CHECK(pmd_conn_memory(&c) == 0);
            free(out.data);
            pmd_conn_release(&c);
        }
        /* a real message cut short */
        pmd_conn c;
        pmd_conn_init(&c, &p);
        pmd_buf out = {0};
        CHECK(pmd_inflate(&c, sh, comp, n / 2, 1, 1 << 20, &out) == PMD_CORRUPT);
        free(out.data);
        pmd_conn_release(&c);
    }
    /* the shared inflater still works after the errors */
    pmd_params p = params(15, 15, 1, 1);
    pmd_conn c;
    pmd_conn_init(&c, &p);
    pmd_buf out = {0};
    CHECK(pmd_inflate(&c, sh, comp, n, 1, 1 << 20, &out) == (long)sizeof(msg));
    CHECK(memcmp(out.data, msg, sizeof(msg)) == 0);
    free(out.data);
    pmd_shared_free(sh);
}

/* 10 MiB of zeros (about 10 KB compressed) against a ~1 MB limit: stopped
 * with PMD_TOO_BIG, the buffer never past the limit; exactly the limit is
 * allowed. */
static void test_inflate_bomb(void)
{
    size_t big = 10u << 20, max = 1000000; /* not a power of two: the cap is clamped */
    unsigned char *zeros = calloc(1, big);
    unsigned char *comp = malloc(big / 100);
    z_stream zd;
    zdef_init(&zd, 15);
    size_t n = client_deflate(&zd, zeros, big, comp, big / 100);
    deflateEnd(&zd);
    CHECK(n < 20000);
    pmd_shared *sh = pmd_shared_new();
    for (int cnct = 0; cnct <= 1; cnct++) {
        pmd_params p = params(15, 15, 1, cnct);
        pmd_conn c;
        pmd_conn_init(&c, &p);
        pmd_buf out = {0};
        CHECK(pmd_inflate(&c, sh, comp, n, 1, max, &out) == PMD_TOO_BIG);
        CHECK(out.len <= max && out.cap <= max);
        free(out.data);
        /* in pieces, the error comes with the piece that passes the limit */
        pmd_buf o2 = {0};
        long r = 0;
        size_t off = 0;
        while (off < n && r >= 0) {
            size_t k = n - off < 512 ? n - off : 512;
            r = pmd_inflate(&c, sh, comp + off, k, off + k == n, max, &o2);
            off += k;
        }
        CHECK(r == PMD_TOO_BIG && off < n);
        CHECK(o2.len <= max && o2.cap <= max);
        CHECK(pmd_conn_memory(&c) == 0);
        free(o2.data);
        pmd_conn_release(&c);
    }
    /* exactly max_message inflates; one byte less of limit is too big */
    z_stream z2;
    zdef_init(&z2, 15);
    n = client_deflate(&z2, zeros, max, comp, big / 100);
    deflateEnd(&z2);
    pmd_params p = params(15, 15, 1, 1);
    pmd_conn c;
    pmd_conn_init(&c, &p);
    pmd_buf out = {0};
    CHECK(pmd_inflate(&c, sh, comp, n, 1, max, &out) == (long)max);
    CHECK(out.cap == max);
    out.len = 0;
    CHECK(pmd_inflate(&c, sh, comp, n, 1, max - 1, &out) == PMD_TOO_BIG);
    out.len = 0;
    CHECK(pmd_inflate(&c, sh, (const unsigned char *)"\x00", 1, 1, 0, &out) == 0);
    free(out.data);
    pmd_shared_free(sh);
    free(comp);
    free(zeros);
}

/* Window bits 8: our deflater (made with 9) never refers further back than
 * 256 bytes, and our 8-bit inflater reads a 9-bit zlib client. */
static void test_window_bits_8(void)
{
    pmd_config cfg = cfg_open();
    pmd_params p;
    char r[PMD_RESPONSE_MAX];
    CHECK(pmd_negotiate(&cfg,
                        "permessage-deflate; server_max_window_bits=8; client_max_window_bits=8",
                        &p, r, sizeof(r)));
    CHECK(p.server_window_bits == 8 && p.client_window_bits == 8);
    pmd_params p9 = p;
    p9.server_window_bits = 9;
    p.server_no_context_takeover = p9.server_no_context_takeover = 1;
    CHECK(pmd_params_key(&p) == pmd_params_key(&p9));

    /* repeats at distances 200 (usable) and 300 (beyond the window) */
    char msg[6000];
    for (size_t i = 0; i < sizeof(msg); i++) {
        unsigned x = (unsigned)(i % (i < 3000 ? 200 : 300)) * 2654435761u;
        msg[i] = (char)('a' + (x >> 27));
    }
    for (int snct = 0; snct <= 1; snct++) {
        pmd_shared *sh = pmd_shared_new();
        p.server_no_context_takeover = (uint8_t)snct;
        pmd_conn c;
        pmd_conn_init(&c, &p);
        z_stream zi;
        zinf_init(&zi, 8);
        for (int i = 0; i < 3; i++) {
            pmd_buf b = {0};
            CHECK(pmd_deflate(&c, sh, (unsigned char *)msg, sizeof(msg), &b) > 0);
            CHECK(b.len < sizeof(msg) / 2);
            unsigned char *out = malloc(sizeof(msg));
            CHECK(client_inflate(&zi, b.data, b.len, out, sizeof(msg)) == sizeof(msg));
            CHECK(memcmp(out, msg, sizeof(msg)) == 0);
            free(out);
            free(b.data);
        }
        inflateEnd(&zi);
        pmd_conn_release(&c);
        pmd_shared_free(sh);
    }
    /* client side: zlib with 9 bits (it refuses 8), we inflate with 8 */
    pmd_conn c;
    p.client_no_context_takeover = 0;
    pmd_conn_init(&c, &p);
    z_stream zd;
    zdef_init(&zd, 9);
    for (int i = 0; i < 3; i++) {
        unsigned char comp[7000];
        size_t n = client_deflate(&zd, msg, sizeof(msg), comp, sizeof(comp));
        pmd_buf out = {0};
        CHECK(pmd_inflate(&c, NULL, comp, n, 1, 1 << 20, &out) == (long)sizeof(msg));
        CHECK(out.len == sizeof(msg) && memcmp(out.data, msg, sizeof(msg)) == 0);
        free(out.data);
    }
    deflateEnd(&zd);
    pmd_conn_release(&c);
}

/* Broadcast keys: equal exactly when the compressed bytes are; more
 * parameter sets than shared deflaters still compress right. */
static void test_keys_and_shared(void)
{
    pmd_params a = params(15, 15, 1, 1), b = params(15, 10, 1, 0);
    CHECK(pmd_params_key(&a) != 0 && pmd_params_key(&a) == pmd_params_key(&b));
    b.level = 2;
    CHECK(pmd_params_key(&a) != pmd_params_key(&b));
    b = a;
    b.mem_level = 7;
    CHECK(pmd_params_key(&a) != pmd_params_key(&b));
    b = a;
    b.server_window_bits = 14;
    CHECK(pmd_params_key(&a) != pmd_params_key(&b));
    b = a;
    b.server_no_context_takeover = 0;
    CHECK(pmd_params_key(&b) == 0);
    pmd_buf o = {0};
    CHECK(pmd_deflate_shared(NULL, &a, (const unsigned char *)"x", 1, &o) == PMD_NOMEM);

    pmd_shared *sh = pmd_shared_new();
    char msg[2000];
    fill_text(msg, sizeof(msg), 7);
    for (int round = 0; round < 3; round++) {
        for (int bits = 9; bits <= 15; bits++) {
            pmd_params p = params(bits, 15, 1, 1);
            pmd_buf out = {0};
            CHECK(pmd_deflate_shared(sh, &p, (unsigned char *)msg, sizeof(msg), &out) > 0);
            z_stream zi;
            zinf_init(&zi, bits);
            unsigned char back[2100];
            CHECK(client_inflate(&zi, out.data, out.len, back, sizeof(back)) == sizeof(msg));
            CHECK(memcmp(back, msg, sizeof(msg)) == 0);
            inflateEnd(&zi);
            free(out.data);
        }
    }
    /* at most PMD_SHARED_DEFLATERS deflaters of window <= 15 are kept */
    size_t per = (1u << 17) + (1u << 17) + 16384;
    CHECK(pmd_shared_memory(sh) < PMD_SHARED_DEFLATERS * per);
    pmd_shared_free(sh);
}

/* What a connection holds: nothing idle without context takeover; with it,
 * zlib's documented figure plus its state.  Prints the figures. */
static void test_memory(void)
{
    pmd_shared *sh = pmd_shared_new();
    char msg[4000];
    fill_text(msg, sizeof(msg), 8);
    static const int sets[][2] = {{15, 8}, {15, 9}, {13, 6}, {12, 5}, {10, 4}, {9, 1}};
    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
        int bits = sets[i][0], ml = sets[i][1];
        for (int takeover = 0; takeover <= 1; takeover++) {
            pmd_params p = params(bits, bits, !takeover, !takeover);
            p.mem_level = (uint8_t)ml;
            pmd_conn c;
            pmd_conn_init(&c, &p);
            CHECK(pmd_conn_memory(&c) == 0);
            pmd_buf out = {0};
            CHECK(pmd_deflate(&c, sh, (unsigned char *)msg, sizeof(msg), &out) > 0);
            size_t after_deflate = pmd_conn_memory(&c);
            z_stream zd;
            zdef_init(&zd, bits < 9 ? 9 : bits);
            unsigned char comp[5000];
            size_t n = client_deflate(&zd, msg, sizeof(msg), comp, sizeof(comp));
            deflateEnd(&zd);
            out.len = 0;
            CHECK(pmd_inflate(&c, sh, comp, n, 1, 1 << 20, &out) == (long)sizeof(msg));
            size_t total = pmd_conn_memory(&c);
            free(out.data);
            if (!takeover) {
                CHECK(total == 0);
            } else {
                size_t def_zlib = (1u << (bits + 2)) + (1u << (ml + 9));
                size_t inf_zlib = 1u << bits;
                CHECK(after_deflate >= def_zlib && after_deflate <= def_zlib + 8192);
                size_t inf = total - after_deflate;
                CHECK(inf >= inf_zlib && inf <= inf_zlib + 8192);
                printf("memory: window %2d mem_level %d: deflater %zu B, inflater %zu B\n", bits,
                       ml, after_deflate, inf);
            }
            pmd_conn_release(&c);
        }
    }
    printf("memory: shared streams after the above: %zu B\n", pmd_shared_memory(sh));
    pmd_shared_free(sh);
}

TEST_MAIN("pmd", T(test_negotiate_accepts), T(test_negotiate_declines), T(test_negotiate_limits),
          T(test_negotiate_long), T(test_deflate_takeover), T(test_deflate_no_takeover),
          T(test_deflate_known_bytes), T(test_deflate_empty_takeover), T(test_inflate_round_trip),
          T(test_inflate_fragments), T(test_inflate_known_bytes), T(test_inflate_corrupt),
          T(test_inflate_bomb), T(test_window_bits_8), T(test_keys_and_shared), T(test_memory))
