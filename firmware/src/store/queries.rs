//! Reading stored records for export: call records with their
//! recordings and event log (`callboxd records`), recordings (`callboxd
//! recordings`) and raw tables (`records --table`).

use std::path::Path;

use rusqlite::{Connection, params};
use serde::Serialize;

use super::read_only::{has_table, open_read_only};
use super::{DB_FILE, StoreError};
use crate::clock::rfc3339_ms;

/// Tables `callboxd records --table` can show, besides `calls`.
pub const TABLES: &[&str] = &[
    "voicemail",
    "product_checks",
    "callbacks",
    "outbox",
    "outbound_jobs",
    "queue_log",
    "call_events",
    "recordings",
    "alarms",
    "lookups",
    "meta",
    "outbox_held",
    "campaign_contacts",
    // Not `console_users`: password hashes stay in the database.
    "console_audit",
];

/// A call record as exported (`callboxd records --json`). Field names are a
/// contract with headquarters: add fields, never rename them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CallRecord {
    /// Stable unique id (UUIDv7).
    pub id: String,
    /// `inbound`, `outbound` or `internal`.
    pub direction: String,
    /// Trunk line id.
    pub trunk_line: Option<String>,
    /// Calling number.
    pub caller: Option<String>,
    /// The caller's name: from the site's contacts, or the agent who
    /// placed the call.
    pub caller_name: Option<String>,
    /// Dialled number.
    pub dialled: Option<String>,
    /// Arrival, RFC 3339 UTC.
    pub start: String,
    /// Answer, RFC 3339 UTC.
    pub answer: Option<String>,
    /// End, RFC 3339 UTC.
    pub end: Option<String>,
    /// Arrival to end, milliseconds.
    pub duration_ms: Option<i64>,
    /// Answer to end, milliseconds.
    pub answered_ms: Option<i64>,
    /// Outcome.
    pub disposition: String,
    /// Why it ended.
    pub hangup_cause: Option<String>,
    /// Who ended it.
    pub hangup_side: Option<String>,
    /// Whether the wall clock was synchronised throughout.
    pub clock_synced: bool,
    /// Boot the call happened in.
    pub boot_id: String,
    /// Milliseconds since that boot at arrival.
    pub mono_start_ms: i64,
    /// IVR start node.
    pub flow: Option<String>,
    /// Language the IVR spoke.
    pub language: Option<String>,
    /// IVR nodes and choices, in order.
    pub ivr_path: Vec<String>,
    /// Variables the flow marks recordable.
    pub ivr_vars: std::collections::BTreeMap<String, String>,
    /// How the flow ended.
    pub outcome: Option<String>,
    /// Satisfaction survey score, 1-5.
    pub survey_score: Option<u8>,
    /// Line the caller was connected to.
    pub connected_to: Option<String>,
    /// Outbound job that placed the call.
    pub job: Option<String>,
    /// Queue the caller waited in.
    pub queue: Option<String>,
    /// Time in that queue, ms.
    pub queue_wait_ms: Option<i64>,
    /// Agent who took the call.
    pub agent: Option<String>,
    /// Talk time with the agent, ms.
    pub talk_ms: Option<i64>,
    /// How the call left the queue.
    pub queue_exit: Option<String>,
    /// The agent's wrap-up (disposition) code.
    pub wrap_code: Option<String>,
    /// The agent's notes on the call (the web console's wrap-up form).
    pub notes: Option<String>,
    /// The station an agent placed the call from (`internal` calls and
    /// agents' `outbound` ones).
    pub station: Option<String>,
    /// Ids of the call's recordings, oldest first (see `callboxd
    /// recordings`); recordings found lost at start-up are left out.
    pub recordings: Vec<String>,
    /// The call's event log, oldest first; read only for one call
    /// ([`RecordQuery::call`]), else empty and not exported.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<CallEvent>,
}

/// One event in a call's life.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CallEvent {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Milliseconds since boot (orders events even if the wall clock jumps).
    pub mono_ms: i64,
    /// What happened (`answered`, `digit`, `menu`…).
    pub event: String,
    /// Details.
    pub data: serde_json::Value,
}

/// Which call records to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordQuery {
    /// Only calls that arrived at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Only this call, with its event log.
    pub call: Option<String>,
    /// Only calls from this number.
    pub caller: Option<String>,
    /// Only calls that arrived before this time (ms since the epoch).
    pub until_ms: Option<i64>,
    /// Only calls whose caller or dialled number contains this.
    pub number: Option<String>,
    /// Only calls to this dialled number.
    pub dialled: Option<String>,
    /// Only calls through this queue.
    pub queue: Option<String>,
    /// Only calls this agent took or placed.
    pub agent: Option<String>,
    /// Only calls with this disposition or outcome.
    pub outcome: Option<String>,
    /// At most this many, the newest first (else every one, oldest first).
    pub newest: Option<u32>,
}

/// A recording as exported (`callboxd recordings --json`). Field names are
/// a contract with headquarters: add fields, never rename them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecordingRow {
    /// Recording id (UUIDv7).
    pub id: String,
    /// The call recorded (a call record's `id`).
    pub call_id: String,
    /// `call` or `voicemail`.
    pub kind: String,
    /// Audio file, relative to the data directory.
    pub file: String,
    /// Audio format.
    pub format: String,
    /// Channels.
    pub channels: u16,
    /// Start, RFC 3339 UTC.
    pub start: String,
    /// End, RFC 3339 UTC.
    pub end: Option<String>,
    /// File size, bytes.
    pub size: Option<u64>,
    /// Length of the audio, ms.
    pub duration_ms: Option<u64>,
    /// Total time paused, ms.
    pub paused_ms: u64,
    /// Pauses as `[start_ms, end_ms)` offsets in the recording.
    pub pauses: Vec<[u64; 2]>,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: Option<String>,
    /// Whether the file is encrypted at rest.
    pub encrypted: bool,
    /// `recording`, `complete`, `interrupted`, `failed`, `lost` or
    /// `deleted`.
    pub state: String,
    /// Whether headquarters has fetched it.
    pub delivered: bool,
    /// Why it was deleted.
    pub deleted_reason: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
}

/// Reads stored call records, oldest first, without disturbing a running
/// daemon. With [`RecordQuery::call`] the result is that call alone (empty
/// if there is no such call), with its event log.
pub fn read_records(data_dir: &Path, query: &RecordQuery) -> Result<Vec<CallRecord>, StoreError> {
    let path = data_dir.join(DB_FILE);
    let conn = open_read_only(&path)?;
    query_records(&conn, query).map_err(|source| StoreError::Sqlite { path, source })
}

/// [`read_records`] on an open connection (also the store's own, inside a
/// transaction, for the outbox).
pub(super) fn query_records(
    conn: &Connection,
    query: &RecordQuery,
) -> rusqlite::Result<Vec<CallRecord>> {
    use rusqlite::types::Value;
    if !has_table(conn, "calls")? {
        return Ok(Vec::new());
    }
    // The filter, on the calls table aliased `c`.
    let mut filter = String::from("1");
    let mut args: Vec<Value> = Vec::new();
    if let Some(since) = query.since_ms {
        args.push(since.into());
        filter += &format!(" AND c.started_ms >= ?{}", args.len());
    }
    if let Some(call) = &query.call {
        args.push(call.clone().into());
        filter += &format!(" AND c.id = ?{}", args.len());
    }
    if let Some(caller) = &query.caller {
        args.push(caller.clone().into());
        filter += &format!(" AND c.caller = ?{}", args.len());
    }
    if let Some(until) = query.until_ms {
        args.push(until.into());
        filter += &format!(" AND c.started_ms < ?{}", args.len());
    }
    if let Some(n) = &query.number {
        // LIKE's own wildcards in the number are taken literally.
        let escaped: String = n
            .chars()
            .flat_map(|ch| match ch {
                '%' | '_' | '\\' => vec!['\\', ch],
                _ => vec![ch],
            })
            .collect();
        args.push(format!("%{escaped}%").into());
        let i = args.len();
        filter +=
            &format!(" AND (c.caller LIKE ?{i} ESCAPE '\\' OR c.dialled LIKE ?{i} ESCAPE '\\')");
    }
    for (column, value) in [
        ("dialled", &query.dialled),
        ("queue", &query.queue),
        ("agent", &query.agent),
    ] {
        if let Some(v) = value {
            args.push(v.clone().into());
            filter += &format!(" AND c.{column} = ?{}", args.len());
        }
    }
    if let Some(o) = &query.outcome {
        args.push(o.clone().into());
        let i = args.len();
        filter += &format!(" AND (c.disposition = ?{i} OR c.outcome = ?{i})");
    }
    let order = match query.newest {
        Some(n) => format!("seq DESC LIMIT {n}"),
        None => "seq".to_string(),
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT id, direction, trunk_line, caller, dialled, started_ms, answered_ms, ended_ms,
                    disposition, hangup_cause, hangup_side, clock_synced, boot_id, mono_start_ms,
                    flow, language, ivr_path, ivr_vars, outcome, survey_score, connected_to, job,
                    queue, queue_wait_ms, agent, talk_ms, queue_exit, wrap_code, station,
                    caller_name, notes
             FROM calls c WHERE {filter} ORDER BY {order}"
    ))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(&args), |r| {
        let started: i64 = r.get(5)?;
        let answered: Option<i64> = r.get(6)?;
        let ended: Option<i64> = r.get(7)?;
        Ok(CallRecord {
            id: r.get(0)?,
            direction: r.get(1)?,
            trunk_line: r.get(2)?,
            caller: r.get(3)?,
            dialled: r.get(4)?,
            start: rfc3339_ms(started),
            answer: answered.map(rfc3339_ms),
            end: ended.map(rfc3339_ms),
            duration_ms: ended.map(|e| e - started),
            answered_ms: match (answered, ended) {
                (Some(a), Some(e)) => Some(e - a),
                _ => None,
            },
            disposition: r.get(8)?,
            hangup_cause: r.get(9)?,
            hangup_side: r.get(10)?,
            clock_synced: r.get(11)?,
            boot_id: r.get(12)?,
            mono_start_ms: r.get(13)?,
            flow: r.get(14)?,
            language: r.get(15)?,
            ivr_path: r
                .get::<_, Option<String>>(16)?
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default(),
            ivr_vars: r
                .get::<_, Option<String>>(17)?
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default(),
            outcome: r.get(18)?,
            survey_score: r.get(19)?,
            connected_to: r.get(20)?,
            job: r.get(21)?,
            queue: r.get(22)?,
            queue_wait_ms: r.get(23)?,
            agent: r.get(24)?,
            talk_ms: r.get(25)?,
            queue_exit: r.get(26)?,
            wrap_code: r.get(27)?,
            station: r.get(28)?,
            caller_name: r.get(29)?,
            notes: r.get(30)?,
            recordings: Vec::new(),
            events: Vec::new(),
        })
    })?;
    let mut recs = rows.collect::<Result<Vec<_>, _>>()?;
    if recs.is_empty() {
        return Ok(recs);
    }
    if has_table(conn, "recordings")? {
        let mut by_call: std::collections::HashMap<String, Vec<String>> = Default::default();
        let mut stmt = conn.prepare(&format!(
            "SELECT r.call_id, r.id FROM recordings r JOIN calls c ON c.id = r.call_id
                 WHERE r.state != 'lost' AND {filter} ORDER BY r.seq"
        ))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(&args), |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (call, id) = row?;
            by_call.entry(call).or_default().push(id);
        }
        for rec in &mut recs {
            if let Some(ids) = by_call.remove(&rec.id) {
                rec.recordings = ids;
            }
        }
    }
    if let Some(call) = &query.call
        && has_table(conn, "call_events")?
    {
        let mut stmt = conn.prepare(
            "SELECT at_ms, mono_ms, event, data FROM call_events WHERE call_id = ?1 ORDER BY seq",
        )?;
        let events = stmt
            .query_map(params![call], |r| {
                let data: String = r.get(3)?;
                Ok(CallEvent {
                    at: rfc3339_ms(r.get(0)?),
                    mono_ms: r.get(1)?,
                    event: r.get(2)?,
                    data: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for rec in &mut recs {
            rec.events = events.clone();
        }
    }
    Ok(recs)
}

/// One recording by id, if there is one.
pub fn read_recording(data_dir: &Path, id: &str) -> Result<Option<RecordingRow>, StoreError> {
    Ok(query_recordings(data_dir, None, Some(id))?.pop())
}

/// Reads stored recordings (of one call, or all), oldest first, without
/// disturbing a running daemon.
pub fn read_recordings(
    data_dir: &Path,
    call: Option<&str>,
) -> Result<Vec<RecordingRow>, StoreError> {
    query_recordings(data_dir, call, None)
}

/// Recordings of `call` and with `id`, each when given.
fn query_recordings(
    data_dir: &Path,
    call: Option<&str>,
    id: Option<&str>,
) -> Result<Vec<RecordingRow>, StoreError> {
    let path = data_dir.join(DB_FILE);
    let conn = open_read_only(&path)?;
    let sq = |source| StoreError::Sqlite {
        path: path.clone(),
        source,
    };
    if !has_table(&conn, "recordings").map_err(sq)? {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare(
            "SELECT id, call_id, kind, file, format, channels, started_ms, ended_ms, size,
                    duration_ms, paused_ms, pauses, sha256, encrypted, state, delivered,
                    deleted_reason, error
             FROM recordings WHERE (?1 IS NULL OR call_id = ?1) AND (?2 IS NULL OR id = ?2)
             ORDER BY seq",
        )
        .map_err(sq)?;
    // Sizes and lengths are never negative; a corrupt value reads as 0.
    let uint = |v: i64| u64::try_from(v).unwrap_or(0);
    let rows = stmt
        .query_map(params![call, id], |r| {
            let pauses: String = r.get(11)?;
            Ok(RecordingRow {
                id: r.get(0)?,
                call_id: r.get(1)?,
                kind: r.get(2)?,
                file: r.get(3)?,
                format: r.get(4)?,
                channels: r.get(5)?,
                start: rfc3339_ms(r.get(6)?),
                end: r.get::<_, Option<i64>>(7)?.map(rfc3339_ms),
                size: r.get::<_, Option<i64>>(8)?.map(uint),
                duration_ms: r.get::<_, Option<i64>>(9)?.map(uint),
                paused_ms: uint(r.get(10)?),
                pauses: serde_json::from_str(&pauses).unwrap_or_default(),
                sha256: r.get(12)?,
                encrypted: r.get(13)?,
                state: r.get(14)?,
                delivered: r.get(15)?,
                deleted_reason: r.get(16)?,
                error: r.get(17)?,
            })
        })
        .map_err(sq)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sq)
}

/// Rows of one of the other [`TABLES`] as JSON objects, oldest first.
pub fn read_table(data_dir: &Path, table: &str) -> Result<Vec<serde_json::Value>, StoreError> {
    let path = data_dir.join(DB_FILE);
    // Only names from the fixed list reach the SQL text.
    let Some(table) = TABLES.iter().find(|t| **t == table) else {
        return Ok(Vec::new());
    };
    let conn = open_read_only(&path)?;
    let sq = |source| StoreError::Sqlite {
        path: path.clone(),
        source,
    };
    // A database not yet migrated (the daemon has not started since the
    // firmware update) has no table of a newer schema: nothing to show.
    if !has_table(&conn, table).map_err(sq)? {
        return Ok(Vec::new());
    }
    let order = if *table == "outbound_jobs" {
        "name"
    } else {
        "seq"
    };
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM {table} ORDER BY {order}"))
        .map_err(sq)?;
    let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
    let rows = stmt
        .query_map([], |r| {
            let mut obj = serde_json::Map::new();
            for (i, n) in names.iter().enumerate() {
                let v = match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => serde_json::Value::Null,
                    rusqlite::types::ValueRef::Integer(x) => x.into(),
                    rusqlite::types::ValueRef::Real(x) => x.into(),
                    rusqlite::types::ValueRef::Text(t) => {
                        let t = String::from_utf8_lossy(t).into_owned();
                        if n == "payload"
                            || n == "data"
                            || n == "pauses"
                            || n == "vars"
                            || n == "answers"
                        {
                            serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t))
                        } else {
                            t.into()
                        }
                    }
                    rusqlite::types::ValueRef::Blob(_) => serde_json::Value::Null,
                };
                obj.insert(n.clone(), v);
            }
            Ok(serde_json::Value::Object(obj))
        })
        .map_err(sq)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::rfc3339_ms;
    use crate::store::test_support::*;
    use crate::store::*;

    #[tokio::test]
    async fn one_call_is_read_with_its_events_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        h.send(call("a", 1000)).await;
        h.send(call("b", 1100)).await;
        for (id, ms, event, data) in [
            ("a", 1200, "answered", serde_json::json!({})),
            ("b", 1300, "answered", serde_json::json!({})),
            ("a", 1400, "digit", serde_json::json!({"digit": "1"})),
            ("a", 1500, "hangup", serde_json::json!({"side": "caller"})),
        ] {
            h.send(StoreMsg::Event {
                call_id: id.into(),
                at: stamp(ms),
                event,
                data,
            })
            .await;
        }
        drop(h);
        store.close().await;
        let one = RecordQuery {
            call: Some("a".into()),
            ..Default::default()
        };
        let recs = read_records(dir.path(), &one).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].id, "a");
        let events: Vec<_> = recs[0].events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(events, ["answered", "digit", "hangup"]);
        assert_eq!(recs[0].events[1].data["digit"], "1");
        assert_eq!(recs[0].events[1].mono_ms, 1400);
        assert_eq!(recs[0].events[1].at, rfc3339_ms(1400));
        // Without --call: no events read, none exported.
        let all = read_records(dir.path(), &RecordQuery::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|r| r.events.is_empty()));
        let json = serde_json::to_value(&all[0]).unwrap();
        assert!(json.get("events").is_none());
        assert_eq!(json["recordings"], serde_json::json!([]));
        // An unknown call reads as nothing.
        let none = RecordQuery {
            call: Some("zz".into()),
            ..Default::default()
        };
        assert!(read_records(dir.path(), &none).unwrap().is_empty());
    }

    #[tokio::test]
    async fn since_keeps_calls_that_arrived_at_or_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        for (id, ms) in [("a", 1000), ("b", 2000), ("c", 3000)] {
            h.send(call(id, ms)).await;
        }
        h.send(finished("r-a", "a", Some(stamp(1000)), 1500).into_msg())
            .await;
        h.send(finished("r-c", "c", Some(stamp(3000)), 3500).into_msg())
            .await;
        drop(h);
        store.close().await;
        let q = |since_ms| RecordQuery {
            since_ms: Some(since_ms),
            ..Default::default()
        };
        let ids = |q: RecordQuery| -> Vec<String> {
            read_records(dir.path(), &q)
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect()
        };
        assert_eq!(ids(q(2000)), ["b", "c"]);
        assert_eq!(ids(q(2001)), ["c"]);
        assert!(ids(q(9000)).is_empty());
        let recs = read_records(dir.path(), &q(2000)).unwrap();
        assert!(recs[0].recordings.is_empty());
        assert_eq!(recs[1].recordings, ["r-c"]);
        let both = RecordQuery {
            since_ms: Some(2000),
            call: Some("a".into()),
            ..Default::default()
        };
        assert!(ids(both).is_empty());
    }
}
