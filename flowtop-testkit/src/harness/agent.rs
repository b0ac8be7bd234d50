//! The traffic agent: `agent.py` (TCP/UDP echo server, client, ICMP echo,
//! UDP flood) under python3 in a namespace.

use std::io::Write;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{collect, lines_of, locked, python, wait_timeout, Netns, WAIT};

/// Traffic agent (TCP/UDP echo server, client, ICMP echo, UDP flood).
const AGENT_PY: &str = include_str!("agent.py");

/// A python3 helper running `agent.py` in a namespace. It exits when its
/// stdin is closed (on drop), and is killed if that does not work.
pub struct Agent {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    what: String,
}

impl Agent {
    fn spawn(ns: &Netns, args: &[&str]) -> Agent {
        let mut full = vec!["-c", AGENT_PY];
        full.extend_from_slice(args);
        let mut cmd = ns.netns_exec(python(), &full);
        let what = format!("agent {} in {}", args.join(" "), ns.name);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdin = child.stdin.take();
        let rx = lines_of(child.stdout.take().expect("stdout piped"));
        let (stderr, _h) = collect(child.stderr.take().expect("stderr piped"));
        Agent {
            child,
            stdin,
            rx,
            stderr,
            what,
        }
    }

    fn expect_line(&mut self, what: &str, timeout: Duration) -> String {
        match self.rx.recv_timeout(timeout) {
            Ok(l) => l,
            Err(e) => {
                let st = wait_timeout(&mut self.child, Duration::from_millis(500));
                panic!(
                    "{}: no answer to {what} ({e:?}, exit {st:?})\nstderr:\n{}",
                    self.what,
                    locked(&self.stderr)
                );
            }
        }
    }

    /// TCP+UDP echo server on `port` (IPv4 and IPv6), ready when this returns.
    pub fn server(ns: &Netns, port: u16) -> Agent {
        let mut a = Agent::spawn(ns, &["server", &port.to_string()]);
        let l = a.expect_line("startup", WAIT);
        assert_eq!(l, "ready", "{}: unexpected first line", a.what);
        a
    }

    /// The agent's process id (`ip netns exec` execs python in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client that takes commands (see `agent.py`).
    pub fn client(ns: &Netns) -> Agent {
        Agent::spawn(ns, &["client"])
    }

    /// Sends one command, returns the words after `ok`.
    pub fn cmd(&mut self, line: &str) -> Vec<String> {
        let what = self.what.clone();
        let w = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{what}: stdin closed"));
        writeln!(w, "{line}").unwrap_or_else(|e| panic!("{what}: cannot send {line:?}: {e}"));
        w.flush()
            .unwrap_or_else(|e| panic!("{what}: cannot send {line:?}: {e}"));
        let l = self.expect_line(line, Duration::from_secs(20));
        let mut words = l.split_whitespace().map(str::to_string);
        assert_eq!(
            words.next().as_deref(),
            Some("ok"),
            "{what}: {line:?} answered {l:?}"
        );
        words.collect()
    }

    /// Opens a TCP connection, returns (connection index, local port).
    pub fn tcp_connect(&mut self, host: &str, port: u16) -> (usize, u16) {
        let w = self.cmd(&format!("tcp {host} {port}"));
        let idx = w.first().and_then(|s| s.parse().ok()).expect("connection index");
        let lport = w.get(1).and_then(|s| s.parse().ok()).expect("local port");
        (idx, lport)
    }

    pub fn tcp_send(&mut self, idx: usize, bytes: usize) {
        self.cmd(&format!("send {idx} {bytes}"));
    }

    pub fn tcp_close(&mut self, idx: usize) {
        self.cmd(&format!("close {idx}"));
    }

    /// One UDP request/reply exchange, returns the local port.
    pub fn udp_exchange(&mut self, host: &str, port: u16) -> u16 {
        let w = self.cmd(&format!("udp {host} {port}"));
        w.first().and_then(|s| s.parse().ok()).expect("local port")
    }

    /// ICMP(v6) echo request/reply with identifier `ident`.
    pub fn ping(&mut self, host: &str, ident: u16) {
        self.cmd(&format!("ping {host} {ident}"));
    }

    /// One datagram to each of `n` ports from `first_port` on, from one socket.
    pub fn udp_flood(&mut self, host: &str, first_port: u16, n: u32) {
        self.cmd(&format!("flood {host} {first_port} {n}"));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if wait_timeout(&mut self.child, Duration::from_secs(1)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
