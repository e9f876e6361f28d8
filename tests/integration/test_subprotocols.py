"""Subprotocols, several paths per listener, the origin allow-list and long
extension offers (issue 20), with python3-websockets and raw sockets."""

import socket

import pytest
import websockets

from conftest import (_read_http_response, accept_for, handshake_request, http_raw, make_key,
                      plain_get, run, ws_connect, ws_recv)

SCRIPT = """
function on_handshake(req)
  if req.query == "pick-last" then
    return true, {protocol = req.protocols[#req.protocols]}
  end
  if req.query == "not-offered" then return true, {protocol = "nope"} end
  if req.query == "show" then
    return false, 403, req.path .. "|" .. #req.protocols .. "|" .. table.concat(req.protocols, ",")
  end
  return true
end

function on_message(conn, data, kind)
  conn:send(tostring(conn.protocol) .. "|" .. conn.path .. "|" ..
            tostring(conn:header("sec-websocket-extensions")), kind)
end
"""

CONFIG = {"listen": [{"path": ["/ws", "/push", "/api/*"], "protocols": ["mqtt", "stomp"]}],
          "handshake": {"origins": ["https://app.example.com", "https://*.example.org"]}}


@pytest.fixture
def gw(gateway):
    g = gateway(SCRIPT, start=False)
    cfg = dict(g.config)
    cfg["listen"] = [dict(g.config["listen"][0], **CONFIG["listen"][0])]
    cfg["handshake"] = CONFIG["handshake"]
    g.write_config(cfg)
    g.start()
    return g


def upgrade(port, path="/ws", extra=None):
    """A raw upgrade: (response, key)."""
    key = make_key()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(handshake_request(path, port, key=key, extra=extra))
        return _read_http_response(s, bytearray(), 5), key
    finally:
        s.close()


async def echo(url, **kw):
    async with ws_connect(url, **kw) as ws:
        await ws.send("x")
        return ws.subprotocol, await ws_recv(ws)


# ---- subprotocols ----

def test_script_chooses(gw):
    sub, got = run(echo(gw.url_for("/ws?pick-last"), subprotocols=["chat", "superchat"]))
    assert sub == "superchat"
    assert got.startswith("superchat|/ws|")


def test_static_list_chooses_in_client_order(gw):
    sub, got = run(echo(gw.url_for("/ws"), subprotocols=["chat", "stomp", "mqtt"]))
    assert sub == "stomp"
    assert got.startswith("stomp|")


def test_none_chosen_gets_101_without_header(gw):
    r, key = upgrade(gw.port, extra={"Sec-WebSocket-Protocol": "chat, superchat"})
    assert r.status == 101, r
    assert r.headers["sec-websocket-accept"] == accept_for(key)
    assert "sec-websocket-protocol" not in r.headers, r.headers
    # a client that allows no subprotocol in the answer still connects
    sub, got = run(echo(gw.url_for("/ws")))
    assert sub is None and got.startswith("nil|/ws|")


def test_exact_101_headers_with_a_choice(gw):
    r, key = upgrade(gw.port, "/ws?pick-last", extra={"Sec-WebSocket-Protocol": "a.b, c-d"})
    assert r.status == 101, r
    assert r.headers["sec-websocket-protocol"] == "c-d"
    assert r.headers["sec-websocket-accept"] == accept_for(key)
    assert "sec-websocket-extensions" not in r.headers


def test_client_rejects_when_offering_none(gw):
    """The script chooses nothing when nothing is offered: a plain connect works."""
    r, _ = upgrade(gw.port, "/ws?pick-last")
    assert r.status == 101 and "sec-websocket-protocol" not in r.headers, r


def test_req_protocols_in_order(gw):
    r = http_raw(gw.port, handshake_request("/ws?show", gw.port,
                                            extra={"Sec-WebSocket-Protocol": "b, a ,c"}))
    assert r.status == 403 and r.body == b"/ws|3|b,a,c", r
    r = http_raw(gw.port, handshake_request("/ws?show", gw.port))
    assert r.status == 403 and r.body == b"/ws|0|", r


def test_chosen_not_offered_is_500(gw):
    mark = gw.mark()
    r, _ = upgrade(gw.port, "/ws?not-offered", extra={"Sec-WebSocket-Protocol": "chat"})
    assert r.status == 500, r
    gw.wait_log(r"chose the subprotocol 'nope', which the client .* did not offer", since=mark)
    with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
        run(echo(gw.url_for("/ws?not-offered"), subprotocols=["chat"]))
    assert e.value.status_code == 500


def test_protocol_list_lws_cannot_take_is_400(gw):
    mark = gw.mark()
    long_list = ", ".join("proto%03d" % i for i in range(30))  # 298 bytes
    assert len(long_list) > 255
    r, _ = upgrade(gw.port, extra={"Sec-WebSocket-Protocol": long_list})
    assert r.status == 400 and b"longer than 126 bytes" in r.body, r
    gw.wait_log(r"refused: 400 Sec-WebSocket-Protocol: the list is longer", since=mark)
    r, _ = upgrade(gw.port, extra={"Sec-WebSocket-Protocol": ("x," * 64)[:127]})
    assert r.status == 400, r
    r, _ = upgrade(gw.port, extra={"Sec-WebSocket-Protocol": "a b"})
    assert r.status == 400, r
    r, _ = upgrade(gw.port, extra={"Sec-WebSocket-Protocol": "13, chat"})
    assert r.status == 400 and b"libwebsockets" in r.body, r


# ---- extension offers ----

def test_long_extension_offer_gets_101_without_extension(gw):
    offer = ", ".join("permessage-deflate; client_no_context_takeover; server_max_window_bits=%d"
                      % b for b in range(9, 13)) + ", x-webkit-deflate-frame"
    assert len(offer) > 255
    mark = gw.mark()
    r, key = upgrade(gw.port, extra={"Sec-WebSocket-Extensions": offer})
    assert r.status == 101, r
    assert r.headers["sec-websocket-accept"] == accept_for(key)
    assert "sec-websocket-extensions" not in r.headers
    gw.wait_log(r"extension offer of %d bytes ignored" % len(offer), since=mark)
    # the script still sees the real offer
    sub, got = run(echo(gw.url_for("/ws"), extra_headers={"Sec-WebSocket-Extensions": offer},
                        compression=None))
    assert got == "nil|/ws|" + offer


def test_short_extension_offer_is_declined(gw):
    r, _ = upgrade(gw.port, extra={"Sec-WebSocket-Extensions":
                                   "permessage-deflate; client_max_window_bits"})
    assert r.status == 101 and "sec-websocket-extensions" not in r.headers, r
    # python-websockets offers permessage-deflate by default and connects without it
    sub, got = run(echo(gw.url_for("/ws")))
    assert got == "nil|/ws|permessage-deflate; client_max_window_bits"


# ---- paths ----

@pytest.mark.parametrize("path", ["/ws", "/push", "/api/", "/api/v1/x"])
def test_listed_paths_upgrade(gw, path):
    sub, got = run(echo(gw.url_for(path + "?q=1")))
    assert got.startswith("nil|%s|" % path)


@pytest.mark.parametrize("path", ["/", "/api", "/wsx", "/push/", "/other"])
def test_other_paths_404(gw, path):
    r, _ = upgrade(gw.port, path)
    assert r.status == 404, r


@pytest.mark.parametrize("path", ["/ws", "/push", "/api/x"])
def test_plain_get_on_ws_path_400(gw, path):
    r = http_raw(gw.port, plain_get(path, gw.port))
    assert r.status == 400, r
    r = http_raw(gw.port, plain_get("/elsewhere", gw.port))
    assert r.status == 404, r


# ---- origins ----

@pytest.mark.parametrize("origin", ["https://app.example.com", "HTTPS://App.Example.com:443",
                                    "https://a.example.org", "https://a.b.example.org"])
def test_origin_allowed(gw, origin):
    r, _ = upgrade(gw.port, extra={"Origin": origin})
    assert r.status == 101, r


@pytest.mark.parametrize("origin", ["https://example.org", "http://app.example.com",
                                    "https://app.example.com:8443", "https://evil.com", "null"])
def test_origin_refused(gw, origin):
    mark = gw.mark()
    r, _ = upgrade(gw.port, extra={"Origin": origin})
    assert r.status == 403 and r.body == b"origin not allowed\n", r
    gw.wait_log(r"refused: 403 origin not allowed", since=mark)


def test_no_origin_passes(gw):
    r, _ = upgrade(gw.port)
    assert r.status == 101, r


def test_origins_follow_reload(gw):
    r, _ = upgrade(gw.port, extra={"Origin": "https://evil.com"})
    assert r.status == 403
    cfg = dict(gw.config)
    cfg["handshake"] = {"origins": ["https://evil.com"]}
    gw.write_config(cfg)
    assert gw.reload()[0] == "ok"
    r, _ = upgrade(gw.port, extra={"Origin": "https://evil.com"})
    assert r.status == 101, r
    r, _ = upgrade(gw.port, extra={"Origin": "https://app.example.com"})
    assert r.status == 403, r
    # listeners are read at start: the paths still work after the reload
    sub, got = run(echo(gw.url_for("/api/z"), subprotocols=["mqtt"]))
    assert sub == "mqtt" and got.startswith("mqtt|/api/z|")


def test_bad_path_entry_is_a_config_error(gateway):
    g = gateway(SCRIPT, start=False)
    cfg = dict(g.config)
    cfg["listen"] = [dict(g.config["listen"][0], path=["/ws", "/a*b"])]
    g.write_config(cfg)
    g.start(wait_ready=False)
    assert g.wait_exit(10) != 0
    assert g.find_logs(r"conf\.yaml:\d+:\d+: listen\[0\]\.path\[1\]: '\*' may only end a path")
