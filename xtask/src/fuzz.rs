//! `cargo xtask fuzz [--secs N] [--libfuzzer] [TARGET...]`: runs every fuzz
//! target of `flowtop_testkit::fuzzing` (or the ones named) for N seconds each.
//!
//! - Default: the stable mutation runner (`flowtop/examples/fuzz.rs`, dev
//!   profile: overflow checks on), starting from the committed corpus
//!   `flowtop/fuzz/corpus/TARGET/`. Builds in seconds on top of the test
//!   build, so `cargo xtask test` runs it (15 s per target).
//! - `--libfuzzer`: the cargo-fuzz targets of `flowtop/fuzz/` (coverage
//!   guided libFuzzer; `RUSTC_BOOTSTRAP=1` gives the nightly flags on stable;
//!   no sanitizer, `-s none`, which stable cannot link). Installs
//!   cargo-fuzz when missing. The first build takes minutes. New inputs go to
//!   `target/fuzz-corpus/TARGET/`, never into the committed corpus.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::cmd;

pub const TARGETS: &[&str] = &[
    "ctnetlink",
    "ctnetlink_diff",
    "sock_events",
    "services_conf",
    "geoip_conf",
    "archive",
    "geoip_db",
    "filter",
    "dns_response",
    "tls_hello",
    "http_host",
    "quic_initial",
];

/// Seconds per target that `cargo xtask test` gives the stable runner.
pub const CI_SECS: u32 = 15;

pub fn run(args: &[String]) -> Result<()> {
    let mut secs: u32 = 30;
    let mut libfuzzer = false;
    let mut targets: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" => {
                secs = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .context("--secs needs a whole number of seconds")?
            }
            "--libfuzzer" => libfuzzer = true,
            t if TARGETS.contains(&t) => targets.push(t.to_owned()),
            other => bail!(
                "unknown fuzz argument {other:?} (targets: {})",
                TARGETS.join(", ")
            ),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| (*t).to_owned()).collect();
    }
    if libfuzzer {
        run_libfuzzer(secs, &targets)
    } else {
        stable(secs, &targets)
    }
}

/// The stable mutation runner over the committed corpus.
pub fn stable(secs: u32, targets: &[String]) -> Result<()> {
    let mut c = cmd::cargo();
    c.args(["run", "-q", "-p", "flowtop", "--example", "fuzz", "--", "--secs"])
        .arg(secs.to_string())
        .args(targets);
    cmd::run(&mut c)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cmd::root_dir().join("target"))
}

fn ensure_cargo_fuzz() -> Result<()> {
    if cmd::find_executable("cargo-fuzz").is_some() {
        return Ok(());
    }
    let mut install = cmd::cargo();
    install.args(["install", "cargo-fuzz", "--locked"]);
    println!("fuzz: {}  (about 1 min)", cmd::display(&install));
    cmd::run(&mut install).context("installing cargo-fuzz")
}

fn run_libfuzzer(secs: u32, targets: &[String]) -> Result<()> {
    ensure_cargo_fuzz()?;
    let root = cmd::root_dir();
    let fuzz_dir = root.join("flowtop");
    // Its own target directory: the instrumented build must not replace the
    // normal one.
    let tdir = target_dir().join("fuzz");
    for t in targets {
        let work = target_dir().join("fuzz-corpus").join(t);
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        let seeds = root.join("flowtop/fuzz/corpus").join(t);
        let mut c = Command::new("cargo");
        c.current_dir(&fuzz_dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_DIR", &tdir)
            .args(["fuzz", "run", "-O", "-s", "none", t])
            .arg(&work)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={secs}"))
            .arg("-print_final_stats=1");
        println!("fuzz: {}", cmd::display(&c));
        cmd::run(&mut c).with_context(|| {
            format!("fuzz target {t} failed (crash input under flowtop/fuzz/artifacts/{t}/)")
        })?;
    }
    Ok(())
}
