"""cluster: — three nodes of two workers each, one gateway over a real
RabbitMQ (tests/integration/rabbit.py), on loopback.

Every node is a moongate process (a master and 2 workers) with its own
port; clients land on any worker of the node they connect to.  Covered: a
send to a name held on another node, and to an id; a publish with
subscribers on every node delivered exactly once to each; broadcast; the
same name claimed on two nodes (the older connection is closed with 4001);
one node's broker connection cut (through a TCP proxy the test owns) and
restored: the node serves its own clients meanwhile and rejoins after;
SIGHUP on every node under steady traffic: no connection dropped, every
reply counted.

Claims and subscriptions travel through the broker: where a test needs one
to have arrived, it retries the operation that depends on it, bounded."""

import asyncio
import socket
import threading
import time
import uuid

import pytest

from conftest import run, ws_connect, ws_recv, ws_wait_closed
from rabbit import rabbit  # noqa: F401  (session fixture: one broker per test file)

APP = r"""
function on_connect(conn)
  conn:send("hello " .. gw.node .. " " .. gw.worker .. " " .. conn.id)
end

function on_message(conn, msg)
  local cmd, a, b = msg:match("^(%S+)%s*(%S*)%s*(.*)$")
  if cmd == "name" then
    local ok, err = conn:set_name(a)
    conn:send("named " .. tostring(ok) .. " " .. tostring(err))
  elseif cmd == "to" then
    local ok, err = gw.send(tonumber(a) or a, b)
    conn:send("sent " .. tostring(ok) .. " " .. tostring(err))
  elseif cmd == "sub" then
    conn:subscribe(a)
    conn:send("subbed " .. a)
  elseif cmd == "pub" then
    gw.publish(a, b)
    conn:send("pubbed")
  elseif cmd == "all" then
    gw.broadcast(a)
  else
    conn:send("echo " .. msg)
  end
end
"""


class Proxy:
    """A TCP proxy from a local port to RabbitMQ, which the test can cut
    (close every connection and refuse new ones) and restore."""

    def __init__(self, target_port):
        self.target = target_port
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.open = True
        self.pairs = []
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if not self.open:
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.pairs.append((c, u))
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.open = False
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for c, u in pairs:
            for s in (c, u):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def restore(self):
        self.open = True

    def close(self):
        self.stopped = True
        self.cut()
        self.lsock.close()


class Client:
    def __init__(self, ws, node, worker, cid):
        self.ws, self.node, self.worker, self.id = ws, node, worker, cid

    async def ask(self, text, prefix, timeout=5):
        await self.ws.send(text)
        return await self.expect(prefix, timeout)

    async def expect(self, prefix, timeout=5):
        for _ in range(500):
            m = await ws_recv(self.ws, timeout)
            if m.startswith(prefix):
                return m
        raise AssertionError("no message starting with %r" % prefix)


async def connect(g):
    ws = await ws_connect(g.url)
    _, node, w, cid = (await ws_recv(ws)).split()
    return Client(ws, node, int(w), int(cid))


async def until(fn, timeout=10, what="condition"):
    """Retry async fn() until it returns a true value (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        r = await fn()
        if r:
            return r
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %ss" % (what, timeout))
        await asyncio.sleep(0.05)


@pytest.fixture
def cluster(gateway, rabbit):
    """Factory: cluster(n=3, proxy_for=None, config=None) -> [gateway per node],
    each with 2 workers, every member joined.  Node i (1-based) is named
    n<i> with cluster.id i; the node given as proxy_for reaches RabbitMQ
    through a Proxy (returned as the second value)."""
    rabbit.ensure_running()
    prefix = "t" + uuid.uuid4().hex[:10]
    proxies = []

    def make(n=3, proxy_for=None, config=None):
        nodes, proxy = [], None
        for i in range(1, n + 1):
            port = rabbit.port
            if i == proxy_for:
                proxy = Proxy(rabbit.port)
                proxies.append(proxy)
                port = proxy.port
            url = rabbit.url.replace(":%d" % rabbit.port, ":%d" % port)
            cfg = {"workers": 2,
                   "broker": {"url": url, "reconnect_min": "100ms", "reconnect_max": "500ms"},
                   "cluster": {"node": "n%d" % i, "id": i, "prefix": prefix}}
            cfg.update(config or {})
            g = gateway(APP, cfg, admin=True)
            nodes.append(g)
        for g in nodes:
            g.wait_log_count(r"cluster: member \d+\.\d+ joined", 2, 15)
        return nodes, proxy

    yield make
    for p in proxies:
        p.close()


async def on_each(nodes, per_node=1):
    """per_node clients on every node: {node name: [Client]}."""
    out = {}
    for g in nodes:
        for _ in range(per_node):
            c = await connect(g)
            out.setdefault(c.node, []).append(c)
    return out


async def on_worker(g, worker, extra, limit=200):
    """A client of node g on that worker (others opened meanwhile go to extra)."""
    for _ in range(limit):
        c = await connect(g)
        if c.worker == worker:
            return c
        extra.append(c)
    raise AssertionError("no client landed on worker %d" % worker)


async def close_all(by):
    for cs in by.values():
        for c in cs:
            await c.ws.close()


def test_three_nodes_one_gateway(cluster):
    nodes, _ = cluster()

    async def go():
        by = await on_each(nodes, 3)
        a, b, c = by["n1"][0], by["n2"][0], by["n3"][0]
        ids = [x.id for cs in by.values() for x in cs]
        assert len(set(ids)) == len(ids)

        # by id: the id names the node and worker, no directory needed
        assert await b.ask("to %d by-id" % a.id, "sent ") == "sent true nil"
        assert await a.expect("by-id") == "by-id"

        # by name, once the claim has reached node 3
        assert await a.ask("name alice", "named ") == "named true nil"

        async def reached():
            return await c.ask("to alice by-name", "sent ") == "sent true nil"
        await until(reached, what="alice's claim on n3")
        assert await a.expect("by-name") == "by-name"

        # publish: every subscriber on every node, exactly once
        subs = [x for cs in by.values() for x in cs[:2]]
        pubs = [cs[2] for cs in by.values()]
        for s in subs:
            assert await s.ask("sub news", "subbed ") == "subbed news"
        seen = {s.id: 0 for s in subs}

        async def bound():  # probes until every node's bindings are in place
            await pubs[0].ask("pub news probe", "pubbed")
            for s in subs:
                while seen[s.id] == 0:
                    try:
                        m = await ws_recv(s.ws, 0.3)
                    except asyncio.TimeoutError:
                        break
                    if m == "probe":
                        seen[s.id] = 1
            return all(seen.values())
        await until(bound, 15, "subscriptions bound on every node")
        for p in pubs:  # order holds per sender: each one's end comes after its message
            await p.ask("pub news from-" + p.node, "pubbed")
            await p.ask("pub news end-" + p.node, "pubbed")
        for s in subs:
            got, ends = [], set()
            for _ in range(200):
                m = await ws_recv(s.ws)
                if m.startswith("end-"):
                    ends.add(m)
                    if len(ends) == 3:
                        break
                elif m.startswith("from-"):
                    got.append(m)
            # each arrives once
            assert sorted(got) == ["from-n1", "from-n2", "from-n3"], (s.node, got)

        # broadcast from node 2 reaches every client of every node
        await b.ws.send("all to-everyone")
        for cs in by.values():
            for x in cs:
                assert await x.expect("to-everyone") == "to-everyone"

        h = nodes[0].health()
        assert h["cluster"] == "up" and h["node"] == "n1"
        m = nodes[0].metrics()
        assert m["moongate_cluster_up"] == 2 and m["moongate_cluster_dropped_total"] == 0
        await close_all(by)

    run(go(), 90)


def test_same_name_on_two_nodes(cluster):
    nodes, _ = cluster(2)

    async def go():
        by = await on_each(nodes)
        a, b = by["n1"][0], by["n2"][0]
        assert await a.ask("name bob", "named ") == "named true nil"

        async def known():  # b's node has a's claim: a send by name reaches a
            if await b.ask("to bob ping", "sent ") != "sent true nil":
                return False
            return await a.expect("ping") == "ping"
        await until(known, what="bob's claim on n2")
        assert await b.ask("name bob", "named ") == "named true nil"
        code, reason = await ws_wait_closed(a.ws)
        assert (code, reason) == (4001, "a new client with the same id connected")
        await b.ws.close()

    run(go(), 60)


def test_broker_cut_and_restored(cluster):
    nodes, proxy = cluster(3, proxy_for=3)
    g3 = nodes[2]

    async def go():
        by = await on_each(nodes)
        a, c = by["n1"][0], by["n3"][0]
        assert await c.ask("name carol", "named ") == "named true nil"

        async def reached():
            if await a.ask("to carol hi", "sent ") != "sent true nil":
                return False
            return await c.expect("hi") == "hi"
        await until(reached, what="carol's claim on n1")

        since = g3.mark()
        proxy.cut()
        g3.wait_log_count(r"cluster: broker connection lost", 2, 15, since)
        # node 3 serves its own clients meanwhile, and never blocks
        for _ in range(20):
            assert await c.ask("echo alone", "echo ") == "echo echo alone"
        d = await connect(g3)
        assert await d.ask("sub local", "subbed ") == "subbed local"
        assert await c.ask("pub local alone", "pubbed") == "pubbed"
        assert await d.expect("alone") == "alone"
        h = g3.health()
        assert h["cluster"] == "down" and h["status"] == "ok"

        since = g3.mark()
        proxy.restore()
        g3.wait_log_count(r"cluster: member 3\.\d joined", 2, 20, since)

        # carol is claimed again on rejoin; sends and publishes reach n3 again
        await until(reached, 15, "carol reachable after the rejoin")

        async def published():
            await a.ask("pub local from-n1", "pubbed")
            try:
                while True:
                    m = await ws_recv(d.ws, 0.3)
                    if m == "from-n1":
                        return True
            except asyncio.TimeoutError:
                return False
        await until(published, 15, "publish to n3 after the rejoin")
        await close_all(by)
        await d.ws.close()

    run(go(), 120)


def test_sighup_every_node_under_traffic(cluster):
    import signal
    nodes, _ = cluster()

    async def go():
        by = await on_each(nodes, 4)
        clients = [x for cs in by.values() for x in cs]
        sent = {x.id: 0 for x in clients}
        got = {x.id: 0 for x in clients}
        stop = asyncio.Event()

        async def talk(x):
            while not stop.is_set():
                await x.ws.send("echo n%d" % sent[x.id])
                sent[x.id] += 1
                m = await ws_recv(x.ws, 10)
                assert m == "echo echo n%d" % (sent[x.id] - 1), m
                got[x.id] += 1
                await asyncio.sleep(0.01)

        tasks = [asyncio.ensure_future(talk(x)) for x in clients]
        await asyncio.sleep(0.5)
        marks = [g.mark() for g in nodes]
        for g in nodes:
            g.send_signal(signal.SIGHUP)
        for g, m in zip(nodes, marks):
            g.wait_log(r"reload ok on every worker", 15, m)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*tasks)
        assert sent == got
        assert all(n > 10 for n in got.values()), got
        for x in clients:
            assert x.ws.open, "a connection was dropped by the reload"
        await close_all(by)

    run(go(), 90)


def test_names_of_every_worker_and_a_killed_worker(cluster):
    """A name held by a node's second worker (not the one that hears the
    fanout) is reachable from another node's second worker; when that
    worker is killed, the other nodes forget its names."""
    import os
    import re
    import signal as sig
    nodes, _ = cluster(2)

    async def go():
        extra = []
        a = await on_worker(nodes[0], 2, extra)
        b = await on_worker(nodes[1], 2, extra)
        assert await a.ask("name zed", "named ") == "named true nil"

        async def reached():
            if await b.ask("to zed hi", "sent ") != "sent true nil":
                return False
            return await a.expect("hi") == "hi"
        await until(reached, what="zed's claim on n2's second worker")

        pid = int(nodes[0].find_logs(r"\[w2\] worker 2 ready \(pid (\d+)\)")[-1].split()[-1]
                  .rstrip(")"))
        os.kill(pid, sig.SIGKILL)
        await ws_wait_closed(a.ws)

        async def forgotten():
            return await b.ask("to zed gone?", "sent ") == "sent nil no such connection"
        await until(forgotten, 10, "zed forgotten after its worker was killed")
        for c in extra + [b]:
            await c.ws.close()

    run(go(), 60)


def test_reject_policy_across_nodes(cluster):
    """names.duplicate: reject across nodes: a name held on node 1 is
    refused on node 2, and free there once its holder has gone."""
    nodes, _ = cluster(2, config={"names": {"duplicate": "reject"}})

    async def go():
        by = await on_each(nodes)
        a, b = by["n1"][0], by["n2"][0]
        assert await a.ask("name rita", "named ") == "named true nil"

        async def known():
            if await b.ask("to rita ping", "sent ") != "sent true nil":
                return False
            return await a.expect("ping") == "ping"
        await until(known, what="rita's claim on n2")
        assert await b.ask("name rita", "named ") == "named nil name taken"
        await a.ws.close()

        async def freed():
            return await b.ask("name rita", "named ") == "named true nil"
        await until(freed, what="rita released on n2")
        await b.ws.close()

    run(go(), 60)
