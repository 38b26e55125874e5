//! Listening to voicemail from a phone: the agent keys the voicemail code
//! (their own box) or the code and a box's number, then the box's PIN; the
//! box says how many messages wait and plays them, new ones first. After
//! (or during) each message: `1` plays it again, `7` deletes it, `9` keeps
//! it, `#` goes on to the next (keeping it too). A message heard is no
//! longer new, so the phones' lamps and stutter dial tone follow.
//!
//! [`waiting_at`] is what a station's phone is told: the messages waiting
//! in the boxes of the agent logged in there.

use std::sync::Arc;
use std::time::Duration;

use callbox_hal::Line;

use super::station::Who;
use super::{CallContext, Switch};
use crate::ivr::say::{self, Lang};
use crate::media::lines::Port;
use crate::media::{Gone, Media};
use crate::store::{StoreMsg, StoredMessage};
use crate::voicemail::{BoxCfg, pin_matches};

/// Tries at the PIN before the box lets go of the phone.
const PIN_TRIES: usize = 3;
/// Quiet time after a key of the PIN before it counts as entered.
const PIN_WAIT: Duration = Duration::from_secs(10);
/// How long the box waits for a choice after a message.
const CHOICE_WAIT: Duration = Duration::from_secs(8);

/// (new, saved) messages for the agent logged in at `station`; `None` when
/// the site has no voicemail boxes (its phones are told nothing).
pub async fn waiting_at<L: Line>(
    station: &str,
    ctx: &CallContext,
    sw: &Switch<L>,
) -> Option<(u32, u32)> {
    let cfg = ctx.live.current().voicemail.clone()?;
    let who = Who::at(station, sw).await;
    let Some(agent) = who.agent else {
        return Some((0, 0));
    };
    Some(cfg.of_agent(&agent).fold((0, 0), |(n, o), b| {
        let (bn, bo) = ctx.mailboxes.waiting(&b.name);
        (n + bn, o + bo)
    }))
}

/// The voicemail session of the off-hook station `port`, `keys` being what
/// followed the code (a box's number, or nothing for the agent's own).
/// Hands the port back, with `true` if the station hung up.
pub async fn listen<L: Line>(
    mut port: Port<L>,
    keys: String,
    ctx: CallContext,
    sw: Switch<L>,
) -> (Port<L>, bool) {
    let now = ctx.live.current();
    let (Some(cfg), Some(ivr)) = (now.voicemail.clone(), now.ivr.clone()) else {
        return (port, false);
    };
    let station = port.line.info().id.clone();
    let who = Who::at(&station, &sw).await;
    let session = Session {
        ctx: &ctx,
        ivr: &ivr,
        lang: ivr.language,
    };
    let ended = {
        let mut media = Media::new(&mut port, ctx.shutdown.clone());
        match cfg.find(&keys, who.agent.as_deref()) {
            None => {
                tracing::info!(%station, box_number = %keys, "no such voicemail box");
                session.say(&mut media, &["system:voicemail-no-box"]).await
            }
            Some(b) => session.run(&mut media, b, &station).await,
        }
    };
    (port, ended == Err(Gone::Caller))
}

struct Session<'a> {
    ctx: &'a CallContext,
    ivr: &'a crate::ivr::Ivr,
    lang: Lang,
}

impl Session<'_> {
    async fn run<L: Line>(
        &self,
        media: &mut Media<'_, L>,
        b: &BoxCfg,
        station: &str,
    ) -> Result<(), Gone> {
        if !self.pin(media, b, station).await? {
            return Ok(());
        }
        // Messages left a moment ago are in the database before the list
        // is read.
        let _ = self.ctx.store.flush().await;
        let data = Arc::clone(&self.ctx.data_dir);
        let name = b.name.clone();
        let listed = tokio::task::spawn_blocking(move || {
            crate::store::ReadOnly::open(&data).and_then(|db| db.mailbox_messages(&name))
        })
        .await;
        let messages = match listed {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                tracing::error!(mailbox = %b.name, "voicemail not readable: {e}");
                return self.say(media, &["system:voicemail-unavailable"]).await;
            }
            Err(e) => {
                tracing::error!(mailbox = %b.name, "voicemail listing failed: {e}");
                return self.say(media, &["system:voicemail-unavailable"]).await;
            }
        };
        let new = messages.iter().filter(|m| m.status == "new").count();
        let saved = messages.len() - new;
        tracing::info!(mailbox = %b.name, %station, new, saved, "voicemail box opened");
        let mut count = vec!["system:voicemail-you-have".to_string()];
        count.extend(self.number(new));
        count.push("system:voicemail-new".into());
        if saved > 0 {
            count.extend(self.number(saved));
            count.push("system:voicemail-saved".into());
        }
        self.say_owned(media, &count).await?;
        for m in &messages {
            self.message(media, b, m).await?;
        }
        self.say(media, &["system:voicemail-no-more"]).await
    }

    /// Asks for the box's PIN; `false` after [`PIN_TRIES`] wrong ones.
    async fn pin<L: Line>(
        &self,
        media: &mut Media<'_, L>,
        b: &BoxCfg,
        station: &str,
    ) -> Result<bool, Gone> {
        for tries in 1..=PIN_TRIES {
            media.clear_keys();
            self.say(media, &["system:voicemail-pin"]).await?;
            let keyed = media.keys_until_hash(PIN_WAIT).await?;
            let hash = b.pin.clone();
            // argon2id takes tens of milliseconds on purpose: off the
            // runtime's threads.
            let ok = tokio::task::spawn_blocking(move || pin_matches(&hash, &keyed))
                .await
                .unwrap_or(false);
            if ok {
                return Ok(true);
            }
            tracing::warn!(mailbox = %b.name, %station, tries, "voicemail PIN wrong");
            self.say(media, &["system:voicemail-wrong-pin"]).await?;
        }
        Ok(false)
    }

    /// Plays one message and acts on the choice after it.
    async fn message<L: Line>(
        &self,
        media: &mut Media<'_, L>,
        b: &BoxCfg,
        m: &StoredMessage,
    ) -> Result<(), Gone> {
        let path = self.ctx.data_dir.join(&m.file);
        let audio =
            tokio::task::spawn_blocking(move || callbox_hal::wav::load_prompt(&path, 8000)).await;
        let audio: Option<Arc<[i16]>> = match audio {
            Ok(Ok(s)) => Some(s.into()),
            Ok(Err(e)) => {
                tracing::warn!(id = %m.id, file = %m.file, "voicemail message unreadable: {e}");
                None
            }
            Err(_) => None,
        };
        let status = m.status.as_str();
        loop {
            media.clear_keys();
            let mut intro = vec!["system:voicemail-message".to_string()];
            if let Some(c) = &m.caller {
                intro.push("system:voicemail-from".into());
                intro.extend(say::digits(c).into_iter().map(|f| format!("system:{f}")));
            }
            let mut cut = self.say_owned(media, &intro).await?;
            if !cut {
                cut = match &audio {
                    Some(a) => media.play(Arc::clone(a), true).await?,
                    None => self
                        .say(media, &["system:voicemail-unavailable"])
                        .await
                        .map(|()| false)?,
                };
            }
            if !cut {
                self.say(media, &["system:voicemail-options"]).await?;
            }
            let choice = media.wait_key(CHOICE_WAIT).await?;
            match choice {
                Some('1') => continue,
                Some('7') => {
                    self.mark(b, m, status, "deleted").await;
                    return self.say(media, &["system:voicemail-deleted"]).await;
                }
                Some('9') => {
                    self.mark(b, m, status, "saved").await;
                    return self.say(media, &["system:voicemail-kept"]).await;
                }
                // `#`, another key or nothing: on to the next, kept.
                _ => {
                    self.mark(b, m, status, "saved").await;
                    return Ok(());
                }
            }
        }
    }

    /// Writes a message's new status and moves it between the counts.
    async fn mark(&self, b: &BoxCfg, m: &StoredMessage, was: &str, now: &'static str) {
        if was == now {
            return;
        }
        self.ctx
            .store
            .send(StoreMsg::VoicemailStatus {
                id: m.id.clone(),
                status: now,
                at: self.ctx.clock.now(),
            })
            .await;
        self.ctx.mailboxes.moved(&b.name, was, now);
        tracing::info!(mailbox = %b.name, id = %m.id, now, "voicemail message");
    }

    fn number(&self, n: usize) -> Vec<String> {
        say::number(n as i64, self.lang)
            .into_iter()
            .map(|f| format!("system:{f}"))
            .collect()
    }

    async fn say<L: Line>(&self, media: &mut Media<'_, L>, keys: &[&str]) -> Result<(), Gone> {
        let owned: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        self.say_owned(media, &owned).await.map(|_| ())
    }

    /// Plays system prompts as one sentence; `Ok(true)` when a key cut it
    /// short.
    async fn say_owned<L: Line>(
        &self,
        media: &mut Media<'_, L>,
        keys: &[String],
    ) -> Result<bool, Gone> {
        let audio = self
            .ivr
            .prompts
            .sentence(self.lang, keys.iter().map(String::as_str));
        if audio.is_empty() {
            return Ok(false);
        }
        media.play(audio.into(), true).await
    }
}
