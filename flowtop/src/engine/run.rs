//! `flowtop run`: the engine while a command runs. Every change goes to the
//! caller's sink (which keeps the command's flows); once the command has
//! exited and a grace period for late events has passed, the flows still
//! live are handed over once more with their current counters.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{Engine, Inputs};
use crate::flow::table::{Entry, EventKind};

/// Runs until `done` delivers (the command's exit) and then `grace` more;
/// a signal to flowtop goes to `on_signal` (the caller forwards it) and
/// does not end the run. Returns what `done` delivered.
pub async fn run_command<T>(
    inputs: Inputs,
    mut done: oneshot::Receiver<T>,
    grace: Duration,
    on_signal: &mut impl FnMut(&'static str),
    sink: &mut impl FnMut(EventKind, &Entry),
) -> anyhow::Result<T> {
    let interval = inputs.cfg.interval;
    let (mut engine, mut signals, mut rx) = Engine::start(inputs, None)?;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut outcome: Option<T> = None;
    let deadline = tokio::time::sleep(Duration::from_secs(365 * 86_400));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else {
                    anyhow::bail!("the conntrack sources stopped");
                };
                engine.handle(msg, Instant::now(), sink)?;
            }
            _ = tick.tick() => {
                engine.tick(Instant::now(), sink)?;
                if let Some(en) = &engine.enricher {
                    en.arrived().take();
                }
            }
            got = &mut done, if outcome.is_none() => {
                let got = got.map_err(|_| anyhow::anyhow!("lost track of the command"))?;
                outcome = Some(got);
                deadline.as_mut().reset(tokio::time::Instant::now() + grace);
            }
            _ = &mut deadline, if outcome.is_some() => break,
            name = signals.recv() => on_signal(name),
        }
    }
    // The destroys held for socket events, then the live flows as last read
    // (hot flows are re-read every interval, so within the grace period).
    engine.release_destroys(super::Release::All, sink);
    for e in engine.table.iter() {
        sink(EventKind::Update, e);
    }
    outcome.ok_or_else(|| anyhow::anyhow!("lost track of the command"))
}
