//! The agent's desk around one call: the screen pop while it rings (who
//! is calling, their earlier calls on this box, what they did in the IVR,
//! the queue's call script filled in), the wrap-up form after it (a code
//! and notes onto the call record, a lead to headquarters), and
//! click-to-call.
//!
//! An agent sees only a call that rings them, that they are on, or that
//! they took; supervisors see any.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{ApiError, ApiResult, Authed, Console, St, audit};
use super::auth::Role;
use crate::store::{CallRecord, RecordQuery, StoreMsg};

/// Earlier calls the screen pop lists.
const HISTORY: u32 = 10;
/// Longest notes kept.
const NOTES_MAX: usize = 2000;

/// The call the agent is offered or on now, per the ACD.
async fn current_call(c: &Console, agent: &str) -> Option<crate::acd::AgentCall> {
    let stats = c.deps.acd.as_ref()?().await?;
    stats.agents.into_iter().find(|a| a.agent == agent)?.call
}

/// The call's record with its event log, once what was sent for it is
/// committed; 404 when there is none.
async fn call_record(c: &Console, id: &str) -> Result<CallRecord, ApiError> {
    c.deps.store.flush().await.map_err(ApiError::internal)?;
    let q = RecordQuery {
        call: Some(id.to_string()),
        ..Default::default()
    };
    c.read(move |d| crate::store::read_records(d, &q))
        .await?
        .pop()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such call"))
}

/// Refuses an agent a call that is not theirs (ringing them, on it, or
/// taken by them).
async fn may_see(c: &Console, a: &Authed, rec: &CallRecord) -> Result<(), ApiError> {
    if a.session.role >= Role::Supervisor || rec.agent.as_deref() == Some(a.session.user.as_str()) {
        return Ok(());
    }
    match current_call(c, &a.session.user).await {
        Some(call) if call.call_id == rec.id => Ok(()),
        _ => Err(ApiError::forbidden()),
    }
}

/// The IVR path and recordable variables: the record's once the call is
/// over, else what the IVR logged when the caller joined the queue.
fn flow_so_far(rec: &CallRecord) -> (Vec<String>, BTreeMap<String, String>) {
    if !rec.ivr_path.is_empty() {
        return (rec.ivr_path.clone(), rec.ivr_vars.clone());
    }
    let Some(q) = rec.events.iter().rev().find(|e| e.event == "queued") else {
        return (Vec::new(), BTreeMap::new());
    };
    let path = serde_json::from_value(q.data["path"].clone()).unwrap_or_default();
    let vars = serde_json::from_value(q.data["vars"].clone()).unwrap_or_default();
    (path, vars)
}

/// `template` with `{name}` replaced from `fields`; unknown names stay.
fn fill(template: &str, fields: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if fields.contains_key(&after[..close]) => {
                out.push_str(&fields[&after[..close]]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The earlier calls of `who` on this box, newest first: calls from the
/// number, or with `both` also calls dialled to it (exactly that number:
/// a part of it would show other people's calls).
async fn history(
    c: &Console,
    who: Option<String>,
    both: bool,
    not: &str,
) -> Result<Vec<Value>, ApiError> {
    let Some(number) = who else {
        return Ok(Vec::new());
    };
    let from = RecordQuery {
        caller: Some(number.clone()),
        newest: Some(HISTORY + 1),
        ..Default::default()
    };
    let to = both.then(|| RecordQuery {
        dialled: Some(number),
        newest: Some(HISTORY + 1),
        ..Default::default()
    });
    let mut all = c
        .read(move |d| {
            let mut v = crate::store::read_records(d, &from)?;
            if let Some(to) = &to {
                v.extend(crate::store::read_records(d, to)?);
            }
            Ok(v)
        })
        .await?;
    all.sort_by(|a, b| b.start.cmp(&a.start));
    all.dedup_by(|a, b| a.id == b.id);
    Ok(all
        .into_iter()
        .filter(|r| r.id != not)
        .take(HISTORY as usize)
        .map(|r| {
            json!({
                "id": r.id, "start": r.start, "queue": r.queue, "agent": r.agent,
                "disposition": r.disposition, "outcome": r.outcome,
                "wrap_code": r.wrap_code, "notes": r.notes, "talk_ms": r.talk_ms,
            })
        })
        .collect())
}

/// A campaign contact offered to an agent in preview (or being talked
/// to): their fields from the list, earlier calls to and from them and
/// the campaign's script.
async fn preview_pop(c: &Console, a: &Authed, p: crate::inflight::InflightCall) -> ApiResult {
    if a.session.role < Role::Supervisor && p.agent.as_deref() != Some(a.session.user.as_str()) {
        return Err(ApiError::forbidden());
    }
    let history = history(c, p.caller.clone(), true, &p.call_id).await?;
    let mut fields = p.fields.clone();
    fields.insert("caller".into(), p.caller.clone().unwrap_or_default());
    fields.insert(
        "caller_name".into(),
        p.caller_name.clone().unwrap_or_default(),
    );
    fields.insert("name".into(), p.caller_name.clone().unwrap_or_default());
    fields.insert("campaign".into(), p.campaign.clone().unwrap_or_default());
    fields.insert("agent".into(), a.session.user.clone());
    let script = p
        .campaign
        .as_ref()
        .and_then(|k| c.deps.config.scripts.get(k))
        .map(|t| fill(t, &fields));
    Ok(Json(json!({
        "call": {
            "id": p.call_id, "caller": p.caller, "caller_name": p.caller_name,
            "dialled": p.dialled, "queue": null, "campaign": p.campaign,
            "agent": p.agent, "preview": true,
        },
        "path": [],
        "vars": p.fields,
        "history": history,
        "script": script,
    })))
}

/// `GET /api/calls/{id}/pop`.
pub(super) async fn pop(State(c): St, a: Authed, Path(id): Path<String>) -> ApiResult {
    let offered = c
        .deps
        .inflight
        .now()
        .into_iter()
        .find(|x| x.call_id == id && x.kind == "preview");
    if let Some(p) = offered {
        return preview_pop(&c, &a, p).await;
    }
    let rec = call_record(&c, &id).await?;
    may_see(&c, &a, &rec).await?;
    let (path, vars) = flow_so_far(&rec);
    let queue = match &rec.queue {
        Some(q) => Some(q.clone()),
        None => current_call(&c, &a.session.user).await.map(|x| x.queue),
    };
    let history = history(&c, rec.caller.clone(), false, &rec.id).await?;
    let mut fields: BTreeMap<String, String> = vars.clone();
    fields.insert("caller".into(), rec.caller.clone().unwrap_or_default());
    fields.insert(
        "caller_name".into(),
        rec.caller_name.clone().unwrap_or_default(),
    );
    fields.insert("queue".into(), queue.clone().unwrap_or_default());
    fields.insert("agent".into(), a.session.user.clone());
    let script = queue
        .as_ref()
        .and_then(|q| c.deps.config.scripts.get(q))
        .map(|t| fill(t, &fields));
    Ok(Json(json!({
        "call": {
            "id": rec.id, "caller": rec.caller, "caller_name": rec.caller_name,
            "dialled": rec.dialled, "start": rec.start, "queue": queue,
            "agent": rec.agent, "wrap_code": rec.wrap_code, "notes": rec.notes,
            "disposition": rec.disposition,
        },
        "path": path,
        "vars": vars,
        "history": history,
        "script": script,
    })))
}

#[derive(Deserialize)]
pub(super) struct WrapUp {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    notes: Option<String>,
}

/// `POST /api/calls/{id}/wrap`: `{"code"?, "notes"?}` onto the record.
pub(super) async fn wrap(
    State(c): St,
    a: Authed,
    Path(id): Path<String>,
    Json(w): Json<WrapUp>,
) -> ApiResult {
    let rec = call_record(&c, &id).await?;
    may_see(&c, &a, &rec).await?;
    let codes = &c.deps.config.wrap_codes;
    let code = w.code.filter(|s| !s.is_empty());
    let chosen = match &code {
        None => None,
        Some(k) => match codes.iter().find(|x| &x.code == k) {
            Some(x) => Some(x.clone()),
            None if codes.is_empty() && k.len() <= 8 && k.chars().all(|ch| ch.is_ascii_digit()) => {
                None
            }
            None => {
                return Err(ApiError::bad(format!(
                    "`{}` is not one of the wrap-up codes",
                    k.chars().take(20).collect::<String>()
                )));
            }
        },
    };
    let notes = w
        .notes
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if notes
        .as_ref()
        .is_some_and(|n| n.chars().count() > NOTES_MAX)
    {
        return Err(ApiError::bad(format!(
            "notes are at most {NOTES_MAX} characters"
        )));
    }
    if code.is_none() && notes.is_none() {
        return Err(ApiError::bad("choose a code or write notes"));
    }
    c.deps
        .store
        .send(StoreMsg::WrapUp {
            call_id: id.clone(),
            code: code.clone(),
            notes: notes.clone(),
        })
        .await;
    if let Some(lead) = chosen.filter(|x| x.lead) {
        // A lead for headquarters' sales people: who, why and the notes.
        c.deps
            .store
            .send(StoreMsg::Outbox {
                stream: "lead".into(),
                at: c.deps.clock.now(),
                payload: json!({
                    "call_id": id, "caller": rec.caller, "caller_name": rec.caller_name,
                    "queue": rec.queue, "dialled": rec.dialled, "agent": rec.agent.clone().unwrap_or(a.session.user.clone()),
                    "code": lead.code, "label": lead.label, "notes": notes,
                }),
            })
            .await;
    }
    c.deps.store.flush().await.map_err(ApiError::internal)?;
    Ok(Json(
        json!({"ok": true, "call_id": id, "code": code, "notes": notes}),
    ))
}

#[derive(Deserialize)]
pub(super) struct Dial {
    number: String,
    #[serde(default)]
    agent: Option<String>,
}

/// `POST /api/originate` `{"number", "agent"?}`: rings the agent's phone,
/// then dials the number through the dial plan (headquarters'
/// `originate` with an agent). An agent dials for themself.
pub(super) async fn originate(State(c): St, a: Authed, Json(d): Json<Dial>) -> ApiResult {
    let agent = match (a.session.role, d.agent) {
        (Role::Agent, Some(other)) if other != a.session.user => return Err(ApiError::forbidden()),
        (_, Some(x)) => x,
        (_, None) => a.session.user.clone(),
    };
    let number: String = d
        .number
        .chars()
        .filter(|ch| !matches!(ch, ' ' | '-'))
        .collect();
    if number.is_empty()
        || number.len() > 32
        || !number
            .chars()
            .all(|ch| ch.is_ascii_digit() || ch == '+' || ch == '*' || ch == '#')
    {
        return Err(ApiError::bad("a number is digits, `+`, `*` or `#`"));
    }
    let args = json!({"agent": agent, "number": number});
    let result = c
        .deps
        .commands
        .handle("originate", args.clone())
        .await
        .map_err(ApiError::bad)?;
    audit(&c, Some(&a.session.user), a.ip, "originate", args).await;
    Ok(Json(result))
}

/// The wrap-up codes, for the form (in `/api/me`).
pub(super) fn wrap_codes(c: &Console) -> Value {
    json!(c.deps.config.wrap_codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_filled_and_unknown_names_kept() {
        let mut f = BTreeMap::new();
        f.insert("caller_name".to_string(), "王经理".to_string());
        f.insert("product".to_string(), "12345".to_string());
        assert_eq!(
            fill("您好{caller_name}，产品 {product} {unknown} {", &f),
            "您好王经理，产品 12345 {unknown} {"
        );
    }
}
