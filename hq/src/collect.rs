//! `callbox-hq collect`: the collector. It takes every box's records and
//! recordings from the broker through MQTT shared subscriptions
//! (`$share/{group}/…`, so several collectors of one group share the load),
//! stores them in SQLite, and only then acknowledges them: the MQTT PUBACK
//! (manual acks) and the contract's end-to-end ack on `{b}/ack`.
//!
//! Three parties, over unbounded channels (what is in them is bounded by
//! the broker's in-flight window, since nothing is acked before it is
//! stored):
//! - the connection task (`mqtt::spawn`) hands over messages;
//! - the store thread owns the SQLite handle and the recordings directory
//!   and turns each message into an [`Outcome`] ([`Collector::handle`]);
//! - the main task prints the outcome, publishes its acks, then acks the
//!   message to the broker.
//!
//! On SIGINT/SIGTERM the main task stops handing over messages (the broker
//! redelivers those to the resumed session), lets the store thread finish
//! what it has, sends the acks and disconnects. Bad input is reported on
//! stderr and dropped, still acked to the broker so it is not redelivered
//! forever; a failing database or disk stops the collector with an error,
//! leaving the message unacked for the next run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rumqttc::{Publish, QoS};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use callbox_contract::{ID_RULE, valid_id};

use crate::db::{self, Db};
use crate::mqtt::{self, Broker, Note, out_line};
use crate::recordings::{self, Verdict};
use crate::tally::{Stored, Tally};
use crate::wire;

/// How long a skipped seq may take to be stored (by this collector or
/// another of its group) before it is reported as a gap.
pub const GAP_GRACE: Duration = Duration::from_secs(30);

/// Seqs skipped in a stream, to check again.
#[derive(Debug)]
pub struct PendingGap {
    site: String,
    box_id: String,
    epoch: String,
    stream: String,
    from: u64,
    to: u64,
    noticed: Instant,
}

/// The ranges of `from..=to` not in `have` (sorted).
fn missing(from: u64, to: u64, have: &[u64]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut next = from;
    for &s in have.iter().filter(|&&s| (from..=to).contains(&s)) {
        if s > next {
            out.push((next, s - 1));
        }
        next = next.max(s + 1);
    }
    if next <= to {
        out.push((next, to));
    }
    out
}

/// How often the collector prints what it stored.
const SUMMARY_EVERY: Duration = Duration::from_secs(5);

/// Options of `collect`.
#[derive(Debug)]
pub struct Options {
    /// The database: a SQLite file, or a `postgres://` URL.
    pub db: String,
    /// The CA that signed the PostgreSQL server's certificate (TLS).
    pub db_ca: Option<PathBuf>,
    /// PostgreSQL: months of records kept (older partitions dropped).
    pub keep_months: Option<u32>,
    /// Shared-subscription group.
    pub group: String,
    /// Where recordings go.
    pub recordings: Option<PathBuf>,
    /// Client id instead of the one derived from group and database.
    pub client_id: Option<String>,
    /// Largest message taken.
    pub max_message: usize,
}

/// What one message led to.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Messages to publish (QoS 1): the acks, `(topic, payload)`.
    pub publish: Vec<(String, Vec<u8>)>,
    /// What it stored, for the periodic summary.
    pub stored: Option<Stored>,
    /// Lines for stdout at once (gaps).
    pub lines: Vec<String>,
    /// Lines for stderr.
    pub warnings: Vec<String>,
}

/// The store side of the collector: turns messages into rows, files and
/// acks.
#[derive(Debug)]
pub struct Collector {
    store: Db,
    recordings: PathBuf,
    root: String,
    max_message: usize,
    /// The highest seq seen per (box, epoch, stream), for gap reports.
    seen: HashMap<(String, String, String), u64>,
    /// Seqs skipped, checked again once [`GAP_GRACE`] has passed: with
    /// several collectors another one may be storing them.
    pending: Vec<PendingGap>,
}

impl Collector {
    /// A collector over `store`, recordings under `recordings`, topics
    /// under `root`.
    pub fn new(store: Db, recordings: PathBuf, root: &str, max_message: usize) -> Collector {
        Collector {
            store,
            recordings,
            root: root.to_string(),
            max_message,
            seen: HashMap::new(),
            pending: Vec::new(),
        }
    }

    /// Takes one message (the tests'; the store thread takes them in
    /// groups, [`Collector::handle_all`]). `Err` only when the database or
    /// the disk fails; bad input comes back as a warning.
    #[cfg(test)]
    pub fn handle(&mut self, topic: &str, payload: &[u8]) -> Result<Outcome> {
        Ok(self
            .handle_all(&[(topic, payload)])?
            .pop()
            .unwrap_or_default())
    }

    /// Takes messages that were waiting together: their records batches
    /// in one transaction (one commit for them all, which is what a
    /// database's throughput is made of), chunks and bad input one by
    /// one. The outcomes are in the messages' order.
    pub fn handle_all(&mut self, msgs: &[(&str, &[u8])]) -> Result<Vec<Outcome>> {
        let mut outs: Vec<Option<Outcome>> = (0..msgs.len()).map(|_| None).collect();
        let mut batches = Vec::new();
        let mut at = Vec::new();
        let mut extra = Extra::default();
        for (i, (topic, payload)) in msgs.iter().enumerate() {
            match self.route(topic, payload) {
                Route::Drop(o) => outs[i] = Some(o),
                Route::Records(b) => {
                    batches.push(b);
                    at.push(i);
                }
                Route::Chunk(site, box_id, c) => outs[i] = Some(self.chunk(&site, &box_id, &c)?),
                Route::Fleet(m) => extra.fleet.push(m),
                Route::Held(why) => {
                    outs[i] = Some(Outcome {
                        warnings: vec![format!("held a message on {topic} (table `held`): {why}")],
                        ..Outcome::default()
                    });
                    extra.held.push((topic, why, payload));
                }
            }
        }
        for (i, o) in at.into_iter().zip(self.store_batches(&batches, &extra)?) {
            outs[i] = Some(o);
        }
        Ok(outs.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// What a message is, once checked against its topic.
    fn route(&self, topic: &str, payload: &[u8]) -> Route {
        let drop = |why: String| {
            Route::Drop(Outcome {
                warnings: vec![format!("dropped a message on {topic}: {why}")],
                ..Outcome::default()
            })
        };
        let Some(t) = mqtt::split(&self.root, topic) else {
            return drop("not a box's topic".into());
        };
        if !valid_id(t.site) || !valid_id(t.box_id) {
            return drop("the site or box id in the topic is not a valid id".into());
        }
        if payload.len() > self.max_message {
            return drop(format!(
                "{} bytes, over the {}-byte limit (--max-message)",
                payload.len(),
                self.max_message
            ));
        }
        // A box's message that cannot be taken is kept aside, not lost.
        let held = Route::Held;
        match t.rest.split_once('/') {
            Some(("records", stream)) if valid_id(stream) => {
                match wire::parse_records(payload, t.site, t.box_id, stream) {
                    Ok(batch) => Route::Records(Batch {
                        site: t.site.to_string(),
                        box_id: t.box_id.to_string(),
                        records: batch,
                    }),
                    Err(why) => held(why),
                }
            }
            Some(("upload", id)) if valid_id(id) => {
                match wire::parse_chunk(payload, t.site, t.box_id, id) {
                    Ok(chunk) => Route::Chunk(t.site.to_string(), t.box_id.to_string(), chunk),
                    Err(why) => drop(why),
                }
            }
            None if t.rest == "status" || t.rest == "telemetry" => {
                match crate::fleetdb::parse(t.rest, payload, t.site, t.box_id) {
                    Ok(m) => Route::Fleet(m),
                    Err(why) => held(why),
                }
            }
            _ => drop("not a records, upload, status or telemetry topic".into()),
        }
    }

    /// The gaps noticed at least [`GAP_GRACE`] before `now` whose seqs are
    /// still not stored, as lines; the others are forgotten.
    pub fn due_gaps(&mut self, now: Instant) -> Result<Vec<String>> {
        let (due, later): (Vec<PendingGap>, Vec<PendingGap>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|g| now.duration_since(g.noticed) >= GAP_GRACE);
        self.pending = later;
        let mut lines = Vec::new();
        if due.is_empty() {
            return Ok(lines);
        }
        let mut checked = || -> Result<()> {
            let mut tx = self.store.write()?;
            for g in &due {
                let have = tx.seqs_between(&g.box_id, &g.epoch, &g.stream, g.from, g.to)?;
                for (from, to) in missing(g.from, g.to, &have) {
                    lines.push(format!(
                        "gap: {}/{} stream {} epoch {} missing {from}..{to}",
                        g.site, g.box_id, g.stream, g.epoch
                    ));
                }
            }
            Ok(())
        };
        if let Err(e) = checked() {
            // Looked at again next time.
            self.pending.extend(due);
            return Err(e);
        }
        Ok(lines)
    }

    fn ack_topic(&self, site: &str, box_id: &str) -> String {
        format!("{}/{site}/{box_id}/ack", self.root)
    }

    /// Stores record batches in one transaction; an outcome per batch.
    /// Gaps and the highest seqs seen count only once it has committed.
    fn store_batches(&mut self, batches: &[Batch], extra: &Extra<'_>) -> Result<Vec<Outcome>> {
        if batches.iter().all(|b| b.records.records.is_empty())
            && extra.fleet.is_empty()
            && extra.held.is_empty()
        {
            return Ok(batches.iter().map(|_| Outcome::default()).collect());
        }
        for b in batches {
            self.store.prepare(&b.records)?;
        }
        let Collector {
            store, seen, root, ..
        } = self;
        let mut tx = store.write()?;
        // The highest seq per stream as this transaction leaves it.
        let mut maxes: HashMap<(String, String, String), u64> = HashMap::new();
        let mut gaps = Vec::new();
        let mut outs = Vec::with_capacity(batches.len());
        let now_ms = mqtt::now_ms();
        for b in batches {
            let batch = &b.records;
            if batch.records.is_empty() {
                outs.push(Outcome::default());
                continue;
            }
            let key = (b.box_id.clone(), batch.epoch.clone(), batch.stream.clone());
            let mut max = match maxes.get(&key).or_else(|| seen.get(&key)) {
                Some(&m) => m,
                None => tx.max_seq(&b.box_id, &batch.epoch, &batch.stream)?,
            };
            let mut seqs: Vec<u64> = batch.records.iter().map(|r| r.seq).collect();
            seqs.sort_unstable();
            seqs.dedup();
            for &s in &seqs {
                if s > max + 1 {
                    gaps.push(PendingGap {
                        site: b.site.clone(),
                        box_id: b.box_id.clone(),
                        epoch: batch.epoch.clone(),
                        stream: batch.stream.clone(),
                        from: max + 1,
                        to: s - 1,
                        noticed: Instant::now(),
                    });
                }
                max = max.max(s);
            }
            maxes.insert(key, max);
            let new = tx.insert_records(&b.site, &b.box_id, batch, now_ms)?;
            crate::fleetdb::derive(&mut *tx, &b.site, &b.box_id, batch)?;
            let mut out = Outcome {
                stored: Some(Stored {
                    source: format!("{}/{}", b.site, b.box_id),
                    what: batch.stream.clone(),
                    new: new as u64,
                    again: (batch.records.len() - new) as u64,
                }),
                ..Outcome::default()
            };
            let acked: Vec<u64> = batch.records.iter().map(|r| r.seq).collect();
            out.publish.push((
                format!("{root}/{}/{}/ack", b.site, b.box_id),
                wire::records_ack(&batch.epoch, &batch.stream, &acked),
            ));
            outs.push(out);
        }
        for m in &extra.fleet {
            crate::fleetdb::store(&mut *tx, m, now_ms)?;
        }
        for (topic, why, payload) in &extra.held {
            crate::fleetdb::hold(&mut *tx, topic, why, payload, now_ms)?;
        }
        tx.commit()?;
        self.seen.extend(maxes);
        self.pending.extend(gaps);
        Ok(outs)
    }

    /// `--keep-months`: drops the months of records past it.
    fn drop_old_months(&mut self, keep: u32) -> Result<()> {
        // Partitions are by UTC month.
        let today = jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date();
        if let Db::Postgres(p) = &mut self.store {
            for name in p.drop_old_months(keep, today)? {
                out_line(&format!(
                    "dropped {name}: older than {keep} months (--keep-months)"
                ));
            }
        }
        let cutoff = today
            .first_of_month()
            .checked_sub(jiff::Span::new().months(i64::from(keep.saturating_sub(1))))
            .context("--keep-months is too large")?
            .to_zoned(jiff::tz::TimeZone::UTC)?
            .timestamp()
            .as_millisecond();
        let n = crate::fleetdb::drop_before(&mut self.store, cutoff)?;
        if n > 0 {
            out_line(&format!(
                "deleted {n} telemetry samples, calls, cleared alarms and delivered messages older than {keep} months (--keep-months)"
            ));
        }
        Ok(())
    }

    fn chunk(&mut self, site: &str, box_id: &str, c: &wire::Chunk) -> Result<Outcome> {
        let r = recordings::receive(
            &mut self.store,
            &self.recordings,
            site,
            box_id,
            c,
            mqtt::now_ms(),
        )?;
        let id = &c.id;
        let mut out = Outcome::default();
        for n in r.notes {
            out.warnings
                .push(format!("recording {id} from {site}/{box_id}: {n}"));
        }
        let ack = |result| {
            (
                self.ack_topic(site, box_id),
                wire::recording_ack(id, result),
            )
        };
        match r.verdict {
            Verdict::Partial { .. } => {}
            Verdict::Late => out.publish.push(ack(Ok(()))),
            Verdict::Complete { .. } => {
                out.stored = Some(Stored {
                    source: format!("{site}/{box_id}"),
                    what: "recordings".into(),
                    new: 1,
                    again: 0,
                });
                out.publish.push(ack(Ok(())));
            }
            Verdict::AlreadyComplete => {
                out.warnings.push(format!(
                    "recording {id} from {site}/{box_id}: already complete; acknowledged again"
                ));
                out.publish.push(ack(Ok(())));
            }
            Verdict::Missing { have, size } => {
                out.warnings.push(format!(
                    "recording {id} from {site}/{box_id}: last chunk in but {have} of {size} bytes held; asking for the rest"
                ));
                let why = format!("missing bytes: have {have} of {size}");
                out.publish.push(ack(Err((have, &why))));
            }
            Verdict::ChecksumMismatch { expected, got } => {
                out.warnings.push(format!(
                    "recording {id} from {site}/{box_id}: checksum mismatch (sha256 {got}, the box says {expected}); starting over"
                ));
                out.publish.push(ack(Err((0, "checksum mismatch"))));
            }
            Verdict::OtherBox { box_id: owner } => {
                out.warnings.push(format!(
                    "recording {id} from {site}/{box_id}: dropped, a recording with this id is stored from box {owner}"
                ));
            }
        }
        Ok(out)
    }
}

/// The client id of a collector: stable for a group and database so a
/// restarted collector resumes its session. A shared PostgreSQL database
/// is written by collectors on several machines: the host name tells
/// them apart.
fn stable_client_id(group: &str, db: &str) -> String {
    let mut h = Sha256::new();
    h.update(db.as_bytes());
    if db::is_postgres(db) {
        h.update(b"\0");
        h.update(host_name().as_bytes());
    }
    format!(
        "callbox-hq-collect-{group}-{}",
        recordings::hex(&h.finalize()[..4])
    )
}

/// This machine's name (empty if it cannot be read).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Runs the collector until SIGINT/SIGTERM.
pub async fn run(broker: &Broker, o: Options) -> Result<()> {
    if !valid_id(&o.group) {
        bail!("--group `{}`: use {ID_RULE}", o.group);
    }
    let stop = mqtt::shutdown_signal()?;
    if o.keep_months.is_some() && !db::is_postgres(&o.db) {
        bail!("--keep-months is for a PostgreSQL database (--db postgres://…)");
    }
    let (db_id, recordings) = if db::is_postgres(&o.db) {
        let shown = crate::pg::redact(&o.db);
        let dir = o.recordings.unwrap_or_else(|| PathBuf::from("recordings"));
        (shown, dir)
    } else {
        let abs = absolute(Path::new(&o.db))?;
        let dir = o.recordings.unwrap_or_else(|| {
            abs.parent()
                .map_or_else(|| PathBuf::from("recordings"), |p| p.join("recordings"))
        });
        (abs.display().to_string(), dir)
    };
    std::fs::create_dir_all(&recordings)
        .with_context(|| format!("--recordings {}: cannot create it", recordings.display()))?;
    let recordings_shown = recordings.clone();
    let client_id = o
        .client_id
        .unwrap_or_else(|| stable_client_id(&o.group, &db_id));

    let mut options = broker.options(&client_id, false);
    options.set_manual_acks(true);
    // Telemetry is shared like records: each message is stored once by
    // one collector of the group (a box sends it every 30 s, so a
    // collector started late waits that long for it). Presence goes to
    // every collector, not shared: a shared subscription gets no retained
    // messages and a box's status changes rarely; storing it twice
    // changes nothing.
    let subs = ["records", "upload"]
        .iter()
        .map(|k| {
            (
                format!("$share/{}/{}/+/+/{k}/+", o.group, broker.root),
                QoS::AtLeastOnce,
            )
        })
        .chain([
            (
                format!("$share/{}/{}/+/+/telemetry", o.group, broker.root),
                QoS::AtLeastOnce,
            ),
            (format!("{}/+/+/status", broker.root), QoS::AtLeastOnce),
        ])
        .collect();
    // The database lives on the store thread: the PostgreSQL client is a
    // blocking one, with a runtime of its own that must not run (or be
    // dropped) on this one. The thread answers once it is open.
    let (in_tx, in_rx) = mpsc::unbounded_channel::<Work>();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<(Option<Publish>, Outcome)>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (spec, ca, root, max_message, keep_months) = (
        o.db.clone(),
        o.db_ca.clone(),
        broker.root.clone(),
        o.max_message,
        o.keep_months,
    );
    let store_thread = std::thread::Builder::new()
        .name("store".into())
        .spawn(move || {
            let store = match Db::open(&spec, ca.as_deref()) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return Ok(());
                }
            };
            let stop_flag = match &store {
                Db::Postgres(p) => Some(p.stop_flag()),
                Db::Sqlite(_) => None,
            };
            let _ = ready_tx.send(Ok(stop_flag));
            let collector = Collector::new(store, recordings.clone(), &root, max_message);
            store_loop(collector, keep_months, in_rx, out_tx)
        })
        .context("starting the store thread")?;
    let pg_stop = ready_rx
        .await
        .map_err(|_| anyhow::anyhow!("the store thread ended before opening the database"))??;
    let mut conn = mqtt::spawn(options, subs);
    eprintln!(
        "callbox-hq: collect: {} into {db_id} (recordings in {}), client id {client_id}",
        broker.url,
        recordings_shown.display()
    );

    let mut in_tx = Some(in_tx);
    let mut session_present = false;
    let mut tally = Tally::default();
    let mut every = tokio::time::interval(SUMMARY_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fatal: Option<anyhow::Error> = None;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop, if in_tx.is_some() => {
                eprintln!("callbox-hq: collect: stopping");
                in_tx = None;
                // A store thread waiting for the database gives up: what it
                // holds is not acked, and comes again to the next run.
                if let Some(f) = &pg_stop {
                    f.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            note = conn.notes.recv() => match note {
                Some(Note::Message(p)) => {
                    // Once stopping, a message is neither stored nor acked:
                    // the broker redelivers it to the resumed session.
                    if let Some(tx) = &in_tx {
                        let _ = tx.send(Work::Message(p));
                    }
                }
                Some(Note::Connected { session_present: s }) => session_present = s,
                Some(Note::Subscribed { refused }) if !refused.is_empty() => {
                    fatal = Some(anyhow::anyhow!(
                        "the broker refused the subscription to {} (shared subscriptions not supported, or not allowed)",
                        refused.join(" and ")
                    ));
                    in_tx = None;
                }
                Some(Note::Subscribed { .. }) => {
                    let session = if session_present { "resumed" } else { "new" };
                    out_line(&format!("# subscribed as {client_id} (session {session})"));
                }
                Some(Note::Lost { error, retry_in }) => eprintln!(
                    "callbox-hq: collect: {}: {error}; retrying in {}s",
                    broker.url,
                    retry_in.as_secs()
                ),
                None => {
                    fatal = Some(anyhow::anyhow!("the connection task ended"));
                    in_tx = None;
                }
            },
            _ = every.tick() => {
                if let Some(line) = tally.take_line(SUMMARY_EVERY.as_secs()) {
                    out_line(&line);
                }
                if let Some(tx) = &in_tx {
                    let _ = tx.send(Work::Tick);
                }
            }
            done = out_rx.recv() => match done {
                Some((p, outcome)) => {
                    if let Some(s) = &outcome.stored {
                        tally.add(s);
                    }
                    for l in &outcome.lines {
                        out_line(l);
                    }
                    for w in &outcome.warnings {
                        eprintln!("callbox-hq: collect: {w}");
                    }
                    for (topic, payload) in outcome.publish {
                        conn.client.publish(topic, QoS::AtLeastOnce, false, payload).await?;
                    }
                    if let Some(p) = p {
                        conn.client.ack(&p).await?;
                    }
                }
                // The store thread is done: stopped, or failed.
                None => break,
            },
        }
    }
    conn.close(Duration::from_secs(5)).await;
    if let Some(line) = tally.take_line(SUMMARY_EVERY.as_secs()) {
        out_line(&line);
    }
    let stored = store_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the store thread panicked"))?;
    stored?;
    match fatal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A records batch and the box it came from.
#[derive(Debug)]
struct Batch {
    site: String,
    box_id: String,
    records: wire::Records,
}

/// What a message is, once checked.
#[derive(Debug)]
enum Route {
    /// Bad input: the outcome says why (still acked, never redelivered).
    Drop(Outcome),
    /// Records to store.
    Records(Batch),
    /// A recording's chunk: site, box, the chunk.
    Chunk(String, String, wire::Chunk),
    /// Presence or telemetry, for the fleet tables.
    Fleet(crate::fleetdb::FleetMsg),
    /// Bad input from a box, kept aside in `held` with the reason.
    Held(String),
}

/// Presence, telemetry and held messages, stored in a group's transaction.
#[derive(Debug, Default)]
struct Extra<'a> {
    fleet: Vec<crate::fleetdb::FleetMsg>,
    held: Vec<(&'a str, String, &'a [u8])>,
}

/// Most messages stored in one transaction.
const GROUP_MAX: usize = 256;

/// What the store thread is given.
#[derive(Debug)]
enum Work {
    /// A message to store (and then ack).
    Message(Publish),
    /// Time to report the gaps that stayed.
    Tick,
}

/// How often old months are looked for with `--keep-months`.
const RETENTION_EVERY: Duration = Duration::from_secs(6 * 3600);

/// The store thread: one message at a time, in order, until the input
/// closes. A PostgreSQL server that went away is waited for and the
/// message stored again; any other database or disk error stops it.
fn store_loop(
    mut collector: Collector,
    keep_months: Option<u32>,
    mut rx: mpsc::UnboundedReceiver<Work>,
    tx: mpsc::UnboundedSender<(Option<Publish>, Outcome)>,
) -> Result<()> {
    let mut retention_due = std::time::Instant::now();
    while let Some(work) = rx.blocking_recv() {
        let mut group = Vec::new();
        let mut tick = false;
        match work {
            Work::Message(p) => group.push(p),
            Work::Tick => tick = true,
        }
        // What else is already waiting goes into the same transaction.
        while !group.is_empty() && group.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(Work::Message(p)) => group.push(p),
                Ok(Work::Tick) => tick = true,
                Err(_) => break,
            }
        }
        if tick {
            let lines = retrying(&mut collector, |c| c.due_gaps(Instant::now()))
                .context("checking gaps")?;
            let outcome = Outcome {
                lines,
                ..Outcome::default()
            };
            if tx.send((None, outcome)).is_err() {
                break;
            }
        }
        if group.is_empty() {
            continue;
        }
        if let Some(keep) = keep_months
            && std::time::Instant::now() >= retention_due
        {
            retrying(&mut collector, |c| c.drop_old_months(keep)).context("dropping old months")?;
            retention_due = std::time::Instant::now() + RETENTION_EVERY;
        }
        let msgs: Vec<(&str, &[u8])> = group
            .iter()
            .map(|p| (p.topic.as_str(), &p.payload[..]))
            .collect();
        let outcomes = match store_retrying(&mut collector, &msgs)? {
            Some(o) => o,
            // One of them the database refuses: each on its own, so only
            // that one is left out.
            None => {
                let mut outs = Vec::with_capacity(msgs.len());
                for m in &msgs {
                    outs.push(
                        match store_retrying(&mut collector, std::slice::from_ref(m))? {
                            Some(mut o) => o.remove(0),
                            None => Outcome {
                                warnings: vec![format!(
                                    "dropped a message on {}: the database refuses its data",
                                    m.0
                                )],
                                ..Outcome::default()
                            },
                        },
                    );
                }
                outs
            }
        };
        drop(msgs);
        for (p, outcome) in group.into_iter().zip(outcomes) {
            if tx.send((Some(p), outcome)).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Stores `msgs` in one go, waiting for a database that went away.
/// `None` when the database refuses their data (it would every time);
/// `Err` for any other failure, which stops the collector.
fn store_retrying(
    collector: &mut Collector,
    msgs: &[(&str, &[u8])],
) -> Result<Option<Vec<Outcome>>> {
    retrying(collector, |c| match c.handle_all(msgs) {
        Err(e) if c.store.refuses_data(&e) => Ok(None),
        r => r.map(Some),
    })
    .with_context(|| format!("storing {} messages from {}", msgs.len(), msgs[0].0))
}

/// Runs `f` until it succeeds, waiting for a database that went away in
/// between ([`Db::recover`]); any other failure is returned.
fn retrying<T>(c: &mut Collector, mut f: impl FnMut(&mut Collector) -> Result<T>) -> Result<T> {
    loop {
        match f(c) {
            Ok(v) => return Ok(v),
            Err(e) => {
                eprintln!("callbox-hq: collect: the database failed: {e:#}");
                if !c.store.recover(&e) {
                    return Err(e);
                }
            }
        }
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).with_context(|| format!("--db {}", p.display()))?;
    Ok(abs.canonicalize().unwrap_or(abs))
}

/// `callbox-hq gaps`: every missing range of the records stored.
pub fn gaps(db: &str, ca: Option<&Path>, json: bool) -> Result<()> {
    let mut store = Db::open_read_only(db, ca)?;
    for g in store.gaps()? {
        let line = if json {
            serde_json::json!({
                "site": g.site, "box": g.box_id, "epoch": g.epoch, "stream": g.stream,
                "from": g.from, "to": g.to,
            })
            .to_string()
        } else {
            g.to_string()
        };
        if !out_line(&line) {
            break;
        }
    }
    Ok(())
}

/// `callbox-hq export`: the stored `data` of a stream's records, one JSON
/// per line, ordered by (box, epoch, seq).
pub fn export(
    db: &str,
    ca: Option<&Path>,
    stream: &str,
    site: Option<&str>,
    box_id: Option<&str>,
    latest: bool,
) -> Result<()> {
    let mut store = Db::open_read_only(db, ca)?;
    if !latest {
        return store.export(stream, site, box_id, out_line);
    }
    // Later versions replace earlier ones in place: the output keeps the
    // order in which each id was first seen.
    let mut order: Vec<String> = Vec::new();
    let mut by_id: std::collections::HashMap<String, usize> = Default::default();
    store.export(stream, site, box_id, |data| {
        let id = serde_json::from_str::<serde_json::Value>(data)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_string));
        match id {
            Some(id) if by_id.contains_key(&id) => order[by_id[&id]] = data.to_string(),
            Some(id) => {
                by_id.insert(id, order.len());
                order.push(data.to_string());
            }
            None => order.push(data.to_string()),
        }
        true
    })?;
    for line in &order {
        if !out_line(line) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use base64::Engine;

    fn collector() -> (tempfile::TempDir, Collector) {
        let dir = tempfile::tempdir().unwrap();
        let store = Db::Sqlite(Store::open(&dir.path().join("hq.db")).unwrap());
        let c = Collector::new(store, dir.path().join("rec"), "callbox", 1 << 20);
        (dir, c)
    }

    fn records(epoch: &str, seqs: &[u64]) -> Vec<u8> {
        let recs: Vec<_> = seqs
            .iter()
            .map(|s| serde_json::json!({"seq": s, "id": format!("{epoch}/cdr/{s}"), "at": "t", "data": {"n": s}}))
            .collect();
        serde_json::json!({"v":1,"site":"s1","box":"b1","epoch":epoch,"stream":"cdr","records":recs})
            .to_string()
            .into_bytes()
    }

    const T: &str = "callbox/s1/b1/records/cdr";

    fn stored(what: &str, new: u64, again: u64) -> Stored {
        Stored {
            source: "s1/b1".into(),
            what: what.into(),
            new,
            again,
        }
    }

    #[test]
    fn records_are_stored_once_and_acked_every_time() {
        let (_d, mut c) = collector();
        let o = c.handle(T, &records("E", &[1, 2, 3])).unwrap();
        assert_eq!(o.stored, Some(stored("cdr", 3, 0)));
        assert!(o.lines.is_empty(), "{o:?}");
        assert_eq!(o.publish[0].0, "callbox/s1/b1/ack");
        let ack: serde_json::Value = serde_json::from_slice(&o.publish[0].1).unwrap();
        assert_eq!(
            ack,
            serde_json::json!({"v":1,"epoch":"E","stream":"cdr","seqs":[1,2,3]})
        );
        let o = c.handle(T, &records("E", &[3, 4])).unwrap();
        assert_eq!(o.stored, Some(stored("cdr", 1, 1)));
        let ack: serde_json::Value = serde_json::from_slice(&o.publish[0].1).unwrap();
        assert_eq!(ack["seqs"], serde_json::json!([3, 4]));
    }

    #[test]
    fn a_skipped_seq_is_reported_once_the_grace_has_passed_if_still_missing() {
        let (_d, mut c) = collector();
        c.handle(T, &records("E", &[1, 2])).unwrap();
        let o = c.handle(T, &records("E", &[5, 6, 9])).unwrap();
        // Another collector of the group may be storing 3, 4, 7 and 8.
        assert!(o.lines.is_empty(), "{o:?}");
        let now = Instant::now();
        assert!(c.due_gaps(now).unwrap().is_empty());
        // 4 and 7 arrive late; 3 and 8 never do.
        let o = c.handle(T, &records("E", &[4, 7, 10])).unwrap();
        assert!(o.lines.is_empty(), "{o:?}");
        assert_eq!(o.stored, Some(stored("cdr", 3, 0)));
        let later = now + GAP_GRACE + Duration::from_secs(1);
        assert_eq!(
            c.due_gaps(later).unwrap(),
            [
                "gap: s1/b1 stream cdr epoch E missing 3..3",
                "gap: s1/b1 stream cdr epoch E missing 8..8",
            ]
        );
        // Reported once.
        assert!(c.due_gaps(later).unwrap().is_empty());
        // A new epoch starts at 1.
        c.handle(T, &records("F", &[1])).unwrap();
        assert!(c.due_gaps(later).unwrap().is_empty());
    }

    #[test]
    fn messages_waiting_together_are_stored_in_one_go_in_their_order() {
        let (_d, mut c) = collector();
        let (a, b, bad) = (records("E", &[1, 2]), records("E", &[3, 5]), b"x".to_vec());
        let outs = c
            .handle_all(&[(T, &a[..]), (T, &bad[..]), (T, &b[..]), (T, &a[..])])
            .unwrap();
        assert_eq!(outs.len(), 4);
        assert_eq!(outs[0].stored, Some(stored("cdr", 2, 0)));
        assert!(outs[1].warnings[0].contains("held"), "{:?}", outs[1]);
        assert_eq!(outs[2].stored, Some(stored("cdr", 2, 0)));
        // The same batch again in the group: stored once, acked again.
        assert_eq!(outs[3].stored, Some(stored("cdr", 0, 2)));
        assert_eq!(outs[3].publish.len(), 1);
        // The seqs the group saw carry on: 4 was skipped, nothing else.
        let later = Instant::now() + GAP_GRACE + Duration::from_secs(1);
        assert_eq!(
            c.due_gaps(later).unwrap(),
            ["gap: s1/b1 stream cdr epoch E missing 4..4"]
        );
    }

    #[test]
    fn missing_ranges_leave_out_what_is_held() {
        assert_eq!(missing(3, 8, &[]), [(3, 8)]);
        assert_eq!(missing(3, 8, &[3, 4, 7]), [(5, 6), (8, 8)]);
        assert_eq!(missing(3, 8, &[3, 4, 5, 6, 7, 8]), []);
        assert_eq!(missing(3, 8, &[1, 9]), [(3, 8)]);
    }

    #[test]
    fn gaps_are_picked_up_from_the_database_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hq.db");
        let mut c = Collector::new(
            Db::Sqlite(Store::open(&db).unwrap()),
            dir.path().into(),
            "callbox",
            1 << 20,
        );
        c.handle(T, &records("E", &[1, 2])).unwrap();
        drop(c);
        let mut c = Collector::new(
            Db::Sqlite(Store::open(&db).unwrap()),
            dir.path().into(),
            "callbox",
            1 << 20,
        );
        c.handle(T, &records("E", &[4])).unwrap();
        let later = Instant::now() + GAP_GRACE + Duration::from_secs(1);
        assert_eq!(
            c.due_gaps(later).unwrap(),
            ["gap: s1/b1 stream cdr epoch E missing 3..3"]
        );
    }

    #[test]
    fn bad_input_is_dropped_with_the_reason_and_never_stored() {
        let (_d, mut c) = collector();
        let cases: [(&str, &[u8], &str); 6] = [
            (T, b"{not json", "not a JSON object"),
            (
                T,
                br#"{"v":1,"epoch":"E","records":[{"seq":"1"}]}"#,
                "records[0].seq",
            ),
            (T, br#"{"v":9,"epoch":"E","records":[]}"#, "v=9"),
            (
                "callbox/s1/b1/upload/R1",
                br#"{"v":1,"id":"R1","offset":0,"size":4,"data":"%%%"}"#,
                "base64",
            ),
            (
                "callbox/s1/b1/upload/R1",
                br#"{"v":1,"id":"R1","offset":8,"size":4,"data":"AAAA"}"#,
                "beyond",
            ),
            (
                "callbox/s1/b1/other/x",
                b"{}",
                "not a records, upload, status or telemetry topic",
            ),
        ];
        for (topic, payload, want) in cases {
            let o = c.handle(topic, payload).unwrap();
            assert!(o.publish.is_empty() && o.lines.is_empty(), "{o:?}");
            assert!(
                o.warnings[0].contains(want),
                "{:?} (wanted {want})",
                o.warnings
            );
        }
        let big = vec![b' '; (1 << 20) + 1];
        let o = c.handle(T, &big).unwrap();
        assert!(o.warnings[0].contains("--max-message"), "{:?}", o.warnings);
        // The box's records that could not be taken are kept aside with
        // their reason, as sent; nothing reached the records.
        let held = c
            .store
            .query(
                "SELECT topic, reason, payload FROM held ORDER BY reason",
                &[],
            )
            .unwrap();
        assert_eq!(held.len(), 3, "{held:?}");
        assert!(held[0][1].text().unwrap().contains("records[0].seq"));
        assert!(held[1][1].text().unwrap().contains("not a JSON object"));
        assert!(held[2][1].text().unwrap().contains("v=9"));
        assert_eq!(
            held[2][2].text(),
            Some(r#"{"v":9,"epoch":"E","records":[]}"#)
        );
        let n = c.store.query("SELECT COUNT(*) FROM records", &[]).unwrap();
        assert_eq!(n[0][0].int(), Some(0));
    }

    #[test]
    fn a_recording_is_acked_when_complete_and_again_when_its_last_chunk_repeats() {
        let (dir, mut c) = collector();
        let data = b"RIFF0000WAVEfmt ";
        let sha = recordings::hex(&Sha256::digest(data));
        let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        let first = serde_json::json!({"v":1,"id":"R1","offset":0,"size":16,"data":b64(&data[..8]),"last":false,
            "meta":{"call_id":"c","kind":"call","format":"alaw","file":"recordings/R1.wav","encrypted":false}});
        let last = serde_json::json!({"v":1,"id":"R1","offset":8,"size":16,"data":b64(&data[8..]),"last":true,"sha256":sha});
        let topic = "callbox/s1/b1/upload/R1";
        let o = c.handle(topic, first.to_string().as_bytes()).unwrap();
        assert_eq!(o, Outcome::default());
        let o = c.handle(topic, last.to_string().as_bytes()).unwrap();
        assert_eq!(o.stored, Some(stored("recordings", 1, 0)));
        let ack: serde_json::Value = serde_json::from_slice(&o.publish[0].1).unwrap();
        assert_eq!(ack, serde_json::json!({"v":1,"recording":"R1","ok":true}));
        let again = c.handle(topic, last.to_string().as_bytes()).unwrap();
        assert_eq!(again.publish, o.publish);
        assert_eq!(
            std::fs::read(dir.path().join("rec/b1/R1.wav")).unwrap(),
            data
        );
    }

    #[test]
    fn a_last_chunk_with_bytes_missing_asks_for_them() {
        let (_d, mut c) = collector();
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"abcd");
        let last = serde_json::json!({"v":1,"id":"R2","offset":4,"size":8,"data":b64,"last":true,"sha256":"0".repeat(64)});
        let o = c
            .handle("callbox/s1/b1/upload/R2", last.to_string().as_bytes())
            .unwrap();
        let ack: serde_json::Value = serde_json::from_slice(&o.publish[0].1).unwrap();
        assert_eq!(ack["ok"], false);
        assert_eq!(ack["have"], 0);
        assert!(ack["error"].as_str().unwrap().contains("missing"));
    }

    #[test]
    fn the_collector_client_id_is_stable_per_group_and_database() {
        let a = stable_client_id("collectors", "/var/hq/a.db");
        assert_eq!(a, stable_client_id("collectors", "/var/hq/a.db"));
        assert_ne!(a, stable_client_id("collectors", "/var/hq/b.db"));
        assert_ne!(a, stable_client_id("other", "/var/hq/a.db"));
    }
}
