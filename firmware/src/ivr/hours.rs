//! Business hours: opening times per weekday, a holiday calendar and the
//! office's time zone.
//!
//! The box's clock runs in UTC; whether the office is open is decided in
//! the office's zone (jiff reads the system tz database), so daylight-saving
//! changes and a box set to UTC both do the right thing.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Deserialize;

/// One schedule as written in the site config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHours {
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    mon: Vec<String>,
    #[serde(default)]
    tue: Vec<String>,
    #[serde(default)]
    wed: Vec<String>,
    #[serde(default)]
    thu: Vec<String>,
    #[serde(default)]
    fri: Vec<String>,
    #[serde(default)]
    sat: Vec<String>,
    #[serde(default)]
    sun: Vec<String>,
    #[serde(default)]
    holidays: Vec<String>,
}

impl RawHours {
    /// Open every day for `span` (`"09:00-21:00"`), in the default zone.
    pub fn every_day(span: &str) -> RawHours {
        let d = vec![span.to_string()];
        RawHours {
            mon: d.clone(),
            tue: d.clone(),
            wed: d.clone(),
            thu: d.clone(),
            fri: d.clone(),
            sat: d.clone(),
            sun: d,
            ..RawHours::default()
        }
    }
}

/// A checked schedule.
#[derive(Debug, Clone)]
pub struct Hours {
    tz: TimeZone,
    /// Open spans per weekday (Monday first), minutes since midnight,
    /// half-open `[start, end)`.
    week: [Vec<(u16, u16)>; 7],
    /// Closed all day, inclusive ranges.
    holidays: Vec<(Date, Date)>,
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

impl Hours {
    /// Checks a schedule; each error names its key path under `at`.
    pub fn check(
        raw: &RawHours,
        default_tz: &str,
        at: &str,
        err: &mut dyn FnMut(String, String),
    ) -> Option<Hours> {
        let tz_name = raw.timezone.as_deref().unwrap_or(default_tz);
        let tz = match TimeZone::get(tz_name) {
            Ok(tz) => Some(tz),
            Err(e) => {
                let key = if raw.timezone.is_some() {
                    format!("{at}.timezone")
                } else {
                    at.to_string()
                };
                err(
                    key,
                    format!(
                        "unknown time zone `{tz_name}` ({e}); use an IANA name such as \"Asia/Shanghai\""
                    ),
                );
                None
            }
        };
        let days = [
            ("mon", &raw.mon),
            ("tue", &raw.tue),
            ("wed", &raw.wed),
            ("thu", &raw.thu),
            ("fri", &raw.fri),
            ("sat", &raw.sat),
            ("sun", &raw.sun),
        ];
        let mut week: [Vec<(u16, u16)>; 7] = Default::default();
        for (d, (name, spans)) in days.iter().enumerate() {
            for (i, span) in spans.iter().enumerate() {
                let parsed = span
                    .split_once('-')
                    .and_then(|(a, b)| Some((parse_hhmm(a.trim())?, parse_hhmm(b.trim())?)));
                match parsed {
                    Some((a, b)) if a < b => week[d].push((a, b)),
                    Some(_) => err(
                        format!("{at}.{name}[{i}]"),
                        format!(
                            "`{span}` ends before it starts; a span past midnight is two spans (\"22:00-24:00\" and \"00:00-06:00\" the next day)"
                        ),
                    ),
                    None => err(
                        format!("{at}.{name}[{i}]"),
                        format!("`{span}` is not a span like \"09:00-17:30\""),
                    ),
                }
            }
        }
        let mut holidays = Vec::new();
        for (i, h) in raw.holidays.iter().enumerate() {
            let (a, b) = h.split_once("..").unwrap_or((h, h));
            match (a.trim().parse::<Date>(), b.trim().parse::<Date>()) {
                (Ok(a), Ok(b)) if a <= b => holidays.push((a, b)),
                (Ok(_), Ok(_)) => err(
                    format!("{at}.holidays[{i}]"),
                    format!("holiday range `{h}` ends before it starts"),
                ),
                _ => err(
                    format!("{at}.holidays[{i}]"),
                    format!(
                        "`{h}` is not a date like \"2026-10-01\" or a range like \"2026-10-01..2026-10-07\""
                    ),
                ),
            }
        }
        Some(Hours {
            tz: tz?,
            week,
            holidays,
        })
    }

    fn local(&self, epoch_ms: i64) -> Option<jiff::Zoned> {
        jiff::Timestamp::from_millisecond(epoch_ms)
            .ok()
            .map(|t| t.to_zoned(self.tz.clone()))
    }

    /// Whether the office is closed all day for a holiday at this moment.
    pub fn is_holiday(&self, epoch_ms: i64) -> bool {
        let Some(z) = self.local(epoch_ms) else {
            return false;
        };
        let d = z.date();
        self.holidays.iter().any(|&(a, b)| a <= d && d <= b)
    }

    /// Whether the office is open at this moment.
    pub fn is_open(&self, epoch_ms: i64) -> bool {
        self.is_open_in(epoch_ms, &self.tz)
    }

    /// The schedule's zone.
    pub fn timezone(&self) -> &TimeZone {
        &self.tz
    }

    /// Whether no span is open on any day.
    pub fn never_opens(&self) -> bool {
        self.week.iter().all(Vec::is_empty)
    }

    /// Whether the schedule's local times are open at this moment in `tz`
    /// (a campaign's calling window in the contact's own zone).
    pub fn is_open_in(&self, epoch_ms: i64, tz: &TimeZone) -> bool {
        let Ok(t) = jiff::Timestamp::from_millisecond(epoch_ms) else {
            return false;
        };
        let z = t.to_zoned(tz.clone());
        let d = z.date();
        if self.holidays.iter().any(|&(a, b)| a <= d && d <= b) {
            return false;
        }
        let day = z.weekday().to_monday_zero_offset() as usize;
        let minute = z.hour() as u16 * 60 + z.minute() as u16;
        self.week[day]
            .iter()
            .any(|&(a, b)| a <= minute && minute < b)
    }

    /// The first moment from `epoch_ms` on (itself when open) at which the
    /// schedule is open in `tz`, within the next 400 days; `None` if it
    /// never opens.
    pub fn next_open_in(&self, epoch_ms: i64, tz: &TimeZone) -> Option<i64> {
        if self.is_open_in(epoch_ms, tz) {
            return Some(epoch_ms);
        }
        let now = jiff::Timestamp::from_millisecond(epoch_ms)
            .ok()?
            .to_zoned(tz.clone());
        let today = now.date();
        for offset in 0..400 {
            let date = today.checked_add(jiff::Span::new().days(offset)).ok()?;
            if self.holidays.iter().any(|&(a, b)| a <= date && date <= b) {
                continue;
            }
            let day = date.weekday().to_monday_zero_offset() as usize;
            let mut starts: Vec<u16> = self.week[day].iter().map(|&(a, _)| a).collect();
            starts.sort_unstable();
            for start in starts {
                let time =
                    jiff::civil::Time::new((start / 60) as i8, (start % 60) as i8, 0, 0).ok()?;
                let at = date.to_datetime(time).to_zoned(tz.clone()).ok()?;
                let ms = at.timestamp().as_millisecond();
                if ms > epoch_ms {
                    return Some(ms);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_opening_is_found_in_another_zone_across_days_and_holidays() {
        let raw: RawHours = toml::from_str(
            "mon = [\"09:00-12:00\", \"14:00-18:00\"]\ntue = [\"09:00-12:00\"]\nholidays = [\"2026-11-24\"]",
        )
        .unwrap();
        let h = Hours::check(&raw, "Asia/Shanghai", "w", &mut |_, m| panic!("{m}")).unwrap();
        let ny = TimeZone::get("America/New_York").unwrap();
        // Monday 2026-11-23 12:30 in New York: lunch; open again at 14:00.
        let lunch = ms("2026-11-23T17:30:00Z");
        assert!(!h.is_open_in(lunch, &ny));
        assert_eq!(h.next_open_in(lunch, &ny), Some(ms("2026-11-23T19:00:00Z")));
        // Monday 19:00 there: Tuesday is a holiday, so next Monday 09:00.
        let evening = ms("2026-11-24T00:00:00Z");
        assert_eq!(
            h.next_open_in(evening, &ny),
            Some(ms("2026-11-30T14:00:00Z"))
        );
        // Open now: now.
        let open = ms("2026-11-23T15:00:00Z");
        assert_eq!(h.next_open_in(open, &ny), Some(open));
        let never: RawHours = toml::from_str("").unwrap();
        let n = Hours::check(&never, "UTC", "w", &mut |_, m| panic!("{m}")).unwrap();
        assert!(n.never_opens());
        assert_eq!(n.next_open_in(open, &ny), None);
    }

    fn ms(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn open_in_the_office_zone_closed_on_holidays() {
        let raw: RawHours = toml::from_str(
            r#"
timezone = "Asia/Shanghai"
mon = ["09:00-12:00", "13:00-18:00"]
sat = ["10:00-14:00"]
holidays = ["2026-10-01..2026-10-07", "2026-11-30"]
"#,
        )
        .unwrap();
        let mut errs = Vec::new();
        let h = Hours::check(&raw, "UTC", "h", &mut |k, m| errs.push((k, m))).unwrap();
        assert!(errs.is_empty());
        // Monday 2026-11-23, 09:30 in Shanghai is 01:30 UTC.
        assert!(h.is_open(ms("2026-11-23T01:30:00Z")));
        assert!(!h.is_open(ms("2026-11-23T04:30:00Z")), "lunch");
        assert!(!h.is_open(ms("2026-11-23T10:00:00Z")), "18:00 is closed");
        assert!(h.is_open(ms("2026-11-23T09:59:00Z")));
        assert!(
            !h.is_open(ms("2026-11-24T01:30:00Z")),
            "no hours on Tuesday"
        );
        // Monday 2026-11-30 is a holiday.
        assert!(!h.is_open(ms("2026-11-30T01:30:00Z")));
        assert!(h.is_holiday(ms("2026-11-30T01:30:00Z")));
        // Saturday 2026-10-03 is inside the October range.
        assert!(h.is_holiday(ms("2026-10-03T03:00:00Z")));
    }

    #[test]
    fn errors_name_the_key() {
        let raw: RawHours = toml::from_str(
            r#"
timezone = "Mars/Olympus"
mon = ["18:00-09:00", "9-5"]
holidays = ["2026-13-01"]
"#,
        )
        .unwrap();
        let mut errs = Vec::new();
        let h = Hours::check(&raw, "UTC", "ivr.hours.office", &mut |k, m| {
            errs.push((k, m))
        });
        assert!(h.is_none());
        let keys: Vec<_> = errs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ivr.hours.office.timezone",
                "ivr.hours.office.mon[0]",
                "ivr.hours.office.mon[1]",
                "ivr.hours.office.holidays[0]"
            ]
        );
    }
}
