//! Measurement periods and the few date computations the reports need
//! (no date crate: ISO-8601 strings in, ISO-8601 strings out).

use crate::error::{EcqmError, Result};

/// A measurement period as given (`YYYY-MM-DD` or a full date-time), with
/// its CQL date-time bounds. A date-only end is inclusive of its whole last
/// day (`23:59:59.999`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// As given, for `MeasureReport.period`.
    pub start: String,
    pub end: String,
    /// `YYYY-MM-DDThh:mm:ss.fff` plus offset (`Z` when none given).
    pub start_datetime: String,
    pub end_datetime: String,
}

/// `YYYY-MM-DD` naming a real date. Each field goes through `str::parse`, so
/// unlike `calendar::parse_ymd` a leading sign is accepted (`+024-01-01`).
fn valid_date(s: &str) -> Option<(i64, u32, u32)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = s[0..4].parse().ok()?;
    let m: u32 = s[5..7].parse().ok()?;
    let d: u32 = s[8..10].parse().ok()?;
    calendar::is_valid_date(y, m, d).then_some((y, m, d))
}

/// Normalises a bound to `YYYY-MM-DDThh:mm:ss.fff±zz:zz`/`Z`.
fn to_datetime(s: &str, end: bool) -> Result<String> {
    let s = s.trim();
    let bad = || {
        EcqmError::Argument(format!(
            "period bound {s:?} is not YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff][Z|±hh:mm]"
        ))
    };
    if s.len() == 10 {
        valid_date(s).ok_or_else(bad)?;
        return Ok(if end {
            format!("{s}T23:59:59.999Z")
        } else {
            format!("{s}T00:00:00.000Z")
        });
    }
    let (date, rest) = s.split_once('T').ok_or_else(bad)?;
    valid_date(date).ok_or_else(bad)?;
    let (time, zone) = match rest.find(['Z', '+', '-']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "Z"),
    };
    let zone_ok = zone == "Z"
        || (zone.len() == 6
            && zone.as_bytes()[3] == b':'
            && zone[1..3].parse::<u32>().is_ok_and(|h| h <= 14)
            && zone[4..6].parse::<u32>().is_ok_and(|m| m < 60));
    if !zone_ok {
        return Err(bad());
    }
    let (hms, frac) = match time.split_once('.') {
        Some((a, f)) if !f.is_empty() && f.len() <= 3 && f.bytes().all(|c| c.is_ascii_digit()) => {
            (a, format!("{f:0<3}"))
        }
        Some(_) => return Err(bad()),
        None => (time, if end { "999".into() } else { "000".into() }),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_digit()))
        && parts[0].parse::<u32>().is_ok_and(|h| h < 24)
        && parts[1].parse::<u32>().is_ok_and(|m| m < 60)
        && parts[2].parse::<u32>().is_ok_and(|x| x < 60);
    if !ok {
        return Err(bad());
    }
    Ok(format!("{date}T{hms}.{frac}{zone}"))
}

impl Period {
    pub fn new(start: &str, end: &str) -> Result<Self> {
        let start_datetime = to_datetime(start, false)?;
        let end_datetime = to_datetime(end, true)?;
        // Same-zone comparison is enough for a sanity check.
        if start_datetime[..23] > end_datetime[..23] {
            return Err(EcqmError::Argument(format!(
                "period start {start} is after its end {end}"
            )));
        }
        Ok(Period {
            start: start.trim().to_string(),
            end: end.trim().to_string(),
            start_datetime,
            end_datetime,
        })
    }

    /// The date part of the start (`YYYY-MM-DD`).
    pub fn start_date(&self) -> &str {
        &self.start_datetime[..10]
    }

    /// The date part of the end (`YYYY-MM-DD`).
    pub fn end_date(&self) -> &str {
        &self.end_datetime[..10]
    }
}

/// Now as `YYYY-MM-DDThh:mm:ssZ` (UTC).
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    format_unix(secs)
}

pub fn format_unix(secs: i64) -> String {
    let (y, m, d) = calendar::civil_from_days(secs.div_euclid(86400));
    let s = secs.rem_euclid(86400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_only_end_is_inclusive() {
        let p = Period::new("2025-01-01", "2025-12-31").unwrap();
        assert_eq!(p.start_datetime, "2025-01-01T00:00:00.000Z");
        assert_eq!(p.end_datetime, "2025-12-31T23:59:59.999Z");
        assert_eq!(p.end_date(), "2025-12-31");
    }

    #[test]
    fn datetimes_and_errors() {
        let p = Period::new("2025-01-01T08:00:00-05:00", "2025-06-30T12:00:00.5Z").unwrap();
        assert_eq!(p.start_datetime, "2025-01-01T08:00:00.000-05:00");
        assert_eq!(p.end_datetime, "2025-06-30T12:00:00.500Z");
        for (s, e) in [
            ("2025-13-01", "2025-12-31"),
            ("2025-02-30", "2025-12-31"),
            ("2025-01-01", "soon"),
            ("2025-12-31", "2025-01-01"),
            ("2025-01-01T25:00:00", "2025-12-31"),
            ("2025-01-01T10:00:00+99:00", "2025-12-31"),
        ] {
            assert!(Period::new(s, e).is_err(), "{s} {e}");
        }
        assert!(Period::new("2024-02-29", "2024-12-31").is_ok());
    }

    #[test]
    fn unix_formatting() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(format_unix(951_782_400), "2000-02-29T00:00:00Z");
    }
}
