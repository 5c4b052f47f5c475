#!/usr/bin/env python3
"""Stand-in SIP responder for checking tuning/load.sh without sipshard.

Answers every OPTIONS (and REGISTER) request on a UDP socket with 200 OK, copying Via, From, To,
Call-ID and CSeq (adding a To tag). Anything else is ignored. Loopback only; stops on Ctrl-C or
after --lifetime seconds. Not a benchmark target: it is a single Python thread.

    python3 tuning/stand_in_responder.py --port 5070 --lifetime 60 &
    tuning/load.sh --target 127.0.0.1:5070 --pid $! --rate 2000 --duration 5
"""
import argparse
import socket
import time

COPY = ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")
ANSWER = (b"OPTIONS", b"REGISTER")


def answer(data: bytes) -> bytes | None:
    head, _, _ = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not lines or lines[0].split(b" ", 1)[0] not in ANSWER:
        return None
    out = [b"SIP/2.0 200 OK"]
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        key = name.strip().lower().decode("latin-1")
        if not sep or key not in COPY:
            continue
        if key in ("to", "t") and b";tag=" not in value:
            line = line + b";tag=standin"
        out.append(line)
    out += [b"Server: sipshard-stand-in", b"Content-Length: 0", b"", b""]
    return b"\r\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=5070)
    ap.add_argument("--lifetime", type=float, default=300.0, help="exit after this many seconds")
    args = ap.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", args.port))
    sock.settimeout(0.5)
    end = time.monotonic() + args.lifetime
    answered = 0
    try:
        while time.monotonic() < end:
            try:
                data, peer = sock.recvfrom(65535)
            except socket.timeout:
                continue
            reply = answer(data)
            if reply is not None:
                sock.sendto(reply, peer)
                answered += 1
    except KeyboardInterrupt:
        pass
    print(f"stand-in responder: answered={answered}")


if __name__ == "__main__":
    main()
