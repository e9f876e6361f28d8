"""Admin HTTP endpoint: /health, /metrics, POST /broadcast, bearer token."""

import json
import re

import pytest

from conftest import http_raw, metric_sum, parse_metrics

SCRIPT = """
function on_connect(conn)
  gw.log.info("CONN " .. conn.id)
end
function on_message(conn, data, kind)
  conn:send(data, kind)
end
function on_disconnect(conn, code, reason)
  gw.log.info("DISC " .. conn.id)
end
"""

METRIC_NAMES = [
    "moongate_connections", "moongate_connections_total", "moongate_messages_in_total",
    "moongate_messages_out_total", "moongate_bytes_in_total", "moongate_bytes_out_total",
    "moongate_lua_errors_total", "moongate_lua_aborts_total", "moongate_hook_seconds_total",
    "moongate_hook_calls_total", "moongate_reloads_total", "moongate_reload_failures_total",
    "moongate_evictions_total", "moongate_sendq_drops_total",
]


@pytest.fixture
def gw(gateway):
    return gateway(SCRIPT, admin=True)


def test_admin_ready_line(gw):
    gw.wait_log(r"admin on http://127\.0\.0\.1:%d" % gw.admin_port, 1)
    gw.wait_log(r"listening on ws://127\.0\.0\.1:%d/" % gw.port, 1)


def core(health):
    """/health without what test_fast_paths.py checks."""
    return {k: v for k, v in health.items() if k not in ("libwebsockets", "fast_paths")}


def test_health(gw, raw):
    assert core(gw.health()) == {"status": "ok", "connections": 0, "generation": 1,
                                 "broker": "off"}
    a, b = raw(gw.port), raw(gw.port)
    for c in (a, b):
        c.send_text("x")
        assert c.recv_text() == "x"
    h = gw.health()
    assert core(h) == {"status": "ok", "connections": 2, "generation": 1, "broker": "off"}
    since = gw.mark()
    a.send_close(1000)
    a.wait_close(5, reply=False)
    gw.wait_log(r"DISC \d+", 5, since)
    assert gw.health()["connections"] == 1


def test_metrics_names(gw):
    status, headers, body = gw.http("GET", "/metrics")
    assert status == 200
    assert headers.get("content-type", "").startswith("text/plain"), headers
    text = body.decode()
    for name in METRIC_NAMES:
        assert re.search(r"^(# (HELP|TYPE) )?%s[ {]" % name, text, re.M), (name, text)


def test_metrics_counters_move(gw, raw):
    before = gw.metrics()
    since = gw.mark()
    c = raw(gw.port)
    gw.wait_log(r"CONN \d+", 5, since)
    assert gw.metrics()["moongate_connections"] == 1
    for i in range(3):
        c.send_text("0123456789")
        assert c.recv_text() == "0123456789"
    after = gw.metrics()
    d = lambda k: after[k] - before[k]
    assert d("moongate_messages_in_total") == 3
    assert d("moongate_messages_out_total") == 3
    assert d("moongate_bytes_in_total") >= 30
    assert d("moongate_bytes_out_total") >= 30
    assert d("moongate_connections_total") == 1
    assert d("moongate_hook_calls_total") >= 3
    assert after["moongate_connections"] == 1
    assert after["moongate_lua_errors_total"] == 0


def test_broadcast(gw, raw):
    cs = [raw(gw.port) for _ in range(3)]
    for c in cs:
        c.send_text("hi")
        assert c.recv_text() == "hi"
    status, _, body = gw.http("POST", "/broadcast", body="hello all ✓")
    assert status == 200, body
    assert json.loads(body) == {"ok": True, "sent": 3}
    for c in cs:
        assert c.recv_message(5) == ("text", "hello all ✓")


def test_broadcast_with_no_clients(gw):
    status, _, body = gw.http("POST", "/broadcast", body="nobody")
    assert status == 200
    assert json.loads(body) == {"ok": True, "sent": 0}


def test_unknown_admin_path_404(gw):
    status, _, _ = gw.http("GET", "/nope")
    assert status == 404


def test_token_required(gateway, raw):
    g = gateway(SCRIPT, admin_token="s3cret")
    c = raw(g.port)
    for method, path in [("GET", "/health"), ("GET", "/metrics"), ("POST", "/broadcast"),
                         ("POST", "/reload")]:
        status, _, _ = g.http(method, path, body="sneaky" if method == "POST" else None,
                              auth=False)
        assert status == 401, (method, path, status)
        status, _, _ = g.http(method, path, body="sneaky" if method == "POST" else None,
                              auth=False, headers={"Authorization": "Bearer wrong"})
        assert status == 401, (method, path, status)
    # the refused broadcast/reload did nothing
    c.send_text("first")
    assert c.recv_text() == "first"
    assert not g.find_logs(r"reload (ok|failed)")
    status, _, body = g.http("GET", "/health",
                             headers={"Authorization": "Bearer s3cret"}, auth=False)
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, _, body = g.http("POST", "/broadcast", body="with token")
    assert status == 200 and json.loads(body) == {"ok": True, "sent": 1}
    assert c.recv_text() == "with token"


def test_broadcast_refuses_a_body_that_is_not_utf8(gw, raw):
    """A text broadcast must be UTF-8 (otherwise every client would close
    the connection with 1007): 400, and nothing is sent."""
    c = raw(gw.port)
    c.send_text("hi")
    assert c.recv_text() == "hi"
    status, _, body = gw.http("POST", "/broadcast", body=b"caf\xe9 \xff")
    assert status == 400 and b"not UTF-8" in body, (status, body)
    c.send_text("after")
    assert c.recv_message(5) == ("text", "after")
    assert gw.alive()


@pytest.mark.parametrize("how", ["query", "content-type"])
def test_broadcast_binary(gw, raw, how):
    """?kind=binary or Content-Type: application/octet-stream broadcast the
    bytes as a binary message, whatever they are."""
    c = raw(gw.port)
    c.send_text("hi")
    assert c.recv_text() == "hi"
    data = bytes(range(256))
    if how == "query":
        status, _, body = gw.http("POST", "/broadcast?kind=binary", body=data)
    else:
        status, _, body = gw.http("POST", "/broadcast", body=data,
                                  headers={"Content-Type": "application/octet-stream"})
    assert status == 200 and json.loads(body) == {"ok": True, "sent": 1}, body
    assert c.recv_message(5) == ("binary", data)
    status, _, body = gw.http("POST", "/broadcast?kind=weird", body=b"x")
    assert status == 400, body


def test_chunked_post_gets_411_and_nothing_is_broadcast(gw, raw):
    """libwebsockets 4.1 cannot read a chunked request body: such a POST is
    answered 411 (it used to be broadcast as an empty message, with 200).
    The request and its body are written at once, as a client that does not
    wait for 100-continue does."""
    c = raw(gw.port)
    c.send_text("hi")
    assert c.recv_text() == "hi"
    req = (b"POST /broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n"
           b"8\r\nchunked \r\n4\r\nbody\r\n0\r\n\r\n")
    r = http_raw(gw.admin_port, req, timeout=5)
    assert r.status == 411, r
    c.send_text("after")
    assert c.recv_message(5) == ("text", "after")   # no broadcast came first


def test_oversized_body_gets_413_not_a_reset(gw, raw):
    """A 10 MB body is refused with 413 as soon as its Content-Length is
    read; the gateway reads and drops the rest, so the client, which sends
    it all before reading, gets the answer instead of a connection reset."""
    c = raw(gw.port)
    c.send_text("hi")
    assert c.recv_text() == "hi"
    for _ in range(2):
        status, _, body = gw.http("POST", "/broadcast", body=b"x" * (10 << 20), timeout=15)
        assert status == 413, (status, body)
    c.send_text("after")
    assert c.recv_message(5) == ("text", "after")
    assert gw.health()["status"] == "ok"


def test_wrong_method_gets_405(gw):
    status, headers, _ = gw.http("GET", "/broadcast")
    assert status == 405 and headers.get("allow") == "POST", (status, headers)
    status, headers, _ = gw.http("POST", "/health", body="x")
    assert status == 405 and headers.get("allow") == "GET", (status, headers)
    status, _, _ = gw.http("DELETE", "/reload")
    assert status == 405
