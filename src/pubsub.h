/* pubsub.h — topics, publish and broadcast.
 *
 * A topic is a set of connections.  Publishing or broadcasting encodes the
 * frame once into a shared block that every recipient's send queue
 * references; nothing is copied per client. */
#ifndef MG_PUBSUB_H
#define MG_PUBSUB_H

#include <stddef.h>
#include "gw.h"

struct mg_topic {
    char *name;
    mg_conn **subs;
    size_t nsubs, cap;
};

void pubsub_init(mg_gw *gw);
void pubsub_free(mg_gw *gw);

int pubsub_subscribe(mg_gw *gw, mg_conn *c, const char *topic); /* 0 / -1 OOM */
void pubsub_unsubscribe(mg_gw *gw, mg_conn *c, const char *topic);
void pubsub_unsubscribe_all(mg_gw *gw, mg_conn *c);

/* Returns the number of connections the frame was queued to, -1 on OOM. */
long pubsub_publish(mg_gw *gw, const char *topic, int opcode, const void *data, size_t len);
long pubsub_broadcast(mg_gw *gw, int opcode, const void *data, size_t len, uint64_t except_id);

#endif
