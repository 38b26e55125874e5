//! Offering calls to agents: choosing free agents by each queue's
//! strategy, ringing their stations from small offer tasks, and what an
//! offer's end means.
//!
//! An offer is made for a queue, not for a caller: **an answered offer goes
//! to the longest-waiting caller of the queues the agent serves**, so
//! agents answering out of order never let a later caller go first.

use std::time::Duration;

use callbox_hal::{HangupCause, Line, LineCommand};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::actor::Acd;
use super::agents::Status;
use super::msg::{Msg, OfferResult};
use super::{Strategy, WaiterMsg};
use crate::media::dial::Rang;
use crate::media::lines::{Lease, SharedLines};
use crate::store::StoreMsg;

/// An agent being rung for a queue.
#[derive(Debug)]
pub(super) struct Offer {
    pub(super) agent: usize,
    pub(super) queue: usize,
    /// The caller it was made for (ring-all: whoever is first when
    /// answered may be another), for the agent's screen.
    pub(super) call_id: String,
    pub(super) caller: super::CallerId,
    /// Stops the ringing (another agent answered, pickup, shutdown).
    pub(super) cancel: CancellationToken,
}

impl<L> Acd<L>
where
    L: Line,
{
    /// Offers waiting callers to free agents.
    pub(super) async fn dispatch(&mut self) {
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

    /// Whether agent `a`, a member at `tier`, may be offered a call that
    /// has waited `wait` (tier `n` joins after `n` times `step`).
    fn eligible(&self, a: usize, tier: u32, wait: Duration, step: Duration, now: Instant) -> bool {
        let ag = &self.agents[a];
        ag.status == Status::Available
            && ag.station.is_some()
            && ag.retry_until.is_none_or(|t| t <= now)
            && (tier == 0 || wait >= step * tier)
    }

    /// The agents to ring for queue `q` by its strategy (all free members
    /// for ring-all, else one), leaving out those already `busy`.
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

    /// Rings agent `a` for queue `q` from a task that reports back with
    /// [`Msg::Offered`]; `call_id` is the caller it was made for (logs only).
    async fn start_offer(&mut self, a: usize, q: usize, call_id: &str, caller: super::CallerId) {
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
                call_id: call_id.to_string(),
                caller: caller.clone(),
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

    /// An offer task reports how the ringing ended.
    pub(super) async fn offered(&mut self, offer: u64, result: OfferResult<L>) {
        let Some(o) = self.offers.remove(&offer) else {
            return;
        };
        let (a, q) = (o.agent, o.queue);
        match result {
            OfferResult::Answered(lease) => self.answered(a, lease).await,
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

    /// Agent `a` answered: the longest-waiting caller among the queues this
    /// agent serves gets the agent, whoever the offer was made for.
    async fn answered(&mut self, a: usize, mut lease: Lease<L>) {
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
        let waited = self.waiters[i].joined.elapsed();
        if let Some(number) = self.waiters[i].callback.clone() {
            self.dial_callback(i, a, waited, number, lease).await;
        } else if !self.hand_to_waiter(i, a, waited, lease).await {
            return;
        }
        self.trim_offers().await;
    }

    /// Gives the answered agent's station to waiter `i`; `false` (and the
    /// agent free again) when the caller's task is gone.
    async fn hand_to_waiter(
        &mut self,
        i: usize,
        a: usize,
        waited: Duration,
        lease: Lease<L>,
    ) -> bool {
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
            return false;
        }
        let wq = self.waiters[i].queue;
        let call_id = self.connect_waiter(i, a, waited, true);
        self.log(
            Some(&call_id),
            Some(wq),
            Some(a),
            "CONNECT",
            serde_json::json!({"wait_ms": waited.as_millis() as u64}),
        )
        .await;
        true
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
}

/// Rings a station until it answers, the ring timeout passes or the offer
/// is cancelled.
async fn ring<L>(
    lines: &SharedLines<L>,
    station: &str,
    caller: super::CallerId,
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
        caller_id: caller.number,
        caller_name: caller.name,
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
