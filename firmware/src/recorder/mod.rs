//! Call recording: what a call sounds like, kept as WAV files that survive
//! a power cut.
//!
//! A call carries a [`Recording`], a tap the bridges feed with every frame:
//! the caller's voice on the left channel, what the caller hears (agent,
//! supervisor barging in, hold music) on the right. The tap encodes into a
//! buffer and hands 500 ms chunks to one writer thread ([`Recorder`]) that
//! owns every open file: it appends each chunk (the kernel's page cache
//! merges them; the SD card sees a flush every `sync_every`), rewrites the
//! header every `header_every` of audio so the file is valid as it grows,
//! and at the end finishes the header, encrypts the file to headquarters'
//! keys when the site names them and moves it to its dated folder.
//!
//! Open files live in `recordings/.open/`; at start-up whatever is there
//! was open when the box died: the writer repairs its header from the file
//! length, marks it interrupted and keeps it, before any call is taken.
//!
//! Retention (age, quota, free space) runs on the same thread; see
//! [`retention`].
//!
//! The policy can change while the box runs ([`Recorder::set_config`]): a
//! call's tap keeps the policy it was made with, so a recording in progress
//! finishes as it started (format, encryption); new calls and the writer's
//! own rounds (sync, free space, retention) use the new one.

pub mod config;
mod retention;
pub mod seal;
pub mod wav;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as smpsc;
use std::time::{Duration, Instant as StdInstant};

use callbox_hal::Frame;

use crate::clock::{Clock, Stamp};
use crate::store::{RecordingEnd, StoreHandle, StoreMsg};
use config::{Decision, Mode, RecordingConfig};
use wav::{Format, WavWriter};

/// Folder of recordings inside the data directory.
pub const DIR: &str = "recordings";
/// Folder of recordings still being written, inside [`DIR`].
pub const OPEN_DIR: &str = ".open";
const RATE: u32 = 8000;
/// Frames a call buffers before handing them to the writer: a crash of the
/// daemon loses at most this much audio.
const CHUNK_FRAMES: usize = 25;
/// Chunks queued towards the writer before calls start dropping audio:
/// 17 minutes of audio in all, 5 s of 200 calls'. The writer only waits on
/// the page cache (syncfs has its own thread), so that is a stuck writer.
const QUEUE: usize = 2048;
/// Frames of the other side kept waiting for the caller's frame they pair
/// with; beyond this the other side is ahead and its oldest frame goes.
const RIGHT_LAG: usize = 8;
/// Frames a mono recording holds back so that a terminating key's tone can
/// be cut from the end.
const HOLD_FRAMES: usize = 12;
/// What a paused recording records.
static SILENCE: [i16; callbox_hal::audio::MAX_FRAME_SAMPLES] =
    [0; callbox_hal::audio::MAX_FRAME_SAMPLES];

/// Where a recording goes once finished, relative to the data directory.
pub fn final_path(id: &str, started_ms: i64, encrypted: bool) -> String {
    let day = jiff::Timestamp::from_millisecond(started_ms)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| "undated".into());
    let ext = if encrypted { "wav.age" } else { "wav" };
    format!("{DIR}/{day}/{id}.{ext}")
}

enum WriterMsg {
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
    Stop,
}

/// The policy in force, shared by the handles and the writer thread. The
/// lock is only held to clone or replace the `Arc`.
type Policy = Arc<std::sync::RwLock<Arc<RecordingConfig>>>;

fn policy_now(p: &Policy) -> Arc<RecordingConfig> {
    p.read().unwrap_or_else(|e| e.into_inner()).clone()
}

struct Shared {
    tx: smpsc::SyncSender<WriterMsg>,
    config: Policy,
    clock: Clock,
    /// Set while recordings must not start (disk full or nearly, writer
    /// trouble, store unable to write).
    stopped: Arc<AtomicBool>,
    store: StoreHandle,
}

/// Handle to the recording writer (cheap to clone).
#[derive(Clone)]
pub struct Recorder {
    shared: Option<Arc<Shared>>,
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
        let writer = Writer {
            data_dir: data_dir.clone(),
            config: config.clone(),
            store: store.clone(),
            files: HashMap::new(),
            stopped: stopped.clone(),
            dirty: false,
            clock: clock.clone(),
            since_space_check: 0,
            syncer: spawn_syncer(open_dir.clone()),
            backlog: VecDeque::new(),
            deleted: std::collections::HashSet::new(),
        };
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

/// One call's recording tap. Off until started; feeding an off tap costs
/// nothing. Dropping it finishes the recording.
pub struct Recording {
    shared: Option<Arc<Shared>>,
    /// The policy when the tap was made: the call's for its whole length.
    config: Option<Arc<RecordingConfig>>,
    call_id: String,
    active: Option<Box<Active>>,
    /// The agent may start and stop recording with the record code.
    pub on_demand: bool,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("call_id", &self.call_id)
            .field("on", &self.active.is_some())
            .finish()
    }
}

struct Active {
    id: Arc<str>,
    file: String,
    format: Format,
    channels: u16,
    buf: Vec<u8>,
    buf_frames: usize,
    right: VecDeque<Frame>,
    hold: VecDeque<Frame>,
    frames: u64,
    paused_at: Option<u64>,
    pauses: Vec<(u64, u64)>,
    lost_ms: u64,
}

impl Active {
    fn ms(&self) -> u64 {
        self.frames * 20
    }
}

impl Recording {
    /// A tap that can never record (tests, calls without a recorder).
    pub fn off() -> Recording {
        Recording {
            shared: None,
            config: None,
            call_id: String::new(),
            active: None,
            on_demand: false,
        }
    }

    /// An off tap for `call_id` that can be started.
    pub fn for_call(recorder: &Recorder, call_id: &str) -> Recording {
        Recording {
            shared: recorder.shared.clone(),
            config: recorder.config(),
            call_id: call_id.to_string(),
            active: None,
            on_demand: false,
        }
    }

    /// The policy behind this tap.
    pub fn config(&self) -> Option<Arc<RecordingConfig>> {
        self.config.clone()
    }

    /// Another (off) tap for the same call: a voicemail message beside the
    /// call's own recording.
    pub fn sibling(&self) -> Recording {
        Recording {
            shared: self.shared.clone(),
            config: self.config.clone(),
            call_id: self.call_id.clone(),
            active: None,
            on_demand: false,
        }
    }

    /// Whether audio is being recorded.
    pub fn is_on(&self) -> bool {
        self.active.is_some()
    }

    /// The file the recording will have once finished (relative to the data
    /// directory).
    pub fn file(&self) -> Option<&str> {
        self.active.as_ref().map(|a| a.file.as_str())
    }

    /// The recording's id.
    pub fn id(&self) -> Option<&str> {
        self.active.as_ref().map(|a| &*a.id)
    }

    /// Recorded length so far.
    pub fn duration(&self) -> Duration {
        self.active.as_ref().map_or(Duration::ZERO, |a| {
            Duration::from_millis(a.ms() + a.hold.len() as u64 * 20)
        })
    }

    /// Starts recording (`kind` is `call` or `voicemail`). False when the
    /// box cannot record now: no recorder, disk full, writer stuck.
    pub fn start(&mut self, kind: &'static str, format: Format, channels: u16) -> bool {
        if self.active.is_some() {
            return true;
        }
        let (Some(s), Some(config)) = (self.shared.clone(), self.config.clone()) else {
            return false;
        };
        if s.stopped.load(Ordering::Relaxed) || s.store.disk_trouble() {
            tracing::warn!("not recording: the disk is full or the store cannot write");
            return false;
        }
        let at = s.clock.now();
        let id: Arc<str> = crate::clock::new_id(&s.clock).into();
        let encrypted = config.recipients.is_some();
        let open = WriterMsg::Open {
            id: id.clone(),
            config,
            call_id: self.call_id.clone(),
            kind,
            format,
            channels,
            at,
        };
        if s.tx.try_send(open).is_err() {
            tracing::error!("not recording: the recording writer is not keeping up");
            return false;
        }
        let bytes = CHUNK_FRAMES * 160 * channels as usize * format.bytes_per_sample() as usize;
        let file = final_path(&id, at.wall_ms, encrypted);
        tracing::info!(recording = %id, kind, format = format.name(), "recording starts");
        self.active = Some(Box::new(Active {
            id,
            file,
            format,
            channels,
            buf: Vec::with_capacity(bytes),
            buf_frames: 0,
            // Each side only for the recordings that use it: the other
            // party's frames for stereo, the hold-back for mono voicemail.
            right: if channels == 2 {
                VecDeque::with_capacity(RIGHT_LAG + 1)
            } else {
                VecDeque::new()
            },
            hold: if channels == 1 {
                VecDeque::with_capacity(HOLD_FRAMES + 1)
            } else {
                VecDeque::new()
            },
            frames: 0,
            paused_at: None,
            pauses: Vec::new(),
            lost_ms: 0,
        }));
        true
    }

    /// Starts a call recording as `decision` says, unless already on.
    pub fn start_call(&mut self, decision: Decision) -> bool {
        decision.mode == Mode::Always && self.start("call", decision.format, 2)
    }

    /// A frame of the caller's voice (left channel); pairs with the other
    /// side's oldest waiting frame, or silence.
    pub fn caller(&mut self, f: &Frame) {
        let Some(a) = self.active.as_deref_mut() else {
            return;
        };
        let right = a.right.pop_front();
        let n = f.samples().len();
        if a.paused_at.is_some() {
            // A paused span stays in the file as silence, so the timing
            // of everything after it is kept.
            a.format.encode_stereo(&SILENCE[..n], &[], &mut a.buf);
        } else {
            let r = right.as_ref().map_or(&[][..], |r| r.samples());
            a.format.encode_stereo(f.samples(), r, &mut a.buf);
        }
        self.frame_done();
    }

    /// A frame of what the caller hears (right channel).
    pub fn other(&mut self, f: &Frame) {
        let Some(a) = self.active.as_deref_mut() else {
            return;
        };
        if a.channels != 2 {
            return;
        }
        if a.right.len() >= RIGHT_LAG {
            a.right.pop_front();
        }
        a.right.push_back(*f);
    }

    /// A frame of a mono recording (voicemail).
    pub fn mono(&mut self, f: &Frame) {
        let Some(a) = self.active.as_deref_mut() else {
            return;
        };
        a.hold.push_back(*f);
        if a.hold.len() > HOLD_FRAMES {
            let f = a.hold.pop_front().expect("hold is not empty");
            let samples = if a.paused_at.is_some() {
                &SILENCE[..f.samples().len()]
            } else {
                f.samples()
            };
            a.format.encode(samples, &mut a.buf);
            self.frame_done();
        }
    }

    fn frame_done(&mut self) {
        let Some(a) = self.active.as_deref_mut() else {
            return;
        };
        a.frames += 1;
        a.buf_frames += 1;
        if a.buf_frames >= CHUNK_FRAMES {
            self.send_chunk();
        }
    }

    fn send_chunk(&mut self) {
        let (Some(a), Some(s)) = (self.active.as_deref_mut(), self.shared.as_ref()) else {
            return;
        };
        if a.buf.is_empty() {
            return;
        }
        let cap = a.buf.capacity();
        let bytes = std::mem::replace(&mut a.buf, Vec::with_capacity(cap));
        let frames = std::mem::take(&mut a.buf_frames) as u64;
        if s.tx
            .try_send(WriterMsg::Data {
                id: a.id.clone(),
                bytes,
            })
            .is_err()
        {
            // Never stall the call's audio for the recording.
            a.lost_ms += frames * 20;
        }
    }

    fn event(&self, event: &'static str, data: serde_json::Value) {
        if let Some(s) = &self.shared {
            let _ = s.tx.try_send(WriterMsg::Event {
                call_id: self.call_id.clone(),
                at: s.clock.now(),
                event,
                data,
            });
        }
    }

    /// Pauses or resumes; returns whether the recording is now paused
    /// (`None` when nothing is being recorded).
    pub fn toggle_pause(&mut self) -> Option<bool> {
        let a = self.active.as_deref_mut()?;
        let now = a.ms();
        let (paused, id) = match a.paused_at.take() {
            Some(from) => {
                a.pauses.push((from, now));
                (false, a.id.clone())
            }
            None => {
                a.paused_at = Some(now);
                (true, a.id.clone())
            }
        };
        let event = if paused {
            "recording_paused"
        } else {
            "recording_resumed"
        };
        tracing::info!(recording = %id, at_ms = now, "{event}");
        self.event(
            event,
            serde_json::json!({"recording": &*id, "offset_ms": now}),
        );
        Some(paused)
    }

    /// Handles an agent's code typed during the call; true if it was a
    /// recording code.
    pub fn agent_code(&mut self, typed: &str) -> bool {
        let Some(cfg) = self.config.clone() else {
            return false;
        };
        if typed == cfg.pause_code {
            if self.toggle_pause().is_none() {
                tracing::info!("pause code keyed but the call is not being recorded");
            }
            return true;
        }
        if typed == cfg.record_code {
            if !self.on_demand {
                tracing::info!("record code keyed but this call's policy is not on demand");
            } else if self.is_on() {
                self.stop();
            } else {
                self.start("call", cfg.default.format, 2);
            }
            return true;
        }
        false
    }

    /// Finishes the recording, cutting `trim` samples from the end of a
    /// mono recording (the terminating key's tone).
    pub fn stop_trimmed(&mut self, trim: usize) {
        if let Some(a) = self.active.as_deref_mut() {
            let mut cut = trim;
            while cut > 0 {
                match a.hold.pop_back() {
                    Some(f) if f.samples().len() <= cut => cut -= f.samples().len(),
                    Some(mut f) => {
                        // Keep the front of a partly cut frame as silence-
                        // padded audio: files stay a whole number of frames.
                        let keep = f.samples().len() - cut;
                        f.samples_mut()[keep..].fill(0);
                        a.hold.push_back(f);
                        cut = 0;
                    }
                    None => break,
                }
            }
        }
        self.stop();
    }

    /// Finishes the recording; the tap is off afterwards (and may start a
    /// new one).
    pub fn stop(&mut self) {
        let Some(a) = self.active.as_deref_mut() else {
            return;
        };
        while let Some(f) = a.hold.pop_front() {
            a.format.encode(f.samples(), &mut a.buf);
            a.frames += 1;
            a.buf_frames += 1;
        }
        if let Some(from) = a.paused_at.take() {
            let to = a.ms();
            a.pauses.push((from, to));
        }
        self.send_chunk();
        let Some(a) = self.active.take() else {
            return;
        };
        let Some(s) = &self.shared else {
            return;
        };
        let at = s.clock.now();
        tracing::info!(recording = %a.id, ms = a.ms(), "recording stops");
        // Close must arrive even if the queue is momentarily full, or the
        // file would stay open until the next start-up's repair; but a call
        // (on the async runtime) must not wait for the writer: a full
        // queue hands the close to a thread of its own.
        let close = WriterMsg::Close {
            id: a.id.clone(),
            at,
            pauses: a.pauses,
            lost_ms: a.lost_ms,
        };
        if let Err(smpsc::TrySendError::Full(close)) = s.tx.try_send(close) {
            let tx = s.tx.clone();
            let _ = std::thread::Builder::new()
                .name("recorder-close".into())
                .spawn(move || tx.send(close));
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.stop();
    }
}

struct OpenFile {
    call_id: String,
    kind: &'static str,
    format: Format,
    channels: u16,
    /// Audio in the file when the writer was closed early (disk full).
    duration_ms: u64,
    wav: Option<WavWriter>,
    path: PathBuf,
    started: Stamp,
    since_header: u64,
    header_every_bytes: u64,
    error: Option<String>,
    /// Encrypted when finished, as the call's policy said when it started.
    encrypt: Option<seal::Recipients>,
}

struct Writer {
    data_dir: PathBuf,
    config: Policy,
    store: StoreHandle,
    files: HashMap<Arc<str>, OpenFile>,
    stopped: Arc<AtomicBool>,
    dirty: bool,
    /// The daemon's clock (the writer enters the runtime so that virtual
    /// time reads right here too).
    clock: Clock,
    /// Bytes written since free space was last looked at.
    since_space_check: u64,
    /// Asks the sync thread for a syncfs (none if it could not start).
    syncer: Option<smpsc::SyncSender<()>>,
    /// Store messages waiting for room in the store's queue.
    backlog: VecDeque<StoreMsg>,
    /// Recordings deleted by this run whose rows may not be committed yet.
    deleted: std::collections::HashSet<String>,
}

fn is_disk_full(e: &std::io::Error) -> bool {
    // By kind too: errors re-worded on the way (sealing) lose the errno.
    e.raw_os_error() == Some(libc::ENOSPC)
        || e.raw_os_error() == Some(libc::EDQUOT)
        || matches!(
            e.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        )
}

impl Writer {
    fn open_dir(&self) -> PathBuf {
        self.data_dir.join(DIR).join(OPEN_DIR)
    }

    /// The policy in force now.
    fn cfg(&self) -> Arc<RecordingConfig> {
        policy_now(&self.config)
    }

    /// Hands a message to the store without ever waiting: the store may be
    /// stuck on a full disk that only this thread can free. What does not
    /// fit waits here, in order.
    fn send(&mut self, msg: StoreMsg) {
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

    fn alarm(&mut self, code: &'static str, severity: &'static str, message: String) {
        tracing::error!(alarm = code, "{message}");
        self.send(StoreMsg::Alarm {
            at: self.clock.now(),
            code: code.into(),
            severity,
            message,
        });
    }

    fn run(&mut self, rx: smpsc::Receiver<WriterMsg>) {
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
        self.send(StoreMsg::RecordingStarted {
            id: id.to_string(),
            call_id: call_id.clone(),
            kind,
            file: final_path(&id, at.wall_ms, config.recipients.is_some()),
            format: format.name(),
            channels,
            at,
        });
        self.send(StoreMsg::Event {
            call_id: call_id.clone(),
            at,
            event: "recording_started",
            data: serde_json::json!({"recording": &*id, "kind": kind, "format": format.name()}),
        });
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

    /// Stops new recordings; the `disk_full` alarm is raised when recording
    /// stops and cleared when it resumes (`stopped` is its state).
    fn disk_full(&mut self, message: String) {
        if self.stopped.swap(true, Ordering::Relaxed) {
            tracing::debug!(alarm = "disk_full", "{message}");
            return;
        }
        self.alarm(
            "disk_full",
            "critical",
            format!("{message}; recording stops"),
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

    /// Ends every open recording where it is (valid files, state failed):
    /// the disk has no room for more.
    fn stop_open(&mut self, why: &str) {
        for f in self.files.values_mut() {
            if f.wav.is_some() {
                tracing::warn!(file = %f.path.display(), "recording stopped: {why}");
                f.error = Some(format!("recording stopped: {why}"));
                end_early(f);
            }
        }
    }

    fn sync_round(&mut self) {
        if self.dirty {
            self.dirty = false;
            self.sync_files();
        }
        // Also when idle: a box that stopped recording for lack of space
        // must notice when there is room again.
        self.check_space();
    }

    fn sync_files(&mut self) {
        for f in self.files.values_mut() {
            if let Some(w) = f.wav.as_mut()
                && f.since_header > 0
            {
                f.since_header = 0;
                let _ = w.update_header();
            }
        }
        // One syncfs flushes every open recording at once, instead of an
        // fsync per file. It runs on its own thread: an SD card can take
        // seconds over it, and the writer must keep taking audio meanwhile.
        // A sync already waiting covers this round too.
        match &self.syncer {
            Some(t) => {
                let _ = t.try_send(());
            }
            None => syncfs(&self.open_dir()),
        }
    }

    fn free_space(&self) -> Option<u64> {
        let st = nix::sys::statvfs::statvfs(&self.data_dir.join(DIR)).ok()?;
        Some(st.blocks_available() as u64 * st.fragment_size() as u64)
    }

    /// Stops or resumes recording by free space, and deletes the oldest
    /// recordings when the disk is about to fill.
    fn check_space(&mut self) {
        self.since_space_check = 0;
        let Some(free) = self.free_space() else {
            return;
        };
        let min = self.cfg().min_free;
        if free < min {
            let now = self.clock.now();
            retention::emergency(self, now, min.saturating_sub(free));
        }
        let free = self.free_space().unwrap_or(free);
        if free < min {
            let why = format!(
                "{} free in {}, less than the {} kept free",
                human(free),
                self.data_dir.join(DIR).display(),
                human(min)
            );
            self.stop_open(&why);
            self.disk_full(why);
        } else if self.stopped.load(Ordering::Relaxed) && free >= min.saturating_add(min / 4) {
            self.stopped.store(false, Ordering::Relaxed);
            tracing::info!(alarm = "disk_full", "cleared");
            self.send(StoreMsg::AlarmCleared {
                at: self.clock.now(),
                code: "disk_full".into(),
            });
            tracing::info!(
                free = %human(free),
                "disk has room again; recording resumes"
            );
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
    fn finalize(
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

    /// Repairs every recording the last run left open.
    fn repair_all(&mut self, now: Stamp) -> StartReport {
        let mut report = StartReport::default();
        let dir = self.open_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("reading {}: {e}", dir.display());
                return report;
            }
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        // Every recording this pass deals with; their ends are queued, not
        // yet committed.
        let mut seen = std::collections::HashSet::new();
        for path in paths {
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            let parts: Vec<&str> = name.split('.').collect();
            let [id, call_id, kind, "wav"] = parts[..] else {
                tracing::warn!(file = %path.display(), "not a recording; left alone");
                continue;
            };
            seen.insert(id.to_string());
            let kind: &'static str = if kind == "voicemail" {
                "voicemail"
            } else {
                "call"
            };
            let mtime = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(now.wall_ms, |d| d.as_millis() as i64);
            let at = Stamp {
                wall_ms: mtime,
                mono_ms: 0,
                synced: false,
            };
            let mut end = RecordingEnd::new(id, call_id, kind, at, "interrupted");
            match wav::repair(&path) {
                Ok(r) if r.data_len == 0 => {
                    let _ = std::fs::remove_file(&path);
                    report.empty += 1;
                    continue;
                }
                Ok(r) => {
                    tracing::warn!(
                        file = %path.display(),
                        duration_ms = r.duration_ms,
                        cut_bytes = r.truncated,
                        "recording left open by the last run repaired and kept"
                    );
                    end.format = r.format.name().into();
                    end.channels = r.channels;
                    end.duration_ms = r.duration_ms;
                    end.error = Some("the box stopped while recording".into());
                    report.repaired += 1;
                }
                Err(wav::RepairError::NoAudio { .. }) => {
                    let _ = std::fs::remove_file(&path);
                    report.empty += 1;
                    continue;
                }
                Err(e @ wav::RepairError::NotWav { .. }) => {
                    // Never delete what cannot be understood: move it
                    // where a person can look at it.
                    let damaged = self.data_dir.join(DIR).join("damaged");
                    let _ = std::fs::create_dir_all(&damaged);
                    let to = damaged.join(&name);
                    let _ = std::fs::rename(&path, &to);
                    tracing::error!("{e}; moved to {}", to.display());
                    end.state = "failed";
                    end.file = format!("{DIR}/damaged/{name}");
                    end.error = Some(e.to_string());
                    report.damaged += 1;
                    self.send(StoreMsg::RecordingFinished(end));
                    continue;
                }
                Err(e) => {
                    tracing::error!("{e}; left for the next start-up");
                    continue;
                }
            }
            // Left open by the last run: sealed by the policy in force.
            let encrypt = self.cfg().recipients.clone();
            self.finalize(&path, &mut end, encrypt.as_ref());
            self.send(StoreMsg::RecordingFinished(end));
        }
        self.adopt_moved(now, &seen);
        self.send(StoreMsg::SweepOpenRecordings { at: now });
        self.retention(now);
        report
    }

    /// Rows still `recording` whose file already reached its dated folder:
    /// the box stopped between moving the file and committing its end.
    /// They get the file's size and checksum (and length, unless sealed)
    /// instead of being swept as lost.
    fn adopt_moved(&mut self, now: Stamp, seen: &std::collections::HashSet<String>) {
        let rows = match retention::open_rows(self) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("looking for recordings finished in a crash: {e}");
                return;
            }
        };
        for retention::OpenRow {
            id,
            call_id,
            kind,
            file,
            started_ms,
        } in rows
        {
            if seen.contains(&id) {
                continue;
            }
            let path = self.data_dir.join(&file);
            let Ok(d) = seal::digest(&path) else {
                continue;
            };
            let encrypted = file.ends_with(".age");
            let (format, channels, duration_ms) = if encrypted {
                (String::new(), 0, 0)
            } else {
                match wav::repair(&path) {
                    Ok(r) => (r.format.name().to_string(), r.channels, r.duration_ms),
                    Err(_) => (String::new(), 0, 0),
                }
            };
            tracing::warn!(recording = %id, file = %file, "recording finished before a crash; its record is completed now");
            self.send(StoreMsg::RecordingFinished(RecordingEnd {
                file,
                format,
                channels,
                started: Some(Stamp {
                    wall_ms: started_ms,
                    mono_ms: 0,
                    synced: false,
                }),
                size: d.size,
                duration_ms,
                sha256: Some(d.sha256),
                encrypted,
                error: Some(
                    "stored, but the box stopped before its record was completed (pauses unknown)"
                        .into(),
                ),
                ..RecordingEnd::new(&id, &call_id, &kind, now, "interrupted")
            }));
        }
    }

    fn retention(&mut self, now: Stamp) {
        retention::apply(self, now);
        self.check_space();
    }
}

fn syncfs(dir: &Path) {
    match std::fs::File::open(dir) {
        Ok(d) => {
            if let Err(e) = nix::unistd::syncfs(&d) {
                tracing::warn!("syncing recordings: {e}");
            }
        }
        Err(e) => tracing::warn!("syncing recordings: {e}"),
    }
}

/// The thread that flushes the recordings' filesystem when asked; it ends
/// when the writer drops its sender.
fn spawn_syncer(dir: PathBuf) -> Option<smpsc::SyncSender<()>> {
    let (tx, rx) = smpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("recorder-sync".into())
        .spawn(move || {
            crate::priority::background();
            while rx.recv().is_ok() {
                syncfs(&dir);
            }
        })
        .ok()?;
    Some(tx)
}

/// Finishes a recording's file where it is, keeping its length for the
/// record.
fn end_early(f: &mut OpenFile) {
    if let Some(mut w) = f.wav.take() {
        f.duration_ms = w.duration_ms();
        let _ = w.update_header();
        let _ = w.finish();
    }
}

/// How many bytes may be written between looks at the free space.
fn space_check_every(min_free: u64) -> u64 {
    (min_free / 8).clamp(16 << 10, 4 << 20)
}

/// A size for people: KiB under a MiB, else MiB.
pub(crate) fn human(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

fn sync_dir(dir: Option<&Path>) -> std::io::Result<()> {
    match dir {
        Some(d) => std::fs::File::open(d)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbox_hal::AudioFormat;

    fn frame(value: i16) -> Frame {
        let mut f = Frame::silence(AudioFormat::NARROWBAND, 0, 0);
        f.samples_mut().fill(value);
        f
    }

    fn samples(path: &Path) -> (u16, Vec<i16>) {
        let mut r = hound::WavReader::open(path).unwrap();
        let ch = r.spec().channels;
        (ch, r.samples::<i16>().map(Result::unwrap).collect())
    }

    /// The other side running ahead is paired in order with the caller's
    /// frames; a pause is silence on both channels; a voicemail loses
    /// exactly the terminating key's 200 ms.
    #[tokio::test]
    async fn a_tap_pairs_the_sides_in_order_pauses_to_silence_and_trims_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = crate::store::Store::open(dir.path(), "boot").unwrap();
        let (rec, thread, found) = Recorder::start(
            Arc::new(RecordingConfig::default()),
            dir.path(),
            store.handle(),
            Clock::new(false),
        )
        .await;
        assert_eq!(found, StartReport::default());
        let mut call = Recording::for_call(&rec, "call-1");
        assert!(call.start("call", Format::Pcm16, 2));
        for i in 0..3 {
            call.other(&frame(1000 + i));
        }
        for i in 0..60 {
            if i == 20 || i == 30 {
                call.toggle_pause();
            }
            call.caller(&frame(i));
            call.other(&frame(1003 + i));
        }
        let call_file = call.file().unwrap().to_string();
        call.stop();
        let mut message = call.sibling();
        assert!(message.start("voicemail", Format::Pcm16, 1));
        for i in 0..30 {
            message.mono(&frame(i));
        }
        assert_eq!(message.duration(), Duration::from_millis(600));
        let vm_file = message.file().unwrap().to_string();
        message.stop_trimmed(1600);
        drop((call, message, rec));
        thread.close().await;
        store.close().await;

        let (ch, s) = samples(&dir.path().join(&call_file));
        assert_eq!((ch, s.len()), (2, 60 * 320));
        for i in 0..60usize {
            let (l, r) = (s[i * 320], s[i * 320 + 1]);
            if (20..30).contains(&i) {
                assert_eq!((l, r), (0, 0), "frame {i} is paused");
            } else {
                assert_eq!((l, r), (i as i16, 1000 + i as i16), "frame {i}");
            }
        }
        let (ch, s) = samples(&dir.path().join(&vm_file));
        assert_eq!((ch, s.len()), (1, 20 * 160));
        assert_eq!(s[19 * 160], 19);
        let rows = crate::store::read_recordings(dir.path(), None).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].pauses, vec![[400, 600]]);
        assert_eq!(rows[1].duration_ms, Some(400));
    }
}
