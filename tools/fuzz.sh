#!/usr/bin/env bash
# tools/fuzz.sh — fuzz moongate's input parsers with libFuzzer.
#
#   tools/fuzz.sh                  every target, 10 minutes each, 2 at a time
#   tools/fuzz.sh wsrx config      those targets
#   FUZZ_SECONDS=60 tools/fuzz.sh  a shorter run
#
# Targets (tests/fuzz/fuzz_*.c): wsrx (the frame reader), handshake (the
# upgrade header checks), config (config_load), utf8 (the validator against
# a reference decoder), admin (the admin API's decisions), jwt (gw.jwt's
# token verification), pmd (permessage-deflate: offer negotiation, and
# inflate checked by a round trip through zlib).  Each starts from
# its seed corpus in tests/fuzz/corpus/TARGET and writes what it finds new
# to build-fuzz/corpus/TARGET (copy inputs worth keeping into the seed
# corpus: ctest replays it on every build).  A crash leaves
# build-fuzz/crash-* and the log build-fuzz/TARGET.log; the script exits 1.
# Installs clang and its libFuzzer runtime (Debian's clang, libclang-rt-dev)
# if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
need=()
command -v clang >/dev/null || need+=(clang)
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 ||
    need+=(libclang-rt-14-dev)
if [[ ${#need[@]} -gt 0 ]]; then
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

seconds=${FUZZ_SECONDS:-600}
jobs=${FUZZ_JOBS:-2}
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(wsrx handshake config utf8 admin jwt pmd)

CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOONGATE_FUZZ=ON \
    -DMOONGATE_SANITIZE=ON >/dev/null
cmake --build build-fuzz -j2 --target "${targets[@]/#/fuzz_}" >/dev/null

fuzz_one() {
    local t=$1 out=build-fuzz/corpus/$1
    mkdir -p "$out"
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        build-fuzz/tests/fuzz_"$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix=build-fuzz/crash-"$t"- -print_final_stats=1 \
        "$out" tests/fuzz/corpus/"$t" >build-fuzz/"$t".log 2>&1
}

status=0
running=0
for t in "${targets[@]}"; do
    fuzz_one "$t" &
    running=$((running + 1))
    if ((running >= jobs)); then
        wait -n || status=1
        running=$((running - 1))
    fi
done
while ((running > 0)); do
    wait -n || status=1
    running=$((running - 1))
done
for t in "${targets[@]}"; do
    printf '%-10s %s\n' "$t" "$(grep -E '^stat::number_of_executed_units|^Done|ERROR' build-fuzz/"$t".log | tr '\n' ' ')"
done
exit $status
