//! What every answer shares: JSON refusals with the status that fits,
//! security headers, a log line for each refusal, and blocking work (a
//! database read, an argon2id hash) taken a few at a time.

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::tls::Peer;

/// A refusal: its status and what to tell the user (`{"error": …}`).
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What to tell the user.
    pub message: String,
}

impl ApiError {
    /// A refusal with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 422: a bad value.
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 403: the role does not allow it.
    pub fn forbidden() -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "not allowed for your role")
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 500, the cause logged and not shown.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!("web: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server could not do that; see its log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.message}))).into_response()
    }
}

/// A handler's answer.
pub type ApiResult<T = Json<serde_json::Value>> = Result<T, ApiError>;

/// Runs `f` on a blocking thread once a turn of `turns` is free: fifty
/// browsers asking at the same moment wait their turn instead of costing
/// fifty threads.
pub async fn in_turn<T: Send + 'static>(
    turns: &tokio::sync::Semaphore,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let _turn = turns.acquire().await.map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)
}

/// Middleware (`axum::middleware::from_fn_with_state(name, guard)`):
/// security headers on every answer, and a log line for every refusal
/// naming the server, the peer, the method and the path.
pub async fn guard(State(name): State<&'static str>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0.0.to_string())
        .unwrap_or_default();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let mut res = next.run(req).await;
    let status = res.status();
    if status.is_client_error() || status.is_server_error() {
        tracing::warn!(%peer, %method, path = %path.chars().take(200).collect::<String>(), status = status.as_u16(), "{name} refused a request");
    }
    let h = res.headers_mut();
    for (k, v) in [
        (
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("strict-transport-security", "max-age=31536000"),
        ("cache-control", "no-store"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    res
}
