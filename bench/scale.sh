#!/usr/bin/env bash
# bench/scale.sh — how `workers: N` scales on one machine (issue 18), against
# one Bun process.  Meant for the 16-core machine (../shared/NOTES.md, "The
# 16-core machine"); runs anywhere with at least 2 cpus, with N up to half
# of them.
#
#   bench/scale.sh [--workers 1,2,4,8] [--seconds 5] [--bun] [--json FILE]
#
# For each N: moongate (bench/scripts/echo.lua, `workers: N`) pinned to cpus
# 0..N-1, on a free loopback port; N wsload processes pinned to cpus
# N..2N-1, each with its share of the connections, run at once:
#   echo 64 conns × 16 in flight, 32 B    total msg/s, and ÷ N=1
#   echo 256 conns × 16 in flight, 32 B   total msg/s, and ÷ N=1
# and, for N = 1 and the largest N, a broadcast to 10,000 subscribers at
# 10 msg/s (bench/scripts/broadcast.lua), p99 fan-out latency.  With --bun,
# one Bun process (bench/peers, cpu 0) runs the two echoes too.  The
# generators' cpu time is printed next to each figure: a generator core at
# its limit makes the figure the generator's.  Every server is stopped by
# its PID.  Needs build/moongate and bench/wsload (bench/run.sh builds both;
# npm ci in bench/peers for --bun).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"

NS=1,2,4,8 SECS=5 BUN=0 JSON=
while [[ $# -gt 0 ]]; do
    case "$1" in
    --workers) NS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --bun) BUN=1; shift ;;
    --json) JSON=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "scale.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
CPUS=$(nproc)
LOGDIR=$(mktemp -d /tmp/moongate-scale.XXXXXX)
SRC_N=$((RANDOM % 20000))
RESULTS=()
trap 'stop_server' EXIT

start_moongate() { # N SCRIPT
    SERVER_PORT=$(free_port)
    cat >"$LOGDIR/n$1.yaml" <<EOF
listen:
  - host: 127.0.0.1
    port: $SERVER_PORT
script: $ROOT/bench/scripts/$2.lua
workers: $1
limits:
  max_connections: 19000
log:
  level: warn
EOF
    taskset -c "0-$(($1 - 1))" "$ROOT/build/moongate" -c "$LOGDIR/n$1.yaml" \
        >"$LOGDIR/server-n$1-$2.log" 2>&1 &
    SERVER_PID=$!
    wait_port "$SERVER_PORT" "$SERVER_PID"
}

start_bun() {
    SERVER_PORT=$(free_port)
    taskset -c 0 "$ROOT/bench/peers/node_modules/.bin/bun" "$ROOT/bench/peers/bun-server.js" \
        "$SERVER_PORT" >"$LOGDIR/bun.log" 2>&1 &
    SERVER_PID=$!
    wait_port "$SERVER_PORT" "$SERVER_PID"
}

# echo TAG N CONNS: N wsload processes on cpus N..2N-1, CONNS in all.
echo_run() {
    local tag=$1 n=$2 conns=$3 i pids=() total=0 cpu=0
    for ((i = 0; i < n; i++)); do
        taskset -c "$((n + i % (CPUS - n)))" "$ROOT/bench/wsload" \
            -u "ws://127.0.0.1:$SERVER_PORT/" -c "$((conns / n))" -d 16 -s 32 -t "$SECS" -w 1 \
            --src "$(next_src)" --json >"$LOGDIR/$tag.$i.json" 2>"$LOGDIR/$tag.$i.err" &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || true; done
    for ((i = 0; i < n; i++)); do
        total=$("$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print($total + d['msgs_per_s'])" \
            "$LOGDIR/$tag.$i.json" 2>/dev/null || echo "$total")
        cpu=$("$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print('%.2f' % max($cpu, d['cpu_user_s'] + d['cpu_sys_s']))" \
            "$LOGDIR/$tag.$i.json" 2>/dev/null || echo "$cpu")
    done
    echo "$total $cpu"
}

bc_run() { # TAG
    taskset -c "$((CPUS - 1))" "$ROOT/bench/wsload" -u "ws://127.0.0.1:$SERVER_PORT/" -c 10001 \
        --broadcast 10 -s 64 -t "$SECS" -w 2 --connect-timeout 60 --src "$(next_src)" --json \
        >"$LOGDIR/$1.json" 2>"$LOGDIR/$1.err" || true
    "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print('%.1f' % (d['p99_us']/1000))" \
        "$LOGDIR/$1.json" 2>/dev/null || echo "failed"
}

IFS=, read -r -a NLIST <<<"$NS"
declare -A E64 E256
for n in "${NLIST[@]}"; do
    if ((2 * n > CPUS)); then
        log "skipping N=$n: needs $((2 * n)) cpus (N for moongate, N for the generators), have $CPUS"
        continue
    fi
    log "N=$n: echo"
    start_moongate "$n" echo
    read -r e64 c64 < <(echo_run "n$n-e64" "$n" 64)
    read -r e256 c256 < <(echo_run "n$n-e256" "$n" 256)
    stop_server
    E64[$n]=$e64 E256[$n]=$e256
    RESULTS+=("{\"workers\":$n,\"echo64\":$e64,\"echo64_gen_cpu\":$c64,\"echo256\":$e256,\"echo256_gen_cpu\":$c256}")
    printf 'N=%s  echo 64x16: %.0f msg/s (÷N=1 %.2f, generator cpu %ss)  echo 256x16: %.0f msg/s (÷N=1 %.2f, generator cpu %ss)\n' \
        "$n" "$e64" "$("$PY" -c "print($e64 / max(1, ${E64[1]:-$e64}))")" "$c64" \
        "$e256" "$("$PY" -c "print($e256 / max(1, ${E256[1]:-$e256}))")" "$c256"
done
last=${NLIST[-1]}
while ((2 * last > CPUS)); do last=$((last / 2)); done
for n in 1 "$last"; do
    log "N=$n: broadcast to 10,000 at 10 msg/s"
    start_moongate "$n" broadcast
    p99=$(bc_run "n$n-bc")
    stop_server
    echo "N=$n  broadcast to 10,000 subscribers at 10 msg/s: p99 $p99 ms"
    RESULTS+=("{\"workers\":$n,\"broadcast_p99_ms\":\"$p99\"}")
    [[ $last == 1 ]] && break
done
if [[ $BUN == 1 ]]; then
    log "Bun: echo"
    start_bun
    read -r b64 _ < <(echo_run bun-e64 1 64)
    read -r b256 _ < <(echo_run bun-e256 1 256)
    stop_server
    echo "Bun (1 process)  echo 64x16: $b64 msg/s  echo 256x16: $b256 msg/s"
    RESULTS+=("{\"bun\":1,\"echo64\":$b64,\"echo256\":$b256}")
fi
[[ -n $JSON ]] && printf '%s\n' "${RESULTS[@]}" >"$JSON"
echo "logs: $LOGDIR"
