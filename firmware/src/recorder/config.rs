//! The `[recording]` part of the site config: which calls are recorded, in
//! what format, whether callers hear a consent notice, how long recordings
//! are kept and who can decrypt them.
//!
//! ```toml
//! [recording]
//! mode = "never"                 # default for calls no policy matches
//! format = "alaw"                # pcm16 | alaw | ulaw
//! consent_prompt = "recorded"    # played to the caller when a policy asks
//! recipients = ["age1…"]         # encrypt finished recordings to headquarters
//! keep = "90d"                   # delete recordings older than this
//! quota = "2GiB"                 # and keep their total under this
//! min_free = "256MiB"            # never let the disk get fuller than this
//!
//! [[recording.policy]]           # first match wins
//! queue = "sales"                # any of queue, flow, agent, dialled
//! mode = "always"                # always | never | on_demand
//! consent = true
//! format = "pcm16"
//! ```

use std::time::Duration;

use callbox_hal::diag::parse_duration;
use serde::Deserialize;

use super::seal::Recipients;
use super::wav::Format;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRecording {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    format: Option<Format>,
    #[serde(default)]
    voicemail_format: Option<Format>,
    #[serde(default)]
    consent: bool,
    #[serde(default)]
    consent_prompt: Option<String>,
    #[serde(default)]
    recipients: Vec<String>,
    #[serde(default)]
    keep: Option<String>,
    #[serde(default)]
    quota: Option<String>,
    #[serde(default)]
    min_free: Option<String>,
    #[serde(default)]
    header_every: Option<String>,
    #[serde(default)]
    sync_every: Option<String>,
    #[serde(default)]
    record_code: Option<String>,
    #[serde(default)]
    pause_code: Option<String>,
    #[serde(default)]
    policy: Vec<RawPolicy>,
}

impl RawRecording {
    /// The consent prompt's name, for the site config to load.
    pub(crate) fn consent_prompt(&self) -> Option<&str> {
        self.consent_prompt.as_deref()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    flow: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    dialled: Option<String>,
    mode: String,
    #[serde(default)]
    format: Option<Format>,
    #[serde(default)]
    consent: Option<bool>,
}

/// Whether calls are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// From the moment the caller is connected.
    Always,
    /// Not recorded.
    Never,
    /// When the agent keys the record code.
    OnDemand,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "always" => Ok(Mode::Always),
            "never" => Ok(Mode::Never),
            "on_demand" => Ok(Mode::OnDemand),
            other => Err(format!(
                "unknown recording mode `{other}`; use \"always\", \"never\" or \"on_demand\""
            )),
        }
    }
}

/// What a call matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether it is recorded.
    pub mode: Mode,
    /// File format.
    pub format: Format,
    /// Whether the caller hears the consent prompt first.
    pub consent: bool,
}

/// One rule: calls matching every key it names get its decision.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Queue the caller waited in.
    pub queue: Option<String>,
    /// Flow (start node) the call entered.
    pub flow: Option<String>,
    /// Agent who took the call.
    pub agent: Option<String>,
    /// Number the caller dialled.
    pub dialled: Option<String>,
    /// What matching calls get.
    pub decision: Decision,
}

/// What is known about a call when deciding.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallKeys<'a> {
    /// Queue, when queued.
    pub queue: Option<&'a str>,
    /// Flow.
    pub flow: Option<&'a str>,
    /// Agent, once one answered.
    pub agent: Option<&'a str>,
    /// Dialled number.
    pub dialled: Option<&'a str>,
}

/// The checked `[recording]` section.
#[derive(Debug, Clone)]
pub struct RecordingConfig {
    /// Decision for calls no policy matches.
    pub default: Decision,
    /// Rules, first match wins.
    pub policies: Vec<Policy>,
    /// Format of voicemail messages.
    pub voicemail_format: Format,
    /// Played to callers before a recording whose policy asks for consent.
    pub consent_prompt: Option<crate::prompt::Prompt>,
    /// Headquarters' keys; recordings are encrypted to them when set.
    pub recipients: Option<Recipients>,
    /// Recordings older than this are deleted.
    pub keep: Option<Duration>,
    /// Recordings' total size is kept under this many bytes.
    pub quota: Option<u64>,
    /// Free space the disk keeps: below it, recordings stop and the oldest
    /// are deleted.
    pub min_free: u64,
    /// How often an open recording's header is brought up to date (audio
    /// time).
    pub header_every: Duration,
    /// How often recordings are forced to the card.
    pub sync_every: Duration,
    /// Agent code that starts and stops an on-demand recording.
    pub record_code: String,
    /// Agent code that pauses and resumes a recording.
    pub pause_code: String,
    /// Whether retention by age and quota deletes only recordings
    /// headquarters confirmed (`recordings.delivered`). Not written in
    /// `[recording]`: on when the site has an `[uplink]`
    /// (`SiteConfig::recorder_config` in the config layer). A box without a
    /// fleet link has nobody to confirm, and keeping everything would fill
    /// its card; the free-space emergency deletes the oldest either way.
    pub require_delivery: bool,
}

/// Free space kept by default: room for the database to grow and the
/// system to work.
pub const DEFAULT_MIN_FREE: u64 = 64 << 20;

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            default: Decision {
                mode: Mode::Never,
                format: Format::Alaw,
                consent: false,
            },
            policies: Vec::new(),
            voicemail_format: Format::Pcm16,
            consent_prompt: None,
            recipients: None,
            keep: None,
            quota: None,
            min_free: DEFAULT_MIN_FREE,
            header_every: Duration::from_secs(2),
            sync_every: Duration::from_secs(5),
            record_code: "*1".into(),
            pause_code: "*4".into(),
            require_delivery: false,
        }
    }
}

impl RecordingConfig {
    /// The decision for a call with these keys.
    pub fn decide(&self, keys: &CallKeys<'_>) -> Decision {
        let m = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        self.policies
            .iter()
            .find(|p| {
                m(&p.queue, keys.queue)
                    && m(&p.flow, keys.flow)
                    && m(&p.agent, keys.agent)
                    && m(&p.dialled, keys.dialled)
            })
            .map_or(self.default, |p| p.decision)
    }
}

/// Parses a size such as `2GiB`, `500MB`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("`{s}` is not a size; write e.g. \"2GiB\", \"500MB\", \"64MiB\"");
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    Ok((n * mult as f64) as u64)
}

fn valid_code(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 8
        && c.chars()
            .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
}

/// Checks the section; problems come back as `(key path, message)` pairs.
/// `consent_prompt` is the loaded prompt (the site config loads it, since
/// it knows the prompt directory). `queues`/`agents` are the ACD's names,
/// `flows` the IVR's node names; `None` where that section did not check
/// out (its own errors are reported).
pub(crate) fn check(
    raw: &RawRecording,
    consent_prompt: Option<crate::prompt::Prompt>,
    queues: Option<&[String]>,
    agents: Option<&[String]>,
    flows: Option<&[String]>,
) -> Result<RecordingConfig, Vec<(String, String)>> {
    let mut errs = Vec::new();
    let mut cfg = RecordingConfig {
        consent_prompt,
        ..RecordingConfig::default()
    };
    if let Some(f) = raw.format {
        cfg.default.format = f;
    }
    if let Some(f) = raw.voicemail_format {
        cfg.voicemail_format = f;
    }
    cfg.default.consent = raw.consent;
    if let Some(m) = &raw.mode {
        match Mode::parse(m) {
            Ok(m) => cfg.default.mode = m,
            Err(e) => errs.push(("recording.mode".into(), e)),
        }
    }
    if !raw.recipients.is_empty() {
        match Recipients::parse(&raw.recipients) {
            Ok(r) => cfg.recipients = Some(r),
            Err(e) => errs.push(("recording.recipients".into(), e)),
        }
    }
    let mut dur = |key: &str, v: &Option<String>, min: Duration| -> Option<Duration> {
        let s = v.as_ref()?;
        match parse_duration(s) {
            Ok(d) if d < min => {
                errs.push((
                    format!("recording.{key}"),
                    format!("`{s}` is shorter than the {min:?} allowed"),
                ));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                errs.push((format!("recording.{key}"), e));
                None
            }
        }
    };
    cfg.keep = dur("keep", &raw.keep, Duration::from_secs(3600));
    if let Some(d) = dur(
        "header_every",
        &raw.header_every,
        Duration::from_millis(200),
    ) {
        cfg.header_every = d;
    }
    if let Some(d) = dur("sync_every", &raw.sync_every, Duration::from_millis(200)) {
        cfg.sync_every = d;
    }
    for (key, v) in [("quota", &raw.quota), ("min_free", &raw.min_free)] {
        if let Some(s) = v {
            match parse_size(s) {
                Ok(n) if key == "quota" => cfg.quota = Some(n),
                Ok(n) => cfg.min_free = n,
                Err(e) => errs.push((format!("recording.{key}"), e)),
            }
        }
    }
    for (key, v, slot) in [
        ("record_code", &raw.record_code, &mut cfg.record_code),
        ("pause_code", &raw.pause_code, &mut cfg.pause_code),
    ] {
        if let Some(c) = v {
            if valid_code(c) {
                *slot = c.clone();
            } else {
                errs.push((
                    format!("recording.{key}"),
                    format!("`{c}` is not a feature code: 1-8 of the keys 0-9, * and #"),
                ));
            }
        }
    }
    if cfg.record_code == cfg.pause_code {
        errs.push((
            "recording.pause_code".into(),
            format!(
                "the pause code `{}` is also the record code; give them different codes",
                cfg.pause_code
            ),
        ));
    }
    for (i, p) in raw.policy.iter().enumerate() {
        let at = |k: &str| format!("recording.policy[{i}].{k}");
        let mode = match Mode::parse(&p.mode) {
            Ok(m) => m,
            Err(e) => {
                errs.push((at("mode"), e));
                continue;
            }
        };
        if p.queue.is_none() && p.flow.is_none() && p.agent.is_none() && p.dialled.is_none() {
            errs.push((
                format!("recording.policy[{i}]"),
                "a policy names at least one of `queue`, `flow`, `agent`, `dialled`; the default for every call is `recording.mode`".into(),
            ));
        }
        for (key, v, known, what) in [
            ("queue", &p.queue, queues, "queue in `[acd.queue]`"),
            ("agent", &p.agent, agents, "agent in `[acd.agent]`"),
            ("flow", &p.flow, flows, "node in `[ivr]`"),
        ] {
            if let (Some(v), Some(known)) = (v, known)
                && !known.contains(v)
            {
                errs.push((at(key), format!("`{v}` is not a {what}")));
            }
        }
        let decision = Decision {
            mode,
            format: p.format.unwrap_or(cfg.default.format),
            consent: p.consent.unwrap_or(cfg.default.consent),
        };
        if decision.consent && cfg.consent_prompt.is_none() {
            errs.push((
                at("consent"),
                "consent needs `recording.consent_prompt`, the notice callers hear".into(),
            ));
        }
        cfg.policies.push(Policy {
            queue: p.queue.clone(),
            flow: p.flow.clone(),
            agent: p.agent.clone(),
            dialled: p.dialled.clone(),
            decision,
        });
    }
    if cfg.default.consent && cfg.consent_prompt.is_none() {
        errs.push((
            "recording.consent".into(),
            "consent needs `recording.consent_prompt`, the notice callers hear".into(),
        ));
    }
    if errs.is_empty() { Ok(cfg) } else { Err(errs) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("1.5 KiB").unwrap(), 1536);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(
            parse_size("lots")
                .unwrap_err()
                .contains("`lots` is not a size")
        );
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn first_matching_policy_decides() {
        let d = |mode| Decision {
            mode,
            format: Format::Alaw,
            consent: false,
        };
        let cfg = RecordingConfig {
            policies: vec![
                Policy {
                    queue: None,
                    flow: None,
                    agent: Some("trainee".into()),
                    dialled: None,
                    decision: d(Mode::Always),
                },
                Policy {
                    queue: Some("sales".into()),
                    flow: None,
                    agent: None,
                    dialled: None,
                    decision: d(Mode::OnDemand),
                },
            ],
            ..RecordingConfig::default()
        };
        let keys = |queue, agent| CallKeys {
            queue,
            agent,
            ..CallKeys::default()
        };
        assert_eq!(cfg.decide(&keys(Some("sales"), None)).mode, Mode::OnDemand);
        assert_eq!(
            cfg.decide(&keys(Some("sales"), Some("trainee"))).mode,
            Mode::Always
        );
        assert_eq!(cfg.decide(&keys(Some("support"), None)).mode, Mode::Never);

        // A policy naming two keys needs both.
        let cfg = RecordingConfig {
            policies: vec![Policy {
                queue: None,
                flow: Some("hotline".into()),
                agent: None,
                dialled: Some("4008001234".into()),
                decision: d(Mode::Always),
            }],
            ..RecordingConfig::default()
        };
        let call = |flow, dialled| CallKeys {
            flow,
            dialled,
            ..CallKeys::default()
        };
        assert_eq!(
            cfg.decide(&call(Some("hotline"), Some("4008001234"))).mode,
            Mode::Always
        );
        assert_eq!(
            cfg.decide(&call(Some("hotline"), Some("4001"))).mode,
            Mode::Never
        );
        assert_eq!(
            cfg.decide(&call(None, Some("4008001234"))).mode,
            Mode::Never
        );
    }
}
