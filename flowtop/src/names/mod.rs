//! The name the program asked for, from what crossed this host: DNS answers
//! delivered to local sockets (`dns`), the first bytes a connection sends
//! (`hello` for the TLS ClientHello SNI, `http` for the HTTP/1 `Host`
//! header) and the Initial packets of a QUIC connection (`quic`, whose
//! ClientHello `hello` reads). `book` keeps the DNS answers per process and
//! host-wide, bounded.
//!
//! Everything here is pure (bytes in, names out); capture lives elsewhere.
//! Names are untrusted: they are kept raw (lossy UTF-8) but bounded in
//! length, and outputs escape them (`output::safe`).

pub mod book;
pub mod capture;
pub mod dns;
pub mod hello;
pub mod http;
pub mod quic;
pub mod tracker;

use std::sync::Arc;

/// Longest name kept, in bytes of its text (a DNS name is at most 253
/// characters as dotted text; SNI and Host are held to the same bound).
pub const MAX_NAME: usize = 253;

/// Where a name came from, as `dst_name_source` will say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A DNS answer the host (or the process) received.
    Dns,
    /// The TLS ClientHello's server_name.
    Sni,
    /// The HTTP/1 `Host` header.
    Http,
    /// The server_name of a QUIC Initial's ClientHello.
    Quic,
}

impl Source {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Dns => "dns",
            Source::Sni => "sni",
            Source::Http => "http",
            Source::Quic => "quic",
        }
    }
}

/// Progress of a parser that reads the first bytes of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<T> {
    /// The bytes so far end before the answer; feed more.
    NeedMore,
    /// Finished: the answer (None when the message names nothing).
    Done(T),
}

/// Raw bytes as a bounded name: lossy UTF-8, no trailing dot; None when
/// empty or longer than [`MAX_NAME`].
pub(crate) fn bounded_name(raw: &[u8]) -> Option<Arc<str>> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    if raw.is_empty() || raw.len() > MAX_NAME {
        return None;
    }
    Some(Arc::from(String::from_utf8_lossy(raw).as_ref()))
}
