//! The link's actor: one MQTT connection at a time, and everything that goes
//! over it.
//!
//! Each connection gets a fresh rumqttc client and event loop (the broker
//! keeps the session: `clean_session = false`). rumqttc's own retransmission
//! is not relied on — it forgets unacknowledged publishes when a session is
//! not resumed — the outbox is: a record leaves it only once acknowledged,
//! and after a reconnect or a restart the link resends from the oldest
//! record not acknowledged. Duplicates are harmless (stable ids).
//!
//! Acknowledgements are matched to what was sent through rumqttc's outgoing
//! events: every publish request produces one `Outgoing::Publish(pkid)`, in
//! request order, so a FIFO of what was requested maps packet ids to
//! records. The event loop runs in its own task (its `poll` is not cancel
//! safe) and hands events over a channel.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Outgoing, Packet, Publish, QoS};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::SyncDeps;
use super::config::valid_topic_id;
use super::link::{Backoff, options};
use crate::clock::rfc3339_ms;
use crate::events::Event as LiveEvent;
use crate::store::StoreMsg;
use crate::store::unsent::{Pending, Reader, Row};

/// Firmware version in presence and telemetry.
const FIRMWARE: &str = env!("CARGO_PKG_VERSION");
/// How long a clean stop waits for what is in flight to be acknowledged.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// A connection that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(60);
/// How often the link looks for new records and overdue acks.
const TICK: Duration = Duration::from_millis(100);
/// With end-to-end acks, most records sent and not yet confirmed by the
/// collector: without a collector listening, the link must not push the
/// whole backlog through the broker again every `ack_timeout`.
const E2E_WINDOW: usize = 5000;
/// Most outbox rows read ahead of what is published (memory bound whatever
/// `batch` says).
const READ_AHEAD: usize = 1000;
/// Most recordings uploaded and waiting for the collector's answer: with no
/// collector listening, the link stops starting new uploads.
const MAX_AWAITING: usize = 16;
/// Answers remembered for commands delivered again (QoS 1 redelivery after
/// a reconnect): a repeated request id gets the same answer, and the
/// command (an outbound call, a restart) does not run twice.
const ANSWERS_KEPT: usize = 256;
/// Largest incoming message accepted; bigger ones are refused by the
/// command handler with a reason rather than by dropping the connection
/// (which the broker would answer by redelivering it forever).
const MAX_INCOMING: usize = 64 << 20;

/// What a publish request carried, to act on its acknowledgement.
#[derive(Debug)]
enum Sent {
    /// Outbox rows (all of one stream).
    Records {
        /// Outbox seqs.
        rows: Vec<i64>,
        /// Those of them sent as a `too_large` marker: moved aside, not
        /// deleted, once acknowledged.
        held: Vec<i64>,
    },
    /// A recording chunk ending at `end`.
    Chunk { id: String, end: u64 },
    /// The answer to a command (sent again after a reconnect until the
    /// broker has it).
    Answer(String),
    /// Presence, telemetry, events.
    Other,
}

/// A recording being uploaded.
#[derive(Debug)]
struct Upload {
    p: Pending,
    file: File,
    size: u64,
    sha256: String,
    /// Next byte to send.
    next: u64,
    /// Bytes the broker has acknowledged.
    acked: u64,
}

/// A recording whose last chunk went out, waiting for the collector.
#[derive(Debug)]
struct Awaiting {
    since: Instant,
    /// Times the last chunk was sent without an answer.
    tries: u32,
    p: Pending,
}

/// A command's answer: request id, result, whether it was a successful
/// `config.set` or `lookup.update` (the reported config changed).
type Answer = (String, Result<Value, String>, bool);

enum End {
    Stop,
    Lost(String),
}

struct Actor {
    d: SyncDeps,
    base: String,
    reader: Reader,
    epoch: String,
    session: i64,
    client: Option<AsyncClient>,
    connected: bool,
    order: VecDeque<(QoS, Sent)>,
    inflight: HashMap<u16, Sent>,
    /// QoS 1 publishes requested and not yet acknowledged.
    outstanding: usize,
    /// Last outbox seq handed to a publish.
    cursor: i64,
    /// Every outbox row up to here has been acknowledged by the broker.
    acked_upto: i64,
    /// `acked_upto` at the last end-to-end check.
    e2e_mark: (Instant, i64),
    /// Records sent and not yet confirmed end to end.
    e2e_unconfirmed: usize,
    ready: VecDeque<Row>,
    upload: Option<Upload>,
    upload_cursor: i64,
    upload_idle_until: Instant,
    resume: VecDeque<Pending>,
    awaiting: HashMap<String, Awaiting>,
    /// Unanswered tries per recording (backs off the asking).
    tries: HashMap<String, u32>,
    /// Answers the broker has not acknowledged yet, by request id.
    unsent_answers: HashMap<String, Vec<u8>>,
    responses: (mpsc::Sender<Answer>, mpsc::Receiver<Answer>),
    telemetry: (mpsc::Sender<Value>, mpsc::Receiver<Value>),
    /// Commands running, by request id.
    running: std::collections::HashSet<String>,
    /// The last answers sent, by request id, oldest first.
    answered: VecDeque<(String, Vec<u8>)>,
}

pub(super) async fn run(d: SyncDeps, stop: CancellationToken) {
    let reader = loop {
        match Reader::open(&d.data_dir) {
            Ok(r) => break r,
            Err(e) => {
                tracing::error!("fleet link: cannot read the outbox: {e}; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    };
    let epoch = match reader.epoch() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("fleet link: the database has no epoch ({e}); not starting");
            return;
        }
    };
    let base = d.uplink.base_topic(&d.site_id);
    let mut events = d.events.subscribe();
    let mut backoff = Backoff::new(d.uplink.backoff_min, d.uplink.backoff_max);
    let client_id = format!("callbox-{}-{}", d.site_id, d.uplink.box_id);
    let mut a = Actor {
        base,
        reader,
        epoch,
        session: 0,
        client: None,
        connected: false,
        order: VecDeque::new(),
        inflight: HashMap::new(),
        outstanding: 0,
        cursor: 0,
        acked_upto: 0,
        e2e_mark: (Instant::now(), 0),
        e2e_unconfirmed: 0,
        ready: VecDeque::new(),
        upload: None,
        upload_cursor: 0,
        upload_idle_until: Instant::now(),
        resume: VecDeque::new(),
        awaiting: HashMap::new(),
        tries: HashMap::new(),
        unsent_answers: HashMap::new(),
        responses: mpsc::channel(64),
        telemetry: mpsc::channel(4),
        running: Default::default(),
        answered: VecDeque::new(),
        d,
    };
    tracing::info!(
        broker = %format!("{}:{}", a.d.uplink.host, a.d.uplink.port),
        tls = a.d.uplink.tls.is_some(),
        topic = %a.base,
        "fleet link starting"
    );
    loop {
        // The store may be stuck on a full disk: a stop must not wait on it.
        a.session = tokio::select! {
            () = stop.cancelled() => break,
            n = next_session(&a.d.store) => n.unwrap_or(a.session + 1),
        };
        let will = a.status("offline", Some("lost"));
        let mut opts = options(&a.d.uplink, &client_id, format!("{}/status", a.base), will);
        opts.set_max_packet_size(MAX_INCOMING, a.d.uplink.max_message + 1024);
        let cap = usize::from(a.d.uplink.inflight) + 256;
        let (client, el) = AsyncClient::new(opts, cap);
        let (etx, erx) = mpsc::channel(256);
        let poller = tokio::spawn(poll(el, etx));
        a.client = Some(client);
        let started = Instant::now();
        let end = a.connection(erx, &mut events, &stop).await;
        poller.abort();
        a.disconnected();
        match end {
            End::Stop => break,
            End::Lost(why) => {
                if started.elapsed() >= STABLE {
                    backoff.reset();
                }
                let wait = backoff.next_wait();
                tracing::warn!(
                    "fleet link down: {why}; reconnecting in {:.1}s",
                    wait.as_secs_f32()
                );
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    tracing::info!("fleet link stopped");
}

/// Drives one event loop until its connection fails.
async fn poll(mut el: EventLoop, tx: mpsc::Sender<Result<Event, ConnectionError>>) {
    loop {
        let ev = el.poll().await;
        let failed = ev.is_err();
        if tx.send(ev).await.is_err() || failed {
            return;
        }
    }
}

async fn next_session(store: &crate::store::StoreHandle) -> Option<i64> {
    let (tx, rx) = oneshot::channel();
    store.send(StoreMsg::NextSession(tx)).await;
    rx.await.ok()
}

impl Actor {
    fn status(&self, state: &str, reason: Option<&str>) -> Vec<u8> {
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

    /// One connection: from connecting to losing it (or being stopped).
    async fn connection(
        &mut self,
        mut erx: mpsc::Receiver<Result<Event, ConnectionError>>,
        events: &mut broadcast::Receiver<LiveEvent>,
        stop: &CancellationToken,
    ) -> End {
        let mut tick = tokio::time::interval(TICK);
        let mut telemetry = tokio::time::interval(self.d.uplink.telemetry_every);
        telemetry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    self.stop_cleanly(&mut erx).await;
                    return End::Stop;
                }
                ev = erx.recv() => match ev {
                    Some(Ok(ev)) => self.on_event(ev).await,
                    Some(Err(e)) => return End::Lost(describe(&e)),
                    None => return End::Lost("the connection task ended".into()),
                },
                _ = tick.tick() => {
                    self.overdue();
                    self.fill();
                }
                _ = telemetry.tick(), if self.connected => self.request_telemetry(),
                Some(t) = self.telemetry.1.recv() => {
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
                Some((id, result, config_set)) = self.responses.1.recv() => {
                    self.respond(&id, result);
                    if config_set {
                        self.publish_reported();
                    }
                }
                ev = events.recv() => match ev {
                    Ok(e) => self.publish_event(e),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!("fleet link: {n} live events dropped (reader too slow)");
                    }
                    Err(broadcast::error::RecvError::Closed) => {}
                },
            }
        }
    }

    async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Incoming(Packet::ConnAck(ack)) => {
                tracing::info!(
                    session = self.session,
                    resumed = ack.session_present,
                    "fleet link connected"
                );
                self.connected = true;
                if let Some(c) = &self.client {
                    let subs = ["cmd/+", "ack", "status"].map(|t| {
                        rumqttc::SubscribeFilter::new(
                            format!("{}/{t}", self.base),
                            QoS::AtLeastOnce,
                        )
                    });
                    if let Err(e) = c.try_subscribe_many(subs) {
                        tracing::warn!("fleet link: subscribing failed: {e}");
                    }
                }
                self.publish_online();
                self.publish_reported();
                self.request_telemetry();
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
                let answers: Vec<(String, Vec<u8>)> = self.unsent_answers.drain().collect();
                for (req, body) in answers {
                    let topic = format!("{}/resp/{req}", self.base);
                    self.publish(topic, QoS::AtLeastOnce, false, body, Sent::Answer(req));
                }
                self.ready.clear();
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
                self.fill();
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => match self.order.pop_front() {
                Some((QoS::AtMostOnce, _)) => {}
                Some((_, sent)) => {
                    self.inflight.insert(pkid, sent);
                }
                None => tracing::warn!(pkid, "fleet link: a publish nobody asked for"),
            },
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(sent) = self.inflight.remove(&ack.pkid) {
                    self.outstanding = self.outstanding.saturating_sub(1);
                    self.acknowledged(sent).await;
                }
                self.fill();
            }
            Event::Incoming(Packet::Publish(p)) => self.on_message(p).await,
            _ => {}
        }
    }

    fn disconnected(&mut self) {
        self.client = None;
        self.connected = false;
        self.order.clear();
        self.inflight.clear();
        self.outstanding = 0;
    }

    async fn stop_cleanly(&mut self, erx: &mut mpsc::Receiver<Result<Event, ConnectionError>>) {
        if !self.connected {
            return;
        }
        let offline = self.status("offline", Some("stopped"));
        let topic = format!("{}/status", self.base);
        self.publish(topic, QoS::AtLeastOnce, true, offline, Sent::Other);
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        while self.outstanding > 0 {
            match tokio::time::timeout_at(deadline, erx.recv()).await {
                Ok(Some(Ok(Event::Incoming(Packet::PubAck(ack))))) => {
                    if let Some(sent) = self.inflight.remove(&ack.pkid) {
                        self.outstanding = self.outstanding.saturating_sub(1);
                        if tokio::time::timeout_at(deadline, self.acknowledged(sent))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
                Ok(Some(Ok(Event::Outgoing(Outgoing::Publish(pkid))))) => {
                    if let Some((q, sent)) = self.order.pop_front()
                        && q != QoS::AtMostOnce
                    {
                        self.inflight.insert(pkid, sent);
                    }
                }
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        if let Some(c) = &self.client {
            let _ = c.try_disconnect();
        }
        // Let the event loop write the DISCONNECT (the broker then drops
        // the will).
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(Ok(ev)) = erx.recv().await {
                if ev == Event::Outgoing(Outgoing::Disconnect) {
                    break;
                }
            }
        })
        .await;
    }

    /// Requests a publish; false if the request channel is full (it is
    /// tried again later) or there is no connection.
    fn publish(
        &mut self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
        sent: Sent,
    ) -> bool {
        let Some(c) = &self.client else { return false };
        // rumqttc drops the connection over a packet above its limit, and
        // the same message would do it again on every reconnect.
        if payload.len() > self.d.uplink.max_message + 512 {
            tracing::error!(topic = %topic, bytes = payload.len(), "message larger than max_message; not sent");
            return false;
        }
        match c.try_publish(topic, qos, retain, payload) {
            Ok(()) => {
                if qos != QoS::AtMostOnce {
                    self.outstanding += 1;
                }
                self.order.push_back((qos, sent));
                true
            }
            Err(e) => {
                tracing::debug!("fleet link: publish not queued: {e}");
                false
            }
        }
    }

    fn publish_online(&mut self) {
        let online = self.status("online", None);
        let topic = format!("{}/status", self.base);
        self.publish(topic, QoS::AtLeastOnce, true, online, Sent::Other);
    }

    fn publish_reported(&mut self) {
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

    fn publish_event(&mut self, e: LiveEvent) {
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

    fn request_telemetry(&mut self) {
        let source = self.d.telemetry.clone();
        let tx = self.telemetry.0.clone();
        tokio::spawn(async move {
            let _ = tx.send(source.snapshot().await).await;
        });
    }

    fn telemetry_message(&self, mut t: Value) -> Value {
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

    /// Fills the window: records first (in order), then recording chunks.
    fn fill(&mut self) {
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

    /// Sends the next chunk of the current (or next) recording; false if
    /// there is nothing to send.
    fn next_chunk(&mut self) -> bool {
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
        let p = match self.resume.pop_front() {
            Some(p) => p,
            None => {
                if Instant::now() < self.upload_idle_until || self.awaiting.len() >= MAX_AWAITING {
                    return false;
                }
                let mut found = None;
                loop {
                    match self.reader.next_upload(self.upload_cursor) {
                        Ok(Some(p)) => {
                            self.upload_cursor = p.seq;
                            if !self.awaiting.contains_key(&p.id) {
                                found = Some(p);
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::error!("fleet link: reading recordings: {e}");
                            break;
                        }
                    }
                }
                match found {
                    Some(p) => p,
                    None => {
                        // Recordings finish out of row order: look again
                        // from the start, a little later.
                        self.upload_cursor = 0;
                        self.upload_idle_until = Instant::now() + Duration::from_secs(1);
                        return false;
                    }
                }
            }
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

    async fn acknowledged(&mut self, sent: Sent) {
        match sent {
            Sent::Records { mut rows, held } => {
                if let Some(&last) = rows.last() {
                    self.acked_upto = self.acked_upto.max(last);
                }
                if !held.is_empty() {
                    rows.retain(|r| !held.contains(r));
                    self.d.store.send(StoreMsg::OutboxHeld { rows: held }).await;
                }
                if !self.d.uplink.e2e_ack {
                    self.d.store.send(StoreMsg::OutboxAcked { rows }).await;
                }
            }
            Sent::Chunk { id, end } => {
                if let Some(u) = &mut self.upload
                    && u.p.id == id
                {
                    u.acked = u.acked.max(end);
                }
                self.d
                    .store
                    .send(StoreMsg::UploadProgress { id, offset: end })
                    .await;
            }
            Sent::Answer(req) => {
                self.unsent_answers.remove(&req);
            }
            Sent::Other => {}
        }
    }

    /// Resends what the collector has not confirmed in time.
    fn overdue(&mut self) {
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

    async fn on_message(&mut self, p: Publish) {
        let Some(rest) = p
            .topic
            .strip_prefix(&self.base)
            .and_then(|t| t.strip_prefix('/'))
        else {
            return;
        };
        if let Some(req) = rest.strip_prefix("cmd/") {
            let req = req.to_string();
            if p.retain {
                // A retained command would run again after every restart
                // (a restart loop, a call placed at every boot).
                tracing::warn!(request = %req, "retained command refused");
                self.respond(
                    &req,
                    Err(
                        "retained commands are refused: publish commands without the retain flag"
                            .into(),
                    ),
                );
                return;
            }
            self.on_command(req, &p.payload);
        } else if rest == "ack" {
            self.on_ack(&p.payload).await;
        } else if rest == "status" {
            // A will from an older session arriving late must not leave
            // this box looking offline.
            if let Ok(v) = serde_json::from_slice::<Value>(&p.payload)
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

    async fn on_ack(&mut self, payload: &[u8]) {
        let v: Value = match serde_json::from_slice(payload) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("fleet link: ack is not JSON ({e}); ignored");
                return;
            }
        };
        if let Some(id) = v["recording"].as_str() {
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
            return;
        }
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

    fn on_command(&mut self, req: String, payload: &[u8]) {
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

    fn respond(&mut self, req: &str, result: Result<Value, String>) {
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

fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::Tls(t) => format!("TLS: {t}"),
        ConnectionError::ConnectionRefused(c) => {
            format!("the broker refused the connection: {c:?}")
        }
        other => other.to_string(),
    }
}

fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
