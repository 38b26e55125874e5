//! Commands that act on the running daemon without changing its config:
//! an agent's state through the ACD, and originated calls.

use std::time::Duration;

use callbox_hal::Line;
use serde_json::{Value, json};

use super::args::{ArgError, Args, clip};
use super::error::CommandError;
use super::reconfigure::Reconfigure;
use crate::acd::{AcdError, AgentCommand, MonitorMode};
use crate::calls::outbound::Originate;

/// How long an originated call rings (as an `[[outbound]]` job by default).
const ORIGINATE_RING: Duration = Duration::from_secs(30);

impl<L> Reconfigure<L>
where
    L: Line,
{
    pub(super) async fn agent(&self, args: &Args<'_>) -> Result<Value, CommandError> {
        let action = args.str("action")?;
        let agent = args.str("agent")?.to_string();
        let station = args.str_opt("station")?;
        let reason = args.str_opt("reason")?;
        let daemon = &self.daemon;
        let acd = daemon.sw.acd.as_ref().ok_or(CommandError::NoAcd)?;
        let config = acd.config();
        let Some(cfg) = config.agents.iter().find(|a| a.id == agent) else {
            return Err(CommandError::NoAgent {
                agent: clip(&agent),
            });
        };
        let cmd = match action {
            "login" => {
                let station = match station {
                    Some(s) => s.to_string(),
                    None => cfg
                        .station
                        .clone()
                        .ok_or_else(|| CommandError::NoHomeStation {
                            agent: agent.clone(),
                        })?,
                };
                AgentCommand::Login {
                    agent: agent.clone(),
                    station,
                }
            }
            "logout" => AgentCommand::Logout {
                agent: agent.clone(),
            },
            "pause" => AgentCommand::Pause {
                agent: agent.clone(),
                reason: reason.map(str::to_string),
            },
            "unpause" => AgentCommand::Unpause {
                agent: agent.clone(),
            },
            "dnd" => AgentCommand::Dnd {
                agent: agent.clone(),
            },
            other => {
                return Err(CommandError::BadAction {
                    action: clip(other),
                });
            }
        };
        let message = acd.command(cmd).await?;
        let stats = acd.stats().await.ok_or(AcdError::Stopped)?;
        let now = stats
            .agents
            .iter()
            .find(|a| a.agent == agent)
            .ok_or_else(|| CommandError::NoAgent {
                agent: agent.clone(),
            })?;
        Ok(json!({
            "agent": agent,
            "state": now.state,
            "station": now.station,
            "reason": now.reason,
            "message": message,
        }))
    }

    /// `acd.monitor`: the supervisor's phone at `station` rings, then
    /// joins `agent`'s call to `listen`, `whisper` or `barge`.
    pub(super) async fn monitor(&self, args: &Args<'_>) -> Result<Value, CommandError> {
        let station = args.str("station")?;
        let agent = args.str("agent")?;
        let mode = match args.str("mode")? {
            "listen" => MonitorMode::Listen,
            "whisper" => MonitorMode::Whisper,
            "barge" => MonitorMode::Barge,
            _ => return Err(ArgError::wrong("mode", "`listen`, `whisper` or `barge`").into()),
        };
        let daemon = &self.daemon;
        crate::calls::station::supervise(
            station,
            agent,
            mode,
            daemon.ctx.clone(),
            daemon.sw.clone(),
            &daemon.jobs,
        )
        .await?;
        tracing::info!(%station, agent, ?mode, "the supervisor's phone rings to join a call");
        Ok(json!({"ringing": station, "agent": agent}))
    }

    /// `originate`: an outbound IVR call (`node`), or a click-to-call for
    /// an agent (`agent`: their phone rings, then the number is dialled).
    pub(super) async fn originate(&self, args: &Args<'_>) -> Result<Value, CommandError> {
        if let Some(agent) = args.str_opt("agent")? {
            let number = args.str("number")?;
            if number.is_empty() || number.len() > 32 || !number.chars().all(|c| c.is_ascii_digit())
            {
                return Err(CommandError::NotDiallable {
                    number: clip(number),
                });
            }
            let daemon = &self.daemon;
            let id = crate::calls::station::click_to_call(
                agent,
                number,
                daemon.ctx.clone(),
                daemon.sw.clone(),
                &daemon.jobs,
            )
            .await?;
            tracing::info!(call = %id, %number, agent, "click-to-call placed by command");
            return Ok(json!({"call_id": id}));
        }
        let node = args.str("node")?;
        let number = args.str("number")?;
        let vars = match args.object_opt("vars")? {
            None => Vec::new(),
            Some(m) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(ArgError::wrong(format!("vars.{}", clip(k)), "a string")),
                })
                .collect::<Result<_, _>>()?,
        };
        if number.is_empty()
            || number.len() > 32
            || !number.chars().all(callbox_hal::dsp::dtmf::is_dtmf_digit)
        {
            return Err(CommandError::NotDiallable {
                number: clip(number),
            });
        }
        let daemon = &self.daemon;
        let ctx = daemon.ctx.for_new_call();
        let ivr = ctx.ivr.clone().ok_or(CommandError::NoIvr)?;
        let start = ivr
            .nodes
            .iter()
            .position(|n| n.name == node)
            .ok_or_else(|| CommandError::NoNode { node: clip(node) })?;
        let call = Originate {
            number: number.to_string(),
            trunks: daemon.trunks.clone(),
            start,
            vars,
            ring_timeout: ORIGINATE_RING,
        };
        let sw = daemon.sw.clone();
        let id = crate::calls::outbound::originate(call, ivr, ctx, sw, &daemon.jobs).await?;
        tracing::info!(call = %id, %number, node, "call originated by headquarters");
        Ok(json!({"call_id": id}))
    }
}
