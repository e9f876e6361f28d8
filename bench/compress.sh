#!/usr/bin/env bash
# bench/compress.sh — permessage-deflate benchmarks (issue 20) in one command:
#
#   bench/compress.sh [--rounds N] [--quick] [--scenarios chat,idle] [--servers LIST]
#                     [--conns N] [--rate R] [--seconds T] [--idle-conns N]
#                     [--takeover-conns N]
#
# chat: a chat room of CONNS clients (default 1,000) in one wsload on cpu 1; RATE
#   JSON chat messages/s in all (default 100: each client sends one every 10 s), each
#   sent to every member, the sender included (moongate: bench/scripts/chat.lua,
#   gw.broadcast; Bun: server.publish to a topic every member joined).  Measured over
#   T seconds (default 10, after 2 s of warm-up): bytes on the wire per message in
#   each direction (data frames with their headers), server CPU per delivery (utime +
#   stime of the server's PID over the window ÷ deliveries in it), fan-out latency
#   p50/p99 (receive time − the send stamp in the message), and both sides' CPU use.
#   Servers (--servers): moongate-deflate (listen[].compression on, the defaults),
#   bun-deflate (perMessageDeflate: true), moongate-plain and bun-plain (compression
#   off: the baseline).  wsload offers "permessage-deflate; client_max_window_bits"
#   to the deflate servers and nothing to the plain ones.
# idle: IDLE_CONNS clients (default 10,000) each send one chat message, get its echo,
#   then hold until every one was pinged; server RSS added per connection.  Servers:
#   moongate-plain, moongate-deflate (no context takeover, the default), bun-deflate,
#   and moongate-takeover (context takeover both ways, default window bits and
#   mem_level) with TAKEOVER_CONNS (default 1,000: ~300 KB each on both sides).
#
# Each cell starts its server fresh, pinned to cpu 0 on a free port, wsload pinned to
# cpu 1; rounds interleave the servers (order rotated each round).  Prints markdown
# tables (medians over rounds, min–max) and keeps bench/results/compress-RUN.jsonl and
# the logs in bench/results/compress-RUN/.  --quick: 1 round, 50 clients, 10 msg/s,
# 3 s windows, 500 idle (200 with takeover), options after --quick override these:
# checks that everything works, figures are rough.  Run it on a quiet machine with at least 2 cpus; the full default run
# (3 rounds) takes about 6 minutes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"

SCENARIOS=chat,idle ROUNDS=3 QUICK=0 SERVERS=""
CONNS=1000 RATE=100 SECONDS_T=10 WARMUP=2 IDLE_CONNS=10000 TAKEOVER_CONNS=1000
ALL_CHAT=moongate-deflate,bun-deflate,moongate-plain,bun-plain
ALL_IDLE=moongate-plain,moongate-deflate,moongate-takeover,bun-deflate

usage() {
    sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-0}"
}
while [[ $# -gt 0 ]]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --quick) # presets; options after it override them
        QUICK=1 ROUNDS=1 CONNS=50 RATE=10 SECONDS_T=3 WARMUP=1 IDLE_CONNS=500 TAKEOVER_CONNS=200
        shift ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --servers) SERVERS=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --seconds) SECONDS_T=$2; shift 2 ;;
    --idle-conns) IDLE_CONNS=$2; shift 2 ;;
    --takeover-conns) TAKEOVER_CONNS=$2; shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "compress.sh: unknown option $1" >&2; usage 2 ;;
    esac
done
for v in ROUNDS CONNS IDLE_CONNS TAKEOVER_CONNS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "compress.sh: bad ${v,,}" >&2; exit 2; }
done
((ROUNDS <= 20 && CONNS <= 18000 && IDLE_CONNS <= 18000 && TAKEOVER_CONNS <= 18000)) ||
    { echo "compress.sh: at most 20 rounds and 18,000 connections (one wsload)" >&2; exit 2; }
[[ $RATE =~ ^[0-9]+(\.[0-9]+)?$ && $SECONDS_T =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
    { echo "compress.sh: --rate and --seconds are numbers" >&2; exit 2; }
(($(nproc) >= 2)) || { echo "compress.sh: needs 2 cpus" >&2; exit 2; }

# ---------- build ----------
log "building moongate and wsload"
"$ROOT/tools/deps.sh"
if [[ ! -f $ROOT/build/CMakeCache.txt ]]; then
    cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$ROOT/build" -j2 --target moongate >/dev/null
make -s -C "$ROOT/bench" wsload
peers=$ROOT/bench/peers
if [[ ! -x $peers/node_modules/.bin/bun ||
    $peers/package-lock.json -nt $peers/node_modules/.package-lock.json ]]; then
    log "npm ci in bench/peers"
    (cd "$peers" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

RUN=compress-$(date +%Y%m%d-%H%M%S)
export LOGDIR=$ROOT/bench/results/$RUN
mkdir -p "$LOGDIR"
RESULTS=$ROOT/bench/results/$RUN.jsonl
BG_PIDS=()
cleanup() {
    local p
    for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One JSON line per cell: the scenario, the server, the round, how the server ended,
# the extra figures given as key=value, and wsload's result.
record() { # SCENARIO SERVER ROUND WSLOAD_JSON [KEY=VALUE...]
    "$PY" - "$@" >>"$RESULTS" <<'EOF'
import json, sys
scenario, server, rnd, path = sys.argv[1:5]
rec = {"scenario": scenario, "server": server, "round": int(rnd)}
for kv in sys.argv[5:]:
    k, v = kv.split("=", 1)
    try:
        rec[k] = float(v)
    except ValueError:
        rec[k] = v
try:
    with open(path) as f:
        rec["wsload"] = json.loads(f.read().strip().splitlines()[-1])
except (OSError, ValueError, IndexError) as e:
    rec["wsload"] = None
    rec["problem"] = "no wsload result (%s)" % e
print(json.dumps(rec))
EOF
}

deflate_args() { [[ $1 == *-plain ]] || echo --deflate; }

cell_chat() { # ROUND SERVER
    local tag="r$1-chat-$2" stop
    log "round $1: chat on $2 ($CONNS clients, $RATE msg/s)"
    if ! start_server "$2" chat "$tag"; then
        record chat "$2" "$1" /dev/null stop="did not start"
        return
    fi
    take_src
    # shellcheck disable=SC2046  # deflate_args is one word or none
    taskset -c "$LOAD_CPU" "$ROOT/bench/wsload" -u "ws://127.0.0.1:$SERVER_PORT/" -c "$CONNS" \
        --chat "$RATE" -t "$SECONDS_T" -w "$WARMUP" --connect-timeout 30 --src "$SRC" \
        --cpu-pid "$SERVER_PID" $(deflate_args "$2") --json \
        >"$LOGDIR/$tag.wsload.json" 2>"$LOGDIR/$tag.wsload.err" || true
    stop_server
    stop=$STOP_STATUS
    record chat "$2" "$1" "$LOGDIR/$tag.wsload.json" stop="$stop"
}

cell_idle() { # ROUND SERVER
    local tag="r$1-idle-$2" n=$IDLE_CONNS before after pid waited
    [[ $2 == moongate-takeover ]] && n=$TAKEOVER_CONNS
    log "round $1: idle on $2 ($n clients)"
    if ! start_server "$2" idle "$tag"; then
        record idle "$2" "$1" /dev/null stop="did not start" conns="$n"
        return
    fi
    before=$(rss_kb "$SERVER_PID")
    rm -f "$LOGDIR/$tag.status"
    take_src
    # shellcheck disable=SC2046
    taskset -c "$LOAD_CPU" "$ROOT/bench/wsload" -u "ws://127.0.0.1:$SERVER_PORT/" -c "$n" \
        --idle --hello -t 120 --connect-timeout 60 --src "$SRC" \
        --status "$LOGDIR/$tag.status" $(deflate_args "$2") --json \
        >"$LOGDIR/$tag.wsload.json" 2>"$LOGDIR/$tag.wsload.err" &
    pid=$!
    BG_PIDS=("$pid")
    for ((waited = 0; waited < 900; waited++)); do # 90 s at most
        grep -qs pinged "$LOGDIR/$tag.status" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    after=$(rss_kb "$SERVER_PID")
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || true
    BG_PIDS=()
    stop_server
    record idle "$2" "$1" "$LOGDIR/$tag.wsload.json" stop="$STOP_STATUS" conns="$n" \
        rss_before_kb="$before" rss_after_kb="$after" \
        pinged="$(grep -qs pinged "$LOGDIR/$tag.status" && echo yes || echo no)"
}

machine="$(nproc) cpus ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), Linux $(uname -r)"
printf '{"meta":true,"date":"%s","machine":"%s","moongate":"%s","bun":"%s","conns":%s,"rate":%s,"seconds":%s,"idle_conns":%s,"takeover_conns":%s,"rounds":%s,"quick":%s}\n' \
    "$(date -u +%Y-%m-%dT%H:%MZ)" "$machine" "$(git -C "$ROOT" rev-parse --short HEAD)" \
    "$("$peers/node_modules/.bin/bun" --version)" "$CONNS" "$RATE" "$SECONDS_T" "$IDLE_CONNS" \
    "$TAKEOVER_CONNS" "$ROUNDS" "$QUICK" >"$RESULTS"

for ((r = 1; r <= ROUNDS; r++)); do
    for sc in ${SCENARIOS//,/ }; do
        case $sc in
        chat) list=${SERVERS:-$ALL_CHAT} ;;
        idle) list=${SERVERS:-$ALL_IDLE} ;;
        *) echo "compress.sh: unknown scenario $sc" >&2; exit 2 ;;
        esac
        IFS=, read -r -a servers <<<"$list"
        for ((k = 0; k < ${#servers[@]}; k++)); do
            s=${servers[$(((k + r - 1) % ${#servers[@]}))]}
            "cell_$sc" "$r" "$s"
        done
    done
done
log "raw results: $RESULTS"
echo
"$PY" "$ROOT/bench/compress_report.py" "$RESULTS" | tee "$LOGDIR/table.md"
