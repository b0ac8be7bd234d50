//! Retention: `--retain AGE` and `--retain-size SIZE`, parsed here, and the
//! deletions the writer thread runs a chunk at a time between its batches
//! (so that a large deletion never holds up the recording).
//!
//! By age: rows whose `end_ms` is older than the age. By size: while the
//! pages in use (`page_count - freelist_count`, times `page_size`) plus the
//! WAL file exceed the size, the rows that ended first. Rows of
//! `exe`/`name`/`addr`/`process` no flow refers to any more are removed
//! occasionally (at most hourly, after deletions), as are checkpoint rows
//! (`end_ms` NULL) left by a recorder that was killed, once older than the
//! age. New journals are created with `auto_vacuum = INCREMENTAL` and the
//! writer runs `PRAGMA incremental_vacuum` after deletions, so the file
//! shrinks; a journal created without it keeps its size and reuses its
//! free pages.

use std::time::Duration;

use rusqlite::Connection;

/// Rows deleted per statement.
pub const CHUNK: i64 = 2000;

/// What to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Flows that ended longer ago are removed.
    pub age: Duration,
    /// The journal's bytes (in use, plus the WAL) are kept under this.
    pub size: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            age: Duration::from_secs(30 * 86_400),
            size: 1 << 30,
        }
    }
}

impl Retention {
    /// From `--retain` and `--retain-size`; the error is a usage message.
    pub fn parse(age: &str, size: &str) -> Result<Retention, String> {
        Ok(Retention {
            age: parse_age(age).map_err(|e| format!("--retain {age:?}: {e}"))?,
            size: parse_size(size).map_err(|e| format!("--retain-size {size:?}: {e}"))?,
        })
    }
}

/// A duration such as `90s`, `10m`, `2h`, `30d` (or `2w`); a bare number
/// is seconds.
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| "expected a number and a unit: s, m, h, d or w (e.g. 30d, 12h)".to_owned())?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "unknown unit {unit:?}: use s, m, h, d or w (e.g. 30d, 12h)"
            ))
        }
    };
    if n == 0 {
        return Err("must be more than 0".into());
    }
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| "too large".to_owned())
}

/// A size such as `500M` or `1G`: K, M, G, T are powers of 1024 (a trailing
/// `B` or `iB` is accepted); a bare number is bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| "expected a number and a unit: K, M, G or T (e.g. 1G, 500M)".to_owned())?;
    let unit = unit.to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => {
            return Err(format!(
                "unknown unit {unit:?}: use K, M, G or T (powers of 1024, e.g. 1G)"
            ))
        }
    };
    if n == 0 {
        return Err("must be more than 0".into());
    }
    n.checked_mul(1 << shift).ok_or_else(|| "too large".to_owned())
}

/// Deletes up to [`CHUNK`] flows that ended before `cutoff_ms`; how many.
pub fn delete_older(db: &Connection, cutoff_ms: i64) -> rusqlite::Result<usize> {
    delete_ended(
        db,
        "SELECT id FROM flow WHERE end_ms < ?1 ORDER BY end_ms LIMIT ?2",
        rusqlite::params![cutoff_ms, CHUNK],
    )
}

/// Deletes the `n` flows that ended first (at most [`CHUNK`]); how many.
pub fn delete_oldest(db: &Connection, n: i64) -> rusqlite::Result<usize> {
    delete_ended(
        db,
        "SELECT id FROM flow WHERE end_ms IS NOT NULL ORDER BY end_ms LIMIT ?1",
        rusqlite::params![n.clamp(1, CHUNK)],
    )
}

/// Deletes the ended flows `select` names (their ids), and takes them out
/// of the per-day rollup: `--summary` keeps adding up exactly the rows
/// that are left (the counts and bytes; a group's `first` may still be an
/// older start). A day's group goes with its last flow. Retention removes
/// the oldest flows first, so the groups it empties lie in the days up to
/// the chunk's last: that range of the rollup's key is all it looks at.
fn delete_ended(db: &Connection, select: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    db.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS doomed (id INTEGER PRIMARY KEY); DELETE FROM temp.doomed;",
    )?;
    db.prepare_cached(&format!("INSERT INTO temp.doomed {select}"))?
        .execute(params)?;
    db.execute_batch(
        "UPDATE flow_day SET flows = flows - d.n, orig_bytes = orig_bytes - d.o,
                reply_bytes = reply_bytes - d.r
         FROM (SELECT end_ms / 86400000 AS day, coalesce(exe, 0) AS exe, dst,
                      coalesce(dport, -1) AS dport, proto, count(*) AS n,
                      sum(max(coalesce(orig_bytes, 0), 0)) AS o,
                      sum(max(coalesce(reply_bytes, 0), 0)) AS r
               FROM flow WHERE id IN temp.doomed AND end_ms IS NOT NULL
               GROUP BY 1, 2, 3, 4, 5) AS d
         WHERE flow_day.day = d.day AND flow_day.exe = d.exe AND flow_day.dst = d.dst
           AND flow_day.dport = d.dport AND flow_day.proto = d.proto;
         DELETE FROM flow_day WHERE flows <= 0 AND day <= (
             SELECT max(end_ms) / 86400000 FROM flow WHERE id IN temp.doomed);",
    )?;
    db.prepare_cached("DELETE FROM flow WHERE id IN temp.doomed")?
        .execute([])
}

/// Gives the free pages back to the file system (a journal created with
/// `auto_vacuum = INCREMENTAL`; elsewhere a no-op). Stepped to the end.
pub fn incremental_vacuum(db: &Connection) -> rusqlite::Result<()> {
    let mut stmt = db.prepare_cached("PRAGMA incremental_vacuum")?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// The journal's bytes: pages in use plus the WAL file.
pub fn used_bytes(db: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = db.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = db.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = db.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let wal = db
        .path()
        .filter(|p| !p.is_empty())
        .and_then(|p| std::fs::metadata(format!("{p}-wal")).ok())
        .map_or(0, |m| m.len());
    Ok(u64::try_from((pages - free).max(0) * size).unwrap_or(0) + wal)
}

/// How many of the oldest rows to delete to bring `used` under `limit`
/// (an estimate from the average row's share, plus a margin).
pub fn rows_over(db: &Connection, used: u64, limit: u64) -> rusqlite::Result<i64> {
    let rows: i64 = db.query_row("SELECT count(*) FROM flow", [], |r| r.get(0))?;
    if rows == 0 || used <= limit {
        return Ok(0);
    }
    let per_row = (used / u64::try_from(rows).unwrap_or(1)).max(1);
    let over = (used - limit).div_ceil(per_row);
    Ok(i64::try_from(over)
        .unwrap_or(i64::MAX)
        .saturating_add(rows / 100 + 1))
}

/// Removes checkpoint rows older than `cutoff_ms` (a killed recorder's
/// last word on flows it never saw end) and the rows of `exe`, `name`,
/// `addr` and `process` no flow refers to. Full scans: run rarely.
pub fn clean_unreferenced(db: &Connection, cutoff_ms: i64) -> rusqlite::Result<()> {
    db.execute(
        "DELETE FROM flow WHERE end_ms IS NULL AND start_ms < ?1",
        [cutoff_ms],
    )?;
    // The rollup (flow_day) refers to processes, executables, names and
    // addresses too: its days may outlive their latest rows.
    db.execute_batch(
        "DELETE FROM process WHERE id NOT IN (
             SELECT process FROM flow WHERE process IS NOT NULL
             UNION SELECT peer_process FROM flow WHERE peer_process IS NOT NULL
             UNION SELECT process FROM flow_day WHERE process IS NOT NULL);
         DELETE FROM exe WHERE id NOT IN (
             SELECT exe FROM flow WHERE exe IS NOT NULL
             UNION SELECT exe FROM process WHERE exe IS NOT NULL
             UNION SELECT exe FROM flow_day);
         DELETE FROM name WHERE id NOT IN (
             SELECT dst_name FROM flow WHERE dst_name IS NOT NULL
             UNION SELECT dst_host FROM flow WHERE dst_host IS NOT NULL
             UNION SELECT dst_name FROM flow_day WHERE dst_name IS NOT NULL
             UNION SELECT dst_host FROM flow_day WHERE dst_host IS NOT NULL);
         DELETE FROM addr WHERE id NOT IN (
             SELECT src FROM flow UNION SELECT dst FROM flow
             UNION SELECT reply_src FROM flow WHERE reply_src IS NOT NULL
             UNION SELECT reply_dst FROM flow WHERE reply_dst IS NOT NULL
             UNION SELECT dst FROM flow_day);",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_with_their_units() {
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_age("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("45"), Ok(Duration::from_secs(45)));
        for bad in ["", "d", "3x", "-1d", "0d", "1.5h", "99999999999999999999d"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        for bad in ["", "G", "1X", "0M", "1.5G", "-1G", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        let e = Retention::parse("30d", "1Q").unwrap_err();
        assert!(e.starts_with("--retain-size \"1Q\""), "{e}");
    }
}
