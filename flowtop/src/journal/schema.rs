//! The journal's on-disk shape (schema version [`VERSION`]): the contract
//! between the writer (`flowtop record`, `writer.rs`) and the readers
//! (`flowtop history`, the History tab, `query.rs`).
//!
//! One row per flow in `flow`, written when the flow ends (and, for
//! long-lived flows, as a checkpoint row with `end_ms` NULL that the final
//! row replaces: same `(ct_id, start_ms)`, found through the partial index
//! `flow_live`, which holds checkpoint rows only). What repeats across rows
//! (executables, names, addresses, processes) is stored once and referred
//! to by id, which keeps a row near 100 bytes.
//!
//! Conventions: times are Unix milliseconds (UTC); addresses are 4 or 16
//! bytes in network order (IPv4 as 4 bytes, never v4-mapped); counters are
//! the conntrack totals at the end (or at the checkpoint); text is stored
//! as received (names are untrusted: escape when printing).
//!
//! Version 2 adds `flow_day`, the per-day rollup `flowtop history
//! --summary` reads instead of every row: the writer keeps it up to date
//! with each final row, in the same transaction.
//!
//! A change of shape bumps [`VERSION`] and adds a step to [`MIGRATIONS`];
//! a reader refuses a journal whose version is newer than it knows, and a
//! file whose `application_id` is not [`APPLICATION_ID`] is not a journal.

/// `PRAGMA application_id`: "flow" in ASCII. Tells a journal from any
/// other SQLite file.
pub const APPLICATION_ID: i32 = 0x666c_6f77;

/// `PRAGMA user_version` of the shape below.
pub const VERSION: i32 = 2;

/// Milliseconds per rollup day (UTC days: `end_ms / DAY_MS`).
pub const DAY_MS: i64 = 86_400_000;

/// Creates schema version 1 on an empty database; a new journal then runs
/// every step of [`MIGRATIONS`] (in one transaction).
pub const CREATE_V1: &str = "
CREATE TABLE exe (
    id      INTEGER PRIMARY KEY,
    path    TEXT NOT NULL UNIQUE,
    sha256  TEXT                      -- hex, NULL when not hashed
);
CREATE TABLE name (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE      -- asked-for (dst_name) and PTR (dst_host) names
);
CREATE TABLE addr (
    id      INTEGER PRIMARY KEY,
    ip      BLOB NOT NULL UNIQUE      -- 4 or 16 bytes, network order
);
CREATE TABLE process (
    id          INTEGER PRIMARY KEY,
    pid         INTEGER NOT NULL,
    comm        TEXT,
    exe         INTEGER REFERENCES exe(id),
    cmdline     TEXT,
    uid         INTEGER,
    ppid        INTEGER,
    parent_comm TEXT
);
CREATE TABLE flow (
    id            INTEGER PRIMARY KEY,
    ct_id         INTEGER NOT NULL,   -- conntrack id
    proto         INTEGER NOT NULL,   -- IP protocol number
    src           INTEGER NOT NULL REFERENCES addr(id),  -- original tuple
    dst           INTEGER NOT NULL REFERENCES addr(id),
    sport         INTEGER,            -- NULL for protocols without ports
    dport         INTEGER,
    reply_src     INTEGER REFERENCES addr(id),  -- reply tuple; all four NULL
    reply_dst     INTEGER REFERENCES addr(id),  -- when it mirrors the original
    reply_sport   INTEGER,                      -- (no NAT)
    reply_dport   INTEGER,
    state         TEXT,               -- protocol state at the end, as --json's `state`
    direction     TEXT,               -- as --json's `direction`
    start_ms      INTEGER NOT NULL,
    end_ms        INTEGER,            -- NULL: checkpoint of a flow still live
    orig_bytes    INTEGER,
    orig_packets  INTEGER,
    reply_bytes   INTEGER,
    reply_packets INTEGER,
    process       INTEGER REFERENCES process(id),  -- the owner (see --json's pid ...)
    exe           INTEGER REFERENCES exe(id),      -- the owner's, copied for the indexes
    peer_process  INTEGER REFERENCES process(id),  -- a local flow's other end
    attribution   TEXT,               -- as --json's `attribution`
    dst_name      INTEGER REFERENCES name(id),
    dst_name_source TEXT,             -- sni, http, quic, dns
    dst_host      INTEGER REFERENCES name(id),
    src_country   TEXT,
    dst_country   TEXT,
    container     TEXT,               -- issue 15; NULL until known
    unit          TEXT
);
-- Only checkpoint rows are indexed by flow: the final row deletes its
-- checkpoint through it; ended flows (nearly every row) cost no entry.
CREATE UNIQUE INDEX flow_live ON flow(ct_id, start_ms) WHERE end_ms IS NULL;
CREATE INDEX flow_end ON flow(end_ms);
CREATE INDEX flow_exe ON flow(exe, dst, dport, proto);
";

/// Removes a flow's checkpoint row (`?1` ct_id, `?2` start_ms) before its
/// final row is written.
pub const DELETE_CHECKPOINT: &str = "DELETE FROM flow WHERE ct_id = ?1 AND start_ms = ?2 AND end_ms IS NULL";

/// Version 1 to 2: the per-day rollup of ended flows, one row per (UTC day
/// the flow ended, executable, destination, port, protocol), filled from
/// the rows already there.
///
/// The key has no NULLs (SQLite's UNIQUE treats NULLs as distinct, which
/// would defeat the writer's upsert): `exe` 0 stands for "no executable"
/// (row ids start at 1) and `dport` -1 for "no port". The latest flow
/// counted (`last_flow`, the highest row id, as the summary over rows
/// takes it) lends the group its owner, names and country; they are copied
/// here because retention may delete that row before the day goes.
pub const V1_TO_V2: &str = "
CREATE TABLE flow_day (
    day         INTEGER NOT NULL,   -- end_ms / 86400000
    exe         INTEGER NOT NULL,   -- exe(id); 0: none known
    dst         INTEGER NOT NULL,   -- addr(id)
    dport       INTEGER NOT NULL,   -- -1: a protocol without ports
    proto       INTEGER NOT NULL,
    flows       INTEGER NOT NULL,
    orig_bytes  INTEGER NOT NULL,
    reply_bytes INTEGER NOT NULL,
    first_ms    INTEGER NOT NULL,   -- the earliest start
    last_ms     INTEGER NOT NULL,   -- the latest end
    last_flow   INTEGER NOT NULL,   -- flow(id) of the latest row counted
    process     INTEGER,            -- ... and its owner, names and country
    dst_name    INTEGER,
    dst_host    INTEGER,
    dst_country TEXT,
    PRIMARY KEY (day, exe, dst, dport, proto)
) WITHOUT ROWID;
INSERT INTO flow_day (day, exe, dst, dport, proto, flows, orig_bytes, reply_bytes, first_ms, last_ms, last_flow)
    SELECT end_ms / 86400000, coalesce(exe, 0), dst, coalesce(dport, -1), proto, count(*),
           sum(max(coalesce(orig_bytes, 0), 0)), sum(max(coalesce(reply_bytes, 0), 0)),
           min(start_ms), max(end_ms), max(id)
    FROM flow WHERE end_ms IS NOT NULL GROUP BY 1, 2, 3, 4, 5;
UPDATE flow_day SET process = f.process, dst_name = f.dst_name, dst_host = f.dst_host,
       dst_country = f.dst_country
    FROM flow f WHERE f.id = flow_day.last_flow;
";

/// Counts one final row (`?1`..`?14`: end_ms, exe or 0, dst, dport or -1,
/// proto, orig_bytes, reply_bytes, start_ms, end_ms, flow id, process,
/// dst_name, dst_host, dst_country) into its day of `flow_day`.
pub const UPSERT_DAY: &str = "
INSERT INTO flow_day (day, exe, dst, dport, proto, flows, orig_bytes, reply_bytes, first_ms, last_ms,
                      last_flow, process, dst_name, dst_host, dst_country)
    VALUES (?1 / 86400000, ?2, ?3, ?4, ?5, 1, max(coalesce(?6, 0), 0), max(coalesce(?7, 0), 0), ?8, ?9,
            ?10, ?11, ?12, ?13, ?14)
ON CONFLICT (day, exe, dst, dport, proto) DO UPDATE SET
    flows = flows + 1,
    orig_bytes = orig_bytes + excluded.orig_bytes,
    reply_bytes = reply_bytes + excluded.reply_bytes,
    first_ms = min(first_ms, excluded.first_ms),
    last_ms = max(last_ms, excluded.last_ms),
    last_flow = excluded.last_flow,
    process = excluded.process,
    dst_name = excluded.dst_name,
    dst_host = excluded.dst_host,
    dst_country = excluded.dst_country";

/// Steps from version N to N+1, index N-1. A writer opening an older
/// journal runs the missing steps in one transaction and sets
/// `user_version`; a new journal runs them all after [`CREATE_V1`].
pub const MIGRATIONS: &[&str] = &[V1_TO_V2];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_but_the_first_has_a_migration() {
        assert_eq!(MIGRATIONS.len(), usize::try_from(VERSION - 1).unwrap());
    }

    #[test]
    fn the_schema_creates_and_a_checkpoint_row_is_replaced_by_the_final_one() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(CREATE_V1).unwrap();
        db.execute(
            "INSERT INTO addr (id, ip) VALUES (1, x'c0000201'), (2, x'c6336401')",
            [],
        )
        .unwrap();
        let row = "INSERT OR REPLACE INTO flow (ct_id, proto, src, dst, start_ms, end_ms, orig_bytes) \
                   VALUES (7, 6, 1, 2, 1000, ?1, ?2)";
        // Two checkpoints: the second replaces the first.
        db.execute(row, rusqlite::params![None::<i64>, 5]).unwrap();
        db.execute(row, rusqlite::params![None::<i64>, 10]).unwrap();
        // The final row: the checkpoint goes through the partial index.
        db.execute(DELETE_CHECKPOINT, rusqlite::params![7, 1000]).unwrap();
        db.execute(row, rusqlite::params![Some(5000i64), 99]).unwrap();
        let (rows, end, bytes): (i64, i64, i64) = db
            .query_row(
                "SELECT count(*), max(end_ms), max(orig_bytes) FROM flow",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((rows, end, bytes), (1, 5000, 99));
    }
}
