//! `[campaign.NAME]` and `[campaigns]` as written, and their checks.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use serde::Deserialize;

use crate::ivr::Ivr;
use crate::ivr::config::NodeId;
use crate::ivr::hours::{Hours, RawHours};
use crate::ivr::say::Lang;
use crate::media::amd::AmdParams;

/// `[campaigns]`: what all campaigns share.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCampaigns {
    #[serde(default)]
    dnc: Option<PathBuf>,
    #[serde(default)]
    inbound_first: Option<bool>,
    #[serde(default)]
    reserve_trunks: Option<usize>,
}

/// `[campaign.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCampaign {
    number: String,
    mode: String,
    start: String,
    /// Required in the site config; a pushed campaign's list comes with
    /// the push.
    #[serde(default)]
    list: Option<PathBuf>,
    #[serde(default)]
    trunks: Option<Vec<String>>,
    #[serde(default)]
    max_lines: Option<usize>,
    #[serde(default)]
    ring_timeout: Option<String>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    max_per_day: Option<u32>,
    #[serde(default)]
    retry: BTreeMap<String, String>,
    #[serde(default)]
    window: Option<RawHours>,
    #[serde(default)]
    zones: BTreeMap<String, String>,
    #[serde(default)]
    success: Option<RawSuccess>,
    #[serde(default)]
    dnc: Option<PathBuf>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    abandon_cap: Option<f64>,
    #[serde(default)]
    max_ratio: Option<f64>,
    #[serde(default)]
    amd: Option<RawAmd>,
    #[serde(default)]
    preview_ring: Option<String>,
    #[serde(default)]
    priority: Option<i32>,
}

/// `[campaign.NAME.amd]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAmd {
    #[serde(default)]
    machine: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    done_after_message: bool,
    #[serde(default)]
    unsure: Option<String>,
    #[serde(default)]
    initial_silence: Option<String>,
    #[serde(default)]
    greeting: Option<String>,
    #[serde(default)]
    after_greeting_silence: Option<String>,
    #[serde(default)]
    total: Option<String>,
    #[serde(default)]
    min_word: Option<String>,
    #[serde(default)]
    between_words: Option<String>,
    #[serde(default)]
    max_words: Option<u32>,
    #[serde(default)]
    max_word: Option<String>,
    #[serde(default)]
    silence_threshold: Option<u32>,
    #[serde(default)]
    end_silence: Option<String>,
}

/// What a campaign does with a call answered by a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMachine {
    /// Hang up; the contact is called again after `retry.machine`.
    Hangup,
    /// Wait for the end of the greeting (the beep) and run the flow from
    /// this node (a message to leave).
    Message(NodeId),
    /// Go on as with a person.
    Human,
}

/// Answering-machine detection for a campaign's answered calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Amd {
    /// The detector's parameters.
    pub params: AmdParams,
    /// What to do with a machine.
    pub machine: OnMachine,
    /// A message left on a machine makes the contact done.
    pub done_after_message: bool,
    /// `unsure` goes on as with a person (else the box hangs up).
    pub unsure_human: bool,
    /// Silence in a row that ends a machine's greeting (after its beep).
    pub end_silence: Duration,
}

/// Longest wait for a machine's greeting to end.
pub const GREETING_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuccess {
    var: String,
    #[serde(rename = "in")]
    values: Vec<String>,
}

/// How a campaign's calls reach people.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Each answered contact runs the flow; no agent is needed.
    Agentless,
    /// Each contact is offered to a free agent of `queue`: their phone
    /// rings showing the contact, and by answering they start the call.
    Preview {
        /// The queue whose free agents take the contacts.
        queue: String,
        /// How long an agent's phone rings with a contact.
        ring: Duration,
    },
    /// A contact is dialled only while an agent of `queue` is free; the
    /// flow (a `queue` node) connects the answered contact to them.
    Progressive {
        /// The queue whose free agents pace the dialling.
        queue: String,
    },
    /// Dials ahead of the free agents of `queue` by a ratio learnt from
    /// the answer rate, never letting the share of answered contacts who
    /// found no agent (abandoned) go above `abandon_cap`.
    Predictive {
        /// The queue whose free agents pace the dialling.
        queue: String,
        /// Largest share of answered contacts abandoned (0.03: 3 %).
        abandon_cap: f64,
        /// Most calls dialled per free agent.
        max_ratio: f64,
    },
}

impl Mode {
    /// The queue that paces the dialling, if any.
    pub fn queue(&self) -> Option<&str> {
        match self {
            Mode::Agentless => None,
            Mode::Progressive { queue }
            | Mode::Predictive { queue, .. }
            | Mode::Preview { queue, .. } => Some(queue),
        }
    }
}

/// Waits before a contact is dialled again, by how the last attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// The line was busy.
    pub busy: Duration,
    /// Nobody answered (or the contact hung up before the flow finished
    /// what makes the attempt a success).
    pub no_answer: Duration,
    /// The network could not place the call.
    pub congestion: Duration,
    /// The call failed on the box's side.
    pub failed: Duration,
    /// An answering machine took the call.
    pub machine: Duration,
}

impl Retry {
    /// The wait after an attempt that ended with `outcome`.
    pub fn after(&self, outcome: &str) -> Duration {
        match outcome {
            "busy" => self.busy,
            "congestion" => self.congestion,
            "failed" | "interrupted" => self.failed,
            "machine" => self.machine,
            _ => self.no_answer,
        }
    }
}

/// A checked campaign.
#[derive(Debug, Clone)]
pub struct CampaignCfg {
    /// Its name (the table's): on every record's `job`.
    pub name: String,
    /// Presented to the contacts as the caller id.
    pub number: String,
    /// How calls reach people.
    pub mode: Mode,
    /// The flow's first node once a contact answers.
    pub start: NodeId,
    /// The contact list (CSV).
    pub list: PathBuf,
    /// Trunks to dial on.
    pub trunks: Vec<String>,
    /// Calls in progress at most.
    pub max_lines: usize,
    /// How long a contact's phone rings.
    pub ring_timeout: Duration,
    /// Attempts per contact in all.
    pub max_attempts: u32,
    /// Attempts per contact on one of their days.
    pub max_per_day: u32,
    /// Waits before trying again.
    pub retry: Retry,
    /// When contacts may be called, in their local time.
    pub window: Hours,
    /// Time zones by number prefix, longest first, for contacts the list
    /// gives none.
    pub zones: Vec<(String, TimeZone)>,
    /// A variable and the values that make an answered attempt a success
    /// (the contact is done); `None`: answered is enough.
    pub success: Option<(String, Vec<String>)>,
    /// The flow's language.
    pub language: Lang,
    /// This campaign's do-not-call numbers.
    pub dnc: HashSet<String>,
    /// Answering-machine detection, when on.
    pub amd: Option<Amd>,
    /// Campaigns sharing a trunk or a queue dial in this order, highest
    /// first: a campaign does not dial while one above it waits.
    pub priority: i32,
    /// The definition as written and its list's path: a campaign whose
    /// fingerprint changed is restarted with its new definition.
    pub fingerprint: String,
}

impl CampaignCfg {
    /// The zone a contact is called in: theirs, else by number prefix,
    /// else the window's.
    pub fn zone_of(&self, number: &str, own: Option<&str>) -> TimeZone {
        own.and_then(|z| TimeZone::get(z).ok())
            .or_else(|| {
                self.zones
                    .iter()
                    .find(|(p, _)| number.starts_with(p.as_str()))
                    .map(|(_, z)| z.clone())
            })
            .unwrap_or_else(|| self.window.timezone().clone())
    }
}

/// Every campaign of the site.
#[derive(Debug, Clone)]
pub struct Campaigns {
    /// The campaigns.
    pub list: Vec<Arc<CampaignCfg>>,
    /// Numbers no campaign calls (`[campaigns] dnc`).
    pub dnc: HashSet<String>,
    /// Callers waiting in a queue get its free agents before campaigns.
    pub inbound_first: bool,
    /// Trunks of its own a campaign leaves idle for callers.
    pub reserve_trunks: usize,
}

impl Default for Campaigns {
    fn default() -> Self {
        Campaigns {
            list: Vec::new(),
            dnc: HashSet::new(),
            inbound_first: true,
            reserve_trunks: 0,
        }
    }
}

impl Campaigns {
    /// Whether `number` may not be called by `c`.
    pub fn barred(&self, c: &CampaignCfg, number: &str) -> bool {
        self.dnc.contains(number) || c.dnc.contains(number)
    }
}

/// The IVR nodes campaigns start at, as `(key path, node name)`, for the
/// IVR's own checks (the node exists; it counts as reached).
pub(crate) fn starts(raw: &BTreeMap<String, RawCampaign>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, c) in raw {
        out.push((format!("campaign.{name}.start"), c.start.clone()));
        if let Some(m) = c.amd.as_ref().and_then(|a| a.message.as_ref()) {
            out.push((format!("campaign.{name}.amd.message"), m.clone()));
        }
    }
    out
}

/// What the campaign check needs of the rest of the site.
pub(crate) struct Site<'a> {
    pub(crate) ivr: Option<&'a Ivr>,
    /// The site has an `[ivr]` (that may have failed its own checks).
    pub(crate) ivr_written: bool,
    pub(crate) trunks: Vec<String>,
    pub(crate) queues: Vec<String>,
    pub(crate) base: &'a Path,
    /// A pushed campaign's list (the definition has none).
    pub(crate) list: Option<&'a Path>,
}

const DEFAULT_WINDOW: &str = "09:00-21:00";

/// Checks `[campaign.*]` and `[campaigns]`; errors are (key path, message).
pub(crate) fn check(
    shared: Option<&RawCampaigns>,
    raw: &BTreeMap<String, RawCampaign>,
    site: &Site<'_>,
) -> Result<Campaigns, Vec<(String, String)>> {
    let mut errs: Vec<(String, String)> = Vec::new();
    let mut err = |p: String, m: String| errs.push((p, m));
    let dnc = match shared.and_then(|s| s.dnc.as_ref()) {
        Some(p) => read_numbers(&site.base.join(p)).unwrap_or_else(|e| {
            err("campaigns.dnc".into(), e);
            HashSet::new()
        }),
        None => HashSet::new(),
    };
    let mut list = Vec::new();
    if !raw.is_empty() && !site.ivr_written {
        err(
            "campaign".into(),
            "campaigns run IVR flows when a contact answers; add an `[ivr]`".into(),
        );
    }
    for (name, c) in raw {
        let at = format!("campaign.{name}");
        let p = |k: &str| format!("{at}.{k}");
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            err(
                at.clone(),
                format!("campaign name `{name}` must be 1-64 letters, digits, `-` or `_`"),
            );
        }
        if !crate::calls::dialplan::valid_number(&c.number) {
            err(
                p("number"),
                format!("`{}` is not a number to present: 1-32 digits", c.number),
            );
        }
        let start = site
            .ivr
            .and_then(|ivr| ivr.nodes.iter().position(|n| n.name == c.start));
        let cap = c.abandon_cap.unwrap_or(3.0);
        if !(cap > 0.0 && cap <= 10.0) {
            err(
                p("abandon_cap"),
                format!("an abandon cap of {cap} %: above 0, at most 10 (regulators allow 3 %)"),
            );
        }
        let ratio = c.max_ratio.unwrap_or(2.5);
        if !(1.0..=5.0).contains(&ratio) {
            err(
                p("max_ratio"),
                format!("{ratio} calls per free agent: 1 to 5"),
            );
        }
        let preview_ring =
            wait(c.preview_ring.as_ref(), Duration::from_secs(20)).unwrap_or_else(|e| {
                err(p("preview_ring"), e);
                Duration::from_secs(20)
            });
        let mode = match c.mode.as_str() {
            "agentless" => Some(Mode::Agentless),
            "progressive" | "predictive" | "preview" => {
                let queue = site
                    .ivr
                    .zip(start)
                    .and_then(|(ivr, s)| match &ivr.nodes[s].kind {
                        crate::ivr::config::NodeKind::Queue { name, .. } => Some(name.clone()),
                        _ => None,
                    });
                if queue.is_none() && start.is_some() {
                    err(
                        p("start"),
                        format!(
                            "a {} campaign's contacts go to agents: `{}` must be a `queue` node (its queue's agents take them)",
                            c.mode, c.start
                        ),
                    );
                }
                queue
                    .filter(|q| site.queues.contains(q))
                    .map(|queue| match c.mode.as_str() {
                        "predictive" => Mode::Predictive {
                            queue,
                            abandon_cap: cap / 100.0,
                            max_ratio: ratio,
                        },
                        "preview" => Mode::Preview {
                            queue,
                            ring: preview_ring,
                        },
                        _ => Mode::Progressive { queue },
                    })
            }
            other => {
                err(
                    p("mode"),
                    format!(
                        "unknown mode `{other}`; use \"agentless\", \"preview\", \"progressive\" or \"predictive\""
                    ),
                );
                None
            }
        };
        let list_path = match (&c.list, site.list) {
            (None, Some(given)) => given.to_path_buf(),
            (Some(_), Some(_)) => {
                err(
                    p("list"),
                    "a pushed campaign's list comes with the push, not in its definition".into(),
                );
                PathBuf::new()
            }
            (Some(l), None) => site.base.join(l),
            (None, None) => {
                err(
                    at.clone(),
                    "a campaign needs `list`: the contact list's file".into(),
                );
                PathBuf::new()
            }
        };
        if !list_path.as_os_str().is_empty()
            && let Err(e) = super::list::header(&list_path)
        {
            err(p("list"), e);
        }
        let trunks = match &c.trunks {
            Some(t) => {
                for (i, tr) in t.iter().enumerate() {
                    if !site.trunks.contains(tr) {
                        err(
                            format!("{at}.trunks[{i}]"),
                            format!("`{tr}` is not a trunk line"),
                        );
                    }
                }
                t.clone()
            }
            None => site.trunks.clone(),
        };
        let max_lines = c.max_lines.unwrap_or(1);
        if max_lines == 0 || max_lines > 1000 {
            err(
                p("max_lines"),
                format!("{max_lines} lines: at least 1, at most 1000"),
            );
        }
        let mut duration =
            |key: String, s: Option<&String>, default: Duration| match wait(s, default) {
                Ok(d) => d,
                Err(e) => {
                    err(key, e);
                    default
                }
            };
        let ring_timeout = duration(
            p("ring_timeout"),
            c.ring_timeout.as_ref(),
            Duration::from_secs(30),
        );
        let r = |k: &str| c.retry.get(k);
        let retry = Retry {
            busy: duration(
                format!("{at}.retry.busy"),
                r("busy"),
                Duration::from_secs(600),
            ),
            no_answer: duration(
                format!("{at}.retry.no_answer"),
                r("no_answer"),
                Duration::from_secs(3600),
            ),
            congestion: duration(
                format!("{at}.retry.congestion"),
                r("congestion"),
                Duration::from_secs(300),
            ),
            failed: duration(
                format!("{at}.retry.failed"),
                r("failed"),
                Duration::from_secs(1800),
            ),
            machine: duration(
                format!("{at}.retry.machine"),
                r("machine"),
                Duration::from_secs(7200),
            ),
        };
        let amd = c.amd.as_ref().map(|a| {
            let p = |k: &str| format!("{at}.amd.{k}");
            let d = AmdParams::default();
            let params = AmdParams {
                initial_silence: duration(
                    p("initial_silence"),
                    a.initial_silence.as_ref(),
                    d.initial_silence,
                ),
                greeting: duration(p("greeting"), a.greeting.as_ref(), d.greeting),
                after_greeting_silence: duration(
                    p("after_greeting_silence"),
                    a.after_greeting_silence.as_ref(),
                    d.after_greeting_silence,
                ),
                total: duration(p("total"), a.total.as_ref(), d.total),
                min_word: duration(p("min_word"), a.min_word.as_ref(), d.min_word),
                between_words: duration(
                    p("between_words"),
                    a.between_words.as_ref(),
                    d.between_words,
                ),
                max_words: a.max_words.unwrap_or(d.max_words),
                max_word: duration(p("max_word"), a.max_word.as_ref(), d.max_word),
                silence_threshold: a.silence_threshold.unwrap_or(d.silence_threshold),
            };
            let end_silence = duration(
                p("end_silence"),
                a.end_silence.as_ref(),
                Duration::from_millis(1200),
            );
            (a, params, end_silence)
        });
        let amd = amd.and_then(|(a, params, end_silence)| {
            let p = |k: &str| format!("{at}.amd.{k}");
            if params.max_words == 0 || params.max_words > 20 {
                err(
                    p("max_words"),
                    format!("{} words: 1 to 20", params.max_words),
                );
            }
            if params.silence_threshold == 0 || params.silence_threshold > 8000 {
                err(
                    p("silence_threshold"),
                    format!(
                        "a level of {}: 1 to 8000 (mean absolute sample)",
                        params.silence_threshold
                    ),
                );
            }
            if params.total > Duration::from_secs(30) {
                err(
                    p("total"),
                    "an analysis longer than 30 s keeps every caller waiting".into(),
                );
            }
            let message = a.message.as_ref().map(|m| {
                site.ivr
                    .and_then(|ivr| ivr.nodes.iter().position(|n| &n.name == m))
            });
            let machine = match (a.machine.as_deref().unwrap_or("hangup"), message) {
                ("hangup", None) => Some(OnMachine::Hangup),
                ("human", None) => Some(OnMachine::Human),
                ("message", Some(node)) => node.map(OnMachine::Message),
                ("message", None) => {
                    err(
                        p("message"),
                        "`machine = \"message\"` needs `message`: the flow node that speaks it"
                            .into(),
                    );
                    None
                }
                ("hangup" | "human", Some(_)) => {
                    err(
                        p("message"),
                        "a message is left only with `machine = \"message\"`".into(),
                    );
                    None
                }
                (other, _) => {
                    err(
                        p("machine"),
                        format!(
                            "unknown action `{other}`; use \"hangup\", \"message\" or \"human\""
                        ),
                    );
                    None
                }
            };
            let unsure_human = match a.unsure.as_deref().unwrap_or("human") {
                "human" => true,
                "hangup" => false,
                other => {
                    err(
                        p("unsure"),
                        format!("unknown action `{other}`; use \"human\" or \"hangup\""),
                    );
                    true
                }
            };
            Some(Amd {
                params,
                machine: machine?,
                done_after_message: a.done_after_message,
                unsure_human,
                end_silence,
            })
        });
        for key in c.retry.keys() {
            if !["busy", "no_answer", "congestion", "failed", "machine"].contains(&key.as_str()) {
                err(
                    format!("{at}.retry.{key}"),
                    format!(
                        "`{key}` is not an outcome to retry after: busy, no_answer, congestion, failed, machine"
                    ),
                );
            }
        }
        let max_attempts = c.max_attempts.unwrap_or(3);
        if !(1..=20).contains(&max_attempts) {
            err(
                p("max_attempts"),
                format!("{max_attempts} attempts: 1 to 20"),
            );
        }
        let max_per_day = c.max_per_day.unwrap_or(max_attempts);
        if max_per_day == 0 {
            err(
                p("max_per_day"),
                "0 attempts a day would never call anyone".into(),
            );
        }
        let default_window = RawHours::every_day(DEFAULT_WINDOW);
        let window = Hours::check(
            c.window.as_ref().unwrap_or(&default_window),
            "Asia/Shanghai",
            &p("window"),
            &mut |k, m| err(k, m),
        );
        if window.as_ref().is_some_and(Hours::never_opens) {
            err(
                p("window"),
                "the calling window never opens: give at least one day a span".into(),
            );
        }
        let mut zones = Vec::new();
        for (prefix, zone) in &c.zones {
            if prefix.is_empty() || !prefix.chars().all(|ch| ch.is_ascii_digit() || ch == '+') {
                err(
                    format!("{at}.zones"),
                    format!("`{prefix}` is not a number prefix"),
                );
            }
            match TimeZone::get(zone) {
                Ok(z) => zones.push((prefix.clone(), z)),
                Err(e) => err(
                    format!("{at}.zones"),
                    format!("unknown time zone `{zone}` ({e})"),
                ),
            }
        }
        zones.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        let language = match &c.language {
            None => site.ivr.map_or(Lang::Zh, |i| i.language),
            Some(l) => Lang::parse(l).unwrap_or_else(|| {
                err(
                    p("language"),
                    format!("unknown language `{l}`; use \"zh\" or \"en\""),
                );
                Lang::Zh
            }),
        };
        let own_dnc = match &c.dnc {
            Some(path) => read_numbers(&site.base.join(path)).unwrap_or_else(|e| {
                err(p("dnc"), e);
                HashSet::new()
            }),
            None => HashSet::new(),
        };
        if let (Some(start), Some(mode), Some(window)) = (start, mode, window) {
            list.push(Arc::new(CampaignCfg {
                name: name.clone(),
                number: c.number.clone(),
                mode,
                start,
                trunks,
                max_lines,
                ring_timeout,
                max_attempts,
                max_per_day,
                retry,
                window,
                zones,
                success: c
                    .success
                    .as_ref()
                    .map(|s| (s.var.clone(), s.values.clone())),
                language,
                dnc: own_dnc,
                amd,
                priority: c.priority.unwrap_or(0),
                fingerprint: format!("{c:?}|{}", list_path.display()),
                list: list_path,
            }));
        }
    }
    let reserve_trunks = shared.and_then(|s| s.reserve_trunks).unwrap_or(0);
    for c in &list {
        if reserve_trunks >= c.trunks.len() {
            errs.push((
                "campaigns.reserve_trunks".into(),
                format!(
                    "{reserve_trunks} trunks kept idle for callers leave campaign `{}` none of its {} to dial on",
                    c.name,
                    c.trunks.len()
                ),
            ));
        }
    }
    if errs.is_empty() {
        Ok(Campaigns {
            list,
            dnc,
            inbound_first: shared.and_then(|s| s.inbound_first).unwrap_or(true),
            reserve_trunks,
        })
    } else {
        Err(errs)
    }
}

/// A duration as written (`"30s"`, `"2h"`), above zero.
fn wait(s: Option<&String>, default: Duration) -> Result<Duration, String> {
    match s {
        None => Ok(default),
        Some(s) => match humantime::parse_duration(s) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err("a wait of zero".into()),
            Err(e) => Err(format!(
                "`{s}` is not a duration like \"30s\" or \"2h\" ({e})"
            )),
        },
    }
}

/// A do-not-call file: one number per line (`#` comments, blank lines and
/// a `number` header are skipped).
fn read_numbers(path: &Path) -> Result<HashSet<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split(',').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#') && *l != "number")
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_read_in_its_zone() {
        let raw: RawCampaign = toml::from_str(
            "number = \"4008001234\"\nmode = \"agentless\"\nstart = \"s\"\nlist = \"l.csv\"\n[window]\ntimezone = \"Asia/Shanghai\"\nmon = [\"09:00-18:00\"]\n",
        )
        .unwrap();
        let w = Hours::check(raw.window.as_ref().unwrap(), "UTC", "w", &mut |_, m| {
            panic!("{m}")
        })
        .unwrap();
        let eight = "2026-11-23T00:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond();
        assert!(!w.is_open_in(eight, w.timezone()));
        assert_eq!(
            w.next_open_in(eight, w.timezone()),
            Some(
                "2026-11-23T01:00:00Z"
                    .parse::<jiff::Timestamp>()
                    .unwrap()
                    .as_millisecond()
            )
        );
    }
}
