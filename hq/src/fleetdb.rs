//! Headquarters' typed tables, kept by the collectors for the dashboard
//! (`callbox-hq serve`) and written once for SQLite and PostgreSQL
//! ([`crate::sql`]):
//!
//! - `boxes`: each box's latest presence (`{b}/status`, with the
//!   contract's rule against late wills) and telemetry, in columns the
//!   fleet list filters and sorts by;
//! - `telemetry`: a sample per telemetry message (the box page's charts);
//! - `calls`: each call's latest `cdr` record in columns (a re-sent record,
//!   a later seq, replaces the earlier one) for searches and reports;
//! - `checks`: each anti-counterfeit product check and each possible
//!   diversion the IVR flagged (`lookup` records), with the regions;
//! - `alarms`: each alarm raised, when it cleared and who acknowledged it;
//! - `notifications`: each `notify` and `voicemail` record once, as a
//!   message for the notifier ([`crate::notify`]) to deliver, with its
//!   delivery state;
//! - `held`: messages kept aside instead of stored, with the reason (an
//!   unknown schema version, a malformed payload), for an operator;
//! - `hq_users`, `hq_audit`: the dashboard's users and what they did.

use anyhow::Result;
use serde_json::Value;

use crate::db::Tx;
use crate::params;
use crate::wire::Records;

/// The tables (both databases; `IF NOT EXISTS`, so also a migration).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS boxes (
    site TEXT NOT NULL,
    box TEXT NOT NULL,
    state TEXT,
    reason TEXT,
    session BIGINT,
    firmware TEXT,
    status_ms BIGINT,
    telemetry TEXT,
    telemetry_ms BIGINT,
    calls BIGINT,
    waiting BIGINT,
    backlog BIGINT,
    lines_up BIGINT,
    lines_total BIGINT,
    lines_down TEXT,
    alarms BIGINT,
    seen_ms BIGINT NOT NULL,
    PRIMARY KEY (site, box)
);
CREATE TABLE IF NOT EXISTS telemetry (
    site TEXT NOT NULL,
    box TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    calls BIGINT,
    waiting BIGINT,
    cpu DOUBLE PRECISION,
    disk_free DOUBLE PRECISION,
    backlog BIGINT,
    lines_up BIGINT,
    lines_total BIGINT,
    PRIMARY KEY (site, box, at_ms)
);
CREATE TABLE IF NOT EXISTS calls (
    site TEXT NOT NULL,
    box TEXT NOT NULL,
    id TEXT NOT NULL,
    epoch TEXT NOT NULL,
    seq BIGINT NOT NULL,
    started_ms BIGINT NOT NULL,
    direction TEXT,
    caller TEXT,
    dialled TEXT,
    queue TEXT,
    agent TEXT,
    disposition TEXT,
    outcome TEXT,
    duration_ms BIGINT,
    talk_ms BIGINT,
    wrap_code TEXT,
    survey_score BIGINT,
    recordings TEXT,
    PRIMARY KEY (site, box, id)
);
CREATE INDEX IF NOT EXISTS calls_by_time ON calls (started_ms);
CREATE INDEX IF NOT EXISTS calls_by_dialled ON calls (dialled, started_ms);
CREATE TABLE IF NOT EXISTS checks (
    site TEXT NOT NULL,
    box TEXT NOT NULL,
    epoch TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    call_id TEXT,
    code TEXT,
    found BIGINT,
    diverted BIGINT NOT NULL,
    product_region TEXT,
    caller_region TEXT,
    PRIMARY KEY (site, box, epoch, seq)
);
CREATE INDEX IF NOT EXISTS checks_by_time ON checks (at_ms);
CREATE TABLE IF NOT EXISTS alarms (
    site TEXT NOT NULL,
    box TEXT NOT NULL,
    code TEXT NOT NULL,
    raised_ms BIGINT NOT NULL,
    severity TEXT,
    message TEXT,
    cleared_ms BIGINT,
    acked_by TEXT,
    acked_ms BIGINT,
    PRIMARY KEY (site, box, code, raised_ms)
);
CREATE INDEX IF NOT EXISTS alarms_by_time ON alarms (raised_ms);
CREATE TABLE IF NOT EXISTS held (
    received_ms BIGINT NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    box TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_ms BIGINT NOT NULL,
    claimed_by TEXT,
    claimed_until BIGINT,
    channel TEXT,
    recipient TEXT,
    last_error TEXT,
    answer TEXT,
    sent_ms BIGINT
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (state, next_ms);
CREATE TABLE IF NOT EXISTS hq_users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    hash TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS hq_audit (
    at_ms BIGINT NOT NULL,
    who TEXT,
    ip TEXT,
    action TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS hq_audit_by_time ON hq_audit (at_ms);
";

/// A presence or telemetry message, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetMsg {
    /// `{b}/status`.
    Status {
        site: String,
        box_id: String,
        state: String,
        reason: Option<String>,
        session: Option<i64>,
        firmware: Option<String>,
        at_ms: i64,
    },
    /// `{b}/telemetry`.
    Telemetry {
        site: String,
        box_id: String,
        sample: Sample,
        /// The message, as the box sent it (the box page shows it).
        json: String,
    },
}

/// The figures of one telemetry message the dashboard charts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    pub at_ms: i64,
    pub session: Option<i64>,
    pub firmware: Option<String>,
    pub calls: Option<i64>,
    pub waiting: Option<i64>,
    pub cpu: Option<f64>,
    pub disk_free: Option<f64>,
    pub backlog: Option<i64>,
    pub lines_up: Option<i64>,
    pub lines_total: Option<i64>,
    pub lines_down: Vec<String>,
    pub alarms: Option<i64>,
}

/// An RFC 3339 time in ms since the epoch.
pub fn time_ms(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

fn version(v: &Value) -> Result<(), String> {
    match v.get("v").and_then(Value::as_u64) {
        Some(crate::wire::VERSION) => Ok(()),
        Some(other) => Err(format!(
            "unsupported schema version v={other} (this tool reads v={})",
            crate::wire::VERSION
        )),
        None => Err("missing field `v` (schema version)".into()),
    }
}

fn same_box(v: &Value, site: &str, box_id: &str) -> Result<(), String> {
    for (k, want) in [("site", site), ("box", box_id)] {
        if let Some(got) = v.get(k).and_then(Value::as_str)
            && got != want
        {
            return Err(format!("`{k}` is `{got}` but the topic says `{want}`"));
        }
    }
    Ok(())
}

fn str_of(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

/// Parses `{b}/status` or `{b}/telemetry` (`kind`).
pub fn parse(kind: &str, payload: &[u8], site: &str, box_id: &str) -> Result<FleetMsg, String> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    version(&v)?;
    same_box(&v, site, box_id)?;
    let at = str_of(&v, "at").ok_or("missing field `at`")?;
    let at_ms = time_ms(&at).ok_or_else(|| format!("`at`: not an RFC 3339 time: {at}"))?;
    let (site, box_id) = (site.to_string(), box_id.to_string());
    if kind == "status" {
        let state = str_of(&v, "state").ok_or("missing field `state`")?;
        if state != "online" && state != "offline" {
            return Err(format!("`state` is `{state}`, not online or offline"));
        }
        return Ok(FleetMsg::Status {
            site,
            box_id,
            state,
            reason: str_of(&v, "reason"),
            session: v.get("session").and_then(Value::as_i64),
            firmware: str_of(&v, "firmware"),
            at_ms,
        });
    }
    let int = |p: &str| v.pointer(p).and_then(Value::as_i64);
    let lines = v.get("lines").and_then(Value::as_array);
    let up = |l: &&Value| {
        l.get("state").and_then(Value::as_str) == Some("up")
            || (l.get("state").is_none() && l.get("up").and_then(Value::as_bool) == Some(true))
    };
    let disk_free = match (int("/disk/data_free_bytes"), int("/disk/data_total_bytes")) {
        (Some(f), Some(t)) if t > 0 => Some(f as f64 * 100.0 / t as f64),
        _ => None,
    };
    let sample = Sample {
        at_ms,
        session: int("/session"),
        firmware: str_of(&v, "firmware"),
        calls: int("/calls_in_progress"),
        waiting: v.get("queues").and_then(Value::as_array).map(|q| {
            q.iter()
                .filter_map(|x| x.get("waiting").and_then(Value::as_i64))
                .sum()
        }),
        cpu: v.pointer("/cpu/box_pct").and_then(Value::as_f64),
        disk_free,
        backlog: int("/backlog/records"),
        lines_up: lines.map(|l| l.iter().filter(up).count() as i64),
        lines_total: lines.map(|l| l.len() as i64),
        lines_down: lines
            .map(|l| {
                l.iter()
                    .filter(|x| x.get("state").and_then(Value::as_str) == Some("down"))
                    .filter_map(|x| str_of(x, "id"))
                    .collect()
            })
            .unwrap_or_default(),
        alarms: v
            .get("alarms")
            .and_then(Value::as_array)
            .map(|a| a.len() as i64),
    };
    Ok(FleetMsg::Telemetry {
        site,
        box_id,
        sample,
        json: String::from_utf8_lossy(payload).into_owned(),
    })
}

/// Stores a presence or telemetry message.
pub fn store(tx: &mut dyn Tx, m: &FleetMsg, now_ms: i64) -> Result<()> {
    match m {
        FleetMsg::Status {
            site,
            box_id,
            state,
            reason,
            session,
            firmware,
            at_ms,
        } => {
            // An offline status of an older session is a late will: the
            // box is already back.
            tx.exec(
                "INSERT INTO boxes (site, box, state, reason, session, firmware, status_ms, seen_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (site, box) DO UPDATE SET state = excluded.state,
                     reason = excluded.reason, session = excluded.session,
                     firmware = COALESCE(excluded.firmware, boxes.firmware),
                     status_ms = excluded.status_ms, seen_ms = excluded.seen_ms
                 WHERE boxes.session IS NULL OR excluded.session IS NULL
                     OR excluded.session > boxes.session
                     OR (excluded.session = boxes.session
                         AND (boxes.status_ms IS NULL OR excluded.status_ms >= boxes.status_ms))",
                &params![
                    site.as_str(),
                    box_id.as_str(),
                    state.as_str(),
                    reason.clone(),
                    *session,
                    firmware.clone(),
                    *at_ms,
                    now_ms
                ],
            )?;
        }
        FleetMsg::Telemetry {
            site,
            box_id,
            sample: s,
            json,
        } => {
            let down = (!s.lines_down.is_empty()).then(|| s.lines_down.join(","));
            tx.exec(
                "INSERT INTO boxes (site, box, state, session, firmware, telemetry, telemetry_ms,
                     calls, waiting, backlog, lines_up, lines_total, lines_down, alarms, seen_ms)
                 VALUES ($1, $2, 'online', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT (site, box) DO UPDATE SET
                     state = CASE WHEN boxes.session IS NULL OR excluded.session > boxes.session
                                  THEN 'online' ELSE boxes.state END,
                     reason = CASE WHEN boxes.session IS NULL OR excluded.session > boxes.session
                                  THEN NULL ELSE boxes.reason END,
                     session = CASE WHEN boxes.session IS NULL OR excluded.session > boxes.session
                                  THEN excluded.session ELSE boxes.session END,
                     firmware = COALESCE(excluded.firmware, boxes.firmware),
                     telemetry = excluded.telemetry, telemetry_ms = excluded.telemetry_ms,
                     calls = excluded.calls, waiting = excluded.waiting,
                     backlog = excluded.backlog, lines_up = excluded.lines_up,
                     lines_total = excluded.lines_total, lines_down = excluded.lines_down,
                     alarms = excluded.alarms, seen_ms = excluded.seen_ms
                 WHERE boxes.telemetry_ms IS NULL OR excluded.telemetry_ms >= boxes.telemetry_ms",
                &params![
                    site.as_str(),
                    box_id.as_str(),
                    s.session,
                    s.firmware.clone(),
                    json.as_str(),
                    s.at_ms,
                    s.calls,
                    s.waiting,
                    s.backlog,
                    s.lines_up,
                    s.lines_total,
                    down,
                    s.alarms,
                    now_ms
                ],
            )?;
            tx.exec(
                "INSERT INTO telemetry (site, box, at_ms, calls, waiting, cpu, disk_free, backlog,
                     lines_up, lines_total)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT DO NOTHING",
                &params![
                    site.as_str(),
                    box_id.as_str(),
                    s.at_ms,
                    s.calls,
                    s.waiting,
                    s.cpu,
                    s.disk_free,
                    s.backlog,
                    s.lines_up,
                    s.lines_total
                ],
            )?;
        }
    }
    Ok(())
}

/// Retention (`--keep-months`): deletes what the typed tables hold from
/// before `cutoff_ms` — telemetry samples, calls, alarms cleared, messages
/// delivered or given up; how many rows. Boxes, open alarms and messages
/// still to send stay whatever their age.
pub fn drop_before(db: &mut crate::db::Db, cutoff_ms: i64) -> Result<u64> {
    let mut n = 0;
    for sql in [
        "DELETE FROM telemetry WHERE at_ms < $1",
        "DELETE FROM calls WHERE started_ms < $1",
        "DELETE FROM checks WHERE at_ms < $1",
        "DELETE FROM alarms WHERE cleared_ms IS NOT NULL AND cleared_ms < $1",
        "DELETE FROM notifications WHERE state IN ('sent', 'failed') AND created_ms < $1",
        "DELETE FROM held WHERE received_ms < $1",
    ] {
        n += db.exec(sql, &params![cutoff_ms])?;
    }
    Ok(n)
}

/// Keeps a message aside with the reason it was not stored.
pub fn hold(tx: &mut dyn Tx, topic: &str, reason: &str, payload: &[u8], now_ms: i64) -> Result<()> {
    tx.exec(
        "INSERT INTO held (received_ms, topic, reason, payload) VALUES ($1, $2, $3, $4)",
        &params![
            now_ms,
            topic,
            reason,
            String::from_utf8_lossy(payload).into_owned()
        ],
    )?;
    Ok(())
}

/// Rows per multi-row statement.
const ROWS_AT_ONCE: usize = 200;

/// Fills the typed tables from a stored batch: `cdr` into `calls`,
/// `alarm` into `alarms`, `notify` and `voicemail` into `notifications`,
/// product checks and diversion flags (`lookup`) into `checks`. A record whose data lacks what a row needs is
/// left to the records table alone.
pub fn derive(tx: &mut dyn Tx, site: &str, box_id: &str, batch: &Records) -> Result<()> {
    match batch.stream.as_str() {
        "cdr" => calls(tx, site, box_id, batch),
        "alarm" => alarms(tx, site, box_id, batch),
        "notify" | "voicemail" => notifications(tx, site, box_id, batch),
        "lookup" => checks(tx, site, box_id, batch),
        _ => Ok(()),
    }
}

fn calls(tx: &mut dyn Tx, site: &str, box_id: &str, batch: &Records) -> Result<()> {
    // The latest version of each call in the batch: one statement may not
    // touch a row twice (PostgreSQL).
    let mut latest: std::collections::BTreeMap<String, (u64, Value)> = Default::default();
    for r in &batch.records {
        let Ok(d) = serde_json::from_str::<Value>(&r.data) else {
            continue;
        };
        let Some(id) = str_of(&d, "id") else { continue };
        if latest.get(&id).is_none_or(|(s, _)| *s < r.seq) {
            latest.insert(id, (r.seq, d));
        }
    }
    let rows: Vec<(String, u64, Value)> = latest
        .into_iter()
        .filter_map(|(id, (seq, d))| {
            str_of(&d, "start")
                .as_deref()
                .and_then(time_ms)
                .map(|_| (id, seq, d))
        })
        .collect();
    for chunk in rows.chunks(ROWS_AT_ONCE) {
        let mut sql = String::from(
            "INSERT INTO calls (site, box, id, epoch, seq, started_ms, direction, caller, dialled,
                 queue, agent, disposition, outcome, duration_ms, talk_ms, wrap_code,
                 survey_score, recordings) VALUES ",
        );
        let mut p = Vec::with_capacity(chunk.len() * 18);
        for (i, (id, seq, d)) in chunk.iter().enumerate() {
            let n = i * 18;
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            sql.push_str(
                &(1..=18)
                    .map(|k| format!("${}", n + k))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            sql.push(')');
            let recs = d
                .get("recordings")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|s| !s.is_empty());
            p.extend(params![
                site,
                box_id,
                id.as_str(),
                batch.epoch.as_str(),
                *seq as i64,
                str_of(d, "start").as_deref().and_then(time_ms),
                str_of(d, "direction"),
                str_of(d, "caller"),
                str_of(d, "dialled"),
                str_of(d, "queue"),
                str_of(d, "agent"),
                str_of(d, "disposition"),
                str_of(d, "outcome"),
                d.get("duration_ms").and_then(Value::as_i64),
                d.get("talk_ms").and_then(Value::as_i64),
                str_of(d, "wrap_code"),
                d.get("survey_score").and_then(Value::as_i64),
                recs
            ]);
        }
        sql.push_str(
            " ON CONFLICT (site, box, id) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq,
                 started_ms = excluded.started_ms, direction = excluded.direction,
                 caller = excluded.caller, dialled = excluded.dialled, queue = excluded.queue,
                 agent = excluded.agent, disposition = excluded.disposition,
                 outcome = excluded.outcome, duration_ms = excluded.duration_ms,
                 talk_ms = excluded.talk_ms, wrap_code = excluded.wrap_code,
                 survey_score = excluded.survey_score, recordings = excluded.recordings
             WHERE calls.epoch <> excluded.epoch OR calls.seq < excluded.seq",
        );
        tx.exec(&sql, &p)?;
    }
    Ok(())
}

fn checks(tx: &mut dyn Tx, site: &str, box_id: &str, batch: &Records) -> Result<()> {
    for r in &batch.records {
        let Ok(d) = serde_json::from_str::<Value>(&r.data) else {
            continue;
        };
        let Some(at) = r.at.as_deref().and_then(time_ms) else {
            continue;
        };
        let diverted = d.get("event").and_then(Value::as_str) == Some("possible_diversion");
        if !diverted && d.get("source").and_then(Value::as_str) != Some("products") {
            // Order lookups and the like are not checks.
            continue;
        }
        tx.exec(
            "INSERT INTO checks (site, box, epoch, seq, at_ms, call_id, code, found, diverted,
                 product_region, caller_region)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
            &params![
                site,
                box_id,
                batch.epoch.as_str(),
                r.seq as i64,
                at,
                str_of(&d, "call_id"),
                str_of(&d, "code").or_else(|| str_of(&d, "key")),
                d.get("found").and_then(Value::as_bool).map(i64::from),
                i64::from(diverted),
                str_of(&d, "product_region"),
                str_of(&d, "caller_region")
            ],
        )?;
    }
    Ok(())
}

fn notifications(tx: &mut dyn Tx, site: &str, box_id: &str, batch: &Records) -> Result<()> {
    let now = crate::mqtt::now_ms();
    for r in &batch.records {
        let Ok(d) = serde_json::from_str::<Value>(&r.data) else {
            continue;
        };
        let kind = if batch.stream == "voicemail" {
            "voicemail".to_string()
        } else {
            str_of(&d, "event").unwrap_or_default()
        };
        // The record's identity: sent again, it is the same message.
        tx.exec(
            "INSERT INTO notifications (id, site, box, kind, data, created_ms, state, attempts, next_ms)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $6)
             ON CONFLICT (id) DO NOTHING",
            &params![
                format!("{site}/{box_id}/{}", r.id),
                site,
                box_id,
                kind,
                r.data.as_str(),
                r.at.as_deref().and_then(time_ms).unwrap_or(now)
            ],
        )?;
    }
    Ok(())
}

fn alarms(tx: &mut dyn Tx, site: &str, box_id: &str, batch: &Records) -> Result<()> {
    for r in &batch.records {
        let Ok(d) = serde_json::from_str::<Value>(&r.data) else {
            continue;
        };
        let (Some(code), Some(at)) = (str_of(&d, "code"), r.at.as_deref().and_then(time_ms)) else {
            continue;
        };
        if d.get("cleared").and_then(Value::as_bool) == Some(true) {
            tx.exec(
                "UPDATE alarms SET cleared_ms = $4
                 WHERE site = $1 AND box = $2 AND code = $3 AND cleared_ms IS NULL AND raised_ms <= $4",
                &params![site, box_id, code, at],
            )?;
        } else {
            tx.exec(
                "INSERT INTO alarms (site, box, code, raised_ms, severity, message)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &params![
                    site,
                    box_id,
                    code,
                    at,
                    str_of(&d, "severity"),
                    str_of(&d, "message")
                ],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::wire::Record;

    fn db() -> (tempfile::TempDir, Db) {
        let d = tempfile::tempdir().unwrap();
        let db = Db::Sqlite(crate::store::Store::open(&d.path().join("hq.db")).unwrap());
        (d, db)
    }

    fn status(state: &str, session: i64, at: &str) -> FleetMsg {
        let p = format!(
            r#"{{"v":1,"state":"{state}","site":"s1","box":"b1","session":{session},"firmware":"0.1.0","at":"{at}"}}"#
        );
        parse("status", p.as_bytes(), "s1", "b1").unwrap()
    }

    fn put(db: &mut Db, m: &FleetMsg) {
        let mut tx = db.write().unwrap();
        store(&mut *tx, m, 1).unwrap();
        tx.commit().unwrap();
    }

    #[test]
    fn presence_ignores_a_late_will_and_telemetry_fills_the_columns() {
        let (_d, mut db) = db();
        put(&mut db, &status("online", 5, "2026-12-01T10:00:00Z"));
        put(&mut db, &status("offline", 4, "2026-12-01T10:00:01Z"));
        let row = |db: &mut Db| {
            db.query(
                "SELECT state, session, lines_up, lines_total, lines_down, waiting FROM boxes",
                &[],
            )
            .unwrap()
        };
        assert_eq!(row(&mut db)[0][0].text(), Some("online"));
        let t = br#"{"v":1,"site":"s1","box":"b1","at":"2026-12-01T10:00:30Z","session":5,
            "lines":[{"id":"t1","state":"up"},{"id":"t2","state":"down"},{"id":"t3","up":true}],
            "queues":[{"name":"a","waiting":2},{"name":"b","waiting":3}],
            "cpu":{"box_pct":12.5},"disk":{"data_free_bytes":25,"data_total_bytes":100},
            "calls_in_progress":4,"backlog":{"records":7},"alarms":[]}"#;
        put(&mut db, &parse("telemetry", t, "s1", "b1").unwrap());
        let r = row(&mut db);
        assert_eq!(r[0][2].int(), Some(2));
        assert_eq!(r[0][3].int(), Some(3));
        assert_eq!(r[0][4].text(), Some("t2"));
        assert_eq!(r[0][5].int(), Some(5));
        // The same session's clean stop is taken.
        put(&mut db, &status("offline", 5, "2026-12-01T10:01:00Z"));
        assert_eq!(row(&mut db)[0][0].text(), Some("offline"));
        let s = db
            .query("SELECT cpu, disk_free, backlog, calls FROM telemetry", &[])
            .unwrap();
        assert_eq!(
            s[0],
            vec![
                crate::sql::Cell::Float(12.5),
                crate::sql::Cell::Float(25.0),
                crate::sql::Cell::Int(7),
                crate::sql::Cell::Int(4)
            ]
        );
        assert!(
            parse(
                "telemetry",
                br#"{"v":2,"at":"2026-12-01T10:00:30Z"}"#,
                "s1",
                "b1"
            )
            .unwrap_err()
            .contains("v=2")
        );
        assert!(
            parse(
                "status",
                br#"{"v":1,"box":"b9","state":"online","at":"2026-12-01T10:00:30Z"}"#,
                "s1",
                "b1"
            )
            .unwrap_err()
            .contains("b9")
        );
    }

    fn batch(stream: &str, recs: &[(u64, &str, &str)]) -> Records {
        Records {
            epoch: "E".into(),
            stream: stream.into(),
            records: recs
                .iter()
                .map(|(seq, at, data)| Record {
                    seq: *seq,
                    id: format!("E/{stream}/{seq}"),
                    at: Some(at.to_string()),
                    data: data.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_call_sent_again_replaces_its_row_and_alarms_clear() {
        let (_d, mut db) = db();
        let call = |wrap: &str| {
            format!(
                r#"{{"id":"C1","start":"2026-12-01T10:00:00Z","dialled":"4001","disposition":"answered","wrap_code":{wrap},"survey_score":4}}"#
            )
        };
        let (first, later) = (call("null"), call("\"sale\""));
        let mut tx = db.write().unwrap();
        derive(
            &mut *tx,
            "s1",
            "b1",
            &batch("cdr", &[(3, "x", &later), (2, "x", &first)]),
        )
        .unwrap();
        derive(&mut *tx, "s1", "b1", &batch("cdr", &[(2, "x", &first)])).unwrap();
        derive(
            &mut *tx,
            "s1",
            "b1",
            &batch(
                "alarm",
                &[
                    (
                        1,
                        "2026-12-01T10:00:00Z",
                        r#"{"code":"line_down:t1","severity":"critical","message":"down"}"#,
                    ),
                    (
                        2,
                        "2026-12-01T10:05:00Z",
                        r#"{"code":"line_down:t1","cleared":true}"#,
                    ),
                ],
            ),
        )
        .unwrap();
        tx.commit().unwrap();
        let c = db
            .query(
                "SELECT seq, wrap_code, survey_score, started_ms FROM calls",
                &[],
            )
            .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0][0].int(), Some(3));
        assert_eq!(c[0][1].text(), Some("sale"));
        assert_eq!(c[0][3].int(), time_ms("2026-12-01T10:00:00Z"));
        let a = db
            .query("SELECT code, cleared_ms - raised_ms FROM alarms", &[])
            .unwrap();
        assert_eq!(a[0][1].int(), Some(300_000));
    }
}
