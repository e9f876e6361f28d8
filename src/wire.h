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

/* An outgoing message in three parts, written one after the other: the
 * type byte and fixed fields, then (if str is set) a string with its
 * 16-bit length, then the payload.  Senders write it straight into what
 * they send (a link's queue, an AMQP body), never into a buffer first. */
typedef struct wire_msg {
    const void *head; /* type byte and fixed fields */
    size_t head_len;
    const char *str; /* a name or topic (≤ 65535 bytes), or NULL */
    size_t str_len;
    const void *data; /* the payload, or NULL */
    size_t data_len;
} wire_msg;

static inline size_t wire_len(const wire_msg *m)
{
    return m->head_len + (m->str ? 2 + m->str_len : 0) + m->data_len;
}

static inline void wire_write(unsigned char *out, const wire_msg *m)
{
    memcpy(out, m->head, m->head_len);
    out += m->head_len;
    if (m->str) {
        uint16_t n = (uint16_t)m->str_len;
        memcpy(out, &n, 2);
        memcpy(out + 2, m->str, m->str_len);
        out += 2 + m->str_len;
    }
    if (m->data_len)
        memcpy(out, m->data, m->data_len);
}

/* A message's fixed fields for a claim (u64 id, i64 stamp) and a release
 * (u64 id), both followed by the name. */
typedef struct __attribute__((packed)) wire_claim {
    uint8_t type;
    uint64_t id;
    int64_t stamp;
} wire_claim;
typedef struct __attribute__((packed)) wire_unclaim {
    uint8_t type;
    uint64_t id;
} wire_unclaim;
/* ... and for a message of a kind (opcode) to a name or a topic. */
typedef struct __attribute__((packed)) wire_op {
    uint8_t type, op;
} wire_op;

#endif
