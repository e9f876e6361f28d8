/* admin.h — what the admin API does with a request, decided without
 * libwebsockets.
 *
 * http.c collects what it needs from a request (method, path, query,
 * headers) into an admin_req; admin_route() decides: which action, or
 * which refusal (401 without the token, 404, 405 for a wrong method, 411
 * for a chunked body, 413 for a body over ADMIN_BODY_MAX, 400 for a bad
 * kind).  admin_body_check() judges a broadcast body once it is in.  Kept
 * free of lws so that a fuzzer can drive every decision (tests/fuzz). */
#ifndef MG_ADMIN_H
#define MG_ADMIN_H

#include <stddef.h>

/* A POST body larger than this is refused with 413 before it is read. */
#define ADMIN_BODY_MAX (1024 * 1024)

typedef enum { ADMIN_GET, ADMIN_POST, ADMIN_HEAD, ADMIN_OTHER } admin_method;

typedef struct admin_req {
    admin_method method;
    const char *path;  /* the URI path, without the query */
    const char *kind;  /* the query's kind= value, or NULL */
    const char *ctype; /* Content-Type, or NULL */
    const char *auth;  /* Authorization, or NULL */
    long long clen;    /* Content-Length, -1 if absent */
    int chunked;       /* a Transfer-Encoding header was sent */
} admin_req;

typedef enum {
    ADMIN_REFUSE, /* answer status with reason */
    ADMIN_HEALTH,
    ADMIN_METRICS,
    ADMIN_RELOAD,
    ADMIN_BROADCAST
} admin_action;

typedef struct admin_route {
    admin_action action;
    int status;         /* ADMIN_REFUSE: the HTTP status ... */
    const char *reason; /* ... and the body (one line) */
    const char *allow;  /* 405: the methods the path takes */
    int binary;         /* ADMIN_BROADCAST: as a binary message */
} admin_route;

/* Decide what r gets; token is admin.token, or NULL for none. */
void admin_route_request(const admin_req *r, const char *token, admin_route *out);

/* 1 if the Authorization header auth is "Bearer TOKEN", compared in time
 * that depends on the lengths only, not on where the first difference is. */
int admin_token_ok(const char *auth, const char *token);

/* A broadcast body that may go out as rt says: NULL, or why not (400). */
const char *admin_body_check(const admin_route *rt, const void *body, size_t len);

#endif
