//! Memory of the name maps at N DNS answers (default 1 000 000), and the
//! rate at which one core parses DNS responses: part of
//! `cargo xtask bench names` (issue 13), which builds this in release.
//!
//! N distinct responses (distinct names, distinct addresses, 50 receiving
//! processes), built with hickory-proto, go through
//! `flowtop::names::dns::parse_response` into a `NameBook` with its
//! default limits, as the engine would insert them. The heap is measured by
//! a counting global allocator: live bytes before and after (every message
//! is freed as it goes, so the growth is the book), and the peak.
//!
//! The parse rate: a batch of 10 000 prebuilt responses (A, AAAA, and a
//! two-link CNAME chain to an A, in turn) parsed over and over for about a
//! second; answers (address -> name pairs) per second on one core.
//!
//! `cargo run --release -p flowtop --example names_mem [-- N]`; prints a
//! markdown table.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flowtop::names::book::{Limits, NameBook};
use flowtop::names::dns::{parse_response, Framing};
use flowtop::names::Source;
use hickory_resolver::proto::op::{Message, OpCode, Query};
use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

/// The system allocator, counting live and peak bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed to the system allocator unchanged; the
// counters are only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("a valid name")
}

/// A response to `qname` (type `qtype`) holding `answers`.
fn response(id: u16, qname: &Name, qtype: RecordType, answers: Vec<Record>) -> Vec<u8> {
    let mut m = Message::response(id, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.add_query(Query::query(qname.clone(), qtype));
    for a in answers {
        m.add_answer(a);
    }
    m.to_vec().expect("the message encodes")
}

/// Answer `i` of the memory run: AAAA 2001:db8::i for host-i.bench.example.
fn distinct(i: u32) -> Vec<u8> {
    let q = name(&format!("host-{i}.bench.example."));
    let addr = Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | u128::from(i));
    let rec = Record::from_rdata(q.clone(), 300, RData::AAAA(AAAA(addr)));
    response(i as u16, &q, RecordType::AAAA, vec![rec])
}

/// Message `i` of the parse batch: an A, an AAAA, or a CNAME chain.
fn mixed(i: u32) -> Vec<u8> {
    let q = name(&format!("svc-{i}.bench.example."));
    let v4 = Ipv4Addr::new(203, 0, 113, (i % 256) as u8);
    match i % 3 {
        0 => {
            let r = Record::from_rdata(q.clone(), 60, RData::A(A(v4)));
            response(i as u16, &q, RecordType::A, vec![r])
        }
        1 => {
            let v6 = Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | u128::from(i));
            let r = Record::from_rdata(q.clone(), 60, RData::AAAA(AAAA(v6)));
            response(i as u16, &q, RecordType::AAAA, vec![r])
        }
        _ => {
            let mid = name(&format!("edge-{i}.cdn.example."));
            let end = name(&format!("lb-{i}.cdn.example."));
            let r = vec![
                Record::from_rdata(q.clone(), 60, RData::CNAME(CNAME(mid.clone()))),
                Record::from_rdata(mid, 60, RData::CNAME(CNAME(end.clone()))),
                Record::from_rdata(end, 60, RData::A(A(v4))),
            ];
            response(i as u16, &q, RecordType::A, r)
        }
    }
}

fn mib(b: usize) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .map(|s| s.replace('_', "").parse().expect("N is a number"))
        .unwrap_or(1_000_000);

    // Parse rate first, on a warm batch.
    let batch: Vec<Vec<u8>> = (0..10_000).map(mixed).collect();
    let (mut answers, mut messages) = (0u64, 0u64);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        for m in &batch {
            let a = parse_response(m, Framing::Udp).expect("a well-formed response");
            answers += a.len() as u64;
            messages += 1;
        }
    }
    let parse_s = t0.elapsed().as_secs_f64();
    drop(batch);

    // Memory: N distinct answers into the book.
    let limits = Limits::default();
    let mut book = NameBook::new(limits);
    let now = Instant::now();
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let t1 = Instant::now();
    let mut inserted = 0u64;
    for i in 0..n {
        let bytes = distinct(i);
        for a in parse_response(&bytes, Framing::Udp).expect("a well-formed response") {
            book.insert(Some(1000 + i % 50), a.addr, a.name, Source::Dns, now, a.ttl);
            inserted += 1;
        }
    }
    let insert_s = t1.elapsed().as_secs_f64();
    let after = LIVE.load(Ordering::Relaxed);
    let peak = PEAK.load(Ordering::Relaxed);
    let last: IpAddr =
        Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | u128::from(n - 1)).into();
    let found = book.lookup(Some(1000 + (n - 1) % 50), last, now).is_some();

    println!("| measure | value |");
    println!("|---|---:|");
    println!("| answers inserted (distinct names and addresses, 50 processes) | {inserted} |");
    println!(
        "| entries held (per process + host-wide; cap {}) | {} |",
        limits.max_entries,
        book.len()
    );
    println!(
        "| name bytes held (cap {}) | {} |",
        mib(limits.max_name_bytes),
        book.name_bytes()
    );
    println!(
        "| configured bound (`Limits::memory_bound`) | {} |",
        mib(limits.memory_bound())
    );
    println!(
        "| heap growth after {n} answers (counting allocator) | {} |",
        mib(after.saturating_sub(before))
    );
    println!(
        "| heap peak above the start, during the run | {} |",
        mib(peak.saturating_sub(before))
    );
    println!("| newest answer still found | {found} |");
    println!(
        "| parse + insert, one core | {:.0} answers/s |",
        inserted as f64 / insert_s
    );
    println!(
        "| parse only (A, AAAA, CNAME chains), one core | {:.0} answers/s ({:.0} messages/s) |",
        answers as f64 / parse_s,
        messages as f64 / parse_s
    );
    println!(
        "| parse cost of 10 000 answers/s, share of one core | {:.2} % |",
        10_000.0 / (answers as f64 / parse_s) * 100.0
    );
}
