"""examples/task-center (SPEC 2.2) against a real RabbitMQ (tests/integration/rabbit.py).

Every test runs the real examples/task-center/task-center.lua with the shipped
moongate.yaml, changed only in its ports, the broker URL, shorter backoff and
retry TTL, and queue names of the test's own (tasks -> tasks.<suffix>, ...),
so the tests share one broker without seeing each other's messages.
Workers are python3-websockets clients; tasks are published with pika.
"""
import asyncio
import json
import os
import time
import uuid

import pytest
import yaml

from conftest import ROOT, deep_merge, metric_sum, run, run_cli, ws_connect
from rabbit import rabbit  # noqa: F401  (session fixture: one broker per test file)

import websockets

EXAMPLE = os.path.join(ROOT, "examples", "task-center")
SHIPPED_CONF = os.path.join(EXAMPLE, "moongate.yaml")
SCRIPT = open(os.path.join(EXAMPLE, "task-center.lua")).read()
SHIPPED = yaml.safe_load(open(SHIPPED_CONF))
PATH = SHIPPED["listen"][0]["path"]
QUEUES = ("tasks", "tasks.retry", "tasks.dead", "results")
RETRY_TTL = "1s"   # the retry queue's TTL in the tests (shipped: 5s)


# --------------------------------------------------------------------------
# the gateway with the example, and its workers
# --------------------------------------------------------------------------

class TaskCenter:
    """The example running against the test broker, with its own queue names."""

    def __init__(self, g, rabbit, names):
        self.g, self.rabbit, self.q = g, rabbit, names
        self.url = g.url_for(PATH)

    def publish(self, name, ttype, **extra):
        body = dict(TaskName=name, TaskType=ttype, **extra)
        self.rabbit.publish(self.q["tasks"], json.dumps(body), message_id="m-" + name)

    def publish_raw(self, body):
        self.rabbit.publish(self.q["tasks"], body)

    def deliveries(self):
        return metric_sum(self.g.metrics(), "moongate_broker_deliveries_total")

    def idle(self, timeout=15):
        """Wait until the tasks queue holds nothing, ready or unacked."""
        return self.rabbit.wait_counts(self.q["tasks"], 0, 0, timeout)


def example_config(g, rabbit, names, app=None, broker=None, extra=None):
    conf = json.loads(json.dumps(SHIPPED))            # deep copy
    conf["listen"] = [dict(SHIPPED["listen"][0], port=g.port)]
    conf["script"] = "app.lua"
    conf["admin"] = {"host": "127.0.0.1", "port": g.admin_port}
    conf["limits"]["close_timeout"] = "1s"
    b = conf["broker"]
    b["url"] = rabbit.url
    b["reconnect_min"] = "100ms"
    b["reconnect_max"] = "1s"
    for q in b["queues"]:
        q["name"] = names[q["name"]]
        if "dead_letter_routing_key" in q:
            q["dead_letter_routing_key"] = names[q["dead_letter_routing_key"]]
        if "message_ttl" in q:
            q["message_ttl"] = RETRY_TTL
    b["consume"] = [names[q] for q in b["consume"]]
    conf["app"]["queues"] = {k: names[v] for k, v in conf["app"]["queues"].items()}
    conf["app"] = deep_merge(conf["app"], app or {})
    b.update(broker or {})
    return deep_merge(conf, extra or {})


@pytest.fixture
def tc(gateway, rabbit):
    """Factory: tc(app=None, broker=None, extra=None) -> a started TaskCenter
    (waits for the broker link to be up); extra is merged into the config."""
    made = []
    rabbit.ensure_running()

    def make(app=None, broker=None, extra=None):
        sfx = uuid.uuid4().hex[:8]
        names = {q: "%s.%s" % (q, sfx) for q in QUEUES}
        g = gateway(SCRIPT, start=False, path=PATH, admin=True)
        g.write_config(example_config(g, rabbit, names, app, broker, extra))
        g.start()
        g.wait_log(r"broker: up amqp://127\.0\.0\.1:%d/ \(consuming %s\)"
                   % (rabbit.port, names["tasks"].replace(".", r"\.")), 15)
        t = TaskCenter(g, rabbit, names)
        made.append(t)
        return t

    yield make
    for t in made:
        for q in t.q.values():
            try:
                rabbit.delete(q)
            except Exception:
                pass


class Worker:
    """A worker: a websockets client on /push that registered its id.

    Tasks (JSON objects) land in .tasks; replies ("ok N", "stale N", ...) in
    .replies.  auto=True answers every task with "done <id>" at once, except
    those hold(task) is true for.  Everything received is recorded."""

    def __init__(self, tc, wid, auto=False, hold=None):
        self.tc, self.id, self.auto, self.hold = tc, wid, auto, hold or (lambda t: False)
        self.tasks = asyncio.Queue()
        self.replies = asyncio.Queue()
        self.received = []          # every task, in order
        self.confirmed = []         # (TaskName, id) whose done got "ok"
        self.held = []
        self.names = {}             # id -> TaskName
        self.ws = None
        self.reader = None

    async def start(self):
        self.ws = await ws_connect(self.tc.url)
        await self.ws.send(self.id)
        reply = await asyncio.wait_for(self.ws.recv(), 5)
        assert reply == "registered " + self.id, reply
        self.reader = asyncio.ensure_future(self._read())
        return self

    async def _read(self):
        try:
            async for m in self.ws:
                if m.startswith("{"):
                    t = json.loads(m)
                    self.received.append(t)
                    self.names[t["id"]] = t["TaskName"]
                    if self.auto and not self.hold(t):
                        await self.ws.send("done %d" % t["id"])
                    else:
                        if self.auto:
                            self.held.append(t)
                        self.tasks.put_nowait(t)
                else:
                    verb, _, rest = m.partition(" ")
                    if verb == "ok":
                        i = int(rest.split()[0])
                        self.confirmed.append((self.names.get(i), i))
                    self.replies.put_nowait(m)
        except websockets.exceptions.ConnectionClosed:
            pass

    async def task(self, timeout=10):
        return await asyncio.wait_for(self.tasks.get(), timeout)

    async def reply(self, timeout=5):
        return await asyncio.wait_for(self.replies.get(), timeout)

    async def reply_for(self, tid, timeout=5):
        """The next reply about task tid (skipping replies to auto answers)."""
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            m = await self.reply(max(0.01, deadline - time.monotonic()))
            if m.split(" ")[1:2] == [str(tid)]:
                return m
        raise AssertionError("no reply about task %d" % tid)

    async def done(self, tid, result=None):
        await self.ws.send("done %d" % tid + (" " + result if result is not None else ""))
        return await self.reply_for(tid)

    async def fail(self, tid, why="boom"):
        await self.ws.send("fail %d %s" % (tid, why))
        return await self.reply_for(tid)

    def kill(self):
        """Drop the TCP connection without a close frame (a crashed worker)."""
        self.ws.transport.abort()

    async def closed(self, timeout=5):
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        return self.ws.close_code, self.ws.close_reason

    async def close(self):
        if self.reader:
            self.reader.cancel()
        await asyncio.wait_for(self.ws.close(), 5)


OPEN = []   # workers of the running test, closed when its coroutine ends


async def worker(tc, wid, **kw):
    w = Worker(tc, wid, **kw)
    OPEN.append(w)
    return await w.start()


def run_tc(coro, timeout):
    """run() that closes the test's workers at the end, in the same event
    loop (a connection left to the loop's shutdown lingers for close_timeout)."""
    async def wrapped():
        try:
            return await coro
        finally:
            ws, OPEN[:] = list(OPEN), []
            await asyncio.gather(*(w.close() for w in ws if w.ws is not None),
                                 return_exceptions=True)
    return run(wrapped(), timeout)


async def until(pred, timeout=10, what="condition"):
    """Poll pred() (bounded) while the event loop keeps running."""
    deadline = time.monotonic() + timeout
    for _ in range(100000):
        if pred():
            return
        if time.monotonic() > deadline:
            raise AssertionError("%s not reached within %ss" % (what, timeout))
        await asyncio.sleep(0.02)


async def probe(tc, msg, timeout=3):
    """One request/answer round trip on a fresh, unregistered connection."""
    async with ws_connect(tc.url) as ws:
        t0 = time.monotonic()
        await ws.send(msg)
        answer = await asyncio.wait_for(ws.recv(), timeout)
        return answer, time.monotonic() - t0


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------

def test_shipped_config_is_valid():
    r = run_cli(["-t", "-c", SHIPPED_CONF])
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout + r.stderr
    assert SHIPPED["names"]["duplicate"] == "replace"
    assert SHIPPED["broker"]["consume"] == ["tasks"]
    assert SHIPPED["app"]["park_max"] <= SHIPPED["broker"]["prefetch"] // 2
    by_name = {q["name"]: q for q in SHIPPED["broker"]["queues"]}
    assert by_name["tasks"]["dead_letter_routing_key"] == "tasks.dead"
    assert by_name["tasks.retry"]["dead_letter_routing_key"] == "tasks"
    assert "message_ttl" in by_name["tasks.retry"]


def test_dispatch_by_type_and_ack_only_after_done(tc, rabbit):
    t = tc()

    async def go():
        w1 = await worker(t, "worker-1")
        w3 = await worker(t, "worker-3")
        t.publish("resize", 1)
        t.publish("email", 2)
        a = await w1.task()
        b = await w3.task()
        assert (a["TaskName"], a["TaskType"], a["attempt"], a["redelivered"]) == \
            ("resize", 1, 1, False)
        assert (b["TaskName"], b["TaskType"]) == ("email", 2)
        assert isinstance(a["id"], int) and a["id"] != b["id"]
        # not acked yet: both unacked at the broker, one per worker
        assert rabbit.wait_counts(t.q["tasks"], 0, 2) == (0, 2)
        assert await w1.done(a["id"]) == "ok %d" % a["id"]
        assert rabbit.wait_counts(t.q["tasks"], 0, 1) == (0, 1)
        assert await w3.done(b["id"]) == "ok %d" % b["id"]
        t.idle()
        # a second confirmation of a settled task is stale, not an error
        assert await w1.done(a["id"]) == "stale %d" % a["id"]
        # a worker cannot confirm another worker's task
        t.publish("other", 2)
        c = await w3.task()
        assert await w1.done(c["id"]) == "stale %d" % c["id"]
        assert await w3.done(c["id"]) == "ok %d" % c["id"]
        assert w1.tasks.empty() and w3.tasks.empty()
    run_tc(go(), 60)
    t.idle()
    t.g.wait_log(r"lua: task %s \(resize, type 1, attempt 1\) -> worker-1" % r"\d+", 5)
    m = t.g.metrics()
    assert m.get("moongate_broker_unsettled") == 0
    assert m.get('moongate_broker_settled_total{how="ack"}') == 3


def test_tasks_are_split_fairly_between_workers_of_a_type(tc, rabbit):
    t = tc()
    n = 11

    async def go():
        w1 = await worker(t, "worker-1")
        w2 = await worker(t, "worker-2")
        for i in range(n):
            t.publish("job-%d" % i, 1)
        await until(lambda: w1.tasks.qsize() + w2.tasks.qsize() == n, 15, "all tasks dispatched")
        c1, c2 = w1.tasks.qsize(), w2.tasks.qsize()
        assert abs(c1 - c2) <= 1, (c1, c2)
        # ties alternate: while nobody confirms, the two take turns
        got = sorted([t_["TaskName"] for t_ in w1.received + w2.received])
        assert got == sorted("job-%d" % i for i in range(n))
        # least loaded: worker-1 confirms everything, so it gets the next ones
        for _ in range(c1):
            task = await w1.task()
            assert (await w1.done(task["id"])).startswith("ok ")
        for i in range(3):
            t.publish("more-%d" % i, 1)
        for i in range(3):
            task = await w1.task()       # worker-2 still holds c2 >= 5 tasks
            assert task["TaskName"] == "more-%d" % i
            assert (await w1.done(task["id"])).startswith("ok ")
        assert w2.tasks.qsize() == c2
        for w in (w1, w2):
            for _ in range(w.tasks.qsize()):
                task = w.tasks.get_nowait()
                assert (await w.done(task["id"])).startswith("ok ")
    run_tc(go(), 60)
    t.idle()


def test_duplicate_worker_id_replaces_the_older_connection(tc, rabbit):
    t = tc()

    async def go():
        old = await worker(t, "worker-1")
        t.publish("held", 1)
        first = await old.task()
        since = t.g.mark()
        new = await worker(t, "worker-1")
        assert await old.closed(5) == (4001, "a new client with the same id connected")
        # the old connection's unconfirmed task was requeued by the core (not
        # an attempt of the task's) and goes to the new one
        again = await new.task()
        assert again["TaskName"] == "held" and again["id"] != first["id"]
        assert again["redelivered"] is True and again["attempt"] == 1
        assert await old_done_is_impossible(old, first)
        assert await new.done(again["id"]) == "ok %d" % again["id"]
        t.g.wait_log(r"lua: worker worker-1 gone: 4001 a new client with the same id "
                     r"connected \(1 unconfirmed\)", 5, since)
    run_tc(go(), 30)
    t.idle()


async def old_done_is_impossible(w, task):
    try:
        await w.ws.send("done %d" % task["id"])
    except websockets.exceptions.ConnectionClosed:
        return True
    return False


def test_worker_killed_mid_task_is_redelivered_to_another_worker(tc, rabbit):
    t = tc()

    async def go():
        w1 = await worker(t, "worker-1")
        w2 = await worker(t, "worker-2")
        since = t.g.mark()
        t.publish("crashy", 1)
        done, pending = await asyncio.wait([asyncio.ensure_future(w.task()) for w in (w1, w2)],
                                           timeout=10, return_when=asyncio.FIRST_COMPLETED)
        for f in pending:
            f.cancel()
        assert len(done) == 1
        task = done.pop().result()
        victim, other = (w1, w2) if task in w1.received else (w2, w1)
        assert (task["attempt"], task["redelivered"], task["message_id"]) == (1, False, "m-crashy")
        victim.kill()
        again = await other.task()
        # the same task (its message_id), marked: the victim may have run it
        assert (again["TaskName"], again["message_id"]) == ("crashy", "m-crashy")
        assert again["attempt"] == 2 and again["redelivered"] is True
        assert again["id"] != task["id"]         # id numbers the delivery
        t.g.wait_log(r"lua: worker %s gone: 1006 .*\(1 unconfirmed\)" % victim.id, 5, since)
        assert await other.done(again["id"]) == "ok %d" % again["id"]
    run_tc(go(), 30)
    t.idle()


def test_worker_that_disconnects_before_done_is_redelivered_marked(tc, rabbit):
    """A clean close (1000) with a task unconfirmed: the next worker gets
    the same task with redelivered true and attempt 2."""
    t = tc()

    async def go():
        w1 = await worker(t, "worker-1")
        t.publish("quitter", 1)
        first = await w1.task()
        assert (first["attempt"], first["redelivered"]) == (1, False)
        since = t.g.mark()
        await w1.close()
        t.g.wait_log(r"lua: worker worker-1 gone: 1000 .*\(1 unconfirmed\)", 5, since)
        w2 = await worker(t, "worker-2")
        again = await w2.task()
        assert (again["TaskName"], again["message_id"]) == ("quitter", "m-quitter")
        assert (again["attempt"], again["redelivered"]) == (2, True)
        assert await w2.done(again["id"]) == "ok %d" % again["id"]
    run_tc(go(), 30)
    t.idle()


def test_heartbeat_timeout_retries_within_timeout_plus_close_timeout(tc, rabbit):
    """A worker that stops reading (its machine froze: no pongs) is closed
    with 4000 after heartbeat.timeout; its task reaches the next worker,
    marked, at most heartbeat.timeout + limits.close_timeout + one sweep
    (a twentieth of the shorter of interval and timeout, 50..250 ms) after
    the last thing it sent: the bound README.md states."""
    timeout, close_timeout, sweep = 1.0, 1.0, 0.05
    t = tc(extra={"heartbeat": {"interval": "500ms", "timeout": "1s"},
                  "limits": {"close_timeout": "1s"}})

    async def go():
        w1 = await worker(t, "worker-1")
        w2 = await worker(t, "worker-2")
        t.publish("frozen", 1)
        done, pending = await asyncio.wait([asyncio.ensure_future(w.task()) for w in (w1, w2)],
                                           timeout=10, return_when=asyncio.FIRST_COMPLETED)
        for f in pending:
            f.cancel()
        task = done.pop().result()
        victim, other = (w1, w2) if task in w1.received else (w2, w1)
        since = t.g.mark()
        victim.ws.transport.pause_reading()     # from now on it answers no ping
        t0 = time.monotonic()
        again = await other.task(10)
        waited = time.monotonic() - t0
        assert (again["TaskName"], again["attempt"], again["redelivered"]) == \
            ("frozen", 2, True)
        t.g.wait_log(r"heartbeat timeout: silent for \d+ ms", 5, since)
        t.g.wait_log(r"lua: worker %s gone: 4000 heartbeat timeout \(1 unconfirmed\)"
                     % victim.id, 5, since)
        # the bound, plus 0.5 s for a busy 2-core test machine
        assert waited <= timeout + close_timeout + sweep + 0.5, waited
        assert await other.done(again["id"]) == "ok %d" % again["id"]
        victim.ws.transport.abort()
    run_tc(go(), 30)
    t.idle()


def test_a_worker_id_matching_no_task_type_is_warned_about(tc, rabbit):
    t = tc()
    since = t.g.mark()

    async def go():
        await worker(t, "worker-9")             # registered all the same
    run_tc(go(), 15)
    t.g.wait_log(r"WARN .*lua: worker worker-9 online as conn \d+ matches no task type in "
                 r"app\.types: it will get no tasks", 5, since)
    assert not t.g.find_logs(r"worker worker-1 online .*matches no task type", since)


def test_a_gateway_restart_redelivers_unconfirmed_tasks_marked(tc, gateway, rabbit):
    """SIGTERM with a task at a worker: the worker is closed with 1001, the
    task goes back to RabbitMQ untouched, and the next gateway on the same
    queues hands it out again with redelivered true (attempt not charged)."""
    t = tc()

    async def before():
        w1 = await worker(t, "worker-1")
        t.publish("restart-me", 1)
        first = await w1.task()
        assert (first["attempt"], first["redelivered"]) == (1, False)
        assert await asyncio.to_thread(t.g.stop) == 0
        assert (await w1.closed(5))[0] == 1001
        return first
    first = run_tc(before(), 30)
    assert rabbit.wait_counts(t.q["tasks"], 1, 0) == (1, 0)   # back in the queue

    g2 = gateway(SCRIPT, start=False, path=PATH, admin=True)
    g2.write_config(example_config(g2, rabbit, t.q))
    g2.start()
    g2.wait_log(r"broker: up amqp://127\.0\.0\.1:%d/" % rabbit.port, 15)
    t2 = TaskCenter(g2, rabbit, t.q)

    async def after():
        w1 = await worker(t2, "worker-1")
        again = await w1.task()
        assert (again["TaskName"], again["message_id"]) == ("restart-me", first["message_id"])
        assert (again["attempt"], again["redelivered"]) == (1, True)
        assert await w1.done(again["id"]) == "ok %d" % again["id"]
    run_tc(after(), 30)
    t2.idle()


def test_no_worker_online_parks_without_spinning_then_delivers(tc, rabbit):
    t = tc()
    since = t.g.mark()
    for i in range(3):
        t.publish("park-%d" % i, 2)
    t.g.wait_log_count(r"lua: task \d+ \(park-\d, type 2\): no worker online, parked", 3, 10,
                       since)
    # parked = held unacked by the gateway: no requeue, no redelivery
    assert rabbit.counts(t.q["tasks"]) == (0, 3)
    base = t.deliveries()
    assert base == 3
    deadline = time.monotonic() + 1.5            # watch it: the count stays flat
    for _ in range(1000):
        if time.monotonic() > deadline:
            break
        assert t.deliveries() == base
        time.sleep(0.1)

    async def go():
        w3 = await worker(t, "worker-3")
        for i in range(3):
            task = await w3.task()
            assert task["TaskName"] == "park-%d" % i and task["redelivered"] is False
            assert await w3.done(task["id"]) == "ok %d" % task["id"]
    run_tc(go(), 30)
    t.idle()
    assert t.deliveries() == base


def test_park_overflow_goes_to_the_retry_queue_not_a_hot_loop(tc, rabbit):
    t = tc(app={"park_max": 2})
    since = t.g.mark()
    for i in range(5):
        t.publish("over-%d" % i, 2)
    t.g.wait_log_count(r"no worker online, parked", 2, 10, since)
    t.g.wait_log_count(r"no worker online, park full; to tasks\.retry\.", 3, 10, since)
    # the overflow comes back every RETRY_TTL (1 s), no faster: in ~2.5 s at
    # most 5 + 3 * 3 deliveries, where a requeue loop would make thousands
    t0 = time.monotonic()
    t.g.wait_log_count(r"park full; to tasks\.retry\.", 6, 10, since)
    assert time.monotonic() - t0 >= 0.5
    assert t.deliveries() <= 5 + 3 * 4

    async def go():
        w3 = await worker(t, "worker-3")
        names = set()
        for _ in range(5):
            task = await w3.task(10)            # parked at once, the rest after the TTL
            names.add(task["TaskName"])
            assert await w3.done(task["id"]) == "ok %d" % task["id"]
        assert names == {"over-%d" % i for i in range(5)}
    run_tc(go(), 40)
    t.idle()
    assert rabbit.depth(t.q["tasks.retry"]) == 0


def test_a_task_failing_max_attempts_times_ends_in_the_dead_letter_queue(tc, rabbit):
    t = tc()
    assert SHIPPED["app"]["max_attempts"] == 3

    async def go():
        w1 = await worker(t, "worker-1")
        t.publish("poison", 1)
        for attempt in (1, 2, 3):
            task = await w1.task()
            assert (task["TaskName"], task["attempt"]) == ("poison", attempt)
            assert await w1.fail(task["id"], "bad input") == "ok %d" % task["id"]
    run_tc(go(), 30)
    body, headers, props = rabbit.wait_get(t.q["tasks.dead"], 10)
    assert json.loads(body) == {"TaskName": "poison", "TaskType": 1}
    assert headers["x-attempts"] == 3
    assert headers["x-error"] == "failed on worker-1: bad input"
    assert props.message_id == "m-poison"
    t.idle()
    t.g.wait_log(r"lua: task \d+ dead after 3 attempts: failed on worker-1: bad input", 5)


def test_a_forward_the_broker_does_not_take_is_requeued_not_stuck(tc, rabbit):
    """The dead-letter queue does not exist (app.queues.dead names nothing
    declared): the forwarded copy is unroutable, the core leaves the original
    unsettled, and the script's watch puts it back in the queue."""
    t = tc(app={"max_attempts": 1, "queues": {"dead": "nowhere." + uuid.uuid4().hex}})

    async def go():
        w1 = await worker(t, "worker-1")
        t.publish("unlucky", 1)
        first = await w1.task()
        assert await w1.fail(first["id"], "x") == "ok %d" % first["id"]
        t.g.wait_log(r"lua: task %d: the broker did not take its forwarded copy; requeued"
                     % first["id"], 10)
        again = await w1.task()
        assert (again["TaskName"], again["redelivered"]) == ("unlucky", True)
        assert await w1.done(again["id"]) == "ok %d" % again["id"]
    run_tc(go(), 30)
    t.idle()


def test_malformed_tasks_are_dead_lettered_and_logged(tc, rabbit):
    t = tc()
    since = t.g.mark()
    t.publish_raw(b"{not json")
    t.publish_raw(b'{"TaskName":"x","TaskType":99}')
    t.publish_raw(b"[1, 2]")
    t.g.wait_log(r"lua: task \d+ rejected: malformed JSON; dead-lettered", 10, since)
    t.g.wait_log(r"lua: task \d+ rejected: unknown TaskType 99; dead-lettered", 10, since)
    rabbit.wait_depth(t.q["tasks.dead"], 3, 10)
    dead = rabbit.get_all(t.q["tasks.dead"])
    assert sorted(m[0] for m in dead) == sorted([b"{not json", b'{"TaskName":"x","TaskType":99}',
                                                 b"[1, 2]"])
    for _, headers, _ in dead:
        assert headers["x-death"][0]["reason"] == "rejected"
        assert headers["x-death"][0]["queue"] == t.q["tasks"]
    m = t.g.metrics()
    assert m.get('moongate_broker_settled_total{how="reject"}') == 3

    async def go():                               # still serving
        w1 = await worker(t, "worker-1")
        t.publish("fine", 1)
        task = await w1.task()
        assert await w1.done(task["id"]) == "ok %d" % task["id"]
    run_tc(go(), 30)
    t.idle()


def test_results_are_published_to_the_results_queue(tc, rabbit):
    t = tc()

    async def go():
        w3 = await worker(t, "worker-3")
        t.publish("sum", 2, args=[1, 2])
        task = await w3.task()
        assert task["args"] == [1, 2]
        assert await w3.done(task["id"], '{"sum": 3}') == "ok %d" % task["id"]
        return task
    task = run_tc(go(), 30)
    body, headers, props = rabbit.wait_get(t.q["results"], 10)
    res = json.loads(body)
    assert res == {"id": task["id"], "TaskName": "sum", "TaskType": 2, "worker": "worker-3",
                   "result": '{"sum": 3}'}
    assert props.correlation_id == "m-sum" and props.delivery_mode == 2
    t.idle()


def test_broker_outages_lose_nothing_and_websocket_clients_are_served(tc, rabbit):
    """stop_app/start_app, then a full broker restart, with two workers
    connected.  Tasks before, during (submitted over WebSocket, buffered by
    the gateway) and after each outage: every one confirmed exactly once;
    only the tasks held unconfirmed at an outage are delivered twice."""
    t = tc()
    published, in_flight = [], set()

    async def pub(names):
        for n in names:
            t.publish(n, 1)
            published.append(n)

    async def submit_during(names):
        for n in names:
            answer, _ = await probe(t, "submit " + json.dumps({"TaskName": n, "TaskType": 1}))
            assert answer == "queued", answer
            published.append(n)

    async def served_while_down():
        rtts = []
        for _ in range(10):
            answer, rtt = await probe(t, "status")
            assert json.loads(answer)["broker"] == "down", answer
            rtts.append(rtt)
        assert max(rtts) < 0.5, rtts

    def confirmed():
        return [n for w in ws for n, _ in w.confirmed]

    async def all_confirmed(timeout=30):
        await until(lambda: set(confirmed()) >= set(published), timeout,
                    "all of %d tasks confirmed" % len(published))

    async def outage(stop, start, held_name, during):
        # one task held unconfirmed by a worker when the broker goes away
        await pub([held_name])
        in_flight.add(held_name)
        await until(lambda: any(x["TaskName"] == held_name for w in ws for x in w.held), 10,
                    "held task delivered")
        rabbit.wait_counts(t.q["tasks"], 0, 1)    # every other ack reached the broker
        since = t.g.mark()
        await asyncio.to_thread(stop)
        t.g.wait_log(r"broker: down: .*; retrying in \d+ms", 15, since)
        await served_while_down()
        await submit_during(during)
        # the held task's confirmation cannot reach the broker any more
        for w in ws:
            for x in list(w.held):
                if x["TaskName"] == held_name:
                    assert await w.done(x["id"]) == "stale %d" % x["id"]
        await asyncio.to_thread(start)
        t.g.wait_log(r"broker: up amqp://127\.0\.0\.1:%d/" % rabbit.port, 30, since)
        await all_confirmed()

    def hold(task):
        """Hold each held-* task the first time it comes (not its redelivery)."""
        name = task["TaskName"]
        return name.startswith("held-") and not any(x["TaskName"] == name
                                                    for w in ws for x in w.held)
    ws = []

    async def go():
        ws.append(await worker(t, "worker-1", auto=True, hold=hold))
        ws.append(await worker(t, "worker-2", auto=True, hold=hold))
        await pub(["before-%d" % i for i in range(10)])
        await all_confirmed()
        await outage(rabbit.stop_app, rabbit.start_app, "held-1",
                     ["during-1-%d" % i for i in range(5)])
        await pub(["between-%d" % i for i in range(10)])
        await all_confirmed()
        await outage(rabbit.stop, rabbit.start, "held-2",
                     ["during-2-%d" % i for i in range(5)])
        await pub(["after-%d" % i for i in range(10)])
        await all_confirmed()
        # workers kept their connections all along
        for w in ws:
            assert w.ws.open
    run_tc(go(), 150)
    t.idle(20)
    got = confirmed()
    assert sorted(got) == sorted(published), "confirmed != published"   # each exactly once
    deliveries = {}
    for w in ws:
        for x in w.received:
            deliveries[x["TaskName"]] = deliveries.get(x["TaskName"], 0) + 1
    twice = {n for n, c in deliveries.items() if c > 1}
    assert twice <= in_flight, twice
    assert t.g.find_logs(r"broker: down") and len(t.g.find_logs(r"broker: up")) >= 3
    m = t.g.metrics()
    assert m.get("moongate_broker_up") == 1
    assert m.get("moongate_broker_connects_total") >= 3


def test_reload_keeps_assigned_and_parked_tasks(tc, rabbit):
    t = tc()

    async def go():
        w1 = await worker(t, "worker-1")
        t.publish("r-a", 1)
        t.publish("r-b", 1)
        t.publish("r-parked", 2)                 # no worker-3: parked
        a, b = await w1.task(), await w1.task()
        t.g.wait_log(r"task \d+ \(r-parked, type 2\): no worker online, parked", 10)
        base = t.deliveries()
        since = t.g.mark()
        t.g.write_script(SCRIPT)
        assert t.g.reload() == ("ok", 2)
        t.g.wait_log(r"lua: reload: generation 2, 2 assigned tasks kept, 1 parked tasks taken "
                     r"over", 5, since)
        # nothing went back to the broker: the new script settles them
        assert rabbit.counts(t.q["tasks"]) == (0, 3)
        assert await w1.done(a["id"]) == "ok %d" % a["id"]
        assert await w1.done(b["id"]) == "ok %d" % b["id"]
        w3 = await worker(t, "worker-3")
        p = await w3.task()
        assert p["TaskName"] == "r-parked" and p["redelivered"] is False
        assert await w3.done(p["id"]) == "ok %d" % p["id"]
        assert t.deliveries() == base
        answer, _ = await probe(t, "status")
        assert json.loads(answer)["generation"] == 2
    run_tc(go(), 30)
    t.idle()


def test_workers_spread_over_nodes(gateway, rabbit):
    """Two nodes of two worker processes each (cluster: over the same
    RabbitMQ), every process consuming `tasks`: the WebSocket worker of
    type 1 is connected to node 2 only, the one of type 2 to node 1 only.
    Every task still reaches a worker of its type and is done exactly once
    (a process without one hands the task back to `tasks`)."""
    rabbit.ensure_running()
    sfx = uuid.uuid4().hex[:8]
    names = {q: "%s.%s" % (q, sfx) for q in QUEUES}
    nodes = []
    for i in (1, 2):
        g = gateway(SCRIPT, start=False, path=PATH, admin=True)
        conf = example_config(g, rabbit, names)
        conf["workers"] = 2
        conf["cluster"] = {"node": "tc%d" % i, "id": i, "prefix": "tc" + sfx}
        g.write_config(conf)
        g.start()
        g.wait_log_count(r"cluster: member %d\.\d joined" % i, 2, 15)
        nodes.append(TaskCenter(g, rabbit, names))
    t1, t2 = nodes

    async def go():
        w1 = await worker(t2, "worker-1", auto=True)   # type 1, on node 2
        w3 = await worker(t1, "worker-3", auto=True)   # type 2, on node 1
        # (a task a process takes before the registrations reach it is
        # parked, then passed on within a second)
        for k in range(20):
            t1.publish("one-%d" % k, 1)
            t1.publish("two-%d" % k, 2)
        await until(lambda: len(w1.confirmed) == 20 and len(w3.confirmed) == 20, 60,
                    "every task done")
        assert sorted(n for n, _ in w1.confirmed) == sorted("one-%d" % k for k in range(20))
        assert sorted(n for n, _ in w3.confirmed) == sorted("two-%d" % k for k in range(20))
        assert len(w1.received) == 20 and len(w3.received) == 20  # each exactly once
    run_tc(go(), 90)
    t1.idle(20)
    for q in names.values():
        try:
            rabbit.delete(q)
        except Exception:
            pass
