/* lwsmem.c — the memory libwebsockets allocates (see lwsmem.h).
 *
 * An arena serves one kind of allocation, named by the reason string lws
 * passes: chunks of LWSMEM_CHUNK_SLOTS slots, each slot the size of the
 * first request rounded up to pages, in private anonymous mappings (no huge
 * pages: a touched byte must cost one page, not 2 MiB).  Free slots are
 * kept on a stack outside the slots, so a free slot is never written.  A
 * freed slot goes on top as it is ("warm"), for the next allocation to
 * take; lwsmem_trim(), which the event loop calls a second after a free
 * left more than LWSMEM_WARM_BYTES (lwsmem.h) warm, empties the surplus with
 * MADV_DONTNEED, one call per run of neighbouring slots.  Emptying a slot
 * at each free cost a system call, a TLB flush on every cpu the process
 * ran on, and a page fault at the next use: done for every handshake, it
 * was the biggest cost of a connect storm.  A receive buffer is
 * also emptied, at once, when lwsmem_rx_release() says its content is
 * dead.  A request bigger than the slot size goes to malloc. */
#include "lwsmem.h"

#include <libwebsockets.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Slots per mapping. */
#define LWSMEM_CHUNK_SLOTS 256

typedef struct lwsmem_arena {
    const char *reason;     /* lws's reason string for these allocations */
    size_t slot;            /* bytes per slot (page multiple); 0 until first use */
    unsigned char **chunks; /* mappings of LWSMEM_CHUNK_SLOTS slots */
    size_t nchunks;
    unsigned char *lo, *hi; /* address range covering every chunk */
    unsigned char **free;   /* stack of free slots, the warm ones on top */
    size_t nfree, free_cap;
    size_t warm; /* free slots not emptied since their last use */
    size_t used; /* slots handed out */
} lwsmem_arena;

/* The allocations of lws 4.1 and 4.3 (the same strings) that get an arena (lwsmem.h says why);
 * reason strings from roles/ws/ops-ws.c and roles/http/parsers.c. */
enum { LWSMEM_RX, LWSMEM_AH_DATA, LWSMEM_NARENAS };
static lwsmem_arena lwsmem_arenas[LWSMEM_NARENAS] = {
    [LWSMEM_RX] = {.reason = "rx_ubuf"},
    [LWSMEM_AH_DATA] = {.reason = "ah data"},
};

static struct {
    uint64_t releases;
    uint64_t trims;    /* free slots emptied by lwsmem_trim */
    size_t heap_bytes; /* malloc'd for lws, by malloc_usable_size */
    uint64_t heap_allocs;
} lm;

/* The slot of a holding p, or NULL. */
static unsigned char *lwsmem_slot_in(const lwsmem_arena *a, const void *p)
{
    const unsigned char *b = p;
    if (!a->nchunks || b < a->lo || b >= a->hi)
        return NULL;
    size_t span = a->slot * LWSMEM_CHUNK_SLOTS;
    for (size_t i = 0; i < a->nchunks; i++)
        if (b >= a->chunks[i] && b < a->chunks[i] + span)
            return a->chunks[i] + (size_t)(b - a->chunks[i]) / a->slot * a->slot;
    return NULL;
}

static int lwsmem_map_chunk(lwsmem_arena *a)
{
    size_t span = a->slot * LWSMEM_CHUNK_SLOTS;
    unsigned char **nc = realloc(a->chunks, (a->nchunks + 1) * sizeof(*nc));
    if (!nc)
        return -1;
    a->chunks = nc;
    size_t cap = (a->nchunks + 1) * LWSMEM_CHUNK_SLOTS; /* room for every slot */
    if (cap > a->free_cap) {
        unsigned char **nf = realloc(a->free, cap * sizeof(*nf));
        if (!nf)
            return -1;
        a->free = nf;
        a->free_cap = cap;
    }
    unsigned char *m = mmap(NULL, span, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    madvise(m, span, MADV_NOHUGEPAGE);
    a->chunks[a->nchunks++] = m;
    if (!a->lo || m < a->lo)
        a->lo = m;
    if (m + span > a->hi)
        a->hi = m + span;
    for (size_t i = LWSMEM_CHUNK_SLOTS; i-- > 0;) /* lowest address on top */
        a->free[a->nfree++] = m + i * a->slot;
    return 0;
}

/* A slot for size bytes, or NULL (use malloc). */
static void *lwsmem_slot_alloc(lwsmem_arena *a, size_t size)
{
    if (!a->slot) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        a->slot = (size + page - 1) / page * page;
    }
    if (size > a->slot)
        return NULL;
    if (!a->nfree && lwsmem_map_chunk(a) != 0)
        return NULL;
    a->used++;
    if (a->warm)
        a->warm--;
    return a->free[--a->nfree];
}

static size_t lwsmem_warm_max(const lwsmem_arena *a)
{
    return a->slot && a->slot < LWSMEM_WARM_BYTES ? LWSMEM_WARM_BYTES / a->slot : 1;
}

static void lwsmem_slot_free(lwsmem_arena *a, unsigned char *slot)
{
    a->free[a->nfree++] = slot; /* fits: free_cap covers every slot */
    a->warm++;
    a->used--;
}

static int lwsmem_by_address(const void *x, const void *y)
{
    const unsigned char *a = *(unsigned char *const *)x, *b = *(unsigned char *const *)y;
    return (a > b) - (a < b);
}

/* Empty the warm slots beyond the arena's allowance, the least recently
 * freed: they lie just under the allowance on the stack, where they stay. */
static void lwsmem_arena_trim(lwsmem_arena *a)
{
    size_t keep = lwsmem_warm_max(a);
    if (a->warm <= keep)
        return;
    unsigned char **cold = a->free + a->nfree - a->warm;
    size_t n = a->warm - keep;
    qsort(cold, n, sizeof(*cold), lwsmem_by_address);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && cold[j] == cold[j - 1] + a->slot)
            j++;
        madvise(cold[i], (j - i) * a->slot, MADV_DONTNEED);
        lm.trims += j - i;
        i = j;
    }
    a->warm = keep;
}

static void *lwsmem_heap(void *ptr, size_t size)
{
    size_t old = ptr ? malloc_usable_size(ptr) : 0;
    if (!size) {
        free(ptr);
        if (ptr) {
            lm.heap_bytes -= old;
            lm.heap_allocs--;
        }
        return NULL;
    }
    void *v = realloc(ptr, size);
    if (!v)
        return NULL;
    lm.heap_bytes += malloc_usable_size(v) - old;
    lm.heap_allocs += ptr ? 0 : 1;
    return v;
}

/* realloc() for a slot: same slot if it fits, else moved to the heap. */
static void *lwsmem_slot_realloc(lwsmem_arena *a, unsigned char *slot, size_t size)
{
    if (size == 0) {
        lwsmem_slot_free(a, slot);
        return NULL;
    }
    if (size <= a->slot)
        return slot;
    void *v = lwsmem_heap(NULL, size);
    if (v) {
        memcpy(v, slot, a->slot);
        lwsmem_slot_free(a, slot);
    }
    return v;
}

/* The lws allocator hook: realloc semantics (size 0 frees). */
static void *lwsmem_realloc(void *ptr, size_t size, const char *reason)
{
    for (int i = 0; ptr && i < LWSMEM_NARENAS; i++) {
        unsigned char *slot = lwsmem_slot_in(&lwsmem_arenas[i], ptr);
        if (slot)
            return lwsmem_slot_realloc(&lwsmem_arenas[i], slot, size);
    }
    for (int i = 0; !ptr && size && reason && i < LWSMEM_NARENAS; i++) {
        if (strcmp(reason, lwsmem_arenas[i].reason) != 0)
            continue;
        void *v = lwsmem_slot_alloc(&lwsmem_arenas[i], size);
        if (v)
            return v;
        break;
    }
    return lwsmem_heap(ptr, size);
}

void lwsmem_install(void)
{
    lws_set_allocator(lwsmem_realloc);
}

void lwsmem_shutdown(void)
{
    for (int i = 0; i < LWSMEM_NARENAS; i++) {
        lwsmem_arena *a = &lwsmem_arenas[i];
        if (a->used) /* lws still holds a slot: keep the mappings */
            continue;
        for (size_t c = 0; c < a->nchunks; c++)
            munmap(a->chunks[c], a->slot * LWSMEM_CHUNK_SLOTS);
        free(a->chunks);
        free(a->free);
        a->chunks = a->free = NULL;
        a->nchunks = a->nfree = a->free_cap = a->warm = 0;
        a->lo = a->hi = NULL;
    }
}

int lwsmem_trim_wanted(void)
{
    for (int i = 0; i < LWSMEM_NARENAS; i++)
        if (lwsmem_arenas[i].warm > lwsmem_warm_max(&lwsmem_arenas[i]))
            return 1;
    return 0;
}

void lwsmem_trim(void)
{
    for (int i = 0; i < LWSMEM_NARENAS; i++)
        lwsmem_arena_trim(&lwsmem_arenas[i]);
}

void lwsmem_rx_release(const void *p)
{
    lwsmem_arena *a = &lwsmem_arenas[LWSMEM_RX];
    unsigned char *slot = lwsmem_slot_in(a, p);
    if (!slot)
        return;
    madvise(slot, a->slot, MADV_DONTNEED);
    lm.releases++;
}

void lwsmem_get_stats(lwsmem_stats *st)
{
    const lwsmem_arena *rx = &lwsmem_arenas[LWSMEM_RX];
    const lwsmem_arena *ah = &lwsmem_arenas[LWSMEM_AH_DATA];
    st->heap_bytes = lm.heap_bytes;
    st->heap_allocs = lm.heap_allocs;
    st->rx_slots = rx->used;
    st->rx_slot_bytes = rx->slot;
    st->rx_mapped = rx->nchunks * LWSMEM_CHUNK_SLOTS * rx->slot;
    st->rx_releases = lm.releases;
    st->ah_slots = ah->used;
    st->warm_bytes = rx->warm * rx->slot + ah->warm * ah->slot;
    st->trimmed = lm.trims;
}
