//! Enrichment: names for what a flow's numbers mean: service names of ports
//! ([`services`]) and, per address, reverse DNS and geography kept in the
//! [`book::AddressBook`].

pub mod book;
pub mod dns;
pub mod enricher;
pub mod geoip;
pub mod scope;
pub mod services;
mod sources;
pub mod start;
