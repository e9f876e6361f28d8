/* heartbeat.c — protocol pings and eviction of silent connections. */
#include "heartbeat.h"

#include "conn.h"
#include "log.h"
#include "writer.h"

static int64_t heartbeat_tick_ms(const mg_config *cfg)
{
    uint32_t base = cfg->ping_interval_ms;
    if (cfg->ping_timeout_ms && (!base || cfg->ping_timeout_ms < base))
        base = cfg->ping_timeout_ms;
    int64_t tick = base / 20;
    if (tick < 50)
        tick = 50;
    if (tick > 250)
        tick = 250;
    return tick;
}

/* Not empty: lws 4.1.6 does not report an empty pong to the protocol. */
#define HEARTBEAT_PAYLOAD "mg"

static void heartbeat_ping(mg_gw *gw, mg_conn *c)
{
    int was_empty = c->q.count == 0;
    /* The shared frame: a ping costs a queue item, not a block of its own
     * (thousands fall due in the same sweep). */
    int rc = gw->ping_frame ? sendq_push_shared(&c->q, gw->ping_frame)
                            : sendq_push_frame(&c->q, MG_OP_PING, HEARTBEAT_PAYLOAD, 2);
    if (rc == 0 && was_empty)
        writer_wake(gw, c);
}

static void heartbeat_sweep(lws_sorted_usec_list_t *sul)
{
    mg_gw *gw = lws_container_of(sul, mg_gw, hb_sul);
    const mg_config *cfg = gw->cfg;
    int64_t now = gw_clock_ms();
    gw->now_ms = now;

    for (mg_conn *c = gw->conn_list; c; c = c->next) {
        if (!conn_is_open(c))
            continue;
        /* Both times are whole milliseconds, rounded down: only a gap of
         * more than the timeout is sure to be at least that much silence. */
        if (cfg->ping_timeout_ms && now - c->last_rx_ms > (int64_t)cfg->ping_timeout_ms) {
            log_conn(MG_LOG_INFO, c->id, "heartbeat timeout: silent for %lld ms",
                     (long long)(now - c->last_rx_ms));
            gw->metrics->evictions[MG_EVICT_HEARTBEAT]++;
            conn_close(gw, c, 4000, "heartbeat timeout", 0);
            continue;
        }
        if (cfg->ping_interval_ms && now >= c->next_ping_ms) {
            heartbeat_ping(gw, c);
            c->next_ping_ms = now + cfg->ping_interval_ms;
        }
    }
    if (cfg->ping_interval_ms || cfg->ping_timeout_ms)
        lws_sul_schedule(gw->lws, 0, &gw->hb_sul, heartbeat_sweep,
                         heartbeat_tick_ms(cfg) * LWS_US_PER_MS);
}

void heartbeat_start(mg_gw *gw)
{
    if (!gw->ping_frame) {
        gw->ping_frame = sendq_frame_new(MG_OP_PING, HEARTBEAT_PAYLOAD, 2);
        if (gw->ping_frame)
            gw->ping_frame->refs = 1; /* ours: never freed by a queue */
    }
    if (gw->cfg->ping_interval_ms || gw->cfg->ping_timeout_ms)
        lws_sul_schedule(gw->lws, 0, &gw->hb_sul, heartbeat_sweep,
                         heartbeat_tick_ms(gw->cfg) * LWS_US_PER_MS);
}

void heartbeat_reconfigure(mg_gw *gw)
{
    int64_t due = gw->now_ms + gw->cfg->ping_interval_ms;
    for (mg_conn *c = gw->conn_list; c; c = c->next)
        if (c->next_ping_ms > due)
            c->next_ping_ms = due;
    lws_sul_cancel(&gw->hb_sul);
    heartbeat_start(gw);
}

void heartbeat_stop(mg_gw *gw)
{
    if (gw->ping_frame) {
        gw->ping_frame->refs--;
        sendq_buf_release(gw->ping_frame); /* frees it unless a queue still holds it */
        gw->ping_frame = NULL;
    }
}

/* A connection's first ping comes between half an interval and an
 * interval after it opened, at a point its id picks (a multiplicative
 * hash), and then every interval: connections that opened together (a
 * reconnect storm) are pinged spread over the interval, in sweeps of a
 * few hundred, not all in one sweep whose burst of writes would hold up
 * everything else in that loop turn. */
void heartbeat_track(mg_gw *gw, mg_conn *c)
{
    uint32_t interval = gw->cfg->ping_interval_ms;
    uint32_t spread = (uint32_t)((c->id * 2654435761u) >> 8) % (interval / 2 + 1);
    c->next_ping_ms = gw->now_ms + interval / 2 + spread;
}
