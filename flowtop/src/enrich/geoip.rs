//! GeoIP: country and city of public addresses, from MaxMind DB files
//! (MaxMind GeoIP2/GeoLite2 City and Country, DB-IP City/Country Lite).
//!
//! Where: `--geoip-dir`, then the usual system directories, then flowtop's
//! own [`DATA_DIR`] (where `flowtop -u` installs). Which file: per directory,
//! in this order (the first one that opens and validates wins, searching the
//! directories in order; a City database anywhere beats a Country one,
//! because it answers the country too):
//!
//! - City: `GeoIP2-City.mmdb`, `GeoLite2-City.mmdb`, then
//!   `dbip-city-lite-YYYY-MM.mmdb` newest first, then `dbip-city-lite.mmdb`;
//! - Country (only opened when no City database is usable):
//!   `GeoIP2-Country.mmdb`, `GeoLite2-Country.mmdb`,
//!   `dbip-country-lite-YYYY-MM.mmdb` newest first, `dbip-country-lite.mmdb`.
//!
//! Files are read into memory, not memory-mapped. A mapped file that is
//! truncated in place (`cp new.mmdb /usr/share/GeoIP/GeoLite2-City.mmdb`
//! opens with O_TRUNC) makes the next lookup touching a vanished page raise
//! SIGBUS: flowtop would die without restoring the kernel settings it
//! changed. Reading costs the file's size in resident memory (about 60 MB
//! for GeoLite2-City, 8 MB for a Country file, up to ~130 MB for DB-IP City
//! Lite); a page-cache mapping would cost roughly the pages touched. Only
//! one database is held (City, or Country when there is no City file), and
//! a file replaced or deleted while flowtop runs cannot hurt the copy in
//! memory; [`GeoIp::reopen_if_changed`] picks up replacements.
//!
//! Non-public addresses ([`Scope`]) are never looked up.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use maxminddb::Reader;
use serde::Deserialize;

use super::scope::{classify, Scope};

/// flowtop's own data directory: searched last, and where `-u` installs.
pub const DATA_DIR: &str = "/var/lib/flowtop";

/// Where distributions and `geoipupdate` put the databases.
const SYSTEM_DIRS: [&str; 3] = ["/usr/share/GeoIP", "/var/lib/GeoIP", "/usr/local/share/GeoIP"];

/// Longest country or city string kept, in bytes (cut at a char boundary):
/// the strings come from files, are shown in columns and cached.
pub const MAX_STRING: usize = 128;

/// Largest database file read (the biggest real ones are ~130 MB).
const MAX_DB_BYTES: u64 = 1 << 30;

/// Addresses a [`GeoCache`] holds by default.
pub const CACHE_ENTRIES: usize = 65_536;

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DbKind {
    City,
    Country,
}

impl DbKind {
    /// The word `database_type` must contain ("GeoLite2-City",
    /// "DBIP-City-Lite", "GeoIP2-Country", ...).
    pub fn type_word(self) -> &'static str {
        match self {
            DbKind::City => "City",
            DbKind::Country => "Country",
        }
    }

    /// Fixed file names, preferred first.
    pub fn file_names(self) -> [&'static str; 2] {
        match self {
            DbKind::City => ["GeoIP2-City.mmdb", "GeoLite2-City.mmdb"],
            DbKind::Country => ["GeoIP2-Country.mmdb", "GeoLite2-Country.mmdb"],
        }
    }

    /// DB-IP's name stem: `STEM.mmdb` or `STEM-YYYY-MM.mmdb`.
    pub fn dbip_stem(self) -> &'static str {
        match self {
            DbKind::City => "dbip-city-lite",
            DbKind::Country => "dbip-country-lite",
        }
    }
}

/// The directories searched, in order.
pub fn search_path(geoip_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = geoip_dir.map(Path::to_path_buf).into_iter().collect();
    dirs.extend(SYSTEM_DIRS.iter().map(PathBuf::from));
    dirs.push(PathBuf::from(DATA_DIR));
    dirs
}

/// `STEM-YYYY-MM.mmdb`?
fn is_dated(name: &str, stem: &str) -> bool {
    let Some(date) = name
        .strip_prefix(stem)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_suffix(".mmdb"))
    else {
        return false;
    };
    let b = date.as_bytes();
    b.len() == 7 && b[4] == b'-' && b.iter().enumerate().all(|(i, c)| i == 4 || c.is_ascii_digit())
}

/// The files in `dir` that may hold a `kind` database, preferred first.
pub fn candidates(dir: &Path, kind: DbKind) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = kind.file_names().iter().map(|n| dir.join(n)).collect();
    let stem = kind.dbip_stem();
    let mut dated: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_dated(n, stem))
        .collect();
    // YYYY-MM sorts by name: newest first.
    dated.sort_unstable_by(|a, b| b.cmp(a));
    out.extend(dated.into_iter().map(|n| dir.join(n)));
    out.push(dir.join(format!("{stem}.mmdb")));
    out.retain(|p| p.exists());
    out
}

/// What identifies a file's version on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        }
    }
}

/// One opened database.
struct Db {
    path: PathBuf,
    kind: DbKind,
    reader: Reader<Vec<u8>>,
    stamp: Option<Stamp>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("database_type", &self.reader.metadata().database_type)
            .finish_non_exhaustive()
    }
}

/// What one open database is, for the meta line or a status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbInfo {
    pub kind: DbKind,
    pub path: PathBuf,
    pub database_type: String,
    /// Seconds since the epoch the database was built.
    pub build_epoch: u64,
}

/// Checks the metadata of a database: the shape flowtop can read, and the
/// expected kind. Shared with `-u`, which refuses to install what fails it.
pub fn validate<S: AsRef<[u8]>>(reader: &Reader<S>, kind: DbKind) -> Result<(), String> {
    let m = reader.metadata();
    if m.binary_format_major_version != 2 {
        return Err(format!(
            "unsupported MaxMind DB format version {}",
            m.binary_format_major_version
        ));
    }
    if m.ip_version != 4 && m.ip_version != 6 {
        return Err(format!("ip_version {} is neither 4 nor 6", m.ip_version));
    }
    if !m.database_type.contains(kind.type_word()) {
        return Err(format!(
            "database_type \"{}\" is not a {} database",
            m.database_type.escape_debug(),
            kind.type_word()
        ));
    }
    if m.node_count == 0 {
        return Err("the search tree is empty (node_count 0)".into());
    }
    // A lookup must work (it reaches the data section for public addresses
    // of real databases; an error here means a broken tree or data).
    Record::decode(reader, IpAddr::V4(std::net::Ipv4Addr::new(1, 1, 1, 1)))
        .map_err(|e| format!("a test lookup failed: {e}"))?;
    Ok(())
}

/// Reads, parses and validates one file. The error says why, without the
/// path (the caller names the file).
fn load(path: &Path, kind: DbKind) -> Result<Db, String> {
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    // A FIFO or device would block or never end.
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_DB_BYTES {
        return Err(format!(
            "{} bytes is larger than the {MAX_DB_BYTES}-byte limit",
            meta.len()
        ));
    }
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    f.by_ref()
        .take(MAX_DB_BYTES)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    let reader = Reader::from_source(buf).map_err(|e| format!("not a valid MaxMind DB file ({e})"))?;
    validate(&reader, kind)?;
    Ok(Db {
        path: path.to_path_buf(),
        kind,
        reader,
        stamp: Some(Stamp::of(&meta)),
    })
}

/// The fields flowtop reads from a City or Country record.
#[derive(Deserialize, Default)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<Place<'a>>,
    #[serde(borrow)]
    registered_country: Option<Place<'a>>,
    #[serde(borrow)]
    city: Option<Place<'a>>,
}

#[derive(Deserialize)]
struct Place<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
    #[serde(borrow)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow)]
    en: Option<&'a str>,
}

impl<'a> Record<'a> {
    fn decode<S: AsRef<[u8]>>(reader: &'a Reader<S>, ip: IpAddr) -> Result<Option<Record<'a>>, String> {
        let res = reader.lookup(ip).map_err(|e| e.to_string())?;
        res.decode::<Record<'a>>().map_err(|e| e.to_string())
    }
}

/// Cuts `s` to at most [`MAX_STRING`] bytes at a char boundary; empty is None.
fn capped(s: Option<&str>) -> Option<Arc<str>> {
    let s = s?;
    if s.is_empty() {
        return None;
    }
    let mut end = s.len().min(MAX_STRING);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Some(Arc::from(&s[..end]))
}

/// What flowtop knows of an address's geography.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geo {
    pub scope: Scope,
    /// ISO 3166-1 alpha-2 code, as the database has it (raw: escape it).
    pub country: Option<Arc<str>>,
    /// English city name, as the database has it (raw: escape it).
    pub city: Option<Arc<str>>,
}

impl Geo {
    /// The scope of `ip` and no location: for `-G`, or when no database is
    /// open.
    pub fn without_lookup(ip: IpAddr) -> Geo {
        Geo::bare(classify(ip))
    }

    fn bare(scope: Scope) -> Geo {
        Geo {
            scope,
            country: None,
            city: None,
        }
    }
}

/// The open databases: a City one, or a Country one when there is no City
/// database (a City database answers the country too).
#[derive(Debug)]
pub struct GeoIp {
    city: Option<Db>,
    country: Option<Db>,
}

/// Finds and opens the databases in `dirs` (see the module doc for the
/// rules). Returns None when none is usable, and the notices to show: one
/// per file skipped (naming it and why), or exactly one when nothing was
/// found.
pub fn open(dirs: &[PathBuf]) -> (Option<GeoIp>, Vec<String>) {
    let mut notices = Vec::new();
    let city = find(dirs, DbKind::City, &mut notices);
    let country = match city {
        Some(_) => None,
        None => find(dirs, DbKind::Country, &mut notices),
    };
    if city.is_none() && country.is_none() {
        let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        let what = if notices.is_empty() { "no" } else { "no usable" };
        notices.push(format!(
            "{what} GeoIP database found in {}; running without geography; see README 'GeoIP databases' \
             or run flowtop -u",
            list.join(", ")
        ));
        return (None, notices);
    }
    (Some(GeoIp { city, country }), notices)
}

fn find(dirs: &[PathBuf], kind: DbKind, notices: &mut Vec<String>) -> Option<Db> {
    for dir in dirs {
        for path in candidates(dir, kind) {
            match load(&path, kind) {
                Ok(db) => return Some(db),
                Err(why) => notices.push(format!("GeoIP: {}: {why}; file skipped", path.display())),
            }
        }
    }
    None
}

impl GeoIp {
    /// A GeoIp over one in-memory database (tests, benchmarks).
    pub fn from_bytes(bytes: Vec<u8>, kind: DbKind) -> Result<GeoIp, String> {
        let reader = Reader::from_source(bytes).map_err(|e| format!("not a valid MaxMind DB file ({e})"))?;
        validate(&reader, kind)?;
        let db = Db {
            path: PathBuf::from("<memory>"),
            kind,
            reader,
            stamp: None,
        };
        Ok(match kind {
            DbKind::City => GeoIp {
                city: Some(db),
                country: None,
            },
            DbKind::Country => GeoIp {
                city: None,
                country: Some(db),
            },
        })
    }

    fn db(&self) -> Option<&Db> {
        self.city.as_ref().or(self.country.as_ref())
    }

    /// The databases in use.
    pub fn databases(&self) -> Vec<DbInfo> {
        [&self.city, &self.country]
            .into_iter()
            .flatten()
            .map(|db| DbInfo {
                kind: db.kind,
                path: db.path.clone(),
                database_type: db.reader.metadata().database_type.clone(),
                build_epoch: db.reader.metadata().build_epoch,
            })
            .collect()
    }

    /// Whether city names can be answered (a City database is open).
    pub fn has_city(&self) -> bool {
        self.city.is_some()
    }

    /// Scope, country and city of `ip`. Non-public addresses return their
    /// scope without a lookup; a lookup error is an unknown location.
    pub fn lookup(&self, ip: IpAddr) -> Geo {
        let scope = classify(ip);
        if !scope.is_public() {
            return Geo::bare(scope);
        }
        // The files keep IPv4 under ::/96 (or are IPv4 only): look mapped
        // addresses up as what they carry.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let Some(db) = self.db() else {
            return Geo::bare(scope);
        };
        let rec = Record::decode(&db.reader, ip).ok().flatten().unwrap_or_default();
        fn iso<'a>(p: &Option<Place<'a>>) -> Option<&'a str> {
            p.as_ref().and_then(|p| p.iso_code).filter(|s| !s.is_empty())
        }
        // No country (anonymous proxies, satellite providers): the country
        // the network is registered in is the best answer there is.
        let country = iso(&rec.country).or_else(|| iso(&rec.registered_country));
        let city = rec
            .city
            .as_ref()
            .and_then(|c| c.names.as_ref())
            .and_then(|n| n.en);
        Geo {
            scope,
            country: capped(country),
            city: capped(city),
        }
    }

    /// Re-reads a database whose file was replaced or changed since it was
    /// opened (two `stat` calls: cheap enough for once per refresh). A
    /// replacement that does not validate, or a deleted file, keeps the
    /// copy in memory. Returns the notices (each change is reported once)
    /// and whether a database was swapped (then cached answers are stale).
    pub fn reopen_if_changed(&mut self) -> (bool, Vec<String>) {
        let mut notices = Vec::new();
        let mut swapped = false;
        for slot in [&mut self.city, &mut self.country] {
            let Some(db) = slot.as_mut() else { continue };
            let Some(old) = db.stamp else { continue };
            let now = std::fs::metadata(&db.path).ok().map(|m| Stamp::of(&m));
            if now == Some(old) {
                continue;
            }
            db.stamp = now;
            if now.is_none() {
                notices.push(format!(
                    "GeoIP: {} disappeared; still using the copy in memory",
                    db.path.display()
                ));
                continue;
            }
            match load(&db.path, db.kind) {
                Ok(new) => {
                    notices.push(format!("GeoIP: {} changed; reloaded", db.path.display()));
                    *db = new;
                    swapped = true;
                }
                Err(why) => notices.push(format!(
                    "GeoIP: {} changed but {why}; still using the previous copy",
                    db.path.display()
                )),
            }
        }
        (swapped, notices)
    }
}

/// A bounded cache of answers in front of a [`GeoIp`]. Two generations:
/// new answers go into `young`; when it is full, `old` is dropped and
/// `young` becomes `old`; a hit in `old` moves back. At most `2 * half`
/// addresses, O(1) eviction, and frequently seen addresses survive.
#[derive(Debug)]
pub struct GeoCache {
    geo: GeoIp,
    young: HashMap<IpAddr, Geo, foldhash::fast::RandomState>,
    old: HashMap<IpAddr, Geo, foldhash::fast::RandomState>,
    half: usize,
}

impl GeoCache {
    /// A cache of [`CACHE_ENTRIES`] addresses.
    pub fn new(geo: GeoIp) -> GeoCache {
        GeoCache::with_capacity(geo, CACHE_ENTRIES)
    }

    /// A cache of at most `entries` addresses (at least 2).
    pub fn with_capacity(geo: GeoIp, entries: usize) -> GeoCache {
        let half = (entries / 2).max(1);
        GeoCache {
            geo,
            young: HashMap::with_capacity_and_hasher(half, Default::default()),
            old: HashMap::default(),
            half,
        }
    }

    /// The answer for `ip`, cached. Non-public addresses are answered
    /// without taking a place in the cache.
    pub fn get(&mut self, ip: IpAddr) -> Geo {
        if let Some(g) = self.young.get(&ip) {
            return g.clone();
        }
        let scope = classify(ip);
        if !scope.is_public() {
            return Geo::bare(scope);
        }
        let geo = match self.old.remove(&ip) {
            Some(g) => g,
            None => self.geo.lookup(ip),
        };
        if self.young.len() >= self.half {
            self.old = std::mem::replace(
                &mut self.young,
                HashMap::with_capacity_and_hasher(self.half, Default::default()),
            );
        }
        self.young.insert(ip, geo.clone());
        geo
    }

    /// Addresses cached.
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn geoip(&self) -> &GeoIp {
        &self.geo
    }

    /// [`GeoIp::reopen_if_changed`], emptying the cache when a database
    /// was swapped.
    pub fn reopen_if_changed(&mut self) -> Vec<String> {
        let (swapped, notices) = self.geo.reopen_if_changed();
        if swapped {
            self.young.clear();
            self.old.clear();
        }
        notices
    }
}

#[cfg(test)]
mod tests;
