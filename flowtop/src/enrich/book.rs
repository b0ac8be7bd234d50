//! The address book: what flowtop knows about each address it has seen
//! (its name from reverse DNS, its scope and geography), shared by every view.
//!
//! Flows hold no names themselves: many flows share one address, and a name
//! that arrives later must show on all of them at once. Writers are the
//! engine (geography at first sight, names as lookups finish); readers are the
//! outputs (JSON lines, the screen), which look up only the rows they show.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

type FastState = foldhash::fast::RandomState;

/// Where a reverse lookup of an address stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NameState {
    /// Not asked (DNS off, or not yet).
    #[default]
    Unknown,
    /// Asked; the answer has not arrived.
    Pending,
    /// The PTR name, raw (outputs escape it).
    Name(Arc<str>),
    /// No name: NXDOMAIN, no PTR, time-out or a bad answer.
    NoName,
}

/// What is known about one address. Strings are raw, as they came from the
/// network or the database: outputs make them safe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrView {
    pub name: NameState,
    /// A label for addresses that have no geography: "private", "loopback",
    /// "link-local", "documentation"...; None for public addresses.
    pub scope: Option<&'static str>,
    /// ISO 3166 country code.
    pub country: Option<Arc<str>>,
    /// English city name.
    pub city: Option<Arc<str>>,
}

impl AddrView {
    /// The resolved name, if any.
    pub fn host(&self) -> Option<&str> {
        match &self.name {
            NameState::Name(n) => Some(n),
            _ => None,
        }
    }
}

/// Addresses and what is known of them, behind one lock taken briefly.
#[derive(Debug, Default)]
pub struct AddressBook {
    entries: RwLock<HashMap<IpAddr, AddrView, FastState>>,
    /// Counts changes, so that a view can tell that what it built from the
    /// book is still current.
    changes: std::sync::atomic::AtomicU64,
}

impl AddressBook {
    pub fn new() -> Arc<AddressBook> {
        Arc::new(AddressBook::default())
    }

    /// Calls `f` with what is known about `ip` (None: never seen) without
    /// cloning it.
    pub fn with<R>(&self, ip: IpAddr, f: impl FnOnce(Option<&AddrView>) -> R) -> R {
        let map = self.entries.read().unwrap_or_else(|p| p.into_inner());
        f(map.get(&ip))
    }

    /// A copy of what is known about `ip`.
    pub fn get(&self, ip: IpAddr) -> Option<AddrView> {
        self.with(ip, |v| v.cloned())
    }

    /// Changes what is known about `ip` (inserting it first).
    pub fn update<R>(&self, ip: IpAddr, f: impl FnOnce(&mut AddrView) -> R) -> R {
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        self.changes.fetch_add(1, std::sync::atomic::Ordering::Release);
        f(map.entry(ip).or_default())
    }

    /// A number that moves whenever the book changes (read it before
    /// reading the book).
    pub fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` for every address (under the read lock: keep `f` short).
    pub fn for_each(&self, mut f: impl FnMut(&IpAddr, &AddrView)) {
        let map = self.entries.read().unwrap_or_else(|p| p.into_inner());
        for (ip, v) in map.iter() {
            f(ip, v);
        }
    }

    /// Calls `f` with what is known about two addresses under one lock (a
    /// reader taking the lock twice could wait behind a writer).
    pub fn with_pair<R>(
        &self,
        a: IpAddr,
        b: IpAddr,
        f: impl FnOnce(Option<&AddrView>, Option<&AddrView>) -> R,
    ) -> R {
        let map = self.entries.read().unwrap_or_else(|p| p.into_inner());
        f(map.get(&a), map.get(&b))
    }

    /// Keeps only the addresses for which `keep` is true (the engine drops
    /// addresses no flow uses any more, so the book stays bounded).
    pub fn retain(&self, mut keep: impl FnMut(&IpAddr) -> bool) {
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        self.changes.fetch_add(1, std::sync::atomic::Ordering::Release);
        map.retain(|ip, _| keep(ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_set_once_is_seen_by_every_reader() {
        let book = AddressBook::new();
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(book.get(ip), None);
        book.update(ip, |v| v.name = NameState::Pending);
        assert_eq!(
            book.with(ip, |v| v.and_then(|v| v.host().map(str::to_owned))),
            None
        );
        book.update(ip, |v| v.name = NameState::Name("host.example".into()));
        assert_eq!(book.get(ip).unwrap().host(), Some("host.example"));
        book.retain(|_| false);
        assert!(book.is_empty());
    }
}
