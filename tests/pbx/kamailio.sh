#!/usr/bin/env bash
# The test SIP server for the SIP connector: Kamailio 5.6 from Debian 12's packages
# (kamailio, kamailio-presence-modules, kamailio-tls-modules), run as a plain process on
# 127.0.0.1:5080 (UDP, TCP) and 5090 (TLS) with kamailio/kamailio.cfg. See
# tests/pbx/README.md ("Kamailio").
#
#   tests/pbx/kamailio.sh install    # apt packages (kamailio, presence modules, sip-tester); the
#                                    # system service is never started
#   tests/pbx/kamailio.sh start      # clean state (no registrations, subscriptions,
#                                    # publications), ready when it answers on 5080
#   tests/pbx/kamailio.sh restart    # stop + start: every subscription is forgotten
#   tests/pbx/kamailio.sh stop | status | env
#   tests/pbx/kamailio.sh sipp ARGS  # host SIPp, scenarios from tests/pbx/sipp/
#
# Runtime files: KAM_DIR (default <repo>/target/kamailio): kamailio.cfg (passwords
# substituted), db/ (db_text tables), tls/ (a test CA, ca.pem, and the server's certificate
# for IP 127.0.0.1, made once), kamailio.pid, kamailio.log, sipp logs.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
KAM_DIR=${KAM_DIR:-$REPO/target/kamailio}
PORT=5080
PACKAGES=(kamailio kamailio-presence-modules kamailio-tls-modules sip-tester)

die() { echo "kamailio.sh: $*" >&2; exit 1; }
secret() { tr -d '\r\n' <"$HERE/credentials/$1"; }
pid() { cat "$KAM_DIR/kamailio.pid" 2>/dev/null || true; }
running() { local p; p=$(pid); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

# Whether something listens on UDP 127.0.0.1:$PORT.
bound() {
  local hex; hex=$(printf ':%04X' "$PORT")
  awk -v h="$hex" 'NR > 1 && $2 ~ h"$" { found = 1 } END { exit !found }' /proc/net/udp
}

install() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    # No system service may start on install (it would take 5060 from the test Asterisk).
    local policy=/usr/sbin/policy-rc.d created=
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
    fi
    apt-get update -qq >"${TMPDIR:-/tmp}/kamailio-apt.log" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
      >>"${TMPDIR:-/tmp}/kamailio-apt.log" 2>&1 || { [ -n "$created" ] && rm -f "$policy"; \
        cat "${TMPDIR:-/tmp}/kamailio-apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
    [ -n "$created" ] && rm -f "$policy"
  fi
  if command -v systemctl >/dev/null && systemctl is-active --quiet kamailio 2>/dev/null; then
    systemctl disable --now kamailio >/dev/null 2>&1 || true
  fi
  command -v kamailio >/dev/null || die "kamailio is not installed"
  command -v sipp >/dev/null || die "sipp (sip-tester) is not installed"
}

# The TLS listener's certificate: a test CA of its own (trusted by nobody but the tests,
# which give ca.pem as pbx.ca_file) and a server certificate for IP 127.0.0.1.
certificates() {
  local d="$KAM_DIR/tls"
  [ -s "$d/server.pem" ] && [ -s "$d/ca.pem" ] && return 0
  mkdir -p "$d"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  openssl req -x509 "${ec[@]}" -days 3650 -subj "/CN=pbx-teams-presence test SIP CA" \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  openssl req "${ec[@]}" -subj "/CN=127.0.0.1" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$d/ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 3650 -extfile "$d/ext" -out "$d/server.pem" 2>/dev/null
  cat >"$d/tls.cfg" <<EOF
[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
private_key = $d/server.key
certificate = $d/server.pem

[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
EOF
}

configure() {
  mkdir -p "$KAM_DIR"
  rm -rf "$KAM_DIR/db"
  cp -r /usr/share/kamailio/dbtext/kamailio "$KAM_DIR/db"
  certificates || die "cannot make the TLS certificates (openssl)"
  sed -e "s|@SIP_PASSWORD@|$(secret sip_password)|g" -e "s|@DB_DIR@|$KAM_DIR/db|g" \
    -e "s|@TLS_DIR@|$KAM_DIR/tls|g" \
    "$HERE/kamailio/kamailio.cfg" >"$KAM_DIR/kamailio.cfg"
  kamailio -c -f "$KAM_DIR/kamailio.cfg" >"$KAM_DIR/check.log" 2>&1 \
    || { cat "$KAM_DIR/check.log" >&2; die "kamailio.cfg does not check"; }
}

start() {
  command -v kamailio >/dev/null || die "not installed: run tests/pbx/kamailio.sh install (as root)"
  stop quiet
  bound && die "UDP 127.0.0.1:$PORT is taken by another process"
  configure
  local t0; t0=$(date +%s%N)
  kamailio -f "$KAM_DIR/kamailio.cfg" -P "$KAM_DIR/kamailio.pid" -m 256 -M 16 -E \
    -w "$KAM_DIR" >"$KAM_DIR/kamailio.log" 2>&1 </dev/null
  for _ in $(seq 1 200); do
    if running && bound; then
      local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
      echo "[kamailio] ready (pid $(pid)) in ${ms} ms: SIP udp+tcp 127.0.0.1:$PORT, tls 127.0.0.1:5090"
      return 0
    fi
    sleep 0.05
  done
  tail -20 "$KAM_DIR/kamailio.log" >&2
  die "Kamailio did not start"
}

stop() {
  local p; p=$(pid)
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
    kill "$p"
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$p" 2>/dev/null || true
    # The children exit with the main process; wait for the port.
    for _ in $(seq 1 100); do bound || break; sleep 0.05; done
    [ "${1:-}" = quiet ] || echo "[kamailio] stopped (pid $p)"
  fi
  rm -f "$KAM_DIR/kamailio.pid"
}

case "${1:-help}" in
  install) install ;;
  start) start ;;
  restart) start ;;
  stop) stop ;;
  status) if running; then echo "running (pid $(pid))"; else echo "stopped"; exit 3; fi ;;
  env) echo "KAM_SIP=127.0.0.1:$PORT"; echo "KAM_SIP_TLS=127.0.0.1:5090"
       echo "KAM_SIP_PASSWORD_FILE=$HERE/credentials/sip_password"; echo "KAM_TLS_CA=$KAM_DIR/tls/ca.pem" ;;
  sipp) shift; mkdir -p "$KAM_DIR/sipp"; cd "$HERE/sipp"; exec sipp "$@" ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
