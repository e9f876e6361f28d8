/* compress.c — permessage-deflate on a connection (compress.h). */
#include "compress.h"

#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "sendq.h"
#include "utf8.h"

/* The gateway's scratch buffer for compressing is not kept above this
 * size after a rare huge message. */
#define COMPRESS_KEEP_MAX (64 * 1024)

struct mg_pmd {
    pmd_conn z;
    pmd_buf msg; /* the message being inflated */
    uint8_t u8;  /* its UTF-8 so far (utf8_step) */
};

int compress_start(mg_gw *gw)
{
    for (size_t i = 0; i < gw->cfg->nlisteners; i++)
        if (gw->cfg->listeners[i].compression.enabled) {
            gw->pmd_shared = pmd_shared_new();
            if (!gw->pmd_shared)
                return -1;
            gw->metrics->compression_shared_memory = pmd_shared_memory(gw->pmd_shared);
            return 0;
        }
    return 0;
}

void compress_stop(mg_gw *gw)
{
    pmd_shared_free(gw->pmd_shared);
    gw->pmd_shared = NULL;
    free(gw->pmd_out.data);
    memset(&gw->pmd_out, 0, sizeof(gw->pmd_out));
}

int compress_negotiate(const pmd_config *cfg, const char *offer, pmd_params *out, char *resp,
                       size_t resplen)
{
    return cfg->enabled && offer[0] && pmd_negotiate(cfg, offer, out, resp, resplen) == 1;
}

/* The memory gauges after a codec call: the connection's streams moved
 * from `before` bytes to what they hold now (z may be NULL: none), and the
 * shared streams may have grown (an inflater's window at its first use). */
static void compress_account(mg_gw *gw, const mg_pmd *z, size_t before)
{
    mg_metrics *m = gw->metrics;
    if (z)
        m->compression_conn_memory += pmd_conn_memory(&z->z) - before; /* modulo 2^64 */
    m->compression_shared_memory = pmd_shared_memory(gw->pmd_shared);
}

int compress_attach(mg_gw *gw, mg_conn *c, const pmd_params *p)
{
    c->pmd = calloc(1, sizeof(*c->pmd));
    if (!c->pmd)
        return -1;
    pmd_conn_init(&c->pmd->z, p);
    gw->metrics->compression_connections++;
    return 0;
}

void compress_detach(mg_gw *gw, mg_conn *c)
{
    if (!c->pmd)
        return;
    gw->metrics->compression_connections--;
    gw->metrics->compression_conn_memory -= pmd_conn_memory(&c->pmd->z);
    pmd_conn_release(&c->pmd->z);
    free(c->pmd->msg.data);
    free(c->pmd);
    c->pmd = NULL;
}

size_t compress_conn_memory(const mg_conn *c)
{
    return c->pmd ? sizeof(*c->pmd) + pmd_conn_memory(&c->pmd->z) + c->pmd->msg.cap : 0;
}

/* ---- what the client sends ---- */

/* Start the next message afresh.  The inflated message's buffer (4 KiB
 * at least) is freed too: kept, it would cost every connection that ever
 * sent a compressed message more than the rest of an idle connection,
 * while a malloc per message is little next to inflating it. */
static void compress_rx_reset(mg_pmd *z)
{
    free(z->msg.data);
    memset(&z->msg, 0, sizeof(z->msg));
    z->u8 = 0;
}

void compress_rx_done(mg_conn *c)
{
    if (c->pmd)
        compress_rx_reset(c->pmd);
}

int compress_rx(mg_gw *gw, mg_conn *c, const unsigned char *data, size_t len, int final,
                int binary, const unsigned char **msg, size_t *mlen, const char **reason)
{
    mg_pmd *z = c->pmd;
    if (!z) { /* wsrx lets RSV1 through only where it was negotiated */
        *reason = "reserved bits set";
        return 1002;
    }
    if (z->msg.len == 0 && !final && !len)
        return COMPRESS_MORE;
    size_t before = z->msg.len, mem = pmd_conn_memory(&z->z);
    long n = pmd_inflate(&z->z, gw->pmd_shared, data, len, final, gw->cfg->max_message_size,
                         &z->msg);
    compress_account(gw, z, mem);
    gw->metrics->compression_in_wire_bytes += len;
    int code = 0;
    if (n == PMD_TOO_BIG)
        code = 1009, *reason = "message too big";
    else if (n == PMD_CORRUPT)
        code = 1007, *reason = "invalid compressed data";
    else if (n < 0)
        code = 1011, *reason = "out of memory";
    else if (!binary && (!utf8_step(&z->u8, z->msg.data + before, (size_t)n) ||
                         (final && z->u8 != 0)))
        code = 1007, *reason = "invalid UTF-8";
    if (code) {
        compress_rx_reset(z);
        return code;
    }
    if (!final)
        return COMPRESS_MORE;
    *msg = z->msg.data ? z->msg.data : (const unsigned char *)"";
    *mlen = z->msg.len;
    gw->metrics->compression_messages_in++;
    gw->metrics->compression_in_bytes += z->msg.len;
    return COMPRESS_DONE;
}

/* ---- what the gateway sends ---- */

const void *compress_send_frame(mg_gw *gw, mg_conn *c, int *opcode, const void *data, size_t *len)
{
    mg_pmd *z = c->pmd;
    if (!z || (*opcode & 0x8) || !pmd_wants(&z->z.p, *len))
        return data;
    if (gw->pmd_out.cap > COMPRESS_KEEP_MAX && *len < COMPRESS_KEEP_MAX) {
        /* the scratch buffer does not keep what a rare huge message took */
        free(gw->pmd_out.data);
        memset(&gw->pmd_out, 0, sizeof(gw->pmd_out));
    }
    gw->pmd_out.len = 0;
    size_t mem = pmd_conn_memory(&z->z);
    long n = pmd_deflate(&z->z, gw->pmd_shared, data, *len, &gw->pmd_out);
    compress_account(gw, z, mem);
    if (n < 0)
        return NULL;
    gw->metrics->compression_deflates++;
    *opcode |= MG_OP_RSV1;
    *len = gw->pmd_out.len;
    return gw->pmd_out.data;
}

int compress_fanout_init(mg_fanout *f, int opcode, const void *data, size_t len)
{
    memset(f, 0, sizeof(*f));
    f->opcode = opcode;
    f->data = data;
    f->len = len;
    f->plain = sendq_frame_new(opcode, data, len);
    return f->plain ? 0 : -1;
}

void compress_fanout_free(mg_fanout *f)
{
    if (f->plain)
        sendq_buf_release(f->plain);
    for (int i = 0; i < f->nz; i++)
        sendq_buf_release(f->zframes[i]);
    memset(f, 0, sizeof(*f));
}

/* The compressed frame for key, made at the first connection that needs
 * it; NULL if out of room or memory. */
static struct mg_buf *compress_fanout_make(mg_gw *gw, mg_fanout *f, const pmd_params *p,
                                           uint32_t key)
{
    for (int i = 0; i < f->nz; i++)
        if (f->keys[i] == key)
            return f->zframes[i];
    if (f->nz == PMD_SHARED_DEFLATERS)
        return NULL;
    gw->pmd_out.len = 0;
    long n = pmd_deflate_shared(gw->pmd_shared, p, f->data, f->len, &gw->pmd_out);
    compress_account(gw, NULL, 0);
    if (n < 0)
        return NULL;
    gw->metrics->compression_deflates++;
    struct mg_buf *b = sendq_frame_new(f->opcode | MG_OP_RSV1, gw->pmd_out.data, gw->pmd_out.len);
    if (!b)
        return NULL;
    f->keys[f->nz] = key;
    f->zlens[f->nz] = gw->pmd_out.len;
    f->zframes[f->nz++] = b;
    return b;
}

struct mg_buf *compress_fanout_frame(mg_gw *gw, mg_fanout *f, const mg_conn *c, int *own)
{
    *own = 0;
    if (!c->pmd || !pmd_wants(&c->pmd->z.p, f->len))
        return f->plain;
    uint32_t key = pmd_params_key(&c->pmd->z.p);
    struct mg_buf *b = key ? compress_fanout_make(gw, f, &c->pmd->z.p, key) : NULL;
    if (!b)
        *own = 1; /* its own deflater, or past the shared ones: compress its copy */
    return b;
}

void compress_sent(mg_gw *gw, size_t len, size_t wire_len)
{
    mg_metrics *m = gw->metrics;
    m->compression_messages_out++;
    m->compression_out_bytes += len;
    m->compression_out_wire_bytes += wire_len;
}

void compress_fanout_sent(mg_gw *gw, const mg_fanout *f, const struct mg_buf *b)
{
    for (int i = 0; i < f->nz; i++)
        if (f->zframes[i] == b) {
            compress_sent(gw, f->len, f->zlens[i]);
            return;
        }
}
