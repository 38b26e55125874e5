//! Headquarters' dashboard (`callbox-hq serve`) over a real collector's
//! database, driven in a real Chromium: the fleet from a simulated fleet
//! through a real mosquitto, a box's charts, an alarm acknowledged, a
//! campaign-number report equal to the figures computed from the records
//! (`callbox-hq export --latest`), the Chinese screen; and the API's
//! refusals (roles, CSRF, wrong password), the metrics endpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use callbox_tests::console::{Api, Browser};
use callbox_tests::hq::{add_user, serve};
use callbox_tests::mqtt::{Broker, Collector, Pki, hq_net_within};
use serde_json::Value;

const ADMIN: (&str, &str) = ("olivia", "fleet-admin-pass-1");
const VIEWER: (&str, &str) = ("victor", "fleet-viewer-pass");

/// Per dialled number, from the records: calls, answered, abandoned,
/// wrapped, the wrap-up codes and the survey scores.
fn expected(cdrs: &[Value]) -> BTreeMap<String, (u64, u64, u64, u64, String, String)> {
    #[derive(Default)]
    struct Figures {
        calls: u64,
        answered: u64,
        abandoned: u64,
        wrapped: u64,
        codes: BTreeMap<String, u64>,
        scores: BTreeMap<String, u64>,
    }
    let mut m: BTreeMap<String, Figures> = BTreeMap::new();
    for c in cdrs {
        let e = m
            .entry(c["dialled"].as_str().unwrap().to_string())
            .or_default();
        e.calls += 1;
        e.answered += u64::from(c["disposition"] == "answered");
        e.abandoned += u64::from(c["disposition"] == "abandoned");
        if let Some(code) = c["wrap_code"].as_str() {
            e.wrapped += 1;
            *e.codes.entry(code.to_string()).or_default() += 1;
        }
        if let Some(s) = c["survey_score"].as_u64() {
            *e.scores.entry(s.to_string()).or_default() += 1;
        }
    }
    let list = |m: &BTreeMap<String, u64>, star: &str| {
        m.iter()
            .map(|(k, n)| format!("{k}{star} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    m.into_iter()
        .map(|(k, f)| {
            let (codes, scores) = (list(&f.codes, ":"), list(&f.scores, "★"));
            (
                k,
                (f.calls, f.answered, f.abandoned, f.wrapped, codes, scores),
            )
        })
        .collect()
}

#[test]
fn the_dashboard_shows_the_fleet_a_box_an_alarm_acknowledged_and_reports_equal_to_the_records() {
    let broker = Broker::start();
    let collector = Collector::start(&broker);
    // Six boxes on two sites; at 30× a telemetry message a second, a trunk
    // fault now and then.
    let sim = hq_net_within(
        &broker,
        &[
            "simulate",
            "--boxes",
            "6",
            "--sites",
            "2",
            "--calls-per-day",
            "200000",
            "--speed",
            "30",
            "--seconds",
            "12",
            "--trunk-faults",
            "0.2",
            "--batch-every",
            "0.5",
        ],
        Duration::from_secs(120),
    );
    assert!(
        sim.status.success(),
        "{}",
        String::from_utf8_lossy(&sim.stderr)
    );
    let db = collector.db().display().to_string();
    let cdrs = collector.export_latest("cdr");
    assert!(cdrs.len() > 50, "{} calls", cdrs.len());
    let want = expected(&cdrs);

    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    add_user(&db, ADMIN.0, "admin", ADMIN.1);
    add_user(&db, VIEWER.0, "viewer", VIEWER.1);
    let token = dir.path().join("metrics.token");
    std::fs::write(&token, "metrics-token-0123456789\n").unwrap();
    let s = serve(&db, dir.path(), &pki, &token);

    let b = Browser::start("en");
    b.goto(&format!("https://127.0.0.1:{}/", s.port));
    b.fill("#login-name", ADMIN.0);
    b.fill("#login-password", ADMIN.1);
    b.click("#login-submit");
    let rows = |b: &Browser| {
        b.eval("return document.querySelectorAll('#fleet-table tbody tr').length;")
            .as_u64()
            .unwrap_or(0)
    };
    b.wait_until(Duration::from_secs(10), "the fleet list", |b| rows(b) == 6);
    assert_eq!(b.text("#tile-boxes b").as_deref(), Some("6"));
    // The simulator has stopped: its boxes' wills say offline.
    assert!(
        b.text("#fleet-table tbody tr td.offline").is_some(),
        "{}",
        b.body()
    );
    // A site filter.
    b.eval("document.querySelector('#f-site').value = 'site-0001'; return null;");
    b.click("#fleet-show");
    b.wait_until(Duration::from_secs(5), "site-0001's boxes", |b| {
        rows(b) == 3
    });

    // A box's page: charts from its telemetry, its lines and alarms.
    b.click("#fleet-table tbody tr a");
    b.wait_until(Duration::from_secs(10), "a box's charts", |b| {
        b.text("#chart-calls").is_some() || b.text(".chart p").is_some()
    });
    // The last 15 minutes, a point per 3 s.
    b.eval("const s = document.querySelector('#box-period'); s.value = '15'; s.dispatchEvent(new Event('change')); return null;");
    b.wait_until(Duration::from_secs(10), "the 15-minute charts", |b| {
        b.eval("const c = document.querySelector('#chart-cpu'); return c ? Number(c.getAttribute('data-points')) : 0;").as_u64().unwrap_or(0) >= 3
    });
    let points = b
        .eval("return Number(document.querySelector('#chart-cpu').getAttribute('data-points'));")
        .as_u64()
        .unwrap();
    assert!(points >= 3, "{points} CPU samples charted");
    assert!(b.text("#box-lines-table").unwrap().contains("trunk-2"));

    // Alarms across the fleet: acknowledge one.
    b.click("#nav-alarms");
    b.eval("document.querySelector('#alarms-open').click(); return null;");
    b.wait_until(Duration::from_secs(10), "the alarms", |b| {
        b.text("#alarms-table button.ack").is_some()
    });
    let alarm = b.eval("return document.querySelector('#alarms-table button.ack').closest('tr').getAttribute('data-alarm');");
    b.click("#alarms-table button.ack");
    let sel = format!("tr[data-alarm='{}'] td.acked", alarm.as_str().unwrap());
    b.wait_until(Duration::from_secs(10), "the alarm acknowledged", |b| {
        b.text(&sel).is_some_and(|t| t.contains(ADMIN.0))
    });

    // The campaign-number report equals the records.
    b.click("#nav-reports");
    b.wait_until(Duration::from_secs(10), "the report", |b| {
        b.text("#report-numbers").is_some()
    });
    let shown = b.eval(
        "return [...document.querySelectorAll('#report-numbers tbody tr')].map(r => [...r.cells].map(c => c.textContent));",
    );
    let shown: Vec<Vec<String>> = serde_json::from_value(shown).unwrap();
    assert_eq!(shown.len(), want.len(), "{shown:?}");
    for row in &shown {
        let w = &want[&row[0]];
        assert_eq!(
            (
                row[1].as_str(),
                row[2].as_str(),
                row[3].as_str(),
                row[4].as_str(),
                row[7].as_str(),
                row[8].as_str()
            ),
            (
                w.0.to_string().as_str(),
                w.1.to_string().as_str(),
                w.2.to_string().as_str(),
                w.3.to_string().as_str(),
                w.4.as_str(),
                w.5.as_str()
            ),
            "{row:?}"
        );
    }

    // In Chinese.
    b.click("#lang");
    b.wait_until(Duration::from_secs(5), "the Chinese screen", |b| {
        b.text("#nav-fleet").as_deref() == Some("设备总览")
    });
    b.wait_until(Duration::from_secs(5), "the Chinese report", |b| {
        b.body().contains("按小结代码统计转化")
    });

    // The API: CSV, roles, CSRF, a wrong password, the audit log, metrics.
    let mut admin = Api::new(s.port, &s.fingerprint);
    assert_eq!(admin.login(ADMIN.0, ADMIN.1).status, 200);
    let csv = admin.send("GET", "/api/reports.csv", None);
    assert_eq!(csv.status, 200);
    let total: u64 = String::from_utf8_lossy(&csv.body)
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, cdrs.len() as u64);
    let mut viewer = Api::new(s.port, &s.fingerprint);
    assert_eq!(viewer.login(VIEWER.0, "wrong-password!").status, 401);
    assert_eq!(viewer.login(VIEWER.0, VIEWER.1).status, 200);
    let ack = r#"{"site":"site-0000","box":"sim-00000","code":"line_down:trunk-1","raised_ms":1}"#;
    assert_eq!(
        viewer.send("POST", "/api/alarms/ack", Some(ack)).status,
        403
    );
    assert_eq!(viewer.send("GET", "/api/audit", None).status, 403);
    let csrf = admin.csrf.take();
    assert_eq!(admin.send("POST", "/api/alarms/ack", Some(ack)).status, 403);
    admin.csrf = csrf;
    assert_eq!(admin.send("POST", "/api/alarms/ack", Some(ack)).status, 404);
    let audit = admin.send("GET", "/api/audit", None).json();
    let actions: Vec<&str> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for a in ["alarm.ack", "login", "login_failed", "user.set"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    assert_eq!(
        Api::new(s.port, &s.fingerprint)
            .send("GET", "/metrics", None)
            .status,
        401
    );
    let m = admin
        .try_send(
            "GET",
            "/metrics",
            None,
            &[("Authorization", "Bearer metrics-token-0123456789")],
        )
        .unwrap();
    assert_eq!(m.status, 200);
    let text = String::from_utf8_lossy(&m.body).to_string();
    let boxes: u64 = text
        .lines()
        .filter(|l| l.starts_with("callbox_boxes{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(boxes, 6, "{text}");
    assert!(text.contains("# TYPE callbox_alarms_open gauge"), "{text}");
}
