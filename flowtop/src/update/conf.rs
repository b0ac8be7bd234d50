//! `geoip.conf`: the mirrors `flowtop -u` downloads from.
//!
//! One mirror per line: a base URL (`https://host[:port]/path/` or
//! `http://...`) or a bare host (`host[:port][/path]`, meaning
//! `https://host/...`). `#` starts a comment; blank lines are ignored. A
//! malformed line is skipped with a warning naming file and line. The file
//! is looked for in `--conf-dir`, then `/etc/flowtop/`, then
//! `/etc/netsniff-ng/`; the first one found is the only one read (mirror
//! lists do not merge: a more specific file replaces the others).

use std::path::{Path, PathBuf};

/// The file name.
pub const FILE: &str = "geoip.conf";

/// The directories searched, in order.
pub fn search_path(conf_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = conf_dir.map(Path::to_path_buf).into_iter().collect();
    dirs.push(PathBuf::from("/etc/flowtop"));
    dirs.push(PathBuf::from("/etc/netsniff-ng"));
    dirs
}

/// The first `geoip.conf` that exists in `dirs`.
pub fn find(dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(FILE)).find(|p| p.exists())
}

/// A mirror: the base URL file names are appended to (ends with `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub base: String,
}

impl Mirror {
    pub fn url(&self, file: &str) -> String {
        format!("{}{file}", self.base)
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`, with a valid port.
fn valid_authority(a: &str) -> Result<(), String> {
    if a.is_empty() {
        return Err("the host is empty".into());
    }
    if a.contains('@') {
        return Err("user names or passwords in mirror URLs are not supported".into());
    }
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or("unclosed '[' in the host")?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("'{v6}' is not an IPv6 address"));
        }
        match after {
            "" => (None, None),
            p => (None, Some(p.strip_prefix(':').ok_or("junk after ']'")?)),
        }
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(a), None),
        }
    };
    if let Some(h) = host {
        let ok = !h.is_empty()
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            });
        if !ok {
            return Err(format!("'{h}' is not a host name or address"));
        }
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return Err(format!("'{p}' is not a port number")),
        }
    }
    Ok(())
}

/// One line, without its comment. `Ok(None)` for a blank line.
fn parse_line(line: &str) -> Result<Option<Mirror>, String> {
    let line = line.split('#').next().unwrap_or("").trim();
    if line.is_empty() {
        return Ok(None);
    }
    if line.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("expected one URL or host per line".into());
    }
    let (scheme, rest) = match line.split_once("://") {
        Some((s, r)) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {
            (s.to_ascii_lowercase(), r)
        }
        Some((s, _)) => return Err(format!("unsupported scheme '{s}' (use https:// or http://)")),
        None => ("https".to_owned(), line),
    };
    if rest.contains(['?', '\\']) {
        return Err("query strings and backslashes are not supported in mirror URLs".into());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    valid_authority(authority)?;
    let mut base = format!("{scheme}://{authority}{path}");
    if !base.ends_with('/') {
        base.push('/');
    }
    // The HTTP client must accept it too.
    ureq::http::Uri::try_from(base.as_str()).map_err(|e| format!("not a valid URL ({e})"))?;
    Ok(Some(Mirror { base }))
}

/// Parses a whole file; warnings carry `file:line`.
pub fn parse(text: &str, file: &str) -> (Vec<Mirror>, Vec<String>) {
    let mut mirrors = Vec::new();
    let mut warnings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(m)) => mirrors.push(m),
            Ok(None) => {}
            Err(why) => warnings.push(format!("{file}:{}: {why}; line skipped", i + 1)),
        }
    }
    (mirrors, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_hosts_comments_and_malformed_lines() {
        let text = "\
# mirrors
https://geo.example.org/mmdb/   # trailing comment

http://127.0.0.1:8080
geo.example.net
mirror.example.com:8443/pub/geoip
http://[::1]:9000/x/
ftp://old.example.org/
two words
https://
http://host:99999/
https://user:pw@host/
https://bad_host!/
http://[zz]/
https://host/?q=1
";
        let (m, w) = parse(text, "geoip.conf");
        let bases: Vec<&str> = m.iter().map(|m| m.base.as_str()).collect();
        assert_eq!(
            bases,
            [
                "https://geo.example.org/mmdb/",
                "http://127.0.0.1:8080/",
                "https://geo.example.net/",
                "https://mirror.example.com:8443/pub/geoip/",
                "http://[::1]:9000/x/",
            ]
        );
        let lines: Vec<&str> = w.iter().map(|w| w.split(": ").next().unwrap_or("")).collect();
        assert_eq!(
            lines,
            [
                "geoip.conf:8",
                "geoip.conf:9",
                "geoip.conf:10",
                "geoip.conf:11",
                "geoip.conf:12",
                "geoip.conf:13",
                "geoip.conf:14",
                "geoip.conf:15",
            ],
            "{w:?}"
        );
        assert!(w[0].contains("unsupported scheme 'ftp'"), "{w:?}");
        assert!(w.iter().all(|w| w.ends_with("line skipped")), "{w:?}");
        assert_eq!(
            m[0].url("GeoLite2-City.mmdb"),
            "https://geo.example.org/mmdb/GeoLite2-City.mmdb"
        );
    }

    #[test]
    fn the_first_file_found_wins() {
        let base = std::env::temp_dir().join(format!("flowtop-geoipconf-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        std::fs::create_dir_all(&a).expect("mkdir");
        std::fs::create_dir_all(&b).expect("mkdir");
        std::fs::write(b.join(FILE), "x\n").expect("write");
        assert_eq!(find(&[a.clone(), b.clone()]), Some(b.join(FILE)));
        std::fs::write(a.join(FILE), "y\n").expect("write");
        assert_eq!(find(&[a.clone(), b.clone()]), Some(a.join(FILE)));
        assert_eq!(find(&[base.join("none")]), None);
        let _ = std::fs::remove_dir_all(&base);
        assert_eq!(
            search_path(Some(Path::new("/c"))),
            [
                PathBuf::from("/c"),
                "/etc/flowtop".into(),
                "/etc/netsniff-ng".into()
            ]
        );
    }

    #[test]
    fn shipped_example_parses_without_warnings() {
        let (_, w) = parse(include_str!("../../../conf/geoip.conf"), "geoip.conf");
        assert!(w.is_empty(), "{w:?}");
    }
}
