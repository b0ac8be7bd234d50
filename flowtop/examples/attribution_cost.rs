//! The cost of flowtop's eBPF socket programs on the traffic they watch:
//! loopback connect/accept/close cycles and one-byte ping-pongs, timed with
//! and without the programs attached, in the same run. Run as root through
//! `cargo xtask bench attribution`, which records the output in
//! bench/attribution.md.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CYCLES: usize = 20_000;
const PING_PONGS: usize = 100_000;
const ROUNDS: usize = 5;

fn connect_cycles(n: usize) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let t = Instant::now();
    for _ in 0..n {
        let client = TcpStream::connect(addr).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        drop(client);
        drop(server);
    }
    t.elapsed()
}

fn ping_pongs(n: usize) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    client.set_nodelay(true).expect("nodelay");
    server.set_nodelay(true).expect("nodelay");
    let mut byte = [0u8; 1];
    let t = Instant::now();
    for _ in 0..n {
        client.write_all(b"x").expect("write");
        server.read_exact(&mut byte).expect("read");
        server.write_all(b"y").expect("write");
        client.read_exact(&mut byte).expect("read");
    }
    t.elapsed()
}

fn us_per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let _warm_up = connect_cycles(2_000);
    let (mut base_c, mut with_c, mut base_p, mut with_p) = (vec![], vec![], vec![], vec![]);
    println!("Rounds alternate which side runs first. Per cycle / per round trip:\n");
    println!("| round | connect/accept/close without | with | ping-pong without | with | events | lost |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for round in 1..=ROUNDS {
        // Alternate which side goes first: loopback state (TIME_WAIT sockets,
        // port reuse) drifts during a run and must not favour one side.
        let without_first = round % 2 == 1;
        let mut without = (0.0, 0.0);
        if without_first {
            without = (
                us_per(connect_cycles(CYCLES), CYCLES),
                us_per(ping_pongs(PING_PONGS), PING_PONGS),
            );
        }
        let events = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&events);
        let handle = flowtop::ebpf::start_sock_events(move |batch| {
            counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
            true
        })
        .unwrap_or_else(|why| panic!("the eBPF socket programs are unavailable: {why}"));
        let c1 = us_per(connect_cycles(CYCLES), CYCLES);
        let p1 = us_per(ping_pongs(PING_PONGS), PING_PONGS);
        // Let the reader drain what the last packets produced.
        std::thread::sleep(Duration::from_millis(300));
        let lost = handle
            .lost_events()
            .map_or_else(|e| format!("? ({e})"), |n| n.to_string());
        drop(handle);
        if !without_first {
            without = (
                us_per(connect_cycles(CYCLES), CYCLES),
                us_per(ping_pongs(PING_PONGS), PING_PONGS),
            );
        }
        let (c0, p0) = without;
        println!(
            "| {round} | {c0:.1} us | {c1:.1} us | {p0:.2} us | {p1:.2} us | {} | {lost} |",
            events.load(Ordering::Relaxed)
        );
        base_c.push(c0);
        with_c.push(c1);
        base_p.push(p0);
        with_p.push(p1);
    }
    let (bc, wc, bp, wp) = (median(base_c), median(with_c), median(base_p), median(with_p));
    println!();
    println!(
        "- {CYCLES} connect/accept/close cycles on loopback: median {bc:.1} us without, {wc:.1} us with: \
         {:+.1}% (target under +5%: {})",
        (wc / bc - 1.0) * 100.0,
        if wc / bc < 1.05 { "met" } else { "NOT met" }
    );
    println!(
        "- {PING_PONGS} one-byte ping-pongs on an open connection: median {bp:.2} us without, {wp:.2} us with: {:+.1}%",
        (wp / bp - 1.0) * 100.0
    );
}
