//! Service names of ports, from `tcp.conf`, `udp.conf`, `sctp.conf` and
//! `dccp.conf` (`<port>, <name>` per line, the format of netsniff-ng's
//! files). Built-in tables (flowtop's own `conf/`) are overridden by
//! `/etc/netsniff-ng/`, then `/etc/flowtop/`, then `--conf-dir`: a name found
//! in a more specific place wins. A malformed line is skipped with a warning
//! naming file and line; a missing file is not an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::flow::model::{proto, Flow};

/// The files and the protocols each names.
const FILES: &[(&str, &[u8], &str)] = &[
    ("tcp.conf", &[proto::TCP], include_str!("../../../conf/tcp.conf")),
    (
        "udp.conf",
        &[proto::UDP, proto::UDPLITE],
        include_str!("../../../conf/udp.conf"),
    ),
    (
        "sctp.conf",
        &[proto::SCTP],
        include_str!("../../../conf/sctp.conf"),
    ),
    (
        "dccp.conf",
        &[proto::DCCP],
        include_str!("../../../conf/dccp.conf"),
    ),
];

/// Longest service name kept (longer ones are cut: names are shown in
/// columns and come from files anyone with write access may have edited).
const MAX_NAME: usize = 32;

/// Port -> name per protocol.
#[derive(Debug, Default, Clone)]
pub struct Services {
    names: HashMap<(u8, u16), Box<str>, foldhash::fast::RandomState>,
}

/// One line of a service file, parsed.
fn parse_line(line: &str) -> Result<Option<(u16, &str)>, String> {
    let line = line.split('#').next().unwrap_or("").trim();
    if line.is_empty() {
        return Ok(None);
    }
    let (port, name) = line.split_once(',').ok_or("expected \"<port>, <name>\"")?;
    let port: u16 = port
        .trim()
        .parse()
        .map_err(|_| format!("'{}' is not a port number", port.trim()))?;
    let name = name.trim();
    if name.is_empty() {
        return Err("the service name is empty".into());
    }
    if name.chars().any(char::is_control) {
        return Err("the service name holds control characters".into());
    }
    Ok(Some((port, name)))
}

/// Parses a whole file; warnings carry `file:line`.
pub fn parse(text: &str, file: &str) -> (Vec<(u16, String)>, Vec<String>) {
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some((port, name))) => {
                let name: String = name.chars().take(MAX_NAME).collect();
                entries.push((port, name));
            }
            Ok(None) => {}
            Err(why) => warnings.push(format!("{file}:{}: {why}; line skipped", i + 1)),
        }
    }
    (entries, warnings)
}

impl Services {
    /// The built-in tables only.
    pub fn builtin() -> Services {
        let mut s = Services::default();
        for (file, protos, text) in FILES {
            let (entries, _) = parse(text, file);
            s.add(protos, entries);
        }
        s
    }

    fn add(&mut self, protos: &[u8], entries: Vec<(u16, String)>) {
        for (port, name) in entries {
            let name: Box<str> = name.into();
            for &p in protos {
                self.names.insert((p, port), name.clone());
            }
        }
    }

    /// Built-ins overridden by the files in `dirs`, least specific first.
    /// Returns the warnings for malformed lines and unreadable files.
    pub fn load(dirs: &[PathBuf]) -> (Services, Vec<String>) {
        let mut s = Services::builtin();
        let mut warnings = Vec::new();
        for dir in dirs {
            for (file, protos, _) in FILES {
                let path = dir.join(file);
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        let text = String::from_utf8_lossy(&bytes);
                        let (entries, w) = parse(&text, &path.display().to_string());
                        warnings.extend(w);
                        s.add(protos, entries);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => warnings.push(format!("{}: {e}; file skipped", path.display())),
                }
            }
        }
        (s, warnings)
    }

    /// The directories searched, least specific first.
    pub fn search_path(conf_dir: Option<&Path>) -> Vec<PathBuf> {
        let mut dirs = vec![PathBuf::from("/etc/netsniff-ng"), PathBuf::from("/etc/flowtop")];
        dirs.extend(conf_dir.map(Path::to_path_buf));
        dirs
    }

    pub fn name(&self, proto: u8, port: u16) -> Option<&str> {
        self.names.get(&(proto, port)).map(|n| &**n)
    }

    /// The service of a flow: its destination port's, else its source's
    /// (a flow initiated from a well-known port).
    pub fn of_flow(&self, f: &Flow) -> Option<&str> {
        let by = |port: Option<u16>| port.and_then(|p| self.name(f.proto, p));
        by(f.orig.dport).or_else(|| by(f.orig.sport))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_tables_know_the_common_ports() {
        let s = Services::builtin();
        assert_eq!(s.name(proto::TCP, 22), Some("ssh"));
        assert_eq!(s.name(proto::TCP, 443), Some("https"));
        assert_eq!(s.name(proto::UDP, 53), Some("domain"));
        assert_eq!(s.name(proto::UDPLITE, 53), Some("domain"));
        assert_eq!(s.name(proto::SCTP, 3868), Some("diameter"));
        assert_eq!(s.name(proto::TCP, 1), None);
    }

    #[test]
    fn malformed_lines_warn_with_file_and_line_and_are_skipped() {
        let text =
            "22, ssh\nnot a line\n70000, big\n80,\n# comment\n\n8080, web # trailing\n99, bad\u{1b}[2J\n";
        let (entries, warnings) = parse(text, "tcp.conf");
        assert_eq!(entries, vec![(22, "ssh".to_owned()), (8080, "web".to_owned())]);
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings[0].starts_with("tcp.conf:2:"), "{warnings:?}");
        assert!(
            warnings[1].starts_with("tcp.conf:3:") && warnings[1].contains("70000"),
            "{warnings:?}"
        );
        assert!(warnings[2].starts_with("tcp.conf:4:"), "{warnings:?}");
        assert!(warnings[3].starts_with("tcp.conf:8:"), "{warnings:?}");
    }

    #[test]
    fn more_specific_directories_win_and_missing_files_are_fine() {
        let base = std::env::temp_dir().join(format!("flowtop-services-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        std::fs::create_dir_all(&a).expect("mkdir");
        std::fs::create_dir_all(&b).expect("mkdir");
        std::fs::write(a.join("tcp.conf"), "22, secure-shell\n8080, proxy\n").expect("write");
        std::fs::write(b.join("tcp.conf"), "8080, my-app\nbroken\n").expect("write");
        let (s, warnings) = Services::load(&[a, b.clone(), base.join("missing")]);
        assert_eq!(s.name(proto::TCP, 22), Some("secure-shell"));
        assert_eq!(s.name(proto::TCP, 8080), Some("my-app"));
        assert_eq!(
            s.name(proto::UDP, 53),
            Some("domain"),
            "built-ins stay under the files"
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains(&format!("{}:2:", b.join("tcp.conf").display())),
            "{warnings:?}"
        );
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn long_names_are_cut() {
        let (entries, _) = parse(&format!("1, {}\n", "x".repeat(100)), "f");
        assert_eq!(entries[0].1.len(), MAX_NAME);
    }
}
