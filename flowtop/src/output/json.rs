//! The `--json` contract: one object per line. Field names are public: add,
//! never rename (see README, "JSON schema").

use std::io::{self, Write};
use std::time::SystemTime;

use super::format::{age_secs, rfc3339};
use super::line::LineBuf;
use crate::enrich::book::{AddrView, AddressBook};
use crate::enrich::services::Services;
use crate::flow::model::{proto, Direction, Flow, Who};
use crate::flow::rate::Rates;
use crate::flow::table::{Entry, EventKind, TableStats};
use crate::names::tracker::NameTracker;
use std::sync::Arc;

/// Writes JSON lines to any writer; the caller flushes per batch.
pub struct JsonWriter<W: Write> {
    out: W,
    /// One line, reused: a flow line is built without allocating.
    line: Vec<u8>,
    /// Service names for the `service` field.
    services: Option<Arc<Services>>,
    /// Names and geography for the `*_host`, `*_country`, `*_city` fields.
    book: Option<Arc<AddressBook>>,
}

impl<W: Write> JsonWriter<W> {
    pub fn new(out: W) -> Self {
        JsonWriter {
            out,
            line: Vec::with_capacity(1024),
            services: None,
            book: None,
        }
    }

    /// Fills names and geography from the address book.
    pub fn with_book(mut self, book: Arc<AddressBook>) -> Self {
        self.book = Some(book);
        self
    }

    /// Names ports in the `service` field.
    pub fn with_services(mut self, services: Arc<Services>) -> Self {
        self.services = Some(services);
        self
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Writes one JSON value (the meta line, a raw `Value`) as a line.
    pub fn value(&mut self, v: &impl serde::Serialize) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, v)?;
        self.out.write_all(b"\n")
    }

    /// Writes one flow event.
    pub fn flow(&mut self, kind: EventKind, e: &Entry, ts: &str, now: SystemTime) -> io::Result<()> {
        self.reading(kind, &e.flow, e.rate.measured_rates(), e.who(), ts, now)
    }

    /// Writes one flow event for a flow outside the table (`--once`).
    pub fn reading(
        &mut self,
        kind: EventKind,
        flow: &Flow,
        rates: Option<Rates>,
        who: Who<'_>,
        ts: &str,
        now: SystemTime,
    ) -> io::Result<()> {
        self.line.clear();
        let service = self.services.as_deref().and_then(|s| s.of_flow(flow));
        let buf = &mut self.line;
        let mut write = |src: Option<&AddrView>, dst: Option<&AddrView>| {
            let line = Line {
                flow,
                rates,
                who,
                service,
                src,
                dst,
            };
            write_flow(buf, kind, &line, ts, now);
        };
        match &self.book {
            Some(book) => book.with_pair(flow.orig.src, flow.orig.dst, write),
            None => write(None, None),
        }
        self.out.write_all(&self.line)
    }

    /// Writes a `stats` line: the engine's health counters, and the name
    /// tracker's figures (`names`, null with `--no-inspect`).
    pub fn stats(
        &mut self,
        ts: &str,
        flows: usize,
        stats: &TableStats,
        rcvbuf: usize,
        names: Option<&NameTracker>,
    ) -> io::Result<()> {
        let names = names.map(|n| {
            let s = n.stats;
            serde_json::json!({
                "captures": s.captures,
                "dns_messages": s.dns_messages,
                "answers": s.answers,
                "dns_errors": s.dns_errors,
                "own_ignored": s.own_ignored,
                "conn_names": s.conn_names,
                "book_entries": n.book().len(),
                "tracked": n.entries(),
                "memory_bytes": n.memory_bytes(),
            })
        });
        let v = serde_json::json!({
            "event": "stats",
            "ts": ts,
            "flows": flows,
            "dumps": stats.dumps,
            "overruns": stats.overruns,
            "resyncs": stats.resyncs,
            "swept": stats.swept,
            "expired": stats.expired,
            "malformed": stats.malformed,
            "refreshes": stats.refreshes,
            "refreshed": stats.refreshed,
            "dumped": stats.dumped,
            "rcvbuf": rcvbuf,
            "names": names,
        });
        self.value(&v)
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Appends one flow object and a newline. Written by hand rather than
/// through serde: key names are constants that need no escaping, and this is
/// the hot path of a million-entry dump (it halved the instructions per
/// flow). The serde struct in the tests is the reference it must match.
/// What one flow line shows besides the event kind and the time.
pub struct Line<'a> {
    pub flow: &'a Flow,
    pub rates: Option<Rates>,
    /// The flow's process, its peer's and its direction.
    pub who: Who<'a>,
    pub service: Option<&'a str>,
    /// What the address book knows of the original source and destination.
    pub src: Option<&'a AddrView>,
    pub dst: Option<&'a AddrView>,
}

pub fn write_flow(buf: &mut Vec<u8>, kind: EventKind, line: &Line<'_>, ts: &str, now: SystemTime) {
    let Line {
        flow: f,
        rates,
        who,
        service,
        src,
        dst,
    } = *line;
    let owner = who.owner;
    let c = f.counters;
    let mut w = LineBuf::new(buf);
    w.first_key("event");
    w.plain_str(kind.name());
    w.key("ts");
    w.plain_str(ts);
    w.key("id");
    w.uint(u64::from(f.id));
    w.key("family");
    w.plain_str(f.family.name());
    w.key("proto");
    match proto::name(f.proto) {
        Some(name) => w.plain_str(name),
        None => w.uint(u64::from(f.proto)),
    }
    w.key("state");
    w.opt_plain_str(f.state.map(|s| s.name()));
    w.key("src");
    w.ip(&f.orig.src);
    w.key("sport");
    w.opt_uint(f.orig.sport.map(u64::from));
    w.key("dst");
    w.ip(&f.orig.dst);
    w.key("dport");
    w.opt_uint(f.orig.dport.map(u64::from));
    if let Some(i) = f.orig.icmp {
        w.key("icmp_type");
        w.uint(u64::from(i.icmp_type));
        w.key("icmp_code");
        w.uint(u64::from(i.code));
        w.key("icmp_id");
        w.uint(u64::from(i.id));
    }
    w.key("reply_src");
    w.ip(&f.reply.src);
    w.key("reply_sport");
    w.opt_uint(f.reply.sport.map(u64::from));
    w.key("reply_dst");
    w.ip(&f.reply.dst);
    w.key("reply_dport");
    w.opt_uint(f.reply.dport.map(u64::from));
    w.key("status");
    w.plain_str_array(f.status_names());
    w.key("mark");
    w.uint(u64::from(f.mark));
    w.key("zone");
    w.uint(u64::from(f.zone));
    w.key("timeout");
    w.opt_uint(f.timeout.map(|t| u64::from(t.secs())));
    w.key("orig_packets");
    w.opt_uint(c.map(|c| c.orig_packets));
    w.key("orig_bytes");
    w.opt_uint(c.map(|c| c.orig_bytes));
    w.key("reply_packets");
    w.opt_uint(c.map(|c| c.reply_packets));
    w.key("reply_bytes");
    w.opt_uint(c.map(|c| c.reply_bytes));
    w.key("start");
    match f.start() {
        Some(ns) => w.rfc3339_ns(ns),
        None => w.null(),
    }
    w.key("duration_s");
    w.opt_uint(f.start().map(|s| age_secs(s, now)));
    w.key("orig_rate_bps");
    w.opt_float(rates.map(|r| round3(r.orig_bytes)));
    w.key("reply_rate_bps");
    w.opt_float(rates.map(|r| round3(r.reply_bytes)));
    w.key("orig_rate_pps");
    w.opt_float(rates.map(|r| round3(r.orig_packets)));
    w.key("reply_rate_pps");
    w.opt_float(rates.map(|r| round3(r.reply_packets)));
    w.key("pid");
    w.opt_uint(owner.map(|o| u64::from(o.pid)));
    // Process names and paths are chosen by whoever runs the process: escaped.
    w.key("comm");
    match owner {
        Some(o) => w.escaped_str(&o.comm),
        None => w.null(),
    }
    w.key("exe");
    match owner.and_then(|o| o.exe.as_deref()) {
        Some(exe) => w.escaped_str(exe),
        None => w.null(),
    }
    // Arguments and the parent's name are the process's own choice too.
    w.key("cmdline");
    match owner.and_then(|o| o.cmdline.as_deref()) {
        Some(c) => w.escaped_str(c),
        None => w.null(),
    }
    w.key("ppid");
    w.opt_uint(owner.and_then(|o| o.ppid).map(u64::from));
    w.key("parent_comm");
    match owner.and_then(|o| o.parent_comm.as_deref()) {
        Some(c) => w.escaped_str(c),
        None => w.null(),
    }
    // Hex digits only.
    w.key("exe_sha256");
    w.opt_plain_str(owner.and_then(|o| o.exe_sha256.get()));
    w.key("uid");
    w.opt_uint(owner.map(|o| u64::from(o.uid)));
    w.key("attribution");
    w.opt_plain_str(owner.map(|o| o.how.name()));
    w.key("direction");
    w.opt_plain_str(who.direction.map(Direction::name));
    w.key("peer_pid");
    w.opt_uint(who.peer.map(|o| u64::from(o.pid)));
    w.key("peer_comm");
    match who.peer {
        Some(o) => w.escaped_str(&o.comm),
        None => w.null(),
    }
    w.key("peer_exe");
    match who.peer.and_then(|o| o.exe.as_deref()) {
        Some(exe) => w.escaped_str(exe),
        None => w.null(),
    }
    // PTR names and GeoIP strings come from outside: escaped.
    let opt_escaped = |w: &mut LineBuf<'_>, key: &str, v: Option<&str>| {
        w.key(key);
        match v {
            Some(s) => w.escaped_str(s),
            None => w.null(),
        }
    };
    opt_escaped(&mut w, "src_host", src.and_then(AddrView::host));
    opt_escaped(&mut w, "dst_host", dst.and_then(AddrView::host));
    opt_escaped(&mut w, "src_country", src.and_then(|v| v.country.as_deref()));
    opt_escaped(&mut w, "src_city", src.and_then(|v| v.city.as_deref()));
    opt_escaped(&mut w, "dst_country", dst.and_then(|v| v.country.as_deref()));
    opt_escaped(&mut w, "dst_city", dst.and_then(|v| v.city.as_deref()));
    // Names come from configuration files: escaped like any outside text.
    w.key("service");
    match service {
        Some(name) => w.escaped_str(name),
        None => w.null(),
    }
    // Added after `service` (the contract only grows): why an address has
    // no geography ("private", "loopback", ...), null for public ones.
    w.key("src_scope");
    w.opt_plain_str(src.and_then(|v| v.scope));
    w.key("dst_scope");
    w.opt_plain_str(dst.and_then(|v| v.scope));
    // Issue 13: the name the program asked for (what it says is untrusted:
    // escaped), where it came from, and whether it is an Encrypted
    // ClientHello's outer (public) name rather than the one asked for.
    opt_escaped(&mut w, "dst_name", who.name.map(|n| &*n.name));
    w.key("dst_name_source");
    w.opt_plain_str(who.name.map(|n| n.source.as_str()));
    w.key("dst_name_ech");
    w.bool(who.name.is_some_and(|n| n.ech_outer));
    // Issue 15: who the owner is beyond its pid. Cgroup paths and
    // container names are chosen by whoever made them: escaped.
    let id = owner.and_then(|o| o.identity.as_deref());
    opt_escaped(&mut w, "cgroup", id.map(|i| i.cgroup.as_str()));
    opt_escaped(&mut w, "unit", id.and_then(|i| i.unit.as_deref()));
    let ctr = id.and_then(|i| i.container.as_ref());
    opt_escaped(&mut w, "container", ctr.map(|c| c.id.as_str()));
    opt_escaped(&mut w, "container_name", ctr.and_then(|c| c.name.as_deref()));
    w.key("container_runtime");
    w.opt_plain_str(ctr.map(|c| c.runtime));
    opt_escaped(&mut w, "app", id.and_then(|i| i.app.as_deref()));
    w.key("netns");
    w.opt_uint(owner.and_then(|o| o.netns));
    // Issue 16: the Community ID (v1) of the original tuple, base64: plain.
    w.key("community_id");
    w.opt_plain_str(crate::export::community_id::community_id(f.proto, &f.orig).as_deref());
    w.end_line();
}

/// The current time as the `ts` field shows it.
pub fn now_ts() -> (String, SystemTime) {
    let now = SystemTime::now();
    (rfc3339(now), now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::book::NameState;
    use crate::flow::model::{Counters, Family, Flow, Icmp, ProtoState, Tuple};
    use crate::flow::table::{Change, NoOwners};
    use crate::flow::table::{FlowTable, TableConfig};
    use serde::Serialize;
    use std::net::IpAddr;
    use std::time::{Duration, Instant, UNIX_EPOCH};

    /// A protocol: its name, or its number when flowtop has none.
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Proto {
        Name(&'static str),
        Number(u8),
    }

    fn ip<S: serde::Serializer>(a: &IpAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(a)
    }

    fn round3(v: f64) -> f64 {
        (v * 1000.0).round() / 1000.0
    }

    /// One flow event.
    #[derive(Serialize)]
    struct FlowLine<'a> {
        event: &'static str,
        ts: &'a str,
        id: u32,
        family: &'static str,
        proto: Proto,
        state: Option<&'static str>,
        #[serde(serialize_with = "ip")]
        src: &'a IpAddr,
        sport: Option<u16>,
        #[serde(serialize_with = "ip")]
        dst: &'a IpAddr,
        dport: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        icmp_type: Option<u8>,
        #[serde(skip_serializing_if = "Option::is_none")]
        icmp_code: Option<u8>,
        #[serde(skip_serializing_if = "Option::is_none")]
        icmp_id: Option<u16>,
        #[serde(serialize_with = "ip")]
        reply_src: &'a IpAddr,
        reply_sport: Option<u16>,
        #[serde(serialize_with = "ip")]
        reply_dst: &'a IpAddr,
        reply_dport: Option<u16>,
        status: Vec<&'static str>,
        mark: u32,
        zone: u16,
        timeout: Option<u32>,
        orig_packets: Option<u64>,
        orig_bytes: Option<u64>,
        reply_packets: Option<u64>,
        reply_bytes: Option<u64>,
        start: Option<String>,
        duration_s: Option<u64>,
        orig_rate_bps: Option<f64>,
        reply_rate_bps: Option<f64>,
        orig_rate_pps: Option<f64>,
        reply_rate_pps: Option<f64>,
        // Filled by later stages (attribution, enrichment); null until then.
        pid: Option<u32>,
        comm: Option<&'a str>,
        exe: Option<&'a str>,
        cmdline: Option<&'a str>,
        ppid: Option<u32>,
        parent_comm: Option<&'a str>,
        exe_sha256: Option<&'a str>,
        uid: Option<u32>,
        attribution: Option<&'a str>,
        direction: Option<&'static str>,
        peer_pid: Option<u32>,
        peer_comm: Option<&'a str>,
        peer_exe: Option<&'a str>,
        src_host: Option<&'a str>,
        dst_host: Option<&'a str>,
        src_country: Option<&'a str>,
        src_city: Option<&'a str>,
        dst_country: Option<&'a str>,
        dst_city: Option<&'a str>,
        service: Option<&'a str>,
        src_scope: Option<&'a str>,
        dst_scope: Option<&'a str>,
        dst_name: Option<&'a str>,
        dst_name_source: Option<&'static str>,
        dst_name_ech: bool,
        cgroup: Option<&'a str>,
        unit: Option<&'a str>,
        container: Option<&'a str>,
        container_name: Option<&'a str>,
        container_runtime: Option<&'static str>,
        app: Option<&'a str>,
        netns: Option<u64>,
        community_id: Option<String>,
    }

    /// The reference serialization: the documented fields through serde.
    fn oracle(
        kind: EventKind,
        e: &Entry,
        ts: &str,
        now: SystemTime,
        book: &AddressBook,
    ) -> serde_json::Value {
        let services = Services::builtin();
        let src = book.get(e.flow.orig.src).unwrap_or_default();
        let dst = book.get(e.flow.orig.dst).unwrap_or_default();
        let f = &e.flow;
        let icmp = f.orig.icmp;
        let c = f.counters;
        let rates = e.rate.measured_rates();
        let id = e.owner.as_ref().and_then(|o| o.identity.as_deref());
        let ctr = id.and_then(|i| i.container.as_ref());
        let line = FlowLine {
            event: kind.name(),
            ts,
            id: f.id,
            family: f.family.name(),
            proto: proto::name(f.proto).map_or(Proto::Number(f.proto), Proto::Name),
            state: f.state.map(|s| s.name()),
            src: &f.orig.src,
            sport: f.orig.sport,
            dst: &f.orig.dst,
            dport: f.orig.dport,
            icmp_type: icmp.map(|i| i.icmp_type),
            icmp_code: icmp.map(|i| i.code),
            icmp_id: icmp.map(|i| i.id),
            reply_src: &f.reply.src,
            reply_sport: f.reply.sport,
            reply_dst: &f.reply.dst,
            reply_dport: f.reply.dport,
            status: f.status_names().collect(),
            mark: f.mark,
            zone: f.zone,
            timeout: f.timeout.map(crate::flow::model::Timeout::secs),
            orig_packets: c.map(|c| c.orig_packets),
            orig_bytes: c.map(|c| c.orig_bytes),
            reply_packets: c.map(|c| c.reply_packets),
            reply_bytes: c.map(|c| c.reply_bytes),
            start: f
                .start()
                .map(|ns| super::super::format::rfc3339_ns(ns).to_string()),
            duration_s: f.start().map(|s| age_secs(s, now)),
            orig_rate_bps: rates.map(|r| round3(r.orig_bytes)),
            reply_rate_bps: rates.map(|r| round3(r.reply_bytes)),
            orig_rate_pps: rates.map(|r| round3(r.orig_packets)),
            reply_rate_pps: rates.map(|r| round3(r.reply_packets)),
            pid: e.owner.as_ref().map(|o| o.pid),
            comm: e.owner.as_ref().map(|o| o.comm.as_str()),
            exe: e.owner.as_ref().and_then(|o| o.exe.as_deref()),
            cmdline: e.owner.as_ref().and_then(|o| o.cmdline.as_deref()),
            ppid: e.owner.as_ref().and_then(|o| o.ppid),
            parent_comm: e.owner.as_ref().and_then(|o| o.parent_comm.as_deref()),
            exe_sha256: e.owner.as_ref().and_then(|o| o.exe_sha256.get()),
            uid: e.owner.as_ref().map(|o| o.uid),
            attribution: e.owner.as_ref().map(|o| o.how.name()),
            direction: e.direction.map(Direction::name),
            peer_pid: e.peer.as_ref().map(|o| o.pid),
            peer_comm: e.peer.as_ref().map(|o| o.comm.as_str()),
            peer_exe: e.peer.as_ref().and_then(|o| o.exe.as_deref()),
            src_host: src.host(),
            dst_host: dst.host(),
            src_country: src.country.as_deref(),
            src_city: src.city.as_deref(),
            dst_country: dst.country.as_deref(),
            dst_city: dst.city.as_deref(),
            service: services.of_flow(f),
            src_scope: src.scope,
            dst_scope: dst.scope,
            dst_name: e.name.as_ref().map(|n| &*n.name),
            dst_name_source: e.name.as_ref().map(|n| n.source.as_str()),
            dst_name_ech: e.name.as_ref().is_some_and(|n| n.ech_outer),
            cgroup: id.map(|i| i.cgroup.as_str()),
            unit: id.and_then(|i| i.unit.as_deref()),
            container: ctr.map(|c| c.id.as_str()),
            container_name: ctr.and_then(|c| c.name.as_deref()),
            container_runtime: ctr.map(|c| c.runtime),
            app: id.and_then(|i| i.app.as_deref()),
            netns: e.owner.as_ref().and_then(|o| o.netns),
            community_id: crate::export::community_id::community_id(f.proto, &f.orig),
        };
        serde_json::to_value(&line).expect("serializes")
    }

    fn entries() -> FlowTable {
        let t0 = Instant::now();
        let v4 = |s: &str| -> IpAddr { s.parse().expect("ip") };
        let base = Flow {
            id: 1,
            family: Family::Ipv4,
            proto: proto::TCP,
            state: Some(ProtoState::Tcp(3)),
            orig: Tuple {
                src: v4("192.0.2.1"),
                dst: v4("198.51.100.255"),
                sport: Some(1),
                dport: Some(65535),
                icmp: None,
            },
            reply: Tuple {
                src: v4("10.0.0.9"),
                dst: v4("0.0.0.0"),
                sport: Some(443),
                dport: Some(40000),
                icmp: None,
            },
            status: 0b1110,
            mark: u32::MAX,
            zone: 3,
            timeout: Some(crate::flow::model::Timeout::from_secs(431999)),
            counters: Some(Counters {
                orig_packets: 1,
                orig_bytes: u64::MAX,
                reply_packets: 0,
                reply_bytes: 7,
            }),
            start_ns: std::num::NonZeroU64::new(1_700_000_000_123_456_789),
        };
        let icmp6 = Flow {
            id: 2,
            family: Family::Ipv6,
            proto: proto::ICMPV6,
            state: None,
            orig: Tuple {
                src: v4("2001:db8::1"),
                dst: v4("::ffff:192.0.2.1"),
                sport: None,
                dport: None,
                icmp: Some(Icmp {
                    icmp_type: 128,
                    code: 0,
                    id: 9,
                }),
            },
            reply: Tuple {
                src: v4("::ffff:192.0.2.1"),
                dst: v4("2001:db8::1"),
                sport: None,
                dport: None,
                icmp: Some(Icmp {
                    icmp_type: 129,
                    code: 0,
                    id: 9,
                }),
            },
            status: 0,
            timeout: None,
            counters: None,
            start_ns: None,
            ..base.clone()
        };
        let gre = Flow {
            id: 3,
            proto: 47,
            state: None,
            orig: Tuple {
                sport: None,
                dport: None,
                ..base.orig
            },
            reply: Tuple {
                sport: None,
                dport: None,
                ..base.reply
            },
            ..base.clone()
        };
        let mut t = FlowTable::new(TableConfig::default(), std::time::Instant::now());
        for f in [base.clone(), icmp6, gre] {
            t.apply_event(Change::Seen, f, t0, &mut NoOwners, &mut |_, _| {});
        }
        let mut later = base;
        later.counters = Some(Counters {
            orig_packets: 5,
            orig_bytes: u64::MAX,
            reply_packets: 3,
            reply_bytes: 1007,
        });
        t.apply_event(
            Change::Seen,
            later,
            t0 + Duration::from_millis(3000),
            &mut NoOwners,
            &mut |_, _| {},
        );
        // An owner with a hostile name: escaped in JSON, equal to serde's escaping.
        let mut idx = crate::attribution::index::SocketIndex::default();
        idx.insert(
            proto::TCP,
            "192.0.2.1:1".parse().expect("sa"),
            "198.51.100.255:65535".parse().expect("sa"),
            false,
            std::sync::Arc::new(crate::attribution::Owner {
                pid: 4242,
                comm: "evil\u{1b}[2J\"name\n\\".into(),
                exe: Some("/usr/bin/ev\"il".into()),
                uid: 1000,
                how: crate::attribution::How::Ebpf,
                cmdline: Some("ev\"il --flag \u{1b}[2J\\".into()),
                ppid: Some(1),
                parent_comm: Some("par\"ent\u{7}".into()),
                exe_sha256: {
                    let d = crate::flow::model::ExeDigest::default();
                    d.set("ab".repeat(32));
                    d
                },
                cgroup_id: None,
                identity: Some(std::sync::Arc::new(crate::attribution::identity::Identity::parse(
                    "/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope/ev\"il\u{1b}",
                ))),
                netns: Some(4_026_531_840),
            }),
        );
        let join = crate::attribution::join::OwnerJoin::with_index(
            std::sync::Arc::new(idx),
            std::time::Instant::now(),
        );
        t.set_owners(join.retry_all(&t), &mut |_, _| {});
        assert!(
            t.iter().any(|e| e.owner.is_some()),
            "the index attributed the TCP flow"
        );
        t
    }

    /// Names as a hostile server or program could make them: escape
    /// sequences, quotes and backslashes, control and bidi characters,
    /// invalid UTF-8 (made lossy), a 63-byte label run to the 253-byte bound.
    fn hostile_names() -> Vec<crate::names::tracker::FlowName> {
        use crate::names::{bounded_name, Source};
        let long = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
        let raw: Vec<Vec<u8>> = vec![
            b"\x1b]0;owned\x07\x1b[2J\"quote\\back\nline".to_vec(),
            "evil\u{202e}gpj.exe\u{0}\u{9b}31m".as_bytes().to_vec(),
            vec![0xff, 0xfe, b'x', 0x80, 0x1b],
            long.into_bytes(),
            b"api.github.com".to_vec(),
        ];
        let sources = [Source::Sni, Source::Http, Source::Quic, Source::Dns, Source::Sni];
        raw.iter()
            .zip(sources)
            .enumerate()
            .map(|(i, (r, source))| crate::names::tracker::FlowName {
                name: bounded_name(r).expect("within the bound"),
                source,
                ech_outer: i == 4,
            })
            .collect()
    }

    /// Gives the table's entries the hostile names in turn (one in six
    /// stays unnamed).
    fn name_hostilely(t: &mut FlowTable) {
        let names = hostile_names();
        let found = t
            .iter()
            .enumerate()
            .map(|(i, e)| (e.flow.key(), names.get(i % 6).cloned().map(std::sync::Arc::new)))
            .collect();
        t.set_names(found, &mut |_, _| {});
    }

    #[test]
    fn stats_lines_carry_the_name_figures() {
        let stats = TableStats::default();
        let line = |names: Option<&NameTracker>| {
            let mut w = JsonWriter::new(Vec::new());
            w.stats("T", 3, &stats, 0, names).expect("written");
            serde_json::from_slice::<serde_json::Value>(&w.into_inner()).expect("valid JSON")
        };
        assert!(line(None)["names"].is_null());
        let v = line(Some(&NameTracker::new(1)));
        for key in [
            "captures",
            "answers",
            "dns_errors",
            "book_entries",
            "memory_bytes",
        ] {
            assert_eq!(v["names"][key], 0, "{key}: {v}");
        }
    }

    #[test]
    fn hostile_names_keep_lines_valid_json_without_raw_control_bytes() {
        let mut t = entries();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_100);
        for hostile in hostile_names() {
            let found = t
                .iter()
                .map(|e| (e.flow.key(), Some(std::sync::Arc::new(hostile.clone()))))
                .collect();
            t.set_names(found, &mut |_, _| {});
            let mut w = JsonWriter::new(Vec::new());
            for e in t.iter() {
                w.flow(EventKind::Update, e, "2023-11-14T22:13:20.000000Z", now)
                    .expect("written");
            }
            let out = w.into_inner();
            let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
            assert_eq!(lines.len(), t.len());
            for line in lines {
                assert!(
                    !line.iter().any(|&b| b < 0x20 || b == 0x7f),
                    "{}",
                    String::from_utf8_lossy(line)
                );
                let v: serde_json::Value = serde_json::from_slice(line).expect("valid JSON");
                // The name comes back exactly as kept (escaping is lossless).
                assert_eq!(v["dst_name"].as_str(), Some(&*hostile.name));
                assert_eq!(v["dst_name_source"].as_str(), Some(hostile.source.as_str()));
                assert_eq!(v["dst_name_ech"], hostile.ech_outer);
            }
        }
    }

    #[test]
    fn hand_written_lines_equal_the_serde_reference() {
        let mut t = entries();
        name_hostilely(&mut t);
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_100);
        let ts = "2023-11-14T22:13:20.000000Z";
        // Names and geography, some hostile: escaped like serde escapes them.
        let book = AddressBook::new();
        book.update("198.51.100.255".parse().expect("ip"), |v| {
            v.name = NameState::Name("evil\u{1b}]0;title\u{7}\"ptr\n".into());
            v.country = Some("N\"Z".into());
            v.city = Some("Wellington\u{9b}2J".into());
        });
        book.update("192.0.2.1".parse().expect("ip"), |v| {
            v.scope = Some("documentation")
        });
        for e in t.iter() {
            for kind in [
                EventKind::Snapshot,
                EventKind::New,
                EventKind::Update,
                EventKind::Destroy,
            ] {
                let mut buf = Vec::new();
                let services = Services::builtin();
                let (src_view, dst_view) = (book.get(e.flow.orig.src), book.get(e.flow.orig.dst));
                let line = Line {
                    flow: &e.flow,
                    rates: e.rate.measured_rates(),
                    who: e.who(),
                    service: services.of_flow(&e.flow),
                    src: src_view.as_ref(),
                    dst: dst_view.as_ref(),
                };
                write_flow(&mut buf, kind, &line, ts, now);
                assert_eq!(buf.last(), Some(&b'\n'));
                assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
                let fast: serde_json::Value = serde_json::from_slice(&buf).expect("valid JSON");
                assert_eq!(
                    fast,
                    oracle(kind, e, ts, now, &book),
                    "{}",
                    String::from_utf8_lossy(&buf)
                );
                // Field order is part of the contract's readability: same as the reference.
                let keys: Vec<String> = fast.as_object().expect("object").keys().cloned().collect();
                let want: Vec<String> = oracle(kind, e, ts, now, &book)
                    .as_object()
                    .expect("object")
                    .keys()
                    .cloned()
                    .collect();
                assert_eq!(keys, want);
            }
        }
    }
}
