//! Enrichment: names for what a flow's numbers mean. This version has the
//! service names of ports; reverse DNS and GeoIP come next.

pub mod services;
