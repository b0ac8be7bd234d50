//! Small formatting helpers shared by the outputs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// RFC 3339 in UTC with microseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// RFC 3339 of a conntrack start timestamp (ns since the epoch), seconds
/// precision, as a value to write (no allocation).
pub fn rfc3339_ns(ns: u64) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(ns))
}

/// Whole seconds from `start_ns` to `now` (0 when the clock is behind).
pub fn age_secs(start_ns: u64, now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH + Duration::from_nanos(start_ns))
        .map_or(0, |d| d.as_secs())
}

/// `1.5K`, `12M`: powers of 1024, as top does.
pub fn human_bytes(v: f64) -> String {
    const UNITS: [&str; 6] = ["", "K", "M", "G", "T", "P"];
    let mut v = v;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0}")
    } else if v < 10.0 {
        format!("{v:.1}{}", UNITS[unit])
    } else {
        format!("{v:.0}{}", UNITS[unit])
    }
}

/// `45s`, `3m05s`, `2h07m`, `3d04h`.
pub fn human_age(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
        _ => format!("{}d{:02}h", secs / 86_400, (secs % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(0.0), "0");
        assert_eq!(human_bytes(1023.0), "1023");
        assert_eq!(human_bytes(1536.0), "1.5K");
        assert_eq!(human_bytes(50.0 * 1024.0 * 1024.0), "50M");
        assert_eq!(human_age(5), "5s");
        assert_eq!(human_age(185), "3m05s");
        assert_eq!(human_age(7620), "2h07m");
        assert_eq!(human_age(3 * 86_400 + 4 * 3600), "3d04h");
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            rfc3339_ns(1_700_000_000_000_000_000).to_string(),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(age_secs(1_000_000_000, UNIX_EPOCH + Duration::from_secs(61)), 60);
        assert_eq!(age_secs(u64::MAX, UNIX_EPOCH), 0);
    }
}
