//! Finished recordings to headquarters in chunks (`{b}/upload/{id}`): one
//! upload at a time, resumed from what the broker acknowledged; after the
//! last chunk the recording waits for the collector's answer (`{b}/ack`),
//! asking again with a growing wait, and resends from where the collector
//! says it has the file up to.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

use base64::Engine;
use rumqttc::QoS;
use serde_json::{Value, json};

use super::actor::{Actor, Sent};
use crate::store::StoreMsg;
use crate::store::unsent::Pending;

/// Most recordings uploaded and waiting for the collector's answer: with no
/// collector listening, the link stops starting new uploads.
const MAX_AWAITING: usize = 16;

/// A recording being uploaded.
#[derive(Debug)]
pub(super) struct Upload {
    pub(super) p: Pending,
    file: File,
    size: u64,
    sha256: String,
    /// Next byte to send.
    next: u64,
    /// Bytes the broker has acknowledged.
    pub(super) acked: u64,
}

/// A recording whose last chunk went out, waiting for the collector.
#[derive(Debug)]
pub(super) struct Awaiting {
    since: Instant,
    /// Times the last chunk was sent without an answer.
    tries: u32,
    p: Pending,
}

impl Actor {
    /// Sends the next chunk of the current (or next) recording; false if
    /// there is nothing to send.
    pub(super) fn next_chunk(&mut self) -> bool {
        if self.upload.is_none() && !self.start_upload() {
            return false;
        }
        let Some(u) = &mut self.upload else {
            return false;
        };
        let chunk = self.d.uplink.chunk_size as u64;
        let len = chunk.min(u.size - u.next);
        let mut data = vec![0u8; len as usize];
        if let Err(e) = u
            .file
            .seek(SeekFrom::Start(u.next))
            .and_then(|_| u.file.read_exact(&mut data))
        {
            tracing::error!(recording = %u.p.id, file = %u.p.path.display(), "reading for upload: {e}; skipped until restart");
            self.upload = None;
            return true;
        }
        let last = u.next + len >= u.size;
        let mut m = json!({
            "v": 1,
            "site": self.d.site_id,
            "box": self.d.uplink.box_id,
            "id": u.p.id,
            "offset": u.next,
            "size": u.size,
            "data": base64::engine::general_purpose::STANDARD.encode(&data),
            "last": last,
            "meta": {
                "call_id": u.p.call_id,
                "kind": u.p.kind,
                "format": u.p.format,
                "file": u.p.file,
                "encrypted": u.p.encrypted,
            },
        });
        if last {
            m["sha256"] = u.sha256.clone().into();
        }
        let end = u.next + len;
        let id = u.p.id.clone();
        let topic = format!("{}/upload/{id}", self.base);
        if !self.publish(
            topic,
            QoS::AtLeastOnce,
            false,
            m.to_string().into_bytes(),
            Sent::Chunk { id, end },
        ) {
            return false;
        }
        if let Some(u) = &mut self.upload {
            u.next = end;
            if last {
                let u = self.upload.take().map(|u| u.p);
                if let Some(p) = u {
                    let tries = self.tries.remove(&p.id).unwrap_or(0);
                    self.awaiting.insert(
                        p.id.clone(),
                        Awaiting {
                            since: Instant::now(),
                            tries,
                            p,
                        },
                    );
                }
            }
        }
        true
    }

    /// Picks the next recording to upload and opens it.
    fn start_upload(&mut self) -> bool {
        let chunk = self.d.uplink.chunk_size as u64;
        let Some(p) = self.next_pending() else {
            return false;
        };
        let file = match File::open(&p.path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(recording = %p.id, file = %p.path.display(), "cannot upload: {e}");
                return true;
            }
        };
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if size == 0 {
            return true;
        }
        let sha256 = match &p.sha256 {
            Some(s) => s.clone(),
            None => match crate::recorder::seal::digest(&p.path) {
                Ok(d) => d.sha256,
                Err(e) => {
                    tracing::warn!(recording = %p.id, "cannot read for upload: {e}");
                    return true;
                }
            },
        };
        // All sent before (a restart after the last chunk): send the last
        // chunk again to ask for the collector's answer.
        let mut start = p.offset.min(size);
        if start >= size {
            start = (size - 1) / chunk * chunk;
        }
        if start > 0 {
            tracing::info!(recording = %p.id, offset = start, size, "resuming upload");
        }
        self.upload = Some(Upload {
            p,
            file,
            size,
            sha256,
            next: start,
            acked: start,
        });
        true
    }

    /// The next recording to upload: one to send again first, else the next
    /// in the outbox that is not waiting for the collector.
    fn next_pending(&mut self) -> Option<Pending> {
        if let Some(p) = self.resume.pop_front() {
            return Some(p);
        }
        if Instant::now() < self.upload_idle_until || self.awaiting.len() >= MAX_AWAITING {
            return None;
        }
        loop {
            match self.reader.next_upload(self.upload_cursor) {
                Ok(Some(p)) => {
                    self.upload_cursor = p.seq;
                    if !self.awaiting.contains_key(&p.id) {
                        return Some(p);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!("fleet link: reading recordings: {e}");
                    break;
                }
            }
        }
        // Recordings finish out of row order: look again from the start, a
        // little later.
        self.upload_cursor = 0;
        self.upload_idle_until = Instant::now() + Duration::from_secs(1);
        None
    }

    /// After a reconnect: the upload under way goes on from what the broker
    /// acknowledged, and recordings waiting for the collector ask again.
    pub(super) fn uploads_from_acked(&mut self) {
        if let Some(u) = &mut self.upload {
            u.next = u.acked;
        }
        // A last chunk whose answer may have been lost with the old
        // connection: ask again now rather than after ack_timeout.
        for (id, a) in self.awaiting.drain() {
            let mut p = a.p;
            p.offset = u64::MAX;
            self.tries.insert(id, a.tries);
            self.resume.push_back(p);
        }
    }

    /// Asks again for the collector's answer on recordings whose last chunk
    /// has gone unanswered too long.
    pub(super) fn resend_overdue_recordings(&mut self) {
        let timeout = self.d.uplink.ack_timeout;
        // Each unanswered try doubles the wait, up to 64 timeouts: a
        // collector that is away is not flooded with last chunks.
        let late: Vec<String> = self
            .awaiting
            .iter()
            .filter(|(_, a)| a.since.elapsed() >= timeout * 2u32.pow(a.tries.min(6)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in late {
            if let Some(a) = self.awaiting.remove(&id) {
                tracing::info!(recording = %id, tries = a.tries + 1, "no confirmation from headquarters; asking again");
                let mut p = a.p;
                p.offset = u64::MAX;
                self.tries.insert(id, a.tries + 1);
                self.resume.push_back(p);
            }
        }
    }

    /// The collector's answer on a recording: it has it all, or it wants
    /// the rest from `have`.
    pub(super) async fn recording_acked(&mut self, id: &str, v: &Value) {
        if v["ok"] == true {
            if self.awaiting.remove(id).is_some() || !self.resume.iter().any(|p| p.id == id) {
                tracing::info!(recording = %id, "headquarters has the recording");
            }
            self.resume.retain(|p| p.id != id);
            if self.upload.as_ref().is_some_and(|u| u.p.id == id) {
                self.upload = None;
            }
            self.d
                .store
                .send(StoreMsg::RecordingDelivered { id: id.to_string() })
                .await;
        } else {
            let have = v["have"].as_u64().unwrap_or(0);
            let why = v["error"].as_str().unwrap_or("no reason given");
            tracing::warn!(recording = %id, have, "headquarters refused the upload: {why}; resending from there");
            if let Some(a) = self.awaiting.remove(id) {
                let mut p = a.p;
                p.offset = have;
                self.resume.push_back(p);
            }
        }
    }
}
