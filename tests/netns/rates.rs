//! Rates that count every byte (issue 12): a loop of short transfers, each
//! shorter than the refresh interval, shows in flowtop's rates at the rate
//! it really ran at.

use super::*;

/// Serves `SIZE` bytes per connection on PORT at about `RATE` bytes per
/// second (64 KiB, then a pause), then closes: a throttled download server.
const SERVER: &str = r#"
import socket, sys, time
port, size, rate = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(16)
print("ready", flush=True)
chunk = b"x" * 65536
while True:
    c, _ = s.accept()
    t0, sent = time.monotonic(), 0
    while sent < size:
        n = min(len(chunk), size - sent)
        c.sendall(chunk[:n])
        sent += n
        ahead = t0 + sent / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    c.close()
"#;

/// Downloads from HOST:PORT in a loop for SECS seconds; prints the bytes
/// received and the seconds it ran, as JSON, at the end.
const CLIENT: &str = r#"
import json, socket, sys, time
host, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
t0 = time.monotonic()
total = transfers = 0
while time.monotonic() - t0 < secs:
    c = socket.create_connection((host, port))
    while True:
        b = c.recv(262144)
        if not b:
            break
        total += len(b)
    c.close()
    transfers += 1
print(json.dumps({"bytes": total, "secs": time.monotonic() - t0, "transfers": transfers}), flush=True)
"#;

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn short_transfers_count_in_the_rates() {
    if !require_root() || !require_tool(python()) {
        return;
    }
    const PORT: u16 = 5080;
    const SIZE: u64 = 2_000_000;
    const RATE: u64 = 4_000_000;
    let (client, server) = Netns::pair();
    let mut srv = server
        .netns_exec(
            python(),
            &[
                "-c",
                SERVER,
                &PORT.to_string(),
                &SIZE.to_string(),
                &RATE.to_string(),
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("server starts");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(srv.stdout.as_mut().expect("piped")),
        &mut ready,
    )
    .expect("server says ready");
    let mut ft = Flowtop::start(&client, &["--json", "-t", "1", "-T", "-n", "-G"]);
    let started = now_secs();
    let run = output_of(client.netns_exec(python(), &["-c", CLIENT, SERVER_V4, &PORT.to_string(), "8"]));
    let ended = now_secs();
    let measured: Value = serde_json::from_slice(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "client output {:?} ({e}); stderr {}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        )
    });
    // Two more intervals: the last transfers' bytes are read.
    std::thread::sleep(Duration::from_millis(2500));
    ft.pump();
    let _ = srv.kill();
    let _ = srv.wait();
    let bytes = measured["bytes"].as_f64().unwrap_or_default();
    let transfers = measured["transfers"].as_u64().unwrap_or_default();
    assert!(
        transfers >= 8,
        "the loop made only {transfers} transfers: {measured}"
    );
    // Each rate flowtop reports covers one interval (1 s): the sum of the
    // rates of the lines is what the flows moved, per interval, summed.
    let ours = |v: &&Value| is_flow_event(v) && jport(v, "dport") == Some(PORT);
    let lines: Vec<&Value> = ft.lines.iter().filter(ours).collect();
    let flows: BTreeSet<u32> = lines.iter().filter_map(|v| flow_id(v)).collect();
    let in_window = |v: &&&Value| {
        jstr(v, "ts")
            .and_then(rfc3339_secs)
            .is_some_and(|t| t >= started - 0.5 && t <= ended + 2.6)
    };
    // A measurement is repeated on the flow's later lines until the next
    // one (a state change carries the last rates): counted once, when the
    // flow's rates change.
    let mut last: BTreeMap<u32, (Option<f64>, Option<f64>)> = BTreeMap::new();
    let mut summed = 0.0;
    for v in lines.iter().filter(in_window) {
        let rates = (
            v.get("orig_rate_bps").and_then(Value::as_f64),
            v.get("reply_rate_bps").and_then(Value::as_f64),
        );
        let Some(id) = flow_id(v) else { continue };
        if last.insert(id, rates) != Some(rates) {
            summed += rates.1.unwrap_or_default();
        }
    }
    let window = ended + 2.5 - started;
    let real_rate = bytes / window;
    let flowtop_rate = summed / window;
    let ratio = flowtop_rate / real_rate;
    eprintln!(
        "rates: real {real_rate:.0} B/s ({bytes} bytes, {transfers} transfers, {} flows seen) \
         flowtop {flowtop_rate:.0} B/s over {window:.1} s: ratio {ratio:.3}",
        flows.len()
    );
    if !(0.8..=1.2).contains(&ratio) {
        ft.fail(&format!(
            "flowtop's rates sum to {flowtop_rate:.0} B/s, the transfers ran at {real_rate:.0} B/s ({measured})"
        ));
    }
    ft.stop();
}
