//! The line supervisor: one watcher task per line.
//!
//! A trunk watcher waits for an incoming call and hands the port to a call
//! actor (its own task) for the length of the call. A station watcher
//! follows the phone: off-hook, keyed digits (feature codes, acted on once
//! the queue issue lands), on-hook. Watchers stop when the daemon stops,
//! after their call has ended and been recorded.

use std::collections::HashSet;
use std::sync::Arc;

use callbox_hal::{AudioIn, AudioOut, HangupCause, Line, LineCommand, LineEvent, LineKind, Port};
use tokio_util::task::TaskTracker;

use crate::call::{self, Arrival, CallContext};

/// Starts a watcher for every port.
pub fn spawn_all<L, I, O>(ports: Vec<Port<L, I, O>>, ctx: CallContext, tracker: &TaskTracker)
where
    L: Line,
    I: AudioIn,
    O: AudioOut,
{
    let inbound: Arc<HashSet<String>> = Arc::new(ctx.inbound.lines.iter().cloned().collect());
    for port in ports {
        let ctx = ctx.clone();
        match port.line.info().kind {
            LineKind::Trunk => {
                let tracker2 = tracker.clone();
                let accept = inbound.contains(&port.line.info().id);
                tracker.spawn(trunk(port, accept, ctx, tracker2));
            }
            LineKind::Station => {
                tracker.spawn(station(port, ctx));
            }
        }
    }
}

async fn trunk<L, I, O>(
    mut port: Port<L, I, O>,
    accept: bool,
    ctx: CallContext,
    tracker: TaskTracker,
) where
    L: Line,
    I: AudioIn,
    O: AudioOut,
{
    let line = port.line.info().id.clone();
    loop {
        let ev = tokio::select! {
            biased;
            () = ctx.shutdown.cancelled() => return,
            ev = port.line.next_event() => ev,
        };
        match ev {
            Ok(LineEvent::Incoming { caller, dialled }) => {
                let arrival = Arrival {
                    caller,
                    dialled,
                    accept,
                };
                let call = tracker.spawn(call::inbound(port, arrival, ctx.clone()));
                match call.await {
                    Ok(p) => port = p,
                    Err(e) => {
                        // The call actor died (a bug); the port went with it.
                        tracing::error!(%line, "call actor failed, line out of service: {e}");
                        return;
                    }
                }
            }
            Ok(LineEvent::Hangup(_)) => {
                // A far-end hangup with no call: acknowledge so the line is free.
                let _ = port
                    .line
                    .command(LineCommand::Hangup(HangupCause::Normal))
                    .await;
            }
            Ok(other) => tracing::debug!(%line, ?other, "event on idle trunk ignored"),
            Err(e) => {
                tracing::error!(%line, "line out of service: {e}");
                return;
            }
        }
    }
}

async fn station<L, I, O>(mut port: Port<L, I, O>, ctx: CallContext)
where
    L: Line,
    I: AudioIn,
    O: AudioOut,
{
    let line = port.line.info().id.clone();
    let mut dialled = String::new();
    let mut off_hook = false;
    loop {
        tokio::select! {
            biased;
            () = ctx.shutdown.cancelled() => return,
            ev = port.line.next_event() => match ev {
                Ok(LineEvent::OffHook) => {
                    off_hook = true;
                    dialled.clear();
                    ctx.panel.line_led(&line, true).await;
                    tracing::info!(%line, "station off-hook");
                }
                Ok(LineEvent::Digit(d)) if off_hook => dialled.push(d),
                Ok(LineEvent::Hangup(_)) => {
                    if off_hook {
                        tracing::info!(%line, %dialled, "station on-hook; no feature codes are configured yet");
                    }
                    off_hook = false;
                    ctx.panel.line_led(&line, false).await;
                    let _ = port.line.command(LineCommand::Hangup(HangupCause::Normal)).await;
                }
                Ok(other) => tracing::debug!(%line, ?other, "station event"),
                Err(e) => {
                    tracing::error!(%line, "station out of service: {e}");
                    return;
                }
            },
            // Keep the station's audio drained while it is off-hook.
            r = port.audio_in.read_frame() => if r.is_err() { return },
        }
    }
}
