"""permessage-deflate (RFC 7692) from the client side: what the 101 answers
to an offer, compressed echo through python-websockets (an independent
implementation; compression is its default) on ws:// and wss://, what goes
on the wire (raw sockets with Python's zlib), context takeover across many
messages, broadcasts and publishes reaching clients with different
parameters, and the ways a compressed message fails the connection (a
decompression bomb, invalid UTF-8 inside it, RSV1 where it may not be).

One gateway for the module (moongate's reader: compression needs it), with
listeners that differ only in their `compression` section:

- default: enabled with the defaults (no context takeover either way);
- takeover: server_ and client_no_context_takeover false;
- small: windows of 10 bits both ways, mem_level 4;
- off: compression not enabled;
- wss: TLS, enabled with the defaults;

and one more gateway with `workers: 2` for a publish and a broadcast that
cross workers.

Every test opens its own connections; every wait is bounded.
"""

import asyncio
import random
import ssl
import time
import zlib

import pytest
import websockets
from websockets.extensions.permessage_deflate import (ClientPerMessageDeflateFactory,
                                                      PerMessageDeflate)

from conftest import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, Gateway, RawWS,
                      free_port, handshake_request, http_raw, run, sanitizer_lines, ws_connect,
                      ws_recv)
from conftest import make_cert

# "!B" + payload: broadcast the payload, "!P" + payload: publish it to topic
# t (every connection is subscribed); both keep the message's kind.
# Anything else is echoed with its kind.
SCRIPT = """
function on_connect(conn)
  conn:subscribe("t")
end

function on_message(conn, data, kind)
  local cmd = data:sub(1, 2)
  if cmd == "!B" then
    gw.broadcast(data:sub(3), nil, kind)
  elseif cmd == "!P" then
    gw.publish("t", data:sub(3), kind)
  else
    conn:send(data, kind)
  end
end
"""

MAX_MESSAGE = 2 * 1024 * 1024
MIN_SIZE = 64
RSV1 = 4  # RawWS / encode_frame count the reserved bits RSV1=4, RSV2=2, RSV3=1
TAIL = b"\x00\x00\xff\xff"

LISTENERS = {
    "default": {"enabled": True},
    "takeover": {"enabled": True, "server_no_context_takeover": False,
                 "client_no_context_takeover": False},
    "small": {"enabled": True, "server_max_window_bits": 10, "client_max_window_bits": 10,
              "mem_level": 4},
    "off": None,
    "wss": {"enabled": True},
}




class Gw:
    """The module's gateway: .port[name], .url(name), .ssl (for wss)."""

    def __init__(self, g, ports, ctx):
        self.g, self.port, self.ssl = g, ports, ctx

    def url(self, name):
        scheme = "wss" if name == "wss" else "ws"
        return "%s://127.0.0.1:%d/" % (scheme, self.port[name])

    def connect(self, name, **kw):
        if name == "wss":
            kw.setdefault("ssl", self.ssl)
        return ws_connect(self.url(name), **kw)


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compression")
    g = Gateway(folder / "gw", SCRIPT, {"limits": {"max_message_size": MAX_MESSAGE},
                                        "heartbeat": {"interval": 0, "timeout": 0}},
                reader="moongate")
    crt, _ = make_cert(g.dir)
    ports = {name: (g.port if name == "default" else free_port()) for name in LISTENERS}
    listen = []
    for name, comp in LISTENERS.items():
        entry = {"host": "127.0.0.1", "port": ports[name], "path": "/", "reader": "moongate"}
        if comp:
            entry["compression"] = comp
        if name == "wss":
            entry["tls"] = {"cert": "server.crt", "key": "server.key"}
        listen.append(entry)
    g.update_config({"listen": listen})
    try:
        g.start()
        yield Gw(g, ports, ssl.create_default_context(cafile=crt))
        code = g.stop()
    finally:
        g.cleanup()
        print("---- gateway log, last 60 lines ----\n%s" % g.log_tail(60))
    assert code == 0, "gateway exit code %s" % code
    assert not sanitizer_lines(g.log_lines), "\n".join(sanitizer_lines(g.log_lines)[:20])


# --------------------------------------------------------------------------
# raw-socket helpers: deflate with Python's zlib, frames by hand
# --------------------------------------------------------------------------

def deflate(data, co=None, bits=15):
    """A message's compressed payload (RFC 7692 7.2.1): raw deflate, flushed,
    the final 00 00 ff ff removed.  co: a compressobj kept across messages
    (context takeover); a fresh one otherwise."""
    co = co or zlib.compressobj(1, zlib.DEFLATED, -bits)
    out = co.compress(data) + co.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def raw_pmd(port, offer="permessage-deflate"):
    """A raw client whose offer was accepted: (client, the 101's answer)."""
    c = RawWS(port, "/", headers={"Sec-WebSocket-Extensions": offer})
    answer = c.response.headers.get("sec-websocket-extensions")
    assert answer and answer.startswith("permessage-deflate"), c.response
    return c, answer


def recv_pmd(c, dec=None, timeout=5):
    """The next data message -> (kind, bytes, compressed?): RSV1 on its
    first frame means compressed; dec is a decompressobj kept across
    messages (context takeover), a fresh one otherwise."""
    deadline = time.monotonic() + timeout
    parts, first = [], None
    for _ in range(100000):
        f = c.recv_frame(max(0.01, deadline - time.monotonic()))
        if f.opcode in (OP_PING, OP_PONG):
            continue
        assert f.opcode != OP_CLOSE, "closed: %r" % (f.payload,)
        if first is None:
            assert f.opcode in (OP_TEXT, OP_BINARY), f
            first = f
        else:
            assert f.opcode == OP_CONT and f.rsv == 0, f
        parts.append(f.payload)
        if f.fin:
            break
    data = b"".join(parts)
    kind = "text" if first.opcode == OP_TEXT else "binary"
    if first.rsv & RSV1:
        dec = dec or zlib.decompressobj(-15)
        return kind, dec.decompress(data + TAIL), True
    assert first.rsv == 0, first
    return kind, data, False


def offer_headers(offer):
    return {"Sec-WebSocket-Extensions": offer}


def pmd_of(ws):
    """The PerMessageDeflate extension python-websockets negotiated, or None."""
    got = [e for e in ws.extensions if isinstance(e, PerMessageDeflate)]
    return got[0] if got else None


def payload(kind, size, seed=1):
    """Compressible but not trivial content of `size` bytes: text of words,
    or bytes; never starting with "!" (the script's commands)."""
    rnd = random.Random(seed * 7919 + size)
    words = [("w%d" % rnd.randrange(500)).encode() for _ in range(size // 3 + 1)]
    data = b" ".join(words)[:size]
    if kind == "binary":
        data = bytes(b ^ rnd.randrange(4) for b in data)
    data = data.replace(b"!", b"?")
    return data.decode() if kind == "text" else data


# --------------------------------------------------------------------------
# negotiation
# --------------------------------------------------------------------------

NSCT = "server_no_context_takeover"
NCCT = "client_no_context_takeover"
BOTH = "permessage-deflate; %s; %s" % (NSCT, NCCT)

# (listener, offer, the 101's Sec-WebSocket-Extensions or None)
NEGOTIATION = [
    ("default", "permessage-deflate", BOTH),
    # python-websockets' and browsers' offer: the limit 15 needs no answer
    ("default", "permessage-deflate; client_max_window_bits", BOTH),
    ("default", "permessage-deflate; client_max_window_bits=9",
     BOTH + "; client_max_window_bits=9"),
    ("default", "permessage-deflate; server_max_window_bits=10",
     BOTH + "; server_max_window_bits=10"),
    ("default", "permessage-deflate; server_max_window_bits=8",
     BOTH + "; server_max_window_bits=8"),
    ("default", "permessage-deflate; " + NSCT, BOTH),
    ("default", "permessage-deflate; " + NCCT, BOTH),
    ("takeover", "permessage-deflate", "permessage-deflate"),
    ("takeover", "permessage-deflate; client_max_window_bits", "permessage-deflate"),
    ("takeover", "permessage-deflate; " + NSCT, "permessage-deflate; " + NSCT),
    ("takeover", "permessage-deflate; " + NCCT, "permessage-deflate; " + NCCT),
    ("takeover", "permessage-deflate; client_max_window_bits=12; server_max_window_bits=11",
     "permessage-deflate; server_max_window_bits=11; client_max_window_bits=12"),
    # a listener limiting the client's window needs an offer that allows it
    ("small", "permessage-deflate", None),
    ("small", "permessage-deflate; client_max_window_bits",
     BOTH + "; server_max_window_bits=10; client_max_window_bits=10"),
    ("small", "permessage-deflate; client_max_window_bits=9",
     BOTH + "; server_max_window_bits=10; client_max_window_bits=9"),
    ("small", "permessage-deflate; client_max_window_bits; server_max_window_bits=9",
     BOTH + "; server_max_window_bits=9; client_max_window_bits=10"),
    # offers RFC 7692 makes invalid are declined: no extension, still a 101
    ("default", "permessage-deflate; x-unknown=1", None),
    ("default", "permessage-deflate; server_max_window_bits", None),
    ("default", "permessage-deflate; server_max_window_bits=16", None),
    ("default", "permessage-deflate; server_max_window_bits=7", None),
    ("default", "permessage-deflate; client_max_window_bits=7", None),
    ("default", "permessage-deflate; server_max_window_bits=010", None),
    ("default", "permessage-deflate; %s=1" % NSCT, None),
    ("default", "permessage-deflate; %s; %s" % (NCCT, NCCT), None),
    # the first offer that can be honoured wins; other extensions are ignored
    ("default", "permessage-deflate; server_max_window_bits=16, permessage-deflate", BOTH),
    ("default", "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=12",
     BOTH + "; client_max_window_bits=12"),
    ("small", "permessage-deflate, permessage-deflate; client_max_window_bits=8",
     BOTH + "; server_max_window_bits=10; client_max_window_bits=8"),
    ("default", "x-webkit-deflate-frame", None),
    # a listener without compression answers no offer
    ("off", "permessage-deflate", None),
    ("off", "permessage-deflate; client_max_window_bits", None),
]


@pytest.mark.parametrize("listener,offer,want", NEGOTIATION,
                         ids=["%s:%s" % (n, o) for n, o, _ in NEGOTIATION])
def test_negotiation_answer(gw, listener, offer, want):
    port = gw.port[listener]
    r = http_raw(port, handshake_request("/", port, extra=offer_headers(offer)))
    assert r.status == 101, r
    assert r.headers.get("sec-websocket-extensions") == want, r.headers


def test_no_offer_no_extension(gw):
    port = gw.port["default"]
    r = http_raw(port, handshake_request("/", port))
    assert r.status == 101 and "sec-websocket-extensions" not in r.headers, r


@pytest.mark.parametrize("listener", ["default", "takeover", "small", "wss"])
def test_python_websockets_default_offer_is_accepted(gw, listener):
    """python-websockets offers `permessage-deflate; client_max_window_bits`
    by default; it accepts every listener's answer."""
    async def go():
        async with gw.connect(listener) as ws:
            ext = pmd_of(ws)
            assert ext is not None, ws.response_headers
            answer = ws.response_headers["Sec-WebSocket-Extensions"]
            want_takeover = listener == "takeover"
            assert (NSCT in answer) != want_takeover, answer
            assert ext.remote_no_context_takeover == (not want_takeover)
            assert ext.local_no_context_takeover == (not want_takeover)
            assert ext.remote_max_window_bits == (10 if listener == "small" else 15)
            assert ext.local_max_window_bits == (10 if listener == "small" else 15)
    run(go())


def test_python_websockets_on_listener_without_compression(gw):
    async def go():
        async with gw.connect("off") as ws:
            assert pmd_of(ws) is None
            assert "Sec-WebSocket-Extensions" not in ws.response_headers
            await ws.send("plain")
            assert await ws_recv(ws) == "plain"
    run(go())


# --------------------------------------------------------------------------
# echo through python-websockets
# --------------------------------------------------------------------------

SIZES = [0, 1, MIN_SIZE - 1, MIN_SIZE, 64 * 1024, 1024 * 1024]


@pytest.mark.parametrize("listener", ["default", "takeover", "small", "wss"])
def test_compressed_echo_sizes(gw, listener):
    """Text and binary of 0, 1, just under and at min_size, 64 KiB and 1 MiB
    come back byte for byte."""
    async def go():
        async with gw.connect(listener) as ws:
            assert pmd_of(ws) is not None
            for size in SIZES:
                for kind in ("text", "binary"):
                    data = payload(kind, size)
                    await ws.send(data)
                    got = await ws_recv(ws, 20)
                    assert type(got) is type(data) and got == data, (kind, size, len(got))
    run(go(), timeout=120)


@pytest.mark.parametrize("offer", [
    dict(server_no_context_takeover=True),
    dict(client_no_context_takeover=True),
    dict(server_max_window_bits=8, client_max_window_bits=9),
    dict(server_max_window_bits=9, client_max_window_bits=12),
], ids=["server_nct", "client_nct", "windows8_9", "windows9_12"])
def test_echo_with_client_chosen_parameters(gw, offer):
    """python-websockets asking for parameters of its own on the takeover
    listener: context across messages where allowed, small windows (Python's
    zlib cannot compress with an 8-bit window, so the client's is 9 or
    more; the server's 8 is compressed with 9 bits, distances within 256)."""
    factory = ClientPerMessageDeflateFactory(**offer)

    async def go():
        async with gw.connect("takeover", compression=None, extensions=[factory]) as ws:
            ext = pmd_of(ws)
            assert ext is not None, ws.response_headers
            for i in range(40):
                data = payload("text", 300 + 50 * i, seed=i % 5)
                await ws.send(data)
                assert await ws_recv(ws) == data, i
    run(go())


# --------------------------------------------------------------------------
# on the wire
# --------------------------------------------------------------------------

def test_server_compresses_above_min_size_only(gw):
    """A raw client sees RSV1 on replies of min_size bytes and more, not on
    shorter ones; the compressed reply inflates to the message."""
    c, _ = raw_pmd(gw.port["default"])
    try:
        small = b"x" * (MIN_SIZE - 1)
        c.send_frame(OP_TEXT, small)
        assert recv_pmd(c) == ("text", small, False)
        big = payload("text", 64 * 1024).encode()
        wire = deflate(big)
        c.send_frame(OP_TEXT, wire, rsv=RSV1)
        f = c.recv_frame(5)
        assert f.opcode == OP_TEXT and f.rsv == RSV1 and f.fin, f
        assert len(f.payload) < len(big) // 2, "reply barely compressed: %d" % len(f.payload)
        assert zlib.decompressobj(-15).decompress(f.payload + TAIL) == big
        # an uncompressed message is fine on a compressed connection too
        c.send_frame(OP_BINARY, big)
        assert recv_pmd(c) == ("binary", big, True)
    finally:
        c.close()


def test_context_takeover_many_messages(gw):
    """takeover listener, no parameters: both sides keep their LZ77 window
    across messages.  The client compresses against its earlier messages,
    the server's replies refer back to earlier replies (they shrink to a few
    bytes), and 300 messages inflate right on both ends, some of them sent
    in two frames that arrive in two reads."""
    c, answer = raw_pmd(gw.port["takeover"])
    assert answer == "permessage-deflate", answer
    co, dec = zlib.compressobj(1, zlib.DEFLATED, -15), zlib.decompressobj(-15)
    base = payload("text", 4000).encode()
    sizes = []
    try:
        for i in range(300):
            # slide: each message repeats most of an earlier one
            msg = base[i % 1000:] + b" #%d" % i
            wire = deflate(msg, co)
            if i % 50 == 7:  # now and then in two frames, two reads
                c.send_frame(OP_TEXT, wire[:len(wire) // 2], fin=False, rsv=RSV1)
                c.send_frame(OP_PING, b"read")
                assert c.recv_frame(5).opcode == OP_PONG
                c.send_frame(OP_CONT, wire[len(wire) // 2:])
            else:
                c.send_frame(OP_TEXT, wire, rsv=RSV1)
            f = c.recv_frame(5)
            assert f.opcode == OP_TEXT and f.rsv == RSV1, f
            sizes.append(len(f.payload))
            assert dec.decompress(f.payload + TAIL) == msg, i
        # with the window carried over, a repeat costs a few back-references:
        # alone, each would take about as much as the first
        assert sizes[0] > 1000, sizes[0]
        assert max(sizes[1:]) < sizes[0] // 3, sizes
        assert sum(sizes[1:]) / len(sizes[1:]) < 200, sizes
    finally:
        c.close()


def test_no_context_takeover_messages_stand_alone(gw):
    """default listener: every reply inflates on its own (a fresh inflater
    each time), even after many similar messages."""
    c, answer = raw_pmd(gw.port["default"])
    assert answer == BOTH
    msg = payload("text", 5000).encode()
    try:
        for i in range(20):
            c.send_frame(OP_TEXT, deflate(msg), rsv=RSV1)
            assert recv_pmd(c) == ("text", msg, True), i
    finally:
        c.close()


@pytest.mark.parametrize("listener", ["default", "takeover"])
def test_fragmented_compressed_message(gw, listener):
    """One compressed message in five frames (RSV1 on the first only), a
    ping between two of them, the deflate data cut at arbitrary bytes: the
    pong first, then the whole message."""
    c, _ = raw_pmd(gw.port[listener])
    try:
        msg = payload("text", 20000, seed=3).encode()
        wire = deflate(msg)
        cuts = [0, 1, len(wire) // 3, len(wire) // 2, len(wire) - 1, len(wire)]
        for k in range(5):
            chunk = wire[cuts[k]:cuts[k + 1]]
            c.send_frame(OP_TEXT if k == 0 else OP_CONT, chunk, fin=(k == 4),
                         rsv=RSV1 if k == 0 else 0)
            if k == 2:
                # the pong proves the first part was read: the rest comes
                # in another read
                c.send_frame(OP_PING, b"mid")
                f = c.recv_frame(5)
                assert (f.opcode, f.payload) == (OP_PONG, b"mid"), f
        assert recv_pmd(c) == ("text", msg, True)
        # and the connection goes on
        c.send_frame(OP_BINARY, deflate(b"after" * 100), rsv=RSV1)
        assert recv_pmd(c) == ("binary", b"after" * 100, True)
    finally:
        c.close()


def test_partial_messages_of_two_connections_interleave(gw):
    """default listener (no context takeover): A's message stops halfway
    (its inflater is its own until the end) while B sends a whole message
    (inflated by the shared one) and then half of its own; both finish
    later and come back exact."""
    a, _ = raw_pmd(gw.port["default"])
    b, _ = raw_pmd(gw.port["default"])
    try:
        ma, mb, mw = (payload("text", 30000, seed=s).encode() for s in (5, 6, 7))
        wa, wb = deflate(ma), deflate(mb)

        def half(c, wire, opcode):
            c.send_frame(opcode, wire[:len(wire) // 2], fin=False, rsv=RSV1)
            c.send_frame(OP_PING, b"read")
            f = c.recv_frame(5)
            assert (f.opcode, f.payload) == (OP_PONG, b"read"), f

        half(a, wa, OP_TEXT)
        b.send_frame(OP_BINARY, deflate(mw), rsv=RSV1)
        assert recv_pmd(b) == ("binary", mw, True)
        half(b, wb, OP_TEXT)
        a.send_frame(OP_CONT, wa[len(wa) // 2:], fin=True)
        assert recv_pmd(a) == ("text", ma, True)
        b.send_frame(OP_CONT, wb[len(wb) // 2:], fin=True)
        assert recv_pmd(b) == ("text", mb, True)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("listener", ["default", "takeover"])
def test_empty_compressed_payloads(gw, listener):
    """RSV1 with no payload bytes at all, and with the deflate of nothing
    (02 00): both are the empty message; also as the first frame of a
    fragmented one."""
    c, _ = raw_pmd(gw.port[listener])
    try:
        c.send_frame(OP_TEXT, b"", rsv=RSV1)
        assert recv_pmd(c) == ("text", b"", False)
        c.send_frame(OP_BINARY, deflate(b""), rsv=RSV1)
        assert recv_pmd(c) == ("binary", b"", False)
        wire = deflate(b"tail" * 40)
        c.send_frame(OP_TEXT, b"", fin=False, rsv=RSV1)
        c.send_frame(OP_CONT, wire, fin=True)
        assert recv_pmd(c) == ("text", b"tail" * 40, True)
    finally:
        c.close()


# --------------------------------------------------------------------------
# broadcast and publish
# --------------------------------------------------------------------------

# (listener, how python-websockets connects): the parameter sets differ
RECIPIENTS = [
    ("default", {}),
    ("default", {"compression": None,
                 "extensions": [ClientPerMessageDeflateFactory(server_max_window_bits=10)]}),
    ("default", {"compression": None,
                 "extensions": [ClientPerMessageDeflateFactory(server_max_window_bits=8)]}),
    ("default", {"compression": None}),
    ("takeover", {}),
    ("takeover", {"compression": None,
                  "extensions": [ClientPerMessageDeflateFactory(server_no_context_takeover=True)]}),
    ("small", {}),
    ("off", {}),
    ("wss", {}),
]


def test_broadcast_and_publish_reach_every_parameter_set(gw):
    """Clients with different negotiated parameters (and none) on every
    listener: broadcasts and publishes, text and binary, below min_size and
    large, arrive exactly and in order."""
    msgs = [("text", payload("text", 10, 1)), ("text", payload("text", 100 * 1024, 2)),
            ("binary", payload("binary", 200 * 1024, 3)), ("text", payload("text", 5000, 4)),
            ("binary", payload("binary", 5000, 4)), ("text", payload("text", 5000, 4))]

    async def go():
        clients = []
        try:
            for name, kw in RECIPIENTS:
                ws = await gw.connect(name, **kw)
                clients.append(ws)
                # the echo proves on_connect (subscribe) ran
                await ws.send("hello")
                assert await ws_recv(ws) == "hello"
            negotiated = [pmd_of(ws) is not None for ws in clients]
            assert negotiated == [True, True, True, False, True, True, True, False, True]
            sender = clients[0]
            for i, (kind, data) in enumerate(msgs):
                cmd = "!B" if i % 2 == 0 else "!P"
                await sender.send(cmd + data if kind == "text" else cmd.encode() + data)
            for (name, _), ws in zip(RECIPIENTS, clients):
                for i, (kind, data) in enumerate(msgs):
                    got = await ws_recv(ws, 20)
                    assert got == data, (name, i, kind, len(got))
        finally:
            for ws in clients:
                await ws.close()
    run(go(), timeout=120)


# --------------------------------------------------------------------------
# failures
# --------------------------------------------------------------------------

def bomb(size=64 * 1024 * 1024):
    """size zero bytes, deflated: about a thousandth of it on the wire."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [co.compress(bytes(1 << 20)) for _ in range(size >> 20)]
    out.append(co.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(out)[:-4]


@pytest.mark.parametrize("listener,frames", [("default", 1), ("default", 8), ("takeover", 1)])
def test_decompression_bomb_closes_1009_and_others_go_on(gw, listener, frames):
    """64 MiB of zeros in ~64 KB of deflate: close 1009 once the inflated
    size passes max_message_size (2 MiB here), fast; a client connected
    before and one connecting after are served."""
    wire = bomb()
    assert len(wire) < 128 * 1024
    other = RawWS(gw.port[listener])
    c, _ = raw_pmd(gw.port[listener])
    try:
        t0 = time.monotonic()
        step = -(-len(wire) // frames)
        pieces = [wire[i:i + step] for i in range(0, len(wire), step)]
        try:
            for k, piece in enumerate(pieces):
                c.send_frame(OP_BINARY if k == 0 else OP_CONT, piece, fin=k == len(pieces) - 1,
                             rsv=RSV1 if k == 0 else 0)
        except OSError:
            pass  # the server may fail the connection before the last piece
        code, reason = c.wait_close(10)
        took = time.monotonic() - t0
        assert code == 1009, (code, reason)
        assert took < 5, took
        c.wait_eof(5)
        other.send_text("still here")
        assert other.recv_message(5) == ("text", "still here")
        third, _ = raw_pmd(gw.port[listener])
        third.send_frame(OP_TEXT, deflate(b"new" * 50), rsv=RSV1)
        assert recv_pmd(third) == ("text", b"new" * 50, True)
        third.close()
    finally:
        c.close()
        other.close()


def test_message_just_under_the_limit_is_echoed(gw):
    """The limit is on the inflated size: a compressed message inflating to
    max_message_size exactly is accepted."""
    c, _ = raw_pmd(gw.port["default"])
    try:
        msg = bytes(MAX_MESSAGE)
        c.send_frame(OP_BINARY, deflate(msg), rsv=RSV1)
        assert recv_pmd(c, timeout=10) == ("binary", msg, True)
    finally:
        c.close()


@pytest.mark.parametrize("where", ["start", "middle", "fragment"])
def test_compressed_invalid_utf8_closes_1007(gw, where):
    """Text that inflates to invalid UTF-8 -> 1007, whether the bad bytes
    come first, in the middle of a long message, or in a later fragment."""
    good = payload("text", 20000).encode()
    bad = b"\xf4\x90\x80\x80"
    c, _ = raw_pmd(gw.port["default"])
    try:
        if where == "start":
            c.send_frame(OP_TEXT, deflate(bad + good), rsv=RSV1)
        elif where == "middle":
            c.send_frame(OP_TEXT, deflate(good + bad + good), rsv=RSV1)
        else:
            wire = deflate(good + bad)
            c.send_frame(OP_TEXT, wire[:len(wire) // 2], fin=False, rsv=RSV1)
            c.send_frame(OP_CONT, wire[len(wire) // 2:], fin=True)
        assert c.wait_close(5)[0] == 1007
    finally:
        c.close()


def test_invalid_deflate_data_closes_1007(gw):
    """Bytes that do not inflate (a reserved block type) -> 1007."""
    c, _ = raw_pmd(gw.port["default"])
    try:
        c.send_frame(OP_BINARY, b"\xff\xff\xff\xff", rsv=RSV1)
        assert c.wait_close(5)[0] == 1007
    finally:
        c.close()


@pytest.mark.parametrize("listener,offer", [("default", None), ("off", "permessage-deflate"),
                                            ("small", "permessage-deflate")])
def test_rsv1_without_negotiation_closes_1002(gw, listener, offer):
    """No extension negotiated (no offer, compression off, an offer the
    listener declined): RSV1 is a protocol error."""
    c = RawWS(gw.port[listener], headers=offer_headers(offer) if offer else None)
    try:
        assert "sec-websocket-extensions" not in c.response.headers
        c.send_frame(OP_TEXT, deflate(b"hello" * 20), rsv=RSV1)
        assert c.wait_close(5)[0] == 1002
    finally:
        c.close()


@pytest.mark.parametrize("first_rsv1", [True, False])
def test_rsv1_on_continuation_closes_1002(gw, first_rsv1):
    """RSV1 belongs on a message's first frame only (RFC 7692 6)."""
    c, _ = raw_pmd(gw.port["default"])
    try:
        text = payload("text", 2000).encode()
        wire = deflate(text)
        if first_rsv1:
            c.send_frame(OP_TEXT, wire[:100], fin=False, rsv=RSV1)
        else:  # an uncompressed first fragment (valid text)
            c.send_frame(OP_TEXT, text[:100], fin=False)
        c.send_frame(OP_CONT, wire[100:], fin=True, rsv=RSV1)
        assert c.wait_close(5)[0] == 1002
    finally:
        c.close()


def test_rsv1_on_control_frame_closes_1002(gw):
    c, _ = raw_pmd(gw.port["default"])
    try:
        c.send_frame(OP_PING, b"x", rsv=RSV1)
        assert c.wait_close(5)[0] == 1002
    finally:
        c.close()


def test_python_websockets_sees_the_close_codes(gw):
    """python-websockets, compression on, sending invalid UTF-8 as text
    (compressed by its own deflater) gets 1007 from the server."""
    async def go():
        async with gw.connect("default") as ws:
            # bypass the str check: a bytes payload in a text frame
            await ws.write_frame(True, websockets.frames.Opcode.TEXT,
                                 b"ok" * 100 + b"\xc3\x28" + b"ok" * 100)
            with pytest.raises(websockets.ConnectionClosed) as err:
                await asyncio.wait_for(ws.recv(), 5)
            assert err.value.rcvd.code == 1007
    run(go())


# --------------------------------------------------------------------------
# workers
# --------------------------------------------------------------------------

WORKERS_SCRIPT = """
function on_connect(conn)
  conn:subscribe("t")
  conn:send("worker " .. gw.worker)
end

function on_message(conn, data, kind)
  local cmd = data:sub(1, 2)
  if cmd == "!B" then
    gw.broadcast(data:sub(3), nil, kind)
  elseif cmd == "!P" then
    gw.publish("t", data:sub(3), kind)
  end
end
"""


def test_publish_and_broadcast_across_workers(gateway):
    """workers: 2, compression on: a publish and a broadcast from one
    worker reach compressed clients (two parameter sets) and an
    uncompressed one on both workers, exact."""
    g = gateway(WORKERS_SCRIPT, {"workers": 2, "heartbeat": {"interval": 0, "timeout": 0}},
                start=False, reader="moongate")
    g.update_config({"listen": [dict(g.config["listen"][0], compression={"enabled": True})]})
    g.start()
    kinds = [{}, {"compression": None,
                  "extensions": [ClientPerMessageDeflateFactory(server_max_window_bits=10)]},
             {"compression": None}]
    text, blob = payload("text", 50000, 8), payload("binary", 30000, 9)

    async def go():
        clients, on = [], {}
        try:
            for i in range(60):  # until each worker has one client of each kind
                kw = kinds[i % len(kinds)]
                ws = await ws_connect(g.url, **kw)
                clients.append(ws)
                worker = (await ws_recv(ws)).split()[1]
                on.setdefault(worker, set()).add(i % len(kinds))
                if len(on) == 2 and all(len(v) == len(kinds) for v in on.values()):
                    break
            else:
                raise AssertionError("clients not spread over both workers: %r" % on)
            await clients[0].send("!P" + text)
            await clients[0].send(b"!B" + blob)
            for i, ws in enumerate(clients):
                assert await ws_recv(ws, 10) == text, i
                assert await ws_recv(ws, 10) == blob, i
        finally:
            for ws in clients:
                await ws.close()
    run(go(), timeout=60)
