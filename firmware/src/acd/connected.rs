//! A caller with an agent: connecting them (what it counts), the agent who
//! hangs up before a word (a bounce: the caller is first in line again),
//! and the end of the call or of an agent's part in it (talk time, wrap-up).

use std::time::Duration;

use callbox_hal::Line;
use tokio::time::Instant;

use super::Completed;
use super::actor::Acd;
use super::agents::Status;

impl<L> Acd<L>
where
    L: Line,
{
    /// Waiter `i` is connected to agent `a` after `waited`: counts the
    /// answer (and the service level with `in_service_level`) and puts the
    /// agent on the call. Returns the call id.
    pub(super) fn connect_waiter(
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

    /// The agent hung up before a word was said: the answer is taken back
    /// and the caller waits on with their original join time.
    pub(super) async fn bounced(&mut self, call_id: &str, agent: &str) {
        let Some(a) = self.agent_index(agent) else {
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
                Some(call_id),
                Some(q),
                Some(a),
                "BOUNCE",
                serde_json::json!({}),
            )
            .await;
        }
    }

    /// A connected call ended.
    pub(super) async fn done(&mut self, call_id: &str, agent: &str, talk: Duration, by: Completed) {
        let Some(a) = self.agent_index(agent) else {
            return;
        };
        let Some(i) = self.waiters.iter().position(|w| w.call_id == call_id) else {
            return;
        };
        let q = self.waiters.remove(i).queue;
        self.complete_part(a, q, call_id, talk);
        let event = match by {
            Completed::ByCaller => "COMPLETECALLER",
            Completed::ByAgent => "COMPLETEAGENT",
            Completed::BySystem => "COMPLETESYSTEM",
        };
        self.log(
            Some(call_id),
            Some(q),
            Some(a),
            event,
            serde_json::json!({"talk_ms": talk.as_millis() as u64}),
        )
        .await;
    }

    /// An agent's part of a call ends (transfers): talk time, wrap-up in
    /// every queue, the call to code.
    pub(super) fn complete_part(&mut self, a: usize, q: usize, call_id: &str, talk: Duration) {
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
}
