//! Connecting answered lines: a plain two-party bridge, the supervised
//! caller–agent bridge (listen, whisper, barge, hold, transfer codes) and
//! the consultation of an attended transfer.
//!
//! A bridge tells the media engine who hears whom ([`Hears::Legs`]) and
//! taps the caller's leg for the call's recording; the engine moves the
//! frames. The bridge itself only waits for what changes the call: a
//! hang-up, keys from the agent, a supervisor joining or leaving, a failed
//! line, the daemon's stop.

use std::sync::Arc;
use std::time::Duration;

use callbox_hal::{HangupCause, Line, LineCommand, LineEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::LineFailure;
use super::engine::{Hears, Leg, LegEvent};
use super::keys::KeyBuffer;
use super::lines::{Lease, Port};
use super::pending_or;
use super::play::leg_failed;
use crate::recorder::Recording;

/// What a supervisor does on an agent's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorMode {
    /// Hears both sides; nobody hears the supervisor.
    Listen,
    /// Hears both; only the agent hears the supervisor.
    Whisper,
    /// Three-way: everyone hears everyone.
    Barge,
}

/// A supervisor's station joining a bridged call.
#[derive(Debug)]
pub struct Join<L> {
    /// Listen, whisper or barge.
    pub mode: MonitorMode,
    /// The supervisor's station, off-hook.
    pub lease: Lease<L>,
}

/// A message on the channel a supervised bridge watches for supervisors;
/// only joins matter to the bridge, the rest is for whoever owns the
/// channel (the ACD's waiter messages).
pub trait AsJoin<L> {
    /// The join this message carries, if it is one.
    fn into_join(self) -> Option<Join<L>>;
}

/// The codes an agent keys during a supervised bridge.
#[derive(Debug, Clone, Copy)]
pub struct AgentCodes<'a> {
    /// Blind transfer: `code<agent number>` (a hook flash stands for it).
    pub transfer: &'a str,
    /// Attended transfer: `code<agent number>`.
    pub consult: &'a str,
    /// Park the caller.
    pub park: &'a str,
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
    Failure(LineFailure),
}

/// What an agent asked for during a supervised bridge, ending their part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAsks {
    /// A blind transfer to this agent number.
    Transfer(String),
    /// An attended transfer: consult this agent first.
    Consult(String),
    /// Park the caller on a free slot.
    Park,
}

/// A leg taken over by a bridge: its events come here, keys undetected;
/// on drop it hears nothing and reports to nobody.
struct Held<'a> {
    leg: &'a Leg,
    events: mpsc::UnboundedReceiver<LegEvent>,
}

impl<'a> Held<'a> {
    fn new(leg: &'a Leg) -> Held<'a> {
        let (tx, events) = mpsc::unbounded_channel();
        leg.listen(Some(tx), false);
        Held { leg, events }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.leg.hear(Hears::Nothing);
        self.leg.listen(None, false);
    }
}

/// The recording tap on the caller's leg for the length of a bridge: what
/// the caller says on one channel, what they hear on the other.
async fn tapped<T>(leg: &Leg, rec: &mut Recording, during: impl Future<Output = T>) -> T {
    leg.tap(std::mem::replace(rec, Recording::off()));
    let out = during.await;
    if let Some(r) = leg.untap().await {
        *rec = r;
    }
    out
}

/// Connects two answered ports until one side hangs up.
///
/// Each hears what the other says, frame by frame in the engine: a frame
/// the other side has no room for is dropped at once, as a jitter buffer
/// would, so neither a far end that stopped reading nor the phase between
/// the two lines' clocks holds up the other side.
/// Keys from the second port (an agent calling back, a station) that form
/// a recording code pause or start the recording.
pub async fn bridge<L1: Line, L2: Line>(
    a: &mut Port<L1>,
    b: &mut Port<L2>,
    rec: &mut Recording,
    shutdown: &CancellationToken,
) -> BridgeEnd {
    let (mut ha, mut hb) = (Held::new(&a.leg), Held::new(&b.leg));
    ha.leg.hear(Hears::Legs(hb.leg.id(), None));
    hb.leg.hear(Hears::Legs(ha.leg.id(), None));
    let leg_a = ha.leg;
    let run = async {
        let mut keys = KeyBuffer::default();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return BridgeEnd::Shutdown,
                ev = a.line.next_event() => match ev {
                    Ok(LineEvent::Hangup(_)) => return BridgeEnd::CallerHungUp,
                    Ok(_) => {}
                    Err(e) => return BridgeEnd::Failure(LineFailure::hal("caller line", &e)),
                },
                ev = b.line.next_event() => match ev {
                    Ok(LineEvent::Hangup(_)) => return BridgeEnd::OtherHungUp,
                    Ok(LineEvent::Digit(d)) => keys.push(d),
                    Ok(_) => {}
                    Err(e) => return BridgeEnd::Failure(LineFailure::hal("connected line", &e)),
                },
                () = keys.complete() => {
                    let typed = keys.take();
                    if !leg_a.recording_code(&typed).await {
                        tracing::debug!(keys = %typed, "keys during the call; not a recording code");
                    }
                },
                e = leg_failed(&mut ha.events) => return BridgeEnd::Failure(e.of("caller")),
                e = leg_failed(&mut hb.events) => return BridgeEnd::Failure(e.of("connected")),
            }
        }
    };
    tapped(leg_a, rec, run).await
}

/// Who hears whom on a caller–agent call, with a supervisor in `mode`, or
/// the caller on hold.
fn arrange(caller: &Leg, agent: &Leg, sup: Option<(&Leg, MonitorMode)>, hold: Option<Hears>) {
    let (c, a) = (caller.id(), agent.id());
    if let Some(music) = hold {
        // The held caller hears music; the agent and any supervisor hear
        // nothing of them.
        caller.hear(music);
        agent.hear(Hears::Nothing);
        if let Some((s, _)) = sup {
            s.hear(Hears::Nothing);
        }
        return;
    }
    let Some((s, mode)) = sup else {
        caller.hear(Hears::Legs(a, None));
        agent.hear(Hears::Legs(c, None));
        return;
    };
    // The supervisor hears both sides, mixed.
    s.hear(Hears::Legs(c, Some(a)));
    let sid = Some(s.id());
    match mode {
        MonitorMode::Listen => {
            caller.hear(Hears::Legs(a, None));
            agent.hear(Hears::Legs(c, None));
        }
        MonitorMode::Whisper => {
            caller.hear(Hears::Legs(a, None));
            agent.hear(Hears::Legs(c, sid));
        }
        MonitorMode::Barge => {
            caller.hear(Hears::Legs(a, sid));
            agent.hear(Hears::Legs(c, sid));
        }
    }
}

/// What one turn of the supervised bridge loop brought.
enum Turn<L> {
    End(BridgeEnd),
    SupGone,
    Join(MonitorMode, Lease<L>),
    /// A key from the agent (`None`: a hook flash).
    AgentKey(Option<char>),
    KeysDone,
    Nothing,
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
pub async fn bridge_supervised<L, M>(
    a: &mut Port<L>,
    b: &mut Port<L>,
    monitors: &mut mpsc::Receiver<M>,
    codes: Option<AgentCodes<'_>>,
    hold_music: &Arc<[i16]>,
    rec: &mut Recording,
    shutdown: &CancellationToken,
) -> Result<BridgeEnd, AgentAsks>
where
    L: Line,
    M: AsJoin<L>,
{
    let (mut ha, mut hb) = (Held::new(&a.leg), Held::new(&b.leg));
    arrange(ha.leg, hb.leg, None, None);
    let (leg_a, leg_b) = (ha.leg, hb.leg);
    let mut sup: Option<(Lease<L>, MonitorMode, mpsc::UnboundedReceiver<LegEvent>)> = None;
    let run = async {
        // Keys the agent sends (out of band), complete after a quiet moment.
        let mut keys = KeyBuffer::default();
        let mut on_hold = false;
        let mut hold_pos = 0usize;
        let mut flashed = false;
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            let turn = {
                let (sup_line, sup_events) = match sup.as_mut() {
                    Some((l, _, ev)) => (Some(&mut l.port().line), Some(ev)),
                    None => (None, None),
                };
                tokio::select! {
                    biased;
                    () = &mut cancelled => Turn::End(BridgeEnd::Shutdown),
                    ev = a.line.next_event() => match ev {
                        Ok(LineEvent::Hangup(_)) => Turn::End(BridgeEnd::CallerHungUp),
                        Ok(_) => Turn::Nothing,
                        Err(e) => Turn::End(BridgeEnd::Failure(LineFailure::hal("caller line", &e))),
                    },
                    ev = b.line.next_event() => match ev {
                        Ok(LineEvent::Hangup(_)) => Turn::End(BridgeEnd::OtherHungUp),
                        Ok(LineEvent::Digit(d)) => Turn::AgentKey(Some(d)),
                        Ok(LineEvent::HookFlash) => Turn::AgentKey(None),
                        Ok(_) => Turn::Nothing,
                        Err(e) => Turn::End(BridgeEnd::Failure(LineFailure::hal("connected line", &e))),
                    },
                    () = keys.complete() => Turn::KeysDone,
                    ev = pending_or(sup_line.map(|l| l.next_event())) => match ev {
                        Ok(LineEvent::Hangup(_)) | Err(_) => Turn::SupGone,
                        Ok(_) => Turn::Nothing,
                    },
                    _ = pending_or(sup_events.map(leg_failed)) => Turn::SupGone,
                    m = monitors.recv() => match m.and_then(AsJoin::into_join) {
                        Some(Join { mode, lease }) => Turn::Join(mode, lease),
                        None => Turn::Nothing,
                    },
                    e = leg_failed(&mut ha.events) => Turn::End(BridgeEnd::Failure(e.of("caller"))),
                    e = leg_failed(&mut hb.events) => Turn::End(BridgeEnd::Failure(e.of("connected"))),
                }
            };
            let (mut rearrange, mut toggled) = (false, false);
            match turn {
                Turn::End(e) => return Ok(e),
                Turn::Nothing => {}
                Turn::SupGone => {
                    if let Some((mut l, _, _)) = sup.take() {
                        leave(l.port()).await;
                    }
                    rearrange = true;
                }
                Turn::Join(m, mut lease) => {
                    if sup.is_none() {
                        tracing::info!(mode = ?m, "supervisor joins the call");
                        let (tx, ev) = mpsc::unbounded_channel();
                        lease.port().leg.listen(Some(tx), false);
                        sup = Some((lease, m, ev));
                        rearrange = true;
                    }
                    // A second supervisor is refused: dropping the lease hands
                    // the station back.
                }
                Turn::AgentKey(k) => {
                    if let Some(code) = codes.map(|c| c.transfer) {
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
                    let target = |code: Option<&str>| {
                        code.and_then(|c| typed.strip_prefix(c))
                            .filter(|t| !t.is_empty())
                            .map(str::to_string)
                    };
                    if leg_a.recording_code(&typed).await {
                        // A recording code: the tap acted on it.
                    } else if codes.is_some_and(|c| typed == c.park) {
                        return Err(AgentAsks::Park);
                    } else if let Some(t) = target(codes.map(|c| c.consult)) {
                        return Err(AgentAsks::Consult(t));
                    } else if let Some(t) = target(codes.map(|c| c.transfer)) {
                        return Err(AgentAsks::Transfer(t));
                    } else if flashed && codes.is_some_and(|c| typed == c.transfer) {
                        // A flash and nothing else: hold, or back from hold.
                        on_hold = !on_hold;
                        tracing::info!(on_hold, "agent flashed");
                        if !on_hold {
                            hold_pos = leg_a.hear_instead(Hears::Nothing).await;
                        }
                        toggled = true;
                    } else {
                        tracing::info!(keys = %typed, "agent keyed digits during the call; not a transfer");
                    }
                }
            }
            let s = sup.as_mut().map(|(l, m, _)| (&l.port().leg, *m));
            if on_hold && !toggled {
                // A supervisor who joins or leaves a held call hears
                // nothing; the caller's music goes on where it is.
                if rearrange && let Some((l, _)) = s {
                    l.hear(Hears::Nothing);
                }
            } else if rearrange || toggled {
                let music = on_hold.then(|| Hears::Music {
                    samples: hold_music.clone(),
                    pos: hold_pos,
                });
                arrange(leg_a, leg_b, s, music);
            }
        }
    };
    let end = tapped(leg_a, rec, run).await;
    if let Some((mut l, _, _)) = sup.take() {
        leave(l.port()).await;
    }
    end
}

/// A supervisor's station leaves a call: it hears nothing more and is hung
/// up.
async fn leave<L: Line>(p: &mut Port<L>) {
    p.leg.hear(Hears::Nothing);
    p.leg.listen(None, false);
    let _ = p
        .line
        .command(LineCommand::Hangup(HangupCause::Normal))
        .await;
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
    Answered,
    Nothing,
}

/// The agent consults the target (rung already) while the caller hears
/// `hold_music`: ring-back until the target answers within `ring_timeout`,
/// then agent and target talk.
pub async fn consult<L: Line>(
    caller: &mut Port<L>,
    agent: &mut Port<L>,
    target: &mut Port<L>,
    hold_music: &Arc<[i16]>,
    ring_timeout: Duration,
    rec: &mut Recording,
    shutdown: &CancellationToken,
) -> ConsultEnd {
    let (mut hc, mut ha, mut ht) = (
        Held::new(&caller.leg),
        Held::new(&agent.leg),
        Held::new(&target.leg),
    );
    // The held caller hears music; the recording goes on through the
    // consultation: the caller and the music they hear.
    hc.leg.hear(Hears::Music {
        samples: hold_music.clone(),
        pos: 0,
    });
    let (leg_a, leg_t) = (ha.leg, ht.leg);
    let run = async {
        let deadline = tokio::time::Instant::now() + ring_timeout;
        let mut talking = false;
        loop {
            let turn = tokio::select! {
                biased;
                () = shutdown.cancelled() => CTurn::End(ConsultEnd::Stop(BridgeEnd::Shutdown)),
                ev = caller.line.next_event() => match ev {
                    Ok(LineEvent::Hangup(_)) => CTurn::End(ConsultEnd::CallerHungUp),
                    Ok(_) => CTurn::Nothing,
                    Err(e) => CTurn::End(ConsultEnd::Stop(BridgeEnd::Failure(LineFailure::hal("caller line", &e)))),
                },
                ev = agent.line.next_event() => match ev {
                    Ok(LineEvent::Hangup(_)) if talking => CTurn::End(ConsultEnd::Complete),
                    Ok(LineEvent::Hangup(_)) => CTurn::End(ConsultEnd::AgentLeft),
                    Ok(LineEvent::HookFlash) => CTurn::End(ConsultEnd::Back),
                    Ok(_) => CTurn::Nothing,
                    Err(e) => CTurn::End(ConsultEnd::Stop(BridgeEnd::Failure(LineFailure::hal("agent line", &e)))),
                },
                ev = target.line.next_event() => match ev {
                    Ok(LineEvent::Answered) => CTurn::Answered,
                    Ok(LineEvent::Hangup(_)) | Err(_) => CTurn::End(ConsultEnd::Back),
                    Ok(_) => CTurn::Nothing,
                },
                () = tokio::time::sleep_until(deadline), if !talking => CTurn::End(ConsultEnd::Back),
                _ = leg_failed(&mut ht.events) => CTurn::End(ConsultEnd::Back),
                e = leg_failed(&mut hc.events) => CTurn::End(ConsultEnd::Stop(BridgeEnd::Failure(e.of("caller")))),
                e = leg_failed(&mut ha.events) => CTurn::End(ConsultEnd::Stop(BridgeEnd::Failure(e.of("agent")))),
            };
            match turn {
                CTurn::End(e) => return e,
                CTurn::Nothing => {}
                CTurn::Answered => {
                    talking = true;
                    leg_a.hear(Hears::Legs(leg_t.id(), None));
                    leg_t.hear(Hears::Legs(leg_a.id(), None));
                }
            }
        }
    };
    tapped(hc.leg, rec, run).await
}
