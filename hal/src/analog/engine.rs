//! The analog backend's media engine: one thread owns the sound card's
//! capture and playback PCMs and moves a 20 ms period each way per turn.
//!
//! Per turn it reads one period of interleaved samples at the codec's rate,
//! splits it by channel, resamples each port's channel to 8 kHz and hands
//! the frame to that port's call over a non-blocking queue; then it takes
//! the frame each port's call queued for playing (or what the port's line
//! logic injected: caller id, dialling digits; or silence), resamples and
//! interleaves them and writes one period. The calls never wait on the
//! sound card and the sound card never waits on a call: a full queue drops
//! a frame, an empty one plays silence.
//!
//! The per-port DSP of the line logic runs here too, on the frames as they
//! pass: the caller-id decoder between rings, the call-progress detector
//! during calls on trunks (busy tone is often the only hang-up signal an
//! analog line gives), and the echo guard — while the box itself sends DTMF
//! (dialling out, DTMF caller id) the line's hybrid echoes it back, so
//! inbound audio is muted for those frames plus the echo's delay and the
//! box does not hear its own digits.
//!
//! [`Engine::step`] is the whole per-period work without the device; the
//! tests drive it directly. [`run`] is the loop around a [`Pcm`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::board::Timing;
use crate::audio::{AudioFormat, Frame};
use crate::dsp::call_progress::ProgressDetector;
use crate::dsp::caller_id::{CallerId, CallerIdDecoder, CallerIdStandard};
use crate::dsp::goertzel::DtmfPresence;
use crate::dsp::resample::{Decimator, Interpolator};
use crate::dsp::tones::{ProgressTone, ToneRegion};
use crate::queue;

/// Samples of a frame at 8 kHz.
pub const FRAME: usize = AudioFormat::NARROWBAND.frame_samples;
/// Frames queued towards a call before the engine drops (200 ms): a call
/// that falls further behind hears a gap rather than ever more delay.
pub const TO_BOX_DEPTH: usize = 10;
/// The playout buffer of a call's outbound audio, as in the sim backend:
/// small, so writes pace the writer.
pub const FROM_BOX_DEPTH: usize = 3;
/// Inbound frames muted after a frame the box sent with DTMF in it: the
/// playback buffer (2 periods), the line's echo path and a period of margin.
pub const ECHO_TAIL_FRAMES: u64 = 5;

/// Why the sound card failed for good.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{device}: {reason}")]
pub struct PcmError {
    /// The PCM's name.
    pub device: String,
    /// What alsa-lib said.
    pub reason: String,
}

/// A sound card as the engine uses it: whole periods of interleaved 16-bit
/// samples. Implementations recover from overruns and underruns themselves
/// (and count them); an error means the device is gone.
pub trait Pcm: Send {
    /// Reads one period.
    fn read(&mut self, buf: &mut [i16]) -> Result<(), PcmError>;
    /// Writes one period.
    fn write(&mut self, buf: &[i16]) -> Result<(), PcmError>;
}

/// What the engine counts (shown by `callboxd hw probe` and the tests).
#[derive(Debug, Default)]
pub struct MediaStats {
    /// Periods moved each way.
    pub periods: AtomicU64,
    /// Overruns and underruns recovered from.
    pub xruns: AtomicU64,
    /// Frames a call did not take in time.
    pub frames_dropped: AtomicU64,
    /// Inbound frames muted by the echo guard.
    pub echo_muted: AtomicU64,
}

impl MediaStats {
    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// What a port's line logic wants from its audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// No call: audio is not passed on.
    Idle,
    /// Between rings on a trunk: decode caller id.
    CallerId,
    /// In a call: audio goes to the call; on trunks the call-progress
    /// detector listens for busy tone.
    Call,
}

/// From a port's line logic to the engine.
#[derive(Debug)]
pub enum MediaCmd {
    /// Play these samples (8 kHz) before anything the call queues.
    Inject {
        /// Port index.
        port: usize,
        /// The samples.
        samples: Vec<i16>,
    },
    /// Change what the port listens for.
    Listen {
        /// Port index.
        port: usize,
        /// The new mode.
        listen: Listen,
    },
}

/// From the engine to a port's line logic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaReport {
    /// A caller id was decoded (or failed its checksum).
    CallerId(Result<CallerId, String>),
    /// A call-progress tone was recognised.
    Tone(ProgressTone),
    /// Injected samples have all been played.
    Injected,
}

/// What the engine keeps per port.
#[derive(Debug)]
pub struct PortMedia {
    channel: usize,
    trunk: bool,
    // Fields drop in order: the queue to the line closes before the one to
    // the box, so a call that sees its audio end finds its output closed too.
    from_box: queue::Receiver<Frame>,
    to_box: queue::Sender<Frame>,
    reports: mpsc::Sender<MediaReport>,
    listen: Listen,
    inject: VecDeque<i16>,
    cid: Option<CallerIdDecoder>,
    cid_standard: Option<CallerIdStandard>,
    progress: ProgressDetector,
    /// The echo guard's test on what the box sends.
    dtmf: DtmfPresence,
    mute_until: u64,
    seq: u32,
    timestamp: u64,
    down: Decimator,
    up: Interpolator,
}

/// The call's ends of a port's audio queues.
#[derive(Debug)]
pub(crate) struct PortQueues {
    /// Frames from the line.
    pub(crate) from_line: queue::Receiver<Frame>,
    /// Frames to the line.
    pub(crate) to_line: queue::Sender<Frame>,
}

impl PortMedia {
    /// A port on `channel`; returns the engine's half and the call's half,
    /// and the receiver of the port's reports.
    pub(crate) fn new(
        channel: u16,
        trunk: bool,
        caller_id: Option<CallerIdStandard>,
        tones: ToneRegion,
        factor: usize,
    ) -> (PortMedia, PortQueues, mpsc::Receiver<MediaReport>) {
        let (to_box, from_line) = queue::bounded(TO_BOX_DEPTH);
        let (to_line, from_box) = queue::bounded(FROM_BOX_DEPTH);
        let (reports, rx) = mpsc::channel(16);
        (
            PortMedia {
                channel: usize::from(channel),
                trunk,
                from_box,
                to_box,
                reports,
                listen: Listen::Idle,
                inject: VecDeque::new(),
                cid: None,
                cid_standard: caller_id,
                progress: ProgressDetector::new(tones, 8000),
                dtmf: DtmfPresence::new(8000.0),
                mute_until: 0,
                seq: 0,
                timestamp: 0,
                down: Decimator::new(factor),
                up: Interpolator::new(factor),
            },
            PortQueues { from_line, to_line },
            rx,
        )
    }

    fn report(&self, r: MediaReport) {
        // The line logic reads its reports promptly; if it is gone the
        // port is being torn down.
        let _ = self.reports.try_send(r);
    }

    fn set_listen(&mut self, listen: Listen) {
        if listen == self.listen {
            return;
        }
        self.listen = listen;
        self.progress.reset();
        self.cid = match (listen, self.cid_standard) {
            (Listen::CallerId, Some(std)) => Some(CallerIdDecoder::new(std, 8000)),
            _ => None,
        };
    }

    fn inbound(&mut self, frame_no: u64, samples: &mut [i16; FRAME], stats: &MediaStats) {
        if frame_no < self.mute_until {
            samples.fill(0);
            stats.echo_muted.fetch_add(1, Ordering::Relaxed);
        }
        match self.listen {
            Listen::Idle => return,
            Listen::CallerId => {
                if let Some(cid) = self.cid.as_mut()
                    && let Some(r) = cid.process(samples)
                {
                    // After an error (noise that framed like a message)
                    // the decoder goes on listening for the real one.
                    if r.is_ok() {
                        self.cid = None;
                    }
                    self.report(MediaReport::CallerId(r.map_err(|e| e.to_string())));
                }
                return;
            }
            Listen::Call => {
                if self.trunk
                    && let Some(tone) = self.progress.process(samples)
                {
                    self.report(MediaReport::Tone(tone));
                }
            }
        }
        let mut frame = Frame::silence(AudioFormat::NARROWBAND, self.seq, self.timestamp);
        frame.samples_mut().copy_from_slice(samples);
        self.seq = self.seq.wrapping_add(1);
        self.timestamp += FRAME as u64;
        if self.to_box.try_send(frame).is_err() {
            stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn outbound(&mut self, frame_no: u64, out: &mut [i16; FRAME]) {
        if !self.inject.is_empty() {
            let n = self.inject.len().min(FRAME);
            for (o, s) in out.iter_mut().zip(self.inject.drain(..n)) {
                *o = s;
            }
            out[n..].fill(0);
            if self.inject.is_empty() {
                self.report(MediaReport::Injected);
            }
        } else if let Some(f) = self.from_box.try_recv() {
            let s = f.samples();
            let n = s.len().min(FRAME);
            out[..n].copy_from_slice(&s[..n]);
            out[n..].fill(0);
        } else {
            out.fill(0);
        }
        if self.dtmf.carries_dtmf(out) {
            self.mute_until = frame_no + 1 + ECHO_TAIL_FRAMES;
        }
    }
}

/// The per-period work, without the device.
#[derive(Debug)]
pub struct Engine {
    ports: Vec<PortMedia>,
    channels: usize,
    commands: std::sync::mpsc::Receiver<MediaCmd>,
    stats: Arc<MediaStats>,
    frame_no: u64,
    /// One port's channel of a period at the codec's rate.
    wide: Vec<i16>,
}

impl Engine {
    /// An engine for `ports` on PCMs of `channels` channels at `rate` Hz.
    pub fn new(
        ports: Vec<PortMedia>,
        channels: u16,
        rate: u32,
        commands: std::sync::mpsc::Receiver<MediaCmd>,
        stats: Arc<MediaStats>,
    ) -> Engine {
        Engine {
            ports,
            channels: usize::from(channels),
            commands,
            stats,
            frame_no: 0,
            wide: vec![0; FRAME * (rate / 8000) as usize],
        }
    }

    /// Interleaved samples in one period.
    pub fn period_samples(&self) -> usize {
        self.wide.len() * self.channels
    }

    /// Moves one period: `capture` in, `playback` out (both interleaved,
    /// [`Engine::period_samples`] long).
    pub fn step(&mut self, capture: &[i16], playback: &mut [i16]) {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                MediaCmd::Inject { port, samples } => {
                    if let Some(p) = self.ports.get_mut(port) {
                        p.inject.extend(samples);
                    }
                }
                MediaCmd::Listen { port, listen } => {
                    if let Some(p) = self.ports.get_mut(port) {
                        p.set_listen(listen);
                    }
                }
            }
        }
        let ch = self.channels;
        let wide = &mut self.wide;
        let mut frame = [0i16; FRAME];
        playback.fill(0);
        for p in &mut self.ports {
            for (i, w) in wide.iter_mut().enumerate() {
                *w = capture[i * ch + p.channel];
            }
            p.down.process(wide, &mut frame);
            p.inbound(self.frame_no, &mut frame, &self.stats);
            p.outbound(self.frame_no, &mut frame);
            p.up.process(&frame, wide);
            for (i, w) in wide.iter().enumerate() {
                playback[i * ch + p.channel] = *w;
            }
        }
        self.frame_no += 1;
        self.stats.periods.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the engine on `pcm` until `stop` is set or the device fails; the
/// ports' queues close when it returns, so the calls see the line go.
pub fn run(
    mut pcm: Box<dyn Pcm>,
    mut engine: Engine,
    stop: Arc<AtomicBool>,
    timing: Timing,
) -> Result<(), PcmError> {
    if let Err(e) = crate::rt::realtime_priority(crate::rt::PCM_PRIORITY) {
        tracing::info!("audio thread at normal priority (no real-time scheduling: {e})");
    }
    let n = engine.period_samples();
    let mut capture = vec![0i16; n];
    let mut playback = vec![0i16; n];
    let period = Duration::from_millis(20);
    let start = std::time::Instant::now();
    let mut turns: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        pcm.read(&mut capture)?;
        engine.step(&capture, &mut playback);
        pcm.write(&playback)?;
        if timing == Timing::System {
            turns = turns.saturating_add(1);
            let due = start + period * turns;
            let now = std::time::Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::dtmf::ToneGen;

    fn engine(
        ports: usize,
        rate: u32,
    ) -> (
        Engine,
        Vec<PortQueues>,
        Vec<mpsc::Receiver<MediaReport>>,
        std::sync::mpsc::Sender<MediaCmd>,
    ) {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut media = Vec::new();
        let mut queues = Vec::new();
        let mut reports = Vec::new();
        for i in 0..ports {
            let (m, q, r) = PortMedia::new(
                i as u16,
                true,
                None,
                ToneRegion::China,
                (rate / 8000) as usize,
            );
            media.push(m);
            queues.push(q);
            reports.push(r);
        }
        let e = Engine::new(
            media,
            ports as u16,
            rate,
            rx,
            Arc::new(MediaStats::default()),
        );
        (e, queues, reports, tx)
    }

    #[test]
    fn channels_go_to_their_ports_only_during_calls() {
        let (mut e, mut q, _r, cmd) = engine(2, 8000);
        let mut cap = vec![0i16; e.period_samples()];
        for (i, s) in cap.iter_mut().enumerate() {
            *s = if i % 2 == 0 { 100 } else { -200 };
        }
        let mut play = vec![0i16; e.period_samples()];
        e.step(&cap, &mut play);
        assert!(
            q[0].from_line.try_recv().is_none(),
            "idle ports hear nothing"
        );
        for port in 0..2 {
            cmd.send(MediaCmd::Listen {
                port,
                listen: Listen::Call,
            })
            .unwrap();
        }
        e.step(&cap, &mut play);
        let a = q[0].from_line.try_recv().unwrap();
        let b = q[1].from_line.try_recv().unwrap();
        assert!(a.samples().iter().all(|&s| s == 100));
        assert!(b.samples().iter().all(|&s| s == -200));
        // Outbound: port 1's frame lands on channel 1 only.
        let mut f = Frame::silence(AudioFormat::NARROWBAND, 0, 0);
        f.samples_mut().fill(7);
        q[1].to_line.try_send(f).unwrap();
        e.step(&cap, &mut play);
        assert!(play.iter().step_by(2).all(|&s| s == 0));
        assert!(play.iter().skip(1).step_by(2).all(|&s| s == 7));
    }

    #[test]
    fn injected_audio_goes_first_and_is_reported() {
        let (mut e, q, mut r, cmd) = engine(1, 8000);
        cmd.send(MediaCmd::Inject {
            port: 0,
            samples: vec![5; 200],
        })
        .unwrap();
        let mut f = Frame::silence(AudioFormat::NARROWBAND, 0, 0);
        f.samples_mut().fill(9);
        q[0].to_line.try_send(f).unwrap();
        let cap = vec![0i16; e.period_samples()];
        let mut play = vec![0i16; e.period_samples()];
        e.step(&cap, &mut play);
        assert!(play.iter().all(|&s| s == 5));
        e.step(&cap, &mut play);
        assert!(play[..40].iter().all(|&s| s == 5) && play[40..].iter().all(|&s| s == 0));
        assert_eq!(r[0].try_recv().unwrap(), MediaReport::Injected);
        e.step(&cap, &mut play);
        assert!(play.iter().all(|&s| s == 9), "then the call's frame");
    }

    #[test]
    fn the_echo_of_the_box_own_dtmf_is_muted_and_a_caller_is_not() {
        let (mut e, mut q, _r, cmd) = engine(1, 8000);
        cmd.send(MediaCmd::Listen {
            port: 0,
            listen: Listen::Call,
        })
        .unwrap();
        let mut digit = ToneGen::dtmf('5', 8000, -10.0).unwrap();
        let mut play = vec![0i16; FRAME];
        let mut cap = vec![0i16; FRAME];
        let mut heard = Vec::new();
        let mut det = crate::dsp::detect::DtmfDetector::new(8000);
        // The box sends 100 ms of '5'; the line echoes it 40 ms later at
        // -15 dB. Then, with the box silent, the caller keys '7'.
        let mut sent: Vec<[i16; FRAME]> = Vec::new();
        let mut caller = ToneGen::dtmf('7', 8000, -12.0).unwrap();
        for n in 0..40 {
            if n < 5 {
                let mut f = Frame::silence(AudioFormat::NARROWBAND, n, 0);
                digit.fill(f.samples_mut());
                q[0].to_line.try_send(f).unwrap();
            }
            cap.fill(0);
            if (2..7).contains(&n) {
                for (c, s) in cap.iter_mut().zip(sent[n as usize - 2].iter()) {
                    *c = (f64::from(*s) * 0.18) as i16;
                }
            }
            if (20..25).contains(&n) {
                caller.fill(&mut cap);
            }
            e.step(&cap, &mut play);
            sent.push(play.clone().try_into().unwrap());
            if let Some(f) = q[0].from_line.try_recv() {
                heard.extend(det.process(f.samples()));
            }
        }
        heard.extend(det.process(&[0; 480]));
        assert_eq!(
            heard,
            ['7'],
            "the echo of '5' was muted, the caller's '7' heard"
        );
        assert!(MediaStats::get(&e.stats.echo_muted) >= 5);
    }

    #[test]
    fn a_48k_codec_is_resampled_both_ways() {
        let (mut e, mut q, _r, cmd) = engine(1, 48000);
        cmd.send(MediaCmd::Listen {
            port: 0,
            listen: Listen::Call,
        })
        .unwrap();
        assert_eq!(e.period_samples(), 960);
        let mut tone = ToneGen::dual(1000.0, 1000.0, 48000, -10.0, f64::NEG_INFINITY);
        let mut cap = vec![0i16; 960];
        let mut play = vec![0i16; 960];
        let mut level = 0.0;
        for _ in 0..10 {
            tone.fill(&mut cap);
            e.step(&cap, &mut play);
            level = q[0].from_line.try_recv().unwrap().power_dbfs();
        }
        // A -10 dBFS sine has a mean power of -13 dB against a full-scale
        // square wave.
        assert!((level - -13.0).abs() < 0.5, "{level}");
    }
}
