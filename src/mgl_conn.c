/* mgl_conn.c — the `conn` handle Lua scripts get.
 *
 * A handle is a userdata naming the connection by id; every field read and
 * method call finds the connection first, so a handle outlives its
 * connection safely: fields read nil (except id) and methods return
 * nil, "connection closed".  One handle per connection per generation is
 * cached in the registry, so hooks create no garbage per message; the
 * cached handle of the live generation also keeps the connection's pointer,
 * so it finds it without a lookup by id.  The connection points back at
 * that handle (c->lua_handle), and the two let go of each other together:
 * when the connection goes (script_forget_conn, before it is freed), when
 * the handle is collected (__gc: the state closes), or when the registry
 * entry no longer holds it (a script can rewrite the registry with the
 * debug library): a handle never keeps a pointer to a freed connection. */
#include <lauxlib.h>
#include <string.h>

#include "conn.h"
#include "mgl_api.h"
#include "pubsub.h"

#define CONN_MT "moongate.conn"

typedef struct {
    const void *tag; /* &lconn_tag: this userdata is a conn handle */
    mg_script *s;    /* its generation (the handle dies with the state) */
    uint64_t id;
    mg_conn *c; /* the connection, in the live generation's cached handle
                 * until script_forget_conn; else NULL: look the id up */
} lconn;

static const char lconn_tag;

static int lconn_gc(lua_State *L);

/* The conn handle at idx, or an argument error (mgl_api_checkhandle). */
static lconn *lconn_check(lua_State *L, int idx)
{
    return mgl_api_checkhandle(L, idx, &lconn_tag, sizeof(lconn), CONN_MT);
}

/* The handle's connection, or NULL once it is gone. */
static mg_conn *lconn_conn(const lconn *h)
{
    return h->c ? h->c : conn_find(h->s->gw, h->id);
}

static mg_conn *lconn_get(lua_State *L, int idx)
{
    return lconn_conn(lconn_check(L, idx));
}

mg_conn *mgl_conn_check(lua_State *L, int idx)
{
    return lconn_get(L, idx);
}

static int lconn_open_or_final(const mg_conn *c)
{
    return conn_is_open(c) || (c && c->final_window);
}

/* The connection for a method, or NULL with nil, err pushed (2 results). */
#define LCONN_OPEN_OR_FAIL(L, c)                                                                   \
    mg_conn *c = lconn_get(L, 1);                                                                  \
    if (!lconn_open_or_final(c))                                                                   \
        return mgl_api_fail(L, "connection closed");

static int lconn_send(lua_State *L)
{
    lconn *h = lconn_check(L, 1);
    mg_script *s = h->s;
    mg_conn *c = lconn_conn(h);
    if (!lconn_open_or_final(c))
        return mgl_api_fail(L, "connection closed");
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    int op = mgl_api_kind(s, L, 3);
    int rc = conn_send(s->gw, c, op, data, len);
    if (rc != MG_SEND_OK)
        return mgl_api_fail(L, conn_send_error(rc));
    lua_pushboolean(L, 1);
    return 1;
}

static int lconn_close(lua_State *L)
{
    LCONN_OPEN_OR_FAIL(L, c);
    int code = (int)luaL_optinteger(L, 2, 1000);
    const char *reason = luaL_optstring(L, 3, "");
    if (code != 1000 && (code < 3000 || code > 4999))
        return luaL_argerror(L, 2, "close code must be 1000 or 3000..4999");
    if (strlen(reason) > 123)
        return luaL_argerror(L, 3, "close reason longer than 123 bytes");
    conn_close(mgl_api_script(L)->gw, c, code, reason, 0);
    lua_pushboolean(L, 1);
    return 1;
}

static int lconn_set_name(lua_State *L)
{
    LCONN_OPEN_OR_FAIL(L, c);
    const char *name = luaL_checkstring(L, 2);
    const char *err = NULL;
    if (conn_set_name(mgl_api_script(L)->gw, c, name, &err) != 0)
        return mgl_api_fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

static int lconn_header(lua_State *L)
{
    mg_conn *c = lconn_get(L, 1);
    const char *name = luaL_checkstring(L, 2);
    const char *v = c ? conn_header(c, name) : NULL;
    if (v)
        lua_pushstring(L, v);
    else
        lua_pushnil(L);
    return 1;
}

static int lconn_get_attr(lua_State *L)
{
    mg_conn *c = lconn_get(L, 1);
    const char *key = luaL_checkstring(L, 2);
    const mg_value *v = c ? conn_attr_get(c, key) : NULL;
    if (!v)
        lua_pushnil(L);
    else
        mgl_api_pushvalue(L, v);
    return 1;
}

static int lconn_set_attr(lua_State *L)
{
    mg_conn *c = lconn_get(L, 1);
    if (!c)
        return mgl_api_fail(L, "connection closed");
    const char *key = luaL_checkstring(L, 2);
    mg_value v = {0};
    if (mgl_api_tovalue(L, 3, &v) != 0)
        return luaL_argerror(L, 3, "expected string, number, boolean or nil");
    int rc = conn_attr_set(c, key, &v);
    if (rc != 0)
        return mgl_api_fail(L, "out of memory");
    lua_pushboolean(L, 1);
    return 1;
}

static int lconn_subscribe(lua_State *L)
{
    LCONN_OPEN_OR_FAIL(L, c);
    if (pubsub_subscribe(mgl_api_script(L)->gw, c, luaL_checkstring(L, 2)) != 0)
        return mgl_api_fail(L, "out of memory");
    lua_pushboolean(L, 1);
    return 1;
}

static int lconn_unsubscribe(lua_State *L)
{
    mg_conn *c = lconn_get(L, 1);
    if (!c)
        return mgl_api_fail(L, "connection closed");
    pubsub_unsubscribe(mgl_api_script(L)->gw, c, luaL_checkstring(L, 2));
    lua_pushboolean(L, 1);
    return 1;
}

static int lconn_is_open(lua_State *L)
{
    lua_pushboolean(L, conn_is_open(lconn_get(L, 1)));
    return 1;
}

static int lconn_tostring(lua_State *L)
{
    lconn *h = lconn_check(L, 1);
    lua_pushfstring(L, "conn %d", (int)h->id);
    return 1;
}

static void lconn_push_str_or_nil(lua_State *L, const char *s)
{
    if (s)
        lua_pushstring(L, s);
    else
        lua_pushnil(L);
}

/* conn.KEY for a key that is not a method (see mgl_api_newclass). */
static int lconn_field(lua_State *L)
{
    lconn *h = lconn_check(L, 1);
    const char *key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    if (key && strcmp(key, "id") == 0) {
        lua_pushnumber(L, (lua_Number)h->id);
        return 1;
    }
    mg_conn *c = key ? lconn_conn(h) : NULL;
    if (!c)
        lua_pushnil(L);
    else if (strcmp(key, "path") == 0)
        lconn_push_str_or_nil(L, c->path);
    else if (strcmp(key, "query") == 0)
        lconn_push_str_or_nil(L, c->query);
    else if (strcmp(key, "remote") == 0)
        lconn_push_str_or_nil(L, c->remote);
    else if (strcmp(key, "name") == 0)
        lconn_push_str_or_nil(L, c->name);
    else if (strcmp(key, "protocol") == 0)
        lconn_push_str_or_nil(L, conn_protocol(c));
    else
        lua_pushnil(L);
    return 1;
}

static int lconn_eq(lua_State *L)
{
    lconn *a = lconn_check(L, 1), *b = lconn_check(L, 2);
    lua_pushboolean(L, a->id == b->id);
    return 1;
}

void mgl_conn_open(mg_script *s)
{
    static const luaL_Reg methods[] = {
        {"send", lconn_send},           {"close", lconn_close},
        {"set_name", lconn_set_name},   {"header", lconn_header},
        {"get", lconn_get_attr},        {"set", lconn_set_attr},
        {"subscribe", lconn_subscribe}, {"unsubscribe", lconn_unsubscribe},
        {"is_open", lconn_is_open},     {NULL, NULL},
    };
    static const luaL_Reg meta[] = {
        {"__tostring", lconn_tostring},
        {"__eq", lconn_eq},
        {"__gc", lconn_gc},
        {NULL, NULL},
    };
    mgl_api_newclass(s, CONN_MT, methods, lconn_field, meta);
}

/* c's cached handle is gone, or no longer to be trusted: c forgets it, and
 * it forgets c (it looks its connection up by id from now on). */
static void lconn_uncache(mg_conn *c)
{
    lconn *h = c->lua_handle;
    if (h)
        h->c = NULL;
    c->lua_handle = NULL;
    c->lua_ref = -1;
}

/* __gc: a handle that held its connection's pointer lets go of it (the
 * state is closing, or the script replaced the registry's reference). */
static int lconn_gc(lua_State *L)
{
    lconn *h = mgl_api_tohandle(L, 1, &lconn_tag, sizeof(lconn));
    if (h && h->c && h->c->lua_handle == h)
        lconn_uncache(h->c);
    return 0;
}

void mgl_conn_push(lua_State *L, mg_script *s, mg_conn *c)
{
    if (c->lua_ref >= 0 && c->lua_ref_gen == (uint32_t)s->gen) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->lua_ref);
        /* The registry is the script's to write too (debug.getregistry):
         * the entry counts only if it is still the handle c cached. */
        if (c->lua_handle && lua_touserdata(L, -1) == c->lua_handle)
            return;
        lua_pop(L, 1);
        luaL_unref(L, LUA_REGISTRYINDEX, c->lua_ref);
        lconn_uncache(c);
    }
    lconn *h = lua_newuserdata(L, sizeof(*h));
    h->tag = &lconn_tag;
    h->s = s;
    h->id = c->id;
    h->c = NULL;
    luaL_getmetatable(L, CONN_MT);
    lua_setmetatable(L, -2);
    /* Cache only in the live generation: a state being loaded for a
     * reload may still be thrown away, and script_forget_conn reaches only
     * the live one's handles; nor in one being closed (a finalizer's). */
    if (s->gw->script == s && !s->closing) {
        if (c->lua_handle) /* another generation's, still alive */
            lconn_uncache(c);
        h->c = c;
        lua_pushvalue(L, -1);
        c->lua_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        c->lua_ref_gen = (uint32_t)s->gen;
        c->lua_handle = h;
    }
}

void mgl_conn_forget(mg_script *s, mg_conn *c)
{
    if (c->lua_ref >= 0 && c->lua_ref_gen == (uint32_t)s->gen)
        luaL_unref(s->L, LUA_REGISTRYINDEX, c->lua_ref);
    lconn_uncache(c);
}
