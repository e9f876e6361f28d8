/* test_admin.c — admin.c: the bearer token check (exact match only, any
 * length, any scheme spelling refused), and what each request gets: the
 * action for each path and method, 401 before anything else, 404, 405 with
 * the allowed method, 411 for a chunked body, 413 past ADMIN_BODY_MAX, the
 * kind of a broadcast from the query or the Content-Type, and a text
 * broadcast body that must be UTF-8. */

#include <string.h>

#include "admin.h"
#include "testlib.h"

static void test_token(void)
{
    CHECK(admin_token_ok(NULL, NULL));
    CHECK(admin_token_ok("anything", NULL));
    CHECK(admin_token_ok("Bearer s3cret", "s3cret"));
    CHECK(!admin_token_ok(NULL, "s3cret"));
    CHECK(!admin_token_ok("", "s3cret"));
    CHECK(!admin_token_ok("Bearer s3cre", "s3cret"));
    CHECK(!admin_token_ok("Bearer s3crett", "s3cret"));
    CHECK(!admin_token_ok("Bearer S3cret", "s3cret"));
    CHECK(!admin_token_ok("bearer s3cret", "s3cret"));
    CHECK(!admin_token_ok("Bearer  s3cret", "s3cret"));
    CHECK(!admin_token_ok("Bearer", "s3cret"));
    CHECK(!admin_token_ok("s3cret", "s3cret"));
    CHECK(admin_token_ok("Bearer ", ""));
    CHECK(!admin_token_ok("Bearer x", ""));
}

static admin_route route(admin_method m, const char *path, const char *auth, long long clen)
{
    admin_req r = {.method = m, .path = path, .auth = auth, .clen = clen};
    admin_route out;
    admin_route_request(&r, "tok", &out);
    return out;
}

static void test_routes(void)
{
    CHECK(route(ADMIN_GET, "/health", "Bearer tok", -1).action == ADMIN_HEALTH);
    CHECK(route(ADMIN_GET, "/metrics", "Bearer tok", -1).action == ADMIN_METRICS);
    CHECK(route(ADMIN_POST, "/reload", "Bearer tok", -1).action == ADMIN_RELOAD);
    CHECK(route(ADMIN_POST, "/broadcast", "Bearer tok", 5).action == ADMIN_BROADCAST);

    admin_route r = route(ADMIN_GET, "/health", "Bearer nope", -1);
    CHECK(r.action == ADMIN_REFUSE && r.status == 401);
    r = route(ADMIN_GET, "/nope", "Bearer nope", -1); /* 401 says nothing of paths */
    CHECK(r.action == ADMIN_REFUSE && r.status == 401);
    r = route(ADMIN_GET, "/nope", "Bearer tok", -1);
    CHECK(r.action == ADMIN_REFUSE && r.status == 404);
    r = route(ADMIN_GET, "/health/", "Bearer tok", -1);
    CHECK(r.status == 404);
    r = route(ADMIN_GET, NULL, "Bearer tok", -1);
    CHECK(r.status == 404);
    r = route(ADMIN_GET, "/broadcast", "Bearer tok", -1);
    CHECK(r.status == 405 && r.allow && r.allow[0] == 'P');
    r = route(ADMIN_POST, "/metrics", "Bearer tok", 3);
    CHECK(r.status == 405 && r.allow && r.allow[0] == 'G');
    r = route(ADMIN_OTHER, "/reload", "Bearer tok", -1);
    CHECK(r.status == 405);
    r = route(ADMIN_HEAD, "/health", "Bearer tok", -1);
    CHECK(r.status == 405);
    r = route(ADMIN_POST, "/broadcast", "Bearer tok", ADMIN_BODY_MAX);
    CHECK(r.action == ADMIN_BROADCAST);
    r = route(ADMIN_POST, "/broadcast", "Bearer tok", ADMIN_BODY_MAX + 1LL);
    CHECK(r.status == 413);
    r = route(ADMIN_POST, "/broadcast", "Bearer tok", 1LL << 40);
    CHECK(r.status == 413);

    admin_req chunked = {
        .method = ADMIN_POST, .path = "/broadcast", .auth = "Bearer tok", .clen = -1, .chunked = 1};
    admin_route_request(&chunked, "tok", &r);
    CHECK(r.status == 411);
}

static admin_route broadcast(const char *kind, const char *ctype)
{
    admin_req r = {
        .method = ADMIN_POST, .path = "/broadcast", .kind = kind, .ctype = ctype, .clen = 4};
    admin_route out;
    admin_route_request(&r, NULL, &out);
    return out;
}

static void test_broadcast_kind(void)
{
    CHECK(broadcast(NULL, NULL).action == ADMIN_BROADCAST && !broadcast(NULL, NULL).binary);
    CHECK(broadcast("binary", NULL).binary);
    CHECK(!broadcast("text", "application/octet-stream").binary);
    CHECK(broadcast(NULL, "application/octet-stream").binary);
    CHECK(broadcast(NULL, "Application/Octet-Stream; x=y").binary);
    CHECK(!broadcast(NULL, "application/octet-streamy").binary);
    CHECK(!broadcast(NULL, "text/plain").binary);
    admin_route r = broadcast("jpeg", NULL);
    CHECK(r.action == ADMIN_REFUSE && r.status == 400);
}

static void test_body(void)
{
    admin_route text = broadcast(NULL, NULL), bin = broadcast("binary", NULL);
    CHECK(admin_body_check(&text, "caf\xc3\xa9", 5) == NULL);
    CHECK(admin_body_check(&text, "", 0) == NULL);
    CHECK(admin_body_check(&text, "caf\xe9", 4) != NULL);
    CHECK(admin_body_check(&text, "\xed\xa0\x80", 3) != NULL); /* a surrogate */
    CHECK(admin_body_check(&bin, "caf\xe9", 4) == NULL);
}

static int parse(admin_action a, const char *json, admin_body *b)
{
    int rc = admin_body_parse(a, json, strlen(json), b);
    return rc;
}

static void test_json_bodies(void)
{
    admin_body b;
    CHECK(parse(ADMIN_SEND, "{\"to\":7,\"data\":\"hi\"}", &b) == 0 && b.id == 7 && b.len == 2 &&
          !b.binary);
    admin_body_free(&b);
    CHECK(parse(ADMIN_SEND, "{\"to\":\"a\\u0062\",\"data_b64\":\"AAE=\"}", &b) == 0 &&
          !strcmp(b.name, "ab") && b.len == 2 && b.data[1] == 1 && b.binary);
    admin_body_free(&b);
    CHECK(parse(ADMIN_SEND, "{\"to\":1.5,\"data\":\"x\"}", &b) != 0);
    admin_body_free(&b);
    CHECK(parse(ADMIN_SEND, "{\"to\":\"a\\u0000\",\"data\":\"x\"}", &b) != 0);
    admin_body_free(&b);
    CHECK(parse(ADMIN_SEND, "{\"to\":1,\"data\":\"x\",\"data\":\"y\"}", &b) != 0 &&
          strstr(b.err, "twice"));
    admin_body_free(&b);
    CHECK(parse(ADMIN_SEND, "{\"to\":1,\"data_b64\":\"A\"}", &b) != 0);
    admin_body_free(&b);
    CHECK(parse(ADMIN_PUBLISH, "{\"topic\":\"t\",\"data\":\"x\",\"binary\":true}", &b) == 0 &&
          b.binary);
    admin_body_free(&b);
    CHECK(parse(ADMIN_PUBLISH, "{\"to\":1,\"data\":\"x\"}", &b) != 0 && strstr(b.err, "unknown"));
    admin_body_free(&b);
    CHECK(admin_body_parse(ADMIN_CLOSE, "", 0, &b) == 0 && b.code == 1000 && !b.reason);
    admin_body_free(&b);
    CHECK(parse(ADMIN_CLOSE, "{\"code\":4999,\"reason\":\"r\"}", &b) == 0 && b.code == 4999 &&
          b.reason_len == 1);
    admin_body_free(&b);
    CHECK(parse(ADMIN_CLOSE, "{\"code\":2999}", &b) != 0);
    admin_body_free(&b);
    CHECK(parse(ADMIN_CLOSE, "[1]", &b) != 0);
    admin_body_free(&b);
    CHECK(admin_parse_id("42", 2) == 42 && admin_parse_id("042", 3) == 0 &&
          admin_parse_id("9007199254740992", 16) == 0 && admin_parse_id("4a", 2) == 0);
}

static void test_new_routes(void)
{
    admin_route r = route(ADMIN_POST, "/clients/bob/close", "Bearer tok", -1);
    CHECK(r.action == ADMIN_CLOSE && r.target_len == 3 && !strncmp(r.target, "bob", 3));
    r = route(ADMIN_POST, "/clients//close", "Bearer tok", -1);
    CHECK(r.status == 404);
    r = route(ADMIN_POST, "/send", "Bearer tok", 5); /* no Content-Type */
    CHECK(r.status == 415);
    r = route(ADMIN_GET, "/clients", "Bearer tok", -1);
    CHECK(r.action == ADMIN_CLIENTS && r.limit == ADMIN_PAGE_DEFAULT);
    admin_req q = {
        .method = ADMIN_GET, .path = "/clients", .auth = "Bearer tok", .clen = -1, .limit = "1001"};
    admin_route_request(&q, "tok", &r);
    CHECK(r.status == 400);
}

TEST_MAIN("admin", T(test_token), T(test_routes), T(test_broadcast_kind), T(test_body),
          T(test_json_bodies), T(test_new_routes))
