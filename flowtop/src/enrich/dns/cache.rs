//! The answer cache: IP -> name or "no name", each with its own expiry, at
//! most `max` entries. When full, the entry inserted longest ago goes first
//! (insertion order approximates expiry order well enough for a display
//! cache, and costs O(1) instead of a heap keyed by deadline).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// What a finished lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    Name(Arc<str>),
    NoName,
}

#[derive(Debug)]
struct Entry {
    answer: Answer,
    expires: Instant,
    /// Insertion number, to tell a live `order` slot from a stale one.
    seq: u64,
}

#[derive(Debug)]
pub(crate) struct Cache {
    max: usize,
    map: HashMap<IpAddr, Entry, foldhash::fast::RandomState>,
    /// Insertion order; slots whose `seq` no longer matches the map are stale
    /// (the IP was re-inserted later) and are skipped.
    order: VecDeque<(IpAddr, u64)>,
    next_seq: u64,
}

/// A cache hit; `fresh` is false once the entry's TTL has run out (the
/// caller still shows it while a new lookup runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) answer: Answer,
    pub(crate) fresh: bool,
}

impl Cache {
    pub(crate) fn new(max: usize) -> Cache {
        Cache {
            max: max.max(1),
            map: HashMap::default(),
            order: VecDeque::new(),
            next_seq: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn get(&self, ip: IpAddr, now: Instant) -> Option<Hit> {
        self.map.get(&ip).map(|e| Hit {
            answer: e.answer.clone(),
            fresh: now < e.expires,
        })
    }

    pub(crate) fn insert(&mut self, ip: IpAddr, answer: Answer, expires: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let replaced = self.map.insert(ip, Entry { answer, expires, seq }).is_some();
        self.order.push_back((ip, seq));
        if !replaced {
            while self.map.len() > self.max {
                self.evict_oldest();
            }
        }
        // Re-inserted IPs leave stale slots behind; keep the queue bounded.
        if self.order.len() > 2 * self.max + 16 {
            let map = &self.map;
            self.order
                .retain(|(ip, seq)| map.get(ip).is_some_and(|e| e.seq == *seq));
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((ip, seq)) = self.order.pop_front() {
            if self.map.get(&ip).is_some_and(|e| e.seq == seq) {
                self.map.remove(&ip);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn bounded_and_oldest_goes_first() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut c = Cache::new(3);
        for n in 1..=3 {
            c.insert(ip(n), Answer::NoName, later);
        }
        // Refreshing 1 makes it the newest: 2 is now the oldest.
        c.insert(ip(1), Answer::Name("one".into()), later);
        c.insert(ip(4), Answer::NoName, later);
        assert_eq!(c.len(), 3);
        assert!(c.get(ip(2), now).is_none());
        assert_eq!(
            c.get(ip(1), now).map(|h| h.answer),
            Some(Answer::Name("one".into()))
        );
        assert!(c.get(ip(3), now).is_some() && c.get(ip(4), now).is_some());
    }

    #[test]
    fn expired_entries_are_reported_stale() {
        let now = Instant::now();
        let mut c = Cache::new(10);
        c.insert(ip(1), Answer::NoName, now + Duration::from_secs(1));
        assert_eq!(c.get(ip(1), now).map(|h| h.fresh), Some(true));
        assert_eq!(
            c.get(ip(1), now + Duration::from_secs(2)).map(|h| h.fresh),
            Some(false)
        );
    }

    #[test]
    fn order_queue_stays_bounded_under_refreshes() {
        let now = Instant::now();
        let mut c = Cache::new(4);
        for _ in 0..1000 {
            c.insert(ip(1), Answer::NoName, now);
        }
        assert_eq!(c.len(), 1);
        assert!(c.order.len() <= 2 * 4 + 16 + 1);
    }
}
