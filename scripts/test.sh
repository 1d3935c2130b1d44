#!/usr/bin/env bash
# The whole test suite: what a newcomer runs, and what CI runs (.ci/run).
# Installs what the tests need that cargo does not bring, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
# Debian packages the tests need: python3 with venv (Graph SDK probe), systemd-analyze
# (unit hardening test), debootstrap and zstd (the Debian roots of tests/pbx and
# tests/systemd), dpkg-deb (the package), prometheus and promtool (tests/prometheus.rs),
# PostgreSQL 15 (the store on PostgreSQL and [ha]: each test starts a private server of its
# own from /usr/lib/postgresql/15/bin; the system's cluster is never started).
# Installed when missing and we may (root or passwordless sudo), without recommends (nothing
# else gets started).
missing=()
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
need systemd-analyze || missing+=(systemd)
need debootstrap || missing+=(debootstrap)
need zstd || missing+=(zstd)
need dpkg-deb || missing+=(dpkg)
{ need prometheus && need promtool; } || missing+=(prometheus)
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
# Debian's postgresql-common makes and starts a "main" cluster at install unless told not to;
# the tests need only the programs.
if [[ " ${missing[*]} " == *" postgresql-15 "* ]] && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo -n"
    $sudo_ mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | $sudo_ tee /etc/postgresql-common/createcluster.conf >/dev/null
fi
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

# The real test SIP server (tests/pbx/README.md, "Kamailio"): Kamailio 5.6 and SIPp from
# Debian's packages (the system service is never started), run on 127.0.0.1:5080; tests
# start it clean for each scenario. Stopped at exit.
kam() { $asroot ./tests/pbx/kamailio.sh "$@"; }
echo "== test SIP server: install Kamailio and SIPp (apt, once)"
kam install || {
    echo "test.sh: Kamailio needs root or passwordless sudo: sudo tests/pbx/kamailio.sh install" >&2
    exit 1; }
trap 'pbx stop >/dev/null 2>&1 || true; kam stop >/dev/null 2>&1 || true' EXIT

# The Debian package (tests/installed_service.rs installs it into a Debian 12 root booted with
# systemd 252: tests/systemd/README.md). cargo-deb is pinned: the package's layout is its.
CARGO_DEB_VERSION=3.8.0
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
    echo "== installing cargo-deb $CARGO_DEB_VERSION"
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi
echo "== cargo deb (release build: fat LTO, one codegen unit)"
t0=$(date +%s)
deb=$(cargo deb --locked | grep '\.deb$' | tail -n 1)
[ -f "$deb" ] || { echo "test.sh: cargo deb made no package ($deb)" >&2; exit 1; }
export PBX_TEAMS_PRESENCE_DEB="$deb"
echo "test.sh: $deb ($(du -h "$deb" | cut -f1)) in $(( $(date +%s) - t0 )) s"
echo "== systemd test root: install (cached after the first time)"
$asroot ./tests/systemd/root.sh install

if need cargo-nextest; then
    cargo nextest run --workspace --locked --no-fail-fast
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast
fi

# The emulator must stay faithful to Graph: Microsoft's own SDK parses what it answers.
echo "== Graph emulator against Microsoft's Graph SDK (tests/sdk-probe)"
./tests/sdk-probe/run.sh
