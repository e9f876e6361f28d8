/* handshake.c — WebSocket upgrade requests: the checks that decide whether
 * one may proceed, what is negotiated, and what is kept from it.
 *
 * handshake_check() runs from lws's HTTP_CONFIRM_UPGRADE, before lws's own
 * checks (which in 4.1.6 let some bad requests through and drop others
 * without an answer), and refuses with a proper HTTP status: 404 a path the
 * listener does not serve, 426 version, 400 key / Connection / Host / a
 * subprotocol list lws cannot take, 403 an Origin not on handshake.origins,
 * 503 limits or draining, or what on_handshake says.  handshake_accept()
 * builds the connection from the request when the upgrade completes: path,
 * query (parts joined with '&'), peer address, every standard header and
 * the custom ones handshake.headers names (lws cannot list custom
 * headers), and the subprotocol.
 *
 * Subprotocols, with lws's public API only.  lws binds an upgrade that
 * offers Sec-WebSocket-Protocol to the vhost protocol named like the first
 * offered name it knows, drops the upgrade without an answer when none
 * matches, and echoes that protocol's name in the 101.  So the protocol
 * table's first entry is named by a buffer of gw->upgrade: CONFIRM_UPGRADE
 * writes the first offered name there (lws binds it), FILTER_PROTOCOL_
 * CONNECTION empties it (lws writes no header), and ADD_HEADERS writes the
 * header for the name on_handshake or the listener's list chose, if any.
 * Lists lws cannot take get a 400 here first (hsmatch_protocols_lws).
 * The table's second entry, "moongate", is what the loop's own descriptors
 * are adopted with (server_watch, broker.c): same callback.
 *
 * Extensions: lws drops an upgrade whose Sec-WebSocket-Extensions reaches
 * 255 bytes, even with no extension configured.  moongate negotiates
 * extensions itself (none yet), so once the headers are copied such an
 * offer is emptied in lws's copy (src/lws/ahdata.c, the one coupling to
 * lws internals here; lws has no public call for it); conn:header() and
 * req:header() keep the real one.
 *
 * CONFIRM_UPGRADE, FILTER_PROTOCOL_CONNECTION, ADD_HEADERS and ESTABLISHED
 * follow one another in one call of lws for one wsi, so one upgrade is in
 * flight at a time: its state is gw->upgrade, keyed by the wsi. */
#include "handshake.h"

#include <stdlib.h>
#include <string.h>

#include "ahdata.h"
#include "compress.h"
#include "conn.h"
#include "hsmatch.h"
#include "http.h"
#include "listen.h"
#include "log.h"
#include "lwsc.h"
#include "script.h"

/* Room for the headers kept from one request: they are a part of what lws
 * holds of it (limits.max_header_size). */
#define HANDSHAKE_HEADERS_MAX CONFIG_HEADER_SIZE_MAX
/* lws's extension walker fails once it reaches this byte of the offer. */
#define HANDSHAKE_LWS_EXTENSIONS_MAX 254

/* The upgrade in flight (see the top of the file), and the protocol table
 * whose first name it owns. */
struct mg_upgrade {
    struct lws_protocols protocols[3];
    char bind_name[HSMATCH_PROTOCOL_NAME_MAX + 1]; /* protocols[0].name */

    struct lws *wsi;                              /* whose state this is, or NULL */
    char protocol[HSMATCH_PROTOCOL_NAME_MAX + 1]; /* chosen, "" none */
    char ext_answer[256];                         /* Sec-WebSocket-Extensions of the 101 */
    int deflate;                                  /* permessage-deflate negotiated ... */
    pmd_params pmd;                               /* ... with these */
    const char *ext_offer;                        /* into headers, "" none */
    char path[512], query[1024], remote[64];
    size_t headers_len;
    char headers[HANDSHAKE_HEADERS_MAX];
};

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

int handshake_start(mg_gw *gw, lws_callback_function *cb)
{
    mg_upgrade *u = calloc(1, sizeof(*u));
    if (!u)
        return -1;
    u->protocols[0] = (struct lws_protocols){.name = u->bind_name, .callback = cb};
    u->protocols[1] = (struct lws_protocols){.name = "moongate", .callback = cb};
    gw->upgrade = u;
    return 0;
}

const struct lws_protocols *handshake_protocols(const mg_gw *gw)
{
    return gw->upgrade->protocols;
}

void handshake_stop(mg_gw *gw)
{
    free(gw->upgrade);
    gw->upgrade = NULL;
}

/* The offered subprotocols: their names into names (count in *n), and
 * the first one lws will look up into bind.  NULL, or why the 400. */
static const char *handshake_offered(struct lws *wsi, char *names, size_t cap, int *n, char *bind)
{
    char list[HSMATCH_PROTOCOLS_MAX + 1];
    *n = 0;
    bind[0] = '\0';
    if (lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL) <= 0)
        return NULL;
    /* The copy lws makes, with its room: longer fails there too. */
    if (lws_hdr_copy(wsi, list, sizeof(list), WSI_TOKEN_PROTOCOL) < 0)
        return "Sec-WebSocket-Protocol: the list is longer than 126 bytes\n";
    if ((*n = hsmatch_protocols(list, names, cap)) < 0)
        return "Sec-WebSocket-Protocol: expected a comma-separated list of names (RFC 6455 "
               "tokens)\n";
    if (hsmatch_protocols_lws(list, bind, HSMATCH_PROTOCOL_NAME_MAX + 1) != NULL)
        return "Sec-WebSocket-Protocol: the list cannot be parsed by libwebsockets (names "
               "must not be numbers, the first at most 62 bytes)\n";
    return NULL;
}

/* The subprotocol when on_handshake chose none: the first offered name on
 * the listener's list. */
static void handshake_static_choice(struct lws *wsi, const char *names, int n, char *out)
{
    const mg_slot *sl = listen_slot(wsi);
    for (int i = 0; sl && i < n; i++, names += strlen(names) + 1)
        for (size_t k = 0; k < sl->nprotocols; k++)
            if (strcmp(names, sl->protocols[k]) == 0 &&
                strlen(names) <= HSMATCH_PROTOCOL_NAME_MAX) {
                memcpy(out, names, strlen(names) + 1);
                return;
            }
}

/* The 101 leaves out every extension offered: none is negotiated yet.
 * lws has no extension configured, so it ignores offers, but it drops
 * the upgrade once an offer reaches 255 bytes: such an offer is emptied
 * in lws's copy (ahdata.c; the headers kept for the script and the
 * connection have the real one), or refused with 400 where that coupling
 * is off.  Extension negotiation (permessage-deflate) goes here: it reads
 * u->ext_offer and sets its answer with handshake_extensions_answer.
 * NULL, or why the 400. */
static const char *handshake_extensions(mg_gw *gw, mg_upgrade *u, struct lws *wsi)
{
    const char *p = u->headers, *end = u->headers + u->headers_len;
    u->ext_offer = "";
    u->ext_answer[0] = '\0';
    for (; p < end; p += strlen(p) + 1, p += strlen(p) + 1)
        if (strcmp(p, "sec-websocket-extensions") == 0)
            u->ext_offer = p + strlen(p) + 1;
    int len = lws_hdr_total_length(wsi, WSI_TOKEN_EXTENSIONS);
    if (len <= 0)
        return NULL;
    if (len <= HANDSHAKE_LWS_EXTENSIONS_MAX) {
        log_debug("upgrade from %s: extension offer: %s", u->remote, u->ext_offer);
        return NULL;
    }
    if (ahdata_blank(wsi, WSI_TOKEN_EXTENSIONS, gw->max_header_size) != 0)
        return "Sec-WebSocket-Extensions: the offer is longer than libwebsockets takes (254 "
               "bytes)\n";
    log_info("upgrade from %s: extension offer of %d bytes ignored by libwebsockets (it would "
             "have dropped the upgrade); moongate negotiates from its own copy",
             u->remote, len);
    return NULL;
}

/* permessage-deflate, where the listener enables it and moongate's reader
 * will read the connection (lws's would take RSV1 for an error). */
static void handshake_deflate(mg_gw *gw, mg_upgrade *u, struct lws *wsi)
{
    const mg_slot *sl = listen_slot(wsi);
    char resp[PMD_RESPONSE_MAX];
    u->deflate = 0;
    if (!sl || !sl->fast || !sl->compression.enabled || !lwsc_reader_on(gw) || !gw->pmd_shared)
        return;
    if (!compress_negotiate(&sl->compression, u->ext_offer, &u->pmd, resp, sizeof(resp))) {
        if (u->ext_offer[0])
            log_debug("upgrade from %s: no extension offer accepted: %s", u->remote, u->ext_offer);
        return;
    }
    snprintf(u->ext_answer, sizeof(u->ext_answer), "%s", resp);
    u->deflate = 1;
}

/* Keep what the connection is built from: the headers before
 * handshake_extensions changes lws's copy. */
static void handshake_keep(mg_gw *gw, mg_upgrade *u, struct lws *wsi, const char *path)
{
    snprintf(u->path, sizeof(u->path), "%s", path);
    handshake_query(wsi, u->query, sizeof(u->query));
    handshake_remote(wsi, u->remote, sizeof(u->remote));
    u->headers_len = handshake_collect_headers(gw, wsi, u->headers, sizeof(u->headers));
}

int handshake_check(mg_gw *gw, struct lws *wsi, const char *upgrade)
{
    mg_upgrade *u = gw->upgrade;
    char path[512], buf[512];
    char names[HSMATCH_PROTOCOLS_MAX + 1], bind[HSMATCH_PROTOCOL_NAME_MAX + 1];
    int nnames;
    const char *why;

    u->wsi = NULL;
    handshake_hdr(wsi, WSI_TOKEN_GET_URI, path, sizeof(path));
    if (!path[0])
        return handshake_refuse(gw, wsi, 405, "method not allowed\n", "allow:", "GET");
    if (strcasecmp(upgrade, "websocket") != 0)
        return handshake_refuse(gw, wsi, 400, "unsupported upgrade\n", NULL, NULL);
    if (!listen_match_path(wsi, path))
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
    if ((why = handshake_offered(wsi, names, sizeof(names), &nnames, bind)) != NULL)
        return handshake_refuse(gw, wsi, 400, why, NULL, NULL);
    /* Browsers send Origin; other clients may not, and pass. */
    if (gw->cfg->norigins && lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) &&
        !hsmatch_origin_allowed(gw->cfg->origins, gw->cfg->norigins,
                                handshake_hdr(wsi, WSI_TOKEN_ORIGIN, buf, sizeof(buf))))
        return handshake_refuse(gw, wsi, 403, "origin not allowed\n", NULL, NULL);
    if (gw->draining)
        return handshake_refuse(gw, wsi, 503, "shutting down\n", NULL, NULL);
    if (gw->metrics->connections >= gw->cfg->max_connections ||
        gw->metrics->connections >= gw->conn_capacity)
        return handshake_refuse(gw, wsi, 503, "too many connections\n", NULL, NULL);

    handshake_keep(gw, u, wsi, path);
    if ((why = handshake_extensions(gw, u, wsi)) != NULL)
        return handshake_refuse(gw, wsi, 400, why, NULL, NULL);
    mg_request req = {u->path,
                      u->query,
                      u->remote,
                      u->headers,
                      u->headers_len,
                      names,
                      nnames,
                      handshake_req_header,
                      wsi};
    mg_handshake_answer ans;
    if (!script_on_handshake(gw, &req, &ans))
        return handshake_refuse(gw, wsi, ans.status, ans.body, NULL, NULL);
    if (ans.protocol[0] && !hsmatch_name_in(names, nnames, ans.protocol)) {
        log_error("on_handshake chose the subprotocol '%s', which the client from %s did not "
                  "offer: refused with 500",
                  ans.protocol, u->remote);
        return handshake_refuse(gw, wsi, 500, "internal error\n", NULL, NULL);
    }
    if (!ans.protocol[0])
        handshake_static_choice(wsi, names, nnames, ans.protocol);

    handshake_deflate(gw, u, wsi);
    u->wsi = wsi;
    memcpy(u->protocol, ans.protocol, sizeof(u->protocol));
    memcpy(u->bind_name, bind, sizeof(u->bind_name)); /* what lws looks up, found */
    return 0;
}

int handshake_filter(mg_gw *gw, struct lws *wsi)
{
    (void)wsi;
    gw->upgrade->bind_name[0] = '\0'; /* lws echoes no name: ADD_HEADERS writes ours */
    return 0;
}

/* Append "name: value\r\n" to the 101 at args->p. */
static int handshake_append(struct lws_process_html_args *args, const char *name, const char *value)
{
    int n = snprintf(args->p, (size_t)(args->max_len > 0 ? args->max_len : 0), "%s: %s\r\n", name,
                     value);
    if (n < 0 || n >= args->max_len)
        return -1;
    args->p += n;
    args->max_len -= n;
    return 0;
}

int handshake_add_headers(mg_gw *gw, struct lws *wsi, struct lws_process_html_args *args)
{
    mg_upgrade *u = gw->upgrade;
    if (u->wsi != wsi)
        return 1;
    if ((u->protocol[0] && handshake_append(args, "Sec-WebSocket-Protocol", u->protocol) != 0) ||
        (u->ext_answer[0] &&
         handshake_append(args, "Sec-WebSocket-Extensions", u->ext_answer) != 0)) {
        log_error("upgrade from %s: no room for the 101's headers", u->remote);
        return -1;
    }
    return 0;
}

const char *handshake_extensions_offer(const mg_gw *gw, const struct lws *wsi)
{
    const mg_upgrade *u = gw->upgrade;
    return u && u->wsi == wsi ? u->ext_offer : "";
}

int handshake_extensions_answer(mg_gw *gw, const struct lws *wsi, const char *value)
{
    mg_upgrade *u = gw->upgrade;
    if (!u || u->wsi != wsi || (value && strlen(value) >= sizeof(u->ext_answer)))
        return -1;
    snprintf(u->ext_answer, sizeof(u->ext_answer), "%s", value ? value : "");
    return 0;
}

mg_conn *handshake_accept(mg_gw *gw, struct lws *wsi)
{
    mg_upgrade *u = gw->upgrade;
    if (u->wsi != wsi) { /* not seen in CONFIRM_UPGRADE: lws always calls it first */
        log_error("upgrade without its checks: refused");
        return NULL;
    }
    u->wsi = NULL;
    mg_conn *c = conn_create(gw, wsi, u->path, u->query, u->remote, u->headers, u->headers_len,
                             u->protocol[0] ? u->protocol : NULL);
    if (c && u->deflate && compress_attach(gw, c, &u->pmd) != 0) {
        conn_destroy(gw, c); /* out of memory: the 101 promised compression */
        return NULL;
    }
    if (c)
        log_conn(MG_LOG_DEBUG, c->id, "connected from %s to %s%s%s", u->remote, u->path,
                 u->protocol[0] ? " with subprotocol " : "", u->protocol);
    return c;
}
