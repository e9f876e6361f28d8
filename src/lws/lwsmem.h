/* lwsmem.h — the memory libwebsockets allocates, through lws_set_allocator().
 *
 * Every lws allocation passes through one hook.  Most go to malloc
 * unchanged and are counted.  Two kinds get arenas of page-aligned slots in
 * anonymous mappings instead, where pages nobody touched cost no memory and
 * a freed slot's pages go back to the kernel (beyond 256 KiB of freed slots
 * kept for reuse, a second after the free):
 *  - each WebSocket connection's receive buffer ("rx_ubuf":
 *    pt_serv_buf_size + LWS_PRE + 4 bytes, 64 KiB here, so that a 16 KiB
 *    message is one read);
 *  - the 4 KiB of header-table data ("ah data") a connection holds only
 *    until its upgrade completes: on the heap, thousands of them during a
 *    connect storm left holes between the connections' lasting allocations.
 *    (The ~1 KiB "ah struct" stays on the heap: lws walks a list of them,
 *    and with one per page every step of that walk missed the caches.)
 * lws 4.1.6 delivers data payloads straight from its read buffer; only
 * control frames (ping, pong, close) are collected in a connection's
 * receive buffer, touching its first page.  lwsmem_rx_release() hands the
 * slot's pages back (server.c: at each pong, the answer to a heartbeat
 * ping), so an idle connection's 64 KiB buffer costs no resident memory.
 *
 * The hook has no context argument, so this state is process-wide (the one
 * exception, with log.c and budget.c, to "everything lives in mg_gw"). */
#ifndef MG_LWSMEM_H
#define MG_LWSMEM_H

#include <stddef.h>
#include <stdint.h>

typedef struct lwsmem_stats {
    size_t heap_bytes; /* lws allocations served by malloc (usable sizes) */
    uint64_t heap_allocs;
    size_t rx_slots;      /* receive buffers in use */
    size_t rx_slot_bytes; /* size of one slot (0 before the first) */
    size_t rx_mapped;     /* bytes of address space the arena has mapped */
    uint64_t rx_releases; /* slots whose pages were handed back */
    size_t ah_slots;      /* header tables in use (connections in their handshake) */
    size_t warm_bytes;    /* free slots not yet emptied (their pages may be resident) */
    uint64_t trimmed;     /* free slots emptied by lwsmem_trim */
} lwsmem_stats;

/* Route lws's allocations here; call before lws_create_context(). */
void lwsmem_install(void);
/* After lws_context_destroy(): unmap the arena, go back to plain malloc. */
void lwsmem_shutdown(void);

/* p points into a receive buffer whose content lws no longer needs (see
 * server.c for when that is known): drop its pages.  A pointer that is not
 * in the arena is ignored. */
void lwsmem_rx_release(const void *p);

/* A freed slot is kept as it is, for the next allocation (a connect storm
 * reuses each header table at once).  lwsmem_trim_wanted() says more than
 * LWSMEM_WARM_BYTES per arena (at least one slot) is kept so;
 * lwsmem_trim() then empties the surplus, the least recently freed (the
 * event loop calls it a second later, server.c).  Kept after a trim: 64
 * header tables, 3 receive buffers. */
#define LWSMEM_WARM_BYTES (256 * 1024)
int lwsmem_trim_wanted(void);
void lwsmem_trim(void);

void lwsmem_get_stats(lwsmem_stats *st);

#endif
