"""Hundreds of connections at once: past 256 descriptors the event loop waits
in an epoll set instead of poll() (src/evpoll.c), so these tests run the
gateway the way a loaded one runs — echo on every connection, connections
closing while others open and get the freed descriptor numbers, a broadcast
to everyone, heartbeats, and a drain."""

import signal

from conftest import OP_PING

SCRIPT = """
function on_message(conn, data, kind)
  conn:send(data, kind)
end
"""

N = 300


def echo_all(clients, tag):
    for i, c in enumerate(clients):
        c.send_text("%s %d" % (tag, i))
    for i, c in enumerate(clients):
        assert c.recv_message(10) == ("text", "%s %d" % (tag, i))


def test_echo_close_reopen_broadcast(gateway, raw):
    gw = gateway(SCRIPT, {"limits": {"max_connections": 1000}}, admin=True)
    clients = [raw(gw.port) for _ in range(N)]
    assert gw.metrics()["moongate_connections"] == N
    echo_all(clients, "first")

    # 100 leave; 100 new ones get their descriptor numbers at once
    for c in clients[:100]:
        c.send_close(1000)
        c.wait_close(5)
    clients = clients[100:] + [raw(gw.port) for _ in range(100)]
    echo_all(clients, "second")

    status, _, body = gw.http("POST", "/broadcast", body="to everyone")
    assert status == 200, body
    for c in clients:
        assert c.recv_message(10) == ("text", "to everyone")
    assert gw.metrics()["moongate_connections"] == N


def test_heartbeats_reach_every_connection(gateway, raw):
    gw = gateway(SCRIPT, {"heartbeat": {"interval": "300ms", "timeout": "5s"},
                          "limits": {"max_connections": 1000}})
    clients = [raw(gw.port) for _ in range(N)]
    for c in clients:  # each gets a ping within the interval (spread over it)
        for _ in range(20):
            f = c.recv_frame(5)
            if f.opcode == OP_PING:
                c.send_pong(f.payload)
                break
        else:
            raise AssertionError("no ping")
    echo_all(clients, "after pings")


def test_drain_closes_everyone(gateway, raw):
    gw = gateway(SCRIPT, {"limits": {"max_connections": 1000}})
    clients = [raw(gw.port) for _ in range(N)]
    echo_all(clients, "before")
    gw.send_signal(signal.SIGTERM)
    for c in clients:
        assert c.wait_close(10) == (1001, "server shutting down")
    assert gw.wait_exit(10) == 0
