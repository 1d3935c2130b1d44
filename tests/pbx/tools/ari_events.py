#!/usr/bin/env python3
"""Record ARI events from the test PBX (tests/pbx/asterisk.sh) as JSON lines (stdlib only).

  ari_events.py --subscribe-all --seconds 20 --out events.jsonl
  ari_events.py --source deviceState: --source endpoint:PJSIP ...

Connects ws://HOST:PORT/ari/events?app=APP[&subscribeAll=true] (basic auth),
then POSTs /ari/applications/APP/subscription?eventSource=... for each
--source, and writes each event (one JSON object per line) to --out and
stdout until --seconds have passed.  Stops early on SIGTERM/SIGINT.
"""
import argparse, base64, pathlib, json, os, signal, socket, struct, sys, time
import urllib.parse, urllib.request

CREDENTIALS = pathlib.Path(__file__).resolve().parent.parent / "credentials"
USER = "pbx-teams-presence"


def password(name):
    return (CREDENTIALS / name).read_text().strip()



def http(method, url, user, password):
    req = urllib.request.Request(url, method=method, data=b"" if method in ("POST", "PUT") else None)
    tok = base64.b64encode(f"{user}:{password}".encode()).decode()
    req.add_header("Authorization", "Basic " + tok)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class WebSocket:
    """Minimal RFC 6455 client: text frames in, pong/close out."""

    def __init__(self, host, port, path, user, password):
        self.sock = socket.create_connection((host, port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Authorization: Basic {auth}\r\n\r\n")
        self.sock.sendall(req.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            buf += chunk
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0].decode()
        if " 101 " not in status:
            raise ConnectionError(f"handshake failed: {status}")

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send(self, opcode, payload=b""):
        mask = os.urandom(4)
        hdr = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack("!Q", n)
        self.sock.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv_text(self, timeout):
        """Return one text message, or None on timeout."""
        self.sock.settimeout(timeout)
        message = b""
        try:
            while True:
                b0, b1 = self._read(2)
                opcode, n = b0 & 0x0F, b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self._read(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self._read(8))[0]
                mask = self._read(4) if b1 & 0x80 else None
                payload = self._read(n)
                if mask:
                    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                if opcode == 0x9:
                    self._send(0xA, payload)
                elif opcode == 0x8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    raise ConnectionError(f"server sent close frame, code {code} {payload[2:].decode(errors='replace')!r}")
                elif opcode in (0x0, 0x1):
                    message += payload
                    if b0 & 0x80:
                        return message.decode()
        except socket.timeout:
            return None

    def close(self):
        try:
            self._send(0x8, struct.pack("!H", 1000))
        finally:
            self.sock.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8088)
    ap.add_argument("--user", default=USER)
    ap.add_argument("--password", default=None, help="default: credentials/ari_password")
    ap.add_argument("--app", default="pbx-teams-presence")
    ap.add_argument("--subscribe-all", action="store_true")
    ap.add_argument("--source", action="append", default=[], help="eventSource to subscribe (repeatable)")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--out", help="append JSON lines here")
    ap.add_argument("--ready-file", help="touched once connected and subscribed")
    a = ap.parse_args()
    a.password = a.password or password("ari_password")

    stop = {"now": False}
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.update(now=True))

    q = {"app": a.app}
    if a.subscribe_all:
        q["subscribeAll"] = "true"
    ws = WebSocket(a.host, a.port, "/ari/events?" + urllib.parse.urlencode(q), a.user, a.password)
    base = f"http://{a.host}:{a.port}/ari"
    for src in a.source:
        url = f"{base}/applications/{a.app}/subscription?" + urllib.parse.urlencode({"eventSource": src})
        code, body = http("POST", url, a.user, a.password)
        print(f"# subscribe {src}: HTTP {code} {body}", file=sys.stderr)
    out = open(a.out, "a") if a.out else None
    if a.ready_file:
        open(a.ready_file, "w").close()
    end = time.time() + a.seconds
    try:
        while not stop["now"] and time.time() < end:
            try:
                msg = ws.recv_text(timeout=min(0.5, max(0.01, end - time.time())))
            except (ConnectionError, OSError) as e:
                print(f"# {time.time():.3f} websocket ended: {e!r}", file=sys.stderr, flush=True)
                return 3
            if msg is None:
                continue
            json.loads(msg)  # must be valid JSON; kept byte-for-byte as sent
            line = msg if "\n" not in msg else json.dumps(json.loads(msg))
            print(line, flush=True)
            if out:
                out.write(line + "\n")
                out.flush()
    finally:
        ws.close()
        if out:
            out.close()


if __name__ == "__main__":
    sys.exit(main())
