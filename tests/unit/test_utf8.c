/* test_utf8.c — utf8.c: strict UTF-8 validation (RFC 3629 as RFC 6455
 * requires).  Named cases: ASCII, 2/3/4-byte sequences, the code point
 * boundaries, overlongs, surrogates, values above U+10FFFF, stray
 * continuation bytes, truncation, bytes that never occur.  Then the 8-byte
 * ASCII fast path with one bad byte at every offset, and a comparison with
 * an independent decoder over every 1-, 2- and 3-byte input and a grid of
 * 4-byte ones.
 *
 * Every input is copied into a heap block of exactly its length, so a read
 * past the end shows up under AddressSanitizer. */

#include "utf8.h"
#include "testlib.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* utf8_valid on an exact-size heap copy of s[0..len). */
static int valid_exact(const void *s, size_t len)
{
    unsigned char *p = calloc(1, len ? len : 1);
    if (!p) {
        perror("malloc");
        exit(2);
    }
    if (len)
        memcpy(p, s, len);
    int r = utf8_valid(len ? p : p + 1, len); /* p + 1: nothing readable at 0 bytes */
    free(p);
    return r != 0;
}

static void expect(const char *what, const char *s, size_t len, int want)
{
    int got = valid_exact(s, len);
    CHECK(got == want);
    if (got != want)
        fprintf(stderr, "  case: %s (expected %s)\n", what, want ? "valid" : "invalid");
}

/* Literal with its exact length (embedded NULs included). */
#define OK(what, lit) expect(what, lit, sizeof(lit) - 1, 1)
#define BAD(what, lit) expect(what, lit, sizeof(lit) - 1, 0)

/* ---------------------------------------------------------- named cases */

static void test_empty(void)
{
    CHECK(valid_exact("", 0) == 1);
    CHECK(utf8_valid(NULL, 0) != 0);
}

static void test_ascii(void)
{
    OK("one letter", "a");
    OK("sentence", "Hello, world! 0123456789 ~");
    OK("NUL byte", "\x00");
    OK("NULs inside", "a\x00"
                      "b\x00\x00"
                      "c");
    OK("DEL", "\x7f");
    OK("control bytes", "\x01\x09\x0a\x0d\x1f");
}

static void test_valid_multibyte(void)
{
    OK("2-byte: e acute", "\xc3\xa9");
    OK("2-byte: pound", "\xc2\xa3");
    OK("3-byte: euro", "\xe2\x82\xac");
    OK("3-byte: CJK", "\xe4\xb8\xad\xe6\x96\x87");
    OK("3-byte: U+E000 after surrogates", "\xee\x80\x80");
    OK("3-byte: U+D7FF before surrogates", "\xed\x9f\xbf");
    OK("3-byte: BOM", "\xef\xbb\xbf");
    OK("4-byte: emoji", "\xf0\x9f\x98\x80");
    OK("4-byte: U+100000", "\xf4\x80\x80\x80");
    OK("mixed", "a\xc3\xa9"
                "b\xe2\x82\xac"
                "c\xf0\x9f\x98\x80"
                "d");
}

static void test_boundaries(void)
{
    OK("U+0000", "\x00");
    OK("U+007F", "\x7f");
    OK("U+0080", "\xc2\x80");
    OK("U+07FF", "\xdf\xbf");
    OK("U+0800", "\xe0\xa0\x80");
    OK("U+FFFF", "\xef\xbf\xbf");
    OK("U+10000", "\xf0\x90\x80\x80");
    OK("U+10FFFF", "\xf4\x8f\xbf\xbf");
    OK("all boundaries in a row", "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf"
                                  "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf");
}

static void test_overlongs(void)
{
    BAD("C0 80 (overlong U+0000)", "\xc0\x80");
    BAD("C0 AF (overlong '/')", "\xc0\xaf");
    BAD("C1 BF (overlong U+007F)", "\xc1\xbf");
    BAD("E0 80 80 (overlong U+0000)", "\xe0\x80\x80");
    BAD("E0 9F BF (overlong U+07FF)", "\xe0\x9f\xbf");
    BAD("F0 80 80 80 (overlong U+0000)", "\xf0\x80\x80\x80");
    BAD("F0 8F BF BF (overlong U+FFFF)", "\xf0\x8f\xbf\xbf");
    BAD("overlong after valid text", "abc\xc0\x80");
}

static void test_surrogates(void)
{
    BAD("ED A0 80 (U+D800)", "\xed\xa0\x80");
    BAD("ED AD BF (U+DB7F)", "\xed\xad\xbf");
    BAD("ED B0 80 (U+DC00)", "\xed\xb0\x80");
    BAD("ED BF BF (U+DFFF)", "\xed\xbf\xbf");
    BAD("surrogate pair as CESU-8", "\xed\xa0\xbd\xed\xb8\x80");
}

static void test_above_max(void)
{
    BAD("F4 90 80 80 (U+110000)", "\xf4\x90\x80\x80");
    BAD("F4 BF BF BF", "\xf4\xbf\xbf\xbf");
    BAD("F5 80 80 80", "\xf5\x80\x80\x80");
    BAD("F7 BF BF BF (U+1FFFFF)", "\xf7\xbf\xbf\xbf");
}

static void test_stray_and_never_bytes(void)
{
    BAD("lone continuation 80", "\x80");
    BAD("lone continuation BF", "\xbf");
    BAD("continuation after ASCII", "a\x80");
    BAD("extra continuation after 2-byte", "\xc3\xa9\xa9");
    BAD("extra continuation after 4-byte", "\xf0\x9f\x98\x80\x80");
    char never[2] = {0, 0};
    for (int b = 0xF5; b <= 0xFF; b++) {
        never[0] = (char)b;
        expect("byte F5..FF alone", never, 1, 0);
        char seq[4] = {(char)b, (char)0x80, (char)0x80, (char)0x80};
        expect("byte F5..FF + continuations", seq, 4, 0);
    }
    BAD("FE", "\xfe");
    BAD("FF", "\xff");
    BAD("C0 alone", "\xc0");
}

static void test_truncated(void)
{
    /* At the end of the buffer. */
    BAD("2-byte lead only", "\xc3");
    BAD("3-byte, 1 of 3", "\xe2");
    BAD("3-byte, 2 of 3", "\xe2\x82");
    BAD("4-byte, 1 of 4", "\xf0");
    BAD("4-byte, 2 of 4", "\xf0\x9f");
    BAD("4-byte, 3 of 4", "\xf0\x9f\x98");
    BAD("valid text then 3 of 4", "hello \xf0\x9f\x98");
    BAD("valid 2-byte then lead", "\xc3\xa9\xc3");
    /* Cut short by the next character. */
    BAD("2-byte then ASCII", "\xc3"
                             "a");
    BAD("3-byte, 2 of 3 then ASCII", "\xe2\x82"
                                     "a");
    BAD("4-byte, 3 of 4 then ASCII", "\xf0\x9f\x98"
                                     "a");
    BAD("4-byte, 2 of 4 then a new lead", "\xf0\x9f\xc3\xa9");
    BAD("3-byte then NUL", "\xe2\x82\x00");
    /* A valid sequence whose length field says more than the input holds. */
    const char euro[] = "\xe2\x82\xac";
    for (size_t n = 1; n < 3; n++)
        expect("euro cut short", euro, n, 0);
    expect("euro whole", euro, 3, 1);
}

/* ----------------------------------------------------------- fast path */

/* A long ASCII buffer with one bad byte at every offset, at several
 * lengths and starting alignments. */
static void test_fast_path_bad_byte(void)
{
    const unsigned char bad[] = {0x80, 0xC0, 0xFF, 0xC3, 0xED};
    size_t failures = 0, runs = 0;

    for (size_t len = 1; len <= 80; len++) {
        for (size_t align = 0; align < 8; align++) {
            unsigned char *mem = malloc(align + len);
            if (!mem) {
                perror("malloc");
                exit(2);
            }
            unsigned char *buf = mem + align;
            memset(buf, 'x', len);
            /* Clean buffer is valid, whatever its length or alignment. */
            runs++;
            failures += utf8_valid(buf, len) == 0;
            for (size_t at = 0; at < len; at++) {
                for (size_t k = 0; k < sizeof(bad); k++) {
                    buf[at] = bad[k];
                    runs++;
                    failures += utf8_valid(buf, len) != 0;
                }
                buf[at] = 'x';
            }
            free(mem);
        }
    }
    CHECK(runs > 100000);
    CHECK(failures == 0);
}

/* A valid multi-byte character at every offset of a long ASCII buffer (the
 * fast path must hand over mid-word and pick up again after it). */
static void test_fast_path_valid_char(void)
{
    static const char *const chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    size_t failures = 0, runs = 0;

    for (size_t c = 0; c < 3; c++) {
        size_t cl = strlen(chars[c]);
        for (size_t len = cl; len <= 70; len++) {
            for (size_t at = 0; at + cl <= len; at++) {
                unsigned char *buf = malloc(len);
                if (!buf) {
                    perror("malloc");
                    exit(2);
                }
                memset(buf, 'y', len);
                memcpy(buf + at, chars[c], cl);
                runs++;
                failures += utf8_valid(buf, len) == 0;
                /* Corrupt its last continuation byte: invalid. */
                buf[at + cl - 1] = 'y';
                runs++;
                failures += utf8_valid(buf, len) != 0;
                /* Drop its last byte by ending the buffer there: truncated. */
                buf[at + cl - 1] = (unsigned char)chars[c][cl - 1];
                runs++;
                failures += utf8_valid(buf, at + cl - 1) != 0;
                free(buf);
            }
        }
    }
    CHECK(runs > 5000);
    CHECK(failures == 0);
}

/* ------------------------------------------------ independent reference */

#include "ref_utf8.h"

/* Every 1-, 2- and 3-byte input. */
static void test_exhaustive_short(void)
{
    size_t disagree = 0, valid3 = 0;
    unsigned char *p = malloc(3);
    if (!p) {
        perror("malloc");
        exit(2);
    }
    for (unsigned a = 0; a < 256; a++) {
        p[2] = (unsigned char)a;
        disagree += (utf8_valid(p + 2, 1) != 0) != ref_valid(p + 2, 1);
        for (unsigned b = 0; b < 256; b++) {
            p[1] = (unsigned char)a;
            p[2] = (unsigned char)b;
            disagree += (utf8_valid(p + 1, 2) != 0) != ref_valid(p + 1, 2);
            for (unsigned c = 0; c < 256; c++) {
                p[0] = (unsigned char)a;
                p[1] = (unsigned char)b;
                p[2] = (unsigned char)c;
                int r = ref_valid(p, 3);
                valid3 += (size_t)r;
                disagree += (utf8_valid(p, 3) != 0) != r;
            }
        }
    }
    free(p);
    CHECK(disagree == 0);
    /* Sanity of the reference itself: 3-byte strings that are valid are
     * ASCII^3, ASCII+2-byte twice, and 3-byte chars minus surrogates. */
    CHECK(valid3 == 128u * 128 * 128 + 2 * 128 * 1920 + (63488 - 2048));
}

/* 4-byte inputs over a grid of interesting byte values. */
static void test_grid_four(void)
{
    static const unsigned char v[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0,
                                      0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF,
                                      0xF0, 0xF3, 0xF4, 0xF5, 0xF7, 0xF8, 0xFE, 0xFF};
    const size_t nv = sizeof(v) / sizeof(v[0]);
    size_t disagree = 0, valid = 0;
    unsigned char *p = malloc(4);
    if (!p) {
        perror("malloc");
        exit(2);
    }
    for (size_t a = 0; a < nv; a++)
        for (size_t b = 0; b < nv; b++)
            for (size_t c = 0; c < nv; c++)
                for (size_t d = 0; d < nv; d++) {
                    p[0] = v[a], p[1] = v[b], p[2] = v[c], p[3] = v[d];
                    int r = ref_valid(p, 4);
                    valid += (size_t)r;
                    disagree += (utf8_valid(p, 4) != 0) != r;
                }
    free(p);
    CHECK(disagree == 0);
    CHECK(valid > 1000);
}

/* The word-at-a-time ASCII paths hand over to the byte checks at every
 * offset: a multi-byte sequence after 0..80 ASCII bytes, and ASCII after it. */
static void test_ascii_runs_then_multibyte(void)
{
    unsigned char buf[160];
    for (size_t n = 0; n <= 80; n++) {
        memset(buf, 'A', n);
        memcpy(buf + n, "\xC3\xA9", 2);
        CHECK(utf8_valid(buf, n + 2));
        CHECK(!utf8_valid(buf, n + 1)); /* truncated */
        memcpy(buf + n, "\xED\xA0\x80", 3);
        CHECK(!utf8_valid(buf, n + 3)); /* surrogate */
        memcpy(buf + n, "\xE2\x82\xAC", 3);
        memset(buf + n + 3, 'B', 40);
        CHECK(utf8_valid(buf, n + 43));
        buf[n + 3 + 39] = 0xFF;
        CHECK(!utf8_valid(buf, n + 43)); /* bad byte at the end of a run */
    }
}

/* Long inputs (the 64-byte AVX2 scan): a bad byte, a valid 2-byte
 * character and a truncated one at every offset of buffers around and past
 * the 64-byte steps. */
static void test_long_runs(void)
{
    static const size_t lens[] = {64, 65, 127, 128, 129, 200, 1000};
    unsigned char buf[1000 + 4];
    for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
        size_t n = lens[l];
        for (size_t at = 0; at < n; at++) {
            memset(buf, 'a', n);
            buf[at] = 0xFF;
            CHECK(!valid_exact(buf, n));
            memset(buf, 'a', n);
            if (at + 1 < n) {
                memcpy(buf + at, "\xC3\xA9", 2);
                CHECK(valid_exact(buf, n));
            } else {
                buf[at] = 0xC3; /* truncated at the very end */
                CHECK(!valid_exact(buf, n));
            }
        }
        memset(buf, 'a', n);
        CHECK(valid_exact(buf, n));
    }
}


/* ------------------------------------------------------------ in pieces */

/* Could some bytes after p[0..n) make it valid?  p's last character may
 * be unfinished: try every ending of it (at most two bytes are tried
 * exhaustively; a lone lead byte is judged by the reference alone). */
static int ref_completable(const unsigned char *p, size_t n)
{
    if (ref_valid(p, n))
        return 1;
    unsigned char buf[32];
    memcpy(buf, p, n);
    for (size_t extra = 1; extra <= 3; extra++) {
        if (extra == 3) { /* only a lead byte can want three more */
            memcpy(buf + n, "\x90\x80\x80", 3);
            if (n && ref_valid(buf, n - 1) && p[n - 1] >= 0xF0 && p[n - 1] <= 0xF4)
                return 1;
            continue;
        }
        for (unsigned a = 0x80; a <= 0xBF; a++)
            for (unsigned b = 0x80; b <= (extra == 2 ? 0xBFu : 0x80u); b++) {
                buf[n] = (unsigned char)a;
                buf[n + 1] = (unsigned char)b;
                if (ref_valid(buf, n + extra))
                    return 1;
            }
    }
    return 0;
}

/* Random texts from the bytes that matter: fed one byte at a time,
 * utf8_step fails at the first byte after which no ending could make the
 * text valid (no sooner, no later); fed in two or three pieces cut
 * anywhere, it agrees with the reference on the whole. */
static void test_step_fails_fast(void)
{
    static const unsigned char alpha[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
                                          0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEE, 0xEF, 0xF0,
                                          0xF1, 0xF4, 0xF5, 0xFF};
    uint32_t seed = 12345;
    unsigned char t[12];
    for (int iter = 0; iter < 60000; iter++) {
        seed = seed * 1103515245u + 12345u;
        size_t n = 1 + (seed >> 16) % sizeof t;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            t[i] = alpha[(seed >> 16) % sizeof alpha];
        }
        uint8_t st = 0;
        size_t fail_at = n;
        for (size_t i = 0; i < n; i++)
            if (!utf8_step(&st, t + i, 1)) {
                fail_at = i;
                break;
            }
        size_t want_at = n;
        for (size_t i = 0; i < n; i++)
            if (!ref_completable(t, i + 1)) {
                want_at = i;
                break;
            }
        CHECK(fail_at == want_at);
        if (fail_at != want_at)
            fprintf(stderr, "  failed at %zu, reference at %zu (len %zu)\n", fail_at, want_at, n);
        int whole = ref_valid(t, n);
        for (size_t a = 0; a <= n; a++)
            for (size_t b = a; b <= n; b++) {
                uint8_t s2 = 0;
                int ok = utf8_step(&s2, t, a) && utf8_step(&s2, t + a, b - a) &&
                         utf8_step(&s2, t + b, n - b) && s2 == 0;
                CHECK(ok == whole);
            }
    }
}

TEST_MAIN("utf8", T(test_step_fails_fast), T(test_long_runs), T(test_ascii_runs_then_multibyte), T(test_empty),
          T(test_ascii), T(test_valid_multibyte), T(test_boundaries), T(test_overlongs),
          T(test_surrogates), T(test_above_max), T(test_stray_and_never_bytes), T(test_truncated),
          T(test_fast_path_bad_byte), T(test_fast_path_valid_char), T(test_exhaustive_short),
          T(test_grid_four))
