"""examples/monitoring: every metric the alert rules and the Grafana dashboard
name is one moongate exports, and the files are valid.

The gateway runs with `workers: 2`, so the per-worker series
(moongate_worker_*) are exported too; every other series is the same
function's output with or without workers.  Broker and cluster series are
exported whether or not a `broker:` / `cluster:` section is configured (0
without one: metrics.c renders them unconditionally), so no RabbitMQ is
needed to see their names; the test checks that they are there with 0.

The PromQL is read conservatively: string literals, label matchers {...},
ranges [...], grouping clauses (by/without/on/ignoring/group_left/
group_right (...)), function calls and keywords are removed, and every
identifier left is a metric name.  `up` is Prometheus's own series.
"""
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT

MON = os.path.join(ROOT, "examples", "monitoring")
ALERTS = os.path.join(MON, "alerts.yml")
ALERT_TESTS = os.path.join(MON, "alerts.test.yml")
DASHBOARD = os.path.join(MON, "dashboard.json")

PROMETHEUS_OWN = {"up"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "offset", "bool", "atan2", "inf", "nan"}
# Grafana's variables, replaced by something PromQL parses
GRAFANA_VARS = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m",
                "$job": "moongate", "$instance": ".*"}

APP = """
function on_message(conn, data) conn:send(data) end
"""


def alert_exprs():
    doc = yaml.safe_load(open(ALERTS))
    return [(r["alert"], r["expr"]) for g in doc["groups"] for r in g["rules"]]


def dashboard_exprs():
    dash = json.load(open(DASHBOARD))
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((p["title"], t["expr"]))
            walk(p.get("panels", []))
    walk(dash["panels"])
    for v in dash["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        m = re.match(r"^label_values\((.*),\s*[a-zA-Z_]\w*\)$", q or "")
        if m:                          # label_values(SELECTOR, label): the selector
            out.append(("variable " + v["name"], m.group(1)))
    return out


def grafana_to_promql(expr):
    for k in sorted(GRAFANA_VARS, key=len, reverse=True):
        expr = expr.replace(k, GRAFANA_VARS[k])
    return expr


def metric_names(expr):
    """Metric names in a PromQL expression (see the module docstring)."""
    e = grafana_to_promql(expr)
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', e)    # strings
    for _ in range(10):                                                # nested {...}
        e2 = re.sub(r"\{[^{}]*\}", " ", e)
        if e2 == e:
            break
        e = e2
    e = re.sub(r"\[[^\]]*\]", " ", e)                                  # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+\S+", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def test_the_extractor_reads_promql_conservatively():
    assert metric_names('sum by (instance, reason) (rate(moongate_evictions_total'
                        '{job="$job", reason=~"slow.*"}[$__rate_interval]))') == \
        {"moongate_evictions_total"}
    assert metric_names("moongate_broker_up == 0 and on(instance, job) "
                        "moongate_broker_connects_total > 0") == \
        {"moongate_broker_up", "moongate_broker_connects_total"}
    assert metric_names("moongate_resident_bytes > 4 * 1024 * 1e9 offset 5m") == \
        {"moongate_resident_bytes"}
    assert metric_names('absent(moongate_connections{job="moongate"})') == \
        {"moongate_connections"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{name: type} of every metric on /metrics of a gateway with workers: 2,
    plus every sample name; and the parsed samples."""
    from conftest import Gateway
    g = Gateway(tmp_path_factory.mktemp("mon"), APP, {"workers": 2}, admin=True)
    g.start()
    try:
        text = g.metrics_text()
    finally:
        g.stop()
    types, samples = {}, {}
    for line in text.splitlines():
        m = re.match(r"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$", line)
        if m:
            types[m.group(1)] = m.group(2)
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if m:
            samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
            types.setdefault(m.group(1), "untyped")
    return types, samples


def unknown(names, types):
    """Names neither exported nor Prometheus's own; a histogram's or summary's
    _bucket/_sum/_count series count as its base name's."""
    bad = set()
    for n in names:
        if n in types or n in PROMETHEUS_OWN:
            continue
        base = re.sub(r"_(bucket|sum|count)$", "", n)
        if base != n and types.get(base) in ("histogram", "summary"):
            continue
        bad.add(n)
    return bad


def test_every_metric_the_alert_rules_name_is_exported(exported):
    types, samples = exported
    exprs = alert_exprs()
    assert len(exprs) >= 15
    used = set()
    for alert, expr in exprs:
        names = metric_names(expr)
        assert names, "no metric found in %s: %s" % (alert, expr)
        bad = unknown(names, types)
        assert not bad, "%s names metrics moongate does not export: %s" % (alert, sorted(bad))
        used |= names
    # the areas the rules must cover
    for must in ("up", "moongate_connections", "moongate_sendq_drops_total",
                 "moongate_evictions_total", "moongate_lua_errors_total",
                 "moongate_lua_aborts_total", "moongate_broker_up",
                 "moongate_reload_failures_total", "moongate_resident_bytes"):
        assert must in used, must


def test_every_metric_the_dashboard_names_is_exported(exported):
    types, _ = exported
    exprs = dashboard_exprs()
    assert len(exprs) >= 30
    used = set()
    for title, expr in exprs:
        names = metric_names(expr)
        assert names, "no metric found in panel %r: %s" % (title, expr)
        bad = unknown(names, types)
        assert not bad, "panel %r names metrics moongate does not export: %s" % (title, sorted(bad))
        used |= names
    for must in ("moongate_connections", "moongate_messages_in_total",
                 "moongate_messages_out_total", "moongate_bytes_in_total",
                 "moongate_bytes_out_total", "moongate_sendq_drops_total",
                 "moongate_hook_seconds_total", "moongate_broker_up",
                 "moongate_reloads_total", "moongate_worker_connections"):
        assert must in used, must


def test_broker_and_worker_series_are_exported_without_a_broker(exported):
    types, samples = exported
    assert samples["moongate_broker_up"] == 0
    assert samples["moongate_broker_connects_total"] == 0
    assert samples['moongate_broker_settled_total{how="ack"}'] == 0
    assert samples["moongate_workers"] == 2
    assert samples['moongate_worker_up{worker="1"}'] == 1
    assert samples['moongate_worker_up{worker="2"}'] == 1


def test_the_dashboard_is_importable_json():
    dash = json.load(open(DASHBOARD))
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 30
    ids = []

    def walk(panels):
        for p in panels:
            ids.append(p["id"])
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
            if p["type"] != "row":
                assert p["targets"] and p["datasource"]["uid"] == "${datasource}", p["title"]
            walk(p.get("panels", []))
    walk(dash["panels"])
    assert len(ids) == len(set(ids)), "panel ids repeat"
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names == ["datasource", "job", "instance"]


def test_the_alert_rules_have_the_fields_alertmanager_needs():
    for g in yaml.safe_load(open(ALERTS))["groups"]:
        assert g["name"].startswith("moongate.")
        for r in g["rules"]:
            assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r
            assert r["alert"].startswith("Moongate"), r["alert"]
            assert r["labels"]["severity"] in ("critical", "warning", "info"), r["alert"]
            assert r["annotations"]["summary"], r["alert"]


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(not PROMTOOL, reason="promtool missing (tools/deps.sh --test installs "
                                         "Debian's prometheus)")
def test_promtool_checks_and_unit_tests_the_rules(tmp_path):
    r = subprocess.run([PROMTOOL, "check", "rules", ALERTS], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: %d rules found" % len(alert_exprs()) in r.stdout, r.stdout
    r = subprocess.run([PROMTOOL, "test", "rules", os.path.basename(ALERT_TESTS)], cwd=MON,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    # the dashboard's expressions parse as PromQL (as recording rules)
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": "dashboard:expr_%d" % i, "expr": grafana_to_promql(e)}
        for i, (_, e) in enumerate(dashboard_exprs())]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    r = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
