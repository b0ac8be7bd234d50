//! Root-only integration tests of the `flowtop` binary, each in its own
//! network namespaces, one module per topic. Plain `cargo test` skips them
//! (`#[ignore]`); run them as root with
//! `cargo test -p flowtop --test netns -- --ignored --test-threads=1`
//! (which `cargo xtask test` does), or one topic with a filter such as
//! `sysctls::`. The harness is `flowtop_testkit::harness`.

mod attribution_ebpf;
mod attribution_ends;
mod attribution_exec;
mod attribution_procfs;
mod counters;
mod dumps;
mod export;
mod journal_record;
mod names;
mod rates;
mod run;
mod scorecard;
mod services;
mod snapshot;
mod startup;
mod stream;
mod sysctls;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use flowtop_testkit::harness::*;
use serde_json::{json, Value};

/// Runs `cmd` (a short-lived program that prints its local port and exits)
/// to the end; returns its pid and that port. `ip netns exec` execs the
/// program in place, so the pid is the program's and this process its parent.
fn run_printing_port(mut cmd: std::process::Command, what: &str) -> (u32, u16) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    let pid = child.id();
    let out = child.wait_with_output().expect("the program runs");
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{what} printed no local port"));
    (pid, port)
}
