//! Voicemail boxes (`[voicemail]`): who may listen to a box's messages
//! from a phone (its PIN, an argon2id hash), whose phones show that
//! messages wait, and how many wait in each box ([`Mailboxes`]).
//!
//! ```toml
//! [voicemail]
//! code = "*40"               # keyed alone: your own box; *40 + a box's number: that box
//!
//! [voicemail.box.alice]      # the mailbox an IVR `voicemail` node names
//! pin = "$argon2id$v=19$m=19456,t=2,p=1$…"   # `callboxd hash-pin`
//! # number = "1001"          # default: alice's agent number
//! # agents = ["alice"]       # default: alice (an agent) or a queue's members
//! ```
//!
//! Messages are left by the IVR's `voicemail` node and stored by the
//! recorder and the store like any recording (and delivered to
//! headquarters the same way); this module keeps the count of what waits
//! per box, which the station watchers turn into a lamp (SIP) or a stutter
//! dial tone (analog) on the phones of the box's agents.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::sync::watch;

/// The code keyed to listen to voicemail when the site does not set one.
pub const DEFAULT_CODE: &str = "*40";
/// Fewest and most digits in a PIN.
pub const PIN_DIGITS: std::ops::RangeInclusive<usize> = 4..=12;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVoicemail {
    #[serde(default)]
    code: Option<String>,
    #[serde(default, rename = "box")]
    boxes: BTreeMap<String, RawBox>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBox {
    pin: String,
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    agents: Option<Vec<String>>,
}

/// The checked `[voicemail]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailCfg {
    /// Keyed alone: the agent's own box; followed by a box's number: that box.
    pub code: String,
    /// The boxes, by name.
    pub boxes: Vec<BoxCfg>,
}

/// One voicemail box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxCfg {
    /// The mailbox name (an IVR `voicemail` node's `mailbox`).
    pub name: String,
    /// The PIN's argon2id hash (PHC string).
    pub pin: String,
    /// Keyed after the code to reach this box from any phone.
    pub number: Option<String>,
    /// Agents whose phones show what waits here; the first of them hears
    /// this box on the code alone when it is their own (named after them).
    pub agents: Vec<String>,
}

/// What the voicemail check needs of the rest of the config.
#[derive(Debug, Default)]
pub struct Known<'a> {
    /// Agents: id and number.
    pub agents: Vec<(&'a str, Option<&'a str>)>,
    /// Queues: name and member agent ids.
    pub queues: Vec<(&'a str, Vec<&'a str>)>,
    /// Feature codes already taken (the ACD's, the day/night switch's).
    pub codes: Vec<&'a str>,
    /// Finished recordings are encrypted to headquarters' keys.
    pub encrypted: bool,
}

/// Checks `[voicemail]`; errors are (path, message).
pub(crate) fn check(
    raw: &RawVoicemail,
    known: &Known<'_>,
) -> Result<VoicemailCfg, Vec<(String, String)>> {
    let mut errs = Vec::new();
    let code = raw.code.clone().unwrap_or_else(|| DEFAULT_CODE.to_string());
    let well_formed = code.len() >= 2
        && code.len() <= 4
        && code.starts_with('*')
        && code[1..].chars().all(|c| c.is_ascii_digit());
    if !well_formed {
        errs.push((
            "voicemail.code".into(),
            format!("`{code}` is not a feature code: `*` and one to three digits (e.g. `*40`)"),
        ));
    } else if let Some(taken) = known
        .codes
        .iter()
        .find(|c| c.starts_with(code.as_str()) || code.starts_with(**c))
    {
        errs.push((
            "voicemail.code".into(),
            format!("`{code}` collides with the feature code `{taken}`: a phone could not tell them apart"),
        ));
    }
    let mut boxes = Vec::new();
    let mut numbers: HashMap<String, String> = HashMap::new();
    for (name, b) in &raw.boxes {
        let at = format!("voicemail.box.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errs.push((
                at.clone(),
                format!("box name `{name}` may hold only letters, digits, `-` and `_` (it names a folder)"),
            ));
        }
        if known.encrypted {
            errs.push((
                at.clone(),
                "messages are encrypted to headquarters' keys (`[recording] recipients`), so no phone could play them: keep voicemail boxes on a box that does not encrypt, or remove this box".into(),
            ));
        }
        if let Err(e) = check_pin_hash(&b.pin) {
            errs.push((format!("{at}.pin"), e));
        }
        let agent = known.agents.iter().find(|(id, _)| *id == name.as_str());
        let queue = known.queues.iter().find(|(q, _)| *q == name.as_str());
        let agents: Vec<String> = match &b.agents {
            Some(list) => {
                for a in list {
                    if !known.agents.iter().any(|(id, _)| id == a) {
                        errs.push((
                            format!("{at}.agents"),
                            format!("`{a}` is not an agent under [acd.agent]"),
                        ));
                    }
                }
                list.clone()
            }
            None => match (agent, queue) {
                (Some((id, _)), _) => vec![id.to_string()],
                (None, Some((_, members))) => members.iter().map(|m| m.to_string()).collect(),
                (None, None) => Vec::new(),
            },
        };
        let number = b
            .number
            .clone()
            .or_else(|| agent.and_then(|(_, n)| n.map(str::to_string)));
        if let Some(n) = &number {
            if n.is_empty() || n.len() > 8 || !n.chars().all(|c| c.is_ascii_digit()) {
                errs.push((
                    format!("{at}.number"),
                    format!("`{n}` is not a box number: one to eight digits"),
                ));
            } else if let Some(other) = numbers.insert(n.clone(), name.clone()) {
                errs.push((
                    format!("{at}.number"),
                    format!("`{n}` is also box `{other}`'s number"),
                ));
            }
        }
        if number.is_none() && agents.is_empty() {
            errs.push((
                at.clone(),
                format!("nobody could reach box `{name}`: it is neither an agent nor a queue; give it a `number` or `agents`"),
            ));
        }
        boxes.push(BoxCfg {
            name: name.clone(),
            pin: b.pin.clone(),
            number,
            agents,
        });
    }
    if errs.is_empty() {
        Ok(VoicemailCfg { code, boxes })
    } else {
        Err(errs)
    }
}

/// Whether `pin` is an argon2id hash in PHC form.
fn check_pin_hash(pin: &str) -> Result<(), String> {
    if pin.chars().all(|c| c.is_ascii_digit()) {
        return Err(
            "a PIN in the clear: write its argon2id hash instead (`callboxd hash-pin` makes one)"
                .into(),
        );
    }
    match argon2::PasswordHash::new(pin) {
        Ok(h) if h.algorithm == argon2::ARGON2ID_IDENT => Ok(()),
        Ok(h) => Err(format!(
            "the PIN is hashed with `{}`; only argon2id is accepted (`callboxd hash-pin`)",
            h.algorithm
        )),
        Err(e) => Err(format!(
            "not an argon2id hash ({e}); `callboxd hash-pin` makes one"
        )),
    }
}

/// Hashes a PIN with argon2id and a fresh random salt, for the config.
pub fn hash_pin(pin: &str) -> Result<String, String> {
    if !PIN_DIGITS.contains(&pin.len()) || !pin.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "a PIN is {} to {} digits (what a phone can key)",
            PIN_DIGITS.start(),
            PIN_DIGITS.end()
        ));
    }
    crate::secrets::hash(pin)
}

/// Whether `pin` is the one hashed in `hash`. Slow on purpose (tens of
/// milliseconds): call it off the runtime's threads.
pub fn pin_matches(hash: &str, pin: &str) -> bool {
    crate::secrets::matches(hash, pin)
}

impl VoicemailCfg {
    /// The box `keys` (what followed the code) names: its number, or with
    /// no digits the box of the agent `agent` (named after them, else the
    /// first listing them).
    pub fn find(&self, keys: &str, agent: Option<&str>) -> Option<&BoxCfg> {
        if keys.is_empty() {
            let agent = agent?;
            return self.boxes.iter().find(|b| b.name == agent).or_else(|| {
                self.boxes
                    .iter()
                    .find(|b| b.agents.iter().any(|a| a == agent))
            });
        }
        self.boxes
            .iter()
            .find(|b| b.number.as_deref() == Some(keys))
    }

    /// The boxes whose messages show on agent `agent`'s phone.
    pub fn of_agent<'a>(&'a self, agent: &'a str) -> impl Iterator<Item = &'a BoxCfg> + 'a {
        self.boxes
            .iter()
            .filter(move |b| b.agents.iter().any(|a| a == agent))
    }
}

/// How many messages wait in each box, kept in step with the store:
/// counted from the database at start, then told of every message left,
/// heard or deleted. Cheap to clone; every clone sees the same counts.
#[derive(Debug, Clone)]
pub struct Mailboxes {
    counts: Arc<Mutex<HashMap<String, (u32, u32)>>>,
    version: Arc<watch::Sender<u64>>,
}

impl Default for Mailboxes {
    fn default() -> Self {
        Mailboxes::new(HashMap::new())
    }
}

impl Mailboxes {
    /// Starts from (new, saved) per box, as the store has them.
    pub fn new(counts: HashMap<String, (u32, u32)>) -> Mailboxes {
        Mailboxes {
            counts: Arc::new(Mutex::new(counts)),
            version: Arc::new(watch::channel(0).0),
        }
    }

    fn change(&self, mailbox: &str, f: impl FnOnce(&mut (u32, u32))) {
        {
            let mut all = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            f(all.entry(mailbox.to_string()).or_default());
        }
        self.version.send_modify(|v| *v += 1);
    }

    /// A message was left in `mailbox`.
    pub fn left(&self, mailbox: &str) {
        self.change(mailbox, |c| c.0 += 1);
    }

    /// A message of `mailbox` that was `was` (`new` or `saved`) is now
    /// `now` (`saved` or `deleted`).
    pub fn moved(&self, mailbox: &str, was: &str, now: &str) {
        self.change(mailbox, |c| {
            match was {
                "new" => c.0 = c.0.saturating_sub(1),
                _ => c.1 = c.1.saturating_sub(1),
            }
            if now == "saved" {
                c.1 += 1;
            }
        });
    }

    /// (new, saved) in `mailbox`.
    pub fn waiting(&self, mailbox: &str) -> (u32, u32) {
        let all = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        all.get(mailbox).copied().unwrap_or_default()
    }

    /// Changes whenever any count does.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Known<'static> {
        Known {
            agents: vec![("alice", Some("1001")), ("bob", None)],
            queues: vec![("sales", vec!["alice", "bob"])],
            codes: vec!["*71", "*9", "*28"],
            encrypted: false,
        }
    }

    fn raw(toml_text: &str) -> RawVoicemail {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn boxes_take_their_agents_and_numbers_from_the_acd() {
        let hash = hash_pin("2580").unwrap();
        let cfg = check(
            &raw(&format!(
                "[box.alice]\npin = '{hash}'\n[box.sales]\npin = '{hash}'\nnumber = '500'\n"
            )),
            &known(),
        )
        .unwrap();
        assert_eq!(cfg.code, DEFAULT_CODE);
        let alice = cfg.find("", Some("alice")).unwrap();
        assert_eq!(alice.number.as_deref(), Some("1001"));
        assert_eq!(alice.agents, ["alice"]);
        assert_eq!(cfg.find("500", None).unwrap().agents, ["alice", "bob"]);
        // Bob has no box of his own: the queue's is his.
        assert_eq!(cfg.find("", Some("bob")).unwrap().name, "sales");
        assert_eq!(cfg.of_agent("alice").count(), 2);
        assert!(pin_matches(&alice.pin, "2580"));
        assert!(!pin_matches(&alice.pin, "2581"));
    }

    #[test]
    fn bad_boxes_are_named_at_their_keys() {
        let hash = hash_pin("2580").unwrap();
        let errs = check(
            &raw(&format!(
                "code = '*9'\n[box.alice]\npin = '1234'\n[box.zed]\npin = '{hash}'\n[box.bob]\npin = '$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ'\nagents = ['carol']\nnumber = '1001'\n"
            )),
            &known(),
        )
        .unwrap_err();
        let has =
            |path: &str, needle: &str| errs.iter().any(|(p, m)| p == path && m.contains(needle));
        assert!(
            has("voicemail.code", "collides with the feature code `*9`"),
            "{errs:?}"
        );
        assert!(
            has("voicemail.box.alice.pin", "a PIN in the clear"),
            "{errs:?}"
        );
        assert!(has("voicemail.box.bob.pin", "only argon2id"), "{errs:?}");
        assert!(
            has("voicemail.box.bob.agents", "`carol` is not an agent"),
            "{errs:?}"
        );
        assert!(
            has("voicemail.box.bob.number", "also box `alice`'s number"),
            "{errs:?}"
        );
        assert!(
            has("voicemail.box.zed", "nobody could reach box `zed`"),
            "{errs:?}"
        );
        let enc = Known {
            encrypted: true,
            ..known()
        };
        let errs = check(&raw(&format!("[box.alice]\npin = '{hash}'\n")), &enc).unwrap_err();
        assert!(errs[0].1.contains("encrypted"), "{errs:?}");
    }

    #[test]
    fn only_keyable_pins_are_hashed() {
        assert!(hash_pin("12").is_err());
        assert!(hash_pin("12ab").is_err());
        let h = hash_pin("123456").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
    }

    #[test]
    fn counts_follow_messages_left_heard_and_deleted() {
        let m = Mailboxes::default();
        let seen = m.changed();
        m.left("alice");
        m.left("alice");
        assert!(seen.has_changed().unwrap());
        assert_eq!(m.waiting("alice"), (2, 0));
        m.moved("alice", "new", "saved");
        m.moved("alice", "new", "deleted");
        assert_eq!(m.waiting("alice"), (0, 1));
        m.moved("alice", "saved", "deleted");
        assert_eq!(m.waiting("alice"), (0, 0));
        assert_eq!(m.waiting("nobody"), (0, 0));
    }
}
