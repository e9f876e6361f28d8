/* script.c — Lua states, hook calls and reload (see script.h). */
#include "script.h"

#include <assert.h>
#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "conn.h"
#include "cstack.h"
#include "lalloc.h"
#include "log.h"
#include "mgl_api.h"

/* Garbage collector pacing.  A hook makes garbage at every message (the
 * message string) while the live heap of a typical script is small, so at
 * Lua's default pause (a cycle whenever the heap doubles) the collector
 * marks the whole live heap again each time the messages since the last
 * cycle add up to that little.  While the heap is small, a cycle starts
 * only when it has grown fourfold: fewer cycles over the same live data (a
 * longer pause spreads the garbage over more memory than the cache keeps).
 * And each incremental step does five times the default work (step
 * multiplier 1000): a cycle ends after less new garbage, in fewer, longer
 * steps over memory still in the cache, and a step stays short next to a
 * hook call.  Past SCRIPT_GC_SMALL, or 1/16 of lua.memory_limit, Lua's
 * defaults keep the heap within twice what is live.  Checked every
 * SCRIPT_GC_EVERY hook calls. */
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
#define SCRIPT_BASE SCRIPT_KIND(1)

/* A failed attempt to push a call's arguments is retried this many times
 * (see script_run), and the collector's cycle finished after each failure
 * with at most this many finalizer errors reported. */
#define SCRIPT_RESCUES 16
#define SCRIPT_FINALIZER_ERRORS 100000

static int script_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg)
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* 0, or -1 with Lua's error on the stack (out of memory: pushing
 * allocates, outside a protected call, so under a rescue point). */
static int script_push_base(mg_script *s)
{
    sigjmp_buf rescue; /* sigsetjmp(.., 0): no signal mask saved, and sanitizers see it */
    if (sigsetjmp(rescue, 0) != 0) {
        s->rescue = NULL;
        return -1;
    }
    s->rescue = &rescue;
    lua_pushcfunction(s->L, script_traceback);
    for (int i = 0; i < SCRIPT_HOOKS; i++)
        lua_pushstring(s->L, script_hook_names[i]);
    const char *kinds[2] = {"text", "binary"};
    for (int i = 0; i < 2; i++) {
        lua_pushstring(s->L, kinds[i]);
        s->kind_str[i] = lua_tostring(s->L, -1);
    }
    s->rescue = NULL;
    assert(lua_gettop(s->L) == SCRIPT_BASE);
    return 0;
}

/* The generation a state belongs to: its allocator's user data is the
 * lalloc inside the mg_script. */
static mg_script *script_of(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return (mg_script *)(void *)((char *)ud - offsetof(mg_script, alloc));
}

/* LuaJIT's panic function: an error was raised outside any protected
 * call.  Where C code had set a rescue point (script_run, script_load),
 * go back to it; anywhere else the state cannot be trusted, and the
 * process ends with the reason in the log rather than LuaJIT's silent
 * exit(1). */
static int script_panic(lua_State *L)
{
    mg_script *s = script_of(L);
    if (s->rescue)
        siglongjmp(*s->rescue, 1);
    const char *msg = lua_tostring(L, -1);
    log_error("lua error outside a protected call, cannot go on: %s", msg ? msg : "?");
    abort();
}

/* Libraries, the gw table and the conn handle type: in a protected call,
 * so that running out of memory is an error, not a panic. */
typedef struct script_build_ctx {
    mg_script *s;
    const mg_config *cfg;
} script_build_ctx;

static int script_build(lua_State *L)
{
    script_build_ctx *b = lua_touserdata(L, 1);
    mgl_stdlib_open(b->s, b->cfg);
    mgl_conn_open(b->s);
    mgl_gw_open(b->s, b->cfg);
    lua_setglobal(L, "gw");
    mgl_stdlib_seal(b->s);
    return 0;
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

/* ---- calls ---- */

/* A call starts: counted, and from here the watchdog times it (the
 * arguments are pushed after this, so a finalizer that loops while they
 * are is seen too).  Returns the start on the watchdog's clock. */
static int64_t script_enter(mg_script *s)
{
    assert(s->alloc.capped == 0); /* not inside another call */
    /* Hook time, from the watchdog's tick clock (see budget.h): unbiased,
     * and two loads instead of two clock reads, which would weigh on every
     * message of a short hook. */
    s->gw->metrics->hook_calls++;
    s->co_depth = 0;
    budget_enter(s->L); /* first: it sets the clock if the watchdog was parked */
    return budget_clock_us();
}

/* The call is over (rc as lua_pcall returned it): 0, or 1 for an error,
 * 2 for an abort by the budget, with the traceback on the stack. */
static int script_leave(mg_script *s, int64_t t0, int rc)
{
    mg_metrics *m = s->gw->metrics;
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

/* lua_pcall under the memory cap, with the traceback handler. */
static int script_pcall_raw(mg_script *s, int nargs, int nresults)
{
    s->alloc.capped++;
    int rc = lua_pcall(s->L, nargs, nresults, SCRIPT_TRACEBACK);
    s->alloc.capped--;
    return rc;
}

/* Run the function below nargs arguments under the budget (see
 * script_leave for the result). */
static int script_pcall(mg_script *s, int nargs, int nresults)
{
    int64_t t0 = script_enter(s);
    return script_leave(s, t0, script_pcall_raw(s, nargs, nresults));
}

/* Log and count a failed call whose traceback is on the stack; pops it.
 * A call that ended in Lua's "stack overflow" may have gone deep into the
 * C stack too (cstack.h): those pages go back. */
static void script_report(mg_script *s, int rc, const char *what, uint64_t conn_id)
{
    lua_State *L = s->L;
    const char *msg = lua_tostring(L, -1);
    if (rc == 2) {
        s->gw->metrics->lua_aborts++;
        log_conn(MG_LOG_ERROR, conn_id, "%s aborted: hook exceeded its budget of %u ms\n%s", what,
                 budget_ms(), msg ? msg : "");
    } else {
        s->gw->metrics->lua_errors++;
        log_conn(MG_LOG_ERROR, conn_id, "lua error in %s: %s", what, msg ? msg : "?");
    }
    if (msg && strstr(msg, "stack overflow"))
        cstack_trim();
    lua_pop(L, 1);
}

/* What a call runs and what it passes. */
typedef int (*script_args_fn)(mg_script *s, const void *ctx); /* pushes; returns how many */

typedef struct script_job {
    const char *what;    /* for the log: "on_message", "timer" */
    uint64_t conn_id;    /* for the log, 0 if none */
    script_hook_id hook; /* a hook, looked up as a global ... */
    int ref;             /* ... unless this is a registry reference (> 0; luaL_ref never gives 0) */
    script_args_fn args; /* pushes the arguments, or NULL for none */
    const void *ctx;     /* for args */
    int nresults;        /* left on the stack if the call succeeded */
} script_job;

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

/* The function the job calls, pushed (raw accesses only: nothing can
 * raise); 0 if there is none. */
static int script_target(mg_script *s, const script_job *j)
{
    if (j->ref <= 0)
        return script_hook(s, j->hook);
    lua_rawgeti(s->L, LUA_REGISTRYINDEX, j->ref);
    return 1;
}

static int script_cycle_cf(lua_State *L)
{
    while (!lua_gc(L, LUA_GCSTEP, 0))
        ;
    return 0;
}

/* Finish the collector's cycle in a protected call, so that the finalizers
 * it still owes run there, each error reported. */
static void script_finish_cycle(mg_script *s, uint64_t conn_id)
{
    for (int i = 0; i < SCRIPT_FINALIZER_ERRORS && lua_cpcall(s->L, script_cycle_cf, NULL); i++)
        script_report(s, 1, "a __gc finalizer", conn_id);
}

/* Run a job: -1 if the hook is not defined, 0 if it ran, 1 if it failed
 * (logged and counted).  Pushing the arguments allocates, and any
 * allocation may step the collector, which may run a __gc finalizer: if
 * that raises, there is no protected call to catch it yet.  So a rescue
 * point is set first (script_panic comes back to it): the finalizer's
 * error is reported like a hook's, the collector's cycle is finished in a
 * protected call (the other finalizers it owes run there), and the pushes
 * start over.  The call still happens, and the event is not lost, unless
 * SCRIPT_RESCUES tries all fail. */
static int script_run(mg_script *s, const script_job *j)
{
    lua_State *L = s->L;
    sigjmp_buf rescue; /* sigsetjmp(.., 0): no signal mask saved, and sanitizers see it */
    volatile int tries = 0;
    if (!script_target(s, j))
        return -1;
    int64_t t0 = script_enter(s);
    s->cur_conn = j->conn_id;
    if (sigsetjmp(rescue, 0) != 0) {
        s->rescue = NULL;
        script_report(s, 1, "a __gc finalizer", j->conn_id);
        lua_settop(L, SCRIPT_BASE);
        script_finish_cycle(s, j->conn_id);
        if (++tries == SCRIPT_RESCUES || !script_target(s, j)) {
            s->cur_conn = 0;
            script_leave(s, t0, 0);
            return 1;
        }
    }
    s->rescue = &rescue;
    int nargs = j->args ? j->args(s, j->ctx) : 0;
    s->rescue = NULL;
    int rc = script_leave(s, t0, script_pcall_raw(s, nargs, j->nresults));
    s->cur_conn = 0;
    if (rc) {
        script_report(s, rc, j->what, j->conn_id);
        return 1;
    }
    return 0;
}

int script_call_ref(mg_script *s, const char *what, int ref)
{
    script_job j = {.what = what, .ref = ref};
    return script_run(s, &j) == 0 ? 0 : -1;
}

/* ---- loading ---- */

/* The script file's main chunk, run under the budget: 0, or -1 with err. */
static int script_run_main(mg_script *s, const char *path, char *err, size_t errlen)
{
    lua_State *L = s->L;
    if (mgl_stdlib_loadfile(L, path, s->sandbox ? "t" : "bt") != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        return -1;
    }
    int rc = script_pcall(s, 0, 0);
    if (rc) {
        snprintf(err, errlen, "%s%s", rc == 2 ? "loading aborted: " : "", lua_tostring(L, -1));
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
    s->sandbox = cfg->lua_sandbox;
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
    lua_atpanic(L, script_panic);
    script_gc_pace(s);
    script_build_ctx b = {s, cfg};
    if (script_push_base(s) != 0 || lua_cpcall(L, script_build, &b) != 0) {
        snprintf(err, errlen, "cannot build a Lua state: %s", lua_tostring(L, -1));
        script_free(s);
        return NULL;
    }
    if (script_run_main(s, cfg->script, err, errlen) != 0) {
        script_free(s);
        return NULL;
    }
    return s;
}

void script_free(mg_script *s)
{
    if (!s)
        return;
    /* Finalizers run in lua_close and may call gw.after or gw.every: with
     * closing set they get an error, not a timer that would outlive the
     * state. */
    s->closing = 1;
    mgl_timer_cancel_all(s);
    if (s->L)
        lua_close(s->L);
    assert(s->timers.count == 0);
    dict_free(&s->timers);
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
    int rc = mgl_stdlib_loadfile(L, path, "bt");
    if (rc)
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_close(L);
    return rc ? -1 : 0;
}

int script_prepare(mg_gw *gw, const mg_config *cfg, mg_script **out, char *err, size_t errlen)
{
    *out = script_load(gw, cfg, gw->generation + 1, err, errlen);
    return *out ? 0 : -1;
}

int script_run_reload(mg_script *ns, char *err, size_t errlen)
{
    script_job j = {.what = "on_reload", .hook = HOOK_ON_RELOAD};
    lua_State *L = ns->L;
    if (!script_target(ns, &j))
        return 0;
    int rc = script_pcall(ns, 0, 0);
    if (rc) {
        snprintf(err, errlen, "on_reload %s: %s", rc == 2 ? "aborted" : "failed",
                 lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

void script_switch(mg_gw *gw, mg_script *ns)
{
    mg_script *old = gw->script;
    gw->script = ns;
    gw->generation = ns->gen;
    script_free(old);
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
        char buf[CONFIG_HEADER_SIZE_MAX]; /* any value lws can hold */
        const char *v = req->lookup(req->lookup_ctx, lower, buf, sizeof(buf));
        if (v)
            lua_pushstring(L, v);
    }
    return 1;
}

static void script_push_request(mg_script *s, const mg_request *req)
{
    lua_State *L = s->L;
    lua_createtable(L, 0, 7);
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
    lua_createtable(L, req->nprotocols, 0);
    const char *name = req->protocols;
    for (int i = 0; i < req->nprotocols; i++, name += strlen(name) + 1) {
        lua_pushstring(L, name);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "protocols");
    lua_pushlightuserdata(L, s);
    lua_pushcclosure(L, script_req_header, 1);
    lua_setfield(L, -2, "header");
}

static int script_args_request(mg_script *s, const void *ctx)
{
    script_push_request(s, ctx);
    return 1;
}

/* The table on_handshake returns with true: {protocol = "name"}.  0, or
 * -1 after logging why it is wrong. */
static int script_handshake_choice(lua_State *L, int idx, mg_handshake_answer *ans)
{
    if (!lua_istable(L, idx))
        return 0; /* `return true` alone, or a value scripts used to ignore */
    lua_getfield(L, idx, "protocol");
    int type = lua_type(L, -1);
    size_t len = 0;
    const char *p = type == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    int rc = 0;
    if (type == LUA_TNIL)
        ;
    else if (!p || !len || len >= sizeof(ans->protocol) || strlen(p) != len) {
        log_error("on_handshake: protocol must be the name of an offered subprotocol, got %s",
                  p ? "a string no client can offer" : lua_typename(L, type));
        rc = -1;
    } else
        memcpy(ans->protocol, p, len + 1);
    lua_pop(L, 1);
    return rc;
}

int script_on_handshake(mg_gw *gw, const mg_request *req, mg_handshake_answer *ans)
{
    mg_script *s = gw->script;
    lua_State *L = s->L;
    script_job j = {.what = "on_handshake",
                    .hook = HOOK_ON_HANDSHAKE,
                    .args = script_args_request,
                    .ctx = req,
                    .nresults = 3};
    ans->protocol[0] = '\0';
    s->live_req = req;
    int rc = script_run(s, &j);
    s->live_req = NULL;
    if (rc < 0)
        return 1;
    if (rc > 0)
        goto fail; /* an authorization hook that fails must not let the client in */
    int accept = !(lua_isboolean(L, -3) && !lua_toboolean(L, -3));
    if (accept && script_handshake_choice(L, -2, ans) != 0) {
        lua_pop(L, 3);
        goto fail;
    }
    if (!accept) {
        int st = (int)lua_tointeger(L, -2);
        ans->status = (st >= 400 && st <= 599) ? st : 403;
        const char *b = lua_tostring(L, -1);
        snprintf(ans->body, sizeof(ans->body), "%s", b ? b : "forbidden\n");
    }
    lua_pop(L, 3);
    return accept;
fail:
    ans->status = 500;
    snprintf(ans->body, sizeof(ans->body), "internal error\n");
    return 0;
}

static int script_args_conn(mg_script *s, const void *ctx)
{
    mgl_conn_push(s->L, s, (mg_conn *)ctx);
    return 1;
}

void script_on_connect(mg_gw *gw, mg_conn *c)
{
    script_job j = {.what = "on_connect",
                    .conn_id = c->id,
                    .hook = HOOK_ON_CONNECT,
                    .args = script_args_conn,
                    .ctx = c};
    script_run(gw->script, &j);
}

typedef struct script_msg {
    mg_conn *c;
    const void *data;
    size_t len;
    int binary;
} script_msg;

static int script_args_message(mg_script *s, const void *ctx)
{
    const script_msg *m = ctx;
    mgl_conn_push(s->L, s, m->c);
    lua_pushlstring(s->L, m->data, m->len);
    lua_pushvalue(s->L, SCRIPT_KIND(m->binary != 0));
    return 3;
}

void script_on_message(mg_gw *gw, mg_conn *c, const void *data, size_t len, int binary)
{
    script_msg m = {c, data, len, binary};
    script_job j = {.what = "on_message",
                    .conn_id = c->id,
                    .hook = HOOK_ON_MESSAGE,
                    .args = script_args_message,
                    .ctx = &m};
    script_run(gw->script, &j);
}

typedef struct script_close {
    mg_conn *c;
    int code;
    const char *reason;
} script_close;

static int script_args_disconnect(mg_script *s, const void *ctx)
{
    const script_close *x = ctx;
    mgl_conn_push(s->L, s, x->c);
    lua_pushinteger(s->L, x->code);
    lua_pushstring(s->L, x->reason);
    return 3;
}

void script_on_disconnect(mg_gw *gw, mg_conn *c, int code, const char *reason)
{
    c->closed_hook = 1;
    if (!gw->script)
        return;
    script_close x = {c, code, reason};
    script_job j = {.what = "on_disconnect",
                    .conn_id = c->id,
                    .hook = HOOK_ON_DISCONNECT,
                    .args = script_args_disconnect,
                    .ctx = &x};
    script_run(gw->script, &j);
}

static int script_args_task(mg_script *s, const void *ctx)
{
    mgl_msg_push(s->L, s, (struct mg_delivery *)ctx);
    return 1;
}

int script_on_task(mg_gw *gw, struct mg_delivery *d)
{
    if (!gw->script)
        return -1;
    script_job j = {.what = "on_task", .hook = HOOK_ON_TASK, .args = script_args_task, .ctx = d};
    return script_run(gw->script, &j);
}

static int script_args_broker(mg_script *s, const void *ctx)
{
    const char *const *sd = ctx;
    lua_pushstring(s->L, sd[0]);
    lua_pushstring(s->L, sd[1]);
    return 2;
}

void script_on_broker(mg_gw *gw, const char *state, const char *detail)
{
    if (!gw->script)
        return;
    const char *sd[2] = {state, detail};
    script_job j = {
        .what = "on_broker", .hook = HOOK_ON_BROKER, .args = script_args_broker, .ctx = sd};
    script_run(gw->script, &j);
}

#define SCRIPT_COLLECT_SLACK 8

static int script_collect_cf(lua_State *L)
{
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}

/* A full collection, capped (a finalizer may run away) but with an
 * eighth of the limit to spare: it often runs because a script filled the
 * state, and finalizers that could not allocate would leave it full. */
void script_collect(mg_script *s)
{
    s->alloc.capped++;
    s->alloc.slack = s->alloc.limit / SCRIPT_COLLECT_SLACK;
    if (lua_cpcall(s->L, script_collect_cf, NULL) != 0) {
        log_error("lua error in a finalizer: %s", lua_tostring(s->L, -1));
        lua_pop(s->L, 1);
    }
    s->alloc.slack = 0;
    s->alloc.capped--;
}

void script_forget_conn(mg_gw *gw, mg_conn *c)
{
    if (gw->script)
        mgl_conn_forget(gw->script, c);
    c->lua_ref = -1;
}

void script_msg_settled(mg_script *s, uint64_t id, const char *final)
{
    mgl_msg_settled(s, id, final);
}

int script_msg_alive(mg_script *s, uint64_t id)
{
    return mgl_msg_alive(s, id);
}

void script_cancel_timers(mg_script *s)
{
    mgl_timer_cancel_all(s);
}
