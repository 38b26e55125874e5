//! Playing to and hearing from one answered call: prompts to their last
//! sample (with barge-in), tones and music while something else happens,
//! keys from both sources, and messages recorded from the caller.
//!
//! Keys come two ways: out of band as line events (digital trunks, the
//! sim) and in band as DTMF tones in the caller's audio, found by the
//! Goertzel detector on every inbound frame. A key sent both ways (RFC 2833
//! style plus audio) is counted once. Every wait also watches the line, so
//! a caller who hangs up is noticed within a frame, and the daemon's stop.

use std::collections::VecDeque;
use std::time::Duration;

use callbox_hal::dsp::detect::DtmfDetector;
use callbox_hal::dsp::tones::{ProgressTone, ProgressToneGen, ToneRegion};
use callbox_hal::{AudioIn, AudioOut, Frame, Line, LineEvent, Port};
use tokio_util::sync::CancellationToken;

use super::keys::{KeyDedup, Source};
use super::{AudioOutExt, fill_loop};
use crate::recorder::Recording;

/// Why the IVR cannot go on with a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    /// The caller hung up.
    Caller,
    /// The daemon is stopping.
    Shutdown,
    /// The line or its audio failed.
    Failure(String),
}

/// Audio cut from the end of a message ended with `#` (the key's tone).
const TERMINATOR_TRIM: usize = 8000 / 5;

/// Key and audio state, kept apart from the port so that an output future
/// can borrow the port's `audio_out` while input is read.
#[derive(Debug)]
struct Ears {
    detector: DtmfDetector,
    keys: VecDeque<char>,
    dedup: KeyDedup,
    capture: Option<Recording>,
    heard_keys: u32,
}

impl Ears {
    fn key(&mut self, d: char, src: Source) {
        if self.dedup.accept(d, src) {
            self.heard_keys += 1;
            self.keys.push_back(d);
        }
    }
}

/// Waits for one input (line event or inbound frame) and takes it in.
async fn hear<L: Line, I: AudioIn>(
    line: &mut L,
    audio_in: &mut I,
    ears: &mut Ears,
    shutdown: &CancellationToken,
) -> Result<(), Gone> {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => Err(Gone::Shutdown),
        ev = line.next_event() => match ev {
            Ok(LineEvent::Hangup(_)) => Err(Gone::Caller),
            Ok(LineEvent::Digit(d)) => {
                ears.key(d, Source::OutOfBand);
                Ok(())
            }
            Ok(other) => {
                tracing::debug!(?other, "line event during IVR");
                Ok(())
            }
            Err(e) => Err(Gone::Failure(format!("line: {e}"))),
        },
        r = audio_in.read_frame() => match r {
            Ok(frame) => {
                if let Some(d) = ears.detector.process(frame.samples()) {
                    ears.key(d, Source::InBand);
                }
                if let Some(c) = ears.capture.as_mut() {
                    c.mono(&frame);
                }
                Ok(())
            }
            Err(e) => Err(Gone::Failure(format!("inbound audio: {e}"))),
        },
    }
}

/// One call's IVR media.
#[derive(Debug)]
pub struct Media<'p, L, I, O> {
    port: &'p mut Port<L, I, O>,
    ears: Ears,
    shutdown: CancellationToken,
    seq: u32,
    /// The call's recording tap (off unless a policy or the agent starts
    /// it); the bridges feed it.
    pub rec: Recording,
}

impl<'p, L: Line, I: AudioIn, O: AudioOut> Media<'p, L, I, O> {
    /// Media on an answered call.
    pub fn new(port: &'p mut Port<L, I, O>, shutdown: CancellationToken) -> Self {
        let rate = port.audio_in.format().sample_rate;
        Media {
            port,
            ears: Ears {
                detector: DtmfDetector::new(rate),
                keys: VecDeque::new(),
                dedup: KeyDedup::default(),
                capture: None,
                heard_keys: 0,
            },
            shutdown,
            seq: 0,
            rec: Recording::off(),
        }
    }

    /// The call's port (to hand to a bridge).
    pub fn port(&mut self) -> &mut Port<L, I, O> {
        self.port
    }

    /// The call's port and its recording tap, for a bridge.
    pub fn split(&mut self) -> (&mut Port<L, I, O>, &mut Recording) {
        (self.port, &mut self.rec)
    }

    /// The shutdown token.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Keys heard so far on this call.
    pub fn keys_heard(&self) -> u32 {
        self.ears.heard_keys
    }

    /// Takes the oldest key not yet used.
    pub fn take_key(&mut self) -> Option<char> {
        self.ears.keys.pop_front()
    }

    /// Forgets keys typed ahead.
    pub fn clear_keys(&mut self) {
        self.ears.keys.clear();
    }

    fn next_frame(&mut self, chunk: &[i16]) -> Frame {
        let format = self.port.audio_out.format();
        let mut f = Frame::silence(
            format,
            self.seq,
            u64::from(self.seq) * format.frame_samples as u64,
        );
        f.samples_mut()[..chunk.len()].copy_from_slice(chunk);
        self.seq = self.seq.wrapping_add(1);
        f
    }

    /// Plays samples to their last one. With `barge_in`, a key stops the
    /// playback at once (the key stays queued) and `Ok(true)` says so.
    pub async fn play(&mut self, samples: &[i16], barge_in: bool) -> Result<bool, Gone> {
        let n = self.port.audio_out.format().frame_samples;
        let mut chunks = samples.chunks(n);
        loop {
            if barge_in && !self.ears.keys.is_empty() {
                return Ok(true);
            }
            let next = chunks.next().map(|c| self.next_frame(c));
            let last = next.is_none();
            let Port {
                line,
                audio_in,
                audio_out,
            } = &mut *self.port;
            let out = audio_out.write_or_drain(next);
            tokio::pin!(out);
            loop {
                tokio::select! {
                    biased;
                    r = hear(line, audio_in, &mut self.ears, &self.shutdown) => {
                        r?;
                        if barge_in && !self.ears.keys.is_empty() {
                            return Ok(true);
                        }
                    }
                    r = &mut out => match r {
                        Ok(()) if last => return Ok(false),
                        Ok(()) => break,
                        Err(e) => return Err(Gone::Failure(format!("outbound audio: {e}"))),
                    },
                }
            }
        }
    }

    /// Waits up to `timeout` for a key.
    pub async fn wait_key(&mut self, timeout: Duration) -> Result<Option<char>, Gone> {
        if let Some(k) = self.take_key() {
            return Ok(Some(k));
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let Port { line, audio_in, .. } = &mut *self.port;
            tokio::select! {
                biased;
                r = hear(line, audio_in, &mut self.ears, &self.shutdown) => {
                    r?;
                    if let Some(k) = self.take_key() {
                        return Ok(Some(k));
                    }
                }
                () = &mut deadline => return Ok(None),
            }
        }
    }

    /// Records the caller into `message` (a started mono recording) until
    /// `#`, `max`, hang-up, a line failure or a daemon stop, then finishes
    /// it. Returns the message's length and why it ended early, if it did
    /// (the message is kept either way).
    pub async fn record(
        &mut self,
        max: Duration,
        message: &mut Recording,
    ) -> (Duration, Option<Gone>) {
        self.clear_keys();
        self.ears.capture = Some(std::mem::replace(message, Recording::off()));
        let deadline = tokio::time::sleep(max);
        tokio::pin!(deadline);
        let ended = loop {
            let Port { line, audio_in, .. } = &mut *self.port;
            tokio::select! {
                biased;
                r = hear(line, audio_in, &mut self.ears, &self.shutdown) => match r {
                    Ok(()) => {
                        if self.ears.keys.contains(&'#') {
                            self.clear_keys();
                            break Ok(true);
                        }
                    }
                    // Hung up, stopping or a failed line: what was said so
                    // far is kept.
                    Err(e) => break Err(e),
                },
                () = &mut deadline => break Ok(false),
            }
        };
        if let Some(m) = self.ears.capture.take() {
            *message = m;
        }
        let trim = if ended == Ok(true) {
            TERMINATOR_TRIM
        } else {
            0
        };
        let length = message
            .duration()
            .saturating_sub(Duration::from_millis(trim as u64 / 8));
        message.stop_trimmed(trim);
        (length, ended.err())
    }

    /// Plays a call-progress tone until `until` resolves (or a key, with
    /// `stop_on_key`); input is still heard meanwhile (a hang-up ends the
    /// wait with an error).
    pub async fn tone_while<F: Future>(
        &mut self,
        region: ToneRegion,
        tone: ProgressTone,
        until: F,
        stop_on_key: bool,
    ) -> Result<Option<F::Output>, Gone> {
        let format = self.port.audio_out.format();
        let mut tone_gen = ProgressToneGen::new(region, tone, format.sample_rate);
        self.fill_while(|buf| tone_gen.fill(buf), until, stop_on_key)
            .await
    }

    /// Plays `samples` in a loop (music on hold) from `*pos` until `until`
    /// resolves; `*pos` is where to continue next time.
    pub async fn loop_while<F: Future>(
        &mut self,
        samples: &[i16],
        pos: &mut usize,
        until: F,
        stop_on_key: bool,
    ) -> Result<Option<F::Output>, Gone> {
        self.fill_while(|buf| fill_loop(buf, samples, pos), until, stop_on_key)
            .await
    }

    /// Sends generated audio until `until` resolves (`Ok(Some(..))`) or,
    /// with `stop_on_key`, the caller keys something (`Ok(None)`; the key
    /// stays queued).
    async fn fill_while<F: Future>(
        &mut self,
        mut fill: impl FnMut(&mut [i16]),
        until: F,
        stop_on_key: bool,
    ) -> Result<Option<F::Output>, Gone> {
        tokio::pin!(until);
        loop {
            // Generated straight into the frame: nothing allocated per frame.
            let mut frame = self.next_frame(&[]);
            fill(frame.samples_mut());
            let Port {
                line,
                audio_in,
                audio_out,
            } = &mut *self.port;
            let out = audio_out.write_frame(frame);
            tokio::pin!(out);
            loop {
                tokio::select! {
                    biased;
                    v = &mut until => return Ok(Some(v)),
                    r = hear(line, audio_in, &mut self.ears, &self.shutdown) => {
                        r?;
                        if stop_on_key && !self.ears.keys.is_empty() {
                            return Ok(None);
                        }
                    }
                    r = &mut out => match r {
                        Ok(()) => break,
                        Err(e) => return Err(Gone::Failure(format!("outbound audio: {e}"))),
                    },
                }
            }
        }
    }
}
