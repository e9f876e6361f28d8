/* peer.h — the links between the worker processes of one gateway.
 *
 * With `workers: N` each worker listens on an abstract unix socket named
 * after the shared key and its number, and opens a link to another worker
 * the first time it has something for it.  Over these links goes what
 * makes N workers behave as one gateway: a send to a client another worker
 * holds, a publish to a topic other workers have subscribers for, a
 * broadcast, a name claim, and which topics each worker has subscribers
 * for (so a publish goes only where it is wanted).  Each receiving worker
 * encodes the frame once for its own clients.
 *
 * Nothing here blocks the loop: a link is written without waiting, what
 * the socket does not take is queued, and a queue past PEER_QUEUE_MAX
 * (a worker stopped or too slow to read) drops what comes next, counted
 * in moongate_peer_dropped_total.  A link to a worker that is not up
 * (restarting) drops too.  Order is kept per link: what one worker sends
 * another arrives in the order it was sent.
 *
 * Every worker keeps a directory of the names and topics the others hold,
 * built from their claims; a worker that starts says hello and is told
 * everyone's, and a worker's entries go when it does.  The directory is
 * eventually consistent: two connections claiming one name at once on
 * two workers are both told yes, then the claims cross and the policy's
 * loser is closed with 4001 on its worker (names.duplicate: replace, the
 * older; reject, the newer). */
#ifndef MG_PEER_H
#define MG_PEER_H

#include <stddef.h>
#include <stdint.h>

#include "gw.h"

/* What a link may hold unsent before messages on it are dropped. */
#define PEER_QUEUE_MAX (16u << 20)

/* Listen for the other workers and adopt the listener into the loop.  0,
 * or -1 with err.  A no-op with one worker. */
int peers_start(mg_gw *gw, char *err, size_t errlen);
void peers_stop(mg_gw *gw);

/* wsi is a descriptor of peer.c's in the loop, and it was readable:
 * handled (1), or not one of ours (0). */
int peers_on_readable(mg_gw *gw, struct lws *wsi);
/* lws is closing wsi: forget it if it is ours. */
void peers_on_close(mg_gw *gw, struct lws *wsi);

/* Write what was queued during this loop turn (server_run). */
void peers_flush(mg_gw *gw);

/* Outgoing: each does nothing with one worker. */
/* Hand a message for client id to the worker that holds it: 1 if id is
 * another worker's (handed on, or dropped if that worker is down), 0 if
 * it is ours. */
int peers_send_id(mg_gw *gw, uint64_t id, int opcode, const void *data, size_t len);
/* To the worker whose client claimed name: 1 handed on, 0 no worker has
 * claimed it. */
int peers_send_name(mg_gw *gw, const char *name, int opcode, const void *data, size_t len);
/* To every worker with subscribers to topic. */
void peers_publish(mg_gw *gw, const char *topic, int opcode, const void *data, size_t len);
/* To every other worker; except_id is a client left out, or 0. */
void peers_broadcast(mg_gw *gw, int opcode, const void *data, size_t len, uint64_t except_id);

/* Names across workers (conn.c).  Before conn id takes name: 0, or -1
 * with names.duplicate: reject when another worker's client holds it. */
int peers_name_free(mg_gw *gw, const char *name);
/* conn id took name (its claim stamped as conn.c did) / let it go
 * (renamed, closed). */
void peers_claim(mg_gw *gw, const char *name, uint64_t id, int64_t stamp);
void peers_unclaim(mg_gw *gw, const char *name, uint64_t id);

/* A claim of name (id, stamp) made on another node won here: forget
 * another worker's holder if it loses to it (its worker closes it). */
void peers_name_lost(mg_gw *gw, const char *name, uint64_t id, int64_t stamp);

/* cluster.c's messages between the workers of a node: frame, from or
 * about member, to worker k, or to every other worker if k is 0 (the
 * receiver hands member and frame to cluster_on_relay). */
void peers_relay(mg_gw *gw, uint32_t k, const char *member, const void *frame, size_t len);
/* Another worker of this node holds name (as far as this one knows). */
int peers_has_name(mg_gw *gw, const char *name);
/* Every name another worker of this node holds: fn(arg, name, worker,
 * id, stamp). */
typedef void (*peers_name_fn)(void *arg, const char *name, uint32_t worker, uint64_t id,
                              int64_t stamp);
void peers_each_name(mg_gw *gw, peers_name_fn fn, void *arg);

/* This worker's first subscriber to topic came (on 1) or its last went. */
void peers_interest(mg_gw *gw, const char *topic, int on);
/* Topics with subscribers on any worker: this one's, and those the others
 * have told of.  Each worker's word arrives in order with its other
 * frames, so once a worker has answered an admin query, what it said
 * before is counted. */
size_t peers_topics_total(mg_gw *gw);

/* The admin API's listings and close across workers (admin_fanout.c): a
 * query to another worker, and its part of the answer (admin_merge.h). */
typedef struct peers_admin_query {
    uint32_t req;       /* the asking worker's request id */
    uint8_t action;     /* ADMIN_CLIENTS, ADMIN_TOPICS or ADMIN_CLOSE (admin.h) */
    uint32_t limit;     /* listings: the page size */
    int32_t code;       /* close: the close code */
    const char *arg;    /* listings: after= (NULL: none); close: the target */
    size_t arg_len;     /* ... this long (at most 65535 bytes) */
    const char *reason; /* close: the reason, or NULL */
    int64_t expires_ms; /* gw_clock_ms() (one clock for every process of the machine)
                           after which the asker no longer waits */
} peers_admin_query;
/* Ask worker k: 0 on its way, -1 if k cannot be reached (not up, or its
 * link is full). */
int peers_admin_ask(mg_gw *gw, uint32_t k, const peers_admin_query *q);
/* Worker k's query req is answered with part. */
void peers_admin_answer(mg_gw *gw, uint32_t k, uint32_t req, const void *part, size_t len);

#endif
