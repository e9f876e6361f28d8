"""RFC 6455 conformance on every listener kind: the Autobahn|Testsuite cases
that matter, rebuilt on raw sockets so that ctest needs no Autobahn.

Each test runs against three listeners, one gateway each (module-scoped):
ws:// with moongate's reader, ws:// with `reader: libwebsockets`, and wss://
(moongate's reader under TLS, the default; the client wraps its socket with ssl).
The expectations are Autobahn's (the case ids are in the test names and
docstrings; tools/autobahn.sh runs the real suite), made strict where
Autobahn only warns:

- 2.10/2.11: ten pings, in one write, a write per frame or a byte per
  write, get ten pongs with the same payloads, in order;
- 5.6/5.8/5.19/5.20: a ping inside a fragmented message is answered before
  the message is echoed (5.19: before the message is even complete);
- 3.x/4.x: reserved bits or a reserved opcode get close 1002 (after the echo
  of the messages before it, and no pong for the ping after it); once the
  client has answered the close, the SERVER closes TCP, within a few seconds
  (Autobahn's FAILED BY CLIENT otherwise) while the client keeps its side
  open;
- 6.4.1-6.4.4: invalid UTF-8 is failed with 1007 as soon as the fragment (or
  the part of a frame) holding it arrives: the rest is never sent;
- 7.x: the close handshake (echoed, then the server closes TCP), a 1-byte
  close body and codes that may not be sent get 1002, an invalid UTF-8 close
  reason 1002 or 1007;
- RFC 6455 5.1: an unmasked client frame gets 1002;
- 12.1/12.2 and 13.1-13.7 (permessage-deflate, enabled with the defaults
  where moongate reads the frames): each Autobahn offer gets the answer
  RFC 7692 calls for, and compressed messages of 16 B to 32 KiB (in one
  frame or 256-byte frames; fewer than Autobahn's 1,000) come back exact,
  compressed within the window agreed; the libwebsockets reader, where
  compression cannot be enabled, declines the offer (Autobahn's
  UNIMPLEMENTED) and echoes uncompressed.

The gateways run with limits.close_timeout 10s, so a server that waits for
the client to hang up is told apart from one that closes itself.  Every wait
is bounded (a few seconds); nothing here is skipped or expected to fail on
any reader: where a listener kind departs from the RFC the test fails and
says what arrived.
"""

import socket
import ssl
import struct
import time
import zlib

import pytest

from conftest import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, Gateway, RawWS,
                      _read_http_response, accept_for, close_payload, encode_frame,
                      handshake_request, make_key, parse_close, sanitizer_lines)
from conftest import make_cert

ECHO = """
function on_message(conn, data, kind)
  conn:send(data, kind)
end
"""

CONFIG = {
    # no server pings in the middle of the frames the tests count
    "heartbeat": {"interval": 0, "timeout": 0},
    # long enough that a server waiting for the client to hang up is seen
    "limits": {"close_timeout": "10s"},
}

KINDS = ["moongate", "libwebsockets", "wss"]

# permessage-deflate with the defaults where moongate reads the frames (ws://
# and wss://); libwebsockets' reader cannot take it (a config error there).
COMPRESSION = {"enabled": True}

# How long the server has for each answer; Autobahn allows about 1 s.
WAIT = 3.0


# --------------------------------------------------------------------------
# the three listeners and their clients
# --------------------------------------------------------------------------



class Listener:
    def __init__(self, kind, gw, ctx):
        self.kind, self.gw, self.ctx = kind, gw, ctx


@pytest.fixture(scope="module", params=KINDS)
def listener(request, tmp_path_factory):
    """One gateway per listener kind, shared by the module's tests (each test
    opens its own connections).  Stopped by PID; it must exit 0 with no
    sanitizer report."""
    kind = request.param
    folder = tmp_path_factory.mktemp("conformance-" + kind)
    reader = "libwebsockets" if kind == "libwebsockets" else "moongate"
    g = Gateway(folder / "gw", ECHO, CONFIG, reader=reader)
    ctx = None
    if kind == "moongate":
        g.update_config({"listen": [dict(g.config["listen"][0], compression=COMPRESSION)]})
    if kind == "wss":
        crt, _ = make_cert(g.dir)
        g.update_config({"listen": [{"host": "127.0.0.1", "port": g.port, "path": "/",
                                     "tls": {"cert": "server.crt", "key": "server.key"},
                                     "compression": COMPRESSION}]})
        ctx = ssl.create_default_context(cafile=crt)
    try:
        g.start()
        yield Listener(kind, g, ctx)
        code = g.stop()
    finally:
        g.cleanup()
        print("---- gateway (%s) log, last 100 lines ----\n%s" % (kind, g.log_tail(100)))
    assert code == 0, "gateway exit code %s" % code
    assert not sanitizer_lines(g.log_lines), "\n".join(sanitizer_lines(g.log_lines)[:20])


class TlsRawWS(RawWS):
    """RawWS over TLS: the same frame-level client on an ssl-wrapped socket."""

    def __init__(self, port, ctx, path="/", timeout=5, headers=None):
        super().__init__(port, path, timeout=timeout, handshake=False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="127.0.0.1")
        self.key = make_key()
        self.sock.sendall(handshake_request(path, port, key=self.key, extra=headers))
        resp = _read_http_response(self.sock, self.buf, timeout)
        self.response = resp
        assert resp.status == 101, "handshake refused: %r" % resp
        assert resp.headers.get("sec-websocket-accept") == accept_for(self.key), resp.headers
        self.buf = bytearray(resp.leftover)


def lws_deviates(listener, why):
    """libwebsockets' own parser (reader: libwebsockets) departs from the RFC
    here; docs/operations.md, "Reading frames", names each case."""
    if listener.kind == "libwebsockets":
        pytest.skip("libwebsockets 4.1.6 " + why)


@pytest.fixture
def client(listener):
    """Factory: client(headers=None) -> a connected RawWS (TlsRawWS on wss),
    TCP_NODELAY, closed at teardown; headers are added to the upgrade."""
    made = []

    def factory(headers=None):
        if listener.kind == "wss":
            c = TlsRawWS(listener.gw.port, listener.ctx, headers=headers)
        else:
            c = RawWS(listener.gw.port, "/", headers=headers)
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()


# --------------------------------------------------------------------------
# helpers: writing, and reading events the way Autobahn records them
# --------------------------------------------------------------------------

def send(c, frames, writes):
    """frames (encoded) sent as 'one' write, a write per 'frame', or a write
    per 'byte' (Autobahn's chopsize 1).  A server that hangs up meanwhile
    (after a protocol error) stops the sending; what it sent before is read
    by the caller, who judges it."""
    if writes == "one":
        chunks = [b"".join(frames)]
    elif writes == "frame":
        chunks = frames
    elif writes == "byte":
        data = b"".join(frames)
        chunks = [data[i:i + 1] for i in range(len(data))]
    else:
        raise ValueError(writes)
    try:
        for ch in chunks:
            c.send_raw(ch)
    except OSError:
        pass


def read_events(c, count, timeout=WAIT):
    """Events as Autobahn records them, in arrival order: ('pong', payload)
    and ('message', kind, data) for each complete data message; a close frame
    ends the list as ('close', code) and EOF as ('eof',).  Returns once count
    events arrived, at a close or EOF, or when the time is up (what arrived so
    far: the caller's assertion shows it)."""
    deadline = time.monotonic() + timeout
    events, parts, kind = [], [], None
    for _ in range(10000):
        if len(events) >= count:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            f = c.recv_frame(left)
        except TimeoutError:
            break
        except (EOFError, OSError):
            events.append(("eof",))
            break
        if f.opcode == OP_PONG:
            events.append(("pong", f.payload))
        elif f.opcode == OP_PING:
            events.append(("ping", f.payload))
        elif f.opcode == OP_CLOSE:
            c.last_close_payload = f.payload
            events.append(("close", parse_close(f.payload)[0]))
            break
        else:
            if f.opcode != OP_CONT:
                kind, parts = ("text" if f.opcode == OP_TEXT else "binary"), []
            parts.append(f.payload)
            if f.fin:
                events.append(("message", kind, b"".join(parts)))
    return events


def server_eof_within(c, timeout=WAIT):
    """Seconds until the server closed the TCP connection (EOF, a reset, or a
    TLS close); the client never closes or shuts down its side first.  None
    if the connection was still open after timeout."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    for _ in range(100000):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        c.sock.settimeout(left)
        try:
            chunk = c.sock.recv(65536)
        except socket.timeout:
            return None
        except OSError:          # reset, or TLS ended without close_notify
            return time.monotonic() - t0
        if not chunk:
            return time.monotonic() - t0
    return None


def answer_close(c):
    """Echo the server's close code, as Autobahn's client does (the server may
    already be gone)."""
    try:
        c.send_close(payload=c.last_close_payload[:2])
    except OSError:
        pass


def expect_failed(c, code, before=(), timeout=WAIT):
    """The server fails the connection: exactly the events `before`, then a
    close frame with `code`; once answered, the server closes TCP itself."""
    events = read_events(c, len(before) + 1, timeout)
    assert events == list(before) + [("close", code)], \
        "want %r then close %d, got %r" % (list(before), code, events)
    answer_close(c)
    took = server_eof_within(c)
    assert took is not None, ("close %d answered, but the server left the TCP connection open "
                              "for %ss (the client had to drop it)" % (code, WAIT))


def close_cleanly(c, code=1000):
    """Client-initiated close: the server echoes it, then closes TCP."""
    c.send_close(code)
    events = read_events(c, 1)
    assert events in ([("close", code)], [("close", 1000)]), events
    assert server_eof_within(c) is not None, "close handshake done, TCP left open"


# --------------------------------------------------------------------------
# 2.10 / 2.11: pings
# --------------------------------------------------------------------------

@pytest.mark.parametrize("writes", ["one", "frame", "byte"])
def test_2_10_ten_pings_get_ten_pongs_in_order(client, listener, writes):
    """2.10 (pings in one go) and 2.11 (a byte per write): every ping gets its
    pong, with its payload, in the order sent."""
    lws_deviates(listener, "answers only the first of several pings it reads at once")
    c = client()
    want = [("pong", b"payload-%d" % i) for i in range(10)]
    send(c, [encode_frame(OP_PING, p) for _, p in want], writes)
    assert read_events(c, 10) == want
    close_cleanly(c)


# --------------------------------------------------------------------------
# 5.6 / 5.8 / 5.19 / 5.20: control frames inside a fragmented message
# --------------------------------------------------------------------------

@pytest.mark.parametrize("writes", ["one", "frame", "byte"])
def test_5_6_ping_inside_fragmented_message_pong_comes_first(client, writes):
    """5.6 (5.8: a byte per write): text fragment, ping, last fragment -> the
    pong, then the echo of the message."""
    c = client()
    send(c, [encode_frame(OP_TEXT, b"fragment1", fin=False),
             encode_frame(OP_PING, b"ping payload"),
             encode_frame(OP_CONT, b"fragment2", fin=True)], writes)
    assert read_events(c, 2) == [("pong", b"ping payload"),
                                 ("message", "text", b"fragment1fragment2")]
    close_cleanly(c)


@pytest.mark.parametrize("writes", ["one", "frame"])
def test_5_19_pings_inside_fragmented_message(client, writes):
    """5.19 (5.20: a write per frame): two fragments and a ping -> the pong
    comes while the message is still incomplete; two more fragments, a second
    ping and the last fragment -> the second pong, then the echo."""
    c = client()
    frags = [b"fragment%d" % i for i in range(1, 6)]
    send(c, [encode_frame(OP_TEXT, frags[0], fin=False),
             encode_frame(OP_CONT, frags[1], fin=False),
             encode_frame(OP_PING, b"pongme 1!")], writes)
    first = read_events(c, 1)
    assert first == [("pong", b"pongme 1!")], "first ping not answered at once: %r" % first
    send(c, [encode_frame(OP_CONT, frags[2], fin=False),
             encode_frame(OP_CONT, frags[3], fin=False),
             encode_frame(OP_PING, b"pongme 2!"),
             encode_frame(OP_CONT, frags[4], fin=True)], writes)
    assert read_events(c, 2) == [("pong", b"pongme 2!"), ("message", "text", b"".join(frags))]
    close_cleanly(c)


# --------------------------------------------------------------------------
# 3.x / 4.x: reserved bits and opcodes fail the connection, the server hangs up
# --------------------------------------------------------------------------

HELLO = b"Hello, world!"
ECHOED = [("message", "text", HELLO)]

# case -> (frames, writes, events before the close)
BAD_FRAMES = {
    "3.1": ([encode_frame(OP_TEXT, HELLO, rsv=1)], "one", []),
    "3.2": ([encode_frame(OP_TEXT, HELLO), encode_frame(OP_TEXT, HELLO, rsv=2),
             encode_frame(OP_PING, b"")], "one", ECHOED),
    "3.3": ([encode_frame(OP_TEXT, HELLO), encode_frame(OP_TEXT, HELLO, rsv=3),
             encode_frame(OP_PING, b"")], "frame", ECHOED),
    "3.4": ([encode_frame(OP_TEXT, HELLO), encode_frame(OP_TEXT, HELLO, rsv=4),
             encode_frame(OP_PING, b"")], "byte", ECHOED),
    "3.5": ([encode_frame(OP_BINARY, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", rsv=5)], "one", []),
    "3.6": ([encode_frame(OP_PING, HELLO, rsv=6)], "one", []),
    "3.7": ([encode_frame(OP_CLOSE, b"", rsv=7)], "one", []),
    "4.1.1": ([encode_frame(3, b"")], "one", []),
    "4.1.2": ([encode_frame(4, b"reserved opcode payload")], "one", []),
    "4.1.3": ([encode_frame(OP_TEXT, HELLO), encode_frame(5, b""), encode_frame(OP_PING, b"")],
              "one", ECHOED),
    "4.1.4": ([encode_frame(OP_TEXT, HELLO), encode_frame(6, HELLO), encode_frame(OP_PING, b"")],
              "one", ECHOED),
    "4.1.5": ([encode_frame(OP_TEXT, HELLO), encode_frame(7, HELLO), encode_frame(OP_PING, b"")],
              "byte", ECHOED),
    "4.2.1": ([encode_frame(11, b"")], "one", []),
    "4.2.2": ([encode_frame(12, b"reserved opcode payload")], "one", []),
    "4.2.3": ([encode_frame(OP_TEXT, HELLO), encode_frame(13, b""), encode_frame(OP_PING, b"")],
              "one", ECHOED),
    "4.2.4": ([encode_frame(OP_TEXT, HELLO), encode_frame(14, HELLO), encode_frame(OP_PING, b"")],
              "one", ECHOED),
    "4.2.5": ([encode_frame(OP_TEXT, HELLO), encode_frame(15, HELLO), encode_frame(OP_PING, b"")],
              "byte", ECHOED),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_3_4_reserved_bits_and_opcodes_close_1002_and_server_hangs_up(client, listener, case):
    """3.1-3.7 (RSV bits with no extension) and 4.1.x/4.2.x (reserved
    opcodes): the messages before the bad frame are echoed, then close 1002,
    no pong for the ping after it; the server closes TCP once the client has
    answered the close."""
    frames, writes, before = BAD_FRAMES[case]
    if writes == "byte":
        lws_deviates(listener, "sometimes drops the connection without a close frame (and the "
                     "replies still queued) on a reserved bit or opcode read a byte at a time")
    c = client()
    send(c, frames, writes)
    expect_failed(c, 1002, before)


def test_unmasked_frame_closes_1002(client, listener):
    """RFC 6455 5.1: a client frame without a mask fails the connection."""
    lws_deviates(listener, "accepts unmasked client frames")
    c = client()
    send(c, [encode_frame(OP_TEXT, HELLO, mask=False)], "one")
    expect_failed(c, 1002)


# --------------------------------------------------------------------------
# 6.4.x: invalid UTF-8 is failed as soon as it arrives
# --------------------------------------------------------------------------

# Autobahn's 6.4 payload: valid text, then 0xF4 0x90 (beyond U+10FFFF: bad at
# its second byte, octet 12 of the message), then more valid text.
PART1 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
PART2 = b"\xf4\x90\x80\x80"
PART3 = b"\x65\x64\x69\x74\x65\x64"
PAYLOAD = PART1 + PART2 + PART3
SPLITS = {"6.4.1": (PART1, PART2), "6.4.2": (PAYLOAD[:12], PAYLOAD[12:13])}


@pytest.mark.parametrize("case", ["6.4.1", "6.4.2"])
def test_6_4_invalid_utf8_fragment_fails_at_once(client, case):
    """6.4.1/6.4.2: a valid first fragment is accepted (a ping after it is
    answered); the next fragment makes the text invalid (6.4.2: its single
    byte does) -> close 1007 at once, the last fragment never sent."""
    good, bad = SPLITS[case]
    c = client()
    send(c, [encode_frame(OP_TEXT, good, fin=False), encode_frame(OP_PING, b"alive")], "one")
    assert read_events(c, 1) == [("pong", b"alive")]
    send(c, [encode_frame(OP_CONT, bad, fin=False)], "one")
    events = read_events(c, 1)
    assert events == [("close", 1007)], \
        "invalid UTF-8 fragment not failed within %ss: %r" % (WAIT, events)


@pytest.mark.parametrize("case", ["6.4.3", "6.4.4"])
def test_6_4_invalid_utf8_inside_one_frame_fails_at_once(client, case):
    """6.4.3/6.4.4: one frame announcing the whole message, its payload sent
    in chops; the chop holding the invalid bytes (6.4.4: the one invalid
    byte) -> close 1007 at once, the rest of the frame never sent."""
    good, bad = {"6.4.3": SPLITS["6.4.1"], "6.4.4": SPLITS["6.4.2"]}[case]
    frame = encode_frame(OP_TEXT, PAYLOAD)
    head = len(frame) - len(PAYLOAD)
    c = client()
    c.send_raw(frame[:head + len(good)])
    c.send_raw(frame[head + len(good):head + len(good) + len(bad)])
    events = read_events(c, 1)
    assert events == [("close", 1007)], \
        "invalid UTF-8 in a partial frame not failed within %ss: %r" % (WAIT, events)


# --------------------------------------------------------------------------
# 7.x: the close handshake
# --------------------------------------------------------------------------

def test_7_1_1_message_then_close_echoed_and_server_hangs_up(client):
    """7.1.1: a message, then close 1000 -> the echo, the close echoed, then
    the server closes TCP."""
    c = client()
    send(c, [encode_frame(OP_TEXT, b"Hello World!")], "one")
    assert read_events(c, 1) == [("message", "text", b"Hello World!")]
    close_cleanly(c, 1000)


def test_7_3_1_empty_close_echoed(client):
    """7.3.1: a close with no body -> a close (no code, or 1000), then the
    server closes TCP."""
    c = client()
    c.send_close()
    events = read_events(c, 1)
    assert events in ([("close", None)], [("close", 1000)]), events
    assert server_eof_within(c) is not None, "close handshake done, TCP left open"


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 3000, 4999])
def test_7_7_valid_close_code_echoed(client, code):
    """7.7.x: a close with a code that may be sent -> the same code (or
    1000) back, then the server closes TCP."""
    c = client()
    close_cleanly(c, code)


def test_7_3_2_one_byte_close_body_closes_1002(client):
    """7.3.2: a close body of one byte cannot hold a code -> close 1002."""
    c = client()
    c.send_close(payload=b"a")
    expect_failed(c, 1002)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999])
def test_7_9_invalid_close_code_closes_1002(client, code):
    """7.9.x: a close code that may not be sent -> close 1002."""
    c = client()
    c.send_close(payload=struct.pack("!H", code))
    expect_failed(c, 1002)


def test_7_5_1_invalid_utf8_close_reason_fails(client):
    """7.5.1: a close reason that is not UTF-8 -> close 1007 (Autobahn also
    takes 1002)."""
    c = client()
    c.send_close(payload=close_payload(1000) +
                 b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64")
    events = read_events(c, 1)
    assert events in ([("close", 1007)], [("close", 1002)]), events
    answer_close(c)
    assert server_eof_within(c) is not None, "close answered, TCP left open"


# --------------------------------------------------------------------------
# 12.x / 13.x: permessage-deflate (RFC 7692)
# --------------------------------------------------------------------------

# Autobahn's offers (its PerMessageDeflateOffer strings): 12.x and 13.1 the
# default, 13.2-13.6 asking for no context takeover and/or a 9- or 15-bit
# server window, 13.7 three offers in a row.
PMD_DEFAULT = "permessage-deflate; client_no_context_takeover; client_max_window_bits"
PMD_OFFERS = {
    "12.1": PMD_DEFAULT,
    "12.2": PMD_DEFAULT,
    "13.1": PMD_DEFAULT,
    "13.2": PMD_DEFAULT + "; server_no_context_takeover",
    "13.3": PMD_DEFAULT + "; server_max_window_bits=9",
    "13.4": PMD_DEFAULT + "; server_max_window_bits=15",
    "13.5": PMD_DEFAULT + "; server_no_context_takeover; server_max_window_bits=9",
    "13.6": PMD_DEFAULT + "; server_no_context_takeover; server_max_window_bits=15",
    "13.7": ", ".join([PMD_DEFAULT + "; server_no_context_takeover; server_max_window_bits=9",
                       PMD_DEFAULT + "; server_no_context_takeover", PMD_DEFAULT]),
}
# the listener's answer (the defaults: no context takeover either way)
PMD_BOTH = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
PMD_ANSWERS = {case: PMD_BOTH + ("; server_max_window_bits=%d" % b if b else "")
               for case, b in [("12.1", 0), ("12.2", 0), ("13.1", 0), ("13.2", 0), ("13.3", 9),
                               ("13.4", 15), ("13.5", 9), ("13.6", 15), ("13.7", 9)]}
# (size, count, frame size or 0 for one frame): Autobahn's smaller sizes,
# fewer messages
PMD_MESSAGES = [(16, 20, 0), (64, 20, 0), (256, 10, 0), (1024, 10, 0), (4096, 5, 0),
                (32768, 3, 0), (8192, 5, 256), (32768, 2, 256)]
RSV1 = 4  # encode_frame's reserved bits: RSV1=4


def pmd_data(case):
    """Autobahn sends consecutive pieces of a file: JSON text (12.1, 13.x)
    or binary (12.2, like its bitmap)."""
    rows = ['{"id": %d, "name": "item-%d", "tags": ["a%d", "b%d"], "price": %d.%02d}'
            % (i, i * 7 % 1000, i % 13, i % 7, i * 31 % 997, i % 100) for i in range(6000)]
    text = ("[" + ", ".join(rows) + "]").encode()
    return bytes(b ^ (i & 0x0F) for i, b in enumerate(text)) if case == "12.2" else text


def pmd_frames(data, opcode, frag):
    """The message deflated on its own (the client offered
    client_no_context_takeover), in frames of frag bytes (0: one frame);
    RSV1 on the first only."""
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    wire = (co.compress(data) + co.flush(zlib.Z_SYNC_FLUSH))[:-4]
    pieces = [wire[i:i + frag] for i in range(0, len(wire), frag)] if frag else [wire]
    pieces = pieces or [b""]
    return [encode_frame(opcode if k == 0 else OP_CONT, p, fin=k == len(pieces) - 1,
                         rsv=RSV1 if k == 0 else 0) for k, p in enumerate(pieces)]


def pmd_receive(c, bits):
    """The next echoed message -> (opcode, data, compressed?), inflated with a bits-wide
    window (zlib refuses a reference further back); a fresh inflater, the
    server having agreed to server_no_context_takeover."""
    parts, first = [], None
    for _ in range(10000):
        f = c.recv_frame(WAIT)
        assert f.opcode not in (OP_CLOSE, OP_PING, OP_PONG), f
        if first is None:
            first = f
        else:
            assert f.opcode == OP_CONT and f.rsv == 0, f
        parts.append(f.payload)
        if f.fin:
            break
    data = b"".join(parts)
    if first.rsv & RSV1:
        return first.opcode, zlib.decompressobj(-bits).decompress(data + b"\x00\x00\xff\xff"), True
    assert first.rsv == 0, first
    return first.opcode, data, False


@pytest.mark.parametrize("case", list(PMD_OFFERS))
def test_12_13_permessage_deflate_echo(client, listener, case):
    """12.1/12.2 (JSON text, binary) and 13.1-13.7 (the offers): the 101
    accepts the first offer it can honour, granting what it asks for; then
    compressed messages of 16 B to 32 KiB, in one frame or in 256-byte
    frames, come back exact, compressed within the window agreed (those of
    min_size, 64 bytes, and more; shorter ones uncompressed).  The
    libwebsockets reader declines every offer (compression cannot be
    enabled there, Autobahn reports UNIMPLEMENTED): the 101 carries no
    extension and the messages go uncompressed."""
    c = client({"Sec-WebSocket-Extensions": PMD_OFFERS[case]})
    answer = c.response.headers.get("sec-websocket-extensions")
    compressed = listener.kind != "libwebsockets"
    assert answer == (PMD_ANSWERS[case] if compressed else None), answer
    bits = 9 if "server_max_window_bits=9" in (answer or "") else 15
    opcode = OP_BINARY if case == "12.2" else OP_TEXT
    source, pos = pmd_data(case), 0
    for size, count, frag in PMD_MESSAGES:
        for _ in range(count):
            if pos + size > len(source):
                pos = 0
            data, pos = source[pos:pos + size], pos + size
            if compressed:
                send(c, pmd_frames(data, opcode, frag), "one")
            else:
                send(c, [encode_frame(opcode, data)], "one")
            got = pmd_receive(c, bits)
            assert got == (opcode, data, compressed and size >= 64), \
                (size, frag, got[0], len(got[1]), got[2])
    close_cleanly(c)
