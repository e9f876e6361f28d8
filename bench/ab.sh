#!/usr/bin/env bash
# bench/ab.sh — an interleaved A/B of two moongate binaries, for "no speed
# lost" checks of a change: the same workloads as bench/run.sh's echo1, echo16,
# echo16k and broadcast, each round running A then B (B then A in odd rounds),
# server on cpu 0, wsload on cpu 1.
#   bench/ab.sh [--rounds N] [--workloads echo1,echo16,echo16k,broadcast] OLD_BINARY NEW_BINARY
# Prints each pair and, per workload, the medians and new ÷ old:
#   echo*      msgs/s (higher is better)
#   broadcast  10,000 subscribers at 10 msg/s (as bench/run.sh's p99 row): the server's CPU seconds from
#              the first broadcast to the end, the same broadcasts for both
#              (lower is better; the ratio printed is old ÷ new, so above 1
#              is better here too), and the p99 fan-out.
# and the paired ratio: the median over rounds of each round's new ÷ old,
# which the machine's speed drifting between rounds moves far less.
# Also prints the server's and wsload's CPU use, so it is clear which of the
# two was the bound.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
rounds=5 workloads=echo1,echo16,echo16k,broadcast
while [[ $# -gt 2 ]]; do
    case "$1" in
        --rounds) rounds="${2:?}"; shift 2 ;;
        --workloads) workloads="${2:?}"; shift 2 ;;
        *) echo "ab: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ $# -eq 2 ]] || { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 2; }
A=$1 B=$2
make -s -C "$ROOT/bench" wsload >/dev/null
out=$(mktemp -d /tmp/moongate-ab.XXXXXX)
tck=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# cell BIN WORKLOAD -> one JSON line: the workload's figure, server and client CPU use
cell() {
    local bin=$1 wl=$2 port pid t0 t1 c0 c1 json script=echo
    port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    [[ $wl == broadcast ]] && script=broadcast
    taskset -c 0 "$bin" -c "$ROOT/bench/conf/bench.yaml" --listen "127.0.0.1:$port" \
        --script "$ROOT/bench/scripts/$script.lua" >"$out/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    case $wl in
        echo1) args=(-c 64 -d 1 -s 32 -t 3 -w 1) ;;
        echo16) args=(-c 64 -d 16 -s 32 -t 3 -w 1) ;;
        echo16k) args=(-c 8 -d 1 -s 16384 -t 3 -w 1) ;;
        broadcast) args=(-c 10001 --broadcast 10 -s 64 -t 4 -w 1 --connect-timeout 30) ;;
    esac
    rm -f "$out/status"
    taskset -c 1 "$ROOT/bench/wsload" -u "ws://127.0.0.1:$port/" "${args[@]}" \
        --status "$out/status" --json >"$out/wsload.json" 2>/dev/null &
    local wpid=$!
    if [[ $wl == broadcast ]]; then # the server's CPU from the first broadcast on
        for _ in $(seq 600); do
            grep -qs connected "$out/status" && break
            kill -0 "$wpid" 2>/dev/null || break
            sleep 0.05
        done
    fi
    c0=$(cpu_ticks "$pid") t0=$(date +%s.%N)
    wait "$wpid" || true
    json=$(cat "$out/wsload.json" 2>/dev/null || true)
    [[ -n $json ]] || json='{}'
    c1=$(cpu_ticks "$pid") t1=$(date +%s.%N)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    /usr/bin/python3 - "$wl" "$json" "$(( c1 - c0 ))" "$tck" "$t0" "$t1" <<'EOF'
import json, sys
wl, raw, ticks, tck, t0, t1 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
d = json.loads(raw) if raw.strip() else {}
srv_s = ticks / tck
out = {"server_util": round(srv_s / (t1 - t0), 2), "client_cpu_s": round(d.get("cpu_user_s", 0) + d.get("cpu_sys_s", 0), 2)}
if wl == "broadcast":
    st = d.get("steps", [{}])[-1]
    out["p99_ms"] = round(st.get("p99_us", 0) / 1000, 1)
    out["fig"] = round(srv_s, 2)  # the same broadcasts for both binaries
    out["lost"] = d.get("lost", 0)
else:
    out["fig"] = int(d.get("msgs_per_s", 0))
print(json.dumps(out))
EOF
}

for ((r = 1; r <= rounds; r++)); do
    for wl in ${workloads//,/ }; do
        if ((r % 2)); then first=A; else first=B; fi
        for who in $first $([[ $first == A ]] && echo B || echo A); do
            bin=$A; [[ $who == B ]] && bin=$B
            res=$(cell "$bin" "$wl")
            echo "$r $wl $who $res" | tee -a "$out/pairs"
        done
    done
done

/usr/bin/python3 - "$out/pairs" <<'EOF'
import json, statistics, sys
rows, rounds = {}, {}
for line in open(sys.argv[1]):
    r, wl, who, js = line.split(" ", 3)
    rows.setdefault(wl, {}).setdefault(who, []).append(json.loads(js))
    rounds.setdefault(wl, {}).setdefault(r, {})[who] = json.loads(js)["fig"]

# A round's two cells ran back to back, so their ratio is little moved by
# the machine's speed drifting from round to round, which the ratio of the
# medians is not: on a shared VM the paired median is the figure to read.
def paired(wl):
    rs = [(p["A"] / p["B"] if wl == "broadcast" else p["B"] / p["A"])
          for p in rounds[wl].values() if p.get("A") and p.get("B")]
    return statistics.median(rs) if rs else float("nan")

print("workload   old median   new median   ratio (better > 1)   paired ratio   server util old/new   client cpu s old/new")
for wl, d in rows.items():
    a = statistics.median(x["fig"] for x in d["A"])
    b = statistics.median(x["fig"] for x in d["B"])
    ratio = (a / b if wl == "broadcast" else b / a) if a and b else float("nan")
    su = "%.2f/%.2f" % (statistics.median(x["server_util"] for x in d["A"]),
                        statistics.median(x["server_util"] for x in d["B"]))
    cc = "%.2f/%.2f" % (statistics.median(x["client_cpu_s"] for x in d["A"]),
                        statistics.median(x["client_cpu_s"] for x in d["B"]))
    extra = ""
    if wl == "broadcast":
        extra = "  p99 ms old/new %.1f/%.1f" % (statistics.median(x["p99_ms"] for x in d["A"]),
                                               statistics.median(x["p99_ms"] for x in d["B"]))
    print("%-10s %11s  %11s   %.3f               %.3f          %s             %s%s"
          % (wl, a, b, ratio, paired(wl), su, cc, extra))
EOF
echo "pairs: $out/pairs"
