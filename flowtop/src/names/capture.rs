//! What the eBPF name programs copy out of the kernel, decoded: one
//! [`NameCapture`] per record of the `NAME_EVENTS` ring buffer (see
//! `flowtop_common::NameEvent`). Pure: the reader thread decodes, the
//! engine's name tracker interprets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use flowtop_common::{
    NameEvent, AF_INET, AF_INET6, NAME_CAPTURE_MAX, NAME_EVENT_DATAGRAM, NAME_EVENT_DNS, NAME_EVENT_STREAM,
    NAME_FLAG_SYN, NAME_FLAG_TCP, NAME_FLAG_TRUNCATED,
};

use crate::attribution::index::normalise;

/// What a capture holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaptureKind {
    /// A DNS message from port 53 a local socket received.
    Dns,
    /// The first bytes a connecting TCP socket sent (from `seq` on).
    Stream,
    /// One of the first datagrams of a UDP tuple, QUIC long header.
    Datagram,
}

/// One decoded capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameCapture {
    pub kind: CaptureKind,
    /// The local socket's cookie (joins its owner).
    pub cookie: u64,
    /// The socket's network namespace cookie (0: unknown).
    pub netns_cookie: u64,
    /// IP protocol number (6, 17 or 136).
    pub protocol: u8,
    /// The local socket's end (v4-mapped addresses normalised to IPv4).
    pub local: SocketAddr,
    /// The other end (port 53 for [`CaptureKind::Dns`]).
    pub remote: SocketAddr,
    /// Stream offset ([`CaptureKind::Stream`]) or TCP sequence number (DNS
    /// over TCP); 0 otherwise.
    pub seq: u32,
    /// DNS over TCP.
    pub tcp: bool,
    /// A SYN segment (DNS over TCP: `seq` is the server's initial sequence
    /// number).
    pub syn: bool,
    /// The packet held more than was captured.
    pub truncated: bool,
    /// The captured payload.
    pub bytes: Box<[u8]>,
}

fn addr_of(family: u16, raw: &[u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        AF_INET6 => Some(normalise(IpAddr::V6(Ipv6Addr::from(*raw)))),
        _ => None,
    }
}

/// Decodes one ring buffer record: None when it is too short for its
/// header or its stated length, of an unknown kind or family, or states a
/// length beyond `NAME_CAPTURE_MAX`.
pub fn parse_name_event(record: &[u8]) -> Option<NameCapture> {
    let header_len = std::mem::size_of::<NameEvent>();
    if record.len() < header_len {
        return None;
    }
    // SAFETY: the record holds at least size_of::<NameEvent>() bytes, the
    // read is unaligned, and NameEvent is plain integers (any bit pattern is
    // valid).
    let ev = unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<NameEvent>()) };
    if ev.len > NAME_CAPTURE_MAX {
        return None;
    }
    let bytes = record.get(header_len..header_len + ev.len as usize)?;
    let kind = match ev.kind {
        NAME_EVENT_DNS => CaptureKind::Dns,
        NAME_EVENT_STREAM => CaptureKind::Stream,
        NAME_EVENT_DATAGRAM => CaptureKind::Datagram,
        _ => return None,
    };
    Some(NameCapture {
        kind,
        cookie: ev.cookie,
        netns_cookie: ev.netns_cookie,
        protocol: u8::try_from(ev.protocol).ok()?,
        local: SocketAddr::new(addr_of(ev.family, &ev.local_addr)?, ev.local_port),
        remote: SocketAddr::new(addr_of(ev.family, &ev.remote_addr)?, ev.remote_port),
        seq: ev.seq,
        tcp: ev.flags & NAME_FLAG_TCP != 0,
        syn: ev.flags & NAME_FLAG_SYN != 0,
        truncated: ev.flags & NAME_FLAG_TRUNCATED != 0,
        bytes: bytes.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ev: NameEvent, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; std::mem::size_of::<NameEvent>()];
        // SAFETY: out has exactly the header's size; unaligned write.
        unsafe { std::ptr::write_unaligned(out.as_mut_ptr().cast::<NameEvent>(), ev) };
        out.extend_from_slice(payload);
        out
    }

    fn dns_event(len: u32) -> NameEvent {
        let mut local = [0u8; 16];
        local[..4].copy_from_slice(&[127, 0, 0, 1]);
        let mut remote = [0u8; 16];
        remote[..4].copy_from_slice(&[127, 0, 0, 53]);
        NameEvent {
            kind: NAME_EVENT_DNS,
            len,
            cookie: 9,
            protocol: 17,
            family: AF_INET,
            local_port: 40000,
            remote_port: 53,
            local_addr: local,
            remote_addr: remote,
            ..NameEvent::default()
        }
    }

    #[test]
    fn decodes_a_dns_capture_with_its_payload() {
        let c = parse_name_event(&record(dns_event(3), b"abc")).unwrap();
        assert_eq!(c.kind, CaptureKind::Dns);
        assert_eq!(c.cookie, 9);
        assert_eq!(c.local, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(c.remote, "127.0.0.53:53".parse().unwrap());
        assert_eq!(&*c.bytes, b"abc");
        assert!(!c.tcp && !c.syn && !c.truncated);
    }

    #[test]
    fn refuses_records_shorter_than_they_say_or_too_long() {
        assert_eq!(parse_name_event(&record(dns_event(4), b"abc")), None);
        assert_eq!(parse_name_event(&[0u8; 10]), None);
        let mut big = dns_event(NAME_CAPTURE_MAX + 1);
        big.len = NAME_CAPTURE_MAX + 1;
        assert_eq!(parse_name_event(&record(big, &[0; 4097])), None);
        let mut unknown = dns_event(0);
        unknown.kind = 99;
        assert_eq!(parse_name_event(&record(unknown, b"")), None);
    }

    #[test]
    fn v4_mapped_addresses_of_v6_sockets_become_ipv4() {
        let mut ev = dns_event(0);
        ev.family = AF_INET6;
        ev.local_addr = Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped().octets();
        ev.remote_addr = Ipv6Addr::LOCALHOST.octets();
        ev.flags = NAME_FLAG_TCP | NAME_FLAG_TRUNCATED;
        let c = parse_name_event(&record(ev, b"")).unwrap();
        assert_eq!(c.local.ip(), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(c.remote.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert!(c.tcp && c.truncated);
    }
}
