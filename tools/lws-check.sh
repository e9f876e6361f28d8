#!/usr/bin/env bash
# tools/lws-check.sh — moongate against other libwebsockets builds: for each
# prefix (from tools/lws-build.sh; "system" for the distribution's), build
# moongate against it out of tree, run the test suite, print what /health says
# of the fast paths (src/lws/README.md), and run the bench echo workloads.
#   tools/lws-check.sh [--tests REGEX] [--no-bench] [--out DIR] PREFIX|system ...
#     --tests REGEX  ctest -R filter (default: every test but the browser ones)
#     --no-bench     skip the echo runs
#     --out DIR      builds and logs (default /tmp/moongate-lws-check)
# Prints one summary line per build; exits 1 if any build or test failed.
# Needs what the test suite needs (tools/deps.sh --test) and bench/wsload (make -C bench).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
tests="" bench=1 out=/tmp/moongate-lws-check prefixes=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --tests) tests="${2:?}"; shift 2 ;;
        --no-bench) bench=0; shift ;;
        --out) out="${2:?}"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) prefixes+=("$1"); shift ;;
    esac
done
[[ ${#prefixes[@]} -gt 0 ]] || { echo "lws-check: name at least one prefix (or system)" >&2; exit 2; }
mkdir -p "$out"
[[ $bench == 0 ]] || make -s -C "$ROOT/bench" wsload >/dev/null

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# health BIN: the gateway with the bench config; prints /health's libwebsockets and fast paths.
health() {
    local port admin dir pid body=""
    port=$(free_port) admin=$(free_port) dir=$(mktemp -d)
    printf 'listen:\n  - {host: 127.0.0.1, port: %s, path: /}\nscript: %s\nadmin: {port: %s}\n' \
        "$port" "$ROOT/bench/scripts/echo.lua" "$admin" >"$dir/c.yaml"
    "$1" -c "$dir/c.yaml" >"$dir/log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do
        body=$(curl -s "http://127.0.0.1:$admin/health" 2>/dev/null) && [[ -n $body ]] && break
        sleep 0.1
    done
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    /usr/bin/python3 -c 'import json,sys; h=json.loads(sys.argv[1]); print("lws", h["libwebsockets"], " ".join("%s=%s" % kv for kv in h["fast_paths"].items()))' "$body" \
        || echo "no /health (see $dir/log)"
    grep -h "fast path" "$dir/log" | sed 's/^/    /'
}

# echo BIN CONNS DEPTH SIZE: msgs/s with the server on cpu 0 and wsload on cpu 1.
echo_rate() {
    local port pid rate
    port=$(free_port)
    taskset -c 0 "$1" -c "$ROOT/bench/conf/bench.yaml" --listen "127.0.0.1:$port" \
        --script "$ROOT/bench/scripts/echo.lua" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    rate=$(taskset -c 1 "$ROOT/bench/wsload" -u "ws://127.0.0.1:$port/" -c "$2" -d "$3" -s "$4" \
        -t 3 -w 1 --json 2>/dev/null | /usr/bin/python3 -c 'import json,sys; print(int(json.load(sys.stdin)["msgs_per_s"]))' || echo "?")
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    echo "$rate"
}

failed=0 summary=()
for p in "${prefixes[@]}"; do
    name=$(basename "$p"); [[ $p == system ]] && name=system
    b="$out/build-$name"
    echo "== $name ($p)"
    pc=""; [[ $p == system ]] || pc="$p/lib/pkgconfig"
    if ! PKG_CONFIG_PATH="$pc" cmake -S "$ROOT" -B "$b" >"$out/$name.configure.log" 2>&1 ||
        ! cmake --build "$b" -j2 >"$out/$name.build.log" 2>&1; then
        echo "   build FAILED: $out/$name.build.log"; failed=1; summary+=("$name: build failed"); continue
    fi
    echo "   $(ldd "$b/moongate" | grep -o 'libwebsockets[^ ]* => [^ ]*')"
    h=$(health "$b/moongate")
    echo "   ${h%%$'\n'*}"
    tail -n +2 <<<"$h"
    res=$(cd "$b" && ctest -j2 ${tests:+-R "$tests"} -E '^browser\.' 2>&1 | tee "$out/$name.ctest.log" |
          grep -E "tests passed|tests failed" || true)
    echo "   tests: $res"
    grep -E "\(Failed\)|\(Timeout\)" "$out/$name.ctest.log" | sed 's/^/   /' || true
    grep -q "100% tests passed" "$out/$name.ctest.log" || failed=1
    line="$name: $res"
    if [[ $bench == 1 ]]; then
        e1=$(echo_rate "$b/moongate" 64 1 32) e16=$(echo_rate "$b/moongate" 64 16 32)
        e16k=$(echo_rate "$b/moongate" 8 1 16384)
        echo "   echo msgs/s: 64x1 $e1, 64x16 $e16, 16KiB $e16k"
        line+="; echo 64x1 $e1, 64x16 $e16, 16KiB $e16k msgs/s"
    fi
    summary+=("$line")
done
echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
