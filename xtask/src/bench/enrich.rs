//! `cargo xtask bench enrich`: what reverse DNS and GeoIP cost the engine.
//!
//! A private namespace gets N UDP conntrack entries (inserted over
//! ctnetlink, no packets) from one local address to D public destinations,
//! a GeoIP City database generated for those destinations, and a PTR server
//! on the namespace's loopback named by `/etc/netns/NS/resolv.conf`. Then,
//! interleaved, `--runs` times each:
//!
//! * `flowtop --json -n -G` (enrichment off) and `flowtop --json` with
//!   GeoIP and DNS on: the time until every entry's snapshot line is out
//!   (ingestion of the full table) and its CPU time by then; with DNS on,
//!   also the time until every flow's destination name has been printed
//!   (in its snapshot line or in an `update`);
//! * the cost over a window that holds the lookups: each round runs GeoIP +
//!   DNS first until every name is out, and the other variants at least as
//!   long; CPU of every thread over that window, and the PTR answers sent in
//!   it (an nft counter on the namespace's output hook, UDP from port 53);
//! * `flowtop --once --json` both ways (with DNS on it waits for names);
//! * lookups per second of the GeoIP database with and without flowtop's
//!   cache (`flowtop/examples/geoip_bench.rs`).
//!
//! Writes `bench/enrich.md`. Everything it creates is removed on every path
//! (namespace, /etc/netns/NS, processes, global sysctls), as in `bench dump`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::guards::{sleep_checked, ProcGuard, SysctlGuard, TempDir};
use super::markdown::header;
use super::measure::{clk_tck, cpu_ticks, median, thread_ticks, timed_run, RunStat};
use super::netns::{EtcNetns, Netns};
use super::table::CT_INSERT_PY;
use super::write_report;
use super::{log, run_cmd};
use crate::cmd;

pub const USAGE: &str = "\
usage: cargo xtask bench enrich [--flows N] [--dsts D] [--runs R]

  --flows  conntrack entries, default 100000
  --dsts   distinct public destinations (each with a PTR name), default 5000
  --runs   repetitions, interleaved (median reported), default 5

Needs root. Writes bench/enrich.md.";

/// The destinations: DST_BASE, DST_BASE + 1, ... (inserted over ctnetlink
/// only: no packet is ever sent to them).
const DST_BASE: [u8; 4] = [5, 10, 0, 1];
const SRC: &str = "198.51.100.1";

struct Opts {
    flows: u64,
    dsts: u32,
    runs: usize,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts> {
        let mut o = Opts {
            flows: 100_000,
            dsts: 5_000,
            runs: 5,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().with_context(|| format!("{a} needs a value\n\n{USAGE}"));
            match a.as_str() {
                "--flows" => o.flows = val()?.parse()?,
                "--dsts" => o.dsts = val()?.parse()?,
                "--runs" => o.runs = val()?.parse()?,
                other => bail!("unknown option '{other}'\n\n{USAGE}"),
            }
        }
        if o.dsts == 0 || o.dsts > 60_000 || o.runs == 0 {
            bail!("--dsts must be 1..=60000 and --runs at least 1");
        }
        Ok(o)
    }
}

fn dst(i: u32) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from_be_bytes(DST_BASE) + i)
}

/// What one streaming run measured.
#[derive(Debug, Clone, Copy, Default)]
struct StreamRun {
    /// Seconds from start until every snapshot line was out.
    full_s: f64,
    /// CPU seconds of flowtop by then.
    full_cpu_s: f64,
    /// Of which the resolver's threads (`flowtop-dns`); the rest is the
    /// ingestion itself (engine, sources, output).
    dns_cpu_s: f64,
    /// Seconds until every flow's destination name was out (DNS on only).
    named_s: Option<f64>,
    /// Flows whose name was printed (DNS on only).
    named: u64,
    /// The window the enrichment cost is measured over: from start until
    /// every destination name is out (DNS on) and at least `until_s`.
    window_s: f64,
    /// CPU seconds of flowtop over the window, and of its resolver's threads.
    window_cpu_s: f64,
    window_dns_cpu_s: f64,
    /// DNS answers the PTR server sent during the window (nft counter).
    answers: u64,
}

/// Runs `flowtop --json` inside the namespace (through `ip netns exec`, so
/// the namespace's resolv.conf applies) until the table is out and, when
/// `want_names`, until every destination name is out or `limit` passed, and
/// in any case for at least `until_s` seconds: the window every variant of a
/// round is measured over, long enough to hold the lookups.
fn stream_run(
    ns: &Netns,
    flowtop: &Path,
    extra: &[&str],
    n: u64,
    want_names: bool,
    until_s: f64,
) -> Result<StreamRun> {
    let answers0 = ptr_answers(ns)?;
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.name])
        .arg(flowtop)
        .args(["--json", "-4U", "--no-sysctl", "--attribution", "off"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let t0 = Instant::now();
    let mut child = c.spawn().context("starting flowtop --json")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut guard = ProcGuard::new(child, "flowtop --json");
    let snapshots = Arc::new(AtomicU64::new(0));
    let named = Arc::new(Mutex::new(HashSet::<u64>::new()));
    let (s2, n2) = (snapshots.clone(), named.clone());
    let reader = thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 20, stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.starts_with(r#"{"event":"snapshot""#) {
                s2.fetch_add(1, Ordering::Relaxed);
            }
            if line.contains(r#""dst_host":""#) {
                // The id and the tuple's source port identify a flow here.
                let id = field_u64(&line, r#""id":"#).unwrap_or(0);
                let sport = field_u64(&line, r#""sport":"#).unwrap_or(0);
                n2.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id << 16 | sport);
            }
        }
    });
    let limit = Duration::from_secs(120);
    let mut out = StreamRun::default();
    let tck = clk_tck();
    loop {
        sleep_checked(Duration::from_millis(5))?;
        if let Some(st) = guard.exited() {
            bail!("flowtop --json {extra:?} exited early: {st}");
        }
        if out.full_s == 0.0 && snapshots.load(Ordering::Relaxed) >= n {
            out.full_s = t0.elapsed().as_secs_f64();
            let (u, s) = cpu_ticks(guard.pid())?;
            out.full_cpu_s = (u + s) as f64 / tck;
            out.dns_cpu_s = thread_ticks(guard.pid(), "flowtop-dns") as f64 / tck;
        }
        let done_names = !want_names || named.lock().unwrap_or_else(|p| p.into_inner()).len() as u64 >= n;
        if out.full_s > 0.0 && done_names {
            if want_names && out.named_s.is_none() {
                out.named_s = Some(t0.elapsed().as_secs_f64());
            }
            if t0.elapsed().as_secs_f64() >= until_s {
                break;
            }
        }
        if t0.elapsed() > limit {
            if out.full_s == 0.0 {
                bail!(
                    "flowtop --json {extra:?} printed {} of {n} snapshot lines in {limit:?}",
                    snapshots.load(Ordering::Relaxed)
                );
            }
            break; // names incomplete: reported as such
        }
    }
    out.window_s = t0.elapsed().as_secs_f64();
    let (u, s) = cpu_ticks(guard.pid())?;
    out.window_cpu_s = (u + s) as f64 / tck;
    out.window_dns_cpu_s = thread_ticks(guard.pid(), "flowtop-dns") as f64 / tck;
    out.answers = ptr_answers(ns)? - answers0;
    out.named = named.lock().unwrap_or_else(|p| p.into_inner()).len() as u64;
    drop(guard);
    let _ = reader.join();
    Ok(out)
}

/// The nft table that counts the PTR server's answers: every UDP datagram
/// from port 53 leaving through the namespace's output hook.
const COUNTER_TABLE: &str = "ftbench_dns";

fn count_ptr_answers(ns: &Netns) -> Result<()> {
    let nft = |args: &[&str]| run_cmd(ns.cmd("nft").args(args)).map(|_| ());
    nft(&["add", "table", "inet", COUNTER_TABLE])?;
    nft(&["add", "counter", "inet", COUNTER_TABLE, "answers"])?;
    nft(&[
        "add",
        "chain",
        "inet",
        COUNTER_TABLE,
        "out",
        "{ type filter hook output priority 0; }",
    ])?;
    nft(&[
        "add",
        "rule",
        "inet",
        COUNTER_TABLE,
        "out",
        "udp",
        "sport",
        "53",
        "counter",
        "name",
        "answers",
    ])
}

/// Answers counted so far ("packets N" of the named counter).
fn ptr_answers(ns: &Netns) -> Result<u64> {
    let out = run_cmd(
        ns.cmd("nft")
            .args(["list", "counter", "inet", COUNTER_TABLE, "answers"]),
    )?;
    let mut words = out.split_whitespace();
    words
        .by_ref()
        .find(|w| *w == "packets")
        .and_then(|_| words.next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no packet count in `nft list counter`: {}", out.trim()))
}

fn field_u64(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

pub fn run(args: &[String]) -> Result<()> {
    let opts = Opts::parse(args)?;
    let root = cmd::root_dir();
    let mut build = cmd::cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "flowtop",
        "--bin",
        "flowtop",
        "--example",
        "make_mmdb",
        "--example",
        "ptr_server",
        "--example",
        "geoip_bench",
    ]);
    cmd::run(&mut build)?;
    let bin = root.join("target/release");
    let flowtop = bin.join("flowtop");
    let tmp = TempDir::new()?;
    let started = Instant::now();

    // A City database: one network per /24 of the destinations, countries
    // and cities varied so lookups return different records.
    let geo_dir = tmp.0.join("geoip");
    fs::create_dir_all(&geo_dir)?;
    let countries = [
        ("DE", "Berlin"),
        ("NZ", "Wellington"),
        ("BR", "Recife"),
        ("JP", "Osaka"),
    ];
    let mut mk = Command::new(bin.join("examples/make_mmdb"));
    mk.args(["--type", "city"])
        .arg(geo_dir.join("GeoLite2-City.mmdb"));
    for (k, i) in (0..opts.dsts).step_by(256).enumerate() {
        let net = dst(i);
        let o = net.octets();
        let (cc, city) = countries[k % countries.len()];
        mk.arg(format!("{}.{}.{}.0/24={cc},{city}", o[0], o[1], o[2]));
    }
    run_cmd(&mut mk)?;

    let mut sysctls = SysctlGuard::new();
    sysctls.raise_for_entries(opts.flows)?;
    let ns = Netns::create(&format!("ftbench-{}", std::process::id()))?;
    run_cmd(ns.cmd("ip").args(["link", "set", "lo", "up"]))?;
    ns.sysctl("net.netfilter.nf_conntrack_acct", "1")?;
    count_ptr_answers(&ns)?;
    let _resolv = EtcNetns::create(
        &ns.name,
        &[("resolv.conf", "nameserver 127.0.0.1\noptions timeout:2\n")],
    )?;

    // The PTR server: every destination has a name; the source has none.
    let names_file = tmp.0.join("ptr.txt");
    let mut names = String::new();
    for i in 0..opts.dsts {
        let _ = writeln!(names, "{}=host-{i}.bench.example", dst(i));
    }
    fs::write(&names_file, names)?;
    let mut srv = ns.cmd(&bin.join("examples/ptr_server").to_string_lossy());
    srv.args(["--listen", "127.0.0.1:53", "--ptr-file"])
        .arg(&names_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(tmp.0.join("ptr.err"))?);
    let _server = ProcGuard::new(srv.spawn().context("starting ptr_server")?, "ptr_server");
    thread::sleep(Duration::from_millis(300));

    log(format!(
        "inserting {} entries to {} destinations",
        opts.flows, opts.dsts
    ));
    let script = tmp.0.join("ct_insert.py");
    fs::write(&script, CT_INSERT_PY)?;
    let base = dst(0).to_string();
    let fill = run_cmd(ns.cmd("python3").arg(&script).args([
        &opts.flows.to_string(),
        "--dsts",
        &opts.dsts.to_string(),
        "--dst-base",
        &base,
        "--src",
        SRC,
    ]))?;
    log(format!("ct_insert: {}", fill.trim()));

    let geo_arg = geo_dir.to_string_lossy().into_owned();
    let on: Vec<&str> = vec!["--geoip-dir", &geo_arg];
    let off: Vec<&str> = vec!["-n", "-G"];
    let geo_only: Vec<&str> = vec!["-n", "--geoip-dir", &geo_arg];
    let dns_only: Vec<&str> = vec!["-G"];
    let mut runs_off = Vec::new();
    let mut runs_on = Vec::new();
    let mut runs_geo = Vec::new();
    let mut runs_dns = Vec::new();
    let mut once_off = Vec::new();
    let mut once_on = Vec::new();
    let timeout = Duration::from_secs(120);
    for r in 0..opts.runs {
        log(format!("run {}/{}", r + 1, opts.runs));
        // DNS and GeoIP on first: its window (until every destination name
        // is printed) is the one the other variants of the round run for,
        // so every CPU figure below covers the same span with the lookups in it.
        let on_run = stream_run(&ns, &flowtop, &on, opts.flows, true, 0.0)?;
        let w = on_run.window_s;
        runs_on.push(on_run);
        runs_off.push(stream_run(&ns, &flowtop, &off, opts.flows, false, w)?);
        runs_geo.push(stream_run(&ns, &flowtop, &geo_only, opts.flows, false, w)?);
        runs_dns.push(stream_run(&ns, &flowtop, &dns_only, opts.flows, true, w)?);
        let once = |extra: &[&str]| {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name])
                .arg(&flowtop)
                .args(["--once", "--json", "-4U", "--no-sysctl", "--attribution", "off"])
                .args(extra);
            timed_run(&mut c, &tmp.0.join("once.err"), timeout)
        };
        once_off.push(once(&off)?);
        once_on.push(once(&on)?);
    }
    drop(_server);
    drop(ns);
    drop(sysctls);

    log("GeoIP lookup rates (examples/geoip_bench, 300 000 networks)");
    let geo_cost = run_cmd(Command::new(bin.join("examples/geoip_bench")).arg("300000"))
        .unwrap_or_else(|e| format!("geoip_bench failed: {e:#}"));

    let runs = Runs {
        off: runs_off,
        on: runs_on,
        geo: runs_geo,
        dns: runs_dns,
        once_off,
        once_on,
    };
    let report = render(&opts, &root, &runs, &geo_cost, started.elapsed());
    write_report(&root, "enrich.md", &report)
}

struct Runs {
    off: Vec<StreamRun>,
    on: Vec<StreamRun>,
    geo: Vec<StreamRun>,
    dns: Vec<StreamRun>,
    once_off: Vec<RunStat>,
    once_on: Vec<RunStat>,
}

fn render(opts: &Opts, root: &Path, runs: &Runs, geo_cost: &str, took: Duration) -> String {
    let (off, on, once_off, once_on) = (&runs.off, &runs.on, &runs.once_off, &runs.once_on);
    let med = |v: Vec<f64>| median(&v);
    let full_geo = med(runs.geo.iter().map(|r| r.full_s).collect());
    let full_dns = med(runs.dns.iter().map(|r| r.full_s).collect());
    let cpu_geo = med(runs.geo.iter().map(|r| r.full_cpu_s).collect());
    let cpu_dns = med(runs.dns.iter().map(|r| r.full_cpu_s).collect());
    let full_off = med(off.iter().map(|r| r.full_s).collect());
    let full_on = med(on.iter().map(|r| r.full_s).collect());
    let cpu_off = med(off.iter().map(|r| r.full_cpu_s).collect());
    let cpu_on = med(on.iter().map(|r| r.full_cpu_s).collect());
    let ingest = |v: &[StreamRun]| med(v.iter().map(|r| r.full_cpu_s - r.dns_cpu_s).collect());
    let (ing_off, ing_on, ing_geo, ing_dns) = (ingest(off), ingest(on), ingest(&runs.geo), ingest(&runs.dns));
    let win = |v: &[StreamRun]| med(v.iter().map(|r| r.window_s).collect());
    let win_cpu = |v: &[StreamRun]| med(v.iter().map(|r| r.window_cpu_s).collect());
    let win_dns = |v: &[StreamRun]| med(v.iter().map(|r| r.window_dns_cpu_s).collect());
    let answers = |v: &[StreamRun]| -> (u64, u64) {
        (
            v.iter().map(|r| r.answers).min().unwrap_or(0),
            v.iter().map(|r| r.answers).max().unwrap_or(0),
        )
    };
    let named = med(on.iter().filter_map(|r| r.named_s).collect());
    let named_min = on.iter().map(|r| r.named).min().unwrap_or(0);
    let o_off = med(once_off.iter().map(|r| r.wall_s).collect());
    let o_on = med(once_on.iter().map(|r| r.wall_s).collect());
    let n = opts.flows as f64;
    let cost = ing_on / ing_off - 1.0;
    let command = format!(
        "cargo xtask bench enrich --flows {} --dsts {} --runs {}",
        opts.flows, opts.dsts, opts.runs
    );
    let mut s = header("flowtop enrichment cost", root, &command, took);
    let _ = writeln!(
        s,
        "\n{} UDP entries to {} public destinations (inserted over ctnetlink), a generated GeoIP City \
         database with one network per /24, a PTR server on the namespace's loopback naming every \
         destination. Medians of {} interleaved runs; `--attribution off` in both so only enrichment differs.\n",
        opts.flows, opts.dsts, opts.runs
    );
    let _ = writeln!(
        s,
        "| measure | enrichment off (`-n -G`) | GeoIP + DNS on | on/off |"
    );
    let _ = writeln!(s, "|---|---|---|---|");
    let _ = writeln!(
        s,
        "| `--json`: time to the full table | {full_off:.3} s | {full_on:.3} s | {:.2}x |",
        full_on / full_off
    );
    let _ = writeln!(
        s,
        "| `--json`: ingestion rate | {:.0} flows/s | {:.0} flows/s | {:.2}x |",
        n / full_off,
        n / full_on,
        full_off / full_on
    );
    let _ = writeln!(
        s,
        "| `--json`: CPU time to the full table | {cpu_off:.3} s | {cpu_on:.3} s | {:.2}x |",
        cpu_on / cpu_off
    );
    let _ = writeln!(
        s,
        "| ingestion CPU to the full table (every thread but the resolver's) | {ing_off:.3} s | {ing_on:.3} s | {:.2}x |",
        ing_on / ing_off
    );
    let _ = writeln!(
        s,
        "| ingestion throughput per CPU second | {:.0} flows/s | {:.0} flows/s | {:.2}x |",
        n / ing_off,
        n / ing_on,
        ing_off / ing_on
    );
    let _ = writeln!(
        s,
        "| ingestion CPU with GeoIP alone (`-n`) / DNS alone (`-G`) | | {ing_geo:.3} s / {ing_dns:.3} s | {:.2}x / {:.2}x |",
        ing_geo / ing_off,
        ing_dns / ing_off
    );
    let _ = writeln!(
        s,
        "| of which GeoIP alone (`-n`): time / CPU to the full table | | {full_geo:.3} s / {cpu_geo:.3} s | {:.2}x / {:.2}x |",
        full_geo / full_off,
        cpu_geo / cpu_off
    );
    let _ = writeln!(
        s,
        "| of which DNS alone (`-G`): time / CPU to the full table | | {full_dns:.3} s / {cpu_dns:.3} s | {:.2}x / {:.2}x |",
        full_dns / full_off,
        cpu_dns / cpu_off
    );
    let _ = writeln!(
        s,
        "| `--json`: every destination name printed | - | {named:.3} s ({named_min} of {} flows in the worst run) | - |",
        opts.flows
    );
    let _ = writeln!(
        s,
        "| `--once --json` (waits for names when DNS is on) | {o_off:.3} s | {o_on:.3} s | {:.2}x |",
        o_on / o_off
    );
    let (a_on, a_off, a_geo, a_dns) = (answers(on), answers(off), answers(&runs.geo), answers(&runs.dns));
    let span = |(lo, hi): (u64, u64)| {
        if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}–{hi}")
        }
    };
    let _ = writeln!(
        s,
        "\nThe window with the lookups in it: each round runs GeoIP + DNS first, from start until every \
         destination name is printed; the other variants of the round run at least as long (DNS alone \
         also until its names are out). CPU of the whole process (every thread) over that window; PTR \
         answers counted by an nft counter on the namespace's output hook (UDP from port 53) between the \
         start and the end of the window.\n"
    );
    let _ = writeln!(
        s,
        "| over the window | off (`-n -G`) | GeoIP + DNS on | GeoIP alone (`-n`) | DNS alone (`-G`) |\n|---|---:|---:|---:|---:|"
    );
    let _ = writeln!(
        s,
        "| window length | {:.3} s | {:.3} s | {:.3} s | {:.3} s |",
        win(off),
        win(on),
        win(&runs.geo),
        win(&runs.dns)
    );
    let _ = writeln!(
        s,
        "| PTR answers sent in the window (min–max of the runs) | {} | {} | {} | {} |",
        span(a_off),
        span(a_on),
        span(a_geo),
        span(a_dns)
    );
    let _ = writeln!(
        s,
        "| CPU of flowtop over the window | {:.3} s | {:.3} s ({:.2}x) | {:.3} s ({:.2}x) | {:.3} s ({:.2}x) |",
        win_cpu(off),
        win_cpu(on),
        win_cpu(on) / win_cpu(off),
        win_cpu(&runs.geo),
        win_cpu(&runs.geo) / win_cpu(off),
        win_cpu(&runs.dns),
        win_cpu(&runs.dns) / win_cpu(off)
    );
    let _ = writeln!(
        s,
        "| of which the resolver's threads (`flowtop-dns`) | {:.3} s | {:.3} s | {:.3} s | {:.3} s |",
        win_dns(off),
        win_dns(on),
        win_dns(&runs.geo),
        win_dns(&runs.dns)
    );
    let window_cost = win_cpu(on) / win_cpu(off) - 1.0;
    // The target is judged over the window that holds the lookups: the span
    // to the full table ends before the resolver has answered anything.
    let answered = med(on.iter().map(|r| r.answers as f64).collect());
    let verdict = if answered < 1.0 {
        "not judged: no PTR answer in the window"
    } else if window_cost < 0.10 {
        "met"
    } else {
        "NOT met"
    };
    let _ = writeln!(
        s,
        "\nOver the window that holds the lookups ({answered:.0} PTR answers in the median run with DNS on, \
         {:.3} s), flowtop used {:.1}% {} CPU with enrichment on than off, {:.3} s of it in the resolver's \
         threads (target under 10%: **{verdict}**). Up to the full table, before any answer has come, \
         enrichment costs {:.1}% of ingestion throughput (CPU per flow of the ingesting threads) and \
         {:+.1}% of wall-clock time.\n",
        win(on),
        window_cost.abs() * 100.0,
        if window_cost >= 0.0 { "more" } else { "less" },
        win_dns(on),
        cost * 100.0,
        (full_on / full_off - 1.0) * 100.0,
    );
    let _ = writeln!(s, "## GeoIP lookups\n\n{}", geo_cost.trim());
    s
}
