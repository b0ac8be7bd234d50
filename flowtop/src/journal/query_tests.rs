use super::*;
use rusqlite::params;
use std::sync::atomic::{AtomicU32, Ordering};

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "flowtop-query-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

use std::path::PathBuf;

/// A journal with three flows: curl to 192.0.2.1:443 (ended at 2000 and
/// 3000), ssh to 2001:db8::1:22 (still open).
fn journal(dir: &Path) -> PathBuf {
    let path = dir.join("j.sqlite");
    let db = Connection::open(&path).unwrap();
    db.execute_batch(schema::CREATE_V1).unwrap();
    db.pragma_update(None, "application_id", schema::APPLICATION_ID)
        .unwrap();
    db.execute_batch(
        "INSERT INTO exe (id, path) VALUES (1, '/usr/bin/curl'), (2, '/usr/bin/ssh');
         INSERT INTO name (id, name) VALUES (1, 'Example.COM.'), (2, 'ptr.example.net');
         INSERT INTO addr (id, ip) VALUES (1, x'0a000001'), (2, x'c0000201'),
             (3, x'20010db8000000000000000000000001'), (4, x'fd000000000000000000000000000001');
         INSERT INTO process (id, pid, comm, exe) VALUES (1, 100, 'curl', 1), (2, 200, 'ssh', 2);",
    )
    .unwrap();
    let mut ins = db
        .prepare(
            "INSERT INTO flow (ct_id, proto, src, dst, sport, dport, start_ms, end_ms, orig_bytes, \
             reply_bytes, process, exe, dst_name, dst_host, dst_country) \
             VALUES (?1, ?2, ?3, ?4, 40000, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12, 'US')",
        )
        .unwrap();
    ins.execute(params![1, 6, 1, 2, 443, 1000, 2000, 10, 100, 1, 1, None::<i64>])
        .unwrap();
    ins.execute(params![2, 6, 1, 2, 443, 1500, 3000, 20, 200, 1, None::<i64>, 2])
        .unwrap();
    ins.execute(params![
        3,
        6,
        4,
        3,
        22,
        500,
        None::<i64>,
        5,
        6,
        2,
        None::<i64>,
        None::<i64>
    ])
    .unwrap();
    // The rows were written as version 1: the migration builds the rollup.
    for step in schema::MIGRATIONS {
        db.execute_batch(step).unwrap();
    }
    db.pragma_update(None, "user_version", schema::VERSION).unwrap();
    path
}

fn ids(j: &Journal, f: &Filter) -> Vec<u32> {
    let mut out = Vec::new();
    j.flows(f, |fl| {
        out.push(fl.ct_id);
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn destinations_parse_as_addresses_or_names() {
    assert_eq!(Dst::parse("192.0.2.1"), Dst::Addr("192.0.2.1".parse().unwrap()));
    assert_eq!(
        Dst::parse("::ffff:192.0.2.1"),
        Dst::Addr("192.0.2.1".parse().unwrap())
    );
    assert_eq!(
        Dst::parse("[2001:db8::1]"),
        Dst::Addr("2001:db8::1".parse().unwrap())
    );
    assert_eq!(Dst::parse("example.com."), Dst::Name("example.com".into()));
}

#[test]
fn filters_select_and_order_the_flows() {
    let dir = Scratch::new();
    let j = Journal::open(&journal(&dir.0)).unwrap();
    let all = Filter::default();
    // Ended by end time, then the open one.
    assert_eq!(ids(&j, &all), [1, 2, 3]);
    let f = |g: fn(&mut Filter)| {
        let mut f = Filter::default();
        g(&mut f);
        ids(&j, &f)
    };
    assert_eq!(f(|f| f.exe = Some("/usr/bin/curl".into())), [1, 2]);
    assert_eq!(f(|f| f.exe = Some("/usr/bin/cur".into())), [] as [u32; 0]);
    assert_eq!(f(|f| f.comm = Some("ssh".into())), [3]);
    assert_eq!(f(|f| f.pid = Some(100)), [1, 2]);
    assert_eq!(f(|f| f.dst = Some(Dst::parse("192.0.2.1"))), [1, 2]);
    assert_eq!(f(|f| f.dst = Some(Dst::parse("EXAMPLE.com"))), [1]);
    assert_eq!(f(|f| f.dst = Some(Dst::parse("ptr.example.net."))), [2]);
    assert_eq!(f(|f| f.port = Some(22)), [3]);
    assert_eq!(f(|f| f.since_ms = Some(2500)), [2, 3]);
    assert_eq!(f(|f| f.until_ms = Some(3000)), [1]);
    assert_eq!(f(|f| f.family = Some(6)), [3]);
    assert_eq!(f(|f| f.protos = Some(vec![17])), [] as [u32; 0]);
}

#[test]
fn the_summary_groups_per_exe_and_destination() {
    let dir = Scratch::new();
    let j = Journal::open(&journal(&dir.0)).unwrap();
    let s = j.summary(&Filter::default()).unwrap();
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[0].exe.as_deref(), Some("/usr/bin/curl"));
    assert_eq!((s[0].flows, s[0].orig_bytes, s[0].reply_bytes), (2, 30, 300));
    assert_eq!((s[0].first_ms, s[0].last_ms), (1000, Some(3000)));
    // The latest flow's names: no asked-for name, so its PTR name.
    assert_eq!(s[0].dst_name.as_deref(), Some("ptr.example.net"));
    assert_eq!(s[1].last_ms, None);
    let s = j
        .summary(&Filter {
            until_ms: Some(2500),
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].flows, 1);
}

#[test]
fn recent_flows_are_the_ended_ones_newest_first() {
    let dir = Scratch::new();
    let j = Journal::open(&journal(&dir.0)).unwrap();
    let ids = |n| j.recent(n).unwrap().iter().map(|f| f.ct_id).collect::<Vec<_>>();
    assert_eq!(ids(10), [2, 1]);
    assert_eq!(ids(1), [2]);
    assert_eq!(ids(0), [] as [u32; 0]);
}

/// A version 1 journal (no rollup, opened read-only, so never migrated)
/// is summed from its rows.
#[test]
fn a_version_1_journal_is_summed_from_its_rows() {
    let dir = Scratch::new();
    let path = journal(&dir.0);
    let expected = Journal::open(&path).unwrap().summary(&Filter::default()).unwrap();
    {
        let db = Connection::open(&path).unwrap();
        db.execute_batch("DROP TABLE flow_day; PRAGMA user_version = 1;")
            .unwrap();
    }
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.summary(&Filter::default()).unwrap(), expected);
    assert_eq!(expected.iter().map(|s| s.flows).sum::<u64>(), 3);
}
