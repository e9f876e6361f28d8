/* lalloc.h — the allocator of a script's Lua state.
 *
 * Counts the bytes the state holds and refuses to grow past its memory cap
 * (lua.memory_limit) inside protected calls, so a runaway script gets a
 * Lua "not enough memory" error instead of taking the gateway's memory.  Small blocks (most Lua
 * objects: strings of a message, tables, closures) come from per-size free
 * lists carved out of 64 KiB slabs: a message's string costs a list pop and
 * a push instead of a trip through malloc.  Slabs are returned when the
 * state closes; bigger blocks go to realloc/free. */
#ifndef MG_LALLOC_H
#define MG_LALLOC_H

#include <stddef.h>

#define LALLOC_CLASSES 32 /* 16-byte steps: blocks up to 512 bytes */

typedef struct lalloc {
    size_t mem;   /* bytes the state holds (as it asked for them) */
    size_t limit; /* 0 = none */
    int capped;   /* > 0 inside a protected call: only there is the limit
                   * enforced, since only there can the error be caught (an
                   * allocation refused outside one, e.g. while pushing a
                   * hook's arguments, would end the process) */
    size_t slack; /* room over the limit, while a collection runs: its
                   * finalizers may need a little memory just when a script
                   * has filled the state, and a collection that fails
                   * frees nothing */
    void *free[LALLOC_CLASSES];
    void *slabs; /* singly linked through their first word */
    char *bump, *bump_end;
} lalloc;

void lalloc_init(lalloc *a, size_t limit);
/* The lua_Alloc function; ud is the lalloc. */
void *lalloc_fn(void *ud, void *ptr, size_t osize, size_t nsize);
/* After lua_close: give the slabs back. */
void lalloc_free(lalloc *a);

#endif
