/* luacall.c — what one Lua hook call costs on this machine, part by part.
 *
 * moongate calls on_message(conn, data, kind) for every message, with the
 * JIT off (the hook budget needs the interpreter).  This program times the
 * same call pattern on Debian's LuaJIT, without the gateway around it, and
 * takes it apart:
 *
 *   call      on_message looked up as a global and called with lua_pcall,
 *             a cached userdata handle, an interned data string, the kind
 *   +string   the data a fresh 32-byte string per call, as a message is
 *   +send     the hook calls conn:send(data, kind), a C function that checks
 *             its arguments the way moongate's does (handle tag and size,
 *             string, interned kind) and sends nothing; method lookup by a
 *             Lua __index function, as moongate's handles do
 *
 * each with the collector's pause at 200 (Lua's default) and 400 (what
 * moongate uses while the Lua heap is small).  Prints ns per call, the best
 * of 3 runs of 2,000,000 calls each.  Run it pinned: taskset -c 0 bench/luacall
 */
#define _POSIX_C_SOURCE 200809L
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum { CALLS = 2000000, RUNS = 3, MSG = 32 };

typedef struct {
    const void *tag;
    long id;
} handle;

static const char handle_tag;
static size_t sent_bytes;

static int conn_send(lua_State *L)
{
    handle *h = lua_touserdata(L, 1);
    if (!h || lua_objlen(L, 1) != sizeof(*h) || h->tag != &handle_tag)
        return luaL_typerror(L, 1, "conn");
    size_t len;
    luaL_checklstring(L, 2, &len);
    const char *kind = lua_tostring(L, 3);
    if (!kind || strcmp(kind, "text") != 0)
        return luaL_argerror(L, 3, "text expected");
    sent_bytes += len;
    lua_pushboolean(L, 1);
    return 1;
}

static int conn_field(lua_State *L)
{
    lua_pushnil(L);
    return 1;
}

static const char index_src[] = "local methods, field = ...\n"
                                "return function(h, k)\n"
                                "  local m = methods[k]\n"
                                "  if m ~= nil then return m end\n"
                                "  return field(h, k)\n"
                                "end\n";

static lua_State *state_new(int pause, const char *hook)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_gc(L, LUA_GCSETPAUSE, pause);
    luaL_newmetatable(L, "conn");
    luaL_loadbuffer(L, index_src, sizeof(index_src) - 1, "=__index");
    lua_newtable(L);
    lua_pushcfunction(L, conn_send);
    lua_setfield(L, -2, "send");
    lua_pushcfunction(L, conn_field);
    lua_call(L, 2, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    if (luaL_dostring(L, hook) != 0) {
        fprintf(stderr, "luacall: %s\n", lua_tostring(L, -1));
        return NULL;
    }
    return L;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ns per call of the best of RUNS runs; -1 on a Lua error. */
static double measure(int pause, const char *hook, int fresh)
{
    double best = -1;
    for (int run = 0; run < RUNS; run++) {
        lua_State *L = state_new(pause, hook);
        if (!L)
            return -1;
        handle *h = lua_newuserdata(L, sizeof(*h));
        h->tag = &handle_tag;
        h->id = 1;
        luaL_getmetatable(L, "conn");
        lua_setmetatable(L, -2);
        int ref = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_pushstring(L, "on_message");
        int name = lua_gettop(L);
        lua_pushstring(L, "text");
        int kind = lua_gettop(L);
        char msg[MSG];
        memset(msg, 'a', sizeof msg);
        lua_pushlstring(L, msg, sizeof msg);
        int same = lua_gettop(L);
        double t0 = now_s();
        for (long i = 0; i < CALLS; i++) {
            lua_pushvalue(L, name);
            lua_rawget(L, LUA_GLOBALSINDEX);
            lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
            if (fresh) {
                memcpy(msg, &i, sizeof i); /* a new string every time */
                lua_pushlstring(L, msg, sizeof msg);
            } else {
                lua_pushvalue(L, same);
            }
            lua_pushvalue(L, kind);
            if (lua_pcall(L, 3, 0, 0) != 0) {
                fprintf(stderr, "luacall: %s\n", lua_tostring(L, -1));
                lua_close(L);
                return -1;
            }
        }
        double ns = (now_s() - t0) / CALLS * 1e9;
        lua_close(L);
        if (best < 0 || ns < best)
            best = ns;
    }
    return best;
}

int main(void)
{
    static const char empty[] = "function on_message(conn, data, kind) end";
    static const char send[] = "function on_message(conn, data, kind) conn:send(data, kind) end";
    const struct {
        const char *name, *hook;
        int fresh;
    } rows[] = {
        {"call", empty, 0},
        {"+string", empty, 1},
        {"+send", send, 1},
    };
    printf("%-8s %12s %12s   (ns per hook call, best of %d x %d calls)\n", "", "pause 200",
           "pause 400", RUNS, CALLS);
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        double a = measure(200, rows[r].hook, rows[r].fresh);
        double b = measure(400, rows[r].hook, rows[r].fresh);
        if (a < 0 || b < 0)
            return 1;
        printf("%-8s %12.1f %12.1f\n", rows[r].name, a, b);
    }
    return sent_bytes ? 0 : 1;
}
