//! Outbound campaigns (`[campaign.NAME]`): a contact list dialled by the
//! box under the campaign's rules, each answered contact running an IVR
//! flow (agentless: a notification, a survey; progressive: the flow's
//! queue node connects them to the agent who was free when they were
//! dialled).
//!
//! One task per campaign keeps its contacts in memory, in step with the
//! store (`campaign_contacts`), and dials the next due one while it has
//! lines (`max_lines`, a free trunk) and, progressive, a free agent:
//!
//! - a number on a do-not-call list (site-wide or the campaign's) is never
//!   dialled: it is checked at dial time, so a list changed mid-campaign
//!   holds;
//! - a contact is called only inside the campaign's window, in their own
//!   time zone (the list's `tz`, else by number prefix, else the
//!   window's), at most `max_per_day` times on one of their days and
//!   `max_attempts` in all, and not again before the wait the last
//!   outcome asks for (`retry`);
//! - an attempt counts from the moment it is dialled and is stored before
//!   the call starts, so a box killed mid-call that starts again waits the
//!   `failed` retry for that contact instead of calling them again at once.
//!
//! Every attempt has a call record (`job` = the campaign, the campaign
//! number presented as caller id) and ends in a `campaign_results` record
//! for headquarters with the contact's state and answers.

pub mod config;
pub mod dialer;
pub mod list;
mod live;
mod pacing;
pub mod pushed;

use std::sync::Arc;
use std::time::Duration;

use callbox_hal::Line;
use jiff::tz::TimeZone;
use tokio::task::JoinSet;

pub use config::{CampaignCfg, Campaigns, Mode};
pub use dialer::{Dialer, Wanted};
use live::Need;
pub use live::{Control, Live, LiveStats};
use pacing::{ANSWER_LEAD, Due, Pacer};

use super::outbound::{Attempt, PlacedFor, place, seize};
use super::{CallContext, Switch};
use crate::clock::new_id;
use crate::ivr::Ivr;
use crate::ivr::config::OutboundJob;
use crate::store::{ContactRow, ContactUpdate, StoreMsg};

/// Wait before looking again when no trunk (or, progressive, no agent) is
/// free.
const IDLE_LOOK: Duration = Duration::from_secs(2);
/// Wait before dialling again after a call arrived on the seized trunk.
const GLARE_WAIT: Duration = Duration::from_secs(30);
/// Wait before a contact an agent let go in preview is offered again.
const PREVIEW_SKIP_WAIT: Duration = Duration::from_secs(600);
/// How long an agent who let a preview go (or could not be rung) is not
/// offered another.
const AGENT_REST: Duration = Duration::from_secs(60);

/// How a contact is reached: a trunk seized for the dialler, or an agent
/// who previews them.
enum Via<L> {
    Trunk(crate::media::lines::Lease<L>),
    Agent(String),
}

/// A call task's end: its contact and attempt; a task that panicked is
/// a failed attempt of its contact (logged), so the contact is not left
/// in progress.
fn finished(
    done: Result<(tokio::task::Id, (usize, Attempt)), tokio::task::JoinError>,
    tasks: &mut std::collections::HashMap<tokio::task::Id, (usize, Option<String>)>,
) -> Option<(usize, Attempt)> {
    match done {
        Ok((id, r)) => {
            tasks.remove(&id);
            Some(r)
        }
        Err(e) => {
            let (i, agent) = tasks.remove(&e.id())?;
            tracing::error!("a campaign call failed: {e}");
            Some((
                i,
                Attempt {
                    call_id: None,
                    result: "failed".into(),
                    done: false,
                    answers: None,
                    agent,
                    amd: None,
                },
            ))
        }
    }
}

/// A preview's end as a campaign attempt.
fn previewed(r: crate::calls::station::Preview, agent: String) -> Attempt {
    use crate::calls::station::Preview;
    let (call_id, result) = match r {
        Preview::AgentAway => (None, "agent_away".to_string()),
        Preview::Skipped => (None, "skipped".to_string()),
        Preview::Dialled { call_id, result } => (Some(call_id), result),
    };
    let answered = result == "answered";
    Attempt {
        call_id,
        done: answered,
        answers: answered.then(std::collections::BTreeMap::new),
        agent: Some(agent),
        amd: None,
        result,
    }
}

/// How a campaign's runner ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Every contact is done, exhausted or barred (or the list could not
    /// be read).
    Finished,
    /// Stopped by hand (`campaign` command).
    Stopped,
    /// Removed, changed or the daemon stops.
    Cancelled,
}

/// A contact as the dialer holds it.
struct Contact {
    row: ContactRow,
    tz: TimeZone,
}

impl Contact {
    fn number(&self) -> &str {
        &self.row.contact.number
    }

    fn is_final(&self) -> bool {
        matches!(
            self.row.state.as_str(),
            "done" | "exhausted" | "dnc" | "failed" | "removed"
        )
    }
}

struct Runner<L> {
    c: Arc<CampaignCfg>,
    ivr: Arc<Ivr>,
    ctx: CallContext,
    sw: Switch<L>,
    live: Live,
    pacer: std::sync::Mutex<Pacer>,
    /// Ends the dialling (the daemon stops, or the campaign was removed
    /// or changed); calls in progress end normally first.
    stop: tokio_util::sync::CancellationToken,
}

impl<L: Line> Runner<L> {
    async fn run(self) -> End {
        let Some(mut contacts) = self.load().await else {
            return End::Finished;
        };
        let now = self.now();
        for ct in contacts.iter_mut().filter(|c| c.row.state == "in_progress") {
            // Dialled when the box stopped: the attempt counts, and the
            // contact waits as after a failure.
            ct.row.state = "pending".into();
            ct.row.last_outcome = Some("interrupted".into());
            let from = ct.row.last_attempt_ms.unwrap_or(now);
            ct.row.next_at_ms = from + self.c.retry.failed.as_millis() as i64;
            let exhausted = ct.row.attempts >= self.c.max_attempts;
            if exhausted {
                ct.row.state = "exhausted".into();
            }
            self.save(ct, None, None, true).await;
        }
        let pending = contacts.iter().filter(|c| !c.is_final()).count();
        tracing::info!(contacts = contacts.len(), pending, "campaign starts");
        let mut due = Due::new(&contacts);
        let mut open = pending;
        self.live
            .update(&self.c.name, |l| l.remaining = open as u64);
        let mut running: JoinSet<(usize, Attempt)> = JoinSet::new();
        // Each call task's contact and agent, for a task that panics.
        let mut tasks: std::collections::HashMap<tokio::task::Id, (usize, Option<String>)> =
            Default::default();
        // Preview: agents offered a contact now, and those resting after
        // one they did not take (until when).
        let mut offered = std::collections::HashSet::new();
        let mut resting: std::collections::HashMap<String, i64> = Default::default();
        let mut controls = self.live.changed();
        loop {
            let control = self.live.control(&self.c.name);
            if control == Control::Stopped && running.is_empty() {
                tracing::info!("campaign stopped by hand");
                return End::Stopped;
            }
            let mut blocked = control != Control::Running;
            // What due contacts wait for, when it is a trunk or an agent.
            let mut need = None;
            // The contacts to dial now, each with its trunk: all their
            // attempts go to the store in one commit before any is dialled.
            let mut batch = Vec::new();
            while !blocked && running.len() + batch.len() < self.c.max_lines {
                if self.stop.is_cancelled() {
                    break;
                }
                if self.live.outranked(&self.c) {
                    blocked = true;
                    break;
                }
                // Preview: a free agent not yet offered a contact; the
                // other modes pace by their rule.
                let agent = match &self.c.mode {
                    Mode::Preview { queue, .. } => {
                        match self.free_agent(queue, &offered, &resting).await {
                            Some(a) => Some(a),
                            None => {
                                blocked = true;
                                need = Some(Need::Agent);
                                break;
                            }
                        }
                    }
                    _ if !self.may_dial_more(running.len() + batch.len()).await => {
                        blocked = true;
                        need = Some(Need::Agent);
                        break;
                    }
                    _ => None,
                };
                let now = self.now();
                let Some(i) = due.pop_due(&contacts, now) else {
                    break;
                };
                if !self.may_dial(&mut contacts[i], now).await {
                    due.requeue(&contacts, i, &mut open);
                    self.live
                        .update(&self.c.name, |l| l.remaining = open as u64);
                    continue;
                }
                let via = match agent {
                    Some(a) => {
                        offered.insert(a.clone());
                        Via::Agent(a)
                    }
                    None => match self.seize_trunk().await {
                        Some(lease) => Via::Trunk(lease),
                        None => {
                            // Still due: dialled once a trunk is free.
                            due.requeue(&contacts, i, &mut open);
                            blocked = true;
                            need = Some(Need::Trunk);
                            break;
                        }
                    },
                };
                let ct = &mut contacts[i];
                ct.row.state = "in_progress".into();
                ct.row.attempts += 1;
                ct.row.attempts_day += 1;
                ct.row.last_attempt_ms = Some(now);
                self.save(ct, None, None, false).await;
                batch.push((i, via));
            }
            if !batch.is_empty() {
                // The attempts are in the store before the numbers are
                // dialled.
                let store = self.ctx.store.clone();
                let _ = holding_time(async move { store.flush().await }).await;
            }
            for (i, via) in batch {
                let ct = &contacts[i];
                let job = self.job(ct);
                let (ivr, ctx, sw, c) = (
                    Arc::clone(&self.ivr),
                    self.ctx.clone(),
                    self.sw.clone(),
                    Arc::clone(&self.c),
                );
                match via {
                    Via::Trunk(lease) => {
                        let id = new_id(&self.ctx.clock);
                        tracing::info!(number = %job.number, attempt = ct.row.attempts, "dialling");
                        let h = running.spawn(async move {
                            let by = PlacedFor {
                                job: Some(&c.name),
                                amd: c.amd.as_ref(),
                            };
                            (i, place(lease, id, &job, by, &ivr, &ctx, &sw).await)
                        });
                        tasks.insert(h.id(), (i, None));
                    }
                    Via::Agent(agent) => {
                        tracing::info!(number = %job.number, %agent, attempt = ct.row.attempts, "offering the contact to an agent");
                        let p = self.preview_of(ct, agent.clone());
                        let h = running.spawn(async move {
                            let agent = p.agent.clone();
                            let r = crate::calls::station::preview(p, &ctx, &sw).await;
                            (i, previewed(r, agent))
                        });
                        tasks.insert(h.id(), (i, Some(agent)));
                    }
                }
                self.live.update(&self.c.name, |l| {
                    l.dialled += 1;
                    l.in_progress = running.len() as u64;
                });
            }
            let now = self.now();
            let due_now = due.next_at(&contacts).is_some_and(|at| at <= now);
            self.live.want(
                &self.c,
                need.filter(|_| control == Control::Running && due_now),
            );
            if running.is_empty() && open == 0 {
                tracing::info!("campaign finished: every contact is done, exhausted or barred");
                return End::Finished;
            }
            if running.is_empty() && self.stop.is_cancelled() {
                return End::Cancelled;
            }
            let now = self.now();
            let next = due.next_at(&contacts);
            let full = running.len() >= self.c.max_lines;
            let wait = match (blocked, next) {
                // Every line busy, or held by hand: a call ending or a
                // new control wakes the loop.
                _ if full || control != Control::Running => Duration::from_secs(3600),
                (true, _) => IDLE_LOOK,
                (false, Some(at)) => Duration::from_millis((at - now).max(0) as u64),
                (false, None) => Duration::from_secs(3600),
            };
            tokio::select! {
                () = self.stop.cancelled(), if !running.is_empty() || !self.stop.is_cancelled() => {
                    if running.is_empty() {
                        return End::Cancelled;
                    }
                    // Let the calls in progress end and be recorded.
                    while let Some(done) = running.join_next_with_id().await {
                        if let Some((i, a)) = finished(done, &mut tasks) {
                            self.ended(&mut contacts[i], a).await;
                        }
                    }
                    return End::Cancelled;
                }
                Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                    if let Some((i, a)) = finished(done, &mut tasks) {
                        if let Some(agent) = &a.agent {
                            offered.remove(agent);
                            if matches!(a.result.as_str(), "skipped" | "agent_away") {
                                // Not offered another at once: a phone in use or
                                // nobody at the desk would take every turn.
                                resting.insert(agent.clone(), self.now() + AGENT_REST.as_millis() as i64);
                            }
                        }
                        let answered = a.answers.is_some();
                        self.ended(&mut contacts[i], a).await;
                        due.requeue(&contacts, i, &mut open);
                        self.live.update(&self.c.name, |l| {
                            l.answered += u64::from(answered);
                            l.in_progress = running.len() as u64;
                            l.remaining = open as u64;
                        });
                    }
                }
                Ok(()) = controls.changed() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn now(&self) -> i64 {
        self.ctx.clock.now().wall_ms
    }

    /// Reads the list into the store and the store's view back.
    async fn load(&self) -> Option<Vec<Contact>> {
        let path = self.c.list.clone();
        let loaded = match tokio::task::spawn_blocking(move || list::read(&path)).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                tracing::error!("contact list not read, campaign not run: {e}");
                return None;
            }
            Err(e) => {
                tracing::error!("contact list not read: {e}");
                return None;
            }
        };
        for (line, why) in &loaded.rejected {
            tracing::warn!(list = %self.c.list.display(), line, "contact left out: {why}");
        }
        if loaded.merged > 0 {
            tracing::info!(merged = loaded.merged, "numbers listed twice were merged");
        }
        self.ctx
            .store
            .send(StoreMsg::CampaignContacts {
                campaign: self.c.name.clone(),
                contacts: loaded.contacts,
                at: self.ctx.clock.now(),
            })
            .await;
        let store = self.ctx.store.clone();
        if let Err(e) = holding_time(async move { store.flush().await }).await {
            tracing::error!("campaign list not stored, campaign not run: {e}");
            return None;
        }
        let data = Arc::clone(&self.ctx.data_dir);
        let name = self.c.name.clone();
        let rows = tokio::task::spawn_blocking(move || {
            crate::store::ReadOnly::open(&data).and_then(|db| db.campaign_contacts(&name))
        })
        .await;
        match rows {
            Ok(Ok(rows)) => Some(
                rows.into_iter()
                    .map(|row| Contact {
                        tz: self
                            .c
                            .zone_of(&row.contact.number, row.contact.tz.as_deref()),
                        row,
                    })
                    .collect(),
            ),
            Ok(Err(e)) => {
                tracing::error!("campaign progress not read, campaign not run: {e}");
                None
            }
            Err(e) => {
                tracing::error!("campaign progress not read: {e}");
                None
            }
        }
    }

    /// Whether one more contact may be dialled with `running` calls in
    /// progress: always when agentless; progressive, while the queue's
    /// free agents outnumber the calls not yet with an agent; predictive,
    /// while those calls are fewer than the free agents times the
    /// pacer's ratio.
    async fn may_dial_more(&self, running: usize) -> bool {
        let Some(queue) = self.c.mode.queue() else {
            return true;
        };
        let (free, busy, soon, waiting) = self.agents(queue).await;
        // Calls dialled and not yet with an agent. Members ringing or on a
        // call count as serving the campaign's calls: on a queue that also
        // takes inbound calls this errs towards dialling less.
        let unconnected = running.saturating_sub(busy);
        // Callers waiting in the queue beyond the campaign's own calls not
        // yet with an agent are inbound: the free agents are theirs first.
        let free = if self.inbound_first() {
            free.saturating_sub(waiting.saturating_sub(unconnected))
        } else {
            free
        };
        match &self.c.mode {
            Mode::Predictive {
                abandon_cap,
                max_ratio,
                ..
            } => {
                // Agents on a call longer than the average talk time less
                // the time a call takes to be answered will be free by
                // the time the next contact answers.
                let pacer = self.pacer();
                let ratio = pacer.ratio(*abandon_cap, *max_ratio);
                let soon = if ratio > 1.0 { soon } else { 0 };
                let expected = free + soon;
                // A call beyond the free agents may find none: each such
                // call in flight is counted as abandoned in advance, so
                // the day's share stays under the cap whatever they do.
                let ahead = (unconnected + 1).saturating_sub(free);
                expected > 0
                    && (unconnected as f64) < expected as f64 * ratio
                    && (ahead == 0 || pacer.affords(ahead as u64, *abandon_cap))
            }
            _ => free > unconnected,
        }
    }

    /// The queue's members that are free, those ringing or on a call,
    /// of those on a call the ones whose call has lasted longer than the
    /// members' average talk time less [`ANSWER_LEAD`] (about to be free
    /// when a contact dialled now answers), and the callers waiting.
    async fn agents(&self, queue: &str) -> (usize, usize, usize, usize) {
        let (ours, waiting) = self.members(queue).await;
        let of = |state: &[&str]| {
            ours.iter()
                .filter(|a| state.contains(&a.state.as_str()))
                .count()
        };
        let (calls, talk) = ours.iter().fold((0u64, 0u64), |(c, t), a| {
            (c + u64::from(a.calls), t + a.talk_ms)
        });
        let soon = talk.checked_div(calls).map_or(0, |avg| {
            let lead = avg.saturating_sub(ANSWER_LEAD.as_millis() as u64);
            ours.iter()
                .filter(|a| a.state == "on_call" && a.in_state_ms >= lead)
                .count()
        });
        (
            of(&["available"]),
            of(&["ringing", "on_call"]),
            soon,
            waiting,
        )
    }

    /// The figures of the members of `queue`, and the callers waiting in
    /// it now.
    async fn members(&self, queue: &str) -> (Vec<crate::acd::AgentStats>, usize) {
        let Some(acd) = &self.sw.acd else {
            return (Vec::new(), 0);
        };
        let cfg = acd.config();
        let Some(q) = cfg.queues.iter().find(|q| q.name == queue) else {
            return (Vec::new(), 0);
        };
        let members: Vec<&str> = q
            .members
            .iter()
            .map(|(a, _)| cfg.agents[*a].id.as_str())
            .collect();
        let Some(stats) = acd.stats().await else {
            return (Vec::new(), 0);
        };
        let waiting = stats
            .queues
            .iter()
            .find(|s| s.queue == queue)
            .map_or(0, |s| s.waiting);
        let agents: Vec<_> = stats
            .agents
            .into_iter()
            .filter(|a| members.contains(&a.agent.as_str()))
            .collect();
        let busy = agents
            .iter()
            .filter(|a| matches!(a.state.as_str(), "ringing" | "on_call"))
            .count();
        self.live
            .update(&self.c.name, |l| l.agents_busy = busy as u64);
        (agents, waiting)
    }

    /// Whether callers waiting in a queue get its free agents before the
    /// campaign (`[campaigns] inbound_first`).
    fn inbound_first(&self) -> bool {
        self.ctx.live.current().campaigns.inbound_first
    }

    /// A member of `queue` free now and not already offered a contact
    /// (preview), the longest free first.
    async fn free_agent(
        &self,
        queue: &str,
        offered: &std::collections::HashSet<String>,
        resting: &std::collections::HashMap<String, i64>,
    ) -> Option<String> {
        let (agents, waiting) = self.members(queue).await;
        let now = self.now();
        let mut free: Vec<_> = agents
            .into_iter()
            .filter(|a| {
                a.state == "available"
                    && !offered.contains(&a.agent)
                    && resting.get(&a.agent).is_none_or(|until| *until <= now)
            })
            .collect();
        free.sort_by_key(|a| std::cmp::Reverse(a.in_state_ms));
        // Callers waiting in the queue take the free agents first.
        let skip = if self.inbound_first() { waiting } else { 0 };
        free.into_iter().nth(skip).map(|a| a.agent)
    }

    fn pacer(&self) -> std::sync::MutexGuard<'_, Pacer> {
        self.pacer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies the rules that hold a due contact back (do-not-call, the
    /// window in their zone, the daily cap); `true` when they may be
    /// dialled now.
    async fn may_dial(&self, ct: &mut Contact, now: i64) -> bool {
        // The lists as they stand now: headquarters may have changed them.
        let now_cfg = self.ctx.live.current();
        let own = now_cfg
            .campaigns
            .list
            .iter()
            .find(|c| c.name == self.c.name)
            .map_or(&self.c, |c| c);
        if now_cfg.campaigns.barred(own, ct.number()) {
            tracing::info!(number = %ct.number(), "on a do-not-call list: never dialled");
            ct.row.state = "dnc".into();
            ct.row.last_outcome = Some("dnc".into());
            self.save(ct, None, None, true).await;
            return false;
        }
        let local_day = jiff::Timestamp::from_millisecond(now)
            .map(|t| t.to_zoned(ct.tz.clone()).date().to_string())
            .unwrap_or_default();
        if ct.row.day.as_deref() != Some(local_day.as_str()) {
            ct.row.day = Some(local_day);
            ct.row.attempts_day = 0;
        }
        if !self.c.window.is_open_in(now, &ct.tz) {
            ct.row.next_at_ms = self.c.window.next_open_in(now, &ct.tz).unwrap_or(i64::MAX);
            tracing::debug!(number = %ct.number(), now, next = ct.row.next_at_ms, "outside the calling window");
            self.save(ct, None, None, false).await;
            return false;
        }
        if ct.row.attempts_day >= self.c.max_per_day {
            // Their next day's window.
            let tomorrow = jiff::Timestamp::from_millisecond(now)
                .ok()
                .and_then(|t| {
                    let z = t.to_zoned(ct.tz.clone());
                    z.date().tomorrow().ok()?.to_zoned(ct.tz.clone()).ok()
                })
                .map(|z| z.timestamp().as_millisecond());
            ct.row.next_at_ms = tomorrow
                .and_then(|t| self.c.window.next_open_in(t, &ct.tz))
                .unwrap_or(i64::MAX);
            self.save(ct, None, None, false).await;
            return false;
        }
        true
    }

    /// The call to place for a contact: the campaign's flow with the list's
    /// variables (and `name`, `number`).
    fn job(&self, ct: &Contact) -> OutboundJob {
        let c = &ct.row.contact;
        let mut vars: Vec<(String, String)> = c.vars().into_iter().collect();
        vars.push(("number".into(), c.number.clone()));
        if let Some(n) = &c.name {
            vars.push(("name".into(), n.clone()));
        }
        OutboundJob {
            name: self.c.name.clone(),
            number: c.number.clone(),
            trunks: self.c.trunks.clone(),
            start: self.c.start,
            after: Duration::ZERO,
            language: self.c.language,
            vars,
            ring_timeout: self.c.ring_timeout,
            retry_every: Duration::ZERO,
            max_attempts: 1,
            success: self.c.success.clone(),
            caller_id: Some(self.c.number.clone()),
        }
    }

    /// A free trunk of the campaign's, leaving `[campaigns]
    /// reserve_trunks` of them idle for callers.
    async fn seize_trunk(&self) -> Option<crate::media::lines::Lease<L>> {
        let reserve = self.ctx.live.current().campaigns.reserve_trunks;
        if reserve == 0 {
            return seize(&self.c.trunks, &self.sw).await;
        }
        // Holds the idle trunks found until there are more than the
        // reserve; the others go back as their leases drop.
        let mut idle = Vec::new();
        for t in &self.c.trunks {
            if let Some(l) = self.sw.lines.seize(t).await {
                idle.push(l);
                if idle.len() > reserve {
                    return Some(idle.swap_remove(0));
                }
            }
        }
        None
    }

    /// What an agent's phone shows for contact `ct` and how the call is
    /// placed, in preview.
    fn preview_of(&self, ct: &Contact, agent: String) -> crate::calls::station::PreviewCall {
        let c = &ct.row.contact;
        let ring = match &self.c.mode {
            Mode::Preview { ring, .. } => *ring,
            _ => Duration::from_secs(20),
        };
        crate::calls::station::PreviewCall {
            agent,
            number: c.number.clone(),
            shown: format!(
                "{} · {}",
                c.name.as_deref().unwrap_or(&c.number),
                self.c.name
            ),
            name: c.name.clone(),
            fields: c.vars(),
            campaign: self.c.name.clone(),
            trunks: self.c.trunks.clone(),
            caller_id: self.c.number.clone(),
            ring,
        }
    }

    /// An attempt ended: the contact is done, exhausted, or due again
    /// after the wait its outcome asks for.
    async fn ended(&self, ct: &mut Contact, a: Attempt) {
        let now = self.now();
        let outcome = match a.result.as_str() {
            "no_result" => "no_answer".to_string(),
            r => r.to_string(),
        };
        let not_dialled = match outcome.as_str() {
            // A caller took the trunk.
            "glare" => Some(GLARE_WAIT),
            // Preview: the agent let the contact go, or could not be rung.
            "skipped" => Some(PREVIEW_SKIP_WAIT),
            "agent_away" => Some(IDLE_LOOK),
            // Preview: no trunk of the campaign was free.
            "no_line" => Some(GLARE_WAIT),
            _ => None,
        };
        if let Some(wait) = not_dialled {
            // Not an attempt the contact saw.
            ct.row.attempts = ct.row.attempts.saturating_sub(1);
            ct.row.attempts_day = ct.row.attempts_day.saturating_sub(1);
            ct.row.state = "pending".into();
            ct.row.next_at_ms = now + wait.as_millis() as i64;
            self.save(ct, a.call_id, None, false).await;
            return;
        }
        let answered = a.answers.is_some();
        // A person answered: not a machine, nor one nobody was sure of
        // that the box hung up on.
        let person = answered && !matches!(outcome.as_str(), "machine" | "unsure");
        if a.amd == Some(crate::media::amd::Verdict::Machine) {
            self.live.update(&self.c.name, |l| l.machines += 1);
        }
        // Predictive: a person answered, and no agent was there for them.
        let abandoned =
            matches!(self.c.mode, Mode::Predictive { .. }) && person && a.agent.is_none();
        let outcome = if abandoned {
            "abandoned".to_string()
        } else {
            outcome
        };
        let day = jiff::Timestamp::from_millisecond(now)
            .map(|t| {
                t.to_zoned(self.c.window.timezone().clone())
                    .date()
                    .to_string()
            })
            .unwrap_or_default();
        self.pacer().ended(&day, person, abandoned);
        if abandoned {
            tracing::warn!(number = %ct.number(), "answered with no agent free: abandoned");
            self.live.update(&self.c.name, |l| l.abandoned += 1);
        }
        let done = a.done && !abandoned;
        ct.row.last_outcome = Some(outcome.clone());
        ct.row.state = if done {
            "done"
        } else if outcome == "not_in_service" {
            // The number reaches nothing: calling again would not help.
            "failed"
        } else if ct.row.attempts >= self.c.max_attempts {
            "exhausted"
        } else {
            ct.row.next_at_ms = now + self.c.retry.after(&outcome).as_millis() as i64;
            "pending"
        }
        .into();
        tracing::info!(number = %ct.number(), %outcome, state = %ct.row.state, attempts = ct.row.attempts, "attempt ends");
        let answers = a
            .answers
            .filter(|m| !m.is_empty())
            .map(|m| serde_json::json!(m));
        self.save(ct, a.call_id, answers, true).await;
    }

    async fn save(
        &self,
        ct: &Contact,
        call_id: Option<String>,
        answers: Option<serde_json::Value>,
        report: bool,
    ) {
        let r = &ct.row;
        let u = ContactUpdate {
            campaign: self.c.name.clone(),
            number: r.contact.number.clone(),
            state: r.state.clone(),
            attempts: r.attempts,
            day: r.day.clone(),
            attempts_day: r.attempts_day,
            next_at_ms: r.next_at_ms,
            last_attempt_ms: r.last_attempt_ms,
            last_outcome: r.last_outcome.clone(),
            last_call_id: call_id,
            answers,
            report,
        };
        self.ctx
            .store
            .send(StoreMsg::CampaignContact(u, self.ctx.clock.now()))
            .await;
    }
}

/// Awaits `f`, work done off the runtime (the store's thread), on a
/// blocking thread: a paused clock (`--fast`) does not advance while a
/// blocking task runs, whereas a runtime waiting on another thread with
/// nothing to do would leap to its next timer, an hour away for a
/// campaign. `f` needs neither this runtime's timers nor its I/O. Real
/// time is unaffected. (A `spawn_blocking` task holds the clock by
/// itself.)
async fn holding_time<F>(f: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = tokio::runtime::Handle::current();
    match tokio::task::spawn_blocking(move || rt.block_on(f)).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
