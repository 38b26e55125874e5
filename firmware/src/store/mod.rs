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
//!
//! The store is the only module that speaks SQL; the rest of the firmware
//! sends messages and reads through the types here. One job per file:
//! `records` and `message` are what the store is told; `writer` is the
//! thread and its batches, `apply` how each message changes the database,
//! `outbox` what headquarters must get (and the one place a call record is
//! put in it); `schema` opens the database for writing and migrates it.
//! Readers open it beside the running daemon ([`ReadOnly`]): `queries`
//! exports records for the CLI, [`unsent`] is what the fleet link has yet
//! to send, `status` what telemetry shows, `recordings` what the recorder
//! reads back.

mod apply;
mod campaigns;
mod console;
mod error;
mod mailbox;
mod message;
mod outbox;
mod queries;
mod read_only;
mod recordings;
mod records;
mod schema;
mod status;
#[cfg(test)]
pub(crate) mod test_support;
pub mod unsent;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

pub use campaigns::{ContactRow, ContactUpdate, NewContact};
pub use console::{AuditEntry, AuditRow, ConsoleUser, ReportCall};
pub use error::StoreError;
pub use mailbox::StoredMessage;
pub use message::{StoreMsg, reply};
pub use queries::{
    CallEvent, CallRecord, RecordQuery, RecordingRow, TABLES, read_recording, read_recordings,
    read_records, read_table,
};
pub use read_only::ReadOnly;
pub use recordings::{OpenRecording, RecordingFile};
pub use records::{
    CallEnd, CallFlow, CallStart, CheckHistory, Direction, Disposition, JobRow, RecordingEnd, Side,
};
pub use schema::MIGRATIONS;
use schema::{is_corrupt, move_aside, open_db};
pub use status::RaisedAlarm;
use writer::writer;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "callbox.db";
/// Messages queued towards the store before senders wait.
const QUEUE_DEPTH: usize = 4096;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::*;
    use callbox_hal::HangupCause;

    #[tokio::test]
    async fn records_survive_close_and_in_progress_calls_become_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        for (id, end) in [("a", true), ("b", false)] {
            h.send(StoreMsg::CallStarted(CallStart {
                id: id.into(),
                direction: Direction::Inbound,
                trunk_line: Some("t1".into()),
                station: None,
                caller_name: None,
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
}
