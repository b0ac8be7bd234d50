//! Requests to ctnetlink beyond the plain dump:
//! - `IPCTNL_MSG_CT_GET` of one entry by original tuple and zone, for the
//!   "hot refresh" that re-reads the flows with activity between two full
//!   dumps. Appended back to back into one buffer and sent in one
//!   `sendmsg`; the kernel answers each with the entry or an error, in
//!   order, before `sendmsg` returns.
//! - A dump filtered by layer-4 protocol in the kernel (`CTA_FILTER`, Linux
//!   5.8+), so that entries of unselected protocols are never marshalled.
//!
//! Written by hand: a few fixed attributes.

use std::net::IpAddr;

use netlink_packet_core::NLA_F_NESTED;

use super::attrs::{
    CTA_IP_V4_DST, CTA_IP_V4_SRC, CTA_IP_V6_DST, CTA_IP_V6_SRC, CTA_PROTO_DST_PORT, CTA_PROTO_ICMPV6_CODE,
    CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_ICMP_CODE, CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE,
    CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_TUPLE_IP, CTA_TUPLE_ORIG, CTA_TUPLE_PROTO, CTA_ZONE,
};
use super::decode::{AF_INET, AF_INET6, IPCTNL_MSG_CT_GET, NFNL_SUBSYS_CTNETLINK};
use crate::flow::model::{proto, Family, LookupKey};

/// `CTA_FILTER` (`enum ctattr_type`) and what it holds; only dump requests use it.
const CTA_FILTER: u16 = 25;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
const CTA_FILTER_FLAG_CTA_PROTO_NUM: u32 = 1 << 3;

/// Appends a dump request (`IPCTNL_MSG_CT_GET` with `NLM_F_DUMP`) of
/// `family` (0: both), only of protocol `proto` when given. A kernel
/// without `CTA_FILTER` ignores the filter and sends everything, which the
/// decoder's selection then drops: slower, never wrong.
pub fn append_dump(buf: &mut Vec<u8>, family: u8, proto: Option<u8>, seq: u32) {
    let flags = netlink_packet_core::NLM_F_REQUEST | netlink_packet_core::NLM_F_DUMP;
    let start = begin_get(buf, flags, family, seq);
    if let Some(p) = proto {
        let tuple = begin_nested(buf, CTA_TUPLE_ORIG);
        let proto_attr = begin_nested(buf, CTA_TUPLE_PROTO);
        put(buf, CTA_PROTO_NUM, &[p]);
        end_nested(buf, proto_attr);
        end_nested(buf, tuple);
        let filter = begin_nested(buf, CTA_FILTER);
        put(
            buf,
            CTA_FILTER_ORIG_FLAGS,
            &CTA_FILTER_FLAG_CTA_PROTO_NUM.to_ne_bytes(),
        );
        end_nested(buf, filter);
    }
    end_message(buf, start);
}

/// Appends a GET request for the entry `flow` names (its original tuple and
/// zone) with sequence number `seq`. Returns false, appending nothing, when
/// it cannot be asked for by tuple (a protocol without ports or ICMP fields
/// that conntrack would need, or addresses of the wrong family).
pub fn append_get(buf: &mut Vec<u8>, flow: &LookupKey, seq: u32) -> bool {
    let t = &flow.orig;
    let family = match (flow.family, t.src, t.dst) {
        (Family::Ipv4, IpAddr::V4(_), IpAddr::V4(_)) => AF_INET,
        (Family::Ipv6, IpAddr::V6(_), IpAddr::V6(_)) => AF_INET6,
        _ => return false,
    };
    let start = begin_get(buf, netlink_packet_core::NLM_F_REQUEST, family, seq);
    let tuple = begin_nested(buf, CTA_TUPLE_ORIG);
    let ip = begin_nested(buf, CTA_TUPLE_IP);
    match (t.src, t.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put(buf, CTA_IP_V4_SRC, &s.octets());
            put(buf, CTA_IP_V4_DST, &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            put(buf, CTA_IP_V6_SRC, &s.octets());
            put(buf, CTA_IP_V6_DST, &d.octets());
        }
        _ => unreachable!("families checked above"),
    }
    end_nested(buf, ip);
    let p = begin_nested(buf, CTA_TUPLE_PROTO);
    put(buf, CTA_PROTO_NUM, &[flow.proto]);
    let ok = match (flow.proto, t.sport, t.dport, t.icmp) {
        (_, Some(sport), Some(dport), _) if proto::has_ports(flow.proto) => {
            put(buf, CTA_PROTO_SRC_PORT, &sport.to_be_bytes());
            put(buf, CTA_PROTO_DST_PORT, &dport.to_be_bytes());
            true
        }
        (proto::ICMP, _, _, Some(icmp)) => {
            put(buf, CTA_PROTO_ICMP_ID, &icmp.id.to_be_bytes());
            put(buf, CTA_PROTO_ICMP_TYPE, &[icmp.icmp_type]);
            put(buf, CTA_PROTO_ICMP_CODE, &[icmp.code]);
            true
        }
        (proto::ICMPV6, _, _, Some(icmp)) => {
            put(buf, CTA_PROTO_ICMPV6_ID, &icmp.id.to_be_bytes());
            put(buf, CTA_PROTO_ICMPV6_TYPE, &[icmp.icmp_type]);
            put(buf, CTA_PROTO_ICMPV6_CODE, &[icmp.code]);
            true
        }
        _ => false,
    };
    if !ok {
        buf.truncate(start);
        return false;
    }
    end_nested(buf, p);
    end_nested(buf, tuple);
    if flow.zone != 0 {
        put(buf, CTA_ZONE, &flow.zone.to_be_bytes());
    }
    end_message(buf, start);
    true
}

/// Starts an `IPCTNL_MSG_CT_GET` message: the netlink header (its length
/// written by [`end_message`]) and the nfgenmsg. Returns where it starts.
fn begin_get(buf: &mut Vec<u8>, flags: u16, family: u8, seq: u32) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET).to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    buf.extend_from_slice(&[family, 0, 0, 0]); // nfgenmsg: family, NFNETLINK_V0, res_id
    start
}

/// Writes the length of the message started at `start`.
fn end_message(buf: &mut [u8], start: usize) {
    let len = u32::try_from(buf.len() - start).expect("a request is a few hundred bytes");
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// Appends an attribute, padded to 4 bytes.
fn put(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(4 + value.len()).expect("small attribute");
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Starts a nested attribute; returns where its header is.
fn begin_nested(buf: &mut Vec<u8>, kind: u16) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    at
}

/// Writes the length of the nested attribute started at `at`.
fn end_nested(buf: &mut [u8], at: usize) {
    let len = u16::try_from(buf.len() - at).expect("small nested attribute");
    buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::model::{Flow, Icmp, Tuple};
    use netlink_packet_core::{NlaBuffer, NlasIterator, Parseable};
    use netlink_packet_netfilter::conntrack::ConntrackAttribute;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn flow(family: Family, p: u8, src: IpAddr, dst: IpAddr, icmp: Option<Icmp>) -> Flow {
        let ports = proto::has_ports(p);
        let t = Tuple {
            src,
            dst,
            sport: ports.then_some(40000),
            dport: ports.then_some(53),
            icmp,
        };
        Flow {
            id: 1,
            family,
            proto: p,
            state: None,
            orig: t,
            reply: t,
            status: 0,
            mark: 0,
            zone: 7,
            timeout: None,
            counters: None,
            start_ns: None,
        }
    }

    /// The header is well formed and the body parses, with the crate that
    /// decodes ctnetlink, into the tuple that was asked for.
    #[test]
    fn get_requests_parse_back_into_their_tuple() {
        let v4 = |a| IpAddr::V4(Ipv4Addr::new(192, 0, 2, a));
        let v6 = |a| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, a));
        let icmp = Some(Icmp {
            icmp_type: 8,
            code: 0,
            id: 4242,
        });
        let flows = [
            flow(Family::Ipv4, proto::TCP, v4(1), v4(2), None),
            flow(Family::Ipv6, proto::UDP, v6(1), v6(2), None),
            flow(Family::Ipv4, proto::ICMP, v4(1), v4(2), icmp),
            flow(Family::Ipv6, proto::ICMPV6, v6(1), v6(2), icmp),
            flow(Family::Ipv4, proto::SCTP, v4(3), v4(4), None),
        ];
        for (i, f) in flows.iter().enumerate() {
            let mut buf = Vec::new();
            assert!(append_get(&mut buf, &f.lookup_key(), 100 + i as u32), "{f:?}");
            let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
            assert_eq!(len, buf.len());
            assert_eq!(u16::from_ne_bytes([buf[4], buf[5]]), 0x0101);
            assert_eq!(u32::from_ne_bytes(buf[8..12].try_into().unwrap()), 100 + i as u32);
            let family = buf[16];
            assert_eq!(
                family,
                if f.family == Family::Ipv4 {
                    AF_INET
                } else {
                    AF_INET6
                }
            );
            let mut attrs = Vec::new();
            for nla in NlasIterator::new(&buf[20..]) {
                let nla: NlaBuffer<&[u8]> = nla.expect("framed attribute");
                attrs.push(ConntrackAttribute::parse(&nla).expect("parses"));
            }
            let text = format!("{attrs:?}");
            assert!(text.contains("CtaTupleOrig"), "{text}");
            assert!(text.contains(&format!("{:?}", f.orig.src)), "{text}");
            // CTA_ZONE (18), big-endian 7: the crate has no type for it.
            assert!(text.contains("kind: 18, value: [0, 7]"), "{text}");
        }
    }

    #[test]
    fn dump_requests_with_and_without_a_protocol_filter() {
        let mut plain = Vec::new();
        append_dump(&mut plain, AF_INET, None, 9);
        // Header only: length 20, IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP,
        // seq 9, port 0, nfgenmsg for AF_INET.
        let mut expected = Vec::new();
        expected.extend_from_slice(&20u32.to_ne_bytes());
        expected.extend_from_slice(&0x0101u16.to_ne_bytes());
        expected.extend_from_slice(&0x0301u16.to_ne_bytes());
        expected.extend_from_slice(&9u32.to_ne_bytes());
        expected.extend_from_slice(&0u32.to_ne_bytes());
        expected.extend_from_slice(&[AF_INET, 0, 0, 0]);
        assert_eq!(plain, expected);

        let mut filtered = Vec::new();
        append_dump(&mut filtered, 0, Some(proto::TCP), 9);
        let len = u32::from_ne_bytes(filtered[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, filtered.len());
        let mut attrs = Vec::new();
        for nla in NlasIterator::new(&filtered[20..]) {
            let nla: NlaBuffer<&[u8]> = nla.expect("framed attribute");
            attrs.push(ConntrackAttribute::parse(&nla).expect("parses"));
        }
        let text = format!("{attrs:?}");
        assert!(text.contains("Protocol(Tcp)"), "{text}");
        // CTA_FILTER (25, nested: 0x8019) holding CTA_FILTER_ORIG_FLAGS = CTA_PROTO_NUM (8).
        assert!(text.contains("kind: 32793"), "{text}");
        assert!(filtered.ends_with(&[8, 0, 1, 0, 8, 0, 0, 0]), "{filtered:?}");
    }

    fn flow_key(family: Family, p: u8, src: IpAddr, dst: IpAddr, icmp: Option<Icmp>) -> LookupKey {
        flow(family, p, src, dst, icmp).lookup_key()
    }

    #[test]
    fn dump_request_is_a_ctnetlink_get_dump() {
        use netlink_packet_core::NetlinkBuffer;
        let mut req = Vec::new();
        append_dump(&mut req, AF_INET6, None, 9);
        let nl = NetlinkBuffer::new_checked(&req[..]).expect("framing");
        assert_eq!(
            nl.message_type(),
            (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
        );
        assert_eq!(
            nl.flags() & netlink_packet_core::NLM_F_DUMP,
            netlink_packet_core::NLM_F_DUMP
        );
        assert_eq!(nl.sequence_number(), 9);
        assert_eq!(nl.payload()[0], AF_INET6);
    }

    #[test]
    fn flows_that_cannot_be_asked_for_append_nothing() {
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let mut buf = vec![1, 2, 3];
        // GRE has neither ports nor ICMP fields; mixed families are nonsense.
        assert!(!append_get(
            &mut buf,
            &flow_key(Family::Ipv4, 47, v4, v4, None),
            1
        ));
        assert!(!append_get(
            &mut buf,
            &flow_key(Family::Ipv4, proto::TCP, v4, v6, None),
            1
        ));
        assert!(!append_get(
            &mut buf,
            &flow_key(Family::Ipv4, proto::ICMP, v4, v4, None),
            1
        ));
        assert_eq!(buf, vec![1, 2, 3]);
    }
}
