/* lalloc.c — the Lua state's allocator (see lalloc.h). */
#include "lalloc.h"

#include <stdlib.h>
#include <string.h>

#define LALLOC_STEP 16
#define LALLOC_MAX (LALLOC_CLASSES * LALLOC_STEP)
#define LALLOC_SLAB (64 * 1024)

void lalloc_init(lalloc *a, size_t limit)
{
    memset(a, 0, sizeof(*a));
    a->limit = limit;
}

/* Class of a block of n bytes (1..LALLOC_MAX). */
static size_t lalloc_class(size_t n)
{
    return (n - 1) / LALLOC_STEP;
}

static void *lalloc_small(lalloc *a, size_t n)
{
    size_t k = lalloc_class(n);
    void *p = a->free[k];
    if (p) {
        a->free[k] = *(void **)p;
        /* The GC frees in bursts, so the next block of the list is likely
         * out of the cache: its link is read by the next allocation. */
        __builtin_prefetch(a->free[k]);
        return p;
    }
    size_t size = (k + 1) * LALLOC_STEP;
    if ((size_t)(a->bump_end - a->bump) < size) {
        char *slab = malloc(LALLOC_SLAB);
        if (!slab)
            return NULL;
        *(void **)slab = a->slabs;
        a->slabs = slab;
        a->bump = slab + LALLOC_STEP; /* the link word, kept 16-aligned */
        a->bump_end = slab + LALLOC_SLAB;
    }
    p = a->bump;
    a->bump += size;
    return p;
}

static void lalloc_small_free(lalloc *a, void *p, size_t n)
{
    size_t k = lalloc_class(n);
    *(void **)p = a->free[k];
    a->free[k] = p;
}

void *lalloc_fn(void *ud, void *ptr, size_t osize, size_t nsize)
{
    lalloc *a = ud;
    size_t old = ptr ? osize : 0; /* without ptr, osize is a type tag */

    if (nsize == 0) {
        if (ptr) {
            if (old <= LALLOC_MAX)
                lalloc_small_free(a, ptr, old);
            else
                free(ptr);
            a->mem -= old;
        }
        return NULL;
    }
    if (a->limit && a->capped && nsize > old && a->mem - old + nsize > a->limit + a->slack)
        return NULL;
    void *p;
    if (old > LALLOC_MAX && nsize > LALLOC_MAX) {
        p = realloc(ptr, nsize);
    } else if (ptr && old <= LALLOC_MAX && nsize <= LALLOC_MAX &&
               lalloc_class(old) == lalloc_class(nsize)) {
        p = ptr;
    } else {
        p = nsize <= LALLOC_MAX ? lalloc_small(a, nsize) : malloc(nsize);
        if (p && ptr) {
            memcpy(p, ptr, old < nsize ? old : nsize);
            if (old <= LALLOC_MAX)
                lalloc_small_free(a, ptr, old);
            else
                free(ptr);
        }
    }
    if (p)
        a->mem = a->mem - old + nsize;
    return p;
}

void lalloc_free(lalloc *a)
{
    while (a->slabs) {
        void *next = *(void **)a->slabs;
        free(a->slabs);
        a->slabs = next;
    }
    memset(a->free, 0, sizeof(a->free));
    a->bump = a->bump_end = NULL;
}
