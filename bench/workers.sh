#!/usr/bin/env bash
# bench/workers.sh — idle connections held by `workers: N`, beyond what one
# process's open-files limit allows (issue 18), with memory per connection.
#
#   bench/workers.sh [--conns 38000] [--workers 2] [--procs 8] [--json FILE]
#
# Starts moongate with bench/scripts/echo.lua, `workers: N`, heartbeats as in
# bench/run.sh (5 s), limits.max_connections 19,300 and max_handshakes 500
# per worker (each worker is its own process with its own open-files limit:
# 20,000 here, and 19,300 + 500 + 128 spare fit in it),
# on two free loopback ports (the load generators' connects take ephemeral
# ports from one range of ~28,000 per destination), not pinned (the workers
# share the machine's cpus).
# Then PROCS wsload --idle processes (each below its own open-files limit),
# one after the other, open CONNS connections in all, from distinct loopback
# source addresses, and hold them until every one has answered a ping.  Prints: connections
# held, how the kernel spread them over the workers (/metrics), the
# per-process open-files limit, the workers' resident memory before and
# after (sum of their VmRSS), and the memory per connection.  Exit status 0
# when every connection was held and moongate drained and exited 0.
# Needs build/moongate and bench/wsload (bench/run.sh builds both; so does
# `make -C bench` after a build).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"

CONNS=38000 WORKERS=2 PROCS=8 JSON=
# Source addresses from a random start: a rerun must not meet the last
# run's sockets in TIME_WAIT on the same addresses.
SRC_N=$((RANDOM % 20000))
while [[ $# -gt 0 ]]; do
    case "$1" in
    --conns) CONNS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --procs) PROCS=$2; shift 2 ;;
    --json) JSON=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "workers.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ -x $ROOT/build/moongate && -x $ROOT/bench/wsload ]] ||
    { echo "workers.sh: build moongate and bench/wsload first (bench/run.sh does)" >&2; exit 2; }

LOGDIR=$(mktemp -d /tmp/moongate-workers.XXXXXX)
PORT=$(free_port)
PORT2=$(free_port)
ADMIN=$(free_port)
cat >"$LOGDIR/moongate.yaml" <<EOF
listen:
  - host: 127.0.0.1
    port: $PORT
  - host: 127.0.0.1
    port: $PORT2
script: $ROOT/bench/scripts/echo.lua
workers: $WORKERS
heartbeat:
  interval: 5s
  timeout: 15s
limits:
  max_connections: 19300
  max_handshakes: 500
admin:
  port: $ADMIN
log:
  level: warn
EOF

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    stop_server
}
trap cleanup EXIT

"$ROOT/build/moongate" -c "$LOGDIR/moongate.yaml" >"$LOGDIR/server.log" 2>&1 &
SERVER_PID=$!
wait_port "$PORT" "$SERVER_PID" || { cat "$LOGDIR/server.log" >&2; exit 1; }
wait_port "$ADMIN" "$SERVER_PID" || { cat "$LOGDIR/server.log" >&2; exit 1; }

workers_rss_kb() { # sum of VmRSS over the master's children (the process itself with 1)
    local sum=0 p kids
    kids=$(cat "/proc/$SERVER_PID/task/$SERVER_PID/children" 2>/dev/null || true)
    for p in ${kids:-$SERVER_PID}; do
        sum=$((sum + $(rss_kb "$p")))
    done
    echo "$sum"
}
metric() { # NAME: one line of /metrics
    "$PY" -c 'import sys, urllib.request
for l in urllib.request.urlopen(sys.argv[1], timeout=10).read().decode().splitlines():
    if l.startswith(sys.argv[2]): print(l)' "http://127.0.0.1:$ADMIN/metrics" "$1"
}

RSS0=$(workers_rss_kb)
T0=$(date +%s.%N)
# One wsload at a time, each started when the previous has connected all of
# its clients: four at once on two cpus left clients so far behind that
# sockets sat accepted with no request yet, and limits.max_handshakes
# rightly closed the oldest of them.
for ((i = 1; i <= PROCS; i++)); do
    n=$((CONNS / PROCS + (i == 1 ? CONNS % PROCS : 0)))
    port=$((i % 2 ? PORT : PORT2))
    "$ROOT/bench/wsload" -u "ws://127.0.0.1:$port/" -c "$n" --idle -t 300 --connect-timeout 60 \
        --src "$(next_src)" --status "$LOGDIR/status$i" --json >"$LOGDIR/wsload$i.json" \
        2>"$LOGDIR/wsload$i.err" &
    PIDS+=($!)
    for ((waited = 0; waited < 900; waited++)); do # 90 s at most
        grep -qs connected "$LOGDIR/status$i" && break
        kill -0 "${PIDS[-1]}" 2>/dev/null || break
        sleep 0.1
    done
done
for ((waited = 0; waited < 1800; waited++)); do # 180 s at most
    all=1
    for ((i = 1; i <= PROCS; i++)); do grep -qs pinged "$LOGDIR/status$i" || all=0; done
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null || all=1; done
    [[ $all == 1 ]] && break
    sleep 0.1
done
T1=$(date +%s.%N)
RSS1=$(workers_rss_kb)
HELD=$(metric "moongate_connections " | awk '{print $2}')
SPREAD=$(metric "moongate_worker_connections{" | awk '{printf "%s%s", (NR > 1 ? ", " : ""), $0}')
for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${PIDS[@]}"; do wait "$p" || true; done
PIDS=()
stop_server
trap - EXIT

LIMIT=$(ulimit -Hn)
PER=$("$PY" -c "print('%.2f' % (($RSS1 - $RSS0) / max(1, $HELD)))")
SECS=$("$PY" -c "print('%.1f' % ($T1 - $T0))")
echo "workers:                $WORKERS"
echo "open-files limit:       $LIMIT per process (one process holds at most ~$((LIMIT - 400)))"
echo "connections asked:      $CONNS from $PROCS wsload processes"
echo "connections held:       $HELD (every one pinged: $([[ $HELD == "$CONNS" ]] && echo yes || echo no)), in ${SECS} s"
echo "spread:                 $SPREAD"
echo "workers' RSS:           ${RSS0} kB before, ${RSS1} kB after"
echo "memory per connection:  ${PER} KiB (server side, all workers)"
echo "moongate stopped:       $STOP_STATUS"
if [[ -n $JSON ]]; then
    printf '{"workers":%s,"conns":%s,"held":%s,"rss_before_kb":%s,"rss_after_kb":%s,"kib_per_conn":%s,"stop":"%s"}\n' \
        "$WORKERS" "$CONNS" "$HELD" "$RSS0" "$RSS1" "$PER" "$STOP_STATUS" >"$JSON"
fi
[[ $HELD == "$CONNS" && $STOP_STATUS == "exit 0" ]]
