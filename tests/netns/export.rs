//! IPFIX export to stock collectors (issue 16): pmacct's `nfacctd` decodes
//! flowtop's records, with the process fields through the primitives file
//! in conf/pmacct, and libfixbuf's `ipfixDump` parses templates and records.

use super::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// A scratch directory removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("flowtop-export-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn primitives() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/pmacct/flowtop.primitives")
}

/// nfacctd listening on 127.0.0.1:`port` of `ns`, printing every second
/// one JSON line per direction, ports and processes into `dir`/out.json.
fn nfacctd(ns: &Netns, port: u16, dir: &Path) -> Killed {
    let conf = dir.join("nfacctd.conf");
    std::fs::write(
        &conf,
        format!(
            "daemonize: false\nnfacctd_ip: 127.0.0.1\nnfacctd_port: {port}\n\
             aggregate_primitives: {}\nplugins: print\nprint_output: json\n\
             print_output_file: {}\nprint_output_file_append: true\nprint_refresh_time: 1\n\
             aggregate: src_host, dst_host, src_port, dst_port, proto, src_proc_pid, src_proc_name, \
             src_proc_user, dst_proc_pid, dst_proc_name\n",
            primitives().display(),
            dir.join("out.json").display()
        ),
    )
    .expect("nfacctd.conf");
    let child = ns
        .cmd("nfacctd")
        .arg("-f")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("nfacctd.log")).expect("log"))
        .spawn()
        .expect("nfacctd starts");
    std::thread::sleep(Duration::from_secs(1));
    Killed(child)
}

/// Every line nfacctd printed so far.
fn printed(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("out.json"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// (packets, bytes) nfacctd counted from `sport` to `dport`.
fn counted(lines: &[Value], sport: u16, dport: u16) -> (u64, u64) {
    lines
        .iter()
        .filter(|v| {
            ju64(v, "port_src") == Some(u64::from(sport)) && ju64(v, "port_dst") == Some(u64::from(dport))
        })
        .fold((0, 0), |(p, b), v| {
            (
                p + ju64(v, "packets").unwrap_or(0),
                b + ju64(v, "bytes").unwrap_or(0),
            )
        })
}

/// Conntrack's counters of the TCP flow from local port `sport`:
/// ((orig packets, orig bytes), (reply packets, reply bytes)).
fn conntrack_counters(ns: &Netns, sport: u16) -> ((u64, u64), (u64, u64)) {
    let out = ns.run(
        "conntrack",
        &["-L", "-p", "tcp", "--sport", &sport.to_string(), "-o", "extended"],
    );
    let nums = |key: &str| -> Vec<u64> {
        out.split_whitespace()
            .filter_map(|w| w.strip_prefix(key).and_then(|n| n.parse().ok()))
            .collect()
    };
    let (p, b) = (nums("packets="), nums("bytes="));
    assert!(
        p.len() == 2 && b.len() == 2,
        "no counters in `conntrack -L`: {out}"
    );
    ((p[0], b[0]), (p[1], b[1]))
}

fn comm_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Closes a connection, waits for the last packets, reads conntrack's
/// counters and deletes the entry (its DESTROY ends the flow at once);
/// then waits until nfacctd counted exactly those, per direction.
fn end_and_compare(client: &Netns, cl: &mut Agent, idx: usize, lport: u16, dir: &Path, what: &str) {
    cl.tcp_close(idx);
    std::thread::sleep(Duration::from_millis(1500));
    let (orig, reply) = conntrack_counters(client, lport);
    client.run("conntrack", &["-D", "-p", "tcp", "--sport", &lport.to_string()]);
    let ok = poll_until(Duration::from_secs(10), Duration::from_millis(250), || {
        let lines = printed(dir);
        (counted(&lines, lport, 5010) == orig && counted(&lines, 5010, lport) == reply).then_some(())
    });
    if ok.is_none() {
        let lines = printed(dir);
        panic!(
            "{what}: nfacctd counted {:?} out and {:?} back, conntrack {orig:?} and {reply:?}\n{}",
            counted(&lines, lport, 5010),
            counted(&lines, 5010, lport),
            lines.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
        );
    }
}

#[test]
#[ignore = "needs root, network namespaces and nfacctd (pmacct): run by `cargo xtask test` as root"]
fn nfacctd_counts_both_directions_with_the_process() {
    if !require_root() || !require_tool("nfacctd") {
        return;
    }
    let dir = Scratch::new("nfacctd");
    let (client, server) = Netns::pair();
    let _srv = Agent::server(&server, 5010);
    let _nf = nfacctd(&client, 4739, &dir.0);
    let mut ft = Flowtop::start(
        &client,
        &[
            "--json",
            "-T",
            "-t",
            "1",
            "--ipfix",
            "127.0.0.1:4739",
            "--ipfix-active",
            "2",
        ],
    );
    let mut cl = Agent::client(&client);

    // A long-lived flow: its records arrive while it is open.
    let (long, long_port) = cl.tcp_connect(SERVER_V4, 5010);
    // Read once the agent answered (`ip netns exec` has exec'd it by then).
    let (pid, comm) = (cl.pid(), comm_of(cl.pid()));
    cl.tcp_send(long, 50_000);
    let seen = poll_until(Duration::from_secs(12), Duration::from_millis(250), || {
        printed(&dir.0).into_iter().find(|v| {
            ju64(v, "port_src") == Some(u64::from(long_port)) && ju64(v, "packets").is_some_and(|p| p > 0)
        })
    });
    let Some(rec) = seen else {
        ft.fail("no record of the open flow reached nfacctd within 12 s (--ipfix-active 2)");
    };
    // The process sent this direction: source-process fields.
    assert_eq!(
        jstr(&rec, "src_proc_pid"),
        Some(pid.to_string().as_str()),
        "{rec}"
    );
    assert_eq!(jstr(&rec, "src_proc_name"), Some(comm.as_str()), "{rec}");
    cl.tcp_send(long, 30_000);

    // A short flow, then both end: the records add up to conntrack's counters.
    let (short, short_port) = cl.tcp_connect(SERVER_V4, 5010);
    cl.tcp_send(short, 20_000);
    end_and_compare(&client, &mut cl, short, short_port, &dir.0, "short flow");
    end_and_compare(&client, &mut cl, long, long_port, &dir.0, "long-lived flow");
    // The reply direction carries the process as its destination.
    let back = printed(&dir.0)
        .into_iter()
        .find(|v| ju64(v, "port_dst") == Some(u64::from(short_port)))
        .expect("a reply record");
    assert_eq!(
        jstr(&back, "dst_proc_pid"),
        Some(pid.to_string().as_str()),
        "{back}"
    );
    assert_eq!(jstr(&back, "dst_proc_name"), Some(comm.as_str()), "{back}");
    ft.stop();
}

/// A UDP sink that appends every datagram to a file (an IPFIX file is
/// messages back to back) and counts them on stdout at SIGTERM.
const SINK: &str = r#"
import socket, sys, signal
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
f = open(sys.argv[2], "ab")
signal.signal(signal.SIGTERM, lambda *a: (f.close(), sys.exit(0)))
print("ready", flush=True)
while True:
    d = s.recv(65535)
    f.write(d)
    f.flush()
"#;

fn sink(ns: &Netns, port: u16, file: &Path) -> Killed {
    let mut child = ns
        .cmd(python())
        .args(["-c", SINK, &port.to_string()])
        .arg(file)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the sink starts");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("ready");
    assert_eq!(line.trim(), "ready");
    Killed(child)
}

/// Inserts and deletes `n` TCP entries from port `first` on (public
/// addresses only through conntrack -I; no packet is sent).
fn churn(ns: &Netns, first: u16, n: u16) {
    for p in first..first + n {
        let sport = p.to_string();
        let base = [
            "-p",
            "tcp",
            "-s",
            "198.51.100.7",
            "-d",
            "203.0.113.9",
            "--sport",
            &sport,
            "--dport",
            "443",
        ];
        let mut ins = vec!["-I"];
        ins.extend_from_slice(&base);
        ins.extend_from_slice(&["--state", "ESTABLISHED", "-t", "300", "-u", "ASSURED"]);
        ns.run("conntrack", &ins);
    }
    std::thread::sleep(Duration::from_millis(1500));
    for p in first..first + n {
        let sport = p.to_string();
        ns.run("conntrack", &["-D", "-p", "tcp", "--sport", &sport]);
    }
}

/// ipfixDump's text for `file`: it must exit 0 and report no error.
fn ipfix_dump(file: &Path) -> String {
    let out = Command::new("ipfixDump")
        .arg("--in")
        .arg(file)
        .arg("--yaf")
        .output()
        .expect("ipfixDump runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ipfixDump failed: {text}");
    text
}

#[test]
#[ignore = "needs root, network namespaces and ipfixDump (libfixbuf-tools): run by `cargo xtask test` as root"]
fn ipfixdump_decodes_and_a_late_collector_gets_the_rest() {
    if !require_root() || !require_tool("ipfixDump") {
        return;
    }
    let dir = Scratch::new("ipfixdump");
    let file = dir.0.join("export.ipfix");
    let ns = Netns::with_conntrack();
    let mut ft = Flowtop::start(&ns, &["--json", "-T", "-t", "1", "--ipfix", "127.0.0.1:4740"]);
    // The collector is down: these records are lost, as UDP loses them.
    churn(&ns, 20_000, 5);
    std::thread::sleep(Duration::from_secs(1));
    let _sink = sink(&ns, 4740, &file);
    // Templates go out again every 10 s: wait for them, then more flows.
    std::thread::sleep(Duration::from_secs(11));
    churn(&ns, 21_000, 20);
    let want: Vec<String> = (21_000..21_020).map(|p| p.to_string()).collect();
    let text = poll_until(Duration::from_secs(10), Duration::from_millis(500), || {
        let t = ipfix_dump(&file);
        want.iter().all(|p| t.contains(p.as_str())).then_some(t)
    });
    let Some(text) = text else {
        ft.fail(&format!(
            "ipfixDump does not show the 20 flows made after the collector came up:\n{}",
            ipfix_dump(&file)
        ));
    };
    // Both templates, and enterprise 35632's elements in them.
    assert!(text.contains("256") && text.contains("257"), "{text}");
    assert!(text.contains("35632"), "no ntop enterprise element: {text}");
    ft.stop();
}

/// `promtool check metrics` on `page`: its complaints, if any.
fn promtool(page: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), page.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    }
}

#[test]
#[ignore = "needs root, network namespaces, curl and promtool (prometheus): run by `cargo xtask test` as root"]
fn metrics_pass_promtool_and_count_the_process() {
    if !require_root() || !require_tool("promtool") || !require_tool("curl") {
        return;
    }
    let (client, server) = Netns::pair();
    let _srv = Agent::server(&server, 5010);
    let mut ft = Flowtop::start(
        &client,
        &[
            "--json",
            "-T",
            "-t",
            "1",
            "--metrics",
            "127.0.0.1:9464",
            "--ipfix",
            "127.0.0.1:4741",
        ],
    );
    let mut cl = Agent::client(&client);
    let (c, _) = cl.tcp_connect(SERVER_V4, 5010);
    cl.tcp_send(c, 30_000);
    let comm = comm_of(cl.pid());
    let scrape = || {
        client.run(
            "curl",
            &["-sS", "--max-time", "5", "http://127.0.0.1:9464/metrics"],
        )
    };
    let sent = format!("flowtop_process_bytes_total{{comm=\"{comm}\",");
    let page = poll_until(Duration::from_secs(15), Duration::from_millis(500), || {
        let page = scrape();
        page.lines()
            .any(|l| {
                l.starts_with(&sent)
                    && l.contains("direction=\"sent\"")
                    && l.rsplit(' ')
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .is_some_and(|v| v >= 30_000)
            })
            .then_some(page)
    });
    let Some(page) = page else {
        ft.fail(&format!(
            "no sent bytes >= 30000 for {comm} in the metrics:\n{}",
            scrape()
        ));
    };
    if let Err(e) = promtool(&page) {
        ft.fail(&format!("promtool check metrics: {e}\n{page}"));
    }
    for name in [
        "flowtop_flows{",
        "flowtop_conntrack_limit ",
        "flowtop_ipfix_records_total ",
        "flowtop_lost_events_total ",
        "flowtop_address_book_entries ",
        "flowtop_dns_answers_kept ",
    ] {
        assert!(page.contains(name), "{name} missing:\n{page}");
    }
    ft.stop();
}
