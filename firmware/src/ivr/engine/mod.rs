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

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use callbox_hal::dsp::tones::ProgressTone;
use callbox_hal::{AudioIn, AudioOut, HangupCause, Line, LineCommand, Port};
use tokio::sync::oneshot;

use super::config::{Cond, Dest, Item, Ivr, Menu, NodeId, NodeKind, SayAs, Target};
use super::say::{self, Lang};
use crate::acd::{AcdHandle, Completed, JoinResult, WaiterMsg};
use crate::clock::Clock;
use crate::lines::Lines;
use crate::media::dial::{Rang, answer_within};
use crate::media::{AgentAsks, BridgeEnd, Gone, Media, bridge, bridge_supervised};
use crate::recorder::config::{CallKeys, Mode};
use crate::store::{CheckHistory, StoreHandle, StoreMsg};

/// How long the target of a blind transfer rings.
const TRANSFER_RING: std::time::Duration = std::time::Duration::from_secs(20);

/// A bridge the agent ends sooner than this was never a conversation.
const BOUNCE: std::time::Duration = std::time::Duration::from_millis(1500);

/// Invalid entries and timeouts in menus allowed per call, over all menus.
const MAX_MENU_ERRORS: u32 = 12;

/// Node visits allowed per call before the engine gives up on a flow that
/// loops without waiting on the caller.
const MAX_STEPS: u32 = 1000;

/// What a flow needs from the call and the daemon.
#[derive(Debug)]
pub struct FlowEnv<'a, L, I, O> {
    /// The checked IVR.
    pub ivr: &'a Ivr,
    /// Lines to borrow for connecting the caller.
    pub lines: &'a Lines<L, I, O>,
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
    pub acd: Option<&'a AcdHandle<L, I, O>>,
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

fn template(
    s: &str,
    st: &FlowState,
    env_caller: Option<&str>,
    env_dialled: Option<&str>,
    call_id: &str,
) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find('}') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let name = &rest[i + 1..i + j];
        let v = match name {
            "caller" => env_caller.unwrap_or(""),
            "dialled" => env_dialled.unwrap_or(""),
            "call_id" => call_id,
            other => st.vars.get(other).map_or("", String::as_str),
        };
        out.push_str(v);
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    out
}

impl<L: Line, I: AudioIn, O: AudioOut> FlowEnv<'_, L, I, O> {
    fn now_ms(&self) -> i64 {
        self.clock.now().wall_ms
    }

    /// Fragments for a value said aloud; an unusable value says nothing
    /// (and is logged), it never ends the call.
    fn say_fragments(&self, how: SayAs, var: &str, st: &FlowState) -> Vec<String> {
        let value = match var {
            _ if st.vars.contains_key(var) => st.vars[var].as_str(),
            "caller" => self.caller.unwrap_or(""),
            "dialled" => self.dialled.unwrap_or(""),
            _ => "",
        };
        let lang = st.lang();
        let tz = self.ivr.tz.clone();
        let frags = match how {
            SayAs::Digits => Some(say::digits(value)),
            SayAs::Number => value.parse::<i64>().ok().map(|n| say::number(n, lang)),
            SayAs::Money => say::parse_money(value).map(|c| say::money(c, lang)),
            SayAs::Date => value
                .parse::<jiff::civil::Date>()
                .ok()
                .or_else(|| {
                    value
                        .parse::<jiff::Timestamp>()
                        .ok()
                        .map(|t| t.to_zoned(tz.clone()).date())
                })
                .map(|d| say::date(d.year() as i32, d.month() as u8, d.day() as u8, None, lang)),
            SayAs::Time => value
                .parse::<jiff::civil::Time>()
                .ok()
                .or_else(|| {
                    value
                        .parse::<jiff::Timestamp>()
                        .ok()
                        .map(|t| t.to_zoned(tz.clone()).time())
                })
                .map(|t| say::time(t.hour() as u8, t.minute() as u8, lang)),
        };
        frags.unwrap_or_else(|| {
            tracing::warn!(var, value, ?how, "value cannot be said; skipped");
            Vec::new()
        })
    }

    /// The prompt audio `items` stand for, in order.
    fn segments<'s>(&'s self, items: &[Item], st: &FlowState) -> Vec<&'s [i16]> {
        let lang = st.lang();
        let mut out = Vec::new();
        let mut add = |key: &str| match self.ivr.prompts.get(lang, key) {
            Some(s) => out.push(&s[..]),
            None => tracing::warn!(key, lang = lang.code(), "prompt missing at run time"),
        };
        for item in items {
            match item {
                Item::Prompt(key) => add(key),
                Item::Say(how, var) => {
                    for f in self.say_fragments(*how, var, st) {
                        add(&format!("system:{f}"));
                    }
                }
            }
        }
        out
    }

    async fn play(
        &self,
        media: &mut Media<'_, L, I, O>,
        items: &[Item],
        st: &FlowState,
        barge_in: bool,
    ) -> Result<bool, Gone> {
        if items.is_empty() {
            return Ok(false);
        }
        // A single prompt (a menu's greeting) plays from the loaded audio;
        // only a sentence of several is joined, per call, so its fragments
        // play without gaps.
        let segments = self.segments(items, st);
        let joined;
        let audio: &[i16] = match segments.as_slice() {
            [one] => one,
            many => {
                joined = many.concat();
                &joined
            }
        };
        let interrupted = media.play(audio, barge_in).await?;
        if !barge_in {
            media.clear_keys();
        }
        Ok(interrupted)
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

    /// Notes a lookup the flow performed (what was asked, whether it was
    /// found) in the `lookups` table.
    async fn lookup(&self, source: &str, key: &str, found: bool) {
        self.store
            .send(StoreMsg::Lookup {
                call_id: self.call_id.to_string(),
                at: self.clock.now(),
                source: source.to_string(),
                key: key.to_string(),
                found,
            })
            .await;
    }

    /// Applies the recording policy for this point of the call: the
    /// caller hears the consent notice the first time a policy that may
    /// record asks for it, and with `connect` (the caller is being
    /// connected to `agent` or a line) the recording starts or stops as the
    /// policy says; on-demand calls wait for the agent's record code.
    async fn recording_policy(
        &self,
        media: &mut Media<'_, L, I, O>,
        queue: Option<&str>,
        agent: Option<&str>,
        connect: bool,
        st: &mut FlowState,
    ) -> Result<(), Gone> {
        let Some(cfg) = media.rec.config() else {
            return Ok(());
        };
        let flow = st.start.map(|n| self.ivr.nodes[n].name.as_str());
        let d = cfg.decide(&CallKeys {
            queue,
            flow,
            agent,
            dialled: self.dialled,
        });
        if d.mode != Mode::Never
            && d.consent
            && !st.consent_played
            && let Some(p) = &cfg.consent_prompt
        {
            st.consent_played = true;
            st.path.push("recording_notice".into());
            media.play(&p.samples, false).await?;
            media.clear_keys();
        }
        if connect {
            media.rec.on_demand = d.mode == Mode::OnDemand;
            match d.mode {
                Mode::Always => {
                    if !media.rec.start_call(d) {
                        st.path.push("recording!unavailable".into());
                    }
                }
                Mode::Never => media.rec.stop(),
                Mode::OnDemand => {}
            }
        }
        Ok(())
    }

    /// Runs the flow from `st.start` to its end.
    pub async fn run(&self, media: &mut Media<'_, L, I, O>, st: &mut FlowState) -> FlowEnd {
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
            let step = match &node.kind {
                NodeKind::Menu(m) => {
                    self.event("menu", serde_json::json!({"node": node.name}))
                        .await;
                    let short = std::mem::take(&mut current_menu_entry_short)
                        || st.menus.last() == Some(&id);
                    if st.menus.last() != Some(&id) {
                        st.menus.push(id);
                    }
                    self.menu(media, &node.name, m, short, st).await
                }
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
                    let v = template(value, st, self.caller, self.dialled, self.call_id);
                    if var == "language" {
                        match Lang::parse(&v) {
                            Some(l) if self.ivr.prompts.get(l, "system:digit-0").is_some() => {
                                st.lang = Some(l)
                            }
                            _ => tracing::warn!(value = %v, "language not available; unchanged"),
                        }
                    }
                    st.vars.insert(var.clone(), v);
                    if *recordable {
                        st.recordable.insert(var.clone());
                    }
                    Ok(*next)
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
                } => {
                    let no = st.vars.get(var).cloned().unwrap_or_default();
                    let (result, items) = match self.ivr.lookups.order(&no) {
                        Some(status) => {
                            let mut items = vec![Item::Prompt("system:order-status".into())];
                            items.extend(statuses.get(status).cloned().unwrap_or_default());
                            (status.to_string(), items)
                        }
                        None => (
                            "not_found".to_string(),
                            vec![Item::Prompt("system:order-not-found".into())],
                        ),
                    };
                    self.lookup("orders", &no, result != "not_found").await;
                    st.path.push(format!("order_status={result}"));
                    st.vars.insert("order_status".into(), result);
                    self.play(media, &items, st, false).await.map(|_| *next)
                }
                NodeKind::Notify {
                    event,
                    fields,
                    next,
                } => {
                    let fields: serde_json::Map<String, serde_json::Value> = fields
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                template(v, st, self.caller, self.dialled, self.call_id).into(),
                            )
                        })
                        .collect();
                    let payload = serde_json::json!({
                        "event": event,
                        "call_id": self.call_id,
                        "caller": self.caller,
                        "fields": fields,
                    });
                    self.store
                        .send(StoreMsg::Outbox {
                            stream: "notify".into(),
                            at: self.clock.now(),
                            payload,
                        })
                        .await;
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
                } => {
                    let mut score = None;
                    for _ in 0..2 {
                        if let Err(g) = self.play(media, prompt, st, true).await {
                            return self.gone(g, &node.name, st);
                        }
                        match media.wait_key(*timeout).await {
                            Ok(Some(k @ '1'..='5')) => {
                                score = Some(k as u8 - b'0');
                                break;
                            }
                            Ok(_) => continue,
                            Err(g) => return self.gone(g, &node.name, st),
                        }
                    }
                    st.survey = score;
                    st.path.push(format!(
                        "survey={}",
                        score.map_or("none".into(), |s| s.to_string())
                    ));
                    if score.is_some() {
                        self.play(media, thanks, st, false).await.map(|_| *next)
                    } else {
                        Ok(*next)
                    }
                }
                NodeKind::Callback {
                    queue,
                    prompt,
                    next,
                } => match self.caller {
                    Some(number) => {
                        self.store
                            .send(StoreMsg::Callback {
                                call_id: self.call_id.to_string(),
                                number: number.to_string(),
                                queue: queue.clone(),
                                at: self.clock.now(),
                            })
                            .await;
                        st.path.push("callback=requested".into());
                        self.play(media, prompt, st, false).await.map(|_| *next)
                    }
                    None => {
                        st.path.push("callback=no_number".into());
                        Ok(*next)
                    }
                },
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
                    Ok(QueueEnd::Bridged(BridgeEnd::OtherHungUp)) => {
                        Ok(after.unwrap_or(Target::Hangup))
                    }
                    Ok(QueueEnd::Bridged(BridgeEnd::CallerHungUp)) => {
                        return FlowEnd::Gone(Gone::Caller);
                    }
                    Ok(QueueEnd::Bridged(BridgeEnd::Shutdown)) => {
                        return FlowEnd::Gone(Gone::Shutdown);
                    }
                    Ok(QueueEnd::Bridged(BridgeEnd::Failure(e))) => {
                        return FlowEnd::Gone(Gone::Failure(e));
                    }
                    Err(g) => Err(g),
                },
                NodeKind::Connect {
                    dest,
                    announce,
                    ring_timeout,
                    on_no_answer,
                    after,
                } => {
                    match self
                        .connect(media, &node.name, dest, announce, *ring_timeout, st)
                        .await
                    {
                        Ok(None) => Ok(*on_no_answer),
                        Ok(Some(BridgeEnd::OtherHungUp)) => Ok(after.unwrap_or(Target::Hangup)),
                        Ok(Some(BridgeEnd::CallerHungUp)) => return FlowEnd::Gone(Gone::Caller),
                        Ok(Some(BridgeEnd::Shutdown)) => return FlowEnd::Gone(Gone::Shutdown),
                        Ok(Some(BridgeEnd::Failure(e))) => return FlowEnd::Gone(Gone::Failure(e)),
                        Err(g) => Err(g),
                    }
                }
            };
            match step {
                Ok(t) => {
                    if t == Target::Hangup && st.outcome.is_none() {
                        st.outcome = Some(format!("hangup:{}", node.name));
                    }
                    target = t;
                }
                Err(g) => return self.gone(g, &node.name, st),
            }
        }
        tracing::error!("flow took {MAX_STEPS} steps without ending; hanging up");
        st.outcome = Some("step_limit".into());
        FlowEnd::Done
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

    fn holds(&self, c: &Cond, st: &FlowState) -> bool {
        let now = self.now_ms();
        match c {
            Cond::Open(h) => self.ivr.hours.get(h).is_some_and(|h| h.is_open(now)),
            Cond::Holiday(h) => self.ivr.hours.get(h).is_some_and(|h| h.is_holiday(now)),
            Cond::CallerIn(list) => self.ivr.in_list(list, self.caller),
            Cond::Dialled(ps) => self
                .dialled
                .is_some_and(|d| ps.iter().any(|p| p.matches(d))),
            Cond::VarEquals(v, want) => st.vars.get(v).is_some_and(|x| x == want),
            Cond::VarMatches(v, p) => st.vars.get(v).is_some_and(|x| p.matches(x)),
            Cond::Language(l) => st.lang() == *l,
        }
    }

    async fn menu(
        &self,
        media: &mut Media<'_, L, I, O>,
        name: &str,
        m: &Menu,
        short: bool,
        st: &mut FlowState,
    ) -> Result<Target, Gone> {
        let (mut failures, mut timeouts) = (0, 0);
        let mut greeting = if short {
            &m.short_greeting
        } else {
            &m.greeting
        };
        loop {
            self.play(media, greeting, st, m.barge_in).await?;
            greeting = &m.short_greeting;
            if st.menu_errors >= MAX_MENU_ERRORS {
                // Whatever the config says (`back` to a menu that sends the
                // caller back again), a silent or lost caller is let go.
                st.outcome = Some(format!("too_many_errors:{name}"));
                self.play(media, &m.exit, st, false).await?;
                return Ok(Target::Hangup);
            }
            let Some(first) = media.wait_key(m.first_digit_timeout).await? else {
                st.menu_errors += 1;
                timeouts += 1;
                st.path.push(format!("{name}!timeout"));
                if timeouts >= m.max_timeouts {
                    st.outcome = Some(format!("max_timeouts:{name}"));
                    self.play(media, &m.exit, st, false).await?;
                    return Ok(m.on_max_timeouts);
                }
                self.play(media, &m.no_input, st, false).await?;
                continue;
            };
            let mut entry = String::from(first);
            loop {
                let longer = m
                    .options
                    .iter()
                    .any(|(k, _)| k.len() > entry.len() && k.starts_with(&entry));
                // Stop as soon as no longer option starts with what was keyed:
                // "1" waits for a possible "12", "2" is taken at once.
                if !longer || entry.chars().count() >= m.max_len {
                    break;
                }
                match media.wait_key(m.inter_digit_timeout).await? {
                    Some(k) => entry.push(k),
                    None => break,
                }
            }
            self.event("digit", serde_json::json!({"menu": name, "keys": entry}))
                .await;
            if let Some((_, t)) = m.options.iter().find(|(k, _)| *k == entry) {
                st.path.push(format!("{name}={entry}"));
                // A new choice starts a clean slate for the next node.
                media.clear_keys();
                return Ok(*t);
            }
            failures += 1;
            st.menu_errors += 1;
            st.path.push(format!("{name}!invalid:{entry}"));
            media.clear_keys();
            if failures >= m.max_failures {
                st.outcome = Some(format!("max_failures:{name}"));
                self.play(media, &m.exit, st, false).await?;
                return Ok(m.on_max_failures);
            }
            self.play(media, &m.invalid, st, false).await?;
        }
    }

    async fn collect(
        &self,
        media: &mut Media<'_, L, I, O>,
        name: &str,
        k: &super::config::Collect,
        st: &mut FlowState,
    ) -> Result<Target, Gone> {
        let mut attempt = 0;
        loop {
            self.play(media, &k.prompt, st, k.barge_in).await?;
            let mut digits = String::new();
            let mut timeout = k.first_digit_timeout;
            let mut terminated = false;
            while let Some(key) = media.wait_key(timeout).await? {
                if Some(key) == k.terminator {
                    terminated = true;
                    break;
                }
                digits.push(key);
                if digits.chars().count() >= k.max {
                    break;
                }
                timeout = k.inter_digit_timeout;
            }
            let _ = terminated;
            let len = digits.chars().count();
            let valid = len >= k.min
                && len <= k.max
                && k.pattern.as_ref().is_none_or(|p| p.matches(&digits));
            if valid {
                st.path.push(format!("{name}=ok"));
                st.vars.insert(k.var.clone(), digits);
                if k.recordable {
                    st.recordable.insert(k.var.clone());
                }
                media.clear_keys();
                return Ok(k.next);
            }
            attempt += 1;
            let (what, prompt) = if digits.is_empty() {
                ("timeout", &k.no_input)
            } else {
                ("invalid", &k.invalid)
            };
            st.path.push(format!("{name}!{what}"));
            media.clear_keys();
            if attempt > k.retries {
                st.outcome = Some(format!("collect_failed:{name}"));
                return Ok(k.on_failure);
            }
            self.play(media, prompt, st, false).await?;
        }
    }

    async fn product_check(
        &self,
        media: &mut Media<'_, L, I, O>,
        var: &str,
        st: &mut FlowState,
    ) -> Result<(), Gone> {
        let code = st.vars.get(var).cloned().unwrap_or_default();
        let product = self.ivr.lookups.product(&code);
        self.lookup("products", &code, product.is_some()).await;
        let caller_region = self.ivr.lookups.region_of(self.caller);
        let diverted = match (product, caller_region) {
            (Some(p), Some(r)) => p.region != r,
            _ => false,
        };
        let (tx, rx) = oneshot::channel();
        self.store
            .send(StoreMsg::ProductCheck {
                call_id: self.call_id.to_string(),
                code: code.clone(),
                caller: self.caller.map(str::to_string),
                found: product.is_some(),
                product_region: product.map(|p| p.region.clone()),
                caller_region: caller_region.map(str::to_string),
                diverted,
                at: self.clock.now(),
                reply: tx,
            })
            .await;
        let history = crate::store::reply(rx).await.unwrap_or(CheckHistory {
            earlier: 0,
            first_ms: None,
        });
        let (result, items) = if product.is_none() {
            ("not_found", vec![Item::Prompt("system:not-found".into())])
        } else if history.earlier == 0 {
            (
                "genuine_first",
                vec![Item::Prompt("system:genuine-first".into())],
            )
        } else {
            let first = history.first_ms.unwrap_or_else(|| self.now_ms());
            let tz = self.ivr.tz.clone();
            let date = jiff::Timestamp::from_millisecond(first)
                .map(|t| t.to_zoned(tz).date().to_string())
                .unwrap_or_default();
            st.vars
                .insert("check_count".into(), history.earlier.to_string());
            st.vars.insert("check_first".into(), date);
            (
                "genuine_repeat",
                vec![
                    Item::Prompt("system:genuine-repeat".into()),
                    Item::Say(SayAs::Number, "check_count".into()),
                    Item::Prompt("system:times".into()),
                    Item::Prompt("system:first-checked".into()),
                    Item::Say(SayAs::Date, "check_first".into()),
                ],
            )
        };
        st.path.push(format!(
            "check={result}{}",
            if diverted { ",diverted" } else { "" }
        ));
        st.vars.insert("check_result".into(), result.into());
        self.play(media, &items, st, false).await?;
        Ok(())
    }

    async fn voicemail(
        &self,
        media: &mut Media<'_, L, I, O>,
        mailbox: &str,
        prompt: &[Item],
        max: std::time::Duration,
        saved: &[Item],
        st: &mut FlowState,
    ) -> Result<(), Gone> {
        self.play(media, prompt, st, false).await?;
        let at = self.clock.now();
        // The message streams to disk through the recorder like a call
        // recording: a power cut keeps what was said.
        let mut message = media.rec.sibling();
        let format = message
            .config()
            .map_or(crate::recorder::wav::Format::Pcm16, |c| c.voicemail_format);
        let written = if message.start("voicemail", format, 1) {
            let id = message.id().unwrap_or_default().to_string();
            let file = message.file().unwrap_or_default().to_string();
            let (length, ended_early) = media.record(max, &mut message).await;
            Ok((id, file, length.as_millis() as i64, ended_early))
        } else {
            Err("the box cannot record now (no recording folder, or the disk is full)")
        };
        let mut ended_early = None;
        match written {
            Ok((id, file, duration_ms, early)) => {
                ended_early = early;
                self.store
                    .send(StoreMsg::Voicemail {
                        id,
                        call_id: self.call_id.to_string(),
                        mailbox: mailbox.to_string(),
                        caller: self.caller.map(str::to_string),
                        at,
                        duration_ms,
                        file,
                    })
                    .await;
                st.path.push(format!("voicemail={duration_ms}ms"));
                st.outcome = Some(format!("voicemail:{mailbox}"));
            }
            Err(e) => {
                tracing::error!(mailbox, "voicemail could not be recorded: {e}");
                st.path.push("voicemail=failed".into());
                st.outcome = Some(format!("voicemail_failed:{mailbox}"));
            }
        }
        if let Some(g) = ended_early {
            return Err(g);
        }
        // "Message saved" only when it was.
        if st.outcome.as_deref() == Some(&format!("voicemail:{mailbox}")) {
            self.play(media, saved, st, false).await?;
        }
        Ok(())
    }

    /// Waits in an ACD queue and bridges to the agent the queue assigns.
    /// How the caller left the queue: bridged to an agent, overflow, or a callback.
    async fn queue(
        &self,
        media: &mut Media<'_, L, I, O>,
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
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let joined = tokio::time::Instant::now();
        let waited = |st: &mut FlowState| {
            let ms = joined.elapsed().as_millis() as i64;
            st.queue_wait_ms = Some(st.queue_wait_ms.unwrap_or(0) + ms);
        };
        match acd.join(name, self.call_id, self.caller, tx).await {
            JoinResult::Joined(pos) => {
                st.path.push(format!("{name}=joined:{pos}"));
                self.event(
                    "queued",
                    serde_json::json!({"queue": name, "position": pos}),
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
        if let Err(g) = self.play(media, announce, st, false).await {
            acd.leave(self.call_id).await;
            waited(st);
            st.queue_exit = Some("abandoned".into());
            return Err(g);
        }
        // The queue as it is configured now (a config change since the
        // call started applies to its wait too).
        // Only the settings the wait uses are taken: a queue's whole config
        // (its member list) copied into every waiting call would cost
        // memory in proportion to the agents.
        let (hold, every, with_wait, callback_key) = {
            let cfg = acd.config();
            let qc = cfg.queues.iter().find(|q| q.name == name);
            let hold = qc.and_then(|q| q.moh.as_ref()).and_then(|m| {
                self.ivr
                    .prompts
                    .get(st.lang(), &format!("site:{m}"))
                    .cloned()
            });
            (
                hold,
                qc.and_then(|q| q.announce_every),
                qc.is_some_and(|q| q.announce_wait),
                qc.and_then(|q| q.callback_key),
            )
        };
        let mut hold_pos = 0;
        'wait: loop {
            // Music on hold (or ring-back) until the ACD speaks or it is
            // time for the position announcement.
            let until = async {
                match every {
                    Some(d) => tokio::time::timeout(d, rx.recv()).await.ok(),
                    None => Some(rx.recv().await),
                }
            };
            let offer_callback = callback_key.is_some() && self.caller.is_some();
            let msg = match &hold {
                Some(music) => {
                    media
                        .loop_while(music, &mut hold_pos, until, offer_callback)
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
            let msg = match msg {
                Ok(None) => {
                    // A key: the callback key turns the wait into a
                    // callback that keeps the caller's place.
                    let key = media.take_key();
                    media.clear_keys();
                    if key.is_some() && key == callback_key {
                        let number = self.caller.unwrap_or_default();
                        if acd.callback(self.call_id, number).await {
                            waited(st);
                            st.path.push(format!("{name}=callback"));
                            st.queue_exit = Some("callback".into());
                            st.outcome = Some(format!("callback:{name}"));
                            self.play(
                                media,
                                &[Item::Prompt("system:callback-requested".into())],
                                st,
                                false,
                            )
                            .await?;
                            return Ok(QueueEnd::CalledBack);
                        }
                    }
                    continue;
                }
                Ok(Some(None)) => {
                    // Announcement time.
                    if let Some(p) = acd.position(self.call_id).await {
                        st.vars.insert("queue_ahead".into(), p.ahead.to_string());
                        let mut items = vec![
                            Item::Prompt("system:you-are-number".into()),
                            Item::Say(SayAs::Number, "queue_ahead".into()),
                            Item::Prompt("system:in-queue".into()),
                        ];
                        if let (true, Some(w)) = (with_wait, p.expected) {
                            let minutes = w.as_secs().div_ceil(60).max(1);
                            st.vars.insert("queue_minutes".into(), minutes.to_string());
                            items.extend([
                                Item::Prompt("system:expected-wait".into()),
                                Item::Say(SayAs::Number, "queue_minutes".into()),
                                Item::Prompt("system:minutes".into()),
                            ]);
                        }
                        st.path.push(format!("{name}@ahead:{}", p.ahead));
                        if let Err(g) = self.play(media, &items, st, false).await {
                            acd.leave(self.call_id).await;
                            waited(st);
                            st.queue_exit = Some("abandoned".into());
                            return Err(g);
                        }
                    }
                    continue;
                }
                Ok(Some(Some(m))) => Ok(m),
                Err(g) => Err(g),
            };
            let msg = match msg {
                Ok(m) => m,
                Err(g) => {
                    acd.leave(self.call_id).await;
                    waited(st);
                    st.queue_exit = Some("abandoned".into());
                    return Err(g);
                }
            };
            match msg {
                None => {
                    st.queue_exit = Some("unavailable".into());
                    return Ok(QueueEnd::Overflow);
                }
                Some(WaiterMsg::Exit(reason)) => {
                    waited(st);
                    st.path.push(format!("{name}!{}", reason.as_str()));
                    st.queue_exit = Some(reason.as_str().into());
                    return Ok(QueueEnd::Overflow);
                }
                // Nobody to supervise yet: the station goes back.
                Some(WaiterMsg::Monitor { .. }) => continue,
                Some(WaiterMsg::Connect {
                    agent: first,
                    lease: first_lease,
                }) => {
                    let (mut agent, mut lease) = (first, first_lease);
                    let first_connect = tokio::time::Instant::now();
                    loop {
                        let other = lease.port();
                        let station = other.line.info().id.clone();
                        let connected_at = tokio::time::Instant::now();
                        let shutdown = media.shutdown().clone();
                        let codes = acd.config().codes.clone();
                        let held: &[i16] = hold.as_deref().unwrap_or(&[]);
                        if let Err(g) = self
                            .recording_policy(media, Some(name), Some(&agent), true, st)
                            .await
                        {
                            release(lease.port(), HangupCause::Normal).await;
                            acd.done(
                                self.call_id,
                                &agent,
                                connected_at.elapsed(),
                                Completed::ByCaller,
                            )
                            .await;
                            st.agent = Some(agent.clone());
                            st.queue_exit = Some("connected".into());
                            return Err(g);
                        }
                        let other = lease.port();
                        self.event(
                            "bridged",
                            serde_json::json!({"queue": name, "agent": &agent, "station": &station}),
                        )
                        .await;
                        let (port, rec) = media.split();
                        let outcome = bridge_supervised(
                            port,
                            other,
                            &mut rx,
                            Some(codes.during_call()),
                            held,
                            rec,
                            &shutdown,
                        )
                        .await;
                        let talk = connected_at.elapsed();
                        // A transfer request ends the agent's part as if
                        // they had hung up.
                        let (end, ask) = match outcome {
                            Ok(end) => (end, None),
                            Err(ask) => (BridgeEnd::OtherHungUp, Some(ask)),
                        };
                        let cause = release_cause(&end);
                        if let Some(AgentAsks::Consult(number)) = &ask {
                            // Attended transfer: the caller holds while the
                            // agent talks to the target.
                            st.path.push(format!("{name}=consult:{agent}>{number}"));
                            let Ok((to, to_station)) = acd.reserve(number).await else {
                                st.path.push(format!("{name}!consult_busy"));
                                continue;
                            };
                            let Some(mut target) = self.lines.seize(&to_station).await else {
                                acd.unreserve(&to).await;
                                st.path.push(format!("{name}!consult_busy"));
                                continue;
                            };
                            let ring = LineCommand::Ring {
                                caller_id: None,
                                caller_name: None,
                            };
                            if target.port().line.command(ring).await.is_err() {
                                acd.unreserve(&to).await;
                                continue;
                            }
                            let (port, rec) = media.split();
                            let outcome = crate::media::consult(
                                port,
                                lease.port(),
                                target.port(),
                                held,
                                TRANSFER_RING,
                                rec,
                                &shutdown,
                            )
                            .await;
                            use crate::media::ConsultEnd;
                            match outcome {
                                ConsultEnd::Complete => {
                                    release(lease.port(), HangupCause::Normal).await;
                                    drop(lease);
                                    acd.handover(self.call_id, &agent, talk, &to).await;
                                    st.path.push(format!("{name}=connected:{to}"));
                                    self.event(
                                        "transferred",
                                        serde_json::json!({"from": &agent, "to": &to, "attended": true}),
                                    )
                                    .await;
                                    agent = to;
                                    lease = target;
                                    continue;
                                }
                                ConsultEnd::Back => {
                                    release(target.port(), HangupCause::Normal).await;
                                    drop(target);
                                    acd.unreserve(&to).await;
                                    st.path.push(format!("{name}!consult_back"));
                                    continue;
                                }
                                ConsultEnd::AgentLeft => {
                                    // Gone before the target answered: the
                                    // target keeps ringing for the caller.
                                    release(lease.port(), HangupCause::Normal).await;
                                    drop(lease);
                                    let answered = media
                                        .tone_while(
                                            self.ivr.tones,
                                            ProgressTone::Ringback,
                                            answer_within(
                                                &mut target.port().line,
                                                TRANSFER_RING,
                                                std::future::pending(),
                                            ),
                                            false,
                                        )
                                        .await;
                                    if let Ok(Some(Rang::Answered)) = answered {
                                        acd.handover(self.call_id, &agent, talk, &to).await;
                                        st.path.push(format!("{name}=connected:{to}"));
                                        agent = to;
                                        lease = target;
                                        continue;
                                    }
                                    release(target.port(), HangupCause::NoAnswer).await;
                                    acd.unreserve(&to).await;
                                    acd.bounced(self.call_id, &agent).await;
                                    st.path.push(format!("{name}!transfer_failed:{to}"));
                                    answered?;
                                    continue 'wait;
                                }
                                ConsultEnd::CallerHungUp | ConsultEnd::Stop(_) => {
                                    let cause = match &outcome {
                                        ConsultEnd::Stop(end) => release_cause(end),
                                        _ => HangupCause::Normal,
                                    };
                                    release(target.port(), cause).await;
                                    release(lease.port(), cause).await;
                                    acd.unreserve(&to).await;
                                    acd.done(self.call_id, &agent, talk, Completed::ByCaller)
                                        .await;
                                    st.agent = Some(agent.clone());
                                    st.queue_exit = Some("connected".into());
                                    return Err(match outcome {
                                        ConsultEnd::CallerHungUp => Gone::Caller,
                                        ConsultEnd::Stop(BridgeEnd::Shutdown) => Gone::Shutdown,
                                        _ => Gone::Failure(
                                            "a line failed during a consultation".into(),
                                        ),
                                    });
                                }
                            }
                        }
                        release(other, cause).await;
                        drop(lease);
                        if let Some(AgentAsks::Transfer(number)) = &ask {
                            // Blind transfer: the first agent is done; ring the
                            // agent with that number. If that fails the caller
                            // is back at the head of the queue.
                            st.path.push(format!("{name}=transfer:{agent}>{number}"));
                            self.event(
                                "transferred",
                                serde_json::json!({"from": &agent, "to": number, "attended": false}),
                            )
                            .await;
                            match acd.transfer(self.call_id, &agent, talk, number).await {
                                Ok((to, to_station)) => {
                                    let ring_to = match self.lines.seize(&to_station).await {
                                        Some(mut l) => {
                                            let cmd = LineCommand::Ring {
                                                caller_id: self.caller.map(str::to_string),
                                                caller_name: None,
                                            };
                                            match self
                                                .ring(media, &mut l, cmd, TRANSFER_RING)
                                                .await?
                                            {
                                                Rung::Answered => Some(l),
                                                _ => None,
                                            }
                                        }
                                        None => None,
                                    };
                                    acd.transfer_result(self.call_id, &to, ring_to.is_some())
                                        .await;
                                    match ring_to {
                                        Some(l) => {
                                            st.path.push(format!("{name}=connected:{to}"));
                                            agent = to;
                                            lease = l;
                                            continue;
                                        }
                                        None => {
                                            st.path.push(format!("{name}!transfer_failed:{to}"));
                                            continue 'wait;
                                        }
                                    }
                                }
                                Err(why) => {
                                    tracing::warn!("transfer refused: {why}");
                                    st.path.push(format!("{name}!transfer_failed"));
                                    continue 'wait;
                                }
                            }
                        }
                        if end == BridgeEnd::OtherHungUp && talk < BOUNCE {
                            // The agent picked up and put down at once: not a
                            // call. The caller keeps their place.
                            st.path.push(format!("{name}!bounced:{agent}"));
                            acd.bounced(self.call_id, &agent).await;
                            continue 'wait;
                        }
                        let ms = first_connect.duration_since(joined).as_millis() as i64;
                        st.queue_wait_ms = Some(st.queue_wait_ms.unwrap_or(0) + ms);
                        let entry = format!("{name}=connected:{agent}");
                        if st.path.last() != Some(&entry) {
                            st.path.push(entry);
                        }
                        st.queue_exit = Some("connected".into());
                        st.agent = Some(agent.clone());
                        st.talk_ms = Some(talk.as_millis() as i64);
                        st.connected_to = Some(station.clone());
                        st.outcome = Some(format!("connected:{agent}"));
                        let by = match end {
                            BridgeEnd::CallerHungUp => Completed::ByCaller,
                            BridgeEnd::OtherHungUp => Completed::ByAgent,
                            _ => Completed::BySystem,
                        };
                        acd.done(self.call_id, &agent, talk, by).await;
                        return Ok(QueueEnd::Bridged(end));
                    }
                }
            }
        }
    }

    /// Rings (or dials) a borrowed line with ring-back to the caller until
    /// it answers, refuses or `ring_timeout` passes; a line that did not
    /// answer is released.
    async fn ring(
        &self,
        media: &mut Media<'_, L, I, O>,
        lease: &mut crate::lines::Lease<L, I, O>,
        cmd: LineCommand,
        ring_timeout: std::time::Duration,
    ) -> Result<Rung, Gone> {
        if let Err(e) = lease.port().line.command(cmd).await {
            tracing::warn!("could not ring: {e}");
            release(lease.port(), HangupCause::LineFailure).await;
            return Ok(Rung::NotAnswered);
        }
        let other = lease.port();
        let answered = media
            .tone_while(
                self.ivr.tones,
                ProgressTone::Ringback,
                answer_within(&mut other.line, ring_timeout, std::future::pending()),
                false,
            )
            .await;
        match answered {
            Ok(Some(Rang::Answered)) => Ok(Rung::Answered),
            Ok(Some(Rang::Glare(ev))) => {
                // A caller took the trunk: their call goes back to the
                // trunk's watcher.
                lease.put_back(ev);
                Ok(Rung::Glare)
            }
            Ok(_) => {
                release(other, HangupCause::NoAnswer).await;
                Ok(Rung::NotAnswered)
            }
            Err(g) => {
                release(other, HangupCause::Normal).await;
                Err(g)
            }
        }
    }

    /// Rings a destination and bridges. `Ok(None)`: nobody answered or
    /// everything was busy; `Ok(Some(end))`: the bridge ended so.
    async fn connect(
        &self,
        media: &mut Media<'_, L, I, O>,
        label: &str,
        dest: &Dest,
        announce: &[Item],
        ring_timeout: std::time::Duration,
        st: &mut FlowState,
    ) -> Result<Option<BridgeEnd>, Gone> {
        self.play(media, announce, st, false).await?;
        let (candidates, number) = match dest {
            Dest::Stations(s) => (s.clone(), None),
            Dest::External { number, trunks } => (trunks.clone(), Some(number.clone())),
        };
        for line_id in &candidates {
            let Some(mut lease) = self.lines.seize(line_id).await else {
                continue;
            };
            let cmd = match &number {
                None => LineCommand::Ring {
                    caller_id: self.caller.map(str::to_string),
                    caller_name: None,
                },
                Some(n) => LineCommand::Dial { number: n.clone() },
            };
            tracing::info!(line = %line_id, "{label}: ringing");
            let answered = match self.ring(media, &mut lease, cmd, ring_timeout).await? {
                Rung::Answered => true,
                Rung::NotAnswered => false,
                Rung::Glare => continue,
            };
            if !answered {
                st.path.push(format!("{label}!no_answer:{line_id}"));
                return Ok(None);
            }
            st.path.push(format!("{label}=connected:{line_id}"));
            st.connected_to = Some(line_id.clone());
            st.outcome = Some(format!("connected:{line_id}"));
            let shutdown = media.shutdown().clone();
            if let Err(g) = self.recording_policy(media, None, None, true, st).await {
                // Gone during the notice: the line that answered is hung
                // up, not handed back connected.
                release(lease.port(), HangupCause::Normal).await;
                return Err(g);
            }
            self.event("bridged", serde_json::json!({"line": line_id}))
                .await;
            let other = lease.port();
            let (port, rec) = media.split();
            let end = bridge(port, other, rec, &shutdown).await;
            release(lease.port(), release_cause(&end)).await;
            return Ok(Some(end));
        }
        st.path.push(format!("{label}!all_busy"));
        Ok(None)
    }
}

/// How ringing a borrowed line ended.
enum Rung {
    Answered,
    /// No answer, refused or failed; the line was released.
    NotAnswered,
    /// A call arrived on the trunk instead; it went back to its watcher.
    Glare,
}

/// How a caller's time in a queue ended.
enum QueueEnd {
    /// Connected to an agent; the bridge ended so.
    Bridged(BridgeEnd),
    /// Left without an agent (full, empty, waited too long, no ACD).
    Overflow,
    /// Asked to be called back and hung up.
    CalledBack,
}

/// How the other lines of a bridge are hung up when it ends: as a
/// shutdown if the daemon is stopping, else normally.
fn release_cause(end: &BridgeEnd) -> HangupCause {
    if *end == BridgeEnd::Shutdown {
        HangupCause::Shutdown
    } else {
        HangupCause::Normal
    }
}

/// Hangs up a borrowed line before it goes back to its watcher.
async fn release<L: Line, I, O>(port: &mut Port<L, I, O>, cause: HangupCause) {
    if let Err(e) = port.line.command(LineCommand::Hangup(cause)).await {
        tracing::warn!("releasing a connected line failed: {e}");
    }
}
