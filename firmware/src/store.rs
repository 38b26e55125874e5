//! The record store: one thread that owns the SQLite database.
//!
//! Call actors send [`StoreMsg`]s over a bounded channel and never wait on
//! the disk. The store thread drains whatever is queued and writes it in one
//! transaction (group commit): the SD card sees one write burst per batch,
//! not one per event, and `synchronous=FULL` makes each committed batch
//! survive a power cut.
//!
//! A call's record is inserted when the call arrives and completed when it
//! ends, so a call that was in progress when the box lost power is still
//! there after restart, marked `interrupted`.
//!
//! The schema is versioned with SQLite's `user_version`; migrations in
//! [`MIGRATIONS`] run forward at open. A database from newer firmware is
//! refused, never rewritten.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::clock::{Stamp, rfc3339_ms};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "callbox.db";
/// Messages queued towards the store before senders wait.
const QUEUE_DEPTH: usize = 4096;
/// Most messages written in one transaction.
const MAX_BATCH: usize = 1024;

/// Schema migrations; entry `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // v1: call records
    "CREATE TABLE calls (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        id             TEXT NOT NULL UNIQUE,
        direction      TEXT NOT NULL,
        trunk_line     TEXT,
        caller         TEXT,
        dialled        TEXT,
        started_ms     INTEGER NOT NULL,
        answered_ms    INTEGER,
        ended_ms       INTEGER,
        disposition    TEXT NOT NULL,
        hangup_cause   TEXT,
        hangup_side    TEXT,
        clock_synced   INTEGER NOT NULL,
        boot_id        TEXT NOT NULL,
        mono_start_ms  INTEGER NOT NULL,
        mono_end_ms    INTEGER
    );
    CREATE INDEX calls_started ON calls(started_ms);",
];

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory cannot be used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite refused.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The database was written by newer firmware.
    #[error(
        "database {path} has schema version {found}, newer than this firmware's {supported}; refusing to touch it (install newer firmware or move the file aside)"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Newest version this firmware knows.
        supported: i64,
    },
    /// No database where one was expected.
    #[error("no call database at {0}")]
    Missing(PathBuf),
    /// The store thread is gone.
    #[error("the store has stopped")]
    Stopped,
}

/// Direction of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A caller reached the box.
    Inbound,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
        }
    }
}

/// How a call ended, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Still going (only seen while the call lasts).
    InProgress,
    /// The box answered the call.
    Answered,
    /// The caller hung up before the box answered.
    Abandoned,
    /// The box refused the call (line not configured for inbound calls).
    Rejected,
    /// The line failed before the call could be answered.
    Failed,
    /// The box stopped without ending the call (power cut, crash); found so
    /// at the next start.
    Interrupted,
}

impl Disposition {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::InProgress => "in_progress",
            Disposition::Answered => "answered",
            Disposition::Abandoned => "abandoned",
            Disposition::Rejected => "rejected",
            Disposition::Failed => "failed",
            Disposition::Interrupted => "interrupted",
        }
    }
}

/// Who ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The caller.
    Caller,
    /// The box, as the call flow says.
    Box,
    /// The system: shutdown or line failure.
    System,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Caller => "caller",
            Side::Box => "box",
            Side::System => "system",
        }
    }
}

/// A call arrived.
#[derive(Debug, Clone)]
pub struct CallStart {
    /// Stable unique id (UUIDv7, time-ordered).
    pub id: String,
    /// Direction.
    pub direction: Direction,
    /// Trunk it arrived on.
    pub trunk_line: String,
    /// Calling number.
    pub caller: Option<String>,
    /// Dialled number.
    pub dialled: Option<String>,
    /// When.
    pub at: Stamp,
}

/// A call ended.
#[derive(Debug, Clone)]
pub struct CallEnd {
    /// The call.
    pub id: String,
    /// When.
    pub at: Stamp,
    /// Outcome.
    pub disposition: Disposition,
    /// Why it ended.
    pub cause: callbox_hal::HangupCause,
    /// Who ended it.
    pub side: Side,
}

/// What the store is asked to do.
#[derive(Debug)]
pub enum StoreMsg {
    /// Insert a call record.
    CallStarted(CallStart),
    /// Mark a call answered.
    CallAnswered {
        /// The call.
        id: String,
        /// When.
        at: Stamp,
    },
    /// Complete a call record.
    CallEnded(CallEnd),
    /// Reply once everything queued before this is committed.
    Flush(oneshot::Sender<()>),
}

/// Cheap handle for sending to the store.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<StoreMsg>,
}

impl StoreHandle {
    /// Queues a message. Waits only when the queue is full.
    pub async fn send(&self, msg: StoreMsg) {
        if self.tx.send(msg).await.is_err() {
            tracing::error!("record lost: the store has stopped");
        }
    }

    /// Waits until everything queued so far is on disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(StoreMsg::Flush(tx))
            .await
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)
    }
}

/// The store actor: owns the thread.
#[derive(Debug)]
pub struct Store {
    handle: StoreHandle,
    thread: JoinHandle<()>,
}

/// What opening the store found.
#[derive(Debug, Clone, Copy)]
pub struct OpenReport {
    /// Calls found in progress from a previous run and marked interrupted.
    pub interrupted: usize,
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir` and starts the
    /// store thread. Errors are reported here, before any call is taken.
    /// `boot_id` is stamped on every record written in this run.
    pub fn open(data_dir: &Path, boot_id: &str) -> Result<(Store, OpenReport), StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let sq = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(sq)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sq)?;
        // The version check comes before anything that writes (switching to
        // WAL rewrites the header): a newer firmware's file stays untouched.
        check_version(&conn, &path)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sq)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sq)?;
        migrate(&mut conn, &path)?;
        let interrupted = conn
            .execute(
                "UPDATE calls SET disposition = 'interrupted' WHERE disposition = 'in_progress'",
                [],
            )
            .map_err(sq)?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "calls left in progress by the previous run marked interrupted"
            );
        }
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn({
                let boot_id = boot_id.to_string();
                move || writer(conn, rx, path, boot_id)
            })
            .map_err(|source| StoreError::DataDir {
                path: data_dir.to_path_buf(),
                source,
            })?;
        Ok((
            Store {
                handle: StoreHandle { tx },
                thread,
            },
            OpenReport { interrupted },
        ))
    }

    /// A handle for actors.
    pub fn handle(&self) -> StoreHandle {
        self.handle.clone()
    }

    /// Commits everything queued and stops the thread.
    pub async fn close(self) {
        let Store { handle, thread } = self;
        if let Err(e) = handle.flush().await {
            tracing::error!("closing the store: {e}");
        }
        drop(handle);
        // The thread exits once every handle is dropped; actors have finished
        // by now, so this only waits for the last commit.
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// Reads the schema version, refusing a database from newer firmware.
fn check_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported,
        });
    }
    Ok(version)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sq = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let version = check_version(conn, path)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(sq)?;
        tx.execute_batch(sql).map_err(sq)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(sq)?;
        tx.commit().map_err(sq)?;
        tracing::info!(version = i + 1, "database schema migrated");
    }
    Ok(())
}

fn writer(mut conn: Connection, mut rx: mpsc::Receiver<StoreMsg>, path: PathBuf, boot_id: String) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut flushes = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(m) = next {
            match m {
                StoreMsg::Flush(f) => flushes.push(f),
                m => batch.push(m),
            }
            next = if batch.len() < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if let Err(e) = write_batch(&mut conn, &batch, &boot_id) {
            // Keep serving: a failed batch is logged with the file it
            // concerns; the daemon must not stop taking calls over it.
            tracing::error!(db = %path.display(), "writing {} record change(s) failed: {e}", batch.len());
        }
        batch.clear();
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }
}

fn write_batch(conn: &mut Connection, batch: &[StoreMsg], boot_id: &str) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut start = tx.prepare_cached(
            "INSERT INTO calls (id, direction, trunk_line, caller, dialled, started_ms, disposition,
                                clock_synced, boot_id, mono_start_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'in_progress', ?7, ?8, ?9)",
        )?;
        let mut answer = tx.prepare_cached("UPDATE calls SET answered_ms = ?2 WHERE id = ?1")?;
        let mut end = tx.prepare_cached(
            "UPDATE calls SET ended_ms = ?2, mono_end_ms = ?3, disposition = ?4, hangup_cause = ?5,
                              hangup_side = ?6, clock_synced = clock_synced AND ?7
             WHERE id = ?1",
        )?;
        for msg in batch {
            match msg {
                StoreMsg::CallStarted(c) => {
                    start.execute(params![
                        c.id,
                        c.direction.as_str(),
                        c.trunk_line,
                        c.caller,
                        c.dialled,
                        c.at.wall_ms,
                        c.at.synced,
                        boot_id,
                        c.at.mono_ms
                    ])?;
                }
                StoreMsg::CallAnswered { id, at } => {
                    answer.execute(params![id, at.wall_ms])?;
                }
                StoreMsg::CallEnded(e) => {
                    end.execute(params![
                        e.id,
                        e.at.wall_ms,
                        e.at.mono_ms,
                        e.disposition.as_str(),
                        e.cause.as_str(),
                        e.side.as_str(),
                        e.at.synced
                    ])?;
                }
                StoreMsg::Flush(_) => {}
            }
        }
    }
    tx.commit()
}

/// A call record as exported (`callboxd records --json`). Field names are a
/// contract with headquarters: add fields, never rename them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CallRecord {
    /// Stable unique id (UUIDv7).
    pub id: String,
    /// `inbound`.
    pub direction: String,
    /// Trunk line id.
    pub trunk_line: Option<String>,
    /// Calling number.
    pub caller: Option<String>,
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
}

/// Reads stored call records, oldest first, without disturbing a running
/// daemon.
pub fn read_records(data_dir: &Path) -> Result<Vec<CallRecord>, StoreError> {
    let path = data_dir.join(DB_FILE);
    if !path.is_file() {
        return Err(StoreError::Missing(path));
    }
    let sq = |source| StoreError::Sqlite {
        path: path.clone(),
        source,
    };
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sq)?;
    check_version(&conn, &path)?;
    let has_calls: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='calls'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sq)?;
    if has_calls.is_none() {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare(
            "SELECT id, direction, trunk_line, caller, dialled, started_ms, answered_ms, ended_ms,
                    disposition, hangup_cause, hangup_side, clock_synced, boot_id, mono_start_ms
             FROM calls ORDER BY seq",
        )
        .map_err(sq)?;
    let rows = stmt
        .query_map([], |r| {
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
            })
        })
        .map_err(sq)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbox_hal::HangupCause;

    fn stamp(ms: i64) -> Stamp {
        Stamp {
            wall_ms: ms,
            mono_ms: ms,
            synced: true,
        }
    }

    #[tokio::test]
    async fn records_survive_close_and_in_progress_calls_become_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        for (id, end) in [("a", true), ("b", false)] {
            h.send(StoreMsg::CallStarted(CallStart {
                id: id.into(),
                direction: Direction::Inbound,
                trunk_line: "t1".into(),
                caller: Some("1001".into()),
                dialled: None,
                at: stamp(1000),
            }))
            .await;
            h.send(StoreMsg::CallAnswered {
                id: id.into(),
                at: stamp(1500),
            })
            .await;
            if end {
                h.send(StoreMsg::CallEnded(CallEnd {
                    id: id.into(),
                    at: stamp(4000),
                    disposition: Disposition::Answered,
                    cause: HangupCause::Normal,
                    side: Side::Caller,
                }))
                .await;
            }
        }
        drop(h);
        store.close().await;
        let recs = read_records(dir.path()).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].disposition, "answered");
        assert_eq!(recs[0].duration_ms, Some(3000));
        assert_eq!(recs[0].answered_ms, Some(2500));
        assert_eq!(recs[1].disposition, "in_progress");
        let (store, report) = Store::open(dir.path(), "boot").unwrap();
        assert_eq!(report.interrupted, 1);
        store.close().await;
        assert_eq!(
            read_records(dir.path()).unwrap()[1].disposition,
            "interrupted"
        );
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let e = Store::open(dir.path(), "boot").unwrap_err();
        assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{e}");
        let conn = Connection::open(&path).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, 99);
    }
}
