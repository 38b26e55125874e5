//! The ACD: agents, queues, and who gets which call when.
//!
//! One actor owns all agent and queue state; everything else talks to it
//! with messages ([`AcdHandle`]). Callers join a queue from the IVR and
//! wait on their own call task. The actor offers calls to agents by
//! ringing their stations from small offer tasks; **an answered offer is
//! given to the longest-waiting caller of the queues that agent serves**
//! (highest queue priority first), not to whoever triggered the offer. So
//! no caller is ever connected before one who joined the same queue
//! earlier, even when agents answer in a different order than they were
//! rung, and a caller who hangs up while an agent rings costs nothing.
//!
//! Agent state is global: wrap-up after a call from any queue holds the
//! agent out of every queue. An agent who answers and hangs up at once
//! (before any conversation) counts as a missed offer and the caller keeps
//! their place at the head of the queue.
//!
//! The files, one job each: this one holds what callers see (the types
//! they send and receive, [`channel`] and [`spawn`]); [`AcdHandle`] the
//! requests (`handle.rs`) that become the actor's messages (`msg.rs`);
//! the actor's loop and dispatch (`actor.rs`) hands each message to the
//! file of its job: the queue line (`waiters.rs`), offering calls to
//! agents (`offers.rs`), a connected call (`connected.rs`), agent state
//! (`agents.rs`), agent commands and feature codes (`commands.rs`),
//! supervisors and pickup (`monitor.rs`), transfers (`transfer.rs`),
//! callbacks (`callback.rs`), a new config (`reconfigure.rs`), statistics
//! (`stats.rs`) and what is told outside (`log.rs`). Its refusals are
//! [`AcdError`]s (`error.rs`).

pub mod config;

mod actor;
mod agents;
mod callback;
mod commands;
mod connected;
mod error;
mod handle;
mod log;
mod monitor;
mod msg;
mod offers;
mod reconfigure;
mod stats;
#[cfg(test)]
mod testkit;
mod transfer;
mod waiters;

use std::time::Duration;

use callbox_hal::Line;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::media::MonitorMode;
pub use agents::Status;
pub use config::{AcdConfig, ParkCfg, Strategy};
pub use error::{AcdError, Refusal};
pub use handle::AcdHandle;
pub use stats::{AcdStats, AgentCall, AgentStats, LiveCall, QueueStats};

use crate::clock::Clock;
use crate::events::Events;
use crate::media::lines::{Lease, SharedLines};
use crate::media::{AsJoin, Join};
use crate::store::StoreHandle;
use actor::Acd;
use msg::Msg;

/// Who is calling, as an agent's phone shows it when it rings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerId {
    /// Calling number.
    pub number: Option<String>,
    /// Their name (from the site's contacts).
    pub name: Option<String>,
}

/// What a waiting caller is told.
#[derive(Debug)]
pub enum WaiterMsg<L> {
    /// An agent answered: bridge to this station.
    Connect {
        /// Agent id.
        agent: String,
        /// The agent's station, rung and answered.
        lease: Lease<L>,
    },
    /// Leave the queue (overflow).
    Exit(ExitReason),
    /// A supervisor joins the connected call.
    Monitor {
        /// Listen, whisper or barge.
        mode: MonitorMode,
        /// The supervisor's station, off-hook.
        lease: Lease<L>,
    },
}

impl<L> AsJoin<L> for WaiterMsg<L> {
    fn into_join(self) -> Option<Join<L>> {
        match self {
            WaiterMsg::Monitor { mode, lease } => Some(Join { mode, lease }),
            _ => None,
        }
    }
}

/// Why a caller leaves a queue without an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// Waited `max_wait`.
    Timeout,
    /// Every member logged out (`leave_empty`).
    Empty,
}

impl ExitReason {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Timeout => "timeout",
            ExitReason::Empty => "empty",
        }
    }
}

/// Answer to a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinResult {
    /// In the queue at this position (1 = next).
    Joined(usize),
    /// `max_length` reached.
    Full,
    /// Nobody logged in and `join_empty = false`.
    Empty,
    /// No such queue, or the ACD has stopped.
    Unavailable,
}

/// How a connected call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed {
    /// The caller hung up.
    ByCaller,
    /// The agent hung up.
    ByAgent,
    /// The daemon stopped or a line failed.
    BySystem,
}

/// Where a waiting caller stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Callers to be served first (same queue or higher-priority queues
    /// sharing its agents are not counted: only this queue's line).
    pub ahead: usize,
    /// Expected wait from the queue's average handle time and the agents
    /// logged in; `None` before the queue has any history.
    pub expected: Option<Duration>,
}

/// What an agent (or headquarters on their behalf) asks of the ACD: the
/// same commands whether keyed as feature codes on a phone or sent over
/// the fleet link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCommand {
    /// Log in at a station (hot-desking).
    Login {
        /// Agent id.
        agent: String,
        /// Station line id.
        station: String,
    },
    /// Log out.
    Logout {
        /// Agent id.
        agent: String,
    },
    /// Pause with an optional reason code.
    Pause {
        /// Agent id.
        agent: String,
        /// Reason code.
        reason: Option<String>,
    },
    /// Back from a pause or do-not-disturb.
    Unpause {
        /// Agent id.
        agent: String,
    },
    /// Do not disturb.
    Dnd {
        /// Agent id.
        agent: String,
    },
    /// Disposition code for the agent's last call.
    WrapCode {
        /// Agent id.
        agent: String,
        /// The code.
        code: String,
    },
}

/// A callback whose turn came: the agent is on the line; the calls layer
/// dials the caller, bridges them and reports with
/// [`AcdHandle::callback_done`].
#[derive(Debug)]
pub struct CallbackOrder<L> {
    /// The call that asked to be called back.
    pub orig: String,
    /// The agent who takes it.
    pub agent_id: String,
    /// The queue it waited in.
    pub queue: String,
    /// The number to call.
    pub number: String,
    /// Trunks to dial on, in order.
    pub trunks: Vec<String>,
    /// How long the caller's phone rings.
    pub ring_timeout: Duration,
    /// The agent's station, answered.
    pub agent: Lease<L>,
}

/// Creates the handle; the actor starts with [`spawn`] once lines exist.
pub fn channel<L>(config: AcdConfig) -> (AcdHandle<L>, AcdInbox<L>) {
    let (tx, rx) = mpsc::channel(256);
    let (config_tx, config_rx) = watch::channel(std::sync::Arc::new(config));
    (
        AcdHandle {
            tx,
            config: config_rx,
        },
        AcdInbox { rx, config_tx },
    )
}

/// The actor's end of the channel.
#[derive(Debug)]
pub struct AcdInbox<L> {
    rx: mpsc::Receiver<Msg<L>>,
    config_tx: watch::Sender<std::sync::Arc<AcdConfig>>,
}

/// Starts the actor.
#[allow(clippy::too_many_arguments)]
pub fn spawn<L>(
    handle: &AcdHandle<L>,
    inbox: AcdInbox<L>,
    lines: SharedLines<L>,
    store: StoreHandle,
    clock: Clock,
    callbacks: mpsc::Sender<CallbackOrder<L>>,
    events: Events,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) where
    L: Line,
{
    let acd = Acd::new(
        handle.config(),
        inbox.config_tx,
        lines,
        store,
        clock,
        callbacks,
        events,
        handle.tx.clone(),
        tracker.clone(),
    );
    tracker.spawn(acd.run(inbox.rx, shutdown));
}
