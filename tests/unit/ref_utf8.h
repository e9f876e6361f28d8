/* ref_utf8.h — a UTF-8 validator written independently of src/utf8.c,
 * from RFC 3629, byte by byte: what test_utf8.c and the utf8 fuzz target
 * compare utf8_valid with. */
#ifndef MG_REF_UTF8_H
#define MG_REF_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decode code point by code point; reject what RFC 3629 forbids. */
static int ref_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return 0; /* continuation byte as lead, or F8..FF */
        }
        if (len - i < n)
            return 0;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n;
    }
    return 1;
}

#endif
