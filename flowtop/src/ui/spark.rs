//! Rates over time, kept on the screen's side: the last [`SAMPLES`]
//! intervals per Processes group (the sparkline column), of the header's
//! totals (its graph), of every flow since it first moved ([`flows`],
//! compressed) and of the flow whose details are open (its chart).
//!
//! One sample is taken per snapshot the rows were built for, never per
//! key or frame. Memory is bounded: a group holds two fixed arrays (under
//! 1 KiB with its key, measured by `cargo xtask bench ui`), is dropped once
//! it has been absent for a whole window, and at most [`MAX_GROUPS`] are
//! kept. Which glyphs draw them depends on the locale ([`Glyphs`]).

use std::collections::HashMap;
use std::collections::VecDeque;

use super::rows::ProcKey;

pub mod flows;

/// Samples kept per group: the sparkline's window, in intervals.
pub const SAMPLES: usize = 60;
/// Groups kept at most: a table of a million short-lived programs cannot
/// grow the histories without bound (groups past it get no sparkline).
pub const MAX_GROUPS: usize = 50_000;
/// Rounds between two sweeps of idle groups: a group idle for a window
/// is gone at most this much later.
const SWEEP_EVERY: u64 = (SAMPLES / 4) as u64;
/// Samples the open flow's chart keeps (an hour at the default interval;
/// the oldest go first).
pub const TRACE_SAMPLES: usize = 3600;

/// Which characters draw the pictures: Unicode blocks when the locale
/// says UTF-8, else plain ASCII that any terminal shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Glyphs {
    Unicode,
    Ascii,
}

/// Levels of a one-row sparkline, empty to full.
const BLOCKS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const ASCII_LEVELS: [char; 9] = [' ', '.', ',', ':', '-', '=', '+', '*', '#'];

impl Glyphs {
    /// From the environment, as the C library picks the character set:
    /// the first of LC_ALL, LC_CTYPE, LANG that is set and not empty.
    pub fn from_env() -> Glyphs {
        Glyphs::from_locale(|k| std::env::var(k).ok())
    }

    /// The same from any lookup (tests).
    pub fn from_locale(get: impl Fn(&str) -> Option<String>) -> Glyphs {
        let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
            .iter()
            .filter_map(|k| get(k))
            .find(|v| !v.is_empty())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if locale.contains("utf-8") || locale.contains("utf8") {
            Glyphs::Unicode
        } else {
            Glyphs::Ascii
        }
    }

    fn levels(self) -> &'static [char; 9] {
        match self {
            Glyphs::Unicode => &BLOCKS,
            Glyphs::Ascii => &ASCII_LEVELS,
        }
    }

    /// The marks of a sparkline of sums: more sent, more received.
    pub fn up_down(self) -> (char, char) {
        match self {
            Glyphs::Unicode => ('↑', '↓'),
            Glyphs::Ascii => ('^', 'v'),
        }
    }

    /// `values` as one row of level characters, scaled to their largest;
    /// None (no sample yet) is a space, any value above zero at least the
    /// lowest level, so that a small burst still shows.
    pub fn sparkline(self, values: impl Iterator<Item = Option<f32>> + Clone) -> String {
        let max = values.clone().flatten().fold(0f32, f32::max);
        let levels = self.levels();
        values
            .map(|v| match v {
                Some(v) if v > 0.0 && max > 0.0 => {
                    let l = (v / max * 8.0).ceil() as usize;
                    levels[l.clamp(1, 8)]
                }
                _ => levels[0],
            })
            .collect()
    }
}

/// The last [`SAMPLES`] rates both ways, indexed by round (`round %
/// SAMPLES`): writing after a gap zeroes the rounds missed, so that a
/// group absent for a while costs nothing until it shows again.
#[derive(Debug, Clone)]
pub struct Series {
    sent: [f32; SAMPLES],
    received: [f32; SAMPLES],
    /// The round of the first and of the last sample written.
    born: u64,
    last: u64,
}

impl Series {
    fn new(round: u64) -> Series {
        Series {
            sent: [0.0; SAMPLES],
            received: [0.0; SAMPLES],
            born: round,
            last: round,
        }
    }

    /// Writes round `round`'s rates (rounds only grow).
    fn put(&mut self, round: u64, sent: f64, received: f64) {
        let missed = round.saturating_sub(self.last + 1).min(SAMPLES as u64);
        for r in round - missed..round {
            let i = (r % SAMPLES as u64) as usize;
            self.sent[i] = 0.0;
            self.received[i] = 0.0;
        }
        let i = (round % SAMPLES as u64) as usize;
        self.sent[i] = sent as f32;
        self.received[i] = received as f32;
        self.last = round;
    }

    /// The sample of round `r` as of round `now`: None before the series
    /// began, zero after its last sample.
    fn at(&self, r: u64) -> Option<(f32, f32)> {
        if r < self.born {
            return None;
        }
        if r > self.last || r + SAMPLES as u64 <= self.last {
            return Some((0.0, 0.0));
        }
        let i = (r % SAMPLES as u64) as usize;
        Some((self.sent[i], self.received[i]))
    }

    /// The last `n` (at most [`SAMPLES`]) rounds up to `now`, oldest
    /// first, as (sent, received).
    pub fn last_n(&self, now: u64, n: usize) -> impl Iterator<Item = Option<(f32, f32)>> + Clone + '_ {
        let n = n.min(SAMPLES) as u64;
        let from = (now + 1).saturating_sub(n);
        let pad = n - (now + 1 - from);
        (0..pad)
            .map(|_| None)
            .chain((from..=now).map(move |r| self.at(r)))
    }
}

/// A sparkline of `width` columns for a group: its first column marks
/// the direction that moved more over the window, the rest are the sums
/// of both ways, oldest on the left.
pub fn sum_sparkline(s: &Series, now: u64, width: usize, g: Glyphs) -> String {
    let n = width.saturating_sub(1);
    if n == 0 {
        return String::new();
    }
    let samples = s.last_n(now, n);
    let (sent, received) = samples.clone().flatten().fold((0f64, 0f64), |(a, b), (s, r)| {
        (a + f64::from(s), b + f64::from(r))
    });
    let (up, down) = g.up_down();
    let mark = if sent + received == 0.0 {
        ' '
    } else if sent >= received {
        up
    } else {
        down
    };
    let mut out = String::with_capacity(width * 3);
    out.push(mark);
    out.push_str(&g.sparkline(samples.map(|v| v.map(|(s, r)| s + r))));
    out
}

/// Columns of the Processes tab's TREND column on a terminal `width`
/// wide: what is left after the fixed columns and 32 of the command, up
/// to the whole window; none below 6 (a narrow terminal keeps the
/// numbers).
pub fn trend_width(width: u16) -> usize {
    /// The columns before COMMAND, with their separators.
    const FIXED: usize = 78 + 1;
    let w = usize::from(width).saturating_sub(FIXED + 32).min(SAMPLES + 1);
    if w < 6 {
        0
    } else {
        w
    }
}

/// The header graph's samples on a terminal `width` wide (0: none).
pub fn meter_width(width: u16) -> usize {
    match width {
        0..=119 => 0,
        120..=159 => 10,
        _ => 20,
    }
}

/// The rate histories of the Processes groups, by row key.
#[derive(Debug, Default)]
pub struct RateHistory {
    groups: HashMap<ProcKey, Box<Series>>,
    /// Rounds recorded so far; the current one is `round - 1`.
    round: u64,
}

impl RateHistory {
    /// Records one round: each group's (sent, received) rate of this
    /// interval. Groups not listed count as idle; those idle for a whole
    /// window are dropped (looked for every [`SWEEP_EVERY`] rounds, so
    /// that a round costs only the rows given).
    pub fn record<'a>(&mut self, rows: impl IntoIterator<Item = (&'a ProcKey, f64, f64)>) {
        let round = self.round;
        for (key, sent, received) in rows {
            if let Some(s) = self.groups.get_mut(key) {
                s.put(round, sent, received);
            } else if self.groups.len() < MAX_GROUPS {
                let mut s = Box::new(Series::new(round));
                s.put(round, sent, received);
                self.groups.insert(key.clone(), s);
            }
        }
        self.round += 1;
        if self.round.is_multiple_of(SWEEP_EVERY) {
            self.sweep();
        }
    }

    /// Drops the groups with no sample in the last window.
    pub fn sweep(&mut self) {
        let now = self.now();
        self.groups.retain(|_, s| s.last + (SAMPLES as u64) > now);
    }

    /// The current round (the last one recorded).
    pub fn now(&self) -> u64 {
        self.round.saturating_sub(1)
    }

    pub fn get(&self, key: &ProcKey) -> Option<&Series> {
        self.groups.get(key).map(|b| &**b)
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Bytes the histories hold: the table's slots, the series and the
    /// keys' text (for the bench's bytes per group).
    pub fn heap_bytes(&self) -> usize {
        // hashbrown keeps a control byte per slot and 1/8 of them free.
        let slot = std::mem::size_of::<(ProcKey, Box<Series>)>() + 1;
        let slots = self.groups.capacity() * 8 / 7;
        let keys: usize = self
            .groups
            .keys()
            .map(|k| match k {
                ProcKey::Program(name, _) => name.capacity(),
                _ => 0,
            })
            .sum();
        slots * slot + self.groups.len() * std::mem::size_of::<Series>() + keys
    }

    /// The sparkline of `key`'s group, `width` columns (None: no history).
    pub fn sparkline(&self, key: &ProcKey, width: usize, g: Glyphs) -> Option<String> {
        self.get(key).map(|s| sum_sparkline(s, self.now(), width, g))
    }
}

/// The header's totals: one series, a sample per snapshot.
#[derive(Debug)]
pub struct Totals {
    series: Series,
    round: u64,
}

impl Default for Totals {
    fn default() -> Totals {
        Totals {
            series: Series::new(0),
            round: 0,
        }
    }
}

impl Totals {
    pub fn record(&mut self, sent: f64, received: f64) {
        self.series.put(self.round, sent, received);
        self.round += 1;
    }

    /// Samples taken so far.
    pub fn rounds(&self) -> u64 {
        self.round
    }

    /// Sparklines of the last `n` rounds, out (sent) and in (received);
    /// shorter while fewer were taken.
    pub fn sparklines(&self, n: usize, g: Glyphs) -> (String, String) {
        let n = n.min(self.round as usize);
        let now = self.round.saturating_sub(1);
        let s = self.series.last_n(now, n);
        (
            g.sparkline(s.clone().map(|v| v.map(|v| v.0))),
            g.sparkline(s.map(|v| v.map(|v| v.1))),
        )
    }
}

/// The rates of the flow whose details are open: (seconds since the
/// epoch, original direction, reply direction). `past` is the flow's kept
/// history when the details opened ([`flows::FlowHistory::points`],
/// coarser the older), `points` one per interval since, the newest
/// [`TRACE_SAMPLES`] kept.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub past: Vec<(f64, f64, f64)>,
    pub points: VecDeque<(f64, f64, f64)>,
}

impl Trace {
    pub fn push(&mut self, at_secs: f64, orig: f64, reply: f64) {
        if self.points.len() == TRACE_SAMPLES {
            self.points.pop_front();
        }
        self.points.push_back((at_secs, orig, reply));
    }

    /// Every point, the past then the live ones, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &(f64, f64, f64)> + Clone {
        self.past.iter().chain(self.points.iter())
    }

    pub fn len(&self) -> usize {
        self.past.len() + self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(name: &str) -> ProcKey {
        ProcKey::Program(name.into(), 1000)
    }

    #[test]
    fn locale_picks_the_glyphs() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(
            Glyphs::from_locale(env(&[("LANG", "en_US.UTF-8")])),
            Glyphs::Unicode
        );
        assert_eq!(
            Glyphs::from_locale(env(&[("LANG", "de_DE.utf8")])),
            Glyphs::Unicode
        );
        assert_eq!(Glyphs::from_locale(env(&[])), Glyphs::Ascii);
        assert_eq!(Glyphs::from_locale(env(&[("LANG", "C")])), Glyphs::Ascii);
        // LC_ALL wins over LANG, LC_CTYPE too; an empty one is skipped.
        assert_eq!(
            Glyphs::from_locale(env(&[("LC_ALL", "C"), ("LANG", "en_US.UTF-8")])),
            Glyphs::Ascii
        );
        assert_eq!(
            Glyphs::from_locale(env(&[("LC_CTYPE", "C.UTF-8"), ("LANG", "POSIX")])),
            Glyphs::Unicode
        );
        assert_eq!(
            Glyphs::from_locale(env(&[("LC_ALL", ""), ("LANG", "C.UTF-8")])),
            Glyphs::Unicode
        );
    }

    #[test]
    fn sparkline_scales_to_its_largest_and_keeps_small_values_visible() {
        let v = [None, Some(0.0), Some(1.0), Some(50.0), Some(100.0)];
        assert_eq!(Glyphs::Unicode.sparkline(v.iter().copied()), "  ▁▄█");
        assert_eq!(Glyphs::Ascii.sparkline(v.iter().copied()), "  .-#");
        assert!(Glyphs::Ascii.sparkline(v.iter().copied()).is_ascii());
        assert_eq!(Glyphs::Unicode.sparkline([Some(0.0); 3].into_iter()), "   ");
    }

    #[test]
    fn groups_appear_keep_a_window_go_idle_and_are_dropped() {
        let mut h = RateHistory::default();
        let (a, b) = (prog("/usr/bin/a"), prog("/usr/bin/b"));
        // Round 0: only a; rounds 1..=3: both, b sending in a burst.
        h.record([(&a, 100.0, 0.0)]);
        assert_eq!(h.len(), 1);
        for rate in [0.0, 800.0, 0.0] {
            h.record([(&a, 100.0, 0.0), (&b, rate, 0.0)]);
        }
        assert_eq!(h.len(), 2);
        // b began at round 1: nothing before, then its burst.
        assert_eq!(h.sparkline(&b, 6, Glyphs::Ascii).as_deref(), Some("^   # "));
        // a is steady, sending: full all along.
        assert_eq!(h.sparkline(&a, 5, Glyphs::Unicode).as_deref(), Some("↑████"));
        // Received more than sent: marked down.
        let c = prog("c");
        h.record([(&c, 1.0, 9.0)]);
        assert_eq!(h.sparkline(&c, 3, Glyphs::Ascii).as_deref(), Some("v #"));
        // a and b went idle at round 4: zeros, not their last rate.
        assert_eq!(h.sparkline(&a, 4, Glyphs::Ascii).as_deref(), Some("^## "));
        // Idle a whole window: dropped at the next sweep (every
        // SWEEP_EVERY rounds); c, recorded all along, stays.
        for _ in 0..(SAMPLES as u64 + SWEEP_EVERY) {
            h.record([(&c, 1.0, 0.0)]);
        }
        assert!(h.get(&a).is_none() && h.get(&b).is_none(), "idle groups dropped");
        assert!(h.get(&c).is_some(), "an active group stays");
        // The window is bounded: 60 samples whatever the rounds.
        let s = h.get(&c).expect("c");
        assert_eq!(s.last_n(h.now(), 1000).count(), SAMPLES);
    }

    #[test]
    fn a_group_back_after_a_gap_shows_zeros_for_the_gap() {
        let mut h = RateHistory::default();
        let a = prog("a");
        h.record([(&a, 10.0, 0.0)]);
        h.record([]);
        h.record([]);
        h.record([(&a, 10.0, 0.0)]);
        assert_eq!(h.sparkline(&a, 5, Glyphs::Ascii).as_deref(), Some("^#  #"));
        // A gap longer than the window leaves only the new sample.
        for _ in 0..(SAMPLES + 5) {
            h.record([]);
        }
        h.record([(&a, 10.0, 0.0)]);
        let line = h.sparkline(&a, SAMPLES + 1, Glyphs::Ascii).expect("a");
        assert_eq!(line.matches('#').count(), 1, "{line:?}");
    }

    #[test]
    fn a_group_costs_under_a_kibibyte() {
        let mut h = RateHistory::default();
        let keys: Vec<ProcKey> = (0..5000)
            .map(|i| prog(&format!("/usr/bin/program-{i}")))
            .collect();
        for _ in 0..SAMPLES {
            h.record(keys.iter().map(|k| (k, 1.0, 2.0)));
        }
        let per = h.heap_bytes() / h.len();
        assert!(per < 1024, "{per} bytes per group");
    }

    #[test]
    fn the_number_of_groups_is_bounded() {
        let mut h = RateHistory::default();
        let keys: Vec<ProcKey> = (0..MAX_GROUPS as u32 + 10).map(ProcKey::Pid).collect();
        h.record(keys.iter().map(|k| (k, 1.0, 0.0)));
        assert_eq!(h.len(), MAX_GROUPS);
    }

    #[test]
    fn totals_and_trace_are_bounded() {
        let mut t = Totals::default();
        for i in 0..200 {
            t.record(f64::from(i), 0.0);
        }
        let (out, inn) = t.sparklines(8, Glyphs::Unicode);
        assert_eq!(out.chars().count(), 8);
        assert_eq!(inn.trim(), "");
        let mut tr = Trace::default();
        for i in 0..(TRACE_SAMPLES + 10) {
            tr.push(i as f64, 1.0, 1.0);
        }
        assert_eq!(tr.points.len(), TRACE_SAMPLES);
        assert_eq!(tr.points.front().map(|p| p.0), Some(10.0));
    }
}
