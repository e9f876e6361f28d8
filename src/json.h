/* json.h — JSON read strictly, and JSON written.
 *
 * Reading: a scanner (RFC 8259, UTF-8, nesting at most JSON_MAX_DEPTH)
 * over a buffer, for code that reads a few members of an object and skips
 * the rest: gw.jwt's header and claims (jwt.c) and the admin API's request
 * bodies (admin.c).  No tree is built; strings decode into the caller's
 * buffer.
 *
 * Writing: json_buf, a growing buffer that strings are escaped into.
 * Strings from clients and scripts (names, topics, reasons) are bytes that
 * need not be UTF-8: a byte that is not part of a valid sequence is
 * written as U+FFFD, so the output is always valid JSON. */
#ifndef MG_JSON_H
#define MG_JSON_H

#include <stddef.h>

#define JSON_MAX_DEPTH 32
/* json_object decodes keys up to this long; a longer one comes with
 * klen > JSON_KEY_MAX (and matches no name the caller checks). */
#define JSON_KEY_MAX 32

typedef struct json_scan {
    const unsigned char *p, *end;
} json_scan;

typedef struct json_out {
    unsigned char *buf; /* NULL: validate only */
    size_t cap, len;    /* len counts every byte, also those past cap */
} json_out;

void json_ws(json_scan *j);
/* The next character after whitespace, -1 at the end. */
int json_peek(json_scan *j);
/* A string at j->p, decoded into o: 0, or -1 (malformed). */
int json_string(json_scan *j, json_out *o);
/* A number (RFC 8259 grammar); its value in *v when v is not NULL, for
 * which it must be under 64 characters. */
int json_number(json_scan *j, double *v);
/* Any value, at nesting depth. */
int json_skip(json_scan *j, int depth);

/* A member of the top-level object: its key (decoded) and j at its value,
 * which the function reads or skips.  0 or -1 (malformed). */
typedef int (*json_member_fn)(void *ctx, const unsigned char *key, size_t klen, json_scan *j);
int json_key_is(const unsigned char *key, size_t klen, const char *name);
/* The whole of [p, p + n) is one object (valid UTF-8), whose members go to
 * fn.  0 or -1. */
int json_object(const unsigned char *p, size_t n, json_member_fn fn, void *ctx);

typedef struct json_buf {
    char *p; /* NUL-terminated, NULL while empty */
    size_t len, cap;
    int oom; /* an allocation failed: the text is incomplete */
} json_buf;

void json_buf_raw(json_buf *b, const char *s, size_t n);
/* A short piece (under 256 bytes) printed. */
void json_buf_printf(json_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* data as a JSON string, quotes included. */
void json_buf_str(json_buf *b, const void *data, size_t n);
void json_buf_cstr(json_buf *b, const char *s);
void json_buf_free(json_buf *b);

#endif
