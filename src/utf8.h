/* utf8.h — strict UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF), as RFC 6455 requires for text messages. */
#ifndef MG_UTF8_H
#define MG_UTF8_H

#include <stddef.h>
#include <stdint.h>

int utf8_valid(const unsigned char *s, size_t len);

/* The same check over a text that arrives in pieces, so that invalid
 * UTF-8 is found in the piece that brings it (RFC 6455 8.1: fail fast).
 * *state starts at 0 and carries an unfinished character from one piece
 * to the next; it fits in UTF8_STATE_BITS bits.  Returns 0 as soon as the
 * bytes so far cannot begin valid UTF-8, else 1; the whole text is valid
 * if the last piece leaves *state at 0. */
#define UTF8_STATE_BITS 5
int utf8_step(uint8_t *state, const unsigned char *p, size_t n);

#endif
