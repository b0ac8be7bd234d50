//! The conntrack sysctls flowtop turns on: restored on every way out, never from another namespace's state.

use super::*;

const ACCT: &str = "net.netfilter.nf_conntrack_acct";

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn sysctls_restored_on_signals() {
    if !require_root() {
        return;
    }
    let ns = Netns::with_conntrack();
    let inode = ns.inode();
    let cases = [
        ("SIGINT", libc::SIGINT, ("0", "0")),
        ("SIGTERM", libc::SIGTERM, ("0", "0")),
        ("SIGHUP", libc::SIGHUP, ("0", "0")),
        ("SIGQUIT", libc::SIGQUIT, ("0", "0")),
        ("SIGINT", libc::SIGINT, ("1", "0")),
    ];
    for (name, sig, (acct, ts)) in cases {
        ns.set_acct_ts(acct, ts);
        let mut ft = Flowtop::start(&ns, &["--json"]);
        let running = ns.acct_ts();
        if running != ("1".into(), "1".into()) {
            ft.fail(&format!(
                "after the meta line acct/timestamp are {running:?}, expected (1, 1)"
            ));
        }
        let files_while_running = state_files(inode);
        ft.signal(sig);
        let st = ft.wait_exit(Duration::from_secs(10));
        if sig != libc::SIGHUP && !st.success() {
            ft.fail(&format!("{name}: expected exit status 0, got {st}"));
        }
        let after = ns.acct_ts();
        if after != (acct.to_string(), ts.to_string()) {
            ft.fail(&format!(
                "{name} (exit {st}): sysctls are {after:?} afterwards, expected ({acct}, {ts})"
            ));
        }
        if !files_while_running.is_empty() {
            let left = state_files(inode);
            if !left.is_empty() {
                ft.fail(&format!(
                    "{name}: state files left in /run/flowtop after a clean exit: {left:?}"
                ));
            }
        }
    }
}

/// The sysctls are already changed when the meta line is out, so a signal
/// right after it must restore them too (no window before the handlers).
#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn signal_right_after_meta_line_restores() {
    if !require_root() {
        return;
    }
    let ns = Netns::with_conntrack();
    let mut failures = Vec::new();
    for round in 0..10 {
        let (name, sig) = if round % 2 == 0 {
            ("SIGINT", libc::SIGINT)
        } else {
            ("SIGTERM", libc::SIGTERM)
        };
        ns.set_acct_ts("0", "0");
        let mut ft = Flowtop::start(&ns, &["--json"]);
        ft.signal(sig);
        let st = ft.wait_exit(Duration::from_secs(10));
        let after = ns.acct_ts();
        if !st.success() || after != ("0".into(), "0".into()) {
            failures.push(format!(
                "round {round}: {name} right after the meta line: exit {st}, sysctls {after:?}"
            ));
            // clean up what the killed run left behind before the next round
            flowtop_once(&ns, &["--once", "--json"]);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 10 runs:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// A state file left by a run killed in a namespace that is gone must not be
/// applied to a new namespace that happens to get the same inode number.
#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn stale_state_of_deleted_namespace_is_not_applied() {
    if !require_root() {
        return;
    }
    let mut old = Netns::with_conntrack();
    old.clean_state_on_drop = false; // the point of the test
    let inode = old.inode();
    old.set_acct_ts("0", "0");
    let mut ft = Flowtop::start(&old, &["--json"]);
    ft.signal(libc::SIGKILL);
    ft.wait_exit(Duration::from_secs(10));
    drop(ft);
    drop(old);
    // Namespace inode numbers are recycled, lowest free number first, once a
    // namespace is freed (asynchronously). Keep the namespaces that got other
    // (lower) numbers alive meanwhile, so the search moves on to ours.
    let mut others = Vec::new();
    let reused = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        let ns = Netns::new();
        if ns.inode() == inode {
            Some(ns)
        } else {
            if others.len() < 64 {
                others.push(ns);
            }
            None
        }
    });
    drop(others);
    let Some(ns) = reused else {
        for f in state_files(inode) {
            let _ = std::fs::remove_file(f);
        }
        skip(format_args!("inode {inode} was not reused; nothing checked"));
        return;
    };
    ns.set_acct_ts("1", "0"); // the new namespace's own choice
    let run = flowtop_once(&ns, &["--once", "--json"]);
    run.assert_ok("flowtop --once in a new namespace with a recycled inode");
    assert_eq!(
        ns.acct_ts(),
        ("1".into(), "0".into()),
        "flowtop applied values saved for a deleted namespace (same inode {inode}) to a new one\nstderr:\n{}",
        run.stderr
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn sysctls_restored_by_next_run_after_sigkill() {
    if !require_root() {
        return;
    }
    let ns = Netns::with_conntrack();
    ns.set_acct_ts("0", "0");
    let mut ft = Flowtop::start(&ns, &["--json"]);
    let running = ns.acct_ts();
    if running != ("1".into(), "1".into()) {
        ft.fail(&format!(
            "after the meta line acct/timestamp are {running:?}, expected (1, 1)"
        ));
    }
    ft.signal(libc::SIGKILL);
    ft.wait_exit(Duration::from_secs(10));
    assert_eq!(
        ns.acct_ts(),
        ("1".into(), "1".into()),
        "after SIGKILL nothing can have restored the sysctls"
    );

    let run = flowtop_once(&ns, &["--once", "--json"]);
    run.assert_ok("flowtop --once --json after a SIGKILLed run");
    assert_eq!(
        ns.acct_ts(),
        ("0".into(), "0".into()),
        "the run after SIGKILL must restore the values saved by the killed run\nstderr:\n{}",
        run.stderr
    );
    // And a further run finds nothing stale.
    flowtop_once(&ns, &["--once", "--json"]).assert_ok("second --once");
    assert_eq!(
        ns.acct_ts(),
        ("0".into(), "0".into()),
        "a second --once changed the sysctls"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn no_sysctl_leaves_sysctls_alone() {
    if !require_root() {
        return;
    }
    let ns = Netns::with_conntrack();
    for (acct, ts) in [("0", "0"), ("0", "1")] {
        ns.set_acct_ts(acct, ts);
        let want = (acct.to_string(), ts.to_string());
        let mut ft = Flowtop::start(&ns, &["--json", "--no-sysctl"]);
        let running = ns.acct_ts();
        if running != want {
            ft.fail(&format!(
                "--no-sysctl: sysctls are {running:?} while running, expected {want:?}"
            ));
        }
        ft.stop();
        assert_eq!(ns.acct_ts(), want, "--no-sysctl: sysctls changed after SIGINT");
        flowtop_once(&ns, &["--once", "--json", "--no-sysctl"]).assert_ok("--once --no-sysctl");
        assert_eq!(ns.acct_ts(), want, "--once --no-sysctl changed the sysctls");
    }
    // The sysctl of acct must be untouched too by a --no-sysctl run killed hard.
    ns.sysctl_set(ACCT, "0");
    let mut ft = Flowtop::start(&ns, &["--json", "--no-sysctl"]);
    ft.signal(libc::SIGKILL);
    ft.wait_exit(Duration::from_secs(10));
    flowtop_once(&ns, &["--once", "--json", "--no-sysctl"]).assert_ok("--once --no-sysctl after SIGKILL");
    assert_eq!(
        ns.sysctl_get(ACCT),
        "0",
        "--no-sysctl runs changed nf_conntrack_acct"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn two_instances_restore_the_values_from_before_the_first() {
    if !require_root() {
        return;
    }
    let ns = Netns::with_conntrack();
    ns.set_acct_ts("0", "0");
    let mut first = Flowtop::start(&ns, &["--json", "-t", "1"]);
    let mut second = Flowtop::start(&ns, &["--json", "-t", "1"]);
    assert_eq!(ns.acct_ts(), ("1".to_owned(), "1".to_owned()));
    // The first to go must not restore while the second still relies on them.
    first.stop();
    assert_eq!(
        ns.acct_ts(),
        ("1".to_owned(), "1".to_owned()),
        "restored under a running instance"
    );
    // The last to go puts back what was there before the first.
    second.stop();
    assert_eq!(
        ns.acct_ts(),
        ("0".to_owned(), "0".to_owned()),
        "not restored by the last instance"
    );
}
