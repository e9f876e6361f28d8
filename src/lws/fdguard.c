/* fdguard.c — the open-files budget at the accept() end (fdguard.h). */
#include "fdguard.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "evpoll.h"
#include "log.h"

/* What a client accepted only to be refused reads. */
static const char fdguard_503[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                  "content-type: text/plain\r\ncontent-length: 31\r\n"
                                  "connection: close\r\n\r\n"
                                  "server out of file descriptors\n";

/* A socket's place in the handshake count (fg.in). */
enum { FDGUARD_WAITING = 1, FDGUARD_DYING = 2 };

/* Log lines about refusals and evictions: at most one a second. */
#define FDGUARD_LOG_MS 1000

typedef int (*fdguard_accept_fn)(int, struct sockaddr *, socklen_t *);
typedef int (*fdguard_accept4_fn)(int, struct sockaddr *, socklen_t *, int);

static struct {
    int on;
    mg_gw *gw;
    pthread_t loop;
    /* Sockets in their handshake, oldest first: a list threaded through
     * arrays indexed by descriptor. */
    int cap;
    int *prev, *next;
    int64_t *since;    /* when each was accepted (gw_clock_ms) */
    unsigned char *in; /* FDGUARD_WAITING, FDGUARD_DYING or 0 */
    int head, tail;
    uint32_t pending; /* in the list */
    uint32_t dying;   /* shut down to make room, not closed yet */
    uint32_t max;
    int spare;                 /* a descriptor held to be let go when accept() runs out */
    int muted;                 /* a listener is left out of poll() (evpoll_mute) */
    int64_t log_at;            /* when the last line about refusals or evictions was */
    uint64_t refused, evicted; /* ... and how many since */
    fdguard_accept_fn real_accept;
    fdguard_accept4_fn real_accept4;
    int share;          /* bind() listeners with SO_REUSEPORT (fdguard_share_ports) ... */
    pthread_t share_on; /* ... on this thread */
} fg = {.head = -1, .tail = -1, .spare = -1};

static fdguard_accept_fn fdguard_libc_accept(void)
{
    if (!fg.real_accept)
        fg.real_accept = (fdguard_accept_fn)dlsym(RTLD_NEXT, "accept");
    return fg.real_accept;
}

static fdguard_accept4_fn fdguard_libc_accept4(void)
{
    if (!fg.real_accept4)
        fg.real_accept4 = (fdguard_accept4_fn)dlsym(RTLD_NEXT, "accept4");
    return fg.real_accept4;
}

static int fdguard_ours(void)
{
    return fg.on && pthread_equal(pthread_self(), fg.loop);
}

/* ---- sockets in their handshake ---- */

static void fdguard_unlink(int fd)
{
    if (fd < 0 || fd >= fg.cap || fg.in[fd] != FDGUARD_WAITING)
        return;
    if (fg.prev[fd] >= 0)
        fg.next[fg.prev[fd]] = fg.next[fd];
    else
        fg.head = fg.next[fd];
    if (fg.next[fd] >= 0)
        fg.prev[fg.next[fd]] = fg.prev[fd];
    else
        fg.tail = fg.prev[fd];
    fg.in[fd] = 0;
    fg.pending--;
}

static void fdguard_append(int fd)
{
    fg.prev[fd] = fg.tail;
    fg.next[fd] = -1;
    if (fg.tail >= 0)
        fg.next[fg.tail] = fd;
    else
        fg.head = fd;
    fg.tail = fd;
    fg.since[fd] = gw_clock_ms();
    fg.in[fd] = FDGUARD_WAITING;
    fg.pending++;
}

/* Say how many clients were refused or evicted since the last line, at
 * most once per FDGUARD_LOG_MS. */
static void fdguard_report(void)
{
    int64_t now = gw_clock_ms();
    if (now - fg.log_at < FDGUARD_LOG_MS)
        return;
    if (fg.refused)
        log_warn("out of file descriptors: %llu connections answered 503 (the listener rests "
                 "%d ms each time; raise the open-files limit, or lower limits.max_connections)",
                 (unsigned long long)fg.refused, FDGUARD_BACKOFF_MS);
    if (fg.evicted)
        log_warn("%llu sockets closed that had not finished their handshake while "
                 "limits.max_handshakes (%u) others waited",
                 (unsigned long long)fg.evicted, fg.max);
    fg.refused = fg.evicted = 0;
    fg.log_at = now;
}

/* The listener rests until a descriptor is closed (fdguard_closed), or
 * until until_ms. */
static void fdguard_rest(int lfd, int64_t until_ms)
{
    if (evpoll_mute(lfd, until_ms) == 0)
        fg.muted = 1;
}

/* How far from the oldest fdguard_track looks for a silent socket. */
#define FDGUARD_SCAN 16
/* A socket counts as silent once it has sent nothing for this long. */
#define FDGUARD_SILENT_MS 50

/* The oldest socket in its handshake that has been silent for at least
 * FDGUARD_SILENT_MS: nothing to read, accepted that long ago.  Two kinds
 * of client are spared: one whose request waits to be read (a connect
 * storm accepts faster than the loop reads), and one just accepted (a
 * client that opens many sockets at once writes its requests a few
 * milliseconds after the connects complete).  Closing those would punish
 * clients for the gateway's lag or their own, and a real silent flood
 * still loses FDGUARD_SCAN-deep slots every FDGUARD_SILENT_MS.  -1 if none
 * qualifies; *wait_ms is then when the oldest will have waited enough. */
static int fdguard_silent(int64_t now, int64_t *wait_ms)
{
    int fd = fg.head;
    *wait_ms = now + FDGUARD_SILENT_MS;
    for (int i = 0; fd >= 0 && i < FDGUARD_SCAN; i++, fd = fg.next[fd]) {
        int n = 0;
        if (ioctl(fd, FIONREAD, &n) == 0 && n > 0)
            continue;
        if (now - fg.since[fd] >= FDGUARD_SILENT_MS)
            return fd;
        if (fg.since[fd] + FDGUARD_SILENT_MS < *wait_ms)
            *wait_ms = fg.since[fd] + FDGUARD_SILENT_MS;
    }
    return -1;
}

/* A new socket in its handshake, accepted on lfd.  At the bound the oldest
 * silent one makes room: shut down, so that libwebsockets reads EOF and
 * closes it its usual way.  It keeps its descriptor until then, so it
 * still counts, and the listener rests until a close or an upgrade (or, if
 * nothing was silent long enough, until something will have been): a
 * burst of connects never holds much more than the bound, and waits in
 * the kernel's accept queue meanwhile. */
static void fdguard_track(int lfd, int fd)
{
    if (fd < 0 || fd >= fg.cap)
        return;
    if (fg.pending + fg.dying >= fg.max) {
        int64_t now = gw_clock_ms(), until;
        int old = fdguard_silent(now, &until);
        if (old >= 0) {
            fdguard_unlink(old);
            fg.in[old] = FDGUARD_DYING;
            fg.dying++;
            shutdown(old, SHUT_RDWR);
            fg.evicted++;
            fg.gw->metrics->handshakes_evicted++;
            fdguard_report();
            until = now + FDGUARD_LOG_MS;
        }
        fdguard_rest(lfd, until);
    }
    fdguard_append(fd);
}

/* ---- out of descriptors ---- */

/* accept() on listener lfd failed for lack of descriptors: with the spare
 * one let go, the waiting client is accepted and told 503, and the
 * listener rests. */
static void fdguard_exhausted(int lfd)
{
    fg.refused++;
    fg.gw->metrics->accept_refused++;
    if (fg.spare >= 0) {
        close(fg.spare);
        fg.spare = -1;
        int k = fdguard_libc_accept4()(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (k >= 0) {
            char sink[4096]; /* what it sent: unread, it would turn the close into a reset */
            for (int i = 0; i < 4 && recv(k, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
                ;
            (void)!send(k, fdguard_503, sizeof(fdguard_503) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
            close(k);
        }
        fg.spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    fdguard_rest(lfd, gw_clock_ms() + FDGUARD_BACKOFF_MS);
    fdguard_report();
}

/* What accept() (or accept4) returned: k, after tracking it; or, out of
 * descriptors, -1 with EAGAIN, so libwebsockets stops trying for now
 * (it logs any other error, and tries again at the next poll). */
static int fdguard_accepted(int lfd, int k)
{
    if (k >= 0) {
        fdguard_track(lfd, k);
        return k;
    }
    int e = errno;
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        fdguard_exhausted(lfd);
        e = EAGAIN;
    }
    errno = e;
    return -1;
}

int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    int k = fdguard_libc_accept()(fd, addr, len);
    return fdguard_ours() ? fdguard_accepted(fd, k) : k;
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    int k = fdguard_libc_accept4()(fd, addr, len, flags);
    return fdguard_ours() ? fdguard_accepted(fd, k) : k;
}

typedef int (*fdguard_bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    static fdguard_bind_fn real;
    if (!real && !(real = (fdguard_bind_fn)dlsym(RTLD_NEXT, "bind"))) {
        errno = ENOSYS;
        return -1;
    }
    if (fg.share && pthread_equal(pthread_self(), fg.share_on) && addr &&
        (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)) {
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
            return -1;
    }
    return real(fd, addr, len);
}

void fdguard_share_ports(int on)
{
    fg.share = on;
    fg.share_on = pthread_self();
}

/* evpoll_close_fn: a descriptor closed on the loop's thread. */
static void fdguard_closed(void *arg, int fd)
{
    (void)arg;
    if (fd >= 0 && fd < fg.cap && fg.in[fd] == FDGUARD_DYING) {
        fg.in[fd] = 0;
        fg.dying--;
    }
    fdguard_unlink(fd);
    if (fg.refused || fg.evicted) /* the count since the last line, within a second */
        fdguard_report();
    if (fg.muted) { /* a descriptor is free again: the listeners may go on */
        evpoll_unmute_all();
        fg.muted = 0;
    }
}

/* ---- life cycle ---- */

void fdguard_upgraded(int fd)
{
    if (!fg.on)
        return;
    fdguard_unlink(fd);
    if (fg.muted) { /* room in the handshake bound: the listeners may go on */
        evpoll_unmute_all();
        fg.muted = 0;
    }
}

uint32_t fdguard_pending(void)
{
    return fg.pending + fg.dying;
}

void fdguard_set_max(uint32_t max_handshakes)
{
    fg.max = max_handshakes ? max_handshakes : 1;
}

int fdguard_start(mg_gw *gw, int fd_cap, uint32_t max_handshakes)
{
    if (!fdguard_libc_accept() || !fdguard_libc_accept4())
        return -1;
    fg.prev = malloc((size_t)fd_cap * sizeof(*fg.prev));
    fg.next = malloc((size_t)fd_cap * sizeof(*fg.next));
    fg.in = calloc((size_t)fd_cap, 1);
    fg.since = malloc((size_t)fd_cap * sizeof(*fg.since));
    fg.spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (!fg.prev || !fg.next || !fg.in || !fg.since || fg.spare < 0) {
        fdguard_stop();
        return -1;
    }
    fg.gw = gw;
    fg.cap = fd_cap;
    fg.loop = pthread_self();
    fdguard_set_max(max_handshakes);
    evpoll_on_close(fdguard_closed, NULL);
    fg.on = 1;
    return 0;
}

void fdguard_stop(void)
{
    if (fg.on)
        evpoll_on_close(NULL, NULL);
    fg.on = 0;
    if (fg.spare >= 0)
        close(fg.spare);
    free(fg.prev);
    free(fg.next);
    free(fg.in);
    free(fg.since);
    fg.since = NULL;
    fg.prev = fg.next = NULL;
    fg.in = NULL;
    fg.cap = 0;
    fg.spare = -1;
    fg.head = fg.tail = -1;
    fg.pending = fg.dying = 0;
    fg.muted = 0;
}
