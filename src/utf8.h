/* utf8.h — strict UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF), as RFC 6455 requires for text messages. */
#ifndef MG_UTF8_H
#define MG_UTF8_H

#include <stddef.h>

int utf8_valid(const unsigned char *s, size_t len);

#endif
