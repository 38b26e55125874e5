//! Reports across the fleet: inbound calls per campaign (dialled) number
//! per day and site — calls, answered, abandoned, wrapped up, survey
//! answers — and per number over the period its conversions by wrap-up
//! code and its survey score distribution; the day rows also as CSV.
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
}

const DAY_MS: i64 = 86_400_000;

/// The report's figures.
async fn report(d: &Dash, q: ReportQuery) -> Result<Value, ApiError> {
    let (from, to, since, until) = range(&d.deps.tz, q.from.as_deref(), q.to.as_deref())?;
    let offset = from
        .to_zoned(d.deps.tz.clone())
        .map_err(ApiError::internal)?
        .offset()
        .seconds() as i64
        * 1000;
    let (site, dialled) = (q.site, q.dialled);
    let got = d
        .db(move |db| {
            let filter = "started_ms >= $1 AND started_ms < $2 AND direction = 'inbound'
                 AND ($3 = '' OR site = $3) AND ($4 = '' OR dialled = $4)";
            let days = db.query(
                &format!(
                    "SELECT (started_ms + $5) / {DAY_MS}, site, COALESCE(dialled, ''), COUNT(*),
                        CAST(SUM(CASE WHEN disposition = 'answered' THEN 1 ELSE 0 END) AS BIGINT),
                        CAST(SUM(CASE WHEN disposition = 'abandoned' THEN 1 ELSE 0 END) AS BIGINT),
                        CAST(SUM(CASE WHEN wrap_code IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT),
                        CAST(SUM(CASE WHEN survey_score IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT),
                        CAST(SUM(COALESCE(survey_score, 0)) AS BIGINT)
                     FROM calls WHERE {filter}
                     GROUP BY (started_ms + $5) / {DAY_MS}, site, COALESCE(dialled, '')
                     ORDER BY 1, 2, 3"
                ),
                &params![since, until, site.as_str(), dialled.as_str(), offset],
            )?;
            let codes = db.query(
                &format!(
                    "SELECT COALESCE(dialled, ''), wrap_code, COUNT(*) FROM calls
                     WHERE {filter} AND wrap_code IS NOT NULL
                     GROUP BY COALESCE(dialled, ''), wrap_code ORDER BY 1, 2"
                ),
                &params![since, until, site.as_str(), dialled.as_str()],
            )?;
            let scores = db.query(
                &format!(
                    "SELECT COALESCE(dialled, ''), survey_score, COUNT(*) FROM calls
                     WHERE {filter} AND survey_score IS NOT NULL
                     GROUP BY COALESCE(dialled, ''), survey_score ORDER BY 1, 2"
                ),
                &params![since, until, site.as_str(), dialled.as_str()],
            )?;
            Ok((days, codes, scores))
        })
        .await?;
    let (days, codes, scores) = got;
    let mut numbers: std::collections::BTreeMap<String, Value> = Default::default();
    let rows: Vec<Value> = days
        .iter()
        .map(|r| {
            let day = jiff::Timestamp::from_millisecond(r[0].int().unwrap_or(0) * DAY_MS)
                .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string())
                .unwrap_or_default();
            let number = r[2].text().unwrap_or("").to_string();
            let n = numbers.entry(number.clone()).or_insert_with(|| {
                json!({"dialled": number, "calls": 0, "answered": 0, "abandoned": 0,
                       "wrapped": 0, "surveyed": 0, "survey_sum": 0, "codes": {}, "survey": {}})
            });
            for (k, i) in [
                ("calls", 3),
                ("answered", 4),
                ("abandoned", 5),
                ("wrapped", 6),
                ("surveyed", 7),
                ("survey_sum", 8),
            ] {
                n[k] = json!(n[k].as_i64().unwrap_or(0) + r[i].int().unwrap_or(0));
            }
            json!({"day": day, "site": r[1].json(), "dialled": number, "calls": r[3].json(),
                   "answered": r[4].json(), "abandoned": r[5].json(), "wrapped": r[6].json(),
                   "surveyed": r[7].json(), "survey_sum": r[8].json()})
        })
        .collect();
    for (rows, key) in [(&codes, "codes"), (&scores, "survey")] {
        for r in rows {
            let number = r[0].text().unwrap_or("");
            let k = match &r[1] {
                crate::sql::Cell::Int(v) => v.to_string(),
                c => c.text().unwrap_or("").to_string(),
            };
            if let Some(n) = numbers.get_mut(number) {
                n[key][k] = r[2].json();
            }
        }
    }
    Ok(json!({
        "from": from.to_string(), "to": to.to_string(),
        "rows": rows,
        "numbers": numbers.into_values().collect::<Vec<_>>(),
    }))
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
    let mut out =
        String::from("day,site,dialled,calls,answered,abandoned,wrapped,surveyed,survey_sum\n");
    for row in r["rows"].as_array().into_iter().flatten() {
        let cells: Vec<String> = [
            "day",
            "site",
            "dialled",
            "calls",
            "answered",
            "abandoned",
            "wrapped",
            "surveyed",
            "survey_sum",
        ]
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
