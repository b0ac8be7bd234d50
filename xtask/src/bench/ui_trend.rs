//! `cargo xtask bench ui --processes N [--flows M]`: the Processes tab's
//! TREND sparklines at N program groups, against the same screen with them
//! off (`FLOWTOP_BENCH_NO_TREND=1`: no history kept, no column drawn), and
//! the per-flow rate histories (the detail chart's past) at N + M flows
//! against the same screen without them (`FLOWTOP_BENCH_NO_FLOW_HISTORY=1`),
//! in the same run.
//!
//! `--flows M` adds M more UDP flows that each move a datagram every
//! `--cycle` seconds (one sender going round them), so that every flow of
//! the table has a history: a router's many mostly idle flows.
//!
//! A private namespace gets N processes, each under a uid of its own (so
//! that each is a program group of the Processes tab: executable and user),
//! each sending UDP datagrams in bursts of its own rhythm to a test host.
//! flowtop runs in a 200x50 tmux pane on the Processes tab with a short
//! interval, while the selection moves down a row every 100 ms (a frame
//! each); the rounds alternate on and off. Reported from
//! `FLOWTOP_FRAME_LOG`: frame time (screen thread: rows taken and drawn)
//! p50/p99/max per mode, the deriver thread's rows per snapshot, the
//! rate histories' groups and bytes (per group: under 1 KiB is the target)
//! and the flow histories' flows and bytes (per flow: 256 B the target).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::guards::{check_interrupted, sleep_checked, ProcGuard, SysctlGuard};
use super::markdown::{header, ms, ratio};
use super::measure::percentile;
use super::netns::Netns;
use super::table::setup_namespace;
use super::ui::{shown_flows, Pane};
use super::{log, parse_count, require_root, require_tools};
use super::{prepare, write_report, Prepared};

pub const USAGE: &str = "\
usage: cargo xtask bench ui --processes N [--flows M] [--cycle C] [--secs S] [--rounds R] [--interval T]

  --processes  sending processes, each a program group of its own (uid), default 5000
  --flows      more UDP flows, each moving a datagram every C seconds, default 0
  --cycle      seconds for the one sender of --flows to go round them, default 20
  --secs       measuring window per round in seconds, default 30
  --rounds     rounds per mode (all on, TREND off, flow histories off), alternating, default 2
  --interval   flowtop's -t in seconds, default 0.5

Needs root, python3 and tmux. Writes bench/ui-trend.md.";

#[derive(Debug, Clone)]
pub struct Opts {
    processes: u64,
    flows: u64,
    cycle: f64,
    secs: f64,
    rounds: usize,
    interval: f64,
}

impl Opts {
    pub fn parse(args: &[String]) -> Result<Opts> {
        let mut o = Opts {
            processes: 5000,
            flows: 0,
            cycle: 20.0,
            secs: 30.0,
            rounds: 2,
            interval: 0.5,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().with_context(|| format!("{a} needs a value\n\n{USAGE}"));
            match a.as_str() {
                "--processes" => o.processes = parse_count(val()?)?,
                "--flows" => o.flows = parse_count(val()?)?,
                "--cycle" => o.cycle = val()?.parse().context("--cycle")?,
                "--secs" => o.secs = val()?.parse().context("--secs")?,
                "--rounds" => o.rounds = val()?.parse().context("--rounds")?,
                "--interval" => o.interval = val()?.parse().context("--interval")?,
                other => bail!("unknown option {other}\n\n{USAGE}"),
            }
        }
        if o.processes == 0 || o.secs <= 0.0 || o.rounds == 0 || o.interval < 0.1 {
            bail!("--processes, --secs and --rounds must be positive, --interval at least 0.1\n\n{USAGE}");
        }
        // Under the UDP timeout (30 s), so the flows stay in the table.
        if !(1.0..=25.0).contains(&o.cycle) {
            bail!("--cycle must be between 1 and 25 seconds\n\n{USAGE}");
        }
        Ok(o)
    }
}

/// First uid of the senders: far above the users of a normal system.
const FIRST_UID: u64 = 200_000;

/// Forks N senders, each under uid FIRST_UID + i, each sending bursts of
/// datagrams at its own rhythm from a socket of its own; they die with it
/// (PR_SET_PDEATHSIG, set after the uid change, which clears it). Prints
/// "ready" once all are started.
const SENDERS_PY: &str = r#"
import ctypes, gc, os, random, signal, socket, sys, time
n, uid0 = int(sys.argv[1]), int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
gc.disable()
gc.freeze()
for i in range(n):
    if os.fork() == 0:
        try:
            os.setgroups([])
            os.setgid(uid0 + i)
            os.setuid(uid0 + i)
            # After setuid, which clears the parent-death signal: set
            # before, it left 5000 senders running after the bench.
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            if os.getppid() == 1:
                os._exit(0)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("198.51.100.1", 0))
            s.connect(("198.51.100.%d" % (2 + i % 250), 1000 + i))
            r = random.Random(i)
            buf = b"x" * 1000
            while True:
                for _ in range(r.randint(1, 30)):
                    try:
                        s.send(buf)
                    except OSError:
                        pass
                time.sleep(r.uniform(0.2, 3.0))
        finally:
            os._exit(0)
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

/// The one sender of `--flows`: M flows from ports of its own to
/// 198.51.100.2..254, a datagram each every `cycle` seconds, in slices
/// of a tenth of a second. Prints "ready" after the first round.
const TRICKLE_PY: &str = r#"
import socket, sys, time
n, cycle = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.51.100.1", 0))
dests = [("198.51.100.%d" % (2 + i % 253), 20000 + i // 253) for i in range(n)]
slices = max(1, int(cycle * 10))
first = True
while True:
    t0 = time.monotonic()
    for k in range(slices):
        for d in dests[k * n // slices:(k + 1) * n // slices]:
            try:
                s.sendto(b"x", d)
            except OSError:
                pass
        left = t0 + (k + 1) * cycle / slices - time.monotonic()
        if left > 0:
            time.sleep(left)
    if first:
        print("ready", flush=True)
        first = False
"#;

/// One line of the frame log: screen thread µs + draw µs, deriver µs,
/// groups and bytes of the TREND histories, flows and bytes of the flow
/// histories (0 from a flowtop without them).
#[derive(Debug, Clone, Copy)]
struct Frame {
    frame: f64,
    deriver: f64,
    groups: f64,
    group_bytes: f64,
    flows: f64,
    flow_bytes: f64,
}

fn frames(log: &Path, skip: usize) -> Result<Vec<Frame>> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    Ok(text
        .lines()
        .skip(skip)
        .filter_map(|l| {
            let v: Vec<f64> = l.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            (v.len() >= 5).then(|| Frame {
                frame: v[0] + v[1],
                deriver: v[2],
                groups: v[3],
                group_bytes: v[4],
                flows: v.get(5).copied().unwrap_or(0.0),
                flow_bytes: v.get(6).copied().unwrap_or(0.0),
            })
        })
        .collect())
}

/// What a round turns off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    AllOn,
    NoTrend,
    NoFlowHistory,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::AllOn, Mode::NoTrend, Mode::NoFlowHistory];

    fn env(self) -> &'static str {
        match self {
            Mode::AllOn => "",
            Mode::NoTrend => "FLOWTOP_BENCH_NO_TREND=1",
            Mode::NoFlowHistory => "FLOWTOP_BENCH_NO_FLOW_HISTORY=1",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::AllOn => "all on",
            Mode::NoTrend => "TREND off",
            Mode::NoFlowHistory => "flow histories off",
        }
    }
}

/// Runs flowtop in a pane in `mode` for one round; its frames.
fn round(opts: &Opts, ns: &Netns, flowtop: &Path, log_path: &Path, mode: Mode) -> Result<Vec<Frame>> {
    let _ = std::fs::remove_file(log_path);
    let on = mode != Mode::NoTrend;
    let cmd = format!(
        "exec env LC_ALL=C.UTF-8 FLOWTOP_FRAME_LOG={} {} ip netns exec {} {} -4U --no-sysctl -n -G -t {}",
        log_path.display(),
        mode.env(),
        ns.name,
        flowtop.display(),
        opts.interval
    );
    let pane = Pane::start(
        match mode {
            Mode::AllOn => "on",
            Mode::NoTrend => "off",
            Mode::NoFlowHistory => "noflows",
        },
        &cmd,
    )?;
    let want = opts.processes * 9 / 10;
    if pane
        .wait(Duration::from_secs(120), |s| {
            shown_flows(s).is_some_and(|n| n >= want)
        })?
        .is_none()
    {
        bail!(
            "the {want}+ flows were not on screen after 120 s: {}",
            pane.screen()?.lines().next().unwrap_or_default()
        );
    }
    pane.key("Tab")?;
    let mark = if on { "TREND" } else { "EXECUTABLE" };
    if pane
        .wait(Duration::from_secs(20), |s| s.contains(mark))?
        .is_none()
    {
        bail!("the Processes tab did not show {mark}");
    }
    // Let the histories fill a while before measuring.
    sleep_checked(Duration::from_secs_f64(opts.interval * 10.0))?;
    let skip = frames(log_path, 0)?.len();
    let t0 = Instant::now();
    let mut presses = 0u32;
    while t0.elapsed().as_secs_f64() < opts.secs {
        check_interrupted()?;
        // Down 30 rows, then up again: a frame per press.
        pane.key(if (presses / 30).is_multiple_of(2) {
            "Down"
        } else {
            "Up"
        })?;
        presses += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = frames(log_path, skip)?;
    drop(pane);
    Ok(out)
}

pub fn run(args: &[String]) -> Result<()> {
    let opts = Opts::parse(args)?;
    require_root("bench ui --processes", "network namespaces, uids, sysctls")?;
    require_tools(&["ip", "nft", "python3", "tmux"])?;
    let Prepared {
        root,
        flowtop,
        tmp,
        started,
    } = prepare()?;
    let mut sysctls = SysctlGuard::new();
    let changed = sysctls.raise_for_entries(opts.processes * 2 + opts.flows)?;
    let ns = Netns::create(&format!("ftbench-trend-{}", std::process::id()))?;
    setup_namespace(&ns)?;
    log(format!("starting {} senders, uids {FIRST_UID}..", opts.processes));
    let mut child = ns
        .cmd("python3")
        .args([
            "-c",
            SENDERS_PY,
            &opts.processes.to_string(),
            &FIRST_UID.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the senders")?;
    let stdout = child.stdout.take().context("senders' stdout")?;
    let senders = ProcGuard::new(child, "senders");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    if line.trim() != "ready" {
        bail!("the senders did not start ({line:?})");
    }
    let trickle = if opts.flows > 0 {
        log(format!(
            "starting the sender of {} more flows, a datagram each every {} s",
            opts.flows, opts.cycle
        ));
        let mut child = ns
            .cmd("python3")
            .args(["-c", TRICKLE_PY, &opts.flows.to_string(), &opts.cycle.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the sender of --flows")?;
        let stdout = child.stdout.take().context("trickle's stdout")?;
        let guard = ProcGuard::new(child, "trickle");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
        if line.trim() != "ready" {
            bail!("the sender of --flows did not go round ({line:?})");
        }
        Some(guard)
    } else {
        None
    };
    let log_path = tmp.0.join("frames.log");
    let mut by_mode: [Vec<Frame>; 3] = Default::default();
    for r in 0..opts.rounds {
        for (i, mode) in Mode::ALL.into_iter().enumerate() {
            log(format!("round {}: {}", r + 1, mode.name()));
            let f = round(&opts, &ns, &flowtop, &log_path, mode)?;
            by_mode[i].extend(f);
        }
    }
    drop(trickle);
    drop(senders);
    drop(ns);
    drop(sysctls);
    let report = render(&opts, &root, &changed, &by_mode, started.elapsed());
    write_report(&root, "ui-trend.md", &report)
}

fn render(opts: &Opts, root: &Path, changed: &[String], by_mode: &[Vec<Frame>; 3], took: Duration) -> String {
    let [on, off, no_flows] = by_mode;
    let command = format!(
        "cargo xtask bench ui --processes {} --flows {} --cycle {} --secs {} --rounds {} --interval {}",
        opts.processes, opts.flows, opts.cycle, opts.secs, opts.rounds, opts.interval
    );
    let mut s = header(
        "flowtop TREND sparklines and flow histories benchmark",
        root,
        &command,
        took,
    );
    for c in changed {
        let _ = writeln!(s, "- raised for the run: {c}");
    }
    let _ = writeln!(
        s,
        "\nSetup: a fresh network namespace with {} processes, each under a uid of its own (so \
         each is a program group of the Processes tab), each sending UDP bursts of its own rhythm \
         from a socket of its own, and {} more UDP flows each moving a datagram every {} s (one \
         sender going round them). flowtop (`-4U --no-sysctl -n -G -t {}`) runs in a 200x50 tmux \
         pane on the Processes tab while the selection moves a row every 100 ms; rounds alternate \
         all on, TREND off (`FLOWTOP_BENCH_NO_TREND=1`: no group history kept, no column) and \
         flow histories off (`FLOWTOP_BENCH_NO_FLOW_HISTORY=1`: no per-flow history kept), {} \
         rounds of {} s each. Frame: the screen thread's work (rows taken from the deriver, the \
         histories' sample, the selection) plus the draw, per frame, from `FLOWTOP_FRAME_LOG`.\n",
        opts.processes, opts.flows, opts.cycle, opts.interval, opts.rounds, opts.secs
    );
    let _ = writeln!(
        s,
        "| mode | metric | p50 | p99 | max | n |\n|---|---|---:|---:|---:|---:|"
    );
    let row = |s: &mut String, mode: &str, metric: &str, v: &[f64]| {
        let max = v.iter().copied().fold(f64::NAN, f64::max);
        let _ = writeln!(
            s,
            "| {mode} | {metric} | {} | {} | {} | {} |",
            ms(percentile(v, 50.0)),
            ms(percentile(v, 99.0)),
            ms(max),
            v.len()
        );
    };
    let frame = |f: &[Frame]| f.iter().map(|x| x.frame / 1e3).collect::<Vec<_>>();
    let deriver = |f: &[Frame]| {
        f.iter()
            .filter(|x| x.deriver > 0.0)
            .map(|x| x.deriver / 1e3)
            .collect::<Vec<_>>()
    };
    let modes = [
        ("all on", on),
        ("TREND off", off),
        ("flow histories off", no_flows),
    ];
    for (name, f) in modes {
        row(&mut s, name, "frame: screen thread + draw", &frame(f));
    }
    for (name, f) in modes {
        row(&mut s, name, "rows per snapshot (deriver thread)", &deriver(f));
    }
    let p99 = |f: &[Frame]| percentile(&frame(f), 99.0);
    let _ = writeln!(
        s,
        "\nFrame p99, all on / TREND off (same run): {} / {} = {} (target: on under 16 ms).",
        ms(p99(on)),
        ms(p99(off)),
        ratio(p99(on), p99(off))
    );
    let _ = writeln!(
        s,
        "Frame p99, all on / flow histories off (same run): {} / {} = {}.",
        ms(p99(on)),
        ms(p99(no_flows)),
        ratio(p99(on), p99(no_flows))
    );
    // The histories as the last frame of the on rounds saw them.
    match on.iter().rev().find(|f| f.groups > 0.0) {
        Some(f) => {
            let _ = writeln!(
                s,
                "\nRate histories: {:.0} groups, {:.0} bytes, {:.0} bytes per group \
                 (target: under 1024; two arrays of 60 f32, the table slot and the key's text). \
                 With TREND off: {} groups.",
                f.groups,
                f.group_bytes,
                f.group_bytes / f.groups,
                off.iter().map(|f| f.groups).fold(0.0, f64::max)
            );
        }
        None => {
            let _ = writeln!(
                s,
                "\nRate histories: no group recorded (attribution found no process?)."
            );
        }
    }
    match on.iter().rev().find(|f| f.flows > 0.0) {
        Some(f) => {
            let _ = writeln!(
                s,
                "\nFlow histories: {:.0} flows, {:.0} bytes, {:.0} bytes per flow (target: 256 \
                 or less; the boxed history as the allocator rounds it and the map's slot). With \
                 them off: {} flows.",
                f.flows,
                f.flow_bytes,
                f.flow_bytes / f.flows,
                no_flows.iter().map(|f| f.flows).fold(0.0, f64::max)
            );
        }
        None => {
            let _ = writeln!(s, "\nFlow histories: no flow recorded.");
        }
    }
    s
}
