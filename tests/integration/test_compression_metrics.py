"""The compression series of /metrics move with what permessage-deflate does.

python-websockets offers permessage-deflate by default (client_max_window_bits,
context takeover in both directions unless the server asks otherwise), so its
connections negotiate on a listener with compression on.
"""

import pytest

from conftest import run, ws_connect, ws_recv

SCRIPT = """
function on_connect(conn)
  gw.log.info("CONN " .. conn.id)
end
function on_message(conn, data, kind)
  if data:sub(1, 1) == "!" then
    gw.broadcast(data, nil, kind)
  else
    conn:send(data, kind)
  end
end
function on_disconnect(conn, code, reason)
  gw.log.info("DISC " .. conn.id)
end
"""

# a chat-like message: long enough to pass min_size, repetitive enough to shrink
MSG = ('{"type":"msg","room":"lobby","user":"user0042","text":"the quick brown fox '
       'jumps over the lazy dog and the lazy dog sleeps","ts":1234567890}')


def start(gateway, **compression):
    g = gateway(SCRIPT, admin=True, start=False)
    g.config["listen"][0]["compression"] = dict({"enabled": True}, **compression)
    g.write_config()
    g.start()
    return g


def delta(before, after, name):
    return after.get(name, 0) - before.get(name, 0)


def test_series_are_listed(gateway):
    g = start(gateway)
    text = g.metrics_text()
    for name in ["moongate_compression_connections", "moongate_compression_messages_in_total",
                 "moongate_compression_in_wire_bytes_total", "moongate_compression_in_bytes_total",
                 "moongate_compression_messages_out_total",
                 "moongate_compression_out_wire_bytes_total",
                 "moongate_compression_out_bytes_total", "moongate_compression_deflates_total",
                 "moongate_compression_memory_bytes",
                 "moongate_compression_shared_memory_bytes"]:
        assert "\n# TYPE %s " % name in text, name
    # the gateway-wide streams exist from the start (their structs at least)
    assert g.metrics()["moongate_compression_shared_memory_bytes"] > 0


def test_echo_counters_move(gateway):
    g = start(gateway)
    before = g.metrics()

    async def go():
        async with ws_connect(g.url) as ws:
            assert ws.response_headers["Sec-WebSocket-Extensions"].startswith(
                "permessage-deflate")
            m = g.metrics()
            assert m["moongate_compression_connections"] == 1
            for _ in range(3):
                await ws.send(MSG)
                assert await ws_recv(ws) == MSG
            return g.metrics()

    during = run(go())
    d = lambda k: delta(before, during, k)
    assert d("moongate_compression_messages_in_total") == 3
    assert d("moongate_compression_in_bytes_total") == 3 * len(MSG)
    assert 0 < d("moongate_compression_in_wire_bytes_total") < 3 * len(MSG)
    assert d("moongate_compression_messages_out_total") == 3
    assert d("moongate_compression_out_bytes_total") == 3 * len(MSG)
    assert 0 < d("moongate_compression_out_wire_bytes_total") < 3 * len(MSG)
    assert d("moongate_compression_deflates_total") == 3
    g.wait_log(r"DISC \d+", 5)  # the only connection
    after = g.metrics()
    assert after["moongate_compression_connections"] == 0
    # no connection is left: only the gateway-wide streams hold zlib memory
    assert (after["moongate_compression_memory_bytes"]
            == after["moongate_compression_shared_memory_bytes"])


def test_small_message_is_not_counted_as_compressed(gateway):
    g = start(gateway, min_size=64)
    before = g.metrics()

    async def go():
        async with ws_connect(g.url, compression=None) as ws:  # no offer: plain
            await ws.send(MSG)
            assert await ws_recv(ws) == MSG

    run(go())
    after = g.metrics()
    assert delta(before, after, "moongate_compression_messages_out_total") == 0
    assert delta(before, after, "moongate_compression_deflates_total") == 0
    assert after["moongate_compression_connections"] == 0


def test_context_takeover_memory_is_counted_and_freed(gateway):
    # with context takeover the connection keeps its own streams between messages
    g = start(gateway, server_no_context_takeover=False, client_no_context_takeover=False)

    async def go():
        async with ws_connect(g.url) as ws:
            ext = ws.response_headers["Sec-WebSocket-Extensions"]
            assert "no_context_takeover" not in ext, ext
            await ws.send(MSG)
            assert await ws_recv(ws) == MSG
            return g.metrics()

    during = run(go())
    conn_mem = (during["moongate_compression_memory_bytes"]
                - during["moongate_compression_shared_memory_bytes"])
    # a deflater at window 15 / memLevel 8 is ~262 KB, an inflater ~40 KB
    assert conn_mem > 256 * 1024, conn_mem
    g.wait_log(r"DISC \d+", 5)
    after = g.metrics()
    assert (after["moongate_compression_memory_bytes"]
            == after["moongate_compression_shared_memory_bytes"])


@pytest.mark.parametrize("n", [5])
def test_broadcast_is_compressed_once(gateway, n):
    g = start(gateway)
    before = g.metrics()
    msg = "!" + MSG

    async def go():
        conns = []
        try:
            for _ in range(n):
                conns.append(await ws_connect(g.url))
            await conns[0].send(msg)
            for ws in conns:
                assert await ws_recv(ws) == msg
        finally:
            for ws in conns:
                await ws.close()

    run(go())
    after = g.metrics()
    d = lambda k: delta(before, after, k)
    assert d("moongate_compression_messages_out_total") == n
    assert d("moongate_compression_out_bytes_total") == n * len(msg)
    # every recipient negotiated the same parameters without server context
    # takeover (the default): one deflate for all of them
    assert d("moongate_compression_deflates_total") == 1
    assert d("moongate_compression_messages_in_total") == 1
