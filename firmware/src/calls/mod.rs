//! Calls: one lifecycle for every call the box takes or places.
//!
//! - [`inbound`]: a call that arrives on a trunk — ring, answer, greeting,
//!   the IVR flow its dialled number routes to;
//! - [`outbound`]: voice jobs and originated calls that dial out and run a
//!   flow once answered;
//! - [`callback`]: a queue's callback, dialled with the agent already on
//!   the line;
//! - [`record`]: the call record all of them write the same way.
//!
//! A call reads the running config ([`LiveConfig`]) once, when it starts,
//! and keeps that snapshot to its end: a config change applied meanwhile
//! reaches the next call, never one in progress.

pub mod callback;
pub mod campaign;
pub mod dialplan;
pub mod inbound;
pub mod mailbox;
pub mod outbound;
pub mod preempt;
pub mod record;
pub mod station;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use callbox_hal::HangupCause;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::ivr::Ivr;
use crate::ivr::engine::{FlowEnv, FlowState};
use crate::media::Gone;
use crate::panel::PanelHandle;
use crate::prompt::Prompt;
use crate::store::{CallFlow, Disposition, Side, StoreHandle};

pub use inbound::inbound;

/// How the box treats calls arriving on its trunks.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// Played to every caller after answering, before the IVR.
    pub greeting: Option<Prompt>,
    /// Ringing time before the box answers.
    pub answer_after: Duration,
    /// Played in a loop to the caller while the call rings, on lines that
    /// carry audio before the answer (early media on SIP trunks).
    pub ringback: Option<Prompt>,
    /// Trunks that take inbound calls; calls on other trunks are refused.
    pub lines: Vec<String>,
    /// The number each trunk answers for (`[[line]] number`): the dialled
    /// number of its calls that arrive without one (analog lines).
    pub numbers: std::collections::HashMap<String, String>,
    /// Trunks whose exchange sends the dialled number as DTMF after the
    /// box answers (`[[line]] did_digits`), with how many digits.
    pub did_digits: std::collections::HashMap<String, usize>,
    /// How long each trunk may be down before alarm `line_down`
    /// (`[[line]] down_alarm`; others wait the default).
    pub down_alarms: std::collections::HashMap<String, Duration>,
}

/// The parts of the config a call runs by, as one snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// How inbound calls are handled.
    pub inbound: Arc<Inbound>,
    /// The IVR, when the site has one.
    pub ivr: Option<Arc<Ivr>>,
    /// The dial plan, when the site has one.
    pub dialplan: Option<Arc<dialplan::DialPlan>>,
    /// Voicemail boxes, when the site has them.
    pub voicemail: Option<Arc<crate::voicemail::VoicemailCfg>>,
    /// Outbound campaigns and their do-not-call lists: a list changed
    /// (headquarters' `lookup.update` of `dnc`) holds from the next dial.
    pub campaigns: Arc<campaign::Campaigns>,
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
    /// The day/night switch.
    pub daynight: crate::daynight::DayNight,
    /// Call recording.
    pub recorder: crate::recorder::Recorder,
    /// What waits in each voicemail box.
    pub mailboxes: crate::voicemail::Mailboxes,
    /// Where each call is now, for the console.
    pub inflight: crate::inflight::Inflight,
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

impl CallContext {
    /// What the IVR needs of this box to run a flow on call `id`.
    pub fn flow_env<'a, L>(
        &'a self,
        ivr: &'a Ivr,
        sw: &'a Switch<L>,
        id: &'a str,
        caller: Option<&'a str>,
        dialled: Option<&'a str>,
    ) -> FlowEnv<'a, L> {
        FlowEnv {
            ivr,
            lines: &sw.lines,
            store: &self.store,
            clock: &self.clock,
            data_dir: &self.data_dir,
            call_id: id,
            caller,
            dialled,
            acd: sw.acd.as_ref(),
            park: &sw.park,
            rooms: &sw.rooms,
            daynight: &self.daynight,
            mailboxes: &self.mailboxes,
            inflight: &self.inflight,
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

/// How a call ended, for its record and for releasing its line.
#[derive(Debug)]
pub struct Outcome {
    /// Answered, abandoned, rejected…
    pub disposition: Disposition,
    /// The hangup cause.
    pub cause: HangupCause,
    /// Who ended it.
    pub side: Side,
    /// Whether the far end already hung up (the line still needs releasing).
    pub far_end_gone: bool,
}

impl Outcome {
    pub fn new(
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

/// What a call can reach besides its own line: other lines, and the ACD's
/// queues when the site has agents.
#[derive(Debug)]
pub struct Switch<L> {
    /// Line directory.
    pub lines: crate::media::lines::SharedLines<L>,
    /// Queues.
    pub acd: Option<crate::acd::AcdHandle<L>>,
    /// Conference rooms.
    pub rooms: crate::media::conference::Rooms,
    /// Parked calls.
    pub park: crate::media::park::ParkLot<L>,
    /// Stations ringing for a colleague's call, for pickup.
    pub ringing: crate::media::pickup::Ringing<L>,
    /// Callers' calls on trunks, which an emergency call may end.
    pub preemption: preempt::Preemption,
}

impl<L> Clone for Switch<L> {
    fn clone(&self) -> Self {
        Switch {
            lines: self.lines.clone(),
            acd: self.acd.clone(),
            rooms: self.rooms.clone(),
            park: self.park.clone(),
            ringing: self.ringing.clone(),
            preemption: self.preemption.clone(),
        }
    }
}

/// The record of what a flow did.
pub fn flow_record(id: &str, ivr: &Ivr, st: &FlowState, job: Option<&str>) -> CallFlow {
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
pub fn gone_outcome(g: Gone, disposition: Disposition) -> Outcome {
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
