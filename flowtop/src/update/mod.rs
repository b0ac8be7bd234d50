//! `flowtop -u` / `--update`: downloads the GeoIP City and Country
//! databases from the mirrors in `geoip.conf` and installs them where
//! flowtop looks (`--geoip-dir`, else [`DATA_DIR`]).
//!
//! Mirror layout: a mirror is a base URL; file names are appended to it.
//! For each database, each mirror in order, these names are tried in order
//! until one downloads, unpacks and verifies:
//!
//! | tried | installed as |
//! | --- | --- |
//! | `GeoLite2-City.mmdb`, `GeoLite2-City.mmdb.gz`, `GeoLite2-City.tar.gz` (MaxMind's archive: a directory holding the .mmdb) | `GeoLite2-City.mmdb` |
//! | `dbip-city-lite.mmdb`, `dbip-city-lite.mmdb.gz`, `dbip-city-lite-YYYY-MM.mmdb.gz` (this month, then last month, UTC: DB-IP's own naming) | `dbip-city-lite.mmdb` |
//!
//! and the same with `Country` / `country`. A download is verified before
//! it replaces anything (a MaxMind DB of the right `database_type`, a
//! working lookup) and installed atomically (see [`install`]); a failed,
//! truncated, corrupt or wrong-type download leaves the old file as it was.
//! Exit status: 0 when both databases were updated, 1 otherwise (with what
//! failed where, and why), 2 when there is no `geoip.conf` or no mirror.
//! No shell is ever run.

pub mod conf;
pub mod fetch;
pub mod install;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::enrich::geoip::{DbKind, DATA_DIR};
use fetch::{FetchError, Progress};
use install::Format;

/// Why `-u` failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Nothing to do: no configuration or no mirror (exit status 2).
    #[error("{0}")]
    Config(String),
    /// A database was not updated (exit status 1).
    #[error("{0}")]
    Failed(String),
}

/// One file to try on a mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub name: String,
    pub format: Format,
    pub install_as: &'static str,
}

/// (year, month) of a time, UTC (civil-from-days, proleptic Gregorian).
fn year_month(t: SystemTime) -> (i64, u32) {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

/// The files tried for `kind`, in order (see the module doc).
pub fn remotes(kind: DbKind, now: SystemTime) -> Vec<Remote> {
    let (maxmind, dbip) = match kind {
        DbKind::City => ("GeoLite2-City", "dbip-city-lite"),
        DbKind::Country => ("GeoLite2-Country", "dbip-country-lite"),
    };
    let (y, m) = year_month(now);
    let (py, pm) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
    let mut names = vec![
        (format!("{maxmind}.mmdb"), 0),
        (format!("{maxmind}.mmdb.gz"), 0),
        (format!("{maxmind}.tar.gz"), 0),
        (format!("{dbip}.mmdb"), 1),
        (format!("{dbip}.mmdb.gz"), 1),
        (format!("{dbip}-{y:04}-{m:02}.mmdb.gz"), 1),
        (format!("{dbip}-{py:04}-{pm:02}.mmdb.gz"), 1),
    ];
    let install = [
        match kind {
            DbKind::City => "GeoLite2-City.mmdb",
            DbKind::Country => "GeoLite2-Country.mmdb",
        },
        match kind {
            DbKind::City => "dbip-city-lite.mmdb",
            DbKind::Country => "dbip-country-lite.mmdb",
        },
    ];
    names
        .drain(..)
        .map(|(name, i)| Remote {
            format: Format::of(&name),
            name,
            install_as: install[i],
        })
        .collect()
}

/// What happened to one database.
#[derive(Debug)]
pub enum Outcome {
    Installed {
        path: PathBuf,
        from: String,
        what: String,
    },
    /// Every attempt, as "URL: why" lines.
    Failed(Vec<String>),
}

/// Tries every mirror for one database; installs the first good download.
/// A mirror that cannot be reached (connection, TLS, timeout) is not asked
/// for its other files, nor, through `dead`, for the next database: each
/// try could cost a full timeout.
pub fn update_one(
    agent: &ureq::Agent,
    progress: &Progress,
    mirrors: &[conf::Mirror],
    kind: DbKind,
    target: &Path,
    now: SystemTime,
    dead: &mut HashMap<String, String>,
) -> Outcome {
    let mut failures = Vec::new();
    for mirror in mirrors {
        if let Some(why) = dead.get(&mirror.base) {
            failures.push(format!("{}: skipped, unreachable earlier ({why})", mirror.base));
            continue;
        }
        let mut missing = Vec::new();
        for remote in remotes(kind, now) {
            let url = mirror.url(&remote.name);
            let bytes = match fetch::get(agent, &url, fetch::MAX_DOWNLOAD, progress) {
                Ok(b) => b,
                Err(FetchError::NotFound) => {
                    missing.push(remote.name);
                    continue;
                }
                Err(FetchError::Transport(why)) => {
                    failures.push(format!("{url}: {why}; the mirror's other files not tried"));
                    dead.insert(mirror.base.clone(), why);
                    break;
                }
                Err(e) => {
                    failures.push(format!("{url}: {e}"));
                    continue;
                }
            };
            let checked = install::unpack(remote.format, bytes).and_then(|db| {
                let what = install::verify(&db, kind)?;
                Ok((db, what))
            });
            let (db, what) = match checked {
                Ok(x) => x,
                Err(why) => {
                    progress.note(&format!("{url}: {why}; not installed"));
                    failures.push(format!("{url}: {why}"));
                    continue;
                }
            };
            return match install::install(target, remote.install_as, &db) {
                Ok(path) => Outcome::Installed {
                    path,
                    from: url,
                    what,
                },
                // Not the mirror's fault: another mirror would fail alike.
                Err(why) => {
                    failures.push(format!(
                        "{url}: downloaded and verified, but not installed: {why}"
                    ));
                    Outcome::Failed(failures)
                }
            };
        }
        if !missing.is_empty() {
            failures.push(format!("{}: HTTP 404 for {}", mirror.base, missing.join(", ")));
        }
    }
    Outcome::Failed(failures)
}

fn kind_name(kind: DbKind) -> &'static str {
    match kind {
        DbKind::City => "City",
        DbKind::Country => "Country",
    }
}

/// Runs the update: reads `geoip.conf`, fetches both databases, installs
/// them in `geoip_dir` (default [`DATA_DIR`]).
pub fn run(conf_dir: Option<&Path>, geoip_dir: Option<&Path>) -> Result<(), UpdateError> {
    let dirs = conf::search_path(conf_dir);
    let Some(file) = conf::find(&dirs) else {
        let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(UpdateError::Config(format!(
            "-u/--update: no {} found in {}; it lists the mirrors to download the GeoIP databases from \
             (see README 'GeoIP databases')",
            conf::FILE,
            list.join(", ")
        )));
    };
    let text = std::fs::read(&file)
        .map_err(|e| UpdateError::Config(format!("-u/--update: cannot read {}: {e}", file.display())))?;
    let (mirrors, warnings) = conf::parse(&String::from_utf8_lossy(&text), &file.display().to_string());
    for w in warnings {
        eprintln!("{}", crate::app::conf_warning(&w));
    }
    eprintln!(
        "flowtop: mirrors from {}",
        crate::output::safe::terminal_safe(&file.display().to_string())
    );
    if mirrors.is_empty() {
        return Err(UpdateError::Config(format!(
            "-u/--update: {} lists no mirror (one URL or host per line; see README 'GeoIP databases')",
            file.display()
        )));
    }
    let target = geoip_dir.unwrap_or(Path::new(DATA_DIR));
    install::ensure_dir(target).map_err(UpdateError::Failed)?;
    // Checked before downloading anything: with the real user's rights
    // (access(2)), which are the only ones flowtop uses for this directory.
    writable_dir(target).map_err(UpdateError::Failed)?;
    let agent = fetch::agent();
    let progress = Progress::stderr();
    let now = SystemTime::now();
    let mut not_updated = Vec::new();
    let mut dead = HashMap::new();
    for kind in [DbKind::City, DbKind::Country] {
        match update_one(&agent, &progress, &mirrors, kind, target, now, &mut dead) {
            Outcome::Installed { path, from, what } => {
                eprintln!("flowtop: installed {} ({what}) from {from}", path.display());
            }
            Outcome::Failed(why) => {
                eprintln!("flowtop: the {} database was not updated:", kind_name(kind));
                for w in why {
                    eprintln!("  {w}");
                }
                not_updated.push(kind_name(kind));
            }
        }
    }
    if not_updated.is_empty() {
        Ok(())
    } else {
        Err(UpdateError::Failed(format!(
            "-u/--update: not updated: {} (their files in {} are unchanged)",
            not_updated.join(", "),
            target.display()
        )))
    }
}

/// An error unless the real user may create files in `dir`.
fn writable_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", dir.display()))?;
    // SAFETY: access with a valid C string.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(format!(
            "-u/--update: cannot write to {}: {}",
            crate::output::safe::terminal_safe(&dir.display().to_string()),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn year_month_utc() {
        let at = |s: u64| year_month(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), (1970, 1));
        assert_eq!(at(951_782_400), (2000, 2)); // 2000-02-29
        assert_eq!(at(1_798_761_599), (2026, 12)); // 2026-12-31T23:59:59
        assert_eq!(at(1_798_761_600), (2027, 1));
    }

    #[test]
    fn remote_names_and_install_names() {
        let jan = SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_761_600); // 2027-01-01
        let r = remotes(DbKind::City, jan);
        let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "GeoLite2-City.mmdb",
                "GeoLite2-City.mmdb.gz",
                "GeoLite2-City.tar.gz",
                "dbip-city-lite.mmdb",
                "dbip-city-lite.mmdb.gz",
                "dbip-city-lite-2027-01.mmdb.gz",
                "dbip-city-lite-2026-12.mmdb.gz",
            ]
        );
        assert_eq!(r[2].format, Format::TarGz);
        assert_eq!(r[2].install_as, "GeoLite2-City.mmdb");
        assert_eq!(r[6].install_as, "dbip-city-lite.mmdb");
        let c = remotes(DbKind::Country, jan);
        assert_eq!(c[1].name, "GeoLite2-Country.mmdb.gz");
        assert_eq!(c[4].install_as, "dbip-country-lite.mmdb");
    }
}
