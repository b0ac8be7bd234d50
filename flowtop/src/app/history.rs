//! `flowtop history`: reads the journal (never writing it) and prints the
//! flows its filters select, oldest end first, as a table or JSON lines
//! (`--json`), or one row per executable, destination, port and protocol
//! (`--summary`).

use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::RunError;
use crate::cli::{Command, HistoryArgs};
use crate::config::Config;
use crate::flow::model::proto;
use crate::journal::query::{self, when, Dst, Filter, Journal};
use crate::output::format::{human_age, human_bytes, local_time};
use crate::output::safe::terminal_safe;

/// Prints the flows (or the summary) `config.command`'s history
/// arguments select, from `config.journal`.
pub fn run(config: &Config) -> Result<(), RunError> {
    let Some(Command::History(args)) = &config.command else {
        return Err(RunError::Usage("flowtop history: no arguments".into()));
    };
    let filter = filter(config, args, now_ms())?;
    let journal = Journal::open(&config.journal).map_err(|e| RunError::Other(e.into()))?;
    let out = BufWriter::with_capacity(64 << 10, io::stdout().lock());
    let printed = if args.summary {
        summary(&journal, &filter, config.json, out)
    } else {
        flows(&journal, &filter, config.json, out)
    };
    match printed {
        Ok(()) => Ok(()),
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        Err(e) => Err(RunError::Other(
            e.context(format!("reading the journal {}", journal.name())),
        )),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The query the command line asks for. The family and protocol flags
/// apply only when one is given: history reads every flow by default.
pub fn filter(config: &Config, args: &HistoryArgs, now_ms: i64) -> Result<Filter, RunError> {
    let time = |flag: &str, v: &Option<String>| -> Result<Option<i64>, RunError> {
        v.as_deref()
            .map(|w| when::parse(w, now_ms).map_err(|e| RunError::Usage(format!("{flag}: {e}"))))
            .transpose()
    };
    let sel = &config.selection;
    let (protos, family) = if config.selection_given {
        let protos = (0..=255u8).filter(|&p| sel.proto(p)).collect::<Vec<_>>();
        let protos = (protos.len() < 256).then_some(protos);
        let family = match (sel.ipv4, sel.ipv6) {
            (true, false) => Some(4),
            (false, true) => Some(6),
            _ => None,
        };
        (protos, family)
    } else {
        (None, None)
    };
    Ok(Filter {
        exe: args.exe.clone(),
        comm: args.comm.clone(),
        pid: args.pid,
        dst: args.dst.as_deref().map(Dst::parse),
        port: args.port,
        since_ms: time("--since", &args.since)?,
        until_ms: time("--until", &args.until)?,
        protos,
        family,
    })
}

/// RFC 3339 in UTC, seconds, as `--json`'s `start`.
fn rfc3339(ms: i64) -> String {
    let t = if ms >= 0 {
        UNIX_EPOCH + std::time::Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

fn local(ms: i64) -> String {
    local_time(u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000))
}

/// A protocol: its name, or its number when flowtop has none (as `--json`).
#[derive(Serialize)]
#[serde(untagged)]
enum Proto {
    Name(&'static str),
    Number(u8),
}

impl Proto {
    fn of(p: u8) -> Proto {
        proto::name(p).map_or(Proto::Number(p), Proto::Name)
    }
}

fn proto_text(p: u8) -> String {
    proto::name(p).map_or_else(|| p.to_string(), str::to_owned)
}

/// One `--json` line: `--json`'s flow fields the journal holds, under the
/// same names, plus `end`; `event` is "history".
#[derive(Serialize)]
struct FlowLine<'a> {
    event: &'static str,
    id: u32,
    family: Option<&'static str>,
    proto: Proto,
    state: Option<&'a str>,
    src: Option<IpAddr>,
    sport: Option<u16>,
    dst: Option<IpAddr>,
    dport: Option<u16>,
    reply_src: Option<IpAddr>,
    reply_sport: Option<u16>,
    reply_dst: Option<IpAddr>,
    reply_dport: Option<u16>,
    orig_packets: Option<u64>,
    orig_bytes: Option<u64>,
    reply_packets: Option<u64>,
    reply_bytes: Option<u64>,
    start: String,
    end: Option<String>,
    duration_s: Option<u64>,
    pid: Option<u32>,
    comm: Option<&'a str>,
    exe: Option<&'a str>,
    cmdline: Option<&'a str>,
    ppid: Option<u32>,
    parent_comm: Option<&'a str>,
    exe_sha256: Option<&'a str>,
    uid: Option<u32>,
    attribution: Option<&'a str>,
    direction: Option<&'a str>,
    peer_pid: Option<u32>,
    peer_comm: Option<&'a str>,
    peer_exe: Option<&'a str>,
    dst_host: Option<&'a str>,
    src_country: Option<&'a str>,
    dst_country: Option<&'a str>,
    dst_name: Option<&'a str>,
    dst_name_source: Option<&'a str>,
    container: Option<&'a str>,
    unit: Option<&'a str>,
    /// Derived from the stored tuple when written (the journal has no column for it).
    community_id: Option<String>,
}

fn flow_line(f: &query::Flow) -> FlowLine<'_> {
    FlowLine {
        event: "history",
        id: f.ct_id,
        family: f.dst.map(|a| if a.is_ipv4() { "ipv4" } else { "ipv6" }),
        proto: Proto::of(f.proto),
        state: f.state.as_deref(),
        src: f.src,
        sport: f.sport,
        dst: f.dst,
        dport: f.dport,
        reply_src: f.reply_src,
        reply_sport: f.reply_sport,
        reply_dst: f.reply_dst,
        reply_dport: f.reply_dport,
        orig_packets: f.orig_packets,
        orig_bytes: f.orig_bytes,
        reply_packets: f.reply_packets,
        reply_bytes: f.reply_bytes,
        start: rfc3339(f.start_ms),
        end: f.end_ms.map(rfc3339),
        duration_s: f
            .end_ms
            .map(|e| u64::try_from((e - f.start_ms) / 1000).unwrap_or(0)),
        pid: f.pid,
        comm: f.comm.as_deref(),
        exe: f.exe.as_deref(),
        cmdline: f.cmdline.as_deref(),
        ppid: f.ppid,
        parent_comm: f.parent_comm.as_deref(),
        exe_sha256: f.exe_sha256.as_deref(),
        uid: f.uid,
        attribution: f.attribution.as_deref(),
        direction: f.direction.as_deref(),
        peer_pid: f.peer_pid,
        peer_comm: f.peer_comm.as_deref(),
        peer_exe: f.peer_exe.as_deref(),
        dst_host: f.dst_host.as_deref(),
        src_country: f.src_country.as_deref(),
        dst_country: f.dst_country.as_deref(),
        dst_name: f.dst_name.as_deref(),
        dst_name_source: f.dst_name_source.as_deref(),
        container: f.container.as_deref(),
        unit: f.unit.as_deref(),
        community_id: community_id(f),
    }
}

/// The Community ID of a recorded flow, from its stored original tuple
/// (null when the tuple is incomplete; ICMP's type and code are not stored).
fn community_id(f: &query::Flow) -> Option<String> {
    let tuple = crate::flow::model::Tuple {
        src: f.src?,
        dst: f.dst?,
        sport: f.sport,
        dport: f.dport,
        icmp: None,
    };
    crate::export::community_id::community_id(f.proto, &tuple)
}

/// Untrusted text for the terminal, `-` when absent.
fn cell(v: Option<&str>) -> String {
    v.map_or_else(|| "-".to_owned(), |s| terminal_safe(s).into_owned())
}

fn bytes_cell(orig: Option<u64>, reply: Option<u64>) -> String {
    match (orig, reply) {
        (None, None) => "n/a".to_owned(),
        (o, r) => format!(
            "{}/{}B",
            human_bytes(o.unwrap_or(0) as f64),
            human_bytes(r.unwrap_or(0) as f64)
        ),
    }
}

/// The table's columns are fixed (rows are streamed, not collected),
/// ADDRESS last since names vary the most.
fn table_line(out: &mut impl Write, c: [&str; 10]) -> io::Result<()> {
    let line = format!(
        "{:<25} {:>8}  {:<7} {:<15} {:>7} {:>5} {:>13}  {:<11} {:<7} {}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9]
    );
    writeln!(out, "{}", line.trim_end())
}

fn flows(journal: &Journal, filter: &Filter, json: bool, mut out: impl Write) -> anyhow::Result<()> {
    let mut rows = 0u64;
    journal.flows(filter, |f| {
        rows += 1;
        if json {
            serde_json::to_writer(&mut out, &flow_line(f))?;
            return out.write_all(b"\n");
        }
        if rows == 1 {
            table_line(
                &mut out,
                [
                    "END", "DURATION", "PROTO", "PROCESS", "PID", "PORT", "BYTES", "STATE", "COUNTRY",
                    "ADDRESS",
                ],
            )?;
        }
        let end = f.end_ms.map_or_else(|| "open".to_owned(), local);
        let duration = f.end_ms.map_or_else(
            || "-".to_owned(),
            |e| human_age(u64::try_from((e - f.start_ms) / 1000).unwrap_or(0)),
        );
        let address = match (f.dst_name.as_deref(), f.dst_host.as_deref(), f.dst) {
            (Some(n), _, _) | (None, Some(n), _) => terminal_safe(n).into_owned(),
            (None, None, Some(a)) => a.to_string(),
            (None, None, None) => "-".to_owned(),
        };
        table_line(
            &mut out,
            [
                &end,
                &duration,
                &proto_text(f.proto),
                &cell(f.comm.as_deref()),
                &f.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                &f.dport.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                &bytes_cell(f.orig_bytes, f.reply_bytes),
                &cell(f.state.as_deref()),
                &cell(f.dst_country.as_deref()),
                &address,
            ],
        )
    })?;
    out.flush()?;
    if rows == 0 && !json {
        eprintln!("flowtop: no recorded flow matches");
    }
    Ok(())
}

/// One `--summary --json` line.
#[derive(Serialize)]
struct SummaryLine<'a> {
    exe: Option<&'a str>,
    comm: Option<&'a str>,
    dst: Option<IpAddr>,
    dst_name: Option<&'a str>,
    dport: Option<u16>,
    proto: Proto,
    flows: u64,
    orig_bytes: u64,
    reply_bytes: u64,
    first: String,
    last: Option<String>,
    country: Option<&'a str>,
}

fn summary(journal: &Journal, filter: &Filter, json: bool, mut out: impl Write) -> anyhow::Result<()> {
    let rows = journal.summary(filter)?;
    if json {
        for s in &rows {
            let line = SummaryLine {
                exe: s.exe.as_deref(),
                comm: s.comm.as_deref(),
                dst: s.dst,
                dst_name: s.dst_name.as_deref(),
                dport: s.dport,
                proto: Proto::of(s.proto),
                flows: s.flows,
                orig_bytes: s.orig_bytes,
                reply_bytes: s.reply_bytes,
                first: rfc3339(s.first_ms),
                last: s.last_ms.map(rfc3339),
                country: s.country.as_deref(),
            };
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        return Ok(());
    }
    if rows.is_empty() {
        eprintln!("flowtop: no recorded flow matches");
        return Ok(());
    }
    let mut table: Vec<[String; 11]> = vec![[
        "EXE", "COMM", "ADDRESS", "PORT", "PROTO", "FLOWS", "BYTES", "FIRST", "LAST", "COUNTRY", "NAME",
    ]
    .map(str::to_owned)];
    for s in &rows {
        table.push([
            cell(s.exe.as_deref()),
            cell(s.comm.as_deref()),
            s.dst.map_or_else(|| "-".to_owned(), |a| a.to_string()),
            s.dport.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            proto_text(s.proto),
            s.flows.to_string(),
            bytes_cell(Some(s.orig_bytes), Some(s.reply_bytes)),
            local(s.first_ms),
            s.last_ms.map_or_else(|| "open".to_owned(), local),
            cell(s.country.as_deref()),
            cell(s.dst_name.as_deref()),
        ]);
    }
    let widths: Vec<usize> = (0..11)
        .map(|i| table.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &table {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod community_id_tests {
    use super::*;

    /// Derived from the stored tuple; the value is the reference Python
    /// package's (`communityid` 1.5.0) for this TCP tuple.
    #[test]
    fn history_lines_carry_the_community_id() {
        let f = query::Flow {
            proto: 6,
            src: Some("66.35.250.204".parse().expect("ip")),
            dst: Some("128.232.110.120".parse().expect("ip")),
            sport: Some(80),
            dport: Some(34855),
            ..query::Flow::default()
        };
        let v = serde_json::to_value(flow_line(&f)).expect("serializes");
        assert_eq!(v["community_id"], "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
        let none = query::Flow {
            proto: 6,
            ..query::Flow::default()
        };
        assert!(serde_json::to_value(flow_line(&none)).expect("serializes")["community_id"].is_null());
    }
}
