//! When to re-read the whole table and when only its active flows.

use std::time::{Duration, Instant};

/// Share of the time full re-dumps may take when their spacing is automatic.
const FULL_DUMP_SHARE: f64 = 0.1;

/// Chooses, each interval, between a full re-dump and a hot refresh.
///
/// A full dump re-reads every entry, and the kernel's part alone grows with
/// the table: on a big table, once a second is a large share of a core
/// before flowtop decodes anything. Most entries of a big table are
/// idle, though, and an idle entry's counters do not change: between full
/// dumps only the hot flows (those that appeared, moved or got an event in
/// the last few intervals) are re-read, one GET each. Full dumps still come
/// regularly, because only they notice an idle flow waking up and catch
/// lost destroys: automatically spaced so that they take at most
/// [`FULL_DUMP_SHARE`] of the time (every interval on small tables), or
/// every `--full-refresh` seconds. Resyncs after overruns are never delayed.
#[derive(Debug)]
pub(super) struct RefreshPacing {
    interval: Duration,
    /// `--full-refresh`: a fixed spacing instead of the automatic one.
    pub(super) fixed: Option<Duration>,
    started: Option<Instant>,
    /// Start, end and cost of the last full dump.
    last: Option<(Instant, Instant, Duration)>,
}

impl RefreshPacing {
    pub(super) fn new(interval: Duration, fixed: Option<Duration>) -> Self {
        RefreshPacing {
            interval,
            fixed: fixed.map(|f| f.max(interval)),
            started: None,
            last: None,
        }
    }

    pub(super) fn started(&mut self, now: Instant) {
        self.started = Some(now);
    }

    pub(super) fn ended(&mut self, now: Instant) {
        if let Some(t0) = self.started.take() {
            self.last = Some((t0, now, now.saturating_duration_since(t0)));
        }
    }

    /// Whether the next refresh must be a full dump.
    pub(super) fn full_due(&self, now: Instant) -> bool {
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
    pub(super) fn hot_for(&self) -> Duration {
        (self.interval * 3).max(Duration::from_secs(3))
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
