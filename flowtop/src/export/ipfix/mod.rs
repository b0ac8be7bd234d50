//! IPFIX (RFC 7011) export: each flow as two uniflow records (original and
//! reply direction) with the local process in ntop's enterprise fields
//! (PEN 35632), so that stock collectors (pmacct's nfacctd, nfdump,
//! goflow2) count both directions and can show the program.
//!
//! [`delta`] turns the engine's changes into records whose counters are
//! deltas that sum to conntrack's; [`encode`] writes templates and
//! messages; [`exporter`] is the thread that sends them over UDP or TCP.

pub mod delta;
pub mod encode;
pub mod exporter;

use std::net::IpAddr;
use std::sync::Arc;

use crate::flow::model::Owner;
use crate::names::tracker::FlowName;

/// `flowEndReason` (IANA element 136) values.
pub mod end_reason {
    pub const IDLE_TIMEOUT: u8 = 1;
    pub const ACTIVE_TIMEOUT: u8 = 2;
    pub const END_OF_FLOW: u8 = 3;
    pub const FORCED_END: u8 = 4;
}

/// One uniflow record, owned, as the engine hands it to the exporter
/// thread (which encodes it). The processes are shared, not copied.
#[derive(Debug, Clone)]
pub struct Record {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// ICMP type * 256 + code (0 for other protocols).
    pub icmp_type_code: u16,
    pub octets: u64,
    pub packets: u64,
    pub start_ms: u64,
    pub end_ms: u64,
    pub end_reason: u8,
    /// The addresses and ports after NAT (equal to the above without NAT).
    pub post_src: IpAddr,
    pub post_dst: IpAddr,
    pub post_sport: u16,
    pub post_dport: u16,
    /// The process that sent this direction's packets (the local end that
    /// is its source), and the one that received them.
    pub src_proc: Option<Arc<Owner>>,
    pub dst_proc: Option<Arc<Owner>>,
    /// The asked-for name, exported by its source: HTTP_HOST or SSL_SERVER_NAME.
    pub name: Option<Arc<FlowName>>,
}

impl Record {
    pub fn is_ipv6(&self) -> bool {
        self.src.is_ipv6()
    }
}
