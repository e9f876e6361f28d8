/* wire.h — the byte layout of messages between moongate processes.
 *
 * peer.c (the workers of a node) and cluster.c (nodes, over RabbitMQ)
 * both send a type byte followed by fixed-size fields in host order and
 * strings as a 16-bit length and the bytes.  Every process runs the same
 * binary (a cluster's nodes the same code on the same architecture), so
 * nothing is swapped.  A reader never reads past the end: a short message
 * sets bad and reads as zeros. */
#ifndef MG_WIRE_H
#define MG_WIRE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct wire_rd {
    const unsigned char *p, *end;
    int bad;
} wire_rd;

static inline void wire_take(wire_rd *r, void *out, size_t n)
{
    if ((size_t)(r->end - r->p) < n) {
        r->bad = 1;
        memset(out, 0, n);
        return;
    }
    memcpy(out, r->p, n);
    r->p += n;
}

/* A string, copied out NUL-terminated into buf (cap bytes) or, when longer,
 * a malloc'd block left in *heap for the caller to free.  NULL if short. */
static inline char *wire_take_str(wire_rd *r, char *buf, size_t cap, char **heap)
{
    uint16_t n;
    wire_take(r, &n, sizeof(n));
    *heap = NULL;
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return NULL;
    }
    char *s = buf;
    if ((size_t)n + 1 > cap && !(s = *heap = malloc((size_t)n + 1))) {
        r->bad = 1;
        return NULL;
    }
    memcpy(s, r->p, n);
    s[n] = 0;
    r->p += n;
    return s;
}

/* Write s (n ≤ 65535 bytes) at h + at; returns the offset after it. */
static inline size_t wire_put_str(unsigned char *h, size_t at, const char *s, size_t n)
{
    uint16_t len = (uint16_t)n;
    memcpy(h + at, &len, 2);
    memcpy(h + at + 2, s, n);
    return at + 2 + n;
}

#endif
