//! The IVR's ears and mouth on one call: plays audio, hears keys, records
//! messages, rings and bridges other lines.
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
use callbox_hal::{AudioIn, AudioOut, Frame, HangupCause, Line, LineCommand, LineEvent, Port};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::acd::{MonitorMode, WaiterMsg};
use crate::lines::Lease;
use crate::media::{AudioOutExt, KeyBuffer, pending_or};
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

/// The same key from the other source within this window is one press.
const DEDUP: Duration = Duration::from_millis(250);
/// Audio cut from the end of a message ended with `#` (the key's tone).
const TERMINATOR_TRIM: usize = 8000 / 5;

/// Where a key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A line event (RFC 4733, SIP INFO, a digital phone).
    OutOfBand,
    /// A DTMF tone in the audio.
    InBand,
}

/// One key press sent both ways (an event and its tone) counts once.
#[derive(Debug, Default)]
pub struct KeyDedup {
    last: Option<(char, Source, Instant)>,
}

impl KeyDedup {
    /// Whether `d` from `src` is a new press (not the other half of the
    /// last one).
    pub fn accept(&mut self, d: char, src: Source) -> bool {
        let now = Instant::now();
        if let Some((k, s, at)) = self.last
            && k == d
            && s != src
            && now.duration_since(at) < DEDUP
        {
            return false;
        }
        self.last = Some((d, src, now));
        true
    }
}

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

/// How a bridge ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeEnd {
    /// The caller (first port) hung up.
    CallerHungUp,
    /// The other party hung up.
    OtherHungUp,
    /// The daemon is stopping.
    Shutdown,
    /// A line or its audio failed.
    Failure(String),
}

/// What an agent asked for during a supervised bridge, ending their part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAsks {
    /// A blind transfer to this agent number.
    Transfer(String),
    /// An attended transfer: consult this agent first.
    Consult(String),
}

/// Connects two answered ports frame by frame until one side hangs up.
///
/// Bridges forward each frame as it arrives with `offer_frame`: a frame the
/// other side has no room for is dropped at once, as a jitter buffer would,
/// so neither a far end that stopped reading nor the phase between the two
/// lines' clocks holds up reading the other side.
/// Keys from the second port (an agent calling back, a station) that form
/// a recording code pause or start the recording.
pub async fn bridge<L1, I1, O1, L2, I2, O2>(
    a: &mut Port<L1, I1, O1>,
    b: &mut Port<L2, I2, O2>,
    rec: &mut Recording,
    shutdown: &CancellationToken,
) -> BridgeEnd
where
    L1: Line,
    I1: AudioIn,
    O1: AudioOut,
    L2: Line,
    I2: AudioIn,
    O2: AudioOut,
{
    let mut keys = KeyBuffer::default();
    // One registration for the whole call, not one per frame.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        tokio::select! {
            biased;
            () = &mut cancelled => return BridgeEnd::Shutdown,
            ev = a.line.next_event() => match ev {
                Ok(LineEvent::Hangup(_)) => return BridgeEnd::CallerHungUp,
                Ok(_) => {}
                Err(e) => return BridgeEnd::Failure(format!("caller line: {e}")),
            },
            ev = b.line.next_event() => match ev {
                Ok(LineEvent::Hangup(_)) => return BridgeEnd::OtherHungUp,
                Ok(LineEvent::Digit(d)) => keys.push(d),
                Ok(_) => {}
                Err(e) => return BridgeEnd::Failure(format!("connected line: {e}")),
            },
            () = keys.complete() => {
                let typed = keys.take();
                if !rec.agent_code(&typed) {
                    tracing::debug!(keys = %typed, "keys during the call; not a recording code");
                }
            },
            r = a.audio_in.read_frame() => match r {
                Ok(f) => {
                    rec.caller(&f);
                    let _ = b.audio_out.offer_frame(f);
                }
                Err(e) => return BridgeEnd::Failure(format!("caller audio: {e}")),
            },
            r = b.audio_in.read_frame() => match r {
                Ok(f) => {
                    rec.other(&f);
                    let _ = a.audio_out.offer_frame(f);
                }
                Err(e) => return BridgeEnd::Failure(format!("connected audio: {e}")),
            },
        }
    }
}

/// What one turn of the supervised bridge loop brought.
enum Turn<L, I, O> {
    End(BridgeEnd),
    SupGone,
    Join(MonitorMode, Lease<L, I, O>),
    FromCaller(Frame),
    FromAgent(Frame),
    FromSup(Frame),
    /// A key from the agent (`None`: a hook flash).
    AgentKey(Option<char>),
    KeysDone,
    Nothing,
}

/// Fills `buf` with `music` played in a loop from `pos` (silence without
/// music), advancing `pos`.
fn fill_loop(buf: &mut [i16], music: &[i16], pos: &mut usize) {
    if music.is_empty() {
        buf.fill(0);
        return;
    }
    for s in buf {
        *pos %= music.len();
        *s = music[*pos];
        *pos += 1;
    }
}

/// Adds `b` into `a`, saturating (two talkers on one line).
fn mix(a: &Frame, b: Option<&Frame>) -> Frame {
    let mut out = *a;
    if let Some(b) = b {
        for (x, y) in out.samples_mut().iter_mut().zip(b.samples()) {
            *x = x.saturating_add(*y);
        }
    }
    out
}

/// [`bridge`] between a caller (`a`) and an agent (`b`) that a supervisor
/// may join through `monitors`: listening (hears both), whispering (the
/// agent also hears the supervisor) or barging in (everyone hears
/// everyone). The supervisor leaves by hanging up; the call goes on.
///
/// With `transfer`, the agent transfers the caller by keying that code and
/// an agent number (or a hook flash and the number); the bridge then ends
/// with [`AgentAsks::Transfer`] (`Err`).
///
/// A hook flash with no number after it puts the caller on hold (they hear
/// `hold_music`, the agent hears nothing from them); the next flash takes
/// the caller back.
pub async fn bridge_supervised<L, I, O>(
    a: &mut Port<L, I, O>,
    b: &mut Port<L, I, O>,
    monitors: &mut tokio::sync::mpsc::Receiver<WaiterMsg<L, I, O>>,
    codes: Option<&crate::acd::config::Codes>,
    hold_music: &[i16],
    rec: &mut Recording,
    shutdown: &CancellationToken,
) -> Result<BridgeEnd, AgentAsks>
where
    L: Line,
    I: AudioIn,
    O: AudioOut,
{
    let mut sup: Option<(Lease<L, I, O>, MonitorMode)> = None;
    let mut last_caller: Option<Frame> = None;
    let mut last_sup: Option<Frame> = None;
    // Keys the agent sends (out of band), complete after a quiet moment.
    let mut keys = KeyBuffer::default();
    let mut on_hold = false;
    let mut hold_pos = 0usize;
    let mut flashed = false;
    // One registration for the whole call, not one per frame.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let end = loop {
        let turn = {
            let sp = sup.as_mut().map(|(l, _)| l.port());
            let (sup_line, sup_in) = match sp {
                Some(p) => (Some(&mut p.line), Some(&mut p.audio_in)),
                None => (None, None),
            };
            tokio::select! {
                biased;
                () = &mut cancelled => Turn::End(BridgeEnd::Shutdown),
                ev = a.line.next_event() => match ev {
                    Ok(LineEvent::Hangup(_)) => Turn::End(BridgeEnd::CallerHungUp),
                    Ok(_) => Turn::Nothing,
                    Err(e) => Turn::End(BridgeEnd::Failure(format!("caller line: {e}"))),
                },
                ev = b.line.next_event() => match ev {
                    Ok(LineEvent::Hangup(_)) => Turn::End(BridgeEnd::OtherHungUp),
                    Ok(LineEvent::Digit(d)) => Turn::AgentKey(Some(d)),
                    Ok(LineEvent::HookFlash) => Turn::AgentKey(None),
                    Ok(_) => Turn::Nothing,
                    Err(e) => Turn::End(BridgeEnd::Failure(format!("connected line: {e}"))),
                },
                () = keys.complete() => Turn::KeysDone,
                ev = pending_or(sup_line.map(|l| l.next_event())) => match ev {
                    Ok(LineEvent::Hangup(_)) | Err(_) => Turn::SupGone,
                    Ok(_) => Turn::Nothing,
                },
                m = monitors.recv() => match m {
                    Some(WaiterMsg::Monitor { mode, lease }) => Turn::Join(mode, lease),
                    _ => Turn::Nothing,
                },
                // The supervisor's audio first: it is only stored, and
                // behind two paced writers it would never get a turn.
                r = pending_or(sup_in.map(|i| i.read_frame())) => match r {
                    Ok(f) => Turn::FromSup(f),
                    Err(_) => Turn::SupGone,
                },
                r = a.audio_in.read_frame() => match r {
                    Ok(f) => Turn::FromCaller(f),
                    Err(e) => Turn::End(BridgeEnd::Failure(format!("caller audio: {e}"))),
                },
                r = b.audio_in.read_frame() => match r {
                    Ok(f) => Turn::FromAgent(f),
                    Err(e) => Turn::End(BridgeEnd::Failure(format!("connected audio: {e}"))),
                },
            }
        };
        let mode = sup.as_ref().map(|(_, m)| *m);
        match turn {
            Turn::End(e) => break Ok(e),
            Turn::Nothing => {}
            Turn::SupGone => {
                if let Some((mut l, _)) = sup.take() {
                    let _ = l
                        .port()
                        .line
                        .command(LineCommand::Hangup(HangupCause::Normal))
                        .await;
                }
                last_sup = None;
            }
            Turn::Join(m, lease) => {
                if sup.is_none() {
                    tracing::info!(mode = ?m, "supervisor joins the call");
                    sup = Some((lease, m));
                }
                // A second supervisor is refused: dropping the lease hands
                // the station back.
            }
            Turn::FromCaller(f) if on_hold => {
                rec.caller(&f);
                last_caller = Some(f);
            }
            Turn::FromAgent(f) if on_hold => {
                // The agent's frames pace the music the held caller hears.
                let mut music = f;
                fill_loop(music.samples_mut(), hold_music, &mut hold_pos);
                rec.other(&music);
                let _ = a.audio_out.offer_frame(music);
            }
            Turn::FromCaller(f) => {
                // The agent hears the caller, and the supervisor when
                // whispering or barging in.
                let whisper = matches!(mode, Some(MonitorMode::Whisper | MonitorMode::Barge));
                let to_agent = if whisper {
                    mix(&f, last_sup.as_ref())
                } else {
                    f
                };
                let _ = b.audio_out.offer_frame(to_agent);
                rec.caller(&f);
                last_caller = Some(f);
            }
            Turn::FromAgent(f) => {
                let barge = mode == Some(MonitorMode::Barge);
                let to_caller = if barge { mix(&f, last_sup.as_ref()) } else { f };
                rec.other(&to_caller);
                let _ = a.audio_out.offer_frame(to_caller);
                // The supervisor hears both sides, mixed.
                if let Some((l, _)) = sup.as_mut() {
                    let both = mix(&f, last_caller.as_ref());
                    let _ = l.port().audio_out.offer_frame(both);
                }
            }
            Turn::FromSup(f) => last_sup = Some(f),
            Turn::AgentKey(k) => {
                if let Some(code) = codes.map(|c| c.transfer.as_str()) {
                    match k {
                        // A flash starts a transfer: what follows is the
                        // target (nothing: hold).
                        None => {
                            keys.set(code);
                            flashed = true;
                        }
                        Some(d) => keys.push(d),
                    }
                }
            }
            Turn::KeysDone => {
                let typed = keys.take();
                let flashed = std::mem::take(&mut flashed);
                if rec.agent_code(&typed) {
                    continue;
                }
                if let Some(target) = codes.and_then(|c| typed.strip_prefix(c.consult.as_str()))
                    && !target.is_empty()
                {
                    break Err(AgentAsks::Consult(target.to_string()));
                }
                if let Some(target) = codes.and_then(|c| typed.strip_prefix(c.transfer.as_str())) {
                    if !target.is_empty() {
                        break Err(AgentAsks::Transfer(target.to_string()));
                    }
                    if flashed {
                        // A flash and nothing else: hold, or back from hold.
                        on_hold = !on_hold;
                        tracing::info!(on_hold, "agent flashed");
                        continue;
                    }
                }
                tracing::info!(keys = %typed, "agent keyed digits during the call; not a transfer");
            }
        }
    };
    if let Some((mut l, _)) = sup.take() {
        let _ = l
            .port()
            .line
            .command(LineCommand::Hangup(HangupCause::Normal))
            .await;
    }
    end
}

/// How a consultation (attended transfer) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsultEnd {
    /// The agent hung up while talking to the target: hand the caller over.
    Complete,
    /// Back to the caller: the agent flashed, or the target did not answer
    /// or hung up.
    Back,
    /// The agent hung up before the target answered.
    AgentLeft,
    /// The caller hung up.
    CallerHungUp,
    /// The daemon is stopping or a line failed.
    Stop(BridgeEnd),
}

enum CTurn {
    End(ConsultEnd),
    CallerFrame(Frame),
    AgentFrame(Frame),
    TargetFrame(Frame),
    Answered,
    Nothing,
}

/// The agent consults the target (rung already) while the caller hears
/// `hold_music`: ring-back until the target answers within `ring_timeout`,
/// then agent and target talk.
pub async fn consult<L, I, O>(
    caller: &mut Port<L, I, O>,
    agent: &mut Port<L, I, O>,
    target: &mut Port<L, I, O>,
    hold_music: &[i16],
    ring_timeout: Duration,
    rec: &mut Recording,
    shutdown: &CancellationToken,
) -> ConsultEnd
where
    L: Line,
    I: AudioIn,
    O: AudioOut,
{
    let deadline = tokio::time::Instant::now() + ring_timeout;
    let mut talking = false;
    let mut pos = 0usize;
    loop {
        let turn = tokio::select! {
            biased;
            () = shutdown.cancelled() => CTurn::End(ConsultEnd::Stop(BridgeEnd::Shutdown)),
            ev = caller.line.next_event() => match ev {
                Ok(LineEvent::Hangup(_)) => CTurn::End(ConsultEnd::CallerHungUp),
                Ok(_) => CTurn::Nothing,
                Err(e) => CTurn::End(ConsultEnd::Stop(BridgeEnd::Failure(format!("caller line: {e}")))),
            },
            ev = agent.line.next_event() => match ev {
                Ok(LineEvent::Hangup(_)) if talking => CTurn::End(ConsultEnd::Complete),
                Ok(LineEvent::Hangup(_)) => CTurn::End(ConsultEnd::AgentLeft),
                Ok(LineEvent::HookFlash) => CTurn::End(ConsultEnd::Back),
                Ok(_) => CTurn::Nothing,
                Err(e) => CTurn::End(ConsultEnd::Stop(BridgeEnd::Failure(format!("agent line: {e}")))),
            },
            ev = target.line.next_event() => match ev {
                Ok(LineEvent::Answered) => CTurn::Answered,
                Ok(LineEvent::Hangup(_)) | Err(_) => CTurn::End(ConsultEnd::Back),
                Ok(_) => CTurn::Nothing,
            },
            () = tokio::time::sleep_until(deadline), if !talking => CTurn::End(ConsultEnd::Back),
            r = target.audio_in.read_frame() => match r {
                Ok(f) => CTurn::TargetFrame(f),
                Err(_) => CTurn::End(ConsultEnd::Back),
            },
            r = caller.audio_in.read_frame() => match r {
                Ok(f) => CTurn::CallerFrame(f),
                Err(e) => CTurn::End(ConsultEnd::Stop(BridgeEnd::Failure(format!("caller audio: {e}")))),
            },
            r = agent.audio_in.read_frame() => match r {
                Ok(f) => CTurn::AgentFrame(f),
                Err(e) => CTurn::End(ConsultEnd::Stop(BridgeEnd::Failure(format!("agent audio: {e}")))),
            },
        };
        match turn {
            CTurn::End(e) => return e,
            CTurn::Nothing => {}
            CTurn::Answered => talking = true,
            CTurn::CallerFrame(heard) => {
                // The held caller's own frames pace the music they hear.
                let mut music = heard;
                fill_loop(music.samples_mut(), hold_music, &mut pos);
                // The recording goes on through the consultation: the
                // caller and the music they hear.
                rec.other(&music);
                rec.caller(&heard);
                let _ = caller.audio_out.offer_frame(music);
            }
            CTurn::AgentFrame(f) if talking => {
                let _ = target.audio_out.offer_frame(f);
            }
            CTurn::AgentFrame(_) => {}
            CTurn::TargetFrame(f) if talking => {
                let _ = agent.audio_out.offer_frame(f);
            }
            CTurn::TargetFrame(_) => {}
        }
    }
}
