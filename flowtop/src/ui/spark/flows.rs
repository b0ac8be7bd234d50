//! Every flow's rates since flowtop first saw it move, for the chart of
//! the flow detail view: kept for all flows (not only the open one) so
//! that the chart of a flow opened late still starts at its beginning.
//!
//! A router has 100 000 flows and more, so a flow's history is small and
//! of fixed size ([`FlowRates`], under 200 bytes with its allocation):
//! rates are quantised to a byte each way on a log scale ([`quantise`],
//! within 5 %), the last [`RECENT`] intervals are kept one by one, and
//! older ones are averaged into at most [`OLDER`] buckets of equal width
//! that double (two merged into one) whenever they run out, so a flow of
//! any age keeps its whole life at a resolution that falls with its age.
//!
//! Costs: a flow that never moved a byte has no entry; one that went
//! idle is not touched until it moves again (its idle rounds are zeros
//! filled in then, in bulk). Entries of flows that left the table are
//! dropped by [`FlowHistory::remove`] (the screen knows them from the
//! snapshots' ended lists) or [`FlowHistory::sweep`] (against the whole
//! table); at most [`MAX_FLOWS`] are kept, the idlest going first.

use std::collections::HashMap;

use crate::flow::model::FlowKey;

/// Intervals kept one by one per flow.
pub const RECENT: usize = 32;
/// Buckets of older intervals per flow (even: they merge in pairs).
pub const OLDER: usize = 40;
/// Flows with a history at most (about 30 MB at 200 bytes each).
pub const MAX_FLOWS: usize = 150_000;

/// Steps of the quantised rate per doubling: 2^(1/7) between steps, so a
/// value read back is within 5 % of the one stored; 255 steps reach
/// 2^(254/7) B/s, about 86 GB/s.
const STEPS_PER_DOUBLING: f64 = 7.0;

/// A rate in bytes per second as one byte: 0 is zero, `q` above is
/// 2^((q-1)/7) B/s (rates under 1 B/s above zero read back as 1 B/s).
pub fn quantise(rate: f64) -> u8 {
    if rate.is_nan() || rate <= 0.0 {
        0
    } else if rate <= 1.0 {
        1
    } else {
        (1.0 + (rate.log2() * STEPS_PER_DOUBLING).round()).min(255.0) as u8
    }
}

/// The rate a quantised byte stands for.
pub fn rate_of(q: u8) -> f64 {
    if q == 0 {
        0.0
    } else {
        (f64::from(q - 1) / STEPS_PER_DOUBLING).exp2()
    }
}

fn pair(sent: f64, received: f64) -> [u8; 2] {
    [quantise(sent), quantise(received)]
}

/// One flow's rates both ways since its first sample (round `born`), in
/// fixed room: the recent rounds in a ring indexed by round, the older
/// ones averaged in buckets of `1 << scale` rounds each, the bucket being
/// filled as a running sum.
#[derive(Debug, Clone)]
pub struct FlowRates {
    /// Rounds `(last - RECENT, last]` (those from `born` on), at
    /// `round % RECENT`.
    recent: [[u8; 2]; RECENT],
    /// `older[..older_len]`: bucket `i` averages rounds `born + i * w ..
    /// born + (i + 1) * w`, `w = 1 << scale`.
    older: [[u8; 2]; OLDER],
    /// The rounds of the bucket being filled: their count and rate sums.
    acc: [f32; 2],
    acc_n: u32,
    /// Wall time of round `born`, seconds since the epoch.
    born_secs: f64,
    born: u32,
    /// The last round written (a sample or zeros).
    last: u32,
    /// The round of the last sweep that found the flow in the table.
    seen: u32,
    older_len: u8,
    scale: u8,
}

impl FlowRates {
    fn new(round: u32, secs: f64, sent: f64, received: f64) -> FlowRates {
        let mut f = FlowRates {
            recent: [[0; 2]; RECENT],
            older: [[0; 2]; OLDER],
            acc: [0.0; 2],
            acc_n: 0,
            born_secs: secs,
            born: round,
            last: round,
            seen: round,
            older_len: 0,
            scale: 0,
        };
        f.recent[round as usize % RECENT] = pair(sent, received);
        f
    }

    /// Rounds per older bucket.
    fn width(&self) -> u32 {
        1 << self.scale
    }

    /// Writes round `round`'s rates (rounds only grow; an earlier or the
    /// same round is ignored).
    fn put(&mut self, round: u32, sent: f64, received: f64) {
        if round <= self.last {
            return;
        }
        self.advance(round);
        self.recent[round as usize % RECENT] = pair(sent, received);
    }

    /// Moves the ring on to end at round `to`: the rounds it no longer
    /// holds go to the older buckets, the rounds after `last` are zeros.
    fn advance(&mut self, to: u32) {
        let (born, last, to) = (i64::from(self.born), i64::from(self.last), i64::from(to));
        let ring = RECENT as i64;
        // Rounds leaving the ring: those before `to - RECENT + 1`, from
        // the oldest the ring holds (at most RECENT real samples), then
        // zeros for rounds that were never in it.
        let first_held = born.max(last + 1 - ring);
        let leave_end = to - ring; // inclusive
        let mut r = first_held;
        while r <= leave_end.min(last) {
            let q = self.recent[(r as usize) % RECENT];
            self.spill(rate_of(q[0]) as f32, rate_of(q[1]) as f32, 1);
            r += 1;
        }
        if leave_end >= r {
            self.spill(0.0, 0.0, (leave_end - r + 1) as u32);
        }
        for r in (last + 1)..=to.min(last + ring) {
            self.recent[(r as usize) % RECENT] = [0; 2];
        }
        self.last = to as u32;
    }

    /// Adds `n` rounds of rates `(sent, received)` to the older buckets.
    fn spill(&mut self, sent: f32, received: f32, mut n: u32) {
        while n > 0 {
            let k = n.min(self.width() - self.acc_n);
            self.acc[0] += sent * k as f32;
            self.acc[1] += received * k as f32;
            self.acc_n += k;
            n -= k;
            if self.acc_n == self.width() {
                self.close_bucket();
            }
        }
    }

    fn close_bucket(&mut self) {
        let w = self.width() as f32;
        self.older[usize::from(self.older_len)] =
            pair(f64::from(self.acc[0] / w), f64::from(self.acc[1] / w));
        self.older_len += 1;
        self.acc = [0.0; 2];
        self.acc_n = 0;
        if usize::from(self.older_len) == OLDER {
            // Out of buckets: each pair becomes one twice as wide.
            for i in 0..OLDER / 2 {
                let (a, b) = (self.older[2 * i], self.older[2 * i + 1]);
                self.older[i] = [0, 1].map(|d| quantise((rate_of(a[d]) + rate_of(b[d])) / 2.0));
            }
            self.older_len = (OLDER / 2) as u8;
            self.scale += 1;
        }
    }

    /// The samples as (round, rounds it covers, sent, received), oldest
    /// first: the older buckets, the one being filled, the recent rounds,
    /// then the rounds since `last` up to `now` as zeros (the flow is idle
    /// but still there).
    pub fn samples(&self, now: u32) -> Vec<(u32, u32, f64, f64)> {
        let w = self.width();
        let mut out = Vec::with_capacity(OLDER + RECENT + 3);
        for (i, q) in self.older[..usize::from(self.older_len)].iter().enumerate() {
            out.push((self.born + i as u32 * w, w, rate_of(q[0]), rate_of(q[1])));
        }
        let mut r = self.born + u32::from(self.older_len) * w;
        if self.acc_n > 0 {
            let n = self.acc_n as f32;
            out.push((
                r,
                self.acc_n,
                f64::from(self.acc[0] / n),
                f64::from(self.acc[1] / n),
            ));
            r += self.acc_n;
        }
        while r <= self.last {
            let q = self.recent[r as usize % RECENT];
            out.push((r, 1, rate_of(q[0]), rate_of(q[1])));
            r += 1;
        }
        if now > self.last {
            out.push((self.last + 1, now - self.last, 0.0, 0.0));
            if now > self.last + 1 {
                out.push((now, 1, 0.0, 0.0));
            }
        }
        out
    }

    /// Rounds covered by the older buckets (what the bound trades).
    pub fn bucket_width(&self) -> u32 {
        self.width()
    }
}

/// The histories of all flows, by key.
#[derive(Debug, Default)]
pub struct FlowHistory {
    flows: HashMap<FlowKey, Box<FlowRates>>,
    /// Rounds recorded so far; the current one is `round - 1`.
    round: u32,
    /// Wall time of the current round, seconds since the epoch.
    now_secs: f64,
}

impl FlowHistory {
    /// Records one round at wall time `secs`: the flows that moved bytes
    /// in this interval with their (sent, received) rates. Flows not given
    /// are idle this round: they cost nothing now.
    pub fn record(&mut self, secs: f64, moving: impl IntoIterator<Item = (FlowKey, f64, f64)>) {
        let round = self.round;
        self.now_secs = secs;
        for (key, sent, received) in moving {
            if let Some(f) = self.flows.get_mut(&key) {
                f.put(round, sent, received);
                continue;
            }
            if sent <= 0.0 && received <= 0.0 {
                continue;
            }
            if self.flows.len() >= MAX_FLOWS {
                self.evict();
            }
            self.flows
                .insert(key, Box::new(FlowRates::new(round, secs, sent, received)));
        }
        self.round += 1;
    }

    /// Drops the idlest eighth of the flows (those that moved last the
    /// longest ago, the oldest of them first): room for new flows at the
    /// cost of a sort every MAX_FLOWS / 8 new flows.
    fn evict(&mut self) {
        let mut by_idle: Vec<(u32, u32, FlowKey)> =
            self.flows.iter().map(|(k, f)| (f.last, f.born, *k)).collect();
        let n = MAX_FLOWS / 8;
        by_idle.select_nth_unstable_by_key(n, |&(last, born, _)| (last, born));
        for (_, _, k) in &by_idle[..n] {
            self.flows.remove(k);
        }
    }

    /// Drops the histories of flows that left: `present` are the flows of
    /// the table now, `keep` says which others to keep all the same (the
    /// ended flows still shown dimmed, the one whose details are open).
    pub fn sweep(&mut self, present: impl IntoIterator<Item = FlowKey>, keep: impl Fn(&FlowKey) -> bool) {
        let round = self.round;
        for k in present {
            if let Some(f) = self.flows.get_mut(&k) {
                f.seen = round;
            }
        }
        self.flows.retain(|k, f| f.seen == round || keep(k));
    }

    /// Drops `key`'s history (its flow left).
    pub fn remove(&mut self, key: &FlowKey) {
        self.flows.remove(key);
    }

    /// The current round (the last one recorded).
    pub fn now(&self) -> u32 {
        self.round.saturating_sub(1)
    }

    pub fn get(&self, key: &FlowKey) -> Option<&FlowRates> {
        self.flows.get(key).map(|b| &**b)
    }

    /// `key`'s history as chart points, oldest first: (seconds since the
    /// epoch, sent, received), a point at the start of each sample. Wall
    /// times of past rounds are spread evenly between the flow's first
    /// sample and now (rounds come at the interval, but a pause stretches
    /// them). `ended`: the flow left the table, so no zeros past its last
    /// sample.
    pub fn points(&self, key: &FlowKey, ended: bool) -> Option<Vec<(f64, f64, f64)>> {
        let f = self.get(key)?;
        let now = if ended { f.last } else { self.now().max(f.last) };
        let per_round = if now > f.born {
            (self.now_secs - f.born_secs).max(0.0) / f64::from(self.now().max(f.last) - f.born)
        } else {
            0.0
        };
        let at = |r: u32| f.born_secs + f64::from(r - f.born) * per_round;
        Some(
            f.samples(now)
                .into_iter()
                .map(|(r, _, s, rc)| (at(r), s, rc))
                .collect(),
        )
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Bytes the histories hold: the table's slots (with hashbrown's
    /// control byte and its eighth kept free) and each boxed history as
    /// the allocator rounds it (its 8-byte header, 16-byte steps).
    pub fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(FlowKey, Box<FlowRates>)>() + 1;
        let slots = self.flows.capacity() * 8 / 7;
        let boxed = (std::mem::size_of::<FlowRates>() + 8).next_multiple_of(16);
        slots * slot + self.flows.len() * boxed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flows differing by conntrack id only.
    fn key(i: u32) -> FlowKey {
        use crate::flow::model::proto;
        let mut f = crate::ui::fixture::flow(0, proto::UDP, "192.0.2.1", Some(1), "192.0.2.2", Some(2));
        f.id = i;
        f.key()
    }

    #[test]
    fn quantised_rates_read_back_within_five_percent() {
        assert_eq!(quantise(0.0), 0);
        assert_eq!(quantise(-3.0), 0);
        assert_eq!(quantise(f64::NAN), 0);
        assert_eq!(rate_of(0), 0.0);
        assert_eq!(rate_of(quantise(0.2)), 1.0);
        for v in [1.0, 3.0, 999.0, 50_000.0, 1.25e6, 1.0e9, 1.2e10] {
            let back = rate_of(quantise(v));
            assert!((back - v).abs() / v < 0.05, "{v} read back as {back}");
        }
        // Beyond the top step it saturates, never wraps.
        assert_eq!(quantise(1e30), 255);
    }

    #[test]
    fn a_flow_appears_when_it_moves_and_keeps_each_recent_round() {
        let mut h = FlowHistory::default();
        // Idle flows cost nothing: no entry.
        h.record(100.0, [(key(1), 0.0, 0.0), (key(2), 0.0, 0.0)]);
        assert!(h.is_empty());
        h.record(101.0, [(key(1), 1000.0, 10.0)]);
        h.record(102.0, [(key(1), 2000.0, 20.0)]);
        h.record(103.0, []);
        h.record(104.0, [(key(1), 4000.0, 0.0)]);
        assert_eq!(h.len(), 1);
        let p = h.points(&key(1), false).expect("history");
        let rates: Vec<(f64, f64)> = p.iter().map(|p| (p.1.round(), p.2.round())).collect();
        // Round 3 idle: a zero, not the last rate.
        assert_eq!(rates.len(), 4, "{p:?}");
        assert!((rates[0].0 - 1000.0).abs() < 50.0 && (rates[0].1 - 10.0).abs() < 1.0);
        assert_eq!(rates[2], (0.0, 0.0));
        assert!((rates[3].0 - 4000.0).abs() < 200.0);
        // Times: from the first sample's, a second apart.
        let t: Vec<f64> = p.iter().map(|p| p.0).collect();
        assert_eq!(t, vec![101.0, 102.0, 103.0, 104.0]);
        // Idle since: zeros up to now while the flow is there, nothing
        // after its last sample once it ended.
        h.record(105.0, []);
        h.record(106.0, []);
        let p = h.points(&key(1), false).expect("history");
        assert_eq!(p.last().map(|p| (p.0, p.1)), Some((106.0, 0.0)));
        let p = h.points(&key(1), true).expect("history");
        assert_eq!(p.last().map(|p| p.0), Some(104.0));
    }

    #[test]
    fn old_rounds_are_averaged_into_buckets_that_double() {
        let mut f = FlowRates::new(0, 0.0, 100.0, 0.0);
        // 100 B/s for rounds 0..1000, then 10 000 B/s for 1000..2000.
        for r in 1..2000u32 {
            let v = if r < 1000 { 100.0 } else { 10_000.0 };
            f.put(r, v, v / 10.0);
        }
        let s = f.samples(1999);
        // Bounded whatever the age: buckets, the open one, the ring.
        assert!(s.len() <= OLDER + 1 + RECENT, "{}", s.len());
        // The whole life is covered, without gap or overlap.
        assert_eq!(s[0].0, 0);
        for w in s.windows(2) {
            assert_eq!(w[0].0 + w[0].1, w[1].0, "{s:?}");
        }
        let end = s.last().map(|x| x.0 + x.1);
        assert_eq!(end, Some(2000));
        // 2000 rounds in 40 buckets of 2^k: 64 rounds each.
        assert_eq!(f.bucket_width(), 64);
        // Each sample keeps its era's rate (a bucket across the change
        // is between the two).
        for &(r, n, sent, received) in &s {
            let want = if r + n <= 1000 {
                100.0
            } else if r >= 1000 {
                10_000.0
            } else {
                continue;
            };
            assert!((sent - want).abs() / want < 0.06, "round {r}: {sent} for {want}");
            assert!(
                (received - want / 10.0).abs() / want < 0.06,
                "round {r}: {received}"
            );
        }
        // The recent rounds one by one.
        assert!(s.iter().rev().take(RECENT).all(|x| x.1 == 1));
    }

    #[test]
    fn a_long_idle_gap_is_filled_in_bulk() {
        let mut f = FlowRates::new(0, 0.0, 500.0, 500.0);
        f.put(1_000_000, 500.0, 500.0);
        let s = f.samples(1_000_000);
        assert!(s.len() <= OLDER + 1 + RECENT);
        let last = s.last().expect("a sample");
        assert_eq!(last.0, 1_000_000);
        assert!((last.2 - 500.0).abs() < 25.0, "{last:?}");
        // The gap reads as (nearly) zero: one busy round in a bucket of
        // tens of thousands of idle ones.
        assert!(s[1].2 < 1.0, "{:?}", &s[..3]);
    }

    #[test]
    fn a_flow_costs_under_256_bytes_with_the_map() {
        assert!(
            std::mem::size_of::<FlowRates>() <= 184,
            "{}",
            std::mem::size_of::<FlowRates>()
        );
        let mut h = FlowHistory::default();
        for r in 0..100 {
            h.record(f64::from(r), (0..20_000).map(|i| (key(i), 1000.0, 1.0)));
        }
        let per = h.heap_bytes() / h.len();
        assert!(per <= 256, "{per} bytes per flow");
    }

    #[test]
    fn the_number_of_flows_is_capped_the_idlest_going_first() {
        let mut h = FlowHistory::default();
        h.record(0.0, (0..MAX_FLOWS as u32).map(|i| (key(i), 10.0, 0.0)));
        assert_eq!(h.len(), MAX_FLOWS);
        // The first half moves again: the other half is the idlest.
        h.record(1.0, (0..MAX_FLOWS as u32 / 2).map(|i| (key(i), 10.0, 0.0)));
        h.record(2.0, [(key(u32::MAX), 10.0, 0.0)]);
        assert_eq!(h.len(), MAX_FLOWS - MAX_FLOWS / 8 + 1);
        assert!(h.get(&key(u32::MAX)).is_some(), "the new flow got room");
        assert!(h.get(&key(0)).is_some(), "a busy one stays");
        let dropped = (MAX_FLOWS as u32 / 2..MAX_FLOWS as u32)
            .filter(|&i| h.get(&key(i)).is_none())
            .count();
        assert_eq!(dropped, MAX_FLOWS / 8, "only idle ones dropped");
    }

    #[test]
    fn flows_that_left_are_dropped_unless_kept() {
        let mut h = FlowHistory::default();
        h.record(0.0, (1..=3).map(|i| (key(i), 10.0, 10.0)));
        // 1 is still in the table (idle), 2 left but is shown dimmed, 3
        // left.
        h.sweep([key(1)], |k| *k == key(2));
        assert!(h.get(&key(1)).is_some());
        assert!(h.get(&key(2)).is_some());
        assert!(h.get(&key(3)).is_none());
        // Once no longer shown, 2 goes too.
        h.sweep([key(1)], |_| false);
        assert_eq!(h.len(), 1);
    }
}
