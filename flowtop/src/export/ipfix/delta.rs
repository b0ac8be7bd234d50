//! From the engine's changes to records: what each flow's counters were
//! when last exported, so that a flow's records (at every active timeout
//! and at its end) carry deltas that add up exactly to conntrack's final
//! counters, per direction.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::{end_reason, Record};
use crate::flow::model::{proto, Counters, Direction, Flow, FlowKey, ProtoState, Tuple};
use crate::flow::table::{Entry, EventKind};

/// What was exported of one live flow.
#[derive(Debug, Clone, Copy)]
struct Sent {
    counters: Counters,
    /// The flow's start (the kernel's, else when flowtop first saw it).
    start_ms: u64,
}

/// Per-flow export state of the live flows.
pub struct Deltas {
    flows: HashMap<FlowKey, Sent, foldhash::fast::RandomState>,
    /// When each live flow's next active-timeout record is due, oldest
    /// first (the timeout is the same for all, so pushing keeps the order).
    due: VecDeque<(u64, FlowKey)>,
    active_ms: u64,
}

impl Deltas {
    pub fn new(active: Duration) -> Deltas {
        Deltas {
            flows: HashMap::default(),
            due: VecDeque::new(),
            active_ms: u64::try_from(active.as_millis()).unwrap_or(u64::MAX).max(1),
        }
    }

    pub fn live(&self) -> usize {
        self.flows.len()
    }

    /// One change of the table: an ended flow's last records go to `out`.
    pub fn change(&mut self, kind: EventKind, e: &Entry, now_ms: u64, out: &mut impl FnMut(Record)) {
        let key = e.flow.key();
        match kind {
            EventKind::Destroy => {
                let sent = self.flows.remove(&key).unwrap_or_else(|| fresh(&e.flow, now_ms));
                let reason = end_reason_of(&e.flow);
                emit(e, sent, now_ms, reason, true, out);
            }
            EventKind::New | EventKind::Snapshot | EventKind::Update => {
                if let std::collections::hash_map::Entry::Vacant(v) = self.flows.entry(key) {
                    v.insert(fresh(&e.flow, now_ms));
                    self.due.push_back((now_ms.saturating_add(self.active_ms), key));
                }
            }
        }
    }

    /// Records of the live flows whose active timeout ran out: what they
    /// did since their last record. `lookup` finds a flow in the table.
    pub fn tick<'a>(
        &mut self,
        lookup: impl Fn(FlowKey) -> Option<&'a Entry>,
        now_ms: u64,
        out: &mut impl FnMut(Record),
    ) {
        while let Some(&(at, key)) = self.due.front() {
            if at > now_ms {
                break;
            }
            self.due.pop_front();
            let (Some(sent), Some(e)) = (self.flows.get_mut(&key), lookup(key)) else {
                // Ended (its last records went with the destroy).
                continue;
            };
            let current = e.flow.counters.unwrap_or_default();
            emit(e, *sent, now_ms, end_reason::ACTIVE_TIMEOUT, false, out);
            sent.counters = current;
            self.due.push_back((now_ms.saturating_add(self.active_ms), key));
        }
    }

    /// The end of the run: the last records of every live flow (forced end).
    pub fn finish<'a>(
        &mut self,
        live: impl Iterator<Item = &'a Entry>,
        now_ms: u64,
        out: &mut impl FnMut(Record),
    ) {
        for e in live {
            if let Some(sent) = self.flows.remove(&e.flow.key()) {
                emit(e, sent, now_ms, end_reason::FORCED_END, true, out);
            }
        }
        self.due.clear();
    }
}

fn fresh(f: &Flow, now_ms: u64) -> Sent {
    Sent {
        counters: Counters::default(),
        start_ms: f.start().map_or(now_ms, |ns| ns / 1_000_000),
    }
}

/// A TCP flow that went through FIN or RST ended; anything else the kernel
/// removed after its timeout.
fn end_reason_of(f: &Flow) -> u8 {
    match f.state {
        // FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE
        Some(ProtoState::Tcp(4..=8)) => end_reason::END_OF_FLOW,
        Some(ProtoState::Sctp(5..=7)) => end_reason::END_OF_FLOW,
        _ => end_reason::IDLE_TIMEOUT,
    }
}

/// The two uniflow records of a flow since `sent`: the original direction
/// and the reply. At an active timeout a direction that did nothing is left
/// out; at the end both are sent (collectors then see every flow).
fn emit(e: &Entry, sent: Sent, now_ms: u64, reason: u8, last: bool, out: &mut impl FnMut(Record)) {
    let f = &e.flow;
    let c = f.counters.unwrap_or_default();
    let d = |now: u64, before: u64| now.saturating_sub(before);
    let (op, ob) = (
        d(c.orig_packets, sent.counters.orig_packets),
        d(c.orig_bytes, sent.counters.orig_bytes),
    );
    let (rp, rb) = (
        d(c.reply_packets, sent.counters.reply_packets),
        d(c.reply_bytes, sent.counters.reply_bytes),
    );
    // Whose socket sends each direction: the initiator's process sends the
    // original direction, the acceptor's the reply.
    let (initiator, acceptor) = match e.direction {
        Some(Direction::In) => (None, e.owner.clone()),
        Some(Direction::Local) => (e.owner.clone(), e.peer.clone()),
        Some(Direction::Forward) => (None, None),
        Some(Direction::Out) | None => (e.owner.clone(), None),
    };
    let base = |t: &Tuple, post: &Tuple, octets: u64, packets: u64| Record {
        src: t.src,
        dst: t.dst,
        sport: t.sport.unwrap_or(0),
        dport: t.dport.unwrap_or(0),
        proto: f.proto,
        icmp_type_code: t
            .icmp
            .filter(|_| matches!(f.proto, proto::ICMP | proto::ICMPV6))
            .map_or(0, |i| u16::from(i.icmp_type) << 8 | u16::from(i.code)),
        octets,
        packets,
        start_ms: sent.start_ms,
        end_ms: now_ms,
        end_reason: reason,
        // The other direction's tuple, turned around: where this
        // direction's packets went after NAT.
        post_src: post.dst,
        post_dst: post.src,
        post_sport: post.dport.unwrap_or(0),
        post_dport: post.sport.unwrap_or(0),
        src_proc: None,
        dst_proc: None,
        name: e.name.clone(),
    };
    if last || op > 0 {
        let mut r = base(&f.orig, &f.reply, ob, op);
        r.src_proc = initiator.clone();
        r.dst_proc = acceptor.clone();
        out(r);
    }
    if last || rp > 0 {
        let mut r = base(&f.reply, &f.orig, rb, rp);
        r.src_proc = acceptor;
        r.dst_proc = initiator;
        out(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::model::Owner;
    use proptest::prelude::*;
    use std::net::IpAddr;
    use std::sync::Arc;

    fn entry_with(counters: Counters, direction: Option<Direction>) -> Entry {
        let mut f = Flow::test_tcp(
            9,
            "192.0.2.1".parse::<IpAddr>().expect("ip"),
            "198.51.100.2".parse::<IpAddr>().expect("ip"),
            40000,
        );
        f.counters = Some(counters);
        let mut e = Entry::of_new_flow(f);
        e.direction = direction;
        e.owner = Some(Arc::new(Owner {
            pid: 77,
            comm: "curl".into(),
            ..Owner::default()
        }));
        e
    }

    fn counters(op: u64, ob: u64, rp: u64, rb: u64) -> Counters {
        Counters {
            orig_packets: op,
            orig_bytes: ob,
            reply_packets: rp,
            reply_bytes: rb,
        }
    }

    #[test]
    fn process_goes_on_the_side_it_belongs_to() {
        let mut d = Deltas::new(Duration::from_secs(60));
        let mut out = Vec::new();
        let e = entry_with(counters(3, 300, 2, 2000), Some(Direction::Out));
        d.change(EventKind::New, &e, 1000, &mut |r| out.push(r));
        d.change(EventKind::Destroy, &e, 2000, &mut |r| out.push(r));
        assert_eq!(out.len(), 2);
        let (o, r) = (&out[0], &out[1]);
        assert_eq!((o.packets, o.octets, r.packets, r.octets), (3, 300, 2, 2000));
        assert_eq!(o.src_proc.as_ref().map(|p| p.pid), Some(77));
        assert!(o.dst_proc.is_none());
        assert_eq!(r.dst_proc.as_ref().map(|p| p.pid), Some(77));
        assert!(r.src_proc.is_none());
        assert_eq!((r.src, r.sport), (o.dst, o.dport));
        // Incoming: the local process accepted, so it sends the reply.
        let mut out = Vec::new();
        let e = entry_with(counters(1, 60, 1, 60), Some(Direction::In));
        d.change(EventKind::Destroy, &e, 2000, &mut |r| out.push(r));
        assert!(out[0].src_proc.is_none() && out[0].dst_proc.is_some());
        assert!(out[1].src_proc.is_some() && out[1].dst_proc.is_none());
    }

    proptest! {
        /// Whatever the readings and however often the active timeout
        /// runs, a flow's records add up to its final counters.
        #[test]
        fn deltas_sum_to_the_final_counters(steps in proptest::collection::vec((0u64..1000, 0u64..100_000, 0u64..1000, 0u64..100_000, any::<bool>()), 1..20)) {
            let mut d = Deltas::new(Duration::from_millis(10));
            let mut out = Vec::new();
            let (mut c, mut now) = (Counters::default(), 0u64);
            let mut e = entry_with(c, Some(Direction::Out));
            d.change(EventKind::New, &e, now, &mut |r| out.push(r));
            for (op, ob, rp, rb, tick) in steps {
                c = counters(c.orig_packets + op, c.orig_bytes + ob, c.reply_packets + rp, c.reply_bytes + rb);
                e.flow.counters = Some(c);
                now += 7;
                d.change(EventKind::Update, &e, now, &mut |r| out.push(r));
                if tick {
                    let lookup = |_| Some(&e);
                    d.tick(lookup, now, &mut |r| out.push(r));
                }
            }
            d.change(EventKind::Destroy, &e, now + 1, &mut |r| out.push(r));
            let orig: (u64, u64) = out.iter().filter(|r| r.sport == 40000).fold((0, 0), |a, r| (a.0 + r.packets, a.1 + r.octets));
            let reply: (u64, u64) = out.iter().filter(|r| r.sport == 80).fold((0, 0), |a, r| (a.0 + r.packets, a.1 + r.octets));
            prop_assert_eq!(orig, (c.orig_packets, c.orig_bytes));
            prop_assert_eq!(reply, (c.reply_packets, c.reply_bytes));
            prop_assert_eq!(d.live(), 0);
        }
    }

    #[test]
    fn active_timeout_is_due_only_after_its_time() {
        let mut d = Deltas::new(Duration::from_secs(60));
        let mut e = entry_with(counters(1, 100, 1, 100), Some(Direction::Out));
        let mut out = Vec::new();
        d.change(EventKind::New, &e, 0, &mut |r| out.push(r));
        d.tick(|_| Some(&e), 59_999, &mut |r| out.push(r));
        assert!(out.is_empty());
        d.tick(|_| Some(&e), 60_000, &mut |r| out.push(r));
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|r| r.end_reason == end_reason::ACTIVE_TIMEOUT));
        // Nothing moved since: no record at the next timeout.
        out.clear();
        e.flow.counters = Some(counters(1, 100, 1, 100));
        d.tick(|_| Some(&e), 120_000, &mut |r| out.push(r));
        assert!(out.is_empty());
    }
}
