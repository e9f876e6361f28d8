/* admin.h — what the admin API does with a request, decided without
 * libwebsockets.
 *
 * http.c collects what it needs from a request (method, path, query,
 * headers) into an admin_req; admin_route() decides: which action, or
 * which refusal (401 without the token, 404, 405 for a wrong method, 411
 * for a chunked body, 413 for a body over ADMIN_BODY_MAX, 415 for a JSON
 * endpoint's body that does not say application/json, 400 for a bad
 * kind).  admin_body_check() judges a broadcast body once it is in,
 * admin_body_parse() the JSON body of /send, /publish and
 * /clients/{id|name}/close.  Every refusal's reason is one line of text, which
 * http.c sends as {"error": reason}.  Kept free of lws so that a fuzzer
 * can drive every decision (tests/fuzz). */
#ifndef MG_ADMIN_H
#define MG_ADMIN_H

#include <stddef.h>
#include <stdint.h>

/* A POST body larger than this is refused with 413 before it is read. */
#define ADMIN_BODY_MAX (1024 * 1024)

typedef enum { ADMIN_GET, ADMIN_POST, ADMIN_HEAD, ADMIN_OTHER } admin_method;

typedef struct admin_req {
    admin_method method;
    const char *path;  /* the URI path, without the query */
    const char *kind;  /* the query's kind= value, or NULL */
    const char *limit; /* the query's limit= value, or NULL */
    const char *after; /* the query's after= value, or NULL */
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
    ADMIN_BROADCAST,
    ADMIN_CLIENTS, /* GET /clients */
    ADMIN_TOPICS,  /* GET /topics */
    ADMIN_CLOSE,   /* POST /clients/{id|name}/close */
    ADMIN_SEND,    /* POST /send */
    ADMIN_PUBLISH  /* POST /publish */
} admin_action;

/* GET /clients and GET /topics: a page holds ADMIN_PAGE_DEFAULT entries
 * unless limit= asks for 1 to ADMIN_PAGE_MAX. */
#define ADMIN_PAGE_DEFAULT 100
#define ADMIN_PAGE_MAX 1000

typedef struct admin_route {
    admin_action action;
    int status;         /* ADMIN_REFUSE: the HTTP status ... */
    const char *reason; /* ... and the body (one line) */
    const char *allow;  /* 405: the methods the path takes */
    int binary;         /* ADMIN_BROADCAST: as a binary message */
    const char *target; /* ADMIN_CLOSE: the {id|name} in the path ... */
    size_t target_len;  /* ... this long (not terminated there) */
    unsigned limit;     /* ADMIN_CLIENTS, ADMIN_TOPICS: the page size */
    const char *after;  /* ... and the cursor (after=), or NULL */
} admin_route;

/* Decide what r gets; token is admin.token, or NULL for none. */
void admin_route_request(const admin_req *r, const char *token, admin_route *out);

/* 1 if the Authorization header auth is "Bearer TOKEN", compared in time
 * that depends on the lengths only, not on where the first difference is. */
int admin_token_ok(const char *auth, const char *token);

/* A broadcast body that may go out as rt says: NULL, or why not (400). */
const char *admin_body_check(const admin_route *rt, const void *body, size_t len);

/* The JSON body of /send, /publish or a close (admin_body_parse). */
typedef struct admin_body {
    uint64_t id;         /* "to" as a client id (1 .. 2^53 - 1), or 0 */
    char *name;          /* "to" as a name, or "topic": NUL-free, or NULL */
    unsigned char *data; /* "data" (UTF-8) or "data_b64" (decoded), or NULL */
    size_t len;
    int binary;   /* send it as a binary message: "binary": true, or "data_b64" */
    int code;     /* close: 1000 or 3000 .. 4999 (default 1000) */
    char *reason; /* close: at most 123 bytes, or NULL */
    size_t reason_len;
    char err[160]; /* why it was refused */
} admin_body;

/* Read body (len bytes) as what action takes: 0, or -1 with out->err.  An
 * empty body is a close with code 1000.  admin_body_free after either. */
int admin_body_parse(admin_action action, const void *body, size_t len, admin_body *out);
void admin_body_free(admin_body *b);

/* A decimal id (1 .. 2^53 - 1, digits only) in s[0..n): it, or 0. */
uint64_t admin_parse_id(const char *s, size_t n);

#endif
