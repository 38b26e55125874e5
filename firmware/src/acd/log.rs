//! What the ACD tells the outside: the queue log (one stored row per queue
//! event, named as call-center reports know them: `ENTERQUEUE`, `CONNECT`,
//! `ABANDON`…) and an `agent` event whenever an agent's shown state changes.

use callbox_hal::Line;

use super::actor::Acd;
use super::agents::{Agent, Status};
use crate::store::StoreMsg;

/// What an agent looked like in the last `agent` event sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Shown {
    state: &'static str,
    reason: Option<String>,
    station: Option<String>,
}

impl Shown {
    /// How an agent the outside has not heard of yet looks.
    pub(super) fn logged_out() -> Shown {
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

impl<L> Acd<L>
where
    L: Line,
{
    /// Stores one queue event.
    pub(super) async fn log(
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

    /// Sends an `agent` event for every agent whose state, pause reason or
    /// station changed since the last one. Run after every message the
    /// actor handles, so each change is announced however it came about
    /// (a code, a command, an offer, the end of wrap-up).
    pub(super) fn announce_states(&mut self) {
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
}
