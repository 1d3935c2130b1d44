#!/usr/bin/env bash
# What a BLF subscriber sees when Asterisk restarts (Asterisk must be running;
# run as root; restarts it, so nothing else may use it meanwhile):
#   tests/pbx/tools/blf_restart.sh [--hard] [--call]
# teams-presence (not registered) subscribes to 1001's dialog state; with
# --call, 1002 calls 1001 and 1001 answers first (the call is cut by the
# restart). Then "asterisk.sh restart" (keeps astdb; --hard: SIGKILL). The
# watcher listens until 5 s without NOTIFY, refreshes in its dialog (200 or
# 481?), listens again, unsubscribes. Prints what it received, what astdb held
# before the restart, and the NOTIFY times relative to the restart.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PBX="$HERE/../asterisk.sh"
eval "$(bash "$PBX" env)"
S=127.0.0.1:5060
hard="" call=0
for a in "$@"; do
  case "$a" in
    --hard) hard=--hard ;;
    --call) call=1 ;;
    *) echo "usage: $0 [--hard] [--call]" >&2; exit 2 ;;
  esac
done
pw=$(tr -d '\r\n' <"$PBX_SIP_PASSWORD_FILE")
name="blf-restart${hard:+-hard}$([ "$call" = 1 ] && echo -call)"
log="$PBX_ROOT/sipp/$name.log"
rm -f "$log"
O=(-m 1 -timeout 60 -timeout_error)

if [ "$call" = 1 ]; then
  for e in 1001:5061 1002:5062; do
    bash "$PBX" sipp -sf register.xml -s "${e%:*}" -au "${e%:*}" -ap "pw${e%:*}" -key expires 600 \
      -p "${e#*:}" "${O[@]}" "$S" >/dev/null 2>&1 || echo "register ${e%:*} failed" >&2
  done
fi
bash "$PBX" sipp -sf subscribe_dialog.xml -s 1001 -key user "$PBX_SIP_USER" -au "$PBX_SIP_USER" \
  -ap "$pw" -key expires 600 -set idle_ticks 20 -p 5065 "${O[@]}" \
  -trace_msg -message_file "/sipp/$name.log" "$S" >/dev/null 2>&1 &
w=$!
for _ in $(seq 60); do grep -q '^NOTIFY' "$log" 2>/dev/null && break; sleep 0.05; done
if [ "$call" = 1 ]; then
  bash "$PBX" sipp -sf uas.xml -p 5061 -d 200 "${O[@]}" "$S" >/dev/null 2>&1 &
  bash "$PBX" sipp -sf uac.xml -s 1001 -key caller 1002 -au 1002 -ap pw1002 -p 5062 -d 30000 \
    "${O[@]}" "$S" >/dev/null 2>&1 &
  for _ in $(seq 100); do grep -q '<state>confirmed' "$log" 2>/dev/null && break; sleep 0.05; done
fi
echo "astdb before the restart:"
bash "$PBX" cli 'database show subscription_persistence' | sed 's/^/  /' | cut -c1-160
t=$(date +%s.%N)
echo "restart ${hard:-(clean)} at $(date -u +%T.%N | cut -c1-12)"
bash "$PBX" restart $hard 2>&1 | sed 's/^/  /'
echo "restarted after $(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"
wait "$w"; echo "watcher exit status $?"
python3 "$HERE/sip_log.py" "$log"
echo "received NOTIFYs (UTC):"
grep -B3 '^NOTIFY' "$log" | grep -oE '^-+ \S+' | sed 's/^-* /  /'
if [ "$call" = 1 ]; then
  # The SIPp call legs lost their call; stop them (our own background jobs).
  for j in $(jobs -p); do kill "$j" 2>/dev/null; done
fi
wait 2>/dev/null
