#!/usr/bin/env bash
# run.sh — install what is missing, build, and start moongate with the
# default config (chat + echo on ws://127.0.0.1:8080/ws, page on
# http://127.0.0.1:8080/, admin on http://127.0.0.1:9090).
# Extra arguments go to moongate, e.g. ./run.sh -c my.yaml
set -euo pipefail
cd "$(dirname "$0")"
tools/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 --target moongate
if [[ $# -eq 0 ]]; then
    set -- -c conf/moongate.yaml
fi
exec build/moongate "$@"
