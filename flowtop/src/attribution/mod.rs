//! Process attribution: which process owns a flow's local socket.
//!
//! Sources feed a [`index::SocketIndex`]; the flow table asks it when a flow
//! appears and again whenever a new index arrives, until the flow is
//! attributed (then the owner sticks, so a process that exited stays known).
//! This version has the /proc source ([`procfs`]); the eBPF source comes next.

pub mod ebpf_owners;
pub mod index;
pub mod procfs;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// How an owner was found (the `attribution` JSON field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// From the eBPF programs.
    Ebpf,
    /// An accepted connection matched to its listening socket.
    Listener,
    /// From a /proc scan.
    Procfs,
}

impl How {
    pub fn name(self) -> &'static str {
        match self {
            How::Ebpf => "ebpf",
            How::Listener => "listener",
            How::Procfs => "procfs",
        }
    }
}

/// The process that owns a flow's local socket. `comm` and `exe` are stored
/// raw (any bytes a process chose); outputs escape or sanitise them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub comm: String,
    pub exe: Option<String>,
    pub uid: u32,
    pub how: How,
}

/// The attribution mode (`--attribution`). The variants carry no doc
/// comments on purpose: clap would turn them into a long help that differs
/// from `-h`; the flag's own help describes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    // The best available: eBPF when built and attachable, else /proc.
    Auto,
    // eBPF only (not built yet in this version).
    Ebpf,
    // Periodic /proc scans.
    Procfs,
    // No attribution.
    Off,
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
