//! The checked flow graph the engine runs: nodes by index, with every
//! name resolved, every pattern compiled and every prompt decoded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use callbox_hal::dsp::tones::ToneRegion;

use super::prompts::PromptSet;
use crate::ivr::hours::Hours;
use crate::ivr::lookup::Lookups;
use crate::ivr::pattern::Pattern;
use crate::ivr::say::Lang;

/// Index of a node in [`Ivr::nodes`].
pub type NodeId = usize;

/// Where a flow goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A node.
    Node(NodeId),
    /// The menu before the current one.
    Back,
    /// The call's start node.
    Top,
    /// End the call (the box hangs up).
    Hangup,
    /// The current menu again (its short greeting).
    Repeat,
}

/// What a value is said as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SayAs {
    /// Key by key.
    Digits,
    /// A whole number.
    Number,
    /// Money, from a decimal like `12.50`.
    Money,
    /// A date, from `YYYY-MM-DD` (an RFC 3339 time also works).
    Date,
    /// A time of day, from `HH:MM` (an RFC 3339 time also works, said in the
    /// flow's time zone).
    Time,
}

/// One thing played in sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A prompt file, by cache key (`site:menu.wav`, `system:goodbye`).
    Prompt(String),
    /// A variable's value said aloud.
    Say(SayAs, String),
}

/// A menu (`type = "menu"`).
#[derive(Debug, Clone)]
pub struct Menu {
    /// Played on first entry.
    pub greeting: Vec<Item>,
    /// Played after an invalid entry or a timeout (defaults to the greeting).
    pub short_greeting: Vec<Item>,
    /// Played after a key that matches no option.
    pub invalid: Vec<Item>,
    /// Played when the caller keyed nothing.
    pub no_input: Vec<Item>,
    /// Played before leaving after too many failures or timeouts.
    pub exit: Vec<Item>,
    /// Wait for the first key after the greeting.
    pub first_digit_timeout: Duration,
    /// Wait between keys of a multi-digit option.
    pub inter_digit_timeout: Duration,
    /// Invalid entries allowed before `on_max_failures`.
    pub max_failures: u32,
    /// Timeouts allowed before `on_max_timeouts`.
    pub max_timeouts: u32,
    /// Where to go after too many invalid entries.
    pub on_max_failures: Target,
    /// Where to go after too many timeouts.
    pub on_max_timeouts: Target,
    /// Whether a key stops the greeting.
    pub barge_in: bool,
    /// Options, key sequence → target.
    pub options: Vec<(String, Target)>,
    /// Longest option, in keys.
    pub max_len: usize,
}

/// Digit collection (`type = "collect"`).
#[derive(Debug, Clone)]
pub struct Collect {
    /// Variable that receives the digits.
    pub var: String,
    /// Asks for the digits.
    pub prompt: Vec<Item>,
    /// Fewest keys accepted.
    pub min: usize,
    /// Most keys; collection ends by itself at this length.
    pub max: usize,
    /// Key that ends the entry early (not part of the value).
    pub terminator: Option<char>,
    /// The value must match this.
    pub pattern: Option<Pattern>,
    /// Attempts after the first.
    pub retries: u32,
    /// After a bad entry.
    pub invalid: Vec<Item>,
    /// After no entry.
    pub no_input: Vec<Item>,
    /// Wait for the first key.
    pub first_digit_timeout: Duration,
    /// Wait between keys.
    pub inter_digit_timeout: Duration,
    /// Whether a key stops the prompt.
    pub barge_in: bool,
    /// Whether the value is stored on the call record.
    pub recordable: bool,
    /// After a valid entry.
    pub next: Target,
    /// After the retries are used up.
    pub on_failure: Target,
}

/// A condition of a branch case.
#[derive(Debug, Clone)]
pub enum Cond {
    /// The schedule is open now.
    Open(String),
    /// Today is a holiday of the schedule.
    Holiday(String),
    /// The caller's number is in the list.
    CallerIn(String),
    /// The dialled number matches one of these.
    Dialled(Vec<Pattern>),
    /// A variable equals a value.
    VarEquals(String, String),
    /// A variable matches a pattern.
    VarMatches(String, Pattern),
    /// The call's language.
    Language(Lang),
    /// The day/night switch says night (`true`) or day (`false`).
    Night(bool),
}

/// Where a queue or transfer sends the call.
#[derive(Debug, Clone)]
pub enum Dest {
    /// Station lines, tried in order (the first idle one rings).
    Stations(Vec<String>),
    /// An external number, dialled on the first idle trunk of the list.
    External {
        /// Number to dial.
        number: String,
        /// Trunks that may carry it.
        trunks: Vec<String>,
    },
}

/// What a node does.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// A menu.
    Menu(Menu),
    /// Collect digits into a variable.
    Collect(Collect),
    /// Play prompts and values.
    Play {
        /// What to play.
        items: Vec<Item>,
        /// Whether a key stops it (the key is kept for the next node).
        barge_in: bool,
        /// Then.
        next: Target,
    },
    /// First matching case wins.
    Branch {
        /// Conditions and targets.
        cases: Vec<(Cond, Target)>,
        /// When nothing matches.
        default: Target,
    },
    /// Anti-counterfeit check of the code in `var`.
    ProductCheck {
        /// Variable with the code.
        var: String,
        /// Then.
        next: Target,
    },
    /// Order status lookup of the number in `var`.
    OrderStatus {
        /// Variable with the order number.
        var: String,
        /// Status → what to say.
        statuses: HashMap<String, Vec<Item>>,
        /// Then.
        next: Target,
    },
    /// An event for headquarters, kept in the outbox.
    Notify {
        /// Event name.
        event: String,
        /// Field → template.
        fields: Vec<(String, String)>,
        /// Then.
        next: Target,
    },
    /// Record a message.
    Voicemail {
        /// Mailbox name.
        mailbox: String,
        /// Played before the beep.
        prompt: Vec<Item>,
        /// Longest message.
        max_length: Duration,
        /// Played after saving.
        saved: Vec<Item>,
        /// Then.
        next: Target,
    },
    /// Satisfaction survey, 1-5.
    Survey {
        /// Asks for the score.
        prompt: Vec<Item>,
        /// Played after a score.
        thanks: Vec<Item>,
        /// Wait for the key.
        timeout: Duration,
        /// Then.
        next: Target,
    },
    /// Callback request.
    Callback {
        /// Which queue the callback is for.
        queue: String,
        /// Confirms the request.
        prompt: Vec<Item>,
        /// Then.
        next: Target,
    },
    /// Wait in an ACD queue for an agent.
    Queue {
        /// Queue index in the ACD config.
        queue: usize,
        /// Queue name.
        name: String,
        /// Played on joining.
        announce: Vec<Item>,
        /// When the caller leaves the queue without an agent (full, empty,
        /// waited too long).
        on_overflow: Target,
        /// After the agent hangs up first (the caller stays): e.g. a survey.
        after: Option<Target>,
    },
    /// Transfer to a station or an outside number.
    Connect {
        /// Where.
        dest: Dest,
        /// Played before ringing.
        announce: Vec<Item>,
        /// How long to ring.
        ring_timeout: Duration,
        /// When nobody answers or every line is busy.
        on_no_answer: Target,
        /// After the agent hangs up first (the caller stays): e.g. a survey.
        after: Option<Target>,
    },
    /// Set a variable.
    Set {
        /// Name (`language` switches the call's language).
        var: String,
        /// Template.
        value: String,
        /// Stored on the call record.
        recordable: bool,
        /// Then.
        next: Target,
    },
    /// The caller joins a conference room until they hang up.
    Conference {
        /// The room.
        room: crate::media::conference::RoomCfg,
        /// Where a caller goes whom the room refused (full, wrong PIN).
        on_refused: Target,
    },
    /// Play and hang up.
    Hangup {
        /// Played first.
        prompt: Vec<Item>,
        /// Outcome stored on the record.
        outcome: String,
    },
}

/// A node of the flow graph.
#[derive(Debug, Clone)]
pub struct Node {
    /// Name in the config.
    pub name: String,
    /// What it does.
    pub kind: NodeKind,
}

/// Inbound routing by dialled number.
#[derive(Debug, Clone)]
pub struct Route {
    /// Numbers this route serves.
    pub dialled: Vec<Pattern>,
    /// First node.
    pub start: NodeId,
    /// Language of the flow.
    pub language: Option<Lang>,
}

/// An outbound voice job.
#[derive(Debug, Clone)]
pub struct OutboundJob {
    /// Job name (unique).
    pub name: String,
    /// Number to call.
    pub number: String,
    /// Trunks to dial on (first idle).
    pub trunks: Vec<String>,
    /// First node once answered.
    pub start: NodeId,
    /// Delay after the box starts.
    pub after: Duration,
    /// Language of the flow.
    pub language: Lang,
    /// Variables the flow starts with.
    pub vars: Vec<(String, String)>,
    /// How long to let it ring.
    pub ring_timeout: Duration,
    /// Wait between attempts.
    pub retry_every: Duration,
    /// Attempts in all.
    pub max_attempts: u32,
    /// What counts as done: a variable with one of these values; `None`:
    /// answered is enough.
    pub success: Option<(String, Vec<String>)>,
    /// Presented to the called party; `None`: the trunk's own.
    pub caller_id: Option<String>,
}

/// The checked IVR.
#[derive(Debug, Clone)]
pub struct Ivr {
    /// Every node.
    pub nodes: Vec<Node>,
    /// Start for calls no route matches.
    pub start: NodeId,
    /// Routes by dialled number, in file order.
    pub routes: Vec<Route>,
    /// Default language.
    pub language: Lang,
    /// Named number lists.
    pub lists: HashMap<String, Vec<Pattern>>,
    /// The list whose callers are refused.
    pub blocked: Option<String>,
    /// Schedules.
    pub hours: HashMap<String, Hours>,
    /// The schedule the day/night switch follows in `auto`.
    pub business_hours: Option<String>,
    /// Lookup tables.
    pub lookups: Arc<Lookups>,
    /// Decoded prompts.
    pub prompts: PromptSet,
    /// Call-progress tone plan.
    pub tones: ToneRegion,
    /// Time zone for saying dates and times.
    pub tz: jiff::tz::TimeZone,
    /// Outbound jobs.
    pub outbound: Vec<OutboundJob>,
}

impl Ivr {
    /// Whether the business hours have the office open at `epoch_ms`;
    /// `None` when the site names none.
    pub fn open_for_business(&self, epoch_ms: i64) -> Option<bool> {
        let h = self.hours.get(self.business_hours.as_deref()?)?;
        Some(h.is_open(epoch_ms))
    }

    /// Whether a number is in a named list.
    pub fn in_list(&self, list: &str, number: Option<&str>) -> bool {
        let Some(n) = number else { return false };
        self.lists
            .get(list)
            .is_some_and(|ps| ps.iter().any(|p| p.matches(n)))
    }

    /// The route for a dialled number: start node and language.
    pub fn route(&self, dialled: Option<&str>) -> (NodeId, Lang) {
        if let Some(d) = dialled {
            for r in &self.routes {
                if r.dialled.iter().any(|p| p.matches(d)) {
                    return (r.start, r.language.unwrap_or(self.language));
                }
            }
        }
        (self.start, self.language)
    }
}
