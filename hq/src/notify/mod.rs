//! `callbox-hq notify`: delivers what callers asked for and what they
//! left. The collectors put every `notify` and `voicemail` record in the
//! `notifications` table once (keyed by the record's identity, so a record
//! sent again is not a second message); this process sends each as an
//! e-mail over SMTP (a document or the voicemail's recording attached) or
//! as an SMS through an HTTP gateway, per its config
//! ([`config`], docs/hq.md).
//!
//! Each message has a state: `pending` (due at `next_ms`), `sending`
//! (claimed by one notifier until `claimed_until`), `sent` (with the
//! server's answer) or `failed` (given up after `max_attempts`, each error
//! kept). Several notifiers may share a database: a claim is one
//! `UPDATE`, and a message is marked sent in the same breath as the
//! server's answer. The one window for a duplicate is a crash between the
//! server taking the message and that update; the message then carries
//! the same Message-ID (and `{message_id}` for the gateway) when sent
//! again.

pub mod config;
pub mod send;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::db::Db;
use crate::params;
use crate::sql::Cell;
use config::Config;
use send::{Failure, File};

/// Options of `notify`.
#[derive(Debug)]
pub struct Options {
    pub db: String,
    pub db_ca: Option<PathBuf>,
    pub config: PathBuf,
    /// Where relative recording paths in the database are.
    pub recordings: Option<PathBuf>,
    /// Headquarters' identity, for voicemail recorded encrypted.
    pub identity: Option<PathBuf>,
    /// This notifier's name in claims.
    pub name: String,
}

/// How long a claim holds.
const CLAIM: i64 = 120_000;
/// Messages claimed at once.
const BATCH: i64 = 20;
/// How often the table is looked at when nothing was due.
const IDLE: Duration = Duration::from_millis(500);

/// Runs until `stop` is set.
pub fn run(o: &Options, stop: &Arc<AtomicBool>) -> Result<()> {
    let cfg = Config::load(&o.config)?;
    let mut db = Db::open(&o.db, o.db_ca.as_deref())?;
    crate::mqtt::out_line(&format!(
        "# notifier {} on {}: smtp {}, sms {}",
        o.name,
        o.db,
        cfg.smtp.as_ref().map_or("off", |s| s.server.as_str()),
        cfg.sms.as_ref().map_or("off", |s| s.url.as_str()),
    ));
    while !stop.load(Ordering::Relaxed) {
        let n = match once(&mut db, &cfg, o) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("callbox-hq: notify: the database: {e:#}");
                if !db.recover(&e) {
                    return Err(e);
                }
                0
            }
        };
        if n == 0 {
            std::thread::sleep(IDLE);
        }
    }
    Ok(())
}

/// Claims what is due and sends it; how many were handled.
pub fn once(db: &mut Db, cfg: &Config, o: &Options) -> Result<usize> {
    let now = crate::mqtt::now_ms();
    db.exec(
        "UPDATE notifications SET state = 'sending', claimed_by = $1, claimed_until = $2,
             attempts = attempts + 1
         WHERE id IN (SELECT id FROM notifications
                      WHERE (state = 'pending' AND next_ms <= $3)
                         OR (state = 'sending' AND claimed_until < $3)
                      ORDER BY next_ms LIMIT $4)",
        &params![o.name.as_str(), now + CLAIM, now, BATCH],
    )?;
    let rows = db.query(
        "SELECT id, site, box, kind, data, attempts FROM notifications
         WHERE state = 'sending' AND claimed_by = $1 AND claimed_until = $2",
        &params![o.name.as_str(), now + CLAIM],
    )?;
    for r in &rows {
        let id = r[0].text().unwrap_or("").to_string();
        let attempts = r[5].int().unwrap_or(1) as u32;
        let outcome = deliver(db, cfg, o, r);
        let now = crate::mqtt::now_ms();
        match outcome {
            Ok((channel, to, answer)) => {
                db.exec(
                    "UPDATE notifications SET state = 'sent', sent_ms = $2, answer = $3,
                         channel = $4, recipient = $5, claimed_until = NULL
                     WHERE id = $1 AND claimed_by = $6",
                    &params![
                        id.as_str(),
                        now,
                        answer,
                        channel.as_str(),
                        to.as_str(),
                        o.name.as_str()
                    ],
                )?;
                crate::mqtt::out_line(&format!("sent {id} by {channel} to {}", mask(&to)));
            }
            Err((channel, to, f)) => {
                let give_up = attempts >= cfg.max_attempts;
                let next = now + send::backoff(attempts, cfg.retry_after).as_millis() as i64;
                db.exec(
                    "UPDATE notifications SET state = $2, next_ms = $3, last_error = $4,
                         channel = COALESCE($5, channel), recipient = COALESCE($6, recipient),
                         claimed_until = NULL
                     WHERE id = $1 AND claimed_by = $7",
                    &params![
                        id.as_str(),
                        if give_up { "failed" } else { "pending" },
                        next,
                        f.error.as_str(),
                        channel,
                        to,
                        o.name.as_str()
                    ],
                )?;
                eprintln!(
                    "callbox-hq: notify: {id}, attempt {attempts}: {}{}",
                    f.error,
                    if give_up { "; given up (failed)" } else { "" }
                );
            }
        }
    }
    Ok(rows.len())
}

/// A phone number or address with its middle hidden, for the log.
fn mask(to: &str) -> String {
    let chars: Vec<char> = to.chars().collect();
    if chars.len() <= 6 {
        return "***".into();
    }
    let keep = 3;
    format!(
        "{}***{}",
        chars[..keep].iter().collect::<String>(),
        chars[chars.len() - keep..].iter().collect::<String>()
    )
}

type Delivered = (String, String, String);
type NotDelivered = (Option<String>, Option<String>, Failure);

/// Sends one message: (channel, recipient, the server's answer).
fn deliver(db: &mut Db, cfg: &Config, o: &Options, r: &[Cell]) -> Result<Delivered, NotDelivered> {
    let fail = |c: Option<&str>, t: Option<&str>, f: Failure| {
        (c.map(str::to_string), t.map(str::to_string), f)
    };
    let id = r[0].text().unwrap_or("");
    let kind = r[3].text().unwrap_or("");
    let data: Value = serde_json::from_str(r[4].text().unwrap_or("{}")).unwrap_or(Value::Null);
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    values.insert("site".into(), r[1].text().unwrap_or("").into());
    values.insert("box".into(), r[2].text().unwrap_or("").into());
    values.insert("caller".into(), str_of(&data, "caller").unwrap_or_default());
    values.insert(
        "call_id".into(),
        str_of(&data, "call_id").unwrap_or_default(),
    );
    values.insert("event".into(), kind.to_string());
    let message_id = crate::recordings::hex(&<sha2::Sha256 as sha2::Digest>::digest(id.as_bytes()))
        [..32]
        .to_string();
    values.insert("message_id".into(), message_id.clone());
    if kind == "voicemail" {
        let Some(v) = &cfg.voicemail else {
            return Err(fail(
                Some("email"),
                None,
                Failure::permanent("no [voicemail] in the notifier's config"),
            ));
        };
        let Some(smtp) = &cfg.smtp else {
            return Err(fail(
                Some("email"),
                None,
                Failure::permanent("voicemail goes by e-mail but there is no [smtp]"),
            ));
        };
        let mailbox = str_of(&data, "mailbox").unwrap_or_default();
        let Some(to) = v.mailboxes.get(&mailbox).or(v.to.as_ref()).cloned() else {
            return Err(fail(
                Some("email"),
                None,
                Failure::permanent(format!("[voicemail]: no address for mailbox `{mailbox}`")),
            ));
        };
        values.insert("to".into(), to.clone());
        values.insert("mailbox".into(), mailbox);
        let secs = data.get("duration_ms").and_then(Value::as_i64).unwrap_or(0) / 1000;
        values.insert("duration_s".into(), secs.to_string());
        let rec = str_of(&data, "id").unwrap_or_default();
        let file = recording(db, o, &rec).map_err(|f| fail(Some("email"), Some(&to), f))?;
        let subject = config::fill(&v.subject, &values, str::to_string);
        let text = config::fill(&v.text, &values, str::to_string);
        return send::email(smtp, &message_id, &to, &subject, &text, &[file])
            .map(|a| ("email".to_string(), to.clone(), a))
            .map_err(|f| fail(Some("email"), Some(&to), f));
    }
    let fields = data.get("fields").cloned().unwrap_or(Value::Null);
    if let Some(obj) = fields.as_object() {
        for (k, v) in obj {
            values.insert(
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_string),
            );
        }
    }
    let Some(k) = cfg.kinds.get(kind) else {
        return Err(fail(
            None,
            None,
            Failure::permanent(format!("no [kind.{kind}] in the notifier's config")),
        ));
    };
    let channel = str_of(&fields, "channel")
        .or_else(|| k.channel.clone())
        .unwrap_or_default();
    let Some(to) = str_of(&fields, "to").filter(|t| !t.is_empty()) else {
        return Err(fail(
            Some(&channel),
            None,
            Failure::permanent("the message has no `to` field"),
        ));
    };
    values.insert("to".into(), to.clone());
    match channel.as_str() {
        "email" => {
            let (Some(smtp), Some(subject), Some(text)) =
                (&cfg.smtp, &k.email_subject, &k.email_text)
            else {
                return Err(fail(
                    Some("email"),
                    Some(&to),
                    Failure::permanent(format!(
                        "[kind.{kind}] has no e-mail template, or there is no [smtp]"
                    )),
                ));
            };
            let mut files = Vec::new();
            if let Some(field) = &k.attach {
                let name = values.get(field).cloned().unwrap_or_default();
                let Some(path) = cfg.documents.get(&name) else {
                    return Err(fail(
                        Some("email"),
                        Some(&to),
                        Failure::permanent(format!("no document `{name}` in [documents]")),
                    ));
                };
                let bytes = std::fs::read(path).map_err(|e| {
                    fail(
                        Some("email"),
                        Some(&to),
                        Failure::transient(format!("{}: {e}", path.display())),
                    )
                })?;
                let fname = path
                    .file_name()
                    .map_or_else(|| name.clone(), |n| n.to_string_lossy().into_owned());
                files.push(File { name: fname, bytes });
            }
            let subject = config::fill(subject, &values, str::to_string);
            let text = config::fill(text, &values, str::to_string);
            send::email(smtp, &message_id, &to, &subject, &text, &files)
                .map(|a| ("email".to_string(), to.clone(), a))
                .map_err(|f| fail(Some("email"), Some(&to), f))
        }
        "sms" => {
            let (Some(g), Some(text)) = (&cfg.sms, &k.sms_text) else {
                return Err(fail(
                    Some("sms"),
                    Some(&to),
                    Failure::permanent(format!(
                        "[kind.{kind}] has no sms_text, or there is no [sms]"
                    )),
                ));
            };
            let text = config::fill(text, &values, str::to_string);
            values.insert("text".into(), text);
            if let Some(s) = &g.secret {
                values.insert("secret".into(), s.clone());
            }
            let escape = |s: &str| {
                if g.content_type.starts_with("application/json") {
                    send::json_escape(s)
                } else if g
                    .content_type
                    .starts_with("application/x-www-form-urlencoded")
                {
                    send::form_escape(s)
                } else {
                    s.to_string()
                }
            };
            let body = config::fill(&g.body, &values, escape);
            let headers: Vec<(String, String)> = g
                .headers
                .iter()
                .map(|(h, v)| (h.clone(), config::fill(v, &values, str::to_string)))
                .collect();
            send::sms(g, &headers, &body)
                .map(|a| ("sms".to_string(), to.clone(), a))
                .map_err(|f| fail(Some("sms"), Some(&to), f))
        }
        other => Err(fail(
            None,
            Some(&to),
            Failure::permanent(format!("channel `{other}` is not email or sms")),
        )),
    }
}

/// A voicemail's recording as stored by the collectors, decrypted if it
/// was sealed; one not stored yet is waited for.
fn recording(db: &mut Db, o: &Options, id: &str) -> Result<File, Failure> {
    use crate::recordings::LoadError;
    let bytes = crate::recordings::load(db, o.recordings.as_deref(), o.identity.as_deref(), id)
        .map_err(|e| match e {
            LoadError::NotStored => Failure::transient(format!(
                "the recording {id} has not reached headquarters yet"
            )),
            LoadError::NoIdentity => Failure::permanent(format!(
                "the recording {id} is encrypted and no --identity was given"
            )),
            LoadError::Failed(e) => Failure::transient(e),
        })?;
    Ok(File {
        name: format!("voicemail-{id}.wav"),
        bytes,
    })
}

/// `callbox-hq notify --retry-failed`: messages given up go back to
/// pending, due now; how many.
pub fn retry_failed(db: &mut Db) -> Result<u64> {
    db.exec(
        "UPDATE notifications SET state = 'pending', next_ms = $1, attempts = 0 WHERE state = 'failed'",
        &params![crate::mqtt::now_ms()],
    )
    .context("retrying the failed messages")
}
