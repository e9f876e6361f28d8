#!/usr/bin/python3
"""compress_report.py — bench/compress.sh's JSON lines → markdown tables.

    compress_report.py RESULTS.jsonl

One table per scenario, one column per server; a cell is the median over the
rounds with (min–max) when there were several.  A round whose wsload reported
errors, mismatches or lost deliveries, or whose server did not stop cleanly, is
listed under the tables and left out of the medians.
"""
import json
import statistics
import sys

CHAT_ROWS = [
    ("deliveries/s", lambda w, r: w["deliveries_per_s"], "{:,.0f}"),
    ("wire bytes per message, client → server", lambda w, r: w["tx_wire_bytes"] / w["tx_msgs"], "{:.1f}"),
    ("wire bytes per delivery, server → client", lambda w, r: w["rx_wire_bytes"] / w["rx_msgs"], "{:.1f}"),
    ("payload bytes per message (uncompressed)", lambda w, r: w["rx_payload_bytes"] / w["rx_msgs"], "{:.1f}"),
    ("server CPU µs per delivery ↓", lambda w, r: 1e6 * w["server_cpu_s"] / w["window_deliveries"], "{:.2f}"),
    ("server CPU µs per message sent ↓", lambda w, r: 1e6 * w["server_cpu_s"] / max(w["window_deliveries"] / w["members"], 1), "{:.0f}"),
    ("fan-out latency p50, ms ↓", lambda w, r: w["p50_us"] / 1e3, "{:.2f}"),
    ("fan-out latency p99, ms ↓", lambda w, r: w["p99_us"] / 1e3, "{:.2f}"),
    ("server cpu use (0–1)", lambda w, r: w["server_cpu_s"] / w["secs"], "{:.2f}"),
    ("generator cpu use (0–1)", lambda w, r: (w["cpu_user_s"] + w["cpu_sys_s"]) / w["secs"], "{:.2f}"),
    ("connections compressing", lambda w, r: w["deflate_conns"], "{:.0f}"),
]
IDLE_ROWS = [
    ("connections", lambda w, r: r["conns"], "{:,.0f}"),
    ("server RSS added per connection, KiB ↓",
     lambda w, r: (r["rss_after_kb"] - r["rss_before_kb"]) / max(w["connected"] - w["closed"], 1), "{:.2f}"),
    ("connections compressing", lambda w, r: w["deflate_conns"], "{:.0f}"),
]


def problems(rec):
    w = rec.get("wsload")
    out = []
    if rec.get("problem"):
        out.append(rec["problem"])
    if not str(rec.get("stop", "")).startswith("exit"):
        out.append("server: %s" % rec.get("stop"))
    if w:
        for k in ("mismatches", "errors", "closed", "lost"):
            if w.get(k):
                out.append("%s=%s" % (k, w[k]))
        if rec["scenario"] == "chat" and not w.get("window_deliveries"):
            out.append("nothing delivered in the window")
        if rec["scenario"] == "idle" and rec.get("pinged") != "yes":
            out.append("not every connection was pinged and echoed in time")
    return out


def bottleneck(w):
    """As bench/run.sh decides it: which side used its whole cpu (≥ 0.9)."""
    srv = w["server_cpu_s"] / w["secs"] >= 0.9
    gen = (w["cpu_user_s"] + w["cpu_sys_s"]) / w["secs"] >= 0.9
    return "both" if srv and gen else "generator" if gen else "server" if srv else "neither"


def cell(values, fmt):
    if not values:
        return "✗"
    med = fmt.format(statistics.median(values))
    if len(values) > 1:
        med += " (%s–%s)" % (fmt.format(min(values)), fmt.format(max(values)))
    return med


def table(recs, rows, servers, title):
    print("### %s\n" % title)
    print("| | " + " | ".join(servers) + " |")
    print("|---|" + "---|" * len(servers))
    for name, f, fmt in rows:
        cells = []
        for s in servers:
            vals = []
            for r in recs:
                if r["server"] == s and not problems(r):
                    try:
                        vals.append(f(r["wsload"], r))
                    except (KeyError, ZeroDivisionError, TypeError):
                        pass
            cells.append(cell(vals, fmt))
        print("| %s | %s |" % (name, " | ".join(cells)))
    if rows is CHAT_ROWS:
        cells = []
        for s in servers:
            got = [bottleneck(r["wsload"]) for r in recs if r["server"] == s and not problems(r)]
            cells.append(max(("generator", "both", "server", "neither"), key=got.count)
                         if got else "—")
        print("| bottleneck (most rounds) | %s |" % " | ".join(cells))
    print()


def main():
    meta, recs = {}, []
    with open(sys.argv[1]) as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                if d.get("meta"):
                    meta = d
                else:
                    recs.append(d)
    print("permessage-deflate benchmark, %s, %s; moongate %s, Bun %s; %s round(s)%s\n" % (
        meta.get("date"), meta.get("machine"), meta.get("moongate"), meta.get("bun"),
        meta.get("rounds"), " (--quick: rough)" if meta.get("quick") else ""))
    for sc, rows, title in (
            ("chat", CHAT_ROWS, "Chat room: %d clients, %g messages/s in all, each to every member "
             "(%g s windows)" % (meta.get("conns", 0), meta.get("rate", 0), meta.get("seconds", 0))),
            ("idle", IDLE_ROWS, "Idle connections after one echoed chat message (%d; %d with "
             "context takeover)" % (meta.get("idle_conns", 0), meta.get("takeover_conns", 0)))):
        rs = [r for r in recs if r["scenario"] == sc]
        if not rs:
            continue
        servers = []
        for r in rs:
            if r["server"] not in servers:
                servers.append(r["server"])
        table(rs, rows, servers, title)
    bad = [(r, problems(r)) for r in recs if problems(r)]
    if bad:
        print("Problems (left out of the medians):\n")
        for r, p in bad:
            print("- round %d, %s on %s: %s" % (r["round"], r["scenario"], r["server"], "; ".join(p)))
    print("\nA generator cpu use near 1 means wsload was the limit: the server's figures "
          "are then a floor (it was not driven to its own limit), not a capacity.")


if __name__ == "__main__":
    main()
