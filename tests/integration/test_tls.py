"""wss:// listener with a certificate from the config (self-signed in tests)."""

import os
import re
import socket
import ssl
import struct
import time

import pytest

from conftest import (accept_for, handshake_request, http_raw, make_key, run, run_cli, ws_connect,
                      ws_recv)
from conftest import make_cert

SCRIPT = """
function on_message(conn, data, kind)
  conn:send("tls:" .. data, kind)
end
"""




@pytest.fixture
def tls_gw(gateway):
    g = gateway(SCRIPT, start=False)
    certs = os.path.join(g.dir, "certs")
    os.makedirs(certs)
    crt, key = make_cert(certs)
    g.update_config({"listen": [{"host": "127.0.0.1", "port": g.port, "path": "/",
                                 "tls": {"cert": "certs/server.crt", "key": "certs/server.key"}}]})
    g.start()
    g.crt = crt
    return g


def test_wss_echo(tls_gw):
    g = tls_gw
    g.wait_log(r"listening on wss://127\.0\.0\.1:%d/" % g.port, 1)
    ctx = ssl.create_default_context(cafile=g.crt)

    async def go():
        async with ws_connect("wss://127.0.0.1:%d/" % g.port, ssl=ctx) as ws:
            await ws.send("secure")
            assert await ws_recv(ws) == "tls:secure"
            await ws.send(b"\x01\x02")
            assert await ws_recv(ws) == b"tls:\x01\x02"
    run(go())


def test_plain_ws_on_tls_port_fails(tls_gw):
    g = tls_gw
    try:
        r = http_raw(g.port, handshake_request("/", g.port), timeout=3)
    except (EOFError, ConnectionError, TimeoutError):
        r = None
    assert r is None or r.status != 101, r
    # and the TLS listener still works afterwards
    ctx = ssl.create_default_context(cafile=g.crt)

    async def go():
        async with ws_connect("wss://127.0.0.1:%d/" % g.port, ssl=ctx) as ws:
            await ws.send("again")
            assert await ws_recv(ws) == "tls:again"
    run(go())


def test_missing_key_file_is_a_config_error(tmp_path):
    with open(tmp_path / "app.lua", "w") as f:
        f.write(SCRIPT)
    crt, key = make_cert(str(tmp_path))
    conf = tmp_path / "conf.yaml"
    with open(conf, "w") as f:
        f.write("listen:\n  - port: 8443\n    tls:\n      cert: server.crt\n"
                "      key: missing.key\nscript: app.lua\n")
    r = run_cli(["-t", "-c", str(conf)])
    assert r.returncode == 1
    assert re.search(r"conf\.yaml:5:\d+:", r.stderr), r.stderr


def test_wss_header_over_max_message_size_closes_1009_at_once(tls_gw):
    """Over TLS (libwebsockets' reader) a frame header announcing more than
    max_message_size (1 MiB by default), with no payload after it, gets the
    1009 close frame at once: not when the payload starts."""
    g = tls_gw
    ctx = ssl.create_default_context(cafile=g.crt)
    with socket.create_connection(("127.0.0.1", g.port), timeout=5) as tcp:
        with ctx.wrap_socket(tcp, server_hostname="127.0.0.1") as s:
            key = make_key()
            s.sendall(handshake_request("/", g.port, key=key))
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                assert chunk, buf
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 101") and accept_for(key).encode() in head, head
            s.sendall(struct.pack("!BBQ", 0x82, 0x80 | 127, 2 << 20) + b"\x01\x02\x03\x04")
            deadline = time.monotonic() + 3
            while len(buf) < 4 and time.monotonic() < deadline:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            assert len(buf) >= 4 and buf[0] == 0x88, buf
            assert struct.unpack("!H", buf[2:4])[0] == 1009, buf
