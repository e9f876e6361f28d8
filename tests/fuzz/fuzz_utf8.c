/* fuzz_utf8.c — utf8_valid (the SIMD-assisted validator) against a plain
 * byte-by-byte decoder written here from RFC 3629: they must agree on
 * every input, at every offset and length (the fast path's 16-byte blocks
 * start anywhere). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ref_utf8.h" /* tests/unit */
#include "utf8.h"

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
