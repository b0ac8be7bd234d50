# The peer of flowtop's attribution scenarios (see mod.rs and sc.c), run in
# the peer namespace: a UDP-Lite sink on the first port given, TCP and UDP
# servers on the others, dual-stack, and an SCTP responder on a raw socket
# (the kernel has no SCTP). Prints "ready" once everything listens.
#
# TCP, by the first byte: 'd' + 8-byte count: send that many bytes, close;
# 'u': read to EOF, close; 'e': echo to EOF.
# UDP: 'D' + 4-byte count + 2-byte size: send that many datagrams back;
# 'E': echo; anything else: dropped.
# SCTP: an INIT is answered with an INIT-ACK, which is all conntrack needs
# to track the association (COOKIE_WAIT) both ways.
import selectors
import socket
import struct
import sys
import threading

lite_port = int(sys.argv[1])
ports = [int(p) for p in sys.argv[2:]]
CHUNK = b"s" * 65536


def recv_exact(c, n):
    data = b""
    while len(data) < n:
        more = c.recv(n - len(data))
        if not more:
            break
        data += more
    return data


def serve_tcp(c):
    try:
        cmd = c.recv(1)
        if cmd == b"d":
            (count,) = struct.unpack(">Q", recv_exact(c, 8))
            while count > 0:
                n = min(count, len(CHUNK))
                c.sendall(CHUNK[:n])
                count -= n
        elif cmd == b"e":
            while True:
                data = c.recv(65536)
                if not data:
                    break
                c.sendall(data)
        else:
            while c.recv(65536):
                pass
    except OSError:
        pass
    finally:
        c.close()


def accept_loop(listener):
    while True:
        c, _ = listener.accept()
        threading.Thread(target=serve_tcp, args=(c,), daemon=True).start()


def dual(kind, proto=0):
    s = socket.socket(socket.AF_INET6, kind, proto)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return s


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


def sctp_responder():
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
    while True:
        pkt, addr = s.recvfrom(2048)
        ihl = (pkt[0] & 0x0F) * 4
        sctp = pkt[ihl:]
        if len(sctp) < 20 or sctp[12] != 1:  # INIT only
            continue
        sport, dport = struct.unpack(">HH", sctp[:4])
        (init_tag,) = struct.unpack(">I", sctp[16:20])
        # INIT-ACK: initiate tag, a_rwnd, streams, initial TSN, and the
        # mandatory state cookie parameter (4 bytes of it).
        chunk = struct.pack(">BBHIIHHI", 2, 0, 28, 0x9ABCDEF0, 65280, 1, 1, 1)
        chunk += struct.pack(">HHI", 7, 8, 0xC00C1E)
        head = struct.pack(">HHII", dport, sport, init_tag, 0)
        crc = crc32c(head + chunk)
        head = head[:8] + struct.pack("<I", crc)
        s.sendto(head + chunk, (addr[0], 0))


threading.Thread(target=sctp_responder, daemon=True).start()
sel = selectors.DefaultSelector()
for port in ports:
    t = dual(socket.SOCK_STREAM)
    t.bind(("::", port))
    t.listen(128)
    threading.Thread(target=accept_loop, args=(t,), daemon=True).start()
    u = dual(socket.SOCK_DGRAM)
    u.bind(("::", port))
    sel.register(u, selectors.EVENT_READ)
lite = dual(socket.SOCK_DGRAM, 136)
lite.bind(("::", lite_port))
sel.register(lite, selectors.EVENT_READ)
print("ready", flush=True)

while True:
    for key, _ in sel.select():
        s = key.fileobj
        data, addr = s.recvfrom(65536)
        if data[:1] == b"D" and len(data) >= 7:
            count, size = struct.unpack(">IH", data[1:7])
            for _ in range(count):
                s.sendto(b"r" * size, addr)
        elif data[:1] == b"E":
            s.sendto(data, addr)
