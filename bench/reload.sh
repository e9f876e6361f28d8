#!/usr/bin/env bash
# bench/reload.sh — reload under load (issue 4, workload 7), moongate only.
#
#   bench/reload.sh [--conns 10000] [--rate 2] [--seconds 10] [--at 5.5] [--json FILE]
#
# Starts moongate (bench/conf/bench.yaml, bench/scripts/echo.lua) pinned to cpu 0 on
# a free loopback port, opens CONNS connections from wsload (cpu 1) that each send
# RATE messages/s (open loop, every echo verified), and has wsload send SIGHUP to
# moongate AT seconds into the SECONDS-long window.  After the window wsload waits up
# to 5 s for the last echoes.  Reports closed connections and lost messages (sent,
# never echoed) — both must be 0 — and the p99 latency of the messages sent in the
# second of the reload against the other seconds.  Exit status 0 when nothing was
# closed or lost, no echo differed, and moongate exited cleanly.
# Needs build/moongate and bench/wsload (bench/run.sh builds both).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"

CONNS=10000 RATE=2 SECONDS_=10 AT=5.5 JSON=
while [[ $# -gt 0 ]]; do
    case "$1" in
    --conns) CONNS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --seconds) SECONDS_=$2; shift 2 ;;
    --at) AT=$2; shift 2 ;;
    --json) JSON=$2; shift 2 ;;
    --src-n) SRC_N=$2; shift 2 ;; # for run.sh: where to start in the source addresses
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "reload.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for f in "$ROOT/build/moongate" "$ROOT/bench/wsload"; do
    [[ -x $f ]] || { echo "reload.sh: $f missing: run bench/run.sh (or build it) first" >&2; exit 2; }
done

LOGDIR=${LOGDIR:-$(mktemp -d /tmp/moongate-reload.XXXXXX)}
mkdir -p "$LOGDIR"
TAG=reload-$$
trap 'stop_server' EXIT

start_server moongate reload "$TAG" || exit 1
out="$LOGDIR/$TAG.wsload1.json"
rc=0
wsload -u "ws://127.0.0.1:$SERVER_PORT/" -c "$CONNS" --rate "$RATE" -s 32 -t "$SECONDS_" -w 1 \
    --connect-timeout 30 --src "$(next_src)" --signal-at "$AT" --signal-pid "$SERVER_PID" \
    --json >"$out" 2>"$LOGDIR/$TAG.wsload1.err" || rc=$?
stop_server
trap - EXIT
if [[ -n $JSON ]]; then
    cp "$out" "$JSON"
fi
"$PY" - "$out" "$STOP_STATUS" "$rc" "$LOGDIR" <<'EOF'
import json, sys
path, stop, rc, logdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
try:
    r = json.load(open(path))
except (OSError, ValueError):
    print(f"reload: wsload gave no result (exit {rc}); logs in {logdir}")
    sys.exit(1)
print(f"reload under load: {r['conns']} connections × {r['rate']:g} msg/s, "
      f"{r['msgs_per_s']:.0f} echoes/s")
print(f"  closed connections: {r['closed']}   lost messages: {r['lost']}   "
      f"mismatches: {r['mismatches']}   skipped sends: {r['skipped']}   moongate: {stop}")
print(f"  p99 in the reload second (second {r['signal_second']}): "
      f"{r['signal_p99_us'] / 1000:.1f} ms; other seconds: median "
      f"{r['other_p99_median_us'] / 1000:.1f} ms, max {r['other_p99_max_us'] / 1000:.1f} ms")
for s in r["timeline"]:
    mark = "  <- SIGHUP" if s["s"] == r["signal_second"] else ""
    print(f"    second {s['s']:>3}: {s['n']:>7} sent, p50 {s['p50_us'] / 1000:7.2f} ms, "
          f"p99 {s['p99_us'] / 1000:7.2f} ms, max {s['max_us'] / 1000:7.2f} ms{mark}")
ok = (r["closed"] == 0 and r["lost"] == 0 and r["mismatches"] == 0 and r["skipped"] == 0
      and r["errors"] == 0 and stop == "exit 0")
sys.exit(0 if ok else 1)
EOF
