//! Typed ctnetlink attributes that `netlink-packet-netfilter` 0.4 leaves as
//! `Other(DefaultNla)`: counters, use, id, zone, timestamps, the ICMP parts of
//! a tuple and the SCTP/DCCP protocol info. The builder emits them and the
//! reference decoder parses them; flowtop's own decoder (`wire.rs`) walks
//! the bytes instead and needs none of this.
//!
//! Each type follows the crate's pattern (typed variant per known kind, an
//! `Other(DefaultNla)` for the rest, `Nla` for emitting, `Parseable` over an
//! `NlaBuffer`), so they compose with the crate's own attributes and
//! round-trip byte for byte. The attribute numbers are flowtop's
//! (`flowtop::conntrack::attrs`), so both sides agree on them by construction.

use netlink_packet_core::{
    emit_u16_be, emit_u32_be, emit_u64_be, parse_u16_be, parse_u32_be, parse_u64_be, parse_u8, DecodeError,
    DefaultNla, Emitable, ErrorContext, Nla, NlaBuffer, NlasIterator, Parseable,
};

pub use flowtop::conntrack::attrs::*;

/// Flag bits of an attribute type, stripped before matching on the kind.
const NLA_TYPE_MASK: u16 = !(netlink_packet_core::NLA_F_NESTED | netlink_packet_core::NLA_F_NET_BYTEORDER);

/// The attribute number without the nested / byte-order flag bits.
pub fn kind_of<T: AsRef<[u8]> + ?Sized>(buf: &NlaBuffer<&T>) -> u16 {
    buf.kind() & NLA_TYPE_MASK
}

fn parse_nested<'p, T>(payload: &'p [u8], what: &'static str) -> Result<Vec<T>, DecodeError>
where
    T: Parseable<NlaBuffer<&'p [u8]>>,
{
    let mut out = Vec::new();
    for nla in NlasIterator::new(payload) {
        out.push(T::parse(&nla.context(what)?)?);
    }
    Ok(out)
}

fn nested_len<T: Nla>(items: &[T]) -> usize {
    items.iter().map(Emitable::buffer_len).sum()
}

fn emit_nested<T: Nla>(items: &[T], buffer: &mut [u8]) {
    items.emit(buffer);
}

/// Reads the value bytes of an attribute the crate kept as `DefaultNla`.
pub fn default_nla_value(nla: &DefaultNla) -> Vec<u8> {
    let mut value = vec![0; nla.value_len()];
    nla.emit_value(&mut value);
    value
}

/// One member of `CTA_COUNTERS_ORIG` / `CTA_COUNTERS_REPLY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterAttr {
    Packets(u64),
    Bytes(u64),
    /// Old kernels sent 32-bit counters.
    Packets32(u32),
    Bytes32(u32),
    Other(DefaultNla),
}

impl Nla for CounterAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Packets(_) | Self::Bytes(_) => 8,
            Self::Packets32(_) | Self::Bytes32(_) => 4,
            Self::Other(nla) => nla.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            Self::Packets(_) => CTA_COUNTERS_PACKETS,
            Self::Bytes(_) => CTA_COUNTERS_BYTES,
            Self::Packets32(_) => CTA_COUNTERS32_PACKETS,
            Self::Bytes32(_) => CTA_COUNTERS32_BYTES,
            Self::Other(nla) => nla.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        // The buffer is sized by value_len(), so the emit helpers cannot fail.
        let _ = match self {
            Self::Packets(v) | Self::Bytes(v) => emit_u64_be(buffer, *v),
            Self::Packets32(v) | Self::Bytes32(v) => emit_u32_be(buffer, *v),
            Self::Other(nla) => {
                nla.emit_value(buffer);
                Ok(())
            }
        };
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for CounterAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        Ok(match kind_of(buf) {
            CTA_COUNTERS_PACKETS => {
                Self::Packets(parse_u64_be(payload).context("invalid CTA_COUNTERS_PACKETS")?)
            }
            CTA_COUNTERS_BYTES => Self::Bytes(parse_u64_be(payload).context("invalid CTA_COUNTERS_BYTES")?),
            CTA_COUNTERS32_PACKETS => {
                Self::Packets32(parse_u32_be(payload).context("invalid CTA_COUNTERS32_PACKETS")?)
            }
            CTA_COUNTERS32_BYTES => {
                Self::Bytes32(parse_u32_be(payload).context("invalid CTA_COUNTERS32_BYTES")?)
            }
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// One member of `CTA_TIMESTAMP`: nanoseconds of the realtime clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampAttr {
    Start(u64),
    Stop(u64),
    Other(DefaultNla),
}

impl Nla for TimestampAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Start(_) | Self::Stop(_) => 8,
            Self::Other(nla) => nla.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            Self::Start(_) => CTA_TIMESTAMP_START,
            Self::Stop(_) => CTA_TIMESTAMP_STOP,
            Self::Other(nla) => nla.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::Start(v) | Self::Stop(v) => {
                let _ = emit_u64_be(buffer, *v);
            }
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for TimestampAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        Ok(match kind_of(buf) {
            CTA_TIMESTAMP_START => Self::Start(parse_u64_be(payload).context("invalid CTA_TIMESTAMP_START")?),
            CTA_TIMESTAMP_STOP => Self::Stop(parse_u64_be(payload).context("invalid CTA_TIMESTAMP_STOP")?),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// The ICMP / ICMPv6 members of `CTA_TUPLE_PROTO` (id, type, code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IcmpTupleAttr {
    Id { v6: bool, id: u16 },
    Type { v6: bool, icmp_type: u8 },
    Code { v6: bool, code: u8 },
    Other(DefaultNla),
}

impl Nla for IcmpTupleAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Id { .. } => 2,
            Self::Type { .. } | Self::Code { .. } => 1,
            Self::Other(nla) => nla.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            Self::Id { v6: false, .. } => CTA_PROTO_ICMP_ID,
            Self::Type { v6: false, .. } => CTA_PROTO_ICMP_TYPE,
            Self::Code { v6: false, .. } => CTA_PROTO_ICMP_CODE,
            Self::Id { v6: true, .. } => CTA_PROTO_ICMPV6_ID,
            Self::Type { v6: true, .. } => CTA_PROTO_ICMPV6_TYPE,
            Self::Code { v6: true, .. } => CTA_PROTO_ICMPV6_CODE,
            Self::Other(nla) => nla.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::Id { id, .. } => {
                let _ = emit_u16_be(buffer, *id);
            }
            Self::Type { icmp_type: b, .. } | Self::Code { code: b, .. } => buffer[0] = *b,
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for IcmpTupleAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        let kind = kind_of(buf);
        let v6 = matches!(
            kind,
            CTA_PROTO_ICMPV6_ID | CTA_PROTO_ICMPV6_TYPE | CTA_PROTO_ICMPV6_CODE
        );
        Ok(match kind {
            CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => Self::Id {
                v6,
                id: parse_u16_be(payload).context("invalid CTA_PROTO_ICMP_ID")?,
            },
            CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => Self::Type {
                v6,
                icmp_type: parse_u8(payload).context("invalid CTA_PROTO_ICMP_TYPE")?,
            },
            CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => Self::Code {
                v6,
                code: parse_u8(payload).context("invalid CTA_PROTO_ICMP_CODE")?,
            },
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// Members of `CTA_PROTOINFO_SCTP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SctpInfoAttr {
    State(u8),
    VtagOriginal(u32),
    VtagReply(u32),
    Other(DefaultNla),
}

impl Nla for SctpInfoAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::State(_) => 1,
            Self::VtagOriginal(_) | Self::VtagReply(_) => 4,
            Self::Other(nla) => nla.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            Self::State(_) => CTA_PROTOINFO_SCTP_STATE,
            Self::VtagOriginal(_) => CTA_PROTOINFO_SCTP_VTAG_ORIGINAL,
            Self::VtagReply(_) => CTA_PROTOINFO_SCTP_VTAG_REPLY,
            Self::Other(nla) => nla.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::State(s) => buffer[0] = *s,
            Self::VtagOriginal(v) | Self::VtagReply(v) => {
                let _ = emit_u32_be(buffer, *v);
            }
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for SctpInfoAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        Ok(match kind_of(buf) {
            CTA_PROTOINFO_SCTP_STATE => {
                Self::State(parse_u8(payload).context("invalid CTA_PROTOINFO_SCTP_STATE")?)
            }
            CTA_PROTOINFO_SCTP_VTAG_ORIGINAL => {
                Self::VtagOriginal(parse_u32_be(payload).context("invalid CTA_PROTOINFO_SCTP_VTAG_ORIGINAL")?)
            }
            CTA_PROTOINFO_SCTP_VTAG_REPLY => {
                Self::VtagReply(parse_u32_be(payload).context("invalid CTA_PROTOINFO_SCTP_VTAG_REPLY")?)
            }
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// Members of `CTA_PROTOINFO_DCCP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DccpInfoAttr {
    State(u8),
    Role(u8),
    HandshakeSeq(u64),
    Other(DefaultNla),
}

impl Nla for DccpInfoAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::State(_) | Self::Role(_) => 1,
            Self::HandshakeSeq(_) => 8,
            Self::Other(nla) => nla.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            Self::State(_) => CTA_PROTOINFO_DCCP_STATE,
            Self::Role(_) => CTA_PROTOINFO_DCCP_ROLE,
            Self::HandshakeSeq(_) => CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ,
            Self::Other(nla) => nla.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::State(b) | Self::Role(b) => buffer[0] = *b,
            Self::HandshakeSeq(v) => {
                let _ = emit_u64_be(buffer, *v);
            }
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for DccpInfoAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        Ok(match kind_of(buf) {
            CTA_PROTOINFO_DCCP_STATE => {
                Self::State(parse_u8(payload).context("invalid CTA_PROTOINFO_DCCP_STATE")?)
            }
            CTA_PROTOINFO_DCCP_ROLE => {
                Self::Role(parse_u8(payload).context("invalid CTA_PROTOINFO_DCCP_ROLE")?)
            }
            CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ => {
                Self::HandshakeSeq(parse_u64_be(payload).context("invalid CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ")?)
            }
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// The top-level conntrack attributes the crate does not type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraAttr {
    CountersOrig(Vec<CounterAttr>),
    CountersReply(Vec<CounterAttr>),
    Use(u32),
    Id(u32),
    Zone(u16),
    Timestamp(Vec<TimestampAttr>),
    Other(DefaultNla),
}

impl Nla for ExtraAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::CountersOrig(c) | Self::CountersReply(c) => nested_len(c),
            Self::Use(_) | Self::Id(_) => 4,
            Self::Zone(_) => 2,
            Self::Timestamp(t) => nested_len(t),
            Self::Other(nla) => nla.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            Self::CountersOrig(_) => CTA_COUNTERS_ORIG,
            Self::CountersReply(_) => CTA_COUNTERS_REPLY,
            Self::Use(_) => CTA_USE,
            Self::Id(_) => CTA_ID,
            Self::Zone(_) => CTA_ZONE,
            Self::Timestamp(_) => CTA_TIMESTAMP,
            Self::Other(nla) => nla.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::CountersOrig(c) | Self::CountersReply(c) => emit_nested(c, buffer),
            Self::Use(v) | Self::Id(v) => {
                let _ = emit_u32_be(buffer, *v);
            }
            Self::Zone(z) => {
                let _ = emit_u16_be(buffer, *z);
            }
            Self::Timestamp(t) => emit_nested(t, buffer),
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
    fn is_nested(&self) -> bool {
        match self {
            Self::CountersOrig(_) | Self::CountersReply(_) | Self::Timestamp(_) => true,
            Self::Other(nla) => nla.is_nested(),
            _ => false,
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for ExtraAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        Ok(match kind_of(buf) {
            CTA_COUNTERS_ORIG => Self::CountersOrig(parse_nested(payload, "invalid CTA_COUNTERS_ORIG")?),
            CTA_COUNTERS_REPLY => Self::CountersReply(parse_nested(payload, "invalid CTA_COUNTERS_REPLY")?),
            CTA_USE => Self::Use(parse_u32_be(payload).context("invalid CTA_USE")?),
            CTA_ID => Self::Id(parse_u32_be(payload).context("invalid CTA_ID")?),
            CTA_ZONE => Self::Zone(parse_u16_be(payload).context("invalid CTA_ZONE")?),
            CTA_TIMESTAMP => Self::Timestamp(parse_nested(payload, "invalid CTA_TIMESTAMP")?),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// The protocol-info members the crate keeps as `ProtoInfo::Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraProtoInfo {
    Sctp(Vec<SctpInfoAttr>),
    Dccp(Vec<DccpInfoAttr>),
    Other(DefaultNla),
}

impl Nla for ExtraProtoInfo {
    fn value_len(&self) -> usize {
        match self {
            Self::Sctp(a) => nested_len(a),
            Self::Dccp(a) => nested_len(a),
            Self::Other(nla) => nla.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            Self::Sctp(_) => CTA_PROTOINFO_SCTP,
            Self::Dccp(_) => CTA_PROTOINFO_DCCP,
            Self::Other(nla) => nla.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::Sctp(a) => emit_nested(a, buffer),
            Self::Dccp(a) => emit_nested(a, buffer),
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
    fn is_nested(&self) -> bool {
        match self {
            Self::Sctp(_) | Self::Dccp(_) => true,
            Self::Other(nla) => nla.is_nested(),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for ExtraProtoInfo {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        Ok(match kind_of(buf) {
            CTA_PROTOINFO_SCTP => Self::Sctp(parse_nested(payload, "invalid CTA_PROTOINFO_SCTP")?),
            CTA_PROTOINFO_DCCP => Self::Dccp(parse_nested(payload, "invalid CTA_PROTOINFO_DCCP")?),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// Any top-level conntrack attribute: the crate's typed ones, or ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtAttr {
    Known(netlink_packet_netfilter::conntrack::ConntrackAttribute),
    Extra(ExtraAttr),
}

impl Nla for CtAttr {
    fn value_len(&self) -> usize {
        match self {
            Self::Known(a) => a.value_len(),
            Self::Extra(a) => a.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            Self::Known(a) => a.kind(),
            Self::Extra(a) => a.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::Known(a) => a.emit_value(buffer),
            Self::Extra(a) => a.emit_value(buffer),
        }
    }
    fn is_nested(&self) -> bool {
        match self {
            Self::Known(a) => a.is_nested(),
            Self::Extra(a) => a.is_nested(),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for CtAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        Ok(match kind_of(buf) {
            CTA_TUPLE_ORIG | CTA_TUPLE_REPLY | CTA_STATUS | CTA_PROTOINFO | CTA_TIMEOUT | CTA_MARK => {
                Self::Known(netlink_packet_netfilter::conntrack::ConntrackAttribute::parse(
                    buf,
                )?)
            }
            _ => Self::Extra(ExtraAttr::parse(buf)?),
        })
    }
}

/// Parses every top-level attribute of a conntrack message body.
pub fn parse_all(attrs: &[u8]) -> Result<Vec<CtAttr>, DecodeError> {
    parse_nested(attrs, "invalid conntrack attribute")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<A>(attr: A)
    where
        A: Nla + std::fmt::Debug + PartialEq + for<'a> Parseable<NlaBuffer<&'a [u8]>>,
    {
        let mut bytes = vec![0u8; attr.buffer_len()];
        attr.emit(&mut bytes);
        let parsed = A::parse(&NlaBuffer::new_checked(&bytes[..]).expect("valid nla")).expect("parses");
        assert_eq!(parsed, attr);
        let mut again = vec![0u8; parsed.buffer_len()];
        parsed.emit(&mut again);
        assert_eq!(again, bytes);
    }

    #[test]
    fn extra_attributes_round_trip() {
        roundtrip(ExtraAttr::CountersOrig(vec![
            CounterAttr::Packets(7),
            CounterAttr::Bytes(1 << 40),
        ]));
        roundtrip(ExtraAttr::CountersReply(vec![
            CounterAttr::Packets32(3),
            CounterAttr::Bytes32(99),
        ]));
        roundtrip(ExtraAttr::Use(1));
        roundtrip(ExtraAttr::Id(0xdead_beef));
        roundtrip(ExtraAttr::Zone(42));
        roundtrip(ExtraAttr::Timestamp(vec![
            TimestampAttr::Start(1_700_000_000_000_000_000),
            TimestampAttr::Stop(5),
        ]));
        roundtrip(ExtraAttr::Other(DefaultNla::new(99, vec![1, 2, 3])));
        roundtrip(ExtraProtoInfo::Sctp(vec![
            SctpInfoAttr::State(3),
            SctpInfoAttr::VtagOriginal(1),
            SctpInfoAttr::VtagReply(2),
        ]));
        roundtrip(ExtraProtoInfo::Dccp(vec![
            DccpInfoAttr::State(4),
            DccpInfoAttr::Role(1),
            DccpInfoAttr::HandshakeSeq(77),
        ]));
        roundtrip(IcmpTupleAttr::Id { v6: true, id: 513 });
        roundtrip(IcmpTupleAttr::Type {
            v6: false,
            icmp_type: 8,
        });
        roundtrip(IcmpTupleAttr::Code { v6: true, code: 0 });
    }

    #[test]
    fn counters_decode_big_endian() {
        // CTA_COUNTERS_ORIG { PACKETS = 2, BYTES = 0x0102 } as the kernel sends it.
        let bytes = [
            0x1c, 0x00, 0x09, 0x80, // len 28, CTA_COUNTERS_ORIG | NLA_F_NESTED
            0x0c, 0x00, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 2, // packets
            0x0c, 0x00, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 1, 2, // bytes
        ];
        let parsed = ExtraAttr::parse(&NlaBuffer::new_checked(&bytes[..]).expect("nla")).expect("parse");
        assert_eq!(
            parsed,
            ExtraAttr::CountersOrig(vec![CounterAttr::Packets(2), CounterAttr::Bytes(0x0102)])
        );
    }

    #[test]
    fn short_values_are_errors_not_panics() {
        // CTA_ID with a 2-byte value.
        let bytes = [0x06, 0x00, 0x0c, 0x00, 0xaa, 0xbb, 0, 0];
        assert!(ExtraAttr::parse(&NlaBuffer::new_checked(&bytes[..]).expect("nla")).is_err());
    }
}
