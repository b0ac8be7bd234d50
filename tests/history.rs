//! `flowtop history` over journals built here with the schema (no recorder,
//! no root): the filters, the outputs and the files it must refuse, which
//! it must never modify.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use flowtop::journal::schema;
use rusqlite::{params, Connection};
use serde_json::Value;

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "flowtop-history-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

/// One flow to record; what is not set stays NULL.
#[derive(Clone, Default)]
struct Row {
    ct_id: i64,
    proto: i64,
    src: &'static str,
    dst: &'static str,
    sport: Option<i64>,
    dport: Option<i64>,
    state: Option<&'static str>,
    start_ms: i64,
    end_ms: Option<i64>,
    orig_bytes: i64,
    reply_bytes: i64,
    pid: Option<i64>,
    comm: Option<String>,
    exe: Option<String>,
    cmdline: Option<String>,
    dst_name: Option<String>,
    dst_host: Option<String>,
    country: Option<&'static str>,
}

/// A journal being written with the schema, the way a recorder would.
struct Writer {
    db: Connection,
}

impl Writer {
    fn create(path: &Path, wal: bool) -> Writer {
        let db = Connection::open(path).unwrap();
        if wal {
            let mode: String = db.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).unwrap();
            assert_eq!(mode, "wal");
        }
        db.execute_batch(&format!(
            "BEGIN; {} {}; COMMIT;",
            schema::CREATE_V1,
            schema::MIGRATIONS.join(";")
        ))
        .unwrap();
        db.pragma_update(None, "application_id", schema::APPLICATION_ID)
            .unwrap();
        db.pragma_update(None, "user_version", schema::VERSION).unwrap();
        Writer { db }
    }

    fn id(&self, table: &str, col: &str, v: rusqlite::types::Value) -> i64 {
        self.db
            .execute(
                &format!("INSERT OR IGNORE INTO {table} ({col}) VALUES (?1)"),
                [&v],
            )
            .unwrap();
        self.db
            .query_row(&format!("SELECT id FROM {table} WHERE {col} = ?1"), [&v], |r| {
                r.get(0)
            })
            .unwrap()
    }

    fn addr(&self, ip: &str) -> i64 {
        let bytes = match ip.parse::<std::net::IpAddr>().unwrap() {
            std::net::IpAddr::V4(a) => a.octets().to_vec(),
            std::net::IpAddr::V6(a) => a.octets().to_vec(),
        };
        self.id("addr", "ip", rusqlite::types::Value::Blob(bytes))
    }

    fn name(&self, n: &Option<String>) -> Option<i64> {
        n.as_ref()
            .map(|n| self.id("name", "name", rusqlite::types::Value::Text(n.clone())))
    }

    fn add(&self, r: &Row) {
        let exe = r
            .exe
            .as_ref()
            .map(|e| self.id("exe", "path", rusqlite::types::Value::Text(e.clone())));
        let process = r.pid.map(|pid| {
            self.db
                .execute(
                    "INSERT INTO process (pid, comm, exe, cmdline, uid) VALUES (?1, ?2, ?3, ?4, 1000)",
                    params![pid, r.comm, exe, r.cmdline],
                )
                .unwrap();
            self.db.last_insert_rowid()
        });
        let (src, dst) = (self.addr(r.src), self.addr(r.dst));
        self.db
            .execute(
                "INSERT INTO flow (ct_id, proto, src, dst, sport, dport, state, direction, start_ms, \
                 end_ms, orig_bytes, orig_packets, reply_bytes, reply_packets, process, exe, \
                 attribution, dst_name, dst_name_source, dst_host, dst_country) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'out', ?8, ?9, ?10, 3, ?11, 4, ?12, ?13, \
                 'ebpf', ?14, ?15, ?16, ?17)",
                params![
                    r.ct_id,
                    r.proto,
                    src,
                    dst,
                    r.sport,
                    r.dport,
                    r.state,
                    r.start_ms,
                    r.end_ms,
                    r.orig_bytes,
                    r.reply_bytes,
                    process,
                    exe,
                    self.name(&r.dst_name),
                    r.dst_name.as_ref().map(|_| "sni"),
                    self.name(&r.dst_host),
                    r.country,
                ],
            )
            .unwrap();
        if let Some(end_ms) = r.end_ms {
            // The per-day rollup, as the recorder keeps it.
            let id = self.db.last_insert_rowid();
            self.db
                .execute(
                    schema::UPSERT_DAY,
                    params![
                        end_ms,
                        exe.unwrap_or(0),
                        dst,
                        r.dport.unwrap_or(-1),
                        r.proto,
                        r.orig_bytes,
                        r.reply_bytes,
                        r.start_ms,
                        end_ms,
                        id,
                        process,
                        self.name(&r.dst_name),
                        self.name(&r.dst_host),
                        r.country,
                    ],
                )
                .unwrap();
        }
    }
}

/// curl twice to example.com (2 h and 30 min ago), dig over UDP 10 min
/// ago, ssh to an IPv6 host still open.
fn sample(path: &Path, wal: bool) -> (Writer, i64) {
    let w = Writer::create(path, wal);
    let now = now_ms();
    let curl = Row {
        proto: 6,
        src: "10.0.0.2",
        dst: "93.184.215.14",
        sport: Some(40000),
        dport: Some(443),
        state: Some("TIME_WAIT"),
        pid: Some(100),
        comm: Some("curl".into()),
        exe: Some("/usr/bin/curl".into()),
        cmdline: Some("curl https://example.com/".into()),
        dst_name: Some("example.com".into()),
        country: Some("US"),
        ..Row::default()
    };
    w.add(&Row {
        ct_id: 1,
        start_ms: now - 2 * HOUR - 5000,
        end_ms: Some(now - 2 * HOUR),
        orig_bytes: 100,
        reply_bytes: 1000,
        ..curl.clone()
    });
    w.add(&Row {
        ct_id: 2,
        pid: Some(101),
        sport: Some(40001),
        start_ms: now - 30 * MIN - 3000,
        end_ms: Some(now - 30 * MIN),
        orig_bytes: 200,
        reply_bytes: 2000,
        dst_name: None,
        dst_host: Some("edge.example.net".into()),
        ..curl.clone()
    });
    w.add(&Row {
        ct_id: 3,
        proto: 17,
        src: "10.0.0.2",
        dst: "192.0.2.53",
        sport: Some(5353),
        dport: Some(53),
        start_ms: now - 10 * MIN - 1000,
        end_ms: Some(now - 10 * MIN),
        orig_bytes: 40,
        reply_bytes: 80,
        pid: Some(200),
        comm: Some("dig".into()),
        exe: Some("/usr/bin/dig".into()),
        ..Row::default()
    });
    w.add(&Row {
        ct_id: 4,
        proto: 6,
        src: "2001:db8::2",
        dst: "2001:db8::22",
        sport: Some(50000),
        dport: Some(22),
        state: Some("ESTABLISHED"),
        start_ms: now - 3 * HOUR,
        end_ms: None,
        orig_bytes: 5000,
        reply_bytes: 9000,
        pid: Some(300),
        comm: Some("ssh".into()),
        exe: Some("/usr/bin/ssh".into()),
        ..Row::default()
    });
    (w, now)
}

fn history(journal: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowtop"))
        .arg("history")
        .arg("--journal")
        .arg(journal)
        .args(args)
        .env("TZ", "UTC")
        .output()
        .expect("flowtop runs")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "status {}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).expect("UTF-8 output")
}

fn json_lines(o: &Output) -> Vec<Value> {
    ok(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn ids(journal: &Path, args: &[&str]) -> Vec<u64> {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    json_lines(&history(journal, &a))
        .iter()
        .map(|v| v["id"].as_u64().unwrap())
        .collect()
}

/// The file's bytes and modification time, to show a reader left it alone.
fn fingerprint(path: &Path) -> (Vec<u8>, SystemTime) {
    (
        std::fs::read(path).unwrap(),
        std::fs::metadata(path).unwrap().modified().unwrap(),
    )
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn every_filter_selects_its_flows() {
    let dir = Scratch::new();
    let j = dir.path("journal.sqlite");
    let (w, now) = sample(&j, false);
    drop(w);
    // All flows, every protocol, ended ones by end time then the open one.
    assert_eq!(ids(&j, &[]), [1, 2, 3, 4]);
    assert_eq!(ids(&j, &["--exe", "/usr/bin/curl"]), [1, 2]);
    assert_eq!(ids(&j, &["--exe", "curl"]), [] as [u64; 0]);
    assert_eq!(ids(&j, &["--comm", "dig"]), [3]);
    assert_eq!(ids(&j, &["--pid", "101"]), [2]);
    assert_eq!(ids(&j, &["--dst", "93.184.215.14"]), [1, 2]);
    assert_eq!(ids(&j, &["--dst", "2001:db8::22"]), [4]);
    assert_eq!(ids(&j, &["--dst", "Example.COM."]), [1]);
    assert_eq!(ids(&j, &["--dst", "edge.example.net"]), [2]);
    assert_eq!(ids(&j, &["--dst", "example"]), [] as [u64; 0]);
    assert_eq!(ids(&j, &["--port", "53"]), [3]);
    assert_eq!(
        ids(&j, &["--exe", "/usr/bin/curl", "--port", "53"]),
        [] as [u64; 0]
    );
    // The selection flags apply only when given.
    assert_eq!(ids(&j, &["-U"]), [3]);
    assert_eq!(ids(&j, &["-T"]), [1, 2, 4]);
    assert_eq!(ids(&j, &["-6"]), [4]);
    assert_eq!(ids(&j, &["-4", "-T"]), [1, 2]);
    // --since / --until on the end time, as durations ago...
    assert_eq!(ids(&j, &["--since", "1h"]), [2, 3, 4]);
    assert_eq!(ids(&j, &["--since", "15m"]), [3, 4]);
    assert_eq!(ids(&j, &["--until", "20m"]), [1, 2]);
    assert_eq!(ids(&j, &["--since", "1h", "--until", "20m"]), [2]);
    assert_eq!(ids(&j, &["--since", "1w", "--until", "3d"]), [] as [u64; 0]);
    // ... and as RFC 3339 times, in UTC or with an offset.
    let rfc = |ms: i64, offset_h: i64| {
        let secs = ms / 1000 + offset_h * 3600;
        let days = secs.div_euclid(86_400);
        let tod = secs.rem_euclid(86_400);
        // Civil date from days since the epoch.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let zone = if offset_h == 0 {
            "Z".to_owned()
        } else {
            format!("{:+03}:00", offset_h)
        };
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{zone}",
            tod / 3600,
            tod % 3600 / 60,
            tod % 60
        )
    };
    let since = rfc(now - HOUR, 0);
    assert_eq!(ids(&j, &["--since", &since]), [2, 3, 4], "{since}");
    let until = rfc(now - 20 * MIN, 2);
    assert_eq!(ids(&j, &["--until", &until]), [1, 2], "{until}");
    let until = rfc(now - 20 * MIN, -5);
    assert_eq!(ids(&j, &["--since", &since, "--until", &until]), [2], "{until}");
}

#[test]
fn bad_filters_are_usage_errors_with_an_example() {
    let dir = Scratch::new();
    let j = dir.path("journal.sqlite");
    drop(sample(&j, false));
    for bad in ["yesterday", "10", "2026-12-07", "5 m"] {
        let o = history(&j, &["--since", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains("--since") && e.contains("2026-12-07T10:00:00Z") && e.contains("90s"),
            "{e}"
        );
        assert_eq!(e.trim().lines().count(), 1, "{e}");
    }
    let o = history(&j, &["--until", "soon"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(history(&j, &["--port", "70000"]).status.code(), Some(2));
}

#[test]
fn json_lines_carry_the_flow_fields_and_start_and_end() {
    let dir = Scratch::new();
    let j = dir.path("journal.sqlite");
    let (w, now) = sample(&j, false);
    drop(w);
    let lines = json_lines(&history(&j, &["--json", "--comm", "curl"]));
    assert_eq!(lines.len(), 2);
    let l = &lines[0];
    assert_eq!(l["event"], "history");
    assert_eq!(l["proto"], "tcp");
    assert_eq!(l["family"], "ipv4");
    assert_eq!(l["src"], "10.0.0.2");
    assert_eq!(l["dst"], "93.184.215.14");
    assert_eq!(l["sport"], 40000);
    assert_eq!(l["dport"], 443);
    // No reply tuple stored: the mirror of the original.
    assert_eq!(l["reply_src"], "93.184.215.14");
    assert_eq!(l["reply_dport"], 40000);
    assert_eq!(l["state"], "TIME_WAIT");
    assert_eq!(l["direction"], "out");
    assert_eq!(
        (l["orig_bytes"].as_u64(), l["reply_bytes"].as_u64()),
        (Some(100), Some(1000))
    );
    assert_eq!(
        (l["orig_packets"].as_u64(), l["reply_packets"].as_u64()),
        (Some(3), Some(4))
    );
    assert_eq!(l["pid"], 100);
    assert_eq!(l["comm"], "curl");
    assert_eq!(l["exe"], "/usr/bin/curl");
    assert_eq!(l["cmdline"], "curl https://example.com/");
    assert_eq!(l["uid"], 1000);
    assert_eq!(l["attribution"], "ebpf");
    assert_eq!(l["dst_name"], "example.com");
    assert_eq!(l["dst_name_source"], "sni");
    assert_eq!(l["dst_country"], "US");
    assert_eq!(l["duration_s"], 5);
    assert_eq!(lines[1]["dst_name"], Value::Null);
    assert_eq!(lines[1]["dst_host"], "edge.example.net");
    // start and end as --json's start: RFC 3339, UTC, seconds.
    let end = l["end"].as_str().unwrap();
    let parsed = humantime::parse_rfc3339(end).unwrap();
    let end_ms = parsed.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((end_ms - (now - 2 * HOUR)).abs() < 1000, "{end}");
    assert!(end.ends_with('Z') && end.len() == 20, "{end}");
    assert!(l["start"].as_str().unwrap() < end);
    // The open flow: no end.
    let open = json_lines(&history(&j, &["--json", "--comm", "ssh"]));
    assert_eq!(open[0]["end"], Value::Null);
    assert_eq!(open[0]["duration_s"], Value::Null);
    assert_eq!(open[0]["family"], "ipv6");
}

/// Names chosen by whoever runs a program or a DNS server: JSON stays
/// valid and exact, the table shows them escaped.
#[test]
fn hostile_names_stay_valid_json_and_escaped_text() {
    let dir = Scratch::new();
    let j = dir.path("journal.sqlite");
    let w = Writer::create(&j, true);
    let long = format!("{}.example", "a".repeat(245));
    assert_eq!(long.len(), 253);
    let evil_comm = "ev\x1b[2Jil\"\\\u{202e}";
    let evil_name = "x\x1b]0;pwned\x07\n\"'.example.com";
    let now = now_ms();
    for (i, name) in [evil_name, &long].iter().enumerate() {
        w.add(&Row {
            ct_id: i as i64 + 1,
            proto: 6,
            src: "10.0.0.2",
            dst: "203.0.113.9",
            dport: Some(443),
            start_ms: now - 2000,
            end_ms: Some(now - 1000 + i as i64),
            pid: Some(7),
            comm: Some(evil_comm.into()),
            exe: Some(format!("/tmp/\x1b[31m{i}")),
            cmdline: Some("a\0b\x1b".into()),
            dst_name: Some((*name).to_owned()),
            country: Some("\x1b[5m"),
            ..Row::default()
        });
    }
    // Text that is not UTF-8 at all, straight in the table.
    w.db.execute_batch("UPDATE process SET parent_comm = CAST(x'ff1bfe' AS TEXT)")
        .unwrap();
    let lines = json_lines(&history(&j, &["--json"]));
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["comm"], evil_comm);
    assert_eq!(lines[0]["dst_name"], evil_name);
    assert_eq!(lines[1]["dst_name"], long.as_str());
    assert_eq!(lines[0]["cmdline"], "a\0b\x1b");
    assert_eq!(lines[0]["parent_comm"], "\u{fffd}\x1b\u{fffd}");
    let sum = json_lines(&history(&j, &["--json", "--summary"]));
    assert_eq!(sum[0]["comm"], evil_comm);
    for args in [&[][..], &["--summary"][..]] {
        let text = ok(&history(&j, args));
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text}");
        assert!(!text.contains('\u{202e}'), "{text}");
        assert!(text.contains("ev\\x1b[2Jil"), "{text}");
    }
    let text = ok(&history(&j, &[]));
    assert!(text.contains("x\\x1b]0;pwned\\x07\\x0a"), "{text}");
    assert!(text.contains(&long), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");
}

#[test]
fn the_table_shows_one_line_per_flow() {
    let dir = Scratch::new();
    let j = dir.path("journal.sqlite");
    drop(sample(&j, false));
    let text = ok(&history(&j, &[]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    for col in [
        "END", "DURATION", "PROTO", "PROCESS", "PID", "PORT", "BYTES", "STATE", "COUNTRY", "ADDRESS",
    ] {
        assert!(lines[0].contains(col), "{col}: {}", lines[0]);
    }
    assert!(
        lines[1].contains("curl") && lines[1].contains("example.com"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains(" UTC") && lines[1].contains("100/1000B"),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains("edge.example.net"), "{}", lines[2]);
    assert!(
        lines[3].contains("udp") && lines[3].contains("192.0.2.53"),
        "{}",
        lines[3]
    );
    assert!(
        lines[4].starts_with("open") && lines[4].contains("ssh"),
        "{}",
        lines[4]
    );
    // Nothing matches: no table, a note on stderr, success.
    let o = history(&j, &["--comm", "nobody"]);
    assert_eq!(ok(&o), "");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no recorded flow"));
}

#[test]
fn the_summary_counts_and_sums_per_exe_and_destination() {
    let dir = Scratch::new();
    let j = dir.path("journal.sqlite");
    let (w, now) = sample(&j, false);
    // A third curl flow to the same place, and one to another port.
    let base = Row {
        proto: 6,
        src: "10.0.0.2",
        dst: "93.184.215.14",
        dport: Some(443),
        pid: Some(102),
        comm: Some("curl".into()),
        exe: Some("/usr/bin/curl".into()),
        country: Some("US"),
        ..Row::default()
    };
    w.add(&Row {
        ct_id: 5,
        start_ms: now - 5 * MIN,
        end_ms: Some(now - 4 * MIN),
        orig_bytes: 300,
        reply_bytes: 3000,
        dst_name: Some("www.example.com".into()),
        ..base.clone()
    });
    w.add(&Row {
        ct_id: 6,
        dport: Some(80),
        start_ms: now - 5 * MIN,
        end_ms: Some(now - 4 * MIN),
        orig_bytes: 1,
        reply_bytes: 2,
        ..base.clone()
    });
    drop(w);
    let rows = json_lines(&history(&j, &["--json", "--summary"]));
    assert_eq!(rows.len(), 4, "{rows:?}");
    for r in &rows {
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "comm",
                "country",
                "dport",
                "dst",
                "dst_name",
                "exe",
                "first",
                "flows",
                "last",
                "orig_bytes",
                "proto",
                "reply_bytes"
            ]
        );
    }
    // Sorted by exe, most flows first.
    let curl = &rows[0];
    assert_eq!(curl["exe"], "/usr/bin/curl");
    assert_eq!(curl["comm"], "curl");
    assert_eq!(curl["dst"], "93.184.215.14");
    assert_eq!(curl["dport"], 443);
    assert_eq!(curl["proto"], "tcp");
    assert_eq!(curl["flows"], 3);
    assert_eq!(curl["orig_bytes"], 600);
    assert_eq!(curl["reply_bytes"], 6000);
    assert_eq!(curl["dst_name"], "www.example.com");
    assert_eq!(curl["country"], "US");
    let ms = |v: &Value| {
        humantime::parse_rfc3339(v.as_str().unwrap())
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    assert!((ms(&curl["first"]) - (now - 2 * HOUR - 5000)).abs() < 1000);
    assert!((ms(&curl["last"]) - (now - 4 * MIN)).abs() < 1000);
    assert_eq!(
        (rows[1]["exe"].as_str(), rows[1]["dport"].as_u64()),
        (Some("/usr/bin/curl"), Some(80))
    );
    assert_eq!(
        (rows[2]["exe"].as_str(), rows[2]["proto"].as_str()),
        (Some("/usr/bin/dig"), Some("udp"))
    );
    assert_eq!(rows[3]["last"], Value::Null);
    // Filters narrow the summary: the curl flows of the last hour.
    let rows = json_lines(&history(
        &j,
        &["--json", "--summary", "--exe", "/usr/bin/curl", "--since", "1h"],
    ));
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["flows"].as_u64(), rows[0]["orig_bytes"].as_u64()),
        (Some(2), Some(500))
    );
    // The table: a header and one line per row.
    let text = ok(&history(&j, &["--summary"]));
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.lines().next().unwrap().starts_with("EXE"), "{text}");
    assert!(
        text.contains("/usr/bin/curl") && text.contains("600/5.9KB"),
        "{text}"
    );
}

/// A journal in WAL mode with its writer still open (rows only in the
/// -wal file), then closed: the reader sees every row and changes nothing.
#[test]
fn a_wal_journal_is_read_live_and_after_its_writer_closed() {
    let dir = Scratch::new();
    let j = dir.path("journal.sqlite");
    let (w, _) = sample(&j, true);
    w.db.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    assert!(dir.path("journal.sqlite-wal").exists());
    let before = fingerprint(&j);
    assert_eq!(ids(&j, &[]), [1, 2, 3, 4]);
    assert_eq!(fingerprint(&j), before, "the main file is untouched");
    // The writer goes on while nobody reads.
    w.add(&Row {
        ct_id: 9,
        proto: 6,
        src: "10.0.0.2",
        dst: "192.0.2.9",
        start_ms: now_ms() - 10,
        end_ms: Some(now_ms()),
        ..Row::default()
    });
    assert_eq!(ids(&j, &[]), [1, 2, 3, 9, 4]);
    drop(w);
    // Closed: checkpointed, no -wal file; the header still says WAL.
    let files = listing(&dir.0);
    assert_eq!(files, ["journal.sqlite"]);
    let before = fingerprint(&j);
    assert_eq!(ids(&j, &[]), [1, 2, 3, 9, 4]);
    assert_eq!(ok(&history(&j, &["--summary"])).lines().count(), 5);
    assert_eq!(fingerprint(&j), before);
    // The reader created no -wal or -shm file beside it.
    assert_eq!(listing(&dir.0), files);
}

/// `history` without write access to anything: as root, as user nobody
/// (setpriv); as anyone else, as oneself.
fn history_unprivileged(journal: &Path, args: &[&str]) -> Output {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return history(journal, args);
    }
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_flowtop"))
        .arg("history")
        .arg("--journal")
        .arg(journal)
        .args(args)
        .output()
        .expect("setpriv runs")
}

/// A WAL journal in a read-only directory, as a user who may not write
/// anything there: closed (no -wal file), then with its writer open and
/// rows only in the -wal file.
#[test]
fn a_journal_is_read_without_write_access() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Scratch::new();
    let sub = dir.path("ro");
    std::fs::create_dir(&sub).unwrap();
    let j = sub.join("journal.sqlite");
    let ids_of =
        |o: Output| -> Vec<u64> { json_lines(&o).iter().map(|v| v["id"].as_u64().unwrap()).collect() };
    drop(sample(&j, true));
    std::fs::set_permissions(&j, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o555)).unwrap();
    let before = fingerprint(&j);
    assert_eq!(ids_of(history_unprivileged(&j, &["--json"])), [1, 2, 3, 4]);
    assert_eq!(fingerprint(&j), before);
    assert_eq!(listing(&sub), ["journal.sqlite"]);
    // A writer at work (as root: the files are its own, readable by all).
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&j, std::fs::Permissions::from_mode(0o644)).unwrap();
    let w = Writer {
        db: Connection::open(&j).unwrap(),
    };
    w.db.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    w.add(&Row {
        ct_id: 9,
        proto: 6,
        src: "10.0.0.2",
        dst: "192.0.2.9",
        start_ms: now_ms() - 10,
        end_ms: Some(now_ms()),
        ..Row::default()
    });
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o555)).unwrap();
    let before = fingerprint(&j);
    let o = history_unprivileged(&j, &["--json"]);
    assert_eq!(ids_of(o), [1, 2, 3, 9, 4]);
    assert_eq!(fingerprint(&j), before);
    drop(w);
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Files that are not journals this flowtop reads: a one-line message, a
/// non-zero exit, and the file exactly as it was.
#[test]
fn bad_files_are_refused_and_left_alone() {
    let dir = Scratch::new();
    let refuse = |path: &Path, expect: &str| {
        let before = path.is_file().then(|| fingerprint(path));
        for args in [&[][..], &["--json"][..], &["--summary"][..]] {
            let o = history(path, args);
            assert_eq!(o.status.code(), Some(1), "{}", path.display());
            assert!(o.stdout.is_empty());
            let e = String::from_utf8_lossy(&o.stderr);
            assert_eq!(e.trim_end().lines().count(), 1, "{e}");
            assert!(e.starts_with("flowtop: ") && e.contains(expect), "{expect}: {e}");
        }
        if let Some(before) = before {
            assert_eq!(fingerprint(path), before, "{}", path.display());
        }
        assert!(!dir
            .path(&format!("{}-wal", path.file_name().unwrap().to_string_lossy()))
            .exists());
    };
    refuse(&dir.path("missing.sqlite"), "no journal at");
    assert!(!dir.path("missing.sqlite").exists(), "not created");

    let garbage = dir.path("garbage.sqlite");
    std::fs::write(
        &garbage,
        b"this is not a database at all, just some text\n".repeat(100),
    )
    .unwrap();
    refuse(&garbage, "not an SQLite database");

    let empty = dir.path("empty.sqlite");
    std::fs::write(&empty, b"").unwrap();
    refuse(&empty, "empty");

    // A real journal, big enough for many pages, cut in half.
    let full = dir.path("full.sqlite");
    let (w, now) = sample(&full, false);
    w.db.execute_batch("BEGIN").unwrap();
    for i in 0..3000 {
        w.add(&Row {
            ct_id: 100 + i,
            proto: 6,
            src: "10.0.0.2",
            dst: "192.0.2.1",
            start_ms: now - 1000,
            end_ms: Some(now),
            pid: Some(i),
            comm: Some(format!("proc{i}")),
            ..Row::default()
        });
    }
    w.db.execute_batch("COMMIT").unwrap();
    drop(w);
    let bytes = std::fs::read(&full).unwrap();
    assert!(bytes.len() > 100_000);
    let truncated = dir.path("truncated.sqlite");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    refuse(&truncated, "truncated");

    let foreign = dir.path("foreign.sqlite");
    let db = Connection::open(&foreign).unwrap();
    db.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1); PRAGMA application_id = 1234;")
        .unwrap();
    drop(db);
    refuse(&foreign, "another application");

    let no_id = dir.path("no-id.sqlite");
    let db = Connection::open(&no_id).unwrap();
    db.execute_batch("CREATE TABLE flow (x)").unwrap();
    drop(db);
    refuse(&no_id, "another application");

    let future = dir.path("future.sqlite");
    let (w, _) = sample(&future, true);
    w.db.pragma_update(None, "user_version", schema::VERSION + 1)
        .unwrap();
    drop(w);
    refuse(&future, "newer than this flowtop reads");

    refuse(&dir.0, "not a regular file");
}
