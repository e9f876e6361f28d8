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
 * of two loads: even a vDSO clock read is a visible share of a short hook
 * call, and there would be two at every message.
 *
 * Everything the hook call path touches belongs to the loop thread: the
 * watchdog only reads `call`, and the decision to install the hook is
 * taken on the loop thread, in the handler, where it cannot race with the
 * call ending.  lua_sethook is the one Lua API call made for signal
 * handlers (lua.c's SIGINT does the same).  So entering and leaving a call
 * are plain stores: no atomic read-modify-write, no lock.  A signal is
 * sent only when a call overruns, so poll() is not interrupted otherwise
 * (a periodic SIGALRM made the kernel set the whole poll set up again at
 * every tick, a cost that grows with the number of sockets).
 *
 * Idle: ticking costs a wake-up per tick (100 a second with the default
 * budget), far more than an idle event loop wakes.  So after a second in
 * which no call started, the watchdog parks on a futex, and the next call
 * wakes it: budget_enter reads `parked` after publishing the call, with no
 * fence, so the two sides form a Dekker pair whose one fence is the
 * watchdog's: membarrier(2) before it rereads `call`, which makes the loop
 * thread's store visible and its next load see `parked` (the asymmetric
 * fence of userspace RCU).  Either the watchdog sees the new call and does
 * not park, or the loop thread sees it parked and wakes it.  The loop thread
 * also refreshes `clock_us` then, so the call's time does not include the
 * idle stretch.  Without membarrier's private expedited command (kernels
 * before 4.14, some seccomp filters) the watchdog never parks. */
#include "budget.h"

#include <lauxlib.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The signal the watchdog sends the loop thread. */
#define BUDGET_SIGNAL (SIGRTMIN + 1)
/* Park after this long without a call starting (budget_set_idle). */
#define BUDGET_IDLE_MS 1000

static struct {
    _Atomic uint64_t call;        /* number << 1 | 1 while a call runs, number << 1 after */
    uint64_t seq;                 /* loop thread: number of the last call */
    lua_State *L;                 /* loop thread: state of the running call */
    volatile sig_atomic_t hooked; /* loop thread: the handler installed the hook */
    atomic_uint budget_ms;
    _Atomic int64_t clock_us; /* the watchdog's last tick, monotonic us */
    atomic_int stop;          /* the thread should exit */
    atomic_int parked;        /* 1: the watchdog sleeps until budget_wake (a futex word) */
    atomic_uint idle_ms;      /* park after this long without a call; 0: BUDGET_IDLE_MS */
    _Atomic uint64_t parks;   /* how many times it parked */
    int can_park;             /* membarrier's private expedited command is ours */
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
 * the one running now (it may have ended while the signal was on its way).
 * The hook is set again at each signal: the script may have replaced it
 * (debug.sethook), and LuaJIT drops the event mask of hooks while a __gc
 * finalizer runs. */
static void budget_on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    uint64_t call = atomic_load_explicit(&budget.call, memory_order_relaxed);
    if (!(call & 1) || (uint32_t)si->si_value.sival_int != (uint32_t)call)
        return;
    lua_sethook(budget.L, budget_abort_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    budget.hooked = 1;
}

static uint32_t budget_tick_ms(void)
{
    uint32_t tick = atomic_load(&budget.budget_ms) / 10;
    return tick < 1 ? 1 : tick > 10 ? 10 : tick;
}

/* Wake the parked watchdog (loop thread, or budget_stop). */
static void budget_wake(void)
{
    if (atomic_exchange(&budget.parked, 0) == 0)
        return; /* it woke already */
    atomic_store_explicit(&budget.clock_us, budget_now_us(), memory_order_relaxed);
    syscall(SYS_futex, (int *)&budget.parked, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Sleep until a call starts, unless one has since `idle` was read. */
static void budget_park(uint64_t idle)
{
    atomic_store(&budget.parked, 1);
    syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
    if (atomic_load(&budget.call) != idle || atomic_load(&budget.stop)) {
        atomic_store(&budget.parked, 0); /* if budget_wake got there first, it stored 0 too */
        return;
    }
    atomic_fetch_add(&budget.parks, 1);
    while (atomic_load(&budget.parked))
        syscall(SYS_futex, (int *)&budget.parked, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0);
}

static int64_t budget_idle_us(void)
{
    uint32_t ms = atomic_load(&budget.idle_ms);
    return (int64_t)(ms ? ms : BUDGET_IDLE_MS) * 1000;
}

/* A call that goes on this long past its budget cannot be aborted (LuaJIT
 * runs no hook inside a __gc finalizer or a C function): the loop is stuck,
 * and only ending the process gets it back. */
#define BUDGET_STUCK_MS 1000

/* The call has run past its budget by BUDGET_STUCK_MS and more: say so
 * once, and if SIGTERM or SIGINT is waiting for the stuck loop to read it,
 * end the process here, since nothing else ever will.  (Plain write(2)s:
 * the loop thread may hold any lock.) */
static void budget_stuck(int *said)
{
    static const char stuck[] = "moongate: ERROR a Lua hook cannot be aborted (a __gc finalizer "
                                "or a C function that does not return): the event loop is stuck; "
                                "SIGTERM or SIGINT ends the process at once\n";
    static const char bye[] = "moongate: ERROR SIGTERM/SIGINT while the event loop is stuck in a "
                              "Lua hook: exiting without draining\n";
    if (!*said) {
        *said = 1;
        (void)!write(2, stuck, sizeof(stuck) - 1);
    }
    sigset_t pending;
    if (sigpending(&pending) == 0 &&
        (sigismember(&pending, SIGTERM) || sigismember(&pending, SIGINT))) {
        (void)!write(2, bye, sizeof(bye) - 1);
        _exit(1);
    }
}

static void *budget_main(void *arg)
{
    (void)arg;
    uint64_t seen = 0, last = 0;
    int64_t seen_since = 0, last_since = 0, signalled_at = 0; /* monotonic us */
    int said_stuck = 0;
    while (!atomic_load(&budget.stop)) {
        uint32_t tick = budget_tick_ms();
        struct timespec ts = {tick / 1000, (long)(tick % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        /* The call first, then the time: a call seen is then sure to have
         * started before `now`.  (Read the other way round, a watchdog
         * preempted between the two reads dated the call too early, and
         * aborted it that much before its budget.) */
        uint64_t call = atomic_load_explicit(&budget.call, memory_order_acquire);
        int64_t now = budget_now_us();
        atomic_store_explicit(&budget.clock_us, now, memory_order_relaxed);
        if (call != last) {
            last = call;
            last_since = now;
        } else if (!(call & 1) && budget.can_park && now - last_since >= budget_idle_us()) {
            budget_park(call);
            last_since = budget_now_us();
        }
        if (!(call & 1))
            continue;
        int64_t budget_us = (int64_t)atomic_load(&budget.budget_ms) * 1000;
        if (call != seen) {
            seen = call;
            seen_since = now;
            signalled_at = 0;
            said_stuck = 0;
        } else if (now - seen_since >= budget_us && now - signalled_at >= budget_us) {
            /* Past the budget: signal, and again every budget while the
             * call goes on.  The low 32 bits name the call: the handler
             * compares them. */
            union sigval v = {.sival_int = (int)(uint32_t)call};
            if (pthread_sigqueue(budget.loop, BUDGET_SIGNAL, v) == 0)
                signalled_at = now;
        }
        if (call == seen && now - seen_since >= budget_us + BUDGET_STUCK_MS * 1000)
            budget_stuck(&said_stuck);
    }
    return NULL;
}

int budget_start(uint32_t budget_ms)
{
    atomic_store(&budget.budget_ms, budget_ms);
    atomic_store(&budget.stop, 0);
    atomic_store(&budget.clock_us, budget_now_us());
    budget.loop = pthread_self();
    long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    budget.can_park = cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
                      syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
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
    pthread_setname_np(budget.thread, "mg-watchdog");
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
        budget_wake();
        pthread_join(budget.thread, NULL);
        budget.running = 0;
    }
}

int64_t budget_clock_us(void)
{
    return atomic_load_explicit(&budget.clock_us, memory_order_relaxed);
}

void budget_set_idle(uint32_t idle_ms)
{
    atomic_store(&budget.idle_ms, idle_ms);
}

uint64_t budget_parks(void)
{
    return atomic_load(&budget.parks);
}

int budget_aborting(void)
{
    return budget.hooked;
}

uint32_t budget_ms(void)
{
    return atomic_load(&budget.budget_ms);
}

void budget_enter(lua_State *L)
{
    budget.L = L;
    atomic_store_explicit(&budget.call, ++budget.seq << 1 | 1, memory_order_release);
    /* The store above, then this load, in program order: the compiler may
     * not swap them, the CPU may, until the watchdog's membarrier. */
    atomic_signal_fence(memory_order_seq_cst);
    if (__builtin_expect(atomic_load_explicit(&budget.parked, memory_order_relaxed), 0))
        budget_wake();
}

int budget_leave(void)
{
    atomic_store_explicit(&budget.call, budget.seq << 1, memory_order_relaxed);
    /* From here the handler leaves the state alone; before, it may have
     * hooked it: then the hook comes off here. */
    atomic_signal_fence(memory_order_seq_cst);
    if (!budget.hooked)
        return 0;
    lua_sethook(budget.L, NULL, 0, 0);
    budget.hooked = 0;
    return 1;
}
