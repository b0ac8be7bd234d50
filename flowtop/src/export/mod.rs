//! Flows leaving the machine: IPFIX records to stock collectors
//! ([`ipfix`]), Prometheus metrics over HTTP ([`metrics`]), and the
//! Community ID every output carries ([`community_id`]).
//!
//! The engine hands every change of the table to one [`Exporters`] (from
//! whichever mode runs: the screen, `--json`, `record`), ticks it once per
//! interval and finishes it at exit.

pub mod community_id;
