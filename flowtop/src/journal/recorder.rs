//! What the engine calls as flows change: a row for each flow that ends,
//! and a checkpoint row of each long-lived flow at most every
//! [`CHECKPOINT_EVERY`] of its age (the final row replaces it), so that a
//! crash loses little of a flow that lasts hours.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::record::{start_ms, unix_ms, FlowRecord};
use super::writer::Writer;
use crate::enrich::book::AddressBook;
use crate::flow::model::FlowKey;
use crate::flow::table::{Entry, EventKind};

/// A live flow gets a checkpoint row each time its age crosses a multiple
/// of this.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(300);

/// How often the table is walked for checkpoints due.
pub const CHECKPOINT_PASS: Duration = Duration::from_secs(30);

/// Turns the engine's changes into records for the writer.
pub struct Recorder {
    writer: Writer,
    book: Option<Arc<AddressBook>>,
    /// When flows without a kernel start time were first seen (their
    /// `start_ms`), until they end.
    first_seen: HashMap<FlowKey, i64, foldhash::fast::RandomState>,
    /// The wall-clock time of the last checkpoint pass.
    last_pass_ms: i64,
}

impl Recorder {
    pub fn new(writer: Writer, book: Option<Arc<AddressBook>>) -> Recorder {
        Recorder {
            writer,
            book,
            first_seen: HashMap::default(),
            last_pass_ms: unix_ms(SystemTime::now()),
        }
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// One change of the table: an ended flow is written (without waiting:
    /// a full queue drops it and counts it).
    pub fn change(&mut self, kind: EventKind, e: &Entry, now_ms: i64) {
        match kind {
            EventKind::Destroy => {
                let first = self.first_seen.remove(&e.flow.key()).unwrap_or(now_ms);
                let r = FlowRecord::of(e, first, Some(now_ms), self.book.as_deref());
                self.writer.send(r);
            }
            EventKind::New | EventKind::Snapshot | EventKind::Update => {
                if e.flow.start_ns.is_none() {
                    self.first_seen.entry(e.flow.key()).or_insert(now_ms);
                }
            }
        }
    }

    /// Whether a checkpoint pass is due at `now_ms`.
    pub fn pass_due(&self, now_ms: i64) -> bool {
        now_ms - self.last_pass_ms >= i64::try_from(CHECKPOINT_PASS.as_millis()).unwrap_or(i64::MAX)
    }

    /// Writes a checkpoint of each flow of `live` whose age crossed a
    /// multiple of [`CHECKPOINT_EVERY`] since the last pass.
    pub fn checkpoints<'a>(&mut self, live: impl Iterator<Item = &'a Entry>, now_ms: i64) {
        let every = i64::try_from(CHECKPOINT_EVERY.as_millis()).unwrap_or(i64::MAX);
        let prev = self.last_pass_ms;
        self.last_pass_ms = now_ms;
        for e in live {
            let start = start_ms(e, self.known_start(e, now_ms));
            let (age_now, age_prev) = (now_ms - start, prev - start);
            if age_now >= every && age_now / every > age_prev.max(0) / every {
                let r = FlowRecord::of(e, start, None, self.book.as_deref());
                self.writer.send(r);
            }
        }
    }

    fn known_start(&self, e: &Entry, now_ms: i64) -> i64 {
        self.first_seen.get(&e.flow.key()).copied().unwrap_or(now_ms)
    }

    /// The end of the run: a checkpoint of every flow still live (waiting
    /// for room in the queue), then everything written; the counters.
    pub fn finish<'a>(self, live: impl Iterator<Item = &'a Entry>, now_ms: i64) -> super::writer::Counts {
        for e in live {
            let r = FlowRecord::of(e, self.known_start(e, now_ms), None, self.book.as_deref());
            self.writer.send_waiting(r);
        }
        self.writer.finish()
    }
}
