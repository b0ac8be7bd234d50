//! Flows leaving the machine: IPFIX records to stock collectors
//! ([`ipfix`]), Prometheus metrics over HTTP ([`metrics`]), and the
//! Community ID every output carries ([`community_id`]).
//!
//! The engine hands every change of the table to one [`Exporters`] (from
//! whichever mode runs: the screen, `--json`, `record`), ticks it once per
//! interval and finishes it at exit.

pub mod community_id;
pub mod ipfix;
pub mod metrics;

use std::time::{Duration, SystemTime};

use crate::flow::table::{Entry, EventKind, FlowTable};

/// `--ipfix-active`'s default: a long-lived flow gets a record this often.
pub const DEFAULT_ACTIVE: Duration = Duration::from_secs(60);

/// What the command line asks to export.
#[derive(Debug, Clone, Default)]
pub struct ExportConfig {
    /// `--ipfix`: the collector.
    pub ipfix: Option<ipfix::exporter::Target>,
    /// `--ipfix-active`: the active timeout.
    pub active: Option<Duration>,
    /// `--metrics`: where to serve /metrics.
    pub metrics: Option<std::net::SocketAddr>,
}

impl ExportConfig {
    pub fn is_empty(&self) -> bool {
        self.ipfix.is_none() && self.metrics.is_none()
    }

    /// From the command line; the flags only make sense in the live modes.
    pub fn from_args(args: &crate::cli::Args, mode: crate::config::RunMode) -> Result<ExportConfig, String> {
        use crate::config::RunMode;
        let ipfix = args
            .ipfix
            .as_deref()
            .map(ipfix::exporter::Target::parse)
            .transpose()?;
        let metrics = args
            .metrics
            .as_deref()
            .map(|s| {
                std::net::ToSocketAddrs::to_socket_addrs(s)
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| format!("--metrics {s}: not ADDR:PORT"))
            })
            .transpose()?;
        let cfg = ExportConfig {
            ipfix,
            active: Some(Duration::from_secs_f64(args.ipfix_active)),
            metrics,
        };
        if !cfg.is_empty() && !matches!(mode, RunMode::Screen | RunMode::JsonStream | RunMode::Record) {
            return Err("--ipfix and --metrics work with the screen, --json and record (not --once, -u, history or run)".into());
        }
        Ok(cfg)
    }
}

/// The IPFIX half: the per-flow deltas (engine thread) and the sender.
struct Ipfix {
    deltas: ipfix::delta::Deltas,
    exporter: ipfix::exporter::Exporter,
}

/// Every exporter a run has (none by default): the engine's loops call
/// [`change`](Exporters::change) for each change of the table,
/// [`tick`](Exporters::tick) once per interval and
/// [`finish`](Exporters::finish) at exit.
#[derive(Default)]
pub struct Exporters {
    ipfix: Option<Ipfix>,
    metrics: Option<metrics::Metrics>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Exporters {
    /// Starts the exporters `cfg` asks for (their threads and sockets).
    pub fn start(cfg: &ExportConfig) -> anyhow::Result<Exporters> {
        let ipfix = match &cfg.ipfix {
            Some(target) => Some(Ipfix {
                deltas: ipfix::delta::Deltas::new(cfg.active.unwrap_or(DEFAULT_ACTIVE)),
                exporter: ipfix::exporter::Exporter::start(target.clone())
                    .map_err(|e| anyhow::anyhow!("--ipfix: {e}"))?,
            }),
            None => None,
        };
        let metrics = match cfg.metrics {
            Some(addr) => {
                Some(metrics::Metrics::start(addr).map_err(|e| anyhow::anyhow!("--metrics {addr}: {e}"))?)
            }
            None => None,
        };
        Ok(Exporters { ipfix, metrics })
    }

    /// One change of the flow table.
    pub fn change(&mut self, kind: EventKind, e: &Entry) {
        if let Some(m) = &mut self.metrics {
            m.change(kind, e);
        }
        if let Some(x) = &mut self.ipfix {
            let ex = &x.exporter;
            x.deltas.change(kind, e, now_ms(), &mut |r| ex.send(r));
        }
    }

    /// Once per interval: the active timeouts due.
    pub fn tick(&mut self, table: &FlowTable, caches: metrics::Caches) {
        if let Some(x) = &mut self.ipfix {
            let ex = &x.exporter;
            x.deltas.tick(|k| table.get(k), now_ms(), &mut |r| ex.send(r));
        }
        if let Some(m) = &mut self.metrics {
            let ipfix = self.ipfix.as_ref().map(|x| {
                use std::sync::atomic::Ordering::Relaxed;
                let s = &x.exporter.stats;
                metrics::IpfixCounts {
                    records: s.records.load(Relaxed),
                    sent: s.sent.load(Relaxed),
                    dropped: s.dropped.load(Relaxed),
                    messages: s.messages.load(Relaxed),
                    send_errors: s.send_errors.load(Relaxed),
                }
            });
            m.tick(table, metrics::Extra { ipfix, caches });
        }
    }

    /// At exit: the last records of the flows still live, then everything
    /// queued is sent.
    pub fn finish(&mut self, table: &FlowTable) {
        if let Some(mut x) = self.ipfix.take() {
            let ex = &x.exporter;
            x.deltas.finish(table.iter(), now_ms(), &mut |r| ex.send(r));
            x.exporter.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, RunMode};
    use clap::Parser;

    fn config(args: &[&str]) -> Result<Config, String> {
        let args = crate::cli::Args::try_parse_from(std::iter::once("flowtop").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::from_args(&args).map_err(|e| e.0)
    }

    #[test]
    fn flags_in_the_live_modes_and_refused_elsewhere() {
        let c = config(&["--json", "--ipfix", "127.0.0.1:4739", "--ipfix-active", "5"]).expect("json");
        assert_eq!(c.mode, RunMode::JsonStream);
        assert!(c.export.ipfix.is_some());
        assert_eq!(c.export.active, Some(std::time::Duration::from_secs(5)));
        assert!(config(&["record", "--metrics", "127.0.0.1:9464"]).is_ok());
        assert!(config(&["--metrics", "127.0.0.1:9464"]).is_ok(), "the screen");
        let e = config(&["--once", "--ipfix", "127.0.0.1:4739"]).expect_err("once");
        assert!(e.contains("--ipfix and --metrics work with"), "{e}");
        assert!(config(&["history", "--metrics", "127.0.0.1:9464"]).is_err());
        let e = config(&["--json", "--ipfix", "no-port"]).expect_err("bad target");
        assert!(e.starts_with("--ipfix no-port"), "{e}");
        assert!(config(&["--json", "--metrics", "nowhere"]).is_err());
        assert!(config(&["--json", "--ipfix-active", "0"]).is_err());
    }
}
