"""Hundreds of connections at once: past 256 descriptors the event loop waits
in an epoll set instead of poll() (src/evpoll.c), so these tests run the
gateway the way a loaded one runs — echo on every connection, connections
closing while others open and get the freed descriptor numbers, a broadcast
to everyone, heartbeats, and a drain."""

import resource
import signal

from conftest import OP_PING, handshake_request, http_raw

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


def own_open_files(n):
    """This test process may hold n sockets (its soft limit up to n)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard == resource.RLIM_INFINITY or hard >= n, "hard open-files limit %d < %d" % (hard, n)
    if soft != resource.RLIM_INFINITY and soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def test_open_files_limit_raised_for_max_connections(gateway, raw):
    """Started with the usual soft limit of 1024 open files, the gateway
    raises it to what max_connections needs: 1,100 clients all connect
    (libwebsockets would refuse descriptors past 1024)."""
    own_open_files(4096)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    gw = gateway(SCRIPT, {"limits": {"max_connections": 2000}}, admin=True, nofile=(1024, hard))
    gw.wait_log(r"open files: limit 3152 \(was 1024\) for limits.max_connections 2000 and "
                r"limits.max_handshakes 1024", 5)
    clients = [raw(gw.port) for _ in range(1100)]
    assert gw.metrics()["moongate_connections"] == 1100
    echo_all(clients[-5:], "late")
    # more writes than one io_uring batch holds (1,024): all go out
    status, _, body = gw.http("POST", "/broadcast", body="to all 1100")
    assert status == 200, body
    for c in clients:
        assert c.recv_message(10) == ("text", "to all 1100")


def test_open_files_hard_limit_caps_connections(gateway, raw):
    """A hard limit below what max_connections needs is reported at start,
    and the connections it cannot hold are refused with 503, not dropped."""
    own_open_files(4096)
    gw = gateway(SCRIPT, {"limits": {"max_connections": 2000}}, admin=True,
                 nofile=(1024, 1024))
    gw.wait_log(r"open files: the hard limit \(1024\) allows about 784 connections and 112 "
                r"handshakes at once", 5)
    clients = [raw(gw.port) for _ in range(784)]
    r = http_raw(gw.port, handshake_request("/", gw.port))
    assert r.status == 503, r
    echo_all(clients[-5:], "still")
