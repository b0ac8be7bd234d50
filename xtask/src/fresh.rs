//! The quick start on a machine with no Rust at all (issue 17), as a step of
//! `cargo xtask test`: the README's test command, `./xtask.sh test`, run in
//! a clone of this commit with `HOME`, `CARGO_HOME` and `RUSTUP_HOME` at
//! empty directories and only the system directories on PATH.
//!
//! `xtask.sh` then installs rustup with the pinned toolchain, the nested
//! `cargo xtask setup` adds rust-src and builds bpf-linker, and the nested
//! run builds everything from nothing and runs its first steps: setup, fmt,
//! both clippy passes and the workspace's tests. The steps after those
//! (fuzzing, the degraded build, the root-only tests) need nothing the
//! nested toolchain would do differently, and the outer run has just run
//! them on the same sources: the nested run stops there
//! ([`NESTED_ENV`]), which keeps the step near 8 minutes instead of 15.
//!
//! Needs what `.ci/run` needs: apt, static.rust-lang.org (rustup) and
//! crates.io. The scratch directory (about 5 GB with its build) is removed
//! afterwards, also when the run fails.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result};

use crate::bench::guards::TempDir;
use crate::cmd;

/// Set for the nested `cargo xtask test`: stop after the workspace's tests.
pub const NESTED_ENV: &str = "FLOWTOP_XTASK_FRESH_NESTED";
/// Set (to anything) to leave this step out of `cargo xtask test`; the
/// summary then lists it as a skip.
pub const SKIP_ENV: &str = "FLOWTOP_SKIP_FRESH";
/// How many of `cargo xtask test`'s steps the nested run keeps.
pub const NESTED_STEPS: usize = 5;

/// PATH on a Debian machine with nothing installed by hand.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether the nested run is this process.
pub fn nested() -> bool {
    std::env::var_os(NESTED_ENV).is_some()
}

/// What the nested run downloads from: rustup-init and the toolchain, and
/// the crates. Probed first: without them the check cannot run here, which
/// is a skip (listed), not a failure of the quick start.
fn needed_urls() -> [String; 2] {
    [
        format!(
            "https://static.rust-lang.org/rustup/dist/{}-unknown-linux-gnu/rustup-init",
            std::env::consts::ARCH
        ),
        "https://index.crates.io/config.json".to_owned(),
    ]
}

/// `git` for a repository whoever owns it (CI checkouts may belong to
/// another user than the root running the tests).
fn git() -> Command {
    let mut c = Command::new("git");
    c.args(["-c", "safe.directory=*"]);
    c
}

/// Why one of `urls` cannot be fetched (None: all answer, or there is no
/// curl to ask with, in which case the run itself will say).
fn first_unreachable(urls: &[String]) -> Option<String> {
    urls.iter().find_map(|url| {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "--max-time", "30", "-I", url])
            .output()
            .ok()?;
        (!out.status.success()).then(|| format!("{url}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    })
}

/// Records a skip of the whole check in the run's skip log (the summary
/// lists it) and says so.
fn skip(reason: &str) {
    flowtop_testkit::skip::skip_named(
        "the quick start on a machine with no Rust (xtask/src/fresh.rs)",
        reason,
    );
}

/// Runs the quick start's test command in a clone of HEAD on an empty
/// Rust environment.
pub fn check() -> Result<()> {
    if let Some(why) = first_unreachable(&needed_urls()) {
        skip(&format!("cannot reach what it downloads ({why})"));
        return Ok(());
    }
    let root = cmd::root_dir();
    for dir in SYSTEM_PATH.split(':') {
        let cargo = Path::new(dir).join("cargo");
        if cargo.exists() {
            // Rust outside $CARGO_HOME: this machine cannot stand for one
            // without.
            skip(&format!(
                "{} exists, so PATH cannot be without cargo here",
                cargo.display()
            ));
            return Ok(());
        }
    }
    let head =
        cmd::stdout_of(
            Command::new("git")
                .args(["-C"])
                .arg(&root)
                .args(["rev-parse", "--short", "HEAD"]),
        )
        .context("git rev-parse HEAD: the check clones the repository")?;
    let dirty = cmd::stdout_of(
        Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["status", "--porcelain"]),
    )
    .is_some_and(|s| s.lines().any(|l| !l.starts_with("??")));
    println!(
        "fresh: a clone of {} with empty HOME, CARGO_HOME and RUSTUP_HOME and PATH={SYSTEM_PATH}{}",
        head.trim(),
        if dirty {
            " (uncommitted changes here are not part of it)"
        } else {
            ""
        }
    );
    let scratch = TempDir::named("flowtop-fresh")?;
    let repo = scratch.0.join("repo");
    let (home, cargo_home, rustup_home) = (
        scratch.0.join("home"),
        scratch.0.join("cargo"),
        scratch.0.join("rustup"),
    );
    for d in [&home, &cargo_home, &rustup_home] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    cmd::run(
        git()
            .args(["clone", "--quiet", "--no-hardlinks"])
            .arg(&root)
            .arg(&repo),
    )?;
    let started = Instant::now();
    cmd::run(
        Command::new("sh")
            .args(["./xtask.sh", "test"])
            .current_dir(&repo)
            .env_clear()
            .env("HOME", &home)
            .env("CARGO_HOME", &cargo_home)
            .env("RUSTUP_HOME", &rustup_home)
            .env("PATH", SYSTEM_PATH)
            .env("LANG", "C.UTF-8")
            .env("TERM", "dumb")
            .env(NESTED_ENV, "1"),
    )
    .context("the quick start's test command on an empty Rust environment")?;
    println!(
        "fresh: ./xtask.sh test passed from nothing in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host that cannot resolve is reported with its URL (and the check
    /// is then skipped, not failed); no curl: nothing to say.
    #[test]
    fn an_unreachable_download_host_is_named() {
        let have_curl = Command::new("curl").arg("--version").output().is_ok();
        let why = first_unreachable(&["https://flowtop-fresh-check.invalid/".to_owned()]);
        if have_curl {
            let why = why.expect("an .invalid host must not resolve");
            assert!(why.starts_with("https://flowtop-fresh-check.invalid/: "), "{why}");
        } else {
            assert_eq!(why, None);
        }
    }
}
