"""HTTP upgrade handling on a WebSocket listener, driven with raw sockets."""

import base64
import os
import socket
import time

import pytest

from conftest import (RawWS, accept_for, handshake_request, http_raw, plain_get)

SCRIPT = """
function on_handshake(req)
  local q = req.query
  if q == "deny=plain" then return false end
  if q == "deny=401" then return false, 401, "no" end
  if q == "deny=418" then return false, 418, "short and stout" end
  if q == "echo" then
    return false, 403, req.path .. "|" .. req.query .. "|" .. req.remote .. "|" ..
      tostring(req:header("x-probe")) .. "|" .. tostring(req:header("X-Missing"))
  end
  if q == "len" then
    local v = req:header("x-probe") or ""
    return false, 403, #v .. " " .. tostring(v == string.rep("t", #v))
  end
  if req:header("X-Token") == "bad" then return false, 401, "bad token" end
  return true
end

function on_disconnect(conn, code, reason)
  gw.log.info("DISC " .. conn.id)
end

function on_message(conn, data, kind)
  conn:send(data, kind)
end
"""


@pytest.fixture
def gw(gateway):
    return gateway(SCRIPT, {"limits": {"handshake_timeout": "1s", "max_connections": 3}})


def test_valid_upgrade_101(gw):
    key = base64.b64encode(os.urandom(16)).decode()
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    try:
        s.sendall(handshake_request("/", gw.port, key=key))
        from conftest import _read_http_response
        r = _read_http_response(s, bytearray(), 5)
        assert r.status == 101, r
        assert r.headers["upgrade"].lower() == "websocket"
        assert "upgrade" in r.headers["connection"].lower()
        assert r.headers["sec-websocket-accept"] == accept_for(key)
    finally:
        s.close()


def test_version_8_gets_426(gw):
    r = http_raw(gw.port, handshake_request("/", gw.port, version="8"))
    assert r.status == 426, r
    assert r.headers.get("sec-websocket-version", "").strip() == "13", r.headers


def test_missing_version_is_refused(gw):
    r = http_raw(gw.port, handshake_request("/", gw.port, omit=("sec-websocket-version",)))
    assert r.status in (400, 426), r


def test_missing_key_gets_400(gw):
    r = http_raw(gw.port, handshake_request("/", gw.port, omit=("sec-websocket-key",)))
    assert r.status == 400, r


@pytest.mark.parametrize("key", [
    "not-base64!!",
    base64.b64encode(b"x" * 15).decode(),   # 15 bytes
    base64.b64encode(b"x" * 17).decode(),   # 17 bytes
    "",
], ids=["garbage", "15bytes", "17bytes", "empty"])
def test_malformed_key_gets_400(gw, key):
    r = http_raw(gw.port, handshake_request("/", gw.port, key=key))
    assert r.status == 400, r


def test_no_upgrade_header_gets_400(gw):
    r = http_raw(gw.port, handshake_request("/", gw.port, omit=("upgrade",)))
    assert r.status == 400, r


def test_upgrade_not_websocket_gets_400(gw):
    r = http_raw(gw.port, handshake_request("/", gw.port, upgrade="h2c"))
    assert r.status == 400, r


def test_plain_get_on_ws_path_gets_400(gw):
    r = http_raw(gw.port, plain_get("/", gw.port))
    assert r.status == 400, r


def test_unknown_path_gets_404(gw):
    r = http_raw(gw.port, plain_get("/nope", gw.port))
    assert r.status == 404, r
    r = http_raw(gw.port, handshake_request("/nope", gw.port))
    assert r.status == 404, r


def test_query_string_does_not_change_path(gw, raw):
    c = raw(gw.port, "/?a=1&b=two")
    c.send_text("q")
    assert c.recv_text() == "q"


def test_on_handshake_false_defaults_to_403(gw):
    r = http_raw(gw.port, handshake_request("/?deny=plain", gw.port))
    assert r.status == 403, r


def test_on_handshake_status_and_body(gw):
    r = http_raw(gw.port, handshake_request("/?deny=401", gw.port))
    assert r.status == 401, r
    assert r.body == b"no", r
    r = http_raw(gw.port, handshake_request("/?deny=418", gw.port))
    assert r.status == 418, r
    assert r.body == b"short and stout", r


def test_on_handshake_request_fields(gw):
    r = http_raw(gw.port, handshake_request("/?echo", gw.port, extra={"X-Probe": "probe-value"}))
    assert r.status == 403, r
    assert r.body.decode() == "/|echo|127.0.0.1|probe-value|nil", r


def test_long_header_reaches_on_handshake(gw):
    """A 12 KiB header (a long Bearer token) fits the default
    limits.max_header_size and reaches the script whole."""
    probe = "t" * 12000
    r = http_raw(gw.port, handshake_request("/?len", gw.port, extra={"X-Probe": probe}))
    assert r.status == 403, r
    assert r.body == b"12000 true", r


def test_headers_over_max_header_size_are_refused(gateway, raw):
    """Headers past limits.max_header_size: the connection ends without an
    upgrade (libwebsockets' parser stops), the log says why, and the next
    client is served."""
    g = gateway(SCRIPT, {"limits": {"max_header_size": "2KiB"}})
    since = g.mark()
    s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
    try:
        s.sendall(handshake_request("/", g.port, extra={"X-Probe": "t" * 3000}))
        assert s.recv(100) == b""
    finally:
        s.close()
    g.wait_log(r"Ran out of header data space", 5, since)
    c = raw(g.port, "/", headers={"X-Probe": "t" * 1000})
    c.send_text("in")
    assert c.recv_text() == "in"


def test_on_handshake_header_refusal_and_accept(gw, raw):
    r = http_raw(gw.port, handshake_request("/", gw.port, extra={"X-Token": "bad"}))
    assert r.status == 401 and r.body == b"bad token", r
    c = raw(gw.port, "/", headers={"X-Token": "good"})
    c.send_text("in")
    assert c.recv_text() == "in"


def test_stalled_handshake_is_closed(gw):
    """Half a request: the server closes the socket after handshake_timeout (1s)."""
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        t0 = time.monotonic()
        s.settimeout(4.0)
        data = b""
        for _ in range(1000):
            try:
                chunk = s.recv(4096)
            except ConnectionError:
                break
            except socket.timeout:
                pytest.fail("stalled handshake still open after 4s (handshake_timeout 1s)")
            if not chunk:
                break
            data += chunk
        elapsed = time.monotonic() - t0
        assert elapsed >= 0.7, "closed too early (%.2fs), timeout is 1s" % elapsed
        assert elapsed <= 3.5, elapsed
        assert not data.startswith(b"HTTP/1.1 101"), data
    finally:
        s.close()


def test_silent_connection_is_closed(gw):
    """A TCP connection that sends nothing is closed after handshake_timeout too."""
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    try:
        t0 = time.monotonic()
        s.settimeout(4.0)
        for _ in range(1000):
            try:
                chunk = s.recv(4096)
            except ConnectionError:
                break
            except socket.timeout:
                pytest.fail("idle connection still open after 4s (handshake_timeout 1s)")
            if not chunk:
                break
        elapsed = time.monotonic() - t0
        assert 0.7 <= elapsed <= 3.5, elapsed
    finally:
        s.close()


def test_stalled_handshake_does_not_block_others(gw, raw):
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    try:
        s.sendall(b"GET / HTTP/1.1\r\n")
        c = raw(gw.port, "/")
        c.send_text("still serving")
        assert c.recv_text() == "still serving"
    finally:
        s.close()


def test_max_connections_503(gw, raw):
    clients = [raw(gw.port, "/") for _ in range(3)]
    for i, c in enumerate(clients):
        c.send_text("c%d" % i)
        assert c.recv_text() == "c%d" % i
    r = http_raw(gw.port, handshake_request("/", gw.port))
    assert r.status == 503, r
    # the refused attempt did not disturb the others
    clients[0].send_text("ok")
    assert clients[0].recv_text() == "ok"
    # free a slot, wait until the gateway has seen it, then a new client fits
    since = gw.mark()
    clients[1].send_close(1000, "")
    clients[1].wait_close(5)
    gw.wait_log(r"DISC \d+", 5, since)
    c4 = raw(gw.port, "/")
    c4.send_text("fourth")
    assert c4.recv_text() == "fourth"


def test_two_listeners(gateway, raw):
    from conftest import free_port
    p2 = free_port()
    g = gateway(SCRIPT, start=False)
    g.update_config({"listen": [{"host": "127.0.0.1", "port": g.port, "path": "/a"},
                                {"host": "127.0.0.1", "port": p2, "path": "/b"}]})
    g.start()
    g.wait_log(r"listening on ws://127\.0\.0\.1:%d/a" % g.port, 1)
    g.wait_log(r"listening on ws://127\.0\.0\.1:%d/b" % p2, 1)
    a = raw(g.port, "/a")
    b = raw(p2, "/b")
    a.send_text("on a")
    b.send_text("on b")
    assert a.recv_text() == "on a"
    assert b.recv_text() == "on b"
    assert http_raw(g.port, handshake_request("/b", g.port)).status == 404
    assert http_raw(p2, handshake_request("/a", p2)).status == 404
