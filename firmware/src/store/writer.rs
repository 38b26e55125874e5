//! The store thread: drains the queue, writes each batch in one
//! transaction (group commit), holds and retries a batch while the disk is
//! full or failing, answers requests once what they depend on is committed,
//! and announces committed events live.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use tokio::sync::mpsc;

use super::apply::apply;
use super::{CheckHistory, JobRow, Shared, StoreError, StoreMsg};

/// Most messages written in one transaction.
const MAX_BATCH: usize = 1024;

/// Whether a write failed for want of disk (full, or failing): worth keeping
/// the changes and trying again, unlike a change SQLite refuses.
fn is_disk_trouble(e: &rusqlite::Error) -> bool {
    // `SQLITE_FULL` ("database or disk is full") is `DiskFull`; it also
    // covers a database at its page limit.
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure)
    )
}

/// Pause between attempts to commit a batch while the disk is in trouble.
const RETRY_DELAY: Duration = if cfg!(test) {
    Duration::from_millis(20)
} else {
    Duration::from_secs(1)
};

/// The store thread's loop: takes what is queued, up to [`MAX_BATCH`] at a
/// time, and commits it; ends once every handle is dropped.
pub(super) fn writer(
    mut conn: Connection,
    mut rx: mpsc::Receiver<StoreMsg>,
    path: PathBuf,
    boot_id: String,
    shared: &Shared,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut flushes = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(m) = next {
            match m {
                StoreMsg::Flush(f) => flushes.push(f),
                StoreMsg::NextSession(reply) => {
                    flush_batch(&mut conn, &mut batch, &boot_id, &path, shared);
                    match next_session(&conn) {
                        Ok(n) => {
                            let _ = reply.send(n);
                        }
                        Err(e) => tracing::error!("counting the fleet link session: {e}"),
                    }
                }
                StoreMsg::JobStatus(name, reply) => {
                    // Earlier writes of the same job are in `batch`: commit
                    // them first so the answer is current.
                    flush_batch(&mut conn, &mut batch, &boot_id, &path, shared);
                    let _ = reply.send(job_row(&conn, &name).map_err(|source| {
                        let e = StoreError::Query {
                            path: path.clone(),
                            what: "an outbound job",
                            source,
                        };
                        tracing::error!("reading job {name}: {e}");
                        e
                    }));
                }
                m => batch.push(m),
            }
            next = if batch.len() < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        flush_batch(&mut conn, &mut batch, &boot_id, &path, shared);
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }
}

/// Commits `batch`. While the disk is full or failing the batch is kept and
/// retried (this thread blocks; senders wait once the queue is full) until
/// it commits: records are not thrown away over a full partition.
fn flush_batch(
    conn: &mut Connection,
    batch: &mut Vec<StoreMsg>,
    boot_id: &str,
    path: &Path,
    shared: &Shared,
) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len();
    let mut retrying = false;
    loop {
        match write_batch(conn, batch, boot_id, shared) {
            Ok(answers) => {
                if retrying {
                    shared.disk_trouble.store(false, Ordering::Relaxed);
                    tracing::info!(
                        db = %path.display(),
                        "the database is writable again; {n} held record change(s) committed"
                    );
                }
                if let Some(events) = shared.events.get() {
                    announce(events, batch);
                }
                for (msg, answer) in batch.drain(..).zip(answers) {
                    if let (StoreMsg::ProductCheck { reply, .. }, Some(h)) = (msg, answer) {
                        let _ = reply.send(h);
                    }
                }
                return;
            }
            Err(e) if is_disk_trouble(&e) => {
                if !retrying {
                    retrying = true;
                    shared.disk_trouble.store(true, Ordering::Relaxed);
                    tracing::error!(
                        db = %path.display(),
                        "the database cannot be written ({e}); holding {n} record change(s) and retrying every {}s until it can",
                        RETRY_DELAY.as_secs_f32()
                    );
                }
                std::thread::sleep(RETRY_DELAY);
            }
            // Keep serving: a failed batch is logged with the file it
            // concerns; the daemon must not stop taking calls over it.
            Err(e) => {
                shared.disk_trouble.store(false, Ordering::Relaxed);
                tracing::error!(db = %path.display(), "writing {n} record change(s) failed: {e}");
                batch.clear();
                return;
            }
        }
    }
}

/// Announces what was just committed to whoever listens live.
fn announce(events: &crate::events::Events, batch: &[StoreMsg]) {
    use serde_json::json;
    for m in batch {
        match m {
            StoreMsg::Alarm {
                at,
                code,
                severity,
                message,
            } => events.emit("alarm", *at, alarm_payload(code, severity, message)),
            StoreMsg::AlarmCleared { at, code } => {
                events.emit("alarm", *at, json!({"code": code, "cleared": true}));
            }
            StoreMsg::QueueLog {
                at,
                call_id,
                queue,
                agent,
                event,
                data,
            } => events.emit(
                "queue",
                *at,
                json!({"event": event, "queue": queue, "call_id": call_id, "agent": agent, "data": data}),
            ),
            StoreMsg::Outbox {
                stream,
                at,
                payload,
            } if stream == "notify" => events.emit("notify", *at, payload.clone()),
            StoreMsg::ProductCheck {
                call_id,
                code,
                caller,
                product_region,
                caller_region,
                diverted: true,
                at,
                ..
            } => events.emit(
                "lookup",
                *at,
                json!({"event": "possible_diversion", "call_id": call_id, "code": code, "caller": caller,
                       "product_region": product_region, "caller_region": caller_region}),
            ),
            _ => {}
        }
    }
}

/// An alarm as headquarters gets it, recorded (stream `alarm`) and live.
pub(super) fn alarm_payload(code: &str, severity: &str, message: &str) -> serde_json::Value {
    serde_json::json!({"code": code, "severity": severity, "message": message})
}

/// Adds one to the connection counter and returns it.
fn next_session(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'session' RETURNING CAST(value AS INTEGER)",
        [],
        |r| r.get(0),
    )
}

/// An outbound job's progress, `None` for a job never run.
fn job_row(conn: &Connection, name: &str) -> rusqlite::Result<Option<JobRow>> {
    conn.query_row(
        "SELECT name, number, attempts, status, result, last_call_id FROM outbound_jobs WHERE name = ?1",
        params![name],
        |r| {
            Ok(JobRow {
                name: r.get(0)?,
                number: r.get(1)?,
                attempts: r.get(2)?,
                status: r.get(3)?,
                result: r.get(4)?,
                last_call_id: r.get(5)?,
            })
        },
    )
    .optional()
}

/// Writes the batch in one transaction, leaving it in place; returns, per
/// message, the answer it is owed once committed. A message SQLite refuses
/// is skipped alone; a full or failing disk fails the whole batch.
fn write_batch(
    conn: &mut Connection,
    batch: &[StoreMsg],
    boot_id: &str,
    shared: &Shared,
) -> rusqlite::Result<Vec<Option<CheckHistory>>> {
    let mut answers = Vec::with_capacity(batch.len());
    let tx = conn.transaction()?;
    for msg in batch {
        // One savepoint per message: a message SQLite refuses is logged and
        // rolled back alone, the rest of the batch is kept.
        tx.execute_batch("SAVEPOINT msg")?;
        match apply(&tx, msg, boot_id) {
            Ok(answer) => {
                tx.execute_batch("RELEASE msg")?;
                answers.push(answer);
            }
            // SQLite may already have rolled the whole transaction back;
            // the caller retries the batch.
            Err(e) if is_disk_trouble(&e) => return Err(e),
            Err(e) => {
                tracing::error!(
                    what = msg.kind(),
                    "a record change was refused and skipped: {e}"
                );
                tx.execute_batch("ROLLBACK TO msg; RELEASE msg")?;
                answers.push(None);
            }
        }
    }
    #[cfg(test)]
    if shared
        .fail_commits
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("injected: database or disk is full".into()),
        ));
    }
    #[cfg(not(test))]
    let _ = shared;
    tx.commit()?;
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::*;
    use crate::store::*;
    use std::time::Duration;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn a_refused_message_does_not_take_its_batch_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        let vm = || StoreMsg::Voicemail {
            id: "v1".into(),
            call_id: "c0".into(),
            mailbox: "sales".into(),
            caller: None,
            at: stamp(1),
            duration_ms: 1000,
            file: "x.wav".into(),
        };
        // The second voicemail breaks the UNIQUE id: it alone is skipped.
        h.send(vm()).await;
        h.send(vm()).await;
        h.send(StoreMsg::CallStarted(CallStart {
            id: "c1".into(),
            direction: Direction::Inbound,
            trunk_line: Some("t1".into()),
            station: None,
            caller_name: None,
            caller: None,
            dialled: None,
            at: stamp(2),
        }))
        .await;
        drop(h);
        store.close().await;
        assert_eq!(
            read_records(dir.path(), &RecordQuery::default())
                .unwrap()
                .len(),
            1
        );
        assert_eq!(read_table(dir.path(), "voicemail").unwrap().len(), 1);
        assert_eq!(read_table(dir.path(), "outbox").unwrap().len(), 1);
    }

    #[tokio::test]
    async fn committed_alarms_and_queue_events_are_announced_live() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        let events = crate::events::Events::new();
        let mut rx = events.subscribe();
        h.set_events(events);
        h.send(StoreMsg::Alarm {
            at: stamp(1),
            code: "disk_full".into(),
            severity: "critical",
            message: "full".into(),
        })
        .await;
        h.send(StoreMsg::QueueLog {
            at: stamp(2),
            call_id: Some("a".into()),
            queue: Some("sales".into()),
            agent: None,
            event: "ENTERQUEUE".into(),
            data: serde_json::json!({}),
        })
        .await;
        h.flush().await.unwrap();
        let a = rx.recv().await.unwrap();
        assert_eq!(
            (a.kind, a.data["code"].as_str()),
            ("alarm", Some("disk_full"))
        );
        let q = rx.recv().await.unwrap();
        assert_eq!(
            (q.kind, q.data["event"].as_str()),
            ("queue", Some("ENTERQUEUE"))
        );
        drop(h);
        store.close().await;
    }

    #[tokio::test]
    async fn a_full_disk_holds_the_batch_until_it_commits_and_flush_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        // Every commit fails until the "disk" is freed below.
        h.fail_next_commits(usize::MAX);
        h.send(call("a", 1000)).await;
        h.send(call("b", 2000)).await;
        let (tx, mut answered) = oneshot::channel();
        h.send(StoreMsg::ProductCheck {
            call_id: "a".into(),
            code: "P1".into(),
            caller: None,
            found: true,
            product_region: None,
            caller_region: None,
            diverted: false,
            at: stamp(1500),
            reply: tx,
        })
        .await;
        let flush = tokio::spawn({
            let h = h.clone();
            async move { h.flush().await }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !h.disk_trouble() {
            assert!(std::time::Instant::now() < deadline, "no disk trouble seen");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Several retries later: nothing committed, nothing answered.
        tokio::time::sleep(RETRY_DELAY * 5).await;
        assert!(h.disk_trouble());
        assert!(!flush.is_finished(), "flush answered before the commit");
        assert!(answered.try_recv().is_err());
        assert!(
            read_records(dir.path(), &RecordQuery::default())
                .unwrap()
                .is_empty()
        );
        // Space again: the held batch commits, whole, then flush answers.
        h.fail_next_commits(0);
        flush.await.unwrap().unwrap();
        assert!(!h.disk_trouble());
        let ids: Vec<_> = read_records(dir.path(), &RecordQuery::default())
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(read_table(dir.path(), "product_checks").unwrap().len(), 1);
        assert_eq!(
            answered.try_recv().unwrap(),
            CheckHistory {
                earlier: 0,
                first_ms: None
            }
        );
        drop(h);
        store.close().await;
    }

    #[tokio::test]
    async fn a_couple_of_failed_commits_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        h.fail_next_commits(2);
        for i in 0..50 {
            h.send(call(&format!("c{i:02}"), i)).await;
        }
        h.flush().await.unwrap();
        assert!(!h.disk_trouble());
        assert_eq!(
            read_records(dir.path(), &RecordQuery::default())
                .unwrap()
                .len(),
            50
        );
        drop(h);
        store.close().await;
    }
}
