//! The screen's engine: publishes snapshots of the table instead of lines.

use std::sync::Arc;
use std::time::Instant;

use super::{Engine, Inbox, Inputs, Notes, Stop};
use crate::conntrack::source::CtMsg;
use crate::flow::table::{Entry, EventKind, FlowTable, Snapshot};

/// Where the screen engine publishes: a snapshot of the table once per
/// interval and right after the first dump, and the warnings.
pub struct ScreenSink {
    pub snapshots: tokio::sync::watch::Sender<Arc<Snapshot>>,
    pub notes: Notes,
    /// Changes (or closes) when the user quits the screen.
    pub quit: tokio::sync::watch::Receiver<bool>,
    /// Where the screen finds the book of DNS answers (set at start when
    /// names are gathered).
    pub asked_names: crate::names::tracker::BookSlot,
}

impl ScreenSink {
    /// Publishes a snapshot of `table`, after the one published last (the
    /// channel holds it): shared chunks, and counts reused when unchanged.
    /// Flows that ended since the last one go with it, with bytes no rate
    /// counted (see [`FlowTable::snapshot_for_screen`]).
    fn publish(&self, table: &mut FlowTable, now: Instant) {
        // Made before the send: the channel's lock is not held while sending.
        let snap = table.snapshot_for_screen(&self.snapshots.borrow(), now);
        self.snapshots.send_replace(snap);
    }
}

/// Feeds the table for the screen until a signal, the user quitting or a
/// fatal error. Rows are not written per change: the screen draws from the
/// snapshots, and dropping the snapshot sender on return tells it the run
/// is over.
pub async fn run_screen(mut inputs: Inputs, mut sink: ScreenSink) -> anyhow::Result<Stop> {
    let interval = inputs.cfg.interval;
    let mut export = std::mem::take(&mut inputs.export);
    let (mut engine, mut signals, mut rx) = Engine::start(inputs, Some(sink.notes.clone()))?;
    if let Some(names) = &engine.names {
        let _ = sink.asked_names.set(names.share_book());
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    engine.table.collect_ended(Instant::now());
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else {
                    anyhow::bail!("the conntrack sources stopped");
                };
                let first_dump_done = matches!(msg, Inbox::Conntrack(CtMsg::DumpDone { gen: 1, .. }));
                engine.handle(msg, Instant::now(), &mut |k: EventKind, e: &Entry| export.change(k, e))?;
                if first_dump_done {
                    sink.publish(&mut engine.table, Instant::now());
                }
            }
            _ = tick.tick() => {
                engine.tick(Instant::now(), &mut |k: EventKind, e: &Entry| export.change(k, e))?;
                export.tick(&engine.table, engine.caches());
                // The screen reads names from the address book as it draws:
                // the list of addresses whose name arrived is not needed.
                if let Some(en) = &engine.enricher {
                    en.arrived().take();
                }
                sink.publish(&mut engine.table, Instant::now());
            }
            // Either a change or the screen going away (its sender dropped).
            _ = sink.quit.changed() => {
                export.finish(&engine.table);
                return Ok(Stop::Quit);
            }
            name = signals.recv() => {
                export.finish(&engine.table);
                return Ok(Stop::Signal(name));
            }
        }
    }
}
