//! The CPU cost of decoding ctnetlink dump messages, per flow: the in-place
//! decoder flowtop uses (`wire`) against the crate-based reference decoder
//! (`reference`), on the same bytes in the same run.
//!
//! ```text
//! decode_cost [--flows N] [--passes K] [wire|reference|both]
//! ```
//!
//! Builds N (default 20 000) dump entries like a busy host's (IPv4, 3 in 4
//! UDP and 1 in 4 TCP with state, window scales and flags, counters on,
//! NATed replies now and then) into 16 KiB datagrams, then decodes them all
//! K times (default 20) with each decoder and prints ns per flow. For
//! instruction counts run it under callgrind: each decoder's passes are in
//! a function of their own (`decode_passes_wire`, `decode_passes_reference`)
//! whose inclusive cost, divided by N * K, is the instructions per flow:
//!
//! ```text
//! cargo build --release -p flowtop --example decode_cost
//! valgrind --tool=callgrind --callgrind-out-file=cg.out target/release/examples/decode_cost --passes 2 both
//! callgrind_annotate --inclusive=yes cg.out | grep decode_passes
//! ```

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use flowtop::conntrack::decode::{self, CtEventKind, Message};
use flowtop::flow::model::{proto, Counters, Family, Flow, ProtoState, Tuple};
use flowtop::flow::Selection;
use flowtop_testkit::ctnetlink::{self as build, Extras};

/// Datagram size of the dump reads (the kernel fills what the reader offers).
const DATAGRAM: usize = 16 * 1024;

fn v4(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(n))
}

/// The `i`th entry of the synthetic table.
fn flow(i: u32) -> Flow {
    let tcp = i.is_multiple_of(4);
    let l4 = if tcp { proto::TCP } else { proto::UDP };
    let client = v4(0x0a00_0000 + (i % 50_000));
    let server = v4(0x5db8_d800 + (i % 997)); // 93.184.216.0/22
    let (sport, dport) = (32_768 + (i % 28_000) as u16, if tcp { 443 } else { 53 });
    // One in eight is masqueraded: the reply goes to the router's address.
    let reply_dst = if i.is_multiple_of(8) {
        v4(0xc000_0201)
    } else {
        client
    };
    Flow {
        id: 0x8000_0000 | i,
        family: Family::Ipv4,
        proto: l4,
        state: tcp.then_some(ProtoState::Tcp(3)),
        orig: Tuple {
            src: client,
            dst: server,
            sport: Some(sport),
            dport: Some(dport),
            icmp: None,
        },
        reply: Tuple {
            src: server,
            dst: reply_dst,
            sport: Some(dport),
            dport: Some(sport),
            icmp: None,
        },
        status: 0b1110,
        mark: 0,
        zone: 0,
        timeout: Some(flowtop::flow::model::Timeout::from_secs(if tcp {
            431_999
        } else {
            29
        })),
        counters: Some(Counters {
            orig_packets: u64::from(i % 40 + 1),
            orig_bytes: u64::from(i % 40 + 1) * 120,
            reply_packets: u64::from(i % 30),
            reply_bytes: u64::from(i % 30) * 900,
        }),
        start_ns: None,
    }
}

/// N dump entries packed into datagrams, the last one ending with NLMSG_DONE.
fn datagrams(n: u32) -> Vec<Vec<u8>> {
    let extras = Extras {
        use_count: Some(1),
        tcp_details: true,
        ..Extras::default()
    };
    let mut out = vec![Vec::with_capacity(DATAGRAM)];
    for i in 0..n {
        let msg = build::flow_message(CtEventKind::Update, &flow(i), &extras);
        if out.last().is_some_and(|d| d.len() + msg.len() > DATAGRAM) {
            out.push(Vec::with_capacity(DATAGRAM));
        }
        out.last_mut().expect("one datagram at least").extend(msg);
    }
    out.last_mut()
        .expect("one datagram at least")
        .extend(build::done_message());
    out
}

/// Where decoded messages go.
type Sink<'a> = &'a mut dyn FnMut(Result<Message, netlink_packet_core::DecodeError>);

/// Decodes every datagram once; returns the number of flows (checked by the caller).
fn pass(dgrams: &[Vec<u8>], sel: &Selection, decode: fn(&[u8], &Selection, Sink<'_>)) -> usize {
    let mut flows = 0;
    for d in dgrams {
        decode(d, sel, &mut |m| {
            if let Ok(Message::Flow(_, f)) = m {
                black_box(&f);
                flows += 1;
            }
        });
    }
    flows
}

fn wire(d: &[u8], sel: &Selection, f: Sink<'_>) {
    decode::for_each_message(d, sel, f);
}

fn reference(d: &[u8], sel: &Selection, f: Sink<'_>) {
    flowtop_testkit::reference::for_each_message(d, sel, f);
}

#[inline(never)]
fn decode_passes_wire(dgrams: &[Vec<u8>], sel: &Selection, k: usize) -> usize {
    (0..k).map(|_| pass(dgrams, sel, wire)).sum()
}

#[inline(never)]
fn decode_passes_reference(dgrams: &[Vec<u8>], sel: &Selection, k: usize) -> usize {
    (0..k).map(|_| pass(dgrams, sel, reference)).sum()
}

fn run(name: &str, n: u32, k: usize, f: impl Fn() -> usize) {
    let t = Instant::now();
    let flows = f();
    let elapsed = t.elapsed();
    assert_eq!(flows, n as usize * k, "{name}: every entry decodes to a flow");
    println!(
        "{name:>9}: {:.1} ns per flow ({k} passes over {n} flows in {:.1} ms)",
        elapsed.as_nanos() as f64 / flows as f64,
        elapsed.as_secs_f64() * 1e3
    );
}

fn main() {
    let mut n: u32 = 20_000;
    let mut k: usize = 20;
    let mut which = "both".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .and_then(|v| v.parse().ok())
                .expect("a number after the flag")
        };
        match a.as_str() {
            "--flows" => n = value(),
            "--passes" => k = value() as usize,
            "wire" | "reference" | "both" => which = a,
            other => panic!("unknown argument {other:?}: [--flows N] [--passes K] [wire|reference|both]"),
        }
    }
    let dgrams = datagrams(n);
    let bytes: usize = dgrams.iter().map(Vec::len).sum();
    println!(
        "{n} dump entries, {} datagrams, {:.0} bytes per entry",
        dgrams.len(),
        bytes as f64 / f64::from(n)
    );
    let sel = Selection::everything();
    // The two decoders agree on this input (the tests check much more).
    let (mut a, mut b) = (Vec::new(), Vec::new());
    decode::for_each_message(&dgrams[0], &sel, |m| a.push(m.ok()));
    flowtop_testkit::reference::for_each_message(&dgrams[0], &sel, |m| b.push(m.ok()));
    assert_eq!(a, b, "the decoders disagree");
    if which != "reference" {
        run("wire", n, k, || decode_passes_wire(&dgrams, &sel, k));
    }
    if which != "wire" {
        run("reference", n, k, || decode_passes_reference(&dgrams, &sel, k));
    }
}
