//! Per-direction rates from counter readings.
//!
//! A rate is the counter delta over the real time between two readings. When
//! readings arrive closer together than the window (a re-dump right after an
//! event, several dumps in one interval), the base reading is kept, so the
//! bytes of the short gaps are counted in the next rate instead of dropped.

use std::time::{Duration, Instant};

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
/// Rates are kept as `f32` (seven significant digits are plenty for a
/// rate; one meter per flow, so its size counts at a million flows).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateMeter {
    base: Option<(Instant, Counters)>,
    /// orig bytes, reply bytes, orig packets, reply packets per second.
    per_sec: [f32; 4],
    /// False until two readings a window apart gave a rate: before that the
    /// rate is unknown, not zero.
    measured: bool,
}

impl RateMeter {
    pub fn new() -> Self {
        RateMeter {
            base: None,
            per_sec: [0.0; 4],
            measured: false,
        }
    }

    /// Feeds one counter reading taken at `now`. Returns whether the rates
    /// were recomputed.
    pub fn observe(&mut self, counters: Counters, now: Instant, window: Duration) -> bool {
        let Some((t0, c0)) = self.base else {
            self.base = Some((now, counters));
            return false;
        };
        let went_backwards = counters.orig_bytes < c0.orig_bytes
            || counters.reply_bytes < c0.reply_bytes
            || counters.orig_packets < c0.orig_packets
            || counters.reply_packets < c0.reply_packets;
        if went_backwards {
            // Counters were zeroed (conntrack -Z) or the id now names another
            // entry: start over instead of reporting a negative rate.
            self.base = Some((now, counters));
            self.per_sec = [0.0; 4];
            self.measured = false;
            return true;
        }
        let elapsed = now.saturating_duration_since(t0);
        if elapsed < window || elapsed.is_zero() {
            return false;
        }
        let secs = elapsed.as_secs_f64();
        let per_sec = |a: u64, b: u64| ((a - b) as f64 / secs) as f32;
        self.per_sec = [
            per_sec(counters.orig_bytes, c0.orig_bytes),
            per_sec(counters.reply_bytes, c0.reply_bytes),
            per_sec(counters.orig_packets, c0.orig_packets),
            per_sec(counters.reply_packets, c0.reply_packets),
        ];
        self.base = Some((now, counters));
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
        let t0 = Instant::now();
        let w = Duration::from_millis(500);
        let mut m = RateMeter::new();
        m.observe(c(0, 0), t0, w);
        assert_eq!(m.measured_rates(), None, "one reading is no rate");
        assert!(m.observe(c(3000, 1000), t0 + Duration::from_secs(2), w));
        assert_eq!(m.rates().orig_bytes, 1500.0);
        assert_eq!(m.rates().reply_bytes, 500.0);
    }

    #[test]
    fn readings_inside_one_window_lose_no_bytes() {
        let t0 = Instant::now();
        let w = Duration::from_secs(1);
        let mut m = RateMeter::new();
        m.observe(c(0, 0), t0, w);
        // Two readings 100 ms apart: too close, the base stays.
        assert!(!m.observe(c(500, 0), t0 + Duration::from_millis(100), w));
        assert!(!m.observe(c(900, 0), t0 + Duration::from_millis(200), w));
        // The next one covers all 1000 bytes since t0.
        assert!(m.observe(c(1000, 0), t0 + Duration::from_secs(1), w));
        assert_eq!(m.rates().orig_bytes, 1000.0);
    }

    #[test]
    fn counters_going_backwards_reset_instead_of_underflowing() {
        let t0 = Instant::now();
        let w = Duration::from_millis(10);
        let mut m = RateMeter::new();
        m.observe(c(5000, 5000), t0, w);
        assert!(m.observe(c(10, 10), t0 + Duration::from_secs(1), w));
        assert_eq!(m.rates(), Rates::default());
        assert!(m.observe(c(110, 10), t0 + Duration::from_secs(2), w));
        assert_eq!(m.rates().orig_bytes, 100.0);
    }
}
