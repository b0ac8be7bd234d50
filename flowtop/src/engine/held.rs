//! DESTROY events held back for the socket events that may name their flow.
//!
//! A connection refused or reset at once is NEW and DESTROY within a
//! millisecond, before the eBPF reader has handed over the socket event of
//! the process that connected. A DESTROY of a flow without an owner waits
//! until a socket batch is known to hold every event submitted before the
//! DESTROY arrived, or for [`DESTROY_HOLD`] at most.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::flow::model::Flow;

/// The longest a DESTROY waits (the reader drains the ring buffer at least
/// every 100 ms, and at once when woken).
pub const DESTROY_HOLD: Duration = Duration::from_millis(250);

/// Which held DESTROYs to let go.
#[derive(Debug, Clone, Copy)]
pub enum Release {
    /// All of them (a full dump's end, the end of the run).
    All,
    /// Those held for [`DESTROY_HOLD`] by this instant.
    Due(Instant),
    /// Those that arrived at or before this instant: a socket batch whose
    /// draining of the ring buffer began then (and emptied it) holds every
    /// socket event the kernel submitted before them, and a flow's socket
    /// event is submitted before its DESTROY is made. A batch drained
    /// before a DESTROY arrived, however late it reaches the engine, lets
    /// go nothing newer.
    DrainedFrom(Instant),
}

/// The held DESTROYs: when each arrived and the flow's final reading,
/// oldest first.
#[derive(Debug, Default)]
pub struct HeldDestroys {
    queue: VecDeque<(Instant, Flow)>,
}

impl HeldDestroys {
    pub fn hold(&mut self, at: Instant, flow: Flow) {
        self.queue.push_back((at, flow));
    }

    /// Takes the DESTROYs `release` lets go, oldest first.
    pub fn release(&mut self, release: Release) -> Vec<(Instant, Flow)> {
        let goes = |at: Instant| match release {
            Release::All => true,
            Release::Due(now) => now.saturating_duration_since(at) >= DESTROY_HOLD,
            Release::DrainedFrom(t) => at <= t,
        };
        let mut out = Vec::new();
        // Arrival order: the first that stays ends the walk.
        while self.queue.front().is_some_and(|(at, _)| goes(*at)) {
            out.extend(self.queue.pop_front());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn flow(id: u32) -> Flow {
        let ip = |d| IpAddr::V4(Ipv4Addr::new(192, 0, 2, d));
        Flow::test_tcp(id, ip(1), ip(2), 40000 + id as u16)
    }

    fn ids(v: &[(Instant, Flow)]) -> Vec<u32> {
        v.iter().map(|(_, f)| f.id).collect()
    }

    /// The race this exists for: a socket batch drained before a DESTROY
    /// arrived but handed to the engine after it must not let that DESTROY
    /// go (the flow's socket event is in a later batch); one drained after
    /// it does; and nothing waits longer than DESTROY_HOLD.
    #[test]
    fn only_batches_drained_after_a_destroy_arrived_let_it_go() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut held = HeldDestroys::default();
        held.hold(ms(10), flow(1));
        held.hold(ms(20), flow(2));
        assert!(held.release(Release::DrainedFrom(ms(5))).is_empty());
        assert_eq!(ids(&held.release(Release::DrainedFrom(ms(15)))), vec![1]);
        assert!(held.release(Release::Due(ms(200))).is_empty());
        assert_eq!(ids(&held.release(Release::Due(ms(20) + DESTROY_HOLD))), vec![2]);
        held.hold(ms(30), flow(3));
        held.hold(ms(40), flow(4));
        assert_eq!(ids(&held.release(Release::All)), vec![3, 4]);
        assert!(held.release(Release::All).is_empty());
    }
}
