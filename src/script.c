/* script.c — Lua states, hook calls and reload (see script.h). */
#include "script.h"

#include <assert.h>
#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "conn.h"
#include "lalloc.h"
#include "log.h"
#include "lua_api.h"

/* Garbage collector pacing.  A hook makes garbage at every message (the
 * message string) while the live heap is small (~50 KB for a plain echo),
 * so at Lua's default pause (a cycle whenever the heap doubles) the
 * collector marks the whole live heap every ~800 messages.  While the heap
 * is small, a cycle starts only when it has grown fourfold: echo with 16 in
 * flight ran 2% faster (pause 600 was slower again: more of the heap falls
 * out of the cache).  And each incremental step does five times the
 * default work (step multiplier 1000): a cycle ends after less new garbage,
 * in fewer, longer steps over memory still in the cache (+3% on the same
 * echo; 3000 measured the same as 1000; a step stays ~10 KB of work).  Past
 * SCRIPT_GC_SMALL, or 1/16 of lua.memory_limit, Lua's defaults keep the
 * heap within twice what is live.  Checked every SCRIPT_GC_EVERY hook calls. */
#define SCRIPT_GC_PAUSE_SMALL 400
#define SCRIPT_GC_PAUSE_DEFAULT 200
#define SCRIPT_GC_STEPMUL_SMALL 1000
#define SCRIPT_GC_STEPMUL_DEFAULT 200
#define SCRIPT_GC_SMALL (16u << 20)
#define SCRIPT_GC_EVERY 1024

/* ---- building a state ---- */

static const char *const script_hook_names[SCRIPT_HOOKS] = {
    "on_handshake", "on_connect", "on_message", "on_disconnect",
    "on_reload",    "on_task",    "on_broker",
};

/* The base of the state's stack holds, for good, what every call uses:
 * the error handler, then the hook names and the two message kinds,
 * interned once so a call does not hash them again.  Every call starts
 * from the event loop, never from inside another call (where these indexes
 * would be the running C function's own), so they are always there. */
#define SCRIPT_TRACEBACK 1
#define SCRIPT_HOOK_NAME(id) (2 + (id))
#define SCRIPT_KIND(binary) (2 + SCRIPT_HOOKS + (binary))

static int script_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg)
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static void script_push_base(mg_script *s)
{
    lua_pushcfunction(s->L, script_traceback);
    for (int i = 0; i < SCRIPT_HOOKS; i++)
        lua_pushstring(s->L, script_hook_names[i]);
    const char *kinds[2] = {"text", "binary"};
    for (int i = 0; i < 2; i++) {
        lua_pushstring(s->L, kinds[i]);
        s->kind_str[i] = lua_tostring(s->L, -1);
    }
    assert(lua_gettop(s->L) == SCRIPT_KIND(1));
}

static int script_jit_refused(lua_State *L)
{
    return luaL_error(L, "the JIT stays off in moongate scripts (hook budgets depend on it)");
}

/* Standard libraries, the JIT switched off for good, and package paths. */
static void script_open_libs(lua_State *L, const mg_config *cfg)
{
    luaL_openlibs(L);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_getglobal(L, "jit");
    if (lua_istable(L, -1)) {
        lua_pushcfunction(L, script_jit_refused);
        lua_setfield(L, -2, "on");
    }
    lua_pop(L, 1);

    lua_getglobal(L, "package");
    const char *fields[2] = {"path", "cpath"};
    const char *extra[2] = {cfg->lua_path, cfg->lua_cpath};
    for (int i = 0; i < 2; i++) {
        if (!extra[i])
            continue;
        lua_getfield(L, -1, fields[i]);
        lua_pushfstring(L, "%s;%s", extra[i], lua_tostring(L, -1));
        lua_setfield(L, -3, fields[i]);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static void script_gc_pace(mg_script *s)
{
    size_t small = SCRIPT_GC_SMALL;
    if (s->alloc.limit && s->alloc.limit / 16 < small)
        small = s->alloc.limit / 16;
    int is_small = s->alloc.mem < small;
    lua_gc(s->L, LUA_GCSETPAUSE, is_small ? SCRIPT_GC_PAUSE_SMALL : SCRIPT_GC_PAUSE_DEFAULT);
    lua_gc(s->L, LUA_GCSETSTEPMUL, is_small ? SCRIPT_GC_STEPMUL_SMALL : SCRIPT_GC_STEPMUL_DEFAULT);
}

/* Run the function below nargs arguments under the budget.  On error the
 * traceback string is left on the stack and the result is non-zero; the
 * return value 2 means "aborted by the budget". */
static int script_pcall(mg_script *s, int nargs, int nresults)
{
    lua_State *L = s->L;
    mg_metrics *m = &s->gw->metrics;
    assert(s->alloc.capped == 0); /* not inside another call */
    /* Hook time, from the watchdog's tick clock (see budget.h): unbiased,
     * and two loads instead of clock reads that cost 5-9% of an echo. */
    m->hook_calls++;
    budget_enter(L); /* first: it sets the clock if the watchdog was parked */
    int64_t t0 = budget_clock_us();
    s->alloc.capped++;
    int rc = lua_pcall(L, nargs, nresults, SCRIPT_TRACEBACK);
    s->alloc.capped--;
    int aborted = budget_leave();
    if (rc == LUA_ERRMEM) /* free what the failed call left, before the next one */
        script_collect(s);
    m->hook_ns += (uint64_t)(budget_clock_us() - t0) * 1000;
    if (m->hook_calls % SCRIPT_GC_EVERY == 0)
        script_gc_pace(s);
    if (rc == 0)
        return 0;
    return aborted ? 2 : 1;
}

/* Log and count a failed call whose traceback is on the stack; pops it. */
static void script_report(mg_script *s, int rc, const char *what, uint64_t conn_id)
{
    lua_State *L = s->L;
    const char *msg = lua_tostring(L, -1);
    if (rc == 2) {
        s->gw->metrics.lua_aborts++;
        log_conn(MG_LOG_ERROR, conn_id, "%s aborted: hook exceeded its budget of %u ms\n%s", what,
                 budget_ms(), msg ? msg : "");
    } else {
        s->gw->metrics.lua_errors++;
        log_conn(MG_LOG_ERROR, conn_id, "lua error in %s: %s", what, msg ? msg : "?");
    }
    lua_pop(L, 1);
}

int script_call(mg_script *s, const char *what, uint64_t conn_id, int nargs)
{
    s->cur_conn = conn_id;
    int rc = script_pcall(s, nargs, 0);
    s->cur_conn = 0;
    if (rc) {
        script_report(s, rc, what, conn_id);
        return -1;
    }
    return 0;
}

mg_script *script_load(mg_gw *gw, const mg_config *cfg, uint64_t gen, char *err, size_t errlen)
{
    mg_script *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->gw = gw;
    s->gen = gen;
    lalloc_init(&s->alloc, cfg->lua_memory_limit);
    s->next_timer_id = 1;
    dict_init(&s->timers);
    s->L = lua_newstate(lalloc_fn, &s->alloc);
    if (!s->L) {
        snprintf(err, errlen, "cannot create a Lua state");
        free(s);
        return NULL;
    }
    lua_State *L = s->L;
    script_gc_pace(s);
    script_push_base(s);
    script_open_libs(L, cfg);
    lua_conn_open(s);
    lua_gw_open(s, cfg);
    lua_setglobal(L, "gw");

    if (luaL_loadfile(L, cfg->script) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        script_free(s);
        return NULL;
    }
    int rc = script_pcall(s, 0, 0);
    if (rc) {
        snprintf(err, errlen, "%s%s", rc == 2 ? "loading aborted: " : "", lua_tostring(L, -1));
        script_free(s);
        return NULL;
    }
    return s;
}

void script_free(mg_script *s)
{
    if (!s)
        return;
    lua_timer_cancel_all(s);
    dict_free(&s->timers);
    if (s->L)
        lua_close(s->L);
    lalloc_free(&s->alloc);
    free(s);
}

int script_check(const char *path, char *err, size_t errlen)
{
    lua_State *L = luaL_newstate();
    if (!L) {
        snprintf(err, errlen, "cannot create a Lua state");
        return -1;
    }
    int rc = luaL_loadfile(L, path);
    if (rc)
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_close(L);
    return rc ? -1 : 0;
}

/* Push the hook if the script defines it as a global function; else push
 * nothing and return 0.  A raw lookup: a script that guards _G with an
 * __index metamethod ("strict" mode) must not raise here, outside a
 * protected call. */
static int script_hook(mg_script *s, script_hook_id id)
{
    lua_pushvalue(s->L, SCRIPT_HOOK_NAME(id));
    lua_rawget(s->L, LUA_GLOBALSINDEX);
    if (lua_isfunction(s->L, -1))
        return 1;
    lua_pop(s->L, 1);
    return 0;
}

int script_reload(mg_gw *gw, const mg_config *cfg, char *err, size_t errlen)
{
    mg_script *ns = script_load(gw, cfg, gw->generation + 1, err, errlen);
    if (!ns)
        return -1;
    if (script_hook(ns, HOOK_ON_RELOAD)) {
        int rc = script_pcall(ns, 0, 0);
        if (rc) {
            snprintf(err, errlen, "on_reload %s: %s", rc == 2 ? "aborted" : "failed",
                     lua_tostring(ns->L, -1));
            script_free(ns);
            return -1;
        }
    }
    mg_script *old = gw->script;
    gw->script = ns;
    gw->generation = ns->gen;
    script_free(old);
    return 0;
}

/* ---- hooks ---- */

/* req:header(name) — case-insensitive lookup in req.headers. */
static int script_req_header(lua_State *L)
{
    char lower[256];
    size_t len;
    const char *name = luaL_checklstring(L, 2, &len);
    if (len >= sizeof(lower))
        return 0;
    for (size_t i = 0; i <= len; i++)
        lower[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    lua_getfield(L, 1, "headers");
    lua_getfield(L, -1, lower);
    const mg_request *req = ((mg_script *)lua_touserdata(L, lua_upvalueindex(1)))->live_req;
    if (lua_isnil(L, -1) && req && req->lookup) {
        char buf[4096];
        const char *v = req->lookup(req->lookup_ctx, lower, buf, sizeof(buf));
        if (v)
            lua_pushstring(L, v);
    }
    return 1;
}

static void script_push_request(mg_script *s, const mg_request *req)
{
    lua_State *L = s->L;
    lua_createtable(L, 0, 5);
    lua_pushstring(L, req->path);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, req->query);
    lua_setfield(L, -2, "query");
    lua_pushstring(L, req->remote);
    lua_setfield(L, -2, "remote");
    lua_newtable(L);
    const char *p = req->headers, *end = req->headers + req->headers_len;
    while (p < end) {
        const char *val = p + strlen(p) + 1;
        lua_pushstring(L, val);
        lua_setfield(L, -2, p);
        p = val + strlen(val) + 1;
    }
    lua_setfield(L, -2, "headers");
    lua_pushlightuserdata(L, s);
    lua_pushcclosure(L, script_req_header, 1);
    lua_setfield(L, -2, "header");
}

int script_on_handshake(mg_gw *gw, const mg_request *req, int *status, char *body, size_t bodylen)
{
    mg_script *s = gw->script;
    lua_State *L = s->L;
    if (!script_hook(s, HOOK_ON_HANDSHAKE))
        return 1;
    script_push_request(s, req);
    s->live_req = req;
    int rc = script_pcall(s, 1, 3);
    s->live_req = NULL;
    if (rc) {
        /* An authorization hook that fails must not let the client in. */
        script_report(s, rc, "on_handshake", 0);
        *status = 500;
        snprintf(body, bodylen, "internal error\n");
        return 0;
    }
    int accept = !(lua_isboolean(L, -3) && !lua_toboolean(L, -3));
    if (!accept) {
        int st = (int)lua_tointeger(L, -2);
        *status = (st >= 400 && st <= 599) ? st : 403;
        const char *b = lua_tostring(L, -1);
        snprintf(body, bodylen, "%s", b ? b : "forbidden\n");
    }
    lua_pop(L, 3);
    return accept;
}

void script_on_connect(mg_gw *gw, mg_conn *c)
{
    mg_script *s = gw->script;
    if (!script_hook(s, HOOK_ON_CONNECT))
        return;
    lua_conn_push(s->L, s, c);
    script_call(s, "on_connect", c->id, 1);
}

void script_on_message(mg_gw *gw, mg_conn *c, const void *data, size_t len, int binary)
{
    mg_script *s = gw->script;
    if (!script_hook(s, HOOK_ON_MESSAGE))
        return;
    lua_conn_push(s->L, s, c);
    lua_pushlstring(s->L, data, len);
    lua_pushvalue(s->L, SCRIPT_KIND(binary != 0));
    script_call(s, "on_message", c->id, 3);
}

void script_on_disconnect(mg_gw *gw, mg_conn *c, int code, const char *reason)
{
    mg_script *s = gw->script;
    c->closed_hook = 1;
    if (!s || !script_hook(s, HOOK_ON_DISCONNECT))
        return;
    lua_conn_push(s->L, s, c);
    lua_pushinteger(s->L, code);
    lua_pushstring(s->L, reason);
    script_call(s, "on_disconnect", c->id, 3);
}

int script_on_task(mg_gw *gw, struct mg_delivery *d)
{
    mg_script *s = gw->script;
    if (!s || !script_hook(s, HOOK_ON_TASK))
        return -1;
    lua_msg_push(s->L, d);
    return script_call(s, "on_task", 0, 1) == 0 ? 0 : 1;
}

void script_on_broker(mg_gw *gw, const char *state, const char *detail)
{
    mg_script *s = gw->script;
    if (!s || !script_hook(s, HOOK_ON_BROKER))
        return;
    lua_pushstring(s->L, state);
    lua_pushstring(s->L, detail);
    script_call(s, "on_broker", 0, 2);
}

static int script_collect_cf(lua_State *L)
{
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}

void script_collect(mg_script *s)
{
    s->alloc.capped++;
    if (lua_cpcall(s->L, script_collect_cf, NULL) != 0) {
        log_error("lua error in a finalizer: %s", lua_tostring(s->L, -1));
        lua_pop(s->L, 1);
    }
    s->alloc.capped--;
}

void script_forget_conn(mg_gw *gw, mg_conn *c)
{
    if (gw->script)
        lua_conn_forget(gw->script, c);
    c->lua_ref = -1;
}
