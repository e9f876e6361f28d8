/* evpoll.c — libwebsockets' poll(), served by epoll (evpoll.h). */
#include "evpoll.h"

#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

typedef int (*evpoll_poll_fn)(struct pollfd *, nfds_t, int);
typedef int (*evpoll_libc_close_fn)(int);

/* What the epoll set holds for one descriptor number. */
typedef struct {
    short events;   /* poll events it is registered with */
    uint8_t in_set; /* registered */
    uint32_t index; /* its place in the array of the current call */
    uint64_t seen;  /* the last call whose array held it */
} evpoll_slot;

static struct {
    int epfd;           /* -1 until evpoll_start */
    pthread_t loop;     /* the thread whose calls are served */
    evpoll_slot *slots; /* by descriptor number */
    int cap;
    int *members; /* descriptors in the set, for the sweep */
    int nmembers, members_cap;
    struct epoll_event *evs; /* epoll_wait's output */
    int evs_cap;
    uint64_t call; /* calls served from the set */
    int call_seen; /* the loop's poll() calls come here */
    int *ready;    /* indexes of the ready entries, for on_ready */
    int ready_cap;
    evpoll_ready_fn on_ready;
    void *on_ready_arg;
    evpoll_close_fn on_close;
    void *on_close_arg;
    struct {
        int fd;
        int64_t until_ms;
    } mutes[EVPOLL_MUTES]; /* listeners not polled for POLLIN for now */
    int nmutes;
    evpoll_poll_fn real_poll;
    evpoll_libc_close_fn real_close;
} ev = {.epfd = -1};

static evpoll_poll_fn evpoll_libc_poll(void)
{
    if (!ev.real_poll)
        ev.real_poll = (evpoll_poll_fn)dlsym(RTLD_NEXT, "poll");
    return ev.real_poll;
}

static evpoll_libc_close_fn evpoll_libc_close(void)
{
    if (!ev.real_close)
        ev.real_close = (evpoll_libc_close_fn)dlsym(RTLD_NEXT, "close");
    return ev.real_close;
}

static int64_t evpoll_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Drop the mutes that have run out; the poll timeout shortened so the
 * wait ends when the next does (timeout as poll() takes it). */
static int evpoll_mutes_due(int timeout)
{
    int64_t now = evpoll_now_ms();
    for (int i = 0; i < ev.nmutes;) {
        int64_t left = ev.mutes[i].until_ms - now;
        if (left <= 0) {
            ev.mutes[i] = ev.mutes[--ev.nmutes];
            continue;
        }
        if (timeout < 0 || left < timeout)
            timeout = (int)left;
        i++;
    }
    return timeout;
}

/* The events poll() asks of fd, POLLIN left out while it is muted. */
static short evpoll_events(int fd, short events)
{
    for (int i = 0; i < ev.nmutes; i++)
        if (ev.mutes[i].fd == fd)
            return (short)(events & ~POLLIN);
    return events;
}

/* libc's poll() on fds, the muted ones' POLLIN left out for the call. */
static int evpoll_libc_poll_muted(struct pollfd *fds, nfds_t n, int timeout)
{
    short saved[EVPOLL_MUTES];
    int at[EVPOLL_MUTES], k = 0;
    for (nfds_t i = 0; i < n && k < ev.nmutes; i++) {
        short e = evpoll_events(fds[i].fd, fds[i].events);
        if (e != fds[i].events) {
            at[k] = (int)i;
            saved[k++] = fds[i].events;
            fds[i].events = e;
        }
    }
    int rc = evpoll_libc_poll()(fds, n, timeout);
    for (int j = 0; j < k; j++)
        fds[at[j]].events = saved[j];
    return rc;
}

static int evpoll_ours(void)
{
    return ev.epfd >= 0 && pthread_equal(pthread_self(), ev.loop);
}

static uint32_t evpoll_to_epoll(short events)
{
    uint32_t e = 0;
    if (events & POLLIN)
        e |= EPOLLIN;
    if (events & POLLPRI)
        e |= EPOLLPRI;
    if (events & POLLOUT)
        e |= EPOLLOUT;
    return e;
}

static short evpoll_to_poll(uint32_t e)
{
    short r = 0;
    if (e & EPOLLIN)
        r |= POLLIN;
    if (e & EPOLLPRI)
        r |= POLLPRI;
    if (e & EPOLLOUT)
        r |= POLLOUT;
    if (e & EPOLLERR)
        r |= POLLERR;
    if (e & EPOLLHUP)
        r |= POLLHUP;
    return r;
}

static int evpoll_grow(int fd)
{
    int cap = ev.cap ? ev.cap : 1024;
    while (cap <= fd)
        cap *= 2;
    evpoll_slot *s = realloc(ev.slots, (size_t)cap * sizeof(*s));
    if (!s)
        return -1;
    memset(s + ev.cap, 0, (size_t)(cap - ev.cap) * sizeof(*s));
    ev.slots = s;
    ev.cap = cap;
    return 0;
}

static int evpoll_add_member(int fd)
{
    if (ev.nmembers == ev.members_cap) {
        int cap = ev.members_cap ? ev.members_cap * 2 : 1024;
        int *m = realloc(ev.members, (size_t)cap * sizeof(*m));
        if (!m)
            return -1;
        ev.members = m;
        ev.members_cap = cap;
    }
    ev.members[ev.nmembers++] = fd;
    return 0;
}

/* Make the set hold fd with these events.  0; -1 if fd is not open; 1 if
 * epoll cannot watch it (a regular file: poll() calls it always ready). */
static int evpoll_sync(int fd, short events)
{
    evpoll_slot *s = &ev.slots[fd];
    if (s->in_set && s->events == events)
        return 0;
    struct epoll_event e = {.events = evpoll_to_epoll(events), .data.fd = fd};
    if (s->in_set) {
        if (epoll_ctl(ev.epfd, EPOLL_CTL_MOD, fd, &e) == 0 ||
            (errno == ENOENT && epoll_ctl(ev.epfd, EPOLL_CTL_ADD, fd, &e) == 0)) {
            s->events = events;
            return 0;
        }
        return errno == EBADF ? -1 : 0;
    }
    if (epoll_ctl(ev.epfd, EPOLL_CTL_ADD, fd, &e) != 0 &&
        !(errno == EEXIST && epoll_ctl(ev.epfd, EPOLL_CTL_MOD, fd, &e) == 0))
        return errno == EBADF ? -1 : errno == EPERM ? 1 : 0;
    if (evpoll_add_member(fd) != 0) {
        epoll_ctl(ev.epfd, EPOLL_CTL_DEL, fd, NULL);
        return 0;
    }
    s->in_set = 1;
    s->events = events;
    return 0;
}

/* Drop from the set what the array no longer holds. */
static void evpoll_sweep(void)
{
    for (int i = 0; i < ev.nmembers;) {
        int fd = ev.members[i];
        evpoll_slot *s = &ev.slots[fd];
        if (s->in_set && s->seen == ev.call) {
            i++;
            continue;
        }
        if (s->in_set)
            epoll_ctl(ev.epfd, EPOLL_CTL_DEL, fd, NULL);
        s->in_set = 0;
        ev.members[i] = ev.members[--ev.nmembers];
    }
}

/* Room for n ready indexes; 0 or -1. */
static int evpoll_ready_room(nfds_t n)
{
    if ((size_t)ev.ready_cap >= n)
        return 0;
    int *r = realloc(ev.ready, n * sizeof(*r));
    if (!r)
        return -1;
    ev.ready = r;
    ev.ready_cap = (int)n;
    return 0;
}

/* fds[i] is ready: the count goes up, and on_ready will hear of it. */
static void evpoll_note(int *ready, nfds_t i)
{
    if (ev.on_ready)
        ev.ready[*ready] = (int)i;
    (*ready)++;
}

/* Hand the ready entries noted to on_ready: how many are still ready
 * once it has had them. */
static int evpoll_report(struct pollfd *fds, int ready)
{
    if (ev.on_ready && ready > 0)
        return ev.on_ready(ev.on_ready_arg, fds, ev.ready, ready);
    return ready;
}

/* evpoll_serve could not grow its tables: libc's poll() answers instead. */
#define EVPOLL_UNSERVED (-2)

/* Out of memory for the array of ready indexes: on_ready hears of the
 * ready entries one at a time. */
static int evpoll_report_each(struct pollfd *fds, nfds_t n)
{
    int left = 0;
    for (nfds_t i = 0; i < n; i++)
        if (fds[i].revents) {
            int at = (int)i;
            left += ev.on_ready(ev.on_ready_arg, fds, &at, 1);
        }
    return left;
}

static int evpoll_serve(struct pollfd *fds, nfds_t n, int timeout)
{
    int ready = 0;
    ev.call++;
    for (nfds_t i = 0; i < n; i++) {
        int fd = fds[i].fd;
        fds[i].revents = 0;
        if (fd < 0)
            continue;
        if (fd >= ev.cap && evpoll_grow(fd) != 0)
            return EVPOLL_UNSERVED;
        ev.slots[fd].index = (uint32_t)i;
        ev.slots[fd].seen = ev.call;
        int rc = evpoll_sync(fd, ev.nmutes ? evpoll_events(fd, fds[i].events) : fds[i].events);
        if (rc != 0) {
            fds[i].revents = rc < 0 ? POLLNVAL : fds[i].events & (POLLIN | POLLOUT);
            if (fds[i].revents)
                evpoll_note(&ready, i);
        }
    }
    evpoll_sweep();
    if ((size_t)ev.evs_cap < n + 1) {
        struct epoll_event *e = realloc(ev.evs, (n + 1) * sizeof(*e));
        if (!e)
            return EVPOLL_UNSERVED;
        ev.evs = e;
        ev.evs_cap = (int)n + 1;
    }
    int got = epoll_wait(ev.epfd, ev.evs, ev.evs_cap, ready ? 0 : timeout);
    if (got < 0)
        return ready ? evpoll_report(fds, ready) : -1;
    for (int k = 0; k < got; k++) {
        int fd = ev.evs[k].data.fd;
        if (fd < 0 || fd >= ev.cap || ev.slots[fd].seen != ev.call)
            continue;
        struct pollfd *p = &fds[ev.slots[fd].index];
        short r =
            evpoll_to_poll(ev.evs[k].events) & (evpoll_events(fd, p->events) | POLLERR | POLLHUP);
        if (r && !p->revents)
            evpoll_note(&ready, ev.slots[fd].index);
        p->revents |= r;
    }
    return evpoll_report(fds, ready);
}

/* Below this many descriptors poll() is as cheap as the set's upkeep, or
 * cheaper: a few busy connections echo faster on plain poll(). */
#define EVPOLL_MIN_FDS 256

int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    if (!evpoll_ours())
        return evpoll_libc_poll()(fds, n, timeout);
    ev.call_seen = 1;
    if (ev.nmutes)
        timeout = evpoll_mutes_due(timeout);
    int room = !ev.on_ready || evpoll_ready_room(n) == 0;
    if (room && n >= EVPOLL_MIN_FDS) {
        int rc = evpoll_serve(fds, n, timeout);
        if (rc != EVPOLL_UNSERVED)
            return rc;
    }
    int ready = evpoll_libc_poll_muted(fds, n, timeout);
    if (!ev.on_ready || ready <= 0)
        return ready;
    if (!room) /* on_ready must hear of every entry (fastrx.c relies on it) */
        return evpoll_report_each(fds, n);
    int k = 0;
    for (nfds_t i = 0; i < n && k < ready; i++)
        if (fds[i].revents)
            evpoll_note(&k, i);
    return evpoll_report(fds, k);
}

void evpoll_on_ready(evpoll_ready_fn fn, void *arg)
{
    ev.on_ready = fn;
    ev.on_ready_arg = arg;
}

/* A descriptor the loop closes leaves the set first: its number may come
 * back at once for another socket. */
int close(int fd)
{
    if (!evpoll_ours())
        return evpoll_libc_close()(fd);
    if (fd >= 0 && fd < ev.cap && ev.slots[fd].in_set) {
        epoll_ctl(ev.epfd, EPOLL_CTL_DEL, fd, NULL);
        ev.slots[fd].in_set = 0;
    }
    int rc = evpoll_libc_close()(fd);
    if (ev.on_close)
        ev.on_close(ev.on_close_arg, fd);
    return rc;
}

void evpoll_on_close(evpoll_close_fn fn, void *arg)
{
    ev.on_close = fn;
    ev.on_close_arg = arg;
}

int evpoll_mute(int fd, int64_t until_ms)
{
    for (int i = 0; i < ev.nmutes; i++)
        if (ev.mutes[i].fd == fd) {
            ev.mutes[i].until_ms = until_ms;
            return 0;
        }
    if (ev.nmutes == EVPOLL_MUTES)
        return -1;
    ev.mutes[ev.nmutes].fd = fd;
    ev.mutes[ev.nmutes++].until_ms = until_ms;
    return 0;
}

void evpoll_unmute_all(void)
{
    ev.nmutes = 0;
}

void evpoll_forget(int fd)
{
    if (ev.epfd >= 0 && fd >= 0 && fd < ev.cap && ev.slots[fd].in_set) {
        epoll_ctl(ev.epfd, EPOLL_CTL_DEL, fd, NULL);
        ev.slots[fd].in_set = 0;
    }
}

int evpoll_start(void)
{
    if (!evpoll_libc_poll() || !evpoll_libc_close())
        return -1;
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        return -1;
    ev.loop = pthread_self();
    ev.epfd = epfd;
    return 0;
}

void evpoll_stop(void)
{
    if (ev.epfd < 0)
        return;
    int epfd = ev.epfd;
    ev.epfd = -1;
    evpoll_libc_close()(epfd);
    free(ev.slots);
    free(ev.members);
    free(ev.evs);
    free(ev.ready);
    ev.slots = NULL;
    ev.members = NULL;
    ev.evs = NULL;
    ev.ready = NULL;
    ev.cap = ev.nmembers = ev.members_cap = ev.evs_cap = ev.ready_cap = 0;
}

int evpoll_active(void)
{
    return ev.call_seen;
}
