//! `cargo xtask bench ui`: the screen under load, side by side with
//! netsniff-ng's flowtop 0.6.8.
//!
//! A private namespace gets N UDP entries (as in `bench dump`) and then a
//! stream of events: new UDP flows at half the event rate, each expiring 10 s
//! later (a short UDP timeout set after the fill), so that NEW and DESTROY
//! together make the rate. Each tool then runs in a tmux pane of its own on
//! that table:
//!
//! * flowtop, with `FLOWTOP_FRAME_LOG`: the time to build (derive rows) and
//!   draw each frame, p50/p99 over the window;
//! * both: keystroke-to-frame latency, from `tmux send-keys Tab` to the pane
//!   showing the other tab (polled with `capture-pane`, so the numbers include
//!   tmux's own delay, the same for both), and CPU over the window.
//!
//! Everything it changes is undone as in `bench dump` (guards): namespace,
//! global sysctls, the processes it started (0.6.8 is killed with SIGKILL: it
//! survives its terminal), the tmux servers.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::guards::{check_interrupted, signal_and_wait, sleep_checked, ProcGuard, SysctlGuard};
use super::markdown::{header, ms, pct, ratio};
use super::measure::{clk_tck, cpu_ticks, percentile};
use super::netns::Netns;
use super::table::{conntrack_count, setup_namespace, FILL_PY};
use super::{log, parse_count, require_root, require_tools, run_cmd, NETSNIFF_FLOWTOP};
use super::{prepare, write_report, Prepared};

pub const USAGE: &str = "\
usage: cargo xtask bench ui [--flows N] [--events R] [--secs S] [--presses K]

  --flows    UDP entries in the table, default 100000 (k/M suffixes allowed)
  --events   conntrack events per second during the measurement (NEW + DESTROY), default 5000
  --secs     measuring window per tool in seconds, default 20
  --presses  keystrokes whose latency is measured per tool, default 20

Needs root and tmux. Writes bench/ui.md.";

#[derive(Debug, Clone)]
pub struct Opts {
    pub(crate) flows: u64,
    pub(crate) events: u64,
    pub(crate) secs: f64,
    pub(crate) presses: usize,
}

impl Opts {
    pub fn parse(args: &[String]) -> Result<Opts> {
        let mut o = Opts {
            flows: 100_000,
            events: 5_000,
            secs: 20.0,
            presses: 20,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().with_context(|| format!("{a} needs a value\n\n{USAGE}"));
            match a.as_str() {
                "--flows" => o.flows = parse_count(val()?)?,
                "--events" => o.events = parse_count(val()?)?,
                "--secs" => o.secs = val()?.parse().context("--secs")?,
                "--presses" => o.presses = val()?.parse().context("--presses")?,
                other => bail!("unknown option {other}\n\n{USAGE}"),
            }
        }
        if o.flows == 0 || o.secs <= 0.0 || o.presses == 0 {
            bail!("--flows, --secs and --presses must be positive\n\n{USAGE}");
        }
        Ok(o)
    }
}

/// New UDP flows at `rate` per second from a second socket, to hosts the
/// fill does not use, for as long as it runs.
const CHURN_PY: &str = r#"
import socket, sys, time
rate = float(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.51.100.1", 0))
t0 = time.monotonic()
sent = 0
while True:
    for host in range(200, 255):
        for port in range(1, 65536):
            due = t0 + sent / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            try:
                s.sendto(b"x", ("198.51.100.%d" % host, port))
            except OSError:
                pass
            sent += 1
"#;

/// Seconds a churn flow lives (the UDP timeout set after the fill).
const CHURN_TIMEOUT_S: u64 = 10;

/// A tmux server of its own, with one pane; killed on drop, after the
/// pane's process (which `exec`s the tool, so the pane pid is the tool's)
/// got SIGKILL if it is still there.
pub(crate) struct Pane {
    socket: String,
    pid: Option<i32>,
}

impl Pane {
    pub(crate) fn start(label: &str, command: &str) -> Result<Pane> {
        // A fresh server name each time: a server just killed under the
        // same name may still be going away and make this one fail.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = format!("ftbench-ui-{}-{label}-{k}", std::process::id());
        let mut p = Pane { socket, pid: None };
        p.tmux(&["new-session", "-d", "-s", "b", "-x", "200", "-y", "50", command])?;
        let pid = p.tmux(&["display-message", "-p", "-t", "b", "#{pane_pid}"])?;
        p.pid = Some(pid.trim().parse().with_context(|| format!("pane pid {pid:?}"))?);
        Ok(p)
    }

    fn tmux(&self, args: &[&str]) -> Result<String> {
        run_cmd(
            Command::new("tmux")
                .args(["-L", &self.socket, "-f", "/dev/null"])
                .args(args),
        )
    }

    pub(crate) fn screen(&self) -> Result<String> {
        self.tmux(&["capture-pane", "-p", "-t", "b"])
    }

    pub(crate) fn key(&self, key: &str) -> Result<()> {
        self.tmux(&["send-keys", "-t", "b", key]).map(|_| ())
    }

    pub(crate) fn pid(&self) -> i32 {
        self.pid.unwrap_or(-1)
    }

    /// Polls the screen until `pred` holds; the time it took, or None.
    pub(crate) fn wait(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Result<Option<Duration>> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            check_interrupted()?;
            if pred(&self.screen()?) {
                return Ok(Some(t0.elapsed()));
            }
            // Each capture is a tmux client process: poll often enough for
            // a fine resolution, not so often that polling loads the machine.
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(None)
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.filter(|p| *p > 0) {
            signal_and_wait(pid, libc::SIGKILL, Duration::from_secs(3));
        }
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stdin(Stdio::null())
            .output();
    }
}

/// What one tool did on the loaded table.
#[derive(Debug, Default)]
pub(crate) struct ToolResult {
    /// Seconds until the table was on screen.
    pub(crate) load_s: f64,
    pub(crate) shown: String,
    /// Keystroke-to-frame latencies (ms) of Tab, of a sort reversal
    /// (flowtop only), and presses that got no frame.
    pub(crate) latencies_ms: Vec<f64>,
    pub(crate) resort_ms: Vec<f64>,
    pub(crate) missed: usize,
    pub(crate) cpu_pct: f64,
    /// /proc/loadavg's 1-minute value at the start and the end of the window.
    pub(crate) load: (String, String),
    /// flowtop only, per frame (ms): the work on the screen's thread (rows
    /// built after keys, rows taken from the deriver, selection) plus the
    /// draw, and the parts.
    pub(crate) frames_ms: Vec<f64>,
    pub(crate) derive_ms: Vec<f64>,
    pub(crate) draw_ms: Vec<f64>,
    /// flowtop only: rows built for each snapshot on the deriver thread (ms).
    pub(crate) deriver_ms: Vec<f64>,
}

/// The flow count in the header: ours "│ N flows", 0.6.8 "flows(N)".
pub(crate) fn shown_flows(screen: &str) -> Option<u64> {
    let first = screen.lines().take(3).collect::<Vec<_>>().join(" ");
    if let Some(i) = first.find("flows(") {
        return first[i + 6..].split(')').next()?.parse().ok();
    }
    let i = first.find(" flows")?;
    first[..i].rsplit(' ').next()?.parse().ok()
}

/// Runs one tool: waits for the table, then presses Tab `presses` times
/// (alternating with `back`), each time waiting for `marks` to flip; CPU
/// over the window. With `frame_log`, the frames logged during the window.
fn measure(
    label: &str,
    command: &str,
    opts: &Opts,
    marks: (&str, &str),
    back: &str,
    frame_log: Option<&Path>,
    resort: Option<(&str, &str, &str)>,
) -> Result<(ToolResult, Pane)> {
    let mut r = ToolResult::default();
    let pane = Pane::start(label, command)?;
    let t0 = Instant::now();
    let want = opts.flows * 9 / 10;
    let loaded = pane.wait(Duration::from_secs(180), |s| {
        shown_flows(s).is_some_and(|n| n >= want) && s.contains(marks.0)
    })?;
    let screen = pane.screen()?;
    if loaded.is_none() {
        bail!(
            "{label}: the table ({want}+ flows) was not on screen after 180 s; it showed: {}",
            screen
                .lines()
                .take(2)
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    r.load_s = t0.elapsed().as_secs_f64();
    r.shown = screen
        .lines()
        .take(2)
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" / ");
    let tck = clk_tck();
    let skip = match frame_log {
        Some(log) => frames(log, 0)?.len(),
        None => 0,
    };
    let (u0, s0) = cpu_ticks(pane.pid())?;
    r.load.0 = load1();
    let w0 = Instant::now();
    let gap = Duration::from_secs_f64((opts.secs / opts.presses as f64).max(0.2));
    for i in 0..opts.presses {
        // With `resort`, every other pair of presses reverses the sort
        // instead (a rebuild of every row), reported on its own.
        let (key, mark, resorting) = match (i % 4, resort) {
            (2, Some((k, up, _))) => (k, up, true),
            (3, Some((k, _, down))) => (k, down, true),
            (n, _) if n % 2 == 0 => ("Tab", marks.1, false),
            _ => (back, marks.0, false),
        };
        let before = Instant::now();
        pane.key(key)?;
        match pane.wait(Duration::from_secs(10), |s| s.contains(mark))? {
            Some(_) if resorting => r.resort_ms.push(before.elapsed().as_secs_f64() * 1e3),
            Some(_) => r.latencies_ms.push(before.elapsed().as_secs_f64() * 1e3),
            None => r.missed += 1,
        }
        let next = before + gap;
        sleep_checked(next.saturating_duration_since(Instant::now()))?;
    }
    let rest = Duration::from_secs_f64(opts.secs).saturating_sub(w0.elapsed());
    sleep_checked(rest)?;
    let (u1, s1) = cpu_ticks(pane.pid())?;
    r.load.1 = load1();
    let window = w0.elapsed().as_secs_f64();
    r.cpu_pct = ((u1 + s1) - (u0 + s0)) as f64 / tck / window * 100.0;
    if let Some(log) = frame_log {
        for (d, w, t) in frames(log, skip)? {
            r.frames_ms.push((d + w) / 1e3);
            r.derive_ms.push(d / 1e3);
            r.draw_ms.push(w / 1e3);
            if t > 0.0 {
                r.deriver_ms.push(t / 1e3);
            }
        }
    }
    Ok((r, pane))
}

/// The 1-minute load average: the machine is shared, and a loaded one
/// makes every number here worse.
fn load1() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Frames logged after line `skip`: µs on the screen's thread, drawing,
/// and on the deriver thread, per line.
fn frames(log: &Path, skip: usize) -> Result<Vec<(f64, f64, f64)>> {
    let text = fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    Ok(text
        .lines()
        .skip(skip)
        .filter_map(|l| {
            let mut it = l.split_whitespace().map(|v| v.parse::<f64>().ok());
            Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0.0)))
        })
        .collect())
}

pub fn run(opts: &Opts) -> Result<()> {
    require_root("bench ui", "network namespaces, sysctls")?;
    require_tools(&["ip", "nft", "conntrack", "python3", "tmux"])?;
    let Prepared {
        root,
        flowtop,
        tmp,
        started,
    } = prepare()?;
    let r = collect(opts, &flowtop, &tmp.0)?;
    let report = render(
        opts,
        &root,
        r.table,
        &r.changed,
        &r.ours,
        r.old.as_ref(),
        started.elapsed(),
    );
    write_report(&root, "ui.md", &report)
}

/// What `collect` measured: the table size at steady state, the global
/// sysctls raised for the run, flowtop's results and 0.6.8's (None when it
/// is not installed).
pub(crate) struct UiRun {
    pub(crate) table: u64,
    pub(crate) changed: Vec<String>,
    pub(crate) ours: ToolResult,
    pub(crate) old: Option<Result<ToolResult, String>>,
}

/// The measurement of `bench ui` without the report: namespace, fill, event
/// stream, both tools in tmux; everything undone before it returns.
pub(crate) fn collect(opts: &Opts, flowtop: &Path, tmp: &Path) -> Result<UiRun> {
    let churn_rate = opts.events / 2;
    let steady_churn = churn_rate * CHURN_TIMEOUT_S;
    let mut sysctls = SysctlGuard::new();
    let changed = sysctls.raise_for_entries(opts.flows + steady_churn)?;
    let ns = Netns::create(&format!("ftbench-{}", std::process::id()))?;
    setup_namespace(&ns)?;
    log(format!("filling the table with {} UDP entries", opts.flows));
    run_cmd(ns.cmd("python3").args(["-c", FILL_PY, &opts.flows.to_string()]))?;
    let counted = conntrack_count(&ns)?;
    if counted < opts.flows {
        bail!("only {counted} of {} entries after the fill", opts.flows);
    }
    // The filled entries keep their 3600 s; churn flows get 10 s.
    ns.sysctl(
        "net.netfilter.nf_conntrack_udp_timeout",
        &CHURN_TIMEOUT_S.to_string(),
    )?;
    log(format!(
        "event stream: {churn_rate} new flows/s, each destroyed {CHURN_TIMEOUT_S} s later"
    ));
    let churn = ns
        .cmd("python3")
        .args(["-c", CHURN_PY, &churn_rate.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the event stream")?;
    let _churn = ProcGuard::new(churn, "event stream");
    sleep_checked(Duration::from_secs(CHURN_TIMEOUT_S + 2))?;
    let table = conntrack_count(&ns)?;
    log(format!("table at steady state: {table} entries"));

    let frame_log = tmp.join("frames.log");
    log("flowtop: the screen in tmux");
    let ours_cmd = format!(
        "exec env FLOWTOP_FRAME_LOG={} ip netns exec {} {} -4U --no-sysctl -n -G",
        frame_log.display(),
        ns.name,
        flowtop.display()
    );
    let (ours, pane) = measure(
        "new",
        &ours_cmd,
        opts,
        ("ADDRESS", "EXECUTABLE"),
        "BTab",
        Some(&frame_log),
        Some(("r", "sort BYTES▲", "sort BYTES▼")),
    )?;
    drop(pane);

    let old = if Path::new(NETSNIFF_FLOWTOP).is_file() {
        log("flowtop 0.6.8 in tmux");
        let cmd = format!("exec ip netns exec {} {NETSNIFF_FLOWTOP} -4UGn", ns.name);
        match measure("old", &cmd, opts, ("ADDRESS", "BYTES_SRC"), "Tab", None, None) {
            Ok((r, pane)) => {
                drop(pane);
                Some(Ok(r))
            }
            Err(e) => Some(Err(format!("{e:#}"))),
        }
    } else {
        None
    };
    drop(_churn);
    drop(ns);
    drop(sysctls);
    Ok(UiRun {
        table,
        changed,
        ours,
        old,
    })
}

fn render(
    opts: &Opts,
    root: &Path,
    table: u64,
    changed: &[String],
    ours: &ToolResult,
    old: Option<&Result<ToolResult, String>>,
    took: Duration,
) -> String {
    let command = format!(
        "cargo xtask bench ui --flows {} --events {} --secs {} --presses {}",
        opts.flows, opts.events, opts.secs, opts.presses
    );
    let mut s = header("flowtop screen benchmark", root, &command, took);
    for c in changed {
        let _ = writeln!(s, "- raised for the run: {c}");
    }
    let _ = writeln!(
        s,
        "\nSetup: a fresh network namespace with {} UDP entries (as in `bench dump`), then {} new UDP \
         flows per second that expire {CHURN_TIMEOUT_S} s later ({} conntrack events/s, NEW + DESTROY); \
         {table} entries at steady state. Each tool runs in a 200x50 tmux pane on that table, UDP over \
         IPv4 shown (`flowtop -4U --no-sysctl -n -G`, 0.6.8 `-4UGn`). Frame time: flowtop's \
         `FLOWTOP_FRAME_LOG`, per frame drawn during the window (one per snapshot and per key burst): \
         the work on the screen's thread (rows rebuilt after a key that changes them, rows taken from \
         the deriver thread, the selection put back) plus the draw. Rows for each new snapshot \
         (select, filter, sort or aggregate) are built on a deriver thread while the screen keeps \
         answering keys: that time is reported on its own line. Keystroke \
         latency: `tmux send-keys Tab` (or back) until `capture-pane` shows the other tab (flowtop: \
         every other pair of presses is `r` instead, until the sort marker flips: every row rebuilt \
         on the screen's thread; 0.6.8 has no sort), polled \
         every 2 ms; it includes tmux's own delay, the same for both tools. CPU: \
         utime+stime over the {} s window (keys included), in % of one core. Other work on \
         the machine shows in the load averages (above and per tool): CPU figures are then indicative, \
         the ratios of the same run are what count.\n",
        opts.flows,
        opts.events / 2,
        opts.events,
        opts.secs
    );
    let _ = writeln!(
        s,
        "| tool | metric | p50 | p99 | max | n |\n|---|---|---:|---:|---:|---:|"
    );
    let row = |s: &mut String, tool: &str, metric: &str, v: &[f64]| {
        let max = v.iter().copied().fold(f64::NAN, f64::max);
        let _ = writeln!(
            s,
            "| {tool} | {metric} | {} | {} | {} | {} |",
            ms(percentile(v, 50.0)),
            ms(percentile(v, 99.0)),
            ms(max),
            v.len()
        );
    };
    row(
        &mut s,
        "flowtop",
        "frame: build + draw (screen thread)",
        &ours.frames_ms,
    );
    row(&mut s, "flowtop", "frame: build (screen thread)", &ours.derive_ms);
    row(&mut s, "flowtop", "frame: draw", &ours.draw_ms);
    row(
        &mut s,
        "flowtop",
        "rows per snapshot (deriver thread)",
        &ours.deriver_ms,
    );
    row(&mut s, "flowtop", "keystroke to frame: Tab", &ours.latencies_ms);
    row(
        &mut s,
        "flowtop",
        "keystroke to frame: r (sort reversed)",
        &ours.resort_ms,
    );
    match old {
        Some(Ok(o)) => row(
            &mut s,
            "flowtop 0.6.8",
            "keystroke to frame: Tab",
            &o.latencies_ms,
        ),
        Some(Err(_)) => {
            let _ = writeln!(s, "| flowtop 0.6.8 | keystroke to frame | failed (below) | | | |");
        }
        None => {
            let _ = writeln!(s, "| flowtop 0.6.8 | — | not installed | | | |");
        }
    }
    let _ = writeln!(
        s,
        "\n| tool | table on screen after | keys without a frame in 10 s | CPU | load average (start, end) | header |\n|---|---:|---:|---:|---|---|"
    );
    let line = |s: &mut String, tool: &str, r: &ToolResult| {
        let _ = writeln!(
            s,
            "| {tool} | {:.1} s | {} of {} | {:.0} % | {}, {} | `{}` |",
            r.load_s,
            r.missed,
            r.missed + r.latencies_ms.len() + r.resort_ms.len(),
            r.cpu_pct,
            r.load.0,
            r.load.1,
            r.shown.replace('|', "\\|")
        );
    };
    line(&mut s, "flowtop", ours);
    match old {
        Some(Ok(o)) => line(&mut s, "flowtop 0.6.8", o),
        Some(Err(e)) => {
            let _ = writeln!(s, "\nflowtop 0.6.8 failed: {e}");
        }
        None => {}
    }
    if let Some(Ok(o)) = old {
        // Screen against screen, same table, same run: the like-for-like rows.
        let pairs = [
            (
                "keystroke to frame (Tab), p50",
                percentile(&ours.latencies_ms, 50.0),
                percentile(&o.latencies_ms, 50.0),
                ms as fn(f64) -> String,
            ),
            (
                "keystroke to frame (Tab), p99",
                percentile(&ours.latencies_ms, 99.0),
                percentile(&o.latencies_ms, 99.0),
                ms,
            ),
            ("CPU over the window", ours.cpu_pct, o.cpu_pct, pct),
            (
                "table on screen after",
                ours.load_s * 1000.0,
                o.load_s * 1000.0,
                ms,
            ),
        ];
        let _ = writeln!(
            s,
            "\nflowtop / 0.6.8, same table, same run (below 1× is flowtop ahead):\n\n\
             | metric | flowtop | 0.6.8 | ratio |\n|---|---:|---:|---:|"
        );
        let mut ahead = 0;
        for (metric, a, b, f) in pairs {
            if a < b {
                ahead += 1;
            }
            let _ = writeln!(s, "| {metric} | {} | {} | {} |", f(a), f(b), ratio(a, b));
        }
        let _ = writeln!(
            s,
            "\nflowtop is ahead of 0.6.8 in {ahead} of {} of these.",
            pairs.len()
        );
    }
    let _ = writeln!(
        s,
        "\nflowtop 0.6.8 has no frame-time instrumentation: its side of the comparison is the \
         keystroke-to-frame latency, the time to show the table and CPU, measured the same way."
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_counts_of_both_tools() {
        assert_eq!(
            shown_flows(" flowtop 0.1.0 │ 101234 flows (udp 101234) │ IPv4 udp"),
            Some(101_234)
        );
        assert_eq!(
            shown_flows(
                "  flowtop 0.6.8 (Flutternozzle)\n  Kernel netfilter flows(99876) for IPv4,UDP, [+0]"
            ),
            Some(99_876)
        );
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), 2.0);
    }
}
