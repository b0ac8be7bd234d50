//! Process attribution from /proc: both directions of TCP, updates in the stream, never across namespaces.

use super::*;

fn comm_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_default()
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn procfs_attributes_outgoing_and_incoming_tcp() {
    if !require_root() {
        return;
    }
    let (client, server) = Netns::pair();
    // Outgoing: a client in flowtop's namespace connects to the server namespace.
    let _far_server = Agent::server(&server, 7001);
    let mut cl = Agent::client(&client);
    let (_idx, out_port) = cl.tcp_connect(SERVER_V4, 7001);
    // Incoming: a server in flowtop's namespace, connected to from the other one.
    let local_server = Agent::server(&client, 7002);
    let mut far_client = Agent::client(&server);
    let (_idx2, in_port) = far_client.tcp_connect(CLIENT_V4, 7002);

    let done = flowtop_once(&client, &["--once", "--json", "-4T", "--attribution", "procfs"]);
    done.assert_ok("procfs attribution");
    let flows = done.flows();
    let out = flows
        .iter()
        .find(|v| has_tuple(v, "tcp", CLIENT_V4, out_port, SERVER_V4, 7001))
        .unwrap_or_else(|| panic!("no outgoing flow in {flows:?}"));
    assert_eq!(ju64(out, "pid"), Some(u64::from(cl.pid())), "outgoing: {out}");
    assert_eq!(
        jstr(out, "comm"),
        Some(comm_of(cl.pid()).as_str()),
        "outgoing: {out}"
    );
    assert_eq!(jstr(out, "attribution"), Some("procfs"), "outgoing: {out}");
    assert!(
        jstr(out, "exe").is_some_and(|e| e.starts_with('/')),
        "outgoing exe: {out}"
    );

    let inc = flows
        .iter()
        .find(|v| has_tuple(v, "tcp", SERVER_V4, in_port, CLIENT_V4, 7002))
        .unwrap_or_else(|| panic!("no incoming flow in {flows:?}"));
    assert_eq!(
        ju64(inc, "pid"),
        Some(u64::from(local_server.pid())),
        "incoming: {inc}"
    );

    // The meta line says which mode ran.
    let meta = done.lines.first().expect("meta line");
    assert_eq!(jstr(meta, "attribution"), Some("procfs"), "{meta}");
    // And --attribution off leaves every flow unattributed.
    let off = flowtop_once(&client, &["--once", "--json", "-4T", "--attribution", "off"]);
    off.assert_ok("attribution off");
    assert!(off.flows().iter().all(|v| v.get("pid") == Some(&Value::Null)));
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn procfs_attribution_arrives_as_an_update_in_the_stream() {
    if !require_root() {
        return;
    }
    let (client, server) = Netns::pair();
    let _far_server = Agent::server(&server, 7003);
    let mut ft = Flowtop::start(&client, &["--json", "-t", "1", "-4T", "--attribution", "procfs"]);
    let mut cl = Agent::client(&client);
    let (_idx, port) = cl.tcp_connect(SERVER_V4, 7003);
    let pid = u64::from(cl.pid());
    // new (maybe already attributed) or a later update carrying the pid.
    let v = ft.wait_for("the connection with its pid", WAIT, |v| {
        has_tuple(v, "tcp", CLIENT_V4, port, SERVER_V4, 7003) && ju64(v, "pid") == Some(pid)
    });
    assert_eq!(jstr(&v, "attribution"), Some("procfs"), "{v}");
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn flows_of_another_namespace_with_the_same_addresses_are_not_attributed() {
    if !require_root() {
        return;
    }
    // Two pairs with identical addresses; flowtop runs in the first client.
    let (client_a, server_a) = Netns::pair();
    let (client_b, server_b) = Netns::pair();
    let _sa = Agent::server(&server_a, 7004);
    let _sb = Agent::server(&server_b, 7004);
    // Only namespace B has a process connected; A's flow comes from conntrack -I.
    let mut cb = Agent::client(&client_b);
    let (_idx, port) = cb.tcp_connect(SERVER_V4, 7004);
    client_a.conntrack(&format!(
        "-I -s {CLIENT_V4} -d {SERVER_V4} -p tcp --sport {port} --dport 7004 --state ESTABLISHED -t 300 -u ASSURED"
    ));
    let done = flowtop_once(&client_a, &["--once", "--json", "-4T", "--attribution", "procfs"]);
    done.assert_ok("namespace isolation");
    let flows = done.flows();
    let f = flows
        .iter()
        .find(|v| has_tuple(v, "tcp", CLIENT_V4, port, SERVER_V4, 7004))
        .unwrap_or_else(|| panic!("no inserted flow in {flows:?}"));
    assert_eq!(
        f.get("pid"),
        Some(&Value::Null),
        "attributed to another namespace's process: {f}"
    );
}
