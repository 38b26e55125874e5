//! Runs a call through the flow graph: menus, digit collection, saying
//! values, branching, lookups, messages, surveys, callbacks, and
//! connecting the caller to a station or an outside number.
//!
//! The engine is a loop over nodes. Each node does its media work through
//! [`Media`] and names the next target; nothing here can block forever (every
//! wait has a timeout and watches the caller), and a step budget ends a call
//! whose flow keeps jumping without ever waiting on the caller, whatever the
//! config says. What happened is kept in [`FlowState`] and lands on the call
//! record: the path taken, recordable variables, the outcome, the survey
//! score.
//!
//! This file holds what a flow needs ([`FlowEnv`]) and keeps
//! ([`FlowState`]), and the loop that hands each node to the file for its
//! kind:
//!
//! - `prompts`: what the caller hears: prompts and values said aloud;
//! - `vars`: branch conditions, variables and `{name}` templates;
//! - `menu`: menus and digit collection;
//! - `selfservice`: lookups, voicemail, surveys, notifications and
//!   callback requests;
//! - `queue`: waiting in an ACD queue, and `agent`: the conversation with
//!   the agent it assigns, with consultations and transfers;
//! - `connect`: ringing stations and outside numbers, and hanging up
//!   borrowed lines;
//! - `recording`: the recording policy at each point of the call.

mod agent;
mod connect;
mod menu;
mod park;
mod prompts;
mod queue;
mod recording;
mod selfservice;
mod vars;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use callbox_hal::Line;

use self::queue::QueueEnd;
use super::config::{Ivr, NodeId, NodeKind, Target};
use super::say::Lang;
use crate::acd::AcdHandle;
use crate::clock::Clock;
use crate::daynight::DayNight;
use crate::media::lines::Lines;
use crate::media::{BridgeEnd, Gone, Media};
use crate::store::{StoreHandle, StoreMsg};

/// Node visits allowed per call before the engine gives up on a flow that
/// loops without waiting on the caller.
const MAX_STEPS: u32 = 1000;

/// What a flow needs from the call and the daemon.
#[derive(Debug)]
pub struct FlowEnv<'a, L> {
    /// The checked IVR.
    pub ivr: &'a Ivr,
    /// Lines to borrow for connecting the caller.
    pub lines: &'a Lines<L>,
    /// Record store.
    pub store: &'a StoreHandle,
    /// Time.
    pub clock: &'a Clock,
    /// Where voicemail is written.
    pub data_dir: &'a PathBuf,
    /// The call.
    pub call_id: &'a str,
    /// Calling number (for outbound calls: the number called).
    pub caller: Option<&'a str>,
    /// Dialled number.
    pub dialled: Option<&'a str>,
    /// Queues, when the site has agents.
    pub acd: Option<&'a AcdHandle<L>>,
    /// The day/night switch.
    pub daynight: &'a DayNight,
    /// Where agents park callers.
    pub park: &'a crate::media::park::ParkLot<L>,
    /// Conference rooms.
    pub rooms: &'a crate::media::conference::Rooms,
    /// What waits in each voicemail box (a message left adds to it).
    pub mailboxes: &'a crate::voicemail::Mailboxes,
    /// Where each call is now: the flow moves this one's node.
    pub inflight: &'a crate::inflight::Inflight,
}

/// What the flow did, for the call record.
#[derive(Debug, Clone, Default)]
pub struct FlowState {
    /// First node.
    pub start: Option<NodeId>,
    /// Language spoken.
    pub lang: Option<Lang>,
    /// Every variable.
    pub vars: BTreeMap<String, String>,
    /// Variables that go on the record.
    pub recordable: BTreeSet<String>,
    /// Nodes and choices, in order.
    pub path: Vec<String>,
    /// How the flow ended.
    pub outcome: Option<String>,
    /// Survey score, 1-5.
    pub survey: Option<u8>,
    /// Line the caller was connected to.
    pub connected_to: Option<String>,
    /// Queue the caller waited in (the last one).
    pub queue: Option<String>,
    /// Time waited in queues, ms.
    pub queue_wait_ms: Option<i64>,
    /// Agent who took the call.
    pub agent: Option<String>,
    /// Talk time with the agent, ms.
    pub talk_ms: Option<i64>,
    /// How the call left its queue.
    pub queue_exit: Option<String>,
    menus: Vec<NodeId>,
    menu_errors: u32,
    /// The caller has heard the recording notice.
    consent_played: bool,
}

impl FlowState {
    /// A fresh state starting at `start` in `lang`, with initial variables.
    pub fn new(start: NodeId, lang: Lang, vars: &[(String, String)]) -> FlowState {
        FlowState {
            start: Some(start),
            lang: Some(lang),
            vars: vars.iter().cloned().collect(),
            ..FlowState::default()
        }
    }

    fn lang(&self) -> Lang {
        self.lang.unwrap_or(Lang::En)
    }

    /// Variables marked recordable, with their values.
    pub fn recorded_vars(&self) -> BTreeMap<String, String> {
        self.recordable
            .iter()
            .filter_map(|k| self.vars.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }
}

/// How a flow ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowEnd {
    /// The flow is done; the box hangs up.
    Done,
    /// The caller left, the daemon stops or the line failed.
    Gone(Gone),
}

/// How one node ended.
enum Step {
    /// On to this target.
    Next(Target),
    /// The caller left, the daemon stops or the line failed at this node.
    Gone(Gone),
    /// A bridge ended the call; whoever connected it set the outcome.
    Ended(FlowEnd),
}

impl From<Result<Target, Gone>> for Step {
    fn from(r: Result<Target, Gone>) -> Step {
        match r {
            Ok(t) => Step::Next(t),
            Err(g) => Step::Gone(g),
        }
    }
}

/// Where a flow goes when a bridge it made ends: on to `after` (or a
/// hang-up) when the other side hung up; otherwise the call is over.
fn bridged(end: BridgeEnd, after: Option<Target>) -> Step {
    match end {
        BridgeEnd::OtherHungUp => Step::Next(after.unwrap_or(Target::Hangup)),
        BridgeEnd::CallerHungUp => Step::Ended(FlowEnd::Gone(Gone::Caller)),
        BridgeEnd::Shutdown => Step::Ended(FlowEnd::Gone(Gone::Shutdown)),
        BridgeEnd::Failure(e) => Step::Ended(FlowEnd::Gone(Gone::Failure(e))),
    }
}

impl<L: Line> FlowEnv<'_, L> {
    fn now_ms(&self) -> i64 {
        self.clock.now().wall_ms
    }

    /// Adds an event to the call's event log.
    async fn event(&self, event: &'static str, data: serde_json::Value) {
        self.store
            .send(StoreMsg::Event {
                call_id: self.call_id.to_string(),
                at: self.clock.now(),
                event,
                data,
            })
            .await;
    }

    /// Runs the flow from `st.start` to its end.
    pub async fn run(&self, media: &mut Media<'_, L>, st: &mut FlowState) -> FlowEnd {
        let start = st.start.unwrap_or(self.ivr.start);
        let mut target = Target::Node(start);
        let mut current_menu_entry_short = false;
        for _ in 0..MAX_STEPS {
            let id = match target {
                Target::Node(i) => i,
                Target::Hangup => return FlowEnd::Done,
                Target::Top => {
                    st.menus.clear();
                    start
                }
                Target::Back => {
                    st.menus.pop();
                    match st.menus.pop() {
                        Some(m) => m,
                        None => start,
                    }
                }
                Target::Repeat => match st.menus.last() {
                    Some(&m) => {
                        current_menu_entry_short = true;
                        m
                    }
                    None => start,
                },
            };
            let node = &self.ivr.nodes[id];
            st.path.push(node.name.clone());
            self.inflight.at_node(self.call_id, &node.name);
            match self
                .step(media, id, &mut current_menu_entry_short, st)
                .await
            {
                Step::Next(t) => {
                    if t == Target::Hangup && st.outcome.is_none() {
                        st.outcome = Some(format!("hangup:{}", node.name));
                    }
                    target = t;
                }
                Step::Gone(g) => return self.gone(g, &node.name, st),
                Step::Ended(end) => return end,
            }
        }
        tracing::error!("flow took {MAX_STEPS} steps without ending; hanging up");
        st.outcome = Some("step_limit".into());
        FlowEnd::Done
    }

    /// Does the work of node `id` and says where the flow goes next.
    /// `repeat`: the caller asked to hear the current menu again.
    async fn step(
        &self,
        media: &mut Media<'_, L>,
        id: NodeId,
        repeat: &mut bool,
        st: &mut FlowState,
    ) -> Step {
        let node = &self.ivr.nodes[id];
        let next = match &node.kind {
            NodeKind::Menu(m) => self.enter_menu(media, id, m, repeat, st).await,
            NodeKind::Collect(k) => self.collect(media, &node.name, k, st).await,
            NodeKind::Play {
                items,
                barge_in,
                next,
            } => self.play(media, items, st, *barge_in).await.map(|_| *next),
            NodeKind::Branch { cases, default } => Ok(cases
                .iter()
                .find(|(c, _)| self.holds(c, st))
                .map_or(*default, |(_, t)| *t)),
            NodeKind::Set {
                var,
                value,
                recordable,
                next,
            } => {
                self.set(var, value, *recordable, st);
                Ok(*next)
            }
            NodeKind::Conference { room, on_refused } => {
                let prompts = &self.ivr.prompts;
                let lang = st.lang();
                let prompt = |key: &str| prompts.get(lang, key).cloned();
                match crate::media::conference::attend(media, self.rooms, room, &prompt).await {
                    Ok(a) => {
                        st.path
                            .push(format!("{}={}", node.name, a.outcome(&room.name)));
                        st.outcome = Some(a.outcome(&room.name));
                        Ok(if a == crate::media::conference::Attended::Joined {
                            Target::Hangup
                        } else {
                            *on_refused
                        })
                    }
                    Err(g) => {
                        st.outcome = Some(format!("conference:{}", room.name));
                        Err(g)
                    }
                }
            }
            NodeKind::Hangup { prompt, outcome } => {
                // A goodbye after a message or a failed menu keeps the
                // more telling outcome.
                st.outcome.get_or_insert_with(|| outcome.clone());
                self.play(media, prompt, st, false)
                    .await
                    .map(|_| Target::Hangup)
            }
            NodeKind::ProductCheck { var, next } => {
                self.product_check(media, var, st).await.map(|()| *next)
            }
            NodeKind::OrderStatus {
                var,
                statuses,
                next,
            } => self
                .order_status(media, var, statuses, st)
                .await
                .map(|()| *next),
            NodeKind::Notify {
                event,
                fields,
                next,
            } => {
                self.notify(event, fields, st).await;
                Ok(*next)
            }
            NodeKind::Voicemail {
                mailbox,
                prompt,
                max_length,
                saved,
                next,
            } => self
                .voicemail(media, mailbox, prompt, *max_length, saved, st)
                .await
                .map(|()| *next),
            NodeKind::Survey {
                prompt,
                thanks,
                timeout,
                next,
            } => self
                .survey(media, prompt, thanks, *timeout, st)
                .await
                .map(|()| *next),
            NodeKind::Callback {
                queue,
                prompt,
                next,
            } => self
                .request_callback(media, queue, prompt, st)
                .await
                .map(|()| *next),
            NodeKind::Queue {
                name,
                announce,
                on_overflow,
                after,
                ..
            } => match self.queue(media, name, announce, st).await.inspect(|_| {
                // Keys pressed on hold were not meant for the next node.
                media.clear_keys();
            }) {
                Ok(QueueEnd::CalledBack) => Ok(Target::Hangup),
                Ok(QueueEnd::Overflow) => Ok(*on_overflow),
                Ok(QueueEnd::Bridged(end)) => return bridged(end, *after),
                Err(g) => Err(g),
            },
            NodeKind::Connect {
                dest,
                announce,
                ring_timeout,
                on_no_answer,
                after,
            } => match self
                .connect(media, &node.name, dest, announce, *ring_timeout, st)
                .await
            {
                Ok(None) => Ok(*on_no_answer),
                Ok(Some(end)) => return bridged(end, *after),
                Err(g) => Err(g),
            },
        };
        next.into()
    }

    fn gone(&self, g: Gone, node: &str, st: &mut FlowState) -> FlowEnd {
        if st.outcome.is_none() {
            st.outcome = Some(match &g {
                Gone::Caller => format!("caller_hung_up:{node}"),
                Gone::Shutdown => "shutdown".into(),
                Gone::Failure(_) => "line_failure".into(),
            });
        }
        FlowEnd::Gone(g)
    }
}
