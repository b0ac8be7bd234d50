//! The process book: what each process is (executable, arguments, parent),
//! recorded when it starts (eBPF exec and fork records) so that a process
//! gone before anyone reads its /proc entry is still described.
//!
//! Processes older than flowtop are read from /proc once at start
//! ([`ProcessBook::bootstrap`]); a process the book lost (bounded: two
//! generations) is read from /proc again while it lives. A forked child
//! that does not exec runs its parent's program: it inherits the parent's
//! executable and arguments.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use flowtop_common::{ExecEvent, ForkEvent};

use super::ebpf_owners::Generational;
use crate::flow::model::ExeDigest;

/// Bytes of a command line kept (the eBPF records carry as many).
pub const CMDLINE_MAX: usize = flowtop_common::EXEC_ARGS_MAX;

/// One process.
#[derive(Debug, Default)]
pub struct ProcessInfo {
    /// The path of the program it runs.
    pub exe: Option<String>,
    /// Its arguments, space separated (see [`cmdline_of`]).
    pub cmdline: Option<String>,
    pub ppid: Option<u32>,
    pub parent_comm: Option<String>,
    /// Its own name (what its children get as `parent_comm`).
    pub comm: Option<String>,
    pub uid: Option<u32>,
    /// When it started: CLOCK_MONOTONIC ns from eBPF, boot-time ns from
    /// /proc (equal unless the machine was suspended); None unknown.
    pub start_ns: Option<u64>,
    /// Its executable's digest cell, asked for on first use.
    pub digest: OnceLock<ExeDigest>,
}

/// Up to the first NUL of a fixed-size kernel string, lossy UTF-8.
fn c_string(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    (end > 0).then(|| String::from_utf8_lossy(&raw[..end]).into_owned())
}

/// A NUL-separated argument list (as in /proc/PID/cmdline) as one line:
/// the arguments joined by single spaces, at most [`CMDLINE_MAX`] bytes
/// read. None when empty (kernel threads, zombies).
pub fn cmdline_of(raw: &[u8]) -> Option<String> {
    let raw = &raw[..raw.len().min(CMDLINE_MAX)];
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    if raw.is_empty() {
        return None;
    }
    let joined: Vec<u8> = raw.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
    Some(String::from_utf8_lossy(&joined).into_owned())
}

/// The first [`CMDLINE_MAX`] bytes of `<dir>/cmdline`.
pub fn read_cmdline(dir: &Path) -> Option<String> {
    use std::io::Read as _;
    let mut buf = Vec::with_capacity(CMDLINE_MAX);
    std::fs::File::open(dir.join("cmdline"))
        .ok()?
        .take(CMDLINE_MAX as u64)
        .read_to_end(&mut buf)
        .ok()?;
    cmdline_of(&buf)
}

/// `<dir>/comm` without its newline.
pub fn read_comm(dir: &Path) -> Option<String> {
    let b = std::fs::read(dir.join("comm")).ok()?;
    Some(String::from_utf8_lossy(b.strip_suffix(b"\n").unwrap_or(&b)).into_owned())
}

/// Fields of /proc/PID/stat flowtop uses: (ppid, start time in clock ticks
/// since boot). The comm field may contain spaces and ')': fields are
/// counted from the last ')'.
pub fn parse_stat(stat: &[u8]) -> Option<(u32, u64)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    // Field 3 is the state, 4 the ppid, 22 the start time.
    let ppid = fields.nth(1)?.parse().ok()?;
    let start = fields.nth(17)?.parse().ok()?;
    Some((ppid, start))
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// The pids of the processes under `proc_root` (its numeric entries;
/// none when it cannot be read).
pub fn pids(proc_root: &Path) -> impl Iterator<Item = u32> {
    std::fs::read_dir(proc_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

/// What /proc tells of a live process (None when it is gone).
pub fn read_proc(proc_root: &Path, pid: u32) -> Option<ProcessInfo> {
    let dir = proc_root.join(pid.to_string());
    let (ppid, start_ticks) = parse_stat(&std::fs::read(dir.join("stat")).ok()?)?;
    let parent_comm = (ppid != 0)
        .then(|| read_comm(&proc_root.join(ppid.to_string())))
        .flatten();
    Some(ProcessInfo {
        exe: std::fs::read_link(dir.join("exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned()),
        cmdline: read_cmdline(&dir),
        ppid: Some(ppid),
        parent_comm,
        comm: read_comm(&dir),
        uid: None,
        start_ns: Some(start_ticks.saturating_mul(1_000_000_000 / clock_ticks())),
        digest: OnceLock::new(),
    })
}

/// tgid -> [`ProcessInfo`], bounded.
#[derive(Debug)]
pub struct ProcessBook {
    procs: Generational<u32, Arc<ProcessInfo>>,
    /// Where processes the records missed are read: /proc, or a fake one
    /// (tests: the machine's own pids must not leak into them).
    proc_root: std::path::PathBuf,
}

impl ProcessBook {
    /// A book of at most `capacity` processes.
    pub fn new(capacity: usize) -> Self {
        ProcessBook::with_proc_root(capacity, "/proc")
    }

    /// A book that reads missing processes under `proc_root`.
    pub fn with_proc_root(capacity: usize, proc_root: impl Into<std::path::PathBuf>) -> Self {
        ProcessBook {
            procs: Generational::new(capacity / 2),
            proc_root: proc_root.into(),
        }
    }

    /// Reads every process of `proc_root` (the processes older than the
    /// exec records). Processes already in the book are kept: their
    /// records are newer than this reading.
    pub fn bootstrap(&mut self, proc_root: &Path) {
        for pid in pids(proc_root) {
            if self.procs.get(&pid).is_some() {
                continue;
            }
            if let Some(p) = read_proc(proc_root, pid) {
                self.procs.insert(pid, Arc::new(p));
            }
        }
    }

    pub fn get(&self, tgid: u32) -> Option<&Arc<ProcessInfo>> {
        self.procs.get(&tgid)
    }

    /// The process, from the book, else from /proc while it lives (then
    /// remembered).
    pub fn get_or_read(&mut self, tgid: u32) -> Option<Arc<ProcessInfo>> {
        if let Some(p) = self.procs.get(&tgid) {
            return Some(Arc::clone(p));
        }
        let p = Arc::new(read_proc(&self.proc_root, tgid)?);
        self.procs.insert(tgid, Arc::clone(&p));
        Some(p)
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// A new program: everything about the process is new but its parent.
    pub fn exec(&mut self, ev: &ExecEvent) {
        let path = &ev.path[..(ev.path_len as usize).min(ev.path.len())];
        let mut exe = (!path.is_empty()).then(|| String::from_utf8_lossy(path).into_owned());
        // A relative path was relative to the process's directory: made
        // absolute while the process still has one to ask.
        if let Some(rel) = exe.as_ref().filter(|e| !e.starts_with('/')) {
            if let Ok(cwd) = std::fs::read_link(format!("/proc/{}/cwd", ev.tgid)) {
                exe = Some(cwd.join(rel).to_string_lossy().into_owned());
            }
        }
        let args = &ev.args[..(ev.args_len as usize).min(ev.args.len())];
        let info = ProcessInfo {
            exe,
            cmdline: cmdline_of(args),
            ppid: (ev.ppid != 0).then_some(ev.ppid),
            parent_comm: c_string(&ev.parent_comm),
            comm: c_string(&ev.comm),
            uid: Some(ev.uid),
            start_ns: (ev.start_ns != 0).then_some(ev.start_ns),
            digest: OnceLock::new(),
        };
        self.procs.insert(ev.tgid, Arc::new(info));
    }

    /// A new process: it runs its parent's program until it execs.
    pub fn fork(&mut self, ev: &ForkEvent) {
        let parent = self.get_or_read(ev.ppid);
        let info = ProcessInfo {
            exe: parent.as_ref().and_then(|p| p.exe.clone()),
            cmdline: parent.as_ref().and_then(|p| p.cmdline.clone()),
            ppid: Some(ev.ppid),
            parent_comm: c_string(&ev.parent_comm).or_else(|| parent.as_ref().and_then(|p| p.comm.clone())),
            comm: c_string(&ev.comm),
            uid: Some(ev.uid),
            start_ns: (ev.start_ns != 0).then_some(ev.start_ns),
            // Same program, same digest cell.
            digest: parent
                .as_ref()
                .and_then(|p| p.digest.get().cloned())
                .map(OnceLock::from)
                .unwrap_or_default(),
        };
        self.procs.insert(ev.tgid, Arc::new(info));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowtop_common::{PROC_EVENT_EXEC, PROC_EVENT_FORK};

    fn fixed<const N: usize>(s: &[u8]) -> [u8; N] {
        let mut a = [0u8; N];
        a[..s.len()].copy_from_slice(s);
        a
    }

    fn exec(tgid: u32, ppid: u32, path: &str, args: &[u8]) -> ExecEvent {
        ExecEvent {
            kind: PROC_EVENT_EXEC,
            tgid,
            ppid,
            uid: 1000,
            start_ns: 5,
            comm: fixed(b"prog"),
            parent_comm: fixed(b"bash"),
            path_len: path.len() as u32,
            args_len: args.len() as u32,
            path: fixed(path.as_bytes()),
            args: fixed(args),
        }
    }

    fn fork(tgid: u32, ppid: u32) -> ForkEvent {
        ForkEvent {
            kind: PROC_EVENT_FORK,
            tgid,
            ppid,
            uid: 1000,
            start_ns: 9,
            comm: fixed(b"prog"),
            parent_comm: fixed(b"prog"),
        }
    }

    #[test]
    fn exec_records_describe_the_process() {
        let mut book = ProcessBook::new(16);
        book.exec(&exec(4_000_001, 77, "/usr/bin/curl", b"curl\0-s\0http://x\0"));
        let p = book.get(4_000_001).expect("known");
        assert_eq!(p.exe.as_deref(), Some("/usr/bin/curl"));
        assert_eq!(p.cmdline.as_deref(), Some("curl -s http://x"));
        assert_eq!((p.ppid, p.parent_comm.as_deref()), (Some(77), Some("bash")));
        assert_eq!((p.uid, p.start_ns), (Some(1000), Some(5)));
    }

    #[test]
    fn a_forked_child_inherits_its_parents_program_until_it_execs() {
        let mut book = ProcessBook::new(16);
        book.exec(&exec(4_000_001, 77, "/usr/sbin/server", b"server\0--workers\0"));
        book.fork(&fork(4_000_002, 4_000_001));
        let child = book.get(4_000_002).expect("child");
        assert_eq!(child.exe.as_deref(), Some("/usr/sbin/server"));
        assert_eq!(child.cmdline.as_deref(), Some("server --workers"));
        assert_eq!(child.ppid, Some(4_000_001));
        assert_eq!(child.parent_comm.as_deref(), Some("prog"));
        // Then it execs: its own program, the parent stays.
        book.exec(&exec(4_000_002, 4_000_001, "/bin/sh", b"sh\0-c\0true\0"));
        let child = book.get(4_000_002).expect("child");
        assert_eq!(child.exe.as_deref(), Some("/bin/sh"));
        assert_eq!(child.ppid, Some(4_000_001));
    }

    #[test]
    fn the_book_is_bounded_and_keeps_the_recent_processes() {
        let mut book = ProcessBook::new(100);
        for pid in 4_000_000..4_010_000 {
            book.exec(&exec(pid, 1, "/bin/true", b"true\0"));
        }
        assert!(book.len() <= 100, "{}", book.len());
        assert!(book.get(4_009_999).is_some());
        assert!(book.get(4_000_000).is_none());
    }

    #[test]
    fn command_lines_are_bounded_and_space_separated() {
        assert_eq!(cmdline_of(b""), None);
        assert_eq!(cmdline_of(b"\0"), None);
        assert_eq!(cmdline_of(b"a\0b c\0d"), Some("a b c d".into()));
        let long = vec![b'x'; 1000];
        assert_eq!(cmdline_of(&long).map(|s| s.len()), Some(CMDLINE_MAX));
    }

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = b"77 (a) b (c)) R 42 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10\n";
        assert_eq!(parse_stat(line), Some((42, 123456)));
        assert_eq!(parse_stat(b"77 (a) R"), None);
    }

    #[test]
    fn bootstrap_reads_this_process_and_its_parent() {
        let mut book = ProcessBook::new(1 << 16);
        book.bootstrap(Path::new("/proc"));
        let me = book.get(std::process::id()).expect("this process");
        let exe = std::fs::read_link("/proc/self/exe").expect("exe");
        assert_eq!(me.exe.as_deref(), exe.to_str());
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() } as u32;
        assert_eq!(me.ppid, Some(ppid));
        assert_eq!(
            me.parent_comm,
            read_comm(&Path::new("/proc").join(ppid.to_string()))
        );
        assert!(me.cmdline.is_some());
    }
}
