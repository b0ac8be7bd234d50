"""Bulk conntrack entry creation over ctnetlink, for benchmarks.

`conntrack -I` creates one entry per process; a benchmark needs 100 000 to a
million, to any addresses (public ones included) without sending a packet.
This sends IPCTNL_MSG_CT_NEW requests directly, many per datagram.

usage: ct_insert.py N [--dsts D] [--dst-base A.B.C.D] [--src A.B.C.D] [--timeout S] [--mark M]

Entry i is UDP SRC:(1024 + i % 60000) -> DST_j:(1 + i // 60000 ...) with
DST_j = dst-base + (i % D): D distinct destinations, spread over all entries.
Prints "created errors seconds".

Also the ctnetlink packing that ct_churn.py imports (it is written beside
this file wherever it runs).
"""
import ipaddress
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NLM_F_REQUEST, NLM_F_CREATE, NLM_F_EXCL = 0x1, 0x400, 0x200
NLMSG_ERROR = 2
MSG_CT_NEW = (1 << 8) | 0  # NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW
NESTED = 0x8000
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_TIMEOUT, CTA_MARK = 1, 2, 7, 8
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 2
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3


def attr(kind, payload):
    head = struct.pack("=HH", 4 + len(payload), kind)
    pad = b"\0" * ((4 - len(payload) % 4) % 4)
    return head + payload + pad


def tuple_attr(kind, src, dst, sport, dport):
    ip = attr(NESTED | CTA_TUPLE_IP, attr(CTA_IP_V4_SRC, src) + attr(CTA_IP_V4_DST, dst))
    proto = attr(
        NESTED | CTA_TUPLE_PROTO,
        attr(CTA_PROTO_NUM, bytes([17]))
        + attr(CTA_PROTO_SRC_PORT, struct.pack("!H", sport))
        + attr(CTA_PROTO_DST_PORT, struct.pack("!H", dport)),
    )
    return attr(NESTED | kind, ip + proto)


def open_socket():
    """A non-blocking ctnetlink socket with room for many answers."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind((0, 0))
    sock.setblocking(False)
    return sock


def drain(sock):
    """Reads every queued answer; returns how many were errors."""
    errors = 0
    while True:
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return errors
        off = 0
        while off + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, off)
            if kind == NLMSG_ERROR and struct.unpack_from("=i", data, off + 16)[0] != 0:
                errors += 1
            off += max(16, (length + 3) & ~3)


def main():
    args = sys.argv[1:]
    n = int(args[0])
    opts = dict(zip(args[1::2], args[2::2]))
    dsts = int(opts.get("--dsts", "1000"))
    base = int(ipaddress.IPv4Address(opts.get("--dst-base", "198.51.100.2")))
    src = ipaddress.IPv4Address(opts.get("--src", "198.51.100.1")).packed
    timeout = int(opts.get("--timeout", "3600"))
    mark = int(opts.get("--mark", "0"))
    sock = open_socket()
    errors = 0

    t0 = time.monotonic()
    batch = []
    for i in range(n):
        dst = struct.pack("!I", base + i % dsts)
        sport = 1024 + i % 60000
        dport = 1 + (i // 60000) % 65535
        body = struct.pack("=BBH", socket.AF_INET, 0, 0)
        body += tuple_attr(CTA_TUPLE_ORIG, src, dst, sport, dport)
        body += tuple_attr(CTA_TUPLE_REPLY, dst, src, dport, sport)
        body += attr(CTA_TIMEOUT, struct.pack("!I", timeout))
        if mark:
            body += attr(CTA_MARK, struct.pack("!I", mark))
        flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL
        batch.append(struct.pack("=IHHII", 16 + len(body), MSG_CT_NEW, flags, i, 0) + body)
        if len(batch) == 64:
            sock.send(b"".join(batch))
            batch = []
            if i % 4096 == 0:
                errors += drain(sock)
    if batch:
        sock.send(b"".join(batch))
    time.sleep(0.05)
    errors += drain(sock)
    print(n - errors, errors, "%.3f" % (time.monotonic() - t0))


if __name__ == "__main__":
    main()
