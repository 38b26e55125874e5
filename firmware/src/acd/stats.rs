//! Statistics: counters kept per queue as events happen, and the live
//! figures ([`AcdStats`]) derived from them and from agent state, for
//! headquarters, telemetry and the report at stop.

use std::time::Duration;

use callbox_hal::Line;
use serde::Serialize;
use tokio::time::Instant;

use super::actor::Acd;
use super::agents::Status;
use super::waiters::Waiter;
use crate::store::StoreMsg;

/// What happened in one queue since the box started.
#[derive(Debug, Default, Clone)]
pub(super) struct QueueCounters {
    pub(super) joined: u64,
    pub(super) answered: u64,
    pub(super) answered_in_sl: u64,
    pub(super) abandoned: u64,
    pub(super) timeouts: u64,
    pub(super) full: u64,
    pub(super) empty: u64,
    pub(super) wait_answered: Duration,
    pub(super) talk: Duration,
    pub(super) handled: u64,
}

/// Statistics of one queue.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Callers waiting now.
    pub waiting: usize,
    /// Longest current wait, ms.
    pub longest_wait_ms: u64,
    /// Callers who joined.
    pub joined: u64,
    /// Connected to an agent.
    pub answered: u64,
    /// Hung up while waiting.
    pub abandoned: u64,
    /// Abandoned / (answered + abandoned).
    pub abandon_rate: f64,
    /// Left after `max_wait`.
    pub timeouts: u64,
    /// Turned away: queue full / nobody logged in.
    pub turned_away: u64,
    /// Answered within the service-level threshold / answered.
    pub service_level: f64,
    /// Average wait of answered calls, ms.
    pub avg_speed_of_answer_ms: u64,
    /// Average talk time of completed calls, ms.
    pub avg_handle_ms: u64,
}

/// Statistics of one agent.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AgentStats {
    /// Agent id.
    pub agent: String,
    /// State name.
    pub state: String,
    /// Pause reason, when paused.
    pub reason: Option<String>,
    /// Time in the current state, ms.
    pub in_state_ms: u64,
    /// Station logged in at.
    pub station: Option<String>,
    /// Calls taken.
    pub calls: u32,
    /// Talk time, ms.
    pub talk_ms: u64,
    /// Pauses taken (including automatic ones).
    pub pauses: u32,
    /// The queue call ringing the agent's phone or being talked on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<AgentCall>,
}

/// A call in a queue now, for the wallboard.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LiveCall {
    /// The call's id (its record's).
    pub call_id: String,
    /// The queue.
    pub queue: String,
    /// Calling number.
    pub caller: Option<String>,
    /// Their name, from the site's contacts.
    pub caller_name: Option<String>,
    /// `waiting`, `ringing` (an agent's phone rings for it) or `talking`.
    pub state: &'static str,
    /// The agent rung or talking.
    pub agent: Option<String>,
    /// Time since the caller joined the queue, ms.
    pub in_queue_ms: u64,
    /// Time talking with the agent, ms.
    pub talk_ms: Option<u64>,
}

/// A queue call an agent's phone rings for or the agent talks on.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AgentCall {
    /// The call's id (its record's).
    pub call_id: String,
    /// The queue it came through.
    pub queue: String,
    /// Calling number.
    pub caller: Option<String>,
    /// Their name, from the site's contacts.
    pub caller_name: Option<String>,
}

/// Every queue and agent.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AcdStats {
    /// Per queue.
    pub queues: Vec<QueueStats>,
    /// Per agent.
    pub agents: Vec<AgentStats>,
    /// Every call in a queue now: waiting, ringing an agent or talking,
    /// in the order they joined.
    pub calls: Vec<LiveCall>,
    /// The supervisors' phones (`[acd] supervisors`), for the console;
    /// not part of telemetry.
    #[serde(skip)]
    pub supervisors: Vec<String>,
    /// Real time the ACD actor spent handling events and choosing agents,
    /// microseconds (its whole scheduling cost).
    pub scheduler_us: u64,
}

impl<L> Acd<L>
where
    L: Line,
{
    /// Live statistics of every queue and agent.
    pub(super) fn stats(&self) -> AcdStats {
        let now = Instant::now();
        let queues = self
            .cfg
            .queues
            .iter()
            .enumerate()
            .map(|(q, qc)| {
                let c = &self.counters[q];
                let waiting: Vec<&Waiter<L>> = self
                    .waiters
                    .iter()
                    .filter(|w| w.queue == q && !w.connected)
                    .collect();
                let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
                QueueStats {
                    queue: qc.name.clone(),
                    waiting: waiting.len(),
                    longest_wait_ms: waiting
                        .iter()
                        .map(|w| now.duration_since(w.joined).as_millis() as u64)
                        .max()
                        .unwrap_or(0),
                    joined: c.joined,
                    answered: c.answered,
                    abandoned: c.abandoned,
                    abandon_rate: ratio(c.abandoned, c.answered + c.abandoned),
                    timeouts: c.timeouts,
                    turned_away: c.full + c.empty,
                    service_level: ratio(c.answered_in_sl, c.answered),
                    avg_speed_of_answer_ms: if c.answered == 0 {
                        0
                    } else {
                        (c.wait_answered.as_millis() / u128::from(c.answered)) as u64
                    },
                    avg_handle_ms: if c.handled == 0 {
                        0
                    } else {
                        (c.talk.as_millis() / u128::from(c.handled)) as u64
                    },
                }
            })
            .collect();
        let agents = self
            .cfg
            .agents
            .iter()
            .zip(&self.agents)
            .enumerate()
            .map(|(i, (cfg, a))| AgentStats {
                agent: cfg.id.clone(),
                state: a.status.name().to_string(),
                reason: match &a.status {
                    Status::Paused(r) => Some(r.clone()),
                    _ => None,
                },
                in_state_ms: now.duration_since(a.since).as_millis() as u64,
                station: a.station.clone(),
                calls: a.total_calls,
                talk_ms: a.total_talk.as_millis() as u64,
                pauses: a.pauses,
                call: self.agent_call(i),
            })
            .collect();
        let calls = self
            .waiters
            .iter()
            .filter(|w| w.callback.is_none())
            .map(|w| {
                let since = now.duration_since(w.joined);
                let talking = self
                    .agents
                    .iter()
                    .position(|a| a.current_call.as_ref() == Some(&w.call_id));
                let ringing = self
                    .offers
                    .values()
                    .find(|o| o.call_id == w.call_id)
                    .map(|o| o.agent);
                let (state, agent) = match (w.connected, talking, ringing) {
                    (true, a, _) => ("talking", a),
                    (false, _, Some(a)) => ("ringing", Some(a)),
                    _ => ("waiting", None),
                };
                LiveCall {
                    call_id: w.call_id.clone(),
                    queue: self.cfg.queues[w.queue].name.clone(),
                    caller: w.caller.number.clone(),
                    caller_name: w.caller.name.clone(),
                    state,
                    agent: agent.map(|a| self.cfg.agents[a].id.clone()),
                    in_queue_ms: since.as_millis() as u64,
                    talk_ms: w.connected.then(|| {
                        since
                            .saturating_sub(w.counted_wait.unwrap_or_default())
                            .as_millis() as u64
                    }),
                }
            })
            .collect();
        AcdStats {
            queues,
            agents,
            calls,
            supervisors: self.cfg.supervisors.clone(),
            scheduler_us: self.sched.as_micros() as u64,
        }
    }

    /// The queue call agent `a` is offered or on.
    fn agent_call(&self, a: usize) -> Option<AgentCall> {
        let queue = |q: usize| self.cfg.queues[q].name.clone();
        if let Some(o) = self.offers.values().find(|o| o.agent == a) {
            return Some(AgentCall {
                call_id: o.call_id.clone(),
                queue: queue(o.queue),
                caller: o.caller.number.clone(),
                caller_name: o.caller.name.clone(),
            });
        }
        let id = self.agents[a].current_call.as_ref()?;
        let w = self.waiters.iter().find(|w| &w.call_id == id)?;
        Some(AgentCall {
            call_id: id.clone(),
            queue: queue(w.queue),
            caller: w.caller.number.clone(),
            caller_name: w.caller.name.clone(),
        })
    }

    /// Queue counters and agents' totals back to zero. What the routing
    /// strategies count per queue (fewest calls, least talk time) stays, so
    /// a reset does not hand the next calls to whoever had most.
    pub(super) fn reset_stats(&mut self) {
        self.counters = vec![QueueCounters::default(); self.cfg.queues.len()];
        for a in &mut self.agents {
            a.total_calls = 0;
            a.total_talk = Duration::ZERO;
            a.pauses = 0;
        }
        tracing::info!("ACD statistics reset");
    }

    /// Logs the statistics and queues them for headquarters as the actor
    /// stops.
    pub(super) async fn report_at_stop(&self) {
        let stats = self.stats();
        tracing::info!(stats = %serde_json::to_string(&stats).unwrap_or_default(), "ACD statistics at stop");
        self.store
            .send(StoreMsg::Outbox {
                stream: "acd_stats".into(),
                at: self.clock.now(),
                payload: serde_json::to_value(&stats).unwrap_or_default(),
            })
            .await;
    }
}
