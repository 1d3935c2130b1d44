#!/usr/bin/env python3
"""Summarise a SIPp message log (-trace_msg -message_file F): one line per
message received, e.g.

    <- SIP/2.0 200 OK (2 SUBSCRIBE) Expires: 600
    <- NOTIFY Subscription-State: active;expires=599 | version=0 1001:terminated
    <- NOTIFY Subscription-State: active;expires=597 | version=2 1001:confirmed(rendering=no)

--sent: messages sent too (-> lines). --bodies DIR: write each NOTIFY body to
DIR/NNN.xml. --expect-states S...: exit 1 unless the NOTIFYs' dialog states
(as printed, e.g. 1002:early(recipient)) contain S... in this order (others may
come between), or if a NOTIFY's version is lower than the one before.
Standard library only.
"""
import argparse
import os
import re
import sys


def messages(path):
    """(direction, text) of each message in the log."""
    text = open(path, encoding="utf-8", errors="replace").read()
    for block in re.split(r"^-{20,} \S+\n", text, flags=re.M):
        m = re.match(r"(UDP|TCP) message (sent|received) \[\d+\] bytes ?:\n\n", block)
        if m:
            yield m.group(2), block[m.end():]


def header(msg, name):
    m = re.search(rf"^{name}:\s*(.*)$", msg, flags=re.M | re.I)
    return m.group(1).strip() if m else None


def dialogs(body):
    """'id:state' per <dialog>, with direction and rendering=no if present."""
    out = []
    for d in re.finditer(r"<dialog((?:\s[^>]*)?)>(.*?)</dialog>", body, flags=re.S):
        attrs, inner = d.groups()
        did = re.search(r'\bid="([^"]*)"', attrs)
        st = re.search(r"<state[^>]*>([^<]*)</state>", inner)
        extra = []
        direction = re.search(r'direction="([^"]*)"', attrs)
        if direction:
            extra.append(direction.group(1))
        if re.search(r'pname="\+sip\.rendering"\s+pvalue="no"', inner):
            extra.append("rendering=no")
        s = f"{did.group(1) if did else '?'}:{st.group(1) if st else '?'}"
        out.append(s + (f"({','.join(extra)})" if extra else ""))
    return out


def summary(msg):
    head, _, body = msg.partition("\n\n")
    first = head.splitlines()[0] if head else ""
    if first.startswith("SIP/2.0"):
        line = f"{first} ({header(head, 'CSeq')})"
        if header(head, "Expires") is not None:
            line += f" Expires: {header(head, 'Expires')}"
        return line
    method = first.split(" ", 1)[0]
    line = method
    if method == "NOTIFY":
        line += f" Subscription-State: {header(head, 'Subscription-State')}"
        v = re.search(r'<dialog-info\b[^>]*\bversion="(\d+)"[^>]*\bstate="(\w+)"', body)
        if v:
            line += f" | version={v.group(1)} {v.group(2)} " + " ".join(dialogs(body))
    elif method == "SUBSCRIBE":
        line += f" Expires: {header(head, 'Expires')}"
    return line


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log")
    ap.add_argument("--sent", action="store_true")
    ap.add_argument("--bodies")
    ap.add_argument("--expect-states", nargs="+")
    a = ap.parse_args()
    n = 0
    states, versions = [], []
    for direction, msg in messages(a.log):
        if direction == "sent" and not a.sent:
            continue
        print(("<- " if direction == "received" else "-> ") + summary(msg))
        if direction == "received" and msg.startswith("NOTIFY"):
            body = msg.partition("\n\n")[2]
            states.extend(dialogs(body))
            v = re.search(r'<dialog-info\b[^>]*\bversion="(\d+)"', body)
            if v:
                versions.append(int(v.group(1)))
        if a.bodies and direction == "received" and msg.startswith("NOTIFY"):
            n += 1
            os.makedirs(a.bodies, exist_ok=True)
            with open(os.path.join(a.bodies, f"{n:03}.xml"), "w", encoding="utf-8") as f:
                f.write(msg.partition("\n\n")[2])
    if any(b < a for a, b in zip(versions, versions[1:])):
        print(f"FAIL: a version went down: {versions}")
        return 1
    if a.expect_states:
        rest = iter(states)
        missing = [s for s in a.expect_states if not any(s == x for x in rest)]
        if missing:
            print(f"FAIL: states {states} lack {missing} (in the order {a.expect_states})")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
