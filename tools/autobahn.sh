#!/usr/bin/env bash
# tools/autobahn.sh — Autobahn|Testsuite's fuzzingclient against moongate on its
# three listener kinds: ws:// with moongate's reader, ws:// with
# `reader: libwebsockets`, and wss:// (self-signed certificate made here).
#   tools/autobahn.sh --autobahn DIR [--bin PATH] [--cases LIST | --all]
#                     [--kinds LIST] [--out DIR] [--timeout SECONDS]
#     --autobahn DIR  a working copy of the Python 3 fork
#                     ricardo-valero/autobahn-testsuite (docs/testing.md says
#                     how to get one); it is only read, never changed
#     --bin PATH      the moongate binary (default build/moongate)
#     --cases LIST    comma-separated case patterns, e.g. '12.*,13.*' or
#                     '5.6,5.8,6.4.*' (default: every case but 12.* and 13.*,
#                     i.e. sections 1-7, 9 and 10)
#     --all           every case, 12.* and 13.* (permessage-deflate) included
#     --kinds LIST    which of moongate,libwebsockets,wss to test (default all)
#     --out DIR       where the reports go (default: a new folder under /tmp);
#                     index.json and index.html there
#     --timeout S     bound on the whole wstest run (default 900; 10800 with
#                     --all or when 12/13 are asked for)
# Prints one table per listener kind (tests/autobahn/report.py) and exits 1
# if any case FAILED (2 on a usage or set-up error, 124 if wstest timed out).
# Needs Debian's python3-autobahn, python3-twisted, python3-jinja2 and openssl.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE="$ROOT/tests/autobahn"
PY=/usr/bin/python3
ab="" bin="$ROOT/build/moongate" cases="" all=0 kinds="moongate,libwebsockets,wss" out="" limit=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --autobahn) ab="${2:?}"; shift 2 ;;
        --bin) bin="${2:?}"; shift 2 ;;
        --cases) cases="${2:?}"; shift 2 ;;
        --all) all=1; shift ;;
        --kinds) kinds="${2:?}"; shift 2 ;;
        --out) out="${2:?}"; shift 2 ;;
        --timeout) limit="${2:?}"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "autobahn: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
die() { echo "autobahn: $*" >&2; exit 2; }
[[ -n $ab ]] || die "--autobahn DIR is required (a working copy of the fork; see docs/testing.md)"
# DIR may be the fork's root or its autobahntestsuite/ folder (the one holding the package)
pkg=""
for d in "$ab/autobahntestsuite" "$ab"; do
    [[ -f $d/autobahntestsuite/wstest.py ]] && { pkg=$(cd "$d" && pwd); break; }
done
[[ -n $pkg ]] || die "$ab holds no autobahntestsuite/wstest.py"
[[ -x $bin ]] || die "no moongate binary at $bin (build it, or give --bin)"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
$PY -c 'import autobahn, twisted, jinja2' 2>/dev/null \
    || die "install python3-autobahn python3-twisted python3-jinja2 (apt-get install -y --no-install-recommends ...)"
command -v openssl >/dev/null || die "openssl is needed for the wss certificate"
IFS=, read -r -a kind_list <<<"$kinds"
[[ ${#kind_list[@]} -gt 0 ]] || die "--kinds names none of moongate, libwebsockets, wss"
for k in "${kind_list[@]}"; do
    [[ $k == moongate || $k == libwebsockets || $k == wss ]] || die "--kinds: $k is not moongate, libwebsockets or wss"
done

# cases and exclusions as JSON lists
json_list() { local IFS=,; local out="" p; for p in $1; do out+="${out:+, }\"$p\""; done; echo "[$out]"; }
if [[ $all == 1 ]]; then
    want='["*"]' exclude='[]'
elif [[ -n $cases ]]; then
    want=$(json_list "$cases") exclude='[]'
else
    want='["*"]' exclude='["12.*", "13.*"]'
fi
if [[ -z $limit ]]; then
    limit=900
    [[ $all == 1 || $cases == *12.* || $cases == *13.* ]] && limit=10800
fi

work=$(mktemp -d /tmp/moongate-autobahn.XXXXXX)
out=${out:-$work/reports}
mkdir -p "$out"
out=$(cd "$out" && pwd)
pid=""
finish() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work/gw"
}
trap finish EXIT

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
p_mg=$(free_port) p_lws=$(free_port) p_wss=$(free_port)

# the gateway: config, echo script and a fresh self-signed certificate
mkdir -p "$work/gw"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$work/gw/server.key" -out "$work/gw/server.crt" >/dev/null 2>&1 \
    || die "openssl could not make a certificate"
cp "$HERE/echo.lua" "$work/gw/echo.lua"
sed -e "s|@PORT_MG@|$p_mg|; s|@PORT_LWS@|$p_lws|; s|@PORT_WSS@|$p_wss|" \
    -e "s|@CERT@|server.crt|; s|@KEY@|server.key|" "$HERE/moongate.yaml.in" >"$work/gw/moongate.yaml"
"$bin" -c "$work/gw/moongate.yaml" >"$out/moongate.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    grep -q "moongate ready" "$out/moongate.log" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$out/moongate.log" >&2; die "moongate exited at start"; }
    sleep 0.1
done
grep -q "moongate ready" "$out/moongate.log" || { cat "$out/moongate.log" >&2; die "moongate not ready in 10 s"; }

# the spec: the servers asked for, the cases, the report folder
sed -e "s|@PORT_MG@|$p_mg|; s|@PORT_LWS@|$p_lws|; s|@PORT_WSS@|$p_wss|" \
    -e "s|@OUTDIR@|$out|; s|@CASES@|$want|; s|@EXCLUDE@|$exclude|" \
    "$HERE/fuzzingclient.json.in" >"$work/spec.json"
$PY - "$work/spec.json" "$kinds" <<'EOF' || die "could not write the spec"
import json, sys
path, kinds = sys.argv[1], sys.argv[2].split(",")
agents = {"moongate": "moongate-reader", "libwebsockets": "lws-reader", "wss": "wss"}
spec = json.load(open(path))
spec["servers"] = [s for s in spec["servers"] if s["agent"] in {agents[k] for k in kinds}]
json.dump(spec, open(path, "w"), indent=3)
EOF

echo "autobahn: moongate $bin (pid $pid) on ws:$p_mg (moongate reader), ws:$p_lws (libwebsockets reader), wss:$p_wss"
echo "autobahn: cases $want, excluded $exclude, kinds $kinds; reports in $out (wstest log: $out/wstest.log)"
t0=$(date +%s)
rc=0
# PYTHONDONTWRITEBYTECODE: no __pycache__ written into the working copy
(cd "$work" && PYTHONPATH="$pkg" PYTHONDONTWRITEBYTECODE=1 timeout "$limit" $PY "$HERE/run_wstest.py" -m fuzzingclient \
    -s "$work/spec.json") >"$out/wstest.log" 2>&1 || rc=$?
echo "autobahn: wstest ran $(( $(date +%s) - t0 )) s (exit $rc)"
finish
pid=""
if [[ $rc == 124 ]]; then
    tail -n 20 "$out/wstest.log" >&2
    echo "autobahn: wstest did not finish in $limit s" >&2
    exit 124
fi
[[ -f $out/index.json ]] || { tail -n 40 "$out/wstest.log" >&2; die "wstest wrote no index.json (exit $rc)"; }
$PY "$HERE/report.py" "$out/index.json"
