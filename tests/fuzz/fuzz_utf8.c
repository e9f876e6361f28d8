/* fuzz_utf8.c — utf8_valid (the SIMD-assisted validator) against a plain
 * byte-by-byte decoder written here from RFC 3629: they must agree on
 * every input, at every offset and length (the fast path's 16-byte blocks
 * start anywhere). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

static int ref_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (size_t off = 0; off < 4 && off <= size; off++) {
        size_t n = size - off;
        uint8_t *copy = malloc(n ? n : 1); /* exact size: over-reads show */
        memcpy(copy, data + off, n);
        if (utf8_valid(copy, n) != ref_valid(copy, n))
            abort();
        free(copy);
    }
    return 0;
}
