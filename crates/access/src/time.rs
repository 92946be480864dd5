//! Minimal UTC time helpers: Unix milliseconds <-> RFC 3339 (`Z`, millisecond precision).

use std::time::{SystemTime, UNIX_EPOCH};

/// Current time in milliseconds since the Unix epoch.
pub fn now_unix_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

use calendar::parse_digits as num;
/// The calendar arithmetic lives in the `calendar` crate; re-exported for callers of `access::time`.
pub use calendar::{civil_from_days, days_from_civil};

/// Formats Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_from_unix_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// Parses a `YYYY-MM-DD` date into days since the epoch; `None` if invalid.
pub fn parse_date(s: &str) -> Option<i64> {
    let (y, m, d) = calendar::parse_ymd(s)?;
    Some(days_from_civil(y, m, d))
}

/// Parses an RFC 3339 timestamp in UTC or with an offset (`Z`, `+hh:mm`,
/// `-hh:mm`; optional fraction) into Unix milliseconds. A bare date
/// (`YYYY-MM-DD`) is read as midnight UTC. `None` if invalid.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    if !s.is_ascii() {
        return None;
    }
    if s.len() == 10 {
        return parse_date(s).map(|d| d * 86_400_000);
    }
    if s.len() < 20 || !matches!(s.as_bytes()[10], b'T' | b't' | b' ') {
        return None;
    }
    let days = parse_date(&s[..10])?;
    let t = &s[11..];
    let tb = t.as_bytes();
    if tb.len() < 9 || tb[2] != b':' || tb[5] != b':' {
        return None;
    }
    let h: i64 = num(&t[0..2])?;
    let mi: i64 = num(&t[3..5])?;
    let sec: i64 = num(&t[6..8])?;
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &t[8..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let digits = &frac[..n];
        let padded: String = digits.chars().chain("000".chars()).take(3).collect();
        millis = num(&padded)?;
        rest = &frac[n..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = num(&rest[1..3])?;
            let om: i64 = num(&rest[4..6])?;
            sign * (oh * 60 + om)
        }
        _ => return None,
    };
    Some(days * 86_400_000 + ((h * 60 + mi - offset_min) * 60 + sec) * 1000 + millis)
}

/// Age in whole years on day `on_days` (days since 1970-01-01) of someone born on `birth`
/// (`YYYY-MM-DD`, longer text cut to its date); `None` for an unreadable or later birth date.
/// A birthday on 29 February comes on 1 March in other years.
pub fn age_on(birth: &str, on_days: i64) -> Option<u32> {
    let b = parse_date(birth.get(..10)?)?;
    if b > on_days {
        return None;
    }
    let (by, bm, bd) = civil_from_days(b);
    let (y, m, d) = civil_from_days(on_days);
    let mut age = y - by;
    if (m, d) < (bm, bd) {
        age -= 1;
    }
    u32::try_from(age).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_from_unix_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_from_unix_ms(951_782_400_123),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(rfc3339_from_unix_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T00:00:00.123Z"),
            Some(951_782_400_123)
        );
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T01:00:00+01:00"),
            Some(951_782_400_000)
        );
        assert_eq!(parse_rfc3339_ms("2000-02-29"), Some(951_782_400_000));
        assert_eq!(parse_date("1970-01-02"), Some(1));
    }

    #[test]
    fn round_trip_many() {
        let mut ms = -5_000_000_000_000i64;
        while ms < 5_000_000_000_000 {
            let s = rfc3339_from_unix_ms(ms);
            assert_eq!(parse_rfc3339_ms(&s), Some(ms), "{s}");
            ms += 7_777_777_777;
        }
    }

    #[test]
    fn invalid_inputs() {
        for s in [
            "",
            "2001-02-29",
            "2000-13-01",
            "2000-00-10",
            "20000-01-01",
            "2000-01-01T25:00:00Z",
            "2000-01-01T10:00:00",
            "2000-01-01T10:00:00.Z",
            "2000-01-01T10:00:00+0100",
            "x000-01-01",
            "2000-01-01T10:00:00Zjunk",
            "2000-01-01T10:00:00.1234567890123456789012Z",
        ] {
            // The last one is valid-looking but must not panic; accept either.
            let _ = parse_rfc3339_ms(s);
        }
        assert_eq!(parse_rfc3339_ms("2001-02-29"), None);
        assert_eq!(parse_rfc3339_ms("2000-01-01T10:00:00"), None);
        assert_eq!(parse_rfc3339_ms("2000-01-01T25:00:00Z"), None);
        assert_eq!(parse_rfc3339_ms("2000-01-01T10:00:00+0100"), None);
        assert_eq!(parse_rfc3339_ms("é000-01-01T10:00:00Z"), None);
    }

    #[test]
    fn ages_at_boundaries() {
        let on = parse_date("2026-11-23").unwrap();
        assert_eq!(age_on("2000-11-23", on), Some(26));
        assert_eq!(age_on("2000-11-24", on), Some(25));
        assert_eq!(age_on("2026-11-23T08:00:00Z", on), Some(0));
        assert_eq!(age_on("2026-11-24", on), None);
        assert_eq!(age_on("garbage", on), None);
        let leapling = "2000-02-29";
        assert_eq!(
            age_on(leapling, parse_date("2018-02-28").unwrap()),
            Some(17)
        );
        assert_eq!(
            age_on(leapling, parse_date("2018-03-01").unwrap()),
            Some(18)
        );
    }
}
