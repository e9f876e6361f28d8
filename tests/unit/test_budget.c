/* test_budget.c — budget.c: a runaway call is aborted between the budget
 * and a few ticks after it, a quick call never is, and that holds when the
 * call starts while the watchdog is going to sleep or asleep (idle shortened
 * to 5 ms, calls started after random pauses of 0-12 ms, many of them
 * around the moment it parks); the hook-time clock is set by the call that
 * wakes it; budget_stop returns with the watchdog asleep.
 *
 * A lost wake-up would leave a runaway call running for good: an alarm
 * ends the test then. */

#include "budget.h"
#include "testlib.h"

#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define BUDGET_MS 10
#define IDLE_MS 5
#define ROUNDS 200
#define GUARD_S 60

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void pause_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Call the global fn under the budget: 1 if aborted; *took_us its length,
 * from before it was entered (so that no part of it goes unmeasured). */
static int call(lua_State *L, const char *fn, int64_t *took_us)
{
    lua_getglobal(L, fn);
    int64_t t0 = now_us();
    budget_enter(L);
    int rc = lua_pcall(L, 0, 0, 0);
    *took_us = now_us() - t0;
    int aborted = budget_leave();
    if (rc != 0)
        lua_pop(L, 1);
    CHECK((rc != 0) == aborted);
    return aborted;
}

/* Under ThreadSanitizer a signal reaches its handler only when the thread
 * enters a function TSan intercepts, which a pure Lua loop never does: the
 * runaway loop allocates there (each table goes through realloc), so the
 * watchdog's signal lands and the park/wake protocol is checked for races. */
#if defined(__SANITIZE_THREAD__)
#define SPIN "function spin() while true do local t = {} end end\n"
#else
#define SPIN "function spin() while true do end end\n"
#endif

static lua_State *state_new(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    if (luaL_dostring(L, SPIN "function quick() local x = 0 for i = 1, 10 do x = x + i end end") !=
        0)
        return NULL;
    return L;
}

static void test_calls_around_parking(void)
{
    lua_State *L = state_new();
    CHECK(L != NULL);
    if (!L)
        return;
    budget_set_idle(IDLE_MS);
    CHECK(budget_start(BUDGET_MS) == 0);
    srand(12345);
    int runaway = 0, aborted = 0, late = 0, early = 0, quick_aborted = 0;
    for (int i = 0; i < ROUNDS; i++) {
        pause_us(rand() % 12000);
        int64_t took;
        if (i % 2 == 0) {
            runaway++;
            if (call(L, "spin", &took)) {
                aborted++;
                early += took < BUDGET_MS * 1000;
                late += took > 200 * 1000; /* ticks are 1 ms: generous for a busy CI */
            }
        } else {
            quick_aborted += call(L, "quick", &took);
        }
    }
    printf("budget: %d runaway calls, %d aborted (%d early, %d late), %d quick aborted, "
           "watchdog slept %llu times\n",
           runaway, aborted, early, late, quick_aborted, (unsigned long long)budget_parks());
    CHECK(aborted == runaway);
    CHECK(early == 0);
    CHECK(late == 0);
    CHECK(quick_aborted == 0);
    CHECK(budget_parks() >= ROUNDS / 10); /* the pauses did put it to sleep */

    /* The call that wakes it sets the clock: no idle stretch in hook time. */
    int64_t parks = (int64_t)budget_parks();
    while ((int64_t)budget_parks() == parks)
        pause_us(1000);
    pause_us(50 * 1000);
    lua_getglobal(L, "quick");
    budget_enter(L);
    int64_t behind = now_us() - budget_clock_us();
    lua_pcall(L, 0, 0, 0);
    budget_leave();
    CHECK(behind >= 0 && behind < 5 * 1000);

    /* Stopping with the watchdog asleep. */
    parks = (int64_t)budget_parks();
    while ((int64_t)budget_parks() == parks)
        pause_us(1000);
    budget_stop();
    budget_set_idle(0);
    lua_close(L);
}

int main(void)
{
    alarm(GUARD_S);
    static const tl_case cases[] = {T(test_calls_around_parking)};
    return tl_run("budget", cases, (int)(sizeof cases / sizeof cases[0]));
}
