/* test_hsmatch.c — hsmatch.c: listener path entries and their match order
 * (exact first, then the longest prefix), the parsing of offered
 * subprotocol lists and what libwebsockets can take of them, origin
 * allow-list entries and matching (case, default ports, wildcards that
 * match subdomains only). */
#include "hsmatch.h"
#include "testlib.h"

#include <string.h>

static void test_path_entries(void)
{
    CHECK(hsmatch_path_invalid("/") == NULL);
    CHECK(hsmatch_path_invalid("/ws") == NULL);
    CHECK(hsmatch_path_invalid("/api/*") == NULL);
    CHECK(hsmatch_path_invalid("*") != NULL);
    CHECK(hsmatch_path_invalid("ws") != NULL);
    CHECK(hsmatch_path_invalid("/a*b") != NULL);
    CHECK(hsmatch_path_invalid("/**") != NULL);
    CHECK(hsmatch_path_invalid("/a b") != NULL);
    CHECK(hsmatch_path_invalid("/a?x=1") != NULL);
    CHECK(hsmatch_path_invalid("/a#f") != NULL);
    CHECK(hsmatch_path_invalid("") != NULL);
}

static void test_path_match(void)
{
    char *paths[] = {"/api/*", "/ws", "/api/v2/*", "/api/v2/x", "/*"};
    CHECK(hsmatch_path(paths, 5, "/ws") == 1);
    CHECK(hsmatch_path(paths, 5, "/api/v2/x") == 3); /* exact before any prefix */
    CHECK(hsmatch_path(paths, 5, "/api/v2/y") == 2); /* the longest prefix */
    CHECK(hsmatch_path(paths, 5, "/api/v1") == 0);
    CHECK(hsmatch_path(paths, 5, "/api/") == 0); /* the prefix itself */
    CHECK(hsmatch_path(paths, 5, "/apix") == 4);
    CHECK(hsmatch_path(paths, 4, "/apix") == -1);
    CHECK(hsmatch_path(paths, 4, "/api") == -1); /* the prefix needs its slash */
    char *one[] = {"/ws"};
    CHECK(hsmatch_path(one, 1, "/ws") == 0);
    CHECK(hsmatch_path(one, 1, "/ws/") == -1);
    CHECK(hsmatch_path(one, 1, "/") == -1);
    char *star[] = {"/ws*", "/ws*"};
    CHECK(hsmatch_path(star, 2, "/ws") == 0); /* equal prefixes: list order */
}

static void test_protocols_parse(void)
{
    char out[128];
    CHECK(hsmatch_protocols("chat", out, sizeof out) == 1);
    CHECK_STR(out, "chat");
    CHECK(hsmatch_protocols(" chat ,\tsuperchat,v12.stomp ", out, sizeof out) == 3);
    CHECK_STR(out, "chat");
    CHECK_STR(out + 5, "superchat");
    CHECK_STR(out + 15, "v12.stomp");
    CHECK(hsmatch_name_in(out, 3, "superchat"));
    CHECK(!hsmatch_name_in(out, 3, "Superchat")); /* case matters */
    CHECK(!hsmatch_name_in(out, 3, "super"));
    CHECK(hsmatch_protocols("a,,b", out, sizeof out) == 2); /* empty elements skipped */
    CHECK(hsmatch_protocols("", out, sizeof out) == 0);
    CHECK(hsmatch_protocols("a b", out, sizeof out) == -1);
    CHECK(hsmatch_protocols("a;b", out, sizeof out) == -1);
    CHECK(hsmatch_protocols("\"a\"", out, sizeof out) == -1);
    CHECK(hsmatch_protocols("a/b", out, sizeof out) == -1);
    CHECK(hsmatch_protocols("abcdef", out, 4) == -1); /* no room */
    CHECK(hsmatch_is_token("graphql-transport-ws", 20));
    CHECK(hsmatch_is_token("!#$%&'*+-.^_`|~", 15));
    CHECK(!hsmatch_is_token("", 0));
    CHECK(!hsmatch_is_token("a=b", 3));
}

static void test_protocols_lws(void)
{
    char first[HSMATCH_PROTOCOL_NAME_MAX + 1], list[300];
    CHECK(hsmatch_protocols_lws("chat, superchat", first, sizeof first) == NULL);
    CHECK_STR(first, "chat");
    CHECK(hsmatch_protocols_lws("mqttv3.1,mqtt", first, sizeof first) == NULL);
    CHECK_STR(first, "mqttv3.1");
    CHECK(hsmatch_protocols_lws("v10.stomp, v11.stomp, v12.stomp", first, sizeof first) == NULL);
    CHECK_STR(first, "v10.stomp");
    CHECK(hsmatch_protocols_lws("chat, 2", first, sizeof first) == NULL);  /* lws stops at chat */
    CHECK(hsmatch_protocols_lws("13, chat", first, sizeof first) != NULL); /* a number first */
    CHECK(hsmatch_protocols_lws(",chat", first, sizeof first) != NULL);
    CHECK(hsmatch_protocols_lws("  ", first, sizeof first) != NULL);
    memset(list, 'a', 62);
    strcpy(list + 62, ",b");
    CHECK(hsmatch_protocols_lws(list, first, sizeof first) == NULL);
    CHECK(strlen(first) == 62);
    memset(list, 'a', 63);
    strcpy(list + 63, ",b");
    CHECK(hsmatch_protocols_lws(list, first, sizeof first) != NULL);
    /* 126 bytes is the most lws copies */
    memset(list, 'x', sizeof list);
    for (int i = 10; i < 126; i += 11)
        list[i] = ',';
    list[126] = '\0';
    CHECK(hsmatch_protocols_lws(list, first, sizeof first) == NULL);
    list[126] = 'x';
    list[127] = '\0';
    CHECK(hsmatch_protocols_lws(list, first, sizeof first) != NULL);
}

static void test_origin_entries(void)
{
    CHECK(hsmatch_origin_invalid("https://app.example.com") == NULL);
    CHECK(hsmatch_origin_invalid("https://*.example.com") == NULL);
    CHECK(hsmatch_origin_invalid("http://localhost:8080") == NULL);
    CHECK(hsmatch_origin_invalid("http://[::1]:8080") == NULL);
    CHECK(hsmatch_origin_invalid("app.example.com") != NULL);
    CHECK(hsmatch_origin_invalid("https://app.example.com/") != NULL);
    CHECK(hsmatch_origin_invalid("https://app.example.com/x") != NULL);
    CHECK(hsmatch_origin_invalid("https://") != NULL);
    CHECK(hsmatch_origin_invalid("https://a.*.com") != NULL);
    CHECK(hsmatch_origin_invalid("https://*example.com") != NULL);
    CHECK(hsmatch_origin_invalid("https://*.") != NULL);
    CHECK(hsmatch_origin_invalid("https://a:0") != NULL);
    CHECK(hsmatch_origin_invalid("https://a:65536") != NULL);
    CHECK(hsmatch_origin_invalid("https://a:x") != NULL);
    CHECK(hsmatch_origin_invalid("*") != NULL);
}

static void test_origin_match(void)
{
    char *allow[] = {"https://app.example.com", "https://*.example.org", "http://localhost:8080",
                     "HTTP://Upper.Example.net"};
    CHECK(hsmatch_origin_allowed(allow, 4, "https://app.example.com"));
    CHECK(hsmatch_origin_allowed(allow, 4, "HTTPS://APP.Example.COM"));
    CHECK(hsmatch_origin_allowed(allow, 4, "https://app.example.com:443")); /* default port */
    CHECK(!hsmatch_origin_allowed(allow, 4, "https://app.example.com:8443"));
    CHECK(!hsmatch_origin_allowed(allow, 4, "http://app.example.com")); /* scheme */
    CHECK(!hsmatch_origin_allowed(allow, 4, "https://evil.app.example.com"));
    CHECK(!hsmatch_origin_allowed(allow, 4, "https://app.example.com.evil.io"));
    CHECK(hsmatch_origin_allowed(allow, 4, "https://a.example.org"));
    CHECK(hsmatch_origin_allowed(allow, 4, "https://a.b.example.org"));
    CHECK(!hsmatch_origin_allowed(allow, 4, "https://example.org")); /* subdomains only */
    CHECK(!hsmatch_origin_allowed(allow, 4, "https://badexample.org"));
    CHECK(hsmatch_origin_allowed(allow, 4, "http://localhost:8080"));
    CHECK(!hsmatch_origin_allowed(allow, 4, "http://localhost"));
    CHECK(hsmatch_origin_allowed(allow, 4, "http://upper.example.net:80"));
    CHECK(!hsmatch_origin_allowed(allow, 4, "null"));
    CHECK(!hsmatch_origin_allowed(allow, 4, ""));
    CHECK(!hsmatch_origin_allowed(allow, 4, "https://app.example.com,https://x.example.org"));
    CHECK(!hsmatch_origin_allowed(allow, 4, "https://app.example.com/"));
}

TEST_MAIN("hsmatch", T(test_path_entries), T(test_path_match), T(test_protocols_parse),
          T(test_protocols_lws), T(test_origin_entries), T(test_origin_match))
