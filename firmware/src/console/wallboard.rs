//! The wallboard: every queue's figures and every agent's state, as JSON
//! and pushed to browsers (server-sent events) whenever an agent or a
//! queue event happens, and at least once a second so times in state
//! move, and every call in progress: in the queues (waiting, ringing an
//! agent, talking) as the ACD has them, and the others (in the IVR at a
//! node, placed by the box, a campaign contact offered to an agent) from
//! the box's board of calls. Agents see their own row, the queues'
//! figures and the contact offered to them; supervisors see all and act
//! on agents through the daemon's `agent` and `acd.monitor` commands.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::api::{ApiError, ApiResult, Authed, Console, St, audit};
use super::auth::Role;
use crate::acd::AcdStats;
use crate::inflight::InflightCall;

/// The slowest the wallboard is refreshed without events.
const EVERY: Duration = Duration::from_secs(1);
/// Longest wait for the ACD's figures.
const ACD_TIMEOUT: Duration = Duration::from_secs(2);

/// The figures at one moment, shared by every open wallboard.
#[derive(Debug, Default)]
pub(super) struct Board {
    at_ms: i64,
    acd: bool,
    stats: Option<AcdStats>,
    /// Calls outside the queues.
    inflight: Vec<InflightCall>,
}

impl Board {
    /// The ACD's figures now.
    async fn now(c: &Console) -> Board {
        let stats = match &c.deps.acd {
            Some(f) => tokio::time::timeout(ACD_TIMEOUT, f()).await.ok().flatten(),
            None => None,
        };
        Board {
            at_ms: c.deps.clock.now().wall_ms,
            acd: c.deps.acd.is_some(),
            stats,
            inflight: c.deps.inflight.now(),
        }
    }

    /// What `who` may see of it.
    fn view(&self, who: &Authed) -> Value {
        let agent = who.session.role == Role::Agent;
        let (queues, agents, queued, supervisors) = match &self.stats {
            Some(s) => (
                &s.queues[..],
                s.agents
                    .iter()
                    // An agent gets their own row, and no caller's number.
                    .filter(|a| !agent || a.agent == who.session.user)
                    .collect(),
                &s.calls[..],
                &s.supervisors[..],
            ),
            None => (&[][..], Vec::new(), &[][..], &[][..]),
        };
        if agent {
            let preview = self.inflight.iter().find(|c| {
                c.kind == "preview" && c.agent.as_deref() == Some(who.session.user.as_str())
            });
            return json!({
                "at_ms": self.at_ms,
                "acd": self.acd,
                "queues": queues,
                "agents": agents,
                "calls": [],
                "preview": preview,
            });
        }
        let mut calls: Vec<Value> = queued
            .iter()
            .map(|q| serde_json::to_value(q).unwrap_or_default())
            .collect();
        // A call the ACD has is shown as the ACD has it.
        calls.extend(
            self.inflight
                .iter()
                .filter(|c| !queued.iter().any(|q| q.call_id == c.call_id))
                .map(|c| other_call(c, self.at_ms)),
        );
        json!({
            "at_ms": self.at_ms,
            "acd": self.acd,
            "queues": queues,
            "agents": agents,
            "calls": calls,
            "supervisors": supervisors,
        })
    }
}

/// A call outside the queues as the wallboard lists it: `ivr` (at
/// `node`), `outbound` (placed by the box, ringing or in its flow) or
/// `preview` (offered to `agent`, or talking once taken).
fn other_call(c: &InflightCall, now_ms: i64) -> Value {
    let state = match (c.kind, c.answered_ms) {
        ("preview", None) => "offered",
        ("preview", Some(_)) => "talking",
        ("outbound", None) => "dialling",
        (_, None) => "arriving",
        (_, Some(_)) => "ivr",
    };
    json!({
        "call_id": c.call_id,
        "kind": c.kind,
        "caller": c.caller,
        "caller_name": c.caller_name,
        "dialled": c.dialled,
        "line": c.line,
        "node": c.node,
        "campaign": c.campaign,
        "state": state,
        "agent": c.agent,
        "in_call_ms": (now_ms - c.since_ms).max(0),
        "talk_ms": c.answered_ms.map(|a| (now_ms - a).max(0)),
    })
}

/// Keeps the shared board up to date while anyone watches it: after each
/// agent or queue event and each second, one question to the ACD for all
/// the open wallboards. Ends with the daemon.
pub(super) async fn feed(c: std::sync::Arc<Console>) {
    let mut rx = c.deps.events.subscribe();
    let mut ticks = tokio::time::interval(EVERY);
    // A tick missed while the ACD was asked is not made up.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = c.stop.cancelled() => return,
            _ = ticks.tick() => {}
            r = next_change(&mut rx) => if r.is_none() { return },
        }
        // Whatever else came meanwhile is in this board too.
        while rx.try_recv().is_ok() {}
        if c.board.receiver_count() > 0 {
            let now = Board::now(&c).await;
            c.board.send_replace(std::sync::Arc::new(now));
        }
    }
}

/// `GET /api/wallboard`.
pub(super) async fn now(State(c): St, a: Authed) -> Json<Value> {
    Json(Board::now(&c).await.view(&a))
}

/// `GET /api/wallboard/events`: an `event: wallboard` with the figures
/// at once, then after each change and each second.
pub(super) async fn events(
    State(c): St,
    a: Authed,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let board = c.board.subscribe();
    let stream =
        futures_util::stream::unfold((c, a, board, true), |(c, a, mut board, first)| async move {
            let data = if first {
                Board::now(&c).await.view(&a)
            } else {
                tokio::select! {
                    () = c.stop.cancelled() => return None,
                    r = board.changed() => r.ok()?,
                }
                board.borrow_and_update().view(&a)
            };
            let ev = Event::default().event("wallboard").data(data.to_string());
            Some((Ok(ev), (c, a, board, false)))
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The next agent or queue event; `None` once the channel is closed.
async fn next_change(
    rx: &mut tokio::sync::broadcast::Receiver<crate::events::Event>,
) -> Option<()> {
    loop {
        match rx.recv().await {
            Ok(e) if e.kind == "agent" || e.kind == "queue" => return Some(()),
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return Some(()),
            Err(RecvError::Closed) => return None,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct AgentAction {
    action: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    station: Option<String>,
}

/// `POST /api/acd/reset` (supervisor): the statistics back to zero.
pub(super) async fn reset(State(c): St, a: Authed) -> ApiResult {
    a.need(Role::Supervisor)?;
    let r = c
        .deps
        .commands
        .handle("acd.reset_stats", json!({}))
        .await
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    audit(
        &c,
        Some(&a.session.user),
        a.ip,
        "acd.reset_stats",
        json!({}),
    )
    .await;
    Ok(Json(r))
}

/// `POST /api/agents/{agent}`: `login`, `logout`, `pause` (with a
/// reason), `dnd` or `unpause`; an agent acts on themself, a supervisor
/// on anyone. A supervisor's `listen`, `whisper` or `barge` with
/// `station` (their own phone) rings that phone and joins the agent's
/// call once it is answered.
pub(super) async fn agent_action(
    State(c): St,
    a: Authed,
    Path(agent): Path<String>,
    Json(act): Json<AgentAction>,
) -> ApiResult {
    if a.session.role == Role::Agent && a.session.user != agent {
        return Err(ApiError::forbidden());
    }
    if matches!(act.action.as_str(), "listen" | "whisper" | "barge") {
        return monitor(&c, &a, agent, act).await;
    }
    if !matches!(
        act.action.as_str(),
        "login" | "logout" | "pause" | "unpause" | "dnd"
    ) {
        return Err(ApiError::bad(format!(
            "`{}` is not an agent action (login, logout, pause, unpause, dnd, listen, whisper, barge)",
            act.action.chars().take(40).collect::<String>()
        )));
    }
    let mut args = json!({"action": act.action, "agent": agent});
    if let Some(r) = &act.reason {
        args["reason"] = json!(r.chars().take(64).collect::<String>());
    }
    if let Some(s) = &act.station {
        args["station"] = json!(s);
    }
    let result = c
        .deps
        .commands
        .handle("agent", args.clone())
        .await
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    audit(&c, Some(&a.session.user), a.ip, "agent", args).await;
    Ok(Json(result))
}

/// A supervisor joins `agent`'s call from their phone at `act.station`.
async fn monitor(c: &Console, a: &Authed, agent: String, act: AgentAction) -> ApiResult {
    a.need(Role::Supervisor)?;
    let Some(station) = act.station.filter(|s| !s.is_empty()) else {
        return Err(ApiError::bad("choose the phone to join from (`station`)"));
    };
    let args = json!({"station": station, "agent": agent, "mode": act.action});
    let result = c
        .deps
        .commands
        .handle("acd.monitor", args.clone())
        .await
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    audit(c, Some(&a.session.user), a.ip, "acd.monitor", args).await;
    Ok(Json(result))
}
