//! An inbound call: rings for the configured time (a blocked caller is
//! refused first; the ringback, where the line has early media, plays
//! meanwhile), is answered, takes the DID digits on trunks whose exchange
//! sends them, hears the greeting if the site has one,
//! then runs through the IVR flow its dialled number routes to; without an
//! IVR the box hangs up after the greeting. The call keeps reading inbound
//! audio and line events the whole time, so a caller who hangs up is
//! noticed within a frame, and on shutdown it ends the call and writes the
//! record before the daemon exits.

use crate::media::lines::Port;
use callbox_hal::{HangupCause, Line, LineCommand, LineEvent};
use tracing::Instrument;

use super::record::{CallLog, Placed};
use super::{Arrival, CallContext, Outcome, Switch, flow_record, gone_outcome};
use crate::ivr::engine::{FlowEnd, FlowState};
use crate::media::{Gone, LineFailure, Media};
use crate::store::{CallFlow, Direction, Disposition, Side};

/// Runs one inbound call to its end and hands the port back. `stop` is
/// the call's own end (its token is `ctx.shutdown`): the daemon stopping,
/// or an emergency call taking the trunk.
pub async fn inbound<L>(
    port: Port<L>,
    arrival: Arrival,
    ctx: CallContext,
    sw: Switch<L>,
    stop: super::preempt::CallStop,
) -> Port<L>
where
    L: Line,
{
    let ctx = ctx.for_new_call();
    let id = crate::clock::new_id(&ctx.clock);
    let span = tracing::info_span!("call", id = %&id[id.len() - 8..], line = %port.line.info().id);
    inbound_call(port, arrival, ctx, id, sw, stop)
        .instrument(span)
        .await
}

async fn inbound_call<L>(
    mut port: Port<L>,
    arrival: Arrival,
    ctx: CallContext,
    id: String,
    sw: Switch<L>,
    stop: super::preempt::CallStop,
) -> Port<L>
where
    L: Line,
{
    let line_id = port.line.info().id.clone();
    tracing::info!(
        caller = arrival.caller.as_deref().unwrap_or("unknown"),
        dialled = arrival.dialled.as_deref().unwrap_or("unknown"),
        "call arrives"
    );
    let caller_name = ctx
        .ivr
        .as_ref()
        .and_then(|ivr| ivr.lookups.contact(arrival.caller.as_deref()))
        .map(str::to_string);
    let log = CallLog::start(
        &ctx.store,
        &ctx.clock,
        &id,
        Placed {
            direction: Direction::Inbound,
            trunk_line: Some(line_id.clone()),
            station: None,
            caller_name: caller_name.clone(),
            caller: arrival.caller.clone(),
            dialled: arrival.dialled.clone(),
        },
    )
    .await;
    let _on_board = ctx.inflight.begin(crate::inflight::InflightCall {
        call_id: id.clone(),
        kind: "inbound",
        line: line_id.clone(),
        caller: arrival.caller.clone(),
        caller_name,
        dialled: arrival.dialled.clone(),
        since_ms: ctx.clock.now().wall_ms,
        ..Default::default()
    });
    ctx.panel.line_led(&line_id, true).await;

    let blocked = ctx.ivr.as_ref().is_some_and(|ivr| {
        ivr.blocked
            .as_ref()
            .is_some_and(|list| ivr.in_list(list, arrival.caller.as_deref()))
    });
    let mut flow = None;
    let outcome = if !arrival.accept {
        tracing::warn!("line is not configured for inbound calls; refusing the call");
        Outcome::new(Disposition::Rejected, HangupCause::Busy, Side::Box, false)
    } else if blocked {
        tracing::info!("caller is on the blocked list; refusing the call");
        flow = Some(CallFlow {
            id: id.clone(),
            outcome: Some("blocked".into()),
            ..CallFlow::default()
        });
        Outcome::new(
            Disposition::Rejected,
            HangupCause::Rejected,
            Side::Box,
            false,
        )
    } else {
        answer_and_run(&mut port, &log, &arrival, &ctx, &sw, &mut flow).await
    };
    let outcome = if stop.preempted() {
        tracing::warn!("call ended to free the trunk for an emergency call");
        let f = flow.get_or_insert_with(|| CallFlow {
            id: id.clone(),
            ..CallFlow::default()
        });
        f.outcome = Some("preempted".into());
        Outcome::new(
            outcome.disposition,
            HangupCause::Preempted,
            Side::Box,
            false,
        )
    } else {
        outcome
    };
    if let Some(f) = flow {
        log.flow(f).await;
    }

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
    tracing::info!(
        disposition = outcome.disposition.as_str(),
        by = ?outcome.side,
        cause = %outcome.cause,
        "call ends"
    );
    log.end(outcome.disposition, outcome.cause, outcome.side)
        .await;
    port
}

async fn answer_and_run<L>(
    port: &mut Port<L>,
    log: &CallLog,
    arrival: &Arrival,
    ctx: &CallContext,
    sw: &Switch<L>,
    flow: &mut Option<CallFlow>,
) -> Outcome
where
    L: Line,
{
    let ringback = ctx
        .inbound
        .ringback
        .as_ref()
        .filter(|_| port.line.early_media());
    let rang = match ringback {
        Some(r) => ring_with_ringback(port, &r.samples, ctx).await,
        None => ring(port, ctx).await,
    };
    if let Err(g) = rang {
        // A caller who gives up while it rings abandoned the call.
        let disposition = match g {
            Gone::Caller => Disposition::Abandoned,
            _ => Disposition::Failed,
        };
        return gone_outcome(g, disposition);
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
    log.answered().await;
    let id = log.id();
    ctx.inflight.answered(id, ctx.clock.now().wall_ms);
    let line_id = port.line.info().id.clone();
    let mut media = Media::new(port, ctx.shutdown.clone());
    media.rec = crate::recorder::Recording::for_call(&ctx.recorder, id);
    let answered = |cause, side, gone| Outcome::new(Disposition::Answered, cause, side, gone);
    let mut dialled = arrival.dialled.clone();
    if let Some(&n) = ctx.inbound.did_digits.get(&line_id) {
        match did_digits(&mut media, n).await {
            Ok(d) if !d.is_empty() => {
                tracing::info!(dialled = %d, "DID digits from the exchange");
                log.dialled(&d).await;
                dialled = Some(d);
            }
            Ok(_) => tracing::warn!(
                routed_by = dialled.as_deref().unwrap_or("no number"),
                "no DID digits from the exchange"
            ),
            Err(g) => return gone_outcome(g, Disposition::Answered),
        }
    }
    if let Some(greeting) = &ctx.inbound.greeting {
        tracing::info!(greeting = %greeting.name, "answered; playing greeting");
        if let Err(g) = media.play(greeting.samples.clone(), false).await {
            return gone_outcome(g, Disposition::Answered);
        }
        // The greeting is not interruptible: keys keyed over it are not
        // meant for the first menu.
        media.clear_keys();
    }
    let Some(ivr) = ctx.ivr.as_deref() else {
        // Greeting played to its last sample: the box hangs up.
        return answered(HangupCause::Normal, Side::Box, false);
    };
    let (start, lang) = ivr.route(dialled.as_deref());
    let mut st = FlowState::new(start, lang, &[]);
    let env = ctx.flow_env(ivr, sw, id, arrival.caller.as_deref(), dialled.as_deref());
    let end = env.run(&mut media, &mut st).await;
    *flow = Some(flow_record(id, ivr, &st, None));
    match end {
        FlowEnd::Done => answered(HangupCause::Normal, Side::Box, false),
        FlowEnd::Gone(g) => gone_outcome(g, Disposition::Answered),
    }
}

/// How long the exchange has to start sending DID digits after the answer.
const DID_FIRST: std::time::Duration = std::time::Duration::from_secs(5);
/// Quiet after a DID digit that ends the number early.
const DID_GAP: std::time::Duration = std::time::Duration::from_secs(3);

/// The dialled number an analog exchange sends as DTMF once the box has
/// answered: up to `n` digits, ended early by `#` or [`DID_GAP`] of
/// quiet; empty when none come within [`DID_FIRST`].
async fn did_digits<L: Line>(media: &mut Media<'_, L>, n: usize) -> Result<String, Gone> {
    let mut digits = String::new();
    let mut wait = DID_FIRST;
    while digits.len() < n {
        match media.wait_key(wait).await? {
            Some(k) if k.is_ascii_digit() => digits.push(k),
            Some('#') | None => break,
            Some(_) => {}
        }
        wait = DID_GAP;
    }
    media.clear_keys();
    Ok(digits)
}

/// Lets the call ring for `answer_after`; `Err` when it ends meanwhile
/// (the caller gave up, the box is stopping, the line failed).
async fn ring<L: Line>(port: &mut Port<L>, ctx: &CallContext) -> Result<(), Gone> {
    let ring = tokio::time::sleep(ctx.inbound.answer_after);
    tokio::pin!(ring);
    loop {
        tokio::select! {
            biased;
            () = ctx.shutdown.cancelled() => return Err(Gone::Shutdown),
            ev = port.line.next_event() => match ev {
                Ok(LineEvent::Hangup(_)) => return Err(Gone::Caller),
                Ok(other) => tracing::debug!(?other, "line event while ringing"),
                Err(e) => return Err(Gone::Failure(LineFailure::hal("ringing", &e))),
            },
            () = &mut ring => return Ok(()),
        }
    }
}

/// Rings for `answer_after` with the caller hearing `ringback` as early
/// media (the call is not answered: no record of an answer, no charge
/// to the caller); the same endings as [`ring`].
async fn ring_with_ringback<L: Line>(
    port: &mut Port<L>,
    ringback: &std::sync::Arc<[i16]>,
    ctx: &CallContext,
) -> Result<(), Gone> {
    port.line
        .command(LineCommand::Progress)
        .await
        .map_err(|e| Gone::Failure(LineFailure::hal("opening early media", &e)))?;
    tracing::info!("ringing with ringback");
    let mut media = Media::new(port, ctx.shutdown.clone());
    let until = tokio::time::sleep(ctx.inbound.answer_after);
    media.loop_while(ringback, &mut 0, until, false).await?;
    Ok(())
}
