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
mod rates;
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
