/* budget.c — the time budget of a Lua hook call (see budget.h).
 *
 * The watchdog ticks every budget/10 (1..50 ms).  The first tick that sees
 * a call notes the time; a tick that sees the same call budget ms later
 * installs the abort hook.  So a call is aborted between budget and
 * budget + 2 ticks after it started, and never before the budget.
 * State shared with the signal handler lives in one static struct: a signal
 * handler has no other way to reach it. */
#include "budget.h"

#include <lauxlib.h>
#include <signal.h>
#include <string.h>
#include <time.h>

static struct {
    volatile sig_atomic_t in_call; /* a hook call is running */
    volatile sig_atomic_t fired;   /* the abort hook is installed */
    volatile uint64_t seq;         /* bumped per call */
    lua_State *volatile L;         /* state of the running call */
    volatile uint32_t budget_ms;
    uint64_t seen_seq;     /* handler-private: call seen by the last tick */
    int64_t seen_since_ms; /* handler-private: when it was first seen */
    timer_t timer;
    int running;
} budget;

static int64_t budget_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void budget_abort_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    luaL_error(L, "hook exceeded its budget of %d ms", (int)budget.budget_ms);
}

static void budget_on_signal(int sig)
{
    (void)sig;
    if (!budget.in_call || budget.fired)
        return;
    int64_t now = budget_now_ms();
    if (budget.seq != budget.seen_seq) {
        budget.seen_seq = budget.seq;
        budget.seen_since_ms = now;
        return;
    }
    if (now - budget.seen_since_ms >= (int64_t)budget.budget_ms) {
        budget.fired = 1;
        lua_sethook(budget.L, budget_abort_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    }
}

static void budget_arm(void)
{
    uint32_t tick = budget.budget_ms / 10;
    if (tick < 1)
        tick = 1;
    if (tick > 50)
        tick = 50;
    struct itimerspec its;
    its.it_interval.tv_sec = tick / 1000;
    its.it_interval.tv_nsec = (long)(tick % 1000) * 1000000L;
    its.it_value = its.it_interval;
    timer_settime(budget.timer, 0, &its, NULL);
}

int budget_start(uint32_t budget_ms)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = budget_on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL) != 0)
        return -1;

    struct sigevent sev;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGALRM;
    if (timer_create(CLOCK_MONOTONIC, &sev, &budget.timer) != 0)
        return -1;
    budget.running = 1;
    budget.budget_ms = budget_ms;
    budget_arm();
    return 0;
}

void budget_set(uint32_t budget_ms)
{
    budget.budget_ms = budget_ms;
    if (budget.running)
        budget_arm();
}

void budget_stop(void)
{
    if (budget.running) {
        timer_delete(budget.timer);
        budget.running = 0;
    }
}

uint32_t budget_ms(void)
{
    return budget.budget_ms;
}

void budget_enter(lua_State *L)
{
    budget.L = L;
    budget.seq++;
    budget.in_call = 1;
}

int budget_leave(void)
{
    budget.in_call = 0;
    if (!budget.fired)
        return 0;
    lua_sethook(budget.L, NULL, 0, 0);
    budget.fired = 0;
    return 1;
}
