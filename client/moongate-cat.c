/*
 * moongate-cat.c - command-line WebSocket client for moongate (and any ws://
 * or wss:// server): stdin lines out as messages, messages in to stdout,
 * heartbeats, reconnect with backoff. This file owns the command line, the
 * URL, the lws context, signals (a signalfd in the event loop), the main loop
 * and the exit code; link.c owns the connection, lines.c stdin and stdout.
 */
#include "cat.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

static const char cat_usage_text[] =
    "usage: moongate-cat [options] URL\n"
    "\n"
    "Connects to URL (ws://host[:port]/path?query or wss://...), sends each\n"
    "line of stdin (without its newline) as one message and prints each\n"
    "message received on its own line on stdout. Status lines ('# ...') go to\n"
    "stderr. When the connection fails or ends it reconnects with exponential\n"
    "backoff and jitter; lines read meanwhile are queued (up to 10000, then the\n"
    "oldest are dropped) and sent after the next connect, in order.\n"
    "\n"
    "Delivery is at most once: a line is sent on one connection only and never\n"
    "resent. A line handed to the connection just before it dropped may be lost.\n"
    "\n"
    "At the end of stdin the queued lines are sent, the connection is closed\n"
    "with 1000 and moongate-cat exits. SIGINT/SIGTERM drop the queue and close.\n"
    "\n"
    "options:\n"
    "  --ca FILE          verify the server's certificate against this CA (or\n"
    "                     self-signed certificate) instead of the system's CAs\n"
    "  --insecure         do not verify the server's certificate or name\n"
    "  --ping SECS        send a ping every SECS seconds (default 20, 0 = off);\n"
    "                     nothing received for 2 x SECS drops the connection\n"
    "  --backoff-min MS   first reconnect delay (default 250)\n"
    "  --backoff-max MS   largest reconnect delay (default 10000)\n"
    "  --once             do not reconnect: exit when the connection ends\n"
    "  --linger MS        at the end of stdin, once every line is sent, print\n"
    "                     what arrives for MS more ms before closing (default\n"
    "                     500; 0 = close at once)\n"
    "  --binary           send lines as binary messages (default: text)\n"
    "  --hex              print received binary messages as hex\n"
    "  -H 'Name: value'   extra request header (repeatable)\n"
    "  -q                 no status lines\n"
    "  -v                 libwebsockets warnings and notices on stderr\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 after the end of stdin and a clean close (with --once: a\n"
    "close with 1000), 1 usage error, 2 the connection failed or ended\n"
    "abnormally with --once, or our close was not answered.\n";

enum {
    OPT_CA = 256,
    OPT_INSECURE,
    OPT_PING,
    OPT_BMIN,
    OPT_BMAX,
    OPT_ONCE,
    OPT_BINARY,
    OPT_HEX,
    OPT_LINGER
};

/* ---- output helpers shared by the other files ---- */

void cat_status(struct cat *c, const char *fmt, ...)
{
    va_list ap;

    if (c->opt.quiet)
        return;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cat_warn(struct cat *c, const char *fmt, ...)
{
    va_list ap;

    (void)c;
    fputs("# warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Errors and final outcomes: printed even with -q. */
void cat_error(struct cat *c, const char *fmt, ...)
{
    va_list ap;

    (void)c;
    fputs("moongate-cat: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cat_finish(struct cat *c, int code)
{
    if (c->state == CAT_DONE)
        return;
    c->state = CAT_DONE;
    c->exit_code = code;
    lws_sul_cancel(&c->connect_sul);
    lws_sul_cancel(&c->ping_sul);
    lws_sul_cancel(&c->watchdog_sul);
    lws_sul_cancel(&c->end_sul);
    lws_cancel_service(c->ctx);
}

lws_usec_t cat_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (lws_usec_t)ts.tv_sec * LWS_USEC_PER_SEC + ts.tv_nsec / 1000;
}

/* ---- growable buffers ---- */

int cat_buf_append(struct cat_buf *b, const void *p, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len)
            cap *= 2;
        unsigned char *n = realloc(b->p, cap);
        if (!n)
            return -1;
        b->p = n;
        b->cap = cap;
    }
    if (len)
        memcpy(b->p + b->len, p, len);
    b->len += len;
    return 0;
}

void cat_buf_free(struct cat_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---- command line ---- */

static int cat_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints a usage error; returns -1. */
static int cat_usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("moongate-cat: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(moongate-cat --help for usage)\n", stderr);
    return -1;
}

static int cat_parse_ms(const char *s, unsigned min, unsigned *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v < min || v > 3600000)
        return cat_usage_error("bad milliseconds '%s'", s);
    *out = (unsigned)v;
    return 0;
}

static int cat_parse_secs(const char *s, lws_usec_t *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0 && v <= 86400))
        return cat_usage_error("bad seconds '%s' (0..86400)", s);
    *out = (lws_usec_t)(v * LWS_USEC_PER_SEC);
    if (v > 0 && *out < 1000)
        *out = 1000;
    return 0;
}

/* "Name: value": a token, a colon, no CR or LF anywhere. */
static int cat_check_header(const char *h)
{
    size_t name = strcspn(h, ":");

    if (!name || !h[name] || strpbrk(h, "\r\n") || strcspn(h, " \t") < name)
        return cat_usage_error("bad header '%s' (expected 'Name: value')", h);
    return 0;
}

static int cat_option(struct cat_opts *o, int opt, const char *arg)
{
    switch (opt) {
    case OPT_CA:
        o->ca = arg;
        return 0;
    case OPT_INSECURE:
        o->insecure = 1;
        return 0;
    case OPT_PING:
        return cat_parse_secs(arg, &o->ping_us);
    case OPT_BMIN:
        return cat_parse_ms(arg, 1, &o->backoff_min);
    case OPT_BMAX:
        return cat_parse_ms(arg, 1, &o->backoff_max);
    case OPT_ONCE:
        o->once = 1;
        return 0;
    case OPT_BINARY:
        o->binary = 1;
        return 0;
    case OPT_LINGER: {
        unsigned ms;
        if (cat_parse_ms(arg, 0, &ms))
            return -1;
        o->linger_us = (lws_usec_t)ms * LWS_US_PER_MS;
        return 0;
    }
    case OPT_HEX:
        o->hex = 1;
        return 0;
    case 'H':
        if (o->nheaders == CAT_MAX_HEADERS)
            return cat_usage_error("too many -H headers (at most %d)", CAT_MAX_HEADERS);
        o->headers[o->nheaders++] = arg;
        return cat_check_header(arg);
    case 'q':
        o->quiet = 1;
        return 0;
    case 'v':
        o->verbose = 1;
        return 0;
    default:
        return cat_usage_error("unknown option");
    }
}

/* Returns 0, 1 for --help (already printed), -1 for a usage error. */
static int cat_parse_args(struct cat_opts *o, int argc, char **argv)
{
    static const struct option longs[] = {{"ca", required_argument, NULL, OPT_CA},
                                          {"insecure", no_argument, NULL, OPT_INSECURE},
                                          {"ping", required_argument, NULL, OPT_PING},
                                          {"backoff-min", required_argument, NULL, OPT_BMIN},
                                          {"backoff-max", required_argument, NULL, OPT_BMAX},
                                          {"once", no_argument, NULL, OPT_ONCE},
                                          {"binary", no_argument, NULL, OPT_BINARY},
                                          {"hex", no_argument, NULL, OPT_HEX},
                                          {"linger", required_argument, NULL, OPT_LINGER},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    int opt;

    o->ping_us = 20 * LWS_USEC_PER_SEC;
    o->linger_us = 500 * LWS_US_PER_MS;
    o->backoff_min = 250;
    o->backoff_max = 10000;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":H:qvh", longs, NULL)) != -1) {
        if (opt == 'h') {
            fputs(cat_usage_text, stdout);
            return 1;
        }
        if (opt == ':')
            return cat_usage_error("option '%s' needs a value", argv[optind - 1]);
        if (opt == '?')
            return cat_usage_error("unknown option '%s'", argv[optind - 1]);
        if (cat_option(o, opt, optarg))
            return -1;
    }
    if (optind != argc - 1)
        return cat_usage_error(optind == argc ? "a URL is needed" : "one URL only");
    o->url = argv[optind];
    if (o->backoff_min > o->backoff_max)
        return cat_usage_error("--backoff-min is larger than --backoff-max");
    if (o->ca && o->insecure)
        return cat_usage_error("--ca and --insecure exclude each other");
    return 0;
}

/* ws://host[:port][/path][?query][#fragment] or wss://...; host may be [IPv6]. */
static int cat_parse_url(const char *s, struct cat_url *u)
{
    const char *auth, *p, *host, *hend, *rest;
    char *end;

    if (!strncasecmp(s, "ws://", 5)) {
        p = s + 5;
    } else if (!strncasecmp(s, "wss://", 6)) {
        p = s + 6;
        u->tls = 1;
    } else {
        return cat_usage_error("'%s' is not a ws:// or wss:// URL", s);
    }
    auth = p;
    rest = p + strcspn(p, "/?#");
    if (*p == '[') {
        host = p + 1;
        hend = memchr(host, ']', (size_t)(rest - host));
        if (!hend)
            return cat_usage_error("bad IPv6 address in '%s'", s);
        p = hend + 1;
    } else {
        host = p;
        hend = p + strcspn(p, ":/?#");
        p = hend;
    }
    u->port = u->tls ? 443 : 80;
    if (*p == ':') {
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || end != rest || port < 1 || port > 65535)
            return cat_usage_error("bad port in '%s'", s);
        u->port = (int)port;
    } else if (p != rest) {
        return cat_usage_error("bad host in '%s'", s);
    }
    if (hend == host || memchr(auth, '@', (size_t)(rest - auth)) ||
        (size_t)(hend - host) >= sizeof(u->address))
        return cat_usage_error("bad host in '%s'", s);
    memcpy(u->address, host, (size_t)(hend - host));
    u->address[hend - host] = '\0';
    snprintf(u->host, sizeof(u->host), "%.*s", (int)(rest - auth), auth);
    size_t plen = strcspn(rest, "#"); /* a fragment is not sent */
    if (plen + 2 > sizeof(u->path))
        return cat_usage_error("URL too long");
    snprintf(u->path, sizeof(u->path), "%s%.*s", *rest == '/' ? "" : "/", (int)plen, rest);
    return 0;
}

/* ---- signals ---- */

static int cat_signal_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                               void *in, size_t len)
{
    struct cat *c = lws_context_user(lws_get_context(wsi));
    struct signalfd_siginfo si;

    (void)user;
    (void)in;
    (void)len;
    if (reason != LWS_CALLBACK_RAW_RX_FILE)
        return 0;
    while (read(lws_get_socket_fd(wsi), &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (c->interrupted) { /* a second one: leave now */
            cat_finish(c, 2);
            return 0;
        }
        cat_status(c, "# interrupted");
        link_stop(c, 0);
    }
    return 0;
}

static const struct lws_protocols cat_signal_protocol = {
    "moongate-cat-signals", cat_signal_callback, 0, 0, 0, NULL, 0};

static int cat_adopt_signals(struct cat *c)
{
    lws_sock_file_fd_type u;
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    if (sigprocmask(SIG_BLOCK, &set, NULL))
        return -1;
    u.filefd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (u.filefd < 0)
        return -1;
    if (!lws_adopt_descriptor_vhost(c->vh, LWS_ADOPT_RAW_FILE_DESC, u, cat_signal_protocol.name,
                                    NULL)) {
        close(u.filefd);
        return -1;
    }
    return 0;
}

/* ---- lws context ---- */

static int cat_start_lws(struct cat *c, struct lws_protocols *protocols)
{
    struct lws_context_creation_info info;

    lws_set_log_level(c->opt.verbose ? LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_USER : LLL_ERR, NULL);
    protocols[0] = link_protocol; /* first: it gets early client errors */
    protocols[1] = lines_protocol;
    protocols[2] = cat_signal_protocol;
    memset(&protocols[3], 0, sizeof(protocols[3]));

    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.gid = -1;
    info.uid = -1;
    info.user = c;
    c->ctx = lws_create_context(&info);
    if (!c->ctx)
        return -1;
    info.vhost_name = "moongate-cat";
    info.protocols = protocols;
    info.client_ssl_ca_filepath = c->opt.ca;
    c->vh = lws_create_vhost(c->ctx, &info);
    if (!c->vh)
        return -1;
    if (lws_get_random(c->ctx, &c->rng, sizeof(c->rng)) != sizeof(c->rng))
        c->rng = (uint64_t)cat_now() ^ ((uint64_t)getpid() << 32);
    c->rng |= 1;
    return 0;
}

static void cat_cleanup(struct cat *c)
{
    if (c->ctx)
        lws_context_destroy(c->ctx);
    lines_discard(c);
    cat_buf_free(&c->partial);
    cat_buf_free(&c->rx);
}

int main(int argc, char **argv)
{
    struct lws_protocols protocols[4];
    struct cat c;
    int r;

    memset(&c, 0, sizeof(c));
    r = cat_parse_args(&c.opt, argc, argv);
    if (r)
        return r > 0 ? 0 : 1;
    if (cat_parse_url(c.opt.url, &c.url))
        return 1;
    if (c.opt.ca && access(c.opt.ca, R_OK)) {
        fprintf(stderr, "moongate-cat: cannot read %s: %s\n", c.opt.ca, strerror(errno));
        return 1;
    }
    for (int n = 0; n < c.opt.nheaders; n++)
        if (!strncasecmp(c.opt.headers[n], "host:", 5))
            snprintf(c.url.host, sizeof(c.url.host), "%s",
                     c.opt.headers[n] + 5 + strspn(c.opt.headers[n] + 5, " \t"));
    if (cat_start_lws(&c, protocols) || cat_adopt_signals(&c) || lines_adopt_stdin(&c)) {
        fprintf(stderr, "moongate-cat: cannot set up the event loop: %s\n", strerror(errno));
        cat_cleanup(&c);
        return 1;
    }
    link_start(&c);
    while (c.state != CAT_DONE)
        if (lws_service(c.ctx, 0) < 0)
            break;
    r = c.state == CAT_DONE ? c.exit_code : 2;
    c.state = CAT_DONE; /* callbacks during destroy change nothing */
    cat_cleanup(&c);
    return r;
}
