//! The site config: one TOML file an office admin edits.
//!
//! The file is parsed into raw serde structs (unknown keys are errors), then
//! checked once by [`SiteConfig::load`], which reports *every* problem with
//! its place in the file and returns a fully resolved [`SiteConfig`]: prompt
//! files loaded and decoded, durations parsed, line references checked. Code
//! past this point never sees raw config and never fails on it. The format is
//! documented in `docs/config.md`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use callbox_contract::{ID_RULE, valid_id};
use callbox_hal::diag::{Diagnostic, Diagnostics, TomlSource, parse_duration};
use callbox_hal::{LineInfo, LineKind};
use serde::Deserialize;

use crate::calls::Inbound;
use crate::prompt::Prompt;

mod campaigns;
mod sip;

/// Where the box keeps its database and recordings unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/callbox";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    site: RawSiteInfo,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    hal: RawHal,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    line: Vec<RawLine>,
    #[serde(default)]
    prompts: RawPrompts,
    inbound: RawInbound,
    #[serde(default)]
    ivr: Option<crate::ivr::config::RawIvr>,
    #[serde(default)]
    outbound: Vec<crate::ivr::config::RawOutbound>,
    #[serde(default)]
    acd: Option<crate::acd::config::RawAcd>,
    #[serde(default)]
    recording: Option<crate::recorder::config::RawRecording>,
    #[serde(default)]
    uplink: Option<crate::sync::config::RawUplink>,
    #[serde(default)]
    console: Option<crate::console::config::RawConsole>,
    #[serde(default)]
    board: Option<callbox_hal::analog::board::RawBoard>,
    #[serde(default)]
    sip: Option<sip::RawSip>,
    #[serde(default)]
    dialplan: Option<crate::calls::dialplan::RawDialPlan>,
    #[serde(default)]
    conference: std::collections::BTreeMap<String, crate::media::conference::RawRoom>,
    #[serde(default)]
    voicemail: Option<crate::voicemail::RawVoicemail>,
    #[serde(default)]
    campaign: std::collections::BTreeMap<String, crate::calls::campaign::config::RawCampaign>,
    #[serde(default)]
    campaigns: Option<crate::calls::campaign::config::RawCampaigns>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSiteInfo {
    id: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default = "default_level")]
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: default_level(),
        }
    }
}

fn default_level() -> String {
    "info".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHal {
    #[serde(default = "default_backend")]
    backend: String,
}

impl Default for RawHal {
    fn default() -> Self {
        RawHal {
            backend: default_backend(),
        }
    }
}

fn default_backend() -> String {
    "sim".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    #[serde(default)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    id: String,
    kind: String,
    #[serde(default)]
    #[allow(dead_code)] // shown to people reading the file; not used by the box
    description: Option<String>,
    #[serde(default)]
    sip: Option<sip::RawLineSip>,
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    did_digits: Option<usize>,
    #[serde(default)]
    down_alarm: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrompts {
    #[serde(default = "default_prompt_dir")]
    dir: PathBuf,
}

impl Default for RawPrompts {
    fn default() -> Self {
        RawPrompts {
            dir: default_prompt_dir(),
        }
    }
}

fn default_prompt_dir() -> PathBuf {
    "prompts".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInbound {
    #[serde(default)]
    greeting: Option<String>,
    #[serde(default)]
    answer_after: Option<String>,
    #[serde(default)]
    ringback: Option<String>,
    #[serde(default)]
    lines: Option<Vec<String>>,
}

/// A checked site config.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// Site id (in records and the fleet link's MQTT topics).
    pub site_id: String,
    /// Human name of the site.
    pub site_name: String,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`).
    pub log_level: String,
    /// HAL backend name.
    pub backend: String,
    /// Data directory from the file, if set.
    pub data_dir: Option<PathBuf>,
    /// Lines, in file order.
    pub lines: Vec<LineInfo>,
    /// Inbound call handling.
    pub inbound: Inbound,
    /// The IVR and outbound jobs, when the site has an `[ivr]` section.
    pub ivr: Option<crate::ivr::Ivr>,
    /// Agents and queues, when the site has an `[acd]` section.
    pub acd: Option<crate::acd::AcdConfig>,
    /// Recording policy, when the site has a `[recording]` section.
    pub recording: Option<crate::recorder::config::RecordingConfig>,
    /// The fleet link, when the site has an `[uplink]` section.
    pub uplink: Option<crate::sync::config::UplinkConfig>,
    /// The web console, when the site has a `[console]` section.
    pub console: Option<crate::console::ConsoleConfig>,
    /// The folder of the site's prompts (`[prompts] dir`).
    pub prompt_dir: PathBuf,
    /// How the line-interface board is wired (analog backend).
    pub board: Option<callbox_hal::analog::board::Board>,
    /// SIP settings and the lines that speak SIP.
    pub sip: Option<callbox_hal::sip::SipArgs>,
    /// What numbers keyed on stations reach, when the site has a
    /// `[dialplan]`.
    pub dialplan: Option<crate::calls::dialplan::DialPlan>,
    /// Voicemail boxes, when the site has a `[voicemail]` section.
    pub voicemail: Option<crate::voicemail::VoicemailCfg>,
    /// Outbound campaigns (`[campaign.NAME]`).
    pub campaigns: Arc<crate::calls::campaign::Campaigns>,
}

const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
/// Longest ringing before answer an admin may configure; past this most
/// networks give up on the call anyway.
const MAX_ANSWER_AFTER: Duration = Duration::from_secs(60);
/// The shortest and longest hold before a trunk that is down raises its
/// alarm (`[[line]] down_alarm`).
const MIN_DOWN_ALARM: Duration = Duration::from_secs(5);
const MAX_DOWN_ALARM: Duration = Duration::from_secs(24 * 3600);

impl SiteConfig {
    /// Reads and checks a site config file.
    pub fn load(path: &Path) -> Result<SiteConfig, Diagnostics> {
        let src = TomlSource::read(path)?;
        SiteConfig::from_source(&src)
    }

    /// Checks a site config already read (built-in demo, tests).
    pub fn from_source(src: &TomlSource) -> Result<SiteConfig, Diagnostics> {
        let raw: RawSite = src.parse()?;
        let mut errs: Vec<Diagnostic> = Vec::new();
        let mut err = |path: &str, msg: String| errs.push(src.at_path(path, msg));

        if !valid_id(&raw.site.id) {
            err(
                "site.id",
                format!("site id `{}` must be {ID_RULE}", raw.site.id),
            );
        }
        if !LEVELS.contains(&raw.log.level.as_str()) {
            err(
                "log.level",
                format!(
                    "unknown log level `{}`; use one of {}",
                    raw.log.level,
                    LEVELS.join(", ")
                ),
            );
        }
        let backends = callbox_hal::registry::names();
        if !backends.contains(&raw.hal.backend.as_str()) {
            err(
                "hal.backend",
                format!(
                    "unknown backend `{}`; this build has: {}",
                    raw.hal.backend,
                    backends.join(", ")
                ),
            );
        }

        let mut lines = Vec::new();
        let mut seen = HashSet::new();
        // The ids each `[[line]]` stands for: itself, or its channels.
        let mut channel_ids: Vec<Vec<String>> = Vec::new();
        // Each `[[line]]`'s kind, `None` when it is not one.
        let mut kinds: Vec<Option<LineKind>> = Vec::new();
        // The numbers trunks answer for, by line id.
        let mut numbers = HashMap::new();
        // How many DID digits the exchange sends after seizure, by line id.
        let mut did_digits = HashMap::new();
        // How long each trunk may be down before its alarm.
        let mut down_alarms = HashMap::new();
        for (i, l) in raw.line.iter().enumerate() {
            let ids = match l.kind.as_str() {
                "trunk" => sip::channel_ids(&l.id, l.sip.as_ref()),
                _ => vec![l.id.clone()],
            };
            channel_ids.push(ids.clone());
            kinds.push(None);
            if !valid_id(&l.id) {
                err(
                    &format!("line[{i}].id"),
                    format!("line id `{}` must be {ID_RULE}", l.id),
                );
            } else if let Some(dup) = ids.iter().find(|id| !seen.insert((*id).clone())) {
                err(
                    &format!("line[{i}].id"),
                    format!("line `{dup}` is defined twice"),
                );
            }
            let kind = match l.kind.as_str() {
                "trunk" => LineKind::Trunk,
                "station" => LineKind::Station,
                other => {
                    err(
                        &format!("line[{i}].kind"),
                        format!(
                            "unknown line kind `{other}`; use \"trunk\" (towards the carrier) or \"station\" (an agent's phone)"
                        ),
                    );
                    continue;
                }
            };
            kinds[i] = Some(kind);
            if let Some(n) = &l.number {
                if kind != LineKind::Trunk {
                    err(
                        &format!("line[{i}].number"),
                        "`number` is the number a trunk answers for; a station has none".into(),
                    );
                } else if !crate::calls::dialplan::valid_number(n) {
                    err(
                        &format!("line[{i}].number"),
                        format!("number `{n}` must be 1-32 digits (0-9), optionally after a `+`"),
                    );
                } else {
                    for id in &ids {
                        numbers.insert(id.clone(), n.clone());
                    }
                }
            }
            if let Some(n) = l.did_digits {
                if kind != LineKind::Trunk || l.sip.is_some() {
                    err(
                        &format!("line[{i}].did_digits"),
                        "`did_digits` is for analog trunks whose exchange sends the dialled number as DTMF after the box answers; SIP calls carry theirs".into(),
                    );
                } else if !(1..=16).contains(&n) {
                    err(
                        &format!("line[{i}].did_digits"),
                        format!("{n} DID digits: an exchange sends 1 to 16"),
                    );
                } else {
                    for id in &ids {
                        did_digits.insert(id.clone(), n);
                    }
                }
            }
            if let Some(s) = &l.down_alarm {
                let at = format!("line[{i}].down_alarm");
                match parse_duration(s) {
                    Ok(_) if kind != LineKind::Trunk => err(
                        &at,
                        "`down_alarm` is for trunks: a phone that is not registered is no alarm"
                            .into(),
                    ),
                    Ok(d) if !(MIN_DOWN_ALARM..=MAX_DOWN_ALARM).contains(&d) => {
                        err(&at, format!("down_alarm of {s}: from 5s to 24h"))
                    }
                    Ok(d) => {
                        for id in &ids {
                            down_alarms.insert(id.clone(), d);
                        }
                    }
                    Err(e) => err(&at, e),
                }
            }
            lines.extend(ids.into_iter().map(|id| LineInfo { id, kind }));
        }
        if !lines.iter().any(|l| l.kind == LineKind::Trunk) {
            err("line", "the site needs at least one `[[line]]` with `kind = \"trunk\"` for calls to arrive on".into());
        }

        let answer_after = match &raw.inbound.answer_after {
            None => Duration::ZERO,
            Some(s) => match parse_duration(s) {
                Ok(d) if d > MAX_ANSWER_AFTER => {
                    err(
                        "inbound.answer_after",
                        format!(
                            "answer_after of {s} is longer than the {}s allowed",
                            MAX_ANSWER_AFTER.as_secs()
                        ),
                    );
                    d
                }
                Ok(d) => d,
                Err(e) => {
                    err("inbound.answer_after", e);
                    Duration::ZERO
                }
            },
        };

        let inbound_lines = match &raw.inbound.lines {
            None => lines
                .iter()
                .filter(|l| l.kind == LineKind::Trunk)
                .map(|l| l.id.clone())
                .collect(),
            Some(ids) => {
                let mut named = Vec::new();
                for (i, id) in ids.iter().enumerate() {
                    // A trunk with channels is named by its own id.
                    let group = raw
                        .line
                        .iter()
                        .zip(&channel_ids)
                        .find(|(l, chans)| &l.id == id && chans.len() > 1);
                    if let Some((_, chans)) = group {
                        named.extend(chans.iter().cloned());
                        continue;
                    }
                    named.push(id.clone());
                    match lines.iter().find(|l| &l.id == id) {
                        None => err(
                            &format!("inbound.lines[{i}]"),
                            format!(
                                "`{id}` is not a line defined in this file (see the `[[line]]` tables)"
                            ),
                        ),
                        Some(l) if l.kind != LineKind::Trunk => err(
                            &format!("inbound.lines[{i}]"),
                            format!(
                                "`{id}` is a {} line; inbound calls arrive on trunk lines",
                                l.kind
                            ),
                        ),
                        Some(_) => {}
                    }
                }
                named
            }
        };

        let prompt_dir = src.base_dir().join(&raw.prompts.dir);
        let greeting = match &raw.inbound.greeting {
            Some(g) => match Prompt::load(&prompt_dir, g) {
                Ok(p) => Some(Some(p)),
                Err(e) => {
                    err("inbound.greeting", e.to_string());
                    None
                }
            },
            None if raw.ivr.is_none() => {
                err(
                    "inbound",
                    "a site without an `[ivr]` needs `greeting`, the prompt every caller hears"
                        .into(),
                );
                None
            }
            None => Some(None),
        };
        let ringback = raw.inbound.ringback.as_ref().and_then(|r| {
            if answer_after.is_zero() {
                err(
                    "inbound.ringback",
                    "the ringback plays while a call rings, and calls are answered at once: set `answer_after` too".into(),
                );
            }
            Prompt::load(&prompt_dir, r)
                .map_err(|e| err("inbound.ringback", e.to_string()))
                .ok()
        });
        if raw.ivr.is_none() && !raw.outbound.is_empty() {
            err(
                "outbound",
                "outbound jobs run IVR nodes; add an `[ivr]` section".into(),
            );
        }
        let acd = match &raw.acd {
            None => None,
            Some(a) => match crate::acd::config::check(a, &lines) {
                Ok(a) => Some(a),
                Err(list) => {
                    for (path, msg) in list {
                        err(&path, msg);
                    }
                    None
                }
            },
        };
        if raw.ivr.is_none()
            && let Some(number) = raw
                .dialplan
                .as_ref()
                .and_then(|d| d.access_numbers().next())
        {
            err(
                &format!("dialplan.access.{number}"),
                "access numbers start IVR nodes; add an `[ivr]`".into(),
            );
        }
        let rooms = crate::media::conference::check(&raw.conference).unwrap_or_else(|list| {
            for (path, msg) in list {
                err(&path, msg);
            }
            Vec::new()
        });
        let dialplan = raw.dialplan.as_ref().and_then(|d| {
            let agents: Vec<(String, Option<String>)> = acd
                .as_ref()
                .map(|a| {
                    a.agents
                        .iter()
                        .map(|a| (a.id.clone(), a.number.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let slots = acd
                .as_ref()
                .and_then(|a| a.park.as_ref())
                .map(|p| p.slots.clone())
                .unwrap_or_default();
            crate::calls::dialplan::check(d, &lines, &agents, &rooms, &slots)
                .map_err(|list| {
                    for (path, msg) in list {
                        err(&path, msg);
                    }
                })
                .ok()
        });
        let mut other_files = Vec::new();
        let ivr = match &raw.ivr {
            None => None,
            Some(r) => match crate::ivr::config::check(
                r,
                &crate::ivr::config::Starts {
                    outbound: &raw.outbound,
                    access: raw
                        .dialplan
                        .as_ref()
                        .map(crate::calls::dialplan::access_nodes)
                        .unwrap_or_default()
                        .into_iter()
                        .chain(crate::calls::campaign::config::starts(&raw.campaign))
                        .collect(),
                    rooms: rooms.clone(),
                    voicemail: raw.voicemail.is_some(),
                },
                &src.base_dir(),
                &prompt_dir,
                &lines,
                acd.as_ref(),
                raw.acd.is_some() && acd.is_none(),
            ) {
                Ok(ivr) => Some(ivr),
                Err((here, elsewhere)) => {
                    for (path, msg) in here {
                        err(&path, msg);
                    }
                    other_files = elsewhere;
                    None
                }
            },
        };
        let campaigns = crate::calls::campaign::config::check(
            raw.campaigns.as_ref(),
            &raw.campaign,
            &crate::calls::campaign::config::Site {
                ivr: ivr.as_ref(),
                ivr_written: raw.ivr.is_some(),
                trunks: lines
                    .iter()
                    .filter(|l| l.kind == LineKind::Trunk)
                    .map(|l| l.id.clone())
                    .collect(),
                queues: acd
                    .as_ref()
                    .map(|a| a.queues.iter().map(|q| q.name.clone()).collect())
                    .unwrap_or_default(),
                base: &src.base_dir(),
                list: None,
            },
        )
        .unwrap_or_else(|list| {
            for (path, msg) in list {
                err(&path, msg);
            }
            Default::default()
        });
        let recording = match &raw.recording {
            None => None,
            Some(r) => {
                let consent = match r.consent_prompt() {
                    None => None,
                    Some(name) => match Prompt::load(&prompt_dir, name) {
                        Ok(p) => Some(p),
                        Err(e) => {
                            err("recording.consent_prompt", e.to_string());
                            None
                        }
                    },
                };
                let queues: Option<Vec<String>> = acd
                    .as_ref()
                    .map(|a| a.queues.iter().map(|q| q.name.clone()).collect());
                let agents: Option<Vec<String>> = acd
                    .as_ref()
                    .map(|a| a.agents.iter().map(|a| a.id.clone()).collect());
                let flows: Option<Vec<String>> = ivr
                    .as_ref()
                    .map(|i| i.nodes.iter().map(|n| n.name.clone()).collect());
                let (queues, agents, flows) = (
                    queues.or_else(|| raw.acd.is_none().then(Vec::new)),
                    agents.or_else(|| raw.acd.is_none().then(Vec::new)),
                    flows.or_else(|| raw.ivr.is_none().then(Vec::new)),
                );
                match crate::recorder::config::check(
                    r,
                    consent,
                    queues.as_deref(),
                    agents.as_deref(),
                    flows.as_deref(),
                ) {
                    Ok(c) => Some(c),
                    Err(list) => {
                        for (path, msg) in list {
                            err(&path, msg);
                        }
                        None
                    }
                }
            }
        };
        if raw.voicemail.is_some() && raw.ivr.is_none() {
            err(
                "voicemail",
                "voicemail boxes speak with the IVR's prompts and take messages in its `voicemail` nodes; add an `[ivr]`".into(),
            );
        }
        let voicemail = raw.voicemail.as_ref().and_then(|v| {
            let mut known = crate::voicemail::Known {
                encrypted: recording.as_ref().is_some_and(|r| r.recipients.is_some()),
                codes: vec![crate::daynight::CODE],
                ..Default::default()
            };
            if let Some(a) = &acd {
                known.agents = a
                    .agents
                    .iter()
                    .map(|a| (a.id.as_str(), a.number.as_deref()))
                    .collect();
                known.queues = a
                    .queues
                    .iter()
                    .map(|q| {
                        let members = q
                            .members
                            .iter()
                            .map(|(i, _)| a.agents[*i].id.as_str())
                            .collect();
                        (q.name.as_str(), members)
                    })
                    .collect();
                let c = &a.codes;
                known.codes.extend(
                    [
                        &c.login, &c.logout, &c.pause, &c.unpause, &c.dnd, &c.wrap, &c.listen,
                        &c.whisper, &c.barge, &c.pickup,
                    ]
                    .map(String::as_str),
                );
            }
            crate::voicemail::check(v, &known)
                .map_err(|list| {
                    for (path, msg) in list {
                        err(&path, msg);
                    }
                })
                .ok()
        });

        let uplink = match &raw.uplink {
            None => None,
            Some(u) => match crate::sync::config::check(u, &src.base_dir()) {
                Ok(u) => Some(u),
                Err(list) => {
                    for (path, msg) in list {
                        err(&path, msg);
                    }
                    None
                }
            },
        };

        let console = raw.console.as_ref().and_then(|c| {
            // A call script is for a queue or a campaign.
            let names: Vec<String> = acd
                .iter()
                .flat_map(|a| a.queues.iter().map(|q| q.name.clone()))
                .chain(raw.campaign.keys().cloned())
                .collect();
            crate::console::config::check(c, &src.base_dir(), &names)
                .map_err(|list| {
                    for (path, msg) in list {
                        err(&path, msg);
                    }
                })
                .ok()
        });

        let board = match (&raw.board, raw.hal.backend.as_str()) {
            (None, "analog") => {
                err(
                    "hal.backend",
                    "the analog backend needs a `[board]` table describing the line interface (docs/hardware.md)".into(),
                );
                None
            }
            (None, _) => None,
            (Some(b), backend) => {
                if backend != "analog" {
                    err(
                        "board",
                        format!(
                            "`[board]` describes the analog backend's wiring; this site uses backend `{backend}`"
                        ),
                    );
                }
                match b.check(&lines) {
                    Ok(b) => Some(b),
                    Err(list) => {
                        for (path, msg) in list {
                            err(&path, msg);
                        }
                        None
                    }
                }
            }
        };

        let sip_lines: Vec<_> = raw
            .line
            .iter()
            .zip(&channel_ids)
            .zip(&kinds)
            .enumerate()
            .filter_map(|(i, ((l, ids), kind))| Some((i, ids, (*kind)?, l.sip.as_ref()?)))
            .flat_map(|(i, ids, kind, sip)| ids.iter().map(move |id| (i, id.clone(), kind, sip)))
            .collect();
        let sip = sip::check(&src.base_dir(), raw.sip.as_ref(), &sip_lines, &mut err);

        errs.extend(other_files);

        match greeting {
            Some(greeting) if errs.is_empty() => Ok(SiteConfig {
                path: src.path().to_path_buf(),
                site_name: raw.site.name.unwrap_or_else(|| raw.site.id.clone()),
                site_id: raw.site.id,
                log_level: raw.log.level,
                backend: raw.hal.backend,
                data_dir: raw.storage.data_dir.map(|d| src.base_dir().join(d)),
                lines,
                inbound: Inbound {
                    greeting,
                    answer_after,
                    ringback,
                    lines: inbound_lines,
                    numbers,
                    did_digits,
                    down_alarms,
                },
                ivr,
                acd,
                recording,
                uplink,
                console,
                prompt_dir,
                board,
                sip,
                dialplan,
                voicemail,
                campaigns: Arc::new(campaigns),
            }),
            _ => Err(Diagnostics(errs)),
        }
    }
}

impl SiteConfig {
    /// The call-facing parts of this config, as calls run by them.
    pub fn call_snapshot(&self) -> crate::calls::Snapshot {
        crate::calls::Snapshot {
            inbound: Arc::new(self.inbound.clone()),
            ivr: self.ivr.clone().map(Arc::new),
            dialplan: self.dialplan.clone().map(Arc::new),
            voicemail: self.voicemail.clone().map(Arc::new),
            campaigns: self.campaigns.clone(),
        }
    }

    /// The policy the recorder runs by: `[recording]` (or recording off,
    /// the recorder still writes voicemail), keeping undelivered
    /// recordings while an `[uplink]` can deliver them.
    pub fn recorder_config(&self) -> crate::recorder::config::RecordingConfig {
        let mut c = self.recording.clone().unwrap_or_default();
        c.require_delivery = self.uplink.is_some();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with_prompt() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("prompts")).unwrap();
        callbox_hal::wav::write_pcm16_mono(&d.path().join("prompts/hello.wav"), 8000, &[0; 8000])
            .unwrap();
        d
    }

    fn load(dir: &Path, text: &str) -> Result<SiteConfig, Diagnostics> {
        let p = dir.join("site.toml");
        std::fs::write(&p, text).unwrap();
        SiteConfig::load(&p)
    }

    const GOOD: &str = r#"
[site]
id = "branch-1"

[[line]]
id = "trunk-1"
kind = "trunk"

[[line]]
id = "desk-1"
kind = "station"

[inbound]
greeting = "hello.wav"
answer_after = "2s"
"#;

    #[test]
    fn a_good_config_resolves_everything() {
        let d = dir_with_prompt();
        let c = load(d.path(), GOOD).unwrap();
        assert_eq!(c.site_id, "branch-1");
        assert_eq!(c.inbound.lines, vec!["trunk-1"]);
        assert_eq!(c.inbound.answer_after, Duration::from_secs(2));
        assert_eq!(
            c.inbound.greeting.as_ref().map(Prompt::duration),
            Some(Duration::from_secs(1))
        );
        assert_eq!(c.backend, "sim");
    }

    #[test]
    fn a_trunk_with_channels_is_that_many_lines_and_inbound_names_them_by_its_id() {
        let d = dir_with_prompt();
        let text = r#"
[site]
id = "branch-1"

[hal]
backend = "sip"

[[line]]
id = "carrier"
kind = "trunk"
sip = { peer = "203.0.113.5", channels = 3 }

[[line]]
id = "local"
kind = "trunk"

[inbound]
greeting = "hello.wav"
lines = ["carrier"]
"#;
        let c = load(d.path(), text).unwrap();
        let ids: Vec<&str> = c.lines.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["carrier-1", "carrier-2", "carrier-3", "local"]);
        assert_eq!(c.inbound.lines, ["carrier-1", "carrier-2", "carrier-3"]);
        let sip = c.sip.as_ref().unwrap();
        assert_eq!(sip.lines.len(), 3);
    }

    #[test]
    fn every_semantic_problem_is_reported_at_once() {
        let d = dir_with_prompt();
        let bad = GOOD
            .replace(
                "greeting = \"hello.wav\"",
                "greeting = \"nope.wav\"\nlines = [\"desk-1\", \"trunk-9\"]",
            )
            .replace("id = \"desk-1\"", "id = \"trunk-1\"");
        let e = load(d.path(), &bad).unwrap_err();
        let text = e.to_string();
        assert_eq!(e.0.len(), 4, "{text}");
        assert!(text.contains("line `trunk-1` is defined twice"), "{text}");
        assert!(text.contains("prompt file `nope.wav` not found"), "{text}");
        assert!(text.contains("`trunk-9` is not a line defined"), "{text}");
        assert!(text.contains("`desk-1` is not a line defined"), "{text}");
    }

    #[test]
    fn a_ringback_is_a_prompt_and_needs_ringing_time() {
        let d = dir_with_prompt();
        let good = GOOD.replace(
            "answer_after = \"2s\"",
            "answer_after = \"2s\"\nringback = \"hello.wav\"",
        );
        let c = load(d.path(), &good).unwrap();
        assert_eq!(
            c.inbound.ringback.as_ref().map(Prompt::duration),
            Some(Duration::from_secs(1))
        );
        let at_once = GOOD.replace("answer_after = \"2s\"", "ringback = \"hello.wav\"");
        let text = load(d.path(), &at_once).unwrap_err().to_string();
        assert!(
            text.contains("site.toml:15:12: the ringback plays"),
            "{text}"
        );
        assert!(text.contains("set `answer_after` too"), "{text}");
        let missing = good.replace("ringback = \"hello.wav\"", "ringback = \"tune.wav\"");
        let text = load(d.path(), &missing).unwrap_err().to_string();
        assert!(text.contains("prompt file `tune.wav` not found"), "{text}");
    }
}
