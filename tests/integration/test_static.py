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


@pytest.fixture
def linked(gateway):
    """A static root holding a symlink to a file outside it, one to a file
    inside it, a FIFO, and a folder without an index file."""
    def make(follow=None):
        cfg = {"static": {"root": "static"}}
        if follow is not None:
            cfg["static"]["follow_symlinks"] = follow
        g = gateway(SCRIPT, cfg, path="/ws", start=False)
        root = os.path.join(g.dir, "static")
        os.makedirs(os.path.join(root, "empty"))
        with open(os.path.join(root, "inside.txt"), "w") as f:
            f.write("inside\n")
        with open(os.path.join(g.dir, "secret.txt"), "w") as f:
            f.write(SECRET)
        os.symlink(os.path.join(g.dir, "secret.txt"), os.path.join(root, "out.txt"))
        os.symlink("inside.txt", os.path.join(root, "alias.txt"))
        os.symlink(g.dir, os.path.join(root, "updir"))
        os.mkfifo(os.path.join(root, "pipe"))
        g.start()
        return g
    return make


def test_symlink_out_of_the_root_is_not_served(linked):
    g = linked()
    for path in ("/out.txt", "/updir/secret.txt"):
        r = http_raw(g.port, plain_get(path, g.port))
        assert r.status == 404 and SECRET.encode() not in r.body, (path, r)
    r = http_raw(g.port, plain_get("/alias.txt", g.port))   # a link inside the root is fine
    assert r.status == 200 and r.body == b"inside\n", r


def test_follow_symlinks_serves_them(linked):
    g = linked(follow=True)
    r = http_raw(g.port, plain_get("/out.txt", g.port))
    assert r.status == 200 and r.body == SECRET.encode(), r


def test_fifo_and_folder_without_index(linked, raw):
    """A FIFO under the root is refused at once (opening it would block the
    event loop until a writer came); a folder without its index is 404."""
    g = linked()
    r = http_raw(g.port, plain_get("/pipe", g.port), timeout=3)
    assert r.status == 403, r
    r = http_raw(g.port, plain_get("/empty/", g.port), timeout=3)
    assert r.status == 404, r
    c = raw(g.port, "/ws")
    c.send_text("still serving")
    assert c.recv_text() == "still serving"
