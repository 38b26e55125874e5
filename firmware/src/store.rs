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
    // v2: what the IVR did on each call, and the records it produces
    "ALTER TABLE calls ADD COLUMN flow TEXT;
    ALTER TABLE calls ADD COLUMN language TEXT;
    ALTER TABLE calls ADD COLUMN ivr_path TEXT;
    ALTER TABLE calls ADD COLUMN ivr_vars TEXT;
    ALTER TABLE calls ADD COLUMN outcome TEXT;
    ALTER TABLE calls ADD COLUMN survey_score INTEGER;
    ALTER TABLE calls ADD COLUMN connected_to TEXT;
    ALTER TABLE calls ADD COLUMN job TEXT;
    CREATE TABLE voicemail (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        call_id      TEXT NOT NULL,
        mailbox      TEXT NOT NULL,
        caller       TEXT,
        at_ms        INTEGER NOT NULL,
        duration_ms  INTEGER NOT NULL,
        file         TEXT NOT NULL
    );
    CREATE TABLE product_checks (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        call_id         TEXT NOT NULL,
        code            TEXT NOT NULL,
        caller          TEXT,
        at_ms           INTEGER NOT NULL,
        found           INTEGER NOT NULL,
        product_region  TEXT,
        caller_region   TEXT,
        diverted        INTEGER NOT NULL
    );
    CREATE INDEX product_checks_code ON product_checks(code);
    CREATE TABLE callbacks (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        call_id  TEXT NOT NULL,
        number   TEXT NOT NULL,
        queue    TEXT NOT NULL,
        at_ms    INTEGER NOT NULL,
        status   TEXT NOT NULL
    );
    CREATE TABLE outbox (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        stream   TEXT NOT NULL,
        at_ms    INTEGER NOT NULL,
        payload  TEXT NOT NULL
    );
    CREATE TABLE outbound_jobs (
        name          TEXT PRIMARY KEY,
        number        TEXT NOT NULL,
        attempts      INTEGER NOT NULL,
        status        TEXT NOT NULL,
        result        TEXT,
        last_call_id  TEXT,
        updated_ms    INTEGER NOT NULL
    );",
    // v3: queues (ACD): what happened to a call in its queue, and the queue
    // event log for headquarters
    "ALTER TABLE calls ADD COLUMN queue TEXT;
    ALTER TABLE calls ADD COLUMN queue_wait_ms INTEGER;
    ALTER TABLE calls ADD COLUMN agent TEXT;
    ALTER TABLE calls ADD COLUMN talk_ms INTEGER;
    ALTER TABLE calls ADD COLUMN queue_exit TEXT;
    ALTER TABLE calls ADD COLUMN wrap_code TEXT;
    CREATE TABLE queue_log (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms    INTEGER NOT NULL,
        call_id  TEXT,
        queue    TEXT,
        agent    TEXT,
        event    TEXT NOT NULL,
        data     TEXT NOT NULL
    );",
];

/// Tables `callboxd records --table` can show, besides `calls`.
pub const TABLES: &[&str] = &[
    "voicemail",
    "product_checks",
    "callbacks",
    "outbox",
    "outbound_jobs",
    "queue_log",
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
    /// The box called out (an outbound voice job).
    Outbound,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
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
    /// The box refused the call (line not configured for inbound calls, or
    /// a blocked caller).
    Rejected,
    /// An outbound call nobody answered (or the far end was busy).
    NoAnswer,
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
            Disposition::NoAnswer => "no_answer",
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

/// What the IVR did on a call.
#[derive(Debug, Clone, Default)]
pub struct CallFlow {
    /// The call.
    pub id: String,
    /// Start node.
    pub flow: Option<String>,
    /// Language spoken.
    pub language: Option<String>,
    /// Nodes and choices.
    pub path: Vec<String>,
    /// Recordable variables.
    pub vars: std::collections::BTreeMap<String, String>,
    /// How the flow ended.
    pub outcome: Option<String>,
    /// Survey score.
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
    /// How the call left the queue: `connected`, `abandoned`, `timeout`,
    /// `full`, `empty`.
    pub queue_exit: Option<String>,
}

/// Earlier checks of a product code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckHistory {
    /// Checks of the code before this one (genuine codes only).
    pub earlier: i64,
    /// When it was first checked.
    pub first_ms: Option<i64>,
}

/// An outbound job's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// Job name.
    pub name: String,
    /// Number called.
    pub number: String,
    /// Attempts so far.
    pub attempts: u32,
    /// `pending`, `done` or `failed`.
    pub status: String,
    /// Result of the last attempt.
    pub result: Option<String>,
    /// Last call placed.
    pub last_call_id: Option<String>,
}

/// What the store is asked to do.
#[derive(Debug)]
pub enum StoreMsg {
    /// Store what the IVR did (sent before `CallEnded`).
    CallFlow(CallFlow),
    /// An event for headquarters.
    Outbox {
        /// Stream (`notify`, `lookup`, `voicemail`, `callback`, `job`).
        stream: String,
        /// When.
        at: Stamp,
        /// JSON body.
        payload: serde_json::Value,
    },
    /// Record a product check; replies with the code's earlier checks.
    ProductCheck {
        /// The call.
        call_id: String,
        /// Code keyed.
        code: String,
        /// Caller.
        caller: Option<String>,
        /// Whether the code is registered.
        found: bool,
        /// Region the product was shipped to.
        product_region: Option<String>,
        /// Region of the caller's number.
        caller_region: Option<String>,
        /// Checked from another region's number.
        diverted: bool,
        /// When.
        at: Stamp,
        /// Earlier checks, answered once committed.
        reply: oneshot::Sender<CheckHistory>,
    },
    /// A voicemail message was saved.
    Voicemail {
        /// Message id.
        id: String,
        /// The call.
        call_id: String,
        /// Mailbox.
        mailbox: String,
        /// Caller.
        caller: Option<String>,
        /// When recording started.
        at: Stamp,
        /// Length.
        duration_ms: i64,
        /// WAV file.
        file: String,
    },
    /// A caller asked to be called back.
    Callback {
        /// The call.
        call_id: String,
        /// Number to call back.
        number: String,
        /// Queue.
        queue: String,
        /// When.
        at: Stamp,
    },
    /// An outbound job's progress.
    Job(JobRow, Stamp),
    /// Reads an outbound job's progress.
    JobStatus(String, oneshot::Sender<Result<Option<JobRow>, String>>),
    /// A queue event.
    QueueLog {
        /// When.
        at: Stamp,
        /// The call, if the event concerns one.
        call_id: Option<String>,
        /// Queue.
        queue: Option<String>,
        /// Agent.
        agent: Option<String>,
        /// `ENTERQUEUE`, `OFFER`, `CONNECT`, `ABANDON`…
        event: String,
        /// Details.
        data: serde_json::Value,
    },
    /// An agent's wrap-up code for a call.
    WrapCode {
        /// The call.
        call_id: String,
        /// The code keyed.
        code: String,
    },
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

/// Waits for the store thread's answer to a request. The wait runs on the
/// blocking pool: under a paused (virtual-time) runtime that keeps tokio
/// from jumping the clock ahead while the answer is being written, so a
/// simulated call's timing does not depend on disk speed. `None` if the
/// store has stopped.
pub async fn reply<T: Send + 'static>(rx: oneshot::Receiver<T>) -> Option<T> {
    tokio::task::spawn_blocking(move || rx.blocking_recv().ok())
        .await
        .ok()
        .flatten()
}

impl StoreMsg {
    /// The message's kind, for logs.
    fn kind(&self) -> &'static str {
        match self {
            StoreMsg::CallStarted(_) => "call started",
            StoreMsg::CallAnswered { .. } => "call answered",
            StoreMsg::CallEnded(_) => "call ended",
            StoreMsg::CallFlow(_) => "call flow",
            StoreMsg::Outbox { .. } => "outbox event",
            StoreMsg::ProductCheck { .. } => "product check",
            StoreMsg::Voicemail { .. } => "voicemail",
            StoreMsg::Callback { .. } => "callback",
            StoreMsg::Job(..) => "outbound job",
            StoreMsg::JobStatus(..) => "job status",
            StoreMsg::QueueLog { .. } => "queue event",
            StoreMsg::WrapCode { .. } => "wrap-up code",
            StoreMsg::Flush(_) => "flush",
        }
    }
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
                StoreMsg::JobStatus(name, reply) => {
                    // Earlier writes of the same job are in `batch`: commit
                    // them first so the answer is current.
                    flush_batch(&mut conn, &mut batch, &boot_id, &path);
                    let _ = reply.send(job_row(&conn, &name).map_err(|e| {
                        tracing::error!("reading job {name}: {e}");
                        e.to_string()
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
        flush_batch(&mut conn, &mut batch, &boot_id, &path);
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }
}

fn flush_batch(conn: &mut Connection, batch: &mut Vec<StoreMsg>, boot_id: &str, path: &Path) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len();
    match write_batch(conn, batch, boot_id) {
        Ok(replies) => {
            for (tx, h) in replies {
                let _ = tx.send(h);
            }
        }
        // Keep serving: a failed batch is logged with the file it
        // concerns; the daemon must not stop taking calls over it.
        Err(e) => tracing::error!(db = %path.display(), "writing {n} record change(s) failed: {e}"),
    }
    batch.clear();
}

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

type Replies = Vec<(oneshot::Sender<CheckHistory>, CheckHistory)>;

fn outbox(
    tx: &rusqlite::Transaction<'_>,
    stream: &str,
    at: &Stamp,
    payload: &serde_json::Value,
) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO outbox (stream, at_ms, payload) VALUES (?1, ?2, ?3)")?
        .execute(params![stream, at.wall_ms, payload.to_string()])?;
    Ok(())
}

/// SQL of the call-record statements used on every call.
const START: &str =
    "INSERT INTO calls (id, direction, trunk_line, caller, dialled, started_ms, disposition,
                                clock_synced, boot_id, mono_start_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'in_progress', ?7, ?8, ?9)";
const ANSWER: &str = "UPDATE calls SET answered_ms = ?2 WHERE id = ?1";
const END: &str =
    "UPDATE calls SET ended_ms = ?2, mono_end_ms = ?3, disposition = ?4, hangup_cause = ?5,
                              hangup_side = ?6, clock_synced = clock_synced AND ?7
             WHERE id = ?1";

fn write_batch(
    conn: &mut Connection,
    batch: &mut Vec<StoreMsg>,
    boot_id: &str,
) -> rusqlite::Result<Replies> {
    let mut replies = Vec::new();
    let tx = conn.transaction()?;
    for msg in batch.drain(..) {
        // One savepoint per message: a message SQLite refuses is logged and
        // rolled back alone, the rest of the batch is kept.
        tx.execute_batch("SAVEPOINT msg")?;
        let what = msg.kind();
        match apply(&tx, msg, boot_id, &mut replies) {
            Ok(()) => tx.execute_batch("RELEASE msg")?,
            Err(e) => {
                tracing::error!(what, "a record change was refused and skipped: {e}");
                tx.execute_batch("ROLLBACK TO msg; RELEASE msg")?;
            }
        }
    }
    tx.commit()?;
    Ok(replies)
}

fn apply(
    tx: &rusqlite::Transaction<'_>,
    msg: StoreMsg,
    boot_id: &str,
    replies: &mut Replies,
) -> rusqlite::Result<()> {
    match msg {
        StoreMsg::CallStarted(c) => {
            tx.prepare_cached(START)?.execute(params![
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
            tx.prepare_cached(ANSWER)?
                .execute(params![id, at.wall_ms])?;
        }
        StoreMsg::CallEnded(e) => {
            tx.prepare_cached(END)?.execute(params![
                e.id,
                e.at.wall_ms,
                e.at.mono_ms,
                e.disposition.as_str(),
                e.cause.as_str(),
                e.side.as_str(),
                e.at.synced
            ])?;
        }
        StoreMsg::Flush(_) | StoreMsg::JobStatus(..) => {}
        StoreMsg::CallFlow(f) => {
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
        }
        StoreMsg::QueueLog {
            at,
            call_id,
            queue,
            agent,
            event,
            data,
        } => {
            tx.prepare_cached(
                "INSERT INTO queue_log (at_ms, call_id, queue, agent, event, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![at.wall_ms, call_id, queue, agent, event, data.to_string()])?;
        }
        StoreMsg::WrapCode { call_id, code } => {
            tx.prepare_cached("UPDATE calls SET wrap_code = ?2 WHERE id = ?1")?
                .execute(params![call_id, code])?;
        }
        StoreMsg::Outbox {
            stream,
            at,
            payload,
        } => outbox(tx, &stream, &at, &payload)?,
        StoreMsg::ProductCheck {
            call_id,
            code,
            caller,
            found,
            product_region,
            caller_region,
            diverted,
            at,
            reply,
        } => {
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
                outbox(
                    tx,
                    "lookup",
                    &at,
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
            replies.push((reply, CheckHistory { earlier, first_ms }));
        }
        StoreMsg::Voicemail {
            id,
            call_id,
            mailbox,
            caller,
            at,
            duration_ms,
            file,
        } => {
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
            outbox(
                tx,
                "voicemail",
                &at,
                &serde_json::json!({"id": id, "call_id": call_id, "mailbox": mailbox, "caller": caller, "duration_ms": duration_ms}),
            )?;
        }
        StoreMsg::Callback {
            call_id,
            number,
            queue,
            at,
        } => {
            tx.prepare_cached(
                "INSERT INTO callbacks (call_id, number, queue, at_ms, status) VALUES (?1, ?2, ?3, ?4, 'pending')",
            )?
            .execute(params![call_id, number, queue, at.wall_ms])?;
            outbox(
                tx,
                "callback",
                &at,
                &serde_json::json!({"call_id": call_id, "number": number, "queue": queue}),
            )?;
        }
        StoreMsg::Job(j, at) => {
            tx.prepare_cached(
                "INSERT INTO outbound_jobs (name, number, attempts, status, result, last_call_id, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(name) DO UPDATE SET number = ?2, attempts = ?3, status = ?4, result = ?5,
                                                 last_call_id = ?6, updated_ms = ?7",
            )?
            .execute(params![j.name, j.number, j.attempts, j.status, j.result, j.last_call_id, at.wall_ms])?;
            if j.status != "pending" {
                outbox(
                    tx,
                    "job",
                    &at,
                    &serde_json::json!({"job": j.name, "number": j.number, "attempts": j.attempts, "status": j.status, "result": j.result}),
                )?;
            }
        }
    }
    Ok(())
}

/// A call record as exported (`callboxd records --json`). Field names are a
/// contract with headquarters: add fields, never rename them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CallRecord {
    /// Stable unique id (UUIDv7).
    pub id: String,
    /// `inbound` or `outbound`.
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
                    disposition, hangup_cause, hangup_side, clock_synced, boot_id, mono_start_ms,
                    flow, language, ivr_path, ivr_vars, outcome, survey_score, connected_to, job,
                    queue, queue_wait_ms, agent, talk_ms, queue_exit, wrap_code
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
            })
        })
        .map_err(sq)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sq)
}

/// Rows of one of the other [`TABLES`] as JSON objects, oldest first.
pub fn read_table(data_dir: &Path, table: &str) -> Result<Vec<serde_json::Value>, StoreError> {
    let path = data_dir.join(DB_FILE);
    if !path.is_file() {
        return Err(StoreError::Missing(path));
    }
    let sq = |source| StoreError::Sqlite {
        path: path.clone(),
        source,
    };
    // Only names from the fixed list reach the SQL text.
    let Some(table) = TABLES.iter().find(|t| **t == table) else {
        return Ok(Vec::new());
    };
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sq)?;
    check_version(&conn, &path)?;
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
                        if n == "payload" || n == "data" {
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
            trunk_line: "t1".into(),
            caller: None,
            dialled: None,
            at: stamp(2),
        }))
        .await;
        drop(h);
        store.close().await;
        assert_eq!(read_records(dir.path()).unwrap().len(), 1);
        assert_eq!(read_table(dir.path(), "voicemail").unwrap().len(), 1);
        assert_eq!(read_table(dir.path(), "outbox").unwrap().len(), 1);
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
