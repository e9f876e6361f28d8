/* fuzz_jwt.c — jwt_verify (jwt.c) on any input, under each kind of key.
 *
 * The first byte picks the options: the allowed algorithms (HMAC with a
 * secret, or ES256 and RS256 with public keys), a leeway, require_exp, an
 * audience and an issuer.  The rest is read twice:
 *  - as a token, verified as it is: no crash, no read outside the token or
 *    the work area (both exact-size heap blocks); a token this harness
 *    cannot sign is never accepted under a public key;
 *  - as the claims of a token signed here with HS256 under the secret:
 *    then the signature always verifies, so the verdict is never "bad
 *    signature" or "alg not allowed", and when it is OK the claims handed
 *    back are exactly the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "jwt.h"

#define SECRET "fuzz-secret-fuzz-secret-fuzz-sec"

/* A P-256 key whose private half was thrown away after making it. */
static const char EC_PUB[] = "-----BEGIN PUBLIC KEY-----\n"
                             "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEt2sNVHFsozFXYgPomcoqKY6+n5eh\n"
                             "ncFpJ0E9CqkZMq97yupO36NHrTJOF8W/t7uZxgeOivJpdtxt9BB/rHaymQ==\n"
                             "-----END PUBLIC KEY-----\n";

static jwt_pubkey *fuzz_key(void)
{
    static jwt_pubkey *k;
    const char *err;
    if (!k && !(k = jwt_pubkey_parse(EC_PUB, strlen(EC_PUB), &err)))
        abort();
    return k;
}

static size_t b64u(const uint8_t *in, size_t n, char *out)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *o = out;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = acc << 8 | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            *o++ = al[acc >> bits & 63];
        }
    }
    if (bits)
        *o++ = al[acc << (6 - bits) & 63];
    return (size_t)(o - out);
}

static jwt_status fuzz_verify(const char *t, size_t n, const jwt_opts *o, jwt_result *r,
                              uint8_t **claims)
{
    char *copy = malloc(n ? n : 1);
    memcpy(copy, t, n);
    size_t wlen = jwt_work_size(n);
    uint8_t *w = malloc(wlen);
    jwt_status st = jwt_verify(copy, n, o, w, wlen, r);
    *claims = NULL;
    if (st == JWT_OK) {
        *claims = malloc(r->payload_len + 1);
        memcpy(*claims, r->payload, r->payload_len);
    }
    free(w);
    free(copy);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const jwt_str aud[] = {{"a", 1}, {"svc", 3}}, iss[] = {{"i", 1}};
    if (size < 1 || size > 6000)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    jwt_opts o = {0};
    o.now = 1700000000.0;
    o.leeway = (sel & 3) * 30;
    o.require_exp = (sel & 4) != 0;
    if (sel & 8) {
        o.aud = aud;
        o.naud = 2;
    }
    if (sel & 16) {
        o.iss = iss;
        o.niss = 1;
    }
    int pkey = (sel & 32) != 0;
    if (pkey) {
        o.algs = JWT_ES256 | JWT_RS256;
        o.pubkey = fuzz_key();
    } else {
        o.algs = (sel & 64) ? JWT_HS256 : JWT_HMAC_ALGS;
        o.secret = (const unsigned char *)SECRET;
        o.secret_len = strlen(SECRET);
    }
    if (jwt_opts_check(&o))
        abort();

    jwt_result r;
    uint8_t *claims;
    jwt_status st = fuzz_verify((const char *)data, size, &o, &r, &claims);
    if (st == JWT_OK && pkey) /* no ES256 key's private half here */
        abort();
    free(claims);

    /* the input as the claims of a token signed here */
    if (pkey)
        return 0;
    static const char hdr[] = "eyJhbGciOiJIUzI1NiJ9"; /* {"alg":"HS256"} */
    size_t cap = sizeof(hdr) + size / 3 * 4 + 8 + 1 + 44;
    char *t = malloc(cap);
    size_t n = sizeof(hdr) - 1;
    memcpy(t, hdr, n);
    t[n++] = '.';
    n += b64u(data, size, t + n);
    uint8_t mac[32];
    size_t mlen = 0;
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, SECRET, strlen(SECRET), (uint8_t *)t, n, mac,
                   sizeof(mac), &mlen))
        abort();
    t[n++] = '.';
    n += b64u(mac, mlen, t + n);
    st = fuzz_verify(t, n, &o, &r, &claims);
    free(t);
    if (n > JWT_MAX_TOKEN ? st != JWT_TOO_LARGE
                          : (st == JWT_BAD_SIGNATURE || st == JWT_ALG_REFUSED || st == JWT_CRIT))
        abort();
    if (st == JWT_OK && (r.payload_len != size || memcmp(claims, data, size) != 0))
        abort();
    free(claims);
    return 0;
}
