/* hsmatch.h — what an upgrade request is matched against: the listener's
 * paths, the origin allow-list, the offered subprotocols.  Pure functions
 * over strings (config.c validates with them, handshake.c matches with
 * them, unit tests and the handshake fuzzer drive them). */
#ifndef MG_HSMATCH_H
#define MG_HSMATCH_H

#include <stddef.h>

/* The longest subprotocol list and name libwebsockets takes: it copies the
 * Sec-WebSocket-Protocol header into a 128-byte buffer (lws_hdr_copy with
 * 127: the value must be shorter) and each name into 64 bytes
 * (lws_tokenize_cstr: shorter than 63).  Beyond either it drops the upgrade
 * without an answer, so moongate answers 400 first. */
#define HSMATCH_PROTOCOLS_MAX 126
#define HSMATCH_PROTOCOL_NAME_MAX 62

/* A listener path entry: starts with '/', '*' only as its last character
 * (a prefix), no space, control character, '?' or '#'.  NULL when valid,
 * else why not. */
const char *hsmatch_path_invalid(const char *entry);

/* The entry of paths[0..n-1] that path matches, or -1.  Exact entries
 * first; then, of the prefix entries (/api/ and a star matches every path that
 * starts with "/api/"), the longest prefix; equal prefixes go by list
 * order. */
int hsmatch_path(char *const *paths, size_t n, const char *path);

/* An RFC 7230 token (what a subprotocol name must be): one or more of
 * ALPHA DIGIT !#$%&'*+-.^_`|~ and nothing else. */
int hsmatch_is_token(const char *s, size_t len);

/* The names in a Sec-WebSocket-Protocol value, in the client's order:
 * written to out as "name\0name\0...", their count returned.  Elements are
 * separated by commas with optional spaces or tabs around them; empty
 * elements are skipped (RFC 7230 section 7).  -1 when an element is not a
 * token or out (cap bytes) is too small. */
int hsmatch_protocols(const char *list, char *out, size_t cap);

/* Whether libwebsockets can take the list: it walks it with lws_tokenize
 * (its own flags) up to the first name of one of the vhost's protocols and
 * binds that one.  NULL when it can, with the first name written to first
 * (cap bytes, at least HSMATCH_PROTOCOL_NAME_MAX + 1); else why not (too
 * long, the first name too long, a list lws's tokenizer refuses before its
 * first name, such as one that starts with a number or a comma). */
const char *hsmatch_protocols_lws(const char *list, char *first, size_t cap);

/* Whether name is one of the n names in "name\0name\0..." (exact, case
 * matters as RFC 6455 compares subprotocols as strings). */
int hsmatch_name_in(const char *names, int n, const char *name);

/* An origin allow-list entry: scheme://host[:port], the host possibly
 * "*.example.com" (any subdomain of example.com, not example.com itself),
 * nothing after the port.  NULL when valid, else why not. */
const char *hsmatch_origin_invalid(const char *entry);

/* Whether an Origin header value is allowed by entries[0..n-1]: scheme,
 * host and port compared as RFC 6454 serializes them (case aside; a
 * scheme's default port written or not is the same origin).  An Origin
 * that does not parse ("null", a list) is not allowed. */
int hsmatch_origin_allowed(char *const *entries, size_t n, const char *origin);

#endif
