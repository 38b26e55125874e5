//! [`AcdHandle`]: what the rest of the box asks of the ACD. Each method
//! turns into one message to the actor (`msg.rs`); those that need an
//! answer carry a oneshot for it, and a stopped actor answers as
//! "unavailable" or an error rather than hanging the caller.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::msg::Msg;
use super::{
    AcdConfig, AcdError, AcdStats, AgentCommand, Completed, JoinResult, Position, WaiterMsg,
};
use crate::media::lines::Lease;

/// Sends to the ACD actor.
#[derive(Debug)]
pub struct AcdHandle<L> {
    pub(super) tx: mpsc::Sender<Msg<L>>,
    /// The config the actor runs now (it changes with [`AcdHandle::reconfigure`]).
    pub(super) config: watch::Receiver<std::sync::Arc<AcdConfig>>,
}

impl<L> Clone for AcdHandle<L> {
    fn clone(&self) -> Self {
        AcdHandle {
            tx: self.tx.clone(),
            config: self.config.clone(),
        }
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
        caller: super::CallerId,
        tx: mpsc::Sender<WaiterMsg<L>>,
    ) -> JoinResult {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Join {
            queue: queue.to_string(),
            call_id: call_id.to_string(),
            caller,
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
    pub async fn code(&self, station: &str, digits: &str) -> Result<String, AcdError> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Code {
            station: station.to_string(),
            digits: digits.to_string(),
            reply,
        };
        if self.tx.send(msg).await.is_err() {
            return Err(AcdError::Stopped);
        }
        rx.await.unwrap_or(Err(AcdError::Stopped))
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
        digits.starts_with(c.pickup.as_str())
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
    ) -> Result<String, AcdError> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Monitor {
            station: station.to_string(),
            digits: digits.to_string(),
            lease,
            reply,
        };
        if self.tx.send(msg).await.is_err() {
            return Err(AcdError::Stopped);
        }
        rx.await.unwrap_or(Err(AcdError::Stopped))
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
    ) -> Result<(String, String), AcdError> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Transfer {
            call_id: call_id.to_string(),
            from: from.to_string(),
            talk,
            number: number.to_string(),
            reply,
        };
        if self.tx.send(msg).await.is_err() {
            return Err(AcdError::Stopped);
        }
        rx.await.unwrap_or(Err(AcdError::Stopped))
    }

    /// Holds a free agent (by number) for a consultation: their phone is
    /// about to ring. Answers the agent's id and station.
    pub async fn reserve(&self, number: &str) -> Result<(String, String), AcdError> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Reserve {
            number: number.to_string(),
            reply,
        };
        if self.tx.send(msg).await.is_err() {
            return Err(AcdError::Stopped);
        }
        rx.await.unwrap_or(Err(AcdError::Stopped))
    }

    /// The phone at `station` starts (`on`) or ends a call of its own (an
    /// agent's call, a colleague's internal call): its agent is busy with
    /// it meanwhile.
    pub async fn personal(&self, station: &str, on: bool) {
        let _ = self
            .tx
            .send(Msg::Personal {
                station: station.to_string(),
                on,
            })
            .await;
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
    pub async fn command(&self, cmd: AgentCommand) -> Result<String, AcdError> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Command(cmd, reply)).await.is_err() {
            return Err(AcdError::Stopped);
        }
        rx.await.unwrap_or(Err(AcdError::Stopped))
    }

    /// Swaps queue and agent parameters while calls go on: agents keep
    /// their state and waiting callers their place wherever their names
    /// still exist. Refused, with the reasons, when the change would drop
    /// an agent who is on a call or ringing, or a queue with callers in it.
    /// Answers the agents and queues added and removed (`agent bob added`).
    pub async fn reconfigure(&self, config: AcdConfig) -> Result<Vec<String>, AcdError> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Reconfigure(std::sync::Arc::new(config), reply);
        if self.tx.send(msg).await.is_err() {
            return Err(AcdError::Stopped);
        }
        rx.await.unwrap_or(Err(AcdError::Stopped))
    }

    /// Resets the statistics; `false` once the ACD has stopped.
    pub async fn reset_stats(&self) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::ResetStats(reply)).await.is_err() {
            return false;
        }
        rx.await.is_ok()
    }

    /// Live statistics.
    pub async fn stats(&self) -> Option<AcdStats> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Msg::Stats(reply)).await.ok()?;
        rx.await.ok()
    }
}
