//! How each message changes the database, inside the batch's transaction:
//! [`apply`] hands each kind of message to its own function, grouped below
//! by what they concern (calls, what the IVR produced, recordings, alarms;
//! the outbox's own messages are in `outbox`).

use rusqlite::{Transaction, params};

use super::outbox::{self, CallRecordReason, enqueue, enqueue_call_record};
use super::writer::alarm_payload;
use super::{CallEnd, CallFlow, CallStart, CheckHistory, JobRow, RecordingEnd, StoreMsg};
use crate::clock::Stamp;

/// Applies one message; returns the answer it is owed once committed (a
/// product check's history), if any.
pub(super) fn apply(
    tx: &Transaction<'_>,
    msg: &StoreMsg,
    boot_id: &str,
) -> rusqlite::Result<Option<CheckHistory>> {
    match msg {
        StoreMsg::CallStarted(c) => call_started(tx, c, boot_id)?,
        StoreMsg::CallAnswered { id, at } => call_answered(tx, id, at)?,
        StoreMsg::CallDialled { id, dialled } => {
            tx.prepare_cached("UPDATE calls SET dialled = ?2 WHERE id = ?1")?
                .execute(params![id, dialled])?;
        }
        StoreMsg::CallEnded(e) => call_ended(tx, e)?,
        StoreMsg::CallFlow(f) => call_flow(tx, f)?,
        StoreMsg::ConsoleUser(u) => super::console::put_user(tx, u)?,
        StoreMsg::ConsoleUserRemoved { name } => super::console::remove_user(tx, name)?,
        StoreMsg::Audit(a) => super::console::audit(tx, a)?,
        StoreMsg::WrapUp {
            call_id,
            code,
            notes,
        } => {
            tx.prepare_cached(
                "UPDATE calls SET wrap_code = COALESCE(?2, wrap_code), notes = COALESCE(?3, notes) WHERE id = ?1",
            )?
            .execute(params![call_id, code, notes])?;
            if let Some(code) = code {
                super::campaigns::wrap_code(tx, call_id, code)?;
            }
            enqueue_call_record(tx, call_id, CallRecordReason::WrapCode)?;
        }
        StoreMsg::WrapCode { call_id, code } => {
            wrap_code(tx, call_id, code)?;
            super::campaigns::wrap_code(tx, call_id, code)?;
        }
        StoreMsg::Event {
            call_id,
            at,
            event,
            data,
        } => call_event(tx, call_id, at, event, data)?,
        StoreMsg::QueueLog {
            at,
            call_id,
            queue,
            agent,
            event,
            data,
        } => queue_log(tx, at, call_id, queue, agent, event, data)?,
        StoreMsg::ProductCheck {
            call_id,
            code,
            caller,
            found,
            product_region,
            caller_region,
            diverted,
            at,
            reply: _,
        } => {
            return product_check(
                tx,
                call_id,
                code,
                caller,
                *found,
                product_region,
                caller_region,
                *diverted,
                at,
            )
            .map(Some);
        }
        StoreMsg::Voicemail {
            id,
            call_id,
            mailbox,
            caller,
            at,
            duration_ms,
            file,
        } => voicemail(tx, id, call_id, mailbox, caller, at, *duration_ms, file)?,
        StoreMsg::CampaignContacts {
            campaign,
            contacts,
            at,
        } => super::campaigns::load(tx, campaign, contacts, at)?,
        StoreMsg::CampaignContact(u, at) => super::campaigns::update(tx, u, at)?,
        StoreMsg::VoicemailStatus { id, status, at } => {
            tx.prepare_cached("UPDATE voicemail SET status = ?2, status_at_ms = ?3 WHERE id = ?1")?
                .execute(params![id, status, at.wall_ms])?;
        }
        StoreMsg::Callback {
            call_id,
            number,
            queue,
            at,
        } => callback(tx, call_id, number, queue, at)?,
        StoreMsg::Job(j, at) => job(tx, j, at)?,
        StoreMsg::Lookup {
            call_id,
            at,
            source,
            key,
            found,
        } => lookup(tx, call_id, at, source, key, *found)?,
        StoreMsg::RecordingStarted {
            id,
            call_id,
            kind,
            file,
            format,
            channels,
            at,
        } => recording_started(tx, id, call_id, kind, file, format, *channels, at)?,
        StoreMsg::RecordingFinished(r) => recording_finished(tx, r)?,
        StoreMsg::SweepOpenRecordings { at: _ } => sweep_open_recordings(tx)?,
        StoreMsg::RecordingDeleted { id, at, reason } => recording_deleted(tx, id, at, reason)?,
        StoreMsg::UploadProgress { id, offset } => upload_progress(tx, id, *offset)?,
        StoreMsg::RecordingDelivered { id } => recording_delivered(tx, id)?,
        StoreMsg::Alarm {
            at,
            code,
            severity,
            message,
        } => alarm(tx, at, code, severity, message)?,
        StoreMsg::AlarmCleared { at, code } => alarm_cleared(tx, at, code)?,
        StoreMsg::Outbox {
            stream,
            at,
            payload,
        } => enqueue(tx, stream, at, payload)?,
        StoreMsg::OutboxAcked { rows } => outbox::acked(tx, rows)?,
        StoreMsg::OutboxHeld { rows } => outbox::held(tx, rows)?,
        StoreMsg::OutboxAckedByStream { stream, seqs } => {
            outbox::acked_by_stream(tx, stream, seqs)?;
        }
        // Answered by the writer thread itself, never batched.
        StoreMsg::Flush(_) | StoreMsg::JobStatus(..) | StoreMsg::NextSession(_) => {}
    }
    Ok(None)
}

// ---- calls ----

fn call_started(tx: &Transaction<'_>, c: &CallStart, boot_id: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO calls (id, direction, trunk_line, caller, dialled, started_ms, disposition,
                            clock_synced, boot_id, mono_start_ms, station, caller_name)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'in_progress', ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        c.id,
        c.direction.as_str(),
        c.trunk_line,
        c.caller,
        c.dialled,
        c.at.wall_ms,
        c.at.synced,
        boot_id,
        c.at.mono_ms,
        c.station,
        c.caller_name
    ])?;
    Ok(())
}

fn call_answered(tx: &Transaction<'_>, id: &str, at: &Stamp) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE calls SET answered_ms = ?2 WHERE id = ?1")?
        .execute(params![id, at.wall_ms])?;
    Ok(())
}

fn call_ended(tx: &Transaction<'_>, e: &CallEnd) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE calls SET ended_ms = ?2, mono_end_ms = ?3, disposition = ?4, hangup_cause = ?5,
                          hangup_side = ?6, clock_synced = clock_synced AND ?7
         WHERE id = ?1",
    )?
    .execute(params![
        e.id,
        e.at.wall_ms,
        e.at.mono_ms,
        e.disposition.as_str(),
        e.cause.as_str(),
        e.side.as_str(),
        e.at.synced
    ])?;
    enqueue_call_record(tx, &e.id, CallRecordReason::Ended(&e.at))
}

fn call_flow(tx: &Transaction<'_>, f: &CallFlow) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE calls SET flow = ?2, language = ?3, ivr_path = ?4, ivr_vars = ?5, outcome = ?6,
                          survey_score = ?7, connected_to = ?8, job = ?9, queue = ?10,
                          queue_wait_ms = ?11, agent = ?12, talk_ms = ?13, queue_exit = ?14
         WHERE id = ?1",
    )?
    .execute(params![
        f.id,
        f.flow,
        f.language,
        serde_json::to_string(&f.path).unwrap_or_default(),
        serde_json::to_string(&f.vars).unwrap_or_default(),
        f.outcome,
        f.survey_score,
        f.connected_to,
        f.job,
        f.queue,
        f.queue_wait_ms,
        f.agent,
        f.talk_ms,
        f.queue_exit
    ])?;
    Ok(())
}

fn wrap_code(tx: &Transaction<'_>, call_id: &str, code: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE calls SET wrap_code = ?2 WHERE id = ?1")?
        .execute(params![call_id, code])?;
    enqueue_call_record(tx, call_id, CallRecordReason::WrapCode)
}

fn call_event(
    tx: &Transaction<'_>,
    call_id: &str,
    at: &Stamp,
    event: &str,
    data: &serde_json::Value,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO call_events (call_id, at_ms, mono_ms, event, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![call_id, at.wall_ms, at.mono_ms, event, data.to_string()])?;
    Ok(())
}

fn queue_log(
    tx: &Transaction<'_>,
    at: &Stamp,
    call_id: &Option<String>,
    queue: &Option<String>,
    agent: &Option<String>,
    event: &str,
    data: &serde_json::Value,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO queue_log (at_ms, call_id, queue, agent, event, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![at.wall_ms, call_id, queue, agent, event, data.to_string()])?;
    Ok(())
}

// ---- what the IVR produced ----

/// Records a product check; returns the code's earlier checks.
// One argument per field of the message.
#[allow(clippy::too_many_arguments)]
fn product_check(
    tx: &Transaction<'_>,
    call_id: &str,
    code: &str,
    caller: &Option<String>,
    found: bool,
    product_region: &Option<String>,
    caller_region: &Option<String>,
    diverted: bool,
    at: &Stamp,
) -> rusqlite::Result<CheckHistory> {
    let (earlier, first_ms): (i64, Option<i64>) = tx
        .prepare_cached(
            "SELECT COUNT(*), MIN(at_ms) FROM product_checks WHERE code = ?1 AND found = 1",
        )?
        .query_row(params![code], |r| Ok((r.get(0)?, r.get(1)?)))?;
    tx.prepare_cached(
        "INSERT INTO product_checks (call_id, code, caller, at_ms, found, product_region, caller_region, diverted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![call_id, code, caller, at.wall_ms, found, product_region, caller_region, diverted])?;
    if diverted {
        // Headquarters investigates possible cross-region
        // diversion of goods.
        enqueue(
            tx,
            "lookup",
            at,
            &serde_json::json!({
                "event": "possible_diversion",
                "call_id": call_id,
                "code": code,
                "caller": caller,
                "product_region": product_region,
                "caller_region": caller_region,
            }),
        )?;
    }
    Ok(CheckHistory { earlier, first_ms })
}

// One argument per field of the message.
#[allow(clippy::too_many_arguments)]
fn voicemail(
    tx: &Transaction<'_>,
    id: &str,
    call_id: &str,
    mailbox: &str,
    caller: &Option<String>,
    at: &Stamp,
    duration_ms: i64,
    file: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO voicemail (id, call_id, mailbox, caller, at_ms, duration_ms, file)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        id,
        call_id,
        mailbox,
        caller,
        at.wall_ms,
        duration_ms,
        file
    ])?;
    enqueue(
        tx,
        "voicemail",
        at,
        &serde_json::json!({"id": id, "call_id": call_id, "mailbox": mailbox, "caller": caller, "duration_ms": duration_ms}),
    )
}

fn callback(
    tx: &Transaction<'_>,
    call_id: &str,
    number: &str,
    queue: &str,
    at: &Stamp,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO callbacks (call_id, number, queue, at_ms, status) VALUES (?1, ?2, ?3, ?4, 'pending')",
    )?
    .execute(params![call_id, number, queue, at.wall_ms])?;
    enqueue(
        tx,
        "callback",
        at,
        &serde_json::json!({"call_id": call_id, "number": number, "queue": queue}),
    )
}

fn job(tx: &Transaction<'_>, j: &JobRow, at: &Stamp) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO outbound_jobs (name, number, attempts, status, result, last_call_id, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(name) DO UPDATE SET number = ?2, attempts = ?3, status = ?4, result = ?5,
                                         last_call_id = ?6, updated_ms = ?7",
    )?
    .execute(params![j.name, j.number, j.attempts, j.status, j.result, j.last_call_id, at.wall_ms])?;
    if j.status != "pending" {
        enqueue(
            tx,
            "job",
            at,
            &serde_json::json!({"job": j.name, "number": j.number, "attempts": j.attempts, "status": j.status, "result": j.result}),
        )?;
    }
    Ok(())
}

fn lookup(
    tx: &Transaction<'_>,
    call_id: &str,
    at: &Stamp,
    source: &str,
    key: &str,
    found: bool,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO lookups (call_id, at_ms, source, key, found) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![call_id, at.wall_ms, source, key, found])?;
    enqueue(
        tx,
        "lookup",
        at,
        &serde_json::json!({"call_id": call_id, "source": source, "key": key, "found": found}),
    )
}

// ---- recordings ----

// One argument per field of the message.
#[allow(clippy::too_many_arguments)]
fn recording_started(
    tx: &Transaction<'_>,
    id: &str,
    call_id: &str,
    kind: &str,
    file: &str,
    format: &str,
    channels: u16,
    at: &Stamp,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO recordings (id, call_id, kind, file, format, channels, started_ms, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'recording')",
    )?
    .execute(params![
        id, call_id, kind, file, format, channels, at.wall_ms
    ])?;
    enqueue_call_record(tx, call_id, CallRecordReason::Recording(at))
}

fn recording_finished(tx: &Transaction<'_>, r: &RecordingEnd) -> rusqlite::Result<()> {
    let has_row: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM recordings WHERE id = ?1)")?
        .query_row(params![r.id], |row| row.get(0))?;
    // SQLite integers are signed.
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let duration_ms = int(r.duration_ms);
    // No start row if the box stopped before it was committed: the
    // start is known, or worked back from the end.
    let started_ms = r
        .started
        .map_or(r.at.wall_ms.saturating_sub(duration_ms), |s| s.wall_ms);
    let pauses = serde_json::to_string(&r.pauses).unwrap_or_else(|_| "[]".into());
    tx.prepare_cached(
        "INSERT INTO recordings (id, call_id, kind, file, format, channels, started_ms, ended_ms, size,
                                duration_ms, paused_ms, pauses, sha256, encrypted, state, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT(id) DO UPDATE SET file = excluded.file, state = excluded.state,
             ended_ms = excluded.ended_ms, size = excluded.size, duration_ms = excluded.duration_ms,
             paused_ms = excluded.paused_ms, pauses = excluded.pauses, sha256 = excluded.sha256,
             encrypted = excluded.encrypted, error = excluded.error",
    )?
    .execute(params![
        r.id,
        r.call_id,
        r.kind,
        r.file,
        r.format,
        r.channels,
        started_ms,
        r.at.wall_ms,
        int(r.size),
        duration_ms,
        int(r.paused_ms),
        pauses,
        r.sha256,
        r.encrypted,
        r.state,
        r.error
    ])?;
    enqueue(
        tx,
        "recording",
        &r.at,
        &serde_json::json!({
            "id": r.id,
            "call_id": r.call_id,
            "kind": r.kind,
            "file": r.file,
            "format": r.format,
            "channels": r.channels,
            "size": r.size,
            "duration_ms": r.duration_ms,
            "sha256": r.sha256,
            "encrypted": r.encrypted,
            "state": r.state,
        }),
    )?;
    if !has_row {
        enqueue_call_record(tx, &r.call_id, CallRecordReason::Recording(&r.at))?;
    }
    Ok(())
}

fn sweep_open_recordings(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let lost = tx
        .prepare_cached(
            "UPDATE recordings SET state = 'lost', error = 'no audio file found at start-up'
             WHERE state = 'recording'",
        )?
        .execute([])?;
    if lost > 0 {
        tracing::warn!(
            lost,
            "recordings left open by the previous run have no audio file; marked lost"
        );
    }
    Ok(())
}

fn recording_deleted(
    tx: &Transaction<'_>,
    id: &str,
    at: &Stamp,
    reason: &str,
) -> rusqlite::Result<()> {
    let n = tx
        .prepare_cached(
            "UPDATE recordings SET state = 'deleted', deleted_ms = ?2, deleted_reason = ?3
             WHERE id = ?1",
        )?
        .execute(params![id, at.wall_ms, reason])?;
    if n == 0 {
        tracing::warn!(recording = %id, "deleted recording has no row");
    }
    Ok(())
}

fn upload_progress(tx: &Transaction<'_>, id: &str, offset: u64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE recordings SET upload_offset = MAX(upload_offset, ?2) WHERE id = ?1",
    )?
    .execute(params![id, i64::try_from(offset).unwrap_or(i64::MAX)])?;
    Ok(())
}

fn recording_delivered(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE recordings SET delivered = 1, upload_offset = COALESCE(size, upload_offset) WHERE id = ?1",
    )?
    .execute(params![id])?;
    Ok(())
}

// ---- alarms ----

fn alarm(
    tx: &Transaction<'_>,
    at: &Stamp,
    code: &str,
    severity: &str,
    message: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO alarms (at_ms, code, severity, message) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![at.wall_ms, code, severity, message])?;
    enqueue(tx, "alarm", at, &alarm_payload(code, severity, message))
}

fn alarm_cleared(tx: &Transaction<'_>, at: &Stamp, code: &str) -> rusqlite::Result<()> {
    let cleared = tx
        .prepare_cached("UPDATE alarms SET cleared_ms = ?2 WHERE code = ?1 AND cleared_ms IS NULL")?
        .execute(params![code, at.wall_ms])?;
    // Headquarters hears of a clear only for an alarm it was told of.
    if cleared > 0 {
        enqueue(
            tx,
            "alarm",
            at,
            &serde_json::json!({"code": code, "cleared": true}),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::clock::rfc3339_ms;
    use crate::store::test_support::*;
    use crate::store::*;

    #[tokio::test]
    async fn a_finished_recording_completes_its_row_or_inserts_it_if_the_start_was_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        h.send(call("c1", 1000)).await;
        // r1: started and finished; r2: its start row never committed.
        h.send(started("r1", "c1", 2000)).await;
        let mut end = finished("r1", "c1", None, 7000);
        end.file = "recordings/r1.wav.age".into();
        end.encrypted = true;
        h.send(end.into_msg()).await;
        h.send(finished("r2", "c1", None, 20_000).into_msg()).await;
        drop(h);
        store.close().await;
        let rows = read_recordings(dir.path(), Some("c1")).unwrap();
        assert_eq!(rows.len(), 2);
        let r1 = &rows[0];
        assert_eq!(r1.id, "r1");
        assert_eq!(r1.state, "complete");
        // The start row's start is kept; the end's file replaces its own.
        assert_eq!(r1.start, rfc3339_ms(2000));
        assert_eq!(r1.end.as_deref(), Some(rfc3339_ms(7000).as_str()));
        assert_eq!(r1.file, "recordings/r1.wav.age");
        assert!(r1.encrypted);
        assert_eq!(r1.size, Some(64_044));
        assert_eq!(r1.duration_ms, Some(4000));
        assert_eq!(r1.paused_ms, 1000);
        assert_eq!(r1.pauses, [[1000, 2000]]);
        assert_eq!(r1.channels, 2);
        let r2 = &rows[1];
        assert_eq!(r2.id, "r2");
        assert_eq!(r2.state, "complete");
        assert_eq!(r2.kind, "call");
        assert_eq!(r2.format, "wav");
        // Worked back from the end: 20 s minus 4 s of audio.
        assert_eq!(r2.start, rfc3339_ms(16_000));
        assert!(
            read_recordings(dir.path(), Some("other"))
                .unwrap()
                .is_empty()
        );
        assert_eq!(read_recordings(dir.path(), None).unwrap().len(), 2);
        let recs = read_records(dir.path(), &RecordQuery::default()).unwrap();
        assert_eq!(recs[0].recordings, ["r1", "r2"]);
        let sent = outbox_rows(dir.path(), "recording");
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0]["id"], "r1");
        assert_eq!(sent[0]["call_id"], "c1");
        assert_eq!(sent[0]["file"], "recordings/r1.wav.age");
        assert_eq!(sent[0]["encrypted"], true);
        assert_eq!(sent[0]["state"], "complete");
        assert_eq!(sent[0]["sha256"], "ab".repeat(32));
        assert_eq!(sent[0]["size"], 64_044);
        // The raw table shows the pauses as JSON.
        let raw = read_table(dir.path(), "recordings").unwrap();
        assert_eq!(raw[0]["pauses"], serde_json::json!([[1000, 2000]]));
    }

    #[tokio::test]
    async fn the_sweep_marks_recordings_left_open_lost_and_records_stop_pointing_at_them() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        h.send(call("c1", 1000)).await;
        h.send(started("open", "c1", 1100)).await;
        h.send(started("done", "c1", 1200)).await;
        h.send(finished("done", "c1", None, 9000).into_msg()).await;
        h.send(started("gone", "c1", 1300)).await;
        h.send(StoreMsg::RecordingDeleted {
            id: "gone".into(),
            at: stamp(9500),
            reason: "retention".into(),
        })
        .await;
        h.send(StoreMsg::SweepOpenRecordings { at: stamp(10_000) })
            .await;
        drop(h);
        store.close().await;
        let rows = read_recordings(dir.path(), None).unwrap();
        let by_id = |id: &str| rows.iter().find(|r| r.id == id).unwrap();
        assert_eq!(by_id("open").state, "lost");
        assert_eq!(
            by_id("open").error.as_deref(),
            Some("no audio file found at start-up")
        );
        assert_eq!(by_id("done").state, "complete");
        assert_eq!(by_id("done").error, None);
        // Deleted: the row stays, with the reason.
        assert_eq!(by_id("gone").state, "deleted");
        assert_eq!(by_id("gone").deleted_reason.as_deref(), Some("retention"));
        let raw = read_table(dir.path(), "recordings").unwrap();
        let gone = raw.iter().find(|r| r["id"] == "gone").unwrap();
        assert_eq!(gone["deleted_ms"], 9500);
        let recs = read_records(dir.path(), &RecordQuery::default()).unwrap();
        assert_eq!(recs[0].recordings, ["done", "gone"]);
    }

    #[tokio::test]
    async fn alarms_are_raised_and_cleared_by_code_and_headquarters_hears_both() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        for (ms, code) in [
            (1000, "disk_full"),
            (2000, "disk_full"),
            (3000, "line_down"),
        ] {
            h.send(StoreMsg::Alarm {
                at: stamp(ms),
                code: code.into(),
                severity: "critical",
                message: format!("{code} happened"),
            })
            .await;
        }
        h.send(StoreMsg::AlarmCleared {
            at: stamp(4000),
            code: "disk_full".into(),
        })
        .await;
        // Nothing raised with this code: nothing to clear, nothing sent.
        h.send(StoreMsg::AlarmCleared {
            at: stamp(4500),
            code: "never_raised".into(),
        })
        .await;
        h.send(StoreMsg::Lookup {
            call_id: "c1".into(),
            at: stamp(5000),
            source: "orders".into(),
            key: "A-17".into(),
            found: true,
        })
        .await;
        drop(h);
        store.close().await;
        let alarms = read_table(dir.path(), "alarms").unwrap();
        assert_eq!(alarms.len(), 3);
        assert_eq!(alarms[0]["cleared_ms"], 4000);
        assert_eq!(alarms[1]["cleared_ms"], 4000);
        assert_eq!(alarms[2]["cleared_ms"], serde_json::Value::Null);
        assert_eq!(alarms[2]["severity"], "critical");
        let sent = outbox_rows(dir.path(), "alarm");
        assert_eq!(sent.len(), 4);
        assert_eq!(sent[0]["code"], "disk_full");
        assert_eq!(sent[0]["severity"], "critical");
        assert_eq!(sent[0]["message"], "disk_full happened");
        assert_eq!(
            sent[3],
            serde_json::json!({"code": "disk_full", "cleared": true})
        );
        let lookups = read_table(dir.path(), "lookups").unwrap();
        assert_eq!(lookups.len(), 1);
        assert_eq!(lookups[0]["key"], "A-17");
        assert_eq!(lookups[0]["found"], 1);
    }
}
