//! `cargo xtask bench export`: the cost of `--ipfix` (issue 16).
//!
//! `ct_churn.py` creates and destroys 10 000 UDP conntrack entries per
//! second in a private namespace while two `flowtop --json -U -n -G`
//! run there side by side, one with `--ipfix 127.0.0.1:PORT` and one
//! without (the peer, same run); `ipfix_sink.py` collects on loopback and
//! parses every message. Reported: the CPU of each and the difference,
//! records per datagram, and the records the sink got against those the
//! exporter numbered and against two per destroyed entry.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::guards::{signal_and_wait, sleep_checked, ProcGuard, TempDir};
use super::markdown::{header, Table};
use super::measure::cpu_ticks;
use super::netns::Netns;
use super::table::{CT_CHURN_PY, CT_INSERT_PY};
use super::{build_flowtop, log, repo_root};
use crate::cmd;

const SINK_PY: &str = include_str!("../../scripts/ipfix_sink.py");

pub(crate) const USAGE: &str = "\
usage: cargo xtask bench export [--rate N] [--secs S]

  IPFIX export (issue 16): `flowtop --json -U --ipfix 127.0.0.1:4739` and the
  same without --ipfix side by side in a namespace while ct_churn.py creates
  and destroys N UDP entries per second (default 10 000) for S seconds
  (default 60); a parsing sink on loopback counts datagrams and records.
  Reports the extra CPU of --ipfix (target < 5% of a core), records per
  datagram and loss. Needs root. Writes bench/export.md.";

struct Opts {
    rate: u32,
    secs: u32,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        rate: 10_000,
        secs: 60,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().context("missing value");
        match a.as_str() {
            "--rate" => o.rate = val()?.parse().context("--rate")?,
            "--secs" => o.secs = val()?.parse().context("--secs")?,
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    if o.rate == 0 || o.secs == 0 {
        bail!("--rate and --secs must be positive");
    }
    Ok(o)
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    if !cmd::is_root() {
        bail!("bench export needs root (a network namespace and ctnetlink)");
    }
    let started = Instant::now();
    let root = repo_root();
    let flowtop = build_flowtop(&root)?;
    let tmp = TempDir::new()?;
    let md = measure(&flowtop, &tmp.0, &o)?;
    let command = format!("cargo xtask bench export --rate {} --secs {}", o.rate, o.secs);
    let report = format!(
        "{}{md}",
        header("flowtop IPFIX export", &root, &command, started.elapsed())
    );
    super::write_report(&root, "export.md", &report)
}

fn measure(flowtop: &Path, tmp: &Path, o: &Opts) -> Result<String> {
    const PORT: u16 = 4739;
    let ns = Netns::create(&format!("ftexport-{}", std::process::id())).context("network namespace")?;
    let ip = |args: &[&str]| super::run_cmd(ns.cmd("ip").args(args)).map(|_| ());
    ip(&["link", "set", "lo", "up"])?;
    // Conntrack tracks the namespace once a rule uses it.
    for args in [
        &["add", "table", "inet", "ftbench"][..],
        &[
            "add",
            "chain",
            "inet",
            "ftbench",
            "out",
            "{ type filter hook output priority 0; }",
        ],
        &[
            "add", "rule", "inet", "ftbench", "out", "ct", "state", "new", "accept",
        ],
    ] {
        super::run_cmd(ns.cmd("nft").args(args))?;
    }
    ns.sysctl("net.netfilter.nf_conntrack_acct", "1")?;

    fs::write(tmp.join("ipfix_sink.py"), SINK_PY)?;
    let mut sink = ns.cmd("python3");
    sink.arg(tmp.join("ipfix_sink.py"))
        .arg(PORT.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(tmp.join("sink.err"))?);
    let mut sink = sink.spawn().context("ipfix_sink.py")?;
    let mut sink_out = BufReader::new(sink.stdout.take().context("sink stdout")?);
    let mut ready = String::new();
    sink_out.read_line(&mut ready)?;
    if ready.trim() != "ready" {
        bail!("ipfix_sink.py did not start: {ready:?}");
    }
    let sink = ProcGuard::new(sink, "ipfix_sink.py");

    let spawn = |args: &[&str], err: &str| -> Result<ProcGuard> {
        let mut c = ns.cmd(&flowtop.to_string_lossy());
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(tmp.join(err))?);
        Ok(ProcGuard::new(c.spawn().context("flowtop")?, err))
    };
    let target = format!("127.0.0.1:{PORT}");
    let mut with = spawn(
        &["--json", "-U", "-n", "-G", "-t", "1", "--ipfix", &target],
        "ipfix.err",
    )?;
    let mut peer = spawn(&["--json", "-U", "-n", "-G", "-t", "1"], "peer.err")?;
    sleep_checked(Duration::from_secs(3))?;
    for (p, name) in [(&mut with, "ipfix.err"), (&mut peer, "peer.err")] {
        if let Some(st) = p.exited() {
            bail!(
                "flowtop exited at start ({st}): {}",
                fs::read_to_string(tmp.join(name)).unwrap_or_default()
            );
        }
    }
    fs::write(tmp.join("ct_churn.py"), CT_CHURN_PY)?;
    fs::write(tmp.join("ct_insert.py"), CT_INSERT_PY)?;
    let mut churn = ns.cmd("python3");
    churn
        .arg(tmp.join("ct_churn.py"))
        .args([
            o.secs.to_string(),
            o.rate.to_string(),
            "--live-secs".into(),
            "1".into(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut churn = churn.spawn().context("ct_churn.py")?;
    let mut churn_out = churn.stdout.take().context("churn stdout")?;
    let churn = ProcGuard::new(churn, "ct_churn.py");
    log(format!("churning {} entries/s for {} s", o.rate, o.secs));
    let ticks = |p: &ProcGuard| cpu_ticks(p.pid()).map(|(u, s)| u + s).unwrap_or(0);
    let t0 = Instant::now();
    let (w0, p0) = (ticks(&with), ticks(&peer));
    let mut summary = String::new();
    let _ = churn_out.read_to_string(&mut summary);
    drop(churn);
    // The last destroys are read and exported within a second or two.
    thread::sleep(Duration::from_secs(3));
    let wall = t0.elapsed().as_secs_f64();
    let (w1, p1) = (ticks(&with), ticks(&peer));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let pct = |a: u64, b: u64| b.saturating_sub(a) as f64 / hz / wall * 100.0;
    let (with_pct, peer_pct) = (pct(w0, w1), pct(p0, p1));
    // SIGTERM: the exporter sends what it holds (and the live flows' last records).
    let stopped = signal_and_wait(with.pid(), libc::SIGTERM, Duration::from_secs(10));
    drop(with);
    drop(peer);
    thread::sleep(Duration::from_millis(500));
    signal_and_wait(sink.pid(), libc::SIGTERM, Duration::from_secs(5));
    let mut line = String::new();
    sink_out.read_line(&mut line)?;
    drop(sink);
    let s: serde_json::Value =
        serde_json::from_str(line.trim()).with_context(|| format!("ipfix_sink.py printed {line:?}"))?;
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    let deleted: u64 = summary
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (records, datagrams, exported) = (n("records"), n("datagrams"), n("exported"));
    let lost = exported.saturating_sub(records);
    let extra = with_pct - peer_pct;

    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n`ct_churn.py` created and destroyed {} UDP entries per second for {} s (each 1 s after its \
         creation; \"created deleted errors seconds\": {}) while `flowtop --json -U -n -G -t 1 --ipfix \
         127.0.0.1:{PORT} > /dev/null` and the same without `--ipfix` (the peer) ran side by side in one \
         namespace; `ipfix_sink.py` (Python, a 32 MiB receive buffer) parsed every message on loopback.\n",
        o.rate,
        o.secs,
        summary.trim()
    );
    let mut t = Table::new(&[("process", "---"), ("CPU (% of a core)", "---:")]);
    t.row(["flowtop --json --ipfix".to_owned(), format!("{with_pct:.1}")]);
    t.row(["flowtop --json (peer)".to_owned(), format!("{peer_pct:.1}")]);
    t.row(["--ipfix's extra".to_owned(), format!("{extra:.1}")]);
    t.render(&mut md);
    let per = if datagrams == 0 {
        0.0
    } else {
        records as f64 / datagrams as f64
    };
    let _ = writeln!(
        md,
        "\nExtra CPU < 5% of a core: {}.\n\n\
         | sink | value |\n|---|---:|\n\
         | datagrams | {datagrams} |\n| bytes | {} |\n| records | {records} |\n\
         | records per datagram | {per:.1} |\n| template sets | {} |\n| malformed messages | {} |\n\
         | data sets without a known template | {} |\n\
         | records the exporter numbered | {exported} |\n| lost on the way | {lost} |\n\
         | entries destroyed (2 records each) | {deleted} |\n\n\
         Loss on loopback: {} ({}). Records against 2 per destroyed entry: {records} / {} ({}). \
         The exporting flowtop {} at SIGTERM.",
        if extra < 5.0 { "PASS" } else { "FAIL" },
        n("bytes"),
        n("template_sets"),
        n("malformed"),
        n("no_template"),
        if lost == 0 && n("malformed") == 0 {
            "none"
        } else {
            "SOME"
        },
        if exported > 0 {
            format!("{:.4}%", lost as f64 / exported as f64 * 100.0)
        } else {
            "nothing exported".into()
        },
        2 * deleted,
        if records >= 2 * deleted && deleted > 0 {
            "all there"
        } else {
            "RECORDS MISSING"
        },
        if stopped { "exited" } else { "did not exit in 10 s" }
    );
    Ok(md)
}
