//! [`AcdError`]: why the ACD refused a request — an agent command or
//! feature code, a supervisor code or pickup, a transfer, a new config —
//! or could not answer it at all (it has stopped). One variant per reason,
//! with the names it is about; the text is what the agent's log line and
//! headquarters' answer say.

/// Why the ACD said no.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcdError {
    /// The actor is gone (the daemon is stopping).
    #[error("the ACD has stopped")]
    Stopped,
    /// The login code without a number, at a station no agent calls home.
    #[error("no agent homed at station {station}")]
    NotHomed {
        /// The station keyed at.
        station: String,
    },
    /// The login code with a number no agent has.
    #[error("no agent {number} at station {station}")]
    NoAgentNumbered {
        /// The number keyed after the login code.
        number: String,
        /// The station keyed at.
        station: String,
    },
    /// An agent code at a station nobody is logged in at.
    #[error("nobody is logged in at {station}")]
    NobodyAt {
        /// The station.
        station: String,
    },
    /// Digits that are none of the agent codes.
    #[error("`{digits}` is not a feature code")]
    NotAFeatureCode {
        /// What was keyed.
        digits: String,
    },
    /// No agent has this id.
    #[error("no agent `{agent}`")]
    NoAgent {
        /// The id asked for.
        agent: String,
    },
    /// Someone else is logged in at the station.
    #[error("{other} is logged in at {station}")]
    StationTaken {
        /// Who is.
        other: String,
        /// The station.
        station: String,
    },
    /// The agent is ringing or talking.
    #[error("{agent} is on a call")]
    OnCall {
        /// The agent.
        agent: String,
    },
    /// No line by this name.
    #[error("no station `{station}`")]
    NoStation {
        /// The station asked for.
        station: String,
    },
    /// The wrap-up code without digits.
    #[error("a wrap-up code needs digits after it")]
    EmptyWrapCode,
    /// A wrap-up code from an agent who has had no call.
    #[error("{agent} has taken no call to code")]
    NoCallToCode {
        /// The agent.
        agent: String,
    },
    /// Digits that are none of the supervisor codes.
    #[error("`{digits}` is not a supervisor code")]
    NotASupervisorCode {
        /// What was keyed.
        digits: String,
    },
    /// A supervisor code at a station not listed as a supervisor's.
    #[error("station {station} is not a supervisor's (see [acd] supervisors)")]
    NotASupervisor {
        /// The station.
        station: String,
    },
    /// A supervisor code naming an agent number nobody has.
    #[error("no agent has number {number}")]
    NoAgentWithNumber {
        /// The number keyed.
        number: String,
    },
    /// A supervisor code naming an agent who is not talking.
    #[error("{agent} is not on a call")]
    NotOnCall {
        /// The agent.
        agent: String,
    },
    /// The call asked about is over.
    #[error("the call has ended")]
    CallEnded,
    /// Pause, do-not-disturb or available for an agent who is not logged
    /// in: they would be in a state with no phone to ring.
    #[error("{agent} is logged out; log them in first")]
    LoggedOut {
        /// The agent.
        agent: String,
    },
    /// Pickup while no queue call rings an agent.
    #[error("no queue call is ringing")]
    NothingRinging,
    /// Directed pickup of an agent whose phone is not ringing.
    #[error("agent {number}'s phone is not ringing a queue call")]
    NotRinging {
        /// The agent number keyed.
        number: String,
    },
    /// The transfer or consultation target is not available.
    #[error("agent {number} is not free")]
    NotFree {
        /// The target's agent number.
        number: String,
    },
    /// A new config would drop what is in use now.
    #[error("{}", joined(.0))]
    CannotChange(Vec<Refusal>),
}

/// Why a new config cannot replace the running one now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The config drops an agent who is being rung or on a call.
    #[error(
        "agent `{agent}` is {} and cannot be removed now",
        if *.ringing { "being rung" } else { "on a call" }
    )]
    AgentBusy {
        /// The agent.
        agent: String,
        /// Rung (else on a call).
        ringing: bool,
    },
    /// The config drops a queue that callers wait or talk in.
    #[error("queue `{queue}` has {calls} caller(s) waiting or connected and cannot be removed now")]
    QueueInUse {
        /// The queue.
        queue: String,
        /// Its callers.
        calls: usize,
    },
    /// The config drops a queue whose call rings an agent.
    #[error("queue `{queue}` is ringing an agent and cannot be removed now")]
    QueueRinging {
        /// The queue.
        queue: String,
    },
}

/// The refusals, one after the other.
fn joined(refused: &[Refusal]) -> String {
    let all: Vec<String> = refused.iter().map(Refusal::to_string).collect();
    all.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words agents' log lines and headquarters' answers have always had.
    #[test]
    fn refusals_read_as_they_always_have() {
        let s = |v: &str| v.to_string();
        let cases = [
            (AcdError::Stopped, "the ACD has stopped"),
            (
                AcdError::NotHomed {
                    station: s("desk-1"),
                },
                "no agent homed at station desk-1",
            ),
            (
                AcdError::NoAgentNumbered {
                    number: s("12"),
                    station: s("desk-1"),
                },
                "no agent 12 at station desk-1",
            ),
            (
                AcdError::StationTaken {
                    other: s("bob"),
                    station: s("desk-1"),
                },
                "bob is logged in at desk-1",
            ),
            (
                AcdError::NotASupervisor {
                    station: s("desk-2"),
                },
                "station desk-2 is not a supervisor's (see [acd] supervisors)",
            ),
            (
                AcdError::NotFree { number: s("12") },
                "agent 12 is not free",
            ),
            (
                AcdError::CannotChange(vec![
                    Refusal::AgentBusy {
                        agent: s("alice"),
                        ringing: false,
                    },
                    Refusal::QueueRinging { queue: s("sales") },
                ]),
                "agent `alice` is on a call and cannot be removed now; \
                 queue `sales` is ringing an agent and cannot be removed now",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }
}
