use std::net::IpAddr;

use hickory_resolver::proto::op::{Message, OpCode, Query};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

use super::*;

const OWN: u32 = 4242;

fn owner(pid: u32) -> Option<Arc<Owner>> {
    Some(Arc::new(Owner {
        pid,
        comm: format!("p{pid}"),
        ..Owner::default()
    }))
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A DNS response naming `addr` as `qname`.
fn dns_answer(qname: &str, addr: &str) -> Vec<u8> {
    let mut m = Message::response(1, OpCode::Query);
    let n = Name::from_ascii(qname).unwrap();
    m.add_query(Query::query(n.clone(), RecordType::A));
    m.add_answer(Record::from_rdata(n, 300, RData::A(A(addr.parse().unwrap()))));
    m.to_vec().unwrap()
}

fn capture(kind: CaptureKind, local: &str, remote: &str, seq: u32, bytes: &[u8]) -> NameCapture {
    NameCapture {
        kind,
        cookie: 7,
        netns_cookie: 0,
        protocol: if kind == CaptureKind::Stream { 6 } else { 17 },
        local: sa(local),
        remote: sa(remote),
        seq,
        tcp: false,
        syn: false,
        truncated: false,
        bytes: bytes.into(),
    }
}

fn udp_dns(bytes: &[u8]) -> NameCapture {
    capture(CaptureKind::Dns, "127.0.0.1:40000", "127.0.0.53:53", 0, bytes)
}

fn stream(seq: u32, bytes: &[u8]) -> NameCapture {
    capture(CaptureKind::Stream, "10.0.0.1:50000", "192.0.2.9:443", seq, bytes)
}

fn name_of(t: &NameTracker, pid: Option<u32>, at: Instant) -> Option<(String, Source, bool)> {
    t.name_for(6, sa("10.0.0.1:50000"), sa("192.0.2.9:443"), pid, at)
        .map(|n| (n.name.to_string(), n.source, n.ech_outer))
}

/// A TLS record holding a ClientHello whose server_name is `name`, padded
/// by a padding extension of `pad` bytes placed before it.
fn client_hello(name: &[u8], pad: usize, ech: bool) -> Vec<u8> {
    fn with_len(v: &[u8]) -> Vec<u8> {
        let mut out = (v.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(v);
        out
    }
    let mut exts = Vec::new();
    exts.extend_from_slice(&[0, 21]);
    exts.extend_from_slice(&with_len(&vec![0; pad]));
    if ech {
        exts.extend_from_slice(&[0xfe, 0x0d]);
        exts.extend_from_slice(&with_len(&[0, 1, 2, 3]));
    }
    let mut entry = vec![0];
    entry.extend_from_slice(&with_len(name));
    exts.extend_from_slice(&[0, 0]);
    exts.extend_from_slice(&with_len(&with_len(&entry)));
    let mut body = vec![3, 3];
    body.extend_from_slice(&[9; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&with_len(&exts));
    let mut hs = vec![1, 0];
    hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hs.extend_from_slice(&body);
    let mut rec = vec![22, 3, 1];
    rec.extend_from_slice(&with_len(&hs));
    rec
}

#[test]
fn answers_name_flows_of_the_receiving_process_and_host_wide() {
    let mut t = NameTracker::new(OWN);
    let t0 = Instant::now();
    assert!(t.on_captures(
        [(udp_dns(&dns_answer("api.example.", "192.0.2.9")), owner(10))],
        t0
    ));
    assert_eq!(t.stats.answers, 1);
    assert_eq!(t.book().len(), 2, "per process and host-wide");
    let got = name_of(&t, Some(10), t0);
    assert_eq!(got, Some(("api.example".into(), Source::Dns, false)));
    // Another process resolved it to something else: its own answer wins.
    let t1 = t0 + Duration::from_secs(1);
    t.on_captures(
        [(udp_dns(&dns_answer("other.example.", "192.0.2.9")), owner(11))],
        t1,
    );
    assert_eq!(name_of(&t, Some(10), t1).unwrap().0, "api.example");
    assert_eq!(name_of(&t, Some(11), t1).unwrap().0, "other.example");
    // Unknown process: the newest host-wide answer.
    assert_eq!(name_of(&t, None, t1).unwrap().0, "other.example");
    assert_eq!(
        t.book().names_of(10, t1),
        vec![(ip("192.0.2.9"), Arc::from("api.example"))]
    );
}

#[test]
fn answers_to_flowtops_own_resolver_never_count() {
    let mut t = NameTracker::new(OWN);
    let t0 = Instant::now();
    assert!(!t.on_captures(
        [(udp_dns(&dns_answer("ptr.example.", "192.0.2.9")), owner(OWN))],
        t0
    ));
    assert_eq!(t.stats.own_ignored, 1);
    assert!(t.book().is_empty());
    assert_eq!(name_of(&t, None, t0), None);
}

#[test]
fn an_answer_received_after_the_flow_began_does_not_name_it() {
    let mut t = NameTracker::new(OWN);
    let t0 = Instant::now();
    t.on_captures(
        [(udp_dns(&dns_answer("late.example.", "192.0.2.9")), owner(10))],
        t0 + SLACK + Duration::from_secs(1),
    );
    assert_eq!(name_of(&t, Some(10), t0), None);
    // Within the slack (the capture's way to the engine): it does.
    assert!(name_of(&t, Some(10), t0 + Duration::from_secs(1)).is_some());
}

#[test]
fn garbage_is_counted_never_fatal() {
    let mut t = NameTracker::new(OWN);
    let now = Instant::now();
    let mut batch = vec![(udp_dns(b"\x00\x01garbage"), None), (udp_dns(b""), None)];
    let mut tcp = udp_dns(&[0xff; 40]);
    tcp.tcp = true;
    batch.push((tcp, None));
    batch.push((
        capture(
            CaptureKind::Datagram,
            "10.0.0.1:1",
            "192.0.2.1:443",
            0,
            &[0xc0; 30],
        ),
        None,
    ));
    batch.push((stream(0, &[0xff; 100]), None));
    assert!(!t.on_captures(batch, now));
    assert_eq!(t.stats.dns_errors, 3);
    assert_eq!(t.stats.captures, 5);
}

fn tcp_dns(seq: u32, syn: bool, bytes: &[u8]) -> NameCapture {
    let mut c = udp_dns(bytes);
    c.tcp = true;
    c.syn = syn;
    c.seq = seq;
    c.protocol = 6;
    c
}

#[test]
fn dns_over_tcp_is_reassembled_from_the_servers_isn() {
    let msg = dns_answer("tcp.example.", "192.0.2.9");
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&msg);
    let isn = u32::MAX - 5; // the sequence numbers wrap
    let (a, b) = framed.split_at(9);
    let mut t = NameTracker::new(OWN);
    let now = Instant::now();
    let batch = vec![
        (tcp_dns(isn, true, b""), owner(10)),
        // Out of order, and a retransmission.
        (tcp_dns(isn.wrapping_add(1 + 9), false, b), owner(10)),
        (tcp_dns(isn.wrapping_add(1), false, a), owner(10)),
        (tcp_dns(isn.wrapping_add(1), false, a), owner(10)),
    ];
    assert!(t.on_captures(batch, now));
    assert_eq!(t.stats.answers, 1);
    assert_eq!(name_of(&t, Some(10), now).unwrap().0, "tcp.example");
    // Without the SYN, a segment holding a whole message still reads.
    let mut t = NameTracker::new(OWN);
    assert!(t.on_captures([(tcp_dns(1234, false, &framed), None)], now));
}

#[test]
fn sni_across_segments_out_of_order_with_duplicates() {
    let hello = client_hello(b"api.github.com", 1500, false);
    let (a, rest) = hello.split_at(700);
    let (b, c) = rest.split_at(700);
    let mut t = NameTracker::new(OWN);
    let now = Instant::now();
    assert!(!t.on_captures([(stream(1400, c), None), (stream(0, a), None)], now));
    assert!(!t.on_captures([(stream(0, a), None)], now));
    assert!(t.on_captures([(stream(700, b), None)], now));
    assert_eq!(
        name_of(&t, Some(10), now),
        Some(("api.github.com".into(), Source::Sni, false))
    );
    // The state is freed; a late retransmission changes nothing.
    assert!(!t.on_captures([(stream(0, a), None)], now));
    assert!(t.memory_bytes() < 4 * 1024);
}

#[test]
fn the_connections_name_comes_before_any_answer() {
    let mut t = NameTracker::new(OWN);
    let now = Instant::now();
    t.on_captures(
        [(udp_dns(&dns_answer("dns.example.", "192.0.2.9")), owner(10))],
        now,
    );
    t.on_captures(
        [(stream(0, &client_hello(b"ech.example", 0, true)), owner(10))],
        now,
    );
    assert_eq!(
        name_of(&t, Some(10), now),
        Some(("ech.example".into(), Source::Sni, true))
    );
    // A later flow on the same tuple (port reuse) does not inherit it.
    let later = now + SLACK + Duration::from_secs(60);
    assert_eq!(name_of(&t, Some(10), later).unwrap().1, Source::Dns);
}

#[test]
fn a_new_socket_on_a_used_tuple_starts_over() {
    let mut t = NameTracker::new(OWN);
    let now = Instant::now();
    assert!(t.on_captures(
        [(stream(0, &client_hello(b"first.example", 0, false)), None)],
        now
    ));
    // The same tuple again (the port used again), another socket.
    let later = now + Duration::from_secs(120);
    let mut again = stream(0, &client_hello(b"second.example", 0, false));
    again.cookie = 8;
    assert!(t.on_captures([(again, None)], later));
    assert_eq!(name_of(&t, None, later).unwrap().0, "second.example");
}

#[test]
fn http_host_and_giving_up_on_other_protocols() {
    let mut t = NameTracker::new(OWN);
    let now = Instant::now();
    assert!(!t.on_captures([(stream(0, b"GET / HTTP/1.1\r\nHo"), None)], now));
    assert!(t.on_captures([(stream(18, b"st: example.org:8080\r\n\r\n"), None)], now));
    assert_eq!(
        name_of(&t, None, now),
        Some(("example.org".into(), Source::Http, false))
    );
    let other = capture(
        CaptureKind::Stream,
        "10.0.0.1:50001",
        "192.0.2.9:22",
        0,
        b"SSH-2.0-x\r\n",
    );
    assert!(!t.on_captures([(other, None)], now));
    assert_eq!(t.stats.conn_names, 1);
}

#[test]
fn per_tuple_state_is_bounded() {
    let mut t = NameTracker::new(OWN);
    let now = Instant::now();
    let start = client_hello(b"x.example", 3000, false);
    for port in 0..(4 * STREAMS_HALF) as u16 {
        let c = capture(
            CaptureKind::Stream,
            &format!("10.0.0.1:{}", 1000 + port),
            "192.0.2.9:443",
            0,
            &start[..1000],
        );
        t.on_captures([(c, None)], now);
    }
    assert!(t.entries() <= 2 * STREAMS_HALF);
    assert!(t.memory_bytes() <= 2 * STREAMS_HALF * (MAX_HELLO + SLOT_OVERHEAD + 1024));
}

#[test]
fn quic_initial_names_its_tuple() {
    let hex: String = include_str!("testdata/rfc9001_a2_client_initial.hex")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let mut t = NameTracker::new(OWN);
    let now = Instant::now();
    let c = capture(
        CaptureKind::Datagram,
        "10.0.0.1:50000",
        "192.0.2.9:443",
        0,
        &bytes,
    );
    assert!(t.on_captures([(c, None)], now));
    let got = t
        .name_for(17, sa("10.0.0.1:50000"), sa("192.0.2.9:443"), None, now)
        .unwrap();
    assert_eq!((&*got.name, got.source), ("example.com", Source::Quic));
}

mod arbitrary {
    use proptest::prelude::*;

    use super::*;

    fn kind() -> impl Strategy<Value = CaptureKind> {
        prop_oneof![
            Just(CaptureKind::Dns),
            Just(CaptureKind::Stream),
            Just(CaptureKind::Datagram)
        ]
    }

    proptest! {
        /// Any bytes, offsets and flags: counted or ignored, never a panic,
        /// and the state stays within its bounds.
        #[test]
        fn any_capture_is_survived(
            batch in proptest::collection::vec(
                (kind(), any::<u32>(), any::<bool>(), any::<bool>(), 0u16..4, proptest::collection::vec(any::<u8>(), 0..600)),
                1..40,
            )
        ) {
            let mut t = NameTracker::new(OWN);
            let now = Instant::now();
            let captures: Vec<_> = batch
                .into_iter()
                .map(|(kind, seq, tcp, syn, port, bytes)| {
                    // Few tuples, so that segments meet; offsets mostly small.
                    let local = format!("10.0.0.1:{}", 40000 + port);
                    let seq = if kind == CaptureKind::Stream { seq % 5000 } else { seq };
                    let mut c = capture(kind, &local, "192.0.2.9:443", seq, &bytes);
                    c.tcp = tcp;
                    c.syn = syn;
                    (c, None)
                })
                .collect();
            t.on_captures(captures, now);
            prop_assert!(t.entries() <= 2 * (STREAMS_HALF + DATAGRAMS_HALF + TCP_DNS_HALF + FOUND_HALF));
            let _ = t.memory_bytes();
            let _ = name_of(&t, None, now);
        }
    }
}
