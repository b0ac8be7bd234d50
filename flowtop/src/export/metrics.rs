//! `--metrics ADDR:PORT`: Prometheus text exposition (format 0.0.4) at
//! `/metrics`, served by a small HTTP/1.1 responder on its own thread.
//!
//! Hand-rolled on a std `TcpListener` rather than an HTTP crate: one GET
//! path, one connection at a time, `Connection: close`; a scraper is the
//! only client. The page is rendered on the engine's thread (which owns the
//! table) when a scrape asks for it: the responder raises a flag, the
//! engine's next tick renders, the responder serves that page (or, if the
//! engine does not answer within a second and a half, the last one).
//!
//! Per-process counters grow from the same kind of per-flow deltas as the
//! IPFIX records, so they are counters in Prometheus's sense. Label
//! cardinality is bounded: at most [`TOP_PROCESSES`] processes get their own
//! labels (the biggest by bytes when a place is free; once shown, a process
//! keeps its series so that no counter goes backwards), the rest add up in
//! `comm="other"`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::flow::model::{proto, Counters, Direction, FlowKey, Owner};
use crate::flow::table::{Entry, EventKind, FlowTable};

/// Processes with labels of their own, at most.
pub const TOP_PROCESSES: usize = 50;
/// Processes counted apart, at most (beyond, new ones count as `other`).
const MAX_TRACKED: usize = 10_000;
/// How long a scrape waits for the engine to render a fresh page.
const FRESH_WAIT: Duration = Duration::from_millis(1500);

/// The labels of one process.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ProcKey {
    comm: String,
    exe: String,
    user: String,
    /// The container (its name, else its id) and the systemd unit, when
    /// the process has them (issue 15); empty: no such label.
    container: String,
    unit: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct Traffic {
    sent_bytes: u64,
    sent_packets: u64,
    recv_bytes: u64,
    recv_packets: u64,
}

impl Traffic {
    fn add(&mut self, o: &Traffic) {
        self.sent_bytes += o.sent_bytes;
        self.sent_packets += o.sent_packets;
        self.recv_bytes += o.recv_bytes;
        self.recv_packets += o.recv_packets;
    }

    fn bytes(&self) -> u64 {
        self.sent_bytes + self.recv_bytes
    }
}

/// What the responder and the engine share.
#[derive(Default)]
struct Page {
    text: Mutex<(u64, String)>,
    fresh: Condvar,
    wanted: AtomicBool,
}

/// Extra counters the engine's owner passes at render time.
#[derive(Debug, Default, Clone, Copy)]
pub struct Extra {
    pub ipfix: Option<IpfixCounts>,
    pub caches: Caches,
}

/// The name caches' figures (None: that part is off).
#[derive(Debug, Default, Clone, Copy)]
pub struct Caches {
    /// Addresses with reverse DNS names and GeoIP locations looked up.
    pub address_book: Option<u64>,
    /// DNS answers kept for asked-for names.
    pub dns_answers_kept: Option<u64>,
    pub dns_messages: Option<u64>,
    pub dns_errors: Option<u64>,
    pub conn_names: Option<u64>,
    pub names_memory_bytes: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct IpfixCounts {
    pub records: u64,
    pub sent: u64,
    pub dropped: u64,
    pub messages: u64,
    pub send_errors: u64,
}

/// The engine's side of the metrics.
pub struct Metrics {
    /// Where the responder listens.
    pub addr: SocketAddr,
    page: Arc<Page>,
    /// Each live flow's counters when last counted.
    flows: HashMap<FlowKey, Counters, foldhash::fast::RandomState>,
    procs: HashMap<ProcKey, Traffic, foldhash::fast::RandomState>,
    /// Processes with labels of their own (never removed).
    shown: std::collections::HashSet<ProcKey, foldhash::fast::RandomState>,
    /// Traffic of processes beyond [`MAX_TRACKED`], and of flows without one.
    overflow: Traffic,
    unattributed: Traffic,
    ended: HashMap<&'static str, u64>,
    users: HashMap<u32, String>,
    passwd: Option<std::path::PathBuf>,
}

impl Metrics {
    /// Binds `addr` and starts the responder.
    pub fn start(addr: SocketAddr) -> io::Result<Metrics> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let page = Arc::new(Page::default());
        let p = page.clone();
        std::thread::Builder::new()
            .name("flowtop-metrics".into())
            .spawn(move || {
                loop {
                    match listener.accept() {
                        Ok((c, _)) => {
                            let _ = serve(c, &p);
                        }
                        // Out of descriptors, say: do not spin.
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            })?;
        Ok(Metrics::with_page(addr, page))
    }

    fn with_page(addr: SocketAddr, page: Arc<Page>) -> Metrics {
        Metrics {
            addr,
            page,
            flows: HashMap::default(),
            procs: HashMap::default(),
            shown: Default::default(),
            overflow: Traffic::default(),
            unattributed: Traffic::default(),
            ended: HashMap::new(),
            users: HashMap::new(),
            passwd: Some("/etc/passwd".into()),
        }
    }

    /// One change of the table: its counters' growth goes to its processes.
    pub fn change(&mut self, kind: EventKind, e: &Entry) {
        let key = e.flow.key();
        let now = e.flow.counters.unwrap_or_default();
        let before = if kind == EventKind::Destroy {
            *self.ended.entry(proto_label(e.flow.proto)).or_default() += 1;
            self.flows.remove(&key)
        } else {
            self.flows.insert(key, now)
        }
        .unwrap_or_default();
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let orig = (
            d(now.orig_bytes, before.orig_bytes),
            d(now.orig_packets, before.orig_packets),
        );
        let reply = (
            d(now.reply_bytes, before.reply_bytes),
            d(now.reply_packets, before.reply_packets),
        );
        if orig == (0, 0) && reply == (0, 0) {
            return;
        }
        // The initiator's socket sends the original direction, the acceptor's the reply.
        let (initiator, acceptor) = match e.direction {
            Some(Direction::In) => (None, e.owner.as_deref()),
            Some(Direction::Local) => (e.owner.as_deref(), e.peer.as_deref()),
            Some(Direction::Forward) => (None, None),
            Some(Direction::Out) | None => (e.owner.as_deref(), None),
        };
        if initiator.is_none() && acceptor.is_none() {
            self.unattributed.add(&traffic(orig, reply));
        }
        if let Some(o) = initiator {
            let t = traffic(orig, reply);
            self.count(o, &t);
        }
        if let Some(o) = acceptor {
            let t = traffic(reply, orig);
            self.count(o, &t);
        }
    }

    fn count(&mut self, o: &Owner, t: &Traffic) {
        let user = match self.users.get(&o.uid) {
            Some(u) => u.clone(),
            None => {
                let name = self
                    .passwd
                    .as_deref()
                    .and_then(|p| crate::ui::procinfo::user_name(p, o.uid))
                    .unwrap_or_else(|| o.uid.to_string());
                self.users.insert(o.uid, name.clone());
                name
            }
        };
        let id = o.identity.as_deref();
        let container = id.and_then(|i| i.container.as_ref());
        let key = ProcKey {
            comm: o.comm.clone(),
            exe: o.exe.clone().unwrap_or_default(),
            user,
            container: container
                .map(|c| c.name.clone().unwrap_or_else(|| c.id.clone()))
                .unwrap_or_default(),
            unit: id.and_then(|i| i.unit.clone()).unwrap_or_default(),
        };
        if let Some(p) = self.procs.get_mut(&key) {
            p.add(t);
        } else if self.procs.len() < MAX_TRACKED {
            self.procs.insert(key, *t);
        } else {
            self.overflow.add(t);
        }
    }

    /// Once per interval: renders the page if a scrape is waiting for it.
    pub fn tick(&mut self, table: &FlowTable, extra: Extra) {
        if self.page.wanted.swap(false, Relaxed) {
            let text = self.render(table, extra);
            let mut page = self.page.text.lock().unwrap_or_else(|p| p.into_inner());
            page.0 += 1;
            page.1 = text;
            self.page.fresh.notify_all();
        }
    }

    /// Fills the free places among the shown processes with the biggest
    /// of the others.
    fn choose_shown(&mut self) {
        if self.shown.len() >= TOP_PROCESSES {
            return;
        }
        let mut rest: Vec<(&ProcKey, u64)> = self
            .procs
            .iter()
            .filter(|(k, _)| !self.shown.contains(*k))
            .map(|(k, t)| (k, t.bytes()))
            .collect();
        rest.sort_unstable_by_key(|r| std::cmp::Reverse(r.1));
        let free = TOP_PROCESSES - self.shown.len();
        let picked: Vec<ProcKey> = rest.into_iter().take(free).map(|(k, _)| k.clone()).collect();
        self.shown.extend(picked);
    }

    fn render(&mut self, table: &FlowTable, extra: Extra) -> String {
        self.choose_shown();
        let mut out = String::with_capacity(8192);
        let mut other = self.overflow;
        let mut rows: Vec<(&ProcKey, &Traffic)> = Vec::new();
        for (k, t) in &self.procs {
            if self.shown.contains(k) {
                rows.push((k, t));
            } else {
                other.add(t);
            }
        }
        rows.sort_unstable_by(|a, b| {
            b.1.bytes()
                .cmp(&a.1.bytes())
                .then_with(|| a.0.comm.cmp(&b.0.comm))
        });
        let other_key = ProcKey {
            comm: "other".into(),
            exe: String::new(),
            user: String::new(),
            container: String::new(),
            unit: String::new(),
        };
        rows.push((&other_key, &other));
        let labels = |k: &ProcKey, dir: &str| {
            let mut l = format!(
                "comm=\"{}\",exe=\"{}\",user=\"{}\"",
                escape(&k.comm),
                escape(&k.exe),
                escape(&k.user)
            );
            // Only when known: an empty label is the same as none to
            // Prometheus, and the line stays as short as before.
            for (name, v) in [("container", &k.container), ("unit", &k.unit)] {
                if !v.is_empty() {
                    let _ = write!(l, ",{name}=\"{}\"", escape(v));
                }
            }
            let _ = write!(l, ",direction=\"{dir}\"");
            l
        };
        for (name, help, bytes) in [
            (
                "flowtop_process_bytes_total",
                "Bytes of the flows of a process, sent and received (IP level, as conntrack counts).",
                true,
            ),
            (
                "flowtop_process_packets_total",
                "Packets of the flows of a process, sent and received.",
                false,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (k, t) in &rows {
                let (s, r) = if bytes {
                    (t.sent_bytes, t.recv_bytes)
                } else {
                    (t.sent_packets, t.recv_packets)
                };
                let _ = writeln!(out, "{name}{{{}}} {s}", labels(k, "sent"));
                let _ = writeln!(out, "{name}{{{}}} {r}", labels(k, "received"));
            }
        }
        let u = self.unattributed;
        let _ = writeln!(
            out,
            "# HELP flowtop_unattributed_bytes_total Bytes of flows without a local process (forwarded, or not found).\n\
             # TYPE flowtop_unattributed_bytes_total counter\n\
             flowtop_unattributed_bytes_total{{direction=\"original\"}} {}\n\
             flowtop_unattributed_bytes_total{{direction=\"reply\"}} {}",
            u.sent_bytes, u.recv_bytes
        );
        // Live flows by protocol and state, and attribution coverage.
        let mut by: std::collections::BTreeMap<(&'static str, &'static str), u64> = Default::default();
        let (mut live, mut owned) = (0u64, 0u64);
        for e in table.iter() {
            live += 1;
            if e.owner.is_some() || e.direction == Some(Direction::Forward) {
                owned += 1;
            }
            let state = e.flow.state.map_or("", |s| s.name());
            *by.entry((proto_label(e.flow.proto), state)).or_default() += 1;
        }
        let _ = writeln!(
            out,
            "# HELP flowtop_flows Live flows by protocol and state.\n# TYPE flowtop_flows gauge"
        );
        for ((p, s), n) in &by {
            let _ = writeln!(out, "flowtop_flows{{proto=\"{p}\",state=\"{s}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP flowtop_flows_ended_total Flows that ended, by protocol.\n# TYPE flowtop_flows_ended_total counter");
        let mut ended: Vec<_> = self.ended.iter().collect();
        ended.sort();
        for (p, n) in ended {
            let _ = writeln!(out, "flowtop_flows_ended_total{{proto=\"{p}\"}} {n}");
        }
        let coverage = if live == 0 {
            1.0
        } else {
            owned as f64 / live as f64
        };
        let _ = writeln!(
            out,
            "# HELP flowtop_attribution_coverage_ratio Share of live flows with a process (forwarded flows count as covered).\n\
             # TYPE flowtop_attribution_coverage_ratio gauge\nflowtop_attribution_coverage_ratio {coverage}"
        );
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        for (name, help, path) in [
            (
                "flowtop_conntrack_entries",
                "Entries in this network namespace's conntrack table.",
                "/proc/sys/net/netfilter/nf_conntrack_count",
            ),
            (
                "flowtop_conntrack_limit",
                "The conntrack table's limit (nf_conntrack_max).",
                "/proc/sys/net/netfilter/nf_conntrack_max",
            ),
        ] {
            if let Some(v) = read(path) {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
            }
        }
        let s = &table.stats;
        for (name, help, v) in [
            (
                "flowtop_lost_events_total",
                "Conntrack event overruns (ENOBUFS): events the kernel dropped.",
                s.overruns,
            ),
            (
                "flowtop_resyncs_total",
                "Full dumps made to recover from lost events.",
                s.resyncs,
            ),
            (
                "flowtop_dumps_total",
                "Full dumps of the conntrack table.",
                s.dumps,
            ),
            (
                "flowtop_malformed_total",
                "Conntrack messages that did not decode.",
                s.malformed,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        }
        let c = extra.caches;
        for (name, help, kind, v) in [
            (
                "flowtop_address_book_entries",
                "Addresses whose reverse DNS name and GeoIP location are cached.",
                "gauge",
                c.address_book,
            ),
            (
                "flowtop_dns_answers_kept",
                "DNS answers kept to name flows (asked-for names).",
                "gauge",
                c.dns_answers_kept,
            ),
            (
                "flowtop_dns_messages_total",
                "DNS messages parsed for asked-for names.",
                "counter",
                c.dns_messages,
            ),
            (
                "flowtop_dns_errors_total",
                "DNS messages that did not parse.",
                "counter",
                c.dns_errors,
            ),
            (
                "flowtop_connection_names_total",
                "Names connections gave (TLS SNI, HTTP Host, QUIC).",
                "counter",
                c.conn_names,
            ),
            (
                "flowtop_names_memory_bytes",
                "Estimated memory of the name tracker.",
                "gauge",
                c.names_memory_bytes,
            ),
        ] {
            if let Some(v) = v {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
            }
        }
        if let Some(x) = extra.ipfix {
            for (name, help, v) in [
                ("flowtop_ipfix_records_total", "IPFIX records made.", x.records),
                (
                    "flowtop_ipfix_records_sent_total",
                    "IPFIX records sent to the collector.",
                    x.sent,
                ),
                (
                    "flowtop_ipfix_records_dropped_total",
                    "IPFIX records dropped (full queue or TCP backlog).",
                    x.dropped,
                ),
                ("flowtop_ipfix_messages_total", "IPFIX messages sent.", x.messages),
                (
                    "flowtop_ipfix_send_errors_total",
                    "IPFIX sends that failed.",
                    x.send_errors,
                ),
            ] {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
            }
        }
        out
    }
}

fn traffic(sent: (u64, u64), recv: (u64, u64)) -> Traffic {
    Traffic {
        sent_bytes: sent.0,
        sent_packets: sent.1,
        recv_bytes: recv.0,
        recv_packets: recv.1,
    }
}

fn proto_label(p: u8) -> &'static str {
    proto::name(p).unwrap_or("other")
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// Answers one connection: GET /metrics with the page, anything else 404.
fn serve(conn: TcpStream, page: &Page) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.by_ref().take(8192).read_line(&mut request)?;
    // The headers, up to the empty line (bounded).
    let mut header = String::new();
    for _ in 0..100 {
        header.clear();
        if reader.by_ref().take(8192).read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let mut words = request.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let mut conn = conn;
    if !(method == "GET" || method == "HEAD") || path != "/metrics" {
        let body = "flowtop serves /metrics\n";
        return write!(
            conn,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    let body = {
        let guard = page.text.lock().unwrap_or_else(|p| p.into_inner());
        let seen = guard.0;
        page.wanted.store(true, Relaxed);
        let (guard, _) = page
            .fresh
            .wait_timeout_while(guard, FRESH_WAIT, |g| g.0 == seen)
            .unwrap_or_else(|p| p.into_inner());
        guard.1.clone()
    };
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method == "GET" {
        conn.write_all(body.as_bytes())?;
    }
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::model::Flow;
    use std::net::IpAddr;
    use std::sync::Arc;
    use std::time::Instant;

    fn entry(id: u32, sport: u16, comm: &str, c: Counters) -> Entry {
        let mut f = Flow::test_tcp(
            id,
            "192.0.2.1".parse::<IpAddr>().expect("ip"),
            "198.51.100.2".parse::<IpAddr>().expect("ip"),
            sport,
        );
        f.counters = Some(c);
        let mut e = Entry::of_new_flow(f);
        e.direction = Some(Direction::Out);
        e.owner = Some(Arc::new(Owner {
            pid: id,
            comm: comm.into(),
            exe: Some(format!("/usr/bin/{comm}")),
            ..Owner::default()
        }));
        e
    }

    fn metrics() -> Metrics {
        let mut m = Metrics::with_page(([127, 0, 0, 1], 0).into(), Arc::new(Page::default()));
        m.passwd = None;
        m
    }

    fn value(text: &str, prefix: &str) -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn five_thousand_processes_make_a_bounded_page() {
        let mut m = metrics();
        let table = FlowTable::new(Default::default(), Instant::now());
        let mut total = 0;
        for i in 0..5000u32 {
            let bytes = u64::from(i) + 1;
            total += bytes;
            let c = Counters {
                orig_packets: 1,
                orig_bytes: bytes,
                ..Counters::default()
            };
            let e = entry(i + 1, 10_000 + (i % 50_000) as u16, &format!("p{i}"), c);
            m.change(EventKind::New, &e);
            m.change(EventKind::Destroy, &e);
        }
        let text = m.render(&table, Extra::default());
        let series = text
            .lines()
            .filter(|l| l.starts_with("flowtop_process_bytes_total{"))
            .count();
        assert_eq!(series, 2 * (TOP_PROCESSES + 1), "{text}");
        // The biggest are shown, and nothing is lost: shown + other = all.
        assert!(text.contains("comm=\"p4999\""));
        let sent: u64 = text
            .lines()
            .filter(|l| l.starts_with("flowtop_process_bytes_total{") && l.contains("direction=\"sent\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(sent, total);
        assert_eq!(
            value(&text, "flowtop_flows_ended_total{proto=\"tcp\"}"),
            Some(5000)
        );
    }

    #[test]
    fn counters_follow_the_flow_and_labels_are_escaped() {
        let mut m = metrics();
        let table = FlowTable::new(Default::default(), Instant::now());
        let c = |b| Counters {
            orig_packets: 1,
            orig_bytes: b,
            reply_packets: 1,
            reply_bytes: 2 * b,
        };
        let e = entry(1, 40_000, "we\"ird\\", c(100));
        m.change(EventKind::New, &e);
        let e2 = entry(1, 40_000, "we\"ird\\", c(150));
        m.change(EventKind::Update, &e2);
        m.change(EventKind::Destroy, &e2);
        let text = m.render(&table, Extra::default());
        let sent = "flowtop_process_bytes_total{comm=\"we\\\"ird\\\\\",exe=\"/usr/bin/we\\\"ird\\\\\",user=\"0\",direction=\"sent\"}";
        assert_eq!(value(&text, sent), Some(150), "{text}");
        let recv = sent.replace("\"sent\"", "\"received\"");
        assert_eq!(value(&text, &recv), Some(300), "{text}");
    }

    /// A process in a container or a unit gets those labels; the others
    /// keep the short label set.
    #[test]
    fn container_and_unit_are_labels_when_known() {
        use crate::attribution::identity::Identity;
        let mut m = metrics();
        let table = FlowTable::new(Default::default(), Instant::now());
        let c = Counters {
            orig_packets: 1,
            orig_bytes: 70,
            ..Counters::default()
        };
        let mut boxed = entry(1, 40_001, "nginx", c);
        let id = Identity::parse(
            "/system.slice/docker-4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b.scope",
        );
        let mut o = (**boxed.owner.as_ref().expect("owner")).clone();
        o.identity = Some(Arc::new(id.clone()));
        boxed.owner = Some(Arc::new(o));
        m.change(EventKind::New, &boxed);
        m.change(EventKind::New, &entry(2, 40_002, "curl", c));
        let text = m.render(&table, Extra::default());
        let ctr = id.container.as_ref().expect("a docker container");
        let labelled = format!(
            "flowtop_process_bytes_total{{comm=\"nginx\",exe=\"/usr/bin/nginx\",user=\"0\",container=\"{}\",unit=\"{}\",direction=\"sent\"}}",
            ctr.name.clone().unwrap_or_else(|| ctr.id.clone()),
            id.unit.as_deref().expect("the scope is the unit")
        );
        assert_eq!(value(&text, &labelled), Some(70), "{text}");
        let plain =
            "flowtop_process_bytes_total{comm=\"curl\",exe=\"/usr/bin/curl\",user=\"0\",direction=\"sent\"}";
        assert_eq!(value(&text, plain), Some(70), "{text}");
    }

    /// The responder answers a scrape with the page the engine renders,
    /// and anything else with 404.
    #[test]
    fn scrape_over_http() {
        let mut m = Metrics::start("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = m.addr;
        let get = move |path: &str| {
            let path = path.to_owned();
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(addr).expect("connect");
                write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
                let mut s = String::new();
                std::io::Read::read_to_string(&mut c, &mut s).expect("read");
                s
            })
        };
        let table = FlowTable::new(Default::default(), Instant::now());
        let scrape = get("/metrics");
        while !scrape.is_finished() {
            m.tick(&table, Extra::default());
            std::thread::sleep(Duration::from_millis(20));
        }
        let page = scrape.join().expect("scrape");
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(
            page.contains("\r\n\r\n# HELP flowtop_process_bytes_total"),
            "{page}"
        );
        let other = get("/").join().expect("get /");
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    }
}
