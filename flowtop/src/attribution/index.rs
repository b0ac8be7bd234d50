//! The socket index: which process owns which local socket, and the match of
//! a conntrack flow against it.
//!
//! A flow's local end is found from either tuple: for a connection this host
//! opened, the original tuple reads local -> remote; for one it accepted (or
//! one NATed to it), the reply tuple does. Both are tried, connected sockets
//! first, then sockets bound to a local address/port only (unconnected UDP,
//! ping sockets), then TCP listeners ("listener": the accepted connection
//! belongs to the listening process).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use super::procfs::ProcScan;
use super::{How, Owner};
use crate::flow::model::{proto, Flow, Tuple};

type Fast = foldhash::fast::RandomState;

/// TCP state number of a listening socket in /proc/net/tcp.
const TCP_LISTEN: u8 = 0x0A;

/// IPv4-mapped IPv6 addresses name IPv4 endpoints: compare them as IPv4.
pub fn normalise(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

/// The unspecified address of `a`'s family.
pub fn unspecified_like(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// Owners of the sockets of flowtop's network namespace.
#[derive(Debug, Default)]
pub struct SocketIndex {
    connected: HashMap<(u8, SocketAddr, SocketAddr), Arc<Owner>, Fast>,
    bound: HashMap<(u8, SocketAddr), Arc<Owner>, Fast>,
    listeners: HashMap<(u8, SocketAddr), Arc<Owner>, Fast>,
    /// This namespace's own addresses: a wildcard-bound socket only owns
    /// flows whose local end is one of them.
    local_addrs: HashSet<IpAddr, Fast>,
}

impl SocketIndex {
    /// Builds the index from one /proc scan and the namespace's addresses.
    pub fn from_procfs(scan: &ProcScan, local_addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        let mut idx = SocketIndex {
            local_addrs: local_addrs.into_iter().map(normalise).collect(),
            ..SocketIndex::default()
        };
        let mut owners: HashMap<u32, Arc<Owner>, Fast> = HashMap::default();
        for s in &scan.sockets {
            let Some(pid) = s.pid else { continue };
            let Some(p) = scan.processes.get(&pid) else {
                continue;
            };
            let owner = owners
                .entry(pid)
                .or_insert_with(|| {
                    Arc::new(Owner {
                        pid,
                        comm: p.comm.clone(),
                        exe: p.exe.clone(),
                        uid: p.uid,
                        how: How::Procfs,
                        cmdline: p.cmdline.clone(),
                        ppid: p.ppid,
                        parent_comm: p.parent_comm.clone(),
                        exe_sha256: super::exe_hash::digest(Some(pid), p.exe.as_deref()),
                        cgroup_id: None,
                        identity: p.cgroup.as_deref().map(super::identity::of_path),
                        netns: p.netns,
                    })
                })
                .clone();
            let local = SocketAddr::new(normalise(s.local.ip()), s.local.port());
            let remote = SocketAddr::new(normalise(s.remote.ip()), s.remote.port());
            idx.insert(s.proto, local, remote, s.tcp_state == Some(TCP_LISTEN), owner);
        }
        idx
    }

    /// Records one socket.
    pub fn insert(
        &mut self,
        proto: u8,
        local: SocketAddr,
        remote: SocketAddr,
        listening: bool,
        owner: Arc<Owner>,
    ) {
        if listening {
            self.listeners.insert((proto, local), owner);
        } else if remote.port() == 0 && remote.ip().is_unspecified() {
            self.bound.insert((proto, local), owner);
        } else {
            self.connected.insert((proto, local, remote), owner);
        }
    }

    /// Whether the addresses of this namespace are known (an index made
    /// without them cannot tell forwarded flows from local ones).
    pub fn knows_local_addresses(&self) -> bool {
        !self.local_addrs.is_empty()
    }

    /// Whether `ip` is an address of this namespace.
    pub fn is_local(&self, ip: IpAddr) -> bool {
        self.local_addrs.contains(&normalise(ip))
    }

    pub fn len(&self) -> usize {
        self.connected.len() + self.bound.len() + self.listeners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The owner of the flow's local socket, if this namespace holds it,
    /// trying both ends of the flow (connected sockets first, then bound
    /// ones, then listeners). Attribution proper asks per end
    /// ([`Self::socket_at`], [`Self::listener_at`]); this is the one-call
    /// answer for a flow with one local end.
    pub fn lookup(&self, flow: &Flow) -> Option<Arc<Owner>> {
        let p = flow.proto;
        let candidates = local_ends(flow);
        for (local, remote) in candidates.iter().flatten() {
            if let Some(o) = self.connected.get(&(p, *local, *remote)) {
                return Some(o.clone());
            }
        }
        for (local, _) in candidates.iter().flatten() {
            if let Some(o) = self.bound_owner(&self.bound, p, local) {
                return Some(o);
            }
        }
        // Only the reply tuple's source can be a local listening port (the
        // original tuple's source is the connecting peer).
        candidates[1].and_then(|(local, _)| self.listener_at(p, local))
    }

    /// The owner of the socket at one end of a flow: a socket connected to
    /// exactly that remote end, else one bound to the local end only
    /// (unconnected UDP, ping sockets) when the local address is ours.
    pub fn socket_at(&self, p: u8, local: SocketAddr, remote: SocketAddr) -> Option<Arc<Owner>> {
        if let Some(o) = self.connected.get(&(p, local, remote)) {
            return Some(o.clone());
        }
        self.bound_owner(&self.bound, p, &local)
    }

    /// The listening socket behind an accepted connection's local end, as a
    /// provisional owner ([`How::Listener`]): the process that accepted may
    /// have handed the connection to another (a forked child).
    pub fn listener_at(&self, p: u8, local: SocketAddr) -> Option<Arc<Owner>> {
        if p != proto::TCP && p != proto::SCTP {
            return None;
        }
        let o = self.bound_owner(&self.listeners, p, &local)?;
        Some(Arc::new(Owner {
            how: How::Listener,
            ..(*o).clone()
        }))
    }

    /// This namespace's addresses, as the index was built with.
    pub fn local_addrs(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.local_addrs.iter().copied()
    }

    fn bound_owner(
        &self,
        map: &HashMap<(u8, SocketAddr), Arc<Owner>, Fast>,
        p: u8,
        local: &SocketAddr,
    ) -> Option<Arc<Owner>> {
        if !self.local_addrs.contains(&local.ip()) {
            return None;
        }
        map.get(&(p, *local))
            .or_else(|| map.get(&(p, SocketAddr::new(unspecified_like(local.ip()), local.port()))))
            .cloned()
    }
}

/// The (local, remote) socket ends a flow can have on this host: the
/// original tuple read as local -> remote (outgoing), then the reply tuple
/// (incoming, or NATed to a local address). ICMP has no ports: a ping socket
/// is bound to the echo identifier, its remote "port" is 0.
pub fn local_ends(flow: &Flow) -> [Option<(SocketAddr, SocketAddr)>; 2] {
    let icmp = matches!(flow.proto, proto::ICMP | proto::ICMPV6);
    let ends = |t: &Tuple| -> Option<(SocketAddr, SocketAddr)> {
        let (lport, rport) = if icmp {
            (t.icmp?.id, 0)
        } else {
            match (t.sport, t.dport) {
                (Some(s), Some(d)) => (s, d),
                // A protocol conntrack tracks without ports (e.g. 253 from
                // a raw socket): the eBPF programs report it with port 0
                // on both ends.
                (None, None) => (0, 0),
                _ => return None,
            }
        };
        Some((
            SocketAddr::new(normalise(t.src), lport),
            SocketAddr::new(normalise(t.dst), rport),
        ))
    };
    [ends(&flow.orig), ends(&flow.reply)]
}

/// The addresses of this network namespace's interfaces.
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free with freeifaddrs; every pointer
    // is checked for null and the sockaddr read by its family's size.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut cur = ifap;
        while !cur.is_null() {
            let sa = (*cur).ifa_addr;
            if !sa.is_null() {
                match i32::from((*sa).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(sa as *const libc::sockaddr_in);
                        out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(sa as *const libc::sockaddr_in6);
                        out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::model::{Family, Icmp};

    fn owner(pid: u32, comm: &str) -> Arc<Owner> {
        Arc::new(Owner {
            pid,
            comm: comm.into(),
            exe: None,
            uid: 0,
            how: How::Procfs,
            ..Default::default()
        })
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn tcp(src: &str, dst: &str, reply_src: &str, reply_dst: &str) -> Flow {
        let (s, d, rs, rd) = (sa(src), sa(dst), sa(reply_src), sa(reply_dst));
        Flow {
            id: 1,
            family: Family::Ipv4,
            proto: proto::TCP,
            state: None,
            orig: Tuple {
                src: s.ip(),
                dst: d.ip(),
                sport: Some(s.port()),
                dport: Some(d.port()),
                icmp: None,
            },
            reply: Tuple {
                src: rs.ip(),
                dst: rd.ip(),
                sport: Some(rs.port()),
                dport: Some(rd.port()),
                icmp: None,
            },
            status: 0,
            mark: 0,
            zone: 0,
            timeout: None,
            counters: None,
            start_ns: None,
        }
    }

    fn index() -> SocketIndex {
        let mut idx = SocketIndex {
            local_addrs: ["192.0.2.1", "127.0.0.1"]
                .iter()
                .map(|a| a.parse().expect("ip"))
                .collect(),
            ..SocketIndex::default()
        };
        idx.insert(
            proto::TCP,
            sa("192.0.2.1:40000"),
            sa("198.51.100.7:443"),
            false,
            owner(10, "curl"),
        );
        idx.insert(
            proto::TCP,
            sa("0.0.0.0:22"),
            sa("0.0.0.0:0"),
            true,
            owner(20, "sshd"),
        );
        idx.insert(
            proto::UDP,
            sa("0.0.0.0:5353"),
            sa("0.0.0.0:0"),
            false,
            owner(30, "avahi"),
        );
        idx.insert(
            proto::ICMP,
            sa("192.0.2.1:77"),
            sa("0.0.0.0:0"),
            false,
            owner(40, "ping"),
        );
        idx
    }

    #[test]
    fn outgoing_connection_matches_on_the_original_tuple() {
        let f = tcp(
            "192.0.2.1:40000",
            "198.51.100.7:443",
            "198.51.100.7:443",
            "192.0.2.1:40000",
        );
        let o = index().lookup(&f).expect("owner");
        assert_eq!((o.pid, o.how), (10, How::Procfs));
    }

    #[test]
    fn incoming_connection_goes_to_the_listener() {
        let f = tcp(
            "203.0.113.5:51000",
            "192.0.2.1:22",
            "192.0.2.1:22",
            "203.0.113.5:51000",
        );
        let o = index().lookup(&f).expect("owner");
        assert_eq!((o.pid, o.how), (20, How::Listener));
    }

    #[test]
    fn dnat_to_a_local_server_matches_on_the_reply_tuple() {
        // The client spoke to 198.51.100.1:2222; the kernel rewrote it to 192.0.2.1:22.
        let f = tcp(
            "203.0.113.5:51000",
            "198.51.100.1:2222",
            "192.0.2.1:22",
            "203.0.113.5:51000",
        );
        assert_eq!(index().lookup(&f).expect("owner").pid, 20);
    }

    #[test]
    fn forwarded_traffic_is_not_attributed() {
        // Neither end is local: a router passing traffic, even on a port a local socket uses.
        let f = tcp(
            "203.0.113.5:22",
            "198.51.100.9:5353",
            "198.51.100.9:5353",
            "203.0.113.5:22",
        );
        assert!(index().lookup(&f).is_none());
        let mut u = f.clone();
        u.proto = proto::UDP;
        assert!(index().lookup(&u).is_none());
    }

    #[test]
    fn unconnected_udp_and_ping_sockets_match_on_their_local_end() {
        let mut f = tcp(
            "192.0.2.1:5353",
            "224.0.0.251:5353",
            "224.0.0.251:5353",
            "192.0.2.1:5353",
        );
        f.proto = proto::UDP;
        assert_eq!(index().lookup(&f).expect("owner").pid, 30);
        let mut ping = tcp("192.0.2.1:0", "198.51.100.7:0", "198.51.100.7:0", "192.0.2.1:0");
        ping.proto = proto::ICMP;
        ping.orig.sport = None;
        ping.orig.dport = None;
        ping.orig.icmp = Some(Icmp {
            icmp_type: 8,
            code: 0,
            id: 77,
        });
        ping.reply.icmp = Some(Icmp {
            icmp_type: 0,
            code: 0,
            id: 77,
        });
        assert_eq!(index().lookup(&ping).expect("owner").pid, 40);
    }

    #[test]
    fn ipv4_mapped_addresses_match_ipv4_flows() {
        let mut idx = index();
        idx.insert(
            proto::TCP,
            SocketAddr::new(normalise(sa("[::ffff:192.0.2.1]:41000").ip()), 41000),
            SocketAddr::new(normalise(sa("[::ffff:198.51.100.7]:80").ip()), 80),
            false,
            owner(50, "wget"),
        );
        let f = tcp(
            "192.0.2.1:41000",
            "198.51.100.7:80",
            "198.51.100.7:80",
            "192.0.2.1:41000",
        );
        assert_eq!(idx.lookup(&f).expect("owner").pid, 50);
    }

    #[test]
    fn loopback_is_a_local_address_here() {
        assert!(local_addresses().iter().any(|a| a.is_loopback()));
    }
}
