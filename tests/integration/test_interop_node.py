"""Interop with node's `ws` (8.x, perMessageDeflate on) as the client: an
independent implementation of RFC 6455 and RFC 7692.  tests/interop/client.js
does the talking and prints one JSON line; these tests start the gateway,
run it and judge what it saw:

- compressed echo of text and binary, 0 B to 1 MiB, and 200 similar
  messages, on a listener with the defaults, one with context takeover, and
  wss://;
- subprotocol selection by on_handshake among the offered names;
- one broadcast to 1,000 compressed clients with four parameter sets: every
  client gets the exact payload, within a bound.

Needs node and npm (tools/deps.sh --test); `ws` is installed from
tests/interop/package-lock.json with npm ci when missing, under a lock.
"""

import fcntl
import json
import os
import resource
import shutil
import subprocess

import pytest

from conftest import make_cert, ROOT, Gateway, free_port, sanitizer_lines

INTEROP = os.path.join(ROOT, "tests", "interop")

SCRIPT = """
function on_handshake(req)
  -- choose graphql-transport-ws when offered; with ?last, the last offer
  if req.query == "last" then
    return true, {protocol = req.protocols[#req.protocols]}
  end
  for _, p in ipairs(req.protocols) do
    if p == "graphql-transport-ws" then return true, {protocol = p} end
  end
end

function on_connect(conn)
  conn:subscribe("t")
end

function on_message(conn, data, kind)
  if data == "?protocol" then
    conn:send(tostring(conn.protocol))
  elseif data:sub(1, 2) == "!B" then
    gw.broadcast(data:sub(3), nil, kind)
  else
    conn:send(data, kind)
  end
end
"""

CLIENTS = 1000


def ws_installed():
    with open(os.path.join(INTEROP, "package-lock.json")) as f:
        want = json.load(f)["packages"]["node_modules/ws"]["version"]
    try:
        with open(os.path.join(INTEROP, "node_modules", "ws", "package.json")) as f:
            have = json.load(f)["version"]
    except OSError:
        return False
    return have == want


@pytest.fixture(scope="module")
def node():
    """node, with ws installed in tests/interop (npm ci under a lock when
    missing or not the locked version)."""
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.fail("node and npm are needed: run tools/deps.sh --test")
    if not ws_installed():
        with open(os.path.join(INTEROP, "package.json")) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not ws_installed():
                subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                               cwd=INTEROP, check=True, timeout=300)
    assert ws_installed(), "ws not installed in tests/interop after npm ci"
    return shutil.which("node")




@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    """Listeners: default (compression with the defaults), takeover (context
    takeover allowed both ways), wss (the defaults, TLS)."""
    folder = tmp_path_factory.mktemp("interop-node")
    g = Gateway(folder / "gw", SCRIPT, {"heartbeat": {"interval": 0, "timeout": 0},
                                        "limits": {"max_connections": CLIENTS + 100}},
                reader="moongate")
    g.crt, _ = make_cert(g.dir)
    g.ports = {"default": g.port, "takeover": free_port(), "wss": free_port()}
    base = {"host": "127.0.0.1", "path": "/", "reader": "moongate"}
    g.update_config({"listen": [
        dict(base, port=g.ports["default"], compression={"enabled": True}),
        dict(base, port=g.ports["takeover"],
             compression={"enabled": True, "server_no_context_takeover": False,
                          "client_no_context_takeover": False}),
        dict(base, port=g.ports["wss"], compression={"enabled": True},
             tls={"cert": "server.crt", "key": "server.key"}),
    ]})
    try:
        g.start()
        yield g
        code = g.stop()
    finally:
        g.cleanup()
        print("---- gateway log, last 60 lines ----\n%s" % g.log_tail(60))
    assert code == 0, "gateway exit code %s" % code
    assert not sanitizer_lines(g.log_lines), "\n".join(sanitizer_lines(g.log_lines)[:20])


def url(gw, listener, query=""):
    scheme = "wss" if listener == "wss" else "ws"
    return "%s://127.0.0.1:%d/%s" % (scheme, gw.ports[listener], "?" + query if query else "")


def client(node, *args, timeout=90):
    """Run client.js; its JSON report (a dict)."""
    def room():  # this process may hold every connection of the broadcast
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = CLIENTS + 200
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    p = subprocess.run([node, os.path.join(INTEROP, "client.js")] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=timeout, preexec_fn=room)
    lines = p.stdout.strip().splitlines()
    assert lines, "client.js printed nothing (exit %d): %s" % (p.returncode, p.stderr[-2000:])
    out = json.loads(lines[-1])
    assert out.get("ok") and p.returncode == 0, (out, p.stderr[-2000:])
    return out


BOTH = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


@pytest.mark.parametrize("listener,answer", [("default", BOTH),
                                             ("takeover", "permessage-deflate"),
                                             ("wss", BOTH)])
def test_node_ws_compressed_echo(node, gw, listener, answer):
    """ws's default offer (`permessage-deflate; client_max_window_bits`) is
    accepted with the listener's parameters; echo of text and binary of 0 B
    to 1 MiB and of 200 similar messages comes back exact."""
    args = ["echo", url(gw, listener)] + ([gw.crt] if listener == "wss" else [])
    out = client(node, *args)
    assert out["negotiated"] == answer, out
    assert "binary:1048576" in out["checked"] and "200 similar" in out["checked"], out


@pytest.mark.parametrize("offered,query,want", [
    ("mqtt,graphql-transport-ws,stomp", "", "graphql-transport-ws"),
    ("mqtt,stomp", "last", "stomp"),
])
def test_node_ws_subprotocol_chosen_by_on_handshake(node, gw, offered, query, want):
    """on_handshake picks one of the offered names: ws sees it in the 101
    (ws.protocol) and the script in conn.protocol; compression is negotiated
    alongside."""
    out = client(node, "protocol", url(gw, "default", query), offered)
    assert out["protocol"] == want and out["seen"] == want, out
    assert out["negotiated"] == BOTH, out


def test_node_ws_no_subprotocol_chosen(node, gw):
    """Offered names none of which the script takes: the 101 carries no
    Sec-WebSocket-Protocol (RFC 6455 allows it) and ws itself fails the
    connection, as it does with any server that chooses none."""
    out = client(node, "protocol", url(gw, "default"), "mqtt,stomp")
    assert out.get("error") == "Server sent no subprotocol", out


def test_node_ws_broadcast_to_1000_compressed_clients(node, gw):
    """1,000 ws clients with perMessageDeflate (four parameter sets), one
    broadcast of a 16 KiB JSON-like text: every client gets it exact."""
    before = gw.mark()
    out = client(node, "broadcast", url(gw, "default"), CLIENTS, 16 * 1024, timeout=120)
    assert out["clients"] == CLIENTS and out["compressed"] == CLIENTS, out
    assert out["exact"] == CLIENTS, out
    assert out["answers"] == [BOTH, BOTH + "; server_max_window_bits=10",
                              BOTH + "; server_max_window_bits=9; client_max_window_bits=9",
                              BOTH + "; server_max_window_bits=12"], out
    # a generous bound on a shared machine: a lost message would hit it
    assert out["delivered_ms"] < 20000, out
    print("1,000 clients: opened in %d ms, broadcast delivered to all in %d ms"
          % (out["opened_ms"], out["delivered_ms"]))
    assert not gw.find_logs(r"ERROR", since=before), gw.log_tail(20)
