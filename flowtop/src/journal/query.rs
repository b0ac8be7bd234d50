//! The reading side of the journal (`flowtop history`, later the History
//! tab): opens a journal without ever modifying it, and streams the flows
//! a [`Filter`] selects, or their [`Summary`] per executable and
//! destination.
//!
//! A reader never writes: the file is opened with `SQLITE_OPEN_READONLY`
//! and `PRAGMA query_only`. A journal in WAL mode whose `-wal` file is
//! present (a recorder is running, or died) is read through SQLite's
//! shared memory like any reader; one without a `-wal` file holds all its
//! rows in the main file and is opened `immutable`, so that the reader
//! creates no `-wal` or `-shm` file beside it either (which, made by root,
//! could stand in the recorder's way).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rusqlite::{types::Value, Connection, OpenFlags, Row as SqlRow};

use super::schema;

#[path = "when.rs"]
pub mod when;

/// Why a file cannot be read as a journal; each a one-line message.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("no journal at {0} (flowtop record writes one; --journal chooses another file)")]
    Missing(String),
    #[error("cannot read the journal {0}: {1}")]
    Unreadable(String, String),
    #[error("{0} is not a flowtop journal: {1}")]
    NotAJournal(String, String),
    #[error("the journal {0} is truncated: {1} bytes where its header promises {2}")]
    Truncated(String, u64, u64),
    #[error("the journal {0} is damaged: {1}")]
    Corrupt(String, String),
    #[error(
        "the journal {0} has schema version {1}, newer than this flowtop reads ({2}): use a newer flowtop"
    )]
    Future(String, i32, i32),
}

/// The flows to read. Every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The owner's executable, exact path.
    pub exe: Option<String>,
    /// The owner's name (comm), exact.
    pub comm: Option<String>,
    pub pid: Option<u32>,
    pub dst: Option<Dst>,
    /// Original destination port.
    pub port: Option<u16>,
    /// Ended at or after (Unix ms); flows still open (no end) match.
    pub since_ms: Option<i64>,
    /// Ended before (Unix ms); flows still open never match.
    pub until_ms: Option<i64>,
    /// Only these IP protocols (None: all).
    pub protos: Option<Vec<u8>>,
    /// Only this family: 4 or 6 (None: both).
    pub family: Option<u8>,
}

/// `--dst`: an address, or a name (asked-for or reverse DNS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dst {
    Addr(IpAddr),
    /// Compared case-insensitively (ASCII), without a trailing dot.
    Name(String),
}

impl Dst {
    /// An address when `s` parses as one (v4-mapped IPv6 as IPv4, as the
    /// journal stores it), else a name.
    pub fn parse(s: &str) -> Dst {
        let t = s.trim();
        let bare = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(t);
        match bare.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Dst::Addr(IpAddr::V4(v4)),
                None => Dst::Addr(IpAddr::V6(v6)),
            },
            Ok(a) => Dst::Addr(a),
            Err(_) => Dst::Name(t.trim_end_matches('.').to_owned()),
        }
    }
}

/// One recorded flow, as the journal holds it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flow {
    pub ct_id: u32,
    pub proto: u8,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// The reply tuple; the mirror of the original when the journal has
    /// none (no NAT).
    pub reply_src: Option<IpAddr>,
    pub reply_dst: Option<IpAddr>,
    pub reply_sport: Option<u16>,
    pub reply_dport: Option<u16>,
    pub state: Option<String>,
    pub direction: Option<String>,
    pub start_ms: i64,
    /// None: a checkpoint of a flow still open (or whose recorder died).
    pub end_ms: Option<i64>,
    pub orig_bytes: Option<u64>,
    pub orig_packets: Option<u64>,
    pub reply_bytes: Option<u64>,
    pub reply_packets: Option<u64>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub exe_sha256: Option<String>,
    pub cmdline: Option<String>,
    pub uid: Option<u32>,
    pub ppid: Option<u32>,
    pub parent_comm: Option<String>,
    pub attribution: Option<String>,
    pub peer_pid: Option<u32>,
    pub peer_comm: Option<String>,
    pub peer_exe: Option<String>,
    pub dst_name: Option<String>,
    pub dst_name_source: Option<String>,
    pub dst_host: Option<String>,
    pub src_country: Option<String>,
    pub dst_country: Option<String>,
    pub container: Option<String>,
    pub unit: Option<String>,
}

/// One row of `--summary`: the flows of one executable to one
/// destination, port and protocol.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    // Shared text (`Arc<str>`): groups repeat the same executables, names
    // and countries, and a summary can have hundreds of thousands of rows.
    pub exe: Option<Arc<str>>,
    /// The latest flow's process name.
    pub comm: Option<Arc<str>>,
    pub dst: Option<IpAddr>,
    /// The latest flow's asked-for name, else its reverse-DNS name.
    pub dst_name: Option<Arc<str>>,
    pub dport: Option<u16>,
    pub proto: u8,
    pub flows: u64,
    pub orig_bytes: u64,
    pub reply_bytes: u64,
    /// Earliest start.
    pub first_ms: i64,
    /// Latest end (None when every flow is still open).
    pub last_ms: Option<i64>,
    /// The latest flow's destination country.
    pub country: Option<Arc<str>>,
}

/// An open journal, read-only.
pub struct Journal {
    db: Connection,
    path: String,
    /// The schema version (`flow_day` exists from 2 on).
    version: i32,
}

/// The path for messages: escaped for the terminal.
fn shown(path: &Path) -> String {
    crate::output::safe::terminal_safe(&path.display().to_string()).into_owned()
}

/// `file:` URI of `path` for SQLite, with the characters URIs reserve
/// escaped.
fn uri(path: &Path, query: &str) -> Result<String, std::io::Error> {
    let abs = std::path::absolute(path)?;
    let mut out = String::from("file:");
    for b in abs.as_os_str().as_encoded_bytes() {
        match b {
            b'/' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(*b)),
            b if b.is_ascii_alphanumeric() => out.push(char::from(*b)),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out.push('?');
    out.push_str(query);
    Ok(out)
}

/// What the first 100 bytes of an SQLite file say.
fn check_header(path: &Path, name: &str) -> Result<(), OpenError> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => OpenError::Missing(name.to_owned()),
        _ => OpenError::Unreadable(name.to_owned(), e.to_string()),
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(OpenError::NotAJournal(
            name.to_owned(),
            "not a regular file".into(),
        ));
    }
    if meta.len() == 0 {
        return Err(OpenError::NotAJournal(
            name.to_owned(),
            "the file is empty".into(),
        ));
    }
    let mut head = [0u8; 100];
    let mut f = std::fs::File::open(path).map_err(unreadable)?;
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]).map_err(unreadable)? {
            0 => break,
            n => got += n,
        }
    }
    if got < head.len() || &head[..16] != b"SQLite format 3\0" {
        return Err(OpenError::NotAJournal(
            name.to_owned(),
            "not an SQLite database".into(),
        ));
    }
    let be32 = |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let page = match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65_536,
        p => u64::from(p),
    };
    // The page count is valid when the change counter matches the
    // "version valid for" number (SQLite 3.7.0 and later).
    let pages = u64::from(be32(28));
    if be32(24) == be32(92) && pages > 0 && meta.len() < pages * page {
        return Err(OpenError::Truncated(name.to_owned(), meta.len(), pages * page));
    }
    Ok(())
}

fn sqlite_error(name: &str, e: rusqlite::Error) -> OpenError {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::NotADatabase) => OpenError::NotAJournal(name.to_owned(), "not an SQLite database".into()),
        Some(C::DatabaseCorrupt) => OpenError::Corrupt(name.to_owned(), e.to_string()),
        _ => OpenError::Unreadable(name.to_owned(), e.to_string()),
    }
}

impl Journal {
    /// Opens `path` read-only and checks it is a journal this flowtop reads.
    pub fn open(path: &Path) -> Result<Journal, OpenError> {
        let name = shown(path);
        check_header(path, &name)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let has_wal = Path::new(&wal).exists();
        // Without a -wal file every row is in the main file: immutable
        // reads it without the shared-memory file a WAL reader would create.
        let query = if has_wal { "mode=ro" } else { "mode=ro&immutable=1" };
        let uri = uri(path, query).map_err(|e| OpenError::Unreadable(name.clone(), e.to_string()))?;
        let flags =
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let db = Connection::open_with_flags(&uri, flags).map_err(|e| sqlite_error(&name, e))?;
        let pragmas = (|| -> rusqlite::Result<(i32, i32)> {
            db.execute_batch(
                "PRAGMA query_only = 1; PRAGMA mmap_size = 1073741824; PRAGMA cache_size = -16384",
            )?;
            let app: i32 = db.query_row("PRAGMA application_id", [], |r| r.get(0))?;
            let version: i32 = db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            Ok((app, version))
        })();
        let (app, version) = pragmas.map_err(|e| sqlite_error(&name, e))?;
        if app != schema::APPLICATION_ID {
            return Err(OpenError::NotAJournal(
                name,
                format!("an SQLite database of another application (application_id {app:#x})"),
            ));
        }
        if version > schema::VERSION {
            return Err(OpenError::Future(name, version, schema::VERSION));
        }
        if version < 1 {
            return Err(OpenError::NotAJournal(name, format!("schema version {version}")));
        }
        Ok(Journal {
            db,
            path: name,
            version,
        })
    }

    /// The path, as shown in messages.
    pub fn name(&self) -> &str {
        &self.path
    }

    /// Calls `each` with every flow `filter` selects: ended flows by end
    /// time (oldest first), then flows still open by start time. Rows are
    /// streamed, never collected.
    pub fn flows(
        &self,
        filter: &Filter,
        mut each: impl FnMut(&Flow) -> std::io::Result<()>,
    ) -> anyhow::Result<()> {
        let (conds, params) = conditions(filter);
        let mut ended = vec!["f.end_ms IS NOT NULL".to_owned()];
        ended.extend(filter.ended_bounds());
        let mut passes = vec![(ended, "f.end_ms, f.id")];
        // Flows still open end after any --since, never before an --until.
        if filter.until_ms.is_none() {
            passes.push((vec!["f.end_ms IS NULL".to_owned()], "f.start_ms, f.id"));
        }
        for (bounds, order) in passes {
            let mut all = conds.clone();
            all.extend(bounds);
            let sql = format!("{FLOW_SELECT} WHERE {} ORDER BY {order}", all.join(" AND "));
            let mut stmt = self.db.prepare(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
            while let Some(r) = rows.next()? {
                each(&flow_of(r)?)?;
            }
        }
        Ok(())
    }

    /// The `limit` flows that ended last, newest first (the screen's
    /// History tab): read through the `flow_end` index, so the cost is the
    /// rows returned, not the journal's size.
    pub fn recent(&self, limit: usize) -> anyhow::Result<Vec<Flow>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "{FLOW_SELECT} WHERE f.end_ms IS NOT NULL ORDER BY f.end_ms DESC, f.id DESC LIMIT {limit}"
        );
        let mut stmt = self.db.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(flow_of(r)?);
        }
        Ok(out)
    }

    /// One [`Summary`] per (exe, destination, port, protocol) of the flows
    /// `filter` selects, sorted by exe (unattributed last), most flows first.
    ///
    /// Whole days come from the rollup `flow_day` (a few hundred thousand
    /// rows for ten million flows), the rest from the rows themselves: the
    /// partial days at the edges of `--since`/`--until`, the flows still
    /// open, and everything when a filter is one the rollup cannot answer
    /// (`--comm`, `--pid`, `--dst NAME`: the rollup keeps one process and
    /// one name per group and day) or the journal predates it.
    pub fn summary(&self, filter: &Filter) -> anyhow::Result<Vec<Summary>> {
        self.summary_by(filter, self.rollup_answers(filter))
    }

    /// Whether `flow_day` can answer `filter`'s groups.
    fn rollup_answers(&self, filter: &Filter) -> bool {
        self.version >= 2
            && filter.comm.is_none()
            && filter.pid.is_none()
            && !matches!(filter.dst, Some(Dst::Name(_)))
    }

    /// [`Self::summary`], with (`rollup`) or without the per-day rollup.
    pub(super) fn summary_by(&self, filter: &Filter, rollup: bool) -> anyhow::Result<Vec<Summary>> {
        // Sized for a large summary up front: growing it moved every entry.
        let mut acc: Groups = HashMap::with_capacity_and_hasher(1 << 16, Default::default());
        let (since, until) = (filter.since_ms, filter.until_ms);
        // The whole days inside the bounds: [first_day, end_day).
        let first_day = since.map_or(i64::MIN, |s| {
            s.div_euclid(schema::DAY_MS) + i64::from(s.rem_euclid(schema::DAY_MS) != 0)
        });
        let end_day = until.map_or(i64::MAX, |u| u.div_euclid(schema::DAY_MS));
        if rollup && first_day < end_day {
            let mut days = Vec::new();
            if since.is_some() {
                days.push(format!("f.day >= {first_day}"));
            }
            if until.is_some() {
                days.push(format!("f.day < {end_day}"));
            }
            self.add_days(filter, &days, &mut acc)?;
            // The partial days at the edges, from the rows.
            if let Some(s) = since {
                self.add_rows(
                    filter,
                    &[
                        format!("f.end_ms >= {s}"),
                        format!("f.end_ms < {}", first_day * schema::DAY_MS),
                    ],
                    &mut acc,
                )?;
            }
            if let Some(u) = until {
                let lower = match since {
                    Some(s) => s.max(end_day * schema::DAY_MS),
                    None => end_day * schema::DAY_MS,
                };
                self.add_rows(
                    filter,
                    &[format!("f.end_ms >= {lower}"), format!("f.end_ms < {u}")],
                    &mut acc,
                )?;
            }
            // Flows still open end after any --since, never before an --until.
            if until.is_none() {
                self.add_open_rows(filter, &mut acc)?;
            }
        } else {
            let mut bounds = Vec::new();
            if let Some(s) = since {
                bounds.push(format!("(f.end_ms >= {s} OR f.end_ms IS NULL)"));
            }
            if let Some(u) = until {
                bounds.push(format!("f.end_ms < {u}"));
            }
            self.add_rows(filter, &bounds, &mut acc)?;
        }
        self.name_groups(acc)
    }

    /// Adds the flows still open (checkpoint rows) `filter` selects to
    /// `acc`, read through their partial index `flow_live`: with `--exe`
    /// SQLite would otherwise walk all of that executable's rows.
    fn add_open_rows(&self, filter: &Filter, acc: &mut Groups) -> anyhow::Result<()> {
        self.add_rows_from(
            "flow f INDEXED BY flow_live",
            filter,
            &["f.end_ms IS NULL".to_owned()],
            acc,
        )
    }

    /// Adds the flow rows `filter` and `bounds` select to `acc`.
    fn add_rows(&self, filter: &Filter, bounds: &[String], acc: &mut Groups) -> anyhow::Result<()> {
        self.add_rows_from("flow f", filter, bounds, acc)
    }

    fn add_rows_from(
        &self,
        from: &str,
        filter: &Filter,
        bounds: &[String],
        acc: &mut Groups,
    ) -> anyhow::Result<()> {
        let (mut conds, params) = conditions(filter);
        conds.extend(bounds.iter().cloned());
        // Aggregated here rather than by SQLite's GROUP BY: without a
        // covering index, GROUP BY walks flow_exe and fetches every row by
        // id (about 2 s per million rows), where this reads the table in
        // order (about 0.3 s per million); with a filter, SQLite still
        // picks the index that narrows the rows.
        let sql = format!(
            "SELECT f.exe, f.dst, f.dport, f.proto, f.orig_bytes, f.reply_bytes, f.start_ms, f.end_ms, \
             f.id, f.process, f.dst_name, f.dst_host, f.dst_country FROM {from} {} {}",
            family_join(filter),
            where_clause(&conds)
        );
        let mut stmt = self.db.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        while let Some(r) = rows.next()? {
            let key: Key = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            let (orig, reply): (Option<i64>, Option<i64>) = (r.get(4)?, r.get(5)?);
            let part = Acc {
                flows: 1,
                orig: non_negative(orig),
                reply: non_negative(reply),
                first: r.get(6)?,
                last: r.get(7)?,
                last_id: r.get(8)?,
                latest: Latest::default(),
            };
            merge(acc, key, part, || latest_of(r, 9))?;
        }
        Ok(())
    }

    /// Adds the rollup rows of `filter` and the day bounds `days` to `acc`.
    fn add_days(&self, filter: &Filter, days: &[String], acc: &mut Groups) -> anyhow::Result<()> {
        let (mut conds, params) = conditions(filter);
        conds.extend(days.iter().cloned());
        let sql = format!(
            "SELECT f.exe, f.dst, f.dport, f.proto, f.orig_bytes, f.reply_bytes, f.first_ms, f.last_ms, \
             f.last_flow, f.process, f.dst_name, f.dst_host, f.dst_country, f.flows FROM flow_day f {} {}",
            family_join(filter),
            where_clause(&conds)
        );
        let mut stmt = self.db.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        while let Some(r) = rows.next()? {
            // The rollup's stand-ins for NULL (see schema::V1_TO_V2).
            let (exe, dport): (i64, i64) = (r.get(0)?, r.get(2)?);
            let key: Key = (
                (exe != 0).then_some(exe),
                r.get(1)?,
                (dport >= 0).then_some(dport),
                r.get(3)?,
            );
            let part = Acc {
                flows: non_negative(r.get(13)?),
                orig: non_negative(r.get(4)?),
                reply: non_negative(r.get(5)?),
                first: r.get(6)?,
                last: r.get(7)?,
                last_id: r.get(8)?,
                latest: Latest::default(),
            };
            merge(acc, key, part, || latest_of(r, 9))?;
        }
        Ok(())
    }

    /// The groups as [`Summary`] rows, sorted.
    fn name_groups(&self, acc: Groups) -> anyhow::Result<Vec<Summary>> {
        // Ids to text, each looked up once.
        let mut exe_path = self.db.prepare_cached("SELECT path FROM exe WHERE id = ?1")?;
        let mut addr = self.db.prepare_cached("SELECT ip FROM addr WHERE id = ?1")?;
        let mut comm = self.db.prepare_cached("SELECT comm FROM process WHERE id = ?1")?;
        let mut name = self.db.prepare_cached("SELECT name FROM name WHERE id = ?1")?;
        type Cache<T> = HashMap<i64, Option<T>, foldhash::fast::RandomState>;
        let mut exes: Cache<Arc<str>> = Cache::default();
        let mut addrs: Cache<IpAddr> = Cache::default();
        let mut comms: Cache<Arc<str>> = Cache::default();
        let mut names: Cache<Arc<str>> = Cache::default();
        let text_of =
            |cache: &mut Cache<Arc<str>>, stmt: &mut rusqlite::CachedStatement<'_>, id: Option<i64>| {
                let id = id?;
                cache
                    .entry(id)
                    .or_insert_with(|| stmt.query_row([id], |r| text(r, 0)).ok().flatten().map(Arc::from))
                    .clone()
            };
        let mut countries: HashMap<Box<str>, Arc<str>, foldhash::fast::RandomState> = HashMap::default();
        let mut out = Vec::with_capacity(acc.len());
        for ((exe, dst, dport, proto), a) in acc {
            out.push(Summary {
                exe: text_of(&mut exes, &mut exe_path, exe),
                comm: text_of(&mut comms, &mut comm, a.latest.process),
                dst: *addrs.entry(dst).or_insert_with(|| {
                    addr.query_row([dst], |r| r.get::<_, Vec<u8>>(0))
                        .ok()
                        .and_then(|b| ip_of(&b))
                }),
                dst_name: text_of(&mut names, &mut name, a.latest.name)
                    .or_else(|| text_of(&mut names, &mut name, a.latest.host)),
                dport: opt_u16(dport),
                proto: u8::try_from(proto).unwrap_or(0),
                flows: a.flows,
                orig_bytes: a.orig,
                reply_bytes: a.reply,
                first_ms: a.first,
                last_ms: a.last,
                country: a
                    .latest
                    .country
                    .map(|c| countries.entry(c).or_insert_with_key(|c| Arc::from(&**c)).clone()),
            });
        }
        // Sorted through an index: a row is about 150 bytes, and moving
        // 200 000 of them around in the sort was a fifth of the summary.
        let mut order: Vec<u32> = (0..u32::try_from(out.len()).unwrap_or(u32::MAX)).collect();
        order.sort_unstable_by(|&i, &j| {
            let (a, b) = (&out[i as usize], &out[j as usize]);
            (a.exe.is_none(), &a.exe)
                .cmp(&(b.exe.is_none(), &b.exe))
                .then(b.flows.cmp(&a.flows))
                .then(a.dst.cmp(&b.dst))
                .then(a.dport.cmp(&b.dport))
                .then(a.proto.cmp(&b.proto))
        });
        let mut slots: Vec<Option<Summary>> = out.into_iter().map(Some).collect();
        Ok(order
            .into_iter()
            .filter_map(|i| slots[i as usize].take())
            .collect())
    }
}

/// What `summary` adds up per group.
struct Acc {
    flows: u64,
    orig: u64,
    reply: u64,
    first: i64,
    last: Option<i64>,
    last_id: i64,
    latest: Latest,
}

/// The latest flow of a group: what its summary row names.
#[derive(Default)]
struct Latest {
    process: Option<i64>,
    name: Option<i64>,
    host: Option<i64>,
    country: Option<Box<str>>,
}

/// A summary group: (exe, destination address id, port, protocol).
type Key = (Option<i64>, i64, Option<i64>, i64);
type Groups = HashMap<Key, Acc, foldhash::fast::RandomState>;

/// The owner, names and country at column `at` and the three after it.
fn latest_of(r: &SqlRow<'_>, at: usize) -> rusqlite::Result<Latest> {
    Ok(Latest {
        process: r.get(at)?,
        name: r.get(at + 1)?,
        host: r.get(at + 2)?,
        country: r.get_ref(at + 3)?.as_str_or_null().ok().flatten().map(Box::from),
    })
}

/// Adds `part` (one flow row, or one day of a group) to its group; the
/// group's latest flow (highest row id) names it, read by `latest` only
/// when `part` is the latest so far.
fn merge(
    acc: &mut Groups,
    key: Key,
    part: Acc,
    latest: impl FnOnce() -> rusqlite::Result<Latest>,
) -> rusqlite::Result<()> {
    let a = acc.entry(key).or_insert(Acc {
        flows: 0,
        orig: 0,
        reply: 0,
        first: part.first,
        last: part.last,
        last_id: i64::MIN,
        latest: Latest::default(),
    });
    a.flows += part.flows;
    a.orig = a.orig.saturating_add(part.orig);
    a.reply = a.reply.saturating_add(part.reply);
    a.first = a.first.min(part.first);
    a.last = a.last.max(part.last);
    if part.last_id > a.last_id {
        a.last_id = part.last_id;
        a.latest = latest()?;
    }
    Ok(())
}

/// The join the family filter (`length(da.ip)`) needs.
fn family_join(filter: &Filter) -> &'static str {
    if filter.family.is_some() {
        "JOIN addr da ON da.id = f.dst"
    } else {
        ""
    }
}

fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    }
}

const FLOW_SELECT: &str = "SELECT f.ct_id, f.proto, sa.ip, da.ip, f.sport, f.dport, \
    rsa.ip, rda.ip, f.reply_sport, f.reply_dport, f.state, f.direction, f.start_ms, f.end_ms, \
    f.orig_bytes, f.orig_packets, f.reply_bytes, f.reply_packets, \
    p.pid, p.comm, e.path, e.sha256, p.cmdline, p.uid, p.ppid, p.parent_comm, f.attribution, \
    pp.pid, pp.comm, pe.path, n1.name, f.dst_name_source, n2.name, \
    f.src_country, f.dst_country, f.container, f.unit \
    FROM flow f \
    LEFT JOIN addr sa ON sa.id = f.src \
    LEFT JOIN addr da ON da.id = f.dst \
    LEFT JOIN addr rsa ON rsa.id = f.reply_src \
    LEFT JOIN addr rda ON rda.id = f.reply_dst \
    LEFT JOIN process p ON p.id = f.process \
    LEFT JOIN exe e ON e.id = coalesce(f.exe, p.exe) \
    LEFT JOIN process pp ON pp.id = f.peer_process \
    LEFT JOIN exe pe ON pe.id = pp.exe \
    LEFT JOIN name n1 ON n1.id = f.dst_name \
    LEFT JOIN name n2 ON n2.id = f.dst_host";

/// The WHERE terms of `filter` but the time bounds (each pass and the
/// summary place those themselves), and their parameters.
fn conditions(filter: &Filter) -> (Vec<String>, Vec<Value>) {
    let mut conds = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    let mut param = |v: Value| {
        params.push(v);
        format!("?{}", params.len())
    };
    if let Some(exe) = &filter.exe {
        conds.push(format!(
            "f.exe = (SELECT id FROM exe WHERE path = {})",
            param(Value::Text(exe.clone()))
        ));
    }
    if let Some(comm) = &filter.comm {
        conds.push(format!(
            "f.process IN (SELECT id FROM process WHERE comm = {})",
            param(Value::Text(comm.clone()))
        ));
    }
    if let Some(pid) = filter.pid {
        conds.push(format!(
            "f.process IN (SELECT id FROM process WHERE pid = {})",
            param(Value::Integer(i64::from(pid)))
        ));
    }
    match &filter.dst {
        Some(Dst::Addr(ip)) => {
            let bytes = match ip {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            conds.push(format!(
                "f.dst = (SELECT id FROM addr WHERE ip = {})",
                param(Value::Blob(bytes))
            ));
        }
        Some(Dst::Name(n)) => {
            let exact = param(Value::Text(n.clone()));
            let dotted = param(Value::Text(format!("{n}.")));
            let names = format!(
                "(SELECT id FROM name WHERE name = {exact} COLLATE NOCASE OR name = {dotted} COLLATE NOCASE)"
            );
            conds.push(format!("(f.dst_name IN {names} OR f.dst_host IN {names})"));
        }
        None => {}
    }
    if let Some(port) = filter.port {
        conds.push(format!("f.dport = {port}"));
    }
    if let Some(protos) = &filter.protos {
        let list: Vec<String> = protos.iter().map(u8::to_string).collect();
        conds.push(format!("f.proto IN ({})", list.join(",")));
    }
    match filter.family {
        Some(4) => conds.push("length(da.ip) = 4".into()),
        Some(_) => conds.push("length(da.ip) = 16".into()),
        None => {}
    }
    (conds, params)
}

impl Filter {
    /// The time bounds of the ended flows.
    fn ended_bounds(&self) -> Vec<String> {
        let mut c = Vec::new();
        if let Some(since) = self.since_ms {
            c.push(format!("f.end_ms >= {since}"));
        }
        if let Some(until) = self.until_ms {
            c.push(format!("f.end_ms < {until}"));
        }
        c
    }
}

fn ip_of(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

fn opt_u16(v: Option<i64>) -> Option<u16> {
    v.and_then(|v| u16::try_from(v).ok())
}

fn opt_u32(v: Option<i64>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok())
}

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

fn non_negative(v: Option<i64>) -> u64 {
    opt_u64(v).unwrap_or(0)
}

/// Text as stored; bytes that are not UTF-8 (a BLOB, or invalid text)
/// shown lossily rather than failing the row.
fn text(r: &SqlRow<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    use rusqlite::types::ValueRef;
    Ok(match r.get_ref(i)? {
        ValueRef::Null => None,
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(x) => Some(x.to_string()),
    })
}

fn addr_at(r: &SqlRow<'_>, i: usize) -> rusqlite::Result<Option<IpAddr>> {
    Ok(r.get::<_, Option<Vec<u8>>>(i)?.and_then(|b| ip_of(&b)))
}

fn flow_of(r: &SqlRow<'_>) -> rusqlite::Result<Flow> {
    let src = addr_at(r, 2)?;
    let dst = addr_at(r, 3)?;
    let sport = opt_u16(r.get(4)?);
    let dport = opt_u16(r.get(5)?);
    let reply_src = addr_at(r, 6)?;
    let reply_dst = addr_at(r, 7)?;
    let reply_sport = opt_u16(r.get(8)?);
    let reply_dport = opt_u16(r.get(9)?);
    // All four NULL: the reply mirrors the original (no NAT).
    let mirrored =
        reply_src.is_none() && reply_dst.is_none() && reply_sport.is_none() && reply_dport.is_none();
    Ok(Flow {
        ct_id: u32::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
        proto: u8::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
        src,
        dst,
        sport,
        dport,
        reply_src: if mirrored { dst } else { reply_src },
        reply_dst: if mirrored { src } else { reply_dst },
        reply_sport: if mirrored { dport } else { reply_sport },
        reply_dport: if mirrored { sport } else { reply_dport },
        state: text(r, 10)?,
        direction: text(r, 11)?,
        start_ms: r.get(12)?,
        end_ms: r.get(13)?,
        orig_bytes: opt_u64(r.get(14)?),
        orig_packets: opt_u64(r.get(15)?),
        reply_bytes: opt_u64(r.get(16)?),
        reply_packets: opt_u64(r.get(17)?),
        pid: opt_u32(r.get(18)?),
        comm: text(r, 19)?,
        exe: text(r, 20)?,
        exe_sha256: text(r, 21)?,
        cmdline: text(r, 22)?,
        uid: opt_u32(r.get(23)?),
        ppid: opt_u32(r.get(24)?),
        parent_comm: text(r, 25)?,
        attribution: text(r, 26)?,
        peer_pid: opt_u32(r.get(27)?),
        peer_comm: text(r, 28)?,
        peer_exe: text(r, 29)?,
        dst_name: text(r, 30)?,
        dst_name_source: text(r, 31)?,
        dst_host: text(r, 32)?,
        src_country: text(r, 33)?,
        dst_country: text(r, 34)?,
        container: text(r, 35)?,
        unit: text(r, 36)?,
    })
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
