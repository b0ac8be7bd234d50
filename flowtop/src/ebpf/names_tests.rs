//! Root-only tests of the name captures (issue 13): the programs attached
//! for real, loopback traffic, assertions on the decoded
//! [`NameCapture`]s.
//!
//! The fake DNS servers listen on port 53 of loopback addresses of their
//! own (127.0.13.x: nothing else binds them, and a local resolver on
//! 127.0.0.1:53 or 127.0.0.53:53 is not disturbed); each test uses its own
//! address, so the tests can run side by side. Several tests may have the
//! programs attached at once: every assertion picks captures by the cookie
//! of the socket it made.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::tests::socket_cookie;
use super::*;
use crate::names::capture::{CaptureKind, NameCapture};
use flowtop_common::NAME_CAPTURE_MAX;
use flowtop_testkit::skip::require_root;

const MAX: usize = NAME_CAPTURE_MAX as usize;

/// Collects the name captures the reader delivers.
struct Names {
    handle: SockEventsHandle,
    rx: std::sync::mpsc::Receiver<Vec<NameCapture>>,
    seen: Vec<NameCapture>,
}

impl Names {
    /// Attaches the programs (with inspection on or off) and starts the
    /// reader; `None`, and the test skipped, when not root.
    fn start_as_root(inspect: bool) -> Option<Self> {
        require_root().then(|| Self::start(inspect))
    }

    fn start(inspect: bool) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = attach_sock_events_inspecting(inspect)
            .and_then(|a| {
                assert_eq!(a.inspecting(), inspect);
                a.start_batch_reader(move |batch| batch.names.is_empty() || tx.send(batch.names).is_ok())
            })
            .unwrap_or_else(|e| panic!("attach: {e}"));
        let ingress = handle.programs().iter().any(|p| p == "cgroup_skb/ingress");
        assert_eq!(ingress, inspect, "{:?}", handle.programs());
        Self {
            handle,
            rx,
            seen: Vec::new(),
        }
    }

    /// Takes whatever arrives within `d`.
    fn drain_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(batch) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.extend(batch);
        }
    }

    /// Waits (up to 5 s) until `n` captures satisfy `pred`, then a little
    /// longer for any more; returns all that satisfy it.
    fn wait_for(&mut self, what: &str, n: usize, pred: impl Fn(&NameCapture) -> bool) -> Vec<NameCapture> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.seen.iter().filter(|c| pred(c)).count() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(batch) => self.seen.extend(batch),
                Err(_) => panic!(
                    "fewer than {n} {what} captures within 5 s: {:?}; lost {:?}",
                    self.of(&pred),
                    self.handle.lost_name_events()
                ),
            }
        }
        self.drain_for(Duration::from_millis(300));
        self.of(&pred)
    }

    fn of(&self, pred: &impl Fn(&NameCapture) -> bool) -> Vec<NameCapture> {
        self.seen.iter().filter(|c| pred(c)).cloned().collect()
    }

    fn of_cookie(&self, cookie: u64) -> Vec<NameCapture> {
        self.of(&|c: &NameCapture| c.cookie == cookie)
    }

    /// Waits for the one `what` capture of `socket` that satisfies `pred`
    /// and asserts there is no other.
    fn one_of(
        &mut self,
        what: &str,
        socket: &impl std::os::fd::AsRawFd,
        pred: impl Fn(&NameCapture) -> bool,
    ) -> NameCapture {
        let cookie = socket_cookie(socket);
        let got = self.wait_for(what, 1, |c| c.cookie == cookie && pred(c));
        assert_eq!(got.len(), 1, "{got:?}");
        got.into_iter().next().expect("one capture")
    }

    /// Asserts that `socket`'s datagram budget is spent: it is back on its
    /// one-lookup path.
    fn assert_datagram_budget_spent(&self, socket: &UdpSocket) {
        let state = self
            .handle
            .sock_state(socket)
            .expect("SOCK_STATE")
            .expect("a value");
        assert_eq!(state.datagrams_left, 0, "{state:?}");
    }
}

/// Sends `answer` from `server` to `client`'s address and has `client`
/// receive it into `buf`.
fn answer_to(server: &UdpSocket, client: &UdpSocket, answer: &[u8], buf: &mut [u8]) -> usize {
    server
        .send_to(answer, client.local_addr().expect("addr"))
        .expect("send_to");
    client.recv(buf).expect("recv")
}

/// A loopback TCP connection to a listener on `addr`: the listener, the
/// connecting socket and the accepted one.
fn tcp_connection(addr: &str) -> (TcpListener, TcpStream, TcpStream) {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (listener, client, server)
}

/// The namespace check the reader's consumer makes: a capture's netns
/// cookie, when the kernel gives one, is this namespace's.
fn assert_own_netns(c: &NameCapture) {
    if let (Some(own), cookie) = (own_netns_cookie(), c.netns_cookie) {
        if cookie != 0 {
            assert_eq!(cookie, own, "{c:?}");
        }
    }
}

/// Whether name events carry the netns cookie here: the helper is
/// allowed in cgroup_skb programs from Linux 6.18 (the loader tries it
/// first on every kernel and falls back to 0).
fn netns_cookie_expected() -> bool {
    own_netns_cookie().is_some()
        && aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 18, 0))
}

/// Bytes that look like nothing in particular, distinct per `seed`.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// (a) A UDP answer from port 53 reaches a connected and an unconnected
/// socket: both captured, with the receiving socket's cookie and the exact
/// bytes; a datagram from port 5353 is not captured.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn udp_dns_answers_are_captured_for_connected_and_unconnected_sockets() {
    let Some(mut names) = Names::start_as_root(true) else {
        return;
    };
    let server = UdpSocket::bind("127.0.13.1:53").expect("bind 127.0.13.1:53");
    let server_addr = server.local_addr().expect("addr");
    let mut buf = [0u8; 2048];

    let connected = UdpSocket::bind("127.0.0.1:0").expect("bind");
    connected.connect(server_addr).expect("connect");
    connected.send(b"query-1").expect("send");
    let (_, peer) = server.recv_from(&mut buf).expect("recv");
    let answer1 = b"\x12\x34answer for the connected socket".to_vec();
    server.send_to(&answer1, peer).expect("send_to");
    connected.recv(&mut buf).expect("recv answer");

    let unconnected = UdpSocket::bind("127.0.0.1:0").expect("bind");
    unconnected.send_to(b"query-2", server_addr).expect("send_to");
    let (_, peer2) = server.recv_from(&mut buf).expect("recv");
    let answer2 = b"\x56\x78answer for the unconnected socket".to_vec();
    server.send_to(&answer2, peer2).expect("send_to");
    unconnected.recv_from(&mut buf).expect("recv answer");

    // Not port 53: nothing.
    let mdns = UdpSocket::bind("127.0.13.1:5353").expect("bind 5353");
    mdns.send_to(
        b"from 5353, not a DNS answer",
        unconnected.local_addr().expect("addr"),
    )
    .expect("send_to");
    unconnected.recv_from(&mut buf).expect("recv");

    for (socket, answer) in [(&connected, &answer1), (&unconnected, &answer2)] {
        let c = &names.one_of("DNS", socket, |c| c.kind == CaptureKind::Dns);
        assert_eq!(&*c.bytes, answer.as_slice(), "{c:?}");
        assert_eq!(c.local, socket.local_addr().expect("addr"), "{c:?}");
        assert_eq!(c.remote, server_addr, "{c:?}");
        assert_eq!(c.protocol, 17);
        assert!(!c.tcp && !c.syn && !c.truncated, "{c:?}");
        assert_eq!(c.seq, 0);
        assert_own_netns(c);
        if netns_cookie_expected() {
            assert_ne!(c.netns_cookie, 0, "{c:?}");
        }
    }
    let unconnected_cookie = socket_cookie(&unconnected);
    let all = names.of_cookie(unconnected_cookie);
    assert_eq!(all.len(), 1, "the datagram from port 5353 was captured: {all:?}");
    // The sockets sent plain queries (first byte not 0x80): no datagram
    // captures either.
    assert!(names.of_cookie(socket_cookie(&connected)).len() == 1);
}

/// (f) An answer longer than NAME_CAPTURE_MAX: its first bytes, flagged.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn a_long_dns_answer_is_captured_truncated() {
    let Some(mut names) = Names::start_as_root(true) else {
        return;
    };
    let server = UdpSocket::bind("127.0.13.6:53").expect("bind 127.0.13.6:53");
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let answer = pattern(5000, 7);
    let mut buf = [0u8; 8192];
    assert_eq!(answer_to(&server, &client, &answer, &mut buf), 5000);
    let got = names.one_of("DNS", &client, |_| true);
    assert!(got.truncated, "{:?}", got.truncated);
    assert_eq!(&*got.bytes, &answer[..MAX]);
}

/// (b) DNS over TCP: the server's SYN-ACK (its initial sequence number),
/// then its data segments with their sequence numbers.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn dns_over_tcp_gives_the_syn_ack_then_the_segments() {
    let Some(mut names) = Names::start_as_root(true) else {
        return;
    };
    let (listener, mut client, mut server) = tcp_connection("127.0.13.2:53");
    server.set_nodelay(true).expect("nodelay");
    client.write_all(b"\x00\x05query").expect("write");
    let mut buf = [0u8; 64];
    server.read_exact(&mut buf[..7]).expect("read query");
    let first = b"\x00\x1e".to_vec();
    let second = pattern(30, 3);
    server.write_all(&first).expect("write");
    client.read_exact(&mut buf[..2]).expect("read");
    server.write_all(&second).expect("write");
    client.read_exact(&mut buf[..30]).expect("read");

    let cookie = socket_cookie(&client);
    let got = names.wait_for("DNS over TCP", 3, |c| {
        c.cookie == cookie && c.kind == CaptureKind::Dns
    });
    assert_eq!(got.len(), 3, "{got:?}");
    let syn = &got[0];
    assert!(syn.syn && syn.tcp && syn.bytes.is_empty(), "{syn:?}");
    assert_eq!(syn.protocol, 6);
    assert_eq!(syn.remote, listener.local_addr().expect("addr"));
    assert_eq!(syn.local, client.local_addr().expect("addr"));
    let isn = syn.seq;
    assert!(got[1].tcp && !got[1].syn, "{:?}", got[1]);
    assert_eq!(
        (got[1].seq, &*got[1].bytes),
        (isn.wrapping_add(1), first.as_slice())
    );
    assert_eq!(
        (got[2].seq, &*got[2].bytes),
        (isn.wrapping_add(3), second.as_slice())
    );
    for c in &got {
        assert_own_netns(c);
    }
}

/// Writes `data` and waits until the peer has read all of it, so that it
/// leaves in segments of its own.
fn send_segment(client: &mut TcpStream, server: &mut TcpStream, data: &[u8]) {
    client.write_all(data).expect("write");
    let mut buf = vec![0u8; data.len()];
    server.read_exact(&mut buf).expect("read");
}

/// (c) The first bytes a connecting TCP socket sends: segments at their
/// stream offsets, the one crossing NAME_CAPTURE_MAX up to it, nothing
/// after; the accepted socket's sends never.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn a_connecting_tcp_socket_has_its_first_bytes_captured() {
    let Some(mut names) = Names::start_as_root(true) else {
        return;
    };
    let (listener, mut client, mut server) = tcp_connection("127.0.0.1:0");
    client.set_nodelay(true).expect("nodelay");
    server.set_nodelay(true).expect("nodelay");
    let stream = pattern(6000, 1);
    send_segment(&mut client, &mut server, &stream[..100]);
    send_segment(&mut client, &mut server, &stream[100..3100]);
    send_segment(&mut client, &mut server, &stream[3100..5100]);
    send_segment(&mut client, &mut server, &stream[5100..6000]);
    // The accepted socket's sends.
    send_segment(&mut server, &mut client, &pattern(200, 9));

    let cookie = socket_cookie(&client);
    let is_stream = |c: &NameCapture| c.cookie == cookie && c.kind == CaptureKind::Stream;
    let mut got = names.wait_for("stream", 3, is_stream);
    // Retransmissions would repeat an offset (not expected on loopback).
    got.dedup_by_key(|c| c.seq);
    let offsets: Vec<(u32, usize, bool)> = got.iter().map(|c| (c.seq, c.bytes.len(), c.truncated)).collect();
    assert_eq!(
        offsets,
        [(0, 100, false), (100, 3000, false), (3100, MAX - 3100, true)],
        "{got:?}"
    );
    let mut joined = Vec::new();
    for c in &got {
        joined.extend_from_slice(&c.bytes);
    }
    assert_eq!(joined, &stream[..MAX]);
    let c = &got[0];
    assert_eq!(c.protocol, 6);
    assert!(!c.tcp && !c.syn, "{c:?}");
    assert_eq!(c.local, client.local_addr().expect("addr"));
    assert_eq!(c.remote, listener.local_addr().expect("addr"));
    assert_own_netns(c);

    let server_cookie = socket_cookie(&server);
    assert_eq!(names.of_cookie(server_cookie), [], "the accepted socket's sends");
}

/// (d) The first datagrams of a new UDP tuple: captured when they start
/// like a QUIC long-header packet, three at most; a short-header-looking
/// datagram never.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn the_first_quic_like_datagrams_of_a_tuple_are_captured() {
    let Some(mut names) = Names::start_as_root(true) else {
        return;
    };
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sender.connect(sink.local_addr().expect("addr")).expect("connect");
    let datagrams: Vec<Vec<u8>> = (0..4u8)
        .map(|i| {
            let mut d = pattern(1200, i);
            d[0] = 0xc0;
            d
        })
        .collect();
    for d in &datagrams {
        sender.send(d).expect("send");
    }
    let short = UdpSocket::bind("127.0.0.1:0").expect("bind");
    short.connect(sink.local_addr().expect("addr")).expect("connect");
    let mut d = pattern(100, 5);
    d[0] = 0x40;
    short.send(&d).expect("send");

    let cookie = socket_cookie(&sender);
    let got = names.wait_for("datagram", 3, |c| c.cookie == cookie);
    assert_eq!(got.len(), 3, "{got:?}");
    for (c, d) in got.iter().zip(&datagrams) {
        assert_eq!(c.kind, CaptureKind::Datagram, "{c:?}");
        assert_eq!(&*c.bytes, d.as_slice());
        assert_eq!(c.protocol, 17);
        assert_eq!(c.local, sender.local_addr().expect("addr"));
        assert_eq!(c.remote, sink.local_addr().expect("addr"));
        assert!(!c.truncated);
        assert_own_netns(c);
    }
    assert_eq!(names.of_cookie(socket_cookie(&short)), []);
    names.assert_datagram_budget_spent(&sender);
}

/// (e) Inspection off (`--no-inspect`): no ingress program, and the same
/// traffic as above captures nothing.
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn with_inspection_off_nothing_is_captured() {
    let Some(mut names) = Names::start_as_root(false) else {
        return;
    };
    // DNS over UDP.
    let server = UdpSocket::bind("127.0.13.5:53").expect("bind 127.0.13.5:53");
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut buf = [0u8; 2048];
    answer_to(&server, &client, b"answer", &mut buf);
    // A TCP stream.
    let (_listener, mut tcp, mut accepted) = tcp_connection("127.0.0.1:0");
    send_segment(
        &mut tcp,
        &mut accepted,
        b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n",
    );
    // QUIC-like datagrams.
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sender
        .send_to(&[0xc0; 1200], client.local_addr().expect("addr"))
        .expect("send");
    client.recv(&mut buf).expect("recv");

    names.drain_for(Duration::from_millis(500));
    assert_eq!(names.seen, [], "captures with inspection off");
    assert_eq!(names.handle.lost_name_events(), Ok(0));
    names.assert_datagram_budget_spent(&sender);
}

/// DNS answers to AF_INET6 sockets: over IPv6, and over IPv4 to a
/// dual-stack socket (v4-mapped in the event, plain IPv4 once decoded).
#[test]
#[ignore = "needs root: run by cargo xtask test"]
fn dns_answers_reach_ipv6_and_dual_stack_sockets() {
    let Some(mut names) = Names::start_as_root(true) else {
        return;
    };
    let mut buf = [0u8; 2048];
    // IPv6.
    let server6 = UdpSocket::bind("[::1]:53").expect("bind [::1]:53");
    let client6 = UdpSocket::bind("[::1]:0").expect("bind");
    client6
        .connect(server6.local_addr().expect("addr"))
        .expect("connect");
    let answer6 = b"\x00\x01answer over IPv6".to_vec();
    answer_to(&server6, &client6, &answer6, &mut buf);
    // IPv4 to a dual-stack socket.
    let server4 = UdpSocket::bind("127.0.13.3:53").expect("bind 127.0.13.3:53");
    let dual = UdpSocket::bind("[::]:0").expect("bind [::]:0");
    let dual_port = dual.local_addr().expect("addr").port();
    let answer4 = b"\x00\x02answer to a dual-stack socket".to_vec();
    server4
        .send_to(&answer4, ("127.0.0.1", dual_port))
        .expect("send_to");
    dual.recv_from(&mut buf).expect("recv");

    let got = names.one_of("IPv6 DNS", &client6, |_| true);
    assert_eq!(&*got.bytes, answer6.as_slice());
    assert_eq!(got.local, client6.local_addr().expect("addr"));
    assert_eq!(got.remote, server6.local_addr().expect("addr"));

    let got = names.one_of("dual-stack DNS", &dual, |_| true);
    assert_eq!(&*got.bytes, answer4.as_slice());
    assert_eq!(got.local, format!("127.0.0.1:{dual_port}").parse().unwrap());
    assert_eq!(got.remote, server4.local_addr().expect("addr"));
}
