//! A minimal JSON object writer over a byte buffer, for lines whose keys are
//! constants and whose strings flowtop produced itself (names, addresses,
//! timestamps: never control characters or quotes). Text from outside
//! (process names, host names) must go through [`LineBuf::escaped_str`].

use std::io::Write as _;
use std::net::IpAddr;

pub struct LineBuf<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> LineBuf<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        LineBuf { buf }
    }

    /// `{"key":`
    pub fn first_key(&mut self, key: &str) {
        self.buf.extend_from_slice(b"{\"");
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    /// `,"key":`
    pub fn key(&mut self, key: &str) {
        self.buf.extend_from_slice(b",\"");
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    /// `}` and a newline.
    pub fn end_line(&mut self) {
        self.buf.extend_from_slice(b"}\n");
    }

    pub fn null(&mut self) {
        self.buf.extend_from_slice(b"null");
    }

    /// A string known to need no escaping.
    pub fn plain_str(&mut self, s: &str) {
        debug_assert!(
            !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'),
            "needs escaping: {s:?}"
        );
        self.buf.push(b'"');
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(b'"');
    }

    /// Any string, escaped as JSON requires.
    pub fn escaped_str(&mut self, s: &str) {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *self.buf, s);
    }

    pub fn opt_plain_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.plain_str(s),
            None => self.null(),
        }
    }

    pub fn plain_str_array<'s>(&mut self, items: impl Iterator<Item = &'s str>) {
        self.buf.push(b'[');
        for (i, s) in items.enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.plain_str(s);
        }
        self.buf.push(b']');
    }

    pub fn uint(&mut self, v: u64) {
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.extend_from_slice(if v { b"true" } else { b"false" });
    }

    pub fn opt_uint(&mut self, v: Option<u64>) {
        match v {
            Some(v) => self.uint(v),
            None => self.null(),
        }
    }

    /// A finite float as JSON (`1.0`, `0.001`); NaN and infinities as null.
    pub fn opt_float(&mut self, v: Option<f64>) {
        match v {
            Some(v) if v.is_finite() => {
                let _ = write!(self.buf, "{v:?}");
            }
            _ => self.null(),
        }
    }

    /// An address as a string; IPv4 written directly (it is most of a dump).
    pub fn ip(&mut self, a: &IpAddr) {
        self.buf.push(b'"');
        match a {
            IpAddr::V4(v4) => {
                let mut digits = itoa::Buffer::new();
                for (i, o) in v4.octets().iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b'.');
                    }
                    self.buf.extend_from_slice(digits.format(*o).as_bytes());
                }
            }
            IpAddr::V6(v6) => {
                let _ = write!(self.buf, "{v6}");
            }
        }
        self.buf.push(b'"');
    }

    /// RFC 3339 (UTC, seconds) of nanoseconds since the epoch, as a string.
    pub fn rfc3339_ns(&mut self, ns: u64) {
        let _ = write!(self.buf, "\"{}\"", super::format::rfc3339_ns(ns));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce(&mut LineBuf<'_>)) -> String {
        let mut v = Vec::new();
        f(&mut LineBuf::new(&mut v));
        String::from_utf8(v).expect("utf8")
    }

    #[test]
    fn values_render_as_json() {
        assert_eq!(
            render(|w| w.ip(&"192.0.2.10".parse().expect("ip"))),
            "\"192.0.2.10\""
        );
        assert_eq!(
            render(|w| w.ip(&"2001:db8::1".parse().expect("ip"))),
            "\"2001:db8::1\""
        );
        assert_eq!(render(|w| w.opt_float(Some(1500.0))), "1500.0");
        assert_eq!(render(|w| w.opt_float(Some(0.001))), "0.001");
        assert_eq!(render(|w| w.opt_float(Some(f64::NAN))), "null");
        assert_eq!(render(|w| w.escaped_str("a\"b\n\u{1b}")), "\"a\\\"b\\n\\u001b\"");
        assert_eq!(render(|w| w.uint(u64::MAX)), "18446744073709551615");
        assert_eq!(
            render(|w| w.rfc3339_ns(1_700_000_000_999_000_000)),
            "\"2023-11-14T22:13:20Z\""
        );
    }
}
