//! The site config in the browser (admins): read it, check an edit as
//! `callboxd check-config` does (each problem at its line and column),
//! apply it live through the daemon's `config.set` — the path
//! headquarters' config push takes, rolled back if a step fails — and the
//! versions applied before, to compare.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{ApiError, ApiResult, Authed, Console, St, audit};
use super::auth::Role;

/// `FILE:LINE:COL: message` lines of an answer, as `{line, col, message}`.
fn diagnostics(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| {
            // The file name may hold colons; line and column are the
            // first two numbers after it.
            let mut parts = l.splitn(4, ':');
            let _file = parts.next()?;
            let line: u64 = parts.next()?.trim().parse().ok()?;
            let col: u64 = parts.next()?.trim().parse().ok()?;
            let message = parts.next()?.trim().to_string();
            Some(json!({"line": line, "col": col, "message": message}))
        })
        .collect()
}

async fn ask(c: &Console, cmd: &str, args: Value) -> Result<Value, String> {
    c.deps.commands.handle(cmd, args).await
}

/// `GET /api/config`: `{"version","sha256","toml"}`.
pub(super) async fn get(State(c): St, a: Authed) -> ApiResult {
    a.need(Role::Admin)?;
    ask(&c, "config.get", json!({}))
        .await
        .map(Json)
        .map_err(ApiError::internal)
}

#[derive(Deserialize)]
pub(super) struct Edit {
    toml: String,
    /// Only check.
    #[serde(default)]
    check: bool,
    /// Apply even when the change needs a restart (the box restarts).
    #[serde(default)]
    restart: bool,
}

/// `POST /api/config` `{"toml","check"?,"restart"?}`: checks, or checks and
/// applies as the next version. A config that does not check answers 422
/// with `diagnostics` and changes nothing.
pub(super) async fn set(
    State(c): St,
    a: Authed,
    Json(e): Json<Edit>,
) -> Result<Response, ApiError> {
    a.need(Role::Admin)?;
    let answer = if e.check {
        ask(&c, "config.set", json!({"toml": e.toml, "check": true})).await
    } else {
        let running = ask(&c, "config.get", json!({}))
            .await
            .map_err(ApiError::internal)?;
        let version = running["version"].as_u64().unwrap_or(0) + 1;
        let r = ask(
            &c,
            "config.set",
            json!({"version": version, "toml": e.toml, "restart": e.restart}),
        )
        .await;
        let detail = match &r {
            Ok(v) => {
                json!({"version": version, "applied": v["applied"], "restarting": v["restarting"]})
            }
            Err(why) => {
                json!({"version": version, "refused": why.lines().next().unwrap_or_default()})
            }
        };
        audit(&c, Some(&a.session.user), a.ip, "config.set", detail).await;
        r
    };
    match answer {
        Ok(v) => Ok(Json(v).into_response()),
        Err(why) => {
            let diags = diagnostics(&why);
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"error": why, "diagnostics": diags})),
            )
                .into_response())
        }
    }
}

/// `GET /api/config/history`: the versions kept, newest first.
pub(super) async fn history(State(c): St, a: Authed) -> ApiResult {
    a.need(Role::Admin)?;
    ask(&c, "config.history", json!({}))
        .await
        .map(Json)
        .map_err(ApiError::internal)
}

/// `GET /api/config/history/{version}`: that version's text.
pub(super) async fn version(State(c): St, a: Authed, Path(v): Path<u64>) -> ApiResult {
    a.need(Role::Admin)?;
    ask(&c, "config.get", json!({"version": v}))
        .await
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn diagnostics_are_read_from_check_config_lines() {
        let d = super::diagnostics(
            "/etc/callbox/site.toml:12:7: unknown node `nope`\nsite.toml:3:1: missing key `id`\nnot a line",
        );
        assert_eq!(d.len(), 2);
        assert_eq!(d[0]["line"], 12);
        assert_eq!(d[0]["col"], 7);
        assert_eq!(d[0]["message"], "unknown node `nope`");
    }
}
