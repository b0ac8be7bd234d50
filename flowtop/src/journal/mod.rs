//! The journal of ended flows (issue 14): an embedded SQLite file
//! (rusqlite with the bundled library, so a fresh machine needs nothing),
//! written by `flowtop record` and read by `flowtop history` and the
//! screen's History tab. `schema.rs` is the shape both sides agree on.
//!
//! The write side: the engine turns each flow that ends (and, every few
//! minutes, each long-lived one) into a [`record::FlowRecord`] through a
//! [`recorder::Recorder`], which hands it to the [`writer::Writer`]'s
//! thread; [`retention`] keeps the file to `--retain` and `--retain-size`.

pub mod query;
pub mod record;
pub mod recorder;
pub mod retention;
pub mod schema;
pub mod writer;

#[cfg(test)]
mod tests;
