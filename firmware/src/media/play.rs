//! Playing to and hearing from one answered call: prompts to their last
//! sample (with barge-in), tones and music while something else happens,
//! keys from both sources, and messages recorded from the caller.
//!
//! [`Media`] is the call flow's side of the call's leg in the media engine
//! ([`super::engine`]): each operation tells the engine what the caller
//! hears and then waits for what matters to the flow — a key, the prompt's
//! end, a hang-up, the daemon's stop — so the flow reads as straight-line
//! async code and wakes per event, never per frame.
//!
//! Keys come two ways: out of band as line events (digital trunks, the
//! sim) and in band as DTMF tones in the caller's audio, found by the
//! engine's detector. A key sent both ways (RFC 2833 style plus audio) is
//! counted once.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use callbox_hal::dsp::tones::{ProgressTone, ProgressToneGen, ToneRegion};
use callbox_hal::{AudioFormat, Line, LineEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::LineFailure;
use super::amd::Heard;
use super::engine::{Hears, LegEvent};
use super::keys::{KeyDedup, Source};
use super::lines::Port;
use crate::recorder::Recording;

/// Why the IVR cannot go on with a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    /// The caller hung up.
    Caller,
    /// The daemon is stopping.
    Shutdown,
    /// The line or its audio failed.
    Failure(LineFailure),
}

/// Audio cut from the end of a message ended with `#` (the key's tone).
const TERMINATOR_TRIM: usize = 8000 / 5;

/// One call's IVR media.
#[derive(Debug)]
pub struct Media<'p, L> {
    port: &'p mut Port<L>,
    events: mpsc::UnboundedReceiver<LegEvent>,
    tx: mpsc::UnboundedSender<LegEvent>,
    /// Whether the engine sends this leg's events here (a bridge takes the
    /// leg over for its length, see [`Media::split`]).
    listening: bool,
    keys: VecDeque<char>,
    dedup: KeyDedup,
    shutdown: CancellationToken,
    plays: u64,
    /// The call's recording tap (off unless a policy or the agent starts
    /// it); the bridges feed it.
    pub rec: Recording,
}

impl<L> Drop for Media<'_, L> {
    fn drop(&mut self) {
        self.port.leg.hear(Hears::Nothing);
        self.port.leg.listen(None, false);
    }
}

impl<'p, L: Line> Media<'p, L> {
    /// Media on an answered call.
    pub fn new(port: &'p mut Port<L>, shutdown: CancellationToken) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let mut m = Media {
            port,
            events,
            tx,
            listening: false,
            keys: VecDeque::new(),
            dedup: KeyDedup::default(),
            shutdown,
            plays: 0,
            rec: Recording::off(),
        };
        m.listen();
        m
    }

    /// Makes sure the engine reports this leg here, keys detected.
    fn listen(&mut self) {
        if !self.listening {
            self.port.leg.listen(Some(self.tx.clone()), true);
            self.listening = true;
        }
    }

    /// The call's port (to hand to a bridge).
    pub fn port(&mut self) -> &mut Port<L> {
        self.listening = false;
        self.port
    }

    /// The call's leg in the engine, to change what it hears; its events
    /// stay with this `Media` (no new listener: a key being heard is not
    /// heard twice).
    pub fn leg(&self) -> &super::engine::Leg {
        &self.port.leg
    }

    /// The call's port and its recording tap, for a bridge. The bridge
    /// takes the leg's events for its length; the next operation here
    /// takes them back.
    pub fn split(&mut self) -> (&mut Port<L>, &mut Recording) {
        self.listening = false;
        (self.port, &mut self.rec)
    }

    /// The shutdown token.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Takes the oldest key not yet used.
    pub fn take_key(&mut self) -> Option<char> {
        self.keys.pop_front()
    }

    /// Forgets keys typed ahead.
    pub fn clear_keys(&mut self) {
        self.keys.clear();
    }

    fn key(&mut self, d: char, src: Source) {
        if self.dedup.accept(d, src) {
            self.keys.push_back(d);
        }
    }

    /// Waits for one input — a line event or an event of the leg — and
    /// takes it in; answers the end of a prompt, which only the waiting
    /// operation knows what to do with.
    async fn hear(&mut self) -> Result<Option<(u64, bool)>, Gone> {
        self.listen();
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => Err(Gone::Shutdown),
            ev = self.port.line.next_event() => match ev {
                Ok(LineEvent::Hangup(_)) => Err(Gone::Caller),
                Ok(LineEvent::Digit(d)) => {
                    self.key(d, Source::OutOfBand);
                    Ok(None)
                }
                Ok(other) => {
                    tracing::debug!(?other, "line event during IVR");
                    Ok(None)
                }
                Err(e) => Err(Gone::Failure(LineFailure::hal("line", &e))),
            },
            ev = self.events.recv() => match ev {
                Some(LegEvent::Key(d)) => {
                    self.key(d, Source::InBand);
                    Ok(None)
                }
                Some(LegEvent::PlayDone { id, interrupted }) => Ok(Some((id, interrupted))),
                Some(LegEvent::Failed(e)) => Err(Gone::Failure(e)),
                // The sender is ours: never closed while we wait.
                None => Err(Gone::Shutdown),
            },
        }
    }

    /// Plays samples to their last one. With `barge_in`, a key stops the
    /// playback at once (the key stays queued) and `Ok(true)` says so. The
    /// audio is shared with the engine, not copied: a loaded prompt plays
    /// as it is.
    pub async fn play(&mut self, samples: Arc<[i16]>, barge_in: bool) -> Result<bool, Gone> {
        if barge_in && !self.keys.is_empty() {
            return Ok(true);
        }
        self.listen();
        self.plays += 1;
        let id = self.plays;
        self.port.leg.hear(Hears::Play {
            id,
            samples,
            barge_in,
        });
        loop {
            let done = match self.hear().await {
                Ok(done) => done,
                Err(g) => {
                    self.port.leg.hear(Hears::Nothing);
                    return Err(g);
                }
            };
            match done {
                Some((done, interrupted)) if done == id => return Ok(interrupted),
                _ if barge_in && !self.keys.is_empty() => {
                    // A key out of band: the engine stops the prompt
                    // before its next frame.
                    self.port.leg.hear(Hears::Nothing);
                    return Ok(true);
                }
                _ => {}
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
            tokio::select! {
                biased;
                r = self.hear() => {
                    r?;
                    if let Some(k) = self.take_key() {
                        return Ok(Some(k));
                    }
                }
                () = &mut deadline => return Ok(None),
            }
        }
    }

    /// Listens to what the far end says with `listener` until it answers
    /// (a hang-up, a line failure or a stop end the wait first).
    pub async fn analyse(&mut self, listener: super::amd::Listener) -> Result<Heard, Gone> {
        self.listen();
        let answer = self.port.leg.analyse(listener);
        tokio::pin!(answer);
        loop {
            tokio::select! {
                biased;
                r = self.hear() => { r?; }
                heard = &mut answer => {
                    // Dropped only by a listener started after this one.
                    return Ok(heard.unwrap_or(Heard::Quiet));
                }
            }
        }
    }

    /// Keys up to `#` (or until none comes for `quiet`), without the `#`:
    /// a PIN. At most 32 keys.
    pub async fn keys_until_hash(&mut self, quiet: Duration) -> Result<String, Gone> {
        let mut keyed = String::new();
        while let Some(k) = self.wait_key(quiet).await? {
            if k == '#' {
                break;
            }
            keyed.push(k);
            if keyed.len() > 32 {
                break;
            }
        }
        Ok(keyed)
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
        self.listen();
        self.port
            .leg
            .capture(std::mem::replace(message, Recording::off()));
        let deadline = tokio::time::sleep(max);
        tokio::pin!(deadline);
        let ended = loop {
            tokio::select! {
                biased;
                r = self.hear() => match r {
                    Ok(_) => {
                        if self.keys.contains(&'#') {
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
        if let Some(m) = self.port.leg.end_capture().await {
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
        let rate = AudioFormat::NARROWBAND.sample_rate;
        let tone_gen = ProgressToneGen::new(region, tone, rate);
        self.sound_while(Hears::Tone(Box::new(tone_gen)), until, stop_on_key)
            .await
            .map(|(v, _)| v)
    }

    /// Plays `samples` in a loop (music on hold) from `*pos` until `until`
    /// resolves; `*pos` is where to continue next time.
    pub async fn loop_while<F: Future>(
        &mut self,
        samples: &Arc<[i16]>,
        pos: &mut usize,
        until: F,
        stop_on_key: bool,
    ) -> Result<Option<F::Output>, Gone> {
        let music = Hears::Music {
            samples: samples.clone(),
            pos: *pos,
        };
        let (v, reached) = self.sound_while(music, until, stop_on_key).await?;
        *pos = reached;
        Ok(v)
    }

    /// The caller hears `sound` until `until` resolves (`Ok(Some(..))`) or,
    /// with `stop_on_key`, the caller keys something (`Ok(None)`; the key
    /// stays queued). Also answers where music had got to.
    async fn sound_while<F: Future>(
        &mut self,
        sound: Hears,
        until: F,
        stop_on_key: bool,
    ) -> Result<(Option<F::Output>, usize), Gone> {
        self.listen();
        self.port.leg.hear(sound);
        tokio::pin!(until);
        let out = loop {
            tokio::select! {
                biased;
                v = &mut until => break Ok(Some(v)),
                r = self.hear() => {
                    if let Err(g) = r {
                        break Err(g);
                    }
                    if stop_on_key && !self.keys.is_empty() {
                        break Ok(None);
                    }
                }
            }
        };
        let reached = self.port.leg.hear_instead(Hears::Nothing).await;
        out.map(|v| (v, reached))
    }
}

/// Waits for the next event of a leg taken over by a bridge: only a
/// failure matters there (keys are not detected on bridged legs).
pub(crate) async fn leg_failed(events: &mut mpsc::UnboundedReceiver<LegEvent>) -> LineFailure {
    loop {
        match events.recv().await {
            Some(LegEvent::Failed(e)) => return e,
            Some(_) => {}
            None => return std::future::pending().await,
        }
    }
}
