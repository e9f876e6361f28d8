"""Shared fixtures and helpers for the moongate integration tests.

Every test starts its own gateway (real binary, from $MOONGATE_BIN) on free
127.0.0.1 ports with a config and a Lua script written into the test's
tmp_path, drives it with real clients (the `websockets` library, or the raw
socket client below for protocol-level checks) and stops it by PID.

Synchronisation is by events only: gateway log lines (read from stderr by a
background thread, see Gateway.wait_log), received messages and close frames.
Every wait has a timeout and every loop is bounded.

Run with Debian's interpreter:
    MOONGATE_BIN=build/moongate MOONGATE_ROOT=. /usr/bin/python3 -m pytest -q tests/integration
"""

import asyncio
import base64
import hashlib
import http.client
import json
import os
import re
import resource
import signal
import socket
import struct
import subprocess
import textwrap
import threading
import time

import pytest
import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("MOONGATE_ROOT") or os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("MOONGATE_BIN") or os.path.join(ROOT, "build", "moongate")
# Who parses frames on the tests' plain listeners: moongate's own reader (the
# default) or libwebsockets' (MOONGATE_TEST_READER=libwebsockets; ctest runs
# the frame-level files both ways).
READER = os.environ.get("MOONGATE_TEST_READER") or "moongate"

# The binary is a ThreadSanitizer build (ctest sets this for build-tsan).
# TSan delivers a signal only when the thread next enters a function it
# intercepts, which LuaJIT's interpreter running a pure Lua loop never does:
# the hook budget's abort signal never lands there.  Tests that need a
# runaway hook aborted are skipped (and reported skipped) on that build;
# every other test runs.
TSAN = bool(os.environ.get("MOONGATE_TSAN"))
NEEDS_ABORT = pytest.mark.skipif(TSAN, reason="ThreadSanitizer holds the budget's signal "
                                              "back from a pure Lua loop")

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA


# --------------------------------------------------------------------------
# small utilities
# --------------------------------------------------------------------------

_PORTS_GIVEN = []


def free_port():
    """A currently free TCP port on 127.0.0.1 (bind to port 0, read it back),
    never one of the last 1,000 this process was given: a port handed out
    for a gateway not started yet is still free, and the kernel may offer
    it again (two listeners of one config got the same port that way)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _PORTS_GIVEN:
            break
    _PORTS_GIVEN.append(port)
    del _PORTS_GIVEN[:-1000]
    return port


def lua(src):
    """Dedent an inline Lua script."""
    return textwrap.dedent(src).lstrip("\n")


def line_of(text, marker):
    """1-based number of the first line of `text` containing `marker`."""
    for i, line in enumerate(text.splitlines(), 1):
        if marker in line:
            return i
    raise ValueError("marker %r not found" % marker)


def deep_merge(base, over):
    """Merge dict `over` into a copy of `base`; a None value deletes the key."""
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


_PLAIN = re.compile(r"^[A-Za-z_/.][A-Za-z0-9_./@+-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def _yaml_scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v)
    if _PLAIN.match(s) and s.lower() not in _RESERVED:
        return s
    # sizes/durations such as 250ms, 1MiB, 64KiB are safe plain scalars too
    if re.match(r"^[0-9]+[A-Za-z]+$", s):
        return s
    return json.dumps(s)


def to_yaml(obj, indent=0):
    """Tiny block-style YAML emitter for dicts/lists/scalars (no empty collections)."""
    pad = "  " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)):
                assert v, "empty collections are not emitted"
                lines.append("%s%s:" % (pad, k))
                lines.append(to_yaml(v, indent + 1))
            else:
                lines.append("%s%s: %s" % (pad, k, _yaml_scalar(v)))
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict):
                sub = to_yaml(item, indent + 1).split("\n")
                sub[0] = pad + "- " + sub[0].lstrip()
                lines.extend(sub)
            elif isinstance(item, list):
                raise ValueError("nested lists are not supported")
            else:
                lines.append("%s- %s" % (pad, _yaml_scalar(item)))
    else:
        lines.append(pad + _yaml_scalar(obj))
    return "\n".join(lines)


def parse_metrics(text):
    """Prometheus text -> {series: value}; series is 'name' or 'name{labels}'."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)", line)
        if m:
            try:
                out[m.group(1)] = float(m.group(2))
            except ValueError:
                pass
    return out


def metric_sum(metrics, name):
    """Sum of every series of metric `name` (with or without labels)."""
    total = 0.0
    for series, value in metrics.items():
        if series == name or series.startswith(name + "{"):
            total += value
    return total


def run(coro, timeout=60):
    """Run an asyncio coroutine from a synchronous test, with a global timeout."""
    async def _wrapped():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(_wrapped())


def ws_connect(url, **kw):
    """websockets client with test-friendly defaults (no client pings, no size cap).
    Use as `ws = await ws_connect(url)` or `async with ws_connect(url) as ws`."""
    opts = dict(ping_interval=None, max_size=None, close_timeout=3, open_timeout=5)
    opts.update(kw)
    return websockets.connect(url, **opts)


async def ws_recv(ws, timeout=5):
    return await asyncio.wait_for(ws.recv(), timeout)


async def ws_expect(ws, text, timeout=5, limit=100):
    """Read until a message equal to text arrives (each read within timeout);
    returns the messages before it.  Fails after limit other messages."""
    seen = []
    for _ in range(limit):
        m = await ws_recv(ws, timeout)
        if m == text:
            return seen
        seen.append(m)
    raise AssertionError("never got %r; got %r" % (text, seen))


async def ws_wait_closed(ws, timeout=5):
    """Wait for the connection to close (reading and discarding messages);
    returns (code, reason) of the close frame received (1006 if none)."""
    deadline = time.monotonic() + timeout
    for _ in range(100000):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("websocket not closed within %ss" % timeout)
        try:
            await asyncio.wait_for(ws.recv(), left)
        except websockets.exceptions.ConnectionClosed:
            break
        except asyncio.TimeoutError:
            raise AssertionError("websocket not closed within %ss" % timeout)
    await asyncio.wait_for(ws.wait_closed(), max(0.1, deadline - time.monotonic()) + 3)
    return ws.close_code, ws.close_reason


# --------------------------------------------------------------------------
# the gateway process
# --------------------------------------------------------------------------

class Gateway:
    """One moongate process with its own folder, config and script.

    gw = Gateway(dir, script, config_overrides, admin=True)
    gw.start()                 # waits for 'moongate ready'
    gw.port / gw.url / gw.admin_port
    gw.wait_log(r'regex', timeout, since=gw.mark())
    gw.write_script(src); gw.reload() -> ('ok', gen) | ('failed', reason)
    gw.stop() -> exit code
    """

    def __init__(self, folder, script, config=None, admin=False, admin_token=None,
                 path="/", conf_text=None, reader=None, nofile=None, env=None):
        self.dir = str(folder)
        self.env = env  # variables added to the process's environment
        self.nofile = nofile  # (soft, hard) open-files limit the process starts with
        self.reader = reader or READER
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.path = path
        self.admin_port = free_port() if (admin or admin_token) else None
        self.admin_token = admin_token
        self.conf_path = os.path.join(self.dir, "conf.yaml")
        self.script_path = os.path.join(self.dir, "app.lua")
        self.config = self.default_config()
        if config:
            self.config = deep_merge(self.config, config)
        if self.admin_port:
            adm = {"host": "127.0.0.1", "port": self.admin_port}
            if admin_token:
                adm["token"] = admin_token
            self.config["admin"] = adm
        self.proc = None
        self.log_lines = []
        self.out_lines = []
        self.eof = False
        self.cond = threading.Condition()
        self._threads = []
        self.write_script(script)
        if conf_text is not None:
            self.write_conf_text(conf_text)
        else:
            self.write_config()

    # ---- files ----
    def default_config(self):
        return {
            "listen": [{"host": "127.0.0.1", "port": self.port, "path": self.path,
                        "reader": self.reader}],
            "script": "app.lua",
            "limits": {"close_timeout": "1s"},
            "shutdown": {"drain_timeout": "3s"},
            "log": {"level": "info", "format": "text"},
        }

    def write_script(self, src):
        with open(self.script_path, "w") as f:
            f.write(lua(src))

    def write_config(self, config=None):
        if config is not None:
            self.config = config
        self.write_conf_text(to_yaml(self.config) + "\n")

    def write_conf_text(self, text):
        with open(self.conf_path, "w") as f:
            f.write(text)

    def update_config(self, overrides):
        self.write_config(deep_merge(self.config, overrides))

    # ---- process ----
    @property
    def url(self):
        return "ws://127.0.0.1:%d%s" % (self.port, self.path)

    def url_for(self, suffix):
        return "ws://127.0.0.1:%d%s" % (self.port, suffix)

    def start(self, args=None, wait_ready=True, timeout=10):
        cmd = [BIN] + (args if args is not None else ["-c", self.conf_path])
        # run from another folder: relative paths in the config must resolve
        # against the config file's folder, not the working directory
        self.cwd = self.dir.rstrip("/") + "-cwd"
        os.makedirs(self.cwd, exist_ok=True)
        limit = None
        if self.nofile:
            limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)  # noqa: E731
        env = dict(os.environ, **self.env) if self.env else None
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=limit, env=env)
        t1 = threading.Thread(target=self._reader, args=(self.proc.stderr, self.log_lines, True),
                              daemon=True)
        t2 = threading.Thread(target=self._reader, args=(self.proc.stdout, self.out_lines, False),
                              daemon=True)
        t1.start()
        t2.start()
        self._threads = [t1, t2]
        if wait_ready:
            self.wait_log(r"moongate ready", timeout)
        return self

    def _reader(self, stream, sink, is_log):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self.cond:
                sink.append(line)
                self.cond.notify_all()
        with self.cond:
            if is_log:
                self.eof = True
            self.cond.notify_all()

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        assert self.proc is not None
        self.proc.send_signal(sig)

    def mark(self):
        """Index of the next log line; pass as since= to wait for new lines only."""
        with self.cond:
            return len(self.log_lines)

    def logs_since(self, since=0):
        with self.cond:
            return list(self.log_lines[since:])

    def find_logs(self, pattern, since=0):
        rx = re.compile(pattern)
        return [l for l in self.logs_since(since) if rx.search(l)]

    def log_tail(self, n=60):
        with self.cond:
            return "\n".join(self.log_lines[-n:])

    def wait_log(self, pattern, timeout=5.0, since=0):
        """Wait until a log line at index >= since matches `pattern`; returns the
        re.Match.  Fails early if the process closed its stderr (exited)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        pos = since
        with self.cond:
            while True:
                while pos < len(self.log_lines):
                    m = rx.search(self.log_lines[pos])
                    if m:
                        return m
                    pos += 1
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    why = "gateway exited" if self.eof else "timeout %.1fs" % timeout
                    raise AssertionError("log line /%s/ not seen (%s); log tail:\n%s"
                                         % (pattern, why, "\n".join(self.log_lines[-60:])))
                self.cond.wait(min(left, 0.5))

    def wait_log_count(self, pattern, count, timeout=5.0, since=0):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                n = sum(1 for l in self.log_lines[since:] if rx.search(l))
                if n >= count:
                    return n
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    raise AssertionError("expected %d lines /%s/, saw %d; log tail:\n%s"
                                         % (count, pattern, n, "\n".join(self.log_lines[-60:])))
                self.cond.wait(min(left, 0.5))

    def reload(self, timeout=10.0):
        """SIGHUP and wait for the outcome: ('ok', generation) or ('failed', reason)."""
        since = self.mark()
        self.send_signal(signal.SIGHUP)
        m = self.wait_log(r"reload (?:ok \(generation (\d+), \d+ ms\)|failed: (.*))", timeout, since)
        if m.group(1) is not None:
            return ("ok", int(m.group(1)))
        return ("failed", m.group(2))

    def wait_exit(self, timeout):
        """The exit code, once the process has exited and every line it wrote
        to stderr has been read (find_logs right after sees its last lines)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("gateway did not exit within %ss; log tail:\n%s"
                                 % (timeout, self.log_tail()))
        with self.cond:
            self.cond.wait_for(lambda: self.eof, timeout=10)
        return code

    def stop(self, timeout=10.0, sig=signal.SIGTERM):
        """Send SIGTERM (or sig) and return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.wait_exit(timeout)
        for t in self._threads:
            t.join(2)
        return code

    def cleanup(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        for t in self._threads:
            t.join(2)
        for s in (self.proc.stdout, self.proc.stderr):
            try:
                s.close()
            except Exception:
                pass

    # ---- admin HTTP ----
    def http(self, method, path, body=None, headers=None, port=None, timeout=5, auth=True):
        """One HTTP request -> (status, {lower-case header: value}, body bytes).
        Sends the admin bearer token when auth and a token is configured."""
        port = port or self.admin_port
        hdrs = dict(headers or {})
        if auth and self.admin_token and port == self.admin_port:
            hdrs.setdefault("Authorization", "Bearer " + self.admin_token)
        if isinstance(body, str):
            body = body.encode()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def health(self):
        status, _, body = self.http("GET", "/health")
        assert status == 200, (status, body)
        return json.loads(body)

    def metrics(self):
        status, _, body = self.http("GET", "/metrics")
        assert status == 200, (status, body)
        return parse_metrics(body.decode())

    def metrics_text(self):
        status, _, body = self.http("GET", "/metrics")
        assert status == 200, (status, body)
        return body.decode()


@pytest.fixture
def gateway(tmp_path):
    """Factory: gateway(script, config_overrides=None, start=True, **Gateway kwargs).
    Every gateway it made is stopped by PID at teardown (SIGTERM, wait, SIGKILL);
    its log is printed (pytest shows it for failing tests)."""
    made = []

    def factory(script, config=None, start=True, **kw):
        g = Gateway(tmp_path / ("gw%d" % len(made)), script, config, **kw)
        made.append(g)
        if start:
            g.start()
        return g

    yield factory
    problems = []
    for g in made:
        running = g.proc is not None and g.proc.poll() is None
        g.cleanup()
        print("---- gateway %s log (%d lines) ----" % (g.dir, len(g.log_lines)))
        print("\n".join(g.log_lines[-200:]))
        bad = sanitizer_lines(g.log_lines)
        if bad:
            problems.append("%s: sanitizer report:\n%s" % (g.dir, "\n".join(bad[:20])))
        # A gateway still running at teardown is stopped with SIGTERM and must
        # drain and exit 0 (under ASan this is also where leaks are reported).
        if running and g.proc.returncode != 0:
            problems.append("%s: exit code %s after SIGTERM at teardown"
                            % (g.dir, g.proc.returncode))
    if problems:
        pytest.fail("\n".join(problems))


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: AddressSanitizer", "WARNING: ThreadSanitizer")


def make_cert(folder):
    """A self-signed certificate for 127.0.0.1 (CN and SAN) in folder ->
    (crt, key) paths."""
    os.makedirs(folder, exist_ok=True)
    crt = os.path.join(folder, "server.crt")
    key = os.path.join(folder, "server.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", crt],
                   check=True, capture_output=True, timeout=60)
    return crt, key


def worker_pids(g):
    """{worker: pid} from a gateway's 'worker K ready (pid P)' lines, the
    latest of each worker winning (a restarted worker logs a new one)."""
    pids = {}
    for line in g.logs_since(0):
        m = re.search(r"worker (\d+) ready \(pid (\d+)\)", line)
        if m:
            pids[int(m.group(1))] = int(m.group(2))
    return pids


def sanitizer_lines(lines):
    """Lines of an ASan/LSan/UBSan report (the sanitizer build writes them to stderr)."""
    return [l for l in lines if any(m in l for m in SANITIZER_MARKERS)]


def run_cli(args, cwd=None, timeout=10):
    """Run the binary to completion -> CompletedProcess (text).  Fails the test
    on a sanitizer report, whatever exit code the test expects."""
    r = subprocess.run([BIN] + list(args), cwd=cwd, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    bad = sanitizer_lines(r.stderr.splitlines())
    assert not bad, "sanitizer report from %s:\n%s" % (args, "\n".join(bad))
    return r


# --------------------------------------------------------------------------
# raw HTTP / WebSocket client (for protocol-level checks)
# --------------------------------------------------------------------------

def make_key(nbytes=16):
    return base64.b64encode(os.urandom(nbytes)).decode()


def accept_for(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def handshake_request(path="/", port=0, key=None, version="13", upgrade="websocket",
                      connection="Upgrade", extra=None, omit=()):
    """Build an HTTP upgrade request. Headers in `omit` (lower-case names) are left out;
    key=None makes a fresh valid key."""
    key = make_key() if key is None else key
    hdrs = [("Host", "127.0.0.1:%d" % port), ("Upgrade", upgrade), ("Connection", connection),
            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", version)]
    hdrs += list((extra or {}).items())
    lines = ["GET %s HTTP/1.1" % path]
    for k, v in hdrs:
        if k.lower() in omit or v is None:
            continue
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def plain_get(path="/", port=0, extra=None):
    lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port, "Connection: close"]
    for k, v in (extra or {}).items():
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class HTTPResponse:
    def __init__(self, status, reason, headers, body, leftover=b""):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case name -> value
        self.body = body
        self.leftover = leftover

    def __repr__(self):
        return "HTTPResponse(%d %s, %r, %r)" % (self.status, self.reason, self.headers,
                                               self.body[:200])



def _recv_into(sock, buf, deadline, want=None):
    """Append to buf until it holds want bytes (or EOF, when want is None),
    the peer closes, or the deadline passes."""
    for _ in range(100000):
        if want is not None and len(buf) >= want:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            return
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ConnectionError):
            return
        if not chunk:
            return
        buf += chunk

def _read_http_response(sock, buf, timeout):
    """Read one HTTP response from sock; buf is a bytearray of already-read bytes.
    Returns HTTPResponse; for 101 leaves the rest in .leftover."""
    deadline = time.monotonic() + timeout
    for _ in range(100000):
        idx = buf.find(b"\r\n\r\n")
        if idx >= 0:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no HTTP response head within %ss (got %r)" % (timeout, bytes(buf)))
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no HTTP response head within %ss (got %r)" % (timeout, bytes(buf)))
        if not chunk:
            raise EOFError("connection closed before a complete HTTP response (got %r)" % bytes(buf))
        buf += chunk
    head = bytes(buf[:idx]).decode("latin-1")
    del buf[:idx + 4]
    lines = head.split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3}) ?(.*)", lines[0])
    assert m, "bad status line %r" % lines[0]
    status, reason = int(m.group(1)), m.group(2)
    headers = {}
    for l in lines[1:]:
        if ":" in l:
            k, v = l.split(":", 1)
            k = k.strip().lower()
            headers[k] = (headers[k] + ", " + v.strip()) if k in headers else v.strip()
    if status == 101:
        return HTTPResponse(status, reason, headers, b"", bytes(buf))
    body = b""
    if "content-length" in headers:
        n = int(headers["content-length"])
        _recv_into(sock, buf, deadline, n)
        body = bytes(buf[:n])
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = _read_chunked(sock, buf, deadline)
    else:
        # read until EOF (or a short idle timeout)
        _recv_into(sock, buf, min(deadline, time.monotonic() + 2))
        body = bytes(buf)
    return HTTPResponse(status, reason, headers, body)


def _read_chunked(sock, buf, deadline):
    out = b""

    def fill(pred):
        for _ in range(100000):
            if pred():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except (socket.timeout, ConnectionError):
                return False
            if not chunk:
                return pred()
            buf.extend(chunk)
        return False

    for _ in range(10000):
        if not fill(lambda: b"\r\n" in buf):
            break
        i = buf.find(b"\r\n")
        size = int(bytes(buf[:i]).split(b";")[0].strip() or b"0", 16)
        del buf[:i + 2]
        if size == 0:
            break
        if not fill(lambda: len(buf) >= size + 2):
            out += bytes(buf)
            break
        out += bytes(buf[:size])
        del buf[:size + 2]
    return out


def http_raw(port, request, timeout=5):
    """Send raw request bytes to 127.0.0.1:port and read one response."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(request)
        return _read_http_response(s, bytearray(), timeout)
    finally:
        s.close()


class WSClosed(Exception):
    def __init__(self, code, reason, payload):
        super().__init__("closed: code=%r reason=%r" % (code, reason))
        self.code = code
        self.reason = reason
        self.payload = payload


class Frame:
    def __init__(self, fin, rsv, opcode, payload):
        self.fin, self.rsv, self.opcode, self.payload = fin, rsv, opcode, payload

    def __repr__(self):
        return "Frame(fin=%d op=%d len=%d %r)" % (self.fin, self.opcode, len(self.payload),
                                                  self.payload[:40])


def encode_frame(opcode, payload, fin=True, mask=True, rsv=0, mask_key=None):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return hdr + payload
    key = mask_key or os.urandom(4)
    return hdr + key + _xor(payload, key)


def _xor(data, key):
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def close_payload(code=None, reason=""):
    if code is None:
        return b""
    return struct.pack("!H", code) + reason.encode()


class RawWS:
    """A blocking WebSocket client on a plain socket, for byte-level control.

    c = RawWS(port, "/path")           # does the handshake (expects 101)
    c.send_text("x"); c.recv_message() -> ("text", "x")
    c.send_frame(OP_TEXT, b"..", fin=False); c.wait_close() -> (code, reason)
    """

    def __init__(self, port, path="/", headers=None, timeout=5, handshake=True, rcvbuf=None,
                 key=None):
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = bytearray()
        self.pings = []  # (monotonic time, payload) of every ping received
        self.pongs = []
        self.response = None
        self.closed_by_peer = False
        if handshake:
            self.key = key or make_key()
            self.sock.sendall(handshake_request(path, port, key=self.key, extra=headers))
            resp = _read_http_response(self.sock, self.buf, timeout)
            self.response = resp
            if resp.status != 101:
                raise AssertionError("handshake refused: %r" % resp)
            assert resp.headers.get("sec-websocket-accept") == accept_for(self.key), resp.headers
            self.buf = bytearray(resp.leftover)

    # ---- sending ----
    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0):
        self.sock.sendall(encode_frame(opcode, payload, fin=fin, mask=mask, rsv=rsv))

    def send_text(self, s):
        self.send_frame(OP_TEXT, s.encode() if isinstance(s, str) else s)

    def send_binary(self, b):
        self.send_frame(OP_BINARY, b)

    def send_ping(self, payload=b""):
        self.send_frame(OP_PING, payload)

    def send_pong(self, payload=b""):
        self.send_frame(OP_PONG, payload)

    def send_close(self, code=None, reason="", payload=None):
        self.send_frame(OP_CLOSE, payload if payload is not None else close_payload(code, reason))

    # ---- receiving ----
    def _fill(self, n, deadline):
        for _ in range(1000000):
            if len(self.buf) >= n:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out waiting for data")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                raise TimeoutError("timed out waiting for data")
            if not chunk:
                self.closed_by_peer = True
                raise EOFError("connection closed by peer")
            self.buf += chunk

    def recv_frame(self, timeout=5):
        """Next frame from the server (raises TimeoutError / EOFError / ConnectionError)."""
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._fill(4, deadline)
            n = struct.unpack("!H", bytes(self.buf[2:4]))[0]
            pos = 4
        elif n == 127:
            self._fill(10, deadline)
            n = struct.unpack("!Q", bytes(self.buf[2:10]))[0]
            pos = 10
        key = None
        if b1 & 0x80:
            self._fill(pos + 4, deadline)
            key = bytes(self.buf[pos:pos + 4])
            pos += 4
        self._fill(pos + n, deadline)
        payload = bytes(self.buf[pos:pos + n])
        del self.buf[:pos + n]
        if key:
            payload = _xor(payload, key)
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, payload)

    def _note_ping(self, f, auto_pong):
        self.pings.append((time.monotonic(), f.payload))
        if auto_pong:
            self.send_pong(f.payload)

    def _answer_close(self, payload):
        """Echo the close code of the server's close frame (ignore a dead socket)."""
        try:
            self.send_close(payload=payload[:2] if len(payload) >= 2 else b"")
        except OSError:
            pass

    def recv_message(self, timeout=5, auto_pong=True):
        """Next data message (reassembled) -> (kind, data); kind 'text' (str) or
        'binary' (bytes).  Pings are recorded and answered if auto_pong.  A close
        frame raises WSClosed (after answering it)."""
        deadline = time.monotonic() + timeout
        parts, kind = [], None
        for _ in range(1000000):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message within %ss" % timeout)
            f = self.recv_frame(left)
            if f.opcode == OP_PING:
                self._note_ping(f, auto_pong)
                continue
            if f.opcode == OP_PONG:
                self.pongs.append((time.monotonic(), f.payload))
                continue
            if f.opcode == OP_CLOSE:
                code, reason = parse_close(f.payload)
                self._answer_close(f.payload)
                raise WSClosed(code, reason, f.payload)
            if f.opcode in (OP_TEXT, OP_BINARY):
                kind = "text" if f.opcode == OP_TEXT else "binary"
                parts = [f.payload]
            elif f.opcode == OP_CONT:
                parts.append(f.payload)
            else:
                raise AssertionError("unexpected opcode %d" % f.opcode)
            if f.fin:
                data = b"".join(parts)
                return (kind, data.decode("utf-8") if kind == "text" else data)
        raise AssertionError("unreachable")

    def recv_text(self, timeout=5):
        kind, data = self.recv_message(timeout)
        assert kind == "text", (kind, data[:100])
        return data

    def wait_close(self, timeout=5, reply=True, auto_pong=False):
        """Read until the server's close frame -> (code, reason); data frames and
        pings are skipped (recorded).  Raises EOFError if the TCP connection ends
        without a close frame."""
        deadline = time.monotonic() + timeout
        for _ in range(1000000):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no close frame within %ss" % timeout)
            f = self.recv_frame(left)
            if f.opcode == OP_PING:
                self._note_ping(f, auto_pong)
                continue
            if f.opcode == OP_CLOSE:
                self.last_close_payload = f.payload
                if reply:
                    self._answer_close(f.payload)
                return parse_close(f.payload)
        raise AssertionError("unreachable")

    def wait_eof(self, timeout=5):
        """Read (and discard) until the server closes the TCP connection; returns
        the seconds it took.  Raises TimeoutError if it stays open."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        for _ in range(1000000):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("connection still open after %ss" % timeout)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("connection still open after %ss" % timeout)
            except ConnectionError:
                return time.monotonic() - t0
            if not chunk:
                return time.monotonic() - t0
        raise AssertionError("unreachable")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def parse_close(payload):
    if len(payload) >= 2:
        code = struct.unpack("!H", payload[:2])[0]
        return code, payload[2:].decode("utf-8", "replace")
    return None, ""


@pytest.fixture
def raw():
    """Factory: raw(port, path="/", **RawWS kwargs) -> RawWS, closed at teardown."""
    clients = []

    def factory(port, path="/", **kw):
        c = RawWS(port, path, **kw)
        clients.append(c)
        return c

    yield factory
    for c in clients:
        c.close()
