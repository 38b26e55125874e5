//! Telephony lines: the signalling half of a port.
//!
//! A *trunk* line carries external calls (an FXO port on an analog line, a SIP
//! trunk); a *station* line rings an agent's phone (an FXS port, a SIP phone).
//! Both speak the same small vocabulary: the line reports [`LineEvent`]s and
//! obeys [`LineCommand`]s. The audio half of a port is in [`crate::audio`].

use std::fmt;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Whether a line faces the carrier or an agent's phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineKind {
    /// External calls: callers arrive here, outbound calls leave here.
    Trunk,
    /// An agent's phone: the box rings it, the agent picks up and dials
    /// feature codes on it.
    Station,
}

impl fmt::Display for LineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LineKind::Trunk => "trunk",
            LineKind::Station => "station",
        })
    }
}

/// What the firmware knows about a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineInfo {
    /// The line's id from the site config.
    pub id: String,
    /// Trunk or station.
    pub kind: LineKind,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HangupCause {
    /// Ordinary end of a call.
    Normal,
    /// The called party was busy.
    Busy,
    /// Nobody answered in time.
    NoAnswer,
    /// The network could not complete the call.
    Congestion,
    /// The box refused the call (a blocked caller; Q.850 cause 21).
    Rejected,
    /// The box is shutting down.
    Shutdown,
    /// The line failed (device error, line down).
    LineFailure,
    /// The caller may not call this number (the dial plan's classes).
    NotAllowed,
    /// The number dialled reaches nothing.
    NotInService,
    /// The box ended the call to free its trunk for an emergency call
    /// (Q.850 cause 8, preemption).
    Preempted,
}

impl HangupCause {
    /// Stable lower-case name, as stored in call records.
    pub fn as_str(self) -> &'static str {
        match self {
            HangupCause::Normal => "normal",
            HangupCause::Busy => "busy",
            HangupCause::NoAnswer => "no_answer",
            HangupCause::Congestion => "congestion",
            HangupCause::Rejected => "rejected",
            HangupCause::Shutdown => "shutdown",
            HangupCause::LineFailure => "line_failure",
            HangupCause::NotAllowed => "not_allowed",
            HangupCause::NotInService => "not_in_service",
            HangupCause::Preempted => "preempted",
        }
    }
}

impl fmt::Display for HangupCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened on a line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineEvent {
    /// A call arrives on a trunk.
    Incoming {
        /// Calling number, when the network presents it.
        caller: Option<String>,
        /// Number the caller dialled (DNIS), when known.
        dialled: Option<String>,
    },
    /// A station's handset went off-hook while it was not ringing (the agent
    /// is about to dial a feature code).
    OffHook,
    /// An outbound call placed with [`LineCommand::Dial`] is ringing at the
    /// far end.
    Ringing,
    /// The far end answered: a dialled call was picked up, or a rung station
    /// went off-hook.
    Answered,
    /// A digit signalled out of band (SIP INFO / RFC 4733 events, or a
    /// station's keypad on a digital port). In-band DTMF arrives as audio.
    Digit(char),
    /// A short on-hook pulse on an analog phone (transfer, hold).
    HookFlash,
    /// The far end hung up (caller hung up, station went on-hook).
    Hangup(HangupCause),
    /// The line misbehaves in a way no call can come of (a hook that flaps,
    /// ringing with a broken cadence), or has stopped doing so. The box
    /// raises (or clears) an alarm; no call starts.
    Fault(LineFault),
}

/// A line fault raised or cleared, for [`LineEvent::Fault`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFault {
    /// Stable name of the problem: `flapping`, `ring_cadence`.
    pub code: &'static str,
    /// What was seen, for the alarm's message.
    pub detail: String,
    /// `true` when raised, `false` when the line is well again.
    pub active: bool,
}

/// Whether a line can carry calls now, as its backend knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// It works: a SIP trunk registered or answering, a phone registered,
    /// an analog port without a fault, a simulated line.
    Up,
    /// It does not: registration refused, the carrier silent, no phone
    /// registered, an analog line fault.
    Down,
    /// Not known (yet): a trunk still registering, one nothing checks.
    Unknown,
}

impl Health {
    /// `up`, `down` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
            Health::Unknown => "unknown",
        }
    }
}

/// A line's health and why, as its backend last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineStatus {
    /// Up, down or unknown.
    pub health: Health,
    /// Why, for people: `registered at sip.carrier.cn`, `no phone
    /// registered`, `hook changed more than 10 times in 5s`.
    pub reason: String,
}

impl LineStatus {
    /// A status with its reason.
    pub fn new(health: Health, reason: impl Into<String>) -> LineStatus {
        LineStatus {
            health,
            reason: reason.into(),
        }
    }

    /// A status that never changes (a simulated line).
    pub fn fixed(health: Health, reason: &str) -> StatusWatch {
        tokio::sync::watch::channel(LineStatus::new(health, reason)).1
    }
}

/// Where the firmware reads a line's status while the backend keeps it
/// up to date. It is apart from the line's events on purpose: a call owns
/// those while it lasts, and a trunk that stops registering mid-call must
/// still show as down.
pub type StatusWatch = tokio::sync::watch::Receiver<LineStatus>;

/// Something the firmware asks a line to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineCommand {
    /// Answer the incoming call on a trunk.
    Answer,
    /// Open the audio path to a ringing caller without answering (SIP: a
    /// 183 Session Progress with the box's SDP), so the caller hears what
    /// the box plays while the call is not yet answered (and not yet
    /// charged). Only sent when [`Line::early_media`] says the line can.
    Progress,
    /// End the call, or release the line after the far end hung up. The
    /// firmware always releases a line when it is done with a call, so the
    /// backend knows the line is free again.
    Hangup(HangupCause),
    /// Place an outbound call on a trunk.
    Dial {
        /// Number to dial.
        number: String,
        /// Number presented to the called party; `None`: the trunk's own.
        /// Only SIP trunks present one (an analog line shows what the
        /// exchange gives it).
        caller_id: Option<String>,
    },
    /// Ring a station, presenting a caller id on its display.
    Ring {
        /// Number shown to the agent.
        caller_id: Option<String>,
        /// Name shown to the agent.
        caller_name: Option<String>,
    },
    /// Tells a station's phone how many voicemail messages wait for the
    /// agent using it: a SIP phone lights its lamp (an unsolicited
    /// `message-summary` NOTIFY); an analog phone has no lamp the box can
    /// reach, so the firmware plays it a stutter dial tone instead. Sent
    /// when the count changes and when an agent logs in or out.
    MessageWaiting {
        /// Messages not yet heard.
        new: u32,
        /// Messages heard and kept.
        old: u32,
    },
}

/// The signalling half of one telephony port.
pub trait Line: Send + 'static {
    /// The backend's error type.
    type Error: Error;
    /// Which line this is.
    fn info(&self) -> &LineInfo;
    /// The line's health as the backend keeps it (see [`StatusWatch`]).
    fn status(&self) -> StatusWatch;
    /// Waits for the next event. Cancel-safe: dropping the future loses no
    /// event.
    fn next_event(&mut self) -> impl Future<Output = Result<LineEvent, Self::Error>> + Send;
    /// Carries out a command.
    fn command(&mut self, cmd: LineCommand)
    -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Whether the call ringing on this line can hear audio before it is
    /// answered ([`LineCommand::Progress`]). An analog line cannot (its
    /// audio path opens only when the box goes off-hook, which answers);
    /// a SIP trunk can when the caller's INVITE carried an offer.
    fn early_media(&self) -> bool {
        false
    }
}
