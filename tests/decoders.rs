//! The differential tests of flowtop's ctnetlink decoder (`conntrack::wire`,
//! through `conntrack::decode`) against flowtop-testkit's crate-based
//! reference decoder, on captured kernel bytes, on messages built from any
//! flow, and on damaged and random input. Moved out of the library's unit
//! tests with the builder and the reference decoder: the testkit links its
//! own copy of flowtop, so its flows only match an integration test's.

use std::net::IpAddr;

use flowtop::conntrack::attrs::{CTA_MARK, CTA_PROTOINFO, CTA_PROTOINFO_SCTP, CTA_PROTOINFO_TCP};
use flowtop::conntrack::decode::{decode_flow, peek_protocol, CtEventKind, Message, NFNL_SUBSYS_CTNETLINK};
use flowtop::flow::model::{proto, Counters, Family, Flow, Icmp, ProtoState, Tuple};
use flowtop::flow::Selection;
use flowtop_testkit::ctnetlink::attrs::{self as tk_attrs, CtAttr, DccpInfoAttr, ExtraAttr, ExtraProtoInfo};
use flowtop_testkit::ctnetlink::{self as build, Extras};
use flowtop_testkit::fixtures::{test_flow, DUMP, EVENTS};
use flowtop_testkit::reference::{self, decoders_agree};
use netlink_packet_core::{Emitable, NetlinkBuffer, NLA_F_NESTED, NLA_F_NET_BYTEORDER};
use netlink_packet_netfilter::conntrack::{IPTuple, ProtoTuple, Tuple as NfTuple};
use proptest::prelude::*;

/// The nfgenmsg before a ctnetlink message's attributes.
const NFGENMSG_LEN: usize = 4;
/// A netlink attribute's header.
const NLA_HEADER_LEN: usize = 4;

// ---------------------------------------------------------------------------
// captured bytes and hand-made entries (were conntrack::decode's unit tests)

fn both(bytes: &[u8], sel: &Selection) -> Vec<Result<Message, String>> {
    decoders_agree(bytes, sel)
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
                let parsed = tk_attrs::parse_all(body).expect("typed parse");
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
    let dccp = ExtraProtoInfo::Dccp(vec![DccpInfoAttr::State(4), DccpInfoAttr::Role(0)]);
    let mut inner = vec![0u8; dccp.buffer_len()];
    dccp.emit(&mut inner);
    let attrs_list = vec![
        CtAttr::Known(ConntrackAttribute::CtaTupleOrig(tuple(a, b, 5000, 6000))),
        CtAttr::Known(ConntrackAttribute::CtaTupleReply(tuple(b, a, 6000, 5000))),
        CtAttr::Extra(ExtraAttr::Other(DefaultNla::new(
            CTA_PROTOINFO | NLA_F_NESTED,
            inner,
        ))),
        CtAttr::Extra(ExtraAttr::Id(4242)),
    ];
    let mut body = vec![0u8; attrs_list.as_slice().buffer_len()];
    attrs_list.as_slice().emit(&mut body);
    let flow = decode_flow(Family::Ipv4, &body).expect("decodes");
    assert_eq!(
        reference::decode_flow(Family::Ipv4, &body).expect("decodes"),
        flow
    );
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
        prop_assert_eq!(wire, reference::decode_flow(Family::Ipv4, &bytes).ok());
        let _ = tk_attrs::parse_all(&bytes);
        let peek = peek_protocol(&bytes).ok();
        prop_assert_eq!(peek, reference::peek_protocol(&bytes).ok());
    }
}

// ---------------------------------------------------------------------------
// built and damaged messages (were conntrack::wire's unit tests)

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
                timeout: times.0.map(flowtop::flow::model::Timeout::from_secs),
                counters,
                start_ns: times.1.and_then(std::num::NonZeroU64::new),
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
/// tests do not depend on flowtop's attribute walk); nested when `NLA_F_NESTED` says so.
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
        prop_assert_eq!(wire.ok(), reference::decode_flow(family, &body).ok());
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
        prop_assert_eq!(wire, reference::decode_flow(flow.family, &body).ok());
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
        prop_assert_eq!(wire, reference::decode_flow(flow.family, body).ok());
    }
}

/// The reference checks SCTP / DCCP protocol info lazily: a malformed
/// one after the state was found is accepted, before it rejected.
#[test]
fn protoinfo_checks_follow_the_reference() {
    use netlink_packet_core::{DefaultNla, Emitable};
    let flow = |l4| Flow {
        proto: l4,
        state: None,
        ..test_flow()
    };
    let nla = |kind: u16, value: Vec<u8>| {
        let n = DefaultNla::new(kind, value);
        let mut b = vec![0u8; n.buffer_len()];
        n.emit(&mut b);
        b
    };
    let tcp_state = nla(CTA_PROTOINFO_TCP | NLA_F_NESTED, nla(1, vec![3]));
    let bad_sctp = nla(CTA_PROTOINFO_SCTP | NLA_F_NESTED, nla(1, vec![3, 3]));
    for (infos, ok) in [
        ([tcp_state.clone(), bad_sctp.clone()].concat(), true),
        ([bad_sctp, tcp_state].concat(), false),
    ] {
        let mut list = build::flow_attrs(&flow(proto::TCP), &Extras::default());
        list.push(CtAttr::Extra(ExtraAttr::Other(DefaultNla::new(
            CTA_PROTOINFO | NLA_F_NESTED,
            infos,
        ))));
        let body = build::emit_attrs(&list);
        let wire = decode_flow(Family::Ipv4, &body);
        assert_eq!(wire.is_ok(), ok, "{wire:?}");
        assert_eq!(wire.ok(), reference::decode_flow(Family::Ipv4, &body).ok());
    }
}

/// Errors name what was malformed.
#[test]
fn errors_name_the_attribute() {
    use netlink_packet_core::DefaultNla;
    let mut list = build::flow_attrs(&test_flow(), &Extras::default());
    list.push(CtAttr::Extra(ExtraAttr::Other(DefaultNla::new(
        CTA_MARK,
        vec![1, 2],
    ))));
    let err = decode_flow(Family::Ipv4, &build::emit_attrs(&list)).expect_err("short mark");
    assert!(err.to_string().contains("CTA_MARK"), "{err}");
}
