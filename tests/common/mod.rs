//! Harness for the root-only integration tests in `tests/netns.rs`.
//!
//! Everything here runs external tools (`ip`, `nft`, `conntrack`, `sysctl`,
//! `python3`) through `ip netns exec NS ...` with `std::process::Command`.
//! Every helper panics with context instead of returning errors: a failing
//! test should say what it was doing and what the tools printed.

#![allow(dead_code)] // not every test binary uses every helper

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const FLOWTOP: &str = env!("CARGO_BIN_EXE_flowtop");

/// Default time to wait for something flowtop should print promptly.
pub const WAIT: Duration = Duration::from_secs(10);

/// Traffic agent (TCP/UDP echo server, client, ICMP echo, UDP flood).
const AGENT_PY: &str = include_str!("agent.py");

pub const CLIENT_V4: &str = "192.0.2.1";
pub const SERVER_V4: &str = "192.0.2.2";
pub const CLIENT_V6: &str = "2001:db8::1";
pub const SERVER_V6: &str = "2001:db8::2";

// ---------------------------------------------------------------------------
// small utilities

/// Polls `f` every `every` until it returns `Some` or `timeout` elapses.
pub fn poll_until<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(every);
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

pub fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Runs `cmd` to completion (it must not be long-running) and panics if it
/// cannot be started. Returns the raw output.
pub fn output_of(mut cmd: Command) -> Output {
    let what = describe(&cmd);
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"))
}

/// Runs `cmd`, panics with its output unless it exits 0, returns stdout.
pub fn check_output(cmd: Command) -> String {
    let what = describe(&cmd);
    let out = output_of(cmd);
    if !out.status.success() {
        panic!(
            "`{what}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn host(prog: &str, args: &[&str]) -> Command {
    let mut c = Command::new(prog);
    c.args(args);
    c
}

/// Spawns a thread that reads `r` to the end into the returned buffer.
fn collect<R: Read + Send + 'static>(mut r: R) -> (Arc<Mutex<String>>, thread::JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(String::new()));
    let b = Arc::clone(&buf);
    let h = thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut g) = b.lock() {
                        g.push_str(&String::from_utf8_lossy(&chunk[..n]));
                    }
                }
            }
        }
    });
    (buf, h)
}

/// Spawns a thread that sends every line of `r` over the returned channel.
fn lines_of<R: Read + Send + 'static>(r: R) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    rx
}

fn locked(s: &Arc<Mutex<String>>) -> String {
    match s.lock() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

/// Sends `sig` to `pid` (a process this test started).
pub fn send_signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: plain kill(2) on a child we spawned and have not reaped yet.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc != 0 {
        panic!("kill({pid}, {sig}) failed: {}", std::io::Error::last_os_error());
    }
}

/// Waits for `child` to exit, at most `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    poll_until(timeout, Duration::from_millis(20), || {
        child.try_wait().ok().flatten()
    })
}

// ---------------------------------------------------------------------------
// network namespaces

static NEXT_NS: AtomicU32 = AtomicU32::new(0);

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
    inode: u64,
    /// On drop, also remove flowtop's state files for this namespace's inode
    /// (left by a killed flowtop), so a later namespace that gets the same
    /// inode number does not inherit them.
    pub clean_state_on_drop: bool,
}

impl Netns {
    /// A fresh namespace `ft-<pid>-<n>` with loopback up. Conntrack is not
    /// enabled: see [`Netns::enable_conntrack`].
    pub fn new() -> Netns {
        let n = NEXT_NS.fetch_add(1, Ordering::SeqCst);
        let name = format!("ft-{}-{}", std::process::id(), n);
        check_output(host("ip", &["netns", "add", &name]));
        let mut ns = Netns {
            name,
            inode: 0,
            clean_state_on_drop: true,
        };
        ns.inode = ns.inode();
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Inode of the namespace (what `/proc/self/ns/net` shows inside it).
    pub fn inode(&self) -> u64 {
        let path = format!("/run/netns/{}", self.name);
        let md = std::fs::metadata(&path).unwrap_or_else(|e| panic!("stat {path}: {e}"));
        std::os::unix::fs::MetadataExt::ino(&md)
    }

    /// A fresh namespace in which conntrack tracks traffic.
    pub fn with_conntrack() -> Netns {
        let ns = Netns::new();
        ns.enable_conntrack();
        ns
    }

    /// Two namespaces joined by a veth pair: `client` (192.0.2.1, 2001:db8::1)
    /// and `server` (192.0.2.2, 2001:db8::2). Conntrack is enabled in the
    /// client, where flowtop runs.
    pub fn pair() -> (Netns, Netns) {
        let client = Netns::new();
        let server = Netns::new();
        // Created directly inside the namespaces: no names in the host namespace.
        client.ip(&[
            "link",
            "add",
            "vc",
            "type",
            "veth",
            "peer",
            "name",
            "vs",
            "netns",
            &server.name,
        ]);
        client.ip(&["addr", "add", &format!("{CLIENT_V4}/24"), "dev", "vc"]);
        client.ip(&["addr", "add", &format!("{CLIENT_V6}/64"), "dev", "vc", "nodad"]);
        server.ip(&["addr", "add", &format!("{SERVER_V4}/24"), "dev", "vs"]);
        server.ip(&["addr", "add", &format!("{SERVER_V6}/64"), "dev", "vs", "nodad"]);
        client.ip(&["link", "set", "vc", "up"]);
        server.ip(&["link", "set", "vs", "up"]);
        client.enable_conntrack();
        (client, server)
    }

    /// `ip -n NS args...`, must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut c = Command::new("ip");
        c.arg("-n").arg(&self.name).args(args);
        check_output(c)
    }

    /// `ip netns exec NS prog args...` (not started).
    pub fn cmd(&self, prog: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]).args(args);
        c
    }

    /// Runs `prog args...` in the namespace, must exit 0; returns stdout.
    pub fn run(&self, prog: &str, args: &[&str]) -> String {
        check_output(self.cmd(prog, args))
    }

    /// Makes conntrack track this namespace: an nft table with input and
    /// output chains that use `ct state`.
    pub fn enable_conntrack(&self) {
        self.run("nft", &["add", "table", "inet", "t"]);
        for (chain, hook) in [("in", "input"), ("out", "output")] {
            let spec = format!("{{ type filter hook {hook} priority 0; }}");
            self.run("nft", &["add", "chain", "inet", "t", chain, &spec]);
            self.run(
                "nft",
                &[
                    "add",
                    "rule",
                    "inet",
                    "t",
                    chain,
                    "ct",
                    "state",
                    "established,related",
                    "accept",
                ],
            );
        }
    }

    pub fn sysctl_get(&self, key: &str) -> String {
        self.run("sysctl", &["-n", key]).trim().to_string()
    }

    pub fn sysctl_set(&self, key: &str, value: &str) {
        self.run("sysctl", &["-q", "-w", &format!("{key}={value}")]);
    }

    /// (nf_conntrack_acct, nf_conntrack_timestamp) of this namespace.
    pub fn acct_ts(&self) -> (String, String) {
        (
            self.sysctl_get("net.netfilter.nf_conntrack_acct"),
            self.sysctl_get("net.netfilter.nf_conntrack_timestamp"),
        )
    }

    pub fn set_acct_ts(&self, acct: &str, ts: &str) {
        self.sysctl_set("net.netfilter.nf_conntrack_acct", acct);
        self.sysctl_set("net.netfilter.nf_conntrack_timestamp", ts);
    }

    /// `conntrack ARGS` in the namespace (ARGS split at whitespace, no
    /// shell involved), must succeed.
    pub fn conntrack(&self, args: &str) -> String {
        let args: Vec<&str> = args.split_whitespace().collect();
        self.run("conntrack", &args)
    }

    /// Every entry of this namespace's conntrack table (both families).
    pub fn conntrack_list(&self) -> Vec<CtEntry> {
        let out = self.conntrack("-L -o extended,id");
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| CtEntry::parse(l).unwrap_or_else(|e| panic!("cannot parse conntrack line {l:?}: {e}")))
            .collect()
    }

    /// The conntrack id of the single entry whose original tuple is the given one.
    pub fn conntrack_id(&self, proto: &str, src: &str, sport: u16, dst: &str, dport: u16) -> u32 {
        let list = self.conntrack_list();
        let src: IpAddr = src.parse().expect("src address");
        let dst: IpAddr = dst.parse().expect("dst address");
        let found: Vec<&CtEntry> = list
            .iter()
            .filter(|e| {
                e.proto == proto
                    && e.src == src
                    && e.dst == dst
                    && e.sport == Some(sport)
                    && e.dport == Some(dport)
            })
            .collect();
        match found.as_slice() {
            [one] => one.id,
            _ => panic!(
                "expected one {proto} entry {src}:{sport} -> {dst}:{dport}, found {}: {list:#?}",
                found.len()
            ),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Never panic here: a panic while unwinding aborts the test binary.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if self.clean_state_on_drop && self.inode != 0 {
            for f in state_files(self.inode) {
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

/// Directory of flowtop's sysctl state files.
pub const STATE_DIR: &str = "/run/flowtop";

/// Paths of files in [`STATE_DIR`] whose name contains `inode` as a number.
pub fn state_files(inode: u64) -> Vec<std::path::PathBuf> {
    let inode = inode.to_string();
    let Ok(rd) = std::fs::read_dir(STATE_DIR) else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.split(|c: char| !c.is_ascii_digit())
                .any(|part| part == inode)
        })
        .map(|e| e.path())
        .collect()
}

// ---------------------------------------------------------------------------
// conntrack -L -o extended,id parsing

/// One line of `conntrack -L -o extended,id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtEntry {
    pub family: String,
    pub proto: String,
    pub protonum: u8,
    pub timeout: u64,
    pub state: Option<String>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// (type, code, id) of the original direction for icmp/icmpv6.
    pub icmp: Option<(u8, u8, u16)>,
    pub reply_src: IpAddr,
    pub reply_dst: IpAddr,
    pub reply_sport: Option<u16>,
    pub reply_dport: Option<u16>,
    pub assured: bool,
    pub unreplied: bool,
    pub mark: u32,
    pub id: u32,
}

#[derive(Default)]
struct RawTuple {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    sport: Option<u16>,
    dport: Option<u16>,
    itype: Option<u8>,
    icode: Option<u8>,
    iid: Option<u16>,
}

impl CtEntry {
    /// Parses e.g. `ipv4 2 tcp 6 299 ESTABLISHED src=.. dst=.. sport=.. dport=..
    /// [UNREPLIED] src=.. dst=.. sport=.. dport=.. [ASSURED] mark=0 use=1 id=123`.
    /// With accounting on, `packets=` and `bytes=` follow each tuple; icmp
    /// tuples have `type= code= id=`; the conntrack id is the `id=` after `mark=`.
    pub fn parse(line: &str) -> Result<CtEntry, String> {
        let toks: Vec<&str> = line.split_whitespace().collect();
        if toks.len() < 6 {
            return Err("too few fields".into());
        }
        let family = toks[0].to_string();
        let proto = toks[2].to_string();
        let protonum: u8 = toks[3].parse().map_err(|e| format!("protonum: {e}"))?;
        let timeout: u64 = toks[4].parse().map_err(|e| format!("timeout: {e}"))?;
        let mut rest = &toks[5..];
        let mut state = None;
        if let Some(first) = rest.first() {
            if !first.contains('=') && !first.starts_with('[') {
                state = Some(first.to_string());
                rest = &rest[1..];
            }
        }
        let mut tuples: Vec<RawTuple> = Vec::new();
        let mut in_meta = false;
        let (mut assured, mut unreplied) = (false, false);
        let (mut mark, mut id) = (None, None);
        for t in rest {
            if *t == "[ASSURED]" {
                assured = true;
                continue;
            }
            if *t == "[UNREPLIED]" {
                unreplied = true;
                continue;
            }
            let Some((k, v)) = t.split_once('=') else { continue };
            let num = |what: &str| -> Result<u64, String> {
                v.parse::<u64>().map_err(|e| format!("{what}={v}: {e}"))
            };
            if in_meta {
                if k == "id" {
                    id = Some(u32::try_from(num("id")?).map_err(|e| e.to_string())?);
                }
                continue;
            }
            match k {
                "src" => {
                    tuples.push(RawTuple::default());
                    let a = v.parse().map_err(|e| format!("src={v}: {e}"))?;
                    tuples.last_mut().ok_or("no tuple")?.src = Some(a);
                }
                "dst" => {
                    tuples.last_mut().ok_or("dst before src")?.dst =
                        Some(v.parse().map_err(|e| format!("dst={v}: {e}"))?)
                }
                "sport" => tuples.last_mut().ok_or("sport before src")?.sport = Some(num("sport")? as u16),
                "dport" => tuples.last_mut().ok_or("dport before src")?.dport = Some(num("dport")? as u16),
                "type" => tuples.last_mut().ok_or("type before src")?.itype = Some(num("type")? as u8),
                "code" => tuples.last_mut().ok_or("code before src")?.icode = Some(num("code")? as u8),
                "id" => tuples.last_mut().ok_or("id before src")?.iid = Some(num("id")? as u16),
                "mark" => {
                    mark = Some(u32::try_from(num("mark")?).map_err(|e| e.to_string())?);
                    in_meta = true;
                }
                "use" => in_meta = true,
                _ => {} // packets=, bytes=, zone=, ...
            }
        }
        if tuples.len() < 2 {
            return Err(format!("expected 2 tuples, found {}", tuples.len()));
        }
        let o = &tuples[0];
        let r = &tuples[1];
        Ok(CtEntry {
            family,
            proto,
            protonum,
            timeout,
            state,
            src: o.src.ok_or("no src")?,
            dst: o.dst.ok_or("no dst")?,
            sport: o.sport,
            dport: o.dport,
            icmp: match (o.itype, o.icode, o.iid) {
                (Some(t), Some(c), Some(i)) => Some((t, c, i)),
                _ => None,
            },
            reply_src: r.src.ok_or("no reply src")?,
            reply_dst: r.dst.ok_or("no reply dst")?,
            reply_sport: r.sport,
            reply_dport: r.dport,
            assured,
            unreplied,
            mark: mark.ok_or("no mark=")?,
            id: id.ok_or("no conntrack id (after mark=)")?,
        })
    }
}

pub fn ids(entries: &[CtEntry]) -> BTreeSet<u32> {
    entries.iter().map(|e| e.id).collect()
}

// ---------------------------------------------------------------------------
// JSON flow helpers

pub fn jstr<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

pub fn ju64(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

pub fn event(v: &Value) -> &str {
    jstr(v, "event").unwrap_or("")
}

pub fn is_flow_event(v: &Value) -> bool {
    matches!(event(v), "snapshot" | "new" | "update" | "destroy")
}

/// The conntrack id of a flow object (`id` is a number).
pub fn flow_id(v: &Value) -> Option<u32> {
    ju64(v, "id").and_then(|i| u32::try_from(i).ok())
}

pub fn jaddr(v: &Value, key: &str) -> Option<IpAddr> {
    jstr(v, key).and_then(|s| s.parse().ok())
}

pub fn jport(v: &Value, key: &str) -> Option<u16> {
    ju64(v, key).and_then(|p| u16::try_from(p).ok())
}

/// Does flow `v` have this original tuple?
pub fn has_tuple(v: &Value, proto: &str, src: &str, sport: u16, dst: &str, dport: u16) -> bool {
    jstr(v, "proto") == Some(proto)
        && jaddr(v, "src") == src.parse().ok()
        && jaddr(v, "dst") == dst.parse().ok()
        && jport(v, "sport") == Some(sport)
        && jport(v, "dport") == Some(dport)
}

/// Ids that are alive after applying the stream in order:
/// snapshot/new/update add, destroy removes.
pub fn alive_ids(lines: &[Value]) -> BTreeSet<u32> {
    let mut alive = BTreeSet::new();
    for v in lines {
        let Some(id) = flow_id(v) else { continue };
        match event(v) {
            "snapshot" | "new" | "update" => {
                alive.insert(id);
            }
            "destroy" => {
                alive.remove(&id);
            }
            _ => {}
        }
    }
    alive
}

fn parse_lines(stdout: &str) -> (Vec<Value>, Vec<String>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for l in stdout.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(l) {
            Ok(v) if v.is_object() => good.push(v),
            _ => bad.push(l.to_string()),
        }
    }
    (good, bad)
}

/// Keys every flow object carries (null when unknown).
pub const FLOW_KEYS: &[&str] = &[
    "event",
    "ts",
    "id",
    "family",
    "proto",
    "state",
    "src",
    "sport",
    "dst",
    "dport",
    "reply_src",
    "reply_sport",
    "reply_dst",
    "reply_dport",
    "status",
    "mark",
    "zone",
    "timeout",
    "orig_packets",
    "orig_bytes",
    "reply_packets",
    "reply_bytes",
    "start",
    "duration_s",
    "orig_rate_bps",
    "reply_rate_bps",
    "pid",
    "comm",
    "exe",
    "uid",
    "attribution",
    "src_host",
    "dst_host",
    "src_country",
    "src_city",
    "dst_country",
    "dst_city",
    "service",
    "src_scope",
    "dst_scope",
];

/// Keys of [`FLOW_KEYS`] (plus `icmp_*` for icmp/icmpv6) that `v` lacks.
pub fn missing_keys(v: &Value) -> Vec<&'static str> {
    let icmp = matches!(jstr(v, "proto"), Some("icmp" | "icmpv6"));
    let extra: &[&'static str] = if icmp {
        &["icmp_type", "icmp_code", "icmp_id"]
    } else {
        &[]
    };
    FLOW_KEYS
        .iter()
        .chain(extra)
        .copied()
        .filter(|k| v.get(*k).is_none())
        .collect()
}

/// Seconds since the epoch of an RFC 3339 UTC time such as
/// `2026-11-30T02:14:41.328262Z` (also accepts `+00:00`).
pub fn rfc3339_secs(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (hh, mm) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    let ss: f64 = t.next()?.parse().ok()?;
    // days from civil (proleptic Gregorian), Howard Hinnant's algorithm
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss)
}

/// Now, in seconds since the epoch.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Checks the first line is the meta object, panics otherwise.
pub fn assert_meta(v: &Value, context: &str) {
    assert_eq!(
        event(v),
        "meta",
        "{context}: first line is not the meta line: {v}"
    );
    for key in ["version", "kernel"] {
        assert!(v.get(key).is_some(), "{context}: meta line lacks `{key}`: {v}");
    }
}

// ---------------------------------------------------------------------------
// flowtop runs

/// Result of a run that exits by itself (`--once`).
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub lines: Vec<Value>,
    /// stdout lines that are not JSON objects
    pub bad: Vec<String>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Flow lines (everything after the meta line).
    pub fn flows(&self) -> Vec<&Value> {
        self.lines.iter().filter(|v| event(v) != "meta").collect()
    }

    /// Panics unless the run exited 0 and printed meta + JSON lines only.
    pub fn assert_ok(&self, context: &str) -> &Self {
        assert!(
            self.status.success(),
            "{context}: flowtop exited with {}\nstderr:\n{}\nstdout:\n{}",
            self.status,
            self.stderr,
            self.stdout
        );
        assert!(
            self.bad.is_empty(),
            "{context}: non-JSON stdout lines: {:?}\nstderr:\n{}",
            self.bad,
            self.stderr
        );
        let first = self
            .lines
            .first()
            .unwrap_or_else(|| panic!("{context}: no output at all\nstderr:\n{}", self.stderr));
        assert_meta(first, context);
        assert_eq!(
            self.lines.iter().filter(|v| event(v) == "meta").count(),
            1,
            "{context}: more than one meta line"
        );
        for f in self.flows() {
            assert_eq!(
                event(f),
                "snapshot",
                "{context}: --once printed a non-snapshot line: {f}"
            );
            let missing = missing_keys(f);
            assert!(missing.is_empty(), "{context}: flow lacks keys {missing:?}: {f}");
        }
        self
    }
}

/// Runs `cmd` (flowtop, maybe wrapped) to completion within `timeout`.
pub fn run_to_end(mut cmd: Command, timeout: Duration) -> Finished {
    let what = describe(&cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    let (out, hout) = collect(child.stdout.take().expect("stdout piped"));
    let (err, herr) = collect(child.stderr.take().expect("stderr piped"));
    let status = match wait_timeout(&mut child, timeout) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{what}` did not exit within {timeout:?}\nstderr:\n{}\nstdout:\n{}",
                locked(&err),
                locked(&out)
            );
        }
    };
    let _ = hout.join();
    let _ = herr.join();
    let stdout = locked(&out);
    let (lines, bad) = parse_lines(&stdout);
    Finished {
        status,
        lines,
        bad,
        stdout,
        stderr: locked(&err),
    }
}

/// `flowtop ARGS` in `ns`, run to completion (30 s at most).
pub fn flowtop_once(ns: &Netns, args: &[&str]) -> Finished {
    run_to_end(ns.cmd(FLOWTOP, args), Duration::from_secs(30))
}

/// A streaming flowtop (`--json` without `--once`) running in a namespace.
/// Dropping it stops it (SIGTERM, then SIGKILL).
pub struct Flowtop {
    child: Child,
    rx: Receiver<String>,
    /// Every JSON line received so far, in order.
    pub lines: Vec<Value>,
    /// stdout lines that were not JSON objects.
    pub bad: Vec<String>,
    stderr: Arc<Mutex<String>>,
    /// `wait_for` searches from here.
    cursor: usize,
    args: String,
    status: Option<ExitStatus>,
}

impl Flowtop {
    /// Starts `flowtop ARGS` in `ns` and waits for its meta line.
    pub fn start(ns: &Netns, args: &[&str]) -> Flowtop {
        let mut cmd = ns.cmd(FLOWTOP, args);
        let what = describe(&cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
        let rx = lines_of(child.stdout.take().expect("stdout piped"));
        let (stderr, _h) = collect(child.stderr.take().expect("stderr piped"));
        let mut ft = Flowtop {
            child,
            rx,
            lines: Vec::new(),
            bad: Vec::new(),
            stderr,
            cursor: 0,
            args: args.join(" "),
            status: None,
        };
        let meta = ft.wait_for("the meta line", WAIT, |_| true);
        assert_meta(&meta, &format!("flowtop {}", ft.args));
        ft
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        locked(&self.stderr)
    }

    /// Moves everything printed so far into `self.lines`.
    pub fn pump(&mut self) {
        while let Ok(l) = self.rx.try_recv() {
            self.push(l);
        }
    }

    fn push(&mut self, l: String) {
        if l.trim().is_empty() {
            return;
        }
        match serde_json::from_str::<Value>(&l) {
            Ok(v) if v.is_object() => self.lines.push(v),
            _ => self.bad.push(l),
        }
    }

    /// Waits until a line at or after the cursor satisfies `pred`, moves
    /// the cursor past it and returns it. Panics with context on timeout.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let end = Instant::now() + timeout;
        loop {
            while self.cursor < self.lines.len() {
                let i = self.cursor;
                self.cursor += 1;
                if pred(&self.lines[i]) {
                    return self.lines[i].clone();
                }
            }
            let now = Instant::now();
            if now >= end {
                self.pump();
                if self.cursor < self.lines.len() {
                    continue;
                }
                self.fail(&format!("timed out after {timeout:?} waiting for {what}"));
            }
            match self.rx.recv_timeout(end - now) {
                Ok(l) => self.push(l),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let st = wait_timeout(&mut self.child, Duration::from_secs(2));
                    self.status = st;
                    self.fail(&format!(
                        "flowtop closed stdout (exit: {st:?}) while waiting for {what}"
                    ));
                }
            }
        }
    }

    /// Like `wait_for`, but returns `None` instead of panicking on timeout.
    pub fn try_wait_for(&mut self, timeout: Duration, mut pred: impl FnMut(&Value) -> bool) -> Option<Value> {
        let end = Instant::now() + timeout;
        loop {
            while self.cursor < self.lines.len() {
                let i = self.cursor;
                self.cursor += 1;
                if pred(&self.lines[i]) {
                    return Some(self.lines[i].clone());
                }
            }
            let now = Instant::now();
            if now >= end {
                return None;
            }
            match self.rx.recv_timeout(end - now) {
                Ok(l) => self.push(l),
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Panics with everything flowtop printed.
    pub fn fail(&mut self, msg: &str) -> ! {
        self.pump();
        let mut shown = String::new();
        let n = self.lines.len();
        let skip = n.saturating_sub(40);
        for v in &self.lines[skip..] {
            shown.push_str(&v.to_string());
            shown.push('\n');
        }
        panic!(
            "flowtop {}: {msg}\n--- last {} of {} JSON lines:\n{shown}--- non-JSON stdout lines: {:?}\n--- stderr:\n{}",
            self.args,
            n - skip,
            n,
            self.bad,
            self.stderr()
        );
    }

    pub fn signal(&mut self, sig: libc::c_int) {
        if self.status.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
            }
        }
        if let Some(st) = self.status {
            self.fail(&format!("already exited ({st}) before signal {sig}"));
        }
        send_signal(self.pid(), sig);
    }

    /// Waits for the process to exit; panics with context after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        match wait_timeout(&mut self.child, timeout) {
            Some(st) => {
                self.status = Some(st);
                // give the reader thread a moment to forward the tail
                let _ = poll_until(
                    Duration::from_millis(500),
                    Duration::from_millis(10),
                    || match self.rx.try_recv() {
                        Ok(l) => {
                            self.push(l);
                            None
                        }
                        Err(mpsc::TryRecvError::Empty) => None,
                        Err(mpsc::TryRecvError::Disconnected) => Some(()),
                    },
                );
                self.pump();
                st
            }
            None => self.fail(&format!("did not exit within {timeout:?}")),
        }
    }

    /// SIGINT and expect exit status 0.
    pub fn stop(&mut self) {
        self.signal(libc::SIGINT);
        let st = self.wait_exit(Duration::from_secs(10));
        if !st.success() {
            self.fail(&format!("SIGINT: expected exit status 0, got {st}"));
        }
    }
}

impl Drop for Flowtop {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGTERM first, so flowtop restores the namespace's sysctls and
        // removes its state file; SIGKILL only if it does not stop.
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if wait_timeout(&mut self.child, Duration::from_secs(3)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// traffic agent (python3)

/// A python3 helper running `agent.py` in a namespace. It exits when its
/// stdin is closed (on drop), and is killed if that does not work.
pub struct Agent {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    what: String,
}

impl Agent {
    fn spawn(ns: &Netns, args: &[&str]) -> Agent {
        let mut full = vec!["-c", AGENT_PY];
        full.extend_from_slice(args);
        let mut cmd = ns.cmd(python(), &full);
        let what = format!("agent {} in {}", args.join(" "), ns.name);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdin = child.stdin.take();
        let rx = lines_of(child.stdout.take().expect("stdout piped"));
        let (stderr, _h) = collect(child.stderr.take().expect("stderr piped"));
        Agent {
            child,
            stdin,
            rx,
            stderr,
            what,
        }
    }

    fn expect_line(&mut self, what: &str, timeout: Duration) -> String {
        match self.rx.recv_timeout(timeout) {
            Ok(l) => l,
            Err(e) => {
                let st = wait_timeout(&mut self.child, Duration::from_millis(500));
                panic!(
                    "{}: no answer to {what} ({e:?}, exit {st:?})\nstderr:\n{}",
                    self.what,
                    locked(&self.stderr)
                );
            }
        }
    }

    /// TCP+UDP echo server on `port` (IPv4 and IPv6), ready when this returns.
    pub fn server(ns: &Netns, port: u16) -> Agent {
        let mut a = Agent::spawn(ns, &["server", &port.to_string()]);
        let l = a.expect_line("startup", WAIT);
        assert_eq!(l, "ready", "{}: unexpected first line", a.what);
        a
    }

    /// The agent's process id (`ip netns exec` execs python in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client that takes commands (see `agent.py`).
    pub fn client(ns: &Netns) -> Agent {
        Agent::spawn(ns, &["client"])
    }

    /// Sends one command, returns the words after `ok`.
    pub fn cmd(&mut self, line: &str) -> Vec<String> {
        let what = self.what.clone();
        let w = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{what}: stdin closed"));
        writeln!(w, "{line}").unwrap_or_else(|e| panic!("{what}: cannot send {line:?}: {e}"));
        w.flush()
            .unwrap_or_else(|e| panic!("{what}: cannot send {line:?}: {e}"));
        let l = self.expect_line(line, Duration::from_secs(20));
        let mut words = l.split_whitespace().map(str::to_string);
        assert_eq!(
            words.next().as_deref(),
            Some("ok"),
            "{what}: {line:?} answered {l:?}"
        );
        words.collect()
    }

    /// Opens a TCP connection, returns (connection index, local port).
    pub fn tcp_connect(&mut self, host: &str, port: u16) -> (usize, u16) {
        let w = self.cmd(&format!("tcp {host} {port}"));
        let idx = w.first().and_then(|s| s.parse().ok()).expect("connection index");
        let lport = w.get(1).and_then(|s| s.parse().ok()).expect("local port");
        (idx, lport)
    }

    pub fn tcp_send(&mut self, idx: usize, bytes: usize) {
        self.cmd(&format!("send {idx} {bytes}"));
    }

    pub fn tcp_close(&mut self, idx: usize) {
        self.cmd(&format!("close {idx}"));
    }

    /// One UDP request/reply exchange, returns the local port.
    pub fn udp_exchange(&mut self, host: &str, port: u16) -> u16 {
        let w = self.cmd(&format!("udp {host} {port}"));
        w.first().and_then(|s| s.parse().ok()).expect("local port")
    }

    /// ICMP(v6) echo request/reply with identifier `ident`.
    pub fn ping(&mut self, host: &str, ident: u16) {
        self.cmd(&format!("ping {host} {ident}"));
    }

    /// One datagram to each of `n` ports from `first_port` on, from one socket.
    pub fn udp_flood(&mut self, host: &str, first_port: u16, n: u32) {
        self.cmd(&format!("flood {host} {first_port} {n}"));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if wait_timeout(&mut self.child, Duration::from_secs(1)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
