//! `cargo xtask bench NAME [ARGS]`: benchmarks of flowtop against its peers.
//!
//! One file per benchmark (`dump`, `report`, `ui`, `soak`, `enrich`, `names`; the
//! attribution accuracy is `crate::bench_attr`), over shared parts:
//! `guards` (signals, sysctls, processes, scratch directories: everything a
//! run changes is undone on every path), `netns` (the private namespace),
//! `measure` (process sampling: CPU, VmRSS/VmHWM, timing), `stream` (a
//! running `flowtop --json` and its steady state), `pty` (a screen on a
//! pseudo-terminal of its own), `table` (a namespace with a filled conntrack
//! table, and the cold-start measurement every size shares) and `markdown`
//! (the header every report starts with and the cell formatters).

mod dump;
pub(crate) mod enrich;
mod export;
pub(crate) mod guards;
mod journal;
pub(crate) mod markdown;
pub(crate) mod measure;
mod names;
pub(crate) mod netns;
mod pty;
mod report;
mod scorecard;
mod screen_mem;
mod soak;
pub(crate) mod stream;
pub(crate) mod table;
pub(crate) mod ui;
mod ui_trend;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::cmd;
use guards::SignalGuard;

/// Entry point, called by `xtask/src/main.rs` for `cargo xtask bench NAME [ARGS]`.
pub fn run(name: &str, args: &[String]) -> Result<()> {
    // Caught for the whole benchmark so that the guards' `Drop` runs on
    // SIGINT, SIGTERM and SIGHUP too (`attribution` has no guards).
    let _signals = (!matches!(name, "attribution" | "help" | "--help" | "-h")).then(SignalGuard::install);
    match name {
        "dump" => dump::run(args),
        "attribution" => attribution_cost(),
        // With --processes: the TREND sparklines at N program groups.
        "ui" if args.iter().any(|a| a == "--processes") => ui_trend::run(args),
        "ui" => ui::run(&ui::Opts::parse(args)?),
        "enrich" => enrich::run(args),
        "soak" => soak::run(args),
        "report" => report::run(args),
        "screen-mem" => screen_mem::run(args),
        "scorecard" => scorecard::run(args),
        "names" => names::run(args),
        "journal" => journal::run(args),
        "export" => export::run(args),
        "help" | "--help" | "-h" => {
            println!(
                "{}\n\n{ATTRIBUTION_USAGE}\n\n{}\n\n{}\n\n{}\n\n{}\n\n{}\n\n{}\n\n{}\n\n{}\n\n{}\n\n{}",
                dump::USAGE,
                report::USAGE,
                enrich::USAGE,
                ui::USAGE,
                ui_trend::USAGE,
                soak::USAGE,
                screen_mem::USAGE,
                scorecard::USAGE,
                names::USAGE,
                journal::USAGE,
                export::USAGE
            );
            Ok(())
        }
        other => {
            bail!(
                "unknown benchmark '{other}'; available: report, dump, attribution, enrich, ui, soak, screen-mem, scorecard, names, journal, export\n\n{}",
                dump::USAGE
            )
        }
    }
}

const ATTRIBUTION_USAGE: &str = "\
usage: cargo xtask bench attribution

  Loopback connect/accept/close cycles and one-byte TCP and UDP ping-pongs,
  timed without programs, with an empty cgroup_skb egress program and with
  flowtop's eBPF socket programs (21 rounds, rotating order, a fresh network
  namespace per side, same run; flowtop/examples/attribution_cost.rs), and
  the attribution accuracy of 50 short-lived processes. Needs root. Writes
  bench/attribution.md.";

/// `bench attribution`: the probes' cost, measured by the example binary.
fn attribution_cost() -> Result<()> {
    let root = cmd::root_dir();
    let mut build = cmd::cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "flowtop",
        "--example",
        "attribution_cost",
    ]);
    cmd::run(&mut build)?;
    let bin = root.join("target/release/examples/attribution_cost");
    let out = std::process::Command::new(&bin)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let table = String::from_utf8_lossy(&out.stdout);
    let mut build = cmd::cargo();
    build.args(["build", "--release", "-p", "flowtop"]);
    cmd::run(&mut build)?;
    let accuracy = crate::bench_attr::accuracy(&root.join("target/release/flowtop"))?;
    let report = format!(
        "# flowtop attribution\n\n`cargo xtask bench attribution`\n\n- date: {}\n- kernel: {}\n- nproc: {}\n\n\
         ## Accuracy\n\n{accuracy}\n## Cost of the eBPF programs\n\n{table}",
        cmd::stdout_of(std::process::Command::new("date").args(["-u", "+%F %T UTC"])).unwrap_or_default().trim(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    std::fs::create_dir_all(root.join("bench"))?;
    std::fs::write(root.join("bench/attribution.md"), &report)?;
    print!("{report}");
    Ok(())
}

/// netsniff-ng's flowtop 0.6.8, the peer of the screen.
pub(crate) const NETSNIFF_FLOWTOP: &str = "/usr/sbin/flowtop";

/// A count with an optional k/M suffix and `_` separators.
pub(crate) fn parse_count(s: &str) -> Result<u64> {
    let t = s.trim().replace('_', "");
    let (num, mul) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000),
        Some('m' | 'M') => (&t[..t.len() - 1], 1_000_000),
        _ => (t.as_str(), 1),
    };
    let n: u64 = num.parse().with_context(|| format!("'{s}' is not a count"))?;
    Ok(n * mul)
}

pub(crate) fn log(msg: impl AsRef<str>) {
    eprintln!("[bench] {}", msg.as_ref());
}

pub(crate) fn repo_root() -> PathBuf {
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    if let Some(root) = compiled.filter(|r| r.join("flowtop/Cargo.toml").is_file()) {
        return root;
    }
    let mut dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    loop {
        if dir.join("flowtop/Cargo.toml").is_file() {
            return dir;
        }
        if !dir.pop() {
            return PathBuf::from(".");
        }
    }
}

/// Runs a short helper command, failing with its stderr if it fails.
pub(crate) fn run_cmd(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Refuses to start a benchmark without root (`why` says what needs it).
pub(crate) fn require_root(what: &str, why: &str) -> Result<()> {
    if !crate::cmd::is_root() {
        bail!("{what} needs root ({why})");
    }
    Ok(())
}

/// Refuses to start a benchmark without one of `tools` (each started with
/// `-V`: only whether it starts matters).
pub(crate) fn require_tools(tools: &[&str]) -> Result<()> {
    for tool in tools {
        if Command::new(tool)
            .arg("-V")
            .stdin(Stdio::null())
            .output()
            .is_err()
        {
            bail!("'{tool}' is not installed");
        }
    }
    Ok(())
}

/// Builds flowtop (release) and returns the binary's path.
pub(crate) fn build_flowtop(root: &Path) -> Result<PathBuf> {
    log("building flowtop (release)");
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "flowtop"]))?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let flowtop = target_dir.join("release/flowtop");
    if !flowtop.is_file() {
        bail!("{} missing after the build", flowtop.display());
    }
    Ok(flowtop)
}

/// What a benchmark that builds flowtop starts from: the leftovers of killed
/// runs cleaned up, the release build, a scratch directory, and its clock.
pub(crate) struct Prepared {
    pub(crate) root: PathBuf,
    pub(crate) flowtop: PathBuf,
    pub(crate) tmp: guards::TempDir,
    pub(crate) started: std::time::Instant,
}

/// Cleans up after killed runs (namespaces, sysctls), builds flowtop.
pub(crate) fn prepare() -> Result<Prepared> {
    guards::remove_stale_namespaces();
    guards::SysctlGuard::recover_stale();
    let root = repo_root();
    let flowtop = build_flowtop(&root)?;
    Ok(Prepared {
        root,
        flowtop,
        tmp: guards::TempDir::new()?,
        started: std::time::Instant::now(),
    })
}

/// Writes `bench/NAME` and prints the report.
pub(crate) fn write_report(root: &Path, name: &str, report: &str) -> Result<()> {
    let dir = root.join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, report).with_context(|| format!("cannot write {}", path.display()))?;
    println!("{report}");
    log(format!("wrote {}", path.display()));
    Ok(())
}
