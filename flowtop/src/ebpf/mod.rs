//! eBPF side of flowtop: loads the object built by `build.rs` from
//! `flowtop-ebpf` and attaches its programs.
//!
//! Programs:
//! - socket ownership events: `cgroup/sock_create` and `cgroup_skb/egress`
//!   on the cgroup2 root, feeding a ring buffer of
//!   [`SockEvent`](flowtop_common::SockEvent)s; see [`attach_sock_events`]
//!   (privileged) and [`AttachedSockEvents::start_reader`] (not).
//! - kprobes on `tcp_connect`, `inet_csk_accept` (return), `udp_sendmsg`,
//!   `udpv6_sendmsg`, `ping_v4_sendmsg`, `ping_v6_sendmsg`, feeding the same
//!   ring buffer with KPROBE events (tuple and owner in one), used where the
//!   kernel can attach them; see [`probe_kprobes`], [`attach_kprobes`] and
//!   [`attach_sock_events_preferring_kprobes`]. They read `struct sock` at
//!   offsets taken from the running kernel's BTF at load time
//!   ([`KernelBtf`]). Kernels without `CONFIG_KPROBES` load them (the
//!   verifier passes them) but cannot attach them: then the cgroup programs
//!   are the path, and the report says why.
//!
//! - name captures (issue 13, unless `--no-inspect`): `cgroup_skb/ingress`
//!   (DNS answers from port 53 to local sockets) and the egress program's
//!   capture of the first bytes of connecting TCP streams and of QUIC-like
//!   first datagrams of new UDP tuples, feeding a third ring buffer of
//!   [`NameEvent`](flowtop_common::NameEvent)s, decoded by the same reader
//!   thread into [`NameCapture`](crate::names::capture::NameCapture)s (see
//!   [`ReaderBatch`]). On the kprobe path only the ingress program runs
//!   (DNS answers); stream and datagram captures need the egress program.
//!
//! - process lifecycle: `raw_tp/sched_process_exec` and
//!   `raw_tp/sched_process_fork`, attached with either socket path, feeding a
//!   second ring buffer of exec and fork records (executable, arguments,
//!   parent) read by the same reader thread; see `exec.rs`.
//!
//! Files: this one loads the object; `sock_events.rs` the cgroup programs
//! and the ring-buffer reader; `btf.rs` the kernel's struct offsets;
//! `kprobes.rs` the kprobe path; `exec.rs` the exec/fork programs.
//!
//! When flowtop was built without the eBPF toolchain (`cfg(flowtop_no_ebpf)`,
//! see `build.rs`), or loading/attaching fails (not root, lockdown ...), the
//! callers get a human reason instead.

// Without the object the loading code is only reached by the unit tests.
#![cfg_attr(flowtop_no_ebpf, allow(dead_code))]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use flowtop_common::{
    SockEvent, SockOffsets, TaskOffsets, GLOBAL_INSPECT, GLOBAL_NAME_NETNS_COOKIE, GLOBAL_SOCK_OFFSETS,
    GLOBAL_TASK_OFFSETS, KPROBE_PROGRAMS, MAP_EXEC_EVENTS_LOST, MAP_KPROBE_SEEN, MAP_SOCK_EVENTS,
    MAP_SOCK_EVENTS_LOST, MAP_SOCK_SEEN, OFFSET_ABSENT, PROG_SOCK_CREATE, PROG_SOCK_EGRESS,
};

/// Mode string when the eBPF programs are attached.
pub const MODE_EBPF: &str = "ebpf";
/// Mode string when flowtop runs without eBPF attribution.
pub const MODE_UNAVAILABLE: &str = "unavailable";

/// Whether the socket programs run, for the meta line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EbpfStatus {
    /// True when every program is loaded and attached.
    pub available: bool,
    /// [`MODE_EBPF`] or [`MODE_UNAVAILABLE`].
    pub mode: &'static str,
    /// Attached programs, as `type/attach point` (empty when unavailable).
    pub programs: Vec<String>,
    /// Why eBPF is unavailable (None when available).
    pub reason: Option<String>,
}

/// The eBPF object produced by `build.rs` (aya-build), embedded 8-byte aligned.
#[cfg(not(flowtop_no_ebpf))]
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowtop-ebpf"));

/// Why this binary has no eBPF object (set by `build.rs`).
#[cfg(flowtop_no_ebpf)]
const NO_OBJECT_REASON: &str = env!("FLOWTOP_NO_EBPF_REASON");

/// Which programs of the object a load is for. Every map of the object is
/// created: the dedupe map only the other set uses is kept at a token size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoadFor<'a> {
    /// The cgroup programs (`sock_events.rs`).
    Cgroup,
    /// The kprobe programs, reading kernel structs at these offsets.
    Kprobes(&'a SockOffsets),
}

/// The name-capture globals of a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NameGlobals {
    /// Captures on (`GLOBAL_INSPECT`): false for `--no-inspect`.
    inspect: bool,
    /// Name events carry the netns cookie (`GLOBAL_NAME_NETNS_COOKIE`):
    /// only where the kernel lets cgroup_skb programs ask for it.
    netns_cookie: bool,
}

#[cfg(test)]
impl NameGlobals {
    const ON: Self = Self {
        inspect: true,
        netns_cookie: true,
    };
}

/// Parses the object and creates its maps (programs are loaded separately).
fn load_object(
    object: &[u8],
    log: aya::VerifierLogLevel,
    purpose: LoadFor<'_>,
    names: NameGlobals,
) -> Result<aya::Ebpf, String> {
    // No kernel BTF: the programs read UAPI context structs the kernel
    // rewrites itself, and kernel structs at offsets passed in as a global;
    // they have no CO-RE relocations, and parsing vmlinux BTF here would cost
    // ~0.3 s and ~36 MB of peak memory for nothing. (The object's own BTF is
    // still loaded: the socket-storage map needs it.)
    let mut loader = aya::EbpfLoader::new();
    let task_offsets = exec::task_offsets_for_load();
    let inspect = u8::from(names.inspect);
    let netns_cookie = u8::from(names.netns_cookie);
    loader
        .btf(None)
        .verifier_log_level(log)
        .override_global(GLOBAL_TASK_OFFSETS, &task_offsets, true)
        .override_global(GLOBAL_INSPECT, &inspect, true)
        .override_global(GLOBAL_NAME_NETNS_COOKIE, &netns_cookie, true);
    match purpose {
        LoadFor::Cgroup => loader.map_max_entries(MAP_KPROBE_SEEN, 64),
        LoadFor::Kprobes(offsets) => loader
            .override_global(GLOBAL_SOCK_OFFSETS, offsets, true)
            .map_max_entries(MAP_SOCK_SEEN, 64),
    };
    // aya's Display of these errors hides the cause (errno, verifier log,
    // missing file): keep the Debug form in the reason.
    loader
        .load(object)
        .map_err(|e| format!("loading the eBPF object failed: {e:?}"))
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
mod exec;
mod kprobes;
#[cfg(test)]
mod names_tests;
mod sock_events;
#[cfg(test)]
mod tests;

pub use btf::*;
pub use exec::{kernel_task_offsets, parse_proc_event, ProcEvent};
pub use kprobes::*;
pub use sock_events::*;
