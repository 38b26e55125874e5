//! The call actor: one task per call, owning the call's port while it lasts.
//!
//! Until the IVR lands, an inbound call follows the minimal path: ring for
//! the configured time, answer, play the greeting, hang up. The actor keeps
//! reading inbound audio and line events the whole time, so a caller who
//! hangs up is noticed within a frame, and on shutdown it ends the call and
//! writes the record before the daemon exits.

use std::sync::Arc;

use callbox_hal::{AudioIn, AudioOut, Frame, HangupCause, Line, LineCommand, LineEvent, Port};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::Clock;
use crate::config::Inbound;
use crate::media::AudioOutExt;
use crate::panel::PanelHandle;
use crate::store::{CallEnd, CallStart, Direction, Disposition, Side, StoreHandle, StoreMsg};

/// What a call needs from the rest of the daemon.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// Record store.
    pub store: StoreHandle,
    /// Time source.
    pub clock: Clock,
    /// How inbound calls are handled.
    pub inbound: Arc<Inbound>,
    /// Front panel (line LEDs).
    pub panel: PanelHandle,
    /// Cancelled when the daemon stops.
    pub shutdown: CancellationToken,
}

/// A call that arrived on a trunk.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// Calling number.
    pub caller: Option<String>,
    /// Dialled number.
    pub dialled: Option<String>,
    /// Whether this trunk takes inbound calls.
    pub accept: bool,
}

struct Outcome {
    disposition: Disposition,
    cause: HangupCause,
    side: Side,
    /// Whether the far end already hung up (the line still needs releasing).
    far_end_gone: bool,
}

impl Outcome {
    fn new(
        disposition: Disposition,
        cause: HangupCause,
        side: Side,
        far_end_gone: bool,
    ) -> Outcome {
        Outcome {
            disposition,
            cause,
            side,
            far_end_gone,
        }
    }
}

fn new_call_id(clock: &Clock) -> String {
    let ms = clock.now().wall_ms.max(0) as u64;
    let ts =
        uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, ((ms % 1000) * 1_000_000) as u32);
    uuid::Uuid::new_v7(ts).to_string()
}

/// Runs one inbound call to its end and hands the port back.
pub async fn inbound<L, I, O>(
    port: Port<L, I, O>,
    arrival: Arrival,
    ctx: CallContext,
) -> Port<L, I, O>
where
    L: Line,
    I: AudioIn,
    O: AudioOut,
{
    let id = new_call_id(&ctx.clock);
    let span = tracing::info_span!("call", id = %&id[id.len() - 8..], line = %port.line.info().id);
    inbound_call(port, arrival, ctx, id).instrument(span).await
}

async fn inbound_call<L, I, O>(
    mut port: Port<L, I, O>,
    arrival: Arrival,
    ctx: CallContext,
    id: String,
) -> Port<L, I, O>
where
    L: Line,
    I: AudioIn,
    O: AudioOut,
{
    let line_id = port.line.info().id.clone();
    tracing::info!(
        caller = arrival.caller.as_deref().unwrap_or("unknown"),
        dialled = arrival.dialled.as_deref().unwrap_or("unknown"),
        "call arrives"
    );
    ctx.store
        .send(StoreMsg::CallStarted(CallStart {
            id: id.clone(),
            direction: Direction::Inbound,
            trunk_line: line_id.clone(),
            caller: arrival.caller.clone(),
            dialled: arrival.dialled.clone(),
            at: ctx.clock.now(),
        }))
        .await;
    ctx.panel.line_led(&line_id, true).await;

    let outcome = if arrival.accept {
        answer_and_greet(&mut port, &id, &ctx).await
    } else {
        tracing::warn!("line is not configured for inbound calls; refusing the call");
        Outcome::new(Disposition::Rejected, HangupCause::Busy, Side::Box, false)
    };

    // Always release the line, also after the far end hung up, so the
    // backend knows it is free.
    let release_cause = if outcome.far_end_gone {
        HangupCause::Normal
    } else {
        outcome.cause
    };
    if let Err(e) = port.line.command(LineCommand::Hangup(release_cause)).await {
        tracing::warn!("releasing the line failed: {e}");
    }
    ctx.panel.line_led(&line_id, false).await;
    let end = ctx.clock.now();
    tracing::info!(
        disposition = outcome.disposition.as_str(),
        by = ?outcome.side,
        cause = %outcome.cause,
        "call ends"
    );
    ctx.store
        .send(StoreMsg::CallEnded(CallEnd {
            id,
            at: end,
            disposition: outcome.disposition,
            cause: outcome.cause,
            side: outcome.side,
        }))
        .await;
    port
}

async fn answer_and_greet<L, I, O>(port: &mut Port<L, I, O>, id: &str, ctx: &CallContext) -> Outcome
where
    L: Line,
    I: AudioIn,
    O: AudioOut,
{
    // Ringing: the caller may give up, the box may be stopping.
    let ring = tokio::time::sleep(ctx.inbound.answer_after);
    tokio::pin!(ring);
    loop {
        tokio::select! {
            biased;
            () = ctx.shutdown.cancelled() => {
                return Outcome::new(Disposition::Failed, HangupCause::Shutdown, Side::System, false);
            }
            ev = port.line.next_event() => match ev {
                Ok(LineEvent::Hangup(_)) => {
                    tracing::info!("caller hung up while ringing");
                    return Outcome::new(Disposition::Abandoned, HangupCause::Normal, Side::Caller, true);
                }
                Ok(other) => tracing::debug!(?other, "line event while ringing"),
                Err(e) => {
                    tracing::error!("line failed while ringing: {e}");
                    return Outcome::new(Disposition::Failed, HangupCause::LineFailure, Side::System, false);
                }
            },
            () = &mut ring => break,
        }
    }
    if let Err(e) = port.line.command(LineCommand::Answer).await {
        tracing::error!("answering failed: {e}");
        return Outcome::new(
            Disposition::Failed,
            HangupCause::LineFailure,
            Side::System,
            false,
        );
    }
    ctx.store
        .send(StoreMsg::CallAnswered {
            id: id.to_string(),
            at: ctx.clock.now(),
        })
        .await;
    tracing::info!(greeting = %ctx.inbound.greeting.name, "answered; playing greeting");

    let answered = |cause, side, gone| Outcome::new(Disposition::Answered, cause, side, gone);
    let greeting = ctx.inbound.greeting.samples.clone();
    let format = port.audio_out.format();
    let mut chunks = greeting.chunks(format.frame_samples);
    let mut seq: u32 = 0;
    loop {
        let next = chunks.next().map(|chunk| {
            let mut f = Frame::silence(format, seq, u64::from(seq) * format.frame_samples as u64);
            f.samples_mut()[..chunk.len()].copy_from_slice(chunk);
            seq = seq.wrapping_add(1);
            f
        });
        let last = next.is_none();
        // The write (or the final drain) stays pinned across the inner loop,
        // so inbound frames and events never restart it.
        let out = port.audio_out.write_or_drain(next);
        tokio::pin!(out);
        loop {
            tokio::select! {
                biased;
                () = ctx.shutdown.cancelled() => return answered(HangupCause::Shutdown, Side::System, false),
                ev = port.line.next_event() => match ev {
                    Ok(LineEvent::Hangup(_)) => {
                        tracing::info!("caller hung up");
                        return answered(HangupCause::Normal, Side::Caller, true);
                    }
                    Ok(LineEvent::Digit(d)) => tracing::info!(digit = %d, "caller keyed a digit"),
                    Ok(other) => tracing::debug!(?other, "line event"),
                    Err(e) => {
                        tracing::error!("line failed: {e}");
                        return answered(HangupCause::LineFailure, Side::System, false);
                    }
                },
                // Inbound audio is read even when nothing listens yet, so the
                // backend's buffer never overflows (the IVR detects DTMF here).
                r = port.audio_in.read_frame() => if let Err(e) = r {
                    tracing::error!("inbound audio failed: {e}");
                    return answered(HangupCause::LineFailure, Side::System, false);
                },
                r = &mut out => match r {
                    // Greeting played to its last sample: the box hangs up.
                    Ok(()) if last => return answered(HangupCause::Normal, Side::Box, false),
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!("outbound audio failed: {e}");
                        return answered(HangupCause::LineFailure, Side::System, false);
                    }
                },
            }
        }
    }
}
