//! `GET /metrics`: fleet gauges in Prometheus' text format, for the
//! operators' monitoring. Asked with the bearer token of
//! `--metrics-token`; without that option the path does not exist.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use callbox_web::http::ApiError;
use callbox_web::session::same;

use super::api::St;

/// `GET /metrics`.
pub async fn get(State(d): St, headers: HeaderMap) -> Result<Response, ApiError> {
    let Some(want) = &d.deps.metrics_token else {
        return Err(ApiError::not_found("no such page"));
    };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !sent.is_some_and(|t| same(t.trim(), want)) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "send the --metrics-token as `Authorization: Bearer …`",
        ));
    }
    let since = crate::mqtt::now_ms() - 60_000;
    let rows = d
        .db(move |db| {
            let boxes = db.query(
                "SELECT COALESCE(state, 'unknown'), COUNT(*),
                        CAST(SUM(COALESCE(calls, 0)) AS BIGINT),
                        CAST(SUM(COALESCE(backlog, 0)) AS BIGINT),
                        CAST(SUM(COALESCE(lines_total, 0) - COALESCE(lines_up, 0)) AS BIGINT)
                 FROM boxes GROUP BY COALESCE(state, 'unknown') ORDER BY 1",
                &[],
            )?;
            let alarms = db.query(
                "SELECT COUNT(*), CAST(SUM(CASE WHEN acked_by IS NULL THEN 1 ELSE 0 END) AS BIGINT)
                 FROM alarms WHERE cleared_ms IS NULL",
                &[],
            )?;
            let held = db.query("SELECT COUNT(*) FROM held", &[])?;
            let queue = db.query(
                "SELECT state, COUNT(*) FROM notifications GROUP BY state ORDER BY 1",
                &[],
            )?;
            let recent = db.query(
                "SELECT COUNT(*) FROM telemetry WHERE at_ms >= $1",
                &crate::params![since],
            )?;
            Ok((boxes, alarms, held, recent, queue))
        })
        .await?;
    let (boxes, alarms, held, recent, queue) = rows;
    let int = |c: &crate::sql::Cell| c.int().unwrap_or(0);
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, values: Vec<(String, i64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (labels, v) in values {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    gauge(
        "callbox_boxes",
        "Boxes by presence.",
        boxes
            .iter()
            .map(|r| {
                (
                    format!("{{state=\"{}\"}}", r[0].text().unwrap_or("unknown")),
                    int(&r[1]),
                )
            })
            .collect(),
    );
    let sum = |i: usize| boxes.iter().map(|r| int(&r[i])).sum::<i64>();
    gauge(
        "callbox_calls_in_progress",
        "Calls in progress across the fleet, from the latest telemetry.",
        vec![(String::new(), sum(2))],
    );
    gauge(
        "callbox_backlog_records",
        "Records waiting on the boxes to be delivered.",
        vec![(String::new(), sum(3))],
    );
    gauge(
        "callbox_lines_not_up",
        "Lines down or unknown across the fleet.",
        vec![(String::new(), sum(4))],
    );
    gauge(
        "callbox_alarms_open",
        "Alarms raised and not cleared.",
        vec![(String::new(), int(&alarms[0][0]))],
    );
    gauge(
        "callbox_alarms_unacknowledged",
        "Open alarms nobody has acknowledged.",
        vec![(String::new(), int(&alarms[0][1]))],
    );
    gauge(
        "callbox_held_messages",
        "Messages kept aside instead of stored (table held).",
        vec![(String::new(), int(&held[0][0]))],
    );
    gauge(
        "callbox_telemetry_last_minute",
        "Telemetry messages stored in the last minute (ingest).",
        vec![(String::new(), int(&recent[0][0]))],
    );
    gauge(
        "callbox_notifications",
        "The notifier's messages by state (pending and sending are its queue).",
        queue
            .iter()
            .map(|r| {
                (
                    format!("{{state=\"{}\"}}", r[0].text().unwrap_or("")),
                    int(&r[1]),
                )
            })
            .collect(),
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
