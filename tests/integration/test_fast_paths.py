"""The fast paths (src/lws/lwsc.c): each one is reported at start, in the log
and in /health.  moongate's own reader takes plain ws:// connections
whatever way libwebsockets was built (tools/lws-check.sh runs this file on
lws 4.3 built Debian's way, with -Bsymbolic-functions and with LTO).  With
the couplings off (MOONGATE_LWS_COUPLINGS=off, which is what a libwebsockets
version that was never checked gets), plain ws:// falls back to lws's reader
and every path says so; io.require_fast_paths turns that into a start-up
error."""

import re

from conftest import OP_PING, OP_TEXT, encode_frame

ECHO = """
function on_message(conn, data, kind) conn:send(data, kind) end
"""

PATHS = {"reader", "epoll", "io_uring", "timers", "memory", "logs"}


def logged_states(g):
    """{path: state} from the 'fast path NAME: STATE' lines of the start."""
    out = {}
    for line in g.find_logs(r"fast path "):
        m = re.search(r"fast path (\w+): (on|OFF|unused)", line)
        assert m, line
        out[m.group(1)] = m.group(2).lower()
    return out


def pongs_for_pings_in_one_write(g, raw):
    """Four pings in one TCP write, then a text: how many pongs come back
    before the echo (moongate's reader answers each; lws's only the
    first)."""
    c = raw(g.port)
    c.send_raw(b"".join(encode_frame(OP_PING, p) for p in (b"a", b"b", b"c", b"d")) +
               encode_frame(OP_TEXT, b"end"))
    assert c.recv_message(5) == ("text", "end")
    got = len(c.pongs)
    c.close()
    return got


def test_every_path_reported_and_the_reader_engaged(gateway, raw):
    g = gateway(ECHO, admin=True, reader="moongate")
    h = g.health()
    assert re.match(r"^4\.\d+\.\d+", h["libwebsockets"]), h
    states = h["fast_paths"]
    assert set(states) == PATHS
    assert logged_states(g) == states
    # These hold on every lws build: they rest on libc's poll() and on lws's
    # public API, never on lws calling its own exports through its PLT.
    assert states["reader"] == "on" and states["epoll"] == "on" and states["memory"] == "on"
    # timers and logs: off where lws binds its own calls (-Bsymbolic-functions,
    # LTO), both together, and then they say why.
    assert states["timers"] in ("on", "off") and states["logs"] == states["timers"]
    for path in ("timers", "logs"):
        if states[path] == "off":
            assert g.find_logs(r"WARN .*fast path %s: OFF: .*Bsymbolic" % path)
    assert states["io_uring"] in ("on", "off")
    # ... and it is moongate's reader that answers.
    assert pongs_for_pings_in_one_write(g, raw) == 4


def test_couplings_off_fall_back_and_say_so(gateway, raw):
    g = gateway(ECHO, admin=True, reader="moongate", env={"MOONGATE_LWS_COUPLINGS": "off"})
    states = g.health()["fast_paths"]
    assert states["reader"] == "off" and states["timers"] == "off" and states["memory"] == "off"
    assert states["logs"] == "off"
    assert states["io_uring"] == "unused"
    assert logged_states(g) == states
    g.wait_log(r"WARN .*fast path reader: OFF: MOONGATE_LWS_COUPLINGS=off; libwebsockets parses")
    # Served all the same, by lws's reader.
    c = raw(g.port)
    c.send_text("still here")
    assert c.recv_message(5) == ("text", "still here")


def test_require_fast_paths_refuses_a_path_off(gateway):
    g = gateway(ECHO, {"io": {"require_fast_paths": True}}, start=False, reader="moongate",
                env={"MOONGATE_LWS_COUPLINGS": "off"})
    g.start(wait_ready=False)
    assert g.wait_exit(10) != 0
    g.wait_log(r"ERROR .*fast path reader: OFF", 1)
    g.wait_log(r"fast paths are off and io\.require_fast_paths is set", 1)
    assert not g.find_logs(r"moongate ready")


def test_require_fast_paths_starts_when_every_path_holds(gateway):
    probe = gateway(ECHO, {"io": {"uring": "off"}}, admin=True, reader="moongate")
    states = probe.health()["fast_paths"]
    probe.stop()
    assert states["io_uring"] == "unused"
    g = gateway(ECHO, {"io": {"uring": "off", "require_fast_paths": True}}, start=False,
                reader="moongate")
    g.start(wait_ready=False)
    if "off" in states.values():  # this lws build bypasses one (timers): refused
        assert g.wait_exit(10) != 0
        g.wait_log(r"io\.require_fast_paths is set", 1)
    else:
        g.wait_log(r"moongate ready", 10)
        assert g.alive()


def test_a_listener_without_moongate_reader_leaves_the_reader_unused(gateway):
    g = gateway(ECHO, admin=True, reader="libwebsockets")
    states = g.health()["fast_paths"]
    assert states["reader"] == "unused" and states["io_uring"] == "unused"
    g.wait_log(r"fast path reader: unused \(no listener with reader: moongate\)", 1)
