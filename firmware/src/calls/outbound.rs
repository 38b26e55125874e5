//! Outbound voice jobs: dial a number on an idle trunk, run a flow with the
//! job's variables once answered (say a verification code, ask to confirm
//! an order), and call again after a pause while the job is not done.
//!
//! A job's progress is kept in the store (`outbound_jobs`), so a box that
//! restarts neither calls a customer twice for a finished job nor forgets
//! how many attempts it already made.
//!
//! [`originate`] places a single call the same way, on headquarters'
//! command, outside any job.

use std::sync::Arc;

use callbox_hal::{HangupCause, Line, LineCommand};
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::campaign::config::{Amd, GREETING_MAX, OnMachine};
use super::record::{CallLog, Placed};
use super::{CallContext, Outcome, Switch, flow_record, gone_outcome};
use crate::clock::new_id;
use crate::ivr::Ivr;
use crate::ivr::config::{NodeId, OutboundJob};
use crate::ivr::engine::{FlowEnd, FlowState};
use crate::media::Media;
use crate::media::amd::{Detector, Heard, Listener, Verdict};
use crate::media::dial::{self, Rang};
use crate::media::lines::Lease;
use crate::store::{Direction, Disposition, JobRow, Side, StoreMsg};

/// Wait before trying again when every trunk of a job is busy.
const NO_LINE_RETRY: std::time::Duration = std::time::Duration::from_secs(30);
/// Busy-trunk retries (an hour's worth) before one counts as an attempt.
const MAX_NO_LINE: u32 = 120;

/// Starts one task per configured job.
pub fn spawn_jobs<L>(ivr: Arc<Ivr>, ctx: CallContext, sw: Switch<L>, tracker: &TaskTracker)
where
    L: Line,
{
    for i in 0..ivr.outbound.len() {
        spawn_job(i, ivr.clone(), ctx.clone(), sw.clone(), tracker);
    }
}

/// Starts the task of job `i` of `ivr` (a job added by a config change).
pub fn spawn_job<L>(i: usize, ivr: Arc<Ivr>, ctx: CallContext, sw: Switch<L>, tracker: &TaskTracker)
where
    L: Line,
{
    let Some(job) = ivr.outbound.get(i) else {
        return;
    };
    let span = tracing::info_span!("job", name = %job.name);
    tracker.spawn(run_job(i, ivr, ctx, sw).instrument(span));
}

/// A single outbound call: what [`originate`] is asked to place.
#[derive(Debug, Clone)]
pub struct Originate {
    /// Number to dial.
    pub number: String,
    /// Trunks to try, in order (the first idle one is used).
    pub trunks: Vec<String>,
    /// First node of the flow once answered.
    pub start: NodeId,
    /// Variables the flow starts with.
    pub vars: Vec<(String, String)>,
    /// How long to let it ring.
    pub ring_timeout: std::time::Duration,
}

/// Why [`originate`] could not place a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginateError {
    /// Every trunk it may dial on was in use.
    #[error("no idle trunk to dial on (tried {})", .tried.join(", "))]
    NoIdleTrunk {
        /// The trunks tried, in order.
        tried: Vec<String>,
    },
}

/// Seizes an idle trunk and places the call on its own task (tracked by
/// `tracker`, so the daemon's stop waits for its record); answers the new
/// call's id, or why it could not start. Runs on the daemon's runtime.
pub async fn originate<L>(
    call: Originate,
    ivr: Arc<Ivr>,
    ctx: CallContext,
    sw: Switch<L>,
    tracker: &TaskTracker,
) -> Result<String, OriginateError>
where
    L: Line,
{
    let Some(lease) = seize(&call.trunks, &sw).await else {
        return Err(OriginateError::NoIdleTrunk { tried: call.trunks });
    };
    let id = new_id(&ctx.clock);
    let job = OutboundJob {
        name: String::new(),
        number: call.number,
        trunks: call.trunks,
        start: call.start,
        after: std::time::Duration::ZERO,
        language: ivr.language,
        vars: call.vars,
        ring_timeout: call.ring_timeout,
        retry_every: std::time::Duration::ZERO,
        max_attempts: 1,
        success: None,
        caller_id: None,
    };
    let span = tracing::info_span!("originate", id = %&id[id.len() - 8..], number = %job.number);
    let call_id = id.clone();
    tracker.spawn(
        async move {
            let a = place(lease, id, &job, PlacedFor::default(), &ivr, &ctx, &sw).await;
            tracing::info!(result = %a.result, "originated call ends");
        }
        .instrument(span),
    );
    Ok(call_id)
}

/// What one attempt came to.
pub(super) struct Attempt {
    pub(super) call_id: Option<String>,
    /// `answered`, the success variable's value, `no_answer`, `busy`,
    /// `no_line`, `failed`, `glare`.
    pub(super) result: String,
    pub(super) done: bool,
    /// What the flow recorded (its recordable variables), when answered.
    pub(super) answers: Option<std::collections::BTreeMap<String, String>>,
    /// The agent the flow connected the called party to, if any.
    pub(super) agent: Option<String>,
    /// What answering-machine detection took the called party for.
    pub(super) amd: Option<Verdict>,
}

async fn run_job<L>(i: usize, ivr: Arc<Ivr>, ctx: CallContext, sw: Switch<L>)
where
    L: Line,
{
    let job = &ivr.outbound[i];
    let (tx, rx) = oneshot::channel();
    ctx.store
        .send(StoreMsg::JobStatus(job.name.clone(), tx))
        .await;
    let mut attempts = match crate::store::reply(rx).await {
        Some(Ok(Some(row))) if row.status != "pending" => {
            tracing::info!(status = %row.status, "job already finished; not calling again");
            return;
        }
        Some(Ok(Some(row))) => row.attempts,
        Some(Ok(None)) => 0,
        Some(Err(_)) | None => {
            // Without its history the box could call a customer twice.
            tracing::error!("job progress could not be read; the job is skipped this run");
            return;
        }
    };
    // A resumed job keeps its pause between attempts.
    let mut delay = if attempts > 0 {
        job.retry_every.max(job.after)
    } else {
        job.after
    };
    let mut no_line = 0;
    while attempts < job.max_attempts {
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        tracing::info!(attempt = attempts + 1, number = %job.number, "calling");
        let a = attempt(job, &ivr, &ctx, &sw).await;
        if ctx.shutdown.is_cancelled() && !a.done {
            // Cut short by the stop: not an attempt the customer saw
            // through; the job resumes with the same count next start. A
            // result already reached (confirmed…) is stored below.
            return;
        }
        if a.result == "glare" {
            // A call arrived on the trunk as it was seized: try again soon.
            delay = NO_LINE_RETRY;
            continue;
        }
        if a.result == "no_line" && no_line < MAX_NO_LINE {
            // Every trunk busy: try again soon, without using an attempt.
            no_line += 1;
            delay = NO_LINE_RETRY;
            continue;
        }
        no_line = 0;
        attempts += 1;
        let finished = a.done || attempts >= job.max_attempts;
        let status = match (a.done, finished) {
            (true, _) => "done",
            (false, true) => "failed",
            _ => "pending",
        };
        tracing::info!(result = %a.result, status, "attempt ends");
        ctx.store
            .send(StoreMsg::Job(
                JobRow {
                    name: job.name.clone(),
                    number: job.number.clone(),
                    attempts,
                    status: status.into(),
                    result: Some(a.result),
                    last_call_id: a.call_id,
                },
                ctx.clock.now(),
            ))
            .await;
        if finished || ctx.shutdown.is_cancelled() {
            return;
        }
        delay = job.retry_every;
    }
}

async fn attempt<L>(job: &OutboundJob, ivr: &Ivr, ctx: &CallContext, sw: &Switch<L>) -> Attempt
where
    L: Line,
{
    let Some(lease) = seize(&job.trunks, sw).await else {
        return Attempt {
            call_id: None,
            result: "no_line".into(),
            done: false,
            answers: None,
            agent: None,
            amd: None,
        };
    };
    let id = new_id(&ctx.clock);
    place(
        lease,
        id,
        job,
        PlacedFor {
            job: Some(&job.name),
            amd: None,
        },
        ivr,
        ctx,
        sw,
    )
    .await
}

/// The first of `trunks` that is idle.
pub(super) async fn seize<L>(trunks: &[String], sw: &Switch<L>) -> Option<Lease<L>> {
    for t in trunks {
        if let Some(l) = sw.lines.seize(t).await {
            return Some(l);
        }
    }
    None
}

/// Whose attempt a placed call is.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PlacedFor<'a> {
    /// The job's or campaign's name, the record's `job`.
    pub(super) job: Option<&'a str>,
    /// Answering-machine detection before the flow (campaigns).
    pub(super) amd: Option<&'a Amd>,
}

/// Dials `job.number` on the seized trunk as call `id`, runs the flow once
/// answered and records the call (`by.job` on its record when it is a
/// job's or a campaign's attempt).
pub(super) async fn place<L>(
    mut lease: Lease<L>,
    id: String,
    job: &OutboundJob,
    by: PlacedFor<'_>,
    ivr: &Ivr,
    ctx: &CallContext,
    sw: &Switch<L>,
) -> Attempt
where
    L: Line,
{
    let port = lease.port();
    let trunk = port.line.info().id.clone();
    let log = CallLog::start(
        &ctx.store,
        &ctx.clock,
        &id,
        Placed {
            direction: Direction::Outbound,
            trunk_line: Some(trunk.clone()),
            station: None,
            caller_name: None,
            caller: None,
            dialled: Some(job.number.clone()),
        },
    )
    .await;
    let _on_board = ctx.inflight.begin(crate::inflight::InflightCall {
        call_id: id.clone(),
        kind: "outbound",
        line: trunk.clone(),
        caller: Some(job.number.clone()),
        caller_name: job
            .vars
            .iter()
            .find(|(k, _)| k == "name")
            .map(|(_, v)| v.clone()),
        dialled: Some(job.number.clone()),
        since_ms: ctx.clock.now().wall_ms,
        campaign: by.job.map(str::to_string),
        ..Default::default()
    });
    ctx.panel.line_led(&trunk, true).await;

    let mut st = FlowState::new(job.start, job.language, &job.vars);
    let mut result = "failed".to_string();
    let mut glare = None;
    let mut verdict = None;
    let mut message_left = false;
    let cmd = LineCommand::Dial {
        number: job.number.clone(),
        caller_id: job.caller_id.clone(),
    };
    let outcome: Outcome = match dial::ring(
        &mut port.line,
        cmd,
        job.ring_timeout,
        ctx.shutdown.cancelled(),
    )
    .await
    {
        Err(e) => {
            tracing::error!("dialling failed: {e}");
            Outcome::new(
                Disposition::Failed,
                HangupCause::LineFailure,
                Side::System,
                false,
            )
        }
        Ok(Rang::Glare(ev)) => {
            // A caller got the trunk first: their call is handed to
            // the trunk's watcher, this attempt is not counted.
            tracing::info!("a call arrived on the trunk as it was seized (glare)");
            result = "glare".into();
            glare = Some(ev);
            Outcome::new(
                Disposition::Failed,
                HangupCause::Congestion,
                Side::System,
                true,
            )
        }
        Ok(Rang::Answered) => {
            log.answered().await;
            ctx.inflight.answered(&id, ctx.clock.now().wall_ms);
            let number = Some(job.number.as_str());
            let env = ctx.flow_env(ivr, sw, &id, number, number);
            let mut media = Media::new(port, ctx.shutdown.clone());
            media.rec = crate::recorder::Recording::for_call(&ctx.recorder, &id);
            let end = match by.amd {
                None => env.run(&mut media, &mut st).await,
                Some(amd) => {
                    let (end, v) = screened(&env, &mut media, &mut st, amd).await;
                    verdict = v;
                    end
                }
            };
            result = match (verdict, by.amd) {
                // The flow did not run for the called party: a machine,
                // or nobody sure.
                (Some(Verdict::Machine), Some(a)) if a.machine != OnMachine::Human => {
                    message_left =
                        matches!(a.machine, OnMachine::Message(_)) && end == FlowEnd::Done;
                    "machine".into()
                }
                (Some(Verdict::Unsure), Some(a)) if !a.unsure_human => "unsure".into(),
                _ => match &job.success {
                    None => "answered".into(),
                    Some((var, _)) => st
                        .vars
                        .get(var)
                        .cloned()
                        .unwrap_or_else(|| "no_result".into()),
                },
            };
            match end {
                FlowEnd::Done => {
                    Outcome::new(Disposition::Answered, HangupCause::Normal, Side::Box, false)
                }
                // The called party hanging up is the normal end.
                FlowEnd::Gone(g) => gone_outcome(g, Disposition::Answered),
            }
        }
        Ok(Rang::NoAnswer) => {
            result = "no_answer".into();
            Outcome::new(
                Disposition::NoAnswer,
                HangupCause::NoAnswer,
                Side::System,
                false,
            )
        }
        Ok(Rang::Cancelled | Rang::Refused(HangupCause::Shutdown)) => Outcome::new(
            Disposition::Failed,
            HangupCause::Shutdown,
            Side::System,
            false,
        ),
        Ok(Rang::Refused(cause)) => {
            result = match cause {
                HangupCause::Busy => "busy",
                HangupCause::Congestion => "congestion",
                HangupCause::NotInService => "not_in_service",
                _ => "no_answer",
            }
            .into();
            Outcome::new(Disposition::NoAnswer, cause, Side::Caller, true)
        }
        Ok(Rang::Failed(e)) => {
            tracing::error!("line failed while dialling: {e}");
            Outcome::new(
                Disposition::Failed,
                HangupCause::LineFailure,
                Side::System,
                false,
            )
        }
    };
    let release = if outcome.far_end_gone {
        HangupCause::Normal
    } else {
        outcome.cause
    };
    match glare {
        // Not ours to hang up: the caller's call goes back to the watcher.
        Some(ev) => lease.put_back(ev),
        None => {
            if let Err(e) = lease
                .port()
                .line
                .command(LineCommand::Hangup(release))
                .await
            {
                tracing::warn!("releasing the trunk failed: {e}");
            }
        }
    }
    ctx.panel.line_led(&trunk, false).await;
    let answered = outcome.disposition == Disposition::Answered;
    if answered {
        log.flow(flow_record(&id, ivr, &st, by.job)).await;
    } else {
        log.flow(crate::store::CallFlow {
            id: id.clone(),
            job: by.job.map(str::to_string),
            outcome: Some(result.clone()),
            ..Default::default()
        })
        .await;
    }
    log.end(outcome.disposition, outcome.cause, outcome.side)
        .await;
    let done = answered
        && match (&job.success, result.as_str()) {
            (_, "machine") => message_left && by.amd.is_some_and(|a| a.done_after_message),
            (_, "unsure") => false,
            (None, _) => true,
            (Some((_, values)), _) => values.contains(&result),
        };
    Attempt {
        call_id: Some(id),
        result,
        done,
        answers: answered.then(|| st.recorded_vars()),
        agent: st.agent.clone(),
        amd: verdict,
    }
}

/// Runs the flow for a called party screened by answering-machine
/// detection: a person (or an `unsure` taken as one) gets the flow; a
/// machine, as the campaign says, nothing, the flow after its greeting
/// (the message node), or the flow as a person would. The verdict is the
/// flow's recorded variable `amd`.
async fn screened<L: Line>(
    env: &crate::ivr::engine::FlowEnv<'_, L>,
    media: &mut Media<'_, L>,
    st: &mut FlowState,
    amd: &Amd,
) -> (FlowEnd, Option<Verdict>) {
    // The detector decides by `total` of audio; a line that stops sending
    // frames must not hold the call past it.
    let bound = amd.params.total + std::time::Duration::from_secs(2);
    let listen = media.analyse(Listener::Classify(Detector::new(amd.params)));
    let v = match tokio::time::timeout(bound, listen).await {
        Ok(Ok(Heard::Verdict(v))) => v,
        Ok(Ok(Heard::Quiet)) | Err(_) => Verdict::Unsure,
        Ok(Err(g)) => return (FlowEnd::Gone(g), None),
    };
    tracing::info!(amd = v.as_str(), "answering-machine detection");
    st.vars.insert("amd".into(), v.as_str().into());
    st.recordable.insert("amd".into());
    match (v, amd.machine) {
        (Verdict::Machine, OnMachine::Hangup) => (FlowEnd::Done, Some(v)),
        (Verdict::Machine, OnMachine::Message(node)) => {
            let quiet =
                Listener::quiet(amd.end_silence, GREETING_MAX, amd.params.silence_threshold);
            if let Err(g) = media.analyse(quiet).await {
                return (FlowEnd::Gone(g), Some(v));
            }
            st.start = Some(node);
            (env.run(media, st).await, Some(v))
        }
        (Verdict::Unsure, _) if !amd.unsure_human => (FlowEnd::Done, Some(v)),
        _ => (env.run(media, st).await, Some(v)),
    }
}
