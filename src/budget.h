/* budget.h — the time budget of a Lua hook call.
 *
 * A watchdog thread checks periodically whether the hook call in progress
 * has run longer than the budget; if so it signals the event loop's thread
 * (SIGRTMIN+1), whose handler installs a Lua debug hook that raises "hook
 * exceeded its budget of N ms" at the next instruction, and keeps raising
 * it until the call unwinds, so a pcall inside the script cannot swallow
 * it.  Script states run with the JIT off (script.c), which is what makes
 * debug hooks fire in every loop.  The per-call cost is a few plain
 * stores and a load; the clock is read only by the watchdog.  After a
 * second without calls the watchdog sleeps until the next one, so an idle
 * gateway does not wake every tick.  budget_start must run on the event
 * loop's thread, which must not block SIGRTMIN+1.
 *
 * While the call goes on past its budget the watchdog signals again every
 * budget, and the hook is set again (a script may have removed it).
 *
 * Known limits: a __gc finalizer that loops forever or a single
 * never-ending C call (e.g. a pathological string.find) runs no hook and
 * is not interrupted.  A call still running a second past its budget is
 * stuck for good: the watchdog says so on stderr, and from then on a
 * SIGTERM or SIGINT (which the stuck loop can never read) ends the
 * process at once, with status 1. */
#ifndef MG_BUDGET_H
#define MG_BUDGET_H

#include <stdint.h>
#include <lua.h>

/* Start the watchdog thread.  0 or -1. */
int budget_start(uint32_t budget_ms);
/* Change the budget (reload). */
void budget_set(uint32_t budget_ms);
void budget_stop(void);

/* Bracket every lua_pcall into a hook.  budget_leave returns 1 if the call
 * was aborted for exceeding the budget.  Read budget_clock_us for the
 * call's start after budget_enter, which sets it if the watchdog slept. */
void budget_enter(lua_State *L);
int budget_leave(void);

uint32_t budget_ms(void);

/* 1 while the call in progress is being aborted (its hook raises at every
 * instruction): an xpcall message handler must not run then (script.c). */
int budget_aborting(void);

/* How long without a call before the watchdog sleeps (0: the default, 1 s;
 * tests shorten it), and how many times it has slept (0 where the kernel
 * lacks membarrier's private expedited command: then it never does). */
void budget_set_idle(uint32_t idle_ms);
uint64_t budget_parks(void);

/* A clock that moves once per watchdog tick (budget/10, 1..10 ms): the
 * monotonic time of the last tick in microseconds, 0 before budget_start.
 * Reading it costs one load.  The difference across a call is 0 for most
 * short calls and a tick for a few: a tick falls inside a call with a
 * probability proportional to its length, so summed over many calls it
 * is the time they took, without bias. */
int64_t budget_clock_us(void);

#endif
