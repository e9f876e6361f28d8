/* json.c — JSON read strictly, and JSON written (json.h). */
#include "json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* ---- reading ---- */

void json_ws(json_scan *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

/* The next character after whitespace, -1 at the end. */
int json_peek(json_scan *j)
{
    json_ws(j);
    return j->p < j->end ? *j->p : -1;
}

static int json_lit(json_scan *j, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return -1;
    j->p += n;
    return 0;
}

static int json_hex4(json_scan *j, unsigned *v)
{
    if (j->end - j->p < 4)
        return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = *j->p++, d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        *v = *v << 4 | d;
    }
    return 0;
}

static void json_put(json_out *o, unsigned c)
{
    if (o->buf && o->len < o->cap)
        o->buf[o->len] = (unsigned char)c;
    o->len++;
}

/* \uXXXX (and its low surrogate), the backslash and u already read. */
static int json_unicode(json_scan *j, json_out *o)
{
    unsigned cp, lo;
    if (json_hex4(j, &cp))
        return -1;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return -1;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (json_lit(j, "\\u") || json_hex4(j, &lo) || lo < 0xDC00 || lo > 0xDFFF)
            return -1;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (cp < 0x80) {
        json_put(o, cp);
    } else if (cp < 0x800) {
        json_put(o, 0xC0 | cp >> 6);
        json_put(o, 0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        json_put(o, 0xE0 | cp >> 12);
        json_put(o, 0x80 | (cp >> 6 & 0x3F));
        json_put(o, 0x80 | (cp & 0x3F));
    } else {
        json_put(o, 0xF0 | cp >> 18);
        json_put(o, 0x80 | (cp >> 12 & 0x3F));
        json_put(o, 0x80 | (cp >> 6 & 0x3F));
        json_put(o, 0x80 | (cp & 0x3F));
    }
    return 0;
}

/* A string at j->p, decoded into o.  The bytes were checked as UTF-8. */
int json_string(json_scan *j, json_out *o)
{
    static const char esc_in[] = "\"\\/bfnrt", esc_out[] = "\"\\/\b\f\n\r\t";
    if (j->p >= j->end || *j->p != '"')
        return -1;
    j->p++;
    while (j->p < j->end) {
        unsigned c = *j->p++;
        if (c == '"')
            return 0;
        if (c < 0x20)
            return -1;
        if (c != '\\') {
            json_put(o, c);
            continue;
        }
        if (j->p >= j->end)
            return -1;
        c = *j->p++;
        const char *e = c ? strchr(esc_in, (int)c) : NULL;
        if (e)
            json_put(o, (unsigned char)esc_out[e - esc_in]);
        else if (c != 'u' || json_unicode(j, o))
            return -1;
    }
    return -1;
}

static int json_digits(json_scan *j)
{
    const unsigned char *start = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
        j->p++;
    return j->p > start ? 0 : -1;
}

/* A number (RFC 8259 grammar); its value in *v when v is not NULL, for
 * which it must be under 64 characters (a time claim is a dozen). */
int json_number(json_scan *j, double *v)
{
    const unsigned char *start = j->p;
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p < j->end && *j->p == '0')
        j->p++;
    else if (j->p >= j->end || *j->p < '1' || *j->p > '9' || json_digits(j))
        return -1;
    if (j->p < j->end && *j->p == '.' && (j->p++, json_digits(j)))
        return -1;
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (json_digits(j))
            return -1;
    }
    if (!v)
        return 0;
    char buf[64];
    size_t n = (size_t)(j->p - start);
    if (n >= sizeof(buf))
        return -1;
    memcpy(buf, start, n);
    buf[n] = '\0';
    *v = strtod(buf, NULL);
    return 0;
}

/* The members or elements of an object or array, at its opening bracket. */
static int json_skip_container(json_scan *j, int depth)
{
    int obj = *j->p == '{';
    unsigned char close = obj ? '}' : ']';
    if (depth >= JSON_MAX_DEPTH)
        return -1;
    j->p++;
    if (json_peek(j) == close) {
        j->p++;
        return 0;
    }
    for (;;) { /* each turn reads at least one byte */
        if (obj) {
            json_out none = {0};
            if (json_peek(j) != '"' || json_string(j, &none) || json_peek(j) != ':')
                return -1;
            j->p++;
        }
        if (json_skip(j, depth + 1))
            return -1;
        int c = json_peek(j);
        j->p++;
        if (c == close)
            return 0;
        if (c != ',')
            return -1;
    }
}

int json_skip(json_scan *j, int depth)
{
    json_out none = {0};
    switch (json_peek(j)) {
    case '{':
    case '[':
        return json_skip_container(j, depth);
    case '"':
        return json_string(j, &none);
    case 't':
        return json_lit(j, "true");
    case 'f':
        return json_lit(j, "false");
    case 'n':
        return json_lit(j, "null");
    case -1:
        return -1;
    default:
        return json_number(j, NULL);
    }
}

int json_key_is(const unsigned char *key, size_t klen, const char *name)
{
    return klen == strlen(name) && memcmp(key, name, klen) == 0;
}

/* The whole of [p, end) is one object, whose members go to fn. */
int json_object(const unsigned char *p, size_t n, json_member_fn fn, void *ctx)
{
    json_scan j = {p, p + n};
    if (!utf8_valid(p, n) || json_peek(&j) != '{')
        return -1;
    j.p++;
    if (json_peek(&j) == '}') {
        j.p++;
    } else {
        for (;;) {
            unsigned char key[JSON_KEY_MAX];
            json_out k = {key, sizeof(key), 0};
            if (json_peek(&j) != '"' || json_string(&j, &k) || json_peek(&j) != ':')
                return -1;
            j.p++;
            json_ws(&j);
            if (fn(ctx, key, k.len, &j))
                return -1;
            int c = json_peek(&j);
            j.p++;
            if (c == '}')
                break;
            if (c != ',')
                return -1;
        }
    }
    json_ws(&j);
    return j.p == j.end ? 0 : -1;
}

/* ---- writing ---- */

/* Room for n more bytes; 0, or -1 (out of memory, remembered). */
static int json_buf_room(json_buf *b, size_t n)
{
    if (b->oom)
        return -1;
    if (b->len + n + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void json_buf_raw(json_buf *b, const char *s, size_t n)
{
    if (json_buf_room(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void json_buf_printf(json_buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) { /* only short pieces are printed */
        b->oom = 1;
        return;
    }
    json_buf_raw(b, tmp, (size_t)n);
}

/* The length of the UTF-8 sequence at s (n bytes left), 0 if it is not one. */
static size_t json_utf8_len(const unsigned char *s, size_t n)
{
    size_t k = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC0 ? 2 : 0;
    return k && k <= n && utf8_valid(s, k) ? k : 0;
}

void json_buf_str(json_buf *b, const void *data, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = data;
    json_buf_raw(b, "\"", 1);
    for (size_t i = 0; i < n && !b->oom;) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            json_buf_raw(b, e, 2);
        } else if (c < 0x20 || c == 0x7F) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            json_buf_raw(b, e, 6);
        } else if (c >= 0x80) {
            size_t k = json_utf8_len(s + i, n - i);
            if (k) {
                json_buf_raw(b, (const char *)s + i, k);
                i += k;
                continue;
            }
            json_buf_raw(b, "\xEF\xBF\xBD", 3); /* U+FFFD for a byte that is not UTF-8 */
        } else {
            json_buf_raw(b, (const char *)&c, 1);
        }
        i++;
    }
    json_buf_raw(b, "\"", 1);
}

void json_buf_cstr(json_buf *b, const char *s)
{
    json_buf_str(b, s, strlen(s));
}

void json_buf_free(json_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}
