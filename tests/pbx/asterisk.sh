#!/usr/bin/env bash
# tests/pbx/asterisk.sh - the project's test PBX: a real Asterisk (Debian
# package "asterisk") and SIPp (package "sip-tester") in a debootstrapped
# Debian sid root, run with chroot on this host's network, loopback only:
#   SIP/UDP 127.0.0.1:5060 (PJSIP 1001..1004 and 1011; teams-presence for BLF
#   subscriptions), ARI http 127.0.0.1:8088,
#   AMI 127.0.0.1:5038.  Configs: tests/pbx/asterisk/, SIPp: tests/pbx/sipp/,
#   credentials: tests/pbx/credentials/.  See tests/pbx/README.md.
#
# Usage (as root): tests/pbx/asterisk.sh COMMAND [ARGS]
#   install     prepare the root: from the machine-wide cached tarball when
#               there is one (seconds), else debootstrap + apt (about a
#               minute) and then save the cache; nothing to do if the root
#               is already there
#   start       configure, start Asterisk in the background with a clean
#               state (astdb wiped), wait until ARI and AMI answer;
#               --tls DIR also serves ARI over TLS on 127.0.0.1:8089 with
#               DIR/cert.pem (chain) and DIR/key.pem (the tests make them)
#   stop        stop Asterisk (clean shutdown, then TERM/KILL by pid)
#   restart     stop + start, keeping astdb like a real restart does
#               (registrations, Custom: and presence states survive);
#               --hard kills Asterisk with SIGKILL instead of a clean stop;
#               --clean wipes astdb as start does; --tls DIR as for start
#   reload      copy the configs in again and "core reload" (no restart)
#   status      whether it runs; contacts, device states and hints
#   cli CMD..   one Asterisk CLI command (asterisk -rx)
#   sipp ARGS   SIPp inside the root, cwd = the scenarios; -i/-mi/-ci are
#               127.0.0.1 unless given; exec's, so "$!" is sipp's own pid
#   selftest    check everything the tests rely on (tools/selftest.sh, ~15 s):
#               calls, hold, ring, two devices, ARI events, Custom: and
#               presence states, busy-on-busy, BLF dialog subscriptions;
#               --quick: one call only
#   env         print the connection settings as shell assignments
#   run         like start, Asterisk in the foreground (log on stdout)
#   configure   copy configs and scenarios into the root (start does it)
#   pack        save the root as the cached tarball (install does it)
#   uninstall   stop, delete the root (the cached tarball stays)
#
# Environment:
#   PBX_DIR       working dir: root/, pid file, logs (default
#                 <repo>/target/pbx, outside git)
#   PBX_CACHE_DIR where the prepared-root tarball is kept between runs and
#                 clones on this machine (default ~/.cache/pbx-teams-presence)
#   PBX_CACHE     the tarball itself (default PBX_CACHE_DIR/asterisk-root-
#                 <suite>-<recipe>.tar.zst, .tar.gz without zstd)
#   PBX_MIRROR    Debian mirror (default: this machine's main apt source)
#   PBX_SUITE     suite to bootstrap (default sid: bookworm has no asterisk)
#   PBX_KEEP_DB=1 keep astdb on start too
#   PBX_START_TIMEOUT  seconds to wait for readiness (default 30)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
REPO="$(cd "$HERE/../.." && pwd)"
PBX_DIR="$(realpath -m "${PBX_DIR:-$REPO/target/pbx}")"
ROOT="$PBX_DIR/root"
PBX_SUITE="${PBX_SUITE:-sid}"
PACKAGES=(asterisk sip-tester)
# Bump when the way the root is prepared changes: old caches are then ignored.
RECIPE=1
RECIPE_KEY="$PBX_SUITE-r$RECIPE-$(printf '%s\n' "${PACKAGES[@]}" | cksum | cut -d' ' -f1)"
PBX_CACHE_DIR="${PBX_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/pbx-teams-presence}"
if command -v zstd >/dev/null 2>&1; then
  PBX_CACHE="${PBX_CACHE:-$PBX_CACHE_DIR/asterisk-root-$RECIPE_KEY.tar.zst}"
else
  PBX_CACHE="${PBX_CACHE:-$PBX_CACHE_DIR/asterisk-root-$RECIPE_KEY.tar.gz}"
fi
PBX_START_TIMEOUT="${PBX_START_TIMEOUT:-30}"
MARKER="$ROOT/.pbx-root-installed"
PIDFILE="$PBX_DIR/asterisk.pid"
OUTFILE="$PBX_DIR/asterisk.out"
LOGDIR="$PBX_DIR/log"

# What the tests connect to (must match asterisk/*.conf and credentials/).
SIP_ADDR=127.0.0.1:5060
ARI_URL=http://127.0.0.1:8088
ARI_TLS_URL=https://127.0.0.1:8089
# Set by start/restart --tls DIR: the HTTPS listener's certificate and key.
TLS_DIR=""
ARI_USER=pbx-teams-presence
ARI_APP=pbx-teams-presence
AMI_ADDR=127.0.0.1:5038
AMI_USER=pbx-teams-presence

log() { printf '[pbx] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
need_root() { [ "$(id -u)" = 0 ] || die "must run as root (chroot, mounts)"; }
need_installed() { [ -f "$MARKER" ] || die "not installed in $ROOT; run: $SELF install"; }
secret() { tr -d '\r\n' <"$HERE/credentials/$1"; }

# The mirror is whatever this machine's apt already uses for the main archive.
apt_mirror() {
  local uri
  uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | grep -v -- '-security' | grep -oE 'https?://[^ ]+' | head -n 1)
  printf '%s' "${uri%/}"
}

# A command inside the root with a clean environment.
in_root() {
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 "$@"
}

# Same, with /proc and /dev/pts mounted in a private mount namespace: the
# mounts vanish with the process, nothing is ever left mounted below ROOT.
in_root_mounted() {
  unshare --mount --propagation private -- /bin/sh -c '
    r=$1; shift
    mount -t proc proc "$r/proc"
    mount -t devpts -o newinstance,ptmxmode=0666 devpts "$r/dev/pts" 2>/dev/null || true
    exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
      HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"' sh "$ROOT" "$@"
}

remove_root() {
  [ -d "$ROOT" ] || return 0
  local m
  { findmnt -rn -o TARGET | grep -E "^$ROOT(/|$)" || true; } | sort -r |
    while read -r m; do umount -l "$m" || true; done
  rm -rf --one-file-system "$ROOT"
}

ensure_host_tool() { # command package
  command -v "$1" >/dev/null 2>&1 && return 0
  log "installing $2 on the host"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null
}

bootstrap_root() {
  local mirror t
  mirror="${PBX_MIRROR:-$(apt_mirror)}"
  [ -n "$mirror" ] || die "no Debian mirror found in apt sources; set PBX_MIRROR"
  ensure_host_tool debootstrap debootstrap
  t=$(now)
  log "debootstrap $PBX_SUITE (minbase) from $mirror"
  unshare --mount --propagation private -- \
    debootstrap --variant=minbase "$PBX_SUITE" "$ROOT" "$mirror" \
    >"$PBX_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$PBX_DIR/debootstrap.log" >&2; die "debootstrap failed (log: $PBX_DIR/debootstrap.log)"; }
  log "phase debootstrap: $(since "$t") s"

  # No service starts inside the root; a frozen mirror's Release file may be
  # past Valid-Until; no docs, man pages or translations.
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
  chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
  cat >"$ROOT/etc/apt/apt.conf.d/90pbx" <<'EOF'
Acquire::Check-Valid-Until "false";
Acquire::Retries "3";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
  cat >"$ROOT/etc/dpkg/dpkg.cfg.d/90pbx-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  echo "deb $mirror $PBX_SUITE main" >"$ROOT/etc/apt/sources.list"

  t=$(now)
  log "apt-get install ${PACKAGES[*]} (inside the root)"
  { in_root_mounted apt-get update -q &&
    in_root_mounted apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; } \
    >"$PBX_DIR/apt.log" 2>&1 \
    || { tail -20 "$PBX_DIR/apt.log" >&2; die "apt-get failed (log: $PBX_DIR/apt.log)"; }
  in_root apt-get clean
  rm -rf "$ROOT"/var/lib/apt/lists/*
  log "phase apt install: $(since "$t") s"

  # Debian's sample configuration goes aside; ours replaces it on each start.
  mv "$ROOT/etc/asterisk" "$ROOT/etc/asterisk.dist"
  mkdir -p "$ROOT/etc/asterisk"
  # Music on hold from the core prompts (no extra package).
  local s="$ROOT/usr/share/asterisk/sounds/en_US_f_Allison" f
  mkdir -p "$ROOT/var/lib/asterisk/moh"
  for f in tt-monkeys.gsm tt-weasels.gsm; do
    if [ -f "$s/$f" ]; then cp "$s/$f" "$ROOT/var/lib/asterisk/moh/"; fi
  done
  in_root chown -R asterisk:asterisk /var/lib/asterisk/moh
  echo "$RECIPE_KEY; $(in_root dpkg-query -W -f '${Package} ${Version}; ' "${PACKAGES[@]}")$(date -u +%FT%TZ)" >"$MARKER"
}

unpack_cache() {
  local t
  t=$(now)
  log "unpacking cached root $PBX_CACHE"
  mkdir -p "$ROOT"
  case "$PBX_CACHE" in
    *.zst) ensure_host_tool zstd zstd
           tar --numeric-owner -xpf "$PBX_CACHE" -C "$ROOT" -I zstd ;;
    *)     tar --numeric-owner -xpzf "$PBX_CACHE" -C "$ROOT" ;;
  esac
  [ -f "$MARKER" ] || die "cache $PBX_CACHE holds no prepared root; delete it and install again"
  log "phase unpack: $(since "$t") s"
}

cmd_install() {
  need_root
  mkdir -p "$PBX_DIR" "$PBX_CACHE_DIR"
  # One install at a time per cache (several clones may share it).
  exec 8>"$PBX_CACHE_DIR/.lock"
  flock 8
  if [ -f "$MARKER" ] && grep -q "^$RECIPE_KEY;" "$MARKER"; then
    log "already installed in $ROOT ($(cat "$MARKER"))"
    cmd_configure
    return 0
  fi
  is_running && die "Asterisk runs from the old root; stop it first"
  remove_root
  local t0
  t0=$(now)
  if [ -f "$PBX_CACHE" ]; then
    unpack_cache
  else
    bootstrap_root
    [ "${PBX_NO_PACK:-0}" = 1 ] || cmd_pack
  fi
  log "installed in $ROOT: $(cat "$MARKER")"
  log "root $(du -sh --one-file-system "$ROOT" | cut -f1); install took $(since "$t0") s"
  cmd_configure
}

cmd_pack() {
  need_root
  need_installed
  is_running && die "stop Asterisk before packing"
  local t tmp
  t=$(now)
  mkdir -p "$(dirname "$PBX_CACHE")"
  tmp="$PBX_CACHE.tmp.$$"
  local skip=(--exclude='./var/lib/asterisk/astdb.sqlite3*' --exclude='./var/log/asterisk/*'
              --exclude='./run/asterisk/*' --exclude='./sipp/*')
  case "$PBX_CACHE" in
    *.zst) tar --numeric-owner -cpf "$tmp" -C "$ROOT" --one-file-system "${skip[@]}" -I 'zstd -T0 -3' . ;;
    *)     tar --numeric-owner -cpzf "$tmp" -C "$ROOT" --one-file-system "${skip[@]}" . ;;
  esac
  mv "$tmp" "$PBX_CACHE"
  log "packed $PBX_CACHE ($(du -h "$PBX_CACHE" | cut -f1)) in $(since "$t") s"
}

cmd_configure() {
  need_root
  need_installed
  # The passwords live in credentials/ only; the configs name them @ARI_PASSWORD@,
  # @AMI_PASSWORD@, @SIP_PASSWORD@.
  local ari ami sip f
  ari=$(secret ari_password)
  ami=$(secret ami_password)
  sip=$(secret sip_password)
  find "$ROOT/etc/asterisk" -mindepth 1 -maxdepth 1 -type f -delete
  for f in "$HERE"/asterisk/*.conf; do
    sed -e "s|@ARI_PASSWORD@|$ari|g" -e "s|@AMI_PASSWORD@|$ami|g" \
      -e "s|@SIP_PASSWORD@|$sip|g" "$f" \
      >"$ROOT/etc/asterisk/$(basename "$f")"
  done
  chmod 0644 "$ROOT"/etc/asterisk/*.conf
  [ -z "$TLS_DIR" ] || configure_tls
  mkdir -p "$ROOT/sipp"
  find "$ROOT/sipp" -mindepth 1 -maxdepth 1 -type f -name '*.xml' -delete
  sync_scenarios
}

# ARI over TLS too (http.conf #tryincludes http_tls.conf): the certificate and
# key from TLS_DIR, the key readable by Asterisk only. The next configure
# without --tls deletes them with the other files: plain HTTP only again.
configure_tls() {
  local d="$ROOT/etc/asterisk"
  [ -f "$TLS_DIR/cert.pem" ] && [ -f "$TLS_DIR/key.pem" ] ||
    die "--tls $TLS_DIR: needs cert.pem and key.pem there"
  install -m 0644 "$TLS_DIR/cert.pem" "$d/http-tls.crt"
  install -m 0600 "$TLS_DIR/key.pem" "$d/http-tls.key"
  in_root chown asterisk:asterisk /etc/asterisk/http-tls.key
  cat >"$d/http_tls.conf" <<EOF
tlsenable = yes
tlsbindaddr = ${ARI_TLS_URL#https://}
tlscertfile = /etc/asterisk/http-tls.crt
tlsprivatekey = /etc/asterisk/http-tls.key
EOF
  chmod 0644 "$d/http_tls.conf"
}

# Copy changed SIPp scenarios into the root; atomic (rename), so a SIPp
# already running elsewhere never reads a half-written file.
sync_scenarios() {
  local f dst
  for f in "$HERE"/sipp/*.xml; do
    dst="$ROOT/sipp/$(basename "$f")"
    cmp -s "$f" "$dst" && continue
    install -m 0644 "$f" "$dst.tmp.$$"
    mv -f "$dst.tmp.$$" "$dst"
  done
}

read_pid() {
  local p=""
  [ -f "$PIDFILE" ] && p=$(cat "$PIDFILE")
  printf '%s' "$p"
}

# A live process (not a zombie: once Asterisk exits, its ports are free at
# once, but the machine's init may take a second or more to reap it).
alive() { # pid
  local state
  state=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

is_running() {
  local p
  p=$(read_pid)
  [ -n "$p" ] && alive "$p" && [ "$(readlink "/proc/$p/root" 2>/dev/null)" = "$ROOT" ]
}

port_busy() { # proto port
  command -v ss >/dev/null 2>&1 || return 1
  if [ "$1" = udp ]; then ss -Hlnu "sport = :$2" | grep -q .; else ss -Hlnt "sport = :$2" | grep -q .; fi
}

ari_ready() {
  local pw
  pw=$(secret ari_password)
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null -u "$ARI_USER:$pw" "$ARI_URL/ari/asterisk/ping" 2>/dev/null
  else
    python3 - "$ARI_USER:$pw" "$ARI_URL/ari/asterisk/ping" <<'EOF' 2>/dev/null
import base64, sys, urllib.request
r = urllib.request.Request(sys.argv[2])
r.add_header("Authorization", "Basic " + base64.b64encode(sys.argv[1].encode()).decode())
urllib.request.urlopen(r, timeout=2)
EOF
  fi
}

tls_ready() { # the TLS port takes connections (nothing to wait for without --tls)
  [ -z "$TLS_DIR" ] && return 0
  python3 - "${ARI_TLS_URL##*:}" <<'EOF' 2>/dev/null
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
EOF
}

ami_ready() { # the AMI greeting arrives
  python3 - "${AMI_ADDR%:*}" "${AMI_ADDR#*:}" <<'EOF' 2>/dev/null
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
    assert s.recv(64).startswith(b"Asterisk Call Manager")
EOF
}

prepare_start() { # keep_db
  rm -f "$PIDFILE"
  local p
  for p in udp:5060 tcp:8088 tcp:8089 tcp:5038; do
    # A killed Asterisk's leader can be a zombie while its other threads still hold the
    # sockets: give them up to 5 s to go.
    for _ in $(seq 100); do port_busy "${p%:*}" "${p#*:}" || break; sleep 0.05; done
    port_busy "${p%:*}" "${p#*:}" &&
      die "127.0.0.1:${p#*:}/${p%:*} is in use (another Asterisk, maybe another checkout's? its PBX_DIR's asterisk.sh stop)"
  done
  cmd_configure
  in_root install -d -o asterisk -g asterisk -m 0755 /run/asterisk
  rm -f "$ROOT/run/asterisk/asterisk.pid" "$ROOT/run/asterisk/asterisk.ctl"
  if [ "$1" != 1 ]; then
    rm -f "$ROOT"/var/lib/asterisk/astdb.sqlite3*
  fi
  : >"$ROOT/var/log/asterisk/messages.log"
  in_root chown asterisk:asterisk /var/log/asterisk/messages.log
  mkdir -p "$LOGDIR"
}

cmd_run() {
  need_root
  need_installed
  is_running && die "already running in the background (pid $(read_pid)); stop it first"
  prepare_start "${PBX_KEEP_DB:-0}"
  log "Asterisk in the foreground (Ctrl-C stops it)"
  exec unshare --mount --propagation private -- /bin/sh -c '
    mount -t proc proc "$1/proc"
    exec chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
      /usr/sbin/asterisk -f -n -vvv -U asterisk -G asterisk' sh "$ROOT"
}

cmd_start() { # [keep_db]
  need_root
  need_installed
  if is_running; then
    log "already running (pid $(read_pid))"
    return 0
  fi
  prepare_start "${1:-${PBX_KEEP_DB:-0}}"

  local t0 launcher p=""
  t0=$(now)
  # Foreground Asterisk (-f) in its own session and private mount namespace
  # (with /proc); unshare, sh and chroot all exec, so the pid is Asterisk's.
  setsid -w unshare --mount --propagation private -- /bin/sh -c '
    mount -t proc proc "$1/proc"
    exec chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
      /usr/sbin/asterisk -f -n -U asterisk -G asterisk' sh "$ROOT" \
    >"$OUTFILE" 2>&1 </dev/null &
  launcher=$!
  local deadline=$(( $(date +%s) + PBX_START_TIMEOUT ))
  while :; do
    if [ -z "$p" ] && [ -s "$ROOT/run/asterisk/asterisk.pid" ]; then
      p=$(cat "$ROOT/run/asterisk/asterisk.pid")
      echo "$p" >"$PIDFILE"
    fi
    if [ -n "$p" ] && in_root asterisk -rx 'core waitfullybooted' >/dev/null 2>&1 &&
       ari_ready && ami_ready && tls_ready; then
      break
    fi
    if ! alive "$launcher" && { [ -z "$p" ] || ! alive "$p"; }; then
      tail -20 "$OUTFILE" >&2 || true
      die "Asterisk exited during start (see $OUTFILE and $ROOT/var/log/asterisk/messages.log)"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail -20 "$ROOT/var/log/asterisk/messages.log" >&2 || true
      cmd_stop || true
      die "Asterisk not ready after ${PBX_START_TIMEOUT}s"
    fi
    sleep 0.05
  done
  log "Asterisk ready (pid $p) in $(since "$t0") s: SIP udp $SIP_ADDR, ARI $ARI_URL/ari (app $ARI_APP)${TLS_DIR:+ and $ARI_TLS_URL/ari}, AMI $AMI_ADDR"
}

cmd_stop() { # [hard]
  need_root
  local p _
  p=$(read_pid)
  if ! is_running; then
    log "not running"
    rm -f "$PIDFILE"
    return 0
  fi
  if [ "${1:-}" = hard ]; then
    kill -KILL "$p" 2>/dev/null || true
  else
    in_root asterisk -rx 'core stop now' >/dev/null 2>&1 || true
  fi
  for _ in $(seq 200); do alive "$p" || break; sleep 0.05; done
  if alive "$p"; then
    log "clean stop timed out; sending TERM to $p"
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 50); do alive "$p" || break; sleep 0.1; done
    if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
    for _ in $(seq 50); do alive "$p" || break; sleep 0.1; done
  fi
  rm -f "$PIDFILE" "$ROOT/run/asterisk/asterisk.ctl"
  log "stopped (pid $p)"
}

cmd_restart() {
  local how=clean keep=1
  while [ $# -gt 0 ]; do
    case "$1" in
      --hard) how=hard ;;
      --clean) keep=0 ;;
      --tls) tls_option "${2:-}"; shift ;;
      *) die "restart: unknown option $1" ;;
    esac
    shift
  done
  if [ "$how" = hard ]; then cmd_stop hard; else cmd_stop; fi
  cmd_start "$keep"
}

tls_option() { # DIR
  [ -n "$1" ] && [ -d "$1" ] || die "--tls needs a directory with cert.pem and key.pem"
  TLS_DIR="$(realpath "$1")"
}

cmd_status() {
  need_root
  if [ ! -f "$MARKER" ]; then
    echo "not installed (root would be $ROOT; cache $PBX_CACHE$([ -f "$PBX_CACHE" ] && echo ' present'))"
    return 3
  fi
  echo "installed: $ROOT ($(cat "$MARKER"))"
  if is_running; then
    echo "running: pid $(read_pid)"
    in_root asterisk -rx 'core show uptime' || true
    in_root asterisk -rx 'pjsip show contacts' | sed -n '/Contact:/,$p' || true
    in_root asterisk -rx 'devstate list' | grep -v '^$' || true
    in_root asterisk -rx 'core show hints' || true
  else
    echo "not running"
    return 1
  fi
}

cmd_cli() {
  need_root
  is_running || die "Asterisk is not running"
  in_root asterisk -rx "$*"
}

cmd_sipp() {
  need_root
  need_installed
  local extra=()
  case " $* " in *" -i "*) ;; *) extra+=(-i 127.0.0.1) ;; esac
  case " $* " in *" -mi "*) ;; *) extra+=(-mi 127.0.0.1) ;; esac
  case " $* " in *" -ci "*) ;; *) extra+=(-ci 127.0.0.1) ;; esac
  mkdir -p "$ROOT/sipp"
  sync_scenarios
  exec chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/sipp \
    /bin/sh -c 'cd /sipp && exec sipp "$@"' sh -nostdin "${extra[@]}" "$@"
}

cmd_env() {
  cat <<EOF
PBX_SIP_ADDR=$SIP_ADDR
PBX_ARI_URL=$ARI_URL
PBX_ARI_USER=$ARI_USER
PBX_ARI_PASSWORD_FILE=$HERE/credentials/ari_password
PBX_ARI_APP=$ARI_APP
PBX_AMI_ADDR=$AMI_ADDR
PBX_AMI_USER=$AMI_USER
PBX_AMI_PASSWORD_FILE=$HERE/credentials/ami_password
PBX_SIP_USER=teams-presence
PBX_SIP_PASSWORD_FILE=$HERE/credentials/sip_password
PBX_SIP_BLF_CONTEXT=blf
PBX_DIR=$PBX_DIR
PBX_ROOT=$ROOT
EOF
}

cmd_selftest() { # [--quick]
  need_root
  is_running || die "Asterisk is not running (start it first)"
  PBX_DIR="$PBX_DIR" bash "$HERE/tools/selftest.sh" "$@"
}

cmd_uninstall() {
  need_root
  cmd_stop
  remove_root
  log "removed $ROOT (cache $PBX_CACHE kept)"
}

main() {
  local c="${1:-}"
  [ $# -gt 0 ] && shift
  case "$c" in
    install)   cmd_install ;;
    pack)      cmd_pack ;;
    configure) cmd_configure ;;
    start)     if [ "${1:-}" = --tls ]; then tls_option "${2:-}"; fi; cmd_start ;;
    run)       cmd_run ;;
    stop)      cmd_stop ;;
    restart)   cmd_restart "$@" ;;
    reload)    cmd_configure; cmd_cli 'core reload' ;;
    status)    cmd_status ;;
    cli)       cmd_cli "$@" ;;
    sipp)      cmd_sipp "$@" ;;
    selftest)  cmd_selftest "$@" ;;
    env)       cmd_env ;;
    uninstall) cmd_uninstall ;;
    *) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'
       [ -z "$c" ] || [ "$c" = help ] || [ "$c" = -h ] || [ "$c" = --help ] || exit 2 ;;
  esac
}

main "$@"
