//! Reports for the office manager: inbound calls per day, week or month,
//! grouped by queue, agent, dialled number or IVR outcome, counted from the
//! call records (docs/console.md, "Reports", defines each figure). Days
//! are the box's local days.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::api::{ApiError, ApiResult, Authed, Console, St};
use super::auth::Role;
use crate::store::{ReadOnly, ReportCall};

/// Longest span one report covers.
const MAX_DAYS: i32 = 400;
/// Service-level threshold when the request names none.
const SL_DEFAULT_S: u64 = 20;

#[derive(Debug, Default, Deserialize)]
pub(super) struct Ask {
    /// `day` (default), `week` or `month`.
    #[serde(default)]
    period: Option<String>,
    /// `queue` (default), `agent`, `dialled` or `outcome`.
    #[serde(default)]
    by: Option<String>,
    /// First day (`2026-12-01`); default 30 days before `to`.
    #[serde(default)]
    from: Option<String>,
    /// Last day, included; default today.
    #[serde(default)]
    to: Option<String>,
    /// Service-level threshold, seconds.
    #[serde(default)]
    sl: Option<u64>,
}

/// One row: a period and a group's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(super) struct Row {
    /// The period's first day (`2026-12-07`; weeks start on Monday).
    pub period: String,
    /// The queue, agent, dialled number or outcome.
    pub key: String,
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    /// Answered within the threshold / answered (0 when none).
    pub service_level: f64,
    /// Average speed of answer, ms.
    pub asa_ms: u64,
    /// Average talk time of answered calls, ms.
    pub handle_ms: u64,
    /// Calls with a survey score, and their average.
    pub surveys: u64,
    pub survey_avg: f64,
    #[serde(skip)]
    in_sl: u64,
    #[serde(skip)]
    wait_sum: u64,
    #[serde(skip)]
    talk_sum: u64,
    #[serde(skip)]
    talk_n: u64,
    #[serde(skip)]
    score_sum: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Period {
    Day,
    Week,
    Month,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum By {
    Queue,
    Agent,
    Dialled,
    Outcome,
}

fn day(s: &str) -> Result<jiff::civil::Date, ApiError> {
    jiff::civil::Date::strptime("%Y-%m-%d", s).map_err(|_| {
        ApiError::bad(format!(
            "`{}` is not a date such as 2026-12-07",
            s.chars().take(40).collect::<String>()
        ))
    })
}

/// The first day of the period `d` falls in.
fn period_start(d: jiff::civil::Date, p: Period) -> jiff::civil::Date {
    match p {
        Period::Day => d,
        Period::Week => {
            let back = i64::from(d.weekday().to_monday_zero_offset());
            d.checked_sub(jiff::Span::new().days(back)).unwrap_or(d)
        }
        Period::Month => d.first_of_month(),
    }
}

/// Counts `calls` into rows, by period and group, in `tz`'s days.
fn count(calls: &[ReportCall], p: Period, by: By, sl_ms: i64, tz: &jiff::tz::TimeZone) -> Vec<Row> {
    let mut rows: BTreeMap<(String, String), Row> = BTreeMap::new();
    for c in calls {
        let key = match by {
            By::Queue => c.queue.clone(),
            By::Agent => c.agent.clone(),
            By::Dialled => Some(c.dialled.clone().unwrap_or_else(|| "-".into())),
            By::Outcome => Some(c.outcome.clone().unwrap_or_else(|| c.disposition.clone())),
        };
        let Some(key) = key else { continue };
        let Ok(ts) = jiff::Timestamp::from_millisecond(c.started_ms) else {
            continue;
        };
        let period = period_start(ts.to_zoned(tz.clone()).date(), p).to_string();
        let r = rows
            .entry((period.clone(), key.clone()))
            .or_insert_with(|| Row {
                period,
                key,
                ..Row::default()
            });
        r.offered += 1;
        // A queue call is answered when an agent took it; any other when
        // the box or a line answered it.
        let (answered, abandoned) = match &c.queue {
            Some(_) => (
                c.queue_exit.as_deref() == Some("connected"),
                c.queue_exit.as_deref() == Some("abandoned"),
            ),
            None => (c.disposition == "answered", c.disposition == "abandoned"),
        };
        if answered {
            r.answered += 1;
            let wait = c.queue_wait_ms.unwrap_or(0);
            r.wait_sum += wait.max(0) as u64;
            if wait <= sl_ms {
                r.in_sl += 1;
            }
            if let Some(t) = c.talk_ms {
                r.talk_sum += t.max(0) as u64;
                r.talk_n += 1;
            }
        }
        if abandoned {
            r.abandoned += 1;
        }
        if let Some(s) = c.survey_score {
            r.surveys += 1;
            r.score_sum += u64::from(s);
        }
    }
    rows.into_values()
        .map(|mut r| {
            if r.answered > 0 {
                r.service_level = r.in_sl as f64 / r.answered as f64;
            }
            r.asa_ms = r.wait_sum.checked_div(r.answered).unwrap_or(0);
            r.handle_ms = r.talk_sum.checked_div(r.talk_n).unwrap_or(0);
            if r.surveys > 0 {
                r.survey_avg = r.score_sum as f64 / r.surveys as f64;
            }
            r
        })
        .collect()
}

async fn report(c: &Console, a: &Authed, q: &Ask) -> Result<(Vec<Row>, String, String), ApiError> {
    a.need(Role::Supervisor)?;
    let period = match q.period.as_deref().unwrap_or("day") {
        "day" => Period::Day,
        "week" => Period::Week,
        "month" => Period::Month,
        other => {
            return Err(ApiError::bad(format!(
                "period `{}` is not day, week or month",
                other.chars().take(20).collect::<String>()
            )));
        }
    };
    let by = match q.by.as_deref().unwrap_or("queue") {
        "queue" => By::Queue,
        "agent" => By::Agent,
        "dialled" => By::Dialled,
        "outcome" => By::Outcome,
        other => {
            return Err(ApiError::bad(format!(
                "`{}` is not queue, agent, dialled or outcome",
                other.chars().take(20).collect::<String>()
            )));
        }
    };
    let tz = jiff::tz::TimeZone::system();
    let today = jiff::Timestamp::from_millisecond(c.deps.clock.now().wall_ms)
        .map_err(ApiError::internal)?
        .to_zoned(tz.clone())
        .date();
    let to = match q.to.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => day(s)?,
        None => today,
    };
    let from = match q.from.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => day(s)?,
        None => to
            .checked_sub(jiff::Span::new().days(29))
            .map_err(ApiError::internal)?,
    };
    if from > to {
        return Err(ApiError::bad("`from` is after `to`"));
    }
    if (to - from).get_days() > MAX_DAYS {
        return Err(ApiError::bad(format!(
            "a report covers at most {MAX_DAYS} days"
        )));
    }
    let ms = |d: jiff::civil::Date| -> Result<i64, ApiError> {
        d.to_zoned(tz.clone())
            .map(|z| z.timestamp().as_millisecond())
            .map_err(ApiError::internal)
    };
    let (since, until) = (ms(from)?, ms(to.tomorrow().map_err(ApiError::internal)?)?);
    let calls = c
        .read(move |d| ReadOnly::open(d)?.report_calls(since, until))
        .await?;
    let sl_ms = (q.sl.unwrap_or(SL_DEFAULT_S).min(3600) * 1000) as i64;
    Ok((
        count(&calls, period, by, sl_ms, &tz),
        from.to_string(),
        to.to_string(),
    ))
}

/// `GET /api/reports?period=&by=&from=&to=&sl=` (supervisor).
pub(super) async fn get(State(c): St, a: Authed, Query(q): Query<Ask>) -> ApiResult {
    let (rows, from, to) = report(&c, &a, &q).await?;
    Ok(Json(json!({
        "from": from, "to": to,
        "period": q.period.as_deref().unwrap_or("day"),
        "by": q.by.as_deref().unwrap_or("queue"),
        "sl_s": q.sl.unwrap_or(SL_DEFAULT_S),
        "rows": rows,
    })))
}

/// `GET /api/reports.csv?…`: the same rows as CSV.
pub(super) async fn csv(
    State(c): St,
    a: Authed,
    Query(q): Query<Ask>,
) -> Result<Response, ApiError> {
    let (rows, _, _) = report(&c, &a, &q).await?;
    let mut out = String::from(
        "\u{feff}period,key,offered,answered,abandoned,service_level,asa_ms,handle_ms,surveys,survey_avg\r\n",
    );
    for r in rows {
        out += &format!(
            "{},{},{},{},{},{:.4},{},{},{},{:.2}\r\n",
            r.period,
            super::records::csv_field(&r.key),
            r.offered,
            r.answered,
            r.abandoned,
            r.service_level,
            r.asa_ms,
            r.handle_ms,
            r.surveys,
            r.survey_avg
        );
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"report.csv\""),
            ),
        ],
        out,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(
        ms: i64,
        queue: Option<&str>,
        exit: Option<&str>,
        wait: i64,
        talk: Option<i64>,
        score: Option<u8>,
    ) -> ReportCall {
        ReportCall {
            started_ms: ms,
            dialled: Some("4001".into()),
            queue: queue.map(Into::into),
            queue_exit: exit.map(Into::into),
            agent: exit.filter(|e| *e == "connected").map(|_| "a".into()),
            disposition: if exit == Some("connected") {
                "answered"
            } else {
                "abandoned"
            }
            .into(),
            outcome: None,
            queue_wait_ms: Some(wait),
            talk_ms: talk,
            survey_score: score,
        }
    }

    #[test]
    fn figures_per_day_and_week() {
        let utc = jiff::tz::TimeZone::UTC;
        // 2026-12-07 is a Monday.
        let mon = 1_796_601_600_000;
        let calls = [
            call(
                mon + 1000,
                Some("sales"),
                Some("connected"),
                5_000,
                Some(60_000),
                Some(5),
            ),
            call(
                mon + 2000,
                Some("sales"),
                Some("connected"),
                30_000,
                Some(120_000),
                Some(3),
            ),
            call(
                mon + 3000,
                Some("sales"),
                Some("abandoned"),
                40_000,
                None,
                None,
            ),
            call(
                mon + 86_400_000,
                Some("sales"),
                Some("connected"),
                1_000,
                Some(30_000),
                None,
            ),
            call(mon + 4000, None, None, 0, None, None),
        ];
        let rows = count(&calls, Period::Day, By::Queue, 20_000, &utc);
        assert_eq!(rows.len(), 2);
        let r = &rows[0];
        assert_eq!((r.period.as_str(), r.key.as_str()), ("2026-12-07", "sales"));
        assert_eq!((r.offered, r.answered, r.abandoned), (3, 2, 1));
        assert_eq!(r.service_level, 0.5);
        assert_eq!(r.asa_ms, 17_500);
        assert_eq!(r.handle_ms, 90_000);
        assert_eq!((r.surveys, r.survey_avg), (2, 4.0));
        let week = count(&calls, Period::Week, By::Queue, 20_000, &utc);
        assert_eq!(week.len(), 1);
        assert_eq!(
            (week[0].period.as_str(), week[0].offered),
            ("2026-12-07", 4)
        );
        let month = count(&calls, Period::Month, By::Dialled, 20_000, &utc);
        assert_eq!(
            (month[0].period.as_str(), month[0].offered),
            ("2026-12-01", 5)
        );
    }
}
