/* pmd.c — permessage-deflate (RFC 7692): the offer parser and negotiation,
 * and the zlib streams that compress and decompress messages (pmd.h says
 * how the rest of the gateway uses them).
 *
 * Every zlib stream is a pmd_stream: the z_stream and a count of the bytes
 * zlib allocated for it, kept by the zalloc/zfree pair below, so that the
 * memory a connection or the gateway holds can be reported exactly.
 *
 * Streams without context takeover: keeping one per connection and
 * resetting it after each message holds the stream's whole memory while
 * the connection is idle; creating one per message costs its allocations
 * and zlib's set-up each time.  Measured on a chat-sized JSON message, a
 * fresh inflater cost about as much as a reset one, but a fresh deflater
 * cost orders of magnitude more than a reset one (its buffers are
 * allocated, faulted in and cleared every time).  So the gateway keeps a
 * few shared deflaters and one inflater (pmd_shared), reset after each
 * message, and a connection holds none.  Only a client message that
 * arrives in several pieces needs a stream of the connection's own for its
 * duration (pieces of other connections' messages come in between). */
#include "pmd.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* ---- counted zlib streams ---- */

typedef struct pmd_stream {
    z_stream z;
    size_t mem;   /* bytes zlib allocated through pmd_zalloc, with their headers */
    int deflater; /* 1: deflate stream, 0: inflate */
} pmd_stream;

/* A size header in front of each block: zfree is not told the size. */
typedef union pmd_zhdr {
    size_t size;
    max_align_t align;
} pmd_zhdr;

static voidpf pmd_zalloc(voidpf opaque, uInt items, uInt size)
{
    pmd_stream *s = opaque;
    size_t n = (size_t)items * size;
    pmd_zhdr *h = malloc(sizeof(*h) + n);
    if (!h)
        return Z_NULL;
    h->size = sizeof(*h) + n;
    s->mem += h->size;
    return h + 1;
}

static void pmd_zfree(voidpf opaque, voidpf p)
{
    pmd_stream *s = opaque;
    if (!p)
        return;
    pmd_zhdr *h = (pmd_zhdr *)p - 1;
    s->mem -= h->size;
    free(h);
}

/* zlib cannot make a raw deflate stream with an 8-bit window; 9 bits keep
 * every distance within 256 bytes (pmd.h). */
static int pmd_deflate_bits(int bits)
{
    return bits < 9 ? 9 : bits;
}

static pmd_stream *pmd_stream_new(int deflater, int window_bits, int mem_level, int level)
{
    pmd_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->z.zalloc = pmd_zalloc;
    s->z.zfree = pmd_zfree;
    s->z.opaque = s;
    s->deflater = deflater;
    int rc;
    if (deflater)
        rc = deflateInit2(&s->z, level, Z_DEFLATED, -pmd_deflate_bits(window_bits), mem_level,
                          Z_DEFAULT_STRATEGY);
    else
        rc = inflateInit2(&s->z, -window_bits);
    if (rc != Z_OK) {
        free(s);
        return NULL;
    }
    return s;
}

static void pmd_stream_free(pmd_stream **sp)
{
    pmd_stream *s = *sp;
    if (!s)
        return;
    if (s->deflater)
        deflateEnd(&s->z);
    else
        inflateEnd(&s->z);
    free(s);
    *sp = NULL;
}

static size_t pmd_stream_memory(const pmd_stream *s)
{
    return s ? sizeof(*s) + s->mem : 0;
}

/* ---- configuration ---- */

void pmd_config_default(pmd_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->enabled = 0;
    cfg->server_max_window_bits = 15;
    cfg->client_max_window_bits = 15;
    cfg->mem_level = 8;
    cfg->level = 1;
    cfg->server_no_context_takeover = 1;
    cfg->client_no_context_takeover = 1;
    cfg->min_size = 64;
}

int pmd_config_check(const pmd_config *cfg, const char **why)
{
    const char *bad = NULL;
    if (cfg->server_max_window_bits < 8 || cfg->server_max_window_bits > 15)
        bad = "server_max_window_bits must be 8..15";
    else if (cfg->client_max_window_bits < 8 || cfg->client_max_window_bits > 15)
        bad = "client_max_window_bits must be 8..15";
    else if (cfg->mem_level < 1 || cfg->mem_level > 9)
        bad = "mem_level must be 1..9";
    else if (cfg->level < 0 || cfg->level > 9)
        bad = "level must be 0..9";
    else if (cfg->min_size > UINT32_MAX)
        bad = "min_size must be below 4 GiB";
    if (why)
        *why = bad;
    return bad ? -1 : 0;
}

/* ---- the offer parser (RFC 6455 9.1, RFC 7230 3.2.6) ---- */

/* One parameter's value, unquoted; longer values are cut (they are bad for
 * every parameter this module knows, and the cut is flagged). */
#define PMD_VALUE_MAX 16

typedef struct pmd_scan {
    const char *p; /* next byte; the string ends at a NUL */
} pmd_scan;

static int pmd_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void pmd_skip_ows(pmd_scan *sc)
{
    while (*sc->p == ' ' || *sc->p == '\t')
        sc->p++;
}

/* A token: its start in *tok, its length returned (0: none there). */
static size_t pmd_token(pmd_scan *sc, const char **tok)
{
    *tok = sc->p;
    while (pmd_is_tchar((unsigned char)*sc->p))
        sc->p++;
    return (size_t)(sc->p - *tok);
}

/* A parameter value, token or quoted string, unquoted into val (NUL-ended,
 * cut at PMD_VALUE_MAX - 1 with *cut set).  -1 if malformed. */
static int pmd_value(pmd_scan *sc, char *val, int *cut)
{
    size_t n = 0;
    int bad = 0;
    *cut = 0;
    if (*sc->p != '"') {
        const char *tok;
        size_t len = pmd_token(sc, &tok);
        if (len == 0)
            return -1;
        *cut = len >= PMD_VALUE_MAX;
        n = *cut ? PMD_VALUE_MAX - 1 : len;
        memcpy(val, tok, n);
        val[n] = '\0';
        return 0;
    }
    sc->p++;
    for (;;) {
        unsigned char c = (unsigned char)*sc->p;
        if (c == '\0')
            return -1; /* no closing quote */
        sc->p++;
        if (c == '"')
            break;
        if (c == '\\') {
            c = (unsigned char)*sc->p;
            if (c == '\0')
                return -1;
            sc->p++;
        }
        /* After unquoting the value must still be a token (RFC 6455 9.1);
         * read on to the closing quote all the same, so that the offer is
         * skipped from there. */
        if (!pmd_is_tchar(c))
            bad = 1;
        else if (n < PMD_VALUE_MAX - 1)
            val[n++] = (char)c;
        else
            *cut = 1;
    }
    val[n] = '\0';
    return n && !bad ? 0 : -1;
}

/* Go past the offer being read, to just after the next comma outside a
 * quoted string (or the end). */
static void pmd_skip_offer(pmd_scan *sc)
{
    int quoted = 0;
    while (*sc->p) {
        char c = *sc->p++;
        if (quoted && c == '\\' && *sc->p)
            sc->p++;
        else if (c == '"')
            quoted = !quoted;
        else if (c == ',' && !quoted)
            return;
    }
}

/* ---- deciding on one offer (RFC 7692 7.1) ---- */

enum { PMD_SNCT = 1, PMD_CNCT = 2, PMD_SMWB = 4, PMD_CMWB = 8 };

typedef struct pmd_offer {
    unsigned seen; /* PMD_* bits */
    int bad;       /* 1: the offer must be declined */
    int smwb;      /* server_max_window_bits value */
    int cmwb;      /* client_max_window_bits value, 0 when given without one */
} pmd_offer;

static int pmd_name_is(const char *tok, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(tok, name, len) == 0;
}

/* "8".."15", no leading zero; else -1. */
static int pmd_window_value(const char *v)
{
    if (strcmp(v, "8") == 0 || strcmp(v, "9") == 0)
        return v[0] - '0';
    if (v[0] == '1' && v[1] >= '0' && v[1] <= '5' && v[2] == '\0')
        return 10 + v[1] - '0';
    return -1;
}

/* Take one parameter (name, and value or NULL) of a permessage-deflate
 * offer into o. */
static void pmd_offer_param(pmd_offer *o, const char *name, size_t nlen, const char *val)
{
    static const struct {
        const char *name;
        unsigned bit;
    } known[] = {{"server_no_context_takeover", PMD_SNCT},
                 {"client_no_context_takeover", PMD_CNCT},
                 {"server_max_window_bits", PMD_SMWB},
                 {"client_max_window_bits", PMD_CMWB}};
    unsigned bit = 0;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (pmd_name_is(name, nlen, known[i].name))
            bit = known[i].bit;
    if (bit == 0 || (o->seen & bit)) {
        o->bad = 1; /* unknown or repeated */
        return;
    }
    o->seen |= bit;
    if (bit == PMD_SNCT || bit == PMD_CNCT) {
        if (val)
            o->bad = 1;
    } else if (bit == PMD_SMWB) {
        o->smwb = val ? pmd_window_value(val) : -1;
        o->bad |= o->smwb < 0;
    } else {
        o->cmwb = val ? pmd_window_value(val) : 0;
        o->bad |= o->cmwb < 0;
    }
}

/* Read the parameters of one offer (after its token) up to the comma that
 * ends it or the end; pd: it is permessage-deflate (else parameters are
 * only read past).  -1 if malformed (sc is then somewhere inside it). */
static int pmd_offer_params(pmd_scan *sc, int pd, pmd_offer *o)
{
    for (;;) {
        pmd_skip_ows(sc);
        if (*sc->p == '\0')
            return 0;
        if (*sc->p == ',') {
            sc->p++;
            return 0;
        }
        if (*sc->p != ';')
            return -1;
        sc->p++;
        pmd_skip_ows(sc);
        const char *name;
        size_t nlen = pmd_token(sc, &name);
        if (nlen == 0)
            return -1;
        pmd_skip_ows(sc);
        char val[PMD_VALUE_MAX];
        int has_val = 0, cut = 0;
        if (*sc->p == '=') {
            sc->p++;
            pmd_skip_ows(sc);
            if (pmd_value(sc, val, &cut) != 0)
                return -1;
            has_val = 1;
        }
        if (pd) {
            pmd_offer_param(o, name, nlen, has_val ? val : NULL);
            o->bad |= cut;
        }
    }
}

static int pmd_min(int a, int b)
{
    return a < b ? a : b;
}

/* Decide on an acceptable-looking offer; 0 with *out filled, -1 to decline. */
static int pmd_offer_accept(const pmd_config *cfg, const pmd_offer *o, pmd_params *out)
{
    int client_bits = 15;
    if (o->seen & PMD_CMWB)
        client_bits = pmd_min(o->cmwb ? o->cmwb : 15, cfg->client_max_window_bits);
    else if (cfg->client_max_window_bits < 15)
        return -1; /* the client could not be told to keep to the limit */
    int server_bits = cfg->server_max_window_bits;
    if (o->seen & PMD_SMWB)
        server_bits = pmd_min(o->smwb, server_bits);
    memset(out, 0, sizeof(*out));
    out->server_window_bits = (uint8_t)server_bits;
    out->client_window_bits = (uint8_t)client_bits;
    out->server_no_context_takeover = (o->seen & PMD_SNCT) || cfg->server_no_context_takeover;
    out->client_no_context_takeover = (o->seen & PMD_CNCT) || cfg->client_no_context_takeover;
    out->mem_level = (uint8_t)cfg->mem_level;
    out->level = (uint8_t)cfg->level;
    out->min_size = (uint32_t)cfg->min_size;
    return 0;
}

/* Write the response value for p answering offer o; -1 if it does not fit. */
static int pmd_response(const pmd_params *p, const pmd_offer *o, char *resp, size_t len)
{
    char smwb[32] = "", cmwb[32] = "";
    /* server_max_window_bits: echoed when asked for, and volunteered when
     * our window is smaller than the default the client would assume. */
    if ((o->seen & PMD_SMWB) || p->server_window_bits < 15)
        snprintf(smwb, sizeof(smwb), "; server_max_window_bits=%d", p->server_window_bits);
    /* client_max_window_bits only when offered (7.1.2.2: never otherwise). */
    if ((o->seen & PMD_CMWB) && (o->cmwb || p->client_window_bits < 15))
        snprintf(cmwb, sizeof(cmwb), "; client_max_window_bits=%d", p->client_window_bits);
    int n =
        snprintf(resp, len, "permessage-deflate%s%s%s%s",
                 p->server_no_context_takeover ? "; server_no_context_takeover" : "",
                 p->client_no_context_takeover ? "; client_no_context_takeover" : "", smwb, cmwb);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int pmd_negotiate(const pmd_config *cfg, const char *offers, pmd_params *out, char *resp,
                  size_t resp_len)
{
    if (!cfg->enabled || !offers || pmd_config_check(cfg, NULL) != 0)
        return 0;
    pmd_scan sc = {offers};
    while (*sc.p) {
        pmd_skip_ows(&sc);
        if (*sc.p == ',') { /* an empty list element (RFC 7230 7) */
            sc.p++;
            continue;
        }
        const char *name;
        size_t nlen = pmd_token(&sc, &name);
        int pd = pmd_name_is(name, nlen, "permessage-deflate");
        pmd_offer o = {0};
        if (nlen == 0 || pmd_offer_params(&sc, pd, &o) != 0) {
            pmd_skip_offer(&sc);
            continue;
        }
        if (!pd || o.bad)
            continue;
        pmd_params p;
        if (pmd_offer_accept(cfg, &o, &p) != 0)
            continue;
        if (pmd_response(&p, &o, resp, resp_len) != 0)
            return 0;
        *out = p;
        return 1;
    }
    return 0;
}

/* ---- shared streams ---- */

struct pmd_shared {
    struct {
        uint32_t key; /* pmd_params_key; 0: slot empty */
        uint64_t used;
        pmd_stream *s;
    } def[PMD_SHARED_DEFLATERS];
    pmd_stream *inf; /* window 15: inflates data made with any window */
    uint64_t clock;
};

pmd_shared *pmd_shared_new(void)
{
    return calloc(1, sizeof(pmd_shared));
}

void pmd_shared_free(pmd_shared *sh)
{
    if (!sh)
        return;
    for (int i = 0; i < PMD_SHARED_DEFLATERS; i++)
        pmd_stream_free(&sh->def[i].s);
    pmd_stream_free(&sh->inf);
    free(sh);
}

size_t pmd_shared_memory(const pmd_shared *sh)
{
    if (!sh)
        return 0;
    size_t n = sizeof(*sh) + pmd_stream_memory(sh->inf);
    for (int i = 0; i < PMD_SHARED_DEFLATERS; i++)
        n += pmd_stream_memory(sh->def[i].s);
    return n;
}

uint32_t pmd_params_key(const pmd_params *p)
{
    if (!p->server_no_context_takeover)
        return 0;
    return 1u << 24 | (uint32_t)pmd_deflate_bits(p->server_window_bits) << 16 |
           (uint32_t)p->mem_level << 8 | p->level;
}

/* The shared deflater for key, made (replacing the least recently used)
 * when missing; NULL on OOM. */
static pmd_stream *pmd_shared_deflater(pmd_shared *sh, const pmd_params *p, uint32_t key)
{
    int slot = 0;
    for (int i = 0; i < PMD_SHARED_DEFLATERS; i++) {
        if (sh->def[i].key == key) {
            sh->def[i].used = ++sh->clock;
            return sh->def[i].s;
        }
        if (sh->def[i].used < sh->def[slot].used)
            slot = i;
    }
    pmd_stream *s = pmd_stream_new(1, p->server_window_bits, p->mem_level, p->level);
    if (!s)
        return NULL;
    pmd_stream_free(&sh->def[slot].s);
    sh->def[slot].s = s;
    sh->def[slot].key = key;
    sh->def[slot].used = ++sh->clock;
    return s;
}

/* ---- buffers ---- */

/* Make room for at least want more bytes in b, but never for more than
 * limit bytes in all (limit >= b->len).  Returns the room (0 if none can
 * be had within limit), or -1 on OOM. */
static long pmd_buf_room(pmd_buf *b, size_t want, size_t limit)
{
    if (b->cap > b->len)
        return (long)((b->cap < limit ? b->cap : limit) - b->len);
    if (b->len >= limit)
        return 0;
    size_t cap = b->cap < 4096 ? 4096 : b->cap;
    while (cap < b->len + want && cap <= SIZE_MAX / 2)
        cap *= 2;
    if (cap < b->len + want)
        cap = b->len + want;
    if (cap > limit)
        cap = limit;
    unsigned char *d = realloc(b->data, cap);
    if (!d)
        return -1;
    b->data = d;
    b->cap = cap;
    return (long)(cap - b->len);
}

/* ---- inflate ---- */

static const unsigned char pmd_tail[4] = {0x00, 0x00, 0xff, 0xff};

/* Run z over in/len appending to out (never past limit bytes in all).
 * 0, or a PMD_* error. */
static int pmd_inflate_run(z_stream *z, int *ended, const unsigned char *in, size_t len,
                           size_t limit, pmd_buf *out)
{
    /* Nothing to do without input (all output of earlier input is out),
     * and a call would hide where the stream stopped: zlib's data_type
     * loses its block-boundary bit on a call that makes no progress. */
    if (len == 0)
        return 0;
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)len;
    *ended = 0;
    for (;;) {
        long room = pmd_buf_room(out, 4096, limit);
        if (room < 0)
            return PMD_NOMEM;
        unsigned char probe;
        /* At the limit, one byte more of output proves the message too big. */
        z->next_out = room ? out->data + out->len : &probe;
        z->avail_out = room ? (uInt)(room > (long)UINT_MAX ? UINT_MAX : room) : 1;
        uInt before = z->avail_out;
        int rc = inflate(z, Z_SYNC_FLUSH);
        if (!room && z->avail_out == 0)
            return PMD_TOO_BIG;
        if (room)
            out->len += before - z->avail_out;
        if (rc == Z_STREAM_END) {
            /* A block with BFINAL set ended the sender's deflate stream
             * (RFC 7692 7.2.3.4); what follows starts a new one. */
            inflateReset(z);
            *ended = z->avail_in == 0;
            if (z->avail_in == 0)
                return 0;
            continue;
        }
        if (rc == Z_MEM_ERROR)
            return PMD_NOMEM;
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return PMD_CORRUPT; /* Z_DATA_ERROR, Z_NEED_DICT (no dictionary here) */
        if (z->avail_out == 0)
            continue; /* there may be more output */
        if (z->avail_in == 0)
            return 0;
        return PMD_CORRUPT; /* cannot happen: room and input, and no progress */
    }
}

/* The stream to inflate c's next piece with: c's own, or the shared one
 * for a message that arrives whole and needs no context. */
static pmd_stream *pmd_inflater(pmd_conn *c, pmd_shared *sh, int final, int *shared)
{
    *shared = 0;
    if (c->inf)
        return c->inf;
    if (sh && final && c->p.client_no_context_takeover) {
        if (!sh->inf)
            sh->inf = pmd_stream_new(0, 15, 0, 0);
        *shared = 1;
        return sh->inf;
    }
    c->inf = pmd_stream_new(0, c->p.client_window_bits, 0, 0);
    return c->inf;
}

long pmd_inflate(pmd_conn *c, pmd_shared *sh, const unsigned char *in, size_t len, int final,
                 uint64_t max_message, pmd_buf *out)
{
    int shared;
    pmd_stream *s = pmd_inflater(c, sh, final, &shared);
    if (!s)
        return PMD_NOMEM;
    size_t start = out->len;
    size_t limit = max_message < SIZE_MAX ? (size_t)max_message : SIZE_MAX;
    if (limit < start)
        limit = start;
    int ended = shared ? 0 : c->ended;
    int rc = 0;
    do { /* zlib counts input in uInt */
        size_t n = len < UINT_MAX ? len : UINT_MAX;
        rc = pmd_inflate_run(&s->z, &ended, in, n, limit, out);
        in += n;
        len -= n;
    } while (rc == 0 && len > 0);
    /* No tail where the payload stopped at a block boundary on a byte: an
     * empty payload (a deflater with nothing to flush produces none) or a
     * stream not begun.  The tail would start a stored block there that
     * its four bytes do not finish. */
    int boundary = s->z.total_in == 0 || s->z.data_type == 128;
    if (rc == 0 && final && !ended && !boundary) {
        rc = pmd_inflate_run(&s->z, &ended, pmd_tail, sizeof(pmd_tail), limit, out);
        /* The tail is an empty stored block: after it the stream must sit
         * at a block boundary with no bits left over, else the payload
         * stopped inside a block. */
        if (rc == 0 && !ended && s->z.data_type != 128)
            rc = PMD_CORRUPT;
    }
    c->ended = (uint8_t)ended;
    if (shared) {
        inflateReset(&s->z);
    } else if (rc != 0 || (final && c->p.client_no_context_takeover)) {
        pmd_stream_free(&c->inf);
        c->ended = 0;
    } else if (final && ended) {
        c->ended = 0; /* the stream was reset at its end: nothing is pending */
    }
    return rc != 0 ? rc : (long)(out->len - start);
}

/* ---- deflate ---- */

int pmd_wants(const pmd_params *p, size_t len)
{
    return len >= p->min_size;
}

/* Compress data with z and a sync flush, append it to out, and drop the
 * 0x00 0x00 0xff 0xff the flush ends with (RFC 7692 7.2.1). */
static long pmd_deflate_run(z_stream *z, const unsigned char *data, size_t len, pmd_buf *out)
{
    size_t start = out->len;
    if (len > UINT_MAX)
        return PMD_NOMEM; /* zlib counts input in uInt; no message is that long */
    z->next_in = (Bytef *)data;
    z->avail_in = (uInt)len;
    size_t want = deflateBound(z, len) + 8;
    for (;;) {
        long room = pmd_buf_room(out, want, SIZE_MAX);
        if (room <= 0) {
            out->len = start;
            return PMD_NOMEM;
        }
        z->next_out = out->data + out->len;
        z->avail_out = (uInt)(room > (long)UINT_MAX ? UINT_MAX : room);
        uInt before = z->avail_out;
        int rc = deflate(z, Z_SYNC_FLUSH);
        out->len += before - z->avail_out;
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            out->len = start;
            return PMD_NOMEM; /* zlib fails only for bad state or memory */
        }
        if (z->avail_out > 0 && z->avail_in == 0)
            break; /* also Z_BUF_ERROR: nothing was pending, no flush needed */
        want = 4096;
    }
    size_t n = out->len - start;
    if (n >= 4 && memcmp(out->data + out->len - 4, pmd_tail, 4) == 0) {
        out->len -= 4;
        n -= 4;
    }
    if (n == 0) {
        /* An empty message: the single byte 0x00, an empty stored block
         * once the receiver appends the tail.  There is room for it: the
         * loop asked for more than one byte, or four were just dropped. */
        out->data[out->len++] = 0x00;
        n = 1;
    }
    return (long)n;
}

long pmd_deflate_shared(pmd_shared *sh, const pmd_params *p, const unsigned char *data, size_t len,
                        pmd_buf *out)
{
    uint32_t key = pmd_params_key(p);
    if (!sh || key == 0)
        return PMD_NOMEM; /* a caller's mistake; nothing can be shared */
    pmd_stream *s = pmd_shared_deflater(sh, p, key);
    if (!s)
        return PMD_NOMEM;
    long n = pmd_deflate_run(&s->z, data, len, out);
    deflateReset(&s->z);
    return n;
}

long pmd_deflate(pmd_conn *c, pmd_shared *sh, const unsigned char *data, size_t len, pmd_buf *out)
{
    if (c->p.server_no_context_takeover)
        return pmd_deflate_shared(sh, &c->p, data, len, out);
    if (!c->def)
        c->def = pmd_stream_new(1, c->p.server_window_bits, c->p.mem_level, c->p.level);
    if (!c->def)
        return PMD_NOMEM;
    long n = pmd_deflate_run(&c->def->z, data, len, out);
    if (n < 0)
        pmd_stream_free(&c->def); /* its state is unknown now */
    return n;
}

/* ---- connections ---- */

void pmd_conn_init(pmd_conn *c, const pmd_params *p)
{
    memset(c, 0, sizeof(*c));
    c->p = *p;
}

void pmd_conn_release(pmd_conn *c)
{
    pmd_stream_free(&c->inf);
    pmd_stream_free(&c->def);
    c->ended = 0;
}

size_t pmd_conn_memory(const pmd_conn *c)
{
    return pmd_stream_memory(c->inf) + pmd_stream_memory(c->def);
}
