//! `GET /api/recordings/{id}`: a call's recording as the collectors stored
//! it, decrypted on the server with headquarters' identity (`--identity`)
//! when the box sealed it, for the browser's player. Each listen is
//! audited; the plaintext is never kept on disk longer than the answer.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use callbox_contract::valid_id;
use callbox_web::http::ApiError;
use serde_json::json;

use super::api::{Authed, St};
use crate::recordings::LoadError;

/// `GET /api/recordings/{id}`.
pub async fn get(State(d): St, a: Authed, Path(id): Path<String>) -> Result<Response, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::bad("not a recording id"));
    }
    let (dir, identity) = (d.deps.recordings.clone(), d.deps.identity.clone());
    let rid = id.clone();
    let got = d
        .db(move |db| {
            Ok(crate::recordings::load(
                db,
                dir.as_deref(),
                identity.as_deref(),
                &rid,
            ))
        })
        .await?;
    let wav = match got {
        Ok(w) => w,
        Err(LoadError::NotStored) => {
            return Err(ApiError::not_found(format!(
                "no recording {id} at headquarters"
            )));
        }
        Err(LoadError::NoIdentity) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "this recording is encrypted and the dashboard has no --identity to open it",
            ));
        }
        Err(LoadError::Failed(e)) => return Err(ApiError::internal(e)),
    };
    d.audit(
        Some(&a.session.user),
        a.ip,
        "recording.play",
        json!({"recording": id}),
    )
    .await;
    Ok(([(header::CONTENT_TYPE, "audio/wav")], wav).into_response())
}
