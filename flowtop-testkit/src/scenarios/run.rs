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
/// The executable name of the published-port scenarios' outside client.
const REMOTE_EXE: &str = "sc-remote";

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
    // What the peer forwards between a host behind it and flowtop's
    // namespace (the published-port scenario's traffic).
    r.push_str(&format!(
        "  chain through {{\n    type filter hook forward priority -10;\n    \
         ip saddr {CLIENT_V4} counter name \"seen\"\n    ip daddr {CLIENT_V4} counter name \"seen\"\n  }}\n"
    ));
    r.push_str("}\n");
    r
}

/// The container's addresses, flowtop's namespace's on the container's
/// link, and the host behind the peer that reaches the published port.
const CTR_V4: &str = "198.51.100.2";
const CTR_V6: &str = "2001:db8:c::2";
const HOST_CTR_V4: &str = "198.51.100.1";
const HOST_CTR_V6: &str = "2001:db8:c::1";
const REMOTE_V4: &str = "203.0.113.2";
const PEER_REMOTE_V4: &str = "203.0.113.1";

/// Flowtop's namespace as a container host: masquerade for the container's
/// addresses out of the peer link, and every port of the published-port
/// scenarios forwarded (DNAT) from the peer link to the container.
fn host_rules(published: &[u16]) -> String {
    let mut r = format!(
        "table inet scnat {{\n  chain post {{\n    type nat hook postrouting priority 100;\n    \
         oifname \"vc\" ip saddr {CTR_V4}/24 masquerade\n    \
         oifname \"vc\" ip6 saddr {CTR_V6}/64 masquerade\n  }}\n  \
         chain pre {{\n    type nat hook prerouting priority -100;\n"
    );
    for p in published {
        r.push_str(&format!(
            "    iifname \"vc\" meta nfproto ipv4 tcp dport {p} dnat ip to {CTR_V4}:{p}\n"
        ));
    }
    r.push_str("  }\n}\n");
    r
}

/// The container behind flowtop's namespace and the host behind the peer.
struct Behind {
    ctr: Netns,
    remote: Netns,
    /// The container's long-lived process (what a runtime's init or pause
    /// process is): its short-lived processes come and go beside it.
    _pause: Kill,
}

/// A container (`ftsc-<pid>-k`: 198.51.100.2, 2001:db8:c::2) on a veth
/// `vk` of flowtop's namespace, which forwards and masquerades for it and
/// publishes the `published` ports to it; and a host (`-r`, 203.0.113.2)
/// behind the peer, which routes for it, so that the host is not a
/// namespace flowtop's namespace is directly joined to (as the internet is
/// not).
fn behind(client: &Netns, server: &Netns, dir: &Path, published: &[u16]) -> io::Result<Behind> {
    let id = std::process::id();
    let ctr = Netns::create(&format!("{NETNS_PREFIX}{id}-k"))?;
    let remote = Netns::create(&format!("{NETNS_PREFIX}{id}-r"))?;
    let ip = |ns: &Netns, args: String| {
        ns.try_ip(&args.split_whitespace().collect::<Vec<_>>())
            .map(|_| ())
    };
    ip(
        client,
        format!("link add vk type veth peer name eth0 netns {}", ctr.name),
    )?;
    ip(client, format!("addr add {HOST_CTR_V4}/24 dev vk"))?;
    ip(client, format!("addr add {HOST_CTR_V6}/64 dev vk nodad"))?;
    ip(client, "link set vk up".into())?;
    ip(&ctr, format!("addr add {CTR_V4}/24 dev eth0"))?;
    ip(&ctr, format!("addr add {CTR_V6}/64 dev eth0 nodad"))?;
    ip(&ctr, "link set eth0 up".into())?;
    ip(&ctr, format!("route add default via {HOST_CTR_V4}"))?;
    ip(&ctr, format!("-6 route add default via {HOST_CTR_V6}"))?;
    ip(
        server,
        format!("link add vr type veth peer name eth0 netns {}", remote.name),
    )?;
    ip(server, format!("addr add {PEER_REMOTE_V4}/24 dev vr"))?;
    ip(server, "link set vr up".into())?;
    ip(&remote, format!("addr add {REMOTE_V4}/24 dev eth0"))?;
    ip(&remote, "link set eth0 up".into())?;
    ip(&remote, format!("route add default via {PEER_REMOTE_V4}"))?;
    ip(client, format!("route add 203.0.113.0/24 via {SERVER_V4}"))?;
    for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
        client.sysctl(key, "1")?;
    }
    server.sysctl("net.ipv4.ip_forward", "1")?;
    nft_file(client, dir, "host.nft", &host_rules(published))?;
    let pause = Kill(
        ctr.cmd("sleep")
            .arg("3600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?,
    );
    Ok(Behind {
        ctr,
        remote,
        _pause: pause,
    })
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
    // The published-port scenarios' client, outside: never an owner.
    fs::copy(&bin, dir.join(REMOTE_EXE))?;
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
    let published: Vec<u16> = scenarios
        .iter()
        .filter(|s| s.path == Via::Published)
        .map(|s| s.port)
        .collect();
    let behind = behind(&client, &server, &dir.0, &published)?;
    nft_file(&server, &dir.0, "peer.nft", &peer_rules())?;
    nft_file(&client, &dir.0, "lo.nft", LOOPBACK_RULES)?;
    // setns does not remount /sys: the address from `ip link`.
    let link = server.try_ip(&["-o", "link", "show", "vs"])?;
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
        let out = match s.path {
            Via::Container4 | Via::Container6 => {
                let mut c = behind.ctr.cmd(&dir.0.join(s.exe()).to_string_lossy());
                c.args([s.mode, SERVER_V4, SERVER_V6, &s.port.to_string()]);
                c.stdin(Stdio::null()).output()?
            }
            Via::Published => published_port(&behind, &dir.0, s)?,
            _ => cmd.stdin(Stdio::null()).output()?,
        };
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

/// A published-port scenario: its program serves inside the container
/// (`tcp-sink`), and `sc-remote` uploads 4 MiB to flowtop's namespace's
/// published port from the host behind the peer. The server's output, with
/// the client's failure added to its status and stderr.
fn published_port(behind: &Behind, dir: &Path, s: &Scenario) -> io::Result<std::process::Output> {
    use std::io::{BufRead as _, BufReader};
    let port = s.port.to_string();
    let mut server = behind
        .ctr
        .cmd(&dir.join(s.exe()).to_string_lossy())
        .args([s.mode, SERVER_V4, SERVER_V6, &port])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = String::new();
    let mut lines = BufReader::new(server.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    while lines.read_line(&mut line)? > 0 {
        stdout.push_str(&line);
        if line.trim() == "listening" {
            break;
        }
        line.clear();
    }
    let client = behind
        .remote
        .cmd(&dir.join(REMOTE_EXE).to_string_lossy())
        .args(["tcp-up", CLIENT_V4, CLIENT_V6, &port])
        .stdin(Stdio::null())
        .output();
    let _ = std::io::Read::read_to_string(lines.get_mut(), &mut stdout);
    let mut out = server.wait_with_output()?;
    out.stdout = stdout.into_bytes();
    match client {
        Ok(c) if c.status.success() => {}
        Ok(c) => {
            out.stdout.clear(); // no "ok": the scenario failed
            out.stderr.extend_from_slice(
                format!(
                    "; the outside client: {}: {}",
                    c.status,
                    String::from_utf8_lossy(&c.stderr).trim()
                )
                .as_bytes(),
            );
        }
        Err(e) => return Err(other(format!("the outside client: {e}"))),
    }
    Ok(out)
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
