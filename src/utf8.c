/* utf8.c — strict UTF-8 validation with an ASCII fast path. */
#include "utf8.h"

#include <stdint.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>

/* Length of the all-ASCII prefix, 64 bytes at a time (AVX2), rounded down
 * to a multiple of 64: long text messages are mostly ASCII, and with only
 * the narrower loops below checking them was a large share of their cost. */
__attribute__((target("avx2"))) static size_t utf8_ascii_avx2(const unsigned char *s, size_t len)
{
    size_t i = 0;
    for (; i + 64 <= len; i += 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(s + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(s + i + 32));
        if (_mm256_movemask_epi8(_mm256_or_si256(a, b)))
            break;
    }
    return i;
}
#endif

static size_t utf8_ascii_prefix(const unsigned char *s, size_t len)
{
#if defined(__x86_64__)
    if (len >= 64 && __builtin_cpu_supports("avx2"))
        return utf8_ascii_avx2(s, len);
#endif
    (void)s;
    (void)len;
    return 0;
}

/* Sixteen bytes, all ASCII? */
static int utf8_ascii16(const unsigned char *p)
{
#if defined(__x86_64__)
    return _mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(const void *)p)) == 0;
#else
    uint64_t w[2];
    memcpy(w, p, 16);
    return !((w[0] | w[1]) & 0x8080808080808080ULL);
#endif
}

int utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = utf8_ascii_prefix(s, len);
    while (i < len) {
        /* Sixteen ASCII bytes at a time (the width wsrx unmasks with, see
         * wsrx_unmask), then eight. */
        while (i + 16 <= len && utf8_ascii16(s + i))
            i += 16;
        if (i >= len)
            break;
        if (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0)
                lo = 0xA0; /* no overlongs */
            if (c == 0xED)
                hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0)
                lo = 0x90;
            if (c == 0xF4)
                hi = 0x8F; /* <= U+10FFFF */
        } else {
            return 0;
        }
        if (i + n >= len) /* truncated sequence */
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        i += n + 1;
    }
    return 1;
}

/* ---- in pieces ----
 *
 * The state: bits 0-1 the continuation bytes still owed by the character
 * that began in an earlier piece, bits 2-4 which range the next one must
 * be in (the second byte of E0, ED, F0 and F4 is narrower than 80..BF). */

static const unsigned char utf8_lo[] = {0x80, 0xA0, 0x80, 0x90, 0x80};
static const unsigned char utf8_hi[] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};

/* A lead byte: the continuation bytes it needs and the range of the
 * first, or 0 if it cannot begin a character. */
static unsigned utf8_lead(unsigned char c, unsigned *range)
{
    *range = 0;
    if (c >= 0xC2 && c <= 0xDF)
        return 1;
    if (c >= 0xE0 && c <= 0xEF) {
        *range = c == 0xE0 ? 1 : c == 0xED ? 2 : 0;
        return 2;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        *range = c == 0xF0 ? 3 : c == 0xF4 ? 4 : 0;
        return 3;
    }
    return 0;
}

/* Where the character that p[0..n) ends inside of begins (n if none). */
static size_t utf8_tail(const unsigned char *p, size_t n)
{
    for (size_t k = n; k > 0 && n - k < 4;) {
        unsigned char c = p[--k];
        if (c < 0x80)
            return n;
        if (c >= 0xC0) {
            size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            return n - k < need ? k : n;
        }
    }
    return n;
}

int utf8_step(uint8_t *state, const unsigned char *p, size_t n)
{
    unsigned need = *state & 3, range = *state >> 2;
    size_t i = 0;
    for (; need && i < n; i++, need--, range = 0)
        if (p[i] < utf8_lo[range] || p[i] > utf8_hi[range])
            return 0;
    if (!need) {
        size_t t = i + utf8_tail(p + i, n - i);
        if (!utf8_valid(p + i, t - i))
            return 0;
        if (t < n && !(need = utf8_lead(p[t], &range)))
            return 0;
        for (i = t + 1; i < n; i++, need--, range = 0)
            if (p[i] < utf8_lo[range] || p[i] > utf8_hi[range])
                return 0;
    }
    *state = (uint8_t)(need | range << 2);
    return 1;
}
