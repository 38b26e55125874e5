//! The call actor: one task per call, owning the call's port while it lasts.
//!
//! An inbound call rings for the configured time (a blocked caller is
//! refused first), is answered, hears the greeting if the site has one, then
//! runs through the IVR flow its dialled number routes to; without an IVR
//! the box hangs up after the greeting. The actor keeps reading inbound
//! audio and line events the whole time, so a caller who hangs up is
//! noticed within a frame, and on shutdown it ends the call and writes the
//! record before the daemon exits.
//!
//! A call reads the running config ([`LiveConfig`]) once, when it starts,
//! and keeps that snapshot to its end: a config change applied meanwhile
//! reaches the next call, never one in progress.

use std::path::PathBuf;
use std::sync::Arc;

use callbox_hal::{AudioIn, AudioOut, HangupCause, Line, LineCommand, LineEvent, Port};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::Clock;
use crate::config::{Inbound, SiteConfig};
use crate::ivr::Ivr;
use crate::ivr::engine::{FlowEnd, FlowEnv, FlowState};
use crate::ivr::media::{Gone, Media};
use crate::lines::Switch;
use crate::panel::PanelHandle;
use crate::store::{
    CallEnd, CallFlow, CallStart, Direction, Disposition, Side, StoreHandle, StoreMsg,
};

/// The parts of the config a call runs by, as one snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// How inbound calls are handled.
    pub inbound: Arc<Inbound>,
    /// The IVR, when the site has one.
    pub ivr: Option<Arc<Ivr>>,
}

impl Snapshot {
    /// The call-facing parts of a checked config.
    pub fn of(config: &SiteConfig) -> Snapshot {
        Snapshot {
            inbound: Arc::new(config.inbound.clone()),
            ivr: config.ivr.clone().map(Arc::new),
        }
    }
}

/// The running config new calls start with; `config.set` replaces it.
/// Cheap to clone; every clone sees the same value.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    tx: Arc<tokio::sync::watch::Sender<Arc<Snapshot>>>,
}

impl LiveConfig {
    /// Starts with `snapshot`.
    pub fn new(snapshot: Snapshot) -> LiveConfig {
        LiveConfig {
            tx: Arc::new(tokio::sync::watch::Sender::new(Arc::new(snapshot))),
        }
    }

    /// What a call starting now runs by.
    pub fn current(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    /// Puts `snapshot` in force for new calls; answers the one replaced.
    pub fn replace(&self, snapshot: Arc<Snapshot>) -> Arc<Snapshot> {
        self.tx.send_replace(snapshot)
    }
}

/// What a call needs from the rest of the daemon.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// Record store.
    pub store: StoreHandle,
    /// Time source.
    pub clock: Clock,
    /// How inbound calls are handled (this call's snapshot: see
    /// [`CallContext::for_new_call`]).
    pub inbound: Arc<Inbound>,
    /// The IVR, when the site has one (this call's snapshot).
    pub ivr: Option<Arc<Ivr>>,
    /// The running config, for calls that start later.
    pub live: LiveConfig,
    /// Data directory (voicemail).
    pub data_dir: Arc<PathBuf>,
    /// Front panel (line LEDs).
    pub panel: PanelHandle,
    /// Call recording.
    pub recorder: crate::recorder::Recorder,
    /// Cancelled when the daemon stops.
    pub shutdown: CancellationToken,
}

impl CallContext {
    /// The context for a call starting now: `inbound` and `ivr` as the
    /// running config has them, kept for the length of the call.
    pub fn for_new_call(&self) -> CallContext {
        let now = self.live.current();
        CallContext {
            inbound: now.inbound.clone(),
            ivr: now.ivr.clone(),
            ..self.clone()
        }
    }
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

pub(crate) struct Outcome {
    pub(crate) disposition: Disposition,
    pub(crate) cause: HangupCause,
    pub(crate) side: Side,
    /// Whether the far end already hung up (the line still needs releasing).
    pub(crate) far_end_gone: bool,
}

impl Outcome {
    pub(crate) fn new(
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

/// A new record id: UUIDv7 from the clock, so ids sort by time.
pub fn new_id(clock: &Clock) -> String {
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
    sw: Switch<L, I, O>,
) -> Port<L, I, O>
where
    L: Line,
    I: AudioIn,
    O: AudioOut,
{
    let ctx = ctx.for_new_call();
    let id = new_id(&ctx.clock);
    let span = tracing::info_span!("call", id = %&id[id.len() - 8..], line = %port.line.info().id);
    inbound_call(port, arrival, ctx, id, sw)
        .instrument(span)
        .await
}

async fn inbound_call<L, I, O>(
    mut port: Port<L, I, O>,
    arrival: Arrival,
    ctx: CallContext,
    id: String,
    sw: Switch<L, I, O>,
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
        answer_and_run(&mut port, &id, &arrival, &ctx, &sw, &mut flow).await
    };
    if let Some(f) = flow {
        ctx.store.send(StoreMsg::CallFlow(f)).await;
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
    let end = ctx.clock.now();
    tracing::info!(
        disposition = outcome.disposition.as_str(),
        by = ?outcome.side,
        cause = %outcome.cause,
        "call ends"
    );
    ctx.store
        .send(StoreMsg::Event {
            call_id: id.clone(),
            at: end,
            event: "hangup",
            data: serde_json::json!({
                "disposition": outcome.disposition.as_str(),
                "cause": outcome.cause.to_string(),
                "side": outcome.side,
            }),
        })
        .await;
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

async fn answer_and_run<L, I, O>(
    port: &mut Port<L, I, O>,
    id: &str,
    arrival: &Arrival,
    ctx: &CallContext,
    sw: &Switch<L, I, O>,
    flow: &mut Option<CallFlow>,
) -> Outcome
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
    let at = ctx.clock.now();
    ctx.store
        .send(StoreMsg::CallAnswered {
            id: id.to_string(),
            at,
        })
        .await;
    ctx.store
        .send(StoreMsg::Event {
            call_id: id.to_string(),
            at,
            event: "answered",
            data: serde_json::json!({}),
        })
        .await;
    let mut media = Media::new(port, ctx.shutdown.clone());
    media.rec = crate::recorder::Recording::for_call(&ctx.recorder, id);
    let answered = |cause, side, gone| Outcome::new(Disposition::Answered, cause, side, gone);
    if let Some(greeting) = &ctx.inbound.greeting {
        tracing::info!(greeting = %greeting.name, "answered; playing greeting");
        if let Err(g) = media.play(&greeting.samples, false).await {
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
    let (start, lang) = ivr.route(arrival.dialled.as_deref());
    let mut st = FlowState::new(start, lang, &[]);
    let env = FlowEnv::new(
        ivr,
        &sw.lines,
        ctx,
        sw.acd.as_ref(),
        id,
        arrival.caller.as_deref(),
        arrival.dialled.as_deref(),
    );
    let end = env.run(&mut media, &mut st).await;
    *flow = Some(flow_record(id, ivr, &st, None));
    match end {
        FlowEnd::Done => answered(HangupCause::Normal, Side::Box, false),
        FlowEnd::Gone(g) => gone_outcome(g, Disposition::Answered),
    }
}

/// The record of what a flow did.
pub(crate) fn flow_record(id: &str, ivr: &Ivr, st: &FlowState, job: Option<&str>) -> CallFlow {
    CallFlow {
        id: id.to_string(),
        flow: st.start.map(|n| ivr.nodes[n].name.clone()),
        language: st.lang.map(|l| l.code().to_string()),
        path: st.path.clone(),
        vars: st.recorded_vars(),
        outcome: st.outcome.clone(),
        survey_score: st.survey,
        connected_to: st.connected_to.clone(),
        job: job.map(str::to_string),
        queue: st.queue.clone(),
        queue_wait_ms: st.queue_wait_ms,
        agent: st.agent.clone(),
        talk_ms: st.talk_ms,
        queue_exit: st.queue_exit.clone(),
    }
}

/// How a call ends when the IVR cannot go on.
pub(crate) fn gone_outcome(g: Gone, disposition: Disposition) -> Outcome {
    match g {
        Gone::Caller => {
            tracing::info!("caller hung up");
            Outcome::new(disposition, HangupCause::Normal, Side::Caller, true)
        }
        Gone::Shutdown => Outcome::new(disposition, HangupCause::Shutdown, Side::System, false),
        Gone::Failure(e) => {
            tracing::error!("line failed: {e}");
            Outcome::new(disposition, HangupCause::LineFailure, Side::System, false)
        }
    }
}
