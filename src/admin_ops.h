/* admin_ops.h — what the admin API's client and topic endpoints do to the
 * gateway: GET /clients, GET /topics, POST /clients/{id|name}/close,
 * POST /send, POST /publish.
 *
 * Each writes its JSON answer into out and returns the HTTP status; http.c
 * routes the request (admin.h) and sends the answer.  A refusal is
 * {"error": "..."}.
 *
 * They see this process's clients.  With `workers: N` each worker holds
 * its own and the request reaches one of them: the listings and close are
 * then asked of every worker (admin_fanout.c), each answering with its
 * part (admin_ops_*_part, admin_ops_close_here); send and publish go where
 * gw.send and gw.publish go (peer.c, cluster.c), and say so
 * ("forwarded"). */
#ifndef MG_ADMIN_OPS_H
#define MG_ADMIN_OPS_H

#include "admin.h"
#include "gw.h"
#include "json.h"

int admin_ops_clients(mg_gw *gw, const admin_route *rt, json_buf *out);
int admin_ops_topics(mg_gw *gw, const admin_route *rt, json_buf *out);
int admin_ops_close(mg_gw *gw, const admin_route *rt, const admin_body *b, json_buf *out);
/* This process's part of a page (admin_merge.h): limit entries at most,
 * after the cursor after= (NULL: from the start).  0, or -1 out of
 * memory. */
int admin_ops_clients_part(mg_gw *gw, unsigned limit, const char *after, json_buf *part);
int admin_ops_topics_part(mg_gw *gw, unsigned limit, const char *after, json_buf *part);
/* Close the open client t[0..n) names (an id, else a name) if this
 * process holds it, with code and reason (or NULL): its id, or 0. */
uint64_t admin_ops_close_here(mg_gw *gw, const char *t, size_t n, int code, const char *reason);
/* 404 {"error": "no such client: " t} */
int admin_ops_no_such_target(json_buf *out, const char *t, size_t n);

int admin_ops_send(mg_gw *gw, const admin_body *b, json_buf *out);
int admin_ops_publish(mg_gw *gw, const admin_body *b, json_buf *out);

/* {"error": msg} with status. */
int admin_ops_error(json_buf *out, int status, const char *msg);

#endif
