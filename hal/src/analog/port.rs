//! The line logic of one analog port: a task per port that turns pin edges
//! and the engine's DSP reports into [`LineEvent`]s, and [`LineCommand`]s
//! into relay and audio actions.
//!
//! A trunk (FXO) announces a call only once the ringing is known to be
//! ringing: a first burst of the right length followed by a caller id, or
//! a second burst after a silence of the right length. A blip, a burst too
//! long or too short, or a wrong silence is no call; three such within a
//! minute raise a `ring_cadence` fault. Once the box has seized the line,
//! busy or congestion tone from the exchange ends the call (analog lines
//! seldom give another hang-up signal).
//!
//! A station (FXS) reports the handset's hook after debouncing: lifted
//! while ringing answers, lifted otherwise is an off-hook for a feature
//! code, down within the flash window is a hook flash, down for longer
//! hangs up. A hook that changes more than a person could move it trips
//! the `flapping` fault and its changes are ignored until it is quiet.
//! Ringing a station drives the ring relay with the site's cadence and
//! sends caller id between the first and second burst.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::board::PinSpec;
use super::engine::{Listen, MediaCmd, MediaReport};
use super::pins::{Edge, InputPin, OutputPin};
use super::signal::{
    Debouncer, FlapGuard, FlashWindow, HookEvent, HookMonitor, RingCadence, RingDetector, RingEvent,
};
use crate::dsp::caller_id::{self, CallerId, CallerIdStandard, MessageFormat};
use crate::dsp::dtmf::ToneGen;
use crate::dsp::tones::ProgressTone;
use crate::line::{HangupCause, LineCommand, LineEvent, LineFault};

/// How long a ring-detect input may be quiet within one burst (a 20 Hz
/// ring signal toggles every 25 ms; two periods of margin).
pub const RING_HOLD: Duration = Duration::from_millis(100);
/// Broken ring cadences within [`BAD_RING_WINDOW`] that raise the fault.
pub const BAD_RINGS: usize = 3;
/// Window for [`BAD_RINGS`].
pub const BAD_RING_WINDOW: Duration = Duration::from_secs(60);
/// Quiet after which a ring-cadence fault clears.
pub const FAULT_CLEAR_AFTER: Duration = Duration::from_secs(300);
/// Hook changes within [`FLAP_WINDOW`] that trip the flapping fault: ten
/// changes in five seconds is five lifts and hang-ups, more than anyone
/// does on purpose.
pub const FLAP_CHANGES: usize = 10;
/// Window for [`FLAP_CHANGES`].
pub const FLAP_WINDOW: Duration = Duration::from_secs(5);
/// Quiet after which a flapping hook is trusted again.
pub const FLAP_QUIET: Duration = Duration::from_secs(10);
/// Wait after seizing a trunk before dialling: exchanges give dial tone
/// within a second.
pub const DIAL_DELAY: Duration = Duration::from_millis(1500);
/// A dialled call with no ringback or busy tone this long after the last
/// digit is taken as answered (many lines give no answer signal at all).
pub const ANSWER_WITHOUT_PROGRESS: Duration = Duration::from_secs(8);
/// Caller id goes this long after the first ring burst ends (Telcordia
/// GR-30: at least 500 ms).
pub const CID_DELAY: Duration = Duration::from_millis(600);

/// A pin with its wiring: logical levels in and out.
#[derive(Debug)]
pub struct Wired<P: ?Sized> {
    /// The pin.
    pub pin: Box<P>,
    /// How it is wired.
    pub spec: PinSpec,
}

impl Wired<dyn OutputPin> {
    /// Drives the logical level (`true` = active).
    pub fn set(&mut self, active: bool) {
        if let Err(e) = self.pin.set(active != self.spec.active_low) {
            tracing::error!("{e}");
        }
    }
}

impl Wired<dyn InputPin> {
    /// The logical level of a physical one.
    pub fn logical(&self, high: bool) -> bool {
        high != self.spec.active_low
    }
    /// The logical level now.
    pub fn read(&self) -> bool {
        self.pin.read().is_ok_and(|h| self.logical(h))
    }
}

/// What every port task has.
#[derive(Debug)]
pub struct PortIo {
    /// Port index (in the engine).
    pub index: usize,
    /// Line id.
    pub line: String,
    /// Events to the firmware.
    pub events: mpsc::Sender<LineEvent>,
    /// The line's health: down while a fault is raised.
    pub status: tokio::sync::watch::Sender<crate::line::LineStatus>,
    /// Commands from the firmware.
    pub commands: mpsc::Receiver<LineCommand>,
    /// Edges of the port's inputs.
    pub edges: mpsc::Receiver<Edge>,
    /// Commands to the engine.
    pub media: std::sync::mpsc::Sender<MediaCmd>,
    /// Reports from the engine.
    pub reports: mpsc::Receiver<MediaReport>,
}

impl PortIo {
    async fn event(&self, ev: LineEvent) {
        tracing::debug!(line = %self.line, ?ev, "line event");
        if let LineEvent::Fault(f) = &ev {
            use crate::line::{Health, LineStatus};
            let now = if f.active {
                LineStatus::new(Health::Down, f.detail.clone())
            } else {
                LineStatus::new(Health::Up, f.detail.clone())
            };
            self.status.send_replace(now);
        }
        let _ = self.events.send(ev).await;
    }

    fn listen(&self, listen: Listen) {
        let _ = self.media.send(MediaCmd::Listen {
            port: self.index,
            listen,
        });
    }

    fn inject(&self, samples: Vec<i16>) {
        let _ = self.media.send(MediaCmd::Inject {
            port: self.index,
            samples,
        });
    }
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

fn earliest(ds: &[Option<Instant>]) -> Instant {
    ds.iter().flatten().copied().min().unwrap_or_else(far)
}

/// DTMF digits as the box dials them: 80 ms of tone, 80 ms of silence,
/// each tone at -8 dBFS (about -5 dBm0, the usual send level).
pub fn dial_samples(number: &str) -> Vec<i16> {
    let mut out = Vec::new();
    for d in number.chars() {
        let Some(mut g) = ToneGen::dtmf(d, 8000, -8.0) else {
            continue;
        };
        let start = out.len();
        out.resize(start + 640, 0);
        g.fill(&mut out[start..start + 640]);
        out.resize(start + 1280, 0);
    }
    out
}

#[derive(Debug, PartialEq, Eq)]
enum Trunk {
    Idle,
    /// Ringing seen; `announced` once the firmware was told.
    Ringing {
        bursts: u32,
        announced: bool,
    },
    /// The box refused the call while it still rings: wait for the end.
    Refused,
    /// Off-hook, dialling: waiting for the digits to go out.
    Dialling,
    /// Digits sent; waiting for progress tones.
    Dialled {
        since: Instant,
        ringback: bool,
    },
    /// Off-hook in a call.
    Talking,
}

/// Runs an FXO port until the firmware drops its line.
pub async fn trunk(
    mut io: PortIo,
    ring_detect: Wired<dyn InputPin>,
    mut hook_relay: Wired<dyn OutputPin>,
    cadence: RingCadence,
    caller_id: bool,
) {
    let mut ring = RingDetector::new(cadence, RING_HOLD);
    let mut state = Trunk::Idle;
    // Broken rings are counted like a flapping hook's changes.
    let mut bad = FlapGuard::new(BAD_RING_WINDOW, BAD_RINGS - 1, FAULT_CLEAR_AFTER);
    let mut dial_at: Option<(Instant, String)> = None;
    hook_relay.set(false);
    loop {
        let answer_by = match state {
            Trunk::Dialled { since, ringback } => Some(
                since
                    + if ringback {
                        // Ringback follows the ring cadence of the
                        // exchange; a second of slack.
                        cadence.on + cadence.off + Duration::from_secs(1)
                    } else {
                        ANSWER_WITHOUT_PROGRESS
                    },
            ),
            _ => None,
        };
        let wake = earliest(&[
            ring.deadline(),
            answer_by,
            bad.deadline(),
            dial_at.as_ref().map(|(t, _)| *t),
        ]);
        let mut ring_events = Vec::new();
        tokio::select! {
            edge = io.edges.recv() => {
                let Some(e) = edge else { return };
                if matches!(state, Trunk::Idle | Trunk::Ringing { .. } | Trunk::Refused) {
                    ring_events.extend(ring.input(ring_detect.logical(e.high), e.at));
                }
            }
            () = sleep_until(wake) => {
                let now = Instant::now();
                ring_events.extend(ring.poll(now));
                if let Some(by) = answer_by && now >= by {
                    state = Trunk::Talking;
                    io.event(LineEvent::Answered).await;
                }
                if bad.poll(now) == Some(false) {
                    io.event(LineEvent::Fault(LineFault { code: "ring_cadence", detail: "ringing regular again".into(), active: false })).await;
                }
                if dial_at.as_ref().is_some_and(|(t, _)| now >= *t)
                    && let Some((_, number)) = dial_at.take()
                {
                    io.listen(Listen::Call);
                    io.inject(dial_samples(&number));
                }
            }
            report = io.reports.recv() => {
                let Some(r) = report else { return };
                match r {
                    MediaReport::CallerId(Ok(cid)) => {
                        // Decoded only after a first burst of the right
                        // length: with the caller id, that makes a call as
                        // surely as a second burst.
                        if let Trunk::Ringing { announced: announced @ false, .. } = &mut state {
                            tracing::info!(line = %io.line, number = ?cid.number, "caller id");
                            *announced = true;
                            io.event(LineEvent::Incoming { caller: cid.number, dialled: None }).await;
                        }
                    }
                    MediaReport::CallerId(Err(e)) => {
                        tracing::warn!(line = %io.line, "caller id unreadable: {e}");
                    }
                    MediaReport::Tone(tone) => match (&state, tone) {
                        (Trunk::Dialled { ringback, .. }, ProgressTone::Ringback) => {
                            if !*ringback {
                                io.event(LineEvent::Ringing).await;
                            }
                            // Answered once the ringback stops coming.
                            state = Trunk::Dialled { since: Instant::now(), ringback: true };
                        }
                        (Trunk::Dialled { .. }, ProgressTone::Busy | ProgressTone::Congestion) => {
                            state = Trunk::Talking;
                            let cause = if tone == ProgressTone::Busy { HangupCause::Busy } else { HangupCause::Congestion };
                            io.listen(Listen::Idle);
                            io.event(LineEvent::Hangup(cause)).await;
                        }
                        (Trunk::Talking, ProgressTone::Busy | ProgressTone::Congestion) => {
                            tracing::info!(line = %io.line, ?tone, "far end gone (call-progress tone)");
                            io.listen(Listen::Idle);
                            io.event(LineEvent::Hangup(HangupCause::Normal)).await;
                        }
                        _ => {}
                    },
                    MediaReport::Injected => {
                        if state == Trunk::Dialling {
                            state = Trunk::Dialled { since: Instant::now(), ringback: false };
                        }
                    }
                }
            }
            cmd = io.commands.recv() => {
                let Some(cmd) = cmd else {
                    hook_relay.set(false);
                    return;
                };
                match cmd {
                    LineCommand::Answer => {
                        if matches!(state, Trunk::Ringing { .. }) {
                            hook_relay.set(true);
                            io.listen(Listen::Call);
                            ring = RingDetector::new(cadence, RING_HOLD);
                            state = Trunk::Talking;
                        } else {
                            tracing::warn!(line = %io.line, ?state, "answer with no call ringing ignored");
                        }
                    }
                    LineCommand::Hangup(_) => {
                        hook_relay.set(false);
                        io.listen(Listen::Idle);
                        dial_at = None;
                        state = match state {
                            Trunk::Ringing { .. } => Trunk::Refused,
                            _ => Trunk::Idle,
                        };
                    }
                    LineCommand::Dial { number, .. } => {
                        if state == Trunk::Idle {
                            hook_relay.set(true);
                            dial_at = Some((Instant::now() + DIAL_DELAY, number));
                            state = Trunk::Dialling;
                        } else {
                            tracing::warn!(line = %io.line, ?state, "dial on a busy trunk ignored");
                            io.event(LineEvent::Hangup(HangupCause::Congestion)).await;
                        }
                    }
                    // The audio path opens only off-hook, which answers.
                    LineCommand::Progress => tracing::debug!(line = %io.line, "no early media on an analog trunk"),
                    other => tracing::warn!(line = %io.line, ?other, "not a trunk command; ignored"),
                }
            }
        }
        for ev in ring_events {
            match ev {
                RingEvent::BurstStart { after } => {
                    io.listen(Listen::Idle);
                    match &mut state {
                        Trunk::Idle => {
                            state = Trunk::Ringing {
                                bursts: 0,
                                announced: false,
                            }
                        }
                        Trunk::Ringing { bursts, announced } => {
                            let fits = after.is_some_and(|a| cadence.gap_fits(a));
                            if !fits {
                                tracing::warn!(line = %io.line, ?after, "ring silence off cadence");
                                note_bad(
                                    &io,
                                    &mut bad,
                                    format!("silence of {after:?} between rings"),
                                )
                                .await;
                            } else if !*announced && *bursts >= 1 {
                                // No caller id came: the second burst makes
                                // the call.
                                *announced = true;
                                io.event(LineEvent::Incoming {
                                    caller: None,
                                    dialled: None,
                                })
                                .await;
                            }
                        }
                        _ => {}
                    }
                }
                RingEvent::BurstEnd { length } => {
                    let fits = cadence.burst_fits(length);
                    if let Trunk::Ringing { bursts, announced } = &mut state {
                        if fits {
                            *bursts += 1;
                            if *bursts == 1 && !*announced && caller_id {
                                io.listen(Listen::CallerId);
                            }
                        } else if !*announced {
                            state = Trunk::Idle;
                        }
                    }
                    if !fits {
                        tracing::warn!(line = %io.line, ?length, "ring burst off cadence");
                        note_bad(
                            &io,
                            &mut bad,
                            format!("ring burst of {} ms", length.as_millis()),
                        )
                        .await;
                    }
                }
                RingEvent::Stopped => {
                    io.listen(Listen::Idle);
                    match state {
                        Trunk::Ringing {
                            announced: true, ..
                        } => {
                            tracing::info!(line = %io.line, "ringing stopped before answer");
                            io.event(LineEvent::Hangup(HangupCause::Normal)).await;
                            state = Trunk::Idle;
                        }
                        Trunk::Ringing { .. } | Trunk::Refused => state = Trunk::Idle,
                        _ => {}
                    }
                }
            }
        }
    }
}

async fn note_bad(io: &PortIo, bad: &mut FlapGuard, what: String) {
    if bad.change(Instant::now()) == Some(true) {
        io.event(LineEvent::Fault(LineFault {
            code: "ring_cadence",
            detail: format!(
                "{BAD_RINGS} rings off cadence within {}s (last: {what}); no call taken from them",
                BAD_RING_WINDOW.as_secs()
            ),
            active: true,
        }))
        .await;
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Station {
    Idle,
    Ringing {
        on: bool,
        next: Instant,
        bursts: u32,
        cid: Option<Vec<i16>>,
    },
    OffHook,
}

/// What a station port needs beyond its pins.
#[derive(Debug, Clone, Copy)]
pub struct StationCfg {
    /// Ring cadence to generate.
    pub cadence: RingCadence,
    /// Flash window.
    pub flash: FlashWindow,
    /// Caller id to send, if any.
    pub caller_id: Option<CallerIdStandard>,
    /// Multiple-data-message format (with the name).
    pub mdmf: bool,
}

/// Runs an FXS port until the firmware drops its line.
pub async fn station(
    mut io: PortIo,
    hook: Wired<dyn InputPin>,
    mut ring_relay: Wired<dyn OutputPin>,
    cfg: StationCfg,
) {
    let initial = hook.read();
    let mut debounce = Debouncer::new(initial, hook.spec.debounce);
    let mut monitor = HookMonitor::new(cfg.flash);
    let mut flap = FlapGuard::new(FLAP_WINDOW, FLAP_CHANGES, FLAP_QUIET);
    let mut state = Station::Idle;
    let mut cid_at: Option<(Instant, Vec<i16>)> = None;
    ring_relay.set(false);
    if initial {
        // Lifted before the box started.
        if monitor.change(true, Instant::now()) == Some(HookEvent::OffHook) {
            state = Station::OffHook;
            io.listen(Listen::Call);
            io.event(LineEvent::OffHook).await;
        }
    }
    loop {
        let ring_next = match &state {
            Station::Ringing { next, .. } => Some(*next),
            _ => None,
        };
        let wake = earliest(&[
            debounce.deadline(),
            monitor.deadline(),
            flap.deadline(),
            ring_next,
            cid_at.as_ref().map(|(t, _)| *t),
        ]);
        let mut changes = Vec::new();
        tokio::select! {
            edge = io.edges.recv() => {
                let Some(e) = edge else { return };
                debounce.input(hook.logical(e.high), e.at);
            }
            () = sleep_until(wake) => {
                let now = Instant::now();
                changes.extend(debounce.poll(now));
                if let Some(HookEvent::OnHook) = monitor.poll(now) {
                    state = Station::Idle;
                    io.listen(Listen::Idle);
                    io.event(LineEvent::Hangup(HangupCause::Normal)).await;
                }
                if flap.poll(now) == Some(false) {
                    io.event(LineEvent::Fault(LineFault {
                        code: "flapping",
                        detail: "hook steady again".into(),
                        active: false,
                    }))
                    .await;
                    // Take the hook as it is now.
                    let level = hook.read();
                    debounce = Debouncer::new(level, hook.spec.debounce);
                    if level != monitor.off_hook() {
                        changes.push((level, now));
                    }
                }
                if cid_at.as_ref().is_some_and(|(t, _)| now >= *t)
                    && let Some((_, samples)) = cid_at.take()
                    && matches!(state, Station::Ringing { .. })
                {
                    io.inject(samples);
                }
                if let Station::Ringing { on, next, bursts, cid } = &mut state && now >= *next {
                    *on = !*on;
                    ring_relay.set(*on);
                    if *on {
                        *next = now + cfg.cadence.on;
                    } else {
                        *bursts += 1;
                        *next = now + cfg.cadence.off;
                        if *bursts == 1 && let Some(samples) = cid.take() {
                            cid_at = Some((now + CID_DELAY, samples));
                        }
                    }
                }
            }
            cmd = io.commands.recv() => {
                let Some(cmd) = cmd else {
                    ring_relay.set(false);
                    return;
                };
                match cmd {
                    LineCommand::Ring { caller_id, caller_name } => {
                        if state == Station::Idle && !flap.tripped() {
                            let cid = cfg.caller_id.filter(|_| caller_id.is_some() || caller_name.is_some()).map(|std| {
                                let info = CallerId {
                                    number: caller_id,
                                    name: caller_name.filter(|_| cfg.mdmf),
                                    datetime: Some(crate::clock::local_mmddhhmm()),
                                    ..CallerId::default()
                                };
                                let format = if cfg.mdmf { MessageFormat::Mdmf } else { MessageFormat::Sdmf };
                                caller_id::generate(std, &info, format, 8000)
                            });
                            ring_relay.set(true);
                            state = Station::Ringing { on: true, next: Instant::now() + cfg.cadence.on, bursts: 0, cid };
                        } else {
                            tracing::warn!(line = %io.line, ?state, "station busy; not rung");
                            io.event(LineEvent::Hangup(HangupCause::Busy)).await;
                        }
                    }
                    LineCommand::Hangup(_) => {
                        if matches!(state, Station::Ringing { .. }) {
                            ring_relay.set(false);
                            cid_at = None;
                            state = Station::Idle;
                        }
                        // Off-hook: the call is over for the box, the
                        // handset is still lifted; its hang-up will come.
                    }
                    // No lamp on the line: the firmware stutters the dial
                    // tone instead.
                    LineCommand::MessageWaiting { .. } => {}
                    other => tracing::warn!(line = %io.line, ?other, "not a station command; ignored"),
                }
            }
        }
        for (level, at) in changes {
            if flap.change(at) == Some(true) {
                tracing::warn!(line = %io.line, "hook flapping; ignored until steady");
                io.event(LineEvent::Fault(LineFault {
                    code: "flapping",
                    detail: format!(
                        "hook changed more than {FLAP_CHANGES} times in {}s",
                        FLAP_WINDOW.as_secs()
                    ),
                    active: true,
                }))
                .await;
                if monitor.off_hook() {
                    monitor = HookMonitor::new(cfg.flash);
                    io.listen(Listen::Idle);
                    io.event(LineEvent::Hangup(HangupCause::LineFailure)).await;
                }
                if matches!(state, Station::Ringing { .. }) {
                    ring_relay.set(false);
                }
                state = Station::Idle;
            }
            if flap.tripped() {
                continue;
            }
            match monitor.change(level, at) {
                Some(HookEvent::OffHook) => {
                    io.listen(Listen::Call);
                    if matches!(state, Station::Ringing { .. }) {
                        ring_relay.set(false);
                        cid_at = None;
                        io.event(LineEvent::Answered).await;
                    } else {
                        io.event(LineEvent::OffHook).await;
                    }
                    state = Station::OffHook;
                }
                Some(HookEvent::Flash) => io.event(LineEvent::HookFlash).await,
                _ => {}
            }
        }
    }
}
