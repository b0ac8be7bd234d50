//! What flowtop says when it cannot do its job: no CAP_NET_ADMIN, a namespace without conntrack.

use super::*;

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn without_cap_net_admin_exits_1_with_message() {
    if !require_root() {
        return;
    }
    let ns = Netns::with_conntrack();
    ns.conntrack("-I -s 203.0.113.1 -d 198.51.100.1 -p udp --sport 1 --dport 2 -t 300");
    let before = ns.acct_ts();
    for mode in [&["--once", "--json"][..], &["--once"][..], &["--json"][..]] {
        let mut args = vec![
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            flowtop_bin(),
        ];
        args.extend_from_slice(mode);
        let mut cmd = ns.netns_exec("setpriv", &args);
        cmd.env_remove("RUST_BACKTRACE").env_remove("RUST_LIB_BACKTRACE");
        let run = run_to_end(cmd, Duration::from_secs(15));
        let ctx = format!(
            "unprivileged flowtop {}: exit {}\nstderr:\n{}\nstdout:\n{}",
            mode.join(" "),
            run.status,
            run.stderr,
            run.stdout
        );
        assert_eq!(run.status.code(), Some(1), "{ctx}");
        assert!(
            run.stderr.contains("CAP_NET_ADMIN"),
            "stderr does not mention CAP_NET_ADMIN: {ctx}"
        );
        // The error comes first, and alone: no GeoIP or DNS notice of a
        // run that cannot start.
        assert!(
            run.stderr.starts_with("flowtop: permission denied"),
            "the permission error is not first: {ctx}"
        );
        assert!(
            !run.stderr.contains("GeoIP"),
            "a GeoIP notice came with it: {ctx}"
        );
        assert!(!run.stderr.contains("panicked"), "it panicked: {ctx}");
        assert!(
            !run.stderr.to_lowercase().contains("backtrace"),
            "it printed a backtrace: {ctx}"
        );
        assert!(
            run.lines.iter().all(|v| !is_flow_event(v)),
            "it printed flows: {ctx}"
        );
    }
    assert_eq!(ns.acct_ts(), before, "an unprivileged run changed the sysctls");
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn empty_namespace_hints_how_to_enable_conntrack() {
    if !require_root() {
        return;
    }
    let ns = Netns::new(); // no nft rule: conntrack tracks nothing here
    let before = ns.acct_ts();
    let run = flowtop_once(&ns, &["--once", "--json"]);
    run.assert_ok("flowtop --once --json in an empty namespace");
    assert!(
        run.flows().is_empty(),
        "flows in an empty namespace:\n{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("nft") || run.stderr.contains("iptables"),
        "no hint (mentioning nft or iptables) on how to enable conntrack; stderr:\n{}",
        run.stderr
    );
    assert_eq!(ns.acct_ts(), before, "--once did not restore the sysctls");
}
