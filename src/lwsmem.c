/* lwsmem.c — the memory libwebsockets allocates (see lwsmem.h).
 *
 * An arena serves one kind of allocation, named by the reason string lws
 * passes: chunks of LWSMEM_CHUNK_SLOTS slots, each slot the size of the
 * first request rounded up to pages, in private anonymous mappings (no huge
 * pages: a touched byte must cost one page, not 2 MiB).  Free slots are
 * kept on a stack outside the slots, so a free slot is never written; a
 * slot is emptied with MADV_DONTNEED when it is freed (and, for receive
 * buffers, when lwsmem_rx_release() says its content is dead).  A request
 * bigger than the slot size goes to malloc. */
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
    unsigned char **free;   /* stack of free slots */
    size_t nfree, free_cap;
    size_t used; /* slots handed out */
} lwsmem_arena;

/* The allocations of lws 4.1.6 that get an arena (lwsmem.h says why);
 * reason strings from roles/ws/ops-ws.c and roles/http/parsers.c. */
enum { LWSMEM_RX, LWSMEM_AH_DATA, LWSMEM_NARENAS };
static lwsmem_arena lwsmem_arenas[LWSMEM_NARENAS] = {
    [LWSMEM_RX] = {.reason = "rx_ubuf"},
    [LWSMEM_AH_DATA] = {.reason = "ah data"},
};

static struct {
    uint64_t releases;
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
    return a->free[--a->nfree];
}

static void lwsmem_slot_free(lwsmem_arena *a, unsigned char *slot)
{
    madvise(slot, a->slot, MADV_DONTNEED);
    a->free[a->nfree++] = slot; /* fits: free_cap covers every slot */
    a->used--;
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
        a->nchunks = a->nfree = a->free_cap = 0;
        a->lo = a->hi = NULL;
    }
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
}
