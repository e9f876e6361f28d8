"""The conn handle at its edges: method and field lookup, type checks,
message kinds, a handle kept after its connection closed, and handles taken
while a reload loads the new generation (which the gateway does not cache).

A client sends "cmd args" and gets a JSON object back; anything else it
receives is not JSON.
"""

import json
import time

import pytest

from conftest import RawWS

SCRIPT = r"""
local json = gw.json
local null = json.null

local function nn(v) if v == nil then return null end return v end
local function reply(conn, t) conn:send(json.encode(t)) end
local function try(f, ...)
  local ok, a, b = pcall(f, ...)
  return {threw = not ok, a = nn(a), b = nn(b)}
end
local function fields(c)
  return {id = nn(c.id), path = nn(c.path), query = nn(c.query), remote = nn(c.remote),
          name = nn(c.name)}
end

kept = kept or {}   -- id -> handle, kept by the script
loaded = {}         -- id -> handle taken by on_reload, while this generation loaded

function on_reload()
  for _, c in ipairs(gw.clients()) do loaded[c.id] = c end
end

function on_disconnect(conn)
  gw.store["disc:" .. conn.id] = json.encode(fields(conn))
end

local H = {}

H.lookup = function(conn)
  local name_before = nn(conn.name)
  conn:set_name("n" .. conn.id)
  local send = conn.send
  reply(conn, {
    name_before = name_before, name_after = conn.name, fields = fields(conn),
    send = type(conn.send), set_name = type(conn.set_name), is_open = type(conn.is_open),
    same_method = rawequal(send, conn.send),
    foo = nn(conn.foo), one = nn(conn[1]), yes = nn(conn[true]),
    tostring = tostring(conn), mt = getmetatable(conn),
    eq = conn == gw.get(conn.id), raw = rawequal(conn, gw.get(conn.id)),
  })
end

H.types = function(conn)
  local t = gw.after(100000, function() end)
  local r = {
    number = try(conn.send, 42, "x"),
    none = try(conn.send),
    table = try(conn.send, {}, "x"),
    timer = try(conn.send, t, "x"),
    file = try(conn.send, io.stdout, "x"),
    proxy = try(conn.send, newproxy(true), "x"),
    light = try(conn.send, null, "x"),
    field = try(conn.get, "not a conn", "k"),
    getmt = try(getmetatable, conn),
    eq_other = try(function() return conn == t end),
  }
  t:cancel()
  reply(conn, r)
end

H.kinds = function(conn)
  local dyn = ("bin"):rep(1) .. "ary"
  conn:send("k1", "text")
  conn:send("k2", "binary")
  conn:send("k3", dyn)
  conn:send("k4")
  conn:send("k5", nil)
  gw.send(conn.id, "k6", "binary")
  gw.send(conn, "k7")
  reply(conn, {bad = try(conn.send, conn, "x", "bogus"), num = try(conn.send, conn, "x", 1),
               tbl = try(conn.send, conn, "x", {})})
end

H.keep = function(conn) kept[conn.id] = conn; reply(conn, {id = conn.id}) end

-- Everything about the handle of connection id, as kept or loaded.
H.probe = function(conn, a)
  local where, id = a:match("^(%S+) (%d+)$")
  local h = (where == "kept" and kept or loaded)[tonumber(id)]
  if not h then reply(conn, {missing = true}) return end
  reply(conn, {
    fields = fields(h), tostring = tostring(h), self_eq = h == h,
    is_open = h:is_open(), header = nn(h:header("host")), get = nn(h:get("k")),
    send = try(h.send, h, "from " .. conn.id),
    set = try(h.set, h, "k", "v"),
    eq_live = gw.get(h.id) ~= nil and h == gw.get(h.id) or null,
  })
end

H.disc = function(conn, id) reply(conn, {v = nn(gw.store["disc:" .. id])}) end

function on_message(conn, data, kind)
  local cmd, rest = data:match("^(%S+)%s?(.*)$")
  local h = cmd and H[cmd]
  if not h then reply(conn, {err = "unknown command", data = data}) return end
  h(conn, rest)
end
"""


def reply(ws, timeout=5):
    """The next JSON message; others are skipped (returned in a list too)."""
    skipped = []
    deadline = time.monotonic() + timeout
    for _ in range(1000):
        kind, data = ws.recv_message(max(0.01, deadline - time.monotonic()))
        if kind == "text" and data.startswith("{"):
            return json.loads(data), skipped
        skipped.append((kind, data))
    raise AssertionError("no reply")


def cmd(ws, text):
    ws.send_text(text)
    return reply(ws)[0]


def close(ws):
    ws.send_close(1000, "")
    try:
        ws.wait_close(5, reply=False)
    except (EOFError, ConnectionError):
        pass
    ws.close()


def wait_disc(gw, ws, cid):
    deadline = time.monotonic() + 5
    for _ in range(500):
        v = cmd(ws, "disc %d" % cid)["v"]
        if v is not None:
            return json.loads(v)
        assert time.monotonic() < deadline, "no on_disconnect for %d" % cid
        time.sleep(0.01)
    raise AssertionError("no on_disconnect")


@pytest.fixture
def gw(gateway):
    return gateway(SCRIPT)


def test_methods_first_then_fields(gw, raw):
    c = raw(gw.port, "/?x=1")
    r = cmd(c, "lookup")
    cid = r["fields"]["id"]
    assert r["name_before"] is None and r["name_after"] == "n%d" % cid
    assert r["fields"] == {"id": cid, "path": "/", "query": "x=1", "remote": "127.0.0.1",
                           "name": "n%d" % cid}
    assert (r["send"], r["set_name"], r["is_open"]) == ("function", "function", "function")
    assert r["same_method"] is True
    assert r["foo"] is None and r["one"] is None and r["yes"] is None
    assert r["tostring"] == "conn %d" % cid
    assert r["mt"] == "moongate.conn"
    assert r["eq"] is True and r["raw"] is True  # one cached handle per connection


def test_type_checks(gw, raw):
    c = raw(gw.port)
    r = cmd(c, "types")
    for k, got in (("number", "number"), ("none", "no value"), ("table", "table"),
                   ("timer", "userdata"), ("file", "userdata"), ("proxy", "userdata"),
                   ("light", "userdata")):
        assert r[k]["threw"] is True, (k, r[k])
        assert "bad argument #1 to '?' (moongate.conn expected, got %s)" % got in r[k]["a"], \
            (k, r[k])
    assert r["field"]["threw"] is True and "moongate.conn expected, got string" in r["field"]["a"]
    assert r["getmt"] == {"threw": False, "a": "moongate.conn", "b": None}
    assert r["eq_other"] == {"threw": False, "a": False, "b": None}
    assert gw.alive()


def test_kinds(gw, raw):
    c = raw(gw.port)
    c.send_text("kinds")
    r, got = reply(c)
    assert got == [("text", "k1"), ("binary", b"k2"), ("binary", b"k3"), ("text", "k4"),
                   ("text", "k5"), ("binary", b"k6"), ("text", "k7")]
    for k in ("bad", "num"):
        assert r[k]["threw"] is True, (k, r[k])
        assert "bad argument #3 to '?' (kind must be \"text\" or \"binary\")" in r[k]["a"], r[k]
    assert r["tbl"]["threw"] is True
    assert "bad argument #3 to '?' (string expected, got table)" in r["tbl"]["a"], r["tbl"]


def test_kept_handle_after_close(gw, raw):
    obs = raw(gw.port)
    a = raw(gw.port, "/?q=1")
    aid = cmd(a, "keep")["id"]
    live = cmd(obs, "probe kept %d" % aid)
    assert live["fields"] == {"id": aid, "path": "/", "query": "q=1", "remote": "127.0.0.1",
                              "name": None}
    assert live["is_open"] is True and live["send"] == {"threw": False, "a": True, "b": None}
    assert live["eq_live"] is True
    kind, text = a.recv_message(5)
    assert kind == "text" and text.startswith("from "), (kind, text)
    close(a)
    # on_disconnect still sees the connection's fields
    assert wait_disc(gw, obs, aid) == {"id": aid, "path": "/", "query": "q=1",
                                       "remote": "127.0.0.1", "name": None}
    dead = cmd(obs, "probe kept %d" % aid)
    assert dead["fields"] == {"id": aid, "path": None, "query": None, "remote": None,
                              "name": None}
    assert dead["tostring"] == "conn %d" % aid and dead["self_eq"] is True
    assert dead["is_open"] is False and dead["header"] is None and dead["get"] is None
    assert dead["send"] == {"threw": False, "a": None, "b": "connection closed"}
    assert dead["set"] == {"threw": False, "a": None, "b": "connection closed"}
    assert dead["eq_live"] is None
    assert gw.alive()


def test_handles_taken_while_reloading(gw, raw):
    a = raw(gw.port, "/?who=a")
    b = raw(gw.port, "/?who=b")
    aid = cmd(a, "keep")["id"]
    bid = cmd(b, "keep")["id"]
    assert gw.reload() == ("ok", 2)
    # on_reload's handles (taken before the new generation went live) work by id
    r = cmd(a, "probe loaded %d" % bid)
    assert r["fields"] == {"id": bid, "path": "/", "query": "who=b", "remote": "127.0.0.1",
                           "name": None}
    assert r["send"] == {"threw": False, "a": True, "b": None}
    assert r["eq_live"] is True  # equal to the live generation's own handle
    assert b.recv_message(5) == ("text", "from %d" % aid)
    # handles kept by the old generation went with it
    assert cmd(a, "probe kept %d" % bid) == {"missing": True}
    close(b)
    wait_disc(gw, a, bid)
    r = cmd(a, "probe loaded %d" % bid)
    assert r["fields"] == {"id": bid, "path": None, "query": None, "remote": None, "name": None}
    assert r["send"] == {"threw": False, "a": None, "b": "connection closed"}
    # the hook's own handle and a loaded one for a live connection still work
    a.send_text("probe loaded %d" % aid)
    r, skipped = reply(a)
    assert r["fields"]["query"] == "who=a" and r["is_open"] is True
    assert skipped == [("text", "from %d" % aid)]
    assert gw.alive()
