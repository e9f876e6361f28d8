/* http.c — plain HTTP answers and the admin API (see http.h). */
#include "http.h"

#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "conn.h"
#include "gwctl.h"
#include "log.h"
#include "lwsmem.h"
#include "pubsub.h"

#define ADMIN_BODY_MAX (1024 * 1024)

static const char *http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return status < 500 ? "Client Error" : "Server Error";
    }
}

/* The response is built here rather than with lws's header helpers: before
 * lws has routed a request (as when an upgrade is refused) they answer
 * "HTTP/1.0" with no reason phrase, which some clients reject.  Every
 * response says "connection: close" and the caller closes after it. */
int http_respond(struct lws *wsi, int status, const char *ctype, const char *body, size_t len,
                 const char *extra_name, const char *extra_value)
{
    char head[512];
    int hn =
        snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\n"
                 "%s%s%s%sconnection: close\r\n\r\n",
                 status, http_reason(status), ctype, len, extra_name ? extra_name : "",
                 extra_name ? " " : "", extra_name ? extra_value : "", extra_name ? "\r\n" : "");
    if (hn < 0 || (size_t)hn >= sizeof(head))
        return -1;
    unsigned char *buf = malloc(LWS_PRE + (size_t)hn + len);
    if (!buf)
        return -1;
    memcpy(buf + LWS_PRE, head, (size_t)hn);
    if (len)
        memcpy(buf + LWS_PRE + hn, body, len);
    int n = lws_write(wsi, buf + LWS_PRE, (size_t)hn + len, LWS_WRITE_RAW);
    free(buf);
    return n < 0 ? -1 : 0;
}

/* ---- admin API ---- */

typedef struct {
    char uri[128];
    char *body;
    size_t len;
    int post;
} admin_session;

size_t http_admin_session_size(void)
{
    return sizeof(admin_session);
}

/* Answer and close (the response says "connection: close"). */
static int admin_reply(struct lws *wsi, int status, const char *ctype, const char *body)
{
    http_respond(wsi, status, ctype, body, strlen(body), NULL, NULL);
    return -1;
}

static int admin_authorized(mg_gw *gw, struct lws *wsi)
{
    const char *token = gw->cfg->admin_token;
    char auth[512];
    if (!token)
        return 1;
    if (lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION) <= 0)
        return 0;
    return strncmp(auth, "Bearer ", 7) == 0 && strcmp(auth + 7, token) == 0;
}

/* Escape s as a JSON string body into out. */
static void admin_json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", ch);
        } else {
            out[n++] = (char)ch;
        }
    }
    out[n] = '\0';
}

static int admin_get(mg_gw *gw, struct lws *wsi, const char *uri)
{
    if (strcmp(uri, "/health") == 0) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"status\":\"%s\",\"connections\":%llu,\"generation\":%llu,"
                 "\"broker\":\"%s\"}\n",
                 gw->draining ? "draining" : "ok", (unsigned long long)gw->metrics.connections,
                 (unsigned long long)gw->generation, broker_state(gw));
        return admin_reply(wsi, gw->draining ? 503 : 200, "application/json", body);
    }
    if (strcmp(uri, "/metrics") == 0) {
        char body[8192];
        lwsmem_stats st;
        lwsmem_get_stats(&st);
        mg_mem_metrics mem = {.resident_bytes = metrics_resident_bytes(),
                              .lws_heap_bytes = st.heap_bytes,
                              .rx_buffers = st.rx_slots,
                              .rx_releases = st.rx_releases,
                              .kept_bytes = st.warm_bytes,
                              .trimmed = st.trimmed};
        size_t n = metrics_render(&gw->metrics, gw->generation, &mem, body, sizeof(body) - 1);
        body[n] = '\0';
        return admin_reply(wsi, 200, "text/plain; version=0.0.4", body);
    }
    return admin_reply(wsi, 404, "text/plain", "not found\n");
}

static int admin_post(mg_gw *gw, struct lws *wsi, admin_session *s)
{
    char body[2300];
    if (strcmp(s->uri, "/reload") == 0) {
        if (gwctl_reload(gw) == 0) {
            snprintf(body, sizeof(body), "{\"ok\":true,\"generation\":%llu}\n",
                     (unsigned long long)gw->generation);
            return admin_reply(wsi, 200, "application/json", body);
        }
        char esc[2048];
        admin_json_escape(esc, sizeof(esc), gw->last_reload_error);
        snprintf(body, sizeof(body), "{\"ok\":false,\"error\":\"%s\"}\n", esc);
        return admin_reply(wsi, 500, "application/json", body);
    }
    if (strcmp(s->uri, "/broadcast") == 0) {
        long n = pubsub_broadcast(gw, MG_OP_TEXT, s->body ? s->body : "", s->len, 0);
        log_info("admin broadcast of %zu bytes to %ld connections", s->len, n);
        snprintf(body, sizeof(body), "{\"ok\":%s,\"sent\":%ld}\n", n < 0 ? "false" : "true", n);
        return admin_reply(wsi, n < 0 ? 500 : 200, "application/json", body);
    }
    return admin_reply(wsi, 404, "text/plain", "not found\n");
}

static int admin_body(admin_session *s, const void *in, size_t len)
{
    if (s->len + len > ADMIN_BODY_MAX)
        return -1;
    char *nb = realloc(s->body, s->len + len + 1);
    if (!nb)
        return -1;
    if (len)
        memcpy(nb + s->len, in, len);
    s->body = nb;
    s->len += len;
    s->body[s->len] = '\0';
    return 0;
}

int http_admin_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
    mg_gw *gw = lws_context_user(lws_get_context(wsi));
    admin_session *s = user;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        if (!admin_authorized(gw, wsi))
            return admin_reply(wsi, 401, "text/plain", "unauthorized\n");
        snprintf(s->uri, sizeof(s->uri), "%s", (const char *)in);
        s->post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
        if (!s->post)
            return admin_get(gw, wsi, s->uri);
        if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
            return admin_post(gw, wsi, s); /* no body coming */
        return 0;                          /* wait for the body */
    case LWS_CALLBACK_HTTP_BODY:
        if (admin_body(s, in, len) != 0)
            return admin_reply(wsi, 413, "text/plain", "body too large\n");
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return admin_post(gw, wsi, s);
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (s) {
            free(s->body);
            s->body = NULL;
            s->len = 0;
        }
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}
