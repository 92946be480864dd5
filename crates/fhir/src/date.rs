//! FHIR `date` / `dateTime` / `instant` parsing with partial precision.
//!
//! `Date` is a calendar date (ordered, day arithmetic, ages). `DateTime` keeps
//! the precision given (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or with a time and
//! an optional offset) and converts to a UTC instant for sorting.

use std::fmt;

/// A calendar date in the proleptic Gregorian calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

/// The precision a FHIR date/dateTime was given with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Precision {
    Year,
    Month,
    Day,
    /// Hours and minutes (and possibly seconds) are present.
    Time,
}

/// A parsed FHIR date or dateTime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    pub year: i32,
    /// 1–12 (1 when precision is Year).
    pub month: u8,
    /// 1–31 (1 when precision is coarser than Day).
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub nanosecond: u32,
    /// UTC offset in minutes; `None` when no time zone was given.
    pub offset_minutes: Option<i16>,
    pub precision: Precision,
}

/// Why a date string is not a valid FHIR date/dateTime (never echoes the text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    #[error("date is not of the form YYYY, YYYY-MM, YYYY-MM-DD or a dateTime")]
    Format,
    #[error("date has a month or day out of range")]
    OutOfRange,
    #[error("time is out of range")]
    TimeOutOfRange,
    #[error("a dateTime with a time must have a time zone")]
    MissingTimeZone,
}

/// Days in month `m` (1-12) of year `y`; 0 for any other month (the `calendar` crate's).
pub fn days_in_month(y: i32, m: u8) -> u8 {
    calendar::days_in_month(y.into(), m.into()) as u8
}

impl Date {
    /// A valid date, or `None`.
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        calendar::is_valid_date(year.into(), month.into(), day.into()).then_some(Date {
            year,
            month,
            day,
        })
    }

    /// Days since 1970-01-01 (negative before).
    pub fn to_days(self) -> i64 {
        calendar::days_from_civil(self.year.into(), self.month.into(), self.day.into())
    }

    /// The date `days` after 1970-01-01.
    pub fn from_days(days: i64) -> Date {
        let (y, m, d) = calendar::civil_from_days(days);
        Date {
            year: y as i32,
            month: m as u8,
            day: d as u8,
        }
    }

    pub fn add_days(self, days: i64) -> Date {
        Date::from_days(self.to_days() + days)
    }

    /// ISO weekday, Monday = 1 … Sunday = 7.
    pub fn weekday(self) -> u8 {
        // 1970-01-01 was a Thursday (4).
        ((self.to_days() + 3).rem_euclid(7) + 1) as u8
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl std::str::FromStr for Date {
    type Err = DateError;
    /// Requires full `YYYY-MM-DD` precision.
    fn from_str(s: &str) -> Result<Date, DateError> {
        let dt = parse_date(s)?;
        if dt.precision != Precision::Day {
            return Err(DateError::Format);
        }
        Ok(dt.date())
    }
}

/// Completed years of age on `on` for someone born on `birth`
/// (a 29 February birthday falls on 1 March in common years). Negative
/// when `on` is before `birth`.
pub fn age_in_years(birth: Date, on: Date) -> i32 {
    let mut age = on.year - birth.year;
    if (on.month, on.day) < (birth.month, birth.day) {
        age -= 1;
    }
    age
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |a, &d| a * 10 + u32::from(d - b'0')))
}

/// Parses a FHIR `date` (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`).
pub fn parse_date(s: &str) -> Result<DateTime, DateError> {
    let dt = parse_date_time(s)?;
    if dt.precision == Precision::Time {
        return Err(DateError::Format);
    }
    Ok(dt)
}

/// Parses a FHIR `dateTime` or `instant`: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or
/// `YYYY-MM-DDThh:mm:ss(.fff)(Z|±hh:mm)`. A missing time zone on a time is
/// tolerated (many sources omit it) and reported as `offset_minutes: None`.
pub fn parse_date_time(s: &str) -> Result<DateTime, DateError> {
    let b = s.as_bytes();
    let year = b.get(0..4).and_then(digits).ok_or(DateError::Format)? as i32;
    let mut dt = DateTime {
        year,
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
        nanosecond: 0,
        offset_minutes: None,
        precision: Precision::Year,
    };
    if b.len() == 4 {
        return Ok(dt);
    }
    if b[4] != b'-' {
        return Err(DateError::Format);
    }
    dt.month = b.get(5..7).and_then(digits).ok_or(DateError::Format)? as u8;
    if !(1..=12).contains(&dt.month) {
        return Err(DateError::OutOfRange);
    }
    dt.precision = Precision::Month;
    if b.len() == 7 {
        return Ok(dt);
    }
    if b[7] != b'-' {
        return Err(DateError::Format);
    }
    dt.day = b.get(8..10).and_then(digits).ok_or(DateError::Format)? as u8;
    if dt.day < 1 || dt.day > days_in_month(year, dt.month) {
        return Err(DateError::OutOfRange);
    }
    dt.precision = Precision::Day;
    if b.len() == 10 {
        return Ok(dt);
    }
    if b[10] != b'T' {
        return Err(DateError::Format);
    }
    // hh:mm[:ss[.f+]]
    let hh = b.get(11..13).and_then(digits).ok_or(DateError::Format)?;
    if b.get(13) != Some(&b':') {
        return Err(DateError::Format);
    }
    let mm = b.get(14..16).and_then(digits).ok_or(DateError::Format)?;
    let mut i = 16;
    let mut ss = 0;
    if b.get(i) == Some(&b':') {
        ss = b.get(17..19).and_then(digits).ok_or(DateError::Format)?;
        i = 19;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            if end == start || end - start > 9 {
                return Err(DateError::Format);
            }
            let frac = digits(&b[start..end]).ok_or(DateError::Format)?;
            dt.nanosecond = frac * 10u32.pow(9 - (end - start) as u32);
            i = end;
        }
    }
    // FHIR allows second 60 (leap second) in instants; accept it.
    if hh > 23 || mm > 59 || ss > 60 {
        return Err(DateError::TimeOutOfRange);
    }
    dt.hour = hh as u8;
    dt.minute = mm as u8;
    dt.second = ss as u8;
    dt.precision = Precision::Time;
    match b.get(i) {
        None => {}
        Some(b'Z') if b.len() == i + 1 => dt.offset_minutes = Some(0),
        Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let oh = digits(&b[i + 1..i + 3]).ok_or(DateError::Format)?;
            let om = digits(&b[i + 4..i + 6]).ok_or(DateError::Format)?;
            if oh > 14 || om > 59 {
                return Err(DateError::TimeOutOfRange);
            }
            let off = (oh * 60 + om) as i16;
            dt.offset_minutes = Some(if sign == b'-' { -off } else { off });
        }
        _ => return Err(DateError::Format),
    }
    Ok(dt)
}

impl DateTime {
    /// The calendar date as written (month/day default to 1 when absent).
    pub fn date(&self) -> Date {
        Date {
            year: self.year,
            month: self.month,
            day: self.day,
        }
    }

    /// Milliseconds since the Unix epoch of the earliest instant this value
    /// can denote, treating a missing time zone as UTC. Use for sorting.
    pub fn to_unix_millis(&self) -> i64 {
        let days = self.date().to_days();
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.offset_minutes.unwrap_or(0)) * 60;
        secs * 1000 + i64::from(self.nanosecond / 1_000_000)
    }
}

impl std::str::FromStr for DateTime {
    type Err = DateError;
    fn from_str(s: &str) -> Result<DateTime, DateError> {
        parse_date_time(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_precisions() {
        let y = parse_date_time("1980").unwrap();
        assert_eq!((y.year, y.precision), (1980, Precision::Year));
        let m = parse_date_time("1980-07").unwrap();
        assert_eq!((m.month, m.precision), (7, Precision::Month));
        let d = parse_date_time("1980-02-29").unwrap();
        assert_eq!(d.date(), Date::new(1980, 2, 29).unwrap());
        let t = parse_date_time("2024-12-31T23:59:59.5-05:00").unwrap();
        assert_eq!(t.offset_minutes, Some(-300));
        assert_eq!(t.nanosecond, 500_000_000);
        // 2025-01-01T04:59:59.5Z
        let utc = parse_date_time("2025-01-01T04:59:59.500Z").unwrap();
        assert_eq!(t.to_unix_millis(), utc.to_unix_millis());
    }

    #[test]
    fn rejects_bad_dates() {
        for bad in [
            "",
            "80",
            "1980-13",
            "1981-02-29",
            "1980-1-01",
            "1980-01-01T25:00:00Z",
            "1980/01/01",
            "1980-01-01T10:00:00+5",
            "1980-01-01 10:00",
            "1980-01-01T10:00:00Zjunk",
        ] {
            assert!(parse_date_time(bad).is_err(), "{bad} accepted");
        }
        assert!(parse_date("2020-01-01T00:00:00Z").is_err());
    }

    #[test]
    fn days_known_values() {
        assert_eq!(Date::new(1970, 1, 1).unwrap().to_days(), 0);
        assert_eq!(Date::new(2000, 3, 1).unwrap().to_days(), 11_017);
        assert_eq!(Date::new(1969, 12, 31).unwrap().to_days(), -1);
        assert_eq!(Date::from_days(11_016), Date::new(2000, 2, 29).unwrap());
        assert_eq!(Date::new(2025, 12, 31).unwrap().weekday(), 3);
    }

    #[test]
    fn ages() {
        let b = Date::new(1960, 6, 15).unwrap();
        assert_eq!(age_in_years(b, Date::new(2025, 6, 14).unwrap()), 64);
        assert_eq!(age_in_years(b, Date::new(2025, 6, 15).unwrap()), 65);
        let leap = Date::new(2000, 2, 29).unwrap();
        assert_eq!(age_in_years(leap, Date::new(2001, 2, 28).unwrap()), 0);
        assert_eq!(age_in_years(leap, Date::new(2001, 3, 1).unwrap()), 1);
    }
}
