"""Frame-level behaviour of the WebSocket reader (RFC 6455 section 5).

These tests pin down what a frame parser for plain ws:// connections must get
right beyond test_messages.py: framing that does not depend on how the byte
stream is cut into TCP segments, every ping answered, protocol errors failing
the connection with 1002 (and nothing after the bad frame reaching the
script), control frames inside fragmented messages, limits and UTF-8 checks
across fragments and segments, both close handshakes, and many connections
fed byte by byte at once.

Whether a message reached the script is checked twice: the echo script
answers every message, and it logs "MSG <conn> <kind> <len> <text prefix>"
for each one, so a message that was delivered but not echoed still shows up.
Writes that must be cut into many send() calls run in a Writer thread, so the
test reads the echoes meanwhile and neither side's buffers can fill up.

The random chunking test prints its seed; set MOONGATE_FRAMES_SEED to replay it.

ctest also runs this file with libwebsockets' reader on the listener
(MOONGATE_TEST_READER=libwebsockets).  The cases where libwebsockets 4.1.6
itself departs from RFC 6455 or from the gateway's limits are skipped there,
each marked LWS_DEVIATES with the reason; docs/operations.md ("Reading
frames") lists the same differences.
"""

import os
import random
import socket
import struct
import threading
import time

import pytest


def LWS_DEVIATES(why):
    """Skip under libwebsockets' reader, which does not do this (lws 4.1.6)."""
    return pytest.mark.skipif(READER == "libwebsockets", reason="libwebsockets 4.1.6 " + why)

from conftest import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, READER,
                      WSClosed, close_payload, encode_frame, parse_close)

ECHO = """
function on_connect(conn)
  gw.log.info("CONN " .. conn.id)
end

function on_message(conn, data, kind)
  local shown = ""
  if kind == "text" then shown = data:sub(1, 40) end
  gw.log.info(("MSG %d %s %d %s"):format(conn.id, kind, #data, shown))
  if data == "close-me" then
    conn:close(4100, "asked to")
    return
  end
  conn:send(data, kind)
end

function on_disconnect(conn, code, reason)
  gw.log.info("DISC " .. conn.id .. " " .. tostring(code) .. " " .. tostring(reason))
end
"""

DATA_OPS = (OP_TEXT, OP_BINARY, OP_CONT)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def connect(gw, raw):
    """A raw client with TCP_NODELAY, and its connection id on the gateway."""
    since = gw.mark()
    c = raw(gw.port)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c, int(gw.wait_log(r"CONN (\d+)", 5, since).group(1))


def delivered(gw, cid, since=0):
    """Log lines of the messages the script got on connection cid."""
    return gw.find_logs(r"MSG %d " % cid, since)


def bytewise(data):
    return [data[i:i + 1] for i in range(len(data))]


def cut(data, sizes):
    """data cut into consecutive pieces of the given sizes (cycled)."""
    out, pos = [], 0
    for i in range(len(data)):
        if pos >= len(data):
            break
        out.append(data[pos:pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
    return out


class Writer:
    """Sends chunks, one send() each, from a thread on a dup of the client's
    socket (its own timeout), while the test thread reads the replies."""

    def __init__(self, c, chunks, timeout=20):
        self.sock = c.sock.dup()
        self.sock.settimeout(timeout)
        self.chunks = chunks
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for ch in self.chunks:
                self.sock.sendall(ch)
        except OSError as e:          # the server may hang up mid-stream
            self.error = e

    def join(self, timeout=20):
        """Wait for the writer; returns the OSError it hit, or None."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "writer still sending after %ss" % timeout
        self.sock.close()
        return self.error


def collect(c, n_messages, n_pongs, timeout=5):
    """Read until n_messages data messages and n_pongs pongs have arrived ->
    (messages, pongs).  A close frame raises WSClosed; running out of time
    raises TimeoutError saying what did arrive."""
    deadline = time.monotonic() + timeout
    msgs, pongs, parts, kind = [], [], [], None
    for _ in range(1000000):
        if len(msgs) >= n_messages and len(pongs) >= n_pongs:
            return msgs, pongs
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            f = c.recv_frame(left)
        except TimeoutError:
            break
        if f.opcode == OP_PONG:
            pongs.append(f.payload)
        elif f.opcode == OP_PING:
            c.send_pong(f.payload)
        elif f.opcode == OP_CLOSE:
            raise WSClosed(*parse_close(f.payload), f.payload)
        else:
            if f.opcode != OP_CONT:
                kind, parts = ("text" if f.opcode == OP_TEXT else "binary"), []
            parts.append(f.payload)
            if f.fin:
                data = b"".join(parts)
                msgs.append((kind, data.decode() if kind == "text" else data))
    raise TimeoutError("after %ss: %d/%d messages, pongs %r (wanted %d)"
                       % (timeout, len(msgs), n_messages, pongs, n_pongs))


def reply_close(c, frame):
    """Answer the server's close frame with its code (the socket may be gone)."""
    try:
        c.send_close(payload=frame.payload[:2])
    except OSError:
        pass


def read_to_end(c, timeout=5, reply=True):
    """Frames until the server's close frame (included; answered with the same
    code if reply), EOF or timeout -> (frames, how) with how one of 'close',
    'eof', 'timeout'."""
    deadline = time.monotonic() + timeout
    frames = []
    for _ in range(10000):
        left = deadline - time.monotonic()
        if left <= 0:
            return frames, "timeout"
        try:
            f = c.recv_frame(left)
        except TimeoutError:
            return frames, "timeout"
        except (EOFError, ConnectionError):
            return frames, "eof"
        frames.append(f)
        if f.opcode == OP_CLOSE:
            if reply:
                reply_close(c, f)
            return frames, "close"
    raise AssertionError("no end of connection after 10000 frames")


def assert_still_serving(gw, raw):
    c = raw(gw.port)
    c.send_text("still serving")
    assert c.recv_text() == "still serving"


@pytest.fixture
def gw(gateway):
    return gateway(ECHO, {"limits": {"max_message_size": "1MiB"}})    # close_timeout 1s


# --------------------------------------------------------------------------
# 1. framing does not depend on TCP segmentation
# --------------------------------------------------------------------------

def mixed_stream():
    """One byte stream of several messages -> (bytes, messages, pongs).  Text
    lengths 0..65536 hit both edges of the 7-bit, 16-bit and 64-bit length
    encodings; a fragmented message has a ping and an empty fragment inside."""
    rng = random.Random(1234)
    frames, want = [], []
    for n in (0, 1, 125, 126, 127, 65535, 65536):
        s = "".join(rng.choice("abcdefghij") for _ in range(n))
        frames.append(encode_frame(OP_TEXT, s.encode()))
        want.append(("text", s))
    blob = bytes(rng.getrandbits(8) for _ in range(300))
    frames.append(encode_frame(OP_BINARY, blob))
    want.append(("binary", blob))
    frames.append(encode_frame(OP_TEXT, "frag-\u00e9".encode(), fin=False))
    frames.append(encode_frame(OP_PING, b"in-the-middle"))
    frames.append(encode_frame(OP_CONT, b"", fin=False))
    frames.append(encode_frame(OP_CONT, "-\u20acnd".encode(), fin=True))
    want.append(("text", "frag-\u00e9-\u20acnd"))
    frames.append(encode_frame(OP_BINARY, b"\x00\x01", fin=False))
    frames.append(encode_frame(OP_CONT, b"\x02" * 200, fin=True))
    want.append(("binary", b"\x00\x01" + b"\x02" * 200))
    frames.append(encode_frame(OP_TEXT, b"last"))
    want.append(("text", "last"))
    return b"".join(frames), want, [b"in-the-middle"]


def check_stream_echo(gw, c, cid, chunks, want, want_pongs):
    w = Writer(c, chunks)
    msgs, pongs = collect(c, len(want), len(want_pongs), timeout=20)
    assert w.join() is None
    for i, (got, exp) in enumerate(zip(msgs, want)):
        assert got == exp, "message %d: got %s of %d, want %s of %d" % (
            i, got[0], len(got[1]), exp[0], len(exp[1]))
    assert pongs == want_pongs
    # the log is read by another thread: wait for the lines, then count exactly
    gw.wait_log_count(r"MSG %d " % cid, len(want), 5)
    assert len(delivered(gw, cid)) == len(want)


def test_stream_written_one_byte_per_send(gw, raw):
    """Every byte in its own send(): all messages echoed exactly, in order, and the ping ponged."""
    data, want, pongs = mixed_stream()
    c, cid = connect(gw, raw)
    check_stream_echo(gw, c, cid, bytewise(data), want, pongs)


def test_stream_written_in_random_chunks(gw, raw):
    """The same stream cut at random points (seed printed) is echoed exactly."""
    seed = int(os.environ.get("MOONGATE_FRAMES_SEED") or random.randrange(1 << 30))
    print("chunk seed: MOONGATE_FRAMES_SEED=%d" % seed)
    rng = random.Random(seed)
    data, want, pongs = mixed_stream()
    chunks, pos = [], 0
    for _ in range(len(data)):
        if pos >= len(data):
            break
        n = rng.choice((1, 2, 3, rng.randint(1, 20), rng.randint(1, 3000)))
        chunks.append(data[pos:pos + n])
        pos += n
    c, cid = connect(gw, raw)
    check_stream_echo(gw, c, cid, chunks, want, pongs)


# --------------------------------------------------------------------------
# 2./3. pings and pongs
# --------------------------------------------------------------------------

@LWS_DEVIATES("answers only the first of several pings read at once")
def test_every_ping_in_one_write_gets_its_pong(gw, raw):
    """Several pings in one TCP write: one pong each, matching payloads, in order."""
    c, _ = connect(gw, raw)
    payloads = [b"p1", b"", b"x" * 125, b"p4"]      # 125: the largest control payload
    c.send_raw(b"".join(encode_frame(OP_PING, p) for p in payloads) +
               encode_frame(OP_TEXT, b"after the pings"))
    msgs, pongs = collect(c, 1, len(payloads), timeout=3)
    assert pongs == payloads
    assert msgs == [("text", "after the pings")]


def test_client_pong_is_ignored(gw, raw):
    """Unsolicited pongs get no reply and the connection keeps working."""
    c, cid = connect(gw, raw)
    c.send_raw(encode_frame(OP_PONG, b"unsolicited") + encode_frame(OP_PONG, b"") +
               encode_frame(OP_TEXT, b"after the pongs"))
    f = c.recv_frame(5)
    assert (f.opcode, f.payload) == (OP_TEXT, b"after the pongs"), f
    c.send_text("again")
    f = c.recv_frame(5)
    assert (f.opcode, f.payload) == (OP_TEXT, b"again"), f
    assert not gw.find_logs(r"DISC %d " % cid)


# --------------------------------------------------------------------------
# 4. protocol errors: close 1002, nothing after the bad frame delivered
# --------------------------------------------------------------------------

def _length_msb_set():
    # FIN+text, MASK + 127, then a 64-bit length with the top bit set
    return (struct.pack("!BBQ", 0x81, 0x80 | 127, (1 << 63) | 5) + b"\x01\x02\x03\x04" +
            b"hello")


_NO_CLOSE_FRAME = LWS_DEVIATES("drops the connection without a close frame")

PROTOCOL_ERRORS = {
    "ping_payload_126": encode_frame(OP_PING, b"x" * 126),
    "close_payload_126": encode_frame(OP_CLOSE, struct.pack("!H", 1000) + b"r" * 124),
    "fragmented_ping": encode_frame(OP_PING, b"half", fin=False),
    "continuation_without_start": encode_frame(OP_CONT, b"orphan", fin=True),
    "text_inside_fragmented": (encode_frame(OP_TEXT, b"start", fin=False) +
                               encode_frame(OP_TEXT, b"intruder", fin=True)),
    "binary_inside_fragmented": (encode_frame(OP_BINARY, b"start", fin=False) +
                                 encode_frame(OP_BINARY, b"intruder", fin=True)),
    "unmasked_frame": encode_frame(OP_TEXT, b"unmasked", mask=False),
    "length_msb_set": _length_msb_set(),
}


LWS_PARAMS = {
    "ping_payload_126": _NO_CLOSE_FRAME,
    "close_payload_126": _NO_CLOSE_FRAME,
    "length_msb_set": _NO_CLOSE_FRAME,
    "unmasked_frame": LWS_DEVIATES("accepts unmasked client frames"),
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=LWS_PARAMS.get(n, ()))
                                  for n in PROTOCOL_ERRORS])
def test_protocol_error_closes_1002(gw, raw, name):
    """A protocol error fails the connection with a 1002 close frame; a valid
    frame right behind it in the same write never reaches the script."""
    c, cid = connect(gw, raw)
    c.send_raw(PROTOCOL_ERRORS[name] + encode_frame(OP_TEXT, b"behind the bad frame"))
    frames, how = read_to_end(c, 3)
    data = [f for f in frames if f.opcode in DATA_OPS]
    assert not data, "echoed after a protocol error: %r (%s)" % (data, delivered(gw, cid))
    assert how == "close", "no close frame (connection: %s), frames %r" % (how, frames)
    code, reason = parse_close(frames[-1].payload)
    assert code == 1002, (code, reason)
    c.wait_eof(3)
    gw.wait_log(r"DISC %d " % cid, 5)
    assert not delivered(gw, cid)
    assert_still_serving(gw, raw)


@pytest.mark.parametrize("name", [pytest.param(n, marks=LWS_PARAMS.get(n, ()))
                                  for n in PROTOCOL_ERRORS])
def test_messages_before_a_protocol_error_are_answered_first(gw, raw, name):
    """Messages that came before a protocol error, in the same write, are
    handled and their replies go out, in order, before the 1002 close
    frame (Autobahn 3.2-3.4, 4.1.3-4.1.5, 4.2.3-4.2.5, 5.15)."""
    c, cid = connect(gw, raw)
    c.send_raw(encode_frame(OP_TEXT, b"first") + encode_frame(OP_BINARY, b"second") +
               PROTOCOL_ERRORS[name])
    frames, how = read_to_end(c, 3)
    data = [(f.opcode, f.payload) for f in frames if f.opcode in DATA_OPS]
    assert data == [(OP_TEXT, b"first"), (OP_BINARY, b"second")], (data, frames)
    assert how == "close", "no close frame (connection: %s), frames %r" % (how, frames)
    assert parse_close(frames[-1].payload)[0] == 1002, frames[-1]
    assert_still_serving(gw, raw)


def test_protocol_error_reported_to_on_disconnect(gw, raw):
    """on_disconnect sees the 1002 the server closed with, not 1006."""
    c, cid = connect(gw, raw)
    c.send_raw(PROTOCOL_ERRORS["continuation_without_start"])
    frames, how = read_to_end(c, 3)
    assert how == "close" and parse_close(frames[-1].payload)[0] == 1002, (how, frames)
    m = gw.wait_log(r"DISC %d (\S+)" % cid, 5)
    assert m.group(1) == "1002", gw.find_logs(r"DISC %d " % cid)


def test_protocol_error_close_bounded_by_close_timeout(gateway, raw):
    """A client that never answers the 1002 is dropped after limits.close_timeout (1s)."""
    g = gateway(ECHO, {"limits": {"close_timeout": "1s"}})
    c, _ = connect(g, raw)
    c.send_raw(PROTOCOL_ERRORS["fragmented_ping"])
    frames, how = read_to_end(c, 3, reply=False)
    assert how == "close" and parse_close(frames[-1].payload)[0] == 1002, (how, frames)
    elapsed = c.wait_eof(8)
    assert elapsed <= 2.5, "TCP open %.1fs after the 1002 close (close_timeout 1s)" % elapsed


# --------------------------------------------------------------------------
# 5. control frames inside a fragmented message
# --------------------------------------------------------------------------

def test_close_inside_fragmented_message(gw, raw):
    """A ping between fragments is ponged; a close between fragments is echoed
    (1000) and the partial message never reaches on_message."""
    c, cid = connect(gw, raw)
    c.send_raw(encode_frame(OP_TEXT, b"partial-", fin=False) + encode_frame(OP_PING, b"mid"))
    f = c.recv_frame(5)
    assert (f.opcode, f.payload) == (OP_PONG, b"mid"), f
    c.send_raw(encode_frame(OP_CONT, b"message", fin=False) +
               encode_frame(OP_CLOSE, close_payload(1000, "leaving")))
    frames, how = read_to_end(c, 5, reply=False)
    assert how == "close" and len(frames) == 1, (how, frames)
    assert parse_close(frames[0].payload)[0] == 1000
    c.wait_eof(5)
    gw.wait_log(r"DISC %d 1000 leaving" % cid, 5)
    assert not delivered(gw, cid)


# --------------------------------------------------------------------------
# 6. max_message_size across fragments and segments
# --------------------------------------------------------------------------

LIMIT = 1000


def _one_frame(data):
    return [encode_frame(OP_BINARY, data)]


def _fragments(data):
    # 7-byte fragments with empty ones at both ends, all in one write
    frags = cut(data, [7])
    out = [encode_frame(OP_BINARY, frags[0], fin=False), encode_frame(OP_CONT, b"", fin=False)]
    out += [encode_frame(OP_CONT, fr, fin=False) for fr in frags[1:]]
    out.append(encode_frame(OP_CONT, b"", fin=True))
    return [b"".join(out)]


def _one_frame_in_pieces(data):
    return cut(encode_frame(OP_BINARY, data), [1, 2, 3, 5, 8, 13])


@pytest.mark.parametrize("shape", [_one_frame, _fragments, _one_frame_in_pieces],
                         ids=["one_frame", "fragments", "one_frame_in_pieces"])
def test_max_message_size_exact_and_plus_one(gateway, raw, shape):
    """Exactly max_message_size passes; one byte more closes 1009 and nothing after it is delivered."""
    g = gateway(ECHO, {"limits": {"max_message_size": LIMIT}})
    c, cid = connect(g, raw)
    exact = bytes(range(256)) * 3 + bytes(LIMIT - 768)
    w = Writer(c, shape(exact))
    assert collect(c, 1, 0, 5)[0] == [("binary", exact)]
    assert w.join() is None
    g.wait_log(r"MSG %d binary %d" % (cid, LIMIT), 5)     # before the mark below
    since = g.mark()
    w = Writer(c, shape(exact + b"!") + [encode_frame(OP_TEXT, b"after the big one")])
    frames, how = read_to_end(c, 5, reply=False)
    w.join()                          # (it may have hit a reset: not checked)
    if how == "close":
        reply_close(c, frames[-1])
    assert how == "close" and len(frames) == 1, (how, frames)
    assert parse_close(frames[0].payload) == (1009, "message too big")
    g.wait_log(r"DISC %d 1009 message too big" % cid, 5)
    assert not delivered(g, cid, since)


def test_announced_length_over_limit_closes_1009(gateway, raw):
    """A header announcing 2^40 bytes closes 1009 as soon as it is read, without
    waiting for (or allocating) the payload.  (The client's close reply is
    inside the announced payload, so the server may wait out close_timeout.)"""
    g = gateway(ECHO, {"limits": {"max_message_size": LIMIT}})
    c, cid = connect(g, raw)
    c.send_raw(struct.pack("!BBQ", 0x82, 0x80 | 127, 1 << 40) + b"\x01\x02\x03\x04" +
               b"\x00" * 16)
    frames, how = read_to_end(c, 3)
    assert how == "close" and len(frames) == 1, (how, frames)
    assert parse_close(frames[0].payload) == (1009, "message too big")
    g.wait_log(r"DISC %d 1009 message too big" % cid, 5)


def test_announced_length_over_limit_closes_1009_before_any_payload(gateway, raw):
    """A header announcing more than max_message_size, and not one payload
    byte after it: the 1009 close comes at once (both readers), not when the
    payload starts."""
    g = gateway(ECHO, {"limits": {"max_message_size": LIMIT}})
    c, cid = connect(g, raw)
    c.send_raw(struct.pack("!BBH", 0x82, 0x80 | 126, LIMIT + 1) + b"\x01\x02\x03\x04")
    frames, how = read_to_end(c, 3)
    assert how == "close" and len(frames) == 1, (how, frames)
    assert parse_close(frames[0].payload) == (1009, "message too big")
    g.wait_log(r"DISC %d 1009 message too big" % cid, 5)


# --------------------------------------------------------------------------
# 7. UTF-8 across segments, truncated at the end
# --------------------------------------------------------------------------

TRICKY = "a\u00e9\u20ac\U0001F600z" * 3      # 1-, 2-, 3- and 4-byte sequences


def test_utf8_split_across_tcp_writes_in_one_frame(gw, raw):
    """One text frame written a byte at a time (every multibyte character split) passes."""
    c, _ = connect(gw, raw)
    w = Writer(c, bytewise(encode_frame(OP_TEXT, TRICKY.encode())))
    assert collect(c, 1, 0, 5)[0] == [("text", TRICKY)]
    assert w.join() is None


@pytest.mark.parametrize("tail", [b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98"],
                         ids=["2byte", "3byte", "4byte"])
@pytest.mark.parametrize("split", [False, True], ids=["one_write", "byte_per_write"])
def test_truncated_utf8_at_end_of_message_closes_1007(gw, raw, tail, split):
    """A multibyte sequence cut off by the end of the final fragment closes 1007."""
    c, cid = connect(gw, raw)
    data = (encode_frame(OP_TEXT, TRICKY.encode(), fin=False) +
            encode_frame(OP_CONT, b"ok " + tail, fin=True) +
            encode_frame(OP_TEXT, b"after the bad one"))
    w = Writer(c, bytewise(data) if split else [data])
    frames, how = read_to_end(c, 5, reply=False)
    w.join()
    if how == "close":
        reply_close(c, frames[-1])
    assert how == "close" and len(frames) == 1, (how, frames)
    assert parse_close(frames[0].payload) == (1007, "invalid UTF-8")
    gw.wait_log(r"DISC %d 1007 invalid UTF-8" % cid, 5)
    assert not delivered(gw, cid)


# --------------------------------------------------------------------------
# 8. close handshake started by the client
# --------------------------------------------------------------------------

def test_client_close_with_code_and_long_reason(gw, raw):
    """Close 4321 with a 100-byte UTF-8 reason: the code is echoed,
    on_disconnect gets code and reason, then the server closes the TCP connection."""
    reason = "ok \u00e9\u2713 " * 11 + "!"          # 11 * 9 + 1 bytes
    assert len(reason.encode()) == 100
    c, cid = connect(gw, raw)
    c.send_close(4321, reason)
    frames, how = read_to_end(c, 5, reply=False)
    assert how == "close" and len(frames) == 1, (how, frames)
    assert parse_close(frames[0].payload)[0] == 4321
    c.wait_eof(5)
    m = gw.wait_log(r"DISC %d (\d+) (.*)$" % cid, 5)
    assert (m.group(1), m.group(2)) == ("4321", reason)


def test_data_after_client_close_not_delivered(gw, raw):
    """Frames behind the client's close frame, in the same write, are ignored."""
    c, cid = connect(gw, raw)
    c.send_raw(encode_frame(OP_CLOSE, close_payload(1000, "bye")) +
               encode_frame(OP_TEXT, b"after the close") +
               encode_frame(OP_PING, b"after the close"))
    frames, how = read_to_end(c, 5, reply=False)
    assert how == "close" and len(frames) == 1, (how, frames)
    assert parse_close(frames[0].payload)[0] == 1000
    c.wait_eof(5)
    gw.wait_log(r"DISC %d 1000 bye" % cid, 5)
    assert not delivered(gw, cid)


# --------------------------------------------------------------------------
# 9. close handshake started by the script
# --------------------------------------------------------------------------

def test_data_after_server_close_not_delivered(gateway, raw):
    """After conn:close, client data frames are dropped and the client's close
    reply ends the connection at once (close_timeout is 5s)."""
    g = gateway(ECHO, {"limits": {"close_timeout": "5s"}})
    c, cid = connect(g, raw)
    c.send_text("close-me")
    assert c.wait_close(5, reply=False) == (4100, "asked to")
    g.wait_log(r"MSG %d text 8 close-me" % cid, 5)        # before the mark below
    since = g.mark()
    c.send_raw(encode_frame(OP_TEXT, b"late text") +
               encode_frame(OP_BINARY, b"late", fin=False) +
               encode_frame(OP_CONT, b" binary", fin=True))
    t0 = time.monotonic()
    c.send_close(4100)
    frames, how = read_to_end(c, 3, reply=False)
    assert how == "eof" and not frames, (how, frames)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, "connection ended %.2fs after the close reply" % elapsed
    g.wait_log(r"DISC %d 4100 asked to" % cid, 5)
    assert not delivered(g, cid, since)


# --------------------------------------------------------------------------
# 10. many connections fed byte by byte, round robin
# --------------------------------------------------------------------------

def test_many_connections_byte_by_byte_round_robin(gw, raw):
    """50 clients' fragmented messages written one byte per send, round robin
    across the sockets: each client gets exactly its own messages back."""
    n = 50
    since = gw.mark()
    clients = []
    for _ in range(n):
        c = raw(gw.port)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        clients.append(c)
    gw.wait_log_count(r"CONN \d+", n, 10, since)
    wants, streams = [], []
    for i in range(n):
        t1 = "client %d first \u00e9\u20ac" % i
        b2 = bytes([i]) * (i + 1) + b"\xff"
        t3 = ("client %d third " % i * 3).encode()
        streams.append(encode_frame(OP_TEXT, t1.encode()[:5], fin=False) +
                       encode_frame(OP_PING, b"c%d" % i) +
                       encode_frame(OP_CONT, t1.encode()[5:], fin=True) +
                       encode_frame(OP_BINARY, b2[:1], fin=False) +
                       encode_frame(OP_CONT, b2[1:], fin=True) +
                       encode_frame(OP_TEXT, t3[:7], fin=False) +
                       encode_frame(OP_CONT, t3[7:20], fin=False) +
                       encode_frame(OP_CONT, t3[20:], fin=True))
        wants.append([("text", t1), ("binary", b2), ("text", t3.decode())])
    for pos in range(max(len(s) for s in streams)):
        for c, s in zip(clients, streams):
            if pos < len(s):
                c.sock.sendall(s[pos:pos + 1])
    for i, c in enumerate(clients):
        msgs, pongs = collect(c, 3, 1, 10)
        assert msgs == wants[i], "client %d" % i
        assert pongs == [b"c%d" % i], "client %d" % i
    gw.wait_log_count(r"MSG \d+ ", 3 * n, 5, since)
    assert len(gw.find_logs(r"MSG \d+ ", since)) == 3 * n
