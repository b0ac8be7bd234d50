//! `cargo xtask bench NAME [ARGS]`: benchmarks of flowtop against its peers.
//!
//! `dump` fills the conntrack table of a private network namespace with N UDP
//! entries and measures, side by side:
//!
//! * `conntrack -L` and `flowtop --once --json -4UnG --no-sysctl`: wall time,
//!   CPU time and peak RSS (from `wait4`'s rusage), median of `--runs`;
//! * steady state: CPU and memory of `flowtop --json -t 1 -4UnG --no-sysctl`
//!   and of netsniff-ng's flowtop 0.6.8 (`/usr/sbin/flowtop -4UGn`, run on a
//!   pseudo-terminal of its own) over `--cpu-secs` seconds, once the table is
//!   loaded.
//!
//! It writes `bench/dump.md` and prints the same to stdout.
//!
//! Everything it changes is undone on every path (guards with `Drop`; SIGINT,
//! SIGTERM and SIGHUP are caught and turned into an error): the namespace
//! `ftbench-<pid>` is deleted, the global `nf_conntrack_max` and the
//! `nf_conntrack` hash size are restored, and every process it started is
//! killed and reaped. The old sysctl values are also kept in
//! `/run/ftbench-<pid>.sysctl` until restored, so a run that died by SIGKILL
//! is cleaned up by the next one.

use crate::cmd;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Entry point, called by `xtask/src/main.rs` for `cargo xtask bench NAME [ARGS]`.
pub fn run(name: &str, args: &[String]) -> Result<()> {
    match name {
        "dump" => {
            let opts = DumpOpts::parse(args)?;
            let _signals = SignalGuard::install();
            dump(&opts)
        }
        "attribution" => attribution_cost(),
        "ui" => {
            let opts = crate::bench_ui::Opts::parse(args)?;
            let _signals = SignalGuard::install();
            crate::bench_ui::run(&opts)
        }
        "enrich" => {
            let _signals = SignalGuard::install();
            crate::bench_enrich::run(args)
        }
        "soak" => {
            let _signals = SignalGuard::install();
            crate::bench_soak::run(args)
        }
        "report" => {
            let _signals = SignalGuard::install();
            crate::bench_report::run(args)
        }
        "help" | "--help" | "-h" => {
            println!(
                "{DUMP_USAGE}\n\n{ATTRIBUTION_USAGE}\n\n{}\n\n{}\n\n{}\n\n{}",
                crate::bench_report::USAGE,
                crate::bench_enrich::USAGE,
                crate::bench_ui::USAGE,
                crate::bench_soak::USAGE
            );
            Ok(())
        }
        other => {
            bail!(
                "unknown benchmark '{other}'; available: report, dump, attribution, enrich, ui, soak\n\n{DUMP_USAGE}"
            )
        }
    }
}

const ATTRIBUTION_USAGE: &str = "\
usage: cargo xtask bench attribution

  Times 20 000 loopback connect/accept/close cycles and 100 000 ping-pongs
  with and without flowtop's eBPF socket programs attached (5 rounds, same
  run; flowtop/examples/attribution_cost.rs). Needs root. Writes
  bench/attribution.md.";

/// `bench attribution`: the probes' cost, measured by the example binary.
fn attribution_cost() -> Result<()> {
    let root = cmd::root_dir();
    let mut build = cmd::cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "flowtop",
        "--example",
        "attribution_cost",
    ]);
    cmd::run(&mut build)?;
    let bin = root.join("target/release/examples/attribution_cost");
    let out = std::process::Command::new(&bin)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let table = String::from_utf8_lossy(&out.stdout);
    let mut build = cmd::cargo();
    build.args(["build", "--release", "-p", "flowtop"]);
    cmd::run(&mut build)?;
    let accuracy = crate::bench_attr::accuracy(&root.join("target/release/flowtop"))?;
    let report = format!(
        "# flowtop attribution\n\n`cargo xtask bench attribution`\n\n- date: {}\n- kernel: {}\n- nproc: {}\n\n\
         ## Accuracy\n\n{accuracy}\n## Cost of the eBPF programs\n\n{table}",
        cmd::stdout_of(std::process::Command::new("date").args(["-u", "+%F %T UTC"])).unwrap_or_default().trim(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    std::fs::create_dir_all(root.join("bench"))?;
    std::fs::write(root.join("bench/attribution.md"), &report)?;
    print!("{report}");
    Ok(())
}

const DUMP_USAGE: &str = "\
usage: cargo xtask bench dump [--sizes N[,N..]] [--runs R] [--cpu-secs S] [--legacy-max N]

  --sizes      table sizes (UDP entries), default 100000,1000000 (k/M suffixes allowed)
  --runs       repetitions of the one-shot dumps (median reported), default 3
  --cpu-secs   steady-state measuring window in seconds, default 30
  --legacy-max largest size at which flowtop 0.6.8's steady state is measured, default 100000

Needs root. Writes bench/dump.md.";

pub(crate) const NETSNIFF_FLOWTOP: &str = "/usr/sbin/flowtop";
pub(crate) const CT_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
pub(crate) const CT_HASHSIZE: &str = "/sys/module/nf_conntrack/parameters/hashsize";
/// Hosts 198.51.100.2..=254, ports 1..=65535, one source socket.
const MAX_ENTRIES: u64 = 253 * 65535;

// ---------------------------------------------------------------- options

#[derive(Debug, Clone)]
struct DumpOpts {
    sizes: Vec<u64>,
    runs: usize,
    cpu_secs: f64,
    legacy_max: u64,
}

impl DumpOpts {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = DumpOpts {
            sizes: vec![100_000, 1_000_000],
            runs: 3,
            cpu_secs: 30.0,
            legacy_max: 100_000,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let (key, inline) = match a.split_once('=') {
                Some((k, v)) if k.starts_with("--") => (k, Some(v.to_string())),
                _ => (a.as_str(), None),
            };
            let mut value = || -> Result<String> {
                match &inline {
                    Some(v) => Ok(v.clone()),
                    None => it.next().cloned().with_context(|| format!("{key} needs a value")),
                }
            };
            match key {
                "--sizes" => {
                    o.sizes = value()?
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(parse_count)
                        .collect::<Result<_>>()?;
                }
                "--runs" => o.runs = value()?.parse().context("--runs")?,
                "--cpu-secs" => o.cpu_secs = value()?.parse().context("--cpu-secs")?,
                "--legacy-max" => o.legacy_max = parse_count(&value()?)?,
                "-h" | "--help" => {
                    println!("{DUMP_USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown option '{other}'\n\n{DUMP_USAGE}"),
            }
        }
        if o.sizes.is_empty() {
            bail!("--sizes is empty");
        }
        if let Some(&n) = o.sizes.iter().find(|&&n| n == 0 || n > MAX_ENTRIES) {
            bail!("size {n} out of range 1..={MAX_ENTRIES}");
        }
        if o.runs == 0 {
            bail!("--runs must be at least 1");
        }
        if !(o.cpu_secs > 0.0 && o.cpu_secs <= 3600.0) {
            bail!("--cpu-secs must be in (0, 3600]");
        }
        o.sizes.sort_unstable();
        o.sizes.dedup();
        Ok(o)
    }
}

pub(crate) fn parse_count(s: &str) -> Result<u64> {
    let t = s.trim().replace('_', "");
    let (num, mul) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000),
        Some('m' | 'M') => (&t[..t.len() - 1], 1_000_000),
        _ => (t.as_str(), 1),
    };
    let n: u64 = num.parse().with_context(|| format!("'{s}' is not a count"))?;
    Ok(n * mul)
}

// ---------------------------------------------------------------- signals

pub(crate) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catches SIGINT/SIGTERM/SIGHUP for the duration of the benchmark (so that
/// the guards' `Drop` runs), restoring the previous dispositions afterwards.
pub(crate) struct SignalGuard {
    old: Vec<(libc::c_int, libc::sigaction)>,
}

impl SignalGuard {
    pub(crate) fn install() -> Self {
        let mut old = Vec::new();
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: plain sigaction(2) with a handler that only stores to an atomic.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                libc::sigemptyset(&mut sa.sa_mask);
                sa.sa_flags = 0; // no SA_RESTART: blocking calls return EINTR
                let mut prev: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &sa, &mut prev) == 0 {
                    old.push((sig, prev));
                }
            }
        }
        SignalGuard { old }
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for (sig, prev) in &self.old {
            // SAFETY: restores the disposition saved by `install`.
            unsafe {
                libc::sigaction(*sig, prev, std::ptr::null_mut());
            }
        }
    }
}

pub(crate) fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

pub(crate) fn sleep_checked(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

// ---------------------------------------------------------------- helpers

pub(crate) fn log(msg: impl AsRef<str>) {
    eprintln!("[bench] {}", msg.as_ref());
}

pub(crate) fn repo_root() -> PathBuf {
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    if let Some(root) = compiled.filter(|r| r.join("flowtop/Cargo.toml").is_file()) {
        return root;
    }
    let mut dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    loop {
        if dir.join("flowtop/Cargo.toml").is_file() {
            return dir;
        }
        if !dir.pop() {
            return PathBuf::from(".");
        }
    }
}

/// Runs a short helper command, failing with its stderr if it fails.
pub(crate) fn run_cmd(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn read_trim(path: &str) -> Result<String> {
    Ok(fs::read_to_string(path)
        .with_context(|| format!("cannot read {path}"))?
        .trim()
        .to_string())
}

fn write_value(path: &str, value: &str) -> Result<()> {
    fs::write(path, value).with_context(|| format!("cannot write {value} to {path}"))
}

pub(crate) fn pid_alive(pid: i32) -> bool {
    // A zombie still has /proc/PID, but its state is Z.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(stat_fields(&s).first(), Some(&"Z") | Some(&"X")),
        Err(_) => false,
    }
}

/// The fields of /proc/PID/stat after the command name: [0] is the state
/// (field 3), so field k (1-based, as in proc(5)) is at index k - 3.
fn stat_fields(stat: &str) -> Vec<&str> {
    match stat.rfind(')') {
        Some(i) => stat[i + 1..].split_whitespace().collect(),
        None => Vec::new(),
    }
}

/// (utime, stime) of a process, in clock ticks.
pub(crate) fn cpu_ticks(pid: i32) -> Result<(u64, u64)> {
    let s =
        fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid} is gone"))?;
    let f = stat_fields(&s);
    let get = |k: usize| -> Result<u64> { Ok(f.get(k - 3).context("short /proc/PID/stat")?.parse()?) };
    Ok((get(14)?, get(15)?))
}

/// (busy, total) jiffies of the whole machine, from /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let s = fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum(); // guest time is already in user
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// (VmHWM, VmRSS) in KiB.
pub(crate) fn mem_kib(pid: i32) -> Result<(u64, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let field = |name: &str| -> Result<u64> {
        let line = s
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} for {pid}"))?;
        Ok(line[name.len()..].trim().trim_end_matches("kB").trim().parse()?)
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

pub(crate) fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Sends `sig`, waits up to `grace` for the process to go away.
pub(crate) fn signal_and_wait(pid: i32, sig: libc::c_int, grace: Duration) -> bool {
    // SAFETY: kill(2) on a pid we started (and have not reaped yet, or that is
    // a child of a process we started and still hold).
    unsafe {
        libc::kill(pid, sig);
    }
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if !pid_alive(pid) {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    !pid_alive(pid)
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------- guards

/// A network namespace `ftbench-<pid>`, deleted on drop.
pub(crate) struct Netns {
    pub(crate) name: String,
    fd: Option<File>,
}

impl Netns {
    pub(crate) fn create(name: &str) -> Result<Self> {
        run_cmd(Command::new("ip").args(["netns", "add", name]))?;
        let mut ns = Netns {
            name: name.to_string(),
            fd: None,
        };
        ns.fd = Some(
            File::open(format!("/run/netns/{name}"))
                .with_context(|| format!("cannot open /run/netns/{name}"))?,
        );
        Ok(ns)
    }

    /// A command that runs inside the namespace (setns in the child before
    /// exec) and is killed if this process dies.
    pub(crate) fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        let fd = self.fd.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
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

    pub(crate) fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        run_cmd(self.cmd("sysctl").args(["-q", "-w", &format!("{key}={value}")])).map(|_| ())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.fd = None;
        let ok = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            log(format!("deleted network namespace {}", self.name));
        } else {
            eprintln!(
                "[bench] WARNING: could not delete network namespace {}: run `ip netns del {}`",
                self.name, self.name
            );
        }
    }
}

/// Global sysctls raised for the benchmark, restored on drop. The old values
/// are also written to a state file so that a later run can restore them if
/// this one is killed with SIGKILL.
pub(crate) struct SysctlGuard {
    saved: Vec<(String, String)>,
    state_file: PathBuf,
}

impl SysctlGuard {
    pub(crate) fn new() -> Self {
        SysctlGuard {
            saved: Vec::new(),
            state_file: PathBuf::from(format!("/run/ftbench-{}.sysctl", std::process::id())),
        }
    }

    /// Makes `path` at least `min`; returns a description of the change.
    pub(crate) fn raise(&mut self, path: &str, min: u64) -> Result<Option<String>> {
        let old = read_trim(path)?;
        let old_n: u64 = old.parse().with_context(|| format!("{path}: '{old}'"))?;
        if old_n >= min {
            return Ok(None);
        }
        if !self.saved.iter().any(|(p, _)| p == path) {
            self.saved.push((path.to_string(), old.clone()));
            let state: String = self.saved.iter().map(|(p, v)| format!("{p} {v}\n")).collect();
            fs::write(&self.state_file, state)
                .with_context(|| format!("cannot write {}", self.state_file.display()))?;
        }
        write_value(path, &min.to_string())?;
        Ok(Some(format!("{path}: {old} -> {min}")))
    }

    /// Room for `n` conntrack entries: `nf_conntrack_max` with a fifth more
    /// and a margin (the limit is compared per namespace), and about one hash
    /// bucket per entry for fast inserts. Logs and returns each change.
    pub(crate) fn raise_for_entries(&mut self, n: u64) -> Result<Vec<String>> {
        let mut changed = Vec::new();
        for (path, min) in [(CT_MAX, n + n / 5 + 1000), (CT_HASHSIZE, n)] {
            if let Some(c) = self.raise(path, min)? {
                log(format!("raised {c}"));
                changed.push(c);
            }
        }
        Ok(changed)
    }

    /// Restores the values of runs that died without cleaning up.
    pub(crate) fn recover_stale() {
        let Ok(rd) = fs::read_dir("/run") else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("ftbench-")
                .and_then(|s| s.strip_suffix(".sysctl"))
            else {
                continue;
            };
            let Ok(pid) = pid.parse::<i32>() else { continue };
            if pid_alive(pid) {
                continue;
            }
            if let Ok(state) = fs::read_to_string(e.path()) {
                for line in state.lines() {
                    if let Some((p, v)) = line.split_once(' ') {
                        match write_value(p, v) {
                            Ok(()) => log(format!("restored {p} = {v} left by dead run {pid}")),
                            Err(err) => log(format!("WARNING: {err:#}")),
                        }
                    }
                }
            }
            let _ = fs::remove_file(e.path());
        }
    }
}

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        let mut all_ok = true;
        for (path, old) in self.saved.iter().rev() {
            match write_value(path, old) {
                Ok(()) => log(format!("restored {path} = {old}")),
                Err(e) => {
                    all_ok = false;
                    eprintln!("[bench] WARNING: {e:#}: restore it by hand");
                }
            }
        }
        if all_ok {
            let _ = fs::remove_file(&self.state_file);
        }
    }
}

/// Deletes namespaces `ftbench-<pid>` whose process is gone, killing what
/// that run left running inside them first.
pub(crate) fn remove_stale_namespaces() {
    use std::os::unix::fs::MetadataExt;
    // Scratch directories of dead runs.
    for e in fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("ftbench-").and_then(|s| s.parse::<i32>().ok()) {
            if !pid_alive(pid) && e.path().is_dir() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let Ok(rd) = fs::read_dir("/run/netns") else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("ftbench-").and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        if let Ok(meta) = fs::metadata(e.path()) {
            let link = format!("net:[{}]", meta.ino());
            for p in fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Some(q) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                if fs::read_link(format!("/proc/{q}/ns/net")).is_ok_and(|l| l.to_string_lossy() == link) {
                    log(format!("killing process {q} left in stale namespace {name}"));
                    signal_and_wait(q, libc::SIGKILL, Duration::from_secs(3));
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stdin(Stdio::null())
            .status();
        log(format!("deleted stale namespace {name}"));
    }
}

/// A long-running child: SIGTERM, then SIGKILL, and reaped on drop.
pub(crate) struct ProcGuard {
    child: Child,
    label: String,
}

impl ProcGuard {
    pub(crate) fn new(child: Child, label: &str) -> Self {
        ProcGuard {
            child,
            label: label.to_string(),
        }
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: our own unreaped child.
            unsafe {
                libc::kill(self.pid(), libc::SIGTERM);
            }
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end && self.child.try_wait().ok().flatten().is_none() {
                thread::sleep(Duration::from_millis(20));
            }
            if self.child.try_wait().ok().flatten().is_none() {
                eprintln!("[bench] {} ignored SIGTERM for 3 s: SIGKILL", self.label);
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// A scratch directory for stderr files, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new() -> Result<Self> {
        let p = std::env::temp_dir().join(format!("ftbench-{}", std::process::id()));
        fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- measuring

#[derive(Debug, Clone, Copy)]
pub(crate) struct RunStat {
    pub(crate) wall_s: f64,
    pub(crate) cpu_s: f64,
    pub(crate) user_s: f64,
    pub(crate) sys_s: f64,
    pub(crate) maxrss_kib: u64,
}

/// Runs `cmd` to completion with stdout to /dev/null; wall time, CPU time and
/// peak RSS from wait4.
/// Runs `flowtop --once --json -4UnG` untimed in `ns` and counts its
/// snapshot lines (checks that every flow is printed; warms caches).
pub(crate) fn once_snapshot_lines(ns: &Netns, flowtop: &Path, tmp: &Path, timeout: Duration) -> Result<u64> {
    let mut check = ns.cmd(&flowtop.to_string_lossy());
    check
        .args(["--once", "--json", "-4UnG", "--no-sysctl"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(tmp.join("check.err"))?);
    let mut child = check.spawn().context("cannot start flowtop --once")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (counter, reader) = spawn_counter(stdout);
    let mut g = ProcGuard::new(child, "flowtop --once");
    let t0 = Instant::now();
    while g.exited().is_none() {
        sleep_checked(Duration::from_millis(20))?;
        if t0.elapsed() > timeout {
            bail!("flowtop --once took longer than {timeout:?}");
        }
    }
    drop(g);
    let _ = reader.join();
    Ok(counter.snapshots.load(Ordering::Relaxed))
}

pub(crate) fn timed_run(cmd: &mut Command, stderr_path: &Path, timeout: Duration) -> Result<RunStat> {
    check_interrupted()?;
    cmd.stdin(Stdio::null())
        .stdout(File::create("/dev/null")?)
        .stderr(
            File::create(stderr_path).with_context(|| format!("cannot create {}", stderr_path.display()))?,
        );
    let t0 = Instant::now();
    let child = cmd.spawn().with_context(|| format!("cannot start {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    drop(child); // reaped below with wait4; std's Child does nothing on drop
    let mut status: libc::c_int = 0;
    // SAFETY: zeroed rusage is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let wall = loop {
        // SAFETY: wait4 on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break t0.elapsed();
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                bail!("wait4: {e}");
            }
        }
        let interrupted = INTERRUPTED.load(Ordering::SeqCst);
        if interrupted || t0.elapsed() > timeout {
            // SAFETY: our own unreaped child; then reap it.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                while libc::wait4(pid, &mut status, 0, &mut ru) < 0
                    && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
                {}
            }
            if interrupted {
                bail!("interrupted");
            }
            bail!("{cmd:?} took longer than {timeout:?}; killed");
        }
        thread::sleep(Duration::from_micros(200));
    };
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let err = fs::read_to_string(stderr_path).unwrap_or_default();
        bail!("{cmd:?} failed (wait status {status:#x}): {}", err.trim());
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(RunStat {
        wall_s: wall.as_secs_f64(),
        cpu_s: tv(ru.ru_utime) + tv(ru.ru_stime),
        user_s: tv(ru.ru_utime),
        sys_s: tv(ru.ru_stime),
        maxrss_kib: ru.ru_maxrss as u64,
    })
}

/// Output of a running `flowtop --json`: total bytes and snapshot lines,
/// `update` lines of the active flows of [`ACTIVE_PY`], the last `stats` line.
#[derive(Default)]
pub(crate) struct OutCounter {
    pub(crate) bytes: AtomicU64,
    pub(crate) snapshots: AtomicU64,
    pub(crate) lines: AtomicU64,
    pub(crate) active_updates: AtomicU64,
    pub(crate) stats: Mutex<Option<(u64, String)>>,
}

/// Destination port of the active flows [`ACTIVE_PY`] makes.
const ACTIVE_DPORT: u16 = 9999;

/// N UDP sockets on 127.0.0.1 ports 20000.. each sending a 100-byte datagram
/// to port 9999 twice a second: N conntrack entries whose counters move.
const ACTIVE_PY: &str = r#"
import socket, sys, time
n = int(sys.argv[1])
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 20000 + i))
    socks.append(s)
print("ready", flush=True)
while True:
    t = time.time()
    for s in socks:
        s.sendto(b"x" * 100, ("127.0.0.1", 9999))
    time.sleep(max(0.0, 0.5 - (time.time() - t)))
"#;

pub(crate) fn spawn_counter(out: impl Read + Send + 'static) -> (Arc<OutCounter>, thread::JoinHandle<()>) {
    let c = Arc::new(OutCounter::default());
    let c2 = c.clone();
    let h = thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 20, out);
        let mut line = Vec::with_capacity(4096);
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    c2.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    c2.lines.fetch_add(1, Ordering::Relaxed);
                    if line.starts_with(br#"{"event":"snapshot""#) {
                        c2.snapshots.fetch_add(1, Ordering::Relaxed);
                    } else if line.starts_with(br#"{"event":"update""#) {
                        let dport = format!("\"dport\":{ACTIVE_DPORT},");
                        if line.windows(dport.len()).any(|w| w == dport.as_bytes()) {
                            c2.active_updates.fetch_add(1, Ordering::Relaxed);
                        }
                    } else if line.starts_with(br#"{"event":"stats""#) {
                        let mut last = c2.stats.lock().unwrap_or_else(|p| p.into_inner());
                        let seen = last.as_ref().map_or(0, |(k, _)| *k);
                        *last = Some((seen + 1, String::from_utf8_lossy(&line).into_owned()));
                    }
                }
            }
        }
    });
    (c, h)
}

#[derive(Debug, Clone)]
pub(crate) struct Steady {
    pub(crate) other_pct: f64,
    pub(crate) cpu_pct: f64,
    pub(crate) user_pct: f64,
    pub(crate) sys_pct: f64,
    pub(crate) window_s: f64,
    pub(crate) warmup_s: f64,
    pub(crate) hwm_kib: u64,
    pub(crate) rss_kib: u64,
    pub(crate) note: String,
    /// What flowtop's `stats` lines (SIGUSR1 before and after) counted
    /// during the window; None when it printed none (an older flowtop).
    pub(crate) refresh: Option<RefreshCounts>,
    /// Flows made active during the window, and `update` lines about them.
    pub(crate) active: Option<(u64, u64)>,
}

impl Steady {
    /// `update` lines per active flow per second of the window (1.0: every
    /// active flow's rates re-read every interval of 1 s).
    pub(crate) fn updates_per_active_flow_s(&self) -> Option<f64> {
        self.active
            .map(|(flows, updates)| updates as f64 / flows as f64 / self.window_s)
    }
}

/// Full dumps and hot refreshes during a steady-state window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefreshCounts {
    pub(crate) dumps: u64,
    pub(crate) refreshes: u64,
    pub(crate) refreshed: u64,
}

/// Asks a running `flowtop --json` for a `stats` line (SIGUSR1) and returns
/// it, or None if none came within 2 s.
fn ask_stats(pid: i32, counter: &OutCounter) -> Option<String> {
    let before = counter.stats.lock().ok()?.as_ref().map_or(0, |(k, _)| *k);
    // SAFETY: kill with a valid signal number.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        if let Some((k, line)) = counter.stats.lock().ok()?.as_ref() {
            if *k > before {
                return Some(line.clone());
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Measures CPU (% of one core) and memory of `pid` over `secs`.
pub(crate) fn measure_window(
    pid: i32,
    secs: f64,
    alive: &mut dyn FnMut() -> Option<String>,
) -> Result<Window> {
    let tck = clk_tck();
    let c0 = cpu_ticks(pid)?;
    let m0 = machine_ticks();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        sleep_checked((end - Instant::now()).min(Duration::from_millis(250)))?;
        if let Some(st) = alive() {
            bail!("process {pid} exited during the measurement ({st})");
        }
    }
    let c1 = cpu_ticks(pid)?;
    let m1 = machine_ticks();
    let window = t0.elapsed().as_secs_f64();
    let (hwm_kib, rss_kib) = mem_kib(pid)?;
    let pct = |ticks: u64| ticks as f64 / tck / window * 100.0;
    Ok(Window {
        cpu_pct: pct(c1.0 + c1.1 - c0.0 - c0.1),
        user_pct: pct(c1.0 - c0.0),
        sys_pct: pct(c1.1 - c0.1),
        other_pct: (pct(m1.0 - m0.0) - pct(c1.0 + c1.1 - c0.0 - c0.1)).max(0.0),
        window_s: window,
        hwm_kib,
        rss_kib,
    })
}

pub(crate) struct Window {
    pub(crate) cpu_pct: f64,
    pub(crate) user_pct: f64,
    pub(crate) sys_pct: f64,
    /// CPU the rest of the machine used during the window (% of one core).
    pub(crate) other_pct: f64,
    pub(crate) window_s: f64,
    pub(crate) hwm_kib: u64,
    pub(crate) rss_kib: u64,
}

/// Starts `flowtop --json -t 1 -4UnG --no-sysctl` in `ns`, stderr to `errp`;
/// returns it (killed on drop) and its stdout.
pub(crate) fn spawn_flowtop_json(
    ns: &Netns,
    flowtop: &Path,
    errp: &Path,
) -> Result<(ProcGuard, std::process::ChildStdout)> {
    let mut cmd = ns.cmd(&flowtop.to_string_lossy());
    cmd.args(["--json", "-t", "1", "-4UnG", "--no-sysctl"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(errp)?);
    let mut child = cmd.spawn().context("cannot start flowtop --json")?;
    let stdout = child.stdout.take().context("no stdout")?;
    Ok((ProcGuard::new(child, "flowtop --json"), stdout))
}

/// The steady state of `flowtop --json -t 1` on a table of `n` idle entries,
/// plus `active` flows with traffic made once the table is loaded.
pub(crate) fn steady_flowtop(
    ns: &Netns,
    flowtop: &Path,
    n: u64,
    active: u64,
    secs: f64,
    tmp: &Path,
) -> Result<Steady> {
    let errp = tmp.join("steady-flowtop.err");
    let (mut guard, stdout) = spawn_flowtop_json(ns, flowtop, &errp)?;
    let (counter, reader) = spawn_counter(stdout);
    let pid = guard.pid();
    let t0 = Instant::now();
    let max_wait = Duration::from_secs_f64(20.0 + n as f64 / 20_000.0);
    let mut note = String::new();
    // Wait for the initial dump: the snapshot lines have stopped coming for
    // 3 s (normally all N of them; fewer is noted), up to the deadline.
    let mut last_snap = 0;
    let mut last_change = Instant::now();
    loop {
        sleep_checked(Duration::from_millis(100))?;
        if let Some(st) = guard.exited() {
            let err = fs::read_to_string(&errp).unwrap_or_default();
            bail!("flowtop --json exited early ({st}): {}", err.trim());
        }
        let snaps = counter.snapshots.load(Ordering::Relaxed);
        if snaps != last_snap {
            last_snap = snaps;
            last_change = Instant::now();
        }
        if snaps > 0 && last_change.elapsed() >= Duration::from_secs(3) {
            if snaps != n {
                let _ = write!(
                    note,
                    "initial dump printed {snaps} snapshot lines for {n} flows. "
                );
            }
            break;
        }
        if t0.elapsed() > max_wait {
            let _ = write!(
                note,
                "warm-up cut at {:.0} s: {snaps} of {n} snapshot lines, still growing. ",
                max_wait.as_secs_f64()
            );
            break;
        }
    }
    let warmup_s = t0.elapsed().as_secs_f64();
    let _traffic = if active > 0 {
        let script = tmp.join("active.py");
        fs::write(&script, ACTIVE_PY)?;
        let mut cmd = ns.cmd("python3");
        cmd.arg(&script)
            .arg(active.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .context("cannot start the traffic of the active flows")?;
        let mut ready = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut ready)?;
        let guard = ProcGuard::new(child, "active flows");
        // Let the flows appear and their first rates be measured.
        sleep_checked(Duration::from_secs(3))?;
        Some(guard)
    } else {
        None
    };
    let bytes_before = counter.bytes.load(Ordering::Relaxed);
    let lines_before = counter.lines.load(Ordering::Relaxed);
    let active_before = counter.active_updates.load(Ordering::Relaxed);
    let stats_before = ask_stats(pid, &counter);
    let w = measure_window(pid, secs, &mut || guard.exited())?;
    let stats_after = ask_stats(pid, &counter);
    let active_updates = counter.active_updates.load(Ordering::Relaxed) - active_before;
    let refresh = match (stats_before, stats_after) {
        (Some(a), Some(b)) => {
            let d = |k: &str| {
                field(&b, k)
                    .unwrap_or(0)
                    .saturating_sub(field(&a, k).unwrap_or(0))
            };
            Some(RefreshCounts {
                dumps: d("dumps"),
                refreshes: d("refreshes"),
                refreshed: d("refreshed"),
            })
        }
        _ => None,
    };
    let dbytes = counter.bytes.load(Ordering::Relaxed) - bytes_before;
    let dlines = counter.lines.load(Ordering::Relaxed) - lines_before;
    if dlines > 0 {
        let _ = write!(
            note,
            "printed {dlines} lines ({dbytes} bytes) during the window. "
        );
    }
    drop(guard);
    let _ = reader.join();
    Ok(Steady {
        cpu_pct: w.cpu_pct,
        user_pct: w.user_pct,
        sys_pct: w.sys_pct,
        other_pct: w.other_pct,
        window_s: w.window_s,
        warmup_s,
        hwm_kib: w.hwm_kib,
        rss_kib: w.rss_kib,
        note: note.trim().to_string(),
        refresh,
        active: (active > 0).then_some((active, active_updates)),
    })
}

/// A non-negative integer field of a JSON line, by plain text search.
fn field(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = line[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A pseudo-terminal pair: (master, slave), both close-on-exec, with a
/// 200x50 window.
fn open_pty() -> Result<(File, File)> {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    let ws = libc::winsize {
        ws_row: 50,
        ws_col: 200,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty with valid out-pointers; the fds it returns are ours.
    unsafe {
        if libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        ) != 0
        {
            return Err(io::Error::last_os_error()).context("openpty");
        }
        let (m, s) = (File::from_raw_fd(master), File::from_raw_fd(slave));
        for fd in [master, slave] {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        Ok((m, s))
    }
}

/// netsniff-ng's flowtop needs a terminal: it runs on a pty of its own
/// (session leader, pty as controlling terminal) whose output a thread
/// drains; it is killed (PDEATHSIG) if this process dies.
pub(crate) fn steady_netsniff(ns: &Netns, secs: f64) -> Result<Steady> {
    let (master, slave) = open_pty()?;
    let mut cmd = ns.cmd(NETSNIFF_FLOWTOP);
    cmd.arg("-4UGn")
        .env("TERM", "xterm")
        .env("COLUMNS", "200")
        .env("LINES", "50")
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    // SAFETY: setsid and ioctl are async-signal-safe; fd 0 is the pty slave by now.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().context("cannot start flowtop 0.6.8")?;
    drop(cmd); // closes the parent's copies of the slave
    let mut guard = ProcGuard::new(child, "flowtop 0.6.8");
    let pid = guard.pid();
    let screen = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let screen2 = screen.clone();
    let mut reader = master.try_clone()?;
    // Keeps the last bytes of the screen output, for error messages; ends
    // with EIO once flowtop has exited.
    let drain = thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(k) = reader.read(&mut buf) {
            if k == 0 {
                break;
            }
            if let Ok(mut s) = screen2.lock() {
                s.extend_from_slice(&buf[..k]);
                let len = s.len();
                if len > 8192 {
                    s.drain(..len - 4096);
                }
            }
        }
    });
    let screen_tail = || {
        let s = screen
            .lock()
            .map(|s| String::from_utf8_lossy(&s).into_owned())
            .unwrap_or_default();
        s.chars()
            .filter(|c| !c.is_control() || *c == '\n')
            .collect::<String>()
    };
    let t0 = Instant::now();
    // Let it load the table: at least 10 s, then until its RSS has not grown
    // for 3 s (up to 90 s).
    let mut note = String::new();
    let mut last_rss = 0;
    let mut stable_since = Instant::now();
    loop {
        sleep_checked(Duration::from_millis(500))?;
        if let Some(st) = guard.exited() {
            bail!("flowtop 0.6.8 exited early ({st}): {}", screen_tail().trim());
        }
        let (_, rss) = mem_kib(pid)?;
        if rss > last_rss {
            last_rss = rss;
            stable_since = Instant::now();
        }
        if t0.elapsed() >= Duration::from_secs(10) && stable_since.elapsed() >= Duration::from_secs(3) {
            break;
        }
        if t0.elapsed() >= Duration::from_secs(90) {
            note.push_str("warm-up cut at 90 s: RSS still growing. ");
            break;
        }
    }
    let warmup_s = t0.elapsed().as_secs_f64();
    let w = measure_window(pid, secs, &mut || {
        if pid_alive(pid) {
            None
        } else {
            Some("gone".into())
        }
    })?;
    drop(guard);
    let _ = drain.join();
    drop(master);
    if pid_alive(pid) {
        bail!("flowtop 0.6.8 (pid {pid}) survived the kill");
    }
    Ok(Steady {
        cpu_pct: w.cpu_pct,
        user_pct: w.user_pct,
        sys_pct: w.sys_pct,
        other_pct: w.other_pct,
        window_s: w.window_s,
        warmup_s,
        hwm_kib: w.hwm_kib,
        rss_kib: w.rss_kib,
        note: note.trim().to_string(),
        refresh: None,
        active: None,
    })
}

// ---------------------------------------------------------------- the benchmark

pub(crate) const FILL_PY: &str = r#"
import socket, sys, time
n = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.51.100.1", 0))
sent = errs = 0
t0 = time.monotonic()
for host in range(2, 255):
    dst = "198.51.100.%d" % host
    for port in range(1, 65536):
        if sent >= n:
            break
        for attempt in range(100):
            try:
                s.sendto(b"x", (dst, port))
                break
            except OSError:
                errs += 1
                time.sleep(0.001)
        sent += 1
    if sent >= n:
        break
print(sent, errs, "%.3f" % (time.monotonic() - t0))
"#;

/// Everything measured at one size.
struct SizeResult {
    n: u64,
    fill_s: f64,
    counted: u64,
    changed: Vec<String>,
    empty_flowtop: Vec<RunStat>,
    empty_conntrack: Vec<RunStat>,
    conntrack: Vec<RunStat>,
    flowtop: Vec<RunStat>,
    flowtop_lines: Option<u64>,
    conntrack_shown: Option<u64>,
    steady_new: Option<Result<Steady, String>>,
    steady_old: Option<Result<Steady, String>>,
}

pub(crate) fn setup_namespace(ns: &Netns) -> Result<&'static str> {
    let ip = |args: &[&str]| run_cmd(ns.cmd("ip").args(args)).map(|_| ());
    ip(&["link", "set", "lo", "up"])?;
    // A dummy interface if the kernel has the driver; otherwise a veth pair
    // whose peer stays down (packets are dropped by the qdisc after conntrack
    // confirmed them), ARP off so that nothing waits on neighbour resolution.
    let kind = if ip(&["link", "add", "ftb0", "type", "dummy"]).is_ok() {
        "dummy"
    } else {
        ip(&["link", "add", "ftb0", "type", "veth", "peer", "name", "ftb1"])?;
        "veth (peer down)"
    };
    ip(&["link", "set", "ftb0", "arp", "off", "up"])?;
    ip(&["addr", "add", "198.51.100.1/24", "dev", "ftb0"])?;
    let nft = |args: &[&str]| run_cmd(ns.cmd("nft").args(args)).map(|_| ());
    nft(&["add", "table", "inet", "ftbench"])?;
    nft(&[
        "add",
        "chain",
        "inet",
        "ftbench",
        "out",
        "{ type filter hook output priority 0; }",
    ])?;
    nft(&[
        "add", "rule", "inet", "ftbench", "out", "ct", "state", "new", "accept",
    ])?;
    ns.sysctl("net.netfilter.nf_conntrack_udp_timeout", "3600")?;
    ns.sysctl("net.netfilter.nf_conntrack_udp_timeout_stream", "3600")?;
    ns.sysctl("net.netfilter.nf_conntrack_acct", "1")?;
    Ok(kind)
}

/// Refuses to start a benchmark without root (`why` says what needs it).
pub(crate) fn require_root(what: &str, why: &str) -> Result<()> {
    if !crate::cmd::is_root() {
        bail!("{what} needs root ({why})");
    }
    Ok(())
}

/// Refuses to start a benchmark without one of `tools` (each started with
/// `-V`: only whether it starts matters).
pub(crate) fn require_tools(tools: &[&str]) -> Result<()> {
    for tool in tools {
        if Command::new(tool)
            .arg("-V")
            .stdin(Stdio::null())
            .output()
            .is_err()
        {
            bail!("'{tool}' is not installed");
        }
    }
    Ok(())
}

pub(crate) fn conntrack_count(ns: &Netns) -> Result<u64> {
    let out = run_cmd(ns.cmd("conntrack").arg("-C"))?;
    out.trim()
        .parse()
        .with_context(|| format!("conntrack -C printed '{}'", out.trim()))
}

fn one_size(opts: &DumpOpts, n: u64, flowtop: &Path, tmp: &Path, with_legacy: bool) -> Result<SizeResult> {
    let mut sysctls = SysctlGuard::new();
    let changed = sysctls.raise_for_entries(n)?;
    let ns = Netns::create(&format!("ftbench-{}", std::process::id()))?;
    let kind = setup_namespace(&ns)?;
    log(format!("namespace {} ready ({kind} interface)", ns.name));
    let timeout = Duration::from_secs_f64(60.0 + n as f64 / 2_000.0);

    // Baselines on the empty table.
    let mut empty_flowtop = Vec::new();
    let mut empty_conntrack = Vec::new();
    for _ in 0..opts.runs {
        empty_conntrack.push(timed_run(
            ns.cmd("conntrack").arg("-L"),
            &tmp.join("ct.err"),
            timeout,
        )?);
        empty_flowtop.push(timed_run(
            ns.cmd(&flowtop.to_string_lossy())
                .args(["--once", "--json", "-4UnG", "--no-sysctl"]),
            &tmp.join("ft.err"),
            timeout,
        )?);
    }

    // Fill.
    log(format!("filling the table with {n} UDP entries"));
    let fill = timed_run(
        ns.cmd("python3").args(["-c", FILL_PY, &n.to_string()]),
        &tmp.join("fill.err"),
        timeout,
    )?;
    let counted = conntrack_count(&ns)?;
    log(format!(
        "filled in {:.2} s; conntrack -C = {counted}",
        fill.wall_s
    ));
    if counted < n {
        bail!("only {counted} of {n} entries in the table after the fill");
    }

    // Untimed pass first: checks that flowtop prints every flow (and warms caches).
    let flowtop_lines = Some(once_snapshot_lines(&ns, flowtop, tmp, timeout)?);

    // Timed, interleaved.
    let mut conntrack = Vec::new();
    let mut ft = Vec::new();
    let mut conntrack_shown = None;
    for r in 0..opts.runs {
        log(format!("dump run {}/{}", r + 1, opts.runs));
        let errp = tmp.join("ct.err");
        conntrack.push(timed_run(ns.cmd("conntrack").arg("-L"), &errp, timeout)?);
        conntrack_shown = fs::read_to_string(&errp).ok().and_then(|s| {
            s.split(": ")
                .nth(1)
                .and_then(|t| t.split_whitespace().next().and_then(|x| x.parse().ok()))
        });
        ft.push(timed_run(
            ns.cmd(&flowtop.to_string_lossy())
                .args(["--once", "--json", "-4UnG", "--no-sysctl"]),
            &tmp.join("ft.err"),
            timeout,
        )?);
    }

    // Steady state.
    let steady_new = if opts.cpu_secs > 0.0 {
        log(format!(
            "steady state of flowtop --json -t 1 ({} s window)",
            opts.cpu_secs
        ));
        Some(match steady_flowtop(&ns, flowtop, n, 0, opts.cpu_secs, tmp) {
            Ok(s) => Ok(s),
            Err(e) if INTERRUPTED.load(Ordering::SeqCst) => return Err(e),
            Err(e) => Err(format!("{e:#}")),
        })
    } else {
        None
    };
    let steady_old = if with_legacy {
        log(format!(
            "steady state of flowtop 0.6.8 -4UGn ({} s window)",
            opts.cpu_secs
        ));
        Some(match steady_netsniff(&ns, opts.cpu_secs) {
            Ok(s) => Ok(s),
            Err(e) if INTERRUPTED.load(Ordering::SeqCst) => return Err(e),
            Err(e) => Err(format!("{e:#}")),
        })
    } else {
        None
    };
    // Guards drop here: namespace first, then the global sysctls.
    drop(ns);
    drop(sysctls);
    Ok(SizeResult {
        n,
        fill_s: fill.wall_s,
        counted,
        changed,
        empty_flowtop,
        empty_conntrack,
        conntrack,
        flowtop: ft,
        flowtop_lines,
        conntrack_shown,
        steady_new,
        steady_old,
    })
}

fn dump(opts: &DumpOpts) -> Result<()> {
    require_root("bench dump", "network namespaces, sysctls")?;
    require_tools(&["ip", "nft", "conntrack", "python3", "sysctl"])?;
    let legacy = Path::new(NETSNIFF_FLOWTOP).is_file();
    if !legacy {
        log(format!(
            "{NETSNIFF_FLOWTOP} missing: no comparison with flowtop 0.6.8 (apt-get install netsniff-ng)"
        ));
    }
    remove_stale_namespaces();
    SysctlGuard::recover_stale();

    let root = repo_root();
    log("building flowtop (release)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(&cargo)
        .args(["build", "--release", "-p", "flowtop"])
        .current_dir(&root)
        .stdin(Stdio::null())
        .status()
        .context("cannot run cargo build")?;
    if !st.success() {
        bail!("cargo build --release -p flowtop failed");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let flowtop = target_dir.join("release/flowtop");
    if !flowtop.is_file() {
        bail!("{} missing after the build", flowtop.display());
    }
    let tmp = TempDir::new()?;
    let started = Instant::now();
    let mut results = Vec::new();
    for (i, &n) in opts.sizes.iter().enumerate() {
        if i > 0 {
            // Let the kernel free the previous namespace's entries.
            sleep_checked(Duration::from_secs(2))?;
        }
        log(format!("=== {n} flows ==="));
        let with_legacy = legacy && n <= opts.legacy_max;
        results.push(one_size(opts, n, &flowtop, &tmp.0, with_legacy)?);
    }
    let report = render(opts, &root, &results, started.elapsed());
    let dir = root.join("bench");
    fs::create_dir_all(&dir)?;
    let path = dir.join("dump.md");
    fs::write(&path, &report).with_context(|| format!("cannot write {}", path.display()))?;
    println!("{report}");
    log(format!("wrote {}", path.display()));
    Ok(())
}

// ---------------------------------------------------------------- report

pub(crate) fn machine_info(root: &Path) -> Vec<(String, String)> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "?".into());
    let nproc = thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|k| k.parse::<f64>().ok()))
        .map(|kib| format!("{:.1} GiB", kib / 1048576.0))
        .unwrap_or_else(|| "?".into());
    let kernel = read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|_| "?".into());
    let date = run_cmd(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M:%S UTC"]))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let git = |args: &[&str]| {
        run_cmd(Command::new("git").arg("-C").arg(root).args(args)).map(|s| s.trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|_| "?".into());
    let dirty = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        "flowtop",
        "flowtop-common",
        "Cargo.toml",
        "Cargo.lock",
    ])
    .map(|s| !s.is_empty())
    .unwrap_or(false);
    let conntrack = run_cmd(Command::new("conntrack").arg("--version"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    // flowtop 0.6.8 -v exits with status 1.
    let old = Command::new(NETSNIFF_FLOWTOP)
        .arg("-v")
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "not installed".into());
    vec![
        ("date".into(), date),
        ("machine".into(), format!("{nproc} CPUs, {model}, {mem} RAM")),
        ("kernel".into(), kernel),
        (
            "flowtop commit".into(),
            if dirty {
                format!("{commit} + uncommitted changes in the working tree")
            } else {
                commit
            },
        ),
        ("conntrack".into(), conntrack),
        ("netsniff-ng flowtop".into(), old),
    ]
}

/// A metric measured for the peer and for flowtop, and how to show it.
type MetricPair<'a> = (&'a str, &'a [f64], &'a [f64], fn(f64) -> String);

pub(crate) fn secs(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.3} s")
    } else {
        format!("{v:.1} s")
    }
}

/// Milliseconds for a table: two decimals below 10, "—" for none (NaN).
pub(crate) fn ms(v: f64) -> String {
    if v.is_nan() {
        "—".into()
    } else if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.0} ms")
    }
}

pub(crate) fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

fn list(vals: &[f64], f: fn(f64) -> String) -> String {
    vals.iter().map(|&v| f(v)).collect::<Vec<_>>().join(", ")
}

fn ratio(a: f64, b: f64, peer: &str) -> String {
    if b > 0.0 {
        format!("{:.2} × {peer}", a / b)
    } else {
        "—".into()
    }
}

struct Table(Vec<[String; 5]>);

impl Table {
    fn row(&mut self, tool: &str, metric: &str, median: String, runs: String, ratio: String) {
        self.0.push([tool.into(), metric.into(), median, runs, ratio]);
    }

    fn render(&self, out: &mut String) {
        out.push_str("| tool | metric | median | runs | ratio vs peer |\n|---|---|---:|---|---|\n");
        for r in &self.0 {
            let _ = writeln!(out, "| {} | {} | {} | {} | {} |", r[0], r[1], r[2], r[3], r[4]);
        }
    }
}

fn render(opts: &DumpOpts, root: &Path, results: &[SizeResult], took: Duration) -> String {
    let mut o = String::new();
    o.push_str("# flowtop dump benchmark\n\n");
    let _ = writeln!(
        o,
        "`cargo xtask bench dump --sizes {} --runs {} --cpu-secs {}` (took {:.0} s)\n",
        opts.sizes
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(","),
        opts.runs,
        opts.cpu_secs,
        took.as_secs_f64()
    );
    for (k, v) in machine_info(root) {
        let _ = writeln!(o, "- {k}: {v}");
    }
    o.push_str(
        "\nSetup: a fresh network namespace per size; N UDP entries (one socket, 198.51.100.1 → \
198.51.100.2-254, distinct ports; acct on, UDP timeout 3600 s). One-shot: `conntrack -L > /dev/null` and \
`flowtop --once --json -4UnG --no-sysctl > /dev/null`, interleaved, wall time / CPU (user+sys) / peak RSS \
from wait4. Peak RSS per flow = (peak RSS at N − median peak RSS on the empty table) / N. Steady state: \
`flowtop --json -t 1 -4UnG --no-sysctl` (stdout drained by a pipe) and `flowtop -4UGn` 0.6.8 on a pty of its own \
(output drained), CPU from /proc/PID/stat utime+stime over the window after the warm-up, VmHWM/VmRSS from \
/proc/PID/status at the end of the window; one run each. A CPU-bound process only gets what the rest of \
the machine leaves over: see \"rest of the machine\".\n",
    );

    let mut verdicts = Vec::new();
    for r in results {
        let n = r.n;
        let _ = writeln!(o, "\n## {n} flows\n");
        let _ = writeln!(o, "- fill: {} (conntrack -C = {})", secs(r.fill_s), r.counted);
        if !r.changed.is_empty() {
            let _ = writeln!(
                o,
                "- raised for this size (restored afterwards): {}",
                r.changed.join("; ")
            );
        }
        if let Some(l) = r.flowtop_lines {
            let flag = if l == r.counted { "" } else { " **≠ table size**" };
            let _ = writeln!(o, "- flowtop --once --json printed {l} snapshot lines{flag}");
        }
        if let Some(s) = r.conntrack_shown {
            let _ = writeln!(o, "- conntrack -L showed {s} entries");
        }
        o.push('\n');
        let mut t = Table(Vec::new());
        let ct_wall: Vec<f64> = r.conntrack.iter().map(|s| s.wall_s).collect();
        let ft_wall: Vec<f64> = r.flowtop.iter().map(|s| s.wall_s).collect();
        let ct_cpu: Vec<f64> = r.conntrack.iter().map(|s| s.cpu_s).collect();
        let ft_cpu: Vec<f64> = r.flowtop.iter().map(|s| s.cpu_s).collect();
        let ct_user: Vec<f64> = r.conntrack.iter().map(|s| s.user_s).collect();
        let ft_user: Vec<f64> = r.flowtop.iter().map(|s| s.user_s).collect();
        let ct_sys: Vec<f64> = r.conntrack.iter().map(|s| s.sys_s).collect();
        let ft_sys: Vec<f64> = r.flowtop.iter().map(|s| s.sys_s).collect();
        let ct_rss: Vec<f64> = r.conntrack.iter().map(|s| s.maxrss_kib as f64).collect();
        let ft_rss: Vec<f64> = r.flowtop.iter().map(|s| s.maxrss_kib as f64).collect();
        let ft_rss0 = median(
            &r.empty_flowtop
                .iter()
                .map(|s| s.maxrss_kib as f64)
                .collect::<Vec<_>>(),
        );
        let ct_rss0 = median(
            &r.empty_conntrack
                .iter()
                .map(|s| s.maxrss_kib as f64)
                .collect::<Vec<_>>(),
        );
        let per_flow = |kib: f64, base: f64| (kib - base) * 1024.0 / n as f64;
        const CT: &str = "conntrack -L";
        const FT: &str = "flowtop --once --json";
        // One pair of rows per metric: the peer, then flowtop with its ratio.
        let pairs: [MetricPair<'_>; 5] = [
            ("wall time", &ct_wall, &ft_wall, secs),
            ("CPU time (user+sys)", &ct_cpu, &ft_cpu, secs),
            ("CPU user", &ct_user, &ft_user, secs),
            ("CPU sys", &ct_sys, &ft_sys, secs),
            ("peak RSS", &ct_rss, &ft_rss, mib),
        ];
        for (metric, ct, ft, fmt) in pairs {
            t.row(CT, metric, fmt(median(ct)), list(ct, fmt), "—".into());
            t.row(
                FT,
                metric,
                fmt(median(ft)),
                list(ft, fmt),
                ratio(median(ft), median(ct), CT),
            );
        }
        t.row(CT, "peak RSS, empty table", mib(ct_rss0), "—".into(), "—".into());
        t.row(FT, "peak RSS, empty table", mib(ft_rss0), "—".into(), "—".into());
        let ct_pf: Vec<f64> = ct_rss.iter().map(|&k| per_flow(k, ct_rss0)).collect();
        let ft_pf: Vec<f64> = ft_rss.iter().map(|&k| per_flow(k, ft_rss0)).collect();
        let bytes = |v: f64| format!("{:.0} B", if v.abs() < 0.5 { 0.0 } else { v });
        t.row(
            CT,
            "peak RSS per flow",
            bytes(median(&ct_pf)),
            list(&ct_pf, bytes),
            "—".into(),
        );
        t.row(
            FT,
            "peak RSS per flow",
            bytes(median(&ft_pf)),
            list(&ft_pf, bytes),
            "— (conntrack -L streams)".into(),
        );
        let wall_ratio = median(&ft_wall) / median(&ct_wall);
        verdicts.push(format!(
            "(a) {n} flows: `--once --json` wall time {} vs `conntrack -L` {}: ratio {wall_ratio:.2} (target ≤ 1.00): **{}**",
            secs(median(&ft_wall)),
            secs(median(&ct_wall)),
            if wall_ratio <= 1.0 { "PASS" } else { "FAIL" }
        ));

        const SN: &str = "flowtop --json -t 1";
        const SO: &str = "flowtop 0.6.8 -4UGn";
        let ok = |s: &Option<Result<Steady, String>>| s.as_ref().and_then(|r| r.as_ref().ok()).cloned();
        let new = ok(&r.steady_new);
        let old = ok(&r.steady_old);
        let mut notes = Vec::new();
        for (label, s) in [(SN, &r.steady_new), (SO, &r.steady_old)] {
            match s {
                Some(Err(e)) => notes.push(format!("{label}: steady state failed: {e}")),
                Some(Ok(s)) if !s.note.is_empty() => notes.push(format!("{label}: {}", s.note)),
                _ => {}
            }
        }
        let pct = |v: f64| format!("{v:.1} %");
        let split = |s: &Steady| {
            format!(
                "{:.1} % / {:.1} % (rest of the machine: {:.0} % of a core)",
                s.user_pct, s.sys_pct, s.other_pct
            )
        };
        let window = |s: &Steady| format!("1 ({:.0} s window after {:.0} s warm-up)", s.window_s, s.warmup_s);
        if let Some(s) = &old {
            t.row(
                SO,
                "steady CPU (% of one core)",
                pct(s.cpu_pct),
                window(s),
                "—".into(),
            );
            t.row(SO, "steady CPU user / sys", split(s), "1".into(), "—".into());
        }
        if let Some(s) = &new {
            let rt = old
                .as_ref()
                .map(|o| ratio(s.cpu_pct, o.cpu_pct, "0.6.8"))
                .unwrap_or_else(|| "—".into());
            t.row(SN, "steady CPU (% of one core)", pct(s.cpu_pct), window(s), rt);
            t.row(SN, "steady CPU user / sys", split(s), "1".into(), "—".into());
        }
        if let Some(s) = &old {
            t.row(SO, "steady VmHWM", mib(s.hwm_kib as f64), "1".into(), "—".into());
            t.row(SO, "steady VmRSS", mib(s.rss_kib as f64), "1".into(), "—".into());
        }
        if let Some(s) = &new {
            let rh = old
                .as_ref()
                .map(|o| ratio(s.hwm_kib as f64, o.hwm_kib as f64, "0.6.8"))
                .unwrap_or_else(|| "—".into());
            let rr = old
                .as_ref()
                .map(|o| ratio(s.rss_kib as f64, o.rss_kib as f64, "0.6.8"))
                .unwrap_or_else(|| "—".into());
            t.row(SN, "steady VmHWM", mib(s.hwm_kib as f64), "1".into(), rh);
            t.row(SN, "steady VmRSS", mib(s.rss_kib as f64), "1".into(), rr);
        }
        t.render(&mut o);
        for note in notes {
            let _ = writeln!(o, "\nNote: {note}");
        }
        if let (Some(s), Some(p)) = (&new, &old) {
            let cr = s.cpu_pct / p.cpu_pct;
            let at = if n == 100_000 {
                String::new()
            } else {
                " (target is stated at 100000 flows)".into()
            };
            verdicts.push(format!(
                "(b) {n} flows{at}: steady CPU {:.1} % vs 0.6.8 {:.1} %: ratio {cr:.2} (target < 0.33): **{}**",
                s.cpu_pct,
                p.cpu_pct,
                if cr < 1.0 / 3.0 { "PASS" } else { "FAIL" }
            ));
            let rr = s.rss_kib as f64 / p.rss_kib as f64;
            let rh = s.hwm_kib as f64 / p.hwm_kib as f64;
            let pf = |x: f64| if x < 0.5 { "PASS" } else { "FAIL" };
            verdicts.push(format!(
                "(c) {n} flows: memory VmRSS {} vs 0.6.8 {}: ratio {rr:.2} (target < 0.50): **{}**; \
peak VmHWM {} vs {}: ratio {rh:.2}: **{}**",
                mib(s.rss_kib as f64),
                mib(p.rss_kib as f64),
                pf(rr),
                mib(s.hwm_kib as f64),
                mib(p.hwm_kib as f64),
                pf(rh)
            ));
        }
    }
    o.push_str("\n## Verdicts\n\n");
    if !results
        .iter()
        .any(|r| r.steady_old.as_ref().is_some_and(|s| s.is_ok()))
    {
        verdicts.push("(b), (c): no steady-state comparison with flowtop 0.6.8 was made".into());
    }
    for v in verdicts {
        let _ = writeln!(o, "- {v}");
    }
    o
}
