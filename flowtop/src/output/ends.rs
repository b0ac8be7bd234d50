//! The ends of a flow as seen from this host, and who started it: what
//! the screen and the `--once` table show in their ADDRESS column.

use std::net::IpAddr;

use crate::attribution::How;
use crate::flow::model::Direction;
use crate::flow::table::Entry;

/// The ends of a flow as seen from this host: the local one (for an
/// incoming flow the reply's source, which DNAT may have rewritten) and
/// the remote one (for an incoming flow the original source), and the
/// service port (the one that was connected to, on whichever end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ends {
    pub local: (IpAddr, Option<u16>),
    pub remote: (IpAddr, Option<u16>),
    pub service_port: Option<u16>,
}

pub fn ends(e: &Entry) -> Ends {
    let f = &e.flow;
    if e.direction == Some(Direction::In) {
        Ends {
            local: (f.reply.src, f.reply.sport),
            remote: (f.orig.src, f.orig.sport),
            service_port: f.reply.sport,
        }
    } else {
        Ends {
            local: (f.orig.src, f.orig.sport),
            remote: (f.orig.dst, f.orig.dport),
            service_port: f.orig.dport,
        }
    }
}

/// The marker before the ADDRESS: who started the flow. `→` this host
/// (outgoing), `←` the remote end (incoming), `↔` both ends are here,
/// `⇄` neither (forwarded), `·` not known (attribution off or unsure).
pub fn direction_marker(d: Option<Direction>) -> &'static str {
    match d {
        Some(Direction::Out) => "→",
        Some(Direction::In) => "←",
        Some(Direction::Local) => "↔",
        Some(Direction::Forward) => "⇄",
        None => "·",
    }
}

/// Whether the local host sends the reply direction of `e`: it accepted
/// the flow. By the direction attribution found; without one, by an owner
/// found through its listener.
pub fn local_sends_reply(e: &Entry) -> bool {
    match e.direction {
        Some(d) => d == Direction::In,
        None => e.owner.as_ref().is_some_and(|o| o.how == How::Listener),
    }
}
