//! `cargo xtask bench attribution`, accuracy half: the same short-lived
//! workload watched by flowtop in eBPF mode, flowtop in /proc mode, and
//! netsniff-ng's flowtop 0.6.8 (read off its screen through tmux); the share
//! of flows each attributes to the right PID.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const CLIENT: &str = "192.0.2.1";
const SERVER: &str = "192.0.2.2";
const PORT: u16 = 7100;

/// Two namespaces joined by a veth pair; removed when dropped.
struct Pair {
    client: String,
    server: String,
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn in_ns(ns: &str, prog: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, prog]);
    c
}

impl Pair {
    fn new() -> Result<Pair> {
        let id = std::process::id();
        let pair = Pair {
            client: format!("ftattr-c-{id}"),
            server: format!("ftattr-s-{id}"),
        };
        for ns in [&pair.client, &pair.server] {
            run(Command::new("ip").args(["netns", "add", ns]))?;
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]))?;
        }
        let (c, s) = (&pair.client, &pair.server);
        run(Command::new("ip").args([
            "-n", c, "link", "add", "vc", "type", "veth", "peer", "name", "vs", "netns", s,
        ]))?;
        run(Command::new("ip").args(["-n", c, "addr", "add", &format!("{CLIENT}/24"), "dev", "vc"]))?;
        run(Command::new("ip").args(["-n", s, "addr", "add", &format!("{SERVER}/24"), "dev", "vs"]))?;
        run(Command::new("ip").args(["-n", c, "link", "set", "vc", "up"]))?;
        run(Command::new("ip").args(["-n", s, "link", "set", "vs", "up"]))?;
        run(in_ns(c, "nft").args(["add table inet t; add chain inet t out { type filter hook output priority 0; }; add rule inet t out ct state new,established accept"]))?;
        run(in_ns(c, "sysctl").args(["-qw", "net.ipv4.ping_group_range=0 2147483647"]))?;
        Ok(pair)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A child that is killed when dropped.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SERVER_PY: &str = "import socket, threading
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(('0.0.0.0', 7100)); t.listen(512)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', 7100))
def tcp():
    while True:
        c, _ = t.accept(); c.close()
threading.Thread(target=tcp, daemon=True).start()
while True:
    u.recvfrom(64)
";

/// One short-lived process making one flow; returns (proto, pid, local port or echo id).
fn short_lived(ns: &str, kind: &str) -> Result<(&'static str, u32, u16)> {
    let body = match kind {
        "tcp" => format!("s = socket.create_connection(('{SERVER}', {PORT}))"),
        "udp" => format!(
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('{SERVER}', {PORT}))"
        ),
        _ => format!(
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP); \
             s.sendto(b'\\x08\\0\\0\\0\\0\\0\\0\\1', ('{SERVER}', 0))"
        ),
    };
    let script = format!("import socket\n{body}\nprint(s.getsockname()[1], flush=True)\n");
    let child = in_ns(ns, "/usr/bin/python3")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let out = child.wait_with_output()?;
    let port = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("port printed")?;
    let proto = match kind {
        "tcp" => "tcp",
        "udp" => "udp",
        _ => "icmp",
    };
    Ok((proto, pid, port))
}

fn workload(ns: &str) -> Result<Vec<(&'static str, u32, u16)>> {
    let mut all = Vec::new();
    for (kind, n) in [("tcp", 20), ("udp", 20), ("ping", 10)] {
        for _ in 0..n {
            all.push(short_lived(ns, kind)?);
        }
    }
    Ok(all)
}

/// flowtop in one attribution mode: the share of the workload attributed right.
fn flowtop_mode(flowtop: &Path, pair: &Pair, mode: &str) -> Result<(usize, usize)> {
    let out_path = std::env::temp_dir().join(format!("ftattr-{mode}-{}.json", std::process::id()));
    let out = fs::File::create(&out_path)?;
    let child = in_ns(&pair.client, &flowtop.display().to_string())
        .args(["--json", "-t", "1", "-4TUI", "--no-sysctl", "--attribution", mode])
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()?;
    let ft = Kill(child);
    sleep(Duration::from_millis(1500));
    let expected = workload(&pair.client)?;
    sleep(Duration::from_secs(3)); // events, then /proc scans, can land
                                   // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(ft.0.id() as i32, libc::SIGINT) };
    sleep(Duration::from_millis(500));
    drop(ft);
    let text = fs::read_to_string(&out_path)?;
    let _ = fs::remove_file(&out_path);
    let mut hits: HashSet<u32> = HashSet::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(pid) = v.get("pid").and_then(|p| p.as_u64()) else {
            continue;
        };
        for (proto, want_pid, port) in &expected {
            let same = v.get("proto").and_then(|p| p.as_str()) == Some(*proto)
                && v.get("src").and_then(|p| p.as_str()) == Some(CLIENT)
                && if *proto == "icmp" {
                    v.get("icmp_id").and_then(|p| p.as_u64()) == Some(u64::from(*port))
                } else {
                    v.get("sport").and_then(|p| p.as_u64()) == Some(u64::from(*port))
                };
            if same && pid == u64::from(*want_pid) {
                hits.insert(*want_pid);
            }
        }
    }
    Ok((hits.len(), expected.len()))
}

/// flowtop 0.6.8 on a tmux screen: a workload process counts when its PID
/// shows on any screen captured during the run.
fn legacy(pair: &Pair) -> Result<(usize, usize)> {
    let session = format!("ftattr-{}", std::process::id());
    let cmdline = format!("ip netns exec {} /usr/sbin/flowtop -4TUI -G -n", pair.client);
    run(Command::new("tmux").args([
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "220",
        "-y",
        "60",
        &cmdline,
    ]))?;
    // flowtop 0.6.8 survives its terminal going away (and spins): kill the
    // pane's process (ip netns exec execs flowtop, so it is flowtop) first.
    struct Session(String);
    impl Drop for Session {
        fn drop(&mut self) {
            let pane = Command::new("tmux")
                .args(["display-message", "-p", "-t", &self.0, "#{pane_pid}"])
                .output();
            if let Some(pid) = pane
                .ok()
                .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<i32>().ok())
            {
                // SAFETY: kill(2) of the pane process this bench started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", &self.0])
                .status();
        }
    }
    let _s = Session(session.clone());
    sleep(Duration::from_secs(2));
    let capture = |seen: &mut String| {
        if let Ok(o) = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &session])
            .output()
        {
            seen.push_str(&String::from_utf8_lossy(&o.stdout));
        }
    };
    let mut seen = String::new();
    let mut expected = Vec::new();
    let start = Instant::now();
    for (kind, n) in [("tcp", 20), ("udp", 20), ("ping", 10)] {
        for _ in 0..n {
            expected.push(short_lived(&pair.client, kind)?);
            capture(&mut seen);
        }
    }
    while start.elapsed() < Duration::from_secs(8) {
        capture(&mut seen);
        sleep(Duration::from_millis(200));
    }
    if !seen.contains("Kernel netfilter flows") {
        bail!("flowtop 0.6.8's screen never appeared in tmux");
    }
    // Its flow count line proves it saw the workload's flows at all.
    let saw_flows = seen
        .lines()
        .any(|l| l.contains("Kernel netfilter flows(") && !l.contains("flows(0)"));
    if !saw_flows {
        bail!("flowtop 0.6.8 showed no flows at all during the workload");
    }
    let words: HashSet<&str> = seen.split(|c: char| !c.is_ascii_digit()).collect();
    let hits = expected
        .iter()
        .filter(|(_, pid, _)| words.contains(pid.to_string().as_str()))
        .count();
    Ok((hits, expected.len()))
}

/// Runs the three and returns a markdown table.
pub fn accuracy(flowtop: &Path) -> Result<String> {
    let pair = Pair::new()?;
    let _server = Kill(
        in_ns(&pair.server, "/usr/bin/python3")
            .args(["-c", SERVER_PY])
            .spawn()?,
    );
    sleep(Duration::from_millis(500));
    let mut table = String::from(
        "Workload: 50 short-lived processes in a namespace (20 TCP connects, 20 UDP sends, 10 ICMP echoes \
         from ping sockets), each exiting at once.\n\n| watcher | attributed to the right PID | share |\n|---|---:|---:|\n",
    );
    for (name, result) in [
        ("flowtop --attribution ebpf", flowtop_mode(flowtop, &pair, "ebpf")),
        (
            "flowtop --attribution procfs (-t 1)",
            flowtop_mode(flowtop, &pair, "procfs"),
        ),
        ("flowtop 0.6.8 (screen read through tmux)", legacy(&pair)),
    ] {
        match result {
            Ok((hit, n)) => table.push_str(&format!(
                "| {name} | {hit} of {n} | {:.0}% |\n",
                100.0 * hit as f64 / n.max(1) as f64
            )),
            Err(e) => table.push_str(&format!("| {name} | not measured: {e:#} | |\n")),
        }
    }
    Ok(table)
}
