//! The production ctnetlink attribute decoder: walks the netlink attributes
//! of a conntrack entry directly on the received bytes.
//!
//! Nothing is allocated on the way (the returned [`Flow`] owns no heap
//! memory) and no attribute is decoded that the [`Flow`] does not need,
//! beyond the length checks that keep the result identical to the
//! crate-based reference decoder `decode::decode_flow_reference`:
//! every attribute the reference types is length-checked here too, so both
//! accept and reject the same messages (checked by a differential proptest
//! and the `ctnetlink_diff` fuzz target).
//!
//! Framing follows netlink-packet-core's `NlasIterator`: an attribute is a
//! native-endian `u16` length (header included, padding not) and a `u16`
//! type whose top bits are the `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER` flags;
//! the next attribute starts at the length rounded up to 4. A malformed
//! header ends the walk with an error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{DecodeError, NLA_F_NESTED, NLA_F_NET_BYTEORDER};

use super::attrs::{
    self, CTA_COUNTERS32_BYTES, CTA_COUNTERS32_PACKETS, CTA_COUNTERS_BYTES, CTA_COUNTERS_PACKETS,
    CTA_IP_V4_DST, CTA_IP_V4_SRC, CTA_IP_V6_DST, CTA_IP_V6_SRC, CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ,
    CTA_PROTOINFO_DCCP_ROLE, CTA_PROTOINFO_SCTP_VTAG_ORIGINAL, CTA_PROTOINFO_SCTP_VTAG_REPLY,
    CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, CTA_PROTOINFO_TCP_FLAGS_REPLY,
    CTA_PROTOINFO_TCP_STATE, CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, CTA_PROTOINFO_TCP_WSCALE_REPLY,
    CTA_PROTO_DST_PORT, CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_TIMESTAMP_START, CTA_TIMESTAMP_STOP,
    CTA_TUPLE_IP, CTA_TUPLE_PROTO,
};
use crate::flow::model::{proto, Counters, Family, Flow, Icmp, ProtoState, Tuple};

const NLA_HEADER_LEN: usize = 4;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

/// The first member of `CTA_PROTOINFO_SCTP` and `CTA_PROTOINFO_DCCP` alike.
const CTA_PROTOINFO_STATE: u16 = attrs::CTA_PROTOINFO_SCTP_STATE;

/// One attribute: its type without the flag bits, and its value (padding excluded).
#[derive(Debug, Clone, Copy)]
pub struct Attr<'a> {
    pub kind: u16,
    pub value: &'a [u8],
}

/// The attributes laid end to end in a buffer (a message body or the value
/// of a nested attribute). Yields an error for a malformed header, then stops.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Attrs { rest: buf }
    }

    /// The error for a header that does not frame an attribute, which ends
    /// the walk. Out of line, so that the walk itself stays small enough to inline.
    #[cold]
    #[inline(never)]
    fn bad_header(&mut self) -> DecodeError {
        match std::mem::take(&mut self.rest) {
            rest @ [l0, l1, _, _, ..] => DecodeError::from(format!(
                "invalid attribute length {} with {} bytes left",
                u16::from_ne_bytes([*l0, *l1]),
                rest.len()
            )),
            rest => malformed("attribute header", rest.len(), NLA_HEADER_LEN),
        }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        if rest.is_empty() {
            return None;
        }
        let Some(&[l0, l1, t0, t1]) = rest.first_chunk::<NLA_HEADER_LEN>() else {
            return Some(Err(self.bad_header()));
        };
        let len = usize::from(u16::from_ne_bytes([l0, l1]));
        let Some(value) = rest.get(NLA_HEADER_LEN..len) else {
            // Shorter than its header, or longer than what is left.
            return Some(Err(self.bad_header()));
        };
        // Past the end when the last attribute's padding is missing: the walk ends.
        self.rest = rest.get((len + 3) & !3..).unwrap_or_default();
        let kind = u16::from_ne_bytes([t0, t1]) & NLA_TYPE_MASK;
        Some(Ok(Attr { kind, value }))
    }
}

#[cold]
#[inline(never)]
fn malformed(what: &str, len: usize, expected: usize) -> DecodeError {
    DecodeError::from(format!("invalid {what}: {len} bytes, expected {expected}"))
}

/// The value as an `N`-byte array; any other length is an error (as the
/// crate's `parse_*` helpers require).
fn exact<const N: usize>(a: Attr<'_>, what: &'static str) -> Result<[u8; N], DecodeError> {
    a.value.try_into().map_err(|_| malformed(what, a.value.len(), N))
}

fn be_u8(a: Attr<'_>, what: &'static str) -> Result<u8, DecodeError> {
    Ok(exact::<1>(a, what)?[0])
}

fn be_u16(a: Attr<'_>, what: &'static str) -> Result<u16, DecodeError> {
    exact(a, what).map(u16::from_be_bytes)
}

fn be_u32(a: Attr<'_>, what: &'static str) -> Result<u32, DecodeError> {
    exact(a, what).map(u32::from_be_bytes)
}

fn be_u64(a: Attr<'_>, what: &'static str) -> Result<u64, DecodeError> {
    exact(a, what).map(u64::from_be_bytes)
}

/// An address member of `CTA_TUPLE_IP`: 4 or 16 bytes, whatever its kind says.
fn ip_addr(a: Attr<'_>) -> Result<IpAddr, DecodeError> {
    if let Ok(v4) = <[u8; 4]>::try_from(a.value) {
        Ok(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(a.value) {
        Ok(IpAddr::V6(Ipv6Addr::from(v6)))
    } else {
        Err(malformed("CTA_TUPLE_IP address", a.value.len(), 4))
    }
}

/// Finds `CTA_TUPLE_ORIG / CTA_TUPLE_PROTO / CTA_PROTO_NUM`: the first byte
/// of the first one found, `None` when there is none (or it is empty).
/// Only the attributes walked before it must be well framed.
pub fn peek_protocol(attrs: &[u8]) -> Result<Option<u8>, DecodeError> {
    for nla in Attrs::new(attrs) {
        let nla = nla?;
        if nla.kind != attrs::CTA_TUPLE_ORIG {
            continue;
        }
        for inner in Attrs::new(nla.value) {
            let inner = inner?;
            if inner.kind != CTA_TUPLE_PROTO {
                continue;
            }
            for p in Attrs::new(inner.value) {
                let p = p?;
                if p.kind == CTA_PROTO_NUM {
                    return Ok(p.value.first().copied());
                }
            }
        }
    }
    Ok(None)
}

/// What the walk over one entry's attributes collected; the last occurrence
/// of an attribute wins, as in the reference decoder.
#[derive(Default)]
struct Parts {
    orig: Option<Tuple>,
    reply: Option<Tuple>,
    l4: u8,
    id: Option<u32>,
    status: u32,
    mark: u32,
    zone: u16,
    timeout: Option<u32>,
    /// (`CTA_PROTOINFO` member kind, state).
    state: Option<(u16, u8)>,
    counters_orig: Option<(u64, u64)>,
    counters_reply: Option<(u64, u64)>,
    start_ns: Option<u64>,
}

/// Decodes the attributes of one conntrack entry (the bytes after the nfgenmsg).
pub fn decode_flow(family: Family, body: &[u8]) -> Result<Flow, DecodeError> {
    let mut p = Parts::default();
    for a in Attrs::new(body) {
        top_level(&mut p, a?)?;
    }
    finish(family, p)
}

fn top_level(p: &mut Parts, a: Attr<'_>) -> Result<(), DecodeError> {
    match a.kind {
        attrs::CTA_TUPLE_ORIG => {
            let (t, l4) = tuple(a.value)?;
            p.orig = Some(t);
            p.l4 = l4;
        }
        attrs::CTA_TUPLE_REPLY => p.reply = Some(tuple(a.value)?.0),
        attrs::CTA_STATUS => p.status = be_u32(a, "CTA_STATUS")?,
        attrs::CTA_PROTOINFO => p.state = protoinfo(a.value)?,
        attrs::CTA_TIMEOUT => p.timeout = Some(be_u32(a, "CTA_TIMEOUT")?),
        attrs::CTA_MARK => p.mark = be_u32(a, "CTA_MARK")?,
        attrs::CTA_COUNTERS_ORIG => p.counters_orig = Some(counters(a.value)?),
        attrs::CTA_COUNTERS_REPLY => p.counters_reply = Some(counters(a.value)?),
        attrs::CTA_USE => {
            // Unused, but a malformed one makes the reference decoder fail.
            be_u32(a, "CTA_USE")?;
        }
        attrs::CTA_ID => p.id = Some(be_u32(a, "CTA_ID")?),
        attrs::CTA_ZONE => p.zone = be_u16(a, "CTA_ZONE")?,
        attrs::CTA_TIMESTAMP => p.start_ns = timestamp_start(a.value)?,
        _ => {}
    }
    Ok(())
}

/// Turns what was collected into a [`Flow`], or says what is missing.
fn finish(family: Family, p: Parts) -> Result<Flow, DecodeError> {
    let orig = p
        .orig
        .ok_or_else(|| DecodeError::from("conntrack entry without CTA_TUPLE_ORIG"))?;
    let reply = p
        .reply
        .ok_or_else(|| DecodeError::from("conntrack entry without CTA_TUPLE_REPLY"))?;
    let id =
        p.id.ok_or_else(|| DecodeError::from("conntrack entry without CTA_ID"))?;
    // A state counts only when it is the original tuple's protocol's.
    let state = p.state.and_then(|(kind, s)| match (kind, p.l4) {
        (CTA_PROTOINFO_TCP, proto::TCP) => Some(ProtoState::Tcp(s)),
        (attrs::CTA_PROTOINFO_SCTP, proto::SCTP) => Some(ProtoState::Sctp(s)),
        (attrs::CTA_PROTOINFO_DCCP, proto::DCCP) => Some(ProtoState::Dccp(s)),
        _ => None,
    });
    let counters = match (p.counters_orig, p.counters_reply) {
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
    Ok(Flow {
        id,
        family,
        proto: p.l4,
        state,
        orig,
        reply,
        status: p.status,
        mark: p.mark,
        zone: p.zone,
        timeout: p.timeout,
        counters,
        // A zero start means the timestamp extension exists but was never set.
        start_ns: p.start_ns.filter(|&s| s != 0),
    })
}

/// `CTA_TUPLE_ORIG` / `CTA_TUPLE_REPLY`: the tuple and its protocol number.
fn tuple(value: &[u8]) -> Result<(Tuple, u8), DecodeError> {
    let mut src = None;
    let mut dst = None;
    let mut l4 = None;
    let mut sport = None;
    let mut dport = None;
    let mut icmp: Option<Icmp> = None;
    for part in Attrs::new(value) {
        let part = part?;
        match part.kind {
            CTA_TUPLE_IP => {
                for a in Attrs::new(part.value) {
                    let a = a?;
                    match a.kind {
                        CTA_IP_V4_SRC | CTA_IP_V6_SRC => src = Some(ip_addr(a)?),
                        CTA_IP_V4_DST | CTA_IP_V6_DST => dst = Some(ip_addr(a)?),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for a in Attrs::new(part.value) {
                    let a = a?;
                    match a.kind {
                        CTA_PROTO_NUM => l4 = Some(be_u8(a, "CTA_PROTO_NUM")?),
                        CTA_PROTO_SRC_PORT => sport = Some(be_u16(a, "CTA_PROTO_SRC_PORT")?),
                        CTA_PROTO_DST_PORT => dport = Some(be_u16(a, "CTA_PROTO_DST_PORT")?),
                        // The reference starts an ICMP part at any other member, known or not.
                        _ => icmp_member(icmp.get_or_insert_with(Icmp::default), a)?,
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
    let t = Tuple {
        src,
        dst,
        sport,
        dport,
        icmp,
    };
    Ok((t, l4))
}

/// An ICMP / ICMPv6 id, type or code member of `CTA_TUPLE_PROTO`
/// (checked whatever the protocol, as the reference does).
fn icmp_member(i: &mut Icmp, a: Attr<'_>) -> Result<(), DecodeError> {
    match a.kind {
        attrs::CTA_PROTO_ICMP_ID | attrs::CTA_PROTO_ICMPV6_ID => i.id = be_u16(a, "CTA_PROTO_ICMP_ID")?,
        attrs::CTA_PROTO_ICMP_TYPE | attrs::CTA_PROTO_ICMPV6_TYPE => {
            i.icmp_type = be_u8(a, "CTA_PROTO_ICMP_TYPE")?
        }
        attrs::CTA_PROTO_ICMP_CODE | attrs::CTA_PROTO_ICMPV6_CODE => {
            i.code = be_u8(a, "CTA_PROTO_ICMP_CODE")?
        }
        _ => {}
    }
    Ok(())
}

/// `CTA_PROTOINFO`: the (member kind, state) of the first member that has a
/// state. Matching the reference: TCP members are always checked in full
/// (the crate parses them up front), SCTP / DCCP members only until a state
/// was found (they are parsed lazily, one by one).
fn protoinfo(value: &[u8]) -> Result<Option<(u16, u8)>, DecodeError> {
    let mut found = None;
    for info in Attrs::new(value) {
        let info = info?;
        let state = match info.kind {
            CTA_PROTOINFO_TCP => tcp_state(info.value)?,
            attrs::CTA_PROTOINFO_SCTP if found.is_none() => sctp_state(info.value)?,
            attrs::CTA_PROTOINFO_DCCP if found.is_none() => dccp_state(info.value)?,
            _ => None,
        };
        if found.is_none() {
            found = state.map(|s| (info.kind, s));
        }
    }
    Ok(found)
}

fn tcp_state(value: &[u8]) -> Result<Option<u8>, DecodeError> {
    let mut state = None;
    for a in Attrs::new(value) {
        let a = a?;
        match a.kind {
            CTA_PROTOINFO_TCP_STATE => {
                let s = be_u8(a, "CTA_PROTOINFO_TCP_STATE")?;
                state = state.or(Some(s));
            }
            CTA_PROTOINFO_TCP_WSCALE_ORIGINAL | CTA_PROTOINFO_TCP_WSCALE_REPLY => {
                be_u8(a, "CTA_PROTOINFO_TCP_WSCALE")?;
            }
            // struct nf_ct_tcp_flags: flags and mask; the crate reads a prefix.
            CTA_PROTOINFO_TCP_FLAGS_ORIGINAL | CTA_PROTOINFO_TCP_FLAGS_REPLY if a.value.len() < 2 => {
                return Err(malformed("CTA_PROTOINFO_TCP_FLAGS", a.value.len(), 2));
            }
            _ => {}
        }
    }
    Ok(state)
}

fn sctp_state(value: &[u8]) -> Result<Option<u8>, DecodeError> {
    let mut state = None;
    for a in Attrs::new(value) {
        let a = a?;
        match a.kind {
            CTA_PROTOINFO_STATE => {
                let s = be_u8(a, "CTA_PROTOINFO_SCTP_STATE")?;
                state = state.or(Some(s));
            }
            CTA_PROTOINFO_SCTP_VTAG_ORIGINAL | CTA_PROTOINFO_SCTP_VTAG_REPLY => {
                be_u32(a, "CTA_PROTOINFO_SCTP_VTAG")?;
            }
            _ => {}
        }
    }
    Ok(state)
}

fn dccp_state(value: &[u8]) -> Result<Option<u8>, DecodeError> {
    let mut state = None;
    for a in Attrs::new(value) {
        let a = a?;
        match a.kind {
            CTA_PROTOINFO_STATE => {
                let s = be_u8(a, "CTA_PROTOINFO_DCCP_STATE")?;
                state = state.or(Some(s));
            }
            CTA_PROTOINFO_DCCP_ROLE => {
                be_u8(a, "CTA_PROTOINFO_DCCP_ROLE")?;
            }
            CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ => {
                be_u64(a, "CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ")?;
            }
            _ => {}
        }
    }
    Ok(state)
}

/// `CTA_COUNTERS_ORIG` / `CTA_COUNTERS_REPLY`: (packets, bytes), 64 or 32-bit.
fn counters(value: &[u8]) -> Result<(u64, u64), DecodeError> {
    let (mut packets, mut bytes) = (0, 0);
    for a in Attrs::new(value) {
        let a = a?;
        match a.kind {
            CTA_COUNTERS_PACKETS => packets = be_u64(a, "CTA_COUNTERS_PACKETS")?,
            CTA_COUNTERS_BYTES => bytes = be_u64(a, "CTA_COUNTERS_BYTES")?,
            CTA_COUNTERS32_PACKETS => packets = u64::from(be_u32(a, "CTA_COUNTERS32_PACKETS")?),
            CTA_COUNTERS32_BYTES => bytes = u64::from(be_u32(a, "CTA_COUNTERS32_BYTES")?),
            _ => {}
        }
    }
    Ok((packets, bytes))
}

/// `CTA_TIMESTAMP`: the first start time, if any.
fn timestamp_start(value: &[u8]) -> Result<Option<u64>, DecodeError> {
    let mut start = None;
    for a in Attrs::new(value) {
        let a = a?;
        match a.kind {
            CTA_TIMESTAMP_START => {
                let s = be_u64(a, "CTA_TIMESTAMP_START")?;
                start = start.or(Some(s));
            }
            CTA_TIMESTAMP_STOP => {
                be_u64(a, "CTA_TIMESTAMP_STOP")?;
            }
            _ => {}
        }
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use proptest::prelude::*;

    use super::*;
    use crate::conntrack::build::{self, Extras};
    use crate::conntrack::decode::{self, CtEventKind, Message};
    use crate::flow::Selection;
    use crate::fuzzing::decoders_agree;

    const PROTOS: &[u8] = &[
        proto::TCP,
        proto::UDP,
        proto::UDPLITE,
        proto::SCTP,
        proto::DCCP,
        proto::ICMP,
        proto::ICMPV6,
        47, // GRE: no ports, no ICMP part
    ];

    fn addr(v6: bool) -> BoxedStrategy<IpAddr> {
        if v6 {
            any::<[u8; 16]>().prop_map(|b| IpAddr::V6(b.into())).boxed()
        } else {
            any::<[u8; 4]>().prop_map(|b| IpAddr::V4(b.into())).boxed()
        }
    }

    fn icmp() -> impl Strategy<Value = Option<Icmp>> {
        proptest::option::of(any::<(u8, u8, u16)>().prop_map(|(icmp_type, code, id)| Icmp {
            icmp_type,
            code,
            id,
        }))
    }

    fn tuple(v6: bool) -> impl Strategy<Value = Tuple> {
        (
            addr(v6),
            addr(v6),
            any::<Option<u16>>(),
            any::<Option<u16>>(),
            icmp(),
        )
            .prop_map(|(src, dst, sport, dport, icmp)| Tuple {
                src,
                dst,
                sport,
                dport,
                icmp,
            })
    }

    fn state() -> impl Strategy<Value = Option<ProtoState>> {
        proptest::option::of(prop_oneof![
            (0..12u8).prop_map(ProtoState::Tcp),
            (0..12u8).prop_map(ProtoState::Sctp),
            (0..12u8).prop_map(ProtoState::Dccp),
        ])
    }

    fn counters() -> impl Strategy<Value = Option<Counters>> {
        proptest::option::of(any::<[u64; 4]>().prop_map(|c| Counters {
            orig_packets: c[0],
            orig_bytes: c[1],
            reply_packets: c[2],
            reply_bytes: c[3],
        }))
    }

    /// Any flow, consistent or not: a TCP state on a UDP flow, ports on ICMP,
    /// a NATed reply (the reply tuple is drawn independently of the original),
    /// a zero start time. [`expected`] says what a decoder makes of it.
    fn any_flow() -> impl Strategy<Value = Flow> {
        (
            any::<bool>(),
            prop_oneof![proptest::sample::select(PROTOS), any::<u8>()],
        )
            .prop_flat_map(|(v6, l4)| {
                let ids = (
                    any::<u32>(),
                    any::<u32>(),
                    any::<u32>(),
                    prop_oneof![Just(0u16), any::<u16>()],
                );
                let times = (any::<Option<u32>>(), any::<Option<u64>>());
                (
                    Just((v6, l4)),
                    tuple(v6),
                    tuple(v6),
                    state(),
                    counters(),
                    ids,
                    times,
                )
            })
            .prop_map(|((v6, l4), orig, reply, state, counters, ids, times)| {
                let (id, status, mark, zone) = ids;
                Flow {
                    id,
                    family: if v6 { Family::Ipv6 } else { Family::Ipv4 },
                    proto: l4,
                    state,
                    orig,
                    reply,
                    status,
                    mark,
                    zone,
                    timeout: times.0,
                    counters,
                    start_ns: times.1,
                }
            })
    }

    fn extras() -> impl Strategy<Value = Extras> {
        (
            any::<bool>(),
            any::<Option<u32>>(),
            any::<Option<u64>>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(counters32, use_count, stop_ns, tcp_details, unknown)| Extras {
                counters32,
                use_count,
                stop_ns,
                tcp_details,
                unknown,
            })
    }

    fn kind() -> impl Strategy<Value = CtEventKind> {
        proptest::sample::select(&[CtEventKind::New, CtEventKind::Update, CtEventKind::Destroy][..])
    }

    fn selection() -> impl Strategy<Value = Selection> {
        (
            any::<bool>(),
            any::<bool>(),
            proptest::sample::subsequence(PROTOS, 0..=PROTOS.len()),
        )
            .prop_map(|(ipv4, ipv6, protos)| {
                let mut s = protos.into_iter().fold(Selection::none(), Selection::with_proto);
                s.ipv4 = ipv4;
                s.ipv6 = ipv6;
                s
            })
    }

    /// What decoding the message built from `flow` must give: what a
    /// ctnetlink message can say of it.
    fn expected(flow: &Flow, x: &Extras) -> Flow {
        let mut f = flow.clone();
        for t in [&mut f.orig, &mut f.reply] {
            if !proto::has_ports(f.proto) {
                t.sport = None;
                t.dport = None;
            }
            if !matches!(f.proto, proto::ICMP | proto::ICMPV6) {
                t.icmp = None;
            }
        }
        f.state = f.state.filter(|s| {
            matches!(
                (s, f.proto),
                (ProtoState::Tcp(_), proto::TCP)
                    | (ProtoState::Sctp(_), proto::SCTP)
                    | (ProtoState::Dccp(_), proto::DCCP)
            )
        });
        if x.counters32 {
            f.counters = f.counters.map(|c| Counters {
                orig_packets: u64::from(c.orig_packets as u32),
                orig_bytes: u64::from(c.orig_bytes as u32),
                reply_packets: u64::from(c.reply_packets as u32),
                reply_bytes: u64::from(c.reply_bytes as u32),
            });
        }
        f.start_ns = f.start_ns.filter(|&s| s != 0);
        f
    }

    /// A datagram as a dump sends it: entries, then NLMSG_DONE.
    fn datagram(entries: &[(CtEventKind, Flow, Extras)]) -> Vec<u8> {
        let mut d: Vec<u8> = entries
            .iter()
            .flat_map(|(k, f, x)| build::flow_message(*k, f, x))
            .collect();
        d.extend(build::done_message());
        d
    }

    fn entries() -> impl Strategy<Value = Vec<(CtEventKind, Flow, Extras)>> {
        proptest::collection::vec((kind(), any_flow(), extras()), 1..4)
    }

    /// Byte edits of a valid datagram: overwrite, drop a range, insert bytes.
    #[derive(Debug, Clone)]
    enum Edit {
        Set(usize, u8),
        Cut(usize, usize),
        Insert(usize, Vec<u8>),
    }

    fn edits() -> impl Strategy<Value = Vec<Edit>> {
        let edit = prop_oneof![
            4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
            1 => (any::<usize>(), 1..16usize).prop_map(|(i, n)| Edit::Cut(i, n)),
            1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..12)).prop_map(|(i, b)| Edit::Insert(i, b)),
        ];
        proptest::collection::vec(edit, 1..6)
    }

    fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
        for e in edits {
            let len = bytes.len().max(1);
            match e {
                Edit::Set(i, b) => {
                    if let Some(x) = bytes.get_mut(i % len) {
                        *x = *b;
                    }
                }
                Edit::Cut(i, n) => {
                    let start = (i % len).min(bytes.len());
                    let end = (start + n).min(bytes.len());
                    bytes.drain(start..end);
                }
                Edit::Insert(i, b) => {
                    let at = (i % len).min(bytes.len());
                    bytes.splice(at..at, b.iter().copied());
                }
            }
        }
    }

    /// A random attribute tree: kinds that mean something at some level of
    /// a conntrack entry, values of the lengths the decoders check (and others).
    #[derive(Debug, Clone)]
    enum Node {
        Leaf(u16, Vec<u8>),
        Nest(u16, Vec<Node>),
    }

    fn node() -> impl Strategy<Value = Node> {
        let kind = prop_oneof![3 => 0..10u16, 1 => 0..24u16];
        let len = prop_oneof![
            proptest::sample::select(&[0usize, 1, 2, 4, 8, 16][..]),
            0..20usize
        ];
        let leaf = (kind.clone(), len).prop_flat_map(|(k, n)| {
            proptest::collection::vec(any::<u8>(), n).prop_map(move |v| Node::Leaf(k, v))
        });
        leaf.prop_recursive(4, 32, 4, move |inner| {
            (kind.clone(), proptest::collection::vec(inner, 0..4)).prop_map(|(k, c)| Node::Nest(k, c))
        })
    }

    fn emit_node(node: &Node, out: &mut Vec<u8>) {
        let (kind, value) = match node {
            Node::Leaf(k, v) => (*k, v.clone()),
            Node::Nest(k, children) => {
                let mut v = Vec::new();
                children.iter().for_each(|c| emit_node(c, &mut v));
                (*k | NLA_F_NESTED, v)
            }
        };
        out.extend_from_slice(&((value.len() + NLA_HEADER_LEN) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&value);
        out.resize((out.len() + 3) & !3, 0);
    }

    /// Valid attributes as a tree (through the crate's iterator, so that the
    /// tests do not depend on [`Attrs`]); nested when `NLA_F_NESTED` says so.
    fn parse_tree(bytes: &[u8]) -> Vec<Node> {
        netlink_packet_core::NlasIterator::new(bytes)
            .map(|a| {
                let a = a.expect("built attributes are well framed");
                if a.nested_flag() {
                    Node::Nest(a.kind(), parse_tree(a.value()))
                } else {
                    let flags = if a.network_byte_order_flag() {
                        NLA_F_NET_BYTEORDER
                    } else {
                        0
                    };
                    Node::Leaf(a.kind() | flags, a.value().to_vec())
                }
            })
            .collect()
    }

    /// `b`'s attributes after `a`'s, nested lists of the same kind merged
    /// into one: duplicates at every depth (two ports, two TCP states, two
    /// packet counters, two start times in one list).
    fn merge(a: Vec<Node>, b: Vec<Node>) -> Vec<Node> {
        let mut out = a;
        for y in b {
            let same = out
                .iter_mut()
                .find(|x| matches!((&**x, &y), (Node::Nest(k, _), Node::Nest(l, _)) if k == l));
            match (same, y) {
                (Some(Node::Nest(_, xs)), Node::Nest(_, ys)) => *xs = merge(std::mem::take(xs), ys),
                (_, y) => out.push(y),
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// Two valid entries merged into one body: every attribute twice, at
        /// every depth. Which occurrence wins differs per attribute (the
        /// last for the top level, tuples and counters, the first for
        /// states and start times); both decoders must pick the same.
        #[test]
        fn merged_entries_decode_alike(a in (any_flow(), extras()), b in (any_flow(), extras())) {
            let tree = |(f, x): &(Flow, Extras)| parse_tree(&build::emit_attrs(&build::flow_attrs(f, x)));
            let mut body = Vec::new();
            merge(tree(&a), tree(&b)).iter().for_each(|n| emit_node(n, &mut body));
            let family = a.0.family;
            let wire = decode_flow(family, &body);
            prop_assert!(wire.is_ok(), "{:?}", wire);
            prop_assert_eq!(wire.ok(), decode::decode_flow_reference(family, &body).ok());
        }

        /// A valid entry with random attribute trees inserted among its
        /// attributes: duplicates (the last or the first wins, depending on
        /// the attribute), unknown members, wrong lengths, at every depth.
        #[test]
        fn entries_with_random_attributes_decode_alike(
            entry in (kind(), any_flow(), extras()),
            extra in proptest::collection::vec((any::<usize>(), node()), 1..4),
            sel in selection(),
        ) {
            let (k, flow, x) = entry;
            let attrs = build::flow_attrs(&flow, &x);
            let mut pieces: Vec<Vec<u8>> = attrs.iter().map(|a| build::emit_attrs(std::slice::from_ref(a))).collect();
            for (at, n) in &extra {
                let mut b = Vec::new();
                emit_node(n, &mut b);
                pieces.insert(at % (pieces.len() + 1), b);
            }
            let body = pieces.concat();
            let wire = decode_flow(flow.family, &body).ok();
            prop_assert_eq!(wire, decode::decode_flow_reference(flow.family, &body).ok());
            let msg = build::conntrack_message(k, flow.family, &body);
            decoders_agree(&msg, &Selection::everything());
            decoders_agree(&msg, &sel);
        }

        /// Valid messages of any flow: both decoders give the flow back.
        #[test]
        fn valid_messages_decode_to_their_flow(entries in entries()) {
            let got = decoders_agree(&datagram(&entries), &Selection::everything());
            prop_assert_eq!(got.len(), entries.len() + 1);
            for ((kind, flow, x), m) in entries.iter().zip(&got) {
                prop_assert_eq!(m, &Ok(Message::Flow(*kind, expected(flow, x))));
            }
            prop_assert_eq!(got.last(), Some(&Ok(Message::Done)));
        }

        /// A selection filters the same entries out in both.
        #[test]
        fn selections_filter_alike(entries in entries(), sel in selection()) {
            let got = decoders_agree(&datagram(&entries), &sel);
            for ((_, flow, _), m) in entries.iter().zip(&got) {
                let shown = sel.family(flow.family) && sel.proto(flow.proto);
                prop_assert_eq!(matches!(m, Ok(Message::Flow(..))), shown);
                prop_assert_eq!(m == &Ok(Message::Filtered), !shown);
            }
        }

        /// Damaged messages: both decoders accept or reject each one alike
        /// (and the same value when they accept); neither panics.
        #[test]
        fn damaged_messages_decode_alike(entries in entries(), edits in edits(), sel in selection()) {
            let mut bytes = datagram(&entries);
            apply(&mut bytes, &edits);
            decoders_agree(&bytes, &Selection::everything());
            decoders_agree(&bytes, &sel);
        }

        /// Truncations at every length, of the datagram and of one entry's body.
        #[test]
        fn truncations_decode_alike(entry in (kind(), any_flow(), extras()), cut in any::<usize>()) {
            let (k, flow, x) = entry;
            let msg = build::flow_message(k, &flow, &x);
            let at = cut % msg.len();
            decoders_agree(&msg[..at], &Selection::everything());
            let body = build::emit_attrs(&build::flow_attrs(&flow, &x));
            let body = &body[..cut % body.len()];
            let wire = decode_flow(flow.family, body).ok();
            prop_assert_eq!(wire, decode::decode_flow_reference(flow.family, body).ok());
        }
    }

    /// The attribute walk on hand-made framing corner cases.
    #[test]
    fn attrs_walk_like_the_crate_iterator() {
        use netlink_packet_core::NlasIterator;
        let cases: &[&[u8]] = &[
            &[],
            &[4, 0],                         // header cut short
            &[3, 0, 1, 0],                   // length below the header
            &[9, 0, 1, 0, 1, 2, 3, 4],       // length beyond the buffer
            &[5, 0, 1, 0x80, 7],             // no padding after the last attribute
            &[4, 0, 1, 0x40, 4, 0, 2, 0, 1], // flags masked; a 1-byte tail
            &[8, 0, 1, 0, 1, 2, 3, 4, 4, 0, 0xff, 0xff],
        ];
        for bytes in cases {
            let ours: Vec<_> = Attrs::new(bytes)
                .map(|a| a.map(|a| (a.kind, a.value.to_vec())).ok())
                .collect();
            let theirs: Vec<_> = NlasIterator::new(*bytes)
                .map(|a| a.map(|a| (a.kind(), a.value().to_vec())).ok())
                .collect();
            assert_eq!(ours, theirs, "{bytes:?}");
        }
    }

    /// The reference checks SCTP / DCCP protocol info lazily: a malformed
    /// one after the state was found is accepted, before it rejected.
    #[test]
    fn protoinfo_checks_follow_the_reference() {
        use crate::conntrack::attrs::{CtAttr, ExtraAttr};
        use netlink_packet_core::{DefaultNla, Emitable};
        let flow = |l4| Flow {
            proto: l4,
            state: None,
            ..crate::fuzzing::test_flow()
        };
        let nla = |kind: u16, value: Vec<u8>| {
            let n = DefaultNla::new(kind, value);
            let mut b = vec![0u8; n.buffer_len()];
            n.emit(&mut b);
            b
        };
        let tcp_state = nla(CTA_PROTOINFO_TCP | NLA_F_NESTED, nla(1, vec![3]));
        let bad_sctp = nla(attrs::CTA_PROTOINFO_SCTP | NLA_F_NESTED, nla(1, vec![3, 3]));
        for (infos, ok) in [
            ([tcp_state.clone(), bad_sctp.clone()].concat(), true),
            ([bad_sctp, tcp_state].concat(), false),
        ] {
            let mut list = build::flow_attrs(&flow(proto::TCP), &Extras::default());
            list.push(CtAttr::Extra(ExtraAttr::Other(DefaultNla::new(
                attrs::CTA_PROTOINFO | NLA_F_NESTED,
                infos,
            ))));
            let body = build::emit_attrs(&list);
            let wire = decode_flow(Family::Ipv4, &body);
            assert_eq!(wire.is_ok(), ok, "{wire:?}");
            assert_eq!(wire.ok(), decode::decode_flow_reference(Family::Ipv4, &body).ok());
        }
    }

    /// Errors name what was malformed.
    #[test]
    fn errors_name_the_attribute() {
        use crate::conntrack::attrs::{CtAttr, ExtraAttr};
        use netlink_packet_core::DefaultNla;
        let mut list = build::flow_attrs(&crate::fuzzing::test_flow(), &Extras::default());
        list.push(CtAttr::Extra(ExtraAttr::Other(DefaultNla::new(
            attrs::CTA_MARK,
            vec![1, 2],
        ))));
        let err = decode_flow(Family::Ipv4, &build::emit_attrs(&list)).expect_err("short mark");
        assert!(err.to_string().contains("CTA_MARK"), "{err}");
    }
}
