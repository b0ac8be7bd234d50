//! The conntrack sources: one thread reading live events, one running dumps
//! on request. Both decode in their own thread and hand owned flows to
//! their consumer through one bounded channel, in batches (one per
//! datagram), as [`CtMsg`]s wrapped in the consumer's message type.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread;

use tokio::sync::mpsc;

use super::decode::{self, CtEventKind, Message, AF_INET, AF_INET6};
use super::socket::{CtSocket, SocketError};
use crate::flow::model::LookupKey;
use crate::flow::{Flow, Selection};

/// Largest kernel receive buffer flowtop grows the event socket to.
pub const MAX_RCVBUF: usize = 1 << 30;

/// What the conntrack sources report. Their consumer (the engine) wraps it
/// in its own inbox type (`M: From<CtMsg>`), so that sources know nothing
/// of the other messages it takes.
#[derive(Debug)]
pub enum CtMsg {
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
    /// A message could not be decoded (skipped, counted).
    Malformed(String),
    /// The source cannot go on.
    Fatal(String),
}

/// Debug builds only: panics here when `FLOWTOP_TEST_PANIC` names this
/// point, so that a test can check that a panic in any thread restores the
/// kernel settings.
#[inline]
pub fn test_panic_point(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("FLOWTOP_TEST_PANIC").is_some_and(|v| v == point) {
        panic!("FLOWTOP_TEST_PANIC={point}: test panic");
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}

/// Starts the event reader on an already subscribed socket.
pub fn spawn_events<M: From<CtMsg> + Send + 'static>(
    mut sock: CtSocket,
    sel: Selection,
    tx: mpsc::Sender<M>,
) -> io::Result<thread::JoinHandle<()>> {
    let send = move |msg: CtMsg| tx.blocking_send(M::from(msg)).is_ok();
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
                        if !send(CtMsg::Malformed(e)) {
                            return;
                        }
                    }
                    if batch.is_empty() {
                        continue;
                    }
                    CtMsg::Events(batch)
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    let current = sock.kernel_rcvbuf().unwrap_or(0);
                    let grown = sock
                        .set_kernel_rcvbuf((current * 2).clamp(1 << 16, MAX_RCVBUF))
                        .unwrap_or(current);
                    CtMsg::Overrun { rcvbuf: grown }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => CtMsg::Fatal(format!("reading conntrack events: {e}")),
            };
            let fatal = matches!(msg, CtMsg::Fatal(_));
            if !send(msg) || fatal {
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
    Refresh(Vec<LookupKey>),
}

/// Receive buffer asked for the dump socket (see [`run_refresh`]).
pub const REFRESH_RCVBUF: usize = 4 << 20;

/// Starts the dump thread; it dumps or refreshes once per request received.
pub fn spawn_dumper<M: From<CtMsg> + Send + 'static>(
    mut sock: CtSocket,
    sel: Selection,
    requests: std_mpsc::Receiver<DumpRequest>,
    tx: mpsc::Sender<M>,
) -> io::Result<thread::JoinHandle<()>> {
    let send = move |msg: CtMsg| tx.blocking_send(M::from(msg)).is_ok();
    thread::Builder::new().name("ct-dump".into()).spawn(move || {
        let mut seq = 0u32;
        let mut refresher = Refresher::new(&sock);
        while let Ok(req) = requests.recv() {
            seq = seq.wrapping_add(1);
            let gen = match req {
                DumpRequest::Dump { gen } => gen,
                DumpRequest::Refresh(flows) => {
                    let summary = refresher.run(&mut sock, &sel, &flows, seq, |found| {
                        send(CtMsg::Refreshed(found))
                    });
                    // None: the engine is gone.
                    let Some(summary) = summary else { return };
                    if !send(CtMsg::RefreshDone(summary)) {
                        return;
                    }
                    continue;
                }
            };
            test_panic_point("dump");
            let result = run_dump(&mut sock, &sel, seq, |flows| {
                send(CtMsg::DumpChunk { gen, flows })
            });
            let msg = match result {
                Ok(Some(summary)) => {
                    if let Some(e) = summary.first_error {
                        let _ = send(CtMsg::Malformed(e));
                    }
                    CtMsg::DumpDone {
                        gen,
                        total: summary.total,
                    }
                }
                Ok(None) => return, // the engine is gone
                Err(e) => CtMsg::DumpFailed {
                    gen,
                    error: e.to_string(),
                },
            };
            if !send(msg) {
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
        flows: &[LookupKey],
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

/// The kernel-side filters of one full dump: one dump per selected
/// family and protocol when that makes few dumps (`-4U`, `-T`, `-TU`...:
/// the kernel then skips entries of other protocols before marshalling
/// them, and its filter needs a family), else one dump of everything
/// (`None`), the selection being applied while decoding.
pub fn kernel_filters(sel: &Selection) -> Vec<(u8, Option<u8>, Selection)> {
    const MAX_FILTERED_DUMPS: usize = 4;
    let protos: Vec<u8> = (0..=255u8).filter(|&p| sel.proto(p)).collect();
    let families: Vec<(u8, bool, bool)> = [(AF_INET, true, false), (AF_INET6, false, true)]
        .into_iter()
        .filter(|&(_, v4, _)| if v4 { sel.ipv4 } else { sel.ipv6 })
        .collect();
    let parts = protos.len() * families.len();
    if parts == 0 || parts > MAX_FILTERED_DUMPS || KERNEL_FILTER_REFUSED.load(Ordering::Relaxed) {
        return vec![(sel.dump_family(), None, sel.clone())];
    }
    let mut out = Vec::with_capacity(parts);
    for &(family, v4, v6) in &families {
        for &p in &protos {
            // Each part keeps only its own family and protocol: a kernel
            // without CTA_FILTER sends everything to each, and no entry
            // may be taken twice.
            let mut part = Selection::none();
            part.ipv4 = v4;
            part.ipv6 = v6;
            out.push((family, Some(p), part.with_proto(p)));
        }
    }
    out
}

/// Set when the kernel refused a filtered dump: every later dump is
/// unfiltered (and filtered while decoding, as before Linux 5.8).
static KERNEL_FILTER_REFUSED: AtomicBool = AtomicBool::new(false);

/// Runs one full dump on `sock` (one kernel dump per filter of
/// [`kernel_filters`]), handing each datagram's selected flows to
/// `on_chunk`; stops early (returning `None`) when `on_chunk` returns false.
pub fn run_dump(
    sock: &mut CtSocket,
    sel: &Selection,
    seq: u32,
    mut on_chunk: impl FnMut(Vec<Flow>) -> bool,
) -> Result<Option<DumpSummary>, SocketError> {
    let mut summary = DumpSummary::default();
    let mut request = Vec::new();
    let mut parts = kernel_filters(sel);
    let mut i = 0;
    while i < parts.len() {
        let (family, proto, part) = &parts[i];
        request.clear();
        super::request::append_dump(&mut request, *family, *proto, seq);
        sock.send_requests(&request)
            .map_err(|e| SocketError::io("requesting a conntrack dump", e))?;
        match receive_dump(sock, part, &mut summary, &mut on_chunk) {
            Ok(true) => i += 1,
            Ok(false) => return Ok(None),
            // Refused before sending anything: start over without filters.
            Err(SocketError::Io { source, .. })
                if proto.is_some()
                    && i == 0
                    && matches!(source.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) =>
            {
                KERNEL_FILTER_REFUSED.store(true, Ordering::Relaxed);
                parts = kernel_filters(sel);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Some(summary))
}

/// Reads one kernel dump to its end; false when `on_chunk` said stop.
fn receive_dump(
    sock: &mut CtSocket,
    sel: &Selection,
    summary: &mut DumpSummary,
    on_chunk: &mut impl FnMut(Vec<Flow>) -> bool,
) -> Result<bool, SocketError> {
    const WHAT: &str = "dumping the conntrack table";
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
            return Ok(false);
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
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::model::proto;

    #[test]
    fn few_protocols_are_filtered_in_the_kernel_each_on_its_own() {
        let mut sel = Selection::none().with_proto(proto::TCP).with_proto(proto::UDP);
        sel.ipv4 = true;
        let parts = kernel_filters(&sel);
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].0, parts[0].1), (AF_INET, Some(proto::TCP)));
        assert!(parts[0].2.proto(proto::TCP) && !parts[0].2.proto(proto::UDP));
        assert!(parts[0].2.ipv4 && !parts[0].2.ipv6);
        assert_eq!((parts[1].0, parts[1].1), (AF_INET, Some(proto::UDP)));
        assert!(parts[1].2.proto(proto::UDP) && !parts[1].2.proto(proto::TCP));

        // Both families: the kernel's filter needs one, so one dump each.
        sel.ipv6 = true;
        let parts = kernel_filters(&sel);
        let keys: Vec<(u8, Option<u8>)> = parts.iter().map(|p| (p.0, p.1)).collect();
        assert_eq!(
            keys,
            vec![
                (AF_INET, Some(proto::TCP)),
                (AF_INET, Some(proto::UDP)),
                (AF_INET6, Some(proto::TCP)),
                (AF_INET6, Some(proto::UDP))
            ]
        );
        assert!(parts[3].2.ipv6 && !parts[3].2.ipv4);
    }

    #[test]
    fn many_protocols_are_one_unfiltered_dump() {
        let sel = Selection::everything();
        let parts = kernel_filters(&sel);
        assert_eq!(parts.len(), 1);
        assert_eq!((parts[0].0, parts[0].1), (0, None));
        assert_eq!(parts[0].2, sel);
    }
}
