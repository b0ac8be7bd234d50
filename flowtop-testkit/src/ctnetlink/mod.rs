//! Builds ctnetlink messages from [`Flow`]s, the way the kernel lays them
//! out, through the typed attributes of `netlink-packet-netfilter` and
//! [`attrs`] (so the bytes do not depend on the decoders they feed).
//!
//! For tests, fuzz seeds and `examples/decode_cost.rs`; flowtop itself
//! never sends a conntrack entry, which is why this lives here and not in
//! flowtop's library.

pub mod attrs;

use netlink_packet_core::{DefaultNla, Emitable, NLA_F_NESTED, NLM_F_CREATE, NLM_F_MULTIPART};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple, TCPFlags, Tuple as NfTuple,
};

use attrs::{CounterAttr, CtAttr, DccpInfoAttr, ExtraAttr, ExtraProtoInfo, SctpInfoAttr, TimestampAttr};
use flowtop::conntrack::decode::{
    CtEventKind, AF_INET, AF_INET6, IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_NEW, NFNL_SUBSYS_CTNETLINK,
};
use flowtop::flow::model::{proto, Counters, Family, Flow, ProtoState, Tuple};

const NLMSG_DONE: u16 = 3;

/// What a kernel may send beyond what a [`Flow`] keeps (the decoders must
/// skip or accept it).
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// `CTA_COUNTERS32_*` instead of the 64-bit counters (old kernels).
    pub counters32: bool,
    /// `CTA_USE`, the entry's reference count (always sent by Linux).
    pub use_count: Option<u32>,
    /// `CTA_TIMESTAMP_STOP` (destroy events).
    pub stop_ns: Option<u64>,
    /// TCP window scales and flags next to the state.
    pub tcp_details: bool,
    /// Attributes flowtop does not know, at every nesting level.
    pub unknown: bool,
}

fn tuple_attrs(t: &Tuple, l4: u8, x: &Extras) -> Vec<NfTuple> {
    let ip = vec![IPTuple::SourceAddress(t.src), IPTuple::DestinationAddress(t.dst)];
    let mut pt = vec![ProtoTuple::Protocol(l4.into())];
    pt.extend(t.sport.map(ProtoTuple::SourcePort));
    pt.extend(t.dport.map(ProtoTuple::DestinationPort));
    if let Some(i) = t.icmp {
        // The crate has no ICMP members: raw attributes of the right kind.
        let (id, ty, code) = if l4 == proto::ICMPV6 {
            (
                attrs::CTA_PROTO_ICMPV6_ID,
                attrs::CTA_PROTO_ICMPV6_TYPE,
                attrs::CTA_PROTO_ICMPV6_CODE,
            )
        } else {
            (
                attrs::CTA_PROTO_ICMP_ID,
                attrs::CTA_PROTO_ICMP_TYPE,
                attrs::CTA_PROTO_ICMP_CODE,
            )
        };
        pt.push(ProtoTuple::Other(DefaultNla::new(
            id,
            i.id.to_be_bytes().to_vec(),
        )));
        pt.push(ProtoTuple::Other(DefaultNla::new(ty, vec![i.icmp_type])));
        pt.push(ProtoTuple::Other(DefaultNla::new(code, vec![i.code])));
    }
    let mut parts = vec![NfTuple::Ip(ip), NfTuple::Proto(pt)];
    if x.unknown {
        // CTA_TUPLE_ZONE is not decoded by either decoder.
        parts.push(NfTuple::Other(DefaultNla::new(3, 7u16.to_be_bytes().to_vec())));
    }
    parts
}

fn nested_extra(kind: u16, inner: &ExtraProtoInfo) -> CtAttr {
    let mut bytes = vec![0u8; inner.buffer_len()];
    inner.emit(&mut bytes);
    CtAttr::Extra(ExtraAttr::Other(DefaultNla::new(kind | NLA_F_NESTED, bytes)))
}

fn protoinfo(state: ProtoState, x: &Extras) -> CtAttr {
    match state {
        ProtoState::Tcp(s) => {
            let mut tcp = vec![ProtoInfoTCP::State(s)];
            if x.tcp_details {
                let flags = |f: u8| TCPFlags::parse(&[f, 0xff]).expect("two bytes are TCP flags");
                tcp.push(ProtoInfoTCP::OriginalWindowScale(7));
                tcp.push(ProtoInfoTCP::ReplyWindowScale(9));
                tcp.push(ProtoInfoTCP::OriginalFlags(flags(0x23)));
                tcp.push(ProtoInfoTCP::ReplyFlags(flags(0x22)));
            }
            CtAttr::Known(ConntrackAttribute::CtaProtoInfo(vec![ProtoInfo::TCP(tcp)]))
        }
        ProtoState::Sctp(s) => nested_extra(
            attrs::CTA_PROTOINFO,
            &ExtraProtoInfo::Sctp(vec![
                SctpInfoAttr::State(s),
                SctpInfoAttr::VtagOriginal(0x1234),
                SctpInfoAttr::VtagReply(0x5678),
            ]),
        ),
        ProtoState::Dccp(s) => nested_extra(
            attrs::CTA_PROTOINFO,
            &ExtraProtoInfo::Dccp(vec![
                DccpInfoAttr::State(s),
                DccpInfoAttr::Role(0),
                DccpInfoAttr::HandshakeSeq(42),
            ]),
        ),
    }
}

fn counter_attrs(packets: u64, bytes: u64, x: &Extras) -> Vec<CounterAttr> {
    if x.counters32 {
        // Truncated on purpose: old kernels sent the low 32 bits.
        vec![
            CounterAttr::Packets32(packets as u32),
            CounterAttr::Bytes32(bytes as u32),
        ]
    } else {
        vec![CounterAttr::Packets(packets), CounterAttr::Bytes(bytes)]
    }
}

fn counters(c: &Counters, x: &Extras) -> [CtAttr; 2] {
    [
        CtAttr::Extra(ExtraAttr::CountersOrig(counter_attrs(
            c.orig_packets,
            c.orig_bytes,
            x,
        ))),
        CtAttr::Extra(ExtraAttr::CountersReply(counter_attrs(
            c.reply_packets,
            c.reply_bytes,
            x,
        ))),
    ]
}

/// The top-level attributes of `flow`, in the kernel's order
/// (`ctnetlink_fill_info`).
pub fn flow_attrs(flow: &Flow, x: &Extras) -> Vec<CtAttr> {
    let l4 = flow.proto;
    let mut out = vec![
        CtAttr::Known(ConntrackAttribute::CtaTupleOrig(tuple_attrs(&flow.orig, l4, x))),
        CtAttr::Known(ConntrackAttribute::CtaTupleReply(tuple_attrs(&flow.reply, l4, x))),
    ];
    if flow.zone != 0 {
        out.push(CtAttr::Extra(ExtraAttr::Zone(flow.zone)));
    }
    out.push(CtAttr::Known(ConntrackAttribute::CtaStatus(
        netlink_packet_netfilter::conntrack::Status::from_bits_retain(flow.status),
    )));
    if let Some(t) = flow.timeout {
        out.push(CtAttr::Known(ConntrackAttribute::CtaTimeout(t.secs())));
    }
    if let Some(s) = flow.state {
        out.push(protoinfo(s, x));
    }
    if let Some(c) = &flow.counters {
        out.extend(counters(c, x));
    }
    if flow.start_ns.is_some() || x.stop_ns.is_some() {
        let mut ts: Vec<TimestampAttr> = flow.start().map(TimestampAttr::Start).into_iter().collect();
        ts.extend(x.stop_ns.map(TimestampAttr::Stop));
        out.push(CtAttr::Extra(ExtraAttr::Timestamp(ts)));
    }
    out.push(CtAttr::Known(ConntrackAttribute::CtaMark(flow.mark)));
    if x.unknown {
        // CTA_SECMARK (obsolete) and CTA_LABELS: neither decoder reads them.
        out.push(CtAttr::Extra(ExtraAttr::Other(DefaultNla::new(19, vec![0; 4]))));
        out.push(CtAttr::Extra(ExtraAttr::Other(DefaultNla::new(22, vec![1; 16]))));
    }
    out.push(CtAttr::Extra(ExtraAttr::Id(flow.id)));
    out.extend(x.use_count.map(|u| CtAttr::Extra(ExtraAttr::Use(u))));
    out
}

/// Attributes laid end to end: a message body after the nfgenmsg.
pub fn emit_attrs(list: &[CtAttr]) -> Vec<u8> {
    let mut body = vec![0u8; list.buffer_len()];
    list.emit(&mut body);
    body
}

/// A netlink message: header, then `payload`.
pub fn netlink_message(msg_type: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = 16 + payload.len();
    let mut msg = Vec::with_capacity((len + 3) & !3);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&msg_type.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(payload);
    msg.resize((len + 3) & !3, 0);
    msg
}

/// A ctnetlink message (event or dump entry) carrying `body` as its attributes.
pub fn conntrack_message(kind: CtEventKind, family: Family, body: &[u8]) -> Vec<u8> {
    let (msg, flags) = match kind {
        CtEventKind::New => (IPCTNL_MSG_CT_NEW, NLM_F_CREATE),
        // Dump entries are NEW without NLM_F_CREATE, and multipart.
        CtEventKind::Update => (IPCTNL_MSG_CT_NEW, NLM_F_MULTIPART),
        CtEventKind::Destroy => (IPCTNL_MSG_CT_DELETE, 0),
    };
    let af = match family {
        Family::Ipv4 => AF_INET,
        Family::Ipv6 => AF_INET6,
    };
    let mut payload = Vec::with_capacity(4 + body.len());
    payload.extend_from_slice(&[af, 0, 0, 0]); // nfgenmsg: family, NFNETLINK_V0, res_id
    payload.extend_from_slice(body);
    netlink_message((NFNL_SUBSYS_CTNETLINK << 8) | msg, flags, 0, &payload)
}

/// The message the kernel would send for `flow`.
pub fn flow_message(kind: CtEventKind, flow: &Flow, x: &Extras) -> Vec<u8> {
    conntrack_message(kind, flow.family, &emit_attrs(&flow_attrs(flow, x)))
}

/// `NLMSG_DONE`, the end of a dump.
pub fn done_message() -> Vec<u8> {
    netlink_message(NLMSG_DONE, NLM_F_MULTIPART, 0, &0i32.to_ne_bytes())
}
