//! The `[acd]` part of the site config: agents, queues and the feature
//! codes agents key on their phones.
//!
//! ```toml
//! [acd.codes]
//! login = "*71"          # *71 logs in the station's agent; *71<number> hot-desks
//!
//! [acd.agent.alice]
//! number = "1001"
//! station = "desk-1"
//! logged_in = true
//!
//! [acd.queue.sales]
//! strategy = "longest_idle"
//! members = { alice = 0, bob = 1 }   # agent = penalty tier
//! tier_step = "30s"                   # tier N is offered after N x 30 s
//! ```
//!
//! Checking resolves agent and station names and the parameters each
//! strategy needs; problems come back as `(key path, message)` pairs for
//! the site config to place in the file.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use callbox_hal::diag::parse_duration;
use callbox_hal::{LineInfo, LineKind};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAcd {
    #[serde(default)]
    codes: RawCodes,
    #[serde(default)]
    agent: BTreeMap<String, RawAgent>,
    #[serde(default)]
    queue: BTreeMap<String, RawQueue>,
    #[serde(default)]
    supervisors: Vec<String>,
    #[serde(default)]
    park: Option<RawPark>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPark {
    number: String,
    #[serde(default)]
    slots: Option<u32>,
    #[serde(default)]
    timeout: Option<String>,
}

/// Call park: where agents park calls and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkCfg {
    /// Blind-transferring a call here parks it (`*2700`).
    pub number: String,
    /// The slots' numbers (`701`…), dialled to take a parked call.
    pub slots: Vec<String>,
    /// A call nobody takes rings the agent who parked it after this.
    pub timeout: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCodes {
    #[serde(default = "c_login")]
    login: String,
    #[serde(default = "c_logout")]
    logout: String,
    #[serde(default = "c_pause")]
    pause: String,
    #[serde(default = "c_unpause")]
    unpause: String,
    #[serde(default = "c_dnd")]
    dnd: String,
    #[serde(default = "c_wrap")]
    wrap: String,
    #[serde(default = "c_listen")]
    listen: String,
    #[serde(default = "c_whisper")]
    whisper: String,
    #[serde(default = "c_barge")]
    barge: String,
    #[serde(default = "c_pickup")]
    pickup: String,
    #[serde(default = "c_transfer")]
    transfer: String,
    #[serde(default = "c_consult")]
    consult: String,
    #[serde(default = "c_park")]
    park: String,
}

fn c_login() -> String {
    "*71".into()
}
fn c_logout() -> String {
    "*72".into()
}
fn c_pause() -> String {
    "*73".into()
}
fn c_unpause() -> String {
    "*74".into()
}
fn c_dnd() -> String {
    "*76".into()
}
fn c_wrap() -> String {
    "*9".into()
}
fn c_listen() -> String {
    "*55".into()
}
fn c_whisper() -> String {
    "*56".into()
}
fn c_barge() -> String {
    "*57".into()
}
fn c_pickup() -> String {
    "*8".into()
}
fn c_transfer() -> String {
    "*2".into()
}
fn c_consult() -> String {
    "*3".into()
}
fn c_park() -> String {
    "*6".into()
}

impl Default for RawCodes {
    fn default() -> Self {
        RawCodes {
            login: c_login(),
            logout: c_logout(),
            pause: c_pause(),
            unpause: c_unpause(),
            dnd: c_dnd(),
            wrap: c_wrap(),
            listen: c_listen(),
            whisper: c_whisper(),
            barge: c_barge(),
            pickup: c_pickup(),
            transfer: c_transfer(),
            consult: c_consult(),
            park: c_park(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    station: Option<String>,
    #[serde(default)]
    logged_in: bool,
    #[serde(default)]
    wrap_up: Option<String>,
}

/// Queue members in the order the file lists them (linear and round-robin
/// follow it), not sorted as a map would be.
#[derive(Debug, Default)]
struct Members(Vec<(String, u32)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table of agent = penalty tier, like { alice = 0, bob = 1 }")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Members, A::Error> {
                let mut v = Vec::new();
                while let Some((k, t)) = m.next_entry::<String, u32>()? {
                    v.push((k, t));
                }
                Ok(Members(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    #[serde(default)]
    strategy: Option<String>,
    members: Members,
    #[serde(default)]
    ring_timeout: Option<String>,
    #[serde(default)]
    retry: Option<String>,
    #[serde(default)]
    max_wait: Option<String>,
    #[serde(default)]
    max_length: Option<usize>,
    #[serde(default)]
    join_empty: Option<bool>,
    #[serde(default)]
    leave_empty: Option<bool>,
    #[serde(default)]
    wrap_up: Option<String>,
    #[serde(default)]
    auto_pause: Option<u32>,
    #[serde(default)]
    priority: Option<i32>,
    #[serde(default)]
    tier_step: Option<String>,
    #[serde(default)]
    service_level: Option<String>,
    #[serde(default)]
    moh: Option<String>,
    #[serde(default)]
    announce_every: Option<String>,
    #[serde(default)]
    announce_wait: Option<bool>,
    #[serde(default)]
    callback_key: Option<String>,
    #[serde(default)]
    callback_trunks: Option<Vec<String>>,
}

/// How a queue picks the agent to offer a call to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Every free member rings; the first to answer takes the call.
    RingAll,
    /// The member idle the longest since their last call (or login).
    LongestIdle,
    /// The member after the one offered last, remembered across calls.
    RoundRobin,
    /// The member who took the fewest calls from this queue.
    FewestCalls,
    /// The member with the least talk time on this queue's calls.
    LeastTalkTime,
    /// Members in config order: the first free one.
    Linear,
    /// Any free member.
    Random,
}

impl Strategy {
    const NAMES: [(&'static str, Strategy); 7] = [
        ("ring_all", Strategy::RingAll),
        ("longest_idle", Strategy::LongestIdle),
        ("round_robin", Strategy::RoundRobin),
        ("fewest_calls", Strategy::FewestCalls),
        ("least_talk_time", Strategy::LeastTalkTime),
        ("linear", Strategy::Linear),
        ("random", Strategy::Random),
    ];

    /// Config spelling.
    pub fn name(self) -> &'static str {
        Strategy::NAMES
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("?", |(n, _)| n)
    }
}

/// Feature codes keyed on a station.
#[derive(Debug, Clone)]
pub struct Codes {
    /// Log in (`code` alone: the station's home agent; `code<number>`: that agent).
    pub login: String,
    /// Log out.
    pub logout: String,
    /// Pause, optionally followed by a reason code.
    pub pause: String,
    /// Back from a pause or do-not-disturb.
    pub unpause: String,
    /// Do not disturb.
    pub dnd: String,
    /// Wrap-up code for the last call: `code<disposition>`.
    pub wrap: String,
    /// Supervisor: listen to an agent's call, `code<agent number>`.
    pub listen: String,
    /// Supervisor: speak to the agent only.
    pub whisper: String,
    /// Supervisor: join the call (three-way).
    pub barge: String,
    /// Answer a queue call that is ringing another agent's phone.
    pub pickup: String,
    /// During a call: blind transfer to `code<agent number>`.
    pub transfer: String,
    /// During a call: attended transfer (consult first) to
    /// `code<agent number>`.
    pub consult: String,
    /// During a call: park the caller on the first free slot.
    pub park: String,
}

impl Codes {
    /// The codes a supervised bridge listens for during a call.
    pub fn during_call(&self) -> crate::media::bridge::AgentCodes<'_> {
        crate::media::bridge::AgentCodes {
            transfer: &self.transfer,
            consult: &self.consult,
            park: &self.park,
        }
    }
}

/// A configured agent.
#[derive(Debug, Clone)]
pub struct AgentCfg {
    /// Id (the table name).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Number keyed to log in at another phone.
    pub number: Option<String>,
    /// Home station.
    pub station: Option<String>,
    /// Logged in at the home station when the box starts.
    pub logged_in: bool,
    /// Wrap-up time overriding every queue's.
    pub wrap_up: Option<Duration>,
}

/// A configured queue.
#[derive(Debug, Clone)]
pub struct QueueCfg {
    /// Name (the table name).
    pub name: String,
    /// Distribution strategy.
    pub strategy: Strategy,
    /// Members (agent index) with their penalty tier, in config order.
    pub members: Vec<(usize, u32)>,
    /// How long one agent rings.
    pub ring_timeout: Duration,
    /// Pause before an agent who did not answer is offered again.
    pub retry: Duration,
    /// Longest wait before the caller leaves by overflow.
    pub max_wait: Option<Duration>,
    /// Most callers waiting; more go to overflow at once.
    pub max_length: Option<usize>,
    /// Whether callers may join while no member is logged in.
    pub join_empty: bool,
    /// Whether waiting callers leave when the last member logs out.
    pub leave_empty: bool,
    /// Wrap-up after a call from this queue.
    pub wrap_up: Duration,
    /// Missed offers in a row after which an agent is paused.
    pub auto_pause: Option<u32>,
    /// Higher first, across queues sharing agents.
    pub priority: i32,
    /// Tier N is offered after N x this wait.
    pub tier_step: Duration,
    /// Threshold of the service-level statistic.
    pub service_level: Duration,
    /// Music on hold: a prompt file played in a loop while callers wait
    /// (ring-back tone without it).
    pub moh: Option<String>,
    /// Period of the position announcement to waiting callers.
    pub announce_every: Option<Duration>,
    /// Whether the announcement includes the expected wait.
    pub announce_wait: bool,
    /// Key a waiting caller presses to be called back instead, keeping
    /// their place.
    pub callback_key: Option<char>,
    /// Trunks callbacks are dialled on.
    pub callback_trunks: Vec<String>,
}

/// The checked ACD.
#[derive(Debug, Clone)]
pub struct AcdConfig {
    /// Agents, in name order.
    pub agents: Vec<AgentCfg>,
    /// Queues, in name order.
    pub queues: Vec<QueueCfg>,
    /// Feature codes.
    pub codes: Codes,
    /// Stations allowed to listen, whisper and barge.
    pub supervisors: Vec<String>,
    /// Call park, when the site has it.
    pub park: Option<ParkCfg>,
}

impl AcdConfig {
    /// A queue's index by name.
    pub fn queue(&self, name: &str) -> Option<usize> {
        self.queues.iter().position(|q| q.name == name)
    }
}

/// Checks `[acd]`; errors are `(key path, message)`.
pub(crate) fn check(raw: &RawAcd, lines: &[LineInfo]) -> Result<AcdConfig, Vec<(String, String)>> {
    let mut errs: Vec<(String, String)> = Vec::new();
    let mut err = |p: String, m: String| errs.push((p, m));
    let dur =
        |err: &mut dyn FnMut(String, String), p: String, v: Option<&String>, d: Duration| match v {
            None => d,
            Some(s) => parse_duration(s).unwrap_or_else(|e| {
                err(p, e);
                d
            }),
        };

    let codes = Codes {
        login: raw.codes.login.clone(),
        logout: raw.codes.logout.clone(),
        pause: raw.codes.pause.clone(),
        unpause: raw.codes.unpause.clone(),
        dnd: raw.codes.dnd.clone(),
        wrap: raw.codes.wrap.clone(),
        listen: raw.codes.listen.clone(),
        whisper: raw.codes.whisper.clone(),
        barge: raw.codes.barge.clone(),
        pickup: raw.codes.pickup.clone(),
        transfer: raw.codes.transfer.clone(),
        consult: raw.codes.consult.clone(),
        park: raw.codes.park.clone(),
    };
    let all = [
        ("login", &codes.login),
        ("logout", &codes.logout),
        ("pause", &codes.pause),
        ("unpause", &codes.unpause),
        ("dnd", &codes.dnd),
        ("wrap", &codes.wrap),
        ("listen", &codes.listen),
        ("whisper", &codes.whisper),
        ("barge", &codes.barge),
        ("pickup", &codes.pickup),
        ("transfer", &codes.transfer),
        ("consult", &codes.consult),
        ("park", &codes.park),
    ];
    for (k, c) in all {
        if c.is_empty() || !c.chars().all(callbox_hal::dsp::dtmf::is_dtmf_digit) {
            err(
                format!("acd.codes.{k}"),
                format!("feature code `{c}` must be keypad keys"),
            );
        }
        // Keyed on an idle phone, the day/night switch's code comes first.
        let idle = !matches!(k, "transfer" | "consult" | "park");
        let dn = crate::daynight::CODE;
        if idle && !c.is_empty() && (c.starts_with(dn) || dn.starts_with(c.as_str())) {
            err(
                format!("acd.codes.{k}"),
                format!(
                    "feature code `{c}` ({k}) and the day/night switch's `{dn}` start alike; the box could not tell them apart"
                ),
            );
        }
        // Codes are matched by prefix (a pause code is followed by a
        // reason), so one must not start another.
        for (k2, c2) in all {
            if k != k2 && !c.is_empty() && c2.starts_with(c.as_str()) {
                err(
                    format!("acd.codes.{k2}"),
                    format!(
                        "feature code `{c2}` ({k2}) starts with `{c}` ({k}); the box could not tell them apart"
                    ),
                );
            }
        }
    }

    let mut agents = Vec::new();
    let mut numbers: HashMap<&str, &str> = HashMap::new();
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    };
    for (id, a) in &raw.agent {
        let p = format!("acd.agent.{id}");
        if !name_ok(id) {
            err(
                p.clone(),
                format!("agent id `{id}` must be 1-64 letters, digits, `-` or `_`"),
            );
        }
        if let Some(s) = &a.station {
            match lines.iter().find(|l| &l.id == s) {
                None => err(
                    format!("{p}.station"),
                    format!("`{s}` is not a line defined in this file"),
                ),
                Some(l) if l.kind != LineKind::Station => err(
                    format!("{p}.station"),
                    format!("`{s}` is a {} line; agents sit at station lines", l.kind),
                ),
                Some(_) => {}
            }
        }
        if a.logged_in && a.station.is_none() {
            err(
                format!("{p}.logged_in"),
                "an agent logged in at start needs a home `station`".into(),
            );
        }
        if let Some(n) = &a.number {
            if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()) {
                err(
                    format!("{p}.number"),
                    format!("agent number `{n}` must be digits"),
                );
            } else if let Some(other) = numbers.insert(n, id) {
                err(
                    format!("{p}.number"),
                    format!("agent number `{n}` is also agent `{other}`'s"),
                );
            }
        }
        agents.push(AgentCfg {
            id: id.clone(),
            name: a.name.clone().unwrap_or_else(|| id.clone()),
            number: a.number.clone(),
            station: a.station.clone(),
            logged_in: a.logged_in,
            wrap_up: a
                .wrap_up
                .as_ref()
                .map(|w| dur(&mut err, format!("{p}.wrap_up"), Some(w), Duration::ZERO)),
        });
    }
    let mut homes: HashMap<&str, &str> = HashMap::new();
    for a in &agents {
        if let Some(s) = &a.station
            && a.logged_in
            && let Some(other) = homes.insert(s, &a.id)
        {
            err(
                format!("acd.agent.{}.logged_in", a.id),
                format!("station `{s}` already has agent `{other}` logged in at start"),
            );
        }
    }

    let mut queues = Vec::new();
    for (name, q) in &raw.queue {
        let p = format!("acd.queue.{name}");
        if !name_ok(name) {
            err(
                p.clone(),
                format!("queue name `{name}` must be 1-64 letters, digits, `-` or `_`"),
            );
        }
        if let Some(m) = &q.moh
            && (m.is_empty()
                || std::path::Path::new(m).is_absolute()
                || m.split('/').any(|x| x == ".."))
        {
            err(
                format!("{p}.moh"),
                format!("music file `{m}` must be a file name inside the prompts directory"),
            );
        }
        let strategy = match q.strategy.as_deref() {
            None => Strategy::LongestIdle,
            Some(s) => match Strategy::NAMES.iter().find(|(n, _)| *n == s) {
                Some((_, st)) => *st,
                None => {
                    err(
                        format!("{p}.strategy"),
                        format!(
                            "unknown strategy `{s}`; use one of {}",
                            Strategy::NAMES.map(|(n, _)| n).join(", ")
                        ),
                    );
                    Strategy::LongestIdle
                }
            },
        };
        let mut members = Vec::new();
        for (agent, tier) in &q.members.0 {
            match agents.iter().position(|a| &a.id == agent) {
                Some(i) => members.push((i, *tier)),
                None => err(
                    format!("{p}.members.{agent}"),
                    format!("`{agent}` is not an agent under [acd.agent]"),
                ),
            }
        }
        if q.members.0.is_empty() {
            err(
                format!("{p}.members"),
                "a queue needs at least one member agent".into(),
            );
        }
        let tiered = members.iter().any(|&(_, t)| t > 0);
        if tiered && q.tier_step.is_none() {
            err(
                format!("{p}.tier_step"),
                "members in tiers above 0 need `tier_step` (tier N is offered after N x tier_step of waiting)".into(),
            );
        }
        let ring_timeout = dur(
            &mut err,
            format!("{p}.ring_timeout"),
            q.ring_timeout.as_ref(),
            Duration::from_secs(15),
        );
        if ring_timeout.is_zero() {
            err(
                format!("{p}.ring_timeout"),
                "a ring timeout of zero never lets an agent answer".into(),
            );
        }
        if q.max_length == Some(0) {
            err(
                format!("{p}.max_length"),
                "max_length 0 would send every caller to overflow; leave it out for no limit"
                    .into(),
            );
        }
        queues.push(QueueCfg {
            name: name.clone(),
            strategy,
            members,
            ring_timeout,
            retry: dur(
                &mut err,
                format!("{p}.retry"),
                q.retry.as_ref(),
                Duration::from_secs(5),
            ),
            max_wait: q
                .max_wait
                .as_ref()
                .map(|w| dur(&mut err, format!("{p}.max_wait"), Some(w), Duration::ZERO)),
            max_length: q.max_length,
            join_empty: q.join_empty.unwrap_or(true),
            leave_empty: q.leave_empty.unwrap_or(false),
            wrap_up: dur(
                &mut err,
                format!("{p}.wrap_up"),
                q.wrap_up.as_ref(),
                Duration::ZERO,
            ),
            auto_pause: q.auto_pause.filter(|&n| n > 0),
            priority: q.priority.unwrap_or(0),
            tier_step: dur(
                &mut err,
                format!("{p}.tier_step"),
                q.tier_step.as_ref(),
                Duration::from_secs(30),
            ),
            service_level: dur(
                &mut err,
                format!("{p}.service_level"),
                q.service_level.as_ref(),
                Duration::from_secs(20),
            ),
            moh: q.moh.clone(),
            announce_every: match &q.announce_every {
                None => None,
                Some(a) => {
                    let d = dur(&mut err, format!("{p}.announce_every"), Some(a), Duration::ZERO);
                    if d < Duration::from_secs(10) {
                        err(
                            format!("{p}.announce_every"),
                            format!("announce_every of {a} would talk over the music all the time; at least 10s"),
                        );
                    }
                    Some(d)
                }
            },
            announce_wait: q.announce_wait.unwrap_or(true),
            callback_key: match q.callback_key.as_deref() {
                None => None,
                Some(k) => {
                    let c = k.chars().next().filter(|&c| k.chars().count() == 1 && callbox_hal::dsp::dtmf::is_dtmf_digit(c));
                    if c.is_none() {
                        err(format!("{p}.callback_key"), format!("callback_key `{k}` must be one keypad key"));
                    }
                    c
                }
            },
            callback_trunks: match &q.callback_trunks {
                None => lines.iter().filter(|l| l.kind == LineKind::Trunk).map(|l| l.id.clone()).collect(),
                Some(ts) => {
                    for (i, t) in ts.iter().enumerate() {
                        if !lines.iter().any(|l| &l.id == t && l.kind == LineKind::Trunk) {
                            err(format!("{p}.callback_trunks[{i}]"), format!("`{t}` is not a trunk line defined in this file"));
                        }
                    }
                    ts.clone()
                }
            },
        });
    }
    for (i, st) in raw.supervisors.iter().enumerate() {
        if !lines
            .iter()
            .any(|l| &l.id == st && l.kind == LineKind::Station)
        {
            errs.push((
                format!("acd.supervisors[{i}]"),
                format!("`{st}` is not a station line defined in this file"),
            ));
        }
    }
    let mut err = |p: String, m: String| errs.push((p, m));
    let park = raw.park.as_ref().and_then(|p| {
        let slots = p.slots.unwrap_or(9);
        let timeout = dur(
            &mut err,
            "acd.park.timeout".into(),
            p.timeout.as_ref(),
            Duration::from_secs(60),
        );
        let base = match p.number.parse::<u64>() {
            Ok(n) if p.number.bytes().all(|b| b.is_ascii_digit()) && p.number.len() <= 16 => n,
            _ => {
                err(
                    "acd.park.number".into(),
                    format!("park number `{}` must be digits", p.number),
                );
                return None;
            }
        };
        if !(1..=99).contains(&slots) {
            err(
                "acd.park.slots".into(),
                format!("slots must be 1-99, not {slots}"),
            );
            return None;
        }
        if timeout < Duration::from_secs(5) {
            err(
                "acd.park.timeout".into(),
                "a parked call waits at least 5s before it rings back".into(),
            );
        }
        Some(ParkCfg {
            number: p.number.clone(),
            slots: (1..=u64::from(slots))
                .map(|i| (base + i).to_string())
                .collect(),
            timeout,
        })
    });
    if errs.is_empty() {
        Ok(AcdConfig {
            agents,
            queues,
            codes,
            supervisors: raw.supervisors.clone(),
            park,
        })
    } else {
        Err(errs)
    }
}
