#!/usr/bin/env bash
# tools/deps.sh — install the Debian packages moongate needs, if missing.
#   tools/deps.sh          build and run dependencies
#   tools/deps.sh --test   also what the test suite uses
#   tools/deps.sh --autobahn  also what tools/autobahn.sh needs (not the suite
#                             itself: docs/testing.md says how to get it)
# Idempotent: when everything is installed it only asks dpkg and exits.
set -euo pipefail

pkgs=(build-essential cmake pkg-config libwebsockets-dev libluajit-5.1-dev luajit lua-cjson
      libyaml-dev libssl-dev librabbitmq-dev liburing-dev zlib1g-dev)
if [[ "${1:-}" == "--test" ]]; then
    pkgs+=(python3 python3-websockets python3-pytest python3-yaml openssl curl)
    # gw.jwt's tests make their tokens with an independent implementation
    pkgs+=(python3-jwt python3-cryptography)
    # the broker tests start a real RabbitMQ (never a mock) and publish with pika
    pkgs+=(rabbitmq-server python3-pika)
    # test_monitoring checks examples/monitoring's rules with promtool
    pkgs+=(prometheus)
    # test_package: cpack's Depends (dpkg-shlibdeps), `systemd-analyze verify`
    # on the unit (the package installs without running systemd), man -l
    pkgs+=(dpkg-dev systemd man-db groff-base)
    # test_control runs packaging/moongate.logrotate through the real logrotate
    pkgs+=(logrotate)
    # the browser test (tests/browser): Debian's Chromium, driven by playwright-core
    # from npm.  Node.js + npm only when missing: a machine may have its own
    # (e.g. NodeSource's nodejs, which ships npm and conflicts with Debian's).
    pkgs+=(chromium)
    command -v node >/dev/null || pkgs+=(nodejs)
    command -v npm >/dev/null || pkgs+=(npm)
fi
if [[ "${1:-}" == "--autobahn" ]]; then
    pkgs+=(python3 openssl python3-autobahn python3-twisted python3-jinja2)
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
