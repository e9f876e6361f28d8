/* uring.c — many sockets written with one system call (uring.h). */
#include "uring.h"

#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* One queued send: what the kernel reads while the batch is submitted. */
typedef struct uring_slot {
    struct msghdr mh;
    struct iovec iov[URING_IOV];
    void *ctx;
    size_t len;
    int reported;
} uring_slot;

struct mg_uring {
    struct io_uring ring;
    uring_slot *slots;
    unsigned entries;
    unsigned queued; /* slots used by the batch being built */
};

/* Setup flags that spare the kernel work, newest first; each is dropped
 * if the kernel does not know it.  Only the loop thread submits. */
static int uring_init(struct io_uring *ring, unsigned entries)
{
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        0,
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
        rc = io_uring_queue_init(entries, ring, tries[i]);
        if (rc != -EINVAL)
            break;
    }
    return rc;
}

mg_uring *uring_new(unsigned entries, char *why, size_t whylen)
{
    mg_uring *u = calloc(1, sizeof(*u));
    if (u)
        u->slots = calloc(entries, sizeof(*u->slots));
    if (!u || !u->slots) {
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    int rc = uring_init(&u->ring, entries);
    if (rc < 0) {
        snprintf(why, whylen, "io_uring_setup: %s", strerror(-rc));
        goto fail;
    }
    /* A probe, so that a kernel with io_uring but no IORING_OP_SEND (before
     * 5.6) is found now, not at the first write. */
    struct io_uring_probe *p = io_uring_get_probe_ring(&u->ring);
    int ok = p && io_uring_opcode_supported(p, IORING_OP_SEND) &&
             io_uring_opcode_supported(p, IORING_OP_SENDMSG) &&
             io_uring_opcode_supported(p, IORING_OP_RECV);
    if (p)
        io_uring_free_probe(p);
    if (!ok) {
        snprintf(why, whylen, "the kernel's io_uring cannot send and receive");
        io_uring_queue_exit(&u->ring);
        goto fail;
    }
    u->entries = entries;
    return u;
fail:
    if (u)
        free(u->slots);
    free(u);
    return NULL;
}

void uring_free(mg_uring *u)
{
    if (!u)
        return;
    io_uring_queue_exit(&u->ring);
    free(u->slots);
    free(u);
}

/* A submission entry and its slot for the next operation, or NULL if the
 * batch is full. */
static struct io_uring_sqe *uring_take(mg_uring *u, void *ctx, size_t len)
{
    if (u->queued == u->entries)
        return NULL;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe)
        return NULL;
    unsigned i = u->queued++;
    uring_slot *s = &u->slots[i];
    s->ctx = ctx;
    s->reported = 0;
    s->len = len;
    io_uring_sqe_set_data64(sqe, i);
    return sqe;
}

int uring_add(mg_uring *u, int fd, const struct iovec *iov, int n, void *ctx)
{
    size_t len = 0;
    for (int k = 0; k < n; k++)
        len += iov[k].iov_len;
    struct io_uring_sqe *sqe = uring_take(u, ctx, len);
    if (!sqe)
        return -1;
    const int flags = MSG_DONTWAIT | MSG_NOSIGNAL;
    if (n == 1) {
        io_uring_prep_send(sqe, fd, iov[0].iov_base, iov[0].iov_len, flags);
    } else {
        uring_slot *s = &u->slots[u->queued - 1];
        memcpy(s->iov, iov, (size_t)n * sizeof(*iov));
        memset(&s->mh, 0, sizeof(s->mh));
        s->mh.msg_iov = s->iov;
        s->mh.msg_iovlen = (size_t)n;
        io_uring_prep_sendmsg(sqe, fd, &s->mh, flags);
    }
    return 0;
}

int uring_add_recv(mg_uring *u, int fd, void *buf, size_t len, void *ctx)
{
    struct io_uring_sqe *sqe = uring_take(u, ctx, len);
    if (!sqe)
        return -1;
    io_uring_prep_recv(sqe, fd, buf, len, MSG_DONTWAIT);
    return 0;
}

unsigned uring_queued(const mg_uring *u)
{
    return u->queued;
}

/* Report every completion the ring holds; returns how many. */
static unsigned uring_reap(mg_uring *u, uring_done_fn done, void *arg)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&u->ring, head, cqe)
    {
        uint64_t i = io_uring_cqe_get_data64(cqe);
        n++;
        if (i >= u->queued || u->slots[i].reported)
            continue; /* not ours: cannot happen */
        u->slots[i].reported = 1;
        done(arg, u->slots[i].ctx, cqe->res, u->slots[i].len);
    }
    io_uring_cq_advance(&u->ring, n);
    return n;
}

int uring_run(mg_uring *u, uring_done_fn done, void *arg)
{
    unsigned total = u->queued, seen = 0;
    if (!total)
        return 0;
    /* Submitted and waited for in one call; MSG_DONTWAIT makes every send
     * complete during the submission, so the wait is for nothing but the
     * results to be posted. */
    int rc = io_uring_submit_and_wait(&u->ring, total);
    for (;;) {
        seen += uring_reap(u, done, arg);
        if (seen >= total)
            break;
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            break;
        rc = io_uring_submit_and_wait(&u->ring, 1);
    }
    u->queued = 0;
    if (seen < total) {
        /* The ring failed (it should not): what it did not report counts
         * as not sent, and goes out when the socket says it is writable. */
        for (unsigned i = 0; i < total; i++)
            if (!u->slots[i].reported)
                done(arg, u->slots[i].ctx, -EAGAIN, u->slots[i].len);
        return -1;
    }
    return (int)total;
}
