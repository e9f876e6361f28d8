/*
 * lines.c - moongate-cat's stdin and stdout.
 *
 * stdin (a dup of fd 0) is adopted into the lws event loop as a raw file, so
 * it is read only when poll() says so: no blocking read, no thread. Each line
 * (without its newline) becomes one entry of the line queue; link.c takes
 * entries off the front, writes each once and frees it, so a line is never
 * sent twice. The queue holds CAT_QUEUE_MAX lines. While connected or
 * connecting, a full queue pauses stdin (the sender catches up, or the attempt
 * ends soon); while disconnected and waiting to reconnect, stdin is read on
 * and the oldest line is dropped, with a warning.
 *
 * Received messages go to stdout, one per line (binary as is, or hex).
 */
#include "cat.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the line queue ---- */

static void lines_drop_oldest(struct cat *c)
{
    struct cat_line *l = c->q.head;

    c->q.head = l->next;
    if (!c->q.head)
        c->q.tail = NULL;
    c->q.count--;
    free(l);
    if (!c->q.dropped++)
        cat_warn(c, "queue full (%d lines): dropping the oldest lines", CAT_QUEUE_MAX);
}

static int lines_push(struct cat *c, const unsigned char *p, size_t len)
{
    struct cat_line *l = malloc(sizeof(*l) + LWS_PRE + len);

    if (!l)
        return -1;
    l->next = NULL;
    l->len = len;
    memcpy(l->buf + LWS_PRE, p, len);
    /* connected or connecting, the reader pauses instead (lines_after_read) */
    while (c->q.count >= CAT_QUEUE_MAX && c->state == CAT_WAITING)
        lines_drop_oldest(c);
    if (c->q.tail)
        c->q.tail->next = l;
    else
        c->q.head = l;
    c->q.tail = l;
    c->q.count++;
    return 0;
}

struct cat_line *lines_pop(struct cat *c)
{
    struct cat_line *l = c->q.head;

    if (!l)
        return NULL;
    c->q.head = l->next;
    if (!c->q.head)
        c->q.tail = NULL;
    c->q.count--;
    return l;
}

/* Frees every queued line; returns how many there were. */
size_t lines_discard(struct cat *c)
{
    size_t n = 0;
    struct cat_line *l;

    while ((l = lines_pop(c))) {
        free(l);
        n++;
    }
    return n;
}

/* Called by link.c when the queue has room again or the link went down. */
void lines_resume(struct cat *c)
{
    if (!c->stdin_paused || !c->stdin_wsi)
        return;
    if (c->state != CAT_WAITING && c->q.count > CAT_QUEUE_MAX / 2)
        return;
    c->stdin_paused = 0;
    lws_rx_flow_control(c->stdin_wsi, 1);
}

/* ---- reading stdin ---- */

/* Splits what was read into lines; the rest waits in c->partial. */
static int lines_split(struct cat *c, const unsigned char *p, size_t len)
{
    while (len) {
        const unsigned char *nl = memchr(p, '\n', len);
        size_t take = nl ? (size_t)(nl - p) : len;

        if (c->partial.len + take > CAT_LINE_MAX) {
            /* a huge line: send what we have as one message */
            take = CAT_LINE_MAX - c->partial.len;
            nl = NULL;
        }
        if (cat_buf_append(&c->partial, p, take))
            return -1;
        p += take;
        len -= take;
        if (nl || c->partial.len == CAT_LINE_MAX) {
            if (lines_push(c, c->partial.p, c->partial.len))
                return -1;
            c->partial.len = 0;
            if (nl) {
                p++;
                len--;
            }
        }
    }
    return 0;
}

static void lines_after_read(struct cat *c)
{
    if (c->state != CAT_WAITING && c->q.count >= CAT_QUEUE_MAX && !c->stdin_paused) {
        c->stdin_paused = 1;
        lws_rx_flow_control(c->stdin_wsi, 0);
    }
    link_kick(c);
}

static void lines_eof(struct cat *c)
{
    if (c->partial.len) /* a last line without newline */
        lines_push(c, c->partial.p, c->partial.len);
    cat_buf_free(&c->partial);
    c->stdin_eof = 1;
    cat_status(c, "# stdin closed (%zu lines to send)", c->q.count);
    link_kick(c);
}

/* One read per readable event; returns -1 to close the stdin wsi. */
static int lines_read(struct cat *c, int fd)
{
    unsigned char buf[65536];
    ssize_t n = read(fd, buf, sizeof(buf));

    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n < 0)
        cat_warn(c, "reading stdin: %s", strerror(errno));
    if (n <= 0) {
        lines_eof(c);
        return -1;
    }
    if (lines_split(c, buf, (size_t)n)) {
        cat_warn(c, "out of memory");
        cat_finish(c, 2);
        return -1;
    }
    lines_after_read(c);
    return 0;
}

/*
 * lws closes a raw file on POLLHUP without a last RX callback (a pipe whose
 * writer is gone, perhaps while we paused reading): read what is left, as far
 * as poll() says it is there, then treat it as the end of input.
 */
static void lines_drain(struct cat *c, int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};

    for (int i = 0; i < 4096 && c->state != CAT_DONE; i++) {
        if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLIN))
            break;
        if (lines_read(c, fd))
            return; /* EOF seen (lines_eof done) or error */
    }
    if (c->state != CAT_DONE)
        lines_eof(c);
}

static int lines_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                          size_t len)
{
    struct cat *c = lws_context_user(lws_get_context(wsi));

    (void)user;
    (void)in;
    (void)len;
    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE:
        if (c->state == CAT_DONE || c->stdin_eof)
            return -1;
        return lines_read(c, lws_get_socket_fd(wsi));
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        if (c->stdin_wsi == wsi)
            c->stdin_wsi = NULL;
        if (c->state != CAT_DONE && !c->stdin_eof)
            lines_drain(c, lws_get_socket_fd(wsi));
        return 0;
    default:
        return 0;
    }
}

const struct lws_protocols lines_protocol = {
    "moongate-cat-stdin", lines_callback, 0, 0, 0, NULL, 0};

/* Adopts a dup of fd 0 (lws closes what it adopted; fd 0 stays ours). */
int lines_adopt_stdin(struct cat *c)
{
    lws_sock_file_fd_type u;
    int fd = dup(0);

    if (fd < 0)
        return -1;
    u.filefd = (lws_filefd_type)fd;
    c->stdin_wsi =
        lws_adopt_descriptor_vhost(c->vh, LWS_ADOPT_RAW_FILE_DESC, u, lines_protocol.name, NULL);
    if (!c->stdin_wsi) {
        close(fd);
        return -1;
    }
    return 0;
}

/* ---- stdout ---- */

static int lines_print_hex(const unsigned char *p, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    char out[512];
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        out[o++] = digits[p[i] >> 4];
        out[o++] = digits[p[i] & 15];
        if (o == sizeof(out)) {
            if (fwrite(out, 1, o, stdout) != o)
                return -1;
            o = 0;
        }
    }
    return fwrite(out, 1, o, stdout) == o ? 0 : -1;
}

/* One received message, then a newline. */
int lines_print(struct cat *c, const unsigned char *p, size_t len, int binary)
{
    int r;

    if (binary && c->opt.hex)
        r = lines_print_hex(p, len);
    else
        r = fwrite(p, 1, len, stdout) == len ? 0 : -1;
    if (!r && fputc('\n', stdout) == EOF)
        r = -1;
    if (fflush(stdout))
        r = -1;
    return r;
}
