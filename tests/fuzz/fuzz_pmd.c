/* fuzz_pmd.c — permessage-deflate (src/pmd.c): negotiation and inflate.
 *
 * Input: byte 0 picks the listener's limits and context flags, byte 1 the
 * compression settings and how messages are cut into pieces; then a
 * Sec-WebSocket-Extensions value up to the first '\n'; then messages, each
 * a length byte (0xff: the rest) and that many bytes of compressed payload.
 *
 * Checked: an accepted offer's parameters keep to the config, and our own
 * response, read as an offer, is accepted again with the same result; the
 * inflated size never passes max_message, nor the buffer; whatever inflates
 * compresses back (pmd_deflate) to bytes that zlib, as a client with the
 * negotiated window, inflates to the same message.  Stops at the first
 * error, as the connection would. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "pmd.h"

#define FUZZ_MAX_MESSAGE (1u << 16)

static pmd_config fuzz_config(uint8_t a, uint8_t b)
{
    pmd_config cfg;
    pmd_config_default(&cfg);
    cfg.enabled = 1;
    cfg.client_max_window_bits = 8 + (a & 7);
    cfg.server_max_window_bits = 8 + ((a >> 3) & 7);
    cfg.server_no_context_takeover = (a >> 6) & 1;
    cfg.client_no_context_takeover = (a >> 7) & 1;
    cfg.mem_level = 1 + b % 9;
    cfg.level = b % 10;
    cfg.min_size = 0;
    return cfg;
}

static void fuzz_negotiate(const pmd_config *cfg, const uint8_t *h, size_t n, pmd_params *p)
{
    char *offer = malloc(n + 1); /* exact size: over-reads show */
    memcpy(offer, h, n);
    offer[n] = '\0';
    char resp[PMD_RESPONSE_MAX];
    if (!pmd_negotiate(cfg, offer, p, resp, sizeof(resp))) {
        free(offer);
        return;
    }
    free(offer);
    if (strncmp(resp, "permessage-deflate", 18) != 0 ||
        p->server_window_bits > cfg->server_max_window_bits || p->server_window_bits < 8 ||
        p->client_window_bits > cfg->client_max_window_bits || p->client_window_bits < 8 ||
        (cfg->server_no_context_takeover && !p->server_no_context_takeover) ||
        (cfg->client_no_context_takeover && !p->client_no_context_takeover))
        abort();
    pmd_params again;
    char resp2[PMD_RESPONSE_MAX];
    if (!pmd_negotiate(cfg, resp, &again, resp2, sizeof(resp2)) ||
        memcmp(&again, p, sizeof(again)) != 0)
        abort();
}

/* Our compressed form of msg must read back through a plain zlib client. */
static void fuzz_check_deflate(pmd_conn *out, pmd_shared *sh, z_stream *client, const pmd_buf *msg)
{
    pmd_buf comp = {0};
    long n = pmd_deflate(out, sh, msg->data, msg->len, &comp);
    if (n < 0 || (size_t)n != comp.len)
        abort();
    unsigned char *in = malloc(comp.len + 4);
    memcpy(in, comp.data, comp.len);
    memcpy(in + comp.len, "\x00\x00\xff\xff", 4);
    unsigned char *back = malloc(msg->len + 1);
    if (out->p.server_no_context_takeover)
        inflateReset(client);
    client->next_in = in;
    client->avail_in = (uInt)(comp.len + 4);
    client->next_out = back;
    client->avail_out = (uInt)(msg->len + 1);
    int rc = inflate(client, Z_SYNC_FLUSH);
    if ((rc != Z_OK && rc != Z_BUF_ERROR) || client->avail_in != 0 || client->avail_out != 1 ||
        (msg->len && memcmp(back, msg->data, msg->len) != 0))
        abort();
    free(back);
    free(in);
    free(comp.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    pmd_config cfg = fuzz_config(data[0], data[1]);
    size_t piece = 1 + (data[1] >> 4); /* 1..16 bytes per pmd_inflate */
    data += 2;
    size -= 2;
    const uint8_t *nl = memchr(data, '\n', size);
    size_t hlen = nl ? (size_t)(nl - data) : size;
    pmd_params p = {15,
                    15,
                    (uint8_t)cfg.server_no_context_takeover,
                    (uint8_t)cfg.client_no_context_takeover,
                    (uint8_t)cfg.mem_level,
                    (uint8_t)cfg.level,
                    0};
    fuzz_negotiate(&cfg, data, hlen, &p);
    data += hlen + (nl != NULL);
    size -= hlen + (nl != NULL);

    pmd_shared *sh = pmd_shared_new();
    pmd_conn in, out;
    pmd_conn_init(&in, &p);
    pmd_conn_init(&out, &p);
    z_stream client;
    memset(&client, 0, sizeof(client));
    if (inflateInit2(&client, -p.server_window_bits) != Z_OK)
        abort();
    pmd_buf msg = {0};
    while (size > 0) {
        size_t len = data[0] == 0xff || data[0] >= size ? size - 1 : data[0];
        const uint8_t *m = data + 1;
        data += 1 + len;
        size -= 1 + len;
        msg.len = 0;
        long got = 0, r = 0;
        size_t off = 0;
        do { /* an empty message is one final piece */
            size_t k = len - off < piece ? len - off : piece;
            r = pmd_inflate(&in, sh, m + off, k, off + k == len, FUZZ_MAX_MESSAGE, &msg);
            if (r > 0)
                got += r;
            off += k;
        } while (r >= 0 && off < len);
        if (msg.len > FUZZ_MAX_MESSAGE || msg.cap > FUZZ_MAX_MESSAGE)
            abort();
        if (r < 0) {
            if (r != PMD_TOO_BIG && r != PMD_CORRUPT && r != PMD_NOMEM)
                abort();
            break;
        }
        if ((size_t)got != msg.len)
            abort();
        fuzz_check_deflate(&out, sh, &client, &msg);
    }
    free(msg.data);
    inflateEnd(&client);
    pmd_conn_release(&in);
    pmd_conn_release(&out);
    pmd_shared_free(sh);
    return 0;
}
