//! The web console's users and audit log. Users are written through the
//! store thread like everything else; the console reads them back
//! through [`ReadOnly`](super::ReadOnly). Each audit entry is kept in
//! `console_audit` and goes to headquarters on the outbox stream `audit`
//! in the same transaction.

use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use super::{ReadOnly, StoreError};
use crate::clock::Stamp;

/// A console user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsoleUser {
    /// Login name; an agent's is their agent number.
    pub name: String,
    /// `admin`, `supervisor` or `agent`.
    pub role: String,
    /// argon2id hash of the password or PIN (PHC string).
    #[serde(skip)]
    pub hash: String,
    /// Refused at login.
    pub disabled: bool,
    /// Last change, ms since the epoch.
    pub updated_ms: i64,
}

/// One thing a console user did (or tried: failed logins are audited).
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// When.
    pub at: Stamp,
    /// Who, when known.
    pub user: Option<String>,
    /// From which address.
    pub ip: Option<String>,
    /// What: `login`, `login_failed`, `password`, `user.put`, `agent`, …
    pub action: String,
    /// The details (never a password).
    pub detail: serde_json::Value,
}

/// A kept audit entry, newest first in [`ReadOnly::audit`].
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    /// Its number.
    pub seq: i64,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Who.
    pub user: Option<String>,
    /// From where.
    pub ip: Option<String>,
    /// What.
    pub action: String,
    /// Details.
    pub detail: serde_json::Value,
}

pub(super) fn put_user(tx: &Transaction<'_>, u: &ConsoleUser) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO console_users (name, role, hash, disabled, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(name) DO UPDATE SET role = ?2, hash = ?3, disabled = ?4, updated_ms = ?5",
    )?
    .execute(params![u.name, u.role, u.hash, u.disabled, u.updated_ms])?;
    Ok(())
}

pub(super) fn remove_user(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM console_users WHERE name = ?1")?
        .execute(params![name])?;
    Ok(())
}

pub(super) fn audit(tx: &Transaction<'_>, a: &AuditEntry) -> rusqlite::Result<()> {
    let detail = a.detail.to_string();
    tx.prepare_cached(
        "INSERT INTO console_audit (at_ms, user, ip, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![a.at.wall_ms, a.user, a.ip, a.action, detail])?;
    let payload = serde_json::json!({
        "at_ms": a.at.wall_ms,
        "user": a.user,
        "ip": a.ip,
        "action": a.action,
        "detail": a.detail,
    });
    super::outbox::enqueue(tx, "audit", &a.at, &payload)
}

impl ReadOnly {
    /// A console user by name.
    pub fn console_user(&self, name: &str) -> Result<Option<ConsoleUser>, StoreError> {
        self.read("console user", |c| {
            c.query_row(
                "SELECT name, role, hash, disabled, updated_ms FROM console_users WHERE name = ?1",
                params![name],
                user_row,
            )
            .optional()
        })
    }

    /// Every console user, by name.
    pub fn console_users(&self) -> Result<Vec<ConsoleUser>, StoreError> {
        self.read("console users", |c| {
            let mut st = c.prepare(
                "SELECT name, role, hash, disabled, updated_ms FROM console_users ORDER BY name",
            )?;
            st.query_map([], user_row)?.collect()
        })
    }

    /// The newest `limit` audit entries, newest first.
    pub fn audit(&self, limit: u32) -> Result<Vec<AuditRow>, StoreError> {
        self.read("audit log", |c| {
            let mut st = c.prepare(
                "SELECT seq, at_ms, user, ip, action, detail FROM console_audit
                 ORDER BY seq DESC LIMIT ?1",
            )?;
            st.query_map(params![limit], |r| {
                let detail: String = r.get(5)?;
                Ok(AuditRow {
                    seq: r.get(0)?,
                    at_ms: r.get(1)?,
                    user: r.get(2)?,
                    ip: r.get(3)?,
                    action: r.get(4)?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                })
            })?
            .collect()
        })
    }
}

/// What reports count of one inbound call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportCall {
    /// When it arrived, ms since the epoch.
    pub started_ms: i64,
    /// The number the caller dialled.
    pub dialled: Option<String>,
    /// The (last) queue it went through.
    pub queue: Option<String>,
    /// How it left that queue (`connected`, `abandoned`…).
    pub queue_exit: Option<String>,
    /// The agent who took it.
    pub agent: Option<String>,
    /// `answered`, `abandoned`…
    pub disposition: String,
    /// The IVR's outcome.
    pub outcome: Option<String>,
    /// Time in the queue, ms.
    pub queue_wait_ms: Option<i64>,
    /// Talk time with the agent, ms.
    pub talk_ms: Option<i64>,
    /// The caller's survey score.
    pub survey_score: Option<u8>,
}

impl ReadOnly {
    /// Inbound calls that arrived in `[since_ms, until_ms)`, finished
    /// ones only, oldest first.
    pub fn report_calls(
        &self,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<ReportCall>, StoreError> {
        self.read("report", |c| {
            let mut st = c.prepare(
                "SELECT started_ms, dialled, queue, queue_exit, agent, disposition, outcome,
                        queue_wait_ms, talk_ms, survey_score
                 FROM calls WHERE direction = 'inbound' AND disposition != 'in_progress'
                   AND started_ms >= ?1 AND started_ms < ?2 ORDER BY seq",
            )?;
            st.query_map(params![since_ms, until_ms], |r| {
                Ok(ReportCall {
                    started_ms: r.get(0)?,
                    dialled: r.get(1)?,
                    queue: r.get(2)?,
                    queue_exit: r.get(3)?,
                    agent: r.get(4)?,
                    disposition: r.get(5)?,
                    outcome: r.get(6)?,
                    queue_wait_ms: r.get(7)?,
                    talk_ms: r.get(8)?,
                    survey_score: r.get(9)?,
                })
            })?
            .collect()
        })
    }
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConsoleUser> {
    Ok(ConsoleUser {
        name: r.get(0)?,
        role: r.get(1)?,
        hash: r.get(2)?,
        disabled: r.get(3)?,
        updated_ms: r.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::*;
    use crate::store::*;

    #[tokio::test]
    async fn users_and_audit_entries_are_kept_and_audits_reach_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), "boot").unwrap();
        let h = store.handle();
        let user = ConsoleUser {
            name: "admin".into(),
            role: "admin".into(),
            hash: "$argon2id$x".into(),
            disabled: false,
            updated_ms: 5,
        };
        h.send(StoreMsg::ConsoleUser(user.clone())).await;
        h.send(StoreMsg::Audit(AuditEntry {
            at: stamp(1000),
            user: Some("admin".into()),
            ip: Some("127.0.0.1".into()),
            action: "login".into(),
            detail: serde_json::json!({"ok": true}),
        }))
        .await;
        h.flush().await.unwrap();
        let ro = ReadOnly::open(dir.path()).unwrap();
        assert_eq!(ro.console_user("admin").unwrap(), Some(user));
        assert_eq!(ro.console_user("nobody").unwrap(), None);
        let audit = ro.audit(10).unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].action, "login");
        let sent = outbox_rows(dir.path(), "audit");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["action"], "login");
        assert_eq!(sent[0]["user"], "admin");
        h.send(StoreMsg::ConsoleUserRemoved {
            name: "admin".into(),
        })
        .await;
        h.flush().await.unwrap();
        assert!(ro.console_users().unwrap().is_empty());
    }
}
