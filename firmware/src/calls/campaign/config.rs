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

/// `[campaigns]`: what all campaigns share.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCampaigns {
    #[serde(default)]
    dnc: Option<PathBuf>,
}

/// `[campaign.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCampaign {
    number: String,
    mode: String,
    start: String,
    list: PathBuf,
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
}

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
            Mode::Progressive { queue } | Mode::Predictive { queue, .. } => Some(queue),
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
}

impl Retry {
    /// The wait after an attempt that ended with `outcome`.
    pub fn after(&self, outcome: &str) -> Duration {
        match outcome {
            "busy" => self.busy,
            "congestion" => self.congestion,
            "failed" | "interrupted" => self.failed,
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
#[derive(Debug, Clone, Default)]
pub struct Campaigns {
    /// The campaigns.
    pub list: Vec<Arc<CampaignCfg>>,
    /// Numbers no campaign calls (`[campaigns] dnc`).
    pub dnc: HashSet<String>,
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
    raw.iter()
        .map(|(name, c)| (format!("campaign.{name}.start"), c.start.clone()))
        .collect()
}

/// What the campaign check needs of the rest of the site.
pub(crate) struct Site<'a> {
    pub(crate) ivr: Option<&'a Ivr>,
    /// The site has an `[ivr]` (that may have failed its own checks).
    pub(crate) ivr_written: bool,
    pub(crate) trunks: Vec<String>,
    pub(crate) queues: Vec<String>,
    pub(crate) base: &'a Path,
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
        let mode = match c.mode.as_str() {
            "agentless" => Some(Mode::Agentless),
            "progressive" | "predictive" => {
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
                            "a {} campaign connects answered contacts to agents: `{}` must be a `queue` node",
                            c.mode, c.start
                        ),
                    );
                }
                queue.filter(|q| site.queues.contains(q)).map(|queue| {
                    if c.mode == "predictive" {
                        Mode::Predictive {
                            queue,
                            abandon_cap: cap / 100.0,
                            max_ratio: ratio,
                        }
                    } else {
                        Mode::Progressive { queue }
                    }
                })
            }
            "preview" => {
                err(
                    p("mode"),
                    format!(
                        "mode `{}` is not in this firmware yet; use \"agentless\", \"progressive\" or \"predictive\"",
                        c.mode
                    ),
                );
                None
            }
            other => {
                err(
                    p("mode"),
                    format!(
                        "unknown mode `{other}`; use \"agentless\", \"progressive\" or \"predictive\""
                    ),
                );
                None
            }
        };
        let list_path = site.base.join(&c.list);
        if let Err(e) = super::list::header(&list_path) {
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
        };
        for key in c.retry.keys() {
            if !["busy", "no_answer", "congestion", "failed"].contains(&key.as_str()) {
                err(
                    format!("{at}.retry.{key}"),
                    format!(
                        "`{key}` is not an outcome to retry after: busy, no_answer, congestion, failed"
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
                list: list_path,
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
            }));
        }
    }
    if errs.is_empty() {
        Ok(Campaigns { list, dnc })
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
