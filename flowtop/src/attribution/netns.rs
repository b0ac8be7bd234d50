//! Which network namespaces sit behind which of this namespace's
//! interfaces, and which interface the route to an address leaves through
//! (issue 15): what lets a forwarded flow be attributed to a socket of a
//! container without ever borrowing a process from a namespace this host
//! does not route to.
//!
//! All of it over rtnetlink (NETLINK_ROUTE):
//! - `RTM_GETLINK` dump: veth (and similar) links whose other end is in
//!   another namespace carry `IFLA_LINK_NETNSID`, that namespace's id *as
//!   this namespace numbers it*; a link enslaved to a bridge names it in
//!   `IFLA_MASTER`, so the namespaces behind a bridge's ports are behind the
//!   bridge too (docker0, podman's cni bridges, lxcbr0).
//! - `RTM_GETNSID` with `NETNSA_FD` (an fd of `/proc/PID/ns/net` of a
//!   process seen making a socket in that namespace): the id this namespace
//!   gives that namespace, which joins the two. The fd is checked to be the
//!   namespace (its inode) before it is asked about.
//! - `RTM_GETROUTE` for one address (the kernel's own FIB lookup, policy
//!   routing included): the interface it leaves through.
//!
//! Lookups are cached (links for [`REFRESH`], routes per address for as
//! long) and made only for forwarded flows: a router with no namespace
//! behind its interfaces pays one links dump per [`REFRESH`] while such
//! flows come, and never a route lookup or a look at processes.
//!
//! Namespaces are known from the socket events of their processes, and
//! (see [`NetnsRoutes::discover`]) from a look at every process's
//! namespace when a flow is routed to one no event named.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

use super::processes::pids;

/// How long a view of the links, and a route, is trusted.
pub const REFRESH: Duration = Duration::from_secs(2);
/// Addresses whose route is cached at most (the cache is emptied beyond).
const ROUTES_MAX: usize = 1 << 12;
/// Namespaces remembered at most (with one process of each).
const MEMBERS_MAX: usize = 1 << 12;
/// Processes remembered per namespace (any live one will do).
const PIDS_PER_MEMBER: usize = 4;

/// A link: its index, the id of the namespace its other end is in (veth
/// and the like), the bridge it is a port of.
type Link = (u32, Option<i32>, Option<u32>);

/// One rtnetlink socket, used synchronously.
struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    fn open() -> io::Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        Ok(Rtnl {
            sock,
            seq: 0,
            buf: vec![0; 1 << 16],
        })
    }

    /// Sends one request and collects the answers (all of a dump's).
    fn ask(&mut self, msg: RouteNetlinkMessage, dump: bool) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 };
        header.sequence_number = self.seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        req.finalize();
        let mut out = vec![0; req.buffer_len()];
        req.serialize(&mut out);
        self.sock.send(&out, 0)?;
        let mut answers = Vec::new();
        loop {
            let mut slice = &mut self.buf[..];
            let n = self.sock.recv(&mut slice, 0)?.min(self.buf.len());
            let mut off = 0;
            while off + 16 <= n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = msg.header.length as usize;
                let seq = msg.header.sequence_number;
                off += len.max(16).next_multiple_of(4);
                if seq != self.seq {
                    continue; // an answer to an earlier, abandoned request
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::Error(e) => match e.code {
                        Some(code) => return Err(io::Error::from_raw_os_error(-code.get())),
                        None => return Ok(answers),
                    },
                    NetlinkPayload::InnerMessage(m) => {
                        answers.push(m);
                        if !dump {
                            return Ok(answers);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Every link.
    fn links(&mut self) -> io::Result<Vec<Link>> {
        let answers = self.ask(RouteNetlinkMessage::GetLink(LinkMessage::default()), true)?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => {
                    let mut nsid = None;
                    let mut master = None;
                    for a in &l.attributes {
                        match a {
                            LinkAttribute::LinkNetNsId(id) => nsid = Some(*id),
                            LinkAttribute::Controller(m) => master = Some(*m),
                            _ => {}
                        }
                    }
                    Some((l.header.index, nsid, master))
                }
                _ => None,
            })
            .collect())
    }

    /// The id this namespace gives the namespace of `fd` (None: none yet).
    fn nsid_of_fd(&mut self, fd: u32) -> io::Result<Option<i32>> {
        let mut m = NsidMessage::default();
        m.header.family = AddressFamily::Unspec;
        m.attributes.push(NsidAttribute::Fd(fd));
        let answers = self.ask(RouteNetlinkMessage::GetNsId(m), false)?;
        Ok(answers.into_iter().find_map(|a| match a {
            RouteNetlinkMessage::NewNsId(m) => m.attributes.iter().find_map(|a| match a {
                NsidAttribute::Id(id) if *id >= 0 => Some(*id),
                _ => None,
            }),
            _ => None,
        }))
    }

    /// The interface the route to `ip` leaves through.
    fn route_oif(&mut self, ip: IpAddr) -> io::Result<Option<u32>> {
        let mut m = RouteMessage::default();
        m.header = RouteHeader {
            address_family: match ip {
                IpAddr::V4(_) => AddressFamily::Inet,
                IpAddr::V6(_) => AddressFamily::Inet6,
            },
            destination_prefix_length: if ip.is_ipv4() { 32 } else { 128 },
            ..m.header
        };
        m.attributes.push(RouteAttribute::Destination(match ip {
            IpAddr::V4(a) => RouteAddress::Inet(a),
            IpAddr::V6(a) => RouteAddress::Inet6(a),
        }));
        let answers = match self.ask(RouteNetlinkMessage::GetRoute(m), false) {
            Ok(a) => a,
            // No route to it: not behind anything.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENETUNREACH | libc::EHOSTUNREACH)) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        Ok(answers.into_iter().find_map(|a| match a {
            RouteNetlinkMessage::NewRoute(r) => r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            }),
            _ => None,
        }))
    }
}

/// Opens `path` when it is the network namespace `inode`.
fn open_netns(path: &str, inode: u64) -> Option<std::fs::File> {
    std::fs::File::open(path)
        .ok()
        .filter(|f| f.metadata().map(|m| m.ino()).ok() == Some(inode))
}

/// The inode of process `pid`'s network namespace (one `stat` of
/// `<proc_root>/PID/ns/net`).
fn netns_inode_at(proc_root: &Path, pid: u32) -> Option<u64> {
    std::fs::metadata(proc_root.join(pid.to_string()).join("ns").join("net"))
        .ok()
        .map(|m| m.ino())
}

/// Whether process `pid` is in the network namespace `inode` (one `stat`).
pub fn process_in(pid: u32, inode: u64) -> bool {
    netns_inode_at(Path::new("/proc"), pid) == Some(inode)
}

/// Where runtimes keep a namespace open without a process: `ip netns`
/// (and CNI plugins) under /run/netns, docker under /run/docker/netns.
const NETNS_MOUNT_DIRS: [&str; 2] = ["/run/netns", "/run/docker/netns"];

/// Something holding the namespace `inode` open: a bind mount of it (no
/// process), else any process in it (a container's init or pause process
/// lives as long as its namespace is in use). One `stat` per mount and per
/// process; only for namespaces whose own processes were all gone.
fn find_holder(inode: u64) -> Option<(std::fs::File, Option<u32>)> {
    for dir in NETNS_MOUNT_DIRS {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if let Some(f) = open_netns(&e.path().to_string_lossy(), inode) {
                return Some((f, None));
            }
        }
    }
    for pid in pids(Path::new("/proc")) {
        // stat first: opening every process's namespace costs more.
        if process_in(pid, inode) {
            if let Some(f) = open_netns(&format!("/proc/{pid}/ns/net"), inode) {
                return Some((f, Some(pid)));
            }
        }
    }
    None
}

/// One process of each network namespace other than `own` that has a
/// process, lowest pid first (a container's init or pause process is
/// usually its lowest and longest-lived): one `stat` of
/// `<proc_root>/PID/ns/net` per process.
fn namespaces_with_processes(proc_root: &Path, own: u64) -> HashMap<u64, u32> {
    let mut pids: Vec<u32> = pids(proc_root).collect();
    pids.sort_unstable();
    let mut found = HashMap::new();
    for pid in pids {
        match netns_inode_at(proc_root, pid) {
            Some(ino) if ino != own => {
                found.entry(ino).or_insert(pid);
            }
            _ => {}
        }
    }
    found
}

/// The namespaces behind this one's interfaces.
pub struct NetnsRoutes {
    rtnl: Option<Rtnl>,
    /// Why rtnetlink is unusable (said once).
    pub unavailable: Option<String>,
    /// Interface index -> inodes of the namespaces behind it.
    behind: HashMap<u32, Vec<u64>>,
    /// Interfaces whose other end is in another namespace, and the
    /// bridges they are ports of.
    peer_ifaces: std::collections::HashSet<u32>,
    refreshed: Option<Instant>,
    /// Namespace inode -> a process seen making a socket in it.
    /// (the latest few, newest last).
    members: HashMap<u64, Vec<u32>>,
    /// The id this namespace gives each namespace seen (inode -> id),
    /// learnt while one of its processes lived; forgotten when no link
    /// carries the id any more (the namespace is gone, the id may be
    /// reused).
    nsids: HashMap<u64, i32>,
    routes: HashMap<IpAddr, (Instant, Option<u32>)>,
    /// Namespaces whose holder was looked for lately (see [`find_holder`]).
    searched: HashMap<u64, Instant>,
    /// When every process's namespace was last looked at (see
    /// [`Self::discover`]).
    discovered: Option<Instant>,
}

impl std::fmt::Debug for NetnsRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetnsRoutes")
            .field("behind", &self.behind)
            .field("members", &self.members.len())
            .finish()
    }
}

impl Default for NetnsRoutes {
    fn default() -> Self {
        NetnsRoutes::new()
    }
}

impl NetnsRoutes {
    /// A view that opens its rtnetlink socket on first use.
    pub fn new() -> Self {
        NetnsRoutes {
            rtnl: None,
            unavailable: None,
            behind: HashMap::new(),
            peer_ifaces: Default::default(),
            refreshed: None,
            members: HashMap::new(),
            nsids: HashMap::new(),
            routes: HashMap::new(),
            searched: HashMap::new(),
            discovered: None,
        }
    }

    /// Remembers that `pid` made a socket in the namespace `inode`: how
    /// that namespace's id is found. Whether the pid is new there.
    pub fn note_member(&mut self, inode: u64, pid: u32) -> bool {
        if self.members.len() >= MEMBERS_MAX && !self.members.contains_key(&inode) {
            self.members.clear();
        }
        let pids = self.members.entry(inode).or_default();
        if pids.last() == Some(&pid) {
            return false;
        }
        pids.retain(|&p| p != pid);
        if pids.len() >= PIDS_PER_MEMBER {
            pids.remove(0);
        }
        pids.push(pid);
        if !self.nsids.contains_key(&inode) {
            // A namespace not placed yet: now, while its process (maybe
            // short-lived) is there to open its namespace.
            self.refreshed = None;
            self.refresh(Instant::now());
        }
        true
    }

    /// Learns the namespaces no socket event named, from the processes in
    /// them: those whose sockets were all made before flowtop started (a
    /// container up before it), and every namespace when there are no
    /// socket events at all (`--attribution procfs`, `--once`). At most
    /// once per [`REFRESH`], and only asked when a forwarded flow's end is
    /// routed through an interface another namespace is behind and no
    /// known namespace there owns it. Whether a namespace new to this view
    /// was found.
    pub fn discover(&mut self, now: Instant) -> bool {
        if self.discovered.is_some_and(|t| now.duration_since(t) < REFRESH) {
            return false;
        }
        self.discovered = Some(now);
        let Ok(own) = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()) else {
            return false;
        };
        let mut new = false;
        for (inode, pid) in namespaces_with_processes(Path::new("/proc"), own) {
            if self.members.len() >= MEMBERS_MAX {
                break;
            }
            let pids = self.members.entry(inode).or_default();
            if pids.is_empty() {
                pids.push(pid);
                new = true;
            }
        }
        if new {
            // Place them now (one links dump for all).
            self.refreshed = None;
            self.refresh(now);
        }
        new
    }

    /// A process seen in the namespace `inode` (the latest).
    pub fn member(&self, inode: u64) -> Option<u32> {
        self.members.get(&inode).and_then(|p| p.last().copied())
    }

    /// Whether any namespace was seen at all.
    pub fn has_members(&self) -> bool {
        !self.members.is_empty() || !self.nsids.is_empty()
    }

    fn rtnl(&mut self) -> Option<&mut Rtnl> {
        if self.rtnl.is_none() && self.unavailable.is_none() {
            match Rtnl::open() {
                Ok(r) => self.rtnl = Some(r),
                Err(e) => self.unavailable = Some(format!("rtnetlink: {e}")),
            }
        }
        self.rtnl.as_mut()
    }

    /// Relearns which namespaces are behind which interfaces.
    fn refresh(&mut self, now: Instant) {
        if self.refreshed.is_some_and(|t| now.duration_since(t) < REFRESH) {
            return;
        }
        self.refreshed = Some(now);
        self.routes.clear();
        self.behind.clear();
        self.peer_ifaces.clear();
        let Some(rtnl) = self.rtnl() else { return };
        let Ok(links) = rtnl.links() else { return };
        let mut peers = std::collections::HashSet::new();
        for &(index, nsid, master) in &links {
            if nsid.is_some() {
                peers.insert(index);
                peers.extend(master);
            }
        }
        if peers.is_empty() {
            return;
        }
        let on_links: std::collections::HashSet<i32> = links.iter().filter_map(|l| l.1).collect();
        let Some(rtnl) = self.rtnl.as_mut() else { return };
        let (members, nsids) = (&mut self.members, &mut self.nsids);
        nsids.retain(|_, id| on_links.contains(id));
        let searched = &mut self.searched;
        searched.retain(|_, t| now.duration_since(*t) < REFRESH);
        for (&inode, pids) in members.iter_mut() {
            // Newest first; a process that exited or moved to another
            // namespace is forgotten (only the namespace it was seen in is
            // asked about).
            let mut open = None;
            while let Some(&pid) = pids.last() {
                match open_netns(&format!("/proc/{pid}/ns/net"), inode) {
                    Some(f) => {
                        open = Some(f);
                        break;
                    }
                    None => {
                        pids.pop();
                    }
                }
            }
            // Every process seen there is gone (short-lived ones, e.g. a
            // `docker exec curl`): the namespace is found through another
            // holder, once per REFRESH at most, while it is not placed.
            if open.is_none() && !nsids.contains_key(&inode) && !searched.contains_key(&inode) {
                searched.insert(inode, now);
                if searched.len() > MEMBERS_MAX {
                    searched.clear();
                }
                open = find_holder(inode).map(|(f, pid)| {
                    pids.extend(pid);
                    f
                });
            }
            if let Some(f) = open {
                if let Ok(Some(id)) = rtnl.nsid_of_fd(f.as_raw_fd() as u32) {
                    nsids.insert(inode, id);
                }
            }
        }
        members.retain(|inode, pids| !pids.is_empty() || nsids.contains_key(inode));
        // Namespace id (as this namespace numbers it) -> inode.
        let by_nsid: HashMap<i32, u64> = nsids.iter().map(|(&i, &id)| (id, i)).collect();
        self.peer_ifaces = peers;
        for (index, nsid, master) in links {
            let Some(inode) = nsid.and_then(|n| by_nsid.get(&n).copied()) else {
                continue;
            };
            for at in std::iter::once(index).chain(master) {
                let v = self.behind.entry(at).or_default();
                if !v.contains(&inode) {
                    v.push(inode);
                }
            }
        }
    }

    /// The interface the route to `ip` leaves through, when it is one
    /// another namespace is behind (a veth of one, or a bridge with such
    /// ports): cached.
    fn peer_route(&mut self, ip: IpAddr, now: Instant) -> Option<u32> {
        self.refresh(now);
        if self.peer_ifaces.is_empty() {
            return None;
        }
        let fresh = self
            .routes
            .get(&ip)
            .filter(|(t, _)| now.duration_since(*t) < REFRESH)
            .map(|&(_, oif)| oif);
        let oif = match fresh {
            Some(oif) => oif,
            None => {
                let oif = self.rtnl().and_then(|r| r.route_oif(ip).ok().flatten());
                if self.routes.len() >= ROUTES_MAX {
                    self.routes.clear();
                }
                self.routes.insert(ip, (now, oif));
                oif
            }
        };
        oif.filter(|i| self.peer_ifaces.contains(i))
    }

    /// Whether the route to `ip` leads to another namespace (whether or
    /// not a process of it was seen yet): a forwarded flow from or to it
    /// may still get an owner when its socket is reported.
    pub fn leads_to_a_namespace(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.peer_route(ip, now).is_some()
    }

    /// The namespaces behind the interface the route to `ip` leaves
    /// through (empty: none, or not known).
    pub fn behind(&mut self, ip: IpAddr, now: Instant) -> &[u64] {
        match self.peer_route(ip, now) {
            Some(oif) => self.behind.get(&oif).map_or(&[], Vec::as_slice),
            None => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This namespace's loopback route: a real rtnetlink round trip (no
    /// privileges needed), and no namespace is behind `lo`.
    #[test]
    fn the_route_to_loopback_leaves_through_lo_and_nothing_is_behind_it() {
        let mut r = Rtnl::open().expect("rtnetlink");
        let links = r.links().expect("links");
        let lo = links.first().map(|l| l.0);
        assert!(lo.is_some(), "{links:?}");
        let oif = r.route_oif(IpAddr::from([127, 0, 0, 1])).expect("route");
        assert_eq!(oif, Some(1), "lo is index 1");
        let mut view = NetnsRoutes::new();
        assert!(view
            .behind(IpAddr::from([127, 0, 0, 1]), Instant::now())
            .is_empty());
        // A namespace that is not behind any interface lends nothing.
        view.note_member(1, std::process::id());
        assert!(view
            .behind(IpAddr::from([127, 0, 0, 1]), Instant::now())
            .is_empty());
    }

    /// One process per namespace, the lowest pid, and never this
    /// namespace: over a stand-in /proc whose `ns/net` entries are hard
    /// links (one inode per namespace, as nsfs gives).
    #[test]
    fn each_other_namespace_is_found_once_through_its_lowest_pid() {
        let tmp = flowtop_testkit::names::Scratch::new("flowtop-netns-discover").expect("scratch");
        let root = tmp.path();
        let ns_file = |pid: &str| {
            let dir = root.join(pid).join("ns");
            std::fs::create_dir_all(&dir).expect("ns dir");
            dir.join("net")
        };
        let (own, a, b) = (root.join("own"), root.join("a"), root.join("b"));
        for f in [&own, &a, &b] {
            std::fs::write(f, "").expect("namespace stand-in");
        }
        // pid -> namespace; "self" and a pid with no ns entry are skipped.
        for (pid, ns) in [("12", &a), ("5", &a), ("40", &b), ("3", &own), ("self", &b)] {
            std::fs::hard_link(ns, ns_file(pid)).expect("link");
        }
        std::fs::create_dir_all(root.join("7")).expect("a process with no ns entry");
        let ino = |p: &std::path::Path| std::fs::metadata(p).expect("stat").ino();
        let found = namespaces_with_processes(root, ino(&own));
        assert_eq!(found, HashMap::from([(ino(&a), 5), (ino(&b), 40)]));
    }

    /// A namespace whose own processes are gone is found through what
    /// still holds it: a process in it (lxc, nspawn: no mount), or its
    /// bind mount (`ip netns`, docker, podman) with no process at all.
    #[test]
    #[ignore = "needs root: run by cargo xtask test"]
    fn a_namespace_is_found_through_a_process_in_it_or_its_mount() {
        use flowtop_testkit::skip::{require_root, require_tool};
        if !require_root() || !require_tool("unshare") || !require_tool("ip") {
            return;
        }
        let own = std::fs::metadata("/proc/self/ns/net").expect("own netns").ino();
        let mut child = std::process::Command::new("unshare")
            .args(["-n", "sleep", "30"])
            .spawn()
            .expect("unshare -n sleep");
        let path = format!("/proc/{}/ns/net", child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        let inode = loop {
            let ino = std::fs::metadata(&path).expect("the child's netns").ino();
            if ino != own {
                break ino;
            }
            assert!(Instant::now() < deadline, "unshare -n did not switch namespaces");
            std::thread::sleep(Duration::from_millis(20));
        };
        let found = find_holder(inode).map(|(f, pid)| (f.metadata().map(|m| m.ino()).ok(), pid));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, Some((Some(inode), Some(child.id()))));

        let name = format!("ft-holder-{}", std::process::id());
        let ip = |args: &[&str]| {
            let ok = std::process::Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "ip {args:?}");
        };
        ip(&["netns", "add", &name]);
        let inode = std::fs::metadata(format!("/run/netns/{name}")).map(|m| m.ino());
        let found = inode
            .as_ref()
            .ok()
            .and_then(|&i| find_holder(i))
            .map(|(f, pid)| (f.metadata().map(|m| m.ino()).ok(), pid));
        ip(&["netns", "del", &name]);
        let inode = inode.expect("the mount's inode");
        assert_eq!(found, Some((Some(inode), None)));
        // Gone with its mount: nothing holds it.
        assert!(find_holder(inode).is_none());
    }
}
