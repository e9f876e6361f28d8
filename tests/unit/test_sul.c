/* test_sul.c — sul.c: lws_dll2_add_sorted gives exactly the order lws
 * 4.1.6's own version gives (insert before the first entry that compares
 * >= 0, else at the tail) for random, ascending, descending and tied keys,
 * with the owner's head, tail and count kept; and sul_check on a real
 * context says whether libwebsockets' own timer inserts land in it, as the
 * library's relocations say they must: yes where lws calls
 * lws_dll2_add_sorted through its PLT (a JUMP_SLOT relocation for it, as
 * Debian builds lws), no where it binds its own call (-Bsymbolic-functions,
 * LTO: tools/lws-check.sh runs this test on such builds). */

#include "sul.h"
#include "testlib.h"

#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 400

typedef struct item {
    lws_dll2_t list;
    int key;
    int seq; /* insertion order, to tell tied keys apart */
} item;

static int item_compare(const lws_dll2_t *a, const lws_dll2_t *b)
{
    const item *x = lws_container_of(a, item, list), *y = lws_container_of(b, item, list);
    return x->key - y->key;
}

/* Reference: lws 4.1.6's algorithm over an array of seq numbers. */
static void ref_insert(int *order, int *n, const item *items, int seq)
{
    int pos = *n;
    for (int i = 0; i < *n; i++)
        if (items[order[i]].key - items[seq].key >= 0) {
            pos = i;
            break;
        }
    memmove(order + pos + 1, order + pos, (size_t)(*n - pos) * sizeof(int));
    order[pos] = seq;
    (*n)++;
}

/* Insert keys[] one by one and compare with the reference after each. */
static void run_keys(const int *keys, int n)
{
    static item items[N];
    static int order[N];
    int nref = 0, ok = 1;
    lws_dll2_owner_t own;

    memset(&own, 0, sizeof(own));
    memset(items, 0, sizeof(items));
    for (int i = 0; i < n; i++) {
        items[i].key = keys[i];
        items[i].seq = i;
        lws_dll2_add_sorted(&items[i].list, &own, item_compare);
        ref_insert(order, &nref, items, i);

        int k = 0;
        const lws_dll2_t *prev = NULL;
        for (const lws_dll2_t *p = lws_dll2_get_head(&own); p; prev = p, p = p->next, k++)
            if (k >= nref || lws_container_of(p, item, list)->seq != order[k] || p->prev != prev ||
                p->owner != &own)
                ok = 0;
        if (k != nref || own.count != (uint32_t)nref || lws_dll2_get_tail(&own) != prev)
            ok = 0;
    }
    CHECK(ok);
}

static void test_random(void)
{
    int keys[N];
    srand(7);
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < N; i++)
            keys[i] = rand() % (round < 10 ? 1000 : 8); /* later rounds: many ties */
        run_keys(keys, N);
    }
}

static void test_ascending_descending_equal(void)
{
    int keys[N];
    for (int i = 0; i < N; i++)
        keys[i] = i;
    run_keys(keys, N); /* every insert is the latest: a new timeout */
    for (int i = 0; i < N; i++)
        keys[i] = N - i;
    run_keys(keys, N); /* every insert is the earliest */
    for (int i = 0; i < N; i++)
        keys[i] = 5;
    run_keys(keys, N); /* ties go before their equals, as in lws */
    for (int i = 0; i < N; i++)
        keys[i] = (i % 2) ? i : N - i;
    run_keys(keys, N); /* alternating ends */
}

/* 1 if the loaded libwebsockets calls lws_dll2_add_sorted through its PLT
 * (readelf lists a JUMP_SLOT relocation for it), 0 if not, -1 if that
 * cannot be told. */
static int plt_calls_add_sorted(void)
{
    Dl_info info;
    if (!dladdr((void *)lws_create_context, &info) || !info.dli_fname)
        return -1;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "readelf -rW '%s' 2>/dev/null", info.dli_fname);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[512];
    int lines = 0, found = 0;
    while (fgets(line, sizeof(line), p)) {
        lines++;
        found |= strstr(line, "JUMP_SLOT") && strstr(line, " lws_dll2_add_sorted");
    }
    int rc = pclose(p);
    return rc != 0 || lines == 0 ? -1 : found;
}

static void test_lws_uses_it(void)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    lws_set_log_level(0, NULL);
    struct lws_context *ctx = lws_create_context(&info);
    CHECK(ctx != NULL);
    if (!ctx)
        return;
    int expect = plt_calls_add_sorted();
    if (expect < 0)
        fprintf(stderr, "test_sul: readelf unavailable: only the probe's own result is known\n");
    int got = sul_check(ctx);
    CHECK(got == 0 || got == 1);
    if (expect >= 0)
        CHECK(got == expect);
    lws_context_destroy(ctx);
}

TEST_MAIN("sul", T(test_random), T(test_ascending_descending_equal), T(test_lws_uses_it))
