"""Idle memory: each connection's receive buffer (lwsmem.c) is emptied at
every pong, and messages around a release arrive intact — whole, in
fragments with a pong between them, or a frame half sent before a pause.
The gauges on /metrics say how many buffers exist and how often one was
emptied.  Only libwebsockets' reader uses that buffer (on a listener with
`reader: libwebsockets`, and on TLS listeners); with moongate's reader
(fastrx.c) lws never reads, and the buffer's pages are never touched."""

import os
import time

import pytest

from conftest import OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT, encode_frame

SCRIPT = """
function on_message(conn, data, kind)
  conn:send(data, kind)
end
"""

NO_HEARTBEAT = {"heartbeat": {"interval": 0, "timeout": 0}}


@pytest.fixture
def gw(gateway):
    return gateway(SCRIPT, {"heartbeat": {"interval": "300ms", "timeout": "5s"}}, admin=True,
                   reader="libwebsockets")


def releases(gw):
    return gw.metrics()["moongate_rx_buffer_releases_total"]


def open_and_close(gw, raw, n):
    """n connections, each with its receive buffer, closed by the client."""
    cs = [raw(gw.port) for _ in range(n)]
    assert gw.metrics()["moongate_rx_buffers"] == n
    for c in cs:
        c.send_close(1000)
        c.wait_close(5)


def wait_metric(gw, name, done, timeout=10):
    """The metric's value once done(value) holds, or when timeout passed."""
    deadline = time.monotonic() + timeout
    while not done(gw.metrics()[name]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return gw.metrics()[name]


def test_one_buffer_per_connection(gw, raw):
    m = gw.metrics()
    assert m["moongate_rx_buffers"] == 0
    assert m["moongate_resident_bytes"] > 0
    assert m["moongate_lws_heap_bytes"] > 0
    open_and_close(gw, raw, 3)
    assert wait_metric(gw, "moongate_rx_buffers", lambda v: v == 0) == 0


def test_freed_buffers_kept_for_reuse_then_trimmed(gw, raw):
    """A closed connection's receive buffer is kept as it is for the next
    one; a second after more than 256 KiB of them piled up, the oldest go
    back to the kernel (40 buffers of 68 KiB: 3 stay)."""
    m = gw.metrics()
    assert m["moongate_lws_trimmed_total"] == 0
    open_and_close(gw, raw, 40)
    wait_metric(gw, "moongate_lws_trimmed_total", lambda v: v >= 37)
    m = gw.metrics()
    assert m["moongate_rx_buffers"] == 0
    assert m["moongate_lws_trimmed_total"] == 37
    assert 3 * 65536 <= m["moongate_lws_kept_bytes"] <= 2 * 256 * 1024
    # the kept ones come back first: no new trims, fewer kept
    c = raw(gw.port)
    c.send_text("again")
    assert c.recv_message(5) == ("text", "again")
    m2 = gw.metrics()
    assert m2["moongate_lws_kept_bytes"] < m["moongate_lws_kept_bytes"]
    assert m2["moongate_lws_trimmed_total"] == 37


def test_heartbeat_pong_releases_and_messages_stay_intact(gw, raw):
    c = raw(gw.port)
    before = releases(gw)
    c.send_text("first")
    assert c.recv_message(5) == ("text", "first")
    for _ in range(100):  # reading answers the heartbeat's pings
        try:
            c.recv_message(0.1)
        except TimeoutError:
            pass
        if releases(gw) > before:
            break
    assert releases(gw) > before
    big = os.urandom(16384)
    c.send_binary(big)
    assert c.recv_message(5) == ("binary", big)
    c.send_ping(b"after a release")  # a client ping goes through the buffer too
    for _ in range(100):
        f = c.recv_frame(5)
        if f.opcode == OP_PONG and f.payload == b"after a release":
            break
    else:
        pytest.fail("no pong for the client's ping")


def test_pong_between_fragments(gateway, raw):
    gw = gateway(SCRIPT, NO_HEARTBEAT, admin=True, reader="libwebsockets")
    c = raw(gw.port)
    before = releases(gw)
    c.send_frame(OP_TEXT, b"part one, ", fin=False)
    c.send_pong(b"unsolicited")
    c.send_frame(OP_CONT, b"part two, ", fin=False)
    c.send_pong(b"")  # empty: lws does not report it
    c.send_frame(OP_CONT, b"part three", fin=True)
    assert c.recv_message(5) == ("text", "part one, part two, part three")
    assert releases(gw) == before + 1


def test_moongate_reader_leaves_the_buffer_untouched(gateway, raw):
    """Heartbeat pongs, client pings and messages on moongate's reader: lws's
    receive buffer is never used, so it never needs emptying."""
    gw = gateway(SCRIPT, {"heartbeat": {"interval": "200ms", "timeout": "5s"}}, admin=True,
                 reader="moongate")
    c = raw(gw.port)
    c.send_text("first")
    assert c.recv_message(5) == ("text", "first")
    pongs = 0
    for _ in range(100):  # the heartbeat pings; RawWS answers each with a pong
        f = c.recv_frame(5)
        if f.opcode == OP_PING:
            c.send_pong(f.payload)
            pongs += 1
            if pongs == 3:
                break
    assert pongs == 3
    c.send_ping(b"client ping")
    for _ in range(100):
        f = c.recv_frame(5)
        if f.opcode == OP_PONG and f.payload == b"client ping":
            break
    c.send_text("after")
    assert c.recv_message(5) == ("text", "after")
    assert releases(gw) == 0
    assert gw.metrics()["moongate_rx_buffers"] == 1


def test_half_sent_frame_then_pause(gateway, raw):
    gw = gateway(SCRIPT, NO_HEARTBEAT, admin=True)
    c = raw(gw.port)
    c.send_pong(b"x")
    payload = bytes(range(256)) * 40
    frame = encode_frame(OP_BINARY, payload)
    c.send_raw(frame[:5000])  # header and half the payload, then silence
    time.sleep(1.5)
    c.send_raw(frame[5000:])
    assert c.recv_message(5) == ("binary", payload)
    frame = encode_frame(OP_TEXT, b"pong in the same read")
    c.send_raw(encode_frame(OP_PONG, b"p") + frame[:3])
    time.sleep(0.5)
    c.send_raw(frame[3:])
    assert c.recv_message(5) == ("text", "pong in the same read")
