//! The attribution scenario suite (`flowtop_testkit::scenarios`, also
//! `cargo xtask bench scorecard`): every scenario conntrack can see must be
//! attributed to its program, with conntrack's bytes within 10% of the
//! peer's count.

use super::*;

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn every_scenario_conntrack_sees_is_attributed_with_its_bytes() {
    if !require_root() || !require_tool("gcc") {
        return;
    }
    let report = flowtop_testkit::scenarios::run(std::path::Path::new(flowtop_bin()), &|l| eprintln!("{l}"))
        .unwrap_or_else(|e| panic!("the scenario suite could not run: {e}"));
    eprintln!("{}", report.table());
    let failures = report.failures();
    assert!(
        failures.is_empty(),
        "{} scenario(s) failed:\n{}\n\n{}\nflowtop stderr:\n{}",
        failures.len(),
        failures.join("\n"),
        report.table(),
        report.flowtop_stderr
    );
}
