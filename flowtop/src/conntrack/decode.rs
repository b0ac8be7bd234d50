//! Turns ctnetlink messages into [`Flow`]s.
//!
//! Framing (netlink header, nfgenmsg) is shared by two attribute decoders:
//!
//! - [`super::wire`], the one [`for_each_message`] uses: walks the attributes
//!   in place, allocates nothing.
//! - the reference decoder (`decode_flow_reference`, reached through
//!   [`for_each_message_reference`]): the attributes that
//!   `netlink-packet-netfilter` types come from that crate, the rest from
//!   [`super::attrs`]. It allocates a `Vec` per nested attribute list and
//!   costs about 6 times the instructions per entry (`examples/decode_cost.rs`),
//!   but it is built on the crate's own parsers and serves as the oracle the
//!   wire decoder is checked against (differential proptests, the
//!   `ctnetlink_diff` fuzz target).
//!
//! The selection is applied as early as possible: the family from the
//! nfgenmsg and the protocol from a non-allocating peek, both before any
//! attribute is decoded.

use std::net::IpAddr;

use netlink_packet_core::{
    DecodeError, Emitable, NetlinkBuffer, NlaBuffer, NlasIterator, Parseable, NLM_F_CREATE,
};
use netlink_packet_netfilter::conntrack::Tuple as NfTuple;
use netlink_packet_netfilter::conntrack::{ConntrackAttribute, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple};

use super::attrs::{
    self, CounterAttr, ExtraAttr, ExtraProtoInfo, IcmpTupleAttr, SctpInfoAttr, TimestampAttr,
};
use super::wire;
use crate::flow::model::{proto, Counters, Family, Flow, Icmp, ProtoState, Tuple};
use crate::flow::Selection;

/// nfnetlink subsystem id of ctnetlink, the high byte of the message type.
pub const NFNL_SUBSYS_CTNETLINK: u16 = 1;
pub const IPCTNL_MSG_CT_NEW: u16 = 0;
pub const IPCTNL_MSG_CT_GET: u16 = 1;
pub const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NFGENMSG_LEN: usize = 4;
const NETLINK_HEADER_LEN: usize = 16;
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// What a conntrack message says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtEventKind {
    /// An entry the kernel just created (`IPCTNL_MSG_CT_NEW` with `NLM_F_CREATE`).
    New,
    /// A change to an entry (`IPCTNL_MSG_CT_NEW` without `NLM_F_CREATE`); also dump entries.
    Update,
    /// The entry is gone; carries its final counters.
    Destroy,
}

/// One decoded netlink message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Flow(CtEventKind, Flow),
    /// A conntrack entry the selection excludes (counted, not decoded).
    Filtered,
    /// End of a dump.
    Done,
    /// An error or acknowledgement from the kernel: 0 is an ack, else -errno.
    Error(i32),
    /// Anything else (noop, other subsystems).
    Ignored,
}

/// Which attribute decoder turns a conntrack entry into a [`Flow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoder {
    /// [`super::wire`]: in place, no allocation.
    Wire,
    /// The crate-based oracle ([`decode_flow_reference`]).
    Reference,
}

/// Decodes every netlink message in one datagram, calling `f` for each.
/// A malformed message is reported through `f` as `Err` and decoding goes on
/// with the next one when the framing allows it.
pub fn for_each_message(datagram: &[u8], sel: &Selection, f: impl FnMut(Result<Message, DecodeError>)) {
    frame(datagram, sel, Decoder::Wire, f);
}

/// [`for_each_message`] through the crate-based reference decoder: the
/// oracle of the differential tests, the `ctnetlink_diff` fuzz target and
/// `examples/decode_cost.rs`. Not for production use (it allocates per
/// nested attribute); public only so that examples can reach it.
pub fn for_each_message_reference(
    datagram: &[u8],
    sel: &Selection,
    f: impl FnMut(Result<Message, DecodeError>),
) {
    frame(datagram, sel, Decoder::Reference, f);
}

fn frame(
    datagram: &[u8],
    sel: &Selection,
    decoder: Decoder,
    mut f: impl FnMut(Result<Message, DecodeError>),
) {
    let mut offset = 0;
    while offset + NETLINK_HEADER_LEN <= datagram.len() {
        let rest = &datagram[offset..];
        let nl = match NetlinkBuffer::new_checked(rest) {
            Ok(nl) => nl,
            Err(e) => {
                // The length field cannot be trusted: nothing after it can be framed.
                f(Err(e));
                return;
            }
        };
        let len = nl.length() as usize;
        f(decode_one(
            nl.message_type(),
            nl.flags(),
            nl.payload(),
            sel,
            decoder,
        ));
        if len == 0 {
            return;
        }
        offset += (len + 3) & !3;
    }
}

fn decode_one(
    msg_type: u16,
    flags: u16,
    payload: &[u8],
    sel: &Selection,
    decoder: Decoder,
) -> Result<Message, DecodeError> {
    match msg_type {
        NLMSG_DONE => return Ok(Message::Done),
        NLMSG_NOOP | NLMSG_OVERRUN => return Ok(Message::Ignored),
        NLMSG_ERROR => {
            let code = payload
                .get(..4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| DecodeError::from("truncated NLMSG_ERROR"))?;
            return Ok(Message::Error(code));
        }
        _ => {}
    }
    if msg_type >> 8 != NFNL_SUBSYS_CTNETLINK {
        return Ok(Message::Ignored);
    }
    let kind = match msg_type & 0xff {
        IPCTNL_MSG_CT_NEW if flags & NLM_F_CREATE != 0 => CtEventKind::New,
        IPCTNL_MSG_CT_NEW => CtEventKind::Update,
        IPCTNL_MSG_CT_DELETE => CtEventKind::Destroy,
        _ => return Ok(Message::Ignored),
    };
    if payload.len() < NFGENMSG_LEN {
        return Err(DecodeError::from(
            "ctnetlink message shorter than its nfgenmsg header",
        ));
    }
    let family = match payload[0] {
        AF_INET => Family::Ipv4,
        AF_INET6 => Family::Ipv6,
        _ => return Ok(Message::Ignored),
    };
    if !sel.family(family) {
        return Ok(Message::Filtered);
    }
    let attrs = &payload[NFGENMSG_LEN..];
    let protocol = match decoder {
        Decoder::Wire => wire::peek_protocol(attrs)?,
        Decoder::Reference => peek_protocol_reference(attrs)?,
    };
    match protocol {
        Some(p) if sel.proto(p) => {}
        Some(_) => return Ok(Message::Filtered),
        None => {
            return Err(DecodeError::from(
                "conntrack entry without CTA_TUPLE_ORIG protocol",
            ))
        }
    }
    let flow = match decoder {
        Decoder::Wire => wire::decode_flow(family, attrs)?,
        Decoder::Reference => decode_flow_reference(family, attrs)?,
    };
    Ok(Message::Flow(kind, flow))
}

// The production attribute decoder, under the names callers know.
pub use super::wire::{decode_flow, peek_protocol};

/// The reference decoder's [`peek_protocol`], on the crate's `NlasIterator`.
pub(crate) fn peek_protocol_reference(attrs: &[u8]) -> Result<Option<u8>, DecodeError> {
    for nla in NlasIterator::new(attrs) {
        let nla = nla?;
        if attrs::kind_of(&nla) != attrs::CTA_TUPLE_ORIG {
            continue;
        }
        for inner in NlasIterator::new(nla.value()) {
            let inner = inner?;
            if attrs::kind_of(&inner) != 2 {
                continue; // not CTA_TUPLE_PROTO
            }
            for p in NlasIterator::new(inner.value()) {
                let p = p?;
                if attrs::kind_of(&p) == 1 {
                    return Ok(p.value().first().copied());
                }
            }
        }
    }
    Ok(None)
}

/// Kinds the crate decodes into typed `ConntrackAttribute`s; the rest go
/// through our [`ExtraAttr`].
fn crate_types(kind: u16) -> bool {
    matches!(
        kind,
        attrs::CTA_TUPLE_ORIG
            | attrs::CTA_TUPLE_REPLY
            | attrs::CTA_STATUS
            | attrs::CTA_PROTOINFO
            | attrs::CTA_TIMEOUT
            | attrs::CTA_MARK
    )
}

/// The reference decoder: the attributes of one conntrack entry decoded
/// into the crate's typed attributes (and ours from [`super::attrs`]),
/// then into a [`Flow`]. The oracle [`super::wire::decode_flow`] must agree
/// with, on every input: same `Flow`, or both an error.
pub(crate) fn decode_flow_reference(family: Family, attrs: &[u8]) -> Result<Flow, DecodeError> {
    let mut orig = None;
    let mut reply = None;
    let mut id = None;
    let mut status = 0;
    let mut mark = 0;
    let mut zone = 0;
    let mut timeout = None;
    let mut state_raw: Option<(u16, u8)> = None; // (protoinfo kind, state)
    let mut counters_orig: Option<(u64, u64)> = None;
    let mut counters_reply: Option<(u64, u64)> = None;
    let mut start_ns = None;
    let mut l4 = 0u8;

    for nla in NlasIterator::new(attrs) {
        let nla = nla?;
        let kind = attrs::kind_of(&nla);
        if crate_types(kind) {
            match ConntrackAttribute::parse(&nla)? {
                ConntrackAttribute::CtaTupleOrig(t) => {
                    let (tuple, p) = tuple_from(&t)?;
                    l4 = p;
                    orig = Some(tuple);
                }
                ConntrackAttribute::CtaTupleReply(t) => reply = Some(tuple_from(&t)?.0),
                ConntrackAttribute::CtaStatus(s) => status = s.bits(),
                ConntrackAttribute::CtaTimeout(t) => timeout = Some(t),
                ConntrackAttribute::CtaMark(m) => mark = m,
                ConntrackAttribute::CtaProtoInfo(infos) => state_raw = state_from(&infos)?,
                _ => {}
            }
        } else {
            match ExtraAttr::parse(&nla)? {
                ExtraAttr::Id(v) => id = Some(v),
                ExtraAttr::Zone(z) => zone = z,
                ExtraAttr::CountersOrig(c) => counters_orig = Some(counters_from(&c)),
                ExtraAttr::CountersReply(c) => counters_reply = Some(counters_from(&c)),
                ExtraAttr::Timestamp(ts) => {
                    start_ns = ts.iter().find_map(|t| match t {
                        TimestampAttr::Start(v) => Some(*v),
                        _ => None,
                    })
                }
                ExtraAttr::Use(_) | ExtraAttr::Other(_) => {}
            }
        }
    }

    let orig = orig.ok_or_else(|| DecodeError::from("conntrack entry without CTA_TUPLE_ORIG"))?;
    let reply = reply.ok_or_else(|| DecodeError::from("conntrack entry without CTA_TUPLE_REPLY"))?;
    let id = id.ok_or_else(|| DecodeError::from("conntrack entry without CTA_ID"))?;
    let state = state_raw.and_then(|(k, s)| match (k, l4) {
        (1, proto::TCP) => Some(ProtoState::Tcp(s)),
        (attrs::CTA_PROTOINFO_SCTP, proto::SCTP) => Some(ProtoState::Sctp(s)),
        (attrs::CTA_PROTOINFO_DCCP, proto::DCCP) => Some(ProtoState::Dccp(s)),
        _ => None,
    });
    let counters = match (counters_orig, counters_reply) {
        (None, None) => None,
        (o, r) => {
            let (orig_packets, orig_bytes) = o.unwrap_or_default();
            let (reply_packets, reply_bytes) = r.unwrap_or_default();
            Some(Counters {
                orig_packets,
                orig_bytes,
                reply_packets,
                reply_bytes,
            })
        }
    };
    // A zero start means the timestamp extension exists but was never set.
    let start_ns = start_ns.filter(|&s| s != 0);
    Ok(Flow {
        id,
        family,
        proto: l4,
        state,
        orig,
        reply,
        status,
        mark,
        zone,
        timeout,
        counters,
        start_ns,
    })
}

fn tuple_from(parts: &[NfTuple]) -> Result<(Tuple, u8), DecodeError> {
    let mut src: Option<IpAddr> = None;
    let mut dst: Option<IpAddr> = None;
    let mut l4: Option<u8> = None;
    let mut sport = None;
    let mut dport = None;
    let mut icmp: Option<Icmp> = None;
    for part in parts {
        match part {
            NfTuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            NfTuple::Proto(ps) => {
                for p in ps {
                    match p {
                        ProtoTuple::Protocol(n) => l4 = Some(u8::from(*n)),
                        ProtoTuple::SourcePort(v) => sport = Some(*v),
                        ProtoTuple::DestinationPort(v) => dport = Some(*v),
                        ProtoTuple::Other(nla) => {
                            // The crate keeps ICMP id/type/code as raw NLAs: re-frame and type them.
                            let mut bytes = vec![0u8; nla.buffer_len()];
                            nla.emit(&mut bytes);
                            let buf = NlaBuffer::new_checked(&bytes[..])?;
                            let i = icmp.get_or_insert_with(Icmp::default);
                            match IcmpTupleAttr::parse(&buf)? {
                                IcmpTupleAttr::Id { id, .. } => i.id = id,
                                IcmpTupleAttr::Type { icmp_type, .. } => i.icmp_type = icmp_type,
                                IcmpTupleAttr::Code { code, .. } => i.code = code,
                                IcmpTupleAttr::Other(_) => {}
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let src = src.ok_or_else(|| DecodeError::from("tuple without source address"))?;
    let dst = dst.ok_or_else(|| DecodeError::from("tuple without destination address"))?;
    let l4 = l4.ok_or_else(|| DecodeError::from("tuple without CTA_PROTO_NUM"))?;
    if !proto::has_ports(l4) {
        sport = None;
        dport = None;
    }
    if !matches!(l4, proto::ICMP | proto::ICMPV6) {
        icmp = None;
    }
    Ok((
        Tuple {
            src,
            dst,
            sport,
            dport,
            icmp,
        },
        l4,
    ))
}

fn state_from(infos: &[ProtoInfo]) -> Result<Option<(u16, u8)>, DecodeError> {
    for info in infos {
        match info {
            ProtoInfo::TCP(tcp) => {
                for t in tcp {
                    if let ProtoInfoTCP::State(s) = t {
                        return Ok(Some((1, *s)));
                    }
                }
            }
            ProtoInfo::Other(nla) => {
                let mut bytes = vec![0u8; nla.buffer_len()];
                nla.emit(&mut bytes);
                let buf = NlaBuffer::new_checked(&bytes[..])?;
                match ExtraProtoInfo::parse(&buf)? {
                    ExtraProtoInfo::Sctp(a) => {
                        if let Some(s) = a.iter().find_map(|x| match x {
                            SctpInfoAttr::State(s) => Some(*s),
                            _ => None,
                        }) {
                            return Ok(Some((attrs::CTA_PROTOINFO_SCTP, s)));
                        }
                    }
                    ExtraProtoInfo::Dccp(a) => {
                        if let Some(s) = a.iter().find_map(|x| match x {
                            attrs::DccpInfoAttr::State(s) => Some(*s),
                            _ => None,
                        }) {
                            return Ok(Some((attrs::CTA_PROTOINFO_DCCP, s)));
                        }
                    }
                    ExtraProtoInfo::Other(_) => {}
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

fn counters_from(attrs: &[CounterAttr]) -> (u64, u64) {
    let mut packets = 0;
    let mut bytes = 0;
    for a in attrs {
        match a {
            CounterAttr::Packets(v) => packets = *v,
            CounterAttr::Bytes(v) => bytes = *v,
            CounterAttr::Packets32(v) => packets = u64::from(*v),
            CounterAttr::Bytes32(v) => bytes = u64::from(*v),
            CounterAttr::Other(_) => {}
        }
    }
    (packets, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::model::STATUS_FLAGS;
    use proptest::prelude::*;

    /// A dump of a test namespace captured from Linux 6.18 (see tests/data/README.md).
    const DUMP: &[u8] = include_bytes!("../../tests/data/dump.bin");
    /// NEW, UPDATE (mark set) and DESTROY of one TCP entry, captured likewise.
    const EVENTS: &[u8] = include_bytes!("../../tests/data/events.bin");

    fn both(bytes: &[u8], sel: &Selection) -> Vec<Result<Message, String>> {
        crate::fuzzing::decoders_agree(bytes, sel)
    }

    fn decode_all(bytes: &[u8], sel: &Selection) -> Vec<Message> {
        // The capture files are datagrams concatenated: messages are self-framed.
        both(bytes, sel)
            .into_iter()
            .map(|m| m.expect("captured bytes decode"))
            .collect()
    }

    fn flows(msgs: &[Message]) -> Vec<&Flow> {
        msgs.iter()
            .filter_map(|m| match m {
                Message::Flow(_, f) => Some(f),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn captured_dump_decodes_every_protocol() {
        let msgs = decode_all(DUMP, &Selection::everything());
        assert_eq!(msgs.last(), Some(&Message::Done));
        let fl = flows(&msgs);
        assert_eq!(fl.len(), 6);
        let by_proto = |p: u8| fl.iter().copied().filter(move |f| f.proto == p);
        let icmp = by_proto(proto::ICMP).next().expect("icmp entry");
        assert_eq!(
            icmp.orig.icmp,
            Some(Icmp {
                icmp_type: 8,
                code: 0,
                id: 77
            })
        );
        assert_eq!(icmp.orig.sport, None);
        let icmp6 = by_proto(proto::ICMPV6).next().expect("icmpv6 entry");
        assert_eq!(icmp6.orig.icmp.map(|i| (i.icmp_type, i.id)), Some((128, 78)));
        assert_eq!(icmp6.family, Family::Ipv6);
        let udplite = by_proto(proto::UDPLITE).next().expect("udplite entry");
        assert_eq!((udplite.orig.sport, udplite.orig.dport), (Some(1), Some(2)));
        // The NATed entry: the reply tuple is not the mirror of the original.
        let nat = by_proto(proto::TCP)
            .find(|f| f.orig.src.to_string() == "10.0.0.1")
            .expect("nat entry");
        assert_eq!(nat.reply.src.to_string(), "10.0.0.99");
        assert_eq!(nat.reply.sport, Some(8080));
        assert_eq!(nat.state.map(|s| s.name()), Some("ESTABLISHED"));
        assert!(nat.status_names().any(|s| s == "ASSURED"));
        // Accounting was on for the public entry: counters present and zero.
        let public = by_proto(proto::TCP)
            .find(|f| f.orig.src.to_string() == "8.8.8.8")
            .expect("public");
        assert_eq!(public.counters, Some(Counters::default()));
        // ...and off for the NATed one: no counters, not zeros.
        assert_eq!(nat.counters, None);
    }

    #[test]
    fn selection_filters_before_decoding() {
        let mut only_tcp4 = Selection::none().with_proto(proto::TCP);
        only_tcp4.ipv4 = true;
        let msgs = decode_all(DUMP, &only_tcp4);
        assert_eq!(flows(&msgs).len(), 2);
        assert_eq!(msgs.iter().filter(|m| **m == Message::Filtered).count(), 4);
    }

    #[test]
    fn captured_events_are_new_update_destroy_of_one_id() {
        let msgs = decode_all(EVENTS, &Selection::everything());
        let kinds: Vec<(CtEventKind, u32, u32)> = msgs
            .iter()
            .filter_map(|m| match m {
                Message::Flow(k, f) => Some((*k, f.id, f.mark)),
                _ => None,
            })
            .collect();
        assert_eq!(kinds.len(), 3, "{kinds:?}");
        assert_eq!(kinds[0].0, CtEventKind::New);
        assert_eq!(kinds[1].0, CtEventKind::Update);
        assert_eq!(kinds[1].2, 7, "the update carries the new mark");
        assert_eq!(kinds[2].0, CtEventKind::Destroy);
        assert!(kinds.iter().all(|k| k.1 == kinds[0].1));
    }

    /// Every captured message re-emits to the same bytes through the typed
    /// layers (the crate's attributes plus ours).
    #[test]
    fn captured_messages_round_trip_byte_for_byte() {
        for capture in [DUMP, EVENTS] {
            let mut offset = 0;
            let mut checked = 0;
            while offset < capture.len() {
                let nl = NetlinkBuffer::new_checked(&capture[offset..]).expect("framing");
                let len = nl.length() as usize;
                if nl.message_type() >> 8 == NFNL_SUBSYS_CTNETLINK {
                    let body = &nl.payload()[NFGENMSG_LEN..];
                    let parsed = attrs::parse_all(body).expect("typed parse");
                    let mut again = vec![0u8; parsed.as_slice().buffer_len()];
                    parsed.as_slice().emit(&mut again);
                    assert_eq!(again, body, "message at offset {offset}");
                    checked += 1;
                }
                offset += (len + 3) & !3;
            }
            assert!(checked >= 3);
        }
    }

    /// DCCP conntrack is not in the test kernel, so its entry is built from
    /// typed attributes and decoded back.
    #[test]
    fn dccp_entry_built_from_typed_attributes_decodes() {
        use netlink_packet_core::{DefaultNla, NLA_F_NESTED};
        use netlink_packet_netfilter::conntrack::{ConntrackAttribute, Protocol};
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let tuple = |s: IpAddr, d: IpAddr, sp: u16, dp: u16| {
            vec![
                NfTuple::Ip(vec![IPTuple::SourceAddress(s), IPTuple::DestinationAddress(d)]),
                NfTuple::Proto(vec![
                    ProtoTuple::Protocol(Protocol::Dccp),
                    ProtoTuple::SourcePort(sp),
                    ProtoTuple::DestinationPort(dp),
                ]),
            ]
        };
        let dccp = ExtraProtoInfo::Dccp(vec![attrs::DccpInfoAttr::State(4), attrs::DccpInfoAttr::Role(0)]);
        let mut inner = vec![0u8; dccp.buffer_len()];
        dccp.emit(&mut inner);
        let attrs_list = vec![
            attrs::CtAttr::Known(ConntrackAttribute::CtaTupleOrig(tuple(a, b, 5000, 6000))),
            attrs::CtAttr::Known(ConntrackAttribute::CtaTupleReply(tuple(b, a, 6000, 5000))),
            attrs::CtAttr::Extra(ExtraAttr::Other(DefaultNla::new(
                attrs::CTA_PROTOINFO | NLA_F_NESTED,
                inner,
            ))),
            attrs::CtAttr::Extra(ExtraAttr::Id(4242)),
        ];
        let mut body = vec![0u8; attrs_list.as_slice().buffer_len()];
        attrs_list.as_slice().emit(&mut body);
        let flow = decode_flow(Family::Ipv4, &body).expect("decodes");
        assert_eq!(decode_flow_reference(Family::Ipv4, &body).expect("decodes"), flow);
        assert_eq!(flow.proto, proto::DCCP);
        assert_eq!(flow.id, 4242);
        assert_eq!(flow.state.map(|s| s.name()), Some("OPEN"));
        assert_eq!((flow.orig.sport, flow.reply.sport), (Some(5000), Some(6000)));
    }

    #[test]
    fn truncated_and_missing_attributes_are_errors() {
        let errors = |msg: &[u8]| -> Vec<bool> {
            both(msg, &Selection::everything())
                .iter()
                .map(Result::is_err)
                .collect()
        };
        // A ctnetlink NEW whose body is only the nfgenmsg: no tuple.
        let mut msg = vec![20, 0, 0, 0, 0, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0];
        assert_eq!(errors(&msg), vec![true]);
        // A length field beyond the datagram.
        msg[0] = 200;
        assert_eq!(errors(&msg), vec![true]);
    }

    #[test]
    fn status_flag_names_follow_the_kernel_bits() {
        assert_eq!(status_of(0b1110), vec!["SEEN_REPLY", "ASSURED", "CONFIRMED"]);
        assert_eq!(STATUS_FLAGS.len(), 16);
    }

    fn status_of(bits: u32) -> Vec<&'static str> {
        crate::flow::model::status_names(bits).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            both(&bytes, &Selection::everything());
        }

        #[test]
        fn mutated_captures_never_panic(flips in proptest::collection::vec((0..DUMP.len(), any::<u8>()), 1..8)) {
            let mut bytes = DUMP.to_vec();
            for (i, b) in flips {
                bytes[i] = b;
            }
            both(&bytes, &Selection::everything());
        }

        #[test]
        fn arbitrary_attribute_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let wire = decode_flow(Family::Ipv4, &bytes).ok();
            prop_assert_eq!(wire, decode_flow_reference(Family::Ipv4, &bytes).ok());
            let _ = attrs::parse_all(&bytes);
            let peek = peek_protocol(&bytes).ok();
            prop_assert_eq!(peek, peek_protocol_reference(&bytes).ok());
        }
    }
}
