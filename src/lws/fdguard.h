/* fdguard.h — the gateway's open-files budget at the accept() end.
 *
 * Two ways a client could use up the gateway's descriptors, and what
 * happens instead:
 *  - Sockets that connect and never finish their handshake (or never send
 *    a byte) did not count against limits.max_connections, so enough of
 *    them took every descriptor.  Now at most limits.max_handshakes
 *    accepted sockets are in their handshake at once; past that, the one
 *    that has waited longest is shut down to make room (as nginx reuses
 *    its oldest idle connection), and until it is closed the listener
 *    rests: a real client's handshake takes milliseconds, so it is never
 *    the oldest for long.
 *  - When accept() fails for lack of descriptors (EMFILE, ENFILE: other
 *    files the process holds, a system-wide limit), the listener stayed
 *    readable and libwebsockets retried at once, forever: 100% CPU and an
 *    error line per try.  Now a spare descriptor kept for the purpose is
 *    let go to accept the client and answer it 503, the listener is left
 *    out of the loop's poll() for FDGUARD_BACKOFF_MS (or until a descriptor
 *    is closed), and the event is logged once per second with a count.
 *
 * accept() is defined here, in the executable: libwebsockets calls libc's
 * through its PLT, whatever way lws itself was linked.  Calls from other
 * threads, or before fdguard_start, go straight to libc.  Like evpoll.c,
 * this is process-wide state: accept() has no context. */
#ifndef MG_FDGUARD_H
#define MG_FDGUARD_H

#include <stdint.h>

#include "gw.h"

/* workers: N.  While on, TCP sockets bound on the calling thread get
 * SO_REUSEPORT first: each worker's libwebsockets binds the listeners
 * itself (lws 4.1 sets SO_REUSEPORT nowhere on Linux), and the kernel
 * spreads new connections over the workers.  bind() is defined here for
 * that, as accept() is. */
void fdguard_share_ports(int on);

/* How long a listener out of descriptors is not polled. */
#define FDGUARD_BACKOFF_MS 100

/* Start on the event loop's thread (after evpoll_start): descriptors up to
 * fd_cap are tracked, at most max_handshakes in their handshake.  0 or -1
 * (out of memory, or no spare descriptor: then accept() is plain libc's). */
int fdguard_start(mg_gw *gw, int fd_cap, uint32_t max_handshakes);
void fdguard_stop(void);
/* A reload changed limits.max_handshakes. */
void fdguard_set_max(uint32_t max_handshakes);

/* The socket fd completed its WebSocket upgrade: no longer in handshake. */
void fdguard_upgraded(int fd);

/* Sockets in their handshake now (a gauge for /metrics). */
uint32_t fdguard_pending(void);

#endif
