//! The outbox: what headquarters must get, durable before it is sent.
//! Records are numbered per stream without gaps, so headquarters can spot a
//! missing one.

use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{OptionalExtension, Transaction, params};

use super::RecordQuery;
use super::queries::query_records;
use crate::clock::Stamp;

/// Appends a record to `stream`, numbered one after the stream's last.
pub(super) fn enqueue(
    tx: &Transaction<'_>,
    stream: &str,
    at: &Stamp,
    payload: &serde_json::Value,
) -> rusqlite::Result<()> {
    let seq: i64 = tx
        .prepare_cached(
            "INSERT INTO outbox_streams (stream, next_seq) VALUES (?1, 2)
             ON CONFLICT(stream) DO UPDATE SET next_seq = next_seq + 1
             RETURNING next_seq - 1",
        )?
        .query_row(params![stream], |r| r.get(0))?;
    tx.prepare_cached(
        "INSERT INTO outbox (stream, stream_seq, at_ms, payload) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![stream, seq, at.wall_ms, payload.to_string()])?;
    Ok(())
}

/// Most events in one `call_events` record: a long call's log is split so
/// no message outgrows a broker's limit.
const EVENTS_PER_RECORD: usize = 200;

/// Why a call's record goes to the outbox (see [`enqueue_call_record`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum CallRecordReason<'a> {
    /// The call ended, at this time.
    Ended(&'a Stamp),
    /// An agent keyed a wrap-up code for the call.
    WrapCode,
    /// A recording of the call got its first row, at this time.
    Recording(&'a Stamp),
}

/// Puts a call's record (as `records --json` shows it) in the outbox, the
/// one place that does.
///
/// The record goes when the call ends, followed by the call's event log
/// (stream `call_events`). It goes again, complete, whenever what it shows
/// changes after that; headquarters keeps the latest record per call id.
/// Two things change it late:
///
/// - a wrap-up code, keyed by the agent after the call (the record is then
///   stamped with the call's end);
/// - a recording whose first row (its start, or its finish when the start
///   never reached the disk) is committed after the call's end. A
///   recording's start is queued by the call itself, ahead of its end
///   (`Recording::start`), so the record sent at the end shows it; only
///   when the store's queue was full does the start come later through the
///   recorder's thread, and without this resend a CDR would reach
///   headquarters without its recording.
///
/// A late change to a call that has not ended sends nothing: the record
/// sent at its end will show it.
pub(super) fn enqueue_call_record(
    tx: &Transaction<'_>,
    call_id: &str,
    reason: CallRecordReason<'_>,
) -> rusqlite::Result<()> {
    let at = match reason {
        CallRecordReason::Ended(at) => *at,
        CallRecordReason::WrapCode => match ended_ms(tx, call_id)? {
            Some(ms) => Stamp {
                wall_ms: ms,
                mono_ms: 0,
                synced: true,
            },
            None => return Ok(()),
        },
        CallRecordReason::Recording(at) => match ended_ms(tx, call_id)? {
            Some(_) => *at,
            None => return Ok(()),
        },
    };
    let mut recs = query_records(
        tx,
        &RecordQuery {
            call: Some(call_id.to_string()),
            ..Default::default()
        },
    )?;
    let Some(mut rec) = recs.pop() else {
        return Ok(());
    };
    let evs = std::mem::take(&mut rec.events);
    enqueue(
        tx,
        "cdr",
        &at,
        &serde_json::to_value(&rec).unwrap_or_default(),
    )?;
    if matches!(reason, CallRecordReason::Ended(_)) {
        let n = evs.len().div_ceil(EVENTS_PER_RECORD);
        for (part, chunk) in evs.chunks(EVENTS_PER_RECORD).enumerate() {
            enqueue(
                tx,
                "call_events",
                &at,
                &serde_json::json!({"call_id": call_id, "part": part + 1, "parts": n, "events": chunk}),
            )?;
        }
    }
    Ok(())
}

/// When the call ended; `None` while it lasts (or if there is no such call).
pub(super) fn ended_ms(tx: &Transaction<'_>, call_id: &str) -> rusqlite::Result<Option<i64>> {
    Ok(tx
        .prepare_cached("SELECT ended_ms FROM calls WHERE id = ?1")?
        .query_row(params![call_id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// The broker (or the collector) acknowledged these rows: they leave.
pub(super) fn acked(tx: &Transaction<'_>, rows: &[i64]) -> rusqlite::Result<()> {
    let mut del = tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
    for r in rows {
        del.execute(params![r])?;
    }
    Ok(())
}

/// Rows too large for any message move to `outbox_held` for an operator.
pub(super) fn held(tx: &Transaction<'_>, rows: &[i64]) -> rusqlite::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut keep = tx.prepare_cached(
        "INSERT OR IGNORE INTO outbox_held (seq, stream, stream_seq, at_ms, payload, held_ms, reason)
         SELECT seq, stream, stream_seq, at_ms, payload, ?2, 'larger than the uplink max_message'
         FROM outbox WHERE seq = ?1",
    )?;
    let mut del = tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
    for r in rows {
        keep.execute(params![r, now])?;
        del.execute(params![r])?;
    }
    Ok(())
}

/// The collector acknowledged these records of `stream` end to end.
pub(super) fn acked_by_stream(
    tx: &Transaction<'_>,
    stream: &str,
    seqs: &[i64],
) -> rusqlite::Result<()> {
    let mut del = tx.prepare_cached("DELETE FROM outbox WHERE stream = ?1 AND stream_seq = ?2")?;
    for s in seqs {
        del.execute(params![stream, s])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::store::test_support::*;
    use crate::store::*;
    use callbox_hal::HangupCause;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn a_finished_call_goes_to_the_outbox_numbered_per_stream_and_leaves_when_acked() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        for (id, ms) in [("a", 1000), ("b", 2000)] {
            h.send(call(id, ms)).await;
            h.send(StoreMsg::Event {
                call_id: id.into(),
                at: stamp(ms + 10),
                event: "answered",
                data: serde_json::json!({}),
            })
            .await;
            h.send(StoreMsg::CallEnded(CallEnd {
                id: id.into(),
                at: stamp(ms + 500),
                disposition: Disposition::Answered,
                cause: HangupCause::Normal,
                side: Side::Caller,
            }))
            .await;
        }
        // Keyed after the call: the record goes again, complete.
        h.send(StoreMsg::WrapCode {
            call_id: "a".into(),
            code: "42".into(),
        })
        .await;
        let (tx, rx) = oneshot::channel();
        h.send(StoreMsg::NextSession(tx)).await;
        assert_eq!(rx.await.unwrap(), 1);
        h.flush().await.unwrap();
        let cdr = rows_of(dir.path(), "cdr");
        let seqs: Vec<_> = cdr
            .iter()
            .map(|r| r["stream_seq"].as_i64().unwrap())
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
        let body = |r: &serde_json::Value| r["payload"].clone();
        let exported =
            serde_json::to_value(read_records(dir.path(), &RecordQuery::default()).unwrap())
                .unwrap();
        assert_eq!(body(&cdr[1]), exported[1]);
        assert_eq!(body(&cdr[2]), exported[0]);
        assert_eq!(body(&cdr[2])["wrap_code"], "42");
        let events = rows_of(dir.path(), "call_events");
        assert_eq!(events.len(), 2);
        assert_eq!(body(&events[0])["events"][0]["event"], "answered");

        // Acked rows leave; the numbering goes on where it was.
        let rows: Vec<i64> = cdr.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
        h.send(StoreMsg::OutboxAcked { rows }).await;
        h.send(StoreMsg::OutboxAckedByStream {
            stream: "call_events".into(),
            seqs: vec![1],
        })
        .await;
        h.send(call("c", 3000)).await;
        h.send(StoreMsg::CallEnded(CallEnd {
            id: "c".into(),
            at: stamp(3500),
            disposition: Disposition::Answered,
            cause: HangupCause::Normal,
            side: Side::Caller,
        }))
        .await;
        let (tx, rx) = oneshot::channel();
        h.send(StoreMsg::NextSession(tx)).await;
        assert_eq!(rx.await.unwrap(), 2);
        drop(h);
        store.close().await;
        let cdr = rows_of(dir.path(), "cdr");
        assert_eq!(cdr.len(), 1);
        assert_eq!(cdr[0]["stream_seq"], 4);
        let events: Vec<_> = rows_of(dir.path(), "call_events")
            .iter()
            .map(|r| r["stream_seq"].as_i64().unwrap())
            .collect();
        // Call c logged no events: no event record for it.
        assert_eq!(events, [2]);
    }

    #[tokio::test]
    async fn a_recording_that_reaches_the_store_after_its_call_ended_sends_the_record_again() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        let end = |id: &str, ms| {
            StoreMsg::CallEnded(CallEnd {
                id: id.into(),
                at: stamp(ms),
                disposition: Disposition::Answered,
                cause: HangupCause::Normal,
                side: Side::Caller,
            })
        };
        // c1: the usual order, its record goes once. c2: the recorder's
        // start row comes after the end; c3: only the finish, after the end.
        h.send(call("c1", 1000)).await;
        h.send(started("r1", "c1", 1100)).await;
        h.send(end("c1", 2000)).await;
        h.send(finished("r1", "c1", Some(stamp(1100)), 2100).into_msg())
            .await;
        h.send(call("c2", 3000)).await;
        h.send(end("c2", 4000)).await;
        h.send(started("r2", "c2", 3100)).await;
        h.send(call("c3", 5000)).await;
        h.send(end("c3", 6000)).await;
        h.send(finished("r3", "c3", None, 6100).into_msg()).await;
        drop(h);
        store.close().await;
        let cdrs = outbox_rows(dir.path(), "cdr");
        let of = |id: &str| -> Vec<serde_json::Value> {
            cdrs.iter()
                .filter(|c| c["id"] == id)
                .map(|c| c["recordings"].clone())
                .collect()
        };
        assert_eq!(of("c1"), [serde_json::json!(["r1"])]);
        assert_eq!(
            of("c2"),
            [serde_json::json!([]), serde_json::json!(["r2"])],
            "sent at the end, then again with the recording"
        );
        assert_eq!(of("c3"), [serde_json::json!([]), serde_json::json!(["r3"])]);
    }
}
