//! What the screen shows of a flow, and the per-process and per-country
//! aggregates: the text of each cell, made terminal-safe here, once, so the
//! renderer only lays out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::attribution::{How, Owner};
use crate::enrich::book::AddressBook;
use crate::enrich::services::Services;
use crate::flow::model::proto;
use crate::flow::rate::Rates;
use crate::flow::table::Entry;
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

/// "2.0K/3.0M": sent by the initiator / sent back.
pub fn bytes_pair(e: &Entry) -> String {
    match e.flow.counters {
        Some(c) => format!(
            "{}/{}",
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

/// Bytes and rates of one flow seen from its local process: a process
/// that accepted the connection (found through its listener) sends the
/// reply direction; otherwise it initiated and sends the original one.
fn sent_received(e: &Entry) -> (u64, u64, f64, f64) {
    let (ob, rb) = e.flow.counters.map_or((0, 0), |c| (c.orig_bytes, c.reply_bytes));
    let r = e.rate.rates();
    let responder = e.owner.as_ref().is_some_and(|o| o.how == How::Listener);
    if responder {
        (rb, ob, r.reply_bytes, r.orig_bytes)
    } else {
        (ob, rb, r.orig_bytes, r.reply_bytes)
    }
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
    fn add(&mut self, e: &Entry) {
        let (s, r, sr, rr) = sent_received(e);
        self.flows += 1;
        self.sent += s;
        self.received += r;
        self.sent_rate += sr;
        self.received_rate += rr;
    }

    fn bytes(&self) -> u64 {
        self.sent + self.received
    }
}

/// One row of the Processes tab. `pid` None gathers unattributed flows.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcRow {
    pub pid: Option<u32>,
    pub comm: String,
    pub exe: Option<String>,
    pub totals: Totals,
}

/// One row of the Countries tab; `country` is a code, a scope label or "??".
#[derive(Debug, Clone, PartialEq)]
pub struct CountryRow {
    pub country: String,
    pub totals: Totals,
}

/// Processes by bytes (most first), then pid.
pub fn processes<'a>(flows: impl Iterator<Item = &'a Entry>) -> Vec<ProcRow> {
    let mut by_pid: HashMap<Option<u32>, ProcRow> = HashMap::new();
    for e in flows {
        let pid = e.owner.as_ref().map(|o| o.pid);
        let row = by_pid.entry(pid).or_insert_with(|| ProcRow {
            pid,
            comm: e.owner.as_ref().map_or_else(
                || "(unattributed)".to_owned(),
                |o| terminal_safe(&o.comm).into_owned(),
            ),
            exe: e
                .owner
                .as_ref()
                .and_then(|o| o.exe.as_deref().map(|x| terminal_safe(x).into_owned())),
            totals: Totals::default(),
        });
        row.totals.add(e);
    }
    let mut rows: Vec<ProcRow> = by_pid.into_values().collect();
    rows.sort_by(|a, b| b.totals.bytes().cmp(&a.totals.bytes()).then(a.pid.cmp(&b.pid)));
    rows
}

/// Countries of the flows' remote ends, by bytes. The remote end is the
/// destination, or the source when only the source has a country (a
/// connection from the internet to a private address here); otherwise the
/// destination's scope label ("private", ...) or "??".
pub fn countries<'a>(flows: impl Iterator<Item = &'a Entry>, ctx: &RowCtx<'_>) -> Vec<CountryRow> {
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
    for e in flows {
        let (dst_has, dst_cc) = lookup(e.flow.orig.dst);
        let cc = if dst_has {
            dst_cc
        } else {
            match lookup(e.flow.orig.src) {
                (true, src_cc) => src_cc,
                _ => dst_cc,
            }
        };
        let i = cc.unwrap_or(0);
        if totals.len() <= i {
            totals.resize(i + 1, Totals::default());
        }
        totals[i].add(e);
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
