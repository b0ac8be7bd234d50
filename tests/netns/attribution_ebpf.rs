//! Process attribution from eBPF: short-lived processes, listeners, never across namespaces.

use super::*;

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn ebpf_ignores_sockets_of_another_namespace_with_the_same_addresses() {
    if !require_root() {
        return;
    }
    let (client_a, _server_a) = Netns::pair();
    let (client_b, server_b) = Netns::pair();
    let _sb = Agent::server(&server_b, 7005);
    let mut ft = Flowtop::start(&client_a, &["--json", "-t", "30", "-4T", "--attribution", "ebpf"]);
    // A process in B connects while flowtop in A watches every socket(2) of
    // the machine; then A gets a conntrack entry with exactly that tuple.
    let mut cb = Agent::client(&client_b);
    let (_idx, port) = cb.tcp_connect(SERVER_V4, 7005);
    client_a.conntrack(&format!(
        "-I -s {CLIENT_V4} -d {SERVER_V4} -p tcp --sport {port} --dport 7005 --state ESTABLISHED -t 300 -u ASSURED"
    ));
    let new = ft.wait_for("the inserted flow", WAIT, |v| {
        has_tuple(v, "tcp", CLIENT_V4, port, SERVER_V4, 7005)
    });
    std::thread::sleep(Duration::from_millis(500)); // time for a wrong update to show
    ft.pump();
    let attributed: Vec<&Value> = ft
        .lines
        .iter()
        .filter(|v| {
            has_tuple(v, "tcp", CLIENT_V4, port, SERVER_V4, 7005) && v.get("pid") != Some(&Value::Null)
        })
        .collect();
    assert!(
        attributed.is_empty(),
        "attributed to another namespace's process: {attributed:?} (new: {new})"
    );
}

/// Runs one short-lived python process in `ns` that makes one connection
/// (`kind`: "tcp", "udp" unconnected, "udpc" connected, "ping") to the
/// server and exits; returns (its pid, its local port).
///
/// UDP sockets are bound to `udp_local`, a port no other process of the
/// run used: an automatic port is random, and with 50 UDP sockets to the
/// same server two of them share one about once in 25 runs. The second
/// then sends on the first one's live conntrack entry, which has no NEW
/// event and keeps its first owner: no flow of its own to attribute.
fn short_lived(ns: &Netns, kind: &str, port: u16, udp_local: u16) -> (u32, u16) {
    let script = format!(
        "import socket\n\
         h, p = '{SERVER_V4}', {port}\n\
         if '{kind}' == 'tcp':\n    s = socket.create_connection((h, p)); s.sendall(b'x')\n\
         elif '{kind}' == 'udp':\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('', {udp_local})); s.sendto(b'x', (h, p))\n\
         elif '{kind}' == 'ping':\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP); s.sendto(b'\\x08\\0\\0\\0\\0\\0\\0\\1', (h, 0))\n\
         else:\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('', {udp_local})); s.connect((h, p)); s.send(b'x')\n\
         print(s.getsockname()[1], flush=True)\n"
    );
    run_printing_port(
        ns.netns_exec(python(), &["-c", &script]),
        &format!("short-lived {kind}"),
    )
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn ebpf_attributes_short_lived_processes() {
    if !require_root() {
        return;
    }
    let (client, server) = Netns::pair();
    let _srv = Agent::server(&server, 7010);
    // -t 30: no /proc scan can catch the processes below; only eBPF can.
    let mut ft = Flowtop::start(&client, &["--json", "-t", "30", "-4TUI", "--attribution", "ebpf"]);
    let meta = ft.lines.first().cloned().expect("meta line");
    assert_eq!(jstr(&meta, "attribution"), Some("ebpf"), "{meta}");
    // The kprobe programs pass the verifier here; where the kernel cannot
    // attach kprobes, the cgroup programs are chosen, and the meta line says so.
    let kprobes = meta["ebpf"]["kprobes"].as_array().cloned().unwrap_or_default();
    assert!(!kprobes.is_empty(), "no kprobe report in {meta}");
    assert!(
        kprobes.iter().all(|k| k["loaded"] == Value::Bool(true)),
        "a kprobe failed the verifier: {meta}"
    );
    if !std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
        assert!(
            kprobes.iter().all(|k| k["attached"] == Value::Bool(false)),
            "{meta}"
        );
        let programs = meta["ebpf"]["programs"].to_string();
        assert!(
            programs.contains("cgroup/sock_create") && programs.contains("cgroup_skb/egress"),
            "{meta}"
        );
    }

    // Ping sockets (ICMP datagram sockets) for every group, as distributions allow.
    client.sysctl_set("net.ipv4.ping_group_range", "0 2147483647");
    // The same workload seen by a flowtop in /proc mode (scans every second):
    // its success rate is printed, not asserted.
    let mut procfs_ft = Flowtop::start(
        &client,
        &["--json", "-t", "1", "-4TUI", "--attribution", "procfs"],
    );
    let mut expected = Vec::new();
    for (kind, count) in [("tcp", 50), ("udp", 25), ("udpc", 25), ("ping", 10)] {
        for _ in 0..count {
            let udp_local = 41_000 + expected.len() as u16;
            let (pid, sport) = short_lived(&client, kind, 7010, udp_local);
            let proto = match kind {
                "tcp" => "tcp",
                "ping" => "icmp",
                _ => "udp",
            };
            expected.push((proto, pid, sport));
        }
    }
    // Events can arrive in any order: look at every line until all are found.
    // For ICMP the "port" is the echo identifier.
    let attributed = |ft: &Flowtop, proto: &str, pid: u32, sport: u16| -> Option<Value> {
        let same_flow = |v: &Value| {
            if proto == "icmp" {
                jstr(v, "proto") == Some("icmp")
                    && ju64(v, "icmp_id") == Some(u64::from(sport))
                    && jaddr(v, "src") == CLIENT_V4.parse().ok()
            } else {
                has_tuple(v, proto, CLIENT_V4, sport, SERVER_V4, 7010)
            }
        };
        ft.lines
            .iter()
            .find(|v| same_flow(v) && ju64(v, "pid") == Some(u64::from(pid)))
            .cloned()
    };
    // Generous: on a loaded machine the ring buffer reader and the engine
    // can lag; the loop ends as soon as every flow is attributed.
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        ft.pump();
        let all = expected
            .iter()
            .all(|(proto, pid, sport)| attributed(&ft, proto, *pid, *sport).is_some());
        if all || std::time::Instant::now() > end {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2)); // two /proc scans
    procfs_ft.pump();
    let procfs_hits = expected
        .iter()
        .filter(|(p, pid, sport)| attributed(&procfs_ft, p, *pid, *sport).is_some())
        .count();
    eprintln!(
        "attribution of {} short-lived processes: /proc mode {procfs_hits} ({:.0}%), eBPF mode below",
        expected.len(),
        100.0 * procfs_hits as f64 / expected.len() as f64
    );
    let mut missing = Vec::new();
    for (proto, pid, sport) in &expected {
        match attributed(&ft, proto, *pid, *sport) {
            Some(v) => {
                assert_eq!(jstr(&v, "attribution"), Some("ebpf"), "{v}");
                assert_eq!(jstr(&v, "comm"), Some("python3"), "{v}");
            }
            None => {
                // What flowtop said about that port instead.
                let seen: Vec<String> = ft
                    .lines
                    .iter()
                    .filter(|v| {
                        ju64(v, "sport") == Some(u64::from(*sport))
                            || ju64(v, "icmp_id") == Some(u64::from(*sport))
                    })
                    .map(|v| {
                        format!(
                            "{} {} pid={} attribution={}",
                            v["event"], v["proto"], v["pid"], v["attribution"]
                        )
                    })
                    .collect();
                missing.push(format!(
                    "{proto} sport {sport} pid {pid} (lines with that port: {seen:?})"
                ))
            }
        }
    }
    let icmp_lines: Vec<String> = ft
        .lines
        .iter()
        .filter(|v| jstr(v, "proto") == Some("icmp"))
        .map(|v| v.to_string())
        .take(4)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} not attributed: {missing:?}\nsome icmp lines: {icmp_lines:#?}\nstderr: {}",
        missing.len(),
        expected.len(),
        ft.stderr()
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn ebpf_mode_attributes_incoming_connections_to_the_listener() {
    if !require_root() {
        return;
    }
    let (client, server) = Netns::pair();
    // A local server (in flowtop's namespace) that exists before flowtop.
    let local_server = Agent::server(&client, 7011);
    let ft_args = ["--json", "-t", "30", "-4T", "--attribution", "ebpf"];
    let mut ft = Flowtop::start(&client, &ft_args);
    let mut far = Agent::client(&server);
    let ports: Vec<u16> = (0..50).map(|_| far.tcp_connect(CLIENT_V4, 7011).1).collect();
    // Lines can come in any order: search all of them until every one is there.
    let pid = u64::from(local_server.pid());
    let find = |ft: &Flowtop, port: u16| {
        ft.lines
            .iter()
            .find(|v| has_tuple(v, "tcp", SERVER_V4, port, CLIENT_V4, 7011) && ju64(v, "pid") == Some(pid))
            .cloned()
    };
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < end && !ports.iter().all(|p| find(&ft, *p).is_some()) {
        std::thread::sleep(Duration::from_millis(100));
        ft.pump();
    }
    for port in &ports {
        let v = find(&ft, *port)
            .unwrap_or_else(|| ft.fail(&format!("incoming connection from port {port} not attributed")));
        assert!(
            matches!(jstr(&v, "attribution"), Some("listener" | "procfs")),
            "accepted sockets have no socket(2) of their own: {v}"
        );
    }
}
