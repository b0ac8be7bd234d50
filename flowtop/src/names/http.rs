//! The HTTP/1 `Host` header from the first bytes of a request.
//!
//! Only the request line and headers are looked at, up to [`MAX_HEAD`]
//! bytes; the value is the name the client asked for, its port suffix
//! removed (a bracketed IPv6 literal keeps its brackets).

use std::sync::Arc;

use super::Step;

/// Bytes of the request head looked at, at most.
pub const MAX_HEAD: usize = 4096;

/// Methods of RFC 9110 and the common WebDAV ones: the first bytes of a
/// request must be one of them and a space, else it is not HTTP/1.
const METHODS: &[&[u8]] = &[
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"CONNECT",
    b"OPTIONS",
    b"TRACE",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("not an HTTP/1 request")]
    NotHttp,
    #[error("no end of the request head within the first {MAX_HEAD} bytes")]
    TooLong,
}

/// The Host of the request whose first bytes are `bytes` (as gathered so
/// far): `NeedMore` until the head is complete, `Done(None)` without a
/// usable Host header.
pub fn host(bytes: &[u8]) -> Result<Step<Option<Arc<str>>>, HttpError> {
    let bytes = &bytes[..bytes.len().min(MAX_HEAD)];
    let method_end = bytes.iter().position(|&b| b == b' ');
    match method_end {
        Some(n) if METHODS.contains(&&bytes[..n]) => {}
        Some(_) => return Err(HttpError::NotHttp),
        None if bytes.len() <= 7 && METHODS.iter().any(|m| m.starts_with(bytes)) => {
            return Ok(Step::NeedMore)
        }
        None => return Err(HttpError::NotHttp),
    }
    let mut lines = bytes.split(|&b| b == b'\n');
    let request_line = lines.next().unwrap_or_default();
    // A complete request line names its version; HTTP/2's preface
    // ("PRI * HTTP/2.0") and HTTP/0.9 have no Host header to give.
    let line_done = bytes.len() > request_line.len();
    if line_done && !request_line.windows(7).any(|w| w == b" HTTP/1") {
        return Err(HttpError::NotHttp);
    }
    let mut seen = request_line.len() + 1;
    for line in lines {
        // The last piece has no newline yet: the head goes on.
        if seen + line.len() >= bytes.len() {
            break;
        }
        seen += line.len() + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Ok(Step::Done(None));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(b"host") {
            return Ok(Step::Done(value(&line[colon + 1..])));
        }
    }
    if bytes.len() >= MAX_HEAD {
        Err(HttpError::TooLong)
    } else {
        Ok(Step::NeedMore)
    }
}

/// A Host value without surrounding whitespace and port; None for an
/// address literal (`127.0.0.1`, `[2001:db8::1]`): the program asked for
/// no name then, and the flow's address already says that much.
fn value(raw: &[u8]) -> Option<Arc<str>> {
    let v = raw.trim_ascii();
    if v.starts_with(b"[") {
        // [v6]:port: an IPv6 literal, whatever follows.
        return None;
    }
    let host = match v.iter().rposition(|&b| b == b':') {
        Some(i) if v[i + 1..].iter().all(u8::is_ascii_digit) => &v[..i],
        _ => v,
    };
    if std::str::from_utf8(host).is_ok_and(|h| h.parse::<std::net::Ipv4Addr>().is_ok()) {
        return None;
    }
    super::bounded_name(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(s: &str) -> Result<Step<Option<Arc<str>>>, HttpError> {
        Ok(Step::Done(Some(s.into())))
    }

    #[test]
    fn host_header_forms() {
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
            done("example.com")
        );
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nhOsT:example.com:8080\r\n\r\n"),
            done("example.com")
        );
        assert_eq!(
            host(b"POST /x HTTP/1.1\r\nAccept: */*\r\nHOST: \t a.example \t\r\n"),
            done("a.example")
        );
        // Address literals name nothing.
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n"),
            Ok(Step::Done(None))
        );
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: 192.0.2.7:8080\r\n\r\n"),
            Ok(Step::Done(None))
        );
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: 192.0.2.7.example\r\n\r\n"),
            done("192.0.2.7.example")
        );
        // Bare LF line ends.
        assert_eq!(host(b"GET / HTTP/1.1\nHost: lf.example\n\n"), done("lf.example"));
    }

    #[test]
    fn missing_host_and_need_more() {
        assert_eq!(
            host(b"GET / HTTP/1.0\r\nAccept: */*\r\n\r\n"),
            Ok(Step::Done(None))
        );
        assert_eq!(host(b"GET / HTTP/1.1\r\nHost: exa"), Ok(Step::NeedMore));
        assert_eq!(host(b"GE"), Ok(Step::NeedMore));
        assert_eq!(host(b"GET / HTTP/1.1\r\n"), Ok(Step::NeedMore));
        assert_eq!(host(b"GET / HTTP/1.1\r\nHost:   \r\n\r\n"), Ok(Step::Done(None)));
    }

    #[test]
    fn not_http_and_bounds() {
        assert_eq!(host(b"\x16\x03\x01\x02\x00"), Err(HttpError::NotHttp));
        assert_eq!(host(b"SSH-2.0-OpenSSH_9.6\r\n"), Err(HttpError::NotHttp));
        assert_eq!(host(b"get / HTTP/1.1\r\n"), Err(HttpError::NotHttp));
        assert_eq!(host(b"GET /\r\n"), Err(HttpError::NotHttp));
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.extend_from_slice(&[b'a'; 5000]);
        assert_eq!(host(&long), Err(HttpError::TooLong));
        let mut h = b"GET / HTTP/1.1\r\nHost: ".to_vec();
        h.extend_from_slice(&[b'a'; 300]);
        h.extend_from_slice(b"\r\n\r\n");
        assert_eq!(host(&h), Ok(Step::Done(None)));
        let evil = host(b"GET / HTTP/1.1\r\nHost: \x1b[31mred\x07\r\n\r\n");
        let Ok(Step::Done(Some(n))) = evil else {
            panic!("{evil:?}")
        };
        assert_eq!(n.as_bytes(), b"\x1b[31mred\x07");
        assert!(!crate::output::safe::terminal_safe(&n)
            .chars()
            .any(char::is_control));
    }
}
