//! The writer's tests: rows through the schema, interning, checkpoints,
//! refusals, a full queue, retention.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::Connection;

use super::record::{unix_ms, FlowRecord};
use super::recorder::{Recorder, CHECKPOINT_EVERY};
use super::retention::{used_bytes, Retention};
use super::schema::{APPLICATION_ID, VERSION};
use super::writer::{open, OpenError, Writer, WriterOptions};
use crate::flow::model::{
    proto, Attributed, Counters, Direction, Family, Flow, How, Owner, ProtoState, Tuple,
};
use crate::flow::table::{Change, Entry, EventKind, FlowTable, OwnerLookup, TableConfig};

struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "flowtop-journal-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tuple(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
    Tuple {
        src: ip(src),
        dst: ip(dst),
        sport: Some(sport),
        dport: Some(dport),
        icmp: None,
    }
}

fn flow(id: u32, src: &str, sport: u16, dst: &str, dport: u16) -> Flow {
    let orig = tuple(src, sport, dst, dport);
    Flow {
        id,
        family: if orig.src.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        },
        proto: proto::TCP,
        state: Some(ProtoState::Tcp(7)),
        orig,
        reply: tuple(dst, dport, src, sport),
        status: 0b1110,
        mark: 0,
        zone: 0,
        timeout: None,
        counters: Some(Counters {
            orig_packets: 5,
            orig_bytes: 500,
            reply_packets: 4,
            reply_bytes: 4000,
        }),
        start_ns: std::num::NonZeroU64::new(1_700_000_000_000_000_000 + u64::from(id) * 1_000_000),
    }
}

fn owner(pid: u32, comm: &str, exe: &str) -> Arc<Owner> {
    let o = Owner {
        pid,
        comm: comm.into(),
        exe: Some(exe.into()),
        uid: 1000,
        how: How::Ebpf,
        cmdline: Some(format!("{comm} -s")),
        ppid: Some(1),
        parent_comm: Some("init".into()),
        ..Default::default()
    };
    o.exe_sha256.set("ab".repeat(32));
    Arc::new(o)
}

struct Owns(Option<Arc<Owner>>);

impl OwnerLookup for Owns {
    fn attribute(&mut self, _: &Flow, _: Instant) -> Attributed {
        Attributed {
            owner: self.0.clone(),
            peer: None,
            direction: Some(Direction::Out),
        }
    }
}

/// The table's entry for `f`, owned by `o`.
fn entry(f: Flow, o: Option<Arc<Owner>>) -> Entry {
    let now = Instant::now();
    let mut t = FlowTable::new(TableConfig::default(), now);
    let mut got = None;
    t.apply_event(Change::Seen, f, now, &mut Owns(o), &mut |_, e: &Entry| {
        got = Some(e.clone())
    });
    got.unwrap()
}

fn record(id: u32, end_ms: Option<i64>, o: Option<Arc<Owner>>) -> FlowRecord {
    FlowRecord::of(
        &entry(flow(id, "10.0.0.1", 40000 + id as u16, "192.0.2.7", 443), o),
        0,
        end_ms,
        None,
    )
}

fn options() -> WriterOptions {
    WriterOptions {
        retention: None,
        ..WriterOptions::default()
    }
}

fn spawn(path: &Path, opts: WriterOptions) -> Writer {
    Writer::spawn(open(path).unwrap(), path, opts).unwrap()
}

fn count(db: &Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn rows_round_trip_through_the_schema_and_repeated_values_are_stored_once() {
    let dir = TempDir::new("roundtrip");
    let path = dir.join("sub/journal.sqlite");
    let w = spawn(&path, options());
    let curl = owner(42, "curl", "/usr/bin/curl");
    for id in 1..=3 {
        w.send(record(id, Some(2_000_000 + i64::from(id)), Some(curl.clone())));
    }
    // NAT: the reply tuple differs from the mirror of the original.
    let mut nat = flow(9, "10.0.0.1", 5555, "198.51.100.1", 80);
    nat.reply = tuple("10.1.1.1", 8080, "203.0.113.5", 5555);
    w.send(FlowRecord::of(&entry(nat, None), 0, Some(3_000_000), None));
    let counts = w.finish();
    assert_eq!((counts.written, counts.dropped, counts.lost), (4, 0, 0));

    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o640);
    assert_eq!(mode(path.parent().unwrap()), 0o750);

    let db = Connection::open(&path).unwrap();
    assert_eq!(count(&db, "PRAGMA application_id"), i64::from(APPLICATION_ID));
    assert_eq!(count(&db, "PRAGMA user_version"), i64::from(VERSION));
    let mode: String = db.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(count(&db, "SELECT count(*) FROM flow"), 4);
    assert_eq!(count(&db, "SELECT count(*) FROM exe"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM process"), 1);
    // 10.0.0.1, 192.0.2.7, 198.51.100.1, and the reply's 10.1.1.1, 203.0.113.5.
    assert_eq!(count(&db, "SELECT count(*) FROM addr"), 5);
    let row = db
        .query_row(
            "SELECT s.ip, d.ip, f.sport, f.dport, f.proto, f.state, f.direction, f.start_ms, f.end_ms, \
             f.orig_bytes, f.reply_packets, p.pid, p.comm, e.path, e.sha256, p.cmdline, p.uid, p.ppid, \
             p.parent_comm, f.attribution, f.reply_src IS NULL, f.exe = p.exe \
             FROM flow f JOIN addr s ON s.id = f.src JOIN addr d ON d.id = f.dst \
             JOIN process p ON p.id = f.process JOIN exe e ON e.id = p.exe WHERE f.ct_id = 2",
            [],
            |r| {
                Ok((
                    (
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, i64>(7)?,
                        r.get::<_, i64>(8)?,
                        r.get::<_, i64>(9)?,
                        r.get::<_, i64>(10)?,
                    ),
                    (
                        r.get::<_, i64>(11)?,
                        r.get::<_, String>(12)?,
                        r.get::<_, String>(13)?,
                        r.get::<_, String>(14)?,
                        r.get::<_, String>(15)?,
                        r.get::<_, i64>(16)?,
                        r.get::<_, i64>(17)?,
                        r.get::<_, String>(18)?,
                        r.get::<_, String>(19)?,
                        r.get::<_, bool>(20)?,
                        r.get::<_, bool>(21)?,
                    ),
                ))
            },
        )
        .unwrap();
    assert_eq!(
        row.0,
        (
            vec![10, 0, 0, 1],
            vec![192, 0, 2, 7],
            40002,
            443,
            6,
            "TIME_WAIT".to_owned(),
            "out".to_owned(),
            1_700_000_000_002,
            2_000_002,
            500,
            4
        )
    );
    assert_eq!(
        row.1,
        (
            42,
            "curl".to_owned(),
            "/usr/bin/curl".to_owned(),
            "ab".repeat(32),
            "curl -s".to_owned(),
            1000,
            1,
            "init".to_owned(),
            "ebpf".to_owned(),
            true,
            true
        )
    );
    let nat: (Vec<u8>, Vec<u8>, i64, i64, Option<i64>) = db
        .query_row(
            "SELECT rs.ip, rd.ip, f.reply_sport, f.reply_dport, f.process FROM flow f \
             JOIN addr rs ON rs.id = f.reply_src JOIN addr rd ON rd.id = f.reply_dst WHERE f.ct_id = 9",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(nat, (vec![10, 1, 1, 1], vec![203, 0, 113, 5], 8080, 5555, None));

    // A second run interns against what the file holds.
    let w = spawn(&path, options());
    w.send(record(
        5,
        Some(4_000_000),
        Some(owner(43, "curl", "/usr/bin/curl")),
    ));
    w.finish();
    assert_eq!(count(&db, "SELECT count(*) FROM exe"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM addr"), 5);
    assert_eq!(count(&db, "SELECT count(*) FROM process"), 2);
}

#[test]
fn the_final_row_replaces_the_checkpoint() {
    let dir = TempDir::new("checkpoint");
    let path = dir.join("j.sqlite");
    let w = spawn(&path, options());
    let mut cp = record(7, None, None);
    cp.counters.as_mut().unwrap().orig_bytes = 10;
    w.send(cp);
    w.send(record(7, Some(9_000_000), None));
    w.finish();
    let db = Connection::open(&path).unwrap();
    let (n, end, bytes): (i64, Option<i64>, i64) = db
        .query_row(
            "SELECT count(*), max(end_ms), max(orig_bytes) FROM flow",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((n, end, bytes), (1, Some(9_000_000), 500));
}

#[test]
fn the_recorder_checkpoints_long_lived_flows_and_writes_ended_ones() {
    let dir = TempDir::new("recorder");
    let path = dir.join("j.sqlite");
    let mut rec = Recorder::new(spawn(&path, options()), None);
    let e = entry(flow(1, "10.0.0.1", 1000, "192.0.2.1", 22), None);
    let start = 1_700_000_000_001;
    let every = i64::try_from(CHECKPOINT_EVERY.as_millis()).unwrap();
    // Young: no checkpoint; past 5 minutes: one, and not again until 10.
    rec.checkpoints(std::iter::once(&e), start + 1000);
    rec.checkpoints(std::iter::once(&e), start + every + 1000);
    rec.checkpoints(std::iter::once(&e), start + every + 31_000);
    let ended = entry(flow(2, "10.0.0.1", 1001, "192.0.2.1", 22), None);
    rec.change(EventKind::Destroy, &ended, start + 5000);
    let counts = rec.finish(std::iter::once(&e), start + every + 60_000);
    assert_eq!(counts.written, 3, "{counts}");
    let db = Connection::open(&path).unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM flow WHERE ct_id = 1 AND end_ms IS NULL"
        ),
        1
    );
    assert_eq!(
        count(&db, "SELECT end_ms FROM flow WHERE ct_id = 2"),
        start + 5000
    );
}

fn bytes_of(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn a_foreign_file_is_refused_and_left_untouched() {
    let dir = TempDir::new("foreign");
    let other = dir.join("other.sqlite");
    {
        let db = Connection::open(&other).unwrap();
        db.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let garbage = dir.join("garbage");
    std::fs::write(
        &garbage,
        b"this is not a database, not even close to one. ".repeat(100),
    )
    .unwrap();
    for p in [&other, &garbage] {
        let before = bytes_of(p);
        match open(p) {
            Err(e @ OpenError::Foreign { .. }) => {
                assert!(e.to_string().contains("not a flowtop journal"), "{e}")
            }
            Err(e) => panic!("{}: {e}", p.display()),
            Ok(_) => panic!("{} opened", p.display()),
        }
        assert_eq!(bytes_of(p), before, "{}", p.display());
        assert!(!PathBuf::from(format!("{}-wal", p.display())).exists());
    }
}

#[test]
fn a_journal_of_a_newer_version_is_refused_and_left_untouched() {
    let dir = TempDir::new("newer");
    let path = dir.join("j.sqlite");
    drop(open(&path).unwrap());
    {
        let db = Connection::open(&path).unwrap();
        db.execute_batch(&format!(
            "PRAGMA user_version = {}; PRAGMA journal_mode = DELETE;",
            VERSION + 1
        ))
        .unwrap();
    }
    let before = bytes_of(&path);
    let e = open(&path).err().expect("refused");
    assert!(
        matches!(e, OpenError::Newer { found, .. } if found == VERSION + 1),
        "{e}"
    );
    assert!(e.to_string().contains("newer"), "{e}");
    assert_eq!(bytes_of(&path), before);
}

#[test]
fn a_full_queue_drops_records_and_counts_them() {
    let dir = TempDir::new("full");
    let path = dir.join("j.sqlite");
    let w = spawn(
        &path,
        WriterOptions {
            capacity: 4,
            batch_rows: 1,
            ..options()
        },
    );
    // Another connection holds the write lock: the writer's first batch
    // waits on it (busy timeout) while the queue fills.
    let other = Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE;").unwrap();
    w.send(record(1, Some(1), None));
    std::thread::sleep(Duration::from_millis(200));
    for id in 2..=11 {
        w.send(record(id, Some(1), None));
    }
    assert_eq!(w.stats().counts().dropped, 6);
    other.execute_batch("COMMIT;").unwrap();
    let counts = w.finish();
    assert_eq!(
        (counts.written, counts.dropped, counts.lost),
        (5, 6, 0),
        "{counts}"
    );
}

#[test]
fn a_read_only_journal_counts_its_rows_as_lost_and_the_writer_goes_on() {
    let dir = TempDir::new("ro");
    let path = dir.join("j.sqlite");
    drop(open(&path).unwrap());
    let opened = open(&path).unwrap();
    // As if the file system had become read-only under the writer.
    opened.db.execute_batch("PRAGMA query_only = ON;").unwrap();
    let w = Writer::spawn(
        opened,
        &path,
        WriterOptions {
            batch_every: Duration::from_millis(50),
            ..options()
        },
    )
    .unwrap();
    w.send(record(1, Some(1), None));
    std::thread::sleep(Duration::from_millis(300));
    w.send(record(2, Some(1), None));
    let counts = w.finish();
    assert_eq!(
        (counts.written, counts.lost, counts.errors),
        (0, 2, 2),
        "{counts}"
    );
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn retention_removes_flows_older_than_the_age() {
    let dir = TempDir::new("age");
    let path = dir.join("j.sqlite");
    let now = unix_ms(SystemTime::now());
    let w = spawn(&path, options());
    for id in 0..5000 {
        let end = if id % 2 == 0 {
            now - 7_200_000
        } else {
            now - 60_000
        };
        w.send(record(id, Some(end), None));
    }
    w.send(record(9999, None, None));
    assert_eq!(w.finish().written, 5001);
    let w = spawn(
        &path,
        WriterOptions {
            retention: Some(Retention {
                age: Duration::from_secs(3600),
                size: 1 << 40,
            }),
            ..options()
        },
    );
    let stats = w.stats().clone();
    wait_for("retention", || stats.counts().removed == 2500);
    w.finish();
    let db = Connection::open(&path).unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM flow"), 2501);
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM flow WHERE end_ms < {}", now - 3_600_000)
        ),
        0
    );
}

#[test]
fn retention_keeps_the_journal_under_its_size_removing_the_oldest() {
    let dir = TempDir::new("size");
    let path = dir.join("j.sqlite");
    let now = unix_ms(SystemTime::now());
    let w = spawn(&path, options());
    for id in 0..20_000 {
        w.send(record(id, Some(now - 1_000_000 + i64::from(id)), None));
    }
    assert_eq!(w.finish().written, 20_000);
    let before = {
        let db = Connection::open(&path).unwrap();
        db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        used_bytes(&db).unwrap()
    };
    let limit = before / 2;
    let w = spawn(
        &path,
        WriterOptions {
            retention: Some(Retention {
                age: Duration::from_secs(86_400),
                size: limit,
            }),
            ..options()
        },
    );
    let stats = w.stats().clone();
    wait_for("size retention", || stats.counts().removed > 0);
    std::thread::sleep(Duration::from_millis(300));
    w.finish();
    let db = Connection::open(&path).unwrap();
    let used = used_bytes(&db).unwrap();
    let file = std::fs::metadata(&path).unwrap().len();
    let rows = count(&db, "SELECT count(*) FROM flow");
    assert!(used <= limit, "{used} > {limit}");
    assert!(file <= limit + 64 * 1024, "the file shrank: {file} vs {limit}");
    assert!(rows > 5000 && rows < 20_000, "{rows}");
    // The oldest went first.
    assert_eq!(
        count(&db, "SELECT min(ct_id) FROM flow"),
        20_000 - rows,
        "{rows} rows kept"
    );
}

#[test]
fn the_cleanup_removes_what_no_flow_refers_to_and_stale_checkpoints() {
    let dir = TempDir::new("clean");
    let path = dir.join("j.sqlite");
    let now = unix_ms(SystemTime::now());
    let w = spawn(&path, options());
    let mut kept = record(1, Some(now), Some(owner(1, "kept", "/bin/kept")));
    kept.dst_name = Some(Arc::from("kept.example"));
    w.send(kept);
    let mut gone = FlowRecord::of(
        &entry(
            flow(2, "10.9.9.9", 1, "203.0.113.99", 2),
            Some(owner(2, "gone", "/bin/gone")),
        ),
        0,
        Some(now - 10_000_000),
        None,
    );
    gone.dst_name = Some(Arc::from("gone.example"));
    w.send(gone);
    // A killed recorder's checkpoint, long ago.
    let mut stale = record(3, None, None);
    stale.start_ms = now - 20_000_000;
    w.send(stale);
    assert_eq!(w.finish().written, 3);
    let db = Connection::open(&path).unwrap();
    let cutoff = now - 5_000_000;
    while super::retention::delete_older(&db, cutoff).unwrap() > 0 {}
    super::retention::clean_unreferenced(&db, cutoff).unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM flow"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM process WHERE comm = 'gone'"), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM process WHERE comm = 'kept'"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM exe"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM name"), 1);
    // 10.0.0.1 and 192.0.2.7 are the kept flow's.
    assert_eq!(count(&db, "SELECT count(*) FROM addr"), 2);
}

/// Bytes on disk per recorded flow, for realistic rows: a few hundred
/// processes, thousands of destinations, a name for most. Run with
/// `cargo test -p flowtop --lib journal::tests::bytes_per_row -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: prints bytes per row for 100 000 rows"]
fn bytes_per_row() {
    let dir = TempDir::new("bytes");
    let path = dir.join("j.sqlite");
    let w = spawn(
        &path,
        WriterOptions {
            capacity: 1 << 20,
            ..options()
        },
    );
    let owners: Vec<_> = (0..300)
        .map(|i| {
            owner(
                1000 + i,
                &format!("proc{}", i % 40),
                &format!("/usr/bin/prog{}", i % 40),
            )
        })
        .collect();
    let now = unix_ms(SystemTime::now());
    let n: u32 = 100_000;
    let mut records = Vec::with_capacity(n as usize);
    for id in 0..n {
        let dst = format!("198.51.{}.{}", (id / 7) % 20, (id * 13) % 250);
        // Conntrack ids are hashes: spread like them.
        let mut f = flow(
            id.wrapping_mul(2_654_435_761),
            "10.0.0.1",
            30000 + (id % 30000) as u16,
            &dst,
            [443, 80, 53, 22][id as usize % 4],
        );
        f.counters = Some(Counters {
            orig_packets: u64::from(id % 100),
            orig_bytes: u64::from(id) * 37,
            reply_packets: u64::from(id % 90),
            reply_bytes: u64::from(id) * 301,
        });
        let e = entry(f, Some(owners[id as usize % owners.len()].clone()));
        let mut r = FlowRecord::of(&e, 0, Some(now + i64::from(id)), None);
        if id % 3 != 0 {
            r.dst_name = Some(Arc::from(format!("host{}.example.com", (id / 7) % 500)));
            r.dst_name_source = Some("sni");
        }
        r.dst_country = Some(Arc::from("US"));
        records.push(r);
    }
    // The writer thread's time for all of them (rows built beforehand).
    let cpu = || {
        let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the struct it is given.
        let ru = unsafe {
            libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
            ru.assume_init()
        };
        let t = |v: libc::timeval| Duration::new(v.tv_sec as u64, v.tv_usec as u32 * 1000);
        t(ru.ru_utime) + t(ru.ru_stime)
    };
    let (wall, before) = (Instant::now(), cpu());
    for r in records {
        w.send(r);
    }
    let counts = w.finish();
    let (wall, used) = (wall.elapsed(), cpu() - before);
    assert_eq!(counts.written, u64::from(n), "{counts}");
    let db = Connection::open(&path).unwrap();
    db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let file = std::fs::metadata(&path).unwrap().len();
    println!(
        "{n} rows: {file} bytes, {:.1} bytes per row; written in {wall:.2?} ({used:.2?} of CPU, {:.1} µs per row)",
        file as f64 / f64::from(n),
        used.as_secs_f64() * 1e6 / f64::from(n)
    );
}

/// A journal the writer filled with `n` varied flows: four owners (one
/// none), three destinations (one IPv6), two ports, ends spread over five
/// UTC days, one flow in ten still open (a checkpoint).
fn varied_journal(path: &Path, n: u32, now: i64) {
    let owners = [
        Some(owner(1, "curl", "/usr/bin/curl")),
        Some(owner(2, "ssh", "/usr/bin/ssh")),
        Some(owner(3, "app", "/opt/app")),
        None,
    ];
    let dsts = ["192.0.2.7", "198.51.100.9", "2001:db8::5"];
    let w = spawn(path, options());
    for id in 0..n {
        let dst = dsts[(id % 3) as usize];
        let src = if dst.contains(':') {
            "2001:db8::1"
        } else {
            "10.0.0.1"
        };
        let dport = if id % 5 == 0 { 53 } else { 443 };
        let o = owners[(id % 4) as usize].clone();
        let end = now - i64::from(id) * 5 * 86_400_000 / i64::from(n);
        let mut r = FlowRecord::of(
            &entry(flow(id, src, 40000 + (id % 1000) as u16, dst, dport), o),
            0,
            (id % 10 != 0).then_some(end),
            None,
        );
        r.start_ms = end - i64::from(id % 7) * 1000;
        if let Some(c) = r.counters.as_mut() {
            c.orig_bytes = u64::from(id) * 3;
            c.reply_bytes = u64::from(id) * 11;
        }
        w.send(r);
    }
    assert_eq!(w.finish().written, u64::from(n));
}

fn sorted(mut s: Vec<super::query::Summary>) -> Vec<super::query::Summary> {
    s.sort_by(|a, b| (&a.exe, a.dst, a.dport, a.proto).cmp(&(&b.exe, b.dst, b.dport, b.proto)));
    s
}

/// `--summary` over the per-day rollup (whole days) and the rows (partial
/// days, open flows) gives exactly what the rows alone give, for bounds on
/// and off day boundaries and every filter the rollup answers.
#[test]
fn the_rollup_gives_the_summary_the_rows_give() {
    use super::query::{Dst, Filter, Journal};
    let dir = TempDir::new("rollup");
    let path = dir.join("j.sqlite");
    let now = unix_ms(SystemTime::now());
    varied_journal(&path, 3000, now);
    let j = Journal::open(&path).unwrap();
    let day = super::schema::DAY_MS;
    let midnight = now.div_euclid(day) * day;
    let bounds = [
        (None, None),
        (Some(now - 2 * day - 3_600_000), None),
        (Some(midnight - 2 * day), None),
        (None, Some(now - day - 1)),
        (None, Some(midnight - day)),
        (Some(now - 4 * day + 17), Some(now - day + 5)),
        (Some(midnight - 3 * day + 1000), Some(midnight - 3 * day + 9000)),
        (Some(now + day), None),
    ];
    let filters = [
        Filter::default(),
        Filter {
            exe: Some("/usr/bin/curl".into()),
            ..Filter::default()
        },
        Filter {
            port: Some(53),
            ..Filter::default()
        },
        Filter {
            dst: Some(Dst::Addr(ip("198.51.100.9"))),
            ..Filter::default()
        },
        Filter {
            family: Some(6),
            ..Filter::default()
        },
        Filter {
            protos: Some(vec![6]),
            ..Filter::default()
        },
    ];
    let mut nonempty = 0;
    for f in &filters {
        for (since_ms, until_ms) in bounds {
            let f = Filter {
                since_ms,
                until_ms,
                ..f.clone()
            };
            let rows = sorted(j.summary_by(&f, false).unwrap());
            let rolled = sorted(j.summary_by(&f, true).unwrap());
            assert_eq!(rolled, rows, "{f:?}");
            nonempty += usize::from(!rows.is_empty());
        }
    }
    assert!(nonempty > 30, "the cases select flows: {nonempty}");
    // The rollup counts every ended row once.
    let db = Connection::open(&path).unwrap();
    assert_eq!(
        count(&db, "SELECT sum(flows) FROM flow_day"),
        count(&db, "SELECT count(*) FROM flow WHERE end_ms IS NOT NULL")
    );
}

/// A journal written as version 1 is migrated when a writer opens it: the
/// rollup is built from its rows, the same as the writer would have kept.
#[test]
fn a_version_1_journal_is_migrated_and_its_rollup_built() {
    let dir = TempDir::new("migrate");
    let (kept, migrated) = (dir.join("kept.sqlite"), dir.join("v1.sqlite"));
    let now = unix_ms(SystemTime::now());
    varied_journal(&kept, 500, now);
    varied_journal(&migrated, 500, now);
    {
        // Back to version 1: no rollup.
        let db = Connection::open(&migrated).unwrap();
        db.execute_batch("DROP TABLE flow_day; PRAGMA user_version = 1;")
            .unwrap();
    }
    spawn(&migrated, options()).finish();
    let days = |p: &Path| -> Vec<(i64, i64, i64, i64, i64, i64, i64)> {
        let db = Connection::open(p).unwrap();
        let mut s = db
            .prepare(
                "SELECT day, exe, dst, dport, flows, orig_bytes, last_flow FROM flow_day ORDER BY 1, 2, 3, 4",
            )
            .unwrap();
        s.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    let db = Connection::open(&migrated).unwrap();
    assert_eq!(count(&db, "PRAGMA user_version"), i64::from(VERSION));
    assert!(!days(&kept).is_empty());
    assert_eq!(days(&migrated), days(&kept));
}

/// Retention by age takes its flows out of the rollup too.
#[test]
fn retention_removes_the_rollup_days_of_removed_flows() {
    let dir = TempDir::new("rollup-age");
    let path = dir.join("j.sqlite");
    let now = unix_ms(SystemTime::now());
    varied_journal(&path, 1000, now);
    let w = spawn(
        &path,
        WriterOptions {
            retention: Some(Retention {
                age: Duration::from_secs(86_400),
                size: 1 << 40,
            }),
            ..options()
        },
    );
    let stats = w.stats().clone();
    wait_for("retention", || stats.counts().removed > 0);
    std::thread::sleep(Duration::from_millis(300));
    w.finish();
    let db = Connection::open(&path).unwrap();
    let left = count(&db, "SELECT count(*) FROM flow WHERE end_ms IS NOT NULL");
    assert!(left > 0 && left < 900, "{left} ended flows left");
    // The rollup adds up exactly the rows left, and no emptied group stays.
    assert_eq!(count(&db, "SELECT sum(flows) FROM flow_day"), left);
    assert_eq!(
        count(&db, "SELECT sum(orig_bytes) FROM flow_day"),
        count(&db, "SELECT sum(orig_bytes) FROM flow WHERE end_ms IS NOT NULL")
    );
    assert_eq!(count(&db, "SELECT count(*) FROM flow_day WHERE flows <= 0"), 0);
    let oldest_day =
        count(&db, "SELECT min(end_ms) FROM flow WHERE end_ms IS NOT NULL") / super::schema::DAY_MS;
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM flow_day WHERE day < {oldest_day}")
        ),
        0
    );
}
