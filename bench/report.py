#!/usr/bin/python3
"""bench/report.py — results of bench/run.sh: one JSON line per (round, workload,
server) cell, and the markdown table of medians and ratios made from them.

    report.py record --out FILE --run ID --round N --workload W --server S
                     --stop "exit 0" [--rss-before KB --rss-after KB] [--seconds S]
                     [--window-s S] [--server-cpu-s S --wall-s S]
                     WSLOAD_JSON...
    report.py meta --out FILE --run ID KEY=VALUE...
    report.py table FILE

`record` reads the JSON wsload printed (one file per wsload process), derives the
cell's figures and what went wrong (mismatches, closed or failed connections, lost
messages, a server that crashed or did not stop), and appends one line to FILE.
For the echo workloads it also decides what limited the cell: --window-s is
wsload's measured window (-t), --server-cpu-s the server's cpu seconds over
--wall-s seconds (from just before the first wsload started to just after the
last exited); see bottleneck().
`table` prints the table: rows = figures, columns = servers, cells = median
(min–max) over the rounds, moongate ÷ Bun of the medians, and for echo rows the
bottleneck of the moongate and the Bun cell.
"""
import collections
import json
import statistics
import sys

SERVERS = ["moongate", "bun", "lws", "node"]
SERVER_TITLES = {"moongate": "moongate (Lua)", "bun": "Bun", "lws": "lws C (naive)",
                 "node": "node ws"}

# (workload, figure, title, better, unit formatter)
ROWS = [
    ("echo1", "msgs_per_s", "echo, 64 conns × 1 in flight, 32 B — msg/s", "↑", "k"),
    ("echo16", "msgs_per_s", "echo, 64 conns × 16 in flight, 32 B — msg/s", "↑", "k"),
    ("echo16k", "msgs_per_s", "echo, 8 conns × 1 in flight, 16 KiB — msg/s", "↑", "k"),
    ("broadcast", "p99_ms", "broadcast to 10,000 subscribers at 10 msg/s — p99 fan-out, ms",
     "↓", "ms"),
    ("broadcast", "max_rate", "broadcast to 10,000 — highest rate with p99 ≤ 100 ms, msg/s",
     "↑", "rate"),
    ("idle", "rss_per_conn_kib", "19,000 idle conns, heartbeats on — RSS per conn, KiB", "↓",
     "kib"),
    ("idle", "storm_conns_per_s", "connect storm, 19,000 clients at once — conn/s", "↑", "k"),
    ("reload", "reload_p99_ms", "reload under load (moongate) — p99 in the SIGHUP second, ms",
     "↓", "ms"),
    ("reload", "other_p99_ms", "reload under load (moongate) — p99 of the other seconds, ms",
     "↓", "ms"),
    ("reload", "dropped", "reload under load (moongate) — closed conns + lost msgs", "↓", "n"),
]


def load_wsload(paths):
    runs, problems = [], []
    for p in paths:
        try:
            with open(p) as f:
                text = f.read().strip()
            runs.append(json.loads(text.splitlines()[-1]))
        except (OSError, ValueError, IndexError):
            problems.append(f"wsload gave no result ({p.rsplit('/', 1)[-1]}; see its .err)")
    return runs, problems


def check_common(r, problems):
    for key, what in (("mismatches", "mismatched messages"), ("closed", "connections closed"),
                      ("lost", "messages lost"), ("skipped", "sends skipped (too many in flight)"),
                      ("gaps", "broadcasts missing")):
        if r.get(key):
            problems.append(f"{r[key]} {what}")
    failed = r.get("failed", 0) or (r.get("errors", 0) - r.get("closed", 0))
    if failed:
        problems.append(f"{failed} connections failed to open")


# A side whose cpu use is at least this share of the time it had was the limit.
SATURATED = 0.9


def bottleneck(client_util, server_util):
    """both: a wsload process was busy ≥ 90 % of the window and so was the server
    over the run; generator or server: only that side was; neither: both waited
    (latency-bound)."""
    gen = client_util is not None and client_util >= SATURATED
    srv = server_util is not None and server_util >= SATURATED
    if gen and srv:
        return "both"
    if gen:
        return "generator"
    if server_util is None:
        return None
    return "server" if srv else "neither"


def figures_echo(runs, problems, window_s, server_cpu_s, wall_s):
    """Echo cells may come from several wsload processes (one per load cpu): the rate
    is their sum; the latency quantiles are the slowest process's (the per-process
    histograms are not kept, so they cannot be merged)."""
    for r in runs:
        check_common(r, problems)
    cpu = [r["cpu_user_s"] + r["cpu_sys_s"] for r in runs]
    fig = {"msgs_per_s": sum(r["msgs_per_s"] for r in runs),
           "p50_us": max(r["p50_us"] for r in runs), "p99_us": max(r["p99_us"] for r in runs),
           "p999_us": max(r["p999_us"] for r in runs), "wsload_procs": len(runs),
           "client_cpu_s": round(sum(cpu), 2)}
    client_util = max(cpu) / window_s if window_s else None
    server_util = server_cpu_s / wall_s if server_cpu_s is not None and wall_s else None
    if client_util is not None:
        fig["client_util"] = round(client_util, 3)
    if server_util is not None:
        fig["server_util"] = round(server_util, 3)
        fig["server_cpu_s"], fig["wall_s"] = server_cpu_s, wall_s
    b = bottleneck(client_util, server_util)
    if b:
        fig["bottleneck"] = b
    return fig


def figures_broadcast(runs, problems):
    r = runs[0]
    lost = r.pop("lost", 0)  # checked here, per step, not as echo losses
    check_common(r, problems)
    r["lost"] = lost
    if r["steps"] and r["steps"][0]["lost"]:
        problems.append(f"{r['steps'][0]['lost']} of {r['steps'][0]['expected']} deliveries "
                        f"at {r['steps'][0]['rate']:g} msg/s not received within 2 s of the "
                        "step's end (late or lost)")
    return {"p99_ms": r["p99_us"] / 1000, "p50_ms": r["p50_us"] / 1000,
            "max_rate": r["max_rate_ok"], "ramp_capped": r["ramp_capped"],
            "steps": [{k: s[k] for k in ("rate", "p50_us", "p99_us", "lost", "cpu_s",
                                         "deliveries_per_s")} for s in r["steps"]]}


def figures_idle(runs, problems, rss_before, rss_after, overflows):
    connected = sum(r["connected"] for r in runs)
    still_open = connected - sum(r["closed"] for r in runs)
    pinged = sum(r["pinged"] for r in runs)
    total = {k: sum(r.get(k, 0) for r in runs)
             for k in ("mismatches", "closed", "failed", "errors")}
    check_common(total, problems)
    if pinged < connected:
        problems.append(f"only {pinged} of {connected} connections saw a heartbeat ping")
    t0 = min(r["t_begin_ns"] for r in runs)
    t1 = max(r["t_connected_ns"] for r in runs)
    storm_s = (t1 - t0) / 1e9 if t1 > t0 else 0
    fig = {"connected": connected, "pinged": pinged, "rss_before_kib": rss_before,
           "rss_after_kib": rss_after, "storm_s": round(storm_s, 3),
           "storm_conns_per_s": connected / storm_s if storm_s > 0 else 0,
           "listen_overflows": overflows}
    if still_open > 0 and rss_after > 0:
        fig["rss_per_conn_kib"] = (rss_after - rss_before) / still_open
    return fig


def figures_reload(runs, problems):
    r = runs[0]
    check_common(r, problems)
    if r.get("signal_second", -1) < 0:
        problems.append("SIGHUP was not sent")
    return {"reload_p99_ms": r["signal_p99_us"] / 1000,
            "other_p99_ms": r["other_p99_median_us"] / 1000,
            "other_p99_max_ms": r["other_p99_max_us"] / 1000,
            "dropped": r["closed"] + r["lost"], "closed": r["closed"], "lost": r["lost"],
            "msgs_per_s": r["msgs_per_s"]}


def cmd_record(args):
    opts, files = {}, []
    i = 0
    while i < len(args):
        if args[i].startswith("--"):
            opts[args[i][2:]] = args[i + 1]
            i += 2
        else:
            files.append(args[i])
            i += 1
    w = opts["workload"]
    runs, problems = load_wsload(files)
    if opts.get("stop", "exit 0") != "exit 0":
        problems.append(f"server: {opts['stop']}")
    fig = {}
    if runs and len(runs) == len(files):
        try:
            if w.startswith("echo"):
                num = {k: float(opts[k]) if k in opts else None
                       for k in ("window-s", "server-cpu-s", "wall-s")}
                fig = figures_echo(runs, problems, num["window-s"], num["server-cpu-s"],
                                   num["wall-s"])
            elif w == "broadcast":
                fig = figures_broadcast(runs, problems)
            elif w == "idle":
                fig = figures_idle(runs, problems, int(opts.get("rss-before", 0)),
                                   int(opts.get("rss-after", 0)),
                                   int(opts.get("listen-overflows", 0)))
            elif w == "reload":
                fig = figures_reload(runs, problems)
        except (KeyError, TypeError) as e:
            problems.append(f"unexpected wsload output ({e})")
    line = {"type": "cell", "run": opts.get("run"), "round": int(opts["round"]),
            "workload": w, "server": opts["server"], "figures": fig, "problems": problems,
            "wsload": runs}
    with open(opts["out"], "a") as f:
        f.write(json.dumps(line) + "\n")
    status = "ok" if not problems else "PROBLEM: " + "; ".join(problems)
    print(f"{w} {opts['server']} round {opts['round']}: "
          + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in fig.items() if not isinstance(v, list))
          + f" [{status}]")


def cmd_meta(args):
    opts = {}
    i = 0
    while i < len(args) and args[i].startswith("--"):
        opts[args[i][2:]] = args[i + 1]
        i += 2
    meta = {"type": "meta", "run": opts.get("run")}
    for kv in args[i:]:
        k, _, v = kv.partition("=")
        meta[k] = v
    with open(opts["out"], "a") as f:
        f.write(json.dumps(meta) + "\n")


def fmt(v, unit):
    if v is None:
        return "—"
    if unit == "k":
        return f"{v / 1000:,.1f}k" if v < 100000 else f"{v / 1000:,.0f}k"
    if unit == "ms":
        if v >= 10000:  # deliveries missing at the end of the step's drain
            return "∞"
        return f"{v:.1f}" if v < 100 else f"{v:,.0f}"
    if unit == "rate" and v == 0:  # the first step already passed the limit
        return "<10"
    if unit == "kib":
        return f"{v:.2f}"
    return f"{v:,.0f}"


def most_frequent_bottleneck(lines):
    """The bottleneck most rounds had; a tie goes to generator, then both, then
    server (the reading that warns most)."""
    # decided again from the utilisations, so a table made later uses this rule
    votes = collections.Counter(
        b for b in (bottleneck(ln["figures"].get("client_util"), ln["figures"].get("server_util"))
                    or ln["figures"].get("bottleneck") for ln in lines) if b)
    if not votes:
        return None
    order = ["generator", "both", "server", "neither"]
    return max(votes, key=lambda b: (votes[b], -order.index(b)))


def cmd_table(args):
    cells, meta = {}, {}
    with open(args[0]) as f:
        for text in f:
            line = json.loads(text)
            if line.get("type") == "meta":
                meta.update(line)
                continue
            cells.setdefault((line["workload"], line["server"]), []).append(line)
    servers = [s for s in SERVERS if any(k[1] == s for k in cells)]
    out = []
    if meta:
        out.append(f"moongate benchmark, {meta.get('date', '?')}, {meta.get('machine', '?')}; "
                   f"{meta.get('rounds', '?')} round(s){' (--quick)' if meta.get('quick') == '1' else ''}; "
                   f"server on cpu {meta.get('server_cpu', 0)}, load on cpu {meta.get('load_cpu', 1)}"
                   + (f" (echo: one wsload on each of cpus {meta['load_cpus']})"
                      if "," in meta.get("load_cpus", "") else "") + ".")
        out.append(f"Versions: {meta.get('versions', '?')}.")
        out.append("")
    head = ("| workload | " + " | ".join(SERVER_TITLES[s] for s in servers)
            + " | moongate ÷ Bun | bottleneck (moongate / Bun) |")
    out.append(head)
    out.append("|---" * (len(servers) + 3) + "|")
    notes = []
    for w, key, title, better, unit in ROWS:
        if not any(k[0] == w for k in cells):
            continue
        row, medians = [f"{title} {better}"], {}
        for s in servers:
            lines = cells.get((w, s), [])
            vals = [ln["figures"][key] for ln in lines if key in ln["figures"]]
            bad = [ln for ln in lines if ln["problems"]]
            for ln in bad:
                note = f"{w}/{s} round {ln['round']}: " + "; ".join(ln["problems"])
                if note not in notes:
                    notes.append(note)
            if not vals:
                row.append("—" if not lines else "failed")
                continue
            med = statistics.median(vals)
            medians[s] = med
            cell = fmt(med, unit)
            if key == "max_rate" and any(ln["figures"].get("ramp_capped") for ln in lines
                                         if ln["figures"].get("max_rate") == max(vals)):
                cell = "≥" + cell
            if len(vals) > 1:
                cell += f" ({fmt(min(vals), unit)}–{fmt(max(vals), unit)})"
            if bad:
                cell += " ✗"
            row.append(cell)
        m, b = medians.get("moongate"), medians.get("bun")
        ratio = m / b if m is not None and b else None
        capped = unit == "ms" and ratio is not None and max(m, b) >= 10000
        row.append(f"{ratio:.2f}×" if ratio is not None and not capped else "—")
        row.append(" / ".join(most_frequent_bottleneck(cells.get((w, s), [])) or "—"
                              for s in ("moongate", "bun")) if w.startswith("echo") else "—")
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    out.append("Cells: median over the rounds (min–max); ↑ higher is better, ↓ lower is "
               "better; ✗ = a round had a problem (listed below). moongate ÷ Bun is the ratio "
               "of the medians. Broadcast p99 ∞: some deliveries had not arrived 2 s after the "
               "step; highest rate <10: p99 was over 100 ms already at 10 msg/s. Bottleneck "
               "(echo rows; the most frequent over the rounds): generator = a wsload process "
               f"used ≥ {SATURATED:.0%} of a cpu over the window, and the figure is a floor; "
               f"server = the server used ≥ {SATURATED:.0%} of its cpu; both = both did (the "
               "figure is the server's and also a floor); neither = latency-bound.")
    if notes:
        out.append("")
        out.append("Problems:")
        out.extend(f"- {n}" for n in notes)
    print("\n".join(out))


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("record", "meta", "table"):
        sys.exit(__doc__)
    {"record": cmd_record, "meta": cmd_meta, "table": cmd_table}[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
