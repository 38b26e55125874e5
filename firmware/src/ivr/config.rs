//! The `[ivr]` part of the site config: flows as a graph of named nodes,
//! checked as a whole when the config loads.
//!
//! Checking resolves every name (node targets, lists, schedules, stations,
//! prompts in every language the flows can speak), compiles patterns, loads
//! the lookup tables, and walks the graph: a node no start reaches, or a
//! loop the call can never leave, is a config error with its place in the
//! file. The engine ([`super::engine`]) only ever sees the resolved
//! [`Ivr`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use callbox_hal::diag::{Diagnostic, parse_duration};
use callbox_hal::dsp::tones::ToneRegion;
use callbox_hal::{LineInfo, LineKind};
use serde::Deserialize;

use super::hours::{Hours, RawHours};
use super::lookup::{Lookups, RawLookups};
use super::pattern::Pattern;
use super::say::{self, Lang};

// ---------------------------------------------------------------------------
// Raw, as written.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIvr {
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    system_prompts: Option<PathBuf>,
    #[serde(default)]
    tones: Option<ToneRegion>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    blocked: Option<String>,
    #[serde(default)]
    lists: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    route: Vec<RawRoute>,
    #[serde(default)]
    hours: BTreeMap<String, RawHours>,
    #[serde(default)]
    lookups: RawLookups,
    #[serde(default)]
    node: BTreeMap<String, RawNode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    dialled: Vec<String>,
    start: String,
    #[serde(default)]
    language: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Prompts {
    One(String),
    Many(Vec<String>),
}

impl Prompts {
    fn list(&self) -> Vec<&str> {
        match self {
            Prompts::One(s) => vec![s.as_str()],
            Prompts::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum RawNode {
    Menu(RawMenu),
    Collect(RawCollect),
    Play(RawPlay),
    Branch(RawBranch),
    ProductCheck(RawProductCheck),
    OrderStatus(RawOrderStatus),
    Notify(RawNotify),
    Voicemail(RawVoicemail),
    Survey(RawSurvey),
    Callback(RawCallback),
    Queue(RawQueue),
    Transfer(RawTransfer),
    Set(RawSet),
    Hangup(RawHangup),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMenu {
    greeting: Prompts,
    #[serde(default)]
    short_greeting: Option<Prompts>,
    #[serde(default)]
    invalid: Option<Prompts>,
    #[serde(default)]
    no_input: Option<Prompts>,
    #[serde(default)]
    exit: Option<Prompts>,
    #[serde(default)]
    first_digit_timeout: Option<String>,
    #[serde(default)]
    inter_digit_timeout: Option<String>,
    #[serde(default)]
    max_failures: Option<u32>,
    #[serde(default)]
    max_timeouts: Option<u32>,
    #[serde(default)]
    on_max_failures: Option<String>,
    #[serde(default)]
    on_max_timeouts: Option<String>,
    #[serde(default)]
    barge_in: Option<bool>,
    options: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollect {
    var: String,
    prompt: Prompts,
    #[serde(default)]
    min: Option<usize>,
    #[serde(default)]
    max: Option<usize>,
    #[serde(default)]
    terminator: Option<String>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    invalid: Option<Prompts>,
    #[serde(default)]
    no_input: Option<Prompts>,
    #[serde(default)]
    first_digit_timeout: Option<String>,
    #[serde(default)]
    inter_digit_timeout: Option<String>,
    #[serde(default)]
    barge_in: Option<bool>,
    #[serde(default)]
    recordable: bool,
    next: String,
    #[serde(default)]
    on_failure: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlay {
    prompts: Prompts,
    #[serde(default)]
    barge_in: bool,
    next: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    #[serde(default)]
    open: Option<String>,
    #[serde(default)]
    holiday: Option<String>,
    #[serde(default)]
    caller_in: Option<String>,
    #[serde(default)]
    dialled: Option<Vec<String>>,
    #[serde(default)]
    var: Option<String>,
    #[serde(default)]
    equals: Option<String>,
    #[serde(default)]
    matches: Option<String>,
    #[serde(default)]
    language: Option<String>,
    goto: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBranch {
    cases: Vec<RawCase>,
    default: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProductCheck {
    var: String,
    next: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrderStatus {
    var: String,
    statuses: BTreeMap<String, Prompts>,
    next: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    event: String,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    next: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVoicemail {
    mailbox: String,
    #[serde(default)]
    prompt: Option<Prompts>,
    #[serde(default)]
    max_length: Option<String>,
    #[serde(default)]
    saved: Option<Prompts>,
    next: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSurvey {
    #[serde(default)]
    prompt: Option<Prompts>,
    #[serde(default)]
    thanks: Option<Prompts>,
    #[serde(default)]
    timeout: Option<String>,
    next: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCallback {
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    prompt: Option<Prompts>,
    next: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    announce: Option<Prompts>,
    on_overflow: String,
    #[serde(default)]
    after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransfer {
    #[serde(default)]
    station: Option<String>,
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    trunks: Option<Vec<String>>,
    #[serde(default)]
    announce: Option<Prompts>,
    #[serde(default)]
    ring_timeout: Option<String>,
    on_no_answer: String,
    #[serde(default)]
    after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSet {
    var: String,
    value: String,
    #[serde(default)]
    recordable: bool,
    next: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHangup {
    #[serde(default)]
    prompt: Option<Prompts>,
    #[serde(default)]
    outcome: Option<String>,
}

/// An outbound voice job as written (`[[outbound]]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutbound {
    name: String,
    number: String,
    start: String,
    #[serde(default)]
    trunks: Option<Vec<String>>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    #[serde(default)]
    ring_timeout: Option<String>,
    #[serde(default)]
    retry_every: Option<String>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    success: Option<RawSuccess>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuccess {
    var: String,
    #[serde(rename = "in")]
    values: Vec<String>,
}

// ---------------------------------------------------------------------------
// Resolved.

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
}

/// Decoded prompts by `(language, key)`.
#[derive(Debug, Clone, Default)]
pub struct PromptSet {
    map: HashMap<(Lang, String), Arc<[i16]>>,
}

impl PromptSet {
    /// Samples of a prompt in a language.
    pub fn get(&self, lang: Lang, key: &str) -> Option<&Arc<[i16]>> {
        self.map.get(&(lang, key.to_string()))
    }
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

/// Where the box finds its system prompts when the config names none:
/// installed images have them under /usr/share; a source checkout has them
/// in the firmware crate.
pub fn default_system_prompts() -> PathBuf {
    let installed = PathBuf::from("/usr/share/callbox/prompts/system");
    if installed.is_dir() {
        return installed;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/system")
}

const DEFAULT_FIRST_DIGIT: Duration = Duration::from_secs(5);
const DEFAULT_INTER_DIGIT: Duration = Duration::from_secs(3);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

fn node_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

/// Context of one check run: collects errors, resolves names.
struct Checker<'a> {
    errs: Vec<(String, String)>,
    names: HashMap<String, NodeId>,
    base: &'a Path,
    prompt_dir: PathBuf,
    system_dir: PathBuf,
    /// Prompt references to load: key → (config path of the first use).
    wanted: BTreeMap<String, String>,
    lines: &'a [LineInfo],
}

impl Checker<'_> {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.errs.push((path.into(), msg.into()));
    }

    fn target(&mut self, path: &str, s: &str) -> Target {
        match s {
            "back" => Target::Back,
            "top" => Target::Top,
            "hangup" => Target::Hangup,
            "repeat" => Target::Repeat,
            name => match self.names.get(name) {
                Some(&id) => Target::Node(id),
                None => {
                    let mut known: Vec<&str> = self.names.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    self.err(
                        path,
                        format!(
                            "`{name}` is not a node; targets are a node name ({}) or back, top, repeat, hangup",
                            known.join(", ")
                        ),
                    );
                    Target::Hangup
                }
            },
        }
    }

    /// A duration from the file, checked by `check`; `default` when it is
    /// absent (or wrong, after the error is noted).
    fn checked_duration(
        &mut self,
        path: &str,
        s: Option<&String>,
        default: Duration,
        check: impl FnOnce(&str, Duration) -> Result<(), String>,
    ) -> Duration {
        let Some(s) = s else { return default };
        match parse_duration(s).and_then(|d| check(s, d).map(|()| d)) {
            Ok(d) => d,
            Err(e) => {
                self.err(path, e);
                default
            }
        }
    }

    /// A wait for the caller's keys: above zero, at most a minute.
    fn duration(&mut self, path: &str, s: Option<&String>, default: Duration) -> Duration {
        self.checked_duration(path, s, default, |s, d| {
            if d > MAX_TIMEOUT {
                Err(format!("{s} is longer than the 60s a caller waits"))
            } else if d.is_zero() {
                Err("a timeout of zero would never let the caller key anything".into())
            } else {
                Ok(())
            }
        })
    }

    fn items(&mut self, path: &str, p: Option<&Prompts>, default: &[&str]) -> Vec<Item> {
        let list = match p {
            Some(p) => p.list(),
            None => default.to_vec(),
        };
        let mut out = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let at = match p {
                Some(Prompts::Many(_)) => format!("{path}[{i}]"),
                _ => path.to_string(),
            };
            if let Some(inner) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                let (kind, var) = inner.split_once(':').unwrap_or(("", inner));
                let say = match kind {
                    "digits" => SayAs::Digits,
                    "number" => SayAs::Number,
                    "money" => SayAs::Money,
                    "date" => SayAs::Date,
                    "time" => SayAs::Time,
                    _ => {
                        self.err(
                            at,
                            format!("`{s}`: say a value as {{digits:VAR}}, {{number:VAR}}, {{money:VAR}}, {{date:VAR}} or {{time:VAR}}"),
                        );
                        continue;
                    }
                };
                if var.is_empty() {
                    self.err(at, format!("`{s}` names no variable"));
                    continue;
                }
                out.push(Item::Say(say, var.to_string()));
                continue;
            }
            let key = if let Some(name) = s.strip_prefix("system:") {
                format!("system:{name}")
            } else {
                if s.is_empty() || Path::new(s).is_absolute() || s.split('/').any(|p| p == "..") {
                    self.err(
                        at,
                        format!("prompt `{s}` must be a file name inside the prompts directory"),
                    );
                    continue;
                }
                format!("site:{s}")
            };
            self.wanted.entry(key.clone()).or_insert(at);
            out.push(Item::Prompt(key));
        }
        out
    }

    /// A count of tries: at least 1.
    fn count(&mut self, path: &str, v: Option<u32>, default: u32) -> u32 {
        match v {
            Some(0) => {
                self.err(
                    path,
                    "must be at least 1 (the first wrong entry or timeout counts)",
                );
                1
            }
            Some(n) => n,
            None => default,
        }
    }

    /// How long a line may ring: 1 s to 5 minutes.
    fn ring_time(&mut self, path: &str, s: Option<&String>, default: Duration) -> Duration {
        self.checked_duration(path, s, default, |s, d| {
            if d < Duration::from_secs(1) || d > Duration::from_secs(300) {
                Err(format!("ring time {s} must be between 1s and 5m"))
            } else {
                Ok(())
            }
        })
    }

    fn pattern(&mut self, path: &str, s: &str) -> Option<Pattern> {
        match Pattern::parse(s) {
            Ok(p) => Some(p),
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }

    fn lang(&mut self, path: &str, s: &str) -> Option<Lang> {
        let l = Lang::parse(s);
        if l.is_none() {
            self.err(
                path,
                format!("unknown language `{s}`; the box speaks \"en\" and \"zh\""),
            );
        }
        l
    }

    fn station(&mut self, path: &str, id: &str) {
        match self.lines.iter().find(|l| l.id == id) {
            None => self.err(path, format!("`{id}` is not a line defined in this file")),
            Some(l) if l.kind != LineKind::Station => self.err(
                path,
                format!(
                    "`{id}` is a {} line; calls are connected to station lines",
                    l.kind
                ),
            ),
            Some(_) => {}
        }
    }

    fn trunks(&mut self, path: &str, ids: Option<&Vec<String>>) -> Vec<String> {
        match ids {
            None => self
                .lines
                .iter()
                .filter(|l| l.kind == LineKind::Trunk)
                .map(|l| l.id.clone())
                .collect(),
            Some(ids) => {
                for (i, id) in ids.iter().enumerate() {
                    match self.lines.iter().find(|l| &l.id == id) {
                        None => self.err(
                            format!("{path}[{i}]"),
                            format!("`{id}` is not a line defined in this file"),
                        ),
                        Some(l) if l.kind != LineKind::Trunk => self.err(
                            format!("{path}[{i}]"),
                            format!("`{id}` is a {} line; numbers are dialled on trunks", l.kind),
                        ),
                        Some(_) => {}
                    }
                }
                ids.clone()
            }
        }
    }
}

/// Problems found by [`check`]: `(key path, message)` pairs in the site
/// config, and diagnostics in other files (lookup tables).
pub(crate) type CheckErrors = (Vec<(String, String)>, Vec<Diagnostic>);

/// Checks the `[ivr]` section and `[[outbound]]` jobs. Errors are
/// `(key path, message)` pairs for the caller to place in the file, or
/// ready diagnostics for problems in other files (lookup tables).
pub(crate) fn check(
    raw: &RawIvr,
    outbound: &[RawOutbound],
    base: &Path,
    prompt_dir: &Path,
    lines: &[LineInfo],
    acd: Option<&crate::acd::AcdConfig>,
    acd_failed: bool,
) -> Result<Ivr, CheckErrors> {
    let mut c = Checker {
        errs: Vec::new(),
        names: HashMap::new(),
        base,
        prompt_dir: prompt_dir.to_path_buf(),
        system_dir: raw
            .system_prompts
            .as_ref()
            .map_or_else(default_system_prompts, |p| base.join(p)),
        wanted: BTreeMap::new(),
        lines,
    };
    for (i, name) in raw.node.keys().enumerate() {
        if !node_name_ok(name) {
            c.err(
                format!("ivr.node.{name}"),
                format!("node name `{name}` must be 1-64 letters, digits, `-` or `_`"),
            );
        }
        c.names.insert(name.clone(), i);
    }
    let language = match &raw.language {
        Some(l) => c.lang("ivr.language", l).unwrap_or(Lang::En),
        None => Lang::En,
    };
    let timezone = raw.timezone.clone().unwrap_or_else(|| "UTC".into());
    // Resolved once here; the engine speaks dates and times in it.
    let tz = match jiff::tz::TimeZone::get(&timezone) {
        Ok(tz) => tz,
        Err(e) => {
            c.err(
                "ivr.timezone",
                format!(
                    "unknown time zone `{timezone}` ({e}); use an IANA name such as \"Asia/Shanghai\""
                ),
            );
            jiff::tz::TimeZone::UTC
        }
    };
    if !c.system_dir.is_dir() {
        c.err(
            if raw.system_prompts.is_some() { "ivr.system_prompts" } else { "ivr" },
            format!(
                "system prompt folder {} not found (install the prompt set or set `system_prompts`)",
                c.system_dir.display()
            ),
        );
    }
    let mut langs: HashSet<Lang> = HashSet::from([language]);

    let mut lists = HashMap::new();
    for (name, entries) in &raw.lists {
        let mut ps = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if let Some(p) = c.pattern(&format!("ivr.lists.{name}[{i}]"), e) {
                ps.push(p);
            }
        }
        lists.insert(name.clone(), ps);
    }
    if let Some(b) = &raw.blocked
        && !lists.contains_key(b)
    {
        c.err(
            "ivr.blocked",
            format!("`{b}` is not a list under [ivr.lists]"),
        );
    }

    let mut hours = HashMap::new();
    for (name, h) in &raw.hours {
        let at = format!("ivr.hours.{name}");
        let mut errs = Vec::new();
        if let Some(h) = Hours::check(h, &timezone, &at, &mut |k, m| errs.push((k, m))) {
            hours.insert(name.clone(), h);
        }
        c.errs.extend(errs);
    }

    let (lookups, lookup_diags) = Lookups::load(&raw.lookups, base);
    if let Some(e) = lookups.config_error() {
        c.err("ivr.lookups", e);
    }

    if raw.node.is_empty() {
        c.err(
            "ivr",
            "the IVR has no nodes; add at least one `[ivr.node.NAME]`",
        );
        return Err((c.errs, lookup_diags));
    }
    let start = match &raw.start {
        Some(s) => match c.names.get(s) {
            Some(&id) => id,
            None => {
                c.err("ivr.start", format!("`{s}` is not a node"));
                0
            }
        },
        None => {
            c.err(
                "ivr.start",
                "the IVR needs `start`, the node every inbound call begins at",
            );
            0
        }
    };
    let mut routes = Vec::new();
    for (i, r) in raw.route.iter().enumerate() {
        let at = format!("ivr.route[{i}]");
        let dialled = r
            .dialled
            .iter()
            .enumerate()
            .filter_map(|(j, d)| c.pattern(&format!("{at}.dialled[{j}]"), d))
            .collect();
        let start = match c.names.get(&r.start) {
            Some(&id) => id,
            None => {
                c.err(
                    format!("{at}.start"),
                    format!("`{}` is not a node", r.start),
                );
                0
            }
        };
        let language = r
            .language
            .as_ref()
            .and_then(|l| c.lang(&format!("{at}.language"), l));
        if let Some(l) = language {
            langs.insert(l);
        }
        routes.push(Route {
            dialled,
            start,
            language,
        });
    }

    if acd.is_some() {
        // Answers to feature codes keyed on agents' phones.
        for name in ["beep", "invalid-option"] {
            c.wanted
                .entry(format!("system:{name}"))
                .or_insert_with(|| "ivr".into());
        }
    }
    let mut nodes = Vec::new();
    for (name, rn) in &raw.node {
        let at = format!("ivr.node.{name}");
        let p = |k: &str| format!("{at}.{k}");
        let kind = match rn {
            RawNode::Menu(m) => {
                let mut options = Vec::new();
                for (key, t) in &m.options {
                    if key.is_empty() || !key.chars().all(callbox_hal::dsp::dtmf::is_dtmf_digit) {
                        c.err(
                            p(&format!("options.{key}")),
                            format!(
                                "option `{key}` must be keys of a phone keypad (0-9, *, #, A-D)"
                            ),
                        );
                        continue;
                    }
                    let target = c.target(&p(&format!("options.{key}")), t);
                    options.push((key.clone(), target));
                }
                if m.options.is_empty() {
                    c.err(p("options"), "a menu needs at least one option");
                }
                let greeting = c.items(&p("greeting"), Some(&m.greeting), &[]);
                let short_greeting = match &m.short_greeting {
                    Some(s) => c.items(&p("short_greeting"), Some(s), &[]),
                    None => greeting.clone(),
                };
                let on_max_failures = c.target(
                    &p("on_max_failures"),
                    m.on_max_failures.as_deref().unwrap_or("hangup"),
                );
                let on_max_timeouts = match &m.on_max_timeouts {
                    Some(t) => c.target(&p("on_max_timeouts"), t),
                    None => on_max_failures,
                };
                let max_len = options
                    .iter()
                    .map(|(k, _)| k.chars().count())
                    .max()
                    .unwrap_or(1);
                NodeKind::Menu(Menu {
                    greeting,
                    short_greeting,
                    invalid: c.items(
                        &p("invalid"),
                        m.invalid.as_ref(),
                        &["system:invalid-option"],
                    ),
                    no_input: c.items(&p("no_input"), m.no_input.as_ref(), &["system:timeout"]),
                    exit: c.items(&p("exit"), m.exit.as_ref(), &["system:too-many-errors"]),
                    first_digit_timeout: c.duration(
                        &p("first_digit_timeout"),
                        m.first_digit_timeout.as_ref(),
                        DEFAULT_FIRST_DIGIT,
                    ),
                    inter_digit_timeout: c.duration(
                        &p("inter_digit_timeout"),
                        m.inter_digit_timeout.as_ref(),
                        DEFAULT_INTER_DIGIT,
                    ),
                    max_failures: c.count(&p("max_failures"), m.max_failures, 3),
                    max_timeouts: c.count(&p("max_timeouts"), m.max_timeouts, 3),
                    on_max_failures,
                    on_max_timeouts,
                    barge_in: m.barge_in.unwrap_or(true),
                    options,
                    max_len,
                })
            }
            RawNode::Collect(k) => {
                let min = k.min.unwrap_or(1);
                let max = k.max.unwrap_or(min.max(20));
                if min == 0 || max < min || max > 64 {
                    c.err(
                        p("max"),
                        format!("digit lengths must satisfy 1 <= min <= max <= 64 (min {min}, max {max})"),
                    );
                }
                let terminator = match k.terminator.as_deref() {
                    None => Some('#'),
                    Some("") => None,
                    Some(t)
                        if t.chars().count() == 1
                            && callbox_hal::dsp::dtmf::is_dtmf_digit(
                                t.chars().next().unwrap_or(' '),
                            ) =>
                    {
                        t.chars().next()
                    }
                    Some(t) => {
                        c.err(
                            p("terminator"),
                            format!(
                                "terminator `{t}` must be one key (usually \"#\"), or \"\" for none"
                            ),
                        );
                        None
                    }
                };
                let pattern = k.pattern.as_ref().and_then(|s| c.pattern(&p("pattern"), s));
                NodeKind::Collect(Collect {
                    var: k.var.clone(),
                    prompt: c.items(&p("prompt"), Some(&k.prompt), &[]),
                    min,
                    max,
                    terminator,
                    pattern,
                    retries: k.retries.unwrap_or(2),
                    invalid: c.items(
                        &p("invalid"),
                        k.invalid.as_ref(),
                        &["system:invalid-option"],
                    ),
                    no_input: c.items(&p("no_input"), k.no_input.as_ref(), &["system:timeout"]),
                    first_digit_timeout: c.duration(
                        &p("first_digit_timeout"),
                        k.first_digit_timeout.as_ref(),
                        DEFAULT_FIRST_DIGIT,
                    ),
                    inter_digit_timeout: c.duration(
                        &p("inter_digit_timeout"),
                        k.inter_digit_timeout.as_ref(),
                        DEFAULT_INTER_DIGIT,
                    ),
                    barge_in: k.barge_in.unwrap_or(true),
                    recordable: k.recordable,
                    next: c.target(&p("next"), &k.next),
                    on_failure: c.target(
                        &p("on_failure"),
                        k.on_failure.as_deref().unwrap_or("hangup"),
                    ),
                })
            }
            RawNode::Play(pl) => NodeKind::Play {
                items: c.items(&p("prompts"), Some(&pl.prompts), &[]),
                barge_in: pl.barge_in,
                next: c.target(&p("next"), &pl.next),
            },
            RawNode::Branch(b) => {
                let mut cases = Vec::new();
                for (i, case) in b.cases.iter().enumerate() {
                    let cp = p(&format!("cases[{i}]"));
                    let set = [
                        case.open.is_some(),
                        case.holiday.is_some(),
                        case.caller_in.is_some(),
                        case.dialled.is_some(),
                        case.var.is_some(),
                        case.language.is_some(),
                    ]
                    .iter()
                    .filter(|&&b| b)
                    .count();
                    if set != 1 {
                        c.err(
                            cp.clone(),
                            "a case tests exactly one of: open, holiday, caller_in, dialled, var (with equals or matches), language",
                        );
                        continue;
                    }
                    let cond = if let Some(h) = case.open.as_ref().or(case.holiday.as_ref()) {
                        if !hours.contains_key(h) && !raw.hours.contains_key(h) {
                            c.err(
                                cp.clone(),
                                format!("`{h}` is not a schedule under [ivr.hours]"),
                            );
                        }
                        if case.open.is_some() {
                            Cond::Open(h.clone())
                        } else {
                            Cond::Holiday(h.clone())
                        }
                    } else if let Some(l) = &case.caller_in {
                        if !lists.contains_key(l) {
                            c.err(
                                format!("{cp}.caller_in"),
                                format!("`{l}` is not a list under [ivr.lists]"),
                            );
                        }
                        Cond::CallerIn(l.clone())
                    } else if let Some(ds) = &case.dialled {
                        Cond::Dialled(
                            ds.iter()
                                .enumerate()
                                .filter_map(|(j, d)| c.pattern(&format!("{cp}.dialled[{j}]"), d))
                                .collect(),
                        )
                    } else if let Some(v) = &case.var {
                        match (&case.equals, &case.matches) {
                            (Some(e), None) => Cond::VarEquals(v.clone(), e.clone()),
                            (None, Some(m)) => match c.pattern(&format!("{cp}.matches"), m) {
                                Some(pat) => Cond::VarMatches(v.clone(), pat),
                                None => continue,
                            },
                            _ => {
                                c.err(
                                    cp.clone(),
                                    "a `var` case needs exactly one of `equals` or `matches`",
                                );
                                continue;
                            }
                        }
                    } else {
                        let l = case.language.as_deref().unwrap_or("");
                        match c.lang(&format!("{cp}.language"), l) {
                            Some(l) => Cond::Language(l),
                            None => continue,
                        }
                    };
                    let t = c.target(&format!("{cp}.goto"), &case.goto);
                    cases.push((cond, t));
                }
                NodeKind::Branch {
                    cases,
                    default: c.target(&p("default"), &b.default),
                }
            }
            RawNode::ProductCheck(pc) => {
                // What the check says, whatever the answer.
                for name in [
                    "genuine-first",
                    "genuine-repeat",
                    "times",
                    "first-checked",
                    "not-found",
                ] {
                    c.wanted
                        .entry(format!("system:{name}"))
                        .or_insert_with(|| at.clone());
                }
                if !lookups.has_products() {
                    c.err(
                        at.clone(),
                        "a product_check needs `products` under [ivr.lookups]",
                    );
                }
                NodeKind::ProductCheck {
                    var: pc.var.clone(),
                    next: c.target(&p("next"), &pc.next),
                }
            }
            RawNode::OrderStatus(os) => {
                for name in ["order-status", "order-not-found"] {
                    c.wanted
                        .entry(format!("system:{name}"))
                        .or_insert_with(|| at.clone());
                }
                if !lookups.has_orders() {
                    c.err(
                        at.clone(),
                        "an order_status needs `orders` under [ivr.lookups]",
                    );
                }
                let mut statuses = HashMap::new();
                for (s, prompts) in &os.statuses {
                    statuses.insert(
                        s.clone(),
                        c.items(&p(&format!("statuses.{s}")), Some(prompts), &[]),
                    );
                }
                for (line, s) in lookups.order_statuses() {
                    if !statuses.contains_key(s) {
                        c.err(
                            p("statuses"),
                            format!("order status `{s}` (orders table line {line}) has no entry here, so a caller would hear nothing"),
                        );
                    }
                }
                NodeKind::OrderStatus {
                    var: os.var.clone(),
                    statuses,
                    next: c.target(&p("next"), &os.next),
                }
            }
            RawNode::Notify(n) => NodeKind::Notify {
                event: n.event.clone(),
                fields: n
                    .fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                next: c.target(&p("next"), &n.next),
            },
            RawNode::Voicemail(v) => NodeKind::Voicemail {
                mailbox: {
                    // The mailbox names a folder under the data directory.
                    if !node_name_ok(&v.mailbox) {
                        c.err(
                            p("mailbox"),
                            format!(
                                "mailbox `{}` must be 1-64 letters, digits, `-` or `_`",
                                v.mailbox
                            ),
                        );
                    }
                    v.mailbox.clone()
                },
                prompt: c.items(
                    &p("prompt"),
                    v.prompt.as_ref(),
                    &["system:leave-message", "system:beep"],
                ),
                max_length: c.checked_duration(
                    &p("max_length"),
                    v.max_length.as_ref(),
                    Duration::from_secs(120),
                    |_, d| {
                        if d >= Duration::from_secs(1) && d <= Duration::from_secs(600) {
                            Ok(())
                        } else {
                            Err("max_length must be between 1s and 10m".into())
                        }
                    },
                ),
                saved: c.items(&p("saved"), v.saved.as_ref(), &["system:message-saved"]),
                next: c.target(&p("next"), &v.next),
            },
            RawNode::Survey(s) => NodeKind::Survey {
                prompt: c.items(&p("prompt"), s.prompt.as_ref(), &["system:survey"]),
                thanks: c.items(&p("thanks"), s.thanks.as_ref(), &["system:survey-thanks"]),
                timeout: c.duration(&p("timeout"), s.timeout.as_ref(), DEFAULT_FIRST_DIGIT),
                next: c.target(&p("next"), &s.next),
            },
            RawNode::Callback(cb) => NodeKind::Callback {
                queue: cb.queue.clone().unwrap_or_else(|| name.clone()),
                prompt: c.items(
                    &p("prompt"),
                    cb.prompt.as_ref(),
                    &["system:callback-requested"],
                ),
                next: c.target(&p("next"), &cb.next),
            },
            RawNode::Queue(q) => {
                let qname = q.queue.clone().unwrap_or_else(|| name.clone());
                let index = match acd.and_then(|a| a.queue(&qname)) {
                    Some(i) => i,
                    None => {
                        // An `[acd]` with errors has reported them; its
                        // queues are unknown, not missing.
                        if !acd_failed {
                            c.err(
                                if q.queue.is_some() {
                                    p("queue")
                                } else {
                                    at.clone()
                                },
                                format!("`{qname}` is not a queue under [acd.queue]"),
                            );
                        }
                        0
                    }
                };
                if let Some(qc) = acd
                    .and_then(|a| a.queues.get(index))
                    .filter(|qc| qc.name == qname)
                {
                    if let Some(m) = &qc.moh {
                        c.wanted
                            .entry(format!("site:{m}"))
                            .or_insert_with(|| format!("acd.queue.{qname}.moh"));
                    }
                    if qc.announce_every.is_some() {
                        for f in ["you-are-number", "in-queue", "expected-wait", "minutes"] {
                            c.wanted
                                .entry(format!("system:{f}"))
                                .or_insert_with(|| format!("acd.queue.{qname}.announce_every"));
                        }
                    }
                }
                NodeKind::Queue {
                    queue: index,
                    name: qname,
                    announce: c.items(&p("announce"), q.announce.as_ref(), &["system:please-hold"]),
                    on_overflow: c.target(&p("on_overflow"), &q.on_overflow),
                    after: q.after.as_ref().map(|a| c.target(&p("after"), a)),
                }
            }
            RawNode::Transfer(t) => {
                let dest = match (&t.station, &t.number) {
                    (Some(s), None) => {
                        c.station(&p("station"), s);
                        Dest::Stations(vec![s.clone()])
                    }
                    (None, Some(n)) => {
                        if n.is_empty() || !n.chars().all(callbox_hal::dsp::dtmf::is_dtmf_digit) {
                            c.err(
                                p("number"),
                                format!(
                                    "`{n}` is not a number that can be dialled (keys 0-9, *, #)"
                                ),
                            );
                        }
                        Dest::External {
                            number: n.clone(),
                            trunks: c.trunks(&p("trunks"), t.trunks.as_ref()),
                        }
                    }
                    _ => {
                        c.err(
                            at.clone(),
                            "a transfer needs exactly one of `station` or `number`",
                        );
                        Dest::Stations(Vec::new())
                    }
                };
                NodeKind::Connect {
                    dest,
                    announce: c.items(
                        &p("announce"),
                        t.announce.as_ref(),
                        &["system:transferring"],
                    ),
                    ring_timeout: c.ring_time(
                        &p("ring_timeout"),
                        t.ring_timeout.as_ref(),
                        Duration::from_secs(30),
                    ),
                    on_no_answer: c.target(&p("on_no_answer"), &t.on_no_answer),
                    after: t.after.as_ref().map(|a| c.target(&p("after"), a)),
                }
            }
            RawNode::Set(s) => {
                if s.var == "language"
                    && !s.value.contains('{')
                    && let Some(l) = c.lang(&p("value"), &s.value)
                {
                    langs.insert(l);
                }
                NodeKind::Set {
                    var: s.var.clone(),
                    value: s.value.clone(),
                    recordable: s.recordable,
                    next: c.target(&p("next"), &s.next),
                }
            }
            RawNode::Hangup(h) => NodeKind::Hangup {
                prompt: c.items(&p("prompt"), h.prompt.as_ref(), &[]),
                outcome: h.outcome.clone().unwrap_or_else(|| name.clone()),
            },
        };
        nodes.push(Node {
            name: name.clone(),
            kind,
        });
    }

    let mut jobs = Vec::new();
    let mut job_names = HashSet::new();
    for (i, o) in outbound.iter().enumerate() {
        let at = format!("outbound[{i}]");
        let p = |k: &str| format!("{at}.{k}");
        if !node_name_ok(&o.name) || !job_names.insert(o.name.clone()) {
            c.err(
                p("name"),
                format!(
                    "job name `{}` must be unique, 1-64 letters, digits, `-` or `_`",
                    o.name
                ),
            );
        }
        if o.number.is_empty() || !o.number.chars().all(callbox_hal::dsp::dtmf::is_dtmf_digit) {
            c.err(
                p("number"),
                format!("`{}` is not a number that can be dialled", o.number),
            );
        }
        let start = match c.names.get(&o.start) {
            Some(&id) => id,
            None => {
                c.err(p("start"), format!("`{}` is not a node", o.start));
                0
            }
        };
        let language = match &o.language {
            Some(l) => c.lang(&p("language"), l).unwrap_or(language),
            None => language,
        };
        langs.insert(language);
        let after =
            c.checked_duration(&p("after"), o.after.as_ref(), Duration::ZERO, |_, _| Ok(()));
        let ring_timeout = c.ring_time(
            &p("ring_timeout"),
            o.ring_timeout.as_ref(),
            Duration::from_secs(30),
        );
        let retry_every = c.checked_duration(
            &p("retry_every"),
            o.retry_every.as_ref(),
            Duration::from_secs(600),
            |_, d| {
                if d < Duration::from_secs(10) {
                    Err("retry_every must be at least 10s: calling someone back at once is a nuisance".into())
                } else {
                    Ok(())
                }
            },
        );
        let max_attempts = o.max_attempts.unwrap_or(3);
        if !(1..=20).contains(&max_attempts) {
            c.err(p("max_attempts"), "max_attempts must be between 1 and 20");
        }
        jobs.push(OutboundJob {
            name: o.name.clone(),
            number: o.number.clone(),
            trunks: c.trunks(&p("trunks"), o.trunks.as_ref()),
            start,
            after,
            language,
            vars: o.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            ring_timeout,
            retry_every,
            max_attempts,
            success: o
                .success
                .as_ref()
                .map(|s| (s.var.clone(), s.values.clone())),
        });
    }

    // Graph checks: every node reachable, every reachable node able to end.
    // Unknown targets were resolved to hangup, so the graph is whole even
    // when other errors were found, and every problem is reported at once.
    let mut entries: Vec<NodeId> = vec![start];
    entries.extend(routes.iter().map(|r| r.start));
    entries.extend(jobs.iter().map(|j| j.start));
    graph_check(&nodes, &entries, &mut c);

    // Prompts: every referenced prompt, plus the say fragments, in every
    // language a flow can speak.
    let mut prompts = PromptSet::default();
    let mut langs: Vec<Lang> = langs.into_iter().collect();
    langs.sort_by_key(|l| l.code());
    let mut decoded: HashMap<PathBuf, Arc<[i16]>> = HashMap::new();
    for &lang in &langs {
        let mut wanted: Vec<(String, String)> = c
            .wanted
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if c.system_dir.is_dir() {
            for f in say::required_fragments(lang) {
                wanted.push((format!("system:{f}"), "ivr".to_string()));
            }
        }
        for (key, at) in wanted {
            let candidates: Vec<PathBuf> = if let Some(name) = key.strip_prefix("system:") {
                vec![
                    c.prompt_dir
                        .join("system")
                        .join(lang.code())
                        .join(format!("{name}.wav")),
                    c.system_dir.join(lang.code()).join(format!("{name}.wav")),
                ]
            } else {
                let name = key.trim_start_matches("site:");
                vec![
                    c.prompt_dir.join(lang.code()).join(name),
                    c.prompt_dir.join(name),
                ]
            };
            let Some(path) = candidates.iter().find(|p| p.is_file()) else {
                let msg = if at == "ivr" {
                    format!(
                        "system prompt `{}` for language {} not found (looked in {}); the say functions need it",
                        key.trim_start_matches("system:"),
                        lang.code(),
                        candidates
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    format!(
                        "prompt `{}` for language {} not found (looked for {})",
                        key.split_once(':').map_or(key.as_str(), |(_, n)| n),
                        lang.code(),
                        candidates
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                c.err(at, msg);
                continue;
            };
            let samples = match decoded.get(path) {
                Some(s) => s.clone(),
                None => match callbox_hal::wav::load_prompt(path, 8000) {
                    Ok(s) => {
                        let s: Arc<[i16]> = s.into();
                        decoded.insert(path.clone(), s.clone());
                        s
                    }
                    Err(e) => {
                        c.err(at, format!("prompt file {}: {e}", path.display()));
                        continue;
                    }
                },
            };
            prompts.map.insert((lang, key), samples);
        }
    }

    if !c.errs.is_empty() || !lookup_diags.is_empty() {
        return Err((c.errs, lookup_diags));
    }
    let _ = c.base;
    Ok(Ivr {
        nodes,
        start,
        routes,
        language,
        lists,
        blocked: raw.blocked.clone(),
        hours,
        lookups: Arc::new(lookups),
        prompts,
        tones: raw.tones.unwrap_or(ToneRegion::China),
        tz,
        outbound: jobs,
    })
}

fn targets(kind: &NodeKind) -> Vec<Target> {
    match kind {
        NodeKind::Menu(m) => {
            let mut v: Vec<Target> = m.options.iter().map(|(_, t)| *t).collect();
            v.extend([m.on_max_failures, m.on_max_timeouts]);
            v
        }
        NodeKind::Collect(k) => vec![k.next, k.on_failure],
        NodeKind::Play { next, .. }
        | NodeKind::ProductCheck { next, .. }
        | NodeKind::OrderStatus { next, .. }
        | NodeKind::Notify { next, .. }
        | NodeKind::Voicemail { next, .. }
        | NodeKind::Survey { next, .. }
        | NodeKind::Callback { next, .. }
        | NodeKind::Set { next, .. } => vec![*next],
        NodeKind::Branch { cases, default } => {
            let mut v: Vec<Target> = cases.iter().map(|(_, t)| *t).collect();
            v.push(*default);
            v
        }
        NodeKind::Queue {
            on_overflow: on_no_answer,
            after,
            ..
        }
        | NodeKind::Connect {
            on_no_answer,
            after,
            ..
        } => {
            // A connected call ends when it is bridged (or goes to `after`).
            let mut v = vec![*on_no_answer, Target::Hangup];
            v.extend(after.iter().copied());
            v
        }
        NodeKind::Hangup { .. } => vec![Target::Hangup],
    }
}

/// Unreachable nodes and loops with no way out, as config errors.
fn graph_check(nodes: &[Node], entries: &[NodeId], c: &mut Checker<'_>) {
    let n = nodes.len();
    let edges: Vec<Vec<Target>> = nodes.iter().map(|nd| targets(&nd.kind)).collect();
    // Reachability from every start. `top` leads back to a start, which is
    // already reached; `back` only returns to a menu already visited.
    let mut seen = vec![false; n];
    let mut stack: Vec<NodeId> = entries.to_vec();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        for t in &edges[i] {
            if let Target::Node(j) = *t {
                stack.push(j);
            }
        }
    }
    for (i, nd) in nodes.iter().enumerate() {
        if !seen[i] {
            c.err(
                format!("ivr.node.{}", nd.name),
                format!(
                    "node `{}` is never reached: no start, route, outbound job or other node leads to it",
                    nd.name
                ),
            );
        }
    }
    // Nodes that can end the call: a hangup, or `back` (the flow came from
    // a menu the caller can leave).
    let mut can_end = vec![false; n];
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..n {
            if can_end[i] {
                continue;
            }
            let ends = edges[i].iter().any(|t| match *t {
                Target::Hangup | Target::Back => true,
                Target::Node(j) => can_end[j],
                Target::Top | Target::Repeat => false,
            });
            if ends {
                can_end[i] = true;
                changed = true;
            }
        }
    }
    // Queues overflowing into each other with no other way out: a caller
    // nobody can take would bounce between them for ever.
    for (i, nd) in nodes.iter().enumerate() {
        let mut cur = i;
        let mut hops = 0;
        while let NodeKind::Queue {
            on_overflow: Target::Node(next),
            ..
        } = &nodes[cur].kind
        {
            cur = *next;
            hops += 1;
            if cur == i {
                c.err(
                    format!("ivr.node.{}.on_overflow", nd.name),
                    format!(
                        "queue node `{}` overflows back to itself through other queues; end the chain in voicemail, a callback, a transfer or hangup",
                        nd.name
                    ),
                );
                break;
            }
            if hops > nodes.len() {
                break;
            }
        }
    }
    for (i, nd) in nodes.iter().enumerate() {
        if seen[i] && !can_end[i] {
            c.err(
                format!("ivr.node.{}", nd.name),
                format!(
                    "node `{}` is in a loop with no way out: nothing it leads to ever hangs up, connects or leaves (add an exit such as on_max_failures = \"hangup\")",
                    nd.name
                ),
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Surroundings for the config checks' unit tests: a snippet of site
    //! config is checked beside the lines, queues, prompt files and lookup
    //! tables every test shares, so a test writes only the nodes it is
    //! about.

    use callbox_hal::{LineInfo, LineKind};
    use serde::Deserialize;

    use super::{Ivr, NodeKind, RawIvr, RawOutbound, check, default_system_prompts};
    use crate::acd::config::RawAcd;

    #[derive(Deserialize)]
    struct Site {
        ivr: RawIvr,
        #[serde(default)]
        outbound: Vec<RawOutbound>,
        #[serde(default)]
        acd: Option<RawAcd>,
    }

    /// The `[acd]` a snippet gets unless it brings its own: queue `sales`
    /// with music on hold and position announcements, `support` with
    /// neither.
    const ACD: &str = r#"
[agent.alice]
station = "desk-1"
[queue.sales]
members = { alice = 0 }
moh = "moh.wav"
announce_every = "30s"
[queue.support]
members = { alice = 0 }
"#;

    /// Checks `toml`, a site config with `[ivr]` and perhaps `[[outbound]]`
    /// and `[acd]`, beside:
    /// - stations `desk-1`, `desk-2` and trunks `trunk-1`, `trunk-2`;
    /// - [`ACD`] when the snippet has no `[acd]` (one that fails its own
    ///   check counts as failed, as in the site config);
    /// - site prompts `hello.wav`, `bye.wav`, `moh.wav`, and `noise.wav`
    ///   which is not audio;
    /// - lookup tables `products.csv`, `regions.csv` and `orders.csv`
    ///   (statuses `shipped` and `pending`);
    /// - the system prompts of the source tree.
    ///
    /// Errors read `key.path: message`, or `file:line:col: message` for a
    /// lookup table; the temporary folder reads `DIR`, the system prompt
    /// folder `SYSTEM`.
    pub(crate) fn check_toml(toml: &str) -> Result<Ivr, Vec<String>> {
        let site: Site =
            toml::from_str(toml).unwrap_or_else(|e| panic!("test config does not parse: {e}"));
        let dir = tempfile::tempdir().unwrap();
        let prompts = dir.path().join("prompts");
        std::fs::create_dir(&prompts).unwrap();
        let system = default_system_prompts();
        for name in ["hello.wav", "bye.wav", "moh.wav"] {
            std::fs::copy(system.join("en/beep.wav"), prompts.join(name)).unwrap();
        }
        std::fs::write(prompts.join("noise.wav"), "not audio").unwrap();
        std::fs::write(dir.path().join("products.csv"), "code,region\n1234,north\n").unwrap();
        std::fs::write(dir.path().join("regions.csv"), "prefix,region\n010,north\n").unwrap();
        std::fs::write(
            dir.path().join("orders.csv"),
            "order,status\n1001,shipped\n1002,pending\n",
        )
        .unwrap();
        let lines = [
            ("desk-1", LineKind::Station),
            ("desk-2", LineKind::Station),
            ("trunk-1", LineKind::Trunk),
            ("trunk-2", LineKind::Trunk),
        ]
        .map(|(id, kind)| LineInfo {
            id: id.into(),
            kind,
        });
        let raw_acd = site.acd.unwrap_or_else(|| toml::from_str(ACD).unwrap());
        let acd = crate::acd::config::check(&raw_acd, &lines).ok();
        let tidy = |s: String| {
            s.replace(&dir.path().display().to_string(), "DIR")
                .replace(&system.display().to_string(), "SYSTEM")
        };
        check(
            &site.ivr,
            &site.outbound,
            dir.path(),
            &prompts,
            &lines,
            acd.as_ref(),
            acd.is_none(),
        )
        .map_err(|(here, elsewhere)| {
            let here = here.into_iter().map(|(k, m)| format!("{k}: {m}"));
            let elsewhere = elsewhere
                .into_iter()
                .map(|d| format!("{}:{}:{}: {}", d.file.display(), d.line, d.col, d.message));
            here.chain(elsewhere).map(tidy).collect()
        })
    }

    /// A config with one node, `n`, where inbound calls start; `body` is
    /// the node's table.
    pub(crate) fn one_node(body: &str) -> String {
        format!("[ivr]\nstart = \"n\"\n[ivr.node.n]\n{body}")
    }

    /// The errors of a config the check must refuse.
    pub(crate) fn errors(toml: &str) -> Vec<String> {
        match check_toml(toml) {
            Ok(_) => panic!("the check accepted:\n{toml}"),
            Err(e) => e,
        }
    }

    /// The IVR of a config the check must accept.
    pub(crate) fn accepted(toml: &str) -> Ivr {
        check_toml(toml).unwrap_or_else(|e| panic!("the check refused:\n{}", e.join("\n")))
    }

    /// What the node called `name` became.
    pub(crate) fn node<'a>(ivr: &'a Ivr, name: &str) -> &'a NodeKind {
        let n = ivr.nodes.iter().find(|n| n.name == name);
        &n.unwrap_or_else(|| panic!("no node {name}")).kind
    }
}

#[cfg(test)]
mod checker_tests {
    use super::testing::{accepted, errors, node, one_node};
    use super::{Item, NodeKind, SayAs, Target};

    #[test]
    fn target_to_unknown_node_names_the_nodes_there_are() {
        let cfg = one_node("type = \"play\"\nprompts = \"hello.wav\"\nnext = \"nowhere\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.next: `nowhere` is not a node; targets are a node name (n) or back, top, repeat, hangup"
            ]
        );
    }

    #[test]
    fn back_top_repeat_and_hangup_are_targets_without_nodes() {
        let ivr = accepted(&one_node(
            r#"type = "menu"
greeting = "hello.wav"
options = { 1 = "back", 2 = "top", 3 = "repeat", 4 = "hangup" }"#,
        ));
        let NodeKind::Menu(m) = node(&ivr, "n") else {
            panic!("not a menu")
        };
        let targets: Vec<Target> = m.options.iter().map(|(_, t)| *t).collect();
        assert_eq!(
            targets,
            [Target::Back, Target::Top, Target::Repeat, Target::Hangup]
        );
    }

    #[test]
    fn say_items_become_values_said_aloud() {
        let ivr = accepted(&one_node(
            r#"type = "play"
prompts = ["hello.wav", "{digits:a}", "{number:b}", "{money:c}", "{date:d}", "{time:e}", "system:goodbye"]
next = "hangup""#,
        ));
        let NodeKind::Play { items, .. } = node(&ivr, "n") else {
            panic!("not a play")
        };
        assert_eq!(
            items,
            &[
                Item::Prompt("site:hello.wav".into()),
                Item::Say(SayAs::Digits, "a".into()),
                Item::Say(SayAs::Number, "b".into()),
                Item::Say(SayAs::Money, "c".into()),
                Item::Say(SayAs::Date, "d".into()),
                Item::Say(SayAs::Time, "e".into()),
                Item::Prompt("system:goodbye".into()),
            ]
        );
    }

    #[test]
    fn say_item_of_unknown_kind_is_refused() {
        let cfg = one_node(
            "type = \"play\"\nprompts = [\"hello.wav\", \"{word:x}\", \"{x}\"]\nnext = \"hangup\"",
        );
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.prompts[1]: `{word:x}`: say a value as {digits:VAR}, {number:VAR}, {money:VAR}, {date:VAR} or {time:VAR}",
                "ivr.node.n.prompts[2]: `{x}`: say a value as {digits:VAR}, {number:VAR}, {money:VAR}, {date:VAR} or {time:VAR}",
            ]
        );
    }

    #[test]
    fn say_item_without_a_variable_is_refused() {
        let cfg = one_node("type = \"play\"\nprompts = \"{number:}\"\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            ["ivr.node.n.prompts: `{number:}` names no variable"]
        );
    }

    #[test]
    fn prompt_outside_the_prompts_folder_is_refused() {
        let cfg = one_node(
            "type = \"play\"\nprompts = [\"../x.wav\", \"/etc/x.wav\", \"\"]\nnext = \"hangup\"",
        );
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.prompts[0]: prompt `../x.wav` must be a file name inside the prompts directory",
                "ivr.node.n.prompts[1]: prompt `/etc/x.wav` must be a file name inside the prompts directory",
                "ivr.node.n.prompts[2]: prompt `` must be a file name inside the prompts directory",
            ]
        );
    }
}

#[cfg(test)]
mod prompts_tests {
    use super::testing::{accepted, errors, one_node};
    use crate::ivr::say::Lang;

    #[test]
    fn missing_site_prompt_says_where_it_was_looked_for() {
        let cfg = one_node("type = \"play\"\nprompts = \"gone.wav\"\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.prompts: prompt `gone.wav` for language en not found (looked for DIR/prompts/en/gone.wav, DIR/prompts/gone.wav)"
            ]
        );
    }

    #[test]
    fn missing_system_prompt_says_where_it_was_looked_for() {
        let cfg = one_node("type = \"play\"\nprompts = \"system:gone\"\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.prompts: prompt `gone` for language en not found (looked for DIR/prompts/system/en/gone.wav, SYSTEM/en/gone.wav)"
            ]
        );
    }

    #[test]
    fn prompt_that_is_not_audio_is_refused() {
        let cfg = one_node("type = \"play\"\nprompts = \"noise.wav\"\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.prompts: prompt file DIR/prompts/noise.wav: not a RIFF/WAVE file: the file is only 9 bytes long"
            ]
        );
    }

    #[test]
    fn prompts_load_in_every_language_a_flow_speaks() {
        let ivr = accepted(
            "[ivr]\nstart = \"n\"\n[[ivr.route]]\ndialled = [\"800\"]\nstart = \"n\"\nlanguage = \"zh\"\n[ivr.node.n]\ntype = \"play\"\nprompts = \"hello.wav\"\nnext = \"hangup\"",
        );
        for lang in [Lang::En, Lang::Zh] {
            assert!(
                ivr.prompts.get(lang, "site:hello.wav").is_some(),
                "{lang:?}"
            );
            assert!(
                ivr.prompts.get(lang, "system:digit-1").is_some(),
                "{lang:?}"
            );
        }
    }
}

#[cfg(test)]
mod site_tests {
    use super::testing::{accepted, errors, one_node};
    use crate::ivr::say::Lang;

    const PLAY: &str = "type = \"play\"\nprompts = \"hello.wav\"\nnext = \"hangup\"";

    #[test]
    fn ivr_without_nodes_is_refused() {
        assert_eq!(
            errors("[ivr]\nstart = \"n\""),
            ["ivr: the IVR has no nodes; add at least one `[ivr.node.NAME]`"]
        );
    }

    #[test]
    fn ivr_without_start_is_refused() {
        let cfg = format!("[ivr]\n[ivr.node.n]\n{PLAY}");
        assert_eq!(
            errors(&cfg),
            ["ivr.start: the IVR needs `start`, the node every inbound call begins at"]
        );
    }

    #[test]
    fn start_at_unknown_node_is_refused() {
        let cfg = format!("[ivr]\nstart = \"nope\"\n[ivr.node.n]\n{PLAY}");
        assert_eq!(errors(&cfg), ["ivr.start: `nope` is not a node"]);
    }

    #[test]
    fn node_name_with_a_space_is_refused() {
        let cfg = format!("[ivr]\nstart = \"a b\"\n[ivr.node.\"a b\"]\n{PLAY}");
        assert_eq!(
            errors(&cfg),
            ["ivr.node.a b: node name `a b` must be 1-64 letters, digits, `-` or `_`"]
        );
    }

    #[test]
    fn defaults_are_english_utc_and_chinese_tones() {
        let ivr = accepted(&one_node(PLAY));
        assert_eq!(ivr.language, Lang::En);
        assert_eq!(ivr.tz, jiff::tz::TimeZone::UTC);
        assert_eq!(ivr.tones, callbox_hal::dsp::tones::ToneRegion::China);
    }

    #[test]
    fn unknown_language_is_refused() {
        let cfg = format!("[ivr]\nlanguage = \"fr\"\nstart = \"n\"\n[ivr.node.n]\n{PLAY}");
        assert_eq!(
            errors(&cfg),
            ["ivr.language: unknown language `fr`; the box speaks \"en\" and \"zh\""]
        );
    }

    #[test]
    fn unknown_time_zone_is_refused() {
        let cfg =
            format!("[ivr]\ntimezone = \"Mars/Olympus\"\nstart = \"n\"\n[ivr.node.n]\n{PLAY}");
        let errs = errors(&cfg);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("ivr.timezone: unknown time zone `Mars/Olympus` (")
                && errs[0].ends_with("); use an IANA name such as \"Asia/Shanghai\""),
            "{errs:?}"
        );
    }

    #[test]
    fn missing_system_prompt_folder_is_refused() {
        let cfg =
            format!("[ivr]\nsystem_prompts = \"nowhere\"\nstart = \"n\"\n[ivr.node.n]\n{PLAY}");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.system_prompts: system prompt folder DIR/nowhere not found (install the prompt set or set `system_prompts`)",
                "ivr: system prompt `beep` for language en not found (looked in DIR/prompts/system/en/beep.wav, DIR/nowhere/en/beep.wav); the say functions need it",
                "ivr: system prompt `invalid-option` for language en not found (looked in DIR/prompts/system/en/invalid-option.wav, DIR/nowhere/en/invalid-option.wav); the say functions need it",
            ]
        );
    }

    #[test]
    fn list_entry_that_is_not_a_pattern_is_refused() {
        let cfg = format!(
            "[ivr]\nstart = \"n\"\n[ivr.lists]\nvip = [\"138X.\", \"1[2\"]\n[ivr.node.n]\n{PLAY}"
        );
        assert_eq!(
            errors(&cfg),
            ["ivr.lists.vip[1]: `[` in pattern `1[2` has no closing `]`"]
        );
    }

    #[test]
    fn blocking_an_unknown_list_is_refused() {
        let cfg = format!("[ivr]\nblocked = \"spam\"\nstart = \"n\"\n[ivr.node.n]\n{PLAY}");
        assert_eq!(
            errors(&cfg),
            ["ivr.blocked: `spam` is not a list under [ivr.lists]"]
        );
    }

    #[test]
    fn blocked_list_is_kept() {
        let cfg = format!(
            "[ivr]\nblocked = \"spam\"\nstart = \"n\"\n[ivr.lists]\nspam = [\"400.\"]\n[ivr.node.n]\n{PLAY}"
        );
        let ivr = accepted(&cfg);
        assert_eq!(ivr.blocked.as_deref(), Some("spam"));
        assert!(ivr.in_list("spam", Some("4001234")));
    }

    #[test]
    fn schedule_errors_are_reported() {
        let cfg = format!(
            "[ivr]\nstart = \"n\"\n[ivr.hours.office]\nmon = [\"9-5\"]\n[ivr.node.n]\n{PLAY}"
        );
        let errs = errors(&cfg);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("ivr.hours.office.mon[0]: "), "{errs:?}");
    }

    #[test]
    fn route_errors_name_the_route() {
        let cfg = format!(
            "[ivr]\nstart = \"n\"\n[[ivr.route]]\ndialled = [\"800\", \"\"]\nstart = \"nope\"\nlanguage = \"fr\"\n[ivr.node.n]\n{PLAY}"
        );
        assert_eq!(
            errors(&cfg),
            [
                "ivr.route[0].dialled[1]: an empty pattern matches nothing",
                "ivr.route[0].start: `nope` is not a node",
                "ivr.route[0].language: unknown language `fr`; the box speaks \"en\" and \"zh\"",
            ]
        );
    }

    #[test]
    fn route_picks_its_start_and_language() {
        let cfg = format!(
            "[ivr]\nstart = \"n\"\n[[ivr.route]]\ndialled = [\"800\"]\nstart = \"m\"\nlanguage = \"zh\"\n[ivr.node.n]\n{PLAY}\n[ivr.node.m]\n{PLAY}"
        );
        let ivr = accepted(&cfg);
        let m = ivr.nodes.iter().position(|n| n.name == "m").unwrap();
        let n = ivr.nodes.iter().position(|n| n.name == "n").unwrap();
        assert_eq!(ivr.route(Some("800")), (m, Lang::Zh));
        assert_eq!(ivr.route(Some("801")), (n, Lang::En));
    }

    #[test]
    fn regions_without_products_are_refused() {
        let cfg = format!(
            "[ivr]\nstart = \"n\"\n[ivr.lookups]\nregions = \"regions.csv\"\n[ivr.node.n]\n{PLAY}"
        );
        assert_eq!(
            errors(&cfg),
            ["ivr.lookups: `regions` is only used by product checks; add `products`"]
        );
    }

    #[test]
    fn bad_lookup_table_is_reported_in_its_own_file() {
        let cfg = format!(
            "[ivr]\nstart = \"n\"\n[ivr.lookups]\nproducts = \"orders.csv\"\n[ivr.node.n]\n{PLAY}"
        );
        assert_eq!(
            errors(&cfg),
            ["DIR/orders.csv:1:1: the first line must be the header `code,region,product`"]
        );
    }
}

#[cfg(test)]
mod keys_tests {
    use std::time::Duration;

    use super::testing::{accepted, errors, node, one_node};
    use super::{Item, NodeKind, Target};

    fn menu(extra: &str) -> String {
        one_node(&format!(
            "type = \"menu\"\ngreeting = \"hello.wav\"\noptions = {{ 1 = \"hangup\" }}\n{extra}"
        ))
    }

    #[test]
    fn menu_with_defaults_is_accepted() {
        let ivr = accepted(&one_node(
            "type = \"menu\"\ngreeting = \"hello.wav\"\noptions = { 1 = \"hangup\", 12 = \"back\" }",
        ));
        let NodeKind::Menu(m) = node(&ivr, "n") else {
            panic!("not a menu")
        };
        assert_eq!(m.greeting, [Item::Prompt("site:hello.wav".into())]);
        assert_eq!(m.short_greeting, m.greeting);
        assert_eq!(m.invalid, [Item::Prompt("system:invalid-option".into())]);
        assert_eq!(m.no_input, [Item::Prompt("system:timeout".into())]);
        assert_eq!(m.exit, [Item::Prompt("system:too-many-errors".into())]);
        assert_eq!(m.first_digit_timeout, Duration::from_secs(5));
        assert_eq!(m.inter_digit_timeout, Duration::from_secs(3));
        assert_eq!((m.max_failures, m.max_timeouts), (3, 3));
        assert_eq!(
            (m.on_max_failures, m.on_max_timeouts),
            (Target::Hangup, Target::Hangup)
        );
        assert!(m.barge_in);
        assert_eq!(m.max_len, 2);
    }

    #[test]
    fn menu_timeouts_follow_failures_unless_set() {
        let ivr = accepted(
            r#"[ivr]
start = "n"
[ivr.node.n]
type = "menu"
greeting = "hello.wav"
short_greeting = "bye.wav"
options = { 1 = "m" }
on_max_failures = "back"
[ivr.node.m]
type = "menu"
greeting = "hello.wav"
options = { 1 = "hangup" }
on_max_failures = "back"
on_max_timeouts = "top""#,
        );
        let NodeKind::Menu(n) = node(&ivr, "n") else {
            panic!("not a menu")
        };
        assert_eq!(n.short_greeting, [Item::Prompt("site:bye.wav".into())]);
        assert_eq!(
            (n.on_max_failures, n.on_max_timeouts),
            (Target::Back, Target::Back)
        );
        let NodeKind::Menu(m) = node(&ivr, "m") else {
            panic!("not a menu")
        };
        assert_eq!(
            (m.on_max_failures, m.on_max_timeouts),
            (Target::Back, Target::Top)
        );
    }

    #[test]
    fn menu_option_to_unknown_node_is_refused() {
        let cfg =
            one_node("type = \"menu\"\ngreeting = \"hello.wav\"\noptions = { 1 = \"nowhere\" }");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.options.1: `nowhere` is not a node; targets are a node name (n) or back, top, repeat, hangup"
            ]
        );
    }

    #[test]
    fn menu_option_that_is_not_keypad_keys_is_refused() {
        let cfg = one_node(
            "type = \"menu\"\ngreeting = \"hello.wav\"\noptions = { 1x = \"hangup\", 2 = \"hangup\" }",
        );
        assert_eq!(
            errors(&cfg),
            ["ivr.node.n.options.1x: option `1x` must be keys of a phone keypad (0-9, *, #, A-D)"]
        );
    }

    #[test]
    fn menu_without_options_is_refused() {
        let cfg = one_node("type = \"menu\"\ngreeting = \"hello.wav\"\noptions = {}");
        assert_eq!(
            errors(&cfg),
            ["ivr.node.n.options: a menu needs at least one option"]
        );
    }

    #[test]
    fn menu_greeting_that_is_missing_is_refused() {
        let cfg = one_node(
            "type = \"menu\"\ngreeting = [\"hello.wav\", \"gone.wav\"]\noptions = { 1 = \"hangup\" }",
        );
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.greeting[1]: prompt `gone.wav` for language en not found (looked for DIR/prompts/en/gone.wav, DIR/prompts/gone.wav)"
            ]
        );
    }

    #[test]
    fn menu_timeout_longer_than_a_minute_is_refused() {
        assert_eq!(
            errors(&menu("first_digit_timeout = \"2m\"")),
            ["ivr.node.n.first_digit_timeout: 2m is longer than the 60s a caller waits"]
        );
    }

    #[test]
    fn menu_timeout_of_zero_is_refused() {
        assert_eq!(
            errors(&menu("inter_digit_timeout = \"0s\"")),
            [
                "ivr.node.n.inter_digit_timeout: a timeout of zero would never let the caller key anything"
            ]
        );
    }

    #[test]
    fn menu_timeout_that_is_not_a_duration_is_refused() {
        let errs = errors(&menu("first_digit_timeout = \"soon\""));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("ivr.node.n.first_digit_timeout: `soon` is not a duration ("),
            "{errs:?}"
        );
    }

    #[test]
    fn menu_allowing_zero_failures_is_refused() {
        assert_eq!(
            errors(&menu("max_failures = 0\nmax_timeouts = 0")),
            [
                "ivr.node.n.max_failures: must be at least 1 (the first wrong entry or timeout counts)",
                "ivr.node.n.max_timeouts: must be at least 1 (the first wrong entry or timeout counts)",
            ]
        );
    }

    #[test]
    fn menu_exit_to_unknown_node_is_refused() {
        assert_eq!(
            errors(&menu("on_max_failures = \"a\"\non_max_timeouts = \"b\"")),
            [
                "ivr.node.n.on_max_failures: `a` is not a node; targets are a node name (n) or back, top, repeat, hangup",
                "ivr.node.n.on_max_timeouts: `b` is not a node; targets are a node name (n) or back, top, repeat, hangup",
            ]
        );
    }

    fn collect(extra: &str) -> String {
        one_node(&format!(
            "type = \"collect\"\nvar = \"code\"\nprompt = \"hello.wav\"\nnext = \"hangup\"\n{extra}"
        ))
    }

    #[test]
    fn collect_with_defaults_is_accepted() {
        let ivr = accepted(&collect(""));
        let NodeKind::Collect(k) = node(&ivr, "n") else {
            panic!("not a collect")
        };
        assert_eq!(k.var, "code");
        assert_eq!((k.min, k.max), (1, 20));
        assert_eq!(k.terminator, Some('#'));
        assert!(k.pattern.is_none());
        assert_eq!(k.retries, 2);
        assert_eq!(k.invalid, [Item::Prompt("system:invalid-option".into())]);
        assert_eq!(k.no_input, [Item::Prompt("system:timeout".into())]);
        assert_eq!(k.first_digit_timeout, Duration::from_secs(5));
        assert_eq!(k.inter_digit_timeout, Duration::from_secs(3));
        assert!(k.barge_in && !k.recordable);
        assert_eq!((k.next, k.on_failure), (Target::Hangup, Target::Hangup));
    }

    #[test]
    fn collect_max_defaults_to_twenty_or_min() {
        let ivr = accepted(&collect("min = 30"));
        let NodeKind::Collect(k) = node(&ivr, "n") else {
            panic!("not a collect")
        };
        assert_eq!((k.min, k.max), (30, 30));
    }

    #[test]
    fn collect_lengths_out_of_order_are_refused() {
        let msg = |min, max| {
            format!(
                "ivr.node.n.max: digit lengths must satisfy 1 <= min <= max <= 64 (min {min}, max {max})"
            )
        };
        assert_eq!(errors(&collect("min = 5\nmax = 3")), [msg(5, 3)]);
        assert_eq!(errors(&collect("min = 0")), [msg(0, 20)]);
        assert_eq!(errors(&collect("max = 65")), [msg(1, 65)]);
    }

    #[test]
    fn collect_terminator_of_two_keys_is_refused() {
        assert_eq!(
            errors(&collect("terminator = \"##\"")),
            [
                "ivr.node.n.terminator: terminator `##` must be one key (usually \"#\"), or \"\" for none"
            ]
        );
    }

    #[test]
    fn collect_terminator_can_be_another_key_or_none() {
        for (written, want) in [("*", Some('*')), ("", None)] {
            let ivr = accepted(&collect(&format!("terminator = \"{written}\"")));
            let NodeKind::Collect(k) = node(&ivr, "n") else {
                panic!("not a collect")
            };
            assert_eq!(k.terminator, want);
        }
    }

    #[test]
    fn collect_pattern_that_does_not_compile_is_refused() {
        assert_eq!(
            errors(&collect("pattern = \"1.2\"")),
            ["ivr.node.n.pattern: `.` in pattern `1.2` may only come last (it matches the rest)"]
        );
    }

    #[test]
    fn collect_failure_to_unknown_node_is_refused() {
        assert_eq!(
            errors(&collect("on_failure = \"nowhere\"")),
            [
                "ivr.node.n.on_failure: `nowhere` is not a node; targets are a node name (n) or back, top, repeat, hangup"
            ]
        );
    }

    #[test]
    fn survey_with_defaults_is_accepted() {
        let ivr = accepted(&one_node("type = \"survey\"\nnext = \"hangup\""));
        let NodeKind::Survey {
            prompt,
            thanks,
            timeout,
            next,
        } = node(&ivr, "n")
        else {
            panic!("not a survey")
        };
        assert_eq!(prompt, &[Item::Prompt("system:survey".into())]);
        assert_eq!(thanks, &[Item::Prompt("system:survey-thanks".into())]);
        assert_eq!(*timeout, Duration::from_secs(5));
        assert_eq!(*next, Target::Hangup);
    }

    #[test]
    fn survey_timeout_longer_than_a_minute_is_refused() {
        let cfg = one_node("type = \"survey\"\ntimeout = \"90s\"\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            ["ivr.node.n.timeout: 90s is longer than the 60s a caller waits"]
        );
    }
}

#[cfg(test)]
mod flow_tests {
    use super::testing::{accepted, errors, node, one_node};
    use super::{Cond, Item, NodeKind, Target};
    use crate::ivr::say::Lang;

    #[test]
    fn play_is_accepted() {
        let ivr = accepted(&one_node(
            "type = \"play\"\nprompts = \"hello.wav\"\nnext = \"hangup\"",
        ));
        let NodeKind::Play {
            items,
            barge_in,
            next,
        } = node(&ivr, "n")
        else {
            panic!("not a play")
        };
        assert_eq!(items, &[Item::Prompt("site:hello.wav".into())]);
        assert!(!barge_in);
        assert_eq!(*next, Target::Hangup);
    }

    #[test]
    fn play_prompt_that_is_missing_is_refused() {
        let cfg = one_node("type = \"play\"\nprompts = [\"gone.wav\"]\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.prompts[0]: prompt `gone.wav` for language en not found (looked for DIR/prompts/en/gone.wav, DIR/prompts/gone.wav)"
            ]
        );
    }

    /// A branch node `n` with `cases`, beside a schedule `office` and a
    /// list `vip`.
    fn branch(cases: &str) -> String {
        format!(
            r#"[ivr]
start = "n"
[ivr.hours.office]
mon = ["09:00-17:00"]
[ivr.lists]
vip = ["138X."]
[ivr.node.n]
type = "branch"
default = "hangup"
cases = [
{cases}
]"#
        )
    }

    #[test]
    fn branch_on_every_kind_of_condition_is_accepted() {
        let ivr = accepted(&branch(
            r#"{ open = "office", goto = "hangup" },
{ holiday = "office", goto = "hangup" },
{ caller_in = "vip", goto = "hangup" },
{ dialled = ["800", "9X."], goto = "hangup" },
{ var = "a", equals = "1", goto = "hangup" },
{ var = "b", matches = "1X", goto = "hangup" },
{ language = "zh", goto = "back" },"#,
        ));
        let NodeKind::Branch { cases, default } = node(&ivr, "n") else {
            panic!("not a branch")
        };
        assert_eq!(*default, Target::Hangup);
        assert_eq!(cases.len(), 7);
        assert!(matches!(&cases[0].0, Cond::Open(h) if h == "office"));
        assert!(matches!(&cases[1].0, Cond::Holiday(h) if h == "office"));
        assert!(matches!(&cases[2].0, Cond::CallerIn(l) if l == "vip"));
        assert!(matches!(&cases[3].0, Cond::Dialled(ps) if ps.len() == 2));
        assert!(matches!(&cases[4].0, Cond::VarEquals(v, e) if v == "a" && e == "1"));
        assert!(matches!(&cases[5].0, Cond::VarMatches(v, _) if v == "b"));
        assert!(matches!(
            &cases[6],
            (Cond::Language(Lang::Zh), Target::Back)
        ));
    }

    #[test]
    fn branch_case_testing_two_things_or_none_is_refused() {
        let msg = "a case tests exactly one of: open, holiday, caller_in, dialled, var (with equals or matches), language";
        assert_eq!(
            errors(&branch(
                r#"{ open = "office", caller_in = "vip", goto = "hangup" },
{ goto = "hangup" },"#
            )),
            [
                format!("ivr.node.n.cases[0]: {msg}"),
                format!("ivr.node.n.cases[1]: {msg}"),
            ]
        );
    }

    #[test]
    fn branch_on_unknown_schedule_is_refused() {
        assert_eq!(
            errors(&branch(r#"{ holiday = "shop", goto = "hangup" },"#)),
            ["ivr.node.n.cases[0]: `shop` is not a schedule under [ivr.hours]"]
        );
    }

    #[test]
    fn branch_on_schedule_with_errors_reports_only_the_schedule() {
        let cfg = branch(r#"{ open = "shop", goto = "hangup" },"#).replace(
            "[ivr.lists]",
            "[ivr.hours.shop]\nmon = [\"9-5\"]\n[ivr.lists]",
        );
        let errs = errors(&cfg);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("ivr.hours.shop.mon[0]: "), "{errs:?}");
    }

    #[test]
    fn branch_on_unknown_list_is_refused() {
        assert_eq!(
            errors(&branch(r#"{ caller_in = "vvip", goto = "hangup" },"#)),
            ["ivr.node.n.cases[0].caller_in: `vvip` is not a list under [ivr.lists]"]
        );
    }

    #[test]
    fn branch_on_dialled_pattern_that_does_not_compile_is_refused() {
        assert_eq!(
            errors(&branch(r#"{ dialled = ["800", "[]"], goto = "hangup" },"#)),
            ["ivr.node.n.cases[0].dialled[1]: empty `[]` in pattern `[]`"]
        );
    }

    #[test]
    fn branch_on_var_needs_one_of_equals_or_matches() {
        let msg = "a `var` case needs exactly one of `equals` or `matches`";
        assert_eq!(
            errors(&branch(
                r#"{ var = "a", goto = "hangup" },
{ var = "a", equals = "1", matches = "1", goto = "hangup" },"#
            )),
            [
                format!("ivr.node.n.cases[0]: {msg}"),
                format!("ivr.node.n.cases[1]: {msg}"),
            ]
        );
    }

    #[test]
    fn branch_on_var_pattern_that_does_not_compile_is_refused() {
        assert_eq!(
            errors(&branch(
                r#"{ var = "a", matches = "[a]", goto = "hangup" },"#
            )),
            [
                "ivr.node.n.cases[0].matches: `a` inside `[...]` in pattern `[a]`: only digits and ranges like 1-5"
            ]
        );
    }

    #[test]
    fn branch_on_unknown_language_is_refused() {
        assert_eq!(
            errors(&branch(r#"{ language = "fr", goto = "hangup" },"#)),
            [
                "ivr.node.n.cases[0].language: unknown language `fr`; the box speaks \"en\" and \"zh\""
            ]
        );
    }

    #[test]
    fn branch_to_unknown_node_is_refused() {
        let cfg = branch(r#"{ var = "a", equals = "1", goto = "x" },"#)
            .replace("default = \"hangup\"", "default = \"y\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.cases[0].goto: `x` is not a node; targets are a node name (n) or back, top, repeat, hangup",
                "ivr.node.n.default: `y` is not a node; targets are a node name (n) or back, top, repeat, hangup",
            ]
        );
    }

    #[test]
    fn set_is_accepted() {
        let ivr = accepted(&one_node(
            "type = \"set\"\nvar = \"who\"\nvalue = \"{caller}\"\nrecordable = true\nnext = \"hangup\"",
        ));
        let NodeKind::Set {
            var,
            value,
            recordable,
            next,
        } = node(&ivr, "n")
        else {
            panic!("not a set")
        };
        assert_eq!((var.as_str(), value.as_str()), ("who", "{caller}"));
        assert!(*recordable);
        assert_eq!(*next, Target::Hangup);
    }

    #[test]
    fn setting_the_language_loads_its_prompts() {
        let ivr = accepted(&one_node(
            "type = \"set\"\nvar = \"language\"\nvalue = \"zh\"\nnext = \"hangup\"",
        ));
        assert!(ivr.prompts.get(Lang::Zh, "system:digit-1").is_some());
    }

    #[test]
    fn setting_an_unknown_language_is_refused() {
        let cfg = one_node("type = \"set\"\nvar = \"language\"\nvalue = \"fr\"\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            ["ivr.node.n.value: unknown language `fr`; the box speaks \"en\" and \"zh\""]
        );
    }

    #[test]
    fn setting_the_language_from_a_template_is_left_to_the_call() {
        let ivr = accepted(&one_node(
            "type = \"set\"\nvar = \"language\"\nvalue = \"{lang}\"\nnext = \"hangup\"",
        ));
        assert!(ivr.prompts.get(Lang::Zh, "system:digit-1").is_none());
    }

    #[test]
    fn notify_keeps_its_fields() {
        let ivr = accepted(&one_node(
            "type = \"notify\"\nevent = \"lead\"\nfields = { b = \"{caller}\", a = \"x\" }\nnext = \"hangup\"",
        ));
        let NodeKind::Notify {
            event,
            fields,
            next,
        } = node(&ivr, "n")
        else {
            panic!("not a notify")
        };
        assert_eq!(event, "lead");
        assert_eq!(
            fields,
            &[
                ("a".to_string(), "x".to_string()),
                ("b".to_string(), "{caller}".to_string())
            ]
        );
        assert_eq!(*next, Target::Hangup);
    }

    #[test]
    fn notify_then_unknown_node_is_refused() {
        let cfg = one_node("type = \"notify\"\nevent = \"lead\"\nnext = \"x\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.next: `x` is not a node; targets are a node name (n) or back, top, repeat, hangup"
            ]
        );
    }

    #[test]
    fn hangup_outcome_defaults_to_the_node_name() {
        let ivr = accepted(
            "[ivr]\nstart = \"n\"\n[ivr.node.n]\ntype = \"menu\"\ngreeting = \"hello.wav\"\noptions = { 1 = \"bye\", 2 = \"done\" }\n[ivr.node.bye]\ntype = \"hangup\"\n[ivr.node.done]\ntype = \"hangup\"\nprompt = \"bye.wav\"\noutcome = \"resolved\"",
        );
        let NodeKind::Hangup { prompt, outcome } = node(&ivr, "bye") else {
            panic!("not a hangup")
        };
        assert!(prompt.is_empty());
        assert_eq!(outcome, "bye");
        let NodeKind::Hangup { prompt, outcome } = node(&ivr, "done") else {
            panic!("not a hangup")
        };
        assert_eq!(prompt, &[Item::Prompt("site:bye.wav".into())]);
        assert_eq!(outcome, "resolved");
    }

    #[test]
    fn hangup_prompt_that_is_missing_is_refused() {
        let cfg = one_node("type = \"hangup\"\nprompt = \"gone.wav\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.prompt: prompt `gone.wav` for language en not found (looked for DIR/prompts/en/gone.wav, DIR/prompts/gone.wav)"
            ]
        );
    }
}

#[cfg(test)]
mod service_tests {
    use std::time::Duration;

    use super::testing::{accepted, errors, node, one_node};
    use super::{Item, NodeKind, Target};

    fn with_lookups(lookups: &str, body: &str) -> String {
        format!("[ivr]\nstart = \"n\"\n[ivr.lookups]\n{lookups}\n[ivr.node.n]\n{body}")
    }

    #[test]
    fn product_check_is_accepted_with_a_products_table() {
        let ivr = accepted(&with_lookups(
            "products = \"products.csv\"",
            "type = \"product_check\"\nvar = \"code\"\nnext = \"hangup\"",
        ));
        let NodeKind::ProductCheck { var, next } = node(&ivr, "n") else {
            panic!("not a product check")
        };
        assert_eq!((var.as_str(), *next), ("code", Target::Hangup));
        assert!(
            ivr.prompts
                .get(crate::ivr::say::Lang::En, "system:genuine-first")
                .is_some()
        );
    }

    #[test]
    fn product_check_without_a_products_table_is_refused() {
        let cfg = one_node("type = \"product_check\"\nvar = \"code\"\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            ["ivr.node.n: a product_check needs `products` under [ivr.lookups]"]
        );
    }

    #[test]
    fn order_status_is_accepted_with_every_status_said() {
        let ivr = accepted(&with_lookups(
            "orders = \"orders.csv\"",
            "type = \"order_status\"\nvar = \"order\"\nstatuses = { shipped = \"hello.wav\", pending = [\"bye.wav\", \"{date:eta}\"] }\nnext = \"hangup\"",
        ));
        let NodeKind::OrderStatus {
            var,
            statuses,
            next,
        } = node(&ivr, "n")
        else {
            panic!("not an order status")
        };
        assert_eq!((var.as_str(), *next), ("order", Target::Hangup));
        assert_eq!(statuses["shipped"], [Item::Prompt("site:hello.wav".into())]);
        assert_eq!(statuses["pending"].len(), 2);
    }

    #[test]
    fn order_status_without_an_orders_table_is_refused() {
        let cfg =
            one_node("type = \"order_status\"\nvar = \"order\"\nstatuses = {}\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            ["ivr.node.n: an order_status needs `orders` under [ivr.lookups]"]
        );
    }

    #[test]
    fn order_status_missing_a_status_of_the_table_is_refused() {
        let cfg = with_lookups(
            "orders = \"orders.csv\"",
            "type = \"order_status\"\nvar = \"order\"\nstatuses = { shipped = \"hello.wav\" }\nnext = \"hangup\"",
        );
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.statuses: order status `pending` (orders table line 3) has no entry here, so a caller would hear nothing"
            ]
        );
    }

    #[test]
    fn voicemail_with_defaults_is_accepted() {
        let ivr = accepted(&one_node(
            "type = \"voicemail\"\nmailbox = \"sales\"\nnext = \"hangup\"",
        ));
        let NodeKind::Voicemail {
            mailbox,
            prompt,
            max_length,
            saved,
            next,
        } = node(&ivr, "n")
        else {
            panic!("not a voicemail")
        };
        assert_eq!(mailbox, "sales");
        assert_eq!(
            prompt,
            &[
                Item::Prompt("system:leave-message".into()),
                Item::Prompt("system:beep".into())
            ]
        );
        assert_eq!(*max_length, Duration::from_secs(120));
        assert_eq!(saved, &[Item::Prompt("system:message-saved".into())]);
        assert_eq!(*next, Target::Hangup);
    }

    #[test]
    fn voicemail_mailbox_that_is_not_a_folder_name_is_refused() {
        let cfg = one_node("type = \"voicemail\"\nmailbox = \"../x\"\nnext = \"hangup\"");
        assert_eq!(
            errors(&cfg),
            ["ivr.node.n.mailbox: mailbox `../x` must be 1-64 letters, digits, `-` or `_`"]
        );
    }

    #[test]
    fn voicemail_length_out_of_range_is_refused() {
        for len in ["0s", "11m"] {
            let cfg = one_node(&format!(
                "type = \"voicemail\"\nmailbox = \"m\"\nmax_length = \"{len}\"\nnext = \"hangup\""
            ));
            assert_eq!(
                errors(&cfg),
                ["ivr.node.n.max_length: max_length must be between 1s and 10m"]
            );
        }
    }

    #[test]
    fn callback_queue_defaults_to_the_node_name() {
        let ivr = accepted(
            "[ivr]\nstart = \"n\"\n[ivr.node.n]\ntype = \"callback\"\nnext = \"m\"\n[ivr.node.m]\ntype = \"callback\"\nqueue = \"sales\"\nprompt = \"hello.wav\"\nnext = \"hangup\"",
        );
        let NodeKind::Callback {
            queue,
            prompt,
            next,
        } = node(&ivr, "n")
        else {
            panic!("not a callback")
        };
        assert_eq!(queue, "n");
        assert_eq!(prompt, &[Item::Prompt("system:callback-requested".into())]);
        assert!(matches!(next, Target::Node(_)));
        let NodeKind::Callback { queue, prompt, .. } = node(&ivr, "m") else {
            panic!("not a callback")
        };
        assert_eq!(queue, "sales");
        assert_eq!(prompt, &[Item::Prompt("site:hello.wav".into())]);
    }

    #[test]
    fn callback_then_unknown_node_is_refused() {
        let cfg = one_node("type = \"callback\"\nnext = \"x\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.next: `x` is not a node; targets are a node name (n) or back, top, repeat, hangup"
            ]
        );
    }
}

#[cfg(test)]
mod connect_tests {
    use std::time::Duration;

    use super::testing::{accepted, errors, node, one_node};
    use super::{Dest, Item, NodeKind, Target};
    use crate::ivr::say::Lang;

    #[test]
    fn queue_named_by_its_node_is_accepted() {
        let ivr = accepted(
            "[ivr]\nstart = \"support\"\n[ivr.node.support]\ntype = \"queue\"\non_overflow = \"hangup\"",
        );
        let NodeKind::Queue {
            queue,
            name,
            announce,
            on_overflow,
            after,
        } = node(&ivr, "support")
        else {
            panic!("not a queue")
        };
        assert_eq!((*queue, name.as_str()), (1, "support"));
        assert_eq!(announce, &[Item::Prompt("system:please-hold".into())]);
        assert_eq!((*on_overflow, *after), (Target::Hangup, None));
    }

    #[test]
    fn queue_loads_its_music_and_announcements() {
        let ivr = accepted(&one_node(
            "type = \"queue\"\nqueue = \"sales\"\nannounce = \"hello.wav\"\non_overflow = \"hangup\"\nafter = \"hangup\"",
        ));
        let NodeKind::Queue {
            queue,
            name,
            announce,
            after,
            ..
        } = node(&ivr, "n")
        else {
            panic!("not a queue")
        };
        assert_eq!((*queue, name.as_str()), (0, "sales"));
        assert_eq!(announce, &[Item::Prompt("site:hello.wav".into())]);
        assert_eq!(*after, Some(Target::Hangup));
        for key in ["site:moh.wav", "system:you-are-number", "system:minutes"] {
            assert!(ivr.prompts.get(Lang::En, key).is_some(), "{key}");
        }
    }

    #[test]
    fn queue_that_acd_does_not_have_is_refused() {
        let named = one_node("type = \"queue\"\nqueue = \"vip\"\non_overflow = \"hangup\"");
        assert_eq!(
            errors(&named),
            ["ivr.node.n.queue: `vip` is not a queue under [acd.queue]"]
        );
        let implied = one_node("type = \"queue\"\non_overflow = \"hangup\"");
        assert_eq!(
            errors(&implied),
            ["ivr.node.n: `n` is not a queue under [acd.queue]"]
        );
    }

    #[test]
    fn queue_of_an_acd_with_errors_is_not_reported_again() {
        // The [acd] fails for its unknown member and has no queue `vip`
        // either way: only its own error would be reported.
        let cfg = one_node("type = \"queue\"\nqueue = \"vip\"\non_overflow = \"hangup\"")
            + "\n[acd.queue.other]\nmembers = { nobody = 0 }";
        accepted(&cfg);
    }

    #[test]
    fn queue_music_that_is_missing_is_refused_at_the_queue() {
        let cfg = one_node("type = \"queue\"\nqueue = \"sales\"\non_overflow = \"hangup\"")
            + "\n[acd.agent.alice]\nstation = \"desk-1\"\n[acd.queue.sales]\nmembers = { alice = 0 }\nmoh = \"gone.wav\"";
        assert_eq!(
            errors(&cfg),
            [
                "acd.queue.sales.moh: prompt `gone.wav` for language en not found (looked for DIR/prompts/en/gone.wav, DIR/prompts/gone.wav)"
            ]
        );
    }

    #[test]
    fn queue_overflow_to_unknown_node_is_refused() {
        let cfg =
            one_node("type = \"queue\"\nqueue = \"sales\"\non_overflow = \"x\"\nafter = \"y\"");
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.on_overflow: `x` is not a node; targets are a node name (n) or back, top, repeat, hangup",
                "ivr.node.n.after: `y` is not a node; targets are a node name (n) or back, top, repeat, hangup",
            ]
        );
    }

    fn transfer(body: &str) -> String {
        one_node(&format!(
            "type = \"transfer\"\non_no_answer = \"hangup\"\n{body}"
        ))
    }

    #[test]
    fn transfer_to_a_station_is_accepted() {
        let ivr = accepted(&transfer("station = \"desk-2\""));
        let NodeKind::Connect {
            dest,
            announce,
            ring_timeout,
            on_no_answer,
            after,
        } = node(&ivr, "n")
        else {
            panic!("not a transfer")
        };
        assert!(matches!(dest, Dest::Stations(s) if s == &["desk-2"]));
        assert_eq!(announce, &[Item::Prompt("system:transferring".into())]);
        assert_eq!(*ring_timeout, Duration::from_secs(30));
        assert_eq!((*on_no_answer, *after), (Target::Hangup, None));
    }

    #[test]
    fn transfer_to_a_number_dials_on_every_trunk_unless_told() {
        let ivr = accepted(&transfer("number = \"0105551234\"\nring_timeout = \"45s\""));
        let NodeKind::Connect {
            dest, ring_timeout, ..
        } = node(&ivr, "n")
        else {
            panic!("not a transfer")
        };
        assert!(matches!(dest, Dest::External { number, trunks }
            if number == "0105551234" && trunks == &["trunk-1", "trunk-2"]));
        assert_eq!(*ring_timeout, Duration::from_secs(45));
        let ivr = accepted(&transfer("number = \"*99#\"\ntrunks = [\"trunk-2\"]"));
        let NodeKind::Connect { dest, .. } = node(&ivr, "n") else {
            panic!("not a transfer")
        };
        assert!(matches!(dest, Dest::External { trunks, .. } if trunks == &["trunk-2"]));
    }

    #[test]
    fn transfer_to_a_line_that_is_not_a_station_is_refused() {
        assert_eq!(
            errors(&transfer("station = \"desk-9\"")),
            ["ivr.node.n.station: `desk-9` is not a line defined in this file"]
        );
        assert_eq!(
            errors(&transfer("station = \"trunk-1\"")),
            ["ivr.node.n.station: `trunk-1` is a trunk line; calls are connected to station lines"]
        );
    }

    #[test]
    fn transfer_to_a_number_that_cannot_be_dialled_is_refused() {
        assert_eq!(
            errors(&transfer("number = \"555-1234\"")),
            ["ivr.node.n.number: `555-1234` is not a number that can be dialled (keys 0-9, *, #)"]
        );
    }

    #[test]
    fn transfer_over_lines_that_are_not_trunks_is_refused() {
        assert_eq!(
            errors(&transfer(
                "number = \"100\"\ntrunks = [\"trunk-9\", \"desk-1\"]"
            )),
            [
                "ivr.node.n.trunks[0]: `trunk-9` is not a line defined in this file",
                "ivr.node.n.trunks[1]: `desk-1` is a station line; numbers are dialled on trunks",
            ]
        );
    }

    #[test]
    fn transfer_needs_exactly_one_of_station_or_number() {
        let msg = ["ivr.node.n: a transfer needs exactly one of `station` or `number`"];
        assert_eq!(errors(&transfer("")), msg);
        assert_eq!(
            errors(&transfer("station = \"desk-1\"\nnumber = \"100\"")),
            msg
        );
    }

    #[test]
    fn transfer_ring_time_out_of_range_is_refused() {
        assert_eq!(
            errors(&transfer("station = \"desk-1\"\nring_timeout = \"6m\"")),
            ["ivr.node.n.ring_timeout: ring time 6m must be between 1s and 5m"]
        );
    }

    #[test]
    fn transfer_to_unknown_node_is_refused() {
        let cfg = one_node(
            "type = \"transfer\"\nstation = \"desk-1\"\non_no_answer = \"x\"\nafter = \"y\"",
        );
        assert_eq!(
            errors(&cfg),
            [
                "ivr.node.n.on_no_answer: `x` is not a node; targets are a node name (n) or back, top, repeat, hangup",
                "ivr.node.n.after: `y` is not a node; targets are a node name (n) or back, top, repeat, hangup",
            ]
        );
    }
}

#[cfg(test)]
mod graph_tests {
    use super::testing::{accepted, errors};

    #[test]
    fn node_nothing_leads_to_is_refused() {
        let cfg = "[ivr]\nstart = \"a\"\n[ivr.node.a]\ntype = \"hangup\"\n[ivr.node.b]\ntype = \"hangup\"";
        assert_eq!(
            errors(cfg),
            [
                "ivr.node.b: node `b` is never reached: no start, route, outbound job or other node leads to it"
            ]
        );
    }

    #[test]
    fn nodes_reached_by_a_route_or_a_job_are_reached() {
        let cfg = "[ivr]\nstart = \"a\"\n[[ivr.route]]\ndialled = [\"800\"]\nstart = \"b\"\n[ivr.node.a]\ntype = \"hangup\"\n[ivr.node.b]\ntype = \"hangup\"\n[ivr.node.c]\ntype = \"hangup\"\n[[outbound]]\nname = \"j\"\nnumber = \"100\"\nstart = \"c\"";
        accepted(cfg);
    }

    #[test]
    fn loop_with_no_way_out_is_refused() {
        let cfg = "[ivr]\nstart = \"a\"\n[ivr.node.a]\ntype = \"play\"\nprompts = \"hello.wav\"\nnext = \"b\"\n[ivr.node.b]\ntype = \"play\"\nprompts = \"hello.wav\"\nnext = \"top\"";
        let msg = |n: &str| {
            format!(
                "ivr.node.{n}: node `{n}` is in a loop with no way out: nothing it leads to ever hangs up, connects or leaves (add an exit such as on_max_failures = \"hangup\")"
            )
        };
        assert_eq!(errors(cfg), [msg("a"), msg("b")]);
    }

    #[test]
    fn back_is_a_way_out() {
        let cfg = "[ivr]\nstart = \"a\"\n[ivr.node.a]\ntype = \"play\"\nprompts = \"hello.wav\"\nnext = \"back\"";
        accepted(cfg);
    }

    #[test]
    fn queues_overflowing_into_each_other_are_refused() {
        let cfg = "[ivr]\nstart = \"sales\"\n[ivr.node.sales]\ntype = \"queue\"\non_overflow = \"support\"\n[ivr.node.support]\ntype = \"queue\"\non_overflow = \"sales\"";
        let msg = |n: &str| {
            format!(
                "ivr.node.{n}.on_overflow: queue node `{n}` overflows back to itself through other queues; end the chain in voicemail, a callback, a transfer or hangup"
            )
        };
        assert_eq!(errors(cfg), [msg("sales"), msg("support")]);
    }
}

#[cfg(test)]
mod outbound_tests {
    use std::time::Duration;

    use super::testing::{accepted, errors, one_node};
    use crate::ivr::say::Lang;

    fn job(extra: &str) -> String {
        one_node("type = \"hangup\"")
            + &format!("\n[[outbound]]\nname = \"j\"\nnumber = \"100\"\nstart = \"n\"\n{extra}")
    }

    #[test]
    fn outbound_job_with_defaults_is_accepted() {
        let ivr = accepted(&job(""));
        let j = &ivr.outbound[0];
        assert_eq!((j.name.as_str(), j.number.as_str()), ("j", "100"));
        assert_eq!(j.trunks, ["trunk-1", "trunk-2"]);
        assert_eq!(j.start, 0);
        assert_eq!(j.after, Duration::ZERO);
        assert_eq!(j.language, Lang::En);
        assert!(j.vars.is_empty());
        assert_eq!(j.ring_timeout, Duration::from_secs(30));
        assert_eq!(j.retry_every, Duration::from_secs(600));
        assert_eq!(j.max_attempts, 3);
        assert_eq!(j.success, None);
    }

    #[test]
    fn outbound_job_keeps_what_it_is_told() {
        let ivr = accepted(&job(
            "trunks = [\"trunk-2\"]\nafter = \"1m\"\nlanguage = \"zh\"\nvars = { order = \"1001\" }\nring_timeout = \"20s\"\nretry_every = \"10s\"\nmax_attempts = 20\nsuccess = { var = \"ok\", in = [\"1\", \"2\"] }",
        ));
        let j = &ivr.outbound[0];
        assert_eq!(j.trunks, ["trunk-2"]);
        assert_eq!(j.after, Duration::from_secs(60));
        assert_eq!(j.language, Lang::Zh);
        assert_eq!(j.vars, [("order".to_string(), "1001".to_string())]);
        assert_eq!(j.ring_timeout, Duration::from_secs(20));
        assert_eq!(j.retry_every, Duration::from_secs(10));
        assert_eq!(j.max_attempts, 20);
        assert_eq!(
            j.success,
            Some(("ok".to_string(), vec!["1".to_string(), "2".to_string()]))
        );
        assert!(ivr.prompts.get(Lang::Zh, "system:digit-1").is_some());
    }

    #[test]
    fn outbound_job_names_must_be_unique() {
        let cfg = job("") + "\n[[outbound]]\nname = \"j\"\nnumber = \"101\"\nstart = \"n\"";
        assert_eq!(
            errors(&cfg),
            ["outbound[1].name: job name `j` must be unique, 1-64 letters, digits, `-` or `_`"]
        );
    }

    #[test]
    fn outbound_number_that_cannot_be_dialled_is_refused() {
        let cfg = job("").replace("number = \"100\"", "number = \"10-0\"");
        assert_eq!(
            errors(&cfg),
            ["outbound[0].number: `10-0` is not a number that can be dialled"]
        );
    }

    #[test]
    fn outbound_start_at_unknown_node_is_refused() {
        let cfg = one_node("type = \"hangup\"")
            + "\n[[outbound]]\nname = \"j\"\nnumber = \"100\"\nstart = \"x\"";
        assert_eq!(errors(&cfg), ["outbound[0].start: `x` is not a node"]);
    }

    #[test]
    fn outbound_language_that_is_unknown_is_refused() {
        assert_eq!(
            errors(&job("language = \"fr\"")),
            ["outbound[0].language: unknown language `fr`; the box speaks \"en\" and \"zh\""]
        );
    }

    #[test]
    fn outbound_retry_sooner_than_ten_seconds_is_refused() {
        assert_eq!(
            errors(&job("retry_every = \"5s\"")),
            [
                "outbound[0].retry_every: retry_every must be at least 10s: calling someone back at once is a nuisance"
            ]
        );
    }

    #[test]
    fn outbound_attempts_out_of_range_are_refused() {
        for n in [0, 21] {
            assert_eq!(
                errors(&job(&format!("max_attempts = {n}"))),
                ["outbound[0].max_attempts: max_attempts must be between 1 and 20"]
            );
        }
    }

    #[test]
    fn outbound_delay_that_is_not_a_duration_is_refused() {
        let errs = errors(&job("after = \"later\""));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("outbound[0].after: `later` is not a duration ("),
            "{errs:?}"
        );
    }

    #[test]
    fn outbound_ring_time_out_of_range_is_refused() {
        assert_eq!(
            errors(&job("ring_timeout = \"0s\"")),
            ["outbound[0].ring_timeout: ring time 0s must be between 1s and 5m"]
        );
    }

    #[test]
    fn outbound_over_a_line_that_is_not_a_trunk_is_refused() {
        assert_eq!(
            errors(&job("trunks = [\"desk-1\"]")),
            ["outbound[0].trunks[0]: `desk-1` is a station line; numbers are dialled on trunks"]
        );
    }
}
