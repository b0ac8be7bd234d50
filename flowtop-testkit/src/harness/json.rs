//! JSON flow helpers: reading flowtop's `--json` lines.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::Value;

pub fn jstr<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

pub fn ju64(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

pub fn event(v: &Value) -> &str {
    jstr(v, "event").unwrap_or("")
}

pub fn is_flow_event(v: &Value) -> bool {
    matches!(event(v), "snapshot" | "new" | "update" | "destroy")
}

/// The conntrack id of a flow object (`id` is a number).
pub fn flow_id(v: &Value) -> Option<u32> {
    ju64(v, "id").and_then(|i| u32::try_from(i).ok())
}

pub fn jaddr(v: &Value, key: &str) -> Option<IpAddr> {
    jstr(v, key).and_then(|s| s.parse().ok())
}

pub fn jport(v: &Value, key: &str) -> Option<u16> {
    ju64(v, key).and_then(|p| u16::try_from(p).ok())
}

/// Does flow `v` have this original tuple?
pub fn has_tuple(v: &Value, proto: &str, src: &str, sport: u16, dst: &str, dport: u16) -> bool {
    jstr(v, "proto") == Some(proto)
        && jaddr(v, "src") == src.parse().ok()
        && jaddr(v, "dst") == dst.parse().ok()
        && jport(v, "sport") == Some(sport)
        && jport(v, "dport") == Some(dport)
}

/// Ids that are alive after applying the stream in order:
/// snapshot/new/update add, destroy removes.
pub fn alive_ids(lines: &[Value]) -> BTreeSet<u32> {
    let mut alive = BTreeSet::new();
    for v in lines {
        let Some(id) = flow_id(v) else { continue };
        match event(v) {
            "snapshot" | "new" | "update" => {
                alive.insert(id);
            }
            "destroy" => {
                alive.remove(&id);
            }
            _ => {}
        }
    }
    alive
}

pub(crate) fn parse_lines(stdout: &str) -> (Vec<Value>, Vec<String>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for l in stdout.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(l) {
            Ok(v) if v.is_object() => good.push(v),
            _ => bad.push(l.to_string()),
        }
    }
    (good, bad)
}

/// Keys every flow object carries (null when unknown).
pub const FLOW_KEYS: &[&str] = &[
    "event",
    "ts",
    "id",
    "family",
    "proto",
    "state",
    "src",
    "sport",
    "dst",
    "dport",
    "reply_src",
    "reply_sport",
    "reply_dst",
    "reply_dport",
    "status",
    "mark",
    "zone",
    "timeout",
    "orig_packets",
    "orig_bytes",
    "reply_packets",
    "reply_bytes",
    "start",
    "duration_s",
    "orig_rate_bps",
    "reply_rate_bps",
    "pid",
    "comm",
    "exe",
    "cmdline",
    "ppid",
    "parent_comm",
    "exe_sha256",
    "uid",
    "attribution",
    "src_host",
    "dst_host",
    "src_country",
    "src_city",
    "dst_country",
    "dst_city",
    "service",
    "src_scope",
    "dst_scope",
    // Issue 16.
    "community_id",
];

/// Keys of [`FLOW_KEYS`] (plus `icmp_*` for icmp/icmpv6) that `v` lacks.
pub fn missing_keys(v: &Value) -> Vec<&'static str> {
    let icmp = matches!(jstr(v, "proto"), Some("icmp" | "icmpv6"));
    let extra: &[&'static str] = if icmp {
        &["icmp_type", "icmp_code", "icmp_id"]
    } else {
        &[]
    };
    FLOW_KEYS
        .iter()
        .chain(extra)
        .copied()
        .filter(|k| v.get(*k).is_none())
        .collect()
}

/// Seconds since the epoch of an RFC 3339 UTC time such as
/// `2026-11-30T02:14:41.328262Z` (also accepts `+00:00`).
pub fn rfc3339_secs(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (hh, mm) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    let ss: f64 = t.next()?.parse().ok()?;
    // days from civil (proleptic Gregorian), Howard Hinnant's algorithm
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss)
}

/// Now, in seconds since the epoch.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Checks the first line is the meta object, panics otherwise.
pub fn assert_meta(v: &Value, context: &str) {
    assert_eq!(
        event(v),
        "meta",
        "{context}: first line is not the meta line: {v}"
    );
    for key in ["version", "kernel"] {
        assert!(v.get(key).is_some(), "{context}: meta line lacks `{key}`: {v}");
    }
}
