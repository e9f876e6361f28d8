/* evpoll.h — libwebsockets' poll(), served by epoll.
 *
 * lws's default loop calls poll() over every descriptor it owns once per
 * loop turn.  The kernel checks each socket and, to sleep, hooks a
 * wait-queue entry into each, then takes them all down again: with many
 * thousands of connections every turn of the loop (every broadcast, every
 * batch of heartbeat pongs) cost milliseconds before any work began.
 *
 * evpoll.c defines poll() in the executable.  poll() is libc's, so lws
 * calls it through its PLT however lws itself was linked
 * (-Bsymbolic-functions and LTO bind only lws's own functions).
 * Calls from the event loop's thread, once evpoll_start has run, are served
 * from an epoll set that mirrors the pollfd array: each call compares the
 * array with what the set holds (a user-space scan, microseconds) and
 * changes only the differences, then waits in epoll_wait, which costs in
 * proportion to the sockets that are ready.  Below 256 descriptors, and
 * for every other thread, calls go to libc's poll().  close() is defined too, so that a descriptor
 * the loop closes leaves the set before its number can be reused.
 *
 * Like lwsmem.c, this is process-wide state: poll() has no context. */
#ifndef MG_EVPOLL_H
#define MG_EVPOLL_H

#include <stdint.h>

/* Serve this thread's poll() calls from epoll from now on.  0, or -1 (the
 * calls keep going to libc's poll()). */
int evpoll_start(void);
void evpoll_stop(void);

/* fd now refers to another file (dup2 over it): forget its registration. */
void evpoll_forget(int fd);

/* After each poll() call of the loop's thread that found descriptors
 * ready, before it returns: fn(arg, fds, ready, k) with the indexes in fds
 * of the k ready ones.  Every ready entry is heard of, whichever way the
 * call was served (short of memory, one call per entry): fastrx.c relies
 * on it, or lws would read sockets that are moongate's.  fn may take events out of their revents
 * (fastrx.c reads its sockets there, and takes POLLIN out so lws does not); it returns how many
 * entries are still ready, which poll() returns.  NULL: none. */
struct pollfd;
typedef int (*evpoll_ready_fn)(void *arg, struct pollfd *fds, const int *ready, int k);
void evpoll_on_ready(evpoll_ready_fn fn, void *arg);

/* 1 if lws's poll() calls reach evpoll.c (checked after the first turn). */
int evpoll_active(void);

/* Leave POLLIN out of what the loop's poll() waits for on fd until
 * until_ms (monotonic, gw_clock_ms), or until evpoll_unmute_all: a
 * listener out of descriptors is not polled meanwhile (fdguard.c), so the
 * loop does not spin on a readiness it cannot act on.  Up to
 * EVPOLL_MUTES descriptors at once; -1 if there is no room. */
#define EVPOLL_MUTES 32
int evpoll_mute(int fd, int64_t until_ms);
void evpoll_unmute_all(void);

/* After a close() on the loop's thread: fn(arg, fd).  NULL: none. */
typedef void (*evpoll_close_fn)(void *arg, int fd);
void evpoll_on_close(evpoll_close_fn fn, void *arg);

#endif
