/*
 * cat.h - the one context struct of moongate-cat and the functions its three
 * files share.
 *
 *   moongate-cat.c  command line, URL, lws context, signals, main loop, exit
 *   link.c          the WebSocket link: connect, send, receive, heartbeat,
 *                   close, reconnect with backoff
 *   lines.c         stdin -> line queue (bounded), messages -> stdout
 *
 * Everything lives in one `struct cat` owned by main(); lws hands it back to
 * every callback through lws_context_user().
 */
#ifndef MOONGATE_CAT_H
#define MOONGATE_CAT_H

#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>

#define CAT_MAX_HEADERS 32
#define CAT_QUEUE_MAX 10000                      /* lines kept while disconnected */
#define CAT_LINE_MAX (16u * 1024 * 1024)         /* longer lines go out in pieces */
#define CAT_STABLE_US (5 * LWS_USEC_PER_SEC)     /* up this long: backoff resets */
#define CAT_CLOSE_WAIT_US (3 * LWS_USEC_PER_SEC) /* bound on our close */

/* What the command line asked for. */
struct cat_opts {
    const char *url;                      /* as given */
    const char *ca;                       /* --ca FILE, or NULL */
    int insecure;                         /* --insecure: no certificate checks at all */
    int once;                             /* --once: no reconnect */
    int binary;                           /* --binary: send lines as binary messages */
    int hex;                              /* --hex: print received binary messages as hex */
    int quiet;                            /* -q: no status lines */
    int verbose;                          /* -v: lws warnings and notices too */
    lws_usec_t ping_us;                   /* --ping; 0 = no pings, no watchdog */
    lws_usec_t linger_us;                 /* --linger: wait for replies after the last line */
    unsigned backoff_min;                 /* ms */
    unsigned backoff_max;                 /* ms */
    const char *headers[CAT_MAX_HEADERS]; /* -H, "Name: value" */
    int nheaders;
};

/* The URL split for lws_client_connect_via_info. */
struct cat_url {
    int tls;           /* wss:// */
    char address[256]; /* host to connect to (IPv6 without brackets) */
    char host[300];    /* Host header: host[:port] as in the URL */
    int port;
    char path[4096]; /* "/path?query", at least "/" */
};

/* One line from stdin; buf has LWS_PRE bytes of headroom before the data. */
struct cat_line {
    struct cat_line *next;
    size_t len;
    unsigned char buf[];
};

struct cat_queue {
    struct cat_line *head, *tail;
    size_t count;
    unsigned long dropped; /* dropped (queue full) since the last report */
};

/* A growable byte buffer (partial stdin line, incoming message). */
struct cat_buf {
    unsigned char *p;
    size_t len, cap;
};

enum cat_state {
    CAT_WAITING,    /* no connection; a (re)connect is scheduled */
    CAT_CONNECTING, /* TCP/TLS/upgrade in progress */
    CAT_OPEN,       /* established: lines are sent */
    CAT_CLOSING,    /* we sent (or are sending) our close frame */
    CAT_DONE        /* leaving the main loop */
};

struct cat {
    struct cat_opts opt;
    struct cat_url url;
    struct lws_context *ctx;
    struct lws_vhost *vh;
    int exit_code;

    /* the link (link.c) */
    enum cat_state state;
    struct lws *wsi;      /* the ws connection, or NULL */
    unsigned attempt;     /* consecutive failed connections */
    uint64_t rng;         /* xorshift state for jitter */
    lws_usec_t opened_at; /* when the current connection opened */
    lws_usec_t last_rx;   /* last message or pong on it */
    int got_message;      /* it delivered at least one message */
    int want_ping;        /* send a ping at the next writable */
    int want_close;       /* close with 1000 at the next writable */
    int lingering;        /* input over, all sent: waiting for replies */
    int clean_code;       /* exit code once our close completes */
    int silent;           /* the watchdog dropped it */
    int peer_code;        /* close code from the server, 0 = none */
    char peer_reason[124];
    char tls_error[128]; /* why the certificate was refused, if it was */
    lws_sorted_usec_list_t connect_sul, ping_sul, watchdog_sul;
    lws_sorted_usec_list_t end_sul; /* --linger, then the bound on our close */

    /* stdin and stdout (lines.c) */
    struct lws *stdin_wsi; /* adopted dup of fd 0, NULL after EOF */
    int stdin_eof;
    int stdin_paused; /* queue full while connected or connecting */
    struct cat_queue q;
    struct cat_buf partial; /* stdin bytes after the last newline */
    struct cat_buf rx;      /* incoming message being reassembled */
    int interrupted;        /* SIGINT/SIGTERM seen */
};

/* moongate-cat.c */
void cat_status(struct cat *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cat_warn(struct cat *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cat_error(struct cat *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cat_finish(struct cat *c, int code);
lws_usec_t cat_now(void);
int cat_buf_append(struct cat_buf *b, const void *p, size_t len);
void cat_buf_free(struct cat_buf *b);

/* link.c */
extern const struct lws_protocols link_protocol;
void link_start(struct cat *c);
void link_kick(struct cat *c);                 /* lines queued or EOF: write if open */
void link_stop(struct cat *c, int clean_code); /* signal: close and exit */

/* lines.c */
extern const struct lws_protocols lines_protocol;
int lines_adopt_stdin(struct cat *c);
struct cat_line *lines_pop(struct cat *c);
size_t lines_discard(struct cat *c);
void lines_resume(struct cat *c);
int lines_print(struct cat *c, const unsigned char *p, size_t len, int binary);

#endif
