//! The engine: owns the flow table and its inbox, feeds the table from the
//! conntrack sources and attribution, paces re-dumps and expiry, and hands
//! what changed to the output (`stream`) or the screen (`screen`).
//!
//! The table has exactly one owner (this loop); sources run in their own
//! threads and hand over owned data through one bounded channel.

mod held;
mod inbox;
mod naming;
mod notice;
mod pacing;
mod record;
mod run;
mod screen;
mod signals;
mod stream;

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use crate::attribution::join::OwnerJoin;
use crate::conntrack::decode::CtEventKind;
use crate::conntrack::socket::CtSocket;
use crate::conntrack::source::{self, test_panic_point, CtMsg, DumpRequest};
use crate::enrich::enricher::{Enricher, OwnQueries};
use crate::flow::model::{Direction, Flow, FlowKey};
use crate::flow::table::{Change, Entry, EventKind, FlowTable, TableConfig};
use crate::flow::Selection;
use crate::names::tracker::NameTracker;

use held::{HeldDestroys, Release};
pub use inbox::{channel, Inbox, InboxChannel};
pub use notice::{Notes, Notice, EMPTY_TABLE_HINT};
use pacing::RefreshPacing;
pub use record::run_record;
pub use run::run_command;
pub use screen::{run_screen, ScreenSink};
pub use signals::Signals;
pub use stream::run_stream;

/// How the stream run is configured.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub sel: Selection,
    pub interval: Duration,
    /// `--full-refresh`: spacing of full re-dumps (None: automatic).
    pub full_refresh: Option<Duration>,
    /// Attribution is on: run the /proc scanner and join owners to flows.
    pub attribution: bool,
    /// eBPF socket events feed the inbox (a DESTROY of a flow without an
    /// owner then waits for them a moment).
    pub socket_events: bool,
}

/// What an engine runs on, made by the start-up before it: its
/// configuration, the two conntrack sockets, the signals that end it, its
/// inbox (made early so that eBPF can hold a sender), and the enrichment.
pub struct Inputs {
    pub cfg: StreamConfig,
    pub events: CtSocket,
    pub dumper: CtSocket,
    pub signals: Signals,
    pub inbox: InboxChannel,
    pub enricher: Option<Enricher>,
    /// IPFIX and metrics (none by default); the mode loops take it out
    /// before starting the engine and feed it every change.
    pub export: crate::export::Exporters,
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

/// Whether the empty-table hint applies after a dump that returned
/// nothing: a dump filtered in the kernel by protocol returns nothing when
/// only other protocols are tracked, so the namespace's entry count decides
/// (when it cannot be read, the empty dump is taken at its word).
pub fn conntrack_is_empty() -> bool {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_none_or(|n| n == 0)
}

fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// What a conntrack event means to the table.
fn change_of(kind: CtEventKind) -> Change {
    match kind {
        CtEventKind::New | CtEventKind::Update => Change::Seen,
        CtEventKind::Destroy => Change::Gone,
    }
}

/// Whether a DESTROY should wait for socket events (when eBPF feeds the
/// join): the flow is in the table without an owner and this host may have
/// initiated it, so the initiator's socket event may be in the ring buffer.
fn awaits_socket_event(table: &FlowTable, flow: &Flow) -> bool {
    table.get(flow.key()).is_some_and(|e| {
        e.owner.is_none() && matches!(e.direction, None | Some(Direction::Out) | Some(Direction::Local))
    })
}

/// The engine's state besides the sources.
struct Engine {
    table: FlowTable,
    /// Who owns each flow's socket; None with attribution off.
    owners: Option<OwnerJoin>,
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
    /// DESTROY events of flows without an owner, held for the socket
    /// events that may name them (see [`held`]).
    held_destroys: HeldDestroys,
    /// eBPF socket events feed the inbox.
    socket_events: bool,
    /// Asked-for names; None with `--no-inspect`.
    names: Option<NameTracker>,
    /// New flows that may still learn a name (see [`naming::NAME_WAIT`]): when each
    /// was first seen, oldest first.
    name_waiting: VecDeque<(Instant, FlowKey)>,
    /// When expired answers were last dropped.
    names_expired: Instant,
}

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

    fn warn(&self, notice: Notice) {
        match &self.notes {
            Some(n) => n.lock().unwrap_or_else(|p| p.into_inner()).push(notice),
            None => eprintln!("{notice}"),
        }
    }

    /// Applies one message of the inbox, telling `out` each change;
    /// returns whether a stats line is due.
    fn handle(
        &mut self,
        msg: Inbox,
        now: Instant,
        out: &mut impl FnMut(EventKind, &Entry),
    ) -> anyhow::Result<bool> {
        let msg = match msg {
            Inbox::Conntrack(msg) => msg,
            Inbox::Sockets(index) => {
                if let Some(join) = &mut self.owners {
                    let found = join.take_index(index, &self.table, now);
                    self.set_owners(found, now, out);
                }
                return Ok(false);
            }
            Inbox::EbpfSockets(sockets, drained_from) => {
                if let Some(join) = &mut self.owners {
                    let found = join.take_sockets(sockets, &self.table, now);
                    self.set_owners(found, now, out);
                }
                // The held destroys this batch's draining began after have
                // their flows' socket events in it, or in an earlier batch.
                if let Some(t) = drained_from {
                    self.release_destroys(Release::DrainedFrom(t), out);
                }
                return Ok(false);
            }
            Inbox::Names(captures) => {
                if let Some(names) = &mut self.names {
                    names.on_captures(captures, now);
                    let changes = names.take_changes();
                    if !changes.is_empty() {
                        self.rename_waiting(now, &naming::Recheck::Named(changes), out);
                    }
                }
                return Ok(false);
            }
        };
        self.release_destroys(Release::Due(now), out);
        let table = &mut self.table;
        let owners = &mut naming::Lookups {
            owners: &mut self.owners,
            names: self.names.as_ref(),
        };
        let enricher = &mut self.enricher;
        let mut waiting = self.names.is_some().then_some(&mut self.name_waiting);
        // A flow new to the table gets its ends looked up before its first line
        // is written, so that line carries whatever is already known.
        let mut sink = |k: EventKind, e: &Entry| {
            if let (Some(en), EventKind::New | EventKind::Snapshot) = (enricher.as_mut(), k) {
                en.see(&e.flow);
            }
            if let (Some(w), EventKind::New) = (waiting.as_mut(), k) {
                naming::wait_for_name(w, e, now);
            }
            out(k, e)
        };
        match msg {
            CtMsg::Events(batch) => {
                for (kind, flow) in batch {
                    if self.own_queries.contains(&flow) {
                        continue;
                    }
                    if kind == CtEventKind::Destroy && self.socket_events && awaits_socket_event(table, &flow)
                    {
                        self.held_destroys.hold(now, flow);
                        continue;
                    }
                    table.apply_event(change_of(kind), flow, now, owners, &mut sink);
                }
            }
            CtMsg::DumpChunk { gen, flows } => {
                for flow in flows {
                    if !self.own_queries.contains(&flow) {
                        table.apply_dump_entry(gen, flow, now, owners, &mut sink);
                    }
                }
            }
            CtMsg::DumpDone { gen, total } => {
                test_panic_point("engine");
                // Before the sweep, which would take a held flow for one
                // whose DESTROY was lost.
                for (at, flow) in self.held_destroys.release(Release::All) {
                    table.apply_event(Change::Gone, flow, at, owners, &mut sink);
                }
                table.end_dump(gen, &mut sink);
                // The safety net of attribution's recent-only retries: as
                // rare as full dumps.
                if let Some(join) = owners.owners {
                    table.set_owners(join.retry_all(table), &mut sink);
                }
                table.stats.dumped = total;
                self.pacing.ended(now);
                self.forget_unused_addresses();
                self.initial_table_done();
                if gen == 1 && total == 0 && conntrack_is_empty() {
                    self.warn(Notice::EmptyTable);
                }
                if self.resync_pending {
                    self.resync_pending = false;
                    self.start_dump(true)?;
                    return Ok(true);
                }
            }
            CtMsg::DumpFailed { gen, error } => {
                table.abort_dump(gen);
                self.pacing.ended(now);
                self.initial_table_done();
                self.warn(Notice::DumpFailed(error));
            }
            CtMsg::Refreshed(flows) => {
                for flow in flows {
                    table.apply_refresh(flow, now, &mut sink);
                }
            }
            CtMsg::RefreshDone(summary) => {
                self.refresh_running = false;
                table.stats.refreshes += 1;
                table.stats.refreshed += summary.found;
                if let Some(error) = summary.error {
                    self.warn(Notice::RefreshFailed(error));
                }
            }
            CtMsg::Overrun { rcvbuf } => {
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
            CtMsg::Malformed(reason) => {
                table.stats.malformed += 1;
                if !self.warned_malformed {
                    self.warned_malformed = true;
                    self.warn(Notice::Malformed(reason));
                }
            }
            CtMsg::Fatal(reason) => anyhow::bail!("{reason}"),
        }
        Ok(false)
    }

    /// Looks again at the names of the flows waiting for one (after names
    /// or owners arrived): an `update` for each whose name changed.
    fn rename_waiting(
        &mut self,
        now: Instant,
        recheck: &naming::Recheck,
        out: &mut impl FnMut(EventKind, &Entry),
    ) {
        if let Some(names) = &self.names {
            naming::rename_waiting(&mut self.table, names, &mut self.name_waiting, now, recheck, out);
        }
    }

    /// Gives flows the owners attribution found and, as a flow's own
    /// process's DNS answers now name it, their names again: one `update`
    /// per flow for both, so that no line shows the new owner with the name
    /// its flow had while the owner was unknown (a host-wide answer, maybe
    /// another program's).
    fn set_owners(
        &mut self,
        found: Vec<(FlowKey, crate::flow::model::Attributed)>,
        now: Instant,
        out: &mut impl FnMut(EventKind, &Entry),
    ) {
        let owned = self.owned_waiting(&found);
        let mut changed: Vec<FlowKey> = Vec::new();
        let mut note = |_: EventKind, e: &Entry| changed.push(e.flow.key());
        self.table.set_owners(found, &mut note);
        if let Some(owned) = owned {
            self.rename_waiting(now, &owned, &mut note);
        }
        let mut told = std::collections::HashSet::with_capacity_and_hasher(
            changed.len(),
            foldhash::fast::RandomState::default(),
        );
        for key in changed {
            if told.insert(key) {
                if let Some(e) = self.table.get(key) {
                    out(EventKind::Update, e);
                }
            }
        }
    }

    /// The flows attribution just found owners for, to look at their names
    /// again; None when there is nothing to do.
    fn owned_waiting(&self, found: &[(FlowKey, crate::flow::model::Attributed)]) -> Option<naming::Recheck> {
        if self.names.is_none() || self.name_waiting.is_empty() || found.is_empty() {
            return None;
        }
        Some(naming::Recheck::Owned(found.iter().map(|(k, _)| *k).collect()))
    }

    /// Applies the held destroys that `release` lets go.
    fn release_destroys(&mut self, release: Release, out: &mut impl FnMut(EventKind, &Entry)) {
        for (at, flow) in self.held_destroys.release(release) {
            self.table
                .apply_event(Change::Gone, flow, at, &mut self.owners, out);
        }
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
    fn names_arrived<W: Write>(&mut self, em: &mut stream::Emitter<'_, W>) {
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
                em.emit(EventKind::Update, &self.table.as_read(e));
            }
        }
    }

    /// The caches' figures for `--metrics`.
    fn caches(&self) -> crate::export::metrics::Caches {
        let names = self.names.as_ref();
        crate::export::metrics::Caches {
            address_book: self.enricher.as_ref().map(|en| en.book().len() as u64),
            dns_answers_kept: names.map(|n| n.book().len() as u64),
            dns_messages: names.map(|n| n.stats.dns_messages),
            dns_errors: names.map(|n| n.stats.dns_errors),
            conn_names: names.map(|n| n.stats.conn_names),
            names_memory_bytes: names.map(|n| n.memory_bytes() as u64),
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
            self.warn(Notice::Enrichment(notice));
        }
        self.release_destroys(Release::Due(now), sink);
        self.table.expire(now, sink);
        if let Some(names) = &mut self.names {
            if now.saturating_duration_since(self.names_expired) >= naming::EXPIRY_EVERY {
                names.expire(now);
                self.names_expired = now;
            }
        }
        self.start_refresh(now)
    }
}

impl Engine {
    /// Starts the sources and the first dump.
    /// Starts the sources and the first dump; returns the engine, the
    /// signals and the receiving end of the inbox for the caller's loop.
    fn start(
        inputs: Inputs,
        notes: Option<Notes>,
    ) -> anyhow::Result<(Engine, Signals, tokio::sync::mpsc::Receiver<Inbox>)> {
        let Inputs {
            cfg,
            events,
            dumper,
            signals,
            inbox: (tx, rx),
            enricher,
            export: _,
        } = inputs;
        let (dump_tx, dump_rx) = std_mpsc::channel::<DumpRequest>();
        let rcvbuf = events.kernel_rcvbuf().unwrap_or(0);
        source::spawn_events(events, cfg.sel.clone(), tx.clone())?;
        if cfg.attribution {
            let tx = tx.clone();
            crate::attribution::spawn_procfs_scanner(cfg.interval, move |index| {
                tx.blocking_send(Inbox::Sockets(index)).is_ok()
            })?;
        }
        source::spawn_dumper(dumper, cfg.sel.clone(), dump_rx, tx)?;
        let mut enricher = enricher;
        if let Some(en) = &mut enricher {
            en.defer_names();
        }
        let now = Instant::now();
        let mut engine = Engine {
            table: FlowTable::new(table_config(cfg.interval), now)
                .with_wall_clock(now, std::time::SystemTime::now()),
            owners: cfg
                .attribution
                .then(|| OwnerJoin::new(now).with_local_addrs(crate::attribution::index::local_addresses())),
            socket_events: cfg.socket_events,
            dump_tx,
            rcvbuf,
            pacing: RefreshPacing::new(cfg.interval, cfg.full_refresh),
            refresh_running: false,
            resync_pending: false,
            warned_malformed: false,
            own_queries: enricher.as_ref().map(Enricher::own_queries).unwrap_or_default(),
            names: enricher
                .as_ref()
                .is_none_or(Enricher::inspect)
                .then(|| NameTracker::new(std::process::id())),
            name_waiting: VecDeque::new(),
            names_expired: now,
            enricher,
            notes,
            held_destroys: HeldDestroys::default(),
        };
        engine.start_dump(false)?;
        Ok((engine, signals, rx))
    }
}
