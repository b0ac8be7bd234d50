//! Joins the eBPF socket events into socket owners.
//!
//! `CREATED` events come from `socket(2)` in the creating process (so even a
//! process that exits right away is known); `TUPLE` events come from the
//! first packet a socket sends to an address. Both carry the socket cookie,
//! which joins them. Only sockets of flowtop's own network namespace (by
//! netns cookie) are kept. Both maps are bounded: two generations each, the
//! older dropped when the newer fills, so churn cannot grow them.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use flowtop_common::{SockEvent, SOCK_EVENT_BOUND, SOCK_EVENT_CREATED, SOCK_EVENT_KPROBE, SOCK_EVENT_TUPLE};

use super::index::{normalise, unspecified_like};
use super::processes::{ProcessBook, ProcessInfo};
use super::{exe_hash, identity, How, Owner};
use crate::ebpf::ProcEvent;

type Fast = foldhash::fast::RandomState;

/// A map that keeps at most `2 * half` entries: the recent ones.
#[derive(Debug)]
pub struct Generational<K, V> {
    current: HashMap<K, V, Fast>,
    previous: HashMap<K, V, Fast>,
    half: usize,
}

impl<K: Hash + Eq, V: Clone> Generational<K, V> {
    pub fn new(half: usize) -> Self {
        Generational {
            current: HashMap::default(),
            previous: HashMap::default(),
            half: half.max(1),
        }
    }

    pub fn insert(&mut self, k: K, v: V) {
        if self.current.len() >= self.half {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(k, v);
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.current.get(k).or_else(|| self.previous.get(k))
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A local socket and its owner, ready for the socket index.
pub type OwnedSocket = (u8, SocketAddr, SocketAddr, Arc<Owner>);

/// Turns raw process names (16 bytes, NUL padded) into a string, raw bytes
/// kept (lossy only for invalid UTF-8).
fn comm_of(raw: &[u8; 16]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

fn addr_of(family: u16, raw: &[u8; 16]) -> Option<IpAddr> {
    match family {
        2 => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        10 => Some(normalise(IpAddr::V6(Ipv6Addr::from(*raw)))),
        _ => None,
    }
}

/// What /proc still tells about an event's process (None once it exited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcInfo {
    pub exe: Option<String>,
    pub leader_comm: Option<String>,
}

/// Reads [`ProcInfo`] for `pid` from /proc.
pub fn proc_info(pid: u32) -> ProcInfo {
    ProcInfo {
        exe: std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.display().to_string()),
        leader_comm: std::fs::read(format!("/proc/{pid}/comm"))
            .ok()
            .map(|b| String::from_utf8_lossy(b.strip_suffix(b"\n").unwrap_or(&b)).into_owned()),
    }
}

/// The owner of an event's socket: the process as the book recorded it
/// when it started (exe, arguments, parent: known even once it exited),
/// /proc for what the book lacks.
fn owner_of(ev: &SockEvent, info: ProcInfo, process: Option<&ProcessInfo>, who: Who) -> Owner {
    let exe = process.and_then(|p| p.exe.clone()).or(info.exe);
    let hash = || exe_hash::digest(Some(ev.tgid), exe.as_deref());
    let exe_sha256 = match process {
        // One request per process, not per socket.
        Some(p) => p.digest.get_or_init(hash).clone(),
        None => hash(),
    };
    Owner {
        pid: ev.tgid,
        // The process's own name when it is still there to ask; else the
        // name it had at exec (or fork), which the book recorded; else the
        // creating thread's, which is the process's for single-threaded
        // ones but not for a socket an io_uring worker made (`iou-wrk-PID`).
        comm: info
            .leader_comm
            .or_else(|| process.and_then(|p| p.comm.clone()))
            .unwrap_or_else(|| comm_of(&ev.comm)),
        exe,
        uid: ev.uid,
        how: How::Ebpf,
        cmdline: process.and_then(|p| p.cmdline.clone()),
        ppid: process.and_then(|p| p.ppid),
        parent_comm: process.and_then(|p| p.parent_comm.clone()),
        exe_sha256,
        cgroup_id: (ev.cgroup_id != 0).then_some(ev.cgroup_id),
        identity: who.identity,
        netns: who.netns,
    }
}

/// What [`identity`] tells of an event's process.
#[derive(Default)]
struct Who {
    identity: Option<Arc<identity::Identity>>,
    netns: Option<u64>,
}

/// Sockets of other network namespaces remembered (two generations of
/// half this): the candidates for forwarded flows of namespaces behind
/// this host (issue 15).
const FOREIGN_HALF: usize = 1 << 15;

/// Processes the book remembers: two generations of half this. A process
/// that fell out is read from /proc again while it lives.
const PROCESSES: usize = 1 << 14;

/// The join of CREATED and TUPLE events.
#[derive(Debug)]
pub struct EbpfOwners {
    netns_cookie: Option<u64>,
    created: Generational<u64, Arc<Owner>>,
    /// Sockets of other namespaces by cookie; their owners are
    /// `How::Netns` with the namespace's inode, and only ever reach the
    /// join's per-namespace store (never this namespace's sockets).
    foreign: Generational<u64, Arc<Owner>>,
    /// Network namespace inodes by netns cookie (read from the first
    /// process seen in each).
    netns_inodes: Generational<u64, u64>,
    /// This namespace's inode.
    own_inode: Option<u64>,
    /// The last process of each other namespace the join was told of.
    members_noted: Generational<u64, u32>,
    /// Identities by cgroup id.
    pub identities: identity::Identities,
    proc_root: std::path::PathBuf,
    /// What each process is, from the exec/fork records (and /proc).
    pub processes: ProcessBook,
    /// Tuples that arrived before their CREATED event (rare: the two come
    /// through one ring buffer in order, but a socket made before flowtop
    /// started has no CREATED at all).
    pub unmatched: u64,
}

impl EbpfOwners {
    /// `netns_cookie`: flowtop's own namespace; `None` accepts every namespace
    /// (only when the kernel has no netns cookies).
    pub fn new(netns_cookie: Option<u64>, capacity: usize) -> Self {
        EbpfOwners {
            netns_cookie,
            created: Generational::new(capacity / 2),
            foreign: Generational::new(FOREIGN_HALF),
            netns_inodes: Generational::new(1 << 10),
            members_noted: Generational::new(1 << 10),
            own_inode: std::fs::read_link("/proc/self/ns/net")
                .ok()
                .and_then(|l| identity::netns_inode(&l.to_string_lossy())),
            identities: identity::Identities::host(),
            proc_root: "/proc".into(),
            processes: ProcessBook::new(PROCESSES),
            unmatched: 0,
        }
    }

    /// Records an exec or a fork (before the socket events read after it).
    pub fn apply_process(&mut self, ev: &ProcEvent) {
        match ev {
            ProcEvent::Exec(e) => self.processes.exec(e),
            ProcEvent::Fork(f) => self.processes.fork(f),
        }
    }

    /// Whether an event's namespace is flowtop's (0: the kernel did not say).
    fn ours(&self, ev: &SockEvent) -> bool {
        self.netns_cookie
            .is_none_or(|own| ev.netns_cookie == 0 || ev.netns_cookie == own)
    }

    /// The identity and namespace of an event's process: by cgroup id
    /// (cached), and this namespace's inode or the one its netns cookie
    /// maps to (read from /proc/PID/ns/net at first sight of the cookie).
    fn who(&mut self, ev: &SockEvent, ours: bool) -> Who {
        let identity = self.identities.of_event(ev.tgid, ev.cgroup_id, &self.proc_root);
        let netns = if ours {
            self.own_inode
        } else if let Some(&i) = self.netns_inodes.get(&ev.netns_cookie) {
            Some(i)
        } else if ev.netns_inode != 0 {
            // The kernel said (read at socket(2)): right even when the
            // process is gone by now, as short-lived ones are.
            let i = u64::from(ev.netns_inode);
            self.netns_inodes.insert(ev.netns_cookie, i);
            Some(i)
        } else {
            let dir = self.proc_root.join(ev.tgid.to_string());
            let inode = identity::read_proc(&dir).1;
            if let Some(i) = inode {
                self.netns_inodes.insert(ev.netns_cookie, i);
            }
            inode
        };
        Who { identity, netns }
    }

    /// The owner of the socket with this cookie, when its CREATED event (of
    /// flowtop's namespace) is remembered: for name captures, which carry
    /// the cookie of their local socket.
    pub fn owner_of_cookie(&self, cookie: u64) -> Option<Arc<Owner>> {
        self.created.get(&cookie).cloned()
    }

    /// Applies one event; a TUPLE joined to its owner, or a kprobe event
    /// (owner and tuple in one), is returned; so is a CREATED event of a
    /// process of another namespace not noted before, as a membership note
    /// (`How::Netns`, protocol 0, unspecified ends: it matches no flow).
    /// `proc_of(pid)` reads what the kernel event lacks while the process
    /// lives: its executable path and its main thread's command name (the
    /// event carries the name of the thread that made the socket).
    pub fn apply(&mut self, ev: &SockEvent, proc_of: impl Fn(u32) -> ProcInfo) -> Option<OwnedSocket> {
        match ev.kind {
            SOCK_EVENT_KPROBE => {
                if !self.ours(ev) {
                    return None;
                }
                let process = self.processes.get_or_read(ev.tgid);
                let who = self.who(ev, true);
                let owner = Arc::new(owner_of(ev, proc_of(ev.tgid), process.as_deref(), who));
                let local = SocketAddr::new(addr_of(ev.family, &ev.local_addr)?, ev.local_port);
                let remote = SocketAddr::new(addr_of(ev.family, &ev.remote_addr)?, ev.remote_port);
                Some((u8::try_from(ev.protocol).ok()?, local, remote, owner))
            }
            SOCK_EVENT_CREATED => {
                let ours = self.ours(ev);
                let who = self.who(ev, ours);
                if !ours && who.netns.is_none() {
                    // Its namespace is unknown: it could never be routed.
                    return None;
                }
                let process = self.processes.get_or_read(ev.tgid);
                let mut owner = owner_of(ev, proc_of(ev.tgid), process.as_deref(), who);
                if ours {
                    self.created.insert(ev.cookie, Arc::new(owner));
                    return None;
                }
                owner.how = How::Netns;
                let owner = Arc::new(owner);
                self.foreign.insert(ev.cookie, owner.clone());
                // A process of that namespace, once per (namespace, pid):
                // a membership note (no ends) so that the join can find the
                // namespace and scan it, even when its sockets never send
                // (a server's listener behind a published port).
                let inode = owner.netns?;
                if self.members_noted.get(&inode) == Some(&ev.tgid) {
                    return None;
                }
                self.members_noted.insert(inode, ev.tgid);
                let none = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
                Some((0, none, none, owner))
            }
            // A bind of another namespace's socket: its bound end (the
            // wildcard, often), for the listener behind a published port.
            // This namespace's are left out: an accepted connection here is
            // its acceptor's (the /proc holder), the listener only a last
            // resort the /proc index already gives.
            // (Marked `How::Listener`: the join keeps it apart from the
            // sockets' own ends.)
            SOCK_EVENT_BOUND => {
                let owner = self.foreign.get(&ev.cookie)?;
                let owner = Arc::new(Owner {
                    how: How::Listener,
                    ..(**owner).clone()
                });
                let local = SocketAddr::new(addr_of(ev.family, &ev.local_addr)?, ev.local_port);
                let none = SocketAddr::new(unspecified_like(local.ip()), 0);
                Some((u8::try_from(ev.protocol).ok()?, local, none, owner))
            }
            SOCK_EVENT_TUPLE => {
                // Sockets of other namespaces are kept apart: their owners
                // say `How::Netns`, which the join stores per namespace.
                let Some(owner) = self
                    .created
                    .get(&ev.cookie)
                    .or_else(|| self.foreign.get(&ev.cookie))
                    .cloned()
                else {
                    self.unmatched += 1;
                    return None;
                };
                let local = SocketAddr::new(addr_of(ev.family, &ev.local_addr)?, ev.local_port);
                let remote = SocketAddr::new(addr_of(ev.family, &ev.remote_addr)?, ev.remote_port);
                Some((u8::try_from(ev.protocol).ok()?, local, remote, owner))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owners of namespace 7 whose book never reads this machine's /proc
    /// (a real process with a test's pid would lend it its name).
    fn owners(capacity: usize) -> EbpfOwners {
        let mut o = EbpfOwners::new(Some(7), capacity);
        o.processes = ProcessBook::with_proc_root(PROCESSES, "/nonexistent/proc");
        o.proc_root = "/nonexistent/proc".into();
        o.identities = identity::Identities::new(identity::StateRoots::default(), None);
        o
    }

    fn created(cookie: u64, netns: u64, pid: u32, comm: &str) -> SockEvent {
        let mut c = [0u8; 16];
        c[..comm.len()].copy_from_slice(comm.as_bytes());
        SockEvent {
            kind: SOCK_EVENT_CREATED,
            tgid: pid,
            uid: 1000,
            cookie,
            netns_cookie: netns,
            comm: c,
            ..zeroed()
        }
    }

    fn tuple(cookie: u64, local: [u8; 4], lport: u16, remote: [u8; 4], rport: u16) -> SockEvent {
        let mut la = [0u8; 16];
        la[..4].copy_from_slice(&local);
        let mut ra = [0u8; 16];
        ra[..4].copy_from_slice(&remote);
        SockEvent {
            kind: SOCK_EVENT_TUPLE,
            cookie,
            protocol: 6,
            family: 2,
            local_port: lport,
            remote_port: rport,
            local_addr: la,
            remote_addr: ra,
            ..zeroed()
        }
    }

    fn zeroed() -> SockEvent {
        SockEvent::default()
    }

    #[test]
    fn created_then_tuple_gives_an_owned_socket() {
        let mut o = owners(16);
        assert!(o
            .apply(&created(1, 7, 4242, "curl"), |_| ProcInfo::default())
            .is_none());
        let (p, l, r, owner) = o
            .apply(&tuple(1, [192, 0, 2, 1], 40000, [198, 51, 100, 7], 443), |_| {
                ProcInfo::default()
            })
            .expect("joined");
        assert_eq!(p, 6);
        assert_eq!(l, "192.0.2.1:40000".parse().expect("sa"));
        assert_eq!(r, "198.51.100.7:443".parse().expect("sa"));
        assert_eq!(
            (owner.pid, owner.comm.as_str(), owner.how),
            (4242, "curl", How::Ebpf)
        );
    }

    #[test]
    fn the_process_name_wins_over_the_thread_name_while_it_lives() {
        let mut o = owners(16);
        let info = |_| ProcInfo {
            exe: None,
            leader_comm: Some("firefox".into()),
        };
        o.apply(&created(1, 7, 4242, "Socket Thread"), info);
        let (_, _, _, owner) = o
            .apply(&tuple(1, [192, 0, 2, 1], 40000, [198, 51, 100, 7], 443), info)
            .expect("joined");
        assert_eq!(owner.comm, "firefox");
    }

    #[test]
    fn sockets_of_another_namespace_are_ignored() {
        let mut o = owners(16);
        o.apply(&created(1, 8, 4242, "curl"), |_| ProcInfo::default());
        assert!(o
            .apply(&tuple(1, [192, 0, 2, 1], 40000, [198, 51, 100, 7], 443), |_| {
                ProcInfo::default()
            })
            .is_none());
        assert_eq!(o.unmatched, 1);
    }

    /// A process of another namespace that is gone before its events are
    /// read (no /proc here): the namespace inode the kernel put in the
    /// CREATED event still places its socket.
    #[test]
    fn another_namespace_is_known_from_the_event_after_its_process_is_gone() {
        let mut o = owners(16);
        let mut ev = created(1, 8, 4242, "curl");
        ev.netns_inode = 4_026_532_999;
        let (p, _, _, note) = o.apply(&ev, |_| ProcInfo::default()).expect("membership note");
        assert_eq!((p, note.how, note.netns), (0, How::Netns, Some(4_026_532_999)));
        let (_, _, _, owner) = o
            .apply(&tuple(1, [198, 51, 100, 2], 40000, [192, 0, 2, 2], 443), |_| {
                ProcInfo::default()
            })
            .expect("owned");
        assert_eq!(
            (owner.pid, owner.how, owner.netns),
            (4242, How::Netns, Some(4_026_532_999))
        );
        assert_eq!(owner.comm, "curl");
        // Later sockets of that namespace (same cookie) need nothing else.
        let mut ev = created(2, 8, 4243, "wget");
        ev.netns_inode = 0;
        let (_, _, _, note) = o.apply(&ev, |_| ProcInfo::default()).expect("membership note");
        assert_eq!(note.netns, Some(4_026_532_999));
    }

    /// bind(2) events: another namespace's give its socket's bound end,
    /// marked for the join's store of listeners; this namespace's none.
    #[test]
    fn binds_of_another_namespace_are_kept_and_this_ones_are_not() {
        let mut o = owners(16);
        let mut ev = created(1, 8, 4242, "nginx");
        ev.netns_inode = 4_026_532_999;
        o.apply(&ev, |_| ProcInfo::default());
        let mut bound = tuple(1, [0, 0, 0, 0], 8080, [0, 0, 0, 0], 0);
        bound.kind = SOCK_EVENT_BOUND;
        let (p, local, remote, owner) = o.apply(&bound, |_| ProcInfo::default()).expect("kept");
        assert_eq!(
            (p, local.to_string(), remote.to_string()),
            (6, "0.0.0.0:8080".into(), "0.0.0.0:0".into())
        );
        assert_eq!(
            (owner.pid, owner.how, owner.netns),
            (4242, How::Listener, Some(4_026_532_999))
        );

        o.apply(&created(2, 7, 99, "local"), |_| ProcInfo::default());
        let mut own = tuple(2, [0, 0, 0, 0], 80, [0, 0, 0, 0], 0);
        own.kind = SOCK_EVENT_BOUND;
        assert!(o.apply(&own, |_| ProcInfo::default()).is_none());
    }

    #[test]
    fn a_kprobe_event_carries_owner_and_tuple_at_once() {
        let mut o = owners(16);
        let mut ev = tuple(0, [192, 0, 2, 1], 40000, [198, 51, 100, 7], 443);
        ev.kind = SOCK_EVENT_KPROBE;
        ev.tgid = 99;
        ev.comm[..4].copy_from_slice(b"wget");
        ev.netns_cookie = 7;
        let (_, _, _, owner) = o
            .apply(&ev, |_| ProcInfo {
                exe: Some("/usr/bin/wget".into()),
                leader_comm: None,
            })
            .expect("owned");
        assert_eq!(
            (owner.pid, owner.comm.as_str(), owner.exe.as_deref()),
            (99, "wget", Some("/usr/bin/wget"))
        );
        ev.netns_cookie = 8;
        assert!(
            o.apply(&ev, |_| ProcInfo::default()).is_none(),
            "another namespace"
        );
    }

    /// A process gone before its socket events are read: /proc tells
    /// nothing, the book its exec recorded tells everything.
    #[test]
    fn an_exited_process_is_described_by_its_exec_record() {
        let mut exec = flowtop_common::ExecEvent {
            kind: flowtop_common::PROC_EVENT_EXEC,
            tgid: 4_100_001,
            ppid: 4_100_000,
            uid: 1000,
            start_ns: 1,
            comm: [0; 16],
            parent_comm: [0; 16],
            path_len: 0,
            args_len: 0,
            path: [0; flowtop_common::EXEC_PATH_MAX],
            args: [0; flowtop_common::EXEC_ARGS_MAX],
        };
        let (path, args) = (b"/tmp/x/ft-exec-1", b"ft-exec-1\0-c\0pass\0");
        exec.path[..path.len()].copy_from_slice(path);
        exec.path_len = path.len() as u32;
        exec.args[..args.len()].copy_from_slice(args);
        exec.args_len = args.len() as u32;
        exec.comm[..9].copy_from_slice(b"ft-exec-1");
        exec.parent_comm[..4].copy_from_slice(b"bash");
        let mut o = owners(16);
        o.apply_process(&ProcEvent::Exec(Box::new(exec)));
        o.apply(&created(1, 7, 4_100_001, "ft-exec-1"), |_| ProcInfo::default());
        let (_, _, _, owner) = o
            .apply(&tuple(1, [192, 0, 2, 1], 40000, [198, 51, 100, 7], 443), |_| {
                ProcInfo::default()
            })
            .expect("joined");
        assert_eq!(owner.exe.as_deref(), Some("/tmp/x/ft-exec-1"));
        assert_eq!(owner.cmdline.as_deref(), Some("ft-exec-1 -c pass"));
        assert_eq!(
            (owner.ppid, owner.parent_comm.as_deref()),
            (Some(4_100_000), Some("bash"))
        );
    }

    #[test]
    fn memory_is_bounded_under_churn() {
        let mut o = owners(100);
        for cookie in 0..10_000 {
            o.apply(&created(cookie, 7, 1, "x"), |_| ProcInfo::default());
        }
        assert!(o.created.len() <= 100);
        // The most recent ones are still known.
        assert!(o
            .apply(&tuple(9_999, [192, 0, 2, 1], 1, [192, 0, 2, 2], 2), |_| {
                ProcInfo::default()
            })
            .is_some());
    }
}
