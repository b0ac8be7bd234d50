//! The one answer to "which process owns this flow": the latest /proc
//! socket index and the sockets the eBPF programs reported, plus the
//! retries of flows that appeared before their socket was known.
//!
//! The engine asks; the answers are (flow, owner) pairs it gives to the
//! table (`FlowTable::set_owners`). The join reads the table only through
//! its public view of unowned flows and never changes it.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ebpf_owners::{Generational, OwnedSocket};
use super::index::{local_ends, unspecified_like, SocketIndex};
use crate::flow::clock::Clock;
use crate::flow::model::{Flow, FlowKey, Owner};
use crate::flow::table::{FlowTable, OwnerLookup};

/// How long (at least) a flow that appeared without an owner is tried
/// against new eBPF sockets and /proc indexes, and how many such flows are
/// remembered at most (beyond that, the next full dump's end retries them).
const RECENT_UNOWNED: Duration = Duration::from_secs(5);
const RECENT_UNOWNED_MAX: usize = 1 << 17;

/// Half the bound of the eBPF socket map (two generations are kept).
const EBPF_SOCKETS_HALF: usize = 1 << 17;

/// Owners found for flows of the table: (flow, owner) pairs.
pub type Found = Vec<(FlowKey, Arc<Owner>)>;

/// The attribution join of a run.
#[derive(Debug)]
pub struct OwnerJoin {
    /// The latest socket index from /proc.
    index: Option<Arc<SocketIndex>>,
    /// Sockets seen by the eBPF programs (exact local/remote ends), bounded.
    ebpf_sockets: Generational<(u8, SocketAddr, SocketAddr), Arc<Owner>>,
    /// Flows that appeared without an owner lately, oldest first (when, in
    /// [`Clock::secs`]): the only ones a batch of sockets is tried on.
    recent_unowned: VecDeque<(u32, FlowKey)>,
    /// 4-byte times for `recent_unowned` (up to 2^17 of them).
    clock: Clock,
}

impl OwnerJoin {
    /// An empty join; `now` starts its clock.
    pub fn new(now: Instant) -> Self {
        OwnerJoin {
            index: None,
            ebpf_sockets: Generational::new(EBPF_SOCKETS_HALF),
            recent_unowned: VecDeque::new(),
            clock: Clock::new(now.checked_sub(Duration::from_secs(60)).unwrap_or(now)),
        }
    }

    /// A join over one /proc index and nothing else (`--once`).
    pub fn with_index(index: Arc<SocketIndex>, now: Instant) -> Self {
        let mut join = OwnerJoin::new(now);
        join.index = Some(index);
        join
    }

    /// Takes a new socket index (a /proc scan, every interval) and returns
    /// the owners it gives flows of `table`. The first index is tried on
    /// every flow without an owner; later ones only on those that appeared
    /// lately: a socket exists before its flow's first packet, so an older
    /// flow an earlier index could not attribute is forwarded, inserted, or
    /// its process was gone before any scan. Trying every unowned flow each
    /// interval costs a scan of the table with several lookups per flow.
    /// Each full dump's end retries them all anyway ([`Self::retry_all`]).
    pub fn take_index(&mut self, index: Arc<SocketIndex>, table: &FlowTable, now: Instant) -> Found {
        let first = self.index.is_none();
        self.index = Some(index);
        if first {
            self.retry_all(table)
        } else {
            self.retry_recent(table, now)
        }
    }

    /// Takes sockets seen by eBPF and returns the owners they give flows
    /// that arrived before their socket event.
    ///
    /// Only flows that appeared without an owner in the last
    /// [`RECENT_UNOWNED`] are tried: a socket event comes when the socket
    /// is made or first sends, within moments of its flow's NEW event, and
    /// batches come many times a second, so trying every unowned flow (all
    /// of them on a router: forwarded flows have no local socket) would cost
    /// a scan of the table per batch.
    pub fn take_sockets(&mut self, sockets: Vec<OwnedSocket>, table: &FlowTable, now: Instant) -> Found {
        if sockets.is_empty() {
            return Found::new();
        }
        for (p, local, remote, owner) in sockets {
            self.ebpf_sockets.insert((p, local, remote), owner);
        }
        self.retry_recent(table, now)
    }

    /// The owners of flows of `table` that have none yet and may have a
    /// local end: a flow none of whose ends is an address of this host
    /// (forwarded traffic) has no socket here, and is skipped with two
    /// lookups instead of the socket lookups. The safety net of the
    /// recent-only retries, as rare as full dumps.
    pub fn retry_all(&self, table: &FlowTable) -> Found {
        let local_known = self.index.as_ref().filter(|i| i.knows_local_addresses());
        table
            .unowned()
            .filter(|f| local_known.is_none_or(|i| i.is_local(f.orig.src) || i.is_local(f.reply.src)))
            .filter_map(|f| Some((f.key(), self.lookup(f)?)))
            .collect()
    }

    /// The owners of the flows that appeared without one lately.
    fn retry_recent(&mut self, table: &FlowTable, now: Instant) -> Found {
        self.prune_recent_unowned(now);
        self.recent_unowned
            .iter()
            .filter_map(|(_, key)| {
                let flow = table.unowned_flow(key)?;
                Some((*key, self.lookup(flow)?))
            })
            .collect()
    }

    /// Remembers a flow that appeared without an owner.
    fn note_unowned(&mut self, key: FlowKey, now: Instant) {
        self.prune_recent_unowned(now);
        if self.recent_unowned.len() < RECENT_UNOWNED_MAX {
            self.recent_unowned.push_back((self.clock.secs(now), key));
        }
    }

    fn prune_recent_unowned(&mut self, now: Instant) {
        let horizon = self
            .clock
            .secs(now)
            .saturating_sub(RECENT_UNOWNED.as_secs() as u32);
        while self.recent_unowned.front().is_some_and(|&(t, _)| t < horizon) {
            self.recent_unowned.pop_front();
        }
    }

    /// The owner of a flow: an exact eBPF socket first, then the /proc index.
    pub fn lookup(&self, flow: &Flow) -> Option<Arc<Owner>> {
        if !self.ebpf_sockets.is_empty() {
            let is_local = |ip: IpAddr| self.index.as_ref().is_some_and(|i| i.is_local(ip));
            for (local, remote) in local_ends(flow).into_iter().flatten() {
                // Exact ends first. An unconnected socket (sendto) reports no
                // remote end, and an unbound one no local address: those
                // match only when the flow's end is an address of this host,
                // so forwarded traffic never borrows a local socket's port.
                let any_remote = SocketAddr::new(unspecified_like(remote.ip()), 0);
                let any_local = SocketAddr::new(unspecified_like(local.ip()), local.port());
                let exact = [(flow.proto, local, remote), (flow.proto, local, any_remote)];
                let wildcard = [
                    (flow.proto, any_local, remote),
                    (flow.proto, any_local, any_remote),
                ];
                let local_ok = is_local(local.ip());
                for key in exact.iter().chain(wildcard.iter().filter(|_| local_ok)) {
                    if let Some(o) = self.ebpf_sockets.get(key) {
                        return Some(o.clone());
                    }
                }
            }
        }
        self.index.as_ref().and_then(|i| i.lookup(flow))
    }
}

/// Asked by the table when a flow enters it; a flow without an owner is
/// remembered for the retries.
impl OwnerLookup for OwnerJoin {
    fn owner_of(&mut self, flow: &Flow, now: Instant) -> Option<Arc<Owner>> {
        let owner = self.lookup(flow);
        if owner.is_none() {
            self.note_unowned(flow.key(), now);
        }
        owner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::procfs::ProcScan;
    use crate::flow::model::{proto, Counters, Family, ProtoState, Tuple};
    use crate::flow::table::{Change, Entry, EventKind, TableConfig};
    use std::net::Ipv4Addr;

    /// An owner found by /proc (the testkit has one too, but its `Owner` is
    /// another crate's copy of the type).
    fn owner(pid: u32, comm: &str, exe: Option<&str>) -> Arc<Owner> {
        Arc::new(Owner {
            pid,
            comm: comm.to_owned(),
            exe: exe.map(str::to_owned),
            uid: 0,
            how: crate::attribution::How::Procfs,
            ..Default::default()
        })
    }

    fn hflow(id: u32) -> Flow {
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let sport = 40000 + id as u16;
        Flow {
            id,
            family: Family::Ipv4,
            proto: proto::TCP,
            state: Some(ProtoState::Tcp(3)),
            orig: Tuple {
                src: a,
                dst: b,
                sport: Some(sport),
                dport: Some(80),
                icmp: None,
            },
            reply: Tuple {
                src: b,
                dst: a,
                sport: Some(80),
                dport: Some(sport),
                icmp: None,
            },
            status: 0b1110,
            mark: 0,
            zone: 0,
            timeout: Some(300),
            counters: Some(Counters::default()),
            start_ns: None,
        }
    }

    type Log = Vec<(EventKind, u32)>;

    fn rec(log: &mut Log) -> impl FnMut(EventKind, &Entry) + '_ {
        |k, e| log.push((k, e.flow.id))
    }

    /// A batch of eBPF sockets is tried only on flows that appeared without
    /// an owner in the last few seconds; the first /proc index retries the
    /// older ones, except flows none of whose ends is an address of this host.
    #[test]
    fn socket_batches_try_recent_flows_and_indexes_skip_forwarded_ones() {
        let t0 = Instant::now();
        let long_ago = t0
            .checked_sub(Duration::from_secs(10))
            .expect("an instant 10 s back");
        let mut t = FlowTable::new(TableConfig::default(), long_ago);
        let mut j = OwnerJoin::new(long_ago);
        let mut log = Log::new();
        let (old, fresh) = (hflow(1), hflow(2));
        let mut forwarded = hflow(3);
        forwarded.orig.src = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
        forwarded.reply.dst = forwarded.orig.src;
        t.apply_event(Change::Seen, old.clone(), long_ago, &mut j, &mut rec(&mut log));
        t.apply_event(
            Change::Seen,
            forwarded.clone(),
            long_ago,
            &mut j,
            &mut rec(&mut log),
        );
        t.apply_event(Change::Seen, fresh.clone(), t0, &mut j, &mut rec(&mut log));
        let socket = |f: &Flow, pid: u32| {
            let local = SocketAddr::new(f.orig.src, f.orig.sport.expect("port"));
            let remote = SocketAddr::new(f.orig.dst, f.orig.dport.expect("port"));
            (f.proto, local, remote, owner(pid, "app", None))
        };
        log.clear();
        let found = j.take_sockets(
            vec![socket(&old, 11), socket(&fresh, 12), socket(&forwarded, 13)],
            &t,
            t0,
        );
        t.set_owners(found, &mut rec(&mut log));
        assert_eq!(log, vec![(EventKind::Update, 2)], "only the recent flow is tried");

        // This host is 192.0.2.1 (the source of `old`), not 198.51.100.7.
        let local = [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))];
        log.clear();
        let found = j.take_index(
            Arc::new(SocketIndex::from_procfs(&ProcScan::default(), local)),
            &t,
            t0,
        );
        t.set_owners(found, &mut rec(&mut log));
        assert_eq!(log, vec![(EventKind::Update, 1)], "the forwarded flow is skipped");
        let owner = |f: &Flow| t.get(f.key()).and_then(|e| e.owner.as_ref().map(|o| o.pid));
        assert_eq!(
            (owner(&old), owner(&fresh), owner(&forwarded)),
            (Some(11), Some(12), None)
        );
    }

    /// After the first index, a new /proc index is tried only on recent
    /// unowned flows; the end of a full dump retries the older ones.
    #[test]
    fn later_indexes_try_recent_flows_and_full_dumps_retry_all() {
        let t0 = Instant::now();
        let long_ago = t0
            .checked_sub(Duration::from_secs(30))
            .expect("an instant 30 s back");
        let mut t = FlowTable::new(TableConfig::default(), long_ago);
        let mut j = OwnerJoin::new(long_ago);
        let mut log = Log::new();
        let local = [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))];
        let empty = SocketIndex::from_procfs(&ProcScan::default(), local);
        let found = j.take_index(Arc::new(empty), &t, long_ago);
        t.set_owners(found, &mut rec(&mut log));
        let g = t.begin_dump(false);
        t.apply_dump_entry(g, hflow(1), long_ago, &mut j, &mut rec(&mut log));
        t.end_dump(g, &mut rec(&mut log));
        let (recent, old) = (hflow(2), hflow(1));
        t.apply_event(Change::Seen, recent.clone(), t0, &mut j, &mut rec(&mut log));
        log.clear();
        // An index holding both sockets: only the recent flow is tried.
        let mut both = SocketIndex::from_procfs(&ProcScan::default(), local);
        for f in [&old, &recent] {
            let l = SocketAddr::new(f.orig.src, f.orig.sport.expect("port"));
            let r = SocketAddr::new(f.orig.dst, f.orig.dport.expect("port"));
            both.insert(f.proto, l, r, false, owner(f.id + 20, "late", None));
        }
        let found = j.take_index(Arc::new(both), &t, t0);
        t.set_owners(found, &mut rec(&mut log));
        assert_eq!(log, vec![(EventKind::Update, 2)]);
        // The next full dump's end tries the old one too.
        log.clear();
        let g = t.begin_dump(false);
        t.apply_dump_entry(g, hflow(1), t0, &mut j, &mut rec(&mut log));
        t.apply_dump_entry(g, hflow(2), t0, &mut j, &mut rec(&mut log));
        t.end_dump(g, &mut rec(&mut log));
        t.set_owners(j.retry_all(&t), &mut rec(&mut log));
        assert_eq!(log, vec![(EventKind::Update, 1)]);
    }
}
