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
        let Some(z) = self.local(epoch_ms) else {
            return false;
        };
        if self.is_holiday(epoch_ms) {
            return false;
        }
        let day = z.weekday().to_monday_zero_offset() as usize;
        let minute = z.hour() as u16 * 60 + z.minute() as u16;
        self.week[day]
            .iter()
            .any(|&(a, b)| a <= minute && minute < b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
