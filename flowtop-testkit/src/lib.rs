//! flowtop's test scaffolding: everything tests, examples, fuzz targets and
//! benchmarks need that flowtop itself does not. A dev-dependency only:
//! none of it is part of flowtop's interface, and flowtop's library exports
//! none of it.
//!
//! - [`ctnetlink`]: ctnetlink messages built from flows, with the typed
//!   attributes `netlink-packet-netfilter` lacks;
//! - [`reference`]: the crate-based reference decoder, the oracle flowtop's
//!   in-place decoder is checked against;
//! - [`fuzzing`]: the fuzz targets (cargo-fuzz crate, `examples/fuzz.rs`);
//! - [`mmdb`]: a MaxMind DB writer for GeoIP test databases;
//! - [`dns`]: a misbehaving-on-demand PTR server;
//! - [`fixtures`]: captured ctnetlink bytes, a plain flow, an owner;
//! - [`netns`]: network namespaces (tests and `cargo xtask bench`);
//! - [`names`]: a dnsmasq DNS server, HTTPS record data, hand-made
//!   ClientHellos and DNS messages, programs under unique names (the names
//!   tests and `cargo xtask bench names`);
//! - [`ctlist`]: `conntrack -L -o extended,id` parsed;
//! - [`harness`]: running flowtop and traffic in namespaces, `conntrack -L`
//!   parsing, JSON flow helpers (the root-only integration tests);
//! - [`scenarios`]: the attribution scenario suite (real programs under
//!   unique names, scored on attribution and conntrack's bytes);
//! - [`skip`]: how a test that cannot run says so (and fails under `CI=true`
//!   where it must not skip).
//!
//! Type identity: this crate links flowtop's library, so a unit test inside
//! `flowtop/src` that used the flowtop-typed parts would meet two copies of
//! every flowtop type. Those tests are integration tests (`tests/`); the
//! parts without flowtop types ([`mmdb`], [`dns`], [`netns`], [`names`], [`ctlist`], [`skip`]) are
//! fine in unit tests.
//!
//! The `flowtop` feature (default) gates what needs flowtop or the heavier
//! dependencies; xtask uses [`netns`], [`ctlist`] and [`skip`] without it,
//! and `scenarios` (serde_json only) for `bench scorecard`.

pub mod ctlist;
pub mod names;
pub mod netns;
pub mod skip;

#[cfg(feature = "scenarios")]
pub mod scenarios;

#[cfg(feature = "flowtop")]
pub mod ctnetlink;
#[cfg(feature = "flowtop")]
pub mod dns;
#[cfg(feature = "flowtop")]
pub mod fixtures;
#[cfg(feature = "flowtop")]
pub mod fuzzing;
#[cfg(feature = "flowtop")]
pub mod harness;
#[cfg(feature = "flowtop")]
pub mod mmdb;
#[cfg(feature = "flowtop")]
pub mod reference;
