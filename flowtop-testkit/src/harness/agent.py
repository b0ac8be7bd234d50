"""Traffic helper of the root-only tests (flowtop_testkit::harness::Agent; run as `python3 -c SCRIPT server PORT|client`).

server: TCP sink + UDP echo on PORT (IPv4 and IPv6); prints "ready"; exits on stdin EOF.
client: one command per stdin line, answers "ok ..." (see client()); exits on stdin EOF.
"""
import os, select, socket, struct, sys, time

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF

def fam(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET

def server(port):
    socks = []
    for f, a in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        t = socket.socket(f, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if f == socket.AF_INET6:
            t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        t.bind((a, port))
        t.listen(128)
        u = socket.socket(f, socket.SOCK_DGRAM)
        if f == socket.AF_INET6:
            u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        u.bind((a, port))
        socks += [t, u]
    print("ready", flush=True)
    conns = []
    while True:
        r, _, _ = select.select([sys.stdin] + socks + conns, [], [])
        for s in r:
            if s is sys.stdin:
                if not sys.stdin.readline():
                    return
            elif s in socks and s.type == socket.SOCK_STREAM:
                c, _ = s.accept()
                conns.append(c)
            elif s in socks:
                d, a = s.recvfrom(65535)
                s.sendto(d, a)
            else:
                try:
                    d = s.recv(1 << 20)
                except OSError:
                    d = b""
                if not d:
                    conns.remove(s)
                    s.close()

def ping(host, ident):
    if fam(host) == socket.AF_INET:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"flowtop-test"
        body = struct.pack("!BBHHH", 8, 0, csum(body), ident, 1) + b"flowtop-test"
        want = 0
    else:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        body = struct.pack("!BBHHH", 128, 0, 0, ident, 1) + b"flowtop-test"
        want = 129
    s.sendto(body, (host, 0))
    s.settimeout(0.5)
    end = time.time() + 3
    while time.time() < end:
        try:
            d, _ = s.recvfrom(65535)
        except socket.timeout:
            s.sendto(body, (host, 0))
            continue
        if s.family == socket.AF_INET:
            d = d[(d[0] & 0xF) * 4:]
        t, _, _, i, _ = struct.unpack("!BBHHH", d[:8])
        if t == want and i == ident:
            return
    raise SystemExit("no echo reply from %s" % host)

def client():
    tcp = []
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        w = line.split()
        if not w:
            continue
        if w[0] == "tcp":
            c = socket.create_connection((w[1], int(w[2])), timeout=5)
            tcp.append(c)
            print("ok", len(tcp) - 1, c.getsockname()[1], flush=True)
        elif w[0] == "send":
            tcp[int(w[1])].sendall(b"x" * int(w[2]))
            print("ok", flush=True)
        elif w[0] == "close":
            tcp[int(w[1])].close()
            print("ok", flush=True)
        elif w[0] == "udp":
            u = socket.socket(fam(w[1]), socket.SOCK_DGRAM)
            u.settimeout(0.5)
            u.connect((w[1], int(w[2])))
            for _ in range(6):
                u.send(b"ping")
                try:
                    u.recv(100)
                    break
                except socket.timeout:
                    pass
            else:
                raise SystemExit("no udp reply from %s" % w[1])
            print("ok", u.getsockname()[1], flush=True)
            u.close()
        elif w[0] == "ping":
            ping(w[1], int(w[2]))
            print("ok", flush=True)
        elif w[0] == "flood":
            u = socket.socket(fam(w[1]), socket.SOCK_DGRAM)
            p0, n = int(w[2]), int(w[3])
            for p in range(p0, p0 + n):
                try:
                    u.sendto(b"f", (w[1], p))
                except OSError:
                    pass
            print("ok", flush=True)
        else:
            raise SystemExit("unknown command %r" % line)

if sys.argv[1] == "server":
    server(int(sys.argv[2]))
else:
    client()
