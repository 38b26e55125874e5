//! The admin's pages of the API: console users and the audit log.
//!
//! An admin adds supervisors and agents (an agent's name must be one of
//! the site's agents, their password a PIN), changes their passwords and
//! removes them; every change ends the user's open sessions and is
//! audited. The last admin cannot be removed or demoted: the box would be
//! left without anyone able to manage it but `reset-admin` on the box.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::api::{ApiError, ApiResult, Authed, St, audit};
use super::auth::{Role, password_rule, user_row};
use crate::store::{ReadOnly, StoreMsg};

/// Most audit entries one page shows.
const AUDIT_MAX: u32 = 500;

/// `GET /api/users` (admin).
pub(super) async fn list(State(c): St, a: Authed) -> ApiResult {
    a.need(Role::Admin)?;
    let users = c.read(|d| ReadOnly::open(d)?.console_users()).await?;
    Ok(Json(json!({"users": users})))
}

#[derive(Deserialize)]
pub(super) struct PutUser {
    name: String,
    role: String,
    password: String,
}

/// Whether `name` may be a login name.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// `POST /api/users` (admin): adds a user or replaces one's role and
/// password.
pub(super) async fn put(State(c): St, a: Authed, Json(u): Json<PutUser>) -> ApiResult {
    a.need(Role::Admin)?;
    if !valid_name(&u.name) {
        return Err(ApiError::bad(
            "a user name is 1 to 64 letters, digits, `.`, `_` or `-`",
        ));
    }
    let Some(role) = Role::parse(&u.role) else {
        return Err(ApiError::bad("the role is admin, supervisor or agent"));
    };
    password_rule(role, &u.password).map_err(ApiError::bad)?;
    if role == Role::Agent {
        let known = match &c.deps.acd {
            Some(f) => f()
                .await
                .is_some_and(|s| s.agents.iter().any(|x| x.agent == u.name)),
            None => false,
        };
        if !known {
            return Err(ApiError::bad(format!(
                "`{}` is not one of this site's agents ([[acd.agent]] id)",
                u.name
            )));
        }
    }
    let existing = {
        let name = u.name.clone();
        c.read(move |d| {
            ReadOnly::open(d)?
                .console_users()
                .map(|all| (all.iter().find(|x| x.name == name).cloned(), all))
        })
        .await?
    };
    if let (Some(old), all) = &existing
        && old.role == "admin"
        && role != Role::Admin
        && all
            .iter()
            .filter(|x| x.role == "admin" && !x.disabled)
            .count()
            <= 1
    {
        return Err(ApiError::bad(
            "this is the only admin: add another before changing its role",
        ));
    }
    let now = c.deps.clock.now().wall_ms;
    let (name, pw) = (u.name.clone(), u.password);
    let row = c
        .hashing(move || user_row(&name, role, &pw, now))
        .await?
        .map_err(ApiError::internal)?;
    c.deps.store.send(StoreMsg::ConsoleUser(row)).await;
    c.deps.store.flush().await.map_err(ApiError::internal)?;
    c.auth.sessions().close_user(
        &u.name,
        Some(&a.token)
            .filter(|_| u.name == a.session.user)
            .map(String::as_str),
    );
    let action = if existing.0.is_some() {
        "user.change"
    } else {
        "user.add"
    };
    audit(
        &c,
        Some(&a.session.user),
        a.ip,
        action,
        json!({"name": u.name, "role": role}),
    )
    .await;
    Ok(Json(json!({"ok": true, "name": u.name, "role": role})))
}

/// `DELETE /api/users/{name}` (admin).
pub(super) async fn remove(State(c): St, a: Authed, Path(name): Path<String>) -> ApiResult {
    a.need(Role::Admin)?;
    let all = c.read(|d| ReadOnly::open(d)?.console_users()).await?;
    let Some(user) = all.iter().find(|x| x.name == name) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such user"));
    };
    if user.role == "admin" && all.iter().filter(|x| x.role == "admin").count() <= 1 {
        return Err(ApiError::bad(
            "this is the only admin: add another before removing it",
        ));
    }
    c.deps
        .store
        .send(StoreMsg::ConsoleUserRemoved { name: name.clone() })
        .await;
    c.deps.store.flush().await.map_err(ApiError::internal)?;
    c.auth.sessions().close_user(&name, None);
    audit(
        &c,
        Some(&a.session.user),
        a.ip,
        "user.remove",
        json!({"name": name}),
    )
    .await;
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
pub(super) struct AuditQuery {
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/audit?limit=N` (admin): the newest entries first.
pub(super) async fn audit_log(State(c): St, a: Authed, Query(q): Query<AuditQuery>) -> ApiResult {
    a.need(Role::Admin)?;
    let limit = q.limit.unwrap_or(100).min(AUDIT_MAX);
    let rows = c.read(move |d| ReadOnly::open(d)?.audit(limit)).await?;
    Ok(Json(json!({"entries": rows})))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_plain() {
        assert!(super::valid_name("1001"));
        assert!(super::valid_name("sup.li"));
        assert!(!super::valid_name("../etc"));
        assert!(!super::valid_name(""));
        assert!(!super::valid_name("a b"));
    }
}
