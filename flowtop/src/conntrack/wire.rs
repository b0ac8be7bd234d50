//! The production ctnetlink attribute decoder: walks the netlink attributes
//! of a conntrack entry directly on the received bytes.
//!
//! Nothing is allocated on the way (the returned [`Flow`] owns no heap
//! memory) and no attribute is decoded that the [`Flow`] does not need,
//! beyond the length checks that keep the result identical to the
//! crate-based reference decoder of flowtop-testkit (`reference.rs`):
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
use crate::flow::model::{proto, Counters, Family, Flow, Icmp, ProtoState, Timeout, Tuple};

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
        timeout: p.timeout.map(Timeout::from_secs),
        counters,
        // A zero start means the timestamp extension exists but was never set.
        start_ns: p.start_ns.and_then(std::num::NonZeroU64::new),
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
    // The differential tests against the reference decoder are in
    // tests/decoders.rs: they need flowtop-testkit, which links its own
    // copy of this crate. Here only what reaches private items.
    use super::*;

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
}
