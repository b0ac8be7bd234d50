//! Sorting the Flows tab: by any column, either direction, with a fixed
//! tiebreak so rows whose sort keys are equal never trade places between
//! refreshes.

use std::cmp::Ordering;
use std::net::IpAddr;
use std::ops::Range;

use crate::flow::model::FlowKey;
use crate::flow::table::Entry;

use super::rows::RowCtx;

/// A column of the Flows tab. The order is the on-screen order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    Process,
    Pid,
    Proto,
    State,
    Time,
    Source,
    Address,
    Port,
    Geo,
    Bytes,
    Rate,
}

impl Column {
    pub const ALL: [Column; 11] = [
        Column::Process,
        Column::Pid,
        Column::Proto,
        Column::State,
        Column::Time,
        Column::Source,
        Column::Address,
        Column::Port,
        Column::Geo,
        Column::Bytes,
        Column::Rate,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::Process => "PROCESS",
            Column::Pid => "PID",
            Column::Proto => "PROTO",
            Column::State => "STATE",
            Column::Time => "TIME",
            Column::Source => "SOURCE",
            Column::Address => "ADDRESS",
            Column::Port => "PORT",
            Column::Geo => "GEO",
            Column::Bytes => "BYTES",
            Column::Rate => "RATE",
        }
    }

    /// The columns shown, with or without the source side (`-s`).
    pub fn visible(show_src: bool) -> impl Iterator<Item = Column> {
        Column::ALL
            .into_iter()
            .filter(move |c| show_src || *c != Column::Source)
    }

    /// The direction a column sorts in when first chosen: numbers that mean
    /// "more" (bytes, rates, age) biggest first, names A to Z.
    pub fn default_desc(self) -> bool {
        matches!(self, Column::Bytes | Column::Rate | Column::Time)
    }
}

/// The sort order of the Flows tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortSpec {
    pub column: Column,
    pub desc: bool,
}

impl Default for SortSpec {
    fn default() -> Self {
        SortSpec {
            column: Column::Bytes,
            desc: true,
        }
    }
}

impl SortSpec {
    /// The next (`step` 1) or previous (`step` -1) visible column, in its
    /// default direction.
    pub fn step(self, step: isize, show_src: bool) -> SortSpec {
        let cols: Vec<Column> = Column::visible(show_src).collect();
        let at = cols.iter().position(|c| *c == self.column).unwrap_or(0);
        let n = cols.len() as isize;
        let column = cols[((at as isize + step).rem_euclid(n)) as usize];
        SortSpec {
            column,
            desc: column.default_desc(),
        }
    }
}

/// A row's value in the sort column packed for fast comparison: (tag,
/// value). Tag 0 is a missing value (no owner, no counters), which sorts
/// first; IPv4 addresses (tag 1) sort before IPv6 (tag 2); texts are ranked
/// among the distinct texts first, so that sorting compares integers only.
type Packed = (u8, u128);

const MISSING: Packed = (0, 0);

/// An f64's bits in an order that sorts like the numbers.
fn ordered(v: f64) -> u128 {
    let b = v.to_bits();
    u128::from(if b >> 63 == 1 { !b } else { b | 1 << 63 })
}

fn num(v: Option<f64>) -> Packed {
    v.map_or(MISSING, |v| (1, ordered(v)))
}

fn ip(a: IpAddr) -> Packed {
    match a {
        IpAddr::V4(v) => (1, u128::from(u32::from(v))),
        IpAddr::V6(v) => (2, u128::from(v)),
    }
}

/// Ranks of texts: each distinct text is lowercased and sorted once.
fn ranked<'a>(texts: &[Option<std::borrow::Cow<'a, str>>]) -> Vec<Packed> {
    let mut distinct: Vec<&str> = texts.iter().flatten().map(|t| t.as_ref()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let mut by_lower: Vec<(String, &str)> = distinct.into_iter().map(|t| (t.to_lowercase(), t)).collect();
    by_lower.sort();
    let rank: std::collections::HashMap<&str, u128> = by_lower
        .iter()
        .enumerate()
        .map(|(i, (_, t))| (*t, i as u128))
        .collect();
    texts
        .iter()
        .map(|t| t.as_ref().map_or(MISSING, |t| (1, rank[t.as_ref()])))
        .collect()
}

/// The packed sort values of `rows` with their conntrack ids, in the same
/// order (one pass over the entries where the value needs no ranking).
fn packed(col: Column, rows: &[usize], flows: &[Entry], ctx: &RowCtx<'_>) -> Vec<(Packed, u32)> {
    use std::borrow::Cow;
    let each = |f: &dyn Fn(&Entry) -> Packed| {
        rows.iter()
            .map(|&i| {
                let e = &flows[i];
                (f(e), e.flow.id)
            })
            .collect()
    };
    let with_ids = |keys: Vec<Packed>| {
        keys.into_iter()
            .zip(rows.iter().map(|&i| flows[i].flow.id))
            .collect()
    };
    match col {
        Column::Process => with_ids(ranked(
            &rows
                .iter()
                .map(|&i| flows[i].owner.as_ref().map(|o| Cow::Borrowed(o.comm.as_str())))
                .collect::<Vec<_>>(),
        )),
        Column::State => with_ids(ranked(
            &rows
                .iter()
                .map(|&i| flows[i].flow.state.map(|s| Cow::Borrowed(s.name())))
                .collect::<Vec<_>>(),
        )),
        Column::Geo => {
            // Many flows share an address: ask the book once per address.
            let mut geo: std::collections::HashMap<IpAddr, Option<String>> = Default::default();
            for &i in rows {
                let a = flows[i].flow.orig.dst;
                geo.entry(a).or_insert_with(|| ctx.geo_of(a));
            }
            with_ids(ranked(
                &rows
                    .iter()
                    .map(|&i| geo[&flows[i].flow.orig.dst].as_deref().map(Cow::Borrowed))
                    .collect::<Vec<_>>(),
            ))
        }
        Column::Pid => each(&|e| num(e.owner.as_ref().map(|o| f64::from(o.pid)))),
        Column::Proto => each(&|e| (1, u128::from(e.flow.proto))),
        // Younger first when ascending: the start time, reversed.
        Column::Time => each(&|e| num(e.flow.start_ns.map(|s| -(s as f64)))),
        Column::Source => each(&|e| ip(e.flow.orig.src)),
        Column::Address => each(&|e| ip(e.flow.orig.dst)),
        Column::Port => each(&|e| num(e.flow.orig.dport.map(f64::from))),
        Column::Bytes => each(&|e| num(e.flow.counters.map(|c| (c.orig_bytes + c.reply_bytes) as f64))),
        Column::Rate => each(&|e| num(e.rate.measured_rates().map(|r| r.orig_bytes + r.reply_bytes))),
    }
}

/// The fixed tiebreak after the conntrack id: the original tuple (ids collide).
fn tiebreak(a: &Entry, b: &Entry) -> Ordering {
    let t = |e: &Entry| {
        let o = &e.flow.orig;
        (e.flow.proto, e.flow.zone, o.src, o.sport, o.dst, o.dport)
    };
    t(a).cmp(&t(b))
}

/// Tables at least this long are ordered only where they are looked at.
pub const WINDOWED_FROM: usize = 20_000;

/// The Flows rows in sort order (sort key, then conntrack id, then tuple, so
/// equal keys keep one order across refreshes).
///
/// A full sort of 100 000 rows per snapshot costs several milliseconds;
/// the screen shows a page. So on large tables only a window (the visible
/// rows) is put in its exact place: a selection around it
/// (`select_nth_unstable`) and a sort of the window, linear in the table.
/// Other rows are only known to lie on the correct side of the window, so
/// [`Ordered::get`] answers inside the window only; [`Ordered::ensure`] moves
/// it.
#[derive(Debug)]
pub struct Ordered {
    /// Narrow keys (tag, value, id in one u128) and the flow's index.
    keyed: Vec<(u128, usize)>,
    /// Keys with IPv6 addresses do not fit: those tables are sorted fully.
    wide: Vec<(Packed, u32, usize)>,
    is_wide: bool,
    /// The rows known to be in their final place.
    exact: Range<usize>,
    /// From this many rows on, only windows are ordered (tests lower it).
    pub windowed_from: usize,
}

impl Default for Ordered {
    fn default() -> Self {
        Ordered {
            keyed: Vec::new(),
            wide: Vec::new(),
            is_wide: false,
            exact: 0..0,
            windowed_from: WINDOWED_FROM,
        }
    }
}

fn narrow_order(flows: &[Entry]) -> impl Fn(&(u128, usize), &(u128, usize)) -> Ordering + '_ {
    move |a, b| a.0.cmp(&b.0).then_with(|| tiebreak(&flows[a.1], &flows[b.1]))
}

impl Ordered {
    pub fn len(&self) -> usize {
        if self.is_wide {
            self.wide.len()
        } else {
            self.keyed.len()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The flow index at row `i`, when row `i` is in its final place.
    pub fn get(&self, i: usize) -> Option<usize> {
        if self.is_wide {
            self.wide.get(i).map(|k| k.2)
        } else if self.exact.contains(&i) {
            self.keyed.get(i).map(|k| k.1)
        } else {
            None
        }
    }

    /// Orders `rows` (indices into `flows`) by `spec`: fully for small
    /// tables, else nothing yet (see [`Ordered::ensure`]).
    pub fn build(&mut self, rows: &[usize], flows: &[Entry], spec: SortSpec, ctx: &RowCtx<'_>) {
        let keys = packed(spec.column, rows, flows, ctx);
        // Descending: invert the value only; the tiebreak stays ascending.
        let directed = |(tag, v): Packed| if spec.desc { (u8::MAX - tag, !v) } else { (tag, v) };
        self.is_wide = !keys.iter().all(|((_, v), _)| *v <= u128::from(u64::MAX));
        self.keyed.clear();
        self.wide.clear();
        self.exact = 0..0;
        if self.is_wide {
            self.wide.extend(
                keys.into_iter()
                    .zip(rows.iter())
                    .map(|((k, id), &i)| (directed(k), id, i)),
            );
            self.wide.sort_unstable_by(|a, b| {
                (a.0, a.1)
                    .cmp(&(b.0, b.1))
                    .then_with(|| tiebreak(&flows[a.2], &flows[b.2]))
            });
            return;
        }
        // Every value fits 64 bits: tag, value and conntrack id in one
        // u128, so most comparisons are one integer's.
        self.keyed
            .extend(keys.into_iter().zip(rows.iter()).map(|((k, id), &i)| {
                let (tag, v) = directed(k);
                let v = v & u128::from(u64::MAX);
                ((u128::from(tag) << 96) | (v << 32) | u128::from(id), i)
            }));
        if self.keyed.len() < self.windowed_from {
            self.keyed.sort_unstable_by(narrow_order(flows));
            self.exact = 0..self.keyed.len();
        }
    }

    /// Puts rows `want` (clamped to the table) in their final place.
    pub fn ensure(&mut self, want: Range<usize>, flows: &[Entry]) {
        let end = want.end.min(self.len());
        let start = want.start.min(end);
        if self.is_wide || (self.exact.start <= start && end <= self.exact.end) {
            return;
        }
        let order = narrow_order(flows);
        if start > 0 {
            self.keyed.select_nth_unstable_by(start, &order);
        }
        let tail = &mut self.keyed[start..];
        if end - start < tail.len() {
            tail.select_nth_unstable_by(end - start, &order);
        }
        self.keyed[start..end].sort_unstable_by(&order);
        self.exact = start..end;
    }

    /// The row of the flow `key`, if it is shown. Searches the compact keys
    /// (the conntrack id is in them), not the flows: at 100 000 flows a
    /// pass over the entries costs milliseconds of cache misses.
    pub fn row_of(&self, key: FlowKey, flows: &[Entry]) -> Option<usize> {
        let is = |i: usize| flows[i].flow.key() == key;
        if self.is_wide {
            return self.wide.iter().position(|k| k.1 == key.id && is(k.2));
        }
        let at = self.keyed.iter().position(|k| k.0 as u32 == key.id && is(k.1))?;
        if self.exact.contains(&at) {
            return Some(at);
        }
        // Its rank: how many rows order before it (one pass, no sort).
        let me = self.keyed[at];
        let order = narrow_order(flows);
        Some(
            self.keyed
                .iter()
                .filter(|k| order(k, &me) == Ordering::Less)
                .count(),
        )
    }
}
