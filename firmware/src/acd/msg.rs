//! The actor's inbox: one message per request from an [`AcdHandle`](super::AcdHandle),
//! plus what the actor's own tasks report back (an offer rang out, a
//! callback could not be placed).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{
    AcdConfig, AcdError, AcdStats, AgentCommand, Completed, JoinResult, Position, WaiterMsg,
};
use crate::media::lines::Lease;

/// How ringing an agent for an offer ended.
pub(super) enum OfferResult<L> {
    Answered(Lease<L>),
    NoAnswer,
    Busy,
    Cancelled,
}

/// A request to the actor, one per [`AcdHandle`](super::AcdHandle) method,
/// and the reports of the tasks it starts (`Offered`).
pub(super) enum Msg<L> {
    Join {
        queue: String,
        call_id: String,
        caller: super::CallerId,
        tx: mpsc::Sender<WaiterMsg<L>>,
        reply: oneshot::Sender<JoinResult>,
    },
    Leave {
        call_id: String,
    },
    Offered {
        offer: u64,
        result: OfferResult<L>,
    },
    Bounced {
        call_id: String,
        agent: String,
    },
    Done {
        call_id: String,
        agent: String,
        talk: Duration,
        by: Completed,
    },
    Code {
        station: String,
        digits: String,
        reply: oneshot::Sender<Result<String, AcdError>>,
    },
    Stats(oneshot::Sender<AcdStats>),
    /// Counters back to zero (a supervisor's "reset statistics").
    ResetStats(oneshot::Sender<()>),
    Command(AgentCommand, oneshot::Sender<Result<String, AcdError>>),
    Position {
        call_id: String,
        reply: oneshot::Sender<Option<Position>>,
    },
    Callback {
        call_id: String,
        number: String,
        reply: oneshot::Sender<bool>,
    },
    CallbackDone {
        call_id: String,
        agent: String,
        talk: Option<Duration>,
    },
    Monitor {
        station: String,
        digits: String,
        lease: Lease<L>,
        reply: oneshot::Sender<Result<String, AcdError>>,
    },
    Transfer {
        call_id: String,
        from: String,
        talk: Duration,
        number: String,
        reply: oneshot::Sender<Result<(String, String), AcdError>>,
    },
    TransferResult {
        call_id: String,
        to: String,
        answered: bool,
    },
    Reserve {
        number: String,
        reply: oneshot::Sender<Result<(String, String), AcdError>>,
    },
    Unreserve {
        agent: String,
    },
    Personal {
        station: String,
        on: bool,
    },
    Handover {
        call_id: String,
        from: String,
        talk: Duration,
        to: String,
    },
    Reconfigure(
        std::sync::Arc<AcdConfig>,
        oneshot::Sender<Result<Vec<String>, AcdError>>,
    ),
}

impl<L> std::fmt::Debug for Msg<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Join { .. } => "Join",
            Msg::Leave { .. } => "Leave",
            Msg::Offered { .. } => "Offered",
            Msg::Bounced { .. } => "Bounced",
            Msg::Done { .. } => "Done",
            Msg::Code { .. } => "Code",
            Msg::Stats(_) => "Stats",
            Msg::ResetStats(_) => "ResetStats",
            Msg::Command(..) => "Command",
            Msg::Position { .. } => "Position",
            Msg::Callback { .. } => "Callback",
            Msg::CallbackDone { .. } => "CallbackDone",
            Msg::Monitor { .. } => "Monitor",
            Msg::Transfer { .. } => "Transfer",
            Msg::TransferResult { .. } => "TransferResult",
            Msg::Reserve { .. } => "Reserve",
            Msg::Unreserve { .. } => "Unreserve",
            Msg::Personal { .. } => "Personal",
            Msg::Handover { .. } => "Handover",
            Msg::Reconfigure(..) => "Reconfigure",
        })
    }
}
