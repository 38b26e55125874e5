//! The recorder's handle: starting the writer thread (after repairing what
//! the last run left open), the recording policy in force, and stopping.
//!
//! [`Recorder`] is what the daemon and the calls hold; each call makes its
//! [`Recording`](super::Recording) tap from it. The handle and every tap
//! share one `Shared`: the writer's queue, the policy and whether recording
//! is refused right now.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as smpsc;

use super::config::RecordingConfig;
use super::writer::{Writer, WriterMsg};
use super::{DIR, OPEN_DIR};
use crate::clock::{Clock, Stamp};
use crate::store::{StoreHandle, StoreMsg};

/// Chunks queued towards the writer before calls start dropping audio:
/// 17 minutes of audio in all, 5 s of 200 calls'. The writer only waits on
/// the page cache (syncfs has its own thread), so that is a stuck writer.
const QUEUE: usize = 2048;

/// The policy in force, shared by the handles and the writer thread. The
/// lock is only held to clone or replace the `Arc`.
pub(super) type Policy = Arc<std::sync::RwLock<Arc<RecordingConfig>>>;

pub(super) fn policy_now(p: &Policy) -> Arc<RecordingConfig> {
    p.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// What the handle and every tap share.
pub(super) struct Shared {
    pub(super) tx: smpsc::SyncSender<WriterMsg>,
    pub(super) config: Policy,
    pub(super) clock: Clock,
    /// Set while recordings must not start (disk full or nearly, writer
    /// trouble, store unable to write).
    pub(super) stopped: Arc<AtomicBool>,
    pub(super) store: StoreHandle,
}

/// Handle to the recording writer (cheap to clone).
#[derive(Clone)]
pub struct Recorder {
    pub(super) shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("enabled", &self.shared.is_some())
            .finish()
    }
}

/// The writer thread, to stop at the end of the run.
#[derive(Debug)]
pub struct RecorderThread {
    tx: Option<smpsc::SyncSender<WriterMsg>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What start-up found in the open-recordings folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartReport {
    /// Recordings repaired and kept.
    pub repaired: usize,
    /// Files that held no audio, removed.
    pub empty: usize,
    /// Files that could not be read as recordings, moved aside.
    pub damaged: usize,
}

impl Recorder {
    /// A recorder that records nothing (no `[recording]` section, or its
    /// folder cannot be used).
    pub fn disabled() -> Recorder {
        Recorder { shared: None }
    }

    /// Repairs what the last run left open, then starts the writer thread.
    /// A data directory the recorder cannot use is an alarm, not a reason to
    /// stop taking calls: the box then records nothing.
    pub async fn start(
        config: Arc<RecordingConfig>,
        data_dir: &Path,
        store: StoreHandle,
        clock: Clock,
    ) -> (Recorder, RecorderThread, StartReport) {
        let data_dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        let open_dir = data_dir.join(DIR).join(OPEN_DIR);
        let none = RecorderThread {
            tx: None,
            thread: None,
        };
        if let Err(e) = std::fs::create_dir_all(&open_dir) {
            let message = format!(
                "recordings folder {}: {e}; calls are not recorded",
                open_dir.display()
            );
            tracing::error!("{message}");
            store
                .send(StoreMsg::Alarm {
                    at: clock.now(),
                    code: "recording_failed".into(),
                    severity: "critical",
                    message,
                })
                .await;
            return (Recorder::disabled(), none, StartReport::default());
        }
        let (tx, rx) = smpsc::sync_channel(QUEUE);
        let stopped = Arc::new(AtomicBool::new(false));
        let config: Policy = Arc::new(std::sync::RwLock::new(config));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let writer = Writer::new(
            data_dir.clone(),
            config.clone(),
            store.clone(),
            stopped.clone(),
            clock.clone(),
        );
        let started_at = clock.now();
        let runtime = tokio::runtime::Handle::current();
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || {
                // Only for the clock: under a paused (virtual-time) runtime
                // alarms and deletions are stamped in the box's time.
                let _rt = runtime.enter();
                crate::priority::background();
                let mut writer = writer;
                let report = writer.repair_all(started_at);
                let _ = ready_tx.send(report);
                writer.run(rx);
            });
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("cannot start the recording thread: {e}; calls are not recorded");
                return (Recorder::disabled(), none, StartReport::default());
            }
        };
        let report = ready_rx.await.unwrap_or_default();
        let rec = Recorder {
            shared: Some(Arc::new(Shared {
                tx: tx.clone(),
                config,
                clock,
                stopped,
                store,
            })),
        };
        (
            rec,
            RecorderThread {
                tx: Some(tx),
                thread: Some(thread),
            },
            report,
        )
    }

    /// The recording policy in force (for new calls).
    pub fn config(&self) -> Option<Arc<RecordingConfig>> {
        self.shared.as_ref().map(|s| policy_now(&s.config))
    }

    /// Puts a new policy in force and answers the one it replaces (`None`
    /// for a recorder that records nothing). Calls already recording keep
    /// theirs.
    pub fn set_config(&self, config: Arc<RecordingConfig>) -> Option<Arc<RecordingConfig>> {
        let s = self.shared.as_ref()?;
        let mut p = s.config.write().unwrap_or_else(|e| e.into_inner());
        Some(std::mem::replace(&mut *p, config))
    }

    /// Asks the writer to apply retention now (`now` in the daemon's time).
    pub fn retention(&self, now: Stamp) {
        if let Some(s) = &self.shared {
            let _ = s.tx.try_send(WriterMsg::Retention { now });
        }
    }

    /// Whether new recordings are refused right now (disk full or nearly).
    pub fn is_stopped(&self) -> bool {
        self.shared
            .as_ref()
            .is_none_or(|s| s.stopped.load(Ordering::Relaxed) || s.store.disk_trouble())
    }
}

impl RecorderThread {
    /// Finishes every open file and stops the thread (after every call has
    /// ended, before the store closes: the writer's last records go there).
    pub async fn close(mut self) {
        let (tx, thread) = (self.tx.take(), self.thread.take());
        // Off the runtime: the writer's queue may be full.
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(tx) = tx {
                let _ = tx.send(WriterMsg::Stop);
            }
            if let Some(t) = thread {
                let _ = t.join();
            }
        })
        .await;
    }
}
