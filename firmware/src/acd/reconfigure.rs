//! A new ACD config while calls go on (see
//! [`AcdHandle::reconfigure`](super::AcdHandle::reconfigure)). Agents and
//! queues are matched by name; everything the actor holds by index (agent
//! state, counters, round-robin memory, waiters, offers) is renumbered.
//! Refused as a whole when it would drop an agent who is busy or a queue
//! that holds callers or rings an agent.

use std::collections::HashMap;

use callbox_hal::Line;
use tokio::time::Instant;

use super::actor::Acd;
use super::agents::{Agent, Status};
use super::log::Shown;
use super::stats::QueueCounters;
use super::{AcdConfig, AcdError, Refusal};

/// Old index to new index (`None`: removed), for agents or queues.
type IndexMap = [Option<usize>];

/// A per-queue map under the new queue numbers, without removed queues.
fn renumber<V: Copy>(m: &HashMap<usize, V>, qmap: &IndexMap) -> HashMap<usize, V> {
    m.iter()
        .filter_map(|(&q, &v)| qmap[q].map(|n| (n, v)))
        .collect()
}

impl<L> Acd<L>
where
    L: Line,
{
    /// Swaps in `new`, or refuses with every reason; answers the agents and
    /// queues removed and added.
    pub(super) async fn reconfigure(
        &mut self,
        new: std::sync::Arc<AcdConfig>,
    ) -> Result<Vec<String>, AcdError> {
        let amap: Vec<Option<usize>> = self
            .cfg
            .agents
            .iter()
            .map(|a| new.agents.iter().position(|n| n.id == a.id))
            .collect();
        let qmap: Vec<Option<usize>> = self.cfg.queues.iter().map(|q| new.queue(&q.name)).collect();
        let refused = self.refusals(&amap, &qmap);
        if !refused.is_empty() {
            return Err(AcdError::CannotChange(refused));
        }

        let mut changes = self.retire_removed(&amap, &qmap).await;
        let added = self.renumber_agents(&new, &amap, &qmap, &mut changes);
        self.renumber_queues(&new, &amap, &qmap, &mut changes);
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

    /// Why the removals in `amap` and `qmap` cannot happen now: agents
    /// ringing or on a call, queues with callers or ringing an agent.
    fn refusals(&self, amap: &IndexMap, qmap: &IndexMap) -> Vec<Refusal> {
        let mut refused = Vec::new();
        for (a, _) in amap.iter().enumerate().filter(|(_, m)| m.is_none()) {
            let ag = &self.agents[a];
            let offered = self.offers.values().any(|o| o.agent == a);
            if offered
                || ag.current_call.is_some()
                || matches!(ag.status, Status::Ringing | Status::OnCall)
            {
                refused.push(Refusal::AgentBusy {
                    agent: self.cfg.agents[a].id.clone(),
                    ringing: ag.status == Status::Ringing,
                });
            }
        }
        for (q, _) in qmap.iter().enumerate().filter(|(_, m)| m.is_none()) {
            let calls = self.waiters.iter().filter(|w| w.queue == q).count();
            if calls > 0 {
                refused.push(Refusal::QueueInUse {
                    queue: self.cfg.queues[q].name.clone(),
                    calls,
                });
            } else if self.offers.values().any(|o| o.queue == q) {
                refused.push(Refusal::QueueRinging {
                    queue: self.cfg.queues[q].name.clone(),
                });
            }
        }
        refused
    }

    /// Agents leaving the config log off first, while their index still
    /// names them. Answers the removals, agents first.
    async fn retire_removed(&mut self, amap: &IndexMap, qmap: &IndexMap) -> Vec<String> {
        let mut changes = Vec::new();
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
        changes
    }

    /// Agent state in the new config's order: kept agents keep theirs (per
    /// queue figures under the new queue numbers), new ones start as their
    /// config says. Answers the new agents who start logged in.
    fn renumber_agents(
        &mut self,
        new: &AcdConfig,
        amap: &IndexMap,
        qmap: &IndexMap,
        changes: &mut Vec<String>,
    ) -> Vec<usize> {
        let now = Instant::now();
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
                    ag.calls = renumber(&ag.calls, qmap);
                    ag.talk = renumber(&ag.talk, qmap);
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
        added
    }

    /// Queue counters, round-robin memory, waiters and offers under the new
    /// numbers; notes the queues added.
    fn renumber_queues(
        &mut self,
        new: &AcdConfig,
        amap: &IndexMap,
        qmap: &IndexMap,
        changes: &mut Vec<String>,
    ) {
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
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::super::testkit::{acd_config, start, stations};
    use super::super::{AgentCommand, JoinResult};
    use crate::events::Events;

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
        let info = stations(&["desk-1", "desk-2", "desk-3"]);
        let cfg = |text: &str| acd_config(text, &info);
        let first = cfg(concat!(
            "[agent.alice]\nstation = \"desk-1\"\n",
            "[agent.bob]\nstation = \"desk-2\"\n",
            "[queue.sales]\nmembers = { alice = 0 }\n",
            "[queue.support]\nmembers = { bob = 0 }\n",
        ));
        let events = Events::new();
        let mut rx = events.subscribe();
        // Nobody answers the stations' inboxes: an offer rings for ever.
        let mut acd = start(first, &info, events);
        let handle = acd.handle.clone();
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
            handle
                .join("sales", "call-1", crate::acd::CallerId::default(), tx)
                .await,
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
            .unwrap_err()
            .to_string();
        assert!(e.contains("agent `alice` is being rung"), "{e}");
        // A caller waits in sales: it cannot go either.
        let e = handle
            .reconfigure(cfg(concat!(
                "[agent.alice]\nstation = \"desk-1\"\n",
                "[queue.other]\nmembers = { alice = 0 }\n",
            )))
            .await
            .unwrap_err()
            .to_string();
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
                .unwrap_err()
                .to_string(),
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
        acd.stations.clear();
        acd.stop().await;
    }
}
