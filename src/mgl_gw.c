/* mgl_gw.c — the `gw` table: messaging, lookup, log, clock, config, JSON
 * and gw.store, plus the helpers the binding files share (mgl_api.h). */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "conn.h"
#include "log.h"
#include "mgl_api.h"
#include "peer.h"
#include "pubsub.h"
#include "workers.h"

/* ---- shared helpers ---- */

void mgl_api_setfuncs(mg_script *s, const luaL_Reg *fns)
{
    for (; fns->name; fns++) {
        lua_pushlightuserdata(s->L, s);
        lua_pushcclosure(s->L, fns->func, 1);
        lua_setfield(s->L, -2, fns->name);
    }
}

/* The __index of a handle type, made from the methods table and the C
 * field getter: a Lua function, so `h:method()` costs the interpreter a
 * table lookup and no call into C.  Hooks run with the JIT off. */
static const char mgl_api_index_src[] = "local methods, field = ...\n"
                                        "return function(h, k)\n"
                                        "  local m = methods[k]\n"
                                        "  if m ~= nil then return m end\n"
                                        "  return field(h, k)\n"
                                        "end\n";

void mgl_api_newclass(mg_script *s, const char *name, const luaL_Reg *methods, lua_CFunction field,
                      const luaL_Reg *meta)
{
    lua_State *L = s->L;
    luaL_newmetatable(L, name);
    if (luaL_loadbuffer(L, mgl_api_index_src, sizeof(mgl_api_index_src) - 1, "=handle __index"))
        lua_error(L); /* out of memory while building the state */
    lua_newtable(L);
    mgl_api_setfuncs(s, methods);
    lua_pushlightuserdata(L, s);
    lua_pushcclosure(L, field, 1);
    lua_call(L, 2, 1);
    lua_setfield(L, -2, "__index");
    mgl_api_setfuncs(s, meta);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

void *mgl_api_tohandle(lua_State *L, int idx, const void *tag, size_t size)
{
    const void *const *h = lua_touserdata(L, idx);
    if (!h || lua_type(L, idx) != LUA_TUSERDATA || lua_objlen(L, idx) != size || *h != tag)
        return NULL;
    return (void *)h;
}

void *mgl_api_checkhandle(lua_State *L, int idx, const void *tag, size_t size, const char *name)
{
    void *h = mgl_api_tohandle(L, idx, tag, size);
    if (!h)
        luaL_typerror(L, idx, name);
    return h;
}

int mgl_api_fail(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

void mgl_api_pushvalue(lua_State *L, const mg_value *v)
{
    switch (v->type) {
    case MG_VAL_BOOL:
        lua_pushboolean(L, v->b);
        break;
    case MG_VAL_NUM:
        lua_pushnumber(L, v->n);
        break;
    case MG_VAL_STR:
        lua_pushlstring(L, v->s, v->len);
        break;
    default:
        lua_pushnil(L);
    }
}

int mgl_api_tovalue(lua_State *L, int idx, mg_value *v)
{
    memset(v, 0, sizeof(*v));
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
    case LUA_TNONE:
        v->type = MG_VAL_NIL;
        return 0;
    case LUA_TBOOLEAN:
        v->type = MG_VAL_BOOL;
        v->b = lua_toboolean(L, idx);
        return 0;
    case LUA_TNUMBER:
        v->type = MG_VAL_NUM;
        v->n = lua_tonumber(L, idx);
        return 0;
    case LUA_TSTRING:
        v->type = MG_VAL_STR;
        v->s = (char *)lua_tolstring(L, idx, &v->len); /* borrowed; value_copy copies */
        return 0;
    default:
        return -1;
    }
}

int mgl_api_kind(const mg_script *s, lua_State *L, int idx)
{
    /* Strings are interned: "text" and "binary" are the state's own. */
    const char *kind = lua_tostring(L, idx);
    if (kind == s->kind_str[0] || (!kind && lua_isnoneornil(L, idx)))
        return MG_OP_TEXT;
    if (kind == s->kind_str[1])
        return MG_OP_BINARY;
    kind = luaL_optstring(L, idx, "text");
    if (strcmp(kind, "binary") == 0)
        return MG_OP_BINARY;
    if (strcmp(kind, "text") != 0)
        luaL_argerror(L, idx, "kind must be \"text\" or \"binary\"");
    return MG_OP_TEXT;
}

/* A connection named by a conn handle, an id or a registered name. */
static mg_conn *lgw_target(lua_State *L, mg_gw *gw, int idx)
{
    if (lua_type(L, idx) == LUA_TNUMBER)
        return conn_find(gw, (uint64_t)lua_tonumber(L, idx));
    if (lua_type(L, idx) == LUA_TSTRING)
        return conn_find_name(gw, lua_tostring(L, idx));
    if (lua_type(L, idx) == LUA_TUSERDATA) /* a conn handle, and no other kind */
        return mgl_conn_check(L, idx);
    luaL_argerror(L, idx, "expected a connection, an id or a name");
    return NULL;
}

/* ---- messaging and lookup ---- */

/* A send to no client of this worker: to the worker that holds it, if
 * another does.  1 handed on. */
static int lgw_send_elsewhere(lua_State *L, mg_gw *gw, int op, const char *data, size_t len)
{
    if (lua_type(L, 1) == LUA_TNUMBER) {
        lua_Number n = lua_tonumber(L, 1);
        uint64_t id = (uint64_t)n;
        return n >= 1 && n < 9007199254740992.0 &&
               (peers_send_id(gw, id, op, data, len) || cluster_send_id(gw, id, op, data, len));
    }
    if (lua_type(L, 1) == LUA_TSTRING) {
        const char *name = lua_tostring(L, 1);
        return peers_send_name(gw, name, op, data, len) ||
               cluster_send_name(gw, name, op, data, len);
    }
    return 0;
}

static int lgw_send(lua_State *L)
{
    mg_script *s = mgl_api_script(L);
    mg_gw *gw = s->gw;
    mg_conn *c = lgw_target(L, gw, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    int op = mgl_api_kind(s, L, 3);
    if (!c) {
        if (!lgw_send_elsewhere(L, gw, op, data, len))
            return mgl_api_fail(L, "no such connection");
        lua_pushboolean(L, 1);
        return 1;
    }
    int rc = conn_send(gw, c, op, data, len);
    if (rc != MG_SEND_OK)
        return mgl_api_fail(L, conn_send_error(rc));
    lua_pushboolean(L, 1);
    return 1;
}

static int lgw_broadcast(lua_State *L)
{
    mg_script *s = mgl_api_script(L);
    mg_gw *gw = s->gw;
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    uint64_t except = 0;
    if (lua_type(L, 2) == LUA_TNUMBER) /* an id, perhaps another worker's */
        except = (uint64_t)lua_tonumber(L, 2);
    else if (!lua_isnoneornil(L, 2)) {
        mg_conn *c = lgw_target(L, gw, 2);
        except = c ? c->id : 0;
    }
    int op = mgl_api_kind(s, L, 3);
    long n = pubsub_broadcast(gw, op, data, len, except);
    if (n < 0)
        return mgl_api_fail(L, "out of memory");
    peers_broadcast(gw, op, data, len, except);
    cluster_broadcast(gw, op, data, len, except);
    lua_pushinteger(L, n);
    return 1;
}

static int lgw_publish(lua_State *L)
{
    mg_script *s = mgl_api_script(L);
    mg_gw *gw = s->gw;
    const char *topic = luaL_checkstring(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    int op = mgl_api_kind(s, L, 3);
    long n = pubsub_publish(gw, topic, op, data, len);
    if (n < 0)
        return mgl_api_fail(L, "out of memory");
    peers_publish(gw, topic, op, data, len);
    cluster_publish(gw, topic, op, data, len);
    lua_pushinteger(L, n);
    return 1;
}

static int lgw_push_conn_or_nil(lua_State *L, mg_conn *c)
{
    if (c)
        mgl_conn_push(L, mgl_api_script(L), c);
    else
        lua_pushnil(L);
    return 1;
}

static int lgw_find(lua_State *L)
{
    return lgw_push_conn_or_nil(L, conn_find_name(mgl_api_script(L)->gw, luaL_checkstring(L, 1)));
}

/* gw.online(name): a client holds name here, on another worker or on
 * another node (as far as this worker's directory knows). */
static int lgw_online(lua_State *L)
{
    mg_gw *gw = mgl_api_script(L)->gw;
    const char *name = luaL_checkstring(L, 1);
    lua_pushboolean(L, conn_find_name(gw, name) || peers_has_name(gw, name) ||
                           cluster_has_name(gw, name));
    return 1;
}

static int lgw_get(lua_State *L)
{
    uint64_t id = (uint64_t)luaL_checknumber(L, 1);
    return lgw_push_conn_or_nil(L, conn_find(mgl_api_script(L)->gw, id));
}

static int lgw_clients(lua_State *L)
{
    mg_script *s = mgl_api_script(L);
    lua_createtable(L, (int)s->gw->conns_open, 0);
    int i = 1;
    for (mg_conn *c = s->gw->conn_list; c; c = c->next) {
        if (!conn_is_open(c))
            continue;
        mgl_conn_push(L, s, c);
        lua_rawseti(L, -2, i++);
    }
    return 1;
}

/* gw.count() this worker's clients; gw.count("all") every worker's. */
static int lgw_count(lua_State *L)
{
    mg_gw *gw = mgl_api_script(L)->gw;
    const char *scope = luaL_optstring(L, 1, "worker");
    if (!strcmp(scope, "all"))
        lua_pushinteger(L, (lua_Integer)workers_conns_all(gw));
    else if (!strcmp(scope, "worker"))
        lua_pushinteger(L, (lua_Integer)gw->conns_open);
    else
        return luaL_argerror(L, 1, "scope must be \"worker\" or \"all\"");
    return 1;
}

static int lgw_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec * 1000 + (lua_Number)(ts.tv_nsec / 1000000));
    return 1;
}

/* ---- gw.log ---- */

static int lgw_log_at(lua_State *L, mg_log_level level)
{
    luaL_Buffer b;
    int n = lua_gettop(L);
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        lua_getglobal(L, "tostring");
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        if (i > 1)
            luaL_addchar(&b, ' ');
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    log_conn(level, mgl_api_script(L)->cur_conn, "lua: %s", lua_tostring(L, -1));
    return 0;
}

static int lgw_log_debug(lua_State *L)
{
    return lgw_log_at(L, MG_LOG_DEBUG);
}
static int lgw_log_info(lua_State *L)
{
    return lgw_log_at(L, MG_LOG_INFO);
}
static int lgw_log_warn(lua_State *L)
{
    return lgw_log_at(L, MG_LOG_WARN);
}
static int lgw_log_error(lua_State *L)
{
    return lgw_log_at(L, MG_LOG_ERROR);
}

/* ---- gw.store: a proxy table over a C dict of mg_value ---- */

static int lgw_store_index(lua_State *L)
{
    mg_gw *gw = mgl_api_script(L)->gw;
    size_t len;
    const char *key = luaL_checklstring(L, 2, &len);
    mg_value *v = dict_get(&gw->store, key, len);
    if (v)
        mgl_api_pushvalue(L, v);
    else
        lua_pushnil(L);
    return 1;
}

static int lgw_store_newindex(lua_State *L)
{
    mg_gw *gw = mgl_api_script(L)->gw;
    size_t len;
    const char *key = luaL_checklstring(L, 2, &len);
    mg_value in;
    if (mgl_api_tovalue(L, 3, &in) != 0)
        return luaL_error(L, "gw.store values must be strings, numbers, booleans or nil");
    if (in.type == MG_VAL_NIL) {
        mg_value *old = dict_del(&gw->store, key, len);
        if (old) {
            value_clear(old);
            free(old);
        }
        return 0;
    }
    mg_value *v = dict_get(&gw->store, key, len);
    int fresh = !v;
    if (fresh && !(v = calloc(1, sizeof(*v))))
        return luaL_error(L, "out of memory");
    if (value_copy(v, &in) != 0) {
        if (fresh)
            free(v);
        return luaL_error(L, "out of memory");
    }
    int err = 0;
    if (fresh)
        dict_set(&gw->store, key, len, v, &err);
    if (err) {
        value_clear(v);
        free(v);
        return luaL_error(L, "out of memory");
    }
    return 0;
}

static void lgw_open_store(mg_script *s)
{
    static const luaL_Reg mt[] = {
        {"__index", lgw_store_index},
        {"__newindex", lgw_store_newindex},
        {NULL, NULL},
    };
    lua_newtable(s->L);
    lua_newtable(s->L);
    mgl_api_setfuncs(s, mt);
    lua_setmetatable(s->L, -2);
}

/* ---- gw.config ---- */

static void lgw_push_node(lua_State *L, const mg_node *n)
{
    if (!n) {
        lua_pushnil(L);
        return;
    }
    switch (n->type) {
    case MG_NODE_BOOL:
        lua_pushboolean(L, n->boolean);
        break;
    case MG_NODE_NUMBER:
        lua_pushnumber(L, n->num);
        break;
    case MG_NODE_STRING:
        lua_pushstring(L, n->str);
        break;
    case MG_NODE_SEQ:
    case MG_NODE_MAP:
        lua_createtable(L, 0, (int)n->nitems);
        for (size_t i = 0; i < n->nitems; i++) {
            lgw_push_node(L, n->items[i]);
            if (n->type == MG_NODE_MAP)
                lua_setfield(L, -2, n->items[i]->key);
            else
                lua_rawseti(L, -2, (int)i + 1);
        }
        break;
    default:
        lua_pushnil(L);
    }
}

static void lgw_setnum(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void lgw_setstr(lua_State *L, const char *k, const char *v)
{
    if (!v)
        return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

/* t[k] = a list of the n strings v (an empty one when n is 0). */
static void lgw_setstrv(lua_State *L, const char *k, char *const *v, size_t n)
{
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, v[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, k);
}

static void lgw_open_config(lua_State *L, const mg_config *cfg)
{
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    lua_newtable(L);
    lua_createtable(L, (int)cfg->nlisteners, 0);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const mg_listener *l = &cfg->listeners[i];
        lua_newtable(L);
        lgw_setstr(L, "host", l->host);
        lgw_setnum(L, "port", l->port);
        lgw_setstr(L, "path", l->paths[0]);
        lgw_setstrv(L, "paths", l->paths, l->npaths);
        lgw_setstrv(L, "protocols", l->protocols, l->nprotocols);
        lua_pushboolean(L, l->tls_cert != NULL);
        lua_setfield(L, -2, "tls");
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "listen");
    lgw_setstr(L, "script", cfg->script);

    lua_newtable(L);
    lgw_setnum(L, "interval", cfg->ping_interval_ms);
    lgw_setnum(L, "timeout", cfg->ping_timeout_ms);
    lgw_setstr(L, "text_ping", cfg->text_ping);
    lgw_setstr(L, "text_pong", cfg->text_pong);
    lua_setfield(L, -2, "heartbeat");

    lua_newtable(L);
    lgw_setnum(L, "max_connections", cfg->max_connections);
    lgw_setnum(L, "max_message_size", (double)cfg->max_message_size);
    lgw_setnum(L, "send_queue", (double)cfg->send_queue_max);
    lgw_setstr(L, "slow_consumer", cfg->slow_consumer == MG_SLOW_DROP ? "drop" : "close");
    lgw_setnum(L, "handshake_timeout", cfg->handshake_timeout_ms);
    lgw_setnum(L, "message_rate", cfg->message_rate);
    lgw_setnum(L, "message_burst", cfg->message_burst);
    lgw_setnum(L, "close_timeout", cfg->close_timeout_ms);
    lua_setfield(L, -2, "limits");

    lua_newtable(L);
    lgw_setnum(L, "hook_budget", cfg->hook_budget_ms);
    lgw_setnum(L, "memory_limit", (double)cfg->lua_memory_limit);
    lua_pushboolean(L, cfg->lua_sandbox);
    lua_setfield(L, -2, "sandbox");
    lua_setfield(L, -2, "lua");

    lua_newtable(L);
    lgw_setstr(L, "duplicate", cfg->duplicate_names == MG_DUP_REJECT ? "reject" : "replace");
    lua_setfield(L, -2, "names");

    lua_newtable(L);
    lgw_setnum(L, "drain_timeout", cfg->drain_timeout_ms);
    lua_setfield(L, -2, "shutdown");

    lua_newtable(L);
    lgw_setstr(L, "level", levels[cfg->log_level]);
    lgw_setstr(L, "format", cfg->log_format == MG_LOG_JSON ? "json" : "text");
    lua_setfield(L, -2, "log");

    if (cfg->broker) { /* no url: it may carry a password */
        const mg_broker_config *b = cfg->broker;
        lua_newtable(L);
        lgw_setnum(L, "prefetch", b->prefetch);
        lgw_setnum(L, "publish_buffer", b->publish_buffer);
        lgw_setnum(L, "heartbeat", b->heartbeat_ms);
        lua_createtable(L, (int)b->nconsume, 0);
        for (size_t i = 0; i < b->nconsume; i++) {
            lua_pushstring(L, b->consume[i]);
            lua_rawseti(L, -2, (int)i + 1);
        }
        lua_setfield(L, -2, "consume");
        lua_setfield(L, -2, "broker");
    }

    if (cfg->app) {
        lgw_push_node(L, cfg->app);
        lua_setfield(L, -2, "app");
    }
}

/* gw.json: Debian's lua-cjson. */
static void lgw_open_json(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        log_warn("gw.json unavailable: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        lua_pushnil(L);
    }
}

void mgl_gw_open(mg_script *s, const mg_config *cfg)
{
    static const luaL_Reg fns[] = {
        {"send", lgw_send},       {"broadcast", lgw_broadcast},
        {"publish", lgw_publish}, {"find", lgw_find},
        {"online", lgw_online},   {"get", lgw_get},
        {"clients", lgw_clients}, {"count", lgw_count},
        {"now", lgw_now},         {NULL, NULL},
    };
    static const luaL_Reg logfns[] = {
        {"debug", lgw_log_debug}, {"info", lgw_log_info}, {"warn", lgw_log_warn},
        {"error", lgw_log_error}, {NULL, NULL},
    };
    lua_State *L = s->L;
    lua_newtable(L);
    mgl_api_setfuncs(s, fns);
    lua_newtable(L);
    mgl_api_setfuncs(s, logfns);
    lua_setfield(L, -2, "log");
    lgw_open_config(L, cfg);
    lua_setfield(L, -2, "config");
    lgw_open_json(L);
    lua_setfield(L, -2, "json");
    mgl_jwt_open(s);
    lgw_open_store(s);
    lua_setfield(L, -2, "store");
    lua_pushnumber(L, (lua_Number)s->gen);
    lua_setfield(L, -2, "generation");
    lua_pushinteger(L, (lua_Integer)(s->gw->worker ? s->gw->worker : 1));
    lua_setfield(L, -2, "worker");
    lua_pushinteger(L, (lua_Integer)(s->gw->nworkers ? s->gw->nworkers : 1));
    lua_setfield(L, -2, "workers");
    if (cfg->cluster) { /* the node's name, as the cluster knows it */
        lua_pushstring(L, cfg->cluster->node);
        lua_setfield(L, -2, "node");
    }
    mgl_timer_open(s);
    mgl_broker_open(s);
}
