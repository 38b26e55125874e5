//! A supervisor joins an agent's call from the web console (or a fleet
//! command): the supervisor's own phone rings first, showing the agent,
//! and once answered it joins the call to listen, whisper or barge in,
//! exactly as if the supervisor had keyed the monitor code on it (the
//! ACD checks and logs it the same way).

use std::time::Duration;

use callbox_hal::{HangupCause, Line, LineCommand};
use tracing::Instrument;

use crate::acd::MonitorMode;
use crate::calls::{CallContext, Switch};
use crate::media::dial::{Rang, release, ring_station};

/// How long the supervisor's phone rings.
const RING: Duration = Duration::from_secs(30);

/// Why a supervisor's join was refused before their phone rang.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// No `[acd]`.
    #[error("the site has no agents ([acd])")]
    NoAcd,
    /// Unknown agent.
    #[error("no agent `{0}`")]
    NoAgent(String),
    /// The monitor codes name agents by number.
    #[error("agent `{0}` has no `number` to join their calls by")]
    NoNumber(String),
    /// The phone is not among `[acd] supervisors`.
    #[error("`{0}` is not a supervisor's phone ([acd] supervisors)")]
    NotASupervisor(String),
    /// Nothing to join.
    #[error("agent `{0}` is not talking on a call")]
    NotOnCall(String),
    /// The supervisor's phone is in use.
    #[error("the phone at {0} is in use")]
    Busy(String),
}

/// Rings the supervisor's phone at `station` and, once answered, joins
/// `agent`'s call with it in `mode`. Answers once the phone rings; the
/// rest runs on `tracker`, and the phone comes back to its watcher when
/// the supervisor hangs up or the call ends.
pub async fn supervise<L>(
    station: &str,
    agent: &str,
    mode: MonitorMode,
    ctx: CallContext,
    sw: Switch<L>,
    tracker: &tokio_util::task::TaskTracker,
) -> Result<(), SuperviseError>
where
    L: Line,
{
    let acd = sw.acd.clone().ok_or(SuperviseError::NoAcd)?;
    let config = acd.config();
    if !config.supervisors.iter().any(|s| s == station) {
        return Err(SuperviseError::NotASupervisor(station.to_string()));
    }
    let number = config
        .agents
        .iter()
        .find(|a| a.id == agent)
        .ok_or_else(|| SuperviseError::NoAgent(agent.to_string()))?
        .number
        .clone()
        .ok_or_else(|| SuperviseError::NoNumber(agent.to_string()))?;
    let talking = acd
        .stats()
        .await
        .and_then(|s| s.agents.into_iter().find(|a| a.agent == agent))
        .is_some_and(|a| a.state == "on_call");
    if !talking {
        return Err(SuperviseError::NotOnCall(agent.to_string()));
    }
    let mut lease = sw
        .lines
        .seize(station)
        .await
        .ok_or_else(|| SuperviseError::Busy(station.to_string()))?;
    let code = match mode {
        MonitorMode::Listen => &config.codes.listen,
        MonitorMode::Whisper => &config.codes.whisper,
        MonitorMode::Barge => &config.codes.barge,
    };
    let digits = format!("{code}{number}");
    let what = format!("{mode:?}").to_lowercase();
    let span = tracing::info_span!("supervise", line = %station, %agent, mode = %what);
    let (station, agent) = (station.to_string(), agent.to_string());
    tracker.spawn(
        async move {
            acd.personal(&station, true).await;
            let cmd = LineCommand::Ring {
                caller_id: Some(number),
                caller_name: Some(format!("{what} {agent}")),
            };
            let rang =
                ring_station(&mut lease.port().line, cmd, RING, ctx.shutdown.cancelled()).await;
            if let Rang::Answered = rang {
                // The call takes the phone; it is back here when the
                // supervisor leaves (or at once when the ACD refuses).
                let (joined, back) = lease.lend_on();
                let r = acd.monitor(&station, &digits, joined).await;
                match back.await {
                    Ok((port, _)) => lease.restore(port),
                    Err(_) => {
                        // Cannot happen: a lease always sends its port back.
                        tracing::error!(
                            "the supervisor's phone never came back; line out of service"
                        );
                        acd.personal(&station, false).await;
                        return;
                    }
                }
                match r {
                    Ok(done) => tracing::info!("{done}; the phone is back"),
                    Err(why) => tracing::warn!("the supervisor could not join: {why}"),
                }
                // Hung up whatever happened: the call may have refused the
                // phone after the ACD said yes (another supervisor was
                // first, the call ended meanwhile); once the phone has
                // left a call this is a no-op for it.
                release(lease.port(), HangupCause::Normal).await;
            } else {
                tracing::info!(?rang, "the supervisor did not answer");
                release(lease.port(), HangupCause::NoAnswer).await;
            }
            drop(lease);
            acd.personal(&station, false).await;
        }
        .instrument(span),
    );
    Ok(())
}
