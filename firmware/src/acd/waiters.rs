//! The line of callers: joining and leaving a queue, the service order,
//! a caller's place in it, and the ways out without an agent (`max_wait`,
//! every member logged out).
//!
//! A waiter stays in the list while connected (marked `connected`) so the
//! call can still be found for a bounce, a transfer or a supervisor; only
//! unconnected waiters are in line.

use std::time::Duration;

use callbox_hal::Line;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::actor::Acd;
use super::{ExitReason, JoinResult, Position, WaiterMsg};

/// A caller in a queue (or connected from it).
#[derive(Debug)]
pub(super) struct Waiter<L> {
    pub(super) call_id: String,
    pub(super) queue: usize,
    pub(super) joined: Instant,
    /// Join order, for callers who joined at the same instant.
    pub(super) seq: u64,
    pub(super) tx: mpsc::Sender<WaiterMsg<L>>,
    pub(super) connected: bool,
    /// A virtual waiter: the box calls this number back when it is served.
    pub(super) callback: Option<String>,
    /// Who is calling, shown on the agent's phone.
    pub(super) caller: super::CallerId,
    /// Wait counted when the caller was connected (taken back on a bounce).
    pub(super) counted_wait: Option<Duration>,
}

impl<L> Acd<L>
where
    L: Line,
{
    /// A caller asks to join the queue named `queue`: in line, or turned
    /// away (full, nobody logged in, no such queue).
    pub(super) async fn join(
        &mut self,
        queue: &str,
        call_id: &str,
        caller: super::CallerId,
        tx: mpsc::Sender<WaiterMsg<L>>,
    ) -> JoinResult {
        let Some(queue) = self.cfg.queue(queue) else {
            return JoinResult::Unavailable;
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
                call_id: call_id.to_string(),
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
            Some(call_id),
            Some(queue),
            None,
            event,
            serde_json::json!({"caller": caller.number}),
        )
        .await;
        result
    }

    /// The caller hung up before an agent took the call.
    pub(super) async fn leave(&mut self, call_id: &str) {
        if let Some(i) = self
            .waiters
            .iter()
            .position(|w| w.call_id == call_id && !w.connected)
        {
            let w = self.waiters.remove(i);
            self.counters[w.queue].abandoned += 1;
            let waited = w.joined.elapsed().as_millis() as u64;
            self.log(
                Some(call_id),
                Some(w.queue),
                None,
                "ABANDON",
                serde_json::json!({"wait_ms": waited}),
            )
            .await;
        }
    }

    /// Where a waiting caller stands in their queue's line, and the wait
    /// to expect.
    pub(super) fn position(&self, call_id: &str) -> Option<Position> {
        let order = self.order();
        let me = order
            .iter()
            .position(|&i| self.waiters[i].call_id == call_id);
        me.map(|k| {
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
        })
    }

    /// Waiting callers in service order: queue priority, then join time.
    pub(super) fn order(&self) -> Vec<usize> {
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

    /// Callers in line in queue `q`.
    pub(super) fn waiting_in(&self, q: usize) -> usize {
        self.waiters
            .iter()
            .filter(|w| w.queue == q && !w.connected)
            .count()
    }

    /// Callers past their queue's `max_wait` by `now` leave it.
    pub(super) async fn expire_waits(&mut self, now: Instant) {
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

    /// With `leave_empty`, callers leave a queue whose members all logged out.
    pub(super) async fn leave_empty(&mut self) {
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
}
