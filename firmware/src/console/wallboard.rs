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

/// The slowest the wallboard is refreshed without events.
const EVERY: Duration = Duration::from_secs(1);
/// Longest wait for the ACD's figures.
const ACD_TIMEOUT: Duration = Duration::from_secs(2);

/// The figures `who` may see now.
async fn snapshot(c: &Console, who: &Authed) -> Value {
    let stats = match &c.deps.acd {
        Some(f) => tokio::time::timeout(ACD_TIMEOUT, f()).await.ok().flatten(),
        None => None,
    };
    let (queues, mut agents, mut calls) = match stats {
        Some(s) => (s.queues, s.agents, s.calls),
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    if who.session.role == Role::Agent {
        // Their own row, and no other caller's number.
        agents.retain(|a| a.agent == who.session.user);
        calls.clear();
    }
    json!({
        "at_ms": c.deps.clock.now().wall_ms,
        "acd": c.deps.acd.is_some(),
        "queues": queues,
        "agents": agents,
        "calls": calls,
    })
}

/// `GET /api/wallboard`.
pub(super) async fn now(State(c): St, a: Authed) -> Json<Value> {
    Json(snapshot(&c, &a).await)
}

/// `GET /api/wallboard/events`: an `event: wallboard` with the figures
/// after each change, and each second.
pub(super) async fn events(
    State(c): St,
    a: Authed,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = c.deps.events.subscribe();
    // The first snapshot goes at once; ticks start a second later, and a
    // tick missed while a snapshot was being sent is not made up.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures_util::stream::unfold(
        (c, a, rx, ticks, true),
        |(c, a, mut rx, mut ticks, first)| async move {
            if !first {
                tokio::select! {
                    () = c.stop.cancelled() => return None,
                    _ = ticks.tick() => {}
                    r = next_change(&mut rx) => r?,
                }
                // Whatever else came meanwhile is in this snapshot too.
                while rx.try_recv().is_ok() {}
            }
            let data = snapshot(&c, &a).await;
            let ev = Event::default().event("wallboard").data(data.to_string());
            Some((Ok(ev), (c, a, rx, ticks, false)))
        },
    );
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
