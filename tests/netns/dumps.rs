//! Reading the kernel table again: resync after an overrun, hot refreshes between full dumps, dumps filtered by the kernel.

use super::*;

/// Highest `overruns` counter in `stats` lines among `lines`, if flowtop prints any.
fn max_overruns(lines: &[Value]) -> Option<u64> {
    lines
        .iter()
        .filter(|v| event(v) == "stats")
        .filter_map(|v| ju64(v, "overruns"))
        .max()
}

/// Did flowtop report an overrun after line `since`? Its `stats` lines count
/// them; without stats lines, look for a message on stderr.
fn overrun_reported(ft: &Flowtop, since: usize) -> bool {
    let before = max_overruns(&ft.lines[..since]).unwrap_or(0);
    if let Some(after) = max_overruns(&ft.lines[since..]) {
        return after > before;
    }
    let markers = ["overrun", "enobufs", "no buffer space", "resync"];
    let err = ft.stderr().to_lowercase();
    markers.iter().any(|m| err.contains(m))
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn overrun_resyncs_to_kernel_state() {
    if !require_root() {
        return;
    }
    let ns = Netns::with_conntrack();
    // Keep the flood's entries alive for the whole comparison.
    ns.sysctl_set("net.netfilter.nf_conntrack_udp_timeout", "120");
    let mut ft = Flowtop::start(&ns, &["--json", "-t", "2", "-U", "--rcvbuf", "4096"]);
    let mut cl = Agent::client(&ns);
    ft.pump();
    let before_flood = ft.lines.len();
    cl.udp_flood("127.0.0.1", 20000, 5000);

    let kernel_udp = || -> BTreeSet<u32> {
        ns.conntrack_list()
            .iter()
            .filter(|e| e.proto == "udp" || e.proto == "udplite")
            .map(|e| e.id)
            .collect()
    };
    let k = kernel_udp();
    assert!(
        k.len() >= 4000,
        "test setup: the flood made only {} udp entries",
        k.len()
    );

    let mut last = (BTreeSet::new(), BTreeSet::new());
    let converged = poll_until(Duration::from_secs(20), Duration::from_millis(500), || {
        ft.pump();
        let alive = alive_ids(&ft.lines);
        let kernel = kernel_udp();
        if alive == kernel {
            Some(())
        } else {
            last = (alive, kernel);
            None
        }
    });
    if converged.is_none() {
        let (alive, kernel) = &last;
        let missing: Vec<_> = kernel.difference(alive).take(10).collect();
        let extra: Vec<_> = alive.difference(kernel).take(10).collect();
        let msg = format!(
            "after 20 s flowtop believes {} ids alive, the kernel has {}; {} missing (e.g. {missing:?}), {} extra (e.g. {extra:?}); overrun reported: {}",
            alive.len(),
            kernel.len(),
            kernel.difference(alive).count(),
            alive.difference(kernel).count(),
            overrun_reported(&ft, before_flood)
        );
        ft.fail(&msg);
    }
    if !overrun_reported(&ft, before_flood) {
        ft.fail("state converged, but flowtop reported no overrun after the flood (no `stats` line with a higher `overruns`, nothing on stderr)");
    }
    ft.stop();
}

/// Between full re-dumps only the flows with recent activity are re-read,
/// one GET each (the hot refresh). With `--full-refresh` an hour away, an
/// established TCP flow, which gets no conntrack event while it moves data,
/// still gets an `update` with its new counters after each burst, and the
/// `stats` line asked for with SIGUSR1 shows one full dump and the refreshes.
#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn active_flows_are_refreshed_between_full_dumps() {
    if !require_root() {
        return;
    }
    let (client, server) = Netns::pair();
    let _srv = Agent::server(&server, 5003);
    // Idle entries that only the initial dump reads.
    for i in 1..=20 {
        client.conntrack(&format!(
            "-I -p udp -s 198.51.100.{i} -d 203.0.113.1 --sport 1000 --dport 53 -t 600"
        ));
    }
    let mut ft = Flowtop::start(&client, &["--json", "-t", "0.5", "--full-refresh", "3600", "-TU"]);
    let mut cl = Agent::client(&client);
    let (c, lport) = cl.tcp_connect(SERVER_V4, 5003);
    let this = move |v: &Value| is_flow_event(v) && has_tuple(v, "tcp", CLIENT_V4, lport, SERVER_V4, 5003);
    let mut sent = 0;
    for burst in 1..=3 {
        cl.tcp_send(c, 50_000);
        sent += 50_000;
        ft.wait_for(
            &format!("an `update` with orig_bytes >= {sent} after burst {burst}"),
            Duration::from_secs(5),
            |v| this(v) && event(v) == "update" && ju64(v, "orig_bytes").is_some_and(|b| b >= sent),
        );
    }
    // A refresh's updates are printed before the end of that refresh is
    // counted (two messages from the conntrack thread), so a `stats` line
    // asked for right after the third update may count two: ask again a few
    // times. The flow stays hot for 3 s, so later refreshes come anyway;
    // what matters is that no full dump brought the updates.
    let mut stats = Value::Null;
    for _ in 0..5 {
        ft.signal(libc::SIGUSR1);
        stats = ft.wait_for("a `stats` line after SIGUSR1", WAIT, |v| event(v) == "stats");
        if ju64(&stats, "refreshes").is_some_and(|n| n >= 3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (dumps, resyncs) = (ju64(&stats, "dumps"), ju64(&stats, "resyncs"));
    if dumps != Some(1 + resyncs.unwrap_or(0)) {
        ft.fail(&format!("expected the initial dump only (plus resyncs): {stats}"));
    }
    if ju64(&stats, "refreshes").is_none_or(|n| n < 3) || ju64(&stats, "refreshed").is_none_or(|n| n < 3) {
        ft.fail(&format!(
            "expected at least 3 hot refreshes re-reading the flow: {stats}"
        ));
    }
    ft.stop();
}

/// With few protocols selected the kernel filters the dump (CTA_FILTER):
/// `-T` on a table of 200 UDP entries and one TCP entry is sent the TCP
/// entry only (`dumped` in the stats line), shows it, and does not claim
/// that the table is empty when it holds only unselected protocols.
#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn few_protocols_are_filtered_by_the_kernel() {
    if !require_root() {
        return;
    }
    let ns = Netns::with_conntrack();
    ns.run(
        "python3",
        &[
            &format!("{}/../xtask/scripts/ct_insert.py", env!("CARGO_MANIFEST_DIR")),
            "200",
        ],
    );
    let only_udp = flowtop_once(&ns, &["--once", "--json", "-T"]);
    only_udp.assert_ok("-T on a UDP-only table");
    assert!(only_udp.flows().is_empty(), "UDP entries shown with -T");
    assert!(
        !only_udp.stderr.contains("is empty"),
        "the empty-table hint on a table of 200 UDP entries: {}",
        only_udp.stderr
    );

    ns.conntrack("-I -p tcp -s 198.51.100.7 -d 203.0.113.9 --sport 40000 --dport 443 --state ESTABLISHED -t 300 -u ASSURED");
    let mut ft = Flowtop::start(&ns, &["--json", "-t", "0.5", "-T"]);
    ft.wait_for("the TCP entry", WAIT, |v| {
        is_flow_event(v) && has_tuple(v, "tcp", "198.51.100.7", 40000, "203.0.113.9", 443)
    });
    // `dumped` is set when a full dump ends: ask until one has.
    let mut last = Value::Null;
    for _ in 0..10 {
        ft.signal(libc::SIGUSR1);
        last = ft.wait_for("a `stats` line after SIGUSR1", WAIT, |v| event(v) == "stats");
        if ju64(&last, "dumped").is_some_and(|n| n > 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    if ju64(&last, "dumped") != Some(1) || ju64(&last, "flows") != Some(1) {
        ft.fail(&format!("expected the kernel to send the TCP entry only: {last}"));
    }
    ft.stop();
}
