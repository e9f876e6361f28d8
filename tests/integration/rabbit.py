"""A real RabbitMQ server for the integration tests (never a mock).

Debian's rabbitmq-server (3.10) is started as a throw-away node:

* everything under one temp folder: mnesia, logs, config, enabled-plugins
  file (`[].`), env file, and HOME (so the Erlang cookie is ours too);
* its own node name, listening on 127.0.0.1 only;
* ports below 32768 (32768-60999 is the ephemeral range here: a listener
  there can collide with outgoing connections) picked at random in
  20000-32000: AMQP, Erlang distribution, epmd, and the small range the CLI
  tools (rabbitmqctl) listen on;
* its own epmd (`epmd -address 127.0.0.1 -port P`), started by us, so every
  process involved has a PID we started and can stop by PID.

Start: epmd, `rabbitmq-server -detached`, `rabbitmqctl wait PIDFILE`.
Stop: SIGTERM to the PID from the pid file, wait for it to exit, then SIGTERM
to our epmd.  Never by name.

    from rabbit import rabbit            # the session fixture (boot ~10-30 s)

    def test_x(rabbit):
        q = rabbit.unique("tasks")       # a queue name of this test's own
        rabbit.declare(q)
        rabbit.publish(q, b"hello", {"x-attempts": 1})
        assert rabbit.depth(q) == 1
        body, headers = rabbit.get(q)

Outages: rabbit.stop_app() / rabbit.start_app() (the node stays up, AMQP
goes away: connections are closed), rabbit.restart() (the whole node stops
and starts again on the same ports with the same data folder, so durable
queues and persistent messages survive).
"""

import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import logging

import pika
import pytest

RMQ_BIN = "/usr/lib/rabbitmq/bin"
SERVER = os.path.join(RMQ_BIN, "rabbitmq-server")
CTL = os.path.join(RMQ_BIN, "rabbitmqctl")

PORT_LO, PORT_HI = 20000, 32000
CTL_PORTS = 10   # rabbitmqctl's own distribution listener range (default 35672-35682)

_counter = itertools.count(1)

# pika logs every refused connection at ERROR (expected during outages)
logging.getLogger("pika").setLevel(logging.CRITICAL)


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports_below_ephemeral(n, block=1, taken=()):
    """n random free ports in [PORT_LO, PORT_HI); with block > 1, the first
    one starts a run of `block` consecutive free ports (all reserved)."""
    rng = random.Random(os.getpid() ^ int(time.time() * 1000))
    out, used = [], set(taken)
    for _ in range(5000):
        if len(out) == n:
            return out
        p = rng.randrange(PORT_LO, PORT_HI - block)
        want = range(p, p + (block if not out else 1))
        if any(q in used for q in want) or not all(_port_free(q) for q in want):
            continue
        used.update(want)
        out.append(p)
    raise RuntimeError("no free ports in %d-%d" % (PORT_LO, PORT_HI))


def _port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class RabbitError(AssertionError):
    pass


class Rabbit:
    """One RabbitMQ node in its own folder.  See the module docstring."""

    def __init__(self, base=None):
        self.base = base or tempfile.mkdtemp(prefix="mg-rabbit-")
        self.owns_base = base is None
        self.home = os.path.join(self.base, "home")
        self.mnesia = os.path.join(self.base, "mnesia")
        self.logs = os.path.join(self.base, "log")
        for d in (self.home, self.mnesia, self.logs):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.home, 0o700)
        self.pid_file = os.path.join(self.base, "rabbit.pid")
        self.conf_file = os.path.join(self.base, "rabbitmq.conf")
        self.env_file = os.path.join(self.base, "rabbitmq-env.conf")
        self.plugins_file = os.path.join(self.base, "enabled_plugins")
        self.node = "mgtest%d_%s@localhost" % (os.getpid(), uuid.uuid4().hex[:6])
        self.port, self.dist_port, self.epmd_port = free_ports_below_ephemeral(3)
        # rabbitmqctl listens on a port from a range too: give it one of ours
        self.ctl_port = free_ports_below_ephemeral(
            1, block=CTL_PORTS, taken={self.port, self.dist_port, self.epmd_port})[0]
        self.epmd = None       # Popen of the epmd we started
        self.pid = None        # the broker's (beam.smp) PID
        self._conn = None      # cached pika connection (see channel())
        self._chan = None
        with open(self.conf_file, "w") as f:
            f.write("listeners.tcp.default = 127.0.0.1:%d\n" % self.port)
            f.write("loopback_users.guest = true\n")
            f.write("disk_free_limit.absolute = 50MB\n")
            f.write("log.console = false\n")
            f.write("log.file.level = info\n")
        with open(self.plugins_file, "w") as f:
            f.write("[].\n")
        with open(self.env_file, "w") as f:
            f.write("# empty: keep /etc/rabbitmq/rabbitmq-env.conf out\n")

    # ------------------------------------------------------------ process
    @property
    def url(self):
        """The broker URL for the gateway's `broker.url`."""
        return "amqp://guest:guest@127.0.0.1:%d/" % self.port

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": self.home,
            "RABBITMQ_CONF_ENV_FILE": self.env_file,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CTL_DIST_PORT_MIN": str(self.ctl_port),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(self.ctl_port + CTL_PORTS - 1),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": self.mnesia,
            "RABBITMQ_LOG_BASE": self.logs,
            "RABBITMQ_PID_FILE": self.pid_file,
            "RABBITMQ_CONFIG_FILE": self.conf_file,
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(self.base, "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": self.plugins_file,
            # never let erl start an epmd of its own: ours must be the one
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-start_epmd false",
        })
        return env

    def _start_epmd(self, timeout=10):
        if self.epmd is not None and self.epmd.poll() is None:
            return
        self.epmd = subprocess.Popen(
            ["epmd", "-address", "127.0.0.1", "-port", str(self.epmd_port)],
            env=self.env(), cwd=self.base, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        for _ in range(1000):
            if _port_open(self.epmd_port):
                return
            if self.epmd.poll() is not None:
                raise RabbitError("epmd exited with %s (port %d taken?)"
                                  % (self.epmd.returncode, self.epmd_port))
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        raise RabbitError("epmd not listening on %d within %ss" % (self.epmd_port, timeout))

    def _stop_epmd(self, timeout=10):
        if self.epmd is None:
            return
        if self.epmd.poll() is None:
            self.epmd.send_signal(signal.SIGTERM)
            try:
                self.epmd.wait(timeout)
            except subprocess.TimeoutExpired:
                self.epmd.kill()
                self.epmd.wait(5)
        self.epmd = None

    def ctl(self, *args, timeout=60, check=True):
        """Run rabbitmqctl against this node -> CompletedProcess (text)."""
        cmd = [CTL, "-n", self.node] + [str(a) for a in args]
        try:
            r = subprocess.run(cmd, env=self.env(), cwd=self.base, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RabbitError("rabbitmqctl %s: no answer within %ss" % (" ".join(args), timeout))
        if check and r.returncode != 0:
            raise RabbitError("rabbitmqctl %s failed (%d):\n%s\n%s\n%s"
                              % (" ".join(map(str, args)), r.returncode, r.stdout, r.stderr,
                                 self.log_tail()))
        return r

    def start(self, timeout=120):
        """Start epmd (if not running) and the node; returns when it serves AMQP."""
        self._start_epmd()
        try:
            os.unlink(self.pid_file)
        except FileNotFoundError:
            pass
        r = subprocess.run([SERVER, "-detached"], env=self.env(), cwd=self.base,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RabbitError("rabbitmq-server -detached failed (%d): %s %s"
                              % (r.returncode, r.stdout, r.stderr))
        self.ctl("wait", "--timeout", str(int(timeout)), self.pid_file, timeout=timeout + 30)
        with open(self.pid_file) as f:
            self.pid = int(f.read().strip())
        self.wait_amqp(30)
        return self

    def wait_amqp(self, timeout=30):
        """Wait until an AMQP connection succeeds."""
        deadline = time.monotonic() + timeout
        last = None
        for _ in range(10000):
            try:
                c = pika.BlockingConnection(self.params())
                c.close()
                return
            except Exception as e:      # pika raises a variety of AMQP/socket errors
                last = e
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        raise RabbitError("AMQP on port %d not up within %ss: %r" % (self.port, timeout, last))

    def stop(self, timeout=60):
        """SIGTERM to the node's PID, wait for it to exit (the node only; epmd stays)."""
        self.close_client()
        pid = self.pid
        if pid is not None and _pid_alive(pid):
            os.kill(pid, signal.SIGCONT)      # in case a test froze it
        if pid is None and os.path.exists(self.pid_file):
            try:
                with open(self.pid_file) as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                pid = None
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            if not _pid_alive(pid):
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.5)
                break
            time.sleep(0.05)
        self.pid = None
        # the port must be free again before a restart can bind it
        deadline = time.monotonic() + 15
        for _ in range(1000):
            if not _port_open(self.port) or time.monotonic() > deadline:
                break
            time.sleep(0.05)

    def restart(self, timeout=120):
        """Full stop, then start on the same ports with the same data folder."""
        self.stop()
        self.start(timeout)

    def stop_app(self):
        """Stop the RabbitMQ application (node stays up): every AMQP connection
        is closed and new ones are refused until start_app()."""
        self.close_client()
        self.ctl("stop_app")

    def start_app(self, timeout=60):
        self.ctl("start_app", timeout=timeout)
        self.wait_amqp(timeout)

    def freeze(self):
        """SIGSTOP the node: a broker that accepts nothing and answers nothing
        (a hung or overloaded broker).  Don't use the AMQP helpers or
        rabbitmqctl until thaw()."""
        self.close_client()
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self):
        os.kill(self.pid, signal.SIGCONT)

    def ensure_running(self, timeout=120):
        """Bring the broker back if an earlier (failed) test left it stopped:
        the node restarted if its process is gone, the app started if only
        AMQP is down.  Cheap when all is well (one AMQP connection)."""
        if self.pid is not None and _pid_alive(self.pid):
            os.kill(self.pid, signal.SIGCONT)     # a test may have frozen it
        try:
            pika.BlockingConnection(self.params()).close()
            return
        except Exception:
            pass
        self.close_client()
        if self.pid is None or not _pid_alive(self.pid):
            self.pid = None
            self.start(timeout)
        else:
            self.start_app(timeout)

    def shutdown(self):
        """Stop the node, then our epmd; remove the folder if it is ours."""
        try:
            self.stop()
        finally:
            self._stop_epmd()
            if self.owns_base and not os.environ.get("MOONGATE_KEEP_RABBIT"):
                shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, n=40):
        out = []
        try:
            for name in sorted(os.listdir(self.logs)):
                if name.endswith(".log"):
                    with open(os.path.join(self.logs, name), errors="replace") as f:
                        lines = f.read().splitlines()[-n:]
                    out.append("---- %s ----\n%s" % (name, "\n".join(lines)))
        except OSError:
            pass
        return "\n".join(out)

    # ------------------------------------------------------------ AMQP client
    def params(self):
        return pika.ConnectionParameters(
            host="127.0.0.1", port=self.port,
            credentials=pika.PlainCredentials("guest", "guest"),
            heartbeat=0, blocked_connection_timeout=10, socket_timeout=5,
            connection_attempts=1, stack_timeout=10)

    def close_client(self):
        c, self._conn, self._chan = self._conn, None, None
        if c is not None:
            try:
                c.close()
            except Exception:
                pass

    def channel(self):
        """A cached channel with publisher confirms on (reopened when the
        broker closed it, e.g. after an outage or a failed passive declare)."""
        if self._conn is None or not self._conn.is_open:
            self.close_client()
            self._conn = pika.BlockingConnection(self.params())
        if self._chan is None or not self._chan.is_open:
            self._chan = self._conn.channel()
            self._chan.confirm_delivery()
        return self._chan

    def _retry(self, fn):
        """fn(channel), once more on a fresh connection if the cached one is dead."""
        try:
            return fn(self.channel())
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.StreamLostError,
                pika.exceptions.ChannelWrongStateError, pika.exceptions.ConnectionWrongStateError):
            self.close_client()
            return fn(self.channel())

    @staticmethod
    def unique(prefix="q"):
        """A queue name no other test uses."""
        return "%s.%d.%s" % (prefix, next(_counter), uuid.uuid4().hex[:6])

    def declare(self, queue, dead_letter_exchange=None, dead_letter_routing_key=None,
                message_ttl_ms=None):
        """Declare a durable queue (the arguments must match the gateway's own
        declaration of it, or the broker closes the channel)."""
        args = {}
        if dead_letter_exchange is not None:
            args["x-dead-letter-exchange"] = dead_letter_exchange
        if dead_letter_routing_key is not None:
            args["x-dead-letter-routing-key"] = dead_letter_routing_key
        if message_ttl_ms is not None:
            args["x-message-ttl"] = int(message_ttl_ms)
        self._retry(lambda ch: ch.queue_declare(queue, durable=True, arguments=args or None))

    def publish(self, queue, body, headers=None, exchange="", message_id=None,
                content_type=None):
        """Publish one persistent message to `queue` through `exchange` (default
        exchange: routing key = queue name), confirmed by the broker."""
        if isinstance(body, str):
            body = body.encode()
        props = pika.BasicProperties(delivery_mode=2, headers=headers or None,
                                     message_id=message_id, content_type=content_type)

        def go(ch):
            ch.basic_publish(exchange, queue, body, props, mandatory=False)
        self._retry(go)

    def exists(self, queue):
        try:
            self._retry(lambda ch: ch.queue_declare(queue, passive=True))
            return True
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code == 404:
                self._chan = None
                return False
            raise

    def depth(self, queue):
        """Messages ready in `queue` (passive declare; unacked ones not counted);
        0 if the queue does not exist."""
        try:
            r = self._retry(lambda ch: ch.queue_declare(queue, passive=True))
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code == 404:
                self._chan = None
                return 0
            raise
        return r.method.message_count

    def consumers(self, queue):
        r = self._retry(lambda ch: ch.queue_declare(queue, passive=True))
        return r.method.consumer_count

    def counts(self, queue):
        """(ready, unacknowledged) for `queue`, from rabbitmqctl list_queues
        ((0, 0) if it does not exist).  ~1 s per call (the CLI boots Erlang)."""
        r = self.ctl("list_queues", "-q", "--no-table-headers", "name", "messages_ready",
                     "messages_unacknowledged")
        for line in r.stdout.splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[0] == queue:
                return int(parts[1]), int(parts[2])
        return 0, 0

    def get(self, queue):
        """Take one message off `queue` (acked) -> (body bytes, headers dict,
        properties), or None if it is empty."""
        def go(ch):
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return None
            return body, dict(props.headers or {}), props
        return self._retry(go)

    def get_all(self, queue, limit=10000):
        out = []
        for _ in range(limit):
            m = self.get(queue)
            if m is None:
                break
            out.append(m)
        return out

    def wait_get(self, queue, timeout=10):
        """The next message of `queue`, polling until one arrives (bounded)."""
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            m = self.get(queue)
            if m is not None:
                return m
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise AssertionError("no message on %s within %ss" % (queue, timeout))

    def wait_depth(self, queue, n, timeout=10, cmp="=="):
        """Poll until depth(queue) == n (or >= n with cmp='>='); returns it."""
        deadline = time.monotonic() + timeout
        d = None
        for _ in range(100000):
            d = self.depth(queue)
            if (d == n) if cmp == "==" else (d >= n):
                return d
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise AssertionError("queue %s: depth %r, wanted %s %d within %ss"
                             % (queue, d, cmp, n, timeout))

    def wait_counts(self, queue, ready, unacked, timeout=15):
        """Poll rabbitmqctl until (ready, unacked) of `queue` is as given."""
        deadline = time.monotonic() + timeout
        got = None
        for _ in range(1000):
            got = self.counts(queue)
            if got == (ready, unacked):
                return got
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        raise AssertionError("queue %s: (ready, unacked) = %r, wanted %r within %ss"
                             % (queue, got, (ready, unacked), timeout))

    def purge(self, queue):
        try:
            self._retry(lambda ch: ch.queue_purge(queue))
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code != 404:
                raise
            self._chan = None

    def delete(self, *queues):
        for q in queues:
            self._retry(lambda ch: ch.queue_delete(q))


@pytest.fixture(scope="session")
def rabbit(tmp_path_factory):
    """One RabbitMQ node for the whole pytest session (ctest runs each test
    file in its own session).  Tests use their own queue names (Rabbit.unique)."""
    if not os.path.exists(SERVER):
        pytest.fail("RabbitMQ is not installed (%s): apt-get install rabbitmq-server" % SERVER)
    r = Rabbit(str(tmp_path_factory.mktemp("rabbit")))
    try:
        r.start()
    except BaseException:
        print(r.log_tail())
        r.shutdown()
        raise
    yield r
    r.shutdown()
