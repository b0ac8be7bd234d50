//! The server name of a QUIC connection, from the client's Initial packets.
//!
//! Initial packets are encrypted with keys anyone can derive from the
//! packet's Destination Connection ID (RFC 9001 5.2): they hide nothing from
//! an observer, only protect against tampering. Decrypting them gives the
//! CRYPTO frames, which carry the TLS ClientHello that `hello` reads.
//! Only QUIC version 1 is understood (version 2 has other salts and labels).
//!
//! The crypto is ring's (HKDF-SHA256, AES-128-GCM and the AES header
//! protection mask of RFC 9001 5.4.3): it is already in the tree for rustls.

use std::sync::Arc;

use ring::aead::quic::{HeaderProtectionKey, AES_128};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use ring::hkdf;

use super::hello::{parse_handshake, HelloError, ServerName, MAX_HELLO};
use super::Step;

/// RFC 9001 5.2: the salt of QUIC version 1's initial secret.
const INITIAL_SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc,
    0xbb, 0x7f, 0x0a,
];
const VERSION_1: u32 = 1;
/// RFC 9000 17.2: connection IDs are at most 20 bytes in version 1.
const MAX_CID: usize = 20;
/// Frames of an Initial packet (RFC 9000 12.4).
const PADDING: u64 = 0x00;
const PING: u64 = 0x01;
const ACK: u64 = 0x02;
const ACK_ECN: u64 = 0x03;
const CRYPTO: u64 = 0x06;
const CONNECTION_CLOSE: u64 = 0x1c;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuicError {
    #[error("not a QUIC long header packet")]
    NotQuic,
    #[error("QUIC version {0:#x}, not 1")]
    Version(u32),
    #[error("the first packet is not an Initial")]
    NotInitial,
    #[error("a malformed QUIC packet: {0}")]
    Malformed(&'static str),
    #[error("the Initial does not decrypt")]
    Decrypt,
    #[error("the Initial's ClientHello: {0}")]
    Hello(HelloError),
}

/// The client's Initial keys for a Destination Connection ID.
pub struct InitialKeys {
    key: LessSafeKey,
    iv: [u8; 12],
    hp: HeaderProtectionKey,
}

impl std::fmt::Debug for InitialKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InitialKeys")
    }
}

/// An HKDF output length.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// TLS 1.3's HKDF-Expand-Label (RFC 8446 7.1) with an empty context.
fn expand_label(prk: &hkdf::Prk, label: &[u8], out: &mut [u8]) -> Result<(), QuicError> {
    let len = u16::try_from(out.len())
        .map_err(|_| QuicError::Decrypt)?
        .to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).map_err(|_| QuicError::Decrypt)?];
    let info: [&[u8]; 5] = [&len, &label_len, b"tls13 ", label, &[0]];
    prk.expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| QuicError::Decrypt)
}

impl InitialKeys {
    /// RFC 9001 5.2: initial_secret = HKDF-Extract(salt, dcid), then the
    /// "client in" secret, then its key, iv and hp.
    pub fn client(dcid: &[u8]) -> Result<Self, QuicError> {
        let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, &INITIAL_SALT_V1).extract(dcid);
        let mut secret = [0u8; 32];
        expand_label(&initial, b"client in", &mut secret)?;
        let client = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
        let (mut key, mut iv, mut hp) = ([0u8; 16], [0u8; 12], [0u8; 16]);
        expand_label(&client, b"quic key", &mut key)?;
        expand_label(&client, b"quic iv", &mut iv)?;
        expand_label(&client, b"quic hp", &mut hp)?;
        Ok(InitialKeys {
            key: LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).map_err(|_| QuicError::Decrypt)?),
            iv,
            hp: HeaderProtectionKey::new(&AES_128, &hp).map_err(|_| QuicError::Decrypt)?,
        })
    }
}

/// A QUIC variable-length integer (RFC 9000 16).
fn varint(b: &[u8], at: &mut usize) -> Result<u64, QuicError> {
    let first = *b.get(*at).ok_or(QuicError::Malformed("short varint"))?;
    let len = 1usize << (first >> 6);
    let bytes = b
        .get(*at..*at + len)
        .ok_or(QuicError::Malformed("short varint"))?;
    let mut v = u64::from(first & 0x3f);
    for &x in &bytes[1..] {
        v = v << 8 | u64::from(x);
    }
    *at += len;
    Ok(v)
}

fn usize_of(v: u64) -> Result<usize, QuicError> {
    usize::try_from(v).map_err(|_| QuicError::Malformed("length"))
}

/// A long header's fields up to its packet number.
struct Long<'a> {
    kind: u8,
    dcid: &'a [u8],
    /// Where the (protected) packet number begins.
    pn_offset: usize,
    /// The end of this packet in the datagram (its Length field).
    end: usize,
}

fn long_header(p: &[u8]) -> Result<Long<'_>, QuicError> {
    let &first = p.first().ok_or(QuicError::NotQuic)?;
    if first & 0x80 == 0 {
        return Err(QuicError::NotQuic);
    }
    let version = p.get(1..5).ok_or(QuicError::Malformed("short header"))?;
    let version = u32::from_be_bytes([version[0], version[1], version[2], version[3]]);
    if version != VERSION_1 {
        return Err(QuicError::Version(version));
    }
    let kind = (first >> 4) & 3;
    let mut at = 5;
    let cid = |at: &mut usize| -> Result<&[u8], QuicError> {
        let n = usize::from(*p.get(*at).ok_or(QuicError::Malformed("short header"))?);
        if n > MAX_CID {
            return Err(QuicError::Malformed("connection ID length"));
        }
        let id = p
            .get(*at + 1..*at + 1 + n)
            .ok_or(QuicError::Malformed("short header"))?;
        *at += 1 + n;
        Ok(id)
    };
    let dcid = cid(&mut at)?;
    cid(&mut at)?;
    match kind {
        // Initial: a token before the Length.
        0 => {
            let token = usize_of(varint(p, &mut at)?)?;
            at = at
                .checked_add(token)
                .filter(|&e| e <= p.len())
                .ok_or(QuicError::Malformed("token"))?;
        }
        // 0-RTT and Handshake: Length follows at once.
        1 | 2 => {}
        // Retry has no Length: nothing after it can be read.
        _ => return Err(QuicError::NotInitial),
    }
    let len = usize_of(varint(p, &mut at)?)?;
    let end = at
        .checked_add(len)
        .filter(|&e| e <= p.len())
        .ok_or(QuicError::Malformed("length"))?;
    Ok(Long {
        kind,
        dcid,
        pn_offset: at,
        end,
    })
}

/// Removes header protection and decrypts one Initial; the plaintext frames.
fn open(keys: &InitialKeys, p: &[u8], h: &Long<'_>) -> Result<Vec<u8>, QuicError> {
    // The sample starts 4 bytes after the packet number's start (5.4.2).
    let sample = p
        .get(h.pn_offset + 4..h.pn_offset + 20)
        .filter(|_| h.pn_offset + 20 <= h.end)
        .ok_or(QuicError::Malformed("too short to sample"))?;
    let mask = keys.hp.new_mask(sample).map_err(|_| QuicError::Decrypt)?;
    let first = p[0] ^ (mask[0] & 0x0f);
    let pn_len = usize::from(first & 3) + 1;
    let mut header = p[..h.pn_offset + pn_len].to_vec();
    header[0] = first;
    let mut pn = 0u64;
    for i in 0..pn_len {
        header[h.pn_offset + i] ^= mask[1 + i];
        pn = pn << 8 | u64::from(header[h.pn_offset + i]);
    }
    // The first packets' numbers are small: the truncated number is the
    // number (no earlier packet to expand it against).
    let mut nonce = keys.iv;
    for (n, x) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
        *n ^= x;
    }
    let mut body = p[h.pn_offset + pn_len..h.end].to_vec();
    let plain = keys
        .key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(&header), &mut body)
        .map_err(|_| QuicError::Decrypt)?;
    let n = plain.len();
    body.truncate(n);
    Ok(body)
}

/// The client's first datagrams of a QUIC connection, gathered: CRYPTO
/// frame data placed at its offsets, up to [`MAX_HELLO`] bytes.
#[derive(Debug, Default)]
pub struct QuicHello {
    keys: Option<InitialKeys>,
    crypto: Vec<u8>,
    have: Vec<bool>,
}

impl QuicHello {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one UDP datagram the client sent: `NeedMore` until the
    /// ClientHello is complete (or the bound is hit).
    pub fn push(&mut self, datagram: &[u8]) -> Result<Step<Option<ServerName>>, QuicError> {
        if datagram.is_empty() {
            return Err(QuicError::NotQuic);
        }
        let mut rest = datagram;
        let mut first = true;
        // Coalesced packets (RFC 9000 12.2): Initials, then maybe 0-RTT.
        while !rest.is_empty() {
            let h = match long_header(rest) {
                Ok(h) => h,
                // Trailing padding or a short header packet ends the walk.
                Err(_) if !first => break,
                Err(e) => return Err(e),
            };
            if h.kind != 0 {
                if first {
                    return Err(QuicError::NotInitial);
                }
                rest = &rest[h.end..];
                continue;
            }
            if self.keys.is_none() {
                // Every client Initial keeps the keys of the first one's
                // Destination Connection ID (RFC 9001 5.2).
                self.keys = Some(InitialKeys::client(h.dcid)?);
            }
            let keys = self.keys.as_ref().ok_or(QuicError::Decrypt)?;
            let plain = open(keys, rest, &h)?;
            self.frames(&plain)?;
            rest = &rest[h.end..];
            first = false;
        }
        self.hello()
    }

    /// Adds the decrypted frames of one Initial packet (what [`Self::push`]
    /// does after decryption; also the fuzz target's way past the AEAD).
    pub fn push_frames(&mut self, plain: &[u8]) -> Result<Step<Option<ServerName>>, QuicError> {
        self.frames(plain)?;
        self.hello()
    }

    /// The ClientHello in the contiguous CRYPTO bytes from offset 0.
    fn hello(&self) -> Result<Step<Option<ServerName>>, QuicError> {
        let prefix = self.have.iter().position(|&h| !h).unwrap_or(self.have.len());
        let at_bound = prefix >= MAX_HELLO;
        parse_handshake(&self.crypto[..prefix], at_bound).map_err(QuicError::Hello)
    }

    fn frames(&mut self, plain: &[u8]) -> Result<(), QuicError> {
        let mut at = 0;
        while at < plain.len() {
            match varint(plain, &mut at)? {
                PADDING | PING => {}
                kind @ (ACK | ACK_ECN) => {
                    varint(plain, &mut at)?; // largest acknowledged
                    varint(plain, &mut at)?; // delay
                    let ranges = varint(plain, &mut at)?;
                    varint(plain, &mut at)?; // first range
                    for _ in 0..ranges {
                        varint(plain, &mut at)?;
                        varint(plain, &mut at)?;
                    }
                    if kind == ACK_ECN {
                        for _ in 0..3 {
                            varint(plain, &mut at)?;
                        }
                    }
                }
                CRYPTO => {
                    let offset = usize_of(varint(plain, &mut at)?)?;
                    let len = usize_of(varint(plain, &mut at)?)?;
                    let end = at.checked_add(len).filter(|&e| e <= plain.len());
                    let data = &plain[at..end.ok_or(QuicError::Malformed("CRYPTO length"))?];
                    at += len;
                    self.place(offset, data);
                }
                CONNECTION_CLOSE => return Ok(()),
                _ => return Err(QuicError::Malformed("frame type not allowed in an Initial")),
            }
        }
        Ok(())
    }

    /// Copies the part of `data` (at stream `offset`) below the bound.
    fn place(&mut self, offset: usize, data: &[u8]) {
        if offset >= MAX_HELLO {
            return;
        }
        let end = offset.saturating_add(data.len()).min(MAX_HELLO);
        if self.crypto.len() < end {
            self.crypto.resize(end, 0);
            self.have.resize(end, false);
        }
        self.crypto[offset..end].copy_from_slice(&data[..end - offset]);
        self.have[offset..end].fill(true);
    }
}

/// The server name in one datagram holding a client's first Initial.
pub fn initial_server_name(datagram: &[u8]) -> Result<Step<Option<ServerName>>, QuicError> {
    QuicHello::new().push(datagram)
}

/// A name's text, for callers that only want the string.
pub fn name_of(step: &Step<Option<ServerName>>) -> Option<Arc<str>> {
    match step {
        Step::Done(Some(n)) => Some(n.name.clone()),
        _ => None,
    }
}

#[cfg(test)]
#[path = "quic_tests.rs"]
mod tests;
