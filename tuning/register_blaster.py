#!/usr/bin/env python3
"""Register many distinct users quickly (no authentication), for tuning/admin-bench.sh.

    tuning/register_blaster.py --target 127.0.0.1:5060 --first 0 --count 500000
                               [--prefix b] [--width 7] [--contact-port P] [--window 2000]
                               [--expires 3600] [--retrans-ms 1000] [--max-seconds 600]

Sends one REGISTER per user PREFIX + zero-padded index (first .. first+count-1) from one UDP
socket on 127.0.0.1, keeping at most --window unanswered at a time, and waits for each 200.
An unanswered REGISTER is sent again (same branch: the server's transaction answers it again)
after --retrans-ms. Each user gets Call-ID bl-INDEX@blaster and Contact
<sip:USER@127.0.0.1:PORT> (PORT: --contact-port, else this socket's port), so a later sipp
refresh from that port with the same Contact updates the binding instead of adding one.

Bounded: gives up after --max-seconds. Loopback only. The last line on stdout is a summary of
key=value pairs; the exit status is 0 only when every user got its 200.
"""

import argparse
import re
import select
import socket
import sys
import time
from collections import Counter, deque

CALL_ID = re.compile(rb"\r\n(?:call-id|i)[ \t]*:[ \t]*bl-(\d+)@", re.IGNORECASE)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True, help="server HOST:PORT (127.0.0.0/8)")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--prefix", default="b")
    ap.add_argument("--width", type=int, default=7)
    ap.add_argument("--contact-port", type=int, default=0)
    ap.add_argument("--window", type=int, default=2000)
    ap.add_argument("--expires", type=int, default=3600)
    ap.add_argument("--retrans-ms", type=int, default=1000)
    ap.add_argument("--max-seconds", type=float, default=600)
    a = ap.parse_args()

    host, _, port = a.target.rpartition(":")
    if not host.startswith("127."):
        sys.exit("register_blaster.py: loopback targets only (127.0.0.0/8)")
    server = (host, int(port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    lp = sock.getsockname()[1]
    cport = a.contact_port or lp
    template = (
        "REGISTER sip:{h}:{p} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK-bl{i}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:{u}@{h}>;tag=bl{i}\r\n"
        "To: <sip:{u}@{h}>\r\n"
        "Call-ID: bl-{i}@blaster\r\n"
        "CSeq: 1 REGISTER\r\n"
        "Contact: <sip:{u}@127.0.0.1:{cp}>\r\n"
        "Expires: {e}\r\n"
        "User-Agent: sipshard-blaster\r\n"
        "Content-Length: 0\r\n\r\n"
    )

    def message(i):
        user = "%s%0*d" % (a.prefix, a.width, i)
        return template.format(h=host, p=port, lp=lp, i=i, u=user, cp=cport, e=a.expires).encode()

    start = time.monotonic()
    deadline = start + a.max_seconds
    retrans_s = a.retrans_ms / 1000.0
    end = a.first + a.count
    nxt = a.first
    pending = {}  # index -> time of its last send
    order = deque()  # (send time, index), oldest first, for retransmissions
    ok = failed = retrans = send_blocked = 0
    statuses = Counter()

    def send(i, now):
        nonlocal send_blocked
        try:
            sock.sendto(message(i), server)
        except (BlockingIOError, InterruptedError):
            send_blocked += 1  # left pending: sent again after retrans_s
        pending[i] = now
        order.append((now, i))

    while ok + failed < a.count:
        now = time.monotonic()
        if now > deadline:
            break
        while len(pending) < a.window and nxt < end:
            send(nxt, now)
            nxt += 1
        while order and order[0][0] < now - retrans_s:
            t, i = order.popleft()
            if pending.get(i) == t:
                retrans += 1
                send(i, now)
        readable, _, _ = select.select([sock], [], [], 0.02)
        if not readable:
            continue
        for _ in range(8192):
            try:
                data = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                break
            if not data.startswith(b"SIP/2.0 "):
                continue
            status = int(data[8:11])
            if status < 200:
                continue
            m = CALL_ID.search(data)
            if not m:
                continue
            i = int(m.group(1))
            if pending.pop(i, None) is None:
                continue  # an answer to a retransmission already counted
            if status == 200:
                ok += 1
            else:
                failed += 1
                statuses[status] += 1

    took = time.monotonic() - start
    missing = a.count - ok - failed
    print(
        "blaster first=%d count=%d ok=%d failed=%d unanswered=%d retrans=%d send_blocked=%d "
        "seconds=%.1f rate=%.0f statuses=%s"
        % (
            a.first,
            a.count,
            ok,
            failed,
            missing,
            retrans,
            send_blocked,
            took,
            ok / took if took > 0 else 0,
            ",".join("%d:%d" % kv for kv in sorted(statuses.items())) or "-",
        )
    )
    return 0 if ok == a.count else 1


if __name__ == "__main__":
    sys.exit(main())
