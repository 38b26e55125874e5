//! Calls agents place from their phones, by the site's dial plan: a
//! colleague's extension (ringing the station the agent is logged in at)
//! or, after the outside prefix, a number on the first free trunk. The
//! caller hears ringback, then the other side; a number the phone may
//! not call gets the reorder tone, one the plan does not know the "not in
//! service" prompt. Every attempt leaves a record: direction `internal`
//! or `outbound`, the `station` it was keyed on, the `agent` logged in
//! there, the trunk and the number, recorded by the site's policy like
//! any call.
//!
//! [`click_to_call`] is the same call placed for an agent from outside
//! (headquarters' `originate`, the box's command API): the agent's phone
//! rings first, showing the number, and the number is dialled when they
//! answer.

mod preview;
mod supervise;

use std::time::Duration;

use callbox_hal::dsp::tones::{ProgressTone, ToneRegion};
use callbox_hal::{HangupCause, Line, LineCommand};
use tracing::Instrument;

use super::dialplan::{DialPlan, Dialled, Extension};
use super::record::{CallLog, Placed};
use super::{CallContext, Switch, flow_record};
use crate::ivr::engine::{FlowEnd, FlowState};
use crate::media::conference::{self, Attended, RoomCfg};
use crate::media::dial::{Rang, answer_within, release, ring_station};
use crate::media::lines::{Lease, Port};
use crate::media::pickup::Rung;
use crate::media::{BridgeEnd, Gone, Media, bridge};
use crate::recorder::config::CallKeys;
use crate::store::{CallFlow, Direction, Disposition, Side};

pub use preview::{Preview, PreviewCall, preview};
pub use supervise::{SuperviseError, supervise};

/// How long the called phone or number rings.
const RING: Duration = Duration::from_secs(30);
/// How long a refusal tone plays before the box lets go of the handset.
const REFUSAL: Duration = Duration::from_secs(15);
/// How long an emergency call waits for the trunk it freed.
const PREEMPT_WAIT: Duration = Duration::from_secs(5);
/// Longest message a colleague leaves when nobody answers.
const MESSAGE_MAX: Duration = Duration::from_secs(120);

/// Places the call `keys` (as keyed, `#` included) from the off-hook
/// station `port`, to its end; hands the port back, with `true` if the
/// station hung up (its watcher then releases the line). `None`: the port
/// was lent on (a parked call) and never came back, a bug.
pub async fn place<L>(
    mut port: Port<L>,
    keys: String,
    ctx: CallContext,
    sw: Switch<L>,
) -> Option<(Port<L>, bool)>
where
    L: Line,
{
    let snap = ctx.live.current();
    let Some(plan) = snap.dialplan.clone() else {
        return Some((port, false));
    };
    let ctx = ctx.for_new_call();
    let id = crate::clock::new_id(&ctx.clock);
    let station = port.line.info().id.clone();
    let span = tracing::info_span!("call", id = %&id[id.len() - 8..], line = %station);
    async {
        let who = Who::at(&station, &sw).await;
        // The agent is busy with their own call: no queue call meanwhile.
        if let Some(acd) = &sw.acd {
            acd.personal(&station, true).await;
        }
        let dialled = plan.classify(&keys, &station, who.agent.as_deref());
        let number = keys.strip_suffix('#').unwrap_or(&keys).to_string();
        tracing::info!(%number, agent = who.agent.as_deref().unwrap_or("none"), ?dialled, "station dials");
        let tones = ctx.ivr.as_ref().map_or(ToneRegion::China, |i| i.tones);
        let call = Call {
            ctx: &ctx,
            sw: &sw,
            plan: Some(&plan),
            id: &id,
            station: &station,
            who: &who,
            number: &number,
            tones,
            job: None,
        };
        let mut hung_up = None;
        if let Dialled::Extension(Extension::ParkSlot(slot)) = &dialled {
            // The station goes to the parked caller's call, and comes back
            // when that call is over (the box hangs it up then).
            let (back, returned) = tokio::sync::oneshot::channel();
            let taken = sw.park.take(slot, Lease::new(port, back)).await.is_ok();
            // A lease sends its port back when it is dropped.
            port = returned.await.ok()?.0;
            if taken {
                tracing::info!(%slot, "the station took the parked call");
                hung_up = Some(true);
            }
        }
        let hung_up = match hung_up {
            Some(h) => h,
            None => call.run(&mut port, dialled).await,
        };
        if let Some(acd) = &sw.acd {
            acd.personal(&station, false).await;
        }
        Some((port, hung_up))
    }
    .instrument(span)
    .await
}

/// Where agent `a` takes calls: the station they are logged in at, else
/// their home station.
pub async fn station_of<L: Line>(sw: &Switch<L>, a: &str) -> Option<String> {
    let acd = sw.acd.as_ref()?;
    let agents = acd.stats().await.map(|s| s.agents).unwrap_or_default();
    agents
        .iter()
        .find(|s| s.agent == a && s.state != "logged_out")
        .and_then(|s| s.station.clone())
        .or_else(|| {
            acd.config()
                .agents
                .iter()
                .find(|c| c.id == a)
                .and_then(|c| c.station.clone())
        })
}

/// The station ringing for a colleague's call that `digits` (the pickup
/// code and an agent's number, `*81001`) asks to take, if it rings.
pub async fn pickup_target<L: Line>(digits: &str, sw: &Switch<L>) -> Option<String> {
    let acd = sw.acd.as_ref()?;
    let cfg = acd.config();
    let number = digits.strip_prefix(cfg.codes.pickup.as_str())?;
    let agent = cfg
        .agents
        .iter()
        .find(|a| a.number.as_deref() == Some(number))?;
    let station = station_of(sw, &agent.id).await?;
    sw.ringing.is_ringing(&station).then_some(station)
}

/// Who placed the call: the agent logged in at the station, and the number
/// the called side sees.
pub(super) struct Who {
    pub(super) agent: Option<String>,
    name: Option<String>,
    number: Option<String>,
}

impl Who {
    /// Agent `id`, as the ACD's config has them.
    fn of<L: Line>(id: &str, acd: &crate::acd::AcdHandle<L>) -> Who {
        let cfg = acd.config();
        let a = cfg.agents.iter().find(|a| a.id == id);
        Who {
            agent: Some(id.to_string()),
            name: a.map(|a| a.name.clone()),
            number: a.and_then(|a| a.number.clone()),
        }
    }

    pub(super) async fn at<L: Line>(station: &str, sw: &Switch<L>) -> Who {
        let Some(acd) = &sw.acd else {
            return Who {
                agent: None,
                name: None,
                number: None,
            };
        };
        let agents = acd.stats().await.map(|s| s.agents).unwrap_or_default();
        let agent = agents
            .iter()
            .find(|a| a.station.as_deref() == Some(station) && a.state != "logged_out")
            .map(|a| a.agent.clone());
        let cfg = acd.config();
        let a = agent
            .as_deref()
            .and_then(|id| cfg.agents.iter().find(|a| a.id == id));
        Who {
            name: a.map(|a| a.name.clone()),
            number: a.and_then(|a| a.number.clone()),
            agent,
        }
    }
}

struct Call<'a, L> {
    ctx: &'a CallContext,
    sw: &'a Switch<L>,
    /// `None` for a campaign's preview call, which dials its own trunks.
    plan: Option<&'a DialPlan>,
    id: &'a str,
    station: &'a str,
    who: &'a Who,
    number: &'a str,
    tones: ToneRegion,
    /// What placed it when not the agent's own keys (`click_to_call`, a
    /// campaign's name).
    job: Option<&'a str>,
}

/// How an attempt ended, for its record.
struct Ended {
    disposition: Disposition,
    cause: HangupCause,
    side: Side,
    outcome: String,
    connected_to: Option<String>,
    talk: Option<Duration>,
    /// Trunks tried and how (`trunk-2!congestion`, `trunk-1=connected:trunk-1`).
    path: Vec<String>,
}

impl Ended {
    fn refused(cause: HangupCause, outcome: &str) -> Ended {
        Ended {
            disposition: Disposition::Rejected,
            cause,
            side: Side::Box,
            outcome: outcome.to_string(),
            connected_to: None,
            talk: None,
            path: Vec::new(),
        }
    }
}

/// A rung or dialled line that did not answer, for the record.
fn not(disposition: Disposition, cause: HangupCause, outcome: &str) -> Ended {
    Ended {
        side: Side::Caller,
        disposition,
        ..Ended::refused(cause, outcome)
    }
}

impl<L: Line> Call<'_, L> {
    /// Returns whether the station hung up.
    async fn run(&self, port: &mut Port<L>, dialled: Dialled) -> bool {
        match dialled {
            Dialled::Unknown => {
                let log = self.log(Direction::Internal, None, self.number).await;
                tracing::info!("not in service");
                self.turn_away(port, log, HangupCause::NotInService, "not_in_service")
                    .await
            }
            Dialled::Outside {
                allowed: false,
                class,
                number,
            } => {
                let log = self.log(Direction::Outbound, None, &number).await;
                tracing::warn!(%class, "number not allowed from this phone: reorder");
                self.turn_away(port, log, HangupCause::NotAllowed, "not_allowed")
                    .await
            }
            Dialled::Outside { number, class, .. } => self.outside(port, &number, &class).await,
            Dialled::Extension(Extension::Node(node)) => self.flow(port, &node).await,
            Dialled::Extension(Extension::Room(room)) => self.room(port, &room).await,
            Dialled::Extension(Extension::ParkSlot(slot)) => {
                // `place` found nobody parked there.
                let log = self.log(Direction::Internal, None, self.number).await;
                tracing::info!(%slot, "no call is parked in the slot");
                self.turn_away(port, log, HangupCause::NotInService, "park_empty")
                    .await
            }
            Dialled::Extension(ext) => self.extension(port, ext).await,
        }
    }

    /// Starts the call's record: the number as keyed, for an outside one
    /// the number dialled on the trunk.
    async fn log(&self, direction: Direction, trunk: Option<String>, dialled: &str) -> CallLog {
        CallLog::start(
            &self.ctx.store,
            &self.ctx.clock,
            self.id,
            Placed {
                direction,
                trunk_line: trunk,
                caller: self
                    .who
                    .number
                    .clone()
                    .or_else(|| Some(self.station.to_string())),
                dialled: Some(dialled.to_string()),
                station: Some(self.station.to_string()),
                caller_name: self.who.name.clone(),
            },
        )
        .await
    }

    /// Writes what happened and ends the record. `gone`: the station hung
    /// up (or the box is stopping) before the attempt's own end. Returns
    /// whether the station hung up.
    async fn finish(&self, log: CallLog, e: Ended, gone: Option<Gone>) -> bool {
        let hung_up = matches!(gone, Some(Gone::Caller));
        log.flow(CallFlow {
            id: self.id.to_string(),
            outcome: Some(e.outcome),
            connected_to: e.connected_to,
            agent: self.who.agent.clone(),
            talk_ms: e.talk.map(|t| t.as_millis() as i64),
            path: e.path,
            job: self.job.map(str::to_string),
            ..CallFlow::default()
        })
        .await;
        let (cause, side) = match gone {
            Some(Gone::Caller) if e.disposition != Disposition::Answered => (e.cause, e.side),
            Some(Gone::Caller) => (HangupCause::Normal, Side::Caller),
            Some(Gone::Shutdown) => (HangupCause::Shutdown, Side::System),
            Some(Gone::Failure(_)) => (HangupCause::LineFailure, Side::System),
            None => (e.cause, e.side),
        };
        tracing::info!(disposition = e.disposition.as_str(), %cause, "call ends");
        log.end(e.disposition, cause, side).await;
        hung_up
    }

    /// Refuses the station's call for `cause`: "not in service" (a number
    /// the box has nothing behind) or reorder alone (a number the phone
    /// may not call), then the record with `outcome`.
    async fn turn_away(
        &self,
        port: &mut Port<L>,
        log: CallLog,
        cause: HangupCause,
        outcome: &str,
    ) -> bool {
        let prompt = (cause == HangupCause::NotInService).then_some("system:not-in-service");
        let mut media = Media::new(port, self.ctx.shutdown.clone());
        let gone = self.refuse(&mut media, prompt).await;
        self.finish(log, Ended::refused(cause, outcome), gone).await
    }

    /// Plays `prompt` (if the IVR has it), then the reorder tone until the
    /// station hangs up or [`REFUSAL`] passes.
    async fn refuse(&self, media: &mut Media<'_, L>, prompt: Option<&str>) -> Option<Gone> {
        let samples = prompt.and_then(|key| {
            self.ctx
                .ivr
                .as_ref()
                .and_then(|ivr| ivr.prompts.get(ivr.language, key).cloned())
        });
        if let Some(s) = samples
            && let Err(g) = media.play(s, false).await
        {
            return Some(g);
        }
        media
            .tone_while(
                self.tones,
                ProgressTone::Congestion,
                tokio::time::sleep(REFUSAL),
                false,
            )
            .await
            .err()
    }

    /// An extension: the station, or the one its agent is logged in at.
    async fn extension(&self, port: &mut Port<L>, ext: Extension) -> bool {
        let target = match &ext {
            Extension::Station(s) => Some(s.clone()),
            Extension::Agent(a) => Self::station_of(self.sw, a).await,
            Extension::Node(_) | Extension::Room(_) | Extension::ParkSlot(_) => None,
        };
        let log = self.log(Direction::Internal, None, self.number).await;
        let Some(target) = target.filter(|t| t != self.station) else {
            tracing::info!(?ext, "extension has no phone to ring (or is this one)");
            return self
                .turn_away(port, log, HangupCause::NotInService, "not_in_service")
                .await;
        };
        let mut media = Media::new(port, self.ctx.shutdown.clone());
        // A colleague who does not answer (or is busy) takes a message, in
        // their own voicemail box if they have one.
        let own_box = match &ext {
            Extension::Agent(a) => self.ctx.live.current().voicemail.as_ref().and_then(|v| {
                v.boxes
                    .iter()
                    .find(|b| b.name == *a)
                    .map(|b| b.name.clone())
            }),
            _ => None,
        };
        let Some(mut lease) = self.sw.lines.seize(&target).await else {
            tracing::info!(%target, "the station is busy");
            if let Some(mailbox) = &own_box {
                let (e, gone) = self.take_message(&mut media, mailbox).await;
                return self.finish(log, e, gone).await;
            }
            let ended = media
                .tone_while(
                    self.tones,
                    ProgressTone::Busy,
                    tokio::time::sleep(REFUSAL),
                    false,
                )
                .await
                .err();
            let mut e = Ended::refused(HangupCause::Busy, "busy");
            e.disposition = Disposition::NoAnswer;
            return self.finish(log, e, ended).await;
        };
        let cmd = LineCommand::Ring {
            caller_id: self.who.number.clone(),
            caller_name: self.who.name.clone(),
        };
        // The colleague rung is busy with this call too, ringing or
        // talking: the queues offer them nothing meanwhile.
        if let Some(acd) = &self.sw.acd {
            acd.personal(&target, true).await;
        }
        // Another agent may take the call at their phone meanwhile.
        let mut rung = self.sw.ringing.ring(&target);
        let mut picked = None;
        let rang = self
            .ring_or_pickup(
                &mut media,
                &mut lease,
                cmd,
                &target,
                Some((&mut rung, &mut picked)),
            )
            .await;
        drop(rung);
        let (e, gone) = match rang {
            Ok(Rang::Cancelled) if let Some(mut by) = picked => {
                // The rung phone stops ringing and is free again.
                release(lease.port(), HangupCause::Normal).await;
                drop(lease);
                let station = by.port().line.info().id.clone();
                tracing::info!(%target, by = %station, "picked up at another phone");
                self.talk(&mut media, &mut by, &station, &log).await
            }
            Ok(Rang::Answered) => self.talk(&mut media, &mut lease, &target, &log).await,
            Ok(Rang::NoAnswer | Rang::Refused(HangupCause::Busy))
                if let Some(mailbox) = &own_box =>
            {
                release(lease.port(), HangupCause::NoAnswer).await;
                self.take_message(&mut media, mailbox).await
            }
            Ok(rang) => {
                self.not_connected(&mut media, &mut lease, rang, &target)
                    .await
            }
            Err(g) => {
                release(lease.port(), HangupCause::Normal).await;
                let e = not(Disposition::Abandoned, HangupCause::Normal, "abandoned");
                (e, Some(g))
            }
        };
        if let Some(acd) = &self.sw.acd {
            acd.personal(&target, false).await;
        }
        self.finish(log, e, gone).await
    }

    /// The caller leaves a message in `mailbox` after the "leave a
    /// message" prompt and the beep.
    async fn take_message(&self, media: &mut Media<'_, L>, mailbox: &str) -> (Ended, Option<Gone>) {
        let Some(ivr) = self.ctx.ivr.clone() else {
            // (`[voicemail]` requires an `[ivr]`.)
            return (
                not(Disposition::NoAnswer, HangupCause::NoAnswer, "no_answer"),
                None,
            );
        };
        tracing::info!(%mailbox, "no answer: the caller may leave a message");
        let greeting = ivr
            .prompts
            .sentence(ivr.language, ["system:leave-message", "system:beep"]);
        if let Err(g) = media.play(greeting.into(), false).await {
            return (
                not(Disposition::NoAnswer, HangupCause::NoAnswer, "no_answer"),
                Some(g),
            );
        }
        if !media.rec.is_on() {
            media.rec = crate::recorder::Recording::for_call(&self.ctx.recorder, self.id);
        }
        let caller = self.who.number.as_deref().unwrap_or(self.station);
        let env = self
            .ctx
            .flow_env(&ivr, self.sw, self.id, Some(caller), Some(self.number));
        let (left, gone) = env.leave_message(media, mailbox, MESSAGE_MAX).await;
        let outcome = match left {
            Ok(_) => format!("voicemail:{mailbox}"),
            Err(()) => format!("voicemail_failed:{mailbox}"),
        };
        (
            not(Disposition::NoAnswer, HangupCause::NoAnswer, &outcome),
            gone,
        )
    }

    /// A conference room: the PIN if it has one, then the room until the
    /// station hangs up; recorded by the policy for the room's number.
    async fn room(&self, port: &mut Port<L>, room: &RoomCfg) -> bool {
        let log = self.log(Direction::Internal, None, self.number).await;
        log.answered().await;
        let answered = tokio::time::Instant::now();
        let mut media = Media::new(port, self.ctx.shutdown.clone());
        self.record_by_policy(&mut media);
        let ivr = self.ctx.ivr.clone();
        let prompt = move |key: &str| {
            let ivr = ivr.as_ref()?;
            ivr.prompts.get(ivr.language, key).cloned()
        };
        let r = conference::attend(&mut media, &self.sw.rooms, room, &prompt).await;
        media.rec.stop();
        let (attended, gone) = match r {
            Ok(a) => (a, None),
            Err(g) => (Attended::Joined, Some(g)),
        };
        let e = Ended {
            disposition: Disposition::Answered,
            cause: HangupCause::Normal,
            side: Side::Box,
            outcome: attended.outcome(&room.name),
            connected_to: None,
            talk: Some(answered.elapsed()),
            path: Vec::new(),
        };
        self.finish(log, e, gone).await
    }

    /// Seizes `trunk`, whose call was just ended for an emergency call,
    /// as soon as its watcher has it back (within a few seconds).
    async fn seize_when_back(&self, trunk: &str) -> Option<Lease<L>> {
        let deadline = tokio::time::Instant::now() + PREEMPT_WAIT;
        loop {
            if let Some(l) = self.sw.lines.seize(trunk).await {
                return Some(l);
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(%trunk, "the preempted trunk did not come free");
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts recording the call if the site's policy says so for this
    /// agent and the number dialled.
    fn record_by_policy(&self, media: &mut Media<'_, L>) {
        media.rec = crate::recorder::Recording::for_call(&self.ctx.recorder, self.id);
        if let Some(cfg) = media.rec.config() {
            let d = cfg.decide(&CallKeys {
                queue: None,
                flow: None,
                agent: self.who.agent.as_deref(),
                dialled: Some(self.number),
            });
            if !media.rec.follow(d) {
                tracing::warn!("recording unavailable");
            }
        }
    }

    /// An access number: the IVR flow from `node` (a queue, a menu), the
    /// station its caller.
    async fn flow(&self, port: &mut Port<L>, node: &str) -> bool {
        let log = self.log(Direction::Internal, None, self.number).await;
        let ivr = self.ctx.ivr.as_ref();
        let Some((ivr, start)) =
            ivr.and_then(|i| Some((i, i.nodes.iter().position(|n| n.name == node)?)))
        else {
            // The config changed under the call: the node is gone.
            return self
                .turn_away(port, log, HangupCause::NotInService, "not_in_service")
                .await;
        };
        tracing::info!(%node, "access number: the flow runs");
        log.answered().await;
        let caller = self.who.number.as_deref().unwrap_or(self.station);
        let env = self
            .ctx
            .flow_env(ivr, self.sw, self.id, Some(caller), Some(self.number));
        let mut st = FlowState::new(start, ivr.language, &[]);
        let mut media = Media::new(port, self.ctx.shutdown.clone());
        media.rec = crate::recorder::Recording::for_call(&self.ctx.recorder, self.id);
        let end = env.run(&mut media, &mut st).await;
        drop(media);
        let mut flow = flow_record(self.id, ivr, &st, self.job);
        // The agent who placed it, unless an agent of the queue took it.
        if flow.agent.is_none() {
            flow.agent = self.who.agent.clone();
        }
        log.flow(flow).await;
        let (cause, side, hung_up) = match end {
            FlowEnd::Done => (HangupCause::Normal, Side::Box, false),
            FlowEnd::Gone(Gone::Caller) => (HangupCause::Normal, Side::Caller, true),
            FlowEnd::Gone(Gone::Shutdown) => (HangupCause::Shutdown, Side::System, false),
            FlowEnd::Gone(Gone::Failure(_)) => (HangupCause::LineFailure, Side::System, false),
        };
        tracing::info!(disposition = "answered", %cause, "call ends");
        log.end(Disposition::Answered, cause, side).await;
        hung_up
    }

    async fn station_of(sw: &Switch<L>, a: &str) -> Option<String> {
        station_of(sw, a).await
    }

    /// An outside number: the trunk groups the plan gives it, in turn,
    /// the first free trunk of each; a group that is all busy, or whose
    /// network answers congestion, passes the call to the next.
    async fn outside(&self, port: &mut Port<L>, number: &str, class: &str) -> bool {
        // Only a dial plan classifies a number as outside.
        let Some(plan) = self.plan else {
            return false;
        };
        let own = plan
            .caller_id_of(self.station, self.who.agent.as_deref())
            .map(str::to_string);
        let mut media = Media::new(port, self.ctx.shutdown.clone());
        let mut log = None;
        let mut tried = Vec::new();
        // A trunk an emergency call freed by ending a caller's call.
        let mut freed: Option<String> = None;
        loop {
            for group in plan.groups(number, class) {
                let caller_id = own.clone().or_else(|| group.caller_id.clone());
                for trunk in group.order() {
                    let lease = match &freed {
                        Some(t) if *t == trunk => self.seize_when_back(&trunk).await,
                        _ => self.sw.lines.seize(&trunk).await,
                    };
                    let Some(mut lease) = lease else {
                        continue;
                    };
                    // The record starts with the first trunk that is free.
                    let l = match log.take() {
                        Some(l) => l,
                        None => {
                            self.log(Direction::Outbound, Some(trunk.clone()), number)
                                .await
                        }
                    };
                    tracing::info!(%trunk, %class, presented = caller_id.as_deref().unwrap_or("the trunk's"), "dialling out");
                    let cmd = LineCommand::Dial {
                        number: number.to_string(),
                        caller_id: caller_id.clone(),
                    };
                    let (mut e, gone) = match self
                        .ring_out(&mut media, &mut lease, cmd, &trunk)
                        .await
                    {
                        Ok(Rang::Answered) => self.talk(&mut media, &mut lease, &trunk, &l).await,
                        Ok(Rang::Refused(HangupCause::Congestion)) => {
                            release(lease.port(), HangupCause::Normal).await;
                            tracing::info!(%trunk, "congestion: the next trunk group");
                            tried.push(format!("{trunk}!congestion"));
                            log = Some(l);
                            break;
                        }
                        Ok(rang) => {
                            self.not_connected(&mut media, &mut lease, rang, &trunk)
                                .await
                        }
                        Err(g) => {
                            release(lease.port(), HangupCause::Normal).await;
                            let e = not(Disposition::Abandoned, HangupCause::Normal, "abandoned");
                            (e, Some(g))
                        }
                    };
                    tried.push(format!("{trunk}={}", e.outcome));
                    e.path = tried;
                    return self.finish(l, e, gone).await;
                }
            }
            if freed.is_none() && class == super::dialplan::EMERGENCY && plan.emergency_preempt {
                let trunks: Vec<String> = plan
                    .groups(number, class)
                    .iter()
                    .flat_map(|g| g.order())
                    .collect();
                if let Some(t) = self.sw.preemption.preempt_one(&trunks) {
                    tracing::warn!(trunk = %t, %number, "every trunk busy: a caller's call ends for the emergency call");
                    tried.push(format!("{t}!preempted"));
                    freed = Some(t);
                    continue;
                }
            }
            break;
        }
        let log = match log {
            Some(l) => l,
            None => self.log(Direction::Outbound, None, number).await,
        };
        tracing::warn!(%class, "no trunk could take the call: reorder");
        let gone = self.refuse(&mut media, None).await;
        let mut e = Ended::refused(HangupCause::Congestion, "congestion");
        e.path = tried;
        self.finish(log, e, gone).await
    }

    /// Sends `cmd` (ring, dial) to the borrowed line and plays ringback to
    /// the station until it answers, refuses or [`RING`] passes. `Err`:
    /// the station hung up (or the box stops) meanwhile.
    async fn ring_out(
        &self,
        media: &mut Media<'_, L>,
        lease: &mut Lease<L>,
        cmd: LineCommand,
        target: &str,
    ) -> Result<Rang, Gone> {
        self.ring_or_pickup(media, lease, cmd, target, None).await
    }

    /// [`Self::ring_out`]; while a colleague's station rings, another
    /// phone may pick the call up (`pickup`): the ringing stops as
    /// [`Rang::Cancelled`] and that phone's lease is put in `picked`.
    async fn ring_or_pickup(
        &self,
        media: &mut Media<'_, L>,
        lease: &mut Lease<L>,
        cmd: LineCommand,
        target: &str,
        pickup: Option<(&mut Rung<L>, &mut Option<Lease<L>>)>,
    ) -> Result<Rang, Gone> {
        if let Err(e) = lease.port().line.command(cmd).await {
            tracing::warn!(%target, "could not ring: {e}");
            return Ok(Rang::Failed(crate::media::LineFailure::new(
                callbox_hal::ErrorKind::Other,
                e.to_string(),
            )));
        }
        let picked_up = async {
            match pickup {
                Some((rung, picked)) => match rung.taken.recv().await {
                    Some(l) => *picked = Some(l),
                    None => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        let rang = media
            .tone_while(
                self.tones,
                ProgressTone::Ringback,
                answer_within(&mut lease.port().line, RING, picked_up),
                false,
            )
            .await?;
        Ok(rang.unwrap_or(Rang::NoAnswer))
    }

    /// The rung or dialled line did not answer: it is let go, the station
    /// hears why (busy or reorder).
    async fn not_connected(
        &self,
        media: &mut Media<'_, L>,
        lease: &mut Lease<L>,
        rang: Rang,
        target: &str,
    ) -> (Ended, Option<Gone>) {
        let (e, tone) = match rang {
            Rang::Glare(ev) => {
                // A caller took the trunk first: theirs goes back to it.
                lease.put_back(ev);
                let e = not(Disposition::Failed, HangupCause::Congestion, "glare");
                (e, ProgressTone::Congestion)
            }
            Rang::Refused(cause) => {
                // Hung up at the far end; the backend still hears it freed.
                release(lease.port(), HangupCause::Normal).await;
                if cause == HangupCause::Busy {
                    let e = not(Disposition::NoAnswer, cause, "busy");
                    (e, ProgressTone::Busy)
                } else {
                    let e = not(Disposition::NoAnswer, cause, "refused");
                    (e, ProgressTone::Congestion)
                }
            }
            Rang::Failed(f) => {
                tracing::warn!(%target, "line failed: {f}");
                release(lease.port(), HangupCause::LineFailure).await;
                let e = not(Disposition::Failed, HangupCause::LineFailure, "failed");
                (e, ProgressTone::Congestion)
            }
            other => {
                tracing::info!(%target, ?other, "no answer");
                release(lease.port(), HangupCause::NoAnswer).await;
                let e = not(Disposition::NoAnswer, HangupCause::NoAnswer, "no_answer");
                (e, ProgressTone::Congestion)
            }
        };
        let gone = media
            .tone_while(self.tones, tone, tokio::time::sleep(REFUSAL), false)
            .await
            .err();
        (e, gone)
    }

    /// The line answered: the station and it talk, recorded by the
    /// policy, until one hangs up; the line is hung up before it goes back.
    async fn talk(
        &self,
        media: &mut Media<'_, L>,
        lease: &mut Lease<L>,
        target: &str,
        log: &CallLog,
    ) -> (Ended, Option<Gone>) {
        log.answered().await;
        let answered = tokio::time::Instant::now();
        self.record_by_policy(media);
        let shutdown = media.shutdown().clone();
        let (port, rec) = media.split();
        let end = bridge(port, lease.port(), rec, &shutdown).await;
        rec.stop();
        let cause = if end == BridgeEnd::Shutdown {
            HangupCause::Shutdown
        } else {
            HangupCause::Normal
        };
        release(lease.port(), cause).await;
        let (side, gone) = match end {
            BridgeEnd::CallerHungUp => (Side::Caller, Some(Gone::Caller)),
            // The called side hung up: the box ends the station's part.
            BridgeEnd::OtherHungUp => (Side::Box, None),
            BridgeEnd::Shutdown => (Side::System, Some(Gone::Shutdown)),
            BridgeEnd::Failure(f) => (Side::System, Some(Gone::Failure(f))),
        };
        let e = Ended {
            disposition: Disposition::Answered,
            cause: HangupCause::Normal,
            side,
            outcome: format!("connected:{target}"),
            connected_to: Some(target.to_string()),
            talk: Some(answered.elapsed()),
            path: Vec::new(),
        };
        (e, gone)
    }
}

/// Why a click-to-call could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClickError {
    /// The site has no `[dialplan]`.
    #[error("this box has no dial plan (no [dialplan] in its config)")]
    NoDialPlan,
    /// The site has no agents.
    #[error("this box has no agents (no [acd] in its config)")]
    NoAcd,
    /// No such agent.
    #[error("no agent `{0}`")]
    NoAgent(String),
    /// The agent is logged in nowhere and has no home station.
    #[error("agent `{0}` has no station to ring (not logged in, no home station)")]
    NoStation(String),
    /// The agent's phone is in use.
    #[error("agent `{agent}`'s phone at {station} is in use")]
    Busy {
        /// The agent.
        agent: String,
        /// Their station.
        station: String,
    },
}

/// How long the agent's phone rings for a click-to-call.
const CLICK_RING: Duration = Duration::from_secs(30);

/// Places a call for `agent` to `number` (without the outside prefix): the
/// agent's phone rings first, showing the number; once they answer, the
/// number is dialled by the dial plan as if they had keyed it (their
/// permissions, trunk groups and caller id apply). Answers the call's id
/// at once; the call runs on `tracker`. Its record has `job`
/// `click_to_call`.
pub async fn click_to_call<L>(
    agent: &str,
    number: &str,
    ctx: CallContext,
    sw: Switch<L>,
    tracker: &tokio_util::task::TaskTracker,
) -> Result<String, ClickError>
where
    L: Line,
{
    let ctx = ctx.for_new_call();
    let plan = ctx
        .live
        .current()
        .dialplan
        .clone()
        .ok_or(ClickError::NoDialPlan)?;
    let acd = sw.acd.clone().ok_or(ClickError::NoAcd)?;
    if !acd.config().agents.iter().any(|a| a.id == agent) {
        return Err(ClickError::NoAgent(agent.to_string()));
    }
    let station = Call::<L>::station_of(&sw, agent)
        .await
        .ok_or_else(|| ClickError::NoStation(agent.to_string()))?;
    let mut lease = sw
        .lines
        .seize(&station)
        .await
        .ok_or_else(|| ClickError::Busy {
            agent: agent.to_string(),
            station: station.clone(),
        })?;
    let id = crate::clock::new_id(&ctx.clock);
    let span = tracing::info_span!("call", id = %&id[id.len() - 8..], line = %station);
    let (agent, number, call_id) = (agent.to_string(), number.to_string(), id.clone());
    tracker.spawn(
        async move {
            acd.personal(&station, true).await;
            let who = Who::of(&agent, &acd);
            let tones = ctx.ivr.as_ref().map_or(ToneRegion::China, |i| i.tones);
            let call = Call {
                ctx: &ctx,
                sw: &sw,
                plan: Some(&plan),
                id: &id,
                station: &station,
                who: &who,
                number: &number,
                tones,
                job: Some("click_to_call"),
            };
            let shown = ctx
                .ivr
                .as_ref()
                .and_then(|i| i.lookups.contact(Some(&number)))
                .map(str::to_string);
            let cmd = LineCommand::Ring {
                caller_id: Some(number.clone()),
                caller_name: shown,
            };
            tracing::info!(%agent, %number, "click-to-call: the agent's phone rings");
            let rang = ring_station(
                &mut lease.port().line,
                cmd,
                CLICK_RING,
                ctx.shutdown.cancelled(),
            )
            .await;
            if let Rang::Answered = rang {
                let dialled = plan.classify_direct(&number, &station, Some(&agent));
                call.run(lease.port(), dialled).await;
                release(lease.port(), HangupCause::Normal).await;
            } else {
                tracing::info!(%agent, ?rang, "click-to-call: the agent did not answer");
                release(lease.port(), HangupCause::NoAnswer).await;
                let log = call.log(Direction::Outbound, None, &number).await;
                let e = not(
                    Disposition::NoAnswer,
                    HangupCause::NoAnswer,
                    "agent_no_answer",
                );
                call.finish(log, e, None).await;
            }
            drop(lease);
            acd.personal(&station, false).await;
        }
        .instrument(span),
    );
    Ok(call_id)
}
