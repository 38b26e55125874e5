//! The `[ivr]` section and `[[outbound]]` jobs as written: serde types
//! that mirror the file (serde refuses unknown keys), for [`super::check`]
//! to resolve. Their fields are read only by the checks beside this file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use callbox_hal::dsp::tones::ToneRegion;
use serde::Deserialize;

use crate::ivr::hours::RawHours;
use crate::ivr::lookup::RawLookups;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIvr {
    #[serde(default)]
    pub(super) language: Option<String>,
    #[serde(default)]
    pub(super) system_prompts: Option<PathBuf>,
    #[serde(default)]
    pub(super) tones: Option<ToneRegion>,
    #[serde(default)]
    pub(super) timezone: Option<String>,
    #[serde(default)]
    pub(super) start: Option<String>,
    #[serde(default)]
    pub(super) blocked: Option<String>,
    #[serde(default)]
    pub(super) lists: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub(super) route: Vec<RawRoute>,
    #[serde(default)]
    pub(super) hours: BTreeMap<String, RawHours>,
    #[serde(default)]
    pub(super) business_hours: Option<String>,
    #[serde(default)]
    pub(super) lookups: RawLookups,
    #[serde(default)]
    pub(super) node: BTreeMap<String, RawNode>,
    /// Nodes campaigns pushed from headquarters may start at.
    #[serde(default)]
    pub(super) campaign_flows: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) dialled: Vec<String>,
    pub(super) start: String,
    #[serde(default)]
    pub(super) language: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum Prompts {
    One(String),
    Many(Vec<String>),
}

impl Prompts {
    pub(super) fn list(&self) -> Vec<&str> {
        match self {
            Prompts::One(s) => vec![s.as_str()],
            Prompts::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum RawNode {
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
    Conference(RawConference),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConference {
    pub(super) room: String,
    #[serde(default)]
    pub(super) on_refused: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMenu {
    pub(super) greeting: Prompts,
    #[serde(default)]
    pub(super) short_greeting: Option<Prompts>,
    #[serde(default)]
    pub(super) invalid: Option<Prompts>,
    #[serde(default)]
    pub(super) no_input: Option<Prompts>,
    #[serde(default)]
    pub(super) exit: Option<Prompts>,
    #[serde(default)]
    pub(super) first_digit_timeout: Option<String>,
    #[serde(default)]
    pub(super) inter_digit_timeout: Option<String>,
    #[serde(default)]
    pub(super) max_failures: Option<u32>,
    #[serde(default)]
    pub(super) max_timeouts: Option<u32>,
    #[serde(default)]
    pub(super) on_max_failures: Option<String>,
    #[serde(default)]
    pub(super) on_max_timeouts: Option<String>,
    #[serde(default)]
    pub(super) barge_in: Option<bool>,
    pub(super) options: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCollect {
    pub(super) var: String,
    pub(super) prompt: Prompts,
    #[serde(default)]
    pub(super) min: Option<usize>,
    #[serde(default)]
    pub(super) max: Option<usize>,
    #[serde(default)]
    pub(super) terminator: Option<String>,
    #[serde(default)]
    pub(super) pattern: Option<String>,
    #[serde(default)]
    pub(super) retries: Option<u32>,
    #[serde(default)]
    pub(super) invalid: Option<Prompts>,
    #[serde(default)]
    pub(super) no_input: Option<Prompts>,
    #[serde(default)]
    pub(super) first_digit_timeout: Option<String>,
    #[serde(default)]
    pub(super) inter_digit_timeout: Option<String>,
    #[serde(default)]
    pub(super) barge_in: Option<bool>,
    #[serde(default)]
    pub(super) recordable: bool,
    pub(super) next: String,
    #[serde(default)]
    pub(super) on_failure: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlay {
    pub(super) prompts: Prompts,
    #[serde(default)]
    pub(super) barge_in: bool,
    pub(super) next: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCase {
    #[serde(default)]
    pub(super) open: Option<String>,
    #[serde(default)]
    pub(super) holiday: Option<String>,
    #[serde(default)]
    pub(super) caller_in: Option<String>,
    #[serde(default)]
    pub(super) dialled: Option<Vec<String>>,
    #[serde(default)]
    pub(super) var: Option<String>,
    #[serde(default)]
    pub(super) equals: Option<String>,
    #[serde(default)]
    pub(super) matches: Option<String>,
    #[serde(default)]
    pub(super) language: Option<String>,
    #[serde(default)]
    pub(super) mode: Option<String>,
    pub(super) goto: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBranch {
    pub(super) cases: Vec<RawCase>,
    pub(super) default: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProductCheck {
    pub(super) var: String,
    pub(super) next: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrderStatus {
    pub(super) var: String,
    pub(super) statuses: BTreeMap<String, Prompts>,
    pub(super) next: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub(super) event: String,
    #[serde(default)]
    pub(super) fields: BTreeMap<String, String>,
    pub(super) next: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVoicemail {
    pub(super) mailbox: String,
    #[serde(default)]
    pub(super) prompt: Option<Prompts>,
    #[serde(default)]
    pub(super) max_length: Option<String>,
    #[serde(default)]
    pub(super) saved: Option<Prompts>,
    pub(super) next: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSurvey {
    #[serde(default)]
    pub(super) prompt: Option<Prompts>,
    #[serde(default)]
    pub(super) thanks: Option<Prompts>,
    #[serde(default)]
    pub(super) timeout: Option<String>,
    pub(super) next: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCallback {
    #[serde(default)]
    pub(super) queue: Option<String>,
    #[serde(default)]
    pub(super) prompt: Option<Prompts>,
    pub(super) next: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    #[serde(default)]
    pub(super) queue: Option<String>,
    #[serde(default)]
    pub(super) announce: Option<Prompts>,
    pub(super) on_overflow: String,
    #[serde(default)]
    pub(super) after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransfer {
    #[serde(default)]
    pub(super) station: Option<String>,
    #[serde(default)]
    pub(super) number: Option<String>,
    #[serde(default)]
    pub(super) trunks: Option<Vec<String>>,
    #[serde(default)]
    pub(super) announce: Option<Prompts>,
    #[serde(default)]
    pub(super) ring_timeout: Option<String>,
    pub(super) on_no_answer: String,
    #[serde(default)]
    pub(super) after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSet {
    pub(super) var: String,
    pub(super) value: String,
    #[serde(default)]
    pub(super) recordable: bool,
    pub(super) next: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHangup {
    #[serde(default)]
    pub(super) prompt: Option<Prompts>,
    #[serde(default)]
    pub(super) outcome: Option<String>,
}

/// An outbound voice job as written (`[[outbound]]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutbound {
    pub(super) name: String,
    pub(super) number: String,
    pub(super) start: String,
    #[serde(default)]
    pub(super) trunks: Option<Vec<String>>,
    #[serde(default)]
    pub(super) after: Option<String>,
    #[serde(default)]
    pub(super) language: Option<String>,
    #[serde(default)]
    pub(super) vars: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) ring_timeout: Option<String>,
    #[serde(default)]
    pub(super) retry_every: Option<String>,
    #[serde(default)]
    pub(super) max_attempts: Option<u32>,
    #[serde(default)]
    pub(super) success: Option<RawSuccess>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSuccess {
    pub(super) var: String,
    #[serde(rename = "in")]
    pub(super) values: Vec<String>,
}
