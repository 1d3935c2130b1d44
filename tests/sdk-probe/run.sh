#!/usr/bin/env bash
# Emulator conformance: drive our Graph emulator with Microsoft's Graph SDK for Python and MSAL
# (sdk_probe.py, copied from the project's shared material) and fail if any payload does not
# parse into the SDK's models. The venv is cached under target/.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/sdk-probe-venv
if [ ! -x "$venv/bin/python" ] || ! cmp -s tests/sdk-probe/requirements.txt "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk-probe/requirements.txt
    cp tests/sdk-probe/requirements.txt "$venv/requirements.txt"
fi
cargo build --locked --quiet -p graph-emulator --bin graph-emulator
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tenant=aaaaaaaa-0000-4000-8000-000000000001
client=bbbbbbbb-0000-4000-8000-000000000002
secret=probe-secret
target/debug/graph-emulator --listen "127.0.0.1:$port" --users 40 \
    --tenant-id "$tenant" --client-id "$client" --client-secret "$secret" \
    --allow-http-notification-urls --device-code-interval 1 >/dev/null &
emu=$!
trap 'kill $emu 2>/dev/null || true' EXIT
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
# The probe's webhook receiver is plain http on loopback (--allow-http-notification-urls);
# MSAL runs over the probe's own TLS front.
"$venv/bin/python" tests/sdk-probe/sdk_probe.py --base "http://127.0.0.1:$port" \
    --tenant "$tenant" --client-id "$client" --client-secret "$secret"
