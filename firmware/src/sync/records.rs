//! Records from the outbox to headquarters (`{b}/records/{stream}`): read
//! ahead in order, batched per stream up to `max_message`, sent again
//! from the oldest not acknowledged after a reconnect, and, with end-to-end
//! acks, until the collector confirms them. A record leaves the outbox only
//! once acknowledged (by the broker, or by the collector with `e2e_ack`).

use std::time::Instant;

use rumqttc::QoS;
use serde_json::Value;

use super::actor::{Actor, Sent};
use crate::clock::rfc3339_ms;
use crate::store::StoreMsg;

/// With end-to-end acks, most records sent and not yet confirmed by the
/// collector: without a collector listening, the link must not push the
/// whole backlog through the broker again every `ack_timeout`.
const E2E_WINDOW: usize = 5000;
/// Most outbox rows read ahead of what is published (memory bound whatever
/// `batch` says).
const READ_AHEAD: usize = 1000;

impl Actor {
    /// Fills the window: records first (in order), then recording chunks.
    pub(super) fn fill(&mut self) {
        let window = usize::from(self.d.uplink.inflight);
        while self.connected && self.outstanding < window {
            let records_open = !self.d.uplink.e2e_ack || self.e2e_unconfirmed < E2E_WINDOW;
            if records_open && self.ready.is_empty() {
                let limit = (self.d.uplink.batch * 2).min(READ_AHEAD);
                match self.reader.rows_after(self.cursor, limit) {
                    Ok(rows) => self.ready.extend(rows),
                    Err(e) => {
                        tracing::error!("fleet link: reading the outbox: {e}");
                        return;
                    }
                }
            }
            if records_open && !self.ready.is_empty() {
                let (topic, payload, rows, held) = self.take_batch();
                let last = *rows.last().unwrap_or(&self.cursor);
                let n = rows.len();
                if !self.publish(
                    topic,
                    QoS::AtLeastOnce,
                    false,
                    payload,
                    Sent::Records { rows, held },
                ) {
                    // Not queued: read again from here next time.
                    self.ready.clear();
                    return;
                }
                self.cursor = last;
                if self.d.uplink.e2e_ack {
                    self.e2e_unconfirmed += n;
                }
                continue;
            }
            if !self.next_chunk() {
                return;
            }
        }
    }

    /// Takes the next message's worth of records of one stream.
    fn take_batch(&mut self) -> (String, Vec<u8>, Vec<i64>, Vec<i64>) {
        let stream = self
            .ready
            .front()
            .map(|r| r.stream.clone())
            .unwrap_or_default();
        let mut buf = format!(
            "{{\"v\":1,\"site\":{},\"box\":{},\"epoch\":{},\"stream\":{},\"records\":[",
            js(&self.d.site_id),
            js(&self.d.uplink.box_id),
            js(&self.epoch),
            js(&stream)
        );
        let mut rows = Vec::new();
        let mut held = Vec::new();
        while let Some(r) = self.ready.front() {
            if r.stream != stream || rows.len() >= self.d.uplink.batch {
                break;
            }
            let data = if serde_json::from_str::<serde::de::IgnoredAny>(&r.payload).is_ok() {
                r.payload.clone()
            } else {
                tracing::error!(stream = %r.stream, seq = r.stream_seq, "outbox record is not JSON; sent as a string");
                js(&r.payload)
            };
            let mut item = format!(
                "{{\"seq\":{},\"id\":{},\"at\":\"{}\",\"data\":{data}}}",
                r.stream_seq,
                js(&format!("{}/{}/{}", self.epoch, r.stream, r.stream_seq)),
                rfc3339_ms(r.at_ms)
            );
            if buf.len() + item.len() + 3 > self.d.uplink.max_message {
                if !rows.is_empty() {
                    break;
                }
                // Alone and still too big for the broker: headquarters is
                // told what it misses (no gap), and the record is moved
                // aside on the box (`outbox_held`) once the marker is in.
                tracing::error!(
                    stream = %r.stream,
                    seq = r.stream_seq,
                    bytes = item.len(),
                    "outbox record larger than max_message; sending a marker instead"
                );
                item = format!(
                    "{{\"seq\":{},\"id\":{},\"at\":\"{}\",\"data\":{{\"too_large\":true,\"bytes\":{}}}}}",
                    r.stream_seq,
                    js(&format!("{}/{}/{}", self.epoch, r.stream, r.stream_seq)),
                    rfc3339_ms(r.at_ms),
                    item.len()
                );
                held.push(r.seq);
            }
            if !rows.is_empty() {
                buf.push(',');
            }
            buf.push_str(&item);
            rows.push(r.seq);
            self.ready.pop_front();
        }
        buf.push_str("]}");
        (
            format!("{}/records/{stream}", self.base),
            buf.into_bytes(),
            rows,
            held,
        )
    }

    /// After a reconnect: records go again from the oldest not acknowledged.
    pub(super) fn records_from_oldest(&mut self) {
        // Everything not acknowledged goes again, oldest first: from
        // the oldest row still in the outbox (a broker may have
        // acknowledged out of order; rows whose deletion is still
        // queued go twice, harmlessly).
        self.cursor = match self.reader.oldest() {
            Ok(Some(oldest)) => oldest - 1,
            _ => self.acked_upto,
        };
        self.acked_upto = self.cursor;
        self.e2e_unconfirmed = 0;
        self.ready.clear();
    }

    /// With end-to-end acks, resends from the oldest record when the
    /// collector has not confirmed in time.
    pub(super) fn resend_overdue_records(&mut self) {
        let timeout = self.d.uplink.ack_timeout;
        if self.d.uplink.e2e_ack && self.e2e_mark.0.elapsed() >= timeout {
            // A row the broker acknowledged a whole period ago and the
            // collector still has not: send everything from the oldest.
            if let Ok(Some(oldest)) = self.reader.oldest()
                && oldest <= self.e2e_mark.1
            {
                tracing::info!(
                    from = oldest,
                    "records not acknowledged end to end; resending"
                );
                self.cursor = self.cursor.min(oldest - 1);
                self.acked_upto = self.acked_upto.min(oldest - 1);
                self.e2e_unconfirmed = 0;
                self.ready.clear();
            }
            self.e2e_mark = (Instant::now(), self.acked_upto);
        }
    }

    /// The collector confirms records of one stream (end-to-end acks).
    pub(super) async fn records_acked(&mut self, v: &Value) {
        let (Some(stream), Some(seqs), Some(epoch)) = (
            v["stream"].as_str(),
            v["seqs"].as_array(),
            v["epoch"].as_str(),
        ) else {
            tracing::warn!("fleet link: ack without recording or stream/seqs/epoch; ignored");
            return;
        };
        if !self.d.uplink.e2e_ack || epoch != self.epoch {
            return;
        }
        let seqs: Vec<i64> = seqs.iter().filter_map(Value::as_i64).collect();
        self.e2e_unconfirmed = self.e2e_unconfirmed.saturating_sub(seqs.len());
        self.d
            .store
            .send(StoreMsg::OutboxAckedByStream {
                stream: stream.to_string(),
                seqs,
            })
            .await;
    }
}

fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}
