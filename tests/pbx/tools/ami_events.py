#!/usr/bin/env python3
"""Talk to the test PBX AMI (127.0.0.1:5038) with the stdlib only.

Record events as JSON lines (and optionally as the raw AMI text):
  ami_events.py record --seconds 20 --out ami.jsonl [--raw-out ami.txt] [--filter DeviceStateChange ...]
Send one action and print the response (and events for --wait seconds):
  ami_events.py action Setvar Variable='PRESENCE_STATE(CustomPresence:1001)' Value='dnd,,In a meeting'
"""
import argparse, pathlib, json, signal, socket, sys, time

CREDENTIALS = pathlib.Path(__file__).resolve().parent.parent / "credentials"
USER = "pbx-teams-presence"


def password(name):
    return (CREDENTIALS / name).read_text().strip()



class Ami:
    def __init__(self, host, port, user, secret, events=True):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.buf = b""
        self.banner = self._line()
        self.send({"Action": "Login", "Username": user, "Secret": secret,
                   "Events": "on" if events else "off"})
        r = self.read()
        while r.get("Response") is None:
            r = self.read()
        if r.get("Response") != "Success":
            raise RuntimeError(f"login failed: {r}")

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode(errors="replace")

    def send(self, fields):
        data = "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
        self.sock.sendall(data.encode())

    def read(self, timeout=None):
        """One message as a dict (repeated keys become lists); None on timeout."""
        self.sock.settimeout(timeout)
        msg = {}
        self.raw = ""
        try:
            while True:
                line = self._line()
                self.raw += line + "\r\n"
                if line == "":
                    if msg:
                        return msg
                    self.raw = ""
                    continue
                k, _, v = line.partition(": ")
                if k in msg:
                    msg[k] = msg[k] if isinstance(msg[k], list) else [msg[k]]
                    msg[k].append(v)
                else:
                    msg[k] = v
        except socket.timeout:
            return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5038)
    ap.add_argument("--user", default=USER)
    ap.add_argument("--secret", default=None, help="default: credentials/ami_password")
    sub = ap.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--seconds", type=float, default=20)
    rec.add_argument("--out")
    rec.add_argument("--filter", action="append", default=[], help="keep only these Event names")
    rec.add_argument("--raw-out", help="also append the events as received (AMI text)")
    rec.add_argument("--ready-file")
    act = sub.add_parser("action")
    act.add_argument("name")
    act.add_argument("fields", nargs="*", help="Key=Value")
    act.add_argument("--wait", type=float, default=0.0, help="also print events for this long")
    a = ap.parse_args()
    a.secret = a.secret or password("ami_password")

    stop = {"now": False}
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.update(now=True))

    if a.cmd == "action":
        ami = Ami(a.host, a.port, a.user, a.secret, events=a.wait > 0)
        fields = {"Action": a.name, "ActionID": "pbx-test-1"}
        for kv in a.fields:
            k, _, v = kv.partition("=")
            fields[k] = v
        ami.send(fields)
        deadline = time.time() + 5
        while time.time() < deadline:          # the response first
            m = ami.read(timeout=0.5)
            if m is not None and m.get("ActionID") == "pbx-test-1":
                print(json.dumps(m), flush=True)
                if "Response" in m:
                    break
        end = time.time() + a.wait             # then events, if asked
        while time.time() < end:
            m = ami.read(timeout=0.2)
            if m is not None and "Event" in m:
                print(json.dumps(m), flush=True)
        ami.send({"Action": "Logoff"})
        return

    ami = Ami(a.host, a.port, a.user, a.secret, events=True)
    out = open(a.out, "a") if a.out else None
    raw = open(a.raw_out, "a", newline="") if a.raw_out else None
    if a.ready_file:
        open(a.ready_file, "w").close()
    end = time.time() + a.seconds
    while not stop["now"] and time.time() < end:
        try:
            m = ami.read(timeout=0.5)
        except (ConnectionError, OSError) as e:
            print(f"# {time.time():.3f} AMI connection ended: {e!r}", file=sys.stderr, flush=True)
            return 3
        if m is None or "Event" not in m:
            continue
        if a.filter and m["Event"] not in a.filter:
            continue
        line = json.dumps(m)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()
        if raw:
            raw.write(ami.raw)
            raw.flush()
    for f in (out, raw):
        if f:
            f.close()
    ami.send({"Action": "Logoff"})


if __name__ == "__main__":
    sys.exit(main())
