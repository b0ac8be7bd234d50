//! `cargo xtask bench dump`: fills the conntrack table of a private network
//! namespace with N UDP entries and measures, side by side:
//!
//! * `conntrack -L` and `flowtop --once --json -4UnG --no-sysctl`: wall time,
//!   CPU time and peak RSS (from `wait4`'s rusage), median of `--runs`;
//! * steady state over `--cpu-secs` seconds once the table is loaded: the
//!   screen of flowtop (`-4U -t 1 -n -G --no-sysctl`) and of netsniff-ng's
//!   flowtop 0.6.8 (`-4UGn`), each on a pseudo-terminal of its own, and
//!   `flowtop --json -t 1 -4UnG --no-sysctl`, which has no peer (0.6.8 has no
//!   stream) and so carries no ratio.
//!
//! It writes `bench/dump.md` and prints the same to stdout. Everything it
//! changes is undone on every path (see `guards`).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::guards::{sleep_checked, INTERRUPTED};
use super::markdown::{header, list, mib, pct, ratio, secs, Table};
use super::measure::{median, RunStat};
use super::pty::steady_screen;
use super::stream::{steady_flowtop, Steady};
use super::table::{one_size, ColdStart, Fill};
use super::{log, parse_count, require_root, require_tools, NETSNIFF_FLOWTOP};
use super::{prepare, write_report, Prepared};

pub(crate) const USAGE: &str = "\
usage: cargo xtask bench dump [--sizes N[,N..]] [--runs R] [--cpu-secs S] [--legacy-max N]

  --sizes      table sizes (UDP entries), default 100000,1000000 (k/M suffixes allowed)
  --runs       repetitions of the one-shot dumps (median reported), default 3
  --cpu-secs   steady-state measuring window in seconds, default 30
  --legacy-max largest size at which the screens (flowtop's and 0.6.8's) are
               measured side by side, default 100000

Needs root. Writes bench/dump.md.";

/// Hosts 198.51.100.2..=254, ports 1..=65535, one source socket.
const MAX_ENTRIES: u64 = 253 * 65535;

// ---------------------------------------------------------------- options

#[derive(Debug, Clone)]
pub(crate) struct DumpOpts {
    sizes: Vec<u64>,
    runs: usize,
    cpu_secs: f64,
    legacy_max: u64,
}

impl DumpOpts {
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let mut o = DumpOpts {
            sizes: vec![100_000, 1_000_000],
            runs: 3,
            cpu_secs: 30.0,
            legacy_max: 100_000,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let (key, inline) = match a.split_once('=') {
                Some((k, v)) if k.starts_with("--") => (k, Some(v.to_string())),
                _ => (a.as_str(), None),
            };
            let mut value = || -> Result<String> {
                match &inline {
                    Some(v) => Ok(v.clone()),
                    None => it.next().cloned().with_context(|| format!("{key} needs a value")),
                }
            };
            match key {
                "--sizes" => {
                    o.sizes = value()?
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(parse_count)
                        .collect::<Result<_>>()?;
                }
                "--runs" => o.runs = value()?.parse().context("--runs")?,
                "--cpu-secs" => o.cpu_secs = value()?.parse().context("--cpu-secs")?,
                "--legacy-max" => o.legacy_max = parse_count(&value()?)?,
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown option '{other}'\n\n{USAGE}"),
            }
        }
        if o.sizes.is_empty() {
            bail!("--sizes is empty");
        }
        if let Some(&n) = o.sizes.iter().find(|&&n| n == 0 || n > MAX_ENTRIES) {
            bail!("size {n} out of range 1..={MAX_ENTRIES}");
        }
        if o.runs == 0 {
            bail!("--runs must be at least 1");
        }
        if !(o.cpu_secs > 0.0 && o.cpu_secs <= 3600.0) {
            bail!("--cpu-secs must be in (0, 3600]");
        }
        o.sizes.sort_unstable();
        o.sizes.dedup();
        Ok(o)
    }
    /// The command line that reproduces this run, every option spelled out.
    fn command(&self) -> String {
        format!(
            "cargo xtask bench dump --sizes {} --runs {} --cpu-secs {} --legacy-max {}",
            self.sizes
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(","),
            self.runs,
            self.cpu_secs,
            self.legacy_max
        )
    }
}

/// The steady states measured at one size; a failure is reported, not fatal.
struct SteadyRes {
    json: Result<Steady, String>,
    /// flowtop's screen and 0.6.8's, side by side (None above `--legacy-max`
    /// or without 0.6.8).
    screen: Option<Result<Steady, String>>,
    legacy: Option<Result<Steady, String>>,
}

fn keep(r: Result<Steady>) -> Result<Result<Steady, String>> {
    match r {
        Ok(s) => Ok(Ok(s)),
        Err(e) if INTERRUPTED.load(Ordering::SeqCst) => Err(e),
        Err(e) => Ok(Err(format!("{e:#}"))),
    }
}

fn measure_size(
    opts: &DumpOpts,
    n: u64,
    flowtop: &Path,
    tmp: &Path,
    screens: bool,
) -> Result<(ColdStart, SteadyRes)> {
    one_size(n, Fill::Packets, opts.runs, true, flowtop, tmp, |ns, _| {
        log(format!(
            "steady state of flowtop --json -t 1 ({} s window)",
            opts.cpu_secs
        ));
        let json = keep(steady_flowtop(ns, flowtop, n, 0, opts.cpu_secs, tmp))?;
        let (screen, legacy) = if screens {
            log(format!(
                "steady state of flowtop's screen -t 1 ({} s window)",
                opts.cpu_secs
            ));
            let ft = flowtop.to_string_lossy();
            let args = ["-4U", "-t", "1", "-n", "-G", "--no-sysctl"];
            let screen = keep(steady_screen(ns, "flowtop screen", &ft, &args, opts.cpu_secs))?;
            log(format!(
                "steady state of flowtop 0.6.8 -4UGn ({} s window)",
                opts.cpu_secs
            ));
            let legacy = keep(steady_screen(
                ns,
                "flowtop 0.6.8",
                NETSNIFF_FLOWTOP,
                &["-4UGn"],
                opts.cpu_secs,
            ))?;
            (Some(screen), Some(legacy))
        } else {
            (None, None)
        };
        Ok(SteadyRes { json, screen, legacy })
    })
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let opts = DumpOpts::parse(args)?;
    require_root("bench dump", "network namespaces, sysctls")?;
    require_tools(&["ip", "nft", "conntrack", "python3", "sysctl"])?;
    let legacy = Path::new(NETSNIFF_FLOWTOP).is_file();
    if !legacy {
        log(format!(
            "{NETSNIFF_FLOWTOP} missing: no screen comparison with flowtop 0.6.8 (apt-get install netsniff-ng)"
        ));
    }
    let Prepared {
        root,
        flowtop,
        tmp,
        started,
    } = prepare()?;
    let mut results = Vec::new();
    for (i, &n) in opts.sizes.iter().enumerate() {
        if i > 0 {
            // Let the kernel free the previous namespace's entries.
            sleep_checked(Duration::from_secs(2))?;
        }
        log(format!("=== {n} flows ==="));
        let screens = legacy && n <= opts.legacy_max;
        results.push(measure_size(&opts, n, &flowtop, &tmp.0, screens)?);
    }
    let report = render(&opts, &root, &results, started.elapsed());
    write_report(&root, "dump.md", &report)
}

// ---------------------------------------------------------------- report

/// A metric measured for the peer and for flowtop, and how to show it.
type MetricPair<'a> = (&'a str, &'a [f64], &'a [f64], fn(f64) -> String);

/// "0.42× PEER", or "—".
fn vs(a: f64, b: f64, peer: &str) -> String {
    match ratio(a, b).as_str() {
        "—" => "—".into(),
        r => format!("{r} {peer}"),
    }
}

fn col(v: &[RunStat], f: fn(&RunStat) -> f64) -> Vec<f64> {
    v.iter().map(f).collect()
}

fn render(opts: &DumpOpts, root: &Path, results: &[(ColdStart, SteadyRes)], took: Duration) -> String {
    let mut o = header("flowtop dump benchmark", root, &opts.command(), took);
    o.push_str(
        "\nSetup: a fresh network namespace per size; N UDP entries (one socket, 198.51.100.1 → \
198.51.100.2-254, distinct ports; acct on, UDP timeout 3600 s). One-shot: `conntrack -L > /dev/null` and \
`flowtop --once --json -4UnG --no-sysctl > /dev/null`, interleaved after one untimed pass of each, wall time / \
CPU (user+sys) / peak RSS from wait4. Peak RSS per flow = (peak RSS at N − median peak RSS on the empty \
table) / N. Steady state: `flowtop --json -t 1 -4UnG --no-sysctl` (stdout drained by a pipe); the screens, \
flowtop's `-4U -t 1 -n -G --no-sysctl` and 0.6.8's `-4UGn` (it refreshes every second), each on a 200×50 pty \
of its own (output drained), after a warm-up of at least 10 s that ends when the RSS has not grown for 3 s. \
CPU from /proc/PID/stat utime+stime over the window, VmHWM/VmRSS from /proc/PID/status at its end; one run \
each. Ratios only between like for like: `--once --json` vs `conntrack -L` (both dump the table once), \
flowtop's screen vs 0.6.8's screen; `--json -t 1` has no peer (0.6.8 has no stream), so no ratio. A \
CPU-bound process only gets what the rest of the machine leaves over (\"rest of the machine\").\n",
    );
    let rest: Vec<f64> = results
        .iter()
        .flat_map(|(_, st)| [Some(&st.json), st.screen.as_ref(), st.legacy.as_ref()])
        .filter_map(|s| s.and_then(|s| s.as_ref().ok()).map(|s| s.other_pct))
        .collect();
    let rest = median(&rest);
    if rest.is_finite() {
        let _ = writeln!(
            o,
            "\nThe rest of the machine used {rest:.0} % of a core in the median steady-state window{}.",
            if rest >= 10.0 {
                ": the machine was shared, so CPU figures are indicative and the ratios of the same run are \
                 what count"
            } else {
                ""
            }
        );
    }

    let mut verdicts = Vec::new();
    let mut screens_compared = false;
    for (r, st) in results {
        let n = r.n;
        let _ = writeln!(o, "\n## {n} flows\n");
        let _ = writeln!(o, "- fill: {} (conntrack -C = {})", secs(r.fill_s), r.counted);
        if !r.changed.is_empty() {
            let _ = writeln!(
                o,
                "- raised for this size (restored afterwards): {}",
                r.changed.join("; ")
            );
        }
        let flag = if r.once_lines == r.counted {
            ""
        } else {
            " **≠ table size**"
        };
        let _ = writeln!(
            o,
            "- flowtop --once --json printed {} snapshot lines{flag}",
            r.once_lines
        );
        if let Some(s) = r.conntrack_shown {
            let _ = writeln!(o, "- conntrack -L showed {s} entries");
        }
        o.push('\n');
        let mut t = Table::new(&[
            ("tool", "---"),
            ("metric", "---"),
            ("median", "---:"),
            ("runs", "---"),
            ("ratio vs peer", "---"),
        ]);
        let (ct_wall, ft_wall) = (col(&r.conntrack, |s| s.wall_s), col(&r.flowtop, |s| s.wall_s));
        let (ct_cpu, ft_cpu) = (col(&r.conntrack, |s| s.cpu_s), col(&r.flowtop, |s| s.cpu_s));
        let (ct_user, ft_user) = (col(&r.conntrack, |s| s.user_s), col(&r.flowtop, |s| s.user_s));
        let (ct_sys, ft_sys) = (col(&r.conntrack, |s| s.sys_s), col(&r.flowtop, |s| s.sys_s));
        let rss: fn(&RunStat) -> f64 = |s| s.maxrss_kib as f64;
        let (ct_rss, ft_rss) = (col(&r.conntrack, rss), col(&r.flowtop, rss));
        let ct_rss0 = median(&col(&r.empty_conntrack, rss));
        let ft_rss0 = median(&col(&r.empty_flowtop, rss));
        let per_flow = |kib: f64, base: f64| (kib - base) * 1024.0 / n as f64;
        const CT: &str = "conntrack -L";
        const FT: &str = "flowtop --once --json";
        // One pair of rows per metric: the peer, then flowtop with its ratio.
        let pairs: [MetricPair<'_>; 5] = [
            ("wall time", &ct_wall, &ft_wall, secs),
            ("CPU time (user+sys)", &ct_cpu, &ft_cpu, secs),
            ("CPU user", &ct_user, &ft_user, secs),
            ("CPU sys", &ct_sys, &ft_sys, secs),
            ("peak RSS", &ct_rss, &ft_rss, mib),
        ];
        for (metric, ct, ft, fmt) in pairs {
            t.row([
                CT.into(),
                metric.into(),
                fmt(median(ct)),
                list(ct, fmt),
                "—".to_string(),
            ]);
            t.row([
                FT.into(),
                metric.into(),
                fmt(median(ft)),
                list(ft, fmt),
                vs(median(ft), median(ct), CT),
            ]);
        }
        t.row([CT, "peak RSS, empty table", &mib(ct_rss0), "—", "—"]);
        t.row([FT, "peak RSS, empty table", &mib(ft_rss0), "—", "—"]);
        let ct_pf: Vec<f64> = ct_rss.iter().map(|&k| per_flow(k, ct_rss0)).collect();
        let ft_pf: Vec<f64> = ft_rss.iter().map(|&k| per_flow(k, ft_rss0)).collect();
        let bytes = |v: f64| format!("{:.0} B", if v.abs() < 0.5 { 0.0 } else { v });
        t.row([
            CT.into(),
            "peak RSS per flow".into(),
            bytes(median(&ct_pf)),
            list(&ct_pf, bytes),
            "—".to_string(),
        ]);
        t.row([
            FT.into(),
            "peak RSS per flow".into(),
            bytes(median(&ft_pf)),
            list(&ft_pf, bytes),
            "— (conntrack -L streams: not like for like)".to_string(),
        ]);
        let wall_ratio = median(&ft_wall) / median(&ct_wall);
        verdicts.push(format!(
            "(a) {n} flows: `--once --json` wall time {} vs `conntrack -L` {}: ratio {wall_ratio:.2} (target ≤ 1.00): **{}**",
            secs(median(&ft_wall)),
            secs(median(&ct_wall)),
            if wall_ratio <= 1.0 { "PASS" } else { "FAIL" }
        ));

        const SJ: &str = "flowtop --json -t 1";
        const SS: &str = "flowtop screen -t 1";
        const SO: &str = "flowtop 0.6.8 -4UGn";
        let ok = |s: Option<&Result<Steady, String>>| s.and_then(|r| r.as_ref().ok()).cloned();
        let json = ok(Some(&st.json));
        let screen = ok(st.screen.as_ref());
        let old = ok(st.legacy.as_ref());
        let mut notes = Vec::new();
        for (label, s) in [
            (SJ, Some(&st.json)),
            (SS, st.screen.as_ref()),
            (SO, st.legacy.as_ref()),
        ] {
            match s {
                Some(Err(e)) => notes.push(format!("{label}: steady state failed: {e}")),
                Some(Ok(s)) if !s.note.is_empty() => notes.push(format!("{label}: {}", s.note)),
                _ => {}
            }
        }
        let split = |s: &Steady| {
            format!(
                "{:.1} % / {:.1} % (rest of the machine: {:.0} % of a core)",
                s.user_pct, s.sys_pct, s.other_pct
            )
        };
        let window = |s: &Steady| format!("1 ({:.0} s window after {:.0} s warm-up)", s.window_s, s.warmup_s);
        let no_peer = "— (no peer: 0.6.8 has no stream)";
        if let Some(s) = &json {
            t.row([
                SJ.into(),
                "steady CPU (% of one core)".into(),
                pct(s.cpu_pct),
                window(s),
                no_peer.to_string(),
            ]);
            t.row([
                SJ.into(),
                "steady CPU user / sys".into(),
                split(s),
                "1".into(),
                no_peer.to_string(),
            ]);
            t.row([
                SJ.into(),
                "steady VmHWM".into(),
                mib(s.hwm_kib as f64),
                "1".into(),
                no_peer.to_string(),
            ]);
            t.row([
                SJ.into(),
                "steady VmRSS".into(),
                mib(s.rss_kib as f64),
                "1".into(),
                no_peer.to_string(),
            ]);
        }
        // The screens: 0.6.8 first, then flowtop's with its ratio to it.
        for (label, s) in [(SO, &old), (SS, &screen)] {
            let Some(s) = s else { continue };
            let r = |a: f64, f: fn(&Steady) -> f64| match (&old, label == SS) {
                (Some(o), true) => vs(a, f(o), "0.6.8 screen"),
                _ => "—".to_string(),
            };
            t.row([
                label.into(),
                "steady CPU (% of one core)".into(),
                pct(s.cpu_pct),
                window(s),
                r(s.cpu_pct, |o| o.cpu_pct),
            ]);
            t.row([
                label.into(),
                "steady CPU user / sys".into(),
                split(s),
                "1".into(),
                "—".to_string(),
            ]);
            t.row([
                label.into(),
                "steady VmHWM".into(),
                mib(s.hwm_kib as f64),
                "1".into(),
                r(s.hwm_kib as f64, |o| o.hwm_kib as f64),
            ]);
            t.row([
                label.into(),
                "steady VmRSS".into(),
                mib(s.rss_kib as f64),
                "1".into(),
                r(s.rss_kib as f64, |o| o.rss_kib as f64),
            ]);
        }
        t.render(&mut o);
        for note in notes {
            let _ = writeln!(o, "\nNote: {note}");
        }
        match (&screen, &old) {
            (Some(s), Some(p)) => {
                screens_compared = true;
                let cr = s.cpu_pct / p.cpu_pct;
                let at = if n == 100_000 {
                    String::new()
                } else {
                    " (target is stated at 100000 flows)".into()
                };
                verdicts.push(format!(
                    "(b) {n} flows{at}: steady CPU of the screen {:.1} % vs 0.6.8's screen {:.1} %: ratio {cr:.2} (target < 0.33): **{}**",
                    s.cpu_pct,
                    p.cpu_pct,
                    if cr < 1.0 / 3.0 { "PASS" } else { "FAIL" }
                ));
                let rr = s.rss_kib as f64 / p.rss_kib as f64;
                let rh = s.hwm_kib as f64 / p.hwm_kib as f64;
                let pf = |x: f64| if x < 0.5 { "PASS" } else { "FAIL" };
                verdicts.push(format!(
                    "(c) {n} flows: memory of the screen VmRSS {} vs 0.6.8's {}: ratio {rr:.2} (target < 0.50): **{}**; \
peak VmHWM {} vs {}: ratio {rh:.2}: **{}**",
                    mib(s.rss_kib as f64),
                    mib(p.rss_kib as f64),
                    pf(rr),
                    mib(s.hwm_kib as f64),
                    mib(p.hwm_kib as f64),
                    pf(rh)
                ));
            }
            _ if st.screen.is_some() => verdicts.push(format!(
                "(b), (c) {n} flows: not judged: the two screens were not both measured (see the notes above)"
            )),
            _ => {}
        }
    }
    o.push_str("\n## Verdicts\n\n");
    if !screens_compared {
        verdicts.push(
            "(b), (c): no screen-vs-screen comparison with flowtop 0.6.8 was made; `--json` has no peer there, so it is not judged against 0.6.8"
                .into(),
        );
    }
    for v in verdicts {
        let _ = writeln!(o, "- {v}");
    }
    o
}
