//! The `--json` stream: new / update / destroy events, their time stamps, and a reader that goes away.

use super::*;

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn json_stream_new_update_destroy() {
    if !require_root() {
        return;
    }
    let ns = Netns::with_conntrack();
    // A sentinel present before start: once its snapshot is out, the initial
    // dump is done and later insertions must arrive as events.
    ns.conntrack("-I -s 203.0.113.9 -d 198.51.100.9 -p tcp --sport 1000 --dport 80 --state ESTABLISHED -t 300 -u ASSURED");
    // Not selected by -T: must never show up.
    ns.conntrack("-I -s 203.0.113.9 -d 198.51.100.9 -p udp --sport 1000 --dport 53 -t 300");

    let mut ft = Flowtop::start(&ns, &["--json", "-t", "1", "-T"]);
    let snap = ft.wait_for("snapshot of the sentinel", WAIT, |v| {
        event(v) == "snapshot" && has_tuple(v, "tcp", "203.0.113.9", 1000, "198.51.100.9", 80)
    });
    assert_eq!(
        flow_id(&snap),
        Some(ns.conntrack_id("tcp", "203.0.113.9", 1000, "198.51.100.9", 80)),
        "sentinel id: {snap}"
    );

    ns.conntrack(
        "-I -s 8.8.8.8 -d 1.1.1.1 -p tcp --sport 40000 --dport 443 --state ESTABLISHED -t 300 -u ASSURED",
    );
    let kernel_id = ns.conntrack_id("tcp", "8.8.8.8", 40000, "1.1.1.1", 443);
    let new = ft.wait_for("`new` for 8.8.8.8:40000 -> 1.1.1.1:443", WAIT, |v| {
        event(v) == "new" && has_tuple(v, "tcp", "8.8.8.8", 40000, "1.1.1.1", 443)
    });
    let mut problems = Vec::new();
    if flow_id(&new) != Some(kernel_id) {
        problems.push(format!("id {:?}, kernel says {kernel_id}", new.get("id")));
    }
    if jstr(&new, "family") != Some("ipv4") {
        problems.push(format!("family {:?}", new.get("family")));
    }
    if jstr(&new, "state") != Some("ESTABLISHED") {
        problems.push(format!("state {:?}", new.get("state")));
    }
    if jstr(&new, "ts").and_then(rfc3339_secs).is_none() {
        problems.push(format!("ts is not RFC 3339: {:?}", new.get("ts")));
    }
    let missing = missing_keys(&new);
    if !missing.is_empty() {
        problems.push(format!("missing keys {missing:?}"));
    }
    if !problems.is_empty() {
        ft.fail(&format!("`new` event {new}: {}", problems.join("; ")));
    }

    // A state change made through ctnetlink is an UPDATE event.
    ns.conntrack("-U -p tcp -s 8.8.8.8 -d 1.1.1.1 --sport 40000 --dport 443 --state CLOSE_WAIT");
    ft.wait_for("`update` with state CLOSE_WAIT", WAIT, |v| {
        event(v) == "update" && flow_id(v) == Some(kernel_id) && jstr(v, "state") == Some("CLOSE_WAIT")
    });

    ns.conntrack("-D -p tcp -s 8.8.8.8 -d 1.1.1.1 --sport 40000 --dport 443");
    let destroy = ft.wait_for("`destroy` for the deleted entry", WAIT, |v| {
        event(v) == "destroy" && flow_id(v) == Some(kernel_id)
    });
    if !has_tuple(&destroy, "tcp", "8.8.8.8", 40000, "1.1.1.1", 443) {
        ft.fail(&format!("destroy event has another tuple: {destroy}"));
    }
    let missing = missing_keys(&destroy);
    if !missing.is_empty() {
        ft.fail(&format!("destroy event lacks keys {missing:?}: {destroy}"));
    }
    ft.stop();
    if let Some(bad) = ft
        .lines
        .iter()
        .find(|v| is_flow_event(v) && jstr(v, "proto") != Some("tcp"))
    {
        let bad = bad.clone();
        ft.fail(&format!("-T printed a non-tcp flow: {bad}"));
    }
    let sentinel = snap["id"].clone();
    if let Some(bad) = ft
        .lines
        .iter()
        .find(|v| event(v) == "destroy" && v["id"] == sentinel)
    {
        let bad = bad.clone();
        ft.fail(&format!("destroy for the sentinel that still exists: {bad}"));
    }
    if !ft.bad.is_empty() {
        ft.fail("non-JSON stdout lines");
    }
}

/// `ts` of a streamed event is the time flowtop saw it, not a stale clock
/// reading from before it began waiting. `-t 30` keeps periodic dumps from
/// waking flowtop up in between.
#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn json_stream_event_ts_is_current() {
    if !require_root() {
        return;
    }
    let ns = Netns::with_conntrack();
    let mut ft = Flowtop::start(&ns, &["--json", "-t", "30", "-T"]);
    // Let flowtop go idle: the point is the time that passes here.
    std::thread::sleep(Duration::from_secs(2));
    let before = now_secs();
    ns.conntrack("-I -s 203.0.113.7 -d 198.51.100.7 -p tcp --sport 7 --dport 7 --state ESTABLISHED -t 300");
    let new = ft.wait_for("`new` for the inserted entry", WAIT, |v| {
        event(v) == "new" && has_tuple(v, "tcp", "203.0.113.7", 7, "198.51.100.7", 7)
    });
    let after = now_secs();
    let ts = jstr(&new, "ts").and_then(rfc3339_secs);
    if !ts.is_some_and(|t| t >= before - 0.25 && t <= after + 0.25) {
        ft.fail(&format!(
            "`new` ts {:?} is not between the insertion ({before:.3}) and its arrival ({after:.3}): {:?} s off",
            new.get("ts"),
            ts.map(|t| t - before)
        ));
    }
    ft.stop();
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn a_reader_that_goes_away_ends_the_stream_and_restores_sysctls() {
    if !require_root() {
        return;
    }
    use std::io::BufRead as _;
    let ns = Netns::with_conntrack();
    ns.set_acct_ts("0", "0");
    let mut child = ns
        .netns_exec(flowtop_bin(), &["--json", "-t", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("flowtop starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .expect("meta line");
    assert!(first.contains("\"meta\""), "{first}");
    assert_eq!(ns.acct_ts(), ("1".to_owned(), "1".to_owned()));
    // The reader is dropped here: nothing is written on a quiet table, yet
    // flowtop must notice within a couple of intervals.
    let status = wait_timeout(&mut child, Duration::from_secs(4));
    if status.is_none() {
        let _ = child.kill();
        panic!("flowtop kept running after its reader went away");
    }
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert_eq!(ns.acct_ts(), ("0".to_owned(), "0".to_owned()), "sysctls restored");
}
