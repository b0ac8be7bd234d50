//! Turning what a PTR answer or the hosts file says into the text flowtop
//! shows.
//!
//! The name is kept raw: label bytes as they came, joined with dots, without
//! the trailing dot. hickory's `Name` Display would already rewrite unusual
//! bytes as `\NNN` octal escapes (0x1b becomes the four characters `\033`), but that hides
//! them in a form the output layer cannot tell from a real backslash; flowtop
//! escapes control characters in one place (`output::safe`) for every kind of
//! outside text, so this layer only guarantees valid UTF-8 (invalid sequences
//! become U+FFFD) and a bounded length.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_resolver::proto::rr::Name;

/// Longest name accepted, in bytes of its text form (RFC 1035: 255 octets on
/// the wire are at most 253 characters as dotted text).
pub(crate) const MAX_NAME: usize = 253;

/// The text of a name from a PTR answer; `None` when it is empty (the root)
/// or too long.
pub(crate) fn ptr_text(name: &Name) -> Option<Arc<str>> {
    labels_text(name.iter())
}

/// Raw labels joined by dots, as UTF-8 (lossy), at most [`MAX_NAME`] bytes.
pub(crate) fn labels_text<'a>(labels: impl Iterator<Item = &'a [u8]>) -> Option<Arc<str>> {
    let mut raw = Vec::with_capacity(64);
    for label in labels {
        if !raw.is_empty() {
            raw.push(b'.');
        }
        raw.extend_from_slice(label);
        if raw.len() > MAX_NAME {
            return None;
        }
    }
    if raw.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&raw);
    // Replacement characters can make the text longer than the raw bytes.
    if text.len() > MAX_NAME * 3 {
        return None;
    }
    Some(Arc::from(text.as_ref()))
}

/// IP -> first name, from a hosts file (`/etc/hosts` format). As with
/// glibc's `files` source, the first line naming an address wins and its
/// first name is the canonical one; aliases are not shown.
pub(crate) fn parse_hosts(text: &str) -> HashMap<IpAddr, Arc<str>> {
    let mut map = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let (Some(addr), Some(name)) = (fields.next(), fields.next()) else {
            continue;
        };
        // Zone indices (fe80::1%eth0) name an interface, not an address.
        let Ok(ip) = addr.split('%').next().unwrap_or(addr).parse::<IpAddr>() else {
            continue;
        };
        let name = name.trim_end_matches('.');
        if name.is_empty() || name.len() > MAX_NAME {
            continue;
        }
        map.entry(ip).or_insert_with(|| Arc::from(name));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::safe::terminal_safe;

    fn name_of(labels: &[&[u8]]) -> Name {
        let mut n = Name::from_labels(labels.iter().copied()).expect("valid labels");
        n.set_fqdn(true);
        n
    }

    #[test]
    fn plain_name_without_trailing_dot() {
        let n: Name = "host.example.org.".parse().expect("name");
        assert_eq!(ptr_text(&n).as_deref(), Some("host.example.org"));
    }

    #[test]
    fn hickory_display_rewrites_control_bytes_but_we_keep_them_raw() {
        let n = name_of(&[b"evil\x1b[2J", b"line\nbreak", b"example"]);
        // What hickory's Name -> string does: octal escapes, no raw controls.
        let shown = n.to_utf8();
        assert!(!shown.contains('\u{1b}') && !shown.contains('\n'), "{shown:?}");
        assert!(shown.contains("\\033") && shown.contains("\\012"), "{shown:?}");
        // Ours: the bytes as they are, which the output layer then escapes.
        let raw = ptr_text(&n).expect("name");
        assert_eq!(&*raw, "evil\u{1b}[2J.line\nbreak.example");
        assert_eq!(terminal_safe(&raw), "evil\\x1b[2J.line\\x0abreak.example");
    }

    #[test]
    fn invalid_utf8_cannot_escape_into_the_text() {
        let n = name_of(&[b"\xff\xfe\xc3", b"\xe2\x80\xae", b"ok"]);
        let text = ptr_text(&n).expect("name");
        // Valid UTF-8 by construction; the bidi override U+202E survives raw
        // and is escaped by the output layer.
        assert_eq!(&*text, "\u{fffd}\u{fffd}\u{fffd}.\u{202e}.ok");
        assert_eq!(terminal_safe(&text), "\u{fffd}\u{fffd}\u{fffd}.\\u{202e}.ok");
    }

    #[test]
    fn too_long_and_empty_names_are_refused() {
        let label = [b'a'; 63];
        let ok = [&label[..], &label[..], &label[..], &label[..61]];
        assert_eq!(labels_text(ok.iter().copied()).map(|s| s.len()), Some(253));
        let long = [&label[..], &label[..], &label[..], &label[..62]];
        assert_eq!(labels_text(long.iter().copied()), None);
        assert_eq!(ptr_text(&Name::root()), None);
    }

    #[test]
    fn hosts_first_line_and_first_name_win() {
        let map = parse_hosts(
            "# comment\n127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n\
             192.0.2.5 router.lan router # the box\n192.0.2.5 other\n\
             fe80::1%eth0 ll.lan\nnot-an-ip foo\n198.51.100.1\n",
        );
        assert_eq!(
            map.get(&"192.0.2.5".parse().expect("ip")).map(|s| &**s),
            Some("router.lan")
        );
        assert_eq!(
            map.get(&"::1".parse().expect("ip")).map(|s| &**s),
            Some("localhost")
        );
        assert_eq!(
            map.get(&"fe80::1".parse().expect("ip")).map(|s| &**s),
            Some("ll.lan")
        );
        assert!(!map.contains_key(&"198.51.100.1".parse().expect("ip")));
        assert_eq!(map.len(), 4);
    }
}
