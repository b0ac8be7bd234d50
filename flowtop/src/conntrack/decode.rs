//! Turns ctnetlink messages into [`Flow`]s.
//!
//! Framing (netlink header, nfgenmsg) and the attributes that
//! `netlink-packet-netfilter` types come from that crate; the rest comes from
//! [`super::attrs`]. The selection is applied as early as possible: the
//! family from the nfgenmsg and the protocol from a non-allocating peek, both
//! before any attribute is decoded into owned values.

use std::net::IpAddr;

use netlink_packet_core::{
    DecodeError, Emitable, NetlinkBuffer, NlaBuffer, NlasIterator, Parseable,
    NLM_F_CREATE,
};
use netlink_packet_netfilter::conntrack::{ConntrackAttribute, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple};
use netlink_packet_netfilter::conntrack::Tuple as NfTuple;

use super::attrs::{self, CounterAttr, ExtraAttr, ExtraProtoInfo, IcmpTupleAttr, SctpInfoAttr, TimestampAttr};
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

/// Decodes every netlink message in one datagram, calling `f` for each.
/// A malformed message is reported through `f` as `Err` and decoding goes on
/// with the next one when the framing allows it.
pub fn for_each_message(
    datagram: &[u8],
    sel: &Selection,
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
        f(decode_one(nl.message_type(), nl.flags(), nl.payload(), sel));
        if len == 0 {
            return;
        }
        offset += (len + 3) & !3;
    }
}

fn decode_one(msg_type: u16, flags: u16, payload: &[u8], sel: &Selection) -> Result<Message, DecodeError> {
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
        return Err(DecodeError::from("ctnetlink message shorter than its nfgenmsg header"));
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
    match peek_protocol(attrs)? {
        Some(p) if sel.proto(p) => {}
        Some(_) => return Ok(Message::Filtered),
        None => return Err(DecodeError::from("conntrack entry without CTA_TUPLE_ORIG protocol")),
    }
    Ok(Message::Flow(kind, decode_flow(family, attrs)?))
}

/// Finds `CTA_TUPLE_ORIG / CTA_TUPLE_PROTO / CTA_PROTO_NUM` without allocating.
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

/// Decodes the attributes of one conntrack entry.
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
            Some(Counters { orig_packets, orig_bytes, reply_packets, reply_bytes })
        }
    };
    // A zero start means the timestamp extension exists but was never set.
    let start_ns = start_ns.filter(|&s| s != 0);
    Ok(Flow { id, family, proto: l4, state, orig, reply, status, mark, zone, timeout, counters, start_ns })
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
    Ok((Tuple { src, dst, sport, dport, icmp }, l4))
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

/// Builds a ctnetlink dump request (`IPCTNL_MSG_CT_GET` with `NLM_F_DUMP`).
pub fn dump_request(family: u8, seq: u32) -> Vec<u8> {
    let len: u32 = (NETLINK_HEADER_LEN + NFGENMSG_LEN) as u32;
    let mut msg = Vec::with_capacity(len as usize);
    msg.extend_from_slice(&len.to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET).to_ne_bytes());
    let flags = netlink_packet_core::NLM_F_REQUEST | netlink_packet_core::NLM_F_DUMP;
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    msg.extend_from_slice(&[family, 0, 0, 0]); // nfgenmsg: family, NFNETLINK_V0, res_id
    msg
}
