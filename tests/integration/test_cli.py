"""Command line: -t config check, error positions, quick start flags, --help/-V."""

import os
import re
import socket

import pytest

from conftest import (BIN, free_port, lua, line_of, run, run_cli, ws_connect, ws_recv)

ECHO = """
function on_message(conn, data, kind)
  conn:send(data, kind)
end
"""


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def good_conf(tmp_path, port=None, extra=""):
    write(tmp_path / "app.lua", lua(ECHO))
    conf = tmp_path / "conf.yaml"
    write(conf, "listen:\n  - host: 127.0.0.1\n    port: %d\n    path: /\nscript: app.lua\n%s"
          % (port or free_port(), extra))
    return conf


def test_check_good_config_exits_0(tmp_path):
    conf = good_conf(tmp_path, extra="heartbeat:\n  interval: 250ms\n  timeout: 2s\n"
                     "limits:\n  max_message_size: 64KiB\n")
    r = run_cli(["-t", "-c", str(conf)])
    assert r.returncode == 0, r.stderr
    assert re.search(r"conf\.yaml: configuration ok", r.stdout), (r.stdout, r.stderr)


def test_check_binds_nothing(tmp_path):
    """-t must not bind the listener: it succeeds while the port is taken."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        conf = good_conf(tmp_path, port=port)
        r = run_cli(["-t", "-c", str(conf)])
        assert r.returncode == 0, r.stderr
        assert "configuration ok" in r.stdout


# (name, yaml text, expected error line or None for "any line")
BAD_CONFIGS = [
    ("syntax", "listen:\n  - port: 8080\nscript: app.lua\nheartbeat:\n  interval: [1s\n", None),
    ("unknown_key", "listen:\n  - port: 8080\nscript: app.lua\nheartbeat:\n  intervall: 5s\n", 5),
    ("unknown_top_key", "listen:\n  - port: 8080\nscript: app.lua\nlistner: x\n", 4),
    ("bad_duration", "listen:\n  - port: 8080\nscript: app.lua\nheartbeat:\n  interval: 5 parsecs\n", 5),
    ("bad_size", "listen:\n  - port: 8080\nscript: app.lua\nlimits:\n  max_message_size: 12 bananas\n", 5),
    ("port_range", "listen:\n  - port: 70000\nscript: app.lua\n", 2),
    ("wrong_type", "listen: 8080\nscript: app.lua\n", 1),
    ("bad_enum", "listen:\n  - port: 8080\nscript: app.lua\nlimits:\n  slow_consumer: sometimes\n", 5),
    ("hook_budget_range", "listen:\n  - port: 8080\nscript: app.lua\nlua:\n  hook_budget: 0ms\n", 5),
    ("missing_script_file", "listen:\n  - port: 8080\nscript: nope.lua\n", 3),
    ("missing_static_root", "listen:\n  - port: 8080\nscript: app.lua\nstatic:\n  root: nowhere\n", 5),
    ("missing_required_script", "listen:\n  - port: 8080\nlog:\n  level: info\n", None),
]


@pytest.mark.parametrize("name,text,line", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_check_bad_config(tmp_path, name, text, line):
    write(tmp_path / "app.lua", lua(ECHO))
    conf = tmp_path / "conf.yaml"
    write(conf, text)
    r = run_cli(["-t", "-c", str(conf)])
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "configuration ok" not in r.stdout
    lineno = str(line) if line else r"\d+"
    assert re.search(r"moongate: \S*conf\.yaml:%s:\d+: \S" % lineno, r.stderr), r.stderr


def test_check_script_syntax_error(tmp_path):
    src = lua("""
        function on_message(conn, data)
          conn:send(data
        end
        """)
    conf = good_conf(tmp_path)
    write(tmp_path / "app.lua", src)
    r = run_cli(["-t", "-c", str(conf)])
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert re.search(r"app\.lua:\d+:", r.stderr), r.stderr
    assert "configuration ok" not in r.stdout


def test_start_with_bad_config_exits_1(tmp_path):
    write(tmp_path / "app.lua", lua(ECHO))
    conf = tmp_path / "conf.yaml"
    write(conf, "listen:\n  - port: %d\nscript: app.lua\nbogus: 1\n" % free_port())
    r = run_cli(["-c", str(conf)])
    assert r.returncode == 1
    assert re.search(r"conf\.yaml:4:\d+:", r.stderr), r.stderr


def test_start_port_in_use_exits_1(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        conf = good_conf(tmp_path, port=s.getsockname()[1])
        r = run_cli(["-c", str(conf)])
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert r.stderr.strip(), "a start error must say why"


def test_no_config_no_listen_is_an_error(tmp_path):
    r = run_cli([], cwd=str(tmp_path))
    assert r.returncode == 1
    assert r.stderr.strip()


def test_quick_start_echo(gateway, tmp_path):
    g = gateway(ECHO, start=False)
    g.start(args=["--listen", "127.0.0.1:%d" % g.port, "--script", g.script_path])
    g.wait_log(r"listening on ws://127\.0\.0\.1:%d/" % g.port, 1)

    async def go():
        async with ws_connect("ws://127.0.0.1:%d/" % g.port) as ws:
            await ws.send("hello quick start")
            assert await ws_recv(ws) == "hello quick start"
            await ws.send(b"\x00\x01binary")
            assert await ws_recv(ws) == b"\x00\x01binary"
    run(go())
    assert g.stop() == 0


def test_quick_start_with_path(gateway, raw):
    g = gateway(ECHO, start=False)
    g.start(args=["--listen", "127.0.0.1:%d" % g.port, "--script", g.script_path,
                  "--path", "/ws"])
    g.wait_log(r"listening on ws://127\.0\.0\.1:%d/ws" % g.port, 1)
    c = raw(g.port, "/ws")
    c.send_text("on /ws")
    assert c.recv_text() == "on /ws"
    from conftest import http_raw, handshake_request
    r = http_raw(g.port, handshake_request("/", g.port))
    assert r.status == 404, r


def test_flags_override_config(gateway):
    """--listen replaces the file's first listener, --script the file's script."""
    g = gateway(ECHO, start=False)
    other = os.path.join(g.dir, "other.lua")
    write(other, lua("""
        function on_message(conn, data) conn:send("other:" .. data) end
        """))
    new_port = free_port()
    g.start(args=["-c", g.conf_path, "--listen", "127.0.0.1:%d" % new_port, "--script", other])
    g.wait_log(r"listening on ws://127\.0\.0\.1:%d/" % new_port, 1)

    async def go():
        async with ws_connect("ws://127.0.0.1:%d/" % new_port) as ws:
            await ws.send("x")
            assert await ws_recv(ws) == "other:x"
    run(go())
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", g.port), timeout=2).close()


def test_help_lists_every_flag():
    r = run_cli(["--help"])
    assert r.returncode == 0, r
    out = r.stdout + r.stderr
    for flag in ["-c", "-t", "--listen", "--path", "--script", "-h", "--help", "-V", "--version"]:
        assert re.search(r"(^|[\s,\[|])%s\b" % re.escape(flag), out), (flag, out)
    r2 = run_cli(["-h"])
    assert r2.returncode == 0
    assert "--listen" in r2.stdout + r2.stderr


def test_version():
    for flag in ("-V", "--version"):
        r = run_cli([flag])
        assert r.returncode == 0, r
        assert re.search(r"\d+\.\d+\.\d+", r.stdout + r.stderr), r


def test_unknown_flag_is_an_error():
    r = run_cli(["--no-such-flag"])
    assert r.returncode != 0
    assert r.stderr.strip()
