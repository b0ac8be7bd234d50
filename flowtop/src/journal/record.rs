//! The owned record of one flow that the engine hands to the journal's
//! writer thread: built from a table [`Entry`] (and the address book) on the
//! engine's thread, so that the writer never touches the table.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::enrich::book::{AddrView, AddressBook};
use crate::flow::model::{Counters, Direction, Owner, Tuple};
use crate::flow::table::Entry;

/// One row of the `flow` table, before interning.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRecord {
    pub ct_id: u32,
    pub proto: u8,
    pub orig: Tuple,
    /// The reply tuple; None when it mirrors the original (no NAT).
    pub reply: Option<Tuple>,
    /// As `--json`'s `state`.
    pub state: Option<&'static str>,
    /// As `--json`'s `direction`.
    pub direction: Option<&'static str>,
    pub start_ms: i64,
    /// None: a checkpoint of a flow still live.
    pub end_ms: Option<i64>,
    pub counters: Option<Counters>,
    pub owner: Option<Arc<Owner>>,
    pub peer: Option<Arc<Owner>>,
    /// As `--json`'s `attribution`.
    pub attribution: Option<&'static str>,
    pub dst_name: Option<Arc<str>>,
    pub dst_name_source: Option<&'static str>,
    /// The destination's PTR name (`--json`'s `dst_host`).
    pub dst_host: Option<String>,
    pub src_country: Option<Arc<str>>,
    pub dst_country: Option<Arc<str>>,
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// When `e` started: the kernel's start time, else `first_seen_ms`.
pub fn start_ms(e: &Entry, first_seen_ms: i64) -> i64 {
    e.flow
        .start()
        .and_then(|ns| i64::try_from(ns / 1_000_000).ok())
        .unwrap_or(first_seen_ms)
}

/// Whether `reply` is `orig` seen from the other end (no NAT).
fn mirrors(orig: &Tuple, reply: &Tuple) -> bool {
    reply.src == orig.dst && reply.dst == orig.src && reply.sport == orig.dport && reply.dport == orig.sport
}

impl FlowRecord {
    /// The record of `e`: ended at `end_ms` (None: a checkpoint), started
    /// at the kernel's start time, else at `first_seen_ms`. Names and
    /// countries are read from `book` as `--json` reads them.
    pub fn of(e: &Entry, first_seen_ms: i64, end_ms: Option<i64>, book: Option<&AddressBook>) -> FlowRecord {
        let f = &e.flow;
        let start_ms = start_ms(e, first_seen_ms);
        let who = e.who();
        let (dst_host, src_country, dst_country) = match book {
            Some(book) => book.with_pair(f.orig.src, f.orig.dst, |s, d| {
                (
                    d.and_then(AddrView::host).map(str::to_owned),
                    s.and_then(|v| v.country.clone()),
                    d.and_then(|v| v.country.clone()),
                )
            }),
            None => (None, None, None),
        };
        FlowRecord {
            ct_id: f.id,
            proto: f.proto,
            orig: f.orig,
            reply: (!mirrors(&f.orig, &f.reply)).then_some(f.reply),
            state: f.state.map(|s| s.name()),
            direction: who.direction.map(Direction::name),
            start_ms,
            end_ms,
            counters: f.counters,
            owner: e.owner.clone(),
            peer: e.peer.clone(),
            attribution: who.owner.map(|o| o.how.name()),
            dst_name: who.name.map(|n| n.name.clone()),
            dst_name_source: who.name.map(|n| n.source.as_str()),
            dst_host,
            src_country,
            dst_country,
        }
    }
}

/// An address as the journal stores it: 4 bytes for IPv4 (never
/// v4-mapped), 16 for IPv6.
pub fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => a.octets().to_vec(),
        },
    }
}
