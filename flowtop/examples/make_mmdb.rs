//! Writes a MaxMind DB test file, for shell scripts and xtask:
//!
//! ```text
//! make_mmdb --type city|country [--db-type NAME] [--ip-version 4|6] OUT.mmdb CIDR=CC[,City] ...
//! ```
//!
//! `--db-type` defaults to `GeoLite2-City` / `GeoLite2-Country`. Test data
//! only: see `flowtop_testkit::mmdb`.

use std::process::ExitCode;

use flowtop_testkit::mmdb::{parse_spec, Kind, Writer};

const USAGE: &str =
    "usage: make_mmdb --type city|country [--db-type NAME] [--ip-version 4|6] OUT.mmdb CIDR=CC[,City] ...";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("make_mmdb: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut kind = None;
    let mut db_type = None;
    let mut ip_version = 6;
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--type" => {
                kind = Some(match it.next().as_deref() {
                    Some("city") => Kind::City,
                    Some("country") => Kind::Country,
                    other => return Err(format!("--type: expected city or country, got {other:?}")),
                })
            }
            "--db-type" => db_type = Some(it.next().ok_or("--db-type needs a value")?),
            "--ip-version" => {
                ip_version = match it.next().as_deref() {
                    Some("4") => 4,
                    Some("6") => 6,
                    other => return Err(format!("--ip-version: expected 4 or 6, got {other:?}")),
                }
            }
            "-h" | "--help" => return Err("help".into()),
            _ => rest.push(a),
        }
    }
    let kind = kind.ok_or("--type is required")?;
    let mut rest = rest.into_iter();
    let out = rest.next().ok_or("the output file is required")?;
    let db_type = db_type.unwrap_or_else(|| match kind {
        Kind::City => "GeoLite2-City".into(),
        Kind::Country => "GeoLite2-Country".into(),
    });
    let mut w = Writer::new(&db_type, ip_version);
    for spec in rest {
        let (cidr, value) = parse_spec(kind, &spec)?;
        w.insert_cidr(&cidr, value)?;
    }
    w.write(out.as_ref()).map_err(|e| format!("{out}: {e}"))
}
