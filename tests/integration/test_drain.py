"""Graceful shutdown: SIGTERM/SIGINT send close 1001 to every client, refuse
new connections, run on_disconnect for each, exit 0 after the close
handshakes and never later than drain_timeout."""

import asyncio
import os
import re
import signal
import socket
import time

import pytest

from conftest import (_read_http_response, handshake_request, run, ws_connect, ws_recv,
                      ws_wait_closed)

SCRIPT = """
function on_connect(conn)
  gw.log.info("CONN " .. conn.id)
end
function on_message(conn, data, kind)
  conn:send(data, kind)
end
function on_disconnect(conn, code, reason)
  local f = assert(io.open(gw.config.app.outfile, "a"))
  f:write(conn.id .. " " .. tostring(code) .. " " .. tostring(reason) .. "\\n")
  f:close()
end
"""


def make(gateway, tmp_path, **limits):
    out = str(tmp_path / "disconnects.txt")
    cfg = {"app": {"outfile": out}, "shutdown": {"drain_timeout": limits.pop("drain", "10s")}}
    if limits:
        cfg["limits"] = limits
    g = gateway(SCRIPT, cfg)
    return g, out


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [l.split(" ", 2) for l in f.read().splitlines()]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_drain_closes_every_client_with_1001(gateway, tmp_path, sig):
    g, out = make(gateway, tmp_path)          # drain_timeout 10s
    n = 5

    async def go():
        since = g.mark()
        conns = [await ws_connect(g.url) for _ in range(n)]
        for i, ws in enumerate(conns):
            await ws.send("m%d" % i)
            assert await ws_recv(ws) == "m%d" % i
        g.wait_log_count(r"CONN \d+", n, 5, since)
        ids = sorted(int(l.split("CONN ")[1]) for l in g.find_logs(r"CONN \d+", since))
        t0 = time.monotonic()
        g.send_signal(sig)
        codes = await asyncio.gather(*[ws_wait_closed(ws, 8) for ws in conns])
        assert codes == [(1001, "server shutting down")] * n, codes
        return ids, t0

    ids, t0 = run(go(), 30)
    code = g.wait_exit(8)
    elapsed = time.monotonic() - t0
    assert code == 0
    assert elapsed < 5.0, "exit took %.1fs although all clients closed (drain_timeout 10s)" % elapsed
    g.wait_log(r"draining %d connections?" % n, 2)
    g.wait_log(r"shutdown complete", 2)
    lines = read_lines(out)
    assert sorted(int(l[0]) for l in lines) == ids, lines
    assert all(l[1] == "1001" and l[2] == "server shutting down" for l in lines), lines


def test_no_clients_exits_quickly(gateway, tmp_path):
    g, out = make(gateway, tmp_path)
    t0 = time.monotonic()
    assert g.stop(5) == 0
    assert time.monotonic() - t0 < 3.0
    g.wait_log(r"draining 0 connections?", 2)
    g.wait_log(r"shutdown complete", 2)
    assert read_lines(out) == []


def test_drain_waits_for_close_handshake_and_refuses_newcomers(gateway, tmp_path, raw):
    """While a client has not answered the 1001 close, the gateway keeps its TCP
    connection open and keeps draining (it does not just drop it); newcomers
    are not accepted meanwhile; once the client answers, the gateway closes
    the connection and exits 0, well before drain_timeout."""
    g, out = make(gateway, tmp_path, drain="4s", close_timeout="30s")
    slow = raw(g.port)
    slow.send_text("x")
    assert slow.recv_text() == "x"
    since = g.mark()
    t0 = time.monotonic()
    g.send_signal(signal.SIGTERM)
    g.wait_log(r"draining 1 connections?", 5, since)
    assert slow.wait_close(5, reply=False) == (1001, "server shutting down")
    # the close handshake is pending: the TCP connection must stay open
    with pytest.raises(TimeoutError):
        slow.recv_frame(0.5)
    assert g.alive(), "gateway exited before the close handshake completed"
    # a newcomer is not accepted as a WebSocket client
    refused = False
    try:
        s = socket.create_connection(("127.0.0.1", g.port), timeout=3)
    except ConnectionRefusedError:
        refused = True
    if not refused:
        try:
            s.sendall(handshake_request("/", g.port))
            r = _read_http_response(s, bytearray(), 3)
            assert r.status != 101, "new WebSocket accepted while draining"
        except (EOFError, ConnectionError):
            pass
        finally:
            s.close()
    # now answer: the gateway completes the close and exits
    slow.send_close(1001)
    assert slow.wait_eof(3) < 2.0
    code = g.wait_exit(5)
    assert code == 0
    assert time.monotonic() - t0 < 3.5, "exit should follow the last close handshake"
    lines = read_lines(out)
    assert len(lines) == 1, lines                # on_disconnect ran for it


def test_unresponsive_client_bounded_by_drain_timeout(gateway, tmp_path, raw):
    g, out = make(gateway, tmp_path, drain="2s", close_timeout="30s")
    stubborn = [raw(g.port) for _ in range(2)]
    for c in stubborn:
        c.send_text("s")
        assert c.recv_text() == "s"

    async def go():
        conns = [await ws_connect(g.url) for _ in range(3)]
        for ws in conns:
            await ws.send("g")
            assert await ws_recv(ws) == "g"
        t0 = time.monotonic()
        g.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*[ws_wait_closed(ws, 5) for ws in conns])
        assert all(c == (1001, "server shutting down") for c in codes), codes
        return t0

    t0 = run(go(), 30)
    for c in stubborn:
        assert c.wait_close(5, reply=False)[0] == 1001
    code = g.wait_exit(8)
    elapsed = time.monotonic() - t0
    assert code == 0
    assert elapsed <= 2.0 + 2.5, "drain_timeout 2s, exit after %.1fs" % elapsed
    # two clients never answered the close: the drain waited for them
    assert elapsed >= 1.5, "exited after %.2fs without waiting for pending close " \
        "handshakes (drain_timeout 2s)" % elapsed
    lines = read_lines(out)
    assert len(lines) == 5, lines               # exactly one on_disconnect each
    assert len({l[0] for l in lines}) == 5
    assert sum(1 for l in lines if l[1] == "1001") >= 3


def test_second_signal_during_drain_is_harmless(gateway, tmp_path, raw):
    g, out = make(gateway, tmp_path, drain="2s", close_timeout="30s")
    c = raw(g.port)
    since = g.mark()
    g.send_signal(signal.SIGTERM)
    g.wait_log(r"draining 1 connections?", 5, since)
    g.send_signal(signal.SIGTERM)
    g.send_signal(signal.SIGHUP)
    assert g.wait_exit(8) == 0                  # no crash, still a clean exit
