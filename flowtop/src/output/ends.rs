//! The ends of a flow as seen from this host, and who started it: what
//! the screen and the `--once` table show in their ADDRESS column.

use std::net::IpAddr;

use crate::attribution::How;
use crate::flow::model::Direction;
use crate::flow::table::Entry;
use crate::names::tracker::FlowName;
use crate::names::Source;

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

/// The asked-for name of the flow's remote end (see [`ends`]): the flow's
/// name names its original destination, which is the remote end unless the
/// flow came in (then the remote end is the original source, and the name
/// is not its).
pub fn remote_asked_name(e: &Entry) -> Option<&FlowName> {
    if e.direction == Some(Direction::In) {
        return None;
    }
    e.name.as_deref()
}

/// The one-character mark before an asked-for name, by its source (ASCII,
/// so it shows on any terminal and without colour): `*` TLS SNI, `!` the
/// outer (public) name of an Encrypted ClientHello, `^` HTTP Host, `~`
/// QUIC Initial SNI, `=` a DNS answer. PTR names and numbers have none.
pub fn name_mark(n: &FlowName) -> char {
    match (n.source, n.ech_outer) {
        (_, true) => '!',
        (Source::Sni, false) => '*',
        (Source::Http, false) => '^',
        (Source::Quic, false) => '~',
        (Source::Dns, false) => '=',
    }
}

/// Where an asked-for name came from, in words (the detail view).
pub fn name_source_text(n: &FlowName) -> &'static str {
    match (n.source, n.ech_outer) {
        (Source::Quic, true) => "QUIC Initial SNI, outer name of an Encrypted ClientHello",
        (_, true) => "TLS SNI, outer name of an Encrypted ClientHello",
        (Source::Sni, false) => "TLS SNI",
        (Source::Http, false) => "HTTP Host header",
        (Source::Quic, false) => "QUIC Initial SNI",
        (Source::Dns, false) => "DNS answer",
    }
}

/// The mark and the name, made safe for a terminal: `*api.github.com`.
pub fn marked_name(n: &FlowName) -> String {
    format!("{}{}", name_mark(n), crate::output::safe::terminal_safe(&n.name))
}
