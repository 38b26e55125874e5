//! One call's recording tap: the bridges feed it every frame, it pairs the
//! two sides into stereo (or holds back a mono recording's end), encodes
//! into a buffer and hands 500 ms chunks to the writer without ever
//! waiting on it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc as smpsc;
use std::time::Duration;

use callbox_hal::Frame;

use super::config::{Decision, Mode, RecordingConfig};
use super::final_path;
use super::handle::{Recorder, Shared};
use super::wav::Format;
use super::writer::WriterMsg;
use crate::store::StoreMsg;

/// Frames a call buffers before handing them to the writer: a crash of the
/// daemon loses at most this much audio.
const CHUNK_FRAMES: usize = 25;
/// Frames of the other side kept waiting for the caller's frame they pair
/// with; beyond this the other side is ahead and its oldest frame goes.
const RIGHT_LAG: usize = 8;
/// Frames a mono recording holds back so that a terminating key's tone can
/// be cut from the end.
const HOLD_FRAMES: usize = 12;
/// What a paused recording records.
static SILENCE: [i16; callbox_hal::audio::MAX_FRAME_SAMPLES] =
    [0; callbox_hal::audio::MAX_FRAME_SAMPLES];

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
        // The start goes to the store from the call's own task, so it is
        // queued before the call's end: the call's record then shows the
        // recording when it is sent, and is sent once. Only when the
        // store's queue is full does the writer hand it on (and the record
        // goes again with it, see `store::outbox::enqueue_call_record`).
        let started = StoreMsg::RecordingStarted {
            id: id.to_string(),
            call_id: self.call_id.clone(),
            kind,
            file: file.clone(),
            format: format.name(),
            channels,
            at,
        };
        let event = StoreMsg::Event {
            call_id: self.call_id.clone(),
            at,
            event: "recording_started",
            data: serde_json::json!({"recording": &*id, "kind": kind, "format": format.name()}),
        };
        for msg in [started, event] {
            if let Err(msg) = s.store.try_send(msg) {
                let _ = s.tx.try_send(WriterMsg::Forward(Box::new(msg)));
            }
        }
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

    /// The call is being connected and `decision` is its policy: the
    /// recording starts (always), waits for the agent's code (on demand)
    /// or stops (never). `false`: it should record and cannot.
    pub fn follow(&mut self, decision: Decision) -> bool {
        self.on_demand = decision.mode == Mode::OnDemand;
        match decision.mode {
            Mode::Always => self.start_call(decision),
            Mode::Never => {
                self.stop();
                true
            }
            Mode::OnDemand => true,
        }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use callbox_hal::AudioFormat;

    use super::*;
    use crate::clock::Clock;
    use crate::recorder::StartReport;

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

    /// A recording started during a call is on the call's record when the
    /// call ends right after: the record goes to the outbox once, complete
    /// (its start is queued by the call itself, ahead of the end).
    #[tokio::test]
    async fn a_call_ending_right_after_its_recording_starts_is_sent_once_with_it() {
        use crate::store::test_support::{call, outbox_rows, stamp};
        use crate::store::{CallEnd, Disposition, Side, StoreMsg};
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = crate::store::Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        let (rec, thread, _) = Recorder::start(
            Arc::new(RecordingConfig::default()),
            dir.path(),
            store.handle(),
            Clock::new(false),
        )
        .await;
        h.send(call("c1", 1000)).await;
        let mut tap = Recording::for_call(&rec, "c1");
        assert!(tap.start("call", Format::Pcm16, 2));
        let id = tap.id().unwrap().to_string();
        h.send(StoreMsg::CallEnded(CallEnd {
            id: "c1".into(),
            at: stamp(2000),
            disposition: Disposition::Answered,
            cause: callbox_hal::HangupCause::Normal,
            side: Side::Caller,
        }))
        .await;
        tap.caller(&frame(1));
        tap.stop();
        drop((tap, rec, h));
        thread.close().await;
        store.close().await;
        let sent: Vec<_> = outbox_rows(dir.path(), "cdr")
            .into_iter()
            .filter(|c| c["id"] == "c1")
            .map(|c| c["recordings"].clone())
            .collect();
        assert_eq!(sent, [serde_json::json!([id])]);
    }
}
