//! Text from outside (process names, service names from files; later PTR
//! names and GeoIP strings) made harmless for a terminal: control
//! characters and bidirectional overrides are shown escaped (`\x1b`,
//! `\u{202e}`), so an escape sequence in a name is visible and inert.

use std::borrow::Cow;
use std::fmt::Write as _;

fn dangerous(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every dangerous character escaped; borrowed when already safe.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(dangerous) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !dangerous(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_are_shown_not_obeyed() {
        assert_eq!(
            terminal_safe("evil\u{1b}[2J\nname\u{7}"),
            "evil\\x1b[2J\\x0aname\\x07"
        );
        assert_eq!(terminal_safe("a\u{202e}b\u{9b}c"), "a\\u{202e}b\\u{9b}c");
        assert!(matches!(
            terminal_safe("nginx: worker"),
            Cow::Borrowed("nginx: worker")
        ));
    }

    proptest! {
        #[test]
        fn output_never_holds_control_characters(s in ".*") {
            let safe = terminal_safe(&s);
            prop_assert!(!safe.chars().any(dangerous));
        }
    }
}
