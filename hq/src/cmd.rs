//! `callbox-hq cmd` and `callbox-hq config push|get`: one command to one
//! box and its answer (docs/mqtt.md, "Commands").
//!
//! The answer topic `{b}/resp/{request}` is subscribed before the command
//! is published on `{b}/cmd/{request}`, so the answer cannot be missed.
//! Exit codes: 0 for `ok: true`, 1 for `ok: false` (the error also goes to
//! stderr), 2 when no answer came in time; a bad invocation (arguments,
//! files) exits 64 before anything is sent.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use callbox_contract::{ID_RULE, valid_id};
use rumqttc::QoS;
use serde_json::{Value, json};

use crate::mqtt::{self, Broker, Note, out_line};

/// Whom to ask and how long to wait.
#[derive(Debug, Clone)]
pub struct Target {
    /// Site id.
    pub site: String,
    /// Box id.
    pub box_id: String,
    /// Request id (generated when `None`).
    pub id: Option<String>,
    /// How long to wait for the answer.
    pub timeout: Duration,
}

/// The box's answer.
#[derive(Debug)]
pub enum Answer {
    /// An answer: its text (one line) and what it says.
    Reply {
        /// The payload, on one line.
        text: String,
        /// Parsed; `None` if the payload is not JSON.
        value: Option<Value>,
    },
    /// None in time.
    Timeout,
}

impl Answer {
    /// `ok` of the answer, or why it cannot be read.
    fn ok(value: Option<&Value>) -> Result<bool, String> {
        match value.map(|v| &v["ok"]) {
            Some(Value::Bool(ok)) => Ok(*ok),
            Some(_) => Err("malformed answer: no boolean `ok`".into()),
            None => Err("malformed answer: not JSON".into()),
        }
    }
}

/// A request id: `hq-<ms>-<random>`.
fn new_request_id() -> String {
    format!("hq-{}-{:04x}", mqtt::now_ms(), mqtt::random_u64() as u16)
}

/// `{"v":1,"cmd","box","args"}`.
pub fn command_payload(cmd: &str, box_id: &str, args: Value) -> Vec<u8> {
    json!({"v": 1, "cmd": cmd, "box": box_id, "args": args})
        .to_string()
        .into_bytes()
}

/// Checks the target before anything is sent (errors exit 64).
pub fn check(t: &Target) -> Result<()> {
    for (what, id) in [
        ("--site", Some(&t.site)),
        ("BOX", Some(&t.box_id)),
        ("--id", t.id.as_ref()),
    ] {
        if let Some(id) = id
            && !valid_id(id)
        {
            bail!("{what} `{id}`: use {ID_RULE}");
        }
    }
    Ok(())
}

/// Publishes `payload` as a command to the target and waits for its answer.
pub async fn request(broker: &Broker, t: &Target, payload: Vec<u8>) -> Result<Answer> {
    let req = t.id.clone().unwrap_or_else(new_request_id);
    let base = broker.base(&t.site, &t.box_id);
    let resp_topic = format!("{base}/resp/{req}");
    let cmd_topic = format!("{base}/cmd/{req}");
    let mut conn = mqtt::spawn(
        broker.options(&mqtt::client_id("cmd"), true),
        vec![(resp_topic.clone(), QoS::AtLeastOnce)],
    );
    let deadline = tokio::time::Instant::now() + t.timeout;
    let mut payload = Some(payload);
    let mut last_error: Option<String> = None;
    let answer = loop {
        let note = match tokio::time::timeout_at(deadline, conn.notes.recv()).await {
            Err(_) => break Answer::Timeout,
            Ok(None) => bail!("the connection task ended"),
            Ok(Some(n)) => n,
        };
        match note {
            Note::Subscribed { refused } if !refused.is_empty() => {
                conn.close(Duration::from_secs(1)).await;
                bail!(
                    "the broker refused the subscription to {}",
                    refused.join(" and ")
                );
            }
            Note::Subscribed { .. } => {
                if let Some(p) = payload.take() {
                    conn.client
                        .publish(cmd_topic.clone(), QoS::AtLeastOnce, false, p)
                        .await
                        .context("publishing the command")?;
                }
            }
            Note::Message(p) if p.topic == resp_topic => {
                let text = String::from_utf8_lossy(&p.payload).into_owned();
                let value: Option<Value> = serde_json::from_str(&text).ok();
                let text = match &value {
                    Some(v) if text.contains(['\n', '\r']) => v.to_string(),
                    _ => text.replace(['\n', '\r'], " "),
                };
                break Answer::Reply { text, value };
            }
            Note::Lost { error, retry_in } => {
                eprintln!(
                    "callbox-hq: {}: {error}; retrying in {}s",
                    broker.url,
                    retry_in.as_secs()
                );
                last_error = Some(error);
            }
            _ => {}
        }
    };
    conn.close(Duration::from_secs(2)).await;
    if let Answer::Timeout = answer {
        let why = match (payload.is_some(), last_error) {
            (true, Some(e)) => format!("; the broker was not reached ({e})"),
            (true, None) => "; the broker did not confirm the subscription".into(),
            (false, _) => String::new(),
        };
        eprintln!(
            "callbox-hq: no answer from {}/{} (request {req}) within {}s{why}",
            t.site,
            t.box_id,
            t.timeout.as_secs_f64()
        );
    }
    Ok(answer)
}

/// Prints an answer as `cmd` does: the JSON on stdout, the error on stderr;
/// the exit code.
pub fn print(t: &Target, answer: &Answer) -> ExitCode {
    match answer {
        Answer::Timeout => ExitCode::from(2),
        Answer::Reply { text, value } => {
            out_line(text);
            exit_for(t, value.as_ref())
        }
    }
}

fn exit_for(t: &Target, value: Option<&Value>) -> ExitCode {
    match Answer::ok(value) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            let error = value
                .and_then(|v| v["error"].as_str())
                .unwrap_or("(no error message)");
            eprintln!("callbox-hq: {}/{}: {error}", t.site, t.box_id);
            ExitCode::from(1)
        }
        Err(why) => {
            eprintln!("callbox-hq: {}/{}: {why}", t.site, t.box_id);
            ExitCode::from(1)
        }
    }
}

/// `cmd`: a command with JSON arguments, or a raw payload.
pub async fn cmd(
    broker: &Broker,
    t: &Target,
    cmd: Option<&str>,
    args: Option<&str>,
    raw: Option<String>,
) -> Result<ExitCode> {
    check(t)?;
    let payload = match (raw, cmd) {
        (Some(raw), _) => raw.into_bytes(),
        (None, Some(cmd)) => {
            let args = match args {
                None => json!({}),
                Some(a) => {
                    serde_json::from_str(a).with_context(|| format!("ARGS_JSON `{a}`: not JSON"))?
                }
            };
            command_payload(cmd, &t.box_id, args)
        }
        (None, None) => bail!("give a command (CMD) or --raw PAYLOAD"),
    };
    let answer = request(broker, t, payload).await?;
    Ok(print(t, &answer))
}

/// `config push`: `config.set` with a config file's text.
pub async fn config_push(
    broker: &Broker,
    t: &Target,
    file: &std::path::Path,
    version: u64,
) -> Result<ExitCode> {
    check(t)?;
    let toml = std::fs::read_to_string(file)
        .with_context(|| format!("{}: cannot read it", file.display()))?;
    let payload = command_payload(
        "config.set",
        &t.box_id,
        json!({"version": version, "toml": toml}),
    );
    let answer = request(broker, t, payload).await?;
    Ok(print(t, &answer))
}

/// `config get`: prints the box's running config file.
pub async fn config_get(broker: &Broker, t: &Target) -> Result<ExitCode> {
    check(t)?;
    let payload = command_payload("config.get", &t.box_id, json!({}));
    let answer = request(broker, t, payload).await?;
    let Answer::Reply { text, value } = &answer else {
        return Ok(ExitCode::from(2));
    };
    if Answer::ok(value.as_ref()) != Ok(true) {
        out_line(text);
        return Ok(exit_for(t, value.as_ref()));
    }
    let toml = value.as_ref().and_then(|v| v["result"]["toml"].as_str());
    match toml {
        Some(toml) => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(toml.as_bytes());
            if !toml.ends_with('\n') {
                let _ = out.write_all(b"\n");
            }
            let _ = out.flush();
            Ok(ExitCode::SUCCESS)
        }
        None => {
            out_line(text);
            eprintln!(
                "callbox-hq: {}/{}: malformed answer: no `result.toml`",
                t.site, t.box_id
            );
            Ok(ExitCode::from(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_follow_the_contract() {
        let p: Value =
            serde_json::from_slice(&command_payload("agent", "b1", json!({"action":"pause"})))
                .unwrap();
        assert_eq!(
            p,
            json!({"v":1,"cmd":"agent","box":"b1","args":{"action":"pause"}})
        );
    }

    #[test]
    fn request_ids_are_valid_topic_ids_and_differ() {
        let (a, b) = (new_request_id(), new_request_id());
        assert!(valid_id(&a) && a.starts_with("hq-"), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn answers_without_a_boolean_ok_are_malformed() {
        assert_eq!(Answer::ok(Some(&json!({"ok":true}))), Ok(true));
        assert_eq!(Answer::ok(Some(&json!({"ok":false}))), Ok(false));
        assert!(Answer::ok(Some(&json!({"ok":"yes"}))).is_err());
        assert!(Answer::ok(None).is_err());
    }

    #[test]
    fn a_bad_target_is_refused_before_sending() {
        let mut t = Target {
            site: "s1".into(),
            box_id: "b/1".into(),
            id: None,
            timeout: Duration::from_secs(1),
        };
        assert!(check(&t).unwrap_err().to_string().contains("BOX"));
        t.box_id = "b1".into();
        t.id = Some("x+".into());
        assert!(check(&t).unwrap_err().to_string().contains("--id"));
    }
}
