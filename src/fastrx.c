/* fastrx.c — moongate reads plain ws:// connections itself (fastrx.h). */
#include "fastrx.h"

#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "conn.h"
#include "evpoll.h"
#include "log.h"
#include "server.h"
#include "uring.h"
#include "wsrx.h"

/* One read: the biggest batch of frames handled per connection per turn
 * (a 16 KiB message and its header fit in one), after what the previous
 * read left unfinished. */
#define FASTRX_READ (64 * 1024)
/* Reads made at once after the loop's poll() (fastrx_prefetch), and the
 * room each gets: the bytes kept from the read before, then the read. */
#define FASTRX_BATCH 64
#define FASTRX_SLOT (WSRX_CARRY_MAX + FASTRX_READ)

typedef int (*fastrx_service_fn)(struct lws_context *, struct lws_pollfd *, int);

typedef struct fastrx_slot fastrx_slot;

typedef struct fastrx_ctx {
    mg_gw *gw;
    mg_conn *c;
} fastrx_ctx;

static int fastrx_message(void *arg, const unsigned char *data, size_t len, int binary)
{
    fastrx_ctx *x = arg;
    return server_rx_message(x->gw, x->c, data, len, binary);
}

static int fastrx_control(void *arg, int opcode, const unsigned char *data, size_t len)
{
    fastrx_ctx *x = arg;
    return server_rx_control(x->gw, x->c, opcode, data, len);
}

static const wsrx_sink fastrx_sink = {fastrx_message, fastrx_control};

/* lws's own lws_service_fd_tsi, found past ours. */
static fastrx_service_fn fastrx_real(mg_gw *gw)
{
    if (gw && gw->fastrx_real)
        return (fastrx_service_fn)gw->fastrx_real;
    return (fastrx_service_fn)dlsym(RTLD_NEXT, "lws_service_fd_tsi");
}

/* The gateway whose context this is, or NULL (a context of a unit test). */
static mg_gw *fastrx_gw(struct lws_context *ctx)
{
    mg_gw *gw = lws_context_user(ctx);
    return gw && gw->lws == ctx ? gw : NULL;
}

/* Process n bytes read from c at buf + kept, after the kept bytes the
 * read before left unfinished (put at buf by the caller). */
static void fastrx_process(mg_gw *gw, mg_conn *c, unsigned char *buf, size_t kept, size_t n)
{
    if (c->rx_dead) /* failed or closed: nothing more is read from it */
        return;
    c->last_rx_ms = gw_now(gw);

    fastrx_ctx x = {gw, c};
    int code = 0;
    const char *reason = NULL;
    int rc = wsrx_feed(&c->wsrx, buf, kept + n, gw->cfg->max_message_size, &fastrx_sink, &x, &code,
                       &reason);
    if (rc == WSRX_ERROR)
        server_rx_error(gw, c, code, reason);
    /* With io_uring the replies wait for the end of the loop turn, to
     * leave with every other socket's in one system call (server.c);
     * without, they leave now: a send() each either way, and sooner. */
    if (gw->uring)
        conn_wake(gw, c);
    else
        server_flush(gw, c);
}

/* A read that brought no bytes (0 at EOF, or -errno): 0 if there was
 * simply nothing to read, -1 if lws must see it (it reads again and
 * closes the connection its usual way). */
static int fastrx_nothing(long res)
{
    return res == -EAGAIN || res == -EWOULDBLOCK || res == -EINTR ? 0 : -1;
}

/* Read once from c and process what came.  0 when done with POLLIN, -1
 * when lws must see it (EOF or an error: lws reads it again and closes). */
static int fastrx_read(mg_gw *gw, mg_conn *c, int fd)
{
    unsigned char *buf = gw->fastrx_buf;
    size_t kept = c->rx_dead ? 0 : wsrx_unread(c->wsrx, buf);
    /* The system call itself: libc's recv() is a cancellation point, and
     * with the watchdog thread running it switches cancellation on and off
     * around every call (two atomic operations; recv and send together
     * spent ~2% of an echo's CPU there). */
    ssize_t n = syscall(SYS_recvfrom, fd, buf + kept, (size_t)FASTRX_READ, 0, NULL, NULL);
    if (n <= 0)
        return fastrx_nothing(n < 0 ? -errno : 0);
    fastrx_process(gw, c, buf, kept, (size_t)n);
    return 0;
}

/* ---- reading a loop turn's sockets at once ----
 *
 * With io_uring (server.c sets gw->uring up), right after the loop's poll()
 * found sockets ready, and before lws handles any, every connection of
 * ours among them is read in one system call instead of a recv() each:
 * into a slot of gw->fastrx_pre, its result in gw->fastrx_slots.  When lws
 * then hands the descriptor to lws_service_fd_tsi, the bytes are
 * processed from the slot as fastrx_read would have processed its own.
 * A read that found nothing is dropped; EOF or an error goes to lws as
 * before.  Slots are taken again at the next poll: a slot still holding
 * bytes then (lws did not hand its descriptor over) is processed first,
 * and so is every one at the end of the turn (fastrx_settle). */

/* uring_done_fn of a batch of reads. */
static void fastrx_read_done(void *arg, void *ctx, int res, size_t len)
{
    (void)len;
    ((mg_gw *)arg)->metrics->uring_reads++;
    ((fastrx_slot *)ctx)->res = res;
}

/* Process what the batch read for c.  0 when done with POLLIN, -1 when
 * lws must see it, as fastrx_read. */
static int fastrx_take(mg_gw *gw, mg_conn *c)
{
    int i = c->pre - 1;
    fastrx_slot *sl = &gw->fastrx_slots[i];
    c->pre = 0;
    sl->c = NULL;
    if (sl->res <= 0)
        return fastrx_nothing(sl->res);
    unsigned char *data = gw->fastrx_pre + (size_t)i * FASTRX_SLOT + WSRX_CARRY_MAX;
    unsigned char carry[WSRX_CARRY_MAX];
    size_t kept = c->rx_dead ? 0 : wsrx_unread(c->wsrx, carry);
    memcpy(data - kept, carry, kept);
    fastrx_process(gw, c, data - kept, kept, (size_t)sl->res);
    return 0;
}

void fastrx_settle(mg_gw *gw)
{
    gw->dispatching++;
    for (int i = 0; i < gw->fastrx_nslots; i++) {
        mg_conn *c = gw->fastrx_slots[i].c;
        /* EOF or an error: the socket stays readable (or hung up), and
         * lws finds it at the next poll. */
        if (c)
            (void)fastrx_take(gw, c);
    }
    gw->fastrx_nslots = 0;
    gw->dispatching--;
}

void fastrx_prefetch(mg_gw *gw, struct pollfd *fds, const int *ready, int k)
{
    /* Only the loop's poll() before lws's service: not one lws makes while
     * it handles a socket, nor one while writes are being queued. */
    if (!gw->uring || gw->dispatching || uring_queued(gw->uring))
        return;
    fastrx_settle(gw);
    int n = 0;
    for (int j = 0; j < k && n < FASTRX_BATCH; j++) {
        struct pollfd *p = &fds[ready[j]];
        mg_conn *c;
        if (!(p->revents & POLLIN) || !(c = conn_by_fd(gw, p->fd)) || !c->fast || c->rx_paused ||
            c->rx_dead)
            continue;
        unsigned char *buf = gw->fastrx_pre + (size_t)n * FASTRX_SLOT + WSRX_CARRY_MAX;
        if (uring_add_recv(gw->uring, p->fd, buf, FASTRX_READ, &gw->fastrx_slots[n]) != 0)
            break;
        gw->fastrx_slots[n].c = c;
        gw->fastrx_slots[n].res = -EAGAIN;
        c->pre = n + 1;
        n++;
    }
    gw->fastrx_nslots = n;
    if (n && uring_run(gw->uring, fastrx_read_done, gw) < 0)
        server_uring_failed(gw);
}

/* Every ready descriptor of lws's loop passes here first. */
int lws_service_fd_tsi(struct lws_context *ctx, struct lws_pollfd *pfd, int tsi)
{
    mg_gw *gw = fastrx_gw(ctx);
    if (!gw)
        return fastrx_real(gw)(ctx, pfd, tsi);
    gw->fastrx_seen = 1;
    gw->dispatching++; /* sends from here on are flushed after the turn (conn_wake) */
    mg_conn *c;
    int rc = 0;
    /* lws never reads a connection of ours: while reading is paused (a
     * partial write) the event is dropped (lws's flow control takes POLLIN
     * out of the set); only EOF or an error goes on, for lws to close it. */
    if ((pfd->revents & POLLIN) && (c = conn_by_fd(gw, pfd->fd)) && c->fast &&
        (c->pre ? fastrx_take(gw, c) == 0 : c->rx_paused || fastrx_read(gw, c, pfd->fd) == 0))
        pfd->revents &= (short)~POLLIN;
    if (pfd->revents)
        rc = fastrx_real(gw)(ctx, pfd, tsi);
    gw->dispatching--;
    return rc;
}

int fastrx_start(mg_gw *gw)
{
    gw->fastrx_real = (void *)dlsym(RTLD_NEXT, "lws_service_fd_tsi");
    gw->fastrx_buf = malloc(WSRX_CARRY_MAX + FASTRX_READ);
    /* Pages of the batch's slots are touched only by the reads they get. */
    gw->fastrx_pre = malloc((size_t)FASTRX_BATCH * FASTRX_SLOT);
    gw->fastrx_slots = calloc(FASTRX_BATCH, sizeof(*gw->fastrx_slots));
    if (!gw->fastrx_real || !gw->fastrx_buf || !gw->fastrx_pre || !gw->fastrx_slots) {
        fastrx_stop(gw);
        return -1;
    }
    gw->fastrx_on = 1;
    return 0;
}

void fastrx_stop(mg_gw *gw)
{
    free(gw->fastrx_buf);
    free(gw->fastrx_pre);
    free(gw->fastrx_slots);
    gw->fastrx_buf = NULL;
    gw->fastrx_pre = NULL;
    gw->fastrx_slots = NULL;
    gw->fastrx_nslots = 0;
    gw->fastrx_on = 0;
}

int fastrx_attach(mg_gw *gw, mg_conn *c)
{
    /* Until lws's loop has called through here once, it may not: then
     * every connection keeps lws's reader.  (The listener's first accept
     * comes through here, before any upgrade can complete.) */
    if (!gw->fastrx_seen) {
        if (gw->fastrx_on && !gw->fastrx_warned) {
            log_warn("libwebsockets' service calls do not reach moongate: frames are parsed by "
                     "libwebsockets (slower)");
            gw->fastrx_warned = 1;
        }
        return 0;
    }
    /* Plain TCP, and lws holds no part of its 101 to write: from here on
     * moongate alone writes the socket (server.c), and lws never will. */
    if (!gw->fastrx_on || lws_is_ssl(c->wsi) || lws_partial_buffered(c->wsi) ||
        conn_by_fd(gw, c->fd) != c)
        return 0;
    c->fast = 1;
    return 1;
}

void fastrx_detach(mg_gw *gw, mg_conn *c)
{
    if (!c->fast || !c->wsi)
        return;
    if (c->pre) { /* what the batch read for it goes with it */
        gw->fastrx_slots[c->pre - 1].c = NULL;
        c->pre = 0;
    }
    c->fast = 0;
}
