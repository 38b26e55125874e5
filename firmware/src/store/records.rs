//! What the store is told: the record types call actors, the IVR and the
//! recorder fill in and send inside a [`StoreMsg`](super::StoreMsg).

use serde::Serialize;

use crate::clock::Stamp;

/// Direction of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A caller reached the box.
    Inbound,
    /// The box called out: an outbound voice job, or an agent's call to
    /// an outside number.
    Outbound,
    /// An agent called another station of the box.
    Internal,
}

impl Direction {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Internal => "internal",
        }
    }
}

/// How a call ended, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Still going (only seen while the call lasts).
    InProgress,
    /// The box answered the call.
    Answered,
    /// The caller hung up before the box answered.
    Abandoned,
    /// The box refused the call (line not configured for inbound calls, or
    /// a blocked caller).
    Rejected,
    /// An outbound call nobody answered (or the far end was busy).
    NoAnswer,
    /// The line failed before the call could be answered.
    Failed,
    /// The box stopped without ending the call (power cut, crash); found so
    /// at the next start.
    Interrupted,
}

impl Disposition {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::InProgress => "in_progress",
            Disposition::Answered => "answered",
            Disposition::Abandoned => "abandoned",
            Disposition::Rejected => "rejected",
            Disposition::NoAnswer => "no_answer",
            Disposition::Failed => "failed",
            Disposition::Interrupted => "interrupted",
        }
    }
}

/// Who ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The caller.
    Caller,
    /// The box, as the call flow says.
    Box,
    /// The system: shutdown or line failure.
    System,
}

impl Side {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Side::Caller => "caller",
            Side::Box => "box",
            Side::System => "system",
        }
    }
}

/// A call arrived.
#[derive(Debug, Clone)]
pub struct CallStart {
    /// Stable unique id (UUIDv7, time-ordered).
    pub id: String,
    /// Direction.
    pub direction: Direction,
    /// Trunk it arrived on or was dialled on (none for an internal call).
    pub trunk_line: Option<String>,
    /// Calling number.
    pub caller: Option<String>,
    /// Dialled number.
    pub dialled: Option<String>,
    /// The station an agent placed it from.
    pub station: Option<String>,
    /// The caller's name (contacts, or the agent who placed it).
    pub caller_name: Option<String>,
    /// When.
    pub at: Stamp,
}

/// A call ended.
#[derive(Debug, Clone)]
pub struct CallEnd {
    /// The call.
    pub id: String,
    /// When.
    pub at: Stamp,
    /// Outcome.
    pub disposition: Disposition,
    /// Why it ended.
    pub cause: callbox_hal::HangupCause,
    /// Who ended it.
    pub side: Side,
}

/// What the IVR did on a call.
#[derive(Debug, Clone, Default)]
pub struct CallFlow {
    /// The call.
    pub id: String,
    /// Start node.
    pub flow: Option<String>,
    /// Language spoken.
    pub language: Option<String>,
    /// Nodes and choices.
    pub path: Vec<String>,
    /// Recordable variables.
    pub vars: std::collections::BTreeMap<String, String>,
    /// How the flow ended.
    pub outcome: Option<String>,
    /// Survey score.
    pub survey_score: Option<u8>,
    /// Line the caller was connected to.
    pub connected_to: Option<String>,
    /// Outbound job that placed the call.
    pub job: Option<String>,
    /// Queue the caller waited in.
    pub queue: Option<String>,
    /// Time in that queue, ms.
    pub queue_wait_ms: Option<i64>,
    /// Agent who took the call.
    pub agent: Option<String>,
    /// Talk time with the agent, ms.
    pub talk_ms: Option<i64>,
    /// How the call left the queue: `connected`, `abandoned`, `timeout`,
    /// `full`, `empty`.
    pub queue_exit: Option<String>,
}

/// Earlier checks of a product code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckHistory {
    /// Checks of the code before this one (genuine codes only).
    pub earlier: i64,
    /// When it was first checked.
    pub first_ms: Option<i64>,
}

/// An outbound job's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// Job name.
    pub name: String,
    /// Number called.
    pub number: String,
    /// Attempts so far.
    pub attempts: u32,
    /// `pending`, `done` or `failed`.
    pub status: String,
    /// Result of the last attempt.
    pub result: Option<String>,
    /// Last call placed.
    pub last_call_id: Option<String>,
}

/// A recording ended (or was found cut short), as stored.
#[derive(Debug, Clone)]
pub struct RecordingEnd {
    /// Recording id (UUIDv7).
    pub id: String,
    /// The call recorded.
    pub call_id: String,
    /// `call` or `voicemail`.
    pub kind: String,
    /// Audio file, relative to the data directory (it may have been renamed
    /// since the start, e.g. once encrypted).
    pub file: String,
    /// Audio format, e.g. `wav`.
    pub format: String,
    /// Channels in the file.
    pub channels: u16,
    /// When recording started; known when the start row may be missing (a
    /// recording repaired after a crash), else `None`.
    pub started: Option<Stamp>,
    /// When recording ended.
    pub at: Stamp,
    /// `complete`, `interrupted` or `failed`.
    pub state: &'static str,
    /// File size, bytes.
    pub size: u64,
    /// Length of the audio, ms.
    pub duration_ms: u64,
    /// Total time paused, ms.
    pub paused_ms: u64,
    /// Pauses as `[start_ms, end_ms)` offsets in the recording.
    pub pauses: Vec<(u64, u64)>,
    /// SHA-256 of the file as stored, lowercase hex.
    pub sha256: Option<String>,
    /// Whether the file is encrypted at rest.
    pub encrypted: bool,
    /// What went wrong, for `interrupted` and `failed`.
    pub error: Option<String>,
}

impl RecordingEnd {
    /// An end with nothing known yet but who and when: no file, no audio.
    pub fn new(id: &str, call_id: &str, kind: &str, at: Stamp, state: &'static str) -> Self {
        RecordingEnd {
            id: id.to_string(),
            call_id: call_id.to_string(),
            kind: kind.to_string(),
            file: String::new(),
            format: String::new(),
            channels: 0,
            started: None,
            at,
            state,
            size: 0,
            duration_ms: 0,
            paused_ms: 0,
            pauses: Vec::new(),
            sha256: None,
            encrypted: false,
            error: None,
        }
    }
}
