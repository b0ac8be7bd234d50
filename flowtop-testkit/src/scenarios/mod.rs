//! The attribution scenario suite (issue 12): real programs, each under an
//! executable name of its own (`sc-<scenario>`, copies of one C program,
//! `sc.c` with `raw.c` and `uring.c`, compiled with gcc at run time),
//! talking from flowtop's namespace to a peer namespace (`peer.py` serves
//! them) or over loopback, while one `flowtop --json --attribution ebpf`
//! watches.
//!
//! Each scenario is scored on
//! - seen and attributed: flowtop shows its flows, with one of the
//!   scenario's processes (pid printed by the program, comm `sc-<name>`);
//! - bytes: conntrack's counters of its flows (orig + reply, from flowtop's
//!   JSON) against the L3 bytes an nft counter in the peer namespace saw
//!   (in flowtop's namespace, on `lo`, for loopback), within 10%.
//!
//! Needs root, `gcc`, `nft`, `ip`, `python3`. Used by the root test
//! `tests/netns/scorecard.rs` and by `cargo xtask bench scorecard`.

mod flows;
mod list;
mod run;

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

pub use list::{all, Scenario};

use crate::netns::{SERVER_V4, SERVER_V6};

/// How far conntrack's bytes may be from the peer's, in percent.
pub const BYTES_TOLERANCE_PCT: f64 = 10.0;

/// One scenario's score.
#[derive(Debug, Clone)]
pub struct Score {
    pub scenario: Scenario,
    /// Flows of the scenario flowtop showed.
    pub seen: usize,
    /// Of those, flows with one of the scenario's processes as owner.
    pub attributed: usize,
    /// Owners flowtop gave the flows that are not the scenario's pid and
    /// comm (`none` for no owner), for the report.
    pub wrong_owners: Vec<String>,
    /// conntrack's orig + reply bytes over the scenario's flows.
    pub ct_bytes: u64,
    /// What the peer's nft counter saw.
    pub nft_bytes: u64,
    /// The scenario program's failure, if it failed.
    pub error: String,
}

impl Score {
    /// conntrack's bytes against the peer's, in percent (None: no bytes).
    pub fn diff_pct(&self) -> Option<f64> {
        (self.nft_bytes > 0)
            .then(|| (self.ct_bytes as f64 - self.nft_bytes as f64) * 100.0 / self.nft_bytes as f64)
    }

    /// None when the scenario passes; else why not.
    pub fn failure(&self) -> Option<String> {
        let s = &self.scenario;
        if !self.error.is_empty() {
            return Some(format!("the program failed: {}", self.error));
        }
        if !s.visible {
            // Only the peer sees these packets; a flow here would mean the
            // frames did pass netfilter after all.
            return (self.seen != 0).then(|| format!("{} flows seen, none expected", self.seen));
        }
        if self.seen < s.flows {
            return Some(format!("{} of {} flows seen", self.seen, s.flows));
        }
        if self.attributed < self.seen {
            return Some(format!(
                "{} of {} flows attributed (others: {})",
                self.attributed,
                self.seen,
                self.wrong_owners.join(", ")
            ));
        }
        match self.diff_pct() {
            None => Some("the peer counted no bytes".into()),
            Some(d) if d.abs() > BYTES_TOLERANCE_PCT => {
                Some(format!("conntrack bytes {:+.1}% off the peer's", d))
            }
            Some(_) => None,
        }
    }

    pub fn verdict(&self) -> String {
        match self.failure() {
            None if !self.scenario.visible => {
                "not visible to conntrack (AF_PACKET bypasses netfilter)".into()
            }
            None => "ok".into(),
            Some(why) => format!("FAIL: {why}"),
        }
    }
}

/// The suite's outcome.
pub struct Report {
    pub scores: Vec<Score>,
    pub took: Duration,
    /// flowtop's stderr, for a failure's context.
    pub flowtop_stderr: String,
}

impl Report {
    /// `scenario: why` for every failing scenario.
    pub fn failures(&self) -> Vec<String> {
        self.scores
            .iter()
            .filter_map(|s| Some(format!("{}: {}", s.scenario.name, s.failure()?)))
            .collect()
    }

    /// The markdown table: scenario | exe | flows seen | attributed |
    /// conntrack bytes | nft bytes | diff % | verdict.
    pub fn table(&self) -> String {
        let mut o = String::from(
            "| scenario | exe | flows seen | attributed | conntrack bytes | nft bytes | diff % | verdict |\n\
             |---|---|---:|---:|---:|---:|---:|---|\n",
        );
        for s in &self.scores {
            let sc = &s.scenario;
            let (seen, attributed, ct, diff) = if sc.visible {
                (
                    format!("{} of {}", s.seen, sc.flows),
                    s.attributed.to_string(),
                    s.ct_bytes.to_string(),
                    s.diff_pct().map_or("—".into(), |d| format!("{d:+.1}")),
                )
            } else {
                let n = "not visible to conntrack".to_owned();
                (s.seen.to_string(), "—".into(), n, "—".into())
            };
            o.push_str(&format!(
                "| {} ({}) | {} | {seen} | {attributed} | {ct} | {} | {diff} | {} |\n",
                sc.name,
                sc.what,
                sc.exe(),
                s.nft_bytes,
                s.verdict().replace('|', "/")
            ));
        }
        o
    }
}

/// Runs the suite with `flowtop` (the binary). `log` gets a line per
/// scenario as it runs.
pub fn run(flowtop: &Path, log: &dyn Fn(&str)) -> io::Result<Report> {
    let started = Instant::now();
    let scenarios = all();
    let raw = run::run(flowtop, &scenarios, log)?;
    let merged = flows::merge(&raw.flowtop_stdout);
    let scores = scenarios
        .into_iter()
        .zip(raw.ran)
        .map(|(sc, ran)| {
            let dst = sc.dst(SERVER_V4, SERVER_V6);
            let mine: Vec<&flows::Merged> = merged.iter().filter(|f| sc.owns_flow(&f.json, &dst)).collect();
            let exe = sc.exe();
            // A container's flows are forwarded ones: found through its
            // namespace, never by luck through a socket of flowtop's own.
            let how_ok =
                |f: &flows::Merged| !sc.path.in_container() || f.attribution.as_deref() == Some("netns");
            let ours = |f: &flows::Merged| {
                how_ok(f)
                    && f.owner
                        .as_ref()
                        .is_some_and(|(pid, comm)| ran.pids.contains(pid) && *comm == exe)
            };
            Score {
                seen: mine.len(),
                attributed: mine.iter().filter(|f| ours(f)).count(),
                wrong_owners: mine
                    .iter()
                    .filter(|f| !ours(f))
                    .map(|f| match &f.owner {
                        None => format!("none, events {}", f.events.join(",")),
                        // The scenario's process under another name (e.g.
                        // the thread that made the socket, once the
                        // process is gone and /proc cannot name it).
                        Some((p, c)) if ran.pids.contains(p) && *c == exe => format!(
                            "right process, attribution {}",
                            f.attribution.as_deref().unwrap_or("null")
                        ),
                        Some((p, c)) if ran.pids.contains(p) => format!("right pid {p}, comm {c}"),
                        Some((p, c)) => format!("pid {p} comm {c}"),
                    })
                    .collect(),
                ct_bytes: mine.iter().map(|f| f.bytes).sum(),
                nft_bytes: ran.nft_bytes,
                error: ran.error,
                scenario: sc,
            }
        })
        .collect();
    Ok(Report {
        scores,
        took: started.elapsed(),
        flowtop_stderr: raw.flowtop_stderr,
    })
}
