//! How a test that cannot run (or cannot run all of its checks) says so.
//!
//! libtest has no "skipped" outcome: a test that returns early is reported
//! `ok`, exactly like one that checked everything. So every skip goes
//! through here, which
//!
//! - prints one line `SKIPPED <binary>::<test>: <reason>` on stderr (shown
//!   by `--nocapture`, and with the output of a failing test);
//! - appends the same line, without the prefix, to the file named by
//!   [`LOG_ENV`] when it is set. `cargo xtask test` sets it, counts the
//!   lines after each run and lists them in its summary, so a skip never
//!   looks like a pass there. A file rather than scanning the output
//!   because libtest captures a passing test's output (scanning would need
//!   `--nocapture` for every test), and because one file collects the skips
//!   of every test binary of several cargo invocations.
//!
//! Under `CI=true` a test that needs root and is not root fails instead of
//! skipping ([`require_root`]): a CI machine is set up to run everything,
//! and a missing privilege there is a broken setup, not a reason.

use std::fmt::Display;
use std::io::Write as _;

/// The environment variable naming the file skips are appended to.
pub const LOG_ENV: &str = "FLOWTOP_SKIP_LOG";

/// The prefix of the line printed for every skip.
pub const PREFIX: &str = "SKIPPED ";

/// `CI=true` (or `CI=1`) in the environment: what GitHub Actions, GitLab CI
/// and most others set, and what `.ci/run` exports.
pub fn strict() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The running test as `<binary>::<test>`: libtest runs each test on a
/// thread named after it; the binary name without cargo's hash suffix.
pub fn current_test() -> String {
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("<unknown test>")
        .to_owned();
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| match s.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_owned(),
            _ => s,
        })
        .unwrap_or_default();
    if binary.is_empty() {
        test
    } else {
        format!("{binary}::{test}")
    }
}

/// Records that the running test skips (all of it, or the part `reason`
/// names): the caller returns (or leaves that part out) right after.
pub fn skip(reason: impl Display) {
    record(
        &format!("{}: {reason}", current_test()),
        std::env::var_os(LOG_ENV).as_deref(),
    );
}

/// Records a skip of `what` (a check that is not a libtest test, e.g. a
/// step of `cargo xtask test`), as [`skip`] does for the running test.
pub fn skip_named(what: &str, reason: impl Display) {
    record(&format!("{what}: {reason}"), std::env::var_os(LOG_ENV).as_deref());
}

fn record(line: &str, log: Option<&std::ffi::OsStr>) {
    eprintln!("{PREFIX}{line}");
    if let Some(path) = log {
        // One write of one line with O_APPEND: lines of tests running in
        // parallel (threads or processes) do not interleave.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "warning: cannot append the skip to {}: {e}",
                path.to_string_lossy()
            );
        }
    }
}

/// True when running with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// For tests that need root: true when root. Otherwise the test is skipped
/// (reported through [`skip`]) and the caller returns; under `CI=true` it
/// panics instead, failing the test.
///
/// ```no_run
/// fn a_root_only_test() {
///     if !flowtop_testkit::skip::require_root() {
///         return;
///     }
///     // ... what needs root
/// }
/// ```
pub fn require_root() -> bool {
    if is_root() {
        return true;
    }
    if strict() {
        panic!(
            "{}: needs root, and CI=true forbids skipping it (run as root, or unset CI to skip)",
            current_test()
        );
    }
    skip("not root");
    false
}

/// For tests that need an external tool: true when `tool` can be started
/// (with `--version`, only whether it starts matters); otherwise the test is
/// skipped, with the tool named, and the caller returns.
pub fn require_tool(tool: &str) -> bool {
    let started = std::process::Command::new(tool)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !started {
        skip(format_args!("`{tool}` is not installed"));
    }
    started
}

/// The skips recorded in the file at `path` (one per line), in order; none
/// when the file does not exist.
pub fn read_log(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_name_is_the_thread_name_with_the_binary() {
        let name = current_test();
        assert!(
            name.ends_with("skip::tests::the_test_name_is_the_thread_name_with_the_binary"),
            "{name}"
        );
        assert!(name.starts_with("flowtop_testkit::"), "{name}");
    }

    #[test]
    fn a_skip_is_printed_and_appended_to_the_log() {
        let dir = std::env::temp_dir().join(format!("ft-skip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let log = dir.join("skips.log");
        // Not through the environment: set_var races with other test threads.
        let test = current_test();
        record(&format!("{test}: no widget here"), Some(log.as_os_str()));
        record(&format!("{test}: nor there"), Some(log.as_os_str()));
        let lines = read_log(&log);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].ends_with("a_skip_is_printed_and_appended_to_the_log: no widget here"));
        assert!(lines[1].ends_with(": nor there"));
    }
}
