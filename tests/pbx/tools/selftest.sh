#!/usr/bin/env bash
# The test PBX's own check (run by "asterisk.sh selftest"; Asterisk must be
# running). Every step is something the project's tests rely on:
#   calls with SIPp (answered, held, rung and cancelled, two devices of one
#   user), ARI DeviceStateChanged events for all of them, Custom: device
#   states and CustomPresence: presence states written and read back over
#   ARI and AMI, and the busy-on-busy extension refusing a call (486) while
#   the callee's Custom:teams- state is BUSY or INUSE and connecting it when
#   NOT_INUSE. Registrations are removed at the end.
#   BLF (dialog subscriptions, as the daemon's SIP account teams-presence):
#   NOTIFYs of 1002's calls in order (idle, early, confirmed, hold, confirmed,
#   terminated) without REGISTER, a registered subscription, 404 for an
#   extension without hint, the refusal of an endpoint with allow_subscribe=no.
# --quick: only register 1001 + 1002, one answered call, unregister.
set -uo pipefail   # no -e: a failed check is counted, the rest still run

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PBX="$HERE/../asterisk.sh"
LOGDIR="${PBX_DIR:?}/log"
S=127.0.0.1:5060
mkdir -p "$LOGDIR"
rm -f "$LOGDIR"/selftest-*

fails=0
step() { printf '[selftest] %s\n' "$*" >&2; }
fail() { printf '[selftest] FAIL: %s\n' "$*" >&2; fails=$((fails + 1)); }
ari() { python3 "$HERE/ari.py" "$@"; }
ami() { python3 "$HERE/ami_events.py" action "$@"; }

sipp() { # log-name sipp-args...  (quiet; the log is kept)
  local name=$1; shift
  if ! (bash "$PBX" sipp "$@" -timeout 15 -timeout_error "$S" >"$LOGDIR/selftest-sipp-$name.log" 2>&1); then
    fail "sipp $name (log: $LOGDIR/selftest-sipp-$name.log)"
    return 1
  fi
}
sipp_bg() { # log-name sipp-args...; "$!" is the background sipp
  local name=$1; shift
  bash "$PBX" sipp "$@" -timeout 15 -timeout_error "$S" >"$LOGDIR/selftest-sipp-$name.log" 2>&1 &
}
wait_bg() { # pid log-name
  wait "$1" || fail "sipp $2 (log: $LOGDIR/selftest-sipp-$2.log)"
}
register() { sipp "reg$1" -sf register.xml -s "$1" -au "$1" -ap "${3:-pw$1}" -key expires 600 -p "$2" -m 1; }
unregister() { sipp "unreg$1" -sf unregister.xml -s "$1" -au "$1" -ap "${3:-pw$1}" -p "$2" -m 1; }

expect() { # what actual wanted
  if [ "$2" = "$3" ]; then step "ok: $1 = $2"; else fail "$1: got '$2', wanted '$3'"; fi
}
# BLF watchers (sipp/subscribe_dialog.xml); message logs in the root's /sipp.
SIP_PW=$(tr -d '\r\n' <"$HERE/../credentials/sip_password")
BLF="$PBX_DIR/root/sipp"
rm -f "$BLF"/selftest-blf-*.log
watch_bg() { # name ext port idle_ticks [user]; "$!" is the background sipp
  local user=${5:-teams-presence}
  bash "$PBX" sipp -sf subscribe_dialog.xml -s "$2" -key user "$user" -au "$user" -ap "$SIP_PW" \
    -key expires 600 -set idle_ticks "$4" -p "$3" -m 1 -timeout 40 -timeout_error \
    -trace_msg -message_file "/sipp/selftest-blf-$1.log" "$S" >"$LOGDIR/selftest-sipp-blf-$1.log" 2>&1 &
}
blf_log() { python3 "$HERE/sip_log.py" "$BLF/selftest-blf-$1.log" "${@:2}"; }
blf_has() { # name line-regex what
  if blf_log "$1" | grep -E "$2" >/dev/null; then step "ok: BLF $1: $3"; else fail "BLF $1: no $3 (log: $BLF/selftest-blf-$1.log)"; fi
}
wait_notify() { # name: its first NOTIFY came (up to 3 s)
  for _ in $(seq 60); do grep -q '^NOTIFY' "$BLF/selftest-blf-$1.log" 2>/dev/null && return 0; sleep 0.05; done
  fail "BLF $1: no NOTIFY within 3 s"
}

devstate() { ari GET "/deviceStates/$1" | sed -E 's/.*"state":"([A-Z_]+)".*/\1/'; }
amivar() { ami Getvar "Variable=$1" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("Value", ""))'; }

t0=$(date +%s.%N)
if [ "${1:-}" = --quick ]; then
  register 1001 5061; register 1002 5062
  sipp_bg uas -sf uas.xml -p 5062 -d 300 -m 1; uas=$!
  sleep 0.3
  sipp uac -sf uac.xml -s 1002 -key caller 1001 -au 1001 -ap pw1001 -p 5061 -d 500 -m 1
  wait_bg "$uas" uas
  unregister 1001 5061; unregister 1002 5062
else
  # ARI events of everything below, as the daemon's WebSocket would see them.
  python3 "$HERE/ari_events.py" --app selftest --subscribe-all --seconds 60 \
    --out "$LOGDIR/selftest-ari.jsonl" --ready-file "$LOGDIR/selftest-ari.ready" \
    >/dev/null 2>"$LOGDIR/selftest-ari.err" &
  rec=$!
  for _ in $(seq 50); do [ -f "$LOGDIR/selftest-ari.ready" ] && break; sleep 0.1; done

  step "register 1001, 1002, 1011 (Alice's second device)"
  register 1001 5061; register 1002 5062; register 1011 5071

  step "BLF: teams-presence (not registered) subscribes to 1002's dialog state"
  watch_bg 1002 1002 5065 5; blf=$!
  wait_notify 1002

  step "1001 calls 1002: answered, held 1 s, resumed, hung up"
  sipp_bg uas -sf uas.xml -p 5062 -d 300 -m 1; uas=$!
  sleep 0.3
  sipp uac_hold -sf uac_hold.xml -s 1002 -key caller 1001 -au 1001 -ap pw1001 -p 5061 \
    -key talk_ms 500 -key hold_ms 1000 -d 300 -m 1
  wait_bg "$uas" uas

  step "1001 calls 1002: rings 800 ms, never answered, caller gives up"
  sipp_bg uas_ring -sf uas_ring.xml -p 5062 -m 1; uas=$!
  sleep 0.3
  sipp uac_cancel -sf uac_cancel.xml -s 1002 -key caller 1001 -au 1001 -ap pw1001 -p 5061 -d 800 -m 1
  wait_bg "$uas" uas_ring

  step "1002 calls 1001: desk phone 1001 rings, softphone 1011 answers"
  sipp_bg ring1001 -sf uas_ring.xml -p 5061 -m 1; r1=$!
  sipp_bg uas1011 -sf uas.xml -p 5071 -d 300 -m 1; r2=$!
  sleep 0.3
  sipp uac1002 -sf uac.xml -s 1001 -key caller 1002 -au 1002 -ap pw1002 -p 5062 -d 500 -m 1
  wait_bg "$r1" ring1001; wait_bg "$r2" uas1011

  step "BLF: 1999 (no hint) refused, blf-denied (allow_subscribe=no) refused, registered teams-presence subscribes to 1003"
  watch_bg 1999 1999 5066 1; wait "$!" || fail "sipp blf-1999"
  blf_has 1999 '^<- SIP/2.0 404 Not Found \(2 SUBSCRIBE\)' "404 Not Found"
  watch_bg denied 1001 5066 1 blf-denied; wait "$!" || fail "sipp blf-denied"
  blf_has denied '^<- SIP/2.0 603 Decline \(2 SUBSCRIBE\)' "603 Decline"
  register teams-presence 5066 "$SIP_PW"
  watch_bg 1003 1003 5066 1; wait "$!" || fail "sipp blf-1003"
  blf_has 1003 '^<- NOTIFY Subscription-State: active;expires=[0-9]+ \| version=0 full 1003:terminated$' "initial NOTIFY, idle"
  blf_has 1003 '^<- SIP/2.0 200 OK \(3 SUBSCRIBE\) Expires: 600$' "refresh 200"
  unregister teams-presence 5066 "$SIP_PW"

  step "Custom: device state: ARI PUT refused, POST /asterisk/variable works"
  out=$(ari PUT '/deviceStates/Custom:teams-1002?deviceState=BUSY' || true)
  expect "ARI PUT /deviceStates/Custom:teams-1002" "$out" 'HTTP 409 {"message":"Uncontrolled device specified"}'
  ari POST '/asterisk/variable?variable=DEVICE_STATE(Custom:teams-1002)&value=BUSY' >/dev/null || fail "ARI POST DEVICE_STATE"
  expect "ARI GET /deviceStates/Custom:teams-1002" "$(devstate Custom:teams-1002)" BUSY
  expect "AMI Getvar DEVICE_STATE(Custom:teams-1002)" "$(amivar 'DEVICE_STATE(Custom:teams-1002)')" BUSY
  expect "hint 1002@internal" "$(bash "$PBX" cli 'core show hints' | grep '^1002@internal ' | grep -o 'State:[A-Za-z]*')" State:Busy
  expect "hint 1002@blf (phone only)" "$(bash "$PBX" cli 'core show hints' | grep '^1002@blf ' | grep -o 'State:[A-Za-z]*')" State:Idle

  step "busy-on-busy: 61002 while Custom:teams-1002 is BUSY, then INUSE: 486"
  sipp busy1 -sf uac_busy.xml -s 61002 -key caller 1001 -au 1001 -ap pw1001 -p 5061 -m 1 && step "ok: 486 Busy Here (BUSY)"
  ami Setvar 'Variable=DEVICE_STATE(Custom:teams-1002)' Value=INUSE >/dev/null
  expect "ARI GET /deviceStates/Custom:teams-1002" "$(devstate Custom:teams-1002)" INUSE
  sipp busy2 -sf uac_busy.xml -s 61002 -key caller 1001 -au 1001 -ap pw1001 -p 5061 -m 1 && step "ok: 486 Busy Here (INUSE)"

  step "busy-on-busy: 61002 while Custom:teams-1002 is NOT_INUSE: answered"
  ari POST '/asterisk/variable?variable=DEVICE_STATE(Custom:teams-1002)&value=NOT_INUSE' >/dev/null || fail "ARI POST DEVICE_STATE"
  sipp_bg uas_bob -sf uas.xml -p 5062 -d 200 -m 1; uas=$!
  sleep 0.3
  sipp bob_free -sf uac.xml -s 61002 -key caller 1001 -au 1001 -ap pw1001 -p 5061 -d 300 -m 1 && step "ok: answered (NOT_INUSE)"
  wait_bg "$uas" uas_bob

  step "presence: ARI POST and AMI Setvar PRESENCE_STATE, read back over AMI"
  ari POST '/asterisk/variable?variable=PRESENCE_STATE(CustomPresence:1001)&value=dnd,,In a meeting' >/dev/null || fail "ARI POST PRESENCE_STATE"
  expect "AMI Getvar PRESENCE_STATE(CustomPresence:1001,value)" "$(amivar 'PRESENCE_STATE(CustomPresence:1001,value)')" dnd
  expect "AMI Getvar PRESENCE_STATE(CustomPresence:1001,message)" "$(amivar 'PRESENCE_STATE(CustomPresence:1001,message)')" "In a meeting"
  ami Setvar 'Variable=PRESENCE_STATE(CustomPresence:1002)' 'Value=away,,Be right back' >/dev/null
  expect "AMI Getvar PRESENCE_STATE(CustomPresence:1002,value)" "$(amivar 'PRESENCE_STATE(CustomPresence:1002,value)')" away

  step "users from voicemail boxes: AMI VoicemailUsersList"
  vm=$(ami VoicemailUsersList --wait 0.5 | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e.get("Event") == "VoicemailUserEntry":
        print(e["VoiceMailbox"], e["Email"])')
  expect "VoicemailUsersList" "$(tr '\n' ' ' <<<"$vm")" "1001 alice@contoso.com 1002 bob@contoso.com 1003 carol@contoso.com 1004 dave@contoso.com "

  step "unregister 1001, 1002, 1011"
  unregister 1001 5061; unregister 1002 5062; unregister 1011 5071
  expect "ARI GET /deviceStates/PJSIP%2F1001" "$(devstate PJSIP%2F1001)" UNAVAILABLE

  step "BLF: 1002's NOTIFYs (the watcher ends 1.25 s after the last, refreshes, unsubscribes)"
  wait "$blf" || fail "sipp blf-1002 (log: $LOGDIR/selftest-sipp-blf-1002.log)"
  if out=$(blf_log 1002 --expect-states 1002:terminated '1002:early(recipient)' 1002:confirmed \
             '1002:confirmed(rendering=no)' 1002:confirmed 1002:terminated); then
    step "ok: BLF 1002: idle, early, confirmed, hold, confirmed, terminated; versions never go down"
  else
    fail "BLF 1002: $(tail -1 <<<"$out")"
  fi
  blf_has 1002 '^<- SIP/2.0 200 OK \(2 SUBSCRIBE\) Expires: 600$' "200 to SUBSCRIBE"
  blf_has 1002 '^<- SIP/2.0 200 OK \(3 SUBSCRIBE\) Expires: 600$' "refresh 200"
  blf_has 1002 '^<- NOTIFY Subscription-State: terminated \|' "last NOTIFY terminated"

  sleep 0.3
  kill "$rec" 2>/dev/null
  wait "$rec" 2>/dev/null
  # Device-state changes the daemon relies on, in the order they came.
  seen=$(python3 - "$LOGDIR/selftest-ari.jsonl" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e["type"] == "DeviceStateChanged":
        print(e["device_state"]["name"], e["device_state"]["state"])
EOF
)
  for want in "PJSIP/1002 RINGING" "PJSIP/1002 INUSE" "PJSIP/1002 ONHOLD" "PJSIP/1001 INUSE" \
              "PJSIP/1001 RINGING" "PJSIP/1011 RINGING" "PJSIP/1011 INUSE" "PJSIP/1011 NOT_INUSE" \
              "Custom:teams-1002 BUSY" "Custom:teams-1002 INUSE" "Custom:teams-1002 NOT_INUSE" \
              "PJSIP/1001 UNAVAILABLE"; do
    if grep -qx "$want" <<<"$seen"; then step "ok: ARI DeviceStateChanged $want"; else fail "no ARI DeviceStateChanged $want"; fi
  done
fi

if [ "$fails" = 0 ]; then
  step "passed in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
else
  step "$fails check(s) FAILED (logs in $LOGDIR)"
  exit 1
fi
