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

/// `2023-11-14 23:13:20 CET`: the local time of `ns` (nanoseconds since
/// the Unix epoch) as the C library sees it, honouring `TZ`; UTC when it
/// cannot tell. For the screen and the text table (JSON stays UTC).
pub fn local_time(ns: u64) -> String {
    extern "C" {
        // POSIX; the libc crate does not bind it. Reads TZ again, so that
        // the zone is the environment's, not the one at the first call.
        fn tzset();
    }
    let secs = (ns / 1_000_000_000) as libc::time_t;
    // SAFETY: a zeroed `tm` is a valid out-parameter; tzset and
    // localtime_r only read the environment and the zone files.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe {
        tzset();
        !libc::localtime_r(&secs, &mut tm).is_null()
    };
    if !ok {
        return utc_time(ns);
    }
    let zone = if tm.tm_zone.is_null() {
        String::new()
    } else {
        // SAFETY: tm_zone points to a NUL-terminated name the C library owns.
        unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }
            .to_string_lossy()
            .into_owned()
    };
    civil_time(
        (
            i64::from(tm.tm_year) + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec,
        ),
        tm.tm_gmtoff,
        &zone,
    )
}

/// `2023-11-14 22:13:20 UTC`: [`local_time`]'s form in UTC.
pub fn utc_time(ns: u64) -> String {
    let t = rfc3339_ns(ns).to_string();
    format!("{} UTC", t.replace('T', " ").trim_end_matches('Z'))
}

/// `2023-11-14 23:13:20 CET`, or with the offset (`+0100`) when the zone
/// has no name.
fn civil_time((y, mo, d, h, mi, s): (i64, i32, i32, i32, i32, i32), offset: i64, zone: &str) -> String {
    let zone = if zone.is_empty() || zone.bytes().any(|b| !b.is_ascii_graphic()) {
        let sign = if offset < 0 { '-' } else { '+' };
        let o = offset.abs();
        format!("{sign}{:02}{:02}", o / 3600, (o % 3600) / 60)
    } else {
        zone.to_owned()
    };
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} {zone}")
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
    fn civil_times_name_their_zone_or_offset() {
        assert_eq!(
            civil_time((2023, 11, 14, 23, 13, 20), 3600, "CET"),
            "2023-11-14 23:13:20 CET"
        );
        assert_eq!(
            civil_time((2023, 11, 15, 3, 43, 20), 19_800, ""),
            "2023-11-15 03:43:20 +0530"
        );
        assert_eq!(
            civil_time((2023, 11, 14, 17, 13, 20), -18_000, "\x1b"),
            "2023-11-14 17:13:20 -0500"
        );
    }

    /// The C library's local time is the UTC time shifted by its offset.
    #[test]
    fn local_time_is_utc_shifted_by_the_zone() {
        let ns = 1_700_000_000_000_000_000;
        let local = local_time(ns);
        assert!(local.starts_with("2023-11-1"), "{local}");
        let secs = 1_700_000_000 as libc::time_t;
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        assert!(!unsafe { libc::localtime_r(&secs, &mut tm) }.is_null());
        let shifted = (22 * 3600 + 13 * 60 + 20 + tm.tm_gmtoff).rem_euclid(86_400);
        let hms = format!(
            "{:02}:{:02}:{:02}",
            shifted / 3600,
            shifted % 3600 / 60,
            shifted % 60
        );
        assert!(local.contains(&hms), "{local} vs {hms}");
    }

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
