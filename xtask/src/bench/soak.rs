//! `cargo xtask bench soak [--minutes M] [--rate R]`: memory under churn.
//!
//! In a private network namespace, `ct_churn.py` creates R UDP conntrack
//! entries per second and deletes each 2 s later (so R creates and R
//! destroys per second, about 2R entries alive), for M minutes, while
//! `flowtop --json -t 1 -n -U` (release build) streams the events, its
//! stdout drained. flowtop's VmRSS is sampled every 10 s. The result
//! compares VmRSS after the first minute with VmRSS at the end (target:
//! within 10%). Writes `bench/soak.md`. Needs root; not part of CI.

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::guards::{sleep_checked, ProcGuard, TempDir};
use super::markdown::header;
use super::netns::Netns;
use super::table::{CT_CHURN_PY, CT_INSERT_PY};
use super::{log, require_root, run_cmd};
use crate::cmd;

pub const USAGE: &str = "\
usage: cargo xtask bench soak [--minutes M] [--rate R]

  Creates and destroys R conntrack entries per second (default 5000) for M
  minutes (default 10) in a private namespace while `flowtop --json -t 1 -n -U`
  runs, sampling its VmRSS every 10 s. Passes when VmRSS at the end is within
  10% of VmRSS after the first minute. Needs root. Writes bench/soak.md.";

struct Opts {
    minutes: f64,
    rate: u32,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        minutes: 10.0,
        rate: 5000,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().context("missing value");
        match a.as_str() {
            "--minutes" => o.minutes = val()?.parse().context("--minutes")?,
            "--rate" => o.rate = val()?.parse().context("--rate")?,
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    if o.minutes < 1.5 {
        bail!("--minutes must be at least 1.5 (the reference is the first minute)");
    }
    Ok(o)
}

/// VmRSS in KiB.
fn rss_kib(pid: i32) -> Result<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("flowtop ({pid}) is gone"))?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?)
}

pub fn run(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    require_root("bench soak", "network namespaces, ctnetlink")?;
    let root = cmd::root_dir();
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "flowtop"]))?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let flowtop = target_dir.join("release/flowtop");

    let tmp = TempDir::new()?;
    let ns = Netns::create(&format!("ftsoak-{}", std::process::id()))?;
    let script = tmp.0.join("ct_churn.py");
    fs::write(&script, CT_CHURN_PY)?;
    fs::write(tmp.0.join("ct_insert.py"), CT_INSERT_PY)?;

    let mut ft_cmd = ns.cmd(&flowtop.to_string_lossy());
    ft_cmd
        .args(["--json", "-t", "1", "-n", "-U"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(tmp.0.join("flowtop.err"))?);
    let mut child = ft_cmd.spawn().context("starting flowtop")?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut ft = ProcGuard::new(child, "flowtop");
    let lines = Arc::new(AtomicU64::new(0));
    {
        let lines = Arc::clone(&lines);
        thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let nl = buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                lines.fetch_add(nl, Ordering::Relaxed);
            }
        });
    }
    sleep_checked(Duration::from_secs(2))?;

    let secs = opts.minutes * 60.0;
    log(format!(
        "churn: {} creates + {} destroys per second for {:.0} s; flowtop pid {}",
        opts.rate,
        opts.rate,
        secs,
        ft.pid()
    ));
    let mut churn_cmd = ns.cmd("python3");
    churn_cmd
        .arg(&script)
        .args([format!("{secs}"), opts.rate.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(tmp.0.join("churn.err"))?);
    let mut churn = churn_cmd.spawn().context("starting ct_churn.py")?;
    let mut churn_out = churn.stdout.take().context("churn stdout")?;
    let churn = ProcGuard::new(churn, "ct_churn.py");

    let t0 = Instant::now();
    let mut samples: Vec<(f64, u64, u64, String)> = Vec::new();
    let mut next = 0.0;
    while t0.elapsed().as_secs_f64() < secs {
        if let Some(st) = ft.exited() {
            let err = fs::read_to_string(tmp.0.join("flowtop.err")).unwrap_or_default();
            bail!("flowtop exited during the soak ({st}): {err}");
        }
        let t = t0.elapsed().as_secs_f64();
        if t >= next {
            let rss = rss_kib(ft.pid())?;
            let live = run_cmd(ns.cmd("conntrack").arg("-C"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            let n = lines.load(Ordering::Relaxed);
            log(format!(
                "t={t:.0}s VmRSS {rss} KiB, {n} lines, {live} live entries"
            ));
            samples.push((t, rss, n, live));
            next += 10.0;
        }
        sleep_checked(Duration::from_millis(200))?;
    }
    let rss_end = rss_kib(ft.pid())?;
    samples.push((
        t0.elapsed().as_secs_f64(),
        rss_end,
        lines.load(Ordering::Relaxed),
        String::new(),
    ));
    // The churn ends by itself (deleting what is left): its summary line.
    let mut churn_summary = String::new();
    let _ = churn_out.read_to_string(&mut churn_summary);
    drop(churn);
    let alive = ft.exited().is_none();
    let err = fs::read_to_string(tmp.0.join("flowtop.err")).unwrap_or_default();
    drop(ft);

    let at_1min = samples
        .iter()
        .find(|s| s.0 >= 60.0)
        .map(|s| s.1)
        .context("no sample after the first minute")?;
    let growth = (rss_end as f64 - at_1min as f64) / at_1min as f64 * 100.0;
    let pass = growth.abs() <= 10.0 && alive;
    let mut md = String::new();
    let command = format!(
        "cargo xtask bench soak --minutes {} --rate {}",
        opts.minutes, opts.rate
    );
    md.push_str(&header(
        "flowtop soak: memory under conntrack churn",
        &root,
        &command,
        t0.elapsed(),
    ));
    let _ = writeln!(
        md,
        "\n- flowtop: `flowtop --json -t 1 -n -U` (release), stdout drained\n\
         - churn: `ct_churn.py` creates {r} UDP entries/s over ctnetlink and deletes each 2 s later ({r} destroys/s, ~{l} alive)\n\
         - churn summary (created deleted errors seconds): {}\n",
        churn_summary.trim(),
        r = opts.rate,
        l = opts.rate * 2
    );
    let _ = writeln!(
        md,
        "**VmRSS after minute 1: {} KiB; at the end: {} KiB; change {growth:+.1}% (target within ±10%): {}**\n",
        at_1min,
        rss_end,
        if pass { "PASS" } else { "FAIL" }
    );
    if !alive {
        let _ = writeln!(
            md,
            "flowtop was not running at the end. stderr:\n\n```\n{err}\n```\n"
        );
    }
    let _ = writeln!(
        md,
        "| t (s) | VmRSS (KiB) | JSON lines so far | live entries |\n| ---: | ---: | ---: | ---: |"
    );
    for (t, rss, n, live) in &samples {
        let _ = writeln!(md, "| {t:.0} | {rss} | {n} | {live} |");
    }
    fs::create_dir_all(root.join("bench"))?;
    fs::write(root.join("bench/soak.md"), &md)?;
    print!("{md}");
    if !pass {
        bail!("soak: VmRSS changed {growth:+.1}% between minute 1 and the end");
    }
    Ok(())
}
