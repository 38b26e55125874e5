//! The ACD actor: the state it owns, its loop, and the dispatch of each
//! message to the method of its job (in the sibling files).
//!
//! Every turn of the loop handles at most one message, then lets time act
//! (wrap-ups end, callers time out), offers waiting callers to free agents
//! and announces agent states that changed. The loop wakes by itself at the
//! next moment something is due ([`Acd::next_deadline`]).

use std::collections::HashMap;
use std::time::Duration;

use callbox_hal::Line;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::agents::{Agent, Status};
use super::log::Shown;
use super::msg::Msg;
use super::offers::Offer;
use super::stats::QueueCounters;
use super::waiters::Waiter;
use super::{AcdConfig, CallbackOrder};
use crate::clock::Clock;
use crate::events::Events;
use crate::media::lines::SharedLines;
use crate::store::StoreHandle;

/// All agent and queue state; only the actor's task touches it.
pub(super) struct Acd<L> {
    pub(super) cfg: std::sync::Arc<AcdConfig>,
    /// Publishes `cfg` to the handles.
    pub(super) config_tx: watch::Sender<std::sync::Arc<AcdConfig>>,
    pub(super) agents: Vec<Agent>,
    /// Per agent, the state last announced on `events`.
    pub(super) shown: Vec<Shown>,
    pub(super) events: Events,
    pub(super) waiters: Vec<Waiter<L>>,
    pub(super) offers: HashMap<u64, Offer>,
    pub(super) next_offer: u64,
    pub(super) next_seq: u64,
    pub(super) counters: Vec<QueueCounters>,
    /// Round-robin memory: the member index offered last, per queue.
    pub(super) rr: Vec<Option<usize>>,
    pub(super) rng: u64,
    /// Time spent in the actor's decisions.
    pub(super) sched: Duration,
    pub(super) lines: SharedLines<L>,
    pub(super) store: StoreHandle,
    pub(super) clock: Clock,
    /// Where callbacks whose turn came are sent to be dialled.
    pub(super) callbacks: mpsc::Sender<CallbackOrder<L>>,
    pub(super) self_tx: mpsc::Sender<Msg<L>>,
    pub(super) tracker: TaskTracker,
}

impl<L> Acd<L>
where
    L: Line,
{
    /// The actor as `cfg` starts it: agents in their configured state, no
    /// caller, no history.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        cfg: std::sync::Arc<AcdConfig>,
        config_tx: watch::Sender<std::sync::Arc<AcdConfig>>,
        lines: SharedLines<L>,
        store: StoreHandle,
        clock: Clock,
        callbacks: mpsc::Sender<CallbackOrder<L>>,
        events: Events,
        self_tx: mpsc::Sender<Msg<L>>,
        tracker: TaskTracker,
    ) -> Self {
        let now = Instant::now();
        let agents: Vec<Agent> = cfg.agents.iter().map(|a| Agent::new(a, now)).collect();
        Acd {
            // Agents logged in by the config show as a change from logged out.
            shown: vec![Shown::logged_out(); agents.len()],
            events,
            config_tx,
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
            self_tx,
            tracker,
        }
    }

    /// Runs until `shutdown` or until every handle is gone; then stops the
    /// offers still ringing and reports the statistics.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Msg<L>>, shutdown: CancellationToken) {
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
        self.report_at_stop().await;
    }

    /// Hands a message to the method of its job.
    async fn handle(&mut self, m: Msg<L>) {
        match m {
            Msg::Join {
                queue,
                call_id,
                caller,
                tx,
                reply,
            } => {
                let r = self.join(&queue, &call_id, caller, tx).await;
                let _ = reply.send(r);
            }
            Msg::Leave { call_id } => self.leave(&call_id).await,
            Msg::Position { call_id, reply } => {
                let _ = reply.send(self.position(&call_id));
            }
            Msg::Offered { offer, result } => self.offered(offer, result).await,
            Msg::Bounced { call_id, agent } => self.bounced(&call_id, &agent).await,
            Msg::Done {
                call_id,
                agent,
                talk,
                by,
            } => self.done(&call_id, &agent, talk, by).await,
            Msg::Code {
                station,
                digits,
                reply,
            } => {
                let r = self.code(&station, &digits).await;
                let _ = reply.send(r);
            }
            Msg::Command(cmd, reply) => {
                let r = self.command(cmd).await;
                let _ = reply.send(r);
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
            Msg::TransferResult {
                call_id,
                to,
                answered,
            } => self.transfer_result(&call_id, &to, answered).await,
            Msg::Reserve { number, reply } => {
                let _ = reply.send(self.reserve(&number));
            }
            Msg::Unreserve { agent } => self.unreserve(&agent),
            Msg::Personal { station, on } => self.personal(&station, on).await,
            Msg::Handover {
                call_id,
                from,
                talk,
                to,
            } => self.handover(&call_id, &from, talk, &to).await,
            Msg::Callback {
                call_id,
                number,
                reply,
            } => {
                let ok = self.callback_request(&call_id, number).await;
                let _ = reply.send(ok);
            }
            Msg::CallbackDone {
                call_id,
                agent,
                talk,
            } => self.callback_done(&call_id, &agent, talk).await,
            Msg::Reconfigure(cfg, reply) => {
                let r = self.reconfigure(cfg).await;
                let _ = reply.send(r);
            }
            Msg::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Msg::ResetStats(reply) => {
                self.reset_stats();
                let _ = reply.send(());
            }
        }
    }

    /// Wrap-ups that ended, callers past `max_wait`.
    async fn tick(&mut self) {
        let now = Instant::now();
        self.end_wrap_ups(now);
        self.expire_waits(now).await;
    }

    /// The next moment something is due without a message: a wrap-up or a
    /// retry pause ends, a caller reaches `max_wait` or a further tier of
    /// agents.
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
}
