/* hsmatch.c — listener paths, the origin allow-list and offered
 * subprotocols, matched as strings (hsmatch.h). */
#include "hsmatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <libwebsockets.h>

/* ---- paths ---- */

const char *hsmatch_path_invalid(const char *entry)
{
    size_t len = strlen(entry);
    if (entry[0] != '/')
        return "must start with '/'";
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)entry[i];
        if (ch == '*' && i + 1 != len)
            return "'*' may only end a path (a prefix such as /api/*)";
        if (ch <= ' ' || ch == 0x7f || ch == '?' || ch == '#')
            return "must not contain spaces, control characters, '?' or '#'";
    }
    return NULL;
}

int hsmatch_path(char *const *paths, size_t n, const char *path)
{
    int best = -1;
    size_t best_len = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(paths[i], path) == 0 && !strchr(paths[i], '*'))
            return (int)i;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(paths[i]);
        if (!len || paths[i][len - 1] != '*')
            continue;
        len--;
        if (strncmp(paths[i], path, len) == 0 && (best < 0 || len > best_len)) {
            best = (int)i;
            best_len = len;
        }
    }
    return best;
}

/* ---- subprotocols ---- */

int hsmatch_is_token(const char *s, size_t len)
{
    static const char special[] = "!#$%&'*+-.^_`|~";
    if (!len)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        int alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && (!ch || !strchr(special, ch)))
            return 0;
    }
    return 1;
}

int hsmatch_protocols(const char *list, char *out, size_t cap)
{
    int count = 0;
    size_t used = 0;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        if (!e)
            e = p + strlen(p);
        const char *a = p, *b = e;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        size_t len = (size_t)(b - a);
        if (len) {
            if (!hsmatch_is_token(a, len) || used + len + 1 > cap)
                return -1;
            memcpy(out + used, a, len);
            out[used + len] = '\0';
            used += len + 1;
            count++;
        }
        p = *e ? e + 1 : e;
    }
    return count;
}

const char *hsmatch_protocols_lws(const char *list, char *first, size_t cap)
{
    struct lws_tokenize ts;
    size_t len = strlen(list);
    if (len > HSMATCH_PROTOCOLS_MAX)
        return "the list is longer than libwebsockets takes (126 bytes)";
    /* lws_process_ws_upgrade's walk, with its flags, up to the token it
     * binds: anything else there fails the upgrade. */
    lws_tokenize_init(&ts, list,
                      LWS_TOKENIZE_F_COMMA_SEP_LIST | LWS_TOKENIZE_F_MINUS_NONTERM |
                          LWS_TOKENIZE_F_DOT_NONTERM | LWS_TOKENIZE_F_RFC7230_DELIMS);
    ts.len = len;
    for (int i = 0; i < 256; i++) {
        lws_tokenize_elem e = lws_tokenize(&ts);
        if (e == LWS_TOKZE_DELIMITER)
            continue;
        if (e != LWS_TOKZE_TOKEN)
            return "libwebsockets cannot parse the list (does it start with a name that is a "
                   "number, or with a comma?)";
        if (ts.token_len > HSMATCH_PROTOCOL_NAME_MAX || ts.token_len >= cap)
            return "its first name is longer than libwebsockets takes (62 bytes)";
        memcpy(first, ts.token, ts.token_len);
        first[ts.token_len] = '\0';
        return NULL;
    }
    return "libwebsockets cannot parse the list";
}

int hsmatch_name_in(const char *names, int n, const char *name)
{
    for (int i = 0; i < n; i++, names += strlen(names) + 1)
        if (strcmp(names, name) == 0)
            return 1;
    return 0;
}

/* ---- origins ---- */

typedef struct hs_origin {
    char scheme[16];
    char host[256]; /* lower-case; "*.x" for a wildcard entry */
    int port;       /* explicit or the scheme's default; 0 when it has none */
} hs_origin;

static int hs_default_port(const char *scheme)
{
    if (!strcmp(scheme, "http") || !strcmp(scheme, "ws"))
        return 80;
    if (!strcmp(scheme, "https") || !strcmp(scheme, "wss"))
        return 443;
    return 0;
}

static int hs_host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
           ch == '_';
}

/* Parse scheme://host[:port] (wildcard: a host "*.suffix" is allowed).
 * NULL, or why not. */
static const char *hs_origin_parse(const char *s, int wildcard, hs_origin *o)
{
    const char *sep = strstr(s, "://");
    size_t sl = sep ? (size_t)(sep - s) : 0;
    if (!sep || !sl || sl >= sizeof(o->scheme))
        return "expected scheme://host[:port], e.g. https://app.example.com";
    for (size_t i = 0; i < sl; i++) {
        char ch = (char)(s[i] | 0x20);
        if (!((ch >= 'a' && ch <= 'z') ||
              (i && ((ch >= '0' && ch <= '9') || s[i] == '+' || s[i] == '-' || s[i] == '.'))))
            return "the scheme is not valid";
        o->scheme[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : s[i];
    }
    o->scheme[sl] = '\0';
    const char *h = sep + 3, *he;
    if (*h == '[') { /* an IPv6 address */
        he = strchr(h, ']');
        if (!he || he == h + 1)
            return "the IPv6 address is not closed with ']'";
        he++;
        for (const char *q = h + 1; q < he - 1; q++)
            if (!strchr("0123456789abcdefABCDEF:.", *q))
                return "the IPv6 address is not valid";
    } else {
        he = h + strcspn(h, ":/?#");
    }
    size_t hl = (size_t)(he - h);
    if (!hl || hl >= sizeof(o->host))
        return "the host is missing or too long";
    for (size_t i = 0; i < hl; i++)
        o->host[i] = (h[i] >= 'A' && h[i] <= 'Z') ? (char)(h[i] + 32) : h[i];
    o->host[hl] = '\0';
    if (o->host[0] != '[') {
        const char *name = o->host;
        if (wildcard && name[0] == '*') {
            if (name[1] != '.' || !name[2])
                return "a wildcard host is written *.example.com";
            name += 2;
        }
        for (const char *q = name; *q; q++)
            if (!hs_host_char(*q))
                return *q == '*' ? "'*' is allowed only as '*.' at the start of the host"
                                 : "the host is not valid";
    }
    o->port = hs_default_port(o->scheme);
    if (*he == ':') {
        char *end;
        long port = strtol(he + 1, &end, 10);
        if (end == he + 1 || port < 1 || port > 65535 || he[1] == '+' || he[1] == '-')
            return "the port must be 1..65535";
        o->port = (int)port;
        he = end;
    }
    if (*he)
        return "nothing may follow the host and port (no path, no trailing '/')";
    return NULL;
}

const char *hsmatch_origin_invalid(const char *entry)
{
    hs_origin o;
    return hs_origin_parse(entry, 1, &o);
}

static int hs_origin_match(const hs_origin *allow, const hs_origin *o)
{
    if (strcmp(allow->scheme, o->scheme) != 0 || allow->port != o->port)
        return 0;
    if (allow->host[0] != '*')
        return strcmp(allow->host, o->host) == 0;
    /* "*.example.com": a subdomain (one label or more), not the apex. */
    size_t sl = strlen(allow->host) - 1, hl = strlen(o->host); /* sl counts the dot */
    return hl > sl && strcmp(o->host + hl - sl, allow->host + 1) == 0;
}

int hsmatch_origin_allowed(char *const *entries, size_t n, const char *origin)
{
    hs_origin o, a;
    if (hs_origin_parse(origin, 0, &o) != NULL)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (hs_origin_parse(entries[i], 1, &a) == NULL && hs_origin_match(&a, &o))
            return 1;
    return 0;
}
