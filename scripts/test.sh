#!/usr/bin/env bash
# The whole test suite: what a newcomer runs, and what CI runs (.ci/run).
# Installs what the tests need that cargo does not bring, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need python3; then
    echo "test.sh: python3 (with venv) is needed for the Graph SDK probe (apt-get install python3-venv)" >&2
    exit 1
fi
if ! need systemd-analyze; then
    echo "test.sh: systemd-analyze is needed for the unit hardening test (apt-get install systemd)" >&2
    exit 1
fi

if need cargo-nextest; then
    cargo nextest run --workspace --locked --no-fail-fast
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast
fi

# The emulator must stay faithful to Graph: Microsoft's own SDK parses what it answers.
echo "== Graph emulator against Microsoft's Graph SDK (tests/sdk-probe)"
./tests/sdk-probe/run.sh
