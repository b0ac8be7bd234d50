//! `--once`: one dump of the table, printed, then exit.
//!
//! JSON is streamed like `conntrack -L` streams its text: a dump thread
//! receives and decodes while this thread deduplicates and writes, so the
//! kernel's work, the decoding and the formatting overlap, and memory holds
//! one key per flow instead of the table. The text table needs every flow
//! before it can sort, so it builds the table.

use std::collections::HashSet;
use std::io::{self, BufWriter, Write};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Instant, SystemTime};

use super::start::{drop_privileges, state_paths};
use super::{load_services, map_socket_error, RunError};
use crate::attribution::join::OwnerJoin;
use crate::attribution::{self, Decision};
use crate::config::{Config, RunMode};
use crate::conntrack::socket::CtSocket;
use crate::conntrack::source::{self, DumpSummary};
use crate::enrich::{self, start::Enrichment};
use crate::flow::model::{Flow, FlowKey};
use crate::flow::table::{EventKind, FlowTable};
use crate::output::json::{now_ts, JsonWriter};
use crate::output::meta::{Meta, MetaInputs};
use crate::{engine, output, sysctl, VERSION};

/// Chunks (one per netlink datagram) in flight between the two threads.
const CHUNKS_IN_FLIGHT: usize = 64;

pub fn run(config: &Config) -> Result<(), RunError> {
    let mut sock = CtSocket::open().map_err(map_socket_error)?;
    // Opening the socket needs no privilege, the dump does: a run that
    // will fail says so first, and alone (no GeoIP or DNS notice before).
    if !crate::privileges::has_net_admin() {
        return Err(RunError::Privileges(super::privileges_message(
            "dumping the conntrack table",
        )));
    }
    if !config.no_sysctl {
        repair_settings_left_by_a_killed_run(config);
    }
    let decision = Decision::for_once(config.attribution);
    // Privileged start-up is over: keep only what the dump and the /proc
    // scan need; enrichment's resolver thread starts without privileges.
    drop_privileges(!decision.is_off());
    let mut enrichment = enrich::start::start(&config.enrich, config.paths.geoip_dir.as_deref());
    // Names are asked once the dump is in (the wait below), not while it loads.
    enrichment.enricher.defer_names();
    let stdout = io::stdout().lock();
    let (summary, written) = if config.mode == RunMode::OnceJson {
        stream_json(config, &decision, sock, &mut enrichment, stdout)?
    } else {
        let (table, summary) = dump_into_table(config, &decision, &mut sock)?;
        for e in table.iter() {
            enrichment.enricher.see(&e.flow);
        }
        enrichment.wait_for_names(enrichment.dns_timeout + enrich::start::ONCE_MARGIN);
        (
            summary,
            print_text(config, &decision, &table, &enrichment, stdout),
        )
    };
    if summary.total == 0 && engine::conntrack_is_empty() {
        eprintln!("{}", engine::EMPTY_TABLE_HINT);
    }
    if summary.malformed > 0 {
        eprintln!(
            "flowtop: skipped {} malformed conntrack message(s): {}",
            summary.malformed,
            summary.first_error.unwrap_or_default()
        );
    }
    match written {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(RunError::Other(e.into())),
        _ => Ok(()),
    }
}

/// A one-shot run changes no settings (they only affect entries created
/// later), but it does put back what a killed streaming run left changed.
fn repair_settings_left_by_a_killed_run(config: &Config) {
    match state_paths(&config.paths).and_then(|p| sysctl::repair(&p).map_err(|e| RunError::Other(e.into()))) {
        Ok(repaired) if !repaired.is_empty() => {
            eprintln!("flowtop: restored conntrack settings left changed by a killed flowtop: {repaired:?}");
        }
        Ok(_) => {}
        Err(e) => eprintln!("flowtop: could not check for settings left by a killed flowtop: {e}"),
    }
}

/// Dumps on a second thread and writes JSON lines as chunks arrive. Returns
/// the dump summary and the outcome of writing (kept apart: a closed pipe
/// is not a dump failure).
///
/// With reverse DNS on, lines wait until every name has arrived or failed
/// (bounded by the lookup time-out): batch output is complete or it is
/// nothing. Geography needs no wait.
fn stream_json(
    config: &Config,
    decision: &Decision,
    mut sock: CtSocket,
    enrichment: &mut Enrichment,
    out: impl Write,
) -> Result<(DumpSummary, io::Result<()>), RunError> {
    let sel = config.selection.clone();
    let (tx, rx) = mpsc::sync_channel::<Vec<Flow>>(CHUNKS_IN_FLIGHT);
    let dumper = thread::Builder::new()
        .name("ct-dump".into())
        .spawn(move || source::run_dump(&mut sock, &sel, 1, |flows| tx.send(flows).is_ok()))
        .map_err(|e| RunError::Other(e.into()))?;

    // The /proc scan runs here while the dump thread works.
    // The same join the live modes use, over one /proc scan: `--once` and
    // the stream cannot name different owners for one flow.
    let owners = (!decision.is_off())
        .then(|| OwnerJoin::with_index(Arc::new(attribution::scan_procfs()), Instant::now()));
    let (ts, wall) = now_ts();
    let mut w = JsonWriter::new(BufWriter::with_capacity(1 << 16, out))
        .with_services(load_services(&config.paths))
        .with_book(enrichment.enricher.book().clone());
    // Owned copies: the meta line is written after the names are waited for.
    let (dns, geoip) = (enrichment.dns.clone(), enrichment.geoip.clone());
    let meta = Meta::new(
        &ts,
        &MetaInputs {
            version: VERSION,
            attribution: decision,
            ebpf: None,
            kprobes: None,
            selection: &config.selection,
            interval_s: config.interval_s,
            dns: &dns,
            geoip: &geoip,
            // One dump sees no payloads: no asked-for names in --once.
            inspect: false,
        },
    );
    let wait_for_names = enrichment.enricher.dns_on();
    let mut held: Vec<Flow> = Vec::new();
    let mut written: io::Result<()> = Ok(());
    let mut meta_done = false;
    // A dump is not an atomic snapshot: an entry can come twice.
    let mut seen: HashSet<FlowKey, foldhash::fast::RandomState> = HashSet::default();
    let own_queries = enrichment.enricher.own_queries();
    for chunk in rx.iter() {
        // The meta line waits for the first entries, so a refused dump
        // prints the error alone.
        if !meta_done {
            meta_done = true;
            written = w.value(&meta);
        }
        for flow in chunk {
            if written.is_ok() && !own_queries.contains(&flow) && seen.insert(flow.key()) {
                enrichment.enricher.see(&flow);
                if wait_for_names {
                    held.push(flow);
                } else {
                    let found = owners.as_ref().map(|j| j.lookup(&flow)).unwrap_or_default();
                    written = w.reading(EventKind::Snapshot, &flow, None, found.who(), &ts, wall);
                }
            }
        }
        if written.is_err() {
            break; // dropping the receiver stops the dump thread
        }
    }
    drop(rx);
    if !held.is_empty() {
        enrichment.wait_for_names(enrichment.dns_timeout + enrich::start::ONCE_MARGIN);
        for flow in &held {
            if written.is_err() {
                break;
            }
            let found = owners.as_ref().map(|j| j.lookup(flow)).unwrap_or_default();
            written = w.reading(EventKind::Snapshot, flow, None, found.who(), &ts, wall);
        }
    }
    let summary = dumper
        .join()
        .map_err(|_| RunError::Other(anyhow::anyhow!("the dump thread panicked")))?
        .map_err(map_socket_error)?
        .unwrap_or_default();
    if !meta_done {
        written = w.value(&meta);
    }
    Ok((summary, written.and_then(|()| w.flush())))
}

fn dump_into_table(
    config: &Config,
    decision: &Decision,
    sock: &mut CtSocket,
) -> Result<(FlowTable, DumpSummary), RunError> {
    let sel = &config.selection;
    let now = Instant::now();
    let mut table = FlowTable::new(engine::table_config(config.interval()), now);
    let mut owners =
        (!decision.is_off()).then(|| OwnerJoin::with_index(Arc::new(attribution::scan_procfs()), now));
    let gen = table.begin_dump(false);
    let summary = source::run_dump(sock, sel, 1, |flows| {
        for f in flows {
            table.apply_dump_entry(gen, f, now, &mut owners, &mut |_, _| {});
        }
        true
    })
    .map_err(map_socket_error)?
    .unwrap_or_default();
    table.end_dump(gen, &mut |_, _| {});
    Ok((table, summary))
}

fn print_text(
    config: &Config,
    decision: &Decision,
    table: &FlowTable,
    enrichment: &Enrichment,
    out: impl Write,
) -> io::Result<()> {
    let snap = table.snapshot();
    let mut out = BufWriter::new(out);
    let summary = output::text::summary(
        VERSION,
        snap.flows.len(),
        &snap.aggregates,
        decision.active.name(),
    );
    writeln!(out, "{summary}")?;
    writeln!(out)?;
    // As read: the entries with what their readings add (a rate measured
    // since an entry was written is in its reading).
    let read: Vec<_> = snap.flows.slots().filter_map(|(s, _)| snap.entry_at(s)).collect();
    let mut entries: Vec<_> = read.iter().collect();
    let opts = output::text::TextOptions {
        show_src: config.show.show_src,
        bits: config.show.bits,
    };
    let services = load_services(&config.paths);
    let book = enrichment.enricher.book();
    out.write_all(output::text::table(&mut entries, SystemTime::now(), opts, &services, book).as_bytes())?;
    out.flush()
}
