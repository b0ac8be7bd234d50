//! The one answer to "which process owns this flow": the latest /proc
//! socket index and the sockets the eBPF programs reported, plus the
//! retries of flows that appeared before their socket was known. Every
//! output (`--once`, `--json`, the screen) gets its owners from
//! [`OwnerJoin::lookup`], so they cannot disagree.
//!
//! Each local end of a flow is looked up on its own: the original tuple's
//! source is the initiator (the flow's owner when it is ours), the reply
//! tuple's source the acceptor (the owner of an incoming flow, the `peer`
//! of a local one). Which ends are local, from this namespace's addresses,
//! gives the direction.
//!
//! The engine asks; the answers are (flow, owner) pairs it gives to the
//! table (`FlowTable::set_owners`). The join reads the table only through
//! its public view of unowned flows and never changes it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ebpf_owners::{Generational, OwnedSocket};
use super::index::{local_ends, normalise, unspecified_like, SocketIndex};
use super::netns::NetnsRoutes;
use crate::flow::clock::Clock;
use crate::flow::model::{Attributed, Direction, Flow, FlowKey, How, Owner};
use crate::flow::table::{FlowTable, OwnerLookup};

/// How long (at least) a flow that appeared without an owner is tried
/// against new eBPF sockets and /proc indexes, and how many such flows are
/// remembered at most (beyond that, the next full dump's end retries them).
const RECENT_UNOWNED: Duration = Duration::from_secs(5);
const RECENT_UNOWNED_MAX: usize = 1 << 17;

/// Half the bound of the eBPF socket map (two generations are kept).
const EBPF_SOCKETS_HALF: usize = 1 << 17;

/// What attribution found for flows of the table.
pub type Found = Vec<(FlowKey, Attributed)>;

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
    /// This namespace's addresses (from the latest /proc index, or given at
    /// start): which ends of a flow are local. Empty: not known yet.
    local_addrs: HashSet<IpAddr, foldhash::fast::RandomState>,
    /// Sockets of other network namespaces by (namespace inode, ends):
    /// candidates for forwarded flows of namespaces behind this host only
    /// (issue 15), never consulted for this namespace's flows.
    netns_sockets: Generational<NetnsKey, Arc<Owner>>,
    /// Sockets of other namespaces by their bound end (from bind(2): the
    /// address often the wildcard), the last resort for a forwarded flow's
    /// end there: the listener behind a published port.
    netns_bound: Generational<NetnsKey, Arc<Owner>>,
    /// Which namespaces are behind which interface (rtnetlink); a mutex
    /// because lookups take `&self` and it caches.
    netns_routes: std::sync::Mutex<NetnsRoutes>,
    /// /proc scans of namespaces behind this host, by (namespace, the
    /// address asked about), at most one per [`super::netns::REFRESH`]:
    /// the sockets eBPF cannot join (accepted ones have no CREATED event,
    /// older ones none at all), e.g. the server behind a published port.
    netns_scans: std::sync::Mutex<HashMap<(u64, IpAddr), NetnsScan>>,
}

/// A namespace's sockets from /proc, and when they were read.
type NetnsScan = (Instant, Arc<SocketIndex>);

/// Namespace scans remembered at most.
const NETNS_SCANS_MAX: usize = 256;

/// A socket of another namespace: its inode, protocol, local and remote end.
type NetnsKey = (u64, u8, SocketAddr, SocketAddr);

impl OwnerJoin {
    /// An empty join; `now` starts its clock.
    pub fn new(now: Instant) -> Self {
        OwnerJoin {
            index: None,
            ebpf_sockets: Generational::new(EBPF_SOCKETS_HALF),
            recent_unowned: VecDeque::new(),
            clock: Clock::new(now.checked_sub(Duration::from_secs(60)).unwrap_or(now)),
            local_addrs: HashSet::default(),
            netns_sockets: Generational::new(EBPF_SOCKETS_HALF / 4),
            netns_bound: Generational::new(EBPF_SOCKETS_HALF / 16),
            netns_routes: std::sync::Mutex::new(NetnsRoutes::new()),
            netns_scans: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Takes this namespace's addresses before the first /proc index brings
    /// them, so that the first flows get their direction too.
    pub fn with_local_addrs(mut self, addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        self.local_addrs = addrs.into_iter().map(normalise).collect();
        self
    }

    /// Whether `ip` is an address of this namespace.
    fn is_local(&self, ip: IpAddr) -> bool {
        self.local_addrs.contains(&normalise(ip))
    }

    /// A join over one /proc index and nothing else (`--once`).
    pub fn with_index(index: Arc<SocketIndex>, now: Instant) -> Self {
        let mut join = OwnerJoin::new(now);
        join.local_addrs = index.local_addrs().collect();
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
        if index.knows_local_addresses() {
            self.local_addrs = index.local_addrs().collect();
        }
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
            match (owner.how, owner.netns) {
                (How::Netns, Some(ns)) => {
                    if self.routes().note_member(ns, owner.pid) {
                        // A process new there: the namespace's sockets
                        // changed since it was last scanned.
                        self.netns_scans
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .retain(|&(n, _), _| n != ns);
                    }
                    // A membership note has no ends: nothing to store.
                    if p != 0 || local.port() != 0 || !local.ip().is_unspecified() {
                        self.netns_sockets.insert((ns, p, local, remote), owner);
                    }
                }
                // A bind(2) there (see EbpfOwners::apply).
                (How::Listener, Some(ns)) => {
                    let owner = Arc::new(Owner {
                        how: How::Netns,
                        ..(*owner).clone()
                    });
                    self.netns_bound.insert((ns, p, local, remote), owner);
                }
                // Another namespace's socket whose namespace is unknown
                // can never be routed: dropped.
                (How::Netns | How::Listener, None) => {}
                _ => {
                    self.ebpf_sockets.insert((p, local, remote), owner);
                }
            }
        }
        self.retry_recent(table, now)
    }

    /// The owners of flows of `table` that have none yet and may have a
    /// local end: a flow none of whose ends is an address of this host
    /// (forwarded traffic) has no socket here, and is skipped with two
    /// lookups instead of the socket lookups. The safety net of the
    /// recent-only retries, as rare as full dumps.
    pub fn retry_all(&self, table: &FlowTable) -> Found {
        let local_known = !self.local_addrs.is_empty();
        table
            .unsettled()
            .filter(|f| !local_known || self.is_local(f.orig.src) || self.is_local(f.reply.src))
            .map(|f| (f.key(), self.lookup(f)))
            .filter(|(_, found)| found.owner.is_some() || found.direction.is_some())
            .collect()
    }

    /// The owners of the flows that appeared without one lately.
    fn retry_recent(&mut self, table: &FlowTable, now: Instant) -> Found {
        self.prune_recent_unowned(now);
        self.recent_unowned
            .iter()
            .filter_map(|(_, key)| {
                // A forwarded flow is settled for the table, but one whose
                // ends are behind a local namespace waits for its socket
                // (none yet, or its acceptor standing in: no peer).
                let flow = table.unsettled_flow(key).or_else(|| {
                    table
                        .get(*key)
                        .filter(|e| {
                            e.direction == Some(Direction::Forward) && (e.owner.is_none() || e.peer.is_none())
                        })
                        .map(|e| &e.flow)
                })?;
                let found = self.lookup(flow);
                (found.owner.is_some() || found.direction.is_some()).then_some((*key, found))
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

    /// What is known about a flow's local ends: the process at each (an
    /// exact eBPF socket first, then the /proc index; a listener only as
    /// the acceptor's last resort) and the direction.
    ///
    /// Before this namespace's addresses are known, both ends are tried and
    /// the first process found is the owner, with no direction.
    pub fn lookup(&self, flow: &Flow) -> Attributed {
        self.lookup_noting_stand_in(flow).0
    }

    /// [`Self::lookup`], and whether the owner is a forwarded flow's
    /// acceptor standing in for an initiator not found (yet).
    fn lookup_noting_stand_in(&self, flow: &Flow) -> (Attributed, bool) {
        let p = flow.proto;
        let [orig_end, reply_end] = local_ends(flow);
        let known = !self.local_addrs.is_empty();
        let initiator_local = !known || self.is_local(flow.orig.src);
        let acceptor_local = !known || self.is_local(flow.reply.src);
        let initiator = orig_end
            .filter(|_| initiator_local)
            .and_then(|(local, remote)| self.socket_at(p, local, remote));
        let acceptor = reply_end.filter(|_| acceptor_local).and_then(|(local, remote)| {
            self.socket_at(p, local, remote)
                .or_else(|| self.index.as_ref()?.listener_at(p, local))
        });
        if !known {
            let found = Attributed {
                owner: initiator.or(acceptor),
                peer: None,
                direction: None,
            };
            return (found, false);
        }
        let direction = Direction::of(initiator_local, acceptor_local);
        let mut stand_in = false;
        let (owner, peer) = match direction {
            Direction::Out => (initiator, None),
            Direction::In => (acceptor, None),
            Direction::Local => (initiator, acceptor),
            // Both ends in namespaces behind this host: the initiator owns
            // it, the acceptor is its peer (as for a local flow). Only the
            // acceptor (a published port's server, whose client is
            // outside; or an initiator not reported yet): the acceptor,
            // until an initiator is found (Attributed::improve).
            Direction::Forward => match self.netns_ends(flow) {
                [Some(i), a] => (Some(i), a),
                [None, a] => {
                    stand_in = a.is_some();
                    (a, None)
                }
            },
        };
        let found = Attributed {
            owner,
            peer,
            direction: Some(direction),
        };
        (found, stand_in)
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, NetnsRoutes> {
        self.netns_routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The processes at a forwarded flow's ends in namespaces behind this
    /// host: [initiator, acceptor]. The initiator is the socket at the
    /// original tuple's source (a client inside: masquerade), the acceptor
    /// the socket at the reply tuple's source (a server inside a published
    /// port: DNAT), each looked for only in the namespaces behind the
    /// interface the route to that address leaves through. A namespace not
    /// behind such an interface is never asked, whatever sockets it holds.
    fn netns_ends(&self, flow: &Flow) -> [Option<Arc<Owner>>; 2] {
        let now = Instant::now();
        let mut routes = self.routes();
        let mut ends = if routes.has_members() {
            self.netns_ends_known(&mut routes, flow, now)
        } else {
            [None, None]
        };
        // An end routed to a namespace none of the known ones owns: maybe
        // one that no socket event named (sockets older than flowtop, or
        // no eBPF at all). Look at every process's namespace (rarely, see
        // NetnsRoutes::discover) and ask again when that found one.
        let [orig_end, reply_end] = local_ends(flow);
        let wanted = [
            (flow.orig.src, orig_end.is_some() && ends[0].is_none()),
            (flow.reply.src, reply_end.is_some() && ends[1].is_none()),
        ]
        .into_iter()
        .any(|(src, unowned)| unowned && routes.leads_to_a_namespace(normalise(src), now));
        if wanted && routes.discover(now) {
            ends = self.netns_ends_known(&mut routes, flow, now);
        }
        ends
    }

    /// [`Self::netns_ends`] among the namespaces already known.
    fn netns_ends_known(
        &self,
        routes: &mut NetnsRoutes,
        flow: &Flow,
        now: Instant,
    ) -> [Option<Arc<Owner>>; 2] {
        let p = flow.proto;
        let [orig_end, reply_end] = local_ends(flow);
        [(flow.orig.src, orig_end), (flow.reply.src, reply_end)].map(|(src, end)| {
            let (local, remote) = end?;
            let behind = routes.behind(normalise(src), now).to_vec();
            // Sockets eBPF saw first (exact), then a /proc scan of the namespace.
            let any_remote = SocketAddr::new(unspecified_like(remote.ip()), 0);
            for &ns in &behind {
                for key in [(ns, p, local, remote), (ns, p, local, any_remote)] {
                    if let Some(o) = self.netns_sockets.get(&key) {
                        return Some(o.clone());
                    }
                }
            }
            let found = behind.iter().find_map(|&ns| {
                let pid = routes.member(ns)?;
                let index = self.netns_scan(ns, pid, local.ip(), now);
                let found = index
                    .socket_at(p, local, remote)
                    .or_else(|| index.listener_at(p, local));
                found.map(|o| {
                    Arc::new(Owner {
                        how: How::Netns,
                        netns: Some(ns),
                        ..(*o).clone()
                    })
                })
            });
            // Last, a socket bound there to the end (its address or any,
            // IPv4 or dual-stack IPv6), from its bind(2) event: a listener,
            // what still names the server of a published port whose process
            // was gone before the scan could see it.
            found.or_else(|| {
                let port = local.port();
                let v4_any = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port);
                let v6_any = SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), port);
                behind.iter().find_map(|&ns| {
                    [local, v4_any, v6_any].iter().find_map(|&at| {
                        let none = SocketAddr::new(unspecified_like(at.ip()), 0);
                        self.netns_bound.get(&(ns, p, at, none)).cloned()
                    })
                })
            })
        })
    }

    /// The sockets of namespace `ns` (through `/proc/PID/net` of its member
    /// `pid`), with `addr` as its address for wildcard-bound sockets.
    fn netns_scan(&self, ns: u64, pid: u32, addr: IpAddr, now: Instant) -> Arc<SocketIndex> {
        let mut scans = self.netns_scans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((t, idx)) = scans.get(&(ns, addr)) {
            if now.duration_since(*t) < super::netns::REFRESH {
                return idx.clone();
            }
        }
        let root = std::path::Path::new("/proc");
        let net = root.join(pid.to_string()).join("net");
        // The member may have left the namespace: only its own namespace's
        // tables are read.
        let scan = if super::netns::process_in(pid, ns) {
            super::procfs::scan_net(root, &net)
        } else {
            super::procfs::ProcScan::default()
        };
        let idx = Arc::new(SocketIndex::from_procfs(&scan, [addr]));
        if scans.len() >= NETNS_SCANS_MAX {
            scans.clear();
        }
        scans.insert((ns, addr), (now, idx.clone()));
        idx
    }

    /// Whether a forwarded flow has an end behind a namespace this host
    /// routes to (and so may still get its owner).
    fn behind_a_namespace(&self, flow: &Flow) -> bool {
        let now = Instant::now();
        let mut routes = self.routes();
        routes.leads_to_a_namespace(normalise(flow.orig.src), now)
            || routes.leads_to_a_namespace(normalise(flow.reply.src), now)
    }

    /// The process holding the socket at one end of a flow.
    fn socket_at(&self, p: u8, local: SocketAddr, remote: SocketAddr) -> Option<Arc<Owner>> {
        if !self.ebpf_sockets.is_empty() {
            // Exact ends first. An unconnected socket (sendto) reports no
            // remote end, and an unbound one no local address: those match
            // only when the flow's end is an address of this host, so
            // forwarded traffic never borrows a local socket's port.
            let any_remote = SocketAddr::new(unspecified_like(remote.ip()), 0);
            let any_local = SocketAddr::new(unspecified_like(local.ip()), local.port());
            let exact = [(p, local, remote), (p, local, any_remote)];
            let wildcard = [(p, any_local, remote), (p, any_local, any_remote)];
            let local_ok = self.is_local(local.ip());
            for key in exact.iter().chain(wildcard.iter().filter(|_| local_ok)) {
                if let Some(o) = self.ebpf_sockets.get(key) {
                    return Some(o.clone());
                }
            }
        }
        self.index.as_ref()?.socket_at(p, local, remote)
    }
}

/// Asked by the table when a flow enters it; a flow whose attribution is
/// not settled is remembered for the retries.
impl OwnerLookup for OwnerJoin {
    fn attribute(&mut self, flow: &Flow, now: Instant) -> Attributed {
        let (found, stand_in) = self.lookup_noting_stand_in(flow);
        let waits_for_netns = (found.owner.is_none() || stand_in)
            && found.direction == Some(Direction::Forward)
            && self.behind_a_namespace(flow);
        if !found.settled() || waits_for_netns {
            self.note_unowned(flow.key(), now);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::procfs::ProcScan;
    use crate::attribution::How;
    use crate::flow::model::proto;
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
        Flow::test_tcp(id, a, b, 40000 + id as u16)
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

    /// A loopback connection: the client (initiator) owns it, the process
    /// holding the accepted socket is its peer. The NEW event comes before
    /// the client's socket event and before any /proc scan saw the
    /// accepted socket: the listener is then only a provisional peer, and
    /// both ends are filled in as their sockets become known.
    #[test]
    fn a_local_flow_gets_its_initiator_as_owner_and_the_holder_of_the_accepted_socket_as_peer() {
        let now = Instant::now();
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut f = hflow(7);
        f.orig.src = lo;
        f.orig.dst = lo;
        f.reply.src = lo;
        f.reply.dst = lo;
        f.orig.dport = Some(8000);
        f.reply.sport = Some(8000);
        let client = SocketAddr::new(lo, f.orig.sport.expect("port"));
        let server = SocketAddr::new(lo, 8000);
        let mut t = FlowTable::new(TableConfig::default(), now);
        let mut j = OwnerJoin::new(now);
        let mut listening = SocketIndex::from_procfs(&ProcScan::default(), [lo]);
        listening.insert(
            proto::TCP,
            server,
            SocketAddr::new(unspecified_like(lo), 0),
            true,
            owner(100, "server", None),
        );
        let found = j.take_index(Arc::new(listening), &t, now);
        t.set_owners(found, &mut |_, _| {});
        let mut log = Log::new();
        t.apply_event(Change::Seen, f.clone(), now, &mut j, &mut rec(&mut log));
        let e = t.get(f.key()).expect("entry");
        assert_eq!(e.direction, Some(Direction::Local));
        assert!(e.owner.is_none(), "the client's socket is not known yet");
        assert_eq!(
            e.peer.as_ref().map(|o| (o.pid, o.how)),
            Some((100, How::Listener))
        );

        // The client's socket event: it owns the flow.
        let found = j.take_sockets(
            vec![(proto::TCP, client, server, owner(200, "client", None))],
            &t,
            now,
        );
        t.set_owners(found, &mut rec(&mut log));
        let e = t.get(f.key()).expect("entry");
        assert_eq!(e.owner.as_ref().map(|o| o.pid), Some(200));
        assert_eq!(e.peer.as_ref().map(|o| o.pid), Some(100), "still the listener");

        // A /proc scan finds the forked child holding the accepted socket.
        let mut scanned = SocketIndex::from_procfs(&ProcScan::default(), [lo]);
        scanned.insert(
            proto::TCP,
            server,
            SocketAddr::new(unspecified_like(lo), 0),
            true,
            owner(100, "server", None),
        );
        scanned.insert(proto::TCP, server, client, false, owner(101, "server", None));
        let found = j.take_index(Arc::new(scanned), &t, now);
        t.set_owners(found, &mut rec(&mut log));
        let e = t.get(f.key()).expect("entry");
        assert_eq!(e.owner.as_ref().map(|o| o.pid), Some(200));
        assert_eq!(e.peer.as_ref().map(|o| (o.pid, o.how)), Some((101, How::Procfs)));
        assert!(e.settled());
        assert_eq!(
            log,
            vec![
                (EventKind::New, 7),
                (EventKind::Update, 7),
                (EventKind::Update, 7)
            ]
        );
    }

    /// Which ends are this host's decides the direction and whose process
    /// owns the flow.
    #[test]
    fn direction_follows_which_ends_are_local() {
        let now = Instant::now();
        let (a, b) = (
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        );
        let f = hflow(1); // a:40001 -> b:80
        let end = |ip: IpAddr, port: u16| SocketAddr::new(ip, port);
        let mut idx = SocketIndex::default();
        idx.insert(
            proto::TCP,
            end(a, 40001),
            end(b, 80),
            false,
            owner(1, "client", None),
        );
        idx.insert(
            proto::TCP,
            end(b, 80),
            end(a, 40001),
            false,
            owner(2, "server", None),
        );
        let idx = Arc::new(idx);
        let join_on = |locals: &[IpAddr]| {
            let mut j = OwnerJoin::with_index(idx.clone(), now);
            j.local_addrs = locals.iter().copied().collect();
            j
        };
        let pids = |x: Attributed| (x.direction, x.owner.map(|o| o.pid), x.peer.map(|o| o.pid));
        assert_eq!(
            pids(join_on(&[a]).lookup(&f)),
            (Some(Direction::Out), Some(1), None)
        );
        assert_eq!(
            pids(join_on(&[b]).lookup(&f)),
            (Some(Direction::In), Some(2), None)
        );
        assert_eq!(
            pids(join_on(&[a, b]).lookup(&f)),
            (Some(Direction::Local), Some(1), Some(2))
        );
        let router = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(
            pids(join_on(&[router]).lookup(&f)),
            (Some(Direction::Forward), None, None)
        );
        assert!(
            join_on(&[router]).lookup(&f).settled(),
            "a forwarded flow has nothing to find"
        );
    }
}
