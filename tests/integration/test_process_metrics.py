"""Prometheus' process_* series in /metrics: plausible values, one process
and workers: N (the master and every worker added up)."""

import asyncio
import re
import time

from conftest import run, ws_connect

APP = r"""
function on_connect(conn)
  conn:send("hello " .. gw.worker)
end
"""

NAMES = ["process_cpu_seconds_total", "process_open_fds", "process_max_fds",
         "process_virtual_memory_bytes", "process_resident_memory_bytes",
         "process_start_time_seconds"]


def soft_nofile(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no open-files line")


def test_process_metrics(gateway):
    t0 = time.time()
    g = gateway(APP, admin=True)
    text = g.metrics_text()
    for name in NAMES:
        assert re.search(r"^# TYPE %s (gauge|counter)$" % name, text, re.M), name
    m = g.metrics()
    assert m["process_resident_memory_bytes"] > 1 << 20
    assert m["process_virtual_memory_bytes"] >= m["process_resident_memory_bytes"]
    assert m["process_max_fds"] == soft_nofile(g.pid)
    assert t0 - 2 <= m["process_start_time_seconds"] <= time.time() + 1
    assert m["process_cpu_seconds_total"] >= 0
    before = m["process_open_fds"]
    assert before >= 3

    async def hold(n):
        socks = [await ws_connect(g.url) for _ in range(n)]
        for ws in socks:
            assert (await asyncio.wait_for(ws.recv(), 5)).startswith("hello")
        during = g.metrics()["process_open_fds"]
        for ws in socks:
            await ws.close()
        return during

    during = run(hold(50))
    assert during >= before + 50, (before, during)


def test_process_metrics_with_workers(gateway):
    g = gateway(APP, {"workers": 2}, admin=True)
    m = g.metrics()
    workers = sum(v for k, v in m.items() if k.startswith("moongate_worker_resident_bytes{"))
    # the master's memory is added to the workers'
    assert m["process_resident_memory_bytes"] > workers > 2 << 20
    fds = [v for k, v in m.items() if k.startswith("moongate_worker_open_fds{")]
    assert len(fds) == 2 and all(v >= 3 for v in fds)
    assert m["process_open_fds"] > sum(fds)  # the master's too (same user here)
    assert m["process_max_fds"] > 0
    assert abs(m["process_start_time_seconds"] - time.time()) < 60
