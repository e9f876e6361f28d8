"""Static files on plain GET next to the WebSocket path."""

import os

import pytest

from conftest import handshake_request, http_raw, plain_get

SCRIPT = """
function on_message(conn, data, kind)
  conn:send(data, kind)
end
"""

INDEX = "<!doctype html><h1>moongate static test</h1>\n"
SECRET = "top secret, outside the static root"


@pytest.fixture
def gw(gateway):
    g = gateway(SCRIPT, {"static": {"root": "static", "index": "index.html"}},
                path="/ws", start=False)
    root = os.path.join(g.dir, "static")
    os.makedirs(os.path.join(root, "sub"))
    with open(os.path.join(root, "index.html"), "w") as f:
        f.write(INDEX)
    with open(os.path.join(root, "sub", "a.txt"), "w") as f:
        f.write("file a\n")
    with open(os.path.join(g.dir, "secret.txt"), "w") as f:
        f.write(SECRET)
    g.start()
    return g


def test_index(gw):
    r = http_raw(gw.port, plain_get("/", gw.port))
    assert r.status == 200, r
    assert r.body.decode() == INDEX
    assert "text/html" in r.headers.get("content-type", ""), r.headers
    r = http_raw(gw.port, plain_get("/index.html", gw.port))
    assert r.status == 200 and r.body.decode() == INDEX


def test_file_in_subfolder(gw):
    r = http_raw(gw.port, plain_get("/sub/a.txt", gw.port))
    assert r.status == 200, r
    assert r.body == b"file a\n"


def test_missing_file_404(gw):
    r = http_raw(gw.port, plain_get("/missing", gw.port))
    assert r.status == 404, r
    r = http_raw(gw.port, plain_get("/sub/nope.txt", gw.port))
    assert r.status == 404, r


def test_ws_path_plain_get_400(gw):
    r = http_raw(gw.port, plain_get("/ws", gw.port))
    assert r.status == 400, r


def test_ws_path_upgrade_works(gw, raw):
    c = raw(gw.port, "/ws")
    c.send_text("static and ws")
    assert c.recv_text() == "static and ws"


def test_upgrade_on_static_path_404(gw):
    r = http_raw(gw.port, handshake_request("/", gw.port))
    assert r.status == 404, r


@pytest.mark.parametrize("path", ["/../secret.txt", "/sub/../../secret.txt",
                                  "/%2e%2e/secret.txt", "/sub/%2e%2e/%2e%2e/secret.txt"])
def test_no_path_traversal(gw, path):
    r = http_raw(gw.port, plain_get(path, gw.port))
    assert SECRET.encode() not in r.body, (path, r)
    assert r.status != 200 or r.body.decode() == INDEX, (path, r)
