/* admin.c — what the admin API does with a request (admin.h). */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "utf8.h"

int admin_token_ok(const char *auth, const char *token)
{
    static const char scheme[] = "Bearer ";
    if (!token)
        return 1;
    if (!auth)
        return 0;
    size_t al = strlen(auth), tl = strlen(token), sl = sizeof(scheme) - 1;
    /* Every byte of the token is compared whatever the header holds: the
     * time taken tells the length at most, never how much of it matched. */
    unsigned diff = al != sl + tl;
    for (size_t i = 0; i < sl; i++)
        diff |= (unsigned char)(i < al ? auth[i] : 0) ^ (unsigned char)scheme[i];
    for (size_t i = 0; i < tl; i++)
        diff |= (unsigned char)(sl + i < al ? auth[sl + i] : 0) ^ (unsigned char)token[i];
    return diff == 0;
}

static void admin_refuse(admin_route *out, int status, const char *reason)
{
    out->action = ADMIN_REFUSE;
    out->status = status;
    out->reason = reason;
}

/* The media type of ctype, parameters aside, is type. */
static int admin_ctype_is(const char *ctype, const char *type)
{
    size_t n = strlen(type);
    return ctype && strncasecmp(ctype, type, n) == 0 &&
           (ctype[n] == '\0' || ctype[n] == ';' || ctype[n] == ' ');
}

static void admin_route_broadcast(const admin_req *r, admin_route *out)
{
    out->action = ADMIN_BROADCAST;
    out->binary = admin_ctype_is(r->ctype, "application/octet-stream");
    if (r->kind) {
        if (strcmp(r->kind, "binary") == 0)
            out->binary = 1;
        else if (strcmp(r->kind, "text") == 0)
            out->binary = 0;
        else
            admin_refuse(out, 400, "kind must be text or binary");
    }
}

uint64_t admin_parse_id(const char *s, size_t n)
{
    uint64_t v = 0;
    if (n == 0 || n > 16 || s[0] == '0')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    return v < (1ULL << 53) ? v : 0;
}

/* limit= and after= of a listing. */
static void admin_route_page(const admin_req *r, admin_route *out)
{
    out->limit = ADMIN_PAGE_DEFAULT;
    out->after = r->after && *r->after ? r->after : NULL;
    if (r->limit) {
        uint64_t n = admin_parse_id(r->limit, strlen(r->limit));
        if (n == 0 || n > ADMIN_PAGE_MAX) {
            admin_refuse(out, 400, "limit must be a whole number from 1 to 1000");
            return;
        }
        out->limit = (unsigned)n;
    }
    if (out->action == ADMIN_CLIENTS && out->after &&
        !admin_parse_id(out->after, strlen(out->after)))
        admin_refuse(out, 400, "after must be a client id (the next cursor of a page)");
}

/* POST /clients/{id|name}/close: the target is what lies between. */
static int admin_close_path(const char *path, admin_route *out)
{
    static const char pre[] = "/clients/", suf[] = "/close";
    size_t n = path ? strlen(path) : 0, pl = sizeof(pre) - 1, sl = sizeof(suf) - 1;
    if (n <= pl + sl || strncmp(path, pre, pl) != 0 || strcmp(path + n - sl, suf) != 0)
        return 0;
    out->target = path + pl;
    out->target_len = n - pl - sl;
    return 1;
}

void admin_route_request(const admin_req *r, const char *token, admin_route *out)
{
    static const struct {
        const char *path;
        admin_method method;
        admin_action action;
        const char *allow;
    } routes[] = {
        {"/health", ADMIN_GET, ADMIN_HEALTH, "GET"},
        {"/metrics", ADMIN_GET, ADMIN_METRICS, "GET"},
        {"/reload", ADMIN_POST, ADMIN_RELOAD, "POST"},
        {"/broadcast", ADMIN_POST, ADMIN_BROADCAST, "POST"},
        {"/clients", ADMIN_GET, ADMIN_CLIENTS, "GET"},
        {"/topics", ADMIN_GET, ADMIN_TOPICS, "GET"},
        {"/send", ADMIN_POST, ADMIN_SEND, "POST"},
        {"/publish", ADMIN_POST, ADMIN_PUBLISH, "POST"},
        {"/clients/{id|name}/close", ADMIN_POST, ADMIN_CLOSE, "POST"},
    };
    memset(out, 0, sizeof(*out));
    if (!admin_token_ok(r->auth, token)) {
        admin_refuse(out, 401, "unauthorized: send Authorization: Bearer <admin.token>");
        return;
    }
    size_t i, n = sizeof(routes) / sizeof(routes[0]);
    for (i = 0; i < n; i++)
        if (r->path && strcmp(r->path, routes[i].path) == 0)
            break;
    if (i == n && admin_close_path(r->path, out))
        i = n - 1;
    if (i == n) {
        admin_refuse(out, 404, "not found");
        return;
    }
    if (r->method != routes[i].method) {
        admin_refuse(out, 405, "method not allowed");
        out->allow = routes[i].allow;
        return;
    }
    /* A body is read only when its length is known and small: lws 4.1
     * cannot read a chunked request body, and a big one is refused before
     * a byte of it is read. */
    if (r->chunked) {
        admin_refuse(out, 411, "a Content-Length is required (chunked bodies are not read)");
        return;
    }
    if (r->clen > ADMIN_BODY_MAX) {
        admin_refuse(out, 413, "body too large (1 MiB at most)");
        return;
    }
    out->action = routes[i].action;
    switch (out->action) {
    case ADMIN_BROADCAST:
        admin_route_broadcast(r, out);
        break;
    case ADMIN_CLIENTS:
    case ADMIN_TOPICS:
        admin_route_page(r, out);
        break;
    case ADMIN_SEND:
    case ADMIN_PUBLISH:
    case ADMIN_CLOSE:
        /* A close may come without a body (code 1000). */
        if ((out->action != ADMIN_CLOSE || r->clen > 0) &&
            !admin_ctype_is(r->ctype, "application/json"))
            admin_refuse(out, 415,
                         "the body must be JSON, sent with Content-Type: "
                         "application/json");
        break;
    default:
        break;
    }
}

const char *admin_body_check(const admin_route *rt, const void *body, size_t len)
{
    if (rt->action == ADMIN_BROADCAST && !rt->binary && !utf8_valid(body, len))
        return "body is not UTF-8: send it as binary (?kind=binary, or Content-Type: "
               "application/octet-stream)";
    return NULL;
}

/* ---- JSON bodies ---- */

/* Standard base64 (RFC 4648 §4), padding optional, nothing else allowed
 * (whitespace included).  The decoded length, or -1. */
static long admin_b64_decode(const unsigned char *in, size_t n, unsigned char *out)
{
    while (n && in[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    unsigned acc = 0, bits = 0;
    long o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned c = in[i], v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '+')
            v = 62;
        else if (c == '/')
            v = 63;
        else
            return -1;
        acc = (acc << 6 | v) & 0xFFFFFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return o;
}

/* A string member's value, decoded into a new NUL-terminated buffer. */
static int admin_body_string(json_scan *j, unsigned char **out, size_t *len)
{
    json_scan probe = *j;
    json_out none = {0};
    if (json_peek(j) != '"' || json_string(&probe, &none))
        return -1;
    unsigned char *buf = malloc(none.len + 1);
    if (!buf)
        return -1;
    json_out o = {buf, none.len, 0};
    json_string(j, &o);
    buf[o.len] = '\0';
    *out = buf;
    *len = o.len;
    return 0;
}

static int admin_body_fail(admin_body *b, const char *fmt, const char *what)
{
    if (!b->err[0])
        snprintf(b->err, sizeof(b->err), fmt, what);
    return -1;
}

typedef struct admin_body_ctx {
    admin_action action;
    admin_body *b;
    unsigned seen; /* bit per member, to refuse one named twice */
} admin_body_ctx;

static int admin_body_name(admin_body *b, json_scan *j, const char *member)
{
    size_t len;
    if (json_peek(j) != '"' || admin_body_string(j, (unsigned char **)&b->name, &len))
        return admin_body_fail(b, "%s must be a string", member);
    if (len == 0 || memchr(b->name, 0, len))
        return admin_body_fail(b, "%s must be a non-empty string without NUL", member);
    return 0;
}

static int admin_body_to(admin_body *b, json_scan *j)
{
    if (json_peek(j) == '"')
        return admin_body_name(b, j, "to");
    double v;
    if (json_number(j, &v) || v < 1 || v >= 9007199254740992.0 || v != (double)(uint64_t)v)
        return admin_body_fail(b, "%s must be a client id (a whole number) or a name", "to");
    b->id = (uint64_t)v;
    return 0;
}

static int admin_body_data(admin_body *b, json_scan *j, int b64)
{
    unsigned char *s;
    size_t len;
    if (b->data)
        return admin_body_fail(b, "%s", "give data or data_b64, not both");
    if (admin_body_string(j, &s, &len))
        return admin_body_fail(b, "%s must be a string", b64 ? "data_b64" : "data");
    if (b64) {
        long n = admin_b64_decode(s, len, s);
        if (n < 0) {
            free(s);
            return admin_body_fail(b, "%s", "data_b64 is not base64 (RFC 4648, + and /)");
        }
        len = (size_t)n;
        b->binary = 1;
    }
    b->data = s;
    b->len = len;
    return 0;
}

static int admin_body_close(admin_body *b, const unsigned char *key, size_t klen, json_scan *j)
{
    if (json_key_is(key, klen, "code")) {
        double v;
        if (json_number(j, &v) || v != (double)(int)v || (v != 1000 && (v < 3000 || v > 4999)))
            return admin_body_fail(b, "%s must be 1000 or 3000 to 4999", "code");
        b->code = (int)v;
        return 0;
    }
    if (admin_body_string(j, (unsigned char **)&b->reason, &b->reason_len))
        return admin_body_fail(b, "%s must be a string", "reason");
    if (memchr(b->reason, 0, b->reason_len))
        return admin_body_fail(b, "%s must not contain NUL", "reason");
    if (b->reason_len > 123)
        return admin_body_fail(b, "%s is longer than 123 bytes (UTF-8)", "reason");
    return 0;
}

static int admin_body_member(void *arg, const unsigned char *key, size_t klen, json_scan *j)
{
    static const char *const names[] = {"to",     "topic", "data",  "data_b64",
                                        "binary", "code",  "reason"};
    admin_body_ctx *ctx = arg;
    admin_body *b = ctx->b;
    int close = ctx->action == ADMIN_CLOSE, send = ctx->action == ADMIN_SEND;
    size_t k;
    for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
        if (json_key_is(key, klen, names[k]))
            break;
    /* Which members each body takes: close code/reason, send to/data...,
     * publish topic/data... */
    int ok = k < 7 && (close ? k >= 5 : k >= 2 ? k < 5 : k == (send ? 0u : 1u));
    if (!ok) {
        char shown[JSON_KEY_MAX + 1];
        size_t n = klen < JSON_KEY_MAX ? klen : JSON_KEY_MAX;
        memcpy(shown, key, n);
        shown[n] = '\0';
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)shown[i] < 0x20 || shown[i] == '"')
                shown[i] = '?';
        return admin_body_fail(b, "unknown member \"%s\"", shown);
    }
    if (ctx->seen & (1u << k))
        return admin_body_fail(b, "%s is given twice", names[k]);
    ctx->seen |= 1u << k;
    switch (k) {
    case 0:
        return admin_body_to(b, j);
    case 1:
        return admin_body_name(b, j, "topic");
    case 2:
    case 3:
        return admin_body_data(b, j, k == 3);
    case 4:
        if (json_peek(j) == 't' || json_peek(j) == 'f') {
            int t = json_peek(j) == 't';
            json_scan probe = *j;
            if (json_skip(&probe, 1) == 0) {
                *j = probe;
                b->binary |= t;
                return 0;
            }
        }
        return admin_body_fail(b, "%s must be true or false", "binary");
    default:
        return admin_body_close(b, key, klen, j);
    }
}

int admin_body_parse(admin_action action, const void *body, size_t len, admin_body *out)
{
    memset(out, 0, sizeof(*out));
    out->code = 1000;
    if (action == ADMIN_CLOSE && len == 0)
        return 0;
    admin_body_ctx ctx = {action, out, 0};
    if (json_object(body, len, admin_body_member, &ctx) != 0)
        return admin_body_fail(out, "%s", "the body is not a JSON object (RFC 8259, UTF-8)");
    if (action == ADMIN_SEND && !out->id && !out->name)
        return admin_body_fail(out, "%s", "to is required: a client id or name");
    if (action == ADMIN_PUBLISH && !out->name)
        return admin_body_fail(out, "%s", "topic is required");
    if (action != ADMIN_CLOSE && !out->data)
        return admin_body_fail(out, "%s", "data (text) or data_b64 (base64) is required");
    if (action != ADMIN_CLOSE && out->binary == 0 && !utf8_valid(out->data, out->len))
        return admin_body_fail(out, "%s", "data is not UTF-8"); /* cannot happen: JSON */
    return 0;
}

void admin_body_free(admin_body *b)
{
    free(b->name);
    free(b->data);
    free(b->reason);
    b->name = NULL;
    b->data = NULL;
    b->reason = NULL;
}
