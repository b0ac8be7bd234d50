//! The engine: owns the flow table, feeds it from the conntrack sources,
//! paces re-dumps and expiry, and writes what changed.
//!
//! The table has exactly one owner (this loop); sources run in their own
//! threads and hand over owned flows through one bounded channel.

use std::io::{self, Write};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::conntrack::socket::CtSocket;
use crate::conntrack::source::{self, DumpRequest, SourceMsg};
use crate::flow::table::{EventKind, FlowTable, TableConfig};
use crate::flow::Selection;
use crate::output::json::{now_ts, JsonWriter};

/// Batches in flight between the sources and the engine.
const CHANNEL_DEPTH: usize = 256;

/// How the stream run is configured.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub sel: Selection,
    pub interval: Duration,
}

/// Why the stream ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Signal(&'static str),
    /// The reader of our output went away (EPIPE).
    OutputClosed,
}

/// The table configuration for a refresh interval.
pub fn table_config(interval: Duration) -> TableConfig {
    TableConfig {
        rate_window: interval / 2,
        ..TableConfig::default()
    }
}

/// The hint printed when conntrack tracks nothing in this namespace.
pub const EMPTY_TABLE_HINT: &str = "flowtop: the conntrack table of this network namespace is empty. \
Conntrack only tracks a namespace once a rule uses it, e.g.:\n  \
nft add table inet flowtop; nft add chain inet flowtop in '{ type filter hook input priority 0; }'; \
nft add rule inet flowtop in ct state established,related accept\n\
or: iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT";

fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// Streams flow events as JSON lines until a signal or a fatal error.
pub async fn run_stream<W: Write>(
    cfg: StreamConfig,
    events: CtSocket,
    dumper: CtSocket,
    out: &mut JsonWriter<W>,
) -> anyhow::Result<Stop> {
    let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
    let (dump_tx, dump_rx) = std_mpsc::channel::<DumpRequest>();
    let mut rcvbuf = events.kernel_rcvbuf().unwrap_or(0);
    source::spawn_events(events, cfg.sel.clone(), tx.clone())?;
    source::spawn_dumper(dumper, cfg.sel.clone(), dump_rx, tx)?;

    let mut table = FlowTable::new(table_config(cfg.interval));
    let mut resync_pending = false;
    let mut warned_malformed = false;
    let gen = table.begin_dump(false);
    dump_tx.send(DumpRequest { gen })?;

    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick fires at once; the initial dump is already asked for
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigquit = signal(SignalKind::quit())?;

    loop {
        let (ts, wall) = now_ts();
        let now = Instant::now();
        let mut write_err: Option<io::Error> = None;
        let mut emit = |kind: EventKind, e: &crate::flow::table::Entry| {
            if write_err.is_none() {
                if let Err(err) = out.flow(kind, e, &ts, wall) {
                    write_err = Some(err);
                }
            }
        };
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else {
                    anyhow::bail!("the conntrack sources stopped");
                };
                let mut show_stats = false;
                match msg {
                    SourceMsg::Events(batch) => {
                        for (kind, flow) in batch {
                            table.apply_event(kind, flow, now, &mut emit);
                        }
                    }
                    SourceMsg::DumpChunk { gen, flows } => {
                        for flow in flows {
                            table.apply_dump_entry(gen, flow, now, &mut emit);
                        }
                    }
                    SourceMsg::DumpDone { gen, total } => {
                        table.end_dump(gen, &mut emit);
                        if gen == 1 && total == 0 {
                            eprintln!("{EMPTY_TABLE_HINT}");
                        }
                        if resync_pending {
                            resync_pending = false;
                            let gen = table.begin_dump(true);
                            dump_tx.send(DumpRequest { gen })?;
                            show_stats = true;
                        }
                    }
                    SourceMsg::DumpFailed { gen, error } => {
                        table.abort_dump(gen);
                        eprintln!("flowtop: conntrack dump failed, keeping the last table: {error}");
                    }
                    SourceMsg::Overrun { rcvbuf: grown } => {
                        // Events were lost: the table can only be trusted again after a
                        // full dump that starts after the loss.
                        table.stats.overruns += 1;
                        rcvbuf = grown;
                        if table.dump_running() {
                            resync_pending = true;
                        } else {
                            let gen = table.begin_dump(true);
                            dump_tx.send(DumpRequest { gen })?;
                        }
                        show_stats = true;
                    }
                    SourceMsg::Malformed(reason) => {
                        table.stats.malformed += 1;
                        if !warned_malformed {
                            warned_malformed = true;
                            eprintln!("flowtop: skipped a malformed conntrack message ({reason}); \
                                       further ones are only counted");
                        }
                    }
                    SourceMsg::Fatal(reason) => anyhow::bail!("{reason}"),
                }
                drop(emit);
                if show_stats && write_err.is_none() {
                    write_err = out.stats(&ts, table.len(), &table.stats, rcvbuf).err();
                }
            }
            _ = tick.tick() => {
                table.expire(now, &mut emit);
                drop(emit);
                if !table.dump_running() {
                    let gen = table.begin_dump(false);
                    dump_tx.send(DumpRequest { gen })?;
                }
            }
            _ = sigint.recv() => return finish(out, Stop::Signal("SIGINT")),
            _ = sigterm.recv() => return finish(out, Stop::Signal("SIGTERM")),
            _ = sighup.recv() => return finish(out, Stop::Signal("SIGHUP")),
            _ = sigquit.recv() => return finish(out, Stop::Signal("SIGQUIT")),
        }
        let flushed = match write_err {
            Some(e) => Err(e),
            None => out.flush(),
        };
        match flushed {
            Ok(()) => {}
            Err(e) if is_broken_pipe(&e) => return Ok(Stop::OutputClosed),
            Err(e) => return Err(e.into()),
        }
    }
}

fn finish<W: Write>(out: &mut JsonWriter<W>, stop: Stop) -> anyhow::Result<Stop> {
    match out.flush() {
        Err(e) if !is_broken_pipe(&e) => Err(e.into()),
        _ => Ok(stop),
    }
}
