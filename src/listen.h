/* listen.h — the sockets moongate listens on.
 *
 * One lws vhost per WebSocket listener and one for the admin port, with
 * what lws keeps pointers to for their whole life (mg_slot: copies, so a
 * reload that frees the old config cannot pull them away; listeners are
 * fixed at start, a changed listen section needs a restart); the
 * open-files limit they are sized by; and, for a drain, the end of
 * accepting. */
#ifndef MG_LISTEN_H
#define MG_LISTEN_H

#include "gw.h"

struct mg_slot {
    size_t idx;
    int fast; /* moongate reads and writes its connections (fastrx.c, writer.c) */
    char name[32];
    char **paths; /* its WebSocket paths (hsmatch_path) */
    size_t npaths;
    char **protocols; /* listen[].protocols, or NULL */
    size_t nprotocols;
    pmd_config compression; /* listen[].compression (compress.h) */
};

/* Set the open-files limit to what limits.max_connections and
 * limits.max_handshakes need (listen.c says why), and record in gw what
 * the hard limit allows. */
void listen_fd_limit(mg_gw *gw);
/* The handshake bound a config asks for, within what the open-files limit
 * set at start allows (limits.max_handshakes). */
uint32_t listen_max_handshakes(const mg_gw *gw, const mg_config *cfg);

/* A vhost per listener with protocols ws, and the admin vhost with admin
 * (its session size is set here).  0, or -1 with the reason in err. */
int listen_start(mg_gw *gw, const struct lws_protocols *ws, struct lws_protocols *admin, char *err,
                 size_t errlen);
/* Stop accepting on the WebSocket listeners; the admin port stays up. */
void listen_stop_accepting(mg_gw *gw);
void listen_free(mg_gw *gw);

/* The listener wsi arrived on (NULL for the admin port). */
const mg_slot *listen_slot(struct lws *wsi);
/* The entry of its paths that uri matches (hsmatch_path), or NULL. */
const char *listen_match_path(struct lws *wsi, const char *uri);
/* 1 if moongate reads the connections of the listener wsi arrived on
 * (reader: moongate); listen_is_fast for a listener's
 * config, listen_any_fast for any of cfg's. */
int listen_fast(struct lws *wsi);
int listen_is_fast(const mg_listener *l);
int listen_any_fast(const mg_config *cfg);

#endif
