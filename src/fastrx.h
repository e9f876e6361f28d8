/* fastrx.h — moongate reads ws:// and wss:// connections itself.
 *
 * libwebsockets parses incoming frames a byte at a time, with a callback
 * per frame: for small messages that was the biggest single cost of the
 * gateway.  Once a connection's handshake is done, its reads are taken
 * over here, at the level of libc's poll(), which lws
 * calls through its PLT on every build (lws cannot bind a libc function
 * to itself, whatever its link flags): evpoll.c serves lws's poll() and
 * hands the ready entries to fastrx_on_ready before lws sees them.  There
 * every connection of ours that is readable is read, in one io_uring
 * batch or a recv() each (an SSL_read of lws's TLS session for wss://,
 * which lws then never reads again), and POLLIN is taken out of what poll() returns
 * for it, so lws never reads it.  After lws has handled the turn's other
 * events, fastrx_settle hands the bytes to wsrx (frames unmasked in place,
 * no copy for whole messages) and from there to rx.c: the hooks run
 * outside of lws, and the replies leave through writer.c.  EOF and read errors are left in what poll()
 * returns, so lws reads the socket again and closes the connection its
 * usual way.
 *
 * So a connection keeps the same guarantees (RFC 6455 as wsrx.h reads
 * it, replies in order) whether it came over TCP or TLS.  A TLS session
 * whose first frames lws decrypted along with the handshake stays on
 * lws's reader.  Timeouts and closing stay lws's for everyone. */
#ifndef MG_FASTRX_H
#define MG_FASTRX_H

#include "gw.h"

/* Set up the read slots.  0, or -1 (out of memory: every connection keeps
 * lws's reader). */
int fastrx_start(mg_gw *gw);
void fastrx_stop(mg_gw *gw);

/* Take over reading c (its upgrade is complete, its descriptor bound:
 * conn_fd_bind); 0 if it stays on lws's reader: lws holds bytes of it
 * (to write, or decrypted), or fastrx_start failed.  The caller checks that poll() comes through evpoll.c (lwsc.h). */
int fastrx_attach(mg_gw *gw, mg_conn *c);
/* Stop reading c (its socket is closing); bytes read for it are dropped. */
void fastrx_detach(mg_gw *gw, mg_conn *c);

/* evpoll_ready_fn: the loop's poll() found the k descriptors
 * fds[ready[...]] ready; read ours among them.  Returns how many entries
 * are still ready for lws. */
struct pollfd;
int fastrx_on_ready(mg_gw *gw, struct pollfd *fds, const int *ready, int k);
/* Handle what the turn's reads brought (called after each loop turn). */
void fastrx_settle(mg_gw *gw);

#endif
