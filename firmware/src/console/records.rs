//! Call records and recordings in the console: search (number, dates,
//! queue, agent, outcome, dialled number), the same as CSV, and a call's
//! recordings played in the browser (HTTP ranges, so the player seeks) or
//! downloaded. An encrypted recording is only for headquarters: the box
//! holds no key to open it. An agent sees only their own calls.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::api::{ApiError, ApiResult, Authed, Console, St};
use super::auth::Role;
use crate::store::{CallRecord, RecordQuery};

/// Most records one search answers.
const MAX_ROWS: u32 = 5000;
/// Bytes read from a recording at a time.
const CHUNK: usize = 64 * 1024;

#[derive(Debug, Default, Deserialize)]
pub(super) struct Search {
    #[serde(default)]
    number: Option<String>,
    /// A day (`2026-12-07`, box-local days are UTC here) or RFC 3339.
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    dialled: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

/// Milliseconds since the epoch of `s`: RFC 3339, or a date (its start,
/// or with `end` the start of the next day).
fn time_ms(s: &str, end: bool) -> Result<i64, ApiError> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    let d = jiff::civil::Date::strptime("%Y-%m-%d", s).map_err(|_| {
        ApiError::bad(format!(
            "`{}` is not a date (2026-12-07) or an RFC 3339 time",
            s.chars().take(40).collect::<String>()
        ))
    })?;
    let d = if end {
        d.tomorrow().map_err(ApiError::internal)?
    } else {
        d
    };
    d.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp().as_millisecond())
        .map_err(ApiError::internal)
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

async fn search(c: &Console, a: &Authed, q: &Search) -> Result<Vec<CallRecord>, ApiError> {
    let mut query = RecordQuery {
        number: nonempty(&q.number),
        dialled: nonempty(&q.dialled),
        queue: nonempty(&q.queue),
        agent: nonempty(&q.agent),
        outcome: nonempty(&q.outcome),
        newest: Some(q.limit.unwrap_or(500).clamp(1, MAX_ROWS)),
        ..Default::default()
    };
    if let Some(f) = nonempty(&q.from) {
        query.since_ms = Some(time_ms(&f, false)?);
    }
    if let Some(t) = nonempty(&q.to) {
        query.until_ms = Some(time_ms(&t, true)?);
    }
    if a.session.role == Role::Agent {
        query.agent = Some(a.session.user.clone());
    }
    c.read(move |d| crate::store::read_records(d, &query)).await
}

/// `GET /api/records?number=&from=&to=&queue=&agent=&outcome=&dialled=&limit=`,
/// the newest first.
pub(super) async fn list(State(c): St, a: Authed, Query(q): Query<Search>) -> ApiResult {
    let recs = search(&c, &a, &q).await?;
    Ok(Json(json!({"records": recs})))
}

const COLUMNS: [&str; 17] = [
    "id",
    "start",
    "direction",
    "caller",
    "caller_name",
    "dialled",
    "disposition",
    "outcome",
    "queue",
    "queue_wait_ms",
    "agent",
    "talk_ms",
    "duration_ms",
    "wrap_code",
    "notes",
    "ivr_path",
    "recordings",
];

/// One CSV field: quoted when it holds a comma, a quote or a line break;
/// a leading `=`, `+`, `-` or `@` is prefixed with `'` so a spreadsheet
/// does not run it as a formula.
pub(super) fn csv_field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@']) && !v[1..].chars().all(|c| c.is_ascii_digit()) {
        format!("'{v}")
    } else {
        v.to_string()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

fn csv_row(r: &CallRecord) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let num = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    let fields = [
        r.id.clone(),
        r.start.clone(),
        r.direction.clone(),
        opt(&r.caller),
        opt(&r.caller_name),
        opt(&r.dialled),
        r.disposition.clone(),
        opt(&r.outcome),
        opt(&r.queue),
        num(r.queue_wait_ms),
        opt(&r.agent),
        num(r.talk_ms),
        num(r.duration_ms),
        opt(&r.wrap_code),
        opt(&r.notes),
        r.ivr_path.join(" "),
        r.recordings.join(" "),
    ];
    fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",")
        + "\r\n"
}

/// `GET /api/records.csv?…`: the same search as a CSV file (UTF-8 with a
/// byte-order mark, so spreadsheet programs read Chinese names right).
pub(super) async fn csv(
    State(c): St,
    a: Authed,
    Query(q): Query<Search>,
) -> Result<Response, ApiError> {
    let recs = search(&c, &a, &q).await?;
    let mut out = String::from("\u{feff}");
    out += &COLUMNS.join(",");
    out += "\r\n";
    for r in &recs {
        out += &csv_row(r);
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"calls.csv\""),
            ),
        ],
        out,
    )
        .into_response())
}

/// `bytes=A-B` / `bytes=A-` / `bytes=-N` within `len`: `(start, end
/// inclusive)`; `Err` for a range outside the file.
fn range(h: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = h.strip_prefix("bytes=")?;
    // One range only; several are answered with the whole file.
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let r = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            if n == 0 || len == 0 {
                return Some(Err(()));
            }
            (len.saturating_sub(n), len - 1)
        }
        (a, "") => (a.parse().ok()?, len.saturating_sub(1)),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(len.saturating_sub(1)),
        ),
    };
    if r.0 > r.1 || r.0 >= len {
        return Some(Err(()));
    }
    Some(Ok(r))
}

/// A part of a file as a body, read off the runtime a chunk at a time.
fn file_body(path: std::path::PathBuf, start: u64, len: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek, SeekFrom};
        let mut left = len;
        let mut f = match std::fs::File::open(&path)
            .and_then(|mut f| f.seek(SeekFrom::Start(start)).map(|_| f))
        {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        while left > 0 {
            let mut buf = vec![0u8; CHUNK.min(left as usize)];
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    if tx.blocking_send(Ok(buf)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }))
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Fetch {
    #[serde(default)]
    download: Option<u8>,
}

/// `GET /api/recordings/{id}[?download=1]`: the WAV, with ranges.
pub(super) async fn recording(
    State(c): St,
    a: Authed,
    Path(id): Path<String>,
    Query(f): Query<Fetch>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Ids are UUIDs: anything else (`../`, a path) names nothing.
    if id.is_empty()
        || id.len() > 64
        || !id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
    {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such recording"));
    }
    let (row, rec) = {
        let id = id.clone();
        c.read(move |d| {
            let Some(row) = crate::store::read_recording(d, &id)? else {
                return Ok(None);
            };
            let q = RecordQuery {
                call: Some(row.call_id.clone()),
                ..Default::default()
            };
            let rec = crate::store::read_records(d, &q)?.pop();
            Ok(Some((row, rec)))
        })
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such recording"))?
    };
    if a.session.role == Role::Agent
        && rec.as_ref().and_then(|r| r.agent.as_deref()) != Some(a.session.user.as_str())
    {
        return Err(ApiError::forbidden());
    }
    if row.encrypted {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this recording is encrypted to headquarters' key: only headquarters can open it",
        ));
    }
    if !matches!(row.state.as_str(), "complete" | "interrupted" | "recording") {
        return Err(ApiError::new(
            StatusCode::GONE,
            format!("the recording is {}", row.state),
        ));
    }
    // The file named by the database, which must stay inside the data
    // directory.
    let path = c.deps.data_dir.join(&row.file);
    let inside = std::path::Path::new(&row.file)
        .components()
        .all(|p| matches!(p, std::path::Component::Normal(_)));
    let len = match std::fs::metadata(&path) {
        Ok(m) if inside => m.len(),
        _ => {
            return Err(ApiError::new(
                StatusCode::GONE,
                "the recording's file is missing",
            ));
        }
    };
    let mut res_headers = HeaderMap::new();
    res_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    res_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if f.download == Some(1)
        && let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{id}.wav\""))
    {
        res_headers.insert(header::CONTENT_DISPOSITION, v);
    }
    let asked = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| range(h, len));
    match asked {
        Some(Err(())) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                res_headers.insert(header::CONTENT_RANGE, v);
            }
            Ok((StatusCode::RANGE_NOT_SATISFIABLE, res_headers).into_response())
        }
        Some(Ok((start, end))) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                res_headers.insert(header::CONTENT_RANGE, v);
            }
            res_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
            Ok((
                StatusCode::PARTIAL_CONTENT,
                res_headers,
                file_body(path, start, end - start + 1),
            )
                .into_response())
        }
        None => {
            res_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            Ok((StatusCode::OK, res_headers, file_body(path, 0, len)).into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_within_the_file() {
        assert_eq!(range("bytes=0-99", 1000), Some(Ok((0, 99))));
        assert_eq!(range("bytes=900-", 1000), Some(Ok((900, 999))));
        assert_eq!(range("bytes=-100", 1000), Some(Ok((900, 999))));
        assert_eq!(range("bytes=990-2000", 1000), Some(Ok((990, 999))));
        assert_eq!(range("bytes=1000-", 1000), Some(Err(())));
        assert_eq!(range("bytes=5-1", 1000), Some(Err(())));
        assert_eq!(range("bytes=0-1,5-6", 1000), None);
        assert_eq!(range("items=0-1", 1000), None);
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("+8613800138000"), "+8613800138000");
        assert_eq!(csv_field("王经理"), "王经理");
    }

    #[test]
    fn dates_cover_whole_days() {
        let from = time_ms("2026-12-07", false).unwrap();
        let to = time_ms("2026-12-07", true).unwrap();
        assert_eq!(to - from, 86_400_000);
        assert!(time_ms("yesterday", false).is_err());
    }
}
