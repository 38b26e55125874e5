//! Transfers between agents. Blind: the first agent is done at once and the
//! target is rung; if the target is not free or does not answer, the
//! caller is back at the head of the line. Attended: the target is held
//! (reserved) while the first agent consults, then takes the call over.

use std::time::Duration;

use callbox_hal::Line;
use tokio::time::Instant;

use super::AcdError;
use super::actor::Acd;
use super::agents::Status;

impl<L> Acd<L>
where
    L: Line,
{
    /// The first agent of a blind transfer is done with the call; the
    /// target must be free.
    pub(super) async fn transfer(
        &mut self,
        call_id: &str,
        from: &str,
        talk: Duration,
        number: &str,
    ) -> Result<(String, String), AcdError> {
        let Some(i) = self.waiters.iter().position(|w| w.call_id == call_id) else {
            return Err(AcdError::CallEnded);
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
                Err(AcdError::NotFree {
                    number: number.to_string(),
                })
            }
        }
    }

    /// Whether the target of a transfer answered: they have the call, or
    /// the caller is first in line again.
    pub(super) async fn transfer_result(&mut self, call_id: &str, to: &str, answered: bool) {
        let Some(t) = self.agent_index(to) else {
            return;
        };
        let q = self.queue_of(call_id);
        if answered {
            self.takes_transfer(t, call_id, q).await;
        } else {
            let ag = &mut self.agents[t];
            ag.since = Instant::now();
            ag.status = Status::Available;
            if let Some(w) = self.waiters.iter_mut().find(|w| w.call_id == call_id) {
                // Back at the head of the line with the original join time.
                w.connected = false;
            }
            self.log(
                Some(call_id),
                q,
                Some(t),
                "TRANSFERFAIL",
                serde_json::json!({}),
            )
            .await;
        }
    }

    /// Holds a free agent for a consultation (see [`Self::reserve_agent`]),
    /// or says why not.
    pub(super) fn reserve(&mut self, number: &str) -> Result<(String, String), AcdError> {
        self.reserve_agent(number).ok_or_else(|| AcdError::NotFree {
            number: number.to_string(),
        })
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

    /// The consultation did not lead to a transfer: the held agent is free.
    pub(super) fn unreserve(&mut self, agent: &str) {
        if let Some(t) = self.agent_index(agent)
            && self.agents[t].status == Status::Ringing
        {
            self.free(t);
        }
    }

    /// Attended transfer complete: `from` is done with the call (wrap-up),
    /// `to` has it.
    pub(super) async fn handover(&mut self, call_id: &str, from: &str, talk: Duration, to: &str) {
        let q = self.queue_of(call_id);
        if let (Some(q), Some(a)) = (q, self.agent_index(from)) {
            self.complete_part(a, q, call_id, talk);
            self.log(
                Some(call_id),
                Some(q),
                Some(a),
                "TRANSFER",
                serde_json::json!({"to": to, "attended": true, "talk_ms": talk.as_millis() as u64}),
            )
            .await;
        }
        if let Some(t) = self.agent_index(to) {
            self.takes_transfer(t, call_id, q).await;
        }
    }

    /// The queue call `call_id` waits in (or waited in, while connected).
    fn queue_of(&self, call_id: &str) -> Option<usize> {
        self.waiters
            .iter()
            .find(|w| w.call_id == call_id)
            .map(|w| w.queue)
    }

    /// Agent `t` has the transferred call now.
    async fn takes_transfer(&mut self, t: usize, call_id: &str, q: Option<usize>) {
        let ag = &mut self.agents[t];
        ag.status = Status::OnCall;
        ag.since = Instant::now();
        ag.current_call = Some(call_id.to_string());
        self.log(
            Some(call_id),
            q,
            Some(t),
            "TRANSFERCONNECT",
            serde_json::json!({}),
        )
        .await;
    }
}
