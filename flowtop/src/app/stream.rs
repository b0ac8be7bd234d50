//! `--json`: the meta line, then the live stream until a signal.

use std::io::{self, BufWriter};

use super::start::Live;
use super::{load_services, RunError};
use crate::config::Config;
use crate::engine;
use crate::output::json::{now_ts, JsonWriter};
use crate::output::meta::{Meta, MetaInputs};
use crate::VERSION;

pub fn run(config: &Config) -> Result<(), RunError> {
    let Live {
        runtime,
        engine: inputs,
        attribution,
        dns,
        geoip,
        book,
        sysctls: _sysctls,
    } = Live::start(config, config.selection.clone())?;
    let ebpf_status = attribution.ebpf_status();
    let (ts, _) = now_ts();
    let mut out = JsonWriter::new(BufWriter::with_capacity(1 << 16, io::stdout().lock()))
        .with_services(load_services(&config.paths))
        .with_book(book);
    let meta = Meta::new(
        &ts,
        &MetaInputs {
            version: VERSION,
            attribution: &attribution.decision,
            ebpf: Some(&ebpf_status),
            kprobes: attribution.kprobes.as_ref(),
            selection: &config.selection,
            interval_s: config.interval_s,
            dns: &dns,
            geoip: &geoip,
            inspect: !config.enrich.no_inspect,
        },
    );
    match out.value(&meta).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(RunError::Other(e.into())),
    }
    // `attribution.handle` keeps the eBPF programs attached while this runs.
    runtime.block_on(engine::run_stream(inputs, &mut out))?;
    Ok(())
}
