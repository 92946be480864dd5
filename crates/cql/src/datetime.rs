//! Calendar math for CQL Date, DateTime and Time with precision.

use std::cmp::Ordering;
use std::fmt;

/// Precision index: 0 year, 1 month, 2 day, 3 hour, 4 minute, 5 second, 6 millisecond.
pub type Prec = u8;
pub const YEAR: Prec = 0;
pub const MONTH: Prec = 1;
pub const DAY: Prec = 2;
pub const HOUR: Prec = 3;
pub const MINUTE: Prec = 4;
pub const SECOND: Prec = 5;
pub const MS: Prec = 6;
/// Week is not a component; used only as a duration unit.
pub const WEEK: Prec = 10;

pub fn parse_precision(s: &str) -> Option<Prec> {
    Some(match s.to_ascii_lowercase().trim_end_matches('s') {
        "year" | "a" => YEAR,
        "month" | "mo" => MONTH,
        "week" | "wk" => WEEK,
        "day" | "d" => DAY,
        "hour" | "h" => HOUR,
        "minute" | "min" => MINUTE,
        "second" => SECOND,
        "millisecond" | "m" => MS,
        "" => SECOND, // "s"
        _ => return None,
    })
}

// The arithmetic is the `calendar` crate's; these adapt it to CQL's component types.

/// Days in a month; 30 for a month outside 1-12 (never reached by valid values).
pub fn days_in_month(y: i32, m: u8) -> u8 {
    match calendar::days_in_month(y.into(), m.into()) {
        0 => 30,
        n => n as u8,
    }
}

/// Days since 1970-01-01 (proleptic Gregorian).
pub fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    calendar::days_from_civil(y.into(), m.into(), d.into())
}

/// Year, month, day, hour, minute, second and millisecond of `ms` milliseconds from
/// 1970-01-01T00:00:00.000 (on the same offset).
pub(crate) fn components_from_ms(ms: i64) -> [i32; 7] {
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    let rem = ms.rem_euclid(86_400_000);
    [
        y,
        m as i32,
        d as i32,
        (rem / 3_600_000) as i32,
        (rem / 60_000 % 60) as i32,
        (rem / 1000 % 60) as i32,
        (rem % 1000) as i32,
    ]
}

pub fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let (y, m, d) = calendar::civil_from_days(z);
    (y as i32, m as u8, d as u8)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DateTime {
    pub c: [i32; 7],
    /// timezone offset in minutes
    pub off: i16,
    pub prec: Prec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Date {
    pub c: [i32; 3],
    pub prec: Prec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Time {
    /// hour, minute, second, millisecond
    pub c: [i32; 4],
    /// precision with the DateTime numbering (3..=6)
    pub prec: Prec,
}

fn cmp_components(a: &[i32], ap: Prec, b: &[i32], bp: Prec, upto: Prec) -> Option<Ordering> {
    let n = a.len().min(b.len());
    for i in 0..n {
        let i8 = i as Prec;
        if i8 > upto {
            return Some(Ordering::Equal);
        }
        let ha = i8 <= ap;
        let hb = i8 <= bp;
        match (ha, hb) {
            (true, true) => {
                let o = a[i].cmp(&b[i]);
                if o != Ordering::Equal {
                    return Some(o);
                }
            }
            (false, false) => return Some(Ordering::Equal),
            _ => {
                // CQL: seconds and milliseconds are compared as one precision (a decimal number of seconds)
                if i8 == MS && (ap == SECOND || bp == SECOND) {
                    let x = if ha { a[i] } else { 0 };
                    let y = if hb { b[i] } else { 0 };
                    return Some(x.cmp(&y));
                }
                return None;
            }
        }
    }
    Some(Ordering::Equal)
}

impl DateTime {
    pub fn new(c: [i32; 7], off: i16, prec: Prec) -> DateTime {
        DateTime { c, off, prec }
    }
    pub fn year(&self) -> i32 {
        self.c[0]
    }
    /// Normalize to UTC (only meaningful when hour precision or finer).
    pub fn to_offset(&self, off: i16) -> DateTime {
        if self.off == off || self.prec < HOUR {
            let mut d = *self;
            d.off = off;
            return d;
        }
        let mut d = self.fill();
        let delta = (off as i64 - self.off as i64) * 60_000;
        d = d.add_ms(delta);
        d.prec = self.prec;
        d.off = off;
        d
    }
    /// All components filled (missing ones set to their minimum).
    fn fill(&self) -> DateTime {
        let mut d = *self;
        for i in (self.prec as usize + 1)..7 {
            d.c[i] = if i <= 2 { 1 } else { 0 };
        }
        d
    }
    pub fn epoch_ms(&self) -> i64 {
        let f = self.fill();
        let days = days_from_civil(f.c[0], f.c[1] as u8, f.c[2] as u8);
        ((days * 24 + f.c[3] as i64) * 60 + f.c[4] as i64) * 60_000
            + f.c[5] as i64 * 1000
            + f.c[6] as i64
            - self.off as i64 * 60_000
    }
    fn add_ms(&self, ms: i64) -> DateTime {
        let f = self.fill();
        let days = days_from_civil(f.c[0], f.c[1] as u8, f.c[2] as u8);
        let tod =
            ((f.c[3] as i64 * 60 + f.c[4] as i64) * 60 + f.c[5] as i64) * 1000 + f.c[6] as i64;
        DateTime {
            c: components_from_ms(days * 86_400_000 + tod + ms),
            off: self.off,
            prec: self.prec,
        }
    }
    pub fn compare(&self, other: &DateTime, upto: Option<Prec>) -> Option<Ordering> {
        let (a, b) = if self.off != other.off && self.prec >= HOUR && other.prec >= HOUR {
            (self.to_offset(0), other.to_offset(0))
        } else {
            (*self, *other)
        };
        cmp_components(&a.c, a.prec, &b.c, b.prec, upto.unwrap_or(MS))
    }
    pub fn sort_key(&self) -> (i64, u8) {
        (self.epoch_ms(), self.prec)
    }
    /// Add a calendar quantity (`amount` of unit `unit`).
    pub fn add(&self, amount: i64, unit: Prec) -> Option<DateTime> {
        let mut r = *self;
        // anything beyond these magnitudes leaves the year range 1..9999 (and must not overflow)
        let limit: i64 = match unit {
            YEAR => 10_000,
            MONTH => 120_000,
            WEEK => 600_000,
            DAY => 4_000_000,
            HOUR => 100_000_000,
            MINUTE => 6_000_000_000,
            SECOND => 400_000_000_000,
            _ => 400_000_000_000_000,
        };
        if amount.abs() > limit {
            return None;
        }
        let (amount, unit) = adjust_unit(amount, unit, self.prec);
        match unit {
            YEAR => {
                r.c[0] = r.c[0].checked_add(amount as i32)?;
                clamp_day(&mut r.c);
            }
            MONTH => {
                let total = r.c[0] as i64 * 12 + (r.c[1] as i64 - 1) + amount;
                r.c[0] = total.div_euclid(12) as i32;
                r.c[1] = (total.rem_euclid(12) + 1) as i32;
                clamp_day(&mut r.c);
            }
            DAY => {
                let f = self.fill();
                let (y, m, d) =
                    civil_from_days(days_from_civil(f.c[0], f.c[1] as u8, f.c[2] as u8) + amount);
                r.c[0] = y;
                r.c[1] = m as i32;
                r.c[2] = d as i32;
            }
            _ => {
                let ms = match unit {
                    HOUR => 3_600_000,
                    MINUTE => 60_000,
                    SECOND => 1000,
                    _ => 1,
                } * amount;
                r = self.add_ms(ms);
                r.prec = self.prec;
            }
        }
        if !(1..=9999).contains(&r.c[0]) {
            return None;
        }
        Some(r)
    }
    pub fn date(&self) -> Date {
        Date {
            c: [self.c[0], self.c[1], self.c[2]],
            prec: self.prec.min(DAY),
        }
    }
    pub fn time(&self) -> Option<Time> {
        if self.prec < HOUR {
            return None;
        }
        Some(Time {
            c: [self.c[3], self.c[4], self.c[5], self.c[6]],
            prec: self.prec,
        })
    }
    pub fn truncate(&self, p: Prec) -> DateTime {
        let mut d = *self;
        if p < d.prec {
            d.prec = p;
            for i in (p as usize + 1)..7 {
                d.c[i] = if i <= 2 { 1 } else { 0 };
            }
        }
        d
    }
    /// The latest possible value consistent with the precision.
    pub fn fill_max(&self) -> DateTime {
        let mut d = *self;
        let maxes = [9999, 12, 0, 23, 59, 59, 999];
        for i in (self.prec as usize + 1)..7 {
            d.c[i] = if i == 2 {
                days_in_month(d.c[0], d.c[1] as u8) as i32
            } else {
                maxes[i]
            };
        }
        d.prec = MS;
        d
    }
    pub fn fill_min(&self) -> DateTime {
        let mut d = self.fill();
        d.prec = MS;
        d
    }
}

/// When the unit is finer than the value's precision, convert to the precision (truncating).
fn adjust_unit(amount: i64, unit: Prec, prec: Prec) -> (i64, Prec) {
    if unit == WEEK {
        return adjust_unit(amount * 7, DAY, prec);
    }
    if unit <= prec {
        return (amount, unit);
    }
    // unit finer than precision
    let per_day: [i64; 7] = [0, 0, 1, 24, 1440, 86_400, 86_400_000];
    match prec {
        YEAR => {
            if unit == MONTH {
                (amount / 12, YEAR)
            } else {
                (amount / (365 * per_day[unit as usize]), YEAR)
            }
        }
        MONTH => {
            if unit == DAY {
                (amount / 30, MONTH)
            } else {
                (amount / (30 * per_day[unit as usize]), MONTH)
            }
        }
        _ => {
            let ms_per: [i64; 7] = [0, 0, 86_400_000, 3_600_000, 60_000, 1000, 1];
            (amount * ms_per[unit as usize] / ms_per[prec as usize], prec)
        }
    }
}

fn clamp_day(c: &mut [i32]) {
    if c.len() > 2 {
        let dim = days_in_month(c[0], c[1] as u8) as i32;
        if c[2] > dim {
            c[2] = dim;
        }
    }
}

impl Date {
    pub fn to_datetime(&self) -> DateTime {
        DateTime {
            c: [self.c[0], self.c[1], self.c[2], 0, 0, 0, 0],
            off: 0,
            prec: self.prec,
        }
    }
    pub fn compare(&self, other: &Date, upto: Option<Prec>) -> Option<Ordering> {
        cmp_components(
            &self.c,
            self.prec,
            &other.c,
            other.prec,
            upto.unwrap_or(DAY),
        )
    }
    pub fn sort_key(&self) -> (i64, u8) {
        (self.to_datetime().epoch_ms(), self.prec)
    }
    pub fn add(&self, amount: i64, unit: Prec) -> Option<Date> {
        let unit = if unit > DAY && unit != WEEK {
            // hours etc. on a date: convert to days
            let per: i64 = match unit {
                HOUR => 24,
                MINUTE => 1440,
                SECOND => 86_400,
                _ => 86_400_000,
            };
            return self.add(amount / per, DAY);
        } else {
            unit
        };
        let d = self.to_datetime().add(amount, unit)?;
        Some(d.date())
    }
}

impl Time {
    pub fn compare(&self, other: &Time, upto: Option<Prec>) -> Option<Ordering> {
        let up = upto.map(|u| u.saturating_sub(3)).unwrap_or(3);
        cmp_components(&self.c, self.prec - 3, &other.c, other.prec - 3, up)
    }
    pub fn ms_of_day(&self) -> i64 {
        ((self.c[0] as i64 * 60 + self.c[1] as i64) * 60 + self.c[2] as i64) * 1000
            + self.c[3] as i64
    }
    pub fn add(&self, amount: i64, unit: Prec) -> Option<Time> {
        if unit < HOUR || unit == WEEK {
            return Some(*self);
        }
        let (amount, unit) = adjust_unit(amount % 86_400_000_000, unit, self.prec);
        let per: i64 = match unit {
            HOUR => 3_600_000,
            MINUTE => 60_000,
            SECOND => 1000,
            _ => 1,
        };
        let t = (self.ms_of_day() + amount * per).rem_euclid(86_400_000);
        Some(Time {
            c: [
                (t / 3_600_000) as i32,
                (t / 60_000 % 60) as i32,
                (t / 1000 % 60) as i32,
                (t % 1000) as i32,
            ],
            prec: self.prec,
        })
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.c[0])?;
        if self.prec >= MONTH {
            write!(f, "-{:02}", self.c[1])?;
        }
        if self.prec >= DAY {
            write!(f, "-{:02}", self.c[2])?;
        }
        Ok(())
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.date())?;
        if self.prec >= HOUR {
            write!(f, "T{:02}", self.c[3])?;
            if self.prec >= MINUTE {
                write!(f, ":{:02}", self.c[4])?;
            }
            if self.prec >= SECOND {
                write!(f, ":{:02}", self.c[5])?;
            }
            if self.prec >= MS {
                write!(f, ".{:03}", self.c[6])?;
            }
            let o = self.off;
            if o == 0 {
                write!(f, "Z")?;
            } else {
                let s = if o < 0 { '-' } else { '+' };
                write!(f, "{}{:02}:{:02}", s, o.abs() / 60, o.abs() % 60)?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.c[0])?;
        if self.prec >= MINUTE {
            write!(f, ":{:02}", self.c[1])?;
        }
        if self.prec >= SECOND {
            write!(f, ":{:02}", self.c[2])?;
        }
        if self.prec >= MS {
            write!(f, ".{:03}", self.c[3])?;
        }
        Ok(())
    }
}

/// Parse an ISO date / dateTime string (FHIR or CQL literal). Returns Date when there is no time part
/// and `as_date` is set.
pub fn parse_datetime(s: &str, default_off: i16) -> Option<DateTime> {
    let s = s.strip_prefix('@').unwrap_or(s);
    let b = s.as_bytes();
    let mut c = [0i32, 1, 1, 0, 0, 0, 0];
    let num = |from: usize, len: usize| -> Option<i32> {
        let t = s.get(from..from + len)?;
        if !t.bytes().all(|x| x.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    c[0] = num(0, 4)?;
    let mut prec = YEAR;
    let mut i = 4;
    if b.get(i) == Some(&b'-') {
        c[1] = num(i + 1, 2)?;
        prec = MONTH;
        i += 3;
        if b.get(i) == Some(&b'-') {
            c[2] = num(i + 1, 2)?;
            prec = DAY;
            i += 3;
        }
    }
    let mut off = default_off;
    if b.get(i) == Some(&b'T') {
        i += 1;
        if i < b.len() && b[i].is_ascii_digit() {
            c[3] = num(i, 2)?;
            prec = HOUR;
            i += 2;
            if b.get(i) == Some(&b':') {
                c[4] = num(i + 1, 2)?;
                prec = MINUTE;
                i += 3;
                if b.get(i) == Some(&b':') {
                    c[5] = num(i + 1, 2)?;
                    prec = SECOND;
                    i += 3;
                    if b.get(i) == Some(&b'.') {
                        let start = i + 1;
                        let mut j = start;
                        while j < b.len() && b[j].is_ascii_digit() {
                            j += 1;
                        }
                        if j == start {
                            return None;
                        }
                        let frac = &s[start..j];
                        let mut ms: i32 = 0;
                        for (k, ch) in frac.bytes().take(3).enumerate() {
                            ms += (ch - b'0') as i32 * [100, 10, 1][k];
                        }
                        c[6] = ms;
                        prec = MS;
                        i = j;
                    }
                }
            }
        }
        if i < b.len() {
            match b[i] {
                b'Z' => {
                    off = 0;
                    i += 1;
                }
                b'+' | b'-' => {
                    let sign = if b[i] == b'-' { -1 } else { 1 };
                    let h = num(i + 1, 2)?;
                    let m = if b.get(i + 3) == Some(&b':') {
                        num(i + 4, 2)?
                    } else {
                        0
                    };
                    off = (sign * (h * 60 + m)) as i16;
                    i += 6;
                }
                _ => return None,
            }
        }
    }
    if i != b.len() {
        return None;
    }
    if !valid_components(&c, prec) {
        return None;
    }
    Some(DateTime { c, off, prec })
}

fn valid_components(c: &[i32; 7], prec: Prec) -> bool {
    if prec >= MONTH && !(1..=12).contains(&c[1]) {
        return false;
    }
    if prec >= DAY && (c[2] < 1 || c[2] > days_in_month(c[0], c[1] as u8) as i32) {
        return false;
    }
    if prec >= HOUR && !(0..=23).contains(&c[3]) {
        return false;
    }
    if prec >= MINUTE && !(0..=59).contains(&c[4]) {
        return false;
    }
    if prec >= SECOND && !(0..=59).contains(&c[5]) {
        return false;
    }
    true
}

pub fn parse_date(s: &str) -> Option<Date> {
    let s = s.strip_prefix('@').unwrap_or(s);
    if s.contains('T') {
        return None;
    }
    let d = parse_datetime(s, 0)?;
    Some(d.date())
}

pub fn parse_time(s: &str) -> Option<Time> {
    let s = s.strip_prefix('@').unwrap_or(s);
    let s = s.strip_prefix('T').unwrap_or(s);
    let d = parse_datetime(&format!("2000-01-01T{s}"), 0)?;
    d.time()
}

/// Whole `unit`s between a and b (b - a), given full precision values.
fn whole_between(a: &DateTime, b: &DateTime, unit: Prec) -> i64 {
    match unit {
        YEAR | MONTH => {
            let months = (b.c[0] as i64 - a.c[0] as i64) * 12 + (b.c[1] as i64 - a.c[1] as i64);
            // compare the rest of the components
            let rest_a = &a.c[2..];
            let rest_b = &b.c[2..];
            let mut m = months;
            if months > 0 && rest_b < rest_a {
                m -= 1;
            } else if months < 0 && rest_b > rest_a {
                m += 1;
            }
            if unit == YEAR {
                m / 12
            } else {
                m
            }
        }
        _ => {
            let d = b.epoch_ms() - a.epoch_ms();
            let per: i64 = match unit {
                WEEK => 604_800_000,
                DAY => 86_400_000,
                HOUR => 3_600_000,
                MINUTE => 60_000,
                SECOND => 1000,
                _ => 1,
            };
            d / per
        }
    }
}

/// Result of a duration/difference computation: exact or an uncertainty range.
pub enum Between {
    Exact(i64),
    Range(i64, i64),
}

/// `duration in <unit> between a and b` with uncertainty.
pub fn duration_between(a: &DateTime, b: &DateTime, unit: Prec) -> Between {
    duration_between_in(a, b, unit, MS)
}

/// As `duration_between`, for values whose type has components down to `type_prec` (DAY for Date).
pub fn duration_between_in(a: &DateTime, b: &DateTime, unit: Prec, type_prec: Prec) -> Between {
    let b = if a.off != b.off {
        b.to_offset(a.off)
    } else {
        *b
    };
    let pmax = type_prec;
    // seconds and milliseconds are one precision: a seconds value is exact
    let exact = |d: &DateTime| {
        let mut d = *d;
        if d.prec == SECOND {
            d.c[6] = 0;
            d.prec = MS;
        }
        d
    };
    let (a, b) = (&exact(a), exact(&b));
    let (mut fa, mut fb) = (a.fill_min(), b.fill_min());
    fa.off = a.off;
    fb.off = a.off;
    if a.prec >= pmax && b.prec >= pmax {
        return Between::Exact(whole_between(&fa, &fb, unit));
    }
    // the less precise value may lie anywhere within its precision (down to the finer value's precision)
    let span = |d: &DateTime, hi: bool| -> DateTime {
        let mut x = if hi { d.fill_max() } else { d.fill_min() };
        for i in (pmax as usize + 1)..7 {
            x.c[i] = if i <= 2 { 1 } else { 0 };
        }
        x.off = a.off;
        x
    };
    let (alo, ahi, blo, bhi) = (
        span(a, false),
        span(a, true),
        span(&b, false),
        span(&b, true),
    );
    let lo = whole_between(&ahi, &blo, unit);
    let hi = whole_between(&alo, &bhi, unit);
    if lo == hi {
        Between::Exact(lo)
    } else {
        Between::Range(lo.min(hi), lo.max(hi))
    }
}

/// `difference in <unit> between a and b`: boundaries crossed.
pub fn difference_between(a: &DateTime, b: &DateTime, unit: Prec) -> Between {
    // boundaries are counted in each value's own calendar for day and coarser units
    let b = if a.off != b.off && (unit > DAY && unit != WEEK) {
        b.to_offset(a.off)
    } else {
        *b
    };
    let t = if unit == WEEK { DAY } else { unit };
    if a.prec < t || b.prec < t {
        let ta = a.truncate(a.prec.min(t));
        let tb = b.truncate(b.prec.min(t));
        return duration_between(&ta, &tb, unit);
    }
    let ta = a.truncate(t);
    let tb = b.truncate(t);
    if unit == WEEK {
        // weeks: count Sunday boundaries
        let da = days_from_civil(ta.c[0], ta.c[1] as u8, ta.c[2] as u8);
        let db = days_from_civil(tb.c[0], tb.c[1] as u8, tb.c[2] as u8);
        // 1970-01-01 was a Thursday; week starting Sunday index
        let wa = (da + 4).div_euclid(7);
        let wb = (db + 4).div_euclid(7);
        return Between::Exact(wb - wa);
    }
    let mut fa = ta.fill_min();
    let mut fb = tb.fill_min();
    fa.off = a.off;
    fb.off = a.off;
    Between::Exact(whole_between(&fa, &fb, unit))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn month_end_and_leap() {
        let d = parse_datetime("2024-01-31", 0).unwrap();
        assert_eq!(d.add(1, MONTH).unwrap().to_string(), "2024-02-29");
        let d = parse_datetime("2024-02-29", 0).unwrap();
        assert_eq!(d.add(1, YEAR).unwrap().to_string(), "2025-02-28");
        assert_eq!(d.add(-1, DAY).unwrap().to_string(), "2024-02-28");
        let d = parse_datetime("2025-12-31T23:59:59.999Z", 0).unwrap();
        assert_eq!(
            d.add(1, MS).unwrap().to_string(),
            "2026-01-01T00:00:00.000Z"
        );
    }
    #[test]
    fn precision_compare() {
        let a = parse_datetime("2012-01", 0).unwrap();
        let b = parse_datetime("2012-01-05", 0).unwrap();
        assert_eq!(a.compare(&b, None), None);
        let c = parse_datetime("2012-02-05", 0).unwrap();
        assert_eq!(a.compare(&c, None), Some(Ordering::Less));
        assert_eq!(a.compare(&b, Some(MONTH)), Some(Ordering::Equal));
    }
    #[test]
    fn tz_compare() {
        let a = parse_datetime("2012-01-01T05:00:00.000+05:00", 0).unwrap();
        let b = parse_datetime("2012-01-01T00:00:00.000Z", 0).unwrap();
        assert_eq!(a.compare(&b, None), Some(Ordering::Equal));
    }
    #[test]
    fn between() {
        let a = parse_datetime("2000-02-29", 0).unwrap();
        let b = parse_datetime("2025-02-28", 0).unwrap();
        match duration_between(&a.fill_min(), &b.fill_min(), YEAR) {
            Between::Exact(n) => assert_eq!(n, 24),
            _ => panic!(),
        }
        let b = parse_datetime("2025-03-01", 0).unwrap();
        match duration_between(&a.fill_min(), &b.fill_min(), YEAR) {
            Between::Exact(n) => assert_eq!(n, 25),
            _ => panic!(),
        }
    }
}
