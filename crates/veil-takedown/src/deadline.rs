//! Due dates of takedown requests: working days (weekends and a holiday calendar skipped),
//! calendar days or calendar months after the day a request was received.
//!
//! The holiday calendar is a text file the maintainer keeps: one `YYYY-MM-DD` per line, `#`
//! comments and blank lines ignored. A line `YYYY-MM-DD workday` marks a weekend day that is a
//! working day (make-up working days, as in the Chinese public holiday schedule).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use veil_core::Date;

/// How long a request may take. `WorkingDays(15)` is the default policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "amount", rename_all = "snake_case")]
pub enum DuePolicy {
    WorkingDays(u32),
    CalendarDays(u32),
    CalendarMonths(u32),
}

impl DuePolicy {
    pub fn kind(&self) -> &'static str {
        match self {
            DuePolicy::WorkingDays(_) => "working_days",
            DuePolicy::CalendarDays(_) => "calendar_days",
            DuePolicy::CalendarMonths(_) => "calendar_months",
        }
    }

    pub fn amount(&self) -> u32 {
        match *self {
            DuePolicy::WorkingDays(n)
            | DuePolicy::CalendarDays(n)
            | DuePolicy::CalendarMonths(n) => n,
        }
    }

    pub fn from_parts(kind: &str, amount: u32) -> Option<DuePolicy> {
        match kind {
            "working_days" => Some(DuePolicy::WorkingDays(amount)),
            "calendar_days" => Some(DuePolicy::CalendarDays(amount)),
            "calendar_months" => Some(DuePolicy::CalendarMonths(amount)),
            _ => None,
        }
    }

    /// The last day on which a request received on `received` is still on time. The day of
    /// receipt is not counted: 15 working days from a Monday with no holidays is the Monday three
    /// weeks later.
    pub fn due(&self, received: Date, calendar: &Calendar) -> Date {
        match *self {
            DuePolicy::CalendarDays(n) => received.add_days(i64::from(n)),
            DuePolicy::CalendarMonths(n) => received.add_months(n),
            DuePolicy::WorkingDays(n) => {
                let mut day = received;
                let mut counted = 0;
                while counted < n {
                    day = day.add_days(1);
                    if calendar.is_working_day(day) {
                        counted += 1;
                    }
                }
                day
            }
        }
    }
}

impl std::fmt::Display for DuePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.amount(), self.kind().replace('_', " "))
    }
}

/// Holidays (days off that fall on weekdays) and make-up working days (weekend days worked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    pub holidays: BTreeSet<Date>,
    pub workdays: BTreeSet<Date>,
}

impl Calendar {
    /// Parses a holiday file. Errors name the 1-based line.
    pub fn parse(text: &str) -> Result<Calendar, (usize, String)> {
        let mut cal = Calendar::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let date = words.next().unwrap_or("");
            let date = Date::parse(date).map_err(|e| (i + 1, e.to_string()))?;
            match words.next() {
                None | Some("holiday") => {
                    cal.holidays.insert(date);
                }
                Some("workday") => {
                    cal.workdays.insert(date);
                }
                Some(other) => {
                    return Err((
                        i + 1,
                        format!("unknown day kind {other:?} (expected `holiday` or `workday`)"),
                    ))
                }
            }
            if let Some(extra) = words.next() {
                return Err((i + 1, format!("unexpected {extra:?}")));
            }
        }
        Ok(cal)
    }

    pub fn is_working_day(&self, d: Date) -> bool {
        if self.holidays.contains(&d) {
            return false;
        }
        !d.weekday().is_weekend() || self.workdays.contains(&d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        Date::parse(s).unwrap()
    }

    #[test]
    fn fifteen_working_days_skip_weekends() {
        let cal = Calendar::default();
        // Monday 2026-11-23 + 15 working days = Monday 2026-12-14.
        assert_eq!(
            DuePolicy::WorkingDays(15).due(d("2026-11-23"), &cal),
            d("2026-12-14")
        );
        // Received on a Saturday: counting starts on Monday; due Friday three weeks later.
        assert_eq!(
            DuePolicy::WorkingDays(15).due(d("2026-11-28"), &cal),
            d("2026-12-18")
        );
        // Friday + 1 working day = Monday.
        assert_eq!(
            DuePolicy::WorkingDays(1).due(d("2026-11-27"), &cal),
            d("2026-11-30")
        );
        assert_eq!(
            DuePolicy::WorkingDays(0).due(d("2026-11-27"), &cal),
            d("2026-11-27")
        );
    }

    #[test]
    fn holidays_and_make_up_workdays() {
        // National Day week 2026: Oct 1-7 off (Thu 1 .. Wed 7), Sat Oct 10 worked.
        let cal = Calendar::parse(
            "# China 2026\n2026-10-01\n2026-10-02 holiday\n2026-10-05\n2026-10-06\n2026-10-07\n\n2026-10-10 workday # make-up day\n",
        )
        .unwrap();
        assert!(!cal.is_working_day(d("2026-10-01")));
        assert!(!cal.is_working_day(d("2026-10-03")));
        assert!(cal.is_working_day(d("2026-10-08")));
        assert!(cal.is_working_day(d("2026-10-10")));
        assert!(!cal.is_working_day(d("2026-10-11")));
        // Received Wed 2026-09-30: working days Oct 8, 9, 10(Sat, make-up), 12, 13.
        assert_eq!(
            DuePolicy::WorkingDays(5).due(d("2026-09-30"), &cal),
            d("2026-10-13")
        );
        // Without the calendar: Oct 1, 2, 5, 6, 7.
        assert_eq!(
            DuePolicy::WorkingDays(5).due(d("2026-09-30"), &Calendar::default()),
            d("2026-10-07")
        );
        // 15 working days over the holiday: Oct 8, 9, 10, 12-16, 19-23, 26, 27 -> Oct 27.
        assert_eq!(
            DuePolicy::WorkingDays(15).due(d("2026-09-30"), &cal),
            d("2026-10-27")
        );
    }

    #[test]
    fn calendar_policies() {
        let cal = Calendar::default();
        assert_eq!(
            DuePolicy::CalendarMonths(1).due(d("2026-01-31"), &cal),
            d("2026-02-28")
        );
        assert_eq!(
            DuePolicy::CalendarDays(30).due(d("2026-11-25"), &cal),
            d("2026-12-25")
        );
    }

    #[test]
    fn bad_calendar_lines_are_named() {
        assert_eq!(
            Calendar::parse("2026-10-01\n2026-13-01\n").unwrap_err().0,
            2
        );
        assert_eq!(Calendar::parse("2026-10-01 maybe\n").unwrap_err().0, 1);
        assert_eq!(Calendar::parse("2026-10-01 holiday x\n").unwrap_err().0, 1);
    }
}
