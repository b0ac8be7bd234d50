//! Building rows from a snapshot: selection, filter, then the Flows order
//! and the Processes and Countries aggregates. No screen state here, so the
//! deriver thread runs it for each snapshot, and the screen for keys that
//! change what the rows depend on.

use std::sync::Arc;

use crate::flow::model::FlowKey;
use crate::flow::table::Snapshot;
use crate::flow::Selection;

use super::app::{Counts, Tab};
use super::filter::Filter;
use super::rows::{self, CountryRow, ProcRow, ProcSort, ProcTable, RowCtx, Throughput};
use super::sort::{Ordered, SortSpec};

/// What the rows depend on besides the snapshot: when a key changes one of
/// these, rows built with the old ones are stale.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewParams {
    pub sort: SortSpec,
    pub filter: Filter,
    pub active_only: bool,
    pub view_sel: Selection,
    /// Flows tables from this long on are ordered by window ([`Ordered`]).
    pub windowed_from: usize,
    /// The Processes tab: one row per pid (`g`) rather than per program.
    pub per_pid: bool,
    /// The Processes tab: one row per container, app or unit (`g` again).
    pub group_identity: bool,
    pub proc_sort: ProcSort,
}

/// Rows built for one snapshot with given parameters: of every tab (the
/// deriver thread's, so that switching tabs costs nothing), or of one.
#[derive(Debug)]
pub struct Derived {
    pub snapshot: Arc<Snapshot>,
    pub params: ViewParams,
    pub counts: Counts,
    pub flows: Option<Ordered>,
    pub processes: Option<Vec<ProcRow>>,
    pub countries: Option<Vec<CountryRow>>,
    /// The flows (indices) that pass the selection and the filter: a new
    /// sort reorders these without filtering again.
    pub filtered: Vec<usize>,
    /// [`AddressBook::changes`](crate::enrich::book::AddressBook::changes)
    /// before the rows were built from the book.
    pub book_changes: u64,
}

/// Selects, filters and sorts (or aggregates) the flows of `snapshot`:
/// no screen state, so a thread of its own can run it. `buffer` collects
/// the rows that pass and is handed over in [`Derived::filtered`].
pub fn derive_rows(
    snapshot: Arc<Snapshot>,
    params: ViewParams,
    only: Option<Tab>,
    ctx: RowCtx<'_>,
    buffer: &mut Vec<usize>,
) -> Derived {
    let book_changes = ctx.book.changes();
    let flows = &snapshot.flows;
    let mut per_proto = [0usize; 256];
    buffer.clear();
    let filtering = !params.filter.is_empty();
    let matcher = params.filter.matcher(ctx);
    let sel = &params.view_sel;
    for (i, e) in flows.slots() {
        if !sel.family(e.flow.family) || !sel.proto(e.flow.proto) {
            continue;
        }
        per_proto[usize::from(e.flow.proto)] += 1;
        if (!params.active_only || rows::is_active(flows.measured_rates(i)))
            && (!filtering || matcher.matches(e))
        {
            buffer.push(i);
        }
    }
    // Flows that ended since the last snapshot, of the shown ones: their
    // last bytes count in this interval (header and Processes).
    let ended: Vec<_> = rows::ended_flows(&snapshot.ended, |e| {
        sel.family(e.flow.family) && sel.proto(e.flow.proto) && (!filtering || matcher.matches(e))
    })
    .collect();
    let span = snapshot.ended.span;
    let mut throughput = Throughput::default();
    for &i in buffer.iter() {
        throughput.add_flow(&flows[i], flows.measured_rates(i));
    }
    for (e, moved) in &ended {
        throughput.add_ended(e, *moved, span);
    }
    // Past the list's bound ended flows are only counted: in the total
    // when nothing is filtered (which they could not be matched against),
    // as sent by their initiators.
    let overflow = snapshot.ended.overflow;
    if !filtering && !params.active_only && overflow.orig_bytes + overflow.reply_bytes > 0 {
        let secs = span.as_secs_f64();
        if secs > 0.0 {
            throughput.sent += overflow.orig_bytes as f64 / secs;
            throughput.received += overflow.reply_bytes as f64 / secs;
        }
    }
    let counts = Counts {
        throughput,
        flows: per_proto.iter().sum(),
        by_proto: (0..=255u8)
            .filter(|&p| per_proto[usize::from(p)] > 0)
            .map(|p| (rows::proto_name(p), per_proto[usize::from(p)]))
            .collect(),
    };
    let wanted = |t: Tab| only.is_none_or(|o| o == t);
    let flows_rows = wanted(Tab::Flows).then(|| {
        let mut ordered = Ordered::default();
        ordered.windowed_from = params.windowed_from;
        ordered.build(buffer, flows, params.sort, &ctx);
        ordered
    });
    let processes = wanted(Tab::Processes).then(|| {
        let mut table = ProcTable::new(params.per_pid).by_identity(params.group_identity);
        for &i in buffer.iter() {
            table.add(&flows[i], flows.measured_rates(i));
        }
        for (e, moved) in &ended {
            table.add_ended(e, *moved, span);
        }
        table.rows(params.proc_sort)
    });
    let countries = wanted(Tab::Countries).then(|| {
        let each = buffer.iter().map(|&i| (&flows[i], flows.measured_rates(i)));
        rows::countries(each, &ctx)
    });
    Derived {
        snapshot,
        params,
        counts,
        flows: flows_rows,
        processes,
        countries,
        // The screen keeps them (for a new sort): handed over, not copied.
        filtered: std::mem::take(buffer),
        book_changes,
    }
}

/// Where the selection and the view were when a job was made.
#[derive(Debug, Clone)]
pub struct Placement {
    pub selected: Option<FlowKey>,
    pub cursor: usize,
    pub offset: usize,
    pub page: usize,
}

/// Work for the deriver thread.
#[derive(Debug)]
pub struct Job {
    pub snapshot: Arc<Snapshot>,
    pub params: ViewParams,
    /// The tab on screen: the Flows window is placed only when it shows.
    pub tab: Tab,
    pub place: Placement,
    /// Snapshots to free (see [`super::app::App::take_derived`]).
    pub garbage: Vec<Arc<Snapshot>>,
}

/// The first visible row that keeps `cursor` in view with as little
/// movement from `offset` as possible, and no empty space below the last
/// row while rows are above the top.
pub(super) fn scrolled(cursor: usize, offset: usize, page: usize, len: usize) -> usize {
    let offset = if cursor < offset {
        cursor
    } else if cursor >= offset + page {
        cursor + 1 - page
    } else {
        offset
    };
    offset.min(len.saturating_sub(page))
}

/// Runs a job: frees its garbage, builds the rows, and for the Flows tab
/// orders the window the screen will show (around the selected flow), so
/// that taking the rows costs the screen's thread next to nothing.
pub fn run_job(job: Job, ctx: RowCtx<'_>, buffer: &mut Vec<usize>) -> Derived {
    drop(job.garbage);
    let mut d = derive_rows(job.snapshot, job.params, None, ctx, buffer);
    if let (Tab::Flows, Some(ordered)) = (job.tab, &mut d.flows) {
        let flows = &d.snapshot.flows;
        let p = &job.place;
        let len = ordered.len();
        let cursor = p
            .selected
            .and_then(|k| ordered.row_of(k, flows))
            .unwrap_or(p.cursor)
            .min(len.saturating_sub(1));
        let offset = scrolled(cursor, p.offset, p.page.max(1), len);
        ordered.ensure(offset..offset + p.page.max(1), flows);
    }
    d
}
