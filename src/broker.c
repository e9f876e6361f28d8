/* broker.c — deliveries in flight and the link's events (see broker.h). */
#include "broker.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "script.h"

#define BROKER_SWEEP_US (1000 * LWS_US_PER_MS) /* orphan check: once a second */
#define BROKER_STOP_WAIT_MS 2000

struct mg_broker {
    mg_gw *gw;
    amqp_link *link;
    struct lws *wsi; /* the link's event fd, adopted into the loop */
    int up;
    uint64_t epoch;
    dict by_id;  /* id -> mg_delivery */
    dict by_pub; /* pub_id -> mg_delivery being forwarded */
    mg_delivery *head, *tail;
    uint64_t next_id, next_pub_id;
    uint64_t pub_pending; /* publishes the broker has not confirmed yet */
    uint32_t pub_max;     /* broker.publish_buffer (the config may change on reload) */
    lws_sorted_usec_list_t sweep;
};

/* ------------------------------------------------------------ the table */

static void broker_link_in(mg_broker *b, mg_delivery *d)
{
    d->prev = b->tail;
    d->next = NULL;
    if (b->tail)
        b->tail->next = d;
    else
        b->head = d;
    b->tail = d;
}

/* Forget d, telling the live script's handle how it ended. */
static void broker_forget(mg_gw *gw, mg_delivery *d, const char *final)
{
    mg_broker *b = gw->broker;
    dict_del(&b->by_id, &d->id, sizeof(d->id));
    if (d->state == MG_DLV_FORWARDING)
        dict_del(&b->by_pub, &d->pub_id, sizeof(d->pub_id));
    if (d->prev)
        d->prev->next = d->next;
    else
        b->head = d->next;
    if (d->next)
        d->next->prev = d->prev;
    else
        b->tail = d->prev;
    if (gw->script)
        script_msg_settled(gw->script, d->id, final);
    gw->metrics->broker_unsettled--;
    link_delivery_free(d->d);
    free(d);
}

mg_delivery *broker_find(mg_gw *gw, uint64_t id)
{
    return gw->broker ? dict_get_u64(&gw->broker->by_id, id) : NULL;
}

mg_delivery *broker_first(mg_gw *gw)
{
    return gw->broker ? gw->broker->head : NULL;
}

const char *broker_state(const mg_gw *gw)
{
    return !gw->broker ? "off" : gw->broker->up ? "up" : "down";
}

/* ------------------------------------------------------------ decisions */

static const char *broker_usable(mg_gw *gw, mg_delivery *d)
{
    mg_broker *b = gw->broker;
    if (d->state == MG_DLV_FORWARDING)
        return "already settled (being forwarded)";
    if (!b->up || d->epoch != b->epoch) {
        gw->metrics->broker_lost++;
        broker_forget(gw, d, "lost");
        return "broker connection lost: the broker requeued it";
    }
    return NULL;
}

const char *broker_settle(mg_gw *gw, mg_delivery *d, link_cmd_type how)
{
    const char *why = broker_usable(gw, d);
    if (why)
        return why;
    link_cmd *c = link_cmd_new(how);
    if (!c)
        return "out of memory";
    c->epoch = d->epoch;
    c->tag = d->d->tag;
    link_post(gw->broker->link, c);
    if (how == LINK_CMD_ACK)
        gw->metrics->broker_acks++;
    else if (how == LINK_CMD_REQUEUE)
        gw->metrics->broker_requeues++;
    else
        gw->metrics->broker_rejects++;
    broker_forget(gw, d,
                  how == LINK_CMD_ACK       ? "acked"
                  : how == LINK_CMD_REQUEUE ? "requeued"
                                            : "rejected");
    return NULL;
}

static const char *broker_send(mg_gw *gw, link_cmd *c)
{
    mg_broker *b = gw->broker;
    if (b->pub_pending >= b->pub_max) {
        link_cmd_free(c);
        gw->metrics->broker_publish_failures++;
        return "broker publish buffer full";
    }
    c->type = LINK_CMD_PUBLISH;
    c->pub_id = ++b->next_pub_id;
    b->pub_pending++;
    gw->metrics->broker_published++;
    link_post(b->link, c);
    return NULL;
}

const char *broker_forward(mg_gw *gw, mg_delivery *d, link_cmd *c)
{
    const char *why = broker_usable(gw, d);
    if (why) {
        link_cmd_free(c);
        return why;
    }
    c->forward = 1;
    c->epoch = d->epoch;
    c->tag = d->d->tag;
    /* Found by the copy's publish id when the broker confirms it (then d
     * is acked): entered before the copy goes, or d could never be. */
    uint64_t pub_id = gw->broker->next_pub_id + 1;
    int err = 0;
    dict_set(&gw->broker->by_pub, &pub_id, sizeof(pub_id), d, &err);
    if (err) {
        link_cmd_free(c);
        return "out of memory";
    }
    if ((why = broker_send(gw, c))) {
        dict_del(&gw->broker->by_pub, &pub_id, sizeof(pub_id));
        return why;
    }
    d->state = MG_DLV_FORWARDING;
    d->pub_id = pub_id;
    return NULL;
}

const char *broker_publish(mg_gw *gw, link_cmd *c)
{
    if (!gw->broker) {
        link_cmd_free(c);
        return "no broker configured";
    }
    return broker_send(gw, c);
}

/* Requeue d on the gateway's own initiative, saying why. */
static void broker_requeue(mg_gw *gw, mg_delivery *d, const char *why)
{
    log_info("broker: message %llu %s: requeued", (unsigned long long)d->id, why);
    const char *err = broker_settle(gw, d, LINK_CMD_REQUEUE);
    if (err)
        log_info("broker: message %llu: %s", (unsigned long long)d->id, err);
}

void broker_conn_closed(mg_gw *gw, uint64_t conn_id)
{
    if (!gw->broker)
        return;
    for (mg_delivery *d = gw->broker->head, *next; d; d = next) {
        next = d->next;
        if (d->owner == conn_id && d->state == MG_DLV_UNSETTLED) {
            char why[64];
            snprintf(why, sizeof(why), "held by closed connection %llu",
                     (unsigned long long)conn_id);
            broker_requeue(gw, d, why);
        }
    }
}

void broker_handle_dropped(mg_gw *gw, uint64_t id)
{
    mg_delivery *d = broker_find(gw, id);
    if (d && d->state == MG_DLV_UNSETTLED && !d->owner && d->handed)
        broker_requeue(gw, d, "dropped by the script without a decision");
}

/* Unassigned deliveries the script may have dropped: collect garbage so
 * their handles' finalizers run (broker_handle_dropped). */
static void broker_sweep(lws_sorted_usec_list_t *sul)
{
    mg_broker *b = lws_container_of(sul, mg_broker, sweep);
    mg_gw *gw = b->gw;
    for (mg_delivery *d = b->head; d; d = d->next) {
        if (d->state == MG_DLV_UNSETTLED && !d->owner && d->handed && gw->script) {
            script_collect(gw->script);
            break;
        }
    }
    lws_sul_schedule(gw->lws, 0, &b->sweep, broker_sweep, BROKER_SWEEP_US);
}

/* ------------------------------------------------------------- events */

/* Hand d to on_task.  If there is no hook, or it fails, d is held
 * unsettled (no hot requeue loop) and handed again after a reload. */
static void broker_deliver(mg_gw *gw, mg_delivery *d)
{
    uint64_t id = d->id;
    if (gw->draining) {
        broker_requeue(gw, d, "arrived while shutting down");
        return;
    }
    d->handed = 1;
    int rc = script_on_task(gw, d);
    if (rc == 0 || !(d = broker_find(gw, id)) || d->state != MG_DLV_UNSETTLED)
        return;
    d->handed = 0;
    log_error("broker: message %llu from queue '%s' held unsettled until a reload: %s",
              (unsigned long long)id, d->d->queue,
              rc < 0 ? "the script has no on_task hook" : "on_task failed");
}

/* A delivery the gateway cannot keep track of (out of memory) goes back to
 * the broker at once, rather than sit unacked and unreachable. */
static void broker_refuse(mg_gw *gw, link_event *e)
{
    log_error("broker: out of memory for a delivery from queue '%s': requeued", e->d->queue);
    link_cmd *c = link_cmd_new(LINK_CMD_REQUEUE);
    if (c) { /* else it stays unacked: RabbitMQ requeues it when the link ends */
        c->epoch = e->epoch;
        c->tag = e->d->tag;
        link_post(gw->broker->link, c);
        gw->metrics->broker_requeues++;
    }
}

static void broker_on_delivery(mg_gw *gw, link_event *e)
{
    mg_broker *b = gw->broker;
    mg_delivery *d = calloc(1, sizeof(*d));
    if (!d) {
        broker_refuse(gw, e);
        return;
    }
    d->id = b->next_id + 1;
    int err = 0;
    dict_set(&b->by_id, &d->id, sizeof(d->id), d, &err);
    if (err) {
        free(d);
        broker_refuse(gw, e);
        return;
    }
    b->next_id++;
    d->epoch = e->epoch;
    d->d = e->d;
    e->d = NULL;
    broker_link_in(b, d);
    gw->metrics->broker_deliveries++;
    gw->metrics->broker_unsettled++;
    broker_deliver(gw, d);
}

static void broker_on_published(mg_gw *gw, link_event *e)
{
    mg_broker *b = gw->broker;
    if (b->pub_pending)
        b->pub_pending--;
    if (!e->ok)
        gw->metrics->broker_publish_failures++;
    mg_delivery *d = dict_get_u64(&b->by_pub, e->pub_id);
    if (!d) {
        if (!e->ok)
            log_error("broker: publish failed: %s", e->text ? e->text : "?");
        return;
    }
    dict_del(&b->by_pub, &d->pub_id, sizeof(d->pub_id));
    if (e->ok) {
        d->state = MG_DLV_UNSETTLED; /* so broker_forget skips by_pub */
        gw->metrics->broker_forwards++;
        broker_forget(gw, d, "forwarded");
        return;
    }
    d->state = MG_DLV_UNSETTLED;
    log_error("broker: message %llu: forward failed (%s); it stays unsettled",
              (unsigned long long)d->id, e->text ? e->text : "?");
    /* Its owner may have closed, or the script dropped it, meanwhile. */
    if (d->owner && !conn_is_open(conn_find(gw, d->owner)))
        broker_requeue(gw, d, "forward failed after its connection closed");
    else if (!d->owner && gw->script && !script_msg_alive(gw->script, d->id))
        broker_requeue(gw, d, "forward failed and the script holds no handle");
}

static void broker_on_up(mg_gw *gw, link_event *e)
{
    mg_broker *b = gw->broker;
    b->up = 1;
    b->epoch = e->epoch;
    gw->metrics->broker_up = 1;
    gw->metrics->broker_connects++;
    log_info("broker: up %s", e->text ? e->text : "");
    script_on_broker(gw, "up", e->text ? e->text : "");
}

static void broker_on_down(mg_gw *gw, link_event *e)
{
    mg_broker *b = gw->broker;
    int was_up = b->up;
    b->up = 0;
    gw->metrics->broker_up = 0;
    for (mg_delivery *d = b->head, *next; d; d = next) {
        next = d->next;
        if (d->epoch <= e->epoch) {
            gw->metrics->broker_lost++;
            broker_forget(gw, d, "lost");
        }
    }
    log_warn("broker: down: %s; retrying in %ums", e->text ? e->text : "?", e->retry_ms);
    if (was_up)
        script_on_broker(gw, "down", e->text ? e->text : "");
}

void broker_on_events(mg_gw *gw)
{
    if (!gw->broker)
        return;
    link_event *e = link_take(gw->broker->link);
    while (e) {
        link_event *next = e->next;
        switch (e->type) {
        case LINK_EV_UP:
            broker_on_up(gw, e);
            break;
        case LINK_EV_DOWN:
            broker_on_down(gw, e);
            break;
        case LINK_EV_DELIVERY:
            broker_on_delivery(gw, e);
            break;
        case LINK_EV_PUBLISHED:
            broker_on_published(gw, e);
            break;
        }
        link_event_free(e);
        e = next;
    }
}

void broker_after_reload(mg_gw *gw)
{
    if (!gw->broker || !gw->script)
        return;
    script_collect(gw->script);
    for (mg_delivery *d = gw->broker->head, *next; d; d = next) {
        next = d->next;
        if (d->state != MG_DLV_UNSETTLED || d->owner)
            continue;
        if (!d->handed)
            broker_deliver(gw, d);
        else if (!script_msg_alive(gw->script, d->id))
            broker_requeue(gw, d, "not picked up by the reloaded script");
    }
}

/* ----------------------------------------------------- start and stop */

int broker_fd(const mg_gw *gw)
{
    return gw->broker ? link_event_fd(gw->broker->link) : -1;
}

/* The URL without its password, for logs: amqp://user:***@host/... */
static const char *broker_redact(const char *url, char *buf, size_t n)
{
    const char *scheme = strstr(url, "://"), *at = strrchr(url, '@');
    const char *colon = scheme ? strchr(scheme + 3, ':') : NULL;
    if (!scheme || !at || !colon || colon > at)
        snprintf(buf, n, "%s", url);
    else
        snprintf(buf, n, "%.*s:***%s", (int)(colon - url), url, at);
    return buf;
}

int broker_start(mg_gw *gw, char *err, size_t errlen)
{
    if (!gw->cfg->broker)
        return 0;
    mg_broker *b = calloc(1, sizeof(*b));
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    b->gw = gw;
    dict_init(&b->by_id);
    dict_init(&b->by_pub);
    b->pub_max = gw->cfg->broker->publish_buffer;
    b->link = link_start(gw->cfg->broker, err, errlen);
    if (!b->link) {
        free(b);
        return -1;
    }
    gw->broker = b;
    /* lws closes what it adopts; the link closes its own fd. */
    lws_sock_file_fd_type fd;
    fd.filefd = dup(link_event_fd(b->link));
    b->wsi =
        lws_adopt_descriptor_vhost(gw->vhosts[0], LWS_ADOPT_RAW_FILE_DESC, fd, "moongate", NULL);
    if (!b->wsi) {
        snprintf(err, errlen, "cannot watch the broker link in the event loop");
        return -1;
    }
    lws_sul_schedule(gw->lws, 0, &b->sweep, broker_sweep, BROKER_SWEEP_US);
    log_info("broker: connecting to %s", broker_redact(gw->cfg->broker->url, err, errlen));
    return 0;
}

void broker_drain(mg_gw *gw)
{
    link_cmd *c = gw->broker ? link_cmd_new(LINK_CMD_CANCEL) : NULL;
    if (c)
        link_post(gw->broker->link, c);
}

void broker_stop(mg_gw *gw)
{
    mg_broker *b = gw->broker;
    if (!b)
        return;
    lws_sul_cancel(&b->sweep);
    size_t lost = link_stop(b->link, BROKER_STOP_WAIT_MS);
    if (lost)
        log_error("broker: %zu published messages never reached the broker (it was down)", lost);
    while (b->head) {
        mg_delivery *d = b->head;
        b->head = d->next;
        link_delivery_free(d->d);
        free(d);
    }
    dict_free(&b->by_id);
    dict_free(&b->by_pub);
    free(b);
    gw->broker = NULL;
}
