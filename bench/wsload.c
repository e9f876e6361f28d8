/* wsload.c — WebSocket load generator for moongate's benchmarks.
 *
 * Owns: the command line, one epoll loop on one thread, the client side of the
 * WebSocket handshake (with its own SHA-1 and base64 to check Sec-WebSocket-Accept),
 * masked client framing, parsing of server frames, echo verification and the
 * latency histogram.  Two modes:
 *   echo (default)  keep DEPTH messages of SIZE bytes in flight on each of CONNS
 *                   connections, verify every echo in order, report msg/s and
 *                   latency percentiles for the measured window;
 *   --idle          open CONNS connections, hold them (answering pings), report
 *                   the connect rate.
 * Every phase has a deadline, so a run always ends: connect ≤ 10 s, then warm-up,
 * then the measured window, then ≤ 5 s to close.  See bench/README.md. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    MAX_SRC = 64,  /* --src addresses */
    HIST_SUB = 16, /* linear sub-buckets per power of two */
    HIST_BUCKETS = 64 * HIST_SUB,
    CONNECT_WINDOW = 1024, /* connects + handshakes in progress at once */
    MAX_EVENTS = 256,      /* per epoll_wait */
    READS_PER_EVENT = 8,   /* read() calls per readiness, then back to epoll */
    HANDSHAKE_MAX = 8192,  /* largest HTTP response accepted */
    MAX_DEPTH = 65536,
};

#define NS_PER_S 1000000000ull
#define CONNECT_PHASE_NS (10 * NS_PER_S) /* a connect not open by then has failed */
#define GRACE_NS (5 * NS_PER_S)          /* closing handshake budget */
#define LAT_CAP_NS (10 * NS_PER_S)       /* histogram range ends at 10 s */
#define MAX_SIZE (16u << 20)             /* largest -s */
#define MAX_FRAME ((uint64_t)64 << 20)   /* largest server frame accepted */

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

enum phase { PH_CONNECT, PH_WARMUP, PH_MEASURE, PH_HOLD, PH_CLOSING, PH_DONE };
enum conn_state { CS_NEW, CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_CLOSING, CS_DONE };

/* A growable byte buffer: bytes [off, len) are pending (to parse or to write). */
struct buf {
    unsigned char *p;
    size_t off, len, cap;
};

struct conn {
    int fd; /* -1 when not open */
    enum conn_state state;
    int want_out;      /* EPOLLOUT is registered */
    uint32_t id;       /* index, also mixed into the payload filler */
    uint64_t t_start;  /* connect() time, ns */
    char accept[32];   /* expected Sec-WebSocket-Accept */
    struct buf in;     /* bytes read, not yet parsed */
    struct buf out;    /* frames built, not yet written */
    struct buf msg;    /* a fragmented message being reassembled */
    int in_fragment;   /* msg holds the first fragments of a data message */
    uint64_t sent_seq; /* next sequence number to send */
    uint64_t recv_seq; /* sequence number of the next echo expected */
    uint64_t *sent_ns; /* ring of DEPTH send times, indexed by seq % depth */
};

struct opts {
    struct sockaddr_in dst;
    char host[64]; /* Host header */
    char path[256];
    struct in_addr src[MAX_SRC];
    int nsrc;
    int conns, depth, idle, json;
    size_t size;
    double seconds, warmup;
};

/* Everything the run owns: options, the loop, connections, counters. */
struct ctx {
    struct opts o;
    int ep;
    struct conn *conns;
    enum phase phase;
    uint64_t rng;
    int started;   /* connections connect() was called for */
    int pending;   /* started, not yet open or failed */
    int live;      /* sockets open */
    int connected; /* handshakes completed */
    int failed;    /* connects or handshakes that failed */
    uint64_t t_begin, t_connected, t_measure, t_end, t_deadline;
    uint64_t msgs, mismatches, errors;
    uint64_t hist[HIST_BUCKETS];
    uint64_t lat_count, lat_max;
    struct rusage ru0, ru1;
    unsigned char *pattern; /* SIZE + 26 bytes of A..Z repeating: the payload filler */
};

/* ---------- time, randomness ---------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(struct ctx *x)
{
    /* xorshift64*: plenty for masks and keys of a load generator */
    x->rng ^= x->rng >> 12;
    x->rng ^= x->rng << 25;
    x->rng ^= x->rng >> 27;
    return x->rng * 0x2545F4914F6CDD1Dull;
}

/* ---------- SHA-1 and base64, for Sec-WebSocket-Accept ---------- */

static uint32_t rol(uint32_t v, int n)
{
    return (v << n) | (v >> (32 - n));
}

static void sha1_block(uint32_t h[5], const unsigned char *b)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 |
               (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (bb & c) | (~bb & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = bb ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (bb & c) | (bb & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = bb ^ c ^ d;
            k = 0xCA62C1D6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(bb, 30);
        bb = a;
        a = t;
    }
    h[0] += a;
    h[1] += bb;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

/* SHA-1 of a short message (len < 512 here). */
static void sha1(const void *data, size_t len, unsigned char out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    const unsigned char *p = data;
    size_t full = len / 64 * 64;
    for (size_t i = 0; i < full; i += 64)
        sha1_block(h, p + i);
    unsigned char tail[128] = {0};
    size_t rest = len - full;
    memcpy(tail, p + full, rest);
    tail[rest] = 0x80;
    size_t tlen = rest + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        tail[tlen - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t i = 0; i < tlen; i += 64)
        sha1_block(h, tail + i);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (unsigned char)(h[i] >> (24 - 8 * j));
}

/* base64 of len bytes into out (4 * ceil(len / 3) + 1 bytes). */
static void base64(const unsigned char *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = '\0';
}

/* ---------- buffers ---------- */

static void buf_reserve(struct buf *b, size_t extra)
{
    if (b->off > 0 && b->off == b->len)
        b->off = b->len = 0;
    if (b->len + extra <= b->cap)
        return;
    if (b->off > 0) { /* compact first */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap)
            return;
    }
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra)
        cap *= 2;
    unsigned char *p = realloc(b->p, cap);
    if (!p) {
        fprintf(stderr, "wsload: out of memory\n");
        exit(2);
    }
    b->p = p;
    b->cap = cap;
}

static void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---------- payloads and frames ---------- */

/* The payload of message seq on connection id: 16 hex digits of seq (lowest first,
 * so a short payload still carries the low digits), then letters A..Z repeating from a
 * start that depends on id and seq, copied from x->pattern.  ASCII, so valid as text. */
static size_t payload_head(unsigned char *p, size_t size, uint64_t seq)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;
    for (uint64_t v = seq; i < size && i < 16; i++, v >>= 4)
        p[i] = (unsigned char)hex[v & 15];
    return i;
}

static const unsigned char *payload_filler(const struct ctx *x, uint32_t id, uint64_t seq)
{
    return x->pattern + (id + seq) % 26;
}

static void payload_fill(const struct ctx *x, unsigned char *p, uint32_t id, uint64_t seq)
{
    size_t i = payload_head(p, x->o.size, seq);
    memcpy(p + i, payload_filler(x, id, seq), x->o.size - i);
}

/* 1 when p[0..len) is exactly what payload_fill() writes for (id, seq). */
static int payload_check(const struct ctx *x, const unsigned char *p, size_t len, uint32_t id,
                         uint64_t seq)
{
    unsigned char head[16];
    if (len != x->o.size)
        return 0;
    size_t i = payload_head(head, len, seq);
    return memcmp(p, head, i) == 0 && memcmp(p + i, payload_filler(x, id, seq), len - i) == 0;
}

static void mask_bytes(unsigned char *p, size_t len, uint32_t key)
{
    unsigned char k[4];
    memcpy(k, &key, 4);
    uint64_t k8 = (uint64_t)key << 32 | key;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= k8;
        memcpy(p + i, &v, 8);
    }
    for (; i < len; i++)
        p[i] ^= k[i & 3];
}

/* Appends the header of a masked, final client frame; returns where its payload
 * goes (len bytes reserved) and the mask key in *key. */
static unsigned char *frame_begin(struct ctx *x, struct buf *b, int opcode, size_t len,
                                  uint32_t *key)
{
    buf_reserve(b, len + 14);
    unsigned char *h = b->p + b->len;
    size_t n = 0;
    h[n++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        h[n++] = (unsigned char)(0x80 | len);
    } else if (len <= 0xFFFF) {
        h[n++] = 0x80 | 126;
        h[n++] = (unsigned char)(len >> 8);
        h[n++] = (unsigned char)len;
    } else {
        h[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            h[n++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    *key = (uint32_t)rng_next(x);
    memcpy(h + n, key, 4);
    n += 4;
    b->len += n + len;
    return h + n;
}

static void frame_append(struct ctx *x, struct buf *b, int opcode, const void *data, size_t len)
{
    uint32_t key;
    unsigned char *p = frame_begin(x, b, opcode, len, &key);
    memcpy(p, data, len);
    mask_bytes(p, len, key);
}

/* ---------- connection lifecycle ---------- */

static void set_events(struct ctx *x, struct conn *c, int want_out)
{
    if (c->want_out == want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(x->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want_out;
}

static void conn_release(struct ctx *x, struct conn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
        x->live--;
    }
    c->state = CS_DONE;
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->msg);
    free(c->sent_ns);
    c->sent_ns = NULL;
}

/* A connection ended badly: a failed connect before it opened, an error after. */
static void conn_fail(struct ctx *x, struct conn *c, const char *why)
{
    if (c->state == CS_CONNECTING || c->state == CS_HANDSHAKE) {
        x->failed++;
        x->pending--;
        if (x->failed <= 5)
            fprintf(stderr, "wsload: conn %u failed: %s\n", c->id, why);
    } else if (c->state == CS_OPEN && x->phase < PH_CLOSING) {
        x->errors++;
        if (x->errors <= 5)
            fprintf(stderr, "wsload: conn %u error: %s\n", c->id, why);
    }
    conn_release(x, c);
}

/* Writes out as much of c->out as the kernel takes, in one write(). */
static void conn_flush(struct ctx *x, struct conn *c)
{
    if (c->fd < 0 || c->out.len == c->out.off)
        return;
    ssize_t n = write(c->fd, c->out.p + c->out.off, c->out.len - c->out.off);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        conn_fail(x, c, strerror(errno));
        return;
    }
    if (n > 0)
        c->out.off += (size_t)n;
    if (c->out.off == c->out.len)
        c->out.off = c->out.len = 0;
    set_events(x, c, c->out.len > 0);
}

static void conn_start(struct ctx *x, struct conn *c)
{
    x->started++;
    x->pending++;
    c->state = CS_CONNECTING;
    c->t_start = now_ns();
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        conn_fail(x, c, strerror(errno));
        return;
    }
    x->live++;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (x->o.nsrc > 0) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = x->o.src[c->id % x->o.nsrc]};
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            conn_fail(x, c, "bind");
            return;
        }
    }
    if (connect(c->fd, (struct sockaddr *)&x->o.dst, sizeof(x->o.dst)) < 0 &&
        errno != EINPROGRESS) {
        conn_fail(x, c, strerror(errno));
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(x->ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->want_out = 1;
}

/* TCP is up: queue the upgrade request, remember the accept value to expect. */
static void conn_connected(struct ctx *x, struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        conn_fail(x, c, strerror(err));
        return;
    }
    unsigned char raw[16], digest[20];
    uint64_t r1 = rng_next(x), r2 = rng_next(x);
    memcpy(raw, &r1, 8);
    memcpy(raw + 8, &r2, 8);
    char key[32], cat[96];
    base64(raw, 16, key);
    int n = snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
    sha1(cat, (size_t)n, digest);
    base64(digest, 20, c->accept);
    char req[512];
    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                 x->o.path, x->o.host, key);
    buf_reserve(&c->out, (size_t)n);
    memcpy(c->out.p + c->out.len, req, (size_t)n);
    c->out.len += (size_t)n;
    c->state = CS_HANDSHAKE;
    conn_flush(x, c);
}

/* Keeps DEPTH messages in flight (only while warming up or measuring). */
static void conn_refill(struct ctx *x, struct conn *c, uint64_t now)
{
    if (x->o.idle || (x->phase != PH_WARMUP && x->phase != PH_MEASURE))
        return;
    for (int i = 0; i < x->o.depth && c->sent_seq - c->recv_seq < (uint64_t)x->o.depth; i++) {
        uint32_t key;
        unsigned char *p = frame_begin(x, &c->out, 1, x->o.size, &key);
        payload_fill(x, p, c->id, c->sent_seq);
        mask_bytes(p, x->o.size, key);
        c->sent_ns[c->sent_seq % (uint64_t)x->o.depth] = now;
        c->sent_seq++;
    }
}

/* ---------- receiving ---------- */

static void hist_add(struct ctx *x, uint64_t v)
{
    if (v > LAT_CAP_NS)
        v = LAT_CAP_NS;
    int idx;
    if (v < HIST_SUB) {
        idx = (int)v;
    } else {
        int msb = 63 - __builtin_clzll(v);
        int shift = msb - 4;
        idx = (shift + 1) * HIST_SUB + (int)((v >> shift) & (HIST_SUB - 1));
    }
    x->hist[idx]++;
    x->lat_count++;
    if (v > x->lat_max)
        x->lat_max = v;
}

static uint64_t hist_lower(int idx)
{
    if (idx < HIST_SUB)
        return (uint64_t)idx;
    int e = idx / HIST_SUB, m = idx % HIST_SUB;
    return (uint64_t)(HIST_SUB + m) << (e - 1);
}

/* The value at quantile q: the upper edge of its bucket (≤ 6 % high), capped by max. */
static uint64_t hist_quantile(const struct ctx *x, double q)
{
    if (x->lat_count == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)x->lat_count);
    if (want >= x->lat_count)
        want = x->lat_count - 1;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += x->hist[i];
        if (seen > want) {
            uint64_t hi = hist_lower(i + 1) - 1;
            return hi < x->lat_max ? hi : x->lat_max;
        }
    }
    return x->lat_max;
}

/* A complete data message: check it is the next echo, time it, send another. */
static void on_message(struct ctx *x, struct conn *c, const unsigned char *p, size_t len,
                       uint64_t now)
{
    if (x->o.idle || c->state != CS_OPEN)
        return;
    if (c->recv_seq == c->sent_seq) { /* nothing in flight: unexpected message */
        x->mismatches++;
        return;
    }
    if (!payload_check(x, p, len, c->id, c->recv_seq)) {
        if (x->mismatches < 5)
            fprintf(stderr, "wsload: conn %u seq %llu: echo differs (%zu bytes)\n", c->id,
                    (unsigned long long)c->recv_seq, len);
        x->mismatches++;
    }
    uint64_t sent = c->sent_ns[c->recv_seq % (uint64_t)x->o.depth];
    c->recv_seq++;
    if (x->phase == PH_MEASURE) {
        x->msgs++;
        hist_add(x, now - sent);
    }
    conn_refill(x, c, now);
}

/* One whole frame.  Returns 0, or -1 when the connection was released. */
static int on_frame(struct ctx *x, struct conn *c, int fin, int op, const unsigned char *p,
                    size_t len, uint64_t now)
{
    switch (op) {
    case 9: /* ping */
        frame_append(x, &c->out, 10, p, len);
        return 0;
    case 10: /* pong */
        return 0;
    case 8: /* close: an error unless we are closing */
        conn_fail(x, c, "server sent close");
        return -1;
    case 0: /* continuation */
    case 1: /* text */
    case 2: /* binary */
        if ((op == 0) != c->in_fragment) {
            conn_fail(x, c, "bad fragment sequence");
            return -1;
        }
        if (fin && !c->in_fragment) {
            on_message(x, c, p, len, now);
            return 0;
        }
        buf_reserve(&c->msg, len);
        memcpy(c->msg.p + c->msg.len, p, len);
        c->msg.len += len;
        c->in_fragment = !fin;
        if (fin) {
            on_message(x, c, c->msg.p, c->msg.len, now);
            c->msg.len = c->msg.off = 0;
        }
        return 0;
    default:
        conn_fail(x, c, "unknown opcode");
        return -1;
    }
}

/* Parses every whole frame in c->in.  Returns 0, or -1 when c was released. */
static int parse_frames(struct ctx *x, struct conn *c, uint64_t now)
{
    /* each pass consumes ≥ 2 bytes, so the buffer length bounds the loop */
    while (c->in.len - c->in.off >= 2) {
        const unsigned char *h = c->in.p + c->in.off;
        size_t avail = c->in.len - c->in.off, hl = 2;
        uint64_t len = h[1] & 0x7F;
        if (h[1] & 0x80 || h[0] & 0x70) {
            conn_fail(x, c, "masked or RSV frame from server");
            return -1;
        }
        if (len == 126) {
            if (avail < 4)
                return 0;
            len = (uint64_t)h[2] << 8 | h[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                return 0;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | h[2 + i];
            hl = 10;
        }
        if (len > MAX_FRAME) {
            conn_fail(x, c, "frame too large");
            return -1;
        }
        if (avail < hl + len) {
            buf_reserve(&c->in, hl + (size_t)len - avail);
            return 0;
        }
        c->in.off += hl + (size_t)len;
        if (c->state == CS_CLOSING) {
            if ((h[0] & 0x0F) == 8) { /* the server's answer to our close */
                conn_release(x, c);
                return -1;
            }
            continue;
        }
        if (on_frame(x, c, h[0] >> 7, h[0] & 0x0F, h + hl, (size_t)len, now) < 0)
            return -1;
    }
    return 0;
}

/* Checks the HTTP response once complete; leaves any frames after it in c->in. */
static int parse_handshake(struct ctx *x, struct conn *c)
{
    unsigned char *p = c->in.p + c->in.off;
    size_t n = c->in.len - c->in.off;
    unsigned char *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end) {
        if (n >= HANDSHAKE_MAX) {
            conn_fail(x, c, "handshake response too long");
            return -1;
        }
        return 0;
    }
    size_t hlen = (size_t)(end - p) + 4;
    char head[HANDSHAKE_MAX + 1];
    if (hlen > HANDSHAKE_MAX) {
        conn_fail(x, c, "handshake response too long");
        return -1;
    }
    memcpy(head, p, hlen);
    head[hlen] = '\0';
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
        conn_fail(x, c, "no 101 response");
        return -1;
    }
    const char *a = strcasestr(head, "\r\nSec-WebSocket-Accept:");
    if (!a) {
        conn_fail(x, c, "no Sec-WebSocket-Accept");
        return -1;
    }
    a += strlen("\r\nSec-WebSocket-Accept:");
    a += strspn(a, " \t");
    size_t alen = strcspn(a, " \t\r\n");
    if (alen != strlen(c->accept) || memcmp(a, c->accept, alen) != 0) {
        conn_fail(x, c, "wrong Sec-WebSocket-Accept");
        return -1;
    }
    c->in.off += hlen;
    c->state = CS_OPEN;
    x->pending--;
    x->connected++;
    c->sent_ns = x->o.idle ? NULL : calloc((size_t)x->o.depth, sizeof(uint64_t));
    if (!x->o.idle && !c->sent_ns) {
        fprintf(stderr, "wsload: out of memory\n");
        exit(2);
    }
    return 0;
}

static void conn_readable(struct ctx *x, struct conn *c, uint64_t now)
{
    for (int i = 0; i < READS_PER_EVENT; i++) {
        buf_reserve(&c->in, x->o.size + 4096 < 65536 ? x->o.size + 4096 : 65536);
        ssize_t n = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len);
        if (n == 0) {
            if (c->state == CS_CLOSING)
                conn_release(x, c);
            else
                conn_fail(x, c, "server closed the connection");
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            conn_fail(x, c, strerror(errno));
            return;
        }
        c->in.len += (size_t)n;
        if (c->state == CS_HANDSHAKE && parse_handshake(x, c) < 0)
            return;
        if (c->state != CS_HANDSHAKE && parse_frames(x, c, now) < 0)
            return;
        if ((size_t)n < 4096)
            break; /* drained, most likely: let epoll say when there is more */
    }
    conn_flush(x, c);
}

static void conn_event(struct ctx *x, struct conn *c, uint32_t ev)
{
    if (c->fd < 0)
        return;
    if (c->state == CS_CONNECTING) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        conn_connected(x, c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        conn_readable(x, c, now_ns());
        if (c->fd < 0)
            return;
    }
    if (ev & EPOLLOUT)
        conn_flush(x, c);
}

/* ---------- phases ---------- */

static void start_connects(struct ctx *x)
{
    for (int i = 0; x->started < x->o.conns && x->pending < CONNECT_WINDOW && i < CONNECT_WINDOW;
         i++)
        conn_start(x, &x->conns[x->started]);
}

static void fail_unopened(struct ctx *x)
{
    for (int i = 0; i < x->o.conns; i++) {
        struct conn *c = &x->conns[i];
        if (c->state == CS_CONNECTING || c->state == CS_HANDSHAKE)
            conn_fail(x, c, "not open within 10 s");
        else if (c->state == CS_NEW) {
            x->failed++;
            x->started++;
            c->state = CS_DONE;
        }
    }
}

static void begin_closing(struct ctx *x, uint64_t now)
{
    getrusage(RUSAGE_SELF, &x->ru1);
    x->t_end = now;
    x->phase = PH_CLOSING;
    x->t_deadline = now + GRACE_NS;
    static const unsigned char bye[2] = {0x03, 0xE8}; /* 1000 */
    for (int i = 0; i < x->o.conns; i++) {
        struct conn *c = &x->conns[i];
        if (c->state != CS_OPEN)
            continue;
        c->state = CS_CLOSING;
        frame_append(x, &c->out, 8, bye, sizeof(bye));
        conn_flush(x, c);
    }
}

static void tick(struct ctx *x, uint64_t now)
{
    switch (x->phase) {
    case PH_CONNECT:
        if (now - x->t_begin >= CONNECT_PHASE_NS)
            fail_unopened(x);
        else
            start_connects(x);
        if (x->started < x->o.conns || x->pending > 0)
            return;
        x->t_connected = now;
        if (x->o.idle) {
            x->phase = PH_HOLD;
            getrusage(RUSAGE_SELF, &x->ru0);
            x->t_measure = now;
            x->t_deadline = now + (uint64_t)(x->o.seconds * NS_PER_S);
            return;
        }
        x->phase = PH_WARMUP;
        x->t_deadline = now + (uint64_t)(x->o.warmup * NS_PER_S);
        for (int i = 0; i < x->o.conns; i++) {
            if (x->conns[i].state == CS_OPEN) {
                conn_refill(x, &x->conns[i], now);
                conn_flush(x, &x->conns[i]);
            }
        }
        return;
    case PH_WARMUP:
        if (now < x->t_deadline && x->live > 0)
            return;
        x->phase = PH_MEASURE;
        getrusage(RUSAGE_SELF, &x->ru0);
        x->t_measure = now;
        x->t_deadline = now + (uint64_t)(x->o.seconds * NS_PER_S);
        return;
    case PH_MEASURE:
    case PH_HOLD:
        if (now >= x->t_deadline || x->live == 0) /* nothing left to measure */
            begin_closing(x, now);
        return;
    case PH_CLOSING:
        if (x->live == 0 || now >= x->t_deadline)
            x->phase = PH_DONE;
        return;
    case PH_DONE:
        return;
    }
}

static void run(struct ctx *x)
{
    struct epoll_event evs[MAX_EVENTS];
    x->t_begin = now_ns();
    /* the hard stop: connect phase + warm-up + measured + grace, plus a second of slack */
    uint64_t hard_stop = x->t_begin + CONNECT_PHASE_NS +
                         (uint64_t)((x->o.warmup + x->o.seconds) * NS_PER_S) + GRACE_NS + NS_PER_S;
    uint64_t now = x->t_begin;
    while (x->phase != PH_DONE && now < hard_stop) {
        tick(x, now);
        int n = epoll_wait(x->ep, evs, MAX_EVENTS, 10);
        for (int i = 0; i < n; i++)
            conn_event(x, evs[i].data.ptr, evs[i].events);
        now = now_ns();
    }
    if (x->phase < PH_CLOSING) /* hard stop hit: still report what was measured */
        begin_closing(x, now);
    for (int i = 0; i < x->o.conns; i++)
        if (x->conns[i].state != CS_DONE && x->conns[i].state != CS_NEW)
            conn_release(x, &x->conns[i]);
}

/* ---------- report ---------- */

static double tv_s(struct timeval a, struct timeval b)
{
    return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_usec - a.tv_usec) / 1e6;
}

static int report(struct ctx *x)
{
    double user = tv_s(x->ru0.ru_utime, x->ru1.ru_utime);
    double sys = tv_s(x->ru0.ru_stime, x->ru1.ru_stime);
    if (x->o.idle) {
        double cs = (double)(x->t_connected - x->t_begin) / 1e9;
        double rate = cs > 0 ? x->connected / cs : 0;
        if (x->o.json)
            printf("{\"connected\":%d,\"failed\":%d,\"connect_s\":%.3f,\"conns_per_s\":%.0f,"
                   "\"errors\":%llu,\"cpu_user_s\":%.2f,\"cpu_sys_s\":%.2f}\n",
                   x->connected, x->failed, cs, rate, (unsigned long long)x->errors, user, sys);
        else
            printf("connected=%d failed=%d connect_s=%.3f conns/s=%.0f errors=%llu "
                   "cpu_user_s=%.2f cpu_sys_s=%.2f\n",
                   x->connected, x->failed, cs, rate, (unsigned long long)x->errors, user, sys);
        return x->failed == 0 && x->errors == 0 ? 0 : 1;
    }
    double secs = x->t_end > x->t_measure ? (double)(x->t_end - x->t_measure) / 1e9 : 0;
    double rate = secs > 0 ? (double)x->msgs / secs : 0;
    unsigned long long errors = x->errors + (unsigned long long)x->failed;
    double p50 = hist_quantile(x, 0.50) / 1e3, p99 = hist_quantile(x, 0.99) / 1e3;
    double p999 = hist_quantile(x, 0.999) / 1e3, mx = x->lat_max / 1e3;
    if (x->o.json)
        printf("{\"msgs_per_s\":%.0f,\"conns\":%d,\"depth\":%d,\"size\":%zu,\"p50_us\":%.1f,"
               "\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"mismatches\":%llu,"
               "\"errors\":%llu,\"cpu_user_s\":%.2f,\"cpu_sys_s\":%.2f}\n",
               rate, x->o.conns, x->o.depth, x->o.size, p50, p99, p999, mx,
               (unsigned long long)x->mismatches, errors, user, sys);
    else
        printf("msgs/s=%.0f conns=%d depth=%d size=%zu p50_us=%.1f p99_us=%.1f p999_us=%.1f "
               "max_us=%.1f mismatches=%llu errors=%llu cpu_user_s=%.2f cpu_sys_s=%.2f\n",
               rate, x->o.conns, x->o.depth, x->o.size, p50, p99, p999, mx,
               (unsigned long long)x->mismatches, errors, user, sys);
    return x->mismatches == 0 && errors == 0 && x->msgs > 0 ? 0 : 1;
}

/* ---------- command line ---------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: wsload -u ws://127.0.0.1:PORT/path -c CONNS -d DEPTH -s SIZE -t SECONDS\n"
            "              [-w WARMUP_SECONDS] [--src 127.0.0.2,127.0.0.3,...] [--idle] "
            "[--json]\n");
    exit(2);
}

static int parse_url(struct opts *o, const char *url)
{
    if (strncmp(url, "ws://", 5) != 0)
        return -1;
    const char *h = url + 5, *slash = strchr(h, '/');
    size_t hlen = slash ? (size_t)(slash - h) : strlen(h);
    if (hlen == 0 || hlen >= sizeof(o->host))
        return -1;
    memcpy(o->host, h, hlen);
    o->host[hlen] = '\0';
    snprintf(o->path, sizeof(o->path), "%s", slash ? slash : "/");
    char ip[64];
    snprintf(ip, sizeof(ip), "%s", o->host);
    char *colon = strchr(ip, ':');
    long port = 80;
    if (colon) {
        *colon = '\0';
        port = strtol(colon + 1, NULL, 10);
    }
    o->dst.sin_family = AF_INET;
    o->dst.sin_port = htons((uint16_t)port);
    if (port <= 0 || port > 65535 || inet_pton(AF_INET, ip, &o->dst.sin_addr) != 1)
        return -1;
    return 0;
}

static int parse_src(struct opts *o, const char *list)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", list);
    char *save = NULL;
    for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (o->nsrc >= MAX_SRC || inet_pton(AF_INET, t, &o->src[o->nsrc]) != 1)
            return -1;
        o->nsrc++;
    }
    return o->nsrc > 0 ? 0 : -1;
}

static void parse_args(struct opts *o, int argc, char **argv)
{
    static const struct option longs[] = {{"src", required_argument, NULL, 'S'},
                                          {"idle", no_argument, NULL, 'I'},
                                          {"json", no_argument, NULL, 'J'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    int have_url = 0, opt;
    o->conns = 1;
    o->depth = 1;
    o->size = 32;
    o->seconds = 5;
    o->warmup = 1;
    while ((opt = getopt_long(argc, argv, "u:c:d:s:t:w:h", longs, NULL)) != -1) {
        switch (opt) {
        case 'u':
            if (parse_url(o, optarg) < 0) {
                fprintf(stderr, "wsload: bad url (want ws://IPv4:PORT/path): %s\n", optarg);
                exit(2);
            }
            have_url = 1;
            break;
        case 'c':
            o->conns = atoi(optarg);
            break;
        case 'd':
            o->depth = atoi(optarg);
            break;
        case 's':
            o->size = (size_t)strtoul(optarg, NULL, 10);
            break;
        case 't':
            o->seconds = atof(optarg);
            break;
        case 'w':
            o->warmup = atof(optarg);
            break;
        case 'S':
            if (parse_src(o, optarg) < 0) {
                fprintf(stderr, "wsload: bad --src (at most %d IPv4 addresses)\n", MAX_SRC);
                exit(2);
            }
            break;
        case 'I':
            o->idle = 1;
            break;
        case 'J':
            o->json = 1;
            break;
        default:
            usage();
        }
    }
    if (!have_url || optind != argc || o->conns < 1 || o->depth < 1 || o->depth > MAX_DEPTH ||
        o->size < 1 || o->size > MAX_SIZE || !(o->seconds > 0 && o->seconds <= 86400) ||
        !(o->warmup >= 0 && o->warmup <= 3600))
        usage();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)o->conns + 16 > rl.rlim_cur) {
        fprintf(stderr,
                "wsload: -c %d needs more than the %llu open files allowed; "
                "run several wsload processes\n",
                o->conns, (unsigned long long)rl.rlim_cur);
        exit(2);
    }
}

int main(int argc, char **argv)
{
    static struct ctx x;
    parse_args(&x.o, argc, argv);
    signal(SIGPIPE, SIG_IGN);
    if (getrandom(&x.rng, sizeof(x.rng), 0) != sizeof(x.rng) || x.rng == 0)
        x.rng = now_ns() | 1;
    x.ep = epoll_create1(EPOLL_CLOEXEC);
    x.conns = calloc((size_t)x.o.conns, sizeof(*x.conns));
    x.pattern = malloc(x.o.size + 26);
    if (x.ep < 0 || !x.conns || !x.pattern) {
        fprintf(stderr, "wsload: start-up failed\n");
        return 2;
    }
    for (size_t i = 0; i < x.o.size + 26; i++)
        x.pattern[i] = (unsigned char)('A' + i % 26);
    for (int i = 0; i < x.o.conns; i++) {
        x.conns[i].fd = -1;
        x.conns[i].id = (uint32_t)i;
    }
    run(&x);
    int rc = report(&x);
    free(x.conns);
    free(x.pattern);
    close(x.ep);
    return rc;
}
