//! Meet-me conference rooms (`[conference.NAME]`): a number on the dial
//! plan, an optional PIN, a limit of parties. Everyone in a room hears
//! everyone else, mixed in the media engine with their own voice left out
//! ([`Hears::Room`]); a tone tells the room when someone joins or leaves,
//! and `*` mutes or unmutes oneself.
//!
//! ```toml
//! [conference.weekly]
//! number = "850"
//! pin = "2468"          # asked for before joining (optional)
//! max_parties = 10      # the next caller hears "the conference is full"
//! ```
//!
//! Who is in which room is kept by one small actor ([`Rooms`]); each
//! party's own call task plays the PIN prompt, joins, and stays until
//! they hang up.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use callbox_hal::Line;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::engine::Hears;
use super::{Gone, Media};

/// Default limit of parties in a room.
const MAX_PARTIES: usize = 10;
/// Largest limit a room may set.
const MAX_PARTIES_LIMIT: usize = 50;
/// Tries at the PIN before the caller is let go.
const PIN_TRIES: usize = 3;
/// Quiet time after a key of the PIN before it counts as entered.
const PIN_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoom {
    number: String,
    #[serde(default)]
    pin: Option<String>,
    #[serde(default)]
    max_parties: Option<usize>,
}

/// A checked room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomCfg {
    /// The room's name (the table's).
    pub name: String,
    /// The number stations dial.
    pub number: String,
    /// Asked for before joining.
    pub pin: Option<String>,
    /// Parties at most.
    pub max_parties: usize,
}

/// Checks `[conference.*]`; problems come back as `(key path, message)`.
pub(crate) fn check(
    raw: &BTreeMap<String, RawRoom>,
) -> Result<Vec<RoomCfg>, Vec<(String, String)>> {
    let mut errs = Vec::new();
    let mut rooms = Vec::new();
    for (name, r) in raw {
        let at = |k: &str| format!("conference.{name}.{k}");
        if r.number.is_empty() || !r.number.bytes().all(|b| b.is_ascii_digit()) {
            errs.push((
                at("number"),
                format!("room number `{}` must be digits", r.number),
            ));
        }
        if let Some(p) = &r.pin
            && (p.is_empty() || p.len() > 16 || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            errs.push((at("pin"), "a PIN is 1-16 digits".to_string()));
        }
        let max = r.max_parties.unwrap_or(MAX_PARTIES);
        if !(2..=MAX_PARTIES_LIMIT).contains(&max) {
            errs.push((
                at("max_parties"),
                format!("max_parties must be 2-{MAX_PARTIES_LIMIT}, not {max}"),
            ));
        }
        if let Some(other) = rooms.iter().find(|o: &&RoomCfg| o.number == r.number) {
            errs.push((
                at("number"),
                format!("room {name} has the number of room {}", other.name),
            ));
        }
        rooms.push(RoomCfg {
            name: name.clone(),
            number: r.number.clone(),
            pin: r.pin.clone(),
            max_parties: max,
        });
    }
    if errs.is_empty() {
        Ok(rooms)
    } else {
        Err(errs)
    }
}

/// What a party hears of the room's comings and goings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Note {
    /// Someone joined; this many are in the room now.
    Joined(usize),
    /// Someone left; this many are in the room now.
    Left(usize),
}

/// A party's place in a room.
#[derive(Debug)]
struct Seat {
    member: u64,
    room: u32,
    notes: mpsc::UnboundedReceiver<Note>,
}

enum Msg {
    Join {
        room: String,
        max: usize,
        notes: mpsc::UnboundedSender<Note>,
        reply: oneshot::Sender<Option<(u64, u32)>>,
    },
    Leave {
        room: String,
        member: u64,
    },
}

/// Who is in which room. Cheap to clone; the actor ends with the last
/// handle.
#[derive(Debug, Clone)]
pub struct Rooms {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Join { .. } => "Join",
            Msg::Leave { .. } => "Leave",
        })
    }
}

/// One room's members and the number the engine knows it by.
struct Room {
    id: u32,
    members: Vec<(u64, mpsc::UnboundedSender<Note>)>,
}

impl Rooms {
    /// Starts the actor on `tracker`.
    pub fn spawn(tracker: &tokio_util::task::TaskTracker) -> Rooms {
        let (tx, mut rx) = mpsc::channel(64);
        tracker.spawn(async move {
            let mut rooms: HashMap<String, Room> = HashMap::new();
            let (mut next_room, mut next_member) = (0u32, 0u64);
            while let Some(msg) = rx.recv().await {
                match msg {
                    Msg::Join {
                        room,
                        max,
                        notes,
                        reply,
                    } => {
                        let r = rooms.entry(room).or_insert_with(|| {
                            next_room += 1;
                            Room {
                                id: next_room,
                                members: Vec::new(),
                            }
                        });
                        if r.members.len() >= max {
                            let _ = reply.send(None);
                            continue;
                        }
                        next_member += 1;
                        let n = r.members.len() + 1;
                        for (_, to) in &r.members {
                            let _ = to.send(Note::Joined(n));
                        }
                        r.members.push((next_member, notes));
                        let _ = reply.send(Some((next_member, r.id)));
                    }
                    Msg::Leave { room, member } => {
                        let Some(r) = rooms.get_mut(&room) else {
                            continue;
                        };
                        r.members.retain(|(m, _)| *m != member);
                        let n = r.members.len();
                        for (_, to) in &r.members {
                            let _ = to.send(Note::Left(n));
                        }
                        if n == 0 {
                            rooms.remove(&room);
                        }
                    }
                }
            }
        });
        Rooms { tx }
    }

    /// A seat in `room` (`None`: full, or the box is stopping).
    async fn join(&self, room: &str, max: usize) -> Option<Seat> {
        let (notes_tx, notes) = mpsc::unbounded_channel();
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Join {
                room: room.to_string(),
                max,
                notes: notes_tx,
                reply,
            })
            .await
            .ok()?;
        let (member, room) = rx.await.ok()??;
        Some(Seat {
            member,
            room,
            notes,
        })
    }

    async fn leave(&self, room: &str, seat: &Seat) {
        let _ = self
            .tx
            .send(Msg::Leave {
                room: room.to_string(),
                member: seat.member,
            })
            .await;
    }
}

/// How a party's time in a room ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attended {
    /// They were in the room until they hung up.
    Joined,
    /// The PIN was wrong every time.
    WrongPin,
    /// The room was full.
    Full,
}

impl Attended {
    /// The call record's outcome for room `name`.
    pub fn outcome(self, name: &str) -> String {
        match self {
            Attended::Joined => format!("conference:{name}"),
            Attended::WrongPin => format!("conference_wrong_pin:{name}"),
            Attended::Full => format!("conference_full:{name}"),
        }
    }
}

/// The system prompts a party hears, by key, in the call's language.
pub type Prompt<'a> = &'a (dyn Fn(&str) -> Option<Arc<[i16]>> + Sync);

/// A party in room `room`: the PIN if it has one, then the room until
/// they hang up (`Err(Gone::Caller)`), or why they could not join.
pub async fn attend<L: Line>(
    media: &mut Media<'_, L>,
    rooms: &Rooms,
    room: &RoomCfg,
    prompt: Prompt<'_>,
) -> Result<Attended, Gone> {
    if let Some(pin) = &room.pin {
        let mut tries = 0;
        loop {
            media.clear_keys();
            say(media, prompt, "system:conference-pin").await?;
            let keyed = media.keys_until_hash(PIN_WAIT).await?;
            if &keyed == pin {
                break;
            }
            tries += 1;
            tracing::info!(room = %room.name, tries, "conference PIN wrong");
            say(media, prompt, "system:invalid-option").await?;
            if tries == PIN_TRIES {
                return Ok(Attended::WrongPin);
            }
        }
    }
    let Some(mut seat) = rooms.join(&room.name, room.max_parties).await else {
        tracing::info!(room = %room.name, "conference full");
        say(media, prompt, "system:conference-full").await?;
        return Ok(Attended::Full);
    };
    tracing::info!(room = %room.name, "joins the conference");
    let ended = in_room(media, &mut seat, prompt).await;
    rooms.leave(&room.name, &seat).await;
    tracing::info!(room = %room.name, "leaves the conference");
    ended.map(|()| Attended::Joined)
}

/// Plays the system prompt `key`, if the site has it.
async fn say<L: Line>(media: &mut Media<'_, L>, prompt: Prompt<'_>, key: &str) -> Result<(), Gone> {
    if let Some(s) = prompt(key) {
        media.play(s, false).await?;
    }
    Ok(())
}

/// In the room: hears the others; `*` mutes and unmutes; a tone for each
/// party who joins (two short) or leaves (one long). Ends when the party
/// hangs up (or the box stops).
async fn in_room<L: Line>(
    media: &mut Media<'_, L>,
    seat: &mut Seat,
    prompt: Prompt<'_>,
) -> Result<(), Gone> {
    let mut muted = false;
    let room = seat.room;
    media.clear_keys();
    loop {
        media.leg().hear(Hears::Room { room, muted });
        tokio::select! {
            key = media.wait_key(Duration::from_secs(3600)) => {
                let key = key?;
                tracing::debug!(?key, "key in the conference");
                if key == Some('*') {
                    muted = !muted;
                    tracing::info!(muted, "conference mute");
                    media.leg().hear(Hears::Nothing);
                    let key = if muted { "system:conference-muted" } else { "system:conference-unmuted" };
                    say(media, prompt, key).await?;
                }
            }
            note = seat.notes.recv() => {
                let Some(note) = note else { return Err(Gone::Shutdown) };
                tracing::debug!(?note, "conference");
                media.play(room_tone(note), false).await?;
            }
        }
    }
}

/// The tone a room hears when someone joins (two short beeps) or leaves
/// (one long): 2.8 kHz, above speech's strongest band and apart from the
/// simulator's probe tones.
fn room_tone(note: Note) -> Arc<[i16]> {
    let beep = |ms: usize| -> Vec<i16> {
        (0..ms * 8)
            .map(|i| (6000.0 * (std::f64::consts::TAU * 2800.0 * i as f64 / 8000.0).sin()) as i16)
            .collect()
    };
    let gap = vec![0i16; 80 * 8];
    let samples: Vec<i16> = match note {
        Note::Joined(_) => [beep(120), gap, beep(120)].concat(),
        Note::Left(_) => beep(400),
    };
    samples.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_checked_at_their_keys() {
        let raw: BTreeMap<String, RawRoom> = toml::from_str(
            r#"
a = { number = "850", pin = "12x4", max_parties = 1 }
b = { number = "850" }
c = { number = "8-5" }
ok = { number = "851", pin = "2468" }
"#,
        )
        .unwrap();
        let errs = check(&raw).unwrap_err();
        let has = |k: &str, m: &str| {
            assert!(
                errs.iter().any(|(kk, mm)| kk == k && mm.contains(m)),
                "no `{m}` at {k}: {errs:#?}"
            )
        };
        has("conference.a.pin", "1-16 digits");
        has("conference.a.max_parties", "must be 2-50, not 1");
        has("conference.b.number", "has the number of room a");
        has("conference.c.number", "must be digits");
    }

    #[tokio::test]
    async fn a_full_room_refuses_and_the_others_hear_comings_and_goings() {
        let tracker = tokio_util::task::TaskTracker::new();
        let rooms = Rooms::spawn(&tracker);
        let mut a = rooms.join("r", 2).await.unwrap();
        let mut b = rooms.join("r", 2).await.unwrap();
        assert_eq!(a.room, b.room);
        assert!(rooms.join("r", 2).await.is_none(), "full");
        assert_eq!(a.notes.recv().await, Some(Note::Joined(2)));
        let other = rooms.join("s", 2).await.unwrap();
        assert_ne!(other.room, a.room, "another room mixes apart");
        rooms.leave("r", &a).await;
        assert_eq!(b.notes.recv().await, Some(Note::Left(1)));
        assert!(rooms.join("r", 2).await.is_some(), "room again");
    }
}
