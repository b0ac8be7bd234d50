//! What a benchmark changes, undone on every path: SIGINT, SIGTERM and
//! SIGHUP are caught and turned into an error so that the guards' `Drop`
//! runs; global sysctls are restored (and kept in `/run/ftbench-<pid>.sysctl`
//! until then, so a run that died by SIGKILL is repaired by the next one);
//! processes are killed and reaped; namespaces and scratch directories of
//! dead runs are removed.

use std::fs;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::log;
use super::measure::pid_alive;

pub(crate) const CT_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
pub(crate) const CT_HASHSIZE: &str = "/sys/module/nf_conntrack/parameters/hashsize";

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

pub(crate) fn read_trim(path: &str) -> Result<String> {
    Ok(fs::read_to_string(path)
        .with_context(|| format!("cannot read {path}"))?
        .trim()
        .to_string())
}

fn write_value(path: &str, value: &str) -> Result<()> {
    fs::write(path, value).with_context(|| format!("cannot write {value} to {path}"))
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
    // Scratch directories of dead runs.
    for e in fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("ftbench-").and_then(|s| s.parse::<i32>().ok()) {
            if !pid_alive(pid) && e.path().is_dir() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    for prefix in ["ftbench-", "ftsoak-"] {
        for line in flowtop_testkit::netns::remove_stale(prefix) {
            log(line);
        }
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

/// A scratch directory (`<tmp>/<prefix>-<pid>`), removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    /// The benchmarks' (`ftbench-<pid>`), for stderr files.
    pub(crate) fn new() -> Result<Self> {
        Self::named("ftbench")
    }

    /// `<tmp>/<prefix>-<pid>`, emptied first (a killed run with this pid
    /// may have left it).
    pub(crate) fn named(prefix: &str) -> Result<Self> {
        let p = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
