/* wsrx.c — reading client WebSocket frames from a byte stream (wsrx.h). */
#include "wsrx.h"

#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define OP_CONT 0x0
#define OP_TEXT 0x1
#define OP_BINARY 0x2
#define OP_CLOSE 0x8
#define OP_PING 0x9
#define OP_PONG 0xA

struct wsrx {
    uint64_t left;      /* payload bytes of the current data frame still to come */
    uint8_t mask[4];    /* its masking key ... */
    uint8_t moff;       /* ... and the key index of its next byte */
    uint8_t in_frame;   /* 1: inside that frame's payload */
    uint8_t fin;        /* that frame ends its message */
    uint8_t msg_active; /* a message has begun and not ended */
    uint8_t msg_binary; /* its kind */
    uint8_t carry_len;  /* bytes in carry */
    uint8_t u8;         /* a text message's UTF-8 so far (utf8_step) */
    uint8_t msg_z;      /* it is compressed (RSV1 on its first frame) */
    uint64_t zlen;      /* compressed bytes of it so far */
    unsigned char *msg; /* the message so far, unmasked */
    size_t msg_len, msg_cap;
    unsigned char carry[WSRX_CARRY_MAX]; /* an incomplete header or control frame */
};

#if defined(__x86_64__)
/* 32 bytes at a time; returns how many it did (a multiple of 32). */
__attribute__((target("avx2"))) static size_t wsrx_unmask_avx2(unsigned char *p, size_t n,
                                                               uint32_t k4)
{
    __m256i k = _mm256_set1_epi32((int)k4);
    size_t done = 0;
    for (; done + 32 <= n; done += 32) {
        __m256i *q = (__m256i *)(void *)(p + done);
        _mm256_storeu_si256(q, _mm256_xor_si256(_mm256_loadu_si256(q), k));
    }
    return done;
}
#endif

/* Unmask n bytes in place; off is the key index of p[0].  With the key
 * rotated to start at off (byte i of it, in memory order, is
 * mask[(off + i) & 3]): 32 bytes at a time where AVX2 is there (a big
 * message spends much of its time here), then sixteen (SSE2, which every
 * x86-64 has), then eight, then one.  utf8_valid reads the result back at
 * once, sixteen bytes at a time: stores of the same width let the CPU
 * forward them to those loads (a 16-byte load over two 8-byte stores
 * stalls until they reach the cache). */
static void wsrx_unmask(unsigned char *p, size_t n, const uint8_t mask[4], unsigned off)
{
    uint32_t k4;
    memcpy(&k4, mask, 4);
    unsigned sh = (off & 3) * 8; /* rotate: the key's first byte in memory is mask[off] */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (sh)
        k4 = k4 >> sh | k4 << (32 - sh);
#else
    if (sh)
        k4 = k4 << sh | k4 >> (32 - sh);
#endif
#if defined(__x86_64__)
    if (n >= 64 && __builtin_cpu_supports("avx2")) {
        size_t done = wsrx_unmask_avx2(p, n, k4);
        p += done;
        n -= done; /* a multiple of 4: the key phase is unchanged */
    }
    __m128i k16 = _mm_set1_epi32((int)k4);
    for (; n >= 16; p += 16, n -= 16) {
        __m128i *q = (__m128i *)(void *)p;
        _mm_storeu_si128(q, _mm_xor_si128(_mm_loadu_si128(q), k16));
    }
#endif
    uint64_t k8 = (uint64_t)k4 << 32 | k4;
    uint8_t k[8];
    memcpy(k, &k8, 8);
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        v ^= k8;
        memcpy(p, &v, 8);
    }
    for (size_t i = 0; i < n; i++)
        p[i] ^= k[i];
}

static wsrx *wsrx_get(wsrx **st)
{
    if (!*st)
        *st = calloc(1, sizeof(**st));
    return *st;
}

int wsrx_buf_append(unsigned char **buf, size_t *len, size_t *cap, const unsigned char *p, size_t n)
{
    if (n == 0) /* an empty fragment, or none of the payload in this read */
        return 0;
    if (*len + n > *cap) {
        size_t ncap = *cap ? *cap : 4096;
        while (ncap < *len + n)
            ncap *= 2;
        unsigned char *m = realloc(*buf, ncap);
        if (!m)
            return -1;
        *buf = m;
        *cap = ncap;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    return 0;
}

static int wsrx_append(wsrx *s, const unsigned char *p, size_t n)
{
    return wsrx_buf_append(&s->msg, &s->msg_len, &s->msg_cap, p, n);
}

/* The reassembled message is complete: hand it over and start afresh. */
static int wsrx_deliver(wsrx *s, const wsrx_sink *sink, void *arg)
{
    s->msg_active = 0;
    int rc =
        sink->message(arg, s->msg ? s->msg : (const unsigned char *)"", s->msg_len, s->msg_binary);
    s->msg_len = 0;
    return rc;
}

/* Checks that need only the first two bytes of a header; NULL if fine. */
static const char *wsrx_check(unsigned b0, unsigned b1, int msg_active, unsigned flags)
{
    unsigned op = b0 & 0x0f;
    /* RSV1 is permessage-deflate's, on the first frame of a data message
     * only (RFC 7692 6.1). */
    if ((b0 & 0x70) && ((b0 & 0x70) != 0x40 || !(flags & WSRX_DEFLATE) || op == OP_CONT ||
                        (op & 0x8)))
        return "reserved bits set";
    if (!(b1 & 0x80))
        return "unmasked frame";
    if (op & 0x8) {
        if (op != OP_CLOSE && op != OP_PING && op != OP_PONG)
            return "unknown opcode";
        if (!(b0 & 0x80))
            return "fragmented control frame";
        if ((b1 & 0x7f) > 125)
            return "control frame too long";
        return NULL;
    }
    if (op > OP_BINARY)
        return "unknown opcode";
    if (op == OP_CONT && !msg_active)
        return "continuation frame without a message";
    if (op != OP_CONT && msg_active)
        return "new message inside a fragmented one";
    return NULL;
}

/* Header length for the 7-bit length field, mask included. */
static size_t wsrx_header_len(unsigned b1)
{
    unsigned l7 = b1 & 0x7f;
    return 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + 4;
}

static uint64_t wsrx_payload_len(const unsigned char *p)
{
    unsigned l7 = p[1] & 0x7f;
    if (l7 < 126)
        return l7;
    if (l7 == 126)
        return ((uint64_t)p[2] << 8) | p[3];
    uint64_t n = 0;
    for (int i = 2; i < 10; i++)
        n = (n << 8) | p[i];
    return n;
}

/* Continue a data frame whose payload began in an earlier read.  A text
 * message's bytes are checked as they come, so invalid UTF-8 fails the
 * connection in the read that brings it, not at the end of the message.
 * Returns the bytes consumed, or -1 (OOM) / -2 (sink stop) / -3 (invalid
 * UTF-8). */
static long wsrx_resume(wsrx *s, unsigned char *p, size_t avail, const wsrx_sink *sink, void *arg)
{
    size_t n = avail < s->left ? avail : (size_t)s->left;
    wsrx_unmask(p, n, s->mask, s->moff);
    if (s->msg_z) { /* compressed: each piece goes on as it comes */
        s->moff = (uint8_t)((s->moff + n) & 3);
        s->left -= n;
        s->zlen += n;
        int final = s->left == 0 && s->fin;
        if (s->left == 0)
            s->in_frame = 0;
        if (final)
            s->msg_active = 0;
        if ((n || final) && sink->zpiece(arg, p, n, final, s->msg_binary))
            return -2;
        return (long)n;
    }
    if (!s->msg_binary && !utf8_step(&s->u8, p, n))
        return -3;
    if (wsrx_append(s, p, n) != 0)
        return -1;
    s->moff = (uint8_t)((s->moff + n) & 3);
    s->left -= n;
    if (s->left == 0) {
        s->in_frame = 0;
        if (s->fin && !s->msg_binary && s->u8 != 0)
            return -3; /* the message ends inside a character */
        if (s->fin && wsrx_deliver(s, sink, arg))
            return -2;
    }
    return (long)n;
}



static int wsrx_fail(int *code, const char **reason, int c, const char *r)
{
    *code = c;
    *reason = r;
    return WSRX_ERROR;
}

/* What a failure of wsrx_resume (-1 or -3) means. */
static int wsrx_resume_fail(long n, int *code, const char **reason)
{
    if (n == -3)
        return wsrx_fail(code, reason, 1007, "invalid UTF-8");
    return wsrx_fail(code, reason, 1011, "out of memory");
}

/* Free the state when nothing is carried over. */
static void wsrx_settle(wsrx **st)
{
    wsrx *s = *st;
    if (s && !s->in_frame && !s->msg_active && !s->carry_len)
        wsrx_free(st);
}

/* The most compressed bytes a message of max_message bytes takes:
 * deflate's stored blocks add 5 bytes per 64 KiB, and a little more. */
static uint64_t wsrx_zmax(uint64_t max_message)
{
    return max_message > UINT64_MAX / 2 ? UINT64_MAX : max_message + (max_message >> 10) + 64;
}

int wsrx_feed(wsrx **st, unsigned char *buf, size_t len, uint64_t max_message, unsigned flags,
              const wsrx_sink *sink, void *arg, int *code, const char **reason)
{
    unsigned char *p = buf, *end = buf + len;
    int rc = WSRX_OK;

    if (*st)
        (*st)->carry_len = 0; /* buf starts with it (wsrx_unread) */
    if (*st && (*st)->in_frame) {
        long n = wsrx_resume(*st, p, len, sink, arg);
        if (n == -2)
            return WSRX_STOPPED;
        if (n < 0)
            return wsrx_resume_fail(n, code, reason);
        p += n;
    }
    while (p < end) {
        size_t avail = (size_t)(end - p);
        int active = *st ? (*st)->msg_active : 0;
        if (avail < 2)
            goto carry;
        const char *bad = wsrx_check(p[0], p[1], active, flags);
        if (bad)
            return wsrx_fail(code, reason, 1002, bad);
        size_t hl = wsrx_header_len(p[1]);
        if (avail < hl)
            goto carry;
        uint64_t plen = wsrx_payload_len(p);
        if (plen >> 63)
            return wsrx_fail(code, reason, 1002, "invalid frame length");
        unsigned op = p[0] & 0x0f, fin = p[0] >> 7;
        unsigned char *mask = p + hl - 4, *pay = p + hl;
        size_t have = avail - hl;

        if (op & 0x8) { /* control: whole, or carried until it is */
            if (have < plen)
                goto carry;
            wsrx_unmask(pay, (size_t)plen, mask, 0);
            p = pay + plen;
            if (sink->control(arg, (int)op, pay, (size_t)plen)) {
                rc = WSRX_STOPPED;
                break;
            }
            continue;
        }
        int z = active ? (*st)->msg_z : (p[0] & 0x40) != 0;
        uint64_t before = !active ? 0 : z ? (*st)->zlen : (*st)->msg_len;
        uint64_t limit = z ? wsrx_zmax(max_message) : max_message;
        if (plen > limit || before + plen > limit)
            return wsrx_fail(code, reason, 1009, "message too big");
        if (have >= plen && fin && !active && z) { /* a whole compressed message */
            wsrx_unmask(pay, (size_t)plen, mask, 0);
            p = pay + plen;
            if (sink->zpiece(arg, pay, (size_t)plen, 1, op == OP_BINARY)) {
                rc = WSRX_STOPPED;
                break;
            }
            continue;
        }
        if (have >= plen && fin && !active) { /* the common case: no copy */
            wsrx_unmask(pay, (size_t)plen, mask, 0);
            if (op == OP_TEXT && !utf8_valid(pay, (size_t)plen))
                return wsrx_fail(code, reason, 1007, "invalid UTF-8");
            p = pay + plen;
            if (sink->message(arg, pay, (size_t)plen, op == OP_BINARY)) {
                rc = WSRX_STOPPED;
                break;
            }
            continue;
        }
        wsrx *s = wsrx_get(st);
        if (!s)
            return wsrx_fail(code, reason, 1011, "out of memory");
        if (!active) {
            s->msg_active = 1;
            s->msg_binary = op == OP_BINARY;
            s->msg_len = 0;
            s->u8 = 0;
            s->msg_z = (uint8_t)z;
            s->zlen = 0;
        }
        memcpy(s->mask, mask, 4);
        s->moff = 0;
        s->left = plen;
        s->fin = (uint8_t)fin;
        s->in_frame = 1;
        long n = wsrx_resume(s, pay, have, sink, arg);
        if (n == -2) {
            rc = WSRX_STOPPED;
            break;
        }
        if (n < 0)
            return wsrx_resume_fail(n, code, reason);
        p = pay + n;
        continue;
    carry : {
        wsrx *cs = wsrx_get(st);
        if (!cs)
            return wsrx_fail(code, reason, 1011, "out of memory");
        memcpy(cs->carry, p, avail); /* avail < header + 125 here */
        cs->carry_len = (uint8_t)avail;
        return WSRX_OK;
    }
    }
    wsrx_settle(st);
    return rc;
}

size_t wsrx_unread(wsrx *st, unsigned char *buf)
{
    if (!st || !st->carry_len)
        return 0;
    memcpy(buf, st->carry, st->carry_len);
    return st->carry_len;
}

int wsrx_busy(const wsrx *st)
{
    return st && (st->in_frame || st->msg_active || st->carry_len);
}

void wsrx_free(wsrx **st)
{
    if (*st) {
        free((*st)->msg);
        free(*st);
        *st = NULL;
    }
}
