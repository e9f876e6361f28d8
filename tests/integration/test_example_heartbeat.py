"""examples/heartbeat (SPEC 2.1): clients heartbeat as "heartbeat<id>", are
registered under that id, get the gateway's own heartbeat on an interval, and
are closed with 4000 "heartbeat timeout" when silent; a duplicate id replaces
the older connection (4001); a plain GET on the WebSocket path gets 400.

Every test runs the real examples/heartbeat/heartbeat.lua with the shipped
examples/heartbeat/moongate.yaml, changed only in its ports and timings
(timeout 15s -> 600ms, the gateway's heartbeat 5s -> 200ms, close_timeout 1s).
"""
import asyncio
import os
import re
import time

import pytest
import websockets
import yaml

from conftest import ROOT, deep_merge, http_raw, plain_get, run, run_cli, ws_connect, ws_recv

EXAMPLE = os.path.join(ROOT, "examples", "heartbeat")
SHIPPED_CONF = os.path.join(EXAMPLE, "moongate.yaml")
SCRIPT = open(os.path.join(EXAMPLE, "heartbeat.lua")).read()
SHIPPED = yaml.safe_load(open(SHIPPED_CONF))
PATH = SHIPPED["listen"][0]["path"]

TIMEOUT = 0.6   # seconds; heartbeat.timeout below
EVERY = 0.2     # seconds; the gateway's own heartbeat (app.heartbeat_every_ms)
FAST = {"heartbeat": {"timeout": "600ms"},
        "limits": {"close_timeout": "1s"},
        "app": {"heartbeat_every_ms": 200}}
TICK = "heartbeat"  # what the gateway sends every EVERY


@pytest.fixture
def g(gateway):
    """The example on free ports with test timings."""
    gw = gateway(SCRIPT, start=False, path=PATH, admin=True)
    conf = deep_merge(SHIPPED, FAST)
    conf["listen"] = [dict(SHIPPED["listen"][0], port=gw.port)]
    conf["script"] = "app.lua"
    conf["admin"] = {"host": "127.0.0.1", "port": gw.admin_port}
    gw.write_config(conf)
    return gw.start()


def reply(c, timeout=5):
    """The next text message from the gateway that is not its heartbeat tick."""
    deadline = time.monotonic() + timeout
    for _ in range(1000):
        kind, data = c.recv_message(max(0.01, deadline - time.monotonic()))
        if (kind, data) != ("text", TICK):
            return data
    raise AssertionError("only ticks")


def register(g, c, cid, since):
    """Send heartbeat<cid> on raw client c; returns the conn id from the log."""
    c.send_text("heartbeat" + cid)
    assert reply(c) == "registered " + cid
    return int(g.wait_log(r"lua: registered %s as conn (\d+)" % re.escape(cid), 5,
                          since).group(1))


def who(c, cid):
    c.send_text("who " + cid)
    return reply(c)


def online(cid, conn_id):
    return re.compile(r"who %s: online, conn %d, last heartbeat (\d+) ms ago$"
                      % (re.escape(cid), conn_id))


def test_shipped_config_is_valid_with_documented_timings():
    r = run_cli(["-t", "-c", SHIPPED_CONF])
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout + r.stderr
    # the README and the comments describe these values
    assert SHIPPED["heartbeat"] == {"interval": 0, "timeout": "15s"}
    assert SHIPPED["app"]["heartbeat_every_ms"] == 5000
    assert SHIPPED["names"]["duplicate"] == "replace"


def test_registration_is_visible_to_other_clients(g, raw):
    since = g.mark()
    a, probe = raw(g.port, PATH), raw(g.port, PATH)
    cid = register(g, a, "sensor-7", since)
    m = online("sensor-7", cid).match(who(probe, "sensor-7"))
    assert m, "probe does not see sensor-7 as conn %d" % cid
    assert int(m.group(1)) < TIMEOUT * 1000
    assert who(probe, "sensor-8") == "who sensor-8: offline"
    # a second heartbeat from a registered client is recorded, not answered
    a.send_text("heartbeatsensor-7")
    a.send_text("who sensor-7")
    assert online("sensor-7", cid).match(reply(a))
    # gone: the core releases the id
    a.send_close(1000, "bye")
    g.wait_log(r"lua: sensor-7 gone: 1000 bye", 5, since)
    assert who(probe, "sensor-7") == "who sensor-7: offline"


def test_silent_client_is_closed_after_the_timeout(g, raw):
    since = g.mark()
    c = raw(g.port, PATH)
    register(g, c, "quiet-1", since)
    t0 = time.monotonic()
    c.send_text("heartbeatquiet-1")              # its last sign of life
    code, reason = c.wait_close(TIMEOUT + 3)     # skips the ticks; answers the close
    silent = time.monotonic() - t0
    assert (code, reason) == (4000, "heartbeat timeout")
    assert TIMEOUT <= silent <= TIMEOUT + 1.5, "closed after %.3fs of silence" % silent
    c.wait_eof(3)
    g.wait_log(r"lua: quiet-1 gone: 4000 heartbeat timeout", 5, since)
    # removed: the id is free again
    probe = raw(g.port, PATH)
    assert who(probe, "quiet-1") == "who quiet-1: offline"
    metrics = g.metrics()
    assert metrics.get('moongate_evictions_total{reason="heartbeat"}', 0) >= 1, metrics


def test_library_client_that_stops_heartbeating_is_closed(g):
    """Protocol pings are off in the example: a client whose library is alive
    (it reads, it would answer pings) but whose app stopped heartbeating is
    still closed."""
    async def go():
        async with ws_connect(g.url) as ws:
            t0 = time.monotonic()
            await ws.send("heartbeatlib-1")
            ticks = 0
            deadline = t0 + TIMEOUT + 3
            for _ in range(1000):
                left = deadline - time.monotonic()
                try:
                    if left <= 0:
                        raise asyncio.TimeoutError
                    m = await ws_recv(ws, left)
                except websockets.exceptions.ConnectionClosed:
                    break
                except asyncio.TimeoutError:
                    pytest.fail("still connected %.1fs after its only heartbeat"
                                % (time.monotonic() - t0))
                if m == TICK:
                    ticks += 1
                else:
                    assert m == "registered lib-1"
            silent = time.monotonic() - t0
            assert (ws.close_code, ws.close_reason) == (4000, "heartbeat timeout")
            assert TIMEOUT <= silent <= TIMEOUT + 1.5, silent
            assert ticks >= 1, "the gateway's heartbeat did not arrive before the timeout"
    run(go(), 15)
    g.wait_log(r"lua: lib-1 gone: 4000 heartbeat timeout", 5)


def test_heartbeating_client_stays_and_gets_the_gateways_heartbeat(g, raw):
    since = g.mark()
    c = raw(g.port, PATH)
    cid = register(g, c, "steady-1", since)
    t_end = time.monotonic() + 3.5 * TIMEOUT     # several timeouts
    ticks = []
    for _ in range(1000):
        now = time.monotonic()
        if now >= t_end:
            break
        c.send_text("heartbeatsteady-1")         # a heartbeat every EVERY seconds,
        next_beat = now + EVERY                  # reading the gateway's meanwhile
        for _ in range(100):
            left = next_beat - time.monotonic()
            if left <= 0:
                break
            try:
                kind, data = c.recv_message(left)
            except TimeoutError:
                break
            assert (kind, data) == ("text", TICK), "unexpected %r" % ((kind, data),)
            ticks.append(time.monotonic())
    # still connected and registered, with a fresh heartbeat
    m = online("steady-1", cid).match(who(c, "steady-1"))
    assert m and int(m.group(1)) < TIMEOUT * 1000
    assert not g.find_logs(r"steady-1 gone", since)
    # the gateway's heartbeat came on its interval
    expected = 3.5 * TIMEOUT / EVERY
    assert expected - 3 <= len(ticks) <= expected + 2, (len(ticks), expected)
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert all(EVERY / 2 <= gap <= EVERY * 2 for gap in gaps), gaps
    assert abs(sum(gaps) / len(gaps) - EVERY) < EVERY / 4, gaps


def test_duplicate_id_replaces_the_older_connection(g, raw):
    since = g.mark()
    old, new = raw(g.port, PATH), raw(g.port, PATH)
    old_id = register(g, old, "dup-1", since)
    new_id = register(g, new, "dup-1", g.mark())
    assert new_id != old_id
    assert old.wait_close(5) == (4001, "a new client with the same id connected")
    old.wait_eof(3)
    g.wait_log(r"lua: dup-1 gone: 4001 a new client with the same id connected", 5, since)
    # the newer one has the id and keeps working
    new.send_text("heartbeatdup-1")
    assert online("dup-1", new_id).match(who(new, "dup-1"))
    assert len(g.find_logs(r"dup-1 gone", since)) == 1


def test_anything_else_gets_an_error_line(g, raw):
    c = raw(g.port, PATH)
    for msg in ["hello", "heartbeat", "heartbeat has spaces", "heartbeat" + "x" * 65, "who",
                "HEARTBEATx"]:
        c.send_text(msg)
        assert reply(c).startswith("error: "), msg
    c.send_binary(b"heartbeatbin")
    assert reply(c).startswith("error: ")
    # still open and usable
    c.send_text("heartbeatok-1")
    assert reply(c) == "registered ok-1"


def test_plain_http_on_the_websocket_path_gets_400(g):
    resp = http_raw(g.port, plain_get(PATH, g.port))
    assert resp.status == 400, resp
    assert http_raw(g.port, plain_get("/elsewhere", g.port)).status == 404


def test_reload_keeps_registrations_and_one_heartbeat_timer(g, raw):
    since = g.mark()
    c = raw(g.port, PATH)
    cid = register(g, c, "reload-1", since)
    assert g.reload() == ("ok", 2)
    c.send_text("who reload-1")                  # the new script sees the old registration
    assert online("reload-1", cid).match(reply(c))
    # the new generation ticks on its own timer, and only on it
    ticks = []
    for _ in range(100):
        if len(ticks) == 6:
            break
        c.send_text("heartbeatreload-1")         # stay alive meanwhile
        kind, data = c.recv_message(2)
        assert (kind, data) == ("text", TICK), "unexpected %r" % ((kind, data),)
        ticks.append(time.monotonic())
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(gaps) == 5 and all(EVERY / 2 <= gap <= EVERY * 2 for gap in gaps), gaps
