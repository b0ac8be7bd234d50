//! The reference ctnetlink attribute decoder: the attributes that
//! `netlink-packet-netfilter` types come from that crate, the rest from
//! [`crate::ctnetlink::attrs`]. It allocates a `Vec` per nested attribute
//! list and costs about 6 times the instructions per entry of flowtop's
//! in-place decoder (`examples/decode_cost.rs`), but it is built on the
//! crate's own parsers, so it serves as the oracle flowtop's decoder
//! (`conntrack::wire`) is checked against: the differential proptests
//! (`tests/decoders.rs`) and the `ctnetlink_diff` fuzz target.
//!
//! It plugs into flowtop's own framing ([`Reference`] is a
//! `conntrack::decode::AttrDecoder`), so both decoders see the same entries.

use std::net::IpAddr;

use flowtop::conntrack::decode::{self, AttrDecoder, Message};
use flowtop::flow::model::{proto, Counters, Family, Flow, Icmp, ProtoState, Tuple};
use flowtop::flow::Selection;
use netlink_packet_core::{DecodeError, Emitable, NlaBuffer, NlasIterator, Parseable};
use netlink_packet_netfilter::conntrack::Tuple as NfTuple;
use netlink_packet_netfilter::conntrack::{ConntrackAttribute, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple};

use crate::ctnetlink::attrs::{
    self, CounterAttr, ExtraAttr, ExtraProtoInfo, IcmpTupleAttr, SctpInfoAttr, TimestampAttr,
};

/// The reference decoder as an attribute decoder of flowtop's framing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reference;

impl AttrDecoder for Reference {
    fn peek_protocol(&self, attrs: &[u8]) -> Result<Option<u8>, DecodeError> {
        peek_protocol(attrs)
    }
    fn decode_flow(&self, family: Family, attrs: &[u8]) -> Result<Flow, DecodeError> {
        decode_flow(family, attrs)
    }
}

/// `flowtop::conntrack::decode::for_each_message` through the reference
/// decoder.
pub fn for_each_message(datagram: &[u8], sel: &Selection, f: impl FnMut(Result<Message, DecodeError>)) {
    decode::for_each_message_with(&Reference, datagram, sel, f);
}
/// The reference decoder's protocol peek, on the crate's `NlasIterator`.
pub fn peek_protocol(attrs: &[u8]) -> Result<Option<u8>, DecodeError> {
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
/// into the crate's typed attributes (and ours from [`attrs`]),
/// then into a [`Flow`]. flowtop's `conntrack::wire::decode_flow` must
/// agree with it on every input: same `Flow`, or both an error.
pub fn decode_flow(family: Family, attrs: &[u8]) -> Result<Flow, DecodeError> {
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
    let start_ns = start_ns.and_then(std::num::NonZeroU64::new);
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
        timeout: timeout.map(flowtop::flow::model::Timeout::from_secs),
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

/// Every message of `datagram` through both attribute decoders (the
/// in-place `flowtop::conntrack::wire` one and the crate-based reference);
/// panics unless they agree: both `Ok` with the same value, or both `Err`.
/// Returns the results (errors as text).
pub fn decoders_agree(datagram: &[u8], sel: &Selection) -> Vec<Result<Message, String>> {
    let mut wire = Vec::new();
    decode::for_each_message(datagram, sel, |m| wire.push(m.map_err(|e| e.to_string())));
    let mut reference = Vec::new();
    for_each_message(datagram, sel, |m| reference.push(m.map_err(|e| e.to_string())));
    assert_eq!(
        wire.len(),
        reference.len(),
        "the decoders framed different message counts"
    );
    for (w, r) in wire.iter().zip(&reference) {
        match (w, r) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "the decoders decoded different values"),
            (Err(_), Err(_)) => {}
            _ => panic!("the decoders disagree: wire {w:?}, reference {r:?}"),
        }
    }
    wire
}

/// The same attribute body through both decoders: same value or both errors.
pub fn flow_decoders_agree(family: Family, body: &[u8]) {
    let wire = decode::decode_flow(family, body);
    let reference = decode_flow(family, body);
    match (&wire, &reference) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the decoders decoded different flows"),
        (Err(_), Err(_)) => {}
        _ => panic!("the decoders disagree: wire {wire:?}, reference {reference:?}"),
    }
    let peek = decode::peek_protocol(body).ok();
    assert_eq!(peek, peek_protocol(body).ok(), "the protocol peeks disagree");
}
