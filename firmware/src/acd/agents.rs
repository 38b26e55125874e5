//! Agent state: what each agent is doing, since when, and the moves between
//! states that several jobs share (available again, a missed offer, the end
//! of wrap-up).
//!
//! State is global, not per queue: wrap-up after a call from any queue
//! holds the agent out of every queue.

use std::collections::HashMap;
use std::time::Duration;

use callbox_hal::Line;
use tokio::time::Instant;

use super::actor::Acd;
use super::config;

/// An agent's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Not working.
    LoggedOut,
    /// Waiting for a call.
    Available,
    /// Being offered a call.
    Ringing,
    /// Talking.
    OnCall,
    /// After a call, until the given moment.
    WrapUp(Instant),
    /// Paused with a reason code.
    Paused(String),
    /// Do not disturb.
    Dnd,
    /// On a call of their own: one they placed from their phone, or a
    /// colleague's internal call (no queue call is offered meanwhile).
    Personal,
}

impl Status {
    /// The state's name in statistics, telemetry and events.
    pub fn name(&self) -> &'static str {
        match self {
            Status::LoggedOut => "logged_out",
            Status::Available => "available",
            Status::Ringing => "ringing",
            Status::OnCall => "on_call",
            Status::WrapUp(_) => "wrap_up",
            Status::Paused(_) => "paused",
            Status::Dnd => "dnd",
            Status::Personal => "personal_call",
        }
    }

    /// The pause reason, when paused.
    pub(super) fn reason(&self) -> Option<&str> {
        match self {
            Status::Paused(r) => Some(r),
            _ => None,
        }
    }
}

/// One agent as the actor keeps them (by index of the config's agents).
#[derive(Debug)]
pub(super) struct Agent {
    pub(super) station: Option<String>,
    pub(super) status: Status,
    pub(super) since: Instant,
    pub(super) idle_since: Instant,
    pub(super) retry_until: Option<Instant>,
    pub(super) missed: u32,
    /// Calls taken, per queue index.
    pub(super) calls: HashMap<usize, u32>,
    /// Talk time, per queue index.
    pub(super) talk: HashMap<usize, Duration>,
    pub(super) total_calls: u32,
    pub(super) total_talk: Duration,
    pub(super) pauses: u32,
    pub(super) last_call: Option<String>,
    /// The call the agent is on now.
    pub(super) current_call: Option<String>,
}

impl Agent {
    /// An agent as the config starts them.
    pub(super) fn new(cfg: &config::AgentCfg, now: Instant) -> Agent {
        Agent {
            station: cfg.logged_in.then(|| cfg.station.clone()).flatten(),
            status: if cfg.logged_in {
                Status::Available
            } else {
                Status::LoggedOut
            },
            since: now,
            idle_since: now,
            retry_until: None,
            missed: 0,
            calls: HashMap::new(),
            talk: HashMap::new(),
            total_calls: 0,
            total_talk: Duration::ZERO,
            pauses: 0,
            last_call: None,
            current_call: None,
        }
    }
}

impl<L> Acd<L>
where
    L: Line,
{
    /// The agent with this id.
    pub(super) fn agent_index(&self, id: &str) -> Option<usize> {
        self.cfg.agents.iter().position(|a| a.id == id)
    }

    /// Members of queue `q` who are logged in (whatever they are doing).
    pub(super) fn logged_in_members(&self, q: usize) -> usize {
        self.cfg.queues[q]
            .members
            .iter()
            .filter(|&&(a, _)| self.agents[a].status != Status::LoggedOut)
            .count()
    }

    /// A state change asked for (a command or an automatic pause), logged
    /// as `event`.
    pub(super) async fn set_status(
        &mut self,
        a: usize,
        status: Status,
        event: &str,
        data: serde_json::Value,
    ) {
        let now = Instant::now();
        let ag = &mut self.agents[a];
        if status == Status::Available {
            ag.idle_since = now;
        }
        if matches!(status, Status::Paused(_)) {
            ag.pauses += 1;
        }
        ag.status = status;
        ag.since = now;
        self.log(None, None, Some(a), event, data).await;
    }

    /// The phone at `station` starts (`on`) or ends a call of its own: an
    /// available agent logged in there is busy with it meanwhile, then
    /// available again. An agent paused or in wrap-up stays so.
    pub(super) async fn personal(&mut self, station: &str, on: bool) {
        let Some(a) = self.agents.iter().position(|ag| {
            ag.station.as_deref() == Some(station) && ag.status != Status::LoggedOut
        }) else {
            return;
        };
        let data = serde_json::json!({"station": station});
        match (&self.agents[a].status, on) {
            (Status::Available, true) => {
                self.set_status(a, Status::Personal, "PERSONAL", data).await;
            }
            (Status::Personal, false) => {
                self.set_status(a, Status::Available, "PERSONAL_END", data)
                    .await;
            }
            _ => {}
        }
    }

    /// An agent back to available (an offer ended without a call).
    pub(super) fn free(&mut self, a: usize) {
        let ag = &mut self.agents[a];
        ag.status = Status::Available;
        ag.since = Instant::now();
    }

    /// Agent `a` let a call of queue `q` go (no answer, or hung up at once):
    /// a retry pause, and after `auto_pause` misses in a row, a pause.
    pub(super) async fn missed(&mut self, a: usize, q: usize) {
        let qc = &self.cfg.queues[q];
        let ag = &mut self.agents[a];
        ag.missed += 1;
        ag.retry_until = Some(Instant::now() + qc.retry);
        if qc.auto_pause.is_some_and(|n| ag.missed >= n) {
            let missed = ag.missed;
            self.set_status(
                a,
                Status::Paused("auto".into()),
                "PAUSE",
                serde_json::json!({"reason": "auto", "missed": missed}),
            )
            .await;
        } else if matches!(self.agents[a].status, Status::Ringing | Status::OnCall) {
            let ag = &mut self.agents[a];
            ag.status = Status::Available;
            ag.since = Instant::now();
        }
    }

    /// Agents whose wrap-up ended by `now` are available.
    pub(super) fn end_wrap_ups(&mut self, now: Instant) {
        for a in 0..self.agents.len() {
            if let Status::WrapUp(until) = self.agents[a].status
                && until <= now
            {
                let ag = &mut self.agents[a];
                ag.status = Status::Available;
                ag.since = now;
                ag.idle_since = now;
            }
        }
    }
}
