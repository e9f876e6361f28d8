/* mgl_timer.c — gw.after(ms, fn) and gw.every(ms, fn).
 *
 * Timers run on the libwebsockets loop (lws_sul) and belong to the script
 * generation that created them: a reload cancels them all with the old
 * state, and a state being closed (whose finalizers may still call
 * gw.after) gets no new ones.  A handle (userdata holding the timer id)
 * offers :cancel(); a handle whose timer has fired or been cancelled is
 * harmless. */
#include <lauxlib.h>
#include <stdlib.h>

#include "mgl_api.h"

#define TIMER_MT "moongate.timer"

typedef struct {
    const void *tag; /* &ltimer_tag: this userdata is a timer handle */
    uint64_t id;
} ltimer;

static const char ltimer_tag;

typedef struct mg_timer {
    lws_sorted_usec_list_t sul; /* first: lws hands this back */
    mg_script *s;
    uint64_t id;
    int fn_ref;
    lws_usec_t interval_us; /* 0 for a one-shot */
    int running;            /* inside its callback */
    int cancelled;
} mg_timer;

static void timer_free(mg_script *s, mg_timer *t)
{
    dict_del(&s->timers, &t->id, sizeof(t->id));
    lws_sul_cancel(&t->sul);
    luaL_unref(s->L, LUA_REGISTRYINDEX, t->fn_ref);
    free(t);
}

static void timer_fire(lws_sorted_usec_list_t *sul)
{
    mg_timer *t = lws_container_of(sul, mg_timer, sul);
    mg_script *s = t->s;
    if (t->interval_us)
        lws_sul_schedule(s->gw->lws, 0, &t->sul, timer_fire, t->interval_us);
    t->running = 1;
    script_call_ref(s, "timer", t->fn_ref);
    t->running = 0;
    if (!t->interval_us || t->cancelled)
        timer_free(s, t);
}

static int timer_start(lua_State *L, int repeat)
{
    mg_script *s = mgl_api_script(L);
    if (s->gw->stopping || s->closing)
        return mgl_api_fail(L, s->closing ? "script generation closing" : "shutting down");
    lua_Number ms = luaL_checknumber(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (ms < 0 || (repeat && ms < 1))
        return luaL_argerror(L, 1, repeat ? "interval must be >= 1 ms" : "delay must be >= 0");
    mg_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return luaL_error(L, "out of memory");
    t->s = s;
    t->id = s->next_timer_id++;
    lua_pushvalue(L, 2);
    t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    t->interval_us = repeat ? (lws_usec_t)(ms * 1000) : 0;
    int err;
    dict_set(&s->timers, &t->id, sizeof(t->id), t, &err);
    if (err) {
        luaL_unref(L, LUA_REGISTRYINDEX, t->fn_ref);
        free(t);
        return luaL_error(L, "out of memory");
    }
    lws_sul_schedule(s->gw->lws, 0, &t->sul, timer_fire, (lws_usec_t)(ms * 1000));

    ltimer *h = lua_newuserdata(L, sizeof(*h));
    h->tag = &ltimer_tag;
    h->id = t->id;
    luaL_getmetatable(L, TIMER_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int timer_after(lua_State *L)
{
    return timer_start(L, 0);
}

static int timer_every(lua_State *L)
{
    return timer_start(L, 1);
}

static int timer_cancel(lua_State *L)
{
    mg_script *s = mgl_api_script(L);
    ltimer *h = mgl_api_checkhandle(L, 1, &ltimer_tag, sizeof(ltimer), TIMER_MT);
    mg_timer *t = dict_get(&s->timers, &h->id, sizeof(h->id));
    if (!t) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (t->running)
        t->cancelled = 1; /* freed when its callback returns */
    else
        timer_free(s, t);
    lua_pushboolean(L, 1);
    return 1;
}

void mgl_timer_open(mg_script *s)
{
    static const luaL_Reg gwfns[] = {{"after", timer_after}, {"every", timer_every}, {NULL, NULL}};
    static const luaL_Reg methods[] = {{"cancel", timer_cancel}, {NULL, NULL}};
    lua_State *L = s->L;
    mgl_api_setfuncs(s, gwfns); /* into the gw table on top */
    luaL_newmetatable(L, TIMER_MT);
    lua_newtable(L);
    mgl_api_setfuncs(s, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

void mgl_timer_cancel_all(mg_script *s)
{
    dict_entry *e;
    /* Freeing a timer does not touch the dict, so it can be walked. */
    for (size_t i = 0; (e = dict_next(&s->timers, &i));) {
        mg_timer *t = e->val;
        lws_sul_cancel(&t->sul);
        free(t); /* its function goes away with the state's registry */
    }
    dict_free(&s->timers);
    dict_init(&s->timers);
}
