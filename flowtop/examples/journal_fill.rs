//! Fills a journal (rows of schema version 1, `flowtop::journal::schema`;
//! `migrate` brings it to the current version) with
//! realistic recorded flows, for `cargo xtask bench journal`: the size on
//! disk per flow and `flowtop history` over millions of rows.
//!
//! Usage:
//! - `journal_fill fill PATH ROWS`: creates PATH (WAL, like a recorder)
//!   and inserts ROWS flows with prepared statements, one transaction per
//!   10 000 rows; prints one JSON object (rows, seconds, bytes on disk
//!   after a final checkpoint).
//! - `journal_fill stats PATH`: the bytes of each table and index (SQLite's
//!   `dbstat`), as one JSON object.
//! - `journal_fill migrate PATH`: runs the schema's migrations (version 2
//!   builds the per-day rollup `flow_day` from the rows, which is what the
//!   writer keeps up to date row by row); prints the seconds and the bytes
//!   on disk after.
//!
//! The data: 300 executables (`/usr/bin/app000` ... `app299`, used by a
//! Zipf law: app000 the busiest), 66 processes each (20 000 in all),
//! 50 000 destination addresses (a fifth IPv6), 20 000 names (four
//! addresses in five with an asked-for name, one in three with a PTR
//! name), each executable talking to its own 20 favourite destinations 98%
//! of the time and to any address the rest; TCP (443, 80, 22, ...) with
//! TIME_WAIT and friends, UDP (53, 123, 443), a little ICMP; flow ends
//! spread over the last 30 days in order, lifetimes from 10 ms to 10 min,
//! counters from bytes to hundreds of MB, no NAT (the reply tuple NULL).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use flowtop::journal::schema;
use rusqlite::{params, Connection};

const EXES: i64 = 300;
const PROCS_PER_EXE: i64 = 66;
const ADDRS: i64 = 50_000;
const NAMES: i64 = 20_000;
const LOCAL: i64 = 4;
const FAVOURITES: i64 = 20;
const BATCH: i64 = 10_000;

/// splitmix64: deterministic, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: i64) -> i64 {
        (self.next() % n as u64) as i64
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-uniform between lo and hi.
    fn log_between(&mut self, lo: f64, hi: f64) -> i64 {
        (lo * (hi / lo).powf(self.unit())) as i64
    }
}

fn hash(a: i64, b: i64) -> i64 {
    (Rng((a as u64).wrapping_mul(1_000_003).wrapping_add(b as u64)).next() >> 1) as i64
}

/// Zipf-like pick of an executable: index k with weight 1/(k+1).
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: i64) -> Zipf {
        let mut acc = 0.0;
        let cdf = (0..n)
            .map(|k| {
                acc += 1.0 / (k as f64 + 1.0);
                acc
            })
            .collect::<Vec<_>>();
        let total = acc;
        Zipf(cdf.into_iter().map(|c| c / total).collect())
    }

    fn pick(&self, rng: &mut Rng) -> i64 {
        let u = rng.unit();
        self.0.partition_point(|&c| c < u) as i64
    }
}

fn addr_bytes(i: i64) -> Vec<u8> {
    let h = hash(i, 7);
    if i % 5 == 0 {
        let mut v = vec![0x20, 0x01, 0x0d, 0xb8];
        v.extend_from_slice(&h.to_be_bytes());
        v.extend_from_slice(&(i as u32).to_be_bytes());
        v
    } else {
        // Unique: the index in the low bytes.
        vec![(h % 200) as u8 + 11, (i >> 16) as u8, (i >> 8) as u8, i as u8]
    }
}

fn fill(path: &str, rows: i64) -> rusqlite::Result<()> {
    let started = Instant::now();
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(format!("{path}-wal"));
    let _ = std::fs::remove_file(format!("{path}-shm"));
    let mut db = Connection::open(path)?;
    db.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    db.execute_batch("PRAGMA synchronous=NORMAL")?;
    // The fill's own speed only (random ct_id keys); no effect on the file.
    db.execute_batch("PRAGMA cache_size=-262144")?;
    db.execute_batch(&format!("BEGIN; {} COMMIT;", schema::CREATE_V1))?;
    db.pragma_update(None, "application_id", schema::APPLICATION_ID)?;
    // The rows of version 1; `migrate` adds what later versions keep.
    db.pragma_update(None, "user_version", 1)?;
    let mut rng = Rng(42);
    let tx = db.transaction()?;
    {
        let mut exe = tx.prepare("INSERT INTO exe (id, path) VALUES (?1, ?2)")?;
        for e in 0..EXES {
            exe.execute(params![e + 1, format!("/usr/bin/app{e:03}")])?;
        }
        let mut process = tx.prepare(
            "INSERT INTO process (id, pid, comm, exe, cmdline, uid, ppid, parent_comm) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'systemd')",
        )?;
        for p in 0..EXES * PROCS_PER_EXE {
            let e = p / PROCS_PER_EXE;
            process.execute(params![
                p + 1,
                1000 + p * 7,
                format!("app{e:03}"),
                e + 1,
                format!(
                    "/usr/bin/app{e:03} --config /etc/app{e:03}.conf --worker {}",
                    p % PROCS_PER_EXE
                ),
                if e % 3 == 0 { 0 } else { 1000 },
                1
            ])?;
        }
        let mut addr = tx.prepare("INSERT INTO addr (id, ip) VALUES (?1, ?2)")?;
        for l in 0..LOCAL {
            addr.execute(params![l + 1, vec![10, 0, 0, l as u8 + 2]])?;
        }
        for a in 0..ADDRS {
            addr.execute(params![LOCAL + a + 1, addr_bytes(a)])?;
        }
        let mut name = tx.prepare("INSERT INTO name (id, name) VALUES (?1, ?2)")?;
        let words = ["cdn", "api", "www", "static", "edge", "mail", "push", "telemetry"];
        let tlds = ["com", "net", "org", "io", "de", "fr"];
        for n in 0..NAMES {
            let w = words[(n % words.len() as i64) as usize];
            let t = tlds[(hash(n, 3) % tlds.len() as i64) as usize];
            name.execute(params![
                n + 1,
                format!("{w}{}.service{}.example.{t}", n % 97, n / 97)
            ])?;
        }
    }
    tx.commit()?;
    let zipf = Zipf::new(EXES);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let span = 30 * 86_400_000i64;
    let countries = ["US", "DE", "FR", "NL", "GB", "JP", "IE", "SE"];
    let tcp_states = [
        "TIME_WAIT",
        "TIME_WAIT",
        "TIME_WAIT",
        "TIME_WAIT",
        "CLOSE",
        "SYN_SENT",
        "FIN_WAIT",
        "LAST_ACK",
    ];
    let mut done = 0;
    while done < rows {
        let tx = db.transaction()?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO flow (ct_id, proto, src, dst, sport, dport, state, direction, start_ms, \
                 end_ms, orig_bytes, orig_packets, reply_bytes, reply_packets, process, exe, \
                 attribution, dst_name, dst_name_source, dst_host, dst_country) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
                 'ebpf', ?17, ?18, ?19, ?20)",
            )?;
            for i in done..(done + BATCH).min(rows) {
                let e = zipf.pick(&mut rng);
                let p = e * PROCS_PER_EXE + rng.below(PROCS_PER_EXE);
                let fav = rng.below(100) < 98;
                let a = if fav {
                    hash(e, rng.below(FAVOURITES)) % ADDRS
                } else {
                    rng.below(ADDRS)
                };
                let port_pick = if fav { hash(e, a) % 100 } else { rng.below(100) };
                let (proto, dport) = match port_pick {
                    0..=59 => (6, Some(443)),
                    60..=69 => (6, Some(80)),
                    70..=74 => (6, Some(22)),
                    75..=79 => (6, Some(5222 + a % 10)),
                    80..=89 => (17, Some(53)),
                    90..=93 => (17, Some(443)),
                    94..=97 => (17, Some(123)),
                    _ => (1, None),
                };
                let sport = dport.map(|_| 32_768 + rng.below(28_000));
                let state = (proto == 6).then(|| tcp_states[rng.below(tcp_states.len() as i64) as usize]);
                let end = now - span + (span / rows) * i + rng.below(1000);
                let start = end - rng.log_between(10.0, 600_000.0);
                let orig = rng.log_between(60.0, 2e6);
                let reply = rng.log_between(60.0, 2e8);
                let named = a % 5 != 0;
                let ptr = a % 3 == 0;
                ins.execute(params![
                    rng.next() as u32,
                    proto,
                    1 + (p % LOCAL),
                    LOCAL + a + 1,
                    sport,
                    dport,
                    state,
                    if rng.below(10) == 0 { "in" } else { "out" },
                    start,
                    end,
                    orig,
                    orig / 700 + 1,
                    reply,
                    reply / 1400 + 1,
                    p + 1,
                    e + 1,
                    named.then_some(a % NAMES + 1),
                    named.then_some(if proto == 17 { "dns" } else { "sni" }),
                    ptr.then_some((a * 7) % NAMES + 1),
                    countries[(a % countries.len() as i64) as usize],
                ])?;
            }
        }
        tx.commit()?;
        done = (done + BATCH).min(rows);
    }
    db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(db);
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!(
        "{{\"rows\":{rows},\"seconds\":{:.2},\"bytes\":{bytes}}}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn stats(path: &str) -> rusqlite::Result<()> {
    let db = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = db.prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")?;
    let objects = stmt
        .query_map([], |r| {
            Ok(format!("\"{}\":{}", r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let flows: i64 = db.query_row("SELECT count(*) FROM flow", [], |r| r.get(0))?;
    println!("{{\"flows\":{flows},\"objects\":{{{}}}}}", objects.join(","));
    Ok(())
}

fn migrate(path: &str) -> rusqlite::Result<()> {
    let started = Instant::now();
    let db = Connection::open(path)?;
    let from: i32 = db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let mut sql = String::from("BEGIN;");
    for step in schema::MIGRATIONS
        .iter()
        .skip(usize::try_from(from.max(1) - 1).unwrap_or(0))
    {
        sql.push_str(step);
        sql.push(';');
    }
    sql.push_str(&format!("PRAGMA user_version = {}; COMMIT;", schema::VERSION));
    db.execute_batch(&sql)?;
    db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let days: i64 = db.query_row("SELECT count(*) FROM flow_day", [], |r| r.get(0))?;
    drop(db);
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!(
        "{{\"seconds\":{:.2},\"bytes\":{bytes},\"day_rows\":{days}}}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ran = match (args.get(1).map(String::as_str), args.get(2), args.get(3)) {
        (Some("fill"), Some(path), Some(rows)) => {
            let rows = rows.replace('_', "").parse().expect("ROWS is a number");
            fill(path, rows)
        }
        (Some("stats"), Some(path), None) => stats(path),
        (Some("migrate"), Some(path), None) => migrate(path),
        _ => {
            eprintln!("usage: journal_fill fill PATH ROWS | stats PATH | migrate PATH");
            std::process::exit(2);
        }
    };
    if let Err(e) = ran {
        eprintln!("journal_fill: {e}");
        std::process::exit(1);
    }
}
