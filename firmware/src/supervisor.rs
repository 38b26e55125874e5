//! The line supervisor: one watcher task per line.
//!
//! A trunk watcher waits for an incoming call and hands the port to a call
//! actor (its own task) for the length of the call. A station watcher
//! follows the phone: off-hook, keyed digits (feature codes for the ACD,
//! in band through the media engine or out of band), on-hook. Watchers stop when the daemon stops,
//! after their call has ended and been recorded.

use std::sync::Arc;

use callbox_hal::dsp::tones::{ProgressTone, ProgressToneGen, ToneRegion};
use callbox_hal::{HangupCause, Line, LineCommand, LineEvent, LineKind};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::acd::AcdHandle;
use crate::calls::{self as call, Arrival, CallContext, Switch};
use crate::daynight::{self, Mode};
use crate::media::engine::Hears;
use crate::media::engine::LegEvent;
use crate::media::lines::{Lease, Lines, Port, Returned, Seize};
use crate::media::{Gone, KeyBuffer, KeyDedup, Media, Source};

/// Starts a watcher for every port; returns the directory calls borrow
/// lines from.
pub fn spawn_all<L>(
    ports: Vec<Port<L>>,
    ctx: CallContext,
    acd: Option<AcdHandle<L>>,
    tracker: &TaskTracker,
) -> Switch<L>
where
    L: Line,
{
    let mut lines = Lines::new();
    let inboxes: Vec<_> = ports
        .iter()
        .map(|p| lines.register(&p.line.info().id))
        .collect();
    let sw = Switch {
        lines: Arc::new(lines),
        acd,
        rooms: crate::media::conference::Rooms::spawn(tracker),
        park: crate::media::park::ParkLot::spawn(tracker),
        ringing: crate::media::pickup::Ringing::default(),
        preemption: call::preempt::Preemption::default(),
    };
    for (port, inbox) in ports.into_iter().zip(inboxes) {
        let ctx = ctx.clone();
        match port.line.info().kind {
            LineKind::Trunk => {
                let id = port.line.info().id.clone();
                let hold = ctx
                    .inbound
                    .down_alarms
                    .get(&id)
                    .copied()
                    .unwrap_or(DOWN_ALARM);
                tracker.spawn(down_alarm(id, port.line.status(), hold, ctx.clone()));
                let tracker2 = tracker.clone();
                tracker.spawn(trunk(port, inbox, ctx, sw.clone(), tracker2));
            }
            LineKind::Station => {
                let tracker2 = tracker.clone();
                tracker.spawn(station(port, inbox, ctx, sw.clone(), tracker2));
            }
        }
    }
    sw
}

/// Waits for the call that has this line's port, refusing requests to
/// borrow the line meanwhile.
async fn busy_with<L, T>(
    call: tokio::task::JoinHandle<T>,
    inbox: &mut mpsc::Receiver<Seize<L>>,
) -> Result<T, tokio::task::JoinError> {
    tokio::pin!(call);
    loop {
        tokio::select! {
            r = &mut call => return r,
            Some(s) = inbox.recv() => {
                let _ = s.reply.send(None);
            }
        }
    }
}

/// Lends `port` to the requester and waits for it to come back, refusing
/// other requests meanwhile. `None` if the port was lost (a bug).
async fn lend<L>(
    port: Port<L>,
    seize: Seize<L>,
    inbox: &mut mpsc::Receiver<Seize<L>>,
) -> Option<Returned<L>> {
    let (back_tx, back_rx) = oneshot::channel();
    // If the requester has gone, the lease is dropped here and the port
    // comes straight back through `back_rx`.
    let _ = seize.reply.send(Some(Lease::new(port, back_tx)));
    wait_return(back_rx, inbox).await
}

/// Waits for a lent port to come back, refusing other requests meanwhile.
async fn wait_return<L>(
    back_rx: oneshot::Receiver<Returned<L>>,
    inbox: &mut mpsc::Receiver<Seize<L>>,
) -> Option<Returned<L>> {
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

async fn trunk<L>(
    mut port: Port<L>,
    mut inbox: mpsc::Receiver<Seize<L>>,
    ctx: CallContext,
    sw: Switch<L>,
    tracker: TaskTracker,
) where
    L: Line,
{
    let line = port.line.info().id.clone();
    loop {
        // Line events first: a call already waiting on the trunk is taken
        // before the trunk is lent out to dial.
        let ev = tokio::select! {
            biased;
            () = ctx.shutdown.cancelled() => return,
            ev = port.line.next_event() => ev,
            Some(s) = inbox.recv() => {
                match lend(port, s, &mut inbox).await {
                    Some((p, pending)) => {
                        port = p;
                        match pending {
                            // Glare: the borrower found a call arriving.
                            Some(ev) => Ok(ev),
                            None => continue,
                        }
                    }
                    None => {
                        tracing::error!(%line, "a lent trunk never came back; line out of service");
                        return;
                    }
                }
            }
        };
        match ev {
            Ok(LineEvent::Incoming { caller, dialled }) => {
                // Which trunks take calls may change while the box runs.
                let now = ctx.live.current();
                let accept = now.inbound.lines.contains(&line);
                let arrival = Arrival {
                    caller,
                    dialled: dialled.or_else(|| now.inbound.numbers.get(&line).cloned()),
                    accept,
                };
                // An agent's emergency call may end this one for the trunk.
                let stop = sw.preemption.carrying(&line, &ctx.shutdown);
                let call_ctx = CallContext {
                    shutdown: stop.token.clone(),
                    ..ctx.clone()
                };
                let call = tracker.spawn(call::inbound(port, arrival, call_ctx, sw.clone(), stop));
                let ended = busy_with(call, &mut inbox).await;
                sw.preemption.done(&line);
                match ended {
                    Ok(p) => port = p,
                    Err(e) => {
                        // The call actor died (a bug); the port went with it.
                        tracing::error!(%line, "call actor failed, line out of service: {e}");
                        return;
                    }
                }
            }
            Ok(LineEvent::Fault(f)) => line_fault(&ctx, &line, f).await,
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

async fn station<L>(
    mut port: Port<L>,
    mut inbox: mpsc::Receiver<Seize<L>>,
    ctx: CallContext,
    sw: Switch<L>,
    tracker: TaskTracker,
) where
    L: Line,
{
    let acd = sw.acd.clone();
    let line = port.line.info().id.clone();
    // The station's keys in band come from the media engine while the
    // handset is off-hook (feature codes); its events come here whenever
    // the station is not lent out.
    let (keys_tx, mut keys_rx) = mpsc::unbounded_channel();
    let listen = |port: &Port<L>, off_hook: bool| port.leg.listen(Some(keys_tx.clone()), off_hook);
    listen(&port, false);
    // A feature code is complete when the agent stops keying.
    let mut dialled = KeyBuffer::default();
    let mut off_hook = false;
    let mut dedup = KeyDedup::default();
    // Voicemail waiting for whoever is logged in here, as last told to
    // the phone: looked at again when a box's count changes, and every
    // few seconds for agents who log in or out.
    let mut lamp = None;
    let mut boxes = ctx.mailboxes.changed();
    let mut lamp_check = tokio::time::interval(LAMP_CHECK);
    lamp_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = ctx.shutdown.cancelled() => return,
            // Line events before lending: an agent who just picked up is
            // not rung.
            ev = port.line.next_event() => match ev {
                Ok(LineEvent::OffHook) => {
                    off_hook = true;
                    dialled.take();
                    listen(&port, true);
                    tell_lamp(&mut port, &ctx, &sw, &mut lamp).await;
                    dial_tone(&port, &ctx, lamp.is_some_and(|(new, _)| new > 0));
                    ctx.panel.line_led(&line, true).await;
                    tracing::info!(%line, "station off-hook");
                }
                Ok(LineEvent::Digit(d)) if off_hook => {
                    if dedup.accept(d, Source::OutOfBand) {
                        keyed(&mut dialled, d, &port, &ctx);
                    }
                }
                Ok(LineEvent::Hangup(_)) => {
                    port.leg.hear(Hears::Nothing);
                    let digits = dialled.take();
                    // A number not yet complete is not dialled; a feature
                    // code keyed just before hanging up still counts.
                    if off_hook && !digits.is_empty() && !is_number(&digits, &ctx) {
                        // Hung up right after keying: act on the code, there
                        // is nobody to tell how it went.
                        feature_code(&ctx, acd.as_ref(), &line, &digits).await;
                    }
                    off_hook = false;
                    listen(&port, false);
                    ctx.panel.line_led(&line, false).await;
                    let _ = port.line.command(LineCommand::Hangup(HangupCause::Normal)).await;
                }
                Ok(LineEvent::Fault(f)) => line_fault(&ctx, &line, f).await,
                Ok(other) => tracing::debug!(%line, ?other, "station event"),
                Err(e) => {
                    tracing::error!(%line, "station out of service: {e}");
                    return;
                }
            },
            Some(s) = inbox.recv() => {
                if off_hook {
                    // The agent is using the phone.
                    let _ = s.reply.send(None);
                    continue;
                }
                match lend(port, s, &mut inbox).await {
                    Some((p, _)) => port = p,
                    None => {
                        tracing::error!(%line, "a lent station never came back; line out of service");
                        return;
                    }
                }
                listen(&port, false);
            }
            Ok(()) = boxes.changed() => tell_lamp(&mut port, &ctx, &sw, &mut lamp).await,
            _ = lamp_check.tick() => tell_lamp(&mut port, &ctx, &sw, &mut lamp).await,
            () = dialled.complete() => {
                let digits = dialled.take();
                let voicemail = voicemail_keys(&digits, &ctx);
                if voicemail.is_some() || is_number(&digits, &ctx) {
                    // A call, or a voicemail session: the station is its
                    // own until it ends.
                    let session = match voicemail {
                        Some(rest) => {
                            let (c, s) = (ctx.clone(), sw.clone());
                            tracker.spawn(async move { Some(call::mailbox::listen(port, rest, c, s).await) })
                        }
                        None => tracker.spawn(call::station::place(port, digits, ctx.clone(), sw.clone())),
                    };
                    let hung_up;
                    (port, hung_up) = match busy_with(session, &mut inbox).await {
                        Ok(Some(r)) => r,
                        Ok(None) => {
                            tracing::error!(%line, "a lent station never came back; line out of service");
                            return;
                        }
                        Err(e) => {
                            tracing::error!(%line, "station call failed, line out of service: {e}");
                            return;
                        }
                    };
                    if hung_up {
                        off_hook = false;
                        ctx.panel.line_led(&line, false).await;
                        let _ = port.line.command(LineCommand::Hangup(HangupCause::Normal)).await;
                    }
                    listen(&port, off_hook);
                    continue;
                }
                if let Some(target) = call::station::pickup_target(&digits, &sw).await {
                    // A colleague's call ringing another phone: this one
                    // takes it, and comes back when the call ends.
                    let (back_tx, back_rx) = oneshot::channel();
                    if let Some(a) = &acd {
                        a.personal(&line, true).await;
                    }
                    let taken = sw.ringing.take(&target, Lease::new(port, back_tx)).is_ok();
                    port = match wait_return(back_rx, &mut inbox).await {
                        Some((p, _)) => p,
                        None => {
                            tracing::error!(%line, "a station that picked up never came back; line out of service");
                            return;
                        }
                    };
                    if let Some(a) = &acd {
                        a.personal(&line, false).await;
                    }
                    if taken {
                        tracing::info!(%line, %target, "picked up a colleague's call; the station is back");
                        off_hook = false;
                        ctx.panel.line_led(&line, false).await;
                    }
                    listen(&port, off_hook);
                    continue;
                }
                if let Some(acd) = acd.as_ref().filter(|a| a.is_monitor_code(&digits)) {
                    // A supervisor joins an agent's call with this phone;
                    // it comes back when they hang up (or at once if refused).
                    let (back_tx, back_rx) = oneshot::channel();
                    let lease = Lease::new(port, back_tx);
                    let r = acd.monitor(&line, &digits, lease).await;
                    match wait_return(back_rx, &mut inbox).await {
                        Some((p, _)) => port = p,
                        None => {
                            tracing::error!(%line, "a supervisor's station never came back; line out of service");
                            return;
                        }
                    }
                    listen(&port, off_hook);
                    match r {
                        Ok(what) => {
                            tracing::info!(%line, %digits, "{what}; the station is back");
                            off_hook = false;
                            ctx.panel.line_led(&line, false).await;
                            continue;
                        }
                        Err(why) => tracing::warn!(%line, %digits, "supervisor code refused: {why}"),
                    }
                    if answer_handset(&mut port, &ctx, "system:invalid-option").await {
                        off_hook = false;
                    }
                    listen(&port, off_hook);
                    continue;
                }
                // Answer on the handset: a beep (the day/night switch's new
                // position), or "not a valid option".
                let key = feature_code(&ctx, acd.as_ref(), &line, &digits).await;
                if answer_handset(&mut port, &ctx, key).await {
                    off_hook = false;
                }
                listen(&port, off_hook);
            }
            // Feature codes keyed in band, while off-hook.
            ev = keys_rx.recv() => match ev {
                Some(LegEvent::Key(d)) if off_hook && dedup.accept(d, Source::InBand) => {
                    keyed(&mut dialled, d, &port, &ctx);
                }
                Some(LegEvent::Failed(e)) => {
                    tracing::error!(%line, "station out of service: {e}");
                    return;
                }
                _ => {}
            },
        }
    }
}

/// Whether keys a station completed are a number to call by the site's
/// dial plan (not a feature code).
fn is_number(keys: &str, ctx: &CallContext) -> bool {
    !keys.starts_with('*') && ctx.live.current().dialplan.is_some()
}

/// How often a station's message-waiting state is looked at again when
/// no box changed (an agent logged in or out meanwhile).
const LAMP_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Tells the station's phone how many voicemail messages wait for the
/// agent logged in there, when that changed since it was last told.
async fn tell_lamp<L: Line>(
    port: &mut Port<L>,
    ctx: &CallContext,
    sw: &Switch<L>,
    lamp: &mut Option<(u32, u32)>,
) {
    let line = port.line.info().id.clone();
    let Some(now) = call::mailbox::waiting_at(&line, ctx, sw).await else {
        return;
    };
    if *lamp == Some(now) {
        return;
    }
    *lamp = Some(now);
    tracing::debug!(%line, new = now.0, old = now.1, "message waiting");
    let cmd = LineCommand::MessageWaiting {
        new: now.0,
        old: now.1,
    };
    if let Err(e) = port.line.command(cmd).await {
        tracing::warn!(%line, "message waiting not shown: {e}");
    }
}

/// What followed the voicemail code in `digits`, when they start with it.
fn voicemail_keys(digits: &str, ctx: &CallContext) -> Option<String> {
    let now = ctx.live.current();
    let rest = digits.strip_prefix(now.voicemail.as_ref()?.code.as_str())?;
    rest.chars()
        .all(|c| c.is_ascii_digit())
        .then(|| rest.to_string())
}

/// Dial tone on a station just picked up, on a site with a dial plan (the
/// agent may dial); a stutter dial tone, dial plan or not, when voicemail
/// waits for the agent.
fn dial_tone<L: Line>(port: &Port<L>, ctx: &CallContext, waiting: bool) {
    let now = ctx.live.current();
    if now.dialplan.is_none() && !waiting {
        return;
    }
    let region = now.ivr.as_ref().map_or(ToneRegion::China, |i| i.tones);
    let rate = callbox_hal::AudioFormat::NARROWBAND.sample_rate;
    let tone = if waiting {
        ProgressTone::StutterDial
    } else {
        ProgressTone::Dial
    };
    port.leg.hear(Hears::Tone(Box::new(ProgressToneGen::new(
        region, tone, rate,
    ))));
}

/// A key on an off-hook station: the dial tone stops; a number is
/// complete at `#`, when the dial plan says it is whole, or after its
/// inter-digit timeout, a feature code after [`crate::media::CODE_QUIET`].
fn keyed<L: Line>(keys: &mut KeyBuffer, d: char, port: &Port<L>, ctx: &CallContext) {
    port.leg.hear(Hears::Nothing);
    let now = ctx.live.current();
    // The first key decides: `*` starts a feature code.
    let code = keys.keys().chars().next().unwrap_or(d) == '*';
    match now.dialplan.as_ref().filter(|_| !code) {
        Some(p) => {
            keys.push_quiet(d, p.inter_digit);
            if p.complete(keys.keys()) {
                keys.complete_now();
            }
        }
        None => keys.push(d),
    }
}

/// Plays a system prompt on an off-hook station; `true` if the agent hung
/// up meanwhile (the line is then released).
async fn answer_handset<L>(port: &mut Port<L>, ctx: &CallContext, key: &str) -> bool
where
    L: Line,
{
    let prompt = ctx
        .live
        .current()
        .ivr
        .as_ref()
        .and_then(|ivr| ivr.prompts.get(ivr.language, key).cloned());
    let Some(samples) = prompt else { return false };
    let line = port.line.info().id.clone();
    let mut media = Media::new(port, ctx.shutdown.clone());
    let played = media.play(samples, false).await;
    drop(media);
    if played == Err(Gone::Caller) {
        ctx.panel.line_led(&line, false).await;
        let _ = port
            .line
            .command(LineCommand::Hangup(HangupCause::Normal))
            .await;
        return true;
    }
    false
}

/// Acts on a keyed code: the day/night switch's, or the ACD's. Returns the
/// system prompt that answers on the handset.
async fn feature_code<L>(
    ctx: &CallContext,
    acd: Option<&AcdHandle<L>>,
    line: &str,
    digits: &str,
) -> &'static str {
    const REFUSED: &str = "system:invalid-option";
    if let Some(asked) = daynight::parse_code(digits) {
        let by = format!("station {line}");
        let r = match asked {
            Ok(None) => ctx.daynight.toggle(&by).await,
            Ok(Some(mode)) => ctx.daynight.set(mode, &by).await,
            Err(()) => {
                tracing::warn!(%line, %digits, "day/night code refused: {} alone toggles, {}0 auto, {}1 day, {}2 night", daynight::CODE, daynight::CODE, daynight::CODE, daynight::CODE);
                return REFUSED;
            }
        };
        return match r {
            Ok(s) => match s.mode {
                Mode::Auto => "system:auto-mode",
                Mode::Day => "system:day-mode",
                Mode::Night => "system:night-mode",
            },
            Err(e) => {
                tracing::error!(%line, "{e}");
                REFUSED
            }
        };
    }
    let Some(acd) = acd else {
        tracing::info!(%line, %digits, "station keyed digits; the site has no agents configured");
        return REFUSED;
    };
    match acd.code(line, digits).await {
        Ok(what) => {
            tracing::info!(%line, %digits, "{what}");
            "system:beep"
        }
        Err(why) => {
            tracing::warn!(%line, %digits, "feature code refused: {why}");
            REFUSED
        }
    }
}

/// How long a trunk stays down before its alarm, unless its `[[line]]
/// down_alarm` says otherwise: a registration being renewed or one
/// keep-alive lost is not worth anyone's attention.
pub const DOWN_ALARM: std::time::Duration = std::time::Duration::from_secs(60);

/// Raises alarm `line_down:<line>` once trunk `line` has been down for
/// `hold` (with the backend's reason), and clears it when the trunk is
/// up again.
async fn down_alarm(
    line: String,
    mut health: callbox_hal::StatusWatch,
    hold_for: std::time::Duration,
    ctx: CallContext,
) {
    use callbox_hal::Health;
    let code = format!("line_down:{line}");
    let mut raised = false;
    // An alarm raised before the daemon restarted is cleared by the first
    // up (clearing one that is not open changes nothing in the store).
    let mut maybe_open = true;
    // Down since, whatever the reasons it gave meanwhile.
    let mut down_since: Option<tokio::time::Instant> = None;
    loop {
        let now = health.borrow_and_update().clone();
        if now.health == Health::Down {
            down_since.get_or_insert_with(tokio::time::Instant::now);
        } else {
            down_since = None;
        }
        if now.health == Health::Up && (raised || maybe_open) {
            if raised {
                tracing::info!(%line, "line up again: {}", now.reason);
            }
            raised = false;
            maybe_open = false;
            let at = ctx.clock.now();
            ctx.store
                .send(crate::store::StoreMsg::AlarmCleared {
                    at,
                    code: code.clone(),
                })
                .await;
        }
        let due = down_since.filter(|_| !raised).map(|t| t + hold_for);
        let hold = async move {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            r = health.changed() => if r.is_err() {
                // The backend is gone: the line keeps its last health.
                return;
            },
            () = hold => {
                raised = true;
                tracing::warn!(%line, "line down for {} s: {}", hold_for.as_secs(), now.reason);
                ctx.store
                    .send(crate::store::StoreMsg::Alarm {
                        at: ctx.clock.now(),
                        code: code.clone(),
                        severity: "critical",
                        message: format!("line {line} down for {} s: {}", hold_for.as_secs(), now.reason),
                    })
                    .await;
            }
        }
    }
}

/// Raises or clears the alarm of a line fault, so headquarters sees a
/// flapping hook or broken ringing as it happens.
async fn line_fault(ctx: &CallContext, line: &str, f: callbox_hal::LineFault) {
    if f.active {
        tracing::warn!(%line, code = f.code, "{}", f.detail);
    } else {
        tracing::info!(%line, code = f.code, "cleared: {}", f.detail);
    }
    ctx.store.send(fault_alarm(line, &f, ctx.clock.now())).await;
}

/// The store message for a line fault: alarm `line_<code>:<line>`
/// (docs/operations.md), raised with the fault's detail or cleared.
fn fault_alarm(
    line: &str,
    f: &callbox_hal::LineFault,
    at: crate::clock::Stamp,
) -> crate::store::StoreMsg {
    let code = format!("line_{}:{line}", f.code);
    if f.active {
        crate::store::StoreMsg::Alarm {
            at,
            code,
            severity: "warning",
            message: format!("line {line}: {}", f.detail),
        }
    } else {
        crate::store::StoreMsg::AlarmCleared { at, code }
    }
}

#[cfg(test)]
mod fault_tests {
    use super::*;
    use crate::store::StoreMsg;

    #[test]
    fn a_line_fault_is_raised_and_cleared_under_its_line_code() {
        let at = crate::clock::Stamp {
            wall_ms: 1,
            mono_ms: 2,
            synced: true,
        };
        let raised = callbox_hal::LineFault {
            code: "flapping",
            detail: "hook changed more than 10 times in 5s".into(),
            active: true,
        };
        match fault_alarm("desk-1", &raised, at) {
            StoreMsg::Alarm {
                code,
                severity,
                message,
                ..
            } => {
                assert_eq!(code, "line_flapping:desk-1");
                assert_eq!(severity, "warning");
                assert_eq!(
                    message,
                    "line desk-1: hook changed more than 10 times in 5s"
                );
            }
            other => panic!("{other:?}"),
        }
        let cleared = callbox_hal::LineFault {
            active: false,
            ..raised
        };
        match fault_alarm("desk-1", &cleared, at) {
            StoreMsg::AlarmCleared { code, .. } => assert_eq!(code, "line_flapping:desk-1"),
            other => panic!("{other:?}"),
        }
    }
}
