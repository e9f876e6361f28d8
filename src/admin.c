/* admin.c — what the admin API does with a request (admin.h). */
#include "admin.h"

#include <string.h>
#include <strings.h>

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
            admin_refuse(out, 400, "kind must be text or binary\n");
    }
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
    };
    memset(out, 0, sizeof(*out));
    if (!admin_token_ok(r->auth, token)) {
        admin_refuse(out, 401, "unauthorized\n");
        return;
    }
    size_t i, n = sizeof(routes) / sizeof(routes[0]);
    for (i = 0; i < n; i++)
        if (r->path && strcmp(r->path, routes[i].path) == 0)
            break;
    if (i == n) {
        admin_refuse(out, 404, "not found\n");
        return;
    }
    if (r->method != routes[i].method) {
        admin_refuse(out, 405, "method not allowed\n");
        out->allow = routes[i].allow;
        return;
    }
    /* A body is read only when its length is known and small: lws 4.1
     * cannot read a chunked request body, and a big one is refused before
     * a byte of it is read. */
    if (r->chunked) {
        admin_refuse(out, 411, "a Content-Length is required (chunked bodies are not read)\n");
        return;
    }
    if (r->clen > ADMIN_BODY_MAX) {
        admin_refuse(out, 413, "body too large (1 MiB at most)\n");
        return;
    }
    if (routes[i].action == ADMIN_BROADCAST)
        admin_route_broadcast(r, out);
    else
        out->action = routes[i].action;
}

const char *admin_body_check(const admin_route *rt, const void *body, size_t len)
{
    if (rt->action == ADMIN_BROADCAST && !rt->binary && !utf8_valid(body, len))
        return "body is not UTF-8: send it as binary (?kind=binary, or Content-Type: "
               "application/octet-stream)\n";
    return NULL;
}
