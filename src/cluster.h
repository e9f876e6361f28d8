/* cluster.h — several moongate nodes as one gateway, over RabbitMQ.
 *
 * With a `cluster:` section every worker process of every node is a
 * member: it opens a connection of its own to the `broker:` RabbitMQ
 * (amqp_link.c, link_start_member) with a queue the broker names,
 * exclusive and auto-deleted (gone with the connection: a dead member
 * leaves nothing behind), bound to
 *  - <prefix>.direct with its member key "<node id>.<worker>": sends to one
 *    of its clients (by id: the id names the node and the worker; by
 *    name), and the answers to a hello;
 *  - <prefix>.publish with each topic its clients subscribe to, only while
 *    they do: a publish goes to the members with subscribers, no other;
 *  - <prefix>.fanout, for worker 1 of each node only, the node's speaker:
 *    broadcasts, name claims and releases, forgets, hellos and beacons.
 *    The speaker passes them on to its node's other workers over peer.c's
 *    links, so what the fanout carries is delivered once per node.
 * No home-made protocol between machines: the broker routes everything.
 * The workers of one node talk over peer.c's links (a node that loses the
 * broker keeps serving its own clients whole), so a member skips what
 * comes through the broker from its own node.
 *
 * Messages carry the sender's member key and process id (app_id).  The
 * body is a type byte and fields in host order (every node runs this
 * code on the same architecture).
 *
 * Names are a directory every member keeps from the claims: eventually
 * consistent, "newer" is the later wall-clock time of the claim (ties by
 * id), so nodes' clocks should agree within the time two clients take to
 * claim one name.  A speaker that joins says hello and is told every
 * node's names, and tells its node's other workers; a worker that starts
 * is told them by its speaker.  A worker that ends is reported by its
 * node's other workers (forget); a node not heard from for
 * CLUSTER_EXPIRE_MS (speakers send a beacon every CLUSTER_BEACON_MS) is
 * forgotten whole, as is a member that says goodbye.
 *
 * Cluster traffic is at most once: while a member's broker connection is
 * down what it would send is dropped (counted in
 * moongate_cluster_dropped_total), what others send it is lost with its
 * queue, and its clients are served locally as usual; on reconnect it
 * claims its names again and its link rebinds its topics (a speaker also
 * says hello and has its node claim theirs again).  Order is kept per
 * sender and receiver (one channel, one queue). */
#ifndef MG_CLUSTER_H
#define MG_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "gw.h"

#define CLUSTER_BEACON_MS 5000
#define CLUSTER_EXPIRE_MS 20000
/* Sends handed to the broker thread and not yet written, beyond which
 * more are dropped (a broker slower than the gateway). */
#define CLUSTER_PENDING_MAX 100000

/* Join (if the config has a cluster: section).  0, or -1 with err. */
int cluster_start(mg_gw *gw, char *err, size_t errlen);
/* Say goodbye and leave. */
void cluster_stop(mg_gw *gw);
/* wsi is the cluster link's event fd: its events were handled (1), or
 * wsi is not it (0). */
int cluster_on_readable(mg_gw *gw, struct lws *wsi);
/* "up", "down" or "off". */
const char *cluster_state(const mg_gw *gw);

/* Outgoing; each does nothing without a cluster.  The return values are
 * those of peer.h's functions of the same name. */
int cluster_send_id(mg_gw *gw, uint64_t id, int opcode, const void *data, size_t len);
int cluster_send_name(mg_gw *gw, const char *name, int opcode, const void *data, size_t len);
void cluster_publish(mg_gw *gw, const char *topic, int opcode, const void *data, size_t len);
void cluster_broadcast(mg_gw *gw, int opcode, const void *data, size_t len, uint64_t except_id);
int cluster_name_free(mg_gw *gw, const char *name);
/* Another node's client holds name (as far as this member knows). */
int cluster_has_name(mg_gw *gw, const char *name);
void cluster_claim(mg_gw *gw, const char *name, uint64_t id, int64_t stamp);
void cluster_unclaim(mg_gw *gw, const char *name, uint64_t id);
void cluster_interest(mg_gw *gw, const char *topic, int on);
/* From peer.c: a relay of this node's speaker arrived; worker k said
 * hello (the speaker tells it the other nodes' names); worker k's process
 * ended (other nodes are told to forget its names). */
void cluster_on_relay(mg_gw *gw, const void *data, size_t len);
void cluster_on_peer_hello(mg_gw *gw, uint32_t k);
void cluster_on_peer_gone(mg_gw *gw, uint32_t k);

/* A claim of name (id, stamp) made on another worker of this node: forget
 * another node's holder if it loses to it. */
void cluster_name_lost(mg_gw *gw, const char *name, uint64_t id, int64_t stamp);

#endif
