//! Least privilege: once start-up is done, flowtop gives up every
//! capability it no longer needs.
//!
//! Start-up needs root's full power (eBPF load and attach, a temporary
//! cgroup2/tracefs mount, SO_RCVBUFFORCE, the state file, the sysctls).
//! Continued operation needs only:
//!
//! - `CAP_NET_ADMIN`: ctnetlink checks it on every request (the periodic
//!   re-dumps and resyncs, against the caller's current credentials, not
//!   only the opener's); `SO_RCVBUFFORCE` when the event socket overruns and
//!   its buffer grows; writing the namespace's `net.netfilter` sysctls back
//!   at exit; detaching cgroup programs attached with the legacy interface.
//! - `CAP_SYS_PTRACE`: reading `/proc/PID/fd/*` and `/proc/PID/exe` of
//!   processes whose capabilities are not a subset of flowtop's (every other
//!   root process once flowtop has dropped) or that belong to other users
//!   (ptrace access mode "read", as the /proc attribution does).
//! - `CAP_DAC_READ_SEARCH`: listing `/proc/PID/fd` of other users' processes
//!   (the directory is 0500, owned by the process's user).
//!
//! The last two only with /proc attribution on. Nothing else is kept:
//! eBPF's ring buffer is already mapped and its maps are used through open
//! file descriptors (no `CAP_BPF`/`CAP_PERFMON` after load), the temporary
//! mounts are undone right after attaching (no `CAP_SYS_ADMIN`), and the
//! state file under `/run/flowtop` belongs to root (uid 0 stays, so no
//! `CAP_DAC_OVERRIDE`/`CAP_FOWNER`).
//!
//! Capabilities are per thread in Linux, so one call drops them for the
//! whole process only while the process has one thread. Start-up (see
//! `app::start`, and `app::once` for `--once`) is ordered for that: it does
//! its privileged work on the main thread (eBPF is attached and its ring
//! buffer taken, but its reader not started), drops, and only then starts
//! the threads that need no privileges (the eBPF ring reader, the DNS
//! resolver, the conntrack sources and dump thread, the /proc scanner, the
//! screen), which inherit the reduced sets. [`drop_after_startup`] checks
//! that: when other threads exist it still drops in the calling thread but
//! returns an error naming them, as they keep their privileges (a start-up
//! ordering bug, which the root tests reading every thread's sets catch).
//!
//! The drop, in the calling thread: the bounding set is cut to the kept
//! set, the ambient set is cleared, `PR_SET_NO_NEW_PRIVS` is set, and the
//! effective and permitted sets are set to the kept set (inheritable empty).
//!
//! Started by a user with file capabilities instead of as root (the Debian
//! package: `/usr/bin/flowtop` `root:flowtop 0750` with `cap_net_admin`,
//! `cap_bpf`, `cap_perfmon`, `cap_sys_ptrace`), the same drop applies, after
//! [`confine_file_access`] has first removed, for good, every capability
//! that bypasses file permissions: every path the user names is then opened
//! with the user's own rights.

pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_SETPCAP: u32 = 8;
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_PTRACE: u32 = 19;

/// `_LINUX_CAPABILITY_VERSION_3`.
const CAP_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// What the process keeps; see the module documentation for why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    /// /proc attribution runs (needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH).
    pub procfs: bool,
}

impl Keep {
    /// The capability numbers kept, as a bit mask.
    pub fn mask(self) -> u64 {
        let mut m = 1u64 << CAP_NET_ADMIN;
        if self.procfs {
            m |= (1u64 << CAP_SYS_PTRACE) | (1u64 << CAP_DAC_READ_SEARCH);
        }
        m
    }
}

/// What was done, for the meta line and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Effective/permitted set after the drop.
    pub kept: u64,
}

fn last_cap() -> u64 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// The permitted set of the calling thread.
fn permitted_now() -> std::io::Result<u64> {
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget with a valid header and two data structs (version 3).
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut CapHeader, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(u64::from(data[0].permitted) | (u64::from(data[1].permitted) << 32))
}

/// Applies the drop to the calling thread. Returns the failing errno.
fn apply_to_this_thread(keep: u64, last: u64) -> Result<(), i32> {
    // SAFETY: prctl and capset with plain integer arguments and pointers to
    // live local structs.
    unsafe {
        // The bounding set needs CAP_SETPCAP, still effective at this point.
        if effective_has(CAP_SETPCAP) {
            for cap in 0..=last {
                if keep & (1 << cap) == 0
                    && libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) == 1
                    && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                {
                    return Err(errno());
                }
            }
        }
        // The ambient set: empty (a kernel without ambient capabilities has none).
        let _ = libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(errno());
        }
    }
    let set = keep & permitted_now().map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let data = [
        CapData {
            effective: set as u32,
            permitted: set as u32,
            inheritable: 0,
        },
        CapData {
            effective: (set >> 32) as u32,
            permitted: (set >> 32) as u32,
            inheritable: 0,
        },
    ];
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    // SAFETY: capset with a valid header and two data structs (version 3).
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) } != 0 {
        return Err(errno());
    }
    Ok(())
}

/// Whether the calling thread's effective set has `cap`.
/// Whether this process may talk to ctnetlink: CAP_NET_ADMIN effective.
/// Without it in its own user namespace it has it in no network namespace,
/// so a `false` is never wrong.
pub fn has_net_admin() -> bool {
    effective_has(CAP_NET_ADMIN)
}

fn effective_has(cap: u32) -> bool {
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget with a valid header and two data structs.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut CapHeader, data.as_mut_ptr()) };
    rc == 0 && data[(cap / 32) as usize].effective & (1 << (cap % 32)) != 0
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The process's threads other than the caller, as `name (tid)`.
fn other_threads() -> std::io::Result<Vec<String>> {
    // SAFETY: gettid has no arguments.
    let me = unsafe { libc::gettid() };
    let mut others = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")? {
        let Some(tid) = entry?.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if tid != me {
            let name = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap_or_default();
            others.push(format!("{} ({tid})", name.trim()));
        }
    }
    others.sort();
    Ok(others)
}

/// Gives up every capability continued operation does not need (see the
/// module documentation). Call it once, from the process's only thread,
/// after netlink sockets are open, eBPF is attached and the sysctls are
/// saved, and before starting any other thread: they then inherit the
/// reduced sets.
///
/// When other threads exist the calling thread still drops, but the error
/// names them: they keep what they had.
///
/// A process without capabilities (not root, tests) has nothing to drop:
/// still sets no_new_privs and returns Ok.
pub fn drop_after_startup(keep: Keep) -> Result<Dropped, String> {
    let others = other_threads().map_err(|e| format!("listing threads: {e}"))?;
    apply_to_this_thread(keep.mask(), last_cap().min(63))
        .map_err(|e| format!("dropping capabilities: {}", std::io::Error::from_raw_os_error(e)))?;
    if !others.is_empty() {
        return Err(format!(
            "dropped in the calling thread only: {} other thread(s) started before the drop keep their capabilities: {}",
            others.len(),
            others.join(", ")
        ));
    }
    Ok(Dropped {
        kept: permitted_now().map_err(|e| format!("reading capabilities: {e}"))?,
    })
}

/// Capabilities that let file-system access bypass the caller's own
/// rights: owner, mode and permission checks (CHOWN, DAC_OVERRIDE,
/// DAC_READ_SEARCH, FOWNER, FSETID), immutable flags (LINUX_IMMUTABLE),
/// device nodes (MKNOD) and the catch-all (SYS_ADMIN).
pub const FILE_ACCESS_BYPASS: u64 =
    (1 << 0) | (1 << 1) | (1 << CAP_DAC_READ_SEARCH) | (1 << 3) | (1 << 4) | (1 << 9) | (1 << 21) | (1 << 27);

/// Whether this process runs as a user other than root with capabilities
/// (file capabilities, e.g. the package's `/usr/bin/flowtop` run by a member
/// of the `flowtop` group). Root, and a user without capabilities, are not.
pub fn running_with_capabilities_as_user() -> bool {
    // SAFETY: getuid/geteuid have no preconditions and cannot fail.
    let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    uid != 0 && euid != 0 && permitted_now().is_ok_and(|p| p != 0)
}

/// When run with capabilities as a user (not root): removes every
/// capability that bypasses file permissions from the effective, permitted
/// and inheritable sets, for good and before anything is opened. Every path
/// the user can name (`--conf-dir`, `--geoip-dir`, `--journal`,
/// `--manifest`, `--state-dir`, `--diff`, `-u`'s target) is then opened with
/// the user's own rights only, wherever in the code it is opened, and no
/// later step can make such a capability effective again. The package's
/// file capabilities hold none of them; this makes that a property of the
/// binary, not of one `setcap` line (a wider set given by hand, e.g.
/// `cap_dac_read_search`, is cut here too).
///
/// Root is unchanged: it returns `Ok(0)` without doing anything. Otherwise
/// the removed set (0 when there was nothing to remove). Call it first
/// thing in `main`, while the process has one thread.
pub fn confine_file_access() -> Result<u64, String> {
    if !running_with_capabilities_as_user() {
        return Ok(0);
    }
    remove_from_this_thread(FILE_ACCESS_BYPASS)
}

/// Removes `mask` from the calling thread's effective, permitted and
/// inheritable sets; returns what was removed.
fn remove_from_this_thread(mask: u64) -> Result<u64, String> {
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget with a valid header and two data structs (version 3).
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut CapHeader, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(format!(
            "reading capabilities: {}",
            std::io::Error::last_os_error()
        ));
    }
    let permitted = u64::from(data[0].permitted) | (u64::from(data[1].permitted) << 32);
    let removed = permitted & mask;
    for (i, d) in data.iter_mut().enumerate() {
        let keep = !((mask >> (32 * i)) as u32);
        d.effective &= keep;
        d.permitted &= keep;
        d.inheritable &= keep;
    }
    // SAFETY: capset with a valid header and two data structs (version 3);
    // lowering sets needs no privilege.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) } != 0 {
        return Err(format!(
            "dropping capabilities: {}",
            std::io::Error::last_os_error()
        ));
    }
    // A capability still in the ambient set would come back in a child
    // (`flowtop run`'s command): clear those too.
    for cap in 0..64u32 {
        if mask & (1u64 << cap) != 0 {
            // SAFETY: prctl with integer arguments; EINVAL for caps the
            // kernel does not know is fine.
            let _ = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_LOWER as libc::c_ulong,
                    cap as libc::c_ulong,
                    0,
                    0,
                )
            };
        }
    }
    Ok(removed)
}

/// Names of capability numbers, for messages.
pub fn names(mask: u64) -> Vec<&'static str> {
    const NAMES: &[(u32, &str)] = &[
        (CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_PTRACE, "CAP_SYS_PTRACE"),
    ];
    NAMES
        .iter()
        .filter(|(c, _)| mask & (1u64 << c) != 0)
        .map(|(_, n)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_set_depends_on_proc_attribution() {
        assert_eq!(Keep { procfs: false }.mask(), 1 << 12);
        assert_eq!(Keep { procfs: true }.mask(), (1 << 12) | (1 << 19) | (1 << 2));
        assert_eq!(
            names(Keep { procfs: true }.mask()),
            ["CAP_DAC_READ_SEARCH", "CAP_NET_ADMIN", "CAP_SYS_PTRACE"]
        );
    }

    /// Runs `child` in a forked process (whose only thread is the caller's
    /// copy, as fork copies one thread) and returns its exit status: the
    /// drop can then be tried with one thread and with two, whatever the
    /// test harness's own threads, and without changing the test process.
    fn in_forked_child(child: fn() -> i32) -> i32 {
        // SAFETY: the child only reads /proc, makes the drop's system calls,
        // starts a thread and exits with _exit; glibc's fork handlers leave
        // malloc usable in the child.
        unsafe {
            match libc::fork() {
                -1 => panic!("fork: {}", std::io::Error::last_os_error()),
                0 => libc::_exit(child()),
                pid => {
                    let mut status = 0;
                    assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
                    assert!(libc::WIFEXITED(status), "child status {status:#x}");
                    libc::WEXITSTATUS(status)
                }
            }
        }
    }

    #[test]
    fn the_drop_succeeds_in_the_only_thread_and_names_threads_started_before_it() {
        let code = in_forked_child(|| {
            if drop_after_startup(Keep { procfs: true }).is_err() {
                return 10;
            }
            // A thread started too early: the next drop must say so, by name.
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
            let early = std::thread::Builder::new()
                .name("early-thread".into())
                .spawn(move || {
                    let _ = ready_tx.send(());
                    let _ = rx.recv();
                });
            let Ok(early) = early else { return 11 };
            // std names the thread from inside it, as it starts: wait for
            // that, so that /proc shows the name.
            let _ = ready_rx.recv();
            let refused = drop_after_startup(Keep { procfs: true });
            drop(tx);
            let _ = early.join();
            match refused {
                Ok(_) => 12,
                Err(e) if e.contains("early-thread") && e.contains("1 other thread") => 0,
                Err(e) => {
                    eprintln!("unexpected error: {e}");
                    13
                }
            }
        });
        assert_eq!(code, 0, "10: the single-thread drop failed, 12: two threads were accepted, 13: the error did not name the thread");
    }

    /// After the file-access capabilities are removed, a file of another
    /// user with mode 0600 cannot be opened, even by root's uid (the owner
    /// check is then the only one left): what a user-named path gets when
    /// flowtop runs with file capabilities. Needs a process that has the
    /// capabilities to lose (root); otherwise it says so and checks nothing
    /// beyond the call succeeding.
    #[test]
    fn removing_the_file_access_capabilities_leaves_the_owner_check_only() {
        let dir = std::env::temp_dir().join(format!("flowtop-confine-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "not for you").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let have_caps = permitted_now().is_ok_and(|p| p & (1 << 1) != 0);
        if !have_caps {
            eprintln!(
                "SKIP removing_the_file_access_capabilities...: no CAP_DAC_OVERRIDE to remove (not root)"
            );
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        // Owned by nobody (65534): only the capabilities let root open it.
        let c = std::ffi::CString::new(secret.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: chown with a valid C string.
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
        assert!(
            std::fs::read(&secret).is_ok(),
            "root with its capabilities reads it"
        );
        static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
        let _ = PATH.set(secret.clone());
        let code = in_forked_child(|| {
            let Ok(removed) = remove_from_this_thread(FILE_ACCESS_BYPASS) else {
                return 10;
            };
            if removed & (1 << 1) == 0 {
                return 11;
            }
            let Some(p) = PATH.get() else { return 12 };
            match std::fs::read(p) {
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
                _ => return 13,
            }
            // CAP_NET_ADMIN is not a file-access capability: it stays.
            if !effective_has(CAP_NET_ADMIN) {
                return 14;
            }
            0
        });
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(code, 0, "10: capset failed, 11: DAC_OVERRIDE not removed, 13: the file was readable, 14: CAP_NET_ADMIN lost");
    }

    #[test]
    fn the_drop_keeps_only_the_kept_set() {
        let code = in_forked_child(|| {
            let Ok(before) = permitted_now() else { return 10 };
            let Ok(dropped) = drop_after_startup(Keep { procfs: false }) else {
                return 11;
            };
            // Root keeps exactly CAP_NET_ADMIN; a process without it keeps nothing.
            if dropped.kept != before & (Keep { procfs: false }).mask() {
                return 12;
            }
            // SAFETY: prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) } != 1 {
                return 13;
            }
            0
        });
        assert_eq!(
            code, 0,
            "11: drop failed, 12: wrong kept set, 13: no_new_privs unset"
        );
    }
}
