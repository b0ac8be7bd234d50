//! `--once --json` against `conntrack -L`, and the selection flags.

use super::*;

/// Differences between a `conntrack -L` entry and flowtop's flow object.
fn diff_entry(ct: &CtEntry, f: &Value) -> Vec<String> {
    let get = |k: &str| f.get(k).cloned().unwrap_or(json!("<missing>"));
    // Addresses compare as parsed IpAddr (re-displayed), so formatting differences do not matter.
    let addr = |k: &str| jaddr(f, k).map_or_else(|| get(k), |a| json!(a.to_string()));
    let mut want_got = vec![
        ("family", json!(ct.family), get("family")),
        ("proto", json!(ct.proto), get("proto")),
        ("src", json!(ct.src.to_string()), addr("src")),
        ("dst", json!(ct.dst.to_string()), addr("dst")),
        ("sport", json!(ct.sport), get("sport")),
        ("dport", json!(ct.dport), get("dport")),
        ("reply_src", json!(ct.reply_src.to_string()), addr("reply_src")),
        ("reply_dst", json!(ct.reply_dst.to_string()), addr("reply_dst")),
        ("reply_sport", json!(ct.reply_sport), get("reply_sport")),
        ("reply_dport", json!(ct.reply_dport), get("reply_dport")),
        ("state", json!(ct.state), get("state")),
        ("mark", json!(ct.mark), get("mark")),
    ];
    if let Some((t, c, i)) = ct.icmp {
        want_got.push(("icmp_type", json!(t), get("icmp_type")));
        want_got.push(("icmp_code", json!(c), get("icmp_code")));
        want_got.push(("icmp_id", json!(i), get("icmp_id")));
    }
    let mut d: Vec<String> = want_got
        .into_iter()
        .filter(|(_, want, got)| want != got)
        .map(|(k, want, got)| format!("{k}: conntrack {want}, flowtop {got}"))
        .collect();
    let status: Vec<&str> = f
        .get("status")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if status.contains(&"ASSURED") != ct.assured {
        d.push(format!(
            "status: conntrack assured={}, flowtop {status:?}",
            ct.assured
        ));
    }
    if status.contains(&"SEEN_REPLY") == ct.unreplied {
        d.push(format!(
            "status: conntrack unreplied={}, flowtop {status:?}",
            ct.unreplied
        ));
    }
    if ju64(f, "timeout").is_none_or(|t| t.abs_diff(ct.timeout) > 5) {
        d.push(format!(
            "timeout (±5 s): conntrack {}, flowtop {}",
            ct.timeout,
            get("timeout")
        ));
    }
    d
}

/// (id, state) pairs: two listings with equal pairs saw the same table.
fn fingerprint(list: &[CtEntry]) -> BTreeSet<(u32, Option<String>)> {
    list.iter().map(|e| (e.id, e.state.clone())).collect()
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn once_json_matches_conntrack_list() {
    if !require_root() {
        return;
    }
    let (client, server) = Netns::pair();
    let _srv = Agent::server(&server, 5001);
    let mut cl = Agent::client(&client);

    // TCP held open (v4 with data, v6), one closed TCP (TIME_WAIT), UDP, ICMP.
    let (c4, _) = cl.tcp_connect(SERVER_V4, 5001);
    cl.tcp_send(c4, 1000);
    let _c6 = cl.tcp_connect(SERVER_V6, 5001);
    let (closed, _) = cl.tcp_connect(SERVER_V4, 5001);
    cl.tcp_close(closed);
    cl.udp_exchange(SERVER_V4, 5001);
    cl.udp_exchange(SERVER_V6, 5001);
    cl.ping(SERVER_V4, 4242);
    cl.ping(SERVER_V6, 4343);
    // Public addresses and SCTP only through conntrack -I.
    client.conntrack(
        "-I -s 8.8.8.8 -d 1.1.1.1 -p tcp --sport 40000 --dport 443 --state ESTABLISHED -t 300 -u ASSURED",
    );
    client.conntrack("-I -s 2001:4860:4860::8888 -d 2606:4700:4700::1111 -p tcp --sport 40001 --dport 443 --state SYN_SENT -t 300");
    client.conntrack("-I -s 8.8.8.8 -d 1.1.1.1 -p sctp --sport 40000 --dport 443 --orig-vtag 1 --reply-vtag 2 --state ESTABLISHED -t 300 -u ASSURED");

    // The two dumps are not atomic: retry until the table did not change
    // while flowtop read it.
    let mut attempt = 0;
    let (list, run) = loop {
        attempt += 1;
        let before = client.conntrack_list();
        let run = flowtop_once(&client, &["--once", "--json", "-46TUIS"]);
        let after = client.conntrack_list();
        if fingerprint(&before) == fingerprint(&after) || attempt == 3 {
            break (after, run);
        }
    };
    run.assert_ok("flowtop --once --json -46TUIS");

    // The setup must have produced what we compare against.
    let protos: BTreeSet<(&str, &str)> = list
        .iter()
        .map(|e| (e.family.as_str(), e.proto.as_str()))
        .collect();
    for want in [
        ("ipv4", "tcp"),
        ("ipv6", "tcp"),
        ("ipv4", "udp"),
        ("ipv6", "udp"),
        ("ipv4", "icmp"),
        ("ipv6", "icmpv6"),
        ("ipv4", "sctp"),
    ] {
        assert!(
            protos.contains(&want),
            "test setup: conntrack -L has no {want:?} entry: {list:#?}"
        );
    }
    assert!(
        list.len() >= 10,
        "test setup: expected >= 10 entries, conntrack -L shows {}: {list:#?}",
        list.len()
    );

    let flows = run.flows();
    let mut by_id: BTreeMap<u32, &Value> = BTreeMap::new();
    let mut problems = Vec::new();
    for f in &flows {
        match flow_id(f) {
            Some(id) => {
                if by_id.insert(id, f).is_some() {
                    problems.push(format!("id {id} printed twice"));
                }
            }
            None => problems.push(format!("flow without numeric id: {f}")),
        }
    }
    for ct in &list {
        match by_id.get(&ct.id) {
            None => problems.push(format!("missing in flowtop: {ct:?}")),
            Some(f) => {
                for d in diff_entry(ct, f) {
                    problems.push(format!(
                        "id {} ({} {} -> {}): {d}",
                        ct.id, ct.proto, ct.src, ct.dst
                    ));
                }
            }
        }
    }
    let kernel_ids = ids(&list);
    for (id, f) in &by_id {
        if !kernel_ids.contains(id) {
            problems.push(format!(
                "flowtop printed an entry conntrack -L does not list: {f}"
            ));
        }
    }
    if flows.len() != list.len() {
        problems.push(format!(
            "entry count: conntrack -L {}, flowtop {}",
            list.len(),
            flows.len()
        ));
    }
    assert!(
        problems.is_empty(),
        "flowtop --once --json -46TUIS disagrees with conntrack -L:\n  {}\n--- conntrack -L:\n{}\n--- flowtop:\n{}\n--- stderr:\n{}",
        problems.join("\n  "),
        list.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>().join("\n"),
        run.stdout,
        run.stderr
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn selection_flags() {
    if !require_root() {
        return;
    }
    let ns = Netns::with_conntrack();
    let tcp = "-p tcp --sport 40000 --dport 443 --state ESTABLISHED -u ASSURED";
    let udp = "-p udp --sport 40000 --dport 53";
    let udplite = "-p udplite --sport 40000 --dport 5000";
    let sctp = "-p sctp --sport 40000 --dport 3868 --orig-vtag 1 --reply-vtag 2 --state ESTABLISHED";
    let v4 = "-s 203.0.113.1 -d 198.51.100.1";
    let v6 = "-s 2001:db8::10 -d 2001:db8::20";
    for fam in [v4, v6] {
        for p in [tcp, udp, udplite, sctp] {
            ns.conntrack(&format!("-I {fam} {p} -t 300"));
        }
    }
    ns.conntrack(&format!(
        "-I {v4} -p icmp --icmp-type 8 --icmp-code 0 --icmp-id 7 -t 300"
    ));
    ns.conntrack(&format!(
        "-I {v6} -p icmpv6 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 7 -t 300"
    ));

    let list = ns.conntrack_list();
    assert_eq!(list.len(), 10, "test setup: conntrack -L: {list:#?}");

    type Sel = fn(&CtEntry) -> bool;
    let cases: [(&[&str], &str, Sel); 8] = [
        (&[], "default: tcp, both families", |e| e.proto == "tcp"),
        (&["-4"], "ipv4 tcp", |e| e.family == "ipv4" && e.proto == "tcp"),
        (&["-6", "-U"], "ipv6 udp+udplite", |e| {
            e.family == "ipv6" && (e.proto == "udp" || e.proto == "udplite")
        }),
        (&["-S"], "sctp, both families", |e| e.proto == "sctp"),
        (&["-I"], "icmp+icmpv6", |e| {
            e.proto == "icmp" || e.proto == "icmpv6"
        }),
        (&["-6"], "ipv6 tcp", |e| e.family == "ipv6" && e.proto == "tcp"),
        (&["-4", "-U", "-S"], "ipv4 udp+udplite+sctp", |e| {
            e.family == "ipv4" && matches!(e.proto.as_str(), "udp" | "udplite" | "sctp")
        }),
        (&["-4", "-6", "-T", "-U", "-I", "-S"], "everything", |_| true),
    ];
    let mut problems = Vec::new();
    for (flags, what, sel) in cases {
        let mut args = vec!["--once", "--json"];
        args.extend_from_slice(flags);
        let ctx = format!("flowtop {}", args.join(" "));
        let run = flowtop_once(&ns, &args);
        run.assert_ok(&ctx);
        let want: BTreeSet<u32> = list.iter().filter(|e| sel(e)).map(|e| e.id).collect();
        let got: BTreeSet<u32> = run.flows().iter().filter_map(|f| flow_id(f)).collect();
        if want != got || run.flows().len() != want.len() {
            let show = |ids: &BTreeSet<u32>| -> Vec<String> {
                list.iter()
                    .filter(|e| ids.contains(&e.id))
                    .map(|e| format!("{} {}", e.family, e.proto))
                    .collect()
            };
            let missing: BTreeSet<u32> = want.difference(&got).copied().collect();
            let extra: BTreeSet<u32> = got.difference(&want).copied().collect();
            problems.push(format!(
                "{ctx} ({what}): missing {:?}, unexpected {:?}, {} lines for {} entries",
                show(&missing),
                run.flows()
                    .iter()
                    .filter(|f| flow_id(f).is_some_and(|i| extra.contains(&i)))
                    .map(|f| format!("{} {}", f["family"], f["proto"]))
                    .collect::<Vec<_>>(),
                run.flows().len(),
                want.len()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "selection flags:\n  {}",
        problems.join("\n  ")
    );
}
