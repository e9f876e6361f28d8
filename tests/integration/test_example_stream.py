"""examples/stream (SPEC 2.3): a client streams binary data in 128 KiB
messages; the gateway sends "progress N" at every 4 MiB boundary, answers the
client's close with "got N bytes" before the close reply, and closes with 4413
"quota reached" (after "got N bytes") when a byte quota is reached, within
limits.close_timeout even if the client never answers.

Every test runs the real examples/stream/stream.lua with the shipped
examples/stream/moongate.yaml, changed only in its ports, close_timeout (1s)
and, where said, app.quota / app.progress_every.
"""
import asyncio
import os
import time

import websockets
import yaml

from conftest import (ROOT, OP_CLOSE, OP_TEXT, deep_merge, parse_close, run, run_cli,
                      ws_connect, ws_recv, ws_wait_closed)

EXAMPLE = os.path.join(ROOT, "examples", "stream")
SHIPPED_CONF = os.path.join(EXAMPLE, "moongate.yaml")
SCRIPT = open(os.path.join(EXAMPLE, "stream.lua")).read()
SHIPPED = yaml.safe_load(open(SHIPPED_CONF))
PATH = SHIPPED["listen"][0]["path"]

KiB, MiB = 1024, 1024 * 1024
CHUNK = 128 * KiB
STEP = 4 * MiB
CLOSE_TIMEOUT = 1.0
QUOTA = 1 * MiB
FAST = {"limits": {"close_timeout": "1s"}}


def start(gateway, app=None):
    """The example on free ports; `app` overrides keys of its app: section."""
    g = gateway(SCRIPT, start=False, path=PATH, admin=True)
    conf = deep_merge(SHIPPED, FAST)
    if app:
        conf = deep_merge(conf, {"app": app})
    conf["listen"] = [dict(SHIPPED["listen"][0], port=g.port)]
    conf["script"] = "app.lua"
    conf["admin"] = {"host": "127.0.0.1", "port": g.admin_port}
    g.write_config(conf)
    return g.start()


def closed_lines(g):
    """Stop the gateway (so every hook has run) and return its on_disconnect lines."""
    assert g.stop() == 0
    return [l.split("lua: ", 1)[1] for l in g.find_logs(r"lua: stream closed: ")]


def progress(total, step=STEP):
    return ["progress %d" % m for m in range(step, total + 1, step)]


def read_until_close(c, timeout=5):
    """Raw client: every frame up to and including the server's close frame,
    as (opcode, payload), in order; the close is not answered."""
    frames = []
    deadline = time.monotonic() + timeout
    for _ in range(10000):
        f = c.recv_frame(max(0.01, deadline - time.monotonic()))
        frames.append((f.opcode, f.payload))
        if f.opcode == OP_CLOSE:
            return frames
    raise AssertionError("no close frame: %r" % frames)


def test_shipped_config_is_valid_with_documented_values():
    r = run_cli(["-t", "-c", SHIPPED_CONF])
    assert r.returncode == 0, r.stderr
    assert SHIPPED["app"] == {"progress_every": 4 * MiB, "quota": 64 * MiB}
    assert SHIPPED["limits"]["max_message_size"] == "1MiB"   # 128 KiB messages fit


def test_stream_progress_then_client_close_gets_the_total(gateway):
    g = start(gateway)
    total = 80 * CHUNK + 1000                    # 10 MiB and a bit

    async def go():
        async with ws_connect(g.url) as ws:
            for i in range(80):
                await ws.send(bytes([i]) * CHUNK)
            await ws.send(b"\xff" * 1000)
            t0 = time.monotonic()
            await asyncio.wait_for(ws.close(1000, "done"), 5)   # our close, then the reply
            took = time.monotonic() - t0
            msgs = []
            for _ in range(100):                 # what arrived before the close reply
                try:
                    msgs.append(await ws_recv(ws, 1))
                except websockets.exceptions.ConnectionClosed:
                    break
            return msgs, (ws.close_code, ws.close_reason), took

    msgs, close, took = run(go(), 30)
    assert msgs == progress(total) + ["got %d bytes" % total]
    assert msgs[:2] == ["progress 4194304", "progress 8388608"]
    assert close == (1000, "done")                # our code (and reason) echoed
    assert took < 2, "close handshake took %.2fs" % took
    assert closed_lines(g) == ["stream closed: 1000 done after %d bytes" % total]


def test_raw_client_close_final_message_comes_before_the_close_frame(gateway, raw):
    g = start(gateway)
    c = raw(g.port, PATH)
    total = 33 * CHUNK + 7
    for _ in range(33):
        c.send_binary(b"\x01" * CHUNK)
    c.send_binary(b"\x02" * 7)
    c.send_close(4100, "end of stream")
    frames = read_until_close(c)
    assert frames[:-1] == [(OP_TEXT, b"progress 4194304"),
                           (OP_TEXT, b"got %d bytes" % total)]
    assert frames[-1][0] == OP_CLOSE and parse_close(frames[-1][1])[0] == 4100
    assert c.wait_eof(3) < 2                     # the server hangs up, nobody waits
    assert closed_lines(g) == ["stream closed: 4100 end of stream after %d bytes" % total]


def test_text_is_refused_and_not_counted(gateway, raw):
    g = start(gateway)
    c = raw(g.port, PATH)
    c.send_text("hello")
    assert c.recv_text().startswith("error: ")
    c.send_binary(b"abc")
    c.send_close(1000)
    assert read_until_close(c)[:-1] == [(OP_TEXT, b"got 3 bytes")]


def test_a_big_message_reports_every_boundary_it_crosses(gateway, raw):
    step = 100000
    g = start(gateway, app={"progress_every": step})
    c = raw(g.port, PATH)
    c.send_binary(b"\x00" * 99999)               # just below the first boundary
    c.send_binary(b"\x00" * MiB)                 # crosses ten at once
    c.send_close(1000)
    total = 99999 + MiB
    frames = read_until_close(c)
    assert [p.decode() for _, p in frames[:-1]] == (progress(total, step) +
                                                   ["got %d bytes" % total])
    assert len(frames) == 1 + 11 + 1


def test_quota_server_sends_total_then_closes(gateway):
    g = start(gateway, app={"quota": QUOTA})

    async def go():
        async with ws_connect(g.url) as ws:
            for _ in range(QUOTA // CHUNK):
                await ws.send(b"\x07" * CHUNK)
            assert await ws_recv(ws) == "got %d bytes" % QUOTA
            t0 = time.monotonic()
            code, reason = await ws_wait_closed(ws, 5)
            return code, reason, time.monotonic() - t0

    code, reason, took = run(go(), 20)
    assert (code, reason) == (4413, "quota reached")
    assert took < CLOSE_TIMEOUT, "the answered close took %.2fs" % took
    assert closed_lines(g) == ["stream closed: 4413 quota reached after %d bytes" % QUOTA]


def test_quota_close_unanswered_ends_within_close_timeout(gateway, raw):
    g = start(gateway, app={"quota": QUOTA})
    c = raw(g.port, PATH)
    for _ in range(QUOTA // CHUNK + 4):          # 4 more in flight: not counted
        c.send_binary(b"\x09" * CHUNK)
    frames = read_until_close(c)                 # and never answer the close
    assert frames[:-1] == [(OP_TEXT, b"got %d bytes" % QUOTA)]
    assert parse_close(frames[-1][1]) == (4413, "quota reached")
    waited = c.wait_eof(CLOSE_TIMEOUT + 3)
    assert CLOSE_TIMEOUT / 2 <= waited <= CLOSE_TIMEOUT + 1, \
        "socket dropped %.2fs after the close frame (close_timeout %ss)" % (waited, CLOSE_TIMEOUT)
    assert closed_lines(g) == ["stream closed: 4413 quota reached after %d bytes" % QUOTA]
