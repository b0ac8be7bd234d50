//! xtask's network namespaces are the tests' own: one harness, in
//! `flowtop-testkit` (`ip netns add` with loopback up, commands run inside
//! with setns before exec and killed with xtask, deleted on drop).

pub(crate) use flowtop_testkit::netns::{EtcNetns, Netns};
