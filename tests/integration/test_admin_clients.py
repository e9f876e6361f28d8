"""Admin API over clients and topics: GET /clients, GET /topics,
POST /clients/{id|name}/close, POST /send, POST /publish, and their refusals."""

import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from conftest import worker_pids

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


def workers_gw(gateway, raw, n_clients=60):
    """workers: 3 and n_clients named c0.. (each subscribed to "all" and to
    t0..t4 round robin), spread over the workers by the kernel."""
    g = gateway(SCRIPT, {"workers": 3}, admin_token="tok")
    g.wait_log(r"worker 3 ready", 10)
    cs = [raw(g.port) for _ in range(n_clients)]
    for i, c in enumerate(cs):
        ask(c, "name c%d" % i)
        ask(c, "sub all")
        ask(c, "sub t%d" % (i % 5))
    return g, cs


def page_all(g, path, limit, key):
    """Every page of path with limit=, following next: the entries and the
    last page's answer."""
    seen, after = [], None
    for _ in range(1000):
        q = "%s?limit=%d" % (path, limit) + ("&after=%s" % quote(str(after)) if after else "")
        status, page = api(g, "GET", q)
        assert status == 200 and "partial" not in page, (q, page)
        entries = page[key]
        assert len(entries) <= limit
        seen += entries
        after = page["next"]
        if after is None:
            return seen, page
        assert entries, page
    raise AssertionError("paging did not end")


def holders(g):
    """{client name: (id, worker)} from one full listing."""
    status, page = api(g, "GET", "/clients?limit=1000")
    assert status == 200 and "partial" not in page, page
    return {c["name"]: (c["id"], c["worker"]) for c in page["clients"]}


def test_workers_listings(gateway, raw):
    """With workers the listings cover every worker: paging visits each client
    once (newest first, whichever worker serves each page), topics are summed
    over the workers."""
    g, cs = workers_gw(gateway, raw)
    where = holders(g)
    assert len(where) == 60 and {w for _, w in where.values()} == {1, 2, 3}, where
    for _ in range(3):   # the kernel picks the worker that serves each page
        seen, last = page_all(g, "/clients", 7, "clients")
        ids = [c["id"] for c in seen]
        assert len(ids) == 60 and len(set(ids)) == 60 and ids == sorted(ids, reverse=True)
        assert last["total"] == 60
        assert {c["name"]: (c["id"], c["worker"]) for c in seen} == where
        assert all(sorted(c["subscriptions"]) == sorted(["all", "t%d" % (int(c["name"][1:]) % 5)])
                   for c in seen)
        topics, last = page_all(g, "/topics", 2, "topics")
        assert last["total"] == 6
        assert [t["topic"] for t in topics] == ["all", "t0", "t1", "t2", "t3", "t4"]
        assert {t["topic"]: t["subscribers"] for t in topics} == dict(
            all=60, t0=12, t1=12, t2=12, t3=12, t4=12)
    status, page = api(g, "GET", "/topics?after=t3")
    assert status == 200 and page["topics"] == [{"topic": "t4", "subscribers": 12}], page
    assert page["next"] is None
    import subprocess
    tool = os.path.join(os.environ.get("MOONGATE_ROOT", "."), "tools", "moongate-admin")
    r = subprocess.run([tool, "-a", "http://127.0.0.1:%d" % g.admin_port, "-t", "tok", "clients",
                        "1000"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stderr == "", r
    assert len(json.loads(r.stdout)["clients"]) == 60


def test_workers_close(gateway, raw):
    """A close reaches the client whichever worker holds it, by id or by name;
    404 only when no worker has it."""
    g, cs = workers_gw(gateway, raw, 24)
    where = holders(g)
    by_worker = {}
    for name, (cid, w) in sorted(where.items()):
        by_worker.setdefault(w, []).append((name, cid))
    assert sorted(by_worker) == [1, 2, 3], where
    # Two by id and two by name on each worker (as far as it holds that
    # many): whichever worker serves a request, most go to a client another
    # worker holds.
    closed = 0
    for w, held in sorted(by_worker.items()):
        for j, (name, cid) in enumerate(held[:4]):
            target = str(cid) if j % 2 == 0 else name
            status, r = api(g, "POST", "/clients/%s/close" % target,
                            {"code": 4000 + j, "reason": "bye " + name})
            assert status == 200, (target, r)
            assert r == {"closed": cid, "code": 4000 + j, "worker": w}, r
            assert cs[int(name[1:])].wait_close(5) == (4000 + j, "bye " + name)
            closed += 1
    for target in ("999999999", "nobody"):
        status, r = api(g, "POST", "/clients/%s/close" % target)
        assert status == 404 and "no such client" in r["error"], r
    status, page = api(g, "GET", "/clients")
    assert status == 200 and page["total"] == 24 - closed, page


def api_retry(g, method, path, body=None, tries=12, timeout=6):
    """api(), again on a new connection while one times out (a stopped
    worker holds the admin connections the kernel hands it) or is refused
    as one too many waiting (a worker that runs again works off what it
    held: for a moment it has its fill)."""
    for _ in range(tries):
        t0 = time.monotonic()
        try:
            status, r = api_t(g, method, path, body, timeout)
        except (socket.timeout, TimeoutError):
            continue
        if status == 503 and "waiting for the other workers" in r.get("error", ""):
            time.sleep(0.2)
            continue
        return status, r, time.monotonic() - t0
    raise AssertionError("no worker answered %s %s" % (method, path))


def try_api(g, method, path, timeout):
    """(status, answer), or None if none came within timeout."""
    try:
        return api_t(g, method, path, None, timeout)
    except (socket.timeout, TimeoutError, ConnectionError):
        return None


def api_t(g, method, path, body, timeout):
    if body is not None:
        body = json.dumps(body)
    status, _, data = g.http(method, path, body=body, headers=J if body else None,
                             timeout=timeout)
    return status, json.loads(data)


def test_workers_stopped_worker(gateway, raw):
    """A stopped worker: listings answer 200 within the deadline with what
    the others hold and "partial"; a close that only it could do answers 503;
    the others go on serving, and all answer again once it runs."""
    g, cs = workers_gw(gateway, raw, 30)
    where = holders(g)
    on = {w: [n for n, (_, ww) in where.items() if ww == w] for w in (1, 2, 3)}
    assert all(on.values()), on
    pid = worker_pids(g)[3]
    os.kill(pid, signal.SIGSTOP)
    try:
        # Connections that give up before the answer: it finds them gone.
        for _ in range(6):
            try:
                api_t(g, "GET", "/clients", None, 0.3)
            except (socket.timeout, TimeoutError):
                pass
        # More waiting at once than a worker keeps: the rest get 503 at once.
        with ThreadPoolExecutor(max_workers=120) as pool:
            answers = list(pool.map(lambda _: try_api(g, "GET", "/topics", 5), range(120)))
        got = [a for a in answers if a]
        assert all(st == 200 and r["partial"] for st, r in got if st != 503), got
        busy = [r for st, r in got if st == 503]
        assert busy and all("waiting for the other workers" in r["error"] for r in busy), got
        status, page, took = api_retry(g, "GET", "/clients?limit=1000")
        assert status == 200 and page["partial"] is True and page["missing"] == [3], page
        assert took < 5, took   # the deadline is 2 s
        assert page["total"] == 30 - len(on[3])
        assert {c["name"] for c in page["clients"]} == set(on[1] + on[2])
        status, page, _ = api_retry(g, "GET", "/topics")
        assert status == 200 and page["partial"] is True and page["missing"] == [3], page
        status, r, _ = api_retry(g, "POST", "/clients/%s/close" % on[3][0], {"code": 4200})
        assert status == 503 and r["missing"] == [3], r
        status, r, _ = api_retry(g, "POST", "/clients/nobody/close", {})
        assert status == 503, r
        victim = on[1][0]
        status, r, _ = api_retry(g, "POST", "/clients/%s/close" % victim, {"code": 4100})
        assert status == 200 and r["worker"] == 1, r
        assert cs[int(victim[1:])].wait_close(5) == (4100, "")
        for n in on[1][1:] + on[2]:   # the other workers' clients are served
            c = cs[int(n[1:])]
            c.send_text("still")
            assert c.recv_text() == "still"
    finally:
        os.kill(pid, signal.SIGCONT)
    # A request that timed out above may have been one the stopped worker
    # held: it runs now (the close of on[3][0] too: then this one is a 404).
    status, r, _ = api_retry(g, "POST", "/clients/%s/close" % on[3][0], {"code": 4200})
    assert (status, r.get("worker")) in ((200, 3), (404, None)), r
    assert cs[int(on[3][0][1:])].wait_close(5) == (4200, "")
    status, page, _ = api_retry(g, "GET", "/clients?limit=1000")
    assert status == 200 and "partial" not in page and page["total"] == 28, page


def test_workers_send_publish(gateway, raw):
    """send and publish reach a client whichever worker holds it."""
    g = gateway(SCRIPT, {"workers": 2}, admin_token="tok")
    g.wait_log(r"worker 2 ready", 10)
    cs = [raw(g.port) for _ in range(6)]   # the kernel spreads them over both workers
    for i, c in enumerate(cs):
        ask(c, "name w%d" % i)
        ask(c, "sub news")
    for i, c in enumerate(cs):
        status, r = api(g, "POST", "/send", {"to": "w%d" % i, "data": "to %d" % i})
        assert status == 200 and r["result"] in ("queued", "forwarded"), r
        assert c.recv_message(5) == ("text", "to %d" % i)
    status, r = api(g, "POST", "/publish", {"topic": "news", "data": "all"})
    assert status == 200 and r["forwarded"] is True, r
    for c in cs:
        assert c.recv_message(5) == ("text", "all")
