//! The writer thread: owns every open recording file, appends the taps'
//! chunks, keeps the header valid as the file grows, and at the end
//! finishes the file, seals it when the policy says so and moves it to its
//! dated folder, telling the store each step.
//!
//! Nothing here waits on the store: it may be stuck on a full disk that
//! only this thread can free (see `space`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc as smpsc;
use std::time::{Duration, Instant as StdInstant};

use super::config::RecordingConfig;
use super::flush::{spawn_syncer, sync_dir};
use super::handle::{Policy, policy_now};
use super::space::{is_disk_full, space_check_every};
use super::wav::{Format, WavWriter};
use super::{DIR, OPEN_DIR, final_path, retention, seal};
use crate::clock::{Clock, Stamp};
use crate::store::{RecordingEnd, StoreHandle, StoreMsg};

/// Sample rate of every recording.
const RATE: u32 = 8000;

/// What the taps and the handle ask of the writer.
pub(super) enum WriterMsg {
    Open {
        id: Arc<str>,
        /// The policy of the call's tap: the file is written and sealed by it.
        config: Arc<RecordingConfig>,
        call_id: String,
        kind: &'static str,
        format: Format,
        channels: u16,
        at: Stamp,
    },
    Data {
        id: Arc<str>,
        bytes: Vec<u8>,
    },
    Close {
        id: Arc<str>,
        at: Stamp,
        pauses: Vec<(u64, u64)>,
        lost_ms: u64,
    },
    Event {
        call_id: String,
        at: Stamp,
        event: &'static str,
        data: serde_json::Value,
    },
    Retention {
        now: Stamp,
    },
    /// A message for the store that the call could not queue itself (the
    /// store's queue was full): handed on in order with the recording's.
    Forward(Box<StoreMsg>),
    Stop,
}

/// A recording the writer has open.
pub(super) struct OpenFile {
    pub(super) call_id: String,
    pub(super) kind: &'static str,
    pub(super) format: Format,
    pub(super) channels: u16,
    /// Audio in the file when the writer was closed early (disk full).
    pub(super) duration_ms: u64,
    pub(super) wav: Option<WavWriter>,
    pub(super) path: PathBuf,
    pub(super) started: Stamp,
    pub(super) since_header: u64,
    pub(super) header_every_bytes: u64,
    pub(super) error: Option<String>,
    /// Encrypted when finished, as the call's policy said when it started.
    pub(super) encrypt: Option<seal::Recipients>,
}

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) data_dir: PathBuf,
    pub(super) config: Policy,
    pub(super) store: StoreHandle,
    pub(super) files: HashMap<Arc<str>, OpenFile>,
    pub(super) stopped: Arc<AtomicBool>,
    pub(super) dirty: bool,
    /// The daemon's clock (the writer enters the runtime so that virtual
    /// time reads right here too).
    pub(super) clock: Clock,
    /// Bytes written since free space was last looked at.
    pub(super) since_space_check: u64,
    /// Asks the sync thread for a syncfs (none if it could not start).
    pub(super) syncer: Option<smpsc::SyncSender<()>>,
    /// Store messages waiting for room in the store's queue.
    pub(super) backlog: VecDeque<StoreMsg>,
    /// Recordings deleted by this run whose rows may not be committed yet.
    pub(super) deleted: HashSet<String>,
}

impl Writer {
    /// A writer for the recordings under `data_dir`, with its sync thread
    /// started.
    pub(super) fn new(
        data_dir: PathBuf,
        config: Policy,
        store: StoreHandle,
        stopped: Arc<AtomicBool>,
        clock: Clock,
    ) -> Writer {
        let syncer = spawn_syncer(data_dir.join(DIR).join(OPEN_DIR));
        Writer {
            data_dir,
            config,
            store,
            files: HashMap::new(),
            stopped,
            dirty: false,
            clock,
            since_space_check: 0,
            syncer,
            backlog: VecDeque::new(),
            deleted: HashSet::new(),
        }
    }

    pub(super) fn open_dir(&self) -> PathBuf {
        self.data_dir.join(DIR).join(OPEN_DIR)
    }

    /// The policy in force now.
    pub(super) fn cfg(&self) -> Arc<RecordingConfig> {
        policy_now(&self.config)
    }

    /// Hands a message to the store without ever waiting: the store may be
    /// stuck on a full disk that only this thread can free. What does not
    /// fit waits here, in order.
    pub(super) fn send(&mut self, msg: StoreMsg) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(msg);
        } else if let Err(m) = self.store.try_send(msg) {
            self.backlog.push_back(m);
        }
    }

    fn send_backlog(&mut self) {
        while let Some(m) = self.backlog.pop_front() {
            if let Err(m) = self.store.try_send(m) {
                self.backlog.push_front(m);
                return;
            }
        }
    }

    pub(super) fn alarm(&mut self, code: &'static str, severity: &'static str, message: String) {
        tracing::error!(alarm = code, "{message}");
        self.send(StoreMsg::Alarm {
            at: self.clock.now(),
            code: code.into(),
            severity,
            message,
        });
    }

    pub(super) fn run(&mut self, rx: smpsc::Receiver<WriterMsg>) {
        let mut next_sync = StdInstant::now() + self.cfg().sync_every;
        loop {
            let wait = next_sync
                .saturating_duration_since(StdInstant::now())
                .min(Duration::from_secs(1));
            match rx.recv_timeout(wait) {
                Ok(WriterMsg::Stop) | Err(smpsc::RecvTimeoutError::Disconnected) => break,
                Ok(m) => self.handle(m),
                Err(smpsc::RecvTimeoutError::Timeout) => {}
            }
            self.send_backlog();
            if StdInstant::now() >= next_sync {
                self.sync_round();
                next_sync = StdInstant::now() + self.cfg().sync_every;
            } else if self.store.disk_trouble() {
                // The database cannot commit for lack of space: free some
                // now rather than at the next round, or records wait.
                self.check_space();
            }
        }
        // Calls have ended by now; anything still open (a tap leaked by a
        // panicking task) is closed properly rather than left for repair.
        let ids: Vec<Arc<str>> = self.files.keys().cloned().collect();
        for id in ids {
            let at = self.clock.now();
            self.close(&id, at, Vec::new(), 0);
        }
        // The last flush is done here, before the daemon reports stopped.
        self.syncer = None;
        self.dirty = true;
        self.sync_round();
        // The store outlives this thread: what is still held goes now, in
        // order, waiting for room if need be.
        for m in std::mem::take(&mut self.backlog) {
            self.store.send_blocking(m);
        }
    }

    fn handle(&mut self, m: WriterMsg) {
        match m {
            WriterMsg::Open {
                id,
                config,
                call_id,
                kind,
                format,
                channels,
                at,
            } => self.open(id, &config, call_id, kind, format, channels, at),
            WriterMsg::Data { id, bytes } => self.append(&id, &bytes),
            WriterMsg::Close {
                id,
                at,
                pauses,
                lost_ms,
            } => self.close(&id, at, pauses, lost_ms),
            WriterMsg::Event {
                call_id,
                at,
                event,
                data,
            } => self.send(StoreMsg::Event {
                call_id,
                at,
                event,
                data,
            }),
            WriterMsg::Retention { now } => self.retention(now),
            WriterMsg::Forward(msg) => self.send(*msg),
            WriterMsg::Stop => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        id: Arc<str>,
        config: &RecordingConfig,
        call_id: String,
        kind: &'static str,
        format: Format,
        channels: u16,
        at: Stamp,
    ) {
        let path = self.open_dir().join(format!("{id}.{call_id}.{kind}.wav"));
        let header_every_bytes = (config.header_every.as_millis() as u64 * RATE as u64 / 1000)
            * channels as u64
            * format.bytes_per_sample() as u64;
        // The recording's start row and event went to the store from the
        // call itself (`Recording::start`).
        let (wav, error) = match WavWriter::create(&path, format, channels, RATE) {
            Ok(w) => (Some(w), None),
            Err(e) => {
                // A file created before the header write failed holds
                // nothing; one that already existed is not ours to remove.
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    let _ = std::fs::remove_file(&path);
                }
                let message = format!("cannot create recording {}: {e}", path.display());
                if is_disk_full(&e) {
                    self.disk_full(message.clone());
                } else {
                    self.alarm("recording_failed", "warning", message.clone());
                }
                (None, Some(message))
            }
        };
        self.files.insert(
            id,
            OpenFile {
                call_id,
                kind,
                format,
                channels,
                duration_ms: 0,
                wav,
                path,
                started: at,
                since_header: 0,
                header_every_bytes,
                error,
                encrypt: config.recipients.clone(),
            },
        );
    }

    fn append(&mut self, id: &Arc<str>, bytes: &[u8]) {
        let Some(f) = self.files.get_mut(id) else {
            return;
        };
        let Some(w) = f.wav.as_mut() else {
            return;
        };
        let r = w.append(bytes).and_then(|()| {
            f.since_header += bytes.len() as u64;
            if f.since_header >= f.header_every_bytes {
                f.since_header = 0;
                w.update_header()
            } else {
                Ok(())
            }
        });
        self.dirty = true;
        match r {
            Ok(()) => {
                // Looked at by bytes written, not by time: however fast
                // audio arrives, open recordings cannot eat much of the
                // space kept for the database.
                self.since_space_check += bytes.len() as u64;
                if self.since_space_check >= space_check_every(self.cfg().min_free) {
                    self.check_space();
                }
            }
            Err(e) => {
                let message = format!("writing recording {}: {e}", f.path.display());
                // What is on disk stays a valid file; the rest of this call
                // goes unrecorded.
                f.error = Some(message.clone());
                end_early(f);
                if is_disk_full(&e) {
                    self.disk_full(message);
                } else {
                    self.alarm("recording_failed", "warning", message);
                }
            }
        }
    }

    fn close(&mut self, id: &Arc<str>, at: Stamp, pauses: Vec<(u64, u64)>, lost_ms: u64) {
        let Some(f) = self.files.remove(id) else {
            return;
        };
        let paused_ms = pauses.iter().map(|(a, b)| b - a).sum();
        let state = if f.error.is_some() {
            "failed"
        } else {
            "complete"
        };
        let mut end = RecordingEnd {
            started: Some(f.started),
            paused_ms,
            pauses,
            error: f.error.clone(),
            ..RecordingEnd::new(id, &f.call_id, f.kind, at, state)
        };
        if lost_ms > 0 {
            tracing::warn!(recording = %id, lost_ms, "audio dropped: the writer fell behind");
            let note = format!("{lost_ms} ms of audio dropped while the writer was behind");
            end.error = Some(match end.error.take() {
                Some(e) => format!("{e}; {note}"),
                None => note,
            });
        }
        end.format = f.format.name().into();
        end.channels = f.channels;
        end.duration_ms = f.duration_ms;
        if let Some(w) = f.wav {
            end.duration_ms = w.duration_ms();
            if let Err(e) = w.finish() {
                end.state = "failed";
                end.error = Some(format!("finishing {}: {e}", f.path.display()));
            }
        }
        self.finalize(&f.path, &mut end, f.encrypt.as_ref());
        self.send(StoreMsg::Event {
            call_id: f.call_id,
            at,
            event: "recording_stopped",
            data: serde_json::json!({"recording": &**id, "duration_ms": end.duration_ms, "state": end.state}),
        });
        self.send(StoreMsg::RecordingFinished(end));
        self.dirty = true;
    }

    /// Moves a finished (or repaired) file from the open folder to its
    /// dated folder, encrypting it on the way when the site has
    /// recipients, and fills in where it went and its checksum.
    pub(super) fn finalize(
        &mut self,
        open: &Path,
        end: &mut RecordingEnd,
        encrypt: Option<&seal::Recipients>,
    ) {
        if !open.exists() {
            return;
        }
        let started = end
            .started
            .map_or(end.at.wall_ms - end.duration_ms as i64, |s| s.wall_ms);
        let rel = final_path(&end.id, started, encrypt.is_some());
        let dst = self.data_dir.join(&rel);
        if let Some(parent) = dst.parent()
            && let Err(e) = std::fs::create_dir_all(parent)
        {
            end.state = "failed";
            end.error = Some(format!("{}: {e}", parent.display()));
            return;
        }
        let moved = match encrypt {
            Some(r) => seal::seal(open, &dst, r).and_then(|d| {
                std::fs::remove_file(open)?;
                Ok(d)
            }),
            None => std::fs::rename(open, &dst)
                .and_then(|()| sync_dir(dst.parent()))
                .and_then(|()| seal::digest(&dst)),
        };
        match moved {
            Ok(d) => {
                end.file = rel;
                end.size = d.size;
                end.sha256 = Some(d.sha256);
                end.encrypted = encrypt.is_some();
            }
            Err(e) => {
                let message = format!("storing recording {}: {e}", dst.display());
                end.state = "failed";
                end.error = Some(message.clone());
                if is_disk_full(&e) {
                    self.disk_full(message);
                } else {
                    self.alarm("recording_failed", "warning", message);
                }
                // The audio stays where it is: the next start-up tries
                // again.
            }
        }
    }

    pub(super) fn retention(&mut self, now: Stamp) {
        retention::apply(self, now);
        self.check_space();
    }
}

/// Finishes a recording's file where it is, keeping its length for the
/// record.
pub(super) fn end_early(f: &mut OpenFile) {
    if let Some(mut w) = f.wav.take() {
        f.duration_ms = w.duration_ms();
        let _ = w.update_header();
        let _ = w.finish();
    }
}
