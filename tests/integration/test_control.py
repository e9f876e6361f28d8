"""Operator control: pid_file, `moongate --signal`, log.file and its reopen,
user:/group: after binding as root.

Covered: the pid file holds the running pid (the master's with workers),
is removed at a clean exit, stops a second start while its moongate runs
and is replaced when stale; --signal reload, reopen (after a rename the old
file stops growing and new lines land in a new file, in every process with
workers), quit (drain: clients get 1001) and stop (at once, without waiting
for a client that never answers the close), with their exit statuses; the
errors of --signal (no pid_file, no pid file, a dead pid, a bad name); a
gateway started as root runs as user: nobody, and a reopen it may not do
keeps the old file and says so."""

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import (Gateway, RawWS, run, run_cli, sanitizer_lines, ws_connect,
                      ws_wait_closed)

APP = r"""
function on_connect(conn)
  gw.log.info("CONN " .. conn.id)
  conn:send("hello")
end
function on_message(conn, msg)
  gw.log.info("MSG " .. msg)
  conn:send(msg)
end
"""

EXIT_SENT, EXIT_ERROR, EXIT_NOT_RUNNING = 0, 1, 3


def read(path):
    with open(path) as f:
        return f.read()


def wait_file(path, pattern, timeout=10.0, count=1):
    """Wait until `count` lines of the file at path match pattern; returns
    those lines.  Polls the file (a log file has no event to wait on)."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    hits = []
    for _ in range(int(timeout / 0.02) + 1):
        try:
            hits = [l for l in read(path).splitlines() if rx.search(l)]
        except FileNotFoundError:
            hits = []
        if len(hits) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(hits) >= count, "%d of %d lines /%s/ in %s; it holds:\n%s" % (
        len(hits), count, pattern, path, read(path) if os.path.exists(path) else "(no file)")
    return hits


def signal_cli(g, name):
    return run_cli(["--signal", name, "-c", g.conf_path])


def control_gateway(gateway, config=None, log_file=False, **kw):
    """A gateway with pid_file: run/moongate.pid (and log.file: log/moongate.log);
    started, and ready."""
    cfg = {"pid_file": "run/moongate.pid"}
    if log_file:
        cfg["log"] = {"level": "info", "format": "text", "file": "log/moongate.log"}
    cfg.update(config or {})
    g = gateway(APP, cfg, start=False, **kw)
    os.makedirs(os.path.join(g.dir, "run"), exist_ok=True)
    os.makedirs(os.path.join(g.dir, "log"), exist_ok=True)
    g.pid_path = os.path.join(g.dir, "run", "moongate.pid")
    g.log_path = os.path.join(g.dir, "log", "moongate.log")
    g.start(wait_ready=not log_file)
    if log_file:
        wait_file(g.log_path, r"moongate ready")
    return g


def test_pid_file_holds_the_pid_and_goes_at_exit(gateway):
    g = control_gateway(gateway)
    assert read(g.pid_path) == "%d\n" % g.pid
    assert not [f for f in os.listdir(os.path.dirname(g.pid_path)) if f.endswith(".tmp")]
    assert g.stop() == 0
    assert not os.path.exists(g.pid_path)


def test_a_running_moongate_in_the_pid_file_stops_a_second_start(gateway):
    g = control_gateway(gateway)
    second = gateway(APP, {"pid_file": g.pid_path}, start=False)
    second.start(wait_ready=False)
    assert second.wait_exit(10) == 1
    assert second.find_logs(r"pid_file .* names a running moongate \(pid %d\)" % g.pid)
    assert read(g.pid_path) == "%d\n" % g.pid  # untouched
    assert g.alive()


def test_a_stale_pid_file_is_replaced(gateway, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait(5)
    os.makedirs(tmp_path / "stale", exist_ok=True)
    pid_path = str(tmp_path / "stale" / "moongate.pid")
    with open(pid_path, "w") as f:
        f.write("%d\n" % dead.pid)
    g = gateway(APP, {"pid_file": pid_path})
    assert read(pid_path) == "%d\n" % g.pid
    assert g.find_logs(r"replaced a stale one \(pid %d is not running\)" % dead.pid)


def test_signal_reload(gateway):
    g = control_gateway(gateway, admin=True)
    since = g.mark()
    r = signal_cli(g, "reload")
    assert r.returncode == EXIT_SENT, r.stderr
    g.wait_log(r"reload ok \(generation 2,", 10, since)
    assert g.metrics()["moongate_reloads_total"] == 1
    # pid_file is read at start only: a reload that changes it says so.
    # (--signal reads the new path from the file, which names no process.)
    g.update_config({"pid_file": "run/other.pid"})
    assert signal_cli(g, "reload").returncode == EXIT_NOT_RUNNING
    since = g.mark()
    g.send_signal(signal.SIGHUP)
    g.wait_log(r"reload: pid_file, log.file, user and group changes take effect only after a "
               r"restart", 10, since)
    assert read(g.pid_path) == "%d\n" % g.pid


def test_signal_quit_drains_and_exits_0(gateway):
    g = control_gateway(gateway)

    async def client():
        async with ws_connect(g.url) as ws:
            assert await ws.recv() == "hello"
            r = signal_cli(g, "quit")
            assert r.returncode == EXIT_SENT, r.stderr
            return await ws_wait_closed(ws)

    code, reason = run(client())
    assert code == 1001
    assert g.wait_exit(10) == 0
    assert g.find_logs(r"draining 1 connections")
    assert not os.path.exists(g.pid_path)


def test_signal_stop_does_not_wait_for_the_drain(gateway):
    # A client that never answers the close frame would hold a drain for
    # limits.close_timeout (20 s here); stop ends the process at once.
    g = control_gateway(gateway, {"limits": {"close_timeout": "20s"},
                                  "shutdown": {"drain_timeout": "20s"}})
    c = RawWS(g.port)
    try:
        assert c.recv_message() == ("text", "hello")
        t0 = time.monotonic()
        r = signal_cli(g, "stop")
        assert r.returncode == EXIT_SENT, r.stderr
        assert g.wait_exit(10) == 0
        assert time.monotonic() - t0 < 5
    finally:
        c.close()
    assert not os.path.exists(g.pid_path)


def test_signal_reopen_after_a_rename(gateway):
    g = control_gateway(gateway, log_file=True)
    assert not g.find_logs(r"moongate ready")  # the lines go to the file, not stderr
    rotated = g.log_path + ".1"
    os.rename(g.log_path, rotated)
    r = signal_cli(g, "reopen")
    assert r.returncode == EXIT_SENT, r.stderr
    wait_file(g.log_path, r"SIGUSR1: log file reopened")
    size = os.path.getsize(rotated)

    async def client():
        async with ws_connect(g.url) as ws:
            assert await ws.recv() == "hello"
            await ws.send("after-reopen")
            assert await ws.recv() == "after-reopen"

    run(client())
    wait_file(g.log_path, r"MSG after-reopen")
    assert os.path.getsize(rotated) == size
    assert "after-reopen" not in read(rotated)
    assert "moongate ready" in read(rotated)


def test_a_pid_file_that_cannot_be_written_stops_the_start(gateway):
    g = gateway(APP, {"pid_file": "no-such-folder/moongate.pid"}, start=False)
    g.start(wait_ready=False)
    assert g.wait_exit(10) == 1
    assert g.find_logs(r"pid_file: cannot create .*no-such-folder/moongate\.pid\.\d+\.tmp: "
                       r"No such file")
    assert not g.find_logs(r"moongate ready")


def test_start_errors_reach_stderr_as_well_as_the_log_file(gateway):
    first = gateway(APP)
    g = gateway(APP, {"log": {"level": "info", "format": "text", "file": "moongate.log"}},
                start=False)
    g.update_config({"listen": [{"host": "127.0.0.1", "port": first.port}]})  # in use
    g.start(wait_ready=False)
    code = g.wait_exit(10)
    assert code == 1
    errors = [l for l in g.log_lines if " ERROR " in l]
    assert errors, g.log_tail()
    assert not [l for l in g.log_lines if " INFO " in l]  # info lines go to the file only
    assert errors[0] in read(os.path.join(g.dir, "moongate.log"))


def test_signal_errors(gateway, tmp_path):
    g = gateway(APP, start=False)  # no pid_file
    r = signal_cli(g, "reload")
    assert r.returncode == EXIT_ERROR
    assert "sets no pid_file" in r.stderr

    g.update_config({"pid_file": "run/moongate.pid"})
    r = signal_cli(g, "reload")
    assert r.returncode == EXIT_NOT_RUNNING
    assert re.search(r"cannot read pid_file .*run/moongate.pid: No such file.*is moongate "
                     r"running", r.stderr), r.stderr

    dead = subprocess.Popen(["true"])
    dead.wait(5)
    os.makedirs(os.path.join(g.dir, "run"))
    with open(os.path.join(g.dir, "run", "moongate.pid"), "w") as f:
        f.write("%d\n" % dead.pid)
    r = signal_cli(g, "quit")
    assert r.returncode == EXIT_NOT_RUNNING
    assert "pid %d from" % dead.pid in r.stderr and "not running" in r.stderr

    # A live process that is not moongate is not signalled.
    with open(os.path.join(g.dir, "run", "moongate.pid"), "w") as f:
        f.write("%d\n" % os.getpid())
    r = signal_cli(g, "stop")
    assert r.returncode == EXIT_NOT_RUNNING
    assert "not moongate" in r.stderr

    r = signal_cli(g, "restart")
    assert r.returncode == EXIT_ERROR
    assert "unknown 'restart'" in r.stderr
    r = run_cli(["--signal", "reload"])
    assert r.returncode == EXIT_ERROR
    assert "needs -c FILE" in r.stderr
    r = run_cli(["--signal", "reload", "-t", "-c", g.conf_path])
    assert r.returncode == EXIT_ERROR
    assert "--signal takes only -c FILE" in r.stderr


# ---- workers: N ----

def test_workers_pid_file_reopen_and_quit(gateway):
    g = control_gateway(gateway, {"workers": 2}, log_file=True)
    assert read(g.pid_path) == "%d\n" % g.pid  # the master's
    rotated = g.log_path + ".1"
    os.rename(g.log_path, rotated)
    r = signal_cli(g, "reopen")
    assert r.returncode == EXIT_SENT, r.stderr
    wait_file(g.log_path, r"\[w\d\] log file reopened", count=2)
    wait_file(g.log_path, r"log file reopened \(passed to 2 workers\)")
    size = os.path.getsize(rotated)
    since = read(g.log_path).count("\n")

    r = signal_cli(g, "reload")
    assert r.returncode == EXIT_SENT, r.stderr
    wait_file(g.log_path, r"reload ok on every worker \(2\)")
    assert os.path.getsize(rotated) == size

    r = signal_cli(g, "quit")
    assert r.returncode == EXIT_SENT, r.stderr
    assert g.wait_exit(15) == 0
    assert not os.path.exists(g.pid_path)
    assert os.path.getsize(rotated) == size
    tail = read(g.log_path).splitlines()[since:]
    assert any("[w1] shutdown complete" in l for l in tail)
    assert any("[w2] shutdown complete" in l for l in tail)


def test_workers_signal_stop(gateway):
    g = control_gateway(gateway, {"workers": 2, "limits": {"close_timeout": "20s"},
                                  "shutdown": {"drain_timeout": "20s"}})
    c = RawWS(g.port)
    try:
        assert c.recv_message() == ("text", "hello")
        t0 = time.monotonic()
        r = signal_cli(g, "stop")
        assert r.returncode == EXIT_SENT, r.stderr
        assert g.wait_exit(10) == 0  # the workers stopped, none had to be killed
        assert time.monotonic() - t0 < 5
    finally:
        c.close()
    assert g.find_logs(r"second signal: workers stop now")
    assert not g.find_logs(r"did not stop in time")
    assert not os.path.exists(g.pid_path)


# ---- user: ----

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change user")


def uids(pid):
    for line in read("/proc/%d/status" % pid).splitlines():
        if line.startswith("Uid:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError("no Uid line")


@pytest.fixture
def open_dir():
    """A folder user nobody can read (pytest's tmp_path is root's alone):
    the script is read after the switch to user:."""
    d = tempfile.mkdtemp(prefix="mg-ctl-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def user_gateway(open_dir, config):
    g = Gateway(os.path.join(open_dir, "gw"), APP, dict({"user": "nobody"}, **config))
    os.chmod(g.dir, 0o755)
    for f in (g.conf_path, g.script_path):
        os.chmod(f, 0o644)
    for sub in ("run", "log"):
        os.makedirs(os.path.join(g.dir, sub), exist_ok=True)
        os.chmod(os.path.join(g.dir, sub), 0o755)
    return g


@ROOT_ONLY
def test_user_nobody_after_binding(open_dir):
    nobody = pwd.getpwnam("nobody").pw_uid
    g = user_gateway(open_dir, {"pid_file": "run/moongate.pid"})
    # nobody may remove its pid file from run/ (as with systemd's
    # RuntimeDirectory=), not from a folder of root's.
    os.chown(os.path.join(g.dir, "run"), nobody, -1)
    try:
        g.start()
        assert uids(g.pid) == [nobody] * 4
        assert g.find_logs(r"running as user nobody \(uid %d" % nobody)
        assert read(os.path.join(g.dir, "run", "moongate.pid")) == "%d\n" % g.pid

        async def client():
            async with ws_connect(g.url) as ws:
                assert await ws.recv() == "hello"

        run(client())
        assert g.reload()[0] == "ok"  # the files are read again as nobody
        assert g.stop() == 0
        assert not os.path.exists(os.path.join(g.dir, "run", "moongate.pid"))
        assert not sanitizer_lines(g.log_lines), g.log_tail()
    finally:
        g.cleanup()


@ROOT_ONLY
def test_user_reopen_it_may_not_do_keeps_the_old_file(open_dir):
    g = user_gateway(open_dir, {"log": {"level": "info", "format": "text",
                                        "file": "log/moongate.log"},
                                "pid_file": "run/moongate.pid"})
    log_path = os.path.join(g.dir, "log", "moongate.log")
    try:
        g.start(wait_ready=False)
        wait_file(log_path, r"moongate ready")
        os.rename(log_path, log_path + ".1")
        g.send_signal(signal.SIGUSR1)  # log/ is root's: nobody cannot create the new file
        lines = wait_file(log_path + ".1", r"cannot reopen the log file")
        assert "still writing to the old one" in lines[0]
        assert not os.path.exists(log_path)
        assert g.stop() == 0
        # The pid file stays behind (run/ is root's): the next start replaces it.
        assert "cannot remove pid_file" in read(log_path + ".1")
        assert not sanitizer_lines(g.log_lines), g.log_tail()
    finally:
        g.cleanup()


@ROOT_ONLY
def test_user_with_workers_reopens_through_the_master(open_dir):
    g = user_gateway(open_dir, {"workers": 2, "log": {"level": "info", "format": "text",
                                                      "file": "log/moongate.log"}})
    log_path = os.path.join(g.dir, "log", "moongate.log")
    try:
        g.start(wait_ready=False)
        wait_file(log_path, r"moongate ready")
        workers = [int(p) for p in re.findall(r"worker \d ready \(pid (\d+)\)", read(log_path))]
        assert len(workers) == 2
        nobody = pwd.getpwnam("nobody").pw_uid
        assert all(uids(p) == [nobody] * 4 for p in workers)
        assert uids(g.pid)[0] == 0  # the master keeps root to reopen files
        os.rename(log_path, log_path + ".1")
        g.send_signal(signal.SIGUSR1)
        wait_file(log_path, r"\[w\d\] log file reopened", count=2)
        assert "cannot reopen" not in read(log_path + ".1")
        assert g.stop() == 0
        assert not sanitizer_lines(g.log_lines), g.log_tail()
    finally:
        g.cleanup()


# ---- packaging/moongate.logrotate ----

LOGROTATE = shutil.which("logrotate") or (
    "/usr/sbin/logrotate" if os.path.exists("/usr/sbin/logrotate") else None)


@pytest.mark.skipif(not LOGROTATE or os.geteuid() != 0, reason="needs logrotate, as root")
def test_logrotate_snippet_rotates_and_moongate_reopens(gateway, tmp_path):
    g = control_gateway(gateway, log_file=True)
    from conftest import BIN, ROOT
    snippet = read(os.path.join(ROOT, "packaging", "moongate.logrotate"))
    # The shipped paths and user, pointed at this test's files.
    snippet = snippet.replace("/var/log/moongate/*.log", os.path.join(g.dir, "log", "*.log"))
    snippet = snippet.replace("/usr/bin/moongate", BIN)
    snippet = snippet.replace("/etc/moongate/moongate.yaml", g.conf_path)
    snippet = snippet.replace("create 0640 moongate adm", "create 0640 root root")
    assert BIN in snippet and g.conf_path in snippet
    conf = tmp_path / "logrotate.conf"
    conf.write_text(snippet)
    r = subprocess.run([LOGROTATE, "-f", "-s", str(tmp_path / "state"), str(conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    rotated = g.log_path + ".1"  # delaycompress: the newest is left uncompressed
    assert "moongate ready" in read(rotated)
    wait_file(g.log_path, r"SIGUSR1: log file reopened")
    size = os.path.getsize(rotated)

    async def client():
        async with ws_connect(g.url) as ws:
            assert await ws.recv() == "hello"
            await ws.send("after-rotate")
            assert await ws.recv() == "after-rotate"

    run(client())
    wait_file(g.log_path, r"MSG after-rotate")
    assert os.path.getsize(rotated) == size
