/* broker.h — the event loop's side of the RabbitMQ bridge.
 *
 * Owns the link thread (amqp_link.c), the table of deliveries the scripts
 * have not settled yet, and the count of publishes not yet confirmed.  It
 * turns the link's events into hooks (on_task, on_broker) and the scripts'
 * decisions (ack, requeue, reject, forward, publish) into link commands.
 *
 * The rules it enforces, whatever the script does:
 *  - a delivery is settled at most once; after the broker connection it
 *    came on is lost it is "lost" (RabbitMQ requeued it) and settling it
 *    fails with a clear error;
 *  - a delivery assigned to a connection is requeued when that connection
 *    closes still holding it (after on_disconnect had its chance);
 *  - a delivery no connection owns and no live Lua handle references (its
 *    handle was garbage-collected, or a reload's new script did not pick it
 *    up) is requeued: never leaked;
 *  - while the gateway drains, new deliveries are requeued at once. */
#ifndef MG_BROKER_H
#define MG_BROKER_H

#include <stdint.h>

#include "amqp_link.h"
#include "gw.h"

typedef enum {
    MG_DLV_UNSETTLED,
    MG_DLV_FORWARDING, /* a copy is being published; acked when confirmed */
} mg_delivery_state;

typedef struct mg_delivery {
    uint64_t id;    /* gateway-unique, never reused */
    uint64_t epoch; /* broker connection it arrived on */
    link_delivery *d;
    mg_delivery_state state;
    uint64_t owner;  /* connection id, 0 = none */
    uint64_t pub_id; /* MG_DLV_FORWARDING: the copy's publish */
    int handed;      /* given to on_task */
    struct mg_delivery *prev, *next;
} mg_delivery;

typedef struct mg_broker mg_broker;

/* Start the link if the config has a broker: section.  0 or -1 with err. */
int broker_start(mg_gw *gw, char *err, size_t errlen);
/* Stop consuming (drain). */
void broker_drain(mg_gw *gw);
/* Stop the link: pending publishes get up to 2 s to be confirmed. */
void broker_stop(mg_gw *gw);
/* The link's event fd (-1 without a broker), and what to do when it fires. */
int broker_fd(const mg_gw *gw);
void broker_on_events(mg_gw *gw);

/* "up", "down" or "off". */
const char *broker_state(const mg_gw *gw);

mg_delivery *broker_find(mg_gw *gw, uint64_t id);
/* Unsettled deliveries, in arrival order (iterate with ->next). */
mg_delivery *broker_first(mg_gw *gw);

/* Decisions.  Each returns NULL, or why it could not be done.  how is
 * LINK_CMD_ACK, LINK_CMD_REQUEUE or LINK_CMD_REJECT. */
const char *broker_settle(mg_gw *gw, mg_delivery *d, link_cmd_type how);
/* Publish c (a LINK_CMD_PUBLISH the caller filled) as a copy of d. */
const char *broker_forward(mg_gw *gw, mg_delivery *d, link_cmd *c);
/* Publish c; the broker takes ownership of c either way. */
const char *broker_publish(mg_gw *gw, link_cmd *c);

/* A connection closed: requeue what it still holds. */
void broker_conn_closed(mg_gw *gw, uint64_t conn_id);
/* A new script generation is live: requeue what it did not pick up, and
 * give it what no script has seen yet. */
void broker_after_reload(mg_gw *gw);
/* The live script's handle for delivery id was garbage-collected. */
void broker_handle_dropped(mg_gw *gw, uint64_t id);

#endif
