"""Descriptor exhaustion does not spin: sockets that never finish their
handshake are bounded by limits.max_handshakes (the oldest makes room), and
when accept() fails for lack of descriptors the client gets a 503 from a
spare descriptor, the listener rests, CPU stays low, the log says so once a
second, and clients are served again within a second of descriptors coming
free."""

import os
import socket
import time

from conftest import handshake_request, http_raw

SCRIPT = """
local held = {}
function on_message(conn, data, kind)
  if data == "hog" then
    while true do
      local f = io.open("/dev/null")
      if not f then break end
      held[#held + 1] = f
    end
    conn:send("holding " .. #held)
    return
  elseif data == "release" then
    for _, f in ipairs(held) do f:close() end
    held = {}
    collectgarbage()
    conn:send("released")
    return
  end
  conn:send(data, kind)
end
"""


def cpu_seconds(pid):
    """User + system CPU time the process has used."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def silent(port, n):
    """n TCP connections that send nothing."""
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        out.append(s)
    return out


def served(g, raw, timeout=1.0):
    """A new client connects and gets its echo within timeout seconds."""
    t0 = time.monotonic()
    c = raw(g.port, timeout=timeout + 1)
    c.send_text("served?")
    assert c.recv_text(timeout + 1) == "served?"
    elapsed = time.monotonic() - t0
    assert elapsed < timeout, "served after %.2f s" % elapsed
    return c


def quiet(g, seconds=1.0):
    """CPU seconds and log lines the gateway spends over a window."""
    since = g.mark()
    cpu0 = cpu_seconds(g.pid)
    time.sleep(seconds)
    return cpu_seconds(g.pid) - cpu0, len(g.logs_since(since))


def test_silent_sockets_are_bounded(gateway, raw):
    g = gateway(SCRIPT, {"limits": {"max_handshakes": 50, "handshake_timeout": "30s"}},
                admin=True)
    socks = silent(g.port, 300)
    try:
        deadline = time.monotonic() + 10
        while g.metrics()["moongate_handshakes_evicted_total"] < 250 and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        m = g.metrics()
        assert m["moongate_handshakes_evicted_total"] >= 250, m
        assert m["moongate_handshakes_pending"] <= 50, m
        served(g, raw)
        cpu, lines = quiet(g)
        assert cpu < 0.3 and lines < 5, (cpu, lines)
        g.wait_log(r"sockets closed that had not finished their handshake while "
                   r"limits\.max_handshakes \(50\) others waited", 5)
    finally:
        for s in socks:
            s.close()


def test_more_silent_sockets_than_descriptors(gateway, raw):
    """With 256 descriptors in all, 600 silent connections: the bound keeps
    the gateway below the limit, so accept() never fails and new clients
    are served all along."""
    g = gateway(SCRIPT, {"limits": {"handshake_timeout": "30s"}}, admin=True,
                nofile=(256, 256))
    g.wait_log(r"open files: the hard limit \(256\) allows about 112 connections and 16 "
               r"handshakes at once", 5)
    socks = silent(g.port, 600)
    try:
        # 16 handshake slots, and a socket is closed for silence once it
        # has sent nothing for 50 ms (fdguard.c spares younger ones, a
        # connect storm's clients): the ~600 ahead of the new client go at
        # 16 per 50 ms at the slowest.
        served(g, raw, timeout=3.0)
        cpu, lines = quiet(g)
        assert cpu < 0.3 and lines < 5, (cpu, lines)
        m = g.metrics()
        assert m["moongate_accept_refused_total"] == 0, m
        assert m["moongate_handshakes_evicted_total"] >= 500, m
    finally:
        for s in socks:
            s.close()


def test_out_of_descriptors_answers_503_and_rests(gateway, raw):
    """The script holds every descriptor left (io.open until it fails).
    New clients then get a 503 from the spare descriptor, the gateway does
    not spin (it used to: 100% CPU, 56,000 log lines a second), and once
    the files are closed a new client is served within a second."""
    g = gateway(SCRIPT, {}, admin=True, nofile=(256, 256))
    c = raw(g.port)
    c.send_text("hog")
    assert c.recv_text(5).startswith("holding ")
    for _ in range(3):
        r = http_raw(g.port, handshake_request("/", g.port), timeout=5)
        assert r.status == 503 and b"out of file descriptors" in r.body, r
    # a client that connects and waits meanwhile
    waiting = socket.create_connection(("127.0.0.1", g.port), timeout=5)
    try:
        cpu, lines = quiet(g, 1.5)
        assert cpu < 0.3, "the gateway used %.2f s of CPU in 1.5 s" % cpu
        assert lines < 8, lines
        g.wait_log(r"out of file descriptors: \d+ connections answered 503", 5)
        c.send_text("release")
        assert c.recv_text(5) == "released"
        served(g, raw)
        assert g.metrics()["moongate_accept_refused_total"] >= 3
        assert g.alive()
    finally:
        waiting.close()
