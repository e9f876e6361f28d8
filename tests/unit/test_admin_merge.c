/* test_admin_merge.c — admin_merge.c: workers' parts of GET /clients and
 * GET /topics and the page made of them.  Clients newest (highest id)
 * first, topics in byte order with subscribers summed by name; a part
 * that stopped early (more, fewer entries than the limit) bounds the page
 * at its last entry; and paging through random workers' clients and
 * topics, each worker stopping early at random, visits every entry
 * exactly once. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_merge.h"
#include "testlib.h"

/* A part of clients with the given ids, each object {"id":N}. */
static void clients_part(json_buf *b, uint64_t total, int more, const uint64_t *ids, size_t n)
{
    admin_part_begin(b, total);
    if (more)
        admin_part_set_more(b);
    for (size_t i = 0; i < n; i++) {
        char obj[64];
        int len = snprintf(obj, sizeof(obj), "{\"id\":%llu}", (unsigned long long)ids[i]);
        admin_part_client(b, ids[i], obj, (size_t)len);
    }
}

static admin_part as_part(uint32_t w, const json_buf *b)
{
    return (admin_part){w, (const unsigned char *)b->p, b->len};
}

/* The merged page as one JSON text (braces added). */
static char *merge(const admin_part *ps, size_t n, unsigned limit, int topics, uint64_t total)
{
    json_buf out = {0};
    json_buf_raw(&out, "{", 1);
    int rc = topics ? admin_merge_topics(ps, n, limit, total, &out)
                    : admin_merge_clients(ps, n, limit, &out);
    json_buf_raw(&out, "}", 1);
    CHECK(rc == 0);
    return out.p;
}

static void test_clients_one_part(void)
{
    json_buf b = {0};
    uint64_t ids[] = {9, 5, 2};
    clients_part(&b, 3, 0, ids, 3);
    CHECK(admin_part_valid(b.p, b.len, 0));
    admin_part p = as_part(1, &b);
    char *s = merge(&p, 1, 10, 0, 0);
    CHECK_STR(s, "{\"total\":3,\"clients\":[{\"id\":9},{\"id\":5},{\"id\":2}],\"next\":null}");
    free(s);
    s = merge(&p, 1, 2, 0, 0); /* the limit cuts: next is the last shown */
    CHECK_STR(s, "{\"total\":3,\"clients\":[{\"id\":9},{\"id\":5}],\"next\":5}");
    free(s);
    json_buf_free(&b);
}

static void test_clients_merge(void)
{
    json_buf a = {0}, b = {0}, e = {0};
    uint64_t ia[] = {10, 7, 4}, ib[] = {9, 8, 3};
    clients_part(&a, 5, 1, ia, 3);
    clients_part(&b, 3, 0, ib, 3);
    clients_part(&e, 0, 0, NULL, 0);
    admin_part ps[] = {as_part(1, &a), as_part(2, &b), as_part(3, &e)};
    char *s = merge(ps, 3, 4, 0, 0);
    CHECK_STR(s, "{\"total\":8,\"clients\":[{\"id\":10},{\"id\":9},{\"id\":8},{\"id\":7}],"
                 "\"next\":7}");
    free(s);
    /* Worker 1 has more past 4: 3 (worker 2's) may not come before it. */
    s = merge(ps, 3, 10, 0, 0);
    CHECK_STR(s, "{\"total\":8,\"clients\":[{\"id\":10},{\"id\":9},{\"id\":8},{\"id\":7},"
                 "{\"id\":4}],\"next\":4}");
    free(s);
    s = merge(ps + 2, 1, 10, 0, 0);
    CHECK_STR(s, "{\"total\":0,\"clients\":[],\"next\":null}");
    free(s);
    json_buf_free(&a);
    json_buf_free(&b);
    json_buf_free(&e);
}

static void test_topics_merge(void)
{
    json_buf a = {0}, b = {0};
    admin_part_begin(&a, 3);
    admin_part_topic(&a, "a", 1, 2);
    admin_part_topic(&a, "q\"x", 3, 1);
    admin_part_topic(&a, "zz", 2, 4);
    admin_part_begin(&b, 4);
    admin_part_set_more(&b);
    admin_part_topic(&b, "a", 1, 5);
    admin_part_topic(&b, "ab", 2, 1);
    admin_part_topic(&b, "q\"x", 3, 3);
    CHECK(admin_part_valid(a.p, a.len, 1) && admin_part_valid(b.p, b.len, 1));
    admin_part ps[] = {as_part(1, &a), as_part(2, &b)};
    char *s = merge(ps, 2, 2, 1, 5);
    CHECK_STR(s, "{\"total\":5,\"topics\":[{\"topic\":\"a\",\"subscribers\":7},"
                 "{\"topic\":\"ab\",\"subscribers\":1}],\"next\":\"ab\"}");
    free(s);
    /* Worker 2 stopped at q"x: zz waits for the next page. */
    s = merge(ps, 2, 10, 1, 5);
    CHECK_STR(s, "{\"total\":5,\"topics\":[{\"topic\":\"a\",\"subscribers\":7},"
                 "{\"topic\":\"ab\",\"subscribers\":1},{\"topic\":\"q\\\"x\",\"subscribers\":4}],"
                 "\"next\":\"q\\\"x\"}");
    free(s);
    s = merge(ps, 1, 10, 1, 3);
    CHECK_STR(s, "{\"total\":3,\"topics\":[{\"topic\":\"a\",\"subscribers\":2},"
                 "{\"topic\":\"q\\\"x\",\"subscribers\":1},{\"topic\":\"zz\",\"subscribers\":4}],"
                 "\"next\":null}");
    free(s);
    json_buf_free(&a);
    json_buf_free(&b);
}

static void test_valid(void)
{
    json_buf b = {0};
    uint64_t ids[] = {1};
    CHECK(!admin_part_valid("", 0, 0));
    CHECK(!admin_part_valid("12345678", 8, 0));
    clients_part(&b, 1, 0, ids, 1);
    CHECK(admin_part_valid(b.p, b.len, 0));
    CHECK(!admin_part_valid(b.p, b.len - 1, 0));
    json_buf_free(&b);
    admin_part_begin(&b, 0);
    CHECK(admin_part_valid(b.p, b.len, 0) && admin_part_valid(b.p, b.len, 1));
    admin_part_topic(&b, "abc", 3, 1);
    CHECK(!admin_part_valid(b.p, b.len - 1, 1));
    json_buf_free(&b);
}

/* ---- paging through random workers ---- */

#define W 4
#define PER 60

static uint64_t rnd_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

/* Worker w's part: its ids (descending) below after, limit at most,
 * sometimes fewer (as when its part passes ADMIN_PART_MAX). */
static void worker_clients(json_buf *b, const uint64_t *ids, size_t n, uint64_t after,
                           unsigned limit)
{
    size_t i = 0, k = 0;
    while (after && i < n && ids[i] >= after)
        i++;
    unsigned cut = 1 + (unsigned)(rnd() % limit);
    uint64_t out[PER];
    while (i + k < n && k < cut)
        out[k] = ids[i + k], k++;
    clients_part(b, n, i + k < n, out, k);
}

static void test_paging_clients(void)
{
    for (int round = 0; round < 200; round++) {
        uint64_t ids[W][PER];
        size_t n[W];
        int seen[W * PER * 2 + 2] = {0};
        size_t all = 0;
        for (int w = 0; w < W; w++) {
            n[w] = rnd() % PER;
            /* ids as workers mint them: seq * W + (w - 1), newest first */
            for (size_t i = 0; i < n[w]; i++)
                ids[w][i] = (uint64_t)(n[w] - i) * W + (uint64_t)w;
            all += n[w];
        }
        unsigned limit = 1 + (unsigned)(rnd() % 9);
        uint64_t after = 0, prev = UINT64_MAX;
        size_t visited = 0;
        for (int pages = 0; pages < 10000; pages++) {
            json_buf parts[W] = {{0}};
            admin_part ps[W];
            for (int w = 0; w < W; w++) {
                worker_clients(&parts[w], ids[w], n[w], after, limit);
                ps[w] = as_part((uint32_t)w + 1, &parts[w]);
            }
            json_buf out = {0};
            CHECK(admin_merge_clients(ps, W, limit, &out) == 0);
            /* read the ids back: {"id":N} objects in order */
            unsigned shown = 0;
            for (const char *p = out.p; (p = strstr(p, "{\"id\":")); p++) {
                uint64_t id = strtoull(p + 6, NULL, 10);
                CHECK(id < prev); /* newest first, never twice */
                prev = id;
                CHECK(!seen[id]++);
                shown++;
                visited++;
            }
            CHECK(shown <= limit);
            const char *nx = strstr(out.p, "\"next\":");
            CHECK(nx != NULL);
            int last = !nx || strncmp(nx + 7, "null", 4) == 0;
            after = last ? 0 : strtoull(nx + 7, NULL, 10);
            CHECK(last || shown > 0);
            json_buf_free(&out);
            for (int w = 0; w < W; w++)
                json_buf_free(&parts[w]);
            if (last)
                break;
        }
        CHECK(visited == all);
    }
}

/* Worker w holds topics "t<i>" for i in its set, each with w + 1
 * subscribers. */
static void worker_topics(json_buf *b, const int *has, int ntop, int w, int after, unsigned limit)
{
    int total = 0;
    for (int i = 0; i < ntop; i++)
        total += has[i];
    admin_part_begin(b, (uint64_t)total);
    unsigned cut = 1 + (unsigned)(rnd() % limit), k = 0;
    int i = after + 1;
    for (; i < ntop && k < cut; i++) {
        if (!has[i])
            continue;
        char name[16];
        int len = snprintf(name, sizeof(name), "t%03d", i);
        admin_part_topic(b, name, (size_t)len, (uint64_t)w + 1);
        k++;
    }
    for (; i < ntop; i++)
        if (has[i])
            admin_part_set_more(b);
}

static void test_paging_topics(void)
{
    enum { NT = 50 };
    for (int round = 0; round < 200; round++) {
        int has[W][NT], want[NT] = {0}, got[NT] = {0};
        for (int w = 0; w < W; w++)
            for (int i = 0; i < NT; i++) {
                has[w][i] = rnd() % 3 == 0;
                want[i] += has[w][i] ? w + 1 : 0;
            }
        unsigned limit = 1 + (unsigned)(rnd() % 7);
        int after = -1;
        for (int pages = 0; pages < 1000; pages++) {
            json_buf parts[W] = {{0}};
            admin_part ps[W];
            for (int w = 0; w < W; w++) {
                worker_topics(&parts[w], has[w], NT, w, after, limit);
                ps[w] = as_part((uint32_t)w + 1, &parts[w]);
            }
            json_buf out = {0};
            CHECK(admin_merge_topics(ps, W, limit, 0, &out) == 0);
            unsigned shown = 0;
            int prev = after;
            for (const char *p = out.p; (p = strstr(p, "{\"topic\":\"t")); p++) {
                int i = atoi(p + 11);
                const char *sub = strstr(p, "\"subscribers\":");
                CHECK(i > prev && i < NT && !got[i]);
                got[i] = sub ? atoi(sub + 14) : -1;
                prev = i;
                shown++;
            }
            CHECK(shown <= limit);
            const char *nx = strstr(out.p, "\"next\":");
            int last = !nx || strncmp(nx + 7, "null", 4) == 0;
            if (!last)
                after = atoi(nx + 9); /* "next":"tNNN" */
            json_buf_free(&out);
            for (int w = 0; w < W; w++)
                json_buf_free(&parts[w]);
            if (last)
                break;
        }
        CHECK(memcmp(got, want, sizeof(got)) == 0);
    }
}

TEST_MAIN("admin_merge", T(test_clients_one_part), T(test_clients_merge), T(test_topics_merge),
          T(test_valid), T(test_paging_clients), T(test_paging_topics))
