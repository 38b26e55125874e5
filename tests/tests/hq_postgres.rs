//! Headquarters' collector into a real PostgreSQL (an initdb'd cluster in
//! a temporary directory), fed by the real `callboxd` through a real
//! mosquitto: every record arrives exactly once, with two collectors
//! sharing the load, one of them killed and restarted mid-ingest, and the
//! database server itself killed and restarted mid-ingest; and the fleet
//! simulator's hundreds of boxes, each record stored once, and the
//! dashboard over that database.

use std::time::{Duration, Instant};

use callbox_tests::console::Api;
use callbox_tests::hq::{add_user, serve};
use callbox_tests::mqtt::Pki;
use callbox_tests::mqtt::{
    Broker, Collector, Daemon, add_uplink, fill_outbox, hq_local, hq_net, json_lines, last_json,
    outbox_len,
};
use callbox_tests::postgres::Postgres;
use callbox_tests::{Site, text};

const BOX: &str = "box-pg";
const NOTIFY: usize = 6000;

/// The count `sql` answers.
fn count(pg: &Postgres, sql: &str) -> u64 {
    pg.psql(sql).trim().parse().unwrap_or(0)
}

/// Waits until PostgreSQL holds at least `n` records.
fn until_stored(pg: &Postgres, n: u64, d: &mut Daemon, cols: &[&Collector]) {
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let have = count(pg, "SELECT count(*) FROM records");
        if have >= n {
            return;
        }
        let out: Vec<String> = cols.iter().map(|c| c.output()).collect();
        assert!(
            Instant::now() < end && d.running(),
            "{have} of {n} records stored:\n{}\n{}",
            d.log(),
            out.join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_record_arrives_once_with_two_collectors_one_killed_and_the_database_killed_mid_ingest() {
    let mut pg = Postgres::start();
    let broker = Broker::start();
    let site = Site::new(1, 1, 300, "");
    add_uplink(
        &site,
        &broker.uplink(BOX, "e2e_ack = true\nack_timeout = \"3s\"\nbatch = 50\n"),
    );
    // Real calls first (their call records), then a backlog to drain.
    let calls = site.write(
        "calls.toml",
        "[[call]]\nat = \"0s\"\nfrom = \"1380013{n:4}\"\nrepeat = 10\nevery = \"3s\"\nhangup_after = \"2s\"\n",
    );
    let out = site.run_fast(&calls);
    assert!(out.status.success(), "{}", text(&out));
    let calls_made = site.records();
    assert_eq!(calls_made.len(), 10);
    fill_outbox(&site.data(), NOTIFY, "notify", 200).unwrap();

    let url = pg.url();
    let mut a = Collector::start_db(&broker, &url, &["--client-id", "hq-a"], 1);
    let b = Collector::start_db(&broker, &url, &["--client-id", "hq-b"], 2);
    let mut d = Daemon::start(&site, &[]);

    // A quarter in: collector a dies and comes back.
    until_stored(&pg, NOTIFY as u64 / 4, &mut d, &[&a, &b]);
    a.kill();
    std::thread::sleep(Duration::from_secs(1));
    a.restart(&broker);
    // Half-way: the database server dies and comes back.
    until_stored(&pg, NOTIFY as u64 / 2, &mut d, &[&a, &b]);
    assert!(
        outbox_len(&site.data()) > 0,
        "drained before the database was killed"
    );
    pg.kill();
    std::thread::sleep(Duration::from_secs(2));
    pg.restart();

    let end = Instant::now() + Duration::from_secs(180);
    while outbox_len(&site.data()) > 0 {
        assert!(
            Instant::now() < end && d.running(),
            "{} records left in the outbox:\n{}\n{}\n{}",
            outbox_len(&site.data()),
            d.log(),
            a.output(),
            b.output()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(d.stop().success(), "{}", d.log());

    // Exactly once: every key once, every notify record, every call.
    assert_eq!(
        count(&pg, "SELECT count(*) FROM records WHERE stream = 'notify'"),
        NOTIFY as u64
    );
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) - count(DISTINCT (site, box, epoch, stream, seq)) FROM records"
        ),
        0
    );
    let gaps = hq_local(&["gaps", "--db", &url, "--json"]);
    assert!(gaps.status.success(), "{}", text(&gaps));
    assert!(json_lines(&gaps.stdout).is_empty(), "{}", text(&gaps));
    let cdr = hq_local(&["export", "--db", &url, "--stream", "cdr", "--latest"]);
    assert!(cdr.status.success(), "{}", text(&cdr));
    let mut got: Vec<String> = json_lines(&cdr.stdout)
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut want: Vec<String> = calls_made
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // Records sit in their month's partition.
    assert!(
        count(&pg, "SELECT count(*) FROM records_undated") == 0
            && pg
                .psql("SELECT count(*) FROM pg_class WHERE relname LIKE 'records_m%'")
                .trim()
                != "0",
        "{}",
        pg.psql("SELECT relname FROM pg_class WHERE relname LIKE 'records%'")
    );
    // A collector cut off from the database (mid-ingest, or starting
    // while it was down) waited for it and went on.
    let both = format!("{}\n{}", a.output(), b.output());
    assert!(
        both.contains("connected again") || both.contains("cannot connect"),
        "{both}"
    );
}

#[test]
fn a_simulated_fleet_is_stored_once_by_two_collectors() {
    let pg = Postgres::start();
    let broker = Broker::start();
    let url = pg.url();
    // Recordings on a volume both collectors share.
    let shared = tempfile::tempdir().unwrap();
    let rec = shared.path().to_str().unwrap();
    let a = Collector::start_db(
        &broker,
        &url,
        &["--client-id", "hq-a", "--recordings", rec],
        1,
    );
    let b = Collector::start_db(
        &broker,
        &url,
        &["--client-id", "hq-b", "--recordings", rec],
        2,
    );
    // 300 boxes at 100,000 calls a day each (about 9 calls each in the
    // 8 s), a tenth recorded.
    let out = hq_net(
        &broker,
        &[
            "simulate",
            "--boxes",
            "300",
            "--calls-per-day",
            "100000",
            "--seconds",
            "8",
            "--recorded",
            "0.1",
            "--recording-bytes",
            "4096",
            "--ack-wait",
            "60",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let sim = last_json(&out.stdout);
    let records = sim["records"].as_u64().unwrap();
    assert!(records > 1000, "{sim}");
    assert_eq!(
        sim["acked"],
        records,
        "{sim}\n{}\n{}",
        a.output(),
        b.output()
    );
    let about_recordings = |c: &Collector| -> String {
        c.output()
            .lines()
            .filter(|l| l.contains("recording"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        sim["recordings_acked"],
        sim["recordings"],
        "{sim}\nuploads left: {}\n{}\n{}",
        pg.psql("SELECT box, id, size, have, ranges, last_seen, meta IS NOT NULL FROM uploads"),
        about_recordings(&a),
        about_recordings(&b)
    );
    assert_eq!(count(&pg, "SELECT count(*) FROM records"), records);
    assert_eq!(
        count(&pg, "SELECT count(*) FROM recordings"),
        sim["recordings"].as_u64().unwrap()
    );
    // Nearly every box made calls in 8 s (a box that connected last may
    // have had none yet).
    assert!(count(&pg, "SELECT count(DISTINCT box) FROM records") >= 290);
    // Every recording whole in the shared directory, once.
    let files: Vec<_> = walk(shared.path());
    assert_eq!(
        files.len() as u64,
        sim["recordings"].as_u64().unwrap(),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .all(|f| std::fs::metadata(f).unwrap().len() == 4096)
    );
    // Both collectors had a share, and nothing is reported missing.
    for c in [&a, &b] {
        assert!(c.stdout().contains("stored in 5s: "), "{}", c.output());
        assert!(!c.stdout().contains("gap: "), "{}", c.output());
    }

    // The dashboard over PostgreSQL: the fleet, a box, alarms, reports
    // equal to the records, messages, metrics.
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    add_user(&url, "olivia", "operator", "fleet-operator-pass");
    let token = dir.path().join("metrics.token");
    std::fs::write(&token, "metrics-token-0123456789").unwrap();
    let serve = serve(&url, dir.path(), &pki, &token);
    let mut api = Api::new(serve.port, &serve.fingerprint);
    assert_eq!(api.login("olivia", "fleet-operator-pass").status, 200);
    let fleet = api.send("GET", "/api/fleet", None).json();
    assert_eq!(fleet["totals"]["boxes"], 300, "{fleet}\n{}", serve.log());
    assert_eq!(fleet["boxes"].as_array().unwrap().len(), 300);
    let one = &fleet["boxes"][0];
    let page = api.send(
        "GET",
        &format!(
            "/api/boxes/{}/{}?minutes=15",
            one["site"].as_str().unwrap(),
            one["box"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(page.status, 200);
    assert!(
        !page.json()["samples"].as_array().unwrap().is_empty(),
        "{}",
        page.json()
    );
    let filtered = api
        .send("GET", "/api/fleet?site=site-0001&state=offline", None)
        .json();
    assert_eq!(
        filtered["boxes"].as_array().unwrap().len(),
        10,
        "{}",
        filtered["boxes"]
    );
    let cdrs = count(
        &pg,
        "SELECT count(DISTINCT data::json->>'id') FROM records WHERE stream = 'cdr'",
    );
    let report = api.send("GET", "/api/reports", None).json();
    let calls: u64 = report["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(calls, cdrs, "{report}");
    let answered: u64 = report["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["answered"].as_u64().unwrap())
        .sum();
    assert_eq!(
        answered,
        count(
            &pg,
            "SELECT count(*) FROM records WHERE stream = 'cdr' AND data::json->>'disposition' = 'answered'"
        )
    );
    let searched = api
        .send("GET", "/api/calls?dialled=4008001234", None)
        .json();
    assert!(
        searched["calls"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["dialled"] == "4008001234")
    );
    for path in [
        "/api/alarms?open=true",
        "/api/notifications",
        "/api/reports.csv",
    ] {
        assert_eq!(api.send("GET", path, None).status, 200, "{path}");
    }
    assert_eq!(api.send("GET", "/api/audit", None).status, 403);
    let m = api
        .try_send(
            "GET",
            "/metrics",
            None,
            &[("Authorization", "Bearer metrics-token-0123456789")],
        )
        .unwrap();
    let text = String::from_utf8_lossy(&m.body).to_string();
    assert!(
        text.contains("callbox_boxes{state=\"offline\"} 300"),
        "{text}"
    );
}

/// The files under `dir`, recursively.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
