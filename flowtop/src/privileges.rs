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
//! whole process only while the process has one thread: start-up (see
//! `app::start`) does its privileged work first, drops, and only then
//! starts the threads that need no privileges (the DNS resolver, the
//! conntrack sources, the /proc scanner), which inherit the reduced sets.
//! `--once` drops with one thread.
//!
//! The exception is the eBPF ring reader: the eBPF loader starts it as it
//! attaches the programs (one call does both), so it exists before the
//! drop. For it, and for any thread a future start-up starts early, the
//! drop is also applied through a real-time signal whose handler makes the
//! same system calls (only raw, async-signal-safe ones). In each thread:
//! the bounding set is cut to the kept set, the ambient set is cleared,
//! `PR_SET_NO_NEW_PRIVS` is set, and the effective, permitted and
//! inheritable sets are set to the kept set (inheritable empty).

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
    /// Threads that applied the drop (the caller included).
    pub threads: usize,
}

/// The plan the signal handler reads (set before any signal is sent).
static PLAN_KEEP: AtomicU64 = AtomicU64::new(0);
static PLAN_LAST_CAP: AtomicU64 = AtomicU64::new(40);
/// Threads whose drop succeeded / failed (errno of the failing step).
static APPLIED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicI32 = AtomicI32::new(0);

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

/// Applies the plan to the calling thread with raw system calls only, so
/// that it can run in a signal handler. Returns 0 or the failing errno.
fn apply_to_this_thread() -> i32 {
    let keep = PLAN_KEEP.load(Ordering::SeqCst);
    let last = PLAN_LAST_CAP.load(Ordering::SeqCst);
    // SAFETY: prctl and capset with plain integer arguments and pointers to
    // live local structs; none of them allocates or takes locks.
    unsafe {
        // The bounding set needs CAP_SETPCAP, still effective at this point.
        let can_setpcap = permitted_has(CAP_SETPCAP);
        if can_setpcap {
            for cap in 0..=last {
                if keep & (1 << cap) == 0
                    && libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) == 1
                    && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                {
                    return errno();
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
            return errno();
        }
        let mut hdr = CapHeader {
            version: CAP_VERSION_3,
            pid: 0,
        };
        let mut have = [CapData::default(); 2];
        if libc::syscall(libc::SYS_capget, &mut hdr as *mut CapHeader, have.as_mut_ptr()) != 0 {
            return errno();
        }
        let permitted = u64::from(have[0].permitted) | (u64::from(have[1].permitted) << 32);
        let set = keep & permitted;
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
        if libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) != 0 {
            return errno();
        }
    }
    0
}

/// Whether the calling thread's effective set has `cap` (raw, signal-safe).
unsafe fn permitted_has(cap: u32) -> bool {
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

extern "C" fn on_drop_signal(_sig: libc::c_int) {
    // Keep errno of the interrupted code intact.
    // SAFETY: __errno_location returns the calling thread's errno slot.
    let saved = unsafe { *libc::__errno_location() };
    match apply_to_this_thread() {
        0 => {
            APPLIED.fetch_add(1, Ordering::SeqCst);
        }
        e => FAILED.store(e, Ordering::SeqCst),
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

fn drop_signal() -> libc::c_int {
    libc::SIGRTMIN() + 7
}

/// The ids of the process's threads.
fn thread_ids() -> std::io::Result<Vec<i32>> {
    let mut tids = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")? {
        if let Some(tid) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            tids.push(tid);
        }
    }
    Ok(tids)
}

/// Gives up every capability continued operation does not need, in every
/// thread of the process (see the module documentation). Call it once,
/// after netlink sockets are open, eBPF is attached and the sysctls are
/// saved, and before starting threads that need no privileges (they then
/// inherit the reduced sets); threads already running are covered too.
///
/// A process without capabilities (not root, tests) has nothing to drop:
/// still sets no_new_privs and returns Ok.
pub fn drop_after_startup(keep: Keep) -> Result<Dropped, String> {
    PLAN_KEEP.store(keep.mask(), Ordering::SeqCst);
    PLAN_LAST_CAP.store(last_cap().min(63), Ordering::SeqCst);
    APPLIED.store(0, Ordering::SeqCst);
    FAILED.store(0, Ordering::SeqCst);
    let sig = drop_signal();
    // SAFETY: installs a handler that only makes raw system calls and
    // touches atomics.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_drop_signal as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
            return Err(format!(
                "installing the drop handler: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    // SAFETY: gettid has no arguments.
    let me = unsafe { libc::gettid() };
    let pid = std::process::id() as i32;
    // Threads can appear while we signal (a thread spawning another): repeat
    // until every thread seen has been asked. A thread created after its
    // parent dropped inherits the reduced sets, so a tid seen twice is fine.
    let mut asked: Vec<i32> = Vec::new();
    let own = apply_to_this_thread();
    if own != 0 {
        return Err(format!(
            "dropping capabilities: {}",
            std::io::Error::from_raw_os_error(own)
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let tids = thread_ids().map_err(|e| format!("listing threads: {e}"))?;
        let new: Vec<i32> = tids
            .into_iter()
            .filter(|t| *t != me && !asked.contains(t))
            .collect();
        if new.is_empty() {
            break;
        }
        for tid in new {
            // SAFETY: tgkill with our own pid; a thread that exited meanwhile gives ESRCH.
            let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) };
            if rc == 0 {
                asked.push(tid);
            }
        }
        // Wait for the handlers of the threads asked so far.
        while APPLIED.load(Ordering::SeqCst) + count_gone(&asked) < asked.len()
            && FAILED.load(Ordering::SeqCst) == 0
        {
            if Instant::now() > deadline {
                return Err("dropping capabilities: a thread did not answer".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if let e @ 1.. = FAILED.load(Ordering::SeqCst) {
            return Err(format!(
                "dropping capabilities in a thread: {}",
                std::io::Error::from_raw_os_error(e)
            ));
        }
    }
    Ok(Dropped {
        kept: permitted_now().map_err(|e| format!("reading capabilities: {e}"))?,
        threads: APPLIED.load(Ordering::SeqCst) + 1,
    })
}

/// Threads asked that have exited since (they cannot answer).
fn count_gone(asked: &[i32]) -> usize {
    asked
        .iter()
        .filter(|t| !std::path::Path::new(&format!("/proc/self/task/{t}")).exists())
        .count()
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
}
