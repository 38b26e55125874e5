//! Codes that bring a station into a queue call: a supervisor listens,
//! whispers or barges in on an agent's call, and an agent picks up a queue
//! call that is ringing someone else.

use callbox_hal::Line;

use super::actor::Acd;
use super::agents::Status;
use super::{AcdError, MonitorMode, WaiterMsg};
use crate::media::lines::Lease;

impl<L> Acd<L>
where
    L: Line,
{
    /// Hands a supervisor's station to the call of the agent named by the
    /// code. On refusal the lease is dropped and the station goes back.
    pub(super) async fn monitor(
        &mut self,
        station: &str,
        digits: &str,
        lease: Lease<L>,
    ) -> Result<String, AcdError> {
        if let Some(target) = digits.strip_prefix(self.cfg.codes.pickup.as_str()) {
            return self.pickup(station, target, lease).await;
        }
        let codes = &self.cfg.codes;
        let (mode, number) = [
            (MonitorMode::Listen, &codes.listen),
            (MonitorMode::Whisper, &codes.whisper),
            (MonitorMode::Barge, &codes.barge),
        ]
        .into_iter()
        .find_map(|(m, c)| digits.strip_prefix(c.as_str()).map(|n| (m, n.to_string())))
        .ok_or_else(|| AcdError::NotASupervisorCode {
            digits: digits.to_string(),
        })?;
        if !self.cfg.supervisors.iter().any(|s| s == station) {
            return Err(AcdError::NotASupervisor {
                station: station.to_string(),
            });
        }
        let a = self
            .cfg
            .agents
            .iter()
            .position(|ag| ag.number.as_deref() == Some(number.as_str()))
            .ok_or_else(|| AcdError::NoAgentWithNumber {
                number: number.clone(),
            })?;
        let call = self.agents[a]
            .current_call
            .clone()
            .ok_or_else(|| AcdError::NotOnCall {
                agent: self.cfg.agents[a].id.clone(),
            })?;
        let w = self
            .waiters
            .iter()
            .find(|w| w.call_id == call && w.connected)
            .ok_or(AcdError::CallEnded)?;
        let q = w.queue;
        w.tx.send(WaiterMsg::Monitor { mode, lease })
            .await
            .map_err(|_| AcdError::CallEnded)?;
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

    /// An agent picks up, at their own (off-hook) phone, the queue call that
    /// has waited longest among those now ringing an agent, or (directed:
    /// `target` is an agent number) the one ringing that agent's phone.
    async fn pickup(
        &mut self,
        station: &str,
        target: &str,
        lease: Lease<L>,
    ) -> Result<String, AcdError> {
        let a = self
            .agents
            .iter()
            .position(|ag| ag.station.as_deref() == Some(station) && ag.status != Status::LoggedOut)
            .ok_or_else(|| AcdError::NobodyAt {
                station: station.to_string(),
            })?;
        // The offers that may be taken: every one, or the target's.
        let directed = if target.is_empty() {
            None
        } else {
            let t = self
                .cfg
                .agents
                .iter()
                .position(|ag| ag.number.as_deref() == Some(target))
                .ok_or_else(|| AcdError::NoAgentWithNumber {
                    number: target.to_string(),
                })?;
            Some(t)
        };
        let ringing: Vec<usize> = self
            .offers
            .values()
            .filter(|o| directed.is_none_or(|t| o.agent == t))
            .map(|o| o.queue)
            .collect();
        if ringing.is_empty()
            && let Some(t) = directed
        {
            return Err(AcdError::NotRinging {
                number: self.cfg.agents[t].number.clone().unwrap_or_default(),
            });
        }
        let i = self
            .order()
            .into_iter()
            .find(|&i| {
                ringing.contains(&self.waiters[i].queue) && self.waiters[i].callback.is_none()
            })
            .ok_or(AcdError::NothingRinging)?;
        let q = self.waiters[i].queue;
        // The ringing offer for that queue stops; its agent is free again.
        if let Some(id) = self
            .offers
            .iter()
            .filter(|(_, o)| o.queue == q && directed.is_none_or(|t| o.agent == t))
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
            return Err(AcdError::CallEnded);
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
}
