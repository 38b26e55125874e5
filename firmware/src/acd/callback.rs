//! Callbacks: a waiting caller hangs up and keeps their place; when it comes
//! up, the agent who answered is put on the line and a
//! [`CallbackOrder`] goes to the calls layer, which dials the caller and
//! reports the end with [`AcdHandle::callback_done`](super::AcdHandle::callback_done).

use std::time::Duration;

use callbox_hal::{HangupCause, Line, LineCommand};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::CallbackOrder;
use super::actor::Acd;
use super::msg::Msg;
use crate::media::lines::Lease;

/// How long a called-back caller's phone rings.
const CALLBACK_RING: Duration = Duration::from_secs(30);

impl<L> Acd<L>
where
    L: Line,
{
    /// Turns a waiting caller into a callback to `number`; `false` if the
    /// caller is no longer waiting.
    pub(super) async fn callback_request(&mut self, call_id: &str, number: String) -> bool {
        let w = self
            .waiters
            .iter_mut()
            .find(|w| w.call_id == call_id && !w.connected);
        match w {
            Some(w) => {
                w.callback = Some(number.clone());
                let q = w.queue;
                self.log(
                    Some(call_id),
                    Some(q),
                    None,
                    "CALLBACKREQUEST",
                    serde_json::json!({"number": number}),
                )
                .await;
                true
            }
            None => false,
        }
    }

    /// The place of waiter `i`, who asked to be called back at `number`,
    /// came up and agent `a` answered: the agent is on the line; now the
    /// caller is dialled.
    pub(super) async fn dial_callback(
        &mut self,
        i: usize,
        a: usize,
        waited: Duration,
        number: String,
        lease: Lease<L>,
    ) {
        let wq = self.waiters[i].queue;
        // A callback's wait is not a caller on the line: it stays out of
        // the service level.
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
            self.callback_not_placed(order).await;
        }
    }

    /// Nobody places calls (the box is stopping): the agent is let go and
    /// the callback counts as not answered.
    async fn callback_not_placed(&mut self, order: CallbackOrder<L>) {
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
        // Through the inbox like any callback's end, from a task: the actor
        // must not wait on its own inbox.
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

    /// A callback ended: `talk` is how long the agent and the caller
    /// talked, `None` when the caller was not reached.
    pub(super) async fn callback_done(
        &mut self,
        call_id: &str,
        agent: &str,
        talk: Option<Duration>,
    ) {
        let Some(i) = self.waiters.iter().position(|w| w.call_id == call_id) else {
            return;
        };
        let Some(agent) = self.agent_index(agent) else {
            return;
        };
        let w = self.waiters.remove(i);
        let q = w.queue;
        match talk {
            Some(talk) => {
                self.complete_part(agent, q, call_id, talk);
                self.log(
                    Some(call_id),
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
                    Some(call_id),
                    Some(q),
                    Some(agent),
                    "CALLBACKFAILED",
                    serde_json::json!({}),
                )
                .await;
            }
        }
    }
}
