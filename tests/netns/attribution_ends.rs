//! Both ends of a flow (issue 12): the initiator owns it, the process
//! holding the accepted socket is its `peer` when both ends are here; the
//! `direction`; a refused connection keeps its owner.

use super::*;

/// A forking TCP server on 127.0.0.1:`port`: each accepted connection is
/// handed to a child that sends its pid and holds the socket for `hold` s.
fn forking_server(port: u16, hold: u32) -> String {
    format!(
        "import os, socket, time\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', {port})); s.listen(8)\n\
         print('ready', flush=True)\n\
         while True:\n\
         \x20   c, _ = s.accept()\n\
         \x20   if os.fork() == 0:\n\
         \x20       s.close(); c.sendall(str(os.getpid()).encode() + b'\\n'); time.sleep({hold}); os._exit(0)\n\
         \x20   c.close()\n"
    )
}

/// A client that connects to 127.0.0.1:`port`, prints
/// `its-pid server-child-pid local-port` and holds the connection `hold` s.
fn holding_client(port: u16, hold: u32) -> String {
    format!(
        "import os, socket, time\n\
         c = socket.create_connection(('127.0.0.1', {port}))\n\
         child = c.makefile().readline().strip()\n\
         print(os.getpid(), child, c.getsockname()[1], flush=True)\n\
         time.sleep({hold})\n"
    )
}

/// Reads one line of a child's stdout.
fn first_line(child: &mut std::process::Child) -> String {
    use std::io::BufRead as _;
    let out = child.stdout.as_mut().expect("stdout piped");
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line).expect("a line");
    line.trim().to_owned()
}

fn spawn_python(ns: &Netns, script: &str) -> std::process::Child {
    ns.cmd(python())
        .args(["-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python starts")
}

/// The first line so far, or arriving within [`WAIT`], that satisfies
/// `pred`, wherever it is in the stream: the lines of several flows
/// interleave in any order (an owner can come a moment after another
/// flow's lines), which `Flowtop::wait_for`'s cursor does not allow.
fn any_line(ft: &mut Flowtop, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let found = poll_until(WAIT, Duration::from_millis(50), || {
        ft.pump();
        ft.lines.iter().find(|v| pred(v)).cloned()
    });
    found.unwrap_or_else(|| ft.fail(&format!("no line for {what}")))
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn a_loopback_flow_is_the_clients_and_names_the_forked_server_child_as_peer() {
    if !require_root() {
        return;
    }
    let ns = Netns::with_conntrack();
    ns.ip(&["link", "set", "lo", "up"]);
    let mut server = Killed(spawn_python(&ns, &forking_server(7100, 6)));
    assert_eq!(first_line(&mut server.0), "ready");
    let mut ft = Flowtop::start(&ns, &["--json", "-t", "1", "-4T", "--attribution", "ebpf"]);
    let mut client = Killed(spawn_python(&ns, &holding_client(7100, 6)));
    let line = first_line(&mut client.0);
    let w: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().expect("number"))
        .collect();
    let (client_pid, child_pid, lport) = (w[0], w[1], w[2] as u16);
    let is_flow = |v: &Value| has_tuple(v, "tcp", "127.0.0.1", lport, "127.0.0.1", 7100);
    // The peer is found by a /proc scan (every interval): eBPF does not see
    // who accepts.
    let v = ft.wait_for("the loopback flow with both ends", WAIT, |v| {
        is_flow(v) && ju64(v, "pid") == Some(client_pid) && ju64(v, "peer_pid") == Some(child_pid)
    });
    assert_eq!(jstr(&v, "direction"), Some("local"), "{v}");
    assert!(jstr(&v, "peer_comm").is_some(), "{v}");
    // No line ever gave the flow to the server.
    ft.pump();
    let wrong: Vec<&Value> = ft
        .lines
        .iter()
        .filter(|v| {
            is_flow(v)
                && v.get("pid")
                    .and_then(Value::as_u64)
                    .is_some_and(|p| p != client_pid)
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "the flow was given to another process: {wrong:?}"
    );

    // --once asks the same join: the same owner and peer.
    let once = flowtop_once(&ns, &["--once", "--json", "-4T"]);
    once.assert_ok("--once --json");
    let snap = once
        .flows()
        .into_iter()
        .find(|v| is_flow(v))
        .unwrap_or_else(|| panic!("the flow in --once: {}", once.stdout));
    assert_eq!(
        (ju64(snap, "pid"), ju64(snap, "peer_pid"), jstr(snap, "direction")),
        (Some(client_pid), Some(child_pid), Some("local")),
        "{snap}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn direction_is_out_in_and_forward() {
    if !require_root() {
        return;
    }
    let (client, server) = Netns::pair();
    let _out_server = Agent::server(&server, 7101);
    let in_server = Agent::server(&client, 7102);
    let mut ft = Flowtop::start(&client, &["--json", "-t", "1", "-4T", "--attribution", "ebpf"]);
    let mut local_agent = Agent::client(&client);
    let (_i, out_port) = local_agent.tcp_connect(SERVER_V4, 7101);
    let mut remote_agent = Agent::client(&server);
    let (_j, in_port) = remote_agent.tcp_connect(CLIENT_V4, 7102);
    // A flow neither end of which is here, as conntrack records a forwarded one.
    client.conntrack(
        "-I -s 203.0.113.5 -d 198.51.100.9 -p tcp --sport 40000 --dport 443 --state ESTABLISHED -t 300 -u ASSURED",
    );
    let out = any_line(&mut ft, "the outgoing flow", |v| {
        has_tuple(v, "tcp", CLIENT_V4, out_port, SERVER_V4, 7101) && ju64(v, "pid").is_some()
    });
    assert_eq!(jstr(&out, "direction"), Some("out"), "{out}");
    assert_eq!(out.get("peer_pid"), Some(&Value::Null), "{out}");
    let inc = any_line(&mut ft, "the incoming flow with its server's process", |v| {
        has_tuple(v, "tcp", SERVER_V4, in_port, CLIENT_V4, 7102) && ju64(v, "pid").is_some()
    });
    assert_eq!(jstr(&inc, "direction"), Some("in"), "{inc}");
    assert_eq!(ju64(&inc, "pid"), Some(u64::from(in_server.pid())), "{inc}");
    let fwd = any_line(&mut ft, "the forwarded flow", |v| {
        has_tuple(v, "tcp", "203.0.113.5", 40000, "198.51.100.9", 443)
    });
    assert_eq!(jstr(&fwd, "direction"), Some("forward"), "{fwd}");
    assert_eq!(fwd.get("pid"), Some(&Value::Null), "{fwd}");
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn a_refused_connection_keeps_its_owner() {
    if !require_root() {
        return;
    }
    let (client, server) = Netns::pair();
    // -t 30: no /proc scan can catch the process; only eBPF, and the held
    // DESTROY, can.
    let mut ft = Flowtop::start(&client, &["--json", "-t", "30", "-4T", "--attribution", "ebpf"]);
    // Other sockets keep being made and used on the machine (here in the
    // peer's namespace, whose socket events flowtop sees too), so socket
    // batches keep coming: one drained just before a DESTROY arrived but
    // handed over after it must not let that DESTROY go without its
    // owner. Without the churn the race is rare; with it, it was certain.
    server.ip(&["link", "set", "lo", "up"]);
    let mut churn = Churn(spawn_python(
        &server,
        "import socket, time\n\
         end = time.time() + 60\n\
         while time.time() < end:\n\
         \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         \x20   s.sendto(b'x', ('127.0.0.1', 9))\n\
         \x20   s.close()\n",
    ));
    struct Churn(std::process::Child);
    impl Drop for Churn {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut refused = Vec::new();
    for _ in 0..5 {
        let script = format!(
            "import os, socket\n\
             s = socket.socket()\n\
             try:\n    s.connect(('{SERVER_V4}', 7199))\nexcept ConnectionRefusedError:\n    pass\n\
             print(os.getpid(), s.getsockname()[1], flush=True)\n"
        );
        let mut p = spawn_python(&client, &script);
        let line = first_line(&mut p);
        assert!(p.wait().expect("python runs").success());
        let w: Vec<u64> = line
            .split_whitespace()
            .map(|x| x.parse().expect("number"))
            .collect();
        refused.push((w[0], w[1] as u16));
    }
    assert!(
        churn.0.try_wait().is_ok_and(|st| st.is_none()),
        "the socket churn stopped early"
    );
    for (pid, port) in refused {
        let v = ft.wait_for("the refused connection's destroy", WAIT, |v| {
            jstr(v, "event") == Some("destroy") && has_tuple(v, "tcp", CLIENT_V4, port, SERVER_V4, 7199)
        });
        assert_eq!(ju64(&v, "pid"), Some(pid), "the destroy line lost its owner: {v}");
    }
}
