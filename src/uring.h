/* uring.h — many sockets read or written with one system call (io_uring).
 *
 * After its poll() the loop reads every ready socket, and after the loop
 * turn it writes every connection whose queue filled during it: the
 * replies of an echo, or all 10,000 subscribers after a broadcast.  With
 * recv() and send() that is a system call per socket, and where a system
 * call is dear (in a VM with page-table isolation) that is a large part
 * of each one's cost.  A batch queued here goes to the kernel in one
 * io_uring_enter.
 *
 * Every operation carries MSG_DONTWAIT, so the kernel performs it while
 * the batch is submitted, never parks it on a socket: each result is what
 * send() or recv() would have returned (a byte count, possibly short, 0 at
 * EOF, -EAGAIN, or another -errno), and uring_run returns only once all
 * have come back.  The caller leaves the buffers of a queued operation
 * alone until then.
 *
 * Where io_uring is missing or forbidden (kernels before 5.6, a seccomp
 * filter as in default container profiles, sysctl kernel.io_uring_disabled)
 * uring_new fails and the caller keeps using recv() and send(). */
#ifndef MG_URING_H
#define MG_URING_H

#include <stddef.h>
#include <sys/uio.h>

/* At most this many pieces per send; more are left for a later write. */
#define URING_IOV 8

typedef struct mg_uring mg_uring;

/* What became of one send: res as send() returns it, or -errno; len is
 * the number of bytes offered. */
typedef void (*uring_done_fn)(void *arg, void *ctx, int res, size_t len);

/* A ring for up to `entries` sends per batch, or NULL with the reason in
 * why. */
mg_uring *uring_new(unsigned entries, char *why, size_t whylen);
void uring_free(mg_uring *u);

/* Queue a send of iov[0..n) (n <= URING_IOV; the array is copied, the
 * bytes are not) to fd; ctx comes back to the done function.  0, or -1 if
 * the batch is full: run it, then add again. */
int uring_add(mg_uring *u, int fd, const struct iovec *iov, int n, void *ctx);

/* Queue a receive of up to len bytes into buf (the caller leaves it
 * alone until uring_run returns), with MSG_DONTWAIT: the result is what
 * recv() returns, -EAGAIN if nothing was there.  0, or -1 if full. */
int uring_add_recv(mg_uring *u, int fd, void *buf, size_t len, void *ctx);

/* Operations queued and not yet run. */
unsigned uring_queued(const mg_uring *u);

/* Submit the batch, wait for every send in it, and report each.  Returns
 * how many there were, or -1 if the ring failed: sends it did not report
 * were reported as -EAGAIN, and the ring must not be used again. */
int uring_run(mg_uring *u, uring_done_fn done, void *arg);

#endif
