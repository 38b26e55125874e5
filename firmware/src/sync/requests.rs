//! Headquarters' commands as the link sees them (`{b}/cmd/{request}` →
//! `{b}/resp/{request}`): checked before anything runs, run once per
//! request id however often the broker delivers them, and answered until
//! the broker has the answer. What each command does is
//! [`CommandHandler`](super::CommandHandler)'s business (`commands.rs`).

use std::sync::Arc;

use rumqttc::QoS;
use serde_json::{Value, json};

use super::actor::{Actor, Sent};
use super::config::valid_topic_id;

/// Answers remembered for commands delivered again (QoS 1 redelivery after
/// a reconnect): a repeated request id gets the same answer, and the
/// command (an outbound call, a restart) does not run twice.
const ANSWERS_KEPT: usize = 256;

/// A command's answer: request id, result, whether it was a successful
/// `config.set` or `lookup.update` (the reported config changed).
pub(super) type Answer = (String, Result<Value, String>, bool);

impl Actor {
    pub(super) fn on_command(&mut self, req: String, payload: &[u8]) {
        if !valid_topic_id(&req) {
            tracing::warn!(request = %req, "command with an invalid request id; dropped");
            return;
        }
        if self.running.contains(&req) {
            tracing::info!(request = %req, "command delivered again while it runs; ignored");
            return;
        }
        if let Some((_, body)) = self.answered.iter().find(|(id, _)| *id == req) {
            tracing::info!(request = %req, "command delivered again; sending its answer again");
            let (topic, body) = (format!("{}/resp/{req}", self.base), body.clone());
            self.publish(topic, QoS::AtLeastOnce, false, body, Sent::Other);
            return;
        }
        let parsed = parse_command(
            payload,
            &req,
            &self.d.uplink.box_id,
            self.d.uplink.max_message,
        );
        let (cmd, args) = match parsed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(request = %req, "bad command: {e}");
                self.respond(&req, Err(e));
                return;
            }
        };
        tracing::info!(request = %req, cmd = %cmd, "command from headquarters");
        self.running.insert(req.clone());
        let tx = self.responses.0.clone();
        if cmd == "status" {
            // The answer is the telemetry message, envelope included.
            let source = self.d.telemetry.clone();
            let envelope = self.telemetry_message(json!({}));
            tokio::spawn(async move {
                let mut snap = source.snapshot().await;
                if let (Some(s), Some(e)) = (snap.as_object_mut(), envelope.as_object()) {
                    for (k, v) in e {
                        s.insert(k.clone(), v.clone());
                    }
                }
                let _ = tx.send((req, Ok(snap), false)).await;
            });
            return;
        }
        let handler: Arc<dyn super::CommandHandler> = self.d.commands.clone();
        tokio::spawn(async move {
            let run = {
                let cmd = cmd.clone();
                tokio::spawn(async move { handler.handle(&cmd, args).await })
            };
            let result = run
                .await
                .unwrap_or_else(|e| Err(format!("the command failed inside the box: {e}")));
            // Both change the config file, so its reported checksum.
            let set = matches!(cmd.as_str(), "config.set" | "lookup.update") && result.is_ok();
            let _ = tx.send((req, result, set)).await;
        });
    }

    pub(super) fn respond(&mut self, req: &str, result: Result<Value, String>) {
        self.running.remove(req);
        let mut m = match result {
            Ok(r) => json!({"v": 1, "id": req, "ok": true, "result": r}),
            Err(e) => json!({"v": 1, "id": req, "ok": false, "error": e}),
        };
        let mut body = m.to_string();
        if body.len() > self.d.uplink.max_message {
            m = json!({"v": 1, "id": req, "ok": false, "error": format!(
                "the answer is {} bytes, more than max_message ({}) allows; ask for less",
                body.len(), self.d.uplink.max_message)});
            body = m.to_string();
        }
        let topic = format!("{}/resp/{req}", self.base);
        if self.answered.len() >= ANSWERS_KEPT {
            self.answered.pop_front();
        }
        self.answered
            .push_back((req.to_string(), body.clone().into_bytes()));
        // Kept until the broker acknowledges it: the command itself was
        // acknowledged on arrival and will not come again.
        self.unsent_answers
            .insert(req.to_string(), body.clone().into_bytes());
        if !self.publish(
            topic,
            QoS::AtLeastOnce,
            false,
            body.into_bytes(),
            Sent::Answer(req.to_string()),
        ) {
            tracing::warn!(request = %req, "the answer waits for the connection");
        }
    }

    /// After a reconnect: answers the broker had not acknowledged go again.
    pub(super) fn resend_answers(&mut self) {
        let answers: Vec<(String, Vec<u8>)> = self.unsent_answers.drain().collect();
        for (req, body) in answers {
            let topic = format!("{}/resp/{req}", self.base);
            self.publish(topic, QoS::AtLeastOnce, false, body, Sent::Answer(req));
        }
    }
}

/// Checks a command's payload: `(cmd, args)` or the reason it is refused.
fn parse_command(
    payload: &[u8],
    req: &str,
    box_id: &str,
    max: usize,
) -> Result<(String, Value), String> {
    if payload.len() > max {
        return Err(format!(
            "command of {} bytes is larger than the {max} bytes allowed",
            payload.len()
        ));
    }
    let v: Value =
        serde_json::from_slice(payload).map_err(|e| format!("command is not valid JSON: {e}"))?;
    let Some(o) = v.as_object() else {
        return Err("command must be a JSON object".into());
    };
    match o.get("v") {
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
        None => {}
        Some(other) => {
            return Err(format!(
                "unsupported command version {other}; this box speaks v 1"
            ));
        }
    }
    if let Some(b) = o.get("box") {
        match b.as_str() {
            Some(b) if b == box_id => {}
            Some(b) => {
                return Err(format!(
                    "command is addressed to box `{b}`; this is `{box_id}`"
                ));
            }
            None => return Err("`box` must be a string".into()),
        }
    }
    if let Some(id) = o.get("id")
        && id.as_str() != Some(req)
    {
        return Err(format!(
            "`id` {id} does not match the request id `{req}` in the topic"
        ));
    }
    let cmd = match o.get("cmd") {
        Some(Value::String(c)) => c.clone(),
        Some(_) => return Err("`cmd` must be a string".into()),
        None => return Err("missing `cmd`".into()),
    };
    let args = o
        .get("args")
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    if !args.is_object() {
        return Err("`args` must be a JSON object".into());
    }
    Ok((cmd, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_checked_before_anything_runs() {
        let ok = parse_command(
            br#"{"v":1,"cmd":"agent","box":"b1","args":{"x":1}}"#,
            "r1",
            "b1",
            1000,
        )
        .unwrap();
        assert_eq!(ok.0, "agent");
        assert_eq!(ok.1["x"], 1);
        let err = |p: &[u8]| parse_command(p, "r1", "b1", 100).unwrap_err();
        assert!(err(b"{nope").contains("not valid JSON"));
        assert!(err(b"[1]").contains("JSON object"));
        assert!(err(br#"{"cmd":7}"#).contains("`cmd` must be a string"));
        assert!(err(br#"{"args":{}}"#).contains("missing `cmd`"));
        assert!(err(br#"{"cmd":"x","args":[1]}"#).contains("`args` must be"));
        assert!(err(br#"{"cmd":"x","box":"b2"}"#).contains("addressed to box `b2`"));
        assert!(err(br#"{"cmd":"x","v":2}"#).contains("unsupported command version"));
        assert!(err(br#"{"cmd":"x","id":"r2"}"#).contains("does not match"));
        assert!(err(&[b' '; 200]).contains("larger than the 100 bytes"));
    }
}
