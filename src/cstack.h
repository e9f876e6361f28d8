/* cstack.h — the event loop's C stack.
 *
 * Lua code can recurse through C: string.gsub calling a function that
 * calls gsub, a __tostring that logs the object, table.sort's comparator.
 * Each level costs a little of Lua's own stack (LuaJIT stops at 65,500
 * slots with a "stack overflow" error) and kilobytes of C stack (gsub
 * keeps a LUAL_BUFFERSIZE buffer per level): long before Lua's limit the
 * C stack outgrows the 8 MB a main thread gets, so the process died of
 * SIGSEGV where the hook should have had an error.  So the loop runs on a
 * thread of its own with CSTACK_SIZE of stack, reserved but not committed:
 * pages cost memory only once a deep call has touched them, and
 * cstack_trim gives them back after an error.
 *
 * Coroutines are the other way down: each has a Lua stack of its own, so
 * nesting them (a coroutine that resumes a new one, and so on) is bounded
 * by nothing but the C stack.  cstack_room() tells how much is left; the
 * Lua state's coroutine.resume and coroutine.wrap refuse to go deeper
 * when less than CSTACK_RESERVE remains (script.c).
 *
 * The bounds are the calling thread's (thread-local): in a thread not
 * started here cstack_room() reports plenty. */
#ifndef MG_CSTACK_H
#define MG_CSTACK_H

#include <stddef.h>

#define CSTACK_SIZE ((size_t)1 << 30)    /* reserved for the loop thread */
#define CSTACK_RESERVE ((size_t)1 << 28) /* left for one coroutine's own recursion */

/* Run fn(arg) on a new thread named name with a CSTACK_SIZE stack, and
 * wait for it; returns what fn returned, or -1 (with errno) if the thread
 * could not be started. */
int cstack_run(const char *name, int (*fn)(void *), void *arg);

/* Bytes of stack left below the caller's frame. */
size_t cstack_room(void);

/* Give back the pages of stack below the caller's frame (after a call
 * that may have gone deep ended in an error). */
void cstack_trim(void);

#endif
