#!/usr/bin/env python3
"""One ARI REST request to the test PBX (stdlib only); prints "HTTP <code> <body>".

  ari.py GET '/deviceStates/Custom:teams-1001'
  ari.py POST '/asterisk/variable?variable=DEVICE_STATE(Custom:teams-1001)&value=BUSY'
  ari.py PUT '/deviceStates/Stasis:teams-1001?deviceState=BUSY'

The path is relative to http://127.0.0.1:8088/ari and sent as given, except
that spaces become %20. Exit status 0 for 2xx, 1 otherwise.
"""
import base64, pathlib, sys, urllib.error, urllib.request

BASE = "http://127.0.0.1:8088/ari"
USER = "pbx-teams-presence"
PASSWORD_FILE = pathlib.Path(__file__).resolve().parent.parent / "credentials" / "ari_password"


def request(method, path):
    url = BASE + path.replace(" ", "%20")
    req = urllib.request.Request(url, method=method, data=b"" if method in ("POST", "PUT") else None)
    token = f"{USER}:{PASSWORD_FILE.read_text().strip()}".encode()
    req.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    code, body = request(sys.argv[1].upper(), sys.argv[2])
    print(f"HTTP {code} {body}".rstrip())
    return 0 if 200 <= code < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
