"""Admin API over clients and topics: GET /clients, GET /topics,
POST /clients/{id|name}/close, POST /send, POST /publish, and their refusals."""

import json

import pytest

SCRIPT = """
function on_connect(conn)
  gw.log.info("CONN " .. conn.id)
end
function on_message(conn, data, kind)
  if data:sub(1, 4) == "sub " then conn:subscribe(data:sub(5)) conn:send("ok") return end
  if data:sub(1, 5) == "name " then conn:set_name(data:sub(6)) conn:send("ok") return end
  conn:send(data, kind)
end
"""

J = {"Content-Type": "application/json"}


@pytest.fixture
def gw(gateway):
    return gateway(SCRIPT, admin_token="tok")


def api(gw, method, path, body=None, headers=J):
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    status, _, data = gw.http(method, path, body=body, headers=headers if body else None)
    return status, json.loads(data)


def ask(c, cmd):
    c.send_text(cmd)
    assert c.recv_text() == "ok"


def test_list_fields(gw, raw):
    a = raw(gw.port, "/")
    ask(a, "sub news")
    ask(a, "sub \"odd\"\n✓")
    ask(a, "name alice")
    status, page = api(gw, "GET", "/clients")
    assert status == 200, page
    assert page["total"] == 1 and page["next"] is None
    (c,) = page["clients"]
    assert c["name"] == "alice" and c["path"] == "/" and c["remote"] == "127.0.0.1"
    assert c["protocol"] is None and c["queue_bytes"] == 0
    assert sorted(c["subscriptions"]) == sorted(["news", "\"odd\"\n✓"])
    assert c["connected_at_ms"] > 1.7e12
    status, t = api(gw, "GET", "/topics")
    assert status == 200 and t["total"] == 2 and t["next"] is None
    assert {x["topic"]: x["subscribers"] for x in t["topics"]} == {"news": 1, "\"odd\"\n✓": 1}


def test_paging_250(gw, raw):
    cs = [raw(gw.port) for _ in range(250)]
    for c in cs:
        c.send_text("x")
        assert c.recv_text() == "x"
    seen, after, pages = [], None, 0
    for _ in range(10):
        q = "/clients?limit=100" + ("&after=%d" % after if after else "")
        status, page = api(gw, "GET", q)
        assert status == 200 and page["total"] == 250
        seen += [c["id"] for c in page["clients"]]
        pages += 1
        after = page["next"]
        if after is None:
            break
    assert pages == 3 and len(seen) == 250 and len(set(seen)) == 250


def test_close_send_publish(gw, raw):
    a, b = raw(gw.port), raw(gw.port)
    ask(a, "name alice")
    ask(b, "sub news")
    status, r = api(gw, "POST", "/send", {"to": "alice", "data": "hi ✓"})
    assert status == 200 and r["result"] == "queued", r
    assert a.recv_message(5) == ("text", "hi ✓")
    status, r = api(gw, "POST", "/send", {"to": "alice", "data_b64": "AAEC/w=="})
    assert status == 200 and a.recv_message(5) == ("binary", b"\x00\x01\x02\xff")
    status, r = api(gw, "POST", "/publish", {"topic": "news", "data": "n1"})
    assert status == 200 and r == {"delivered": 1}
    assert b.recv_message(5) == ("text", "n1")
    b.send_text("after")   # a got nothing else: b's echo comes, a's queue is empty
    assert b.recv_text() == "after"
    status, r = api(gw, "POST", "/clients/alice/close", {"code": 4000, "reason": "bye ✓"})
    assert status == 200 and r["code"] == 4000
    assert a.wait_close(5) == (4000, "bye ✓")


def test_bad_input(gw, raw):
    a = raw(gw.port)
    a.send_text("x")
    assert a.recv_text() == "x"
    cases = [
        ("POST", "/send", {"to": 999999, "data": "x"}, J, 404),
        ("POST", "/send", {"to": "nobody", "data": "x"}, J, 404),
        ("POST", "/clients/999999/close", {}, J, 404),
        ("POST", "/send", "{not json", J, 400),
        ("POST", "/send", {"to": 1}, J, 400),
        ("POST", "/send", {"to": 1, "data": "x", "extra": 1}, J, 400),
        ("POST", "/send", {"to": 1, "data": "x"}, {"Content-Type": "text/plain"}, 415),
        ("POST", "/clients/1/close", {"code": 1001}, J, 400),
        ("POST", "/clients/1/close", {"code": 4000, "reason": "é" * 62}, J, 400),
        ("POST", "/publish", {"data": "x"}, J, 400),
        ("GET", "/clients?limit=0", None, J, 400),
        ("GET", "/clients?after=abc", None, J, 400),
        ("DELETE", "/clients", None, J, 405),
        ("GET", "/send", None, J, 405),
    ]
    for method, path, body, headers, want in cases:
        status, r = api(gw, method, path, body, headers)
        assert status == want and r["error"], (method, path, body, status, r)
    status, _, data = gw.http("GET", "/clients", auth=False)
    assert status == 401 and "error" in json.loads(data)
    status, _, data = gw.http("POST", "/send", body=b"x" * (2 << 20), headers=J)
    assert status == 413 and "error" in json.loads(data)
    a.send_text("still")
    assert a.recv_text() == "still"


def test_close_by_encoded_name(gw, raw):
    """A name with a space, percent-encoded in the path."""
    a = raw(gw.port)
    ask(a, "name bob smith")
    status, r = api(gw, "POST", "/clients/bob%20smith/close")
    assert status == 200, r
    assert a.wait_close(5) == (1000, "")


def test_wrapper(gw, raw):
    """tools/moongate-admin wraps the common calls."""
    import os
    import subprocess
    tool = os.path.join(os.environ.get("MOONGATE_ROOT", "."), "tools", "moongate-admin")
    base = [tool, "-a", "http://127.0.0.1:%d" % gw.admin_port, "-t", "tok"]
    run = lambda *a: subprocess.run(base + list(a), capture_output=True, text=True, timeout=10)
    a = raw(gw.port)
    ask(a, "name al \"x\"")
    ask(a, "sub news")
    r = run("clients")
    assert r.returncode == 0 and json.loads(r.stdout)["clients"][0]["name"] == "al \"x\"", r
    assert json.loads(run("topics").stdout)["topics"] == [{"topic": "news", "subscribers": 1}]
    assert json.loads(run("send", "al \"x\"", "hi\n\"q\"").stdout)["result"] == "queued"
    assert a.recv_message(5) == ("text", "hi\n\"q\"")
    assert json.loads(run("publish", "news", "n").stdout) == {"delivered": 1}
    assert a.recv_message(5) == ("text", "n")
    r = run("send", "nobody", "x")
    assert r.returncode == 1 and "no such client" in r.stdout, r
    assert run("kick", "al \"x\"", "4001", "out").returncode == 0
    assert a.wait_close(5) == (4001, "out")


def test_workers_mode(gateway, raw):
    """With workers the listings and close answer 501 with a reason; send and
    publish reach a client whichever worker holds it."""
    g = gateway(SCRIPT, {"workers": 2}, admin_token="tok")
    g.wait_log(r"worker 2 ready", 10)
    cs = [raw(g.port) for _ in range(6)]   # the kernel spreads them over both workers
    for i, c in enumerate(cs):
        ask(c, "name w%d" % i)
        ask(c, "sub news")
    for path in ("/clients", "/topics"):
        status, r = api(g, "GET", path)
        assert status == 501 and "workers" in r["error"], r
    status, r = api(g, "POST", "/clients/w0/close")
    assert status == 501, r
    for i, c in enumerate(cs):
        status, r = api(g, "POST", "/send", {"to": "w%d" % i, "data": "to %d" % i})
        assert status == 200 and r["result"] in ("queued", "forwarded"), r
        assert c.recv_message(5) == ("text", "to %d" % i)
    status, r = api(g, "POST", "/publish", {"topic": "news", "data": "all"})
    assert status == 200 and r["forwarded"] is True, r
    for c in cs:
        assert c.recv_message(5) == ("text", "all")
