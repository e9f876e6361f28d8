/* conn.h — the client table and per-connection state.
 *
 * An mg_conn is created when a WebSocket upgrade completes and destroyed
 * when libwebsockets reports the socket closed.  It carries what the Lua
 * side can see and keep (id, path, query, remote, headers, name,
 * attributes, subscriptions) and the send queue.  Lua handles carry the id;
 * the one cached for the live script also keeps the pointer until
 * script_forget_conn, which runs before the connection is destroyed, so a
 * handle to a closed connection fails cleanly.  Ids are never reused. */
#ifndef MG_CONN_H
#define MG_CONN_H

#include <stdint.h>

#include "gw.h"
#include "sendq.h"
#include "utf8.h"
#include "value.h"

typedef enum {
    MG_CONN_OPEN,        /* normal */
    MG_CONN_CLOSING,     /* the gateway is closing it: flush, then close frame */
    MG_CONN_PEER_CLOSED, /* the client sent a close frame */
} mg_conn_state;

typedef struct mg_attr {
    char *key;
    mg_value val;
} mg_attr;

typedef struct mg_topic mg_topic;

/* What becomes of a connection once its queue is out (writer.h). */
typedef enum {
    MG_WR_OPEN,   /* nothing: frames go on leaving as they are queued */
    MG_WR_FINISH, /* shut the sending side: a protocol error was answered */
    MG_WR_SHUT,   /* shut: nothing more goes out, the peer's hang-up ends it */
    MG_WR_HANGUP  /* close the connection */
} mg_wr_end;

/* A connection's write state: writer.c alone changes it. */
typedef struct mg_wr {
    uint8_t end; /* mg_wr_end */
    uint8_t
        blocked;    /* moongate's writes: the kernel took part of one; the rest waits for POLLOUT */
    uint8_t paused; /* reading is off until POLLOUT (a write is pending) */
    uint8_t queued; /* on gw->flush_list */
} mg_wr;

/* Kept small: every open connection has one.  4-byte fields are paired
 * so no padding creeps in. */
struct mg_conn {
    uint64_t id;
    struct lws *wsi;
    mg_conn_state state;
    int close_code; /* why it closes (server reason, or the peer's code) */

    /* One allocation (conn_create): headers, then path, query, remote and
     * the subprotocol (conn_protocol). */
    char *path, *query, *remote;
    char *headers; /* "name\0value\0" pairs, names lower-case */
    size_t headers_len;
    char *name;         /* registered logical name, or NULL */
    char *close_reason; /* NULL until it closes (conn_set_close) */

    mg_attr *attrs;
    mg_topic **topics; /* subscriptions (pubsub.c) */
    uint32_t nattrs;
    uint32_t ntopics;

    mg_sendq q;

    /* Reassembly of fragmented messages (lws's reader)... */
    unsigned char *rx;
    size_t rx_len, rx_cap;
    unsigned rx_active : 1;    /* inside a message */
    unsigned rx_binary : 1;    /* its kind */
    unsigned closed_hook : 1;  /* on_disconnect has run */
    unsigned fast : 1;         /* moongate reads its socket (fastrx.c) ... */
    unsigned tls : 1;          /* ... through lws's TLS session, and writes with lws_write */
    unsigned rx_dead : 1;      /* nothing more is read (failed, or closed) */
    unsigned final_window : 1; /* sends allowed: on_disconnect of a peer close */
    unsigned rx_u8 : UTF8_STATE_BITS; /* its text's UTF-8 so far (lws's reader) */
    mg_wr wr;                  /* how q leaves (writer.c) */
    struct wsrx *wsrx;         /* ... and fastrx's partial frames (wsrx.c) */
    mg_pmd *pmd;               /* permessage-deflate, or NULL (compress.c) */
    int fd;                    /* its socket (conn_fd_bind), or -1 */
    int pre;                   /* fastrx: its bytes wait in read slot pre - 1; 0 none */
    int lua_ref;               /* cached Lua handle in the registry ... */
    uint32_t lua_ref_gen;      /* ... of this script generation (its low bits) ... */
    void *lua_handle;          /* ... and the handle itself, while it lives (mgl_conn.c) */

    int64_t since_ms;     /* when it connected: Unix time (the admin API's GET /clients) */
    int64_t last_rx_ms;   /* last frame of any kind from the client */
    int64_t next_ping_ms; /* when the heartbeat pings it next */
    double tokens;        /* message-rate bucket */
    int64_t tokens_ms;

    mg_conn *prev, *next; /* gw->conn_list */
    mg_conn *flush_next;  /* gw->flush_list, while wr.queued */
};

/* Send results. */
enum {
    MG_SEND_OK = 0,
    MG_SEND_CLOSED = -1,
    MG_SEND_DROPPED = -2,
    MG_SEND_EVICTED = -3,
    MG_SEND_NOMEM = -4
};

void conn_table_init(mg_gw *gw);
void conn_table_free(mg_gw *gw);

/* Takes ownership of none of the strings (they are copied). protocol: the
 * subprotocol the handshake chose, or NULL. NULL on OOM. */
mg_conn *conn_create(mg_gw *gw, struct lws *wsi, const char *path, const char *query,
                     const char *remote, const char *headers, size_t headers_len,
                     const char *protocol);
/* The subprotocol chosen for c, or NULL (kept after c->remote: no field). */
const char *conn_protocol(const mg_conn *c);
void conn_destroy(mg_gw *gw, mg_conn *c);

/* Every WebSocket connection by its socket descriptor, for the readers:
 * sized once at start, to the open-files limit.  0 or -1 (out of memory). */
int conn_fd_table_init(mg_gw *gw);
void conn_fd_table_free(mg_gw *gw);
/* c's socket is fd (c->fd), until conn_fd_unbind. */
void conn_fd_bind(mg_gw *gw, mg_conn *c, int fd);
void conn_fd_unbind(mg_gw *gw, mg_conn *c);
static inline mg_conn *conn_by_fd(const mg_gw *gw, int fd)
{
    return fd >= 0 && fd < gw->fd_cap ? gw->fd_conns[fd] : NULL;
}

mg_conn *conn_find(mg_gw *gw, uint64_t id);
mg_conn *conn_find_name(mg_gw *gw, const char *name);
/* c's name went to a newer connection (names.duplicate: replace), here or
 * on another worker, or, with reject, to an older one on another worker
 * whose claim crossed c's: c is closed with 4001 and reason. */
void conn_name_lost(mg_gw *gw, mg_conn *c, const char *reason);

/* Claims (with workers or a cluster; see conn.c): the stamp of our
 * client's claim of name (0: none); whether claim a beats claim b under
 * names.duplicate (replace: the newer; reject: the older; equal stamps go
 * by id); and a claim made elsewhere meeting ours: 1 if it stands (ours,
 * if any, lost: closed with 4001), 0 if ours does. */
int64_t conn_claim_stamp(mg_gw *gw, const char *name);
int conn_claim_wins(const mg_gw *gw, int64_t sa, uint64_t ia, int64_t sb, uint64_t ib);
int conn_claim_contest(mg_gw *gw, const char *name, uint64_t id, int64_t stamp);
/* Open (not closing) and still attached to a socket. */
int conn_is_open(const mg_conn *c);

const char *conn_header(const mg_conn *c, const char *name);

/* Register under a logical name.  Policy replace: the older holder is closed
 * with 4001; policy reject: returns -1 and sets *err. */
int conn_set_name(mg_gw *gw, mg_conn *c, const char *name, const char **err);

const mg_value *conn_attr_get(const mg_conn *c, const char *key);
int conn_attr_set(mg_conn *c, const char *key, const mg_value *v); /* nil deletes */

/* Queue a frame (copied) or a shared frame; applies the send-queue limit. */
int conn_send(mg_gw *gw, mg_conn *c, int opcode, const void *data, size_t len);
int conn_send_shared(mg_gw *gw, mg_conn *c, mg_buf *b);

/* However the peer behaves, a closing connection ends within
 * limits.close_timeout from now. */
void conn_arm_close_timeout(mg_gw *gw, mg_conn *c);

/* Queue a pong or close frame: not a message (not counted), and allowed
 * in any state while the socket is up. */
int conn_send_control(mg_gw *gw, mg_conn *c, int opcode, const void *data, size_t len);
const char *conn_send_error(int rc);

/* Record why it closes: code and reason (at most 123 bytes of it, what a
 * close frame can carry; copied). */
void conn_set_close(mg_conn *c, int code, const char *reason, size_t len);
/* The recorded close reason, "" if none. */
const char *conn_close_reason(const mg_conn *c);

/* Leave MG_CONN_OPEN for state (closing, or closed by the peer). */
void conn_leave_open(mg_gw *gw, mg_conn *c, mg_conn_state state);

/* Start a server-side close: queued frames are flushed first, then the
 * close frame goes out; with discard, what has not begun to go out is
 * dropped instead (a frame already partly written is still finished: the
 * stream is never cut mid-frame).  The connection ends when the peer
 * answers or after limits.close_timeout.  Idempotent. */
void conn_close(mg_gw *gw, mg_conn *c, int code, const char *reason, int discard);

#endif
