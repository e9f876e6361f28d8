#!/usr/bin/env bash
# test.sh — install what is missing, build, and run every test with ctest:
# once on the normal build (build/), once with AddressSanitizer + UBSan
# (build-asan/), and the tests that exercise moongate's threads (the hook
# watchdog, the broker link, the reload's config reader) once more with
# ThreadSanitizer (build-tsan/).  Exits non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")"
tools/deps.sh --test

status=0
run_suite() { # dir, ctest regex (empty: all), cmake args...
    local dir=$1 only=$2
    shift 2
    cmake -S . -B "$dir" "$@" >/dev/null
    cmake --build "$dir" -j2
    echo "=== ctest in $dir"
    ctest --test-dir "$dir" -j2 --output-on-failure --timeout 300 ${only:+-R "$only"} || status=1
}
run_suite build "" -DCMAKE_BUILD_TYPE=RelWithDebInfo
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite build-asan "" -DCMAKE_BUILD_TYPE=Debug -DMOONGATE_SANITIZE=ON
TSAN_OPTIONS=halt_on_error=0:second_deadlock_stack=1 \
    run_suite build-tsan '^unit\.|^it\.test_(errors|lua_safety|reload|broker|drain|descriptors|lua_api|workers|cluster)$' \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOONGATE_TSAN=ON
exit $status
