//! Connecting answered lines: a plain two-party bridge, the supervised
//! caller–agent bridge (listen, whisper, barge, hold, transfer codes) and
//! the consultation of an attended transfer.

use std::time::Duration;

use callbox_hal::{AudioIn, AudioOut, Frame, HangupCause, Line, LineCommand, LineEvent, Port};
use tokio_util::sync::CancellationToken;

use super::keys::KeyBuffer;
use super::{fill_loop, pending_or};
use crate::lines::Lease;
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
pub struct Join<L, I, O> {
    /// Listen, whisper or barge.
    pub mode: MonitorMode,
    /// The supervisor's station, off-hook.
    pub lease: Lease<L, I, O>,
}

/// A message on the channel a supervised bridge watches for supervisors;
/// only joins matter to the bridge, the rest is for whoever owns the
/// channel (the ACD's waiter messages).
pub trait AsJoin<L, I, O> {
    /// The join this message carries, if it is one.
    fn into_join(self) -> Option<Join<L, I, O>>;
}

/// The codes an agent keys during a supervised bridge.
#[derive(Debug, Clone, Copy)]
pub struct AgentCodes<'a> {
    /// Blind transfer: `code<agent number>` (a hook flash stands for it).
    pub transfer: &'a str,
    /// Attended transfer: `code<agent number>`.
    pub consult: &'a str,
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
pub async fn bridge_supervised<L, I, O, M>(
    a: &mut Port<L, I, O>,
    b: &mut Port<L, I, O>,
    monitors: &mut tokio::sync::mpsc::Receiver<M>,
    codes: Option<AgentCodes<'_>>,
    hold_music: &[i16],
    rec: &mut Recording,
    shutdown: &CancellationToken,
) -> Result<BridgeEnd, AgentAsks>
where
    L: Line,
    I: AudioIn,
    O: AudioOut,
    M: AsJoin<L, I, O>,
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
                m = monitors.recv() => match m.and_then(AsJoin::into_join) {
                    Some(Join { mode, lease }) => Turn::Join(mode, lease),
                    None => Turn::Nothing,
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
                if rec.agent_code(&typed) {
                    continue;
                }
                if let Some(target) = codes.and_then(|c| typed.strip_prefix(c.consult))
                    && !target.is_empty()
                {
                    break Err(AgentAsks::Consult(target.to_string()));
                }
                if let Some(target) = codes.and_then(|c| typed.strip_prefix(c.transfer)) {
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
