/* jwt.c — JSON Web Token verification: the compact form's three strict
 * base64url segments, the header's alg against the caller's allowed set,
 * the signature (HMAC, RSA PKCS#1 v1.5 or ECDSA P-256, all SHA-2, through
 * OpenSSL 3's EVP interfaces), then the registered claims exp, nbf, iss
 * and aud (jwt.h).
 *
 * JSON is read here only as far as verification needs: json.h's strict
 * scanner walks the top-level object of the header and of the claims, reads the members it checks
 * and skips the others.  A checked member named twice makes the token malformed (RFC 7519 §4 lets a
 * parser refuse duplicates), so what was checked here is what the caller's own JSON decoder
 * returns. */
/* Only OpenSSL 3's own interfaces: a deprecated call does not compile. */
#define OPENSSL_API_COMPAT 30000
#define OPENSSL_NO_DEPRECATED
#include "jwt.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "json.h"
#include "utf8.h"

struct jwt_pubkey {
    EVP_PKEY *pk;
    unsigned algs; /* JWT_RS256 or JWT_ES256 */
};

const char *jwt_status_str(jwt_status st)
{
    switch (st) {
    case JWT_OK:
        return "ok";
    case JWT_MALFORMED:
        return "malformed";
    case JWT_TOO_LARGE:
        return "token too large";
    case JWT_ALG_REFUSED:
        return "alg not allowed";
    case JWT_CRIT:
        return "crit not supported";
    case JWT_BAD_SIGNATURE:
        return "bad signature";
    case JWT_EXPIRED:
        return "expired";
    case JWT_NOT_YET_VALID:
        return "not yet valid";
    case JWT_MISSING_EXP:
        return "missing exp";
    case JWT_ISSUER:
        return "issuer mismatch";
    case JWT_AUDIENCE:
        return "audience mismatch";
    case JWT_INTERNAL:
        break;
    }
    return "internal error";
}

static const struct {
    const char *name;
    unsigned bit;
} jwt_algs[] = {
    {"HS256", JWT_HS256}, {"HS384", JWT_HS384}, {"HS512", JWT_HS512},
    {"RS256", JWT_RS256}, {"ES256", JWT_ES256},
};

unsigned jwt_alg_parse(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(jwt_algs) / sizeof(jwt_algs[0]); i++)
        if (len == 5 && memcmp(name, jwt_algs[i].name, 5) == 0)
            return jwt_algs[i].bit;
    return 0;
}

/* ---- keys ---- */

static const char *jwt_pubkey_kind(EVP_PKEY *pk, unsigned *algs)
{
    if (EVP_PKEY_is_a(pk, "RSA")) {
        /* RFC 7518 §3.3: 2048 bits or more. */
        if (EVP_PKEY_get_bits(pk) < 2048)
            return "RSA key under 2048 bits";
        *algs = JWT_RS256;
        return NULL;
    }
    if (EVP_PKEY_is_a(pk, "EC")) {
        char group[64];
        size_t glen = 0;
        if (EVP_PKEY_get_group_name(pk, group, sizeof(group), &glen) != 1 ||
            strcmp(group, "prime256v1") != 0)
            return "EC key not on P-256";
        *algs = JWT_ES256;
        return NULL;
    }
    return "not an RSA or EC P-256 key";
}

jwt_pubkey *jwt_pubkey_parse(const char *pem, size_t len, const char **err)
{
    EVP_PKEY *pk = NULL;
    OSSL_DECODER_CTX *dc =
        OSSL_DECODER_CTX_new_for_pkey(&pk, "PEM", NULL, NULL, EVP_PKEY_PUBLIC_KEY, NULL, NULL);
    if (!dc) {
        ERR_clear_error();
        *err = "out of memory";
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)pem;
    size_t n = len;
    int ok = OSSL_DECODER_from_data(dc, &p, &n);
    OSSL_DECODER_CTX_free(dc);
    ERR_clear_error(); /* a failed decode leaves errors that TLS code would read */
    if (!ok || !pk) {
        EVP_PKEY_free(pk);
        *err = "not a PEM public key";
        return NULL;
    }
    unsigned algs = 0;
    const char *why = jwt_pubkey_kind(pk, &algs);
    jwt_pubkey *k = why ? NULL : malloc(sizeof(*k));
    if (!k) {
        EVP_PKEY_free(pk);
        *err = why ? why : "out of memory";
        return NULL;
    }
    k->pk = pk;
    k->algs = algs;
    return k;
}

void jwt_pubkey_free(jwt_pubkey *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pk);
    free(k);
}

unsigned jwt_pubkey_algs(const jwt_pubkey *k)
{
    return k ? k->algs : 0;
}

const char *jwt_opts_check(const jwt_opts *o)
{
    unsigned all = JWT_HMAC_ALGS | JWT_PKEY_ALGS;
    if (!o->algs || (o->algs & ~all))
        return "no known algorithm allowed";
    /* One key for both kinds is the classic confusion: a public key's PEM
     * text used as an HMAC secret that anyone can compute. */
    if ((o->algs & JWT_HMAC_ALGS) && (o->algs & JWT_PKEY_ALGS))
        return "HMAC and public-key algorithms cannot be allowed together";
    if (o->algs & JWT_HMAC_ALGS) {
        if (!o->secret || !o->secret_len)
            return "the HMAC secret is empty";
        if (o->secret_len >= 10 && memcmp(o->secret, "-----BEGIN", 10) == 0)
            return "a PEM key is not an HMAC secret";
    } else {
        if (!o->pubkey)
            return "a public key is required";
        if (!(o->algs & o->pubkey->algs))
            return "the key serves none of the allowed algorithms";
    }
    if ((o->naud && !o->aud) || (o->niss && !o->iss))
        return "audience or issuer list missing";
    if (!isfinite(o->now))
        return "now must be a finite number";
    if (!isfinite(o->leeway) || o->leeway < 0)
        return "leeway must be a finite number >= 0";
    return NULL;
}

/* ---- base64url (RFC 4648 §5), strict: no padding, no other characters,
 * unused trailing bits zero, so one token has one spelling ---- */

static int b64u_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decoded size of n characters (at most). */
static size_t b64u_size(size_t n)
{
    return n / 4 * 3 + 2;
}

static int b64u_decode(const char *in, size_t n, unsigned char *out, size_t *outlen)
{
    if (n % 4 == 1)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64u_val((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* the unused low bits of the last character */
        return -1;
    *outlen = o;
    return 0;
}

/* ---- header and claims ---- */

typedef struct jwt_header {
    unsigned alg; /* 0: unknown or "none" */
    int have_alg, crit;
} jwt_header;

static int jwt_header_member(void *ctx, const unsigned char *key, size_t klen, json_scan *j)
{
    jwt_header *h = ctx;
    if (json_key_is(key, klen, "alg")) {
        unsigned char name[8];
        json_out o = {name, sizeof(name), 0};
        if (h->have_alg || json_string(j, &o))
            return -1;
        h->have_alg = 1;
        h->alg = o.len <= sizeof(name) ? jwt_alg_parse((const char *)name, o.len) : 0;
        return 0;
    }
    if (json_key_is(key, klen, "crit"))
        h->crit = 1;
    return json_skip(j, 1);
}

typedef struct jwt_claims {
    double exp, nbf;
    int have_exp, have_nbf;
    const unsigned char *iss, *aud; /* where the value starts; NULL: absent */
    const unsigned char *end;       /* of the claims */
} jwt_claims;

static int jwt_time_member(json_scan *j, int *have, double *v)
{
    if (*have || json_peek(j) == '"' || json_number(j, v))
        return -1;
    *have = 1;
    return 0;
}

/* aud: a string or an array of strings. */
static int jwt_aud_skip(json_scan *j)
{
    json_out none = {0};
    if (json_peek(j) == '"')
        return json_string(j, &none);
    if (json_peek(j) != '[')
        return -1;
    j->p++;
    if (json_peek(j) == ']') {
        j->p++;
        return 0;
    }
    for (;;) {
        if (json_peek(j) != '"' || json_string(j, &none))
            return -1;
        int c = json_peek(j);
        j->p++;
        if (c == ']')
            return 0;
        if (c != ',')
            return -1;
    }
}

static int jwt_claims_member(void *ctx, const unsigned char *key, size_t klen, json_scan *j)
{
    jwt_claims *c = ctx;
    json_out none = {0};
    if (json_key_is(key, klen, "exp"))
        return jwt_time_member(j, &c->have_exp, &c->exp);
    if (json_key_is(key, klen, "nbf"))
        return jwt_time_member(j, &c->have_nbf, &c->nbf);
    if (json_key_is(key, klen, "iss")) {
        if (c->iss)
            return -1;
        c->iss = j->p;
        return json_string(j, &none);
    }
    if (json_key_is(key, klen, "aud")) {
        if (c->aud)
            return -1;
        c->aud = j->p;
        return jwt_aud_skip(j);
    }
    return json_skip(j, 1);
}

/* The string at p (checked already), decoded into scratch, is one of
 * list[0..n). */
static int jwt_string_in(const unsigned char *p, const unsigned char *end, unsigned char *scratch,
                         size_t cap, const jwt_str *list, size_t n)
{
    json_scan j = {p, end};
    json_out o = {scratch, cap, 0};
    if (json_string(&j, &o) || o.len > cap)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (list[i].len == o.len && memcmp(list[i].s, scratch, o.len) == 0)
            return 1;
    return 0;
}

static int jwt_aud_ok(const jwt_claims *c, const jwt_opts *o, unsigned char *scratch, size_t cap)
{
    if (!c->aud)
        return o->naud == 0;
    if (o->naud == 0) /* RFC 7519 §4.1.3: meant for someone, and we are no one */
        return 0;
    json_scan j = {c->aud, c->end};
    if (json_peek(&j) == '"')
        return jwt_string_in(j.p, c->end, scratch, cap, o->aud, o->naud);
    j.p++; /* '[': its strings were checked by jwt_aud_skip */
    while (json_peek(&j) == '"') {
        if (jwt_string_in(j.p, c->end, scratch, cap, o->aud, o->naud))
            return 1;
        json_out none = {0};
        json_string(&j, &none);
        if (json_peek(&j) == ',')
            j.p++;
    }
    return 0;
}

static jwt_status jwt_claims_check(const unsigned char *p, size_t n, const jwt_opts *o,
                                   unsigned char *scratch)
{
    jwt_claims c = {0};
    c.end = p + n;
    if (json_object(p, n, jwt_claims_member, &c))
        return JWT_MALFORMED;
    if (!c.have_exp && o->require_exp)
        return JWT_MISSING_EXP;
    if (c.have_exp && !(o->now < c.exp + o->leeway))
        return JWT_EXPIRED;
    if (c.have_nbf && o->now + o->leeway < c.nbf)
        return JWT_NOT_YET_VALID;
    if (o->niss && (!c.iss || !jwt_string_in(c.iss, c.end, scratch, n, o->iss, o->niss)))
        return JWT_ISSUER;
    if (!jwt_aud_ok(&c, o, scratch, n))
        return JWT_AUDIENCE;
    return JWT_OK;
}

/* ---- signatures ---- */

static jwt_status jwt_check_hmac(unsigned alg, const jwt_opts *o, const char *data, size_t n,
                                 const unsigned char *sig, size_t slen)
{
    const char *md = alg == JWT_HS256 ? "SHA256" : alg == JWT_HS384 ? "SHA384" : "SHA512";
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mlen = 0;
    if (!EVP_Q_mac(NULL, "HMAC", NULL, md, NULL, o->secret, o->secret_len,
                   (const unsigned char *)data, n, mac, sizeof(mac), &mlen)) {
        ERR_clear_error();
        return JWT_INTERNAL;
    }
    if (slen != mlen || CRYPTO_memcmp(mac, sig, mlen) != 0)
        return JWT_BAD_SIGNATURE;
    return JWT_OK;
}

/* One INTEGER of an ECDSA-Sig-Value (DER) from 32 big-endian bytes:
 * leading zeros dropped, a zero put first when the top bit is set. */
static size_t jwt_der_int(unsigned char *out, const unsigned char *v)
{
    size_t i = 0;
    while (i < 31 && v[i] == 0)
        i++;
    size_t n = 32 - i, k = 0;
    int pad = (v[i] & 0x80) != 0;
    out[k++] = 0x02;
    out[k++] = (unsigned char)(n + (size_t)pad);
    if (pad)
        out[k++] = 0x00;
    memcpy(out + k, v + i, n);
    return k + n;
}

/* JWS carries ES256 as r||s, 32 bytes each (RFC 7518 §3.4); EVP wants
 * SEQUENCE { INTEGER r, INTEGER s } (at most 2 + 2 * 35 bytes). */
static size_t jwt_es256_der(const unsigned char *rs, unsigned char der[72])
{
    size_t n = jwt_der_int(der + 2, rs);
    n += jwt_der_int(der + 2 + n, rs + 32);
    der[0] = 0x30;
    der[1] = (unsigned char)n;
    return n + 2;
}

static jwt_status jwt_check_pkey(unsigned alg, const jwt_pubkey *k, const char *data, size_t n,
                                 const unsigned char *sig, size_t slen)
{
    unsigned char der[72];
    if (alg == JWT_ES256) {
        if (slen != 64)
            return JWT_BAD_SIGNATURE;
        slen = jwt_es256_der(sig, der);
        sig = der;
    } else if (slen != (size_t)EVP_PKEY_get_size(k->pk)) {
        return JWT_BAD_SIGNATURE;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) {
        ERR_clear_error();
        return JWT_INTERNAL;
    }
    int ok = EVP_DigestVerifyInit_ex(ctx, NULL, "SHA256", NULL, NULL, k->pk, NULL) == 1 &&
             EVP_DigestVerify(ctx, sig, slen, (const unsigned char *)data, n) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok ? JWT_OK : JWT_BAD_SIGNATURE;
}

/* ---- the token ---- */

size_t jwt_work_size(size_t len)
{
    /* three decoded segments, and a scratch as large as the claims */
    return 2 * len + 16;
}

/* The token's three segments, decoded one after the other into work. */
typedef struct jwt_parts {
    const char *signed_end; /* header.payload is [token, signed_end) */
    unsigned char *hdr, *claims, *sig, *scratch;
    size_t hdr_len, claims_len, sig_len;
} jwt_parts;

static int jwt_split(const char *t, size_t len, unsigned char *work, jwt_parts *pt)
{
    const char *end = t + len;
    const char *d1 = memchr(t, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(end - d1 - 1)) : NULL;
    if (!d2 || memchr(d2 + 1, '.', (size_t)(end - d2 - 1)))
        return -1;
    size_t hn = (size_t)(d1 - t), cn = (size_t)(d2 - d1 - 1), sn = (size_t)(end - d2 - 1);
    pt->signed_end = d2;
    pt->hdr = work;
    pt->claims = pt->hdr + b64u_size(hn);
    pt->sig = pt->claims + b64u_size(cn);
    pt->scratch = pt->sig + b64u_size(sn);
    if (b64u_decode(t, hn, pt->hdr, &pt->hdr_len) ||
        b64u_decode(d1 + 1, cn, pt->claims, &pt->claims_len) ||
        b64u_decode(d2 + 1, sn, pt->sig, &pt->sig_len))
        return -1;
    return 0;
}

jwt_status jwt_verify(const char *token, size_t len, const jwt_opts *o, void *work, size_t work_len,
                      jwt_result *out)
{
    if (len > JWT_MAX_TOKEN)
        return JWT_TOO_LARGE;
    if (work_len < jwt_work_size(len))
        return JWT_INTERNAL;
    jwt_parts pt;
    if (jwt_split(token, len, work, &pt))
        return JWT_MALFORMED;

    jwt_header h = {0};
    if (json_object(pt.hdr, pt.hdr_len, jwt_header_member, &h) || !h.have_alg)
        return JWT_MALFORMED;
    unsigned usable = o->algs & (o->pubkey ? o->pubkey->algs : JWT_HMAC_ALGS);
    if (!(h.alg & usable))
        return JWT_ALG_REFUSED;
    if (h.crit) /* RFC 7515 §4.1.11: no extension is understood here */
        return JWT_CRIT;

    size_t signed_len = (size_t)(pt.signed_end - token);
    jwt_status st = (h.alg & JWT_HMAC_ALGS)
                        ? jwt_check_hmac(h.alg, o, token, signed_len, pt.sig, pt.sig_len)
                        : jwt_check_pkey(h.alg, o->pubkey, token, signed_len, pt.sig, pt.sig_len);
    if (st != JWT_OK)
        return st;

    st = jwt_claims_check(pt.claims, pt.claims_len, o, pt.scratch);
    if (st != JWT_OK)
        return st;
    out->payload = (const char *)pt.claims;
    out->payload_len = pt.claims_len;
    out->alg = h.alg;
    return JWT_OK;
}
