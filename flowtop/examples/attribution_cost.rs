//! The cost of flowtop's eBPF socket programs on the traffic they watch:
//! loopback connect/accept/close cycles and one-byte TCP and UDP
//! ping-pongs, timed with and without the programs attached, in the same
//! run. Run as root through `cargo xtask bench attribution`, which records
//! the output in bench/attribution.md.
//!
//! Every measurement runs in a network namespace of its own, made for it:
//! each connect/accept/close cycle leaves a TIME_WAIT socket (about 14 000
//! per 20 000 cycles: loopback reuses some), and in a shared namespace they
//! pile up across measurements until the namespace's `tcp_max_tw_buckets`
//! (131 072 here) is reached; from then on closes skip TIME_WAIT and a cycle
//! costs about half. An earlier version of this benchmark ran everything in
//! the root namespace, 20 000 cycles per measurement: its tenth connect
//! measurement, round 5's "with" side, started at ~129 000 TIME_WAIT sockets
//! and reported 36.9 us against 61.1 us. The namespaces here are kept until
//! the end of the run, so no measurement pays for another's teardown.

use std::fmt::Write as _;
use std::fs::File;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[path = "common/pingpong.rs"]
mod pingpong;

use pingpong::{in_fresh_netns, median, order_of_round, pct, tcp_ping_pongs, CpuClock, Run};

/// Connect/accept/close cycles per measurement.
const CYCLES: usize = 3_000;
/// Round trips per ping-pong measurement.
const PING_PONGS: usize = 20_000;
/// Rounds; each measures both sides, alternating which goes first.
const ROUNDS: usize = 21;
/// Targets (with / without - 1), never to be loosened.
const CONNECT_TARGET: f64 = 0.05;
const PING_PONG_TARGET: f64 = 0.02;

fn connect_cycles(n: usize) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let t = CpuClock::now();
    for _ in 0..n {
        let client = TcpStream::connect(addr).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        drop(client);
        drop(server);
    }
    t.elapsed()
}

/// A connected client and an unconnected server answering with send_to,
/// as a DNS server does: both of the egress program's UDP paths.
fn udp_ping_pongs(n: usize) -> Duration {
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client
        .connect(server.local_addr().expect("addr"))
        .expect("connect");
    let mut byte = [0u8; 1];
    let t = CpuClock::now();
    for _ in 0..n {
        client.send(b"x").expect("send");
        let (_, from) = server.recv_from(&mut byte).expect("recv_from");
        server.send_to(b"y", from).expect("send_to");
        client.recv(&mut byte).expect("recv");
    }
    t.elapsed()
}

/// An egress program that only lets the packet pass (`r0 = 1; exit`),
/// attached to the same cgroup as flowtop's: what the kernel's per-packet
/// hook costs by itself, whatever a program does. Detached when dropped.
struct EmptyEgress {
    _prog: std::os::fd::OwnedFd,
    _link: std::os::fd::OwnedFd,
}

impl EmptyEgress {
    fn attach() -> Self {
        use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
        const BPF_PROG_LOAD: libc::c_long = 5;
        const BPF_LINK_CREATE: libc::c_long = 28;
        const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;
        const BPF_CGROUP_INET_EGRESS: u32 = 1;
        // The leading fields of union bpf_attr for BPF_PROG_LOAD.
        #[repr(C)]
        struct ProgLoad {
            prog_type: u32,
            insn_cnt: u32,
            insns: u64,
            license: u64,
            log_level: u32,
            log_size: u32,
            log_buf: u64,
            kern_version: u32,
            prog_flags: u32,
            prog_name: [u8; 16],
            prog_ifindex: u32,
            expected_attach_type: u32,
        }
        // ... and for BPF_LINK_CREATE.
        #[repr(C)]
        struct LinkCreate {
            prog_fd: u32,
            target_fd: u32,
            attach_type: u32,
            flags: u32,
        }
        // mov64 r0, 1; exit
        let insns: [u64; 2] = [
            u64::from_le_bytes([0xb7, 0, 0, 0, 1, 0, 0, 0]),
            u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
        ];
        let license = c"GPL";
        let mut name = [0u8; 16];
        name[..12].copy_from_slice(b"ft_bench_nop");
        let load = ProgLoad {
            prog_type: BPF_PROG_TYPE_CGROUP_SKB,
            insn_cnt: 2,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 0,
            log_size: 0,
            log_buf: 0,
            kern_version: 0,
            prog_flags: 0,
            prog_name: name,
            prog_ifindex: 0,
            expected_attach_type: BPF_CGROUP_INET_EGRESS,
        };
        // SAFETY: bpf(2) with a valid attr of the given size; the pointers
        // in it outlive the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &load as *const ProgLoad,
                std::mem::size_of::<ProgLoad>() as u32,
            )
        };
        assert!(
            fd >= 0,
            "loading the empty program: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a new descriptor the kernel just returned.
        let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let root = flowtop::ebpf::cgroup2_root().expect("a cgroup2 mount");
        let cgroup = File::open(&root).expect("open the cgroup2 root");
        let create = LinkCreate {
            prog_fd: prog.as_raw_fd() as u32,
            target_fd: cgroup.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_INET_EGRESS,
            flags: 0,
        };
        // SAFETY: as above.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_LINK_CREATE,
                &create as *const LinkCreate,
                std::mem::size_of::<LinkCreate>() as u32,
            )
        };
        assert!(
            fd >= 0,
            "attaching the empty program: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: as above.
        let link = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Self {
            _prog: prog,
            _link: link,
        }
    }
}

/// One side's three measurements, per cycle / round trip in microseconds.
#[derive(Clone, Copy, Default)]
struct Side {
    connect: f64,
    tcp: f64,
    udp: f64,
}

fn us_per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

/// Runs one side's measurements in a new network namespace with only `lo`
/// up; returns the figures and the namespace (kept open by the caller so
/// that it is torn down only at the end of the run).
fn measure_side() -> (Side, File) {
    in_fresh_netns(|| Side {
        connect: us_per(connect_cycles(CYCLES), CYCLES),
        tcp: us_per(tcp_ping_pongs(0, PING_PONGS), PING_PONGS),
        udp: us_per(udp_ping_pongs(PING_PONGS), PING_PONGS),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Without,
    Empty,
    With,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Without => "without",
            Kind::Empty => "empty",
            Kind::With => "with",
        }
    }
}

struct Row {
    order: [Kind; 3],
    without: Side,
    empty: Side,
    with: Side,
    events: u64,
    lost: String,
}

fn main() {
    let run = Run::start();

    let _warm_up = measure_side();
    let mut namespaces = Vec::new();
    let mut rows = Vec::new();
    for round in 1..=ROUNDS {
        let order = order_of_round([Kind::Without, Kind::Empty, Kind::With], round);
        let mut row = Row {
            order,
            without: Side::default(),
            empty: Side::default(),
            with: Side::default(),
            events: 0,
            lost: String::new(),
        };
        for kind in order {
            match kind {
                Kind::Without => {
                    let (side, ns) = measure_side();
                    row.without = side;
                    namespaces.push(ns);
                }
                Kind::Empty => {
                    let empty = EmptyEgress::attach();
                    let (side, ns) = measure_side();
                    drop(empty);
                    row.empty = side;
                    namespaces.push(ns);
                }
                Kind::With => {
                    let events = Arc::new(AtomicU64::new(0));
                    let counter = Arc::clone(&events);
                    let handle = flowtop::ebpf::start_sock_events(move |batch| {
                        counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        true
                    })
                    .unwrap_or_else(|why| panic!("the eBPF socket programs are unavailable: {why}"));
                    let (side, ns) = measure_side();
                    namespaces.push(ns);
                    // Let the reader drain what the last packets produced.
                    std::thread::sleep(Duration::from_millis(300));
                    row.lost = handle
                        .lost_events()
                        .map_or_else(|e| format!("? ({e})"), |n| n.to_string());
                    drop(handle);
                    row.with = side;
                    row.events = events.load(Ordering::Relaxed);
                }
            }
        }
        rows.push(row);
    }
    let mut o = run.finish(
        "cargo build --release -p flowtop -p xtask && \
         flock /tmp/flowtop-root.lock cargo xtask bench attribution",
    );
    drop(namespaces);

    let _ = writeln!(
        o,
        "{ROUNDS} rounds, each measuring three sides back to back in a rotating order: without \
         programs, with an empty cgroup_skb egress program (`r0 = 1; exit`, on the same cgroup: the \
         kernel's per-packet hook alone), and with flowtop's programs. Every side runs in a fresh \
         network namespace with only `lo` up (see the example's header for why). Per side: {CYCLES} \
         connect/accept/close cycles, {PING_PONGS} one-byte TCP ping-pongs (TCP_NODELAY), {PING_PONGS} \
         one-byte UDP ping-pongs (connected client, server answering with send_to), each on one \
         thread. Times are that thread's CPU time per cycle / round trip (the whole loopback path runs \
         on it; time the machine's other work holds the CPU is left out, the slowdown of sharing a \
         core is not); ratios are against \"without\" of the same round. \"events\" are the \
         ring-buffer events of the \"with\" side (a CREATED and a TUPLE per connection).\n"
    );
    type Pick = fn(&Side) -> f64;
    let measures: [(&str, Pick, f64); 3] = [
        ("connect/accept/close", |s| s.connect, CONNECT_TARGET),
        ("one-byte TCP ping-pong", |s| s.tcp, PING_PONG_TARGET),
        ("one-byte UDP ping-pong", |s| s.udp, PING_PONG_TARGET),
    ];
    for (m, (name, pick, _)) in measures.iter().enumerate() {
        let _ = writeln!(o, "### {name}\n");
        let extra = if m == 0 { " events | lost |" } else { "" };
        let _ = writeln!(
            o,
            "| round | order | without | empty program | with | empty / without | with / without |{extra}"
        );
        let _ = writeln!(
            o,
            "|---|---|---:|---:|---:|---:|---:|{}",
            if m == 0 { "---:|---:|" } else { "" }
        );
        for (i, r) in rows.iter().enumerate() {
            let (w0, e, w1) = (pick(&r.without), pick(&r.empty), pick(&r.with));
            let order: Vec<&str> = r.order.iter().map(|k| k.name()).collect();
            let _ = write!(
                o,
                "| {} | {} | {w0:.2} us | {e:.2} us | {w1:.2} us | {} | {} |",
                i + 1,
                order.join(", "),
                pct(e / w0),
                pct(w1 / w0),
            );
            if m == 0 {
                let _ = write!(o, " {} | {} |", r.events, r.lost);
            }
            let _ = writeln!(o);
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "### Verdicts (computed from the rows above)\n");
    let mut outliers = Vec::new();
    for (name, pick, target) in measures {
        let without = median(rows.iter().map(|r| pick(&r.without)).collect());
        let with = median(rows.iter().map(|r| pick(&r.with)).collect());
        let ratios: Vec<f64> = rows.iter().map(|r| pick(&r.with) / pick(&r.without)).collect();
        let paired = median(ratios.clone());
        let empty = median(rows.iter().map(|r| pick(&r.empty) / pick(&r.without)).collect());
        let (met, bound) = if target == CONNECT_TARGET {
            (paired < 1.0 + target, "under")
        } else {
            (paired <= 1.0 + target, "at most")
        };
        let _ = writeln!(
            o,
            "- {name}: median {without:.2} us without, {with:.2} us with; median of the rounds' \
             with / without {} (target {bound} +{:.0}%: {}); an empty egress program alone: {}",
            pct(paired),
            target * 100.0,
            if met { "met" } else { "NOT met" },
            pct(empty),
        );
        // A round far from the others' ratio is named, not silently kept.
        for (i, ratio) in ratios.iter().enumerate() {
            if (ratio / paired - 1.0).abs() > 0.15 {
                outliers.push(format!("round {} {name} ({})", i + 1, pct(*ratio)));
            }
        }
    }
    let _ = writeln!(
        o,
        "- rounds whose with / without is more than 15% away from the median: {}",
        if outliers.is_empty() {
            "none".to_owned()
        } else {
            outliers.join(", ")
        }
    );
    print!("{o}");
}
