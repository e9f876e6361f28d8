/* writer.h — every write to a client's socket.
 *
 * A connection's frames wait in its queue (sendq.h) and leave here, one
 * of three ways, fixed when its upgrade completes:
 *  - moongate writes the socket itself on the plain TCP connections its
 *    own reader owns (c->fast, lws holds nothing to write there): a
 *    send() of the queue gathered, a sendmsg() of a big frame straight
 *    from the caller's buffer, or, with io_uring, one batch for every
 *    connection a loop turn wrote to;
 *  - TLS connections its reader owns (c->tls) go through
 *    lws_write(LWS_WRITE_RAW), which encrypts with lws's session, whole
 *    frames only, and only while lws holds no partial write of its own (it
 *    would write that first);
 *  - connections lws reads (reader: libwebsockets) the same, but only from
 *    lws's writable callback: lws may owe the client a pong, which it
 *    writes there first, before the data queued after the ping.
 * Writes are not made as frames are queued: a connection whose queue
 * fills joins the flush list, and the list is written when the work of
 * the loop turn is done (writer_flush_all), so a turn's replies to one
 * socket leave in one write.
 *
 * The write state of a connection (mg_wr in conn.h) changes here only:
 * where its life ends once the queue is out (mg_wr_end), whether the
 * kernel left part of a write for POLLOUT, and whether reading is paused
 * meanwhile. */
#ifndef MG_WRITER_H
#define MG_WRITER_H

#include <stddef.h>

#include "gw.h"

/* The scratch buffer and, where the config allows and some listener has
 * moongate's reader, the io_uring ring.  0, or -1 (out of memory). */
int writer_start(mg_gw *gw);
void writer_stop(mg_gw *gw);

/* Queue a data frame of len bytes (copied), or, if it is big and nothing
 * waits ahead of it, write it now and queue only what the kernel did not
 * take.  MG_SEND_OK or MG_SEND_NOMEM. */
int writer_frame(mg_gw *gw, mg_conn *c, int opcode, const void *data, size_t len);

/* c's queue, empty until now, holds frames: get it written (writer.c says
 * when). */
void writer_wake(mg_gw *gw, mg_conn *c);
/* c is being destroyed: off the flush list. */
void writer_forget(mg_gw *gw, mg_conn *c);

/* Write c's queue now, if nothing stops it. */
void writer_flush(mg_gw *gw, mg_conn *c);
/* Write every connection on the flush list (end of a loop turn). */
void writer_flush_all(mg_gw *gw);

/* From here on, once c's queue is out: MG_WR_FINISH shuts the sending
 * side, MG_WR_HANGUP closes the connection.  A later end never takes back
 * a stronger one (hang-up beats shutting). */
void writer_end(mg_gw *gw, mg_conn *c, int end);

/* lws's LWS_CALLBACK_SERVER_WRITEABLE for c: 0, or -1 for lws to close
 * the connection. */
int writer_writable(mg_gw *gw, mg_conn *c);

/* lws's reader saw the peer's close frame, or failed the connection:
 * everything queued goes out now, before lws writes its close frame
 * (lws_write keeps what the kernel does not take); with shut, the sending
 * side is then shut, if all of it went.  0, or -1 if the socket failed. */
int writer_drain_now(mg_gw *gw, mg_conn *c, int shut);

/* The io_uring ring failed: it is freed, and from here on reads and
 * writes are a system call each. */
void writer_uring_failed(mg_gw *gw);

#endif
