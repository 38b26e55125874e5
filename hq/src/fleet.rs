//! `callbox-hq fleet`: a snapshot of the fleet from the retained presence
//! (`{b}/status`) and telemetry (`{b}/telemetry`) messages, gathered for a
//! few seconds and printed as a table or as one JSON object per box.
//!
//! Presence follows the contract's rule against late wills: an offline
//! status whose `session` is lower than the last online one seen for that
//! box is ignored.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail};
use rumqttc::QoS;
use serde_json::{Value, json};

use crate::mqtt::{self, Broker, Note, out_line};

/// What is known of one box.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BoxView {
    /// Site id.
    pub site: String,
    /// Box id.
    pub box_id: String,
    /// `online` / `offline`, from the status accepted last.
    pub state: Option<String>,
    /// Why offline (`lost`, `stopped`).
    pub reason: Option<String>,
    /// The session of the status accepted last.
    pub session: Option<u64>,
    /// The highest session seen online.
    pub online_session: Option<u64>,
    /// `at` of the status.
    pub status_at: Option<String>,
    /// `at` of the telemetry.
    pub telemetry_at: Option<String>,
    /// Firmware version.
    pub firmware: Option<String>,
    /// Lines up.
    pub lines_up: Option<u64>,
    /// Lines in all.
    pub lines_total: Option<u64>,
    /// Lines down, with the box's reason: `(id, reason)`.
    pub lines_down: Vec<(String, Option<String>)>,
    /// Calls in progress.
    pub calls: Option<u64>,
    /// Callers waiting, all queues.
    pub queue_waiting: Option<u64>,
    /// Agents available.
    pub agents_available: Option<u64>,
    /// Records not yet delivered.
    pub backlog_records: Option<u64>,
    /// Codes of the alarms raised.
    pub alarms: Option<Vec<String>>,
}

impl BoxView {
    fn new(site: &str, box_id: &str) -> BoxView {
        BoxView {
            site: site.to_string(),
            box_id: box_id.to_string(),
            ..BoxView::default()
        }
    }

    /// Takes a status message; `false` when it is a late will, ignored.
    pub fn apply_status(&mut self, v: &Value) -> bool {
        let state = v["state"].as_str();
        let session = v["session"].as_u64();
        if state == Some("offline")
            && let (Some(s), Some(online)) = (session, self.online_session)
            && s < online
        {
            return false;
        }
        if state == Some("online") {
            self.online_session = self.online_session.max(session);
        }
        self.state = state.map(str::to_string);
        self.reason = v["reason"].as_str().map(str::to_string);
        self.session = session;
        self.status_at = v["at"].as_str().map(str::to_string);
        if let Some(fw) = v["firmware"].as_str() {
            self.firmware = Some(fw.to_string());
        }
        true
    }

    /// Takes a telemetry message.
    pub fn apply_telemetry(&mut self, v: &Value) {
        self.telemetry_at = v["at"].as_str().map(str::to_string);
        if let Some(fw) = v["firmware"].as_str() {
            self.firmware = Some(fw.to_string());
        }
        let count = |key: &str, pred: &dyn Fn(&Value) -> bool| {
            v[key]
                .as_array()
                .map(|a| a.iter().filter(|x| pred(x)).count() as u64)
        };
        self.lines_total = count("lines", &|_| true);
        self.lines_up = count("lines", &|l| l["up"].as_bool() == Some(true));
        self.lines_down = v["lines"]
            .as_array()
            .map(|ls| {
                ls.iter()
                    .filter(|l| l["up"].as_bool() == Some(false))
                    .map(|l| {
                        (
                            l["id"].as_str().unwrap_or("?").to_string(),
                            l["reason"].as_str().map(str::to_string),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.calls = v["calls_in_progress"].as_u64();
        self.queue_waiting = v["queues"]
            .as_array()
            .map(|qs| qs.iter().filter_map(|q| q["waiting"].as_u64()).sum());
        self.agents_available = count("agents", &|a| a["state"].as_str() == Some("available"));
        self.backlog_records = v["backlog"]["records"].as_u64();
        self.alarms = v["alarms"].as_array().map(|a| {
            a.iter()
                .map(|x| x["code"].as_str().unwrap_or("?").to_string())
                .collect()
        });
    }

    /// The latest of the status's and telemetry's `at`.
    pub fn last_seen(&self) -> Option<&str> {
        // Both are RFC 3339 UTC with the same precision: text order is time order.
        match (self.status_at.as_deref(), self.telemetry_at.as_deref()) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// One JSON object (the `--json` line).
    pub fn to_json(&self) -> Value {
        json!({
            "site": self.site, "box": self.box_id,
            "state": self.state, "reason": self.reason, "session": self.session,
            "last_seen": self.last_seen(), "firmware": self.firmware,
            "lines_up": self.lines_up, "lines_total": self.lines_total,
            "lines_down": self.lines_down.iter()
                .map(|(id, why)| json!({"id": id, "reason": why}))
                .collect::<Vec<_>>(),
            "calls": self.calls, "queue_waiting": self.queue_waiting,
            "agents_available": self.agents_available,
            "backlog_records": self.backlog_records, "alarms": self.alarms,
        })
    }

    fn row(&self) -> Vec<String> {
        let n = |x: Option<u64>| x.map_or_else(|| "-".to_string(), |x| x.to_string());
        let mut lines = match (self.lines_up, self.lines_total) {
            (Some(u), Some(t)) => format!("{u}/{t}"),
            _ => "-".into(),
        };
        if !self.lines_down.is_empty() {
            // Down at a glance: which, not only how many.
            let ids: Vec<&str> = self.lines_down.iter().map(|(id, _)| id.as_str()).collect();
            lines = format!("{lines} ({} down)", ids.join(","));
        }
        let alarms = match &self.alarms {
            Some(a) if !a.is_empty() => a.join(","),
            Some(_) => "0".into(),
            None => "-".into(),
        };
        vec![
            self.site.clone(),
            self.box_id.clone(),
            self.state.clone().unwrap_or_else(|| "?".into()),
            self.last_seen().unwrap_or("-").to_string(),
            self.firmware.clone().unwrap_or_else(|| "-".into()),
            lines,
            n(self.calls),
            n(self.queue_waiting),
            n(self.agents_available),
            n(self.backlog_records),
            alarms,
        ]
    }
}

/// The fleet seen so far, by (site, box).
#[derive(Debug, Default)]
pub struct Fleet {
    boxes: BTreeMap<(String, String), BoxView>,
}

impl Fleet {
    /// Takes a message on `{root}/{site}/{box}/status|telemetry`.
    pub fn apply(&mut self, root: &str, topic: &str, payload: &[u8]) -> Result<(), String> {
        let Some(t) = mqtt::split(root, topic) else {
            return Ok(());
        };
        if payload.is_empty() {
            // A retained message being cleared.
            return Ok(());
        }
        let v: Value =
            serde_json::from_slice(payload).map_err(|e| format!("{topic}: not JSON ({e})"))?;
        if !v.is_object() {
            return Err(format!("{topic}: not a JSON object"));
        }
        let view = self
            .boxes
            .entry((t.site.to_string(), t.box_id.to_string()))
            .or_insert_with(|| BoxView::new(t.site, t.box_id));
        match t.rest {
            "status" if !view.apply_status(&v) => {
                return Err(format!(
                    "{topic}: ignored an offline status of session {} (online in session {} seen)",
                    v["session"],
                    view.online_session.unwrap_or(0)
                ));
            }
            "telemetry" => view.apply_telemetry(&v),
            _ => {}
        }
        Ok(())
    }

    /// The boxes, ordered by site then box.
    pub fn boxes(&self) -> impl Iterator<Item = &BoxView> {
        self.boxes.values()
    }

    /// The table, header first, columns padded.
    pub fn table(&self) -> Vec<String> {
        let header = [
            "SITE",
            "BOX",
            "STATE",
            "LAST SEEN",
            "FIRMWARE",
            "LINES",
            "CALLS",
            "WAITING",
            "AGENTS",
            "BACKLOG",
            "ALARMS",
        ]
        .map(String::from)
        .to_vec();
        let mut rows = vec![header];
        rows.extend(self.boxes().map(BoxView::row));
        let cols = rows[0].len();
        let widths: Vec<usize> = (0..cols)
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        rows.iter()
            .map(|r| {
                let cells: Vec<String> = r
                    .iter()
                    .zip(&widths)
                    .map(|(cell, w)| format!("{cell:<w$}"))
                    .collect();
                cells.join("  ").trim_end().to_string()
            })
            .collect()
    }
}

/// Runs `fleet`: connects, gathers for `wait` after subscribing, prints.
pub async fn run(broker: &Broker, json: bool, wait: Duration) -> Result<()> {
    const CONNECT: Duration = Duration::from_secs(10);
    let subs = ["status", "telemetry"]
        .iter()
        .map(|k| (format!("{}/+/+/{k}", broker.root), QoS::AtLeastOnce))
        .collect();
    let mut conn = mqtt::spawn(broker.options(&mqtt::client_id("fleet"), true), subs);
    let mut fleet = Fleet::default();
    let mut deadline = tokio::time::Instant::now() + CONNECT;
    let mut subscribed = false;
    let mut last_error = None;
    loop {
        let note = match tokio::time::timeout_at(deadline, conn.notes.recv()).await {
            Err(_) if subscribed => break,
            Err(_) => {
                conn.close(Duration::from_secs(1)).await;
                bail!(
                    "cannot reach the broker {} within {}s{}",
                    broker.url,
                    CONNECT.as_secs(),
                    last_error.map_or(String::new(), |e| format!(": {e}"))
                );
            }
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
            Note::Subscribed { .. } if !subscribed => {
                subscribed = true;
                deadline = tokio::time::Instant::now() + wait;
            }
            Note::Message(p) => {
                if let Err(e) = fleet.apply(&broker.root, &p.topic, &p.payload) {
                    eprintln!("callbox-hq: fleet: {e}");
                }
            }
            Note::Lost { error, .. } => last_error = Some(error),
            _ => {}
        }
    }
    conn.close(Duration::from_secs(2)).await;
    if json {
        for b in fleet.boxes() {
            out_line(&b.to_json().to_string());
        }
    } else {
        for line in fleet.table() {
            out_line(&line);
        }
        if fleet.boxes.is_empty() {
            eprintln!(
                "callbox-hq: fleet: no box under {}/ on {}",
                broker.root, broker.url
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: &str, session: u64, at: &str) -> Vec<u8> {
        json!({"v":1,"state":state,"site":"s1","box":"b1","firmware":"0.1.0",
               "boot_id":"x","session":session,"at":at,"reason":"lost"})
        .to_string()
        .into_bytes()
    }

    const S: &str = "callbox/s1/b1/status";

    #[test]
    fn a_late_will_of_an_older_session_does_not_hide_a_live_box() {
        let mut f = Fleet::default();
        f.apply(
            "callbox",
            S,
            &status("online", 42, "2026-01-01T10:00:01.000Z"),
        )
        .unwrap();
        let e = f
            .apply(
                "callbox",
                S,
                &status("offline", 41, "2026-01-01T10:00:02.000Z"),
            )
            .unwrap_err();
        assert!(e.contains("session 41"), "{e}");
        let b = f.boxes().next().unwrap();
        assert_eq!(b.state.as_deref(), Some("online"));
        assert_eq!(b.session, Some(42));
        // The same session going offline is real.
        f.apply(
            "callbox",
            S,
            &status("offline", 42, "2026-01-01T10:00:03.000Z"),
        )
        .unwrap();
        assert_eq!(f.boxes().next().unwrap().state.as_deref(), Some("offline"));
    }

    #[test]
    fn telemetry_is_summed_up_per_box() {
        let mut f = Fleet::default();
        let t = json!({"v":1,"at":"2026-01-01T10:00:05.000Z","firmware":"0.2.0",
            "lines":[{"id":"t1","up":true},{"id":"t2","up":false,"state":"down","reason":"no phone registered"},{"id":"t3","up":true}],
            "calls_in_progress":3,
            "queues":[{"name":"a","waiting":2},{"name":"b","waiting":1}],
            "agents":[{"id":"x","state":"available"},{"id":"y","state":"paused"}],
            "backlog":{"records":7},
            "alarms":[{"code":"disk_full"},{"code":"line_down"}]});
        f.apply(
            "callbox",
            S,
            &status("online", 1, "2026-01-01T10:00:00.000Z"),
        )
        .unwrap();
        f.apply(
            "callbox",
            "callbox/s1/b1/telemetry",
            t.to_string().as_bytes(),
        )
        .unwrap();
        let j = f.boxes().next().unwrap().to_json();
        assert_eq!(
            j,
            json!({"site":"s1","box":"b1","state":"online","reason":"lost","session":1,
                "last_seen":"2026-01-01T10:00:05.000Z","firmware":"0.2.0",
                "lines_up":2,"lines_total":3,
                "lines_down":[{"id":"t2","reason":"no phone registered"}],"calls":3,"queue_waiting":3,
                "agents_available":1,"backlog_records":7,"alarms":["disk_full","line_down"]})
        );
        let table = f.table();
        assert!(table[0].starts_with("SITE  BOX  STATE"), "{table:?}");
        assert!(table[1].contains("2/3 (t2 down)") && table[1].ends_with("disk_full,line_down"));
    }

    #[test]
    fn malformed_messages_are_reported_not_fatal() {
        let mut f = Fleet::default();
        assert!(f.apply("callbox", S, b"{oops").is_err());
        assert!(f.apply("callbox", S, b"[1]").is_err());
        assert!(f.apply("callbox", S, b"").is_ok());
        assert_eq!(f.boxes().count(), 0);
    }
}
