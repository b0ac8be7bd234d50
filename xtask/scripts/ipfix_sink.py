"""A counting IPFIX collector over UDP, for `cargo xtask bench export`.

usage: ipfix_sink.py PORT

Binds 127.0.0.1:PORT with a large receive buffer, parses every message by
RFC 7011 (templates kept per id; data records walked field by field,
variable-length fields included) and, at SIGTERM, prints one JSON object:
datagrams, bytes, records, malformed messages, and `exported`: the highest
sequence number plus that message's records, i.e. how many data records the
exporter numbered (RFC 7011 numbers records, sent or not), so that
`exported - records` is what was lost on the way.
"""
import json
import signal
import socket
import struct
import sys

port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE (root)
except OSError:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
s.bind(("127.0.0.1", port))
templates = {}
st = dict(datagrams=0, bytes=0, records=0, template_sets=0, malformed=0, no_template=0,
          first_seq=None, exported=0)


def done(*_):
    print(json.dumps(st), flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, done)
print("ready", flush=True)


def walk(msg):
    version, length, _, seq, _ = struct.unpack_from("!HHIII", msg, 0)
    if version != 10 or length != len(msg):
        return None
    at, n = 16, 0
    while at < length:
        sid, slen = struct.unpack_from("!HH", msg, at)
        if slen < 4 or at + slen > length:
            return None
        body = msg[at + 4:at + slen]
        if sid == 2:
            st["template_sets"] += 1
            p = 0
            while p + 4 <= len(body):
                tid, count = struct.unpack_from("!HH", body, p)
                p += 4
                lens = []
                for _ in range(count):
                    fid, flen = struct.unpack_from("!HH", body, p)
                    p += 8 if fid & 0x8000 else 4
                    lens.append(flen)
                templates[tid] = lens
        elif sid >= 256:
            lens = templates.get(sid)
            if lens is None:
                st["no_template"] += 1
            else:
                p = 0
                while p < len(body):
                    for flen in lens:
                        if flen == 0xFFFF:
                            l = body[p]
                            p += 1
                            if l == 255:
                                l = struct.unpack_from("!H", body, p)[0]
                                p += 2
                            p += l
                        else:
                            p += flen
                    if p > len(body):
                        return None
                    n += 1
        at += slen
    return seq, n


while True:
    d = s.recv(65535)
    st["datagrams"] += 1
    st["bytes"] += len(d)
    r = walk(d)
    if r is None:
        st["malformed"] += 1
        continue
    seq, n = r
    st["records"] += n
    if st["first_seq"] is None:
        st["first_seq"] = seq
    st["exported"] = max(st["exported"], seq + n)
