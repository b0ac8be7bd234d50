//! Sorting the Flows tab: by any column, either direction, with a fixed
//! tiebreak so rows whose sort keys are equal never trade places between
//! refreshes.

use std::cmp::Ordering;
use std::net::IpAddr;

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

/// One row's value in the sort column, computed once per derivation.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Key {
    /// Absent values (no owner, no counters) sort before every present one.
    Missing,
    Num(f64),
    Ip(IpAddr),
    Text(String),
}

fn key_of(col: Column, e: &Entry, ctx: &RowCtx<'_>) -> Key {
    let f = &e.flow;
    let num = |v: Option<f64>| v.map_or(Key::Missing, Key::Num);
    match col {
        Column::Process => e
            .owner
            .as_ref()
            .map_or(Key::Missing, |o| Key::Text(o.comm.to_lowercase())),
        Column::Pid => num(e.owner.as_ref().map(|o| f64::from(o.pid))),
        Column::Proto => Key::Num(f64::from(f.proto)),
        Column::State => f.state.map_or(Key::Missing, |s| Key::Text(s.name().to_owned())),
        // Older first when ascending: the start time, reversed.
        Column::Time => num(f.start_ns.map(|s| -(s as f64))),
        Column::Source => Key::Ip(f.orig.src),
        Column::Address => Key::Ip(f.orig.dst),
        Column::Port => num(f.orig.dport.map(f64::from)),
        Column::Geo => ctx.geo_of(f.orig.dst).map_or(Key::Missing, Key::Text),
        Column::Bytes => num(f.counters.map(|c| (c.orig_bytes + c.reply_bytes) as f64)),
        Column::Rate => num(e.rate.measured_rates().map(|r| r.orig_bytes + r.reply_bytes)),
    }
}

/// The fixed tiebreak: conntrack id, then the original tuple (ids collide).
fn tiebreak(a: &Entry, b: &Entry) -> Ordering {
    let t = |e: &Entry| {
        let o = &e.flow.orig;
        (
            e.flow.id,
            e.flow.proto,
            e.flow.zone,
            o.src,
            o.sport,
            o.dst,
            o.dport,
        )
    };
    t(a).cmp(&t(b))
}

/// Sorts `rows` (indices into `flows`) by `spec`, then by the tiebreak.
pub fn sort_rows(rows: &mut Vec<usize>, flows: &[Entry], spec: SortSpec, ctx: &RowCtx<'_>) {
    let mut keyed: Vec<(Key, usize)> = rows
        .iter()
        .map(|&i| (key_of(spec.column, &flows[i], ctx), i))
        .collect();
    keyed.sort_by(|(ka, a), (kb, b)| {
        let primary = ka.partial_cmp(kb).unwrap_or(Ordering::Equal);
        let primary = if spec.desc { primary.reverse() } else { primary };
        primary.then_with(|| tiebreak(&flows[*a], &flows[*b]))
    });
    rows.clear();
    rows.extend(keyed.into_iter().map(|(_, i)| i));
}
