//! Per-direction rates from counter readings.
//!
//! A rate is the counter delta over the real time between two readings. When
//! readings arrive closer together than the window (a re-dump right after an
//! event, several dumps in one interval), the base reading is kept, so the
//! bytes of the short gaps are counted in the next rate instead of dropped.
//!
//! A flow that began while flowtop watched has a base before its first
//! reading: zero counters at its start ([`RateMeter::start_at`]), so the
//! bytes it moved before it was first read count in its first rate instead
//! of being taken as the base. That first rate is over a whole interval at
//! least: a flow younger than an interval moved its bytes within the
//! interval, and rates are per interval (the sum over flows is then the
//! traffic of the interval, not more).

use std::time::Duration;

use super::clock::Millis;
use super::model::Counters;

/// Rates of one flow, both directions, per second.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    pub orig_bytes: f64,
    pub reply_bytes: f64,
    pub orig_packets: f64,
    pub reply_packets: f64,
}

/// The reading rates are measured from, and the last rates measured.
///
/// One meter per flow, so its size counts at a million flows: rates are
/// kept as `f32` (seven significant digits are plenty for a rate), the base
/// reading's time as table [`Millis`] rather than an `Instant`, and its
/// counters not at all: the caller has them. They are the last reading's
/// (the flow's own), unless a reading came too soon after the base to
/// measure over ([`RateMeter::lagging`]); the caller keeps them aside
/// then, until the next measurement. That is rare, so not worth 32 bytes
/// in every meter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateMeter {
    /// orig bytes, reply bytes, orig packets, reply packets per second.
    per_sec: [f32; 4],
    base_at: Millis,
    /// False until the first reading (then `base_at` means nothing).
    has_base: bool,
    /// False until two readings a window apart gave a rate: before that the
    /// rate is unknown, not zero.
    measured: bool,
    /// The base reading's counters are not the last reading's.
    lagging: bool,
    /// The base is the flow's start: zero counters at `base_at`, whatever
    /// the caller passes as the base (so nothing is kept aside for it).
    zero_base: bool,
}

impl RateMeter {
    pub fn new() -> Self {
        RateMeter {
            per_sec: [0.0; 4],
            base_at: Millis(0),
            has_base: false,
            measured: false,
            lagging: false,
            zero_base: false,
        }
    }

    /// Makes the flow's start, at `at`, the base: its first reading then
    /// counts every byte from there. `at` is the kernel's start time of the
    /// flow when known, else when it was first seen.
    pub fn start_at(&mut self, at: Millis) {
        self.base_at = at;
        self.has_base = true;
        self.lagging = false;
        self.zero_base = true;
    }

    /// Whether the base is the flow's start (zero counters).
    pub fn zero_based(&self) -> bool {
        self.zero_base
    }

    /// The base reading's counters, given the flow's last ones (`last`) and
    /// the ones kept aside while lagging (`aside`): what a reading now is
    /// measured from, and what a flow that ends now has not yet counted in
    /// a rate.
    pub fn base_counters(&self, last: Option<Counters>, aside: Option<Counters>) -> Option<Counters> {
        if self.zero_base {
            Some(Counters::default())
        } else if self.lagging {
            aside
        } else {
            last
        }
    }

    /// When the base reading was taken. The flow table keeps it beside the
    /// entry (it moves at every reading, the rest of the meter does not)
    /// and sets it back before feeding a reading.
    pub fn base_at(&self) -> Millis {
        self.base_at
    }

    pub fn set_base_at(&mut self, at: Millis) {
        self.base_at = at;
    }

    /// Whether a rate has been measured (see [`RateMeter::measured_rates`]).
    /// The flow table keeps its turning true beside the entry: idle flows
    /// of a table loaded at once all turn measured at the same reading.
    pub fn measured(&self) -> bool {
        self.measured
    }

    pub fn set_measured(&mut self, measured: bool) {
        self.measured = measured;
    }

    /// Whether the base reading is older than the last one: its counters
    /// are then not the flow's, and the caller keeps them aside.
    pub fn lagging(&self) -> bool {
        self.lagging
    }

    /// Makes the reading at `now` the base (its counters: the caller's).
    fn rebase(&mut self, now: Millis) {
        self.base_at = now;
        self.has_base = true;
        self.lagging = false;
        self.zero_base = false;
    }

    /// Feeds one counter reading taken at `now`. `base` are the base
    /// reading's counters: the previous reading's (the flow's, which the
    /// caller replaces with `counters` afterwards), or while
    /// [`lagging`](Self::lagging) the ones the caller kept aside. When this
    /// makes the meter lag, the caller keeps `base` aside; when it stops
    /// lagging, the caller may forget them. Returns whether the rates were
    /// recomputed.
    pub fn observe(
        &mut self,
        base: Option<Counters>,
        counters: Counters,
        now: Millis,
        window: Duration,
    ) -> bool {
        let base = if self.zero_base {
            Some(Counters::default())
        } else {
            base
        };
        let (true, Some(c0)) = (self.has_base, base) else {
            self.rebase(now);
            return false;
        };
        let went_backwards = counters.orig_bytes < c0.orig_bytes
            || counters.reply_bytes < c0.reply_bytes
            || counters.orig_packets < c0.orig_packets
            || counters.reply_packets < c0.reply_packets;
        if went_backwards {
            // Counters were zeroed (conntrack -Z) or the id now names another
            // entry: start over instead of reporting a negative rate.
            self.rebase(now);
            self.per_sec = [0.0; 4];
            self.measured = false;
            return true;
        }
        let elapsed = Duration::from_millis(u64::from(now.since(self.base_at)));
        // From the start, no reading is too soon: the rate is over the
        // interval at least, never over a few milliseconds.
        if !self.zero_base && (elapsed < window || elapsed.is_zero()) {
            // Too soon to measure: the base stays, so its counters must be
            // kept aside once the flow's move on.
            self.lagging |= c0 != counters;
            return false;
        }
        // A first reading from the start spans at least the interval (see
        // the module's notes): `window` is half of it.
        let elapsed = if self.zero_base {
            elapsed.max(window * 2)
        } else {
            elapsed
        };
        let secs = elapsed.as_secs_f64();
        let per_sec = |a: u64, b: u64| ((a - b) as f64 / secs) as f32;
        self.per_sec = [
            per_sec(counters.orig_bytes, c0.orig_bytes),
            per_sec(counters.reply_bytes, c0.reply_bytes),
            per_sec(counters.orig_packets, c0.orig_packets),
            per_sec(counters.reply_packets, c0.reply_packets),
        ];
        self.rebase(now);
        self.measured = true;
        true
    }

    /// The last rates (zero before the first measurement).
    pub fn rates(&self) -> Rates {
        let [orig_bytes, reply_bytes, orig_packets, reply_packets] = self.per_sec.map(f64::from);
        Rates {
            orig_bytes,
            reply_bytes,
            orig_packets,
            reply_packets,
        }
    }

    /// The rates, once they have been measured.
    pub fn measured_rates(&self) -> Option<Rates> {
        self.measured.then(|| self.rates())
    }
}

impl Default for RateMeter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table clock `ms` milliseconds after some start.
    fn at(ms: u32) -> Millis {
        Millis(1_000 + ms)
    }

    /// A meter and what its caller keeps: the flow's counters, and the
    /// base's while the meter lags.
    struct Flow {
        meter: RateMeter,
        held: Option<Counters>,
        aside: Option<Counters>,
    }

    impl Flow {
        fn new() -> Self {
            Flow {
                meter: RateMeter::new(),
                held: None,
                aside: None,
            }
        }

        fn observe(&mut self, c: Counters, now: Millis, w: Duration) -> bool {
            let base = if self.meter.lagging() {
                self.aside
            } else {
                self.held
            };
            let r = self.meter.observe(base, c, now, w);
            self.aside = if self.meter.lagging() { base } else { None };
            self.held = Some(c);
            r
        }

        fn rates(&self) -> Rates {
            self.meter.rates()
        }

        fn measured_rates(&self) -> Option<Rates> {
            self.meter.measured_rates()
        }
    }

    fn c(ob: u64, rb: u64) -> Counters {
        Counters {
            orig_packets: ob / 100,
            orig_bytes: ob,
            reply_packets: rb / 100,
            reply_bytes: rb,
        }
    }

    #[test]
    fn rate_is_delta_over_real_elapsed_time() {
        let w = Duration::from_millis(500);
        let mut m = Flow::new();
        m.observe(c(0, 0), at(0), w);
        assert_eq!(m.measured_rates(), None, "one reading is no rate");
        assert!(m.observe(c(3000, 1000), at(2000), w));
        assert_eq!(m.rates().orig_bytes, 1500.0);
        assert_eq!(m.rates().reply_bytes, 500.0);
    }

    #[test]
    fn readings_inside_one_window_lose_no_bytes() {
        let w = Duration::from_secs(1);
        let mut m = Flow::new();
        m.observe(c(0, 0), at(0), w);
        // Two readings 100 ms apart: too close, the base stays.
        assert!(!m.observe(c(500, 0), at(100), w));
        assert!(!m.observe(c(900, 0), at(200), w));
        assert!(m.meter.lagging(), "the base's counters are kept aside");
        // The next one covers all 1000 bytes since t0.
        assert!(m.observe(c(1000, 0), at(1000), w));
        assert_eq!(m.rates().orig_bytes, 1000.0);
        assert!(!m.meter.lagging());
        // An unchanged reading too soon needs nothing kept aside.
        assert!(!m.observe(c(1000, 0), at(1100), w));
        assert!(!m.meter.lagging());
    }

    /// A flow read first 300 ms after its start, with 1.2 MB moved: those
    /// bytes are its first rate, over the interval (2 × window = 1 s), not
    /// the base of the next reading.
    #[test]
    fn first_reading_counts_from_the_start() {
        let w = Duration::from_millis(500);
        let mut m = Flow::new();
        m.meter.start_at(at(0));
        assert_eq!(m.meter.base_counters(None, None), Some(c(0, 0)));
        assert!(m.observe(c(1_200_000, 0), at(300), w));
        assert_eq!(m.rates().orig_bytes, 1_200_000.0, "1.2 MB in the 1 s interval");
        // From then on, plain deltas.
        assert!(m.observe(c(2_200_000, 0), at(1300), w));
        assert_eq!(m.rates().orig_bytes, 1_000_000.0);
        // Older than an interval at its first reading: over its age.
        let mut m = Flow::new();
        m.meter.start_at(at(0));
        assert!(m.observe(c(4000, 2000), at(2000), w));
        assert_eq!(m.rates().orig_bytes, 2000.0);
        assert_eq!(m.rates().reply_bytes, 1000.0);
    }

    /// A reading right after the start is measured at once, over the
    /// interval; the zero base is then gone, nothing is kept aside.
    #[test]
    fn a_reading_right_after_the_start_is_measured() {
        let w = Duration::from_millis(500);
        let mut m = Flow::new();
        m.meter.start_at(at(0));
        assert!(m.meter.zero_based());
        assert!(m.observe(c(500, 0), at(100), w));
        assert_eq!(m.rates().orig_bytes, 500.0, "500 bytes in the 1 s interval");
        assert!(!m.meter.lagging());
        assert!(!m.meter.zero_based());
        assert_eq!(m.meter.base_counters(Some(c(500, 0)), None), Some(c(500, 0)));
    }

    #[test]
    fn counters_going_backwards_reset_instead_of_underflowing() {
        let w = Duration::from_millis(10);
        let mut m = Flow::new();
        m.observe(c(5000, 5000), at(0), w);
        assert!(m.observe(c(10, 10), at(1000), w));
        assert_eq!(m.rates(), Rates::default());
        assert!(m.observe(c(110, 10), at(2000), w));
        assert_eq!(m.rates().orig_bytes, 100.0);
    }
}
