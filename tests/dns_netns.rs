//! Root-only tests of reverse DNS through a namespace's own resolv.conf: a
//! "DNS server host" namespace at 198.51.100.1 runs the `ptr_server` example,
//! and the `rdns` example runs in the client namespace under `ip netns exec`,
//! which bind-mounts `/etc/netns/NS/resolv.conf` (and `hosts`) over `/etc`.
//!
//! `cargo test -p flowtop --test dns_netns -- --ignored --test-threads=1`
//! (which `cargo xtask test` does). The examples are built by `cargo test`
//! of the package; run alone, this test builds them first.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;

use flowtop_testkit::harness::*;

/// The DNS server host's address (on the server side of the veth pair).
const DNS_V4: &str = "198.51.100.1";

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The client's /etc/netns resolv.conf naming the test DNS server, with
/// resolver `options` ("" for none).
fn resolv_conf(client: &Netns, options: &str) -> EtcNetns {
    let text = if options.is_empty() {
        format!("nameserver {DNS_V4}\n")
    } else {
        format!("nameserver {DNS_V4}\noptions {options}\n")
    };
    EtcNetns::new(client, &[("resolv.conf", &text)])
}

/// `ptr_server` answering on the test DNS server's address, port 53.
fn dns_server(server: &Netns, args: &[&str]) -> Killed {
    let listen = format!("{DNS_V4}:53");
    let mut all = vec!["--listen", listen.as_str()];
    all.extend_from_slice(args);
    ptr_server(server, &all)
}

/// Starts `ptr_server` in `ns` and waits for its "listening on" line.
fn ptr_server(ns: &Netns, args: &[&str]) -> Killed {
    let mut cmd = ns.netns_exec(example("ptr_server").to_str().expect("utf-8 path"), args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = Killed(cmd.spawn().expect("spawn ptr_server"));
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    match rx.recv_timeout(WAIT) {
        Ok(l) if l.starts_with("listening on") => child,
        other => panic!("ptr_server did not start: {other:?}"),
    }
}

/// Client and DNS-server namespaces: the server namespace also has
/// 198.51.100.1, reached from the client over the veth link.
fn dns_pair() -> (Netns, Netns) {
    let (client, server) = Netns::pair();
    server.ip(&["addr", "add", &format!("{DNS_V4}/32"), "dev", "vs"]);
    client.ip(&["route", "add", &format!("{DNS_V4}/32"), "dev", "vc"]);
    (client, server)
}

/// What `rdns` printed: (ip, shown name) and (proto, local, server) lines.
type RdnsOutput = (Vec<(String, String)>, Vec<(String, String, String)>);

fn parse_rdns(out: &str) -> RdnsOutput {
    let mut names = Vec::new();
    let mut own = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["own", proto, local, server] => {
                own.push((proto.to_string(), local.to_string(), server.to_string()))
            }
            [ip, name] => names.push((ip.to_string(), name.to_string())),
            _ => panic!("unexpected rdns line {line:?} in:\n{out}"),
        }
    }
    (names, own)
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn resolves_through_the_namespace_resolv_conf_and_hosts() {
    if !require_root() {
        return;
    }
    let (client, server) = dns_pair();
    let _etc = EtcNetns::new(
        &client,
        &[
            (
                "resolv.conf",
                &format!("nameserver {DNS_V4}\noptions timeout:1 attempts:1\n"),
            ),
            ("hosts", "127.0.0.1 localhost\n192.0.2.77 from-hosts.test alias\n"),
        ],
    );
    let _srv = dns_server(
        &server,
        &[
            "--ptr",
            &format!("{SERVER_V4}=server.test"),
            "--ptr",
            &format!("{SERVER_V6}=server6.test"),
            "--ptr",
            "203.0.113.9=evil\u{1b}[2J.test",
            "--ptr",
            // The hosts file wins over DNS for this one.
            "192.0.2.77=from-dns.test",
        ],
    );
    let ips = [SERVER_V4, SERVER_V6, "203.0.113.9", "203.0.113.10", "192.0.2.77"];
    let out = client.run(example("rdns").to_str().expect("utf-8 path"), &ips);
    let (names, own) = parse_rdns(&out);
    let shown: Vec<(&str, &str)> = names.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        shown,
        [
            (SERVER_V4, "server.test"),
            (SERVER_V6, "server6.test"),
            ("203.0.113.9", "evil\\x1b[2J.test"),
            ("203.0.113.10", "-"),
            ("192.0.2.77", "from-hosts.test"),
        ],
        "rdns printed:\n{out}"
    );

    // Four DNS lookups, each from its own UDP socket to the namespace's
    // name server (none for the hosts-file name).
    let dns_server = format!("{DNS_V4}:53");
    assert_eq!(own.len(), 4, "{out}");
    assert!(
        own.iter().all(|(p, _, s)| p == "udp" && *s == dns_server),
        "{out}"
    );
    let own_ports: BTreeSet<u16> = own
        .iter()
        .map(|(_, l, _)| l.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port"))
        .collect();

    // The kernel saw exactly those sockets: conntrack's original tuples of the
    // queries are (client -> 198.51.100.1:53) from the recorded ports, which
    // is what is_own_query matches.
    let ct_ports: BTreeSet<u16> = client
        .conntrack_list()
        .iter()
        .filter(|e| e.proto == "udp" && e.dst.to_string() == DNS_V4 && e.dport == Some(53))
        .filter_map(|e| e.sport)
        .collect();
    assert_eq!(ct_ports, own_ports, "rdns printed:\n{out}");
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn a_silent_name_server_gives_no_name_within_the_timeout() {
    if !require_root() {
        return;
    }
    let (client, server) = dns_pair();
    let _etc = resolv_conf(&client, "");
    let _srv = dns_server(&server, &["--silent"]);
    // rdns waits at most 2 × timeout + 1 s before printing "?": a lookup
    // that ends prints "-" instead.
    let out = client.run(
        example("rdns").to_str().expect("utf-8 path"),
        &["--timeout-ms", "500", SERVER_V4],
    );
    let (names, _) = parse_rdns(&out);
    assert_eq!(names, [(SERVER_V4.to_string(), "-".to_string())], "{out}");
}

/// Inserts a UDP entry from 198.51.100.1:SPORT to DST:443 (no packet sent).
fn insert_udp(ns: &Netns, dst: &str, sport: u16) {
    ns.conntrack(&format!(
        "-I -p udp -s 198.51.100.1 -d {dst} --sport {sport} --dport 443 -t 300"
    ));
}

fn flow_to<'a>(lines: &'a [&'a serde_json::Value], dst: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|v| jstr(v, "dst") == Some(dst))
        .unwrap_or_else(|| panic!("no flow to {dst} in {lines:#?}"))
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn flowtop_names_flows_and_escapes_hostile_names() {
    if !require_root() {
        return;
    }
    let (client, server) = dns_pair();
    let _etc = resolv_conf(&client, "timeout:1 attempts:1");
    let _srv = dns_server(
        &server,
        &[
            "--ptr",
            "81.2.69.142=far.test",
            "--ptr",
            "203.0.113.9=evil\u{1b}]0;owned\u{7}\u{1b}[2J.test",
            "--delay-ms",
            "200",
        ],
    );
    insert_udp(&client, "81.2.69.142", 1000);
    insert_udp(&client, "203.0.113.9", 1001);
    insert_udp(&client, "203.0.113.10", 1002); // no PTR record

    // --once waits for the names (each answer takes 200 ms here).
    let run = flowtop_once(&client, &["--once", "--json", "-U"]);
    run.assert_ok("--once --json with DNS");
    let flows = run.flows();
    assert_eq!(jstr(flow_to(&flows, "81.2.69.142"), "dst_host"), Some("far.test"));
    assert_eq!(
        jstr(flow_to(&flows, "203.0.113.9"), "dst_host"),
        Some("evil\u{1b}]0;owned\u{7}\u{1b}[2J.test"),
        "JSON carries the name, escaped by JSON itself"
    );
    assert_eq!(jstr(flow_to(&flows, "203.0.113.10"), "dst_host"), None);
    assert!(!run.stdout.contains('\u{1b}'), "a raw ESC reached stdout");
    assert_eq!(run.lines[0]["dns"], "on", "meta line: {}", run.lines[0]);

    // The text table shows the hostile name escaped, never raw.
    let text = run_to_end(client.netns_exec(flowtop_bin(), &["--once", "-U"]), WAIT);
    assert!(text.status.success(), "{}", text.stderr);
    assert!(text.stdout.contains("far.test"), "{}", text.stdout);
    assert!(
        text.stdout.contains("evil\\x1b]0;owned\\x07\\x1b[2J.test"),
        "{}",
        text.stdout
    );
    assert!(!text.stdout.contains('\u{1b}') && !text.stdout.contains('\u{7}'));

    // -n: no names, no lookups.
    let off = flowtop_once(&client, &["--once", "--json", "-U", "-n"]);
    off.assert_ok("--once -n");
    assert!(off.flows().iter().all(|v| jstr(v, "dst_host").is_none()));
    assert_eq!(off.lines[0]["dns"], "off");
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn names_arriving_late_come_as_updates_and_own_queries_stay_hidden() {
    if !require_root() {
        return;
    }
    let (client, server) = dns_pair();
    let _etc = resolv_conf(&client, "timeout:2");
    let _srv = dns_server(&server, &["--ptr", "81.2.69.142=far.test", "--delay-ms", "500"]);
    let mut ft = Flowtop::start(&client, &["--json", "-U", "-t", "1"]);
    // Somebody else's DNS flow (same server, a port flowtop never used).
    client.conntrack(&format!(
        "-I -p udp -s {CLIENT_V4} -d {DNS_V4} --sport 7 --dport 53 -t 300"
    ));
    insert_udp(&client, "81.2.69.142", 2000);
    let first = ft.wait_for("the new flow", WAIT, |v| {
        is_flow_event(v) && jstr(v, "dst") == Some("81.2.69.142")
    });
    assert_eq!(
        jstr(&first, "dst_host"),
        None,
        "the name cannot have arrived yet: {first}"
    );
    let update = ft.wait_for("an update carrying the name", WAIT, |v| {
        event(v) == "update" && jstr(v, "dst") == Some("81.2.69.142") && jstr(v, "dst_host").is_some()
    });
    assert_eq!(jstr(&update, "dst_host"), Some("far.test"), "{update}");
    // flowtop's queries went to the name server: the kernel tracked them,
    // flowtop did not show them.
    let queries = client
        .conntrack_list()
        .into_iter()
        .filter(|e| e.proto == "udp" && e.dst.to_string() == DNS_V4 && e.dport == Some(53))
        .count();
    assert!(queries >= 2, "expected flowtop's PTR queries in conntrack");
    ft.pump();
    let shown: Vec<_> = ft
        .lines
        .iter()
        .filter(|v| is_flow_event(v) && jport(v, "dport") == Some(53))
        .collect();
    assert!(
        shown.iter().all(|v| jport(v, "sport") == Some(7)),
        "flowtop showed its own DNS queries: {shown:#?}"
    );
    assert!(!shown.is_empty(), "another process's DNS flow must be shown");
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn a_silent_name_server_does_not_hold_up_the_table() {
    if !require_root() {
        return;
    }
    let (client, server) = dns_pair();
    let _etc = resolv_conf(&client, "timeout:2");
    let _srv = dns_server(&server, &["--silent"]);
    for i in 0..40u16 {
        insert_udp(&client, &format!("203.0.113.{}", i + 1), 3000 + i);
    }
    let mut ft = Flowtop::start(&client, &["--json", "-U", "-t", "1"]);
    // Every entry's line is out, nameless, while all 40 lookups are still
    // unanswered: a lookup ends only after its 2 s time-out, so a table
    // that waited for DNS could not print a single line before then.
    let t0 = now_secs();
    let mut seen = BTreeSet::new();
    while seen.len() < 40 {
        let v = ft.wait_for("snapshot lines", WAIT, |v| event(v) == "snapshot");
        assert_eq!(jstr(&v, "dst_host"), None);
        seen.insert(jstr(&v, "dst").map(str::to_owned));
    }
    assert!(
        now_secs() - t0 < 2.0,
        "the table waited for the silent name server"
    );
    // --once with the same silent server ends (bounded by the time-out).
    let run = flowtop_once(&client, &["--once", "--json", "-U"]);
    run.assert_ok("--once with a silent name server");
    // (The queries of the streaming run above are flows of another process
    // by now, and shown as such: count the inserted entries.)
    let inserted = run
        .flows()
        .iter()
        .filter(|v| jport(v, "dport") == Some(443))
        .count();
    assert_eq!(inserted, 40);
}

/// The name server answers garbage, then dies, then a working one takes
/// its place, all while flowtop streams: flowtop keeps running and writing
/// lines (nameless while there is no usable answer), and names flows again
/// once the server answers properly.
#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn a_garbage_then_dead_name_server_while_streaming_is_survived() {
    if !require_root() {
        return;
    }
    let (client, server) = dns_pair();
    let _etc = resolv_conf(&client, "timeout:1 attempts:1");
    let listen = format!("{DNS_V4}:53");
    let garbage = ptr_server(
        &server,
        &["--listen", &listen, "--garbage", "--ptr", "203.0.113.1=one.test"],
    );
    let mut ft = Flowtop::start(&client, &["--json", "-U", "-t", "1"]);
    insert_udp(&client, "203.0.113.1", 4001);
    let v = ft.wait_for("the first flow", WAIT, |v| jstr(v, "dst") == Some("203.0.113.1"));
    assert_eq!(jstr(&v, "dst_host"), None);
    // Garbage answers never become a name.
    std::thread::sleep(std::time::Duration::from_secs(2));
    ft.pump();
    assert!(
        ft.lines.iter().all(|v| jstr(v, "dst_host").is_none()),
        "a garbage answer became a name"
    );
    drop(garbage); // dead: queries get ICMP port unreachable
    insert_udp(&client, "203.0.113.2", 4002);
    ft.wait_for("a flow while the server is dead", WAIT, |v| {
        jstr(v, "dst") == Some("203.0.113.2")
    });
    let _good = ptr_server(&server, &["--listen", &listen, "--ptr", "203.0.113.3=three.test"]);
    insert_udp(&client, "203.0.113.3", 4003);
    ft.wait_for("a name from the working server", WAIT, |v| {
        jstr(v, "dst") == Some("203.0.113.3") && jstr(v, "dst_host") == Some("three.test")
    });
    ft.stop();
    assert!(ft.bad.is_empty(), "{:?}", ft.bad);
}
