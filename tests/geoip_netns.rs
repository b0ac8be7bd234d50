//! Root-only end-to-end tests of GeoIP through the real binary: conntrack
//! entries to public addresses (inserted with `conntrack -I`: no packet is
//! sent) and databases generated with flowtop's MaxMind DB writer.
//!
//! `cargo test -p flowtop --test geoip_netns -- --ignored --test-threads=1`
//! (which `cargo xtask test` does).

use std::path::PathBuf;

use flowtop_testkit::harness::*;
use flowtop_testkit::mmdb::{city_record, country_record, Writer};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("ft-geo-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("mkdir scratch");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn city_db(dir: &std::path::Path) {
    let mut w = Writer::new("GeoLite2-City", 6);
    w.insert_cidr("81.2.69.0/24", city_record("GB", "United Kingdom", "London"))
        .expect("v4 network");
    w.insert_cidr("2a02:f000::/20", city_record("DE", "Germany", "Berlin"))
        .expect("v6 network");
    // Hostile strings from a database are data like any other.
    w.insert_cidr("89.160.20.0/24", city_record("SE", "Sweden", "Link\u{1b}[2Jping"))
        .expect("hostile network");
    w.write(&dir.join("GeoLite2-City.mmdb")).expect("write city db");
}

fn flow_to<'a>(flows: &'a [&'a serde_json::Value], dst: &str) -> &'a serde_json::Value {
    flows
        .iter()
        .find(|v| jstr(v, "dst") == Some(dst))
        .unwrap_or_else(|| panic!("no flow to {dst} in {flows:#?}"))
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn flows_to_public_addresses_get_country_and_city() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let dir = Scratch::new("city");
    city_db(&dir.0);
    for (src, dst, sport) in [
        ("198.51.100.1", "81.2.69.142", 1000),
        ("198.51.100.1", "89.160.20.112", 1001),
        ("198.51.100.1", "192.0.2.77", 1002),
        ("198.51.100.1", "10.1.2.3", 1003),
        ("2001:db8::1", "2a02:f000::5", 1004),
    ] {
        ns.conntrack(&format!(
            "-I -p udp -s {src} -d {dst} --sport {sport} --dport 443 -t 300"
        ));
    }
    let geo_dir = dir.0.to_str().expect("utf-8");
    let run = flowtop_once(&ns, &["--once", "--json", "-46U", "-n", "--geoip-dir", geo_dir]);
    run.assert_ok("--once --json with a City database");
    let flows = run.flows();
    let london = flow_to(&flows, "81.2.69.142");
    assert_eq!(jstr(london, "dst_country"), Some("GB"), "{london}");
    assert_eq!(jstr(london, "dst_city"), Some("London"));
    assert_eq!(jstr(london, "dst_scope"), None);
    assert_eq!(jstr(london, "src_scope"), Some("documentation"));
    assert_eq!(jstr(london, "src_country"), None);
    let berlin = flow_to(&flows, "2a02:f000::5");
    assert_eq!(jstr(berlin, "dst_country"), Some("DE"), "{berlin}");
    assert_eq!(jstr(berlin, "dst_city"), Some("Berlin"));
    assert_eq!(
        jstr(flow_to(&flows, "192.0.2.77"), "dst_scope"),
        Some("documentation")
    );
    assert_eq!(jstr(flow_to(&flows, "10.1.2.3"), "dst_scope"), Some("private"));
    assert_eq!(
        jstr(flow_to(&flows, "89.160.20.112"), "dst_city"),
        Some("Link\u{1b}[2Jping")
    );
    assert!(!run.stdout.contains('\u{1b}'), "raw ESC in JSON output");
    let meta = &run.lines[0];
    assert!(
        meta["geoip"].as_array().is_some_and(|a| a.len() == 1),
        "meta names the database: {meta}"
    );

    // The text table: GEO column, hostile city escaped.
    let text = run_to_end(
        ns.netns_exec(flowtop_bin(), &["--once", "-46U", "-n", "--geoip-dir", geo_dir]),
        WAIT,
    );
    assert!(text.status.success(), "{}", text.stderr);
    assert!(text.stdout.contains("GB London"), "{}", text.stdout);
    assert!(text.stdout.contains("SE Link\\x1b[2Jping"), "{}", text.stdout);
    assert!(!text.stdout.contains('\u{1b}'));

    // -G: no geography, scope labels stay.
    let off = flowtop_once(
        &ns,
        &["--once", "--json", "-46U", "-n", "-G", "--geoip-dir", geo_dir],
    );
    off.assert_ok("-G");
    let flows = off.flows();
    assert_eq!(jstr(flow_to(&flows, "81.2.69.142"), "dst_country"), None);
    assert_eq!(jstr(flow_to(&flows, "10.1.2.3"), "dst_scope"), Some("private"));
}

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn a_corrupt_database_is_named_and_skipped_and_a_country_database_still_serves() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let dir = Scratch::new("corrupt");
    // A truncated City file and a good Country file in the same directory.
    let mut w = Writer::new("GeoLite2-City", 6);
    w.insert_cidr("81.2.69.0/24", city_record("GB", "United Kingdom", "London"))
        .expect("network");
    let bytes = w.to_bytes();
    std::fs::write(dir.0.join("GeoLite2-City.mmdb"), &bytes[..bytes.len() / 2]).expect("write");
    let mut c = Writer::new("GeoLite2-Country", 6);
    c.insert_cidr("81.2.69.0/24", country_record("GB", "United Kingdom"))
        .expect("network");
    c.write(&dir.0.join("GeoLite2-Country.mmdb")).expect("write");
    ns.conntrack("-I -p udp -s 198.51.100.1 -d 81.2.69.142 --sport 1000 --dport 443 -t 300");

    let geo_dir = dir.0.to_str().expect("utf-8");
    let run = flowtop_once(&ns, &["--once", "--json", "-U", "-n", "--geoip-dir", geo_dir]);
    run.assert_ok("a truncated City database");
    assert!(
        run.stderr.contains("GeoLite2-City.mmdb"),
        "the notice names the bad file: {}",
        run.stderr
    );
    let flows = run.flows();
    let f = flow_to(&flows, "81.2.69.142");
    assert_eq!(jstr(f, "dst_country"), Some("GB"), "{f}");
    assert_eq!(jstr(f, "dst_city"), None);

    // No database at all: one notice, flows still printed.
    let empty = Scratch::new("empty");
    let run = run_to_end(
        ns.netns_exec(
            flowtop_bin(),
            &[
                "--once",
                "--json",
                "-U",
                "-n",
                "--geoip-dir",
                empty.0.to_str().expect("utf-8"),
            ],
        ),
        WAIT,
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.flows().len(), 1);
    // (The standard directories may hold a database on some machines.)
    assert!(
        run.stderr.lines().filter(|l| l.contains("GeoIP")).count() <= 1,
        "{}",
        run.stderr
    );
}
