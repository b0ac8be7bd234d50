use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const MIN: Duration = Duration::from_secs(60);

#[test]
fn own_name_first_then_host_wide() {
    let t0 = Instant::now();
    let mut b = NameBook::default();
    let cdn = ip("203.0.113.1");
    b.insert(Some(10), cdn, "a.example".into(), Source::Dns, t0, MIN);
    b.insert(
        Some(20),
        cdn,
        "b.example".into(),
        Source::Dns,
        t0 + Duration::from_secs(1),
        MIN,
    );
    let at = t0 + Duration::from_secs(2);
    assert_eq!(&*b.lookup(Some(10), cdn, at).unwrap().name, "a.example");
    assert!(b.lookup(Some(10), cdn, at).unwrap().own);
    assert_eq!(&*b.lookup(Some(20), cdn, at).unwrap().name, "b.example");
    // A third process: the newest host-wide answer.
    let other = b.lookup(Some(30), cdn, at).unwrap();
    assert_eq!((&*other.name, other.own), ("b.example", false));
    assert_eq!(&*b.lookup(None, cdn, at).unwrap().name, "b.example");
    assert!(b.lookup(Some(10), ip("192.0.2.1"), at).is_none());
}

#[test]
fn the_newest_answer_before_the_flow_began() {
    let t0 = Instant::now();
    let mut b = NameBook::default();
    let addr = ip("2001:db8::1");
    b.insert(Some(1), addr, "old.example".into(), Source::Dns, t0, MIN);
    b.insert(
        Some(1),
        addr,
        "new.example".into(),
        Source::Dns,
        t0 + Duration::from_secs(10),
        MIN,
    );
    assert_eq!(
        &*b.lookup(Some(1), addr, t0 + Duration::from_secs(5)).unwrap().name,
        "old.example"
    );
    assert_eq!(
        &*b.lookup(Some(1), addr, t0 + Duration::from_secs(11))
            .unwrap()
            .name,
        "new.example"
    );
    // Before any answer: nothing.
    assert!(b.lookup(Some(1), addr, t0 - Duration::from_millis(1)).is_none());
}

#[test]
fn ttl_expiry() {
    let t0 = Instant::now();
    let mut b = NameBook::default();
    let addr = ip("192.0.2.5");
    b.insert(
        Some(1),
        addr,
        "x.example".into(),
        Source::Dns,
        t0,
        Duration::from_secs(5),
    );
    assert!(b.lookup(Some(1), addr, t0 + Duration::from_secs(4)).is_some());
    assert!(b.lookup(Some(1), addr, t0 + Duration::from_secs(5)).is_none());
    assert_eq!(b.len(), 2);
    b.expire(t0 + Duration::from_secs(6));
    assert!(b.is_empty());
    assert_eq!(b.name_bytes(), 0);
}

#[test]
fn repeated_answers_extend_without_growing() {
    let t0 = Instant::now();
    let mut b = NameBook::default();
    let addr = ip("192.0.2.6");
    for i in 0..100 {
        b.insert(
            Some(1),
            addr,
            "same.example".into(),
            Source::Dns,
            t0 + Duration::from_secs(i),
            MIN,
        );
    }
    assert_eq!(b.len(), 2);
    // Still valid for a flow that began right after the first answer.
    assert!(b.lookup(Some(1), addr, t0 + Duration::from_secs(1)).is_some());
    assert!(b.lookup(Some(1), addr, t0 + Duration::from_secs(150)).is_some());
}

#[test]
fn history_per_address_is_bounded() {
    let t0 = Instant::now();
    let mut b = NameBook::default();
    let addr = ip("192.0.2.7");
    for i in 0..50u64 {
        b.insert(
            Some(1),
            addr,
            format!("n{i}.example").into(),
            Source::Dns,
            t0 + Duration::from_secs(i),
            MIN,
        );
    }
    assert_eq!(b.len(), 2 * HISTORY);
    assert_eq!(
        &*b.lookup(Some(1), addr, t0 + Duration::from_secs(49))
            .unwrap()
            .name,
        "n49.example"
    );
}

#[test]
fn entry_overhead_covers_the_real_sizes() {
    use std::mem::size_of;
    // Map slot (key + vector header + control byte) at a load factor of
    // 7/8, twice over for power-of-two growth; the entry twice (vector
    // slack); a B-tree slot (seq + key, nodes at least half full).
    let map_slot = 2 * (size_of::<Key>() + size_of::<Vec<Entry>>() + 1) * 8 / 7;
    let btree_slot = (size_of::<u64>() + size_of::<Key>()) * 2;
    let arc_header = 2 * size_of::<usize>();
    let need = map_slot + 2 * size_of::<Entry>() + btree_slot + arc_header;
    assert!(need <= ENTRY_OVERHEAD, "{need} > {ENTRY_OVERHEAD}");
}

/// A million answers (distinct addresses, names and processes) never take
/// the book past its caps, nor its memory past the stated bound.
#[test]
fn a_million_answers_stay_bounded() {
    let limits = Limits {
        max_entries: 20_000,
        max_name_bytes: 512 << 10,
    };
    let mut b = NameBook::new(limits);
    let t0 = Instant::now();
    let long: String = "x".repeat(200);
    for i in 0..1_000_000u32 {
        let name: Arc<str> = if i % 10 == 0 {
            format!("{long}{i}").into()
        } else {
            format!("h{i}.example").into()
        };
        let addr = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
        b.insert(
            Some(i % 5000),
            addr,
            name,
            Source::Dns,
            t0,
            Duration::from_secs(3600),
        );
        assert!(b.len() <= limits.max_entries);
        assert!(b.name_bytes() <= limits.max_name_bytes);
    }
    assert!(
        b.len() > limits.max_entries / 4,
        "evicted far too much: {}",
        b.len()
    );
    // The containers themselves: what was allocated stays within the bound
    // (the map's capacity is what it grew to for the capped entries).
    let map_bytes =
        b.map.capacity() * 8 / 7 * (std::mem::size_of::<Key>() + std::mem::size_of::<Vec<Entry>>() + 1);
    let entry_bytes: usize = b
        .map
        .values()
        .map(|l| l.capacity() * std::mem::size_of::<Entry>())
        .sum();
    let total =
        map_bytes + entry_bytes + b.ages.len() * 2 * (8 + std::mem::size_of::<Key>()) + b.name_bytes();
    assert!(
        total <= limits.memory_bound(),
        "{total} > {}",
        limits.memory_bound()
    );
    // The newest answers are the ones kept.
    let last = IpAddr::from((0x0a00_0000u32 + 999_999).to_be_bytes());
    assert!(b.lookup(Some(999_999 % 5000), last, t0).is_some());
}
