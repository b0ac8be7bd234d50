//! One DNS response, as a socket receives it, turned into address -> asked-for
//! name pairs.
//!
//! The name that matters is the one the program asked for (the question),
//! not the canonical name at the end of a CNAME chain: `api.github.com`, not
//! `lb-140-82-112-6-iad.github.com`. So every A/AAAA record whose owner is
//! the question name or reachable from it by CNAME (or by an HTTPS/SVCB
//! target) belongs to the question name, and so do the ipv4hint/ipv6hint
//! addresses of HTTPS/SVCB records on that chain.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::proto::op::{Message, MessageType};
use hickory_resolver::proto::rr::rdata::svcb::SvcParamValue;
use hickory_resolver::proto::rr::rdata::SVCB;
use hickory_resolver::proto::rr::{Name, RData};

/// Answers taken from one message at most; the rest are ignored (a real
/// response rarely has more than a few dozen addresses).
pub const MAX_ANSWERS: usize = 64;
/// Answer records looked at, at most: a 64 KiB TCP message can hold
/// thousands, and following chains costs records x chain length per pass.
pub const MAX_RECORDS: usize = 256;
/// Longest CNAME/SVCB chain followed (loops end here too).
pub const MAX_CHAIN: usize = 16;
/// TTL bounds: a 0 s answer still names the connection that follows it at
/// once, and a week-long TTL must not pin memory for a week.
pub const MIN_TTL: Duration = Duration::from_secs(5);
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// How the bytes were framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A UDP payload: the message itself.
    Udp,
    /// A TCP stream's message: a 2-byte big-endian length, then the message.
    Tcp,
}

/// One address and the name the program asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub addr: IpAddr,
    /// The question name, raw (lossy UTF-8), at most [`super::MAX_NAME`] bytes.
    pub name: Arc<str>,
    /// The smallest TTL on the chain to this address, clamped to
    /// [`MIN_TTL`]..=[`MAX_TTL`].
    pub ttl: Duration,
}

/// Why a message gave no answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("a DNS query, not a response")]
    Query,
    #[error("a truncated DNS message")]
    Truncated,
    #[error("a malformed DNS message: {0}")]
    Malformed(String),
    #[error("a DNS response without a usable question")]
    NoQuestion,
}

/// The answers in one response; an error for queries, truncated or
/// malformed input. A response with an error code has no answers (Ok, empty).
pub fn parse_response(bytes: &[u8], framing: Framing) -> Result<Vec<Answer>, DnsError> {
    let msg = match framing {
        Framing::Udp => bytes,
        Framing::Tcp => {
            let Some((len, rest)) = bytes.split_first_chunk::<2>() else {
                return Err(DnsError::Truncated);
            };
            let len = usize::from(u16::from_be_bytes(*len));
            // Only the first message of the segment counts; the rest is the
            // next message's business.
            rest.get(..len).ok_or(DnsError::Truncated)?
        }
    };
    // The header alone tells a query or a truncated answer: no need to
    // decode the rest (and hickory would decode a query happily).
    let Some(flags) = msg.get(2) else {
        return Err(DnsError::Truncated);
    };
    if msg.len() < 12 {
        return Err(DnsError::Truncated);
    }
    if flags & 0x80 == 0 {
        return Err(DnsError::Query);
    }
    if flags & 0x02 != 0 {
        return Err(DnsError::Truncated);
    }
    let message = Message::from_vec(msg).map_err(|e| DnsError::Malformed(e.to_string()))?;
    if message.metadata.message_type != MessageType::Response {
        return Err(DnsError::Query);
    }
    let question = message.queries.first().ok_or(DnsError::NoQuestion)?;
    let asked = super::bounded_name(&name_bytes(question.name())).ok_or(DnsError::NoQuestion)?;
    Ok(collect(&message, question.name(), &asked))
}

/// Raw label bytes joined by dots.
fn name_bytes(name: &Name) -> Vec<u8> {
    let mut raw = Vec::with_capacity(64);
    for label in name.iter() {
        if !raw.is_empty() {
            raw.push(b'.');
        }
        raw.extend_from_slice(label);
    }
    raw
}

fn clamp(ttl: u32) -> Duration {
    Duration::from_secs(u64::from(ttl)).clamp(MIN_TTL, MAX_TTL)
}

/// The names on the chain from `question` (each with the smallest TTL of
/// the links to it), then the addresses owned by any of them.
fn collect(message: &Message, question: &Name, asked: &Arc<str>) -> Vec<Answer> {
    let records = &message.answers[..message.answers.len().min(MAX_RECORDS)];
    let mut chain: Vec<(Name, u32)> = vec![(question.clone(), u32::MAX)];
    // Each pass adds the names one link further; a chain longer than
    // MAX_CHAIN (or a loop) stops growing here.
    for _ in 0..MAX_CHAIN {
        let mut grew = false;
        for r in records {
            let Some(&(_, ttl)) = chain.iter().find(|(n, _)| *n == r.name) else {
                continue;
            };
            let next = match &r.data {
                RData::CNAME(c) => Some(&c.0),
                RData::HTTPS(h) => svcb_target(&h.0),
                RData::SVCB(s) => svcb_target(s),
                _ => None,
            };
            if let Some(next) = next {
                if chain.len() < MAX_CHAIN && !chain.iter().any(|(n, _)| n == next) {
                    chain.push((next.clone(), ttl.min(r.ttl)));
                    grew = true;
                }
            }
        }
        if !grew {
            break;
        }
    }
    let mut out = Vec::new();
    for r in records {
        let Some(&(_, ttl)) = chain.iter().find(|(n, _)| *n == r.name) else {
            continue;
        };
        let ttl = clamp(ttl.min(r.ttl));
        let mut push = |addr: IpAddr| {
            if out.len() < MAX_ANSWERS && !out.iter().any(|a: &Answer| a.addr == addr) {
                out.push(Answer {
                    addr,
                    name: asked.clone(),
                    ttl,
                });
            }
        };
        match &r.data {
            RData::A(a) => push(IpAddr::V4(a.0)),
            RData::AAAA(a) => push(IpAddr::V6(a.0)),
            RData::HTTPS(h) => svcb_hints(&h.0, &mut push),
            RData::SVCB(s) => svcb_hints(s, &mut push),
            _ => {}
        }
    }
    out
}

/// The TargetName of an SVCB/HTTPS record when it names another host ("."
/// means the owner itself).
fn svcb_target(s: &SVCB) -> Option<&Name> {
    (!s.target_name.is_root()).then_some(&s.target_name)
}

fn svcb_hints(s: &SVCB, push: &mut impl FnMut(IpAddr)) {
    for (_, value) in &s.svc_params {
        match value {
            SvcParamValue::Ipv4Hint(h) => h.0.iter().for_each(|a| push(IpAddr::V4(a.0))),
            SvcParamValue::Ipv6Hint(h) => h.0.iter().for_each(|a| push(IpAddr::V6(a.0))),
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
