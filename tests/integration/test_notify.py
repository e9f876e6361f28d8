"""sd_notify (src/notify.c): what systemd's Type=notify hears from moongate.

The test plays systemd: it binds an AF_UNIX datagram socket with
SO_PASSCRED (so each message carries its sender's pid, as systemd checks
for NotifyAccess=main), starts moongate with NOTIFY_SOCKET naming it and
reads the datagrams.  Covered, for one process (abstract socket name, '@')
and for a master with workers (socket path): READY=1 once every listener
serves (a client is answered right after it), RELOADING=1 with a
MONOTONIC_USEC on SIGHUP then READY=1, a failed reload that still ends with
READY=1 and says so in STATUS=, STOPPING=1 on SIGTERM, every message sent
by the process moongate was started as (never a worker), and a
NOTIFY_SOCKET that names no usable address only costs a warning."""

import os
import signal
import socket
import struct
import time

import pytest

from conftest import run, ws_connect, ws_recv

APP = r"""
function on_message(conn, msg) conn:send("echo " .. msg) end
"""


class Notify:
    """The service manager's end: one datagram socket, messages as dicts."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        self.seen = []  # (pid, {key: value})

    def close(self):
        self.sock.close()

    def recv(self, timeout):
        """The next message as (sender pid, {key: value}), or None after timeout."""
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return None
        pid = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        fields = dict(l.split("=", 1) for l in data.decode().split("\n") if l)
        self.seen.append((pid, fields))
        return pid, fields

    def expect(self, key, timeout=10):
        """Read until a message with key=1 arrives; returns its fields.  Fails
        on another state message first (READY/RELOADING/STOPPING out of order)."""
        deadline = time.monotonic() + timeout
        for _ in range(50):
            left = deadline - time.monotonic()
            got = self.recv(max(left, 0.01)) if left > 0 else None
            assert got is not None, "no %s=1 within %ss; seen %r" % (key, timeout, self.seen)
            fields = got[1]
            if fields.get(key) == "1":
                return fields
            states = {"READY", "RELOADING", "STOPPING"} & set(fields)
            assert not states, "expected %s=1, got %r" % (key, fields)
        raise AssertionError("too many messages without %s=1: %r" % (key, self.seen))


def check_cycle(g, n, sender):
    """READY (serving), HUP -> RELOADING + READY, bad script -> READY with the
    failure in STATUS, TERM -> STOPPING; every message from sender()."""
    ready = n.expect("READY", timeout=15)
    assert ready.get("STATUS") == "serving"

    async def echo():
        async with ws_connect(g.url) as ws:
            await ws.send("hi")
            return await ws_recv(ws)
    # No log line awaited: READY alone says the listener serves.
    assert run(echo()) == "echo hi"

    before = time.monotonic_ns() // 1000
    g.send_signal(signal.SIGHUP)
    rel = n.expect("RELOADING")
    after = time.monotonic_ns() // 1000
    assert "MONOTONIC_USEC" in rel, rel
    assert before <= int(rel["MONOTONIC_USEC"]) <= after, (before, rel, after)
    done = n.expect("READY")
    assert "reloaded" in done.get("STATUS", ""), done

    g.write_script("function on_message(conn, msg) this is not lua end\n")
    g.send_signal(signal.SIGHUP)
    n.expect("RELOADING")
    failed = n.expect("READY")
    assert "reload failed" in failed.get("STATUS", ""), failed
    assert run(echo()) == "echo hi"  # the old script still serves

    g.send_signal(signal.SIGTERM)
    stop = n.expect("STOPPING")
    assert stop.get("STATUS"), stop
    assert g.wait_exit(15) == 0
    # Nothing more after the exit, and everything came from moongate's pid.
    while n.recv(0.2) is not None:
        pass
    assert n.seen[-1][1].get("STOPPING") == "1", n.seen
    pids = {pid for pid, _ in n.seen}
    assert pids == {sender}, "senders %r, expected only %d" % (pids, sender)


def test_single_process_abstract_socket(gateway, tmp_path):
    name = "@moongate-test-%d-%d" % (os.getpid(), time.monotonic_ns())
    n = Notify("\0" + name[1:])
    try:
        g = gateway(APP, start=False, env={"NOTIFY_SOCKET": name})
        g.start(wait_ready=False)
        check_cycle(g, n, g.pid)
    finally:
        n.close()


def test_workers_path_socket_master_only(gateway, tmp_path):
    path = str(tmp_path / "notify.sock")
    n = Notify(path)
    try:
        g = gateway(APP, {"workers": 2}, start=False, env={"NOTIFY_SOCKET": path})
        g.start(wait_ready=False)
        check_cycle(g, n, g.pid)
        # Both workers had started: the master's pid alone was heard from.
        assert len(g.find_logs(r"worker \d+ ready")) >= 2
        starts = [f for _, f in n.seen if f.get("READY") == "1"]
        assert len(starts) == 3, n.seen  # start, reload, failed reload
    finally:
        n.close()


@pytest.mark.parametrize("value", ["relative/path", "@"])
def test_unusable_socket_is_a_warning(gateway, value):
    g = gateway(APP, start=False, env={"NOTIFY_SOCKET": value})
    g.start()
    g.wait_log(r"NOTIFY_SOCKET: not an AF_UNIX path or @abstract name")
    assert g.stop() == 0
