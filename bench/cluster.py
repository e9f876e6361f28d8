#!/usr/bin/python3
"""bench/cluster.py — cross-node publish latency of a 3-node cluster (issue 18).

    bench/cluster.py [--subs 100] [--size 64] [--rates 1000,2000,4000,8000,16000]
                     [--seconds 5] [--workers 1] [--json FILE]

Starts a throw-away RabbitMQ (tests/integration/rabbit.py: its own node,
ports and epmd, stopped by PID), then:

1. RabbitMQ alone: bench/amqprate publishes 200,000 messages of the same
   size from one connection to a queue another connection consumes (the
   path a cluster message takes between two members): the ceiling.
2. Three moongate nodes (bench/scripts/cluster.lua, `workers: N` each,
   cluster ids 1-3) on free loopback ports.  wsload --broadcast puts its
   publisher on node 1 and SUBS subscribers on nodes 2 and 3 (alternating):
   each message is published on node 1 and crosses the broker to the
   subscribers' nodes.  Latency = receive time - send time (one clock, one
   machine), per rate step; the ramp stops at the first step whose p99
   passes 50 ms.

Prints a table: the p99 at 1,000 messages/s, the highest rate whose p99 is
at most 50 ms, wsload's and RabbitMQ's figures, and whether wsload's core
was saturated (then the figure is the generator's).  Needs build/moongate,
bench/wsload and bench/amqprate (make -C bench) and rabbitmq-server
(tools/deps.sh --test installs it).  Everything it starts is stopped by PID.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from rabbit import Rabbit  # noqa: E402

BIN = os.path.join(ROOT, "build", "moongate")
WSLOAD = os.path.join(ROOT, "bench", "wsload")
AMQPRATE = os.path.join(ROOT, "bench", "amqprate")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, folder, i, url, prefix, workers):
        self.port = free_port()
        self.conf = os.path.join(folder, "n%d.yaml" % i)
        with open(self.conf, "w") as f:
            f.write("\n".join([
                "listen:",
                "  - host: 127.0.0.1",
                "    port: %d" % self.port,
                "script: %s" % json.dumps(os.path.join(ROOT, "bench", "scripts", "cluster.lua")),
                "workers: %d" % workers,
                "limits:",
                "  max_connections: 5000",
                "broker:",
                "  url: %s" % json.dumps(url),
                "cluster:",
                "  node: n%d" % i,
                "  id: %d" % i,
                "  prefix: %s" % prefix,
                "log:",
                "  level: warn",
                ""]))
        self.log = open(os.path.join(folder, "n%d.log" % i), "w+")
        self.proc = subprocess.Popen([BIN, "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def wait_joined(self, members, timeout=30):
        # log level warn: readiness is the port answering, membership the
        # broker's consumers (the caller checks the queue count)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("node on port %d exited" % self.port)
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("node on port %d did not start" % self.port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def members_up(rabbit, want, timeout=30):
    """Wait until `want` member queues (amq.gen-*, exclusive) consume."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = rabbit.ctl("list_queues", "name", "consumers", "--quiet", check=False)
        n = sum(1 for line in out.stdout.splitlines()
                if line.startswith("amq.gen-") and line.split()[-1] == "1")
        if n >= want:
            return n
        time.sleep(0.2)
    raise SystemExit("only some cluster members joined")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subs", type=int, default=100)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--rates", default="1000,2000,4000,8000,16000")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json")
    a = ap.parse_args()
    for p in (BIN, WSLOAD, AMQPRATE):
        if not os.access(p, os.X_OK):
            raise SystemExit("missing %s (build moongate; make -C bench)" % p)

    folder = tempfile.mkdtemp(prefix="moongate-cluster-")
    rabbit = Rabbit(os.path.join(folder, "rabbit"))
    nodes = []
    result = {"subs": a.subs, "size": a.size, "workers": a.workers}
    try:
        rabbit.start()
        r = subprocess.run([AMQPRATE, "-u", rabbit.url, "-n", "200000", "-s", str(a.size)],
                           capture_output=True, text=True, timeout=120)
        result["rabbitmq_alone"] = json.loads(r.stdout) if r.returncode == 0 else r.stderr
        prefix = "bench" + uuid.uuid4().hex[:8]
        nodes = [Node(folder, i, rabbit.url, prefix, a.workers) for i in (1, 2, 3)]
        for n in nodes:
            n.wait_joined(a.workers)
        members_up(rabbit, 3 * a.workers)
        cmd = [WSLOAD, "-u", "ws://127.0.0.1:%d/" % nodes[1].port, "-c", str(a.subs + 1),
               "--broadcast", a.rates, "--p99-limit", "50", "-s", str(max(a.size, 32)),
               "-t", str(a.seconds), "-w", "2", "--connect-timeout", "30",
               "--pub-port", str(nodes[0].port),
               "--sub-ports", "%d,%d" % (nodes[1].port, nodes[2].port), "--json"]
        w = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        result["wsload"] = json.loads(w.stdout) if w.stdout.strip() else w.stderr
        result["wsload_stderr"] = w.stderr[-2000:]
    finally:
        for n in nodes:
            n.stop()
        rabbit.shutdown()

    ws = result.get("wsload") if isinstance(result.get("wsload"), dict) else {}
    steps = ws.get("steps", [])
    at1k = next((s for s in steps if abs(s.get("rate", 0) - 1000) < 1), None)
    alone = result.get("rabbitmq_alone")
    print("| figure | value |")
    print("|---|---|")
    print("| subscribers (nodes 2 and 3), publisher (node 1), size | %d, 1, %d B |"
          % (a.subs, a.size))
    if at1k:
        print("| cross-node publish p50 / p99 at 1,000 msg/s | %.2f / %.2f ms |"
              % (at1k["p50_us"] / 1000, at1k["p99_us"] / 1000))
    for s in steps:
        print("| step %g msg/s: p99, lost, wsload cpu | %.2f ms, %s, %.2f s |"
              % (s.get("rate", 0), s.get("p99_us", 0) / 1000, s.get("lost"), s.get("cpu_s", 0)))
    print("| highest rate with p99 <= 50 ms | %s msg/s%s |"
          % (ws.get("max_rate_ok"), " (the ramp's last step: capped)" if ws.get("ramp_capped")
             else ""))
    if isinstance(alone, dict):
        print("| RabbitMQ alone, one publisher to one consumer | %s msg/s |" % alone["msgs_per_s"])
    else:
        print("| RabbitMQ alone | failed: %s |" % alone)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
