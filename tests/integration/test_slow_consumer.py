"""A client that does not read while the script floods it: policy close evicts
it with 4002 "slow consumer", policy drop keeps it and counts drops; other
clients are served all along."""

import asyncio
import ctypes
import os
import threading
import time

import pytest
import websockets

from conftest import READER, metric_sum, run, ws_connect

SCRIPT = """
local chunk = string.rep("x", 65536)

function on_connect(conn)
  gw.log.info("CONN " .. conn.id)
end

function on_message(conn, data, kind)
  local n = tonumber(data:match("^big (%d+)$"))
  if n then  -- a small message, then a big one queued behind it
    assert(conn:send("small"))
    assert(conn:send(("0123456789abcdef"):rep(n / 16), "binary"))
    gw.log.info("BIG queued")
    return
  end
  local count, size = data:match("^numbered (%d+) (%d+)$")
  if count then  -- numbered binary messages, one per timer tick (so that
    count, size = tonumber(count), tonumber(size)  -- writes happen between
    local i = 0                                    -- them), until one fails
    local t
    t = gw.every(2, function()
      local body = ("%08d"):format(i + 1) .. ("m"):rep(size - 8)
      if i == count or not conn:send(body, "binary") then
        gw.log.info("NUMBERED sent=" .. i)
        t:cancel()
        return
      end
      i = i + 1
    end)
    return
  end
  if data == "flood" then
    local sent, failed, lasterr = 0, 0, nil
    for i = 1, 2000 do
      local ok, err = conn:send(chunk, "binary")
      if ok then sent = sent + 1 else
        failed = failed + 1
        lasterr = err
        if err == "connection closed" then break end
      end
    end
    gw.log.info("FLOOD done sent=" .. sent .. " failed=" .. failed .. " err=" .. tostring(lasterr))
    return
  end
  conn:send(data, kind)
end

function on_disconnect(conn, code, reason)
  gw.log.info("DISC " .. conn.id .. " " .. tostring(code) .. " " .. tostring(reason))
end
"""


def config(policy):
    return {"limits": {"send_queue": "1MiB", "slow_consumer": policy, "close_timeout": "1s"},
            "lua": {"hook_budget": "5s"}}


def test_slow_consumer_closed(gateway, raw):
    g = gateway(SCRIPT, config("close"), admin=True)
    since = g.mark()
    slow = raw(g.port, rcvbuf=4096)
    cid = int(g.wait_log(r"CONN (\d+)", 5, since).group(1))
    fast = raw(g.port)
    fast.send_text("before")
    assert fast.recv_text() == "before"
    slow.send_text("flood")                          # ...and never read
    g.wait_log(r"FLOOD done", 10, since)
    for i in range(5):
        fast.send_text("during %d" % i)
        assert fast.recv_text() == "during %d" % i
    g.wait_log(r"DISC %d 4002 slow consumer" % cid, 10, since)
    fast.send_text("after")
    assert fast.recv_text() == "after"
    # the slow client's connection is gone
    slow.wait_eof(15)
    m = g.metrics()
    assert metric_sum(m, "moongate_evictions_total") >= 1
    assert m["moongate_connections"] == 1
    assert g.alive()


def test_slow_consumer_drop(gateway, raw):
    g = gateway(SCRIPT, config("drop"), admin=True)
    since = g.mark()
    slow = raw(g.port, rcvbuf=4096)
    cid = int(g.wait_log(r"CONN (\d+)", 5, since).group(1))
    fast = raw(g.port)
    slow.send_text("flood")
    g.wait_log(r"FLOOD done", 10, since)
    fast.send_text("meanwhile")
    assert fast.recv_text() == "meanwhile"
    assert g.metrics()["moongate_sendq_drops_total"] > 0
    # now read everything that was queued: whole 64 KiB messages (dropped ones
    # are missing, none is cut) until the stream goes idle; then the
    # connection still works and was never closed.
    nbin = 0
    for _ in range(2001):
        try:
            kind, data = slow.recv_message(1.0)
        except TimeoutError:
            break
        assert kind == "binary" and len(data) == 65536 and data == b"x" * 65536, len(data)
        nbin += 1
    assert 0 < nbin < 2000, nbin
    slow.send_text("still open")
    assert slow.recv_message(5) == ("text", "still open")
    assert not g.find_logs(r"DISC %d " % cid, since)


def test_write_cut_by_a_full_socket_resumes(gateway, raw):
    """A 16 MiB message queued behind a small one, to a client that does
    not read: the kernel takes only part of it (moongate_send_blocked_total
    counts that), the rest goes out as the client reads; the message
    arrives whole, then the reply to a message sent meanwhile."""
    # The hook builds and queues 16 MiB: with the default 250 ms budget a
    # loaded machine (ASan, busy cores) could abort it, and then nothing
    # was ever cut (CI saw moongate_send_blocked_total == 0 once).
    g = gateway(SCRIPT, {"limits": {"send_queue": "64MiB", "slow_consumer": "close"},
                         "lua": {"hook_budget": "30s"}}, admin=True)
    since = g.mark()
    c = raw(g.port, rcvbuf=4096)
    c.send_text("big %d" % (16 << 20))
    g.wait_log(r"BIG queued", 30, since)   # the hook ran to the end
    deadline = time.monotonic() + 20
    while g.metrics()["moongate_send_blocked_total"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert g.metrics()["moongate_send_blocked_total"] > 0
    c.send_text("after")
    assert c.recv_message(10) == ("text", "small")
    kind, data = c.recv_message(30)
    assert kind == "binary" and data == b"0123456789abcdef" * (1 << 20)
    assert c.recv_message(10) == ("text", "after")
    assert not g.find_logs(r"DISC ", since)
    assert not g.find_logs(r"aborted|lua error", since)


def kernel_allows_io_uring():
    """io_uring_setup(2) works for this process (not too old a kernel, no
    seccomp filter or sysctl against it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    params = ctypes.create_string_buffer(120)  # struct io_uring_params
    fd = libc.syscall(ctypes.c_long(425), ctypes.c_long(4), params)  # SYS_io_uring_setup
    if fd < 0:
        return False
    os.close(fd)
    return True


@pytest.mark.parametrize("uring", ["auto", "off"])
def test_replies_to_a_client_that_stops_reading_arrive_whole(gateway, raw, uring):
    """Replies queued for a client that stops reading: the loop turn's
    batched write (io_uring) or its send() is cut by the full socket (with
    moongate's reader), the rest waits for the client, and all 3,000 replies (9 MB, more than the
    socket buffers hold) arrive whole and in order.  With io.uring: auto on
    a kernel that allows it the reads and writes go through io_uring
    (moongate_uring_reads_total, _writes_total); with off, or
    libwebsockets' reader, none do."""
    g = gateway(SCRIPT, {"limits": {"send_queue": "64MiB"}, "io": {"uring": uring},
                         "lua": {"hook_budget": "30s"}}, admin=True)
    batched = (uring == "auto" and kernel_allows_io_uring()
               and READER == "moongate")
    if READER == "libwebsockets":
        pass  # libwebsockets writes its connections: no ring, nothing said
    elif uring == "off":
        g.wait_log(r"socket I/O: a recv\(\) and a send\(\) per socket \(io\.uring: off\)", 5)
    elif kernel_allows_io_uring():
        g.wait_log(r"socket I/O: batched through io_uring", 5)
    else:
        g.wait_log(r"socket I/O: a recv\(\) and a send\(\) per socket, no io_uring", 5)
    since = g.mark()
    c = raw(g.port, rcvbuf=4096)
    msgs = ["%05d " % i + chr(97 + i % 26) * 3000 for i in range(3000)]  # queued, not direct
    sender = threading.Thread(target=lambda: [c.send_text(m) for m in msgs])
    sender.start()
    if READER == "moongate":
        # moongate writes without waiting for POLLOUT: once the socket is
        # full, the next write is cut.  (libwebsockets writes only on
        # POLLOUT, which a full socket signals only with room to spare, so
        # its writes may all be taken whole: no cut is certain there.)
        deadline = time.monotonic() + 20
        while g.metrics()["moongate_send_blocked_total"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert g.metrics()["moongate_send_blocked_total"] > 0
    for i, m in enumerate(msgs):
        assert c.recv_message(10) == ("text", m), i
    sender.join(10)
    assert not sender.is_alive()
    m = g.metrics()
    if batched:
        assert m["moongate_uring_writes_total"] > 0 and m["moongate_uring_reads_total"] > 0
    else:
        assert m["moongate_uring_writes_total"] == 0 and m["moongate_uring_reads_total"] == 0
    assert not g.find_logs(r"DISC ", since)


@pytest.mark.parametrize("size", [10_000, 1_000_000])
def test_slow_consumer_reads_whole_messages_then_4002(gateway, size):
    """A python-websockets client that stops reading while numbered messages
    pile up is failed with 4002 "slow consumer".  When it reads again (within
    close_timeout) it gets messages that are all whole and in order, then the
    4002 close frame: the frame that was partly written when the limit was
    hit is finished before the close frame, never cut by it."""
    g = gateway(SCRIPT, {"limits": {"send_queue": "2MiB", "slow_consumer": "close",
                                    "close_timeout": "20s"},
                         "lua": {"hook_budget": "10s"}})
    since = g.mark()

    async def scenario():
        # max_queue=1, small read limit: the client library stops reading
        # the socket almost at once, like an application that stalls.
        ws = await ws_connect(g.url, max_queue=1, read_limit=4096, write_limit=4096)
        count = (64 << 20) // size
        await ws.send("numbered %d %d" % (count, size))
        await asyncio.get_running_loop().run_in_executor(
            None, g.wait_log, r"slow consumer: \d+ bytes queued, closing", 20, since)
        got = 0
        for _ in range(count + 1):
            try:
                m = await asyncio.wait_for(ws.recv(), 10)
            except websockets.exceptions.ConnectionClosed:
                break
            got += 1
            assert isinstance(m, bytes) and len(m) == size, (got, len(m))
            assert m[:8] == b"%08d" % got and m[8:] == b"m" * (size - 8), got
        await asyncio.wait_for(ws.wait_closed(), 10)
        return got, ws.close_code, ws.close_reason

    got, code, reason = run(scenario(), 90)
    assert (code, reason) == (4002, "slow consumer"), (code, reason, got)
    assert got >= 1
    sent = int(g.wait_log(r"NUMBERED sent=(\d+)", 10, since).group(1))
    assert got <= sent
    g.wait_log(r"DISC \d+ 4002 slow consumer", 10, since)
