"""A client that does not read while the script floods it: policy close evicts
it with 4002 "slow consumer", policy drop keeps it and counts drops; other
clients are served all along."""

import time

import pytest

from conftest import metric_sum

SCRIPT = """
local chunk = string.rep("x", 65536)

function on_connect(conn)
  gw.log.info("CONN " .. conn.id)
end

function on_message(conn, data, kind)
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
