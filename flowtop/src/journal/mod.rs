//! The journal of ended flows (issue 14): an embedded SQLite file
//! (rusqlite with the bundled library, so a fresh machine needs nothing),
//! written by `flowtop record` and read by `flowtop history` and the
//! screen's History tab. `schema.rs` is the shape both sides agree on.

pub mod query;
pub mod schema;
