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
//!
//! Nothing good is thrown away over a bad disk. A file SQLite cannot read at
//! open (not a database, or corrupt) is moved aside, never reset, and a fresh
//! database started ([`OpenReport::moved_aside`]). A batch that cannot be
//! committed because the disk is full or failing is held and retried every
//! second until it commits, while [`StoreHandle::disk_trouble`] tells the
//! recorder to stop writing audio; only a change SQLite itself refuses (a
//! constraint) is skipped, alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
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
    // v4: each call's event log, recordings (a call record points to its
    // recordings), alarms and directory lookups
    "CREATE TABLE call_events (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        call_id  TEXT NOT NULL,
        at_ms    INTEGER NOT NULL,
        mono_ms  INTEGER NOT NULL,
        event    TEXT NOT NULL,
        data     TEXT NOT NULL
    );
    CREATE INDEX call_events_call ON call_events(call_id);
    CREATE TABLE recordings (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        id              TEXT NOT NULL UNIQUE,
        call_id         TEXT NOT NULL,
        kind            TEXT NOT NULL,
        file            TEXT NOT NULL,
        format          TEXT NOT NULL,
        channels        INTEGER NOT NULL,
        started_ms      INTEGER NOT NULL,
        ended_ms        INTEGER,
        size            INTEGER,
        duration_ms     INTEGER,
        paused_ms       INTEGER NOT NULL DEFAULT 0,
        pauses          TEXT NOT NULL DEFAULT '[]',
        sha256          TEXT,
        encrypted       INTEGER NOT NULL DEFAULT 0,
        state           TEXT NOT NULL,
        delivered       INTEGER NOT NULL DEFAULT 0,
        deleted_ms      INTEGER,
        deleted_reason  TEXT,
        error           TEXT
    );
    CREATE INDEX recordings_call ON recordings(call_id);
    CREATE INDEX recordings_started ON recordings(started_ms);
    CREATE TABLE alarms (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms       INTEGER NOT NULL,
        code        TEXT NOT NULL,
        severity    TEXT NOT NULL,
        message     TEXT NOT NULL,
        cleared_ms  INTEGER
    );
    CREATE TABLE lookups (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        call_id  TEXT NOT NULL,
        at_ms    INTEGER NOT NULL,
        source   TEXT NOT NULL,
        key      TEXT NOT NULL,
        found    INTEGER NOT NULL
    );",
    // v5: the fleet link. Outbox records get a gap-free number per stream
    // (headquarters spots a missing one), the database an epoch (numbers
    // restart only with a new database) and a connection counter, and
    // recordings remember how far their upload got.
    "ALTER TABLE outbox ADD COLUMN stream_seq INTEGER;
    UPDATE outbox SET stream_seq =
        (SELECT COUNT(*) FROM outbox o WHERE o.stream = outbox.stream AND o.seq <= outbox.seq);
    CREATE TABLE outbox_streams (
        stream    TEXT PRIMARY KEY,
        next_seq  INTEGER NOT NULL
    );
    INSERT INTO outbox_streams (stream, next_seq)
        SELECT stream, MAX(stream_seq) + 1 FROM outbox GROUP BY stream;
    CREATE UNIQUE INDEX outbox_stream_seq ON outbox(stream, stream_seq);
    CREATE TABLE outbox_held (
        seq         INTEGER PRIMARY KEY,
        stream      TEXT NOT NULL,
        stream_seq  INTEGER,
        at_ms       INTEGER NOT NULL,
        payload     TEXT NOT NULL,
        held_ms     INTEGER NOT NULL,
        reason      TEXT NOT NULL
    );
    CREATE TABLE meta (
        key    TEXT PRIMARY KEY,
        value  TEXT NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('epoch', lower(hex(randomblob(8)))), ('session', '0');
    ALTER TABLE recordings ADD COLUMN upload_offset INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX calls_open ON calls(disposition) WHERE disposition = 'in_progress';",
];

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
    /// The database has an older schema that the daemon has not migrated yet.
    #[error(
        "database {path} has schema version {found}, older than this firmware's {supported}; start callboxd once to migrate it"
    )]
    TooOld {
        /// The database file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Version this firmware reads.
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

/// A recording ended (or was found cut short), as stored.
#[derive(Debug, Clone)]
pub struct RecordingEnd {
    /// Recording id (UUIDv7).
    pub id: String,
    /// The call recorded.
    pub call_id: String,
    /// `call` or `voicemail`.
    pub kind: String,
    /// Audio file, relative to the data directory (it may have been renamed
    /// since the start, e.g. once encrypted).
    pub file: String,
    /// Audio format, e.g. `wav`.
    pub format: String,
    /// Channels in the file.
    pub channels: u16,
    /// When recording started; known when the start row may be missing (a
    /// recording repaired after a crash), else `None`.
    pub started: Option<Stamp>,
    /// When recording ended.
    pub at: Stamp,
    /// `complete`, `interrupted` or `failed`.
    pub state: &'static str,
    /// File size, bytes.
    pub size: u64,
    /// Length of the audio, ms.
    pub duration_ms: u64,
    /// Total time paused, ms.
    pub paused_ms: u64,
    /// Pauses as `[start_ms, end_ms)` offsets in the recording.
    pub pauses: Vec<(u64, u64)>,
    /// SHA-256 of the file as stored, lowercase hex.
    pub sha256: Option<String>,
    /// Whether the file is encrypted at rest.
    pub encrypted: bool,
    /// What went wrong, for `interrupted` and `failed`.
    pub error: Option<String>,
}

impl RecordingEnd {
    /// An end with nothing known yet but who and when: no file, no audio.
    pub fn new(id: &str, call_id: &str, kind: &str, at: Stamp, state: &'static str) -> Self {
        RecordingEnd {
            id: id.to_string(),
            call_id: call_id.to_string(),
            kind: kind.to_string(),
            file: String::new(),
            format: String::new(),
            channels: 0,
            started: None,
            at,
            state,
            size: 0,
            duration_ms: 0,
            paused_ms: 0,
            pauses: Vec::new(),
            sha256: None,
            encrypted: false,
            error: None,
        }
    }
}

/// What the store is asked to do.
#[derive(Debug)]
pub enum StoreMsg {
    /// Store what the IVR did (sent before `CallEnded`).
    CallFlow(CallFlow),
    /// An event for headquarters.
    Outbox {
        /// Stream (`notify`, `lookup`, `voicemail`, `callback`, `job`,
        /// `acd_stats`; the store itself writes `recording` and `alarm`).
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
    /// An event in a call's life, for its event log (`records --call`).
    Event {
        /// The call.
        call_id: String,
        /// When.
        at: Stamp,
        /// `answered`, `digit`, `menu`, `queued`, `offered`, `bridged`,
        /// `transferred`, `recording_started`, `recording_paused`,
        /// `recording_resumed`, `recording_stopped`, `hangup`.
        event: &'static str,
        /// Details.
        data: serde_json::Value,
    },
    /// A recording started: its row is inserted in state `recording`.
    RecordingStarted {
        /// Recording id (UUIDv7).
        id: String,
        /// The call recorded.
        call_id: String,
        /// `call` or `voicemail`.
        kind: &'static str,
        /// Audio file, relative to the data directory.
        file: String,
        /// Audio format, e.g. `wav`.
        format: &'static str,
        /// Channels in the file.
        channels: u16,
        /// When.
        at: Stamp,
    },
    /// A recording ended: its row is completed (or inserted, if the start
    /// never reached the disk) and headquarters is told (outbox stream
    /// `recording`).
    RecordingFinished(RecordingEnd),
    /// At start-up, after the recorder's repairs: every recording still in
    /// state `recording` has no audio left and becomes `lost`.
    SweepOpenRecordings {
        /// When the sweep ran.
        at: Stamp,
    },
    /// A recording's file was deleted; the row is kept, state `deleted`.
    RecordingDeleted {
        /// Recording id.
        id: String,
        /// When.
        at: Stamp,
        /// Why (retention, operator…).
        reason: String,
    },
    /// An alarm was raised (also sent to headquarters, stream `alarm`).
    Alarm {
        /// When.
        at: Stamp,
        /// Stable code, e.g. `disk_full`.
        code: String,
        /// `warning` or `critical`.
        severity: &'static str,
        /// What an operator should know.
        message: String,
    },
    /// Every raised alarm with this code is cleared.
    AlarmCleared {
        /// When.
        at: Stamp,
        /// The alarm's code.
        code: String,
    },
    /// A directory lookup made during a call.
    Lookup {
        /// The call.
        call_id: String,
        /// When.
        at: Stamp,
        /// Table or service looked in.
        source: String,
        /// What was looked up.
        key: String,
        /// Whether it was found.
        found: bool,
    },
    /// The broker (or the collector) acknowledged these outbox rows: they
    /// leave the outbox.
    OutboxAcked {
        /// Outbox `seq`s.
        rows: Vec<i64>,
    },
    /// These outbox rows are too large for any message: headquarters got a
    /// marker in their place; they move to `outbox_held` for an operator.
    OutboxHeld {
        /// Outbox `seq`s.
        rows: Vec<i64>,
    },
    /// The collector acknowledged these records of one stream end to end.
    OutboxAckedByStream {
        /// Stream.
        stream: String,
        /// Per-stream sequence numbers.
        seqs: Vec<i64>,
    },
    /// A recording's upload got this far (bytes the broker acknowledged).
    UploadProgress {
        /// Recording id.
        id: String,
        /// Bytes from the start.
        offset: u64,
    },
    /// Headquarters confirmed it holds the whole recording.
    RecordingDelivered {
        /// Recording id.
        id: String,
    },
    /// Counts one more connection to headquarters; replies with the new
    /// count once committed (it goes in the presence message).
    NextSession(oneshot::Sender<i64>),
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
            StoreMsg::Event { .. } => "call event",
            StoreMsg::RecordingStarted { .. } => "recording started",
            StoreMsg::RecordingFinished(_) => "recording finished",
            StoreMsg::SweepOpenRecordings { .. } => "open recordings sweep",
            StoreMsg::RecordingDeleted { .. } => "recording deleted",
            StoreMsg::Alarm { .. } => "alarm",
            StoreMsg::AlarmCleared { .. } => "alarm cleared",
            StoreMsg::Lookup { .. } => "lookup",
            StoreMsg::OutboxAcked { .. } => "outbox acknowledgement",
            StoreMsg::OutboxAckedByStream { .. } => "end-to-end acknowledgement",
            StoreMsg::OutboxHeld { .. } => "outbox record held",
            StoreMsg::UploadProgress { .. } => "upload progress",
            StoreMsg::RecordingDelivered { .. } => "recording delivered",
            StoreMsg::NextSession(_) => "session count",
            StoreMsg::Flush(_) => "flush",
        }
    }
}

/// Cheap handle for sending to the store.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<StoreMsg>,
    shared: Arc<Shared>,
}

/// State the store thread shares with its handles.
#[derive(Debug, Default)]
struct Shared {
    /// Set while a batch cannot be committed because the disk is full or
    /// failing, and the store thread is retrying it.
    disk_trouble: AtomicBool,
    /// Where committed alarms, queue events, notify actions and diversion
    /// flags are announced live (set once the daemon has its channel).
    events: std::sync::OnceLock<crate::events::Events>,
    /// Test hook: this many commits fail as if the disk were full.
    #[cfg(test)]
    fail_commits: std::sync::atomic::AtomicUsize,
}

impl StoreHandle {
    /// Queues a message. Waits only when the queue is full.
    pub async fn send(&self, msg: StoreMsg) {
        if self.tx.send(msg).await.is_err() {
            tracing::error!("record lost: the store has stopped");
        }
    }

    /// Queues a message from a plain thread (the recorder's), blocking while
    /// the queue is full. Must not be called from async code: tokio panics
    /// there; use [`StoreHandle::send`].
    pub fn send_blocking(&self, msg: StoreMsg) {
        if self.tx.blocking_send(msg).is_err() {
            tracing::error!("record lost: the store has stopped");
        }
    }

    /// Queues a message if there is room now; hands it back if the queue
    /// is full (a thread that must never wait on the store keeps it for
    /// later). A stopped store drops it, logged.
    // The message comes back by value on purpose: boxing it would allocate
    // for every send of the common, successful case.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, msg: StoreMsg) -> Result<(), StoreMsg> {
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(m)) => Err(m),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!("record lost: the store has stopped");
                Ok(())
            }
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

    /// Whether the store is holding changes it cannot write because the
    /// disk is full or failing (it retries every second until they commit).
    /// Whoever writes to the same partition, the recorder first, should stop
    /// while this holds.
    pub fn disk_trouble(&self) -> bool {
        self.shared.disk_trouble.load(Ordering::Relaxed)
    }

    /// Announces committed alarms, queue events, notify actions and
    /// diversion flags on `events` from now on (once; later calls are
    /// ignored).
    pub fn set_events(&self, events: crate::events::Events) {
        let _ = self.shared.events.set(events);
    }

    /// Test hook: the next `n` commits fail with `SQLITE_FULL`.
    #[cfg(test)]
    fn fail_next_commits(&self, n: usize) {
        self.shared.fail_commits.store(n, Ordering::SeqCst);
    }
}

/// The store actor: owns the thread.
#[derive(Debug)]
pub struct Store {
    handle: StoreHandle,
    thread: JoinHandle<()>,
}

/// What opening the store found.
#[derive(Debug, Clone)]
pub struct OpenReport {
    /// Calls found in progress from a previous run and marked interrupted.
    pub interrupted: usize,
    /// The database file was unreadable (not a database, or corrupt) and was
    /// moved here, with its `-wal` and `-shm` files if any; the store started
    /// a fresh database in its place.
    pub moved_aside: Option<PathBuf>,
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir` and starts the
    /// store thread. Errors are reported here, before any call is taken.
    /// `boot_id` is stamped on every record written in this run.
    ///
    /// A file SQLite reports as not a database or corrupt is moved aside
    /// (never deleted or overwritten) and a fresh database is started; the
    /// report says where it went. A database from newer firmware is refused.
    pub fn open(data_dir: &Path, boot_id: &str) -> Result<(Store, OpenReport), StoreError> {
        // create_dir_all says only "File exists" about a file in the way.
        if data_dir.exists() && !data_dir.is_dir() {
            return Err(StoreError::DataDir {
                path: data_dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    "exists but is not a directory",
                ),
            });
        }
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let mut moved_aside = None;
        let (conn, interrupted) = match open_db(&path) {
            Err(StoreError::Sqlite { source, .. }) if is_corrupt(&source) => {
                let to = move_aside(&path)?;
                tracing::error!(
                    db = %path.display(),
                    moved_to = %to.display(),
                    "the database is unreadable ({source}); moved aside, starting a fresh one"
                );
                moved_aside = Some(to);
                open_db(&path)?
            }
            r => r?,
        };
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "calls left in progress by the previous run marked interrupted"
            );
        }
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn({
                let boot_id = boot_id.to_string();
                let shared = shared.clone();
                move || {
                    crate::priority::background();
                    writer(conn, rx, path, boot_id, &shared)
                }
            })
            .map_err(|source| StoreError::DataDir {
                path: data_dir.to_path_buf(),
                source,
            })?;
        Ok((
            Store {
                handle: StoreHandle { tx, shared },
                thread,
            },
            OpenReport {
                interrupted,
                moved_aside,
            },
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

/// Opens the database for writing, migrates it and marks calls left in
/// progress interrupted; returns the connection and how many were.
fn open_db(path: &Path) -> Result<(Connection, usize), StoreError> {
    let sq = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let mut conn = Connection::open(path).map_err(sq)?;
    // Until the file has proved usable, closing must not checkpoint a WAL
    // into it or delete the WAL: a refused (newer) or unreadable database
    // and its WAL are left exactly as found.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(sq)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sq)?;
    // The version check comes before anything that writes (switching to
    // WAL rewrites the header): a newer firmware's file stays untouched.
    check_version(&conn, path)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sq)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sq)?;
    migrate(&mut conn, path)?;
    let interrupted = conn
        .execute(
            "UPDATE calls SET disposition = 'interrupted' WHERE disposition = 'in_progress'",
            [],
        )
        .map_err(sq)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)
        .map_err(sq)?;
    Ok((conn, interrupted))
}

/// Whether SQLite says the file is not a database or is damaged.
fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

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

/// Renames the database (and its `-wal`, `-shm`) to
/// `callbox.db.corrupt-<unix ms>`, never over an existing file; returns the
/// database's new path.
fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |source| StoreError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| DB_FILE.to_string());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let companions = ["", "-wal", "-shm"];
    // A later suffix if any of the three names is taken.
    let mut stamp = now;
    let suffix = loop {
        let suffix = format!(".corrupt-{stamp}");
        if companions
            .iter()
            .all(|c| !dir.join(format!("{name}{c}{suffix}")).exists())
        {
            break suffix;
        }
        stamp += 1;
    };
    let target = dir.join(format!("{name}{suffix}"));
    for c in companions {
        let from = dir.join(format!("{name}{c}"));
        if from.exists() {
            let to = dir.join(format!("{name}{c}{suffix}"));
            std::fs::rename(&from, &to).map_err(io)?;
        }
    }
    Ok(target)
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
    let supported = MIGRATIONS.len() as i64;
    if version == supported {
        return Ok(());
    }
    // All steps in one transaction: a reader (`records`, `export`) opening the
    // file meanwhile sees the old schema or the new one, never a half-built
    // one, and a power cut mid-way leaves the old version to migrate again.
    let tx = conn.transaction().map_err(sq)?;
    for sql in &MIGRATIONS[version as usize..] {
        tx.execute_batch(sql).map_err(sq)?;
    }
    tx.pragma_update(None, "user_version", supported)
        .map_err(sq)?;
    tx.commit().map_err(sq)?;
    tracing::info!(from = version, to = supported, "database schema migrated");
    Ok(())
}

/// Pause between attempts to commit a batch while the disk is in trouble.
const RETRY_DELAY: Duration = if cfg!(test) {
    Duration::from_millis(20)
} else {
    Duration::from_secs(1)
};

fn writer(
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
fn alarm_payload(code: &str, severity: &str, message: &str) -> serde_json::Value {
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

fn outbox(
    tx: &rusqlite::Transaction<'_>,
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

/// A recording's row can reach the store after its call's end (the
/// recorder's messages queue apart from the call's): the call record
/// already sent lacks it, so it goes again, complete.
fn resend_if_ended(
    tx: &rusqlite::Transaction<'_>,
    call_id: &str,
    at: &Stamp,
) -> rusqlite::Result<()> {
    let ended: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM calls WHERE id = ?1 AND ended_ms IS NOT NULL)",
        )?
        .query_row(params![call_id], |r| r.get(0))?;
    if ended {
        outbox_call(tx, call_id, at, false)?;
    }
    Ok(())
}

/// Most events in one `call_events` record: a long call's log is split so
/// no message outgrows a broker's limit.
const EVENTS_PER_RECORD: usize = 200;

/// Puts a call's record (as `records --json` shows it) and its event log in
/// the outbox. Sent again when it changes after the call (a wrap-up code).
fn outbox_call(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    at: &Stamp,
    events: bool,
) -> rusqlite::Result<()> {
    let mut recs = query_records(
        tx,
        &RecordQuery {
            since_ms: None,
            call: Some(id.to_string()),
        },
    )?;
    let Some(mut rec) = recs.pop() else {
        return Ok(());
    };
    let evs = std::mem::take(&mut rec.events);
    outbox(
        tx,
        "cdr",
        at,
        &serde_json::to_value(&rec).unwrap_or_default(),
    )?;
    if events {
        let n = evs.len().div_ceil(EVENTS_PER_RECORD);
        for (part, chunk) in evs.chunks(EVENTS_PER_RECORD).enumerate() {
            outbox(
                tx,
                "call_events",
                at,
                &serde_json::json!({"call_id": id, "part": part + 1, "parts": n, "events": chunk}),
            )?;
        }
    }
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
const RECORDING_END: &str =
    "INSERT INTO recordings (id, call_id, kind, file, format, channels, started_ms, ended_ms, size,
                            duration_ms, paused_ms, pauses, sha256, encrypted, state, error)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
     ON CONFLICT(id) DO UPDATE SET file = excluded.file, state = excluded.state,
         ended_ms = excluded.ended_ms, size = excluded.size, duration_ms = excluded.duration_ms,
         paused_ms = excluded.paused_ms, pauses = excluded.pauses, sha256 = excluded.sha256,
         encrypted = excluded.encrypted, error = excluded.error";

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

fn apply(
    tx: &rusqlite::Transaction<'_>,
    msg: &StoreMsg,
    boot_id: &str,
) -> rusqlite::Result<Option<CheckHistory>> {
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
            outbox_call(tx, &e.id, &e.at, true)?;
        }
        StoreMsg::Flush(_) | StoreMsg::JobStatus(..) | StoreMsg::NextSession(_) => {}
        StoreMsg::OutboxAcked { rows } => {
            let mut del = tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
            for r in rows {
                del.execute(params![r])?;
            }
        }
        StoreMsg::OutboxHeld { rows } => {
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
        }
        StoreMsg::OutboxAckedByStream { stream, seqs } => {
            let mut del =
                tx.prepare_cached("DELETE FROM outbox WHERE stream = ?1 AND stream_seq = ?2")?;
            for s in seqs {
                del.execute(params![stream, s])?;
            }
        }
        StoreMsg::UploadProgress { id, offset } => {
            tx.prepare_cached(
                "UPDATE recordings SET upload_offset = MAX(upload_offset, ?2) WHERE id = ?1",
            )?
            .execute(params![id, i64::try_from(*offset).unwrap_or(i64::MAX)])?;
        }
        StoreMsg::RecordingDelivered { id } => {
            tx.prepare_cached(
                "UPDATE recordings SET delivered = 1, upload_offset = COALESCE(size, upload_offset) WHERE id = ?1",
            )?
            .execute(params![id])?;
        }
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
            // Keyed in wrap-up, after the call's record went out: headquarters
            // gets the record again, complete (same call id, a later seq).
            let ended: Option<i64> = tx
                .prepare_cached("SELECT ended_ms FROM calls WHERE id = ?1")?
                .query_row(params![call_id], |r| r.get(0))
                .optional()?
                .flatten();
            if let Some(ms) = ended {
                let at = Stamp {
                    wall_ms: ms,
                    mono_ms: 0,
                    synced: true,
                };
                outbox_call(tx, call_id, &at, false)?;
            }
        }
        StoreMsg::Outbox {
            stream,
            at,
            payload,
        } => outbox(tx, stream, at, payload)?,
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
            if *diverted {
                // Headquarters investigates possible cross-region
                // diversion of goods.
                outbox(
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
            return Ok(Some(CheckHistory { earlier, first_ms }));
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
                at,
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
                at,
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
                    at,
                    &serde_json::json!({"job": j.name, "number": j.number, "attempts": j.attempts, "status": j.status, "result": j.result}),
                )?;
            }
        }
        StoreMsg::Event {
            call_id,
            at,
            event,
            data,
        } => {
            tx.prepare_cached(
                "INSERT INTO call_events (call_id, at_ms, mono_ms, event, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![call_id, at.wall_ms, at.mono_ms, event, data.to_string()])?;
        }
        StoreMsg::RecordingStarted {
            id,
            call_id,
            kind,
            file,
            format,
            channels,
            at,
        } => {
            tx.prepare_cached(
                "INSERT INTO recordings (id, call_id, kind, file, format, channels, started_ms, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'recording')",
            )?
            .execute(params![id, call_id, kind, file, format, channels, at.wall_ms])?;
            resend_if_ended(tx, call_id, at)?;
        }
        StoreMsg::RecordingFinished(r) => {
            let known: bool = tx
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
            tx.prepare_cached(RECORDING_END)?.execute(params![
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
            outbox(
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
            if !known {
                resend_if_ended(tx, &r.call_id, &r.at)?;
            }
        }
        StoreMsg::SweepOpenRecordings { at: _ } => {
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
        }
        StoreMsg::RecordingDeleted { id, at, reason } => {
            let n = tx
                .prepare_cached(
                    "UPDATE recordings SET state = 'deleted', deleted_ms = ?2, deleted_reason = ?3
                     WHERE id = ?1",
                )?
                .execute(params![id, at.wall_ms, reason])?;
            if n == 0 {
                tracing::warn!(recording = %id, "deleted recording has no row");
            }
        }
        StoreMsg::Alarm {
            at,
            code,
            severity,
            message,
        } => {
            tx.prepare_cached(
                "INSERT INTO alarms (at_ms, code, severity, message) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![at.wall_ms, code, severity, message])?;
            outbox(tx, "alarm", at, &alarm_payload(code, severity, message))?;
        }
        StoreMsg::AlarmCleared { at, code } => {
            let cleared = tx
                .prepare_cached(
                    "UPDATE alarms SET cleared_ms = ?2 WHERE code = ?1 AND cleared_ms IS NULL",
                )?
                .execute(params![code, at.wall_ms])?;
            // Headquarters hears of a clear only for an alarm it was told of.
            if cleared > 0 {
                outbox(
                    tx,
                    "alarm",
                    at,
                    &serde_json::json!({"code": code, "cleared": true}),
                )?;
            }
        }
        StoreMsg::Lookup {
            call_id,
            at,
            source,
            key,
            found,
        } => {
            tx.prepare_cached(
                "INSERT INTO lookups (call_id, at_ms, source, key, found) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![call_id, at.wall_ms, source, key, found])?;
            outbox(
                tx,
                "lookup",
                at,
                &serde_json::json!({"call_id": call_id, "source": source, "key": key, "found": found}),
            )?;
        }
    }
    Ok(None)
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

/// Opens the database read-only, without disturbing a running daemon, and
/// checks its version.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    if !path.is_file() {
        return Err(StoreError::Missing(path.to_path_buf()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    })?;
    let version = check_version(&conn, path)?;
    let supported = MIGRATIONS.len() as i64;
    // Version 0 is a database the daemon has not initialised yet: it reads
    // as empty. Anything between is older firmware's schema, which these
    // queries do not know.
    if version != 0 && version < supported {
        return Err(StoreError::TooOld {
            path: path.to_path_buf(),
            found: version,
            supported,
        });
    }
    Ok(conn)
}

/// Whether the database has `table` (an older schema may not).
fn has_table(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        params![table],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
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
fn query_records(conn: &Connection, query: &RecordQuery) -> rusqlite::Result<Vec<CallRecord>> {
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
    let mut stmt = conn.prepare(&format!(
        "SELECT id, direction, trunk_line, caller, dialled, started_ms, answered_ms, ended_ms,
                    disposition, hangup_cause, hangup_side, clock_synced, boot_id, mono_start_ms,
                    flow, language, ivr_path, ivr_vars, outcome, survey_score, connected_to, job,
                    queue, queue_wait_ms, agent, talk_ms, queue_exit, wrap_code
             FROM calls c WHERE {filter} ORDER BY seq"
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

/// Reads stored recordings (of one call, or all), oldest first, without
/// disturbing a running daemon.
pub fn read_recordings(
    data_dir: &Path,
    call: Option<&str>,
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
             FROM recordings WHERE ?1 IS NULL OR call_id = ?1 ORDER BY seq",
        )
        .map_err(sq)?;
    // Sizes and lengths are never negative; a corrupt value reads as 0.
    let uint = |v: i64| u64::try_from(v).unwrap_or(0);
    let rows = stmt
        .query_map(params![call], |r| {
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
                        if n == "payload" || n == "data" || n == "pauses" {
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
        let recs = read_records(dir.path(), &RecordQuery::default()).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].disposition, "answered");
        assert_eq!(recs[0].duration_ms, Some(3000));
        assert_eq!(recs[0].answered_ms, Some(2500));
        assert_eq!(recs[1].disposition, "in_progress");
        let (store, report) = Store::open(dir.path(), "boot").unwrap();
        assert_eq!(report.interrupted, 1);
        store.close().await;
        assert_eq!(
            read_records(dir.path(), &RecordQuery::default()).unwrap()[1].disposition,
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
        assert_eq!(
            read_records(dir.path(), &RecordQuery::default())
                .unwrap()
                .len(),
            1
        );
        assert_eq!(read_table(dir.path(), "voicemail").unwrap().len(), 1);
        assert_eq!(read_table(dir.path(), "outbox").unwrap().len(), 1);
    }

    fn call(id: &str, ms: i64) -> StoreMsg {
        StoreMsg::CallStarted(CallStart {
            id: id.into(),
            direction: Direction::Inbound,
            trunk_line: "t1".into(),
            caller: Some("1001".into()),
            dialled: None,
            at: stamp(ms),
        })
    }

    fn finished(id: &str, call_id: &str, started: Option<Stamp>, end_ms: i64) -> RecordingEnd {
        RecordingEnd {
            id: id.into(),
            call_id: call_id.into(),
            kind: "call".into(),
            file: format!("recordings/{id}.wav"),
            format: "wav".into(),
            channels: 2,
            started,
            at: stamp(end_ms),
            state: "complete",
            size: 64_044,
            duration_ms: 4000,
            paused_ms: 1000,
            pauses: vec![(1000, 2000)],
            sha256: Some("ab".repeat(32)),
            encrypted: false,
            error: None,
        }
    }

    fn started(id: &str, call_id: &str, ms: i64) -> StoreMsg {
        StoreMsg::RecordingStarted {
            id: id.into(),
            call_id: call_id.into(),
            kind: "call",
            file: format!("recordings/{id}.wav"),
            format: "wav",
            channels: 2,
            at: stamp(ms),
        }
    }

    fn rows_of(dir: &Path, stream: &str) -> Vec<serde_json::Value> {
        read_table(dir, "outbox")
            .unwrap()
            .into_iter()
            .filter(|r| r["stream"] == stream)
            .collect()
    }

    fn outbox_rows(dir: &Path, stream: &str) -> Vec<serde_json::Value> {
        read_table(dir, "outbox")
            .unwrap()
            .into_iter()
            .filter(|r| r["stream"] == stream)
            .map(|r| r["payload"].clone())
            .collect()
    }

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
            call: None,
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
        };
        assert!(ids(both).is_empty());
    }

    impl RecordingEnd {
        fn into_msg(self) -> StoreMsg {
            StoreMsg::RecordingFinished(self)
        }
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
    async fn a_plain_thread_can_send_without_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        std::thread::spawn(move || h.send_blocking(call("from-thread", 1000)))
            .join()
            .unwrap();
        store.close().await;
        let recs = read_records(dir.path(), &RecordQuery::default()).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].id, "from-thread");
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

    #[tokio::test]
    async fn a_garbage_database_is_moved_aside_untouched_and_a_fresh_one_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 13) as u8).collect();
        std::fs::write(&path, &garbage).unwrap();
        // A stray WAL goes with it.
        std::fs::write(dir.path().join("callbox.db-wal"), b"not a wal").unwrap();
        let (store, report) = Store::open(dir.path(), "boot").unwrap();
        let aside = report.moved_aside.clone().expect("moved aside");
        assert_eq!(aside.parent(), Some(dir.path()));
        let name = aside.file_name().unwrap().to_str().unwrap();
        let suffix = name.strip_prefix("callbox.db.corrupt-").expect(name);
        assert!(suffix.parse::<u64>().is_ok(), "{name}");
        assert_eq!(std::fs::read(&aside).unwrap(), garbage);
        assert_eq!(
            std::fs::read(dir.path().join(format!("callbox.db-wal.corrupt-{suffix}"))).unwrap(),
            b"not a wal"
        );
        let h = store.handle();
        h.send(call("fresh", 1000)).await;
        drop(h);
        store.close().await;
        let recs = read_records(dir.path(), &RecordQuery::default()).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].id, "fresh");
        // The copy aside is still untouched, and a healthy database is not
        // moved on the next start.
        assert_eq!(std::fs::read(&aside).unwrap(), garbage);
        let (store, report) = Store::open(dir.path(), "boot").unwrap();
        assert_eq!(report.moved_aside, None);
        store.close().await;
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
