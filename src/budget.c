/* budget.c — the time budget of a Lua hook call (see budget.h).
 *
 * The watchdog thread ticks every budget/10 (1..50 ms).  The first tick
 * that sees a call notes the time; a tick that sees the same call budget
 * ms later installs the abort hook.  So a call is aborted between budget
 * and budget + 2 ticks after it started, and never before the budget.
 *
 * It used to be a SIGALRM timer: every tick then interrupted the event
 * loop's poll(), which with 10,000 connections costs the kernel ~15 ms to
 * set up again (40 ticks a second: most of a core).  A thread sleeps
 * without disturbing anyone.
 *
 * The one race: the call ends (and the next may begin) while the
 * watchdog decides to abort it.  One atomic word, `call`, holds the call's
 * number and whether it runs or was fired at: the watchdog installs the
 * hook only by moving that very call from running to fired (a compare and
 * swap, under `lock`); budget_leave takes the word to idle in one
 * exchange, and only if that saw "fired" (a hook is or is being installed)
 * does it take the lock and remove the hook.  The state shared with the
 * thread lives in one static struct, like the signal handler's did. */
#include "budget.h"

#include <lauxlib.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

/* call = number << 2 | one of these */
enum { BUDGET_IDLE, BUDGET_IN_CALL, BUDGET_FIRED };
#define BUDGET_FLAGS 3u

static struct {
    atomic_uint_fast64_t call; /* the call running now, and its fate */
    uint64_t seq;              /* main thread only: number of the last call */
    lua_State *_Atomic L;      /* state of the running call */
    atomic_uint budget_ms;
    atomic_int stop;      /* the thread should exit */
    pthread_mutex_t lock; /* hook installation vs. removal */
    pthread_t thread;
    int running;
} budget = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int64_t budget_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void budget_abort_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    luaL_error(L, "hook exceeded its budget of %d ms", (int)atomic_load(&budget.budget_ms));
}

static uint32_t budget_tick_ms(void)
{
    uint32_t tick = atomic_load(&budget.budget_ms) / 10;
    return tick < 1 ? 1 : tick > 50 ? 50 : tick;
}

/* Install the abort hook if `call` is still the one that overran. */
static void budget_fire(uint_fast64_t call)
{
    pthread_mutex_lock(&budget.lock);
    if (atomic_compare_exchange_strong(&budget.call, &call,
                                       (call & ~(uint_fast64_t)BUDGET_FLAGS) | BUDGET_FIRED))
        lua_sethook(atomic_load(&budget.L), budget_abort_hook,
                    LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    pthread_mutex_unlock(&budget.lock);
}

static void *budget_main(void *arg)
{
    (void)arg;
    uint_fast64_t seen = 0;
    int64_t seen_since = 0;
    while (!atomic_load(&budget.stop)) {
        uint32_t tick = budget_tick_ms();
        struct timespec ts = {tick / 1000, (long)(tick % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        uint_fast64_t call = atomic_load(&budget.call);
        if ((call & BUDGET_FLAGS) != BUDGET_IN_CALL)
            continue;
        int64_t now = budget_now_ms();
        if (call != seen) {
            seen = call;
            seen_since = now;
        } else if (now - seen_since >= (int64_t)atomic_load(&budget.budget_ms)) {
            budget_fire(call);
        }
    }
    return NULL;
}

int budget_start(uint32_t budget_ms)
{
    atomic_store(&budget.budget_ms, budget_ms);
    atomic_store(&budget.stop, 0);
    /* The watchdog takes no signal: they are the event loop's (signalfd). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&budget.thread, NULL, budget_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -1;
    budget.running = 1;
    return 0;
}

void budget_set(uint32_t budget_ms)
{
    atomic_store(&budget.budget_ms, budget_ms);
}

void budget_stop(void)
{
    if (budget.running) {
        atomic_store(&budget.stop, 1);
        pthread_join(budget.thread, NULL);
        budget.running = 0;
    }
}

uint32_t budget_ms(void)
{
    return atomic_load(&budget.budget_ms);
}

void budget_enter(lua_State *L)
{
    atomic_store_explicit(&budget.L, L, memory_order_relaxed);
    atomic_store_explicit(&budget.call, ++budget.seq << 2 | BUDGET_IN_CALL, memory_order_release);
}

int budget_leave(void)
{
    if ((atomic_exchange(&budget.call, BUDGET_IDLE) & BUDGET_FLAGS) != BUDGET_FIRED)
        return 0;
    pthread_mutex_lock(&budget.lock); /* the watchdog is done installing it */
    lua_sethook(atomic_load(&budget.L), NULL, 0, 0);
    pthread_mutex_unlock(&budget.lock);
    return 1;
}
