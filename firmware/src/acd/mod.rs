//! The ACD: agents, queues, and who gets which call when.
//!
//! One actor owns all agent and queue state; everything else talks to it
//! with messages ([`AcdHandle`]). Callers join a queue from the IVR and
//! wait on their own call task. The actor offers calls to agents by
//! ringing their stations from small offer tasks; **an answered offer is
//! given to the longest-waiting caller of the queues that agent serves**
//! (highest queue priority first), not to whoever triggered the offer. So
//! no caller is ever connected before one who joined the same queue
//! earlier, even when agents answer in a different order than they were
//! rung, and a caller who hangs up while an agent rings costs nothing.
//!
//! Agent state is global: wrap-up after a call from any queue holds the
//! agent out of every queue. An agent who answers and hangs up at once
//! (before any conversation) counts as a missed offer and the caller keeps
//! their place at the head of the queue.

pub mod config;

use std::collections::HashMap;
use std::time::Duration;

use callbox_hal::{HangupCause, Line, LineCommand};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::media::MonitorMode;
pub use config::{AcdConfig, Strategy};

use crate::clock::Clock;
use crate::events::Events;
use crate::media::dial::Rang;
use crate::media::lines::{Lease, SharedLines};
use crate::media::{AsJoin, Join};
use crate::store::{StoreHandle, StoreMsg};

/// What a waiting caller is told.
#[derive(Debug)]
pub enum WaiterMsg<L> {
    /// An agent answered: bridge to this station.
    Connect {
        /// Agent id.
        agent: String,
        /// The agent's station, rung and answered.
        lease: Lease<L>,
    },
    /// Leave the queue (overflow).
    Exit(ExitReason),
    /// A supervisor joins the connected call.
    Monitor {
        /// Listen, whisper or barge.
        mode: MonitorMode,
        /// The supervisor's station, off-hook.
        lease: Lease<L>,
    },
}

impl<L> AsJoin<L> for WaiterMsg<L> {
    fn into_join(self) -> Option<Join<L>> {
        match self {
            WaiterMsg::Monitor { mode, lease } => Some(Join { mode, lease }),
            _ => None,
        }
    }
}

/// Why a caller leaves a queue without an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// Waited `max_wait`.
    Timeout,
    /// Every member logged out (`leave_empty`).
    Empty,
}

impl ExitReason {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Timeout => "timeout",
            ExitReason::Empty => "empty",
        }
    }
}

/// Answer to a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinResult {
    /// In the queue at this position (1 = next).
    Joined(usize),
    /// `max_length` reached.
    Full,
    /// Nobody logged in and `join_empty = false`.
    Empty,
    /// No such queue, or the ACD has stopped.
    Unavailable,
}

/// How a connected call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed {
    /// The caller hung up.
    ByCaller,
    /// The agent hung up.
    ByAgent,
    /// The daemon stopped or a line failed.
    BySystem,
}

enum OfferResult<L> {
    Answered(Lease<L>),
    NoAnswer,
    Busy,
    Cancelled,
}

enum Msg<L> {
    Join {
        queue: String,
        call_id: String,
        caller: Option<String>,
        tx: mpsc::Sender<WaiterMsg<L>>,
        reply: oneshot::Sender<JoinResult>,
    },
    Leave {
        call_id: String,
    },
    Offered {
        offer: u64,
        result: OfferResult<L>,
    },
    Bounced {
        call_id: String,
        agent: String,
    },
    Done {
        call_id: String,
        agent: String,
        talk: Duration,
        by: Completed,
    },
    Code {
        station: String,
        digits: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Stats(oneshot::Sender<AcdStats>),
    Command(AgentCommand, oneshot::Sender<Result<String, String>>),
    Position {
        call_id: String,
        reply: oneshot::Sender<Option<Position>>,
    },
    Callback {
        call_id: String,
        number: String,
        reply: oneshot::Sender<bool>,
    },
    CallbackDone {
        call_id: String,
        agent: String,
        talk: Option<Duration>,
    },
    Monitor {
        station: String,
        digits: String,
        lease: Lease<L>,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Transfer {
        call_id: String,
        from: String,
        talk: Duration,
        number: String,
        reply: oneshot::Sender<Result<(String, String), String>>,
    },
    TransferResult {
        call_id: String,
        to: String,
        answered: bool,
    },
    Reserve {
        number: String,
        reply: oneshot::Sender<Result<(String, String), String>>,
    },
    Unreserve {
        agent: String,
    },
    Handover {
        call_id: String,
        from: String,
        talk: Duration,
        to: String,
    },
    Reconfigure(
        std::sync::Arc<AcdConfig>,
        oneshot::Sender<Result<Vec<String>, String>>,
    ),
}

/// Where a waiting caller stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Callers to be served first (same queue or higher-priority queues
    /// sharing its agents are not counted: only this queue's line).
    pub ahead: usize,
    /// Expected wait from the queue's average handle time and the agents
    /// logged in; `None` before the queue has any history.
    pub expected: Option<Duration>,
}

/// What an agent (or headquarters on their behalf) asks of the ACD: the
/// same commands whether keyed as feature codes on a phone or sent over
/// the fleet link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCommand {
    /// Log in at a station (hot-desking).
    Login {
        /// Agent id.
        agent: String,
        /// Station line id.
        station: String,
    },
    /// Log out.
    Logout {
        /// Agent id.
        agent: String,
    },
    /// Pause with an optional reason code.
    Pause {
        /// Agent id.
        agent: String,
        /// Reason code.
        reason: Option<String>,
    },
    /// Back from a pause or do-not-disturb.
    Unpause {
        /// Agent id.
        agent: String,
    },
    /// Do not disturb.
    Dnd {
        /// Agent id.
        agent: String,
    },
    /// Disposition code for the agent's last call.
    WrapCode {
        /// Agent id.
        agent: String,
        /// The code.
        code: String,
    },
}

/// Sends to the ACD actor.
#[derive(Debug)]
pub struct AcdHandle<L> {
    tx: mpsc::Sender<Msg<L>>,
    /// The config the actor runs now (it changes with [`AcdHandle::reconfigure`]).
    config: watch::Receiver<std::sync::Arc<AcdConfig>>,
}

impl<L> Clone for AcdHandle<L> {
    fn clone(&self) -> Self {
        AcdHandle {
            tx: self.tx.clone(),
            config: self.config.clone(),
        }
    }
}

impl<L> std::fmt::Debug for Msg<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Join { .. } => "Join",
            Msg::Leave { .. } => "Leave",
            Msg::Offered { .. } => "Offered",
            Msg::Bounced { .. } => "Bounced",
            Msg::Done { .. } => "Done",
            Msg::Code { .. } => "Code",
            Msg::Stats(_) => "Stats",
            Msg::Command(..) => "Command",
            Msg::Position { .. } => "Position",
            Msg::Callback { .. } => "Callback",
            Msg::CallbackDone { .. } => "CallbackDone",
            Msg::Monitor { .. } => "Monitor",
            Msg::Transfer { .. } => "Transfer",
            Msg::TransferResult { .. } => "TransferResult",
            Msg::Reserve { .. } => "Reserve",
            Msg::Unreserve { .. } => "Unreserve",
            Msg::Handover { .. } => "Handover",
            Msg::Reconfigure(..) => "Reconfigure",
        })
    }
}

impl<L> AcdHandle<L> {
    /// The ACD's config as it runs now.
    pub fn config(&self) -> std::sync::Arc<AcdConfig> {
        self.config.borrow().clone()
    }

    /// Joins the queue named `queue`; `tx` receives the agent or an exit.
    /// By name, not index: the call may have started under a config whose
    /// queues were numbered differently.
    pub async fn join(
        &self,
        queue: &str,
        call_id: &str,
        caller: Option<&str>,
        tx: mpsc::Sender<WaiterMsg<L>>,
    ) -> JoinResult {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Join {
            queue: queue.to_string(),
            call_id: call_id.to_string(),
            caller: caller.map(str::to_string),
            tx,
            reply,
        };
        if self.tx.send(msg).await.is_err() {
            return JoinResult::Unavailable;
        }
        rx.await.unwrap_or(JoinResult::Unavailable)
    }

    /// The caller left the queue (hung up) before an agent took the call.
    pub async fn leave(&self, call_id: &str) {
        let _ = self
            .tx
            .send(Msg::Leave {
                call_id: call_id.to_string(),
            })
            .await;
    }

    /// The agent hung up before a word was said; the caller waits on.
    pub async fn bounced(&self, call_id: &str, agent: &str) {
        let _ = self
            .tx
            .send(Msg::Bounced {
                call_id: call_id.to_string(),
                agent: agent.to_string(),
            })
            .await;
    }

    /// A connected call ended.
    pub async fn done(&self, call_id: &str, agent: &str, talk: Duration, by: Completed) {
        let _ = self
            .tx
            .send(Msg::Done {
                call_id: call_id.to_string(),
                agent: agent.to_string(),
                talk,
                by,
            })
            .await;
    }

    /// A callback ([`CallbackOrder`]) ended: `talk` is how long the agent
    /// and the caller talked, `None` when the caller was not reached.
    pub async fn callback_done(&self, call_id: &str, agent: &str, talk: Option<Duration>) {
        let _ = self
            .tx
            .send(Msg::CallbackDone {
                call_id: call_id.to_string(),
                agent: agent.to_string(),
                talk,
            })
            .await;
    }

    /// A feature code keyed on a station; the answer says what happened.
    pub async fn code(&self, station: &str, digits: &str) -> Result<String, String> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Code {
            station: station.to_string(),
            digits: digits.to_string(),
            reply,
        };
        if self.tx.send(msg).await.is_err() {
            return Err("the ACD has stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the ACD has stopped".into()))
    }

    /// A waiting caller's place in line.
    pub async fn position(&self, call_id: &str) -> Option<Position> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Position {
            call_id: call_id.to_string(),
            reply,
        };
        self.tx.send(msg).await.ok()?;
        rx.await.ok().flatten()
    }

    /// Turns a waiting caller into a callback to `number` that keeps their
    /// place; `false` if the caller is no longer waiting.
    pub async fn callback(&self, call_id: &str, number: &str) -> bool {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Callback {
            call_id: call_id.to_string(),
            number: number.to_string(),
            reply,
        };
        if self.tx.send(msg).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Whether `digits` is a supervisor code (listen, whisper, barge).
    pub fn is_monitor_code(&self, digits: &str) -> bool {
        let config = self.config();
        let c = &config.codes;
        digits == c.pickup
            || [&c.listen, &c.whisper, &c.barge]
                .iter()
                .any(|code| digits.starts_with(code.as_str()))
    }

    /// A supervisor's station joins an agent's call; the lease comes back
    /// to the station's watcher when the supervisor hangs up (or at once
    /// on refusal).
    pub async fn monitor(
        &self,
        station: &str,
        digits: &str,
        lease: Lease<L>,
    ) -> Result<String, String> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Monitor {
            station: station.to_string(),
            digits: digits.to_string(),
            lease,
            reply,
        };
        if self.tx.send(msg).await.is_err() {
            return Err("the ACD has stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the ACD has stopped".into()))
    }

    /// Blind transfer of a connected call from agent `from` (done, into
    /// wrap-up) to the agent with `number`; answers that agent's id and
    /// station to ring. On refusal the caller is back at the head of the
    /// queue.
    pub async fn transfer(
        &self,
        call_id: &str,
        from: &str,
        talk: Duration,
        number: &str,
    ) -> Result<(String, String), String> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Transfer {
            call_id: call_id.to_string(),
            from: from.to_string(),
            talk,
            number: number.to_string(),
            reply,
        };
        if self.tx.send(msg).await.is_err() {
            return Err("the ACD has stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the ACD has stopped".into()))
    }

    /// Holds a free agent (by number) for a consultation: their phone is
    /// about to ring. Answers the agent's id and station.
    pub async fn reserve(&self, number: &str) -> Result<(String, String), String> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Reserve {
            number: number.to_string(),
            reply,
        };
        if self.tx.send(msg).await.is_err() {
            return Err("the ACD has stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the ACD has stopped".into()))
    }

    /// The consultation did not lead to a transfer: the agent is free.
    pub async fn unreserve(&self, agent: &str) {
        let _ = self
            .tx
            .send(Msg::Unreserve {
                agent: agent.to_string(),
            })
            .await;
    }

    /// Attended transfer complete: `from` is done with the call (wrap-up),
    /// `to` has it.
    pub async fn handover(&self, call_id: &str, from: &str, talk: Duration, to: &str) {
        let _ = self
            .tx
            .send(Msg::Handover {
                call_id: call_id.to_string(),
                from: from.to_string(),
                talk,
                to: to.to_string(),
            })
            .await;
    }

    /// Whether the transfer target answered.
    pub async fn transfer_result(&self, call_id: &str, to: &str, answered: bool) {
        let _ = self
            .tx
            .send(Msg::TransferResult {
                call_id: call_id.to_string(),
                to: to.to_string(),
                answered,
            })
            .await;
    }

    /// An agent command from outside the phones (headquarters over the
    /// fleet link); the answer says what happened or why not.
    pub async fn command(&self, cmd: AgentCommand) -> Result<String, String> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Command(cmd, reply)).await.is_err() {
            return Err("the ACD has stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the ACD has stopped".into()))
    }

    /// Swaps queue and agent parameters while calls go on: agents keep
    /// their state and waiting callers their place wherever their names
    /// still exist. Refused, with the reasons, when the change would drop
    /// an agent who is on a call or ringing, or a queue with callers in it.
    /// Answers the agents and queues added and removed (`agent bob added`).
    pub async fn reconfigure(&self, config: AcdConfig) -> Result<Vec<String>, String> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Reconfigure(std::sync::Arc::new(config), reply);
        if self.tx.send(msg).await.is_err() {
            return Err("the ACD has stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the ACD has stopped".into()))
    }

    /// Live statistics.
    pub async fn stats(&self) -> Option<AcdStats> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Msg::Stats(reply)).await.ok()?;
        rx.await.ok()
    }
}

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
        }
    }
}

#[derive(Debug)]
struct Agent {
    station: Option<String>,
    status: Status,
    since: Instant,
    idle_since: Instant,
    retry_until: Option<Instant>,
    missed: u32,
    calls: HashMap<usize, u32>,
    talk: HashMap<usize, Duration>,
    total_calls: u32,
    total_talk: Duration,
    pauses: u32,
    last_call: Option<String>,
    /// The call the agent is on now.
    current_call: Option<String>,
}

#[derive(Debug)]
struct Waiter<L> {
    call_id: String,
    queue: usize,
    joined: Instant,
    seq: u64,
    tx: mpsc::Sender<WaiterMsg<L>>,
    connected: bool,
    /// A virtual waiter: the box calls this number back when it is served.
    callback: Option<String>,
    /// Calling number, shown on the agent's phone.
    caller: Option<String>,
    /// Wait counted when the caller was connected (taken back on a bounce).
    counted_wait: Option<Duration>,
}

#[derive(Debug)]
struct Offer {
    agent: usize,
    queue: usize,
    cancel: CancellationToken,
}

#[derive(Debug, Default, Clone)]
struct QueueCounters {
    joined: u64,
    answered: u64,
    answered_in_sl: u64,
    abandoned: u64,
    timeouts: u64,
    full: u64,
    empty: u64,
    wait_answered: Duration,
    talk: Duration,
    handled: u64,
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
}

/// Every queue and agent.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AcdStats {
    /// Per queue.
    pub queues: Vec<QueueStats>,
    /// Per agent.
    pub agents: Vec<AgentStats>,
    /// Real time the ACD actor spent handling events and choosing agents,
    /// microseconds (its whole scheduling cost).
    pub scheduler_us: u64,
}

/// Creates the handle; the actor starts with [`spawn`] once lines exist.
pub fn channel<L>(config: AcdConfig) -> (AcdHandle<L>, AcdInbox<L>) {
    let (tx, rx) = mpsc::channel(256);
    let (config_tx, config_rx) = watch::channel(std::sync::Arc::new(config));
    (
        AcdHandle {
            tx,
            config: config_rx,
        },
        AcdInbox { rx, config_tx },
    )
}

/// The actor's end of the channel.
#[derive(Debug)]
pub struct AcdInbox<L> {
    rx: mpsc::Receiver<Msg<L>>,
    config_tx: watch::Sender<std::sync::Arc<AcdConfig>>,
}

/// What an agent looked like in the last `agent` event sent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shown {
    state: &'static str,
    reason: Option<String>,
    station: Option<String>,
}

impl Shown {
    fn logged_out() -> Shown {
        Shown {
            state: Status::LoggedOut.name(),
            reason: None,
            station: None,
        }
    }

    fn matches(&self, a: &Agent) -> bool {
        self.state == a.status.name()
            && self.reason.as_deref() == a.status.reason()
            && self.station == a.station
    }
}

impl Status {
    fn reason(&self) -> Option<&str> {
        match self {
            Status::Paused(r) => Some(r),
            _ => None,
        }
    }
}

impl Agent {
    /// An agent as the config starts them.
    fn new(cfg: &config::AgentCfg, now: Instant) -> Agent {
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

/// Starts the actor.
#[allow(clippy::too_many_arguments)]
pub fn spawn<L>(
    handle: &AcdHandle<L>,
    inbox: AcdInbox<L>,
    lines: SharedLines<L>,
    store: StoreHandle,
    clock: Clock,
    callbacks: mpsc::Sender<CallbackOrder<L>>,
    events: Events,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) where
    L: Line,
{
    let now = Instant::now();
    let cfg = handle.config();
    let agents: Vec<Agent> = cfg.agents.iter().map(|a| Agent::new(a, now)).collect();
    let acd = Acd {
        // Agents logged in by the config show as a change from logged out.
        shown: vec![Shown::logged_out(); agents.len()],
        events,
        config_tx: inbox.config_tx,
        counters: vec![QueueCounters::default(); cfg.queues.len()],
        rr: vec![None; cfg.queues.len()],
        cfg,
        agents,
        waiters: Vec::new(),
        offers: HashMap::new(),
        next_offer: 0,
        next_seq: 0,
        rng: 0x2545_F491_4F6C_DD1D,
        sched: Duration::ZERO,
        lines,
        store,
        clock,
        callbacks,
        self_tx: handle.tx.clone(),
        tracker: tracker.clone(),
    };
    tracker.spawn(acd.run(inbox.rx, shutdown));
}

struct Acd<L> {
    cfg: std::sync::Arc<AcdConfig>,
    /// Publishes `cfg` to the handles.
    config_tx: watch::Sender<std::sync::Arc<AcdConfig>>,
    agents: Vec<Agent>,
    /// Per agent, the state last announced on `events`.
    shown: Vec<Shown>,
    events: Events,
    waiters: Vec<Waiter<L>>,
    offers: HashMap<u64, Offer>,
    next_offer: u64,
    next_seq: u64,
    counters: Vec<QueueCounters>,
    /// Round-robin memory: the member index offered last, per queue.
    rr: Vec<Option<usize>>,
    rng: u64,
    /// Time spent in the actor's decisions.
    sched: Duration,
    lines: SharedLines<L>,
    store: StoreHandle,
    clock: Clock,
    /// Where callbacks whose turn came are sent to be dialled.
    callbacks: mpsc::Sender<CallbackOrder<L>>,
    self_tx: mpsc::Sender<Msg<L>>,
    tracker: TaskTracker,
}

impl<L> Acd<L>
where
    L: Line,
{
    async fn run(mut self, mut rx: mpsc::Receiver<Msg<L>>, shutdown: CancellationToken) {
        for i in 0..self.agents.len() {
            if self.agents[i].status == Status::Available {
                self.log(
                    None,
                    None,
                    Some(i),
                    "AGENTLOGIN",
                    serde_json::json!({"station": self.agents[i].station}),
                )
                .await;
            }
        }
        self.announce_states();
        loop {
            let deadline = self.next_deadline();
            let msg = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                m = rx.recv() => match m {
                    Some(m) => Some(m),
                    None => break,
                },
                () = crate::media::pending_or(deadline.map(tokio::time::sleep_until)) => None,
            };
            // Real (not virtual) time spent deciding: the scheduling cost
            // the benchmark reports.
            let t0 = std::time::Instant::now();
            if let Some(m) = msg {
                self.handle(m).await;
            }
            self.tick().await;
            self.dispatch().await;
            self.sched += t0.elapsed();
            self.announce_states();
        }
        for o in self.offers.values() {
            o.cancel.cancel();
        }
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

    async fn log(
        &self,
        call_id: Option<&str>,
        queue: Option<usize>,
        agent: Option<usize>,
        event: &str,
        data: serde_json::Value,
    ) {
        self.store
            .send(StoreMsg::QueueLog {
                at: self.clock.now(),
                call_id: call_id.map(str::to_string),
                queue: queue.map(|q| self.cfg.queues[q].name.clone()),
                agent: agent.map(|a| self.cfg.agents[a].id.clone()),
                event: event.to_string(),
                data,
            })
            .await;
    }

    fn logged_in_members(&self, q: usize) -> usize {
        self.cfg.queues[q]
            .members
            .iter()
            .filter(|&&(a, _)| self.agents[a].status != Status::LoggedOut)
            .count()
    }

    fn waiting_in(&self, q: usize) -> usize {
        self.waiters
            .iter()
            .filter(|w| w.queue == q && !w.connected)
            .count()
    }

    async fn handle(&mut self, m: Msg<L>) {
        match m {
            Msg::Join {
                queue,
                call_id,
                caller,
                tx,
                reply,
            } => {
                let Some(queue) = self.cfg.queue(&queue) else {
                    let _ = reply.send(JoinResult::Unavailable);
                    return;
                };
                let qc = &self.cfg.queues[queue];
                let waiting = self.waiting_in(queue);
                let result = if qc.max_length.is_some_and(|m| waiting >= m) {
                    self.counters[queue].full += 1;
                    JoinResult::Full
                } else if !qc.join_empty && self.logged_in_members(queue) == 0 {
                    self.counters[queue].empty += 1;
                    JoinResult::Empty
                } else {
                    self.counters[queue].joined += 1;
                    self.next_seq += 1;
                    self.waiters.push(Waiter {
                        call_id: call_id.clone(),
                        queue,
                        joined: Instant::now(),
                        seq: self.next_seq,
                        tx,
                        connected: false,
                        callback: None,
                        caller: caller.clone(),
                        counted_wait: None,
                    });
                    JoinResult::Joined(waiting + 1)
                };
                let event = match result {
                    JoinResult::Joined(_) => "ENTERQUEUE",
                    JoinResult::Full => "FULL",
                    _ => "JOINEMPTY",
                };
                self.log(
                    Some(&call_id),
                    Some(queue),
                    None,
                    event,
                    serde_json::json!({"caller": caller}),
                )
                .await;
                let _ = reply.send(result);
            }
            Msg::Leave { call_id } => {
                if let Some(i) = self
                    .waiters
                    .iter()
                    .position(|w| w.call_id == call_id && !w.connected)
                {
                    let w = self.waiters.remove(i);
                    self.counters[w.queue].abandoned += 1;
                    let waited = w.joined.elapsed().as_millis() as u64;
                    self.log(
                        Some(&call_id),
                        Some(w.queue),
                        None,
                        "ABANDON",
                        serde_json::json!({"wait_ms": waited}),
                    )
                    .await;
                }
            }
            Msg::Offered { offer, result } => self.offered(offer, result).await,
            Msg::Bounced { call_id, agent } => {
                let Some(a) = self.agent_index(&agent) else {
                    return;
                };
                if let Some(w) = self.waiters.iter_mut().find(|w| w.call_id == call_id) {
                    // Back in line with the original join time: first again.
                    w.connected = false;
                    let q = w.queue;
                    let qcfg_sl = self.cfg.queues[q].service_level;
                    let c = &mut self.counters[q];
                    c.answered = c.answered.saturating_sub(1);
                    if let Some(waited) = w.counted_wait.take() {
                        c.wait_answered = c.wait_answered.saturating_sub(waited);
                        if waited <= qcfg_sl {
                            c.answered_in_sl = c.answered_in_sl.saturating_sub(1);
                        }
                    }
                    self.missed(a, q).await;
                    self.log(
                        Some(&call_id),
                        Some(q),
                        Some(a),
                        "BOUNCE",
                        serde_json::json!({}),
                    )
                    .await;
                }
            }
            Msg::Done {
                call_id,
                agent,
                talk,
                by,
            } => {
                let Some(a) = self.agent_index(&agent) else {
                    return;
                };
                let Some(i) = self.waiters.iter().position(|w| w.call_id == call_id) else {
                    return;
                };
                let q = self.waiters.remove(i).queue;
                self.complete_part(a, q, &call_id, talk);
                let event = match by {
                    Completed::ByCaller => "COMPLETECALLER",
                    Completed::ByAgent => "COMPLETEAGENT",
                    Completed::BySystem => "COMPLETESYSTEM",
                };
                self.log(
                    Some(&call_id),
                    Some(q),
                    Some(a),
                    event,
                    serde_json::json!({"talk_ms": talk.as_millis() as u64}),
                )
                .await;
            }
            Msg::Code {
                station,
                digits,
                reply,
            } => {
                let r = self.code(&station, &digits).await;
                let _ = reply.send(r);
            }
            Msg::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Msg::Command(cmd, reply) => {
                let r = self.command(cmd).await;
                let _ = reply.send(r);
            }
            Msg::Callback {
                call_id,
                number,
                reply,
            } => {
                let w = self
                    .waiters
                    .iter_mut()
                    .find(|w| w.call_id == call_id && !w.connected);
                let ok = match w {
                    Some(w) => {
                        w.callback = Some(number.clone());
                        let q = w.queue;
                        self.log(
                            Some(&call_id),
                            Some(q),
                            None,
                            "CALLBACKREQUEST",
                            serde_json::json!({"number": number}),
                        )
                        .await;
                        true
                    }
                    None => false,
                };
                let _ = reply.send(ok);
            }
            Msg::CallbackDone {
                call_id,
                agent,
                talk,
            } => {
                let Some(i) = self.waiters.iter().position(|w| w.call_id == call_id) else {
                    return;
                };
                let Some(agent) = self.agent_index(&agent) else {
                    return;
                };
                let w = self.waiters.remove(i);
                let q = w.queue;
                match talk {
                    Some(talk) => {
                        self.complete_part(agent, q, &call_id, talk);
                        self.log(
                            Some(&call_id),
                            Some(q),
                            Some(agent),
                            "COMPLETECALLBACK",
                            serde_json::json!({"talk_ms": talk.as_millis() as u64}),
                        )
                        .await;
                    }
                    None => {
                        self.free(agent);
                        self.agents[agent].idle_since = Instant::now();
                        self.log(
                            Some(&call_id),
                            Some(q),
                            Some(agent),
                            "CALLBACKFAILED",
                            serde_json::json!({}),
                        )
                        .await;
                    }
                }
            }
            Msg::Monitor {
                station,
                digits,
                lease,
                reply,
            } => {
                let r = self.monitor(&station, &digits, lease).await;
                let _ = reply.send(r);
            }
            Msg::Transfer {
                call_id,
                from,
                talk,
                number,
                reply,
            } => {
                let r = self.transfer(&call_id, &from, talk, &number).await;
                let _ = reply.send(r);
            }
            Msg::Reserve { number, reply } => {
                let r = self
                    .reserve_agent(&number)
                    .ok_or_else(|| format!("agent {number} is not free"));
                let _ = reply.send(r);
            }
            Msg::Unreserve { agent } => {
                if let Some(t) = self.agent_index(&agent)
                    && self.agents[t].status == Status::Ringing
                {
                    self.free(t);
                }
            }
            Msg::Handover {
                call_id,
                from,
                talk,
                to,
            } => {
                let q = self
                    .waiters
                    .iter()
                    .find(|w| w.call_id == call_id)
                    .map(|w| w.queue);
                if let (Some(q), Some(a)) = (q, self.agent_index(&from)) {
                    self.complete_part(a, q, &call_id, talk);
                    self.log(Some(&call_id), Some(q), Some(a), "TRANSFER", serde_json::json!({"to": to, "attended": true, "talk_ms": talk.as_millis() as u64}))
                        .await;
                }
                if let Some(t) = self.agent_index(&to) {
                    let ag = &mut self.agents[t];
                    ag.status = Status::OnCall;
                    ag.since = Instant::now();
                    ag.current_call = Some(call_id.clone());
                    self.log(
                        Some(&call_id),
                        q,
                        Some(t),
                        "TRANSFERCONNECT",
                        serde_json::json!({}),
                    )
                    .await;
                }
            }
            Msg::TransferResult {
                call_id,
                to,
                answered,
            } => {
                let Some(t) = self.agent_index(&to) else {
                    return;
                };
                let q = self
                    .waiters
                    .iter()
                    .find(|w| w.call_id == call_id)
                    .map(|w| w.queue);
                let ag = &mut self.agents[t];
                ag.since = Instant::now();
                if answered {
                    ag.status = Status::OnCall;
                    ag.current_call = Some(call_id.clone());
                    self.log(
                        Some(&call_id),
                        q,
                        Some(t),
                        "TRANSFERCONNECT",
                        serde_json::json!({}),
                    )
                    .await;
                } else {
                    ag.status = Status::Available;
                    if let Some(w) = self.waiters.iter_mut().find(|w| w.call_id == call_id) {
                        // Back at the head of the line with the original join time.
                        w.connected = false;
                    }
                    self.log(
                        Some(&call_id),
                        q,
                        Some(t),
                        "TRANSFERFAIL",
                        serde_json::json!({}),
                    )
                    .await;
                }
            }
            Msg::Reconfigure(cfg, reply) => {
                let r = self.reconfigure(cfg).await;
                let _ = reply.send(r);
            }
            Msg::Position { call_id, reply } => {
                let order = self.order();
                let me = order
                    .iter()
                    .position(|&i| self.waiters[i].call_id == call_id);
                let pos = me.map(|k| {
                    let q = self.waiters[order[k]].queue;
                    let ahead = order[..k]
                        .iter()
                        .filter(|&&i| self.waiters[i].queue == q)
                        .count();
                    let c = &self.counters[q];
                    let agents = self.logged_in_members(q).max(1) as u32;
                    let wrap = self.cfg.queues[q].wrap_up;
                    let expected = (c.handled > 0).then(|| {
                        let aht = c.talk / c.handled as u32 + wrap;
                        aht * (ahead as u32 + 1) / agents
                    });
                    Position { ahead, expected }
                });
                let _ = reply.send(pos);
            }
        }
    }

    /// Sends an `agent` event for every agent whose state, pause reason or
    /// station changed since the last one. Run after every message the
    /// actor handles, so each change is announced however it came about
    /// (a code, a command, an offer, the end of wrap-up).
    fn announce_states(&mut self) {
        for (i, ag) in self.agents.iter().enumerate() {
            if self.shown[i].matches(ag) {
                continue;
            }
            let shown = Shown {
                state: ag.status.name(),
                reason: ag.status.reason().map(str::to_string),
                station: ag.station.clone(),
            };
            self.events.emit(
                "agent",
                self.clock.now(),
                serde_json::json!({
                    "agent": self.cfg.agents[i].id,
                    "state": shown.state,
                    "station": shown.station,
                    "reason": shown.reason,
                }),
            );
            self.shown[i] = shown;
        }
    }

    /// Swaps in a new config (see [`AcdHandle::reconfigure`]). Agents and
    /// queues are matched by name; everything the actor holds by index is
    /// renumbered.
    async fn reconfigure(&mut self, new: std::sync::Arc<AcdConfig>) -> Result<Vec<String>, String> {
        let amap: Vec<Option<usize>> = self
            .cfg
            .agents
            .iter()
            .map(|a| new.agents.iter().position(|n| n.id == a.id))
            .collect();
        let qmap: Vec<Option<usize>> = self.cfg.queues.iter().map(|q| new.queue(&q.name)).collect();
        let mut refused = Vec::new();
        for (a, _) in amap.iter().enumerate().filter(|(_, m)| m.is_none()) {
            let ag = &self.agents[a];
            let offered = self.offers.values().any(|o| o.agent == a);
            if offered
                || ag.current_call.is_some()
                || matches!(ag.status, Status::Ringing | Status::OnCall)
            {
                refused.push(format!(
                    "agent `{}` is {} and cannot be removed now",
                    self.cfg.agents[a].id,
                    if ag.status == Status::Ringing {
                        "being rung"
                    } else {
                        "on a call"
                    }
                ));
            }
        }
        for (q, _) in qmap.iter().enumerate().filter(|(_, m)| m.is_none()) {
            let calls = self.waiters.iter().filter(|w| w.queue == q).count();
            if calls > 0 {
                refused.push(format!(
                    "queue `{}` has {calls} caller(s) waiting or connected and cannot be removed now",
                    self.cfg.queues[q].name
                ));
            } else if self.offers.values().any(|o| o.queue == q) {
                refused.push(format!(
                    "queue `{}` is ringing an agent and cannot be removed now",
                    self.cfg.queues[q].name
                ));
            }
        }
        if !refused.is_empty() {
            return Err(refused.join("; "));
        }

        let mut changes = Vec::new();
        // Agents leaving the config log off first, while their index still
        // names them.
        for a in (0..amap.len()).filter(|&a| amap[a].is_none()) {
            changes.push(format!("agent {} removed", self.cfg.agents[a].id));
            if self.agents[a].status != Status::LoggedOut {
                let station = self.agents[a].station.clone();
                self.log(
                    None,
                    None,
                    Some(a),
                    "AGENTLOGOFF",
                    serde_json::json!({"station": station, "reason": "removed from the config"}),
                )
                .await;
                self.events.emit(
                    "agent",
                    self.clock.now(),
                    serde_json::json!({
                        "agent": self.cfg.agents[a].id,
                        "state": Status::LoggedOut.name(),
                        "station": null,
                        "reason": "removed",
                    }),
                );
            }
        }
        for q in (0..qmap.len()).filter(|&q| qmap[q].is_none()) {
            changes.push(format!("queue {} removed", self.cfg.queues[q].name));
        }

        let now = Instant::now();
        fn renumber<V: Copy>(m: &HashMap<usize, V>, qmap: &[Option<usize>]) -> HashMap<usize, V> {
            m.iter()
                .filter_map(|(&q, &v)| qmap[q].map(|n| (n, v)))
                .collect()
        }
        let mut old: Vec<Option<(Agent, Shown)>> = std::mem::take(&mut self.agents)
            .into_iter()
            .zip(std::mem::take(&mut self.shown))
            .map(Some)
            .collect();
        let mut added = Vec::new();
        for (n, cfg) in new.agents.iter().enumerate() {
            let before = amap.iter().position(|&m| m == Some(n));
            match before.and_then(|a| old[a].take()) {
                Some((mut ag, shown)) => {
                    ag.calls = renumber(&ag.calls, &qmap);
                    ag.talk = renumber(&ag.talk, &qmap);
                    self.agents.push(ag);
                    self.shown.push(shown);
                }
                None => {
                    changes.push(format!("agent {} added", cfg.id));
                    let ag = Agent::new(cfg, now);
                    if ag.status != Status::LoggedOut {
                        added.push(n);
                    }
                    self.agents.push(ag);
                    self.shown.push(Shown::logged_out());
                }
            }
        }
        let mut counters = vec![QueueCounters::default(); new.queues.len()];
        let mut rr = vec![None; new.queues.len()];
        for (q, m) in qmap.iter().enumerate() {
            if let Some(n) = *m {
                counters[n] = self.counters[q].clone();
                rr[n] = self.rr[q];
            }
        }
        for q in &new.queues {
            if !self.cfg.queues.iter().any(|o| o.name == q.name) {
                changes.push(format!("queue {} added", q.name));
            }
        }
        // Removed queues and agents have no waiter and no offer (refused
        // above), so every index below has a new number.
        for w in &mut self.waiters {
            w.queue = qmap[w.queue].unwrap_or(0);
        }
        for o in self.offers.values_mut() {
            o.queue = qmap[o.queue].unwrap_or(0);
            o.agent = amap[o.agent].unwrap_or(0);
        }
        self.counters = counters;
        self.rr = rr;
        self.cfg = new.clone();
        self.config_tx.send_replace(new);
        for a in added {
            let station = self.agents[a].station.clone();
            self.log(
                None,
                None,
                Some(a),
                "AGENTLOGIN",
                serde_json::json!({"station": station}),
            )
            .await;
        }
        // Members may have left a queue that callers wait in.
        self.leave_empty().await;
        tracing::info!(changes = %changes.join(", "), "ACD reconfigured");
        Ok(changes)
    }

    fn agent_index(&self, id: &str) -> Option<usize> {
        self.cfg.agents.iter().position(|a| a.id == id)
    }

    async fn set_status(&mut self, a: usize, status: Status, event: &str, data: serde_json::Value) {
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

    /// Feature codes: login, logout, pause, unpause, dnd, wrap-up code.
    async fn code(&mut self, station: &str, digits: &str) -> Result<String, String> {
        let cmd = self.parse_code(station, digits)?;
        self.command(cmd).await
    }

    /// Turns keys keyed at a station into an agent command.
    fn parse_code(&self, station: &str, digits: &str) -> Result<AgentCommand, String> {
        let codes = &self.cfg.codes;
        if let Some(rest) = digits.strip_prefix(codes.login.as_str()) {
            let a = if rest.is_empty() {
                self.cfg
                    .agents
                    .iter()
                    .position(|a| a.station.as_deref() == Some(station))
            } else {
                self.cfg
                    .agents
                    .iter()
                    .position(|a| a.number.as_deref() == Some(rest))
            }
            .ok_or_else(|| {
                format!(
                    "no agent {} at station {station}",
                    if rest.is_empty() { "homed" } else { rest }
                )
            })?;
            return Ok(AgentCommand::Login {
                agent: self.cfg.agents[a].id.clone(),
                station: station.to_string(),
            });
        }
        let a = self
            .agents
            .iter()
            .position(|a| a.station.as_deref() == Some(station) && a.status != Status::LoggedOut)
            .ok_or_else(|| format!("nobody is logged in at {station}"))?;
        let agent = self.cfg.agents[a].id.clone();
        if digits == codes.logout {
            return Ok(AgentCommand::Logout { agent });
        }
        if let Some(reason) = digits.strip_prefix(codes.pause.as_str()) {
            let reason = (!reason.is_empty()).then(|| reason.to_string());
            return Ok(AgentCommand::Pause { agent, reason });
        }
        if digits == codes.unpause {
            return Ok(AgentCommand::Unpause { agent });
        }
        if digits == codes.dnd {
            return Ok(AgentCommand::Dnd { agent });
        }
        if let Some(code) = digits.strip_prefix(codes.wrap.as_str()) {
            return Ok(AgentCommand::WrapCode {
                agent,
                code: code.to_string(),
            });
        }
        Err(format!("`{digits}` is not a feature code"))
    }

    /// Carries out an agent command, from a phone or from headquarters.
    async fn command(&mut self, cmd: AgentCommand) -> Result<String, String> {
        let id_of = |agent: &str| {
            self.cfg
                .agents
                .iter()
                .position(|a| a.id == agent)
                .ok_or_else(|| format!("no agent `{agent}`"))
        };
        let busy = |s: &Status| matches!(s, Status::Ringing | Status::OnCall);
        match cmd {
            AgentCommand::Login { agent, station } => {
                let a = id_of(&agent)?;
                let at_station = self.agents.iter().position(|x| {
                    x.station.as_deref() == Some(station.as_str()) && x.status != Status::LoggedOut
                });
                if let Some(other) = at_station
                    && other != a
                {
                    return Err(format!(
                        "{} is logged in at {station}",
                        self.cfg.agents[other].id
                    ));
                }
                if busy(&self.agents[a].status) {
                    return Err(format!("{agent} is on a call"));
                }
                if !self.lines.has(&station) {
                    return Err(format!("no station `{station}`"));
                }
                self.agents[a].station = Some(station.clone());
                self.set_status(
                    a,
                    Status::Available,
                    "AGENTLOGIN",
                    serde_json::json!({"station": station}),
                )
                .await;
                Ok(format!("{agent} logged in at {station}"))
            }
            AgentCommand::Logout { agent } => {
                let a = id_of(&agent)?;
                if busy(&self.agents[a].status) {
                    return Err(format!("{agent} is on a call"));
                }
                let station = self.agents[a].station.take();
                self.set_status(
                    a,
                    Status::LoggedOut,
                    "AGENTLOGOFF",
                    serde_json::json!({"station": station}),
                )
                .await;
                self.leave_empty().await;
                Ok(format!("{agent} logged out"))
            }
            AgentCommand::Pause { agent, reason } => {
                let a = id_of(&agent)?;
                let reason = reason.unwrap_or_else(|| "none".into());
                self.set_status(
                    a,
                    Status::Paused(reason.clone()),
                    "PAUSE",
                    serde_json::json!({"reason": reason}),
                )
                .await;
                Ok(format!("{agent} paused ({reason})"))
            }
            AgentCommand::Unpause { agent } => {
                let a = id_of(&agent)?;
                self.agents[a].missed = 0;
                self.set_status(a, Status::Available, "UNPAUSE", serde_json::json!({}))
                    .await;
                Ok(format!("{agent} available"))
            }
            AgentCommand::Dnd { agent } => {
                let a = id_of(&agent)?;
                self.set_status(a, Status::Dnd, "DND", serde_json::json!({}))
                    .await;
                Ok(format!("{agent} do-not-disturb"))
            }
            AgentCommand::WrapCode { agent, code } => {
                let a = id_of(&agent)?;
                if code.is_empty() {
                    return Err("a wrap-up code needs digits after it".into());
                }
                let call = self.agents[a]
                    .last_call
                    .clone()
                    .ok_or_else(|| format!("{agent} has taken no call to code"))?;
                self.store
                    .send(StoreMsg::WrapCode {
                        call_id: call.clone(),
                        code: code.clone(),
                    })
                    .await;
                self.log(
                    Some(&call),
                    None,
                    Some(a),
                    "WRAPCODE",
                    serde_json::json!({"code": code}),
                )
                .await;
                Ok(format!("call {call} coded {code}"))
            }
        }
    }

    /// Hands a supervisor's station to the call of the agent named by the
    /// code. On refusal the lease is dropped and the station goes back.
    async fn monitor(
        &mut self,
        station: &str,
        digits: &str,
        lease: Lease<L>,
    ) -> Result<String, String> {
        if digits == self.cfg.codes.pickup {
            return self.pickup(station, lease).await;
        }
        let codes = &self.cfg.codes;
        let (mode, number) = [
            (MonitorMode::Listen, &codes.listen),
            (MonitorMode::Whisper, &codes.whisper),
            (MonitorMode::Barge, &codes.barge),
        ]
        .into_iter()
        .find_map(|(m, c)| digits.strip_prefix(c.as_str()).map(|n| (m, n.to_string())))
        .ok_or_else(|| format!("`{digits}` is not a supervisor code"))?;
        if !self.cfg.supervisors.iter().any(|s| s == station) {
            return Err(format!(
                "station {station} is not a supervisor's (see [acd] supervisors)"
            ));
        }
        let a = self
            .cfg
            .agents
            .iter()
            .position(|ag| ag.number.as_deref() == Some(number.as_str()))
            .ok_or_else(|| format!("no agent has number {number}"))?;
        let call = self.agents[a]
            .current_call
            .clone()
            .ok_or_else(|| format!("{} is not on a call", self.cfg.agents[a].id))?;
        let w = self
            .waiters
            .iter()
            .find(|w| w.call_id == call && w.connected)
            .ok_or_else(|| "the call has ended".to_string())?;
        let q = w.queue;
        w.tx.send(WaiterMsg::Monitor { mode, lease })
            .await
            .map_err(|_| "the call has ended".to_string())?;
        self.log(
            Some(&call),
            Some(q),
            Some(a),
            "SUPERVISE",
            serde_json::json!({"station": station, "mode": format!("{mode:?}").to_lowercase()}),
        )
        .await;
        Ok(format!(
            "{station} {mode:?} on {}'s call",
            self.cfg.agents[a].id
        ))
    }

    /// An agent's part of a call ends (transfers): talk time, wrap-up in
    /// every queue, the call to code.
    fn complete_part(&mut self, a: usize, q: usize, call_id: &str, talk: Duration) {
        self.counters[q].talk += talk;
        self.counters[q].handled += 1;
        let wrap = self.cfg.agents[a]
            .wrap_up
            .unwrap_or(self.cfg.queues[q].wrap_up);
        let now = Instant::now();
        let ag = &mut self.agents[a];
        ag.total_calls += 1;
        ag.total_talk += talk;
        *ag.calls.entry(q).or_default() += 1;
        *ag.talk.entry(q).or_default() += talk;
        ag.last_call = Some(call_id.to_string());
        ag.current_call = None;
        ag.missed = 0;
        // Wrap-up follows a call; an agent whose state changed meanwhile
        // keeps it.
        if ag.status == Status::OnCall {
            ag.status = if wrap.is_zero() {
                ag.idle_since = now;
                Status::Available
            } else {
                Status::WrapUp(now + wrap)
            };
            ag.since = now;
        }
    }

    /// Waiter `i` is connected to agent `a` after `waited`: counts the
    /// answer (and the service level with `in_service_level`) and puts the
    /// agent on the call. Returns the call id.
    fn connect_waiter(
        &mut self,
        i: usize,
        a: usize,
        waited: Duration,
        in_service_level: bool,
    ) -> String {
        let w = &mut self.waiters[i];
        w.connected = true;
        w.counted_wait = in_service_level.then_some(waited);
        let (q, call_id) = (w.queue, w.call_id.clone());
        let c = &mut self.counters[q];
        c.answered += 1;
        c.wait_answered += waited;
        if in_service_level && waited <= self.cfg.queues[q].service_level {
            c.answered_in_sl += 1;
        }
        let ag = &mut self.agents[a];
        ag.status = Status::OnCall;
        ag.since = Instant::now();
        ag.missed = 0;
        ag.current_call = Some(call_id.clone());
        call_id
    }

    /// An agent back to available (an offer ended without a call).
    fn free(&mut self, a: usize) {
        let ag = &mut self.agents[a];
        ag.status = Status::Available;
        ag.since = Instant::now();
    }

    /// Holds the available agent with `number` (their phone is about to
    /// ring): their id and station, or `None` if no such agent is free.
    fn reserve_agent(&mut self, number: &str) -> Option<(String, String)> {
        let t = self
            .cfg
            .agents
            .iter()
            .position(|ag| ag.number.as_deref() == Some(number))
            .filter(|&t| self.agents[t].status == Status::Available)?;
        let station = self.agents[t].station.clone()?;
        self.agents[t].status = Status::Ringing;
        self.agents[t].since = Instant::now();
        Some((self.cfg.agents[t].id.clone(), station))
    }

    /// The first agent of a blind transfer is done with the call; the
    /// target must be free.
    async fn transfer(
        &mut self,
        call_id: &str,
        from: &str,
        talk: Duration,
        number: &str,
    ) -> Result<(String, String), String> {
        let Some(i) = self.waiters.iter().position(|w| w.call_id == call_id) else {
            return Err("the call has ended".into());
        };
        let q = self.waiters[i].queue;
        if let Some(a) = self.agent_index(from) {
            // The transferring agent's part is a completed call: talk time,
            // wrap-up (in every queue), wrap-up code.
            self.complete_part(a, q, call_id, talk);
            self.log(
                Some(call_id),
                Some(q),
                Some(a),
                "TRANSFER",
                serde_json::json!({"to": number, "talk_ms": talk.as_millis() as u64}),
            )
            .await;
        }
        match self.reserve_agent(number) {
            Some(target) => Ok(target),
            None => {
                self.waiters[i].connected = false;
                self.log(
                    Some(call_id),
                    Some(q),
                    None,
                    "TRANSFERFAIL",
                    serde_json::json!({"to": number}),
                )
                .await;
                Err(format!("agent {number} is not free"))
            }
        }
    }

    /// An agent picks up, at their own (off-hook) phone, the queue call that
    /// has waited longest among those now ringing an agent.
    async fn pickup(&mut self, station: &str, lease: Lease<L>) -> Result<String, String> {
        let a = self
            .agents
            .iter()
            .position(|ag| ag.station.as_deref() == Some(station) && ag.status != Status::LoggedOut)
            .ok_or_else(|| format!("nobody is logged in at {station}"))?;
        let ringing: Vec<usize> = self.offers.values().map(|o| o.queue).collect();
        let i = self
            .order()
            .into_iter()
            .find(|&i| {
                ringing.contains(&self.waiters[i].queue) && self.waiters[i].callback.is_none()
            })
            .ok_or_else(|| "no queue call is ringing".to_string())?;
        let q = self.waiters[i].queue;
        // The ringing offer for that queue stops; its agent is free again.
        if let Some(id) = self
            .offers
            .iter()
            .filter(|(_, o)| o.queue == q)
            .map(|(&id, _)| id)
            .min()
            && let Some(o) = self.offers.get(&id)
        {
            o.cancel.cancel();
        }
        let waited = self.waiters[i].joined.elapsed();
        let msg = WaiterMsg::Connect {
            agent: self.cfg.agents[a].id.clone(),
            lease,
        };
        if self.waiters[i].tx.send(msg).await.is_err() {
            return Err("the call has ended".into());
        }
        let call_id = self.connect_waiter(i, a, waited, true);
        self.log(
            Some(&call_id),
            Some(q),
            Some(a),
            "PICKUP",
            serde_json::json!({"station": station, "wait_ms": waited.as_millis() as u64}),
        )
        .await;
        Ok(format!(
            "{} picked up a {} call",
            self.cfg.agents[a].id, self.cfg.queues[q].name
        ))
    }

    /// With `leave_empty`, callers leave a queue whose members all logged out.
    async fn leave_empty(&mut self) {
        for q in 0..self.cfg.queues.len() {
            if !self.cfg.queues[q].leave_empty || self.logged_in_members(q) > 0 {
                continue;
            }
            let (out, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
                .into_iter()
                .partition(|w| w.queue == q && !w.connected && w.callback.is_none());
            self.waiters = keep;
            for w in out {
                self.counters[q].empty += 1;
                self.log(
                    Some(&w.call_id),
                    Some(q),
                    None,
                    "EXITEMPTY",
                    serde_json::json!({}),
                )
                .await;
                let _ = w.tx.send(WaiterMsg::Exit(ExitReason::Empty)).await;
            }
        }
    }

    async fn missed(&mut self, a: usize, q: usize) {
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

    async fn offered(&mut self, offer: u64, result: OfferResult<L>) {
        let Some(o) = self.offers.remove(&offer) else {
            return;
        };
        let (a, q) = (o.agent, o.queue);
        match result {
            OfferResult::Answered(mut lease) => {
                // The longest-waiting caller among the queues this agent
                // serves gets the agent, whoever the offer was made for.
                let best = self.order().into_iter().find(|&i| {
                    let w = &self.waiters[i];
                    self.cfg.queues[w.queue]
                        .members
                        .iter()
                        .any(|&(m, _)| m == a)
                });
                let Some(i) = best else {
                    // Everyone left while it rang: release the agent.
                    let _ = lease
                        .port()
                        .line
                        .command(LineCommand::Hangup(HangupCause::Normal))
                        .await;
                    drop(lease);
                    self.free(a);
                    return;
                };
                let wq = self.waiters[i].queue;
                let waited = self.waiters[i].joined.elapsed();
                if let Some(number) = self.waiters[i].callback.clone() {
                    // The place of a caller who asked to be called back came
                    // up: the agent is on the line; now dial the caller.
                    // A callback's wait is not a caller on the line: it
                    // stays out of the service level.
                    let call_id = self.connect_waiter(i, a, waited, false);
                    self.log(
                        Some(&call_id),
                        Some(wq),
                        Some(a),
                        "CALLBACKDIAL",
                        serde_json::json!({"number": number}),
                    )
                    .await;
                    let order = CallbackOrder {
                        orig: call_id,
                        agent_id: self.cfg.agents[a].id.clone(),
                        queue: self.cfg.queues[wq].name.clone(),
                        number,
                        trunks: self.cfg.queues[wq].callback_trunks.clone(),
                        ring_timeout: CALLBACK_RING,
                        agent: lease,
                    };
                    if let Err(mpsc::error::SendError(order)) = self.callbacks.send(order).await {
                        // Nobody places calls (the box is stopping): the
                        // agent is let go and the callback counts as not
                        // answered.
                        tracing::warn!("no one to place the callback; it is not dialled");
                        let CallbackOrder {
                            orig,
                            agent_id,
                            mut agent,
                            ..
                        } = order;
                        let _ = agent
                            .port()
                            .line
                            .command(LineCommand::Hangup(HangupCause::Normal))
                            .await;
                        drop(agent);
                        // Through the inbox like any callback's end, from
                        // a task: the actor must not wait on its own inbox.
                        let tx = self.self_tx.clone();
                        self.tracker.spawn(async move {
                            let done = Msg::CallbackDone {
                                call_id: orig,
                                agent: agent_id,
                                talk: None,
                            };
                            let _ = tx.send(done).await;
                        });
                    }
                    self.trim_offers().await;
                    return;
                }
                let msg = WaiterMsg::Connect {
                    agent: self.cfg.agents[a].id.clone(),
                    lease,
                };
                if let Err(mpsc::error::SendError(WaiterMsg::Connect { mut lease, .. })) =
                    self.waiters[i].tx.send(msg).await
                {
                    // The caller's task is gone (it will send Leave).
                    let _ = lease
                        .port()
                        .line
                        .command(LineCommand::Hangup(HangupCause::Normal))
                        .await;
                    self.free(a);
                    return;
                }
                let call_id = self.connect_waiter(i, a, waited, true);
                self.log(
                    Some(&call_id),
                    Some(wq),
                    Some(a),
                    "CONNECT",
                    serde_json::json!({"wait_ms": waited.as_millis() as u64}),
                )
                .await;
                self.trim_offers().await;
            }
            OfferResult::NoAnswer => {
                self.log(
                    None,
                    Some(q),
                    Some(a),
                    "RINGNOANSWER",
                    serde_json::json!({}),
                )
                .await;
                self.missed(a, q).await;
            }
            OfferResult::Busy => {
                let ag = &mut self.agents[a];
                ag.retry_until = Some(Instant::now() + self.cfg.queues[q].retry);
                if ag.status == Status::Ringing {
                    ag.status = Status::Available;
                }
            }
            OfferResult::Cancelled => {
                let ag = &mut self.agents[a];
                if ag.status == Status::Ringing {
                    ag.status = Status::Available;
                }
            }
        }
    }

    /// Cancels offers a queue no longer needs (ring-all after an answer).
    async fn trim_offers(&mut self) {
        for q in 0..self.cfg.queues.len() {
            let waiting = self.waiting_in(q);
            let mut ids: Vec<u64> = self
                .offers
                .iter()
                .filter(|(_, o)| o.queue == q)
                .map(|(&id, _)| id)
                .collect();
            ids.sort_unstable();
            let needed = if self.cfg.queues[q].strategy == Strategy::RingAll {
                if waiting > 0 { ids.len() } else { 0 }
            } else {
                waiting
            };
            for id in ids.into_iter().skip(needed) {
                if let Some(o) = self.offers.get(&id) {
                    o.cancel.cancel();
                }
            }
        }
    }

    /// Waiting callers in service order: queue priority, then join time.
    fn order(&self) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.waiters.len())
            .filter(|&i| !self.waiters[i].connected)
            .collect();
        idx.sort_by_key(|&i| {
            let w = &self.waiters[i];
            (
                std::cmp::Reverse(self.cfg.queues[w.queue].priority),
                w.joined,
                w.seq,
            )
        });
        idx
    }

    fn eligible(&self, a: usize, tier: u32, wait: Duration, step: Duration, now: Instant) -> bool {
        let ag = &self.agents[a];
        ag.status == Status::Available
            && ag.station.is_some()
            && ag.retry_until.is_none_or(|t| t <= now)
            && (tier == 0 || wait >= step * tier)
    }

    /// Wrap-ups that ended, callers past `max_wait`.
    async fn tick(&mut self) {
        let now = Instant::now();
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
        let mut i = 0;
        while i < self.waiters.len() {
            let w = &self.waiters[i];
            let q = &self.cfg.queues[w.queue];
            // A caller waiting for a callback has hung up: their place
            // holds until an agent is free.
            if !w.connected
                && w.callback.is_none()
                && q.max_wait
                    .is_some_and(|m| now.duration_since(w.joined) >= m)
            {
                let w = self.waiters.remove(i);
                self.counters[w.queue].timeouts += 1;
                self.log(
                    Some(&w.call_id),
                    Some(w.queue),
                    None,
                    "EXITWITHTIMEOUT",
                    serde_json::json!({}),
                )
                .await;
                let _ = w.tx.send(WaiterMsg::Exit(ExitReason::Timeout)).await;
                continue;
            }
            i += 1;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for ag in &self.agents {
            if let Status::WrapUp(t) = ag.status {
                at(t);
            }
        }
        let now = Instant::now();
        for ag in &self.agents {
            // A retry pause still running: the agent becomes offerable then.
            if let Some(t) = ag.retry_until
                && ag.status == Status::Available
                && t > now
            {
                at(t);
            }
        }
        for w in self.waiters.iter().filter(|w| !w.connected) {
            let q = &self.cfg.queues[w.queue];
            if let Some(m) = q.max_wait
                && w.callback.is_none()
            {
                at(w.joined + m);
            }
            for &(_, tier) in &q.members {
                let t = w.joined + q.tier_step * tier;
                if tier > 0 && t > now {
                    at(t);
                }
            }
        }
        next
    }

    fn pick(&mut self, q: usize, wait: Duration, now: Instant, busy: &[bool]) -> Vec<usize> {
        let qc = self.cfg.queues[q].clone();
        let cands: Vec<(usize, usize)> = qc
            .members
            .iter()
            .enumerate()
            .filter(|&(_, &(a, tier))| !busy[a] && self.eligible(a, tier, wait, qc.tier_step, now))
            .map(|(mi, &(a, _))| (mi, a))
            .collect();
        if cands.is_empty() {
            return Vec::new();
        }
        let one = |x: (usize, usize)| vec![x.1];
        match qc.strategy {
            Strategy::RingAll => cands.into_iter().map(|(_, a)| a).collect(),
            Strategy::Linear => one(cands[0]),
            Strategy::LongestIdle => one(*cands
                .iter()
                .min_by_key(|&&(mi, a)| (self.agents[a].idle_since, mi))
                .unwrap_or(&cands[0])),
            Strategy::FewestCalls => one(*cands
                .iter()
                .min_by_key(|&&(mi, a)| (self.agents[a].calls.get(&q).copied().unwrap_or(0), mi))
                .unwrap_or(&cands[0])),
            Strategy::LeastTalkTime => one(*cands
                .iter()
                .min_by_key(|&&(mi, a)| {
                    (self.agents[a].talk.get(&q).copied().unwrap_or_default(), mi)
                })
                .unwrap_or(&cands[0])),
            Strategy::RoundRobin => {
                let after = self.rr[q];
                let n = qc.members.len();
                let start = after.map_or(0, |l| (l + 1) % n);
                let chosen = (0..n)
                    .map(|k| (start + k) % n)
                    .find_map(|mi| cands.iter().find(|&&(m, _)| m == mi).copied())
                    .unwrap_or(cands[0]);
                self.rr[q] = Some(chosen.0);
                one(chosen)
            }
            Strategy::Random => {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                one(cands[(self.rng % cands.len() as u64) as usize])
            }
        }
    }

    /// Offers waiting callers to free agents.
    async fn dispatch(&mut self) {
        let now = Instant::now();
        let mut offers_in: Vec<usize> = vec![0; self.cfg.queues.len()];
        let mut busy = vec![false; self.agents.len()];
        for o in self.offers.values() {
            offers_in[o.queue] += 1;
            busy[o.agent] = true;
        }
        let mut seen_in: Vec<usize> = vec![0; self.cfg.queues.len()];
        for i in self.order() {
            let (q, wait, call_id) = {
                let w = &self.waiters[i];
                (w.queue, now.duration_since(w.joined), w.call_id.clone())
            };
            seen_in[q] += 1;
            let ring_all = self.cfg.queues[q].strategy == Strategy::RingAll;
            // One offer per waiting caller (ring-all: every free member for
            // the first caller), so agents are not rung for nobody.
            if !ring_all && offers_in[q] >= seen_in[q] {
                continue;
            }
            if ring_all && seen_in[q] > 1 {
                continue;
            }
            let caller = self.waiters[i].caller.clone();
            for a in self.pick(q, wait, now, &busy) {
                busy[a] = true;
                offers_in[q] += 1;
                self.start_offer(a, q, &call_id, caller.clone()).await;
            }
        }
    }

    async fn start_offer(&mut self, a: usize, q: usize, call_id: &str, caller: Option<String>) {
        let Some(station) = self.agents[a].station.clone() else {
            return;
        };
        self.next_offer += 1;
        let id = self.next_offer;
        let cancel = CancellationToken::new();
        self.offers.insert(
            id,
            Offer {
                agent: a,
                queue: q,
                cancel: cancel.clone(),
            },
        );
        let ag = &mut self.agents[a];
        ag.status = Status::Ringing;
        ag.since = Instant::now();
        self.log(
            Some(call_id),
            Some(q),
            Some(a),
            "OFFER",
            serde_json::json!({"station": station}),
        )
        .await;
        // The call's own event log has the offer too.
        self.store
            .send(StoreMsg::Event {
                call_id: call_id.to_string(),
                at: self.clock.now(),
                event: "offered",
                data: serde_json::json!({
                    "queue": self.cfg.queues[q].name,
                    "agent": self.cfg.agents[a].id,
                    "station": station,
                }),
            })
            .await;
        let lines = self.lines.clone();
        let tx = self.self_tx.clone();
        let timeout = self.cfg.queues[q].ring_timeout;
        self.tracker.spawn(async move {
            let result = ring(&lines, &station, caller, timeout, &cancel).await;
            let _ = tx.send(Msg::Offered { offer: id, result }).await;
        });
    }

    fn stats(&self) -> AcdStats {
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
            .map(|(cfg, a)| AgentStats {
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
            })
            .collect();
        AcdStats {
            queues,
            agents,
            scheduler_us: self.sched.as_micros() as u64,
        }
    }
}

/// Rings a station until it answers, the ring timeout passes or the offer
/// is cancelled.
async fn ring<L>(
    lines: &SharedLines<L>,
    station: &str,
    caller_id: Option<String>,
    timeout: Duration,
    cancel: &CancellationToken,
) -> OfferResult<L>
where
    L: Line,
{
    let Some(mut lease) = lines.seize(station).await else {
        return OfferResult::Busy;
    };
    let port = lease.port();
    let cmd = LineCommand::Ring {
        caller_id,
        caller_name: None,
    };
    let Ok(rang) = crate::media::dial::ring(&mut port.line, cmd, timeout, cancel.cancelled()).await
    else {
        return OfferResult::Busy;
    };
    if let Rang::Answered = rang {
        return OfferResult::Answered(lease);
    }
    let _ = port
        .line
        .command(LineCommand::Hangup(HangupCause::NoAnswer))
        .await;
    match rang {
        Rang::Cancelled => OfferResult::Cancelled,
        _ => OfferResult::NoAnswer,
    }
}

/// How long a called-back caller's phone rings.
const CALLBACK_RING: Duration = Duration::from_secs(30);

/// A callback whose turn came: the agent is on the line; the calls layer
/// dials the caller, bridges them and reports with
/// [`AcdHandle::callback_done`].
#[derive(Debug)]
pub struct CallbackOrder<L> {
    /// The call that asked to be called back.
    pub orig: String,
    /// The agent who takes it.
    pub agent_id: String,
    /// The queue it waited in.
    pub queue: String,
    /// The number to call.
    pub number: String,
    /// Trunks to dial on, in order.
    pub trunks: Vec<String>,
    /// How long the caller's phone rings.
    pub ring_timeout: Duration,
    /// The agent's station, answered.
    pub agent: Lease<L>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbox_hal::registry::AnyLine;

    type L = AnyLine;

    /// The command API headquarters will use, without a phone in sight.
    #[tokio::test]
    async fn agent_commands_change_state_and_explain_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = crate::store::Store::open(dir.path(), "boot").unwrap();
        let lines_info = [callbox_hal::LineInfo {
            id: "desk-1".into(),
            kind: callbox_hal::LineKind::Station,
        }];
        let raw: config::RawAcd = toml::from_str(
            "[agent.alice]\nstation = \"desk-1\"\n[queue.sales]\nmembers = { alice = 0 }\n",
        )
        .unwrap();
        let cfg = config::check(&raw, &lines_info).unwrap();
        let mut lines = crate::media::lines::Lines::<L>::new();
        let _inbox = lines.register("desk-1");
        let (handle, inbox) = channel::<L>(cfg);
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        spawn(
            &handle,
            inbox,
            std::sync::Arc::new(lines),
            store.handle(),
            Clock::new(false),
            mpsc::channel(4).0,
            Events::new(),
            shutdown.clone(),
            &tracker,
        );
        let state = |s: AcdStats| s.agents[0].state.clone();
        assert_eq!(state(handle.stats().await.unwrap()), "logged_out");
        let login = |station: &str| AgentCommand::Login {
            agent: "alice".into(),
            station: station.into(),
        };
        assert_eq!(
            handle.command(login("desk-9")).await.unwrap_err(),
            "no station `desk-9`"
        );
        handle.command(login("desk-1")).await.unwrap();
        assert_eq!(state(handle.stats().await.unwrap()), "available");
        handle
            .command(AgentCommand::Pause {
                agent: "alice".into(),
                reason: Some("7".into()),
            })
            .await
            .unwrap();
        let s = handle.stats().await.unwrap();
        assert_eq!(
            (s.agents[0].state.as_str(), s.agents[0].reason.as_deref()),
            ("paused", Some("7"))
        );
        let e = handle
            .command(AgentCommand::WrapCode {
                agent: "alice".into(),
                code: "5".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e, "alice has taken no call to code");
        assert!(
            handle
                .command(AgentCommand::Logout {
                    agent: "bob".into()
                })
                .await
                .is_err()
        );
        handle
            .command(AgentCommand::Logout {
                agent: "alice".into(),
            })
            .await
            .unwrap();
        assert_eq!(state(handle.stats().await.unwrap()), "logged_out");
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        store.close().await;
    }

    /// Waits for the next `agent` event: `(agent, state, reason)`.
    async fn next_state(
        rx: &mut tokio::sync::broadcast::Receiver<crate::events::Event>,
    ) -> (String, String, Option<String>) {
        let e = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an agent event")
            .unwrap();
        assert_eq!(e.kind, "agent");
        let s = |k: &str| e.data[k].as_str().map(str::to_string);
        (s("agent").unwrap(), s("state").unwrap(), s("reason"))
    }

    #[tokio::test]
    async fn reconfigure_keeps_states_and_callers_and_refuses_to_drop_a_busy_agent() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = crate::store::Store::open(dir.path(), "boot").unwrap();
        let info: Vec<callbox_hal::LineInfo> = ["desk-1", "desk-2", "desk-3"]
            .iter()
            .map(|id| callbox_hal::LineInfo {
                id: id.to_string(),
                kind: callbox_hal::LineKind::Station,
            })
            .collect();
        let cfg = |text: &str| {
            let raw: config::RawAcd = toml::from_str(text).unwrap();
            config::check(&raw, &info).unwrap()
        };
        let first = cfg(concat!(
            "[agent.alice]\nstation = \"desk-1\"\n",
            "[agent.bob]\nstation = \"desk-2\"\n",
            "[queue.sales]\nmembers = { alice = 0 }\n",
            "[queue.support]\nmembers = { bob = 0 }\n",
        ));
        let mut lines = crate::media::lines::Lines::<L>::new();
        // Nobody answers the stations' inboxes: an offer rings for ever.
        let inboxes: Vec<_> = info.iter().map(|l| lines.register(&l.id)).collect();
        let (handle, inbox) = channel::<L>(first);
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let events = Events::new();
        let mut rx = events.subscribe();
        spawn(
            &handle,
            inbox,
            std::sync::Arc::new(lines),
            store.handle(),
            Clock::new(false),
            mpsc::channel(4).0,
            events,
            shutdown.clone(),
            &tracker,
        );
        handle
            .command(AgentCommand::Login {
                agent: "alice".into(),
                station: "desk-1".into(),
            })
            .await
            .unwrap();
        assert_eq!(
            next_state(&mut rx).await,
            ("alice".into(), "available".into(), None)
        );
        let (tx, _waiting) = mpsc::channel(2);
        assert_eq!(
            handle.join("sales", "call-1", None, tx).await,
            JoinResult::Joined(1)
        );
        assert_eq!(
            next_state(&mut rx).await,
            ("alice".into(), "ringing".into(), None)
        );

        // Alice is being rung: she cannot leave the config.
        let e = handle
            .reconfigure(cfg(concat!(
                "[agent.bob]\nstation = \"desk-2\"\n",
                "[queue.sales]\nmembers = { bob = 0 }\n",
            )))
            .await
            .unwrap_err();
        assert!(e.contains("agent `alice` is being rung"), "{e}");
        // A caller waits in sales: it cannot go either.
        let e = handle
            .reconfigure(cfg(concat!(
                "[agent.alice]\nstation = \"desk-1\"\n",
                "[queue.other]\nmembers = { alice = 0 }\n",
            )))
            .await
            .unwrap_err();
        assert!(e.contains("queue `sales` has 1 caller(s)"), "{e}");
        assert_eq!(handle.config().agents.len(), 2, "nothing changed");

        // Bob (logged out) and support (empty) go, Carol comes logged in;
        // Alice keeps ringing and the caller keeps their place.
        let changes = handle
            .reconfigure(cfg(concat!(
                "[agent.alice]\nstation = \"desk-1\"\n",
                "[agent.carol]\nstation = \"desk-3\"\nlogged_in = true\n",
                "[queue.sales]\nmembers = { alice = 0, carol = 1 }\nring_timeout = \"20s\"\ntier_step = \"60s\"\n",
            )))
            .await
            .unwrap();
        assert_eq!(
            changes,
            [
                "agent bob removed",
                "queue support removed",
                "agent carol added"
            ]
        );
        assert_eq!(
            next_state(&mut rx).await,
            ("carol".into(), "available".into(), None)
        );
        let s = handle.stats().await.unwrap();
        let states: Vec<(&str, &str)> = s
            .agents
            .iter()
            .map(|a| (a.agent.as_str(), a.state.as_str()))
            .collect();
        assert_eq!(states, [("alice", "ringing"), ("carol", "available")]);
        assert_eq!((s.queues.len(), s.queues[0].waiting), (1, 1));
        assert_eq!(
            handle.config().queues[0].ring_timeout,
            Duration::from_secs(20)
        );
        assert_eq!(
            handle
                .command(AgentCommand::Pause {
                    agent: "bob".into(),
                    reason: None
                })
                .await
                .unwrap_err(),
            "no agent `bob`"
        );
        handle
            .command(AgentCommand::Pause {
                agent: "carol".into(),
                reason: Some("lunch".into()),
            })
            .await
            .unwrap();
        assert_eq!(
            next_state(&mut rx).await,
            ("carol".into(), "paused".into(), Some("lunch".into()))
        );
        // The ringing offer waits for its station: gone, it ends.
        drop(inboxes);
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        store.close().await;
    }
}
