//! Running flowtop and traffic in network namespaces, and checking what
//! flowtop prints: the harness of the root-only integration tests (was
//! `tests/common/mod.rs`).
//!
//! Everything here runs external tools (`ip`, `nft`, `conntrack`, `sysctl`,
//! `python3`) through `ip netns exec NS ...` with `std::process::Command`.
//! Every helper panics with context instead of returning errors: a failing
//! test should say what it was doing and what the tools printed.

mod agent;
mod json;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use crate::ctlist::{ids, CtEntry};
pub use crate::netns::{
    check_output, describe, state_files, EtcNetns, Netns, CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6,
    STATE_DIR,
};
pub use crate::skip::{require_root, require_tool, skip};
pub use agent::Agent;
pub use json::*;

/// Default time to wait for something flowtop should print promptly.
pub const WAIT: Duration = Duration::from_secs(10);

/// The binary under test: `$FLOWTOP_BIN`, else `flowtop` next to the test
/// binary's `deps/` directory, where cargo puts a package's binaries before
/// it runs the package's integration tests (this crate cannot use
/// `env!("CARGO_BIN_EXE_flowtop")`: that exists only in flowtop's own tests).
pub fn flowtop_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("FLOWTOP_BIN") {
            return p.to_string_lossy().into_owned();
        }
        let exe = std::env::current_exe().expect("current_exe");
        let mut dir = exe
            .parent()
            .expect("the test binary has a directory")
            .to_path_buf();
        if dir.ends_with("deps") {
            dir.pop();
        }
        let bin = dir.join("flowtop");
        assert!(
            bin.exists(),
            "{} does not exist: build flowtop first, or set FLOWTOP_BIN",
            bin.display()
        );
        bin.to_string_lossy().into_owned()
    })
}

/// Path of an example binary of the flowtop package, built if missing
/// (`cargo test` of the package builds them; one test run alone may not).
pub fn example(name: &str) -> std::path::PathBuf {
    // The test binary is target/<profile>/deps/<test>-<hash>.
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("test binary under target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        let target_dir = profile_dir.parent().expect("target dir");
        let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        c.args(["build", "-p", "flowtop", "--example", name, "--target-dir"])
            .arg(target_dir)
            .current_dir(crate::fixtures::workspace_dir());
        if profile_dir.ends_with("release") {
            c.arg("--release");
        }
        check_output(c);
    }
    path
}

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

/// Spawns a thread that reads `r` to the end into the returned buffer.
pub(crate) fn collect<R: Read + Send + 'static>(mut r: R) -> (Arc<Mutex<String>>, thread::JoinHandle<()>) {
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
pub(crate) fn lines_of<R: Read + Send + 'static>(r: R) -> Receiver<String> {
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

pub(crate) fn locked(s: &Arc<Mutex<String>>) -> String {
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
    run_to_end(ns.netns_exec(flowtop_bin(), args), Duration::from_secs(30))
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
        let mut cmd = ns.netns_exec(flowtop_bin(), args);
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
