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
    reader: Option<mpsc::Sender<u32>>,
}

impl ProcInfos {
    /// Starts the reader thread on `proc_root` (normally /proc).
    pub fn spawn(proc_root: PathBuf) -> std::io::Result<ProcInfos> {
        let known: Arc<Mutex<HashMap<u32, ProcInfo>>> = Arc::default();
        let (tx, rx) = mpsc::channel::<u32>();
        let k = Arc::clone(&known);
        std::thread::Builder::new()
            .name("procinfo".into())
            .spawn(move || {
                // Ends when the screen drops its sender.
                for pid in rx {
                    let info = read(&proc_root, pid);
                    k.lock().unwrap_or_else(|p| p.into_inner()).insert(pid, info);
                }
            })?;
        Ok(ProcInfos {
            known,
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
        let _ = tx.send(pid);
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
}
