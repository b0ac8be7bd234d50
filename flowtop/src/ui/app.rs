//! The screen's state and what each action does to it. No terminal here:
//! the run loop feeds snapshots and actions in, the renderer reads it out.
//!
//! Rows are derived (selected, filtered, sorted) once per new snapshot or
//! per action that changes them, never per frame; a frame only lays out
//! the visible slice.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use crate::enrich::book::AddressBook;
use crate::enrich::services::Services;
use crate::flow::model::{proto, FlowKey};
use crate::flow::table::{Entry, Snapshot};
use crate::flow::Selection;

use super::derive::{derive_rows, scrolled, Derived, Job, Placement, ViewParams};
use super::ended::Recent;
use super::filter::Filter;
use super::history::{History, Loaded, Loader};
use super::keys::{Action, Mode};
use super::procinfo::{ProcInfos, Users};
use super::rows::{CountryRow, ProcKey, ProcRow, ProcSort, RowCtx, Throughput};
use super::sort::{Ordered, SortSpec};
use super::spark::flows::FlowHistory;
use super::spark::{Glyphs, RateHistory, Totals as TotalsHistory, Trace};

/// What the header says about the run, fixed at start.
#[derive(Debug, Clone)]
pub struct HeaderInfo {
    pub version: &'static str,
    /// The attribution in use and why.
    pub attribution: crate::attribution::Active,
    pub attribution_reason: String,
    /// The refresh interval (`-t`).
    pub interval: Duration,
    /// Payloads are looked at for asked-for names (not `--no-inspect`).
    pub inspect: bool,
}

/// Options from the command line the screen starts with.
#[derive(Debug, Clone)]
pub struct ViewOptions {
    /// The families and protocols shown (`-4 -6 -T -U -D -I -S`).
    pub selection: Selection,
    pub show_src: bool,
    pub bits: bool,
    /// False under NO_COLOR.
    pub color: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Flows,
    Processes,
    Countries,
    /// Ended flows from the journal (`flowtop record`).
    History,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Flows, Tab::Processes, Tab::Countries, Tab::History];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Flows => "Flows",
            Tab::Processes => "Processes",
            Tab::Countries => "Countries",
            Tab::History => "History",
        }
    }

    fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    fn step(self, by: isize) -> Tab {
        let at = Tab::ALL.iter().position(|t| *t == self).unwrap_or(0) as isize;
        Tab::ALL[(at + by).rem_euclid(Tab::ALL.len() as isize) as usize]
    }
}

/// What the selection follows when rows move.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selected {
    Flow(FlowKey),
    Process(ProcKey),
    Country(String),
}

/// The open detail view: the flow, as last seen.
#[derive(Debug, Clone)]
pub struct Detail {
    pub key: FlowKey,
    pub entry: Entry,
    /// The flow left the table since the view opened.
    pub ended: bool,
    /// Its rates since the view opened (the chart), and the snapshot
    /// sampled last (one sample per snapshot).
    pub trace: Trace,
    traced: Weak<Snapshot>,
}

impl Detail {
    fn new(entry: Entry, ended: bool) -> Detail {
        Detail {
            key: entry.flow.key(),
            entry,
            ended,
            trace: Trace::default(),
            traced: Weak::new(),
        }
    }
}

/// The open names view of a Processes row: the names its processes asked
/// for (Enter on the row; Enter again shows its flows).
#[derive(Debug, Clone)]
pub struct ProcNames {
    /// The row's process name (made safe) and its pids.
    pub comm: String,
    pub pids: Vec<u32>,
    /// The filter that shows the row's flows.
    pub flows: Option<String>,
}

/// Flow counts of the shown families and protocols, for the header.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Bytes per second out of and into this host, of the flows shown and
    /// of those that ended in the interval.
    pub throughput: Throughput,
    pub flows: usize,
    pub by_proto: BTreeMap<String, usize>,
}

/// Rounds between two sweeps of the flow histories: a flow's history
/// outlives it (or its dimmed row) by at most this many intervals.
const FLOW_SWEEP_EVERY: u32 = 16;

/// Rows of the header, the tab line and the column titles above the table.
pub const TABLE_TOP: u16 = 3;
/// Rows below the table (the footer).
pub const TABLE_BOTTOM: u16 = 1;

/// The screen's whole state.
pub struct App {
    book: Arc<AddressBook>,
    /// The DNS answers the engine keeps, per process (the detail view
    /// lists a process's names); unset with `--no-inspect`.
    pub asked_names: crate::names::tracker::BookSlot,
    services: Arc<Services>,
    pub header: HeaderInfo,
    pub color: bool,
    pub tab: Tab,
    pub sort: SortSpec,
    /// The Processes tab's order, and whether it has a row per pid (`g`)
    /// rather than per program and user.
    pub proc_sort: ProcSort,
    pub per_pid: bool,
    /// The Processes tab grouped by container, app or unit (`g`'s third
    /// step, issue 15).
    pub group_identity: bool,
    /// The CONTAINER/UNIT column on the Flows tab (`c`).
    pub show_identity: bool,
    /// The filter as typed, and what it parsed to (the last valid one).
    pub filter_text: String,
    pub filter: Filter,
    pub filter_error: Option<String>,
    pub editing_filter: bool,
    pub paused: bool,
    pub show_src: bool,
    pub bits: bool,
    pub active_only: bool,
    pub view_sel: Selection,
    pub help: bool,
    pub detail: Option<Detail>,
    pub proc_names: Option<ProcNames>,
    /// The snapshot on screen, and the newest one (they differ while paused).
    shown: Arc<Snapshot>,
    latest: Arc<Snapshot>,
    /// Flows tab: indices into `shown.flows`, in display order (exact for
    /// the visible rows; see [`Ordered`]).
    pub flow_rows: Ordered,
    pub proc_rows: Vec<ProcRow>,
    pub country_rows: Vec<CountryRow>,
    pub counts: Counts,
    /// The selected row and the first visible one, in the current tab.
    pub cursor: usize,
    pub offset: usize,
    selected: Option<Selected>,
    /// Horizontal scroll of the table, in columns of text.
    pub hscroll: u16,
    /// Terminal size (width, height).
    pub size: (u16, u16),
    pub quit: bool,
    pub procs: ProcInfos,
    /// Login names for the Processes tab.
    pub users: Users,
    /// How times are written: local time (honouring TZ); tests fix it.
    pub time_text: fn(u64) -> String,
    /// The engine's last warning, shown in the footer.
    pub note: Option<crate::engine::Notice>,
    /// The rows' buffer, kept between derivations.
    row_buffer: Vec<usize>,
    /// The shown flows that pass the selection and the filter.
    filtered: Vec<usize>,
    /// See [`ViewParams::windowed_from`] (tests lower it).
    pub windowed_from: usize,
    /// Replaced snapshots, to be freed by the deriver thread.
    garbage: Vec<Arc<Snapshot>>,
    /// Per tab (in [`Tab::ALL`] order): whether its rows are of the shown
    /// snapshot and the current parameters.
    fresh: [bool; 4],
    /// The address book's change count the rows were built at.
    rows_book: u64,
    /// The History tab: flows read from the journal.
    pub history: History,
    /// Reads the journal in the background (None in tests: they call
    /// [`App::history_loaded`] themselves).
    pub history_loader: Option<Loader>,
    /// Flows that ended lately, and whether the Flows tab shows them (`t`).
    pub recent_ended: Recent,
    pub show_ended: bool,
    /// Flows tab: the ended flows shown after the live rows (selected and
    /// filtered like them), newest first.
    pub ended_rows: Vec<Entry>,
    /// The clock ended flows are kept by (tests set it).
    pub clock: fn() -> Instant,
    /// History tab: the recorded flow whose details are open (Enter).
    pub history_detail: Option<Box<crate::journal::query::Flow>>,
    /// Rates per Processes group over the last intervals (the TREND
    /// column), and of the header's totals (its graph, `m` hides it).
    pub rate_history: RateHistory,
    pub totals_history: TotalsHistory,
    /// Every flow's rates since it first moved (the detail chart's past),
    /// and whether it is kept (off only for the peer run of `xtask bench
    /// ui`).
    pub flow_history: FlowHistory,
    pub keep_flow_history: bool,
    /// Flows that left since the last sweep of their histories (from the
    /// snapshots' ended lists), and whether some may have left unlisted.
    flows_gone: Vec<FlowKey>,
    flows_unlisted: bool,
    pub meter: bool,
    /// Whether the Processes tab keeps and shows its TREND column (off
    /// only for the peer run of `xtask bench ui --processes`).
    pub trend: bool,
    /// Blocks or ASCII, from the locale.
    pub glyphs: Glyphs,
    /// The snapshot the histories last took a sample of.
    sampled: Weak<Snapshot>,
    /// The wall clock the flow chart's samples are stamped with (tests fix it).
    pub wall: fn() -> SystemTime,
    /// History tab: the timeline of a program's recorded flows (Enter in
    /// a recorded flow's details).
    pub timeline: Option<super::charts::TimelineOf>,
}

fn empty_snapshot() -> Arc<Snapshot> {
    Arc::new(Snapshot {
        flows: Default::default(),
        stats: Default::default(),
        aggregates: Default::default(),
        first_rates: 0,
        ended: Default::default(),
    })
}

/// Columns a Left/Right press scrolls by.
const HSCROLL_STEP: u16 = 8;

impl App {
    pub fn new(
        header: HeaderInfo,
        opts: ViewOptions,
        book: Arc<AddressBook>,
        services: Arc<Services>,
        procs: ProcInfos,
    ) -> App {
        App {
            book,
            asked_names: Default::default(),
            services,
            header,
            color: opts.color,
            tab: Tab::Flows,
            sort: SortSpec::default(),
            proc_sort: ProcSort::default(),
            per_pid: false,
            group_identity: false,
            show_identity: false,
            filter_text: String::new(),
            filter: Filter::default(),
            filter_error: None,
            editing_filter: false,
            paused: false,
            show_src: opts.show_src,
            bits: opts.bits,
            active_only: false,
            view_sel: opts.selection,
            help: false,
            detail: None,
            proc_names: None,
            shown: empty_snapshot(),
            latest: empty_snapshot(),
            flow_rows: Ordered::default(),
            proc_rows: Vec::new(),
            country_rows: Vec::new(),
            counts: Counts::default(),
            cursor: 0,
            offset: 0,
            selected: None,
            hscroll: 0,
            size: (80, 24),
            quit: false,
            procs,
            users: Users::new(Some("/etc/passwd".into())),
            time_text: crate::output::format::local_time,
            note: None,
            row_buffer: Vec::new(),
            filtered: Vec::new(),
            windowed_from: super::sort::WINDOWED_FROM,
            garbage: Vec::new(),
            fresh: [false; 4],
            rows_book: 0,
            history: History::default(),
            history_loader: None,
            recent_ended: Recent::default(),
            show_ended: true,
            ended_rows: Vec::new(),
            clock: Instant::now,
            history_detail: None,
            rate_history: RateHistory::default(),
            totals_history: TotalsHistory::default(),
            flow_history: FlowHistory::default(),
            keep_flow_history: true,
            flows_gone: Vec::new(),
            flows_unlisted: false,
            meter: true,
            trend: true,
            glyphs: Glyphs::Unicode,
            sampled: Weak::new(),
            wall: SystemTime::now,
            timeline: None,
        }
    }

    pub fn ctx(&self) -> RowCtx<'_> {
        RowCtx {
            book: &self.book,
            services: &self.services,
        }
    }

    /// The login name of `uid`, or its number.
    pub fn user_name(&self, uid: u32) -> String {
        self.users.name(uid)
    }

    pub fn shown(&self) -> &Snapshot {
        &self.shown
    }

    /// Flows in the newest snapshot (the header shows it while paused).
    pub fn live_flows(&self) -> usize {
        self.latest.flows.len()
    }

    pub fn mode(&self) -> Mode {
        if self.editing_filter {
            Mode::EditingFilter
        } else if self.help {
            Mode::Help
        } else if self.detail.is_some() || self.timeline.is_some() {
            Mode::Detail
        } else if self.history_detail.is_some() {
            Mode::Recorded
        } else if self.proc_names.is_some() {
            Mode::Names
        } else {
            Mode::Normal
        }
    }

    /// Rows the table has room for.
    pub fn page(&self) -> usize {
        usize::from(self.size.1.saturating_sub(TABLE_TOP + TABLE_BOTTOM)).max(1)
    }

    /// Rows in the current tab.
    pub fn len(&self) -> usize {
        match self.tab {
            Tab::Flows => self.flow_rows.len() + self.ended_rows.len(),
            Tab::Processes => self.proc_rows.len(),
            Tab::Countries => self.country_rows.len(),
            Tab::History => self.history.rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The flow at row `i` of the Flows tab.
    pub fn flow_at(&self, i: usize) -> Option<&Entry> {
        match self.flow_rows.get(i) {
            Some(f) => Some(&self.shown.flows[f]),
            None => self.ended_at(i),
        }
    }

    /// The ended flow in row `i` of the Flows tab, if that row is one.
    pub fn ended_at(&self, i: usize) -> Option<&Entry> {
        i.checked_sub(self.flow_rows.len())
            .and_then(|j| self.ended_rows.get(j))
    }

    /// Notes the flows the newest snapshot lists as ended, and forgets
    /// those kept long enough.
    fn note_ended(&mut self) {
        let now = (self.clock)();
        let latest = Arc::clone(&self.latest);
        self.recent_ended
            .push(now, latest.ended.flows.iter().map(|(e, _)| e));
        if self.keep_flow_history {
            // Their histories go at the next sweep once no longer shown.
            self.flows_gone
                .extend(latest.ended.flows.iter().map(|(e, _)| e.flow.key()));
            // A list at its bound may leave flows out (and a long pause
            // piles them up): the next sweep looks at the whole table.
            if latest.ended.flows.len() >= crate::flow::table::ENDED_KEPT
                || self.flows_gone.len() > super::spark::flows::MAX_FLOWS
            {
                self.flows_gone.clear();
                self.flows_unlisted = true;
            }
        }
    }

    /// The ended flows the Flows tab shows: of the shown families and
    /// protocols, passing the filter; none with `t` off or active flows
    /// only (`a`).
    fn refresh_ended_rows(&mut self) {
        self.ended_rows.clear();
        if !self.show_ended || self.active_only {
            return;
        }
        let ctx = RowCtx {
            book: &self.book,
            services: &self.services,
        };
        let matcher = self.filter.matcher(ctx);
        let sel = &self.view_sel;
        self.ended_rows.extend(
            self.recent_ended
                .newest_first()
                .filter(|e| sel.family(e.flow.family) && sel.proto(e.flow.proto) && matcher.matches(e))
                .cloned(),
        );
    }

    /// The measured rates of the flow in row `i` of the flows tab.
    pub fn rates_at(&self, i: usize) -> Option<crate::flow::rate::Rates> {
        self.flow_rows
            .get(i)
            .and_then(|f| self.shown.flows.measured_rates(f))
    }

    /// A new snapshot from the engine.
    pub fn on_snapshot(&mut self, snap: Arc<Snapshot>) {
        self.latest = snap;
        self.note_ended();
        if !self.paused {
            self.shown = Arc::clone(&self.latest);
            self.derive();
            self.refresh_detail();
        }
    }

    /// A read of the journal (from the loader thread).
    pub fn history_loaded(&mut self, loaded: Loaded) {
        // The selection follows the flow it was on.
        let selected = self
            .history
            .flow_at(self.cursor)
            .map(|f| (f.ct_id, f.start_ms, f.end_ms));
        self.history.set(loaded);
        let ctx = RowCtx {
            book: &self.book,
            services: &self.services,
        };
        self.history.derive(&self.filter, &ctx);
        if self.tab == Tab::History {
            if let Some(i) = selected.and_then(|k| {
                (0..self.history.rows.len())
                    .find(|&i| self.history.flow_at(i).map(|f| (f.ct_id, f.start_ms, f.end_ms)) == Some(k))
            }) {
                self.cursor = i;
            }
            self.cursor = self.cursor.min(self.len().saturating_sub(1));
            self.scroll_into_view();
        }
    }

    pub fn resize(&mut self, width: u16, height: u16) {
        self.size = (width, height);
        self.scroll_into_view();
    }

    /// What the rows depend on besides the snapshot.
    pub fn params(&self) -> ViewParams {
        ViewParams {
            sort: self.sort,
            filter: self.filter.clone(),
            active_only: self.active_only,
            view_sel: self.view_sel.clone(),
            windowed_from: self.windowed_from,
            per_pid: self.per_pid,
            group_identity: self.group_identity,
            proc_sort: self.proc_sort,
        }
    }

    /// Rebuilds the rows of the current tab here and now (after a key, or
    /// without a deriver thread) and puts the selection back on what it
    /// selected.
    pub fn derive(&mut self) {
        let mut buffer = std::mem::take(&mut self.row_buffer);
        let d = derive_rows(
            Arc::clone(&self.shown),
            self.params(),
            Some(self.tab),
            self.ctx(),
            &mut buffer,
        );
        self.row_buffer = buffer;
        let _old = self.install(d);
    }

    /// A new snapshot for a deriver thread: the job to run, unless paused.
    pub fn snapshot_job(&mut self, snap: Arc<Snapshot>) -> Option<Job> {
        self.latest = snap;
        self.note_ended();
        if self.paused {
            return None;
        }
        // Ended flows expire whether or not the rows are built again.
        if self.tab == Tab::Flows {
            self.refresh_ended_rows();
            self.cursor = self.cursor.min(self.len().saturating_sub(1));
        }
        // Ordered by rate, a first rate measured into the readings only
        // (no entry chunk changed) can move rows.
        let same_rates = self.sort.column != super::sort::Column::Rate
            || self.latest.first_rates == self.shown.first_rates;
        // Flows that ended count in their interval's totals: rows built
        // with or for them are rebuilt.
        let no_ended = self.latest.ended.is_empty() && self.shown.ended.is_empty();
        if self.latest.flows.same_values(&self.shown.flows)
            && same_rates
            && no_ended
            && self.book.changes() == self.rows_book
        {
            // No flow and no name changed: the rows stand (an idle table
            // costs no rebuild); the header's counters and the detail view's
            // timeout come from the new snapshot.
            let old = std::mem::replace(&mut self.shown, Arc::clone(&self.latest));
            self.garbage.push(old);
            // The rows and their rates stand: sampled again as they are.
            let fresh_processes = self.fresh[Tab::Processes.index()];
            self.sample(fresh_processes);
            self.refresh_detail();
            return None;
        }
        Some(self.job(Arc::clone(&self.latest)))
    }

    fn job(&mut self, snapshot: Arc<Snapshot>) -> Job {
        Job {
            snapshot,
            params: self.params(),
            tab: self.tab,
            place: Placement {
                selected: match &self.selected {
                    Some(Selected::Flow(k)) => Some(*k),
                    _ => None,
                },
                cursor: self.cursor,
                offset: self.offset,
                page: self.page(),
            },
            garbage: std::mem::take(&mut self.garbage),
        }
    }

    /// Takes rows a deriver thread built. Rows built with other parameters
    /// than the current ones (a key changed them meanwhile) are not taken:
    /// the job to redo is returned when they were for the newest snapshot.
    pub fn take_derived(&mut self, d: Derived) -> Option<Job> {
        if self.paused {
            return None;
        }
        if d.params != self.params() {
            return Arc::ptr_eq(&d.snapshot, &self.latest).then(|| self.job(d.snapshot));
        }
        let old = self.install(d);
        // Freed by the deriver: unmapping the chunks only the old snapshot
        // still holds takes milliseconds the screen need not spend.
        self.garbage.push(old);
        self.refresh_detail();
        None
    }

    /// The replaced snapshots, for the caller to free off the screen's
    /// thread now rather than with the next job (an interval later, which
    /// kept a second copy of the table alive most of the time).
    pub fn take_garbage(&mut self) -> Vec<Arc<Snapshot>> {
        std::mem::take(&mut self.garbage)
    }

    /// Puts rows in place; returns the snapshot they replace.
    fn install(&mut self, d: Derived) -> Arc<Snapshot> {
        let old = std::mem::replace(&mut self.shown, d.snapshot);
        self.rows_book = d.book_changes;
        self.counts = d.counts;
        // The History tab's rows come from the journal, not the snapshot:
        // derived with every set of rows (its filter may have changed).
        self.fresh = [
            d.flows.is_some(),
            d.processes.is_some(),
            d.countries.is_some(),
            false,
        ];
        if self.tab == Tab::History {
            let ctx = RowCtx {
                book: &self.book,
                services: &self.services,
            };
            self.history.derive(&self.filter, &ctx);
        }
        self.filtered = d.filtered;
        if let Some(rows) = d.flows {
            self.flow_rows = rows;
        }
        if let Some(rows) = d.processes {
            self.proc_rows = rows;
        }
        if let Some(rows) = d.countries {
            self.country_rows = rows;
        }
        self.refresh_ended_rows();
        if let Some(i) = self.selected.as_ref().and_then(|s| self.position_of(s)) {
            self.cursor = i;
        }
        self.cursor = self.cursor.min(self.len().saturating_sub(1));
        self.scroll_into_view();
        self.selected = self.selected_at(self.cursor);
        let fresh_processes = self.fresh[Tab::Processes.index()];
        self.sample(fresh_processes);
        old
    }

    /// Takes one sample of the rates for the histories, once per snapshot
    /// (rows built again for a key take none): the header's totals, and
    /// the Processes groups when their rows are of this snapshot.
    fn sample(&mut self, processes: bool) {
        if std::ptr::eq(self.sampled.as_ptr(), Arc::as_ptr(&self.shown)) {
            return;
        }
        self.sampled = Arc::downgrade(&self.shown);
        let t = self.counts.throughput;
        self.totals_history.record(t.sent, t.received);
        if processes && self.trend {
            self.rate_history.record(
                self.proc_rows
                    .iter()
                    .map(|r| (&r.key, r.totals.sent_rate, r.totals.received_rate)),
            );
        }
        if self.keep_flow_history {
            self.sample_flows();
        }
    }

    /// One round of every flow's history: the flows that moved bytes
    /// (whatever the view shows); every [`FLOW_SWEEP_EVERY`] rounds the
    /// histories of flows gone are dropped, but for the ended flows still
    /// shown and the one whose details are open. The flows gone are those
    /// the snapshots listed as ended, so a sweep costs what ended, not the
    /// table; only when a list may have left flows out is the whole table
    /// looked at.
    fn sample_flows(&mut self) {
        let secs = self.wall_secs();
        let flows = &self.shown.flows;
        self.flow_history.record(
            secs,
            flows.slots().filter_map(|(i, e)| {
                let r = flows.measured_rates(i)?;
                (r.orig_bytes > 0.0 || r.reply_bytes > 0.0)
                    .then(|| (e.flow.key(), r.orig_bytes, r.reply_bytes))
            }),
        );
        if self.flow_history.now().is_multiple_of(FLOW_SWEEP_EVERY) {
            let shown: std::collections::HashSet<FlowKey> = self
                .recent_ended
                .newest_first()
                .map(|e| e.flow.key())
                .chain(self.detail.as_ref().map(|d| d.key))
                .collect();
            if std::mem::take(&mut self.flows_unlisted) {
                self.flow_history
                    .sweep(flows.slots().map(|(_, e)| e.flow.key()), |k| shown.contains(k));
            } else {
                let history = &mut self.flow_history;
                self.flows_gone.retain(|k| {
                    if shown.contains(k) {
                        return true;
                    }
                    history.remove(k);
                    false
                });
            }
        }
    }

    /// The wall clock in seconds since the epoch.
    fn wall_secs(&self) -> f64 {
        (self.wall)()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |t| t.as_secs_f64())
    }

    /// A detail view of `entry` whose chart starts with the flow's kept
    /// history; the snapshot that history ends with gives no live point.
    fn open_detail(&mut self, entry: Entry, ended: bool) -> Detail {
        let mut d = Detail::new(entry, ended);
        if let Some(past) = self.flow_history.points(&d.key, ended) {
            d.trace.past = past;
            d.traced = Arc::downgrade(&self.shown);
        }
        d
    }

    /// A new sort: the Flows rows reordered from the filtered flows, no
    /// filtering again; the other tabs do not depend on the sort.
    fn resort(&mut self) {
        let mut ordered = Ordered::default();
        ordered.windowed_from = self.windowed_from;
        ordered.build(&self.filtered, &self.shown.flows, self.sort, &self.ctx());
        self.flow_rows = ordered;
        self.fresh[Tab::Flows.index()] = true;
        if let Some(i) = self.selected.as_ref().and_then(|s| self.position_of(s)) {
            self.cursor = i;
        }
        self.cursor = self.cursor.min(self.len().saturating_sub(1));
        self.scroll_into_view();
        self.selected = self.selected_at(self.cursor);
    }

    /// A new order of the Processes rows: sorted in place, the selection
    /// kept on its row.
    fn resort_processes(&mut self) {
        super::rows::sort_processes(&mut self.proc_rows, self.proc_sort);
        if let Some(i) = self.selected.as_ref().and_then(|s| self.position_of(s)) {
            self.cursor = i;
        }
        self.scroll_into_view();
        self.selected = self.selected_at(self.cursor);
    }

    fn resort_history(&mut self) {
        let ctx = RowCtx {
            book: &self.book,
            services: &self.services,
        };
        self.history.derive(&self.filter, &ctx);
        self.move_to(self.cursor);
    }

    fn position_of(&self, sel: &Selected) -> Option<usize> {
        match (self.tab, sel) {
            (Tab::Flows, Selected::Flow(key)) => self.flow_rows.row_of(*key, &self.shown.flows),
            (Tab::Processes, Selected::Process(key)) => self.proc_rows.iter().position(|r| r.key == *key),
            (Tab::History, _) => None,
            (Tab::Countries, Selected::Country(cc)) => {
                self.country_rows.iter().position(|r| r.country == *cc)
            }
            _ => None,
        }
    }

    fn selected_at(&self, i: usize) -> Option<Selected> {
        match self.tab {
            Tab::Flows => self.flow_at(i).map(|e| Selected::Flow(e.flow.key())),
            Tab::Processes => self.proc_rows.get(i).map(|r| Selected::Process(r.key.clone())),
            Tab::Countries => self
                .country_rows
                .get(i)
                .map(|r| Selected::Country(r.country.clone())),
            Tab::History => None,
        }
    }

    fn move_to(&mut self, i: usize) {
        self.cursor = i.min(self.len().saturating_sub(1));
        self.scroll_into_view();
        self.selected = self.selected_at(self.cursor);
    }

    /// Selects row `i` (tests).
    #[cfg(test)]
    pub fn move_for_test(&mut self, i: usize) {
        self.move_to(i);
    }

    fn scroll_into_view(&mut self) {
        let page = self.page();
        self.offset = scrolled(self.cursor, self.offset, page, self.len());
        if self.tab == Tab::Flows {
            // The visible rows, the cursor's among them, in their place.
            self.flow_rows
                .ensure(self.offset..self.offset + page, &self.shown.flows);
        }
    }

    /// Keeps the detail view's flow current; marks it ended when it left.
    fn refresh_detail(&mut self) {
        let Some(d) = &mut self.detail else { return };
        let slot = self
            .shown
            .flows
            .slots()
            .find(|(_, e)| e.flow.id == d.key.id && e.flow.key() == d.key)
            .map(|(slot, _)| slot);
        match slot.and_then(|slot| self.shown.entry_at(slot)) {
            Some(e) => d.entry = e,
            None => d.ended = true,
        }
        // One point of the chart per snapshot while the flow lives.
        if !d.ended && !std::ptr::eq(d.traced.as_ptr(), Arc::as_ptr(&self.shown)) {
            d.traced = Arc::downgrade(&self.shown);
            if let Some(r) = d.entry.rate.measured_rates() {
                let at = (self.wall)()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |t| t.as_secs_f64());
                d.trace.push(at, r.orig_bytes, r.reply_bytes);
            }
        }
    }

    fn set_filter(&mut self, text: String) {
        match Filter::parse(&text) {
            Ok(f) => {
                self.filter = f;
                self.filter_error = None;
            }
            Err(e) => self.filter_error = Some(e.to_string()),
        }
        self.filter_text = text;
        self.derive();
    }

    fn toggle_proto(&mut self, key: char) {
        let protos: &[u8] = match key {
            'T' => &[proto::TCP],
            'U' => &[proto::UDP, proto::UDPLITE],
            'D' => &[proto::DCCP],
            'I' => &[proto::ICMP, proto::ICMPV6],
            'S' => &[proto::SCTP],
            _ => return,
        };
        let on = !self.view_sel.proto(protos[0]);
        for &p in protos {
            self.view_sel.set_proto(p, on);
        }
        self.derive();
    }

    fn open(&mut self) {
        // From a recorded flow's details on to its program's timeline.
        if let Some(f) = &self.history_detail {
            if self.timeline.is_none() {
                self.timeline = super::charts::TimelineOf::of(f);
            }
            return;
        }
        // From a process's names on to its flows.
        if let Some(names) = self.proc_names.take() {
            if let Some(f) = names.flows {
                self.show_flows_matching(f);
            }
            return;
        }
        match self.tab {
            Tab::Flows => {
                if let Some(entry) = self.ended_at(self.cursor).cloned() {
                    self.detail = Some(self.open_detail(entry, true));
                    return;
                }
                let slot = self.flow_rows.get(self.cursor);
                if let Some(entry) = slot.and_then(|slot| self.shown.entry_at(slot)) {
                    if let Some(o) = &entry.owner {
                        self.procs.request(o.pid);
                        if let Some(ppid) = o.ppid {
                            self.procs.request_ancestors(ppid);
                        }
                    }
                    self.detail = Some(self.open_detail(entry, false));
                    self.refresh_detail();
                }
            }
            // "Where does this process connect": the names it asked
            // for, then (Enter again) its flows, with their destinations
            // and countries.
            Tab::Processes => {
                let Some(row) = self.proc_rows.get(self.cursor) else {
                    return;
                };
                let filter = Some(row).and_then(|r| match &r.key {
                    ProcKey::Pid(pid) => Some(format!("pid:{pid}")),
                    ProcKey::Program(..) => match (r.single_pid(), &r.exe) {
                        (Some(pid), _) => Some(format!("pid:{pid}")),
                        // A filter term ends at a space: a path with one is
                        // matched by its last word.
                        (None, Some(exe)) => exe.split(' ').next_back().map(|x| format!("exe:{x}")),
                        (None, None) => Some(format!("comm:{}", r.comm)),
                    },
                    ProcKey::Identity(label) => {
                        // The term that selects the row's flows (a term ends
                        // at a space: the label's last word).
                        let id = r.owner.as_ref().and_then(|o| o.identity.as_deref());
                        let prefix = match id {
                            Some(i) if i.container.is_some() => "ctr",
                            Some(i) if i.app.is_some() => "app",
                            _ => "unit",
                        };
                        label.split(' ').next_back().map(|l| format!("{prefix}:{l}"))
                    }
                    ProcKey::Unattributed => None,
                });
                if row.key == ProcKey::Unattributed {
                    return;
                }
                self.proc_names = Some(ProcNames {
                    comm: row.comm.clone(),
                    pids: row.pids.clone(),
                    flows: filter,
                });
            }
            Tab::History => {
                self.history_detail = self.history.flow_at(self.cursor).cloned().map(Box::new);
            }
            Tab::Countries => {
                if let Some(cc) = self.country_rows.get(self.cursor).map(|r| r.country.clone()) {
                    if cc != "??" {
                        self.show_flows_matching(format!("cc:{cc}"));
                    }
                }
            }
        }
    }

    fn show_flows_matching(&mut self, filter: String) {
        self.tab = Tab::Flows;
        self.cursor = 0;
        self.offset = 0;
        self.selected = None;
        self.set_filter(filter);
    }

    /// Applies one action.
    pub fn apply(&mut self, action: Action) {
        let page = self.page();
        match action {
            Action::Quit => self.quit = true,
            Action::Up => self.move_to(self.cursor.saturating_sub(1)),
            Action::Down => self.move_to(self.cursor + 1),
            Action::PageUp => self.move_to(self.cursor.saturating_sub(page)),
            Action::PageDown => self.move_to(self.cursor + page),
            Action::Home => self.move_to(0),
            Action::End => self.move_to(self.len().saturating_sub(1)),
            Action::Left => self.hscroll = self.hscroll.saturating_sub(HSCROLL_STEP),
            Action::Right => self.hscroll = self.hscroll.saturating_add(HSCROLL_STEP).min(400),
            Action::ToggleBits => self.bits = !self.bits,
            Action::ToggleMeter => self.meter = !self.meter,
            Action::ToggleActive => {
                self.active_only = !self.active_only;
                self.derive();
            }
            Action::ToggleEnded => {
                self.show_ended = !self.show_ended;
                self.refresh_ended_rows();
                self.move_to(self.cursor);
            }
            Action::ToggleIdentity => self.show_identity = !self.show_identity,
            Action::ToggleSource => {
                self.show_src = !self.show_src;
                // The source column only shows; sorting by it stops with it.
                if !self.show_src && self.sort.column == super::sort::Column::Source {
                    self.sort = SortSpec::default();
                    self.resort();
                }
            }
            Action::ToggleProto(c) => self.toggle_proto(c),
            Action::NextTab | Action::PrevTab => {
                self.tab = self.tab.step(if action == Action::NextTab { 1 } else { -1 });
                self.cursor = 0;
                self.offset = 0;
                self.selected = None;
                if let Some(l) = &self.history_loader {
                    l.shown(self.tab == Tab::History);
                }
                if self.fresh[self.tab.index()] {
                    // Built with the others for this snapshot: just shown.
                    self.scroll_into_view();
                    self.selected = self.selected_at(0);
                } else {
                    self.derive();
                }
            }
            Action::Help => self.help = !self.help,
            Action::SortNext | Action::SortPrev => {
                let step = if action == Action::SortNext { 1 } else { -1 };
                match self.tab {
                    Tab::Flows => {
                        self.sort = self.sort.step(step, self.show_src);
                        self.resort();
                    }
                    Tab::Processes => {
                        self.proc_sort = self.proc_sort.step(step);
                        self.resort_processes();
                    }
                    Tab::History => {
                        self.history.sort = self.history.sort.step(step);
                        self.resort_history();
                    }
                    Tab::Countries => {}
                }
            }
            Action::SortReverse => match self.tab {
                Tab::Flows => {
                    self.sort.desc = !self.sort.desc;
                    self.resort();
                }
                Tab::Processes => {
                    self.proc_sort.desc = !self.proc_sort.desc;
                    self.resort_processes();
                }
                Tab::History => {
                    self.history.sort.desc = !self.history.sort.desc;
                    self.resort_history();
                }
                Tab::Countries => {}
            },
            Action::Group => {
                if self.tab == Tab::Processes {
                    // exe -> pid -> container/unit -> exe.
                    (self.per_pid, self.group_identity) = match (self.per_pid, self.group_identity) {
                        (false, false) => (true, false),
                        (true, false) => (false, true),
                        _ => (false, false),
                    };
                    self.selected = None;
                    self.derive();
                } else {
                    // Elsewhere `g` is what it was: the first row.
                    self.move_to(0);
                }
            }
            Action::FilterClear => self.set_filter(String::new()),
            Action::EditFilter => self.editing_filter = true,
            Action::FilterChar(c) => {
                let mut t = std::mem::take(&mut self.filter_text);
                t.push(c);
                self.set_filter(t);
            }
            Action::FilterBackspace => {
                let mut t = std::mem::take(&mut self.filter_text);
                t.pop();
                self.set_filter(t);
            }
            Action::FilterDone => self.editing_filter = false,
            Action::Back => {
                if self.help {
                    self.help = false;
                } else if self.detail.is_some() {
                    self.detail = None;
                } else if self.timeline.is_some() {
                    self.timeline = None;
                } else if self.history_detail.is_some() {
                    self.history_detail = None;
                } else if self.proc_names.is_some() {
                    self.proc_names = None;
                } else {
                    // While editing, Esc cancels; otherwise it clears the filter.
                    self.editing_filter = false;
                    if !self.filter_text.is_empty() {
                        self.set_filter(String::new());
                    }
                }
            }
            Action::Pause => {
                self.paused = !self.paused;
                if !self.paused {
                    self.on_snapshot(Arc::clone(&self.latest));
                }
            }
            Action::Open => self.open(),
            Action::Click(y) => {
                if y >= TABLE_TOP && y < self.size.1.saturating_sub(TABLE_BOTTOM) {
                    let i = self.offset + usize::from(y - TABLE_TOP);
                    if i < self.len() {
                        self.move_to(i);
                    }
                }
            }
        }
    }
}
