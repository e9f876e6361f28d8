/* fastrx.h — moongate reads plain ws:// connections itself.
 *
 * libwebsockets 4.1.6 parses incoming frames a byte at a time, with a
 * callback per frame: for small messages that was a third of the
 * gateway's CPU.  Once a plain (not TLS) connection's handshake is done,
 * its reads are taken over here: lws calls lws_service_fd_tsi() through
 * its PLT for every ready descriptor, so the executable's definition
 * (fastrx.c) sees each one first.  For a connection in the table it does
 * the recv() itself into one gateway-wide buffer, hands the bytes to
 * wsrx (frames, unmasked in place, no copy for whole messages) and passes
 * only the rest of the events (POLLOUT, POLLHUP) on to lws.  EOF and read
 * errors are passed on with POLLIN, so lws reads them again and closes
 * the connection its usual way.  Replies queued while the read is
 * processed are written in the same loop turn.  With io_uring (uring.h),
 * every connection of ours the loop's poll() found ready is read at once,
 * in one system call, before lws hands the first over (fastrx.c).
 *
 * TLS connections keep lws's reader (their bytes exist only inside lws's
 * TLS layer).  Timeouts and closing stay lws's for everyone; server.c
 * writes the connections read here itself. */
#ifndef MG_FASTRX_H
#define MG_FASTRX_H

#include "gw.h"

/* Set up the read buffers.  0, or -1 (out of memory: every connection
 * keeps lws's reader). */
int fastrx_start(mg_gw *gw);
void fastrx_stop(mg_gw *gw);

/* Take over reading c (called when its upgrade completes, its descriptor
 * bound: conn_fd_bind); 0 if it stays on lws's reader: TLS, fastrx_start
 * failed, or lws's service calls have
 * not come through fastrx.c (checked on the first one, the listener's
 * accept; a warning is logged once if they never do). */
int fastrx_attach(mg_gw *gw, mg_conn *c);
/* Stop reading c (its socket is closing). */
void fastrx_detach(mg_gw *gw, mg_conn *c);
/* The loop's poll() found the k descriptors fds[ready[...]] ready: with
 * io_uring, read ours among them in one batch (see fastrx.c). */
struct pollfd;
void fastrx_prefetch(mg_gw *gw, struct pollfd *fds, const int *ready, int k);
/* Process what the last batch of reads holds that lws did not hand over
 * (called after each loop turn). */
void fastrx_settle(mg_gw *gw);

#endif
