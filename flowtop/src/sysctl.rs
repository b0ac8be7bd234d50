//! The kernel settings flowtop changes, and their restoration.
//!
//! flowtop turns on `nf_conntrack_acct` (byte/packet counters) and
//! `nf_conntrack_timestamp` (start times) in its network namespace. The
//! values from before are kept in a state file under `/run/flowtop/`, keyed
//! by the namespace, together with the PIDs of the flowtop processes that
//! rely on them:
//! - the first instance saves the values; later ones only add their PID;
//! - the last instance to exit puts the saved values back and removes the file;
//! - an instance that finds a state file whose holders are all dead (a
//!   `kill -9`) restores the saved values before doing anything else.
//!
//! The file is locked (flock) while read or written, created 0600 without
//! following symlinks, in a directory flowtop creates 0700.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The settings flowtop turns on, relative to `/proc/sys/net/netfilter`.
pub const SETTINGS: &[&str] = &["nf_conntrack_acct", "nf_conntrack_timestamp"];

/// Default directory of the state files.
pub const DEFAULT_STATE_DIR: &str = "/run/flowtop";

/// Where the sysctl files are (overridable for tests).
#[derive(Debug, Clone)]
pub struct Paths {
    pub proc_dir: PathBuf,
    pub state_dir: PathBuf,
    /// Key of the network namespace (inode of /proc/self/ns/net). The kernel
    /// reuses inode numbers of deleted namespaces, so it only names the file.
    pub netns: u64,
    /// The namespace's cookie (SO_NETNS_COOKIE, Linux >= 5.14): never reused
    /// during a boot, so a state file left by a deleted namespace that had the
    /// same inode is recognised and discarded instead of applied.
    pub netns_cookie: Option<u64>,
}

impl Paths {
    /// The real paths for this process's network namespace.
    pub fn system(state_dir: &Path) -> io::Result<Self> {
        let netns = fs::metadata("/proc/self/ns/net")?.ino();
        Ok(Paths {
            proc_dir: PathBuf::from("/proc/sys/net/netfilter"),
            state_dir: state_dir.to_owned(),
            netns,
            netns_cookie: netns_cookie(),
        })
    }

    fn state_file(&self) -> PathBuf {
        self.state_dir.join(format!("netns-{}.state", self.netns))
    }
}

/// The cookie of this process's network namespace, when the kernel has them.
pub fn netns_cookie() -> Option<u64> {
    // SAFETY: socket/getsockopt/close with valid pointers and sizes.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let mut cookie: u64 = 0;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        );
        libc::close(fd);
        (rc == 0).then_some(cookie)
    }
}

/// The saved values and the PIDs holding them, as stored in the state file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub netns_cookie: Option<u64>,
    pub saved: Vec<(String, String)>,
    pub holders: Vec<u32>,
}

impl State {
    pub fn parse(text: &str) -> State {
        let mut st = State::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.splitn(2, ' ');
            match (parts.next(), parts.next()) {
                (Some("netns_cookie"), Some(c)) => st.netns_cookie = c.trim().parse().ok(),
                (Some("holder"), Some(pid)) => {
                    if let Ok(pid) = pid.trim().parse() {
                        st.holders.push(pid);
                    }
                }
                (Some(name), Some(value)) if SETTINGS.contains(&name) => {
                    st.saved.push((name.to_owned(), value.trim().to_owned()));
                }
                _ => {}
            }
        }
        st
    }

    pub fn render(&self) -> String {
        let mut out = String::from("# flowtop: sysctl values to restore when the last holder exits\n");
        if let Some(c) = self.netns_cookie {
            out.push_str(&format!("netns_cookie {c}\n"));
        }
        for (k, v) in &self.saved {
            out.push_str(&format!("{k} {v}\n"));
        }
        for pid in &self.holders {
            out.push_str(&format!("holder {pid}\n"));
        }
        out
    }
}

/// What engaging did, for messages.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EngageReport {
    /// Values put back from a state file left by a killed instance.
    pub repaired: Vec<(String, String)>,
    /// Settings that could not be changed, with why.
    pub failed: Vec<String>,
}

/// Restores the settings when dropped (or when `restore` is called).
#[derive(Debug)]
pub struct SysctlGuard {
    paths: Paths,
    pid: u32,
    active: bool,
}

/// The guard of this process, reachable from the panic hook and signal path.
static ACTIVE: Mutex<Option<Paths>> = Mutex::new(None);

/// A pid is a live flowtop if /proc says so (a recycled pid running something
/// else does not count).
fn holder_alive(proc_root: &Path, pid: u32) -> bool {
    match fs::read_to_string(proc_root.join(pid.to_string()).join("comm")) {
        Ok(comm) => comm.trim_end().starts_with("flowtop"),
        Err(_) => false,
    }
}

fn read_setting(paths: &Paths, name: &str) -> io::Result<String> {
    Ok(fs::read_to_string(paths.proc_dir.join(name))?.trim().to_owned())
}

fn write_setting(paths: &Paths, name: &str, value: &str) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(paths.proc_dir.join(name))?;
    f.write_all(value.as_bytes())
}

/// Opens and locks the state file, creating the directory and file safely.
fn lock_state(paths: &Paths) -> io::Result<File> {
    match fs::symlink_metadata(&paths.state_dir) {
        Ok(m) if m.file_type().is_symlink() || !m.is_dir() => {
            return Err(io::Error::other(format!(
                "{} is not a directory (refusing to follow a symlink)",
                paths.state_dir.display()
            )))
        }
        Ok(_) => {}
        Err(_) => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&paths.state_dir)?,
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(paths.state_file())?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(f)
}

/// Reads the state; a state written in another namespace that happened to
/// have the same inode number reads as empty (its values are not ours).
fn read_state(paths: &Paths, f: &mut File) -> io::Result<State> {
    let mut text = String::new();
    f.seek(SeekFrom::Start(0))?;
    f.read_to_string(&mut text)?;
    let st = State::parse(&text);
    match (st.netns_cookie, paths.netns_cookie) {
        (Some(theirs), Some(ours)) if theirs != ours => Ok(State {
            netns_cookie: Some(ours),
            ..State::default()
        }),
        _ => Ok(State {
            netns_cookie: paths.netns_cookie.or(st.netns_cookie),
            ..st
        }),
    }
}

fn write_state(f: &mut File, st: &State) -> io::Result<()> {
    f.set_len(0)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(st.render().as_bytes())?;
    f.sync_data()
}

/// Puts back values saved by instances that all died, if any. Returns what
/// was restored. The state file stays locked by the caller.
fn repair_locked(paths: &Paths, f: &mut File, st: &mut State) -> io::Result<Vec<(String, String)>> {
    let proc_root = Path::new("/proc");
    st.holders.retain(|&pid| holder_alive(proc_root, pid));
    if !st.holders.is_empty() || st.saved.is_empty() {
        return Ok(Vec::new());
    }
    for (k, v) in &st.saved {
        write_setting(paths, k, v)?;
    }
    let repaired = std::mem::take(&mut st.saved);
    write_state(f, st)?;
    Ok(repaired)
}

/// Restores what a killed instance left behind, without changing anything
/// else (used by runs that do not change the settings themselves).
pub fn repair(paths: &Paths) -> io::Result<Vec<(String, String)>> {
    if !paths.state_file().exists() {
        return Ok(Vec::new());
    }
    let mut f = lock_state(paths)?;
    let mut st = read_state(paths, &mut f)?;
    let repaired = repair_locked(paths, &mut f, &mut st)?;
    if st.holders.is_empty() {
        let _ = fs::remove_file(paths.state_file());
    }
    Ok(repaired)
}

impl SysctlGuard {
    /// Saves the current values (unless another live instance did), records
    /// this process as a holder, and turns the settings on.
    pub fn engage(paths: Paths) -> io::Result<(SysctlGuard, EngageReport)> {
        let pid = std::process::id();
        let mut report = EngageReport::default();
        let mut f = lock_state(&paths)?;
        let mut st = read_state(&paths, &mut f)?;
        report.repaired = repair_locked(&paths, &mut f, &mut st)?;
        if st.holders.is_empty() {
            st.saved.clear();
            for name in SETTINGS {
                match read_setting(&paths, name) {
                    Ok(v) => st.saved.push(((*name).to_owned(), v)),
                    Err(e) => report.failed.push(format!("{name}: {e}")),
                }
            }
        }
        st.holders.push(pid);
        write_state(&mut f, &st)?;
        for (name, _) in &st.saved {
            if let Err(e) = write_setting(&paths, name, "1") {
                report.failed.push(format!("{name}: {e}"));
            }
        }
        drop(f);
        if let Ok(mut active) = ACTIVE.lock() {
            *active = Some(paths.clone());
        }
        Ok((
            SysctlGuard {
                paths,
                pid,
                active: true,
            },
            report,
        ))
    }

    /// Restores the settings now (idempotent).
    pub fn restore(&mut self) -> io::Result<()> {
        if !self.active {
            return Ok(());
        }
        self.active = false;
        if let Ok(mut active) = ACTIVE.lock() {
            *active = None;
        }
        release(&self.paths, self.pid)
    }
}

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            eprintln!("flowtop: could not restore the conntrack sysctls: {e}");
        }
    }
}

/// Removes `pid` from the holders; the last one restores the saved values.
fn release(paths: &Paths, pid: u32) -> io::Result<()> {
    let mut f = lock_state(paths)?;
    let mut st = read_state(paths, &mut f)?;
    let proc_root = Path::new("/proc");
    st.holders.retain(|&p| p != pid && holder_alive(proc_root, p));
    if st.holders.is_empty() {
        let mut result = Ok(());
        for (k, v) in &st.saved {
            if let Err(e) = write_setting(paths, k, v) {
                result = Err(e);
            }
        }
        fs::remove_file(paths.state_file())?;
        result
    } else {
        write_state(&mut f, &st)
    }
}

/// Restores from anywhere (panic hook, fatal signal path): the guard's
/// `restore` is then a no-op.
pub fn restore_active() {
    let paths = match ACTIVE.lock() {
        Ok(mut a) => a.take(),
        Err(_) => None,
    };
    if let Some(paths) = paths {
        if let Err(e) = release(&paths, std::process::id()) {
            eprintln!("flowtop: could not restore the conntrack sysctls: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        dir: PathBuf,
        paths: Paths,
    }

    impl Fixture {
        fn new(name: &str) -> Fixture {
            let dir = std::env::temp_dir().join(format!("flowtop-sysctl-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            let proc_dir = dir.join("proc");
            fs::create_dir_all(&proc_dir).expect("mkdir");
            for s in SETTINGS {
                fs::write(proc_dir.join(s), "0\n").expect("write");
            }
            let paths = Paths {
                proc_dir,
                state_dir: dir.join("state"),
                netns: 4026531840,
                netns_cookie: Some(7),
            };
            Fixture { dir, paths }
        }
        fn value(&self, name: &str) -> String {
            read_setting(&self.paths, name).expect("read")
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn state_file_round_trips() {
        let st = State {
            netns_cookie: Some(99),
            saved: vec![
                ("nf_conntrack_acct".into(), "0".into()),
                ("nf_conntrack_timestamp".into(), "1".into()),
            ],
            holders: vec![12, 34],
        };
        assert_eq!(State::parse(&st.render()), st);
        // Unknown names are never written back to the kernel.
        assert!(State::parse("kernel.panic 1\n").saved.is_empty());
    }

    #[test]
    fn symlinks_at_the_state_dir_or_file_are_refused() {
        // A symlinked state file (someone pointing it at /etc/shadow).
        let fx = Fixture::new("symlink-file");
        let victim = fx.dir.join("victim");
        fs::write(&victim, "keep\n").expect("victim");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&fx.paths.state_dir)
            .expect("state dir");
        std::os::unix::fs::symlink(&victim, fx.paths.state_file()).expect("ln -s");
        assert!(SysctlGuard::engage(fx.paths.clone()).is_err());
        assert_eq!(fs::read_to_string(&victim).expect("victim"), "keep\n");
        assert_eq!(fx.value("nf_conntrack_acct"), "0", "nothing changed");
        // A symlinked state directory.
        let fx = Fixture::new("symlink-dir");
        let elsewhere = fx.dir.join("elsewhere");
        fs::create_dir_all(&elsewhere).expect("mkdir");
        std::os::unix::fs::symlink(&elsewhere, &fx.paths.state_dir).expect("ln -s");
        assert!(SysctlGuard::engage(fx.paths.clone()).is_err());
        assert_eq!(fs::read_dir(&elsewhere).expect("dir").count(), 0);
    }

    #[test]
    fn engage_turns_on_and_drop_restores() {
        let fx = Fixture::new("engage");
        {
            let (_guard, report) = SysctlGuard::engage(fx.paths.clone()).expect("engage");
            assert!(report.failed.is_empty(), "{report:?}");
            assert_eq!(fx.value("nf_conntrack_acct"), "1");
            assert_eq!(fx.value("nf_conntrack_timestamp"), "1");
            let mode = fs::metadata(fx.paths.state_file()).expect("state").mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(fx.value("nf_conntrack_acct"), "0");
        assert_eq!(fx.value("nf_conntrack_timestamp"), "0");
        assert!(!fx.paths.state_file().exists());
    }

    #[test]
    fn state_left_by_a_dead_instance_is_repaired() {
        let fx = Fixture::new("repair");
        // A killed instance: values turned on, its pid no longer a flowtop.
        fs::create_dir_all(&fx.paths.state_dir).expect("mkdir");
        let st = State {
            netns_cookie: Some(7),
            saved: vec![
                ("nf_conntrack_acct".into(), "0".into()),
                ("nf_conntrack_timestamp".into(), "0".into()),
            ],
            holders: vec![u32::MAX - 1],
        };
        fs::write(fx.paths.state_file(), st.render()).expect("write");
        for s in SETTINGS {
            fs::write(fx.paths.proc_dir.join(s), "1").expect("write");
        }
        let repaired = repair(&fx.paths).expect("repair");
        assert_eq!(repaired.len(), 2);
        assert_eq!(fx.value("nf_conntrack_acct"), "0");
        assert!(!fx.paths.state_file().exists());
    }

    #[test]
    fn state_of_another_namespace_with_the_same_inode_is_not_applied() {
        let fx = Fixture::new("reused-inode");
        fs::create_dir_all(&fx.paths.state_dir).expect("mkdir");
        // Left by a killed flowtop in a deleted namespace (cookie 6) whose
        // inode number the kernel gave to ours (cookie 7).
        let st = State {
            netns_cookie: Some(6),
            saved: vec![("nf_conntrack_acct".into(), "0".into())],
            holders: vec![u32::MAX - 1],
        };
        fs::write(fx.paths.state_file(), st.render()).expect("write");
        fs::write(fx.paths.proc_dir.join("nf_conntrack_acct"), "1").expect("write");
        assert!(repair(&fx.paths).expect("repair").is_empty());
        assert_eq!(
            fx.value("nf_conntrack_acct"),
            "1",
            "our namespace's value is untouched"
        );
        assert!(!fx.paths.state_file().exists(), "the foreign state is discarded");
        // Engaging saves our own value, and restores it.
        {
            let _g = SysctlGuard::engage(fx.paths.clone()).expect("engage");
        }
        assert_eq!(fx.value("nf_conntrack_acct"), "1");
    }

    #[test]
    fn refuses_a_symlinked_state_dir() {
        let fx = Fixture::new("symlink");
        let target = fx.dir.join("elsewhere");
        fs::create_dir_all(&target).expect("mkdir");
        std::os::unix::fs::symlink(&target, &fx.paths.state_dir).expect("symlink");
        assert!(SysctlGuard::engage(fx.paths.clone()).is_err());
        assert_eq!(
            fx.value("nf_conntrack_acct"),
            "0",
            "nothing changed when the state cannot be saved"
        );
    }
}
