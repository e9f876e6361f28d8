/* mgl_stdlib.c — Lua's standard libraries as moongate's scripts see them.
 *
 * The libraries LuaJIT opens, with the ways they had to hang or crash the
 * gateway taken away:
 *  - Files are loaded only when they are regular files: the main script,
 *    loadfile, dofile and require's Lua searcher open them without
 *    blocking and refuse anything else (a FIFO or a device would block the
 *    event loop in open() forever).
 *  - xpcall: while the hook budget aborts the call (budget.h), a message
 *    handler is not run.  LuaJIT runs a handler inside the hook that raised
 *    the error, where no hook fires, so a handler that loops could never
 *    be stopped and the whole gateway hung with it.
 *  - coroutine.resume and coroutine.wrap refuse to nest more than
 *    STDLIB_CO_DEPTH deep, or once less than CSTACK_RESERVE of C stack is
 *    left (cstack.h): every coroutine has a Lua stack of its own, so
 *    nothing else bounds their nesting (LuaJIT sets no limit of its own
 *    and crashed once the C stack ran out; Lua 5.1 itself stops at 200).
 *  - The JIT stays off: jit.on() raises (hook budgets depend on it).
 *  - With lua.sandbox: no debug, io, ffi or jit libraries, no loadfile or
 *    dofile, no C modules (package.loadlib, the C searchers), os reduced to
 *    time, clock, date and difftime, load and loadstring take source text
 *    only (LuaJIT bytecode is not verified: a crafted chunk can read and
 *    write any memory), and no newproxy (the only way Lua 5.1 code makes a
 *    __gc finalizer, which the hook budget cannot interrupt).
 *
 * Opened inside a protected call while a state is built (script.c). */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "budget.h"
#include "cstack.h"
#include "mgl_api.h"

/* ---- loading files ---- */

typedef struct stdlib_reader {
    int fd;
    char buf[16384];
} stdlib_reader;

static const char *stdlib_read(lua_State *L, void *ud, size_t *size)
{
    (void)L;
    stdlib_reader *r = ud;
    ssize_t n;
    do
        n = read(r->fd, r->buf, sizeof(r->buf));
    while (n < 0 && errno == EINTR);
    *size = n > 0 ? (size_t)n : 0;
    return n > 0 ? r->buf : NULL;
}

int mgl_stdlib_loadfile(lua_State *L, const char *path, const char *mode)
{
    /* O_NONBLOCK: opening a FIFO with no writer would block. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        lua_pushfstring(L, "cannot open %s: %s", path, strerror(errno));
        return LUA_ERRFILE;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        lua_pushfstring(L, "cannot load %s: not a regular file", path);
        return LUA_ERRFILE;
    }
    stdlib_reader *r = lua_newuserdata(L, sizeof(*r)); /* freed by the collector */
    r->fd = fd;
    lua_pushfstring(L, "@%s", path);
    int rc = lua_loadx(L, stdlib_read, r, lua_tostring(L, -1), mode);
    close(fd);
    lua_replace(L, -3); /* the chunk or the message, where the reader was */
    lua_pop(L, 1);      /* the chunk name */
    return rc;
}

/* The mode files and strings load in: text only in the sandbox. */
static const char *stdlib_mode(lua_State *L)
{
    return lua_toboolean(L, lua_upvalueindex(2)) ? "t" : "bt";
}

/* loadfile(path[, mode[, env]]) */
static int stdlib_loadfile_cf(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *mode = luaL_optstring(L, 2, "bt");
    if (strcmp(stdlib_mode(L), "t") == 0)
        mode = "t";
    int env = !lua_isnoneornil(L, 3);
    if (mgl_stdlib_loadfile(L, path, mode) != 0) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    if (env) {
        lua_pushvalue(L, 3);
        lua_setfenv(L, -2);
    }
    return 1;
}

/* package.loaders[2]: a module's Lua file, found along package.path. */
static int stdlib_searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_getfield(L, lua_upvalueindex(1), "path");
    const char *path = lua_tostring(L, -1);
    if (!path)
        return luaL_error(L, "package.path must be a string");
    const char *file_name = luaL_gsub(L, name, ".", LUA_DIRSEP);
    luaL_Buffer tried;
    luaL_buffinit(L, &tried);
    for (const char *p = path; *p;) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len) {
            lua_pushlstring(L, p, len);
            const char *file = luaL_gsub(L, lua_tostring(L, -1), LUA_PATH_MARK, file_name);
            int rc = mgl_stdlib_loadfile(L, file, stdlib_mode(L));
            if (rc == 0)
                return 1;
            if (rc != LUA_ERRFILE || access(file, F_OK) == 0)
                return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, file,
                                  lua_tostring(L, -1));
            lua_pop(L, 1);
            lua_pushfstring(L, "\n\tno file '%s'", file);
            lua_remove(L, -2); /* the file name */
            lua_remove(L, -2); /* the template */
            luaL_addvalue(&tried);
        }
        p += len + (end != NULL);
    }
    luaL_pushresult(&tried);
    return 1;
}

/* ---- budget and stack guards ---- */

/* The call is being aborted for its budget: xpcall handlers stand aside. */
static int stdlib_aborting(lua_State *L)
{
    lua_pushboolean(L, budget_aborting());
    return 1;
}

/* Coroutines resumed inside one another, at most. */
#define STDLIB_CO_DEPTH 1000

/* Before a resume: may one more coroutine nest?  (Counted per hook call:
 * script.c zeroes it when a call starts, so a count an abort left
 * unbalanced does not outlive the call.) */
static int stdlib_co_enter(lua_State *L)
{
    mg_script *s = mgl_api_script(L);
    int ok = s->co_depth < STDLIB_CO_DEPTH && cstack_room() > CSTACK_RESERVE;
    s->co_depth += ok;
    lua_pushboolean(L, ok);
    return 1;
}

/* After it: one level less; returns its arguments (resume's results). */
static int stdlib_co_leave(lua_State *L)
{
    mg_script *s = mgl_api_script(L);
    if (s->co_depth > 0)
        s->co_depth--;
    return lua_gettop(L);
}

static int stdlib_jit_refused(lua_State *L)
{
    return luaL_error(L, "the JIT stays off in moongate scripts (hook budgets depend on it)");
}

/* What is written in Lua: wrappers around functions of the libraries.
 * Its arguments: aborting, co_enter, co_leave, loadfile. */
static const char stdlib_prelude[] =
    "local aborting, co_enter, co_leave, safe_loadfile = ...\n"
    "local raw_xpcall, error = xpcall, error\n"
    "xpcall = function(f, handler, ...)\n"
    "  return raw_xpcall(f, function(e)\n"
    "    if aborting() then return e end\n"
    "    return handler(e)\n"
    "  end, ...)\n"
    "end\n"
    "local co_create, co_resume = coroutine.create, coroutine.resume\n"
    "local DEEP = 'C stack overflow (coroutines nested too deeply)'\n"
    "coroutine.resume = function(co, ...)\n"
    "  if not co_enter() then error(DEEP, 2) end\n"
    "  return co_leave(co_resume(co, ...))\n"
    "end\n"
    "local function wrapped(ok, ...)\n"
    "  if ok then return ... end\n"
    "  error((...), 2)\n"
    "end\n"
    "coroutine.wrap = function(f)\n"
    "  local co = co_create(f)\n"
    "  return function(...)\n"
    "    if not co_enter() then error(DEEP, 2) end\n"
    "    return wrapped(co_leave(co_resume(co, ...)))\n"
    "  end\n"
    "end\n"
    "loadfile = safe_loadfile\n"
    "dofile = function(path)\n"
    "  if path == nil then error('dofile: reading standard input is not supported', 2) end\n"
    "  local f, err = safe_loadfile(path)\n"
    "  if not f then error(err, 2) end\n"
    "  return f()\n"
    "end\n";

/* lua.sandbox, applied last (gw.json has loaded cjson by then). */
static const char stdlib_sandbox[] =
    "local raw_load = load\n"
    "load = function(chunk, name, mode, env)\n"
    "  return raw_load(chunk, name, 't', env)\n"
    "end\n"
    "loadstring = function(s, name)\n"
    "  return raw_load(s, name, 't')\n"
    "end\n"
    "local os_ = {time = os.time, clock = os.clock, date = os.date, difftime = os.difftime}\n"
    "os, io, debug, jit, loadfile, dofile, newproxy = os_, nil, nil, nil, nil, nil, nil\n"
    "local loaded, preload = package.loaded, package.preload\n"
    "loaded.os = os_\n"
    "for _, m in ipairs({'io', 'debug', 'ffi', 'jit', 'jit.util', 'jit.opt', 'jit.profile'}) do\n"
    "  loaded[m], preload[m] = nil, nil\n"
    "end\n"
    "package.loadlib, package.cpath = nil, ''\n"
    "package.loaders[3], package.loaders[4] = nil, nil\n";

/* package.path and package.cpath, with lua.path and lua.cpath first. */
static void stdlib_paths(lua_State *L, const mg_config *cfg)
{
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

/* require's Lua searcher, and loadfile (for the prelude), with the
 * package table and the sandbox flag as upvalues. */
static void stdlib_loaders(lua_State *L, int sandbox)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaders");
    lua_pushvalue(L, -2);
    lua_pushboolean(L, sandbox);
    lua_pushcclosure(L, stdlib_searcher, 2);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 1);
    lua_pushboolean(L, sandbox);
    lua_pushcclosure(L, stdlib_loadfile_cf, 2); /* takes the package table too */
}

void mgl_stdlib_open(mg_script *s, const mg_config *cfg)
{
    lua_State *L = s->L;
    luaL_openlibs(L);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_getglobal(L, "jit");
    if (lua_istable(L, -1)) {
        lua_pushcfunction(L, stdlib_jit_refused);
        lua_setfield(L, -2, "on");
    }
    lua_pop(L, 1);
    stdlib_paths(L, cfg);

    if (luaL_loadbuffer(L, stdlib_prelude, sizeof(stdlib_prelude) - 1, "=moongate stdlib"))
        lua_error(L);
    lua_pushcfunction(L, stdlib_aborting);
    lua_pushlightuserdata(L, s);
    lua_pushcclosure(L, stdlib_co_enter, 1);
    lua_pushlightuserdata(L, s);
    lua_pushcclosure(L, stdlib_co_leave, 1);
    stdlib_loaders(L, cfg->lua_sandbox);
    lua_call(L, 4, 0);
}

void mgl_stdlib_seal(mg_script *s)
{
    lua_State *L = s->L;
    if (!s->sandbox)
        return;
    if (luaL_loadbuffer(L, stdlib_sandbox, sizeof(stdlib_sandbox) - 1, "=moongate sandbox"))
        lua_error(L);
    lua_call(L, 0, 0);
}
