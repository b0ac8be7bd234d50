//! `flowtop run [--json] [--manifest FILE] [--diff OLD] -- CMD [ARGS...]`:
//! runs CMD in a cgroup v2 of its own, as the invoking user, and when it
//! exits prints a manifest of every destination its process tree contacted.
//!
//! How: the eBPF CREATED (and KPROBE) socket events carry the cgroup id of
//! the task that made the socket, and an owner keeps it
//! ([`Owner::cgroup_id`](crate::attribution::Owner)). flowtop makes
//! `<cgroup2>/flowtop-run-<pid>` (its inode number is the cgroup id), forks
//! CMD before anything else starts (so the child can still change user),
//! and the child joins the cgroup, changes user and then waits on a pipe
//! until the eBPF programs are attached and the engine runs: every socket
//! of CMD and its descendants (which stay in the cgroup) is then seen. The
//! engine runs as for `--json`; its changes of flows owned in that cgroup
//! are collected. Once CMD has exited, late events get [`GRACE`], then the
//! manifest is written and the cgroup removed (on every path once it is
//! empty). flowtop's exit status is CMD's (128 + signal number when a
//! signal killed it).
//!
//! Signals: SIGINT and SIGQUIT from the terminal reach CMD too (same
//! process group): flowtop ignores them and goes on waiting for CMD, like a
//! shell waiting for its foreground job. SIGTERM and SIGHUP sent to flowtop
//! are forwarded to CMD.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{CString, OsString};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::start::Live;
use super::{exit_code, RunError};
use crate::cli::Command;
use crate::config::Config;
use crate::enrich::book::AddressBook;
use crate::flow::model::proto;
use crate::flow::table::{Entry, EventKind};
use crate::flow::Selection;
use crate::output::safe::terminal_safe;
use crate::{attribution, engine};

/// How long events may still arrive after CMD exited: conntrack events and
/// the eBPF ring buffer (read every 100 ms) of its last flows, and the
/// counters of flows still open (re-read every interval).
pub const GRACE: Duration = Duration::from_millis(1500);

/// Runs `flowtop run`; the process's exit status (CMD's, or flowtop's own
/// failure's).
pub fn main(config: &Config) -> ExitCode {
    match run(config) {
        Ok(status) => ExitCode::from(status),
        Err(e) => exit_code(Err(e)),
    }
}

fn run(config: &Config) -> Result<u8, RunError> {
    let args = match &config.command {
        Some(Command::Run(args)) => args.clone(),
        _ => return Err(RunError::Usage("flowtop run: no command given".into())),
    };
    if matches!(
        config.attribution,
        attribution::Mode::Procfs | attribution::Mode::Off
    ) {
        return Err(RunError::Usage(
            "flowtop run needs eBPF attribution (it knows the cgroup of each socket's creator): drop --attribution"
                .into(),
        ));
    }
    // Read before anything starts: a bad file is a usage error at once.
    let old = match &args.diff {
        Some(path) => Some(read_manifest(path).map_err(RunError::Usage)?),
        None => None,
    };
    let user = RunAs::resolve(args.user.as_deref()).map_err(RunError::Usage)?;
    let cgroup = RunCgroup::create()?;
    let child = Child::fork(&args.cmd, &cgroup, user.as_ref())?;
    let sel = if config.selection_given {
        config.selection.clone()
    } else {
        Selection::everything()
    };
    // From here on, an error drops `child` (its pipe closes, it exits
    // without running CMD) and then `cgroup`.
    let live = Live::start(config, sel)?;
    if live.attribution.handle.is_none() {
        let why = live
            .attribution
            .decision
            .ebpf_unavailable
            .clone()
            .unwrap_or_else(|| "unknown reason".into());
        return Err(RunError::Other(anyhow::anyhow!(
            "flowtop run needs eBPF attribution, which is unavailable here: {why}"
        )));
    }
    let Live {
        runtime,
        engine: inputs,
        attribution: _attribution,
        book,
        sysctls: _sysctls,
        ..
    } = live;
    let (start, _) = crate::output::json::now_ts();
    let pid = child.pid;
    let exited = child.go()?;
    let mut seen = Collector::new(&cgroup);
    // `_attribution` keeps the eBPF programs attached while this runs.
    let status = runtime.block_on(engine::run_command(
        inputs,
        exited,
        GRACE,
        &mut |name| forward_signal(pid, name),
        &mut |kind, e| seen.change(kind, e),
    ))?;
    let (end, _) = crate::output::json::now_ts();
    let exit_code = status_code(status);
    let manifest = Manifest {
        command: args
            .cmd
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        exit_code,
        start,
        end,
        destinations: seen.destinations(&book),
    };
    let marked = mark(manifest, old.as_ref());
    let text = if config.json {
        let mut s = serde_json::to_string(&marked).map_err(|e| RunError::Other(e.into()))?;
        s.push('\n');
        s
    } else {
        render_text(&marked, old.is_some())
    };
    match &args.manifest {
        Some(path) => std::fs::write(path, text).map_err(|e| {
            RunError::Other(anyhow::anyhow!(
                "writing the manifest to {}: {e}",
                terminal_safe(&path.display().to_string())
            ))
        })?,
        None => {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
    }
    drop(cgroup);
    Ok(exit_code)
}

/// The exit status flowtop passes on for a `waitpid` status.
fn status_code(status: libc::c_int) -> u8 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) as u8
    } else if libc::WIFSIGNALED(status) {
        (128 + libc::WTERMSIG(status)).min(255) as u8
    } else {
        1
    }
}

fn forward_signal(pid: libc::pid_t, name: &str) {
    let signo = match name {
        "SIGTERM" => libc::SIGTERM,
        "SIGHUP" => libc::SIGHUP,
        // From the terminal: CMD got it too.
        _ => return,
    };
    // SAFETY: sends a signal to our own (unreaped) child.
    unsafe {
        libc::kill(pid, signo);
    }
}

// -- the user CMD runs as -------------------------------------------------

/// The identity CMD takes before exec.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RunAs {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

impl RunAs {
    /// `--user NAME|UID`, else SUDO_UID/SUDO_GID, else None (flowtop's own).
    fn resolve(user: Option<&str>) -> Result<Option<RunAs>, String> {
        if let Some(u) = user {
            let entry = match u.parse::<libc::uid_t>() {
                Ok(uid) => passwd_by_uid(uid).or(Some((uid, uid, None))),
                Err(_) => passwd_by_name(u),
            };
            let Some((uid, gid, name)) = entry else {
                return Err(format!("--user {}: no such user", terminal_safe(u)));
            };
            return Ok(Some(RunAs::with_groups(uid, gid, name.as_deref())));
        }
        let Some(uid) = std::env::var("SUDO_UID")
            .ok()
            .and_then(|s| s.parse::<libc::uid_t>().ok())
        else {
            return Ok(None);
        };
        let entry = passwd_by_uid(uid);
        let gid = std::env::var("SUDO_GID")
            .ok()
            .and_then(|s| s.parse::<libc::gid_t>().ok())
            .or(entry.as_ref().map(|e| e.1))
            .unwrap_or(uid);
        let name = entry.and_then(|e| e.2);
        Ok(Some(RunAs::with_groups(uid, gid, name.as_deref())))
    }

    fn with_groups(uid: libc::uid_t, gid: libc::gid_t, name: Option<&std::ffi::CStr>) -> RunAs {
        let groups = name.map(|n| group_list(n, gid)).unwrap_or_else(|| vec![gid]);
        RunAs { uid, gid, groups }
    }
}

type PasswdEntry = (libc::uid_t, libc::gid_t, Option<CString>);

fn passwd_entry(pw: *const libc::passwd) -> Option<PasswdEntry> {
    if pw.is_null() {
        return None;
    }
    // SAFETY: a non-null entry from getpw*; its name is a C string. Read at
    // once, while no other thread runs (flowtop has one thread here).
    unsafe {
        let name = std::ffi::CStr::from_ptr((*pw).pw_name).to_owned();
        Some(((*pw).pw_uid, (*pw).pw_gid, Some(name)))
    }
}

fn passwd_by_uid(uid: libc::uid_t) -> Option<PasswdEntry> {
    // SAFETY: getpwuid returns a pointer to static storage or NULL; read at
    // once by passwd_entry.
    passwd_entry(unsafe { libc::getpwuid(uid) })
}

fn passwd_by_name(name: &str) -> Option<PasswdEntry> {
    let c = CString::new(name).ok()?;
    // SAFETY: as passwd_by_uid, with a valid C string.
    passwd_entry(unsafe { libc::getpwnam(c.as_ptr()) })
}

/// The user's groups (as `initgroups` would set them).
fn group_list(name: &std::ffi::CStr, gid: libc::gid_t) -> Vec<libc::gid_t> {
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let asked = n;
        // SAFETY: `groups` holds `n` entries; getgrouplist writes at most `n`
        // and sets `n` to the number needed.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n as usize);
            return groups;
        }
        if n <= asked {
            return vec![gid];
        }
    }
}

// -- the cgroup -------------------------------------------------------------

/// `<cgroup2>/flowtop-run-<pid>`, removed once empty by a helper process
/// forked while flowtop still had its privileges (removing a directory of
/// the cgroup2 root, mode 0555, needs CAP_DAC_OVERRIDE, which flowtop gives
/// up after start-up). The helper waits for its pipe to close: when this is
/// dropped, or when flowtop ends in any way at all.
struct RunCgroup {
    dir: PathBuf,
    /// The cgroup id: its directory's inode number.
    id: u64,
    /// Closing it tells the helper to remove the cgroup.
    remover: Option<(libc::pid_t, std::fs::File)>,
}

impl RunCgroup {
    /// Makes the cgroup and the helper; call while flowtop has one thread.
    fn create() -> Result<RunCgroup, RunError> {
        let Some(root) = crate::ebpf::cgroup2_root() else {
            return Err(RunError::Other(anyhow::anyhow!(
                "flowtop run: no cgroup2 file system is mounted (looked in /proc/self/mounts); note that \
                 `ip netns exec` hides it: enter a network namespace with `nsenter --net=...` instead"
            )));
        };
        let dir = root.join(format!("flowtop-run-{}", std::process::id()));
        std::fs::create_dir(&dir)
            .map_err(|e| RunError::Other(anyhow::anyhow!("creating the cgroup {}: {e}", dir.display())))?;
        let mut cg = RunCgroup {
            dir,
            id: 0,
            remover: None,
        };
        cg.id = std::fs::metadata(&cg.dir)
            .map_err(|e| RunError::Other(anyhow::anyhow!("reading the cgroup {}: {e}", cg.dir.display())))?
            .ino();
        cg.remover = Some(spawn_remover(&cg.dir)?);
        Ok(cg)
    }

    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        match self.remover.take() {
            Some((pid, pipe)) => {
                drop(pipe);
                wait(pid);
            }
            // No helper (its fork failed): try ourselves.
            None => remove_when_empty(&self.dir),
        }
    }
}

/// Forks the process that removes `dir` once flowtop closes the pipe.
fn spawn_remover(dir: &Path) -> Result<(libc::pid_t, std::fs::File), RunError> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(RunError::Other(anyhow::anyhow!(
            "pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    let (rd, wr) = (fds[0], fds[1]);
    // SAFETY: flowtop has one thread here; the child only waits, removes
    // the directory and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the child: our own descriptors and signal dispositions.
        unsafe {
            libc::close(wr);
            // Signals for the terminal's process group are CMD's and
            // flowtop's business: this one only waits for the pipe.
            for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGTERM] {
                libc::signal(sig, libc::SIG_IGN);
            }
            // It must not keep a reader of flowtop's (CMD's) stdout waiting;
            // stderr stays for its one warning.
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null >= 0 {
                libc::dup2(null, 0);
                libc::dup2(null, 1);
                if null > 2 {
                    libc::close(null);
                }
            }
            let mut byte = 0u8;
            while libc::read(rd, (&mut byte as *mut u8).cast(), 1) != 0
                && *libc::__errno_location() == libc::EINTR
            {}
        }
        remove_when_empty(dir);
        // SAFETY: ends the helper without running flowtop's exit path.
        unsafe { libc::_exit(0) }
    }
    // SAFETY: our own descriptors; the write end becomes a File.
    unsafe {
        libc::close(rd);
        if pid < 0 {
            libc::close(wr);
            return Err(RunError::Other(anyhow::anyhow!(
                "fork: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok((pid, <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(wr)))
    }
}

/// Removes the cgroup once its processes have left it (exited processes
/// leave a moment after they are reaped); one warning if CMD left some
/// running.
fn remove_when_empty(dir: &Path) {
    for _ in 0..40 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let left = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    eprintln!(
        "flowtop: the cgroup {} still holds processes CMD left running ({}): not removed",
        dir.display(),
        left.split_whitespace().collect::<Vec<_>>().join(" ")
    );
}

// -- the child ----------------------------------------------------------

/// CMD, forked and waiting for [`Child::go`].
struct Child {
    pid: libc::pid_t,
    /// Writing a byte lets it exec; closing without lets it exit (127).
    go: Option<std::fs::File>,
}

impl Child {
    /// Forks CMD: the child joins the cgroup, takes the user's identity,
    /// waits for the go byte and execs. Call while flowtop has one thread.
    fn fork(cmd: &[OsString], cgroup: &RunCgroup, user: Option<&RunAs>) -> Result<Child, RunError> {
        let other = |e: String| RunError::Other(anyhow::anyhow!(e));
        let argv: Vec<CString> = cmd
            .iter()
            .map(|a| {
                CString::new(a.as_bytes())
                    .map_err(|_| RunError::Usage("CMD: an argument holds a NUL byte".into()))
            })
            .collect::<Result<_, _>>()?;
        if argv.is_empty() {
            return Err(RunError::Usage(
                "flowtop run: no command given (flowtop run -- CMD ...)".into(),
            ));
        }
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let procs = CString::new(cgroup.procs().as_os_str().as_bytes())
            .map_err(|_| other("bad cgroup path".into()))?;
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds has room for the two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(other(format!("pipe: {}", std::io::Error::last_os_error())));
        }
        let (rd, wr) = (fds[0], fds[1]);
        // SAFETY: flowtop has one thread here (start-up has not begun), so
        // the child may use anything; it only makes system calls on data
        // prepared above and then execs or exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: our own descriptors.
            unsafe {
                libc::close(rd);
                libc::close(wr);
            }
            return Err(other(format!("fork: {e}")));
        }
        if pid == 0 {
            // SAFETY: in the child; see above.
            unsafe { child_main(rd, wr, &procs, user, &argv_ptrs) }
        }
        // SAFETY: the parent's read end is not needed; the write end becomes a File.
        let go = unsafe {
            libc::close(rd);
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(wr)
        };
        Ok(Child { pid, go: Some(go) })
    }

    /// Lets CMD exec; a receiver of its `waitpid` status.
    fn go(mut self) -> Result<tokio::sync::oneshot::Receiver<libc::c_int>, RunError> {
        let mut go = self.go.take().expect("go once");
        let pid = self.pid;
        // The child may already have exited (a failed setuid): its status
        // is what the waiter reports.
        let _ = go.write_all(b"g");
        drop(go);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("run-wait".into())
            .spawn(move || {
                let _ = tx.send(wait(pid));
            })
            .map_err(|e| RunError::Other(e.into()))?;
        // The waiter reaps it now.
        self.pid = 0;
        Ok(rx)
    }
}

impl Drop for Child {
    /// Not started: closing the pipe makes it exit; reaped here.
    fn drop(&mut self) {
        drop(self.go.take());
        if self.pid > 0 {
            wait(self.pid);
        }
    }
}

fn wait(pid: libc::pid_t) -> libc::c_int {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waits for our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return status;
        }
        if rc < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return 1 << 8;
        }
    }
}

/// The forked child: never returns.
///
/// # Safety
/// Only in the child of [`Child::fork`], with the descriptors and pointers
/// it prepared.
unsafe fn child_main(
    rd: libc::c_int,
    wr: libc::c_int,
    procs: &CString,
    user: Option<&RunAs>,
    argv: &[*const libc::c_char],
) -> ! {
    unsafe fn fail(what: &[u8]) -> ! {
        let mut msg = b"flowtop run: ".to_vec();
        msg.extend_from_slice(what);
        msg.push(b'\n');
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(127)
        }
    }
    unsafe {
        libc::close(wr);
        // Rust ignores SIGPIPE; CMD gets the default, as from a shell.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
            fail(b"could not join the run's cgroup");
        }
        libc::close(fd);
        if let Some(u) = user {
            if libc::setgroups(u.groups.len(), u.groups.as_ptr()) != 0
                || libc::setgid(u.gid) != 0
                || libc::setuid(u.uid) != 0
            {
                fail(b"could not change to the invoking user");
            }
        }
        let mut byte = 0u8;
        loop {
            let n = libc::read(rd, (&mut byte as *mut u8).cast(), 1);
            if n == 1 {
                break;
            }
            if n == 0 || *libc::__errno_location() != libc::EINTR {
                // flowtop could not start: CMD does not run.
                libc::_exit(127);
            }
        }
        libc::close(rd);
        libc::execvp(argv[0], argv.as_ptr());
        fail(b"could not execute CMD")
    }
}

// -- collecting flows ----------------------------------------------------

/// What is known of one flow of CMD.
#[derive(Debug, Clone)]
struct Seen {
    dst: IpAddr,
    dport: Option<u16>,
    proto: u8,
    name: Option<String>,
    orig_bytes: u64,
    reply_bytes: u64,
    comm: String,
    pid: u32,
}

type FlowId = (u32, u8, IpAddr, Option<u16>, IpAddr, Option<u16>);

/// The flows whose owner made its socket in the run's cgroup.
struct Collector {
    cgroup: u64,
    /// The cgroup as /proc/PID/cgroup names it (`0::/flowtop-run-N`).
    cgroup_line: String,
    /// Owners found by a /proc scan (no cgroup id: the scan can win the race
    /// with the eBPF event of a socket): whether the process was in the
    /// run's cgroup, read once per pid from /proc/PID/cgroup.
    procfs_members: HashMap<u32, bool>,
    flows: HashMap<FlowId, Seen>,
}

impl Collector {
    fn new(cgroup: &RunCgroup) -> Self {
        let name = cgroup.dir.file_name().unwrap_or_default().to_string_lossy();
        Collector {
            cgroup: cgroup.id,
            cgroup_line: format!("0::/{name}"),
            procfs_members: HashMap::new(),
            flows: HashMap::new(),
        }
    }

    /// Whether `owner` made its socket in the run's cgroup.
    fn in_cgroup(&mut self, owner: &attribution::Owner) -> bool {
        match owner.cgroup_id {
            Some(id) => id == self.cgroup,
            None => {
                let line = &self.cgroup_line;
                *self.procfs_members.entry(owner.pid).or_insert_with(|| {
                    std::fs::read_to_string(format!("/proc/{}/cgroup", owner.pid))
                        .is_ok_and(|s| s.lines().any(|l| l == line))
                })
            }
        }
    }

    fn change(&mut self, _kind: EventKind, e: &Entry) {
        let Some(owner) = e.owner.as_deref() else {
            return;
        };
        if !self.in_cgroup(owner) {
            return;
        }
        let f = &e.flow;
        let id = (f.id, f.proto, f.orig.src, f.orig.sport, f.orig.dst, f.orig.dport);
        let seen = self.flows.entry(id).or_insert_with(|| Seen {
            dst: f.orig.dst,
            dport: f.orig.dport,
            proto: f.proto,
            name: None,
            orig_bytes: 0,
            reply_bytes: 0,
            comm: owner.comm.clone(),
            pid: owner.pid,
        });
        if let Some(n) = &e.name {
            seen.name = Some(n.name.to_string());
        }
        if let Some(c) = &f.counters {
            // Counters only grow; a later reading without them keeps these.
            seen.orig_bytes = seen.orig_bytes.max(c.orig_bytes);
            seen.reply_bytes = seen.reply_bytes.max(c.reply_bytes);
        }
    }

    /// One entry per destination (address, port, protocol), sorted.
    fn destinations(&self, book: &AddressBook) -> Vec<Destination> {
        let mut by: HashMap<(IpAddr, Option<u16>, u8), Acc> = HashMap::new();
        for s in self.flows.values() {
            let acc = by.entry((s.dst, s.dport, s.proto)).or_default();
            acc.flows += 1;
            acc.orig_bytes += s.orig_bytes;
            acc.reply_bytes += s.reply_bytes;
            acc.comms.insert(s.comm.clone());
            acc.pids.insert(s.pid);
            if let Some(n) = &s.name {
                acc.names.insert(n.clone());
            }
        }
        let mut out: Vec<Destination> = by
            .into_iter()
            .map(|((dst, dport, p), acc)| Destination {
                dst: dst.to_string(),
                dst_name: acc.names.into_iter().next(),
                dport,
                proto: proto_name(p),
                flows: acc.flows,
                orig_bytes: acc.orig_bytes,
                reply_bytes: acc.reply_bytes,
                comms: acc.comms.into_iter().collect(),
                pids: acc.pids.into_iter().collect(),
                country: book.get(dst).and_then(|v| v.country.map(|c| c.to_string())),
                change: None,
            })
            .collect();
        out.sort_by(|a, b| (&a.dst, a.dport, &a.proto).cmp(&(&b.dst, b.dport, &b.proto)));
        out
    }
}

#[derive(Default)]
struct Acc {
    flows: u64,
    orig_bytes: u64,
    reply_bytes: u64,
    comms: BTreeSet<String>,
    pids: BTreeSet<u32>,
    names: BTreeSet<String>,
}

fn proto_name(p: u8) -> String {
    proto::name(p).map_or_else(|| p.to_string(), str::to_owned)
}

// -- the manifest ----------------------------------------------------------

/// The manifest; as JSON, one object with these keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Manifest {
    /// CMD and its arguments.
    command: Vec<String>,
    exit_code: u8,
    /// RFC 3339, UTC.
    start: String,
    end: String,
    destinations: Vec<Destination>,
}

/// One destination: address, port and protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Destination {
    dst: String,
    /// The name the program asked for (DNS, TLS SNI, HTTP Host, QUIC).
    #[serde(default)]
    dst_name: Option<String>,
    #[serde(default)]
    dport: Option<u16>,
    proto: String,
    #[serde(default)]
    flows: u64,
    #[serde(default)]
    orig_bytes: u64,
    #[serde(default)]
    reply_bytes: u64,
    #[serde(default)]
    comms: Vec<String>,
    #[serde(default)]
    pids: Vec<u32>,
    #[serde(default)]
    country: Option<String>,
    /// With `--diff`: "new", "gone" or "same"; null without.
    #[serde(default)]
    change: Option<String>,
}

impl Destination {
    /// What a destination is across runs: its asked-for name when it has
    /// one (addresses behind a name change), else its address; port and
    /// protocol.
    fn identity(&self) -> (String, Option<u16>, String) {
        (
            self.dst_name.clone().unwrap_or_else(|| self.dst.clone()),
            self.dport,
            self.proto.clone(),
        )
    }
}

fn read_manifest(path: &Path) -> Result<Manifest, String> {
    let shown = terminal_safe(&path.display().to_string()).into_owned();
    let text = std::fs::read_to_string(path).map_err(|e| format!("--diff {shown}: {e}"))?;
    serde_json::from_str(text.trim())
        .map_err(|e| format!("--diff {shown}: not a manifest written by flowtop run --json: {e}"))
}

/// Marks each destination against the old manifest's, adding those gone.
fn mark(mut m: Manifest, old: Option<&Manifest>) -> Manifest {
    let Some(old) = old else {
        return m;
    };
    let before: std::collections::HashSet<_> = old.destinations.iter().map(Destination::identity).collect();
    let now: std::collections::HashSet<_> = m.destinations.iter().map(Destination::identity).collect();
    for d in &mut m.destinations {
        d.change = Some(
            if before.contains(&d.identity()) {
                "same"
            } else {
                "new"
            }
            .into(),
        );
    }
    for d in &old.destinations {
        if !now.contains(&d.identity()) {
            let mut gone = d.clone();
            gone.change = Some("gone".into());
            m.destinations.push(gone);
        }
    }
    m
}

/// The manifest as text (outside text escaped for the terminal).
fn render_text(m: &Manifest, diff: bool) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let cmd = m.command.join(" ");
    let _ = writeln!(s, "flowtop run: {}", terminal_safe(&cmd));
    let _ = writeln!(
        s,
        "exit code {}, start {}, end {}, {} destination{}",
        m.exit_code,
        m.start,
        m.end,
        m.destinations.len(),
        if m.destinations.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        s,
        "{}{:<39} {:<30} {:>5} {:<7} {:>5} {:>12} {:>12} {:<7} {:<20} PIDS",
        if diff { "  " } else { "" },
        "DST",
        "DST_NAME",
        "DPORT",
        "PROTO",
        "FLOWS",
        "ORIG_BYTES",
        "REPLY_BYTES",
        "COUNTRY",
        "COMMS"
    );
    for d in &m.destinations {
        let marker = match d.change.as_deref() {
            Some("new") => "+ ",
            Some("gone") => "- ",
            Some(_) => "  ",
            None => "",
        };
        let pids: Vec<String> = d.pids.iter().map(u32::to_string).collect();
        let _ = writeln!(
            s,
            "{marker}{:<39} {:<30} {:>5} {:<7} {:>5} {:>12} {:>12} {:<7} {:<20} {}",
            d.dst,
            terminal_safe(d.dst_name.as_deref().unwrap_or("-")),
            d.dport.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            d.proto,
            d.flows,
            d.orig_bytes,
            d.reply_bytes,
            terminal_safe(d.country.as_deref().unwrap_or("-")),
            terminal_safe(&d.comms.join(",")),
            pids.join(",")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(dst: &str, name: Option<&str>, dport: u16, proto: &str) -> Destination {
        Destination {
            dst: dst.into(),
            dst_name: name.map(Into::into),
            dport: Some(dport),
            proto: proto.into(),
            flows: 1,
            orig_bytes: 10,
            reply_bytes: 20,
            comms: vec!["curl".into()],
            pids: vec![42],
            country: None,
            change: None,
        }
    }

    fn manifest(destinations: Vec<Destination>) -> Manifest {
        Manifest {
            command: vec!["sh".into(), "-c".into(), "true".into()],
            exit_code: 0,
            start: "2026-01-01T00:00:00Z".into(),
            end: "2026-01-01T00:00:01Z".into(),
            destinations,
        }
    }

    #[test]
    fn the_json_keys_are_the_contract() {
        let m = manifest(vec![dest("192.0.2.1", Some("example.org"), 443, "tcp")]);
        let v: serde_json::Value = serde_json::to_value(&m).expect("json");
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        for k in ["command", "exit_code", "start", "end", "destinations"] {
            assert!(keys.contains(&k), "{keys:?}");
        }
        let d = &v["destinations"][0];
        for k in [
            "dst",
            "dst_name",
            "dport",
            "proto",
            "flows",
            "orig_bytes",
            "reply_bytes",
            "comms",
            "pids",
            "country",
        ] {
            assert!(d.get(k).is_some(), "{k} missing in {d}");
        }
        // It reads back (what --diff does).
        let back: Manifest = serde_json::from_value(v).expect("reads back");
        assert_eq!(back, m);
    }

    #[test]
    fn diff_marks_new_gone_and_same_by_name_port_and_protocol() {
        let old = manifest(vec![
            dest("192.0.2.1", Some("example.org"), 443, "tcp"),
            dest("192.0.2.9", None, 53, "udp"),
        ]);
        let new = manifest(vec![
            // Same name, another address: the same destination.
            dest("192.0.2.2", Some("example.org"), 443, "tcp"),
            dest("198.51.100.1", None, 80, "tcp"),
        ]);
        let m = mark(new, Some(&old));
        let changes: Vec<(&str, &str)> = m
            .destinations
            .iter()
            .map(|d| (d.dst.as_str(), d.change.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(
            changes,
            [
                ("192.0.2.2", "same"),
                ("198.51.100.1", "new"),
                ("192.0.2.9", "gone")
            ]
        );
        let text = render_text(&m, true);
        assert!(text.lines().any(|l| l.starts_with("+ 198.51.100.1")), "{text}");
        assert!(text.lines().any(|l| l.starts_with("- 192.0.2.9")), "{text}");
    }

    #[test]
    fn owners_without_a_cgroup_id_are_checked_in_proc() {
        let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        let Some(line) = own.lines().find(|l| l.starts_with("0::")) else {
            return; // no cgroup v2 here
        };
        let mut c = Collector {
            cgroup: 77,
            cgroup_line: line.to_owned(),
            procfs_members: HashMap::new(),
            flows: HashMap::new(),
        };
        let me = attribution::Owner {
            pid: std::process::id(),
            ..Default::default()
        };
        assert!(c.in_cgroup(&me));
        let other = attribution::Owner {
            cgroup_id: Some(78),
            ..me.clone()
        };
        assert!(!c.in_cgroup(&other), "an eBPF owner's id decides");
        c.cgroup_line = "0::/flowtop-run-no-such".into();
        c.procfs_members.clear();
        assert!(!c.in_cgroup(&me));
    }

    #[test]
    fn exit_statuses_pass_through() {
        assert_eq!(status_code(3 << 8), 3);
        assert_eq!(status_code(0), 0);
        // Killed by SIGKILL (9).
        assert_eq!(status_code(9), 137);
    }

    #[test]
    fn a_numeric_user_without_an_entry_keeps_its_number_as_group() {
        let u = RunAs::resolve(Some("54321")).expect("resolves").expect("some");
        assert_eq!((u.uid, u.gid), (54321, 54321));
        assert!(RunAs::resolve(Some("no-such-user-flowtop")).is_err());
    }

    #[test]
    fn terminal_text_is_escaped() {
        let mut d = dest("192.0.2.1", Some("evil\u{1b}[2J"), 443, "tcp");
        d.comms = vec!["c\u{7}".into()];
        let text = render_text(&manifest(vec![d]), false);
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text}");
    }
}
