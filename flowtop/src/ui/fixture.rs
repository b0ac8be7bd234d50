//! A fixed set of flows, owners, names and a clock for the screen's tests.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::attribution::{How, Owner};
use crate::enrich::book::{AddressBook, NameState};
use crate::enrich::services::Services;
use crate::flow::model::{proto, Counters, Direction, Family, Flow, ProtoState, Tuple};
use crate::flow::table::{Change, NoOwners};
use crate::flow::table::{FlowTable, Snapshot, TableConfig};
use crate::flow::Selection;

use super::app::{App, HeaderInfo, ViewOptions};
use super::procinfo::{ProcInfo, ProcInfos};

/// When the fixture's flows started (2023-11-14T22:13:20Z).
pub const START_NS: u64 = 1_700_000_000_000_000_000;

/// The fake clock: 125 s after the first flow started.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_125)
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("fixture address")
}

/// A flow without NAT: the reply mirrors the original.
pub fn flow(id: u32, p: u8, src: &str, sport: Option<u16>, dst: &str, dport: Option<u16>) -> Flow {
    let (src, dst) = (ip(src), ip(dst));
    Flow {
        id,
        family: if src.is_ipv4() { Family::Ipv4 } else { Family::Ipv6 },
        proto: p,
        state: (p == proto::TCP).then_some(ProtoState::Tcp(3)),
        orig: Tuple {
            src,
            dst,
            sport,
            dport,
            icmp: None,
        },
        reply: Tuple {
            src: dst,
            dst: src,
            sport: dport,
            dport: sport,
            icmp: None,
        },
        status: 0b1110,
        mark: 0,
        zone: 0,
        timeout: Some(crate::flow::model::Timeout::from_secs(300)),
        counters: Some(Counters::default()),
        start_ns: std::num::NonZeroU64::new(START_NS + u64::from(id) * 10_000_000_000),
    }
}

fn counters(orig: u64, reply: u64) -> Option<Counters> {
    Some(Counters {
        orig_packets: orig / 1000 + 1,
        orig_bytes: orig,
        reply_packets: reply / 1000 + 1,
        reply_bytes: reply,
    })
}

pub fn owner(pid: u32, comm: &str, exe: &str, how: How) -> Arc<Owner> {
    Arc::new(Owner {
        pid,
        comm: comm.into(),
        exe: Some(exe.into()),
        uid: 1000,
        how,
        ..Default::default()
    })
}

/// A fixture flow: the flow, its (orig, reply) bytes at t0 and 2 s later,
/// and its owner.
pub type Spec = (Flow, (u64, u64), (u64, u64), Option<Arc<Owner>>);

/// Builds a snapshot of flows whose rates come from the two readings.
pub fn snapshot(flows: Vec<Spec>) -> Arc<Snapshot> {
    let t0 = Instant::now();
    let mut table = FlowTable::new(TableConfig::default(), std::time::Instant::now());
    let mut owners = Vec::new();
    for (mut f, first, later, owner) in flows {
        let key = f.key();
        if f.counters.is_some() {
            f.counters = counters(first.0, first.1);
        }
        let mut second = f.clone();
        table.apply_event(Change::Seen, f, t0, &mut NoOwners, &mut |_, _| {});
        if second.counters.is_some() {
            second.counters = counters(later.0, later.1);
            table.apply_event(
                Change::Seen,
                second,
                t0 + Duration::from_secs(2),
                &mut NoOwners,
                &mut |_, _| {},
            );
        }
        owners.push((key, owner));
    }
    let mut snap = Arc::unwrap_or_clone(table.snapshot());
    for e in snap.flows.iter_mut() {
        e.owner = owners
            .iter()
            .find(|(k, _)| *k == e.flow.key())
            .and_then(|(_, o)| o.clone());
        // Who started it, as attribution tells: an owner found through its
        // listener accepted the flow; unowned flows are not known.
        e.direction = e.owner.as_ref().map(|o| {
            if o.how == How::Listener {
                Direction::In
            } else {
                Direction::Out
            }
        });
    }
    Arc::new(snap)
}

/// Eight flows of every kind the screen shows.
pub fn flows() -> Arc<Snapshot> {
    let curl = owner(4242, "curl", "/usr/bin/curl", How::Ebpf);
    let firefox = owner(1000, "firefox", "/usr/lib/firefox/firefox", How::Procfs);
    let sshd = owner(800, "sshd", "/usr/sbin/sshd", How::Listener);
    let resolved = owner(
        321,
        "systemd-resolved",
        "/usr/lib/systemd/systemd-resolved",
        How::Procfs,
    );
    let evil = owner(666, "evil\u{1b}[2Jname", "/tmp/\u{202e}evil", How::Procfs);
    let mut nat = flow(6, proto::TCP, "192.0.2.1", Some(41000), "198.51.100.7", Some(80));
    nat.reply.src = ip("10.0.0.9");
    nat.reply.sport = Some(8080);
    nat.state = Some(ProtoState::Tcp(7));
    nat.counters = None;
    nat.start_ns = None;
    let mut sctp = flow(
        8,
        proto::SCTP,
        "192.0.2.1",
        Some(5000),
        "198.51.100.99",
        Some(3868),
    );
    sctp.state = Some(ProtoState::Sctp(4));
    let mut ping = flow(5, proto::ICMPV6, "2001:db8::1", None, "2001:db8::2", None);
    ping.orig.icmp = Some(crate::flow::model::Icmp {
        icmp_type: 128,
        code: 0,
        id: 7,
    });
    snapshot(vec![
        (
            flow(1, proto::TCP, "192.0.2.1", Some(40000), "198.51.100.7", Some(443)),
            (2_000, 3_000_000),
            (4_000, 3_500_000),
            Some(curl),
        ),
        (
            flow(2, proto::TCP, "192.0.2.1", Some(40001), "203.0.113.5", Some(443)),
            (10_000, 900_000),
            (12_000, 1_000_000),
            Some(firefox.clone()),
        ),
        (
            flow(3, proto::TCP, "203.0.113.9", Some(51000), "192.0.2.1", Some(22)),
            (50_000, 8_000),
            (50_000, 8_000),
            Some(sshd),
        ),
        (
            flow(4, proto::UDP, "192.0.2.1", Some(5353), "192.0.2.53", Some(53)),
            (80, 200),
            (160, 400),
            Some(resolved),
        ),
        (ping, (84, 84), (168, 168), None),
        (nat, (0, 0), (0, 0), Some(firefox)),
        (
            flow(
                7,
                proto::TCP,
                "192.0.2.1",
                Some(40007),
                "203.0.113.66",
                Some(6667),
            ),
            (100, 100),
            (100, 100),
            Some(evil),
        ),
        (sctp, (500, 500), (900, 900), None),
    ])
}

/// Names and geography for the fixture's addresses, a hostile one included.
pub fn book() -> Arc<AddressBook> {
    let book = AddressBook::new();
    let set = |a: &str, name: Option<&str>, cc: Option<&str>, city: Option<&str>, scope| {
        book.update(ip(a), |v| {
            v.name = name.map_or(NameState::NoName, |n| NameState::Name(n.into()));
            v.country = cc.map(Into::into);
            v.city = city.map(Into::into);
            v.scope = scope;
        });
    };
    set(
        "198.51.100.7",
        Some("www.example.org"),
        Some("DE"),
        Some("Berlin"),
        None,
    );
    set(
        "203.0.113.5",
        Some("cdn.example.net"),
        Some("US"),
        Some("San Francisco"),
        None,
    );
    set(
        "203.0.113.66",
        Some("a-very-long-reverse-name-that-does-not-fit.irc.example.com"),
        Some("NL"),
        Some("Amster\u{1b}]0;pwned\u{7}dam"),
        None,
    );
    set("192.0.2.1", None, None, None, Some("private"));
    set("192.0.2.53", None, None, None, Some("private"));
    set("203.0.113.9", None, Some("FR"), None, None);
    book
}

pub fn header() -> HeaderInfo {
    HeaderInfo {
        version: "0.1.0",
        attribution: crate::attribution::Active::Ebpf,
        attribution_reason: "eBPF socket events".into(),
        interval: Duration::from_secs(1),
        inspect: true,
    }
}

/// An app showing every protocol of the fixture, `w` x `h`.
pub fn app(w: u16, h: u16) -> App {
    app_with(Selection::everything(), w, h)
}

pub fn app_with(selection: Selection, w: u16, h: u16) -> App {
    let procs = ProcInfos::default();
    procs.set(
        4242,
        ProcInfo::Ready {
            cmdline: "curl -sS https://www.example.org/download".into(),
            user: Some("alice (1000)".into()),
        },
    );
    let mut app = App::new(
        header(),
        ViewOptions {
            selection,
            show_src: false,
            bits: false,
            color: true,
        },
        book(),
        Arc::new(Services::builtin()),
        procs,
    );
    // Fixed, whatever the machine's zone and users.
    app.users = crate::ui::procinfo::Users::new(None);
    // The flow chart's clock too.
    app.wall = now;
    app.time_text = crate::output::format::utc_time;
    app.resize(w, h);
    app.on_snapshot(flows());
    app
}

/// `n` TCP flows to distinct ports; flow `i` carries `i * 100` bytes.
pub fn many(n: u32) -> Arc<Snapshot> {
    snapshot(
        (1..=n)
            .map(|i| {
                let port = u16::try_from(1000 + i).expect("port");
                let f = flow(i, proto::TCP, "192.0.2.1", Some(port), "198.51.100.1", Some(443));
                let b = u64::from(i) * 100;
                (f, (b, 0), (b, 0), None)
            })
            .collect(),
    )
}

/// The fixture's flows with the names their programs asked for: TLS SNI
/// (curl), an ECH outer name (firefox), an HTTP Host (firefox's NAT
/// flow), DNS answers (systemd-resolved; sshd's incoming flow, whose
/// remote end the name does not name) and a hostile QUIC name (evil).
pub fn named_flows() -> Arc<Snapshot> {
    use crate::names::tracker::FlowName;
    use crate::names::Source;
    let name = |n: &str, source, ech_outer| {
        Some(Arc::new(FlowName {
            name: n.into(),
            source,
            ech_outer,
        }))
    };
    let mut snap = Arc::unwrap_or_clone(flows());
    for e in snap.flows.iter_mut() {
        e.name = match e.flow.id {
            1 => name("api.github.com", Source::Sni, false),
            2 => name("cloudflare-ech.com", Source::Sni, true),
            3 => name("not-the-client.example", Source::Dns, false),
            4 => name("resolver.example", Source::Dns, false),
            6 => name("plain.example.org", Source::Http, false),
            7 => name("evil\u{1b}]0;pwned\u{7}.example", Source::Quic, false),
            _ => None,
        };
    }
    Arc::new(snap)
}

/// [`app`] showing [`named_flows`].
pub fn named_app(w: u16, h: u16) -> App {
    let mut a = app(w, h);
    a.on_snapshot(named_flows());
    a
}
