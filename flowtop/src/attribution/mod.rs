//! Process attribution: which process owns a flow's local socket.
//!
//! Two sources: periodic /proc scans ([`procfs`], folded into a
//! [`index::SocketIndex`]) and the sockets the eBPF programs report
//! ([`ebpf_owners`]). [`join::OwnerJoin`] answers "who owns this flow" from
//! both; the engine asks it when a flow appears and again when new sockets
//! arrive, until the flow is attributed (then the owner sticks, so a
//! process that exited stays known).
//!
//! What an owner is (executable, arguments, parent) comes from
//! [`processes::ProcessBook`] in eBPF mode (recorded at exec, so known for
//! processes that already exited) and from /proc otherwise;
//! [`exe_hash`] fills in the executable's SHA-256 in the background.

pub mod ebpf_owners;
pub mod exe_hash;
pub mod identity;
pub mod index;
pub mod join;
pub mod netns;
pub mod processes;
pub mod procfs;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

// The owner is data of the flow model (an entry keeps it); found here.
pub use crate::flow::model::{How, Owner};

/// The attribution mode (`--attribution`). The variants carry no doc
/// comments on purpose: clap would turn them into a long help that differs
/// from `-h`; the flag's own help describes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    // The best available: eBPF when built and attachable, else /proc.
    Auto,
    // eBPF only: fails when the programs do not load.
    Ebpf,
    // Periodic /proc scans.
    Procfs,
    // No attribution.
    Off,
}

/// The attribution a run uses (the meta line's `attribution`, the header's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Active {
    /// eBPF socket events, with /proc scans for older sockets and listeners.
    Ebpf,
    /// /proc scans only.
    Procfs,
    /// No attribution.
    Off,
}

impl Active {
    /// The name the outputs use ("ebpf", "procfs", "off").
    pub fn name(self) -> &'static str {
        match self {
            Active::Ebpf => "ebpf",
            Active::Procfs => "procfs",
            Active::Off => "off",
        }
    }
}

/// The attribution in use and why (the meta line's `attribution` and
/// `attribution_reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub active: Active,
    pub reason: String,
    /// Why eBPF is not in use, when it was wanted or tried.
    pub ebpf_unavailable: Option<String>,
}

impl Decision {
    pub fn is_off(&self) -> bool {
        self.active == Active::Off
    }

    /// `--attribution off`.
    pub fn off() -> Self {
        Decision {
            active: Active::Off,
            reason: "--attribution off".into(),
            ebpf_unavailable: None,
        }
    }

    /// `--attribution procfs` on a live run.
    pub fn procfs() -> Self {
        Decision {
            active: Active::Procfs,
            reason: "--attribution procfs: periodic /proc scans".into(),
            ebpf_unavailable: None,
        }
    }

    /// `--once`: one /proc scan (eBPF only sees sockets made while it runs).
    pub fn for_once(asked: Mode) -> Self {
        match asked {
            Mode::Off => Decision::off(),
            _ => Decision {
                active: Active::Procfs,
                reason: "--once: one /proc scan (eBPF only sees sockets created while flowtop runs)".into(),
                ebpf_unavailable: None,
            },
        }
    }
}

/// Builds a fresh index from /proc and this namespace's addresses.
pub fn scan_procfs() -> index::SocketIndex {
    let scan = procfs::scan(std::path::Path::new("/proc"));
    index::SocketIndex::from_procfs(&scan, index::local_addresses())
}

/// Starts the /proc scanner: one scan per interval, each new index handed to
/// `deliver`; the thread ends when `deliver` returns false.
pub fn spawn_procfs_scanner(
    interval: Duration,
    mut deliver: impl FnMut(Arc<index::SocketIndex>) -> bool + Send + 'static,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("procfs-scan".into())
        .spawn(move || loop {
            if !deliver(Arc::new(scan_procfs())) {
                return;
            }
            thread::sleep(interval);
        })
}
