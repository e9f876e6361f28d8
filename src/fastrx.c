/* fastrx.c — moongate reads ws:// and wss:// connections itself (fastrx.h). */
#include "fastrx.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "rx.h"
#include "uring.h"
#include "writer.h"
#include "wsrx.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

/* One read: the biggest batch of frames handled per connection per turn
 * (a 16 KiB message and its header fit in one), after what the previous
 * read left unfinished. */
#define FASTRX_READ (64 * 1024)
#define FASTRX_ROOM (WSRX_CARRY_MAX + FASTRX_READ)
/* Reads per loop turn in one io_uring batch: they run at once, so each
 * keeps a whole FASTRX_ROOM of the arena.  The sockets past them (or all,
 * without io_uring) are read one by one, each read packed after the bytes
 * of the one before, in the rest of the arena: a heartbeat round's
 * thousands of pongs are all read in the turn they arrive. */
#define FASTRX_BATCH 64
#define FASTRX_ARENA (FASTRX_BATCH * (size_t)FASTRX_ROOM + (size_t)2 * 1024 * 1024)
/* Reads per loop turn at most; sockets left over (or past the arena)
 * stay readable, and are read at the next turn (which then does not
 * wait).  Pages of the arena are touched only by the bytes that arrive. */
#define FASTRX_SLOTS 8192
/* The most plaintext one TLS record carries (RFC 8446 5.1, RFC 5246
 * 6.2.1).  Each SSL_read asks for at least this much, so it consumes a
 * whole record and OpenSSL keeps nothing decrypted behind it (read-ahead
 * is off, as lws leaves it): what is left is in the socket, and poll()
 * reports it. */
#define FASTRX_TLS_RECORD 16384

typedef struct fastrx_ctx {
    mg_gw *gw;
    mg_conn *c;
} fastrx_ctx;

static int fastrx_message(void *arg, const unsigned char *data, size_t len, int binary)
{
    fastrx_ctx *x = arg;
    return rx_message(x->gw, x->c, data, len, binary);
}

static int fastrx_control(void *arg, int opcode, const unsigned char *data, size_t len)
{
    fastrx_ctx *x = arg;
    return rx_control(x->gw, x->c, opcode, data, len);
}

static int fastrx_zpiece(void *arg, const unsigned char *data, size_t len, int final, int binary)
{
    fastrx_ctx *x = arg;
    return rx_zpiece(x->gw, x->c, data, len, final, binary);
}

static const wsrx_sink fastrx_sink = {fastrx_message, fastrx_control, fastrx_zpiece};

/* ---- reading, inside the loop's poll() ----
 *
 * Nothing of lws runs here, and no hook: only reads.  Every connection
 * of ours that poll() found readable is read (in one io_uring batch, or
 * a recv() each) into a slot, and POLLIN is taken out of what poll()
 * returns for it, so lws never reads it.  A read that brought bytes also
 * hides a hang-up for this turn: the bytes are handled first, and the
 * hang-up is seen at the next poll().  A read that found nothing is
 * dropped.  EOF or an error is left to lws: it reads the socket again,
 * finds the same, and closes the connection its usual way. */

/* uring_done_fn of a batch of reads. */
static void fastrx_read_done(void *arg, void *ctx, int res, size_t len)
{
    (void)len;
    ((mg_gw *)arg)->metrics->uring_reads++;
    ((struct fastrx_slot *)ctx)->res = res;
}

/* Read what a TLS connection has into buf: the bytes (> 0), -EAGAIN when
 * the record is not all there yet, 0 when the peer ended the session, or
 * -EIO when it failed.  The end and the errors stay with the session, so
 * lws, reading it next, finds the same and closes the connection. */
static int fastrx_tls_read(mg_conn *c, unsigned char *buf, size_t cap)
{
#if defined(LWS_WITH_TLS) && !defined(LWS_WITH_MBEDTLS)
    SSL *ssl = lws_get_ssl(c->wsi);
    size_t total = 0;
    while (cap - total >= FASTRX_TLS_RECORD) {
        ERR_clear_error();
        int k = SSL_read(ssl, buf + total, (int)(cap - total));
        if (k > 0) {
            total += (size_t)k;
            continue;
        }
        int e = SSL_get_error(ssl, k);
        if (total)
            break; /* the bytes first; an end or error is found again next time */
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return -EAGAIN;
        return e == SSL_ERROR_ZERO_RETURN ? 0 : -EIO;
    }
    return (int)total;
#else
    (void)c, (void)buf, (void)cap;
    return -EIO; /* not reached: only OpenSSL sessions are read here */
#endif
}

/* A read of c's socket into a new slot: queued in the io_uring batch
 * (batch: how many it holds, or -1 without one), or made now.  0, or -1
 * if there is no room left this turn. */
static int fastrx_read(mg_gw *gw, mg_conn *c, struct pollfd *p, int *batch)
{
    int i = gw->fastrx_nslots;
    if (i == FASTRX_SLOTS || gw->fastrx_used + FASTRX_ROOM > FASTRX_ARENA)
        return -1;
    struct fastrx_slot *sl = &gw->fastrx_slots[i];
    sl->at = gw->fastrx_used + WSRX_CARRY_MAX;
    sl->p = p;
    unsigned char *buf = gw->fastrx_arena + sl->at;
    if (c->tls) {
        int n = fastrx_tls_read(c, buf, FASTRX_READ);
        sl->res = n;
        gw->fastrx_used += WSRX_CARRY_MAX + (n > 0 ? (size_t)n : 0);
    } else if (*batch >= 0 && *batch < FASTRX_BATCH &&
               uring_add_recv(gw->uring, c->fd, buf, FASTRX_READ, sl) == 0) {
        (*batch)++;
        sl->res = -EAGAIN;
        gw->fastrx_used += FASTRX_ROOM;
    } else {
        /* The system call itself: libc's recv() is a cancellation point,
         * and with the watchdog thread running it switches cancellation
         * on and off around every call. */
        ssize_t n = syscall(SYS_recvfrom, c->fd, buf, (size_t)FASTRX_READ, 0, NULL, NULL);
        sl->res = n < 0 ? -errno : (int)n;
        gw->fastrx_used += WSRX_CARRY_MAX + (n > 0 ? (size_t)n : 0);
    }
    sl->c = c;
    c->pre = i + 1;
    gw->fastrx_nslots++;
    return 0;
}

/* What poll() returns for the socket of slot i, once its read is done. */
static void fastrx_settle_events(mg_gw *gw, int i)
{
    struct fastrx_slot *sl = &gw->fastrx_slots[i];
    struct pollfd *p = sl->p;
    if (sl->res > 0) { /* bytes: handled after the turn, the rest next turn */
        p->revents &= (short)~(POLLIN | POLLHUP | POLLERR);
        return;
    }
    sl->c->pre = 0;
    sl->c = NULL;
    if (sl->res == -EAGAIN || sl->res == -EWOULDBLOCK || sl->res == -EINTR)
        p->revents &= (short)~POLLIN; /* nothing there after all */
    /* else EOF or an error: POLLIN stays, for lws */
}

int fastrx_on_ready(mg_gw *gw, struct pollfd *fds, const int *ready, int k)
{
    if (!gw->fastrx_on || k <= 0)
        return k;
    int batch = gw->uring && !uring_queued(gw->uring) ? 0 : -1;
    int first = gw->fastrx_nslots;
    /* Start at another place each turn: when there are more readable
     * sockets than room, none waits for long. */
    int start = (int)(gw->fastrx_turns++ % (unsigned)k);
    for (int j = 0; j < k; j++) {
        struct pollfd *p = &fds[ready[(start + j) % k]];
        mg_conn *c;
        if (!(p->revents & POLLIN) || !(c = conn_by_fd(gw, p->fd)) || !c->fast)
            continue;
        /* Not now: bytes of it wait in a slot, reading is paused while a
         * write is pending, or no room is left this turn. */
        if (c->pre || c->wr.paused || fastrx_read(gw, c, p, &batch) != 0)
            p->revents &= (short)~POLLIN;
    }
    if (batch > 0 && uring_run(gw->uring, fastrx_read_done, gw) < 0)
        writer_uring_failed(gw); /* the reads it did not make read as -EAGAIN: next turn */
    for (int i = first; i < gw->fastrx_nslots; i++)
        fastrx_settle_events(gw, i);
    int left = 0;
    for (int j = 0; j < k; j++)
        left += fds[ready[j]].revents != 0;
    return left;
}

/* ---- handling, after the turn ---- */

/* Process the n bytes read for c into its slot, after the bytes the read
 * before left unfinished (copied in front of them). */
static void fastrx_process(mg_gw *gw, mg_conn *c, unsigned char *data, size_t n)
{
    if (c->rx_dead) /* failed or closed: what it sends is read, and dropped */
        return;
    c->last_rx_ms = gw_now(gw);
    unsigned char carry[WSRX_CARRY_MAX];
    size_t kept = wsrx_unread(c->wsrx, carry);
    memcpy(data - kept, carry, kept);

    fastrx_ctx x = {gw, c};
    int code = 0;
    const char *reason = NULL;
    unsigned flags = c->pmd ? WSRX_DEFLATE : 0;
    if (wsrx_feed(&c->wsrx, data - kept, kept + n, gw->cfg->max_message_size, flags, &fastrx_sink,
                  &x, &code, &reason) == WSRX_ERROR)
        rx_error(gw, c, code, reason);
    /* With io_uring the replies wait for the end of the loop turn, to
     * leave with every other socket's in one system call; without, they
     * leave now: a send() each either way, and sooner.  Either way a
     * write is tried, even with frames already waiting: a socket that has
     * some room, but less than POLLOUT waits for, takes what it can. */
    if (gw->uring)
        writer_wake(gw, c);
    else
        writer_flush(gw, c);
}

void fastrx_settle(mg_gw *gw)
{
    if (!gw->fastrx_nslots)
        return;
    gw->dispatching++;
    for (int i = 0; i < gw->fastrx_nslots; i++) {
        struct fastrx_slot *sl = &gw->fastrx_slots[i];
        mg_conn *c = sl->c;
        if (!c)
            continue; /* nothing came, or it closed meanwhile */
        c->pre = 0;
        sl->c = NULL;
        fastrx_process(gw, c, gw->fastrx_arena + sl->at, (size_t)sl->res);
    }
    gw->fastrx_nslots = 0;
    gw->fastrx_used = 0;
    gw->dispatching--;
}

/* ---- start, attach, detach ---- */

int fastrx_start(mg_gw *gw)
{
    gw->fastrx_arena = malloc(FASTRX_ARENA);
    gw->fastrx_slots = calloc(FASTRX_SLOTS, sizeof(*gw->fastrx_slots));
    if (!gw->fastrx_arena || !gw->fastrx_slots) {
        fastrx_stop(gw);
        return -1;
    }
    gw->fastrx_on = 1;
    return 0;
}

void fastrx_stop(mg_gw *gw)
{
    free(gw->fastrx_arena);
    free(gw->fastrx_slots);
    gw->fastrx_arena = NULL;
    gw->fastrx_slots = NULL;
    gw->fastrx_nslots = 0;
    gw->fastrx_used = 0;
    gw->fastrx_on = 0;
}

/* A TLS connection is read through lws's session (SSL_read) when lws
 * holds no decrypted bytes of it: poll() would not tell of those. */
static int fastrx_tls_ok(mg_conn *c)
{
#if defined(LWS_WITH_TLS) && !defined(LWS_WITH_MBEDTLS)
    SSL *ssl = lws_get_ssl(c->wsi);
    return ssl && SSL_pending(ssl) == 0;
#else
    (void)c;
    return 0;
#endif
}

int fastrx_attach(mg_gw *gw, mg_conn *c)
{
    /* lws holds no part of its 101 to write: from here on moongate alone
     * reads the socket, and writes it (plain TCP) or writes through
     * lws_write (TLS, whose session lws keeps). */
    if (!gw->fastrx_on || lws_partial_buffered(c->wsi) || conn_by_fd(gw, c->fd) != c)
        return 0;
    int tls = lws_is_ssl(c->wsi);
    if (tls && !fastrx_tls_ok(c))
        return 0;
    c->tls = tls != 0;
    c->fast = 1;
    return 1;
}

void fastrx_detach(mg_gw *gw, mg_conn *c)
{
    if (c->pre) { /* what was read for it goes with it */
        gw->fastrx_slots[c->pre - 1].c = NULL;
        c->pre = 0;
    }
    c->fast = 0;
    c->tls = 0;
}
