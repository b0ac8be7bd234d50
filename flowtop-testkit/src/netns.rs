//! Named network namespaces (`ip netns add`), deleted on drop: the one
//! harness of the root-only integration tests and of `cargo xtask bench`.
//!
//! Two ways to run something inside:
//!
//! - [`Netns::cmd`]: `setns(2)` in the child between fork and exec, with
//!   `PR_SET_PDEATHSIG` so that it dies with this process (benchmarks: the
//!   measured process is the program itself, nothing in between);
//! - [`Netns::netns_exec`]: `ip netns exec NAME ...`, which also bind-mounts
//!   `/etc/netns/NAME/*` over `/etc` (a namespace's own `resolv.conf` and
//!   `hosts`, see [`EtcNetns`]) and remounts `/sys`; `ip` execs the
//!   program in place, so the child's pid is the program's.
//!
//! Fallible constructors and helpers return `io::Result` (xtask wants
//! errors); the test conveniences ([`Netns::new`], [`Netns::ip`],
//! [`Netns::run`], ...) panic with the command and its output instead,
//! which is what a failing test should show.

use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::unix::io::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::ctlist::CtEntry;

/// The client's and the server's addresses of [`Netns::pair`].
pub const CLIENT_V4: &str = "192.0.2.1";
pub const SERVER_V4: &str = "192.0.2.2";
pub const CLIENT_V6: &str = "2001:db8::1";
pub const SERVER_V6: &str = "2001:db8::2";

/// Directory of flowtop's sysctl state files.
pub const STATE_DIR: &str = "/run/flowtop";

static NEXT_NS: AtomicU32 = AtomicU32::new(0);

/// A command line for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion (stdin closed); an error naming the command if
/// it cannot start or exits non-zero (with what it printed). Returns stdout.
pub fn try_output(cmd: &mut Command) -> io::Result<String> {
    let what = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run `{what}`: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(failure(&what, &out)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn failure(what: &str, out: &Output) -> String {
    format!(
        "`{what}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd`, panics with its output unless it exits 0, returns stdout.
pub fn check_output(mut cmd: Command) -> String {
    try_output(&mut cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
    inode: u64,
    /// `/run/netns/NAME`, kept open for [`Netns::cmd`]'s `setns`.
    fd: Option<File>,
    /// On drop, also remove flowtop's state files for this namespace's inode
    /// (left by a killed flowtop), so a later namespace that gets the same
    /// inode number does not inherit them. On by default.
    pub clean_state_on_drop: bool,
}

impl Netns {
    /// `ip netns add NAME` with loopback up. Conntrack is not enabled: see
    /// [`Netns::enable_conntrack`].
    pub fn create(name: &str) -> io::Result<Netns> {
        try_output(Command::new("ip").args(["netns", "add", name]))?;
        // From here on, drop deletes the namespace whatever fails next.
        let mut ns = Netns {
            name: name.to_owned(),
            inode: 0,
            fd: None,
            clean_state_on_drop: true,
        };
        let path = ns.path();
        let file = File::open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))?;
        ns.inode = std::os::unix::fs::MetadataExt::ino(&file.metadata()?);
        ns.fd = Some(file);
        try_output(ns.cmd("ip").args(["link", "set", "lo", "up"]))?;
        Ok(ns)
    }

    /// A fresh namespace `ft-<pid>-<n>` (see [`Netns::create`]); panics on
    /// failure (tests).
    #[allow(clippy::new_without_default)] // it runs `ip netns add`: no default value
    pub fn new() -> Netns {
        let n = NEXT_NS.fetch_add(1, Ordering::SeqCst);
        let name = format!("ft-{}-{}", std::process::id(), n);
        Netns::create(&name).unwrap_or_else(|e| panic!("network namespace {name}: {e}"))
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
        Netns::join(&client, &server).unwrap_or_else(|e| panic!("{e}"));
        client.enable_conntrack();
        (client, server)
    }

    /// Joins `client` and `server` by a veth pair (`vc` / `vs`) with the
    /// addresses [`Netns::pair`] gives them, both links up; created
    /// directly inside the namespaces (no names in the host namespace).
    pub fn join(client: &Netns, server: &Netns) -> io::Result<()> {
        let ip = |ns: &Netns, args: &[&str]| ns.try_ip(args);
        ip(
            client,
            &[
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
            ],
        )?;
        ip(client, &["addr", "add", &format!("{CLIENT_V4}/24"), "dev", "vc"])?;
        ip(
            client,
            &["addr", "add", &format!("{CLIENT_V6}/64"), "dev", "vc", "nodad"],
        )?;
        ip(server, &["addr", "add", &format!("{SERVER_V4}/24"), "dev", "vs"])?;
        ip(
            server,
            &["addr", "add", &format!("{SERVER_V6}/64"), "dev", "vs", "nodad"],
        )?;
        ip(client, &["link", "set", "vc", "up"])?;
        ip(server, &["link", "set", "vs", "up"])?;
        Ok(())
    }

    /// `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Inode of the namespace (what `/proc/self/ns/net` shows inside it).
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// `prog` to be run inside the namespace: `setns` in the child before
    /// exec, and killed (`PR_SET_PDEATHSIG`) if this process dies. No
    /// `/etc/netns` binding: see [`Netns::netns_exec`].
    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        let fd = self.fd.as_ref().map_or(-1, |f| f.as_raw_fd());
        // SAFETY: only async-signal-safe syscalls between fork and exec.
        unsafe {
            c.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
                Ok(())
            });
        }
        c
    }

    /// `ip netns exec NAME prog args...` (not started): with the namespace's
    /// `/etc/netns/NAME` files over `/etc`.
    pub fn netns_exec(&self, prog: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]).args(args);
        c
    }

    /// `ip -n NAME args...`; its stdout, or an error with its output.
    pub fn try_ip(&self, args: &[&str]) -> io::Result<String> {
        try_output(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// `ip -n NAME args...`, must succeed; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut c = Command::new("ip");
        c.arg("-n").arg(&self.name).args(args);
        check_output(c)
    }

    /// Runs `prog args...` in the namespace, must exit 0; returns stdout.
    pub fn run(&self, prog: &str, args: &[&str]) -> String {
        check_output(self.netns_exec(prog, args))
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

    /// `sysctl -w KEY=VALUE` inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        try_output(self.cmd("sysctl").args(["-q", "-w", &format!("{key}={value}")])).map(|_| ())
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
        self.fd = None;
        let deleted = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !deleted {
            eprintln!(
                "warning: could not delete network namespace {0}: run `ip netns del {0}`",
                self.name
            );
        }
        if self.clean_state_on_drop && self.inode != 0 {
            for f in state_files(self.inode) {
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

/// Paths of files in [`STATE_DIR`] whose name contains `inode` as a number.
pub fn state_files(inode: u64) -> Vec<PathBuf> {
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

/// `/etc/netns/NAME/*`: files `ip netns exec NAME` binds over `/etc`
/// (`resolv.conf`, `hosts`); removed again on drop, whatever way the test
/// or benchmark ends.
pub struct EtcNetns(PathBuf);

impl EtcNetns {
    pub fn create(ns_name: &str, files: &[(&str, &str)]) -> io::Result<EtcNetns> {
        let dir = Path::new("/etc/netns").join(ns_name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("mkdir {}: {e}", dir.display())))?;
        let guard = EtcNetns(dir);
        for (name, text) in files {
            let path = guard.0.join(name);
            std::fs::write(&path, text)
                .map_err(|e| io::Error::new(e.kind(), format!("write {}: {e}", path.display())))?;
        }
        Ok(guard)
    }

    /// [`EtcNetns::create`] for `ns`, panicking on failure (tests).
    pub fn new(ns: &Netns, files: &[(&str, &str)]) -> EtcNetns {
        EtcNetns::create(&ns.name, files).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }
}

impl Drop for EtcNetns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Is process `pid` alive (or a zombie not yet reaped)?
pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM }
}

/// Sends `sig` to `pid` and waits up to `grace` for it to be gone; true if it is.
pub fn signal_and_wait(pid: i32, sig: libc::c_int, grace: Duration) -> bool {
    // SAFETY: plain kill(2); the caller names a process it may signal.
    unsafe {
        libc::kill(pid, sig);
    }
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !pid_alive(pid)
}

/// Deletes the namespaces `<prefix><pid>...` whose creating process `pid`
/// is gone (a killed test or benchmark), killing what that run left running
/// inside them first. Returns one line per action, for the caller's log.
pub fn remove_stale(prefix: &str) -> Vec<String> {
    use std::os::unix::fs::MetadataExt as _;
    let mut done = Vec::new();
    let Ok(rd) = std::fs::read_dir("/run/netns") else {
        return done;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('-').next())
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        if let Ok(meta) = std::fs::metadata(e.path()) {
            let link = format!("net:[{}]", meta.ino());
            for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Some(q) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                if std::fs::read_link(format!("/proc/{q}/ns/net")).is_ok_and(|l| l.to_string_lossy() == link)
                {
                    done.push(format!("killing process {q} left in stale namespace {name}"));
                    signal_and_wait(q, libc::SIGKILL, Duration::from_secs(3));
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stdin(Stdio::null())
            .status();
        done.push(format!("deleted stale namespace {name}"));
    }
    done
}
