//! A box page's commands, sent to the box over headquarters' broker as
//! `callbox-hq cmd` sends them (docs/mqtt.md, "Commands"), each answered
//! with the box's own answer and audited:
//!
//! - the box's config file: read (`config.get`), checked (`config.set`
//!   with `check`: the box's validation answer, nothing written) and
//!   pushed as the next version (`config.set`); the page shows the diff
//!   against what was read before it is checked or pushed;
//! - agents logged in, out, paused, made available (`agent`), the
//!   day/night switch (`daynight`), and a restart (`restart`, admins only).
//!
//! Reading the config needs an operator (it holds the site's secrets);
//! without `--broker` the dashboard only reads its database and these
//! answer 503.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use callbox_web::http::{ApiError, ApiResult};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Role;
use super::api::{Authed, Dash, St};
use crate::cmd::{Answer, Target, command_payload};

/// How long a box has to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);
/// Largest config file pushed.
const MAX_CONFIG: usize = 512 * 1024;

/// Sends `cmd` with `args` to the box and returns its answer
/// (`{"ok", "result"|"error"}`).
async fn send(
    d: &Dash,
    site: &str,
    box_id: &str,
    cmd: &str,
    args: Value,
) -> Result<Value, ApiError> {
    let Some(broker) = &d.deps.broker else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the dashboard was started without --broker: it cannot reach the boxes",
        ));
    };
    let t = Target {
        site: site.to_string(),
        box_id: box_id.to_string(),
        id: None,
        timeout: ANSWER_WITHIN,
    };
    crate::cmd::check(&t).map_err(|e| ApiError::bad(e.to_string()))?;
    let answer = crate::cmd::request(broker, &t, command_payload(cmd, box_id, args))
        .await
        .map_err(ApiError::internal)?;
    match answer {
        Answer::Reply { value: Some(v), .. } => Ok(v),
        Answer::Reply { text, value: None } => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("the box answered something that is not JSON: {text:.200}"),
        )),
        Answer::Timeout => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "{site}/{box_id} did not answer within {} s",
                ANSWER_WITHIN.as_secs()
            ),
        )),
    }
}

/// `GET /api/boxes/{site}/{box}/config`: the box's running config.
pub async fn config_get(
    State(d): St,
    a: Authed,
    Path((site, box_id)): Path<(String, String)>,
) -> ApiResult {
    a.need(Role::Operator)?;
    Ok(Json(
        send(&d, &site, &box_id, "config.get", json!({})).await?,
    ))
}

#[derive(Deserialize)]
pub struct ConfigPush {
    toml: String,
    /// Only check it.
    #[serde(default)]
    check: bool,
    /// The version it replaces (the one read): pushed as the next.
    #[serde(default)]
    base_version: u64,
    /// Changes that need one restart the box.
    #[serde(default)]
    restart: bool,
    /// Lines added and removed, as the page showed them (for the audit
    /// log).
    #[serde(default)]
    diff: Option<(u64, u64)>,
}

/// `POST /api/boxes/{site}/{box}/config`: checks or pushes a config.
pub async fn config_set(
    State(d): St,
    a: Authed,
    Path((site, box_id)): Path<(String, String)>,
    body: Result<Json<ConfigPush>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    a.need(Role::Operator)?;
    let Json(p) = body.map_err(|e| ApiError::bad(format!("the config to push: {e}")))?;
    if p.toml.len() > MAX_CONFIG {
        return Err(ApiError::bad(format!(
            "a config file is at most {MAX_CONFIG} bytes"
        )));
    }
    let args = if p.check {
        json!({"toml": p.toml, "check": true})
    } else {
        json!({"toml": p.toml, "version": p.base_version + 1, "restart": p.restart})
    };
    let answer = send(&d, &site, &box_id, "config.set", args).await?;
    if !p.check {
        d.audit(
            Some(&a.session.user),
            a.ip,
            "config.set",
            json!({"site": site, "box": box_id, "version": p.base_version + 1,
                   "added": p.diff.map(|x| x.0), "removed": p.diff.map(|x| x.1),
                   "ok": answer["ok"], "error": answer["error"]}),
        )
        .await;
    }
    Ok(Json(answer))
}

#[derive(Deserialize)]
pub struct Command {
    cmd: String,
    #[serde(default)]
    args: Value,
}

/// `POST /api/boxes/{site}/{box}/command`: one of the page's commands.
pub async fn command(
    State(d): St,
    a: Authed,
    Path((site, box_id)): Path<(String, String)>,
    body: Result<Json<Command>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(c) = body.map_err(|e| ApiError::bad(format!("the command: {e}")))?;
    let need = match c.cmd.as_str() {
        "status" | "logs" => Role::Operator,
        "agent" | "daynight" | "acd.reset_stats" => Role::Operator,
        "restart" => Role::Admin,
        other => {
            return Err(ApiError::bad(format!(
                "`{other}` is not one of the page's commands (agent, daynight, acd.reset_stats, status, logs, restart)"
            )));
        }
    };
    a.need(need)?;
    let args = if c.args.is_null() { json!({}) } else { c.args };
    let answer = send(&d, &site, &box_id, &c.cmd, args.clone()).await?;
    if !matches!(c.cmd.as_str(), "status" | "logs") {
        d.audit(
            Some(&a.session.user),
            a.ip,
            &format!("box.{}", c.cmd),
            json!({"site": site, "box": box_id, "args": args, "ok": answer["ok"], "error": answer["error"]}),
        )
        .await;
    }
    Ok(Json(answer))
}
