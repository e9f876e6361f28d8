#!/usr/bin/env bash
# bench/run.sh — moongate's benchmark (issue 4) in one command:
#
#   bench/run.sh [--rounds N] [--quick] [--workloads LIST] [--servers LIST]
#                [--load-cpus LIST]
#
# Installs missing Debian packages (tools/deps.sh), builds moongate (build/,
# RelWithDebInfo unless already configured), bench/wsload and
# bench/peers/lws-echo (make -C bench), installs the npm peers (npm ci in bench/peers:
# Bun and node ws at the versions in package-lock.json), then runs ROUNDS rounds; in
# each round every workload against every server, the server order rotated per round.
# Each cell starts its server fresh, pinned to cpu 0 on a free 127.0.0.1 port (waited
# for with a connect probe), runs wsload pinned to cpu 1, and stops the server by PID.
# The echo workloads spread their connections over one wsload per load cpu (see
# --load-cpus) and measure the server's cpu use, to tell which side was the limit.
# Prints one markdown table: medians (min–max) per workload and server, moongate ÷ Bun
# and the bottleneck of the echo cells.  Raw results: bench/results/RUN.jsonl, logs in
# bench/results/RUN/.
#
# Workloads (--workloads, comma-separated; default all):
#   echo1      echo, 64 connections, 1 message in flight, 32 B
#   echo16     echo, 64 connections, 16 in flight, 32 B
#   echo16k    echo, 8 connections, 1 in flight, 16 KiB
#   broadcast  10,000 subscribers + 1 publisher: p99 fan-out latency at 10 msg/s, then a
#              ramp 20, 50, 100, 200, 400 msg/s until p99 passes 100 ms
#   idle       19,000 connections from 2 wsload processes at once: connect-storm rate,
#              then RSS added per connection once every connection has been pinged
#   reload     moongate only: 10,000 connections × 2 msg/s, SIGHUP mid-run (reload.sh)
# Servers (--servers; default all): moongate, bun, lws, node.
# --quick: 1 round and short windows (checks that everything works; figures are rough).
# --rounds N: rounds (default 3).  The default full run takes about 11 minutes here.
# --load-cpus LIST: cpus for the echo workloads' generators (1 | 1-7 | 1,2,3): one
#   wsload per cpu, pinned to it, the connections split evenly, all started at once.
#   Default: 1 (one wsload) below 4 cpus; from 4 cpus every cpu but the server's
#   (cpu 0), at most 8.  The first is also the cpu of the other workloads' wsload.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"

ALL_WORKLOADS=echo1,echo16,echo16k,broadcast,idle,reload
ALL_SERVERS=moongate,bun,lws,node
WORKLOADS=$ALL_WORKLOADS SERVERS=$ALL_SERVERS ROUNDS="" QUICK=0 LOAD_CPU_LIST=""
MAX_LOAD_PROCS=8
ECHO_T=3 ECHO_W=1
BC_SUBS=10000 BC_RATES=10,12,14,16,18,20,24,28,32,40,50,100 BC_T=3 BC_W=1 BC_SIZE=64
IDLE_CONNS=19000 IDLE_PROCS=2 IDLE_WAIT=60
RELOAD_CONNS=10000 RELOAD_RATE=2 RELOAD_T=10 RELOAD_AT=5.5

usage() {
    sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --workloads) WORKLOADS=$2; shift 2 ;;
    --servers) SERVERS=$2; shift 2 ;;
    --load-cpus) LOAD_CPU_LIST=$2; shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage 2 ;;
    esac
done
if [[ $QUICK == 1 ]]; then
    ROUNDS=${ROUNDS:-1}
    ECHO_T=2 ECHO_W=0.5 BC_T=1.5 BC_W=0.5 RELOAD_T=6 RELOAD_AT=3.5
fi
ROUNDS=${ROUNDS:-3}
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || { echo "run.sh: --rounds 1..99" >&2; exit 2; }
for w in ${WORKLOADS//,/ }; do
    [[ ,$ALL_WORKLOADS, == *,$w,* ]] || { echo "run.sh: unknown workload $w" >&2; exit 2; }
done
for s in ${SERVERS//,/ }; do
    [[ ,$ALL_SERVERS, == *,$s,* ]] || { echo "run.sh: unknown server $s" >&2; exit 2; }
done
NCPUS=$(nproc)
if [[ -z $LOAD_CPU_LIST ]]; then
    if ((NCPUS >= 4)); then # every cpu but the server's, at most MAX_LOAD_PROCS
        LOAD_CPUS=()
        for ((c = 0; c < NCPUS && ${#LOAD_CPUS[@]} < MAX_LOAD_PROCS; c++)); do
            ((c == SERVER_CPU)) || LOAD_CPUS+=("$c")
        done
    else
        LOAD_CPUS=("$LOAD_CPU")
    fi
else
    mapfile -t LOAD_CPUS < <(expand_cpus "$LOAD_CPU_LIST") || true
    [[ ${#LOAD_CPUS[@]} -gt 0 ]] ||
        { echo "run.sh: --load-cpus: a list such as 1, 1-7 or 1,2,3" >&2; exit 2; }
    for c in "${LOAD_CPUS[@]}"; do
        ((c < NCPUS)) || { echo "run.sh: --load-cpus: no cpu $c (this machine has $NCPUS)" >&2; exit 2; }
        ((c != SERVER_CPU)) ||
            { echo "run.sh: --load-cpus: cpu $c is the server's" >&2; exit 2; }
    done
    ((${#LOAD_CPUS[@]} <= MAX_LOAD_PROCS)) ||
        { echo "run.sh: --load-cpus: at most $MAX_LOAD_PROCS cpus" >&2; exit 2; }
fi
LOAD_CPU=${LOAD_CPUS[0]} # the other workloads' wsload (reload.sh reads it too)
export LOAD_CPU
CLK_TCK=$(getconf CLK_TCK)

# ---------- build ----------

build() {
    log "building moongate, wsload, lws-echo"
    "$ROOT/tools/deps.sh" # idempotent: only asks dpkg when all is there
    if [[ ! -f $ROOT/build/CMakeCache.txt ]]; then
        cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    elif [[ ! -f $ROOT/build/Makefile ]]; then # an earlier configure failed
        cmake -S "$ROOT" -B "$ROOT/build" >/dev/null
    fi
    local type
    type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$ROOT/build/CMakeCache.txt")
    [[ $type == Release || $type == RelWithDebInfo ]] ||
        log "warning: build/ is configured as '$type', not Release/RelWithDebInfo"
    cmake --build "$ROOT/build" -j2 --target moongate >/dev/null
    make -s -C "$ROOT/bench" all
    if [[ ,$SERVERS, == *,bun,* || ,$SERVERS, == *,node,* ]]; then
        local peers=$ROOT/bench/peers
        if [[ ! -x $peers/node_modules/.bin/bun || ! -f $peers/node_modules/ws/package.json ||
            $peers/package-lock.json -nt $peers/node_modules/.package-lock.json ]]; then
            log "npm ci in bench/peers"
            (cd "$peers" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
        fi
    fi
}

# ---------- workloads (the server is up on SERVER_PORT) ----------

url() { echo "ws://127.0.0.1:$SERVER_PORT/"; }

# CONNS connections over one wsload per load cpu (at most one per connection), each
# pinned to its cpu, from its own source address, the remainder of the split to the
# first; all started at once, each writing TAG.wsloadN.json.  The server's cpu time
# (utime + stime from /proc) is read just before the first starts and just after the
# last exits: sets SERVER_CPU_S and WALL_S ("" when the server was gone by then).
wl_echo() { # TAG CONNS DEPTH SIZE
    local tag=$1 conns=$2 i n nprocs=${#LOAD_CPUS[@]} pids=() t0 t1 c0 c1
    ((nprocs <= conns)) || nprocs=$conns
    c0=$(cpu_ticks "$SERVER_PID")
    t0=$(date +%s%N)
    for ((i = 1; i <= nprocs; i++)); do
        n=$((conns / nprocs + (i == 1 ? conns % nprocs : 0)))
        take_src
        # taskset execs wsload: $! is wsload's PID
        taskset -c "${LOAD_CPUS[i - 1]}" "$ROOT/bench/wsload" -u "$(url)" -c "$n" -d "$3" -s "$4" \
            -t "$ECHO_T" -w "$ECHO_W" --src "$SRC" --json \
            >"$LOGDIR/$tag.wsload$i.json" 2>"$LOGDIR/$tag.wsload$i.err" &
        pids+=($!)
    done
    BG_PIDS=("${pids[@]}")
    for i in "${pids[@]}"; do wait "$i" || true; done
    BG_PIDS=()
    t1=$(date +%s%N)
    c1=$(cpu_ticks "$SERVER_PID")
    SERVER_CPU_S="" WALL_S=""
    if [[ -n $c0 && -n $c1 ]]; then
        SERVER_CPU_S=$(awk -v t="$((c1 - c0))" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
        WALL_S=$(awk -v ns="$((t1 - t0))" 'BEGIN { printf "%.3f", ns / 1e9 }')
    fi
}

wl_broadcast() { # TAG
    take_src
    wsload -u "$(url)" -c "$((BC_SUBS + 1))" --broadcast "$BC_RATES" -s "$BC_SIZE" -t "$BC_T" \
        -w "$BC_W" --connect-timeout 30 --src "$SRC" --json \
        >"$LOGDIR/$1.wsload1.json" 2>"$LOGDIR/$1.wsload1.err" || true
}

# Starts IDLE_PROCS wsload --idle processes at once (the connect storm), waits (bounded)
# until each has seen every connection connected and pinged, reads the server's RSS,
# then stops them.  Sets RSS_BEFORE and RSS_AFTER.
wl_idle() { # TAG
    local tag=$1 i n pids=() waited done_all
    RSS_BEFORE=$(rss_kb "$SERVER_PID")
    OVERFLOWS=$(listen_overflows)
    for ((i = 1; i <= IDLE_PROCS; i++)); do
        n=$((IDLE_CONNS / IDLE_PROCS + (i == 1 ? IDLE_CONNS % IDLE_PROCS : 0)))
        rm -f "$LOGDIR/$tag.status$i"
        take_src
        # taskset execs wsload: $! is wsload's PID (a shell function would add a subshell)
        taskset -c "$LOAD_CPU" "$ROOT/bench/wsload" -u "$(url)" -c "$n" --idle -t 300 \
            --connect-timeout 60 --src "$SRC" --status "$LOGDIR/$tag.status$i" --json \
            >"$LOGDIR/$tag.wsload$i.json" 2>"$LOGDIR/$tag.wsload$i.err" &
        pids+=($!)
    done
    BG_PIDS=("${pids[@]}")
    for ((waited = 0; waited < IDLE_WAIT * 10 + 600; waited++)); do
        done_all=1
        for ((i = 1; i <= IDLE_PROCS; i++)); do
            grep -qs pinged "$LOGDIR/$tag.status$i" || done_all=0
        done
        [[ $done_all == 1 ]] && break
        for i in "${pids[@]}"; do kill -0 "$i" 2>/dev/null || done_all=1; done
        [[ $done_all == 1 ]] && break
        sleep 0.1
    done
    RSS_AFTER=$(rss_kb "$SERVER_PID")
    OVERFLOWS=$(($(listen_overflows) - OVERFLOWS))
    for i in "${pids[@]}"; do kill -TERM "$i" 2>/dev/null || true; done
    for i in "${pids[@]}"; do wait "$i" || true; done
    BG_PIDS=()
}

wl_reload() { # TAG
    "$ROOT/bench/reload.sh" --conns "$RELOAD_CONNS" --rate "$RELOAD_RATE" \
        --seconds "$RELOAD_T" --at "$RELOAD_AT" --src-n "$((SRC_N + 1000))" \
        --json "$LOGDIR/$1.wsload1.json" >"$LOGDIR/$1.txt" 2>&1 || true
    SRC_N=$((SRC_N + 1))
    STOP_STATUS=$(sed -n 's/.*moongate: \(.*\)$/\1/p' "$LOGDIR/$1.txt" | head -1)
    STOP_STATUS=${STOP_STATUS:-unknown}
}

# One cell: a fresh server, the workload, the server stopped, a result line.
run_cell() { # ROUND WORKLOAD SERVER
    local r=$1 w=$2 s=$3 tag="r$1-$2-$3" extra=()
    RSS_BEFORE=0 RSS_AFTER=0 OVERFLOWS=0 SERVER_CPU_S="" WALL_S=""
    log "round $r: $w on $s"
    if [[ $w == reload ]]; then
        wl_reload "$tag"
    elif start_server "$s" "$w" "$tag"; then
        case $w in
        echo1) wl_echo "$tag" 64 1 32 ;;
        echo16) wl_echo "$tag" 64 16 32 ;;
        echo16k) wl_echo "$tag" 8 1 16384 ;;
        broadcast) wl_broadcast "$tag" ;;
        idle) wl_idle "$tag" ;;
        esac
        stop_server
    else
        STOP_STATUS="did not start"
    fi
    [[ $w == idle ]] &&
        extra=(--rss-before "$RSS_BEFORE" --rss-after "$RSS_AFTER" --listen-overflows "$OVERFLOWS")
    if [[ $w == echo* ]]; then
        extra=(--window-s "$ECHO_T")
        [[ -n $SERVER_CPU_S ]] && extra+=(--server-cpu-s "$SERVER_CPU_S" --wall-s "$WALL_S")
    fi
    "$PY" "$ROOT/bench/report.py" record --out "$RESULTS" --run "$RUN" --round "$r" \
        --workload "$w" --server "$s" --stop "$STOP_STATUS" "${extra[@]}" \
        "$LOGDIR/$tag".wsload*.json >&2 || true
}

# ---------- main ----------

build
RUN=$(date +%Y%m%d-%H%M%S)
mkdir -p "$ROOT/bench/results/$RUN"
export LOGDIR=$ROOT/bench/results/$RUN
RESULTS=$ROOT/bench/results/$RUN.jsonl
BG_PIDS=()
cleanup() { # on any exit: stop what we started, by PID
    local p
    for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

versions="moongate $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
versions+=", Bun $("$ROOT/bench/peers/node_modules/.bin/bun" --version 2>/dev/null || echo '?')"
versions+=", node $(node --version 2>/dev/null || echo '?')"
versions+=", ws $(sed -n 's/^  "version": "\(.*\)",/\1/p' "$ROOT/bench/peers/node_modules/ws/package.json" 2>/dev/null || echo '?')"
versions+=", libwebsockets $(pkg-config --modversion libwebsockets | sed "s/-$//"), LuaJIT $(pkg-config --modversion luajit)"
machine="$(nproc) cpus ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), Linux $(uname -r)"
"$PY" "$ROOT/bench/report.py" meta --out "$RESULTS" --run "$RUN" "date=$(date -u +%Y-%m-%dT%H:%MZ)" \
    "machine=$machine" "versions=$versions" "rounds=$ROUNDS" "quick=$QUICK" \
    "server_cpu=$SERVER_CPU" "load_cpu=$LOAD_CPU" \
    "load_cpus=$(IFS=,; echo "${LOAD_CPUS[*]}")" "workloads=$WORKLOADS" "servers=$SERVERS"

IFS=, read -r -a servers <<<"$SERVERS"
IFS=, read -r -a workloads <<<"$WORKLOADS"
t_start=$SECONDS
for ((r = 1; r <= ROUNDS; r++)); do
    for w in "${workloads[@]}"; do
        for ((k = 0; k < ${#servers[@]}; k++)); do
            s=${servers[$(((k + r - 1) % ${#servers[@]}))]}
            [[ $w == reload && $s != moongate ]] && continue
            run_cell "$r" "$w" "$s"
        done
    done
done
log "done in $((SECONDS - t_start)) s; raw results: $RESULTS"
echo
"$PY" "$ROOT/bench/report.py" table "$RESULTS" | tee "$LOGDIR/table.md"
