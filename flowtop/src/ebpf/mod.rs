//! eBPF side of flowtop: loads the object built by `build.rs` from
//! `flowtop-ebpf` and attaches its programs.
//!
//! Programs:
//! - `tracepoint/sock/inet_sock_set_state`, which counts socket state
//!   transitions (see [`EbpfAttachment::state_counts`]). Use [`probe`] once at
//!   start-up: it attaches it, keeps it attached for the rest of the process
//!   and reports an [`EbpfStatus`]. Use [`attach`] to own the attachment
//!   instead (dropping it detaches).
//! - socket ownership events: `cgroup/sock_create` and `cgroup_skb/egress`
//!   on the cgroup2 root, feeding a ring buffer of
//!   [`SockEvent`](flowtop_common::SockEvent)s; see [`start_sock_events`].
//! - kprobes on `tcp_connect`, `inet_csk_accept` (return), `udp_sendmsg`,
//!   `udpv6_sendmsg`, `ping_v4_sendmsg`, `ping_v6_sendmsg`, feeding the same
//!   ring buffer with KPROBE events (tuple and owner in one), used where the
//!   kernel can attach them; see [`probe_kprobes`], [`attach_kprobes`] and
//!   [`start_sock_events_preferring_kprobes`]. They read `struct sock` at
//!   offsets taken from the running kernel's BTF at load time
//!   ([`KernelBtf`]). Kernels without `CONFIG_KPROBES` load them (the
//!   verifier passes them) but cannot attach them: then the cgroup programs
//!   are the path, and the report says why.
//!
//! Files: this one loads the object and owns the tracepoint probe;
//! `sock_events.rs` the cgroup programs and the ring-buffer reader; `btf.rs`
//! the kernel's struct offsets; `kprobes.rs` the kprobe path.
//!
//! When flowtop was built without the eBPF toolchain (`cfg(flowtop_no_ebpf)`,
//! see `build.rs`), or loading/attaching fails (not root, lockdown, no
//! tracefs ...), the status says `available: false` with a human reason.

// Without the object the loading code is only reached by the unit tests.
#![cfg_attr(flowtop_no_ebpf, allow(dead_code))]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use flowtop_common::{
    SockEvent, SockOffsets, StateCounter, GLOBAL_SOCK_OFFSETS, KPROBE_PROGRAMS, MAP_KPROBE_SEEN,
    MAP_SOCK_EVENTS, MAP_SOCK_EVENTS_LOST, MAP_SOCK_SEEN, MAP_STATE_COUNTS, OFFSET_ABSENT,
    PROG_INET_SOCK_SET_STATE, PROG_SOCK_CREATE, PROG_SOCK_EGRESS, STATE_SLOTS, TRACEPOINT_CATEGORY,
    TRACEPOINT_NAME,
};

/// Mode string when the eBPF programs are attached.
pub const MODE_EBPF: &str = "ebpf";
/// Mode string when flowtop runs without eBPF attribution.
pub const MODE_UNAVAILABLE: &str = "unavailable";

/// What [`probe`] / [`attach`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EbpfStatus {
    /// True when every program is loaded and attached.
    pub available: bool,
    /// [`MODE_EBPF`] or [`MODE_UNAVAILABLE`].
    pub mode: &'static str,
    /// Attached programs, as `type/category/name` (empty when unavailable).
    pub programs: Vec<String>,
    /// Why eBPF is unavailable (None when available).
    pub reason: Option<String>,
}

impl EbpfStatus {
    fn attached(programs: Vec<String>) -> Self {
        Self {
            available: true,
            mode: MODE_EBPF,
            programs,
            reason: None,
        }
    }

    fn unavailable(reason: String) -> Self {
        Self {
            available: false,
            mode: MODE_UNAVAILABLE,
            programs: Vec::new(),
            reason: Some(reason),
        }
    }
}

/// Loaded and attached eBPF programs. They stay attached as long as this
/// value lives; dropping it detaches them and frees the maps.
#[derive(Debug)]
pub struct EbpfAttachment {
    ebpf: aya::Ebpf,
    programs: Vec<String>,
}

impl EbpfAttachment {
    /// Attached programs, as `type/category/name`.
    pub fn programs(&self) -> &[String] {
        &self.programs
    }

    /// Socket state transitions seen since attaching, summed over CPUs.
    /// Index = new TCP state number (1 = ESTABLISHED .. 12 = NEW_SYN_RECV,
    /// see `flowtop_common::tcp_state`); index 0 collects unknown states.
    pub fn state_counts(&self) -> Result<Vec<StateCounter>, String> {
        let map = self
            .ebpf
            .map(MAP_STATE_COUNTS)
            .ok_or_else(|| format!("eBPF object has no map {MAP_STATE_COUNTS}"))?;
        let array = aya::maps::PerCpuArray::<_, StateCounter>::try_from(map)
            .map_err(|e| format!("map {MAP_STATE_COUNTS} has an unexpected type: {e:?}"))?;
        (0..STATE_SLOTS)
            .map(|slot| {
                let per_cpu = array
                    .get(&slot, 0)
                    .map_err(|e| format!("reading {MAP_STATE_COUNTS}[{slot}] failed: {e:?}"))?;
                Ok(per_cpu
                    .iter()
                    .fold(StateCounter::default(), |acc, c| acc.merge(*c)))
            })
            .collect()
    }
}

/// The eBPF object produced by `build.rs` (aya-build), embedded 8-byte aligned.
#[cfg(not(flowtop_no_ebpf))]
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowtop-ebpf"));

/// Why this binary has no eBPF object (set by `build.rs`).
#[cfg(flowtop_no_ebpf)]
const NO_OBJECT_REASON: &str = env!("FLOWTOP_NO_EBPF_REASON");

/// Loads and attaches the eBPF programs once per process and keeps them
/// attached until the process exits. Later calls return the first result.
pub fn probe() -> EbpfStatus {
    static PROBED: OnceLock<Mutex<(EbpfStatus, Option<EbpfAttachment>)>> = OnceLock::new();
    let probed = PROBED.get_or_init(|| Mutex::new(attach()));
    probed.lock().unwrap_or_else(PoisonError::into_inner).0.clone()
}

/// Loads and attaches the eBPF programs; the returned attachment (present
/// exactly when the status is available) keeps them attached.
pub fn attach() -> (EbpfStatus, Option<EbpfAttachment>) {
    #[cfg(flowtop_no_ebpf)]
    {
        (EbpfStatus::unavailable(NO_OBJECT_REASON.to_owned()), None)
    }
    #[cfg(not(flowtop_no_ebpf))]
    {
        attach_object(OBJECT)
    }
}

/// [`attach`] for a given object file image.
fn attach_object(object: &[u8]) -> (EbpfStatus, Option<EbpfAttachment>) {
    match load_and_attach(object) {
        Ok(attachment) => (
            EbpfStatus::attached(attachment.programs.clone()),
            Some(attachment),
        ),
        Err(reason) => (EbpfStatus::unavailable(with_privilege_hint(reason)), None),
    }
}

fn load_and_attach(object: &[u8]) -> Result<EbpfAttachment, String> {
    // Quietly first: a verifier log buffer costs ~16 MB of peak memory. Only
    // when the kernel refuses is the load repeated with the log, so that the
    // reason carries the verifier's explanation.
    match load_and_attach_with(object, aya::VerifierLogLevel::DISABLE) {
        Ok(attachment) => Ok(attachment),
        Err(_) => load_and_attach_with(object, aya::VerifierLogLevel::default()),
    }
}

/// Which programs of the object a load is for: the maps only the other
/// programs use are created at their smallest size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoadFor {
    StateCounts,
    SockEvents,
}

/// Parses the object and creates its maps (programs are loaded separately).
fn load_object(object: &[u8], log: aya::VerifierLogLevel, purpose: LoadFor) -> Result<aya::Ebpf, String> {
    // No kernel BTF: the programs read a tracepoint record, whose layout is
    // stable, and UAPI context structs the kernel rewrites itself; they have
    // no CO-RE relocations, and parsing vmlinux BTF would cost ~0.3 s and
    // ~36 MB of peak memory for nothing.
    let mut loader = aya::EbpfLoader::new();
    loader.btf(None).verifier_log_level(log);
    // The kprobes' dedupe map is only used when they are attached (see
    // attach_kprobes, which loads its own copy of the object).
    loader.map_max_entries(MAP_KPROBE_SEEN, 64);
    if purpose == LoadFor::StateCounts {
        // Every map of the object is created: keep the socket-event maps
        // (1 MiB ring buffer, 64 Ki-entry LRU) at a token size.
        loader
            .map_max_entries(MAP_SOCK_EVENTS, page_size())
            .map_max_entries(MAP_SOCK_SEEN, 64);
    }
    // aya's Display of these errors hides the cause (errno, verifier log,
    // missing file): keep the Debug form in the reason.
    loader
        .load(object)
        .map_err(|e| format!("loading the eBPF object failed: {e:?}"))
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
}

fn load_and_attach_with(object: &[u8], log: aya::VerifierLogLevel) -> Result<EbpfAttachment, String> {
    use aya::programs::TracePoint;

    let mut ebpf = load_object(object, log, LoadFor::StateCounts)?;
    let program: &mut TracePoint = ebpf
        .program_mut(PROG_INET_SOCK_SET_STATE)
        .ok_or_else(|| format!("the eBPF object has no program {PROG_INET_SOCK_SET_STATE}"))?
        .try_into()
        .map_err(|e| format!("{PROG_INET_SOCK_SET_STATE} is not a tracepoint program: {e:?}"))?;
    program
        .load()
        .map_err(|e| format!("loading program {PROG_INET_SOCK_SET_STATE} failed: {e:?}"))?;
    let mounted_here = ensure_tracefs()?;
    let attached = program.attach(TRACEPOINT_CATEGORY, TRACEPOINT_NAME);
    // The attachment holds a perf event fd; tracefs was only needed to look
    // up the tracepoint id, so a mount flowtop made is undone at once.
    if mounted_here {
        unmount_tracefs();
    }
    attached.map_err(|e| {
        format!("attaching to tracepoint {TRACEPOINT_CATEGORY}/{TRACEPOINT_NAME} failed: {e:?}")
    })?;
    let programs = vec![format!("tracepoint/{TRACEPOINT_CATEGORY}/{TRACEPOINT_NAME}")];
    Ok(EbpfAttachment { ebpf, programs })
}

fn with_privilege_hint(reason: String) -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        reason
    } else {
        format!("{reason} (not running as root: loading eBPF needs root or CAP_BPF+CAP_PERFMON)")
    }
}

mod btf;
mod kprobes;
mod sock_events;
#[cfg(test)]
mod tests;

pub use btf::*;
pub use kprobes::*;
pub use sock_events::*;
