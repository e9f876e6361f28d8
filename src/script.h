/* script.h — the Lua side of the gateway: states, hooks and reload.
 *
 * A script generation is one lua_State built from the configured script,
 * with the JIT off (so the hook budget can stop any loop), a memory cap, and
 * the `gw` table.  Hooks are looked up as globals at each call, run under
 * the time budget with a traceback handler; an error is logged with the
 * connection id and counted, and never propagates.  A reload builds a new
 * generation beside the live one and switches only if loading and
 * on_reload succeed; durable state (connections, names, attributes,
 * subscriptions, gw.store) lives in C and is untouched.
 *
 * Nothing a script does may end the process, so no Lua code runs outside
 * a protected call: states are built in lua_cpcall, hooks and timers run
 * in lua_pcall, and a hook's arguments (whose allocation may step the
 * collector and so run a finalizer) are pushed under a rescue point that
 * LuaJIT's panic function jumps back to (script_run).  Elsewhere C code
 * touches a state only with raw accesses, which neither allocate nor call
 * metamethods (lua_rawgeti, luaL_unref). */
#ifndef MG_SCRIPT_H
#define MG_SCRIPT_H

#include <lua.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include "gw.h"
#include "lalloc.h"

typedef enum {
    HOOK_ON_HANDSHAKE,
    HOOK_ON_CONNECT,
    HOOK_ON_MESSAGE,
    HOOK_ON_DISCONNECT,
    HOOK_ON_RELOAD,
    HOOK_ON_TASK,
    HOOK_ON_BROKER,
    SCRIPT_HOOKS
} script_hook_id;

struct mg_script {
    mg_gw *gw;
    lua_State *L;
    uint64_t gen; /* generation number */
    lalloc alloc; /* the state's memory: counted, capped, pooled */
    dict timers;  /* timer id -> mg_timer (mgl_timer.c) */
    uint64_t next_timer_id;
    const char *kind_str[2];           /* "text", "binary" as interned in L: a
                                        * string with these bytes is at this address */
    uint64_t cur_conn;                 /* connection of the hook running now, for gw.log */
    const struct mg_request *live_req; /* request of the on_handshake running now */
    int msg_handles;                   /* registry ref of the live msg handles (mgl_broker.c) */
    int sandbox;                       /* lua.sandbox when it was built */
    int closing;                       /* lua_close is running its finalizers */
    int co_depth;                      /* coroutines nested in the call now (mgl_stdlib.c) */
    sigjmp_buf *rescue;                /* where script_panic jumps back to, or NULL */
};

/* What on_handshake sees. */
typedef struct mg_request {
    const char *path, *query, *remote;
    const char *headers; /* "name\0value\0" pairs, names lower-case */
    size_t headers_len;
    const char *protocols; /* offered subprotocols, "name\0name\0..." in the client's order */
    int nprotocols;
    /* Any other header, read live (valid only during the hook). */
    const char *(*lookup)(void *ctx, const char *name, char *buf, size_t len);
    void *lookup_ctx;
} mg_request;

/* Build a generation from cfg's script.  NULL on error, with the reason
 * ("FILE:LINE: message") in err. */
mg_script *script_load(mg_gw *gw, const mg_config *cfg, uint64_t gen, char *err, size_t errlen);
void script_free(mg_script *s);

/* Parse cfg's script without running it (moongate -t). */
int script_check(const char *path, char *err, size_t errlen);

/* A reload, in three steps (gwctl.c applies the new config between the
 * first two, so on_reload runs with the C side already enforcing it):
 * build the next generation from cfg (0, or -1 with err); run its
 * on_reload (0, or -1 with err: then free it); switch to it, closing the
 * old one. */
int script_prepare(mg_gw *gw, const mg_config *cfg, mg_script **out, char *err, size_t errlen);
int script_run_reload(mg_script *ns, char *err, size_t errlen);
void script_switch(mg_gw *gw, mg_script *ns);

/* Hooks.  on_handshake returns 1 to accept, with the subprotocol it chose
 * in protocol ("" none: `return true, {protocol = "name"}`), or 0 to
 * refuse (status and body filled in).  A choice that is not a string, or
 * too long for protocol, is a script error (500). */
typedef struct mg_handshake_answer {
    int status;
    char body[512];
    char protocol[64];
} mg_handshake_answer;
int script_on_handshake(mg_gw *gw, const mg_request *req, mg_handshake_answer *ans);
void script_on_connect(mg_gw *gw, mg_conn *c);
void script_on_message(mg_gw *gw, mg_conn *c, const void *data, size_t len, int binary);
void script_on_disconnect(mg_gw *gw, mg_conn *c, int code, const char *reason);
/* on_task(msg): -1 if the script has no on_task, 0 if it ran, 1 if it
 * failed.  on_broker(state, detail). */
struct mg_delivery;
int script_on_task(mg_gw *gw, struct mg_delivery *d);
void script_on_broker(mg_gw *gw, const char *state, const char *detail);
/* A full garbage collection, protected (finalizers may raise). */
void script_collect(mg_script *s);
/* Drop the Lua handle cached for a connection that is going away.  Must run
 * before the mg_conn is freed: the cached handle holds its pointer. */
void script_forget_conn(mg_gw *gw, mg_conn *c);
/* Tell the script's handle of delivery id, if it still holds one, how the
 * delivery ended ("lost", "forwarded"...): its state field says so from
 * then on.  broker.c reaches the msg handle only through these two. */
void script_msg_settled(mg_script *s, uint64_t id, const char *final);
/* Whether the script still holds a handle for delivery id (one it dropped
 * may still wait for the collector). */
int script_msg_alive(mg_script *s, uint64_t id);
/* Cancel every timer of s (gw.after, gw.every), while the loop they are
 * scheduled on still exists: at exit the loop goes before the state. */
void script_cancel_timers(mg_script *s);

/* Call the function at registry reference ref, with no arguments, under
 * the budget; errors are logged and counted as "WHAT".  0 or -1. */
int script_call_ref(mg_script *s, const char *what, int ref);

#endif
