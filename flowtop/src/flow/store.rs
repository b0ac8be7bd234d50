//! Storage for the flow table: values in a chunked slab, found through a
//! hash index of slot numbers.
//!
//! Why not a `HashMap<Key, Entry>`: a swiss table keeps its values in its
//! bucket array, which is 1.14 to 2.3 buckets per value (load 0.875 down to
//! 0.44 after a doubling), and while it grows it holds the old and the new
//! array at once. With values of 232 bytes that is most of flowtop's memory
//! at a million flows. Here the values sit in fixed-size chunks that are
//! never moved or doubled (a freed slot is reused before a new chunk is
//! made), and only the index doubles, at 5 bytes per bucket (a `u32` slot
//! and a control byte). Like the map's arrays, chunks are not given back
//! when the table shrinks: their slots wait for the next flows.
//!
//! Chunks are shared with the table's snapshots ([`Frozen`]): a snapshot
//! is a list of chunk pointers, and the store copies a chunk only when it
//! changes one that a snapshot still holds (copy on write), so a view of
//! a large, mostly idle table costs the chunks that changed since the
//! view before, not a copy of every value.
//!
//! Beside each value the store keeps a small side value (`R`), in chunks of
//! their own: what changes at every reading of an otherwise unchanged value
//! (the flow table's marks and reading times) goes there, so that such a
//! reading copies a chunk of side values, not of values.
//!
//! The key is not stored: it is derived from the value ([`Keyed`]), so a
//! value must keep its key while it is in the store (the flow table only
//! replaces a flow by a reading of the same flow).

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use hashbrown::HashTable;

/// Values per chunk: 2^17 flow entries are 30 MB, reserved at once but
/// resident only as slots fill (an allocation that big is mapped on its
/// own, see main.rs, and its pages are backed when first written), and a
/// million flows take only eight chunks.
const CHUNK: usize = 1 << 17;

/// A value that knows its key.
pub trait Keyed {
    type Key: Hash + Eq + Copy;
    fn key(&self) -> Self::Key;
}

/// Values of type `T`, unique by key, each with a side value `R`.
#[derive(Debug)]
pub struct Store<T, R = ()> {
    /// Each chunk is allocated with capacity [`CHUNK`] and never grows
    /// beyond it, so it is never reallocated; shared with snapshots until
    /// the store changes it (see [`Store::chunk_mut`]).
    chunks: Vec<Arc<Chunk<T>>>,
    /// The side values, chunk for chunk and slot for slot (vacant slots
    /// keep the last one's).
    sides: Vec<Arc<Vec<R>>>,
    /// Vacant slots inside the chunks, reused last-freed first.
    free: Vec<u32>,
    /// Slot numbers, hashed by the key of the value in the slot.
    index: HashTable<u32>,
    /// Randomly seeded per store, so keys chosen by peers cannot aim at one
    /// bucket.
    hasher: foldhash::fast::RandomState,
}

impl<T, R> Default for Store<T, R> {
    fn default() -> Self {
        Store {
            chunks: Vec::new(),
            sides: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

/// The slots of one chunk, vacant ones `None`.
type Chunk<T> = Vec<Option<T>>;

fn split(slot: u32) -> (usize, usize) {
    let slot = slot as usize;
    (slot / CHUNK, slot % CHUNK)
}

/// Chunk `c` of `chunks`, to change: copied first when a snapshot shares
/// it. The copy gets the full capacity, so that it too never moves.
fn chunk_mut<T: Clone>(chunks: &mut [Arc<Vec<T>>], c: usize) -> &mut Vec<T> {
    let chunk = &mut chunks[c];
    if Arc::get_mut(chunk).is_none() {
        let mut copy = Vec::with_capacity(CHUNK);
        copy.extend_from_slice(chunk);
        *chunk = Arc::new(copy);
    }
    Arc::get_mut(chunk).expect("a chunk just copied is not shared")
}

impl<T: Keyed + Clone, R: Copy + Default> Store<T, R> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn hash(&self, key: &T::Key) -> u64 {
        self.hasher.hash_one(key)
    }

    fn at(&self, slot: u32) -> Option<&T> {
        let (c, i) = split(slot);
        self.chunks.get(c)?.get(i)?.as_ref()
    }

    fn at_mut(&mut self, slot: u32) -> Option<&mut T> {
        let (c, i) = split(slot);
        if self.chunks.get(c)?.get(i)?.is_none() {
            return None;
        }
        chunk_mut(&mut self.chunks, c)[i].as_mut()
    }

    /// The slot holding `key`.
    fn find(&self, key: &T::Key) -> Option<u32> {
        let chunks = &self.chunks;
        let is_key = |&s: &u32| {
            let (c, i) = split(s);
            chunks[c][i].as_ref().is_some_and(|v| v.key() == *key)
        };
        self.index.find(self.hash(key), is_key).copied()
    }

    pub fn get(&self, key: &T::Key) -> Option<&T> {
        self.find(key).and_then(|s| self.at(s))
    }

    /// The value of `key`, to change anything but its key.
    #[cfg(test)]
    pub fn get_mut(&mut self, key: &T::Key) -> Option<&mut T> {
        let slot = self.find(key)?;
        self.at_mut(slot)
    }

    /// Adds `value`, replacing (and returning) the value with the same key.
    #[cfg(test)]
    pub fn insert(&mut self, value: T) -> Option<T> {
        self.insert_full(value, R::default())
    }

    /// Adds `value` with its side value, replacing (and returning) the
    /// value with the same key.
    pub fn insert_full(&mut self, value: T, side_value: R) -> Option<T> {
        let key = value.key();
        if let Some(slot) = self.find(&key) {
            if let Some(side) = self.side_mut(slot) {
                *side = side_value;
            }
            let old = self.at_mut(slot).expect("a slot just found");
            return Some(std::mem::replace(old, value));
        }
        let slot = self.vacant_slot();
        let (c, i) = split(slot);
        let chunk = chunk_mut(&mut self.chunks, c);
        let side = chunk_mut(&mut self.sides, c);
        if i == chunk.len() {
            chunk.push(Some(value));
            side.push(side_value);
        } else {
            chunk[i] = Some(value);
            side[i] = side_value;
        }
        let (chunks, hasher) = (&self.chunks, &self.hasher);
        let rehash = |&s: &u32| {
            let (c, i) = split(s);
            chunks[c][i].as_ref().map_or(0, |v| hasher.hash_one(v.key()))
        };
        self.index.insert_unique(hasher.hash_one(key), slot, rehash);
        None
    }

    /// A slot to fill: a freed one, else the next one of the last chunk,
    /// else the first one of a new chunk.
    fn vacant_slot(&mut self) -> u32 {
        if let Some(s) = self.free.pop() {
            return s;
        }
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
            self.sides.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        let c = self.chunks.len() - 1;
        let slot = c * CHUNK + self.chunks[c].len();
        // More than four billion flows do not fit in memory anyway.
        u32::try_from(slot).expect("flow store full")
    }

    #[cfg(test)]
    pub fn remove(&mut self, key: &T::Key) -> Option<T> {
        self.remove_full(key).map(|(v, _)| v)
    }

    /// Removes the value of `key`, with its side value.
    pub fn remove_full(&mut self, key: &T::Key) -> Option<(T, R)> {
        let slot = self.find(key)?;
        let side = self.side(slot)?;
        self.remove_slot(slot).map(|v| (v, side))
    }

    /// Empties `slot`, dropping it from the index.
    fn remove_slot(&mut self, slot: u32) -> Option<T> {
        let key = self.at(slot)?.key();
        let hash = self.hash(&key);
        if let Ok(found) = self.index.find_entry(hash, |&s| s == slot) {
            found.remove();
        }
        let (c, i) = split(slot);
        let value = chunk_mut(&mut self.chunks, c)[i].take();
        self.free.push(slot);
        value
    }

    /// Removes every value `pred` accepts (given its side value too),
    /// handing each to `removed`.
    pub fn remove_if(&mut self, mut pred: impl FnMut(&T, &R) -> bool, mut removed: impl FnMut(T, R)) {
        let sides = &self.sides;
        let slots: Vec<u32> = self
            .slots()
            .filter(|&(s, v)| {
                let (c, i) = split(s);
                pred(v, &sides[c][i])
            })
            .map(|(s, _)| s)
            .collect();
        for s in slots {
            let side = self.side(s).unwrap_or_default();
            if let Some(v) = self.remove_slot(s) {
                removed(v, side);
            }
        }
    }

    /// The slot of `key`'s value.
    pub fn slot_of(&self, key: &T::Key) -> Option<u32> {
        self.find(key)
    }

    /// The value in `slot`.
    pub fn at_slot(&self, slot: u32) -> Option<&T> {
        self.at(slot)
    }

    /// The side value of the value in `slot`.
    pub fn side(&self, slot: u32) -> Option<R> {
        self.at(slot)?;
        let (c, i) = split(slot);
        Some(self.sides[c][i])
    }

    /// The side value of the value in `slot`, to change (its chunk of side
    /// values is copied first when a view shares it; the values are not).
    pub fn side_mut(&mut self, slot: u32) -> Option<&mut R> {
        self.at(slot)?;
        let (c, i) = split(slot);
        Some(&mut chunk_mut(&mut self.sides, c)[i])
    }

    /// Whether changing the value in `slot` would copy its chunk (a view
    /// still holds it).
    pub fn is_shared(&self, slot: u32) -> bool {
        let (c, _) = split(slot);
        self.chunks
            .get(c)
            .is_some_and(|chunk| Arc::strong_count(chunk) > 1)
    }

    /// Every value with its slot, in slot order.
    pub fn slots(&self) -> impl Iterator<Item = (u32, &T)> {
        self.chunks.iter().enumerate().flat_map(|(c, chunk)| {
            chunk.iter().enumerate().filter_map(move |(i, v)| {
                let slot = (c * CHUNK + i) as u32;
                v.as_ref().map(|v| (slot, v))
            })
        })
    }

    /// The value in `slot` (from [`Store::slots`]), to change anything but
    /// its key.
    pub fn slot_mut(&mut self, slot: u32) -> Option<&mut T> {
        self.at_mut(slot)
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots().map(|(_, v)| v)
    }

    /// The values as they are now, sharing the chunks: cheap, and the
    /// store copies a shared chunk before it changes it.
    pub fn freeze(&self) -> Frozen<T, R> {
        Frozen {
            chunks: self.chunks.clone(),
            sides: self.sides.clone(),
            len: self.len(),
        }
    }
}

/// An immutable view of a [`Store`]'s values, indexed by slot (slot numbers
/// have holes where values were removed). Chunks the store has not changed
/// since are shared with it and with the views taken before.
#[derive(Debug)]
pub struct Frozen<T, R = ()> {
    chunks: Vec<Arc<Chunk<T>>>,
    sides: Vec<Arc<Vec<R>>>,
    len: usize,
}

impl<T, R> Clone for Frozen<T, R> {
    fn clone(&self) -> Self {
        Frozen {
            chunks: self.chunks.clone(),
            sides: self.sides.clone(),
            len: self.len,
        }
    }
}

impl<T, R> Default for Frozen<T, R> {
    fn default() -> Self {
        Frozen {
            chunks: Vec::new(),
            sides: Vec::new(),
            len: 0,
        }
    }
}

impl<T, R: Copy + Default> Frozen<T, R> {
    /// The side value of the value in `slot`, as of the view.
    pub fn side(&self, slot: usize) -> Option<R> {
        self.get(slot)?;
        Some(
            self.sides
                .get(slot / CHUNK)
                .and_then(|c| c.get(slot % CHUNK))
                .copied()
                .unwrap_or_default(),
        )
    }
}

impl<T, R> Frozen<T, R> {
    /// Values held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value in `slot`, if any.
    pub fn get(&self, slot: usize) -> Option<&T> {
        self.chunks.get(slot / CHUNK)?.get(slot % CHUNK)?.as_ref()
    }

    /// Every value with its slot, in slot order.
    pub fn slots(&self) -> impl Iterator<Item = (usize, &T)> {
        self.chunks.iter().enumerate().flat_map(|(c, chunk)| {
            chunk
                .iter()
                .enumerate()
                .filter_map(move |(i, v)| v.as_ref().map(|v| (c * CHUNK + i, v)))
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|chunk| chunk.iter().flatten())
    }

    /// Whether `self` and `other` hold the very same chunks of values
    /// (side values aside): no value changed between the two views.
    pub fn same_values(&self, other: &Frozen<T, R>) -> bool {
        self.len == other.len
            && self.chunks.len() == other.chunks.len()
            && self
                .chunks
                .iter()
                .zip(&other.chunks)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    /// Whether `self` and `other` hold the very same chunks: nothing
    /// changed between the two views (a chunk held by a view is never
    /// changed in place).
    pub fn same_as(&self, other: &Frozen<T>) -> bool {
        self.len == other.len
            && self.chunks.len() == other.chunks.len()
            && self
                .chunks
                .iter()
                .zip(&other.chunks)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

impl<T: Clone, R> Frozen<T, R> {
    /// Every value, to change in this view only: chunks shared with the
    /// store or other views are copied first.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks
            .iter_mut()
            .flat_map(|chunk| Arc::make_mut(chunk).iter_mut().flatten())
    }

    /// Keeps the values `keep` accepts, in this view only (their slots
    /// stay the same).
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut len = 0;
        for chunk in &mut self.chunks {
            for v in Arc::make_mut(chunk).iter_mut() {
                if v.as_ref().is_some_and(|x| !keep(x)) {
                    *v = None;
                }
                len += usize::from(v.is_some());
            }
        }
        self.len = len;
    }
}

impl<T, R> std::ops::Index<usize> for Frozen<T, R> {
    type Output = T;

    /// The value in `slot`; panics on a vacant slot, like a slice out of
    /// bounds (slots come from [`Frozen::slots`]).
    fn index(&self, slot: usize) -> &T {
        self.get(slot).expect("a slot of this view")
    }
}

/// A view of `values` in order, slot `i` holding the `i`-th, with default
/// side values (for views made without a store: tests, fixtures).
impl<T, R: Clone + Default> FromIterator<T> for Frozen<T, R> {
    fn from_iter<I: IntoIterator<Item = T>>(values: I) -> Self {
        let mut chunks: Vec<Arc<Chunk<T>>> = Vec::new();
        let mut current: Chunk<T> = Vec::new();
        let mut len = 0;
        for v in values {
            if current.len() == CHUNK {
                chunks.push(Arc::new(std::mem::take(&mut current)));
            }
            current.push(Some(v));
            len += 1;
        }
        if !current.is_empty() {
            chunks.push(Arc::new(current));
        }
        let sides = chunks
            .iter()
            .map(|c| Arc::new(vec![R::default(); c.len()]))
            .collect();
        Frozen { chunks, sides, len }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// A value keyed by its first field.
    #[derive(Debug, Clone, PartialEq)]
    struct V(u32, u64);

    impl Keyed for V {
        type Key = u32;
        fn key(&self) -> u32 {
            self.0
        }
    }

    /// The index holds exactly one slot per value, each found by its key.
    fn check(s: &Store<V>) {
        let values: Vec<&V> = s.iter().collect();
        assert_eq!(values.len(), s.len());
        for v in values {
            assert_eq!(s.get(&v.0), Some(v));
        }
    }

    #[test]
    fn insert_get_replace_remove() {
        let mut s: Store<V> = Store::new();
        assert_eq!(s.insert(V(1, 10)), None);
        assert_eq!(s.insert(V(2, 20)), None);
        assert_eq!(s.insert(V(1, 11)), Some(V(1, 10)));
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(&1), Some(&V(1, 11)));
        s.get_mut(&2).expect("present").1 = 21;
        assert_eq!(s.remove(&2), Some(V(2, 21)));
        assert_eq!(s.remove(&2), None);
        assert_eq!(s.get(&2), None);
        assert_eq!(s.len(), 1);
        check(&s);
    }

    #[test]
    fn freed_slots_are_reused_before_a_new_chunk() {
        let mut s: Store<V> = Store::new();
        for k in 0..CHUNK as u32 {
            s.insert(V(k, 0));
        }
        assert_eq!(s.chunks.len(), 1);
        for k in 0..100 {
            s.remove(&k);
        }
        for k in 0..100 {
            s.insert(V(k + CHUNK as u32, 1));
        }
        assert_eq!(s.chunks.len(), 1, "the freed slots took the new values");
        assert!(s.free.is_empty());
        s.insert(V(u32::MAX, 2));
        assert_eq!(s.chunks.len(), 2);
        check(&s);
    }

    #[test]
    fn index_stays_consistent_after_many_removals() {
        let mut s: Store<V> = Store::new();
        for k in 0..20_000u32 {
            s.insert(V(k, u64::from(k)));
        }
        let mut gone = Vec::new();
        s.remove_if(|v, _| v.0 % 3 != 0, |v, _| gone.push(v.0));
        assert_eq!(gone.len(), 20_000 - 6667);
        assert_eq!(s.len(), 6667);
        for k in 0..20_000u32 {
            assert_eq!(s.get(&k).is_some(), k % 3 == 0, "key {k}");
        }
        for k in 20_000..30_000u32 {
            s.insert(V(k, 0));
        }
        check(&s);
        assert_eq!(s.len(), 16_667);
    }

    /// A view keeps the values of its time: changes, insertions and
    /// removals after it do not show in it.
    #[test]
    fn a_frozen_view_does_not_move_with_the_store() {
        let mut s: Store<V> = Store::new();
        for k in 0..10u32 {
            s.insert(V(k, 0));
        }
        let view = s.freeze();
        s.get_mut(&3).expect("present").1 = 33;
        s.remove(&4);
        s.insert(V(100, 1));
        s.insert(V(5, 55));
        assert_eq!(view.len(), 10);
        let got: Vec<(u32, u64)> = view.iter().map(|v| (v.0, v.1)).collect();
        assert_eq!(got, (0..10).map(|k| (k, 0)).collect::<Vec<_>>());
        for (slot, v) in view.slots() {
            assert_eq!(view[slot], *v);
        }
        let now = s.freeze();
        assert_eq!(now.len(), 10);
        assert_eq!(now.iter().find(|v| v.0 == 3).map(|v| v.1), Some(33));
        assert!(now.iter().all(|v| v.0 != 4));
    }

    /// A view shares every chunk; the store copies a chunk only when it
    /// changes one a view holds, and only that chunk; with no view left,
    /// it changes chunks in place.
    #[test]
    fn only_the_chunks_changed_since_a_view_are_copied() {
        let mut s: Store<V> = Store::new();
        for k in 0..(3 * CHUNK) as u32 {
            s.insert(V(k, 0));
        }
        let before = s.freeze();
        assert!(before
            .chunks
            .iter()
            .zip(&s.chunks)
            .all(|(a, b)| Arc::ptr_eq(a, b)));
        // Key k sits in chunk k / CHUNK (inserted in order, none freed).
        s.get_mut(&(CHUNK as u32 + 7)).expect("present").1 = 1;
        let shared: Vec<bool> = before
            .chunks
            .iter()
            .zip(&s.chunks)
            .map(|(a, b)| Arc::ptr_eq(a, b))
            .collect();
        assert_eq!(shared, vec![true, false, true]);
        assert!(!before.same_as(&s.freeze()));
        assert!(s.freeze().same_as(&s.freeze()));
        // The copy keeps its full capacity, so it never moves either.
        assert_eq!(s.chunks[1].capacity(), CHUNK);
        drop(before);
        let p = Arc::as_ptr(&s.chunks[2]);
        s.get_mut(&(2 * CHUNK as u32)).expect("present").1 = 2;
        assert_eq!(Arc::as_ptr(&s.chunks[2]), p, "changed in place when not shared");
        // Removing and inserting copy a shared chunk too.
        let view = s.freeze();
        s.remove(&0);
        assert!(!Arc::ptr_eq(&view.chunks[0], &s.chunks[0]));
        assert!(Arc::ptr_eq(&view.chunks[2], &s.chunks[2]));
        assert_eq!(view.get(0).map(|v| v.0), Some(0));
        check(&s);
    }

    #[test]
    fn views_made_from_values_and_changed_alone() {
        let mut view: Frozen<V> = (0..(CHUNK as u32 + 3)).map(|k| V(k, 0)).collect();
        assert_eq!(view.len(), CHUNK + 3);
        assert_eq!(view[CHUNK + 2], V(CHUNK as u32 + 2, 0));
        let copy = view.clone();
        view.retain(|v| v.0 % 2 == 0);
        for v in view.iter_mut() {
            v.1 = 9;
        }
        assert_eq!(view.len(), CHUNK / 2 + 2);
        assert_eq!(view.get(1), None);
        assert_eq!(view[2], V(2, 9));
        assert_eq!(copy.len(), CHUNK + 3);
        assert_eq!(copy[1], V(1, 0));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, u64),
        Remove(u32),
        Mutate(u32, u64),
        RemoveIf(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few keys, so that removals and replacements hit.
        let key = 0..300u32;
        prop_oneof![
            3 => (key.clone(), any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => key.clone().prop_map(Op::Remove),
            1 => (key, any::<u64>()).prop_map(|(k, v)| Op::Mutate(k, v)),
            1 => (2..7u64).prop_map(Op::RemoveIf),
        ]
    }

    proptest! {
        /// The store behaves as a `HashMap` of key to value.
        #[test]
        fn matches_a_hash_map(ops in proptest::collection::vec(op(), 1..2000)) {
            let mut s: Store<V> = Store::new();
            let mut m: HashMap<u32, u64> = HashMap::new();
            // A view taken now and then, with the model at that time.
            let mut views: Vec<(Frozen<V>, HashMap<u32, u64>)> = Vec::new();
            for (n, op) in ops.into_iter().enumerate() {
                if n % 97 == 0 {
                    views.push((s.freeze(), m.clone()));
                }
                match op {
                    Op::Insert(k, v) => {
                        prop_assert_eq!(s.insert(V(k, v)).map(|o| o.1), m.insert(k, v));
                    }
                    Op::Remove(k) => prop_assert_eq!(s.remove(&k).map(|o| o.1), m.remove(&k)),
                    Op::Mutate(k, v) => {
                        if let Some(x) = s.get_mut(&k) {
                            x.1 = v;
                        }
                        if let Some(x) = m.get_mut(&k) {
                            *x = v;
                        }
                    }
                    Op::RemoveIf(d) => {
                        let mut gone = Vec::new();
                        s.remove_if(|x, _| x.1 % d == 0, |x, _| gone.push(x.0));
                        gone.sort();
                        let mut want: Vec<u32> =
                            m.iter().filter(|(_, v)| **v % d == 0).map(|(k, _)| *k).collect();
                        want.sort();
                        m.retain(|_, v| *v % d != 0);
                        prop_assert_eq!(gone, want);
                    }
                }
                prop_assert_eq!(s.len(), m.len());
            }
            check(&s);
            views.push((s.freeze(), m));
            for (view, m) in views {
                let mut got: Vec<(u32, u64)> = view.iter().map(|v| (v.0, v.1)).collect();
                got.sort();
                let mut want: Vec<(u32, u64)> = m.into_iter().collect();
                want.sort();
                prop_assert_eq!(view.len(), want.len());
                prop_assert_eq!(got, want);
            }
        }
    }
}
