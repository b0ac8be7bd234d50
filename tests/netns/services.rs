//! Service names: the built-in lists and a --conf-dir with warnings naming file and line.

use super::*;

#[test]
#[ignore = "needs root and network namespaces: run by `cargo xtask test` as root"]
fn service_names_from_builtins_and_conf_dir_with_line_warnings() {
    if !require_root() {
        return;
    }
    let ns = Netns::with_conntrack();
    ns.conntrack(
        "-I -s 203.0.113.1 -d 198.51.100.1 -p tcp --sport 40001 --dport 443 --state ESTABLISHED -t 300",
    );
    ns.conntrack(
        "-I -s 203.0.113.1 -d 198.51.100.1 -p tcp --sport 40002 --dport 7777 --state ESTABLISHED -t 300",
    );
    ns.conntrack("-I -s 203.0.113.1 -d 198.51.100.1 -p udp --sport 40003 --dport 53 -t 300");
    let dir = std::env::temp_dir().join(format!("flowtop-conf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("tcp.conf"), "# ours\n7777, my-svc\nthis is not a line\n").expect("write");
    let conf = dir.display().to_string();
    let done = flowtop_once(&ns, &["--once", "--json", "-4TU", "--conf-dir", &conf]);
    let _ = std::fs::remove_dir_all(&dir);
    done.assert_ok("service names");
    let service_of = |proto: &str, sport: u16| {
        let f = done
            .flows()
            .into_iter()
            .find(|v| jstr(v, "proto") == Some(proto) && ju64(v, "sport") == Some(u64::from(sport)))
            .unwrap_or_else(|| panic!("no {proto} flow from port {sport}"))
            .clone();
        jstr(&f, "service").map(str::to_owned)
    };
    assert_eq!(
        service_of("tcp", 40001).as_deref(),
        Some("https"),
        "built-in name"
    );
    assert_eq!(
        service_of("tcp", 40002).as_deref(),
        Some("my-svc"),
        "--conf-dir name"
    );
    assert_eq!(
        service_of("udp", 40003).as_deref(),
        Some("domain"),
        "built-in UDP name"
    );
    let warning = format!("{conf}/tcp.conf:3:");
    assert!(
        done.stderr.contains(&warning),
        "no warning naming {warning}: {}",
        done.stderr
    );
}
