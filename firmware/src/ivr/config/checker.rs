//! The context of one check run: the errors found so far with their key
//! paths, the names a flow may refer to, the prompts to load, and the
//! helpers every node check shares (targets, waits, prompt lists, lines).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use callbox_hal::diag::parse_duration;
use callbox_hal::{LineInfo, LineKind};

use super::flow::{Item, NodeId, SayAs, Target};
use super::raw::Prompts;
use crate::acd::AcdConfig;
use crate::ivr::hours::RawHours;
use crate::ivr::lookup::Lookups;
use crate::ivr::pattern::Pattern;
use crate::ivr::say::Lang;

/// How long a menu or a collection waits for the first key.
pub(super) const DEFAULT_FIRST_DIGIT: Duration = Duration::from_secs(5);
/// How long it waits between keys.
pub(super) const DEFAULT_INTER_DIGIT: Duration = Duration::from_secs(3);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// Node, mailbox and job names: they become folder names and log fields.
pub(super) fn node_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

/// Context of one check run: collects errors, resolves names.
pub(super) struct Checker<'a> {
    /// Problems so far, `(key path, message)`, in the order found.
    pub(super) errs: Vec<(String, String)>,
    /// Node name → index (the file's name order).
    pub(super) names: HashMap<String, NodeId>,
    pub(super) prompt_dir: PathBuf,
    pub(super) system_dir: PathBuf,
    /// Prompt references to load: key → (config path of the first use).
    pub(super) wanted: BTreeMap<String, String>,
    /// Languages a flow can speak; every prompt loads in each.
    pub(super) langs: HashSet<Lang>,
    pub(super) lines: &'a [LineInfo],
    /// The checked `[acd]`, if there is one and it passed.
    pub(super) acd: Option<&'a AcdConfig>,
    /// An `[acd]` is there but failed its own check: its queues are
    /// unknown, not missing.
    pub(super) acd_failed: bool,
    /// Schedules as written: a case naming one whose own check failed is
    /// not reported again.
    pub(super) schedules: &'a BTreeMap<String, RawHours>,
    /// `[ivr] business_hours`, which a `mode` case needs.
    pub(super) business_hours: Option<&'a str>,
    /// The site's conference rooms.
    pub(super) rooms: &'a [crate::media::conference::RoomCfg],
    /// Number lists, checked before the nodes.
    pub(super) lists: HashMap<String, Vec<Pattern>>,
    /// Lookup tables, loaded before the checks.
    pub(super) lookups: &'a Lookups,
}

/// The node being checked: its name, and the key path its errors are
/// placed at.
pub(super) struct NodeAt<'n> {
    pub(super) name: &'n str,
    pub(super) path: String,
}

impl NodeAt<'_> {
    /// The key path of one of the node's keys.
    pub(super) fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.path)
    }
}

impl Checker<'_> {
    pub(super) fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.errs.push((path.into(), msg.into()));
    }

    pub(super) fn target(&mut self, path: &str, s: &str) -> Target {
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
    pub(super) fn checked_duration(
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
    pub(super) fn duration(
        &mut self,
        path: &str,
        s: Option<&String>,
        default: Duration,
    ) -> Duration {
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

    pub(super) fn items(&mut self, path: &str, p: Option<&Prompts>, default: &[&str]) -> Vec<Item> {
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
    pub(super) fn count(&mut self, path: &str, v: Option<u32>, default: u32) -> u32 {
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
    pub(super) fn ring_time(
        &mut self,
        path: &str,
        s: Option<&String>,
        default: Duration,
    ) -> Duration {
        self.checked_duration(path, s, default, |s, d| {
            if d < Duration::from_secs(1) || d > Duration::from_secs(300) {
                Err(format!("ring time {s} must be between 1s and 5m"))
            } else {
                Ok(())
            }
        })
    }

    pub(super) fn pattern(&mut self, path: &str, s: &str) -> Option<Pattern> {
        match Pattern::parse(s) {
            Ok(p) => Some(p),
            Err(e) => {
                self.err(path, e.to_string());
                None
            }
        }
    }

    pub(super) fn lang(&mut self, path: &str, s: &str) -> Option<Lang> {
        let l = Lang::parse(s);
        if l.is_none() {
            self.err(
                path,
                format!("unknown language `{s}`; the box speaks \"en\" and \"zh\""),
            );
        }
        l
    }

    pub(super) fn station(&mut self, path: &str, id: &str) {
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

    pub(super) fn trunks(&mut self, path: &str, ids: Option<&Vec<String>>) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use crate::ivr::config::testing::{accepted, errors, node, one_node};
    use crate::ivr::config::{Item, NodeKind, SayAs, Target};

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
