//! What the engine does with name captures: DNS answers go to the
//! [`NameBook`] (per receiving process and host-wide), the first bytes a
//! connection sends are gathered per tuple until they give a TLS server
//! name or an HTTP `Host`, and the first QUIC datagrams until they give the
//! Initial's server name. [`NameTracker::name_for`] then names a flow.
//!
//! Every map is bounded: per-tuple state lives in two-generation maps (at
//! most twice `half` entries, the oldest generation dropped whole) and is
//! freed as soon as a name is found or the bytes cannot give one. Answers to
//! flowtop's own reverse resolver never count.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::book::{self, NameBook};
use super::capture::{CaptureKind, NameCapture};
use super::dns::{self, Framing};
use super::hello::{self, HelloStep, MAX_HELLO};
use super::quic::QuicHello;
use super::{http, Source, Step};
use crate::flow::model::{Direction, Flow, Owner};

type Fast = foldhash::fast::RandomState;

/// A flow's asked-for name and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowName {
    pub name: Arc<str>,
    pub source: Source,
    /// The name is the outer (public) name of an Encrypted ClientHello.
    pub ech_outer: bool,
}

/// The book of DNS answers, shared with the screen (its process view
/// lists a process's names); the engine holds the lock only briefly.
pub type SharedBook = Arc<Mutex<NameBook>>;

/// Where the screen finds the book once the engine made it (never set with
/// `--no-inspect`).
pub type BookSlot = Arc<std::sync::OnceLock<SharedBook>>;

/// (IP protocol, the connecting socket's end, its peer).
pub type Tuple = (u8, SocketAddr, SocketAddr);

/// How late a capture may reach the engine after the packet it copies (the
/// capture ring buffer is drained about every 100 ms): an answer received
/// up to this long after a flow was first seen still counts as received
/// before it began, and a connection's own name found up to this long
/// before its flow was first seen still names it.
pub const SLACK: Duration = Duration::from_secs(1);

/// Addresses and tuples remembered as changed between two
/// [`NameTracker::take_changes`], at most (past it: everything changed).
pub const MAX_CHANGES: usize = 4096;

/// What the captures since the last [`NameTracker::take_changes`] named:
/// which flows may have a new name.
#[derive(Debug, Default)]
pub struct Changes {
    /// Too many to list: any flow may.
    pub all: bool,
    /// Addresses with new DNS answers.
    pub addrs: std::collections::HashSet<std::net::IpAddr, Fast>,
    /// Tuples whose connection gave its name.
    pub tuples: std::collections::HashSet<Tuple, Fast>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        !self.all && self.addrs.is_empty() && self.tuples.is_empty()
    }

    /// Whether `flow`'s name may have changed.
    pub fn touches(&self, flow: &Flow) -> bool {
        self.all
            || self.addrs.contains(&flow.orig.dst)
            || self.tuples.contains(&(
                flow.proto,
                SocketAddr::new(flow.orig.src, flow.orig.sport.unwrap_or(0)),
                SocketAddr::new(flow.orig.dst, flow.orig.dport.unwrap_or(0)),
            ))
    }

    fn note_addr(&mut self, addr: std::net::IpAddr) {
        if self.addrs.len() + self.tuples.len() >= MAX_CHANGES {
            self.all = true;
        } else if !self.all {
            self.addrs.insert(addr);
        }
    }

    fn note_tuple(&mut self, t: Tuple) {
        if self.addrs.len() + self.tuples.len() >= MAX_CHANGES {
            self.all = true;
        } else if !self.all {
            self.tuples.insert(t);
        }
    }
}

/// Connections whose first bytes are being gathered, per generation.
pub const STREAMS_HALF: usize = 1024;
/// QUIC tuples whose Initials are being gathered, per generation.
pub const DATAGRAMS_HALF: usize = 256;
/// DNS-over-TCP connections being reassembled, per generation.
pub const TCP_DNS_HALF: usize = 256;
/// Connection names found and not yet taken by a flow, per generation.
pub const FOUND_HALF: usize = 4096;
/// Segments held out of order per connection, at most.
pub const MAX_HELD: usize = 4;
/// Bytes of a DNS-over-TCP stream gathered, at most (answers past it are lost).
pub const MAX_TCP_DNS: usize = 8192;

/// A map of at most `2 * half` entries: the recent ones.
#[derive(Debug)]
struct TwoGen<K, V> {
    current: HashMap<K, V, Fast>,
    previous: HashMap<K, V, Fast>,
    half: usize,
}

impl<K: Hash + Eq, V> TwoGen<K, V> {
    fn new(half: usize) -> Self {
        TwoGen {
            current: HashMap::default(),
            previous: HashMap::default(),
            half: half.max(1),
        }
    }

    /// The entry for `k`, made by `make` when absent (moved to the current
    /// generation either way).
    fn entry(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        let v = match self.previous.remove(&k) {
            Some(v) => v,
            None if self.current.contains_key(&k) => return self.current.get_mut(&k).expect("present"),
            None => make(),
        };
        if self.current.len() >= self.half {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.entry(k).or_insert(v)
    }

    fn insert(&mut self, k: K, v: V) {
        self.previous.remove(&k);
        if self.current.len() >= self.half && !self.current.contains_key(&k) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(k, v);
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.current.get(k).or_else(|| self.previous.get(k))
    }

    fn remove(&mut self, k: &K) {
        self.current.remove(k);
        self.previous.remove(k);
    }

    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    fn values(&self) -> impl Iterator<Item = &V> {
        self.current.values().chain(self.previous.values())
    }
}

/// Bytes a map slot costs besides what its value owns, an estimate for
/// the figures (key, value header, hash table control bytes and slack).
const SLOT_OVERHEAD: usize = 128;

/// The first bytes of one connection, in order.
#[derive(Debug, Default)]
struct Stream {
    /// The socket's cookie: a new socket on the same tuple (a port used
    /// again) starts over.
    cookie: u64,
    /// Contiguous bytes from offset 0, at most [`MAX_HELLO`].
    bytes: Vec<u8>,
    /// Segments past a gap: (offset, bytes), at most [`MAX_HELD`].
    held: Vec<(u32, Box<[u8]>)>,
    /// Nothing more to learn (a name was found, or none can be).
    done: bool,
}

impl Stream {
    /// Adds the segment at `offset`, keeping at most `limit` contiguous
    /// bytes; whether the contiguous bytes grew.
    fn place(&mut self, offset: u32, seg: &[u8], limit: usize) -> bool {
        if !self.append(offset as usize, seg, limit) {
            if offset as usize > self.bytes.len() && self.held.len() < MAX_HELD && !seg.is_empty() {
                self.held.push((offset, seg.into()));
            }
            return false;
        }
        // Held segments the gap closed on.
        while let Some(i) = self
            .held
            .iter()
            .position(|(o, _)| *o as usize <= self.bytes.len())
        {
            let (o, seg) = self.held.swap_remove(i);
            self.append(o as usize, &seg, limit);
        }
        true
    }

    /// Appends what `seg` at `offset` adds to the contiguous bytes.
    fn append(&mut self, offset: usize, seg: &[u8], limit: usize) -> bool {
        let next = self.bytes.len();
        if offset > next || next >= limit {
            return false;
        }
        let Some(new) = seg.get(next - offset..).filter(|s| !s.is_empty()) else {
            return false;
        };
        self.bytes.extend_from_slice(&new[..new.len().min(limit - next)]);
        true
    }

    fn memory(&self) -> usize {
        self.bytes.capacity() + self.held.iter().map(|(_, s)| s.len() + 24).sum::<usize>()
    }

    /// What the bytes so far say: Some(answer) once decided.
    fn decide(&self) -> Option<Option<FlowName>> {
        let first = *self.bytes.first()?;
        let at_bound = self.bytes.len() >= MAX_HELLO;
        if first == 0x16 {
            let step: HelloStep = hello::parse_records(&self.bytes, at_bound);
            return match step {
                Ok(Step::NeedMore) if !at_bound => None,
                Ok(Step::Done(Some(sn))) => Some(Some(FlowName {
                    name: sn.name,
                    source: Source::Sni,
                    ech_outer: sn.outer,
                })),
                _ => Some(None),
            };
        }
        match http::host(&self.bytes) {
            Ok(Step::NeedMore) if !at_bound => None,
            Ok(Step::Done(Some(name))) => Some(Some(FlowName {
                name,
                source: Source::Http,
                ech_outer: false,
            })),
            _ => Some(None),
        }
    }
}

/// One DNS-over-TCP connection, reassembled from the server's ISN on.
#[derive(Debug, Default)]
struct TcpDns {
    /// The server's initial sequence number, once its SYN was seen.
    isn: Option<u32>,
    stream: Stream,
    /// Bytes of the stream already parsed as whole messages.
    parsed: usize,
}

/// A QUIC tuple's Initials.
#[derive(Debug, Default)]
struct Datagrams {
    /// The socket's cookie (see [`Stream::cookie`]).
    cookie: u64,
    hello: QuicHello,
    datagrams: usize,
    done: bool,
}

/// A connection name found, and when.
#[derive(Debug, Clone)]
struct Found {
    name: Arc<FlowName>,
    at: Instant,
}

/// Counters for the stats line and the bench.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameStats {
    /// Captures handled.
    pub captures: u64,
    /// DNS messages parsed (with or without answers).
    pub dns_messages: u64,
    /// Address answers put in the book.
    pub answers: u64,
    /// DNS messages that did not parse.
    pub dns_errors: u64,
    /// DNS captures of flowtop's own resolver, ignored.
    pub own_ignored: u64,
    /// Connection names found (SNI, Host, QUIC).
    pub conn_names: u64,
}

/// The name state of a run: the book of DNS answers and the per-tuple
/// gathering of first bytes.
#[derive(Debug)]
pub struct NameTracker {
    own_pid: u32,
    book: SharedBook,
    streams: TwoGen<Tuple, Stream>,
    datagrams: TwoGen<Tuple, Datagrams>,
    tcp_dns: TwoGen<(u64, SocketAddr, SocketAddr), TcpDns>,
    found: TwoGen<Tuple, Found>,
    changes: Changes,
    pub stats: NameStats,
}

impl NameTracker {
    /// `own_pid`: flowtop's own process (its resolver's answers are ignored).
    pub fn new(own_pid: u32) -> Self {
        Self::with_limits(own_pid, book::Limits::default())
    }

    pub fn with_limits(own_pid: u32, limits: book::Limits) -> Self {
        NameTracker {
            own_pid,
            book: Arc::new(Mutex::new(NameBook::new(limits))),
            streams: TwoGen::new(STREAMS_HALF),
            datagrams: TwoGen::new(DATAGRAMS_HALF),
            tcp_dns: TwoGen::new(TCP_DNS_HALF),
            found: TwoGen::new(FOUND_HALF),
            changes: Changes::default(),
            stats: NameStats::default(),
        }
    }

    /// Takes a batch of captures received at `now`; whether anything new
    /// was learnt (an answer or a connection name).
    pub fn on_captures(
        &mut self,
        captures: impl IntoIterator<Item = (NameCapture, Option<Arc<Owner>>)>,
        now: Instant,
    ) -> bool {
        let mut learnt = false;
        for (c, owner) in captures {
            self.stats.captures += 1;
            let pid = owner.as_ref().map(|o| o.pid);
            learnt |= match c.kind {
                CaptureKind::Dns => self.on_dns(&c, pid, now),
                CaptureKind::Stream => self.on_stream(&c, now),
                CaptureKind::Datagram => self.on_datagram(&c, now),
            };
        }
        learnt
    }

    fn on_dns(&mut self, c: &NameCapture, pid: Option<u32>, now: Instant) -> bool {
        if pid == Some(self.own_pid) {
            self.stats.own_ignored += 1;
            return false;
        }
        if !c.tcp {
            return self.answers(&c.bytes, Framing::Udp, pid, now);
        }
        let key = (c.cookie, c.local, c.remote);
        let conn = self.tcp_dns.entry(key, TcpDns::default);
        if c.syn {
            *conn = TcpDns {
                isn: Some(c.seq),
                ..TcpDns::default()
            };
            return false;
        }
        let Some(isn) = conn.isn else {
            // The start of the connection was not seen: a segment that holds
            // whole messages from its first byte still reads.
            return self.answers(&c.bytes, Framing::Tcp, pid, now);
        };
        let offset = c.seq.wrapping_sub(isn).wrapping_sub(1);
        if offset as usize >= MAX_TCP_DNS || !conn.stream.place(offset, &c.bytes, MAX_TCP_DNS) {
            return false;
        }
        // Whole messages in the contiguous bytes not parsed yet.
        let mut messages = Vec::new();
        loop {
            let rest = &conn.stream.bytes[conn.parsed..];
            let Some(len) = rest
                .first_chunk::<2>()
                .map(|l| usize::from(u16::from_be_bytes(*l)))
            else {
                break;
            };
            if rest.len() < 2 + len {
                break;
            }
            messages.push(rest[..2 + len].to_vec());
            conn.parsed += 2 + len;
        }
        if conn.stream.bytes.len() >= MAX_TCP_DNS {
            self.tcp_dns.remove(&key);
        }
        let mut learnt = false;
        for m in messages {
            learnt |= self.answers(&m, Framing::Tcp, pid, now);
        }
        learnt
    }

    fn answers(&mut self, bytes: &[u8], framing: Framing, pid: Option<u32>, now: Instant) -> bool {
        match dns::parse_response(bytes, framing) {
            Ok(answers) => {
                self.stats.dns_messages += 1;
                let learnt = !answers.is_empty();
                self.stats.answers += answers.len() as u64;
                let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
                for a in answers {
                    self.changes.note_addr(a.addr);
                    book.insert(pid, a.addr, a.name, Source::Dns, now, a.ttl);
                }
                learnt
            }
            Err(_) => {
                self.stats.dns_errors += 1;
                false
            }
        }
    }

    fn on_stream(&mut self, c: &NameCapture, now: Instant) -> bool {
        let key = (c.protocol, c.local, c.remote);
        let stream = self.streams.entry(key, Stream::default);
        if stream.cookie != c.cookie {
            *stream = Stream {
                cookie: c.cookie,
                ..Stream::default()
            };
        }
        if stream.done || !stream.place(c.seq, &c.bytes, MAX_HELLO) {
            return false;
        }
        match stream.decide() {
            None => false,
            Some(answer) => {
                // Nothing more to gather: only the mark stays (later
                // segments of the first 4 KiB must not start over).
                *stream = Stream {
                    cookie: c.cookie,
                    done: true,
                    ..Stream::default()
                };
                self.found_name(key, answer, now)
            }
        }
    }

    fn on_datagram(&mut self, c: &NameCapture, now: Instant) -> bool {
        let key = (c.protocol, c.local, c.remote);
        let d = self.datagrams.entry(key, Datagrams::default);
        if d.cookie != c.cookie {
            *d = Datagrams {
                cookie: c.cookie,
                ..Datagrams::default()
            };
        }
        if d.done {
            return false;
        }
        d.datagrams += 1;
        let answer = match d.hello.push(&c.bytes) {
            Ok(Step::NeedMore) if d.datagrams < 3 => return false,
            Ok(Step::Done(Some(sn))) => Some(FlowName {
                name: sn.name,
                source: Source::Quic,
                ech_outer: sn.outer,
            }),
            _ => None,
        };
        *d = Datagrams {
            cookie: c.cookie,
            done: true,
            ..Datagrams::default()
        };
        self.found_name(key, answer, now)
    }

    fn found_name(&mut self, key: Tuple, answer: Option<FlowName>, now: Instant) -> bool {
        let Some(name) = answer else { return false };
        self.stats.conn_names += 1;
        self.changes.note_tuple(key);
        self.found.insert(
            key,
            Found {
                name: Arc::new(name),
                at: now,
            },
        );
        true
    }

    /// The name of a flow from `local` (the connecting socket's end) to
    /// `remote` first seen at `first_seen`: the connection's own name, else
    /// the newest answer `pid` received for the remote address before the
    /// flow began, else the newest host-wide one (see [`SLACK`]).
    pub fn name_for(
        &self,
        proto: u8,
        local: SocketAddr,
        remote: SocketAddr,
        pid: Option<u32>,
        first_seen: Instant,
    ) -> Option<Arc<FlowName>> {
        if let Some(f) = self.found.get(&(proto, local, remote)) {
            if first_seen <= f.at + SLACK {
                return Some(f.name.clone());
            }
        }
        let named = self.book().lookup(pid, remote.ip(), first_seen + SLACK)?;
        Some(Arc::new(FlowName {
            name: named.name,
            source: named.source,
            ech_outer: false,
        }))
    }

    /// The name of a conntrack flow, first seen at `first_seen`, owned as
    /// attribution says. The original tuple is the connecting socket's view
    /// (its source is the socket's end, its destination the address it
    /// connected to, before any NAT of the reply). Only outgoing and local
    /// flows (and those whose direction is not known yet) are named after
    /// their owner's answers; an incoming or forwarded flow's owner (if
    /// any) did not ask for the destination, so its original destination
    /// is named from the host-wide answers only.
    pub fn name_for_flow(
        &self,
        flow: &Flow,
        owner: Option<&Owner>,
        direction: Option<Direction>,
        first_seen: Instant,
    ) -> Option<Arc<FlowName>> {
        let pid = match direction {
            Some(Direction::In | Direction::Forward) => None,
            _ => owner.map(|o| o.pid),
        };
        let local = SocketAddr::new(flow.orig.src, flow.orig.sport.unwrap_or(0));
        let remote = SocketAddr::new(flow.orig.dst, flow.orig.dport.unwrap_or(0));
        self.name_for(flow.proto, local, remote, pid, first_seen)
    }

    /// What changed since the last call (see [`Changes`]).
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// Drops expired answers (call it now and then).
    pub fn expire(&mut self, now: Instant) {
        self.book().expire(now);
    }

    /// The book of DNS answers, locked.
    pub fn book(&self) -> MutexGuard<'_, NameBook> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The book of DNS answers, for a reader on another thread.
    pub fn share_book(&self) -> SharedBook {
        self.book.clone()
    }

    /// Per-tuple states held (streams, QUIC tuples, DNS-over-TCP
    /// connections, found names).
    pub fn entries(&self) -> usize {
        self.streams.len() + self.datagrams.len() + self.tcp_dns.len() + self.found.len()
    }

    /// An estimate of the memory held, in bytes: the book's (entries at
    /// their bound cost plus name text) and the per-tuple states'.
    pub fn memory_bytes(&self) -> usize {
        let book = {
            let b = self.book();
            b.len() * book::ENTRY_OVERHEAD + b.name_bytes()
        };
        let streams: usize = self.streams.values().map(Stream::memory).sum();
        let tcp: usize = self.tcp_dns.values().map(|t| t.stream.memory()).sum();
        // A QUIC hello holds its CRYPTO bytes and a flag per byte.
        let quic = self.datagrams.values().filter(|d| !d.done).count() * 2 * MAX_HELLO;
        let found: usize = self
            .found
            .values()
            .map(|f| f.name.name.len() + std::mem::size_of::<FlowName>())
            .sum();
        book + streams + tcp + quic + found + self.entries() * SLOT_OVERHEAD
    }
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
