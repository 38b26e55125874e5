//! Waiting in an ACD queue: joining it, music on hold (or ring-back), the
//! caller's place announced, the callback key, and leaving when the ACD
//! says so. When the ACD assigns an agent, `agent` runs the conversation;
//! a caller who comes back from it (an agent who put down at once, a
//! transfer that failed) waits on with their place kept.

use std::sync::Arc;
use std::time::Duration;

use callbox_hal::dsp::tones::ProgressTone;
use callbox_hal::{HangupCause, Line, LineCommand};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{FlowEnv, FlowState};
use crate::acd::{AcdHandle, Completed, JoinResult, WaiterMsg};
use crate::ivr::config::{Item, SayAs};
use crate::media::{BridgeEnd, Gone, Media};

/// How a caller's time in a queue ended.
pub(super) enum QueueEnd {
    /// Connected to an agent; the bridge ended so.
    Bridged(BridgeEnd),
    /// Left without an agent (full, empty, waited too long, no ACD).
    Overflow,
    /// Asked to be called back and hung up.
    CalledBack,
}

/// A caller's place in a queue.
pub(super) struct Waiting<'q, L> {
    pub(super) acd: &'q AcdHandle<L>,
    /// The queue's name.
    pub(super) name: &'q str,
    /// The ACD's word for this caller: an agent, an exit, a supervisor.
    pub(super) rx: mpsc::Receiver<WaiterMsg<L>>,
    /// When the caller joined.
    pub(super) joined: Instant,
    pub(super) hold: Hold,
    /// Where the music goes on after an announcement.
    hold_pos: usize,
}

/// What waiting in a queue sounds like. Only the settings the wait uses
/// are taken: a queue's whole config (its member list) copied into every
/// waiting call would cost memory in proportion to the agents.
#[derive(Default)]
pub(super) struct Hold {
    /// Music on hold; ring-back without.
    music: Option<Arc<[i16]>>,
    /// How often the caller's place is announced.
    every: Option<Duration>,
    /// Announcements include the expected wait.
    with_wait: bool,
    /// The key that turns the wait into a callback.
    callback_key: Option<char>,
}

impl Hold {
    /// What the caller hears while an agent consults or a transfer rings.
    pub(super) fn held(&self) -> Arc<[i16]> {
        self.music.clone().unwrap_or_else(|| Arc::from(&[][..]))
    }
}

/// What a stretch on hold ended with.
enum Heard<L> {
    /// The caller pressed a key.
    Key,
    /// Time to announce the caller's place.
    Announce,
    /// The ACD spoke (`None`: it is gone).
    Acd(Option<WaiterMsg<L>>),
}

impl<L: Line> Waiting<'_, L> {
    /// Adds the time since joining to the caller's time in queues.
    fn waited(&self, st: &mut FlowState) {
        let ms = self.joined.elapsed().as_millis() as i64;
        st.queue_wait_ms = Some(st.queue_wait_ms.unwrap_or(0) + ms);
    }

    /// The caller left while waiting: out of the queue, with the time
    /// they waited.
    ///
    /// An agent may have answered for this caller just as they left: the
    /// ACD's word is then waiting here with the agent's station, off-hook.
    /// It is hung up and the ACD told the call is over, or the station
    /// would stay off-hook and the agent on a call nobody is on.
    async fn abandon(&mut self, call_id: &str, g: Gone, st: &mut FlowState) -> Gone {
        self.acd.leave(call_id).await;
        self.rx.close();
        while let Some(msg) = self.rx.recv().await {
            if let WaiterMsg::Connect { agent, mut lease } = msg {
                let line = &mut lease.port().line;
                if let Err(e) = line.command(LineCommand::Hangup(HangupCause::Normal)).await {
                    tracing::warn!("releasing the agent's line failed: {e}");
                }
                drop(lease);
                self.acd
                    .done(call_id, &agent, Duration::ZERO, Completed::ByCaller)
                    .await;
            }
        }
        self.waited(st);
        st.queue_exit = Some("abandoned".into());
        g
    }
}

impl<L: Line> FlowEnv<'_, L> {
    /// Waits in an ACD queue and bridges to the agent the queue assigns.
    /// How the caller left the queue: bridged to an agent, overflow, or a callback.
    pub(super) async fn queue(
        &self,
        media: &mut Media<'_, L>,
        name: &str,
        announce: &[Item],
        st: &mut FlowState,
    ) -> Result<QueueEnd, Gone> {
        st.queue = Some(name.to_string());
        // Callers hear the notice before they wait, not when the agent
        // has already picked up.
        self.recording_policy(media, Some(name), None, false, st)
            .await?;
        let Some(acd) = self.acd else {
            st.queue_exit = Some("unavailable".into());
            return Ok(QueueEnd::Overflow);
        };
        let (tx, rx) = mpsc::channel(2);
        let joined = Instant::now();
        let caller = crate::acd::CallerId {
            number: self.caller.map(str::to_string),
            name: self.ivr.lookups.contact(self.caller).map(str::to_string),
        };
        match acd.join(name, self.call_id, caller, tx).await {
            JoinResult::Joined(pos) => {
                st.path.push(format!("{name}=joined:{pos}"));
                // The path and the recordable variables so far: what the
                // agent's screen shows while the call rings.
                let vars: std::collections::BTreeMap<&String, &String> = st
                    .vars
                    .iter()
                    .filter(|(k, _)| st.recordable.contains(*k))
                    .collect();
                self.event(
                    "queued",
                    serde_json::json!({"queue": name, "position": pos, "path": st.path, "vars": vars}),
                )
                .await;
            }
            other => {
                let why = match other {
                    JoinResult::Full => "full",
                    JoinResult::Empty => "empty",
                    _ => "unavailable",
                };
                st.path.push(format!("{name}!{why}"));
                st.queue_exit = Some(why.into());
                return Ok(QueueEnd::Overflow);
            }
        }
        let mut w = Waiting {
            acd,
            name,
            rx,
            joined,
            hold: Hold::default(),
            hold_pos: 0,
        };
        if let Err(g) = self.play(media, announce, st, false).await {
            return Err(w.abandon(self.call_id, g, st).await);
        }
        w.hold = self.hold_for(acd, name, st);
        self.wait(media, &mut w, st).await
    }

    /// The queue as it is configured now (a config change since the call
    /// started applies to its wait too).
    fn hold_for(&self, acd: &AcdHandle<L>, name: &str, st: &FlowState) -> Hold {
        let cfg = acd.config();
        let qc = cfg.queues.iter().find(|q| q.name == name);
        let music = qc.and_then(|q| q.moh.as_ref()).and_then(|m| {
            self.ivr
                .prompts
                .get(st.lang(), &format!("site:{m}"))
                .cloned()
        });
        Hold {
            music,
            every: qc.and_then(|q| q.announce_every),
            with_wait: qc.is_some_and(|q| q.announce_wait),
            callback_key: qc.and_then(|q| q.callback_key),
        }
    }

    /// Holds the caller until an agent's conversation ends or the caller
    /// leaves the queue.
    async fn wait(
        &self,
        media: &mut Media<'_, L>,
        w: &mut Waiting<'_, L>,
        st: &mut FlowState,
    ) -> Result<QueueEnd, Gone> {
        loop {
            let heard = match self.hold(media, w).await {
                Ok(h) => h,
                Err(g) => return Err(w.abandon(self.call_id, g, st).await),
            };
            let msg = match heard {
                Heard::Key => {
                    if self.key_on_hold(media, w, st).await? {
                        return Ok(QueueEnd::CalledBack);
                    }
                    continue;
                }
                Heard::Announce => {
                    self.announce_place(media, w, st).await?;
                    continue;
                }
                Heard::Acd(msg) => msg,
            };
            match msg {
                None => {
                    st.queue_exit = Some("unavailable".into());
                    return Ok(QueueEnd::Overflow);
                }
                Some(WaiterMsg::Exit(reason)) => {
                    w.waited(st);
                    st.path.push(format!("{}!{}", w.name, reason.as_str()));
                    st.queue_exit = Some(reason.as_str().into());
                    return Ok(QueueEnd::Overflow);
                }
                // Nobody to supervise yet: the station goes back.
                Some(WaiterMsg::Monitor { .. }) => continue,
                Some(WaiterMsg::Connect { agent, lease }) => {
                    if let Some(end) = self.with_agent(media, w, agent, lease, st).await? {
                        return Ok(QueueEnd::Bridged(end));
                    }
                }
            }
        }
    }

    /// Music on hold (or ring-back) until the ACD speaks, it is time for
    /// the position announcement, or (when the queue offers callbacks) the
    /// caller presses a key.
    async fn hold(
        &self,
        media: &mut Media<'_, L>,
        w: &mut Waiting<'_, L>,
    ) -> Result<Heard<L>, Gone> {
        let every = w.hold.every;
        let rx = &mut w.rx;
        let until = async move {
            match every {
                Some(d) => tokio::time::timeout(d, rx.recv()).await.ok(),
                None => Some(rx.recv().await),
            }
        };
        let offer_callback = w.hold.callback_key.is_some() && self.caller.is_some();
        let heard = match &w.hold.music {
            Some(music) => {
                media
                    .loop_while(music, &mut w.hold_pos, until, offer_callback)
                    .await
            }
            None => {
                media
                    .tone_while(
                        self.ivr.tones,
                        ProgressTone::Ringback,
                        until,
                        offer_callback,
                    )
                    .await
            }
        };
        Ok(match heard? {
            None => Heard::Key,
            Some(None) => Heard::Announce,
            Some(Some(msg)) => Heard::Acd(msg),
        })
    }

    /// A key on hold: the callback key turns the wait into a callback that
    /// keeps the caller's place (`Ok(true)`); other keys are dropped.
    async fn key_on_hold(
        &self,
        media: &mut Media<'_, L>,
        w: &Waiting<'_, L>,
        st: &mut FlowState,
    ) -> Result<bool, Gone> {
        let key = media.take_key();
        media.clear_keys();
        if key.is_none() || key != w.hold.callback_key {
            return Ok(false);
        }
        let number = self.caller.unwrap_or_default();
        if !w.acd.callback(self.call_id, number).await {
            return Ok(false);
        }
        w.waited(st);
        st.path.push(format!("{}=callback", w.name));
        st.queue_exit = Some("callback".into());
        st.outcome = Some(format!("callback:{}", w.name));
        self.play(
            media,
            &[Item::Prompt("system:callback-requested".into())],
            st,
            false,
        )
        .await?;
        Ok(true)
    }

    /// Tells the caller how many are ahead of them (and, if the queue
    /// says so, the expected wait).
    async fn announce_place(
        &self,
        media: &mut Media<'_, L>,
        w: &mut Waiting<'_, L>,
        st: &mut FlowState,
    ) -> Result<(), Gone> {
        let Some(p) = w.acd.position(self.call_id).await else {
            return Ok(());
        };
        st.vars.insert("queue_ahead".into(), p.ahead.to_string());
        let mut items = vec![
            Item::Prompt("system:you-are-number".into()),
            Item::Say(SayAs::Number, "queue_ahead".into()),
            Item::Prompt("system:in-queue".into()),
        ];
        if let (true, Some(wait)) = (w.hold.with_wait, p.expected) {
            let minutes = wait.as_secs().div_ceil(60).max(1);
            st.vars.insert("queue_minutes".into(), minutes.to_string());
            items.extend([
                Item::Prompt("system:expected-wait".into()),
                Item::Say(SayAs::Number, "queue_minutes".into()),
                Item::Prompt("system:minutes".into()),
            ]);
        }
        st.path.push(format!("{}@ahead:{}", w.name, p.ahead));
        if let Err(g) = self.play(media, &items, st, false).await {
            return Err(w.abandon(self.call_id, g, st).await);
        }
        Ok(())
    }
}
