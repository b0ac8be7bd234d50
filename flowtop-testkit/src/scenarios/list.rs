//! The scenarios: what each runs (a mode of `sc.c`) and how its flows are
//! told apart from the others' (protocol, peer address, peer port or ICMP
//! identifier: every scenario has a port of its own).

use serde_json::Value;

/// Where a scenario's traffic goes, and so where its bytes are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// The peer namespace over the veth pair (IPv4).
    Peer4,
    /// The peer namespace over the veth pair (IPv6).
    Peer6,
    /// 127.0.0.1 inside flowtop's namespace.
    Loopback,
    /// From a container behind flowtop's namespace (a namespace on a veth,
    /// masqueraded) to the peer, IPv4: a forwarded flow.
    Container4,
    /// The same over IPv6.
    Container6,
    /// To a server in the container through a port flowtop's namespace
    /// publishes (DNAT), from a host behind the peer (the peer routes).
    Published,
}

impl Path {
    /// Whether the scenario's processes run in the container, so that its
    /// flows are forwarded ones, attributed `"netns"`.
    pub fn in_container(self) -> bool {
        matches!(self, Path::Container4 | Path::Container6 | Path::Published)
    }
}

/// One scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Also the executable's name: `sc-<name>` (at most 15 bytes: `comm`).
    pub name: &'static str,
    /// What it does, for the report.
    pub what: &'static str,
    /// The `sc.c` mode.
    pub mode: &'static str,
    /// Protocol as flowtop's JSON names it.
    pub proto: &'static str,
    pub path: Path,
    /// Peer port (or, for ICMP, what the identifier derives from).
    pub port: u16,
    /// Flows it makes that conntrack in flowtop's namespace can see.
    pub flows: usize,
    /// False where conntrack cannot see the traffic at all (AF_PACKET
    /// frames are written below netfilter on the sending side).
    pub visible: bool,
}

/// The ICMP identifier `sc.c` uses for a port (`0x5c00 + port % 256`).
pub fn icmp_id(port: u16) -> u16 {
    0x5c00 + port % 256
}

impl Scenario {
    /// Whether the peer serves the port (`false`: it refuses).
    pub fn served(&self) -> bool {
        self.mode != "refused" && self.path != Path::Published
    }

    /// The executable's name.
    pub fn exe(&self) -> String {
        format!("sc-{}", self.name)
    }

    /// The address the flows go to (their original destination): the
    /// peer's `v4` or `v6`, loopback, or flowtop's own for a published port.
    pub fn dst(&self, v4: &str, v6: &str) -> String {
        match self.path {
            Path::Peer4 | Path::Container4 => v4.to_owned(),
            Path::Peer6 | Path::Container6 => v6.to_owned(),
            Path::Loopback => "127.0.0.1".to_owned(),
            Path::Published => crate::netns::CLIENT_V4.to_owned(),
        }
    }

    /// Whether a flow (merged JSON object) is one of this scenario's.
    pub fn owns_flow(&self, v: &Value, dst: &str) -> bool {
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        let n = |k: &str| v.get(k).and_then(Value::as_u64);
        let addr = |a: &str| a.parse::<std::net::IpAddr>().ok();
        // Protocols flowtop has no name for are numbers.
        let proto = match v.get("proto") {
            Some(Value::String(p)) => p.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return false,
        };
        if proto != self.proto || s("dst").and_then(addr) != addr(dst) {
            return false;
        }
        match self.proto {
            "icmp" | "icmpv6" => n("icmp_id") == Some(u64::from(icmp_id(self.port))),
            "tcp" | "udp" | "udplite" | "sctp" | "dccp" => n("dport") == Some(u64::from(self.port)),
            _ => true,
        }
    }
}

/// Every scenario, in the order they run. Ports 9001.. are assigned in
/// order, except where the port is the point (53, 443) and UDP-Lite (the
/// peer's one UDP-Lite socket is on 9000).
pub fn all() -> Vec<Scenario> {
    // (name, what, mode, proto, path, flows, visible)
    #[rustfmt::skip]
    let table: [(&str, &str, &str, &str, Path, usize, bool); 34] = [
        ("tcp-down", "TCP bulk download, 4 MiB", "tcp-down", "tcp", Path::Peer4, 1, true),
        ("tcp-up", "TCP bulk upload, 4 MiB", "tcp-up", "tcp", Path::Peer4, 1, true),
        ("tcp-duplex", "TCP echo, 2 MiB each way", "tcp-duplex", "tcp", Path::Peer4, 1, true),
        ("udp-up", "UDP, 200 x 1200 B up (connected)", "udp-up", "udp", Path::Peer4, 1, true),
        ("udp-down", "UDP, 200 x 1200 B down on request", "udp-down", "udp", Path::Peer4, 1, true),
        ("udp-443", "UDP/443 echo, 100 x 1200 B (QUIC-like)", "udp-echo", "udp", Path::Peer4, 1, true),
        ("udp-53", "UDP/53 flood, 2000 x 40 B (sendto)", "udp-flood", "udp", Path::Peer4, 1, true),
        ("udplite", "UDP-Lite, 50 x 600 B", "udplite", "udplite", Path::Peer4, 1, true),
        ("icmp-echo", "ICMP echo, raw socket, 5 x 1000 B", "icmp-echo", "icmp", Path::Peer4, 1, true),
        ("icmp6-echo", "ICMPv6 echo, raw socket, 5 x 1000 B", "icmp6-echo", "icmpv6", Path::Peer6, 1, true),
        ("tcp6", "IPv6 TCP upload, 1 MiB", "tcp6", "tcp", Path::Peer6, 1, true),
        ("udp6", "IPv6 UDP echo, 100 x 1000 B", "udp6", "udp", Path::Peer6, 1, true),
        ("sctp", "SCTP INIT/INIT-ACK, raw sockets (no SCTP in the kernel)", "sctp", "sctp", Path::Peer4, 1, true),
        ("raw-253", "raw IP protocol 253, 5 x 200 B", "raw", "253", Path::Peer4, 1, true),
        ("raw-hdrincl", "UDP, 10 x 300 B, own IP header (IPPROTO_RAW)", "raw-hdrincl", "udp", Path::Peer4, 1, true),
        ("short-lived", "20 processes, one TCP upload each", "short-lived", "tcp", Path::Peer4, 20, true),
        ("af-packet", "10 UDP frames injected with AF_PACKET", "af-packet", "udp", Path::Peer4, 0, false),
        ("uring-send", "io_uring socket (in an io worker), connect, send, 1 MiB", "uring-send", "tcp", Path::Peer4, 1, true),
        ("uring-recv", "io_uring recv, 1 MiB", "uring-recv", "tcp", Path::Peer4, 1, true),
        ("sendfile", "sendfile(2) of a 1 MiB memfd", "sendfile", "tcp", Path::Peer4, 1, true),
        ("splice", "splice(2) from a pipe, 1 MiB", "splice", "tcp", Path::Peer4, 1, true),
        ("sendmmsg", "sendmmsg(2), 10 x 32 x 800 B", "sendmmsg", "udp", Path::Peer4, 1, true),
        ("recvmmsg", "recvmmsg(2), 320 x 800 B down", "recvmmsg", "udp", Path::Peer4, 1, true),
        ("loopback", "TCP over 127.0.0.1, 1 MiB, both ends ours", "loopback", "tcp", Path::Loopback, 1, true),
        ("drip", "low and slow: 10 bytes over 1.5 s", "drip", "tcp", Path::Peer4, 1, true),
        ("sequential", "60 sequential TCP connections", "sequential", "tcp", Path::Peer4, 60, true),
        ("concurrent", "30 concurrent TCP connections", "concurrent", "tcp", Path::Peer4, 30, true),
        ("tcp-refused", "TCP connect refused by the peer (RST)", "refused", "tcp", Path::Peer4, 1, true),
        // Containers (issue 15): processes in a namespace behind flowtop's.
        ("ctr-tcp", "container, masquerade: TCP upload, 4 MiB", "tcp-up", "tcp", Path::Container4, 1, true),
        ("ctr-udp6", "container, IPv6 masquerade: UDP echo, 100 x 1000 B", "udp6", "udp", Path::Container6, 1, true),
        ("ctr-short", "container: 20 short-lived processes, one TCP upload each", "short-lived", "tcp", Path::Container4, 20, true),
        ("ctr-publish", "container: server on a published port (DNAT), 4 MiB in", "tcp-sink", "tcp", Path::Published, 1, true),
        ("ctr-icmp", "container, masquerade: ICMP echo, raw socket, 5 x 1000 B", "icmp-echo", "icmp", Path::Container4, 1, true),
        ("ctr-sendto", "container, masquerade: unconnected UDP (sendto), 2000 x 40 B", "udp-flood", "udp", Path::Container4, 1, true),
    ];
    table
        .iter()
        .enumerate()
        .map(|(i, &(name, what, mode, proto, path, flows, visible))| Scenario {
            name,
            what,
            mode,
            proto,
            path,
            port: match name {
                "udp-443" => 443,
                "udp-53" => 53,
                "udplite" => 9000,
                _ => 9001 + i as u16,
            },
            flows,
            visible,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_comm_and_ports_are_unique() {
        let all = all();
        let mut ports = std::collections::HashSet::new();
        for s in &all {
            assert!(s.exe().len() <= 15, "{} is longer than comm", s.exe());
            assert!(ports.insert(s.port), "port {} twice", s.port);
        }
    }

    #[test]
    fn flows_are_told_apart_by_port_and_icmp_id() {
        let all = all();
        let up = all.iter().find(|s| s.name == "tcp-up").expect("tcp-up");
        let flow = serde_json::json!({"proto": "tcp", "dst": "192.0.2.2", "dport": up.port});
        assert!(up.owns_flow(&flow, "192.0.2.2"));
        let down = all.iter().find(|s| s.name == "tcp-down").expect("tcp-down");
        assert!(!down.owns_flow(&flow, "192.0.2.2"));
        let ping = all.iter().find(|s| s.name == "icmp-echo").expect("icmp-echo");
        let echo = serde_json::json!({"proto": "icmp", "dst": "192.0.2.2", "icmp_id": icmp_id(ping.port)});
        assert!(ping.owns_flow(&echo, "192.0.2.2"));
        let raw = all.iter().find(|s| s.name == "raw-253").expect("raw-253");
        assert!(raw.owns_flow(
            &serde_json::json!({"proto": 253, "dst": "192.0.2.2"}),
            "192.0.2.2"
        ));
    }
}
