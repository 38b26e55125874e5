//! Reports across the fleet: inbound calls per campaign (dialled) number
//! per day, or per site — calls, answered, abandoned, wrapped up, survey
//! answers — and per number over the period its conversions by wrap-up
//! code and its survey score distribution; the rows also as CSV.
//!
//! Also the anti-counterfeit product checks per day and site, and the
//! possible diversions by product and caller region.
//!
//! Days are counted in the dashboard's time zone (`--tz`), at its offset
//! on the period's first day.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use callbox_web::http::{ApiError, ApiResult};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use super::api::{Authed, Dash, St, range};
use crate::params;

#[derive(Deserialize, Default)]
pub struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
    #[serde(default)]
    site: String,
    #[serde(default)]
    dialled: String,
    /// `day` (rows per day and number, the default) or `site` (rows per
    /// site and number over the period, busiest first).
    #[serde(default)]
    by: String,
}

const DAY_MS: i64 = 86_400_000;
/// Most rows per site.
const SITE_ROWS: i64 = 1000;

/// The zone's offset from UTC on `from`, in ms: reports count days as
/// `(ms + offset) / DAY_MS`.
fn offset_ms(tz: &jiff::tz::TimeZone, from: jiff::civil::Date) -> Result<i64, ApiError> {
    let zoned = from.to_zoned(tz.clone()).map_err(ApiError::internal)?;
    Ok(i64::from(zoned.offset().seconds()) * 1000)
}

/// A day number (`(ms + offset) / DAY_MS`) as its date.
fn date(day: i64) -> String {
    jiff::Timestamp::from_millisecond(day * DAY_MS)
        .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string())
        .unwrap_or_default()
}

/// A row's figures.
#[derive(Debug, Default, Clone)]
struct Figures {
    calls: i64,
    answered: i64,
    abandoned: i64,
    wrapped: i64,
    surveyed: i64,
    survey_sum: i64,
    codes: BTreeMap<String, i64>,
    scores: BTreeMap<String, i64>,
}

impl Figures {
    /// Adds `n` calls of one kind.
    fn add(&mut self, disposition: Option<&str>, code: Option<&str>, score: Option<i64>, n: i64) {
        self.calls += n;
        match disposition {
            Some("answered") => self.answered += n,
            Some("abandoned") => self.abandoned += n,
            _ => {}
        }
        if let Some(c) = code {
            self.wrapped += n;
            *self.codes.entry(c.to_string()).or_default() += n;
        }
        if let Some(s) = score {
            self.surveyed += n;
            self.survey_sum += s * n;
            *self.scores.entry(s.to_string()).or_default() += n;
        }
    }

    fn json(&self, mut v: Value, breakdown: bool) -> Value {
        for (k, n) in [
            ("calls", self.calls),
            ("answered", self.answered),
            ("abandoned", self.abandoned),
            ("wrapped", self.wrapped),
            ("surveyed", self.surveyed),
            ("survey_sum", self.survey_sum),
        ] {
            v[k] = n.into();
        }
        if breakdown {
            v["codes"] = json!(self.codes);
            v["survey"] = json!(self.scores);
        }
        v
    }
}

/// The report's figures: one grouped scan of the period's calls (by day,
/// number, outcome, wrap-up code and score), folded here into the day
/// rows and each number's totals; per site, a second grouped scan.
async fn report(d: &Dash, q: ReportQuery) -> Result<Value, ApiError> {
    let (from, to, since, until) = range(&d.deps.tz, q.from.as_deref(), q.to.as_deref())?;
    let offset = offset_ms(&d.deps.tz, from)?;
    let by_site = match q.by.as_str() {
        "" | "day" => false,
        "site" => true,
        other => return Err(ApiError::bad(format!("by: `{other}` is not day or site"))),
    };
    let (site, dialled) = (q.site, q.dialled);
    let got = d
        .db(move |db| {
            let filter = "started_ms >= $1 AND started_ms < $2 AND direction = 'inbound'
                 AND ($3 = '' OR site = $3) AND ($4 = '' OR dialled = $4)";
            let groups = db.query(
                &format!(
                    "SELECT (started_ms + $5) / {DAY_MS}, COALESCE(dialled, ''), disposition,
                            wrap_code, survey_score, COUNT(*)
                     FROM calls WHERE {filter}
                     GROUP BY (started_ms + $5) / {DAY_MS}, COALESCE(dialled, ''), disposition,
                              wrap_code, survey_score"
                ),
                &params![since, until, site.as_str(), dialled.as_str(), offset],
            )?;
            let sites = if by_site {
                db.query(
                    &format!(
                        "SELECT site, COALESCE(dialled, ''), COUNT(*),
                            CAST(SUM(CASE WHEN disposition = 'answered' THEN 1 ELSE 0 END) AS BIGINT),
                            CAST(SUM(CASE WHEN disposition = 'abandoned' THEN 1 ELSE 0 END) AS BIGINT),
                            CAST(SUM(CASE WHEN wrap_code IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT),
                            CAST(SUM(CASE WHEN survey_score IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT),
                            CAST(SUM(COALESCE(survey_score, 0)) AS BIGINT)
                         FROM calls WHERE {filter}
                         GROUP BY site, COALESCE(dialled, '')
                         ORDER BY 3 DESC, 1, 2 LIMIT $5"
                    ),
                    &params![since, until, site.as_str(), dialled.as_str(), SITE_ROWS],
                )?
            } else {
                Vec::new()
            };
            Ok((groups, sites))
        })
        .await?;
    let (groups, sites) = got;
    let mut days: BTreeMap<(i64, String), Figures> = BTreeMap::new();
    let mut numbers: BTreeMap<String, Figures> = BTreeMap::new();
    for r in &groups {
        let (day, number) = (
            r[0].int().unwrap_or(0),
            r[1].text().unwrap_or("").to_string(),
        );
        let (disp, code, score, n) = (
            r[2].text(),
            r[3].text(),
            r[4].int(),
            r[5].int().unwrap_or(0),
        );
        days.entry((day, number.clone()))
            .or_default()
            .add(disp, code, score, n);
        numbers.entry(number).or_default().add(disp, code, score, n);
    }
    let rows: Vec<Value> = if by_site {
        sites
            .iter()
            .map(|r| {
                let f = Figures {
                    calls: r[2].int().unwrap_or(0),
                    answered: r[3].int().unwrap_or(0),
                    abandoned: r[4].int().unwrap_or(0),
                    wrapped: r[5].int().unwrap_or(0),
                    surveyed: r[6].int().unwrap_or(0),
                    survey_sum: r[7].int().unwrap_or(0),
                    ..Figures::default()
                };
                f.json(json!({"site": r[0].json(), "dialled": r[1].json()}), false)
            })
            .collect()
    } else {
        days.iter()
            .map(|((day, number), f)| f.json(json!({"day": date(*day), "dialled": number}), false))
            .collect()
    };
    Ok(json!({
        "from": from.to_string(), "to": to.to_string(),
        "by": if by_site { "site" } else { "day" },
        "rows": rows,
        "numbers": numbers.iter().map(|(n, f)| f.json(json!({"dialled": n}), true)).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize, Default)]
pub struct ChecksQuery {
    from: Option<String>,
    to: Option<String>,
    #[serde(default)]
    site: String,
}

/// `GET /api/reports/checks`: anti-counterfeit product checks per day
/// (genuine, not found) and per site, and the possible diversions the
/// IVR flagged by product region and caller region.
pub async fn checks(State(d): St, _a: Authed, Query(q): Query<ChecksQuery>) -> ApiResult {
    let (from, to, since, until) = range(&d.deps.tz, q.from.as_deref(), q.to.as_deref())?;
    let offset = offset_ms(&d.deps.tz, from)?;
    let site = q.site;
    let got = d
        .db(move |db| {
            let filter = "at_ms >= $1 AND at_ms < $2 AND ($3 = '' OR site = $3)";
            let counts = "COUNT(*) - CAST(SUM(diverted) AS BIGINT),
                 CAST(SUM(CASE WHEN diverted = 0 AND found = 1 THEN 1 ELSE 0 END) AS BIGINT),
                 CAST(SUM(CASE WHEN diverted = 0 AND found = 0 THEN 1 ELSE 0 END) AS BIGINT),
                 CAST(SUM(diverted) AS BIGINT)";
            let days = db.query(
                &format!(
                    "SELECT (at_ms + $4) / {DAY_MS}, {counts} FROM checks WHERE {filter}
                     GROUP BY (at_ms + $4) / {DAY_MS} ORDER BY 1"
                ),
                &params![since, until, site.as_str(), offset],
            )?;
            let sites = db.query(
                &format!(
                    "SELECT site, {counts} FROM checks WHERE {filter}
                     GROUP BY site ORDER BY 2 DESC, 1 LIMIT $4"
                ),
                &params![since, until, site.as_str(), SITE_ROWS],
            )?;
            let regions = db.query(
                &format!(
                    "SELECT COALESCE(product_region, ''), COALESCE(caller_region, ''), COUNT(*)
                     FROM checks WHERE {filter} AND diverted = 1
                     GROUP BY COALESCE(product_region, ''), COALESCE(caller_region, '')
                     ORDER BY 3 DESC, 1, 2"
                ),
                &params![since, until, site.as_str()],
            )?;
            Ok((days, sites, regions))
        })
        .await?;
    let (days, sites, regions) = got;
    let figures = |first: (&str, Value), r: &[crate::sql::Cell]| {
        json!({first.0: first.1, "checks": r[1].json(), "genuine": r[2].json(),
               "not_found": r[3].json(), "diversions": r[4].json()})
    };
    Ok(Json(json!({
        "from": from.to_string(), "to": to.to_string(),
        "days": days.iter().map(|r| figures(("day", date(r[0].int().unwrap_or(0)).into()), r)).collect::<Vec<_>>(),
        "sites": sites.iter().map(|r| figures(("site", r[0].json()), r)).collect::<Vec<_>>(),
        "diversions": regions.iter().map(|r| json!({"product_region": r[0].json(), "caller_region": r[1].json(), "flags": r[2].json()})).collect::<Vec<_>>(),
    })))
}

/// `GET /api/reports`.
pub async fn get(State(d): St, _a: Authed, Query(q): Query<ReportQuery>) -> ApiResult {
    Ok(Json(report(&d, q).await?))
}

/// `GET /api/reports.csv`: the day rows.
pub async fn csv(
    State(d): St,
    _a: Authed,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let r = report(&d, q).await?;
    let first = if r["by"] == "site" { "site" } else { "day" };
    let cols = [
        first,
        "dialled",
        "calls",
        "answered",
        "abandoned",
        "wrapped",
        "surveyed",
        "survey_sum",
    ];
    let mut out = cols.join(",") + "\n";
    for row in r["rows"].as_array().into_iter().flatten() {
        let cells: Vec<String> = cols
            .iter()
            .map(|k| match &row[*k] {
                Value::String(s) => csv_cell(s),
                v => v.to_string(),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"report-{}-{}.csv\"",
                    r["from"].as_str().unwrap_or(""),
                    r["to"].as_str().unwrap_or("")
                ),
            ),
        ],
        out,
    )
        .into_response())
}

/// A CSV cell, quoted when needed; a leading `=`, `+`, `-` or `@` is
/// defused so a spreadsheet does not take it for a formula.
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(super::csv_cell("a,b"), "\"a,b\"");
        assert_eq!(super::csv_cell("=1+1"), "'=1+1");
        assert_eq!(super::csv_cell("4008001234"), "4008001234");
    }
}
