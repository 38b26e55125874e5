//! The fleet link end to end: a real mosquitto on a free loopback port, the
//! real `callboxd` with the sim backend and a scenario, and the real
//! `callbox-hq collect`. What must hold (issue 6, docs/mqtt.md): every record
//! and recording reaches the collector exactly once and exactly as the box
//! has it — through broker restarts, a daemon killed mid-upload, half an
//! hour offline — with the daemon's memory bounded whatever the backlog;
//! presence, telemetry and events reach headquarters; every command gets
//! its answer and every bad one an error, with the daemon running on.
//!
//! Calls run in virtual time (`--fast --until-idle`) where only their
//! records matter; the link itself always runs in real time, so the drain
//! runs `callboxd run` without a scenario until the outbox is empty. Every
//! wait has a generous deadline and no test asserts how long anything took.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use callbox_tests::mqtt::{
    Broker, Collector, Daemon, HqProcess, ROOT, RssSampler, Sniffer, add_uplink, fill_outbox,
    hq_cmd, hq_net, json_lines, outbox_len, record_data, sha256_file, table, wait_until,
};
use callbox_tests::{Site, callboxd, text, write_tone_hz};
use serde_json::{Value, json};

const SITE: &str = "branch-1";
const BOX: &str = "box-1";

/// Longest any drain may take before the test calls it stuck (a debug
/// build on two cores, other tests running beside it).
const DRAIN_LIMIT: Duration = Duration::from_secs(600);

/// A site `branch-1` with 4 trunks and 4 desks whose agents `a1`..`a4`
/// serve the queue `sales` (every caller goes there), an outbound-capable
/// node `bye`, a product table, the given `[recording]` section, and an
/// `[uplink]` to `broker` with `uplink_extra` lines.
fn site(broker: &Broker, recording: &str, uplink_extra: &str) -> Site {
    let site = Site::new(1, 0, 0, "");
    let dir = site.dir.path();
    write_tone_hz(&dir.join("caller.wav"), 600.0, 30_000);
    write_tone_hz(&dir.join("agent.wav"), 1000.0, 30_000);
    std::fs::write(
        dir.join("products.csv"),
        "code,region,product\n1234567890,north,green tea\n",
    )
    .unwrap();
    site.write("site.toml", &site_config(recording, "info"));
    add_uplink(&site, &broker.uplink(BOX, uplink_extra));
    site
}

fn site_config(recording: &str, log_level: &str) -> String {
    let mut cfg = format!("[site]\nid = \"{SITE}\"\n\n[log]\nlevel = \"{log_level}\"\n\n");
    for i in 1..=4 {
        cfg += &format!("[[line]]\nid = \"trunk-{i}\"\nkind = \"trunk\"\n\n");
    }
    for i in 1..=4 {
        cfg += &format!("[[line]]\nid = \"desk-{i}\"\nkind = \"station\"\n\n");
    }
    cfg += r#"[inbound]

[ivr]
start = "sales"

[ivr.lookups]
products = "products.csv"

[ivr.node.sales]
type = "queue"
announce = []
on_overflow = "bye"

[ivr.node.bye]
type = "hangup"

[acd.queue.sales]
members = { a1 = 0, a2 = 0, a3 = 0, a4 = 0 }

"#;
    for i in 1..=4 {
        cfg += &format!("[acd.agent.a{i}]\nstation = \"desk-{i}\"\nlogged_in = true\n\n");
    }
    cfg += recording;
    cfg
}

/// `n` callers `1000000..`, one every `every_s`, each talking (600 Hz) and
/// hanging up `talk_s` after the box answers; the four agents answer after
/// a second and talk back (1000 Hz).
fn calls(n: u32, every_s: u32, talk_s: u32) -> String {
    let mut s = format!(
        "[[call]]\nat = \"1s\"\nfrom = \"1000{{n:4}}\"\nto = \"4001\"\nrepeat = {n}\nevery = \"{every_s}s\"\nhangup_after = \"{talk_s}s\"\nscript = [ {{ play = \"caller.wav\" }} ]\n\n"
    );
    for i in 1..=4 {
        s += &format!(
            "[[agent]]\nname = \"a{i}\"\nline = \"desk-{i}\"\nanswer_after = \"1s\"\nscript = [ {{ play = \"agent.wav\" }} ]\n\n"
        );
    }
    s
}

/// Plays `scenario` in virtual time to its end; the run must succeed.
fn play_fast(site: &Site, scenario: &str) {
    let path = site.write("calls.toml", scenario);
    let out = site.run_fast(&path);
    assert!(out.status.success(), "{}", text(&out));
}

/// Whether every finished recording of the box is at the collector with
/// the same bytes.
fn recordings_delivered(site: &Site, col: &Collector) -> bool {
    site.recordings().iter().all(|row| {
        let Some(file) = row["file"].as_str() else {
            return true;
        };
        let ours = site.data().join(file);
        if !ours.is_file() {
            return true;
        }
        col.recording_file(row["id"].as_str().unwrap())
            .is_some_and(|theirs| sha256_file(&theirs) == sha256_file(&ours))
    })
}

/// Runs `callboxd run` (real time, no scenario) until the outbox is empty
/// and every recording is at the collector, then stops it.
fn drain(site: &Site, col: &Collector) {
    let mut d = Daemon::start(site, &[]);
    let end = Instant::now() + DRAIN_LIMIT;
    while !(outbox_len(&site.data()) == 0 && recordings_delivered(site, col)) {
        assert!(d.running(), "callboxd stopped while draining:\n{}", d.log());
        assert!(
            Instant::now() < end,
            "not drained after {DRAIN_LIMIT:?}: {} records left in the outbox.\n--- daemon\n{}\n{}",
            outbox_len(&site.data()),
            d.log(),
            col.output()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(d.stop().success(), "{}", d.log());
}

/// The records of `stream` at the collector (`callbox-hq export` prints
/// each record's `data`) by the field that identifies them (`key`); each
/// once. Call records may be sent again, complete, when they change after
/// the call (docs/mqtt.md): those are read as headquarters is told to,
/// the latest per call.
fn collected(col: &Collector, stream: &str, key: &str) -> BTreeMap<String, Value> {
    let mut by_id = BTreeMap::new();
    let records = if stream == "cdr" {
        col.export_latest(stream)
    } else {
        col.export(stream)
    };
    for r in records {
        let id = record_data(&r)[key]
            .as_str()
            .unwrap_or_else(|| panic!("an exported {stream} record without `{key}`: {r}"))
            .to_string();
        assert!(
            by_id.insert(id.clone(), r).is_none(),
            "{stream} record {id} is stored twice at the collector"
        );
    }
    by_id
}

/// Every call record of the box is at the collector once, with the same
/// content, and so is every recording (byte for byte) and its metadata;
/// the collector knows of no gap.
fn assert_everything_arrived(site: &Site, col: &Collector) {
    let box_records = site.records();
    assert!(!box_records.is_empty(), "the scenario left no record");
    let cdr = collected(col, "cdr", "id");
    let cdr_by_call: BTreeMap<String, &Value> = cdr
        .values()
        .map(|r| {
            let d = record_data(r);
            (d["id"].as_str().unwrap_or_default().to_string(), d)
        })
        .collect();
    assert_eq!(
        cdr_by_call.len(),
        cdr.len(),
        "two cdr records carry the same call"
    );
    let ours: BTreeSet<&str> = box_records
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let theirs: BTreeSet<&str> = cdr_by_call.keys().map(String::as_str).collect();
    assert_eq!(ours, theirs, "call ids at the box and at the collector");
    for r in &box_records {
        let got = cdr_by_call[r["id"].as_str().unwrap()];
        if got != r {
            let keys: BTreeSet<&String> = r
                .as_object()
                .unwrap()
                .keys()
                .chain(got.as_object().map(|o| o.keys()).into_iter().flatten())
                .collect();
            let diff: Vec<String> = keys
                .into_iter()
                .filter(|k| r.get(*k) != got.get(*k))
                .map(|k| format!("{k}: box {:?} collector {:?}", r.get(k), got.get(k)))
                .collect();
            panic!("call {} differs at the collector: {diff:#?}", r["id"]);
        }
    }
    // Recordings: metadata records and files.
    let rows = site.recordings();
    let meta = collected(col, "recording", "id");
    assert_eq!(meta.len(), rows.len(), "recording records: {meta:#?}");
    for row in &rows {
        let id = row["id"].as_str().unwrap();
        let ours = site.data().join(row["file"].as_str().unwrap());
        let theirs = col
            .recording_file(id)
            .unwrap_or_else(|| panic!("recording {id} is not at the collector\n{}", col.output()));
        assert_eq!(
            sha256_file(&theirs),
            sha256_file(&ours),
            "recording {id}: the collector's file differs from the box's"
        );
        if let Some(sum) = row["sha256"].as_str() {
            assert_eq!(sha256_file(&theirs), sum, "recording {id} vs its row");
        }
    }
    // Each call's event log once.
    let events = collected(col, "call_events", "call_id");
    assert_eq!(events.len(), box_records.len(), "call_events records");
    assert_no_gaps(col);
}

/// `callbox-hq gaps --json` finds nothing missing.
fn assert_no_gaps(col: &Collector) {
    let out = col.gaps();
    assert!(out.status.success(), "callbox-hq gaps: {}", text(&out));
    let listed = json_lines(&out.stdout);
    assert!(
        listed.is_empty(),
        "the collector reports gaps: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

// ---------------------------------------------------------------------------
// Delivery

#[test]
fn records_and_recordings_arrive_exactly_once_and_byte_identical() {
    let broker = Broker::start();
    let col = Collector::start(&broker);
    let site = site(
        &broker,
        "[recording]\nmode = \"always\"\nformat = \"alaw\"\n",
        "",
    );
    play_fast(&site, &calls(8, 5, 12));
    assert_eq!(site.records().len(), 8);
    assert_eq!(site.recordings().len(), 8);
    drain(&site, &col);
    assert_everything_arrived(&site, &col);
}

#[test]
fn broker_killed_three_times_while_draining_loses_nothing() {
    const NOTIFY: usize = 10_000;
    // Killed brokers lose what they had queued for the collector (no
    // persistence): the box keeps each record until the collector acks it.
    let mut broker = Broker::down();
    let site = site(
        &broker,
        "",
        "e2e_ack = true\nack_timeout = \"3s\"\nbatch = 20\n",
    );
    play_fast(&site, &calls(20, 3, 5));
    fill_outbox(&site.data(), NOTIFY, "notify", 300).unwrap();
    let total = outbox_len(&site.data());
    assert!(total >= NOTIFY as u64 + 20, "backlog of {total}");

    broker.restart();
    let col = Collector::start(&broker);
    // Progress as seen on the wire: distinct records published (the
    // outbox's count moves only as the box's store commits acks).
    let wire = Sniffer::start(&broker, &format!("{ROOT}/{SITE}/{BOX}/records/+"));
    let mut seen = BTreeSet::new();
    let mut read = 0;
    let mut d = Daemon::start(&site, &[]);
    // Kill the broker when a quarter, half and three quarters of the
    // backlog have gone out: mid-stream whatever the drain's speed.
    for (kill, sent) in [total / 4, total / 2, total * 3 / 4]
        .into_iter()
        .enumerate()
    {
        let end = Instant::now() + DRAIN_LIMIT;
        while (seen.len() as u64) < sent {
            let msgs = wire.messages();
            for m in &msgs[read..] {
                let j = m.json();
                for r in j["records"].as_array().into_iter().flatten() {
                    seen.insert((j["stream"].to_string(), r["seq"].as_u64()));
                }
            }
            read = msgs.len();
            assert!(
                Instant::now() < end && d.running(),
                "kill {}: {} of {total} records published:\n{}\n{}",
                kill + 1,
                seen.len(),
                d.log(),
                col.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            outbox_len(&site.data()) > 0,
            "the backlog drained before kill {}: make it bigger",
            kill + 1
        );
        broker.kill();
        std::thread::sleep(Duration::from_millis(1500));
        broker.restart();
    }
    let end = Instant::now() + DRAIN_LIMIT;
    while outbox_len(&site.data()) > 0 {
        assert!(
            Instant::now() < end && d.running(),
            "{} records still in the outbox after the restarts:\n{}\n{}",
            outbox_len(&site.data()),
            d.log(),
            col.output()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(d.stop().success(), "{}", d.log());
    assert_eq!(broker.starts(), 4);

    let notify = collected(&col, "notify", "call_id");
    assert_eq!(notify.len(), NOTIFY, "notify records at the collector");
    assert_everything_arrived(&site, &col);
}

#[test]
fn callboxd_killed_mid_upload_resumes_the_recording_where_it_stopped() {
    let mut broker = Broker::down();
    let site = site(
        &broker,
        "[recording]\nmode = \"always\"\nformat = \"pcm16\"\n",
        "chunk_size = \"4KiB\"\n",
    );
    // One call of ten minutes: a 19 MB file, about 4,700 chunks.
    play_fast(&site, &calls(1, 1, 600));
    let rows = site.recordings();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let id = rows[0]["id"].as_str().unwrap().to_string();
    let size = rows[0]["size"].as_u64().unwrap();
    assert!(size > 10 << 20, "{size}");

    broker.restart();
    let col = Collector::start(&broker);
    let sniff = Sniffer::start(&broker, &format!("{ROOT}/{SITE}/{BOX}/upload/+"));
    let chunks = |msgs: &[callbox_tests::mqtt::Msg]| -> Vec<(u64, bool)> {
        msgs.iter()
            .map(|m| {
                let j = m.json();
                (j["offset"].as_u64().unwrap(), j["last"] == true)
            })
            .collect()
    };
    let mut d = Daemon::start(&site, &[]);
    wait_until(DRAIN_LIMIT, "200 chunks of the upload", || {
        sniff.on(&format!("upload/{id}")).len() >= 200 || !d.running()
    });
    d.kill();
    let before = chunks(&sniff.on(&format!("upload/{id}")));
    assert!(
        !before.iter().any(|(_, last)| *last),
        "the upload finished before the kill: make the recording longer"
    );
    let reached = before.iter().map(|(o, _)| *o).max().unwrap();
    let seen_before = sniff.on(&format!("upload/{id}")).len();

    let mut d = Daemon::start(&site, &[]);
    let end = Instant::now() + DRAIN_LIMIT;
    while !(outbox_len(&site.data()) == 0 && recordings_delivered(&site, &col)) {
        assert!(
            Instant::now() < end && d.running(),
            "the upload did not complete after the restart:\n{}\n{}",
            d.log(),
            col.output()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(d.stop().success(), "{}", d.log());
    let after = chunks(&sniff.on(&format!("upload/{id}"))[seen_before..]);
    let first = after
        .iter()
        .map(|(o, _)| *o)
        .min()
        .expect("chunks after the restart");
    assert!(
        first > 0,
        "the upload started again from 0 after the restart (it had reached offset {reached} of {size})"
    );
    assert!(
        first <= reached + 4096,
        "the restart skipped from {reached} to {first}"
    );
    assert_everything_arrived(&site, &col);
}

#[test]
fn thirty_minutes_offline_then_everything_arrives() {
    let mut broker = Broker::down();
    let site = site(
        &broker,
        "[recording]\nmode = \"always\"\nformat = \"ulaw\"\n",
        "",
    );
    // A call every two minutes for 32 minutes, the broker down throughout.
    play_fast(&site, &calls(17, 120, 20));
    assert_eq!(site.records().len(), 17);
    assert!(
        table(&site.data(), "outbox").len() >= 17 * 2,
        "cdr and call_events wait in the outbox"
    );
    broker.restart();
    let col = Collector::start(&broker);
    drain(&site, &col);
    assert_everything_arrived(&site, &col);
}

#[test]
fn rss_stays_bounded_while_a_100k_backlog_builds_and_drains() {
    const N: usize = 100_000;
    const BOUND_KIB: u64 = 32 << 10;
    let mut broker = Broker::down();
    let site = site(&broker, "", "e2e_ack = true\nack_timeout = \"5s\"\n");
    let mut d = Daemon::start(&site, &[]);
    d.wait_log(Duration::from_secs(60), "ready", |l| l.contains("ready"));
    let rss = RssSampler::start(d.pid(), Duration::from_millis(50));
    // The baseline: the daemon idle, its link failing to connect.
    std::thread::sleep(Duration::from_secs(3));
    let baseline = rss
        .max_since(Instant::now() - Duration::from_secs(3))
        .unwrap();

    let build = Instant::now();
    let fill = callboxd().with_file_name("outbox-fill");
    let out = std::process::Command::new(&fill)
        .args([
            "--data",
            site.data().to_str().unwrap(),
            "--count",
            &N.to_string(),
        ])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (cargo build --bins builds it)", fill.display()));
    assert!(out.status.success(), "outbox-fill: {}", text(&out));
    assert!(outbox_len(&site.data()) >= N as u64);
    let built = Instant::now();

    broker.restart();
    let col = Collector::start(&broker);
    let end = Instant::now() + DRAIN_LIMIT;
    while outbox_len(&site.data()) > 0 {
        assert!(
            Instant::now() < end && d.running(),
            "{} records left in the outbox:\n{}\n{}",
            outbox_len(&site.data()),
            d.log(),
            col.output()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let drained = Instant::now();
    let during_build = rss.max_between(build, built).unwrap_or(baseline);
    let during_drain = rss.max_between(built, drained).unwrap();
    eprintln!(
        "RSS: baseline {baseline} KiB, building {during_build} KiB, draining {during_drain} KiB ({} samples)",
        rss.len()
    );
    assert!(
        during_build < baseline + BOUND_KIB,
        "RSS grew from {baseline} KiB to {during_build} KiB while the backlog built"
    );
    assert!(
        during_drain < baseline + BOUND_KIB,
        "RSS grew from {baseline} KiB to {during_drain} KiB while {N} records drained"
    );
    assert!(d.stop().success(), "{}", d.log());
    let notify = collected(&col, "notify", "call_id");
    assert_eq!(notify.len(), N, "records at the collector");
    assert_no_gaps(&col);
}

// ---------------------------------------------------------------------------
// Presence, telemetry, events

/// The box's entry in `callbox-hq fleet --json`, if listed.
fn fleet_entry(broker: &Broker) -> Option<Value> {
    let out = hq_net(broker, &["fleet", "--json"]);
    assert!(
        out.status.success(),
        "callbox-hq fleet --json: {}",
        text(&out)
    );
    let all = json_lines(&out.stdout);
    let all = match all.as_slice() {
        [Value::Object(o)] if o.contains_key("boxes") => {
            o["boxes"].as_array().cloned().unwrap_or_default()
        }
        _ => all,
    };
    all.into_iter().find(|b| b["box"] == BOX || b["id"] == BOX)
}

/// `online` / `offline` from a fleet entry.
fn state_of(e: &Value) -> String {
    if let Some(s) = e["state"].as_str().or_else(|| e["status"].as_str()) {
        return s.to_string();
    }
    if let Some(s) = e["status"]["state"].as_str() {
        return s.to_string();
    }
    match e["online"].as_bool() {
        Some(true) => "online".into(),
        Some(false) => "offline".into(),
        None => format!("{e}"),
    }
}

fn session_of(e: &Value) -> u64 {
    e["session"]
        .as_u64()
        .or_else(|| e["status"]["session"].as_u64())
        .unwrap_or_else(|| panic!("no session in {e}"))
}

/// Waits until the fleet view shows the box in `state`; returns its entry.
fn wait_fleet(broker: &Broker, state: &str, limit: Duration) -> Value {
    let end = Instant::now() + limit;
    loop {
        let e = fleet_entry(broker);
        if let Some(e) = &e
            && state_of(e) == state
        {
            return e.clone();
        }
        assert!(
            Instant::now() < end,
            "the fleet view did not show {BOX} {state} within {limit:?}: {e:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn has_keys(v: &Value, keys: &[&str], what: &str) {
    for k in keys {
        assert!(
            v.get(*k).is_some(),
            "{what} has no `{k}`: {}",
            serde_json::to_string_pretty(v).unwrap()
        );
    }
}

#[test]
fn presence_flips_offline_on_kill_and_back_with_a_higher_session_and_telemetry_and_events_arrive() {
    let broker = Broker::start();
    let site = site(&broker, "", "keep_alive = \"5s\"\n");
    let sniff = Sniffer::start(&broker, &format!("{ROOT}/#"));
    let watch = HqProcess::start(&broker, &["watch"], site.dir.path(), "watch");
    // Agent a1 pauses and unpauses by feature code, again and again, while
    // a caller waits and talks.
    let mut sc = calls(1, 1, 30);
    sc = sc.replacen(
        "[[agent]]\nname = \"a1\"\nline = \"desk-1\"\nanswer_after = \"1s\"\n",
        "[[agent]]\nname = \"a1\"\nline = \"desk-1\"\nanswer_after = \"1s\"\ndial = [{ at = \"4s\", digits = \"*73\" }, { at = \"8s\", digits = \"*74\" }, { at = \"12s\", digits = \"*73\" }, { at = \"16s\", digits = \"*74\" }]\n",
        1,
    );
    let scenario = site.write("calls.toml", &sc);
    let mut d = Daemon::with_scenario(&site, &scenario);

    let online = wait_fleet(&broker, "online", Duration::from_secs(60));
    let first_session = session_of(&online);
    let b = format!("{ROOT}/{SITE}/{BOX}");
    let status = sniff.wait_for(Duration::from_secs(30), "an online status", |m| {
        m.topic == format!("{b}/status") && m.json()["state"] == "online"
    });
    let st = status.json();
    has_keys(
        &st,
        &[
            "v", "state", "site", "box", "firmware", "boot_id", "session", "at",
        ],
        "the status",
    );
    assert_eq!(
        (st["v"].clone(), st["site"].clone(), st["box"].clone()),
        (json!(1), json!(SITE), json!(BOX))
    );

    // Telemetry, with every documented field.
    let tm = sniff
        .wait_for(Duration::from_secs(30), "telemetry", |m| {
            m.topic == format!("{b}/telemetry")
        })
        .json();
    has_keys(
        &tm,
        &[
            "v",
            "site",
            "box",
            "at",
            "boot_id",
            "session",
            "firmware",
            "uptime_s",
            "cpu",
            "memory",
            "disk",
            "temperature_c",
            "clock_synced",
            "lines",
            "calls_in_progress",
            "queues",
            "agents",
            "backlog",
            "alarms",
            "daynight",
            "campaigns",
        ],
        "telemetry",
    );
    has_keys(
        &tm["cpu"],
        &["box_pct", "daemon_pct", "load1"],
        "telemetry.cpu",
    );
    has_keys(
        &tm["memory"],
        &["total_kb", "available_kb", "daemon_rss_kb"],
        "telemetry.memory",
    );
    has_keys(
        &tm["disk"],
        &["data_free_bytes", "data_total_bytes"],
        "telemetry.disk",
    );
    has_keys(
        &tm["backlog"],
        &["records", "recordings", "recording_bytes"],
        "telemetry.backlog",
    );
    let lines = tm["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 8, "{lines:#?}");
    for l in lines {
        has_keys(l, &["id", "kind", "up", "busy"], "a telemetry line");
    }
    let agents = tm["agents"].as_array().expect("agents");
    assert_eq!(agents.len(), 4, "{agents:#?}");
    for a in agents {
        has_keys(a, &["id", "state", "station"], "a telemetry agent");
    }
    let queues = tm["queues"].as_array().expect("queues");
    assert!(queues.iter().any(|q| q["name"] == "sales"), "{queues:#?}");
    for q in queues {
        has_keys(
            q,
            &[
                "name",
                "waiting",
                "longest_wait_s",
                "service_level",
                "abandon_rate",
            ],
            "a telemetry queue",
        );
    }

    // Live events: the agent's pauses, seen on the broker and by `watch`.
    let ev = sniff
        .wait_for(Duration::from_secs(60), "an agent event", |m| {
            m.topic == format!("{b}/events/agent")
        })
        .json();
    has_keys(&ev, &["v", "site", "box", "kind", "at", "data"], "an event");
    has_keys(&ev["data"], &["agent", "state"], "an agent event's data");
    wait_until(
        Duration::from_secs(30),
        "`callbox-hq watch` to show an agent event",
        || watch.stdout().lines().any(|l| l.contains("agent")),
    );

    // SIGKILL: the broker publishes the will after 1.5 keep-alives.
    d.kill();
    wait_fleet(&broker, "offline", Duration::from_secs(60));
    let will = sniff.wait_for(Duration::from_secs(30), "the offline will", |m| {
        m.topic == format!("{b}/status") && m.json()["state"] == "offline"
    });
    assert_eq!(will.json()["reason"], "lost", "{}", will.json());
    assert!(will.json()["session"].as_u64().unwrap() >= first_session);

    // Back, with a higher session.
    let mut d = Daemon::start(&site, &[]);
    let end = Instant::now() + Duration::from_secs(60);
    let again = loop {
        let e = wait_fleet(&broker, "online", Duration::from_secs(60));
        if session_of(&e) > first_session {
            break e;
        }
        assert!(Instant::now() < end, "still the old session: {e}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(session_of(&again) > first_session);
    // A clean stop says so.
    assert!(d.stop().success(), "{}", d.log());
    let stopped = sniff.wait_for(Duration::from_secs(30), "the stopped status", |m| {
        m.topic == format!("{b}/status") && m.json()["reason"] == "stopped"
    });
    assert_eq!(stopped.json()["state"], "offline");
    wait_fleet(&broker, "offline", Duration::from_secs(30));
}

// ---------------------------------------------------------------------------
// Commands

/// A daemon of `site` running (real time, idle) and connected: the fleet
/// view shows it online.
fn running_box(broker: &Broker, site: &Site, extra: &[&str]) -> Daemon {
    let d = Daemon::start(site, extra);
    wait_fleet(broker, "online", Duration::from_secs(60));
    d
}

/// Sends a command; returns the response (`{"v","id","ok",…}`).
fn command(broker: &Broker, extra: &[&str]) -> Value {
    let (resp, out) = hq_cmd(broker, SITE, BOX, extra);
    assert!(
        resp.is_object() && resp.get("ok").is_some(),
        "callbox-hq cmd {extra:?} printed no response: {}",
        text(&out)
    );
    resp
}

fn ok(resp: &Value) -> &Value {
    assert_eq!(resp["ok"], true, "{resp:#}");
    &resp["result"]
}

fn err(resp: &Value) -> String {
    assert_eq!(resp["ok"], false, "{resp:#}");
    let e = resp["error"].as_str().unwrap_or_default().to_string();
    assert!(!e.is_empty(), "an error answer without a reason: {resp:#}");
    e
}

#[test]
fn the_day_night_switch_is_set_by_command_kept_over_a_restart_and_shown_in_telemetry() {
    let broker = Broker::start();
    let site = site(&broker, "", "");
    let b = format!("{ROOT}/{SITE}/{BOX}");
    let sniff = Sniffer::start(&broker, &format!("{b}/telemetry"));
    let mut d = running_box(&broker, &site, &[]);
    // No business hours in this site: `auto` is day.
    assert_eq!(
        ok(&command(&broker, &["daynight"])),
        &json!({"mode": "auto", "night": false})
    );
    assert_eq!(
        ok(&command(&broker, &["daynight", r#"{"mode":"night"}"#])),
        &json!({"mode": "night", "night": true})
    );
    let e = err(&command(&broker, &["daynight", r#"{"mode":"evening"}"#]));
    assert!(e.contains("`mode` must be") && e.contains("evening"), "{e}");
    let e = err(&command(&broker, &["daynight", r#"{"mode":7}"#]));
    assert!(e.contains("mode"), "{e}");
    sniff.wait_for(Duration::from_secs(30), "telemetry at night", |m| {
        m.json()["daynight"] == json!({"mode": "night", "night": true})
    });
    assert!(d.stop().success(), "{}", d.log());

    // A restart (a power cut would do the same: the position is on disk
    // before the answer) keeps it.
    let sniff = Sniffer::start(&broker, &format!("{b}/telemetry"));
    let mut d = running_box(&broker, &site, &[]);
    let tm = sniff
        .wait_for(
            Duration::from_secs(30),
            "telemetry after the restart",
            |m| m.json()["daynight"].is_object(),
        )
        .json();
    assert_eq!(tm["daynight"], json!({"mode": "night", "night": true}));
    assert_eq!(
        ok(&command(&broker, &["daynight", r#"{"mode":"auto"}"#])),
        &json!({"mode": "auto", "night": false})
    );
    assert!(d.stop().success(), "{}", d.log());
}

#[test]
fn click_to_call_rings_the_agent_then_dials_the_number() {
    let broker = Broker::start();
    let site = site(&broker, "", "");
    let cfg =
        std::fs::read_to_string(site.config()).unwrap() + "\n[dialplan]\noutside_prefix = \"9\"\n";
    site.write("site.toml", &cfg);
    let scenario = site.write(
        "calls.toml",
        "[[agent]]\nname = \"a1\"\nline = \"desk-1\"\nanswer_after = \"1s\"\n\n\
         [[callee]]\nnumber = \"13800138000\"\nanswer_after = \"1s\"\nhangup_after = \"3s\"\n",
    );
    let report = site.dir.path().join("report.json");
    let mut d = running_box(
        &broker,
        &site,
        &[
            "--scenario",
            scenario.to_str().unwrap(),
            "--sim-report",
            report.to_str().unwrap(),
        ],
    );
    let r = ok(&command(
        &broker,
        &["originate", r#"{"agent":"a1","number":"13800138000"}"#],
    ))
    .clone();
    let call_id = r["call_id"].as_str().expect("call_id").to_string();
    let e = err(&command(
        &broker,
        &["originate", r#"{"agent":"zed","number":"13800138000"}"#],
    ));
    assert_eq!(e, "no agent `zed`");
    let e = err(&command(
        &broker,
        &["originate", r#"{"agent":"a1","number":"138-0013"}"#],
    ));
    assert!(e.contains("is not a number that can be dialled"), "{e}");
    wait_until(
        Duration::from_secs(60),
        "the click-to-call's record",
        || {
            site.records()
                .iter()
                .any(|c| c["id"] == call_id.as_str() && c["disposition"] != "in_progress")
        },
    );
    assert!(d.stop().success(), "{}", d.log());
    let recs = site.records();
    let c = recs.iter().find(|c| c["id"] == call_id.as_str()).unwrap();
    assert_eq!(c["direction"], "outbound", "{c:#}");
    assert_eq!(c["job"], "click_to_call");
    assert_eq!(c["agent"], "a1");
    assert_eq!(c["station"], "desk-1");
    assert_eq!(c["dialled"], "13800138000");
    assert_eq!(c["disposition"], "answered");
    assert!(
        c["trunk_line"].as_str().unwrap().starts_with("trunk-"),
        "{c:#}"
    );
    // The agent's phone showed the number it was about to call.
    let rep: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        rep["caller_ids"]["desk-1"],
        json!(["13800138000"]),
        "{rep:#}"
    );
}

#[test]
fn each_command_gets_its_answer() {
    let broker = Broker::start();
    let site = site(&broker, "", "");
    let callee =
        "[[callee]]\nnumber = \"13700000002\"\nanswer_after = \"1s\"\nhangup_after = \"3s\"\n";
    let scenario = site.write("calls.toml", callee);
    let mut d = running_box(&broker, &site, &["--scenario", scenario.to_str().unwrap()]);

    let st = ok(&command(&broker, &["status"])).clone();
    has_keys(
        &st,
        &[
            "site", "box", "uptime_s", "lines", "agents", "queues", "backlog",
        ],
        "status",
    );

    let cfg = ok(&command(&broker, &["config.get"])).clone();
    has_keys(&cfg, &["version", "sha256", "toml"], "config.get");
    assert_eq!(cfg["version"], 0);
    assert_eq!(
        cfg["toml"].as_str().unwrap(),
        std::fs::read_to_string(site.config()).unwrap()
    );

    let r = ok(&command(
        &broker,
        &[
            "agent",
            r#"{"action":"pause","agent":"a1","reason":"lunch"}"#,
        ],
    ))
    .clone();
    assert!(r.to_string().contains("paused"), "{r}");
    let r = ok(&command(
        &broker,
        &["agent", r#"{"action":"unpause","agent":"a1"}"#],
    ))
    .clone();
    assert!(r.to_string().contains("available"), "{r}");
    let e = err(&command(
        &broker,
        &["agent", r#"{"action":"pause","agent":"zed"}"#],
    ));
    assert!(e.contains("zed"), "{e}");

    let r = ok(&command(
        &broker,
        &["lookup.update", r#"{"table":"products","mode":"merge","rows":[{"code":"5555555555","region":"south","product":"wine"}]}"#],
    ))
    .clone();
    assert_eq!(r["table"], "products", "{r}");

    let r = ok(&command(&broker, &["logs", r#"{"lines":20}"#])).clone();
    let lines = r["lines"].as_array().expect("lines");
    assert!(!lines.is_empty() && lines.len() <= 20, "{r}");

    let originate = [
        "originate",
        r#"{"node":"bye","number":"13700000002"}"#,
        "--id",
        "orig-1",
    ];
    let r = ok(&command(&broker, &originate)).clone();
    let call_id = r["call_id"].as_str().expect("call_id").to_string();
    // The same request again (as a QoS 1 redelivery would bring it): the
    // same answer, and no second call.
    let again = ok(&command(&broker, &originate)).clone();
    assert_eq!(again, r);
    wait_until(
        Duration::from_secs(60),
        "the originated call's record",
        || {
            site.records()
                .iter()
                .any(|c| c["id"] == call_id.as_str() && c["direction"] == "outbound")
        },
    );
    let outbound = site
        .records()
        .iter()
        .filter(|c| c["direction"] == "outbound")
        .count();
    assert_eq!(outbound, 1, "{:#?}", site.records());

    let r = ok(&command(&broker, &["restart"])).clone();
    assert_eq!(r["restarting"], true);
    let st = d
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("restart did not stop the daemon:\n{}", d.log()));
    assert!(st.success(), "exit {st:?}:\n{}", d.log());
}

#[test]
fn a_late_will_from_an_old_session_does_not_leave_a_live_box_offline() {
    let broker = Broker::start();
    let site = site(&broker, "", "");
    let sniff = Sniffer::start(&broker, &format!("{ROOT}/{SITE}/{BOX}/status"));
    let mut d = running_box(&broker, &site, &[]);
    let online = |m: &callbox_tests::mqtt::Msg| {
        serde_json::from_slice::<Value>(&m.payload).is_ok_and(|v| v["state"] == "online")
    };
    let before = sniff.messages().iter().filter(|m| online(m)).count();
    // What the broker publishes when it notices, late, that an earlier
    // connection of this box died: its will, retained, session 0.
    let topic = format!("{ROOT}/{SITE}/{BOX}/status");
    let st = std::process::Command::new("mosquitto_pub")
        .args(broker.client_args(None))
        .args(["-r", "-q", "1", "-t", &topic, "-m"])
        .arg(format!(
            r#"{{"v":1,"state":"offline","reason":"lost","site":"{SITE}","box":"{BOX}","session":0}}"#
        ))
        .status()
        .unwrap();
    assert!(st.success());
    wait_until(
        Duration::from_secs(30),
        "the box announcing online again",
        || sniff.messages().iter().filter(|m| online(m)).count() > before,
    );
    // The retained status a newcomer sees is the live one.
    assert_eq!(
        state_of(&wait_fleet(&broker, "online", Duration::from_secs(30))),
        "online"
    );
    assert!(d.stop().success(), "{}", d.log());
}

#[test]
fn a_retained_command_is_refused_not_run_at_every_start() {
    let broker = Broker::start();
    let site = site(&broker, "", "");
    // Left retained on the broker before the box connects: run as it is,
    // it would restart the box at every start.
    let topic = format!("{ROOT}/{SITE}/{BOX}/cmd/ret-1");
    let st = std::process::Command::new("mosquitto_pub")
        .args(broker.client_args(None))
        .args(["-r", "-q", "1", "-t", &topic, "-m"])
        .arg(format!(r#"{{"v":1,"cmd":"restart","box":"{BOX}"}}"#))
        .status()
        .unwrap();
    assert!(st.success());
    let sniff = Sniffer::start(&broker, &format!("{ROOT}/{SITE}/{BOX}/resp/+"));
    let mut d = running_box(&broker, &site, &[]);
    let m = sniff.wait_for(Duration::from_secs(60), "the answer to ret-1", |m| {
        m.topic.ends_with("/resp/ret-1")
    });
    let resp: Value = serde_json::from_slice(&m.payload).unwrap();
    assert!(err(&resp).contains("retained"), "{resp}");
    assert!(d.running(), "the retained restart ran:\n{}", d.log());
    ok(&command(&broker, &["status"]));
    assert!(d.stop().success(), "{}", d.log());
}

#[test]
fn a_record_too_large_for_any_message_is_held_on_the_box_and_marked_for_headquarters() {
    let broker = Broker::start();
    let site = site(
        &broker,
        "",
        "max_message = \"8KiB\"\nchunk_size = \"4KiB\"\n",
    );
    let data = site.data();
    fill_outbox(&data, 2, "notify", 300).unwrap();
    fill_outbox(&data, 1, "notify", 20_000).unwrap();
    fill_outbox(&data, 2, "notify", 300).unwrap();
    let col = Collector::start(&broker);
    drain(&site, &col);
    // Headquarters has all five numbers (no gap), the third as a marker.
    assert_no_gaps(&col);
    let got = col.export("notify");
    assert_eq!(got.len(), 5, "{got:#?}");
    let marked: Vec<_> = got
        .iter()
        .filter(|r| record_data(r)["too_large"] == true)
        .collect();
    assert_eq!(marked.len(), 1, "{got:#?}");
    // The box keeps the record itself for an operator.
    let held = table(&data, "outbox_held");
    assert_eq!(held.len(), 1, "{held:#?}");
    assert_eq!(held[0]["stream_seq"], 3);
    assert!(held[0]["payload"].to_string().len() > 8 << 10);
}

#[test]
fn two_collectors_in_one_group_share_the_records_and_together_have_each_once() {
    let broker = Broker::start();
    let site = site(&broker, "", "");
    let a = Collector::start_with(&broker, &["--group", "hq"]);
    let b = Collector::start_with(&broker, &["--group", "hq"]);
    b.wait_subscribed(&broker, 2);
    fill_outbox(&site.data(), 3000, "notify", 200).unwrap();
    drain(&site, &a);
    // The broker hands each message to one member of the group; neither
    // collector is idle, and together they hold every record.
    let ids = |c: &Collector| -> BTreeSet<String> {
        c.export("notify")
            .iter()
            .map(|r| record_data(r)["call_id"].as_str().unwrap().to_string())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (ia, ib) = loop {
        let (ia, ib) = (ids(&a), ids(&b));
        if ia.len() + ib.len() >= 3000 || Instant::now() > deadline {
            break (ia, ib);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        !ia.is_empty() && !ib.is_empty(),
        "one collector got nothing: {} / {}",
        ia.len(),
        ib.len()
    );
    let all: BTreeSet<_> = ia.union(&ib).cloned().collect();
    assert_eq!(all.len(), 3000);
    assert_eq!(ia.intersection(&ib).count(), 0, "a record stored by both");
}

#[test]
fn bad_commands_get_errors_and_change_nothing() {
    let broker = Broker::start();
    // A small max_message, so that an oversized command still fits on a
    // command line (128 KiB per argument).
    let site = site(
        &broker,
        "",
        "max_message = \"64KiB\"\nchunk_size = \"16KiB\"\n",
    );
    let mut d = running_box(&broker, &site, &[]);
    let before = ok(&command(&broker, &["config.get"])).clone();

    let big = format!(
        r#"{{"v":1,"cmd":"logs","box":"{BOX}","args":{{"pad":"{}"}}}}"#,
        "x".repeat(70 << 10)
    );
    let bad: Vec<(&str, Vec<&str>)> = vec![
        ("malformed JSON", vec!["--raw", "{nope"]),
        ("a wrong type", vec!["logs", r#"{"lines":"many"}"#]),
        ("a wrong type of cmd", vec!["--raw", r#"{"v":1,"cmd":42}"#]),
        ("an unknown command", vec!["selfdestruct"]),
        (
            "another box",
            vec!["--raw", r#"{"v":1,"cmd":"status","box":"box-2"}"#],
        ),
        ("an oversized payload", vec!["--raw", &big]),
        (
            "config.set of the same version",
            vec![
                "config.set",
                r#"{"version":0,"toml":"[site]\nid = \"x\"\n"}"#,
            ],
        ),
    ];
    for (what, args) in &bad {
        let resp = command(&broker, args);
        let e = err(&resp);
        eprintln!("{what}: {e}");
        assert!(d.running(), "callboxd died on {what}:\n{}", d.log());
    }

    // A config with errors: rejected with check-config's messages.
    let mut broken = std::fs::read_to_string(site.config()).unwrap();
    broken = broken.replace("[inbound]\n", "[inbound]\nbogus = 1\n");
    broken = broken.replace("on_overflow = \"bye\"", "on_overflow = \"nowhere\"");
    let file = site.write("broken.toml", &broken);
    let check = std::process::Command::new(callboxd())
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!check.status.success());
    let resp = command(
        &broker,
        &[
            "config.set",
            &json!({"version": 5, "toml": broken}).to_string(),
        ],
    );
    let e = err(&resp);
    let expected = String::from_utf8_lossy(&check.stderr).to_string()
        + &String::from_utf8_lossy(&check.stdout);
    for l in expected.lines().filter(|l| l.contains("broken.toml:")) {
        let msg = l.split_once("broken.toml:").unwrap().1;
        assert!(e.contains(msg), "`{msg}` missing from the answer: {e}");
    }
    let after = ok(&command(&broker, &["config.get"])).clone();
    assert_eq!(after, before, "a rejected config changed the running one");
    assert!(d.running(), "{}", d.log());
    assert_eq!(
        std::fs::read_to_string(site.config()).unwrap(),
        before["toml"].as_str().unwrap(),
        "the config file was touched"
    );
    // Still answering.
    ok(&command(&broker, &["status"]));
    assert!(d.stop().success(), "{}", d.log());
}

#[test]
fn a_good_config_push_applies_without_dropping_the_call_in_progress() {
    let broker = Broker::start();
    let site = site(&broker, "", "");
    let sniff = Sniffer::start(&broker, &format!("{ROOT}/{SITE}/{BOX}/config/reported"));
    // One caller talking for 40 s with agent a1.
    let scenario = site.write("calls.toml", &calls(1, 1, 40));
    let mut d = running_box(&broker, &site, &["--scenario", scenario.to_str().unwrap()]);
    wait_until(
        Duration::from_secs(60),
        "the call to be in progress",
        || {
            let st = command(&broker, &["status"]);
            st["result"]["calls_in_progress"].as_u64().unwrap_or(0) >= 1
        },
    );

    // The new config: one more agent, more logging.
    let mut new = std::fs::read_to_string(site.config()).unwrap();
    new = new.replace("level = \"info\"", "level = \"debug\"");
    let file = site.write("new-site.toml", &new);
    let out = hq_net(
        &broker,
        &[
            "config",
            "push",
            BOX,
            "--site",
            SITE,
            file.to_str().unwrap(),
            "--version",
            "2",
        ],
    );
    let resp = callbox_tests::mqtt::last_json(&out.stdout);
    assert_eq!(resp["ok"], true, "config push: {}", text(&out));
    assert_eq!(resp["result"]["version"], 2, "{resp}");
    let cfg = ok(&command(&broker, &["config.get"])).clone();
    assert_eq!(cfg["version"], 2);
    assert_eq!(cfg["toml"].as_str().unwrap(), new);
    sniff.wait_for(Duration::from_secs(30), "config/reported version 2", |m| {
        m.json()["version"] == 2
    });
    // Retained: a subscriber that comes later gets it at once.
    let late = Sniffer::start(&broker, &format!("{ROOT}/{SITE}/{BOX}/config/reported"));
    let kept = late.wait_for(
        Duration::from_secs(10),
        "the retained config/reported",
        |_| true,
    );
    assert!(kept.retain, "config/reported is not retained");
    assert_eq!(kept.json()["version"], 2, "{}", kept.json());

    // The call ends as it would have.
    wait_until(Duration::from_secs(120), "the call's record", || {
        site.records()
            .iter()
            .any(|r| r["disposition"] != "in_progress")
    });
    let recs = site.records();
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_eq!(recs[0]["disposition"], "answered", "{:#}", recs[0]);
    assert_eq!(recs[0]["hangup_side"], "caller", "{:#}", recs[0]);
    assert!(d.running(), "{}", d.log());
    assert!(d.stop().success(), "{}", d.log());
}

// ---------------------------------------------------------------------------
// The harness itself

#[test]
fn harness_broker_restarts_on_the_same_port_and_serves_again() {
    let mut broker = Broker::start();
    let port = broker.port();
    let pub_ = |payload: &str| {
        std::process::Command::new("mosquitto_pub")
            .args(broker.client_args(None))
            .args(["-q", "1", "-r", "-t", "harness/x", "-m", payload])
            .output()
            .expect("mosquitto_pub (mosquitto-clients) is installed")
    };
    let sub = |broker: &Broker, wait_s: &str| {
        std::process::Command::new("mosquitto_sub")
            .args(broker.client_args(None))
            .args(["-t", "harness/x", "-C", "1", "-W", wait_s])
            .output()
            .unwrap()
    };
    assert!(pub_("one").status.success());
    assert_eq!(
        String::from_utf8_lossy(&sub(&broker, "10").stdout).trim(),
        "one"
    );
    broker.kill();
    assert!(!broker.is_running());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    broker.restart();
    assert_eq!(broker.port(), port);
    assert!(broker.is_running());
    // No persistence: the retained message went with the old process.
    let out = sub(&broker, "1");
    assert!(out.stdout.is_empty(), "{}", text(&out));
    let sniff = Sniffer::start(&broker, "harness/#");
    let out = std::process::Command::new("mosquitto_pub")
        .args(broker.client_args(None))
        .args(["-q", "1", "-t", "harness/y", "-m", "two"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let m = sniff.wait_for(Duration::from_secs(10), "harness/y", |m| {
        m.topic == "harness/y"
    });
    assert_eq!(m.payload, b"two");
}

#[test]
fn harness_outbox_fill_writes_rows_the_daemon_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill_outbox(&data, 250, "notify", 200).unwrap();
    assert_eq!(outbox_len(&data), 250);
    let rows = table(&data, "outbox");
    assert_eq!(rows.len(), 250);
    assert!(
        rows.iter().all(|r| r.to_string().contains("notify")),
        "{:#}",
        rows[0]
    );
}
