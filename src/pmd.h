/* pmd.h — permessage-deflate (RFC 7692): negotiation, and compressing and
 * decompressing messages with zlib, with memory that is bounded and counted.
 *
 * This module knows nothing of sockets, frames or the gateway: the handshake
 * hands it the client's Sec-WebSocket-Extensions value, the readers hand it a
 * compressed message's payload (RSV1 set on its first frame) and get the
 * message back, and the senders hand it a message and put what comes back in
 * one frame with RSV1 set.
 *
 * Integration, in short:
 *   - handshake: pmd_negotiate(&listener_cfg, header, &params, resp,
 *     sizeof resp); when it returns 1, answer `Sec-WebSocket-Extensions:
 *     <resp>` and pmd_conn_init(&conn_pmd, &params).  Several header lines
 *     are one list: join them with ", " first.
 *   - reading: for each piece of a compressed message's payload, in order,
 *     pmd_inflate(...); the final piece has final = 1.  Unmasked payload
 *     only; control frames never go through here.
 *   - writing to one connection: pmd_wants(&params, len) says whether to
 *     compress; if so pmd_deflate(...) and send the payload with RSV1.
 *   - broadcast / publish: for each recipient, pmd_params_key(): 0 means it
 *     compresses with its own context (call pmd_deflate for it, in the order
 *     of its other messages); any other value names the compressed form, the
 *     same for every recipient with that key, made once with
 *     pmd_deflate_shared() (keep a few (key, frame) pairs for the duration
 *     of the broadcast, see PMD_SHARED_DEFLATERS).
 *   - pmd_conn_release() when the connection goes; pmd_shared_free() at exit.
 *
 * Memory.  Every zlib allocation is counted (pmd_conn_memory,
 * pmd_shared_memory).  zlib needs, per stream:
 *   deflate: 2^(window+2) + 2^(mem_level+9) bytes + ~6 KB of state
 *            (window 15, mem_level 8: ~262 KB);
 *   inflate: 2^window + ~7 KB of state (window 15: ~39 KB; the window is
 *            allocated at the first message).
 * Without context takeover in a direction a connection holds nothing for
 * it between messages: the server's messages are compressed by the
 * gateway-wide deflaters in pmd_shared (one per parameter set, reset after
 * each message: no per-connection stream at all); a client's message that
 * arrives in one piece is inflated by pmd_shared's one inflater; a message
 * in several pieces gets a stream of the connection's own for its duration,
 * freed at its end (a fresh inflater costs about what a reset one does;
 * a fresh deflater costs far more, hence the shared ones).  With
 * context takeover a direction's stream lives as long as the connection
 * (created at its first compressed message).
 *
 * Window bits 8.  zlib refuses a raw deflate stream with an 8-bit window, so
 * when server_max_window_bits=8 is negotiated the deflater is made with 9:
 * zlib never emits a distance over its window minus 262 bytes (250 with 9
 * bits), so every distance fits the client's 256-byte window.  Inflating
 * with 8 bits works in zlib and is used as negotiated. */
#ifndef MG_PMD_H
#define MG_PMD_H

#include <stddef.h>
#include <stdint.h>

/* What a listener allows (its `compression:` section).  pmd_config_default
 * fills the defaults; pmd_config_check says what is out of range. */
typedef struct pmd_config {
    int enabled;                    /* 0: never negotiate (default) */
    int server_max_window_bits;     /* 8..15, default 15: our deflate window at most */
    int client_max_window_bits;     /* 8..15, default 15: the client's window at most; below
                                       15, offers without client_max_window_bits are declined */
    int mem_level;                  /* 1..9, default 8: zlib's deflate memLevel */
    int level;                      /* 0..9, default 1: zlib's compression level */
    int server_no_context_takeover; /* 1 (default): always ask it, so that no connection keeps
                                       a deflater and broadcasts compress once */
    int client_no_context_takeover; /* 1 (default): always ask it, so that no connection keeps
                                       an inflater between messages */
    size_t min_size;                /* messages shorter than this go uncompressed; default 64 */
} pmd_config;

/* What was negotiated for one connection, with the config values that
 * matter when compressing, so that a connection needs nothing else. */
typedef struct pmd_params {
    uint8_t server_window_bits; /* 8..15, as negotiated (the deflater uses 9 for 8) */
    uint8_t client_window_bits; /* 8..15: the inflater's window */
    uint8_t server_no_context_takeover;
    uint8_t client_no_context_takeover;
    uint8_t mem_level;
    uint8_t level;
    uint32_t min_size;
} pmd_params;

/* Room pmd_negotiate needs for the longest response it writes. */
#define PMD_RESPONSE_MAX 160

void pmd_config_default(pmd_config *cfg);
/* 0 when every field is in range, else -1 with *why naming the field. */
int pmd_config_check(const pmd_config *cfg, const char **why);

/* Read a Sec-WebSocket-Extensions value (NUL-terminated; RFC 6455 9.1
 * grammar: comma-separated offers, each a token with `;`-separated
 * parameters, values a token or a quoted string) and accept the FIRST
 * permessage-deflate offer that cfg can honour (RFC 7692 7.1).  An offer is
 * declined, and the next one tried, when it has a parameter it does not
 * define, one twice, a value where none belongs, or a value out of range
 * (8..15, no leading zero); or when client_max_window_bits is limited below
 * 15 by cfg and the offer does not say the client supports the parameter.
 * Other extensions are skipped; so is a malformed offer (up to the next
 * comma outside quotes).  Returns 1 with *out and the response value in
 * resp (e.g. "permessage-deflate; server_no_context_takeover;
 * client_max_window_bits=10"), or 0 (also when cfg is not enabled or resp
 * is shorter than needed; PMD_RESPONSE_MAX always suffices). */
int pmd_negotiate(const pmd_config *cfg, const char *offers, pmd_params *out, char *resp,
                  size_t resp_len);

/* A growing byte buffer the caller owns (realloc'd here; free(data) when
 * done).  Output is appended after len: a caller may reserve room in front
 * (a frame header) by setting len before the call. */
typedef struct pmd_buf {
    unsigned char *data;
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
} pmd_buf;

struct pmd_stream; /* a zlib stream and the bytes it holds (pmd.c) */

/* One connection's compression state: embed it in the connection (it is
 * not referred to from elsewhere, so it may move) or allocate it. */
typedef struct pmd_conn {
    pmd_params p;
    uint8_t ended;          /* inf ended a deflate stream (BFINAL) at its last input */
    struct pmd_stream *inf; /* the client's messages; NULL when none is held */
    struct pmd_stream *def; /* ours, with context takeover only; NULL until used */
} pmd_conn;                 /* 32 bytes on 64-bit */

/* The gateway-wide streams (one set per process/thread: not locked). */
typedef struct pmd_shared pmd_shared;

/* Deflaters pmd_shared keeps, one per parameter key, least recently used
 * replaced: also a bound on how many distinct compressed forms a broadcast
 * usually needs. */
#define PMD_SHARED_DEFLATERS 4

pmd_shared *pmd_shared_new(void); /* NULL on OOM */
void pmd_shared_free(pmd_shared *sh);
/* Bytes of zlib memory (and stream structs) the shared streams hold. */
size_t pmd_shared_memory(const pmd_shared *sh);

void pmd_conn_init(pmd_conn *c, const pmd_params *p);
/* Free the connection's streams; c may be initialised again. */
void pmd_conn_release(pmd_conn *c);
/* Bytes of zlib memory (and stream structs) the connection holds now. */
size_t pmd_conn_memory(const pmd_conn *c);

/* Results of pmd_inflate / pmd_deflate below 0. */
enum {
    PMD_TOO_BIG = -1, /* the inflated message passed max_message: close 1009 */
    PMD_CORRUPT = -2, /* invalid compressed data: close 1007 (pmd.c says why) */
    PMD_NOMEM = -3    /* out of memory: close 1011 */
};

/* Inflate the next piece of a compressed message: in/len is payload as it
 * arrived (several frames' worth, or part of one: any split), final = 1 on
 * the piece that ends the message (then the 0x00 0x00 0xff 0xff tail of RFC
 * 7692 7.2.2 is supplied here).  The inflated bytes are appended to out;
 * out->len never passes max_message and out->cap grows to max_message at
 * most (a decompression bomb stops there, with PMD_TOO_BIG).  Returns how
 * many bytes this call appended (they end at out->data + out->len, so a
 * UTF-8 validator can take them as they come), or PMD_TOO_BIG, PMD_CORRUPT,
 * PMD_NOMEM; after an error the message's state is dropped and the
 * connection should be failed.  sh may be NULL (no shared inflater is
 * used).  The caller starts each message with out->len = 0 (or counts its
 * own bytes in front against max_message). */
long pmd_inflate(pmd_conn *c, pmd_shared *sh, const unsigned char *in, size_t len, int final,
                 uint64_t max_message, pmd_buf *out);

/* 1 if a message of len bytes should be sent compressed (len >= min_size). */
int pmd_wants(const pmd_params *p, size_t len);

/* Compress one whole message for connection c and append the payload of its
 * frame to out (RFC 7692 7.2.1: the trailing 0x00 0x00 0xff 0xff removed;
 * an empty message gives the single byte 0x00).  With
 * server_no_context_takeover the shared deflater for c's key is used (sh
 * must not be NULL then), else c's own deflater, kept between messages.
 * Returns the bytes appended, or PMD_NOMEM. */
long pmd_deflate(pmd_conn *c, pmd_shared *sh, const unsigned char *data, size_t len, pmd_buf *out);

/* Which compressed form a message to a connection with parameters p takes:
 * 0 when it depends on the connection's history (server context takeover),
 * else a key equal for exactly the parameter sets whose output is the same
 * (effective window bits, mem_level, level). */
uint32_t pmd_params_key(const pmd_params *p);

/* Compress one message without context, for every connection whose
 * pmd_params_key equals that of p (p must have server_no_context_takeover);
 * same output format and results as pmd_deflate. */
long pmd_deflate_shared(pmd_shared *sh, const pmd_params *p, const unsigned char *data, size_t len,
                        pmd_buf *out);

#endif
