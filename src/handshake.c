/* handshake.c — WebSocket upgrade requests: the checks that decide whether
 * one may proceed, and what is kept from it.
 *
 * handshake_check() runs from lws's HTTP_CONFIRM_UPGRADE, before lws's own
 * checks (which in 4.1.6 let some bad requests through and drop others
 * without an answer), and refuses with a proper HTTP status: 404 wrong path,
 * 426 version, 400 key / Connection / Host / subprotocol, 503 limits or
 * draining, or what on_handshake says.  handshake_accept() builds the
 * connection from the request when the upgrade completes: path, query
 * (parts joined with '&'), peer address, every standard header and the
 * custom ones handshake.headers names (lws cannot list custom headers). */
#include "handshake.h"

#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "http.h"
#include "log.h"
#include "script.h"

/* Room for the headers kept from one request. */
#define HANDSHAKE_HEADERS_MAX 8192

/* Copy a header (known token) into buf; "" when absent. */
static const char *handshake_hdr(struct lws *wsi, enum lws_token_indexes t, char *buf, size_t len)
{
    if (lws_hdr_copy(wsi, buf, (int)len, t) < 0)
        buf[0] = '\0';
    return buf;
}

/* A Sec-WebSocket-Key must be base64 of exactly 16 bytes. */
int handshake_key_valid(const char *key)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (strlen(key) != 24 || key[22] != '=' || key[23] != '=')
        return 0;
    for (int i = 0; i < 22; i++)
        if (!strchr(b64, key[i]) || !key[i])
            return 0;
    /* The last character before the padding carries 2 bits: AQgw. */
    return strchr("AQgw", key[21]) != NULL;
}

int handshake_token_has(const char *list, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == wl && strncasecmp(p, word, wl) == 0)
            return 1;
        p = e;
    }
    return 0;
}

/* Append name\0value\0 for a custom header if the request has it. */
static size_t handshake_collect_custom(struct lws *wsi, const char *name, char *out, size_t n,
                                       size_t cap)
{
    char key[80];
    int kl = snprintf(key, sizeof(key), "%s:", name);
    int vlen = lws_hdr_custom_length(wsi, key, kl);
    size_t nl = strlen(name);
    if (vlen < 0 || n + nl + 1 + (size_t)vlen + 1 > cap)
        return n;
    memcpy(out + n, name, nl + 1);
    if (lws_hdr_custom_copy(wsi, out + n + nl + 1, vlen + 1, key, kl) < 0)
        return n;
    return n + nl + 1 + (size_t)vlen + 1;
}

/* Collect every header lws knows, and the custom ones the config names,
 * into "name\0value\0" pairs. */
static size_t handshake_collect_headers(mg_gw *gw, struct lws *wsi, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < gw->cfg->nkeep_headers; i++)
        n = handshake_collect_custom(wsi, gw->cfg->keep_headers[i], out, n, cap);
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        const char *name = (const char *)lws_token_to_string((enum lws_token_indexes)t);
        int vlen = lws_hdr_total_length(wsi, (enum lws_token_indexes)t);
        if (!name || vlen <= 0)
            continue;
        size_t nl = strlen(name);
        if (nl < 2 || name[nl - 1] != ':')
            continue; /* request-line pseudo tokens ("get ", ...) */
        nl--;
        if (n + nl + 1 + (size_t)vlen + 1 > cap)
            break;
        for (size_t i = 0; i < nl; i++)
            out[n + i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
        out[n + nl] = '\0';
        n += nl + 1;
        if (lws_hdr_copy(wsi, out + n, vlen + 1, (enum lws_token_indexes)t) < 0)
            out[n] = '\0';
        n += strlen(out + n) + 1;
    }
    return n;
}

/* The query string: lws splits it at '&' (and URL-decodes each part);
 * join the parts back with '&'. */
static const char *handshake_query(struct lws *wsi, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; n + 1 < len; i++) {
        int fl = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (fl <= 0 || n + (size_t)fl + 2 > len)
            break;
        if (n)
            buf[n++] = '&';
        if (lws_hdr_copy_fragment(wsi, buf + n, (int)(len - n), WSI_TOKEN_HTTP_URI_ARGS, i) < 0)
            break;
        n += strlen(buf + n);
    }
    buf[n] = '\0';
    return buf;
}

static void handshake_remote(struct lws *wsi, char *buf, size_t len)
{
    if (!lws_get_peer_simple(wsi, buf, len))
        snprintf(buf, len, "?");
}

static int handshake_refuse(mg_gw *gw, struct lws *wsi, int status, const char *body,
                            const char *extra_name, const char *extra_value)
{
    char remote[64];
    handshake_remote(wsi, remote, sizeof(remote));
    log_conn(MG_LOG_INFO, 0, "upgrade from %s refused: %d %s", remote, status, body);
    gw->metrics->handshakes_refused++;
    http_respond(wsi, status, "text/plain", body, strlen(body), extra_name, extra_value);
    return -1; /* hang up once the answer is out */
}

/* req:header() for a header that is not a known token: read it live from
 * the request (only while on_handshake runs). */
static const char *handshake_req_header(void *ctx, const char *name, char *buf, size_t len)
{
    char key[80];
    int kl = snprintf(key, sizeof(key), "%s:", name);
    if (kl <= 0 || (size_t)kl >= sizeof(key))
        return NULL;
    if (lws_hdr_custom_copy(ctx, buf, (int)len, key, kl) < 0)
        return NULL;
    return buf;
}

int handshake_check(mg_gw *gw, struct lws *wsi, const char *ws_path, const char *upgrade)
{
    char path[512], buf[512], query[1024];

    handshake_hdr(wsi, WSI_TOKEN_GET_URI, path, sizeof(path));
    if (!path[0])
        return handshake_refuse(gw, wsi, 405, "method not allowed\n", "allow:", "GET");
    if (strcasecmp(upgrade, "websocket") != 0)
        return handshake_refuse(gw, wsi, 400, "unsupported upgrade\n", NULL, NULL);
    if (strcmp(path, ws_path) != 0)
        return handshake_refuse(gw, wsi, 404, "not found\n", NULL, NULL);
    if (!handshake_token_has(handshake_hdr(wsi, WSI_TOKEN_CONNECTION, buf, sizeof(buf)), "upgrade"))
        return handshake_refuse(gw, wsi, 400, "Connection header must contain 'upgrade'\n", NULL,
                                NULL);
    if (strcmp(handshake_hdr(wsi, WSI_TOKEN_VERSION, buf, sizeof(buf)), "13") != 0)
        return handshake_refuse(gw, wsi, 426, "unsupported WebSocket version (use 13)\n",
                                "sec-websocket-version:", "13");
    if (!handshake_key_valid(handshake_hdr(wsi, WSI_TOKEN_KEY, buf, sizeof(buf))))
        return handshake_refuse(gw, wsi, 400, "missing or malformed Sec-WebSocket-Key\n", NULL,
                                NULL);
    if (!lws_hdr_total_length(wsi, WSI_TOKEN_HOST))
        return handshake_refuse(gw, wsi, 400, "missing Host header\n", NULL, NULL);
    if (lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL))
        return handshake_refuse(gw, wsi, 400, "no subprotocol is supported\n", NULL, NULL);
    if (gw->draining)
        return handshake_refuse(gw, wsi, 503, "shutting down\n", NULL, NULL);
    if (gw->metrics->connections >= gw->cfg->max_connections ||
        gw->metrics->connections >= gw->conn_capacity)
        return handshake_refuse(gw, wsi, 503, "too many connections\n", NULL, NULL);

    char remote[64], *headers = malloc(HANDSHAKE_HEADERS_MAX);
    if (!headers)
        return handshake_refuse(gw, wsi, 503, "out of memory\n", NULL, NULL);
    handshake_remote(wsi, remote, sizeof(remote));
    handshake_query(wsi, query, sizeof(query));
    mg_request req = {path,
                      query,
                      remote,
                      headers,
                      handshake_collect_headers(gw, wsi, headers, HANDSHAKE_HEADERS_MAX),
                      handshake_req_header,
                      wsi};
    int status = 0;
    char body[512];
    int ok = script_on_handshake(gw, &req, &status, body, sizeof(body));
    free(headers);
    if (!ok)
        return handshake_refuse(gw, wsi, status, body, NULL, NULL);
    return 0;
}

mg_conn *handshake_accept(mg_gw *gw, struct lws *wsi)
{
    char path[512], query[1024], remote[64];
    char *headers = malloc(HANDSHAKE_HEADERS_MAX);
    if (!headers)
        return NULL;
    handshake_hdr(wsi, WSI_TOKEN_GET_URI, path, sizeof(path));
    handshake_query(wsi, query, sizeof(query));
    handshake_remote(wsi, remote, sizeof(remote));
    size_t hl = handshake_collect_headers(gw, wsi, headers, HANDSHAKE_HEADERS_MAX);
    mg_conn *c = conn_create(gw, wsi, path, query, remote, headers, hl);
    free(headers);
    if (c)
        log_conn(MG_LOG_DEBUG, c->id, "connected from %s to %s", remote, path);
    return c;
}
