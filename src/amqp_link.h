/* amqp_link.h — the RabbitMQ connection, on a thread of its own.
 *
 * The event loop never touches the broker's socket, so a slow or dead
 * broker cannot stall WebSocket traffic.  The loop posts commands (settle
 * a delivery, publish, stop consuming, stop) into the link's inbox and
 * wakes the thread; the thread posts events (up, down, a delivery, the
 * outcome of a publish) into the outbox and wakes the loop through an
 * eventfd the loop polls.  Both mailboxes are FIFO lists under one mutex.
 *
 * The thread connects, declares broker.queues, sets prefetch, enables
 * publisher confirms and consumes broker.consume; on any failure it says
 * "down" and retries with doubling, jittered backoff.  Every connection
 * has an epoch number: a settle command for a delivery of an older epoch
 * is dropped (RabbitMQ requeued that delivery when the connection died).
 * Publishes wait in the thread while the broker is down and are sent,
 * or re-sent when unconfirmed, after the reconnect. */
#ifndef MG_AMQP_LINK_H
#define MG_AMQP_LINK_H

#include <amqp.h>
#include <stdint.h>

#include "config.h"

/* A consumed message: what on_task sees.  Owned by whoever holds it. */
typedef struct link_delivery {
    amqp_message_t msg; /* body and properties, in msg.pool */
    char *exchange, *routing_key, *queue;
    uint64_t tag;
    int redelivered;
} link_delivery;

typedef enum { LINK_EV_UP, LINK_EV_DOWN, LINK_EV_DELIVERY, LINK_EV_PUBLISHED } link_ev_type;

typedef struct link_event {
    link_ev_type type;
    uint64_t epoch;    /* connection the event belongs to */
    char *text;        /* UP: what is consumed; DOWN / failed PUBLISHED: why */
    uint32_t retry_ms; /* DOWN: next attempt in */
    link_delivery *d;  /* DELIVERY */
    uint64_t pub_id;   /* PUBLISHED */
    int ok;            /* PUBLISHED: confirmed by the broker */
    struct link_event *next;
} link_event;

typedef enum {
    LINK_CMD_ACK,
    LINK_CMD_REQUEUE,
    LINK_CMD_REJECT,
    LINK_CMD_PUBLISH,
    LINK_CMD_CANCEL, /* stop consuming (drain) */
    /* A member of a cluster (link_start_member). */
    LINK_CMD_SEND,   /* publish without confirm, dropped while down: exchange, key, body */
    LINK_CMD_BIND,   /* bind the member's queue to <prefix>.publish with key */
    LINK_CMD_UNBIND, /* ... and unbind */
} link_cmd_type;

typedef struct link_cmd {
    link_cmd_type type;
    uint64_t epoch, tag; /* settle; for a forward, the original delivery */
    /* PUBLISH: everything below is owned by the command. */
    uint64_t pub_id;
    int forward; /* ack (epoch, tag) once the copy is confirmed */
    amqp_bytes_t exchange, routing_key, body;
    amqp_basic_properties_t props; /* strings and headers live in pool */
    amqp_pool_t pool;
    /* Thread-private. */
    uint64_t seq; /* publish sequence number on the channel */
    int returned; /* the broker returned it: no queue to route to */
    struct link_cmd *next;
} link_cmd;

typedef struct amqp_link amqp_link;

/* Start the thread for cfg (copied).  NULL with err on failure. */
amqp_link *link_start(const mg_broker_config *cfg, char *err, size_t errlen);

/* A member of a cluster (cluster.c), on cfg's broker but with none of its
 * queues or consumers.  On every connection the thread declares the
 * exchanges <prefix>.direct (direct), <prefix>.publish (direct) and
 * <prefix>.fanout (fanout), and a queue the broker names, exclusive and
 * auto-deleted (gone with the connection: a dead member leaves nothing
 * behind), holding at most queue_max messages (the oldest are dropped
 * beyond); binds it to <prefix>.direct with key, to <prefix>.fanout if
 * fanout is set (a node's speaker), and to <prefix>.publish with every
 * topic bound so far (LINK_CMD_BIND); and
 * consumes it without acks.  LINK_CMD_SEND publishes without confirms;
 * while the broker is down sends are dropped, not kept. */
typedef struct link_member {
    const char *prefix;
    const char *key;
    uint32_t queue_max;
    int fanout;
} link_member;
amqp_link *link_start_member(const mg_broker_config *cfg, const link_member *m, char *err,
                             size_t errlen);
/* Sends posted and not yet handed to the broker (the caller bounds it). */
uint64_t link_pending_sends(amqp_link *l);
/* Readable when events wait; the loop polls it. */
int link_event_fd(const amqp_link *l);
/* Take every pending event, oldest first (resets the eventfd). */
link_event *link_take(amqp_link *l);
/* Hand a command to the thread (it owns it from now on). */
void link_post(amqp_link *l, link_cmd *c);
/* Stop: wait up to wait_ms for unconfirmed publishes, close, join, free.
 * Returns the number of publishes that never reached the broker. */
size_t link_stop(amqp_link *l, uint32_t wait_ms);

link_cmd *link_cmd_new(link_cmd_type type);
void link_cmd_free(link_cmd *c);
void link_event_free(link_event *e);
void link_delivery_free(link_delivery *d);

#endif
