//! `--once` without `--json`: a summary line and an aligned table, like `top -b`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::SystemTime;

use super::ends::{direction_marker, ends, marked_name, remote_asked_name};
use super::format::{age_secs, human_age, human_bytes};
use super::safe::terminal_safe;
use crate::enrich::book::AddressBook;
use crate::enrich::services::Services;
use crate::flow::model::proto;
use crate::flow::table::{Aggregates, Entry};

/// Options of the text table.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextOptions {
    /// Show the source side too (`-s`).
    pub show_src: bool,
    /// Rates in bits per second (`-b`).
    pub bits: bool,
}

fn endpoint(addr: &IpAddr, port: Option<u16>) -> String {
    match (addr, port) {
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    }
}

/// The summary line above the table.
pub fn summary(version: &str, flows: usize, agg: &Aggregates, attribution: &str) -> String {
    let mut s = format!("flowtop {version} - {flows} flows");
    if !agg.by_proto.is_empty() {
        let parts: Vec<String> = agg.by_proto.iter().map(|(p, n)| format!("{p} {n}")).collect();
        let _ = write!(s, " ({})", parts.join(", "));
    }
    if !agg.by_state.is_empty() {
        let parts: Vec<String> = agg.by_state.iter().map(|(p, n)| format!("{p} {n}")).collect();
        let _ = write!(s, " - states: {}", parts.join(", "));
    }
    let _ = write!(s, " - attribution: {attribution}");
    s
}

/// The table, sorted by total bytes (most first), then id.
/// The HOST and GEO cells of an address: its name, and its country and
/// city or why it has none ("private", ...); "-" when unknown.
fn host_and_geo(book: &AddressBook, ip: IpAddr) -> (String, String) {
    book.with(ip, |v| {
        let Some(v) = v else {
            return ("-".to_owned(), "-".to_owned());
        };
        let host = v
            .host()
            .map_or_else(|| "-".to_owned(), |h| terminal_safe(h).into_owned());
        let geo = match (v.scope, v.country.as_deref(), v.city.as_deref()) {
            (Some(label), _, _) => label.to_owned(),
            (None, Some(cc), Some(city)) => format!("{} {}", terminal_safe(cc), terminal_safe(city)),
            (None, Some(cc), None) => terminal_safe(cc).into_owned(),
            _ => "-".to_owned(),
        };
        (host, geo)
    })
}

pub fn table(
    entries: &mut [&Entry],
    now: SystemTime,
    opts: TextOptions,
    services: &Services,
    book: &AddressBook,
) -> String {
    entries.sort_by(|a, b| {
        let total = |e: &Entry| e.flow.counters.map_or(0, |c| c.orig_bytes + c.reply_bytes);
        total(b).cmp(&total(a)).then(a.flow.id.cmp(&b.flow.id))
    });
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(entries.len() + 1);
    let mut header = vec!["PROCESS", "PID", "PROTO", "STATE", "AGE"];
    if opts.show_src {
        header.extend(["SOURCE", "SRC HOST", "SRC GEO"]);
    }
    // ADDRESS is the remote end, after who started the flow (as on the
    // screen: → out, ← in, ↔ local, ⇄ forwarded, · not known); SOURCE
    // the local one.
    header.extend(["ADDRESS", "HOST", "GEO", "SERVICE", "NAT", "BYTES", "RATE"]);
    rows.push(header.iter().map(|s| (*s).to_owned()).collect());
    let unit = if opts.bits { 8.0 } else { 1.0 };
    let suffix = if opts.bits { "b/s" } else { "B/s" };
    for e in entries.iter() {
        let f = &e.flow;
        let (process, pid) = match &e.owner {
            Some(o) => (terminal_safe(&o.comm).into_owned(), o.pid.to_string()),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let mut row = vec![
            process,
            pid,
            proto::name(f.proto).map_or_else(|| f.proto.to_string(), str::to_owned),
            f.state.map_or("-", |s| s.name()).to_owned(),
            f.start()
                .map_or_else(|| "n/a".to_owned(), |s| human_age(age_secs(s, now))),
        ];
        let ends = ends(e);
        if opts.show_src {
            row.push(endpoint(&ends.local.0, ends.local.1));
            let (host, geo) = host_and_geo(book, ends.local.0);
            row.extend([host, geo]);
        }
        row.push(format!(
            "{} {}",
            direction_marker(e.direction),
            endpoint(&ends.remote.0, ends.remote.1)
        ));
        let (mut host, geo) = host_and_geo(book, ends.remote.0);
        // The name the program asked for, with the mark of its source,
        // before the PTR name.
        if let Some(n) = remote_asked_name(e) {
            host = marked_name(n);
        }
        row.extend([host, geo]);
        row.push(
            services
                .of_flow(f)
                .map_or_else(|| "-".to_owned(), |n| terminal_safe(n).into_owned()),
        );
        // Without NAT the reply tuple mirrors the original; show it only when it does not.
        let mirrored = f.reply.src == f.orig.dst
            && f.reply.dst == f.orig.src
            && f.reply.sport == f.orig.dport
            && f.reply.dport == f.orig.sport;
        row.push(if mirrored {
            "-".to_owned()
        } else {
            format!(
                "{}<-{}",
                endpoint(&f.reply.dst, f.reply.dport),
                endpoint(&f.reply.src, f.reply.sport)
            )
        });
        match f.counters {
            Some(c) => {
                // In bytes whatever `-b` says: it is about rates.
                row.push(format!(
                    "{}/{}B",
                    human_bytes(c.orig_bytes as f64),
                    human_bytes(c.reply_bytes as f64)
                ));
                row.push(match e.rate.measured_rates() {
                    Some(r) => format!(
                        "{}/{}{suffix}",
                        human_bytes(r.orig_bytes * unit),
                        human_bytes(r.reply_bytes * unit)
                    ),
                    None => "-".to_owned(),
                });
            }
            None => {
                row.push("n/a".to_owned());
                row.push("n/a".to_owned());
            }
        }
        rows.push(row);
    }
    let cols = rows[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::model::{Counters, Family, Flow, ProtoState, Tuple};
    use crate::flow::table::{Change, NoOwners};
    use crate::flow::table::{FlowTable, TableConfig};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::time::{Duration, Instant, UNIX_EPOCH};

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn sample_table() -> FlowTable {
        let t0 = Instant::now();
        let start = 1_700_000_000_000_000_000u64;
        let mut t = FlowTable::new(TableConfig::default(), std::time::Instant::now());
        let tcp = Flow {
            id: 1,
            family: Family::Ipv4,
            proto: proto::TCP,
            state: Some(ProtoState::Tcp(3)),
            orig: Tuple {
                src: v4(192, 0, 2, 1),
                dst: v4(198, 51, 100, 7),
                sport: Some(40000),
                dport: Some(443),
                icmp: None,
            },
            reply: Tuple {
                src: v4(198, 51, 100, 7),
                dst: v4(192, 0, 2, 1),
                sport: Some(443),
                dport: Some(40000),
                icmp: None,
            },
            status: 0b1110,
            mark: 0,
            zone: 0,
            timeout: Some(crate::flow::model::Timeout::from_secs(300)),
            counters: Some(Counters {
                orig_packets: 10,
                orig_bytes: 2048,
                reply_packets: 20,
                reply_bytes: 3 << 20,
            }),
            start_ns: std::num::NonZeroU64::new(start),
        };
        let mut nat = tcp.clone();
        nat.id = 2;
        nat.counters = None;
        nat.start_ns = None;
        nat.reply.src = v4(10, 0, 0, 9);
        nat.reply.sport = Some(8443);
        let a6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let b6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
        let udp6 = Flow {
            id: 3,
            family: Family::Ipv6,
            proto: proto::UDP,
            state: None,
            orig: Tuple {
                src: a6,
                dst: b6,
                sport: Some(5353),
                dport: Some(53),
                icmp: None,
            },
            reply: Tuple {
                src: b6,
                dst: a6,
                sport: Some(53),
                dport: Some(5353),
                icmp: None,
            },
            status: 0b1000,
            timeout: Some(crate::flow::model::Timeout::from_secs(30)),
            counters: Some(Counters {
                orig_packets: 1,
                orig_bytes: 80,
                reply_packets: 0,
                reply_bytes: 0,
            }),
            start_ns: std::num::NonZeroU64::new(start + 30_000_000_000),
            ..tcp.clone()
        };
        for f in [tcp.clone(), nat, udp6] {
            t.apply_event(Change::Seen, f, t0, &mut NoOwners, &mut |_, _| {});
        }
        // A second reading two seconds later gives the TCP flow its rates.
        let mut later = tcp;
        later.counters = Some(Counters {
            orig_packets: 12,
            orig_bytes: 4096,
            reply_packets: 30,
            reply_bytes: (3 << 20) + 20480,
        });
        t.apply_event(
            Change::Seen,
            later,
            t0 + Duration::from_secs(2),
            &mut NoOwners,
            &mut |_, _| {},
        );
        t
    }

    /// The text table of `t` at the epoch, in bytes, without names or
    /// geography.
    fn plain_table(t: &FlowTable, show_src: bool) -> String {
        let mut entries: Vec<_> = t.iter().collect();
        let opts = TextOptions {
            show_src,
            bits: false,
        };
        table(
            &mut entries,
            UNIX_EPOCH,
            opts,
            &Services::builtin(),
            &AddressBook::new(),
        )
    }

    #[test]
    fn batch_table_snapshot() {
        let t = sample_table();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_125);
        let services = Services::builtin();
        // Names and geography for some ends; one name is hostile.
        let book = AddressBook::new();
        for e in t.iter() {
            let dst = e.flow.orig.dst;
            book.update(dst, |v| {
                v.name = crate::enrich::book::NameState::Name(format!("h\u{1b}[31m{dst}.example").into());
                v.country = Some("NZ".into());
                v.city = Some("Wellington".into());
            });
            book.update(e.flow.orig.src, |v| v.scope = Some("private"));
        }
        let mut entries: Vec<_> = t.iter().collect();
        let text = table(
            &mut entries,
            now,
            TextOptions {
                show_src: true,
                bits: false,
            },
            &services,
            &book,
        );
        insta::assert_snapshot!("batch_table_with_source", text);
        let mut entries: Vec<_> = t.iter().collect();
        let text = table(
            &mut entries,
            now,
            TextOptions {
                show_src: false,
                bits: true,
            },
            &services,
            &book,
        );
        insta::assert_snapshot!("batch_table_bits", text);
        let summary = summary("0.1.0", t.len(), &t.aggregates(), "unavailable");
        insta::assert_snapshot!("batch_summary", summary);
    }

    /// An incoming flow shows its remote end (the original source) after
    /// `←`, as on the screen; `-s` shows the local end (the reply's
    /// source) in SOURCE.
    #[test]
    fn an_incoming_flow_shows_its_remote_end() {
        struct Incoming;
        impl crate::flow::table::OwnerLookup for Incoming {
            fn attribute(&mut self, _: &Flow, _: Instant) -> crate::flow::model::Attributed {
                crate::flow::model::Attributed {
                    direction: Some(crate::flow::model::Direction::In),
                    ..Default::default()
                }
            }
        }
        let t0 = Instant::now();
        let mut t = FlowTable::new(TableConfig::default(), t0);
        let mut f = sample_table().iter().next().expect("a flow").flow.clone();
        (f.orig.src, f.orig.sport, f.orig.dst, f.orig.dport) =
            (v4(203, 0, 113, 9), Some(51000), v4(192, 0, 2, 1), Some(22));
        (f.reply.src, f.reply.sport, f.reply.dst, f.reply.dport) =
            (v4(192, 0, 2, 1), Some(22), v4(203, 0, 113, 9), Some(51000));
        t.apply_event(Change::Seen, f, t0, &mut Incoming, &mut |_, _| {});
        let text = plain_table(&t, true);
        let row = text.lines().nth(1).expect("a row");
        assert!(row.contains("192.0.2.1:22 "), "{text}");
        assert!(row.contains("← 203.0.113.9:51000"), "{text}");
        assert!(row.contains("B "), "BYTES with a unit: {text}");
    }

    /// HOST shows the name the program asked for, marked by its source,
    /// before the PTR name; a hostile one is escaped.
    #[test]
    fn host_shows_the_asked_for_name_marked() {
        use crate::names::tracker::FlowName;
        use crate::names::Source;
        let mut t = sample_table();
        let key = t.iter().next().expect("a flow").flow.key();
        let name = FlowName {
            name: "api.github.com\u{1b}[2J".into(),
            source: Source::Sni,
            ech_outer: false,
        };
        t.set_names(vec![(key, Some(std::sync::Arc::new(name)))], &mut |_, _| {});
        let text = plain_table(&t, false);
        assert!(text.contains("*api.github.com\\x1b[2J"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
    }
}
