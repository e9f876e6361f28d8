/* jwt.h — verification of JSON Web Tokens (RFC 7519) in the JWS compact
 * form (RFC 7515): HS256/384/512, RS256 and ES256 through OpenSSL 3.
 *
 * Knows nothing of Lua: the binding (mgl_jwt.c) reads the options, hands
 * in a work area and decodes the claims it gets back.  The algorithm is
 * never taken from the token alone: a token whose header names an
 * algorithm the caller did not allow (or "none", or one the key cannot
 * serve) is refused before any signature is computed.  Nothing here
 * allocates besides OpenSSL's own calls, which are freed before return. */
#ifndef MG_JWT_H
#define MG_JWT_H

#include <stddef.h>

/* Tokens longer than this are refused unread ("token too large"). */
#define JWT_MAX_TOKEN 8192

/* The algorithms, as bits of an allowed set. */
enum {
    JWT_HS256 = 1 << 0,
    JWT_HS384 = 1 << 1,
    JWT_HS512 = 1 << 2,
    JWT_RS256 = 1 << 3,
    JWT_ES256 = 1 << 4,
};
#define JWT_HMAC_ALGS (JWT_HS256 | JWT_HS384 | JWT_HS512)
#define JWT_PKEY_ALGS (JWT_RS256 | JWT_ES256)

/* Why a token was refused; jwt_status_str gives the short reason the
 * Lua API returns ("expired", "bad signature"...). */
typedef enum {
    JWT_OK = 0,
    JWT_MALFORMED,     /* not three strict base64url segments of JSON objects */
    JWT_TOO_LARGE,     /* over JWT_MAX_TOKEN bytes */
    JWT_ALG_REFUSED,   /* header alg absent, "none", unknown or not allowed */
    JWT_CRIT,          /* a "crit" header: no extension is understood */
    JWT_BAD_SIGNATURE, /* the signature does not verify with the key */
    JWT_EXPIRED,       /* now >= exp + leeway */
    JWT_NOT_YET_VALID, /* now + leeway < nbf */
    JWT_MISSING_EXP,   /* require_exp and no exp claim */
    JWT_ISSUER,        /* iss absent or not one of the allowed */
    JWT_AUDIENCE,      /* no aud value is one of the allowed (or aud unexpected) */
    JWT_INTERNAL,      /* OpenSSL failed (out of memory) */
} jwt_status;

const char *jwt_status_str(jwt_status st);

/* The bit of the algorithm called name[0..len) ("HS256"...), 0 if none. */
unsigned jwt_alg_parse(const char *name, size_t len);

/* A parsed public key (RSA of 2048 bits or more, or EC on P-256). */
typedef struct jwt_pubkey jwt_pubkey;

/* Parse a PEM public key ("PUBLIC KEY" or "RSA PUBLIC KEY").  NULL with
 * *err set to what is wrong.  OpenSSL 3's decoders make this cost many
 * times a verification: parse once per key, not per token. */
jwt_pubkey *jwt_pubkey_parse(const char *pem, size_t len, const char **err);
void jwt_pubkey_free(jwt_pubkey *k);
/* The algorithms the key can verify: JWT_RS256 or JWT_ES256. */
unsigned jwt_pubkey_algs(const jwt_pubkey *k);

typedef struct jwt_str {
    const char *s;
    size_t len;
} jwt_str;

typedef struct jwt_opts {
    unsigned algs;               /* allowed: JWT_* bits, HMAC or public-key, not both */
    const unsigned char *secret; /* the HMAC secret (HS*) */
    size_t secret_len;
    const jwt_pubkey *pubkey; /* the public key (RS256/ES256) */
    const jwt_str *aud;       /* accepted audiences; naud 0: a token with aud is refused */
    size_t naud;
    const jwt_str *iss; /* accepted issuers; niss 0: iss is not checked */
    size_t niss;
    double now;      /* seconds since the epoch */
    double leeway;   /* seconds of clock skew allowed on exp and nbf */
    int require_exp; /* refuse a token without exp */
} jwt_opts;

/* NULL if the options can be used, else what is wrong with them (a
 * programming error, not a verdict on a token). */
const char *jwt_opts_check(const jwt_opts *o);

/* The work area jwt_verify needs for a token of len bytes. */
size_t jwt_work_size(size_t len);

typedef struct jwt_result {
    const char *payload; /* the claims: a JSON object, UTF-8, inside work */
    size_t payload_len;
    unsigned alg; /* the algorithm that verified it */
} jwt_result;

/* Verify token[0..len) under o (which jwt_opts_check accepted), in work
 * (jwt_work_size(len) bytes).  JWT_OK fills *out.  Never reads outside
 * token and work, whatever the input. */
jwt_status jwt_verify(const char *token, size_t len, const jwt_opts *o, void *work, size_t work_len,
                      jwt_result *out);

#endif
