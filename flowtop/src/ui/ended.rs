//! Flows that ended lately, kept a while for the Flows tab (drawn dimmed
//! after the live rows; `t` hides them): the flows each snapshot lists as
//! ended, with their counters as they left, for [`KEEP`] and at most
//! [`CAP`] of them (the oldest dropped first).
//!
//! They are the snapshot's [`EndedFlows`](crate::flow::table::EndedFlows):
//! every flow that left the table (destroyed, swept, expired), an idle one
//! (an expired UDP flow) too.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::flow::model::FlowKey;
use crate::flow::table::Entry;

/// How long an ended flow stays.
pub const KEEP: Duration = Duration::from_secs(10);
/// How many ended flows are kept at most.
pub const CAP: usize = 1000;

/// The ended flows kept, oldest first.
#[derive(Debug, Clone)]
pub struct Recent {
    flows: VecDeque<(Instant, Entry)>,
    pub keep: Duration,
    pub cap: usize,
}

impl Default for Recent {
    fn default() -> Recent {
        Recent {
            flows: VecDeque::new(),
            keep: KEEP,
            cap: CAP,
        }
    }
}

impl Recent {
    /// Notes flows that ended at `now` (in the order they ended), and
    /// drops what is too old or too many.
    pub fn push<'a>(&mut self, now: Instant, ended: impl IntoIterator<Item = &'a Entry>) {
        let new: Vec<&Entry> = ended.into_iter().collect();
        let new = &new[new.len().saturating_sub(self.cap)..];
        // The same flow noted again (a snapshot taken twice): once.
        let keys: HashSet<FlowKey> = new.iter().map(|e| e.flow.key()).collect();
        if !keys.is_empty() {
            self.flows.retain(|(_, e)| !keys.contains(&e.flow.key()));
        }
        for e in new {
            self.flows.push_back((now, (*e).clone()));
        }
        while self.flows.len() > self.cap {
            self.flows.pop_front();
        }
        self.expire(now);
    }

    /// Drops the flows that ended more than [`Recent::keep`] before `now`.
    pub fn expire(&mut self, now: Instant) {
        while self
            .flows
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > self.keep)
        {
            self.flows.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &Entry> {
        self.flows.iter().rev().map(|(_, e)| e)
    }
}
