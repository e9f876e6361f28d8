/* sul.c — O(1) insertion into libwebsockets' sorted timer lists (sul.h). */
#include "sul.h"

#include <dlfcn.h>
#include <string.h>

#include "lwsc.h"

typedef void (*sul_add_fn)(lws_dll2_t *, lws_dll2_owner_t *,
                           int (*)(const lws_dll2_t *, const lws_dll2_t *));

static unsigned long sul_inserts; /* calls that reached this file */
static sul_add_fn sul_real;       /* lws's own, for versions not checked */

/* Same contract and result as lws 4.1.6's version: d goes before the first
 * entry p with compare(p, d) >= 0, else at the tail.  The list is sorted,
 * so the entries with compare < 0 are a prefix: walking from the head
 * finds its end at the first entry >= 0, walking from the tail at the last
 * entry < 0.  Both walks advance together until one finds it. */
void lws_dll2_add_sorted(lws_dll2_t *d, lws_dll2_owner_t *own,
                         int (*compare)(const lws_dll2_t *d, const lws_dll2_t *i))
{
    sul_inserts++;
    if (!lwsc_checked()) {
        if (!sul_real)
            sul_real = (sul_add_fn)dlsym(RTLD_NEXT, "lws_dll2_add_sorted");
        if (sul_real) {
            sul_real(d, own, compare);
            return;
        }
    }
    lws_dll2_t *h = lws_dll2_get_head(own), *t = lws_dll2_get_tail(own);
    while (h && t) {
        if (compare(h, d) >= 0) {
            lws_dll2_add_before(d, h);
            return;
        }
        if (compare(t, d) < 0) {
            if (t->next)
                lws_dll2_add_before(d, t->next);
            else
                lws_dll2_add_tail(d, own);
            return;
        }
        h = h->next;
        t = t->prev;
    }
    lws_dll2_add_tail(d, own);
}

static void sul_probe_cb(lws_sorted_usec_list_t *sul)
{
    (void)sul;
}

int sul_check(struct lws_context *ctx)
{
    lws_sorted_usec_list_t probe;
    unsigned long before = sul_inserts;

    memset(&probe, 0, sizeof(probe));
    lws_sul_schedule(ctx, 0, &probe, sul_probe_cb, 3600 * LWS_US_PER_SEC);
    lws_sul_cancel(&probe);
    return sul_inserts != before;
}
