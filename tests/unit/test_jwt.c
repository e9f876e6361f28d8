/* test_jwt.c — jwt.c: JSON Web Token verification.
 *
 * Vectors from elsewhere: RFC 7515 appendix A.1 (HS256), and tokens signed
 * by Debian's python3-jwt 2.6 (an independent implementation) with keys
 * made by python3-cryptography: HS256/384/512, RS256 (an SPKI and a PKCS#1
 * PEM of the same key) and ES256, among them signatures whose r starts
 * with a zero byte or has its top bit set (the r||s to DER conversion).
 * Then tokens forged here (HS256 over any header and claims) for what
 * python3-jwt will not produce: alg none, crit, duplicate claims, escapes,
 * bad JSON; strict base64url; every refusal reason; the option checks; and
 * every prefix of a valid token.  Tokens and work areas are exact-size
 * heap copies, so a read past either end shows under AddressSanitizer. */
#include "jwt.h"
#include "testlib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* ---- python3-jwt vectors: claims {"sub": "alice", "iss":
 * "https://issuer.example", "aud": ["svc-a", "svc-b"], "exp": 1700000600,
 * "nbf": 1699999900, "iat": 1699999900, "name": "Alïce 😀"} ---- */

#define NOW 1700000000.0
#define SECRET "a-32-byte-secret-for-hmac-tests!"

static const char RSA_PUB[] = "-----BEGIN PUBLIC KEY-----\n"
                              "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEArSvm+CDow4YHibPr0xw8\n"
                              "QnyE64vFqn+lQeVZX3nwnSishnBO8HNiPuyxLLCiGMyUHyZvl3dT7K/ImirCJiYG\n"
                              "kxRNvRZ0ZC0a2f9MxTpabM53wiYJs3l7HEpdJrpuCbWsydyKLJjRNseEBr8l8ZSO\n"
                              "FsQq0XXSmYQ+M0FRdD9RZUF5Qgh8vb0p//JFzunX6crvVyDNwDVd7khcXyS685qC\n"
                              "K2c9JI6td89Z4HRkRw99mWH7LN98tg30lX7YAhnC76+5S+IlHAETNDfkIoVqjkUM\n"
                              "p6/LsYe+FRCeANtu5rSGEyn1HZ8KSj/IJEiGnO+tXLMj6qYTaUi1XMefmHVARaZg\n"
                              "AQIDAQAB\n"
                              "-----END PUBLIC KEY-----\n";

static const char RSA_PUB_PKCS1[] =
    "-----BEGIN RSA PUBLIC KEY-----\n"
    "MIIBCgKCAQEArSvm+CDow4YHibPr0xw8QnyE64vFqn+lQeVZX3nwnSishnBO8HNi\n"
    "PuyxLLCiGMyUHyZvl3dT7K/ImirCJiYGkxRNvRZ0ZC0a2f9MxTpabM53wiYJs3l7\n"
    "HEpdJrpuCbWsydyKLJjRNseEBr8l8ZSOFsQq0XXSmYQ+M0FRdD9RZUF5Qgh8vb0p\n"
    "//JFzunX6crvVyDNwDVd7khcXyS685qCK2c9JI6td89Z4HRkRw99mWH7LN98tg30\n"
    "lX7YAhnC76+5S+IlHAETNDfkIoVqjkUMp6/LsYe+FRCeANtu5rSGEyn1HZ8KSj/I\n"
    "JEiGnO+tXLMj6qYTaUi1XMefmHVARaZgAQIDAQAB\n"
    "-----END RSA PUBLIC KEY-----\n";

static const char RSA_SMALL_PUB[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC3vJEbO28nnJxBXAi5wPoRQjOW\n"
    "/6E9FQUyeVvC/laxI90y51TGp6fknJeUzTUZ8/cQFKnWji0/wGRA5Ahh7/ZqpFY6\n"
    "VWNoPxokTaAk+gjb8JJJlpjyLhb+NiKMacwjuZ5H8zNGGAXCs4MzI12l9eV+RHuZ\n"
    "ZaWtFPzFTsw3JJg5hwIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

static const char EC_PUB[] = "-----BEGIN PUBLIC KEY-----\n"
                             "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEiI8cQOybD9I5qTBO2/JLAn+v7DS\n"
                             "62D1NBx9YVlU4wc7CJrX/FoFbFSPxruT0NgzTK7YqFkQPjkDX/KpKk4Jyw==\n"
                             "-----END PUBLIC KEY-----\n";

static const char EC384_PUB[] = "-----BEGIN PUBLIC KEY-----\n"
                                "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAElelUURI/WOaeGP/z1frOOQOujW/F+6hZ\n"
                                "M5PPRO835gmk4pv/MsP9ZpW++VsekuFrGr9Tia3CFzDtPNR72TC3LP5khoQIFGbu\n"
                                "EPeak6bK+uHOqysSIb7X9Fd7+hZISccb\n"
                                "-----END PUBLIC KEY-----\n";

static const char TOK_HS256[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImlzcyI6Imh0dHBzOi8vaXNzdWVyLmV"
    "4YW1wbGUiLCJhdWQiOlsic3ZjLWEiLCJzdmMtYiJdLCJleHAiOjE3MDAwMDA2MDAsIm5iZiI6MTY5OTk5OTkwMCw"
    "iaWF0IjoxNjk5OTk5OTAwLCJuYW1lIjoiQWxcdTAwZWZjZSBcdWQ4M2RcdWRlMDAifQ.8ImjHCuG5WkqtKQHbwzk"
    "9advGficriOPznRU2PAmpHg";

static const char TOK_HS384[] =
    "eyJhbGciOiJIUzM4NCIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImlzcyI6Imh0dHBzOi8vaXNzdWVyLmV"
    "4YW1wbGUiLCJhdWQiOlsic3ZjLWEiLCJzdmMtYiJdLCJleHAiOjE3MDAwMDA2MDAsIm5iZiI6MTY5OTk5OTkwMCw"
    "iaWF0IjoxNjk5OTk5OTAwLCJuYW1lIjoiQWxcdTAwZWZjZSBcdWQ4M2RcdWRlMDAifQ.Vh5xl5EKAXQvS9GshIJX"
    "BM8oifkNUqkBrC7NSfQ5VNClX3Eb4h8gmncECr725iVv";

static const char TOK_HS512[] =
    "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImlzcyI6Imh0dHBzOi8vaXNzdWVyLmV"
    "4YW1wbGUiLCJhdWQiOlsic3ZjLWEiLCJzdmMtYiJdLCJleHAiOjE3MDAwMDA2MDAsIm5iZiI6MTY5OTk5OTkwMCw"
    "iaWF0IjoxNjk5OTk5OTAwLCJuYW1lIjoiQWxcdTAwZWZjZSBcdWQ4M2RcdWRlMDAifQ.ybAsnd3B1wQvPeXz9XPq"
    "qcnazXfUSIuSey1SOW_hdtrKh-aU1m_EePihs046pDTjUd7EeYvDOibV4OTGdwDMRQ";

static const char TOK_RS256[] =
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImlzcyI6Imh0dHBzOi8vaXNzdWVyLmV"
    "4YW1wbGUiLCJhdWQiOlsic3ZjLWEiLCJzdmMtYiJdLCJleHAiOjE3MDAwMDA2MDAsIm5iZiI6MTY5OTk5OTkwMCw"
    "iaWF0IjoxNjk5OTk5OTAwLCJuYW1lIjoiQWxcdTAwZWZjZSBcdWQ4M2RcdWRlMDAifQ.FczWTHbPlMmVFHWviwTJ"
    "dPlxSwNf7CyyQAwFbRtNQGHtMDnPAnttIqPiIe_3gde2kAEPtoea01SeWaJ5Yc_Ynhf-VKhmcOo3lmEZHjy7lSot"
    "GJRpuQabahxbvGP6D_uYYiCQDH_ShBdNdfJnBhXcF98CSRjC7w0-5qKsY3LZCKDc02bcRZ9pIsEk3u1Q2ICIkHs2"
    "Uoxt9gLiCBVH5SMozon7_HlySjz0K9-Ipb6N-UDD_0aVHBMSIt30SaCeUUYCyV0a5PVNepNBXIv13W1NaKfN9JIB"
    "Z6JJcElQJaH0pSXoVGMYqSHLbrkv0TAsPoDJZKGo-KtFHZkr7GEVuC8PeA";

static const char TOK_ES_LOW[] =
    "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImlzcyI6Imh0dHBzOi8vaXNzdWVyLmV"
    "4YW1wbGUiLCJhdWQiOlsic3ZjLWEiLCJzdmMtYiJdLCJleHAiOjE3MDAwMDA2MDAsIm5iZiI6MTY5OTk5OTkwMCw"
    "iaWF0IjoxNjk5OTk5OTAwLCJuYW1lIjoiQWxcdTAwZWZjZSBcdWQ4M2RcdWRlMDAiLCJuIjoyfQ.VrOyAUkmHSbH"
    "3v8wt6qCksdk_syaCotoN_i9pkWBmdAyjzIX1kDK6clnvyFlETWi4l5cQvW75DU5hzX-cPii3w";

static const char TOK_ES_RHIGH[] =
    "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImlzcyI6Imh0dHBzOi8vaXNzdWVyLmV"
    "4YW1wbGUiLCJhdWQiOlsic3ZjLWEiLCJzdmMtYiJdLCJleHAiOjE3MDAwMDA2MDAsIm5iZiI6MTY5OTk5OTkwMCw"
    "iaWF0IjoxNjk5OTk5OTAwLCJuYW1lIjoiQWxcdTAwZWZjZSBcdWQ4M2RcdWRlMDAiLCJuIjo3fQ.pjSlKL4K9Viz"
    "Gf6PQr_Nt4P5lPF1KFDbU-9_ofbXr6eKZCaoJ77d7M4EJklqiPbErDKvywZElSJSJFaBaBBc1A";

static const char TOK_ES_R0[] =
    "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImlzcyI6Imh0dHBzOi8vaXNzdWVyLmV"
    "4YW1wbGUiLCJhdWQiOlsic3ZjLWEiLCJzdmMtYiJdLCJleHAiOjE3MDAwMDA2MDAsIm5iZiI6MTY5OTk5OTkwMCw"
    "iaWF0IjoxNjk5OTk5OTAwLCJuYW1lIjoiQWxcdTAwZWZjZSBcdWQ4M2RcdWRlMDAiLCJuIjo1NzB9.AOh38N27LW"
    "EEk4qo9pjhhfP-9kfRb68x2JPVNaRZf6s0DcImlFY2wxL8p777JcVhJKe9xlwL-2z5UaK-nDI7CA";

static const char TOK_CONFUSION[] =
    "eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAiYWxpY2UiLCAiaXNzIjogImh0dHBzOi8vaXN"
    "zdWVyLmV4YW1wbGUiLCAiYXVkIjogWyJzdmMtYSIsICJzdmMtYiJdLCAiZXhwIjogMTcwMDAwMDYwMCwgIm5iZiI"
    "6IDE2OTk5OTk5MDAsICJpYXQiOiAxNjk5OTk5OTAwLCAibmFtZSI6ICJBbFx1MDBlZmNlIFx1ZDgzZFx1ZGUwMCJ"
    "9.o39yVXlUpfBBmr02hLwFsP6eUP7H_-24IqNBGCa1r9g";

/* ---- helpers ---- */

static char *b64u(const unsigned char *in, size_t n)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(n / 3 * 4 + 5), *o = out;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        *o++ = al[v >> 18];
        *o++ = al[v >> 12 & 63];
        *o++ = al[v >> 6 & 63];
        *o++ = al[v & 63];
    }
    if (n - i == 1) {
        *o++ = al[in[i] >> 2];
        *o++ = al[(in[i] & 3) << 4];
    } else if (n - i == 2) {
        unsigned v = (unsigned)in[i] << 8 | in[i + 1];
        *o++ = al[v >> 10];
        *o++ = al[v >> 4 & 63];
        *o++ = al[(v & 15) << 2];
    }
    *o = '\0';
    return out;
}

/* A token of hdr.claims signed with HMAC-SHA256 under SECRET, whatever
 * the header says. */
static char *forge_n(const char *hdr, const char *claims, size_t claims_len)
{
    char *h = b64u((const unsigned char *)hdr, strlen(hdr));
    char *c = b64u((const unsigned char *)claims, claims_len);
    size_t n = strlen(h) + strlen(c) + 1;
    char *t = malloc(n + 90);
    snprintf(t, n + 1, "%s.%s", h, c);
    unsigned char mac[32];
    size_t mlen = 0;
    EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, SECRET, strlen(SECRET), (unsigned char *)t, n,
              mac, sizeof(mac), &mlen);
    char *s = b64u(mac, mlen);
    snprintf(t + n, 90, ".%s", s);
    free(h);
    free(c);
    free(s);
    return t;
}

static char *forge(const char *hdr, const char *claims)
{
    return forge_n(hdr, claims, strlen(claims));
}

#define HS256_HDR "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static jwt_opts hs_opts(unsigned algs)
{
    jwt_opts o = {0};
    o.algs = algs;
    o.secret = (const unsigned char *)SECRET;
    o.secret_len = strlen(SECRET);
    o.now = NOW;
    return o;
}

static jwt_result last;
static char last_claims[8192];

/* jwt_verify on exact-size heap copies of token[0..len) and the work area. */
static jwt_status verify_n(const char *token, size_t len, const jwt_opts *o)
{
    CHECK(jwt_opts_check(o) == NULL);
    char *t = malloc(len ? len : 1);
    memcpy(t, token, len);
    size_t wlen = jwt_work_size(len);
    void *w = malloc(wlen);
    memset(&last, 0, sizeof(last));
    jwt_status st = jwt_verify(len ? t : t + 1, len, o, w, wlen, &last);
    last_claims[0] = '\0';
    if (st == JWT_OK) {
        CHECK(last.payload_len >= 2 && memchr(last.payload, '{', last.payload_len));
        if (last.payload_len < sizeof(last_claims)) {
            memcpy(last_claims, last.payload, last.payload_len);
            last_claims[last.payload_len] = '\0';
        }
    }
    free(w);
    free(t);
    return st;
}

static jwt_status verify(const char *token, const jwt_opts *o)
{
    return verify_n(token, strlen(token), o);
}

/* Verify a forged token and free it. */
static jwt_status verify_forged(char *token, const jwt_opts *o)
{
    jwt_status st = verify(token, o);
    free(token);
    return st;
}

#define CHECK_ST(expr, want)                                                                       \
    do {                                                                                           \
        jwt_status st_ = (expr);                                                                   \
        CHECK_STR(jwt_status_str(st_), jwt_status_str(want));                                      \
    } while (0)

static jwt_pubkey *key(const char *pem)
{
    const char *err = NULL;
    jwt_pubkey *k = jwt_pubkey_parse(pem, strlen(pem), &err);
    CHECK(k != NULL);
    if (!k)
        fprintf(stderr, "  key: %s\n", err);
    return k;
}

static const jwt_str AUD_B[] = {{"svc-b", 5}};
static const jwt_str ISS[] = {{"https://issuer.example", 22}};

/* ---- cases ---- */

static void test_rfc7515_a1(void)
{
    static const char tok[] = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
                              ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"
                              "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
                              ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    /* the JWK's k, decoded */
    static const unsigned char k[] = {
        3,   35,  53, 75,  43,  15, 165, 188, 131, 126, 6,   101, 119, 123, 166, 143,
        90,  179, 40, 230, 240, 84, 201, 40,  169, 15,  132, 178, 210, 80,  46,  191,
        211, 251, 90, 146, 210, 6,  71,  239, 150, 138, 180, 195, 119, 98,  61,  34,
        61,  46,  33, 114, 5,   46, 79,  8,   192, 205, 154, 245, 103, 208, 128, 163};
    jwt_opts o = {0};
    o.algs = JWT_HS256;
    o.secret = k;
    o.secret_len = sizeof(k);
    o.now = 1300819370;
    CHECK_ST(verify(tok, &o), JWT_OK);
    CHECK(last.alg == JWT_HS256);
    CHECK(strstr(last_claims, "\"iss\":\"joe\"") != NULL);
    o.now = 1300819380; /* exp itself: no longer before it */
    CHECK_ST(verify(tok, &o), JWT_EXPIRED);
    o.leeway = 10;
    CHECK_ST(verify(tok, &o), JWT_OK);
    o.algs = JWT_HS384;
    CHECK_ST(verify(tok, &o), JWT_ALG_REFUSED);
}

static void test_hmac_vectors(void)
{
    jwt_opts o = hs_opts(JWT_HMAC_ALGS);
    o.aud = AUD_B;
    o.naud = 1;
    o.iss = ISS;
    o.niss = 1;
    o.require_exp = 1;
    CHECK_ST(verify(TOK_HS256, &o), JWT_OK);
    CHECK(last.alg == JWT_HS256);
    CHECK(strstr(last_claims, "\"sub\":\"alice\"") != NULL);
    CHECK_ST(verify(TOK_HS384, &o), JWT_OK);
    CHECK(last.alg == JWT_HS384);
    CHECK_ST(verify(TOK_HS512, &o), JWT_OK);
    CHECK(last.alg == JWT_HS512);
    o.algs = JWT_HS256;
    CHECK_ST(verify(TOK_HS256, &o), JWT_OK);
    CHECK_ST(verify(TOK_HS384, &o), JWT_ALG_REFUSED);
    CHECK_ST(verify(TOK_HS512, &o), JWT_ALG_REFUSED);
    o.secret = (const unsigned char *)"another secret, also 32 bytes...";
    CHECK_ST(verify(TOK_HS256, &o), JWT_BAD_SIGNATURE);
    o.secret_len = 31; /* a prefix of the right secret is another secret */
    o.secret = (const unsigned char *)SECRET;
    CHECK_ST(verify(TOK_HS256, &o), JWT_BAD_SIGNATURE);
}

static void test_rs256(void)
{
    jwt_pubkey *k = key(RSA_PUB), *k1 = key(RSA_PUB_PKCS1);
    CHECK(jwt_pubkey_algs(k) == JWT_RS256 && jwt_pubkey_algs(k1) == JWT_RS256);
    jwt_opts o = {0};
    o.algs = JWT_RS256;
    o.pubkey = k;
    o.now = NOW;
    o.aud = AUD_B;
    o.naud = 1;
    CHECK_ST(verify(TOK_RS256, &o), JWT_OK);
    CHECK(last.alg == JWT_RS256);
    o.pubkey = k1;
    CHECK_ST(verify(TOK_RS256, &o), JWT_OK);
    /* HS256 with the public key's PEM text as the secret: refused by alg */
    CHECK_ST(verify(TOK_CONFUSION, &o), JWT_ALG_REFUSED);
    CHECK_ST(verify(TOK_HS256, &o), JWT_ALG_REFUSED);
    CHECK_ST(verify(TOK_ES_LOW, &o), JWT_ALG_REFUSED);
    /* ES256 allowed too, but this key cannot serve it */
    o.algs = JWT_RS256 | JWT_ES256;
    CHECK(jwt_opts_check(&o) == NULL);
    CHECK_ST(verify(TOK_ES_LOW, &o), JWT_ALG_REFUSED);
    CHECK_ST(verify(TOK_RS256, &o), JWT_OK);
    /* the signature one byte short (canonical: 340 characters), one
     * character changed, three zero bytes more */
    size_t n = strlen(TOK_RS256);
    CHECK_ST(verify_n(TOK_RS256, n - 2, &o), JWT_BAD_SIGNATURE);
    char *t = malloc(n + 8);
    memcpy(t, TOK_RS256, n + 1);
    t[n - 10] = t[n - 10] == 'A' ? 'B' : 'A';
    CHECK_ST(verify(t, &o), JWT_BAD_SIGNATURE);
    memcpy(t, TOK_RS256, n + 1);
    memcpy(t + n, "AAAA", 5);
    CHECK_ST(verify(t, &o), JWT_BAD_SIGNATURE);
    free(t);
    jwt_pubkey_free(k);
    jwt_pubkey_free(k1);
}

static void test_es256(void)
{
    jwt_pubkey *k = key(EC_PUB);
    CHECK(jwt_pubkey_algs(k) == JWT_ES256);
    jwt_opts o = {0};
    o.algs = JWT_ES256;
    o.pubkey = k;
    o.now = NOW;
    o.aud = AUD_B;
    o.naud = 1;
    CHECK_ST(verify(TOK_ES_LOW, &o), JWT_OK);
    CHECK(last.alg == JWT_ES256);
    CHECK_ST(verify(TOK_ES_RHIGH, &o), JWT_OK); /* DER needs a zero before r and s */
    CHECK_ST(verify(TOK_ES_R0, &o), JWT_OK);    /* r's leading zero byte dropped */
    CHECK_ST(verify(TOK_RS256, &o), JWT_ALG_REFUSED);
    /* 64 bytes exactly: 63 (84 characters) or 65 are refused */
    size_t n = strlen(TOK_ES_LOW);
    CHECK_ST(verify_n(TOK_ES_LOW, n - 2, &o), JWT_BAD_SIGNATURE);
    char *t = malloc(n + 4);
    memcpy(t, TOK_ES_LOW, n + 1);
    memcpy(t + n, "AA", 3);
    CHECK_ST(verify(t, &o), JWT_BAD_SIGNATURE);
    /* one character of r changed: well-formed, wrong */
    const char *dot = strrchr(TOK_ES_LOW, '.');
    memcpy(t, TOK_ES_LOW, n + 1);
    t[dot - TOK_ES_LOW + 5] = t[dot - TOK_ES_LOW + 5] == 'A' ? 'B' : 'A';
    CHECK_ST(verify(t, &o), JWT_BAD_SIGNATURE);
    free(t);
    jwt_pubkey_free(k);
}

static void test_pubkey_parse(void)
{
    const char *err = NULL;
    CHECK(jwt_pubkey_parse(RSA_SMALL_PUB, strlen(RSA_SMALL_PUB), &err) == NULL);
    CHECK_STR(err, "RSA key under 2048 bits");
    CHECK(jwt_pubkey_parse(EC384_PUB, strlen(EC384_PUB), &err) == NULL);
    CHECK_STR(err, "EC key not on P-256");
    CHECK(jwt_pubkey_parse(SECRET, strlen(SECRET), &err) == NULL);
    CHECK_STR(err, "not a PEM public key");
    CHECK(jwt_pubkey_parse("", 0, &err) == NULL);
    CHECK(jwt_pubkey_parse(RSA_PUB, 100, &err) == NULL); /* cut short */
    jwt_pubkey_free(NULL);
}

static void test_opts_check(void)
{
    jwt_pubkey *rk = key(RSA_PUB), *ek = key(EC_PUB);
    jwt_opts o = hs_opts(JWT_HS256);
    CHECK(jwt_opts_check(&o) == NULL);
    o.algs = 0;
    CHECK(jwt_opts_check(&o) != NULL);
    o.algs = 1u << 20;
    CHECK(jwt_opts_check(&o) != NULL);
    o.algs = JWT_HS256 | JWT_RS256;
    o.pubkey = rk;
    CHECK_STR(jwt_opts_check(&o), "HMAC and public-key algorithms cannot be allowed together");
    o = hs_opts(JWT_HS256);
    o.secret_len = 0;
    CHECK_STR(jwt_opts_check(&o), "the HMAC secret is empty");
    o.secret = (const unsigned char *)RSA_PUB;
    o.secret_len = strlen(RSA_PUB);
    CHECK_STR(jwt_opts_check(&o), "a PEM key is not an HMAC secret");
    o = hs_opts(JWT_RS256);
    CHECK_STR(jwt_opts_check(&o), "a public key is required");
    o.pubkey = ek;
    CHECK_STR(jwt_opts_check(&o), "the key serves none of the allowed algorithms");
    o.pubkey = rk;
    CHECK(jwt_opts_check(&o) == NULL);
    o.leeway = -1;
    CHECK(jwt_opts_check(&o) != NULL);
    o.leeway = INFINITY;
    CHECK(jwt_opts_check(&o) != NULL);
    o.leeway = 0;
    o.now = NAN;
    CHECK(jwt_opts_check(&o) != NULL);
    jwt_pubkey_free(rk);
    jwt_pubkey_free(ek);
}

static void test_alg_header(void)
{
    jwt_opts o = hs_opts(JWT_HMAC_ALGS);
    const char *c = "{\"sub\":\"x\"}";
    CHECK_ST(verify_forged(forge(HS256_HDR, c), &o), JWT_OK);
    CHECK_ST(verify_forged(forge("{\"alg\":\"none\"}", c), &o), JWT_ALG_REFUSED);
    CHECK_ST(verify_forged(forge("{\"alg\":\"hs256\"}", c), &o), JWT_ALG_REFUSED);
    CHECK_ST(verify_forged(forge("{\"alg\":\"HS256x\"}", c), &o), JWT_ALG_REFUSED);
    CHECK_ST(verify_forged(forge("{\"alg\":\"a-very-long-algorithm-name\"}", c), &o),
             JWT_ALG_REFUSED);
    CHECK_ST(verify_forged(forge("{\"alg\":\"HS\\u0032\\u00356\"}", c), &o), JWT_OK);
    CHECK_ST(verify_forged(forge("{\"typ\":\"JWT\"}", c), &o), JWT_MALFORMED);
    CHECK_ST(verify_forged(forge("{\"alg\":256}", c), &o), JWT_MALFORMED);
    CHECK_ST(verify_forged(forge("{\"alg\":\"HS256\",\"alg\":\"HS256\"}", c), &o), JWT_MALFORMED);
    CHECK_ST(verify_forged(forge("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", c), &o), JWT_CRIT);
    CHECK_ST(
        verify_forged(forge("{\"alg\":\"HS256\",\"kid\":\"k1\",\"x\":[1,{\"y\":null}]}", c), &o),
        JWT_OK);
    /* alg none, the classic form: empty signature */
    char *t = forge("{\"alg\":\"none\"}", c);
    strrchr(t, '.')[1] = '\0';
    CHECK_ST(verify_forged(t, &o), JWT_ALG_REFUSED);
    /* a valid token's signature without its own alg: HS384 header */
    CHECK_ST(verify_forged(forge("{\"alg\":\"HS384\"}", c), &o), JWT_BAD_SIGNATURE);
}

static void test_base64url(void)
{
    jwt_opts o = hs_opts(JWT_HS256);
    size_t n = strlen(TOK_HS256);
    char *t = malloc(n + 8);
    const char *bad[] = {"+", "/", "=", " ", "\n", "\x80", "%"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* in each segment */
        size_t at[] = {3, (size_t)(strchr(TOK_HS256, '.') - TOK_HS256) + 3, n - 3};
        for (int s = 0; s < 3; s++) {
            memcpy(t, TOK_HS256, n + 1);
            t[at[s]] = bad[i][0];
            CHECK_ST(verify(t, &o), JWT_MALFORMED);
        }
    }
    /* padding added to the signature */
    memcpy(t, TOK_HS256, n + 1);
    memcpy(t + n, "=", 2);
    CHECK_ST(verify(t, &o), JWT_MALFORMED);
    /* the signature's last character with its unused low bits set: 32
     * bytes are 43 characters, the last carrying 4 bits and 2 unused */
    memcpy(t, TOK_HS256, n + 1);
    const char *al = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int v = (int)(strchr(al, t[n - 1]) - al);
    t[n - 1] = al[v | 1];
    CHECK_ST(verify(t, &o), JWT_MALFORMED);
    /* a segment of 4k+1 characters (43 + 2) */
    memcpy(t, TOK_HS256, n + 1);
    memcpy(t + n, "AA", 3);
    CHECK_ST(verify(t, &o), JWT_MALFORMED);
    free(t);
    /* segments: two, four, empty ones */
    CHECK_ST(verify("", &o), JWT_MALFORMED);
    CHECK_ST(verify(".", &o), JWT_MALFORMED);
    CHECK_ST(verify("..", &o), JWT_MALFORMED);
    CHECK_ST(verify("...", &o), JWT_MALFORMED);
    const char *d2 = strrchr(TOK_HS256, '.');
    CHECK_ST(verify_n(TOK_HS256, (size_t)(d2 - TOK_HS256), &o), JWT_MALFORMED);
    char *four = malloc(n + 8);
    snprintf(four, n + 8, "%s.AAAA", TOK_HS256);
    CHECK_ST(verify(four, &o), JWT_MALFORMED);
    free(four);
}

static void test_json(void)
{
    jwt_opts o = hs_opts(JWT_HS256);
    struct {
        const char *claims;
        jwt_status want;
    } cases[] = {
        {"{}", JWT_OK},
        {" \t\r\n{ \"a\" : [ ] , \"b\" : { } }\n", JWT_OK},
        {"{\"n\":[-0,0.5,1e3,-2E-2,123456789012345678901234567890]}", JWT_OK},
        {"{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\ud83d\\ude00\"}", JWT_OK},
        {"{\"t\":true,\"f\":false,\"z\":null}", JWT_OK},
        {"", JWT_MALFORMED},
        {"[]", JWT_MALFORMED},
        {"\"x\"", JWT_MALFORMED},
        {"{", JWT_MALFORMED},
        {"{}}", JWT_MALFORMED},
        {"{} x", JWT_MALFORMED},
        {"{\"a\":1,}", JWT_MALFORMED},
        {"{\"a\" 1}", JWT_MALFORMED},
        {"{a:1}", JWT_MALFORMED},
        {"{\"a\":01}", JWT_MALFORMED},
        {"{\"a\":1.}", JWT_MALFORMED},
        {"{\"a\":.5}", JWT_MALFORMED},
        {"{\"a\":+1}", JWT_MALFORMED},
        {"{\"a\":1e}", JWT_MALFORMED},
        {"{\"a\":NaN}", JWT_MALFORMED},
        {"{\"a\":Infinity}", JWT_MALFORMED},
        {"{\"a\":tru}", JWT_MALFORMED},
        {"{\"a\":'x'}", JWT_MALFORMED},
        {"{\"a\":\"\\x\"}", JWT_MALFORMED},
        {"{\"a\":\"\\u12\"}", JWT_MALFORMED},
        {"{\"a\":\"\\ud800\"}", JWT_MALFORMED},
        {"{\"a\":\"\\udc00\"}", JWT_MALFORMED},
        {"{\"a\":\"\\ud800\\u0041\"}", JWT_MALFORMED},
        {"{\"a\":\"tab\there\"}", JWT_MALFORMED},
        {"{\"a\":\"\xc3\x28\"}", JWT_MALFORMED},
        {"{\"a\":\"\xed\xa0\x80\"}", JWT_MALFORMED},
        {"{\"a\":[1 2]}", JWT_MALFORMED},
        {"{\"a\":[1,]}", JWT_MALFORMED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        jwt_status st = verify_forged(forge(HS256_HDR, cases[i].claims), &o);
        CHECK(st == cases[i].want);
        if (st != cases[i].want)
            fprintf(stderr, "  claims %s: %s\n", cases[i].claims, jwt_status_str(st));
    }
    /* a NUL inside the claims' bytes, outside a string */
    CHECK_ST(verify_forged(forge_n(HS256_HDR, "{}\0", 3), &o), JWT_MALFORMED);
    /* the header is held to the same rules */
    CHECK_ST(verify_forged(forge("{\"alg\":\"HS256\"", "{}"), &o), JWT_MALFORMED);
    CHECK_ST(verify_forged(forge("[\"HS256\"]", "{}"), &o), JWT_MALFORMED);
}

static char *nested(int depth)
{
    char *s = malloc((size_t)depth * 2 + 16), *p = s;
    p += sprintf(p, "{\"a\":");
    for (int i = 0; i < depth; i++)
        *p++ = '[';
    for (int i = 0; i < depth; i++)
        *p++ = ']';
    strcpy(p, "}");
    return s;
}

static void test_nesting(void)
{
    jwt_opts o = hs_opts(JWT_HS256);
    char *ok = nested(31), *deep = nested(32), *very = nested(3000);
    CHECK_ST(verify_forged(forge(HS256_HDR, ok), &o), JWT_OK);
    CHECK_ST(verify_forged(forge(HS256_HDR, deep), &o), JWT_MALFORMED);
    CHECK_ST(verify_forged(forge(HS256_HDR, very), &o), JWT_MALFORMED);
    free(ok);
    free(deep);
    free(very);
}

static void test_time(void)
{
    jwt_opts o = hs_opts(JWT_HS256);
    char buf[128];
#define TIMED(fmt, ...)                                                                            \
    (snprintf(buf, sizeof(buf), fmt, __VA_ARGS__), verify_forged(forge(HS256_HDR, buf), &o))
    CHECK_ST(TIMED("{\"exp\":%.0f}", NOW + 1), JWT_OK);
    CHECK_ST(TIMED("{\"exp\":%.0f}", NOW), JWT_EXPIRED);
    CHECK_ST(TIMED("{\"exp\":%.1f}", NOW + 0.5), JWT_OK);
    CHECK_ST(TIMED("{\"exp\":%.0f}", NOW - 100), JWT_EXPIRED);
    CHECK_ST(TIMED("{\"exp\":%.0fe0}", NOW - 100), JWT_EXPIRED);
    CHECK_ST(TIMED("{\"exp\":%s}", "1e400"), JWT_OK); /* infinity: never */
    CHECK_ST(TIMED("{\"exp\":%s}", "-1e400"), JWT_EXPIRED);
    CHECK_ST(TIMED("{\"exp\":\"%.0f\"}", NOW + 100), JWT_MALFORMED);
    CHECK_ST(TIMED("{\"exp\":%s}", "null"), JWT_MALFORMED);
    CHECK_ST(TIMED("{\"exp\":%s}",
                   "1"
                   "000000000000000000000000000000000000000000000000000000000000000"),
             JWT_MALFORMED); /* 64 digits: not a time */
    CHECK_ST(TIMED("{\"exp\":%.0f,\"exp\":1}", NOW + 100), JWT_MALFORMED);
    CHECK_ST(TIMED("{\"nbf\":%.0f}", NOW), JWT_OK);
    CHECK_ST(TIMED("{\"nbf\":%.0f}", NOW + 1), JWT_NOT_YET_VALID);
    CHECK_ST(TIMED("{\"nbf\":%.0f,\"nbf\":1}", NOW - 1), JWT_MALFORMED);
    CHECK_ST(TIMED("{\"nbf\":[%.0f]}", NOW - 1), JWT_MALFORMED);
    o.leeway = 30;
    CHECK_ST(TIMED("{\"exp\":%.0f}", NOW - 29), JWT_OK);
    CHECK_ST(TIMED("{\"exp\":%.0f}", NOW - 30), JWT_EXPIRED);
    CHECK_ST(TIMED("{\"nbf\":%.0f}", NOW + 30), JWT_OK);
    CHECK_ST(TIMED("{\"nbf\":%.0f}", NOW + 31), JWT_NOT_YET_VALID);
    o.leeway = 0;
    CHECK_ST(TIMED("{\"sub\":%s}", "\"x\""), JWT_OK);
    o.require_exp = 1;
    CHECK_ST(TIMED("{\"sub\":%s}", "\"x\""), JWT_MISSING_EXP);
    CHECK_ST(TIMED("{\"exp\":%.0f}", NOW + 1), JWT_OK);
    /* exp is checked before nbf */
    CHECK_ST(TIMED("{\"nbf\":%.0f,\"exp\":1}", NOW + 100), JWT_EXPIRED);
#undef TIMED
}

static void test_aud_iss(void)
{
    jwt_opts o = hs_opts(JWT_HS256);
    const jwt_str two[] = {{"svc-x", 5}, {"svc/é", 6}};
    const jwt_str nul[] = {{"a\0b", 3}};
#define AUD(claims, want) CHECK_ST(verify_forged(forge(HS256_HDR, claims), &o), want)
    AUD("{\"aud\":\"svc-b\"}", JWT_AUDIENCE); /* meant for someone: not us */
    AUD("{\"sub\":\"x\"}", JWT_OK);
    o.aud = AUD_B;
    o.naud = 1;
    AUD("{\"sub\":\"x\"}", JWT_AUDIENCE);
    AUD("{\"aud\":\"svc-b\"}", JWT_OK);
    AUD("{\"aud\":\"svc-bb\"}", JWT_AUDIENCE);
    AUD("{\"aud\":\"svc-\"}", JWT_AUDIENCE);
    AUD("{\"aud\":\"SVC-B\"}", JWT_AUDIENCE);
    AUD("{\"aud\":\"svc\\u002db\"}", JWT_OK);
    AUD("{\"aud\":[\"a\",\"svc-b\"]}", JWT_OK);
    AUD("{\"aud\":[ \"a\" , \"b\" ]}", JWT_AUDIENCE);
    AUD("{\"aud\":[]}", JWT_AUDIENCE);
    AUD("{\"aud\":[\"svc-b\",1]}", JWT_MALFORMED);
    AUD("{\"aud\":[[\"svc-b\"]]}", JWT_MALFORMED);
    AUD("{\"aud\":5}", JWT_MALFORMED);
    AUD("{\"aud\":\"svc-b\",\"aud\":\"x\"}", JWT_MALFORMED);
    o.aud = two;
    o.naud = 2;
    AUD("{\"aud\":\"svc\\/\\u00e9\"}", JWT_OK);
    AUD("{\"aud\":[\"q\",\"svc/\xc3\xa9\"]}", JWT_OK);
    o.aud = nul;
    o.naud = 1;
    AUD("{\"aud\":\"a\\u0000b\"}", JWT_OK);
    AUD("{\"aud\":\"a\"}", JWT_AUDIENCE);
    o.naud = 0;
    o.iss = ISS;
    o.niss = 1;
    AUD("{\"iss\":\"https://issuer.example\"}", JWT_OK);
    AUD("{\"iss\":\"https:\\/\\/issuer.example\"}", JWT_OK);
    AUD("{\"iss\":\"https://issuer.example/\"}", JWT_ISSUER);
    AUD("{\"sub\":\"x\"}", JWT_ISSUER);
    AUD("{\"iss\":[\"https://issuer.example\"]}", JWT_MALFORMED);
    AUD("{\"iss\":\"https://issuer.example\",\"iss\":\"https://issuer.example\"}", JWT_MALFORMED);
    o.iss = two;
    o.niss = 2;
    AUD("{\"iss\":\"svc-x\"}", JWT_OK);
#undef AUD
}

static void test_size(void)
{
    jwt_opts o = hs_opts(JWT_HS256);
    /* a token of exactly JWT_MAX_TOKEN bytes is read; one more is not */
    char claims[8192];
    size_t fill = 1, len = 0;
    for (int i = 0; i < 3 && len != JWT_MAX_TOKEN; i++) {
        snprintf(claims, sizeof(claims), "{\"p\":\"%0*d\"}", (int)fill, 0);
        char *t = forge(HS256_HDR, claims);
        len = strlen(t);
        fill += (JWT_MAX_TOKEN - len) * 3 / 4;
        if (len == JWT_MAX_TOKEN)
            CHECK_ST(verify(t, &o), JWT_OK);
        free(t);
    }
    CHECK(len == JWT_MAX_TOKEN);
    char *big = malloc(JWT_MAX_TOKEN + 2);
    memset(big, 'A', JWT_MAX_TOKEN + 1);
    big[JWT_MAX_TOKEN + 1] = '\0';
    CHECK_ST(verify(big, &o), JWT_TOO_LARGE);
    free(big);
}

static void test_prefixes(void)
{
    jwt_pubkey *ek = key(EC_PUB);
    jwt_opts o = hs_opts(JWT_HS256);
    o.aud = AUD_B;
    o.naud = 1;
    size_t n = strlen(TOK_HS256);
    for (size_t i = 0; i < n; i++)
        CHECK(verify_n(TOK_HS256, i, &o) != JWT_OK);
    CHECK_ST(verify_n(TOK_HS256, n, &o), JWT_OK);
    o = hs_opts(JWT_ES256);
    o.secret = NULL;
    o.pubkey = ek;
    o.aud = AUD_B;
    o.naud = 1;
    n = strlen(TOK_ES_LOW);
    for (size_t i = 0; i < n; i++)
        CHECK(verify_n(TOK_ES_LOW, i, &o) != JWT_OK);
    CHECK_ST(verify_n(TOK_ES_LOW, n, &o), JWT_OK);
    jwt_pubkey_free(ek);
}

static void test_names(void)
{
    CHECK(jwt_alg_parse("HS256", 5) == JWT_HS256);
    CHECK(jwt_alg_parse("ES256", 5) == JWT_ES256);
    CHECK(jwt_alg_parse("none", 4) == 0);
    CHECK(jwt_alg_parse("HS25", 4) == 0);
    CHECK(jwt_alg_parse("PS256", 5) == 0);
    CHECK_STR(jwt_status_str(JWT_EXPIRED), "expired");
    CHECK_STR(jwt_status_str(JWT_BAD_SIGNATURE), "bad signature");
    CHECK_STR(jwt_status_str(JWT_ALG_REFUSED), "alg not allowed");
    jwt_opts o = hs_opts(JWT_HS256);
    char w[8];
    jwt_result r;
    CHECK(jwt_verify(TOK_HS256, strlen(TOK_HS256), &o, w, sizeof(w), &r) == JWT_INTERNAL);
}

TEST_MAIN("jwt", T(test_rfc7515_a1), T(test_hmac_vectors), T(test_rs256), T(test_es256),
          T(test_pubkey_parse), T(test_opts_check), T(test_alg_header), T(test_base64url),
          T(test_json), T(test_nesting), T(test_time), T(test_aud_iss), T(test_size),
          T(test_prefixes), T(test_names))
