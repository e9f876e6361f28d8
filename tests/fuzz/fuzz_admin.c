/* fuzz_admin.c — the admin API's decisions (admin.c) on any request.
 *
 * The input is split at newlines into: method, path, kind, Content-Type,
 * Authorization, Content-Length, chunked, token, body.  Whatever they are,
 * the route must be a known action or a refusal with a status and a body;
 * 401 exactly when the token does not match; nothing is broadcast from a
 * chunked body or one over ADMIN_BODY_MAX; a text broadcast body passes
 * the check only if it is UTF-8. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    char *f[9] = {0};
    char *p = s;
    for (int i = 0; i < 9; i++) {
        f[i] = p;
        char *nl = p ? strchr(p, '\n') : NULL;
        if (nl)
            *nl = '\0';
        p = nl ? nl + 1 : NULL;
    }
    static const admin_method methods[] = {ADMIN_GET, ADMIN_POST, ADMIN_HEAD, ADMIN_OTHER};
    admin_req r = {
        .method = methods[(f[0] && *f[0] ? (unsigned char)*f[0] : 0) % 4],
        .path = f[1],
        .kind = f[2] && *f[2] ? f[2] : NULL,
        .ctype = f[3] && *f[3] ? f[3] : NULL,
        .auth = f[4] && *f[4] ? f[4] : NULL,
        .clen = f[5] && *f[5] ? strtoll(f[5], NULL, 10) : -1,
        .chunked = f[6] && *f[6] == 'c',
    };
    const char *token = f[7] && *f[7] ? f[7] : NULL;
    const char *body = f[8] ? f[8] : "";
    size_t blen = strlen(body);

    admin_route rt;
    admin_route_request(&r, token, &rt);
    int authorized = admin_token_ok(r.auth, token);
    if ((authorized == 0) != (rt.action == ADMIN_REFUSE && rt.status == 401))
        abort();
    if (rt.action == ADMIN_REFUSE) {
        if (rt.status < 400 || rt.status > 499 || !rt.reason || !*rt.reason)
            abort();
        if (rt.status == 405 && !rt.allow)
            abort();
    } else if (rt.action < ADMIN_HEALTH || rt.action > ADMIN_BROADCAST) {
        abort();
    }
    if (rt.action == ADMIN_BROADCAST && (r.chunked || r.clen > ADMIN_BODY_MAX))
        abort();
    const char *bad = admin_body_check(&rt, body, blen);
    if (rt.action == ADMIN_BROADCAST && !rt.binary &&
        (bad == NULL) != (utf8_valid((const unsigned char *)body, blen) != 0))
        abort();
    free(s);
    return 0;
}
