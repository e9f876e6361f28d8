"""The broker bridge's Lua API (on_task, msg:ack/requeue/reject/forward/assign,
gw.broker.*, on_broker) and its `broker:` config, against a real RabbitMQ
(tests/integration/rabbit.py) — never a mock.

Most tests run one small script (SCRIPT below) that keeps every delivery in a
table and lets a WebSocket client decide what happens to it ("ack 3",
"requeue 3", ...): settling later, from another hook, is the point of the API.
Every test has queue names of its own.
"""
import asyncio
import json
import os
import re
import time
import uuid

import pytest

from conftest import line_of, metric_sum, run, run_cli, ws_connect
from rabbit import rabbit  # noqa: F401  (session fixture: one broker per test file)

SCRIPT = r"""
local app = gw.config.app or {}
local held = {}          -- id -> msg: referenced, so never collected

local function fields(msg)
  return ("id=%d body=%s rk=%s queue=%s exchange=%s redelivered=%s tag=%s headers=%s "
          .. "message_id=%s content_type=%s state=%s owner=%s")
    :format(msg.id, msg.body, msg.routing_key, msg.queue, tostring(msg.exchange),
            tostring(msg.redelivered), tostring(msg.delivery_tag), gw.json.encode(msg.headers),
            tostring(msg.message_id), tostring(msg.content_type), msg.state,
            tostring(msg.owner and msg.owner.id))
end

function on_task(msg)
  gw.log.info("delivery " .. fields(msg))
  if msg.body == "drop-me" and not msg.redelivered then return end  -- no reference kept
  if msg.body == "ack-in-hook" then return gw.log.info("acked in hook: " .. tostring(msg:ack())) end
  held[msg.id] = msg
end

function on_broker(state, detail)
  gw.log.info(("on_broker %s %s state()=%s"):format(state, tostring(detail), gw.broker.state()))
end

local function res(ok, err) return ok and "true" or ("nil " .. tostring(err)) end

local FWD_HEADERS = { ["x-attempts"] = 2, extra = "yes" }

function on_message(conn, data)
  local cmd, a, b = data:match("^(%S+) ?(%S*) ?(.*)$")
  local msg = held[tonumber(a) or -1]
  if cmd == "ack" then return conn:send(res(msg:ack())) end
  if cmd == "requeue" then return conn:send(res(msg:requeue())) end
  if cmd == "reject" then return conn:send(res(msg:reject())) end
  if cmd == "forward" then          -- forward ID QUEUE (default exchange)
    return conn:send(res(msg:forward("", b, FWD_HEADERS)))
  end
  if cmd == "assign" then return conn:send(res(msg:assign(conn))) end
  if cmd == "unassign" then return conn:send(res(msg:assign(nil))) end
  if cmd == "owner" then return conn:send(tostring(msg.owner == conn)) end
  if cmd == "state" then return conn:send(msg.state) end
  if cmd == "fields" then return conn:send(fields(msg)) end
  if cmd == "drop" then held[tonumber(a)] = nil; return conn:send("true") end
  if cmd == "gc" then collectgarbage("collect"); collectgarbage("collect"); return conn:send("true") end
  if cmd == "lookup" then
    local m = gw.broker.message(tonumber(a))
    return conn:send(m and ("%d %s"):format(m.id, m.body) or "nil")
  end
  if cmd == "colookup" then         -- the same two, from inside a coroutine
    local m, n = coroutine.wrap(function()
      return gw.broker.message(tonumber(a)), #gw.broker.unsettled()
    end)()
    return conn:send(m and ("%d %s %d"):format(m.id, m.body, n) or "nil")
  end
  if cmd == "unsettled" then return conn:send(tostring(#gw.broker.unsettled())) end
  if cmd == "mine" then return conn:send(tostring(#gw.broker.unsettled(conn))) end
  if cmd == "bstate" then return conn:send(gw.broker.state()) end
  if cmd == "pubx" then             -- pubx EXCHANGE BODY (routing key: the body)
    return conn:send(res(gw.broker.publish(a, b, b)))
  end
  if cmd == "publish" then          -- publish QUEUE BODY
    return conn:send(res(gw.broker.publish("", a, b, { src = "gw", n = 5 },
                                           { message_id = "pub-" .. b, content_type = "text/plain" })))
  end
  conn:send("unknown command " .. data)
end

function on_disconnect(conn, code)
  gw.log.info(("disconnect conn %d unsettled(conn)=%d"):format(conn.id, #gw.broker.unsettled(conn)))
end

function on_reload()
  local n, owned = 0, 0
  for _, m in ipairs(gw.broker.unsettled()) do
    n = n + 1
    if m.owner then owned = owned + 1; held[m.id] = m end   -- the rest: requeued by the core
  end
  gw.log.info(("on_reload unsettled=%d owned=%d"):format(n, owned))
end
"""

DELIVERY = re.compile(
    r"lua: delivery id=(\d+) body=(\S*) rk=(\S*) queue=(\S*) exchange=(\S*) redelivered=(\w+) "
    r"tag=(\S+) headers=(\S*) message_id=(\S+) content_type=(\S+) state=(\w+) owner=(\S+)")


class Names:
    def __init__(self):
        sfx = uuid.uuid4().hex[:8]
        self.main, self.dead, self.other = ("brk.%s.%s" % (n, sfx) for n in ("main", "dead", "other"))


def broker_config(rabbit, q, **over):
    b = {"url": rabbit.url, "reconnect_min": "100ms", "reconnect_max": "1s", "prefetch": 10,
         "queues": [{"name": q.main, "dead_letter_exchange": "", "dead_letter_routing_key": q.dead},
                    {"name": q.dead}, {"name": q.other}],
         "consume": [q.main]}
    b.update(over)
    return {"broker": b}


class BG:
    """A gateway with SCRIPT and a broker section, and a control connection."""

    def __init__(self, g, rabbit, q):
        self.g, self.rabbit, self.q = g, rabbit, q

    def wait_delivery(self, body, since=0, timeout=10, redelivered=None):
        pat = r"lua: delivery id=\d+ body=%s .* redelivered=%s" % (
            re.escape(body), {None: r"\w+", True: "true", False: "false"}[redelivered])
        line = self.g.wait_log(pat, timeout, since).string
        m = DELIVERY.search(line)
        assert m, line
        return {"id": int(m.group(1)), "body": m.group(2), "rk": m.group(3), "queue": m.group(4),
                "exchange": m.group(5), "redelivered": m.group(6) == "true",
                "tag": m.group(7), "headers": json.loads(m.group(8)), "message_id": m.group(9),
                "content_type": m.group(10), "state": m.group(11), "owner": m.group(12)}

    def metric(self, name):
        return metric_sum(self.g.metrics(), name)


@pytest.fixture
def bg(gateway, rabbit):
    """Factory: bg(**broker_overrides) -> a started BG, its broker link up."""
    made = []
    rabbit.ensure_running()

    def make(script=SCRIPT, **over):
        q = Names()
        g = gateway(script, broker_config(rabbit, q, **over), admin=True)
        g.wait_log(r"broker: up amqp://127\.0\.0\.1:%d/ \(consuming %s\)"
                   % (rabbit.port, re.escape(q.main)), 15)
        b = BG(g, rabbit, q)
        made.append(b)
        return b

    yield make
    for b in made:
        for name in (b.q.main, b.q.dead, b.q.other):
            try:
                rabbit.delete(name)
            except Exception:
                pass


async def cmd(ws, text, timeout=5):
    await ws.send(text)
    return await asyncio.wait_for(ws.recv(), timeout)


def control(b, fn, timeout=30):
    """Run `async fn(ws)` with a connection to the gateway; returns its result."""
    async def go():
        async with ws_connect(b.g.url) as ws:
            return await fn(ws)
    return run(go(), timeout)


# --------------------------------------------------------------------------

def test_delivery_fields_then_ack_from_another_hook(bg, rabbit):
    b = bg()
    rabbit.publish(b.q.main, "hello", {"k": "v", "n": 7}, message_id="mid-1",
                   content_type="text/plain")
    d = b.wait_delivery("hello")
    assert d["rk"] == b.q.main and d["queue"] == b.q.main and d["exchange"] == ""
    assert d["redelivered"] is False and int(d["tag"]) >= 1
    assert d["headers"] == {"k": "v", "n": 7}
    assert (d["message_id"], d["content_type"], d["state"], d["owner"]) == \
        ("mid-1", "text/plain", "unsettled", "nil")
    # unacked until the script decides, after on_task returned
    assert rabbit.counts(b.q.main) == (0, 1)
    assert b.metric("moongate_broker_unsettled") == 1

    async def go(ws):
        assert await cmd(ws, "lookup %d" % d["id"]) == "%d hello" % d["id"]
        assert await cmd(ws, "unsettled") == "1"
        assert await cmd(ws, "colookup %d" % d["id"]) == "%d hello 1" % d["id"]
        assert await cmd(ws, "ack %d" % d["id"]) == "true"
        assert await cmd(ws, "state %d" % d["id"]) == "acked"
        again = await cmd(ws, "ack %d" % d["id"])
        assert again.startswith("nil "), again          # settled once only
        assert await cmd(ws, "requeue %d" % d["id"]) != "true"
        assert await cmd(ws, "lookup %d" % d["id"]) == "nil"
        assert await cmd(ws, "unsettled") == "0"
    control(b, go)
    rabbit.wait_counts(b.q.main, 0, 0)
    m = b.g.metrics()
    assert metric_sum(m, "moongate_broker_deliveries_total") == 1
    assert m.get('moongate_broker_settled_total{how="ack"}') == 1
    assert m.get("moongate_broker_unsettled") == 0
    assert m.get("moongate_broker_up") == 1
    # the threads are named for `top -H` (docs/operations.md)
    comms = [open("/proc/%d/task/%s/comm" % (b.g.pid, t)).read().strip()
             for t in os.listdir("/proc/%d/task" % b.g.pid)]
    assert {"mg-broker", "mg-watchdog"} <= set(comms), comms


def test_ack_inside_on_task_and_empty_headers(bg, rabbit):
    b = bg()
    rabbit.publish(b.q.main, "ack-in-hook")
    d = b.wait_delivery("ack-in-hook")
    assert d["headers"] == {} and d["message_id"] == "nil"
    b.g.wait_log(r"lua: acked in hook: true", 5)
    rabbit.wait_counts(b.q.main, 0, 0)


def test_requeue_redelivers_with_the_flag_set(bg, rabbit):
    b = bg()
    since = b.g.mark()
    rabbit.publish(b.q.main, "again")
    first = b.wait_delivery("again", since, redelivered=False)

    async def go(ws):
        assert await cmd(ws, "requeue %d" % first["id"]) == "true"
        second = b.wait_delivery("again", since, redelivered=True)
        assert second["id"] != first["id"]            # a new handle, a new id
        assert await cmd(ws, "state %d" % first["id"]) == "requeued"
        assert await cmd(ws, "ack %d" % second["id"]) == "true"
    control(b, go)
    rabbit.wait_counts(b.q.main, 0, 0)
    assert b.g.metrics().get('moongate_broker_settled_total{how="requeue"}') == 1


def test_reject_dead_letters_through_the_queues_dlx(bg, rabbit):
    b = bg()
    rabbit.publish(b.q.main, "bad", {"why": "test"})
    d = b.wait_delivery("bad")
    assert control(b, lambda ws: cmd(ws, "reject %d" % d["id"])) == "true"
    body, headers, _ = rabbit.wait_get(b.q.dead, 10)
    assert body == b"bad" and headers["why"] == "test"
    assert headers["x-death"][0]["reason"] == "rejected"
    assert headers["x-death"][0]["queue"] == b.q.main
    rabbit.wait_counts(b.q.main, 0, 0)


def test_forward_copies_merges_headers_and_acks_the_original(bg, rabbit):
    b = bg()
    rabbit.publish(b.q.main, "move-me", {"k": "v", "x-attempts": 1}, message_id="mid-f",
                   content_type="application/json")
    d = b.wait_delivery("move-me")

    async def go(ws):
        assert await cmd(ws, "forward %d %s" % (d["id"], b.q.other)) == "true"
        body, headers, props = rabbit.wait_get(b.q.other, 10)
        assert body == b"move-me"
        assert headers == {"k": "v", "x-attempts": 2, "extra": "yes"}
        assert (props.message_id, props.content_type, props.delivery_mode) == \
            ("mid-f", "application/json", 2)
        # the original is acked once the copy is confirmed
        deadline = time.monotonic() + 10
        for _ in range(500):
            state = await cmd(ws, "state %d" % d["id"])
            if state == "forwarded" or time.monotonic() > deadline:
                break
            assert state == "forwarding", state
            await asyncio.sleep(0.02)
        assert state == "forwarded"
        assert (await cmd(ws, "ack %d" % d["id"])).startswith("nil ")
    control(b, go)
    rabbit.wait_counts(b.q.main, 0, 0)
    assert b.g.metrics().get('moongate_broker_settled_total{how="forward"}') == 1


def test_forward_that_is_not_confirmed_leaves_the_original_to_the_script(bg, rabbit):
    """The copy cannot be routed (no queue behind that routing key): the
    broker does not take it, the original stays unsettled (docs/lua-api.md)
    and the script can forward it elsewhere."""
    b = bg()
    since = b.g.mark()
    rabbit.publish(b.q.main, "unroutable")
    d = b.wait_delivery("unroutable", since, redelivered=False)
    nowhere = b.q.other + ".nowhere"

    async def go(ws):
        assert await cmd(ws, "forward %d %s" % (d["id"], nowhere)) == "true"
        b.g.wait_log(r"broker: message %d: forward failed \(unroutable" % d["id"], 10, since)
        assert await cmd(ws, "state %d" % d["id"]) == "unsettled"
        assert await cmd(ws, "forward %d %s" % (d["id"], b.q.other)) == "true"
        body, headers, _ = rabbit.wait_get(b.q.other, 10)
        assert body == b"unroutable" and headers["x-attempts"] == 2
    control(b, go)
    rabbit.wait_counts(b.q.main, 0, 0)
    assert not rabbit.exists(nowhere)
    assert b.metric("moongate_broker_publish_failures_total") == 1


def test_forward_failing_after_its_owner_closed_is_not_leaked(bg, rabbit):
    """Assigned, forwarded, and the owner closes before the broker answers
    (the broker is frozen meanwhile): when the copy turns out unroutable the
    original must not stay unsettled for ever with a closed owner."""
    b = bg()
    since = b.g.mark()
    rabbit.publish(b.q.main, "orphan")
    d = b.wait_delivery("orphan", since, redelivered=False)

    async def go(ws):
        assert await cmd(ws, "assign %d" % d["id"]) == "true"
        rabbit.freeze()
        try:
            assert await cmd(ws, "forward %d %s.nowhere" % (d["id"], b.q.other)) == "true"
        except BaseException:
            rabbit.thaw()
            raise
    try:
        control(b, go)                                  # the owner closes
        b.g.wait_log(r"lua: disconnect conn \d+", 5, since)
    finally:
        rabbit.thaw()
    b.g.wait_log(r"broker: message %d: forward failed" % d["id"], 10, since)
    again = b.wait_delivery("orphan", since, redelivered=True, timeout=10)

    async def ack(ws):
        assert await cmd(ws, "ack %d" % again["id"]) == "true"
    control(b, ack)
    rabbit.wait_counts(b.q.main, 0, 0)


def test_publish_to_a_missing_exchange_fails_alone(bg, rabbit):
    # RabbitMQ closes the channel of a publish to an exchange that does not
    # exist; publishes have a channel of their own, so deliveries in flight
    # on the consuming channel are not lost with it, and the next publish goes.
    b = bg()
    rabbit.publish(b.q.main, "kept")
    d = b.wait_delivery("kept")
    mark = b.g.mark()

    async def go(ws):
        assert await cmd(ws, "pubx no-such-exchange-%s x" % b.q.main) == "true"  # accepted ...
        b.g.wait_log(r"broker: publish failed: channel closed by the broker: NOT_FOUND - "
                     r"no exchange 'no-such-exchange", 10, mark)             # ... then refused
        assert await cmd(ws, "publish %s after" % b.q.other) == "true"
        rabbit.wait_counts(b.q.other, 1, 0)
        assert await cmd(ws, "ack %d" % d["id"]) == "true"     # not lost: same connection
    control(b, go)
    rabbit.wait_counts(b.q.main, 0, 0)
    m = b.g.metrics()
    assert m.get("moongate_broker_connects_total") == 1
    assert m.get('moongate_broker_settled_total{how="lost"}') == 0
    assert m.get("moongate_broker_publish_failures_total") == 1


def test_assigned_message_is_requeued_when_its_connection_closes(bg, rabbit):
    b = bg()
    since = b.g.mark()
    rabbit.publish(b.q.main, "owned")
    d = b.wait_delivery("owned", since, redelivered=False)

    async def go(ws):
        assert await cmd(ws, "assign %d" % d["id"]) == "true"
        assert await cmd(ws, "owner %d" % d["id"]) == "true"
        assert await cmd(ws, "mine") == "1"
        f = await cmd(ws, "fields %d" % d["id"])
        assert "owner=" in f and "owner=nil" not in f
    control(b, go)          # closes the connection: on_disconnect, then requeue
    b.g.wait_log(r"lua: disconnect conn \d+ unsettled\(conn\)=1", 5, since)
    again = b.wait_delivery("owned", since, redelivered=True)

    async def ack(ws):
        assert await cmd(ws, "state %d" % d["id"]) == "requeued"
        assert await cmd(ws, "ack %d" % again["id"]) == "true"
    control(b, ack)
    rabbit.wait_counts(b.q.main, 0, 0)


def test_unassign_then_close_keeps_it_unsettled(bg, rabbit):
    b = bg()
    rabbit.publish(b.q.main, "untied")
    d = b.wait_delivery("untied")

    async def go(ws):
        assert await cmd(ws, "assign %d" % d["id"]) == "true"
        assert await cmd(ws, "unassign %d" % d["id"]) == "true"
        assert await cmd(ws, "mine") == "0"
    control(b, go)
    b.g.wait_log(r"lua: disconnect conn \d+ unsettled\(conn\)=0", 5)

    async def check(ws):
        assert await cmd(ws, "state %d" % d["id"]) == "unsettled"
        assert await cmd(ws, "ack %d" % d["id"]) == "true"
    control(b, check)
    rabbit.wait_counts(b.q.main, 0, 0)


def test_a_dropped_handle_is_requeued_not_leaked(bg, rabbit):
    b = bg()
    since = b.g.mark()
    rabbit.publish(b.q.main, "drop-me")             # on_task keeps no reference
    first = b.wait_delivery("drop-me", since, redelivered=False)
    rabbit.publish(b.q.main, "kept")
    kept = b.wait_delivery("kept", since)

    async def go(ws):
        assert await cmd(ws, "drop %d" % kept["id"]) == "true"   # and this one is dropped later
        assert await cmd(ws, "gc") == "true"
        d1 = b.wait_delivery("drop-me", since, redelivered=True)
        d2 = b.wait_delivery("kept", since, redelivered=True)
        assert d1["id"] != first["id"] and d2["id"] != kept["id"]
        for d in (d1, d2):
            assert await cmd(ws, "ack %d" % d["id"]) == "true"
    control(b, go)
    rabbit.wait_counts(b.q.main, 0, 0)


def test_prefetch_bounds_deliveries_in_flight(bg, rabbit):
    b = bg(prefetch=2)
    since = b.g.mark()
    for i in range(5):
        rabbit.publish(b.q.main, "pf-%d" % i)
    b.g.wait_log_count(r"lua: delivery .*body=pf-", 2, 10, since)
    rabbit.wait_counts(b.q.main, 3, 2)
    assert b.metric("moongate_broker_deliveries_total") == 2
    d0 = b.wait_delivery("pf-0", since)
    assert control(b, lambda ws: cmd(ws, "ack %d" % d0["id"])) == "true"
    b.g.wait_log_count(r"lua: delivery .*body=pf-", 3, 10, since)
    rabbit.wait_counts(b.q.main, 2, 2)


def test_outage_lost_handles_buffered_publish_and_reconnect(bg, rabbit):
    b = bg()
    since = b.g.mark()
    rabbit.publish(b.q.main, "in-flight")
    d = b.wait_delivery("in-flight", since)
    lost_ack = []

    async def go(ws):
        assert await cmd(ws, "bstate") == "up"
        mark = b.g.mark()
        await asyncio.to_thread(rabbit.stop_app)
        b.g.wait_log(r"broker: down: .*; retrying in \d+ms", 15, mark)
        b.g.wait_log(r"lua: on_broker down \S.* state\(\)=down", 5, mark)
        assert await cmd(ws, "bstate") == "down"
        # the broker requeued it; the handle says so
        assert await cmd(ws, "state %d" % d["id"]) == "lost"
        lost_ack.append(await cmd(ws, "ack %d" % d["id"]))   # checked at the end
        assert await cmd(ws, "unsettled") == "0"
        # publishes are held while the broker is down...
        for i in range(3):
            assert await cmd(ws, "publish %s buffered-%d" % (b.q.other, i)) == "true"
        # ... and the gateway keeps serving meanwhile
        t0 = time.monotonic()
        for _ in range(20):
            assert await cmd(ws, "bstate") == "down"
        assert time.monotonic() - t0 < 2
        await asyncio.to_thread(rabbit.start_app)
        b.g.wait_log(r"broker: up amqp://127\.0\.0\.1:%d/ \(consuming %s\)"
                     % (rabbit.port, re.escape(b.q.main)), 30, mark)
        b.g.wait_log(r"lua: on_broker up .* state\(\)=up", 5, mark)
        assert await cmd(ws, "bstate") == "up"
        again = b.wait_delivery("in-flight", mark, redelivered=True)
        assert await cmd(ws, "ack %d" % again["id"]) == "true"
    control(b, go, 90)
    got = [rabbit.wait_get(b.q.other, 10) for _ in range(3)]
    assert [m[0] for m in got] == [b"buffered-0", b"buffered-1", b"buffered-2"]
    assert got[0][1] == {"src": "gw", "n": 5}
    assert (got[0][2].message_id, got[0][2].content_type, got[0][2].delivery_mode) == \
        ("pub-buffered-0", "text/plain", 2)
    rabbit.wait_counts(b.q.main, 0, 0)
    m = b.g.metrics()
    assert m.get("moongate_broker_connects_total") >= 2
    assert m.get("moongate_broker_published_total") >= 3
    assert m.get('moongate_broker_settled_total{how="lost"}') == 1
    # settling a lost handle says why (docs: broker connection lost)
    assert lost_ack == ["nil broker connection lost: the broker requeued it"]


def test_a_frozen_broker_does_not_slow_websocket_clients(bg, rabbit):
    """The broker process stopped (SIGSTOP): TCP stays up, nothing answers.
    Broker I/O is off the event loop: round trips stay fast and publishes
    are accepted at once; after SIGCONT they reach the broker."""
    b = bg()

    async def go(ws):
        base = []
        for _ in range(20):
            t0 = time.monotonic()
            assert await cmd(ws, "bstate") == "up"
            base.append(time.monotonic() - t0)
        rabbit.freeze()
        try:
            frozen = []
            for i in range(50):
                t0 = time.monotonic()
                assert await cmd(ws, "publish %s frozen-%d" % (b.q.other, i)) == "true"
                assert await cmd(ws, "unsettled") == "0"
                frozen.append(time.monotonic() - t0)
        finally:
            rabbit.thaw()
        frozen.sort()
        assert frozen[-1] < 0.25, frozen[-5:]
        assert frozen[len(frozen) // 2] < max(0.02, 5 * sorted(base)[len(base) // 2]), \
            (frozen, base)
    control(b, go)
    got = [rabbit.wait_get(b.q.other, 20)[0] for _ in range(50)]
    assert got == [("frozen-%d" % i).encode() for i in range(50)]


def test_gateway_starts_and_retries_while_the_broker_is_unreachable(gateway, rabbit):
    """A broker that is not there: the gateway serves WebSocket clients anyway
    and keeps retrying with backoff."""
    import socket as _s
    with _s.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]     # nothing listens here once closed
    q = Names()
    conf = broker_config(rabbit, q, url="amqp://guest:guest@127.0.0.1:%d/" % dead_port,
                         publish_buffer=2)
    g = gateway(SCRIPT, conf)
    g.wait_log_count(r"broker: down: .*; retrying in \d+ms", 3, 10)
    delays = [int(x) for x in re.findall(r"retrying in (\d+)ms", "\n".join(g.logs_since(0)))]
    assert delays[0] <= 400 and max(delays) <= 1500, delays   # reconnect_min 100ms, max 1s

    async def go():
        async with ws_connect(g.url) as ws:
            assert await cmd(ws, "bstate") == "down"
            # held while the broker is away, up to broker.publish_buffer
            assert await cmd(ws, "publish %s x1" % q.other) == "true"
            assert await cmd(ws, "publish %s x2" % q.other) == "true"
            assert (await cmd(ws, "publish %s x3" % q.other)).startswith("nil ")
    run(go(), 20)


def test_no_broker_section(gateway):
    g = gateway(r"""
        function on_message(conn, data)
          local ok, err = gw.broker.publish("", "q", "x")
          conn:send(("%s %s %s %d %s"):format(gw.broker.state(), tostring(ok), tostring(err),
                                              #gw.broker.unsettled(), tostring(gw.broker.message(1) == nil)))
        end
    """)

    async def go():
        async with ws_connect(g.url) as ws:
            return await cmd(ws, "x")
    assert run(go(), 20) == "off nil no broker configured 0 true"


def test_reload_keeps_owned_messages_and_requeues_unclaimed_ones(bg, rabbit):
    b = bg()
    since = b.g.mark()
    rabbit.publish(b.q.main, "owned-r")
    rabbit.publish(b.q.main, "loose-r")
    owned = b.wait_delivery("owned-r", since)
    loose = b.wait_delivery("loose-r", since)

    async def go(ws):
        assert await cmd(ws, "assign %d" % owned["id"]) == "true"
        mark = b.g.mark()
        b.g.write_script(SCRIPT)
        assert b.g.reload() == ("ok", 2)
        b.g.wait_log(r"lua: on_reload unsettled=2 owned=1", 5, mark)
        # the unclaimed one goes back to the queue and comes again
        again = b.wait_delivery("loose-r", mark, redelivered=True)
        # the owned one is settled by the new script
        assert await cmd(ws, "owner %d" % owned["id"]) == "true"
        assert await cmd(ws, "ack %d" % owned["id"]) == "true"
        assert await cmd(ws, "ack %d" % again["id"]) == "true"
        assert loose["id"] != again["id"]
    control(b, go)
    rabbit.wait_counts(b.q.main, 0, 0)


# ------------------------------------------------------------ config errors

BASE_CONF = """listen:
  - host: 127.0.0.1
    port: 18080
    path: /
script: app.lua
broker:
  url: amqp://guest:guest@127.0.0.1:5672/
  prefetch: 10
  queues:
    - name: tasks
      message_ttl: 5s
  consume: [tasks]
"""


@pytest.mark.parametrize("old,new,marker,msg", [
    ("url: amqp://guest:guest@127.0.0.1:5672/", "url: http://example.com/", "url:",
     r"broker\.url: invalid URL"),
    ("prefetch: 10", "prefetch: 0", "prefetch:", r"broker\.prefetch"),
    ("prefetch: 10", "prefetch: lots", "prefetch:", r"broker\.prefetch"),
    ("prefetch: 10", "prefetchh: 10", "prefetchh:", r"prefetchh"),
    ("message_ttl: 5s", "message_ttl: 5", "message_ttl:", r"message_ttl"),
    ("message_ttl: 5s", "ttl: 5s", "ttl:", r"ttl"),
    ("consume: [tasks]", "consume: tasks", "consume:", r"broker\.consume"),
    ("prefetch: 10", "prefetch: 10\n  reconnect_min: 5s\n  reconnect_max: 1s", "reconnect_max:",
     r"reconnect_max"),
    ("url: amqp://guest:guest@127.0.0.1:5672/", "heartbeat: 10s", "heartbeat:",
     r"missing required key 'url'"),
])
def test_bad_broker_config_is_reported_with_file_line_col(tmp_path, old, new, marker, msg):
    (tmp_path / "app.lua").write_text("-- nothing\n")
    text = BASE_CONF.replace(old, new)
    assert text != BASE_CONF
    conf = tmp_path / "conf.yaml"
    conf.write_text(text)
    r = run_cli(["-t", "-c", str(conf)])
    assert r.returncode != 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    line = line_of(text, marker)
    m = re.search(r"conf\.yaml:(\d+):(\d+): (.*)", out)
    assert m, out
    assert int(m.group(1)) == line, (out, line)
    assert re.search(msg, m.group(3)), out


def test_good_broker_config_is_accepted(tmp_path):
    (tmp_path / "app.lua").write_text("-- nothing\n")
    conf = tmp_path / "conf.yaml"
    conf.write_text(BASE_CONF + '  heartbeat: 0\n  reconnect_min: 50ms\n  reconnect_max: 2s\n'
                    '  publish_buffer: 5\n  connect_timeout: 1s\n')
    r = run_cli(["-t", "-c", str(conf)])
    assert r.returncode == 0, r.stdout + r.stderr
