//! The engine: owns the flow table, feeds it from the conntrack sources,
//! paces re-dumps and expiry, and writes what changed.
//!
//! The table has exactly one owner (this loop); sources run in their own
//! threads and hand over owned flows through one bounded channel.

use std::io::{self, Write};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant, SystemTime};

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use crate::conntrack::socket::CtSocket;
use crate::conntrack::source::{self, DumpRequest, SourceMsg};
use crate::enrich::enricher::{Enricher, OwnQueries};
use crate::flow::table::{Entry, EventKind, FlowTable, TableConfig};
use crate::flow::Selection;
use crate::output::json::{now_ts, JsonWriter};

/// Batches in flight between the sources and the engine.
const CHANNEL_DEPTH: usize = 256;

/// How often names that arrived are turned into `update` lines.
const NAMES_INTERVAL: Duration = Duration::from_millis(250);

/// How the stream run is configured.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub sel: Selection,
    pub interval: Duration,
    /// `--full-refresh`: spacing of full re-dumps (None: automatic).
    pub full_refresh: Option<Duration>,
    /// Run the /proc scanner for process attribution.
    pub procfs_attribution: bool,
}

/// Why the stream ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Signal(&'static str),
    /// The reader of our output went away (EPIPE).
    OutputClosed,
    /// The user quit the screen.
    Quit,
}

/// The table configuration for a refresh interval.
pub fn table_config(interval: Duration) -> TableConfig {
    TableConfig {
        rate_window: interval / 2,
        ..TableConfig::default()
    }
}

/// The hint printed when conntrack tracks nothing in this namespace.
pub const EMPTY_TABLE_HINT: &str = "flowtop: the conntrack table of this network namespace is empty. \
If you expected flows: conntrack only tracks a namespace once a rule uses it, e.g.:\n  \
nft add table inet flowtop; nft add chain inet flowtop in '{ type filter hook input priority 0; }'; \
nft add rule inet flowtop in ct state established,related accept\n\
or: iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT";

/// Whether the hint above applies after a dump that returned nothing: a
/// dump filtered in the kernel by protocol returns nothing when only other
/// protocols are tracked, so the namespace's entry count decides (when it
/// cannot be read, the empty dump is taken at its word).
pub fn conntrack_is_empty() -> bool {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_none_or(|n| n == 0)
}

fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// The signals that end a stream, registered before anything is changed so
/// that none of them can kill flowtop with the kernel settings changed.
pub struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
    quit: Signal,
}

impl Signals {
    /// Registers the handlers; must run inside a tokio runtime context.
    pub fn install() -> io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
            _ = self.quit.recv() => "SIGQUIT",
        }
    }
}

/// Writes table changes as JSON lines, keeping the first write error.
struct Emitter<'a, W: Write> {
    out: &'a mut JsonWriter<W>,
    ts: String,
    wall: SystemTime,
    error: Option<io::Error>,
}

impl<'a, W: Write> Emitter<'a, W> {
    fn new(out: &'a mut JsonWriter<W>) -> Self {
        let (ts, wall) = now_ts();
        Emitter {
            out,
            ts,
            wall,
            error: None,
        }
    }

    fn emit(&mut self, kind: EventKind, e: &Entry) {
        if self.error.is_none() {
            self.error = self.out.flow(kind, e, &self.ts, self.wall).err();
        }
    }

    fn finish(self) -> io::Result<()> {
        match self.error {
            Some(e) => Err(e),
            None => self.out.flush(),
        }
    }
}

/// Share of the time full re-dumps may take when their spacing is automatic.
const FULL_DUMP_SHARE: f64 = 0.1;

/// Chooses, each interval, between a full re-dump and a hot refresh.
///
/// A full dump re-reads every entry; the kernel's part alone is about 2 µs
/// per entry here, so at 100 000 entries once a second it is a fifth of a
/// core before flowtop decodes anything. Most entries of a big table are
/// idle, though, and an idle entry's counters do not change: between full
/// dumps only the hot flows (those that appeared, moved or got an event in
/// the last few intervals) are re-read, one GET each. Full dumps still come
/// regularly, because only they notice an idle flow waking up and catch
/// lost destroys: automatically spaced so that they take at most
/// [`FULL_DUMP_SHARE`] of the time (every interval on small tables), or
/// every `--full-refresh` seconds. Resyncs after overruns are never delayed.
#[derive(Debug)]
struct RefreshPacing {
    interval: Duration,
    /// `--full-refresh`: a fixed spacing instead of the automatic one.
    fixed: Option<Duration>,
    started: Option<Instant>,
    /// Start, end and cost of the last full dump.
    last: Option<(Instant, Instant, Duration)>,
}

impl RefreshPacing {
    fn new(interval: Duration, fixed: Option<Duration>) -> Self {
        RefreshPacing {
            interval,
            fixed: fixed.map(|f| f.max(interval)),
            started: None,
            last: None,
        }
    }

    fn started(&mut self, now: Instant) {
        self.started = Some(now);
    }

    fn ended(&mut self, now: Instant) {
        if let Some(t0) = self.started.take() {
            self.last = Some((t0, now, now.saturating_duration_since(t0)));
        }
    }

    /// Whether the next refresh must be a full dump.
    fn full_due(&self, now: Instant) -> bool {
        let Some((start, end, cost)) = self.last else {
            return true;
        };
        // Ticks come a little late or early: a tenth of an interval of slack
        // keeps "every interval" from becoming "every other interval".
        let slack = self.interval / 10;
        match self.fixed {
            Some(every) => now + slack >= start + every,
            None => now + slack >= end + cost.mul_f64(1.0 / FULL_DUMP_SHARE - 1.0),
        }
    }

    /// How long a flow stays hot after its last activity.
    fn hot_for(&self) -> Duration {
        (self.interval * 3).max(Duration::from_secs(3))
    }
}

/// The engine's state besides the sources.
struct Engine {
    table: FlowTable,
    dump_tx: std_mpsc::Sender<DumpRequest>,
    rcvbuf: usize,
    pacing: RefreshPacing,
    /// A hot refresh was asked for and has not ended.
    refresh_running: bool,
    /// An overrun happened while a dump ran: resync once it ends.
    resync_pending: bool,
    warned_malformed: bool,
    /// Where warnings go: stderr, or (on the screen, which stderr would
    /// garble) a list the screen shows and the caller prints at the end.
    notes: Option<Notes>,
    /// Names and geography for the flows, when enrichment is on.
    enricher: Option<Enricher>,
    own_queries: OwnQueries,
}

/// Warnings collected while the screen owns the terminal.
pub type Notes = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

impl Engine {
    fn start_dump(&mut self, resync: bool) -> anyhow::Result<()> {
        self.pacing.started(Instant::now());
        let gen = self.table.begin_dump(resync);
        self.dump_tx
            .send(DumpRequest::Dump { gen })
            .map_err(|_| anyhow::anyhow!("the dump thread stopped"))
    }

    /// Each interval: a full dump when one is due (or, with automatic
    /// spacing, when so many flows are hot that asking for them one by one
    /// would cost more), else a
    /// refresh of the hot flows, if any.
    fn start_refresh(&mut self, now: Instant) -> anyhow::Result<()> {
        if self.table.dump_running() || self.refresh_running {
            return Ok(());
        }
        if self.pacing.full_due(now) {
            return self.start_dump(false);
        }
        let Some(since) = now.checked_sub(self.pacing.hot_for()) else {
            return self.start_dump(false);
        };
        // Asking for more than half the table one by one costs more than a
        // dump (an answer costs the kernel more than a dumped entry), unless
        // the user fixed the spacing of full dumps.
        let limit = match self.pacing.fixed {
            Some(_) => usize::MAX,
            None => self.table.len() / 2,
        };
        match self.table.hot_flows(since, limit) {
            None => self.start_dump(false),
            Some(hot) if hot.is_empty() => Ok(()),
            Some(hot) => {
                self.refresh_running = true;
                self.dump_tx
                    .send(DumpRequest::Refresh(hot))
                    .map_err(|_| anyhow::anyhow!("the dump thread stopped"))
            }
        }
    }

    fn warn(&self, msg: String) {
        match &self.notes {
            Some(n) => n.lock().unwrap_or_else(|p| p.into_inner()).push(msg),
            None => eprintln!("{msg}"),
        }
    }

    /// Applies one source message, telling `sink` each change; returns
    /// whether a stats line is due.
    fn handle(
        &mut self,
        msg: SourceMsg,
        now: Instant,
        out: &mut impl FnMut(EventKind, &Entry),
    ) -> anyhow::Result<bool> {
        let table = &mut self.table;
        let enricher = &mut self.enricher;
        // A flow new to the table gets its ends looked up before its first line
        // is written, so that line carries whatever is already known.
        let mut sink = |k: EventKind, e: &Entry| {
            if let (Some(en), EventKind::New | EventKind::Snapshot) = (enricher.as_mut(), k) {
                en.see(&e.flow);
            }
            out(k, e)
        };
        match msg {
            SourceMsg::Events(batch) => {
                for (kind, flow) in batch {
                    if !self.own_queries.contains(&flow) {
                        table.apply_event(kind, flow, now, &mut sink);
                    }
                }
            }
            SourceMsg::DumpChunk { gen, flows } => {
                for flow in flows {
                    if !self.own_queries.contains(&flow) {
                        table.apply_dump_entry(gen, flow, now, &mut sink);
                    }
                }
            }
            SourceMsg::DumpDone { gen, total } => {
                test_panic_point("engine");
                table.end_dump(gen, &mut sink);
                table.stats.dumped = total;
                self.pacing.ended(now);
                self.forget_unused_addresses();
                self.initial_table_done();
                if gen == 1 && total == 0 && conntrack_is_empty() {
                    self.warn(EMPTY_TABLE_HINT.to_owned());
                }
                if self.resync_pending {
                    self.resync_pending = false;
                    self.start_dump(true)?;
                    return Ok(true);
                }
            }
            SourceMsg::DumpFailed { gen, error } => {
                table.abort_dump(gen);
                self.pacing.ended(now);
                self.initial_table_done();
                self.warn(format!(
                    "flowtop: conntrack dump failed, keeping the last table: {error}"
                ));
            }
            SourceMsg::Refreshed(flows) => {
                for flow in flows {
                    table.apply_refresh(flow, now, &mut sink);
                }
            }
            SourceMsg::RefreshDone(summary) => {
                self.refresh_running = false;
                table.stats.refreshes += 1;
                table.stats.refreshed += summary.found;
                if let Some(error) = summary.error {
                    self.warn(format!("flowtop: refreshing active flows: {error}"));
                }
            }
            SourceMsg::Overrun { rcvbuf } => {
                // Events were lost: the table can be trusted again only after a
                // full dump that starts after the loss.
                table.stats.overruns += 1;
                self.rcvbuf = rcvbuf;
                if table.dump_running() {
                    self.resync_pending = true;
                } else {
                    self.start_dump(true)?;
                }
                return Ok(true);
            }
            SourceMsg::Sockets(index) => table.set_index(index, &mut sink),
            SourceMsg::EbpfSockets(sockets) => table.add_sockets(sockets, &mut sink),
            SourceMsg::Malformed(reason) => {
                table.stats.malformed += 1;
                if !self.warned_malformed {
                    self.warned_malformed = true;
                    self.warn(format!(
                        "flowtop: skipped a malformed conntrack message ({reason}); further ones are only counted"
                    ));
                }
            }
            SourceMsg::Fatal(reason) => anyhow::bail!("{reason}"),
        }
        Ok(false)
    }

    /// Reverse lookups wait for the initial table (see
    /// `Enricher::defer_names`); once it is in, every address is asked.
    fn initial_table_done(&mut self) {
        if let Some(en) = &mut self.enricher {
            en.ask_deferred();
        }
    }

    /// Keeps the address book to the addresses the table uses (names stay
    /// in the resolver's cache), once it holds many more.
    fn forget_unused_addresses(&self) {
        let Some(en) = &self.enricher else { return };
        let book = en.book();
        if book.len() <= 2 * self.table.len() + 4096 {
            return;
        }
        let used: std::collections::HashSet<std::net::IpAddr, foldhash::fast::RandomState> = self
            .table
            .iter()
            .flat_map(|e| [e.flow.orig.src, e.flow.orig.dst])
            .collect();
        book.retain(|ip| used.contains(ip));
    }

    /// Names that arrived since the last call: an `update` line for each
    /// flow using one of those addresses, so a consumer of the stream learns
    /// the name without waiting for the flow to change.
    /// While the initial dump runs, names wait: the table comes first (its
    /// lines carry the names known by then), and one pass after it sends
    /// the rest.
    fn names_arrived<W: Write>(&mut self, em: &mut Emitter<'_, W>) {
        let Some(en) = &self.enricher else { return };
        if self.table.dump_running() && self.table.stats.dumps <= 1 {
            return;
        }
        let ips = en.arrived().take();
        if ips.is_empty() {
            return;
        }
        let ips: std::collections::HashSet<std::net::IpAddr, foldhash::fast::RandomState> =
            ips.into_iter().collect();
        for e in self.table.iter() {
            if ips.contains(&e.flow.orig.src) || ips.contains(&e.flow.orig.dst) {
                em.emit(EventKind::Update, e);
            }
        }
    }

    /// Once per interval: expire timed-out entries, start a re-dump.
    fn tick(&mut self, now: Instant, sink: &mut impl FnMut(EventKind, &Entry)) -> anyhow::Result<()> {
        let notices = match &mut self.enricher {
            Some(en) => {
                en.retry_pending();
                en.refresh_geo()
            }
            None => Vec::new(),
        };
        for notice in notices {
            self.warn(format!("flowtop: {notice}"));
        }
        self.table.expire(now, sink);
        self.start_refresh(now)
    }
}

/// Debug builds only: panics here when `FLOWTOP_TEST_PANIC` names this
/// point, so that a test can check that a panic restores the kernel settings.
#[inline]
pub(crate) fn test_panic_point(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("FLOWTOP_TEST_PANIC").is_some_and(|v| v == point) {
        panic!("FLOWTOP_TEST_PANIC={point}: test panic");
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}

/// The channel every source sends on; made before the sources start so
/// that sources started outside the engine (eBPF) can hold a sender.
pub fn channel() -> (mpsc::Sender<SourceMsg>, mpsc::Receiver<SourceMsg>) {
    mpsc::channel(CHANNEL_DEPTH)
}

impl Engine {
    /// Starts the sources and the first dump.
    fn start(
        cfg: &StreamConfig,
        events: CtSocket,
        dumper: CtSocket,
        tx: mpsc::Sender<SourceMsg>,
        enricher: Option<Enricher>,
        notes: Option<Notes>,
    ) -> anyhow::Result<Engine> {
        let (dump_tx, dump_rx) = std_mpsc::channel::<DumpRequest>();
        let rcvbuf = events.kernel_rcvbuf().unwrap_or(0);
        source::spawn_events(events, cfg.sel.clone(), tx.clone())?;
        if cfg.procfs_attribution {
            let tx = tx.clone();
            crate::attribution::spawn_procfs_scanner(cfg.interval, move |index| {
                tx.blocking_send(SourceMsg::Sockets(index)).is_ok()
            })?;
        }
        source::spawn_dumper(dumper, cfg.sel.clone(), dump_rx, tx)?;
        let mut enricher = enricher;
        if let Some(en) = &mut enricher {
            en.defer_names();
        }
        let mut engine = Engine {
            table: FlowTable::new(table_config(cfg.interval)),
            dump_tx,
            rcvbuf,
            pacing: RefreshPacing::new(cfg.interval, cfg.full_refresh),
            refresh_running: false,
            resync_pending: false,
            warned_malformed: false,
            own_queries: enricher.as_ref().map(Enricher::own_queries).unwrap_or_default(),
            enricher,
            notes,
        };
        engine.start_dump(false)?;
        Ok(engine)
    }
}

/// Streams flow events as JSON lines until a signal or a fatal error. The
/// caller has printed the meta line.
pub async fn run_stream<W: Write>(
    cfg: StreamConfig,
    events: CtSocket,
    dumper: CtSocket,
    mut signals: Signals,
    (tx, mut rx): (mpsc::Sender<SourceMsg>, mpsc::Receiver<SourceMsg>),
    enricher: Option<Enricher>,
    out: &mut JsonWriter<W>,
) -> anyhow::Result<Stop> {
    let mut engine = Engine::start(&cfg, events, dumper, tx, enricher, None)?;
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick fires at once; the initial dump is already asked for
                       // Names are gathered a few times a second: one pass over the table per
                       // batch of answers rather than one per answer.
    let mut names_tick = tokio::time::interval(NAMES_INTERVAL);
    names_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // `kill -USR1` asks for a stats line (dumps, hot refreshes, overruns...).
    let mut usr1 = signal(SignalKind::user_defined1())?;

    loop {
        let written = tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else {
                    anyhow::bail!("the conntrack sources stopped");
                };
                // Time is taken when the message is handled, not when waiting began.
                let mut em = Emitter::new(out);
                let stats_due = engine.handle(msg, Instant::now(), &mut |k, e| em.emit(k, e))?;
                if stats_due && em.error.is_none() {
                    let t = &engine.table;
                    em.error = em.out.stats(&em.ts, t.len(), &t.stats, engine.rcvbuf).err();
                }
                em.finish()
            }
            _ = tick.tick() => {
                // Nothing may be written for a long time on a quiet table:
                // notice a reader that went away without waiting for a write.
                if stdout_reader_gone() {
                    return Ok(Stop::OutputClosed);
                }
                let mut em = Emitter::new(out);
                engine.tick(Instant::now(), &mut |k, e| em.emit(k, e))?;
                em.finish()
            }
            _ = names_tick.tick(), if engine.enricher.as_ref().is_some_and(Enricher::dns_on) => {
                let mut em = Emitter::new(out);
                engine.names_arrived(&mut em);
                em.finish()
            }
            _ = usr1.recv() => {
                let t = &engine.table;
                out.stats(&now_ts().0, t.len(), &t.stats, engine.rcvbuf).and_then(|()| out.flush())
            }
            name = signals.recv() => return finish(out, Stop::Signal(name)),
        };
        match written {
            Ok(()) => {}
            Err(e) if is_broken_pipe(&e) => return Ok(Stop::OutputClosed),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether stdout is a pipe or socket whose reader has gone (poll reports
/// POLLERR/POLLHUP for it). A terminal or a file never counts as gone here.
fn stdout_reader_gone() -> bool {
    let mut pfd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    rc > 0 && pfd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

fn finish<W: Write>(out: &mut JsonWriter<W>, stop: Stop) -> anyhow::Result<Stop> {
    match out.flush() {
        Err(e) if !is_broken_pipe(&e) => Err(e.into()),
        _ => Ok(stop),
    }
}

/// Where the screen engine publishes: a snapshot of the table once per
/// interval and right after the first dump, and the warnings.
pub struct ScreenSink {
    pub snapshots: tokio::sync::watch::Sender<std::sync::Arc<crate::flow::table::Snapshot>>,
    pub notes: Notes,
    /// Changes (or closes) when the user quits the screen.
    pub quit: tokio::sync::watch::Receiver<bool>,
}

impl ScreenSink {
    /// Publishes a snapshot of `table`, after the one published last (the
    /// channel holds it): shared chunks, and counts reused when unchanged.
    fn publish(&self, table: &FlowTable) {
        // Made before the send: the channel's lock is not held while sending.
        let snap = table.snapshot_after(&self.snapshots.borrow());
        self.snapshots.send_replace(snap);
    }
}

/// Feeds the table for the screen until a signal, the user quitting or a
/// fatal error. Rows are not written per change: the screen draws from the
/// snapshots, and dropping the snapshot sender on return tells it the run
/// is over.
pub async fn run_screen(
    cfg: StreamConfig,
    events: CtSocket,
    dumper: CtSocket,
    mut signals: Signals,
    (tx, mut rx): (mpsc::Sender<SourceMsg>, mpsc::Receiver<SourceMsg>),
    enricher: Option<Enricher>,
    mut sink: ScreenSink,
) -> anyhow::Result<Stop> {
    let mut engine = Engine::start(&cfg, events, dumper, tx, enricher, Some(sink.notes.clone()))?;
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut ignore = |_: EventKind, _: &Entry| {};
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else {
                    anyhow::bail!("the conntrack sources stopped");
                };
                let first_dump_done = matches!(msg, SourceMsg::DumpDone { gen: 1, .. });
                engine.handle(msg, Instant::now(), &mut ignore)?;
                if first_dump_done {
                    sink.publish(&engine.table);
                }
            }
            _ = tick.tick() => {
                engine.tick(Instant::now(), &mut ignore)?;
                // The screen reads names from the address book as it draws:
                // the list of addresses whose name arrived is not needed.
                if let Some(en) = &engine.enricher {
                    en.arrived().take();
                }
                sink.publish(&engine.table);
            }
            // Either a change or the screen going away (its sender dropped).
            _ = sink.quit.changed() => return Ok(Stop::Quit),
            name = signals.recv() => return Ok(Stop::Signal(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_dumps_every_interval_on_small_tables() {
        let t0 = Instant::now();
        let mut p = RefreshPacing::new(Duration::from_secs(1), None);
        assert!(p.full_due(t0), "the first refresh is a full dump");
        p.started(t0);
        p.ended(t0 + Duration::from_millis(20)); // 10 000 entries
        assert!(p.full_due(t0 + Duration::from_secs(1)));
        // Ticks a little early still count.
        assert!(p.full_due(t0 + Duration::from_millis(950)));
    }

    #[test]
    fn full_dumps_take_at_most_a_tenth_of_the_time() {
        let t0 = Instant::now();
        let mut p = RefreshPacing::new(Duration::from_secs(1), None);
        p.started(t0);
        p.ended(t0 + Duration::from_millis(400)); // a big table
        for s in 1..=3 {
            assert!(!p.full_due(t0 + Duration::from_secs(s)), "{s} s");
        }
        // 0.4 s of dump, 3.6 s of hot refreshes: 10 %.
        assert!(p.full_due(t0 + Duration::from_secs(4)));
    }

    #[test]
    fn full_refresh_fixes_the_spacing_but_never_below_the_interval() {
        let t0 = Instant::now();
        let mut p = RefreshPacing::new(Duration::from_secs(1), Some(Duration::from_secs(10)));
        p.started(t0);
        p.ended(t0 + Duration::from_millis(5));
        assert!(!p.full_due(t0 + Duration::from_secs(9)));
        assert!(p.full_due(t0 + Duration::from_secs(10)));
        let p = RefreshPacing::new(Duration::from_secs(2), Some(Duration::from_millis(100)));
        assert_eq!(p.fixed, Some(Duration::from_secs(2)));
        assert_eq!(p.hot_for(), Duration::from_secs(6));
    }
}
