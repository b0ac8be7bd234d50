//! Enrichment: names for what a flow's numbers mean. This version has the
//! service names of ports; reverse DNS and GeoIP come next.

pub mod geoip;
#[doc(hidden)]
pub mod mmdb_write;
pub mod scope;
pub mod services;
