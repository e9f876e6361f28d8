"""The default app (scripts/app.lua + static/ + conf/moongate.yaml): what the
README's run command starts.  The shipped config binds fixed ports, so the
behaviour tests run the shipped script and page on free ports; the shipped
config itself is checked with `moongate -t`."""
import asyncio
import os

from conftest import ROOT, run, run_cli, ws_connect, ws_recv, ws_expect

APP = open(os.path.join(ROOT, "scripts", "app.lua")).read()
CONFIG = {
    "static": {"root": os.path.join(ROOT, "static")},
    "heartbeat": {"text_ping": "Ping", "text_pong": "Pong"},
}


def start(gateway):
    return gateway(APP, CONFIG, path="/ws")


def test_shipped_config_checks_ok():
    r = run_cli(["-t", "-c", os.path.join(ROOT, "conf", "moongate.yaml")])
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout


def test_page_is_served(gateway):
    g = start(gateway)
    status, _, body = g.http("GET", "/", port=g.port)
    assert status == 200
    assert b"new WebSocket" in body and b"/ws" in body
    status, _, _ = g.http("GET", "/ws", port=g.port)
    assert status == 400


def test_echo_rooms_nicks_and_who(gateway):
    g = start(gateway)
    url = "ws://127.0.0.1:%d/ws" % g.port

    async def scenario():
        async with ws_connect(url) as a, ws_connect(url) as b, ws_connect(url) as c:
            for ws in (a, b, c):
                assert (await ws_recv(ws)).startswith("* welcome")
            await a.send("hello")
            assert await ws_recv(a) == "received: hello"      # no room: echo
            await a.send("Ping")
            assert await ws_recv(a) == "Pong"                 # answered by the core
            await a.send("/nick alice")
            assert await ws_recv(a) == "* you are now known as alice"
            await b.send("/nick bob")
            await ws_expect(b, "* you are now known as bob")
            await a.send("/join lobby")
            await ws_expect(a, "* alice joined #lobby (1 here)")
            await b.send("/join lobby")
            await ws_expect(a, "* bob joined #lobby (2 here)")
            await ws_expect(b, "* bob joined #lobby (2 here)")
            await c.send("/join other")
            await a.send("hi bob")
            await ws_expect(b, "alice: hi bob")
            await ws_expect(a, "alice: hi bob")
            await b.send("/who")
            await ws_expect(b, "* in #lobby (2): alice, bob")
            # c is in another room: it saw nothing of lobby
            await c.send("/who")
            seen = await ws_expect(c, "* in #other (1): guest3")
            assert not any("lobby" in m or "alice" in m for m in seen), seen
            await b.close()
            await ws_expect(a, "* bob disconnected from #lobby (1 here)")

    run(scenario())


def test_membership_survives_reload(gateway):
    g = start(gateway)
    url = "ws://127.0.0.1:%d/ws" % g.port

    async def scenario():
        async with ws_connect(url) as a, ws_connect(url) as b:
            await a.send("/nick ann")
            await b.send("/nick ben")
            await a.send("/join r1")
            await ws_expect(a, "* ann joined #r1 (1 here)")
            await b.send("/join r1")
            await ws_expect(a, "* ben joined #r1 (2 here)")
            status, gen = await asyncio.get_running_loop().run_in_executor(None, g.reload)
            assert status == "ok", gen
            # the new generation knows the room, the nicks and the count
            await a.send("still here")
            await ws_expect(b, "ann: still here")
            await b.close()
            await ws_expect(a, "* ben disconnected from #r1 (1 here)")

    run(scenario())
