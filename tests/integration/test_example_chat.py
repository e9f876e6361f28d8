"""examples/chat (SPEC 2.4): echo, rooms, /all, Ping->Pong by the core, protocol
ping/pong, operator broadcast over the admin API, and the same over wss:// with
a self-signed certificate checked by the client.

The behaviour tests run the real examples/chat/chat.lua on free ports through
the gateway fixture (which writes its own config); test_shipped_config runs a
copy of examples/chat itself (moongate.yaml, chat.lua, public/) with only its
three port numbers changed.  The page and reconnects are tested in a real
browser by tests/browser/run.sh.
"""
import asyncio
import http.client
import json
import os
import re
import shutil
import ssl

import pytest

from conftest import (ROOT, OP_PING, OP_PONG, free_port, make_cert, run, run_cli, ws_connect,
                      ws_recv, ws_expect)

EXAMPLE = os.path.join(ROOT, "examples", "chat")
CHAT = open(os.path.join(EXAMPLE, "chat.lua")).read()
PING = {"heartbeat": {"text_ping": "Ping", "text_pong": "Pong"}}
WELCOME = "* welcome, "




async def hello(ws):
    """Consume the welcome line; return the guest name it announces."""
    m = await ws_recv(ws)
    assert m.startswith(WELCOME), m
    return m[len(WELCOME):].split(".")[0]


async def join(ws, nick, room):
    await ws.send("/nick " + nick)
    await ws_expect(ws, "* you are now " + nick)
    await ws.send("/join " + room)
    await ws_expect(ws, "* you joined #" + room)


def start(gateway, **kw):
    return gateway(CHAT, PING, path="/chat", **kw)


def test_echo_prefix_outside_a_room(gateway):
    g = start(gateway)

    async def go():
        async with ws_connect(g.url) as ws:
            name = await hello(ws)
            assert re.fullmatch(r"guest\d+", name), name
            await ws.send("hello")
            assert await ws_recv(ws) == "received: hello"
            await ws.send("héllo wörld ✓")
            assert await ws_recv(ws) == "received: héllo wörld ✓"
            await ws.send(b"\x00\xff")
            assert await ws_recv(ws) == b"\x00\xff"            # binary: echoed as binary
            await ws.send("/bogus")
            assert await ws_recv(ws) == "* unknown command /bogus"
            # join then leave: back to echo mode
            await ws.send("/join lobby")
            assert await ws_recv(ws) == "* you joined #lobby"
            await ws.send("in the room")
            assert await ws_recv(ws) == name + ": in the room"
            await ws.send("/leave")
            assert await ws_recv(ws) == "* you left #lobby"
            await ws.send("again")
            assert await ws_recv(ws) == "received: again"
    run(go())


def test_rooms_isolate(gateway):
    g = start(gateway)

    async def go():
        async with ws_connect(g.url) as a, ws_connect(g.url) as b, \
                ws_connect(g.url) as c, ws_connect(g.url) as d:
            for ws in (a, b, c, d):
                await hello(ws)
            await join(a, "alice", "lobby")
            await join(b, "bob", "lobby")
            await ws_expect(a, "* bob joined #lobby")
            await join(c, "carol", "other")
            # d stays in no room
            await a.send("hi bob")
            await ws_expect(a, "alice: hi bob")                   # the sender sees its line
            await ws_expect(b, "alice: hi bob")
            await b.send("hi alice")
            await ws_expect(a, "bob: hi alice")
            # By now the gateway has handled every lobby line; anything it sent
            # to c or d is queued before their own next reply (one event loop,
            # per-connection order), so reading up to that reply is a full check.
            await c.send("anyone?")
            seen_c = await ws_expect(c, "carol: anyone?")
            await d.send("echo?")
            seen_d = await ws_expect(d, "received: echo?")
            for m in seen_c + seen_d:
                assert "alice" not in m and "bob" not in m and "lobby" not in m, (seen_c, seen_d)
            # and c's room line did not reach the lobby
            await a.send("/nick alice2")
            seen_a = await ws_expect(a, "* you are now alice2")
            assert not any("carol" in m for m in seen_a), seen_a
            # moving rooms: the old room is told, the new one too
            await b.send("/join other")
            await ws_expect(a, "* bob left #lobby")
            await ws_expect(c, "* bob joined #other")
            await ws_expect(b, "* you joined #other")
            await c.send("welcome bob")
            await ws_expect(b, "carol: welcome bob")
            await b.close()
            await ws_expect(c, "* bob left #other")               # on_disconnect tells the room
    run(go())


def test_all_reaches_everyone(gateway):
    g = start(gateway)

    async def go():
        async with ws_connect(g.url) as a, ws_connect(g.url) as b, ws_connect(g.url) as c:
            for ws in (a, b, c):
                await hello(ws)
            await join(a, "alice", "lobby")
            await join(b, "bob", "other")
            # c is in no room
            await a.send("/all hello everyone")
            for ws in (a, b, c):
                await ws_expect(ws, "[all] alice: hello everyone")
            await c.send("/all")
            assert await ws_recv(c) == "* usage: /all TEXT"
    run(go())


def test_text_ping_is_answered_by_the_core(gateway):
    g = start(gateway)
    bare = gateway(CHAT, None, path="/chat")        # same script, no text_ping configured

    async def go():
        # Without text_ping the script sees "Ping" and echoes it like any text:
        async with ws_connect(bare.url) as ws:
            await hello(ws)
            await ws.send("Ping")
            assert await ws_recv(ws) == "received: Ping"
        # With it, the core answers and the script never sees the message:
        async with ws_connect(g.url) as a, ws_connect(g.url) as b:
            await hello(a)
            await hello(b)
            await a.send("Ping")
            assert await ws_recv(a) == "Pong"
            await join(a, "alice", "lobby")
            await join(b, "bob", "lobby")
            await ws_expect(a, "* bob joined #lobby")
            await a.send("Ping")                       # in a room: would be "alice: Ping"
            assert await ws_recv(a) == "Pong"
            await a.send("after")
            assert await ws_recv(a) == "alice: after"
            assert await ws_recv(b) == "alice: after"  # b never got "alice: Ping"
            await a.send("Ping!")                      # only the exact text is a ping
            assert await ws_recv(a) == "alice: Ping!"
    run(go())


def test_protocol_ping_pong(gateway, raw):
    g = gateway(CHAT, {"heartbeat": {"interval": "300ms", "timeout": "5s",
                                     "text_ping": "Ping", "text_pong": "Pong"}}, path="/chat")
    c = raw(g.port, "/chat")
    assert c.recv_text().startswith(WELCOME)
    # the core pings us ...
    got_ping = None
    for _ in range(50):
        f = c.recv_frame(timeout=3)
        if f.opcode == OP_PING:
            got_ping = f
            break
    assert got_ping is not None, "no protocol ping from the gateway"
    c.send_pong(got_ping.payload)
    # ... and answers ours, with our payload
    c.send_ping(b"are you there")
    for _ in range(50):
        f = c.recv_frame(timeout=3)
        if f.opcode == OP_PONG:
            assert f.payload == b"are you there"
            break
        assert f.opcode == OP_PING, f                 # nothing else is due
    else:
        raise AssertionError("no pong")
    c.send_text("still here")
    assert c.recv_text() == "received: still here"


def test_admin_broadcast_reaches_every_client(gateway):
    g = start(gateway, admin=True)

    async def go():
        async with ws_connect(g.url) as a, ws_connect(g.url) as b, ws_connect(g.url) as c:
            for ws in (a, b, c):
                await hello(ws)
            await join(a, "alice", "lobby")
            await join(b, "bob", "other")
            status, _, body = await asyncio.to_thread(
                g.http, "POST", "/broadcast", "maintenance at 22:00 UTC")
            assert status == 200, body
            assert json.loads(body) == {"ok": True, "sent": 3}
            for ws in (a, b, c):
                await ws_expect(ws, "maintenance at 22:00 UTC")
    run(go())


def tls_listeners(g, tls_port):
    return {"listen": [
        {"host": "127.0.0.1", "port": g.port, "path": "/chat"},
        {"host": "127.0.0.1", "port": tls_port, "path": "/chat",
         "tls": {"cert": "certs/server.crt", "key": "certs/server.key"}}]}


def test_wss_with_a_verified_self_signed_certificate(gateway):
    g = gateway(CHAT, PING, path="/chat", start=False)
    crt, _ = make_cert(os.path.join(g.dir, "certs"))
    tls_port = free_port()
    g.update_config(tls_listeners(g, tls_port))
    g.start()
    g.wait_log(r"listening on wss://127\.0\.0\.1:%d/chat" % tls_port, 2)
    wss = "wss://127.0.0.1:%d/chat" % tls_port
    trusted = ssl.create_default_context(cafile=crt)
    assert trusted.verify_mode == ssl.CERT_REQUIRED and trusted.check_hostname

    async def go():
        async with ws_connect(wss, ssl=trusted) as s, ws_connect(g.url) as p:
            await hello(s)
            await hello(p)
            await s.send("secure hello")
            assert await ws_recv(s) == "received: secure hello"
            await s.send("Ping")
            assert await ws_recv(s) == "Pong"
            # wss and ws clients share rooms
            await join(s, "sam", "lobby")
            await join(p, "pat", "lobby")
            await ws_expect(s, "* pat joined #lobby")
            await s.send("over tls")
            await ws_expect(p, "sam: over tls")
            await p.send("over tcp")
            await ws_expect(s, "pat: over tcp")
        # a client that does not trust the certificate refuses it
        with pytest.raises(ssl.SSLCertVerificationError):
            async with ws_connect(wss, ssl=ssl.create_default_context()):
                pass
    run(go())


def test_shipped_config(gateway):
    """examples/chat as shipped: refuses to start without the certificate
    files (as its README says), then runs with a generated pair."""
    g = gateway(CHAT, start=False, path="/chat")
    shutil.copy(os.path.join(EXAMPLE, "chat.lua"), g.dir)
    shutil.copytree(os.path.join(EXAMPLE, "public"), os.path.join(g.dir, "public"))
    text = open(os.path.join(EXAMPLE, "moongate.yaml")).read()
    tls_port, admin_port = free_port(), free_port()
    for old, new in ((8090, g.port), (8453, tls_port), (9091, admin_port)):
        text, n = re.subn(r"(?m)^(\s+port: )%d\b" % old, r"\g<1>%d" % new, text)
        assert n == 1, "port %d not found exactly once in examples/chat/moongate.yaml" % old
    g.write_conf_text(text)

    r = run_cli(["-t", "-c", g.conf_path])
    assert r.returncode == 1
    assert "certs/server.crt" in r.stderr and "file not found" in r.stderr, r.stderr

    crt, _ = make_cert(os.path.join(g.dir, "certs"))
    r = run_cli(["-t", "-c", g.conf_path])
    assert r.returncode == 0 and "configuration ok" in r.stdout, r.stderr
    g.start()
    g.wait_log(r"listening on ws://127\.0\.0\.1:%d/chat" % g.port, 2)
    g.wait_log(r"listening on wss://127\.0\.0\.1:%d/chat" % tls_port, 2)
    g.wait_log(r"admin on http://127\.0\.0\.1:%d" % admin_port, 2)

    # the page, over http and https (certificate verified)
    page = open(os.path.join(EXAMPLE, "public", "index.html"), "rb").read()
    status, _, body = g.http("GET", "/", port=g.port)
    assert status == 200 and body == page
    ctx = ssl.create_default_context(cafile=crt)
    conn = http.client.HTTPSConnection("127.0.0.1", tls_port, timeout=5, context=ctx)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == page
    finally:
        conn.close()

    async def go():
        async with ws_connect(g.url) as p, \
                ws_connect("wss://127.0.0.1:%d/chat" % tls_port, ssl=ctx) as s:
            await hello(p)
            await hello(s)
            for ws in (p, s):
                await ws.send("Ping")
                assert await ws_recv(ws) == "Pong"
                await ws.send("x")
                assert await ws_recv(ws) == "received: x"
            status, _, body = await asyncio.to_thread(
                g.http, "POST", "/broadcast", "from the operator", port=admin_port)
            assert status == 200 and json.loads(body) == {"ok": True, "sent": 2}, body
            for ws in (p, s):
                assert await ws_recv(ws) == "from the operator"
    run(go())
