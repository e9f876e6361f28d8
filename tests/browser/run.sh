#!/usr/bin/env bash
# tests/browser/run.sh — the real-browser test of examples/chat (run.js).
#
#   MOONGATE_BIN=build/moongate tests/browser/run.sh
#   MOONGATE_SCREENSHOT=1 ...      also write examples/chat/screenshot.png
#
# Needs node + npm and Debian's /usr/bin/chromium (tools/deps.sh --test
# installs them).  Installs playwright-core from package-lock.json into
# tests/browser/node_modules when it is missing or not the locked version;
# no browser is ever downloaded.  Registered with ctest as browser.chat.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

fail() { echo "browser: $*" >&2; echo "browser: 0 passed, 1 failed"; exit 1; }

bin=${MOONGATE_BIN:-$here/../../build/moongate}
[[ -x $bin ]] || fail "no moongate binary at $bin (set MOONGATE_BIN)"
MOONGATE_BIN=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
export MOONGATE_BIN
command -v node >/dev/null && command -v npm >/dev/null || fail "node and npm needed: run tools/deps.sh --test"
[[ -x /usr/bin/chromium ]] || fail "/usr/bin/chromium missing: run tools/deps.sh --test"

cd "$here"
installed() {
    local want have
    want=$(node -p 'require("./package-lock.json").packages["node_modules/playwright-core"].version')
    have=$(node -p 'require("./node_modules/playwright-core/package.json").version' 2>/dev/null || true)
    [[ -n $have && $have == "$want" ]]
}
if ! installed; then
    # under a lock: two runs at once (ctest -j) must not both write node_modules
    (
        flock 9
        installed || PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >&2
    ) 9<package.json || fail "npm ci failed"
    installed || fail "playwright-core not installed after npm ci"
fi

exec node run.js
