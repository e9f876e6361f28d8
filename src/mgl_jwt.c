/* mgl_jwt.c — gw.jwt.verify(token, opts): the Lua face of jwt.c.
 *
 * A pure function, allowed in the sandbox and in every hook.  A token that
 * does not verify is an answer, nil and a short reason; options that
 * cannot work (no alg, an unknown one, a key that is not one) are a
 * programming error and raise.
 *
 * opts is read with raw access, and every string C keeps a pointer to
 * stays on the Lua stack until jwt_verify is done, so no metamethod or
 * collection can take one away underneath.  A PEM key is parsed once per
 * state: the parsed keys are userdata (freed by __gc) in a table keyed by
 * the PEM text (upvalue 3), at most MGL_JWT_KEYS of them; further keys are
 * parsed on every call.  The claims are decoded by gw.json's decode
 * (upvalue 2), so they read exactly as gw.json.decode would return them. */
#include <lauxlib.h>
#include <string.h>
#include <time.h>

#include "jwt.h"
#include "mgl_api.h"

#define MGL_JWT_LIST 16 /* entries of alg/algs, aud and iss lists, at most */
#define MGL_JWT_KEYS 64 /* parsed PEM keys kept per state */
#define MGL_JWT_KEY_MT "moongate.jwt_key"

static const char mgl_jwt_key_tag[] = "jwt key";

typedef struct mgl_jwt_key {
    const void *tag; /* mgl_jwt_key_tag */
    jwt_pubkey *key;
} mgl_jwt_key;

static int mgl_jwt_key_gc(lua_State *L)
{
    mgl_jwt_key *k = mgl_api_tohandle(L, 1, mgl_jwt_key_tag, sizeof(*k));
    if (k) {
        jwt_pubkey_free(k->key);
        k->key = NULL;
    }
    return 0;
}

/* Push opts[name] (raw) and return its type. */
static int mgl_jwt_get(lua_State *L, const char *name)
{
    lua_pushstring(L, name);
    lua_rawget(L, 2);
    return lua_type(L, -1);
}

static const char *const mgl_jwt_names[] = {"key", "alg",         "algs",   "aud", "iss",
                                            "now", "require_exp", "leeway", NULL};

/* A misspelt option (say `audience`) would silently check nothing. */
static void mgl_jwt_check_names(lua_State *L)
{
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int known = 0;
        for (int i = 0; k && mgl_jwt_names[i] && !known; i++)
            known = strcmp(k, mgl_jwt_names[i]) == 0;
        if (!known)
            luaL_error(L, "gw.jwt.verify: unknown option %s", k ? k : "(not a string)");
    }
}

/* opts[name]: absent (0), a string (1) or a list of 1..MGL_JWT_LIST
 * strings, pushed and left on the stack with pointers to them in out. */
static size_t mgl_jwt_strings(lua_State *L, const char *name, jwt_str *out)
{
    int t = mgl_jwt_get(L, name);
    if (t == LUA_TNIL)
        return 0;
    if (t == LUA_TSTRING) {
        out[0].s = lua_tolstring(L, -1, &out[0].len);
        return 1;
    }
    size_t n = t == LUA_TTABLE ? lua_objlen(L, -1) : 0;
    if (n < 1 || n > MGL_JWT_LIST)
        luaL_error(L, "gw.jwt.verify: opts.%s must be a string or a list of 1 to %d strings", name,
                   MGL_JWT_LIST);
    int list = lua_gettop(L);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, list, (int)i + 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "gw.jwt.verify: opts.%s[%d] must be a string", name, (int)i + 1);
        out[i].s = lua_tolstring(L, -1, &out[i].len);
    }
    return n;
}

/* opts.alg or opts.algs (one of them, required) as JWT_* bits. */
static unsigned mgl_jwt_algs(lua_State *L)
{
    int has_alg = mgl_jwt_get(L, "alg") != LUA_TNIL;
    int has_algs = mgl_jwt_get(L, "algs") != LUA_TNIL;
    lua_pop(L, 2);
    if (has_alg == has_algs)
        luaL_error(L, "gw.jwt.verify: give the allowed algorithms in opts.alg or opts.algs "
                      "(exactly one of them)");
    jwt_str names[MGL_JWT_LIST];
    size_t n = mgl_jwt_strings(L, has_alg ? "alg" : "algs", names);
    unsigned algs = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned bit = jwt_alg_parse(names[i].s, names[i].len);
        if (!bit)
            luaL_error(L,
                       "gw.jwt.verify: unknown algorithm '%s' (HS256, HS384, HS512, RS256 "
                       "or ES256; none is never allowed)",
                       names[i].s);
        algs |= bit;
    }
    return algs;
}

/* The parsed key of the PEM text at kidx, from the state's cache or
 * parsed now; its userdata is left on the stack. */
static const jwt_pubkey *mgl_jwt_pubkey(lua_State *L, int kidx)
{
    lua_pushvalue(L, kidx);
    lua_rawget(L, lua_upvalueindex(3));
    mgl_jwt_key *k = mgl_api_tohandle(L, -1, mgl_jwt_key_tag, sizeof(*k));
    if (k && k->key)
        return k->key;
    lua_pop(L, 1);
    k = lua_newuserdata(L, sizeof(*k));
    k->tag = mgl_jwt_key_tag;
    k->key = NULL;
    luaL_getmetatable(L, MGL_JWT_KEY_MT);
    lua_setmetatable(L, -2);
    size_t len;
    const char *pem = lua_tolstring(L, kidx, &len), *err = "not a key";
    k->key = jwt_pubkey_parse(pem, len, &err);
    if (!k->key)
        luaL_error(L, "gw.jwt.verify: opts.key: %s", err);
    lua_Integer cached = lua_tointeger(L, lua_upvalueindex(4));
    if (cached < MGL_JWT_KEYS) {
        lua_pushvalue(L, kidx);
        lua_pushvalue(L, -2);
        lua_rawset(L, lua_upvalueindex(3));
        lua_pushinteger(L, cached + 1);
        lua_replace(L, lua_upvalueindex(4));
    }
    return k->key;
}

static double mgl_jwt_number(lua_State *L, const char *name, double dflt)
{
    int t = mgl_jwt_get(L, name);
    if (t != LUA_TNIL && t != LUA_TNUMBER)
        luaL_error(L, "gw.jwt.verify: opts.%s must be a number", name);
    double v = t == LUA_TNUMBER ? lua_tonumber(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

/* Everything but the strings' lifetime is checked by jwt_opts_check. */
static void mgl_jwt_opts(lua_State *L, jwt_opts *o, jwt_str *aud, jwt_str *iss)
{
    lua_checkstack(L, 2 * MGL_JWT_LIST + 16);
    mgl_jwt_check_names(L);
    memset(o, 0, sizeof(*o));
    o->algs = mgl_jwt_algs(L);
    if (mgl_jwt_get(L, "key") != LUA_TSTRING)
        luaL_error(L, "gw.jwt.verify: opts.key must be a string (the HMAC secret or a PEM "
                      "public key)");
    if (o->algs & JWT_HMAC_ALGS)
        o->secret = (const unsigned char *)lua_tolstring(L, -1, &o->secret_len);
    else
        o->pubkey = mgl_jwt_pubkey(L, lua_gettop(L));
    o->aud = aud;
    o->naud = mgl_jwt_strings(L, "aud", aud);
    o->iss = iss;
    o->niss = mgl_jwt_strings(L, "iss", iss);
    o->leeway = mgl_jwt_number(L, "leeway", 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    o->now = mgl_jwt_number(L, "now", (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    int t = mgl_jwt_get(L, "require_exp");
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        luaL_error(L, "gw.jwt.verify: opts.require_exp must be a boolean");
    o->require_exp = lua_toboolean(L, -1);
    lua_pop(L, 1);
    const char *bad = jwt_opts_check(o);
    if (bad)
        luaL_error(L, "gw.jwt.verify: %s", bad);
}

/* gw.jwt.verify(token, opts) -> claims | nil, reason */
static int mgl_jwt_verify(lua_State *L)
{
    size_t len;
    const char *token = luaL_checklstring(L, 1, &len);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isfunction(L, lua_upvalueindex(2)))
        return luaL_error(L, "gw.jwt.verify: gw.json is unavailable (lua-cjson)");
    jwt_opts o;
    jwt_str aud[MGL_JWT_LIST], iss[MGL_JWT_LIST];
    mgl_jwt_opts(L, &o, aud, iss);
    if (len > JWT_MAX_TOKEN)
        return mgl_api_fail(L, jwt_status_str(JWT_TOO_LARGE));
    size_t wlen = jwt_work_size(len);
    void *work = lua_newuserdata(L, wlen);
    jwt_result r;
    jwt_status st = jwt_verify(token, len, &o, work, wlen, &r);
    if (st != JWT_OK)
        return mgl_api_fail(L, jwt_status_str(st));
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushlstring(L, r.payload, r.payload_len);
    lua_call(L, 1, 1); /* checked JSON already: raises only when out of memory */
    return 1;
}

void mgl_jwt_open(mg_script *s)
{
    lua_State *L = s->L;
    luaL_newmetatable(L, MGL_JWT_KEY_MT);
    lua_pushcfunction(L, mgl_jwt_key_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, MGL_JWT_KEY_MT);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);

    lua_newtable(L); /* gw.jwt, beside gw at -2 */
    lua_pushlightuserdata(L, s);
    lua_getfield(L, -3, "json");
    if (lua_istable(L, -1))
        lua_getfield(L, -1, "decode");
    else
        lua_pushnil(L);
    lua_remove(L, -2);
    lua_newtable(L);       /* PEM text -> parsed key */
    lua_pushinteger(L, 0); /* keys in it */
    lua_pushcclosure(L, mgl_jwt_verify, 4);
    lua_setfield(L, -2, "verify");
    lua_setfield(L, -2, "jwt");
}
