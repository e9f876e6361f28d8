"""The Lua API seen from clients: conn fields/attributes, names, topics,
broadcast, timers, gw.store, gw.json, gw.config, on_disconnect, dead handles.

The script below is a small command interpreter: a client sends "cmd args" and
gets a JSON object back; anything else it receives (published messages, sends
from other clients, "disc ID CODE REASON" events on topic "events") is not JSON.
"""

import json
import re
import struct
import time

import pytest

from conftest import OP_CLOSE, RawWS, WSClosed

SCRIPT = r"""
local json = gw.json
local null = json.null

local function nn(v) if v == nil then return null end return v end
local function reply(conn, t) conn:send(json.encode(t)) end

kept = nil

function on_connect(conn)
  conn:set("hello", "world")
end

function on_disconnect(conn, code, reason)
  local k = "disc:" .. conn.id
  gw.store[k] = (gw.store[k] or 0) + 1
  gw.log.info("DISC " .. conn.id .. " " .. tostring(code) .. " " .. tostring(reason))
  gw.publish("events", "disc " .. conn.id .. " " .. tostring(code) .. " " .. tostring(reason))
end

local H = {}

H.info = function(conn)
  reply(conn, {id = conn.id, path = conn.path, query = conn.query, remote = conn.remote,
               name = nn(conn.name), hdr = nn(conn:header("x-test")),
               hdr2 = nn(conn:header("X-TEST")), missing = conn:header("x-nope") == nil,
               host = nn(conn:header("Host")), ua = nn(conn:header("user-agent")),
               open = conn:is_open()})
end
H.set = function(conn, a)
  local k, v = a:match("^(%S+) (.*)$")
  conn:set(k, v); reply(conn, {ok = true})
end
H.setn = function(conn, a)
  local k, v = a:match("^(%S+) (.*)$")
  conn:set(k, tonumber(v)); reply(conn, {ok = true})
end
H.setb = function(conn, a)
  local k, v = a:match("^(%S+) (.*)$")
  conn:set(k, v == "true"); reply(conn, {ok = true})
end
H.del = function(conn, k) conn:set(k, nil); reply(conn, {ok = true}) end
H.get = function(conn, k)
  local v = conn:get(k)
  reply(conn, {v = nn(v), t = type(v)})
end
H.name = function(conn, n)
  local ok, err = conn:set_name(n)
  reply(conn, {ok = nn(ok), err = nn(err)})
end
H.find = function(conn, n)
  local c = gw.find(n)
  reply(conn, {id = c and c.id or null})
end
H.getid = function(conn, id)
  local c = gw.get(tonumber(id))
  reply(conn, {id = c and c.id or null, name = c and nn(c.name) or null})
end
H.sendto = function(conn, a)
  local t, msg = a:match("^(%S+) (.*)$")
  local ok, err = gw.send(tonumber(t) or t, msg)
  reply(conn, {ok = nn(ok), err = nn(err)})
end
H.sub = function(conn, t)
  local ok, err = conn:subscribe(t)
  reply(conn, {ok = nn(ok), err = nn(err)})
end
H.unsub = function(conn, t)
  local ok, err = conn:unsubscribe(t)
  reply(conn, {ok = nn(ok), err = nn(err)})
end
H.pub = function(conn, a)
  local t, msg = a:match("^(%S+) (.*)$")
  reply(conn, {n = gw.publish(t, msg)})
end
H.pubb = function(conn, a)
  local t, msg = a:match("^(%S+) (.*)$")
  reply(conn, {n = gw.publish(t, msg, "binary")})
end
H.bcast = function(conn, msg) reply(conn, {n = gw.broadcast(msg)}) end
H.bcastx = function(conn, msg) reply(conn, {n = gw.broadcast(msg, conn)}) end
H.bcastxid = function(conn, msg) reply(conn, {n = gw.broadcast(msg, conn.id)}) end
H.count = function(conn) reply(conn, {n = gw.count()}) end
H.clients = function(conn)
  local ids = {}
  for _, c in ipairs(gw.clients()) do ids[#ids + 1] = c.id end
  reply(conn, {ids = ids, n = #ids})
end
H.after = function(conn, a)
  local ms, text = a:match("^(%d+) (.*)$")
  gw.after(tonumber(ms), function() conn:send(text) end)
  reply(conn, {ok = true})
end
H.every = function(conn, a)
  local ms, n, text = a:match("^(%d+) (%d+) (.*)$")
  n = tonumber(n)
  local i, t = 0, nil
  t = gw.every(tonumber(ms), function()
    i = i + 1
    conn:send(text .. " " .. i)
    if i >= n then t:cancel() end
  end)
  reply(conn, {ok = true})
end
H.cancelled = function(conn, a)
  local ms, text = a:match("^(%d+) (.*)$")
  local t = gw.after(tonumber(ms), function() conn:send(text) end)
  t:cancel()
  reply(conn, {ok = true})
end
H.sput = function(conn, a)
  local k, v = a:match("^(%S+) (.*)$")
  gw.store[k] = v; reply(conn, {ok = true})
end
H.sputn = function(conn, a)
  local k, v = a:match("^(%S+) (.*)$")
  gw.store[k] = tonumber(v); reply(conn, {ok = true})
end
H.sputb = function(conn, a)
  local k, v = a:match("^(%S+) (.*)$")
  gw.store[k] = (v == "true"); reply(conn, {ok = true})
end
H.sdel = function(conn, k) gw.store[k] = nil; reply(conn, {ok = true}) end
H.sget = function(conn, k)
  local v = gw.store[k]
  reply(conn, {v = nn(v), t = type(v)})
end
H.json = function(conn, s) conn:send(json.encode(json.decode(s))) end
H.jsonnull = function(conn)
  reply(conn, {top = json.decode("null") == null,
               field = json.decode('{"a":null}').a == null,
               enc = json.encode({x = null})})
end
H.config = function(conn)
  local c = gw.config
  reply(conn, {app = c.app, mms = c.limits.max_message_size, sendq = c.limits.send_queue,
               hb = c.heartbeat.interval, hbt = c.heartbeat.timeout,
               port = c.listen[1].port, gen = gw.generation})
end
H.now = function(conn) reply(conn, {now = gw.now()}) end
H.keep = function(conn) kept = conn; reply(conn, {ok = true, id = conn.id}) end
H.usekept = function(conn)
  local obs = conn
  gw.after(1, function()
    local r = {}
    local function cap(name, f)
      local okc, a, b = pcall(f)
      r[name] = {threw = not okc, a = nn(a), b = nn(b)}
    end
    cap("send", function() return kept:send("zombie") end)
    cap("close", function() return kept:close(1000, "x") end)
    cap("set_name", function() return kept:set_name("zombie") end)
    cap("set", function() return kept:set("k", "v") end)
    cap("get", function() return kept:get("hello") end)
    cap("subscribe", function() return kept:subscribe("t") end)
    cap("unsubscribe", function() return kept:unsubscribe("t") end)
    cap("is_open", function() return kept:is_open() end)
    cap("header", function() return kept:header("host") end)
    cap("gwsend", function() return gw.send(kept.id, "zombie") end)
    cap("gwget", function() return gw.get(kept.id) end)
    obs:send(json.encode(r))
  end)
end
H.close = function(conn, a)
  local code, reason = a:match("^(%d+) ?(.*)$")
  conn:close(tonumber(code), reason)
end
H.log = function(conn, text) gw.log.info(text); reply(conn, {ok = true}) end

function on_message(conn, data, kind)
  local cmd, rest = data:match("^(%S+)%s?(.*)$")
  local h = cmd and H[cmd]
  if not h then reply(conn, {err = "unknown command", data = data}) return end
  h(conn, rest)
end
"""


class Client:
    """A RawWS plus an inbox: cmd() returns the JSON reply; other messages
    received meanwhile are kept in order in .inbox."""

    def __init__(self, port, path="/", headers=None):
        self.ws = RawWS(port, path, headers=headers)
        self.inbox = []

    def cmd(self, text, timeout=5):
        self.ws.send_text(text)
        return self.reply(timeout)

    def reply(self, timeout=5):
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            kind, data = self.ws.recv_message(max(0.01, deadline - time.monotonic()))
            if kind == "text" and data.startswith("{"):
                return json.loads(data)
            self.inbox.append(data)
        raise AssertionError("no reply")

    def wait_for(self, pred, timeout=5):
        for i, m in enumerate(self.inbox):
            if pred(m):
                return self.inbox.pop(i)
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            kind, data = self.ws.recv_message(max(0.01, deadline - time.monotonic()))
            if pred(data):
                return data
            self.inbox.append(data)
        raise AssertionError("message not received")

    def next(self, timeout=5):
        if self.inbox:
            return self.inbox.pop(0)
        return self.ws.recv_message(timeout)[1]

    def close(self, code=1000, reason=""):
        self.ws.send_close(code, reason)
        try:
            self.ws.wait_close(5, reply=False)
        except (EOFError, ConnectionError):
            pass
        self.ws.close()


@pytest.fixture
def gw(gateway):
    # X-Test is not a standard header: conn:header sees it only when listed.
    return gateway(SCRIPT, {"handshake": {"headers": ["X-Test"]}})


@pytest.fixture
def clients():
    made = []

    def factory(port, path="/", headers=None):
        c = Client(port, path, headers)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.ws.close()


def test_conn_fields(gw, clients):
    a = clients(gw.port, "/", headers={"X-Test": "Hello"})
    info = a.cmd("info")
    assert info["path"] == "/"
    assert info["remote"] == "127.0.0.1"
    assert info["name"] is None
    assert info["open"] is True
    assert isinstance(info["id"], (int, float))
    assert info["query"] == ""


def test_conn_query(gw, clients):
    a = clients(gw.port, "/?a=1&b=two")
    info = a.cmd("info")
    assert info["path"] == "/"
    assert info["query"] == "a=1&b=two"


def test_conn_header(gw, clients):
    a = clients(gw.port, "/", headers={"X-Test": "Hello", "User-Agent": "it-agent/1.0"})
    info = a.cmd("info")
    assert info["host"] == "127.0.0.1:%d" % gw.port, info   # a standard header
    assert info["ua"] == "it-agent/1.0", info
    assert info["hdr"] == "Hello", info           # lower-case lookup
    assert info["hdr2"] == "Hello", info          # upper-case lookup
    assert info["missing"] is True


def test_unlisted_custom_header_is_not_kept(gateway, clients):
    g = gateway(SCRIPT)  # no handshake.headers
    a = clients(g.port, "/", headers={"X-Test": "Hello", "User-Agent": "it-agent/1.0"})
    info = a.cmd("info")
    assert info["ua"] == "it-agent/1.0", info   # standard headers are always kept
    assert info["hdr"] is None, info


def test_ids_unique_and_increasing(gw, clients):
    ids = []
    cs = []
    for _ in range(5):
        c = clients(gw.port)
        cs.append(c)
        ids.append(c.cmd("info")["id"])
    assert ids == sorted(ids) and len(set(ids)) == 5, ids
    since = gw.mark()
    cs[0].close()
    cs[1].close()
    gw.wait_log_count(r"DISC \d+ ", 2, 5, since)
    new = clients(gw.port).cmd("info")["id"]
    assert new > max(ids), (new, ids)


def test_conn_attributes(gw, clients):
    a = clients(gw.port)
    b = clients(gw.port)
    assert a.cmd("get hello") == {"v": "world", "t": "string"}   # set in on_connect
    a.cmd("set color blue")
    assert a.cmd("get color") == {"v": "blue", "t": "string"}
    a.cmd("setn answer 42")
    assert a.cmd("get answer") == {"v": 42, "t": "number"}
    a.cmd("setb flag true")
    assert a.cmd("get flag") == {"v": True, "t": "boolean"}
    a.cmd("setb flag false")
    assert a.cmd("get flag") == {"v": False, "t": "boolean"}
    a.cmd("del color")
    assert a.cmd("get color") == {"v": None, "t": "nil"}
    # attributes are per connection
    assert b.cmd("get answer") == {"v": None, "t": "nil"}
    assert b.cmd("get hello") == {"v": "world", "t": "string"}


def test_names_find_and_send(gw, clients):
    a = clients(gw.port)
    b = clients(gw.port)
    aid = a.cmd("info")["id"]
    assert a.cmd("name alice") == {"ok": True, "err": None}
    assert a.cmd("info")["name"] == "alice"
    assert b.cmd("find alice")["id"] == aid
    assert b.cmd("find nobody")["id"] is None
    r = b.cmd("sendto alice hi by name")
    assert r["ok"] is True, r
    assert a.next() == "hi by name"
    r = b.cmd("sendto %d hi by id" % aid)
    assert r["ok"] is True, r
    assert a.next() == "hi by id"
    r = b.cmd("sendto nobody lost")
    assert r["ok"] is None and isinstance(r["err"], str) and r["err"], r
    assert b.cmd("getid %d" % aid) == {"id": aid, "name": "alice"}
    assert b.cmd("getid 99999999")["id"] is None
    assert a.inbox == [] and b.inbox == []


def test_name_freed_after_disconnect(gw, clients):
    a = clients(gw.port)
    obs = clients(gw.port)
    obs.cmd("sub events")
    aid = a.cmd("info")["id"]
    a.cmd("name gone")
    assert obs.cmd("find gone")["id"] == aid
    a.close(1000)
    obs.wait_for(lambda m: m.startswith("disc %d " % aid))
    assert obs.cmd("find gone")["id"] is None


def test_duplicate_name_replace(gw, clients):
    obs = clients(gw.port)
    obs.cmd("sub events")
    a = clients(gw.port)
    b = clients(gw.port)
    aid = a.cmd("info")["id"]
    bid = b.cmd("info")["id"]
    assert a.cmd("name w1")["ok"] is True
    assert b.cmd("name w1") == {"ok": True, "err": None}
    code, reason = a.ws.wait_close(5)
    assert (code, reason) == (4001, "a new client with the same id connected")
    ev = obs.wait_for(lambda m: m.startswith("disc %d " % aid))
    assert ev == "disc %d 4001 a new client with the same id connected" % aid
    assert obs.cmd("find w1")["id"] == bid
    assert b.cmd("info")["name"] == "w1"


def test_duplicate_name_reject(gateway, clients):
    g = gateway(SCRIPT, {"names": {"duplicate": "reject"}})
    obs = clients(g.port)
    obs.cmd("sub events")
    a = clients(g.port)
    b = clients(g.port)
    aid = a.cmd("info")["id"]
    bid = b.cmd("info")["id"]
    assert a.cmd("name w1")["ok"] is True
    assert b.cmd("name w1") == {"ok": None, "err": "name taken"}
    assert obs.cmd("find w1")["id"] == aid
    assert a.cmd("info")["open"] is True        # a untouched
    a.close(1000)
    obs.wait_for(lambda m: m.startswith("disc %d " % aid))
    assert b.cmd("name w1")["ok"] is True
    assert obs.cmd("find w1")["id"] == bid


def test_topics(gw, clients):
    a = clients(gw.port)
    b = clients(gw.port)
    c = clients(gw.port)
    assert a.cmd("sub t1")["ok"] is True
    assert b.cmd("sub t1")["ok"] is True
    assert c.cmd("pub t1 hello topic") == {"n": 2}
    assert a.next() == "hello topic"
    assert b.next() == "hello topic"
    assert c.cmd("count")["n"] == 3 and c.inbox == []      # c not subscribed
    assert c.cmd("pub nobody-listens x") == {"n": 0}
    assert b.cmd("unsub t1")["ok"] is True
    assert c.cmd("pub t1 second") == {"n": 1}
    assert a.next() == "second"
    b.cmd("count")
    assert b.inbox == []                                    # b unsubscribed
    assert c.cmd("pubb t1 bin") == {"n": 1}
    kind, data = a.ws.recv_message(5)
    assert (kind, data) == ("binary", b"bin")


def test_subscriptions_end_with_connection(gw, clients):
    a = clients(gw.port)
    obs = clients(gw.port)
    obs.cmd("sub events")
    aid = a.cmd("info")["id"]
    a.cmd("sub t2")
    a.close(1000)
    obs.wait_for(lambda m: m.startswith("disc %d " % aid))
    assert obs.cmd("pub t2 x") == {"n": 0}


def test_broadcast(gw, clients):
    a, b, c = clients(gw.port), clients(gw.port), clients(gw.port)
    assert a.cmd("bcastx not for a") == {"n": 2}
    assert b.next() == "not for a"
    assert c.next() == "not for a"
    assert b.cmd("bcastxid not for b") == {"n": 2}
    assert a.next() == "not for b"
    assert c.next() == "not for b"
    assert c.cmd("bcast everyone") == {"n": 3}
    assert a.next() == "everyone" and b.next() == "everyone" and c.next() == "everyone"
    for x in (a, b, c):
        x.cmd("count")
        assert x.inbox == []


def test_count_and_clients(gw, clients):
    cs = [clients(gw.port) for _ in range(3)]
    ids = sorted(c.cmd("info")["id"] for c in cs)
    assert cs[0].cmd("count") == {"n": 3}
    r = cs[1].cmd("clients")
    assert r["n"] == 3 and sorted(r["ids"]) == ids
    gone = cs[2].cmd("info")["id"]
    since = gw.mark()
    cs[2].close()
    gw.wait_log(r"DISC %d " % gone, 5, since)
    assert cs[0].cmd("count") == {"n": 2}
    assert len(cs[0].cmd("clients")["ids"]) == 2


def test_timers(gw, clients):
    a = clients(gw.port)
    t0 = time.monotonic()
    a.cmd("after 150 fired")
    assert a.next(5) == "fired"
    assert time.monotonic() - t0 >= 0.12
    a.cmd("every 40 3 tick")
    a.cmd("cancelled 80 never")
    a.cmd("after 400 done")
    got = [a.next(5) for _ in range(4)]
    assert got == ["tick 1", "tick 2", "tick 3", "done"], got


def test_store(gw, clients):
    a, b = clients(gw.port), clients(gw.port)
    a.cmd("sput greeting hello store")
    assert b.cmd("sget greeting") == {"v": "hello store", "t": "string"}
    a.cmd("sputn n 12.5")
    assert b.cmd("sget n") == {"v": 12.5, "t": "number"}
    a.cmd("sputb yes true")
    assert b.cmd("sget yes") == {"v": True, "t": "boolean"}
    assert b.cmd("sget missing") == {"v": None, "t": "nil"}
    b.cmd("sdel greeting")
    assert a.cmd("sget greeting") == {"v": None, "t": "nil"}


def test_json_round_trip(gw, clients):
    a = clients(gw.port)
    obj = {"a": [1, 2, 3], "b": {"c": "é ✓ \"quoted\""}, "n": None, "t": True, "f": 1.5,
           "s": "line\nbreak"}
    assert a.cmd("json " + json.dumps(obj)) == obj
    r = a.cmd("jsonnull")
    assert r["top"] is True and r["field"] is True
    assert json.loads(r["enc"]) == {"x": None}


def test_config_values(gateway, clients):
    g = gateway(SCRIPT, {
        "limits": {"max_message_size": "64KiB", "send_queue": "2MiB"},
        "heartbeat": {"interval": "5s", "timeout": "20s"},
        "app": {"greeting": "hi there", "version": "1", "answer": 42,
                "nested": {"list": ["x", "y"], "flag": True}},
    })
    a = clients(g.port)
    r = a.cmd("config")
    assert r["app"] == {"greeting": "hi there", "version": "1", "answer": 42,
                        "nested": {"list": ["x", "y"], "flag": True}}
    assert r["mms"] == 65536
    assert r["sendq"] == 2 * 1024 * 1024
    assert r["hb"] == 5000 and r["hbt"] == 20000
    assert r["port"] == g.port
    assert r["gen"] == 1


def test_now(gw, clients):
    a = clients(gw.port)
    before = time.time() * 1000
    now = a.cmd("now")["now"]
    after = time.time() * 1000
    assert before - 1000 <= now <= after + 1000, (before, now, after)


def test_log(gw, clients):
    a = clients(gw.port)
    a.cmd("log LOGTEST-from-lua-42")
    gw.wait_log(r"INFO\s+.*LOGTEST-from-lua-42", 5)


def test_on_disconnect_client_close_code(gw, clients):
    obs = clients(gw.port)
    obs.cmd("sub events")
    a = clients(gw.port)
    aid = a.cmd("info")["id"]
    a.close(4321, "bye")
    ev = obs.wait_for(lambda m: m.startswith("disc %d " % aid))
    assert ev == "disc %d 4321 bye" % aid
    # exactly once
    assert obs.cmd("sget disc:%d" % aid)["v"] == 1
    obs.cmd("count")
    assert not [m for m in obs.inbox if m.startswith("disc %d " % aid)], obs.inbox


def test_on_disconnect_server_close(gw, clients):
    obs = clients(gw.port)
    obs.cmd("sub events")
    a = clients(gw.port)
    aid = a.cmd("info")["id"]
    a.ws.send_text("close 4100 later")
    assert a.ws.wait_close(5) == (4100, "later")
    ev = obs.wait_for(lambda m: m.startswith("disc %d " % aid))
    assert ev == "disc %d 4100 later" % aid
    assert obs.cmd("sget disc:%d" % aid)["v"] == 1


def test_on_disconnect_tcp_drop_1006(gw, clients):
    obs = clients(gw.port)
    obs.cmd("sub events")
    a = clients(gw.port)
    aid = a.cmd("info")["id"]
    a.ws.sock.close()            # no close frame
    ev = obs.wait_for(lambda m: m.startswith("disc %d " % aid))
    assert ev == "disc %d 1006 abnormal closure" % aid
    assert obs.cmd("sget disc:%d" % aid)["v"] == 1


def test_calls_on_closed_connection(gw, clients):
    obs = clients(gw.port)
    obs.cmd("sub events")
    a = clients(gw.port)
    aid = a.cmd("keep")["id"]
    a.close(1000)
    obs.wait_for(lambda m: m.startswith("disc %d " % aid))
    obs.ws.send_text("usekept")
    r = obs.reply(5)
    for name in ("send", "close", "set_name", "set", "subscribe", "unsubscribe"):
        assert r[name] == {"threw": False, "a": None, "b": "connection closed"}, (name, r[name])
    assert r["get"]["threw"] is False and r["get"]["a"] is None, r["get"]
    assert r["header"]["threw"] is False and r["header"]["a"] is None, r["header"]
    assert r["is_open"] == {"threw": False, "a": False, "b": None}, r["is_open"]
    assert r["gwsend"]["threw"] is False and r["gwsend"]["a"] is None, r["gwsend"]
    assert r["gwget"]["a"] is None, r["gwget"]
    # the gateway is fine
    assert obs.cmd("count") == {"n": 1}
    assert gw.alive()


def test_timer_on_closed_connection_is_harmless(gw, clients):
    a = clients(gw.port)
    obs = clients(gw.port)
    obs.cmd("sub events")
    aid = a.cmd("info")["id"]
    a.cmd("after 100 too late")
    a.close(1000)
    obs.wait_for(lambda m: m.startswith("disc %d " % aid))
    obs.cmd("after 300 marker")
    assert obs.next(5) == "marker"
    assert gw.alive()
    assert not gw.find_logs(r"lua error")


REQUIRE_SCRIPT = """
local greet = require("greet")
function on_message(conn, data)
  conn:send(greet.hello(data))
end
"""


def write_module(g, text):
    import os
    os.makedirs(os.path.join(g.dir, "lib"), exist_ok=True)
    with open(os.path.join(g.dir, "lib", "greet.lua"), "w") as f:
        f.write(text)


def test_lua_path_require(gateway, raw):
    """lua.path (relative to the config file's folder) is searched by require."""
    g = gateway(REQUIRE_SCRIPT, {"lua": {"path": "lib/?.lua"}}, start=False)
    write_module(g, 'return { hello = function(n) return "hello " .. n end }\n')
    g.start()
    c = raw(g.port)
    c.send_text("bob")
    assert c.recv_text() == "hello bob"


COUNT_SCRIPT = """
function on_message(conn, data)
  if data == "close me" then
    conn:close(4000, "bye")
    -- closing now: neither counted nor listed
    gw.log.info(("COUNT after close %d %d"):format(gw.count(), #gw.clients()))
  else
    conn:send(("count %d %d"):format(gw.count(), #gw.clients()))
  end
end
function on_disconnect(conn, code)
  gw.log.info(("COUNT in disconnect %d %d %d"):format(code, gw.count(), #gw.clients()))
end
"""


def test_count_matches_clients(gateway, raw):
    """gw.count() is the number of open connections: the same as #gw.clients(),
    also while a connection is closing or its on_disconnect runs."""
    g = gateway(COUNT_SCRIPT)
    a, b, c = raw(g.port), raw(g.port), raw(g.port)
    a.send_text("?")
    assert a.recv_text() == "count 3 3"
    since = g.mark()
    b.send_text("close me")
    g.wait_log(r"COUNT after close 2 2", 5, since)
    g.wait_log(r"COUNT in disconnect 4000 2 2", 5, since)
    since = g.mark()
    c.sock.close()  # TCP drop, no close frame
    g.wait_log(r"COUNT in disconnect 1006 1 1", 5, since)
    a.send_text("?")
    assert a.recv_text() == "count 1 1"


COROUTINE_SCRIPT = r"""
-- Every API call that returns a handle, made from inside a coroutine: the
-- handle must come back on the coroutine's own stack.
function on_message(conn, data)
  local co = coroutine.wrap(function(id)
    local me = gw.get(id)
    local found = gw.find("co-" .. id)
    local all = gw.clients()
    coroutine.yield(string.format("get %s find %s clients %d",
      tostring(me and me.id), tostring(found and found.id), #all))
    return "second"
  end)
  conn:set_name("co-" .. conn.id)
  conn:send(co(conn.id))
  conn:send(co())
end
"""


def test_handles_returned_inside_coroutines(gateway, raw):
    """gw.get/gw.find/gw.clients push their handles onto the calling
    coroutine's stack, not the main state's."""
    g = gateway(COROUTINE_SCRIPT)
    a, b = raw(g.port), raw(g.port)
    for c in (a, b):
        c.send_text("go")
    for c in (a, b):
        first = c.recv_text()
        m = re.fullmatch(r"get (\d+) find (\d+) clients (\d+)", first)
        assert m and m.group(1) == m.group(2), first
        assert int(m.group(3)) >= 1, first
        assert c.recv_text() == "second"
    # the main stack was not disturbed: the next hook calls still work
    a.send_text("again")
    assert re.fullmatch(r"get \d+ find \d+ clients 2", a.recv_text())
    assert a.recv_text() == "second"


def test_timer_send_goes_out_when_the_timer_runs(gateway, clients):
    # Heartbeats off: no timer of the gateway's own wakes its loop.  A send
    # from a Lua timer is written when the timer has run, not when some
    # later event happens to end the loop's wait.
    g = gateway(SCRIPT, {"heartbeat": {"interval": "0s", "timeout": "0s"}})
    a = clients(g.port)
    late = []
    for _ in range(5):
        t0 = time.monotonic()
        a.cmd("after 50 fired")
        assert a.next(10) == "fired"
        late.append(time.monotonic() - t0)
    assert min(late) < 0.5, late
