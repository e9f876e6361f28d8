/* wsload.c — WebSocket load generator for moongate's benchmarks.
 *
 * Owns: the command line, one epoll loop on one thread, the client side of the
 * WebSocket handshake (with its own SHA-1 and base64 to check Sec-WebSocket-Accept),
 * masked client framing, parsing of server frames, payload verification and the
 * latency histograms.  Modes:
 *   echo (default)   keep DEPTH messages of SIZE bytes in flight on each of CONNS
 *                    connections, verify every echo in order, report msg/s and
 *                    latency percentiles for the measured window;
 *   echo --rate N    open loop: every connection sends N messages/s (at most DEPTH in
 *                    flight), every echo is verified, latency is also kept per second
 *                    of the window (by send time); afterwards it waits for the last
 *                    echoes and counts the lost ones (sent, never echoed).  Optionally
 *                    sends SIGHUP to a PID mid-window (--signal-at, --signal-pid);
 *   --broadcast R,.. connection 0 publishes R messages/s, each stamped with its
 *                    CLOCK_MONOTONIC send time; connections 1..CONNS-1 connect with
 *                    "sub" added to the query and must receive every broadcast, in
 *                    order: fan-out latency = receive time − stamp, per rate step; the
 *                    ramp stops at the first step whose p99 passes --p99-limit;
 *                    --pub-port / --sub-ports put the publisher and the
 *                    subscribers on other ports (nodes of a cluster);
 *   --idle           open CONNS connections and hold them, answering pings; report
 *                    the connect rate and how many connections were pinged (--hello:
 *                    each first sends one chat message and waits for its echo);
 *   --chat RATE      a chat room: every connection is a member, RATE JSON chat
 *                    messages/s in all, sent by the connections in turn, each
 *                    stamped with its CLOCK_MONOTONIC send time; the server sends
 *                    every message to every member (sender included): fan-out
 *                    latency, deliveries, lost deliveries, bytes on the wire.
 * --deflate offers permessage-deflate (RFC 7692) with client_max_window_bits and,
 * where the server accepts, compresses what it sends and inflates what it gets with
 * the gateway's own codec (src/pmd.c, roles swapped: its "server" side is ours).
 * Every phase has a deadline, so a run always ends: connect ≤ --connect-timeout, then
 * warm-up, the measured window(s) with their drains, then ≤ 5 s to close; SIGINT or
 * SIGTERM ends the window early.  See bench/README.md. */
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

#include "pmd.h"

enum {
    MAX_SRC = 64,  /* --src addresses */
    HIST_SUB = 16, /* linear sub-buckets per power of two */
    HIST_BUCKETS = 64 * HIST_SUB,
    CONNECT_WINDOW = 1024, /* connects + handshakes in progress at once */
    MAX_EVENTS = 1024,     /* per epoll_wait */
    READS_PER_EVENT = 8,   /* read() calls per readiness, then back to epoll */
    HANDSHAKE_MAX = 8192,  /* largest HTTP response accepted */
    MAX_DEPTH = 65536,
    RATE_DEPTH = 64,    /* default in-flight cap with --rate */
    MAX_STEPS = 16,     /* --broadcast rates */
    MAX_TIMELINE = 600, /* seconds of per-second latency with --rate */
    BC_HEAD = 32,       /* broadcast payload header: '!' stamp(16) step(3) seq(12) */
    MAX_BURST = 65536,  /* sends per loop turn when catching up a schedule */
};

#define NS_PER_S 1000000000ull
#define GRACE_NS (5 * NS_PER_S)        /* closing handshake budget; drain budget of --rate */
#define STEP_DRAIN_NS (2 * NS_PER_S)   /* wait for a broadcast step's last deliveries */
#define LAT_CAP_NS (10 * NS_PER_S)     /* histogram range ends at 10 s */
#define MAX_SIZE (16u << 20)           /* largest -s */
#define MAX_FRAME ((uint64_t)64 << 20) /* largest server frame accepted */

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
static const char HEX[] = "0123456789abcdef";

enum mode { MODE_ECHO, MODE_IDLE, MODE_BROADCAST, MODE_CHAT };
enum phase { PH_CONNECT, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_HOLD, PH_CLOSING, PH_DONE };
enum conn_state { CS_NEW, CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_CLOSING, CS_DONE };

/* Set by SIGINT/SIGTERM: end the current window and close. */
static volatile sig_atomic_t stop_requested;

/* A growable byte buffer: bytes [off, len) are pending (to parse or to write). */
struct buf {
    unsigned char *p;
    size_t off, len, cap;
};

/* Log-linear latency histogram: 16 sub-buckets per power of two of nanoseconds. */
struct hist {
    uint64_t b[HIST_BUCKETS];
    uint64_t count, max;
};

struct conn {
    int fd; /* -1 when not open */
    enum conn_state state;
    int want_out;      /* EPOLLOUT is registered */
    int publisher;     /* --broadcast: connection 0 */
    uint32_t id;       /* index, also mixed into the payload filler */
    uint32_t pings;    /* pings received */
    uint64_t t_start;  /* connect() time, ns */
    char accept[32];   /* expected Sec-WebSocket-Accept */
    struct buf in;     /* bytes read, not yet parsed */
    struct buf out;    /* frames built, not yet written */
    struct buf msg;    /* a fragmented message being reassembled */
    int in_fragment;   /* msg holds the first fragments of a data message */
    uint64_t sent_seq; /* next sequence number to send */
    uint64_t recv_seq; /* sequence number of the next echo (or broadcast) expected */
    uint64_t *sent_ns; /* ring of DEPTH send times, indexed by seq % depth */
    pmd_conn *z;       /* permessage-deflate, as negotiated; NULL: none */
    int in_z;          /* the message in msg is compressed (RSV1 on its first frame) */
    int hello;         /* --hello: 1 sent, 2 echoed */
};

struct opts {
    struct sockaddr_in dst;
    char host[64]; /* Host header */
    char path[256];
    char sub_path[264]; /* --broadcast subscribers: path with "sub" added to the query */
    struct in_addr src[MAX_SRC];
    int nsrc;
    enum mode mode;
    int conns, depth, depth_set, json;
    size_t size;
    double seconds, warmup, connect_timeout;
    double rate;             /* --rate: messages/s per connection, 0 = closed loop */
    double rates[MAX_STEPS]; /* --broadcast */
    int nrates;
    double p99_limit_ms; /* --p99-limit */
    const char *status;  /* --status FILE */
    double signal_at;    /* --signal-at seconds into the window */
    pid_t signal_pid;    /* --signal-pid, 0 = none */
    /* --broadcast across gateways (a cluster): the publisher connects to
     * --pub-port, subscribers round-robin over --sub-ports (same host and
     * path as -u; default: -u's port for both). */
    uint16_t pub_port;
    uint16_t sub_ports[MAX_SRC];
    int nsub_ports;
    int deflate;            /* --deflate: offer permessage-deflate */
    const char *offer;      /* the offer (--deflate-offer) */
    int deflate_level;      /* --deflate-level: zlib level of what we compress */
    double chat_rate;       /* --chat: messages/s, all connections together */
    int hello;              /* --hello (with --idle) */
    pid_t cpu_pid;          /* --cpu-pid: its CPU time over the window is reported */
};

/* One broadcast rate step; steps[0] is the warm-up. */
struct step {
    double rate;
    uint64_t t0, t1;          /* start; end of sending */
    uint64_t sent, delivered; /* messages published; deliveries seen */
    uint64_t expected, lost;  /* sent × subscribers; expected − delivered when the drain ended */
    double cpu_s;             /* wsload's CPU over the step and its drain */
    int done;                 /* result final */
    struct hist lat;
};

/* Everything the run owns: options, the loop, connections, counters. */
struct ctx {
    struct opts o;
    int ep;
    struct conn *conns;
    enum phase phase;
    uint64_t rng;
    int started;        /* connections connect() was called for */
    int pending;        /* started, not yet open or failed */
    int live;           /* sockets open */
    int connected;      /* handshakes completed */
    int failed;         /* connects or handshakes that failed */
    int pinged;         /* open connections that got at least one ping */
    int status_written; /* 0, 1 = "connected", 2 = "pinged" */
    uint64_t t_begin, t_connected, t_measure, t_end, t_deadline;
    uint64_t msgs, mismatches, closed, lost, skipped, gaps;
    struct hist lat;
    struct rusage ru0, ru1;
    unsigned char *pattern; /* SIZE + 26 bytes of A..Z repeating: the payload filler */
    /* --rate */
    uint64_t t_sched0, next_send; /* schedule start; global index of the next send */
    struct hist *timeline;        /* per second of the window, by send time */
    int nsecs;
    uint64_t t_signal; /* when SIGHUP was sent, 0 = not sent */
    /* --broadcast */
    struct step steps[MAX_STEPS + 1];
    int step; /* current step: 0 = warm-up, 1..nrates */
    int subs; /* subscribers open when publishing began */
    uint64_t bc_seq;
    struct rusage ru_step;
    /* permessage-deflate and the wire (data frames, headers included; payload =
     * the messages as the application sees them, uncompressed) */
    pmd_shared *zsh;
    pmd_buf zin, zout;
    unsigned char *scratch; /* a message before it is compressed */
    int z_conns;            /* connections that negotiated permessage-deflate */
    char z_answer[256];     /* the first connection's Sec-WebSocket-Extensions answer */
    uint64_t tx_msgs, tx_wire, tx_payload, rx_msgs, rx_wire, rx_payload, rx_compressed;
    int hellos; /* --hello: echoes received */
    /* --cpu-pid: its utime + stime at the window's ends, in clock ticks */
    long long cpu0, cpu1;
    /* --chat */
    uint64_t chat_seq, chat_sent_w, chat_delivered_w, chat_expected;
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
    size_t i = 0;
    for (uint64_t v = seq; i < size && i < 16; i++, v >>= 4)
        p[i] = (unsigned char)HEX[v & 15];
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

/* digits hex digits of v, most significant first. */
static void put_hex(unsigned char *p, uint64_t v, int digits)
{
    for (int i = digits - 1; i >= 0; i--, v >>= 4)
        p[i] = (unsigned char)HEX[v & 15];
}

/* Parses digits lower-case hex digits; -1 on anything else. */
static int get_hex(const unsigned char *p, int digits, uint64_t *v)
{
    uint64_t r = 0;
    for (int i = 0; i < digits; i++) {
        const char *d = p[i] ? strchr(HEX, p[i]) : NULL;
        if (!d)
            return -1;
        r = r << 4 | (uint64_t)(d - HEX);
    }
    *v = r;
    return 0;
}

/* A broadcast payload: '!' (the broadcast marker), the send time (16 hex digits of
 * CLOCK_MONOTONIC ns), the step (3), the sequence number (12), then the A..Z filler
 * starting at seq % 26.  Every subscriber gets the same bytes. */
static void bc_fill(const struct ctx *x, unsigned char *p, uint64_t stamp, int step, uint64_t seq)
{
    p[0] = '!';
    put_hex(p + 1, stamp, 16);
    put_hex(p + 17, (uint64_t)step, 3);
    put_hex(p + 20, seq, 12);
    memcpy(p + BC_HEAD, x->pattern + seq % 26, x->o.size - BC_HEAD);
}

/* Parses and checks a broadcast payload; -1 when it is not one bc_fill() could write. */
static int bc_parse(const struct ctx *x, const unsigned char *p, size_t len, uint64_t *stamp,
                    uint64_t *step, uint64_t *seq)
{
    if (len != x->o.size || p[0] != '!' || get_hex(p + 1, 16, stamp) < 0 ||
        get_hex(p + 17, 3, step) < 0 || get_hex(p + 20, 12, seq) < 0 ||
        *step > (uint64_t)x->o.nrates)
        return -1;
    return memcmp(p + BC_HEAD, x->pattern + *seq % 26, len - BC_HEAD) == 0 ? 0 : -1;
}

/* A chat message: {"type":"msg","room":"lobby","user":"userNNNN","text":"...","ts":T,
 * "seq":S} with 16 to 36 words from a fixed list, chosen from (user, seq): about
 * 180 to 300 bytes of JSON that compresses as chat text does.  ts is the send time
 * (CLOCK_MONOTONIC ns).  Returns its length; p has room for CHAT_MAX bytes. */
enum { CHAT_MAX = 512 };
static const char *const WORDS[64] = {
    "the",    "a",      "and",   "to",    "of",      "is",     "it",     "you",
    "that",   "in",     "we",    "for",   "on",      "this",   "with",   "are",
    "be",     "have",   "not",   "at",    "just",    "so",     "can",    "what",
    "about",  "there",  "will",  "if",    "but",     "all",    "my",     "they",
    "meeting", "today", "later", "tomorrow", "deploy", "release", "build", "test",
    "server", "client", "lunch", "coffee", "thanks", "great",  "sounds", "good",
    "please", "check",  "issue", "ticket", "review", "merge",  "branch", "ready",
    "morning", "evening", "weekend", "team", "update", "status", "done", "soon"};

static uint64_t mix64(uint64_t v)
{
    v ^= v >> 30;
    v *= 0xbf58476d1ce4e5b9ull;
    v ^= v >> 27;
    v *= 0x94d049bb133111ebull;
    return v ^ (v >> 31);
}

static size_t chat_build(unsigned char *p, uint32_t user, uint64_t seq, uint64_t ts)
{
    uint64_t h = mix64(seq * 0x9e3779b97f4a7c15ull + user);
    int words = 16 + (int)(h % 21);
    char *o = (char *)p, *end = o + CHAT_MAX;
    o += snprintf(o, (size_t)(end - o),
                  "{\"type\":\"msg\",\"room\":\"lobby\",\"user\":\"user%04u\",\"text\":\"", user);
    for (int i = 0; i < words; i++) {
        h = mix64(h + (uint64_t)i);
        o += snprintf(o, (size_t)(end - o), "%s%s", i ? " " : "", WORDS[h % 64]);
    }
    o += snprintf(o, (size_t)(end - o), "\",\"ts\":%llu,\"seq\":%llu}", (unsigned long long)ts,
                  (unsigned long long)seq);
    return (size_t)(o - (char *)p);
}

/* The decimal after key in p[0..len), or -1. */
static int chat_field(const unsigned char *p, size_t len, const char *key, uint64_t *v)
{
    const unsigned char *k = memmem(p, len, key, strlen(key));
    if (!k)
        return -1;
    k += strlen(key);
    uint64_t r = 0;
    int n = 0;
    for (; k < p + len && *k >= '0' && *k <= '9' && n < 20; k++, n++)
        r = r * 10 + (uint64_t)(*k - '0');
    *v = r;
    return n > 0 ? 0 : -1;
}

/* Parses a chat message and checks it is exactly what chat_build writes for its
 * user, seq and ts; -1 if not. */
static int chat_parse(const unsigned char *p, size_t len, uint64_t *ts, uint64_t *seq)
{
    uint64_t user;
    unsigned char want[CHAT_MAX];
    if (chat_field(p, len, "\"user\":\"user", &user) < 0 || chat_field(p, len, "\"ts\":", ts) < 0 ||
        chat_field(p, len, "\"seq\":", seq) < 0 || user > UINT32_MAX)
        return -1;
    size_t n = chat_build(want, (uint32_t)user, *seq, *ts);
    return n == len && memcmp(want, p, len) == 0 ? 0 : -1;
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

/* A data message to c: compressed when c negotiated permessage-deflate, counted. */
static void send_data(struct ctx *x, struct conn *c, int opcode, const unsigned char *data,
                      size_t len)
{
    x->tx_msgs++;
    x->tx_payload += len;
    if (c->z) {
        x->zout.len = 0;
        if (pmd_deflate(c->z, x->zsh, data, len, &x->zout) < 0) {
            fprintf(stderr, "wsload: out of memory (deflate)\n");
            exit(2);
        }
        data = x->zout.data;
        len = x->zout.len;
        opcode |= 0x40; /* RSV1: compressed */
    }
    x->tx_wire += len + 6 + (len < 126 ? 0 : len <= 0xFFFF ? 2 : 8);
    frame_append(x, &c->out, opcode, data, len);
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
    if (c->z) {
        pmd_conn_release(c->z);
        free(c->z);
        c->z = NULL;
    }
}

/* A connection ended badly: a failed connect before it opened, a close after. */
static void conn_fail(struct ctx *x, struct conn *c, const char *why)
{
    if (c->state == CS_CONNECTING || c->state == CS_HANDSHAKE) {
        x->failed++;
        x->pending--;
        if (x->failed <= 5)
            fprintf(stderr, "wsload: conn %u failed: %s\n", c->id, why);
    } else if (c->state == CS_OPEN && x->phase < PH_CLOSING) {
        x->closed++;
        if (x->closed <= 5)
            fprintf(stderr, "wsload: conn %u closed: %s\n", c->id, why);
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
    struct sockaddr_in dst = x->o.dst;
    if (c->publisher && x->o.pub_port)
        dst.sin_port = htons(x->o.pub_port);
    else if (x->o.mode == MODE_BROADCAST && x->o.nsub_ports)
        dst.sin_port = htons(x->o.sub_ports[c->id % x->o.nsub_ports]);
    if (connect(c->fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 &&
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
    const char *path = x->o.mode == MODE_BROADCAST && !c->publisher ? x->o.sub_path : x->o.path;
    char req[1024];
    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                 path, x->o.host, key, x->o.deflate ? "Sec-WebSocket-Extensions: " : "",
                 x->o.deflate ? x->o.offer : "", x->o.deflate ? "\r\n" : "");
    buf_reserve(&c->out, (size_t)n);
    memcpy(c->out.p + c->out.len, req, (size_t)n);
    c->out.len += (size_t)n;
    c->state = CS_HANDSHAKE;
    conn_flush(x, c);
}

/* ---------- sending ---------- */

/* Queues the next echo message of c, remembering when it was sent. */
static void echo_send(struct ctx *x, struct conn *c, uint64_t now)
{
    if (c->z) {
        payload_fill(x, x->scratch, c->id, c->sent_seq);
        send_data(x, c, 1, x->scratch, x->o.size);
    } else { /* built in place */
        uint32_t key;
        unsigned char *p = frame_begin(x, &c->out, 1, x->o.size, &key);
        payload_fill(x, p, c->id, c->sent_seq);
        mask_bytes(p, x->o.size, key);
        x->tx_msgs++;
        x->tx_payload += x->o.size;
        x->tx_wire += x->o.size + 6 + (x->o.size < 126 ? 0 : x->o.size <= 0xFFFF ? 2 : 8);
    }
    c->sent_ns[c->sent_seq % (uint64_t)x->o.depth] = now;
    c->sent_seq++;
}

/* Closed loop: keeps DEPTH messages in flight (only while warming up or measuring). */
static void conn_refill(struct ctx *x, struct conn *c, uint64_t now)
{
    if (x->o.mode != MODE_ECHO || x->o.rate > 0 ||
        (x->phase != PH_WARMUP && x->phase != PH_MEASURE))
        return;
    for (int i = 0; i < x->o.depth && c->sent_seq - c->recv_seq < (uint64_t)x->o.depth; i++)
        echo_send(x, c, now);
}

/* When the schedule's send number i is due: with --rate, send i goes to connection
 * i % CONNS, so each connection sends every 1/RATE s, the connections evenly staggered. */
static uint64_t rate_due_ns(const struct ctx *x, uint64_t i)
{
    return x->t_sched0 + (uint64_t)((double)i * 1e9 / (x->o.rate * x->o.conns));
}

/* Open loop (--rate): sends whatever the schedule says is due by now.  A connection
 * with DEPTH messages unanswered skips its turn (counted). */
static void rate_pump(struct ctx *x, uint64_t now)
{
    uint64_t end = x->phase == PH_MEASURE ? x->t_deadline : UINT64_MAX; /* none after */
    for (int n = 0;
         n < MAX_BURST && rate_due_ns(x, x->next_send) <= now && rate_due_ns(x, x->next_send) < end;
         n++) {
        struct conn *c = &x->conns[x->next_send % (uint64_t)x->o.conns];
        x->next_send++;
        if (c->state != CS_OPEN)
            continue;
        if (c->sent_seq - c->recv_seq >= (uint64_t)x->o.depth) {
            x->skipped++;
            continue;
        }
        echo_send(x, c, now);
        conn_flush(x, c);
    }
}

static uint64_t bc_due_ns(const struct ctx *x)
{
    const struct step *s = &x->steps[x->step];
    return s->t0 + (uint64_t)((double)s->sent * 1e9 / s->rate);
}

/* --broadcast: the publisher sends whatever the current step's rate says is due. */
static void bc_pump(struct ctx *x, uint64_t now)
{
    struct conn *p = &x->conns[0];
    struct step *s = &x->steps[x->step];
    for (int n = 0; n < MAX_BURST && p->state == CS_OPEN && bc_due_ns(x) <= now &&
                    bc_due_ns(x) < x->t_deadline;
         n++) {
        bc_fill(x, x->scratch, now_ns(), x->step, x->bc_seq++);
        send_data(x, p, 1, x->scratch, x->o.size);
        s->sent++;
        conn_flush(x, p);
    }
}

/* --chat: send number i is due at t_sched0 + i / RATE, from connection i % CONNS. */
static uint64_t chat_due_ns(const struct ctx *x, uint64_t i)
{
    return x->t_sched0 + (uint64_t)((double)i * 1e9 / x->o.chat_rate);
}

/* --chat: sends whatever the schedule says is due by now (not past the window). */
static void chat_pump(struct ctx *x, uint64_t now)
{
    unsigned char msg[CHAT_MAX];
    uint64_t end = x->phase == PH_MEASURE ? x->t_deadline : UINT64_MAX;
    for (int n = 0; n < MAX_BURST && chat_due_ns(x, x->next_send) <= now &&
                    chat_due_ns(x, x->next_send) < end;
         n++) {
        struct conn *c = &x->conns[x->next_send % (uint64_t)x->o.conns];
        x->next_send++;
        if (c->state != CS_OPEN)
            continue;
        size_t len = chat_build(msg, c->id, x->chat_seq++, now_ns());
        send_data(x, c, 1, msg, len);
        if (x->phase == PH_MEASURE)
            x->chat_sent_w++;
        conn_flush(x, c);
    }
}

/* --hello: one chat message, echoed by the server. */
static void hello_send(struct ctx *x, struct conn *c)
{
    unsigned char msg[CHAT_MAX];
    size_t len = chat_build(msg, c->id, 0, 0);
    send_data(x, c, 1, msg, len);
    c->hello = 1;
}

/* ---------- latency histograms ---------- */

static void hist_add(struct hist *h, uint64_t v)
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
    h->b[idx]++;
    h->count++;
    if (v > h->max)
        h->max = v;
}

static uint64_t hist_lower(int idx)
{
    if (idx < HIST_SUB)
        return (uint64_t)idx;
    int e = idx / HIST_SUB, m = idx % HIST_SUB;
    return (uint64_t)(HIST_SUB + m) << (e - 1);
}

/* The value at quantile q: the upper edge of its bucket (≤ 6 % high), capped by max.
 * `missing` samples that never arrived count as slower than everything: a quantile that
 * falls among them is LAT_CAP_NS. */
static uint64_t hist_quantile(const struct hist *h, double q, uint64_t missing)
{
    uint64_t total = h->count + missing;
    if (total == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)total);
    if (want >= total)
        want = total - 1;
    if (want >= h->count)
        return LAT_CAP_NS;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen > want) {
            uint64_t hi = hist_lower(i + 1) - 1;
            return hi < h->max ? hi : h->max;
        }
    }
    return h->max;
}

static double q_us(const struct hist *h, double q)
{
    return (double)hist_quantile(h, q, 0) / 1e3;
}

/* ---------- receiving ---------- */

/* An echo: check it is the next one expected on c, time it, send more (closed loop). */
static void on_echo(struct ctx *x, struct conn *c, const unsigned char *p, size_t len, uint64_t now)
{
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
    if (x->phase == PH_MEASURE)
        x->msgs++;
    if (x->o.rate > 0) { /* by send time: what was sent in the window, even if answered late */
        if (sent >= x->t_measure && x->phase >= PH_MEASURE && (!x->t_end || sent < x->t_end)) {
            hist_add(&x->lat, now - sent);
            uint64_t sec = (sent - x->t_measure) / NS_PER_S;
            if (sec < (uint64_t)x->nsecs)
                hist_add(&x->timeline[sec], now - sent);
        }
        return;
    }
    if (x->phase == PH_MEASURE)
        hist_add(&x->lat, now - sent);
    conn_refill(x, c, now);
}

/* A broadcast delivery: verify it, check the order, time it against its stamp. */
static void on_broadcast(struct ctx *x, struct conn *c, const unsigned char *p, size_t len,
                         uint64_t now)
{
    uint64_t stamp, step, seq;
    if (c->publisher || bc_parse(x, p, len, &stamp, &step, &seq) < 0) {
        if (x->mismatches < 5)
            fprintf(stderr, "wsload: conn %u: unexpected message (%zu bytes)%s\n", c->id, len,
                    c->publisher ? " on the publisher" : "");
        x->mismatches++;
        return;
    }
    if (seq != c->recv_seq) { /* skipped or repeated broadcasts */
        if (x->mismatches < 5)
            fprintf(stderr, "wsload: conn %u: broadcast %llu, expected %llu\n", c->id,
                    (unsigned long long)seq, (unsigned long long)c->recv_seq);
        x->mismatches++;
        if (seq > c->recv_seq)
            x->gaps += seq - c->recv_seq;
    }
    c->recv_seq = seq + 1;
    struct step *s = &x->steps[step];
    s->delivered++;
    if (step > 0 && !s->done)
        hist_add(&s->lat, now > stamp ? now - stamp : 0);
}

/* A chat delivery: verify it, time it against its stamp when sent in the window. */
static void on_chat(struct ctx *x, struct conn *c, const unsigned char *p, size_t len,
                    uint64_t now)
{
    uint64_t ts, seq;
    if (chat_parse(p, len, &ts, &seq) < 0) {
        if (x->mismatches < 5)
            fprintf(stderr, "wsload: conn %u: not a chat message (%zu bytes)\n", c->id, len);
        x->mismatches++;
        return;
    }
    if (x->phase == PH_MEASURE)
        x->msgs++; /* deliveries while the window runs (server CPU per delivery) */
    if (x->t_measure && ts >= x->t_measure && (!x->t_end || ts < x->t_end)) {
        x->chat_delivered_w++;
        hist_add(&x->lat, now > ts ? now - ts : 0);
    }
}

/* --hello: the echo of the connection's one message. */
static void on_hello(struct ctx *x, struct conn *c, const unsigned char *p, size_t len)
{
    unsigned char want[CHAT_MAX];
    size_t n = chat_build(want, c->id, 0, 0);
    if (c->hello != 1 || n != len || memcmp(want, p, len) != 0) {
        x->mismatches++;
        return;
    }
    c->hello = 2;
    x->hellos++;
}

/* A complete data message (inflated). */
static void on_message(struct ctx *x, struct conn *c, const unsigned char *p, size_t len,
                       uint64_t now)
{
    x->rx_msgs++;
    x->rx_payload += len;
    if (c->state != CS_OPEN)
        return;
    if (x->o.mode == MODE_IDLE) {
        if (x->o.hello)
            on_hello(x, c, p, len);
        return;
    }
    if (x->o.mode == MODE_CHAT)
        on_chat(x, c, p, len, now);
    else if (x->o.mode == MODE_BROADCAST)
        on_broadcast(x, c, p, len, now);
    else
        on_echo(x, c, p, len, now);
}

/* A whole message as it arrived: inflated first when compressed.  Returns 0, or -1
 * when the connection was released. */
static int on_payload(struct ctx *x, struct conn *c, int z, const unsigned char *p, size_t len,
                      uint64_t now)
{
    if (!z) {
        on_message(x, c, p, len, now);
        return 0;
    }
    x->rx_compressed++;
    x->zin.len = 0;
    if (pmd_inflate(c->z, x->zsh, p, len, 1, MAX_FRAME, &x->zin) < 0) {
        conn_fail(x, c, "bad compressed message");
        return -1;
    }
    on_message(x, c, x->zin.data ? x->zin.data : (const unsigned char *)"", x->zin.len, now);
    return 0;
}

/* One whole frame.  Returns 0, or -1 when the connection was released. */
static int on_frame(struct ctx *x, struct conn *c, int fin, int op, int rsv1,
                    const unsigned char *p, size_t len, uint64_t now)
{
    if (rsv1 && (op & 8)) {
        conn_fail(x, c, "RSV1 on a control frame");
        return -1;
    }
    switch (op) {
    case 9: /* ping */
        if (c->pings++ == 0)
            x->pinged++;
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
        if ((op == 0) != c->in_fragment || (rsv1 && (op == 0 || !c->z))) {
            conn_fail(x, c, rsv1 ? "unexpected RSV1" : "bad fragment sequence");
            return -1;
        }
        if (op != 0)
            c->in_z = rsv1;
        if (fin && !c->in_fragment)
            return on_payload(x, c, c->in_z, p, len, now);
        buf_reserve(&c->msg, len);
        memcpy(c->msg.p + c->msg.len, p, len);
        c->msg.len += len;
        c->in_fragment = !fin;
        if (fin) {
            size_t n = c->msg.len; /* the bytes stay put until the next reserve */
            c->msg.len = c->msg.off = 0;
            return on_payload(x, c, c->in_z, c->msg.p, n, now);
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
        if (h[1] & 0x80 || h[0] & (c->z ? 0x30 : 0x70)) {
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
        if ((h[0] & 0x0F) < 8)
            x->rx_wire += hl + len;
        if (c->state == CS_CLOSING) {
            if ((h[0] & 0x0F) == 8) { /* the server's answer to our close */
                conn_release(x, c);
                return -1;
            }
            continue;
        }
        if (on_frame(x, c, h[0] >> 7, h[0] & 0x0F, (h[0] >> 6) & 1, h + hl, (size_t)len, now) < 0)
            return -1;
    }
    return 0;
}

/* The server's Sec-WebSocket-Extensions answer in the response head (if any): a
 * permessage-deflate with the parameters RFC 7692 defines, and only when we offered
 * it.  Sets c->z; 0, or -1 for an answer we cannot accept. */
static int parse_extensions(struct ctx *x, struct conn *c, const char *head)
{
    static const char name[] = "\r\nSec-WebSocket-Extensions:";
    const char *a = strcasestr(head, name);
    if (!a)
        return 0;
    if (!x->o.deflate)
        return -1;
    a += strlen(name);
    char v[256];
    size_t n = strcspn(a, "\r\n");
    if (n >= sizeof(v))
        return -1;
    memcpy(v, a, n);
    v[n] = '\0';
    if (!x->z_answer[0]) { /* printed inside JSON quotes: no quote or backslash */
        snprintf(x->z_answer, sizeof(x->z_answer), "%s", v + strspn(v, " \t"));
        for (char *q = x->z_answer; *q; q++)
            if (*q == '"' || *q == '\\' || (unsigned char)*q < 0x20)
                *q = '\'';
    }
    /* our roles in pmd's terms: its "server" side is the one that compresses */
    pmd_params p = {.server_window_bits = 15, .client_window_bits = 15, .mem_level = 8,
                    .level = (uint8_t)x->o.deflate_level};
    int first = 1;
    char *save = NULL;
    for (char *t = strtok_r(v, ";", &save); t; t = strtok_r(NULL, ";", &save), first = 0) {
        t += strspn(t, " \t");
        size_t tl = strcspn(t, " \t=");
        char *val = strchr(t, '=');
        int bits = 0;
        if (val) {
            val++;
            val += strspn(val, " \t\"");
            bits = atoi(val);
        }
        if (first) {
            if (tl != 18 || strncasecmp(t, "permessage-deflate", 18) != 0 || val)
                return -1;
        } else if (tl == 26 && !strncasecmp(t, "server_no_context_takeover", tl) && !val) {
            p.client_no_context_takeover = 1; /* what the server sends */
        } else if (tl == 26 && !strncasecmp(t, "client_no_context_takeover", tl) && !val) {
            p.server_no_context_takeover = 1; /* what we send */
        } else if (tl == 22 && !strncasecmp(t, "server_max_window_bits", tl) && bits >= 8 &&
                   bits <= 15) {
            p.client_window_bits = (uint8_t)bits;
        } else if (tl == 22 && !strncasecmp(t, "client_max_window_bits", tl) && bits >= 8 &&
                   bits <= 15) {
            p.server_window_bits = (uint8_t)bits;
        } else {
            return -1;
        }
    }
    c->z = malloc(sizeof(*c->z));
    if (!c->z) {
        fprintf(stderr, "wsload: out of memory\n");
        exit(2);
    }
    pmd_conn_init(c->z, &p);
    x->z_conns++;
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
    if (parse_extensions(x, c, head) < 0) {
        conn_fail(x, c, "bad Sec-WebSocket-Extensions answer");
        return -1;
    }
    c->in.off += hlen;
    c->state = CS_OPEN;
    x->pending--;
    x->connected++;
    if (x->o.mode == MODE_IDLE && x->o.hello) {
        hello_send(x, c);
        conn_flush(x, c);
        return c->fd < 0 ? -1 : 0;
    }
    if (x->o.mode != MODE_ECHO)
        return 0;
    c->sent_ns = calloc((size_t)x->o.depth, sizeof(uint64_t));
    if (!c->sent_ns) {
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
            conn_fail(x, c, "not open within the connect timeout");
        else if (c->state == CS_NEW) {
            x->failed++;
            x->started++;
            c->state = CS_DONE;
        }
    }
}

/* --status FILE: replaced atomically with one word, for scripts that wait on a phase. */
static void write_status(struct ctx *x, int level, const char *word)
{
    if (!x->o.status || x->status_written >= level)
        return;
    x->status_written = level;
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", x->o.status);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "%s\n", word);
    fclose(f);
    rename(tmp, x->o.status);
}

/* utime + stime of pid in clock ticks (fields 14 and 15 of /proc/PID/stat, every
 * thread), or -1.  Field 2 may hold spaces: fields are counted from the last ')'. */
static long long proc_cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *r = strrchr(buf, ')');
    unsigned long long ut, st;
    if (!r || sscanf(r + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                     &st) != 2)
        return -1;
    return (long long)(ut + st);
}

static void begin_window(struct ctx *x, uint64_t now)
{
    x->phase = PH_MEASURE;
    if (x->o.cpu_pid > 0)
        x->cpu0 = proc_cpu_ticks(x->o.cpu_pid);
    getrusage(RUSAGE_SELF, &x->ru0);
    x->t_measure = now;
    x->t_deadline = now + (uint64_t)(x->o.seconds * NS_PER_S);
}

static void end_window(struct ctx *x, uint64_t now)
{
    if (x->o.cpu_pid > 0)
        x->cpu1 = proc_cpu_ticks(x->o.cpu_pid);
    getrusage(RUSAGE_SELF, &x->ru1);
    x->t_end = now;
}

static void begin_closing(struct ctx *x, uint64_t now)
{
    if (!x->t_end)
        end_window(x, now);
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

/* --signal-at: SIGHUP to --signal-pid once, that far into the measured window. */
static void maybe_signal(struct ctx *x, uint64_t now)
{
    if (x->o.signal_pid <= 0 || x->t_signal ||
        now < x->t_measure + (uint64_t)(x->o.signal_at * NS_PER_S))
        return;
    x->t_signal = now;
    if (kill(x->o.signal_pid, SIGHUP) < 0)
        fprintf(stderr, "wsload: kill -HUP %d: %s\n", (int)x->o.signal_pid, strerror(errno));
}

static double ru_cpu_s(const struct rusage *a, const struct rusage *b)
{
    return (double)(b->ru_utime.tv_sec - a->ru_utime.tv_sec + b->ru_stime.tv_sec -
                    a->ru_stime.tv_sec) +
           (double)(b->ru_utime.tv_usec - a->ru_utime.tv_usec + b->ru_stime.tv_usec -
                    a->ru_stime.tv_usec) /
               1e6;
}

/* --broadcast: step 0 is the warm-up at the first rate, steps 1..n are measured. */
static void start_step(struct ctx *x, int i, uint64_t now)
{
    struct step *s = &x->steps[i];
    s->rate = x->o.rates[i > 0 ? i - 1 : 0];
    s->t0 = now;
    x->step = i;
    getrusage(RUSAGE_SELF, &x->ru_step);
    if (i == 0) {
        x->phase = PH_WARMUP;
        x->t_deadline = now + (uint64_t)(x->o.warmup * NS_PER_S);
        return;
    }
    if (i == 1)
        begin_window(x, now);
    x->phase = PH_MEASURE;
    x->t_deadline = now + (uint64_t)(x->o.seconds * NS_PER_S);
}

static uint64_t step_p99(const struct step *s)
{
    return hist_quantile(&s->lat, 0.99, s->lost);
}

/* The step's drain is over: deliveries missing now count as lost (and as slower than
 * anything in its percentiles). */
static void finish_step(struct ctx *x)
{
    struct step *s = &x->steps[x->step];
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    s->expected = s->sent * (uint64_t)x->subs;
    s->lost = s->expected > s->delivered ? s->expected - s->delivered : 0;
    s->cpu_s = ru_cpu_s(&x->ru_step, &ru);
    s->done = 1;
}

static void tick_broadcast(struct ctx *x, uint64_t now)
{
    struct step *s = &x->steps[x->step];
    switch (x->phase) {
    case PH_WARMUP:
        bc_pump(x, now);
        if (now >= x->t_deadline)
            start_step(x, 1, now);
        return;
    case PH_MEASURE:
        bc_pump(x, now);
        if (now < x->t_deadline)
            return;
        s->t1 = now;
        x->phase = PH_DRAIN;
        x->t_deadline = now + STEP_DRAIN_NS;
        return;
    case PH_DRAIN:
        if (s->delivered < s->sent * (uint64_t)x->subs && now < x->t_deadline && x->live > 0)
            return;
        finish_step(x);
        if (s->sent > 0 && step_p99(s) <= (uint64_t)(x->o.p99_limit_ms * 1e6) &&
            x->step < x->o.nrates && x->live > 0)
            start_step(x, x->step + 1, now);
        else
            begin_closing(x, now);
        return;
    default:
        return;
    }
}

static uint64_t in_flight(const struct ctx *x)
{
    uint64_t n = 0;
    for (int i = 0; i < x->o.conns; i++)
        n += x->conns[i].sent_seq - x->conns[i].recv_seq;
    return n;
}

/* --chat: warm-up, the window, then up to STEP_DRAIN_NS for the window's deliveries. */
static void tick_chat(struct ctx *x, uint64_t now)
{
    switch (x->phase) {
    case PH_WARMUP: /* a message belongs to the window when its stamp falls in it: */
        if (now >= x->t_deadline || x->live == 0)
            begin_window(x, now_ns()); /* after every warm-up send */
        else
            chat_pump(x, now);
        return;
    case PH_MEASURE:
        chat_pump(x, now);
        if (now < x->t_deadline && x->live > 0)
            return;
        end_window(x, now_ns()); /* after every window send */
        x->chat_expected = x->chat_sent_w * (uint64_t)x->subs;
        x->phase = PH_DRAIN;
        x->t_deadline = now + STEP_DRAIN_NS;
        return;
    case PH_DRAIN:
        if (x->chat_delivered_w < x->chat_expected && now < x->t_deadline && x->live > 0)
            return;
        x->lost = x->chat_expected > x->chat_delivered_w ? x->chat_expected - x->chat_delivered_w
                                                         : 0;
        begin_closing(x, now);
        return;
    default:
        return;
    }
}

/* Echo, closed loop or --rate. */
static void tick_echo(struct ctx *x, uint64_t now)
{
    int open_loop = x->o.rate > 0;
    switch (x->phase) {
    case PH_WARMUP:
        if (open_loop)
            rate_pump(x, now);
        if (now >= x->t_deadline || x->live == 0)
            begin_window(x, now);
        return;
    case PH_MEASURE:
        if (open_loop)
            rate_pump(x, now);
        maybe_signal(x, now);
        if (now < x->t_deadline && x->live > 0)
            return;
        if (!open_loop) {
            begin_closing(x, now);
            return;
        }
        end_window(x, now); /* open loop: wait for the echoes still in flight */
        x->phase = PH_DRAIN;
        x->t_deadline = now + GRACE_NS;
        return;
    case PH_DRAIN:
        if (now < x->t_deadline && x->live > 0 && in_flight(x) > 0)
            return;
        x->lost = in_flight(x);
        begin_closing(x, now);
        return;
    default:
        return;
    }
}

static void on_all_connected(struct ctx *x, uint64_t now)
{
    x->t_connected = now;
    switch (x->o.mode) {
    case MODE_IDLE:
        x->phase = PH_HOLD;
        getrusage(RUSAGE_SELF, &x->ru0);
        x->t_measure = now;
        x->t_deadline = now + (uint64_t)(x->o.seconds * NS_PER_S);
        write_status(x, 1, "connected");
        return;
    case MODE_BROADCAST:
        if (x->conns[0].state != CS_OPEN) {
            fprintf(stderr, "wsload: the publisher did not connect\n");
            begin_closing(x, now);
            return;
        }
        x->subs = x->connected - 1;
        start_step(x, 0, now);
        write_status(x, 1, "connected"); /* the broadcasts begin (bench/ab.sh) */
        return;
    case MODE_CHAT:
        x->subs = x->connected;
        x->phase = PH_WARMUP;
        x->t_deadline = now + (uint64_t)(x->o.warmup * NS_PER_S);
        x->t_sched0 = now;
        write_status(x, 1, "connected");
        return;
    case MODE_ECHO:
        x->phase = PH_WARMUP;
        x->t_deadline = now + (uint64_t)(x->o.warmup * NS_PER_S);
        x->t_sched0 = now;
        for (int i = 0; i < x->o.conns; i++) {
            if (x->conns[i].state == CS_OPEN) {
                conn_refill(x, &x->conns[i], now);
                conn_flush(x, &x->conns[i]);
            }
        }
        return;
    }
}

static void tick(struct ctx *x, uint64_t now)
{
    if (stop_requested && x->phase < PH_CLOSING) {
        if (x->phase == PH_CONNECT)
            fail_unopened(x);
        begin_closing(x, now);
        return;
    }
    switch (x->phase) {
    case PH_CONNECT:
        if (now - x->t_begin >= (uint64_t)(x->o.connect_timeout * NS_PER_S))
            fail_unopened(x);
        else
            start_connects(x);
        if (x->started == x->o.conns && x->pending == 0)
            on_all_connected(x, now);
        return;
    case PH_HOLD:
        if (x->connected > 0 && (uint64_t)x->pinged + x->closed >= (uint64_t)x->connected &&
            (!x->o.hello || (uint64_t)x->hellos + x->closed >= (uint64_t)x->connected))
            write_status(x, 2, "pinged");
        if (now >= x->t_deadline || x->live == 0)
            begin_closing(x, now);
        return;
    case PH_CLOSING:
        if (x->live == 0 || now >= x->t_deadline)
            x->phase = PH_DONE;
        return;
    case PH_DONE:
        return;
    default:
        if (x->o.mode == MODE_BROADCAST)
            tick_broadcast(x, now);
        else if (x->o.mode == MODE_CHAT)
            tick_chat(x, now);
        else
            tick_echo(x, now);
        return;
    }
}

/* epoll_wait timeout: until the next scheduled send (rounded up to 1 ms), at most 10 ms. */
static int wait_ms(const struct ctx *x, uint64_t now)
{
    uint64_t due;
    if (x->phase != PH_WARMUP && x->phase != PH_MEASURE)
        return 10;
    if (x->o.mode == MODE_BROADCAST)
        due = bc_due_ns(x);
    else if (x->o.mode == MODE_CHAT)
        due = chat_due_ns(x, x->next_send);
    else if (x->o.rate > 0)
        due = rate_due_ns(x, x->next_send);
    else
        return 10;
    if (due <= now)
        return 0;
    uint64_t ms = (due - now + 999999) / 1000000;
    return ms < 10 ? (int)ms : 10;
}

static void run(struct ctx *x)
{
    struct epoll_event evs[MAX_EVENTS];
    x->t_begin = now_ns();
    getrusage(RUSAGE_SELF, &x->ru0);
    /* the hard stop: every phase's budget, plus a second of slack */
    int windows = x->o.mode == MODE_BROADCAST ? x->o.nrates : 1;
    double drains = x->o.mode == MODE_BROADCAST ? (double)x->o.nrates * STEP_DRAIN_NS / 1e9
                    : x->o.mode == MODE_CHAT    ? (double)STEP_DRAIN_NS / 1e9
                    : x->o.rate > 0             ? (double)GRACE_NS / 1e9
                                                : 0;
    uint64_t hard_stop =
        x->t_begin +
        (uint64_t)((x->o.connect_timeout + x->o.warmup + x->o.seconds * windows + drains + 1) *
                   NS_PER_S) +
        GRACE_NS;
    uint64_t now = x->t_begin;
    while (x->phase != PH_DONE && now < hard_stop) {
        tick(x, now);
        int n = epoll_wait(x->ep, evs, MAX_EVENTS, wait_ms(x, now));
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

static double secs_between(uint64_t a, uint64_t b)
{
    return b > a ? (double)(b - a) / 1e9 : 0;
}

/* What went over the wire (JSON members, after a comma, or key=value pairs). */
static void report_wire(const struct ctx *x)
{
    printf(x->o.json ? ",\"deflate_conns\":%d,\"extension\":\"%s\",\"tx_msgs\":%llu,"
                       "\"tx_wire_bytes\":%llu,\"tx_payload_bytes\":%llu,\"rx_msgs\":%llu,"
                       "\"rx_compressed\":%llu,\"rx_wire_bytes\":%llu,\"rx_payload_bytes\":%llu"
                     : " deflate_conns=%d extension=\"%s\" tx_msgs=%llu tx_wire_bytes=%llu "
                       "tx_payload_bytes=%llu rx_msgs=%llu rx_compressed=%llu rx_wire_bytes=%llu "
                       "rx_payload_bytes=%llu",
           x->z_conns, x->z_answer, (unsigned long long)x->tx_msgs, (unsigned long long)x->tx_wire,
           (unsigned long long)x->tx_payload, (unsigned long long)x->rx_msgs,
           (unsigned long long)x->rx_compressed, (unsigned long long)x->rx_wire,
           (unsigned long long)x->rx_payload);
}

/* --cpu-pid's CPU seconds over the window, or -1. */
static double window_cpu_s(const struct ctx *x)
{
    if (x->o.cpu_pid <= 0 || x->cpu0 < 0 || x->cpu1 < x->cpu0 || !x->t_end)
        return -1;
    return (double)(x->cpu1 - x->cpu0) / (double)sysconf(_SC_CLK_TCK);
}

static int report_chat(struct ctx *x)
{
    double user = tv_s(x->ru0.ru_utime, x->ru1.ru_utime);
    double sys = tv_s(x->ru0.ru_stime, x->ru1.ru_stime);
    double secs = secs_between(x->t_measure, x->t_end);
    unsigned long long errors = x->closed + (unsigned long long)x->failed;
    const struct hist *h = &x->lat;
    printf(x->o.json ? "{\"mode\":\"chat\",\"conns\":%d,\"members\":%d,\"rate\":%g,"
                       "\"secs\":%.3f,\"sent\":%llu,\"expected\":%llu,\"delivered\":%llu,"
                       "\"lost\":%llu,\"window_deliveries\":%llu,\"deliveries_per_s\":%.0f,"
                       "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
                       "\"mismatches\":%llu,\"errors\":%llu,\"closed\":%llu,"
                       "\"cpu_user_s\":%.2f,\"cpu_sys_s\":%.2f,\"server_cpu_s\":%.2f"
                     : "chat conns=%d members=%d rate=%g secs=%.3f sent=%llu expected=%llu "
                       "delivered=%llu lost=%llu window_deliveries=%llu deliveries/s=%.0f "
                       "p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mismatches=%llu "
                       "errors=%llu closed=%llu cpu_user_s=%.2f cpu_sys_s=%.2f server_cpu_s=%.2f",
           x->o.conns, x->subs, x->o.chat_rate, secs, (unsigned long long)x->chat_sent_w,
           (unsigned long long)x->chat_expected, (unsigned long long)x->chat_delivered_w,
           (unsigned long long)x->lost, (unsigned long long)x->msgs,
           secs > 0 ? (double)x->msgs / secs : 0, hist_quantile(h, 0.5, x->lost) / 1e3,
           hist_quantile(h, 0.99, x->lost) / 1e3, hist_quantile(h, 0.999, x->lost) / 1e3,
           (double)h->max / 1e3, (unsigned long long)x->mismatches, errors,
           (unsigned long long)x->closed, user, sys, window_cpu_s(x));
    report_wire(x);
    printf(x->o.json ? "}\n" : "\n");
    return x->mismatches == 0 && errors == 0 && x->chat_delivered_w > 0 && x->lost == 0 ? 0 : 1;
}

static int report_idle(struct ctx *x)
{
    double user = tv_s(x->ru0.ru_utime, x->ru1.ru_utime);
    double sys = tv_s(x->ru0.ru_stime, x->ru1.ru_stime);
    double cs = secs_between(x->t_begin, x->t_connected);
    double rate = cs > 0 ? x->connected / cs : 0;
    if (x->o.json)
        printf("{\"connected\":%d,\"failed\":%d,\"connect_s\":%.3f,\"conns_per_s\":%.0f,"
               "\"errors\":%llu,\"closed\":%llu,\"pinged\":%d,\"t_begin_ns\":%llu,"
               "\"t_connected_ns\":%llu,\"cpu_user_s\":%.2f,\"cpu_sys_s\":%.2f,\"hellos\":%d",
               x->connected, x->failed, cs, rate, (unsigned long long)x->closed,
               (unsigned long long)x->closed, x->pinged, (unsigned long long)x->t_begin,
               (unsigned long long)x->t_connected, user, sys, x->hellos);
    else
        printf("connected=%d failed=%d connect_s=%.3f conns/s=%.0f errors=%llu pinged=%d "
               "cpu_user_s=%.2f cpu_sys_s=%.2f hellos=%d",
               x->connected, x->failed, cs, rate, (unsigned long long)x->closed, x->pinged, user,
               sys, x->hellos);
    report_wire(x);
    printf(x->o.json ? "}\n" : "\n");
    return x->failed == 0 && x->closed == 0 && x->mismatches == 0 &&
                   (!x->o.hello || x->hellos == x->connected)
               ? 0
               : 1;
}

static int cmp_double(const void *a, const void *b)
{
    double u = *(const double *)a, v = *(const double *)b;
    return (u > v) - (u < v);
}

/* --rate: the second the signal went out, and the p99 of the other seconds (max, median). */
static void timeline_summary(const struct ctx *x, int *sig_sec, double *other_max,
                             double *other_median)
{
    double p99s[MAX_TIMELINE];
    int n = 0;
    *sig_sec = x->t_signal ? (int)((x->t_signal - x->t_measure) / NS_PER_S) : -1;
    *other_max = *other_median = 0;
    for (int i = 0; i < x->nsecs; i++) {
        if (i == *sig_sec || x->timeline[i].count == 0)
            continue;
        p99s[n++] = q_us(&x->timeline[i], 0.99);
        if (p99s[n - 1] > *other_max)
            *other_max = p99s[n - 1];
    }
    if (n > 0) {
        qsort(p99s, (size_t)n, sizeof(p99s[0]), cmp_double);
        *other_median = p99s[n / 2];
    }
}

static void report_timeline(const struct ctx *x)
{
    int sig;
    double omax, omed;
    timeline_summary(x, &sig, &omax, &omed);
    double sig_p99 = sig >= 0 && sig < x->nsecs ? q_us(&x->timeline[sig], 0.99) : 0;
    if (!x->o.json) {
        for (int i = 0; i < x->nsecs; i++)
            printf("second=%d sent_then=%llu p50_us=%.1f p99_us=%.1f max_us=%.1f%s\n", i,
                   (unsigned long long)x->timeline[i].count, q_us(&x->timeline[i], 0.5),
                   q_us(&x->timeline[i], 0.99), (double)x->timeline[i].max / 1e3,
                   i == sig ? " signal" : "");
        printf("signal_second=%d signal_p99_us=%.1f other_p99_max_us=%.1f "
               "other_p99_median_us=%.1f\n",
               sig, sig_p99, omax, omed);
        return;
    }
    printf(",\"rate\":%g,\"lost\":%llu,\"skipped\":%llu,\"signal_second\":%d,"
           "\"signal_p99_us\":%.1f,\"other_p99_max_us\":%.1f,\"other_p99_median_us\":%.1f,"
           "\"timeline\":[",
           x->o.rate, (unsigned long long)x->lost, (unsigned long long)x->skipped, sig, sig_p99,
           omax, omed);
    for (int i = 0; i < x->nsecs; i++)
        printf("%s{\"s\":%d,\"n\":%llu,\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f}",
               i ? "," : "", i, (unsigned long long)x->timeline[i].count,
               q_us(&x->timeline[i], 0.5), q_us(&x->timeline[i], 0.99),
               (double)x->timeline[i].max / 1e3);
    printf("]");
}

static int report_echo(struct ctx *x)
{
    double user = tv_s(x->ru0.ru_utime, x->ru1.ru_utime);
    double sys = tv_s(x->ru0.ru_stime, x->ru1.ru_stime);
    double secs = secs_between(x->t_measure, x->t_end);
    double rate = secs > 0 ? (double)x->msgs / secs : 0;
    unsigned long long errors = x->closed + (unsigned long long)x->failed;
    const struct hist *h = &x->lat;
    printf(x->o.json ? "{\"msgs_per_s\":%.0f,\"conns\":%d,\"depth\":%d,\"size\":%zu,"
                       "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
                       "\"mismatches\":%llu,\"errors\":%llu,\"closed\":%llu,\"cpu_user_s\":%.2f,"
                       "\"cpu_sys_s\":%.2f"
                     : "msgs/s=%.0f conns=%d depth=%d size=%zu p50_us=%.1f p99_us=%.1f "
                       "p999_us=%.1f max_us=%.1f mismatches=%llu errors=%llu closed=%llu "
                       "cpu_user_s=%.2f cpu_sys_s=%.2f",
           rate, x->o.conns, x->o.depth, x->o.size, q_us(h, 0.5), q_us(h, 0.99), q_us(h, 0.999),
           (double)h->max / 1e3, (unsigned long long)x->mismatches, errors,
           (unsigned long long)x->closed, user, sys);
    if (x->o.rate > 0 && !x->o.json)
        printf(" rate=%g lost=%llu skipped=%llu\n", x->o.rate, (unsigned long long)x->lost,
               (unsigned long long)x->skipped);
    if (x->o.rate > 0)
        report_timeline(x);
    printf(x->o.json ? "}\n" : x->o.rate > 0 ? "" : "\n");
    return x->mismatches == 0 && errors == 0 && x->msgs > 0 && x->lost == 0 && x->skipped == 0 ? 0
                                                                                               : 1;
}

/* The highest rate of the ramp whose p99 stayed within --p99-limit (0 if none did);
 * *capped = every step passed, so the real limit is higher. */
static double max_rate_ok(const struct ctx *x, int *capped)
{
    double best = 0;
    *capped = 0;
    for (int i = 1; i <= x->o.nrates && x->steps[i].done; i++) {
        if (x->steps[i].sent == 0 || step_p99(&x->steps[i]) > (uint64_t)(x->o.p99_limit_ms * 1e6))
            return best;
        best = x->steps[i].rate;
        *capped = i == x->o.nrates;
    }
    return best;
}

static void report_step(const struct ctx *x, const struct step *s)
{
    double q[4] = {hist_quantile(&s->lat, 0.5, s->lost) / 1e3, step_p99(s) / 1e3,
                   hist_quantile(&s->lat, 0.999, s->lost) / 1e3, (double)s->lat.max / 1e3};
    double secs = secs_between(s->t0, s->t1);
    printf(x->o.json ? "{\"rate\":%g,\"secs\":%.2f,\"sent\":%llu,\"expected\":%llu,"
                       "\"delivered\":%llu,\"lost\":%llu,\"deliveries_per_s\":%.0f,"
                       "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
                       "\"cpu_s\":%.2f}"
                     : "step rate=%g secs=%.2f sent=%llu expected=%llu delivered=%llu lost=%llu "
                       "deliveries/s=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f "
                       "cpu_s=%.2f\n",
           s->rate, secs, (unsigned long long)s->sent, (unsigned long long)s->expected,
           (unsigned long long)s->delivered, (unsigned long long)s->lost,
           secs > 0 ? (double)(s->delivered > s->expected ? s->expected : s->delivered) / secs : 0,
           q[0], q[1], q[2], q[3], s->cpu_s);
}

static int report_broadcast(struct ctx *x)
{
    int capped;
    double best = max_rate_ok(x, &capped);
    const struct step *s1 = &x->steps[1];
    unsigned long long errors = x->closed + (unsigned long long)x->failed;
    printf(x->o.json ? "{\"mode\":\"broadcast\",\"subscribers\":%d,\"size\":%zu,"
                       "\"p99_limit_ms\":%g,\"rate\":%g,\"p50_us\":%.1f,\"p99_us\":%.1f,"
                       "\"p999_us\":%.1f,\"max_us\":%.1f,\"lost\":%llu,\"max_rate_ok\":%g,"
                       "\"ramp_capped\":%s,\"mismatches\":%llu,\"gaps\":%llu,\"errors\":%llu,"
                       "\"closed\":%llu,\"steps\":["
                     : "broadcast subscribers=%d size=%zu p99_limit_ms=%g rate=%g p50_us=%.1f "
                       "p99_us=%.1f p999_us=%.1f max_us=%.1f lost=%llu max_rate_ok=%g "
                       "ramp_capped=%s mismatches=%llu gaps=%llu errors=%llu closed=%llu\n",
           x->subs, x->o.size, x->o.p99_limit_ms, x->o.rates[0],
           hist_quantile(&s1->lat, 0.5, s1->lost) / 1e3, step_p99(s1) / 1e3,
           hist_quantile(&s1->lat, 0.999, s1->lost) / 1e3, (double)s1->lat.max / 1e3,
           (unsigned long long)s1->lost, best, capped ? "true" : "false",
           (unsigned long long)x->mismatches, (unsigned long long)x->gaps, errors,
           (unsigned long long)x->closed);
    for (int i = 1; i <= x->o.nrates && x->steps[i].done; i++) {
        if (x->o.json && i > 1)
            printf(",");
        report_step(x, &x->steps[i]);
    }
    if (x->o.json)
        printf("]}\n");
    return x->mismatches == 0 && errors == 0 && s1->done && s1->delivered > 0 && s1->lost == 0 ? 0
                                                                                               : 1;
}

static int report(struct ctx *x)
{
    switch (x->o.mode) {
    case MODE_IDLE:
        return report_idle(x);
    case MODE_BROADCAST:
        return report_broadcast(x);
    case MODE_CHAT:
        return report_chat(x);
    default:
        return report_echo(x);
    }
}

/* ---------- command line ---------- */

static void usage(void)
{
    fprintf(
        stderr,
        "usage: wsload -u ws://127.0.0.1:PORT/path [-c CONNS] [-d DEPTH] [-s SIZE] [-t SECONDS]\n"
        "              [-w WARMUP_SECONDS] [--src 127.0.0.2,127.0.0.3,...] [--json]\n"
        "              [--connect-timeout SECONDS]\n"
        "              [--rate MSGS_PER_S [--signal-at SECONDS --signal-pid PID]]\n"
        "              [--broadcast RATE[,RATE...] [--p99-limit MS] [--pub-port P]\n"
        "                [--sub-ports P,P,...]]\n"
        "              [--idle [--hello]] [--status FILE]\n"
        "              [--chat MSGS_PER_S] [--cpu-pid PID]\n"
        "              [--deflate] [--deflate-offer OFFER] [--deflate-level 0..9]\n");
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
    snprintf(o->sub_path, sizeof(o->sub_path), "%s%s", o->path,
             strchr(o->path, '?') ? "&sub" : "?sub");
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

static int parse_rates(struct opts *o, const char *list)
{
    char tmp[1024];
    snprintf(tmp, sizeof(tmp), "%s", list);
    char *save = NULL;
    for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        double r = atof(t);
        if (o->nrates >= MAX_STEPS || !(r > 0 && r <= 100000))
            return -1;
        o->rates[o->nrates++] = r;
    }
    return o->nrates > 0 ? 0 : -1;
}

static void bad(const char *what)
{
    fprintf(stderr, "wsload: %s\n", what);
    exit(2);
}

/* Checks the combination of options once all are read. */
static void check_opts(struct opts *o)
{
    if (o->conns < 1 || o->depth < 1 || o->depth > MAX_DEPTH || o->size < 1 || o->size > MAX_SIZE ||
        !(o->seconds > 0 && o->seconds <= 86400) || !(o->warmup >= 0 && o->warmup <= 3600) ||
        !(o->connect_timeout > 0 && o->connect_timeout <= 3600) ||
        !(o->p99_limit_ms > 0 && o->p99_limit_ms <= 10000))
        usage();
    if (o->mode == MODE_BROADCAST && (o->conns < 2 || o->size < BC_HEAD || o->rate > 0))
        bad("--broadcast needs -c ≥ 2 (a publisher and subscribers), -s ≥ 32, no --rate");
    if (o->mode == MODE_IDLE && o->rate > 0)
        bad("--idle and --rate do not mix");
    if (o->mode == MODE_CHAT && (o->rate > 0 || !(o->chat_rate > 0 && o->chat_rate <= 1e6)))
        bad("--chat wants (0, 1e6] messages/s and no --rate");
    if (o->hello && o->mode != MODE_IDLE)
        bad("--hello goes with --idle");
    if (o->deflate_level < 0 || o->deflate_level > 9)
        bad("--deflate-level 0..9");
    if (o->rate > 0 && !o->depth_set)
        o->depth = RATE_DEPTH;
    if (o->rate > 0 && (o->seconds > MAX_TIMELINE || o->rate > 1e6))
        bad("--rate: at most 1e6 messages/s per connection and -t 600");
    if ((o->signal_pid > 0) != (o->signal_at >= 0) ||
        (o->signal_pid > 0 && (o->rate <= 0 || o->signal_at >= o->seconds)))
        bad("--signal-at S and --signal-pid PID go together, with --rate, S < -t");
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)o->conns + 16 > rl.rlim_cur) {
        fprintf(stderr,
                "wsload: -c %d needs more than the %llu open files allowed; "
                "run several wsload processes\n",
                o->conns, (unsigned long long)rl.rlim_cur);
        exit(2);
    }
}

static void parse_args(struct opts *o, int argc, char **argv)
{
    static const struct option longs[] = {{"src", required_argument, NULL, 'S'},
                                          {"idle", no_argument, NULL, 'I'},
                                          {"json", no_argument, NULL, 'J'},
                                          {"rate", required_argument, NULL, 'R'},
                                          {"broadcast", required_argument, NULL, 'B'},
                                          {"p99-limit", required_argument, NULL, 'P'},
                                          {"connect-timeout", required_argument, NULL, 'C'},
                                          {"status", required_argument, NULL, 'F'},
                                          {"signal-at", required_argument, NULL, 'A'},
                                          {"signal-pid", required_argument, NULL, 'K'},
                                          {"pub-port", required_argument, NULL, 'G'},
                                          {"sub-ports", required_argument, NULL, 'H'},
                                          {"chat", required_argument, NULL, 'Q'},
                                          {"hello", no_argument, NULL, 'E'},
                                          {"cpu-pid", required_argument, NULL, 'U'},
                                          {"deflate", no_argument, NULL, 'D'},
                                          {"deflate-offer", required_argument, NULL, 'O'},
                                          {"deflate-level", required_argument, NULL, 'L'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    int have_url = 0, opt;
    o->conns = 1;
    o->depth = 1;
    o->size = 32;
    o->seconds = 5;
    o->warmup = 1;
    o->connect_timeout = 10;
    o->p99_limit_ms = 100;
    o->signal_at = -1;
    o->offer = "permessage-deflate; client_max_window_bits";
    o->deflate_level = 6; /* zlib's default, which browsers use too */
    while ((opt = getopt_long(argc, argv, "u:c:d:s:t:w:h", longs, NULL)) != -1) {
        switch (opt) {
        case 'u':
            if (parse_url(o, optarg) < 0)
                bad("bad url (want ws://IPv4:PORT/path)");
            have_url = 1;
            break;
        case 'c':
            o->conns = atoi(optarg);
            break;
        case 'd':
            o->depth = atoi(optarg);
            o->depth_set = 1;
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
            if (parse_src(o, optarg) < 0)
                bad("bad --src (at most 64 IPv4 addresses)");
            break;
        case 'Q':
            if (o->mode != MODE_ECHO)
                bad("--chat, --idle or --broadcast: one of them");
            o->mode = MODE_CHAT;
            o->chat_rate = atof(optarg);
            break;
        case 'E':
            o->hello = 1;
            break;
        case 'U':
            o->cpu_pid = (pid_t)atoi(optarg);
            break;
        case 'D':
            o->deflate = 1;
            break;
        case 'O':
            if (strlen(optarg) > 200 || strpbrk(optarg, "\r\n"))
                bad("--deflate-offer: one header value, at most 200 bytes");
            o->offer = optarg;
            o->deflate = 1;
            break;
        case 'L':
            o->deflate_level = atoi(optarg);
            break;
        case 'I':
            if (o->mode == MODE_BROADCAST || o->mode == MODE_CHAT)
                bad("--idle or --broadcast, not both");
            o->mode = MODE_IDLE;
            break;
        case 'J':
            o->json = 1;
            break;
        case 'R':
            o->rate = atof(optarg);
            if (!(o->rate > 0))
                bad("--rate wants a positive number of messages/s per connection");
            break;
        case 'B':
            if (o->mode == MODE_IDLE || o->mode == MODE_CHAT || parse_rates(o, optarg) < 0)
                bad("bad --broadcast (1..16 rates in (0, 100000] messages/s; not with --idle)");
            o->mode = MODE_BROADCAST;
            break;
        case 'P':
            o->p99_limit_ms = atof(optarg);
            break;
        case 'G':
            o->pub_port = (uint16_t)atoi(optarg);
            if (!o->pub_port)
                bad("bad --pub-port");
            break;
        case 'H':
            for (char *t = strtok(optarg, ","); t && o->nsub_ports < MAX_SRC; t = strtok(NULL, ","))
                if (!(o->sub_ports[o->nsub_ports++] = (uint16_t)atoi(t)))
                    bad("bad --sub-ports");
            break;
        case 'C':
            o->connect_timeout = atof(optarg);
            break;
        case 'F':
            o->status = optarg;
            break;
        case 'A':
            o->signal_at = atof(optarg);
            break;
        case 'K':
            o->signal_pid = (pid_t)atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (!have_url || optind != argc)
        usage();
    check_opts(o);
}

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

int main(int argc, char **argv)
{
    static struct ctx x;
    parse_args(&x.o, argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (getrandom(&x.rng, sizeof(x.rng), 0) != sizeof(x.rng) || x.rng == 0)
        x.rng = now_ns() | 1;
    x.ep = epoll_create1(EPOLL_CLOEXEC);
    x.conns = calloc((size_t)x.o.conns, sizeof(*x.conns));
    x.pattern = malloc(x.o.size + 26);
    x.scratch = malloc(x.o.size);
    x.zsh = pmd_shared_new();
    if (x.o.rate > 0) {
        x.nsecs = (int)x.o.seconds + (x.o.seconds > (int)x.o.seconds);
        x.timeline = calloc((size_t)x.nsecs, sizeof(*x.timeline));
    }
    if (x.ep < 0 || !x.conns || !x.pattern || !x.scratch || !x.zsh ||
        (x.o.rate > 0 && !x.timeline)) {
        fprintf(stderr, "wsload: start-up failed\n");
        return 2;
    }
    for (size_t i = 0; i < x.o.size + 26; i++)
        x.pattern[i] = (unsigned char)('A' + i % 26);
    for (int i = 0; i < x.o.conns; i++) {
        x.conns[i].fd = -1;
        x.conns[i].id = (uint32_t)i;
    }
    x.conns[0].publisher = x.o.mode == MODE_BROADCAST;
    run(&x);
    int rc = report(&x);
    free(x.conns);
    free(x.pattern);
    free(x.scratch);
    free(x.zin.data);
    free(x.zout.data);
    pmd_shared_free(x.zsh);
    free(x.timeline);
    close(x.ep);
    return rc;
}
