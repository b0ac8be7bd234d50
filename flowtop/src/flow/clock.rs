//! The flow table's time base: instants as 4-byte counts from the table's
//! creation, because an `Instant` takes 16 bytes and every flow keeps a few
//! (when it expires, when it last moved, when its rate base was read).

use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new(epoch: Instant) -> Self {
        Clock { epoch }
    }

    /// Whole seconds from the epoch to `t`, plus one so that 0 can mean
    /// "never" (saturating: the table would have to run for 136 years).
    pub fn secs(&self, t: Instant) -> u32 {
        let s = t.saturating_duration_since(self.epoch).as_secs();
        u32::try_from(s).map_or(u32::MAX, |s| s.saturating_add(1))
    }

    /// Milliseconds from the epoch to `t`, rounded to the nearest and
    /// wrapping every 49.7 days: only differences of two readings less than
    /// that apart are meaningful ([`Millis::since`]). Rounded rather than
    /// truncated so that instants a whole number of milliseconds apart stay
    /// exactly that apart, whatever the epoch's sub-millisecond phase.
    pub fn millis(&self, t: Instant) -> Millis {
        let us = t.saturating_duration_since(self.epoch).as_micros();
        Millis(((us + 500) / 1000) as u32)
    }
}

/// A reading of [`Clock::millis`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub u32);

impl Millis {
    /// Milliseconds from `earlier` to `self` (wrap-safe; 0 when `earlier`
    /// is later, which a monotonic clock only gives within a rounding).
    pub fn since(self, earlier: Millis) -> u32 {
        let d = self.0.wrapping_sub(earlier.0);
        if d > u32::MAX / 2 {
            0
        } else {
            d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn millis_differences_are_exact_and_survive_the_wrap() {
        let t0 = Instant::now();
        let c = Clock::new(t0 + Duration::from_micros(1234));
        let a = c.millis(t0 + Duration::from_secs(3));
        let b = c.millis(t0 + Duration::from_millis(5500));
        assert_eq!(b.since(a), 2500);
        assert_eq!(a.since(b), 0, "backwards is no time");
        assert_eq!(Millis(5).since(Millis(u32::MAX - 4)), 10);
    }

    #[test]
    fn secs_start_at_one() {
        let t0 = Instant::now();
        let c = Clock::new(t0);
        assert_eq!(c.secs(t0), 1);
        assert_eq!(c.secs(t0 + Duration::from_millis(2500)), 3);
        assert_eq!(
            c.secs(t0 - Duration::from_secs(1)),
            1,
            "before the epoch saturates"
        );
    }
}
