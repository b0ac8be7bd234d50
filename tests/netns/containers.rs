//! Issue 15: forwarded flows of namespaces behind flowtop's (a container
//! behind a host: masquerade out, a published port in) belong to the
//! process inside, `attribution: "netns"`; a look-alike namespace this host
//! does not route to never lends its process; and the identity of a
//! process from its cgroup (`cgroup`, `unit`, `container`, `app`, `netns`).

use super::*;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command};

/// The container's and the look-alike's addresses (the same on purpose).
const CTR_V4: &str = "198.51.100.2";
const CTR_V6: &str = "2001:db8:c::2";
const HOST_CTR_V4: &str = "198.51.100.1";
const HOST_CTR_V6: &str = "2001:db8:c::1";
/// The port the host publishes, and the server's port inside.
const PUBLISHED: u16 = 8080;
const INSIDE: u16 = 8000;
/// The world's server.
const WORLD_PORT: u16 = 7005;

/// `ip -n NS args`, must succeed.
fn ip(ns: &Netns, args: &str) {
    ns.ip(&args.split_whitespace().collect::<Vec<_>>());
}

/// The world's addresses: behind a router, as the internet is.
const WORLD_V4: &str = "203.0.113.2";
const WORLD_V6: &str = "2001:db8:f::2";

/// A host `H` (flowtop's namespace: conntrack, forwarding, nft masquerade
/// and a published port) with a container `C` (198.51.100.2,
/// 2001:db8:c::2) behind a veth, and the world `W` (203.0.113.2,
/// 2001:db8:f::2, a server on 7005) two hops away behind a router `R`
/// (192.0.2.2, 2001:db8::2): the namespace directly behind the host's
/// uplink is R's, which makes no connections, so W's client sockets are
/// not the host's to attribute (as on a real uplink). And a look-alike `L`
/// with the container's addresses whose own "world" `W2` has the world's
/// addresses and server, joined to nothing of the host's.
struct Topology {
    host: Netns,
    world: Netns,
    ctr: Netns,
    lookalike: Netns,
    _router: Netns,
    _world2: Netns,
    _servers: Vec<Agent>,
}

fn topology() -> Topology {
    let host = Netns::new();
    let router = Netns::new();
    Netns::join(&host, &router).unwrap_or_else(|e| panic!("{e}"));
    host.enable_conntrack();
    host.sysctl_set("net.ipv4.ip_forward", "1");
    host.sysctl_set("net.ipv6.conf.all.forwarding", "1");
    router.sysctl_set("net.ipv4.ip_forward", "1");
    router.sysctl_set("net.ipv6.conf.all.forwarding", "1");
    let world = Netns::new();
    ip(
        &router,
        &format!("link add rw type veth peer name eth0 netns {}", world.name),
    );
    ip(&router, "addr add 203.0.113.1/24 dev rw");
    ip(&router, "addr add 2001:db8:f::1/64 dev rw nodad");
    ip(&router, "link set rw up");
    ip(&world, &format!("addr add {WORLD_V4}/24 dev eth0"));
    ip(&world, &format!("addr add {WORLD_V6}/64 dev eth0 nodad"));
    ip(&world, "link set eth0 up");
    ip(&world, "route add default via 203.0.113.1");
    ip(&world, "-6 route add default via 2001:db8:f::1");
    ip(&host, &format!("route add 203.0.113.0/24 via {SERVER_V4}"));
    ip(&host, &format!("-6 route add 2001:db8:f::/64 via {SERVER_V6}"));

    let ctr = Netns::new();
    ip(
        &host,
        &format!("link add vh type veth peer name eth0 netns {}", ctr.name),
    );
    ip(&host, &format!("addr add {HOST_CTR_V4}/24 dev vh"));
    ip(&host, &format!("addr add {HOST_CTR_V6}/64 dev vh nodad"));
    ip(&host, "link set vh up");
    ip(&ctr, &format!("addr add {CTR_V4}/24 dev eth0"));
    ip(&ctr, &format!("addr add {CTR_V6}/64 dev eth0 nodad"));
    ip(&ctr, "link set eth0 up");
    ip(&ctr, &format!("route add default via {HOST_CTR_V4}"));
    ip(&ctr, &format!("-6 route add default via {HOST_CTR_V6}"));
    for rule in [
        "add table inet nat".to_string(),
        "add chain inet nat post { type nat hook postrouting priority 100; }".into(),
        "add rule inet nat post oifname vc masquerade".into(),
        "add chain inet nat pre { type nat hook prerouting priority -100; }".into(),
        format!("add rule inet nat pre iifname vc meta nfproto ipv4 tcp dport {PUBLISHED} dnat ip to {CTR_V4}:{INSIDE}"),
        format!("add rule inet nat pre iifname vc meta nfproto ipv6 tcp dport {PUBLISHED} dnat ip6 to [{CTR_V6}]:{INSIDE}"),
    ] {
        let args: Vec<&str> = rule.split_whitespace().collect();
        host.run("nft", &args);
    }

    let lookalike = Netns::new();
    let world2 = Netns::new();
    ip(
        &lookalike,
        &format!("link add la type veth peer name lb netns {}", world2.name),
    );
    ip(&lookalike, &format!("addr add {CTR_V4}/24 dev la"));
    ip(&lookalike, &format!("addr add {CTR_V6}/64 dev la nodad"));
    ip(&lookalike, "link set la up");
    ip(&lookalike, "route add 203.0.113.0/24 dev la");
    ip(&lookalike, "-6 route add 2001:db8:f::/64 dev la");
    ip(&world2, &format!("addr add {WORLD_V4}/24 dev lb"));
    ip(&world2, &format!("addr add {WORLD_V6}/64 dev lb nodad"));
    ip(&world2, "link set lb up");
    ip(&world2, "route add 198.51.100.0/24 dev lb");
    ip(&world2, "-6 route add 2001:db8:c::/64 dev lb");
    let servers = vec![
        Agent::server(&world, WORLD_PORT),
        Agent::server(&world2, WORLD_PORT),
    ];
    Topology {
        host,
        world,
        ctr,
        lookalike,
        _router: router,
        _world2: world2,
        _servers: servers,
    }
}

/// A TCP client in `ns` bound to `src`:`sport` connected to `dst`:`dport`
/// that sends a byte and stays connected until dropped; (child, pid).
struct Held(Child, u32);

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const HELD_PY: &str = "import os, socket, sys\n\
src, sport, dst, dport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])\n\
fam = socket.AF_INET6 if ':' in dst else socket.AF_INET\n\
s = socket.socket(fam, socket.SOCK_STREAM)\n\
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind((src, sport))\n\
s.connect((dst, dport))\n\
s.sendall(b'x')\n\
print(os.getpid(), flush=True)\n\
sys.stdin.read()\n";

fn held(mut cmd: Command, what: &str) -> Held {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("pid line");
    let pid = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{what} did not connect (printed {line:?})"));
    Held(child, pid)
}

fn held_client(ns: &Netns, src: &str, sport: u16, dst: &str, dport: u16) -> Held {
    let (sp, dp) = (sport.to_string(), dport.to_string());
    held(
        ns.netns_exec(python(), &["-c", HELD_PY, src, &sp, dst, &dp]),
        &format!("client {src}:{sport} -> {dst}:{dport} in {}", ns.name),
    )
}

/// The first line of the flow `src:sport -> dst:dport` with an owner.
fn owned_line(ft: &mut Flowtop, what: &str, (src, sport, dst, dport): (&str, u16, &str, u16)) -> Value {
    ft.wait_for(what, WAIT, |v| {
        has_tuple(v, "tcp", src, sport, dst, dport) && v.get("pid").is_some_and(|p| !p.is_null())
    })
}

/// flowtop's arguments for an attribution mode: eBPF needs no rescans (its
/// sockets come as events); /proc scans come every interval.
fn live_args(mode: &str) -> Vec<&str> {
    let interval = if mode == "procfs" { "0.5" } else { "30" };
    vec!["--json", "-t", interval, "-T", "--attribution", mode]
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn a_container_behind_the_host_owns_its_masqueraded_and_published_flows() {
    container_owns_its_masqueraded_and_published_flows("ebpf");
}

/// Without eBPF (no socket events name the container's namespace) the
/// namespace is found from the processes in it.
#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn with_procfs_attribution_a_container_owns_its_masqueraded_and_published_flows() {
    container_owns_its_masqueraded_and_published_flows("procfs");
}

fn container_owns_its_masqueraded_and_published_flows(mode: &str) {
    if !require_root() {
        return;
    }
    let t = topology();
    let mut ft = Flowtop::start(&t.host, &live_args(mode));
    for (family, ctr, world, sport) in [("v4", CTR_V4, WORLD_V4, 40123), ("v6", CTR_V6, WORLD_V6, 40124)] {
        // The look-alike first: a socket with exactly the tuple the
        // container's client will have, in a namespace behind nothing.
        let _twin = held_client(&t.lookalike, ctr, sport, world, WORLD_PORT);
        let inside = held_client(&t.ctr, ctr, sport, world, WORLD_PORT);
        let line = owned_line(
            &mut ft,
            &format!("the container's {family} client flow with an owner"),
            (ctr, sport, world, WORLD_PORT),
        );
        assert_eq!(ju64(&line, "pid"), Some(u64::from(inside.1)), "{family}: {line}");
        assert_eq!(jstr(&line, "attribution"), Some("netns"), "{line}");
        assert_eq!(jstr(&line, "direction"), Some("forward"), "{line}");
        assert_eq!(ju64(&line, "netns"), Some(t.ctr.inode()), "{line}");
    }

    // A published port: the world connects to the host, DNAT takes it to
    // the server inside, which owns it.
    let server = Agent::server(&t.ctr, INSIDE);
    let mut client = Agent::client(&t.world);
    for (family, host_addr, world) in [("v4", CLIENT_V4, WORLD_V4), ("v6", CLIENT_V6, WORLD_V6)] {
        let (idx, port) = client.tcp_connect(host_addr, PUBLISHED);
        client.tcp_send(idx, 10);
        let line = owned_line(
            &mut ft,
            &format!("the published {family} flow with an owner"),
            (world, port, host_addr, PUBLISHED),
        );
        assert_eq!(
            ju64(&line, "pid"),
            Some(u64::from(server.pid())),
            "{family}: {line}"
        );
        assert_eq!(jstr(&line, "attribution"), Some("netns"), "{line}");
        assert_eq!(ju64(&line, "netns"), Some(t.ctr.inode()), "{line}");
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn a_lookalike_namespace_not_routed_through_the_host_never_lends_its_process() {
    lookalike_never_lends_its_process("ebpf");
}

/// The same when every namespace with a process is looked at (/proc mode
/// finds the look-alike too, and must still not ask it).
#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn with_procfs_attribution_a_lookalike_namespace_never_lends_its_process() {
    lookalike_never_lends_its_process("procfs");
}

fn lookalike_never_lends_its_process(mode: &str) {
    if !require_root() {
        return;
    }
    let t = topology();
    let mut ft = Flowtop::start(&t.host, &live_args(mode));
    // The container is there and known (it made a socket), so the host
    // routes to a namespace with sockets; the look-alike holds the tuple.
    let _known = held_client(&t.ctr, CTR_V4, 40200, WORLD_V4, WORLD_PORT);
    owned_line(
        &mut ft,
        "the container's own flow",
        (CTR_V4, 40200, WORLD_V4, WORLD_PORT),
    );
    let twin = held_client(&t.lookalike, CTR_V4, 40201, WORLD_V4, WORLD_PORT);
    t.host.conntrack(&format!(
        "-I -s {CTR_V4} -d {WORLD_V4} -p tcp --sport 40201 --dport {WORLD_PORT} --state ESTABLISHED -t 300 -u ASSURED"
    ));
    let new = ft.wait_for("the inserted flow", WAIT, |v| {
        has_tuple(v, "tcp", CTR_V4, 40201, WORLD_V4, WORLD_PORT)
    });
    std::thread::sleep(Duration::from_millis(2500)); // retries, a namespace scan
    ft.pump();
    let lent: Vec<&Value> = ft
        .lines
        .iter()
        .filter(|v| has_tuple(v, "tcp", CTR_V4, 40201, WORLD_V4, WORLD_PORT) && !v["pid"].is_null())
        .collect();
    assert!(
        lent.is_empty(),
        "the look-alike's process {} was lent: {lent:?} (new: {new})",
        twin.1
    );
    drop(t.world);
}

/// A container's connection made before flowtop started has no socket
/// event: its namespace is found from the process in it, by a live eBPF
/// run (from its initial dump) and by `--once` (one /proc scan).
#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn a_container_connected_before_flowtop_started_owns_its_flow() {
    if !require_root() {
        return;
    }
    let t = topology();
    let tuple = (CTR_V4, 40300, WORLD_V4, WORLD_PORT);
    let (src, sport, dst, dport) = tuple;
    let inside = held_client(&t.ctr, src, sport, dst, dport);
    // The look-alike holds the same tuple, as in the test above.
    let _twin = held_client(&t.lookalike, src, sport, dst, dport);
    let check = |line: &Value, how: &str| {
        assert_eq!(ju64(line, "pid"), Some(u64::from(inside.1)), "{how}: {line}");
        assert_eq!(jstr(line, "attribution"), Some("netns"), "{how}: {line}");
        assert_eq!(ju64(line, "netns"), Some(t.ctr.inode()), "{how}: {line}");
    };
    let mut ft = Flowtop::start(&t.host, &live_args("ebpf"));
    let line = owned_line(&mut ft, "the older flow with an owner (live, eBPF)", tuple);
    check(&line, "live, eBPF");
    ft.stop();

    let once = flowtop_once(&t.host, &["--once", "--json", "-T"]);
    once.assert_ok("--once");
    let flows = once.flows();
    let line = flows
        .iter()
        .find(|v| has_tuple(v, "tcp", tuple.0, tuple.1, tuple.2, tuple.3))
        .unwrap_or_else(|| panic!("--once did not show the flow: {flows:?}"));
    check(line, "--once");
}

// -- identity from cgroups ----------------------------------------------------

/// The cgroup2 mount (hybrid hosts: /sys/fs/cgroup/unified).
fn cgroup2() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let all: Vec<&str> = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| f[1])
        })
        .collect();
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .find(|p| all.contains(p))
        .or(all.first().copied())
        .map(PathBuf::from)
}

/// Cgroups made for a test under `<cgroup2>/ft-ident-PID`, removed (once
/// their processes are gone) on drop.
struct Cgroups {
    root: PathBuf,
    made: Vec<PathBuf>,
}

impl Cgroups {
    fn new(mount: PathBuf) -> Cgroups {
        let root = mount.join(format!("ft-ident-{}", std::process::id()));
        std::fs::create_dir(&root).unwrap_or_else(|e| panic!("mkdir {}: {e}", root.display()));
        Cgroups {
            made: vec![root.clone()],
            root,
        }
    }

    /// Makes `rel` (each level) and returns its path as /proc/PID/cgroup
    /// would show it relative to the mount.
    fn make(&mut self, rel: &str) -> PathBuf {
        let mut p = self.root.clone();
        for part in rel.split('/') {
            p = p.join(part);
            if !p.exists() {
                std::fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
                self.made.push(p.clone());
            }
        }
        p
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in self.made.iter().rev() {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

const DOCKER_ID: &str = "4c01db0b339c6a0b3bde4a9f2e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d";
const PODMAN_ID: &str = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d4c01db0b339c6a0b3bde4a9f";

#[test]
#[ignore = "needs root, network namespaces and cgroup2: run by `cargo xtask test` as root"]
fn processes_in_container_unit_and_app_cgroups_are_named_by_them() {
    if !require_root() {
        return;
    }
    let Some(mount) = cgroup2() else {
        flowtop_testkit::skip::skip("no cgroup2 file system is mounted");
        return;
    };
    let mut cgroups = Cgroups::new(mount.clone());
    let (client, server) = Netns::pair();
    let _srv = Agent::server(&server, 7020);
    let mut ft = Flowtop::start(&client, &["--json", "-t", "1", "-T", "--attribution", "ebpf"]);
    struct Case {
        rel: String,
        sport: u16,
        unit: Option<String>,
        container: Option<&'static str>,
        app: Option<&'static str>,
    }
    let cases = [
        Case {
            rel: format!("system.slice/docker-{DOCKER_ID}.scope"),
            sport: 40301,
            unit: Some(format!("docker-{DOCKER_ID}.scope")),
            container: Some(DOCKER_ID),
            app: None,
        },
        Case {
            rel: format!("machine.slice/libpod-{PODMAN_ID}.scope"),
            sport: 40302,
            unit: Some(format!("libpod-{PODMAN_ID}.scope")),
            container: Some(PODMAN_ID),
            app: None,
        },
        Case {
            rel: "system.slice/ft-demo.service".into(),
            sport: 40303,
            unit: Some("ft-demo.service".into()),
            container: None,
            app: None,
        },
        Case {
            rel: "user.slice/app.slice/app-flatpak-org.example.Demo-4242.scope".into(),
            sport: 40304,
            unit: Some("app-flatpak-org.example.Demo-4242.scope".into()),
            container: None,
            app: Some("org.example.Demo"),
        },
        Case {
            rel: "plain".into(),
            sport: 40305,
            unit: None,
            container: None,
            app: None,
        },
    ];
    let mut held_clients = Vec::new();
    for case in &cases {
        let dir = cgroups.make(&case.rel);
        // Into the cgroup first: `ip netns exec` remounts /sys.
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec ip netns exec {} {} -c \"$0\" {CLIENT_V4} {} {SERVER_V4} 7020",
            dir.display(),
            client.name,
            python(),
            case.sport
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script, HELD_PY]);
        let h = held(cmd, &case.rel);
        let line = owned_line(&mut ft, &case.rel, (CLIENT_V4, case.sport, SERVER_V4, 7020));
        assert_eq!(ju64(&line, "pid"), Some(u64::from(h.1)), "{line}");
        let want_cgroup = format!(
            "/{}",
            dir.strip_prefix(&mount).expect("under the mount").display()
        );
        assert_eq!(jstr(&line, "cgroup"), Some(want_cgroup.as_str()), "{line}");
        assert_eq!(jstr(&line, "unit"), case.unit.as_deref(), "{line}");
        assert_eq!(jstr(&line, "container"), case.container, "{line}");
        assert_eq!(jstr(&line, "app"), case.app, "{line}");
        assert_eq!(ju64(&line, "netns"), Some(client.inode()), "{line}");
        held_clients.push(h);
    }
    drop(held_clients);
    drop(ft);
}
