"""Admin HTTP endpoint: /health, /metrics, POST /broadcast, bearer token."""

import json
import re

import pytest

from conftest import metric_sum, parse_metrics

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


def test_health(gw, raw):
    assert gw.health() == {"status": "ok", "connections": 0, "generation": 1, "broker": "off"}
    a, b = raw(gw.port), raw(gw.port)
    for c in (a, b):
        c.send_text("x")
        assert c.recv_text() == "x"
    h = gw.health()
    assert h == {"status": "ok", "connections": 2, "generation": 1, "broker": "off"}
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
