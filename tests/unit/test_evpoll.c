/* test_evpoll.c — evpoll.c: poll() served from an epoll set.
 *
 * 300 pipes (over the 256 where the set takes over): every answer is
 * compared with what libc's poll() says for the same array.  Readable and
 * writable ends, events switched on and off, entries dropped from the
 * array, descriptors closed and their numbers reused at once for a pipe in
 * another state, a timeout with nothing ready, calls from another
 * thread (which the set must not serve), and the report of the ready
 * entries (evpoll_on_ready) from the set and from libc's poll(). */

#include "evpoll.h"
#include "testlib.h"

#include <dlfcn.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NPIPES 300

typedef int (*poll_fn)(struct pollfd *, nfds_t, int);

static int pipes[NPIPES][2];

static int libc_poll(struct pollfd *fds, nfds_t n, int timeout)
{
    static poll_fn real;
    if (!real)
        real = (poll_fn)dlsym(RTLD_NEXT, "poll");
    return real(fds, n, timeout);
}

/* poll() (served by evpoll) and libc's poll() agree on this array. */
static int agree(struct pollfd *fds, nfds_t n)
{
    struct pollfd *copy = malloc(n * sizeof(*copy));
    memcpy(copy, fds, n * sizeof(*copy));
    int a = poll(fds, n, 0), b = libc_poll(copy, n, 0);
    int same = a == b;
    for (nfds_t i = 0; i < n; i++)
        if (fds[i].revents != copy[i].revents) {
            fprintf(stderr, "  entry %zu fd %d: evpoll %#x, libc %#x\n", (size_t)i, fds[i].fd,
                    fds[i].revents, copy[i].revents);
            same = 0;
        }
    if (a != b)
        fprintf(stderr, "  ready: evpoll %d, libc %d\n", a, b);
    free(copy);
    return same;
}

static void open_pipes(void)
{
    for (int i = 0; i < NPIPES; i++)
        if (pipe(pipes[i]) != 0) {
            perror("pipe");
            exit(2);
        }
}

/* Read ends of every pipe, POLLIN; every third one has a byte in it. */
static void test_readable(void)
{
    struct pollfd fds[NPIPES];
    for (int i = 0; i < NPIPES; i++) {
        fds[i] = (struct pollfd){.fd = pipes[i][0], .events = POLLIN};
        if (i % 3 == 0)
            CHECK(write(pipes[i][1], "x", 1) == 1);
    }
    CHECK(agree(fds, NPIPES));
    CHECK(poll(fds, NPIPES, 0) == NPIPES / 3);
    /* drain some: they stop being ready */
    char c;
    for (int i = 0; i < NPIPES; i += 6)
        CHECK(read(pipes[i][0], &c, 1) == 1);
    CHECK(agree(fds, NPIPES));
}

/* What on_ready heard: each ready index once, in a bitmap. */
static struct {
    int calls, k;
    int hide; /* take POLLIN out of every other ready entry, as fastrx.c does */
    unsigned char seen[NPIPES];
} heard;

static int on_ready(void *arg, struct pollfd *fds, const int *ready, int k)
{
    CHECK(arg == &heard);
    heard.calls++;
    heard.k = k;
    int left = k;
    for (int j = 0; j < k; j++) {
        if (ready[j] >= 0 && ready[j] < NPIPES)
            heard.seen[ready[j]]++;
        if (heard.hide && j % 2 == 0) {
            fds[ready[j]].revents &= (short)~POLLIN;
            left -= fds[ready[j]].revents == 0;
        }
    }
    return left;
}

/* on_ready hears exactly the entries poll() reports ready, each once, from
 * the set (300 entries) and from libc's poll() (40); nothing when none is. */
static void test_ready_report(void)
{
    static int own[NPIPES][2]; /* pipes of its own: the others' states vary */
    struct pollfd fds[NPIPES];
    char c;
    for (int i = 0; i < NPIPES; i++)
        if (pipe(own[i]) != 0) {
            perror("pipe");
            exit(2);
        }
    evpoll_on_ready(on_ready, &heard);
    const nfds_t sizes[2] = {NPIPES, 40};
    for (int t = 0; t < 2; t++) {
        nfds_t n = sizes[t];
        for (int i = 0; i < NPIPES; i++) {
            fds[i] = (struct pollfd){.fd = own[i][0], .events = POLLIN};
            if (i % 7 == 3)
                CHECK(write(own[i][1], "x", 1) == 1);
        }
        memset(&heard, 0, sizeof(heard));
        int ready = poll(fds, n, 0);
        CHECK(ready > 0 && heard.calls == 1 && heard.k == ready);
        for (nfds_t i = 0; i < n; i++)
            CHECK(heard.seen[i] == (fds[i].revents ? 1 : 0));
        for (int i = 3; i < NPIPES; i += 7)
            CHECK(read(own[i][0], &c, 1) == 1);
        memset(&heard, 0, sizeof(heard));
        CHECK(poll(fds, n, 0) == 0 && heard.calls == 0);
        /* What on_ready takes out is not returned: poll() counts the rest. */
        for (int i = 3; i < NPIPES; i += 7)
            CHECK(write(own[i][1], "x", 1) == 1);
        memset(&heard, 0, sizeof(heard));
        heard.hide = 1;
        ready = poll(fds, n, 0);
        int still = 0;
        for (nfds_t i = 0; i < n; i++)
            still += fds[i].revents != 0;
        CHECK(heard.calls == 1 && heard.k > 1 && ready == still && ready == heard.k / 2);
        for (int i = 3; i < NPIPES; i += 7)
            CHECK(read(own[i][0], &c, 1) == 1);
    }
    evpoll_on_ready(NULL, NULL);
    for (int i = 0; i < NPIPES; i++) {
        close(own[i][0]);
        close(own[i][1]);
    }
}

/* Write ends with POLLOUT switched on for half of them, then off again. */
static void test_events_change(void)
{
    struct pollfd fds[NPIPES];
    for (int i = 0; i < NPIPES; i++)
        fds[i] = (struct pollfd){.fd = pipes[i][1], .events = (short)(i % 2 ? POLLOUT : 0)};
    CHECK(agree(fds, NPIPES));
    CHECK(poll(fds, NPIPES, 0) == NPIPES / 2);
    for (int i = 0; i < NPIPES; i++)
        fds[i].events = (short)(i % 2 ? 0 : POLLOUT);
    CHECK(agree(fds, NPIPES));
    for (int i = 0; i < NPIPES; i++)
        fds[i].events = 0;
    CHECK(poll(fds, NPIPES, 0) == 0);
}

/* Entries leave the array (the last moved into the gap, as lws does);
 * numbers closed and reused at once by a pipe in another state. */
static void test_drop_and_reuse(void)
{
    struct pollfd fds[NPIPES];
    nfds_t n = NPIPES;
    for (int i = 0; i < NPIPES; i++)
        fds[i] = (struct pollfd){.fd = pipes[i][0], .events = POLLIN};
    CHECK(agree(fds, n));
    for (int k = 0; k < 20; k++) { /* drop 20 entries without closing them */
        fds[k * 7] = fds[n - 1];
        n--;
    }
    CHECK(agree(fds, n));
    /* close 30 read ends still in the array; reuse the numbers for new
     * pipes whose read ends have data */
    for (int k = 0; k < 30; k++) {
        int fd = fds[k].fd;
        CHECK(close(fd) == 0);
        int np[2];
        CHECK(pipe(np) == 0);
        CHECK(write(np[1], "y", 1) == 1);
        fds[k].fd = np[0]; /* usually the same number as fd */
        (void)fd;
    }
    CHECK(agree(fds, n));
    int ready = poll(fds, n, 0);
    CHECK(ready >= 30);
}

/* Nothing ready: the timeout is honoured. */
static void test_timeout(void)
{
    struct pollfd quiet[NPIPES];
    int ends[NPIPES][2], q = NPIPES;
    for (int i = 0; i < q; i++) {
        CHECK(pipe(ends[i]) == 0);
        quiet[i] = (struct pollfd){.fd = ends[i][0], .events = POLLIN};
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(poll(quiet, (nfds_t)q, 50) == 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    CHECK(ms >= 45 && ms < 1000);
    for (int i = 0; i < q; i++) {
        close(ends[i][0]);
        close(ends[i][1]);
    }
}

static void *other_thread(void *arg)
{
    struct pollfd *fds = arg;
    return (void *)(intptr_t)poll(fds, NPIPES, 0);
}

/* A call from another thread goes to libc (and leaves the set alone). */
static void test_other_thread(void)
{
    static struct pollfd fds[NPIPES];
    for (int i = 0; i < NPIPES; i++)
        fds[i] = (struct pollfd){.fd = pipes[i][1], .events = POLLOUT};
    pthread_t t;
    void *ret;
    CHECK(pthread_create(&t, NULL, other_thread, fds) == 0);
    CHECK(pthread_join(t, &ret) == 0);
    CHECK((intptr_t)ret == NPIPES);
    CHECK(agree(fds, NPIPES));
}

static void setup(void)
{
    open_pipes();
    if (evpoll_start() != 0) {
        fprintf(stderr, "evpoll_start failed\n");
        exit(2);
    }
}

static void test_active(void)
{
    CHECK(evpoll_active());
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void mute_case(nfds_t n)
{
    /* A readable pipe, muted: poll() neither reports it nor waits past the
     * mute's end; after, it is readable again, and evpoll_unmute_all
     * lifts a mute early. */
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "x", 1) == 1);
    static struct pollfd fds[NPIPES + 1];
    for (nfds_t i = 0; i + 1 < n; i++)
        fds[i] = (struct pollfd){.fd = -1, .events = POLLIN}; /* ignored: only n counts */
    fds[n - 1] = (struct pollfd){.fd = p[0], .events = POLLIN};
    CHECK(evpoll_mute(p[0], now_ms() + 150) == 0);
    int64_t t0 = now_ms();
    CHECK(poll(fds, n, 0) == 0);
    CHECK(fds[n - 1].events == POLLIN); /* the caller's array is as it was */
    int rc = poll(fds, n, 5000);        /* wakes when the mute ends ... */
    int64_t waited = now_ms() - t0;
    CHECK(waited >= 100 && waited < 2000);
    if (rc == 0)
        rc = poll(fds, n, 0); /* ... and then sees it readable */
    CHECK(rc == 1 && (fds[n - 1].revents & POLLIN));
    CHECK(evpoll_mute(p[0], now_ms() + 60000) == 0);
    CHECK(poll(fds, n, 0) == 0);
    evpoll_unmute_all();
    CHECK(poll(fds, n, 0) == 1);
    close(p[0]);
    close(p[1]);
}

static void test_mute(void)
{
    mute_case(3);          /* libc's poll() */
    mute_case(NPIPES + 1); /* the epoll set */
}

int main(void)
{
    setup();
    const tl_case cases[] = {T(test_readable),     T(test_events_change), T(test_drop_and_reuse),
                             T(test_timeout),      T(test_other_thread),  T(test_active),
                             T(test_ready_report), T(test_mute)};
    int rc = tl_run("evpoll", cases, (int)(sizeof(cases) / sizeof(cases[0])));
    evpoll_stop();
    return rc;
}
