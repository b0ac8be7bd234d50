//! flowtop's task runner: `cargo xtask <command>` (alias in .cargo/config.toml).

mod bench;
mod bench_attr;
mod cmd;
mod deb;
mod degrade;
mod dist;
mod fresh;
mod fuzz;
mod setup;

use std::env;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result};

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  setup              install what building (with eBPF) and testing need: Debian packages
                     (as root), rust-src for the current toolchain, bpf-linker; fast no-op
                     when everything is present
  run [--] ARGS      setup if needed, build flowtop (release) and run it with ARGS
  test               setup if needed, then fmt check, clippy (workspace and flowtop-ebpf),
                     tests, 15 s of fuzzing per target, and as root the root-only tests
                     (network namespaces, eBPF) and the quick start on an empty Rust
                     environment (./xtask.sh test in a clone, HOME/CARGO_HOME/RUSTUP_HOME
                     empty: ~8 min; FLOWTOP_SKIP_FRESH=1 leaves it out, listed as a skip)
  check-degraded     build and test flowtop with bpf-linker hidden from PATH: one warning,
                     eBPF reported unavailable (part of `test`)
  bench NAME [ARGS]  run the benchmark NAME: report (all of them, bench/REPORT.md), dump,
                     ui, enrich, attribution, soak; `bench help` lists their options
  dist [DIR]         the release tree in DIR (default target/dist): bin/flowtop (release,
                     eBPF embedded), man8/flowtop.8, bash/zsh/fish completions, conf/,
                     systemd/, README.md; and its tarball target/flowtop-VERSION-ARCH-linux.tar.gz
  deb [--bin FLOWTOP] [--out DIR]
                     the Debian package DIR/flowtop_VERSION-1_ARCH.deb (default target/deb):
                     group flowtop, file capabilities, conffiles, diverts netsniff-ng's flowtop
  fuzz [--secs N] [--libfuzzer] [TARGET...]
                     fuzz every parser of untrusted input N s each (default 30) from the
                     committed corpus: stable mutation runner, or cargo-fuzz/libFuzzer
  help               this text
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match command {
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        "setup" => setup::ensure(setup::Need::All),
        "run" => run_flowtop(rest),
        "test" => test(),
        "check-degraded" => degrade::check(),
        "dist" => dist::run(rest),
        "deb" => deb::run(rest),
        "fuzz" => fuzz::run(rest),
        "bench" => match rest.split_first() {
            Some((name, bench_args)) => bench::run(name, bench_args),
            None => {
                eprint!("xtask bench: missing benchmark NAME\n\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        other => {
            eprint!("xtask: unknown command {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask {command}: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `run [--] ARGS`: build the release binary and replace xtask with it, so
/// stdio, signals and the exit status are flowtop's own.
fn run_flowtop(args: &[String]) -> Result<()> {
    use std::os::unix::process::CommandExt as _;

    let args = match args.split_first() {
        Some((dashdash, rest)) if dashdash == "--" => rest,
        _ => args,
    };
    setup::ensure(setup::Need::All)?;
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "flowtop"]))?;
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| cmd::root_dir().join("target"));
    let bin = target_dir.join("release").join("flowtop");
    // exec only returns on failure.
    let err = std::process::Command::new(&bin).args(args).exec();
    Err(err).with_context(|| format!("cannot execute {}", bin.display()))
}

/// `test`: every check CI runs, failing fast.
///
/// Skips are never passes: every test that skips (or leaves checks out)
/// appends a line to the skip log (`flowtop_testkit::skip`, through
/// `FLOWTOP_SKIP_LOG`, which the cargo steps get), and the summary counts
/// and lists them with the steps skipped here. With `CI=true` the
/// root-only tests run even when not root, and fail there.
fn test() -> Result<()> {
    let started = Instant::now();
    let root = cmd::is_root();
    let strict = flowtop_testkit::skip::strict();
    let need = if root {
        setup::Need::All
    } else {
        setup::Need::BuildOnly
    };
    let skip_log = skip_log_path();
    // A fresh log per run: the summary counts this run's skips only.
    if let Err(e) = std::fs::remove_file(&skip_log) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(e).with_context(|| format!("cannot remove {}", skip_log.display()));
        }
    }
    if let Some(dir) = skip_log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Inherited by every cargo and test process below (xtask is single
    // threaded here, so setting its environment is sound).
    env::set_var(flowtop_testkit::skip::LOG_ENV, &skip_log);

    let cargo = |args: &[&str]| {
        let mut c = cmd::cargo();
        c.args(args);
        c
    };
    type Step = Box<dyn FnOnce() -> Result<()>>;
    let mut steps: Vec<(&str, Step)> = vec![
        ("setup", Box::new(move || setup::ensure(need))),
        (
            "cargo fmt --all -- --check",
            Box::new(move || cmd::run(&mut cargo(&["fmt", "--all", "--", "--check"]))),
        ),
        (
            "cargo clippy --workspace --all-targets -- -D warnings",
            Box::new(move || {
                cmd::run(&mut cargo(&[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ]))
            }),
        ),
        (
            // Its own pass: with the workspace, feature unification would give
            // flowtop-common's `user` feature (aya, std) to the eBPF crate too.
            "cargo clippy -p flowtop-ebpf -- -D warnings",
            Box::new(move || {
                cmd::run(&mut cargo(&[
                    "clippy",
                    "-p",
                    "flowtop-ebpf",
                    "--",
                    "-D",
                    "warnings",
                ]))
            }),
        ),
        (
            "cargo test --workspace",
            Box::new(move || cmd::run(&mut cargo(&["test", "--workspace"]))),
        ),
        (
            "fuzz every target 15 s (stable mutation runner, committed corpus)",
            Box::new(|| {
                let all: Vec<String> = fuzz::TARGETS.iter().map(|t| (*t).to_owned()).collect();
                fuzz::stable(fuzz::CI_SECS, &all)
            }),
        ),
        (
            "build and test flowtop with bpf-linker hidden (the degraded build)",
            Box::new(degrade::check),
        ),
    ];
    // Step-level skips, listed with the tests' own.
    let mut skipped: Vec<String> = Vec::new();
    if fresh::nested() {
        // The quick-start check's own run (see fresh.rs): the outer run
        // does the rest.
        steps.truncate(fresh::NESTED_STEPS);
        println!(
            "xtask test: nested in the fresh-machine check, steps 1-{} only",
            fresh::NESTED_STEPS
        );
    } else if root || strict {
        // Not root under CI=true: every root-only test fails, saying so.
        steps.push((
            "cargo test --workspace -- --ignored --test-threads=1 (root-only tests)",
            Box::new(move || {
                cmd::run(&mut cargo(&[
                    "test",
                    "--workspace",
                    "--",
                    "--ignored",
                    "--test-threads=1",
                ]))
            }),
        ));
        if std::env::var_os(fresh::SKIP_ENV).is_some() {
            skipped.push(format!(
                "the quick start on a machine with no Rust (xtask/src/fresh.rs): {} is set",
                fresh::SKIP_ENV
            ));
        } else {
            steps.push((
                "the quick start's test command on an empty Rust environment (fresh HOME, CARGO_HOME, RUSTUP_HOME)",
                Box::new(fresh::check),
            ));
        }
    }

    let total = steps.len();
    for (i, (name, step)) in steps.into_iter().enumerate() {
        println!("\n==> xtask test [{}/{total}] {name}", i + 1);
        let step_started = Instant::now();
        step().with_context(|| format!("step {}/{total} `{name}` FAILED", i + 1))?;
        println!("==> ok: {name} [{:.1} s]", step_started.elapsed().as_secs_f64());
    }
    if !root && !strict {
        skipped.push(
            "root-only tests (cargo test --workspace -- --ignored): not root; run `cargo xtask test` as root to include them"
                .to_owned(),
        );
        skipped.push(
            "the quick start on a machine with no Rust (xtask/src/fresh.rs): not root (its setup installs apt packages)"
                .to_owned(),
        );
    }
    skipped.extend(flowtop_testkit::skip::read_log(&skip_log));
    print!("{}", summary(&skipped, started.elapsed().as_secs_f64()));
    Ok(())
}

/// The last lines of a passing `cargo xtask test`: every skip listed and
/// counted, so that a run that skipped something never reads as a clean pass.
fn summary(skipped: &[String], took: f64) -> String {
    if skipped.is_empty() {
        return format!("\n==> xtask test: all steps passed, nothing skipped [{took:.0} s]\n");
    }
    let bar = "!".repeat(78);
    let mut out = format!("\n{bar}\n");
    for s in skipped {
        out.push_str(&format!("{}{s}\n", flowtop_testkit::skip::PREFIX));
    }
    out.push_str(&format!(
        "{bar}\n\n==> xtask test: all steps passed, {} SKIPPED (listed above; not passes) [{took:.0} s]\n",
        skipped.len()
    ));
    out
}

/// Where the tests append their skips during `cargo xtask test`.
fn skip_log_path() -> std::path::PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| cmd::root_dir().join("target"))
        .join("xtask-test-skips.log")
}

#[cfg(test)]
mod tests {
    use super::summary;

    #[test]
    fn the_summary_counts_and_lists_every_skip() {
        let clean = summary(&[], 12.0);
        assert!(clean.contains("all steps passed, nothing skipped"), "{clean}");
        let skips = [
            "netns::sysctls::x: not root".to_owned(),
            "screen::y: `tmux` is not installed".to_owned(),
        ];
        let text = summary(&skips, 12.0);
        assert!(text.contains("SKIPPED netns::sysctls::x: not root\n"), "{text}");
        assert!(
            text.contains("SKIPPED screen::y: `tmux` is not installed\n"),
            "{text}"
        );
        assert!(
            text.contains("all steps passed, 2 SKIPPED (listed above; not passes)"),
            "{text}"
        );
    }
}
