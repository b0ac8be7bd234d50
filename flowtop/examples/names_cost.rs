//! The cost of the name captures (issue 13) on the traffic they watch:
//! flowtop's eBPF programs attached with inspection on (the ingress
//! program, stream and datagram capture in the egress program) against the
//! same programs with inspection off (`--no-inspect`: no ingress program,
//! capture code dead for the verifier) and against no programs at all.
//! Run as root; `cargo xtask bench names` records the output.
//!
//! Usage: `names_cost [ROUNDS] [BULK_MIB]` (defaults 11 and 256). Prints a
//! markdown report on stdout: the per-round figures, then one summary
//! table with the medians and the on / off and off / none ratios.
//!
//! Measurements, each side in a fresh network namespace with only `lo` up
//! (so that sockets of earlier sides, TIME_WAIT ones among them, never
//! weigh on later ones; see `attribution_cost.rs`):
//! - one-byte TCP ping-pong (TCP_NODELAY) between a connecting client and
//!   an accepted server socket: CPU time of the one thread that runs the
//!   whole loopback path, per round trip;
//! - one-byte UDP ping-pong between two connected sockets, the same way;
//! - bulk TCP: BULK_MIB MiB written in 64 KiB chunks by the connecting
//!   side, read by the accepted side on another thread: wall-clock MB/s.
//!
//! The ping-pongs are timed after 5 000 untimed round trips on the same
//! sockets: by then the client's first 4 KiB were captured (a 1-byte
//! exchange sends 4 096 segments before its stream capture ends) and the
//! UDP tuple's datagram budget is spent, so the figures are the steady
//! state every later packet pays. The bulk transfer includes its
//! connection's start (its first 4 KiB leave in one segment).
//!
//! Sides rotate their order round by round (each first, second and last
//! equally often) to cancel drift; ratios are per round, then the median.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/pingpong.rs"]
mod pingpong;

use pingpong::{in_fresh_netns, median, order_of_round, pct, tcp_ping_pongs, CpuClock, Run};

/// Round trips per ping-pong measurement.
const PING_PONGS: usize = 20_000;
/// Untimed round trips before each ping-pong measurement.
const WARM_UP: usize = 5_000;
/// Bulk transfer chunk.
const CHUNK: usize = 64 * 1024;

fn udp_ping_pongs(n: usize) -> Duration {
    let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
    a.connect(b.local_addr().expect("addr")).expect("connect");
    b.connect(a.local_addr().expect("addr")).expect("connect");
    let mut byte = [0u8; 1];
    let round = |byte: &mut [u8; 1]| {
        a.send(b"x").expect("send");
        b.recv(byte).expect("recv");
        b.send(b"y").expect("send");
        a.recv(byte).expect("recv");
    };
    for _ in 0..WARM_UP {
        round(&mut byte);
    }
    let t = CpuClock::now();
    for _ in 0..n {
        round(&mut byte);
    }
    t.elapsed()
}

/// MB/s (10^6 bytes) of one bulk transfer of `bytes` over loopback.
fn bulk(bytes: usize) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reader = std::thread::spawn(move || {
        let (mut server, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0;
        while got < bytes {
            let n = server.read(&mut buf).expect("read");
            assert!(n > 0, "early EOF");
            got += n;
        }
    });
    let chunk = vec![0x5a_u8; CHUNK];
    let t = Instant::now();
    let mut client = TcpStream::connect(addr).expect("connect");
    let mut sent = 0;
    while sent < bytes {
        let n = CHUNK.min(bytes - sent);
        client.write_all(&chunk[..n]).expect("write");
        sent += n;
    }
    reader.join().expect("reader");
    let secs = t.elapsed().as_secs_f64();
    bytes as f64 / secs / 1e6
}

/// One side's figures.
#[derive(Clone, Copy, Default)]
struct Side {
    /// ns per round trip.
    tcp: f64,
    udp: f64,
    /// MB/s.
    bulk: f64,
}

fn ns_per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e9 / n as f64
}

/// Runs one side in a new network namespace; returns the figures and the
/// namespace (kept open until the end of the run).
fn measure_side(bulk_bytes: usize) -> (Side, File) {
    in_fresh_netns(move || Side {
        tcp: ns_per(tcp_ping_pongs(WARM_UP, PING_PONGS), PING_PONGS),
        udp: ns_per(udp_ping_pongs(PING_PONGS), PING_PONGS),
        bulk: bulk(bulk_bytes),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    None,
    Off,
    On,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::Off => "off",
            Kind::On => "on",
        }
    }
}

struct Row {
    order: [Kind; 3],
    none: Side,
    off: Side,
    on: Side,
    /// Name captures delivered while the "on" side ran, and those lost.
    captures: u64,
    lost: String,
}

/// Measures one side with flowtop's programs attached (`inspect` on or off).
fn with_programs(inspect: bool, bulk_bytes: usize) -> (Side, File, u64, String) {
    let captures = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&captures);
    let handle = flowtop::ebpf::attach_sock_events_inspecting(inspect)
        .and_then(|a| {
            a.start_batch_reader(move |batch| {
                counter.fetch_add(batch.names.len() as u64, Ordering::Relaxed);
                true
            })
        })
        .unwrap_or_else(|why| panic!("the eBPF programs are unavailable: {why}"));
    let (side, ns) = measure_side(bulk_bytes);
    // Let the reader drain what the last packets produced.
    std::thread::sleep(Duration::from_millis(300));
    let lost = handle
        .lost_name_events()
        .map_or_else(|e| format!("? ({e})"), |n| n.to_string());
    drop(handle);
    (side, ns, captures.load(Ordering::Relaxed), lost)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args
        .next()
        .map(|a| a.parse().expect("ROUNDS: a number"))
        .unwrap_or(11);
    let bulk_mib: usize = args
        .next()
        .map(|a| a.parse().expect("BULK_MIB: a number"))
        .unwrap_or(256);
    let bulk_bytes = bulk_mib << 20;
    let run = Run::start();

    let _warm_up = measure_side(bulk_bytes);
    let mut namespaces = Vec::new();
    let mut rows = Vec::new();
    for round in 1..=rounds {
        let order = order_of_round([Kind::None, Kind::Off, Kind::On], round);
        let mut row = Row {
            order,
            none: Side::default(),
            off: Side::default(),
            on: Side::default(),
            captures: 0,
            lost: String::new(),
        };
        for kind in order {
            match kind {
                Kind::None => {
                    let (side, ns) = measure_side(bulk_bytes);
                    row.none = side;
                    namespaces.push(ns);
                }
                Kind::Off => {
                    let (side, ns, _, _) = with_programs(false, bulk_bytes);
                    row.off = side;
                    namespaces.push(ns);
                }
                Kind::On => {
                    let (side, ns, captures, lost) = with_programs(true, bulk_bytes);
                    row.on = side;
                    row.captures = captures;
                    row.lost = lost;
                    namespaces.push(ns);
                }
            }
        }
        rows.push(row);
    }
    let mut o = run.finish(&format!(
        "cargo build --release -p flowtop --example names_cost && \
         flock /tmp/flowtop-root.lock target/release/examples/names_cost {rounds} {bulk_mib}"
    ));
    drop(namespaces);

    let _ = writeln!(
        o,
        "{rounds} rounds of three sides in a rotating order: no programs (none), flowtop's programs \
         with `--no-inspect` (off), flowtop's programs with the name captures (on). Per side, in a \
         fresh network namespace: {PING_PONGS} one-byte TCP and UDP ping-pongs after {WARM_UP} \
         untimed ones (thread CPU time per round trip: steady state, first 4 KiB and datagram budget \
         already spent), and a {bulk_mib} MiB TCP transfer over loopback (wall clock, MB/s). \
         \"captures\": name captures delivered during the on side (one per 1-byte segment of each \
         connection's first 4 KiB, 3 QUIC-less UDP datagrams give none).\n"
    );
    let _ = writeln!(
        o,
        "| round | order | TCP none | TCP off | TCP on | UDP none | UDP off | UDP on | bulk none | bulk off | bulk on | captures | lost |"
    );
    let _ = writeln!(
        o,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (i, r) in rows.iter().enumerate() {
        let order: Vec<&str> = r.order.iter().map(|k| k.name()).collect();
        let _ = writeln!(
            o,
            "| {} | {} | {:.0} ns | {:.0} ns | {:.0} ns | {:.0} ns | {:.0} ns | {:.0} ns | {:.0} MB/s | {:.0} MB/s | {:.0} MB/s | {} | {} |",
            i + 1,
            order.join(", "),
            r.none.tcp,
            r.off.tcp,
            r.on.tcp,
            r.none.udp,
            r.off.udp,
            r.on.udp,
            r.none.bulk,
            r.off.bulk,
            r.on.bulk,
            r.captures,
            r.lost,
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "| measurement | none | off (`--no-inspect`) | on | on / off | off / none |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|");
    type Pick = fn(&Side) -> f64;
    let measures: [(&str, Pick, &str); 3] = [
        ("one-byte TCP ping-pong", |s| s.tcp, "ns/round trip"),
        ("one-byte UDP ping-pong (connected)", |s| s.udp, "ns/round trip"),
        ("bulk TCP transfer", |s| s.bulk, "MB/s"),
    ];
    for (name, pick, unit) in measures {
        let m = |f: fn(&Row) -> &Side| median(rows.iter().map(|r| pick(f(r))).collect());
        let (none, off, on) = (m(|r| &r.none), m(|r| &r.off), m(|r| &r.on));
        let on_off = median(rows.iter().map(|r| pick(&r.on) / pick(&r.off)).collect());
        let off_none = median(rows.iter().map(|r| pick(&r.off) / pick(&r.none)).collect());
        let _ = writeln!(
            o,
            "| {name} | {none:.0} {unit} | {off:.0} {unit} | {on:.0} {unit} | {} | {} |",
            pct(on_off),
            pct(off_none),
        );
    }
    print!("{o}");
}
