//! The dashboard's routes: the page, the login and the JSON API it uses.
//!
//! Every `/api` route but `login` needs a session; every change also needs
//! its CSRF token. The user's role is read from the database on each
//! request, so a user removed or demoted with `callbox-hq user` loses it
//! at once. Refusals are JSON `{"error": …}`: 401 no or expired session,
//! 403 not allowed for the role, 404, 409 already done, 422 a bad value,
//! 429 too many logins.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use callbox_web::http::{ApiError, ApiResult};
use callbox_web::session::{self, LoginLimit, NoSession, Session, Sessions};
use callbox_web::tls::Peer;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Pool, Role};
use crate::params;
use crate::sql::Cell;

/// The session cookie's name.
const COOKIE: &str = "callbox_hq_session";
/// Largest request body.
const MAX_BODY: usize = 64 * 1024;
/// Password hashes at once: argon2id takes 19 MiB each, by design.
const HASH_AT_ONCE: usize = 2;
/// Most rows a list answers with.
const MAX_ROWS: i64 = 1000;

/// What the routes need.
#[derive(Debug)]
pub struct Deps {
    pub pool: Arc<Pool>,
    pub sessions: Sessions<Role>,
    pub limit: LoginLimit,
    pub metrics_token: Option<String>,
    pub tz: jiff::tz::TimeZone,
    /// Headquarters' broker, for the box pages' commands.
    pub broker: Option<crate::mqtt::Broker>,
    /// The collectors' recordings folder (relative paths).
    pub recordings: Option<std::path::PathBuf>,
    /// Headquarters' identity, to open sealed recordings.
    pub identity: Option<std::path::PathBuf>,
}

/// What every handler shares.
#[derive(Debug)]
pub struct Dash {
    pub deps: Deps,
    hash: tokio::sync::Semaphore,
}

pub type St = State<Arc<Dash>>;

impl Dash {
    /// A read or write of the database.
    pub async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut crate::db::Db) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.deps.pool.with(f).await
    }

    /// Writes an audit entry; a failure is logged, the answer stands.
    pub async fn audit(&self, who: Option<&str>, ip: IpAddr, action: &str, detail: Value) {
        let (who, action) = (who.map(str::to_string), action.to_string());
        let r = self
            .db(move |db| super::audit(db, who.as_deref(), Some(&ip.to_string()), &action, &detail))
            .await;
        if let Err(e) = r {
            eprintln!("callbox-hq: serve: the audit log: {}", e.message);
        }
    }
}

/// A request from a logged-in user (and, for a change, with its CSRF
/// token).
#[derive(Debug)]
pub struct Authed {
    pub session: Session<Role>,
    pub token: String,
    pub ip: IpAddr,
}

impl Authed {
    /// Refuses unless the user's role is at least `role`.
    pub fn need(&self, role: Role) -> Result<(), ApiError> {
        if self.session.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }
}

impl FromRequestParts<Arc<Dash>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, d: &Arc<Dash>) -> Result<Self, Self::Rejection> {
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
        let mut s = d
            .deps
            .sessions
            .session(&token)
            .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.message()))?;
        if !session::csrf_ok(&parts.method, &parts.headers, &s.csrf) {
            return Err(ApiError::new(StatusCode::FORBIDDEN, session::CSRF_MISSING));
        }
        let user = s.user.clone();
        let role = d
            .db(move |db| {
                Ok(db
                    .query("SELECT role FROM hq_users WHERE name = $1", &params![user])?
                    .first()
                    .and_then(|r| r[0].text().and_then(Role::parse)))
            })
            .await?;
        match role {
            Some(r) => s.role = r,
            None => {
                d.deps.sessions.close(&token);
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    NoSession::Missing.message(),
                ));
            }
        }
        Ok(Authed {
            session: s,
            token,
            ip,
        })
    }
}

/// The routes.
pub fn router(deps: Deps) -> Router {
    let state = Arc::new(Dash {
        deps,
        hash: tokio::sync::Semaphore::new(HASH_AT_ONCE),
    });
    Router::new()
        .route("/", get(super::assets::index))
        .route("/app.js", get(super::assets::script))
        .route("/app.css", get(super::assets::style))
        .route("/metrics", get(super::metrics::get))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/fleet", get(fleet))
        .route("/api/boxes/{site}/{box}", get(one_box))
        .route(
            "/api/boxes/{site}/{box}/config",
            get(super::commands::config_get).post(super::commands::config_set),
        )
        .route(
            "/api/boxes/{site}/{box}/command",
            post(super::commands::command),
        )
        .route("/api/alarms", get(alarms))
        .route("/api/alarms/ack", post(ack))
        .route("/api/calls", get(calls))
        .route("/api/recordings/{id}", get(super::recording::get))
        .route("/api/reports", get(super::reports::get))
        .route("/api/reports.csv", get(super::reports::csv))
        .route("/api/reports/checks", get(super::reports::checks))
        .route("/api/audit", get(audit_log))
        .route("/api/notifications", get(notifications))
        .fallback(|| async { ApiError::not_found("no such page") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(
            "dashboard",
            callbox_web::http::guard,
        ))
        .with_state(state)
}

#[derive(Deserialize)]
struct Login {
    name: String,
    password: String,
}

async fn login(
    State(d): St,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let ip = peer.ip();
    let Ok(Json(form)) = body else {
        return ApiError::bad("send {\"name\": …, \"password\": …} as JSON").into_response();
    };
    let name: String = form.name.trim().chars().take(64).collect();
    if let Some(wait) = d.deps.limit.blocked(ip) {
        d.audit(Some(&name), ip, "login_blocked", json!({})).await;
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
    let user = {
        let n = name.clone();
        d.db(move |db| {
            Ok(db
                .query(
                    "SELECT role, hash FROM hq_users WHERE name = $1",
                    &params![n],
                )?
                .into_iter()
                .next())
        })
        .await
    };
    let user = match user {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let password = form.password;
    let checked = {
        let _turn = d.hash.acquire().await;
        tokio::task::spawn_blocking(move || match user {
            Some(row) => {
                let ok = callbox_web::secret::matches(row[1].text().unwrap_or(""), &password);
                row[0].text().and_then(Role::parse).filter(|_| ok)
            }
            None => {
                // As slow as a real check, so a name's existence does not
                // show in the answer's time.
                let _ = callbox_web::secret::hash(&password);
                None
            }
        })
        .await
    };
    match checked {
        Ok(Some(role)) => {
            let (token, s) = match d.deps.sessions.open(&name, role, false) {
                Ok(v) => v,
                Err(e) => return ApiError::internal(e).into_response(),
            };
            d.audit(Some(&name), ip, "login", json!({"role": role}))
                .await;
            let mut r = Json(me_json(&s, d.deps.broker.is_some())).into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                session::session_cookie(COOKIE, &token, d.deps.sessions.max().as_secs()),
            );
            r
        }
        Ok(None) => {
            d.deps.limit.failed(ip);
            d.audit(Some(&name), ip, "login_failed", json!({})).await;
            ApiError::new(StatusCode::UNAUTHORIZED, "wrong name or password").into_response()
        }
        Err(e) => ApiError::internal(e).into_response(),
    }
}

fn me_json(s: &Session<Role>, commands: bool) -> Value {
    json!({"user": s.user, "role": s.role, "csrf": s.csrf, "commands": commands})
}

async fn logout(State(d): St, a: Authed) -> Response {
    d.deps.sessions.close(&a.token);
    d.audit(Some(&a.session.user), a.ip, "logout", json!({}))
        .await;
    let mut r = Json(json!({"ok": true})).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session::session_cookie(COOKIE, "", 0));
    r
}

async fn me(State(d): St, a: Authed) -> Json<Value> {
    Json(me_json(&a.session, d.deps.broker.is_some()))
}

/// Rows as JSON objects named by `cols`.
pub fn objects(cols: &[&str], rows: &[Vec<Cell>]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            Value::Object(
                cols.iter()
                    .zip(r)
                    .map(|(k, c)| (k.to_string(), c.json()))
                    .collect(),
            )
        })
        .collect()
}

#[derive(Deserialize, Default)]
struct FleetQuery {
    #[serde(default)]
    site: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    q: String,
    /// Only boxes offline, with lines down or alarms.
    #[serde(default)]
    problems: bool,
}

const FLEET_COLS: &[&str] = &[
    "site",
    "box",
    "state",
    "reason",
    "firmware",
    "seen_ms",
    "calls",
    "waiting",
    "backlog",
    "lines_up",
    "lines_total",
    "lines_down",
    "alarms",
    "telemetry_ms",
    "status_ms",
];

async fn fleet(State(d): St, _a: Authed, Query(f): Query<FleetQuery>) -> ApiResult {
    let like = format!("%{}%", f.q.replace(['%', '_'], ""));
    let rows = d
        .db(move |db| {
            let rows = db.query(
                "SELECT site, box, state, reason, firmware, seen_ms, calls, waiting, backlog,
                        lines_up, lines_total, lines_down, alarms, telemetry_ms, status_ms
                 FROM boxes
                 WHERE ($1 = '' OR site = $1) AND ($2 = '' OR state = $2)
                   AND (site LIKE $3 OR box LIKE $3)
                   AND (CAST($4 AS BIGINT) = 0 OR state = 'offline' OR lines_down IS NOT NULL OR alarms > 0)
                 ORDER BY site, box LIMIT $5",
                &params![f.site, f.state, like, i64::from(f.problems), MAX_ROWS],
            )?;
            let totals = db.query(
                "SELECT COUNT(*),
                        CAST(SUM(CASE WHEN state = 'online' THEN 1 ELSE 0 END) AS BIGINT),
                        CAST(SUM(COALESCE(calls, 0)) AS BIGINT),
                        CAST(SUM(COALESCE(backlog, 0)) AS BIGINT),
                        CAST(SUM(CASE WHEN lines_down IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT)
                 FROM boxes",
                &[],
            )?;
            let open = db.query("SELECT COUNT(*) FROM alarms WHERE cleared_ms IS NULL", &[])?;
            let sites = db.query("SELECT DISTINCT site FROM boxes ORDER BY site", &[])?;
            Ok((rows, totals, open, sites))
        })
        .await?;
    let (rows, totals, open, sites) = rows;
    let t = &totals[0];
    Ok(Json(json!({
        "boxes": objects(FLEET_COLS, &rows),
        "limit": MAX_ROWS,
        "totals": {
            "boxes": t[0].json(), "online": t[1].json(), "calls": t[2].json(),
            "backlog": t[3].json(), "lines_down": t[4].json(), "alarms_open": open[0][0].json(),
        },
        "sites": sites.iter().map(|r| r[0].json()).collect::<Vec<_>>(),
        "now_ms": crate::mqtt::now_ms(),
    })))
}

#[derive(Deserialize)]
struct Period {
    /// Minutes back from now.
    #[serde(default = "day")]
    minutes: i64,
}

fn day() -> i64 {
    24 * 60
}

/// Points a chart gets at most.
const CHART_POINTS: i64 = 300;

async fn one_box(
    State(d): St,
    _a: Authed,
    Path((site, box_id)): Path<(String, String)>,
    Query(p): Query<Period>,
) -> ApiResult {
    if !(5..=92 * 24 * 60).contains(&p.minutes) {
        return Err(ApiError::bad("minutes: 5 to 132480 (92 days)"));
    }
    let until = crate::mqtt::now_ms();
    let since = until - p.minutes * 60_000;
    // Each point the peak (or mean) of its step.
    let step = (p.minutes * 60_000 / CHART_POINTS).max(1000);
    let (s2, b2) = (site.clone(), box_id.clone());
    let got = d
        .db(move |db| {
            let row = db.query(
                "SELECT site, box, state, reason, firmware, seen_ms, calls, waiting, backlog,
                        lines_up, lines_total, lines_down, alarms, telemetry_ms, status_ms, telemetry
                 FROM boxes WHERE site = $1 AND box = $2",
                &params![s2.as_str(), b2.as_str()],
            )?;
            let samples = db.query(
                "SELECT (at_ms / $4) * $4, CAST(MAX(calls) AS BIGINT), CAST(MAX(waiting) AS BIGINT),
                        CAST(AVG(cpu) AS DOUBLE PRECISION), CAST(MIN(disk_free) AS DOUBLE PRECISION),
                        CAST(MAX(backlog) AS BIGINT)
                 FROM telemetry WHERE site = $1 AND box = $2 AND at_ms >= $3
                 GROUP BY (at_ms / $4) * $4 ORDER BY 1",
                &params![s2.as_str(), b2.as_str(), since, step],
            )?;
            let alarms = db.query(
                "SELECT site, box, code, raised_ms, severity, message, cleared_ms, acked_by, acked_ms
                 FROM alarms WHERE site = $1 AND box = $2 ORDER BY raised_ms DESC LIMIT 100",
                &params![s2.as_str(), b2.as_str()],
            )?;
            Ok((row, samples, alarms))
        })
        .await?;
    let (row, samples, alarms) = got;
    let Some(r) = row.first() else {
        return Err(ApiError::not_found(format!("no box {site}/{box_id}")));
    };
    let mut info = objects(FLEET_COLS, std::slice::from_ref(r)).remove(0);
    let telemetry: Value = r[15]
        .text()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null);
    info["telemetry"] = telemetry;
    Ok(Json(json!({
        "box": info,
        "since_ms": since,
        "until_ms": until,
        "step_ms": step,
        "samples": objects(&["at_ms", "calls", "waiting", "cpu", "disk_free", "backlog"], &samples),
        "alarms": objects(ALARM_COLS, &alarms),
    })))
}

const ALARM_COLS: &[&str] = &[
    "site",
    "box",
    "code",
    "raised_ms",
    "severity",
    "message",
    "cleared_ms",
    "acked_by",
    "acked_ms",
];

#[derive(Deserialize)]
struct AlarmQuery {
    /// Only alarms not cleared.
    #[serde(default)]
    open: bool,
}

async fn alarms(State(d): St, _a: Authed, Query(q): Query<AlarmQuery>) -> ApiResult {
    let rows = d
        .db(move |db| {
            db.query(
                "SELECT site, box, code, raised_ms, severity, message, cleared_ms, acked_by, acked_ms
                 FROM alarms WHERE (CAST($1 AS BIGINT) = 0 OR cleared_ms IS NULL)
                 ORDER BY raised_ms DESC LIMIT $2",
                &params![i64::from(q.open), MAX_ROWS],
            )
        })
        .await?;
    Ok(Json(json!({"alarms": objects(ALARM_COLS, &rows)})))
}

#[derive(Deserialize, Debug)]
struct Ack {
    site: String,
    #[serde(rename = "box")]
    box_id: String,
    code: String,
    raised_ms: i64,
}

async fn ack(
    State(d): St,
    a: Authed,
    body: Result<Json<Ack>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    a.need(Role::Operator)?;
    let Json(k) = body.map_err(|e| ApiError::bad(format!("the alarm to acknowledge: {e}")))?;
    let (who, now) = (a.session.user.clone(), crate::mqtt::now_ms());
    let detail = json!({"site": k.site, "box": k.box_id, "code": k.code, "raised_ms": k.raised_ms});
    let changed = d
        .db(move |db| {
            let n = db.exec(
                "UPDATE alarms SET acked_by = $5, acked_ms = $6
                 WHERE site = $1 AND box = $2 AND code = $3 AND raised_ms = $4 AND acked_by IS NULL",
                &params![k.site.as_str(), k.box_id.as_str(), k.code.as_str(), k.raised_ms, who, now],
            )?;
            let exists = db.query(
                "SELECT acked_by FROM alarms WHERE site = $1 AND box = $2 AND code = $3 AND raised_ms = $4",
                &params![k.site, k.box_id, k.code, k.raised_ms],
            )?;
            Ok((n, exists.first().map(|r| r[0].clone())))
        })
        .await?;
    match changed {
        (1, _) => {
            d.audit(Some(&a.session.user), a.ip, "alarm.ack", detail)
                .await;
            Ok(Json(json!({"ok": true})))
        }
        (_, Some(by)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("already acknowledged by {}", by.text().unwrap_or("?")),
        )),
        (_, None) => Err(ApiError::not_found("no such alarm")),
    }
}

#[derive(Deserialize, Default)]
struct CallQuery {
    /// `YYYY-MM-DD`, in the dashboard's time zone.
    from: Option<String>,
    to: Option<String>,
    #[serde(default)]
    site: String,
    #[serde(default)]
    dialled: String,
    #[serde(default)]
    caller: String,
}

/// `from`..`to` (dates, `to` included) as ms since the epoch; the last
/// 7 days by default.
pub fn range(
    tz: &jiff::tz::TimeZone,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(jiff::civil::Date, jiff::civil::Date, i64, i64), ApiError> {
    let today = jiff::Timestamp::now().to_zoned(tz.clone()).date();
    let date = |s: Option<&str>, default: jiff::civil::Date, what: &str| match s {
        None | Some("") => Ok(default),
        Some(s) => s
            .parse::<jiff::civil::Date>()
            .map_err(|_| ApiError::bad(format!("{what}: not a date (YYYY-MM-DD): {s}"))),
    };
    let week_ago = today
        .checked_sub(jiff::Span::new().days(6))
        .map_err(ApiError::internal)?;
    let from = date(from, week_ago, "from")?;
    let to = date(to, today, "to")?;
    if to < from {
        return Err(ApiError::bad("to is before from"));
    }
    if from.until(to).map_err(ApiError::internal)?.get_days() > 400 {
        return Err(ApiError::bad("at most 400 days at once"));
    }
    let ms = |d: jiff::civil::Date| -> Result<i64, ApiError> {
        Ok(d.to_zoned(tz.clone())
            .map_err(ApiError::internal)?
            .timestamp()
            .as_millisecond())
    };
    let next = to.tomorrow().map_err(ApiError::internal)?;
    Ok((from, to, ms(from)?, ms(next)?))
}

const CALL_COLS: &[&str] = &[
    "site",
    "box",
    "id",
    "started_ms",
    "direction",
    "caller",
    "dialled",
    "queue",
    "agent",
    "disposition",
    "duration_ms",
    "talk_ms",
    "wrap_code",
    "survey_score",
    "recordings",
];

async fn calls(State(d): St, _a: Authed, Query(q): Query<CallQuery>) -> ApiResult {
    let (_, _, since, until) = range(&d.deps.tz, q.from.as_deref(), q.to.as_deref())?;
    let caller = format!("%{}%", q.caller.replace(['%', '_'], ""));
    let rows = d
        .db(move |db| {
            db.query(
                "SELECT site, box, id, started_ms, direction, caller, dialled, queue, agent,
                        disposition, duration_ms, talk_ms, wrap_code, survey_score, recordings
                 FROM calls
                 WHERE started_ms >= $1 AND started_ms < $2 AND ($3 = '' OR site = $3)
                   AND ($4 = '' OR dialled = $4) AND ($5 = '%%' OR caller LIKE $5)
                 ORDER BY started_ms DESC LIMIT $6",
                &params![since, until, q.site, q.dialled, caller, MAX_ROWS],
            )
        })
        .await?;
    Ok(Json(
        json!({"calls": objects(CALL_COLS, &rows), "limit": MAX_ROWS}),
    ))
}

#[derive(Deserialize, Default)]
struct NotificationQuery {
    /// `pending`, `sending`, `sent` or `failed`; all when empty.
    #[serde(default)]
    state: String,
}

const NOTIFICATION_COLS: &[&str] = &[
    "id",
    "site",
    "box",
    "kind",
    "created_ms",
    "state",
    "attempts",
    "next_ms",
    "channel",
    "recipient",
    "last_error",
    "answer",
    "sent_ms",
];

/// The notifier's messages and their delivery, newest first, with the
/// count per state.
async fn notifications(State(d): St, _a: Authed, Query(q): Query<NotificationQuery>) -> ApiResult {
    let got = d
        .db(move |db| {
            let rows = db.query(
                "SELECT id, site, box, kind, created_ms, state, attempts, next_ms, channel,
                        recipient, last_error, answer, sent_ms
                 FROM notifications WHERE ($1 = '' OR state = $1)
                 ORDER BY created_ms DESC LIMIT $2",
                &params![q.state, MAX_ROWS],
            )?;
            let counts = db.query(
                "SELECT state, COUNT(*) FROM notifications GROUP BY state",
                &[],
            )?;
            Ok((rows, counts))
        })
        .await?;
    let (rows, counts) = got;
    let counts: serde_json::Map<String, Value> = counts
        .iter()
        .map(|r| (r[0].text().unwrap_or("").to_string(), r[1].json()))
        .collect();
    Ok(Json(json!({
        "notifications": objects(NOTIFICATION_COLS, &rows),
        "counts": counts,
        "limit": MAX_ROWS,
    })))
}

async fn audit_log(State(d): St, a: Authed) -> ApiResult {
    a.need(Role::Admin)?;
    let rows = d
        .db(|db| {
            db.query(
                "SELECT at_ms, who, ip, action, detail FROM hq_audit ORDER BY at_ms DESC LIMIT $1",
                &params![MAX_ROWS],
            )
        })
        .await?;
    Ok(Json(
        json!({"audit": objects(&["at_ms", "user", "ip", "action", "detail"], &rows)}),
    ))
}
