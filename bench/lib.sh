# shellcheck shell=bash
# shellcheck disable=SC2034  # STOP_STATUS, LOAD_CPU, ... are read by the scripts that source this
# bench/lib.sh — shell functions shared by bench/run.sh and bench/reload.sh (sourced).
#
# Servers are started pinned to cpu 0 on a free loopback port, waited for with a
# connect probe, and stopped by the PID we started (SIGTERM, then SIGKILL after
# 10 s).  Every wait is bounded.  Needs ROOT (the repository) and LOGDIR set.

PY=/usr/bin/python3
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SERVER_PID=
SERVER_PORT=
STOP_STATUS=
SRC_N=${SRC_N:-0}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# A port in 20000–32767 (below the ephemeral range) that nothing is bound to.
free_port() {
    "$PY" - <<'EOF'
import random, socket, sys
for _ in range(200):
    port = random.randint(20000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    sys.exit(0)
sys.exit("no free port")
EOF
}

# The next unused loopback source address (127.0.X.Y, never 127.0.0.1), so that
# successive runs never reuse a (source, port) pair still in TIME_WAIT.  next_src
# prints it, but as "$(next_src)" it runs in a subshell and SRC_N does not advance:
# take_src sets SRC and advances SRC_N in the calling shell.
next_src() {
    SRC_N=$((SRC_N + 1))
    echo "127.0.$((1 + SRC_N / 250)).$((2 + SRC_N % 250))"
}
take_src() {
    SRC_N=$((SRC_N + 1))
    SRC="127.0.$((1 + SRC_N / 250)).$((2 + SRC_N % 250))"
}

# The command line that starts server $1 (moongate | bun | lws | node, or for
# compress.sh moongate-plain | moongate-deflate | moongate-takeover | bun-deflate |
# bun-plain) on port $2 for
# workload $3: moongate runs bench/scripts/broadcast.lua for broadcast, echo.lua else;
# the lws peer turns its (costly) validity pings on for the idle workload only.
server_cmd() {
    local script=echo ping=
    [[ $3 == broadcast ]] && script=broadcast
    [[ $3 == idle ]] && ping=ping
    case "$1" in
    moongate)
        echo "$ROOT/build/moongate -c $ROOT/bench/conf/bench.yaml --listen 127.0.0.1:$2" \
            "--script $ROOT/bench/scripts/$script.lua"
        ;;
    bun) echo "$ROOT/bench/peers/node_modules/.bin/bun $ROOT/bench/peers/bun-server.js $2" ;;
    # bench/compress.sh: chat (a room, chat.lua / Bun's chat modes) or idle (echo)
    moongate-plain | moongate-deflate | moongate-takeover)
        local conf=bench chat=echo
        [[ $1 == moongate-deflate ]] && conf=deflate
        [[ $1 == moongate-takeover ]] && conf=deflate-takeover
        [[ $3 == chat ]] && chat=chat
        echo "$ROOT/build/moongate -c $ROOT/bench/conf/$conf.yaml --listen 127.0.0.1:$2" \
            "--script $ROOT/bench/scripts/$chat.lua"
        ;;
    bun-deflate | bun-plain)
        local m=deflate
        [[ $1 == bun-plain ]] && m=""
        [[ $3 == chat ]] && m=${m:+chat} && m=${m:-chat-plain}
        echo "$ROOT/bench/peers/node_modules/.bin/bun $ROOT/bench/peers/bun-server.js $2 $m"
        ;;
    node) echo "node $ROOT/bench/peers/node-ws-server.js $2" ;;
    lws) echo "$ROOT/bench/peers/lws-echo $2 $ping" ;;
    *) return 1 ;;
    esac
}

# Waits (≤ 15 s) until something accepts on 127.0.0.1:$1 while PID $2 lives.
wait_port() {
    local i
    for ((i = 0; i < 150; i++)); do
        kill -0 "$2" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# start_server NAME WORKLOAD TAG: sets SERVER_PID and SERVER_PORT; its output goes to
# $LOGDIR/TAG.server.log.
start_server() {
    local cmd
    SERVER_PORT=$(free_port)
    cmd=$(server_cmd "$1" "$SERVER_PORT" "$2")
    # shellcheck disable=SC2086  # the command is split on purpose
    taskset -c "$SERVER_CPU" $cmd >"$LOGDIR/$3.server.log" 2>&1 &
    SERVER_PID=$!
    if ! wait_port "$SERVER_PORT" "$SERVER_PID"; then
        log "$1 did not start (see $LOGDIR/$3.server.log)"
        stop_server
        return 1
    fi
}

# Stops the server we started; sets STOP_STATUS to how it ended: "exit N", or
# "died N" when it had exited before we asked (a crash), or "killed" when it was still
# there 10 s after SIGTERM.  Not to be called in a subshell (it waits for the PID).
stop_server() {
    local pid=$SERVER_PID i rc=0
    SERVER_PID=
    STOP_STATUS="not started"
    [[ -n $pid ]] || return 0
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" || rc=$?
        STOP_STATUS="died $rc"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        STOP_STATUS="killed"
        return 0
    fi
    wait "$pid" || rc=$?
    STOP_STATUS="exit $rc"
}

# VmRSS of PID $1 in kB, or 0.
rss_kb() {
    awk '/^VmRSS:/ { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" \
        2>/dev/null || echo 0
}

# utime + stime of PID $1 in clock ticks (fields 14 and 15 of /proc/PID/stat, which
# count every thread of the process; `getconf CLK_TCK` per second), or nothing when
# the process is gone.  Field 2 (the name, in parentheses) may hold spaces: the fields
# are counted from the last ')'.
cpu_ticks() {
    local stat f
    { stat=$(<"/proc/$1/stat"); } 2>/dev/null || return 0
    read -r -a f <<<"${stat##*) }" # f[0] is field 3 (state)
    echo $((f[11] + f[12]))
}

# Expands a cpu list (1 | 1-7 | 1,2,3 | 1-3,6) to one cpu per line, in order, without
# repeats; fails on anything else.
expand_cpus() {
    local part a b c seen=,
    for part in ${1//,/ }; do
        if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
            a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
        elif [[ $part =~ ^[0-9]+$ ]]; then
            a=$part b=$part
        else
            return 1
        fi
        ((a <= b)) || return 1
        for ((c = a; c <= b; c++)); do
            [[ $seen == *,$c,* ]] && continue
            seen+=$c,
            echo "$c"
        done
    done
    [[ $seen != , ]]
}

# Runs wsload pinned to the load cpu.
wsload() {
    taskset -c "$LOAD_CPU" "$ROOT/bench/wsload" "$@"
}

# The kernel's count of connections dropped because a listen queue was full
# (TcpExt ListenOverflows, whole machine): a connect storm's SYNs then wait for
# retransmission (1 s, 3 s, ...).
listen_overflows() {
    awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "ListenOverflows") c = i; h = 1 }
                      else print $c }' /proc/net/netstat
}
