/* test_compress.c — compress.c without sockets: what a connection holds
 * for permessage-deflate between messages, and the compression gauges of
 * /metrics that follow it.
 *
 * A connection is an mg_conn on the stack (compress.c touches only its pmd
 * state); the gateway is an mg_gw around config_new_defaults() with its own
 * shared streams.  The client's compressed messages are made with pmd.c's
 * shared deflater, which writes the same format a client does. */

#include "compress.h"
#include "config.h"
#include "conn.h"
#include "testlib.h"

#include <stdlib.h>
#include <string.h>

static const char MSG[] = "{\"type\":\"msg\",\"room\":\"lobby\",\"user\":\"user0042\",\"text\":"
                          "\"the lazy dog sleeps and the lazy dog sleeps again\",\"ts\":1}";

static void gw_open(mg_gw *gw)
{
    memset(gw, 0, sizeof(*gw));
    gw->cfg = config_new_defaults();
    gw->metrics = &gw->metrics_own;
    gw->pmd_shared = pmd_shared_new();
    if (!gw->cfg || !gw->pmd_shared)
        exit(2);
}

static void gw_close(mg_gw *gw)
{
    compress_stop(gw);
    config_free(gw->cfg);
}

static pmd_params params(int no_takeover)
{
    pmd_params p = {.server_window_bits = 15,
                    .client_window_bits = 15,
                    .mem_level = 8,
                    .level = 1,
                    .min_size = 64};
    p.server_no_context_takeover = p.client_no_context_takeover = (uint8_t)no_takeover;
    return p;
}

/* MSG compressed as a client without context takeover sends it. */
static pmd_buf client_message(pmd_shared *sh)
{
    pmd_buf out = {0};
    pmd_params p = params(1);
    CHECK(pmd_deflate_shared(sh, &p, (const unsigned char *)MSG, strlen(MSG), &out) > 0);
    return out;
}

/* Feed in in pieces of `piece` bytes; the message must come out whole. */
static void receive(mg_gw *gw, mg_conn *c, const pmd_buf *in, size_t piece)
{
    const unsigned char *msg = NULL;
    size_t mlen = 0;
    const char *reason = NULL;
    int rc = COMPRESS_MORE;
    for (size_t off = 0; off < in->len; off += piece) {
        size_t n = in->len - off < piece ? in->len - off : piece;
        rc = compress_rx(gw, c, in->data + off, n, off + n == in->len, 0, &msg, &mlen, &reason);
        CHECK(rc == (off + n == in->len ? COMPRESS_DONE : COMPRESS_MORE));
    }
    CHECK(rc == COMPRESS_DONE && mlen == strlen(MSG) && memcmp(msg, MSG, mlen) == 0);
    compress_rx_done(c);
}

/* Without context takeover nothing but the small state stays between
 * messages: no stream and no message buffer, whether the message came
 * whole (shared inflater) or in pieces (a stream of its own meanwhile). */
static void test_idle_connection_holds_no_buffers(void)
{
    mg_gw gw;
    gw_open(&gw);
    mg_conn c;
    memset(&c, 0, sizeof(c));
    pmd_params p = params(1);
    CHECK(compress_attach(&gw, &c, &p) == 0);
    size_t idle = compress_conn_memory(&c);
    CHECK(idle > 0 && idle < 256);
    pmd_buf in = client_message(gw.pmd_shared);
    receive(&gw, &c, &in, in.len);
    CHECK(compress_conn_memory(&c) == idle);
    receive(&gw, &c, &in, 7);
    CHECK(compress_conn_memory(&c) == idle);
    CHECK(gw.metrics->compression_conn_memory == 0);
    CHECK(gw.metrics->compression_messages_in == 2);
    CHECK(gw.metrics->compression_in_bytes == 2 * strlen(MSG));
    CHECK(gw.metrics->compression_in_wire_bytes == 2 * in.len);
    CHECK(gw.metrics->compression_shared_memory == pmd_shared_memory(gw.pmd_shared));
    CHECK(gw.metrics->compression_connections == 1);
    compress_detach(&gw, &c);
    CHECK(gw.metrics->compression_connections == 0 && c.pmd == NULL);
    free(in.data);
    gw_close(&gw);
}

/* With context takeover the inflater stays (it is the context), the
 * message buffer does not, and the gauge counts the stream until the
 * connection goes. */
static void test_takeover_keeps_only_the_stream(void)
{
    mg_gw gw;
    gw_open(&gw);
    mg_conn c;
    memset(&c, 0, sizeof(c));
    pmd_params p = params(0);
    CHECK(compress_attach(&gw, &c, &p) == 0);
    size_t idle = compress_conn_memory(&c);
    pmd_buf in = client_message(gw.pmd_shared); /* a fresh stream: valid with context too */
    receive(&gw, &c, &in, in.len);
    size_t held = compress_conn_memory(&c);
    CHECK(held > idle + 32 * 1024); /* the 32 KiB window, at least */
    CHECK(gw.metrics->compression_conn_memory > 32 * 1024);
    CHECK(held == idle + gw.metrics->compression_conn_memory); /* no message buffer */
    compress_detach(&gw, &c);
    CHECK(gw.metrics->compression_conn_memory == 0);
    free(in.data);
    gw_close(&gw);
}

TEST_MAIN("compress", T(test_idle_connection_holds_no_buffers),
          T(test_takeover_keeps_only_the_stream))
