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
//!
//! This file holds the connection: its session number, reconnecting with
//! backoff, the publish window, matching acknowledgements and routing what
//! arrives. What goes over it is in the files beside it: `presence.rs`
//! (status, reported config, telemetry, live events), `records.rs` (the
//! outbox), `upload.rs` (recordings) and `requests.rs` (commands).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Outgoing, Packet, Publish, QoS};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::SyncDeps;
use super::link::{Backoff, options};
use super::requests::Answer;
use super::upload::{Awaiting, Upload};
use crate::events::Event as LiveEvent;
use crate::store::StoreMsg;
use crate::store::unsent::{Pending, Reader, Row};

/// How long a clean stop waits for what is in flight to be acknowledged.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// A connection that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(60);
/// How often the link looks for new records and overdue acks.
const TICK: Duration = Duration::from_millis(100);
/// Largest incoming message accepted; bigger ones are refused by the
/// command handler with a reason rather than by dropping the connection
/// (which the broker would answer by redelivering it forever).
const MAX_INCOMING: usize = 64 << 20;

/// What a publish request carried, to act on its acknowledgement.
#[derive(Debug)]
pub(super) enum Sent {
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

enum End {
    Stop,
    Lost(String),
}

/// The link's state, owned by its one task.
pub(super) struct Actor {
    pub(super) d: SyncDeps,
    pub(super) base: String,
    pub(super) reader: Reader,
    pub(super) epoch: String,
    pub(super) session: i64,
    pub(super) client: Option<AsyncClient>,
    pub(super) connected: bool,
    pub(super) order: VecDeque<(QoS, Sent)>,
    pub(super) inflight: HashMap<u16, Sent>,
    /// QoS 1 publishes requested and not yet acknowledged.
    pub(super) outstanding: usize,
    /// Last outbox seq handed to a publish.
    pub(super) cursor: i64,
    /// Every outbox row up to here has been acknowledged by the broker.
    pub(super) acked_upto: i64,
    /// `acked_upto` at the last end-to-end check.
    pub(super) e2e_mark: (Instant, i64),
    /// Records sent and not yet confirmed end to end.
    pub(super) e2e_unconfirmed: usize,
    pub(super) ready: VecDeque<Row>,
    pub(super) upload: Option<Upload>,
    pub(super) upload_cursor: i64,
    pub(super) upload_idle_until: Instant,
    pub(super) resume: VecDeque<Pending>,
    pub(super) awaiting: HashMap<String, Awaiting>,
    /// Unanswered tries per recording (backs off the asking).
    pub(super) tries: HashMap<String, u32>,
    /// Answers the broker has not acknowledged yet, by request id.
    pub(super) unsent_answers: HashMap<String, Vec<u8>>,
    pub(super) responses: (mpsc::Sender<Answer>, mpsc::Receiver<Answer>),
    pub(super) telemetry: (mpsc::Sender<Value>, mpsc::Receiver<Value>),
    /// Commands running, by request id.
    pub(super) running: std::collections::HashSet<String>,
    /// The last answers sent, by request id, oldest first.
    pub(super) answered: VecDeque<(String, Vec<u8>)>,
}

pub(super) async fn run(d: SyncDeps, stop: CancellationToken) {
    let Some((reader, epoch)) = open_outbox(&d, &stop).await else {
        return;
    };
    let mut events = d.events.subscribe();
    let mut backoff = Backoff::new(d.uplink.backoff_min, d.uplink.backoff_max);
    let client_id = format!("callbox-{}-{}", d.site_id, d.uplink.box_id);
    let mut a = Actor::new(d, reader, epoch);
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
        let (poller, erx) = a.connect(&client_id);
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

/// Opens the outbox, retrying until it can be read (or the link is
/// stopped); `None` when the link cannot start.
async fn open_outbox(d: &SyncDeps, stop: &CancellationToken) -> Option<(Reader, String)> {
    let reader = loop {
        match Reader::open(&d.data_dir) {
            Ok(r) => break r,
            Err(e) => {
                tracing::error!("fleet link: cannot read the outbox: {e}; retrying");
                tokio::select! {
                    () = stop.cancelled() => return None,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    };
    match reader.epoch() {
        Ok(epoch) => Some((reader, epoch)),
        Err(e) => {
            tracing::error!("fleet link: the database has no epoch ({e}); not starting");
            None
        }
    }
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
    fn new(d: SyncDeps, reader: Reader, epoch: String) -> Actor {
        Actor {
            base: d.uplink.base_topic(&d.site_id),
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
        }
    }

    /// A fresh client for the next connection (the broker keeps the
    /// session); its event loop runs in a task of its own, whose events
    /// come over the channel returned.
    fn connect(
        &mut self,
        client_id: &str,
    ) -> (
        JoinHandle<()>,
        mpsc::Receiver<Result<Event, ConnectionError>>,
    ) {
        let will = self.status("offline", Some("lost"));
        let mut opts = options(
            &self.d.uplink,
            client_id,
            format!("{}/status", self.base),
            will,
        );
        opts.set_max_packet_size(MAX_INCOMING, self.d.uplink.max_message + 1024);
        let cap = usize::from(self.d.uplink.inflight) + 256;
        let (client, el) = AsyncClient::new(opts, cap);
        let (etx, erx) = mpsc::channel(256);
        let poller = tokio::spawn(poll(el, etx));
        self.client = Some(client);
        (poller, erx)
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
                    self.resend_overdue_recordings();
                    self.resend_overdue_records();
                    self.fill();
                }
                _ = telemetry.tick(), if self.connected => self.request_telemetry(),
                Some(t) = self.telemetry.1.recv() => self.publish_telemetry(t),
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
            Event::Incoming(Packet::ConnAck(ack)) => self.on_connected(ack.session_present),
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

    /// A connection is up: subscribe, announce the box, and send again
    /// everything the broker had not acknowledged on the last one.
    fn on_connected(&mut self, resumed: bool) {
        tracing::info!(session = self.session, resumed, "fleet link connected");
        self.connected = true;
        if let Some(c) = &self.client {
            let subs = ["cmd/+", "ack", "status"].map(|t| {
                rumqttc::SubscribeFilter::new(format!("{}/{t}", self.base), QoS::AtLeastOnce)
            });
            if let Err(e) = c.try_subscribe_many(subs) {
                tracing::warn!("fleet link: subscribing failed: {e}");
            }
        }
        self.publish_online();
        self.publish_reported();
        self.request_telemetry();
        self.records_from_oldest();
        self.resend_answers();
        self.uploads_from_acked();
        self.fill();
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
    pub(super) fn publish(
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
            self.on_status(&p.payload);
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
        match v["recording"].as_str() {
            Some(id) => self.recording_acked(id, &v).await,
            None => self.records_acked(&v).await,
        }
    }
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
