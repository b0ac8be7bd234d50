//! The conntrack sources: one thread reading live events, one running dumps
//! on request. Both decode in their own thread and hand owned flows to the
//! engine through one bounded channel, in batches (one per datagram).

use std::io;
use std::sync::mpsc as std_mpsc;
use std::thread;

use tokio::sync::mpsc;

use super::decode::{self, CtEventKind, Message};
use super::socket::{CtSocket, SocketError};
use crate::flow::{Flow, Selection};

/// Largest kernel receive buffer flowtop grows the event socket to.
pub const MAX_RCVBUF: usize = 1 << 30;

/// What the sources tell the engine.
#[derive(Debug)]
pub enum SourceMsg {
    /// Live events from one datagram.
    Events(Vec<(CtEventKind, Flow)>),
    /// The event socket overflowed: events were lost. Carries the new buffer size.
    Overrun { rcvbuf: usize },
    /// Part of dump `gen`.
    DumpChunk { gen: u64, flows: Vec<Flow> },
    /// Dump `gen` is complete; `total` counts every entry the kernel sent,
    /// selected or not.
    DumpDone { gen: u64, total: u64 },
    /// Dump `gen` failed; the table keeps what it had.
    DumpFailed { gen: u64, error: String },
    /// A new socket index from an attribution source.
    Sockets(std::sync::Arc<crate::attribution::index::SocketIndex>),
    /// Sockets the eBPF programs saw, joined to their owners.
    EbpfSockets(Vec<crate::attribution::ebpf_owners::OwnedSocket>),
    /// A message could not be decoded (skipped, counted).
    Malformed(String),
    /// The source cannot go on.
    Fatal(String),
}

/// Starts the event reader on an already subscribed socket.
pub fn spawn_events(
    mut sock: CtSocket,
    sel: Selection,
    tx: mpsc::Sender<SourceMsg>,
) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("ct-events".into())
        .spawn(move || loop {
            let msg = match sock.recv() {
                Ok(datagram) => {
                    let mut batch = Vec::new();
                    let mut bad = None;
                    decode::for_each_message(datagram, &sel, |m| match m {
                        Ok(Message::Flow(kind, flow)) => batch.push((kind, flow)),
                        Ok(_) => {}
                        Err(e) => bad = Some(e.to_string()),
                    });
                    if let Some(e) = bad {
                        if tx.blocking_send(SourceMsg::Malformed(e)).is_err() {
                            return;
                        }
                    }
                    if batch.is_empty() {
                        continue;
                    }
                    SourceMsg::Events(batch)
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    let current = sock.kernel_rcvbuf().unwrap_or(0);
                    let grown = sock
                        .set_kernel_rcvbuf((current * 2).clamp(1 << 16, MAX_RCVBUF))
                        .unwrap_or(current);
                    SourceMsg::Overrun { rcvbuf: grown }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => SourceMsg::Fatal(format!("reading conntrack events: {e}")),
            };
            let fatal = matches!(msg, SourceMsg::Fatal(_));
            if tx.blocking_send(msg).is_err() || fatal {
                return;
            }
        })
}

/// A request for the dump thread.
#[derive(Debug, Clone, Copy)]
pub struct DumpRequest {
    pub gen: u64,
}

/// Starts the dump thread; it dumps once per request received.
pub fn spawn_dumper(
    mut sock: CtSocket,
    sel: Selection,
    requests: std_mpsc::Receiver<DumpRequest>,
    tx: mpsc::Sender<SourceMsg>,
) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new().name("ct-dump".into()).spawn(move || {
        let mut seq = 0u32;
        while let Ok(req) = requests.recv() {
            seq = seq.wrapping_add(1);
            let gen = req.gen;
            crate::engine::test_panic_point("dump");
            let result = run_dump(&mut sock, &sel, seq, |flows| {
                tx.blocking_send(SourceMsg::DumpChunk { gen, flows }).is_ok()
            });
            let msg = match result {
                Ok(Some(summary)) => {
                    if let Some(e) = summary.first_error {
                        let _ = tx.blocking_send(SourceMsg::Malformed(e));
                    }
                    SourceMsg::DumpDone {
                        gen,
                        total: summary.total,
                    }
                }
                Ok(None) => return, // the engine is gone
                Err(e) => SourceMsg::DumpFailed {
                    gen,
                    error: e.to_string(),
                },
            };
            if tx.blocking_send(msg).is_err() {
                return;
            }
        }
    })
}

/// What one dump saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpSummary {
    /// Entries the kernel sent, selected or not.
    pub total: u64,
    /// Messages that could not be decoded, and the first reason.
    pub malformed: u64,
    pub first_error: Option<String>,
}

/// Runs one dump on `sock`, handing each datagram's selected flows to
/// `on_chunk`; stops early (returning `None`) when `on_chunk` returns false.
pub fn run_dump(
    sock: &mut CtSocket,
    sel: &Selection,
    seq: u32,
    mut on_chunk: impl FnMut(Vec<Flow>) -> bool,
) -> Result<Option<DumpSummary>, SocketError> {
    const WHAT: &str = "dumping the conntrack table";
    sock.request_dump(sel.dump_family(), seq)?;
    let mut summary = DumpSummary::default();
    loop {
        let datagram = match sock.recv() {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(SocketError::Io {
                    what: WHAT,
                    source: e,
                })
            }
        };
        let mut flows = Vec::new();
        let mut done = false;
        let mut error = None;
        decode::for_each_message(datagram, sel, |m| match m {
            Ok(Message::Flow(CtEventKind::Destroy, _)) => {}
            Ok(Message::Flow(_, flow)) => {
                summary.total += 1;
                flows.push(flow);
            }
            Ok(Message::Filtered) => summary.total += 1,
            Ok(Message::Done) => done = true,
            Ok(Message::Error(code)) if code != 0 => error = Some(code),
            Ok(_) => {}
            Err(e) => {
                summary.malformed += 1;
                summary.first_error.get_or_insert_with(|| e.to_string());
            }
        });
        if !flows.is_empty() && !on_chunk(flows) {
            return Ok(None);
        }
        if let Some(code) = error {
            return Err(if code == -libc::EPERM {
                SocketError::PermissionDenied(WHAT)
            } else {
                SocketError::Io {
                    what: WHAT,
                    source: io::Error::from_raw_os_error(-code),
                }
            });
        }
        if done {
            return Ok(Some(summary));
        }
    }
}
