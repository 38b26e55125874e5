//! What the box says about itself over the link: presence on
//! `{b}/status` (online on connect, offline as the will and on a clean
//! stop), the config it runs on `{b}/config/reported`, telemetry on
//! `{b}/telemetry` and live events on `{b}/events/{kind}` (docs/mqtt.md).

use rumqttc::QoS;
use serde_json::{Value, json};

use super::actor::{Actor, Sent};
use crate::clock::rfc3339_ms;
use crate::events::Event as LiveEvent;

/// Firmware version in presence and telemetry.
const FIRMWARE: &str = env!("CARGO_PKG_VERSION");

impl Actor {
    pub(super) fn status(&self, state: &str, reason: Option<&str>) -> Vec<u8> {
        let mut m = json!({
            "v": 1,
            "state": state,
            "site": self.d.site_id,
            "box": self.d.uplink.box_id,
            "firmware": FIRMWARE,
            "boot_id": self.d.clock.boot_id(),
            "session": self.session,
            "at": rfc3339_ms(now_ms()),
        });
        if let Some(r) = reason {
            m["reason"] = r.into();
        }
        m.to_string().into_bytes()
    }

    pub(super) fn publish_online(&mut self) {
        let online = self.status("online", None);
        let topic = format!("{}/status", self.base);
        self.publish(topic, QoS::AtLeastOnce, true, online, Sent::Other);
    }

    pub(super) fn publish_reported(&mut self) {
        let mut r = self.d.commands.reported_config();
        r["v"] = 1.into();
        let topic = format!("{}/config/reported", self.base);
        self.publish(
            topic,
            QoS::AtLeastOnce,
            true,
            r.to_string().into_bytes(),
            Sent::Other,
        );
    }

    pub(super) fn publish_event(&mut self, e: LiveEvent) {
        if !self.connected {
            return;
        }
        let m = json!({
            "v": 1,
            "site": self.d.site_id,
            "box": self.d.uplink.box_id,
            "kind": e.kind,
            "at": rfc3339_ms(e.at.wall_ms),
            "data": e.data,
        });
        let topic = format!("{}/events/{}", self.base, e.kind);
        self.publish(
            topic,
            QoS::AtMostOnce,
            false,
            m.to_string().into_bytes(),
            Sent::Other,
        );
    }

    pub(super) fn request_telemetry(&mut self) {
        let source = self.d.telemetry.clone();
        let tx = self.telemetry.0.clone();
        tokio::spawn(async move {
            let _ = tx.send(source.snapshot().await).await;
        });
    }

    pub(super) fn telemetry_message(&self, mut t: Value) -> Value {
        if !t.is_object() {
            t = json!({});
        }
        t["v"] = 1.into();
        t["site"] = self.d.site_id.clone().into();
        t["box"] = self.d.uplink.box_id.clone().into();
        t["at"] = rfc3339_ms(now_ms()).into();
        t["boot_id"] = self.d.clock.boot_id().into();
        t["session"] = self.session.into();
        t["firmware"] = FIRMWARE.into();
        let records = self.reader.backlog().unwrap_or(-1);
        let (recordings, bytes) = self.reader.recording_backlog().unwrap_or((-1, -1));
        t["backlog"] =
            json!({"records": records, "recordings": recordings, "recording_bytes": bytes});
        t
    }

    /// Publishes a telemetry snapshot (retained); when the message would be
    /// too large the lists go and the figures stay.
    pub(super) fn publish_telemetry(&mut self, t: Value) {
        let mut m = self.telemetry_message(t);
        let mut payload = m.to_string().into_bytes();
        if payload.len() > self.d.uplink.max_message {
            // Lists grow with the site; the figures must still go.
            for k in ["agents", "queues", "lines", "alarms"] {
                m[k] = json!([]);
            }
            m["truncated"] = true.into();
            payload = m.to_string().into_bytes();
        }
        let topic = format!("{}/telemetry", self.base);
        self.publish(topic, QoS::AtLeastOnce, true, payload, Sent::Other);
    }

    /// Our own status topic, as the broker has it.
    pub(super) fn on_status(&mut self, payload: &[u8]) {
        // A will from an older session arriving late must not leave
        // this box looking offline.
        if let Ok(v) = serde_json::from_slice::<Value>(payload)
            && v["state"] == "offline"
            && v["session"].as_i64().is_some_and(|s| s < self.session)
        {
            tracing::info!(
                "an old session's offline status was published late; announcing online again"
            );
            self.publish_online();
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
