"""Log output: text lines carry the connection id, JSON lines are valid JSON."""

import json
import re

from conftest import lua, line_of

SCRIPT = lua("""
function on_message(conn, data, kind)
  if data == "boom" then
    error("json log test failure")   -- ERR_LINE
  end
  gw.log.warn("from lua: " .. data)
  conn:send(data, kind)
end
""")

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARN|ERROR) +\S")


def test_text_format(gateway, raw):
    g = gateway(SCRIPT)
    c = raw(g.port)
    c.send_text("boom")
    c.send_text("hello")
    assert c.recv_text() == "hello"
    m = g.wait_log(r"\[conn (\d+)\] lua error in on_message: \S*app\.lua:%d: "
                   % line_of(SCRIPT, "ERR_LINE"), 5)
    g.wait_log(r"from lua: hello", 5)
    ready = g.find_logs(r"moongate ready")[0]
    assert TEXT_LINE.match(ready), ready
    assert "[conn" not in ready
    err = g.find_logs(r"lua error in on_message")[0]
    assert TEXT_LINE.match(err), err
    assert re.search(r"Z ERROR +\[conn \d+\] lua error", err), err


def test_json_format(gateway, raw):
    g = gateway(SCRIPT, {"log": {"format": "json"}})
    c = raw(g.port)
    c.send_text("boom")
    c.send_text("hello")
    assert c.recv_text() == "hello"
    g.wait_log(r"lua error in on_message", 5)
    g.wait_log(r"from lua: hello", 5)
    c.send_close(1000)
    c.wait_close(5, reply=False)
    assert g.stop() == 0
    recs = []
    for line in g.log_lines:
        try:
            recs.append(json.loads(line))
        except ValueError:
            raise AssertionError("not a JSON log line: %r" % line)
    for r in recs:
        assert set(r) >= {"ts", "level", "msg"}, r
        assert r["level"] in ("debug", "info", "warn", "error"), r
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", r["ts"]), r
    ready = [r for r in recs if r["msg"].startswith("moongate ready")]
    assert ready and "conn" not in ready[0], ready
    err = [r for r in recs if r["msg"].startswith("lua error in on_message")]
    assert err, recs
    assert isinstance(err[0].get("conn"), int), err[0]
    assert err[0]["level"] == "error"
    assert "app.lua:%d:" % line_of(SCRIPT, "ERR_LINE") in err[0]["msg"]
    assert any("stack traceback:" in r["msg"] for r in recs)
    warn = [r for r in recs if "from lua: hello" in r["msg"]]
    assert warn and warn[0]["level"] == "warn", warn


LEVEL_SCRIPT = """
function on_message(conn, data, kind)
  gw.log.debug("DEBUG-LINE " .. data)
  gw.log.info("INFO-LINE " .. data)
  gw.log.warn("WARN-LINE " .. data)
  gw.log.error("ERROR-LINE " .. data)
  conn:send(data, kind)
end
"""


def connect_when_listening(port, timeout=10):
    """The ready line may be filtered out at level warn: poll the port instead
    (bounded: at most `timeout` seconds, 20 tries a second)."""
    import time
    from conftest import RawWS
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout * 20) + 1):
        try:
            return RawWS(port)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    raise AssertionError("gateway not listening after %ss" % timeout)


def test_level_warn_filters_info(gateway):
    g = gateway(LEVEL_SCRIPT, {"log": {"level": "warn"}}, start=False)
    g.start(wait_ready=False)
    c = connect_when_listening(g.port)
    try:
        c.send_text("x1")
        assert c.recv_text() == "x1"
        g.wait_log(r"WARN-LINE x1", 5)
        g.wait_log(r"ERROR-LINE x1", 5)
        assert not g.find_logs(r"INFO-LINE|DEBUG-LINE")
        assert not g.find_logs(r" (INFO|DEBUG) ")
    finally:
        c.close()


def test_level_debug_shows_everything(gateway, raw):
    g = gateway(LEVEL_SCRIPT, {"log": {"level": "debug"}})
    c = raw(g.port)
    c.send_text("x2")
    assert c.recv_text() == "x2"
    for name in ("DEBUG", "INFO", "WARN", "ERROR"):
        line = g.wait_log(r"%s-LINE x2" % name, 5).string
        assert re.search(r"Z %s +" % name, line), line
