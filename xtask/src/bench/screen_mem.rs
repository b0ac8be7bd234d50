//! `cargo xtask bench screen-mem`: the screen's memory and CPU at steady
//! state, per table size, beside `--json`'s in the same namespace: the one
//! scenario of `bench report` section 2 that the screen's memory work needs,
//! without the rest of the report.
//!
//! Per size: a fresh namespace filled by `ct_insert.py`, the screen
//! (`-4U -t 1 -n -G --no-sysctl`) in a 200×50 tmux pane until it shows the
//! whole table, a warm-up, then CPU over the window and VmRSS / VmHWM at its
//! end (also sampled during the window: the largest VmRSS seen); then
//! `--json -t 1` on the same table, measured the same way.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::guards::{remove_stale_namespaces, sleep_checked, SysctlGuard, TempDir};
use super::measure::{measure_window, mem_kib, pid_alive, timed_run};
use super::netns::Netns;
use super::stream::steady_flowtop;
use super::table::setup_namespace;
use super::ui::{shown_flows, Pane};
use super::{log, parse_count, repo_root, require_root, require_tools};

pub(crate) const USAGE: &str = "\
usage: cargo xtask bench screen-mem [--sizes N,N...] [--window SECS] [--warmup SECS] [--no-json] [--trace] [--bin PATH]

The screen's VmRSS, VmHWM and CPU at steady state per table size (default
100000,1000000; window 30 s after 5 s of warm-up), and `--json -t 1`'s on the
same table. --trace also prints the screen's VmRSS and VmHWM every 100 ms
from its start to the end of the warm-up, where VmHWM grew. --bin measures
another flowtop binary than target/release/flowtop (a build kept aside, to
compare two commits in one run). Needs root, tmux,
python3. Prints a table; writes nothing.";

const CT_INSERT_PY: &str = include_str!("../../scripts/ct_insert.py");

struct Opts {
    sizes: Vec<u64>,
    window: f64,
    warmup: f64,
    json: bool,
    trace: bool,
    bin: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        sizes: vec![100_000, 1_000_000],
        window: 30.0,
        warmup: 5.0,
        json: true,
        trace: false,
        bin: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value\n\n{USAGE}"));
        match a.as_str() {
            "--sizes" => o.sizes = val()?.split(',').map(parse_count).collect::<Result<_>>()?,
            "--window" => o.window = val()?.parse().context("--window")?,
            "--warmup" => o.warmup = val()?.parse().context("--warmup")?,
            "--no-json" => o.json = false,
            "--trace" => o.trace = true,
            "--bin" => o.bin = Some(PathBuf::from(val()?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown option {other:?}\n\n{USAGE}"),
        }
    }
    if o.sizes.is_empty() || o.sizes.iter().any(|&n| n == 0 || n > 5_000_000) {
        bail!("--sizes must be in 1..=5000000");
    }
    Ok(o)
}

/// One tool's figures at one size.
struct Row {
    n: u64,
    tool: &'static str,
    cpu: f64,
    user: f64,
    sys: f64,
    rest: f64,
    rss_kib: u64,
    hwm_kib: u64,
    /// The largest VmRSS sampled during the window.
    max_rss_kib: u64,
}

fn screen(n: u64, ns: &Netns, flowtop: &str, o: &Opts) -> Result<Row> {
    let cmd = format!(
        "exec ip netns exec {} {flowtop} -4U -t 1 --no-sysctl -n -G",
        ns.name
    );
    let t0 = Instant::now();
    let pane = Pane::start("mem", &cmd)?;
    let pid = pane.pid();
    let limit = Duration::from_secs_f64(60.0 + n as f64 / 2_000.0);
    // (seconds since the start, VmRSS, VmHWM) where VmHWM grew.
    let mut trace: Vec<(f64, u64, u64)> = Vec::new();
    let sample = |trace: &mut Vec<(f64, u64, u64)>| {
        if let Ok((hwm, rss)) = mem_kib(pid) {
            if trace.last().is_none_or(|&(_, _, h)| hwm > h + 4096) {
                trace.push((t0.elapsed().as_secs_f64(), rss, hwm));
            }
        }
    };
    let mut shown_at = None;
    while t0.elapsed() < limit {
        sample(&mut trace);
        let s = pane.screen()?;
        if shown_flows(&s).is_some_and(|k| k >= n) && s.contains("ADDRESS") {
            shown_at = Some(t0.elapsed().as_secs_f64());
            break;
        }
        sleep_checked(Duration::from_millis(100))?;
    }
    let Some(shown_at) = shown_at else {
        bail!("the screen did not show {n} flows within {limit:?}");
    };
    let warm_end = Instant::now() + Duration::from_secs_f64(o.warmup);
    while Instant::now() < warm_end {
        sample(&mut trace);
        sleep_checked(Duration::from_millis(100))?;
    }
    if o.trace {
        eprintln!("{n}: table on screen after {shown_at:.1} s; VmHWM growth (s, VmRSS MiB, VmHWM MiB):");
        for (t, rss, hwm) in &trace {
            eprintln!(
                "  {t:6.1} {:8.1} {:8.1}",
                *rss as f64 / 1024.0,
                *hwm as f64 / 1024.0
            );
        }
    }
    let mut max_rss = 0;
    let w = measure_window(pid, o.window, &mut || {
        if !pid_alive(pid) {
            return Some("gone".into());
        }
        if let Ok((_, rss)) = mem_kib(pid) {
            max_rss = max_rss.max(rss);
        }
        None
    })?;
    Ok(Row {
        n,
        tool: "screen -t 1",
        cpu: w.cpu_pct,
        user: w.user_pct,
        sys: w.sys_pct,
        rest: w.other_pct,
        rss_kib: w.rss_kib,
        hwm_kib: w.hwm_kib,
        max_rss_kib: max_rss.max(w.rss_kib),
    })
}

fn one_size(n: u64, flowtop: &str, tmp: &std::path::Path, o: &Opts) -> Result<Vec<Row>> {
    let mut sysctls = SysctlGuard::new();
    sysctls.raise_for_entries(n)?;
    let ns = Netns::create(&format!("ftmem-{}", std::process::id()))?;
    setup_namespace(&ns)?;
    let script = tmp.join("ct_insert.py");
    fs::write(&script, CT_INSERT_PY)?;
    log(format!("filling the table with {n} UDP entries"));
    timed_run(
        ns.cmd("python3").arg(&script).arg(n.to_string()),
        &tmp.join("fill.err"),
        Duration::from_secs_f64(60.0 + n as f64 / 2_000.0),
    )?;
    log(format!("{n}: the screen"));
    let mut rows = vec![screen(n, &ns, flowtop, o)?];
    if o.json {
        log(format!("{n}: --json -t 1"));
        let s = steady_flowtop(&ns, std::path::Path::new(flowtop), n, 0, o.window, tmp)?;
        rows.push(Row {
            n,
            tool: "--json -t 1",
            cpu: s.cpu_pct,
            user: s.user_pct,
            sys: s.sys_pct,
            rest: s.other_pct,
            rss_kib: s.rss_kib,
            hwm_kib: s.hwm_kib,
            max_rss_kib: s.rss_kib,
        });
    }
    Ok(rows)
}

pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    require_root("bench screen-mem", "network namespaces, sysctls")?;
    require_tools(&["ip", "nft", "python3", "tmux"])?;
    // The dispatcher (bench/mod.rs) holds the signal guard for the run.
    remove_stale_namespaces();
    SysctlGuard::recover_stale();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let flowtop = o.bin.clone().unwrap_or_else(|| target.join("release/flowtop"));
    if !flowtop.is_file() {
        bail!("{} missing: cargo build --release -p flowtop", flowtop.display());
    }
    let flowtop = flowtop.to_string_lossy().into_owned();
    let tmp = TempDir::new()?;
    let mut rows = Vec::new();
    for &n in &o.sizes {
        rows.extend(one_size(n, &flowtop, &tmp.0, &o)?);
    }
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "| entries | tool | CPU | user / sys | rest | VmRSS | VmHWM | max VmRSS | HWM/RSS | B/flow (RSS/n) |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.1} % | {:.1} / {:.1} | {:.0} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.2} | {:.0} |",
            r.n,
            r.tool,
            r.cpu,
            r.user,
            r.sys,
            r.rest,
            mib(r.rss_kib),
            mib(r.hwm_kib),
            mib(r.max_rss_kib),
            r.hwm_kib as f64 / r.rss_kib.max(1) as f64,
            r.rss_kib as f64 * 1024.0 / r.n as f64,
        );
    }
    for tool in ["screen -t 1", "--json -t 1"] {
        let of: Vec<&Row> = rows.iter().filter(|r| r.tool == tool).collect();
        for w in of.windows(2) {
            let slope = (w[1].rss_kib as f64 - w[0].rss_kib as f64) * 1024.0 / (w[1].n - w[0].n) as f64;
            println!(
                "{tool}: VmRSS slope {} -> {}: {slope:.0} B per flow",
                w[0].n, w[1].n
            );
        }
    }
    Ok(())
}
