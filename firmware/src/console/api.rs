//! The console's routes: the pages, the login and the JSON API they use
//! (docs/console.md; `/api/openapi.json` describes it).
//!
//! Every `/api` route but `login` needs a session; every change also needs
//! its CSRF token. Refusals are JSON `{"error": "…"}` with the status that
//! fits (401 no or expired session, 403 not allowed, 422 a bad value, 429
//! too many logins) and a log line naming the peer, the method and the
//! path.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ConsoleDeps;
use super::auth::{Auth, Checked, NoSession, Role, Session};
use super::server::Peer;
use crate::store::{AuditEntry, StoreMsg};
use callbox_web::http::in_turn;
use callbox_web::session;

pub(super) use callbox_web::http::{ApiError, ApiResult};

/// The session cookie's name.
pub(super) const COOKIE: &str = "callbox_session";
/// Largest request body the API takes.
const MAX_BODY: usize = 256 * 1024;

/// Database reads and file work at once: each is a thread, and a read an
/// SQLite connection with its own page cache.
const DB_AT_ONCE: usize = 4;
/// Password hashes at once: argon2id takes 19 MiB each, by design.
const HASH_AT_ONCE: usize = 2;

/// What every handler shares.
pub(super) struct Console {
    pub(super) deps: ConsoleDeps,
    pub(super) auth: Auth,
    db: tokio::sync::Semaphore,
    hash: tokio::sync::Semaphore,
    /// The daemon's stop: open event streams end with it.
    pub(super) stop: tokio_util::sync::CancellationToken,
    /// The wallboard's latest figures, for every open event stream.
    pub(super) board: tokio::sync::watch::Sender<Arc<super::wallboard::Board>>,
}

pub(super) type St = State<Arc<Console>>;

impl Console {
    /// Runs `f` on a blocking thread, a few at once: fifty browsers asking
    /// for records at the same moment wait their turn instead of costing
    /// fifty threads and page caches.
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        in_turn(&self.db, f).await
    }

    /// [`Console::blocking`] for argon2id work (logins, new passwords).
    pub(super) async fn hashing<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        in_turn(&self.hash, f).await
    }

    /// A read of the box's database (a [`Console::blocking`] one), its
    /// error the answer's.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&std::path::Path) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let dir = self.deps.data_dir.clone();
        self.blocking(move || f(&dir))
            .await?
            .map_err(ApiError::internal)
    }
}

/// A request from a logged-in user (and, for a change, with its CSRF
/// token).
#[derive(Debug)]
pub(super) struct Authed {
    pub(super) session: Session,
    pub(super) token: String,
    pub(super) ip: IpAddr,
}

impl Authed {
    /// Refuses unless the user's role is at least `role`.
    pub(super) fn need(&self, role: Role) -> Result<(), ApiError> {
        if self.session.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }
}

impl FromRequestParts<Arc<Console>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<Peer>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.0.ip());
        let Some(token) = session::cookie(&parts.headers, COOKIE).map(str::to_string) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                NoSession::Missing.message(),
            ));
        };
        let session = state
            .auth
            .sessions()
            .session(&token)
            .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.message()))?;
        if !session::csrf_ok(&parts.method, &parts.headers, &session.csrf) {
            return Err(ApiError::new(StatusCode::FORBIDDEN, session::CSRF_MISSING));
        }
        if session.must_change
            && !matches!(
                parts.uri.path(),
                "/api/me" | "/api/password" | "/api/logout"
            )
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "set your own password first",
            ));
        }
        Ok(Authed { session, token, ip })
    }
}

/// Writes an audit entry (kept, and sent to headquarters).
pub(super) async fn audit(
    c: &Console,
    user: Option<&str>,
    ip: IpAddr,
    action: &str,
    detail: Value,
) {
    c.deps
        .store
        .send(StoreMsg::Audit(AuditEntry {
            at: c.deps.clock.now(),
            user: user.map(str::to_string),
            ip: Some(ip.to_string()),
            action: action.to_string(),
            detail,
        }))
        .await;
}

/// The routes, with the state they share.
pub(super) fn router(deps: ConsoleDeps, stop: tokio_util::sync::CancellationToken) -> Router {
    let auth = Auth::new(&deps.config, &deps.data_dir);
    let state = Arc::new(Console {
        deps,
        auth,
        db: tokio::sync::Semaphore::new(DB_AT_ONCE),
        hash: tokio::sync::Semaphore::new(HASH_AT_ONCE),
        stop,
        board: tokio::sync::watch::Sender::new(Arc::default()),
    });
    tokio::spawn(super::wallboard::feed(state.clone()));
    Router::new()
        .route("/", get(super::assets::index))
        .route("/app.js", get(super::assets::script))
        .route("/app.css", get(super::assets::style))
        .route("/api/openapi.json", get(super::assets::openapi))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/password", post(password))
        .route("/api/wallboard", get(super::wallboard::now))
        .route("/api/wallboard/events", get(super::wallboard::events))
        .route("/api/agents/{agent}", post(super::wallboard::agent_action))
        .route("/api/acd/reset", post(super::wallboard::reset))
        .route("/api/calls/{id}/pop", get(super::calls::pop))
        .route("/api/calls/{id}/wrap", post(super::calls::wrap))
        .route("/api/originate", post(super::calls::originate))
        .route("/api/records", get(super::records::list))
        .route("/api/records.csv", get(super::records::csv))
        .route("/api/recordings/{id}", get(super::records::recording))
        .route("/api/reports", get(super::reports::get))
        .route("/api/reports.csv", get(super::reports::csv))
        .route(
            "/api/config",
            get(super::site_config::get).post(super::site_config::set),
        )
        .route("/api/config/history", get(super::site_config::history))
        .route(
            "/api/config/history/{version}",
            get(super::site_config::version),
        )
        .route("/api/prompts", get(super::prompts::list))
        .route(
            "/api/prompts/{name}",
            get(super::prompts::get).post(super::prompts::upload).layer(
                axum::extract::DefaultBodyLimit::max(super::prompts::MAX_UPLOAD),
            ),
        )
        .route(
            "/api/users",
            get(super::users::list).post(super::users::put),
        )
        .route(
            "/api/users/{name}",
            axum::routing::delete(super::users::remove),
        )
        .route("/api/audit", get(super::users::audit_log))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(
            "console",
            callbox_web::http::guard,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such page")
}

#[derive(Deserialize)]
struct Login {
    name: String,
    password: String,
}

fn me_json(c: &Console, s: &Session) -> Value {
    json!({
        "user": s.user,
        "role": s.role,
        "csrf": s.csrf,
        "must_change": s.must_change,
        "site": c.deps.site_name,
        "idle_timeout_s": c.deps.config.idle_timeout.as_secs(),
        "wrap_codes": super::calls::wrap_codes(c),
    })
}

async fn login(
    State(c): St,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let ip = peer.ip();
    let Ok(Json(form)) = body else {
        return ApiError::bad("send {\"name\": …, \"password\": …} as JSON").into_response();
    };
    if let Some(wait) = c.auth.blocked(ip) {
        audit(&c, Some(&form.name), ip, "login_blocked", json!({})).await;
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed logins from {ip}; try again in {wait} s"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let name: String = form.name.trim().chars().take(64).collect();
    let checked = {
        let (c2, name, pw) = (c.clone(), name.clone(), form.password);
        c.hashing(move || c2.auth.check(&name, &pw)).await
    };
    let checked = match checked {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return ApiError::internal(e).into_response(),
        Err(e) => return e.into_response(),
    };
    match checked {
        Checked::Wrong => {
            c.auth.failed(ip);
            audit(&c, Some(&name), ip, "login_failed", json!({})).await;
            ApiError::new(StatusCode::UNAUTHORIZED, "wrong name or password").into_response()
        }
        Checked::Ok(role, otp) => {
            let (token, s) = match c.auth.sessions().open(&name, role, otp) {
                Ok(v) => v,
                Err(e) => return ApiError::internal(e).into_response(),
            };
            audit(
                &c,
                Some(&name),
                ip,
                "login",
                json!({"role": role, "one_time": otp}),
            )
            .await;
            let mut r = Json(me_json(&c, &s)).into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                session::session_cookie(COOKIE, &token, c.deps.config.session_max.as_secs()),
            );
            r
        }
    }
}

async fn logout(State(c): St, a: Authed) -> Response {
    c.auth.sessions().close(&a.token);
    audit(&c, Some(&a.session.user), a.ip, "logout", json!({})).await;
    let mut r = Json(json!({"ok": true})).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session::session_cookie(COOKIE, "", 0));
    r
}

async fn me(State(c): St, a: Authed) -> Json<Value> {
    Json(me_json(&c, &a.session))
}

#[derive(Deserialize)]
struct NewPassword {
    #[serde(default)]
    old: Option<String>,
    new: String,
}

async fn password(State(c): St, a: Authed, Json(p): Json<NewPassword>) -> ApiResult {
    let s = &a.session;
    super::auth::password_rule(s.role, &p.new).map_err(ApiError::bad)?;
    if !s.must_change {
        // Someone at an unlocked screen must not take the account over.
        let old = p.old.unwrap_or_default();
        let (c2, user) = (c.clone(), s.user.clone());
        let ok = c
            .hashing(move || c2.auth.check(&user, &old))
            .await?
            .map_err(ApiError::internal)?;
        if !matches!(ok, Checked::Ok(..)) {
            audit(&c, Some(&s.user), a.ip, "password_failed", json!({})).await;
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the current password is wrong",
            ));
        }
    }
    let now = c.deps.clock.now().wall_ms;
    let (user, role, new) = (s.user.clone(), s.role, p.new);
    let row = c
        .hashing(move || super::auth::user_row(&user, role, &new, now))
        .await?
        .map_err(ApiError::internal)?;
    c.deps.store.send(StoreMsg::ConsoleUser(row)).await;
    c.deps.store.flush().await.map_err(ApiError::internal)?;
    if s.must_change {
        c.auth.otp_used();
        c.auth.sessions().changed(&a.token);
    }
    c.auth.sessions().close_user(&s.user, Some(&a.token));
    audit(
        &c,
        Some(&s.user),
        a.ip,
        "password",
        json!({"first": s.must_change}),
    )
    .await;
    Ok(Json(json!({"ok": true})))
}
