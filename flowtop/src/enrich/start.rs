//! Starting enrichment for a run: which sources the flags and the machine
//! allow, and the notices that say what is missing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::book::AddressBook;
use super::dns::{DnsConfig, ReverseDns};
use super::enricher::{Enricher, GeoLookup, NameLookup};
use super::geoip::{self, GeoCache};
use super::sources::ScopeOnly;
use crate::config::EnrichOptions;

/// The enrichment of a run and what it says about itself in the meta line.
pub struct Enrichment {
    pub enricher: Enricher,
    /// "on", "off" (-n) or why it is unavailable.
    pub dns: String,
    /// The GeoIP database files in use.
    pub geoip: Vec<String>,
    /// How long one reverse lookup may take.
    pub dns_timeout: Duration,
}

impl Enrichment {
    /// `--once`: waits until every address seen has its name or has failed,
    /// at most `bound`, so batch output is complete.
    /// Lookups held back while the table loaded are asked now.
    pub fn wait_for_names(&mut self, bound: Duration) {
        self.enricher.ask_deferred();
        let deadline = Instant::now() + bound;
        while self.enricher.retry_pending() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// How long `--once` waits for names beyond the resolver's own time-out.
pub const ONCE_MARGIN: Duration = Duration::from_millis(250);

/// The resolver's own runtime: one worker thread, so lookups, their
/// time-outs and answers run beside the engine instead of taking turns with
/// it on the engine's thread. Shut down without waiting for lookups in flight.
pub struct DnsRuntime(Option<tokio::runtime::Runtime>);

impl Drop for DnsRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Starts the sources the flags leave on (`geoip_dir`: searched first for
/// databases). Notices go to stderr, once. Needs no privileges: called
/// after they are dropped, so the resolver's thread starts without any.
pub fn start(opts: &EnrichOptions, geoip_dir: Option<&std::path::Path>) -> Enrichment {
    let book = AddressBook::new();
    let (geo, geoip) = start_geoip(opts.no_geoip, geoip_dir);
    let cfg = DnsConfig::default();
    let dns_timeout = cfg.timeout;
    let mut enricher = Enricher::new(book.clone(), geo, None);
    enricher.set_inspect(!opts.no_inspect);
    let dns = if opts.no_dns {
        "off".to_owned()
    } else {
        let sink = Enricher::name_sink(book, enricher.arrived().clone());
        let started = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("flowtop-dns")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                let _ctx = rt.enter();
                let resolver = ReverseDns::start(cfg, move |ip, lookup| sink(ip, lookup.into()))
                    .map_err(|e| e.to_string())?;
                Ok((resolver, DnsRuntime(Some(rt))))
            });
        match started {
            Ok((resolver, runtime)) => {
                enricher.set_names(Arc::new(resolver) as Arc<dyn NameLookup>, runtime);
                "on".to_owned()
            }
            Err(e) => {
                eprintln!("flowtop: reverse DNS is off: {e}");
                format!("unavailable: {e}")
            }
        }
    };
    Enrichment {
        enricher,
        dns,
        geoip,
        dns_timeout,
    }
}

/// GeoIP from the first usable databases on the search path; without one
/// (or with `-G`), addresses still get their scope label.
fn start_geoip(
    no_geoip: bool,
    geoip_dir: Option<&std::path::Path>,
) -> (Option<Box<dyn GeoLookup>>, Vec<String>) {
    if no_geoip {
        return (Some(Box::new(ScopeOnly)), Vec::new());
    }
    let (db, notices) = geoip::open(&geoip::search_path(geoip_dir));
    for n in notices {
        eprintln!("flowtop: {n}");
    }
    match db {
        Some(db) => {
            let files = db
                .databases()
                .iter()
                .map(|d| d.path.display().to_string())
                .collect();
            (Some(Box::new(GeoCache::new(db))), files)
        }
        None => (Some(Box::new(ScopeOnly)), Vec::new()),
    }
}
