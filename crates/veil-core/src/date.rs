//! Civil (proleptic Gregorian, UTC) dates and timestamps without a date library.
//!
//! veil writes times as RFC 3339 UTC strings (`2026-11-25T03:48:26Z`) and reasons about deadlines
//! in whole days. [`Date`] counts days since 1970-01-01; the conversions are Howard Hinnant's
//! `days_from_civil` / `civil_from_days`.

use std::fmt;

/// A calendar day, stored as days since 1970-01-01 (negative before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub i64);

/// Day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Weekday {
    /// Saturday or Sunday.
    pub fn is_weekend(self) -> bool {
        matches!(self, Weekday::Saturday | Weekday::Sunday)
    }
}

/// A string that is not a `YYYY-MM-DD` date (optionally followed by `T...` time of day).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a date (expected YYYY-MM-DD)")]
pub struct DateError(pub String);

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Date {
    /// The date of year, month (1-12) and day, or `None` when it does not exist.
    pub fn from_ymd(y: i64, m: u32, d: u32) -> Option<Date> {
        ((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m))
            .then(|| Date(days_from_civil(y, m, d)))
    }

    /// Year, month, day.
    pub fn ymd(self) -> (i64, u32, u32) {
        civil_from_days(self.0)
    }

    /// Parses `YYYY-MM-DD`, also the date part of an RFC 3339 timestamp (`YYYY-MM-DDT...`).
    pub fn parse(s: &str) -> Result<Date, DateError> {
        let err = || DateError(s.to_string());
        let day = s.split_once('T').map_or(s, |(d, _)| d).trim();
        let mut parts = day.splitn(3, '-');
        let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(err());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(err());
        }
        let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i64>(), m.parse::<u32>(), d.parse::<u32>()) else {
            return Err(err());
        };
        Date::from_ymd(y, m, d).ok_or_else(err)
    }

    /// Today in UTC.
    pub fn today() -> Date {
        Date(unix_now().div_euclid(86_400))
    }

    pub fn weekday(self) -> Weekday {
        // 1970-01-01 was a Thursday.
        match (self.0 + 3).rem_euclid(7) {
            0 => Weekday::Monday,
            1 => Weekday::Tuesday,
            2 => Weekday::Wednesday,
            3 => Weekday::Thursday,
            4 => Weekday::Friday,
            5 => Weekday::Saturday,
            _ => Weekday::Sunday,
        }
    }

    pub fn add_days(self, n: i64) -> Date {
        Date(self.0 + n)
    }

    /// The same day `n` months later, clamped to the last day of a shorter month
    /// (2026-01-31 + 1 month = 2026-02-28).
    pub fn add_months(self, n: u32) -> Date {
        let (y, m, d) = self.ymd();
        let total = y * 12 + i64::from(m - 1) + i64::from(n);
        let (ny, nm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
        Date(days_from_civil(ny, nm, d.min(days_in_month(ny, nm))))
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An RFC 3339 UTC timestamp (`YYYY-MM-DDTHH:MM:SSZ`) of `secs` since the Unix epoch.
pub fn rfc3339(secs: i64) -> String {
    let day = Date(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{day}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The current time as an RFC 3339 UTC timestamp.
pub fn now_rfc3339() -> String {
    rfc3339(unix_now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_days_and_weekdays() {
        assert_eq!(Date::parse("1970-01-01").unwrap(), Date(0));
        assert_eq!(Date::parse("2000-03-01").unwrap(), Date(11_017));
        let d = Date::parse("2026-11-25").unwrap();
        assert_eq!(d.0, 20_782);
        assert_eq!(d.weekday(), Weekday::Wednesday);
        assert_eq!(d.to_string(), "2026-11-25");
        assert_eq!(
            Date::parse("2026-11-28").unwrap().weekday(),
            Weekday::Saturday
        );
        assert_eq!(Date(-1).to_string(), "1969-12-31");
        assert_eq!(rfc3339(1_795_578_506), "2026-11-25T03:48:26Z");
    }

    #[test]
    fn round_trips_every_day_over_four_centuries() {
        for n in -150_000..150_000 {
            let (y, m, d) = Date(n).ymd();
            assert_eq!(Date::from_ymd(y, m, d), Some(Date(n)));
        }
    }

    #[test]
    fn rejects_impossible_dates() {
        for s in [
            "2026-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-1-01",
            "20240101",
            "",
            "x",
        ] {
            assert!(Date::parse(s).is_err(), "{s}");
        }
        assert!(Date::parse("2024-02-29").is_ok());
        assert_eq!(
            Date::parse("2026-11-25T03:48:26Z").unwrap(),
            Date::parse("2026-11-25").unwrap()
        );
    }

    #[test]
    fn adds_months_clamping_to_month_end() {
        let d = |s| Date::parse(s).unwrap();
        assert_eq!(d("2026-01-31").add_months(1), d("2026-02-28"));
        assert_eq!(d("2024-01-31").add_months(1), d("2024-02-29"));
        assert_eq!(d("2026-11-25").add_months(2), d("2027-01-25"));
        assert_eq!(d("2026-11-25").add_months(0), d("2026-11-25"));
    }
}
