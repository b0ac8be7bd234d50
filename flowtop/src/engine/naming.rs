//! The engine's side of asked-for names: a new flow is named as it enters
//! the table (with its owner, see [`Lookups`]), then waits a moment for the
//! names that reach the engine after its NEW event (its own first bytes, the
//! answers received just before it began): [`rename_waiting`] gives those
//! as `update` lines.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::attribution::join::OwnerJoin;
use crate::flow::model::{Attributed, Flow, FlowKey};
use crate::flow::table::{Entry, EventKind, FlowTable, OwnerLookup};
use crate::names::tracker::{Changes, FlowName, NameTracker};
use crate::names::Source;

/// How long a new flow without a name of its own may still get one: its
/// first bytes (TLS ClientHello, HTTP request, QUIC Initial) and the DNS
/// answers received just before it began reach the engine after its NEW
/// event, through the capture ring buffer.
pub const NAME_WAIT: Duration = Duration::from_secs(5);
/// Flows waiting for a name, at most (the oldest stop waiting first).
pub const NAME_WAITING_MAX: usize = 16_384;
/// How often expired DNS answers are dropped from the book.
pub const EXPIRY_EVERY: Duration = Duration::from_secs(10);

/// What a flow entering the table is asked for: its owner (attribution)
/// and then its asked-for name (the name tracker, which needs the owner).
pub struct Lookups<'a> {
    pub owners: &'a mut Option<OwnerJoin>,
    pub names: Option<&'a NameTracker>,
}

impl OwnerLookup for Lookups<'_> {
    fn attribute(&mut self, flow: &Flow, now: Instant) -> Attributed {
        self.owners.attribute(flow, now)
    }

    fn asked_name(&mut self, flow: &Flow, found: &Attributed, now: Instant) -> Option<Arc<FlowName>> {
        self.names?
            .name_for_flow(flow, found.owner.as_deref(), found.direction, now)
    }
}

/// Whether a flow may still learn a better name: none yet, or only a DNS
/// answer (its connection's own name comes after its NEW event).
fn may_rename(e: &Entry) -> bool {
    e.name.as_ref().is_none_or(|n| n.source == Source::Dns)
}

/// Puts a flow that just entered the table on the waiting list when it may
/// still learn a name (the oldest waiter goes when the list is full).
pub fn wait_for_name(waiting: &mut VecDeque<(Instant, FlowKey)>, e: &Entry, now: Instant) {
    if !may_rename(e) {
        return;
    }
    if waiting.len() >= NAME_WAITING_MAX {
        waiting.pop_front();
    }
    waiting.push_back((now, e.flow.key()));
}

/// Which waiting flows may have a new name.
#[derive(Debug)]
pub enum Recheck {
    /// Captures named these addresses and tuples.
    Named(Changes),
    /// Attribution found the owners of these flows (their own process's
    /// answers now apply).
    Owned(std::collections::HashSet<FlowKey, foldhash::fast::RandomState>),
}

/// Names again the waiting flows `recheck` concerns: an `update` (through
/// `out`) for each whose name changed. A flow stops waiting after
/// [`NAME_WAIT`], when it leaves the table or once it has a name of its
/// own; a name once given is never taken away. Work: a hash lookup per
/// waiting flow (at most [`NAME_WAITING_MAX`]), a name lookup for those
/// concerned.
pub fn rename_waiting(
    table: &mut FlowTable,
    names: &NameTracker,
    waiting: &mut VecDeque<(Instant, FlowKey)>,
    now: Instant,
    recheck: &Recheck,
    out: &mut impl FnMut(EventKind, &Entry),
) {
    while waiting
        .front()
        .is_some_and(|(at, _)| now.saturating_duration_since(*at) > NAME_WAIT)
    {
        waiting.pop_front();
    }
    let mut found = Vec::new();
    waiting.retain(|(first_seen, key)| {
        if let Recheck::Owned(keys) = recheck {
            if !keys.contains(key) {
                return true;
            }
        }
        let Some(e) = table.get(*key) else {
            return false;
        };
        if let Recheck::Named(changes) = recheck {
            if !changes.touches(&e.flow) {
                return may_rename(e);
            }
        }
        match names.name_for_flow(&e.flow, e.owner.as_deref(), e.direction, *first_seen) {
            Some(n) if e.name.as_ref() != Some(&n) => {
                let dns = n.source == Source::Dns;
                found.push((*key, Some(n)));
                dns
            }
            _ => may_rename(e),
        }
    });
    table.set_names(found, out);
}

#[cfg(test)]
#[path = "naming_tests.rs"]
mod tests;
