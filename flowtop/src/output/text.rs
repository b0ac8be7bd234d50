//! `--once` without `--json`: a summary line and an aligned table, like `top -b`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::SystemTime;

use super::format::{age_secs, human_age, human_bytes};
use crate::flow::model::proto;
use crate::flow::table::{Aggregates, Entry};

/// Options of the text table.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextOptions {
    /// Show the source side too (`-s`).
    pub show_src: bool,
    /// Rates in bits per second (`-b`).
    pub bits: bool,
}

fn endpoint(addr: &IpAddr, port: Option<u16>) -> String {
    match (addr, port) {
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    }
}

/// The summary line above the table.
pub fn summary(version: &str, flows: usize, agg: &Aggregates, attribution: &str) -> String {
    let mut s = format!("flowtop {version} - {flows} flows");
    if !agg.by_proto.is_empty() {
        let parts: Vec<String> = agg.by_proto.iter().map(|(p, n)| format!("{p} {n}")).collect();
        let _ = write!(s, " ({})", parts.join(", "));
    }
    if !agg.by_state.is_empty() {
        let parts: Vec<String> = agg.by_state.iter().map(|(p, n)| format!("{p} {n}")).collect();
        let _ = write!(s, " - states: {}", parts.join(", "));
    }
    let _ = write!(s, " - attribution: {attribution}");
    s
}

/// The table, sorted by total bytes (most first), then id.
pub fn table(entries: &mut [&Entry], now: SystemTime, opts: TextOptions) -> String {
    entries.sort_by(|a, b| {
        let total = |e: &Entry| e.flow.counters.map_or(0, |c| c.orig_bytes + c.reply_bytes);
        total(b).cmp(&total(a)).then(a.flow.id.cmp(&b.flow.id))
    });
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(entries.len() + 1);
    let mut header = vec!["PROTO", "STATE", "AGE"];
    if opts.show_src {
        header.push("SOURCE");
    }
    header.extend(["DESTINATION", "NAT", "BYTES", "RATE"]);
    rows.push(header.iter().map(|s| (*s).to_owned()).collect());
    let unit = if opts.bits { 8.0 } else { 1.0 };
    let suffix = if opts.bits { "b/s" } else { "B/s" };
    for e in entries.iter() {
        let f = &e.flow;
        let mut row = vec![
            proto::name(f.proto).map_or_else(|| f.proto.to_string(), str::to_owned),
            f.state.map_or("-", |s| s.name()).to_owned(),
            f.start_ns.map_or_else(|| "n/a".to_owned(), |s| human_age(age_secs(s, now))),
        ];
        if opts.show_src {
            row.push(endpoint(&f.orig.src, f.orig.sport));
        }
        row.push(endpoint(&f.orig.dst, f.orig.dport));
        // Without NAT the reply tuple mirrors the original; show it only when it does not.
        let mirrored = f.reply.src == f.orig.dst
            && f.reply.dst == f.orig.src
            && f.reply.sport == f.orig.dport
            && f.reply.dport == f.orig.sport;
        row.push(if mirrored {
            "-".to_owned()
        } else {
            format!("{}<-{}", endpoint(&f.reply.dst, f.reply.dport), endpoint(&f.reply.src, f.reply.sport))
        });
        match f.counters {
            Some(c) => {
                row.push(format!("{}/{}", human_bytes(c.orig_bytes as f64), human_bytes(c.reply_bytes as f64)));
                row.push(match e.rate.measured_rates() {
                    Some(r) => format!(
                        "{}/{}{suffix}",
                        human_bytes(r.orig_bytes * unit),
                        human_bytes(r.reply_bytes * unit)
                    ),
                    None => "-".to_owned(),
                });
            }
            None => {
                row.push("n/a".to_owned());
                row.push("n/a".to_owned());
            }
        }
        rows.push(row);
    }
    let cols = rows[0].len();
    let widths: Vec<usize> =
        (0..cols).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
