use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_resolver::proto::op::{Message, MessageType, OpCode, Query};
use hickory_resolver::proto::rr::rdata::svcb::{IpHint, SvcParamKey, SvcParamValue};
use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, HTTPS, SVCB};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

use super::*;

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn response(q: &str, qtype: RecordType, answers: Vec<Record>) -> Vec<u8> {
    let mut m = Message::response(7, OpCode::Query);
    m.add_query(Query::query(name(q), qtype));
    for a in answers {
        m.add_answer(a);
    }
    m.to_vec().unwrap()
}

fn rec(owner: &str, ttl: u32, data: RData) -> Record {
    Record::from_rdata(name(owner), ttl, data)
}

fn a(s: &str) -> RData {
    RData::A(A(s.parse().unwrap()))
}

#[test]
fn a_and_aaaa_map_to_the_question() {
    let bytes = response(
        "api.example.",
        RecordType::A,
        vec![
            rec("api.example.", 60, a("192.0.2.1")),
            rec("api.example.", 60, RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))),
        ],
    );
    let got = parse_response(&bytes, Framing::Udp).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].addr, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    assert_eq!(&*got[0].name, "api.example");
    assert_eq!(got[0].ttl, Duration::from_secs(60));
    assert_eq!(got[1].addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
}

#[test]
fn cname_chain_belongs_to_the_asked_name_with_the_smallest_ttl() {
    let bytes = response(
        "www.Example.",
        RecordType::A,
        vec![
            rec("www.example.", 300, RData::CNAME(CNAME(name("cdn.example.net.")))),
            rec(
                "cdn.example.net.",
                30,
                RData::CNAME(CNAME(name("edge.cdn.example."))),
            ),
            rec("edge.cdn.example.", 600, a("198.51.100.7")),
            // Not on the chain: ignored.
            rec("other.example.", 600, a("198.51.100.8")),
        ],
    );
    let got = parse_response(&bytes, Framing::Udp).unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(&*got[0].name, "www.Example");
    assert_eq!(got[0].addr, "198.51.100.7".parse::<IpAddr>().unwrap());
    assert_eq!(got[0].ttl, Duration::from_secs(30));
}

#[test]
fn cname_loop_ends() {
    let bytes = response(
        "a.example.",
        RecordType::A,
        vec![
            rec("a.example.", 60, RData::CNAME(CNAME(name("b.example.")))),
            rec("b.example.", 60, RData::CNAME(CNAME(name("a.example.")))),
            rec("b.example.", 60, a("192.0.2.9")),
        ],
    );
    let got = parse_response(&bytes, Framing::Udp).unwrap();
    assert_eq!(got.len(), 1);
}

#[test]
fn https_hints_and_ttl_clamp() {
    let svcb = SVCB::new(
        1,
        Name::root(),
        vec![
            (
                SvcParamKey::Ipv4Hint,
                SvcParamValue::Ipv4Hint(IpHint(vec![A(Ipv4Addr::new(203, 0, 113, 5))])),
            ),
            (
                SvcParamKey::Ipv6Hint,
                SvcParamValue::Ipv6Hint(IpHint(vec![AAAA("2001:db8::5".parse().unwrap())])),
            ),
        ],
    );
    let bytes = response(
        "svc.example.",
        RecordType::HTTPS,
        vec![rec("svc.example.", 999_999, RData::HTTPS(HTTPS(svcb)))],
    );
    let got = parse_response(&bytes, Framing::Udp).unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|a| &*a.name == "svc.example" && a.ttl == MAX_TTL));
    assert_eq!(got[1].addr, "2001:db8::5".parse::<IpAddr>().unwrap());
}

#[test]
fn https_alias_target_is_followed() {
    let svcb = SVCB::new(0, name("pool.example.net."), vec![]);
    let bytes = response(
        "svc.example.",
        RecordType::HTTPS,
        vec![
            rec("svc.example.", 0, RData::HTTPS(HTTPS(svcb))),
            rec("pool.example.net.", 60, a("192.0.2.44")),
        ],
    );
    let got = parse_response(&bytes, Framing::Udp).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(&*got[0].name, "svc.example");
    assert_eq!(got[0].ttl, MIN_TTL);
}

#[test]
fn tcp_framing() {
    let body = response(
        "t.example.",
        RecordType::A,
        vec![rec("t.example.", 60, a("192.0.2.2"))],
    );
    let mut framed = (body.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    assert_eq!(parse_response(&framed, Framing::Tcp).unwrap().len(), 1);
    assert_eq!(
        parse_response(&framed[..framed.len() - 1], Framing::Tcp),
        Err(DnsError::Truncated)
    );
    assert_eq!(parse_response(&[0], Framing::Tcp), Err(DnsError::Truncated));
}

#[test]
fn queries_and_truncated_answers_are_refused() {
    let mut q = Message::new(1, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(name("q.example."), RecordType::A));
    let bytes = q.to_vec().unwrap();
    assert_eq!(parse_response(&bytes, Framing::Udp), Err(DnsError::Query));
    let mut m = Message::response(2, OpCode::Query);
    m.add_query(Query::query(name("q.example."), RecordType::A));
    m.metadata.truncation = true;
    assert_eq!(
        parse_response(&m.to_vec().unwrap(), Framing::Udp),
        Err(DnsError::Truncated)
    );
    assert_eq!(parse_response(&[0x80; 5], Framing::Udp), Err(DnsError::Truncated));
}

/// A response header (id 1, QR=1, RD, RA) with one question and `ancount`
/// answers, followed by `rest`.
fn raw_response(ancount: u16, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 1, 0x81, 0x80, 0, 1];
    v.extend_from_slice(&ancount.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]);
    v.extend_from_slice(rest);
    v
}

#[test]
fn compression_loop_is_malformed() {
    // Question name: a pointer to itself (offset 12).
    let bytes = raw_response(0, &[0xc0, 12, 0, 1, 0, 1]);
    assert!(matches!(
        parse_response(&bytes, Framing::Udp),
        Err(DnsError::Malformed(_))
    ));
    // An answer whose owner points at the answer's own name.
    let mut rest = vec![1, b'x', 0, 0, 1, 0, 1];
    rest.extend_from_slice(&[0xc0, 23, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
    let bytes = raw_response(1, &rest);
    assert!(matches!(
        parse_response(&bytes, Framing::Udp),
        Err(DnsError::Malformed(_))
    ));
}

#[test]
fn long_labels_are_refused() {
    // A label length byte of 255 is not a label (RFC 1035: at most 63).
    let mut rest = vec![255];
    rest.extend_from_slice(&[b'a'; 255]);
    rest.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert!(parse_response(&raw_response(0, &rest), Framing::Udp).is_err());
    // Four 63-byte labels: 256 octets, over the 255 limit of a name.
    let mut rest = Vec::new();
    for _ in 0..4 {
        rest.push(63);
        rest.extend_from_slice(&[b'a'; 63]);
    }
    rest.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert!(parse_response(&raw_response(0, &rest), Framing::Udp).is_err());
}

#[test]
fn escape_bytes_stay_raw_but_bounded() {
    let label: &[u8] = b"\x1b[2J\x07evil";
    let q = Name::from_labels(vec![label, b"example"]).unwrap();
    let mut m = Message::response(3, OpCode::Query);
    m.add_query(Query::query(q.clone(), RecordType::A));
    m.add_answer(Record::from_rdata(q, 60, a("192.0.2.3")));
    let got = parse_response(&m.to_vec().unwrap(), Framing::Udp).unwrap();
    assert_eq!(got[0].name.as_bytes(), b"\x1b[2J\x07evil.example");
    let shown = crate::output::safe::terminal_safe(&got[0].name);
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
}

#[test]
fn answers_are_bounded() {
    let answers = (0..200u32)
        .map(|i| rec("many.example.", 60, RData::A(A(Ipv4Addr::from(0x0a00_0000 + i)))))
        .collect();
    let bytes = response("many.example.", RecordType::A, answers);
    assert_eq!(parse_response(&bytes, Framing::Udp).unwrap().len(), MAX_ANSWERS);
}

#[test]
fn error_responses_have_no_answers() {
    let mut m = Message::error_msg(
        4,
        OpCode::Query,
        hickory_resolver::proto::op::ResponseCode::NXDomain,
    );
    m.add_query(Query::query(name("none.example."), RecordType::A));
    assert_eq!(parse_response(&m.to_vec().unwrap(), Framing::Udp), Ok(vec![]));
}
