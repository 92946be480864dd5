//! The one proleptic Gregorian calendar every crate uses: leap years, month
//! lengths, days since 1970-01-01 <-> civil dates (H. Hinnant's algorithms)
//! and a strict `YYYY-MM-DD` reader. No dependencies, no I/O.
//!
//! Callers keep their own rules on top (CQL precisions, FHIR partial dates,
//! period bounds); only the arithmetic lives here.

/// Whether `y` is a Gregorian leap year.
pub fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days in month `m` (1-12) of year `y`; 0 for any other month.
pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Whether `y-m-d` is a real date (month 1-12, day within the month).
pub fn is_valid_date(y: i64, m: u32, d: u32) -> bool {
    (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
}

/// Days since 1970-01-01 (negative before) for a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `z` days after 1970-01-01, as (year, month 1-12, day 1-31).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A strict `YYYY-MM-DD` (ASCII digits only, a real date) as (y, m, d).
pub fn parse_ymd(s: &str) -> Option<(i64, u32, u32)> {
    let b = s.as_bytes();
    if !s.is_ascii() || b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = parse_digits(&s[0..4])?;
    let m: u32 = parse_digits(&s[5..7])?;
    let d: u32 = parse_digits(&s[8..10])?;
    is_valid_date(y, m, d).then_some((y, m, d))
}

/// A non-empty run of ASCII digits (no sign, no spaces) as a number.
pub fn parse_digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_over_a_wide_range() {
        // Every day from about 2380 BCE to 6350 CE, consecutive and valid.
        let mut prev = civil_from_days(-1_600_001);
        for z in -1_600_000..1_600_000 {
            let (y, m, d) = civil_from_days(z);
            assert!(is_valid_date(y, m, d), "{z}: {y}-{m}-{d}");
            assert_eq!(days_from_civil(y, m, d), z);
            let (py, pm, pd) = prev;
            if d == 1 {
                assert_eq!(pd, days_in_month(py, pm));
                assert!((pm % 12 + 1, py + i64::from(pm == 12)) == (m, y));
            } else {
                assert_eq!((py, pm, pd + 1), (y, m, d));
            }
            prev = (y, m, d);
        }
        // Far eras, both signs.
        for z in [
            -1_000_000_000_i64,
            -146_097 * 1000 - 1,
            146_097 * 1000 + 1,
            1_000_000_000,
        ] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(
            days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28),
            2
        );
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(days_from_civil(0, 1, 1), -719_528);
        assert_eq!(days_from_civil(-1, 12, 31), -719_529);
    }

    #[test]
    fn leap_years() {
        for (y, leap) in [
            (1900, false),
            (2000, true),
            (2023, false),
            (2024, true),
            (2100, false),
            (2400, true),
            (0, true),
            (-4, true),
            (-100, false),
        ] {
            assert_eq!(is_leap(y), leap, "{y}");
            assert_eq!(days_in_month(y, 2), if leap { 29 } else { 28 }, "{y}");
            let year = days_from_civil(y + 1, 1, 1) - days_from_civil(y, 1, 1);
            assert_eq!(year, if leap { 366 } else { 365 }, "{y}");
        }
    }

    #[test]
    fn month_lengths() {
        let lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        for (i, len) in lengths.into_iter().enumerate() {
            let m = i as u32 + 1;
            assert_eq!(days_in_month(2023, m), len);
            let next = if m == 12 {
                days_from_civil(2024, 1, 1)
            } else {
                days_from_civil(2023, m + 1, 1)
            };
            assert_eq!(next - days_from_civil(2023, m, 1), i64::from(len));
        }
        assert_eq!(days_in_month(2023, 0), 0);
        assert_eq!(days_in_month(2023, 13), 0);
        assert!(!is_valid_date(2023, 2, 29));
        assert!(is_valid_date(2024, 2, 29));
        assert!(!is_valid_date(2024, 4, 31));
        assert!(!is_valid_date(2024, 1, 0));
    }

    #[test]
    fn strict_dates() {
        assert_eq!(parse_ymd("2024-02-29"), Some((2024, 2, 29)));
        assert_eq!(parse_ymd("0000-01-01"), Some((0, 1, 1)));
        for s in [
            "",
            "2023-02-29",
            "2000-13-01",
            "2000-00-10",
            "2000-01-00",
            "20000-01-01",
            "2000-1-01",
            "+200-01-01",
            "2000-+1-01",
            "2000-01-+1",
            "x000-01-01",
            "2000/01/01",
            "é00-01-01",
            "2000-01-01T",
            "２０００-01-01",
        ] {
            assert_eq!(parse_ymd(s), None, "{s}");
        }
    }
}
