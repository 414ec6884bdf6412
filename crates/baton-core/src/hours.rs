//! Business-hours calendars: a time zone, opening intervals per weekday, holidays.
//!
//! A calendar answers "is it open at this instant?", "when does it next open?" and "how much
//! open time lies between two instants?" (for SLA clocks that count business hours only). Local
//! times are resolved in the calendar's time zone with `jiff`, so a 09:00 opening is 09:00 on
//! both sides of a daylight-saving change, and a day that is 23 or 25 hours long is handled.

use std::fmt;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan, Zoned};

/// An error in a calendar's definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("unknown time zone {0:?} (use an IANA name such as \"Europe/Berlin\")")]
    TimeZone(String),
    #[error("interval {0:?} is not HH:MM-HH:MM")]
    Interval(String),
    #[error("interval {0:?} ends before it starts (split a night shift across two days)")]
    Backwards(String),
    #[error("intervals {0:?} and {1:?} overlap")]
    Overlap(String, String),
    #[error("holiday {0:?} is not a YYYY-MM-DD date")]
    Holiday(String),
}

/// One opening interval within a day: `[start, end)` in local time; `end` may be 24:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    start: Time,
    /// `None` means midnight at the end of the day (24:00).
    end: Option<Time>,
}

impl Interval {
    /// Parses `"09:00-17:30"`; `"00:00-24:00"` is the whole day.
    pub fn parse(s: &str) -> Result<Interval, CalendarError> {
        let bad = || CalendarError::Interval(s.to_string());
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let start = parse_hhmm(a.trim()).ok_or_else(bad)?;
        let end = match b.trim() {
            "24:00" => None,
            t => Some(parse_hhmm(t).ok_or_else(bad)?),
        };
        if end.is_some_and(|e| e <= start) {
            return Err(CalendarError::Backwards(s.to_string()));
        }
        Ok(Interval { start, end })
    }

    fn overlaps(&self, other: &Interval) -> bool {
        let end_a = self.end.unwrap_or(Time::MAX);
        let end_b = other.end.unwrap_or(Time::MAX);
        self.start < end_b && other.start < end_a
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = self
            .end
            .map_or_else(|| "24:00".to_string(), |e| e.strftime("%H:%M").to_string());
        write!(f, "{}-{end}", self.start.strftime("%H:%M"))
    }
}

fn parse_hhmm(s: &str) -> Option<Time> {
    let (h, m) = s.split_once(':')?;
    if h.len() > 2 || m.len() != 2 {
        return None;
    }
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

/// A named business calendar.
#[derive(Debug, Clone)]
pub struct Calendar {
    tz: TimeZone,
    /// Opening intervals per weekday, Monday first, sorted by start.
    days: [Vec<Interval>; 7],
    /// Closed all day, sorted.
    holidays: Vec<Date>,
}

/// How far ahead `next_open` looks before concluding a calendar never opens.
const LOOKAHEAD_DAYS: i32 = 400;

impl Calendar {
    /// Builds a calendar. `week` gives the intervals of each weekday (Monday first); a day
    /// without intervals is closed.
    pub fn new(
        time_zone: &str,
        week: [&[&str]; 7],
        holidays: &[&str],
    ) -> Result<Calendar, CalendarError> {
        let tz =
            TimeZone::get(time_zone).map_err(|_| CalendarError::TimeZone(time_zone.to_string()))?;
        let mut days: [Vec<Interval>; 7] = Default::default();
        for (day, specs) in days.iter_mut().zip(week) {
            let mut parsed = specs
                .iter()
                .map(|s| Interval::parse(s))
                .collect::<Result<Vec<_>, _>>()?;
            parsed.sort_by_key(|i| i.start);
            for pair in parsed.windows(2) {
                if pair[0].overlaps(&pair[1]) {
                    return Err(CalendarError::Overlap(
                        pair[0].to_string(),
                        pair[1].to_string(),
                    ));
                }
            }
            *day = parsed;
        }
        let mut hol = holidays
            .iter()
            .map(|h| {
                h.parse::<Date>()
                    .map_err(|_| CalendarError::Holiday(h.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        hol.sort();
        hol.dedup();
        Ok(Calendar {
            tz,
            days,
            holidays: hol,
        })
    }

    /// A calendar that is always open.
    pub fn always_open() -> Calendar {
        let whole = Interval {
            start: Time::MIN,
            end: None,
        };
        Calendar {
            tz: TimeZone::UTC,
            days: std::array::from_fn(|_| vec![whole]),
            holidays: Vec::new(),
        }
    }

    /// The calendar's time zone.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    fn intervals_on(&self, date: Date) -> &[Interval] {
        if self.holidays.binary_search(&date).is_ok() {
            return &[];
        }
        &self.days[weekday_index(date.weekday())]
    }

    /// Whether the calendar is open at `at`.
    ///
    /// The open spans (instants) are the one definition of "open", shared with `next_open` and
    /// the durations: when clocks go back, an interval covers the instants from the first
    /// occurrence of its start to its end; when they go forward, an interval that starts in the
    /// skipped hour starts when the clocks resume.
    pub fn is_open(&self, at: Timestamp) -> bool {
        let date = at.to_zoned(self.tz.clone()).date();
        [date.yesterday().ok(), Some(date)]
            .into_iter()
            .flatten()
            .any(|d| self.open_spans(d).iter().any(|(s, e)| *s <= at && at < *e))
    }

    /// The open stretches of local day `date`, as instants.
    fn open_spans(&self, date: Date) -> Vec<(Timestamp, Timestamp)> {
        self.intervals_on(date)
            .iter()
            .filter_map(|i| {
                let start = self.instant(date, i.start)?;
                let end = match i.end {
                    Some(e) => self.instant(date, e)?,
                    None => self.instant(date.tomorrow().ok()?, Time::MIN)?,
                };
                (end > start).then_some((start, end))
            })
            .collect()
    }

    /// The instant of a local date and time; a time skipped by a DST gap maps forward.
    fn instant(&self, date: Date, time: Time) -> Option<Timestamp> {
        self.tz
            .to_zoned(date.to_datetime(time))
            .ok()
            .map(|z| z.timestamp())
    }

    /// The first instant at or after `at` when the calendar is open, or `None` if it does
    /// not open within a year and a month.
    pub fn next_open(&self, at: Timestamp) -> Option<Timestamp> {
        let start_date = at.to_zoned(self.tz.clone()).date();
        for offset in 0..LOOKAHEAD_DAYS {
            let date = start_date.checked_add(offset.days()).ok()?;
            for (s, e) in self.open_spans(date) {
                if e > at {
                    return Some(s.max(at));
                }
            }
        }
        None
    }

    /// Open time between `from` and `to` (zero if `to` is not after `from`): the business
    /// time an SLA clock counts.
    pub fn open_duration(&self, from: Timestamp, to: Timestamp) -> SignedDuration {
        if to <= from {
            return SignedDuration::ZERO;
        }
        let mut total = SignedDuration::ZERO;
        let mut date = from
            .to_zoned(self.tz.clone())
            .date()
            .yesterday()
            .unwrap_or(Date::MIN);
        let last = to.to_zoned(self.tz.clone()).date();
        while date <= last {
            for (s, e) in self.open_spans(date) {
                let (a, b) = (s.max(from), e.min(to));
                if b > a {
                    total += b.duration_since(a);
                }
            }
            match date.tomorrow() {
                Ok(d) => date = d,
                Err(_) => break,
            }
        }
        total
    }

    /// The instant when `business` of open time will have passed since `from`, or `None` if
    /// the calendar does not provide that much open time within a year and a month.
    pub fn add_open_duration(
        &self,
        from: Timestamp,
        business: SignedDuration,
    ) -> Option<Timestamp> {
        let mut left = business;
        if left <= SignedDuration::ZERO {
            return Some(from);
        }
        let start_date = from.to_zoned(self.tz.clone()).date().yesterday().ok()?;
        for offset in 0..LOOKAHEAD_DAYS {
            let date = start_date.checked_add(offset.days()).ok()?;
            for (s, e) in self.open_spans(date) {
                let a = s.max(from);
                if e <= a {
                    continue;
                }
                let span = e.duration_since(a);
                if span >= left {
                    return a.checked_add(left).ok();
                }
                left -= span;
            }
        }
        None
    }

    /// `at` seen in the calendar's time zone.
    pub fn local(&self, at: Timestamp) -> Zoned {
        at.to_zoned(self.tz.clone())
    }
}

fn weekday_index(w: Weekday) -> usize {
    w.to_monday_zero_offset() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn office() -> Calendar {
        let weekday: &[&str] = &["09:00-12:00", "13:00-17:30"];
        Calendar::new(
            "Europe/Berlin",
            [weekday, weekday, weekday, weekday, weekday, &[], &[]],
            &["2026-12-25"],
        )
        .expect("valid calendar")
    }

    #[test]
    fn open_and_closed_instants() {
        let c = office();
        assert!(c.is_open(ts("2026-11-23T08:30:00Z"))); // Monday 09:30 in Berlin (UTC+1)
        assert!(!c.is_open(ts("2026-11-23T11:30:00Z"))); // lunch
        assert!(!c.is_open(ts("2026-11-23T16:30:00Z"))); // 17:30, closing time is exclusive
        assert!(!c.is_open(ts("2026-11-21T10:00:00Z"))); // Saturday
        assert!(!c.is_open(ts("2026-12-25T10:00:00Z"))); // holiday
    }

    #[test]
    fn next_open_skips_weekends_and_holidays() {
        let c = office();
        assert_eq!(
            c.next_open(ts("2026-11-21T10:00:00Z")),
            Some(ts("2026-11-23T08:00:00Z"))
        );
        assert_eq!(
            c.next_open(ts("2026-12-24T17:00:00Z")),
            Some(ts("2026-12-28T08:00:00Z"))
        );
        // Already open: now.
        assert_eq!(
            c.next_open(ts("2026-11-23T08:30:00Z")),
            Some(ts("2026-11-23T08:30:00Z"))
        );
        let never = Calendar::new("UTC", [&[], &[], &[], &[], &[], &[], &[]], &[]).expect("valid");
        assert_eq!(never.next_open(ts("2026-11-23T08:30:00Z")), None);
    }

    #[test]
    fn nine_am_is_nine_am_across_daylight_saving() {
        let c = office();
        // Berlin is UTC+1 in winter and UTC+2 from 29 March 2026.
        assert_eq!(
            c.next_open(ts("2026-03-27T17:00:00Z")),
            Some(ts("2026-03-30T07:00:00Z"))
        );
        assert_eq!(
            c.next_open(ts("2026-10-23T17:00:00Z")),
            Some(ts("2026-10-26T08:00:00Z"))
        );
    }

    #[test]
    fn the_repeated_hour_when_clocks_go_back_is_consistent() {
        // London, 31 October 2027: 01:00-02:00 happens twice. The interval opens at the first
        // 01:30 (00:30Z) and closes at 02:30 (02:30Z); every answer agrees with that.
        let night: &[&str] = &["01:30-02:30"];
        let c = Calendar::new("Europe/London", [night; 7], &[]).expect("valid");
        let at = ts("2027-10-31T01:00:00Z");
        assert!(c.is_open(at));
        assert_eq!(c.next_open(at), Some(at));
        assert_eq!(
            c.open_duration(ts("2027-10-31T00:00:00Z"), ts("2027-10-31T03:00:00Z")),
            SignedDuration::from_hours(2)
        );
    }

    #[test]
    fn business_time_between_instants() {
        let c = office();
        // Friday 16:00 to Monday 10:00 Berlin: 1.5 h on Friday + 1 h on Monday.
        let d = c.open_duration(ts("2026-11-20T15:00:00Z"), ts("2026-11-23T09:00:00Z"));
        assert_eq!(d, SignedDuration::from_mins(150));
        assert_eq!(
            c.open_duration(ts("2026-11-23T09:00:00Z"), ts("2026-11-20T15:00:00Z")),
            SignedDuration::ZERO
        );
        // Two business hours from Friday 17:00 Berlin end on Monday at 10:30.
        assert_eq!(
            c.add_open_duration(ts("2026-11-20T16:00:00Z"), SignedDuration::from_hours(2)),
            Some(ts("2026-11-23T09:30:00Z"))
        );
    }

    #[test]
    fn bad_definitions_are_rejected_with_a_reason() {
        let e = |week: [&[&str]; 7], tz: &str, hol: &[&str]| {
            Calendar::new(tz, week, hol).unwrap_err().to_string()
        };
        let none: &[&str] = &[];
        assert!(e([&["9-5"], none, none, none, none, none, none], "UTC", &[]).contains("HH:MM"));
        assert!(
            e(
                [&["17:00-09:00"], none, none, none, none, none, none],
                "UTC",
                &[]
            )
            .contains("ends before")
        );
        assert!(
            e(
                [
                    &["09:00-12:00", "11:00-13:00"],
                    none,
                    none,
                    none,
                    none,
                    none,
                    none
                ],
                "UTC",
                &[]
            )
            .contains("overlap")
        );
        assert!(e([none; 7], "Mars/Olympus", &[]).contains("time zone"));
        assert!(e([none; 7], "UTC", &["25/12/2026"]).contains("holiday"));
    }
}
