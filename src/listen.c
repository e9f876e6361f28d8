/* listen.c — the sockets moongate listens on (listen.h). */
#include "listen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "evpoll.h"
#include "fdguard.h"
#include "hsmatch.h"
#include "http.h"
#include "log.h"

/* lws must not ping or hang up on its own. */
static const lws_retry_bo_t listen_no_validity = {.secs_since_valid_ping = 0,
                                                  .secs_since_valid_hangup = 0};

/* moongate reads (and writes) this listener's connections (fastrx.c). */
int listen_is_fast(const mg_listener *l)
{
    return l->reader == MG_READER_MOONGATE;
}

static void listen_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int listen_strv_copy(char *const *v, size_t n, char ***out, size_t *nout)
{
    *nout = 0;
    if (!n)
        return 0;
    if (!(*out = calloc(n, sizeof(char *))))
        return -1;
    for (; *nout < n; (*nout)++)
        if (!((*out)[*nout] = strdup(v[*nout])))
            return -1;
    return 0;
}

static int listen_slot_init(mg_slot *sl, const mg_config *cfg, size_t i)
{
    const mg_listener *l = &cfg->listeners[i];
    sl->idx = i;
    sl->fast = listen_is_fast(l);
    sl->compression = l->compression;
    snprintf(sl->name, sizeof(sl->name), "listener%zu", i);
    if (listen_strv_copy(l->paths, l->npaths, &sl->paths, &sl->npaths) != 0)
        return -1;
    return listen_strv_copy(l->protocols, l->nprotocols, &sl->protocols, &sl->nprotocols);
}

static void listen_slot_free(mg_slot *sl)
{
    listen_strv_free(sl->paths, sl->npaths);
    listen_strv_free(sl->protocols, sl->nprotocols);
}

/* "/ws", or "/ws,/push" for a list, for the log. */
static void listen_paths_text(const mg_listener *l, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < l->npaths && n < len; i++) {
        int w = snprintf(buf + n, len - n, "%s%s", i ? "," : "", l->paths[i]);
        if (w < 0)
            break;
        n += (size_t)w;
    }
}

static struct lws_vhost *listen_vhost(mg_gw *gw, size_t i, const struct lws_protocols *protocols,
                                      char *err, size_t errlen)
{
    const mg_config *cfg = gw->cfg;
    const mg_listener *l = &cfg->listeners[i];
    mg_slot *sl = &gw->slots[i];
    struct lws_context_creation_info v;

    if (listen_slot_init(sl, cfg, i) != 0) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    memset(&v, 0, sizeof(v));
    v.vhost_name = sl->name;
    v.iface = l->host;
    v.port = l->port;
    v.protocols = protocols;
    v.user = sl;
    v.retry_and_idle_policy = &listen_no_validity;
    /* Waiting for request headers is bounded by the handshake timeout. */
    v.keepalive_timeout = (int)((cfg->handshake_timeout_ms + 999) / 1000);
    v.timeout_secs_ah_idle = (unsigned int)v.keepalive_timeout;
    v.alpn = "http/1.1";
    if (!strchr(l->host, ':'))
        v.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    if (l->tls_cert) {
        v.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT; /* lws checks it per vhost */
        v.ssl_cert_filepath = l->tls_cert;
        v.ssl_private_key_filepath = l->tls_key;
    }
    struct lws_vhost *vh = lws_create_vhost(gw->lws, &v);
    if (!vh) {
        snprintf(err, errlen,
                 "cannot listen on %s:%d (address in use or invalid, or bad TLS files)", l->host,
                 l->port);
        return NULL;
    }
    char paths[512];
    listen_paths_text(l, paths, sizeof(paths));
    log_info("listening on %s://%s:%d%s", l->tls_cert ? "wss" : "ws", l->host, l->port, paths);
    return vh;
}

static int listen_admin(mg_gw *gw, struct lws_protocols *protocols, char *err, size_t errlen)
{
    const mg_config *cfg = gw->cfg;
    struct lws_context_creation_info v;
    if (!cfg->admin_port)
        return 0;
    memset(&v, 0, sizeof(v));
    protocols[0].per_session_data_size = http_admin_session_size();
    v.vhost_name = "admin";
    v.iface = cfg->admin_host;
    v.port = cfg->admin_port;
    v.protocols = protocols;
    v.retry_and_idle_policy = &listen_no_validity;
    v.options = LWS_SERVER_OPTION_DISABLE_IPV6 * (strchr(cfg->admin_host, ':') == NULL);
    gw->admin_vhost = lws_create_vhost(gw->lws, &v);
    if (!gw->admin_vhost) {
        snprintf(err, errlen, "cannot listen on %s:%d for admin", cfg->admin_host, cfg->admin_port);
        return -1;
    }
    log_info("admin on http://%s:%d", cfg->admin_host, cfg->admin_port);
    return 0;
}

/* Descriptors kept for everything but WebSocket connections: listeners,
 * admin, broker, the event loop's own, files a script opens. */
#define LISTEN_SPARE_FDS 128

/* libwebsockets sizes its descriptor tables by the soft open-files limit
 * when the context is created, and accepts no descriptor beyond it; and
 * Debian's debug build scans the whole table at every close.  So the soft
 * limit is set to what max_connections needs: raised from a default of
 * 1024 (which would cap the gateway near 1,000 connections), and lowered
 * from a huge one (a 1M limit is an 8 MB scan per close).  A hard limit
 * below the need is reported, and bounds conn_capacity. */
void listen_fd_limit(mg_gw *gw)
{
    const mg_config *cfg = gw->cfg;
    struct rlimit rl;
    rlim_t want = (rlim_t)cfg->max_connections + cfg->max_handshakes + LISTEN_SPARE_FDS;
    gw->conn_capacity = cfg->max_connections;
    gw->hs_capacity = cfg->max_handshakes;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
        /* What there is goes to connections, an eighth of it (at least
         * 16) kept for handshakes. */
        want = rl.rlim_max;
        uint32_t room = want > LISTEN_SPARE_FDS * 2 ? (uint32_t)(want - LISTEN_SPARE_FDS)
                                                    : (uint32_t)(want / 2);
        uint32_t hs = room / 8 > 16 ? room / 8 : 16;
        gw->hs_capacity = hs < cfg->max_handshakes ? hs : cfg->max_handshakes;
        gw->conn_capacity = room > gw->hs_capacity ? room - gw->hs_capacity : 1;
        log_warn("open files: the hard limit (%llu) allows about %u connections and %u "
                 "handshakes at once, fewer than limits.max_connections (%u) and "
                 "limits.max_handshakes (%u); raise it (ulimit -Hn, systemd LimitNOFILE=)",
                 (unsigned long long)rl.rlim_max, gw->conn_capacity, gw->hs_capacity,
                 cfg->max_connections, cfg->max_handshakes);
    }
    if (rl.rlim_cur == want)
        return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        log_warn("open files: cannot set the limit to %llu: %s", (unsigned long long)want,
                 strerror(errno));
        return;
    }
    log_info("open files: limit %llu (was %llu) for limits.max_connections %u and "
             "limits.max_handshakes %u",
             (unsigned long long)want, (unsigned long long)was, cfg->max_connections,
             cfg->max_handshakes);
}

/* The handshake bound a config asks for, within what the open-files limit
 * set at start allows. */
uint32_t listen_max_handshakes(const mg_gw *gw, const mg_config *cfg)
{
    return cfg->max_handshakes < gw->hs_capacity ? cfg->max_handshakes : gw->hs_capacity;
}

/* Stop accepting on the WebSocket listeners.  lws 4.1.6's own way
 * (lws_context_deprecate) uses the listen wsi after freeing it, so the
 * listen sockets are found by port and replaced, with dup2(), by the read
 * end of a pipe nobody writes: the port is released at once (new connects
 * are refused) and lws goes on polling an fd that never fires.  The admin
 * listener stays up so /health can say "draining". */
void listen_stop_accepting(mg_gw *gw)
{
    int pfd[2];
    if (pipe(pfd) != 0)
        return;
    for (int fd = 0; fd < 65536; fd++) {
        int on = 0;
        socklen_t ol = sizeof(on);
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (fcntl(fd, F_GETFD) < 0)
            continue;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &ol) != 0 || !on ||
            getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
            continue;
        int port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                  : ((struct sockaddr_in *)&ss)->sin_port);
        for (size_t i = 0; i < gw->cfg->nlisteners; i++)
            if (gw->cfg->listeners[i].port == port) {
                dup2(pfd[0], fd);
                evpoll_forget(fd);
            }
    }
    close(pfd[0]);
    gw->drain_pipe_w = pfd[1]; /* kept open so the read ends never see EOF */
}

int listen_start(mg_gw *gw, const struct lws_protocols *ws, struct lws_protocols *admin, char *err,
                 size_t errlen)
{
    gw->vhosts = calloc(gw->cfg->nlisteners, sizeof(*gw->vhosts));
    gw->slots = calloc(gw->cfg->nlisteners, sizeof(*gw->slots));
    gw->nslots = gw->cfg->nlisteners;
    if (!gw->vhosts || !gw->slots) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* With workers, each binds every listener and the admin port with
     * SO_REUSEPORT: the kernel spreads clients, and whichever worker
     * gets an admin request answers for all (http.c). */
    fdguard_share_ports(gw->nworkers > 1);
    int bad = 0;
    for (size_t i = 0; !bad && i < gw->cfg->nlisteners; i++)
        bad = !(gw->vhosts[i] = listen_vhost(gw, i, ws, err, errlen));
    if (!bad)
        bad = listen_admin(gw, admin, err, errlen) != 0;
    fdguard_share_ports(0);
    return bad ? -1 : 0;
}

const mg_slot *listen_slot(struct lws *wsi)
{
    return lws_vhost_user(lws_get_vhost(wsi));
}

const char *listen_match_path(struct lws *wsi, const char *uri)
{
    const mg_slot *sl = listen_slot(wsi);
    int i = sl ? hsmatch_path(sl->paths, sl->npaths, uri) : -1;
    return i >= 0 ? sl->paths[i] : NULL;
}

int listen_fast(struct lws *wsi)
{
    mg_slot *sl = lws_vhost_user(lws_get_vhost(wsi));
    return sl && sl->fast;
}

int listen_any_fast(const mg_config *cfg)
{
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (listen_is_fast(&cfg->listeners[i]))
            return 1;
    return 0;
}

void listen_free(mg_gw *gw)
{
    if (gw->drain_pipe_w > 0)
        close(gw->drain_pipe_w);
    gw->drain_pipe_w = 0;
    for (size_t i = 0; gw->slots && i < gw->nslots; i++)
        listen_slot_free(&gw->slots[i]);
    free(gw->slots);
    free(gw->vhosts);
    gw->slots = NULL;
    gw->vhosts = NULL;
    gw->nslots = 0;
}
