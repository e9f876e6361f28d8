"""A careless script cannot crash or hang the gateway: errors raised by
__gc finalizers outside any hook, timers made while a state closes, xpcall
handlers that loop, recursion that would overflow the C stack, a registry
rewritten through the debug library, handles of the wrong kind, files that
are not regular files; SIGTERM works even when a hook is stuck for good;
on_reload runs with the new config in force; lua.sandbox takes the
dangerous libraries away."""

import os
import signal
import time

import pytest

from conftest import NEEDS_ABORT, lua, metric_sum, run_cli

ECHO_TAIL = """
function on_message(conn, data, kind)
  if handle then
    local r = handle(conn, data)
    if r ~= nil then conn:send(tostring(r)) return end
  end
  conn:send(data, kind)
end
"""


def test_gc_errors_while_arguments_are_pushed(gateway, raw):
    """Objects whose __gc raises are made by a timer, and on_message
    allocates nothing itself: the collector then runs their finalizers
    while the gateway pushes each message string for on_message, outside
    any protected call (LuaJIT exits the process there).  Every error is
    logged and counted, every message still reaches on_message, and the
    gateway keeps serving."""
    g = gateway("""
        gw.every(2, function()
          for i = 1, 100 do
            local p = newproxy(true)
            getmetatable(p).__gc = function() error("boom from __gc") end
          end
        end)
        function on_message(conn, data, kind) conn:send(data, kind) end
        """, admin=True)
    c = raw(g.port)
    payload = "x" * 2000
    n = 3000
    for i in range(n):
        c.send_text("%d %s" % (i, payload))
        assert c.recv_text() == "%d %s" % (i, payload)
    g.wait_log(r"lua error in a __gc finalizer: .*boom from __gc", 10)
    assert metric_sum(g.metrics(), "moongate_lua_errors_total") > 0
    assert g.alive()


def test_timer_made_by_a_finalizer_while_the_state_closes(gateway, raw):
    """A finalizer that calls gw.after while a reload closes the old state
    gets an error instead of a timer that would outlive its state (a
    use-after-free under ASan, SIGSEGV in release)."""
    g = gateway("""
        keep = newproxy(true)
        getmetatable(keep).__gc = function()
          local t, err = gw.after(20, function() gw.log.info("LATE TIMER") end)
          gw.log.info("GC after -> " .. tostring(t) .. " " .. tostring(err))
          local t2, err2 = gw.every(20, function() gw.log.info("LATE TIMER") end)
          gw.log.info("GC every -> " .. tostring(t2) .. " " .. tostring(err2))
        end
        function on_message(conn, data, kind) conn:send(data, kind) end
        """)
    since = g.mark()
    assert g.reload()[0] == "ok"
    g.wait_log(r"GC after -> nil script generation closing", 5, since)
    g.wait_log(r"GC every -> nil script generation closing", 5, since)
    c = raw(g.port)
    c.send_text("still here")
    assert c.recv_text() == "still here"
    assert g.reload()[0] == "ok"   # and the new state's finalizer once more
    c.send_text("again")
    assert c.recv_text() == "again"
    assert not g.find_logs(r"LATE TIMER", since)


XPCALL = """
function on_message(conn, data, kind)
  if data == "loop-both" then
    xpcall(function() while true do end end, function() while true do end end)
  elseif data == "handled" then
    local ok, msg = xpcall(function() error("plain", 0) end,
                           function(e) return "handled: " .. e end)
    conn:send(tostring(ok) .. " " .. msg)
    return
  elseif data == "args" then
    local ok, a, b = xpcall(function(x, y) return x + y, x * y end, print, 3, 4)
    conn:send(tostring(ok) .. " " .. a .. " " .. b)
    return
  end
  conn:send(data, kind)
end
"""


@NEEDS_ABORT
def test_xpcall_handler_that_loops_is_aborted_with_the_call(gateway, raw):
    """xpcall(loop, loop): the budget's error must not land in the looping
    message handler (which LuaJIT runs where no hook fires): the whole call
    is aborted, the gateway serves the next message, and SIGTERM drains."""
    g = gateway(XPCALL, {"lua": {"hook_budget": "100ms"}})
    since = g.mark()
    c = raw(g.port)
    c.send_text("loop-both")
    g.wait_log(r"on_message aborted: hook exceeded its budget of 100 ms", 5, since)
    c.send_text("next")
    assert c.recv_text(5) == "next"
    c.send_text("handled")
    assert c.recv_text(5) == "false handled: plain"
    c.send_text("args")
    assert c.recv_text(5) == "true 7 12"
    t0 = time.monotonic()
    assert g.stop(10) == 0
    assert time.monotonic() - t0 < 5


def test_sigterm_ends_a_gateway_stuck_in_a_finalizer(gateway, raw):
    """A __gc finalizer that loops forever cannot be aborted (LuaJIT runs
    no hook in a finalizer): the watchdog says so, and SIGTERM, which the
    stuck loop can never read, still ends the process at once."""
    g = gateway("""
        function on_message(conn, data, kind)
          if data == "stuck" then
            local p = newproxy(true)
            getmetatable(p).__gc = function() while true do end end
            p = nil
            collectgarbage()
          end
          conn:send(data, kind)
        end
        """, {"lua": {"hook_budget": "100ms"}})
    since = g.mark()
    c = raw(g.port)
    c.send_text("stuck")
    g.wait_log(r"a Lua hook cannot be aborted .*SIGTERM or SIGINT ends the process", 10, since)
    g.send_signal(signal.SIGTERM)
    assert g.wait_exit(5) == 1
    assert g.find_logs(r"exiting without draining", since)


DEEP = """
local function gsub_deep(s) return (s:gsub(".", gsub_deep)) end
local function co_deep() return coroutine.wrap(co_deep)() end
local function co_resume_deep()
  local co = coroutine.create(co_resume_deep)
  local ok, err = coroutine.resume(co)
  if not ok then error(err, 0) end
end
local function sort_deep(a, b) table.sort({3, 2, 1}, sort_deep) return a < b end
local loud = setmetatable({}, {__tostring = function(t) gw.log.info(t) return "x" end})
local cases = {
  gsub = function() gsub_deep("ab") end,
  coroutine = co_deep,
  resume = co_resume_deep,
  sort = function() table.sort({3, 2, 1}, sort_deep) end,
  log = function() gw.log.info(loud) end,
  format = function()
    local o
    o = setmetatable({}, {__tostring = function() return string.format("%s", o) end})
    return tostring(o)
  end,
}
function on_message(conn, data, kind)
  local f = cases[data]
  if f then
    local ok, err = pcall(f)
    conn:send(data .. " " .. tostring(ok) .. " " .. tostring(err):sub(1, 120))
    return
  end
  conn:send(data, kind)
end
"""


@pytest.mark.parametrize("case", ["gsub", "coroutine", "resume", "sort", "log", "format"])
def test_recursion_through_c_is_a_lua_error(gateway, raw, case):
    """Recursion that goes through C functions (gsub, table.sort, __tostring
    of a logged value, string.format) or nests coroutines ends in a Lua
    error the hook can catch, not SIGSEGV; the connection and the gateway
    go on."""
    g = gateway(DEEP, {"lua": {"hook_budget": "20s"}})
    c = raw(g.port)
    c.send_text(case)
    reply = c.recv_text(60)
    assert reply.startswith(case + " false "), reply
    assert "overflow" in reply, reply
    c.send_text("after")
    assert c.recv_text(10) == "after"
    assert g.alive()


def test_registry_rewritten_through_debug(gateway, raw):
    """The cached conn handles live in the registry, which debug.getregistry
    lets a script rewrite: swapped or replaced entries must neither crash
    the gateway (a NULL write at disconnect, a freed connection reached
    through a stale pointer) nor send to the wrong connection."""
    g = gateway("""
        local first
        function on_connect(conn)
          local reg = debug.getregistry()
          local mine
          for k, v in pairs(reg) do if rawequal(v, conn) then mine = k end end
          if not first then first = mine return end
          reg[first], reg[mine] = reg[mine], reg[first]   -- swap two handles
        end
        function on_message(conn, data, kind)
          if data == "spoil" then
            local reg = debug.getregistry()
            for k, v in pairs(reg) do if rawequal(v, conn) then reg[k] = "garbage" end end
          end
          conn:send(conn.id .. ":" .. data)
        end
        """)
    a = raw(g.port)
    b = raw(g.port)
    for i in range(3):
        a.send_text("a%d" % i)
        b.send_text("b%d" % i)
        ra, rb = a.recv_text(), b.recv_text()
        assert ra.endswith(":a%d" % i) and rb.endswith(":b%d" % i), (ra, rb)
        assert ra.split(":")[0] != rb.split(":")[0], (ra, rb)
    a.send_text("spoil")
    assert a.recv_text().endswith(":spoil")
    a.send_text("after")
    assert a.recv_text().endswith(":after")
    a.close()
    b.send_text("still")
    assert b.recv_text().endswith(":still")
    b.close()
    c = raw(g.port)
    c.send_text("new")
    assert c.recv_text().endswith(":new")
    assert g.alive()


def test_handles_are_checked_by_kind(gateway, raw):
    """gw.send, gw.broadcast's except, msg:assign and gw.broker.unsettled
    take a conn handle and nothing else that happens to have an id: a timer
    handle (or any other userdata) is an argument error."""
    g = gateway("""
        function on_message(conn, data, kind)
          local t = gw.after(60000, function() end)
          local ok, err = pcall(gw.send, t, "x")
          local ok2, err2 = pcall(gw.broadcast, "x", newproxy())
          t:cancel()
          local ok3 = gw.send(conn, "via handle")
          conn:send(tostring(ok) .. "|" .. tostring(err) .. "|" .. tostring(ok2) .. "|" ..
                    tostring(err2) .. "|" .. tostring(ok3))
        end
        """)
    c = raw(g.port)
    c.send_text("go")
    assert c.recv_text() == "via handle"
    ok, err, ok2, err2, ok3 = c.recv_text().split("|")
    assert ok == "false" and "moongate.conn expected" in err, err
    assert ok2 == "false" and "moongate.conn expected" in err2, err2
    assert ok3 == "true"


@NEEDS_ABORT
def test_on_reload_runs_under_the_new_config(gateway, raw):
    """on_reload runs with the new config already enforced by the C side
    (here: its hook budget), and if it fails the old config is back."""
    g = gateway(lua("""
        function on_message(conn, data, kind)
          if data:sub(1, 5) == "busy:" then
            local t = os.clock()
            while os.clock() - t < tonumber(data:sub(6)) / 1000 do end
          end
          conn:send(data, kind)
        end
        """), {"lua": {"hook_budget": "5s"}})
    g.write_script(lua("""
        function on_reload()
          local t = os.clock()
          while os.clock() - t < 1.5 do end   -- over the new budget, within the old
        end
        function on_message(conn, data, kind) conn:send("new " .. data) end
        """))
    g.update_config({"lua": {"hook_budget": "100ms"}})
    status, why = g.reload()
    assert status == "failed" and "on_reload aborted" in why, (status, why)
    c = raw(g.port)
    c.send_text("busy:400")          # the old 5 s budget is back
    assert c.recv_text(10) == "busy:400"


def test_sandbox_takes_dangerous_libraries_away(gateway, raw):
    g = gateway(r"""
        local function has(x) return x ~= nil end
        function on_message(conn, data, kind)
          local r = {}
          r[#r + 1] = "debug=" .. tostring(has(debug))
          r[#r + 1] = "io=" .. tostring(has(io))
          r[#r + 1] = "jit=" .. tostring(has(jit))
          r[#r + 1] = "exit=" .. tostring(has(os.exit))
          r[#r + 1] = "execute=" .. tostring(has(os.execute))
          r[#r + 1] = "getenv=" .. tostring(has(os.getenv))
          r[#r + 1] = "time=" .. tostring(type(os.time()) == "number")
          r[#r + 1] = "loadfile=" .. tostring(has(loadfile))
          r[#r + 1] = "dofile=" .. tostring(has(dofile))
          r[#r + 1] = "newproxy=" .. tostring(has(newproxy))
          r[#r + 1] = "loadlib=" .. tostring(has(package.loadlib))
          r[#r + 1] = "ffi=" .. tostring((pcall(require, "ffi")))
          r[#r + 1] = "jitutil=" .. tostring((pcall(require, "jit.util")))
          local f, err = load(string.dump(function() return 1 end))
          r[#r + 1] = "bytecode=" .. tostring(f ~= nil)
          r[#r + 1] = "source=" .. tostring(load("return 41 + 1")())
          r[#r + 1] = "loadstring=" .. tostring(loadstring("return 2")())
          r[#r + 1] = "json=" .. gw.json.encode({1})
          r[#r + 1] = "flag=" .. tostring(gw.config.lua.sandbox)
          conn:send(table.concat(r, " "))
        end
        """, {"lua": {"sandbox": True}})
    c = raw(g.port)
    c.send_text("go")
    got = dict(kv.split("=", 1) for kv in c.recv_text().split(" "))
    assert got == {"debug": "false", "io": "false", "jit": "false", "exit": "false",
                   "execute": "false", "getenv": "false", "time": "true", "loadfile": "false",
                   "dofile": "false", "newproxy": "false", "loadlib": "false", "ffi": "false", "jitutil": "false",
                   "bytecode": "false", "source": "42", "loadstring": "2", "json": "[1]",
                   "flag": "true"}, got


def test_without_sandbox_the_libraries_are_there(gateway, raw):
    g = gateway("""
        function on_message(conn, data, kind)
          conn:send(tostring(debug ~= nil) .. " " .. tostring(io ~= nil) .. " " ..
                    tostring(os.exit ~= nil) .. " " .. tostring(gw.config.lua.sandbox))
        end
        """)
    c = raw(g.port)
    c.send_text("go")
    assert c.recv_text() == "true true true false"


def test_fifo_files_are_refused_not_opened(gateway, raw, tmp_path):
    """A FIFO where a Lua file is expected (a module on lua.path, a file
    for loadfile or dofile) is refused at once: opening it would block the
    event loop until a writer came."""
    mods = tmp_path / "mods"
    mods.mkdir()
    os.mkfifo(mods / "piped.lua")
    (mods / "plain.lua").write_text("return {answer = 42}\n")
    g = gateway("""
        function on_message(conn, data, kind)
          local ok, err = pcall(require, "piped")
          local f, ferr = loadfile(package.path:match("^([^;]*)"):gsub("%?", "piped"))
          local dok, derr = pcall(dofile, (package.path:match("^([^;]*)"):gsub("%?", "piped")))
          conn:send(tostring(ok) .. "|" .. tostring(err):gsub("%s+", " ") .. "|" ..
                    tostring(f) .. "|" .. tostring(ferr) .. "|" .. tostring(dok) .. "|" ..
                    tostring(require("plain").answer))
        end
        """, {"lua": {"path": str(mods / "?.lua")}})
    c = raw(g.port)
    c.send_text("go")
    ok, err, f, ferr, dok, answer = c.recv_text(5).split("|")
    assert ok == "false" and "not a regular file" in err, err
    assert f == "nil" and "not a regular file" in ferr, ferr
    assert dok == "false" and answer == "42"


def test_fifo_as_config_or_script_is_refused(tmp_path):
    fifo = tmp_path / "conf.yaml"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    r = run_cli(["-t", "-c", str(fifo)], timeout=10)
    assert r.returncode == 1 and "not a regular file" in r.stderr, r.stderr
    script = tmp_path / "app.lua"
    os.mkfifo(script)
    (tmp_path / "ok.yaml").write_text("listen:\n  - port: 18080\nscript: app.lua\n")
    r = run_cli(["-t", "-c", str(tmp_path / "ok.yaml")], timeout=10)
    assert r.returncode == 1 and "not a regular file" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 5
