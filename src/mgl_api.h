/* mgl_api.h — entry points of the Lua binding files.
 *
 * Each API area is one file that fills its part of a new state:
 *   mgl_stdlib.c the standard libraries, guarded; lua.sandbox
 *   mgl_conn.c   the conn handle (fields and methods)
 *   mgl_gw.c     the gw table: send/broadcast/publish/find, log, now,
 *                config, json, store; the helpers below
 *   mgl_timer.c  gw.after / gw.every and timer handles
 *   mgl_broker.c gw.broker and the msg handle of on_task
 *   mgl_jwt.c    gw.jwt.verify (over jwt.c)
 * Their names take the prefix mgl_ (moongate's Lua binding), leaving lua_
 * and luaL_ to Lua's own API, so a call says whose function it is.  Of the
 * core only script.c includes this header: the rest of the gateway reaches
 * the binding through script.h.
 * Every C function reaches its generation through upvalue 1 (mg_script *). */
#ifndef MG_MGL_API_H
#define MG_MGL_API_H

#include <lauxlib.h>
#include <lua.h>

#include "script.h"
#include "value.h"

/* The standard libraries, guarded (mgl_stdlib.c), and with lua.sandbox
 * what it takes away, once the rest of the state is built; both in a
 * protected call. */
void mgl_stdlib_open(mg_script *s, const mg_config *cfg);
void mgl_stdlib_seal(mg_script *s);
/* luaL_loadfilex for a regular file only, opened without blocking: the
 * chunk or an error message pushed, and Lua's status code. */
int mgl_stdlib_loadfile(lua_State *L, const char *path, const char *mode);

void mgl_conn_open(mg_script *s);
/* Push c's handle onto L: the state's main thread or a coroutine of it. */
void mgl_conn_push(lua_State *L, mg_script *s, mg_conn *c);
/* Unref the handle cached for c in s, and clear its pointer to c. */
void mgl_conn_forget(mg_script *s, mg_conn *c);

/* Leaves the gw table on the stack. */
void mgl_gw_open(mg_script *s, const mg_config *cfg);

/* Adds gw.broker to the gw table at the top of the stack, and the msg
 * handle of on_task (mgl_broker.c). */
struct mg_delivery;
void mgl_broker_open(mg_script *s);
/* Push the handle of d onto L: the main thread or a coroutine. */
void mgl_msg_push(lua_State *L, mg_script *s, struct mg_delivery *d);
/* Tell the live handle of delivery id (if any) how it ended. */
void mgl_msg_settled(mg_script *s, uint64_t id, const char *final);
/* Whether the state still holds a handle for delivery id. */
int mgl_msg_alive(mg_script *s, uint64_t id);

/* Adds gw.jwt to the gw table at the top of the stack; gw.json must be
 * set already (its decode returns the claims). */
void mgl_jwt_open(mg_script *s);

/* Adds after/every to the gw table at the top of the stack. */
void mgl_timer_open(mg_script *s);
void mgl_timer_cancel_all(mg_script *s);

/* A handle type: metatable NAME whose __index returns the method of that
 * name if there is one, else calls field(handle, key) (a closure over s),
 * plus the metamethods in meta (closures over s); __metatable hides it
 * from scripts. */
void mgl_api_newclass(mg_script *s, const char *name, const luaL_Reg *methods, lua_CFunction field,
                      const luaL_Reg *meta);

/* Handles (conn, msg, timer) are full userdata whose first field is their
 * kind: the address of a tag the binding file owns.  A userdata's bytes
 * are written only by C code, so a script cannot forge one, and one check
 * serves every kind: size and tag, no metatable lookup.  mgl_api_tohandle
 * returns the handle at idx if it is one of this kind and size, else
 * NULL; mgl_api_checkhandle raises luaL_typerror(L, idx, name) instead. */
void *mgl_api_tohandle(lua_State *L, int idx, const void *tag, size_t size);
void *mgl_api_checkhandle(lua_State *L, int idx, const void *tag, size_t size, const char *name);

/* The connection of the conn handle at idx (mgl_conn.c), NULL if it is
 * gone; an argument error if idx holds no conn handle. */
mg_conn *mgl_conn_check(lua_State *L, int idx);

/* Register fns as closures with s as upvalue 1 into the table at the top. */
void mgl_api_setfuncs(mg_script *s, const luaL_Reg *fns);
static inline mg_script *mgl_api_script(lua_State *L)
{
    return (mg_script *)lua_touserdata(L, lua_upvalueindex(1));
}

/* mg_value <-> Lua.  mgl_api_tovalue returns 0, or -1 for an unsupported
 * type (tables, functions...). */
void mgl_api_pushvalue(lua_State *L, const mg_value *v);
int mgl_api_tovalue(lua_State *L, int idx, mg_value *v);

/* The optional message kind at idx: "text" (default) or "binary";
 * anything else raises an argument error. */
int mgl_api_kind(const mg_script *s, lua_State *L, int idx);

/* Push nil, msg and return 2: the error-value convention. */
int mgl_api_fail(lua_State *L, const char *msg);

#endif
