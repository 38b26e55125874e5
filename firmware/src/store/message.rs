//! The messages the store thread takes, and how a sender waits for an
//! answer to one that asks for it.

use tokio::sync::oneshot;

use super::{CallEnd, CallFlow, CallStart, CheckHistory, JobRow, RecordingEnd, StoreError};
use crate::clock::Stamp;

/// What the store is asked to do.
#[derive(Debug)]
pub enum StoreMsg {
    /// Store what the IVR did (sent before `CallEnded`).
    CallFlow(CallFlow),
    /// An event for headquarters.
    Outbox {
        /// Stream (`notify`, `lookup`, `voicemail`, `callback`, `job`,
        /// `acd_stats`; the store itself writes `recording` and `alarm`).
        stream: String,
        /// When.
        at: Stamp,
        /// JSON body.
        payload: serde_json::Value,
    },
    /// Record a product check; replies with the code's earlier checks.
    ProductCheck {
        /// The call.
        call_id: String,
        /// Code keyed.
        code: String,
        /// Caller.
        caller: Option<String>,
        /// Whether the code is registered.
        found: bool,
        /// Region the product was shipped to.
        product_region: Option<String>,
        /// Region of the caller's number.
        caller_region: Option<String>,
        /// Checked from another region's number.
        diverted: bool,
        /// When.
        at: Stamp,
        /// Earlier checks, answered once committed.
        reply: oneshot::Sender<CheckHistory>,
    },
    /// A voicemail message was saved.
    Voicemail {
        /// Message id.
        id: String,
        /// The call.
        call_id: String,
        /// Mailbox.
        mailbox: String,
        /// Caller.
        caller: Option<String>,
        /// When recording started.
        at: Stamp,
        /// Length.
        duration_ms: i64,
        /// WAV file.
        file: String,
    },
    /// A campaign's list, loaded: new numbers are added as pending, known
    /// ones keep their progress.
    CampaignContacts {
        /// Campaign.
        campaign: String,
        /// The list.
        contacts: Vec<super::campaigns::NewContact>,
        /// When.
        at: Stamp,
    },
    /// A campaign contact's progress.
    CampaignContact(super::campaigns::ContactUpdate, Stamp),
    /// A voicemail message was heard, kept or deleted from the phone.
    VoicemailStatus {
        /// Message id.
        id: String,
        /// `saved` or `deleted`.
        status: &'static str,
        /// When.
        at: Stamp,
    },
    /// A caller asked to be called back.
    Callback {
        /// The call.
        call_id: String,
        /// Number to call back.
        number: String,
        /// Queue.
        queue: String,
        /// When.
        at: Stamp,
    },
    /// An outbound job's progress.
    Job(JobRow, Stamp),
    /// Reads an outbound job's progress.
    JobStatus(String, oneshot::Sender<Result<Option<JobRow>, StoreError>>),
    /// A queue event.
    QueueLog {
        /// When.
        at: Stamp,
        /// The call, if the event concerns one.
        call_id: Option<String>,
        /// Queue.
        queue: Option<String>,
        /// Agent.
        agent: Option<String>,
        /// `ENTERQUEUE`, `OFFER`, `CONNECT`, `ABANDON`…
        event: String,
        /// Details.
        data: serde_json::Value,
    },
    /// Creates or replaces a console user (the hash is argon2id).
    ConsoleUser(super::ConsoleUser),
    /// Removes a console user.
    ConsoleUserRemoved {
        /// Who.
        name: String,
    },
    /// An entry of the console's audit log, kept and sent to headquarters
    /// (outbox stream `audit`).
    Audit(super::AuditEntry),
    /// An agent's wrap-up code for a call.
    WrapCode {
        /// The call.
        call_id: String,
        /// The code keyed.
        code: String,
    },
    /// An agent's wrap-up form from the web console: a code and notes, kept
    /// on the call record and sent to headquarters with it again.
    WrapUp {
        /// The call.
        call_id: String,
        /// The code chosen.
        code: Option<String>,
        /// The notes written.
        notes: Option<String>,
    },
    /// Insert a call record.
    CallStarted(CallStart),
    /// The number a caller dialled, learnt after the call arrived (DID
    /// digits an analog exchange sends once the box answers).
    CallDialled {
        /// Call id.
        id: String,
        /// The number.
        dialled: String,
    },
    /// Mark a call answered.
    CallAnswered {
        /// The call.
        id: String,
        /// When.
        at: Stamp,
    },
    /// Complete a call record.
    CallEnded(CallEnd),
    /// An event in a call's life, for its event log (`records --call`).
    Event {
        /// The call.
        call_id: String,
        /// When.
        at: Stamp,
        /// `answered`, `digit`, `menu`, `queued`, `offered`, `bridged`,
        /// `transferred`, `recording_started`, `recording_paused`,
        /// `recording_resumed`, `recording_stopped`, `hangup`.
        event: &'static str,
        /// Details.
        data: serde_json::Value,
    },
    /// A recording started: its row is inserted in state `recording`.
    RecordingStarted {
        /// Recording id (UUIDv7).
        id: String,
        /// The call recorded.
        call_id: String,
        /// `call` or `voicemail`.
        kind: &'static str,
        /// Audio file, relative to the data directory.
        file: String,
        /// Audio format, e.g. `wav`.
        format: &'static str,
        /// Channels in the file.
        channels: u16,
        /// When.
        at: Stamp,
    },
    /// A recording ended: its row is completed (or inserted, if the start
    /// never reached the disk) and headquarters is told (outbox stream
    /// `recording`).
    RecordingFinished(RecordingEnd),
    /// At start-up, after the recorder's repairs: every recording still in
    /// state `recording` has no audio left and becomes `lost`.
    SweepOpenRecordings {
        /// When the sweep ran.
        at: Stamp,
    },
    /// A recording's file was deleted; the row is kept, state `deleted`.
    RecordingDeleted {
        /// Recording id.
        id: String,
        /// When.
        at: Stamp,
        /// Why (retention, operator…).
        reason: String,
    },
    /// An alarm was raised (also sent to headquarters, stream `alarm`).
    Alarm {
        /// When.
        at: Stamp,
        /// Stable code, e.g. `disk_full`.
        code: String,
        /// `warning` or `critical`.
        severity: &'static str,
        /// What an operator should know.
        message: String,
    },
    /// Every raised alarm with this code is cleared.
    AlarmCleared {
        /// When.
        at: Stamp,
        /// The alarm's code.
        code: String,
    },
    /// A directory lookup made during a call.
    Lookup {
        /// The call.
        call_id: String,
        /// When.
        at: Stamp,
        /// Table or service looked in.
        source: String,
        /// What was looked up.
        key: String,
        /// Whether it was found.
        found: bool,
    },
    /// The broker (or the collector) acknowledged these outbox rows: they
    /// leave the outbox.
    OutboxAcked {
        /// Outbox `seq`s.
        rows: Vec<i64>,
    },
    /// These outbox rows are too large for any message: headquarters got a
    /// marker in their place; they move to `outbox_held` for an operator.
    OutboxHeld {
        /// Outbox `seq`s.
        rows: Vec<i64>,
    },
    /// The collector acknowledged these records of one stream end to end.
    OutboxAckedByStream {
        /// Stream.
        stream: String,
        /// Per-stream sequence numbers.
        seqs: Vec<i64>,
    },
    /// A recording's upload got this far (bytes the broker acknowledged).
    UploadProgress {
        /// Recording id.
        id: String,
        /// Bytes from the start.
        offset: u64,
    },
    /// Headquarters confirmed it holds the whole recording.
    RecordingDelivered {
        /// Recording id.
        id: String,
    },
    /// Counts one more connection to headquarters; replies with the new
    /// count once committed (it goes in the presence message).
    NextSession(oneshot::Sender<i64>),
    /// Reply once everything queued before this is committed.
    Flush(oneshot::Sender<()>),
}

/// Waits for the store thread's answer to a request. The wait runs on the
/// blocking pool: under a paused (virtual-time) runtime that keeps tokio
/// from jumping the clock ahead while the answer is being written, so a
/// simulated call's timing does not depend on disk speed. `None` if the
/// store has stopped.
pub async fn reply<T: Send + 'static>(rx: oneshot::Receiver<T>) -> Option<T> {
    tokio::task::spawn_blocking(move || rx.blocking_recv().ok())
        .await
        .ok()
        .flatten()
}

impl StoreMsg {
    /// The message's kind, for logs.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            StoreMsg::CallStarted(_) => "call started",
            StoreMsg::CallAnswered { .. } => "call answered",
            StoreMsg::CallDialled { .. } => "dialled number",
            StoreMsg::CallEnded(_) => "call ended",
            StoreMsg::CallFlow(_) => "call flow",
            StoreMsg::Outbox { .. } => "outbox event",
            StoreMsg::ProductCheck { .. } => "product check",
            StoreMsg::Voicemail { .. } => "voicemail",
            StoreMsg::VoicemailStatus { .. } => "voicemail status",
            StoreMsg::CampaignContacts { .. } => "campaign list",
            StoreMsg::CampaignContact(..) => "campaign contact",
            StoreMsg::Callback { .. } => "callback",
            StoreMsg::Job(..) => "outbound job",
            StoreMsg::JobStatus(..) => "job status",
            StoreMsg::QueueLog { .. } => "queue event",
            StoreMsg::WrapCode { .. } => "wrap-up code",
            StoreMsg::WrapUp { .. } => "wrap-up form",
            StoreMsg::ConsoleUser(_) => "console user",
            StoreMsg::ConsoleUserRemoved { .. } => "console user removed",
            StoreMsg::Audit(_) => "audit entry",
            StoreMsg::Event { .. } => "call event",
            StoreMsg::RecordingStarted { .. } => "recording started",
            StoreMsg::RecordingFinished(_) => "recording finished",
            StoreMsg::SweepOpenRecordings { .. } => "open recordings sweep",
            StoreMsg::RecordingDeleted { .. } => "recording deleted",
            StoreMsg::Alarm { .. } => "alarm",
            StoreMsg::AlarmCleared { .. } => "alarm cleared",
            StoreMsg::Lookup { .. } => "lookup",
            StoreMsg::OutboxAcked { .. } => "outbox acknowledgement",
            StoreMsg::OutboxAckedByStream { .. } => "end-to-end acknowledgement",
            StoreMsg::OutboxHeld { .. } => "outbox record held",
            StoreMsg::UploadProgress { .. } => "upload progress",
            StoreMsg::RecordingDelivered { .. } => "recording delivered",
            StoreMsg::NextSession(_) => "session count",
            StoreMsg::Flush(_) => "flush",
        }
    }
}
