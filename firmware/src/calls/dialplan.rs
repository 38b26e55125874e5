//! The dial plan (`[dialplan]` in the site config): what a number keyed on
//! a station reaches.
//!
//! ```toml
//! [dialplan]
//! outside_prefix = "9"            # 9 + the number goes out on a trunk
//! trunks = ["trunk-1", "trunk-2"] # the first free one (default: every trunk)
//! inter_digit_timeout = "4s"      # the number is complete this long after the last key, or at `#`
//! allow = ["local", "mobile", "national", "tollfree"]   # what every phone may call
//! extensions = { "801" = "desk-1", "802" = "desk-2" }   # stations by number
//!
//! [dialplan.allow_for]            # a station or an agent that may call more
//! desk-1 = ["local", "mobile", "national", "tollfree", "international"]
//! ```
//!
//! Agents' `number`s under `[acd.agent.ID]` are extensions too: the call
//! rings the agent's station. Outside numbers fall into classes of
//! patterns (defaults for China, each replaceable under
//! `[dialplan.classes]`); `emergency` is always allowed, and emergency
//! numbers go out without the prefix too, on any trunk of the site.
//!
//! `[[dialplan.route]]` sends numbers matching its patterns to its own
//! trunk group (first free or round robin, with the number presented);
//! when every trunk of a group is busy or the network answers congestion,
//! the next matching route is tried, then the default trunks (unless a
//! route says `fallback = false`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use callbox_hal::diag::parse_duration;
use callbox_hal::{LineInfo, LineKind};
use serde::Deserialize;

use crate::ivr::pattern::Pattern;

/// The class of emergency numbers, always allowed.
pub const EMERGENCY: &str = "emergency";
/// Default quiet time after the last key.
const INTER_DIGIT: Duration = Duration::from_secs(4);

/// Classes and their patterns when the site does not replace them, in the
/// order they are tried: China's numbering plan.
const CLASSES: &[(&str, &[&str])] = &[
    (EMERGENCY, &["110", "119", "120", "122", "112"]),
    ("tollfree", &["400XXXXXXX", "800XXXXXXX"]),
    ("mobile", &["1[3-9]XXXXXXXXX"]),
    ("local", &["[2-9]XXXXXX", "[2-9]XXXXXXX"]),
    ("national", &["0[1-9]XXXXXXXX!"]),
    ("international", &["00."]),
];
/// What every phone may call when the site does not say.
const ALLOW: &[&str] = &["local", "mobile", "national", "tollfree"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDialPlan {
    #[serde(default)]
    outside_prefix: Option<String>,
    #[serde(default)]
    trunks: Option<Vec<String>>,
    #[serde(default)]
    inter_digit_timeout: Option<String>,
    #[serde(default)]
    allow: Option<Vec<String>>,
    #[serde(default)]
    allow_for: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    extensions: BTreeMap<String, String>,
    #[serde(default)]
    classes: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    access: BTreeMap<String, String>,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    caller_id: Option<String>,
    #[serde(default)]
    caller_id_for: BTreeMap<String, String>,
    #[serde(default)]
    route: Vec<RawRoute>,
    #[serde(default)]
    emergency_preempt: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    numbers: Vec<String>,
    trunks: Vec<String>,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    caller_id: Option<String>,
    #[serde(default = "yes")]
    fallback: bool,
}

fn yes() -> bool {
    true
}

/// Trunks outside calls go out on, and what they present.
#[derive(Debug, Clone)]
pub struct TrunkGroup {
    /// Numbers it is for (after the prefix); empty for the default group.
    patterns: Vec<Pattern>,
    trunks: Vec<String>,
    /// Each call starts one trunk further (round robin).
    rotate: bool,
    next: Arc<AtomicUsize>,
    /// Presented to the called party; `None`: the trunk's own.
    pub caller_id: Option<String>,
    /// Whether the next group is tried when this one is congested.
    fallback: bool,
}

impl TrunkGroup {
    /// The trunks in the order to try them for one call.
    pub fn order(&self) -> Vec<String> {
        let n = self.trunks.len();
        if !self.rotate || n == 0 {
            return self.trunks.clone();
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|i| self.trunks[(first + i) % n].clone())
            .collect()
    }
}

impl RawDialPlan {
    /// The access numbers, as written.
    pub(crate) fn access_numbers(&self) -> impl Iterator<Item = &str> {
        self.access.keys().map(String::as_str)
    }
}

/// The IVR nodes `access` numbers start at, as `(key path, node name)`:
/// the IVR's check resolves them (and counts them as starts).
pub(crate) fn access_nodes(raw: &RawDialPlan) -> Vec<(String, String)> {
    raw.access
        .iter()
        .map(|(number, node)| (format!("dialplan.access.{number}"), node.clone()))
        .collect()
}

/// What an extension number rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extension {
    /// A station line.
    Station(String),
    /// An agent: the station they are logged in at, else their home one.
    Agent(String),
    /// An IVR node (a queue, a menu): the flow runs with the station as
    /// the caller.
    Node(String),
    /// A conference room.
    Room(crate::media::conference::RoomCfg),
    /// A park slot: the station takes the call parked there.
    ParkSlot(String),
}

/// What a keyed number reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialled {
    /// An extension of the box.
    Extension(Extension),
    /// A number outside, through a trunk.
    Outside {
        /// The number to dial on the trunk (without the prefix).
        number: String,
        /// Its class (`emergency`, `mobile`…).
        class: String,
        /// Whether the phone may call it.
        allowed: bool,
    },
    /// Nothing the plan knows.
    Unknown,
}

/// A checked dial plan.
#[derive(Debug, Clone)]
pub struct DialPlan {
    /// Keyed before an outside number; `None`: no outside calls but
    /// emergency ones.
    pub outside_prefix: Option<String>,
    /// The default trunk group.
    default: TrunkGroup,
    routes: Vec<TrunkGroup>,
    /// Every trunk of the site: emergency calls take any free one.
    all_trunks: Vec<String>,
    caller_id_for: HashMap<String, String>,
    /// Quiet time that completes a number.
    pub inter_digit: Duration,
    extensions: BTreeMap<String, Extension>,
    classes: Vec<(String, Vec<Pattern>)>,
    allow: Vec<String>,
    allow_for: HashMap<String, Vec<String>>,
    /// An emergency call finding every trunk busy ends a caller's call to
    /// take its trunk.
    pub emergency_preempt: bool,
}

impl DialPlan {
    /// What `keys` (as keyed, `#` included) reach from `station`, with
    /// `agent` logged in there.
    pub fn classify(&self, keys: &str, station: &str, agent: Option<&str>) -> Dialled {
        let digits = keys.strip_suffix('#').unwrap_or(keys);
        if let Some(e) = self.extensions.get(digits) {
            return Dialled::Extension(e.clone());
        }
        let outside = self
            .outside_prefix
            .as_deref()
            .and_then(|p| digits.strip_prefix(p))
            .filter(|n| !n.is_empty());
        // Emergency numbers go out with the prefix or without it.
        let number = match outside {
            Some(n) => n,
            None if self.class_of(digits) == Some(EMERGENCY) => digits,
            None => return Dialled::Unknown,
        };
        let Some(class) = self.class_of(number) else {
            return Dialled::Unknown;
        };
        let may = |list: &Vec<String>| list.iter().any(|c| c == class);
        let allowed = class == EMERGENCY
            || agent
                .and_then(|a| self.allow_for.get(a))
                .or_else(|| self.allow_for.get(station))
                .map_or_else(|| may(&self.allow), may);
        Dialled::Outside {
            number: number.to_string(),
            class: class.to_string(),
            allowed,
        }
    }

    /// What `number` (as headquarters gives it, without the prefix)
    /// reaches when the box dials it for an agent: an extension, or an
    /// outside number of a class the agent may call or not.
    pub fn classify_direct(&self, number: &str, station: &str, agent: Option<&str>) -> Dialled {
        if let Some(e) = self.extensions.get(number) {
            return Dialled::Extension(e.clone());
        }
        match &self.outside_prefix {
            Some(p) => self.classify(&format!("{p}{number}"), station, agent),
            // Without a prefix only emergency numbers go out.
            None => self.classify(number, station, agent),
        }
    }

    /// Whether `keys` are a whole number already: `#` at the end, an
    /// extension no longer one starts with, or an emergency number keyed
    /// without the prefix. Otherwise the number is complete after
    /// [`inter_digit`](Self::inter_digit).
    pub fn complete(&self, keys: &str) -> bool {
        if keys.ends_with('#') {
            return true;
        }
        if self.extensions.contains_key(keys) {
            return !self
                .extensions
                .keys()
                .any(|e| e.len() > keys.len() && e.starts_with(keys));
        }
        let prefixed = self
            .outside_prefix
            .as_deref()
            .is_some_and(|p| keys.starts_with(p));
        !prefixed && self.class_of(keys) == Some(EMERGENCY)
    }

    /// The trunk groups to try for `number` of `class`, in order: the
    /// routes whose patterns match it, then (unless one of them says no
    /// fallback) the default group; an emergency number tries every trunk
    /// of the site.
    pub fn groups(&self, number: &str, class: &str) -> Vec<TrunkGroup> {
        if class == EMERGENCY {
            return vec![TrunkGroup {
                trunks: self.all_trunks.clone(),
                rotate: false,
                ..self.default.clone()
            }];
        }
        let mut out = Vec::new();
        for r in &self.routes {
            if r.patterns.iter().any(|p| p.matches(number)) {
                out.push(r.clone());
                if !r.fallback {
                    return out;
                }
            }
        }
        out.push(self.default.clone());
        out
    }

    /// The number an agent's (or a station's) calls present, if the plan
    /// gives them one of their own.
    pub fn caller_id_of(&self, station: &str, agent: Option<&str>) -> Option<&str> {
        agent
            .and_then(|a| self.caller_id_for.get(a))
            .or_else(|| self.caller_id_for.get(station))
            .map(String::as_str)
    }

    /// The default group's trunks (for tests and the docs' checks).
    pub fn trunks(&self) -> &[String] {
        &self.default.trunks
    }

    fn class_of(&self, number: &str) -> Option<&str> {
        self.classes
            .iter()
            .find(|(_, ps)| ps.iter().any(|p| p.matches(number)))
            .map(|(c, _)| c.as_str())
    }
}

/// A number as a trunk answers for it or a call presents it: 1–32 digits,
/// optionally after a `+`.
pub(crate) fn valid_number(n: &str) -> bool {
    let digits = n.strip_prefix('+').unwrap_or(n);
    (1..=32).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Checks `[dialplan]` against the site's lines and agents (`agents`:
/// `(agent id, number)` of every agent that has one). Problems come back
/// as `(key path, message)`.
pub(crate) fn check(
    raw: &RawDialPlan,
    lines: &[LineInfo],
    agents: &[(String, Option<String>)],
    rooms: &[crate::media::conference::RoomCfg],
    park_slots: &[String],
) -> Result<DialPlan, Vec<(String, String)>> {
    let mut errs: Vec<(String, String)> = Vec::new();
    let mut err = |k: String, m: String| errs.push((k, m));
    let is = |id: &str, kind: LineKind| lines.iter().any(|l| l.id == id && l.kind == kind);

    let outside_prefix = raw.outside_prefix.clone().filter(|p| !p.is_empty());
    if let Some(p) = &outside_prefix
        && !p.bytes().all(|b| b.is_ascii_digit())
    {
        err(
            "dialplan.outside_prefix".into(),
            format!("outside prefix `{p}` must be digits"),
        );
    }
    let all_trunks: Vec<String> = lines
        .iter()
        .filter(|l| l.kind == LineKind::Trunk)
        .map(|l| l.id.clone())
        .collect();
    let trunk_list = |at: &str, ts: &[String], err: &mut dyn FnMut(String, String)| {
        for (i, t) in ts.iter().enumerate() {
            if !is(t, LineKind::Trunk) {
                err(
                    format!("{at}[{i}]"),
                    format!("`{t}` is not a trunk line of this site"),
                );
            }
        }
        ts.to_vec()
    };
    let rotate =
        |at: &str, o: &Option<String>, err: &mut dyn FnMut(String, String)| match o.as_deref() {
            None | Some("first_free") => false,
            Some("round_robin") => true,
            Some(other) => {
                err(
                    at.to_string(),
                    format!("unknown order `{other}`; use \"first_free\" or \"round_robin\""),
                );
                false
            }
        };
    let presented = |at: &str, c: &Option<String>, err: &mut dyn FnMut(String, String)| {
        let c = c.clone()?;
        if valid_number(&c) {
            Some(c)
        } else {
            err(
                at.to_string(),
                format!("caller id `{c}` must be 1-32 digits, optionally after a `+`"),
            );
            None
        }
    };
    let default = TrunkGroup {
        patterns: Vec::new(),
        trunks: match &raw.trunks {
            None => all_trunks.clone(),
            Some(ts) => trunk_list("dialplan.trunks", ts, &mut err),
        },
        rotate: rotate("dialplan.order", &raw.order, &mut err),
        next: Arc::default(),
        caller_id: presented("dialplan.caller_id", &raw.caller_id, &mut err),
        fallback: false,
    };
    let mut routes = Vec::new();
    for (i, r) in raw.route.iter().enumerate() {
        let at = format!("dialplan.route[{i}]");
        let mut patterns = Vec::new();
        for (j, p) in r.numbers.iter().enumerate() {
            match Pattern::parse(p) {
                Ok(p) => patterns.push(p),
                Err(e) => err(format!("{at}.numbers[{j}]"), e.to_string()),
            }
        }
        if r.trunks.is_empty() {
            err(
                format!("{at}.trunks"),
                "a route needs at least one trunk".into(),
            );
        }
        routes.push(TrunkGroup {
            patterns,
            trunks: trunk_list(&format!("{at}.trunks"), &r.trunks, &mut err),
            rotate: rotate(&format!("{at}.order"), &r.order, &mut err),
            next: Arc::default(),
            caller_id: presented(&format!("{at}.caller_id"), &r.caller_id, &mut err),
            fallback: r.fallback,
        });
    }
    let mut caller_id_for = HashMap::new();
    for (who, c) in &raw.caller_id_for {
        let at = format!("dialplan.caller_id_for.{who}");
        if !is(who, LineKind::Station) && !agents.iter().any(|(a, _)| a == who) {
            err(
                at.clone(),
                format!("`{who}` is neither a station line nor an agent of this site"),
            );
        }
        if let Some(c) = presented(&at, &Some(c.clone()), &mut err) {
            caller_id_for.insert(who.clone(), c);
        }
    }
    let inter_digit = match &raw.inter_digit_timeout {
        None => INTER_DIGIT,
        Some(s) => match parse_duration(s) {
            Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(30) => d,
            Ok(_) => {
                err(
                    "dialplan.inter_digit_timeout".into(),
                    format!("inter_digit_timeout `{s}` must be between 1s and 30s"),
                );
                INTER_DIGIT
            }
            Err(e) => {
                err("dialplan.inter_digit_timeout".into(), e);
                INTER_DIGIT
            }
        },
    };

    let mut classes: Vec<(String, Vec<Pattern>)> = Vec::new();
    let mut compile =
        |name: &str, list: &[String], at: &str, err: &mut dyn FnMut(String, String)| {
            let mut ps = Vec::new();
            for (i, p) in list.iter().enumerate() {
                match Pattern::parse(p) {
                    Ok(p) => ps.push(p),
                    Err(e) => err(format!("{at}[{i}]"), e.to_string()),
                }
            }
            classes.push((name.to_string(), ps));
        };
    for (name, defaults) in CLASSES {
        match raw.classes.get(*name) {
            Some(list) => compile(name, list, &format!("dialplan.classes.{name}"), &mut err),
            None => {
                let list: Vec<String> = defaults.iter().map(|s| s.to_string()).collect();
                compile(name, &list, "dialplan", &mut err);
            }
        }
    }
    for (name, list) in &raw.classes {
        if !CLASSES.iter().any(|(c, _)| c == name) {
            compile(name, list, &format!("dialplan.classes.{name}"), &mut err);
        }
    }
    let known = |c: &str| classes.iter().any(|(n, _)| n == c);
    let check_list = |at: String, list: &[String], err: &mut dyn FnMut(String, String)| {
        for (i, c) in list.iter().enumerate() {
            if !known(c) {
                err(
                    format!("{at}[{i}]"),
                    format!(
                        "`{c}` is not a class of numbers; the classes are {}",
                        classes
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
    };
    let allow = match &raw.allow {
        None => ALLOW.iter().map(|s| s.to_string()).collect(),
        Some(list) => {
            check_list("dialplan.allow".into(), list, &mut err);
            list.clone()
        }
    };
    let mut allow_for = HashMap::new();
    for (who, list) in &raw.allow_for {
        if !is(who, LineKind::Station) && !agents.iter().any(|(a, _)| a == who) {
            err(
                format!("dialplan.allow_for.{who}"),
                format!("`{who}` is neither a station line nor an agent of this site"),
            );
        }
        check_list(format!("dialplan.allow_for.{who}"), list, &mut err);
        allow_for.insert(who.clone(), list.clone());
    }

    let mut extensions = BTreeMap::new();
    for (number, station) in &raw.extensions {
        let at = format!("dialplan.extensions.{number}");
        if !is(station, LineKind::Station) {
            err(
                at.clone(),
                format!("`{station}` is not a station line of this site"),
            );
        }
        extensions.insert(number.clone(), Extension::Station(station.clone()));
    }
    for slot in park_slots {
        if extensions.contains_key(slot) {
            err(
                "acd.park".into(),
                format!("park slot {slot} is also an extension or a room"),
            );
        }
        extensions.insert(slot.clone(), Extension::ParkSlot(slot.clone()));
    }
    for room in rooms {
        if extensions.contains_key(&room.number) {
            err(
                format!("conference.{}.number", room.name),
                format!("room number {} is also an extension", room.number),
            );
        }
        extensions.insert(room.number.clone(), Extension::Room(room.clone()));
    }
    for (number, node) in &raw.access {
        if extensions.contains_key(number) {
            err(
                format!("dialplan.access.{number}"),
                format!("{number} is also an extension"),
            );
        }
        extensions.insert(number.clone(), Extension::Node(node.clone()));
    }
    for (agent, number) in agents {
        let Some(n) = number else { continue };
        if extensions.contains_key(n) {
            let table = if raw.access.contains_key(n) {
                "access"
            } else {
                "extensions"
            };
            err(
                format!("dialplan.{table}.{n}"),
                format!("extension {n} is also agent `{agent}`'s number"),
            );
        }
        extensions.insert(n.clone(), Extension::Agent(agent.clone()));
    }
    let emergency = classes
        .iter()
        .find(|(c, _)| c == EMERGENCY)
        .map(|(_, ps)| ps.clone())
        .unwrap_or_default();
    for number in extensions.keys() {
        let at = if raw.extensions.contains_key(number) {
            format!("dialplan.extensions.{number}")
        } else if raw.access.contains_key(number) {
            format!("dialplan.access.{number}")
        } else if let Some(r) = rooms.iter().find(|r| &r.number == number) {
            format!("conference.{}.number", r.name)
        } else {
            "dialplan".to_string()
        };
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            err(
                at,
                format!(
                    "extension `{number}` must be digits (a code starting with `*` is a feature code)"
                ),
            );
        } else if let Some(p) = outside_prefix.as_deref().filter(|p| number.starts_with(p)) {
            err(
                at,
                format!(
                    "extension {number} starts with the outside prefix `{p}`; the box could not tell them apart"
                ),
            );
        } else if emergency.iter().any(|p| p.matches(number)) {
            err(at, format!("extension {number} is an emergency number"));
        }
    }

    if errs.is_empty() {
        Ok(DialPlan {
            outside_prefix,
            default,
            routes,
            all_trunks,
            caller_id_for,
            inter_digit,
            extensions,
            classes,
            allow,
            allow_for,
            emergency_preempt: raw.emergency_preempt,
        })
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Vec<LineInfo> {
        let l = |id: &str, kind| LineInfo {
            id: id.into(),
            kind,
        };
        vec![
            l("trunk-1", LineKind::Trunk),
            l("trunk-2", LineKind::Trunk),
            l("desk-1", LineKind::Station),
            l("desk-2", LineKind::Station),
        ]
    }

    fn agents() -> Vec<(String, Option<String>)> {
        vec![("alice".into(), Some("1001".into())), ("bob".into(), None)]
    }

    fn plan(toml_src: &str) -> Result<DialPlan, Vec<(String, String)>> {
        let raw: RawDialPlan = toml::from_str(toml_src).unwrap();
        check(&raw, &lines(), &agents(), &[], &[])
    }

    fn outside(number: &str, class: &str, allowed: bool) -> Dialled {
        Dialled::Outside {
            number: number.into(),
            class: class.into(),
            allowed,
        }
    }

    #[test]
    fn numbers_reach_extensions_agents_and_outside_classes() {
        let p = plan(
            r#"outside_prefix = "9"
extensions = { "801" = "desk-1" }
allow_for = { desk-2 = ["local", "mobile", "international"] }"#,
        )
        .unwrap();
        assert_eq!(p.trunks(), ["trunk-1", "trunk-2"]);
        assert_eq!(
            p.classify("801", "desk-2", None),
            Dialled::Extension(Extension::Station("desk-1".into()))
        );
        assert_eq!(
            p.classify("1001#", "desk-2", None),
            Dialled::Extension(Extension::Agent("alice".into()))
        );
        assert_eq!(
            p.classify("913800138000", "desk-1", None),
            outside("13800138000", "mobile", true)
        );
        assert_eq!(
            p.classify("90044123456789", "desk-1", None),
            outside("0044123456789", "international", false)
        );
        assert_eq!(
            p.classify("90044123456789", "desk-2", None),
            outside("0044123456789", "international", true)
        );
        assert_eq!(
            p.classify("90105551234#", "desk-2", None),
            outside("0105551234", "national", false)
        );
        // Emergency: always, with the prefix or without.
        assert_eq!(
            p.classify("110", "desk-2", None),
            outside("110", "emergency", true)
        );
        assert_eq!(
            p.classify("9120", "desk-2", None),
            outside("120", "emergency", true)
        );
        assert_eq!(p.classify("555", "desk-1", None), Dialled::Unknown);
        assert_eq!(p.classify("9", "desk-1", None), Dialled::Unknown);
    }

    #[test]
    fn an_agents_own_permissions_come_before_the_stations() {
        let p = plan(
            r#"outside_prefix = "0"
allow = ["emergency"]
allow_for = { alice = ["mobile"], desk-1 = ["local"] }"#,
        )
        .unwrap();
        let n = "013800138000";
        assert_eq!(
            p.classify(n, "desk-1", Some("alice")),
            outside("13800138000", "mobile", true)
        );
        assert_eq!(
            p.classify(n, "desk-1", None),
            outside("13800138000", "mobile", false)
        );
        assert_eq!(
            p.classify(n, "desk-2", Some("bob")),
            outside("13800138000", "mobile", false)
        );
    }

    #[test]
    fn a_number_is_complete_at_hash_or_when_no_longer_one_can_follow() {
        let p = plan(
            r#"outside_prefix = "9"
extensions = { "80" = "desk-1", "801" = "desk-2" }"#,
        )
        .unwrap();
        assert!(p.complete("801"));
        assert!(!p.complete("80"), "801 may follow");
        assert!(p.complete("80#"));
        assert!(p.complete("1001"));
        assert!(p.complete("110"));
        assert!(
            !p.complete("9110"),
            "the prefix: a longer number may follow"
        );
        assert!(!p.complete("91380013800"));
    }

    #[test]
    fn routes_pick_trunk_groups_in_turn_and_round_robin_rotates() {
        let p = plan(
            r#"outside_prefix = "9"
caller_id = "4008001000"
caller_id_for = { alice = "4008001234", desk-2 = "4008005555" }
[[route]]
numbers = ["00."]
trunks = ["trunk-2", "trunk-1"]
order = "round_robin"
caller_id = "4008009999"
[[route]]
numbers = ["0044."]
trunks = ["trunk-1"]
fallback = false"#,
        )
        .unwrap();
        let g = p.groups("0081312345678", "international");
        assert_eq!(g.len(), 2, "the route, then the default trunks");
        assert_eq!(g[0].caller_id.as_deref(), Some("4008009999"));
        assert_eq!(g[0].order(), ["trunk-2", "trunk-1"]);
        assert_eq!(g[0].order(), ["trunk-1", "trunk-2"], "round robin");
        assert_eq!(g[1].order(), ["trunk-1", "trunk-2"]);
        assert_eq!(g[1].order(), ["trunk-1", "trunk-2"], "first free");
        let uk = p.groups("00442079460000", "international");
        assert_eq!(uk.len(), 2, "both routes; the second allows no fallback");
        assert_eq!(uk[1].order(), ["trunk-1"]);
        let sos = p.groups("110", EMERGENCY);
        assert_eq!(sos.len(), 1);
        assert_eq!(sos[0].order(), ["trunk-1", "trunk-2"]);
        assert_eq!(p.caller_id_of("desk-1", Some("alice")), Some("4008001234"));
        assert_eq!(p.caller_id_of("desk-2", Some("bob")), Some("4008005555"));
        assert_eq!(p.caller_id_of("desk-1", None), None);
    }

    #[test]
    fn mistakes_are_named_at_their_key() {
        let errs = plan(
            r#"outside_prefix = "9a"
trunks = ["desk-1"]
inter_digit_timeout = "0s"
allow = ["mobile", "galactic"]
allow_for = { carol = ["local"] }
extensions = { "1001" = "desk-1", "902" = "trunk-1", "119" = "desk-2" }
classes = { mobile = ["1[3-"] }
order = "random"
caller_id = "400-800"
caller_id_for = { zed = "4008001234" }
[[route]]
numbers = ["00["]
trunks = []"#,
        )
        .unwrap_err();
        let has = |k: &str, m: &str| {
            assert!(
                errs.iter().any(|(kk, mm)| kk == k && mm.contains(m)),
                "no `{m}` at {k}: {errs:#?}"
            )
        };
        has("dialplan.outside_prefix", "must be digits");
        has("dialplan.trunks[0]", "`desk-1` is not a trunk line");
        has("dialplan.inter_digit_timeout", "between 1s and 30s");
        has("dialplan.allow[1]", "`galactic` is not a class");
        has(
            "dialplan.allow_for.carol",
            "neither a station line nor an agent",
        );
        has("dialplan.extensions.1001", "also agent `alice`'s number");
        has("dialplan.extensions.902", "`trunk-1` is not a station line");
        has("dialplan.extensions.119", "is an emergency number");
        has("dialplan.classes.mobile[0]", "1[3-");
        has("dialplan.order", "unknown order `random`");
        has(
            "dialplan.caller_id",
            "caller id `400-800` must be 1-32 digits",
        );
        has(
            "dialplan.caller_id_for.zed",
            "neither a station line nor an agent",
        );
        has("dialplan.route[0].numbers[0]", "00[");
        has("dialplan.route[0].trunks", "at least one trunk");
    }
}
