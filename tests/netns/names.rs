//! The name the program asked for (issue 13): `dst_name` and
//! `dst_name_source` of each flow, from the DNS answers its own process
//! received (`dns`), from what the connection itself says (TLS SNI, the
//! HTTP `Host` header, a QUIC Initial's SNI), with `dst_host` still the PTR
//! name, and none of it under `--no-inspect`.
//!
//! One fixture: a "server" namespace running a real DNS server (dnsmasq:
//! A, AAAA, a CNAME chain, an HTTPS record with address hints, PTR records
//! that differ from the forward names), `openssl s_server`, an HTTP
//! responder, TCP sinks, a UDP sink for QUIC and a hostile DNS responder;
//! a "client" namespace whose resolv.conf names that server (or a
//! forwarding stub on 127.0.0.53 in front of it), where flowtop runs and
//! where programs, each a copy of python3 or curl under a name of its own,
//! resolve through libc (or speak DNS themselves) and connect.
//!
//! Each test first checks what does not depend on the names (servers
//! answer, programs resolve and connect, their flows show up with the
//! right `exe` and the PTR name), then the names.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use flowtop_testkit::names::{self as fx, Dnsmasq, Proc, Scratch};

use super::*;

/// How long a name may take to reach the flow's lines after the flow is seen.
const NAME_WAIT: Duration = Duration::from_secs(5);
/// How long a helper may take to print its line.
const STEP: Duration = Duration::from_secs(10);

/// The DNS server (dnsmasq), `openssl s_server`, the HTTP responder, the
/// sinks: all on the server's own address.
const DNS_V4: &str = SERVER_V4;
/// A DNS responder that answers with hostile names and compression loops.
const HOSTILE_DNS_V4: &str = "192.0.2.3";
/// a.example (A and AAAA).
const A_V4: &str = "192.0.2.10";
const A_V6: &str = "2001:db8::10";
/// tail.example, the end of head.example -> mid.example -> tail.example.
const CHAIN_V4: &str = "192.0.2.11";
/// Only in the hints of svc.example's HTTPS record.
const HINT_V4: &str = "192.0.2.13";
const HINT_V6: &str = "2001:db8::13";
/// one.example, two.example and own.example all name it.
const SHARED_V4: &str = "192.0.2.14";
/// What the hostile responder answers.
const HOSTILE_V4: &str = "192.0.2.16";

/// A TCP sink (reads until the client closes).
const SINK: u16 = 7000;
/// A TCP sink for hand-made ClientHellos.
const HELLO_SINK: u16 = 8443;
/// The HTTP responder.
const HTTP: u16 = 8080;
/// `openssl s_server` (TCP) and the QUIC sink (UDP).
const TLS: u16 = 443;

/// Extra addresses of the server namespace, besides [`SERVER_V4`]/[`SERVER_V6`].
const SERVER_EXTRA: &[&str] = &[
    HOSTILE_DNS_V4,
    A_V4,
    CHAIN_V4,
    HINT_V4,
    SHARED_V4,
    HOSTILE_V4,
    A_V6,
    HINT_V6,
];

/// The PTR name the DNS server gives an address: never the forward name,
/// so `dst_host` and `dst_name` tell apart.
fn ptr_of(addr: &str) -> String {
    format!("ptr-{}.example", addr.replace([':', '.'], "-"))
}

/// The records dnsmasq serves.
fn records() -> Vec<String> {
    let v4 = |s: &str| s.parse::<Ipv4Addr>().expect("v4");
    let v6 = |s: &str| s.parse::<Ipv6Addr>().expect("v6");
    let https = fx::hex(&fx::https_rdata(1, &[v4(HINT_V4)], &[v6(HINT_V6)]));
    let mut r = vec![
        format!("--host-record=a.example,{A_V4},{A_V6}"),
        format!("--host-record=tail.example,{CHAIN_V4}"),
        "--cname=head.example,mid.example".to_owned(),
        "--cname=mid.example,tail.example".to_owned(),
        format!("--dns-rr=svc.example,65,{https}"),
        format!("--host-record=one.example,{SHARED_V4}"),
        format!("--host-record=two.example,{SHARED_V4}"),
        format!("--host-record=own.example,{SHARED_V4}"),
    ];
    // --ptr-record wins over the reverse records host-record makes.
    for a in [A_V4, A_V6, CHAIN_V4, HINT_V4, HINT_V6, SHARED_V4, HOSTILE_V4] {
        let ip: IpAddr = a.parse().expect("address");
        r.push(format!("--ptr-record={},{}", fx::reverse_name(ip), ptr_of(a)));
    }
    r
}

/// The server namespace's services (python3, not copied: only the clients'
/// programs need names of their own). Prints `ready` once every socket is
/// bound.
const SERVER_PY: &str = r#"
import socket, sys, threading
def spawn(f, *a):
    threading.Thread(target=f, args=a, daemon=True).start()
def tcp(port):
    return socket.create_server(('', port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=64)
def drain(c):
    try:
        while c.recv(65536):
            pass
    except OSError:
        pass
    c.close()
def sink(s):
    while True:
        c, _ = s.accept()
        spawn(drain, c)
def answer_http(c):
    head = b''
    try:
        while b'\r\n\r\n' not in head and len(head) < 65536:
            b = c.recv(4096)
            if not b:
                break
            head += b
        c.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n')
    except OSError:
        pass
    c.close()
def http(s):
    while True:
        c, _ = s.accept()
        spawn(answer_http, c)
def udp_sink(u):
    while True:
        u.recvfrom(65536)
def hostile_dns(u, target, loop_tail):
    while True:
        q, peer = u.recvfrom(4096)
        i = 12
        while i < len(q) and q[i] != 0:
            i += 1 + q[i]
        question = q[12:i + 5]
        if question[1:5] == b'loop':
            r = q[:2] + loop_tail
        else:
            r = (q[:2] + b'\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00' + question
                 + b'\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04' + socket.inet_aton(target))
        u.sendto(r, peer)
sink_port, hello_port, http_port, quic_port, hostile_addr, hostile_target, loop_tail = sys.argv[1:8]
spawn(sink, tcp(int(sink_port)))
spawn(sink, tcp(int(hello_port)))
spawn(http, tcp(int(http_port)))
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
u.bind(('', int(quic_port)))
spawn(udp_sink, u)
d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
d.bind((hostile_addr, 53))
spawn(hostile_dns, d, hostile_target, bytes.fromhex(loop_tail))
print('ready', flush=True)
threading.Event().wait()
"#;

/// The client programs (run as copies of python3 under unique names).
/// Each prints `connected PID LOCAL_PORT` once its flow exists and holds
/// it until stdin ends.
///
/// - `resolve FAMILY NAME PORT [wait]`: getaddrinfo (libc, so resolv.conf)
///   and connect to the first address; with `wait`, prints `resolved ADDR`
///   and waits for a line on stdin before connecting;
/// - `ask SERVER QUERIES_HEX ADDR PORT [wait]`: its own UDP socket to
///   SERVER:53, one query per comma-separated hex message, each answer
///   printed as `answer HEX`; then (after a stdin line with `wait`) a TCP
///   connection to ADDR:PORT;
/// - `send ADDR PORT HEX SPLIT`: TCP with TCP_NODELAY, the bytes in two
///   writes (SPLIT bytes, a pause, the rest), so they leave as two segments;
/// - `udp ADDR PORT HEX`: one datagram.
const CLIENT_PY: &str = r#"
import os, socket, sys, time
def family(addr):
    return socket.AF_INET6 if ':' in addr else socket.AF_INET
def done(s):
    print('connected', os.getpid(), s.getsockname()[1], flush=True)
    sys.stdin.read()
def wait(args):
    if args and args[0] == 'wait':
        sys.stdin.readline()
mode, args = sys.argv[1], sys.argv[2:]
if mode == 'resolve':
    fam = {'4': socket.AF_INET, '6': socket.AF_INET6}[args[0]]
    addr = socket.getaddrinfo(args[1], int(args[2]), fam, socket.SOCK_STREAM)[0][4]
    print('resolved', addr[0], flush=True)
    wait(args[3:])
    c = socket.socket(fam, socket.SOCK_STREAM)
    c.connect(addr)
    done(c)
elif mode == 'ask':
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(3)
    u.connect((args[0], 53))
    for q in args[1].split(','):
        u.send(bytes.fromhex(q))
        try:
            print('answer', u.recv(65536).hex(), flush=True)
        except socket.timeout:
            print('answer none', flush=True)
    print('asked', flush=True)
    wait(args[4:])
    c = socket.socket(family(args[2]), socket.SOCK_STREAM)
    c.connect((args[2], int(args[3])))
    done(c)
elif mode == 'send':
    c = socket.socket(family(args[0]), socket.SOCK_STREAM)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.connect((args[0], int(args[1])))
    data, split = bytes.fromhex(args[2]), int(args[3])
    c.sendall(data[:split])
    if split < len(data):
        time.sleep(0.2)
        c.sendall(data[split:])
    done(c)
elif mode == 'udp':
    u = socket.socket(family(args[0]), socket.SOCK_DGRAM)
    u.connect((args[0], int(args[1])))
    u.send(bytes.fromhex(args[2]))
    done(u)
"#;

/// Everything a test needs; dropped in reverse order of creation
/// (flowtop first, the namespaces last).
struct Fixture {
    ft: Flowtop,
    _stub: Option<Dnsmasq>,
    _etc: EtcNetns,
    _servers: Vec<Proc>,
    _dns: Dnsmasq,
    tmp: Scratch,
    client: Netns,
    _server: Netns,
}

/// How the client resolves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resolver {
    /// resolv.conf names the DNS server in the server namespace.
    Direct,
    /// resolv.conf names a forwarding dnsmasq on 127.0.0.53 in the client
    /// namespace (the shape of systemd-resolved's stub).
    Stub,
}

impl Fixture {
    fn new(resolver: Resolver, flowtop_args: &[&str]) -> Fixture {
        let (client, server) = Netns::pair();
        for a in SERVER_EXTRA {
            let (plen, extra) = if a.contains(':') {
                ("64", "nodad")
            } else {
                ("24", "")
            };
            let mut args = vec!["addr", "add"];
            let cidr = format!("{a}/{plen}");
            args.extend([cidr.as_str(), "dev", "vs"]);
            if !extra.is_empty() {
                args.push(extra);
            }
            server.ip(&args);
        }
        let tmp = Scratch::new("ft-names").expect("scratch directory");
        let dns = Dnsmasq::start(&server, &[DNS_V4.parse().expect("v4")], &records())
            .unwrap_or_else(|e| panic!("the DNS server: {e}"));

        let mut servers = Vec::new();
        let mut py = server.cmd(python());
        py.args(["-c", SERVER_PY])
            .args([SINK, HELLO_SINK, HTTP, TLS].map(|p| p.to_string()))
            .args([HOSTILE_DNS_V4, HOSTILE_V4])
            .arg(fx::hex(&fx::dns_loop_response(0)[2..]));
        let mut p = Proc::spawn(py).expect("the python servers");
        assert_eq!(p.line(STEP).expect("the python servers start"), "ready");
        servers.push(p);
        let (cert, key) = fx::self_signed_cert(tmp.path(), "tls.example").expect("a self-signed certificate");
        let mut tls = server.cmd("openssl");
        tls.args(["s_server", "-www", "-accept"])
            .arg(format!("{DNS_V4}:{TLS}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key);
        let mut p = Proc::spawn(tls).expect("openssl s_server");
        // It prints ACCEPT once listening (after a line or two about parameters).
        while !p.line(STEP).expect("openssl s_server starts").contains("ACCEPT") {}
        servers.push(p);

        let (nameserver, stub) = match resolver {
            Resolver::Direct => (DNS_V4.to_owned(), None),
            Resolver::Stub => {
                let stub = Dnsmasq::start(
                    &client,
                    &["127.0.0.53".parse().expect("v4")],
                    &[format!("--server={DNS_V4}")],
                )
                .unwrap_or_else(|e| panic!("the stub resolver: {e}"));
                ("127.0.0.53".to_owned(), Some(stub))
            }
        };
        let etc = EtcNetns::new(
            &client,
            &[(
                "resolv.conf",
                &format!("nameserver {nameserver}\noptions timeout:2 attempts:2\n"),
            )],
        );
        // The fixture works before flowtop starts: libc resolves through it.
        let hosts = client.run("getent", &["ahostsv4", "head.example"]);
        assert!(hosts.contains(CHAIN_V4), "getent ahostsv4 head.example: {hosts}");

        let ft = Flowtop::start(&client, flowtop_args);
        Fixture {
            ft,
            _stub: stub,
            _etc: etc,
            _servers: servers,
            _dns: dns,
            tmp,
            client,
            _server: server,
        }
    }

    /// A copy of `src` under a name no other program has, `ftn-TAG-PID`.
    fn program(&self, tag: &str, src: &str) -> PathBuf {
        let name = format!("ftn-{tag}-{}", std::process::id());
        let exe = fx::program_copy(self.tmp.path(), src, &name).expect("a program copy");
        // As /proc/PID/exe will show it (the temp directory may be a symlink).
        std::fs::canonicalize(&exe).expect("the copy exists")
    }

    /// Starts the client helper `mode args...` as python3 copied under `tag`.
    fn client_py(&self, tag: &str, args: &[&str]) -> Client {
        let exe = self.program(tag, python());
        let mut cmd = self
            .client
            .netns_exec(exe.to_str().expect("utf-8 path"), &["-c", CLIENT_PY]);
        cmd.args(args);
        let proc = Proc::spawn(cmd).unwrap_or_else(|e| panic!("{tag}: {e}"));
        Client {
            proc,
            exe,
            tag: tag.to_owned(),
        }
    }

    /// Runs curl, copied under `tag`, with `args` and `-w '%{local_port}'`
    /// to the end; returns its exe, pid and local port.
    fn curl(&self, tag: &str, args: &[&str]) -> (PathBuf, u32, u16) {
        let exe = self.program(tag, "/usr/bin/curl");
        let mut cmd = self
            .client
            .netns_exec(exe.to_str().expect("utf-8 path"), &["-sS", "-o", "/dev/null"]);
        cmd.args(["-w", "%{local_port}\n", "--max-time", "10"]).args(args);
        let mut p = Proc::spawn(cmd).unwrap_or_else(|e| panic!("{tag}: {e}"));
        let pid = p.pid();
        let port = p.line(STEP).unwrap_or_else(|e| panic!("{tag}: {e}"));
        let st = p.wait(STEP).unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert!(st.success(), "{tag}: curl exited with {st}");
        let port = port
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{tag}: curl printed {port:?}"));
        (exe, pid, port)
    }
}

/// A running client helper.
struct Client {
    proc: Proc,
    exe: PathBuf,
    tag: String,
}

impl Client {
    fn line(&mut self) -> String {
        self.proc
            .line(STEP)
            .unwrap_or_else(|e| panic!("{}: {e}", self.tag))
    }

    /// Reads lines up to `connected PID PORT`; returns (pid, port) and the
    /// lines before it.
    fn connected(&mut self) -> (u32, u16, Vec<String>) {
        let mut before = Vec::new();
        loop {
            let l = self.line();
            if let Some(rest) = l.strip_prefix("connected ") {
                let w: Vec<&str> = rest.split_whitespace().collect();
                let pid = w[0].parse().expect("pid");
                let port = w[1].parse().expect("port");
                return (pid, port, before);
            }
            before.push(l);
        }
    }

    /// Lets it go on (`wait` mode).
    fn go(&mut self) {
        self.proc
            .send("go")
            .unwrap_or_else(|e| panic!("{}: {e}", self.tag));
    }
}

/// A flow to check: its program and original tuple.
struct Seen {
    what: String,
    exe: PathBuf,
    pid: u32,
    proto: &'static str,
    src: &'static str,
    sport: u16,
    dst: String,
    dport: u16,
}

impl Seen {
    fn tcp(what: &str, exe: &std::path::Path, pid: u32, sport: u16, dst: &str, dport: u16) -> Seen {
        let src = if dst.contains(':') { CLIENT_V6 } else { CLIENT_V4 };
        Seen {
            what: what.to_owned(),
            exe: exe.to_path_buf(),
            pid,
            proto: "tcp",
            src,
            sport,
            dst: dst.to_owned(),
            dport,
        }
    }

    fn udp(what: &str, exe: &std::path::Path, pid: u32, sport: u16, dst: &str, dport: u16) -> Seen {
        Seen {
            proto: "udp",
            ..Seen::tcp(what, exe, pid, sport, dst, dport)
        }
    }

    fn is(&self, v: &Value) -> bool {
        has_tuple(v, self.proto, self.src, self.sport, &self.dst, self.dport)
    }
}

/// The first line so far, or arriving within `timeout`, that satisfies
/// `pred`, wherever it is in the stream (several flows interleave).
fn find_line(ft: &mut Flowtop, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
    poll_until(timeout, Duration::from_millis(50), || {
        ft.pump();
        ft.lines.iter().find(|v| pred(v)).cloned()
    })
}

/// Waits for the flow's line naming its program (pid and exe); returns the
/// flow's id.
fn flow_of(ft: &mut Flowtop, s: &Seen) -> u32 {
    let exe = s.exe.to_string_lossy().into_owned();
    let line = find_line(ft, WAIT, |v| {
        s.is(v) && ju64(v, "pid") == Some(u64::from(s.pid)) && jstr(v, "exe") == Some(exe.as_str())
    });
    let Some(line) = line else {
        ft.fail(&format!(
            "{}: no line for {} {}:{} -> {}:{} owned by pid {} ({exe})",
            s.what, s.proto, s.src, s.sport, s.dst, s.dport, s.pid
        ));
    };
    flow_id(&line).unwrap_or_else(|| ft.fail(&format!("{}: a flow line without id: {line}", s.what)))
}

/// Waits for a line of flow `id` with `dst_host` == `ptr` (reverse DNS
/// through the same server: the fixture's PTR records work).
fn expect_ptr(ft: &mut Flowtop, what: &str, id: u32, ptr: &str) {
    if find_line(ft, WAIT, |v| {
        flow_id(v) == Some(id) && jstr(v, "dst_host") == Some(ptr)
    })
    .is_none()
    {
        ft.fail(&format!("{what}: no line of flow {id} with dst_host {ptr:?}"));
    }
}

/// Waits for a line of flow `id` (a `new` or an `update`) with a
/// `dst_name`; checks it and its source.
fn expect_name(ft: &mut Flowtop, what: &str, id: u32, name: &str, source: &str) -> Value {
    let Some(v) = find_line(ft, NAME_WAIT, |v| {
        flow_id(v) == Some(id) && v.get("dst_name").is_some_and(|n| !n.is_null())
    }) else {
        ft.fail(&format!(
            "{what}: no line of flow {id} carries a dst_name within {NAME_WAIT:?} (expected {name:?} from {source})"
        ));
    };
    if jstr(&v, "dst_name") != Some(name) || jstr(&v, "dst_name_source") != Some(source) {
        ft.fail(&format!(
            "{what}: flow {id} is named {:?} from {:?}, expected {name:?} from {source:?}: {v}",
            v.get("dst_name"),
            v.get("dst_name_source")
        ));
    }
    v
}

/// The flow and its PTR name are there (what works without the names),
/// then its asked-for name.
fn check_dns_named(ft: &mut Flowtop, s: &Seen, name: &str) {
    let id = flow_of(ft, s);
    expect_ptr(ft, &s.what, id, &ptr_of(&s.dst));
    // Until the flow's owner is known (its socket event can reach flowtop
    // a moment after conntrack's NEW), only the host-wide answer, the
    // newest any process received, can name it; that may be another
    // program's. Every line that names the flow's process must carry that
    // process's own answer.
    let Some(v) = find_line(ft, NAME_WAIT, |v| {
        flow_id(v) == Some(id) && ju64(v, "pid") == Some(u64::from(s.pid)) && !v["dst_name"].is_null()
    }) else {
        ft.fail(&format!(
            "{}: no line of flow {id} with its owner (pid {}) and a dst_name within {NAME_WAIT:?} (expected {name:?})",
            s.what, s.pid
        ));
    };
    let wrong: Vec<&Value> = ft
        .lines
        .iter()
        .filter(|l| flow_id(l) == Some(id) && ju64(l, "pid") == Some(u64::from(s.pid)))
        .filter(|l| jstr(l, "dst_name") != Some(name) || jstr(l, "dst_name_source") != Some("dns"))
        .collect();
    if !wrong.is_empty() {
        ft.fail(&format!(
            "{}: flow {id} of pid {} is named other than {name:?} from dns: {}",
            s.what,
            s.pid,
            wrong.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("\n")
        ));
    }
    drop(v);
    // The line that first carried the name may predate the PTR answer
    // (each comes as its own update): some line must carry both, the PTR
    // name still in dst_host.
    let ptr = ptr_of(&s.dst);
    if find_line(ft, WAIT, |v| {
        flow_id(v) == Some(id)
            && jstr(v, "dst_host") == Some(ptr.as_str())
            && jstr(v, "dst_name") == Some(name)
    })
    .is_none()
    {
        ft.fail(&format!(
            "{}: no line of flow {id} with dst_name {name:?} and dst_host (the PTR name) {ptr:?}",
            s.what
        ));
    }
}

/// A resolving client in `wait` mode after it printed `resolved ADDR`.
fn resolved(fx: &Fixture, tag: &str, family: &str, name: &str, expect: &str) -> Client {
    let port = SINK.to_string();
    let mut c = fx.client_py(tag, &["resolve", family, name, &port, "wait"]);
    let l = c.line();
    assert_eq!(l, format!("resolved {expect}"), "{tag}: getaddrinfo({name})");
    c
}

/// Lets a waiting client connect; the flow it makes.
fn connect(c: &mut Client, dst: &str) -> Seen {
    c.go();
    let (pid, port, _) = c.connected();
    Seen::tcp(&c.tag, &c.exe, pid, port, dst, SINK)
}

/// The HTTPS record of svc.example as the client gets it from the server,
/// checked with hickory: dnsmasq serves the hints the fixture wrote.
fn check_https_answer(hex_answer: &str) {
    use hickory_resolver::proto::op::Message;
    use hickory_resolver::proto::rr::rdata::svcb::SvcParamValue;
    use hickory_resolver::proto::rr::RData;
    let bytes = fx::unhex(hex_answer).unwrap_or_else(|| panic!("not hex: {hex_answer}"));
    let m = Message::from_vec(&bytes).unwrap_or_else(|e| panic!("the HTTPS answer does not parse: {e}"));
    let mut hints = Vec::new();
    for r in &m.answers {
        if let RData::HTTPS(h) = &r.data {
            for (_, v) in &h.0.svc_params {
                match v {
                    SvcParamValue::Ipv4Hint(x) => hints.extend(x.0.iter().map(|a| IpAddr::V4(a.0))),
                    SvcParamValue::Ipv6Hint(x) => hints.extend(x.0.iter().map(|a| IpAddr::V6(a.0))),
                    _ => {}
                }
            }
        }
    }
    let want: Vec<IpAddr> = vec![HINT_V4.parse().expect("v4"), HINT_V6.parse().expect("v6")];
    assert_eq!(hints, want, "svc.example's HTTPS hints: {:?}", m.answers);
}

fn json_args() -> Vec<&'static str> {
    vec!["--json", "-t", "1", "-46TU"]
}

fn tools_present() -> bool {
    require_root()
        && require_tool(fx::dnsmasq_bin())
        && require_tool("openssl")
        && require_tool("curl")
        && require_tool("getent")
}

/// The traffic of test 1: A, AAAA, the CNAME chain's head, and the HTTPS
/// record's hints (asked for by a program on its own socket: libc never
/// asks for HTTPS records). Returns (flow, asked-for name).
fn dns_traffic(fx: &Fixture) -> (Vec<(Seen, &'static str)>, Vec<Client>) {
    let mut flows = Vec::new();
    let mut clients = Vec::new();
    for (tag, family, name, dst) in [
        ("a4", "4", "a.example", A_V4),
        ("a6", "6", "a.example", A_V6),
        ("chain", "4", "head.example", CHAIN_V4),
    ] {
        let mut c = resolved(fx, tag, family, name, dst);
        flows.push((connect(&mut c, dst), name));
        clients.push(c);
    }
    for (tag, dst) in [("hint4", HINT_V4), ("hint6", HINT_V6)] {
        let q = fx::hex(&fx::dns_query(0x5eed, b"svc.example", 65));
        let port = SINK.to_string();
        let mut c = fx.client_py(tag, &["ask", DNS_V4, &q, dst, &port]);
        let (pid, sport, before) = c.connected();
        let answer = before
            .iter()
            .find_map(|l| l.strip_prefix("answer "))
            .unwrap_or_else(|| panic!("{tag}: no answer line in {before:?}"));
        check_https_answer(answer);
        flows.push((Seen::tcp(tag, &c.exe, pid, sport, dst, SINK), "svc.example"));
        clients.push(c);
    }
    (flows, clients)
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn dns_answers_name_flows_a_aaaa_cname_head_and_https_hints() {
    if !tools_present() {
        return;
    }
    let mut fx = Fixture::new(Resolver::Direct, &json_args());
    let (flows, _clients) = dns_traffic(&fx);
    // Everything the names do not decide first, for every flow.
    for (s, _) in &flows {
        let id = flow_of(&mut fx.ft, s);
        expect_ptr(&mut fx.ft, &s.what, id, &ptr_of(&s.dst));
    }
    for (s, name) in &flows {
        check_dns_named(&mut fx.ft, s, name);
    }
}

/// Two programs resolve different names of one address, both before
/// either connects (so the newest answer host-wide is the second's).
fn two_programs(fx: &Fixture) -> Vec<(Seen, &'static str, Client)> {
    let mut one = resolved(fx, "one", "4", "one.example", SHARED_V4);
    let mut two = resolved(fx, "two", "4", "two.example", SHARED_V4);
    let s1 = connect(&mut one, SHARED_V4);
    let s2 = connect(&mut two, SHARED_V4);
    vec![(s1, "one.example", one), (s2, "two.example", two)]
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn through_a_stub_on_127_0_0_53_names_stay_per_process() {
    if !tools_present() {
        return;
    }
    let mut fx = Fixture::new(Resolver::Stub, &json_args());
    let flows = two_programs(&fx);
    for (s, _, _) in &flows {
        let id = flow_of(&mut fx.ft, s);
        expect_ptr(&mut fx.ft, &s.what, id, &ptr_of(&s.dst));
    }
    for (s, name, _) in &flows {
        check_dns_named(&mut fx.ft, s, name);
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn two_programs_one_address_keep_their_own_names_and_a_program_speaking_dns_is_seen() {
    if !tools_present() {
        return;
    }
    let mut fx = Fixture::new(Resolver::Direct, &json_args());
    // own.example is asked for last, on the program's own UDP socket, and
    // answered with the same address: the newest host-wide answer, which
    // neither of the other two flows may take.
    let mut one = resolved(&fx, "one", "4", "one.example", SHARED_V4);
    let mut two = resolved(&fx, "two", "4", "two.example", SHARED_V4);
    let q = fx::hex(&fx::dns_query(0x0e0e, b"own.example", 1));
    let port = SINK.to_string();
    let mut own = fx.client_py("own", &["ask", DNS_V4, &q, SHARED_V4, &port, "wait"]);
    let mut before = Vec::new();
    loop {
        let l = own.line();
        if l == "asked" {
            break;
        }
        before.push(l);
    }
    assert!(
        before
            .iter()
            .any(|l| l.starts_with("answer ") && l.contains("c000020e")),
        "own: the server's answer for own.example holds {SHARED_V4}: {before:?}"
    );
    let flows = [
        (connect(&mut one, SHARED_V4), "one.example"),
        (connect(&mut two, SHARED_V4), "two.example"),
        (connect(&mut own, SHARED_V4), "own.example"),
    ];
    for (s, _) in &flows {
        let id = flow_of(&mut fx.ft, s);
        expect_ptr(&mut fx.ft, &s.what, id, &ptr_of(&s.dst));
    }
    for (s, name) in &flows {
        check_dns_named(&mut fx.ft, s, name);
    }
}

/// The RFC 9001 Appendix A.2 client Initial (SNI example.com), padded to
/// 1200 bytes.
fn quic_initial() -> Vec<u8> {
    let bytes = fx::unhex(include_str!(
        "../../flowtop/src/names/testdata/rfc9001_a2_client_initial.hex"
    ))
    .expect("the RFC 9001 fixture is hex");
    assert_eq!(bytes.len(), 1200, "the RFC 9001 A.2 Initial is 1200 bytes");
    bytes
}

/// A hand-made ClientHello for `sni` sent in two writes, the first ending
/// well before the server_name extension; returns the flow.
fn split_hello(fx: &Fixture, tag: &str, sni: &[u8]) -> (Seen, Client) {
    send_hello(fx, tag, fx::client_hello(sni, 1216))
}

/// Sends `(hello, sni_at)` as [`split_hello`] does.
fn send_hello(fx: &Fixture, tag: &str, (hello, sni_at): (Vec<u8>, usize)) -> (Seen, Client) {
    let split = (sni_at / 2).to_string();
    let dport = HELLO_SINK.to_string();
    let mut c = fx.client_py(tag, &["send", DNS_V4, &dport, &fx::hex(&hello), &split]);
    let (pid, port, _) = c.connected();
    (Seen::tcp(tag, &c.exe, pid, port, DNS_V4, HELLO_SINK), c)
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn connections_name_themselves_sni_split_hello_http_host_and_quic() {
    if !tools_present() {
        return;
    }
    let mut fx = Fixture::new(Resolver::Direct, &json_args());
    // TLS through openssl s_server, by address, with an SNI no resolver saw.
    let connect_to = format!("sni.example:{TLS}:{DNS_V4}:{TLS}");
    let (exe, pid, port) = fx.curl(
        "tls",
        &["-k", "--connect-to", &connect_to, "https://sni.example/"],
    );
    let tls = Seen::tcp("curl over TLS", &exe, pid, port, DNS_V4, TLS);
    // A ClientHello whose SNI comes in the second segment.
    let (split, _c1) = split_hello(&fx, "split", b"split.example");
    // An outer Encrypted ClientHello: its SNI is the public name, marked so.
    let (ech, _c2) = send_hello(&fx, "ech", fx::client_hello_ech(b"public.example", 1216));
    // Plain HTTP by address with a Host header.
    let url = format!("http://{DNS_V4}:{HTTP}/");
    let (exe, pid, port) = fx.curl("http", &["-H", "Host: web.example", &url]);
    let http = Seen::tcp("curl over HTTP", &exe, pid, port, DNS_V4, HTTP);
    // A QUIC Initial.
    let dport = TLS.to_string();
    let mut q = fx.client_py("quic", &["udp", DNS_V4, &dport, &fx::hex(&quic_initial())]);
    let (qpid, qport, _) = q.connected();
    let quic = Seen::udp("QUIC Initial", &q.exe, qpid, qport, DNS_V4, TLS);

    let checks = [
        (&tls, "sni.example", "sni"),
        (&split, "split.example", "sni"),
        (&http, "web.example", "http"),
        (&quic, "example.com", "quic"),
    ];
    let ids: Vec<u32> = checks.iter().map(|(s, _, _)| flow_of(&mut fx.ft, s)).collect();
    let ech_id = flow_of(&mut fx.ft, &ech);
    for ((s, name, source), id) in checks.iter().zip(ids) {
        expect_name(&mut fx.ft, &s.what, id, name, source);
    }
    let v = expect_name(&mut fx.ft, "the ECH outer hello", ech_id, "public.example", "sni");
    if v.get("dst_name_ech") != Some(&Value::Bool(true)) {
        fx.ft
            .fail(&format!("the ECH outer hello: dst_name_ech is not true: {v}"));
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn hostile_names_keep_every_json_line_valid() {
    if !tools_present() {
        return;
    }
    let mut fx = Fixture::new(Resolver::Direct, &json_args());
    let escape: &[u8] = b"evil\x1b[31m\"quoted\"\\back\\slash.example";
    let long: Vec<u8> = [
        &[b'a'; 63][..],
        b".",
        &[b'b'; 63],
        b".",
        &[b'c'; 63],
        b".",
        &[b'd'; 61],
    ]
    .concat();
    assert_eq!(long.len(), 253);
    let too_long: Vec<u8> = [&long[..], b".", &[b'e'; 46]].concat();
    let (esc, _c1) = split_hello(&fx, "esc", escape);
    let (l253, _c2) = split_hello(&fx, "long", &long);
    let (l300, _c3) = split_hello(&fx, "toolong", &too_long);
    // A DNS answer with hostile bytes in the asked-for name, after one
    // whose name is a compression loop, from the hostile responder.
    let dns_name: &[u8] = b"evil\x1b]0;owned\x07\x1b[2J.example";
    let queries = [
        fx::dns_query(1, b"loop.example", 1),
        fx::dns_query(2, dns_name, 1),
    ]
    .iter()
    .map(|q| fx::hex(q))
    .collect::<Vec<_>>()
    .join(",");
    let port = SINK.to_string();
    let mut d = fx.client_py(
        "hostiledns",
        &["ask", HOSTILE_DNS_V4, &queries, HOSTILE_V4, &port],
    );
    let (dpid, dsport, lines) = d.connected();
    let answers: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("answer ") && l != &"answer none")
        .collect();
    assert_eq!(answers.len(), 2, "hostiledns: both queries answered: {lines:?}");
    let dns = Seen::tcp("hostile DNS", &d.exe, dpid, dsport, HOSTILE_V4, SINK);

    let ids: Vec<u32> = [&esc, &l253, &l300, &dns]
        .iter()
        .map(|s| flow_of(&mut fx.ft, s))
        .collect();
    // flowtop is alive and still reading conntrack: a sentinel shows up.
    fx.client.conntrack(
        "-I -s 203.0.113.77 -d 198.51.100.77 -p tcp --sport 1077 --dport 77 --state ESTABLISHED -t 300",
    );
    if find_line(&mut fx.ft, WAIT, |v| {
        has_tuple(v, "tcp", "203.0.113.77", 1077, "198.51.100.77", 77)
    })
    .is_none()
    {
        fx.ft.fail("the sentinel after the hostile names never showed up");
    }

    // Kept raw (JSON escapes it) or sanitised: either way recognisable.
    let v = find_line(&mut fx.ft, NAME_WAIT, |v| {
        flow_id(v) == Some(ids[0]) && v.get("dst_name").is_some_and(|n| !n.is_null())
    })
    .unwrap_or_else(|| {
        fx.ft
            .fail("the escape-laden SNI: no line of its flow carries a dst_name")
    });
    let name = jstr(&v, "dst_name").unwrap_or_default();
    assert!(
        name.contains("evil")
            && name.contains("quoted")
            && name.ends_with(".example")
            && jstr(&v, "dst_name_source") == Some("sni"),
        "the escape-laden SNI {escape:?}: {v}"
    );
    expect_name(
        &mut fx.ft,
        "the 253-byte SNI",
        ids[1],
        &String::from_utf8_lossy(&long),
        "sni",
    );
    let v = find_line(&mut fx.ft, NAME_WAIT, |v| {
        flow_id(v) == Some(ids[3]) && v.get("dst_name").is_some_and(|n| !n.is_null())
    })
    .unwrap_or_else(|| {
        fx.ft
            .fail("the hostile DNS name: no line of its flow carries a dst_name")
    });
    let name = jstr(&v, "dst_name").unwrap_or_default();
    assert!(
        name.contains("evil") && name.ends_with(".example") && jstr(&v, "dst_name_source") == Some("dns"),
        "the hostile DNS name: {v}"
    );

    // Every line is JSON (serde_json refuses raw C0 controls in strings),
    // and no name is longer than the bound.
    fx.ft.pump();
    if !fx.ft.bad.is_empty() {
        fx.ft.fail("stdout lines that are not JSON objects");
    }
    for v in fx.ft.lines.clone() {
        if let Some(n) = jstr(&v, "dst_name") {
            // 253 bytes of name, each byte at most four once escaped.
            if n.len() > 4 * 253 {
                fx.ft.fail(&format!("a dst_name past the 253-byte bound: {v}"));
            }
        }
        if flow_id(&v) == Some(ids[2]) && jstr(&v, "dst_name").is_some_and(|n| n.len() > 253) {
            fx.ft.fail(&format!("the 300-byte SNI came through: {v}"));
        }
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn no_inspect_names_nothing() {
    if !tools_present() {
        return;
    }
    let mut args = json_args();
    args.push("--no-inspect");
    let mut fx = Fixture::new(Resolver::Direct, &args);
    let (flows, _clients) = dns_traffic(&fx);
    let connect_to = format!("sni.example:{TLS}:{DNS_V4}:{TLS}");
    let (exe, pid, port) = fx.curl(
        "tls",
        &["-k", "--connect-to", &connect_to, "https://sni.example/"],
    );
    let tls = Seen::tcp("curl over TLS", &exe, pid, port, DNS_V4, TLS);
    let mut ids = Vec::new();
    for (s, _) in &flows {
        let id = flow_of(&mut fx.ft, s);
        // The PTR names come after the flows' first lines: by then any
        // name would have come too.
        expect_ptr(&mut fx.ft, &s.what, id, &ptr_of(&s.dst));
        ids.push(id);
    }
    ids.push(flow_of(&mut fx.ft, &tls));
    fx.ft.stop();
    for v in fx.ft.lines.clone() {
        if !flow_id(&v).is_some_and(|id| ids.contains(&id)) {
            continue;
        }
        if v.get("dst_name") != Some(&Value::Null) || v.get("dst_name_source") != Some(&Value::Null) {
            fx.ft.fail(&format!(
                "--no-inspect: a flow line without dst_name: null and dst_name_source: null: {v}"
            ));
        }
    }
}

/// Not root: the hand-made hello is what the brief says it is, checked
/// with flowtop's own parser (already in the tree): no name from the first
/// write, the name once the second arrives.
#[test]
fn the_split_hello_names_nothing_until_its_second_part() {
    use flowtop::names::hello::Reassembly;
    use flowtop::names::Step;
    let (hello, sni_at) = fx::client_hello(b"split.example", 1216);
    let mut r = Reassembly::new();
    assert_eq!(r.push(&hello[..sni_at / 2]), Ok(Step::NeedMore));
    match r.push(&hello[sni_at / 2..]) {
        Ok(Step::Done(Some(n))) => assert_eq!(&*n.name, "split.example"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_ech_hello_gives_its_public_name_as_outer() {
    use flowtop::names::hello::Reassembly;
    use flowtop::names::Step;
    let (hello, _) = fx::client_hello_ech(b"public.example", 1216);
    match Reassembly::new().push(&hello) {
        Ok(Step::Done(Some(n))) => assert_eq!((&*n.name, n.outer), ("public.example", true)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_quic_fixture_names_example_com() {
    let step = flowtop::names::quic::initial_server_name(&quic_initial()).expect("the Initial decrypts");
    assert_eq!(
        flowtop::names::quic::name_of(&step).as_deref(),
        Some("example.com")
    );
}
