//! What the detail view shows of a process beyond the flow's owner record:
//! its command line and user name, read from /proc by a thread of its own
//! so that the screen never waits on /proc.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::output::safe::terminal_safe;

/// What is known of a process's command line and user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcInfo {
    /// Asked; the reader has not answered yet.
    Loading,
    /// Gone from /proc (its flows keep the owner they had).
    Exited,
    Ready {
        cmdline: String,
        user: Option<String>,
    },
}

/// Process details by pid, filled in the background.
#[derive(Debug, Clone, Default)]
pub struct ProcInfos {
    known: Arc<Mutex<HashMap<u32, ProcInfo>>>,
    /// A process and its ancestors, by the pid asked (see [`read_ancestors`]).
    ancestors: Arc<Mutex<HashMap<u32, Lineage>>>,
    reader: Option<mpsc::Sender<Ask>>,
}

/// A process and those above it, `(pid, comm)` each, nearest first.
pub type Lineage = Vec<(u32, String)>;

/// What the reader thread is asked for.
#[derive(Debug, Clone, Copy)]
enum Ask {
    Info(u32),
    Ancestors(u32),
}

/// How far up a parent chain is followed.
const ANCESTORS_MAX: usize = 8;

impl ProcInfos {
    /// Starts the reader thread on `proc_root` (normally /proc).
    pub fn spawn(proc_root: PathBuf) -> std::io::Result<ProcInfos> {
        let known: Arc<Mutex<HashMap<u32, ProcInfo>>> = Arc::default();
        let ancestors: Arc<Mutex<HashMap<u32, Lineage>>> = Arc::default();
        let (tx, rx) = mpsc::channel::<Ask>();
        let (k, a) = (Arc::clone(&known), Arc::clone(&ancestors));
        std::thread::Builder::new()
            .name("procinfo".into())
            .spawn(move || {
                // Ends when the screen drops its sender.
                for ask in rx {
                    match ask {
                        Ask::Info(pid) => {
                            let info = read(&proc_root, pid);
                            k.lock().unwrap_or_else(|p| p.into_inner()).insert(pid, info);
                        }
                        Ask::Ancestors(pid) => {
                            let chain = read_ancestors(&proc_root, pid, ANCESTORS_MAX);
                            a.lock().unwrap_or_else(|p| p.into_inner()).insert(pid, chain);
                        }
                    }
                }
            })?;
        Ok(ProcInfos {
            known,
            ancestors,
            reader: Some(tx),
        })
    }

    /// Asks for `pid` to be read (again: command lines change, pids are reused).
    pub fn request(&self, pid: u32) {
        let Some(tx) = &self.reader else { return };
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pid, ProcInfo::Loading);
        let _ = tx.send(Ask::Info(pid));
    }

    /// Asks for `pid` and its ancestors to be read (the detail view's
    /// parent chain).
    pub fn request_ancestors(&self, pid: u32) {
        if let Some(tx) = &self.reader {
            let _ = tx.send(Ask::Ancestors(pid));
        }
    }

    /// `pid` and its ancestors, `(pid, comm)` from `pid` up, as last read;
    /// empty when not read (yet) or gone.
    pub fn ancestors(&self, pid: u32) -> Vec<(u32, String)> {
        self.ancestors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&pid)
            .cloned()
            .unwrap_or_default()
    }

    /// Sets the ancestors read for `pid` (tests).
    pub fn set_ancestors(&self, pid: u32, chain: Vec<(u32, String)>) {
        self.ancestors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pid, chain);
    }

    /// What is known of `pid` now; `Loading` when never asked.
    pub fn get(&self, pid: u32) -> ProcInfo {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&pid)
            .cloned()
            .unwrap_or(ProcInfo::Loading)
    }

    /// What is known of `pid`, asking for it the first time (a row that
    /// shows a command line asks once, not at every frame).
    pub fn get_or_request(&self, pid: u32) -> ProcInfo {
        let known = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&pid)
            .cloned();
        match known {
            Some(info) => info,
            None => {
                self.request(pid);
                ProcInfo::Loading
            }
        }
    }

    /// Sets what is known of `pid` (tests, and callers that know better).
    pub fn set(&self, pid: u32, info: ProcInfo) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pid, info);
    }
}

/// Reads the command line and user of `pid` under `root`.
pub fn read(root: &Path, pid: u32) -> ProcInfo {
    let dir = root.join(pid.to_string());
    let Ok(raw) = std::fs::read(dir.join("cmdline")) else {
        return ProcInfo::Exited;
    };
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| terminal_safe(&String::from_utf8_lossy(a)).into_owned())
        .collect();
    let cmdline = if args.is_empty() {
        "(none: a kernel thread or a zombie)".to_owned()
    } else {
        args.join(" ")
    };
    let uid = std::fs::read_to_string(dir.join("status")).ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
    });
    let user = uid.map(|u| match user_name(Path::new("/etc/passwd"), u) {
        Some(name) => format!("{} ({u})", terminal_safe(&name)),
        None => u.to_string(),
    });
    ProcInfo::Ready { cmdline, user }
}

/// `pid` and the processes above it, `(pid, comm)` each, made safe: read
/// from each one's `stat` (its name in parentheses, then state, then the
/// parent's pid) until pid 1's parent (0), a process that is gone, or `max`.
pub fn read_ancestors(root: &Path, pid: u32, max: usize) -> Vec<(u32, String)> {
    let mut chain = Vec::new();
    let mut pid = pid;
    while pid != 0 && chain.len() < max {
        let Ok(stat) = std::fs::read(root.join(pid.to_string()).join("stat")) else {
            break;
        };
        // The name may hold spaces and parentheses: it ends at the last ')'.
        let (Some(open), Some(close)) = (
            stat.iter().position(|&b| b == b'('),
            stat.iter().rposition(|&b| b == b')'),
        ) else {
            break;
        };
        if close < open {
            break;
        }
        let comm = terminal_safe(&String::from_utf8_lossy(&stat[open + 1..close])).into_owned();
        chain.push((pid, comm));
        let ppid = std::str::from_utf8(&stat[close + 1..])
            .ok()
            .and_then(|rest| rest.split_ascii_whitespace().nth(1)?.parse::<u32>().ok());
        match ppid {
            Some(p) if p != pid => pid = p,
            _ => break,
        }
    }
    chain
}

/// Login names by uid, read from a passwd file once per uid asked.
#[derive(Debug, Default)]
pub struct Users {
    passwd: Option<PathBuf>,
    known: Mutex<HashMap<u32, String>>,
}

impl Users {
    /// Names from `passwd` (normally /etc/passwd); `None`: numbers only.
    pub fn new(passwd: Option<PathBuf>) -> Users {
        Users {
            passwd,
            known: Mutex::default(),
        }
    }

    /// The login name of `uid`, made safe, or its number.
    pub fn name(&self, uid: u32) -> String {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known
            .entry(uid)
            .or_insert_with(|| {
                self.passwd
                    .as_deref()
                    .and_then(|p| user_name(p, uid))
                    .map_or_else(|| uid.to_string(), |n| terminal_safe(&n).into_owned())
            })
            .clone()
    }
}

/// The login name of `uid` from a passwd file.
pub fn user_name(passwd: &Path, uid: u32) -> Option<String> {
    let text = std::fs::read_to_string(passwd).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cmdline_and_reports_exited() {
        let dir = std::env::temp_dir().join(format!("flowtop-procinfo-{}", std::process::id()));
        let p = dir.join("42");
        std::fs::create_dir_all(&p).expect("mkdir");
        std::fs::write(p.join("cmdline"), b"curl\0-s\0https://example.org/\x1b[2J\0").expect("write");
        std::fs::write(p.join("status"), "Name:\tcurl\nUid:\t0\t0\t0\t0\n").expect("write");
        match read(&dir, 42) {
            ProcInfo::Ready { cmdline, user } => {
                assert_eq!(cmdline, "curl -s https://example.org/\\x1b[2J");
                assert!(user.is_some_and(|u| u.ends_with("(0)") || u == "0"));
            }
            other => panic!("not ready: {other:?}"),
        }
        assert_eq!(read(&dir, 43), ProcInfo::Exited);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ancestors_follow_parents_up_to_init_and_stop_at_a_gone_one() {
        let dir = std::env::temp_dir().join(format!("flowtop-ancestors-{}", std::process::id()));
        let stat = |pid: u32, text: &str| {
            let p = dir.join(pid.to_string());
            std::fs::create_dir_all(&p).expect("mkdir");
            std::fs::write(p.join("stat"), text).expect("write");
        };
        stat(300, "300 (my (odd) prog) S 200 300 1 0");
        stat(200, "200 (bash) S 1 200 1 0");
        stat(1, "1 (systemd) S 0 1 1 0");
        stat(400, "400 (orphan) S 399 400 1 0");
        let names =
            |c: Vec<(u32, String)>| c.into_iter().map(|(p, n)| format!("{n} {p}")).collect::<Vec<_>>();
        assert_eq!(
            names(read_ancestors(&dir, 300, 8)),
            ["my (odd) prog 300", "bash 200", "systemd 1"]
        );
        assert_eq!(
            names(read_ancestors(&dir, 300, 2)),
            ["my (odd) prog 300", "bash 200"]
        );
        assert_eq!(names(read_ancestors(&dir, 400, 8)), ["orphan 400"], "399 is gone");
        assert!(read_ancestors(&dir, 999, 8).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
