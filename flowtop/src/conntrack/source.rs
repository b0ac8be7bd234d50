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
    /// Entries re-read one by one (the hot refresh).
    Refreshed(Vec<Flow>),
    /// The hot refresh asked for is complete (or failed part way).
    RefreshDone(RefreshSummary),
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
#[derive(Debug, Clone)]
pub enum DumpRequest {
    /// A full dump, generation `gen`.
    Dump { gen: u64 },
    /// Re-read these entries, one GET each.
    Refresh(Vec<Flow>),
}

/// Receive buffer asked for the dump socket (see [`run_refresh`]).
pub const REFRESH_RCVBUF: usize = 4 << 20;

/// Starts the dump thread; it dumps or refreshes once per request received.
pub fn spawn_dumper(
    mut sock: CtSocket,
    sel: Selection,
    requests: std_mpsc::Receiver<DumpRequest>,
    tx: mpsc::Sender<SourceMsg>,
) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new().name("ct-dump".into()).spawn(move || {
        let mut seq = 0u32;
        let mut refresher = Refresher::new(&sock);
        while let Ok(req) = requests.recv() {
            seq = seq.wrapping_add(1);
            let gen = match req {
                DumpRequest::Dump { gen } => gen,
                DumpRequest::Refresh(flows) => {
                    let summary = refresher.run(&mut sock, &sel, &flows, seq, |found| {
                        tx.blocking_send(SourceMsg::Refreshed(found)).is_ok()
                    });
                    // None: the engine is gone.
                    let Some(summary) = summary else { return };
                    if tx.blocking_send(SourceMsg::RefreshDone(summary)).is_err() {
                        return;
                    }
                    continue;
                }
            };
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

/// What one hot refresh found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshSummary {
    /// GET requests sent.
    pub asked: u64,
    /// Entries the kernel sent back.
    pub found: u64,
    /// Entries the kernel no longer has (ENOENT).
    pub gone: u64,
    /// Answers that never came (the socket buffer overflowed) or other errors.
    pub lost: u64,
    /// Why the refresh stopped early, if it did.
    pub error: Option<String>,
}

/// Runs hot refreshes: GET requests by tuple, many per `sendmsg`.
///
/// The kernel handles a batch inside the `sendmsg` call, queueing each
/// answer (an skb of about 4 KiB, whatever the entry's size) on our
/// socket; what does not fit in the receive buffer is dropped and shows up
/// as ENOBUFS. So a batch is sized to the buffer, and halved after a loss.
struct Refresher {
    batch: usize,
    buf: Vec<u8>,
}

/// Kernel memory one GET answer takes in the receive buffer (truesize of
/// an `NLMSG_DEFAULT_SIZE` skb, rounded up).
const ANSWER_TRUESIZE: usize = 5 * 1024;
const MAX_BATCH: usize = 512;

impl Refresher {
    fn new(sock: &CtSocket) -> Self {
        let rcvbuf = sock.kernel_rcvbuf().unwrap_or(0);
        Refresher {
            batch: (rcvbuf / ANSWER_TRUESIZE / 2).clamp(8, MAX_BATCH),
            buf: Vec::new(),
        }
    }

    /// Asks for every flow of `flows`, handing what comes back to
    /// `on_found` per batch; None when `on_found` says the engine is gone.
    fn run(
        &mut self,
        sock: &mut CtSocket,
        sel: &Selection,
        flows: &[Flow],
        seq: u32,
        mut on_found: impl FnMut(Vec<Flow>) -> bool,
    ) -> Option<RefreshSummary> {
        let mut summary = RefreshSummary::default();
        let mut rest = flows;
        while !rest.is_empty() {
            let (batch, later) = rest.split_at(self.batch.min(rest.len()));
            rest = later;
            self.buf.clear();
            let mut asked = 0u64;
            for f in batch {
                asked += u64::from(super::request::append_get(&mut self.buf, f, seq));
            }
            if asked == 0 {
                continue;
            }
            summary.asked += asked;
            if let Err(e) = sock.send_requests(&self.buf) {
                summary.lost += asked;
                summary.error = Some(format!("asking for conntrack entries: {e}"));
                break;
            }
            let mut found = Vec::with_capacity(batch.len());
            let (mut answered, mut overflowed) = (0u64, false);
            loop {
                let datagram = match sock.try_recv() {
                    Ok(Some(d)) => d,
                    Ok(None) => break,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        overflowed = true;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        summary.error = Some(format!("reading conntrack entries: {e}"));
                        break;
                    }
                };
                decode::for_each_message(datagram, sel, |m| match m {
                    Ok(Message::Flow(CtEventKind::Destroy, _)) => {}
                    Ok(Message::Flow(_, flow)) => {
                        answered += 1;
                        found.push(flow);
                    }
                    // Asked for, but not selected: cannot happen (only
                    // selected flows are in the table); still an answer.
                    Ok(Message::Filtered) => answered += 1,
                    Ok(Message::Error(code)) if code == -libc::ENOENT => {
                        answered += 1;
                        summary.gone += 1;
                    }
                    Ok(Message::Error(_)) | Err(_) => answered += 1,
                    Ok(_) => {}
                });
            }
            summary.found += found.len() as u64;
            summary.lost += asked.saturating_sub(answered);
            if overflowed || answered < asked {
                self.batch = (self.batch / 2).max(8);
            }
            if !found.is_empty() && !on_found(found) {
                return None;
            }
            if summary.error.is_some() {
                break;
            }
        }
        Some(summary)
    }
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
