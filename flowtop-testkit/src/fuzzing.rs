//! Fuzz entry points: each takes arbitrary bytes, feeds them to one parser
//! flowtop runs on untrusted input, and checks what must hold for any
//! input (no panic; every line written is valid JSON; text output has no
//! control bytes). Used by the cargo-fuzz targets in `flowtop/fuzz/` and by
//! the mutation runner `examples/fuzz.rs` (`cargo xtask fuzz`).
//!
//! There is no `flowtop.toml`: flowtop reads no configuration file besides
//! the service lists (`tcp.conf`, `udp.conf`, ...) and `geoip.conf`.
//!
//! Lives in flowtop-testkit, not in flowtop's library: nothing here is part
//! of flowtop's interface, and the targets reach flowtop through its public
//! modules only.
//!
//! Adding a target (e.g. the screen's filter language): write a
//! `pub fn NAME(data: &[u8])` here, add it to [`TARGETS`], put seed files
//! under `flowtop/fuzz/corpus/NAME/`, and add `flowtop/fuzz/fuzz_targets/NAME.rs`
//! (a copy of another target's three lines).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flowtop::attribution::ebpf_owners::{EbpfOwners, ProcInfo};
use flowtop::attribution::{How, Owner};
use flowtop::conntrack::decode::{self, Message};
use flowtop::enrich::geoip::{DbKind, GeoIp};
use flowtop::flow::model::{Family, Flow};
use flowtop::flow::table::EventKind;
use flowtop::flow::Selection;
use flowtop::output::json::JsonWriter;
use flowtop::update::install::{self, Format};

use crate::fixtures::test_flow;
use crate::reference::{decoders_agree, flow_decoders_agree};

/// A fuzz target: arbitrary bytes in, panics on a bug.
pub type Target = fn(&[u8]);

/// Every target, by name (the corpus directory names).
pub const TARGETS: &[(&str, Target)] = &[
    ("ctnetlink", ctnetlink),
    ("ctnetlink_diff", ctnetlink_diff),
    ("sock_events", sock_events),
    ("services_conf", services_conf),
    ("geoip_conf", geoip_conf),
    ("archive", archive),
    ("geoip_db", geoip_db),
    ("filter", filter),
    ("dns_response", dns_response),
    ("tls_hello", tls_hello),
    ("http_host", http_host),
    ("quic_initial", quic_initial),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Panics unless `out` is newline-terminated lines that each parse as a
/// JSON object.
fn assert_json_lines(out: &[u8]) {
    let text = std::str::from_utf8(out).expect("JSON output is UTF-8");
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("invalid JSON line ({e}): {line}"));
        assert!(v.is_object(), "not an object: {line}");
    }
}

fn write_json(flow: &Flow, owner: Option<&Owner>) {
    let mut w = JsonWriter::new(Vec::new());
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    w.reading(
        EventKind::Snapshot,
        flow,
        None,
        flowtop::flow::model::Who {
            owner,
            ..Default::default()
        },
        "2024-01-01T00:00:00Z",
        now,
    )
    .expect("writing to memory");
    assert_json_lines(&w.into_inner());
}

/// One netlink datagram from the kernel (dump reply or event): decoded with
/// every family and protocol selected, each flow written as JSON.
pub fn ctnetlink(data: &[u8]) {
    let sel = Selection::everything();
    decode::for_each_message(data, &sel, |m| {
        if let Ok(Message::Flow(_, flow)) = m {
            let _ = flow.key();
            write_json(&flow, None);
        }
    });
    // The attribute decoder alone, on the bytes after a nfgenmsg header.
    if data.len() > 4 {
        let _ = decode::peek_protocol(&data[4..]);
        let _ = decode::decode_flow(Family::Ipv4, &data[4..]);
    }
}

/// One netlink datagram through both ctnetlink decoders, which must agree
/// on every message (see [`decoders_agree`]), with everything selected and
/// with a narrow selection (the early filtering paths). The last input byte
/// (padding in most datagrams) picks the narrow selection: that protocol
/// only, IPv4 unless bit 0 is set, IPv6 unless bit 1 is.
pub fn ctnetlink_diff(data: &[u8]) {
    decoders_agree(data, &Selection::everything());
    if let Some(&pick) = data.last() {
        let mut narrow = Selection::none().with_proto(pick);
        narrow.ipv4 = pick & 1 == 0;
        narrow.ipv6 = pick & 2 == 0;
        decoders_agree(data, &narrow);
    }
    // The attribute decoders alone, on the bytes after a nfgenmsg header.
    if data.len() > 4 {
        flow_decoders_agree(Family::Ipv4, &data[4..]);
        flow_decoders_agree(Family::Ipv6, &data[4..]);
    }
}

/// Ring buffer records of the eBPF programs (88-byte `SockEvent`s, as many
/// as the input holds), joined by the owner table; each owner found is
/// written as JSON. /proc answers come from the input too (hostile
/// executable paths and names).
pub fn sock_events(data: &[u8]) {
    let size = std::mem::size_of::<flowtop_common::SockEvent>();
    let mut owners = EbpfOwners::new(None, 64);
    let proc_text = String::from_utf8_lossy(data.get(..data.len().min(64)).unwrap_or_default()).into_owned();
    let proc_of = |_pid: u32| ProcInfo {
        exe: Some(proc_text.clone()),
        leader_comm: Some(proc_text.clone()),
    };
    for record in data.chunks(size) {
        let Some(ev) = flowtop::ebpf::parse_sock_event(record) else {
            continue;
        };
        if let Some((_, _, _, owner)) = owners.apply(&ev, proc_of) {
            write_json(&test_flow(), Some(&owner));
            let text = flowtop::output::safe::terminal_safe(&owner.comm);
            assert!(!text.chars().any(char::is_control), "control char in {text:?}");
        }
    }
}

/// A service list (`tcp.conf`, `udp.conf`, ...).
pub fn services_conf(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (entries, warnings) = flowtop::enrich::services::parse(&text, "tcp.conf");
    let _ = (entries.len(), warnings.len());
}

/// `geoip.conf` (mirrors of `-u`).
pub fn geoip_conf(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (mirrors, _warnings) = flowtop::update::conf::parse(&text, "geoip.conf");
    for m in &mirrors {
        let _ = m.url("GeoLite2-City.mmdb.gz");
    }
}

/// A download of `-u`: unpacked as each format it could be, and whatever
/// comes out verified as both database kinds.
pub fn archive(data: &[u8]) {
    for format in [Format::Gz, Format::TarGz, Format::Mmdb] {
        if let Ok(bytes) = install::unpack(format, data.to_vec()) {
            for kind in [DbKind::City, DbKind::Country] {
                let _ = install::verify(&bytes, kind);
            }
        }
    }
}

/// A GeoIP database file, opened as both kinds and looked up; names from
/// the database are written as JSON (valid whatever they contain).
pub fn geoip_db(data: &[u8]) {
    for kind in [DbKind::City, DbKind::Country] {
        let Ok(geo) = GeoIp::from_bytes(data.to_vec(), kind) else {
            continue;
        };
        for ip in [
            "1.2.3.4",
            "81.2.69.160",
            "2001:db8::1",
            "203.0.113.9",
            "::ffff:8.8.8.8",
            "0.0.0.0",
        ] {
            if let Ok(ip) = ip.parse() {
                let g = geo.lookup(ip);
                let v = serde_json::json!({"geo": format!("{g:?}")});
                assert_json_lines(format!("{v}\n").as_bytes());
            }
        }
        let _ = geo.databases();
    }
}

/// The screen's `/` filter: any text parses or is refused with an error,
/// and a parsed filter matches a few flows (named, hostile, unnamed)
/// without panicking.
pub fn filter(data: &[u8]) {
    use flowtop::enrich::book::{AddressBook, NameState};
    use flowtop::enrich::services::Services;
    use flowtop::flow::table::{FlowTable, TableConfig};
    use flowtop::ui::filter::Filter;
    use flowtop::ui::rows::RowCtx;

    let text = String::from_utf8_lossy(data);
    let Ok(f) = Filter::parse(&text) else { return };
    let book = AddressBook::new();
    let mut flow = test_flow();
    book.update(flow.orig.dst, |v| {
        v.name = NameState::Name("h\u{1b}[2J\u{202e}.example".into());
        v.country = Some("NZ".into());
        v.city = Some("Wellington".into());
    });
    book.update(flow.orig.src, |v| v.scope = Some("documentation"));
    let services = Services::builtin();
    let now = std::time::Instant::now();
    let mut table = FlowTable::new(TableConfig::default(), now);
    for (id, proto, dport) in [(1, 6, Some(443)), (2, 17, Some(53)), (3, 1, None)] {
        flow.id = id;
        flow.proto = proto;
        flow.orig.dport = dport;
        table.apply_event(
            flowtop::flow::table::Change::Seen,
            flow.clone(),
            now,
            &mut flowtop::flow::table::NoOwners,
            &mut |_, _| {},
        );
    }
    let join = flowtop::attribution::join::OwnerJoin::with_index(
        Arc::new({
            let mut idx = flowtop::attribution::index::SocketIndex::default();
            idx.insert(
                6,
                std::net::SocketAddr::new(flow.orig.src, flow.orig.sport.unwrap_or(1)),
                std::net::SocketAddr::new(flow.orig.dst, 443),
                false,
                Arc::new(Owner {
                    pid: 7,
                    comm: "c\u{0}mm\n".into(),
                    exe: None,
                    uid: 0,
                    how: How::Procfs,
                    ..Default::default()
                }),
            );
            idx
        }),
        now,
    );
    table.set_owners(join.retry_all(&table), &mut |_, _| {});
    let m = f.matcher(RowCtx {
        book: &book,
        services: &services,
    });
    for e in table.iter() {
        let _ = m.matches(e);
    }
}

/// Panics if a name from a payload parser breaks its bounds, or if its
/// terminal form has control characters, or its JSON form is invalid.
fn check_name(name: &str) {
    assert!(
        name.len() <= 3 * flowtop::names::MAX_NAME,
        "name too long: {}",
        name.len()
    );
    let text = flowtop::output::safe::terminal_safe(name);
    assert!(!text.chars().any(char::is_control), "control char in {text:?}");
    let v = serde_json::json!({ "dst_name": name });
    assert_json_lines(format!("{v}\n").as_bytes());
}

/// A DNS response as a socket receives it, UDP and TCP-framed; every
/// answer's name is bounded and safe, and a name book takes them all.
pub fn dns_response(data: &[u8]) {
    use flowtop::names::book::{Limits, NameBook};
    use flowtop::names::dns::{parse_response, Framing, MAX_ANSWERS, MAX_TTL, MIN_TTL};
    let mut book = NameBook::new(Limits {
        max_entries: 16,
        max_name_bytes: 512,
    });
    let at = std::time::Instant::now();
    for framing in [Framing::Udp, Framing::Tcp] {
        let Ok(answers) = parse_response(data, framing) else {
            continue;
        };
        assert!(answers.len() <= MAX_ANSWERS);
        for a in answers {
            check_name(&a.name);
            assert!((MIN_TTL..=MAX_TTL).contains(&a.ttl));
            book.insert(Some(1), a.addr, a.name, flowtop::names::Source::Dns, at, a.ttl);
            assert!(book.len() <= 16 && book.name_bytes() <= 512);
            assert!(book.lookup(Some(1), a.addr, at).is_some());
        }
    }
}

/// The first bytes of a TLS flow: whole, and fed in segments whose sizes
/// come from the first input byte; both ways must agree on a name.
pub fn tls_hello(data: &[u8]) {
    use flowtop::names::hello::{parse_handshake, parse_records, Reassembly, MAX_HELLO};
    use flowtop::names::Step;
    let whole = parse_records(&data[..data.len().min(MAX_HELLO)], data.len() >= MAX_HELLO);
    let seg = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut r = Reassembly::new();
    let mut fed = Ok(Step::NeedMore);
    for chunk in data.chunks(seg) {
        fed = r.push(chunk);
        if fed != Ok(Step::NeedMore) {
            break;
        }
    }
    assert!(r.len() <= MAX_HELLO);
    if let Ok(Step::Done(Some(n))) = &whole {
        check_name(&n.name);
        assert_eq!(&fed, &whole, "segmented and whole disagree");
    }
    if let Ok(Step::Done(Some(n))) = parse_handshake(data, true) {
        check_name(&n.name);
    }
}

/// The first bytes of an HTTP/1 request.
pub fn http_host(data: &[u8]) {
    use flowtop::names::Step;
    if let Ok(Step::Done(Some(name))) = flowtop::names::http::host(data) {
        check_name(&name);
    }
}

/// A client's first QUIC datagram (header parsing, header protection and
/// decryption), and the same bytes as decrypted Initial frames (CRYPTO
/// reassembly and the ClientHello behind them, which random bytes would
/// never reach through the AEAD).
pub fn quic_initial(data: &[u8]) {
    use flowtop::names::quic::{initial_server_name, QuicHello};
    use flowtop::names::Step;
    if let Ok(Step::Done(Some(n))) = initial_server_name(data) {
        check_name(&n.name);
    }
    if let Ok(Step::Done(Some(n))) = QuicHello::new().push_frames(data) {
        check_name(&n.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed corpus passes every target (the CI's fuzz run starts
    /// from it; a regression input added there is checked by plain `cargo test`).
    #[test]
    fn committed_corpus_passes() {
        let root = crate::fixtures::fuzz_corpus_dir();
        let mut n = 0;
        for (name, f) in TARGETS {
            let dir = root.join(name);
            let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for e in entries.flatten() {
                let bytes = std::fs::read(e.path()).expect("corpus file");
                f(&bytes);
                n += 1;
            }
        }
        assert!(n >= TARGETS.len(), "corpus nearly empty: {n} files");
    }

    #[test]
    fn every_target_survives_trivial_inputs() {
        for (_, f) in TARGETS {
            f(&[]);
            f(&[0]);
            f(&[0xff; 300]);
        }
    }
}
