"""workers: N — a master and N worker processes behave as one gateway.

Clients land on whichever worker the kernel picks (SO_REUSEPORT); each test
opens connections until it holds one on every worker it needs, asking the
script which worker it reached.  Covered: unique ids, gw.send by id and by
name across workers, publish delivered once to subscribers on every worker,
broadcast (Lua and admin), names claimed on two workers under both
duplicate policies, gw.count("all"), /health and /metrics summed over
workers, a worker killed (SIGKILL) and replaced while the others' clients
notice nothing, a stopped worker (SIGSTOP) that delays nobody else, reload
of every worker (and refusal of a bad script everywhere), drain."""

import asyncio
import json
import os
import signal
import time

import pytest
import websockets

from conftest import run, worker_pids, ws_connect, ws_recv, ws_wait_closed

APP = r"""
function on_connect(conn)
  conn:send("hello " .. gw.worker .. " " .. conn.id .. " " .. gw.generation)
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
  elseif cmd == "count" then
    conn:send("count " .. gw.count() .. " " .. gw.count("all") .. " " .. gw.workers)
  elseif cmd == "gen" then
    conn:send("gen " .. gw.generation .. " " .. VERSION)
  else
    conn:send("echo " .. msg)
  end
end
VERSION = "v1"
"""

N = 4


def start(gateway, workers=N, config=None, **kw):
    cfg = {"workers": workers}
    cfg.update(config or {})
    g = gateway(APP, cfg, admin=True, **kw)
    return g



class Client:
    def __init__(self, ws, worker, cid):
        self.ws, self.worker, self.id = ws, worker, cid

    async def ask(self, text, prefix, timeout=5):
        """Send text, return the first reply starting with prefix."""
        await self.ws.send(text)
        return await self.expect(prefix, timeout)

    async def expect(self, prefix, timeout=5):
        for _ in range(200):
            m = await ws_recv(self.ws, timeout)
            if m.startswith(prefix):
                return m
        raise AssertionError("no message starting with %r" % prefix)


async def connect(g):
    ws = await ws_connect(g.url)
    hello = await ws_recv(ws)
    _, w, cid, _gen = hello.split()
    return Client(ws, int(w), int(cid))


async def spread(g, want, limit=400):
    """Connect until there are `want` clients on every worker; returns
    ({worker: [Client]}, [every Client opened])."""
    by, every = {}, []
    for _ in range(limit):
        c = await connect(g)
        every.append(c)
        by.setdefault(c.worker, []).append(c)
        if len(by) == N and all(len(v) >= want for v in by.values()):
            return by, every
    raise AssertionError("clients never reached every worker: %r"
                         % {k: len(v) for k, v in by.items()})


async def settle(clients):
    """Round trips through every client's worker: a claim or subscription
    made before it has been handed to the other workers (a link's frames
    go out at the end of the loop turn that made them, and each worker
    reads its links before the next client message it answers)."""
    for c in clients:
        assert (await c.ask("count", "count ")).startswith("count ")


async def close_all(clients):
    for c in clients:
        await c.ws.close()


def test_one_gateway_across_workers(gateway):
    g = start(gateway)

    async def go():
        by, every = await spread(g, 3)
        ids = [c.id for c in every]
        assert len(set(ids)) == len(ids), "connection ids repeat across workers"
        one = {w: v[0] for w, v in by.items()}

        # gw.count: this worker's, and every worker's
        r = await one[1].ask("count", "count ")
        _, mine, total, workers = r.split()
        assert int(total) == len(every) and int(workers) == N
        assert int(mine) == len(by[1])

        # send by id and by name to a client on another worker
        assert await one[1].ask("to %d by-id" % one[2].id, "sent ") == "sent true nil"
        assert await one[2].expect("by-id") == "by-id"
        assert await one[3].ask("name alice", "named ") == "named true nil"
        await settle(list(one.values()))
        assert await one[1].ask("to alice by-name", "sent ") == "sent true nil"
        assert await one[3].expect("by-name") == "by-name"
        assert await one[1].ask("to nobody x", "sent ") == "sent nil no such connection"

        # publish: each subscriber on every worker gets it exactly once
        subs = [by[w][i] for w in by for i in range(2)]
        for c in subs:
            assert await c.ask("sub news", "subbed ") == "subbed news"
        await settle(list(one.values()))
        # (publishers that are not subscribers: a subscriber's copy would
        # come before the "pubbed" its ask skips to)
        await by[4][2].ask("pub news n1", "pubbed")
        await by[2][2].ask("pub news n2", "pubbed")
        for c in subs:  # two publishers: no order between them
            got = {await ws_recv(c.ws), await ws_recv(c.ws)}
            assert got == {"n1", "n2"}, got
        # ... and only once: a marker sent after them arrives next
        for c in subs:
            assert await c.ask("echo marker", "") == "echo echo marker"

        # broadcast from Lua reaches every client on every worker
        await one[3].ws.send("all to-everyone")
        for c in every:
            assert await c.expect("to-everyone") == "to-everyone"

        # admin broadcast too, whichever worker answers it
        status, _, body = g.http("POST", "/broadcast", body="from-admin")
        assert status == 200 and json.loads(body)["workers"] == N, body
        for c in every:
            assert await c.expect("from-admin") == "from-admin"

        # /health and /metrics are the gateway's
        h = g.health()
        assert h["connections"] == len(every) and h["workers"] == N and h["workers_up"] == N
        m = g.metrics()
        assert m["moongate_connections"] == len(every)
        per = {k: v for k, v in m.items() if k.startswith("moongate_worker_connections{")}
        assert len(per) == N and sum(per.values()) == len(every), per
        assert m["moongate_peer_dropped_total"] == 0
        await close_all(every)

    run(go())


def test_names_across_workers_replace(gateway):
    """names.duplicate: replace — the newer claim wins wherever the older
    connection is: the older is closed with 4001, and sends follow the name."""
    g = start(gateway)

    async def go():
        by, every = await spread(g, 1)
        a, b, c = by[1][0], by[2][0], by[3][0]
        assert await a.ask("name bob", "named ") == "named true nil"
        await settle([a, b, c])
        assert await b.ask("name bob", "named ") == "named true nil"
        code, reason = await ws_wait_closed(a.ws)
        assert (code, reason) == (4001, "a new client with the same id connected")
        await settle([b, c])
        assert await c.ask("to bob where", "sent ") == "sent true nil"
        assert await b.expect("where") == "where"
        await close_all(every)

    run(go())


def test_names_across_workers_reject(gateway):
    """names.duplicate: reject — a name another worker's client holds is
    refused, and freed when that client goes."""
    g = start(gateway, config={"names": {"duplicate": "reject"}})

    async def go():
        by, every = await spread(g, 1)
        a, b = by[1][0], by[4][0]
        assert await a.ask("name carol", "named ") == "named true nil"
        await settle([a, b])
        assert await b.ask("name carol", "named ") == "named nil name taken"
        await a.ws.close()
        await settle([b])
        deadline = time.monotonic() + 5
        while True:  # the release travels from a's worker to b's
            r = await b.ask("name carol", "named ")
            if r == "named true nil" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        assert r == "named true nil"
        await close_all(every[1:])

    run(go())


def test_killed_worker_is_replaced(gateway):
    g = start(gateway)

    async def go():
        by, every = await spread(g, 1)
        pids = worker_pids(g)
        assert sorted(pids) == list(range(1, N + 1))
        victim = by[2][0]
        since = g.mark()
        os.kill(pids[2], signal.SIGKILL)
        code, _ = await ws_wait_closed(victim.ws)
        assert code == 1006
        g.wait_log(r"worker 2 \(pid %d\) killed by signal 9" % pids[2], 5, since)
        g.wait_log(r"worker 2 ready \(pid (?!%d)\d+\)" % pids[2], 10, since)
        # the others' clients noticed nothing and still talk across workers
        others = [c for c in every if c.worker != 2]
        for c in others:
            assert await c.ask("echo still", "echo ") == "echo echo still"
        # the victim's client reconnects, maybe onto the new worker 2
        again = await connect(g)
        assert again.id not in [c.id for c in every]
        assert await again.ask("echo back", "echo ") == "echo echo back"
        m = g.metrics()
        assert m['moongate_worker_restarts_total{worker="2"}'] == 1
        assert m['moongate_worker_up{worker="2"}'] == 1
        await close_all(others + [again])

    run(go())


def test_stopped_worker_delays_nobody(gateway):
    """A SIGSTOPped worker: the other workers' publishes reach their
    subscribers at once; what piles up for the stopped one is bounded and,
    past the bound, dropped and counted."""
    # Each 1 MiB publish copies the message to three links and a local
    # subscriber inside on_message: a sanitizer build takes longer than the
    # default 250 ms hook budget for that, and the budget is not what this
    # test is about.
    g = start(gateway, config={"limits": {"max_message_size": "2MiB",
                                          "send_queue": "128MiB"},
                               "lua": {"hook_budget": "10s"}})

    async def go():
        by, every = await spread(g, 2)
        pids = worker_pids(g)
        subs = [by[w][0] for w in (1, 2, 3, 4)]
        for c in subs:
            await c.ask("sub t", "subbed ")
        await settle(subs)
        os.kill(pids[3], signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            await by[1][1].ask("pub t p1", "pubbed")
            for c in (by[1][0], by[2][0], by[4][0]):
                assert await c.expect("p1", timeout=2) == "p1"
            took = time.monotonic() - t0
            assert took < 1.0, "publish took %.3fs with a stopped worker" % took
            # 40 MiB for the stopped worker: more than a link holds
            big = "x" * (1 << 20)
            for _ in range(40):
                await by[2][1].ask("pub t " + big, "pubbed", timeout=10)
            for c in (by[1][0], by[2][0], by[4][0]):
                for _ in range(40):
                    assert len(await c.expect("x", timeout=10)) == 1 << 20
        finally:
            os.kill(pids[3], signal.SIGCONT)
        # (admin requests wait until now: the stopped worker may be the one
        # the kernel hands them to)
        m = g.metrics()
        assert m['moongate_worker_peer_dropped_total{worker="2"}'] > 0
        # and it serves again
        assert await by[3][0].ask("echo awake", "echo ", timeout=10) == "echo echo awake"
        await close_all(every)

    run(go())


def test_reload_reaches_every_worker(gateway):
    g = start(gateway)

    async def go():
        by, every = await spread(g, 1)
        # a script that does not compile is refused everywhere
        with open(g.script_path) as f:
            good = f.read()
        g.write_script("function on_message(")
        st, gen = g.reload()
        assert st == "failed", gen
        for w in by:
            assert await by[w][0].ask("gen", "gen ") == "gen 1 v1"
        m = g.metrics()
        assert m["moongate_reload_failures_total"] == 1 and m["moongate_reloads_total"] == 0
        # a good one switches every worker; POST /reload answers after all
        g.write_script(good.replace('VERSION = "v1"', 'VERSION = "v2"'))
        status, _, body = g.http("POST", "/reload", timeout=30)
        assert status == 200 and json.loads(body)["ok"] is True, body
        for w in by:
            assert await by[w][0].ask("gen", "gen ") == "gen 2 v2"
        g.write_script(good.replace('VERSION = "v1"', 'VERSION = "v3"'))
        since = g.mark()
        g.send_signal(signal.SIGHUP)
        g.wait_log(r"reload ok on every worker", 10, since)
        for w in by:
            assert await by[w][0].ask("gen", "gen ") == "gen 3 v3"
        assert g.metrics()["moongate_reloads_total"] == 2
        await close_all(every)

    run(go())


def test_drain_closes_every_worker_and_exits_zero(gateway):
    g = start(gateway)

    async def go():
        by, every = await spread(g, 1)
        g.send_signal(signal.SIGTERM)
        for c in every:
            code, _ = await ws_wait_closed(c.ws)
            assert code == 1001

    run(go())
    assert g.wait_exit(15) == 0
    assert g.find_logs(r"master: every worker has ended")


def test_worker_that_cannot_start_stops_the_gateway(gateway):
    """A listener port taken by another program: the workers cannot bind,
    and the master exits 1 instead of restarting them forever."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        g = start(gateway, start=False)
        g.update_config({"listen": [{"host": "127.0.0.1", "port": s.getsockname()[1]}]})
        g.start(wait_ready=False)
        assert g.wait_exit(15) == 1
        assert g.find_logs(r"before it was ready: stopping")
    finally:
        s.close()
