//! The screen: the same start-up as `--json`, with the table published to
//! the screen thread instead of written. The engine ingests every family
//! and protocol; the screen shows the selection (`-4 -6 -T -U -D -I -S`)
//! and toggles it live.

use std::io::{self, IsTerminal, Write};
use std::sync::Arc;

use super::start::Live;
use super::{load_services, RunError};
use crate::config::Config;
use crate::flow::table::Snapshot;
use crate::flow::Selection;
use crate::{engine, ui, VERSION};

pub fn run(config: &Config) -> Result<(), RunError> {
    if !io::stdout().is_terminal() {
        return Err(RunError::Usage(
            "the screen needs a terminal (stdout is not one): use --once for a table or --json for a live stream"
                .into(),
        ));
    }
    let frame_log = match std::env::var_os("FLOWTOP_FRAME_LOG") {
        Some(path) => Some(std::fs::File::create(&path).map_err(|e| {
            RunError::Other(anyhow::anyhow!(
                "FLOWTOP_FRAME_LOG {}: {e}",
                path.to_string_lossy()
            ))
        })?),
        None => None,
    };
    let mut everything = Selection::everything();
    everything.ipv4 = true;
    everything.ipv6 = true;
    let Live {
        runtime,
        engine: inputs,
        attribution,
        book,
        sysctls: _sysctls,
        ..
    } = Live::start(config, everything)?;
    let (snap_tx, snap_rx) = tokio::sync::watch::channel(Arc::new(Snapshot {
        flows: Default::default(),
        stats: Default::default(),
        aggregates: Default::default(),
        first_rates: 0,
        ended: Default::default(),
    }));
    let (quit_tx, quit_rx) = tokio::sync::watch::channel(false);
    let notes = engine::Notes::default();
    let asked_names = crate::names::tracker::BookSlot::default();
    let input = ui::ScreenInput {
        snapshots: snap_rx,
        book,
        services: load_services(&config.paths),
        header: ui::HeaderInfo {
            version: VERSION,
            attribution: attribution.decision.active,
            attribution_reason: attribution.decision.reason.clone(),
            interval: config.interval(),
            inspect: !config.enrich.no_inspect,
        },
        view: ui::ViewOptions {
            selection: config.selection.clone(),
            show_src: config.show.show_src,
            bits: config.show.bits,
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        },
        notes: notes.clone(),
        quit: quit_tx,
        asked_names: asked_names.clone(),
        frame_log,
        journal: config.journal.clone(),
    };
    let screen = std::thread::Builder::new()
        .name("screen".into())
        .spawn(move || ui::run(input))
        .map_err(|e| RunError::Other(e.into()))?;
    let sink = engine::ScreenSink {
        snapshots: snap_tx,
        notes: notes.clone(),
        quit: quit_rx,
        asked_names,
    };
    let ran = runtime.block_on(engine::run_screen(inputs, sink));
    // The engine dropped the snapshot sender: the screen ends and restores
    // the terminal before anything more is printed.
    let shown = screen.join();
    ui::term::restore();
    // Not eprintln: after a hangup stderr may be gone, and that must not panic.
    for note in notes.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = writeln!(io::stderr(), "{note}");
    }
    match shown {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(RunError::Other(anyhow::anyhow!("the screen failed: {e}"))),
        Err(_) => return Err(RunError::Other(anyhow::anyhow!("the screen panicked"))),
    }
    ran?;
    drop(attribution);
    Ok(())
}
