//! The server name of a TLS ClientHello, from the first bytes a TCP flow
//! sends (or, for QUIC, from the CRYPTO frames of its Initial packets).
//!
//! A hello may span several TCP segments (post-quantum key shares make it
//! exceed one) and clients shuffle extension order, so the bytes are
//! gathered in a [`Reassembly`] up to [`MAX_HELLO`] bytes. With Encrypted
//! ClientHello the visible server_name is the outer, public name of the
//! client-facing server, not the name asked for: it is marked as such.

use std::sync::Arc;

use super::Step;

/// Bytes of a flow gathered at most; past it, a name found in what came
/// is still given, else nothing.
pub const MAX_HELLO: usize = 4096;

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ECH: u16 = 0xfe0d;
/// The largest TLSPlaintext fragment (RFC 8446 5.1).
const MAX_RECORD: usize = 1 << 14;

/// A ClientHello's server name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerName {
    /// Raw (lossy UTF-8), at most [`super::MAX_NAME`] bytes.
    pub name: Arc<str>,
    /// The hello carries an outer Encrypted ClientHello: `name` is the
    /// public name of the client-facing server, not the one asked for.
    pub outer: bool,
}

/// Why the bytes give no name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("not a TLS handshake record")]
    NotTls,
    #[error("not a ClientHello")]
    NotClientHello,
    #[error("a malformed ClientHello: {0}")]
    Malformed(&'static str),
    #[error("no server name within the first {MAX_HELLO} bytes")]
    TooLong,
}

/// What a parse of the gathered bytes gives.
pub type HelloStep = Result<Step<Option<ServerName>>, HelloError>;

/// The first bytes of a flow, gathered segment by segment.
#[derive(Debug, Default)]
pub struct Reassembly {
    buf: Vec<u8>,
}

impl Reassembly {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next segment's bytes (in stream order) and parses what is
    /// there: `NeedMore` until the hello is complete or the bound is hit.
    pub fn push(&mut self, segment: &[u8]) -> HelloStep {
        let room = MAX_HELLO.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&segment[..segment.len().min(room)]);
        parse_records(&self.buf, self.buf.len() >= MAX_HELLO)
    }

    /// Bytes gathered so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Parses TLS records carrying a ClientHello. `final_bytes`: no more will
/// come (the bound was hit), so a cut hello gives what it has so far.
pub fn parse_records(bytes: &[u8], final_bytes: bool) -> HelloStep {
    let mut hs = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        // Refuse other protocols on their first bytes, before waiting.
        if rest[0] != HANDSHAKE || rest.get(1).is_some_and(|&v| v != 3) {
            return Err(HelloError::NotTls);
        }
        let Some(header) = rest.get(..5) else {
            break;
        };
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > MAX_RECORD {
            return Err(HelloError::Malformed("record length"));
        }
        let body = &rest[5..];
        let take = body.len().min(len);
        hs.extend_from_slice(&body[..take]);
        rest = &body[take..];
        if take < len {
            break;
        }
        // A hello spanning records ends once its handshake message is
        // complete; later bytes are not ours to read.
        if handshake_len(&hs).is_some_and(|n| hs.len() >= n) {
            break;
        }
    }
    parse_handshake(&hs, final_bytes)
}

/// The length of the handshake message in `hs` (header included), once its
/// header is there.
fn handshake_len(hs: &[u8]) -> Option<usize> {
    let h = hs.get(..4)?;
    Some(4 + (usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3])))
}

/// Parses a handshake message (type, 3-byte length, body) that should be a
/// ClientHello: what TLS records carry, and what QUIC CRYPTO frames carry
/// directly. `final_bytes` as for [`parse_records`]; a hello cut there
/// gives the name seen before the cut, marked outer only if the ECH
/// extension came before the cut too.
pub fn parse_handshake(hs: &[u8], final_bytes: bool) -> HelloStep {
    let Some(&kind) = hs.first() else {
        return if final_bytes {
            Err(HelloError::TooLong)
        } else {
            Ok(Step::NeedMore)
        };
    };
    if kind != CLIENT_HELLO {
        return Err(HelloError::NotClientHello);
    }
    let Some(total) = handshake_len(hs) else {
        return if final_bytes {
            Err(HelloError::TooLong)
        } else {
            Ok(Step::NeedMore)
        };
    };
    let complete = hs.len() >= total;
    let body = &hs[4..hs.len().min(total)];
    let mut found = Found::default();
    match walk(body, complete, &mut found) {
        Ok(()) => Ok(Step::Done(found.name())),
        Err(Short) if complete => Err(HelloError::Malformed("lengths overrun the message")),
        Err(Short) if !final_bytes => Ok(Step::NeedMore),
        // Cut at the bound: a name seen before the cut still counts.
        Err(Short) => match found.name() {
            Some(n) => Ok(Step::Done(Some(n))),
            None => Err(HelloError::TooLong),
        },
    }
}

#[derive(Default)]
struct Found {
    sni: Option<Arc<str>>,
    ech_outer: bool,
}

impl Found {
    fn name(&self) -> Option<ServerName> {
        self.sni.clone().map(|name| ServerName {
            name,
            outer: self.ech_outer,
        })
    }
}

/// The bytes ran out before a length said they would.
struct Short;

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        if self.0.len() < n {
            return Err(Short);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Short> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Result<&'a [u8], Short> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Result<&'a [u8], Short> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// ClientHello body (RFC 8446 4.1.2): version, random, session id, cipher
/// suites, compression methods, extensions. Extensions are read one by one
/// so that a hello cut at the bound still yields a name seen before the cut.
fn walk(body: &[u8], complete: bool, found: &mut Found) -> Result<(), Short> {
    let mut r = Reader(body);
    r.take(2 + 32)?;
    r.vec8()?;
    r.vec16()?;
    r.vec8()?;
    if r.0.is_empty() {
        // No extensions at all (TLS 1.0-style hello): no name, once the
        // message is known to end here.
        return if complete { Ok(()) } else { Err(Short) };
    }
    let ext_len = usize::from(r.u16()?);
    let mut exts = Reader(&r.0[..r.0.len().min(ext_len)]);
    let whole_list = r.0.len() >= ext_len;
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        match kind {
            EXT_SERVER_NAME if found.sni.is_none() => found.sni = host_name(data),
            // ECHClientHello: type 0 is outer (RFC draft-ietf-tls-esni 5).
            EXT_ECH => found.ech_outer = data.first() == Some(&0),
            _ => {}
        }
    }
    if whole_list {
        Ok(())
    } else {
        Err(Short)
    }
}

/// The host_name of a server_name extension (RFC 6066 3).
fn host_name(data: &[u8]) -> Option<Arc<str>> {
    let mut r = Reader(data);
    let mut list = Reader(r.vec16().ok()?);
    while !list.0.is_empty() {
        let kind = list.u8().ok()?;
        let name = list.vec16().ok()?;
        if kind == 0 {
            return super::bounded_name(name);
        }
    }
    None
}

#[cfg(test)]
#[path = "hello_tests.rs"]
mod tests;
