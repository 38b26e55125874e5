//! The caller's conversation with the agent a queue assigned: the
//! supervised bridge (a supervisor may listen, whisper or barge in), and
//! what the agent may do with the call: consult a colleague and hand the
//! caller over (attended transfer) or send the call on at once (blind
//! transfer). A transfer that fails, or an agent who picks up and puts
//! down at once, puts the caller back at the head of the queue.

use std::time::Duration;

use callbox_hal::dsp::tones::ProgressTone;
use callbox_hal::{ErrorKind, HangupCause, Line, LineCommand};
use tokio::time::Instant;

use super::connect::{Rung, TRANSFER_RING, release, release_cause};
use super::queue::Waiting;
use super::{FlowEnv, FlowState};
use crate::acd::Completed;
use crate::media::dial::{Rang, answer_within};
use crate::media::lines::Lease;
use crate::media::{AgentAsks, BridgeEnd, ConsultEnd, Gone, LineFailure, Media, bridge_supervised};

/// A bridge the agent ends sooner than this was never a conversation.
const BOUNCE: Duration = Duration::from_millis(1500);

/// The park settings, when what the agent asked for parks the call: the
/// park code, or a blind transfer to the park number.
fn parks<L>(ask: Option<&AgentAsks>, w: &Waiting<'_, L>) -> Option<crate::acd::ParkCfg> {
    let cfg = w.acd.config().park.clone()?;
    match ask? {
        AgentAsks::Park => Some(cfg),
        AgentAsks::Transfer(n) if *n == cfg.number => Some(cfg),
        _ => None,
    }
}

/// An agent with the call, and the line to their station.
struct Leg<L> {
    agent: String,
    lease: Lease<L>,
}

/// How one bridge with an agent ended.
struct Talked {
    end: BridgeEnd,
    /// A transfer the agent asked for (their part ended as if they had
    /// hung up).
    ask: Option<AgentAsks>,
    talk: Duration,
    /// The agent's station.
    station: String,
}

impl<L: Line> FlowEnv<'_, L> {
    /// Connects the caller to `agent`, and on to whoever the call is
    /// transferred to. `Ok(Some(end))`: the call with the last agent ended
    /// so; `Ok(None)`: the caller is back in the queue.
    pub(super) async fn with_agent(
        &self,
        media: &mut Media<'_, L>,
        w: &mut Waiting<'_, L>,
        agent: String,
        lease: Lease<L>,
        st: &mut FlowState,
    ) -> Result<Option<BridgeEnd>, Gone> {
        let mut leg = Leg { agent, lease };
        let first_connect = Instant::now();
        loop {
            let talked = self.bridge_agent(media, w, &mut leg, st).await?;
            if let Some(AgentAsks::Consult(number)) = &talked.ask {
                match self.consult(media, w, leg, number, talked.talk, st).await? {
                    Some(next) => {
                        leg = next;
                        continue;
                    }
                    None => return Ok(None),
                }
            }
            let Leg { agent, mut lease } = leg;
            if let Some(cfg) = parks(talked.ask.as_ref(), w) {
                let Some(parked) = self.park.park(&cfg.slots).await else {
                    tracing::warn!("every park slot is taken; the agent keeps the caller");
                    leg = Leg { agent, lease };
                    continue;
                };
                // The agent's part is over, as if they had hung up.
                self.after_bridge(w, &agent, first_connect, talked, st)
                    .await;
                return self
                    .parked(media, w, lease, parked, &cfg, st)
                    .await
                    .map(Some);
            }
            if talked.ask == Some(AgentAsks::Park) {
                tracing::info!("park code keyed on a site without [acd.park]; the call goes on");
                leg = Leg { agent, lease };
                continue;
            }
            release(lease.port(), release_cause(&talked.end)).await;
            drop(lease);
            if let Some(AgentAsks::Transfer(number)) = &talked.ask {
                match self
                    .blind_transfer(media, w, &agent, number, talked.talk, st)
                    .await?
                {
                    Some(next) => {
                        leg = next;
                        continue;
                    }
                    None => return Ok(None),
                }
            }
            if talked.end == BridgeEnd::OtherHungUp && talked.talk < BOUNCE {
                // The agent picked up and put down at once: not a
                // call. The caller keeps their place.
                st.path.push(format!("{}!bounced:{agent}", w.name));
                w.acd.bounced(self.call_id, &agent).await;
                return Ok(None);
            }
            let end = self
                .after_bridge(w, &agent, first_connect, talked, st)
                .await;
            return Ok(Some(end));
        }
    }

    /// The supervised bridge between the caller and the agent's station,
    /// after the recording policy for that agent.
    async fn bridge_agent(
        &self,
        media: &mut Media<'_, L>,
        w: &mut Waiting<'_, L>,
        leg: &mut Leg<L>,
        st: &mut FlowState,
    ) -> Result<Talked, Gone> {
        let station = leg.lease.port().line.info().id.clone();
        let connected_at = Instant::now();
        let shutdown = media.shutdown().clone();
        let codes = w.acd.config().codes.clone();
        if let Err(g) = self
            .recording_policy(media, Some(w.name), Some(&leg.agent), true, st)
            .await
        {
            release(leg.lease.port(), HangupCause::Normal).await;
            w.acd
                .done(
                    self.call_id,
                    &leg.agent,
                    connected_at.elapsed(),
                    Completed::ByCaller,
                )
                .await;
            st.agent = Some(leg.agent.clone());
            st.queue_exit = Some("connected".into());
            return Err(g);
        }
        self.event(
            "bridged",
            serde_json::json!({"queue": w.name, "agent": &leg.agent, "station": &station}),
        )
        .await;
        let (port, rec) = media.split();
        let outcome = bridge_supervised(
            port,
            leg.lease.port(),
            &mut w.rx,
            Some(codes.during_call()),
            &w.hold.held(),
            rec,
            &shutdown,
        )
        .await;
        let talk = connected_at.elapsed();
        // A transfer request ends the agent's part as if they had hung up.
        let (end, ask) = match outcome {
            Ok(end) => (end, None),
            Err(ask) => (BridgeEnd::OtherHungUp, Some(ask)),
        };
        Ok(Talked {
            end,
            ask,
            talk,
            station,
        })
    }

    /// Attended transfer: the caller holds while the agent talks to the
    /// colleague with `number`. `Ok(Some(leg))`: the caller talks on, with
    /// the agent (the colleague was busy, or the agent came back) or with
    /// the colleague; `Ok(None)`: the caller is back in the queue.
    async fn consult(
        &self,
        media: &mut Media<'_, L>,
        w: &Waiting<'_, L>,
        mut from: Leg<L>,
        number: &str,
        talk: Duration,
        st: &mut FlowState,
    ) -> Result<Option<Leg<L>>, Gone> {
        let name = w.name;
        st.path
            .push(format!("{name}=consult:{}>{number}", from.agent));
        let Ok((to, to_station)) = w.acd.reserve(number).await else {
            st.path.push(format!("{name}!consult_busy"));
            return Ok(Some(from));
        };
        let Some(mut target) = self.lines.seize(&to_station).await else {
            w.acd.unreserve(&to).await;
            st.path.push(format!("{name}!consult_busy"));
            return Ok(Some(from));
        };
        let ring = LineCommand::Ring {
            caller_id: None,
            caller_name: None,
        };
        if target.port().line.command(ring).await.is_err() {
            w.acd.unreserve(&to).await;
            return Ok(Some(from));
        }
        let shutdown = media.shutdown().clone();
        let (port, rec) = media.split();
        let outcome = crate::media::consult(
            port,
            from.lease.port(),
            target.port(),
            &w.hold.held(),
            TRANSFER_RING,
            rec,
            &shutdown,
        )
        .await;
        let mut to = Leg {
            agent: to,
            lease: target,
        };
        match outcome {
            ConsultEnd::Complete => {
                let Leg { agent, mut lease } = from;
                release(lease.port(), HangupCause::Normal).await;
                drop(lease);
                w.acd.handover(self.call_id, &agent, talk, &to.agent).await;
                st.path.push(format!("{name}=connected:{}", to.agent));
                self.event(
                    "transferred",
                    serde_json::json!({"from": &agent, "to": &to.agent, "attended": true}),
                )
                .await;
                Ok(Some(to))
            }
            ConsultEnd::Back => {
                release(to.lease.port(), HangupCause::Normal).await;
                let Leg { agent: to, lease } = to;
                drop(lease);
                w.acd.unreserve(&to).await;
                st.path.push(format!("{name}!consult_back"));
                Ok(Some(from))
            }
            ConsultEnd::AgentLeft => self.ring_on(media, w, from, to, talk, st).await,
            ConsultEnd::CallerHungUp | ConsultEnd::Stop(_) => {
                Err(self.consult_failed(w, from, to, talk, outcome, st).await)
            }
        }
    }

    /// The agent hung up before the colleague answered: the colleague
    /// keeps ringing for the caller, who hears ring-back. Unanswered, the
    /// caller is back at the head of the queue (`Ok(None)`).
    async fn ring_on(
        &self,
        media: &mut Media<'_, L>,
        w: &Waiting<'_, L>,
        from: Leg<L>,
        mut to: Leg<L>,
        talk: Duration,
        st: &mut FlowState,
    ) -> Result<Option<Leg<L>>, Gone> {
        let name = w.name;
        let Leg { agent, mut lease } = from;
        release(lease.port(), HangupCause::Normal).await;
        drop(lease);
        let answered = media
            .tone_while(
                self.ivr.tones,
                ProgressTone::Ringback,
                answer_within(
                    &mut to.lease.port().line,
                    TRANSFER_RING,
                    std::future::pending(),
                ),
                false,
            )
            .await;
        if let Ok(Some(Rang::Answered)) = answered {
            w.acd.handover(self.call_id, &agent, talk, &to.agent).await;
            st.path.push(format!("{name}=connected:{}", to.agent));
            return Ok(Some(to));
        }
        release(to.lease.port(), HangupCause::NoAnswer).await;
        w.acd.unreserve(&to.agent).await;
        w.acd.bounced(self.call_id, &agent).await;
        st.path.push(format!("{name}!transfer_failed:{}", to.agent));
        answered?;
        Ok(None)
    }

    /// The caller hung up, the daemon stops or a line failed during a
    /// consultation: both stations are hung up and the agent's call is
    /// over. Says how the caller is gone.
    async fn consult_failed(
        &self,
        w: &Waiting<'_, L>,
        mut from: Leg<L>,
        mut to: Leg<L>,
        talk: Duration,
        outcome: ConsultEnd,
        st: &mut FlowState,
    ) -> Gone {
        let cause = match &outcome {
            ConsultEnd::Stop(end) => release_cause(end),
            _ => HangupCause::Normal,
        };
        release(to.lease.port(), cause).await;
        release(from.lease.port(), cause).await;
        w.acd.unreserve(&to.agent).await;
        w.acd
            .done(self.call_id, &from.agent, talk, Completed::ByCaller)
            .await;
        st.agent = Some(from.agent.clone());
        st.queue_exit = Some("connected".into());
        match outcome {
            ConsultEnd::CallerHungUp => Gone::Caller,
            ConsultEnd::Stop(BridgeEnd::Shutdown) => Gone::Shutdown,
            other => {
                // The kind of the line's failure, when it was a line's.
                let kind = match other {
                    ConsultEnd::Stop(BridgeEnd::Failure(f)) => f.kind,
                    _ => ErrorKind::Other,
                };
                Gone::Failure(LineFailure::new(
                    kind,
                    "a line failed during a consultation",
                ))
            }
        }
    }

    /// Blind transfer: `agent` is done; the agent with `number` rings.
    /// `Ok(Some(leg))`: they answered; `Ok(None)`: the transfer failed and
    /// the caller is back at the head of the queue.
    async fn blind_transfer(
        &self,
        media: &mut Media<'_, L>,
        w: &Waiting<'_, L>,
        agent: &str,
        number: &str,
        talk: Duration,
        st: &mut FlowState,
    ) -> Result<Option<Leg<L>>, Gone> {
        let name = w.name;
        st.path.push(format!("{name}=transfer:{agent}>{number}"));
        self.event(
            "transferred",
            serde_json::json!({"from": agent, "to": number, "attended": false}),
        )
        .await;
        let (to, to_station) = match w.acd.transfer(self.call_id, agent, talk, number).await {
            Ok(to) => to,
            Err(why) => {
                tracing::warn!("transfer refused: {why}");
                st.path.push(format!("{name}!transfer_failed"));
                return Ok(None);
            }
        };
        let ring_to = match self.lines.seize(&to_station).await {
            Some(mut l) => {
                let cmd = LineCommand::Ring {
                    caller_id: self.caller.map(str::to_string),
                    caller_name: None,
                };
                match self.ring(media, &mut l, cmd, TRANSFER_RING).await? {
                    Rung::Answered => Some(l),
                    _ => None,
                }
            }
            None => None,
        };
        w.acd
            .transfer_result(self.call_id, &to, ring_to.is_some())
            .await;
        match ring_to {
            Some(lease) => {
                st.path.push(format!("{name}=connected:{to}"));
                Ok(Some(Leg { agent: to, lease }))
            }
            None => {
                st.path.push(format!("{name}!transfer_failed:{to}"));
                Ok(None)
            }
        }
    }

    /// The caller's conversation with the queue's last agent is over: the
    /// call record and the ACD learn how it went.
    async fn after_bridge(
        &self,
        w: &Waiting<'_, L>,
        agent: &str,
        first_connect: Instant,
        talked: Talked,
        st: &mut FlowState,
    ) -> BridgeEnd {
        let name = w.name;
        let ms = first_connect.duration_since(w.joined).as_millis() as i64;
        st.queue_wait_ms = Some(st.queue_wait_ms.unwrap_or(0) + ms);
        let entry = format!("{name}=connected:{agent}");
        if st.path.last() != Some(&entry) {
            st.path.push(entry);
        }
        st.queue_exit = Some("connected".into());
        st.agent = Some(agent.to_string());
        st.talk_ms = Some(talked.talk.as_millis() as i64);
        st.connected_to = Some(talked.station);
        st.outcome = Some(format!("connected:{agent}"));
        let by = match talked.end {
            BridgeEnd::CallerHungUp => Completed::ByCaller,
            BridgeEnd::OtherHungUp => Completed::ByAgent,
            _ => Completed::BySystem,
        };
        w.acd.done(self.call_id, agent, talked.talk, by).await;
        talked.end
    }
}
