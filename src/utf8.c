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
