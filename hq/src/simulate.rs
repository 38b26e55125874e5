//! `callbox-hq simulate`: a fleet of simulated boxes on the broker, so the
//! collector path is measured at fleet scale on one machine. Each box has
//! its own MQTT session and speaks the contract of docs/mqtt.md: a
//! retained online status (offline as its last will), telemetry, its call
//! records (`cdr`) and their event logs (`call_events`) in batches with
//! seqs from 1 in an epoch of its own, product checks (`lookup`), alarms
//! now and then, and a share of
//! its calls recorded and uploaded in chunks. It counts what it published
//! and what the collectors acknowledged end to end (`{b}/ack`), and ends
//! with a JSON line of totals.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use base64::Engine;
use rumqttc::{LastWill, QoS};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::mqtt::{self, Broker, Note, now_text, out_line};

/// Options of `simulate`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Boxes.
    pub boxes: u32,
    /// Sites the boxes are spread over.
    pub sites: u32,
    /// Calls per box per day of simulated time.
    pub calls_per_day: f64,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// How long to run (real time).
    pub seconds: u64,
    /// Share of calls recorded (and uploaded).
    pub recorded: f64,
    /// Chance per batch that a box's trunk goes down.
    pub trunk_faults: f64,
    /// Bytes of a recording.
    pub recording_bytes: usize,
    /// Boxes connecting per second at the start.
    pub connect_rate: u32,
    /// How long to wait at the end for the last acks.
    pub ack_wait: Duration,
    /// How often a box sends what it has (its calls since, as one batch
    /// per stream): a real box batches its outbox the same way.
    pub batch_every: Duration,
}

/// What the fleet did, counted by every box.
#[derive(Debug, Default)]
struct Counts {
    connected: AtomicU64,
    records: AtomicU64,
    acked: AtomicU64,
    recordings: AtomicU64,
    recordings_acked: AtomicU64,
    messages: AtomicU64,
}

/// A small pseudo-random generator (xorshift): each box its own, seeded
/// by its number, so a run is the same every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A Poisson draw with mean `mean` (Knuth; means here are small).
    fn poisson(&mut self, mean: f64) -> u32 {
        if mean <= 0.0 {
            return 0;
        }
        if mean > 30.0 {
            // Normal approximation for the rare large mean.
            let u = self.unit().max(1e-12);
            let v = self.unit();
            let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
            return (mean + z * mean.sqrt()).round().max(0.0) as u32;
        }
        let l = (-mean).exp();
        let (mut k, mut p) = (0, 1.0);
        loop {
            p *= self.unit();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }

    fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
        of[(self.next() % of.len() as u64) as usize]
    }
}

/// Runs the fleet for `o.seconds`, then waits for the last acks.
pub async fn run(broker: &Broker, o: Options) -> Result<()> {
    if o.boxes == 0 || o.sites == 0 {
        bail!("--boxes and --sites must be at least 1");
    }
    if !(0.0..=1.0).contains(&o.recorded) {
        bail!("--recorded is a share, from 0 to 1");
    }
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(tokio::sync::watch::Sender::new(false));
    let broker = Arc::new(broker.clone());
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(o.boxes as usize);
    let pace = Duration::from_secs_f64(1.0 / f64::from(o.connect_rate.max(1)));
    let end_at = started + Duration::from_secs(o.seconds);
    let fleet = Arc::new(Fleet {
        broker,
        o: o.clone(),
        counts: counts.clone(),
        stop: stop.clone(),
        end_at,
    });
    for n in 0..o.boxes {
        tasks.push(tokio::spawn(one_box(fleet.clone(), n)));
        tokio::time::sleep(pace).await;
    }
    // Progress every 5 s until the end.
    let mut last = (0, 0, Instant::now());
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.tick().await;
    while Instant::now() < end_at {
        tokio::select! {
            _ = every.tick() => {}
            () = tokio::time::sleep_until(end_at.into()) => break,
        }
        let (r, a) = (
            counts.records.load(Ordering::Relaxed),
            counts.acked.load(Ordering::Relaxed),
        );
        let dt = last.2.elapsed().as_secs_f64().max(1e-3);
        eprintln!(
            "callbox-hq: simulate: {} boxes connected, {:.0} records/s published, {:.0}/s acked, {} records in all",
            counts.connected.load(Ordering::Relaxed),
            (r - last.0) as f64 / dt,
            (a - last.1) as f64 / dt,
            r
        );
        last = (r, a, Instant::now());
    }
    // Stop making calls; wait for the collectors to ack what was sent.
    let published_by = started.elapsed();
    let wait_end = Instant::now() + o.ack_wait;
    while Instant::now() < wait_end
        && (counts.acked.load(Ordering::Relaxed) < counts.records.load(Ordering::Relaxed)
            || counts.recordings_acked.load(Ordering::Relaxed)
                < counts.recordings.load(Ordering::Relaxed))
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let acked_by = started.elapsed();
    stop.send_replace(true);
    for t in tasks {
        let _ = t.await;
    }
    let c = &counts;
    out_line(
        &json!({
            "boxes": o.boxes,
            "sites": o.sites,
            "records": c.records.load(Ordering::Relaxed),
            "acked": c.acked.load(Ordering::Relaxed),
            "recordings": c.recordings.load(Ordering::Relaxed),
            "recordings_acked": c.recordings_acked.load(Ordering::Relaxed),
            "messages": c.messages.load(Ordering::Relaxed),
            "published_s": published_by.as_secs_f64(),
            "acked_s": acked_by.as_secs_f64(),
        })
        .to_string(),
    );
    Ok(())
}

/// The streams a box sends, with their seqs.
struct Streams {
    epoch: String,
    cdr: u64,
    events: u64,
    alarm: u64,
    lookup: u64,
}

/// What every simulated box shares.
struct Fleet {
    broker: Arc<Broker>,
    o: Options,
    counts: Arc<Counts>,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    /// When the boxes stop making calls.
    end_at: Instant,
}

/// Box number `n` of the fleet, until the fleet stops.
async fn one_box(fleet: Arc<Fleet>, n: u32) {
    let (broker, o, counts, end_at) = (&fleet.broker, &fleet.o, &fleet.counts, fleet.end_at);
    let site = format!("site-{:04}", n % o.sites);
    let box_id = format!("sim-{n:05}");
    let b = format!("{}/{site}/{box_id}", broker.root);
    let mut rng =
        Rng(0x9E37_79B9_7F4A_7C15 ^ (u64::from(n) + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let status = |state: &str| {
        json!({"v":1,"state":state,"site":site,"box":box_id,"firmware":"sim","boot_id":format!("boot-{n}"),
               "session":1,"at":now_text(),"reason": if state == "offline" {Some("lost")} else {None}})
        .to_string()
    };
    let mut options = broker.options(&format!("sim-{site}-{box_id}"), true);
    options.set_last_will(LastWill::new(
        format!("{b}/status"),
        status("offline"),
        QoS::AtLeastOnce,
        true,
    ));
    let mut conn = mqtt::spawn(options, vec![(format!("{b}/ack"), QoS::AtLeastOnce)]);
    let client = conn.client.clone();
    // Wait for the first connection before publishing.
    loop {
        match conn.notes.recv().await {
            Some(Note::Subscribed { .. }) => break,
            Some(_) => {}
            None => return,
        }
    }
    counts.connected.fetch_add(1, Ordering::Relaxed);
    let mut acked = std::collections::HashSet::new();
    let publish = |topic: String, payload: String, retain: bool| {
        let client = client.clone();
        let counts = counts.clone();
        async move {
            if client
                .publish(topic, QoS::AtLeastOnce, retain, payload)
                .await
                .is_ok()
            {
                counts.messages.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    publish(format!("{b}/status"), status("online"), true).await;

    let mut s = Streams {
        epoch: format!("sim{n:05}-{:x}", rng.next() & 0xffff_ffff),
        cdr: 0,
        events: 0,
        alarm: 0,
        lookup: 0,
    };
    let tick = o.batch_every;
    // Calls per tick for this box.
    let rate = o.calls_per_day / 86_400.0 * o.speed * tick.as_secs_f64();
    let telemetry_every = Duration::from_secs_f64((30.0 / o.speed).max(1.0));
    let mut next_telemetry = Instant::now();
    let mut alarm_raised = false;
    let mut stopping = fleet.stop.subscribe();
    // Boxes tick out of step, as a real fleet does.
    let offset = Duration::from_millis(rng.next() % tick.as_millis().max(1) as u64);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, tick);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            note = conn.notes.recv() => {
                match note {
                    Some(Note::Message(p)) => ack(&p.payload, counts, &mut acked),
                    Some(_) => {}
                    None => break,
                }
                continue;
            }
            _ = stopping.changed() => break,
        }
        if Instant::now() >= end_at {
            // Calls are over; the box stays connected for the last acks.
            continue;
        }
        let calls = rng.poisson(rate);
        let mut cdr = Vec::new();
        let mut events = Vec::new();
        let mut lookups = Vec::new();
        for _ in 0..calls {
            let (c, e) = call(&mut rng, &s.epoch, &mut s.cdr, &mut s.events);
            lookups.extend(product_check(&mut rng, &s.epoch, &mut s.lookup, &c));
            cdr.push(c);
            events.push(e);
            if rng.unit() < o.recorded {
                upload(&b, &site, &box_id, &mut rng, o.recording_bytes, &publish).await;
                counts.recordings.fetch_add(1, Ordering::Relaxed);
            }
        }
        let calls_now = u64::from(calls);
        for (stream, recs) in [("cdr", cdr), ("call_events", events), ("lookup", lookups)] {
            for batch in recs.chunks(100) {
                let payload = json!({"v":1,"site":site,"box":box_id,"epoch":s.epoch,"stream":stream,"records":batch});
                counts
                    .records
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                publish(format!("{b}/records/{stream}"), payload.to_string(), false).await;
            }
        }
        // A trunk that goes down now and then, and comes back.
        if (!alarm_raised && rng.unit() < o.trunk_faults) || (alarm_raised && rng.unit() < 0.05) {
            alarm_raised = !alarm_raised;
            let at = now_text();
            let data = if alarm_raised {
                json!({"code":"line_down:trunk-1","severity":"critical","message":"trunk-1 down: registration refused: 503"})
            } else {
                json!({"code":"line_down:trunk-1","cleared":true})
            };
            // A box's alarm is a durable record and a live event.
            s.alarm += 1;
            let rec = json!({"v":1,"site":site,"box":box_id,"epoch":s.epoch,"stream":"alarm",
                "records":[{"seq":s.alarm,"id":format!("{}/alarm/{}", s.epoch, s.alarm),"at":at,"data":data}]});
            counts.records.fetch_add(1, Ordering::Relaxed);
            publish(format!("{b}/records/alarm"), rec.to_string(), false).await;
            let ev = json!({"v":1,"site":site,"box":box_id,"kind":"alarm","at":at,"data":data});
            let _ = client
                .publish(
                    format!("{b}/events/alarm"),
                    QoS::AtMostOnce,
                    false,
                    ev.to_string(),
                )
                .await;
        }
        if Instant::now() >= next_telemetry {
            next_telemetry = Instant::now() + telemetry_every;
            let t = telemetry(&site, &box_id, calls_now, alarm_raised, &mut rng);
            publish(format!("{b}/telemetry"), t.to_string(), true).await;
        }
    }
    let _ = client
        .publish(
            format!("{b}/status"),
            QoS::AtLeastOnce,
            true,
            status("offline"),
        )
        .await;
    conn.close(Duration::from_secs(2)).await;
}

/// Counts an end-to-end ack.
/// Counts what an ack newly acknowledges: a record or a recording acked
/// again (two collectors, a redelivery) counts once, as a box forgets it
/// once.
fn ack(payload: &[u8], counts: &Counts, seen: &mut std::collections::HashSet<String>) {
    let Ok(v) = serde_json::from_slice::<Value>(payload) else {
        return;
    };
    if let Some(seqs) = v["seqs"].as_array() {
        let (epoch, stream) = (
            v["epoch"].as_str().unwrap_or(""),
            v["stream"].as_str().unwrap_or(""),
        );
        let new = seqs
            .iter()
            .filter(|s| seen.insert(format!("{epoch}/{stream}/{s}")))
            .count();
        counts.acked.fetch_add(new as u64, Ordering::Relaxed);
    } else if let Some(id) = v["recording"].as_str()
        && v["ok"] == true
        && seen.insert(format!("recording/{id}"))
    {
        counts.recordings_acked.fetch_add(1, Ordering::Relaxed);
    }
}

/// One finished call: its `cdr` record and its `call_events` record.
fn call(rng: &mut Rng, epoch: &str, cdr_seq: &mut u64, ev_seq: &mut u64) -> (Value, Value) {
    let at = now_text();
    let id = format!("{epoch}-c{:x}", rng.next());
    let answered = rng.unit() < 0.9;
    let queue = rng.pick(&["sales", "support", "service"]);
    let agent = rng.pick(&["alice", "bob", "carol", "dave"]);
    let dialled = rng.pick(&["4008001234", "4008005678", "4008009999"]);
    let wait = 1000 + rng.next() % 60_000;
    let talk = if answered {
        20_000 + rng.next() % 300_000
    } else {
        0
    };
    let data = json!({
        "id": id, "direction": "inbound", "start": at,
        "caller": format!("13{:09}", rng.next() % 1_000_000_000),
        "dialled": dialled,
        "disposition": if answered { "answered" } else { "abandoned" },
        "outcome": if answered { "done" } else { "abandoned" },
        "queue": queue, "queue_wait_ms": wait,
        "agent": if answered { Some(agent) } else { None },
        "talk_ms": talk,
        "wrap_code": if answered && rng.unit() < 0.3 { Some("2") } else { None },
        "ivr_path": ["main=1", queue],
        "survey_score": if answered && rng.unit() < 0.4 { Some(1 + rng.next() % 5) } else { None },
    });
    *cdr_seq += 1;
    *ev_seq += 1;
    let cdr =
        json!({"seq": *cdr_seq, "id": format!("{epoch}/cdr/{cdr_seq}"), "at": at, "data": data});
    let events: Vec<Value> = ["arrive", "answered", "menu", "queued", "bridged", "hangup"]
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"at": at, "mono_ms": i as u64 * 1000, "event": e, "data": {}}))
        .collect();
    let ev = json!({"seq": *ev_seq, "id": format!("{epoch}/call_events/{ev_seq}"), "at": at,
        "data": {"call_id": id, "events": events}});
    (cdr, ev)
}

/// A caller checking a product code in the IVR now and then (a fifth of
/// the calls): its `lookup` record, and a possible diversion's when the
/// product's region is not the caller's.
fn product_check(rng: &mut Rng, epoch: &str, seq: &mut u64, cdr: &Value) -> Vec<Value> {
    if rng.unit() >= 0.2 {
        return Vec::new();
    }
    let (at, call) = (cdr["at"].clone(), cdr["data"]["id"].clone());
    let code = format!("{:05}", rng.next() % 100_000);
    let found = rng.unit() < 0.9;
    let mut record = |data: Value| {
        *seq += 1;
        json!({"seq": *seq, "id": format!("{epoch}/lookup/{seq}"), "at": at, "data": data})
    };
    let mut out = vec![record(
        json!({"call_id": call, "source": "products", "key": code, "found": found}),
    )];
    if found && rng.unit() < 0.1 {
        let regions = ["east", "south", "north", "west"];
        let product = rng.pick(&regions);
        let caller = rng.pick(&regions);
        if product != caller {
            out.push(record(json!({"event": "possible_diversion", "call_id": call, "code": code,
                "caller": cdr["data"]["caller"], "product_region": product, "caller_region": caller})));
        }
    }
    out
}

/// Uploads a recording of `bytes` in two chunks.
async fn upload<F, Fut>(b: &str, site: &str, box_id: &str, rng: &mut Rng, bytes: usize, publish: &F)
where
    F: Fn(String, String, bool) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let id = format!("r{:016x}", rng.next());
    let data: Vec<u8> = (0..bytes).map(|i| (i as u8) ^ (rng.next() as u8)).collect();
    let sha = crate::recordings::hex(&Sha256::digest(&data));
    let half = bytes / 2;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let first = json!({"v":1,"site":site,"box":box_id,"id":id,"offset":0,"size":bytes,"data":b64(&data[..half]),"last":false,
        "meta":{"call_id":"sim","kind":"call","format":"alaw","file":format!("recordings/{id}.wav"),"encrypted":false}});
    let last = json!({"v":1,"site":site,"box":box_id,"id":id,"offset":half,"size":bytes,"data":b64(&data[half..]),"last":true,"sha256":sha});
    publish(format!("{b}/upload/{id}"), first.to_string(), false).await;
    publish(format!("{b}/upload/{id}"), last.to_string(), false).await;
}

/// A telemetry message like a box's (docs/mqtt.md).
fn telemetry(site: &str, box_id: &str, calls: u64, trunk_down: bool, rng: &mut Rng) -> Value {
    let line = |id: &str, up: bool| {
        json!({"id": id, "kind": "trunk", "up": up, "state": if up {"up"} else {"down"},
               "reason": if up {"registered at sip.carrier.cn"} else {"registration refused: 503"}, "busy": false})
    };
    json!({
        "v": 1, "site": site, "box": box_id, "at": now_text(), "firmware": "sim",
        "uptime_s": 3600, "cpu": {"box_pct": (rng.next() % 40) as f64, "daemon_pct": (rng.next() % 10) as f64},
        "disk": {"data_free_bytes": 20_000_000_000u64, "data_total_bytes": 30_000_000_000u64},
        "lines": [line("trunk-1", !trunk_down), line("trunk-2", true)],
        "calls_in_progress": calls,
        "queues": [{"name": "sales", "waiting": rng.next() % 4, "longest_wait_s": rng.next() % 60}],
        "agents": [{"id": "alice", "state": "available", "station": "desk-1"}],
        "backlog": {"records": 0, "recordings": 0, "recording_bytes": 0},
        "alarms": if trunk_down { json!([{"code": "line_down:trunk-1", "severity": "critical"}]) } else { json!([]) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_repeatable_and_poisson_means_hold() {
        let mut a = Rng(42);
        let mut b = Rng(42);
        assert_eq!(a.next(), b.next());
        let mut r = Rng(7);
        let n = 20_000;
        let sum: u64 = (0..n).map(|_| u64::from(r.poisson(0.5))).sum();
        let mean = sum as f64 / f64::from(n);
        assert!((mean - 0.5).abs() < 0.03, "{mean}");
    }

    #[test]
    fn a_call_makes_a_cdr_and_an_event_record_with_the_next_seqs() {
        let mut r = Rng(1);
        let (mut c, mut e) = (4, 9);
        let (cdr, ev) = call(&mut r, "E", &mut c, &mut e);
        assert_eq!((c, e), (5, 10));
        assert_eq!(cdr["seq"], 5);
        assert_eq!(cdr["id"], "E/cdr/5");
        assert_eq!(ev["data"]["call_id"], cdr["data"]["id"]);
        assert_eq!(ev["data"]["events"].as_array().unwrap().len(), 6);
    }
}
