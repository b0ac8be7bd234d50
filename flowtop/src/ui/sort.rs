//! Sorting the Flows tab: by any column, either direction, with a fixed
//! tiebreak so rows whose sort keys are equal never trade places between
//! refreshes.

use std::cmp::Ordering;
use std::net::IpAddr;
use std::ops::Range;

use std::collections::HashMap;

use crate::flow::model::FlowKey;
use crate::flow::table::{Entry, Flows};

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
    /// The owner's container, app or unit: shown with `c` (issue 15).
    Identity,
}

impl Column {
    pub const ALL: [Column; 12] = [
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
        Column::Identity,
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
            Column::Identity => "CONTAINER/UNIT",
        }
    }

    /// The columns shown, with or without the source side (`-s`).
    pub fn visible(show_src: bool) -> impl Iterator<Item = Column> {
        Column::shown(show_src, false)
    }

    /// The columns shown, with or without the source side (`-s`) and the
    /// CONTAINER/UNIT column (`c`).
    pub fn shown(show_src: bool, show_identity: bool) -> impl Iterator<Item = Column> {
        Column::ALL
            .into_iter()
            .filter(move |c| show_src || *c != Column::Source)
            .filter(move |c| show_identity || *c != Column::Identity)
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

/// What the CONTAINER/UNIT column shows of a flow's owner.
pub fn identity_label(e: &crate::flow::table::Entry) -> Option<&str> {
    e.owner.as_ref()?.identity.as_deref()?.label()
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

/// Ranks of texts: each distinct text is lowercased and sorted once, so
/// that rows compare integers only.
fn ranks<'a>(texts: impl Iterator<Item = &'a str>) -> HashMap<&'a str, u128> {
    let mut distinct: Vec<&str> = texts.collect();
    distinct.sort_unstable();
    distinct.dedup();
    let mut by_lower: Vec<(String, &str)> = distinct.into_iter().map(|t| (t.to_lowercase(), t)).collect();
    by_lower.sort();
    by_lower
        .into_iter()
        .enumerate()
        .map(|(i, (_, t))| (t, i as u128))
        .collect()
}

/// The packed sort value of a flow in one column. Columns of text hold
/// the ranks of the distinct texts of the rows (worked out once per
/// build), so that no row needs a text of its own.
enum Keyer {
    Plain(Column),
    /// Process names by rank.
    Comm(HashMap<String, u128>),
    /// Container, app or unit labels by rank.
    Identity(HashMap<String, u128>),
    /// State names by rank.
    State(HashMap<&'static str, u128>),
    /// Per destination address: its place among the geography texts.
    Geo(HashMap<IpAddr, Packed>),
}

impl Keyer {
    fn new(col: Column, rows: &[usize], flows: &Flows, ctx: &RowCtx<'_>) -> Keyer {
        let each = || rows.iter().map(|&i| &flows[i]);
        match col {
            Column::Process => {
                let r = ranks(each().filter_map(|e| e.owner.as_ref().map(|o| o.comm.as_str())));
                Keyer::Comm(r.into_iter().map(|(t, v)| (t.to_owned(), v)).collect())
            }
            Column::Identity => {
                let r = ranks(each().filter_map(|e| identity_label(e)));
                Keyer::Identity(r.into_iter().map(|(t, v)| (t.to_owned(), v)).collect())
            }
            Column::State => Keyer::State(ranks(each().filter_map(|e| e.flow.state.map(|s| s.name())))),
            Column::Geo => {
                // Many flows share an address: ask the book once per address.
                let mut geo: HashMap<IpAddr, Option<String>> = HashMap::new();
                for e in each() {
                    let a = e.flow.orig.dst;
                    geo.entry(a).or_insert_with(|| ctx.geo_of(a));
                }
                let rank = ranks(geo.values().flatten().map(String::as_str));
                let by_ip = geo
                    .iter()
                    .map(|(ip, g)| (*ip, g.as_deref().map_or(MISSING, |g| (1, rank[g]))))
                    .collect();
                Keyer::Geo(by_ip)
            }
            col => Keyer::Plain(col),
        }
    }

    /// The key of the flow in `slot` of `flows`.
    fn key(&self, flows: &Flows, slot: usize) -> Packed {
        let e = &flows[slot];
        match self {
            Keyer::Comm(r) => e.owner.as_ref().map_or(MISSING, |o| (1, r[o.comm.as_str()])),
            Keyer::State(r) => e.flow.state.map_or(MISSING, |s| (1, r[s.name()])),
            Keyer::Identity(r) => identity_label(e).map_or(MISSING, |l| (1, r[l])),
            Keyer::Geo(by_ip) => by_ip.get(&e.flow.orig.dst).copied().unwrap_or(MISSING),
            Keyer::Plain(col) => match col {
                Column::Pid => num(e.owner.as_ref().map(|o| f64::from(o.pid))),
                Column::Proto => (1, u128::from(e.flow.proto)),
                // Younger first when ascending: the start time, reversed.
                Column::Time => num(e.flow.start().map(|s| -(s as f64))),
                Column::Source => ip(e.flow.orig.src),
                Column::Address => ip(e.flow.orig.dst),
                Column::Port => num(e.flow.orig.dport.map(f64::from)),
                Column::Bytes => num(e.flow.counters.map(|c| (c.orig_bytes + c.reply_bytes) as f64)),
                Column::Rate => num(flows.measured_rates(slot).map(|r| r.orig_bytes + r.reply_bytes)),
                Column::Process | Column::State | Column::Geo | Column::Identity => MISSING,
            },
        }
    }

    /// Whether some row's value needs more than 64 bits (IPv6 addresses;
    /// no other column's does).
    fn any_wide(&self, rows: &[usize], flows: &Flows) -> bool {
        let wide = |a: IpAddr| ip(a).1 > u128::from(u64::MAX);
        match self {
            Keyer::Plain(Column::Source) => rows.iter().any(|&i| wide(flows[i].flow.orig.src)),
            Keyer::Plain(Column::Address) => rows.iter().any(|&i| wide(flows[i].flow.orig.dst)),
            _ => false,
        }
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
    /// Narrow keys: tag, value and id in one u128, and the flow's slot.
    keyed: Vec<Narrow>,
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

/// A row of a table whose sort values fit 64 bits: the u128 key split in
/// two words, so that a row takes 24 bytes rather than the 32 of a u128
/// beside an index (a u128 is 16-byte aligned).
#[derive(Debug, Clone, Copy)]
struct Narrow {
    hi: u64,
    lo: u64,
    slot: u32,
}

impl Narrow {
    fn new(key: u128, slot: usize) -> Narrow {
        Narrow {
            hi: (key >> 64) as u64,
            lo: key as u64,
            // Slots are the store's, which are u32.
            slot: slot as u32,
        }
    }

    fn id(&self) -> u32 {
        self.lo as u32
    }

    fn slot(&self) -> usize {
        self.slot as usize
    }
}

fn narrow_order(flows: &Flows) -> impl Fn(&Narrow, &Narrow) -> Ordering + '_ {
    move |a, b| {
        (a.hi, a.lo)
            .cmp(&(b.hi, b.lo))
            .then_with(|| tiebreak(&flows[a.slot()], &flows[b.slot()]))
    }
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
            self.keyed.get(i).map(Narrow::slot)
        } else {
            None
        }
    }

    /// Orders `rows` (slots of `flows`) by `spec`: fully for small
    /// tables, else nothing yet (see [`Ordered::ensure`]).
    pub fn build(&mut self, rows: &[usize], flows: &Flows, spec: SortSpec, ctx: &RowCtx<'_>) {
        let keyer = Keyer::new(spec.column, rows, flows, ctx);
        // Descending: invert the value only; the tiebreak stays ascending.
        let directed = |(tag, v): Packed| if spec.desc { (u8::MAX - tag, !v) } else { (tag, v) };
        self.is_wide = keyer.any_wide(rows, flows);
        // Both emptied and shrunk: a table that was much longer must not
        // keep its rows' memory.
        self.keyed = Vec::new();
        self.wide = Vec::new();
        self.exact = 0..0;
        if self.is_wide {
            self.wide = rows
                .iter()
                .map(|&i| {
                    let e = &flows[i];
                    (directed(keyer.key(flows, i)), e.flow.id, i)
                })
                .collect();
            self.wide.sort_unstable_by(|a, b| {
                (a.0, a.1)
                    .cmp(&(b.0, b.1))
                    .then_with(|| tiebreak(&flows[a.2], &flows[b.2]))
            });
            return;
        }
        // Every value fits 64 bits: tag, value and conntrack id in one
        // u128, so most comparisons are one integer's.
        self.keyed = rows
            .iter()
            .map(|&i| {
                let e = &flows[i];
                let (tag, v) = directed(keyer.key(flows, i));
                let v = v & u128::from(u64::MAX);
                Narrow::new((u128::from(tag) << 96) | (v << 32) | u128::from(e.flow.id), i)
            })
            .collect();
        if self.keyed.len() < self.windowed_from {
            self.keyed.sort_unstable_by(narrow_order(flows));
            self.exact = 0..self.keyed.len();
        }
    }

    /// Puts rows `want` (clamped to the table) in their final place.
    pub fn ensure(&mut self, want: Range<usize>, flows: &Flows) {
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
    pub fn row_of(&self, key: FlowKey, flows: &Flows) -> Option<usize> {
        let is = |i: usize| flows[i].flow.key() == key;
        if self.is_wide {
            return self.wide.iter().position(|k| k.1 == key.id && is(k.2));
        }
        let at = self.keyed.iter().position(|k| k.id() == key.id && is(k.slot()))?;
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
