"""Conntrack churn over ctnetlink, for the soak benchmark.

usage: ct_churn.py SECONDS RATE [--live-secs L] [--dsts D] [--src A.B.C.D] [--dst-base A.B.C.D]

For SECONDS seconds, creates RATE UDP entries per second (IPCTNL_MSG_CT_NEW)
and deletes (IPCTNL_MSG_CT_DELETE) each one L seconds (default 2) after it
was made, so about RATE * L entries are alive at any time and RATE are
created and RATE destroyed every second. Work is paced in 100 ms steps.
At the end every remaining entry is deleted. Prints
"created deleted errors seconds".
"""
import ipaddress
import socket
import struct
import sys
import time

# The ctnetlink packing is ct_insert.py's (written beside this file).
from ct_insert import (
    CTA_TIMEOUT,
    CTA_TUPLE_ORIG,
    CTA_TUPLE_REPLY,
    MSG_CT_NEW,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    attr,
    drain,
    open_socket,
    tuple_attr,
)

MSG_CT_DELETE = (1 << 8) | 2  # NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE


def main():
    args = sys.argv[1:]
    seconds, rate = float(args[0]), int(args[1])
    opts = dict(zip(args[2::2], args[3::2]))
    live = float(opts.get("--live-secs", "2"))
    dsts = int(opts.get("--dsts", "1000"))
    src = ipaddress.IPv4Address(opts.get("--src", "198.51.100.1")).packed
    base = int(ipaddress.IPv4Address(opts.get("--dst-base", "198.51.100.2")))
    sock = open_socket()
    counts = {"created": 0, "deleted": 0, "errors": 0}

    def tuple_of(i):
        # Unique while alive: 60 000 source ports x D destinations x ports.
        dst = struct.pack("!I", base + i % dsts)
        sport = 1024 + (i // dsts) % 60000
        dport = 1 + (i // (dsts * 60000)) % 65535
        return dst, sport, dport

    def message(kind, i):
        dst, sport, dport = tuple_of(i)
        body = struct.pack("=BBH", socket.AF_INET, 0, 0)
        body += tuple_attr(CTA_TUPLE_ORIG, src, dst, sport, dport)
        if kind == MSG_CT_NEW:
            body += tuple_attr(CTA_TUPLE_REPLY, dst, src, dport, sport)
            body += attr(CTA_TIMEOUT, struct.pack("!I", 600))
            flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL
        else:
            flags = NLM_F_REQUEST
        return struct.pack("=IHHII", 16 + len(body), kind, flags, i & 0xFFFFFFFF, 0) + body

    def send(msgs):
        for k in range(0, len(msgs), 64):
            while True:
                try:
                    sock.send(b"".join(msgs[k:k + 64]))
                    break
                except BlockingIOError:
                    counts["errors"] += drain(sock)
                    time.sleep(0.001)
        counts["errors"] += drain(sock)

    step = 0.1
    per_step = rate * step
    lag = int(rate * live)
    t0 = time.monotonic()
    made = 0
    gone = 0
    owed = 0.0
    while True:
        now = time.monotonic()
        if now - t0 >= seconds:
            break
        owed += per_step
        n = int(owed)
        owed -= n
        msgs = [message(MSG_CT_NEW, made + j) for j in range(n)]
        made += n
        upto = max(0, made - lag)
        msgs += [message(MSG_CT_DELETE, j) for j in range(gone, upto)]
        counts["deleted"] += upto - gone
        gone = upto
        counts["created"] += n
        send(msgs)
        # Keep to the schedule: the next step starts one step after this one.
        next_at = t0 + ((now - t0) // step + 1) * step
        if next_at > time.monotonic():
            time.sleep(next_at - time.monotonic())
    send([message(MSG_CT_DELETE, j) for j in range(gone, made)])
    counts["deleted"] += made - gone
    time.sleep(0.05)
    counts["errors"] += drain(sock)
    print(counts["created"], counts["deleted"], counts["errors"], "%.1f" % (time.monotonic() - t0), flush=True)


main()
