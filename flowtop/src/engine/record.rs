//! `flowtop record`: the engine writing the journal. Each change goes to
//! the [`Recorder`] (an ended flow becomes a row, queued for the writer
//! thread without waiting); every [`CHECKPOINT_PASS`] the long-lived flows
//! get checkpoint rows; at a signal every live flow gets a last checkpoint
//! and everything queued is written before this returns.

use std::time::{Instant, SystemTime};

use tokio::signal::unix::{signal, SignalKind};

use super::{Engine, Inputs, Stop};
use crate::journal::record::unix_ms;
use crate::journal::recorder::{Recorder, CHECKPOINT_PASS};
use crate::journal::writer::Counts;

/// Records until a signal or a fatal error; the writer's counters at the
/// end. SIGUSR1 prints them on stderr.
pub async fn run_record(mut inputs: Inputs, mut rec: Recorder) -> anyhow::Result<(Stop, Counts)> {
    let interval = inputs.cfg.interval;
    let mut export = std::mem::take(&mut inputs.export);
    let (mut engine, mut signals, mut rx) = Engine::start(inputs, None)?;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut pass = tokio::time::interval(CHECKPOINT_PASS);
    pass.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    pass.tick().await;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let stop = loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else {
                    anyhow::bail!("the conntrack sources stopped");
                };
                let now_ms = unix_ms(SystemTime::now());
                engine.handle(msg, Instant::now(), &mut |k, e| { export.change(k, e); rec.change(k, e, now_ms) })?;
            }
            _ = tick.tick() => {
                let now_ms = unix_ms(SystemTime::now());
                engine.tick(Instant::now(), &mut |k, e| { export.change(k, e); rec.change(k, e, now_ms) })?;
                export.tick(&engine.table, engine.caches());
                // Rows read the address book when written: the addresses
                // whose names arrived need no `update` here.
                if let Some(en) = &engine.enricher {
                    en.arrived().take();
                }
            }
            _ = pass.tick() => {
                rec.checkpoints(engine.table.iter(), unix_ms(SystemTime::now()));
            }
            _ = usr1.recv() => {
                eprintln!("flowtop: journal: {} ({} flows live)", rec.writer().stats().counts(), engine.table.len());
            }
            name = signals.recv() => break Stop::Signal(name),
        }
    };
    // Destroys held for their socket events end now, with the others.
    let now_ms = unix_ms(SystemTime::now());
    engine.release_destroys(super::Release::All, &mut |k, e| {
        export.change(k, e);
        rec.change(k, e, now_ms)
    });
    export.finish(&engine.table);
    let counts = rec.finish(engine.table.iter(), now_ms);
    Ok((stop, counts))
}
