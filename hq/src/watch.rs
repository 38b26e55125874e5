//! `callbox-hq watch`: the boxes' live events (`{b}/events/{kind}`) and
//! presence changes (`{b}/status`) as they happen, one line each:
//!
//! ```text
//! 2026-11-23T10:00:05.120Z branch-1/box-0001 agent {"agent":"alice","state":"paused",…}
//! 2026-11-23T10:00:07.000Z branch-1/box-0001 status offline reason=lost session=41
//! ```
//!
//! The time is the message's `at` (now, if it has none). A late will (an
//! offline status of an older session than the last online one seen) is
//! skipped, as the contract asks of readers. Lines are flushed one by one:
//! readers follow through a pipe.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Result, bail};
use callbox_contract::{ID_RULE, valid_id};
use rumqttc::QoS;
use serde_json::Value;

use crate::mqtt::{self, Broker, Note, out_line};

/// Turns messages into lines, remembering each box's online session.
#[derive(Debug, Default)]
pub struct Watch {
    online: HashMap<(String, String), u64>,
}

impl Watch {
    /// The line for a message; `Ok(None)` for one to skip (a late will, a
    /// cleared retained message, another topic).
    pub fn line(
        &mut self,
        root: &str,
        topic: &str,
        payload: &[u8],
    ) -> Result<Option<String>, String> {
        let Some(t) = mqtt::split(root, topic) else {
            return Ok(None);
        };
        if payload.is_empty() {
            return Ok(None);
        }
        let v: Value =
            serde_json::from_slice(payload).map_err(|e| format!("{topic}: not JSON ({e})"))?;
        let Some(obj) = v.as_object() else {
            return Err(format!("{topic}: not a JSON object"));
        };
        let at = obj
            .get("at")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
            .map_or_else(mqtt::now_text, str::to_string);
        let who = format!("{}/{}", t.site, t.box_id);
        if t.rest == "status" {
            let state = obj.get("state").and_then(Value::as_str).unwrap_or("?");
            let session = obj.get("session").and_then(Value::as_u64);
            let key = (t.site.to_string(), t.box_id.to_string());
            match (state, session) {
                ("online", Some(s)) => {
                    let e = self.online.entry(key).or_insert(s);
                    *e = (*e).max(s);
                }
                ("offline", Some(s)) if self.online.get(&key).is_some_and(|&o| s < o) => {
                    return Ok(None);
                }
                _ => {}
            }
            let mut line = format!("{at} {who} status {state}");
            if let Some(r) = obj.get("reason").and_then(Value::as_str) {
                line.push_str(&format!(" reason={r}"));
            }
            if let Some(s) = session {
                line.push_str(&format!(" session={s}"));
            }
            if let Some(fw) = obj.get("firmware").and_then(Value::as_str) {
                line.push_str(&format!(" firmware={fw}"));
            }
            return Ok(Some(line));
        }
        let Some(kind) = t.rest.strip_prefix("events/") else {
            return Ok(None);
        };
        let data = match obj.get("data") {
            Some(d) => d.to_string(),
            None => {
                let mut rest = obj.clone();
                for k in ["v", "site", "box", "kind", "at"] {
                    rest.remove(k);
                }
                Value::Object(rest).to_string()
            }
        };
        Ok(Some(format!("{at} {who} {kind} {data}")))
    }
}

/// Runs `watch` until SIGINT/SIGTERM (or until stdout is closed).
pub async fn run(broker: &Broker, site: Option<&str>, box_id: Option<&str>) -> Result<()> {
    for (opt, id) in [("--site", site), ("--box", box_id)] {
        if let Some(id) = id
            && !valid_id(id)
        {
            bail!("{opt} `{id}`: use {ID_RULE}");
        }
    }
    let stop = mqtt::shutdown_signal()?;
    let base = broker.base(site.unwrap_or("+"), box_id.unwrap_or("+"));
    let subs = vec![
        (format!("{base}/events/#"), QoS::AtMostOnce),
        (format!("{base}/status"), QoS::AtLeastOnce),
    ];
    let client_id = mqtt::client_id("watch");
    let mut conn = mqtt::spawn(broker.options(&client_id, true), subs);
    let mut watch = Watch::default();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            note = conn.notes.recv() => match note {
                Some(Note::Message(p)) => match watch.line(&broker.root, &p.topic, &p.payload) {
                    Ok(Some(line)) => {
                        if !out_line(&line) {
                            break;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => eprintln!("callbox-hq: watch: {e}"),
                },
                Some(Note::Subscribed { refused }) if !refused.is_empty() => {
                    conn.close(Duration::from_secs(1)).await;
                    bail!("the broker refused the subscription to {}", refused.join(" and "));
                }
                Some(Note::Subscribed { .. }) => {
                    out_line(&format!("# subscribed to {base}/events/# and {base}/status"));
                }
                Some(Note::Lost { error, retry_in }) => eprintln!(
                    "callbox-hq: watch: {}: {error}; retrying in {}s",
                    broker.url,
                    retry_in.as_secs()
                ),
                Some(Note::Connected { .. }) => {}
                None => bail!("the connection task ended"),
            },
        }
    }
    conn.close(Duration::from_secs(2)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(w: &mut Watch, topic: &str, payload: &str) -> Option<String> {
        w.line("callbox", topic, payload.as_bytes()).unwrap()
    }

    #[test]
    fn events_print_time_box_kind_and_compact_data() {
        let mut w = Watch::default();
        let l = line(
            &mut w,
            "callbox/s1/b1/events/agent",
            r#"{"v":1,"site":"s1","box":"b1","kind":"agent","at":"2026-01-01T10:00:00.000Z",
                "data":{"agent":"alice","state":"paused"}}"#,
        );
        assert_eq!(
            l.as_deref(),
            Some(r#"2026-01-01T10:00:00.000Z s1/b1 agent {"agent":"alice","state":"paused"}"#)
        );
    }

    #[test]
    fn status_lines_skip_a_late_will() {
        let mut w = Watch::default();
        let t = "callbox/s1/b1/status";
        let on = line(
            &mut w,
            t,
            r#"{"v":1,"state":"online","session":42,"firmware":"0.1.0","at":"A"}"#,
        );
        assert_eq!(
            on.as_deref(),
            Some("A s1/b1 status online session=42 firmware=0.1.0")
        );
        let late = r#"{"v":1,"state":"offline","reason":"lost","session":41,"at":"B"}"#;
        assert_eq!(line(&mut w, t, late), None);
        let off = r#"{"v":1,"state":"offline","reason":"stopped","session":42,"at":"C"}"#;
        assert_eq!(
            line(&mut w, t, off).as_deref(),
            Some("C s1/b1 status offline reason=stopped session=42")
        );
    }

    #[test]
    fn a_malformed_event_is_an_error_not_a_line() {
        let mut w = Watch::default();
        assert!(w.line("callbox", "callbox/s1/b1/events/x", b"{").is_err());
        assert_eq!(line(&mut w, "callbox/s1/b1/events/x", ""), None);
    }
}
