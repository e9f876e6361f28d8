/* admin_ops.h — what the admin API's client and topic endpoints do to the
 * gateway: GET /clients, GET /topics, POST /clients/{id|name}/close,
 * POST /send, POST /publish.
 *
 * Each writes its JSON answer into out and returns the HTTP status; http.c
 * routes the request (admin.h) and sends the answer.  A refusal is
 * {"error": "..."}.
 *
 * They see this process's clients.  With `workers: N` each worker holds
 * its own and the request reaches one of them, so the listings and close
 * answer 501 there; send and publish go where gw.send and gw.publish go
 * (peer.c, cluster.c), and say so ("forwarded"). */
#ifndef MG_ADMIN_OPS_H
#define MG_ADMIN_OPS_H

#include "admin.h"
#include "gw.h"
#include "json.h"

int admin_ops_clients(mg_gw *gw, const admin_route *rt, json_buf *out);
int admin_ops_topics(mg_gw *gw, const admin_route *rt, json_buf *out);
int admin_ops_close(mg_gw *gw, const admin_route *rt, const admin_body *b, json_buf *out);
int admin_ops_send(mg_gw *gw, const admin_body *b, json_buf *out);
int admin_ops_publish(mg_gw *gw, const admin_body *b, json_buf *out);

/* {"error": msg} with status. */
int admin_ops_error(json_buf *out, int status, const char *msg);

#endif
