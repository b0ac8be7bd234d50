//! The journal's writer: opens (or creates) the file, checks that it is a
//! journal of a version it can write, and runs on a thread of its own fed
//! by a bounded channel of [`FlowRecord`]s.
//!
//! Rows are written in batches, one transaction at least every
//! [`WriterOptions::batch_every`] (so a `kill -9` loses at most about that
//! much) or every [`WriterOptions::batch_rows`] rows. Executables, names,
//! addresses and processes are interned: a bounded in-memory cache maps
//! each value to its row id, so a repeated value costs one lookup.
//!
//! Never a stall and never a crash: a full channel drops the record (and
//! counts it) rather than block the engine; an SQLite error (a full disk,
//! a read-only file, an I/O error) is one warning on stderr (then at most
//! one a minute), that batch's rows are counted as lost, and the next
//! batches are tried.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{params, Connection, OpenFlags};

use super::record::{ip_bytes, unix_ms, FlowRecord};
use super::retention::{self, Retention};
use super::schema::{APPLICATION_ID, CREATE_V1, MIGRATIONS, VERSION};
use crate::flow::model::Owner;

/// Why a journal cannot be opened for writing.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: not a flowtop journal ({why}); the file was left as it is")]
    Foreign { path: String, why: String },
    #[error(
        "{path}: the journal has schema version {found}, newer than this flowtop knows ({VERSION}); \
         the file was left as it is (upgrade flowtop, or choose another file with --journal)"
    )]
    Newer { path: String, found: i32 },
    #[error("{path}: {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: {what}: {source}")]
    Sqlite {
        path: String,
        what: &'static str,
        source: rusqlite::Error,
    },
}

/// An opened journal, checked and ready for the writer.
pub struct Opened {
    pub db: Connection,
    /// The file could only be opened read-only (every batch will fail:
    /// the caller warns).
    pub read_only: bool,
}

fn shown(path: &Path) -> String {
    crate::output::safe::terminal_safe(&path.display().to_string()).into_owned()
}

/// Opens the journal at `path` for writing: creates its directory (0750)
/// and the file (0640) when missing, creates the schema in an empty file,
/// runs the migrations of an older version, and refuses (without writing
/// anything) a file that is not a journal or is of a newer version. Sets
/// WAL mode, `synchronous = NORMAL` and a busy timeout.
pub fn open(path: &Path) -> Result<Opened, OpenError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let p = || shown(path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(|source| OpenError::Io {
                    path: p(),
                    what: "creating its directory",
                    source,
                })?;
        }
    }
    if !path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(path)
            .map_err(|source| OpenError::Io {
                path: p(),
                what: "creating the journal",
                source,
            })?;
    }
    let sqlite = |what: &'static str| {
        move |source| OpenError::Sqlite {
            path: p(),
            what,
            source,
        }
    };
    let (db, header) = match connect(path, false) {
        // A WAL journal on a read-only file system opens only when asked
        // for read-only (SQLite cannot make its shared-memory file).
        Err(e) if cannot_open(&e) => connect(path, true),
        other => other,
    }
    .map_err(|e| match e {
        e if not_a_database(&e) => OpenError::Foreign {
            path: p(),
            why: e.to_string(),
        },
        e => OpenError::Sqlite {
            path: p(),
            what: "opening",
            source: e,
        },
    })?;
    let Header {
        app_id,
        version,
        objects,
    } = header;
    let foreign = |why: String| OpenError::Foreign { path: p(), why };
    let read_only = db.is_readonly(rusqlite::MAIN_DB).unwrap_or(false);
    if app_id != APPLICATION_ID {
        if app_id != 0 || version != 0 || objects != 0 {
            return Err(foreign(format!(
                "an SQLite database with application_id {app_id:#x}, not {APPLICATION_ID:#x}"
            )));
        }
        create(&db).map_err(sqlite("creating the schema"))?;
    } else if version > VERSION {
        return Err(OpenError::Newer {
            path: p(),
            found: version,
        });
    } else if version < VERSION {
        migrate(&db, version).map_err(sqlite("migrating to the current schema"))?;
    }
    if !read_only {
        let _: String = db
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sqlite("turning on WAL mode"))?;
        db.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA journal_size_limit = 4194304;")
            .map_err(sqlite("setting the journal's pragmas"))?;
    }
    Ok(Opened { db, read_only })
}

/// What the first page says.
struct Header {
    app_id: i32,
    version: i32,
    /// Tables, indexes... (0: an empty database).
    objects: i64,
}

/// Opens `path` (read-write, else `read_only`) and reads its header.
fn connect(path: &Path, read_only: bool) -> rusqlite::Result<(Connection, Header)> {
    let db = if read_only {
        // `immutable`: without it SQLite wants to create the WAL's
        // shared-memory file, which a read-only file system refuses.
        let mut uri = String::from("file:");
        for c in path.to_string_lossy().chars() {
            match c {
                '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", c as u32)),
                c => uri.push(c),
            }
        }
        uri.push_str("?mode=ro&immutable=1");
        let flags =
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Connection::open_with_flags(uri, flags)?
    } else {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Connection::open_with_flags(path, flags)?
    };
    db.busy_timeout(Duration::from_secs(5))?;
    let header = Header {
        app_id: db.query_row("PRAGMA application_id", [], |r| r.get(0))?,
        version: db.query_row("PRAGMA user_version", [], |r| r.get(0))?,
        objects: db.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?,
    };
    Ok((db, header))
}

fn code_of(e: &rusqlite::Error) -> Option<rusqlite::ErrorCode> {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
        _ => None,
    }
}

fn cannot_open(e: &rusqlite::Error) -> bool {
    code_of(e) == Some(rusqlite::ErrorCode::CannotOpen)
}

/// The file is not an SQLite database (garbage, or damaged beyond its header).
fn not_a_database(e: &rusqlite::Error) -> bool {
    matches!(
        code_of(e),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

/// Schema version [`VERSION`] in an empty database. `auto_vacuum` must be
/// set before the first table: retention then gives pages back to the
/// file system with `incremental_vacuum`.
fn create(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
    let steps = MIGRATIONS.join(";");
    db.execute_batch(&format!(
        "BEGIN; {CREATE_V1}; {steps}; PRAGMA application_id = {APPLICATION_ID}; \
         PRAGMA user_version = {VERSION}; COMMIT;"
    ))
}

/// Runs the steps from `from` to [`VERSION`] in one transaction.
fn migrate(db: &Connection, from: i32) -> rusqlite::Result<()> {
    let mut sql = String::from("BEGIN;");
    for step in MIGRATIONS
        .iter()
        .skip(usize::try_from(from.max(1) - 1).unwrap_or(0))
    {
        sql.push_str(step);
        sql.push(';');
    }
    sql.push_str(&format!("PRAGMA user_version = {VERSION}; COMMIT;"));
    db.execute_batch(&sql)
}

/// How the writer batches and keeps.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Records the channel holds before new ones are dropped.
    pub capacity: usize,
    /// A transaction at least this often while records arrive.
    pub batch_every: Duration,
    /// ... or as soon as this many rows wait.
    pub batch_rows: usize,
    /// Retention (None: keep everything).
    pub retention: Option<Retention>,
    /// How often retention runs (also once at start).
    pub retention_every: Duration,
    /// Entries of each interning cache before it is emptied.
    pub cache_entries: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            capacity: 1 << 16,
            batch_every: Duration::from_secs(1),
            batch_rows: 4096,
            retention: Some(Retention::default()),
            retention_every: Duration::from_secs(300),
            cache_entries: 1 << 16,
        }
    }
}

/// The writer's counters, shared with whoever shows them.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Rows committed.
    pub written: AtomicU64,
    /// Records dropped because the channel was full.
    pub dropped: AtomicU64,
    /// Rows of batches that failed to commit.
    pub lost: AtomicU64,
    /// SQLite errors (batches and retention).
    pub errors: AtomicU64,
    /// Flows removed by retention.
    pub removed: AtomicU64,
}

/// A copy of [`WriterStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub written: u64,
    pub dropped: u64,
    pub lost: u64,
    pub errors: u64,
    pub removed: u64,
}

impl WriterStats {
    pub fn counts(&self) -> Counts {
        Counts {
            written: self.written.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            removed: self.removed.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} flows written, {} dropped (queue full), {} lost to errors ({} errors), {} removed by retention",
            self.written, self.dropped, self.lost, self.errors, self.removed
        )
    }
}

/// The engine's end of the writer.
pub struct Writer {
    tx: Option<SyncSender<FlowRecord>>,
    stats: Arc<WriterStats>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread on an opened journal.
    pub fn spawn(opened: Opened, path: &Path, mut opts: WriterOptions) -> std::io::Result<Writer> {
        if opened.read_only {
            // Nothing to remove from a file that cannot change.
            opts.retention = None;
        }
        let (tx, rx) = mpsc::sync_channel(opts.capacity.max(1));
        let stats = Arc::new(WriterStats::default());
        let mut sink = Sink {
            db: opened.db,
            path: path.to_path_buf(),
            caches: Caches::new(opts.cache_entries),
            stats: stats.clone(),
            warned: [None; 2],
            unreported: 0,
            retention: Phase::Idle,
            deleted_since_clean: false,
            last_clean: Instant::now(),
            opts,
        };
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || sink.run(&rx))?;
        Ok(Writer {
            tx: Some(tx),
            stats,
            thread: Some(thread),
        })
    }

    /// Hands a record over without waiting: when the channel is full the
    /// record is dropped and counted.
    pub fn send(&self, r: FlowRecord) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.stats.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hands a record over, waiting for room (at the end of a run, when
    /// nothing else waits on the engine).
    pub fn send_waiting(&self, r: FlowRecord) {
        if let Some(tx) = &self.tx {
            if tx.send(r).is_err() {
                self.stats.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// Writes what is queued, stops the thread, and returns the counters.
    pub fn finish(mut self) -> Counts {
        self.stop();
        self.stats.counts()
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A map from values to row ids, emptied when it reaches its bound.
struct Cache<K> {
    map: HashMap<K, i64, foldhash::fast::RandomState>,
    bound: usize,
}

impl<K: Hash + Eq> Cache<K> {
    fn new(bound: usize) -> Self {
        Cache {
            map: HashMap::default(),
            bound: bound.max(1),
        }
    }

    fn get<Q: Hash + Eq + ?Sized>(&self, k: &Q) -> Option<i64>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.map.get(k).copied()
    }

    fn put(&mut self, k: K, id: i64) {
        if self.map.len() >= self.bound {
            self.map.clear();
        }
        self.map.insert(k, id);
    }
}

/// What identifies a process row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ProcKey {
    pid: u32,
    comm: String,
    exe: Option<i64>,
    cmdline: Option<String>,
    uid: u32,
    ppid: Option<u32>,
    parent_comm: Option<String>,
}

struct Caches {
    /// Path to (id, whether its row has a SHA-256).
    exe: HashMap<String, (i64, bool), foldhash::fast::RandomState>,
    name: Cache<Arc<str>>,
    addr: Cache<IpAddr>,
    process: Cache<ProcKey>,
    bound: usize,
}

impl Caches {
    fn new(bound: usize) -> Self {
        Caches {
            exe: HashMap::default(),
            name: Cache::new(bound),
            addr: Cache::new(bound),
            process: Cache::new(bound),
            bound,
        }
    }

    /// Forgets every id (after a rollback or a cleanup: they may be gone).
    fn clear(&mut self) {
        *self = Caches::new(self.bound);
    }
}

/// Where retention is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Age {
        cutoff_ms: i64,
    },
    /// `left`: rows still to delete by the last estimate (0: measure).
    Size {
        left: i64,
    },
    Clean {
        cutoff_ms: i64,
    },
}

/// The writer thread's state.
struct Sink {
    db: Connection,
    path: PathBuf,
    caches: Caches,
    stats: Arc<WriterStats>,
    /// When the last warning was printed.
    /// When the last warning of each [`Warn`] kind was printed.
    warned: [Option<Instant>; 2],
    /// Errors since then, not printed.
    unreported: u64,
    retention: Phase,
    deleted_since_clean: bool,
    last_clean: Instant,
    opts: WriterOptions,
}

/// What a warning is about: each kind has its own rate limit, so that a
/// failed retention does not hide that writes fail too.
#[derive(Debug, Clone, Copy)]
enum Warn {
    Write = 0,
    Retention = 1,
}

/// Warnings after the first: at most one this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Cleanups of unreferenced rows: at most this often.
const CLEAN_EVERY: Duration = Duration::from_secs(3600);

impl Sink {
    fn run(&mut self, rx: &Receiver<FlowRecord>) {
        let every = self.opts.batch_every;
        let mut pending: Vec<FlowRecord> = Vec::with_capacity(self.opts.batch_rows);
        let mut first_at: Option<Instant> = None;
        let mut next_retention = Instant::now();
        loop {
            let now = Instant::now();
            let wait = if self.retention != Phase::Idle {
                Duration::ZERO
            } else {
                let batch_due = first_at.map_or(now + every, |t| t + every);
                let retention_due = if self.opts.retention.is_some() {
                    next_retention
                } else {
                    now + every
                };
                batch_due.min(retention_due).saturating_duration_since(now)
            };
            match rx.recv_timeout(wait) {
                Ok(r) => {
                    if pending.is_empty() {
                        first_at = Some(Instant::now());
                    }
                    pending.push(r);
                    while pending.len() < self.opts.batch_rows {
                        match rx.try_recv() {
                            Ok(r) => pending.push(r),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.write(&mut pending);
                    self.report_unreported();
                    return;
                }
            }
            let now = Instant::now();
            if pending.len() >= self.opts.batch_rows || first_at.is_some_and(|t| now >= t + every) {
                self.write(&mut pending);
                first_at = None;
            }
            if let Some(keep) = self.opts.retention {
                if self.retention == Phase::Idle && now >= next_retention {
                    next_retention = now + self.opts.retention_every;
                    let cutoff_ms =
                        unix_ms(SystemTime::now()) - i64::try_from(keep.age.as_millis()).unwrap_or(i64::MAX);
                    self.retention = Phase::Age { cutoff_ms };
                }
                if self.retention != Phase::Idle {
                    self.retention_step(keep);
                }
            }
        }
    }

    /// Writes `pending` in one transaction and empties it.
    fn write(&mut self, pending: &mut Vec<FlowRecord>) {
        if pending.is_empty() {
            return;
        }
        let n = pending.len() as u64;
        match self.write_batch(pending) {
            Ok(()) => {
                self.stats.written.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                self.caches.clear();
                self.stats.lost.fetch_add(n, Ordering::Relaxed);
                self.warn(Warn::Write, &format!("could not write {n} ended flows ({e})"));
            }
        }
        pending.clear();
    }

    fn write_batch(&mut self, rows: &[FlowRecord]) -> rusqlite::Result<()> {
        let tx = self.db.transaction()?;
        for r in rows {
            insert_flow(&tx, &mut self.caches, r)?;
        }
        tx.commit()
    }

    /// One warning now, then at most one per [`WARN_EVERY`] with how many
    /// errors were not shown.
    fn warn(&mut self, kind: Warn, what: &str) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let warned = &mut self.warned[kind as usize];
        if warned.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            self.unreported += 1;
            return;
        }
        let more = match std::mem::take(&mut self.unreported) {
            0 => String::new(),
            n => format!(" ({n} more errors since the last warning)"),
        };
        // One write for the whole line: stderr is unbuffered, and a line
        // written in pieces can interleave with other threads' warnings.
        let line = format!(
            "flowtop: journal {}: {}{more}; recording goes on, further errors are reported at most once a minute\n",
            shown(&self.path),
            crate::output::safe::terminal_safe(what),
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
        *warned = Some(now);
    }

    fn report_unreported(&mut self) {
        if self.unreported > 0 {
            eprintln!(
                "flowtop: journal {}: {} more errors since the last warning",
                shown(&self.path),
                self.unreported
            );
            self.unreported = 0;
        }
    }

    /// One chunk of retention work.
    fn retention_step(&mut self, keep: Retention) {
        let step = match self.retention {
            Phase::Idle => return,
            Phase::Age { cutoff_ms } => retention::delete_older(&self.db, cutoff_ms).map(|n| {
                self.removed(n);
                if n == 0 {
                    Phase::Size { left: 0 }
                } else {
                    Phase::Age { cutoff_ms }
                }
            }),
            Phase::Size { left } => self.size_step(keep.size, left).map(|more| {
                if let Some(left) = more {
                    Phase::Size { left }
                } else if self.deleted_since_clean && self.last_clean.elapsed() >= CLEAN_EVERY {
                    Phase::Clean {
                        cutoff_ms: unix_ms(SystemTime::now())
                            - i64::try_from(keep.age.as_millis()).unwrap_or(i64::MAX),
                    }
                } else {
                    Phase::Idle
                }
            }),
            Phase::Clean { cutoff_ms } => {
                let done = retention::clean_unreferenced(&self.db, cutoff_ms);
                self.caches.clear();
                self.last_clean = Instant::now();
                self.deleted_since_clean = false;
                done.map(|()| Phase::Idle)
            }
        };
        match step {
            Ok(next) => self.retention = next,
            Err(e) => {
                self.retention = Phase::Idle;
                self.warn(Warn::Retention, &format!("retention failed ({e})"));
            }
        }
    }

    fn removed(&mut self, n: usize) {
        if n > 0 {
            self.stats.removed.fetch_add(n as u64, Ordering::Relaxed);
            self.deleted_since_clean = true;
        }
    }

    /// Deletes a chunk of the oldest rows while the journal is over
    /// `limit`: `left` rows by the last estimate, or (0) measures and
    /// estimates again. Some(rows left) to come back, None when done.
    fn size_step(&mut self, limit: u64, left: i64) -> rusqlite::Result<Option<i64>> {
        let over = if left > 0 {
            left
        } else {
            let mut used = retention::used_bytes(&self.db)?;
            if used <= limit {
                return Ok(None);
            }
            // The WAL counts: give it back first.
            self.db
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            used = retention::used_bytes(&self.db)?;
            retention::rows_over(&self.db, used, limit)?
        };
        if over == 0 {
            return Ok(None);
        }
        let n = retention::delete_oldest(&self.db, over)?;
        self.removed(n);
        if n == 0 {
            return Ok(None);
        }
        let left = over - i64::try_from(n).unwrap_or(over);
        if left <= 0 {
            // The estimate is done: give the pages back, then measure.
            retention::incremental_vacuum(&self.db)?;
        }
        Ok(Some(left.max(0)))
    }
}

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn addr_id(db: &Connection, caches: &mut Caches, ip: IpAddr) -> rusqlite::Result<i64> {
    if let Some(id) = caches.addr.get(&ip) {
        return Ok(id);
    }
    let bytes = ip_bytes(ip);
    db.prepare_cached("INSERT OR IGNORE INTO addr (ip) VALUES (?1)")?
        .execute([&bytes])?;
    let id = db
        .prepare_cached("SELECT id FROM addr WHERE ip = ?1")?
        .query_row([&bytes], |r| r.get(0))?;
    caches.addr.put(ip, id);
    Ok(id)
}

fn name_id(db: &Connection, caches: &mut Caches, name: &Arc<str>) -> rusqlite::Result<i64> {
    if let Some(id) = caches.name.get(&**name) {
        return Ok(id);
    }
    db.prepare_cached("INSERT OR IGNORE INTO name (name) VALUES (?1)")?
        .execute([&**name])?;
    let id = db
        .prepare_cached("SELECT id FROM name WHERE name = ?1")?
        .query_row([&**name], |r| r.get(0))?;
    caches.name.put(name.clone(), id);
    Ok(id)
}

fn exe_id(db: &Connection, caches: &mut Caches, path: &str, sha256: Option<&str>) -> rusqlite::Result<i64> {
    match caches.exe.get(path) {
        Some(&(id, true)) => return Ok(id),
        Some(&(id, false)) if sha256.is_none() => return Ok(id),
        _ => {}
    }
    db.prepare_cached("INSERT OR IGNORE INTO exe (path, sha256) VALUES (?1, ?2)")?
        .execute(params![path, sha256])?;
    let (id, known): (i64, Option<String>) = db
        .prepare_cached("SELECT id, sha256 FROM exe WHERE path = ?1")?
        .query_row([path], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let has = match (sha256, known.as_deref()) {
        (Some(new), old) if old != Some(new) => {
            // The file at that path was hashed (again): the latest digest.
            db.prepare_cached("UPDATE exe SET sha256 = ?2 WHERE id = ?1")?
                .execute(params![id, new])?;
            true
        }
        (_, old) => old.is_some(),
    };
    if caches.exe.len() >= caches.bound {
        caches.exe.clear();
    }
    caches.exe.insert(path.to_owned(), (id, has));
    Ok(id)
}

/// The row of a process (and its executable's id).
fn process_id(db: &Connection, caches: &mut Caches, o: &Owner) -> rusqlite::Result<(i64, Option<i64>)> {
    let exe = match o.exe.as_deref() {
        Some(path) => Some(exe_id(db, caches, path, o.exe_sha256.get())?),
        None => None,
    };
    let key = ProcKey {
        pid: o.pid,
        comm: o.comm.clone(),
        exe,
        cmdline: o.cmdline.clone(),
        uid: o.uid,
        ppid: o.ppid,
        parent_comm: o.parent_comm.clone(),
    };
    if let Some(id) = caches.process.get(&key) {
        return Ok((id, exe));
    }
    db.prepare_cached(
        "INSERT INTO process (pid, comm, exe, cmdline, uid, ppid, parent_comm) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![o.pid, o.comm, exe, o.cmdline, o.uid, o.ppid, o.parent_comm])?;
    let id = db.last_insert_rowid();
    caches.process.put(key, id);
    Ok((id, exe))
}

/// Inserts one flow row: a checkpoint replaces the flow's previous one
/// (the partial unique index `flow_live`); a final row deletes it first.
fn insert_flow(db: &Connection, caches: &mut Caches, r: &FlowRecord) -> rusqlite::Result<()> {
    let src = addr_id(db, caches, r.orig.src)?;
    let dst = addr_id(db, caches, r.orig.dst)?;
    let (reply_src, reply_dst, reply_sport, reply_dport) = match &r.reply {
        Some(t) => (
            Some(addr_id(db, caches, t.src)?),
            Some(addr_id(db, caches, t.dst)?),
            t.sport,
            t.dport,
        ),
        None => (None, None, None, None),
    };
    let (process, exe) = match &r.owner {
        Some(o) => {
            let (p, e) = process_id(db, caches, o)?;
            (Some(p), e)
        }
        None => (None, None),
    };
    let peer = match &r.peer {
        Some(o) => Some(process_id(db, caches, o)?.0),
        None => None,
    };
    let dst_name = r.dst_name.as_ref().map(|n| name_id(db, caches, n)).transpose()?;
    let dst_host = match r.dst_host.as_deref() {
        Some(h) => Some(name_id(db, caches, &Arc::from(h))?),
        None => None,
    };
    let c = r.counters;
    if r.end_ms.is_some() {
        db.prepare_cached(super::schema::DELETE_CHECKPOINT)?
            .execute(params![r.ct_id, r.start_ms])?;
    }
    db.prepare_cached(
        "INSERT OR REPLACE INTO flow (ct_id, proto, src, dst, sport, dport, reply_src, reply_dst, \
         reply_sport, reply_dport, state, direction, start_ms, end_ms, orig_bytes, orig_packets, \
         reply_bytes, reply_packets, process, exe, peer_process, attribution, dst_name, \
         dst_name_source, dst_host, src_country, dst_country) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, \
         ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)",
    )?
    .execute(params![
        r.ct_id,
        r.proto,
        src,
        dst,
        r.orig.sport,
        r.orig.dport,
        reply_src,
        reply_dst,
        reply_sport,
        reply_dport,
        r.state,
        r.direction,
        r.start_ms,
        r.end_ms,
        opt_i64(c.map(|c| c.orig_bytes)),
        opt_i64(c.map(|c| c.orig_packets)),
        opt_i64(c.map(|c| c.reply_bytes)),
        opt_i64(c.map(|c| c.reply_packets)),
        process,
        exe,
        peer,
        r.attribution,
        dst_name,
        r.dst_name_source,
        dst_host,
        r.src_country.as_deref(),
        r.dst_country.as_deref(),
    ])?;
    if let Some(end_ms) = r.end_ms {
        // The day's rollup, in the batch's transaction: `--summary` never
        // sees a row that its day does not count.
        db.prepare_cached(super::schema::UPSERT_DAY)?.execute(params![
            end_ms,
            exe.unwrap_or(0),
            dst,
            r.orig.dport.map_or(-1, i64::from),
            r.proto,
            opt_i64(c.map(|c| c.orig_bytes)),
            opt_i64(c.map(|c| c.reply_bytes)),
            r.start_ms,
            end_ms,
            db.last_insert_rowid(),
            process,
            dst_name,
            dst_host,
            r.dst_country.as_deref(),
        ])?;
    }
    Ok(())
}
