/* budget.c — the time budget of a Lua hook call (see budget.h).
 *
 * The watchdog thread ticks every budget/10 (1..10 ms).  The first tick
 * that sees a call notes the time; a tick that sees the same call budget
 * ms later signals the event loop's thread (BUDGET_SIGNAL, carrying the
 * call's number), whose handler installs the abort hook if that call is
 * still running.  So a call is aborted between budget and budget + 2
 * ticks after it started, and never before the budget.
 *
 * Every tick also publishes the time it woke (`clock_us`): the loop
 * thread reads it around each hook call to estimate hook time at the cost
 * of two loads, where a vDSO clock read costs 4.5 ns (coarse) to 18 ns
 * (precise) on our test VM and an echo with Lua spends ~200 ns per message.
 *
 * Everything the hook call path touches belongs to the loop thread: the
 * watchdog only reads `call`, and the decision to install the hook is
 * taken on the loop thread, in the handler, where it cannot race with the
 * call ending.  lua_sethook is the one Lua API call made for signal
 * handlers (lua.c's SIGINT does the same).  So entering and leaving a call
 * are plain stores: no atomic read-modify-write, no lock.  A signal is
 * sent only when a call overruns, so poll() is not interrupted otherwise
 * (a SIGALRM tick 40 times a second cost the kernel ~15 ms per tick to set
 * up a 10,000-socket poll again). */
#include "budget.h"

#include <lauxlib.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

/* The signal the watchdog sends the loop thread. */
#define BUDGET_SIGNAL (SIGRTMIN + 1)

static struct {
    _Atomic uint64_t call;        /* number << 1 | 1 while a call runs; 0 between */
    uint64_t seq;                 /* loop thread: number of the last call */
    lua_State *L;                 /* loop thread: state of the running call */
    volatile sig_atomic_t hooked; /* loop thread: the handler installed the hook */
    atomic_uint budget_ms;
    _Atomic int64_t clock_us; /* the watchdog's last tick, monotonic us */
    atomic_int stop;          /* the thread should exit */
    pthread_t thread, loop;
    int running;
} budget;

static int64_t budget_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void budget_abort_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    luaL_error(L, "hook exceeded its budget of %d ms", (int)atomic_load(&budget.budget_ms));
}

/* On the loop thread: abort the call the watchdog saw overrun, if it is
 * the one running now (it may have ended while the signal was on its way). */
static void budget_on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    uint64_t call = atomic_load_explicit(&budget.call, memory_order_relaxed);
    if (!(call & 1) || (uint32_t)si->si_value.sival_int != (uint32_t)call || budget.hooked)
        return;
    lua_sethook(budget.L, budget_abort_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    budget.hooked = 1;
}

static uint32_t budget_tick_ms(void)
{
    uint32_t tick = atomic_load(&budget.budget_ms) / 10;
    return tick < 1 ? 1 : tick > 10 ? 10 : tick;
}

static void *budget_main(void *arg)
{
    (void)arg;
    uint64_t seen = 0, signalled = 0;
    int64_t seen_since = 0;
    while (!atomic_load(&budget.stop)) {
        uint32_t tick = budget_tick_ms();
        struct timespec ts = {tick / 1000, (long)(tick % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        int64_t now_us = budget_now_us();
        atomic_store_explicit(&budget.clock_us, now_us, memory_order_relaxed);
        uint64_t call = atomic_load_explicit(&budget.call, memory_order_acquire);
        if (!(call & 1))
            continue;
        int64_t now = now_us / 1000;
        if (call != seen) {
            seen = call;
            seen_since = now;
        } else if (call != signalled &&
                   now - seen_since >= (int64_t)atomic_load(&budget.budget_ms)) {
            /* The low 32 bits name the call: the handler compares them. */
            union sigval v = {.sival_int = (int)(uint32_t)call};
            if (pthread_sigqueue(budget.loop, BUDGET_SIGNAL, v) == 0)
                signalled = call;
        }
    }
    return NULL;
}

int budget_start(uint32_t budget_ms)
{
    atomic_store(&budget.budget_ms, budget_ms);
    atomic_store(&budget.stop, 0);
    atomic_store(&budget.clock_us, budget_now_us());
    budget.loop = pthread_self();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = budget_on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&sa.sa_mask);
    if (sigaction(BUDGET_SIGNAL, &sa, NULL) != 0)
        return -1;
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, BUDGET_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    /* The watchdog takes no signal: they are the event loop's. */
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

int64_t budget_clock_us(void)
{
    return atomic_load_explicit(&budget.clock_us, memory_order_relaxed);
}

uint32_t budget_ms(void)
{
    return atomic_load(&budget.budget_ms);
}

void budget_enter(lua_State *L)
{
    budget.L = L;
    atomic_store_explicit(&budget.call, ++budget.seq << 1 | 1, memory_order_release);
}

int budget_leave(void)
{
    atomic_store_explicit(&budget.call, 0, memory_order_relaxed);
    /* From here the handler leaves the state alone; before, it may have
     * hooked it: then the hook comes off here. */
    atomic_signal_fence(memory_order_seq_cst);
    if (!budget.hooked)
        return 0;
    lua_sethook(budget.L, NULL, 0, 0);
    budget.hooked = 0;
    return 1;
}
