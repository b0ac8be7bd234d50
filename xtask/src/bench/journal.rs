//! `cargo xtask bench journal`: the journal of ended flows (issue 14).
//!
//! 1. Bytes on disk per recorded flow: `journal_fill` (flowtop's example)
//!    fills a journal through schema version 1 with realistic flows
//!    (prepared statements, one transaction per 10 000 rows, WAL, as a
//!    recorder writes) and the file size is divided by the rows; SQLite's
//!    `dbstat` splits it per table and index.
//! 2. `flowtop history` over 10 million rows: wall time of the real binary
//!    (release) on the same journal twice: as schema version 1 (rows only,
//!    the peer) and after the migration to version 2, whose per-day rollup
//!    `flow_day` answers `--summary` for whole days.
//! 3. Recording 10 000 flow ends per second for 60 s: `flowtop record` and
//!    `flowtop --json > /dev/null` side by side in a namespace while
//!    `ct_churn.py` creates and destroys 10 000 UDP entries per second;
//!    CPU of each, and the rows in the journal against the entries
//!    destroyed. Needs root and a built `flowtop record` (the writer); the
//!    row says "not measured" and why when either is missing.

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::guards::{signal_and_wait, sleep_checked, ProcGuard, TempDir};
use super::markdown::{header, Table};
use super::measure::cpu_ticks;
use super::netns::Netns;
use super::table::{CT_CHURN_PY, CT_INSERT_PY};
use super::{build_flowtop, log, parse_count, repo_root, run_cmd};
use crate::cmd;

pub(crate) const USAGE: &str = "\
usage: cargo xtask bench journal [--rows N] [--query-rows N] [--runs N] [--skip-record]

  The journal (issue 14): bytes on disk per recorded flow over N realistic
  rows (default 1M); `flowtop history --summary` (and with --exe, --since)
  over --query-rows rows (default 10M), as schema version 1 (rows only) and
  version 2 (per-day rollup) (best of --runs, default 3); and
  `flowtop record` at 10 000 flow ends/s for 60 s against `flowtop --json`
  (root, and a flowtop with the writer; else reported as not measured).
  Writes bench/journal.md.";

struct Opts {
    rows: u64,
    query_rows: u64,
    runs: usize,
    skip_record: bool,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        rows: 1_000_000,
        query_rows: 10_000_000,
        runs: 3,
        skip_record: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().context("missing value");
        match a.as_str() {
            "--rows" => o.rows = parse_count(val()?)?,
            "--query-rows" => o.query_rows = parse_count(val()?)?,
            "--runs" => o.runs = val()?.parse().context("--runs")?,
            "--skip-record" => o.skip_record = true,
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    if o.rows == 0 || o.query_rows == 0 || o.runs == 0 {
        bail!("--rows, --query-rows and --runs must be positive");
    }
    Ok(o)
}

/// A number from a flat JSON object printed by `journal_fill`.
fn num(v: &serde_json::Value, key: &str) -> Result<f64> {
    v[key].as_f64().with_context(|| format!("no {key} in {v}"))
}

fn fill_tool(root: &Path) -> Result<PathBuf> {
    log("building the journal_fill example (release)");
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "flowtop", "--example", "journal_fill"]))?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target_dir.join("release/examples/journal_fill"))
}

fn fill(tool: &Path, args: &[&str]) -> Result<serde_json::Value> {
    let out = run_cmd(Command::new(tool).args(args))?;
    serde_json::from_str(out.trim()).with_context(|| format!("journal_fill printed {out:?}"))
}

/// Best and all wall times of `flowtop history --journal J ARGS`, stdout
/// counted and thrown away; the lines of the last run.
fn time_history(flowtop: &Path, journal: &Path, args: &[&str], runs: usize) -> Result<(f64, Vec<f64>, u64)> {
    // The output goes to a file beside the journal and is counted after the
    // clock stops: reading it through a pipe in this (unoptimised) harness
    // cost more than flowtop itself on the 200 000-line summary.
    let sink = journal.with_extension("out");
    let mut times = Vec::new();
    for _ in 0..runs {
        let out = fs::File::create(&sink).context("the output file")?;
        let t = Instant::now();
        let o = Command::new(flowtop)
            .arg("history")
            .arg("--journal")
            .arg(journal)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::piped())
            .output()
            .context("running flowtop history")?;
        times.push(t.elapsed().as_secs_f64());
        if !o.status.success() {
            bail!(
                "flowtop history {args:?} failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
    }
    let lines = bytecount_lines(&fs::read(&sink).context("the output file")?);
    let _ = fs::remove_file(&sink);
    let best = times.iter().copied().fold(f64::MAX, f64::min);
    Ok((best, times, lines))
}

fn bytecount_lines(out: &[u8]) -> u64 {
    out.iter().filter(|&&b| b == b'\n').count() as u64
}

fn secs3(v: f64) -> String {
    format!("{v:.3} s")
}

fn bytes_mb(v: f64) -> String {
    format!("{:.1} MB", v / 1e6)
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let started = Instant::now();
    let root = repo_root();
    let flowtop = build_flowtop(&root)?;
    let tool = fill_tool(&root)?;
    let tmp = TempDir::new()?;
    let mut md = String::new();

    // 1. Size per flow.
    let size_db = tmp.0.join("size.sqlite");
    log(format!("filling {} rows for the size", o.rows));
    let f = fill(&tool, &["fill", &size_db.to_string_lossy(), &o.rows.to_string()])?;
    // With the rollup the writer keeps (schema version 2).
    let bytes = num(&fill(&tool, &["migrate", &size_db.to_string_lossy()])?, "bytes")?;
    let per_row = bytes / o.rows as f64;
    let stats = fill(&tool, &["stats", &size_db.to_string_lossy()])?;
    let _ = writeln!(
        md,
        "\n## Bytes on disk per recorded flow\n\n{} rows written by `journal_fill` (300 executables, 20 000 \
         processes, 50 000 addresses, 20 000 names; WAL, one transaction per 10 000 rows; then the per-day \
         rollup of schema version 2) in {:.1} s: \
         **{} for the file, {per_row:.0} B per flow** (target < 150 B: {}).\n",
        o.rows,
        num(&f, "seconds")?,
        bytes_mb(bytes),
        if per_row < 150.0 { "PASS" } else { "FAIL" }
    );
    let mut t = Table::new(&[
        ("table or index", "---"),
        ("bytes", "---:"),
        ("B per flow", "---:"),
    ]);
    if let Some(objects) = stats["objects"].as_object() {
        for (name, b) in objects {
            let b = b.as_f64().unwrap_or(0.0);
            t.row([
                name.clone(),
                format!("{b:.0}"),
                format!("{:.1}", b / o.rows as f64),
            ]);
        }
    }
    t.render(&mut md);
    let _ = fs::remove_file(&size_db);

    // 2. history --summary over many rows.
    let q = tmp.0.join("query.sqlite");
    log(format!("filling {} rows for the queries", o.query_rows));
    let f = fill(&tool, &["fill", &q.to_string_lossy(), &o.query_rows.to_string()])?;
    let _ = writeln!(
        md,
        "\n## `flowtop history` over {} rows\n\nThe journal: {} ({:.0} B per flow), filled in {:.0} s. \
         Wall time of the release binary, output written to a file, page cache warm; best of {} \
         (all runs in brackets).\n",
        o.query_rows,
        bytes_mb(num(&f, "bytes")?),
        num(&f, "bytes")? / o.query_rows as f64,
        num(&f, "seconds")?,
        o.runs
    );
    // The time bounds as fixed RFC 3339 times, taken once: both schemas
    // then answer over the very same flows (a relative `3d` moves between
    // the runs).
    let ago = |days: u64| -> Result<String> {
        let out = run_cmd(Command::new("date").args([
            "-u",
            "-d",
            &format!("{days} days ago"),
            "+%Y-%m-%dT%H:%M:%SZ",
        ]))?;
        Ok(out.trim().to_owned())
    };
    let (since3, since1) = (ago(3)?, ago(1)?);
    let queries: [(&str, Vec<&str>); 4] = [
        ("--summary --json", vec!["--summary", "--json"]),
        (
            "--summary --json --exe /usr/bin/app001",
            vec!["--summary", "--json", "--exe", "/usr/bin/app001"],
        ),
        (
            "--summary --json --since 3d (fixed)",
            vec!["--summary", "--json", "--since", &since3],
        ),
        (
            "--json --exe /usr/bin/app001 --since 1d (fixed)",
            vec!["--json", "--exe", "/usr/bin/app001", "--since", &since1],
        ),
    ];
    let mut t = Table::new(&[
        ("schema", "---"),
        ("history", "---"),
        ("lines", "---:"),
        ("wall (best)", "---:"),
        ("runs", "---"),
    ]);
    // Best wall time per query, per schema.
    let mut best_of: Vec<Vec<f64>> = Vec::new();
    let mut lines_of: Vec<Vec<u64>> = Vec::new();
    for (label, migrate) in [("v1 (rows)", false), ("v2 (per-day rollup)", true)] {
        if migrate {
            log("migrating to schema version 2 (building the per-day rollup)");
            let m = fill(&tool, &["migrate", &q.to_string_lossy()])?;
            let _ = writeln!(
                md,
                "The migration to version 2 built `flow_day` ({} rows for {} flows) in {:.0} s; the file is \
                 then {} ({:.0} B per flow).\n",
                num(&m, "day_rows")?,
                o.query_rows,
                num(&m, "seconds")?,
                bytes_mb(num(&m, "bytes")?),
                num(&m, "bytes")? / o.query_rows as f64
            );
        }
        let (mut bests, mut counts) = (Vec::new(), Vec::new());
        for (name, a) in &queries {
            log(format!("{label}: history {name}"));
            let (best, all, lines) = time_history(&flowtop, &q, a, o.runs)?;
            bests.push(best);
            counts.push(lines);
            t.row([
                label.to_owned(),
                format!("`{name}`"),
                lines.to_string(),
                secs3(best),
                all.iter().map(|&v| secs3(v)).collect::<Vec<_>>().join(", "),
            ]);
        }
        best_of.push(bests);
        lines_of.push(counts);
    }
    t.render(&mut md);
    let verdict = |v: f64| if v < 1.0 { "PASS" } else { "FAIL" };
    let (v1, v2) = (&best_of[0], &best_of[1]);
    let _ = writeln!(
        md,
        "\n`history --summary` over {} rows, target < 1 s: **{} ({})** with the rollup, against {} over the \
         rows in the same run ({:.1}x faster; with --exe {:.1}x, with --since 3d {:.1}x). Same lines both \
         ways: {}.\n",
        o.query_rows,
        secs3(v2[0]),
        verdict(v2[0]),
        secs3(v1[0]),
        v1[0] / v2[0],
        v1[1] / v2[1],
        v1[2] / v2[2],
        if lines_of[0] == lines_of[1] { "yes" } else { "NO" }
    );
    let _ = fs::remove_file(&q);

    // 3. Recording under churn.
    let _ = writeln!(md, "## Recording 10 000 flow ends per second for 60 s\n");
    let recorded = if o.skip_record {
        Err("not measured: --skip-record".to_owned())
    } else {
        record_cost(&flowtop, &tmp.0)
    };
    match recorded {
        Ok(text) => md.push_str(&text),
        Err(why) => {
            log(&why);
            let _ = writeln!(md, "{why}");
        }
    }

    let command = format!(
        "cargo xtask bench journal --rows {} --query-rows {} --runs {}",
        o.rows, o.query_rows, o.runs
    );
    let report = format!(
        "{}{md}",
        header("flowtop journal", &root, &command, started.elapsed())
    );
    super::write_report(&root, "journal.md", &report)
}

/// The CPU of `flowtop record` against `flowtop --json` under 10 000
/// creates and destroys per second; Err("not measured: why") when it
/// cannot run here.
fn record_cost(flowtop: &Path, tmp: &Path) -> std::result::Result<String, String> {
    const RATE: u32 = 10_000;
    const SECS: f64 = 60.0;
    if !cmd::is_root() {
        return Err("not measured: needs root (a network namespace and ctnetlink)".into());
    }
    let ns = Netns::create(&format!("ftjournal-{}", std::process::id()))
        .map_err(|e| format!("not measured: no network namespace: {e}"))?;
    let journal = tmp.join("record.sqlite");
    let spawn = |args: &[&str], err: &str, stdout: Stdio| -> std::result::Result<ProcGuard, String> {
        let mut c = ns.cmd(&flowtop.to_string_lossy());
        c.args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(fs::File::create(tmp.join(err)).map_err(|e| e.to_string())?);
        let child = c
            .spawn()
            .map_err(|e| format!("not measured: cannot start flowtop: {e}"))?;
        Ok(ProcGuard::new(child, err))
    };
    let journal_s = journal.to_string_lossy().into_owned();
    let mut rec = spawn(
        &["record", "--journal", &journal_s, "-U", "-n", "-G", "-t", "1"],
        "record.err",
        Stdio::null(),
    )?;
    let mut live = spawn(
        &["--json", "-U", "-n", "-G", "-t", "1"],
        "json.err",
        Stdio::null(),
    )?;
    let settle = sleep_checked(Duration::from_secs(3));
    let first_err = |name: &str| {
        fs::read_to_string(tmp.join(name))
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    if let Some(st) = rec.exited() {
        return Err(format!(
            "not measured: `flowtop record` exited at once ({st}): \"{}\" (the writer is issue 14's other \
             half; this bench measures it once both are in the tree)",
            first_err("record.err")
        ));
    }
    if let Some(st) = live.exited() {
        return Err(format!(
            "not measured: `flowtop --json` exited ({st}): {}",
            first_err("json.err")
        ));
    }
    settle.map_err(|e| e.to_string())?;
    let script = tmp.join("ct_churn.py");
    fs::write(&script, CT_CHURN_PY).map_err(|e| e.to_string())?;
    fs::write(tmp.join("ct_insert.py"), CT_INSERT_PY).map_err(|e| e.to_string())?;
    let mut churn = ns.cmd("python3");
    churn
        .arg(&script)
        .args([
            format!("{SECS}"),
            RATE.to_string(),
            "--live-secs".into(),
            "1".into(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut churn = churn
        .spawn()
        .map_err(|e| format!("not measured: ct_churn.py: {e}"))?;
    let mut churn_out = churn.stdout.take().ok_or("no churn stdout")?;
    let churn = ProcGuard::new(churn, "ct_churn.py");
    let ticks = |p: &ProcGuard| cpu_ticks(p.pid()).map(|(u, s)| u + s).unwrap_or(0);
    let t0 = Instant::now();
    let (rec0, live0) = (ticks(&rec), ticks(&live));
    let mut summary = String::new();
    let _ = churn_out.read_to_string(&mut summary);
    drop(churn);
    // Two more seconds for the last destroys to be read and written.
    thread::sleep(Duration::from_secs(2));
    let wall = t0.elapsed().as_secs_f64();
    let (rec1, live1) = (ticks(&rec), ticks(&live));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let pct = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / hz / wall * 100.0;
    let (rec_pct, live_pct) = (pct(rec0, rec1), pct(live0, live1));
    // SIGTERM: the recorder writes what it holds and exits.
    let stopped = signal_and_wait(rec.pid(), libc::SIGTERM, Duration::from_secs(10));
    drop(rec);
    drop(live);
    let rows = run_cmd(
        Command::new(flowtop)
            .args(["history", "--json", "--journal", &journal_s])
            .stderr(Stdio::null()),
    )
    .map(|s| s.lines().count())
    .unwrap_or(0);
    let created: u64 = summary
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let extra = rec_pct - live_pct;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "`ct_churn.py` created and destroyed {RATE} UDP entries per second for {SECS:.0} s (each 1 s after \
         its creation; summary \"created deleted errors seconds\": {}) while `flowtop record -U -n -G` and \
         `flowtop --json -U -n -G > /dev/null` ran in the same namespace.\n",
        summary.trim()
    );
    let mut t = Table::new(&[("process", "---"), ("CPU (% of a core)", "---:")]);
    t.row(["flowtop record".to_owned(), format!("{rec_pct:.1}")]);
    t.row(["flowtop --json > /dev/null".to_owned(), format!("{live_pct:.1}")]);
    t.row([
        "record − json (the journal's extra)".to_owned(),
        format!("{extra:.1}"),
    ]);
    t.render(&mut md);
    let _ = writeln!(
        md,
        "\nExtra CPU < 15% of a core: {}. Rows in the journal after SIGTERM ({}): {rows} for {created} \
         entries created: {}.",
        if extra < 15.0 { "PASS" } else { "FAIL" },
        if stopped { "exited" } else { "did not exit in 10 s" },
        if rows as u64 >= created && created > 0 {
            "nothing lost"
        } else {
            "ROWS MISSING"
        }
    );
    Ok(md)
}
