//! The `/` filter: whitespace-separated terms that must all match.
//!
//! A term is `pid:N`, `comm:TEXT`, `exe:TEXT`, `port:N|NAME`, `host:TEXT`,
//! `cc:CODE`, `state:TEXT`, `proto:NAME|N`, `ctr:TEXT` (container id,
//! name or runtime), `unit:TEXT` (systemd unit), `app:TEXT` (flatpak or
//! snap application id), or free text matched
//! (case-insensitively) against the process, addresses, names, ports,
//! services, country and state. Only these prefixes are prefixes:
//! `2001:db8::1` is free text. Process terms match either local end of a
//! flow: its owner, or the peer of a local flow. `host:` and free text
//! match the name the flow's program asked for (`dst_name`) as well as the
//! reverse DNS names and the numbers of both ends.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;

use crate::flow::model::proto;
use crate::flow::table::Entry;

use super::rows::RowCtx;

/// One term of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Pid(u32),
    Comm(String),
    Exe(String),
    Port(PortTerm),
    Host(String),
    Country(String),
    State(String),
    Proto(u8),
    /// Issue 15: the owner's container, unit and application.
    Container(String),
    Unit(String),
    App(String),
    Text(String),
}

/// `port:443` or `port:https`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortTerm {
    Number(u16),
    Service(String),
}

/// A parsed filter; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub terms: Vec<Term>,
}

/// Why a filter could not be parsed (shown in the header).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("pid: wants a number, not {0:?}")]
    Pid(String),
    #[error("proto: unknown protocol {0:?}")]
    Proto(String),
    #[error("{0}: wants a value")]
    Empty(&'static str),
}

fn proto_by_name(s: &str) -> Option<u8> {
    if let Ok(n) = s.parse::<u8>() {
        return Some(n);
    }
    (0..=255u8).find(|&p| proto::name(p).is_some_and(|n| n.eq_ignore_ascii_case(s)))
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let mut terms = Vec::new();
        for word in text.split_whitespace() {
            let term = match word.split_once(':') {
                Some((prefix, value)) => {
                    let known = [
                        "pid", "comm", "exe", "port", "host", "cc", "state", "proto", "ctr", "unit", "app",
                    ];
                    match known.iter().find(|k| k.eq_ignore_ascii_case(prefix)) {
                        Some(&k) if value.is_empty() => return Err(FilterError::Empty(k)),
                        Some(&"pid") => Term::Pid(value.parse().map_err(|_| FilterError::Pid(value.into()))?),
                        Some(&"comm") => Term::Comm(value.to_lowercase()),
                        Some(&"exe") => Term::Exe(value.to_lowercase()),
                        Some(&"port") => Term::Port(match value.parse() {
                            Ok(n) => PortTerm::Number(n),
                            Err(_) => PortTerm::Service(value.to_lowercase()),
                        }),
                        Some(&"host") => Term::Host(value.to_lowercase()),
                        Some(&"cc") => Term::Country(value.to_lowercase()),
                        Some(&"state") => Term::State(value.to_lowercase()),
                        Some(&"proto") => {
                            Term::Proto(proto_by_name(value).ok_or_else(|| FilterError::Proto(value.into()))?)
                        }
                        Some(&"ctr") => Term::Container(value.to_lowercase()),
                        Some(&"unit") => Term::Unit(value.to_lowercase()),
                        Some(&"app") => Term::App(value.to_lowercase()),
                        _ => Term::Text(word.to_lowercase()),
                    }
                }
                None => Term::Text(word.to_lowercase()),
            };
            terms.push(term);
        }
        Ok(Filter { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// A matcher for one pass over a snapshot: what depends only on an
    /// address (names, geography) is worked out once per address, since
    /// many flows share one.
    pub fn matcher<'a>(&'a self, ctx: RowCtx<'a>) -> Matcher<'a> {
        Matcher {
            filter: self,
            ctx,
            by_address: RefCell::default(),
        }
    }
}

/// Matches flows against a [`Filter`] (see [`Filter::matcher`]).
pub struct Matcher<'a> {
    filter: &'a Filter,
    ctx: RowCtx<'a>,
    /// (term index, address) -> whether the term matches that address.
    by_address: RefCell<HashMap<(usize, IpAddr), bool>>,
}

impl Matcher<'_> {
    /// Whether every term matches the flow.
    pub fn matches(&self, e: &Entry) -> bool {
        self.filter
            .terms
            .iter()
            .enumerate()
            .all(|(i, t)| self.term_matches(i, t, e))
    }

    /// Whether term `i` matches address `ip` (cached).
    fn address(&self, i: usize, t: &Term, ip: IpAddr) -> bool {
        if let Some(&hit) = self.by_address.borrow().get(&(i, ip)) {
            return hit;
        }
        let ctx = &self.ctx;
        let hit = match t {
            Term::Host(s) => host_matches(ip, s, ctx),
            Term::Country(cc) => ctx.country_of(ip).is_some_and(|c| c.eq_ignore_ascii_case(cc)),
            Term::Text(s) => host_matches(ip, s, ctx) || ctx.geo_of(ip).is_some_and(|g| contains(&g, s)),
            _ => false,
        };
        self.by_address.borrow_mut().insert((i, ip), hit);
        hit
    }

    fn term_matches(&self, i: usize, t: &Term, e: &Entry) -> bool {
        let f = &e.flow;
        let any_end = || ends(e).into_iter().any(|ip| self.address(i, t, ip));
        match t {
            Term::Pid(pid) => processes(e).any(|o| o.pid == *pid),
            Term::Comm(s) => processes(e).any(|o| contains(&o.comm, s)),
            Term::Exe(s) => processes(e).any(|o| o.exe.as_deref().is_some_and(|x| contains(x, s))),
            Term::Port(p) => port_matches(e, p, &self.ctx),
            Term::Host(s) => name_matches(e, s) || any_end(),
            Term::Country(_) => any_end(),
            Term::State(s) => f.state.is_some_and(|st| contains(st.name(), s)),
            Term::Proto(p) => f.proto == *p,
            Term::Container(_) | Term::Unit(_) | Term::App(_) => identity_matches(e, t),
            Term::Text(s) => text_matches(e, s, &self.ctx) || name_matches(e, s) || any_end(),
        }
    }
}

/// `ctr:`, `unit:` and `app:` against the identity of either local end's
/// process (a container matches by id, name or runtime).
fn identity_matches(e: &Entry, t: &Term) -> bool {
    processes(e)
        .filter_map(|o| o.identity.as_deref())
        .any(|id| match t {
            Term::Container(s) => id.container.as_ref().is_some_and(|c| {
                contains(&c.id, s)
                    || c.name.as_deref().is_some_and(|n| contains(n, s))
                    || contains(c.runtime, s)
            }),
            Term::Unit(s) => id.unit.as_deref().is_some_and(|u| contains(u, s)),
            Term::App(s) => id.app.as_deref().is_some_and(|a| contains(a, s)),
            _ => false,
        })
}

/// Whether `hay` contains `needle` (lowercase) regardless of case; without
/// allocating for ASCII text, the common case.
fn contains(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if hay.is_ascii() {
        hay.as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    } else {
        hay.to_lowercase().contains(needle)
    }
}

/// The processes of a flow's local ends: its owner, and the peer of a
/// local flow.
fn processes(e: &Entry) -> impl Iterator<Item = &crate::flow::model::Owner> {
    e.owner.as_deref().into_iter().chain(e.peer.as_deref())
}

/// The addresses of both ends of the original tuple.
fn ends(e: &Entry) -> [IpAddr; 2] {
    [e.flow.orig.src, e.flow.orig.dst]
}

/// Whether the name the flow's program asked for contains `needle`.
fn name_matches(e: &Entry, needle: &str) -> bool {
    e.name.as_ref().is_some_and(|n| contains(&n.name, needle))
}

fn host_matches(ip: IpAddr, needle: &str, ctx: &RowCtx<'_>) -> bool {
    contains(&ip.to_string(), needle)
        || ctx.book.with(ip, |v| {
            v.and_then(|v| v.host()).is_some_and(|h| contains(h, needle))
        })
}

fn port_matches(e: &Entry, t: &PortTerm, ctx: &RowCtx<'_>) -> bool {
    let f = &e.flow;
    [f.orig.sport, f.orig.dport]
        .into_iter()
        .flatten()
        .any(|p| match t {
            PortTerm::Number(n) => p == *n,
            PortTerm::Service(s) => ctx
                .services
                .name(f.proto, p)
                .is_some_and(|n| n.eq_ignore_ascii_case(s)),
        })
}

/// Free text against the fields of the row that are not about an address
/// (those are matched once per address, see [`Matcher`]).
fn text_matches(e: &Entry, s: &str, ctx: &RowCtx<'_>) -> bool {
    let f = &e.flow;
    let number = s.parse::<u32>().ok();
    if let Some(o) = &e.owner {
        if contains(&o.comm, s) || number == Some(o.pid) || o.exe.as_deref().is_some_and(|x| contains(x, s)) {
            return true;
        }
    }
    let port_hit = [f.orig.sport, f.orig.dport].into_iter().flatten().any(|p| {
        number == Some(u32::from(p)) || ctx.services.name(f.proto, p).is_some_and(|n| contains(n, s))
    });
    port_hit
        || f.state.is_some_and(|st| contains(st.name(), s))
        || proto::name(f.proto).is_some_and(|n| n == s)
}
