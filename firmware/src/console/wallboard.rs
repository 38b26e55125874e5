//! The wallboard: every queue's figures and every agent's state, as JSON
//! and pushed to browsers (server-sent events) whenever an agent or a
//! queue event happens, and at least once a second so times in state
//! move, and the calls in the queues (waiting, ringing an agent, talking).
//! Agents see their own row and the queues' figures; supervisors see all
//! and act on agents through the daemon's `agent` command.

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
        }
    }

    /// What `who` may see of it.
    fn view(&self, who: &Authed) -> Value {
        let agent = who.session.role == Role::Agent;
        let (queues, agents, calls) = match &self.stats {
            Some(s) => (
                &s.queues[..],
                s.agents
                    .iter()
                    // An agent gets their own row, and no caller's number.
                    .filter(|a| !agent || a.agent == who.session.user)
                    .collect(),
                if agent { &[][..] } else { &s.calls[..] },
            ),
            None => (&[][..], Vec::new(), &[][..]),
        };
        json!({
            "at_ms": self.at_ms,
            "acd": self.acd,
            "queues": queues,
            "agents": agents,
            "calls": calls,
        })
    }
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
/// reason) or `unpause`. An agent acts on themself; a supervisor on
/// anyone.
pub(super) async fn agent_action(
    State(c): St,
    a: Authed,
    Path(agent): Path<String>,
    Json(act): Json<AgentAction>,
) -> ApiResult {
    if a.session.role == Role::Agent && a.session.user != agent {
        return Err(ApiError::forbidden());
    }
    if !matches!(
        act.action.as_str(),
        "login" | "logout" | "pause" | "unpause"
    ) {
        return Err(ApiError::bad(format!(
            "`{}` is not an agent action (login, logout, pause, unpause)",
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
