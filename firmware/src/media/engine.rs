//! The media engine: one task that moves every line's audio, once per
//! 20 ms tick.
//!
//! The engine owns the audio of every port for the life of the daemon (a
//! *leg* per line). Each tick it reads what has arrived on every leg
//! (`AudioIn::try_read_frame`, never waiting), runs key detection and
//! message capture on the legs that ask for them, then writes to every leg
//! what it should hear: a prompt, a call-progress tone, music, the mix of
//! other legs (a bridge, a conference with a supervisor) or nothing, and
//! feeds the recording taps. Control logic — call flows, IVR nodes, the
//! ACD — never touches a frame: it sends commands through a [`Leg`] and
//! awaits [`LegEvent`]s (a key, a prompt played to its end, a failed
//! line), so it wakes per event, not per frame.
//!
//! Ticks sit on the backend's frame grid when it has one
//! ([`callbox_hal::Backend::frame_grid`]): a little after the instant every
//! port's frame is due, so each is read in the tick it arrives. A leg whose
//! backend stalls or fails is that leg's problem only: an empty read skips
//! it, a burst after a stall is taken in extra rounds of the same tick (at
//! most [`MAX_ROUNDS`]), and a failed leg is reported to its listener and
//! no longer read.
//!
//! Per-frame work allocates nothing: frames are fixed-size values, the
//! per-tick scratch is sized once for every leg.

use std::sync::Arc;
use std::time::Duration;

use callbox_hal::dsp::detect::DtmfDetector;
use callbox_hal::dsp::tones::ProgressToneGen;
use callbox_hal::{AudioFormat, AudioIn, AudioOut, Frame};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use super::amd::{Heard, Listener};
use super::fill_loop;
use crate::recorder::Recording;

/// How long after a frame is due on the backend's grid the engine reads
/// it: a frame is delivered at its period's end (a sound card's period),
/// so right after; the margin covers the timer's millisecond rounding,
/// well inside what counts as late (the simulator's `LATE_AFTER`, 5 ms).
pub const TICK_AFTER_GRID: Duration = Duration::from_millis(1);
/// Frames taken from one leg in one tick at most: a backend that stalled
/// delivers its backlog at once, and the engine catches up over a few ticks
/// rather than spend one tick on one leg.
pub const MAX_ROUNDS: usize = 4;
/// Every this many ticks the engine looks for a backlog on every leg even
/// when nothing suggests one (a far end that delivered a burst).
const BACKLOG_CHECK_EVERY: u64 = 25;
/// Ticks from writing a prompt's last frame to saying it was played: the
/// far end takes it in the next tick and hears it for one frame more, so a
/// hang-up right after never clips it.
const PLAY_TAIL_TICKS: u8 = 2;

/// What a leg hears.
#[derive(Debug)]
pub enum Hears {
    /// Nothing is written: the line hears silence.
    Nothing,
    /// A prompt, to its last sample; `id` comes back in
    /// [`LegEvent::PlayDone`]. With `barge_in`, a key heard in the audio
    /// stops it at once.
    Play {
        /// Names this playback in its `PlayDone`.
        id: u64,
        /// The audio.
        samples: Arc<[i16]>,
        /// Whether an in-band key stops it.
        barge_in: bool,
    },
    /// A call-progress tone (ring-back, dial tone…), until replaced.
    Tone(Box<ProgressToneGen>),
    /// Music in a loop from `pos`, until replaced; the position reached is
    /// the answer of the command that replaces it.
    Music {
        /// The music.
        samples: Arc<[i16]>,
        /// Where to start.
        pos: usize,
    },
    /// What the given legs say, mixed (a bridge: the other party; with a
    /// supervisor: the two others). Written as their frames arrive.
    Legs(usize, Option<usize>),
    /// A conference room: what every other leg in `room` says, mixed (the
    /// leg's own voice left out). A `muted` leg hears the room but is not
    /// heard in it.
    Room {
        /// The room.
        room: u32,
        /// Whether the leg's voice is left out of the room.
        muted: bool,
    },
}

/// What the engine tells a leg's listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    /// A key heard in the leg's audio (DTMF), with key detection on.
    Key(char),
    /// Prompt `id` was played to its end, or stopped by a key.
    PlayDone {
        /// The playback.
        id: u64,
        /// Whether a key stopped it.
        interrupted: bool,
    },
    /// The leg's audio failed; nothing more is read from or written to it.
    Failed(super::LineFailure),
}

/// A command to the engine.
#[derive(Debug)]
enum Cmd {
    Listen {
        leg: usize,
        to: Option<mpsc::UnboundedSender<LegEvent>>,
        keys: bool,
    },
    Hear {
        leg: usize,
        hears: Hears,
        /// Answered with the position the music that was playing reached.
        reply: Option<oneshot::Sender<usize>>,
    },
    Tap {
        leg: usize,
        rec: Recording,
    },
    Untap {
        leg: usize,
        reply: oneshot::Sender<Option<Recording>>,
    },
    Capture {
        leg: usize,
        rec: Recording,
    },
    EndCapture {
        leg: usize,
        reply: oneshot::Sender<Option<Recording>>,
    },
    RecCode {
        leg: usize,
        code: String,
        reply: oneshot::Sender<bool>,
    },
    Counters {
        reply: oneshot::Sender<Counters>,
    },
    Analyse {
        leg: usize,
        listener: Listener,
        reply: oneshot::Sender<Heard>,
    },
}

impl Cmd {
    /// The leg a command is about.
    fn leg(&self) -> Option<usize> {
        match self {
            Cmd::Listen { leg, .. }
            | Cmd::Hear { leg, .. }
            | Cmd::Tap { leg, .. }
            | Cmd::Untap { leg, .. }
            | Cmd::Capture { leg, .. }
            | Cmd::EndCapture { leg, .. }
            | Cmd::RecCode { leg, .. }
            | Cmd::Analyse { leg, .. } => Some(*leg),
            Cmd::Counters { .. } => None,
        }
    }
}

/// What the engine has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Ticks run.
    pub ticks: u64,
    /// Frames read from all legs.
    pub frames_in: u64,
    /// Frames written to all legs.
    pub frames_out: u64,
    /// Frames a leg's playout buffer had no room for (dropped).
    pub frames_dropped: u64,
    /// Ticks that started later than one frame period after they were due.
    pub ticks_late: u64,
}

/// Sends commands to the engine; cheap to clone. The engine runs until
/// every handle (and every [`Leg`]) is gone.
#[derive(Debug, Clone)]
pub struct MediaHandle {
    tx: mpsc::UnboundedSender<Cmd>,
}

impl MediaHandle {
    /// What the engine has done so far; `None` once it has stopped.
    pub async fn counters(&self) -> Option<Counters> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Cmd::Counters { reply }).ok()?;
        rx.await.ok()
    }
}

/// One line's audio in the engine, as control logic sees it.
///
/// Commands are queued and carried out before the next tick, in order;
/// sending never waits (a stopped engine ignores them).
#[derive(Debug)]
pub struct Leg {
    id: usize,
    media: MediaHandle,
}

impl Leg {
    /// The leg's index in the engine (the port's, in backend order).
    pub fn id(&self) -> usize {
        self.id
    }

    fn send(&self, cmd: Cmd) {
        // Only a stopped engine refuses: the daemon is then stopping too.
        let _ = self.media.tx.send(cmd);
    }

    /// Sends this leg's events to `to` from now on (`None`: to nobody),
    /// with in-band key detection on or off.
    pub fn listen(&self, to: Option<mpsc::UnboundedSender<LegEvent>>, keys: bool) {
        self.send(Cmd::Listen {
            leg: self.id,
            to,
            keys,
        });
    }

    /// What the leg hears from the next tick on.
    pub fn hear(&self, hears: Hears) {
        self.send(Cmd::Hear {
            leg: self.id,
            hears,
            reply: None,
        });
    }

    /// Like [`Leg::hear`]; answers where the music playing until now had
    /// got to (0 when none was).
    pub async fn hear_instead(&self, hears: Hears) -> usize {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Hear {
            leg: self.id,
            hears,
            reply: Some(reply),
        });
        rx.await.unwrap_or(0)
    }

    /// Records this leg's call: what the leg says on the caller's channel,
    /// what it hears on the other, until [`Leg::untap`].
    pub fn tap(&self, rec: Recording) {
        self.send(Cmd::Tap { leg: self.id, rec });
    }

    /// Takes the recording back (`None` if none was tapped or the engine
    /// has stopped).
    pub async fn untap(&self) -> Option<Recording> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Untap {
            leg: self.id,
            reply,
        });
        rx.await.ok().flatten()
    }

    /// Records what the leg says into `rec` (a message), until
    /// [`Leg::end_capture`].
    pub fn capture(&self, rec: Recording) {
        self.send(Cmd::Capture { leg: self.id, rec });
    }

    /// Takes the message back.
    pub async fn end_capture(&self) -> Option<Recording> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::EndCapture {
            leg: self.id,
            reply,
        });
        rx.await.ok().flatten()
    }

    /// Runs `listener` on what the leg says from the next frame on; its
    /// answer comes once. A new one replaces one still listening (whose
    /// receiver then sees its sender dropped).
    pub fn analyse(&self, listener: Listener) -> oneshot::Receiver<Heard> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Analyse {
            leg: self.id,
            listener,
            reply,
        });
        rx
    }

    /// Hands keys typed during the call to the tapped recording: whether
    /// they were one of its codes (pause, resume, start on demand).
    pub async fn recording_code(&self, code: &str) -> bool {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::RecCode {
            leg: self.id,
            code: code.to_string(),
            reply,
        });
        rx.await.unwrap_or(false)
    }
}

impl Drop for Leg {
    fn drop(&mut self) {
        // A leg whose user is gone hears nothing and tells nobody.
        self.send(Cmd::Listen {
            leg: self.id,
            to: None,
            keys: false,
        });
        self.send(Cmd::Hear {
            leg: self.id,
            hears: Hears::Nothing,
            reply: None,
        });
    }
}

/// One leg inside the engine.
struct Slot<I, O> {
    input: I,
    output: O,
    format: AudioFormat,
    failed: bool,
    to: Option<mpsc::UnboundedSender<LegEvent>>,
    /// Boxed: most legs have none, and a slot stays small.
    keys: Option<Box<DtmfDetector>>,
    hears: Hears,
    tap: Option<Recording>,
    capture: Option<Recording>,
    seq: u32,
    /// Samples of the current prompt written so far.
    played: usize,
    /// A prompt's last frame was written: ticks until `PlayDone`, and its id.
    tail: Option<(u8, u64)>,
    /// Listening to what the leg says for an answer (answering-machine
    /// detection); boxed, like `keys`.
    analyse: Option<Box<(Listener, oneshot::Sender<Heard>)>>,
}

impl<I, O> Slot<I, O> {
    /// Whether anything is asked of this leg: keys to listen for, a sound
    /// to play, a recording to feed, a prompt's end to report. While no
    /// leg is busy the engine does not tick.
    fn busy(&self) -> bool {
        self.keys.is_some()
            || !matches!(self.hears, Hears::Nothing)
            || self.tap.is_some()
            || self.capture.is_some()
            || self.tail.is_some()
            || self.analyse.is_some()
    }

    fn tell(&self, ev: LegEvent) {
        if let Some(to) = &self.to {
            let _ = to.send(ev);
        }
    }

    /// Message capture and (`keys_in_band`) key detection on what the leg
    /// said.
    fn take_in(&mut self, f: &Frame, keys_in_band: bool) {
        if let Some(c) = self.capture.as_mut() {
            c.mono(f);
        }
        if let Some(a) = self.analyse.as_mut() {
            let ms = (f.samples().len() as u64 * 1000) / u64::from(self.format.sample_rate.max(1));
            if let Some(heard) = a.0.feed(f.samples(), ms)
                && let Some(a) = self.analyse.take()
            {
                let _ = a.1.send(heard);
            }
        }
        if !keys_in_band {
            return;
        }
        let Some(key) = self.keys.as_mut().and_then(|d| d.process(f.samples())) else {
            return;
        };
        self.tell(LegEvent::Key(key));
        if let Hears::Play {
            id, barge_in: true, ..
        } = self.hears
        {
            self.hears = Hears::Nothing;
            self.tell(LegEvent::PlayDone {
                id,
                interrupted: true,
            });
        }
    }

    /// A frame of generated audio, numbered in this leg's sequence.
    fn next_frame(&mut self) -> Frame {
        let f = Frame::silence(
            self.format,
            self.seq,
            u64::from(self.seq) * self.format.frame_samples as u64,
        );
        self.seq = self.seq.wrapping_add(1);
        f
    }
}

/// The engine: every leg's audio and what each hears.
pub struct Engine<I, O> {
    legs: Vec<Slot<I, O>>,
    /// This round's frame from each leg.
    heard: Vec<Option<Frame>>,
    rx: mpsc::UnboundedReceiver<Cmd>,
    counters: Counters,
    /// Legs that are [`Slot::busy`].
    busy: usize,
    /// The last tick found frames waiting behind the first.
    backlog: bool,
}

impl<I, O> std::fmt::Debug for Engine<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("legs", &self.legs.len())
            .finish_non_exhaustive()
    }
}

/// An engine over `ports`' audio (in order: leg `i` is port `i`), its
/// handle and one [`Leg`] per port.
pub fn engine<I: AudioIn, O: AudioOut>(
    ports: Vec<(I, O)>,
) -> (Engine<I, O>, MediaHandle, Vec<Leg>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let media = MediaHandle { tx };
    let legs: Vec<Slot<I, O>> = ports
        .into_iter()
        .map(|(input, output)| Slot {
            format: output.format(),
            input,
            output,
            failed: false,
            to: None,
            keys: None,
            hears: Hears::Nothing,
            tap: None,
            capture: None,
            seq: 0,
            played: 0,
            tail: None,
            analyse: None,
        })
        .collect();
    let handles = (0..legs.len())
        .map(|id| Leg {
            id,
            media: media.clone(),
        })
        .collect();
    let heard = vec![None; legs.len()];
    let engine = Engine {
        legs,
        heard,
        rx,
        counters: Counters::default(),
        busy: 0,
        backlog: false,
    };
    (engine, media, handles)
}

impl<I: AudioIn, O: AudioOut> Engine<I, O> {
    /// Runs until every handle is gone: a tick every frame period on the
    /// `grid` (the backend's, or one of its own), commands in between.
    pub async fn run(mut self, grid: Option<Instant>) {
        let period = AudioFormat::NARROWBAND.frame_duration();
        let epoch = grid.unwrap_or_else(Instant::now);
        let first =
            callbox_hal::audio::next_on_grid(epoch, Instant::now(), period) + TICK_AFTER_GRID;
        let mut tick = tokio::time::interval_at(first, period);
        // A tick that could not run on time is not run twice: the legs'
        // backlog is taken in extra rounds of the next one.
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            // An idle box (no call has media) does not tick: no wake-ups,
            // and in virtual time the clock jumps to the next event.
            let ticking = self.busy > 0;
            tokio::select! {
                biased;
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => {
                        self.command(cmd);
                        if !ticking && self.busy > 0 {
                            // Waking up: the next tick is the grid's, not
                            // one at once (it would write a frame ahead of
                            // the far end's clock).
                            let next = callbox_hal::audio::next_on_grid(epoch, Instant::now(), period);
                            tick.reset_at(next + TICK_AFTER_GRID);
                        }
                    }
                    None => break,
                },
                due = tick.tick(), if ticking => {
                    let late = due.elapsed() > period;
                    if late {
                        self.counters.ticks_late += 1;
                    }
                    self.tick(late);
                }
            }
        }
    }

    /// Runs on a thread of its own until every handle is gone (real time):
    /// a tick every frame period on the `grid`, slept to with the
    /// operating system's timer (a fraction of a millisecond off, where
    /// tokio's timer rounds to whole milliseconds); the commands that came
    /// meanwhile are carried out before each tick. Idle (no leg busy), it
    /// waits for the next command.
    fn run_thread(mut self, grid: Option<Instant>) {
        let period = AudioFormat::NARROWBAND.frame_duration();
        let epoch = grid.unwrap_or_else(Instant::now);
        let mut next: Option<Instant> = None;
        loop {
            loop {
                match self.rx.try_recv() {
                    Ok(cmd) => self.command(cmd),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            if self.busy == 0 {
                next = None;
                match self.rx.blocking_recv() {
                    Some(cmd) => {
                        self.command(cmd);
                        continue;
                    }
                    None => return,
                }
            }
            let due = *next.get_or_insert_with(|| {
                callbox_hal::audio::next_on_grid(epoch, Instant::now(), period) + TICK_AFTER_GRID
            });
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let late = due.elapsed() > period;
            if late {
                self.counters.ticks_late += 1;
            }
            self.tick(late);
            // A tick that could not run on time is not run twice: the
            // legs' backlog is taken in extra rounds of the next one.
            let mut after = due + period;
            let now = Instant::now();
            while after + period <= now {
                after += period;
            }
            next = Some(after);
        }
    }

    /// Carries out a command and keeps the count of busy legs.
    fn command(&mut self, cmd: Cmd) {
        let leg = cmd.leg();
        let was = leg.and_then(|l| self.legs.get(l)).is_some_and(Slot::busy);
        self.apply(cmd);
        let now = leg.and_then(|l| self.legs.get(l)).is_some_and(Slot::busy);
        self.busy = (self.busy + usize::from(now)).saturating_sub(usize::from(was));
    }

    fn apply(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Listen { leg, to, keys } => {
                if let Some(s) = self.legs.get_mut(leg) {
                    s.to = to;
                    // A new listener starts with a detector of its own: no
                    // half-heard tone carries over from the last one.
                    s.keys = keys.then(|| Box::new(DtmfDetector::new(s.format.sample_rate)));
                }
            }
            Cmd::Hear { leg, hears, reply } => {
                let Some(s) = self.legs.get_mut(leg) else {
                    return;
                };
                let was = std::mem::replace(&mut s.hears, hears);
                s.played = 0;
                if !matches!(s.hears, Hears::Nothing) {
                    // A new sound: the end of the last prompt no longer
                    // matters to anyone.
                    s.tail = None;
                }
                if let Some(r) = reply {
                    let pos = match was {
                        Hears::Music { pos, .. } => pos,
                        _ => 0,
                    };
                    let _ = r.send(pos);
                }
            }
            Cmd::Tap { leg, rec } => {
                if let Some(s) = self.legs.get_mut(leg) {
                    s.tap = Some(rec);
                }
            }
            Cmd::Untap { leg, reply } => {
                let _ = reply.send(self.legs.get_mut(leg).and_then(|s| s.tap.take()));
            }
            Cmd::Capture { leg, rec } => {
                if let Some(s) = self.legs.get_mut(leg) {
                    s.capture = Some(rec);
                }
            }
            Cmd::EndCapture { leg, reply } => {
                let _ = reply.send(self.legs.get_mut(leg).and_then(|s| s.capture.take()));
            }
            Cmd::RecCode { leg, code, reply } => {
                let used = self
                    .legs
                    .get_mut(leg)
                    .and_then(|s| s.tap.as_mut())
                    .is_some_and(|r| r.agent_code(&code));
                let _ = reply.send(used);
            }
            Cmd::Counters { reply } => {
                let _ = reply.send(self.counters);
            }
            Cmd::Analyse {
                leg,
                listener,
                reply,
            } => {
                if let Some(s) = self.legs.get_mut(leg) {
                    s.analyse = Some(Box::new((listener, reply)));
                }
            }
        }
    }

    /// One tick: read every leg, act on what was heard, write what each
    /// leg hears. Again, for the legs that had a frame, when a backlog is
    /// likely: the tick came late, the last one found one, or it is time
    /// for the periodic look.
    fn tick(&mut self, late: bool) {
        self.counters.ticks += 1;
        let look = late || self.backlog || self.counters.ticks.is_multiple_of(BACKLOG_CHECK_EVERY);
        self.backlog = false;
        // Each round writes before it digests what it read (keys, message
        // capture): the packets a tick sends leave at a steady point in it,
        // not after however much of that work the legs before had.
        let mut any = self.read_round(true);
        self.write_round(true);
        self.digest_round();
        for _ in 1..MAX_ROUNDS {
            if !(any && look) {
                break;
            }
            any = self.read_round(false);
            self.backlog |= any;
            self.write_round(false);
            self.digest_round();
        }
        self.end_tick();
    }

    /// Takes at most one frame from every leg (after the first round, only
    /// from the legs that had one in the last: a backlog). Whether any leg
    /// that is not [`AudioIn::paced`] had one (a backlog may be waiting).
    fn read_round(&mut self, first: bool) -> bool {
        let mut n = 0;
        let mut backlog = false;
        for (s, heard) in self.legs.iter_mut().zip(self.heard.iter_mut()) {
            let had = heard.take().is_some();
            // A paced stream has no backlog: one read a tick.
            let paced = s.input.paced();
            if s.failed || (!first && (!had || paced)) {
                continue;
            }
            match s.input.try_read_frame() {
                Ok(Some(f)) => {
                    n += 1;
                    backlog |= !paced;
                    *heard = Some(f);
                }
                Ok(None) => {}
                Err(e) => {
                    s.failed = true;
                    s.tell(LegEvent::Failed(super::LineFailure::hal(
                        "inbound audio",
                        &e,
                    )));
                }
            }
        }
        self.counters.frames_in += n;
        backlog
    }

    /// Acts on what each leg said this round: key detection, message
    /// capture.
    fn digest_round(&mut self) {
        for (s, heard) in self.legs.iter_mut().zip(&self.heard) {
            if let Some(f) = heard {
                let in_band = s.keys.is_some() && s.input.keys_in_band();
                s.take_in(f, in_band);
            }
        }
    }

    /// Writes what each leg hears this round: generated audio once a tick
    /// (`generate`), other legs' audio whenever they said something.
    fn write_round(&mut self, generate: bool) {
        let rooms = room_sums(self.legs.iter().map(|s| &s.hears), &self.heard);
        for i in 0..self.legs.len() {
            let out = match self.legs[i].hears {
                Hears::Nothing => None,
                Hears::Legs(a, b) => mix(&self.heard, a, b),
                Hears::Room { room, muted } => {
                    let own = (!muted).then_some(self.heard[i].as_ref()).flatten();
                    room_mix(&rooms, room, own)
                }
                _ if !generate => None,
                _ => self.generate(i),
            };
            let s = &mut self.legs[i];
            let said = self.heard[i];
            if let Some(tap) = s.tap.as_mut() {
                if let Some(f) = &said {
                    tap.caller(f);
                }
                if let Some(f) = &out {
                    tap.other(f);
                }
            }
            let Some(f) = out else { continue };
            if s.failed {
                continue;
            }
            match s.output.offer_frame(f) {
                Ok(true) => self.counters.frames_out += 1,
                Ok(false) => self.counters.frames_dropped += 1,
                Err(e) => {
                    s.failed = true;
                    s.tell(LegEvent::Failed(super::LineFailure::hal(
                        "outbound audio",
                        &e,
                    )));
                }
            }
        }
    }

    /// The next frame of leg `i`'s prompt, tone or music.
    fn generate(&mut self, i: usize) -> Option<Frame> {
        let s = &mut self.legs[i];
        let mut f = s.next_frame();
        match &mut s.hears {
            Hears::Play { id, samples, .. } => {
                let start = s.played.min(samples.len());
                let end = (start + f.samples().len()).min(samples.len());
                f.samples_mut()[..end - start].copy_from_slice(&samples[start..end]);
                s.played = end;
                if end == samples.len() {
                    s.tail = Some((PLAY_TAIL_TICKS, *id));
                    s.hears = Hears::Nothing;
                }
            }
            Hears::Tone(g) => g.fill(f.samples_mut()),
            Hears::Music { samples, pos } => fill_loop(f.samples_mut(), samples, pos),
            Hears::Nothing | Hears::Legs(..) | Hears::Room { .. } => return None,
        }
        Some(f)
    }

    /// Counts down prompts' tails (telling the listener once one is over)
    /// and counts the busy legs: prompts end and keys stop them during a
    /// tick.
    fn end_tick(&mut self) {
        let mut busy = 0;
        for s in &mut self.legs {
            if let Some((left, id)) = s.tail.as_mut() {
                *left -= 1;
                if *left == 0 {
                    let id = *id;
                    s.tail = None;
                    s.tell(LegEvent::PlayDone {
                        id,
                        interrupted: false,
                    });
                }
            }
            busy += usize::from(s.busy());
        }
        self.busy = busy;
    }
}

/// Starts `engine` on the frame `grid`; the receiver resolves once it has
/// stopped (every handle gone), with every recording tap it held dropped.
///
/// On a multi-thread runtime (real time) the engine gets a thread of its
/// own, `media`, like a sound card's period thread: a tick never waits
/// behind call flows, the store or the fleet link on the runtime's
/// workers. In virtual time (a current-thread runtime, tests) it shares the
/// runtime and its clock.
pub fn spawn<I: AudioIn, O: AudioOut>(
    engine: Engine<I, O>,
    grid: Option<Instant>,
) -> oneshot::Receiver<()> {
    let (done, stopped) = oneshot::channel();
    let real_time = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if !real_time {
        tokio::spawn(async move {
            engine.run(grid).await;
            let _ = done.send(());
        });
        return stopped;
    }
    let spawned = std::thread::Builder::new()
        .name("media".into())
        .spawn(move || {
            // Every call's audio waits on this thread's ticks.
            let prio = callbox_hal::rt::MEDIA_PRIORITY;
            if let Err(e) = callbox_hal::rt::realtime_priority(prio) {
                tracing::info!("media thread at normal priority (no real-time scheduling: {e})");
            }
            engine.run_thread(grid);
            let _ = done.send(());
        });
    if let Err(e) = spawned {
        // Without its thread the engine cannot run: every call would be
        // silent. The box says so loudly; calls still end and are recorded.
        tracing::error!("the media thread did not start: {e}");
    }
    stopped
}

/// Per conference room this round: the sum of what its unmuted legs said
/// (wide, so no talker's voice is clipped before one is taken out), and a
/// frame to shape the output after. Rooms are few: a list, not a map.
fn room_sums<'a>(
    hears: impl Iterator<Item = &'a Hears>,
    heard: &[Option<Frame>],
) -> Vec<(u32, Vec<i32>, Frame)> {
    let mut rooms: Vec<(u32, Vec<i32>, Frame)> = Vec::new();
    for (hears, h) in hears.zip(heard) {
        let (Hears::Room { room, muted: false }, Some(f)) = (hears, h) else {
            continue;
        };
        let at = match rooms.iter().position(|r| r.0 == *room) {
            Some(at) => at,
            None => {
                rooms.push((*room, vec![0; f.samples().len()], *f));
                rooms.len() - 1
            }
        };
        for (acc, x) in rooms[at].1.iter_mut().zip(f.samples()) {
            *acc += i32::from(*x);
        }
    }
    rooms
}

/// What a member of `room` hears: everyone else in it (`own`: what the
/// member said, taken out of the sum); `None` when nobody else spoke.
fn room_mix(rooms: &[(u32, Vec<i32>, Frame)], room: u32, own: Option<&Frame>) -> Option<Frame> {
    let (_, sum, shape) = rooms.iter().find(|r| r.0 == room)?;
    let mut out = *shape;
    let mut any = false;
    for (i, s) in out.samples_mut().iter_mut().enumerate() {
        let mine = own.map_or(0, |f| i32::from(f.samples()[i]));
        let v = sum[i] - mine;
        any |= v != 0;
        *s = v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
    }
    // Only the member spoke: the others hear them, they hear nothing.
    (any || own.is_none()).then_some(out)
}

/// What legs `a` and `b` said this round, mixed; `None` when neither spoke.
fn mix(heard: &[Option<Frame>], a: usize, b: Option<usize>) -> Option<Frame> {
    let fa = heard.get(a).and_then(Option::as_ref);
    let fb = b.and_then(|b| heard.get(b)).and_then(Option::as_ref);
    match (fa, fb) {
        (Some(x), Some(y)) => {
            let mut m = *x;
            for (s, t) in m.samples_mut().iter_mut().zip(y.samples()) {
                *s = s.saturating_add(*t);
            }
            Some(m)
        }
        (x, y) => x.or(y).copied(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use callbox_hal::diag::TomlSource;
    use callbox_hal::registry::{AnyAudioIn, AnyAudioOut, AnyBackend, AnyLine, BackendArgs, open};
    use callbox_hal::sim::{Scenario, SimControl, SimStats};
    use callbox_hal::{Backend, Line, LineCommand, LineEvent, LineInfo, LineKind};

    use super::*;

    /// A trunk with the given calls on it, its line, and its leg in a
    /// running engine.
    fn trunk_with(calls: &str) -> (AnyBackend, AnyLine, Leg, MediaHandle, SimControl) {
        let lines = vec![LineInfo {
            id: "t1".into(),
            kind: LineKind::Trunk,
        }];
        let src = TomlSource::new(Path::new("s.toml"), calls.into());
        let sc = Scenario::from_source(&src, &lines).unwrap();
        let mut hal = open(
            "sim",
            BackendArgs {
                lines,
                scenario: Some(sc),
                board: None,
                ..Default::default()
            },
        )
        .unwrap();
        let ctl = hal.sim_control().unwrap();
        let port = hal.take_ports().pop().unwrap();
        let (engine, media, mut legs) =
            engine::<AnyAudioIn, AnyAudioOut>(vec![(port.audio_in, port.audio_out)]);
        hal.start().unwrap();
        spawn(engine, hal.frame_grid());
        (hal, port.line, legs.pop().unwrap(), media, ctl)
    }

    async fn answer(line: &mut AnyLine) {
        let ev = line.next_event().await.unwrap();
        assert!(matches!(ev, LineEvent::Incoming { .. }), "{ev:?}");
        line.command(LineCommand::Answer).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_in_the_audio_stops_a_barge_in_prompt_and_is_reported() {
        let (_hal, mut line, leg, _media, _ctl) = trunk_with(
            "[[call]]\nat = \"1s\"\nfrom = \"1001\"\nto = \"4000\"\n\
             script = [{ wait = \"500ms\" }, { press = \"5\", via = \"inband\" }, { wait = \"5s\" }]\n",
        );
        answer(&mut line).await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        leg.listen(Some(tx), true);
        let prompt: Arc<[i16]> = vec![1000i16; 8000 * 10].into();
        leg.hear(Hears::Play {
            id: 7,
            samples: prompt,
            barge_in: true,
        });
        let t0 = Instant::now();
        assert_eq!(rx.recv().await, Some(LegEvent::Key('5')));
        assert_eq!(
            rx.recv().await,
            Some(LegEvent::PlayDone {
                id: 7,
                interrupted: true
            })
        );
        // Well before the 10 s prompt's end: the key stopped it.
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_prompt_plays_to_its_last_frame_before_it_is_done() {
        let (_hal, mut line, leg, media, ctl) = trunk_with(
            "[[call]]\nat = \"1s\"\nfrom = \"1001\"\nto = \"4000\"\n\
             script = [{ wait = \"5s\" }]\n",
        );
        answer(&mut line).await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        leg.listen(Some(tx), false);
        // One second of sound: 50 frames.
        let prompt: Arc<[i16]> = vec![3000i16; 8000].into();
        let before = SimStats::get(&ctl.stats().frames_heard);
        leg.hear(Hears::Play {
            id: 1,
            samples: prompt,
            barge_in: false,
        });
        let t0 = Instant::now();
        assert_eq!(
            rx.recv().await,
            Some(LegEvent::PlayDone {
                id: 1,
                interrupted: false
            })
        );
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(1000) && took <= Duration::from_millis(1100),
            "{took:?}"
        );
        // The far end heard every frame of it.
        assert_eq!(SimStats::get(&ctl.stats().frames_heard) - before, 50);
        let c = media.counters().await.unwrap();
        assert_eq!(c.frames_dropped, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_engine_does_not_tick() {
        let (_hal, _line, leg, media, _ctl) = trunk_with("");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(media.counters().await.unwrap().ticks, 0);
        let (tx, _rx) = mpsc::unbounded_channel();
        leg.listen(Some(tx), true);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let ticks = media.counters().await.unwrap().ticks;
        assert!((50..=52).contains(&ticks), "{ticks}");
        // Nothing asked of the leg any more: ticking stops again.
        leg.listen(None, false);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stopped = media.counters().await.unwrap().ticks;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(media.counters().await.unwrap().ticks, stopped);
    }

    #[test]
    fn a_room_member_hears_everyone_else_and_not_themself() {
        let f = |v: i16| {
            let mut f = Frame::silence(AudioFormat::NARROWBAND, 0, 0);
            f.samples_mut().fill(v);
            Some(f)
        };
        let member = |room, muted| Hears::Room { room, muted };
        let legs = [
            member(1, false),
            member(1, false),
            member(1, true),
            member(2, false),
            member(1, false),
        ];
        let heard = vec![f(100), f(20), f(7000), f(5), None];
        let rooms = room_sums(legs.iter(), &heard);
        let level = |i: usize| {
            let Hears::Room { room, muted } = legs[i] else {
                unreachable!()
            };
            let own = (!muted).then_some(heard[i].as_ref()).flatten();
            room_mix(&rooms, room, own).map(|f| f.samples()[0])
        };
        assert_eq!(level(0), Some(20), "the other talker, not itself");
        assert_eq!(level(1), Some(100));
        assert_eq!(level(2), Some(120), "muted: hears all, is heard by none");
        assert_eq!(level(4), Some(120), "silent: hears both talkers");
        assert_eq!(level(3), None, "alone in room 2");
    }

    #[test]
    fn mixing_adds_two_talkers_saturating_and_skips_the_silent() {
        let f = |v: i16| {
            let mut f = Frame::silence(AudioFormat::NARROWBAND, 0, 0);
            f.samples_mut().fill(v);
            Some(f)
        };
        let heard = vec![f(30000), f(10000), None];
        let m = mix(&heard, 0, Some(1)).unwrap();
        assert!(m.samples().iter().all(|&s| s == i16::MAX));
        let m = mix(&heard, 2, Some(1)).unwrap();
        assert!(m.samples().iter().all(|&s| s == 10000));
        assert!(mix(&heard, 2, None).is_none());
    }
}
