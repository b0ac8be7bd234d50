//! Address -> asked-for name, per process and host-wide, bounded.
//!
//! A flow is named by the newest answer its own process received for the
//! address before the flow began (two programs may resolve different names
//! to one CDN address); failing that, by the newest host-wide answer (the
//! receiver of the answer may be a stub resolver, not the program).
//!
//! Memory bound: at most `max_entries` entries and `max_name_bytes` bytes of
//! name text (each entry counted as if its name were its own copy). An entry
//! costs at most [`ENTRY_OVERHEAD`] bytes besides its name: its slot in the
//! map (key and vector header; a hash table of up to twice the slots in use
//! after power-of-two growth, at a 7/8 load), the entry in its vector (kept
//! at most twice its length), its slot in the age index (a B-tree, nodes at
//! least half full) and the `Arc` header of its name. With the defaults
//! ([`Limits::default`]: 65 536 entries, 4 MiB of names) that is at most
//! 65 536 * 352 B + 4 MiB = 26 MiB, however many answers arrive.
//! Past either cap the oldest entries go first.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Source;

/// Names kept per (process, address): older ones still name flows that
/// began before the newer answers arrived.
pub const HISTORY: usize = 4;

/// Bytes an entry costs besides its name text, an upper bound (see the
/// module documentation; the unit test checks it against the real sizes).
pub const ENTRY_OVERHEAD: usize = 352;

/// The caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_entries: usize,
    pub max_name_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 65_536,
            max_name_bytes: 4 << 20,
        }
    }
}

impl Limits {
    /// The most memory the book can hold, in bytes.
    pub fn memory_bound(&self) -> usize {
        self.max_entries * ENTRY_OVERHEAD + self.max_name_bytes
    }
}

/// A name the book gives for an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub name: Arc<str>,
    pub source: Source,
    /// Whether the process itself received it (else host-wide).
    pub own: bool,
}

/// None: the host-wide map.
type Key = (Option<u32>, IpAddr);

#[derive(Debug, Clone)]
struct Entry {
    name: Arc<str>,
    source: Source,
    received: Instant,
    expires: Instant,
    /// Its key in the age index.
    seq: u64,
}

/// The name maps. Not shared: the engine owns it.
#[derive(Debug)]
pub struct NameBook {
    limits: Limits,
    map: HashMap<Key, Vec<Entry>, foldhash::fast::RandomState>,
    /// Insertion order (seq -> key), for eviction of the oldest.
    ages: BTreeMap<u64, Key>,
    next_seq: u64,
    entries: usize,
    name_bytes: usize,
}

impl Default for NameBook {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl NameBook {
    pub fn new(limits: Limits) -> Self {
        NameBook {
            limits,
            map: HashMap::default(),
            ages: BTreeMap::new(),
            next_seq: 0,
            entries: 0,
            name_bytes: 0,
        }
    }

    /// Records that `pid` received `name` for `addr` at `at`, valid for
    /// `ttl`; the host-wide map learns it too. `pid` None: the receiver is
    /// unknown, host-wide only.
    pub fn insert(
        &mut self,
        pid: Option<u32>,
        addr: IpAddr,
        name: Arc<str>,
        source: Source,
        at: Instant,
        ttl: Duration,
    ) {
        if name.len() > self.limits.max_name_bytes {
            return;
        }
        if let Some(pid) = pid {
            self.insert_key((Some(pid), addr), name.clone(), source, at, ttl);
        }
        self.insert_key((None, addr), name, source, at, ttl);
    }

    fn insert_key(&mut self, key: Key, name: Arc<str>, source: Source, at: Instant, ttl: Duration) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let expires = at + ttl;
        // Capacity 1: most addresses have one name, and a vector's default
        // first growth (4) would quadruple the bound.
        let list = self.map.entry(key).or_insert_with(|| Vec::with_capacity(1));
        // The same name again only extends its life: the flows that began
        // since the first answer keep it, and the history is not churned.
        if let Some(e) = list.iter_mut().find(|e| e.name == name && e.source == source) {
            e.expires = e.expires.max(expires);
            self.ages.remove(&e.seq);
            e.seq = seq;
            self.ages.insert(seq, key);
            return;
        }
        let dropped = if list.len() >= HISTORY {
            // The oldest received goes (kept in order of arrival).
            Some(list.remove(0))
        } else {
            None
        };
        self.name_bytes += name.len();
        self.entries += 1;
        list.push(Entry {
            name,
            source,
            received: at,
            expires,
            seq,
        });
        self.ages.insert(seq, key);
        if let Some(d) = dropped {
            self.forget(&d);
        }
        self.evict();
    }

    fn forget(&mut self, e: &Entry) {
        self.ages.remove(&e.seq);
        self.entries -= 1;
        self.name_bytes -= e.name.len();
    }

    /// Drops the oldest entries until both caps hold.
    fn evict(&mut self) {
        while self.entries > self.limits.max_entries || self.name_bytes > self.limits.max_name_bytes {
            let Some((seq, key)) = self.ages.pop_first() else {
                break;
            };
            let Some(list) = self.map.get_mut(&key) else {
                continue;
            };
            if let Some(i) = list.iter().position(|e| e.seq == seq) {
                let e = list.remove(i);
                self.entries -= 1;
                self.name_bytes -= e.name.len();
            }
            if list.is_empty() {
                self.map.remove(&key);
            } else if list.len() * 2 <= list.capacity() {
                list.shrink_to_fit();
            }
        }
    }

    /// The name for a flow of `pid` to `addr` that began at `at`: the newest
    /// the process received before `at` and still valid then, else the
    /// host-wide one.
    pub fn lookup(&self, pid: Option<u32>, addr: IpAddr, at: Instant) -> Option<Named> {
        let newest = |key: Key| {
            self.map.get(&key).and_then(|list| {
                list.iter()
                    .filter(|e| e.received <= at && at < e.expires)
                    .max_by_key(|e| (e.received, e.seq))
            })
        };
        if let Some(e) = pid.and_then(|p| newest((Some(p), addr))) {
            return Some(Named {
                name: e.name.clone(),
                source: e.source,
                own: true,
            });
        }
        newest((None, addr)).map(|e| Named {
            name: e.name.clone(),
            source: e.source,
            own: false,
        })
    }

    /// Every name `pid` received (unexpired at `now`), for the process view.
    pub fn names_of(&self, pid: u32, now: Instant) -> Vec<(IpAddr, Arc<str>)> {
        let mut out: Vec<_> = self
            .map
            .iter()
            .filter(|((p, _), _)| *p == Some(pid))
            .flat_map(|((_, addr), list)| {
                list.iter()
                    .filter(|e| now < e.expires)
                    .map(|e| (*addr, e.name.clone()))
            })
            .collect();
        out.sort();
        out
    }

    /// Drops the entries expired at `now` (call it now and then; lookups
    /// ignore expired entries anyway).
    pub fn expire(&mut self, now: Instant) {
        let (mut entries, mut bytes) = (0, 0);
        let ages = &mut self.ages;
        self.map.retain(|_, list| {
            list.retain(|e| {
                let keep = now < e.expires;
                if keep {
                    entries += 1;
                    bytes += e.name.len();
                } else {
                    ages.remove(&e.seq);
                }
                keep
            });
            if list.len() * 2 <= list.capacity() {
                list.shrink_to_fit();
            }
            !list.is_empty()
        });
        self.entries = entries;
        self.name_bytes = bytes;
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Bytes of name text held (shared names counted once per entry).
    pub fn name_bytes(&self) -> usize {
        self.name_bytes
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;
