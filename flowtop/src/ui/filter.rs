//! The `/` filter: whitespace-separated terms that must all match.
//!
//! A term is `pid:N`, `comm:TEXT`, `port:N|NAME`, `host:TEXT`, `cc:CODE`,
//! `state:TEXT`, `proto:NAME|N`, or free text matched (case-insensitively)
//! against the process, addresses, names, ports, services, country and
//! state. Only these prefixes are prefixes: `2001:db8::1` is free text.

use std::net::IpAddr;

use crate::flow::model::proto;
use crate::flow::table::Entry;

use super::rows::RowCtx;

/// One term of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Pid(u32),
    Comm(String),
    Port(PortTerm),
    Host(String),
    Country(String),
    State(String),
    Proto(u8),
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
                    let known = ["pid", "comm", "port", "host", "cc", "state", "proto"];
                    match known.iter().find(|k| k.eq_ignore_ascii_case(prefix)) {
                        Some(&k) if value.is_empty() => return Err(FilterError::Empty(k)),
                        Some(&"pid") => Term::Pid(value.parse().map_err(|_| FilterError::Pid(value.into()))?),
                        Some(&"comm") => Term::Comm(value.to_lowercase()),
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

    /// Whether every term matches the flow.
    pub fn matches(&self, e: &Entry, ctx: &RowCtx<'_>) -> bool {
        self.terms.iter().all(|t| term_matches(t, e, ctx))
    }
}

fn contains(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(needle)
}

/// The addresses of both ends of the original tuple.
fn ends(e: &Entry) -> [IpAddr; 2] {
    [e.flow.orig.src, e.flow.orig.dst]
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

fn term_matches(t: &Term, e: &Entry, ctx: &RowCtx<'_>) -> bool {
    let f = &e.flow;
    match t {
        Term::Pid(pid) => e.owner.as_ref().is_some_and(|o| o.pid == *pid),
        Term::Comm(s) => e.owner.as_ref().is_some_and(|o| contains(&o.comm, s)),
        Term::Port(p) => port_matches(e, p, ctx),
        Term::Host(s) => ends(e).into_iter().any(|ip| host_matches(ip, s, ctx)),
        Term::Country(cc) => ends(e)
            .into_iter()
            .any(|ip| ctx.country_of(ip).is_some_and(|c| c.eq_ignore_ascii_case(cc))),
        Term::State(s) => f.state.is_some_and(|st| contains(st.name(), s)),
        Term::Proto(p) => f.proto == *p,
        Term::Text(s) => text_matches(e, s, ctx),
    }
}

/// Free text: any of the fields a user reads on the row.
fn text_matches(e: &Entry, s: &str, ctx: &RowCtx<'_>) -> bool {
    let f = &e.flow;
    if let Some(o) = &e.owner {
        if contains(&o.comm, s) || o.pid.to_string() == s || o.exe.as_deref().is_some_and(|x| contains(x, s))
        {
            return true;
        }
    }
    if ends(e)
        .into_iter()
        .any(|ip| host_matches(ip, s, ctx) || ctx.geo_of(ip).is_some_and(|g| contains(&g, s)))
    {
        return true;
    }
    let port_hit = [f.orig.sport, f.orig.dport]
        .into_iter()
        .flatten()
        .any(|p| p.to_string() == s || ctx.services.name(f.proto, p).is_some_and(|n| contains(n, s)));
    port_hit
        || f.state.is_some_and(|st| contains(st.name(), s))
        || proto::name(f.proto).is_some_and(|n| n == s)
}
