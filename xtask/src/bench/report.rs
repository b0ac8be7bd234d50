//! `cargo xtask bench report`: issue 6's scenarios in one run, side by side
//! with `conntrack -L` and netsniff-ng's flowtop 0.6.8, written to
//! `bench/REPORT.md`.
//!
//! Per table size (a fresh namespace each, filled over ctnetlink by
//! `ct_insert.py`):
//!
//! 1. cold start: `flowtop --once --json -4UnG` vs `conntrack -L`, both to
//!    /dev/null (wall/CPU/peak RSS from wait4, median of `--runs`), and the
//!    time until the screen shows the whole table (tmux, as in `bench ui`)
//!    vs 0.6.8's, with a time limit;
//! 2. steady state: CPU and memory of `flowtop --json -t 1` and of the screen
//!    (`-t 1`) vs 0.6.8's screen, over a window after the table is loaded.
//!
//! Then churn (`ct_churn.py` at each rate, on a 10 000-entry table, while
//! `flowtop --json -t 1` streams: overruns and resyncs from its `stats`
//! lines, CPU, and the time after the storm until the set of flows its
//! stream describes equals the kernel's), the screen under an event stream
//! (`bench ui`'s measurement) and the attribution and enrichment costs
//! (from `bench/attribution.md` and `bench/enrich.md`, or re-run).
//!
//! Everything is undone on every path, as in `bench dump`: namespaces,
//! global sysctls, processes, tmux servers (the guards' `Drop`).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::guards::{check_interrupted, sleep_checked, ProcGuard, SysctlGuard, INTERRUPTED};
use super::markdown::{header, mib, ms, pct, ratio, secs};
use super::measure::{clk_tck, cpu_ticks, measure_window, median, percentile, pid_alive, RunStat, Window};
use super::netns::Netns;
use super::stream::{spawn_counter, spawn_flowtop_json, steady_flowtop, Steady};
use super::table::{one_size, setup_namespace, ColdStart, Fill, CT_CHURN_PY, CT_INSERT_PY};
use super::ui::{shown_flows, Pane};
use super::{log, parse_count, require_root, require_tools, run_cmd, NETSNIFF_FLOWTOP};
use super::{prepare, write_report, Prepared};

pub const USAGE: &str = "\
usage: cargo xtask bench report [--sizes N[,N..]] [--runs R] [--quick]
                                [--window S] [--churn-rates R[,R..]] [--legacy-limit S]
                                [--rerun-enrich]

  --sizes          table sizes, default 10000,100000,1000000 (k/M suffixes allowed)
  --runs           repetitions of the one-shot measurements (median), default 3
  --quick          sizes 10000,100000, 1 run, 10 s windows, churn at 1000,10000
                   for 10 s, 60 s limit for 0.6.8, a shorter screen run
  --window         steady-state and churn window in seconds, default 30
  --churn-rates    creates (and as many destroys) per second, default 1000,10000,50000
  --legacy-limit   how long flowtop 0.6.8 may take to show the table, default 120 s
  --rerun-enrich   run `bench enrich` (100 000 flows) instead of quoting bench/enrich.md

Needs root, tmux, conntrack, python3; flowtop 0.6.8 (/usr/sbin/flowtop) for the
side-by-side columns. Writes bench/REPORT.md.";

/// 0.6.8 is not run above this size (minutes per 100 000 entries).
const LEGACY_MAX: u64 = 200_000;
/// Entries already in the table during the churn.
const CHURN_BASE: u64 = 10_000;
/// Seconds each churned entry lives (ct_churn.py --live-secs).
const CHURN_LIVE_S: u64 = 2;

struct Opts {
    sizes: Vec<u64>,
    runs: usize,
    quick: bool,
    window: f64,
    churn_rates: Vec<u64>,
    legacy_limit: f64,
    rerun_enrich: bool,
}

impl Opts {
    /// The command line that reproduces this run, every option spelled out.
    fn command(&self) -> String {
        let join = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        format!(
            "cargo xtask bench report --sizes {} --runs {} --window {} --churn-rates {} --legacy-limit {}{}",
            join(&self.sizes),
            self.runs,
            self.window,
            join(&self.churn_rates),
            self.legacy_limit,
            if self.rerun_enrich { " --rerun-enrich" } else { "" }
        )
    }
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        sizes: vec![10_000, 100_000, 1_000_000],
        runs: 3,
        quick: false,
        window: 30.0,
        churn_rates: vec![1_000, 10_000, 50_000],
        legacy_limit: 120.0,
        rerun_enrich: false,
    };
    let (mut sizes, mut runs, mut window, mut rates, mut limit) = (None, None, None, None, None);
    let list =
        |v: &str| -> Result<Vec<u64>> { v.split(',').filter(|s| !s.is_empty()).map(parse_count).collect() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value\n\n{USAGE}"));
        match a.as_str() {
            "--sizes" => sizes = Some(list(val()?)?),
            "--runs" => runs = Some(val()?.parse::<usize>().context("--runs")?),
            "--quick" => o.quick = true,
            "--window" => window = Some(val()?.parse::<f64>().context("--window")?),
            "--churn-rates" => rates = Some(list(val()?)?),
            "--legacy-limit" => limit = Some(val()?.parse::<f64>().context("--legacy-limit")?),
            "--rerun-enrich" => o.rerun_enrich = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown option {other:?}\n\n{USAGE}"),
        }
    }
    if o.quick {
        o.sizes = vec![10_000, 100_000];
        o.runs = 1;
        o.window = 10.0;
        o.churn_rates = vec![1_000, 10_000];
        o.legacy_limit = 60.0;
    }
    o.sizes = sizes.unwrap_or(o.sizes);
    o.runs = runs.unwrap_or(o.runs);
    o.window = window.unwrap_or(o.window);
    o.churn_rates = rates.unwrap_or(o.churn_rates);
    o.legacy_limit = limit.unwrap_or(o.legacy_limit);
    o.sizes.sort_unstable();
    o.sizes.dedup();
    if o.sizes.is_empty() || o.sizes.iter().any(|&n| n == 0 || n > 5_000_000) {
        bail!("--sizes must be in 1..=5000000");
    }
    if o.runs == 0 || !(o.window >= 2.0 && o.window <= 600.0) || o.legacy_limit <= 0.0 {
        bail!("--runs must be positive, --window in [2, 600], --legacy-limit positive");
    }
    Ok(o)
}

// ---------------------------------------------------------------- one size

/// Time until a tool's screen in tmux showed `want` flows and its table
/// header, or None past `limit`.
struct Screen {
    load_s: Option<f64>,
    steady: Option<Result<Window, String>>,
}

struct SizeRes {
    /// Fill and the one-shot dumps, as `bench dump` measures them.
    cold: ColdStart,
    frame_ours: Vec<Result<Screen, String>>,
    frame_old: Option<Result<Screen, String>>,
    steady_json: Result<Steady, String>,
    /// The same with [`ACTIVE_FLOWS`] flows moving data.
    steady_active: Result<Steady, String>,
}

/// Flows with traffic in the second steady-state run of each size.
const ACTIVE_FLOWS: u64 = 1000;

fn keep(e: anyhow::Error) -> Result<String> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err(e);
    }
    Ok(format!("{e:#}"))
}

/// Starts `command` in a tmux pane, waits up to `limit` for `want` flows
/// on screen with `mark` (the table's header), then, with `window`, measures
/// CPU and memory for that many seconds.
fn screen_run(
    label: &str,
    command: &str,
    want: u64,
    mark: &str,
    limit: f64,
    window: Option<f64>,
) -> Result<Screen> {
    let t0 = Instant::now();
    let pane = Pane::start(label, command)?;
    let loaded = pane.wait(Duration::from_secs_f64(limit), |s| {
        shown_flows(s).is_some_and(|n| n >= want) && s.contains(mark)
    })?;
    let load_s = loaded.map(|_| t0.elapsed().as_secs_f64());
    let steady = match (load_s, window) {
        (Some(_), Some(w)) => {
            let pid = pane.pid();
            Some(
                measure_window(pid, w, &mut || (!pid_alive(pid)).then(|| "gone".to_string()))
                    .map_err(|e| format!("{e:#}")),
            )
        }
        _ => None,
    };
    drop(pane);
    Ok(Screen { load_s, steady })
}

fn measure_size(opts: &Opts, n: u64, flowtop: &Path, tmp: &Path, legacy: bool) -> Result<SizeRes> {
    let ft = flowtop.to_string_lossy().into_owned();
    let (cold, (frame_ours, frame_old, steady_json, steady_active)) = one_size(
        n,
        Fill::Ctnetlink,
        opts.runs,
        false,
        flowtop,
        tmp,
        |ns, timeout| {
            // The screen: the first run also measures the steady state.
            let mut frame_ours = Vec::new();
            for r in 0..opts.runs {
                log(format!("{n}: flowtop screen, run {}/{}", r + 1, opts.runs));
                let cmd = format!("exec ip netns exec {} {ft} -4U -t 1 --no-sysctl -n -G", ns.name);
                let window = (r == 0).then_some(opts.window);
                let limit = timeout.as_secs_f64();
                // One failed run (tmux, say) is reported, not fatal to the others.
                frame_ours.push(match screen_run("new", &cmd, n, "ADDRESS", limit, window) {
                    Ok(s) => Ok(s),
                    Err(e) => Err(keep(e)?),
                });
            }
            let frame_old = if !legacy || n > LEGACY_MAX {
                None
            } else {
                log(format!(
                    "{n}: flowtop 0.6.8 screen (limit {:.0} s)",
                    opts.legacy_limit
                ));
                let cmd = format!("exec ip netns exec {} {NETSNIFF_FLOWTOP} -4UGn", ns.name);
                // Its header counts what it has read so far; 99% is "the table".
                let want = n * 99 / 100;
                Some(
                    match screen_run("old", &cmd, want, "ADDRESS", opts.legacy_limit, Some(opts.window)) {
                        Ok(s) => Ok(s),
                        Err(e) => Err(keep(e)?),
                    },
                )
            };
            log(format!(
                "{n}: steady state of flowtop --json -t 1 ({} s)",
                opts.window
            ));
            let steady_json = match steady_flowtop(ns, flowtop, n, 0, opts.window, tmp) {
                Ok(s) => Ok(s),
                Err(e) => Err(keep(e)?),
            };
            log(format!(
                "{n}: steady state of flowtop --json -t 1 with {ACTIVE_FLOWS} active flows ({} s)",
                opts.window
            ));
            let steady_active = match steady_flowtop(ns, flowtop, n, ACTIVE_FLOWS, opts.window, tmp) {
                Ok(s) => Ok(s),
                Err(e) => Err(keep(e)?),
            };
            Ok((frame_ours, frame_old, steady_json, steady_active))
        },
    )?;
    Ok(SizeRes {
        cold,
        frame_ours,
        frame_old,
        steady_json,
        steady_active,
    })
}

// ---------------------------------------------------------------- churn

/// A flow's original tuple, "SRC DST SPORT DPORT": the identity of a UDP
/// entry. Not the conntrack id: that is a 32-bit hash, and with hundreds of
/// thousands of entries made and destroyed a new entry does get the id of
/// one still alive.
type TupleKey = String;

/// The set of flows a `--json` stream describes, and its last `stats` line.
#[derive(Default)]
struct Stream {
    live: HashSet<TupleKey>,
    lines: u64,
    overruns: u64,
    resyncs: u64,
    stats_lines: u64,
}

/// The original tuple of a `--json` line.
fn json_tuple(line: &str) -> Option<TupleKey> {
    let text = |key: &str| -> Option<&str> {
        let i = line.find(key)? + key.len();
        line[i..].split('"').next()
    };
    Some(format!(
        "{} {} {} {}",
        text(r#","src":""#)?,
        text(r#","dst":""#)?,
        field_u64(line, r#","sport":"#)?,
        field_u64(line, r#","dport":"#)?
    ))
}

/// The original tuple of a `conntrack -L` line (its first src=, dst=,
/// sport=, dport=).
fn conntrack_tuple(line: &str) -> Option<TupleKey> {
    let first = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_string)
    };
    Some(format!(
        "{} {} {} {}",
        first("src=")?,
        first("dst=")?,
        first("sport=")?,
        first("dport=")?
    ))
}

fn field_u64(line: &str, key: &str) -> Option<u64> {
    let i = line.find(key)? + key.len();
    let digits: &str = &line[i..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

fn follow(out: impl Read + Send + 'static, state: Arc<Mutex<Stream>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 20, out);
        let mut line = String::with_capacity(4096);
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            // The event is the first key: a prefix is enough for it.
            let head = &line[..line.len().min(20)];
            let Ok(mut s) = state.lock() else { break };
            s.lines += 1;
            let kind = head
                .strip_prefix(r#"{"event":""#)
                .and_then(|t| t.split('"').next())
                .unwrap_or("");
            match kind {
                "snapshot" | "new" | "update" => {
                    if let Some(t) = json_tuple(&line) {
                        s.live.insert(t);
                    }
                }
                "destroy" => {
                    if let Some(t) = json_tuple(&line) {
                        s.live.remove(&t);
                    }
                }
                "stats" => {
                    s.stats_lines += 1;
                    s.overruns = field_u64(&line, r#""overruns":"#).unwrap_or(s.overruns);
                    s.resyncs = field_u64(&line, r#""resyncs":"#).unwrap_or(s.resyncs);
                }
                _ => {}
            }
        }
    })
}

/// `conntrack -E` over the same churn: the streaming peer of `--json`.
struct Peer {
    cpu_pct: f64,
    /// Event lines it printed during the churn.
    lines: u64,
    /// Its "ENOBUFS" warnings (events it lost).
    enobufs: u64,
    /// Still running at the end of the churn.
    alive: bool,
}

struct ChurnRes {
    peer: Peer,
    rate: u64,
    /// created, deleted, errors, seconds (ct_churn.py's summary).
    summary: (u64, u64, u64, f64),
    cpu_pct: f64,
    user_pct: f64,
    sys_pct: f64,
    overruns: u64,
    resyncs: u64,
    /// Seconds after the churn ended until flowtop's set equalled the
    /// kernel's; None if not within the limit.
    converge_s: Option<f64>,
    /// |flowtop's set|, |kernel's| at the end (when not converged).
    sets: (usize, usize),
    stats_seen: bool,
}

/// The original tuples of every conntrack entry in `ns`.
fn kernel_tuples(ns: &Netns) -> Result<HashSet<TupleKey>> {
    let out = run_cmd(ns.cmd("conntrack").arg("-L"))?;
    Ok(out.lines().filter_map(conntrack_tuple).collect())
}

fn churn_one(rate: u64, window: f64, flowtop: &Path, tmp: &Path) -> Result<ChurnRes> {
    let mut sysctls = SysctlGuard::new();
    sysctls.raise_for_entries(CHURN_BASE + rate * (CHURN_LIVE_S + 1))?;
    let ns = Netns::create(&format!("ftbench-{}", std::process::id()))?;
    setup_namespace(&ns)?;
    let ins = tmp.join("ct_insert.py");
    fs::write(&ins, CT_INSERT_PY)?;
    let churn_py = tmp.join("ct_churn.py");
    fs::write(&churn_py, CT_CHURN_PY)?;
    run_cmd(ns.cmd("python3").arg(&ins).arg(CHURN_BASE.to_string()))?;

    let errp = tmp.join("churn-flowtop.err");
    let (mut ft, stdout) = spawn_flowtop_json(&ns, flowtop, &errp)?;
    let state = Arc::new(Mutex::new(Stream::default()));
    let reader = follow(stdout, state.clone());
    let live = || state.lock().map(|s| s.live.len()).unwrap_or(0);
    let t0 = Instant::now();
    while (live() as u64) < CHURN_BASE {
        sleep_checked(Duration::from_millis(100))?;
        if let Some(st) = ft.exited() {
            bail!(
                "flowtop --json exited ({st}): {}",
                fs::read_to_string(&errp).unwrap_or_default().trim()
            );
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!(
                "flowtop --json showed {} of {CHURN_BASE} flows after 30 s",
                live()
            );
        }
    }
    // The streaming peer: `conntrack -E` follows the same event stream,
    // started now so that both see the whole churn.
    let ce_err = tmp.join("conntrack-E.err");
    let mut ce = ns.cmd("conntrack");
    ce.args(["-E", "-p", "udp"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&ce_err)?);
    let mut ce = ce.spawn().context("cannot start conntrack -E")?;
    let ce_out = ce.stdout.take().context("no stdout")?;
    let (ce_lines, ce_reader) = spawn_counter(ce_out);
    let mut ce = ProcGuard::new(ce, "conntrack -E");
    sleep_checked(Duration::from_secs(2))?;

    log(format!(
        "churn: {rate} creates + {rate} destroys per second for {window} s"
    ));
    let mut cc = ns.cmd("python3");
    cc.arg(&churn_py)
        .args([
            format!("{window}"),
            rate.to_string(),
            "--live-secs".into(),
            CHURN_LIVE_S.to_string(),
            "--dst-base".into(),
            "10.99.0.1".into(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(tmp.join("churn.err"))?);
    let mut churn = cc.spawn().context("cannot start ct_churn.py")?;
    let mut churn_out = churn.stdout.take().context("no stdout")?;
    let mut churn = ProcGuard::new(churn, "ct_churn.py");
    let tck = clk_tck();
    let c0 = cpu_ticks(ft.pid())?;
    let e0 = cpu_ticks(ce.pid())?;
    let lines0 = ce_lines.lines.load(Ordering::Relaxed);
    let w0 = Instant::now();
    let deadline = Duration::from_secs_f64(window + 60.0);
    while churn.exited().is_none() {
        sleep_checked(Duration::from_millis(20))?;
        if ft.exited().is_some() {
            bail!(
                "flowtop --json exited during the churn: {}",
                fs::read_to_string(&errp).unwrap_or_default().trim()
            );
        }
        if w0.elapsed() > deadline {
            bail!("ct_churn.py did not finish within {deadline:?}");
        }
    }
    let storm_end = Instant::now();
    let c1 = cpu_ticks(ft.pid())?;
    let e1 = cpu_ticks(ce.pid())?;
    let peer_lines = ce_lines.lines.load(Ordering::Relaxed) - lines0;
    let peer_alive = ce.exited().is_none();
    let w = w0.elapsed().as_secs_f64();
    let mut text = String::new();
    let _ = churn_out.read_to_string(&mut text);
    drop(churn);
    let f: Vec<&str> = text.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    let summary = (num(0) as u64, num(1) as u64, num(2) as u64, num(3));

    // The kernel's table is static from here on.
    let kernel = kernel_tuples(&ns)?;
    let mut converge_s = None;
    let limit = Duration::from_secs(15);
    loop {
        check_interrupted()?;
        let equal = state.lock().map(|s| s.live == kernel).unwrap_or(false);
        if equal {
            converge_s = Some(storm_end.elapsed().as_secs_f64());
            break;
        }
        if storm_end.elapsed() > limit {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    // A stats line is due every interval: the counters after the storm.
    sleep_checked(Duration::from_millis(2_200))?;
    let (overruns, resyncs, ours, stats_seen) = state
        .lock()
        .map(|s| (s.overruns, s.resyncs, s.live.len(), s.stats_lines > 0))
        .unwrap_or_default();
    drop(ft);
    drop(ce);
    let _ = ce_reader.join();
    let peer_enobufs = fs::read_to_string(&ce_err)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("ENOBUFS"))
        .count() as u64;
    let _ = reader.join();
    drop(ns);
    drop(sysctls);
    let pct = |t: u64| t as f64 / tck / w * 100.0;
    Ok(ChurnRes {
        rate,
        summary,
        cpu_pct: pct(c1.0 + c1.1 - c0.0 - c0.1),
        user_pct: pct(c1.0 - c0.0),
        sys_pct: pct(c1.1 - c0.1),
        peer: Peer {
            cpu_pct: pct(e1.0 + e1.1 - e0.0 - e0.1),
            lines: peer_lines,
            enobufs: peer_enobufs,
            alive: peer_alive,
        },
        overruns,
        resyncs,
        converge_s,
        sets: (ours, kernel.len()),
        stats_seen,
    })
}

// ---------------------------------------------------------------- run

pub fn run(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    require_root("bench report", "network namespaces, sysctls")?;
    crate::setup::ensure(crate::setup::Need::All)?;
    require_tools(&["ip", "nft", "conntrack", "python3", "tmux"])?;
    let legacy = Path::new(NETSNIFF_FLOWTOP).is_file();
    let Prepared {
        root,
        flowtop,
        tmp,
        started,
    } = prepare()?;

    let mut sizes = Vec::new();
    for (i, &n) in opts.sizes.iter().enumerate() {
        if i > 0 {
            sleep_checked(Duration::from_secs(2))?;
        }
        log(format!("=== {n} entries ==="));
        sizes.push(measure_size(&opts, n, &flowtop, &tmp.0, legacy)?);
    }
    let mut churn = Vec::new();
    for &rate in &opts.churn_rates {
        sleep_checked(Duration::from_secs(2))?;
        log(format!("=== churn at {rate}/s ==="));
        churn.push(match churn_one(rate, opts.window, &flowtop, &tmp.0) {
            Ok(r) => Ok(r),
            Err(e) => Err((rate, keep(e)?)),
        });
    }
    log("=== the screen under an event stream (bench ui) ===");
    let ui_opts = super::ui::Opts {
        flows: 100_000,
        events: 10_000,
        secs: if opts.quick { 8.0 } else { 20.0 },
        presses: if opts.quick { 8 } else { 20 },
    };
    let ui = match super::ui::collect(&ui_opts, &flowtop, &tmp.0) {
        Ok(r) => Ok(r),
        Err(e) => Err(keep(e)?),
    };
    if opts.rerun_enrich {
        log("=== bench enrich ===");
        let runs = opts.runs.to_string();
        super::enrich::run(&["--flows".into(), "100000".into(), "--runs".into(), runs])?;
    }
    let took = started.elapsed();
    let report = render(&opts, &root, &sizes, &churn, &ui, &ui_opts, took);
    write_report(&root, "REPORT.md", &report)
}

// ---------------------------------------------------------------- report

/// The "CPU | user / sys | rest | VmRSS | VmHWM" cells of a steady-state row.
fn usage_cells(cpu: f64, user: f64, sys: f64, rest: f64, rss_kib: u64, hwm_kib: u64) -> String {
    format!(
        "{} | {user:.1} / {sys:.1} | {rest:.0} | {} | {}",
        pct(cpu),
        mib(rss_kib as f64),
        mib(hwm_kib as f64)
    )
}

/// Full dumps and hot refreshes of a steady window, for the table.
fn rereads(s: &Steady) -> String {
    let Some(r) = s.refresh else {
        return "no `stats` line".into();
    };
    let every = if r.dumps > 0 {
        format!(" (one per {:.1} s)", s.window_s / r.dumps as f64)
    } else {
        String::new()
    };
    let mut cell = format!(
        "{} full dumps{every}, {} hot refreshes ({} entries)",
        r.dumps, r.refreshes, r.refreshed
    );
    if let Some(u) = s.updates_per_active_flow_s() {
        let _ = write!(cell, "; {u:.2} updates per active flow per s");
    }
    cell
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// A section of another benchmark's report: from `## start` up to the next
/// `## `, plus its date line.
fn quote_section(path: &Path, start: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let date = text
        .lines()
        .find(|l| l.starts_with("- date:"))
        .unwrap_or("- date: ?");
    let commit = text
        .lines()
        .find(|l| l.starts_with("- flowtop commit:"))
        .unwrap_or("");
    let i = text.find(start)?;
    let rest = &text[i + start.len()..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    let head = [date, commit]
        .iter()
        .filter(|l| !l.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    Some(format!("{head}\n\n{}", rest[..end].trim()))
}

#[allow(clippy::too_many_arguments)]
fn render(
    opts: &Opts,
    root: &Path,
    sizes: &[SizeRes],
    churn: &[Result<ChurnRes, (u64, String)>],
    ui: &Result<super::ui::UiRun, String>,
    ui_opts: &super::ui::Opts,
    took: Duration,
) -> String {
    let mut o = header("flowtop scale report", root, &opts.command(), took);
    let mut verdicts: Vec<String> = Vec::new();
    // Every comparison with a like-for-like peer of the same run: (what, flowtop, peer).
    let mut vs_peer: Vec<(String, f64, f64)> = Vec::new();
    let rest: Vec<f64> = sizes
        .iter()
        .flat_map(|r| [&r.steady_json, &r.steady_active])
        .filter_map(|s| s.as_ref().ok().map(|s| s.other_pct))
        .collect();
    let rest = median(&rest);
    let _ = writeln!(
        o,
        "\nSizes {}, {} run(s) per one-shot measurement (median shown), {} s windows, churn at {} per \
         second. Every table is built in a fresh network namespace (UDP entries inserted over ctnetlink by \
         `xtask/scripts/ct_insert.py`, timeout 3600 s), removed afterwards with any global sysctl raised \
         for it. Ratios are given only between like for like in the same run: `--once --json` vs \
         `conntrack -L` (one dump of the table each), flowtop's screen vs 0.6.8's screen, and under churn \
         `--json` vs `conntrack -E` (both follow the event stream); the steady state of `--json` has no \
         peer (0.6.8 has no stream; `conntrack -E` prints nothing on an idle table).",
        opts.sizes
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        opts.runs,
        opts.window,
        opts.churn_rates
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    );
    if rest.is_finite() {
        let _ = writeln!(
            o,
            "\nThe rest of the machine used {rest:.0} % of a core during the median steady-state window \
             (\"rest\" below){}.",
            if rest >= 10.0 {
                ": the machine was shared, so CPU-bound figures are indicative and the ratios of the same \
                 run are what count"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        o,
        "\nNotes on where the time goes, from profiles made by hand: [docs/perf-notes.md](../docs/perf-notes.md) \
         (dated; not regenerated by this command)."
    );

    // 1. Cold start.
    o.push_str("\n## 1. Cold start\n\n");
    o.push_str(
        "`flowtop --once --json -4UnG --no-sysctl > /dev/null` vs `conntrack -L > /dev/null`: wall time, \
         CPU (user+sys) and peak RSS from wait4, median of the runs (interleaved, after one untimed \
         pass of each). Screen: from starting the tool in a 200×50 tmux pane until `capture-pane` shows \
         the whole table count in the header and the column header (flowtop `-4U -t 1 -n -G \
         --no-sysctl`; 0.6.8 `-4UGn`, whose header counts what it has read so far, at ≥ 99 %; polled \
         every 2 ms, tmux start included for both).\n\n",
    );
    o.push_str(
        "| entries | fill | conntrack -L | flowtop --once --json | ratio | CPU conntrack / flowtop | \
         peak RSS conntrack / flowtop | flowtop screen | 0.6.8 screen | ratio |\n\
         |---:|---:|---:|---:|---:|---|---|---:|---:|---:|\n",
    );
    for r in sizes {
        let w = |v: &[RunStat], f: fn(&RunStat) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
        let ct = w(&r.cold.conntrack, |s| s.wall_s);
        let ft = w(&r.cold.flowtop, |s| s.wall_s);
        let ours_loads: Vec<f64> = r
            .frame_ours
            .iter()
            .filter_map(|s| s.as_ref().ok().and_then(|s| s.load_s))
            .collect();
        let timed_out = r
            .frame_ours
            .iter()
            .any(|s| s.as_ref().is_ok_and(|s| s.load_s.is_none()));
        let ours_screen = if !ours_loads.is_empty() && !timed_out {
            median(&ours_loads)
        } else {
            f64::NAN
        };
        let (old_txt, old_v) = match &r.frame_old {
            None if r.cold.n > LEGACY_MAX => (format!("not run (> {LEGACY_MAX} entries: minutes)"), f64::NAN),
            None => ("not installed".into(), f64::NAN),
            Some(Err(e)) => (format!("failed: {e}"), f64::NAN),
            Some(Ok(s)) => match s.load_s {
                Some(v) => (secs(v), v),
                None => (format!("> {:.0} s (limit)", opts.legacy_limit), f64::NAN),
            },
        };
        vs_peer.push((
            format!(
                "{} entries: `--once --json` vs `conntrack -L`, wall time",
                r.cold.n
            ),
            ft,
            ct,
        ));
        if old_v.is_finite() && ours_screen.is_finite() {
            vs_peer.push((
                format!("{} entries: table on screen, vs 0.6.8's screen", r.cold.n),
                ours_screen,
                old_v,
            ));
        }
        let screen_ratio = if old_v.is_finite() {
            format!("{:.2}× ({:.0}× faster)", ours_screen / old_v, old_v / ours_screen)
        } else if old_txt.starts_with('>') {
            format!("< {:.3}×", ours_screen / opts.legacy_limit)
        } else {
            "—".into()
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} / {} | {} / {} | {} | {} | {} |",
            r.cold.n,
            secs(r.cold.fill_s),
            secs(ct),
            secs(ft),
            ratio(ft, ct),
            secs(w(&r.cold.conntrack, |s| s.cpu_s)),
            secs(w(&r.cold.flowtop, |s| s.cpu_s)),
            mib(w(&r.cold.conntrack, |s| s.maxrss_kib as f64)),
            mib(w(&r.cold.flowtop, |s| s.maxrss_kib as f64)),
            if ours_screen.is_finite() {
                secs(ours_screen)
            } else {
                "not shown in time".into()
            },
            old_txt,
            screen_ratio
        );
        if r.cold.once_lines != r.cold.n {
            let _ = writeln!(
                o,
                "\nNote: at {} entries `--once --json` printed {} snapshot lines.\n",
                r.cold.n, r.cold.once_lines
            );
        }
    }
    for r in sizes {
        for c in &r.cold.changed {
            let _ = writeln!(o, "\n- raised for {} entries (restored): {c}", r.cold.n);
        }
    }
    if let Some(r) = sizes.last() {
        let w = |v: &[RunStat]| median(&v.iter().map(|s| s.wall_s).collect::<Vec<_>>());
        let (ft, ct) = (w(&r.cold.flowtop), w(&r.cold.conntrack));
        let at = if r.cold.n == 1_000_000 {
            String::new()
        } else {
            format!(" (measured at {}, the target is stated at 1000000)", r.cold.n)
        };
        verdicts.push(format!(
            "Cold start at {} entries no slower than `conntrack -L`{at}: {} vs {} ({}): **{}**",
            r.cold.n,
            secs(ft),
            secs(ct),
            ratio(ft, ct),
            met(ft <= ct)
        ));
    }

    // 2. Steady state.
    o.push_str("\n## 2. Steady state\n\n");
    let _ = writeln!(
        o,
        "CPU in % of one core (utime+stime from /proc/PID/stat) over a {} s window once the table \
         is loaded, and VmRSS / VmHWM at its end. `--json -t 1 -4UnG --no-sysctl` with stdout drained \
         through a pipe, on the idle table and again with {ACTIVE_FLOWS} more UDP flows on loopback \
         each sending a datagram every 0.5 s (started 3 s before the window); the screens in the tmux \
         panes of section 1 (flowtop `-t 1`; 0.6.8 refreshes every second by default). One window \
         each. \"rest\" is what the other processes of the machine used meanwhile (% of a core, the \
         traffic generator included). \"re-reads\": from flowtop's `stats` lines (SIGUSR1 before and \
         after the window): full dumps (every entry) and hot refreshes (only flows with recent \
         activity, one GET each), and for the active run the `update` lines about the active flows \
         per flow per second (1.0 = every active flow's rates re-read every interval).\n",
        opts.window
    );
    o.push_str(
        "| entries | tool | CPU | user / sys | rest | VmRSS | VmHWM | CPU vs 0.6.8 | VmRSS vs 0.6.8 | re-reads in the window |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let mut json_rss: Vec<(u64, f64)> = Vec::new();
    let mut json_cpu: Vec<(u64, f64)> = Vec::new();
    let mut screen_cpu: Vec<(u64, f64)> = Vec::new();
    // (entries, VmRSS KiB, VmHWM KiB) of the screen at steady state.
    let mut screen_mem: Vec<(u64, u64, u64)> = Vec::new();
    let mut active_cpu: Vec<(u64, f64, Option<f64>)> = Vec::new();
    let mut notes = Vec::new();
    for r in sizes {
        let old: Option<&Window> = match &r.frame_old {
            Some(Ok(s)) => match &s.steady {
                Some(Ok(w)) => Some(w),
                _ => None,
            },
            _ => None,
        };
        let vs = |cpu: f64, rss: f64| match old {
            Some(w) => (ratio(cpu, w.cpu_pct), ratio(rss, w.rss_kib as f64)),
            None => ("—".into(), "—".into()),
        };
        match &r.steady_json {
            Ok(s) => {
                let _ = writeln!(
                    o,
                    "| {} | flowtop --json -t 1 | {} | no peer | no peer | {} |",
                    r.cold.n,
                    usage_cells(
                        s.cpu_pct,
                        s.user_pct,
                        s.sys_pct,
                        s.other_pct,
                        s.rss_kib,
                        s.hwm_kib
                    ),
                    rereads(s)
                );
                json_rss.push((r.cold.n, s.rss_kib as f64 * 1024.0));
                json_cpu.push((r.cold.n, s.cpu_pct));
                if !s.note.is_empty() {
                    notes.push(format!("{} entries, `--json`: {}", r.cold.n, s.note));
                }
            }
            Err(e) => {
                let _ = writeln!(
                    o,
                    "| {} | flowtop --json -t 1 | failed: {e} | | | | | | | |",
                    r.cold.n
                );
            }
        }
        match &r.steady_active {
            Ok(s) => {
                let _ = writeln!(
                    o,
                    "| {} + {ACTIVE_FLOWS} active | flowtop --json -t 1 | {} | no peer | no peer | {} |",
                    r.cold.n,
                    usage_cells(
                        s.cpu_pct,
                        s.user_pct,
                        s.sys_pct,
                        s.other_pct,
                        s.rss_kib,
                        s.hwm_kib
                    ),
                    rereads(s)
                );
                active_cpu.push((r.cold.n, s.cpu_pct, s.updates_per_active_flow_s()));
            }
            Err(e) => {
                let _ = writeln!(
                    o,
                    "| {} + {ACTIVE_FLOWS} active | flowtop --json -t 1 | failed: {e} | | | | | | | |",
                    r.cold.n
                );
            }
        }
        if let Some(e) = r.frame_ours.iter().find_map(|s| s.as_ref().err()) {
            notes.push(format!("{} entries, a screen run failed: {e}", r.cold.n));
        }
        match r
            .frame_ours
            .first()
            .and_then(|s| s.as_ref().ok())
            .and_then(|s| s.steady.as_ref())
        {
            Some(Ok(w)) => {
                let (a, b) = vs(w.cpu_pct, w.rss_kib as f64);
                if let Some(p) = old {
                    vs_peer.push((
                        format!("{} entries: screen steady CPU, vs 0.6.8's screen", r.cold.n),
                        w.cpu_pct,
                        p.cpu_pct,
                    ));
                    vs_peer.push((
                        format!("{} entries: screen steady VmRSS, vs 0.6.8's screen", r.cold.n),
                        w.rss_kib as f64,
                        p.rss_kib as f64,
                    ));
                }
                let _ = writeln!(
                    o,
                    "| {} | flowtop screen -t 1 | {} | {a} | {b} | — |",
                    r.cold.n,
                    usage_cells(
                        w.cpu_pct,
                        w.user_pct,
                        w.sys_pct,
                        w.other_pct,
                        w.rss_kib,
                        w.hwm_kib
                    )
                );
                screen_cpu.push((r.cold.n, w.cpu_pct));
                screen_mem.push((r.cold.n, w.rss_kib, w.hwm_kib));
            }
            Some(Err(e)) => {
                let _ = writeln!(o, "| {} | flowtop screen | failed: {e} | | | | | | |", r.cold.n);
            }
            None => {
                let _ = writeln!(
                    o,
                    "| {} | flowtop screen | not measured (table not shown) | | | | | | |",
                    r.cold.n
                );
            }
        }
        match (&r.frame_old, old) {
            (_, Some(w)) => {
                let _ = writeln!(
                    o,
                    "| {} | flowtop 0.6.8 screen | {} | 1.00× | 1.00× | every entry, every interval |",
                    r.cold.n,
                    usage_cells(
                        w.cpu_pct,
                        w.user_pct,
                        w.sys_pct,
                        w.other_pct,
                        w.rss_kib,
                        w.hwm_kib
                    )
                );
            }
            (Some(Ok(s)), None) if s.load_s.is_none() => {
                let _ = writeln!(
                    o,
                    "| {} | flowtop 0.6.8 screen | not measured: table not shown within {:.0} s | | | | | | |",
                    r.cold.n, opts.legacy_limit
                );
            }
            (
                Some(Ok(Screen {
                    steady: Some(Err(e)), ..
                })),
                None,
            ) => {
                let _ = writeln!(
                    o,
                    "| {} | flowtop 0.6.8 screen | failed: {e} | | | | | | |",
                    r.cold.n
                );
            }
            (None, _) if r.cold.n > LEGACY_MAX => {
                let _ = writeln!(
                    o,
                    "| {} | flowtop 0.6.8 screen | not run (> {LEGACY_MAX} entries) | | | | | | |",
                    r.cold.n
                );
            }
            _ => {}
        }
    }
    for n in notes {
        let _ = writeln!(o, "\nNote: {n}");
    }
    // Memory model: base + slope × flows, from the smallest size and the slope
    // between consecutive sizes.
    if json_rss.len() >= 2 {
        o.push_str("\nMemory of `--json -t 1` (VmRSS) per flow:\n\n| from | to | bytes per flow |\n|---:|---:|---:|\n");
        let mut slopes = Vec::new();
        for w in json_rss.windows(2) {
            let s = (w[1].1 - w[0].1) / (w[1].0 - w[0].0) as f64;
            slopes.push((w[0].0, w[1].0, s));
            let _ = writeln!(o, "| {} | {} | {s:.0} B |", w[0].0, w[1].0);
        }
        let (n0, r0) = json_rss[0];
        let s0 = slopes[0].2;
        let base = r0 - s0 * n0 as f64;
        let _ = writeln!(
            o,
            "\nFixed base (VmRSS at {n0} minus the first slope × {n0}): {}.",
            mib(base / 1024.0)
        );
        let worst = slopes.iter().map(|s| s.2).fold(f64::MIN, f64::max);
        verdicts.push(format!(
            "Memory under 300 bytes per flow beyond a fixed base of {} (`--json`, VmRSS): slopes {}: **{}**",
            mib(base / 1024.0),
            slopes
                .iter()
                .map(|(a, b, s)| format!("{a}→{b} {s:.0} B"))
                .collect::<Vec<_>>()
                .join(", "),
            met(worst < 300.0)
        ));
    }
    for (label, v) in [("`--json -t 1`", &json_cpu), ("the screen (`-t 1`)", &screen_cpu)] {
        if let Some(&(_, c)) = v.iter().find(|(n, _)| *n == 100_000) {
            verdicts.push(format!(
                "Steady state at 100000 flows under 20 % of one core, {label}: {}: **{}**",
                pct(c),
                met(c < 20.0)
            ));
        }
    }
    if let Some(&(_, c, per_s)) = active_cpu.iter().find(|(n, ..)| *n == 100_000) {
        let fresh = per_s.map_or("not counted".to_string(), |u| {
            format!("{u:.2} updates per active flow per second")
        });
        verdicts.push(format!(
            "Steady state at 100000 flows + {ACTIVE_FLOWS} active under 20 % of one core, `--json -t 1`, \
             rates of the active flows refreshed every second: {} ({fresh}): **{}**",
            pct(c),
            met(c < 20.0 && per_s.is_some_and(|u| u >= 0.9))
        ));
    }
    let growth = |v: &[(u64, f64)]| {
        let a = v.iter().find(|(n, _)| *n == 100_000)?.1;
        let b = v.iter().find(|(n, _)| *n == 1_000_000)?.1;
        Some(b / a)
    };
    if let Some(g) = growth(&json_cpu) {
        verdicts.push(format!(
            "Growth 100000 → 1000000 no worse than linear (≤ 10×), CPU of `--json`: {g:.1}×: **{}**",
            met(g <= 10.0)
        ));
    }
    if let Some(g) = growth(&screen_cpu) {
        verdicts.push(format!(
            "Growth 100000 → 1000000 no worse than linear (≤ 10×), CPU of the screen: {g:.1}×: **{}**",
            met(g <= 10.0)
        ));
    }
    if let Some(g) = growth(&json_rss) {
        verdicts.push(format!(
            "Growth 100000 → 1000000 no worse than linear (≤ 10×), VmRSS of `--json`: {g:.1}×: **{}**",
            met(g <= 10.0)
        ));
    }

    // The screen at a million flows (issue 11): memory per flow, the peak
    // against the steady state, and CPU.
    if let Some(&(n, rss, hwm)) = screen_mem.iter().find(|(n, ..)| *n == 1_000_000) {
        let per_flow = rss as f64 * 1024.0 / n as f64;
        verdicts.push(format!(
            "The screen at {n} flows holds at most 350 B per flow (VmRSS {} / {n}): {per_flow:.0} B: **{}**",
            mib(rss as f64),
            met(per_flow <= 350.0)
        ));
        let ratio = hwm as f64 / rss as f64;
        verdicts.push(format!(
            "The screen at {n} flows peaks at most 1.2× its steady state: VmHWM {} / VmRSS {} = {ratio:.2}×: **{}**",
            mib(hwm as f64),
            mib(rss as f64),
            met(ratio <= 1.2)
        ));
    }
    if let Some(&(n, c)) = screen_cpu.iter().find(|(n, _)| *n == 1_000_000) {
        verdicts.push(format!(
            "The screen at {n} flows under 25 % of one core at steady state (`-t 1`): {}: **{}**",
            pct(c),
            met(c < 25.0)
        ));
    }

    // 3. Churn.
    o.push_str("\n## 3. Churn\n\n");
    let _ = writeln!(
        o,
        "A namespace with {CHURN_BASE} entries; `xtask/scripts/ct_churn.py` creates RATE UDP entries per \
         second over ctnetlink and deletes each {CHURN_LIVE_S} s later (RATE destroys per second) for \
         {} s, then deletes the rest, while `flowtop --json -t 1 -4UnG --no-sysctl` streams (stdout read \
         by the benchmark, which rebuilds the set of live flows from the stream: `snapshot`/`new`/`update` \
         add the flow's original tuple, `destroy` removes it; not the id, a 32-bit hash that a new \
         entry sometimes shares with a live one). Overruns (ENOBUFS) and resyncs: flowtop's last `stats` line. \
         Converged: time from the end of the churn until that set equals the tuples `conntrack -L` \
         lists (limit 15 s). CPU: flowtop over the churn. The peer: `conntrack -E -p udp` in the same namespace, \
         started before the churn, its stdout read and counted by the benchmark like flowtop's, CPU over \
         the same span; it only prints events (no table, no rates), the least a consumer of the stream does. \
         0.6.8 has no stream.\n",
        opts.window
    );
    o.push_str(
        "| rate asked | achieved (created/s) | created / deleted / errors | CPU | user / sys | overruns | resyncs | converged after | sets (flowtop / kernel) | `conntrack -E`: CPU, lines, ENOBUFS | CPU vs `conntrack -E` |\n\
         |---:|---:|---|---:|---:|---:|---:|---:|---|---|---:|\n",
    );
    for c in churn {
        match c {
            Ok(c) => {
                let (cr, de, er, s) = c.summary;
                let peer_cell = format!(
                    "{}, {} lines, {} ENOBUFS{}",
                    pct(c.peer.cpu_pct),
                    c.peer.lines,
                    c.peer.enobufs,
                    if c.peer.alive { "" } else { ", exited early" }
                );
                let _ = writeln!(
                    o,
                    "| {} | {:.0} | {cr} / {de} / {er} | {} | {:.1} / {:.1} | {}{} | {} | {} | {} / {} | {} | {} |",
                    c.rate,
                    cr as f64 / s,
                    pct(c.cpu_pct),
                    c.user_pct,
                    c.sys_pct,
                    c.overruns,
                    if c.stats_seen {
                        ""
                    } else {
                        " (no `stats` line: printed on overruns and resyncs only)"
                    },
                    c.resyncs,
                    c.converge_s.map(secs).unwrap_or_else(|| "not within 15 s".into()),
                    c.sets.0,
                    c.sets.1,
                    peer_cell,
                    ratio(c.cpu_pct, c.peer.cpu_pct)
                );
                vs_peer.push((
                    format!("churn at {}/s: CPU of `--json`, vs `conntrack -E`", c.rate),
                    c.cpu_pct,
                    c.peer.cpu_pct,
                ));
                if c.rate == 10_000 {
                    let ok = c.overruns == 0 || c.converge_s.is_some_and(|t| t <= 2.0);
                    verdicts.push(format!(
                        "Churn at 10000/s (achieved {:.0}/s): {} overruns, {} resyncs, table equal to the \
                         kernel's {} after the storm: **{}**",
                        cr as f64 / s,
                        c.overruns,
                        c.resyncs,
                        c.converge_s
                            .map(|t| format!("{t:.2} s"))
                            .unwrap_or_else(|| "not within 15 s".into()),
                        met(ok && c.converge_s.is_some())
                    ));
                }
            }
            Err((rate, e)) => {
                let _ = writeln!(o, "| {rate} | failed: {e} | | | | | | | |");
            }
        }
    }

    // 4. Attribution and enrichment.
    o.push_str("\n## 4. Attribution and enrichment cost\n\n");
    o.push_str(
        "Quoted from the reports of `cargo xtask bench enrich` (100 000 flows) and `cargo xtask bench \
         attribution` (their own dates and commits below; `--rerun-enrich` runs the former in this \
         run first).\n\n### Enrichment (bench/enrich.md)\n\n",
    );
    let enrich = root.join("bench/enrich.md");
    match quote_section(&enrich, "medians of").or_else(|| {
        let t = fs::read_to_string(&enrich).ok()?;
        let i = t.find("| measure")?;
        let end = t[i..].find("\n## ").map_or(t.len(), |e| i + e);
        let date = t.lines().find(|l| l.starts_with("- date:")).unwrap_or("");
        Some(format!("{date}\n\n{}", t[i..end].trim_end()))
    }) {
        Some(s) => {
            let _ = writeln!(o, "{s}");
        }
        None => o.push_str("bench/enrich.md not found.\n"),
    }
    o.push_str("\n### Attribution (bench/attribution.md)\n\n");
    match quote_section(&root.join("bench/attribution.md"), "## Cost of the eBPF programs") {
        Some(s) => {
            let _ = writeln!(o, "{s}");
        }
        None => o.push_str("bench/attribution.md not found.\n"),
    }

    // 5. The screen under churn.
    o.push_str("\n## 5. Frame time while scrolling and sorting under churn\n\n");
    let _ = writeln!(
        o,
        "`bench ui`'s measurement: {} UDP entries plus {} new flows per second expiring 10 s later \
         ({} events/s); each tool in a 200×50 tmux pane for {} s with {} key presses (Tab/BTab, and \
         `r` reversing the sort for flowtop). Frame times from `FLOWTOP_FRAME_LOG` (flowtop only; \
         0.6.8 has no such log: keystroke-to-frame latency and CPU compare both).\n",
        ui_opts.flows,
        ui_opts.events / 2,
        ui_opts.events,
        ui_opts.secs,
        ui_opts.presses
    );
    match ui {
        Ok(u) => {
            let _ = writeln!(o, "Table at steady state: {} entries.\n", u.table);
            o.push_str("| tool | metric | p50 | p99 | n |\n|---|---|---:|---:|---:|\n");
            let row = |o: &mut String, tool: &str, m: &str, v: &[f64]| {
                let _ = writeln!(
                    o,
                    "| {tool} | {m} | {} | {} | {} |",
                    ms(percentile(v, 50.0)),
                    ms(percentile(v, 99.0)),
                    v.len()
                );
            };
            row(&mut o, "flowtop", "frame: build + draw", &u.ours.frames_ms);
            row(
                &mut o,
                "flowtop",
                "rows per snapshot (deriver thread)",
                &u.ours.deriver_ms,
            );
            row(&mut o, "flowtop", "keystroke to frame: Tab", &u.ours.latencies_ms);
            row(
                &mut o,
                "flowtop",
                "keystroke to frame: r (re-sort)",
                &u.ours.resort_ms,
            );
            let _ = writeln!(
                o,
                "| flowtop | CPU over the window | {} | | |\n| flowtop | table on screen after | {} | | |",
                pct(u.ours.cpu_pct),
                secs(u.ours.load_s)
            );
            match &u.old {
                Some(Ok(r)) => {
                    row(
                        &mut o,
                        "flowtop 0.6.8",
                        "keystroke to frame: Tab",
                        &r.latencies_ms,
                    );
                    let _ = writeln!(
                        o,
                        "| flowtop 0.6.8 | CPU over the window | {} | | |\n| flowtop 0.6.8 | table on screen after | {} | | |",
                        pct(r.cpu_pct),
                        secs(r.load_s)
                    );
                    let a = percentile(&u.ours.latencies_ms, 50.0);
                    let b = percentile(&r.latencies_ms, 50.0);
                    vs_peer.push((
                        "screen under churn: keystroke to frame p50, vs 0.6.8".into(),
                        a,
                        b,
                    ));
                    vs_peer.push((
                        "screen under churn: CPU, vs 0.6.8".into(),
                        u.ours.cpu_pct,
                        r.cpu_pct,
                    ));
                    vs_peer.push((
                        "screen under churn: table on screen, vs 0.6.8".into(),
                        u.ours.load_s,
                        r.load_s,
                    ));
                    let _ = writeln!(
                        o,
                        "\nRatios flowtop / 0.6.8: keystroke p50 {}, CPU {}, table on screen {}.",
                        ratio(a, b),
                        ratio(u.ours.cpu_pct, r.cpu_pct),
                        ratio(u.ours.load_s, r.load_s)
                    );
                }
                Some(Err(e)) => {
                    let _ = writeln!(o, "\nflowtop 0.6.8 failed: {e}");
                }
                None => o.push_str("\nflowtop 0.6.8 is not installed.\n"),
            }
            let missed = u.ours.missed;
            verdicts.push(format!(
                "The screen keeps drawing under churn ({} events/s): {} frames, p99 {} build + draw, {} \
                 key presses without a frame: **{}**",
                ui_opts.events,
                u.ours.frames_ms.len(),
                ms(percentile(&u.ours.frames_ms, 99.0)),
                missed,
                met(missed == 0 && !u.ours.frames_ms.is_empty())
            ));
        }
        Err(e) => {
            let _ = writeln!(o, "Failed: {e}");
        }
    }

    // Verdicts.
    o.push_str("\n## Targets\n\n");
    for v in &verdicts {
        let _ = writeln!(o, "- {v}");
    }
    // Computed from the comparisons above, not asserted: the target is
    // about the original (0.6.8); the other peers are shown beside it.
    let summary = |original: bool| {
        let judged: Vec<&(String, f64, f64)> = vs_peer
            .iter()
            .filter(|(what, a, b)| {
                what.contains("0.6.8") == original && a.is_finite() && b.is_finite() && *b > 0.0
            })
            .collect();
        let behind: Vec<String> = judged
            .iter()
            .filter(|(_, a, b)| a >= b)
            .map(|(what, a, b)| format!("{what} ({})", ratio(*a, *b)))
            .collect();
        (judged.len(), behind)
    };
    let (n, behind) = summary(true);
    let _ =
        writeln!(
        o,
        "- Every scenario ahead of the original: flowtop ahead of 0.6.8 in {} of the {n} screen-vs-screen \
         comparisons of this run{}: **{}**",
        n - behind.len(),
        if behind.is_empty() { String::new() } else { format!("; not ahead: {}", behind.join("; ")) },
        if n == 0 { "not judged (0.6.8 not measured)" } else { met(behind.is_empty()) }
    );
    let (n, behind) = summary(false);
    let _ = writeln!(
        o,
        "- Against the other peers of this run (`conntrack -L`, `conntrack -E`; no target): flowtop ahead in \
         {} of {n}{}",
        n - behind.len(),
        if behind.is_empty() { String::new() } else { format!("; not ahead: {}", behind.join("; ")) }
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_stream_lines() {
        let l = r#"{"event":"destroy","ts":"x","id":4021,"family":"ipv4","proto":"udp","state":null,"src":"198.51.100.1","sport":1024,"dst":"10.99.0.1","dport":1,"reply_src":"10.99.0.1","reply_sport":1}"#;
        assert_eq!(field_u64(l, r#","id":"#), Some(4021));
        assert_eq!(json_tuple(l).as_deref(), Some("198.51.100.1 10.99.0.1 1024 1"));
        let c = "udp      17 598 src=198.51.100.1 dst=10.99.0.1 sport=1024 dport=1 [UNREPLIED] src=10.99.0.1 dst=198.51.100.1 sport=1 dport=1024 mark=0 use=1";
        assert_eq!(
            conntrack_tuple(c).as_deref(),
            Some("198.51.100.1 10.99.0.1 1024 1")
        );
        let s = r#"{"event":"stats","ts":"x","flows":3,"dumps":1,"overruns":12,"resyncs":2}"#;
        assert_eq!(field_u64(s, r#""overruns":"#), Some(12));
        assert_eq!(field_u64(s, r#""resyncs":"#), Some(2));
    }

    #[test]
    fn quick_defaults() {
        let o = parse(&["--quick".into()]).expect("--quick parses");
        assert_eq!(o.sizes, vec![10_000, 100_000]);
        assert_eq!(o.runs, 1);
        let o = parse(&["--sizes".into(), "10k,1M".into(), "--runs".into(), "2".into()])
            .expect("--sizes and --runs parse");
        assert_eq!(o.sizes, vec![10_000, 1_000_000]);
        assert_eq!(o.runs, 2);
    }
}
