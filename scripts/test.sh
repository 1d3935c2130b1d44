#!/usr/bin/env bash
# The whole test suite: what a newcomer runs, and what CI runs (.ci/run).
# Installs what the tests need that cargo does not bring, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
# Debian packages the tests need: python3 with venv (Graph SDK probe), systemd-analyze
# (unit hardening test), prometheus and promtool (tests/prometheus.rs). Installed when missing
# and we may (root or passwordless sudo), without recommends (nothing else gets started).
missing=()
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
need systemd-analyze || missing+=(systemd)
{ need prometheus && need promtool; } || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    echo "test.sh: installing ${missing[*]}"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" || {
        echo "test.sh: please install: ${missing[*]}" >&2; exit 1; }
fi

# The real test PBX (tests/pbx/README.md): Asterisk + SIPp in a cached Debian root, on
# loopback. Needs root (chroot); tests restart it clean for each scenario. Stopped at exit.
asroot=""; [ "$(id -u)" -eq 0 ] || asroot="sudo -n"
pbx() { $asroot ./tests/pbx/asterisk.sh "$@"; }
echo "== test PBX: install (cached after the first time) and start"
pbx install && pbx start || {
    echo "test.sh: the test Asterisk needs root or passwordless sudo: sudo tests/pbx/asterisk.sh install" >&2
    exit 1; }
trap 'pbx stop >/dev/null 2>&1 || true' EXIT

if need cargo-nextest; then
    cargo nextest run --workspace --locked --no-fail-fast
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast
fi

# The emulator must stay faithful to Graph: Microsoft's own SDK parses what it answers.
echo "== Graph emulator against Microsoft's Graph SDK (tests/sdk-probe)"
./tests/sdk-probe/run.sh
