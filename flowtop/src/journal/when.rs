//! `--since` and `--until`: a moment, as an RFC 3339 time
//! (`2026-12-07T10:00:00Z`, `2026-12-07T11:00:00.5+01:00`) or as a
//! duration ago (`90s`, `10m`, `2h`, `3d`, `1w`), turned into Unix
//! milliseconds, the journal's unit.

/// What a bad WHEN is told, with the forms that work.
pub const FORMS: &str = "an RFC 3339 time such as 2026-12-07T10:00:00Z or 2026-12-07T11:00:00+01:00, \
     or a duration ago such as 90s, 10m, 2h, 3d, 1w";

/// `when` as Unix milliseconds, durations counted back from `now_ms`.
pub fn parse(when: &str, now_ms: i64) -> Result<i64, String> {
    let s = when.trim();
    if let Some(ago) = duration_ms(s) {
        return Ok(now_ms.saturating_sub(ago));
    }
    rfc3339_ms(s).ok_or_else(|| {
        format!(
            "'{}' is not a time: expected {FORMS}",
            crate::output::safe::terminal_safe(when)
        )
    })
}

/// `90s`, `10m`, `2h`, `3d`, `1w`: a whole number and one unit.
fn duration_ms(s: &str) -> Option<i64> {
    let unit = s.chars().last()?;
    let ms: i64 = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        'w' => 7 * 86_400_000,
        _ => return None,
    };
    let num = &s[..s.len() - 1];
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<i64>().ok()?.checked_mul(ms)
}

/// Days from 1970-01-01 to the civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`; `t` and a space are accepted
/// for the `T`, `z` for the `Z`.
fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0;
    if sep(i, b".") {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        // Milliseconds: the first three digits, padded.
        let digits: String = s[start..i].chars().chain("00".chars()).take(3).collect();
        frac_ms = digits.parse::<i64>().ok()?;
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && sep(i + 3, b":") => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    // A leap second is the last moment of its minute.
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset_s;
    Some(secs * 1000 + frac_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_637_600_000; // 2026-12-07T10:00:00Z

    #[test]
    fn rfc3339_times_in_utc_and_with_offsets() {
        assert_eq!(parse("2026-12-07T10:00:00Z", 0), Ok(NOW));
        assert_eq!(parse("2026-12-07T11:00:00+01:00", 0), Ok(NOW));
        assert_eq!(parse("2026-12-07T04:30:00-05:30", 0), Ok(NOW));
        assert_eq!(parse("2026-12-07 10:00:00.25z", 0), Ok(NOW + 250));
        assert_eq!(parse("2026-12-07t10:00:00.123456789Z", 0), Ok(NOW + 123));
        assert_eq!(parse("1970-01-01T00:00:00Z", 0), Ok(0));
        assert_eq!(parse("2024-02-29T00:00:00Z", 0), Ok(1_709_164_800_000));
        assert_eq!(parse("1969-12-31T23:59:59Z", 0), Ok(-1000));
    }

    #[test]
    fn durations_count_back_from_now() {
        assert_eq!(parse("90s", NOW), Ok(NOW - 90_000));
        assert_eq!(parse("10m", NOW), Ok(NOW - 600_000));
        assert_eq!(parse("2h", NOW), Ok(NOW - 7_200_000));
        assert_eq!(parse("3d", NOW), Ok(NOW - 3 * 86_400_000));
        assert_eq!(parse("1w", NOW), Ok(NOW - 7 * 86_400_000));
        assert_eq!(parse(" 0s ", NOW), Ok(NOW));
    }

    #[test]
    fn bad_forms_are_refused_with_the_forms_that_work() {
        for bad in [
            "",
            "s",
            "10",
            "-5m",
            "1.5h",
            "10 m",
            "3y",
            "yesterday",
            "2026-12-07",
            "2026-12-07T10:00:00",
            "2026-13-07T10:00:00Z",
            "2026-02-30T10:00:00Z",
            "2026-12-07T24:00:00Z",
            "2026-12-07T10:00:00+1:00",
            "2026-12-07T10:00:00.Z",
            "2026-12-07T10:00:00Zjunk",
            "99999999999999999999d",
            "2026-12-07T10:00:00Z\x1b[2J",
        ] {
            let e = parse(bad, NOW).expect_err(bad);
            assert!(e.contains("2026-12-07T10:00:00Z") && e.contains("90s"), "{e}");
            assert!(!e.contains('\x1b'), "{e}");
        }
    }
}
