/* test_lwsmem.c — lwsmem.c through lws's own allocator entry point:
 * receive buffers and header tables come from page-aligned arena slots,
 * other reasons from the heap (counted); slots are reused after a free,
 * across chunk boundaries, the most recently freed first and as they were;
 * lwsmem_trim empties the freed slots beyond LWSMEM_WARM_BYTES per arena, the least
 * recently freed, and no other; a released or emptied slot holds no
 * resident page and reads back as zeros; a pointer anywhere inside a slot finds it; a
 * realloc past the slot size moves to the heap with the content kept;
 * pointers outside the arena are ignored by lwsmem_rx_release. */

#include "lwsmem.h"
#include "testlib.h"

#include <libwebsockets.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Exported by libwebsockets 4.1.6, not declared in its headers. */
void *lws_realloc(void *ptr, size_t size, const char *reason);

#define RX_SIZE (65536 + LWS_PRE + 4) /* what lws asks for with pt_serv_buf_size 64 KiB */
#define MANY 600                      /* more than two chunks of slots */

static int resident(const void *p)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char v = 0;
    void *base = (void *)((uintptr_t)p / page * page);
    return mincore(base, page, &v) == 0 && (v & 1);
}

static void test_rx_slots(void)
{
    static unsigned char *p[MANY];
    lwsmem_stats st;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    for (int i = 0; i < MANY; i++) {
        p[i] = lws_realloc(NULL, RX_SIZE, "rx_ubuf");
        CHECK(p[i] != NULL && (uintptr_t)p[i] % page == 0);
    }
    lwsmem_get_stats(&st);
    CHECK(st.rx_slots == MANY);
    CHECK(st.rx_slot_bytes >= RX_SIZE && st.rx_slot_bytes % page == 0);
    for (int i = 1; i < MANY; i++) /* distinct, never overlapping */
        CHECK(p[i] != p[i - 1] && (size_t)labs(p[i] - p[i - 1]) >= st.rx_slot_bytes);
    size_t mapped = st.rx_mapped;

    /* Untouched pages are not resident; a written one is until released. */
    CHECK(!resident(p[0]));
    memset(p[0] + LWS_PRE, 'x', 100);
    CHECK(resident(p[0]));
    lwsmem_rx_release(p[0] + LWS_PRE + 50); /* any pointer inside the slot */
    CHECK(!resident(p[0]));
    CHECK(p[0][LWS_PRE] == 0);
    lwsmem_get_stats(&st);
    CHECK(st.rx_releases == 1 && st.rx_slots == MANY);

    /* Freed slots stay as they are until a trim, which empties all but
     * the last LWSMEM_WARM_BYTES of them; they are reused, newest first:
     * no new mappings. */
    size_t warm = LWSMEM_WARM_BYTES / st.rx_slot_bytes;
    CHECK(warm >= 2);
    CHECK(!lwsmem_trim_wanted());
    for (int i = 0; i < MANY; i++) {
        p[i][0] = 1;
        lws_realloc(p[i], 0, "lws_free");
        CHECK(resident(p[i]));
    }
    lwsmem_get_stats(&st);
    CHECK(st.rx_slots == 0 && st.warm_bytes == MANY * st.rx_slot_bytes);
    CHECK(lwsmem_trim_wanted());
    lwsmem_trim();
    CHECK(!lwsmem_trim_wanted());
    lwsmem_get_stats(&st);
    CHECK(st.trimmed == MANY - warm && st.warm_bytes == warm * st.rx_slot_bytes);
    for (int i = 0; i < MANY; i++)
        CHECK(resident(p[i]) == (i >= MANY - (int)warm));
    unsigned char *q[MANY];
    for (int i = 0; i < MANY; i++)
        q[i] = lws_realloc(NULL, RX_SIZE, "rx_ubuf");
    for (int i = 0; i < (int)warm; i++) /* the warm ones first, newest first */
        CHECK(q[i] == p[MANY - 1 - i] && q[i][0] == 1);
    for (int i = (int)warm; i < MANY; i++)
        CHECK(q[i][0] == 0);
    memcpy(p, q, sizeof(p));
    lwsmem_get_stats(&st);
    CHECK(st.rx_slots == MANY && st.rx_mapped == mapped && st.warm_bytes == 0);

    /* Growing past the slot moves to the heap, content kept. */
    memcpy(p[1], "hello", 6);
    unsigned char *big = lws_realloc(p[1], st.rx_slot_bytes + 1, "realloc");
    CHECK(big != NULL && memcmp(big, "hello", 6) == 0);
    lwsmem_get_stats(&st);
    CHECK(st.rx_slots == MANY - 1);
    lws_realloc(big, 0, "lws_free");
    p[1] = NULL;

    /* Shrinking, or a size that still fits, keeps the slot. */
    CHECK(lws_realloc(p[2], 100, "realloc") == p[2]);

    for (int i = 0; i < MANY; i++)
        lws_realloc(p[i], 0, "lws_free"); /* NULL is fine */
    lwsmem_get_stats(&st);
    CHECK(st.rx_slots == 0);
    lwsmem_trim();
    CHECK(!lwsmem_trim_wanted());
}

static void test_bigger_request_goes_to_heap(void)
{
    lwsmem_stats st, st2;
    lwsmem_get_stats(&st);
    void *v = lws_realloc(NULL, st.rx_slot_bytes * 2, "rx_ubuf");
    CHECK(v != NULL);
    lwsmem_get_stats(&st2);
    CHECK(st2.rx_slots == st.rx_slots && st2.heap_allocs == st.heap_allocs + 1);
    lwsmem_rx_release(v); /* not in the arena: ignored */
    lws_realloc(v, 0, "lws_free");
}

static void test_header_tables(void)
{
    lwsmem_stats st;
    char *d = lws_realloc(NULL, 4096, "ah data");
    char *s = lws_realloc(NULL, 900, "ah struct");
    lwsmem_get_stats(&st);
    CHECK(st.ah_slots == 1);
    CHECK(d && (uintptr_t)d % (size_t)sysconf(_SC_PAGESIZE) == 0);
    memset(d, 'h', 4096);
    lws_realloc(d, 0, "lws_free");
    lws_realloc(s, 0, "lws_free");
    lwsmem_get_stats(&st);
    CHECK(st.ah_slots == 0);
    /* The next handshake takes the same slot back, without a page fault. */
    CHECK(resident(d) && !lwsmem_trim_wanted());
    char *d2 = lws_realloc(NULL, 4096, "ah data");
    CHECK(d2 == d && d2[4095] == 'h');
    lws_realloc(d2, 0, "lws_free");
}

static void test_heap_accounting(void)
{
    lwsmem_stats a, b;
    lwsmem_get_stats(&a);
    char *x = lws_realloc(NULL, 100, "new server wsi");
    CHECK(x != NULL);
    lwsmem_get_stats(&b);
    CHECK(b.heap_allocs == a.heap_allocs + 1 && b.heap_bytes >= a.heap_bytes + 100);
    x = lws_realloc(x, 5000, "realloc");
    lwsmem_get_stats(&b);
    CHECK(b.heap_allocs == a.heap_allocs + 1 && b.heap_bytes >= a.heap_bytes + 5000);
    lws_realloc(x, 0, "lws_free");
    lwsmem_get_stats(&b);
    CHECK(b.heap_allocs == a.heap_allocs && b.heap_bytes == a.heap_bytes);
    lws_realloc(NULL, 0, "lws_free"); /* free(NULL) */
}

static void test_install(void)
{
    lwsmem_install();
}

static void test_shutdown(void)
{
    lwsmem_shutdown(); /* everything freed: mappings and stacks go (LeakSanitizer) */
    lwsmem_stats st;
    lwsmem_get_stats(&st);
    CHECK(st.rx_mapped == 0);
}

TEST_MAIN("lwsmem", T(test_install), T(test_rx_slots), T(test_bigger_request_goes_to_heap),
          T(test_header_tables), T(test_heap_accounting), T(test_shutdown))
