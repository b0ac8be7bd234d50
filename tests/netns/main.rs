//! Root-only integration tests of the `flowtop` binary, each in its own
//! network namespaces, one module per topic. Plain `cargo test` skips them
//! (`#[ignore]`); run them as root with
//! `cargo test -p flowtop --test netns -- --ignored --test-threads=1`
//! (which `cargo xtask test` does), or one topic with a filter such as
//! `sysctls::`. The harness is `flowtop_testkit::harness`.

mod attribution_ebpf;
mod attribution_ends;
mod attribution_exec;
mod attribution_procfs;
mod containers;
mod counters;
mod dumps;
mod export;
mod journal_record;
mod names;
mod packaging;
mod rates;
mod run;
mod scorecard;
mod services;
mod snapshot;
mod startup;
mod stream;
mod sysctls;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use flowtop_testkit::harness::*;
use serde_json::{json, Value};

/// Runs `cmd` (a short-lived program that prints its local port and exits)
/// to the end; returns its pid and that port. `ip netns exec` execs the
/// program in place, so the pid is the program's and this process its parent.
fn run_printing_port(mut cmd: std::process::Command, what: &str) -> (u32, u16) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    let pid = child.id();
    let out = child.wait_with_output().expect("the program runs");
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{what} printed no local port"));
    (pid, port)
}

/// An HTTP server (TCP `http`, answering "hello") and a UDP echo server
/// (`udp`) on SERVER_V4 in `server`, started and ready.
fn http_and_udp_echo(server: &Netns, http: u16, udp: u16) -> flowtop_testkit::names::Proc {
    const SERVERS_PY: &str = r#"
import http.server, socket, sys, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((sys.argv[1], int(sys.argv[3])))
print("ready", flush=True)
while True:
    data, peer = u.recvfrom(2048)
    u.sendto(data, peer)
"#;
    let mut cmd = server.cmd(python());
    cmd.args(["-c", SERVERS_PY, SERVER_V4])
        .args([http, udp].map(|p| p.to_string()));
    let mut servers = flowtop_testkit::names::Proc::spawn(cmd).expect("the servers");
    assert_eq!(servers.line(WAIT).expect("the servers start"), "ready");
    servers
}
