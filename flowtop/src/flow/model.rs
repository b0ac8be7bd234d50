//! The flow model: what one conntrack entry is, independent of how it was
//! read (netlink) or shown (JSON, text, screen).

use std::net::IpAddr;

/// Address family of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// IP protocol numbers flowtop names.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const DCCP: u8 = 33;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
    pub const UDPLITE: u8 = 136;

    /// The protocol's name, or `None` for protocols shown by number.
    pub fn name(p: u8) -> Option<&'static str> {
        Some(match p {
            TCP => "tcp",
            UDP => "udp",
            UDPLITE => "udplite",
            SCTP => "sctp",
            DCCP => "dccp",
            ICMP => "icmp",
            ICMPV6 => "icmpv6",
            _ => return None,
        })
    }

    /// Whether the protocol's tuple carries ports.
    pub fn has_ports(p: u8) -> bool {
        matches!(p, TCP | UDP | UDPLITE | SCTP | DCCP)
    }
}

/// The ICMP identity of a tuple (ICMP has no ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Icmp {
    pub icmp_type: u8,
    pub code: u8,
    pub id: u16,
}

/// One direction of a connection as conntrack sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub icmp: Option<Icmp>,
}

/// Packet and byte counters of both directions (present only when
/// `nf_conntrack_acct` was on when the entry was created).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub orig_packets: u64,
    pub orig_bytes: u64,
    pub reply_packets: u64,
    pub reply_bytes: u64,
}

/// A protocol state as the kernel numbers it, per protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoState {
    Tcp(u8),
    Sctp(u8),
    Dccp(u8),
}

impl ProtoState {
    /// The state's name as conntrack(8) prints it.
    pub fn name(self) -> &'static str {
        match self {
            ProtoState::Tcp(s) => match s {
                0 => "NONE",
                1 => "SYN_SENT",
                2 => "SYN_RECV",
                3 => "ESTABLISHED",
                4 => "FIN_WAIT",
                5 => "CLOSE_WAIT",
                6 => "LAST_ACK",
                7 => "TIME_WAIT",
                8 => "CLOSE",
                9 => "SYN_SENT2",
                _ => "UNKNOWN",
            },
            ProtoState::Sctp(s) => match s {
                0 => "NONE",
                1 => "CLOSED",
                2 => "COOKIE_WAIT",
                3 => "COOKIE_ECHOED",
                4 => "ESTABLISHED",
                5 => "SHUTDOWN_SENT",
                6 => "SHUTDOWN_RECD",
                7 => "SHUTDOWN_ACK_SENT",
                8 => "HEARTBEAT_SENT",
                9 => "HEARTBEAT_ACKED",
                _ => "UNKNOWN",
            },
            ProtoState::Dccp(s) => match s {
                0 => "NONE",
                1 => "REQUEST",
                2 => "RESPOND",
                3 => "PARTOPEN",
                4 => "OPEN",
                5 => "CLOSEREQ",
                6 => "CLOSING",
                7 => "TIMEWAIT",
                8 => "IGNORE",
                9 => "INVALID",
                _ => "UNKNOWN",
            },
        }
    }
}

/// Conntrack status bits (`enum ip_conntrack_status`) by name.
pub const STATUS_FLAGS: &[(u32, &str)] = &[
    (1 << 0, "EXPECTED"),
    (1 << 1, "SEEN_REPLY"),
    (1 << 2, "ASSURED"),
    (1 << 3, "CONFIRMED"),
    (1 << 4, "SRC_NAT"),
    (1 << 5, "DST_NAT"),
    (1 << 6, "SEQ_ADJUST"),
    (1 << 7, "SRC_NAT_DONE"),
    (1 << 8, "DST_NAT_DONE"),
    (1 << 9, "DYING"),
    (1 << 10, "FIXED_TIMEOUT"),
    (1 << 11, "TEMPLATE"),
    (1 << 12, "UNTRACKED"),
    (1 << 13, "HELPER"),
    (1 << 14, "OFFLOAD"),
    (1 << 15, "HW_OFFLOAD"),
];

/// Names of the status bits set in `status`.
pub fn status_names(status: u32) -> impl Iterator<Item = &'static str> {
    STATUS_FLAGS
        .iter()
        .filter(move |(bit, _)| status & bit != 0)
        .map(|(_, name)| *name)
}

/// A conntrack timeout in seconds, stored plus one so that `Option<Timeout>`
/// takes 4 bytes, not 8 (one per flow: a million flows on a router). The
/// largest value, `u32::MAX` seconds, reads back one second shorter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeout(std::num::NonZeroU32);

impl Timeout {
    pub fn from_secs(secs: u32) -> Timeout {
        Timeout(std::num::NonZeroU32::MIN.saturating_add(secs))
    }

    pub fn secs(self) -> u32 {
        self.0.get() - 1
    }
}

/// One conntrack entry as decoded from the kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    /// Conntrack id: unique among live entries, the table's key.
    pub id: u32,
    pub family: Family,
    pub proto: u8,
    pub state: Option<ProtoState>,
    pub orig: Tuple,
    pub reply: Tuple,
    pub status: u32,
    pub mark: u32,
    pub zone: u16,
    /// Seconds until the kernel expires the entry, as of the reading.
    pub timeout: Option<Timeout>,
    pub counters: Option<Counters>,
    /// Creation time, nanoseconds since the Unix epoch
    /// (`nf_conntrack_timestamp`; the kernel's 0 means none). Non-zero: the
    /// niche keeps the field at 8 bytes, and a flow at 232 (one per flow).
    pub start_ns: Option<std::num::NonZeroU64>,
}

/// What identifies a live conntrack entry: its id together with a hash of
/// its original tuple. The id alone is a 32-bit hash of the kernel's object
/// and collides on large tables; the original tuple is unique among live
/// entries and never changes, and events and dumps both carry it.
/// What names a conntrack entry to the kernel (a GET request): family,
/// protocol, zone and original tuple. A quarter of a [`Flow`], so that a
/// hot refresh of many flows does not copy whole flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupKey {
    pub family: Family,
    pub proto: u8,
    pub zone: u16,
    pub orig: Tuple,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub id: u32,
    tuple_hash: u64,
}

impl Flow {
    /// The table key of this entry.
    pub fn key(&self) -> FlowKey {
        use std::hash::BuildHasher;
        // A fixed seed: the hash must be the same for every reading of a
        // flow. foldhash rather than std's SipHash because the table asks
        // for the key of every reading and on every lookup (it does not
        // store it); bucket choice is not at stake here (the table's index
        // hashes the key again with a random seed), only equality.
        const TUPLE_HASH: foldhash::quality::FixedState =
            foldhash::quality::FixedState::with_seed(0x0066_6c6f_7774_6f70);
        FlowKey {
            id: self.id,
            tuple_hash: TUPLE_HASH.hash_one((self.proto, self.zone, &self.orig)),
        }
    }

    /// The creation time in nanoseconds since the epoch, when known.
    pub fn start(&self) -> Option<u64> {
        self.start_ns.map(std::num::NonZeroU64::get)
    }

    pub fn lookup_key(&self) -> LookupKey {
        LookupKey {
            family: self.family,
            proto: self.proto,
            zone: self.zone,
            orig: self.orig,
        }
    }

    pub fn status_names(&self) -> impl Iterator<Item = &'static str> {
        status_names(self.status)
    }

    /// Whether the entry's visible properties differ (what makes a re-dump
    /// worth an `update` event).
    pub fn differs_from(&self, other: &Flow) -> bool {
        self.state != other.state
            || self.counters != other.counters
            || self.status != other.status
            || self.mark != other.mark
            || self.orig != other.orig
            || self.reply != other.reply
    }
}

/// How an owner was found (the `attribution` JSON field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// From the eBPF programs.
    Ebpf,
    /// An accepted connection matched to its listening socket.
    Listener,
    /// From a /proc scan.
    Procfs,
    /// A forwarded flow's socket in a network namespace behind this host
    /// (a container's): issue 15.
    Netns,
}

impl How {
    pub fn name(self) -> &'static str {
        match self {
            How::Ebpf => "ebpf",
            How::Listener => "listener",
            How::Procfs => "procfs",
            How::Netns => "netns",
        }
    }
}

/// The process that owns a flow's local socket. `comm`, `exe`, `cmdline`
/// and `parent_comm` are stored raw (any bytes a process chose); outputs
/// escape or sanitise them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub comm: String,
    pub exe: Option<String>,
    pub uid: u32,
    pub how: How,
    /// The arguments, separated by single spaces (at most the first 256
    /// bytes of the kernel's NUL-separated list).
    pub cmdline: Option<String>,
    /// The parent process.
    pub ppid: Option<u32>,
    /// The parent process's name.
    pub parent_comm: Option<String>,
    /// SHA-256 of the executable, filled in by a background thread.
    pub exe_sha256: ExeDigest,
    /// The cgroup v2 id of the task that created the socket (eBPF only):
    /// what `flowtop run` selects its command's flows by.
    pub cgroup_id: Option<u64>,
    /// Its cgroup and what that says: unit, container, app (issue 15).
    pub identity: Option<std::sync::Arc<crate::attribution::identity::Identity>>,
    /// Its network namespace's inode (`/proc/PID/ns/net`).
    pub netns: Option<u64>,
}

impl Default for Owner {
    fn default() -> Self {
        Owner {
            pid: 0,
            comm: String::new(),
            exe: None,
            uid: 0,
            how: How::Procfs,
            cmdline: None,
            ppid: None,
            parent_comm: None,
            exe_sha256: ExeDigest::default(),
            cgroup_id: None,
            identity: None,
            netns: None,
        }
    }
}

/// A hex SHA-256 digest that is null until known: a cell shared between the
/// owners of one binary and the thread that hashes it off the hot path.
/// Compared and printed by its current value.
#[derive(Clone, Default)]
pub struct ExeDigest(std::sync::Arc<std::sync::OnceLock<String>>);

impl ExeDigest {
    /// The digest, once computed.
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }

    /// Fills the cell (false if it was already filled).
    pub fn set(&self, hex: String) -> bool {
        self.0.set(hex).is_ok()
    }

    /// Whether both name the same cell (not just the same value).
    pub fn shares_cell_with(&self, other: &ExeDigest) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl PartialEq for ExeDigest {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for ExeDigest {}

impl std::fmt::Debug for ExeDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// Who started a flow, as seen from this host (the `direction` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// This host initiated it (the original tuple's source is local).
    Out,
    /// A remote end initiated it to a local socket.
    In,
    /// Both ends are sockets of this host (loopback, or its own addresses).
    Local,
    /// Neither end is here: traffic this host forwards.
    Forward,
}

impl Direction {
    /// From which ends are local: the original tuple's source (the
    /// initiator) and the reply tuple's source (the acceptor, after NAT).
    pub fn of(initiator_local: bool, acceptor_local: bool) -> Direction {
        match (initiator_local, acceptor_local) {
            (true, true) => Direction::Local,
            (true, false) => Direction::Out,
            (false, true) => Direction::In,
            (false, false) => Direction::Forward,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Direction::Out => "out",
            Direction::In => "in",
            Direction::Local => "local",
            Direction::Forward => "forward",
        }
    }
}

/// What attribution says about a flow: the process it belongs to, the
/// process at its other end when both ends are local, and its direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributed {
    /// The initiator's process for outgoing and local flows, the acceptor's
    /// for incoming ones.
    pub owner: Option<std::sync::Arc<Owner>>,
    /// The acceptor's process of a local flow (both ends on this host).
    pub peer: Option<std::sync::Arc<Owner>>,
    pub direction: Option<Direction>,
}

impl Attributed {
    /// Whether nothing more can be learnt: every local end has a process
    /// that holds the socket (an accepted connection matched only to its
    /// listener is provisional: the holder may still be found), or the flow
    /// has no local end at all.
    pub fn settled(&self) -> bool {
        settled(self.owner.as_deref(), self.peer.as_deref(), self.direction)
    }

    /// `self` with what `newer` knows better: a process replaces none or a
    /// listener-only match; one that holds the socket sticks (so a process
    /// that exited stays known). Whether anything changed.
    pub fn improve(&mut self, newer: Attributed) -> bool {
        fn better(old: &mut Option<std::sync::Arc<Owner>>, new: Option<std::sync::Arc<Owner>>) -> bool {
            let replace = match (&*old, &new) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(o), Some(n)) => o.how == How::Listener && (n.how != How::Listener || o != n),
            };
            if replace {
                *old = new;
            }
            replace
        }
        // A forwarded flow between two namespaces behind this host whose
        // acceptor stood in as its owner until the initiator's socket was
        // known (its event comes up to 100 ms after the flow): the
        // initiator takes over and the acceptor becomes its peer.
        let same = |a: &Owner, b: &Owner| a.pid == b.pid && a.netns == b.netns;
        if self.direction == Some(Direction::Forward) && self.peer.is_none() {
            if let (Some(stand_in), Some(initiator), Some(acceptor)) =
                (&self.owner, &newer.owner, &newer.peer)
            {
                if same(stand_in, acceptor) && !same(stand_in, initiator) {
                    self.owner = newer.owner;
                    self.peer = newer.peer;
                    return true;
                }
            }
        }
        let mut changed = false;
        if self.direction.is_none() && newer.direction.is_some() {
            self.direction = newer.direction;
            changed = true;
        }
        changed |= better(&mut self.owner, newer.owner);
        changed |= better(&mut self.peer, newer.peer);
        changed
    }
}

/// [`Attributed::settled`] for an attribution kept in parts (a table entry).
pub fn settled(owner: Option<&Owner>, peer: Option<&Owner>, direction: Option<Direction>) -> bool {
    let held = |o: Option<&Owner>| o.is_some_and(|o| o.how != How::Listener);
    match direction {
        Some(Direction::Forward) => true,
        Some(Direction::Local) => held(owner) && held(peer),
        _ => held(owner),
    }
}

/// [`Attributed`] borrowed, for writing one line without touching the
/// reference counts (the outputs' hot path).
#[derive(Debug, Clone, Copy, Default)]
pub struct Who<'a> {
    pub owner: Option<&'a Owner>,
    pub peer: Option<&'a Owner>,
    pub direction: Option<Direction>,
    /// The name the program asked for (`dst_name`), when known.
    pub name: Option<&'a crate::names::tracker::FlowName>,
}

impl Attributed {
    pub fn who(&self) -> Who<'_> {
        Who {
            owner: self.owner.as_deref(),
            peer: self.peer.as_deref(),
            direction: self.direction,
            name: None,
        }
    }
}

#[cfg(test)]
impl Flow {
    /// A test fixture: an established TCP flow from `src:sport` to
    /// `dst:80` without NAT (the reply mirrors the original), with a 300 s
    /// timeout and zero counters.
    pub(crate) fn test_tcp(id: u32, src: IpAddr, dst: IpAddr, sport: u16) -> Flow {
        Flow {
            id,
            family: if src.is_ipv4() { Family::Ipv4 } else { Family::Ipv6 },
            proto: proto::TCP,
            state: Some(ProtoState::Tcp(3)),
            orig: Tuple {
                src,
                dst,
                sport: Some(sport),
                dport: Some(80),
                icmp: None,
            },
            reply: Tuple {
                src: dst,
                dst: src,
                sport: Some(80),
                dport: Some(sport),
                icmp: None,
            },
            status: 0b1110,
            mark: 0,
            zone: 0,
            timeout: Some(Timeout::from_secs(300)),
            counters: Some(Counters::default()),
            start_ns: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn netns_owner(pid: u32, ns: u64) -> Option<Arc<Owner>> {
        Some(Arc::new(Owner {
            pid,
            how: How::Netns,
            netns: Some(ns),
            ..Owner::default()
        }))
    }

    fn forward(owner: Option<Arc<Owner>>, peer: Option<Arc<Owner>>) -> Attributed {
        Attributed {
            owner,
            peer,
            direction: Some(Direction::Forward),
        }
    }

    /// A forwarded flow's acceptor stands in as owner until the initiator
    /// is found; then the initiator owns it and the acceptor is its peer.
    /// Nothing else replaces an owner that holds its socket.
    #[test]
    fn an_acceptor_standing_in_gives_way_to_the_initiator_once() {
        let (server, client, other) = (netns_owner(10, 1), netns_owner(20, 2), netns_owner(30, 2));
        let mut a = forward(server.clone(), None);
        // The same answer again: no change.
        assert!(!a.improve(forward(server.clone(), None)));
        // The initiator found, with the stand-in as its acceptor.
        assert!(a.improve(forward(client.clone(), server.clone())));
        assert_eq!(
            (a.owner.as_ref(), a.peer.as_ref()),
            (client.as_ref(), server.as_ref())
        );
        // Settled now: another pair does not take over.
        assert!(!a.improve(forward(other.clone(), server.clone())));
        assert_eq!(a.owner, client);

        // Not a forwarded flow: an owner that holds its socket sticks.
        let mut out = Attributed {
            owner: server.clone(),
            peer: None,
            direction: Some(Direction::Out),
        };
        out.improve(Attributed {
            owner: client,
            peer: server.clone(),
            direction: Some(Direction::Out),
        });
        assert_eq!(out.owner, server);
    }
}
