/* heartbeat.h — protocol pings on an interval and eviction of silent
 * connections.
 *
 * One sweep timer walks the client table every tick (a tenth of the
 * shorter of interval and timeout, 50 ms..1 s): a connection whose next
 * ping is due gets a ping frame queued; one that has sent nothing — no
 * frame, no pong — for the timeout is closed with 4000 "heartbeat
 * timeout".  Settings are read from the live config on every sweep, so a
 * reload applies them to existing connections.  libwebsockets' own
 * validity pings are switched off (server.c) so the two never fight. */
#ifndef MG_HEARTBEAT_H
#define MG_HEARTBEAT_H

#include "gw.h"

void heartbeat_start(mg_gw *gw);
/* After a reload: reschedule the sweep and pull in due pings. */
void heartbeat_reconfigure(mg_gw *gw);
/* At exit, after the connections are gone. */
void heartbeat_stop(mg_gw *gw);
/* A new connection: schedule its first ping. */
void heartbeat_track(mg_gw *gw, mg_conn *c);

#endif
