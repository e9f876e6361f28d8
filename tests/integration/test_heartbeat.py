"""Protocol heartbeat (server pings, eviction after silence) and the core's
text Ping/Pong."""

import asyncio
import time

import pytest

from conftest import OP_PING, WSClosed, metric_sum, run, ws_connect, ws_recv

SCRIPT = """
function on_connect(conn)
  gw.log.info("CONN " .. conn.id)
end
function on_message(conn, data, kind)
  conn:send("lua:" .. data, kind)
end
function on_disconnect(conn, code, reason)
  gw.log.info("DISC " .. conn.id .. " " .. tostring(code) .. " " .. tostring(reason))
end
"""

HB = {"heartbeat": {"interval": "200ms", "timeout": "600ms",
                    "text_ping": "Ping", "text_pong": "Pong"}}


@pytest.fixture
def gw(gateway):
    return gateway(SCRIPT, HB, admin=True)


def conn_id(gw, since):
    return int(gw.wait_log(r"CONN (\d+)", 5, since).group(1))


def stay_for(c, seconds, auto_pong=True):
    """Keep reading (answering pings if auto_pong) for `seconds`; fails if the
    connection is closed or a data message arrives."""
    t0 = time.monotonic()
    deadline = t0 + seconds
    for _ in range(10000):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            kind, data = c.recv_message(left, auto_pong=auto_pong)
        except TimeoutError:
            return
        except WSClosed as e:
            pytest.fail("connection closed after %.2fs (%d pings seen): %r %r"
                        % (time.monotonic() - t0, len(c.pings), e.code, e.reason))
        pytest.fail("unexpected message %r" % (data,))


def test_silent_client_gets_pings_then_evicted(gw, raw):
    since = gw.mark()
    c = raw(gw.port)
    t0 = time.monotonic()
    cid = conn_id(gw, since)
    code, reason = c.wait_close(5, reply=True, auto_pong=False)
    elapsed = time.monotonic() - t0
    assert (code, reason) == (4000, "heartbeat timeout")
    assert 0.45 <= elapsed <= 2.5, "evicted after %.2fs with a 600ms timeout" % elapsed
    times = [t for t, _ in c.pings]
    assert len(times) >= 2, "expected pings every 200ms before the eviction, got %d" % len(times)
    assert 0.1 <= times[0] - t0 <= 0.8, times[0] - t0
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(0.1 <= g <= 0.6 for g in gaps), gaps
    gw.wait_log(r"DISC %d 4000 heartbeat timeout" % cid, 5, since)
    c.wait_eof(5)
    assert metric_sum(gw.metrics(), "moongate_evictions_total") >= 1


def test_client_answering_pings_stays_connected(gw, raw):
    since = gw.mark()
    c = raw(gw.port)
    cid = conn_id(gw, since)
    stay_for(c, 2.0, auto_pong=True)           # > 3 heartbeat timeouts
    assert len(c.pings) >= 5, len(c.pings)
    c.send_text("still here")
    assert c.recv_message(5) == ("text", "lua:still here")
    assert not gw.find_logs(r"DISC %d " % cid, since)


def test_websockets_client_stays_connected(gw):
    async def go():
        async with ws_connect(gw.url) as ws:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 2.0)  # library answers the pings
            await ws.send("alive")
            assert await ws_recv(ws) == "lua:alive"
    run(go())


def test_any_frame_counts_as_activity(gw, raw):
    """A client that never answers pings but keeps sending messages is not evicted."""
    c = raw(gw.port)
    t_end = time.monotonic() + 2.0
    for i in range(100):
        if time.monotonic() >= t_end:
            break
        c.send_text("tick %d" % i)
        assert c.recv_message(5, auto_pong=False) == ("text", "lua:tick %d" % i)
        # let ~150ms pass while reading (and not answering) pings
        try:
            f = c.recv_frame(0.15)
            assert f.opcode == OP_PING, f
            c.pings.append((time.monotonic(), f.payload))
        except TimeoutError:
            pass
    assert i >= 8
    c.send_text("end")
    assert c.recv_message(5, auto_pong=False) == ("text", "lua:end")


def test_text_ping_answered_by_core(gw, raw):
    c = raw(gw.port)
    c.send_text("Ping")
    assert c.recv_message(5) == ("text", "Pong")     # Lua would have said "lua:Ping"
    c.send_text("Pingx")
    assert c.recv_message(5) == ("text", "lua:Pingx")
    c.send_text("ping")
    assert c.recv_message(5) == ("text", "lua:ping")
    for _ in range(3):
        c.send_text("Ping")
    assert [c.recv_message(5) for _ in range(3)] == [("text", "Pong")] * 3


def test_text_ping_keeps_connection_alive(gw, raw):
    """An app-level Ping is a received frame: the client is not evicted."""
    c = raw(gw.port)
    t_end = time.monotonic() + 1.6
    for i in range(100):
        if time.monotonic() >= t_end:
            break
        c.send_text("Ping")
        assert c.recv_message(5, auto_pong=False) == ("text", "Pong")
        try:
            c.recv_frame(0.15)
        except TimeoutError:
            pass
    c.send_text("x")
    assert c.recv_message(5, auto_pong=False) == ("text", "lua:x")


def test_pings_off_timeout_still_evicts(gateway, raw):
    g = gateway(SCRIPT, {"heartbeat": {"interval": 0, "timeout": "600ms"}})
    since = g.mark()
    c = raw(g.port)
    cid = conn_id(g, since)
    t0 = time.monotonic()
    assert c.wait_close(5, auto_pong=False) == (4000, "heartbeat timeout")
    assert 0.45 <= time.monotonic() - t0 <= 2.5
    assert c.pings == []
    g.wait_log(r"DISC %d 4000 heartbeat timeout" % cid, 5, since)


def test_timeout_off_never_evicts(gateway, raw):
    g = gateway(SCRIPT, {"heartbeat": {"interval": "200ms", "timeout": 0}})
    c = raw(g.port)
    stay_for(c, 1.5, auto_pong=False)
    assert len(c.pings) >= 3
    c.send_text("here")
    assert c.recv_message(5, auto_pong=False) == ("text", "lua:here")
