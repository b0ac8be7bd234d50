//! What the screen shows of a flow, and the per-process and per-country
//! aggregates: the text of each cell, made terminal-safe here, once, so the
//! renderer only lays out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::attribution::Owner;
use crate::enrich::book::AddressBook;
use crate::enrich::services::Services;
use crate::flow::model::{proto, Counters};
use crate::flow::rate::Rates;
use crate::flow::table::{EndedFlows, Entry};
pub use crate::output::ends::{direction_marker, ends, local_sends_reply, Ends};
use crate::output::format::human_bytes;
use crate::output::safe::terminal_safe;

/// Where names come from: the address book (DNS, GeoIP) and the service
/// tables. Reads only; never waits on a lookup.
#[derive(Clone, Copy)]
pub struct RowCtx<'a> {
    pub book: &'a AddressBook,
    pub services: &'a Services,
}

impl RowCtx<'_> {
    /// The name of `ip` when reverse DNS found one, else the number.
    pub fn address(&self, ip: IpAddr) -> String {
        self.book
            .with(ip, |v| {
                v.and_then(|v| v.host().map(|h| terminal_safe(h).into_owned()))
            })
            .unwrap_or_else(|| ip.to_string())
    }

    /// The ADDRESS of a flow's remote end `ip`: the name its program asked
    /// for, after the mark of its source (see
    /// [`crate::output::ends::name_mark`]), else [`Self::address`].
    pub fn remote_address(&self, e: &Entry, ip: IpAddr) -> String {
        match crate::output::ends::remote_asked_name(e) {
            Some(n) if ip == e.flow.orig.dst => crate::output::ends::marked_name(n),
            _ => self.address(ip),
        }
    }

    /// "DE, Berlin", "DE", the scope label ("private"), or None.
    pub fn geo_of(&self, ip: IpAddr) -> Option<String> {
        self.book.with(ip, |v| {
            let v = v?;
            match (&v.country, &v.city) {
                (Some(cc), Some(city)) => Some(format!("{}, {}", terminal_safe(cc), terminal_safe(city))),
                (Some(cc), None) => Some(terminal_safe(cc).into_owned()),
                _ => v.scope.map(str::to_owned),
            }
        })
    }

    /// Whether the GeoIP database gave `ip` a country.
    pub fn has_country(&self, ip: IpAddr) -> bool {
        self.book.with(ip, |v| v.is_some_and(|v| v.country.is_some()))
    }

    /// The ISO country code of `ip`, or its scope label, for the Countries tab.
    pub fn country_of(&self, ip: IpAddr) -> Option<String> {
        self.book.with(ip, |v| {
            let v = v?;
            v.country
                .as_ref()
                .map(|c| terminal_safe(c).into_owned())
                .or_else(|| v.scope.map(str::to_owned))
        })
    }

    /// "443/https", "53", or "-" for protocols without ports.
    pub fn port(&self, proto_nr: u8, port: Option<u16>) -> String {
        match port {
            Some(p) => match self.services.name(proto_nr, p) {
                Some(name) => format!("{p}/{}", terminal_safe(name)),
                None => p.to_string(),
            },
            None => "-".to_owned(),
        }
    }
}

pub fn proto_name(p: u8) -> String {
    proto::name(p).map_or_else(|| p.to_string(), str::to_owned)
}

/// `comm`, made safe, or "-" for an unattributed flow.
pub fn process_name(owner: Option<&Arc<Owner>>) -> String {
    owner.map_or_else(|| "-".to_owned(), |o| terminal_safe(&o.comm).into_owned())
}

/// "2.0K/3.0MB": sent by the initiator / sent back, in bytes (`-b` and
/// `b` are about rates only, as in the original flowtop).
pub fn bytes_pair(e: &Entry) -> String {
    match e.flow.counters {
        Some(c) => format!(
            "{}/{}B",
            human_bytes(c.orig_bytes as f64),
            human_bytes(c.reply_bytes as f64)
        ),
        None => "n/a".to_owned(),
    }
}

/// A rate in bytes or bits per second.
pub fn rate_text(bytes_per_sec: f64, bits: bool) -> String {
    if bits {
        format!("{}b/s", human_bytes(bytes_per_sec * 8.0))
    } else {
        format!("{}B/s", human_bytes(bytes_per_sec))
    }
}

/// "1.0K/20K B/s" of a flow whose measured rates are `rates` (see
/// [`Flows::measured_rates`](crate::flow::table::Flows)); "-" before the
/// first measurement.
pub fn rate_pair(e: &Entry, rates: Option<Rates>, bits: bool) -> String {
    if e.flow.counters.is_none() {
        return "n/a".to_owned();
    }
    match rates {
        Some(r) => {
            let unit = if bits { 8.0 } else { 1.0 };
            format!(
                "{}/{}{}",
                human_bytes(r.orig_bytes * unit),
                human_bytes(r.reply_bytes * unit),
                if bits { "b/s" } else { "B/s" }
            )
        }
        None => "-".to_owned(),
    }
}

/// Whether traffic moved during the last measurement (`a`: active only),
/// by a flow's measured rates.
pub fn is_active(rates: Option<Rates>) -> bool {
    rates.is_some_and(|r| r.orig_bytes + r.reply_bytes > 0.0)
}

/// Bytes and rates of one flow seen from the local host: what it sent
/// and received (see [`local_sends_reply`]). `rates` are the measured
/// ones (see [`Flows::measured_rates`](crate::flow::table::Flows)).
fn sent_received(e: &Entry, rates: Option<Rates>) -> (u64, u64, f64, f64) {
    let (ob, rb) = e.flow.counters.map_or((0, 0), |c| (c.orig_bytes, c.reply_bytes));
    let r = rates.unwrap_or_default();
    if local_sends_reply(e) {
        (rb, ob, r.reply_bytes, r.orig_bytes)
    } else {
        (ob, rb, r.orig_bytes, r.reply_bytes)
    }
}

/// The rates an ended flow adds to its interval: the bytes it moved since
/// its last rate, over the interval (sent, received from the local host).
fn ended_rates(e: &Entry, moved: Counters, span: std::time::Duration) -> (f64, f64) {
    let secs = span.as_secs_f64();
    if secs <= 0.0 {
        return (0.0, 0.0);
    }
    let (o, r) = (moved.orig_bytes as f64 / secs, moved.reply_bytes as f64 / secs);
    if local_sends_reply(e) {
        (r, o)
    } else {
        (o, r)
    }
}

/// Bytes per second out of and into this host, of some flows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Throughput {
    pub sent: f64,
    pub received: f64,
}

impl Throughput {
    pub fn add_flow(&mut self, e: &Entry, rates: Option<Rates>) {
        let (_, _, s, r) = sent_received(e, rates);
        self.sent += s;
        self.received += r;
    }

    pub fn add_ended(&mut self, e: &Entry, moved: Counters, span: std::time::Duration) {
        let (s, r) = ended_rates(e, moved, span);
        self.sent += s;
        self.received += r;
    }
}

/// The ended flows of `ended` that `keep` keeps, with the rates each adds
/// (see [`EndedFlows`]).
pub fn ended_flows<'a>(
    ended: &'a EndedFlows,
    mut keep: impl FnMut(&Entry) -> bool + 'a,
) -> impl Iterator<Item = (&'a Entry, Counters)> + 'a {
    ended
        .flows
        .iter()
        .filter(move |(e, _)| keep(e))
        .map(|(e, c)| (e, *c))
}

/// Totals shared by the Processes and Countries rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub flows: usize,
    pub sent: u64,
    pub received: u64,
    pub sent_rate: f64,
    pub received_rate: f64,
}

impl Totals {
    fn add(&mut self, e: &Entry, rates: Option<Rates>) {
        let (s, r, sr, rr) = sent_received(e, rates);
        self.add_parts(s, r, sr, rr);
    }

    /// A flow seen from its other local end (the peer of a local flow):
    /// what one end sends the other receives.
    fn add_as_peer(&mut self, e: &Entry, rates: Option<Rates>) {
        let (s, r, sr, rr) = sent_received(e, rates);
        self.add_parts(r, s, rr, sr);
    }

    fn add_parts(&mut self, sent: u64, received: u64, sent_rate: f64, received_rate: f64) {
        self.flows += 1;
        self.sent += sent;
        self.received += received;
        self.sent_rate += sent_rate;
        self.received_rate += received_rate;
    }

    fn add_ended(&mut self, e: &Entry, moved: Counters, span: std::time::Duration, as_peer: bool) {
        let (s, r) = ended_rates(e, moved, span);
        let (s, r) = if as_peer { (r, s) } else { (s, r) };
        self.sent_rate += s;
        self.received_rate += r;
    }

    fn bytes(&self) -> u64 {
        self.sent + self.received
    }
}

/// What a row of the Processes tab gathers: one process, or every
/// process of one executable and user (the default: three `python3`
/// programs of one user are one row until `g` splits them by pid).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProcKey {
    /// Flows without an owner.
    Unattributed,
    Pid(u32),
    /// The executable (the comm when it is not known) and the uid.
    Program(String, u32),
    /// The container, app or unit (issue 15).
    Identity(String),
}

/// One row of the Processes tab.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcRow {
    pub key: ProcKey,
    /// The comm of the first process found, made safe.
    pub comm: String,
    pub uid: Option<u32>,
    pub exe: Option<String>,
    /// The processes gathered, ascending (empty for unattributed flows).
    pub pids: Vec<u32>,
    /// The owner record of a row of one process (for its command line).
    pub owner: Option<Arc<Owner>>,
    pub totals: Totals,
}

impl ProcRow {
    /// The pid of a row of exactly one process.
    pub fn single_pid(&self) -> Option<u32> {
        match self.pids.as_slice() {
            [pid] => Some(*pid),
            _ => None,
        }
    }
}

/// The command line of a process as its owner record has it (captured at
/// exec, so known after the process exited), made safe; the screen reads
/// /proc for a live process without one (see [`super::procinfo`]).
pub fn owner_cmdline(owner: &Owner) -> Option<String> {
    owner
        .cmdline
        .as_deref()
        .map(|c| crate::output::safe::terminal_safe(c).into_owned())
}

/// The key of `owner`'s row: per pid, or per program and user.
fn proc_key(owner: Option<&Arc<Owner>>, per_pid: bool, by_identity: bool) -> ProcKey {
    let label = |o: &Owner| o.identity.as_deref().and_then(|i| i.label()).map(str::to_owned);
    match owner {
        None => ProcKey::Unattributed,
        // A process with no container, app or unit keeps its program row.
        Some(o) if by_identity && label(o).is_some() => ProcKey::Identity(label(o).unwrap_or_default()),
        Some(o) if per_pid => ProcKey::Pid(o.pid),
        Some(o) => ProcKey::Program(o.exe.clone().unwrap_or_else(|| o.comm.clone()), o.uid),
    }
}

/// Gathers the Processes rows: each flow counts for its owner's row; a
/// local flow (both ends here) counts for its peer's row too, with sent and
/// received swapped, and once when both ends fall in one row (then all its
/// bytes are both sent and received by that row). Ended flows (see
/// [`EndedFlows`]) add their rates to their rows.
#[derive(Default)]
pub struct ProcTable {
    per_pid: bool,
    by_identity: bool,
    rows: Vec<ProcRow>,
    by_key: HashMap<ProcKey, usize>,
    /// The row of each owner record seen, by address: the flows of one
    /// process share their record, so a row's key (with its text) is made
    /// once per process rather than once per flow.
    by_owner: HashMap<usize, usize>,
}

impl ProcTable {
    pub fn new(per_pid: bool) -> ProcTable {
        ProcTable {
            per_pid,
            ..ProcTable::default()
        }
    }

    /// Rows per container, app or unit instead (`g`'s third step).
    pub fn by_identity(mut self, on: bool) -> ProcTable {
        self.by_identity = on;
        self
    }

    /// The index of `owner`'s row, made when new.
    fn index(&mut self, owner: Option<&Arc<Owner>>) -> usize {
        let at = owner.map(|o| Arc::as_ptr(o) as usize);
        if let Some(i) = at.and_then(|a| self.by_owner.get(&a)) {
            return *i;
        }
        let key = proc_key(owner, self.per_pid, self.by_identity);
        let rows = &mut self.rows;
        let i = *self.by_key.entry(key.clone()).or_insert_with(|| {
            let comm = match (&key, owner) {
                (ProcKey::Identity(label), _) => terminal_safe(label).into_owned(),
                (_, Some(o)) => terminal_safe(&o.comm).into_owned(),
                (_, None) => "(unattributed)".to_owned(),
            };
            rows.push(ProcRow {
                key,
                comm,
                uid: owner.map(|o| o.uid),
                exe: owner.and_then(|o| o.exe.as_deref().map(|x| terminal_safe(x).into_owned())),
                pids: Vec::new(),
                owner: owner.cloned(),
                totals: Totals::default(),
            });
            rows.len() - 1
        });
        if let (Some(o), Some(a)) = (owner, at) {
            let pids = &mut self.rows[i].pids;
            if let Err(p) = pids.binary_search(&o.pid) {
                pids.insert(p, o.pid);
            }
            self.by_owner.insert(a, i);
        }
        i
    }

    fn row(&mut self, owner: Option<&Arc<Owner>>) -> &mut ProcRow {
        let i = self.index(owner);
        &mut self.rows[i]
    }

    /// The peer whose row also counts `e`, unless it is the owner's row.
    fn peer_of<'e>(&mut self, e: &'e Entry) -> Option<&'e Arc<Owner>> {
        let peer = e.peer.as_ref()?;
        let same = self.index(Some(peer)) == self.index(e.owner.as_ref());
        (!same).then_some(peer)
    }

    pub fn add(&mut self, e: &Entry, rates: Option<Rates>) {
        let peer = self.peer_of(e);
        let one_row = e.peer.is_some() && peer.is_none();
        let row = self.row(e.owner.as_ref());
        if one_row {
            let (s, r, sr, rr) = sent_received(e, rates);
            row.totals.add_parts(s + r, s + r, sr + rr, sr + rr);
            if let Some(p) = &e.peer {
                let _ = self.row(Some(p));
            }
        } else {
            row.totals.add(e, rates);
        }
        if let Some(p) = peer {
            self.row(Some(p)).totals.add_as_peer(e, rates);
        }
    }

    pub fn add_ended(&mut self, e: &Entry, moved: Counters, span: std::time::Duration) {
        // An idle flow that ended adds nothing, and no row of its own.
        if moved.orig_bytes + moved.reply_bytes == 0 {
            return;
        }
        let peer = self.peer_of(e);
        let one_row = e.peer.is_some() && peer.is_none();
        self.row(e.owner.as_ref()).totals.add_ended(e, moved, span, false);
        if one_row {
            self.row(e.owner.as_ref()).totals.add_ended(e, moved, span, true);
        }
        if let Some(p) = peer {
            self.row(Some(p)).totals.add_ended(e, moved, span, true);
        }
    }

    /// The rows, in the order `sort` gives.
    pub fn rows(self, sort: ProcSort) -> Vec<ProcRow> {
        let mut rows = self.rows;
        sort_processes(&mut rows, sort);
        rows
    }
}

/// A column of the Processes tab; the order is the on-screen order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcColumn {
    Process,
    User,
    Pids,
    Flows,
    Sent,
    Received,
    SentRate,
    ReceivedRate,
    Command,
}

impl ProcColumn {
    pub const ALL: [ProcColumn; 9] = [
        ProcColumn::Process,
        ProcColumn::User,
        ProcColumn::Pids,
        ProcColumn::Flows,
        ProcColumn::Sent,
        ProcColumn::Received,
        ProcColumn::SentRate,
        ProcColumn::ReceivedRate,
        ProcColumn::Command,
    ];

    pub fn title(self, per_pid: bool) -> &'static str {
        match self {
            ProcColumn::Process => "PROCESS",
            ProcColumn::User => "USER",
            ProcColumn::Pids if per_pid => "PID",
            ProcColumn::Pids => "PIDS",
            ProcColumn::Flows => "FLOWS",
            ProcColumn::Sent => "SENT",
            ProcColumn::Received => "RECEIVED",
            ProcColumn::SentRate => "SENT/s",
            ProcColumn::ReceivedRate => "RECV/s",
            // Grouped by program, the program; per pid, its command line.
            ProcColumn::Command if per_pid => "COMMAND",
            ProcColumn::Command => "EXECUTABLE",
        }
    }

    /// As in the Flows tab: amounts biggest first, names A to Z.
    pub fn default_desc(self) -> bool {
        !matches!(self, ProcColumn::Process | ProcColumn::User | ProcColumn::Command)
    }
}

/// The order of the Processes tab (the same keys as the Flows tab's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSort {
    pub column: ProcColumn,
    pub desc: bool,
}

impl Default for ProcSort {
    /// Busiest first: by what the processes received, then sent.
    fn default() -> Self {
        ProcSort {
            column: ProcColumn::Received,
            desc: true,
        }
    }
}

impl ProcSort {
    /// The next (`step` 1) or previous (`step` -1) column, in its default
    /// direction.
    pub fn step(self, step: isize) -> ProcSort {
        let all = ProcColumn::ALL;
        let at = all.iter().position(|c| *c == self.column).unwrap_or(0) as isize;
        let column = all[(at + step).rem_euclid(all.len() as isize) as usize];
        ProcSort {
            column,
            desc: column.default_desc(),
        }
    }
}

/// Sorts Processes rows by `sort`, ties by total bytes then key, so that
/// rows never trade places between refreshes.
pub fn sort_processes(rows: &mut [ProcRow], sort: ProcSort) {
    use std::cmp::Ordering;
    let f = |a: f64, b: f64| a.partial_cmp(&b).unwrap_or(Ordering::Equal);
    rows.sort_by(|a, b| {
        let (x, y) = (&a.totals, &b.totals);
        let by = match sort.column {
            ProcColumn::Process => a.comm.to_lowercase().cmp(&b.comm.to_lowercase()),
            ProcColumn::User => a.uid.cmp(&b.uid),
            ProcColumn::Pids => match (a.single_pid(), b.single_pid()) {
                (Some(p), Some(q)) => p.cmp(&q),
                _ => a.pids.len().cmp(&b.pids.len()),
            },
            ProcColumn::Flows => x.flows.cmp(&y.flows),
            ProcColumn::Sent => x.sent.cmp(&y.sent),
            ProcColumn::Received => x.received.cmp(&y.received),
            ProcColumn::SentRate => f(x.sent_rate, y.sent_rate),
            ProcColumn::ReceivedRate => f(x.received_rate, y.received_rate),
            ProcColumn::Command => a.exe.cmp(&b.exe),
        };
        let by = if sort.desc { by.reverse() } else { by };
        by.then_with(|| y.bytes().cmp(&x.bytes()))
            .then_with(|| a.key.cmp(&b.key))
    });
}

/// One row of the Countries tab; `country` is a code, a scope label or "??".
#[derive(Debug, Clone, PartialEq)]
pub struct CountryRow {
    pub country: String,
    pub totals: Totals,
}

/// Countries of the flows' remote ends (see [`ends`]), by bytes: the
/// remote end's country, or the local end's when only it has one (a
/// flow to a private address whose other end is on the internet, seen
/// from a router); otherwise the remote end's scope label ("private",
/// ...) or "??".
pub fn countries<'a>(
    flows: impl Iterator<Item = (&'a Entry, Option<Rates>)>,
    ctx: &RowCtx<'_>,
) -> Vec<CountryRow> {
    // Many flows share an address: ask the book once per address, and
    // count by the country's number among those seen, so that a flow
    // costs no text of its own.
    // Number 0 is "??": flows without a country or a scope.
    let mut names: Vec<String> = vec!["??".to_owned()];
    let mut number: HashMap<String, usize> = HashMap::from([("??".to_owned(), 0)]);
    let mut known: HashMap<IpAddr, (bool, Option<usize>)> = HashMap::new();
    let mut lookup = |ip: IpAddr| {
        *known.entry(ip).or_insert_with(|| {
            let cc = ctx.country_of(ip).map(|cc| {
                *number.entry(cc).or_insert_with_key(|cc| {
                    names.push(cc.clone());
                    names.len() - 1
                })
            });
            (ctx.has_country(ip), cc)
        })
    };
    let mut totals: Vec<Totals> = Vec::new();
    for (e, rates) in flows {
        let Ends { local, remote, .. } = ends(e);
        let (dst_has, dst_cc) = lookup(remote.0);
        let cc = if dst_has {
            dst_cc
        } else {
            match lookup(local.0) {
                (true, src_cc) => src_cc,
                _ => dst_cc,
            }
        };
        let i = cc.unwrap_or(0);
        if totals.len() <= i {
            totals.resize(i + 1, Totals::default());
        }
        totals[i].add(e, rates);
    }
    let by_cc = totals
        .into_iter()
        .zip(names)
        .filter(|(t, _)| t.flows > 0)
        .map(|(t, name)| (name, t));
    let mut rows: Vec<CountryRow> = by_cc
        .map(|(country, totals)| CountryRow { country, totals })
        .collect();
    rows.sort_by(|a, b| {
        b.totals
            .bytes()
            .cmp(&a.totals.bytes())
            .then_with(|| a.country.cmp(&b.country))
    });
    rows
}
