"""The RabbitMQ fixture on its own: a real node starts on ports below the
ephemeral range, pika publishes and reads back, outages and a full restart
keep durable queues and persistent messages."""
import os

import pika
import pytest

from rabbit import PORT_HI, PORT_LO, _pid_alive, rabbit  # noqa: F401  (fixture)


def test_ports_and_processes(rabbit):
    for p in (rabbit.port, rabbit.dist_port, rabbit.epmd_port, rabbit.ctl_port):
        assert PORT_LO <= p < PORT_HI < 32768
    assert rabbit.pid and os.path.exists("/proc/%d" % rabbit.pid)
    assert rabbit.epmd.poll() is None
    assert rabbit.url == "amqp://guest:guest@127.0.0.1:%d/" % rabbit.port
    # the cookie is in our own HOME
    assert os.path.exists(os.path.join(rabbit.home, ".erlang.cookie"))


def test_publish_and_read_back(rabbit):
    q = rabbit.unique("fixture")
    rabbit.declare(q)
    assert rabbit.depth(q) == 0
    rabbit.publish(q, b"one", {"x-attempts": 2, "k": "v"})
    rabbit.publish(q, "two")
    assert rabbit.wait_depth(q, 2) == 2
    assert rabbit.counts(q) == (2, 0)
    body, headers, props = rabbit.get(q)
    assert body == b"one" and headers == {"x-attempts": 2, "k": "v"}
    assert props.delivery_mode == 2
    assert rabbit.get(q)[0] == b"two"
    assert rabbit.get(q) is None
    rabbit.publish(q, "three")
    rabbit.purge(q)
    assert rabbit.depth(q) == 0
    rabbit.delete(q)
    assert not rabbit.exists(q)
    assert rabbit.depth(q) == 0


def test_outage_and_restart_keep_persistent_messages(rabbit):
    q = rabbit.unique("fixture")
    rabbit.declare(q)
    rabbit.publish(q, "before")
    rabbit.stop_app()
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(rabbit.params())
    rabbit.start_app()
    rabbit.publish(q, "between")
    old_pid = rabbit.pid
    rabbit.restart()
    assert rabbit.pid != old_pid and not _pid_alive(old_pid)
    assert [m[0] for m in rabbit.get_all(q)] == [b"before", b"between"]
    rabbit.delete(q)
