//! The engine's inbox: everything its sources hand over, through one
//! bounded channel so that a slow engine slows its sources down.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::attribution::ebpf_owners::OwnedSocket;
use crate::attribution::index::SocketIndex;
use crate::conntrack::source::CtMsg;

/// Batches in flight between the sources and the engine.
const CHANNEL_DEPTH: usize = 256;

/// What the sources tell the engine.
#[derive(Debug)]
pub enum Inbox {
    /// Events, dump and refresh results from the conntrack sources.
    Conntrack(CtMsg),
    /// A new socket index from a /proc scan.
    Sockets(Arc<SocketIndex>),
    /// Sockets the eBPF programs saw, joined to their owners, and when
    /// the reader began draining the ring buffer for them if it emptied it
    /// (every event submitted before then is in this batch or an earlier
    /// one; None: the batch was cut at its size limit).
    EbpfSockets(Vec<OwnedSocket>, Option<std::time::Instant>),
    /// Name captures (DNS answers, first bytes of flows), each with the
    /// owner of its local socket when the eBPF events know it.
    Names(Vec<OwnedCapture>),
}

/// A name capture and the owner of the socket it was seen on.
pub type OwnedCapture = (
    crate::names::capture::NameCapture,
    Option<Arc<crate::attribution::Owner>>,
);

impl From<CtMsg> for Inbox {
    fn from(msg: CtMsg) -> Self {
        Inbox::Conntrack(msg)
    }
}

/// Both ends of the inbox.
pub type InboxChannel = (mpsc::Sender<Inbox>, mpsc::Receiver<Inbox>);

/// The inbox; made before the sources start so that sources started
/// outside the engine (eBPF) can hold a sender.
pub fn channel() -> InboxChannel {
    mpsc::channel(CHANNEL_DEPTH)
}
