/* test_uring.c — uring.c on socket pairs: sends of one piece and of
 * several arrive in order and are reported with their byte counts and
 * contexts; a socket that is full comes back short or -EAGAIN at once
 * (never parked), as send() would; a bad descriptor comes back as -EBADF;
 * a full batch refuses more until it is run; receives return what is
 * there, -EAGAIN at once when nothing is, and 0 at EOF, in the same
 * batch as sends.
 *
 * On a kernel without io_uring (or one forbidding it) there is nothing to
 * test: the program exits 77, which ctest reports as skipped. */

#include "testlib.h"
#include "uring.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct result {
    void *ctx;
    int res;
    size_t len;
} result;

typedef struct results {
    result r[16];
    int n;
} results;

static void on_done(void *arg, void *ctx, int res, size_t len)
{
    results *rs = arg;
    if (rs->n < 16)
        rs->r[rs->n++] = (result){ctx, res, len};
}

static void pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        perror("socketpair");
        exit(2);
    }
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
}

/* Everything readable on fd now. */
static size_t drain(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    ssize_t k;
    while (n < cap && (k = read(fd, buf + n, cap - n)) > 0)
        n += (size_t)k;
    return n;
}

static void test_sends_arrive_in_order(void)
{
    char why[128];
    mg_uring *u = uring_new(8, why, sizeof(why));
    int sv[2];
    pair(sv);
    int a = 1, b = 2;
    struct iovec one = {"hello ", 6};
    struct iovec three[3] = {{"wor", 3}, {"ld", 2}, {"!", 1}};
    CHECK(uring_add(u, sv[0], &one, 1, &a) == 0);
    CHECK(uring_add(u, sv[0], three, 3, &b) == 0);
    results rs = {0};
    CHECK(uring_run(u, on_done, &rs) == 2);
    CHECK(rs.n == 2);
    for (int i = 0; i < rs.n; i++) {
        if (rs.r[i].ctx == &a)
            CHECK(rs.r[i].res == 6 && rs.r[i].len == 6);
        else
            CHECK(rs.r[i].ctx == &b && rs.r[i].res == 6 && rs.r[i].len == 6);
    }
    char buf[64];
    size_t n = drain(sv[1], buf, sizeof(buf));
    CHECK(n == 12 && memcmp(buf, "hello world!", 12) == 0);
    /* The ring is reusable: a second batch. */
    CHECK(uring_add(u, sv[0], &one, 1, &a) == 0);
    rs.n = 0;
    CHECK(uring_run(u, on_done, &rs) == 1 && rs.n == 1 && rs.r[0].res == 6);
    CHECK(uring_run(u, on_done, &rs) == 0); /* nothing queued */
    close(sv[0]);
    close(sv[1]);
    uring_free(u);
}

static void test_full_socket_is_short_not_parked(void)
{
    char why[128];
    mg_uring *u = uring_new(8, why, sizeof(why));
    int sv[2];
    pair(sv);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    size_t big = 1 << 20;
    char *data = malloc(big);
    memset(data, 'x', big);
    struct iovec iov = {data, big};
    int a = 1, b = 2;
    CHECK(uring_add(u, sv[0], &iov, 1, &a) == 0);
    CHECK(uring_add(u, sv[0], &iov, 1, &b) == 0);
    results rs = {0};
    CHECK(uring_run(u, on_done, &rs) == 2); /* returns: nothing waits on the socket */
    CHECK(rs.n == 2);
    int sent = 0;
    for (int i = 0; i < rs.n; i++) {
        CHECK(rs.r[i].len == big);
        CHECK(rs.r[i].res == -EAGAIN || (rs.r[i].res > 0 && (size_t)rs.r[i].res < big));
        if (rs.r[i].res > 0)
            sent += rs.r[i].res;
    }
    CHECK(sent > 0); /* the first took what fit */
    char *got = malloc(big);
    CHECK(drain(sv[1], got, big) == (size_t)sent);
    free(got);
    free(data);
    close(sv[0]);
    close(sv[1]);
    uring_free(u);
}

static void test_bad_descriptor_and_full_batch(void)
{
    char why[128];
    mg_uring *u = uring_new(2, why, sizeof(why));
    int sv[2];
    pair(sv);
    struct iovec iov = {"x", 1};
    int a = 1, b = 2, c = 3;
    CHECK(uring_add(u, 1000000, &iov, 1, &a) == 0);
    CHECK(uring_add(u, sv[0], &iov, 1, &b) == 0);
    CHECK(uring_add(u, sv[0], &iov, 1, &c) == -1); /* full */
    results rs = {0};
    CHECK(uring_run(u, on_done, &rs) == 2 && rs.n == 2);
    for (int i = 0; i < rs.n; i++) {
        if (rs.r[i].ctx == &a)
            CHECK(rs.r[i].res == -EBADF);
        else
            CHECK(rs.r[i].ctx == &b && rs.r[i].res == 1);
    }
    CHECK(uring_add(u, sv[0], &iov, 1, &c) == 0); /* room again */
    rs.n = 0;
    CHECK(uring_run(u, on_done, &rs) == 1 && rs.r[0].ctx == &c && rs.r[0].res == 1);
    close(sv[0]);
    close(sv[1]);
    uring_free(u);
}

static void test_receives(void)
{
    char why[128];
    mg_uring *u = uring_new(8, why, sizeof(why));
    int a[2], b[2], e[2];
    pair(a);
    pair(b);
    pair(e);
    CHECK(write(a[1], "ping", 4) == 4);
    close(e[1]); /* EOF on e[0] */
    char ba[16], bb[16], be[16];
    int ca = 1, cb = 2, ce = 3, cs = 4;
    struct iovec iov = {"pong", 4};
    CHECK(uring_add_recv(u, a[0], ba, sizeof(ba), &ca) == 0);
    CHECK(uring_add_recv(u, b[0], bb, sizeof(bb), &cb) == 0); /* nothing there */
    CHECK(uring_add_recv(u, e[0], be, sizeof(be), &ce) == 0);
    CHECK(uring_add(u, a[0], &iov, 1, &cs) == 0);
    results rs = {0};
    CHECK(uring_run(u, on_done, &rs) == 4 && rs.n == 4);
    for (int i = 0; i < rs.n; i++) {
        if (rs.r[i].ctx == &ca)
            CHECK(rs.r[i].res == 4 && memcmp(ba, "ping", 4) == 0);
        else if (rs.r[i].ctx == &cb)
            CHECK(rs.r[i].res == -EAGAIN);
        else if (rs.r[i].ctx == &ce)
            CHECK(rs.r[i].res == 0);
        else
            CHECK(rs.r[i].ctx == &cs && rs.r[i].res == 4);
    }
    char got[8];
    CHECK(drain(a[1], got, sizeof(got)) == 4 && memcmp(got, "pong", 4) == 0);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    close(e[0]);
    uring_free(u);
}

int main(void)
{
    char why[128];
    mg_uring *u = uring_new(4, why, sizeof(why));
    if (!u) {
        printf("uring: skipped, no io_uring here (%s)\n", why);
        return 77;
    }
    uring_free(u);
    const tl_case cases[] = {T(test_sends_arrive_in_order), T(test_full_socket_is_short_not_parked),
                             T(test_bad_descriptor_and_full_batch), T(test_receives)};
    return tl_run("uring", cases, (int)(sizeof(cases) / sizeof(cases[0])));
}
