//! IPFIX messages (RFC 7011): a header, a template set with one template
//! per address family, and data sets of records.
//!
//! Every record has the same fields (one template per family): fixed-size
//! fields are cheap to decode for every collector, and the strings are
//! variable-length fields (RFC 7011 section 7), one byte long when empty.

use std::net::IpAddr;

use super::Record;
use crate::names::Source;

/// ntop's Private Enterprise Number: the only published convention for
/// process fields in flow records (nProbe, ntopng; pmacct, Wireshark and
/// scapy decode them by number).
pub const NTOP_PEN: u32 = 35632;

/// Template ids (>= 256).
pub const TEMPLATE_V4: u16 = 256;
pub const TEMPLATE_V6: u16 = 257;

/// The variable length of RFC 7011 section 7.
const VARLEN: u16 = 0xffff;

/// One field of a template: IANA element id (or an enterprise id), length.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub id: u16,
    pub len: u16,
    pub pen: Option<u32>,
}

const fn iana(id: u16, len: u16) -> Field {
    Field { id, len, pen: None }
}

const fn ntop(id: u16, len: u16) -> Field {
    Field {
        id,
        len,
        pen: Some(NTOP_PEN),
    }
}

/// ntop's element ids (their NetFlow v9 numbers minus 57472) for the
/// process on each side and the names; the README lists them.
pub mod ntop_ids {
    pub const SRC_PROC_PID: u16 = 168;
    pub const SRC_PROC_NAME: u16 = 169;
    pub const SRC_PROC_UID: u16 = 425;
    pub const SRC_PROC_USER_NAME: u16 = 372;
    pub const SRC_FATHER_PROC_PID: u16 = 373;
    pub const SRC_FATHER_PROC_NAME: u16 = 374;
    pub const DST_PROC_PID: u16 = 375;
    pub const DST_PROC_NAME: u16 = 376;
    pub const DST_PROC_UID: u16 = 426;
    pub const DST_PROC_USER_NAME: u16 = 377;
    pub const DST_FATHER_PROC_PID: u16 = 378;
    pub const DST_FATHER_PROC_NAME: u16 = 379;
    pub const HTTP_HOST: u16 = 187;
    pub const SSL_SERVER_NAME: u16 = 188;
}

/// The fields after the addresses, the same for both families (the ICMP
/// and post-NAT address elements differ: see [`fields`]).
fn fields(v6: bool) -> Vec<Field> {
    use ntop_ids::*;
    let (addr_len, src, dst, icmp, post_src, post_dst) = if v6 {
        (16, 27, 28, 139, 281, 282)
    } else {
        (4, 8, 12, 32, 225, 226)
    };
    vec![
        iana(src, addr_len),
        iana(dst, addr_len),
        iana(7, 2),    // sourceTransportPort
        iana(11, 2),   // destinationTransportPort
        iana(4, 1),    // protocolIdentifier
        iana(icmp, 2), // icmpTypeCodeIPv4 / IPv6
        iana(1, 8),    // octetDeltaCount
        iana(2, 8),    // packetDeltaCount
        iana(152, 8),  // flowStartMilliseconds
        iana(153, 8),  // flowEndMilliseconds
        iana(136, 1),  // flowEndReason
        iana(post_src, addr_len),
        iana(post_dst, addr_len),
        iana(227, 2), // postNAPTSourceTransportPort
        iana(228, 2), // postNAPTDestinationTransportPort
        ntop(SRC_PROC_PID, 4),
        ntop(SRC_PROC_NAME, VARLEN),
        ntop(SRC_PROC_UID, 4),
        ntop(SRC_PROC_USER_NAME, VARLEN),
        ntop(SRC_FATHER_PROC_PID, 4),
        ntop(SRC_FATHER_PROC_NAME, VARLEN),
        ntop(DST_PROC_PID, 4),
        ntop(DST_PROC_NAME, VARLEN),
        ntop(DST_PROC_UID, 4),
        ntop(DST_PROC_USER_NAME, VARLEN),
        ntop(DST_FATHER_PROC_PID, 4),
        ntop(DST_FATHER_PROC_NAME, VARLEN),
        ntop(HTTP_HOST, VARLEN),
        ntop(SSL_SERVER_NAME, VARLEN),
    ]
}

/// The template of a family.
pub fn template(v6: bool) -> (u16, Vec<Field>) {
    (if v6 { TEMPLATE_V6 } else { TEMPLATE_V4 }, fields(v6))
}

/// Appends a template set holding both templates.
pub fn write_template_set(buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&2u16.to_be_bytes()); // set id 2: templates
    buf.extend_from_slice(&0u16.to_be_bytes()); // length, below
    for v6 in [false, true] {
        let (id, fields) = template(v6);
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&(fields.len() as u16).to_be_bytes());
        for f in fields {
            match f.pen {
                Some(pen) => {
                    buf.extend_from_slice(&(0x8000 | f.id).to_be_bytes());
                    buf.extend_from_slice(&f.len.to_be_bytes());
                    buf.extend_from_slice(&pen.to_be_bytes());
                }
                None => {
                    buf.extend_from_slice(&f.id.to_be_bytes());
                    buf.extend_from_slice(&f.len.to_be_bytes());
                }
            }
        }
    }
    let len = (buf.len() - start) as u16;
    buf[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Resolves a uid to a login name for the *_USER_NAME fields.
pub trait UserNames {
    fn user_name(&mut self, uid: u32) -> &str;
}

/// Appends one record's data (no set header), in template order.
pub fn write_record(buf: &mut Vec<u8>, r: &Record, users: &mut impl UserNames) {
    fn ip(buf: &mut Vec<u8>, a: IpAddr) {
        match a {
            IpAddr::V4(a) => buf.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => buf.extend_from_slice(&a.octets()),
        }
    }
    // Post-NAT addresses of the other family cannot happen (conntrack does
    // not translate between families), but an address of the wrong size
    // would shift every field after it: write zeros of the right size.
    fn ip_as(buf: &mut Vec<u8>, a: IpAddr, v6: bool) {
        match (a, v6) {
            (IpAddr::V4(_), false) | (IpAddr::V6(_), true) => ip(buf, a),
            (_, false) => buf.extend_from_slice(&[0; 4]),
            (_, true) => buf.extend_from_slice(&[0; 16]),
        }
    }
    let v6 = r.is_ipv6();
    ip(buf, r.src);
    ip_as(buf, r.dst, v6);
    buf.extend_from_slice(&r.sport.to_be_bytes());
    buf.extend_from_slice(&r.dport.to_be_bytes());
    buf.push(r.proto);
    buf.extend_from_slice(&r.icmp_type_code.to_be_bytes());
    buf.extend_from_slice(&r.octets.to_be_bytes());
    buf.extend_from_slice(&r.packets.to_be_bytes());
    buf.extend_from_slice(&r.start_ms.to_be_bytes());
    buf.extend_from_slice(&r.end_ms.to_be_bytes());
    buf.push(r.end_reason);
    ip_as(buf, r.post_src, v6);
    ip_as(buf, r.post_dst, v6);
    buf.extend_from_slice(&r.post_sport.to_be_bytes());
    buf.extend_from_slice(&r.post_dport.to_be_bytes());
    for p in [&r.src_proc, &r.dst_proc] {
        let p = p.as_deref();
        buf.extend_from_slice(&p.map_or(0, |p| p.pid).to_be_bytes());
        varlen(buf, p.map_or("", |p| p.comm.as_str()));
        buf.extend_from_slice(&p.map_or(0, |p| p.uid).to_be_bytes());
        varlen(buf, p.map_or("", |p| users.user_name(p.uid)));
        buf.extend_from_slice(&p.and_then(|p| p.ppid).unwrap_or(0).to_be_bytes());
        varlen(buf, p.and_then(|p| p.parent_comm.as_deref()).unwrap_or(""));
    }
    let name = r.name.as_deref();
    let by = |wanted: &[Source]| {
        name.filter(|n| wanted.contains(&n.source))
            .map_or("", |n| &*n.name)
    };
    varlen(buf, by(&[Source::Http]));
    varlen(buf, by(&[Source::Sni, Source::Quic]));
}

/// A variable-length string: one length byte below 255, else 255 and two
/// bytes. Cut at 1024 bytes (at a character boundary): a record must fit a
/// datagram.
fn varlen(buf: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(1024);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let s = &s.as_bytes()[..end];
    if s.len() < 255 {
        buf.push(s.len() as u8);
    } else {
        buf.push(255);
        buf.extend_from_slice(&(s.len() as u16).to_be_bytes());
    }
    buf.extend_from_slice(s);
}

/// Builds one message at a time: header, optional templates, data sets
/// (a new set whenever the family changes), up to `max_len` bytes.
pub struct MessageBuilder {
    buf: Vec<u8>,
    max_len: usize,
    /// The open data set: where its header is and its template id.
    open_set: Option<(usize, u16)>,
    records: u32,
    scratch: Vec<u8>,
}

/// The message header's size.
const HEADER: usize = 16;

impl MessageBuilder {
    pub fn new(max_len: usize) -> MessageBuilder {
        let mut b = MessageBuilder {
            buf: Vec::with_capacity(max_len),
            max_len,
            open_set: None,
            records: 0,
            scratch: Vec::with_capacity(512),
        };
        b.clear();
        b
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.buf.resize(HEADER, 0);
        self.open_set = None;
        self.records = 0;
    }

    pub fn records(&self) -> u32 {
        self.records
    }

    /// Whether nothing but the header is in.
    pub fn is_empty(&self) -> bool {
        self.buf.len() == HEADER
    }

    pub fn add_templates(&mut self) {
        self.close_set();
        write_template_set(&mut self.buf);
    }

    /// Adds a record; false (and nothing added) when it does not fit.
    pub fn add(&mut self, r: &Record, users: &mut impl UserNames) -> bool {
        self.scratch.clear();
        write_record(&mut self.scratch, r, users);
        let tid = if r.is_ipv6() { TEMPLATE_V6 } else { TEMPLATE_V4 };
        let same_set = self.open_set.is_some_and(|(_, t)| t == tid);
        let need = self.scratch.len() + if same_set { 0 } else { 4 };
        if self.buf.len() + need > self.max_len {
            return false;
        }
        if !same_set {
            self.close_set();
            self.open_set = Some((self.buf.len(), tid));
            self.buf.extend_from_slice(&tid.to_be_bytes());
            self.buf.extend_from_slice(&0u16.to_be_bytes());
        }
        self.buf.extend_from_slice(&self.scratch);
        self.records += 1;
        true
    }

    fn close_set(&mut self) {
        if let Some((at, _)) = self.open_set.take() {
            let len = (self.buf.len() - at) as u16;
            self.buf[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }

    /// Finishes the header and hands the message to `send`; the builder is
    /// empty again. `seq` is the count of data records sent before this
    /// message in this session (RFC 7011 section 3.1).
    pub fn finish(&mut self, export_secs: u32, seq: u32, domain: u32) -> &[u8] {
        self.close_set();
        let len = self.buf.len() as u16;
        self.buf[0..2].copy_from_slice(&10u16.to_be_bytes());
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
        self.buf[4..8].copy_from_slice(&export_secs.to_be_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_be_bytes());
        self.buf[12..16].copy_from_slice(&domain.to_be_bytes());
        &self.buf
    }

    /// Empties the builder after the finished message was sent.
    pub fn reset(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::model::Owner;
    use std::sync::Arc;

    struct NoUsers;
    impl UserNames for NoUsers {
        fn user_name(&mut self, _uid: u32) -> &str {
            "alice"
        }
    }

    fn record(src: &str, dst: &str) -> Record {
        let (src, dst): (IpAddr, IpAddr) = (src.parse().expect("ip"), dst.parse().expect("ip"));
        Record {
            src,
            dst,
            sport: 40000,
            dport: 443,
            proto: 6,
            icmp_type_code: 0,
            octets: 1234,
            packets: 5,
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_001_000,
            end_reason: 3,
            post_src: src,
            post_dst: dst,
            post_sport: 40000,
            post_dport: 443,
            src_proc: Some(Arc::new(Owner {
                pid: 4242,
                comm: "curl".into(),
                uid: 1000,
                ppid: Some(1),
                parent_comm: Some("bash".into()),
                ..Owner::default()
            })),
            dst_proc: None,
            name: None,
        }
    }

    /// Walks a message by RFC 7011's rules: the header length is the
    /// message's, sets fill it exactly, and each data set holds whole
    /// records of its template (variable-length fields included).
    fn walk(msg: &[u8]) -> (Vec<u16>, Vec<Vec<u8>>) {
        assert_eq!(u16::from_be_bytes([msg[0], msg[1]]), 10);
        assert_eq!(usize::from(u16::from_be_bytes([msg[2], msg[3]])), msg.len());
        let mut at = HEADER;
        let mut templates = Vec::new();
        let mut records = Vec::new();
        while at < msg.len() {
            let id = u16::from_be_bytes([msg[at], msg[at + 1]]);
            let len = usize::from(u16::from_be_bytes([msg[at + 2], msg[at + 3]]));
            let body = &msg[at + 4..at + len];
            if id == 2 {
                let mut p = 0;
                while p < body.len() {
                    let tid = u16::from_be_bytes([body[p], body[p + 1]]);
                    let n = u16::from_be_bytes([body[p + 2], body[p + 3]]);
                    p += 4;
                    for _ in 0..n {
                        let fid = u16::from_be_bytes([body[p], body[p + 1]]);
                        p += if fid & 0x8000 != 0 { 8 } else { 4 };
                    }
                    templates.push(tid);
                }
                assert_eq!(p, body.len());
            } else {
                let (_, fields) = template(id == TEMPLATE_V6);
                let mut p = 0;
                while p < body.len() {
                    let start = p;
                    for f in &fields {
                        if f.len == VARLEN {
                            let l = usize::from(body[p]);
                            p += 1 + if l == 255 {
                                let l = usize::from(u16::from_be_bytes([body[p + 1], body[p + 2]]));
                                2 + l
                            } else {
                                l
                            };
                        } else {
                            p += usize::from(f.len);
                        }
                    }
                    records.push(body[start..p].to_vec());
                }
                assert_eq!(p, body.len(), "a set holds whole records");
            }
            at += len;
        }
        assert_eq!(at, msg.len());
        (templates, records)
    }

    #[test]
    fn message_with_templates_and_both_families() {
        let mut b = MessageBuilder::new(1400);
        b.add_templates();
        assert!(b.add(&record("192.0.2.1", "198.51.100.2"), &mut NoUsers));
        assert!(b.add(&record("2001:db8::1", "2001:db8::2"), &mut NoUsers));
        assert!(b.add(&record("192.0.2.3", "198.51.100.4"), &mut NoUsers));
        let msg = b.finish(1_700_000_000, 7, 1).to_vec();
        assert_eq!(u32::from_be_bytes([msg[8], msg[9], msg[10], msg[11]]), 7);
        let (templates, records) = walk(&msg);
        assert_eq!(templates, vec![TEMPLATE_V4, TEMPLATE_V6]);
        assert_eq!(records.len(), 3);
        let r = &records[0];
        assert_eq!(&r[0..4], &[192, 0, 2, 1]);
        assert_eq!(u64::from_be_bytes(r[15..23].try_into().expect("8")), 1234);
        assert_eq!(u64::from_be_bytes(r[23..31].try_into().expect("8")), 5);
        // The source process: pid then "curl".
        let p = 4 + 4 + 2 + 2 + 1 + 2 + 8 * 4 + 1 + 4 + 4 + 2 + 2;
        assert_eq!(u32::from_be_bytes(r[p..p + 4].try_into().expect("4")), 4242);
        assert_eq!(&r[p + 4..p + 9], b"\x04curl");
    }

    #[test]
    fn full_message_refuses_a_record() {
        let mut b = MessageBuilder::new(400);
        let mut n = 0;
        while b.add(&record("192.0.2.1", "198.51.100.2"), &mut NoUsers) {
            n += 1;
        }
        assert!(n >= 2);
        let msg = b.finish(0, 0, 1).to_vec();
        assert!(msg.len() <= 400);
        assert_eq!(walk(&msg).1.len(), n);
        b.reset();
        assert!(b.is_empty());
    }

    #[test]
    fn long_strings_use_three_byte_lengths() {
        let mut buf = Vec::new();
        varlen(&mut buf, &"x".repeat(300));
        assert_eq!(&buf[..3], &[255, 1, 44]);
        assert_eq!(buf.len(), 303);
        buf.clear();
        varlen(&mut buf, &"é".repeat(600));
        assert_eq!(buf.len(), 3 + 1024);
    }
}
