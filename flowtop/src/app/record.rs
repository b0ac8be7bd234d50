//! `flowtop record`: headless, writing every flow that ends to the journal
//! (`--journal`) until SIGINT or SIGTERM. The start-up is `--json`'s
//! (privileges, sysctls restored at the end, eBPF attribution, names);
//! nothing is written on stdout, warnings go to stderr.

use super::start::Live;
use super::RunError;
use crate::cli::Command;
use crate::config::Config;
use crate::engine;
use crate::journal::recorder::Recorder;
use crate::journal::retention::Retention;
use crate::journal::writer::{self, Writer, WriterOptions};

/// Runs the recorder until SIGINT or SIGTERM.
pub fn run(config: &Config) -> Result<(), RunError> {
    let retention = match &config.command {
        Some(Command::Record(args)) => {
            Retention::parse(&args.retain, &args.retain_size).map_err(RunError::Usage)?
        }
        _ => Retention::default(),
    };
    // Opened before anything is changed: a foreign or newer file is an
    // error at once, and nothing else has started.
    let opened = writer::open(&config.journal).map_err(|e| RunError::Other(e.into()))?;
    if opened.read_only {
        eprintln!(
            "flowtop: journal {}: the file is read-only: the flows that end are counted as lost (restart flowtop record once it is writable)",
            crate::output::safe::terminal_safe(&config.journal.display().to_string())
        );
    }
    let Live {
        runtime,
        engine: inputs,
        attribution: _attribution,
        book,
        sysctls: _sysctls,
        ..
    } = Live::start(config, config.selection.clone())?;
    let opts = WriterOptions {
        retention: Some(retention),
        ..WriterOptions::default()
    };
    let writer = Writer::spawn(opened, &config.journal, opts).map_err(|e| RunError::Other(e.into()))?;
    let recorder = Recorder::new(writer, Some(book));
    // `_attribution` keeps the eBPF programs attached while this runs.
    let (_, counts) = runtime.block_on(engine::run_record(inputs, recorder))?;
    if counts.dropped + counts.lost > 0 {
        eprintln!("flowtop: journal: {counts}");
    }
    Ok(())
}
