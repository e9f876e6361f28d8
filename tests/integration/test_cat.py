"""moongate-cat, the command-line client (client/): echo in order, end of input
closes with 1000, --once, reconnect after the gateway is killed and restarted
with every line delivered exactly once, wss:// with --ca / --insecure and
certificate checks, heartbeats both ways, usage errors.

moongate-cat is run as a real process (next to $MOONGATE_BIN) with pipes on
stdin/stdout/stderr; reader threads collect its output and every wait is on a
line it prints, with a timeout.  Its stderr must carry no sanitizer report.
"""

import base64
import hashlib
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import BIN, SANITIZER_MARKERS, WS_GUID, free_port

CAT = os.path.join(os.path.dirname(BIN), "moongate-cat")

SCRIPT = """
function on_handshake(req)
  gw.log.info("XTOKEN " .. tostring(req:header("x-token")))
end
function on_connect(conn)
  gw.log.info("CONN " .. conn.id)
end
function on_message(conn, data, kind)
  gw.log.info("GOT " .. kind .. " " .. data)
  conn:send("received: " .. data, kind)
end
function on_disconnect(conn, code, reason)
  gw.log.info("DISC " .. conn.id .. " " .. tostring(code) .. " " .. tostring(reason))
end
"""

FAST = ["--backoff-min", "50", "--backoff-max", "300"]


class Cat:
    """One moongate-cat process; out / err are its stdout / stderr lines."""

    def __init__(self, args):
        self.args = args
        self.proc = subprocess.Popen([CAT] + list(args), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out, self.err = [], []
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._reader, args=(s, sink), daemon=True)
                        for s, sink in ((self.proc.stdout, self.out),
                                        (self.proc.stderr, self.err))]
        for t in self.threads:
            t.start()

    def _reader(self, stream, sink):
        for raw in iter(stream.readline, b""):
            with self.cond:
                sink.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()

    def send(self, *lines):
        for line in lines:
            self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def close_stdin(self):
        self.proc.stdin.close()

    def _wait(self, sink, pred, what, timeout, since):
        deadline = time.monotonic() + timeout
        pos = since
        with self.cond:
            while True:
                while pos < len(sink):
                    m = pred(sink[pos])
                    if m:
                        return pos, m
                    pos += 1
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and
                                 not any(t.is_alive() for t in self.threads)):
                    raise AssertionError("moongate-cat: %s not seen within %ss\nstdout: %r\n"
                                         "stderr:\n%s" % (what, timeout, self.out[-20:],
                                                          "\n".join(self.err[-40:])))
                self.cond.wait(min(left, 0.2))

    def wait_out(self, line, timeout=5, since=0):
        """Index of the stdout line equal to `line` (at index >= since)."""
        return self._wait(self.out, lambda l: l == line, "stdout %r" % line, timeout, since)[0]

    def wait_err(self, pattern, timeout=5, since=0):
        """(index, match) of the first stderr line matching `pattern`."""
        rx = re.compile(pattern)
        return self._wait(self.err, rx.search, "stderr /%s/" % pattern, timeout, since)

    def mark(self):
        with self.cond:
            return len(self.err)

    def wait_exit(self, timeout=5):
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("moongate-cat still running after %ss; stderr:\n%s"
                                 % (timeout, "\n".join(self.err[-40:])))
        for t in self.threads:
            t.join(2)
        return code

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for t in self.threads:
            t.join(2)
        for s in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture
def cat():
    """Factory: cat(args...) -> Cat; every process is stopped by PID at teardown
    and its stderr checked for sanitizer reports."""
    made = []

    def factory(*args):
        c = Cat(args)
        made.append(c)
        return c

    yield factory
    bad = []
    for c in made:
        c.stop()
        print("---- moongate-cat %s (exit %s) stderr ----" % (" ".join(c.args), c.proc.returncode))
        print("\n".join(c.err[-100:]))
        bad += [l for l in c.err if any(m in l for m in SANITIZER_MARKERS)]
    assert not bad, "sanitizer report from moongate-cat:\n" + "\n".join(bad[:20])


def got(gw, count):
    """Messages the gateway's script received, in order: ['text one', ...], once
    its log (read by another thread) shows at least `count` of them."""
    gw.wait_log_count(r"lua: GOT ", count, 5)
    return [re.search(r"lua: GOT (.*)$", l).group(1) for l in gw.find_logs(r"lua: GOT ")]


# --------------------------------------------------------------------------
# echo, end of input, --once, usage
# --------------------------------------------------------------------------

def test_echo_lines_in_order(gateway, cat):
    g = gateway(SCRIPT)
    c = cat(g.url)
    c.wait_err(r"^# connected to ws://127\.0\.0\.1:%d/" % g.port)
    lines = ["line %d" % i for i in range(20)] + ["", "ünïcødé ✓", "  spaces  "]
    c.send(*lines)
    c.wait_out("received:   spaces  ")
    assert c.out == ["received: " + l for l in lines]
    assert got(g, len(lines)) == ["text " + l for l in lines]


def test_eof_sends_the_queue_closes_with_1000_and_exits_0(gateway, cat):
    g = gateway(SCRIPT)
    c = cat(g.url)
    c.send("first", "second")
    c.proc.stdin.write(b"last line without newline")
    c.close_stdin()                       # maybe before the connection is even up
    assert c.wait_exit(5) == 0
    # replies that arrive after the last line are printed (--linger) before the close
    assert c.out == ["received: first", "received: second", "received: last line without newline"]
    assert c.err[-1] == "# closed", c.err
    g.wait_log(r"DISC \d+ 1000 ", 5)
    assert got(g, 3) == ["text first", "text second", "text last line without newline"]


def test_empty_input_connects_and_closes_cleanly(gateway, cat):
    g = gateway(SCRIPT)
    c = cat("--linger", "0", g.url)
    c.wait_err(r"^# connected")
    c.close_stdin()
    assert c.wait_exit(5) == 0
    g.wait_log(r"DISC \d+ 1000 ", 5)
    assert c.out == []


def test_once_against_a_closed_port_exits_2(cat):
    c = cat("--once", "-q", "ws://127.0.0.1:%d/" % free_port())
    assert c.wait_exit(5) == 2
    assert any(l.startswith("moongate-cat: connect failed") for l in c.err), c.err


def test_once_ends_with_the_connection(gateway, cat):
    g = gateway(SCRIPT)
    c = cat("--once", g.url)
    c.wait_err(r"^# connected")
    c.send("hello")
    c.wait_out("received: hello")
    assert g.stop() == 0                  # drain: the gateway closes with 1001
    assert c.wait_exit(5) == 2
    assert any("disconnected: 1001 server shutting down" in l for l in c.err), c.err
    assert not any("reconnecting" in l for l in c.err), c.err


def test_sigterm_closes_with_1000(gateway, cat):
    g = gateway(SCRIPT)
    c = cat(g.url)
    c.wait_err(r"^# connected")
    c.proc.send_signal(signal.SIGTERM)
    assert c.wait_exit(5) == 0
    g.wait_log(r"DISC \d+ 1000 ", 5)


@pytest.mark.parametrize("args", [
    [],
    ["http://127.0.0.1:1/"],
    ["ws://127.0.0.1:99999/"],
    ["ws://127.0.0.1:1/", "ws://127.0.0.1:2/"],
    ["--ping", "-1", "ws://127.0.0.1:1/"],
    ["--backoff-min", "500", "--backoff-max", "100", "ws://127.0.0.1:1/"],
    ["--ca", "/nonexistent.pem", "wss://127.0.0.1:1/"],
    ["--ca", "x.pem", "--insecure", "wss://127.0.0.1:1/"],
    ["-H", "no colon", "ws://127.0.0.1:1/"],
    ["--bogus", "ws://127.0.0.1:1/"],
])
def test_usage_errors_exit_1(args):
    r = subprocess.run([CAT] + args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1, (args, r.returncode, r.stderr)
    assert r.stderr.startswith("moongate-cat: "), r.stderr
    assert not any(m in r.stderr for m in SANITIZER_MARKERS), r.stderr


def test_help_documents_at_most_once():
    r = subprocess.run([CAT, "--help"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0
    assert "at most once" in r.stdout and "--backoff-max" in r.stdout, r.stdout


def test_headers_binary_and_hex(gateway, cat):
    g = gateway(SCRIPT)
    c = cat("--binary", "--hex", "-H", "X-Token: s3cret", g.url)
    c.wait_err(r"^# connected")
    g.wait_log(r"XTOKEN s3cret", 5)
    c.send("AB")
    c.wait_out(b"received: AB".hex())
    assert got(g, 1) == ["binary AB"]


# --------------------------------------------------------------------------
# reconnect
# --------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_reconnects_after_gateway_restart_delivering_each_line_once(gateway, cat, sig):
    g1 = gateway(SCRIPT)
    c = cat(*FAST, g1.url)
    c.wait_err(r"^# connected")
    c.send("one")
    c.wait_out("received: one")

    since = c.mark()
    g1.stop(sig=sig)
    expect = "1006 abnormal closure" if sig == signal.SIGKILL else "1001 server shutting down"
    c.wait_err(r"^# disconnected: " + expect, 5, since)
    # the gateway stays down through several refused attempts
    c.wait_err(r"^# reconnecting in \d+ ms \(attempt 4\)", 5, since)
    c.send("two", "three")                # typed while the server is down: queued
    assert [l for l in c.err[since:] if l.startswith("# connect failed")], c.err[since:]

    g2 = gateway(SCRIPT, start=False)     # a new gateway on the same port
    g2.port = g1.port
    g2.update_config({"listen": [{"host": "127.0.0.1", "port": g1.port, "path": "/"}]})
    g2.start()
    c.wait_err(r"^# connected .*\(2 queued lines\)", 5, since)
    c.wait_out("received: three")
    c.send("four")
    c.wait_out("received: four")
    c.close_stdin()
    assert c.wait_exit(5) == 0

    assert c.out == ["received: one", "received: two", "received: three", "received: four"]
    assert got(g1, 1) == ["text one"]
    assert got(g2, 3) == ["text two", "text three", "text four"]
    assert len(g2.find_logs(r"lua: CONN ")) == 1


def test_queue_keeps_the_newest_10000_lines_while_down(gateway, cat):
    g = gateway(SCRIPT, start=False)      # its port is closed until g.start()
    c = cat(*FAST, g.url)
    c.wait_err(r"^# reconnecting")
    c.send(*[str(i) for i in range(10050)])
    c.wait_err(r"^# warning: queue full \(10000 lines\): dropping the oldest lines")
    g.start()
    _, m = c.wait_err(r"^# warning: (\d+) lines were dropped while disconnected", 10)
    dropped = int(m.group(1))
    assert 1 <= dropped <= 50, dropped
    c.wait_out("received: 10049", 10)
    assert c.out == ["received: %d" % i for i in range(dropped, 10050)]
    assert len(got(g, 10050 - dropped)) == 10050 - dropped


def test_backoff_grows_with_jitter_and_stays_under_max(cat):
    c = cat("--backoff-min", "20", "--backoff-max", "160", "ws://127.0.0.1:%d/" % free_port())
    c.wait_err(r"\(attempt 8\)", 10)
    delays = [int(m.group(1)) for m in
              (re.search(r"reconnecting in (\d+) ms \(attempt (\d+)\)", l) for l in c.err) if m]
    assert len(delays) >= 8
    for n, d in enumerate(delays[:8], 1):
        cap = min(160, 20 * 2 ** (n - 1))
        assert cap // 2 <= d <= cap, (n, d, delays)


# --------------------------------------------------------------------------
# heartbeats
# --------------------------------------------------------------------------

def test_server_pings_keep_an_idle_client_connected(gateway, cat):
    g = gateway(SCRIPT, {"heartbeat": {"interval": "200ms", "timeout": "600ms"}})
    c = cat(g.url)
    c.wait_err(r"^# connected")
    t0 = time.monotonic()
    with pytest.raises(AssertionError):   # idle for > 3 heartbeat timeouts
        c.wait_err(r"^# disconnected", 2.0)
    assert time.monotonic() - t0 >= 2.0 and c.proc.poll() is None
    c.send("still here")
    c.wait_out("received: still here")
    assert got(g, 1) == ["text still here"]
    assert len(g.find_logs(r"lua: CONN ")) == 1
    assert not g.find_logs(r"lua: DISC ")


class SilentServer:
    """Accepts WebSocket upgrades, then never sends a byte (no pongs); records
    the opcodes of the frames the client sends."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.opcodes = []
        self.conns = []
        self.stopping = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                s, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.conns.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        s.settimeout(10)
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    return
                buf += chunk
            key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", buf).group(1)
            acc = base64.b64encode(hashlib.sha1(key + WS_GUID.encode()).digest())
            with self.lock:
                self.accepted += 1        # counted before the client can see it
            s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
            buf = buf[buf.index(b"\r\n\r\n") + 4:]
            while not self.stopping:
                while len(buf) >= 2:     # client frames: masked, small
                    n = buf[1] & 0x7F
                    if n >= 126 or len(buf) < 6 + n:
                        break
                    with self.lock:
                        self.opcodes.append(buf[0] & 0x0F)
                    buf = buf[6 + n:]
                chunk = s.recv(4096)
                if not chunk:
                    return
                buf += chunk
        except OSError:
            return

    def close(self):
        self.stopping = True
        self.thread.join(2)
        for s in self.conns + [self.sock]:
            s.close()


def test_silent_server_is_dropped_after_two_ping_intervals(cat):
    srv = SilentServer()
    try:
        c = cat(*FAST, "--ping", "0.2", "ws://127.0.0.1:%d/" % srv.port)
        c.wait_err(r"^# connected")
        _, m = c.wait_err(r"^# nothing received for ([\d.]+) s", 3)
        assert 0.4 <= float(m.group(1)) <= 1.0, m.group(0)   # 2 x 0.2 s, checked in time
        c.wait_err(r"^# disconnected: 1006 heartbeat timeout", 3)
        i, _ = c.wait_err(r"^# reconnecting", 3)
        c.wait_err(r"^# connected", 3, i)
        with srv.lock:
            assert srv.accepted >= 2
            assert 0x9 in srv.opcodes, srv.opcodes   # the client sent pings
    finally:
        srv.close()


# --------------------------------------------------------------------------
# wss://
# --------------------------------------------------------------------------

def make_cert(folder, name):
    """Self-signed certificate for `name` (an IP or a DNS name)."""
    crt, key = os.path.join(folder, name + ".crt"), os.path.join(folder, name + ".key")
    san = ("IP:" if re.match(r"^[\d.]+$", name) else "DNS:") + name
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", "/CN=" + name, "-addext", "subjectAltName=" + san],
                   check=True, capture_output=True, timeout=30)
    return crt, key


@pytest.fixture
def tls_gw(gateway, tmp_path):
    """A wss:// gateway whose certificate is for 127.0.0.1 (g.crt), plus
    g.other_crt, a certificate for 'localhost' only, served on g.other_port."""
    g = gateway(SCRIPT, start=False)
    crt, key = make_cert(g.dir, "127.0.0.1")
    ocrt, okey = make_cert(g.dir, "localhost")
    g.other_port = free_port()
    g.update_config({"listen": [
        {"host": "127.0.0.1", "port": g.port, "path": "/", "tls": {"cert": crt, "key": key}},
        {"host": "127.0.0.1", "port": g.other_port, "path": "/",
         "tls": {"cert": ocrt, "key": okey}}]})
    g.start()
    g.crt, g.other_crt = crt, ocrt
    return g


def test_wss_with_ca_echoes(tls_gw, cat):
    g = tls_gw
    c = cat("--ca", g.crt, "wss://127.0.0.1:%d/" % g.port)
    c.wait_err(r"^# connected to wss://")
    c.send("secure")
    c.wait_out("received: secure")
    c.close_stdin()
    assert c.wait_exit(5) == 0
    assert got(g, 1) == ["text secure"]


def test_wss_without_ca_fails_verification(tls_gw, cat):
    c = cat("--once", "wss://127.0.0.1:%d/" % tls_gw.port)
    assert c.wait_exit(5) == 2
    assert any(re.match(r"moongate-cat: connect failed: TLS: .*certificate", l) for l in c.err), \
        c.err
    assert not tls_gw.find_logs(r"lua: CONN ")


def test_wss_checks_the_name_in_the_certificate(tls_gw, cat):
    # trusted certificate, but issued for 'localhost', reached as 127.0.0.1
    c = cat("--once", "--ca", tls_gw.other_crt, "wss://127.0.0.1:%d/" % tls_gw.other_port)
    assert c.wait_exit(5) == 2
    assert any(re.match(r"moongate-cat: connect failed: TLS: .*mismatch", l) for l in c.err), \
        c.err


def test_wss_insecure_skips_verification(tls_gw, cat):
    c = cat("--insecure", "wss://127.0.0.1:%d/" % tls_gw.other_port)
    c.wait_err(r"^# connected")
    c.send("trust me")
    c.wait_out("received: trust me")
