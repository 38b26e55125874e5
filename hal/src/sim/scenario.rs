//! Scenario files: who calls when, and how agents behave.
//!
//! A scenario is a TOML file written by hand. It is what tests, the demo and
//! benchmarks feed the simulated lines. The format is documented in
//! `docs/scenario.md`; in short:
//!
//! ```toml
//! [[call]]
//! at = "2s"                 # arrival, from the start of the scenario
//! from = "13800138000"
//! to = "4008001234"
//! patience = "20s"          # gives up if not answered by then
//! script = [ { wait = "1s" }, { press = "1" }, { play = "hello.wav" } ]
//! repeat = 100              # 100 such calls...
//! every = "3s"              # ...one every 3 s; `{n}` in numbers is the index
//!
//! [[agent]]
//! name = "alice"
//! line = "desk-1"
//! answer_after = "3s"
//! talk = "30s"
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::diag::{Diagnostics, TomlSource, parse_duration};
use crate::dsp::dtmf::is_dtmf_digit;
use crate::io::Button;
use crate::line::{LineInfo, LineKind};

/// How a caller or agent sends a digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// As DTMF tones in the audio (what an analog phone does).
    #[default]
    Inband,
    /// As out-of-band digit events only (SIP INFO / RFC 4733).
    Signal,
    /// Both at once (a SIP phone sending RFC 4733 and leaving audio on).
    Both,
}

/// One step of a caller's or agent's script, as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStep {
    wait: Option<String>,
    press: Option<String>,
    via: Option<Via>,
    tone: Option<String>,
    gap: Option<String>,
    level: Option<f64>,
    play: Option<String>,
    hangup: Option<bool>,
    flash: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "zero")]
    at: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    line: Option<String>,
    #[serde(default)]
    patience: Option<String>,
    #[serde(default)]
    hangup_after: Option<String>,
    #[serde(default)]
    script: Vec<RawStep>,
    #[serde(default = "one")]
    repeat: u32,
    #[serde(default)]
    every: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: String,
    line: String,
    #[serde(default)]
    answer_after: Option<String>,
    #[serde(default = "yes")]
    answers: bool,
    #[serde(default)]
    talk: Option<String>,
    #[serde(default)]
    script: Vec<RawStep>,
    #[serde(default)]
    dial: Vec<RawDial>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDial {
    at: String,
    digits: String,
    #[serde(default)]
    via: Option<Via>,
    #[serde(default)]
    hold: Option<String>,
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    then: Vec<RawStep>,
}

/// An agent keying a feature code on their phone.
#[derive(Debug, Clone)]
pub struct Dial {
    /// When, from the start of the scenario.
    pub at: Duration,
    /// Keys.
    pub digits: String,
    /// How the keys are sent.
    pub via: Via,
    /// How long the handset stays off-hook after keying (default 500 ms).
    pub hold: Option<Duration>,
    /// How long the agent listens to the dial tone before the first key
    /// (default 300 ms); what they heard goes to [`super::SimStats::dial_tones`].
    pub listen: Duration,
    /// What the agent does meanwhile (e.g. speaks: `play`).
    pub then: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawButton {
    at: String,
    button: Button,
    #[serde(default)]
    held: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCallee {
    number: String,
    #[serde(default = "yes")]
    answers: bool,
    #[serde(default)]
    busy: bool,
    #[serde(default)]
    not_in_service: bool,
    #[serde(default)]
    answer_after: Option<String>,
    #[serde(default)]
    hangup_after: Option<String>,
    #[serde(default)]
    script: Vec<RawStep>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    #[serde(default)]
    call: Vec<RawCall>,
    #[serde(default)]
    callee: Vec<RawCallee>,
    #[serde(default)]
    agent: Vec<RawAgent>,
    #[serde(default)]
    button: Vec<RawButton>,
}

fn zero() -> String {
    "0s".into()
}
fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// What a script step does, checked and ready to play.
#[derive(Debug, Clone)]
pub enum Step {
    /// Silence for a while.
    Wait(Duration),
    /// Key digits.
    Press {
        /// The digits.
        digits: String,
        /// In band, out of band, or both.
        via: Via,
        /// Tone length per digit.
        tone: Duration,
        /// Pause after each digit.
        gap: Duration,
        /// Level of each of the two tones, dBFS.
        level_dbfs: f64,
    },
    /// Play audio samples (a WAV file, loaded at scenario load).
    Play(Arc<[i16]>),
    /// A short on-hook pulse (an analog phone's flash / recall key).
    Flash,
    /// Hang up.
    Hangup,
}

/// A caller, as scheduled.
#[derive(Debug, Clone)]
pub struct CallScript {
    /// Label for logs (`name` in the file, or `call[i]`).
    pub name: String,
    /// Calling number template (`{n}` is replaced by the repeat index).
    pub from: Option<String>,
    /// Dialled number template.
    pub to: Option<String>,
    /// Trunk line to arrive on; any free trunk when `None`.
    pub line: Option<String>,
    /// Gives up if not answered within this time.
    pub patience: Option<Duration>,
    /// Hangs up this long after being answered.
    pub hangup_after: Option<Duration>,
    /// What the caller does once answered.
    pub script: Vec<Step>,
}

/// One call arrival.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// When, from the start of the scenario.
    pub at: Duration,
    /// Repeat index (substituted for `{n}`).
    pub n: u32,
    /// The caller's script.
    pub call: Arc<CallScript>,
}

impl Arrival {
    /// Calling number with `{n}` substituted.
    pub fn from(&self) -> Option<String> {
        self.call.from.as_deref().map(|t| substitute(t, self.n))
    }
    /// Dialled number with `{n}` substituted.
    pub fn to(&self) -> Option<String> {
        self.call.to.as_deref().map(|t| substitute(t, self.n))
    }
}

/// An agent at a station.
#[derive(Debug, Clone)]
pub struct AgentScript {
    /// The agent's name.
    pub name: String,
    /// Station line id.
    pub line: String,
    /// Whether the agent answers at all when rung.
    pub answers: bool,
    /// Time from the first ring to pick-up.
    pub answer_after: Duration,
    /// Hangs up this long after answering; stays until the other side leaves
    /// when `None`.
    pub talk: Option<Duration>,
    /// What the agent does while connected.
    pub script: Vec<Step>,
    /// Off-hook dialling (feature codes) at given times, sorted.
    pub dials: Vec<Dial>,
}

/// A button press on the case.
#[derive(Debug, Clone, Copy)]
pub struct ButtonEvent {
    /// When.
    pub at: Duration,
    /// Which button.
    pub button: Button,
    /// How long it is held.
    pub held: Duration,
}

/// How a number the box dials out to behaves on one call.
#[derive(Debug, Clone)]
pub struct CalleeScript {
    /// The number.
    pub number: String,
    /// Whether anyone picks up.
    pub answers: bool,
    /// The line is busy (the call fails at once).
    pub busy: bool,
    /// The number reaches nothing (the network says so at once).
    pub not_in_service: bool,
    /// Ringing before pick-up.
    pub answer_after: Duration,
    /// Hangs up this long after answering.
    pub hangup_after: Option<Duration>,
    /// What the called person does once answered.
    pub script: Vec<Step>,
}

/// A checked scenario.
#[derive(Debug, Clone, Default)]
pub struct Scenario {
    /// People the box may call. Several entries for one number are used
    /// one per call, in file order; the last one repeats.
    pub callees: Vec<CalleeScript>,
    /// Every call arrival, sorted by time.
    pub arrivals: Vec<Arrival>,
    /// Agents by station.
    pub agents: Vec<AgentScript>,
    /// Button presses, sorted by time.
    pub buttons: Vec<ButtonEvent>,
}

/// Replaces `{n}` (or `{n:W}`, zero-padded to width W) with `n`.
pub fn substitute(template: &str, n: u32) -> String {
    let mut out = String::with_capacity(template.len() + 8);
    let mut rest = template;
    while let Some(i) = rest.find("{n") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        if let Some(end) = after.find('}') {
            let spec = &after[..end];
            let width = spec.strip_prefix(':').and_then(|w| w.parse::<usize>().ok());
            match width {
                Some(w) => out.push_str(&format!("{n:0w$}")),
                None if spec.is_empty() => out.push_str(&n.to_string()),
                None => out.push_str(&rest[i..i + 3 + end]),
            }
            rest = &after[end + 1..];
        } else {
            out.push_str(&rest[i..]);
            rest = "";
        }
    }
    out.push_str(rest);
    out
}

/// Upper bound on arrivals one file may expand to, so a typo in `repeat`
/// cannot eat the box's memory.
pub const MAX_ARRIVALS: u64 = 10_000_000;

impl Scenario {
    /// Loads and checks a scenario file against the site's lines. Every
    /// problem is reported with its place in the file.
    pub fn load(path: &Path, lines: &[LineInfo]) -> Result<Scenario, Diagnostics> {
        let src = TomlSource::read(path)?;
        Scenario::from_source(&src, lines)
    }

    /// Same as [`Scenario::load`], for text already read.
    pub fn from_source(src: &TomlSource, lines: &[LineInfo]) -> Result<Scenario, Diagnostics> {
        let raw: RawScenario = src.parse()?;
        let mut c = Checker {
            src,
            errors: Vec::new(),
            wavs: HashMap::new(),
        };
        let kinds: HashMap<&str, LineKind> =
            lines.iter().map(|l| (l.id.as_str(), l.kind)).collect();

        let mut arrivals = Vec::new();
        let mut total: u64 = 0;
        for (i, rc) in raw.call.iter().enumerate() {
            let p = format!("call[{i}]");
            let at = c.duration(&format!("{p}.at"), &rc.at);
            if let Some(line) = &rc.line {
                match kinds.get(line.as_str()) {
                    None => c.err(
                        &format!("{p}.line"),
                        format!(
                            "unknown line `{line}`; the site config defines {}",
                            list(lines)
                        ),
                    ),
                    Some(LineKind::Station) => c.err(
                        &format!("{p}.line"),
                        format!("`{line}` is a station line; callers arrive on trunk lines"),
                    ),
                    Some(LineKind::Trunk) => {}
                }
            }
            if rc.repeat == 0 {
                c.err(&format!("{p}.repeat"), "repeat must be at least 1");
            }
            let every = rc
                .every
                .as_ref()
                .map(|e| c.duration(&format!("{p}.every"), e));
            if rc.repeat > 1 && every.is_none() {
                c.err(
                    &format!("{p}.repeat"),
                    "a repeated call needs `every` (the spacing between arrivals)",
                );
            }
            total += u64::from(rc.repeat);
            if total > MAX_ARRIVALS {
                c.err(
                    &format!("{p}.repeat"),
                    format!("the scenario expands to more than {MAX_ARRIVALS} calls"),
                );
                break;
            }
            let script = CallScript {
                name: rc.name.clone().unwrap_or_else(|| p.clone()),
                from: rc.from.clone(),
                to: rc.to.clone(),
                line: rc.line.clone(),
                patience: rc
                    .patience
                    .as_ref()
                    .map(|d| c.duration(&format!("{p}.patience"), d)),
                hangup_after: rc
                    .hangup_after
                    .as_ref()
                    .map(|d| c.duration(&format!("{p}.hangup_after"), d)),
                script: c.steps(&format!("{p}.script"), &rc.script),
            };
            let script = Arc::new(script);
            let every = every.unwrap_or_default();
            for n in 0..rc.repeat {
                arrivals.push(Arrival {
                    at: at + every * n,
                    n,
                    call: script.clone(),
                });
            }
        }
        // Stable sort keeps file order for simultaneous arrivals.
        arrivals.sort_by_key(|a| a.at);

        let mut agents = Vec::new();
        let mut stations: HashMap<&str, usize> = HashMap::new();
        for (i, ra) in raw.agent.iter().enumerate() {
            let p = format!("agent[{i}]");
            match kinds.get(ra.line.as_str()) {
                None => c.err(
                    &format!("{p}.line"),
                    format!(
                        "unknown line `{}`; the site config defines {}",
                        ra.line,
                        list(lines)
                    ),
                ),
                Some(LineKind::Trunk) => c.err(
                    &format!("{p}.line"),
                    format!("`{}` is a trunk line; agents sit at station lines", ra.line),
                ),
                Some(LineKind::Station) => {}
            }
            if let Some(prev) = stations.insert(ra.line.as_str(), i) {
                c.err(
                    &format!("{p}.line"),
                    format!(
                        "station `{}` already has agent[{prev}]; one agent per station",
                        ra.line
                    ),
                );
            }
            let mut dials = Vec::new();
            for (j, d) in ra.dial.iter().enumerate() {
                let at = c.duration(&format!("{p}.dial[{j}].at"), &d.at);
                c.digits(&format!("{p}.dial[{j}].digits"), &d.digits);
                let hold = d
                    .hold
                    .as_ref()
                    .map(|h| c.duration(&format!("{p}.dial[{j}].hold"), h));
                let then = c.steps(&format!("{p}.dial[{j}].then"), &d.then);
                let listen = d.listen.as_ref().map_or(Duration::from_millis(300), |l| {
                    c.duration(&format!("{p}.dial[{j}].listen"), l)
                });
                dials.push(Dial {
                    at,
                    digits: d.digits.clone(),
                    via: d.via.unwrap_or(Via::Signal),
                    hold,
                    listen,
                    then,
                });
            }
            dials.sort_by_key(|d| d.at);
            agents.push(AgentScript {
                name: ra.name.clone(),
                line: ra.line.clone(),
                answers: ra.answers,
                answer_after: ra
                    .answer_after
                    .as_ref()
                    .map_or(Duration::from_secs(2), |d| {
                        c.duration(&format!("{p}.answer_after"), d)
                    }),
                talk: ra
                    .talk
                    .as_ref()
                    .map(|d| c.duration(&format!("{p}.talk"), d)),
                script: c.steps(&format!("{p}.script"), &ra.script),
                dials,
            });
        }

        let mut callees = Vec::new();
        for (i, rc) in raw.callee.iter().enumerate() {
            let p = format!("callee[{i}]");
            c.digits(&format!("{p}.number"), &rc.number);
            callees.push(CalleeScript {
                number: rc.number.clone(),
                answers: rc.answers,
                busy: rc.busy,
                not_in_service: rc.not_in_service,
                answer_after: rc
                    .answer_after
                    .as_ref()
                    .map_or(Duration::from_secs(3), |d| {
                        c.duration(&format!("{p}.answer_after"), d)
                    }),
                hangup_after: rc
                    .hangup_after
                    .as_ref()
                    .map(|d| c.duration(&format!("{p}.hangup_after"), d)),
                script: c.steps(&format!("{p}.script"), &rc.script),
            });
        }

        let mut buttons = Vec::new();
        for (i, b) in raw.button.iter().enumerate() {
            let p = format!("button[{i}]");
            buttons.push(ButtonEvent {
                at: c.duration(&format!("{p}.at"), &b.at),
                button: b.button,
                held: b.held.as_ref().map_or(Duration::from_millis(200), |d| {
                    c.duration(&format!("{p}.held"), d)
                }),
            });
        }
        buttons.sort_by_key(|b| b.at);

        if c.errors.is_empty() {
            Ok(Scenario {
                callees,
                arrivals,
                agents,
                buttons,
            })
        } else {
            Err(Diagnostics(c.errors))
        }
    }

    /// Time at which the last scheduled thing starts.
    pub fn last_start(&self) -> Duration {
        let a = self.arrivals.last().map_or(Duration::ZERO, |a| a.at);
        let d = self
            .agents
            .iter()
            .filter_map(|a| a.dials.last().map(|d| d.at))
            .max()
            .unwrap_or_default();
        let b = self.buttons.last().map_or(Duration::ZERO, |b| b.at);
        a.max(d).max(b)
    }
}

fn list(lines: &[LineInfo]) -> String {
    let ids: Vec<String> = lines
        .iter()
        .map(|l| format!("`{}` ({})", l.id, l.kind))
        .collect();
    if ids.is_empty() {
        "no lines".into()
    } else {
        ids.join(", ")
    }
}

struct Checker<'a> {
    src: &'a TomlSource,
    errors: Vec<crate::diag::Diagnostic>,
    wavs: HashMap<String, Arc<[i16]>>,
}

impl Checker<'_> {
    fn err(&mut self, path: &str, msg: impl Into<String>) {
        self.errors.push(self.src.at_path(path, msg));
    }

    fn duration(&mut self, path: &str, s: &str) -> Duration {
        parse_duration(s).unwrap_or_else(|e| {
            self.err(path, e);
            Duration::ZERO
        })
    }

    fn digits(&mut self, path: &str, digits: &str) {
        if digits.is_empty() {
            self.err(path, "no digits to press");
        }
        if let Some(bad) = digits.chars().find(|&ch| !is_dtmf_digit(ch)) {
            self.err(
                path,
                format!("`{bad}` is not a DTMF key; use 0-9, *, #, A-D"),
            );
        }
    }

    fn steps(&mut self, path: &str, raw: &[RawStep]) -> Vec<Step> {
        let mut out = Vec::new();
        for (i, s) in raw.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let actions = [
                s.wait.is_some(),
                s.press.is_some(),
                s.play.is_some(),
                s.hangup.is_some(),
                s.flash.is_some(),
            ]
            .iter()
            .filter(|&&x| x)
            .count();
            if actions != 1 {
                self.err(
                    &p,
                    "each step does exactly one of: wait, press, play, hangup, flash",
                );
                continue;
            }
            if s.press.is_none()
                && (s.via.is_some() || s.tone.is_some() || s.gap.is_some() || s.level.is_some())
            {
                self.err(&p, "via, tone, gap and level belong to a `press` step");
            }
            if let Some(w) = &s.wait {
                out.push(Step::Wait(self.duration(&format!("{p}.wait"), w)));
            } else if let Some(d) = &s.press {
                self.digits(&format!("{p}.press"), d);
                let tone = s.tone.as_ref().map_or(Duration::from_millis(100), |t| {
                    self.duration(&format!("{p}.tone"), t)
                });
                let gap = s.gap.as_ref().map_or(Duration::from_millis(100), |t| {
                    self.duration(&format!("{p}.gap"), t)
                });
                let level_dbfs = s.level.unwrap_or(-10.0);
                if !(-60.0..=-3.0).contains(&level_dbfs) {
                    self.err(
                        &format!("{p}.level"),
                        "level is in dBFS per tone, between -60 and -3",
                    );
                }
                out.push(Step::Press {
                    digits: d.clone(),
                    via: s.via.unwrap_or_default(),
                    tone,
                    gap,
                    level_dbfs,
                });
            } else if let Some(file) = &s.play {
                if let Some(samples) = self.wavs.get(file) {
                    out.push(Step::Play(samples.clone()));
                    continue;
                }
                let full = self.src.base_dir().join(file);
                match crate::wav::load_prompt(&full, 8000) {
                    Ok(samples) => {
                        let samples: Arc<[i16]> = samples.into();
                        self.wavs.insert(file.clone(), samples.clone());
                        out.push(Step::Play(samples));
                    }
                    Err(e) => self.err(&format!("{p}.play"), format!("{}: {e}", full.display())),
                }
            } else if s.hangup == Some(true) {
                out.push(Step::Hangup);
            } else if s.flash == Some(true) {
                out.push(Step::Flash);
            } else if s.flash.is_some() {
                self.err(
                    &format!("{p}.flash"),
                    "write `flash = true` (or leave the step out)",
                );
            } else {
                self.err(
                    &format!("{p}.hangup"),
                    "write `hangup = true` (or leave the step out)",
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Vec<LineInfo> {
        vec![
            LineInfo {
                id: "t1".into(),
                kind: LineKind::Trunk,
            },
            LineInfo {
                id: "d1".into(),
                kind: LineKind::Station,
            },
        ]
    }

    fn load(text: &str) -> Result<Scenario, Diagnostics> {
        Scenario::from_source(&TomlSource::new(Path::new("s.toml"), text.into()), &lines())
    }

    #[test]
    fn repeats_expand_in_time_order() {
        let s = load(
            "[[call]]\nat = \"10s\"\nfrom = \"1380000{n:4}\"\nrepeat = 3\nevery = \"5s\"\n\n[[call]]\nat = \"12s\"\n",
        )
        .unwrap();
        let at: Vec<u64> = s.arrivals.iter().map(|a| a.at.as_secs()).collect();
        assert_eq!(at, vec![10, 12, 15, 20]);
        assert_eq!(s.arrivals[3].from().unwrap(), "13800000002");
    }

    #[test]
    fn errors_name_their_place() {
        let e = load(
            "[[call]]\nline = \"d1\"\nscript = [{ press = \"1x\" }, { wait = \"soon\" }]\n\n[[agent]]\nname = \"a\"\nline = \"t9\"\n",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("s.toml:2:8: `d1` is a station line"),
            "{text}"
        );
        assert!(
            text.contains("s.toml:3:21: `x` is not a DTMF key"),
            "{text}"
        );
        assert!(
            text.contains("s.toml:3:38: `soon` is not a duration"),
            "{text}"
        );
        assert!(text.contains("s.toml:7:8: unknown line `t9`"), "{text}");
    }

    #[test]
    fn a_step_does_one_thing() {
        let e = load("[[call]]\nscript = [{ wait = \"1s\", hangup = true }]\n").unwrap_err();
        assert!(e.to_string().contains("exactly one of"), "{e}");
    }

    #[test]
    fn templates() {
        assert_eq!(substitute("x{n}y", 7), "x7y");
        assert_eq!(substitute("{n:3}", 7), "007");
        assert_eq!(substitute("{nope}", 7), "{nope}");
        assert_eq!(substitute("plain", 7), "plain");
    }
}
