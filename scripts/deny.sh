#!/usr/bin/env bash
# Supply-chain checks (docs/supply-chain.md): cargo-deny's licenses, bans (one version of each
# crate, but for deny.toml's explained exceptions), sources (crates.io only) and advisories
# (RustSec), with deny.toml. CI runs it (.ci/run); so can anyone, offline.
#
# Installs the pinned cargo-deny from crates.io when that version is not on PATH (about five
# minutes on 2 busy cores; once per machine). Advisories need the RustSec subset that
# scripts/advisory-db.sh finds ($PTP_ADVISORY_DB); without it that one check is skipped,
# loudly, and the other three still run.
set -euo pipefail
cd "$(dirname "$0")/.."

DENY_VERSION="0.20.2"

if [ "$(cargo-deny --version 2>/dev/null)" != "cargo-deny $DENY_VERSION" ]; then
    echo "deny.sh: installing cargo-deny $DENY_VERSION from crates.io"
    start=$(date +%s)
    cargo install cargo-deny --version "$DENY_VERSION" --locked --quiet
    echo "deny.sh: cargo-deny installed in $(($(date +%s) - start)) s"
fi

checks=(bans licenses sources)
if subset="$(scripts/advisory-db.sh find)"; then
    # db-path in deny.toml; target/ is never committed.
    scripts/advisory-db.sh prepare "$subset" target/advisory-dbs
    checks+=(advisories)
else
    echo "deny.sh: ADVISORIES SKIPPED: no RustSec subset found (\$PTP_ADVISORY_DB," \
        "unset); docs/supply-chain.md says how to make one"
fi

# cargo-deny reads the metadata of every crate in Cargo.lock, for every target platform; the
# build fetched only this platform's. Fetch the rest from crates.io first (a clean clone on a
# new machine has none of them).
cargo fetch --locked --quiet

# --offline: never clone the advisory database (github.com is out of reach in CI); the crates
# themselves are already downloaded by the build before this runs.
cargo deny --offline --workspace --locked check --show-stats "${checks[@]}"
