//! The History tab: the flows `flowtop record` wrote to the journal,
//! newest first. The journal is read on a thread of its own ([`Loader`]),
//! never on the draw path: when the tab is opened and every few seconds
//! while it is shown. Rows are filtered with the screen's filter and
//! sorted with `<` `>` `r` like the Flows tab.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::journal::query::{Flow, Journal};
use crate::output::format::human_bytes;
use crate::output::safe::terminal_safe;

use super::filter::{Filter, PortTerm, Term};
use super::rows::RowCtx;

/// Flows read per refresh.
pub const LIMIT: usize = 1000;
/// How often a shown History tab reads the journal again.
pub const REFRESH: Duration = Duration::from_secs(3);

/// What one read of the journal gave: its newest ended flows, or why there
/// are none (one line).
#[derive(Debug, Clone)]
pub enum Loaded {
    Flows(Vec<Flow>),
    Message(String),
}

/// Reads the newest `limit` ended flows of the journal at `path`; a
/// missing, foreign, corrupt or unreadable journal is a message.
pub fn load(path: &Path, limit: usize) -> Loaded {
    use crate::journal::query::OpenError;
    let j = match Journal::open(path) {
        Ok(j) => j,
        Err(OpenError::Missing(p)) => {
            return Loaded::Message(format!(
                "no journal at {p}: run `flowtop record` to keep ended flows (see README), or choose one with --journal"
            ))
        }
        Err(e) => return Loaded::Message(e.to_string()),
    };
    match j.recent(limit) {
        Ok(flows) => Loaded::Flows(flows),
        Err(e) => Loaded::Message(format!("cannot read the journal {}: {e}", j.name())),
    }
}

/// The columns of the History tab, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    End,
    Duration,
    Process,
    Pid,
    Proto,
    Address,
    Port,
    Bytes,
    State,
    Country,
}

impl Column {
    pub const ALL: [Column; 10] = [
        Column::End,
        Column::Duration,
        Column::Process,
        Column::Pid,
        Column::Proto,
        Column::Address,
        Column::Port,
        Column::Bytes,
        Column::State,
        Column::Country,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::End => "END",
            Column::Duration => "DURATION",
            Column::Process => "PROCESS",
            Column::Pid => "PID",
            Column::Proto => "PROTO",
            Column::Address => "ADDRESS",
            Column::Port => "PORT",
            Column::Bytes => "BYTES",
            Column::State => "STATE",
            Column::Country => "CC",
        }
    }

    /// Width in columns, and whether right-aligned.
    pub fn width(self) -> (usize, bool) {
        match self {
            Column::End => (23, false),
            Column::Duration => (9, true),
            Column::Process => (15, false),
            Column::Pid => (7, true),
            Column::Proto => (5, false),
            Column::Address => (32, false),
            Column::Port => (10, true),
            Column::Bytes => (13, true),
            Column::State => (11, false),
            Column::Country => (3, false),
        }
    }
}

/// The History tab's order: a column, and descending or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub column: Column,
    pub desc: bool,
}

impl Default for Sort {
    /// Newest first.
    fn default() -> Sort {
        Sort {
            column: Column::End,
            desc: true,
        }
    }
}

impl Sort {
    /// The next (or previous) column; END and DURATION start descending.
    pub fn step(self, by: isize) -> Sort {
        let at = Column::ALL.iter().position(|c| *c == self.column).unwrap_or(0) as isize;
        let column = Column::ALL[(at + by).rem_euclid(Column::ALL.len() as isize) as usize];
        Sort {
            column,
            desc: matches!(column, Column::End | Column::Duration | Column::Bytes),
        }
    }
}

/// The History tab's state.
#[derive(Debug, Default)]
pub struct History {
    /// The journal's path, as given (`--journal`), for messages.
    pub path: Option<PathBuf>,
    /// The flows last read, newest first.
    pub flows: Vec<Flow>,
    /// Why there are no flows (None: not read yet, or read).
    pub message: Option<String>,
    /// Whether the journal was read at least once.
    pub loaded: bool,
    /// Indices into `flows`: the rows, filtered and sorted.
    pub rows: Vec<usize>,
    pub sort: Sort,
}

impl History {
    /// Takes what the loader read.
    pub fn set(&mut self, loaded: Loaded) {
        self.loaded = true;
        match loaded {
            Loaded::Flows(f) => {
                self.flows = f;
                self.message = None;
            }
            Loaded::Message(m) => {
                self.flows.clear();
                self.message = Some(m);
            }
        }
    }

    /// Filters and sorts the rows again.
    pub fn derive(&mut self, filter: &Filter, ctx: &RowCtx<'_>) {
        self.rows = (0..self.flows.len())
            .filter(|&i| matches(filter, &self.flows[i], ctx))
            .collect();
        let flows = &self.flows;
        let sort = self.sort;
        self.rows.sort_by(|&a, &b| {
            let o = compare(&flows[a], &flows[b], sort.column, ctx);
            // Ties newest first, whatever the order.
            let o = if sort.desc { o.reverse() } else { o };
            o.then(flows[b].end_ms.cmp(&flows[a].end_ms))
        });
    }

    pub fn flow_at(&self, i: usize) -> Option<&Flow> {
        self.rows.get(i).map(|&f| &self.flows[f])
    }
}

fn compare(a: &Flow, b: &Flow, c: Column, ctx: &RowCtx<'_>) -> std::cmp::Ordering {
    match c {
        Column::End => a.end_ms.cmp(&b.end_ms),
        Column::Duration => duration_ms(a).cmp(&duration_ms(b)),
        Column::Process => a.comm.cmp(&b.comm),
        Column::Pid => a.pid.cmp(&b.pid),
        Column::Proto => a.proto.cmp(&b.proto),
        Column::Address => address_text(a, ctx).cmp(&address_text(b, ctx)),
        Column::Port => a.dport.cmp(&b.dport),
        Column::Bytes => total_bytes(a).cmp(&total_bytes(b)),
        Column::State => a.state.cmp(&b.state),
        Column::Country => a.dst_country.cmp(&b.dst_country),
    }
}

fn duration_ms(f: &Flow) -> i64 {
    f.end_ms.map_or(0, |e| e.saturating_sub(f.start_ms).max(0))
}

fn total_bytes(f: &Flow) -> u64 {
    f.orig_bytes
        .unwrap_or(0)
        .saturating_add(f.reply_bytes.unwrap_or(0))
}

/// The mark of an asked-for name by its journal source (as on the Flows
/// tab; the journal does not keep whether it was an ECH outer name).
fn name_mark(source: Option<&str>) -> &'static str {
    match source {
        Some("sni") => "*",
        Some("http") => "^",
        Some("quic") => "~",
        Some("dns") => "=",
        _ => "",
    }
}

/// The ADDRESS cell: the direction mark, then the asked-for name with its
/// mark, else the recorded reverse name, else the number.
pub fn address_text(f: &Flow, ctx: &RowCtx<'_>) -> String {
    let arrow = match f.direction.as_deref() {
        Some("out") => "→",
        Some("in") => "←",
        Some("local") => "↔",
        Some("forwarded") => "⇄",
        _ => "·",
    };
    let remote = if f.direction.as_deref() == Some("in") {
        f.src
    } else {
        f.dst
    };
    let shown = match (&f.dst_name, f.direction.as_deref()) {
        (Some(n), d) if d != Some("in") => {
            format!("{}{}", name_mark(f.dst_name_source.as_deref()), terminal_safe(n))
        }
        _ => match (&f.dst_host, f.direction.as_deref()) {
            (Some(h), d) if d != Some("in") => terminal_safe(h).into_owned(),
            _ => remote.map_or_else(|| "-".into(), |ip| ctx.address(ip)),
        },
    };
    format!("{arrow} {shown}")
}

/// The cells of a recorded flow, one per column of [`Column::ALL`].
pub fn cells(f: &Flow, ctx: &RowCtx<'_>, time_text: fn(u64) -> String) -> Vec<String> {
    let ms_ns = |ms: i64| u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000);
    Column::ALL
        .iter()
        .map(|c| match c {
            Column::End => f.end_ms.map_or_else(|| "-".into(), |e| time_text(ms_ns(e))),
            Column::Duration => duration_text(duration_ms(f)),
            Column::Process => f
                .comm
                .as_deref()
                .map_or_else(|| "-".into(), |c| terminal_safe(c).into_owned()),
            Column::Pid => f.pid.map_or_else(|| "-".into(), |p| p.to_string()),
            Column::Proto => super::rows::proto_name(f.proto),
            Column::Address => address_text(f, ctx),
            Column::Port => f.dport.map_or_else(|| "-".into(), |p| ctx.port(f.proto, Some(p))),
            Column::Bytes => match (f.orig_bytes, f.reply_bytes) {
                (None, None) => "n/a".into(),
                (o, r) => format!(
                    "{}/{}B",
                    human_bytes(o.unwrap_or(0) as f64),
                    human_bytes(r.unwrap_or(0) as f64)
                ),
            },
            Column::State => f
                .state
                .as_deref()
                .map_or_else(|| "-".into(), |s| terminal_safe(s).into_owned()),
            Column::Country => f
                .dst_country
                .as_deref()
                .map_or_else(|| "-".into(), |c| terminal_safe(c).into_owned()),
        })
        .collect()
}

/// The lines of a recorded flow's details: label, text (made safe).
pub fn detail_lines(f: &Flow, ctx: &RowCtx<'_>, time_text: fn(u64) -> String) -> Vec<(String, String)> {
    let ms_ns = |ms: i64| u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000);
    let safe = |s: &Option<String>| {
        s.as_deref()
            .map_or_else(|| "-".into(), |s| terminal_safe(s).into_owned())
    };
    let num = |n: Option<u32>| n.map_or_else(|| "-".into(), |n| n.to_string());
    let end = |ip: Option<IpAddr>, port: Option<u16>| match (ip, port) {
        (Some(IpAddr::V6(a)), Some(p)) => format!("[{a}]:{p}"),
        (Some(a), Some(p)) => format!("{a}:{p}"),
        (Some(a), None) => a.to_string(),
        (None, _) => "-".into(),
    };
    let bytes = |b: Option<u64>, p: Option<u64>| match (b, p) {
        (None, None) => "n/a".to_owned(),
        (b, p) => format!(
            "{}B, {} packets",
            human_bytes(b.unwrap_or(0) as f64),
            p.map_or_else(|| "-".into(), |p| p.to_string())
        ),
    };
    let name = match &f.dst_name {
        Some(n) => format!(
            "{}{} ({})",
            name_mark(f.dst_name_source.as_deref()),
            terminal_safe(n),
            f.dst_name_source.as_deref().unwrap_or("?")
        ),
        None => "-".into(),
    };
    let mut out = vec![
        ("protocol".to_owned(), super::rows::proto_name(f.proto)),
        (
            "original".into(),
            format!("{} → {}", end(f.src, f.sport), end(f.dst, f.dport)),
        ),
        (
            "reply".into(),
            format!(
                "{} → {}",
                end(f.reply_src, f.reply_sport),
                end(f.reply_dst, f.reply_dport)
            ),
        ),
        ("address".into(), address_text(f, ctx)),
        ("asked name".into(), name),
        ("reverse name".into(), safe(&f.dst_host)),
        ("state".into(), safe(&f.state)),
        ("direction".into(), safe(&f.direction)),
        ("started".into(), time_text(ms_ns(f.start_ms))),
        (
            "ended".into(),
            f.end_ms.map_or_else(|| "-".into(), |e| time_text(ms_ns(e))),
        ),
        ("duration".into(), duration_text(duration_ms(f))),
        ("sent".into(), bytes(f.orig_bytes, f.orig_packets)),
        ("received".into(), bytes(f.reply_bytes, f.reply_packets)),
        ("process".into(), format!("{} {}", safe(&f.comm), num(f.pid))),
        ("executable".into(), safe(&f.exe)),
        ("command".into(), safe(&f.cmdline)),
        ("user".into(), num(f.uid)),
        (
            "parent".into(),
            format!("{} {}", safe(&f.parent_comm), num(f.ppid)),
        ),
        ("attribution".into(), safe(&f.attribution)),
        (
            "countries".into(),
            format!("{} → {}", safe(&f.src_country), safe(&f.dst_country)),
        ),
    ];
    if f.peer_pid.is_some() || f.peer_comm.is_some() {
        out.push((
            "peer".into(),
            format!("{} {} {}", safe(&f.peer_comm), num(f.peer_pid), safe(&f.peer_exe)),
        ));
    }
    if f.container.is_some() || f.unit.is_some() {
        out.push(("container".into(), safe(&f.container)));
        out.push(("unit".into(), safe(&f.unit)));
    }
    out
}

/// `850ms`, `12.3s`, `4m05s`, `2h03m`.
pub fn duration_text(ms: i64) -> String {
    match ms {
        i64::MIN..=999 => format!("{}ms", ms.max(0)),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// Whether a recorded flow passes every term of the filter.
pub fn matches(filter: &Filter, f: &Flow, ctx: &RowCtx<'_>) -> bool {
    filter.terms.iter().all(|t| term_matches(t, f, ctx))
}

fn has(hay: Option<&str>, needle: &str) -> bool {
    hay.is_some_and(|h| h.to_lowercase().contains(needle))
}

fn ends(f: &Flow) -> impl Iterator<Item = IpAddr> {
    [f.src, f.dst].into_iter().flatten()
}

fn term_matches(t: &Term, f: &Flow, ctx: &RowCtx<'_>) -> bool {
    let ports = || [f.sport, f.dport].into_iter().flatten();
    let host = |s: &str| {
        has(f.dst_name.as_deref(), s)
            || has(f.dst_host.as_deref(), s)
            || ends(f).any(|ip| {
                ip.to_string().contains(s)
                    || ctx.book.with(ip, |v| {
                        v.and_then(|v| v.host())
                            .is_some_and(|h| h.to_lowercase().contains(s))
                    })
            })
    };
    match t {
        Term::Pid(pid) => f.pid == Some(*pid) || f.peer_pid == Some(*pid),
        Term::Comm(s) => has(f.comm.as_deref(), s) || has(f.peer_comm.as_deref(), s),
        Term::Exe(s) => has(f.exe.as_deref(), s) || has(f.peer_exe.as_deref(), s),
        Term::Port(p) => ports().any(|port| match p {
            PortTerm::Number(n) => port == *n,
            PortTerm::Service(s) => ctx
                .services
                .name(f.proto, port)
                .is_some_and(|n| n.eq_ignore_ascii_case(s)),
        }),
        Term::Host(s) => host(s),
        Term::Country(cc) => [&f.src_country, &f.dst_country]
            .into_iter()
            .any(|c| c.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(cc))),
        Term::State(s) => has(f.state.as_deref(), s),
        Term::Proto(p) => f.proto == *p,
        // The journal does not record identities (yet): nothing matches.
        Term::Container(_) | Term::Unit(_) | Term::App(_) => false,
        Term::Text(s) => {
            let number = s.parse::<u32>().ok();
            has(f.comm.as_deref(), s)
                || has(f.exe.as_deref(), s)
                || (number.is_some() && number == f.pid)
                || ports().any(|p| {
                    number == Some(u32::from(p))
                        || ctx
                            .services
                            .name(f.proto, p)
                            .is_some_and(|n| n.to_lowercase().contains(s))
                })
                || has(f.state.as_deref(), s)
                || crate::flow::model::proto::name(f.proto).is_some_and(|n| n == s)
                || host(s)
                || has(f.dst_country.as_deref(), s)
        }
    }
}

/// Reads the journal on a thread of its own: at once when asked
/// ([`Loader::refresh`]), and every [`REFRESH`] while the tab is shown.
pub struct Loader {
    ask: mpsc::Sender<()>,
    shown: Arc<AtomicBool>,
}

impl Loader {
    /// Starts the thread; `done` gets each read.
    pub fn spawn(path: PathBuf, done: impl Fn(Loaded) -> bool + Send + 'static) -> std::io::Result<Loader> {
        let (ask, asked) = mpsc::channel::<()>();
        let shown = Arc::new(AtomicBool::new(false));
        let on = Arc::clone(&shown);
        std::thread::Builder::new()
            .name("history".into())
            .spawn(move || loop {
                match asked.recv_timeout(REFRESH) {
                    Ok(()) => while asked.try_recv().is_ok() {},
                    Err(mpsc::RecvTimeoutError::Timeout) if on.load(Ordering::Relaxed) => {}
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                if !done(load(&path, LIMIT)) {
                    return;
                }
            })?;
        Ok(Loader { ask, shown })
    }

    /// The tab was opened (`true`, and read now) or left.
    pub fn shown(&self, on: bool) {
        self.shown.store(on, Ordering::Relaxed);
        if on {
            let _ = self.ask.send(());
        }
    }
}
