//! Shared test data: a plain flow, an owner, the ctnetlink captures under
//! `data/` (captures) and where the fuzz corpus is.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use flowtop::attribution::{How, Owner};
use flowtop::flow::model::{Family, Flow, Tuple};

/// A dump of a test namespace captured from Linux 6.18 (see data/README.md).
pub const DUMP: &[u8] = include_bytes!("../data/dump.bin");
/// NEW, UPDATE (mark set) and DESTROY of one TCP entry, captured likewise.
pub const EVENTS: &[u8] = include_bytes!("../data/events.bin");

/// The workspace root (this crate lives in `<root>/flowtop-testkit`).
pub fn workspace_dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// `flowtop/fuzz/corpus`: one directory of seed inputs per fuzz target.
pub fn fuzz_corpus_dir() -> PathBuf {
    workspace_dir().join("flowtop/fuzz/corpus")
}

/// A TCP flow between two documentation addresses, no state or counters.
pub fn test_flow() -> Flow {
    let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    Flow {
        id: 1,
        family: Family::Ipv4,
        proto: 6,
        state: None,
        orig: Tuple {
            src: a,
            dst: b,
            sport: Some(1),
            dport: Some(2),
            icmp: None,
        },
        reply: Tuple {
            src: b,
            dst: a,
            sport: Some(2),
            dport: Some(1),
            icmp: None,
        },
        status: 0,
        mark: 0,
        zone: 0,
        timeout: None,
        counters: None,
        start_ns: None,
    }
}

/// An owner with the given strings (tests of hostile names).
pub fn owner(pid: u32, comm: &str, exe: Option<&str>) -> Arc<Owner> {
    Arc::new(Owner {
        pid,
        comm: comm.to_owned(),
        exe: exe.map(str::to_owned),
        uid: 0,
        how: How::Procfs,
        ..Default::default()
    })
}
