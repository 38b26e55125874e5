//! What agents ask of the ACD, as [`AgentCommand`]s: log in and out, pause,
//! do-not-disturb, code the last call. The same commands come keyed as
//! feature codes on a station's phone (parsed here) or from headquarters.

use callbox_hal::Line;

use super::actor::Acd;
use super::agents::Status;
use super::{AcdError, AgentCommand};
use crate::store::StoreMsg;

/// An agent ringing or talking cannot log in elsewhere or out.
fn busy(s: &Status) -> bool {
    matches!(s, Status::Ringing | Status::OnCall)
}

impl<L> Acd<L>
where
    L: Line,
{
    /// Feature codes: login, logout, pause, unpause, dnd, wrap-up code.
    pub(super) async fn code(&mut self, station: &str, digits: &str) -> Result<String, AcdError> {
        let cmd = self.parse_code(station, digits)?;
        self.command(cmd).await
    }

    /// Turns keys keyed at a station into an agent command.
    fn parse_code(&self, station: &str, digits: &str) -> Result<AgentCommand, AcdError> {
        let codes = &self.cfg.codes;
        if let Some(rest) = digits.strip_prefix(codes.login.as_str()) {
            let a = if rest.is_empty() {
                self.cfg
                    .agents
                    .iter()
                    .position(|a| a.station.as_deref() == Some(station))
            } else {
                self.cfg
                    .agents
                    .iter()
                    .position(|a| a.number.as_deref() == Some(rest))
            }
            .ok_or_else(|| match rest {
                "" => AcdError::NotHomed {
                    station: station.to_string(),
                },
                number => AcdError::NoAgentNumbered {
                    number: number.to_string(),
                    station: station.to_string(),
                },
            })?;
            return Ok(AgentCommand::Login {
                agent: self.cfg.agents[a].id.clone(),
                station: station.to_string(),
            });
        }
        let a = self
            .agents
            .iter()
            .position(|a| a.station.as_deref() == Some(station) && a.status != Status::LoggedOut)
            .ok_or_else(|| AcdError::NobodyAt {
                station: station.to_string(),
            })?;
        let agent = self.cfg.agents[a].id.clone();
        if digits == codes.logout {
            return Ok(AgentCommand::Logout { agent });
        }
        if let Some(reason) = digits.strip_prefix(codes.pause.as_str()) {
            let reason = (!reason.is_empty()).then(|| reason.to_string());
            return Ok(AgentCommand::Pause { agent, reason });
        }
        if digits == codes.unpause {
            return Ok(AgentCommand::Unpause { agent });
        }
        if digits == codes.dnd {
            return Ok(AgentCommand::Dnd { agent });
        }
        if let Some(code) = digits.strip_prefix(codes.wrap.as_str()) {
            return Ok(AgentCommand::WrapCode {
                agent,
                code: code.to_string(),
            });
        }
        Err(AcdError::NotAFeatureCode {
            digits: digits.to_string(),
        })
    }

    /// Carries out an agent command, from a phone or from headquarters.
    pub(super) async fn command(&mut self, cmd: AgentCommand) -> Result<String, AcdError> {
        if let AgentCommand::Pause { agent, .. }
        | AgentCommand::Unpause { agent }
        | AgentCommand::Dnd { agent } = &cmd
        {
            let a = self.agent_named(agent)?;
            if self.agents[a].status == Status::LoggedOut {
                return Err(AcdError::LoggedOut {
                    agent: agent.clone(),
                });
            }
        }
        match cmd {
            AgentCommand::Login { agent, station } => self.login(&agent, station).await,
            AgentCommand::Logout { agent } => self.logout(&agent).await,
            AgentCommand::Pause { agent, reason } => {
                let a = self.agent_named(&agent)?;
                let reason = reason.unwrap_or_else(|| "none".into());
                self.set_status(
                    a,
                    Status::Paused(reason.clone()),
                    "PAUSE",
                    serde_json::json!({"reason": reason}),
                )
                .await;
                Ok(format!("{agent} paused ({reason})"))
            }
            AgentCommand::Unpause { agent } => {
                let a = self.agent_named(&agent)?;
                self.agents[a].missed = 0;
                self.set_status(a, Status::Available, "UNPAUSE", serde_json::json!({}))
                    .await;
                Ok(format!("{agent} available"))
            }
            AgentCommand::Dnd { agent } => {
                let a = self.agent_named(&agent)?;
                self.set_status(a, Status::Dnd, "DND", serde_json::json!({}))
                    .await;
                Ok(format!("{agent} do-not-disturb"))
            }
            AgentCommand::WrapCode { agent, code } => self.wrap_code(&agent, code).await,
        }
    }

    /// The agent with id `agent`, or why not.
    fn agent_named(&self, agent: &str) -> Result<usize, AcdError> {
        self.agent_index(agent).ok_or_else(|| AcdError::NoAgent {
            agent: agent.to_string(),
        })
    }

    /// Logs `agent` in at `station` (hot-desking), unless someone else is
    /// logged in there or the agent is busy.
    async fn login(&mut self, agent: &str, station: String) -> Result<String, AcdError> {
        let a = self.agent_named(agent)?;
        let at_station = self.agents.iter().position(|x| {
            x.station.as_deref() == Some(station.as_str()) && x.status != Status::LoggedOut
        });
        if let Some(other) = at_station
            && other != a
        {
            return Err(AcdError::StationTaken {
                other: self.cfg.agents[other].id.clone(),
                station,
            });
        }
        if busy(&self.agents[a].status) {
            return Err(AcdError::OnCall {
                agent: agent.to_string(),
            });
        }
        if !self.lines.has(&station) {
            return Err(AcdError::NoStation { station });
        }
        self.agents[a].station = Some(station.clone());
        self.set_status(
            a,
            Status::Available,
            "AGENTLOGIN",
            serde_json::json!({"station": station}),
        )
        .await;
        Ok(format!("{agent} logged in at {station}"))
    }

    /// Logs `agent` out; callers of queues left without members may have
    /// to leave.
    async fn logout(&mut self, agent: &str) -> Result<String, AcdError> {
        let a = self.agent_named(agent)?;
        if busy(&self.agents[a].status) {
            return Err(AcdError::OnCall {
                agent: agent.to_string(),
            });
        }
        let station = self.agents[a].station.take();
        self.set_status(
            a,
            Status::LoggedOut,
            "AGENTLOGOFF",
            serde_json::json!({"station": station}),
        )
        .await;
        self.leave_empty().await;
        Ok(format!("{agent} logged out"))
    }

    /// Stores a disposition code for the agent's last call.
    async fn wrap_code(&mut self, agent: &str, code: String) -> Result<String, AcdError> {
        let a = self.agent_named(agent)?;
        if code.is_empty() {
            return Err(AcdError::EmptyWrapCode);
        }
        let call = self.agents[a]
            .last_call
            .clone()
            .ok_or_else(|| AcdError::NoCallToCode {
                agent: agent.to_string(),
            })?;
        self.store
            .send(StoreMsg::WrapCode {
                call_id: call.clone(),
                code: code.clone(),
            })
            .await;
        self.log(
            Some(&call),
            None,
            Some(a),
            "WRAPCODE",
            serde_json::json!({"code": code}),
        )
        .await;
        Ok(format!("call {call} coded {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{acd_config, start, stations};
    use super::super::{AcdStats, AgentCommand};
    use crate::events::Events;

    /// The command API headquarters will use, without a phone in sight.
    #[tokio::test]
    async fn agent_commands_change_state_and_explain_refusals() {
        let lines_info = stations(&["desk-1"]);
        let cfg = acd_config(
            "[agent.alice]\nstation = \"desk-1\"\n[queue.sales]\nmembers = { alice = 0 }\n",
            &lines_info,
        );
        let acd = start(cfg, &lines_info, Events::new());
        let handle = &acd.handle;
        let state = |s: AcdStats| s.agents[0].state.clone();
        assert_eq!(state(handle.stats().await.unwrap()), "logged_out");
        let login = |station: &str| AgentCommand::Login {
            agent: "alice".into(),
            station: station.into(),
        };
        assert_eq!(
            handle
                .command(login("desk-9"))
                .await
                .unwrap_err()
                .to_string(),
            "no station `desk-9`"
        );
        handle.command(login("desk-1")).await.unwrap();
        assert_eq!(state(handle.stats().await.unwrap()), "available");
        handle
            .command(AgentCommand::Pause {
                agent: "alice".into(),
                reason: Some("7".into()),
            })
            .await
            .unwrap();
        let s = handle.stats().await.unwrap();
        assert_eq!(
            (s.agents[0].state.as_str(), s.agents[0].reason.as_deref()),
            ("paused", Some("7"))
        );
        let e = handle
            .command(AgentCommand::WrapCode {
                agent: "alice".into(),
                code: "5".into(),
            })
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(e, "alice has taken no call to code");
        assert!(
            handle
                .command(AgentCommand::Logout {
                    agent: "bob".into()
                })
                .await
                .is_err()
        );
        handle
            .command(AgentCommand::Logout {
                agent: "alice".into(),
            })
            .await
            .unwrap();
        assert_eq!(state(handle.stats().await.unwrap()), "logged_out");
        acd.stop().await;
    }
}
