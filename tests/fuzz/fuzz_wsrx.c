/* fuzz_wsrx.c — the frame reader (wsrx_feed) on any byte stream.
 *
 * The input's first two bytes pick the size limit and how the rest is cut
 * into reads; the rest is the stream a client sent.  It is read twice: in
 * one piece, and in reads of the chosen sizes, each put after the bytes the
 * reader kept from the read before (wsrx_unread), as fastrx.c does.  Both
 * ways must see the same messages, control frames and error, in order;
 * every message must be within the limit, every control payload within 125
 * bytes, and an error code one of 1002, 1007, 1009, 1011; every text message valid UTF-8. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "wsrx.h"

typedef struct event {
    int kind; /* 0 message, 1 control, 2 error */
    int code; /* binary flag, opcode or close code */
    size_t len;
    uint64_t hash;
} event;

typedef struct trace {
    event *ev;
    size_t n, cap;
    uint64_t max;
} trace;

static uint64_t hash_bytes(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void add(trace *t, int kind, int code, const unsigned char *p, size_t n)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->ev = realloc(t->ev, t->cap * sizeof(*t->ev));
        if (!t->ev)
            abort();
    }
    t->ev[t->n++] = (event){kind, code, n, p ? hash_bytes(p, n) : 0};
}

static int on_message(void *arg, const unsigned char *data, size_t len, int binary)
{
    trace *t = arg;
    if (len > t->max || (!binary && !utf8_valid(data, len)))
        abort();
    add(t, 0, binary, data, len);
    return 0;
}

static int on_control(void *arg, int opcode, const unsigned char *data, size_t len)
{
    if (len > 125 || (opcode != 0x8 && opcode != 0x9 && opcode != 0xA))
        abort();
    add(arg, 1, opcode, data, len);
    return 0;
}

static const wsrx_sink sink = {on_message, on_control, NULL}; /* flags 0: no deflate */

/* Read stream in reads of the sizes cuts gives (0: all at once). */
static void run(const uint8_t *stream, size_t n, uint8_t cut_seed, trace *t)
{
    wsrx *st = NULL;
    size_t pos = 0;
    unsigned seed = cut_seed;
    while (pos < n) {
        size_t chunk = n - pos;
        if (cut_seed) {
            seed = seed * 1103515245u + 12345u;
            chunk = 1 + (seed >> 16) % 300;
            if (chunk > n - pos)
                chunk = n - pos;
        }
        unsigned char *buf = malloc(WSRX_CARRY_MAX + chunk);
        size_t kept = wsrx_unread(st, buf);
        memcpy(buf + kept, stream + pos, chunk);
        pos += chunk;
        int code = 0;
        const char *reason = NULL;
        int rc = wsrx_feed(&st, buf, kept + chunk, t->max, 0, &sink, t, &code, &reason);
        free(buf);
        if (rc == WSRX_ERROR) {
            if ((code != 1002 && code != 1007 && code != 1009 && code != 1011) || !reason)
                abort();
            add(t, 2, code, NULL, 0);
            break;
        }
    }
    wsrx_free(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint64_t max = 1 + (uint64_t)data[0] * 97;
    trace whole = {.max = max}, cut = {.max = max};
    run(data + 2, size - 2, 0, &whole);
    run(data + 2, size - 2, (uint8_t)(data[1] | 1), &cut);
    if (whole.n != cut.n || (whole.n && memcmp(whole.ev, cut.ev, whole.n * sizeof(event)) != 0))
        abort();
    free(whole.ev);
    free(cut.ev);
    return 0;
}
