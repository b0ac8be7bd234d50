//! Byte and packet counters: growing in updates, null when accounting was off.

use super::*;

fn is_positive(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_f64).is_some_and(|x| x > 0.0)
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn counters_grow_in_updates() {
    if !require_root() {
        return;
    }
    let (client, server) = Netns::pair();
    client.set_acct_ts("0", "0");
    let _srv = Agent::server(&server, 5002);
    let mut ft = Flowtop::start(&client, &["--json", "-t", "1", "-T"]);
    assert_eq!(
        client.acct_ts(),
        ("1".into(), "1".into()),
        "flowtop did not enable acct/timestamp before its meta line"
    );

    let mut cl = Agent::client(&client);
    let (c, lport) = cl.tcp_connect(SERVER_V4, 5002);
    let this = move |v: &Value| is_flow_event(v) && has_tuple(v, "tcp", CLIENT_V4, lport, SERVER_V4, 5002);

    cl.tcp_send(c, 100_000);
    let first = ft.wait_for(
        "an event with orig_bytes >= 100000 after the first burst",
        WAIT,
        |v| this(v) && event(v) != "destroy" && ju64(v, "orig_bytes").is_some_and(|b| b >= 100_000),
    );
    let b1 = ju64(&first, "orig_bytes").unwrap_or_default();

    cl.tcp_send(c, 100_000);
    let second = ft.wait_for(
        "an `update` with orig_bytes grown by the second burst",
        WAIT,
        |v| this(v) && event(v) == "update" && ju64(v, "orig_bytes").is_some_and(|b| b >= b1 + 100_000),
    );

    // Some update of this flow reports a rate > 0 (may come with a later dump).
    let rate_seen = ft
        .lines
        .iter()
        .any(|v| this(v) && event(v) == "update" && is_positive(v, "orig_rate_bps"))
        || ft
            .try_wait_for(Duration::from_secs(4), |v| {
                this(v) && event(v) == "update" && is_positive(v, "orig_rate_bps")
            })
            .is_some();
    if !rate_seen {
        ft.fail("no `update` of the flow with orig_rate_bps > 0");
    }
    let mut problems = Vec::new();
    for key in ["orig_packets", "reply_packets", "reply_bytes"] {
        if ju64(&second, key).is_none_or(|n| n == 0) {
            problems.push(format!("{key} is {:?}", second.get(key)));
        }
    }
    if !jstr(&second, "start").is_some_and(|s| s.contains('T')) {
        problems.push(format!(
            "start is {:?} although nf_conntrack_timestamp=1",
            second.get("start")
        ));
    }
    if !second.get("duration_s").is_some_and(Value::is_number) {
        problems.push(format!("duration_s is {:?}", second.get("duration_s")));
    }
    if !problems.is_empty() {
        ft.fail(&format!("update {second}: {}", problems.join("; ")));
    }
    ft.stop();
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn counters_null_when_accounting_was_off() {
    if !require_root() {
        return;
    }
    let ns = Netns::with_conntrack();
    let ins = |sport: &str| {
        ns.conntrack(&format!("-I -s 203.0.113.5 -d 198.51.100.5 -p tcp --sport {sport} --dport 80 --state ESTABLISHED -t 300 -u ASSURED"));
    };
    ns.set_acct_ts("0", "0");
    ins("1111"); // no accounting extension
    ns.set_acct_ts("1", "0");
    ins("2222"); // with (zero) counters
    ns.set_acct_ts("0", "0");

    let run = flowtop_once(&ns, &["--once", "--json", "--no-sysctl"]);
    run.assert_ok("flowtop --once --json --no-sysctl");
    assert_eq!(
        ns.acct_ts(),
        ("0".into(), "0".into()),
        "--no-sysctl changed the sysctls"
    );
    let find = |sport: u16| -> &Value {
        run.flows()
            .into_iter()
            .find(|v| has_tuple(v, "tcp", "203.0.113.5", sport, "198.51.100.5", 80))
            .unwrap_or_else(|| panic!("no flow with sport {sport}:\n{}", run.stdout))
    };
    let counters = ["orig_packets", "orig_bytes", "reply_packets", "reply_bytes"];
    let off = find(1111);
    let on = find(2222);
    for key in counters {
        assert_eq!(
            off.get(key),
            Some(&Value::Null),
            "entry created with acct=0: {key} must be null: {off}"
        );
        assert!(
            on.get(key).is_some_and(Value::is_u64),
            "entry created with acct=1: {key} must be a number: {on}"
        );
    }
}
