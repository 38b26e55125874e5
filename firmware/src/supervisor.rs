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
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::call::{self, Arrival, CallContext};
use crate::lines::{Lease, Lines, Seize, SharedLines};

/// Starts a watcher for every port; returns the directory calls borrow
/// lines from.
pub fn spawn_all<L, I, O>(
    ports: Vec<Port<L, I, O>>,
    ctx: CallContext,
    tracker: &TaskTracker,
) -> SharedLines<L, I, O>
where
    L: Line,
    I: AudioIn,
    O: AudioOut,
{
    let inbound: Arc<HashSet<String>> = Arc::new(ctx.inbound.lines.iter().cloned().collect());
    let mut lines = Lines::new();
    let inboxes: Vec<_> = ports
        .iter()
        .map(|p| lines.register(&p.line.info().id))
        .collect();
    let lines = Arc::new(lines);
    for (port, inbox) in ports.into_iter().zip(inboxes) {
        let ctx = ctx.clone();
        match port.line.info().kind {
            LineKind::Trunk => {
                let tracker2 = tracker.clone();
                let accept = inbound.contains(&port.line.info().id);
                tracker.spawn(trunk(port, inbox, accept, ctx, lines.clone(), tracker2));
            }
            LineKind::Station => {
                tracker.spawn(station(port, inbox, ctx));
            }
        }
    }
    lines
}

/// Lends `port` to the requester and waits for it to come back, refusing
/// other requests meanwhile. `None` if the port was lost (a bug).
async fn lend<L, I, O>(
    port: Port<L, I, O>,
    seize: Seize<L, I, O>,
    inbox: &mut mpsc::Receiver<Seize<L, I, O>>,
) -> Option<Port<L, I, O>> {
    let (back_tx, back_rx) = oneshot::channel();
    // If the requester has gone, the lease is dropped here and the port
    // comes straight back through `back_rx`.
    let _ = seize.reply.send(Some(Lease::new(port, back_tx)));
    tokio::pin!(back_rx);
    loop {
        tokio::select! {
            p = &mut back_rx => return p.ok(),
            Some(s) = inbox.recv() => {
                let _ = s.reply.send(None);
            }
        }
    }
}

async fn trunk<L, I, O>(
    mut port: Port<L, I, O>,
    mut inbox: mpsc::Receiver<Seize<L, I, O>>,
    accept: bool,
    ctx: CallContext,
    lines: SharedLines<L, I, O>,
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
            Some(s) = inbox.recv() => {
                match lend(port, s, &mut inbox).await {
                    Some(p) => port = p,
                    None => {
                        tracing::error!(%line, "a lent trunk never came back; line out of service");
                        return;
                    }
                }
                continue;
            }
            ev = port.line.next_event() => ev,
        };
        match ev {
            Ok(LineEvent::Incoming { caller, dialled }) => {
                let arrival = Arrival {
                    caller,
                    dialled,
                    accept,
                };
                let call = tracker.spawn(call::inbound(port, arrival, ctx.clone(), lines.clone()));
                tokio::pin!(call);
                let done = loop {
                    tokio::select! {
                        r = &mut call => break r,
                        Some(s) = inbox.recv() => {
                            let _ = s.reply.send(None);
                        }
                    }
                };
                match done {
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

async fn station<L, I, O>(
    mut port: Port<L, I, O>,
    mut inbox: mpsc::Receiver<Seize<L, I, O>>,
    ctx: CallContext,
) where
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
            Some(s) = inbox.recv() => {
                if off_hook {
                    // The agent is using the phone.
                    let _ = s.reply.send(None);
                    continue;
                }
                match lend(port, s, &mut inbox).await {
                    Some(p) => port = p,
                    None => {
                        tracing::error!(%line, "a lent station never came back; line out of service");
                        return;
                    }
                }
            }
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
