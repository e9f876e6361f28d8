/* admin_fanout.h — GET /clients, GET /topics and POST /clients/{id|name}/close
 * with `workers: N`, where each worker holds its own clients.
 *
 * The worker the kernel hands the request to (the front) asks every
 * other worker for its part over peer.c, makes its own, and answers once
 * all have answered or ADMIN_FANOUT_WAIT_MS has passed.  A listing then
 * answers 200 with what arrived, adding "partial":true and "missing":[k,
 * ...]; a close that no worker which answered could do answers 503 with
 * "missing" (the client may be on a worker that did not answer), and 404
 * only when every worker said it has no such client.  A close the front
 * can do itself is done at once, without asking.
 *
 * The answer is asynchronous: http.c keeps the request's id (never a
 * pointer into this file), is woken with lws_callback_on_writable, and
 * takes the answer by id; a connection that closes first forgets its id,
 * and an answer that arrives later finds nothing.  At most
 * ADMIN_FANOUT_MAX requests wait at once (503 beyond); each holds the
 * workers' parts (admin_merge.h) until it is answered, forgotten, or the
 * worker that owes one ends. */
#ifndef MG_ADMIN_FANOUT_H
#define MG_ADMIN_FANOUT_H

#include <stdint.h>

#include "admin.h"
#include "gw.h"
#include "json.h"
#include "peer.h"

#define ADMIN_FANOUT_MAX 16
#define ADMIN_FANOUT_WAIT_MS 2000

/* Start the request rt (body b for a close, else NULL) that came on wsi:
 * 0 and *req set, its answer comes later (admin_fanout_take); or an HTTP
 * status with the answer in out (done at once, or refused). */
int admin_fanout_start(mg_gw *gw, struct lws *wsi, const admin_route *rt, const admin_body *b,
                       uint32_t *req, json_buf *out);
/* The answer to req, once wsi was made writable: its status with the JSON
 * in out, and req is gone; 0 while it is still waiting; 500 with an error
 * if req is unknown. */
int admin_fanout_take(mg_gw *gw, uint32_t req, json_buf *out);
/* The connection that asked req has closed. */
void admin_fanout_forget(mg_gw *gw, uint32_t req);

/* From peer.c: worker k asks for this worker's part of q; worker k's part
 * of request req arrived; worker k ended (or its link did): it owes no
 * answer any more. */
void admin_fanout_on_query(mg_gw *gw, uint32_t k, const peers_admin_query *q);
void admin_fanout_on_reply(mg_gw *gw, uint32_t k, uint32_t req, const void *part, size_t len);
void admin_fanout_on_gone(mg_gw *gw, uint32_t k);

/* Free every waiting request (before the lws context goes). */
void admin_fanout_stop(mg_gw *gw);

#endif
