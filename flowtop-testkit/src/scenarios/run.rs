//! Running the suite: the two namespaces, the peer's servers and byte
//! counters, the compiled scenario program, and one flowtop in eBPF mode
//! watching all of it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::list::{Path as Via, Scenario};
use crate::netns::{try_output, Netns, CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6};

/// The scenario client's sources, compiled together.
const SC_SOURCES: [(&str, &str); 4] = [
    ("sc.h", include_str!("sc.h")),
    ("sc.c", include_str!("sc.c")),
    ("raw.c", include_str!("raw.c")),
    ("uring.c", include_str!("uring.c")),
];
const PEER_PY: &str = include_str!("peer.py");

/// The peer's byte counter: every packet between the client's addresses
/// and the peer, both ways, at the peer's input and output hooks (L3
/// length, as conntrack counts). IPv6 neighbour discovery and MLD are left
/// out (conntrack does not file them under any flow). Protocol 253 is
/// dropped once counted: nothing here handles it, and the kernel's
/// "protocol unreachable" answers would be counted here but not in the
/// flow. (SCTP goes to peer.py's raw socket, which keeps the kernel quiet.)
fn peer_rules() -> String {
    let mut r = String::from("table inet sc {\n  counter seen { }\n");
    for (chain, hook, dir) in [("in", "input", "saddr"), ("out", "output", "daddr")] {
        r.push_str(&format!(
            "  chain {chain} {{\n    type filter hook {hook} priority -10;\n    \
             ip {dir} {CLIENT_V4} counter name \"seen\"\n    \
             ip6 {dir} {CLIENT_V6} meta l4proto != ipv6-icmp counter name \"seen\"\n    \
             ip6 {dir} {CLIENT_V6} icmpv6 type {{ echo-request, echo-reply }} counter name \"seen\"\n"
        ));
        if hook == "input" {
            r.push_str("    meta l4proto 253 drop\n");
        }
        r.push_str("  }\n");
    }
    r.push_str("}\n");
    r
}

/// The loopback scenario's counter, in flowtop's namespace: each loopback
/// packet passes the input hook once.
const LOOPBACK_RULES: &str = "table inet sclo {\n  counter seen { }\n  chain in {\n    \
     type filter hook input priority -10;\n    iifname \"lo\" ip saddr 127.0.0.1 counter name \"seen\"\n  }\n}\n";

/// A child killed (and reaped) when dropped.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Names of the namespaces (`ftsc-<pid>-c`, `-s`) and scratch directories
/// (`ft-scorecard-<pid>`) of a run, so a killed run's are found again.
const NETNS_PREFIX: &str = "ftsc-";
const SCRATCH_PREFIX: &str = "ft-scorecard-";

/// Removes what runs killed before they could clean up left behind.
fn remove_stale(log: &dyn Fn(&str)) {
    for line in crate::netns::remove_stale(NETNS_PREFIX) {
        log(&line);
    }
    for e in fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(SCRATCH_PREFIX)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| !crate::netns::pid_alive(p)) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// What one scenario left behind: its processes and the peer's bytes.
#[derive(Debug, Clone)]
pub struct Ran {
    pub pids: Vec<u32>,
    pub nft_bytes: u64,
    /// Empty when the program exited 0; else its status and stderr.
    pub error: String,
}

/// The suite's raw results: per scenario what ran, and flowtop's output.
pub struct Raw {
    pub ran: Vec<Ran>,
    pub flowtop_stdout: String,
    pub flowtop_stderr: String,
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// Two namespaces joined by a veth pair (the harness's `Netns::pair`,
/// with errors instead of panics), conntrack and its accounting on in
/// the client.
fn pair() -> io::Result<(Netns, Netns)> {
    let id = std::process::id();
    let client = Netns::create(&format!("{NETNS_PREFIX}{id}-c"))?;
    let server = Netns::create(&format!("{NETNS_PREFIX}{id}-s"))?;
    Netns::join(&client, &server)?;
    let ct = "add table inet t; add chain inet t in { type filter hook input priority 0; }; \
              add rule inet t in ct state established,related accept; \
              add chain inet t out { type filter hook output priority 0; }; \
              add rule inet t out ct state established,related accept";
    try_output(client.cmd("nft").arg(ct))?;
    client.sysctl("net.netfilter.nf_conntrack_acct", "1")?;
    Ok((client, server))
}

fn nft_file(ns: &Netns, dir: &Path, name: &str, rules: &str) -> io::Result<()> {
    let f = dir.join(name);
    fs::write(&f, rules)?;
    try_output(ns.cmd("nft").arg("-f").arg(&f)).map(|_| ())
}

/// Reads and zeroes the named counter `seen` of `table`.
fn take_bytes(ns: &Netns, table: &str) -> io::Result<u64> {
    let out = try_output(ns.cmd("nft").args(["reset", "counter", "inet", table, "seen"]))?;
    let words: Vec<&str> = out.split_whitespace().collect();
    words
        .windows(2)
        .rev()
        .find(|w| w[0] == "bytes")
        .and_then(|w| w[1].parse().ok())
        .ok_or_else(|| other(format!("no byte count in `nft reset counter`: {out}")))
}

/// Compiles the scenario client into `dir` and copies it once per
/// scenario as `sc-<name>`.
fn build(dir: &Path, scenarios: &[Scenario]) -> io::Result<()> {
    let bin = dir.join("sc");
    let mut gcc = Command::new("gcc");
    gcc.args(["-O2", "-Wall", "-o"]).arg(&bin);
    for (name, text) in SC_SOURCES {
        fs::write(dir.join(name), text)?;
        if name.ends_with(".c") {
            gcc.arg(dir.join(name));
        }
    }
    try_output(&mut gcc)
        .map_err(|e| other(format!("compiling the scenario program (is gcc installed?): {e}")))?;
    for s in scenarios {
        fs::copy(&bin, dir.join(s.exe()))?;
    }
    Ok(())
}

/// Waits for a line starting with `what` in the file `path`.
fn wait_for_line(path: &Path, what: &str, timeout: Duration) -> io::Result<()> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if fs::read_to_string(path).is_ok_and(|s| s.lines().any(|l| l.starts_with(what))) {
            return Ok(());
        }
        sleep(Duration::from_millis(50));
    }
    Err(other(format!(
        "no line starting with {what:?} in {} within {timeout:?}: {}",
        path.display(),
        fs::read_to_string(path).unwrap_or_default()
    )))
}

/// Runs every scenario with flowtop (`flowtop`, the binary) watching.
pub fn run(flowtop: &Path, scenarios: &[Scenario], log: &dyn Fn(&str)) -> io::Result<Raw> {
    remove_stale(log);
    let dir = Scratch(std::env::temp_dir().join(format!("{SCRATCH_PREFIX}{}", std::process::id())));
    fs::create_dir_all(&dir.0)?;
    build(&dir.0, scenarios)?;
    let (client, server) = pair()?;
    nft_file(&server, &dir.0, "peer.nft", &peer_rules())?;
    nft_file(&client, &dir.0, "lo.nft", LOOPBACK_RULES)?;
    // setns does not remount /sys: the address from `ip link`.
    let link = try_output(Command::new("ip").args(["-n", &server.name, "-o", "link", "show", "vs"]))?;
    let peer_mac = link
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .ok_or_else(|| other(format!("no MAC address in `ip link show vs`: {link}")))?
        .to_owned();

    let peer_py = dir.0.join("peer.py");
    fs::write(&peer_py, PEER_PY)?;
    // The UDP-Lite port first, then the TCP/UDP ones.
    let lite = scenarios
        .iter()
        .find(|s| s.proto == "udplite")
        .map_or(9000, |s| s.port);
    let mut ports: Vec<String> = scenarios
        .iter()
        .filter(|s| s.proto != "udplite" && s.served())
        .map(|s| s.port.to_string())
        .collect();
    ports.sort();
    ports.dedup();
    ports.insert(0, lite.to_string());
    let peer_out = dir.0.join("peer.out");
    let _peer = Kill(
        server
            .cmd(&python())
            .arg(&peer_py)
            .args(&ports)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&peer_out)?)
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    wait_for_line(&peer_out, "ready", Duration::from_secs(10))?;

    let ft_out = dir.0.join("flowtop.json");
    let ft_err = dir.0.join("flowtop.err");
    let ft = Kill(
        client
            .cmd(&flowtop.to_string_lossy())
            .args([
                "--json",
                "-t",
                "1",
                "--all-protocols",
                "-n",
                "-G",
                "--attribution",
                "ebpf",
            ])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&ft_out)?)
            .stderr(fs::File::create(&ft_err)?)
            .spawn()?,
    );
    wait_for_line(&ft_out, "{\"event\":\"meta\"", Duration::from_secs(15))?;

    let mut ran = Vec::new();
    for s in scenarios {
        // Whatever arrived since the last reading is not this scenario's.
        take_bytes(&server, "sc")?;
        take_bytes(&client, "sclo")?;
        let mut cmd = client.cmd(&dir.0.join(s.exe()).to_string_lossy());
        cmd.args([s.mode, SERVER_V4, SERVER_V6, &s.port.to_string()]);
        match s.mode {
            "raw" => {
                cmd.arg(s.proto);
            }
            "af-packet" => {
                cmd.args(["vc", &peer_mac]);
            }
            _ => {}
        }
        let started = Instant::now();
        let out = cmd.stdin(Stdio::null()).output()?;
        // Trailing packets (the last ACKs) land before the counter is read.
        sleep(Duration::from_millis(200));
        let table = if s.path == Via::Loopback {
            ("sclo", &client)
        } else {
            ("sc", &server)
        };
        let nft_bytes = take_bytes(table.1, table.0)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let pids = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("pid ")?.trim().parse().ok())
            .collect();
        let error = if out.status.success() && stdout.lines().any(|l| l == "ok") {
            String::new()
        } else {
            format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())
        };
        log(&format!(
            "{:<12} {:>6.2} s  peer bytes {nft_bytes}{}",
            s.name,
            started.elapsed().as_secs_f64(),
            if error.is_empty() {
                String::new()
            } else {
                format!("  ERROR {error}")
            }
        ));
        ran.push(Ran {
            pids,
            nft_bytes,
            error,
        });
    }
    // Two more counter re-reads (-t 1) after the last packets.
    sleep(Duration::from_millis(2500));
    // SIGINT: flowtop stops cleanly (restores the namespace's sysctls).
    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(ft.0.id() as libc::pid_t, libc::SIGINT) };
    let end = Instant::now() + Duration::from_secs(5);
    let mut ft = ft;
    while Instant::now() < end && ft.0.try_wait().ok().flatten().is_none() {
        sleep(Duration::from_millis(50));
    }
    drop(ft);
    Ok(Raw {
        ran,
        flowtop_stdout: fs::read_to_string(&ft_out)?,
        flowtop_stderr: fs::read_to_string(&ft_err)?,
    })
}

fn python() -> String {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3".into()
    } else {
        "python3".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_counts_both_directions_and_drops_what_it_cannot_answer() {
        let r = peer_rules();
        assert!(r.contains("ip saddr 192.0.2.1 counter"), "{r}");
        assert!(r.contains("ip daddr 192.0.2.1 counter"), "{r}");
        assert_eq!(r.matches("meta l4proto 253 drop").count(), 1, "{r}");
    }
}
