/* fuzz_handshake.c — the checks on an upgrade request's headers
 * (handshake_key_valid, handshake_token_has) on any text, against what
 * they must answer: a key is valid exactly when it is 24 characters of
 * base64 ending "==" whose last character before the padding carries no
 * stray bits (then it decodes to 16 bytes); a token is found exactly when
 * one comma-separated item, trimmed of spaces and tabs, equals it
 * ignoring case.  The input is "header\nword". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "handshake.h"

static int ref_key(const char *k)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (strlen(k) != 24 || k[22] != '=' || k[23] != '=')
        return 0;
    for (int i = 0; i < 22; i++) {
        const char *p = memchr(b64, k[i], 64);
        if (!p)
            return 0;
        if (i == 21 && ((p - b64) & 15))
            return 0;
    }
    return 1;
}

static int ref_token(const char *list, const char *word)
{
    size_t wl = strlen(word);
    const char *p = list;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        const char *a = p, *b = p + n;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if ((size_t)(b - a) == wl && strncasecmp(a, word, wl) == 0)
            return 1;
        if (!e)
            return 0;
        p = e + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    char *word = strchr(s, '\n');
    if (word)
        *word++ = '\0';
    else
        word = "upgrade";
    if (handshake_key_valid(s) != ref_key(s))
        abort();
    /* (An empty word is never looked for: the two differ on empty items.) */
    if (*word && handshake_token_has(s, word) != ref_token(s, word))
        abort();
    free(s);
    return 0;
}
