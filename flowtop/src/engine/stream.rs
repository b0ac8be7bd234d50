//! `--json`: the engine writing every change as a JSON line.

use std::io::{self, Write};
use std::time::{Duration, Instant, SystemTime};

use tokio::signal::unix::{signal, SignalKind};

use super::{is_broken_pipe, Engine, Inputs, Stop};
use crate::enrich::enricher::Enricher;
use crate::flow::table::{Entry, EventKind};
use crate::output::json::{now_ts, JsonWriter};

/// How often names that arrived are turned into `update` lines.
const NAMES_INTERVAL: Duration = Duration::from_millis(250);

/// Writes table changes as JSON lines, keeping the first write error.
pub(super) struct Emitter<'a, W: Write> {
    out: &'a mut JsonWriter<W>,
    ts: String,
    wall: SystemTime,
    error: Option<io::Error>,
}

impl<'a, W: Write> Emitter<'a, W> {
    fn new(out: &'a mut JsonWriter<W>) -> Self {
        let (ts, wall) = now_ts();
        Emitter {
            out,
            ts,
            wall,
            error: None,
        }
    }

    pub(super) fn emit(&mut self, kind: EventKind, e: &Entry) {
        if self.error.is_none() {
            self.error = self.out.flow(kind, e, &self.ts, self.wall).err();
        }
    }

    fn finish(self) -> io::Result<()> {
        match self.error {
            Some(e) => Err(e),
            None => self.out.flush(),
        }
    }
}

/// Streams flow events as JSON lines until a signal or a fatal error. The
/// caller has printed the meta line.
pub async fn run_stream<W: Write>(mut inputs: Inputs, out: &mut JsonWriter<W>) -> anyhow::Result<Stop> {
    let interval = inputs.cfg.interval;
    let mut export = std::mem::take(&mut inputs.export);
    let (mut engine, mut signals, mut rx) = Engine::start(inputs, None)?;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; the initial dump is already asked for.
    tick.tick().await;
    // Names are gathered a few times a second: one pass over the table per
    // batch of answers rather than one per answer.
    let mut names_tick = tokio::time::interval(NAMES_INTERVAL);
    names_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // `kill -USR1` asks for a stats line (dumps, hot refreshes, overruns...).
    let mut usr1 = signal(SignalKind::user_defined1())?;

    loop {
        let written = tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else {
                    anyhow::bail!("the conntrack sources stopped");
                };
                // Time is taken when the message is handled, not when waiting began.
                let mut em = Emitter::new(out);
                let stats_due = engine.handle(msg, Instant::now(), &mut |k, e| { export.change(k, e); em.emit(k, e) })?;
                if stats_due && em.error.is_none() {
                    let t = &engine.table;
                    em.error = em.out.stats(&em.ts, t.len(), &t.stats, engine.rcvbuf, engine.names.as_ref()).err();
                }
                em.finish()
            }
            _ = tick.tick() => {
                // Nothing may be written for a long time on a quiet table:
                // notice a reader that went away without waiting for a write.
                if stdout_reader_gone() {
                    export.finish(&engine.table);
                    return Ok(Stop::OutputClosed);
                }
                let mut em = Emitter::new(out);
                engine.tick(Instant::now(), &mut |k, e| { export.change(k, e); em.emit(k, e) })?;
                export.tick(&engine.table, engine.caches());
                em.finish()
            }
            _ = names_tick.tick(), if engine.enricher.as_ref().is_some_and(Enricher::dns_on) => {
                let mut em = Emitter::new(out);
                engine.names_arrived(&mut em);
                em.finish()
            }
            _ = usr1.recv() => {
                let t = &engine.table;
                out.stats(&now_ts().0, t.len(), &t.stats, engine.rcvbuf, engine.names.as_ref()).and_then(|()| out.flush())
            }
            name = signals.recv() => {
                export.finish(&engine.table);
                return finish(out, Stop::Signal(name));
            }
        };
        match written {
            Ok(()) => {}
            Err(e) if is_broken_pipe(&e) => {
                export.finish(&engine.table);
                return Ok(Stop::OutputClosed);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether stdout is a pipe or socket whose reader has gone (poll reports
/// POLLERR/POLLHUP for it). A terminal or a file never counts as gone here.
fn stdout_reader_gone() -> bool {
    let mut pfd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    rc > 0 && pfd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

fn finish<W: Write>(out: &mut JsonWriter<W>, stop: Stop) -> anyhow::Result<Stop> {
    match out.flush() {
        Err(e) if !is_broken_pipe(&e) => Err(e.into()),
        _ => Ok(stop),
    }
}
