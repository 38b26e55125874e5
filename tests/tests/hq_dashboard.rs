//! Headquarters' dashboard (`callbox-hq serve`) over a real collector's
//! database, driven in a real Chromium: the fleet from a simulated fleet
//! through a real mosquitto, a box's charts, an alarm acknowledged, a
//! campaign-number report equal to the figures computed from the records
//! (`callbox-hq export --latest`), the Chinese screen; and the API's
//! refusals (roles, CSRF, wrong password), the metrics endpoint. A config
//! pushed to a real `callboxd` from its page, with the diff and the box's
//! own validation answer, and its agents steered.

use std::collections::BTreeMap;
use std::time::Duration;

use callbox_tests::Site;
use callbox_tests::console::{Api, Browser};
use callbox_tests::hq::{add_user, serve, serve_with};
use callbox_tests::mqtt::{Broker, Collector, Daemon, Pki, add_uplink, hq_net_within};
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
        b.body().contains("按小结代码统计转化") && b.body().contains("防伪查询")
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
    // Product checks and diversion flags, as the records have them.
    let lookups = collector.export("lookup");
    let is_check = |r: &&Value| r["source"] == "products";
    let want = (
        lookups.iter().filter(is_check).count() as u64,
        lookups
            .iter()
            .filter(is_check)
            .filter(|r| r["found"] == true)
            .count() as u64,
        lookups
            .iter()
            .filter(|r| r["event"] == "possible_diversion")
            .count() as u64,
    );
    assert!(want.0 > 5, "{want:?}");
    let checks = admin.send("GET", "/api/reports/checks", None).json();
    let sum = |k: &str| -> u64 {
        checks["days"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d[k].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        (sum("checks"), sum("genuine"), sum("diversions")),
        want,
        "{checks}"
    );
    let by_region: u64 = checks["diversions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["flags"].as_u64().unwrap())
        .sum();
    assert_eq!(by_region, want.2);
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

#[test]
fn an_operator_pushes_a_config_to_a_real_box_seeing_its_diff_and_the_boxs_answer() {
    let broker = Broker::start();
    let collector = Collector::start(&broker);
    let site = Site::new(1, 2, 300, "");
    site.write(
        "site.toml",
        &(site.config_text()
            + "\n[acd.agent.alice]\nnumber = \"1001\"\nstation = \"desk-1\"\nlogged_in = true\n\n[acd.queue.sales]\nmembers = { alice = 0 }\n"),
    );
    add_uplink(&site, &broker.uplink("box-d1", ""));
    let mut d = Daemon::start(&site, &[]);
    let db = collector.db().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    add_user(&db, "oscar", "operator", "fleet-operator-pass");
    add_user(&db, "victor", "viewer", "fleet-viewer-pass");
    let token = dir.path().join("metrics.token");
    std::fs::write(&token, "metrics-token-0123456789").unwrap();
    let url = broker.url();
    let s = serve_with(
        &db,
        dir.path(),
        &pki,
        &token,
        &["--broker", &url, "--allow-plain"],
    );

    // The box reports itself (presence, telemetry) through the collector.
    let end = std::time::Instant::now() + Duration::from_secs(30);
    let reported = || {
        rusqlite::Connection::open(collector.db())
            .and_then(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM boxes WHERE site = 'test-site' AND box = 'box-d1' AND telemetry_ms IS NOT NULL",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .unwrap_or(0)
    };
    while reported() == 0 {
        assert!(
            std::time::Instant::now() < end && d.running(),
            "the box is not at headquarters:\n{}\n{}",
            d.log(),
            collector.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let b = Browser::start("en");
    b.goto(&format!(
        "https://127.0.0.1:{}/#box/test-site/box-d1",
        s.port
    ));
    b.fill("#login-name", "oscar");
    b.fill("#login-password", "fleet-operator-pass");
    b.click("#login-submit");
    b.wait_until(Duration::from_secs(10), "the box's page with alice", |b| {
        b.text("tr[data-agent='alice']").is_some()
    });
    b.click("#box-config-load");
    b.wait_until(Duration::from_secs(20), "the box's config", |b| {
        b.text("#box-config-version")
            .is_some_and(|v| v.contains("Version 0"))
    });
    let original = b.eval("return document.querySelector('#box-config-text').value;");
    let original = original.as_str().unwrap().to_string();
    assert!(original.contains("[acd.agent.alice]"), "{original}");
    let set = |text: &str| {
        b.eval(&format!(
            "const t = document.querySelector('#box-config-text'); t.value = {}; t.dispatchEvent(new Event('input')); return null;",
            serde_json::to_string(text).unwrap()
        ));
    };
    // A mistake: the box names it, nothing is written.
    set(&format!(
        "{original}\n[acd.agent.bob]\nnumber = \"1002\"\nstation = \"desk-9\"\n"
    ));
    b.click("#box-config-check");
    b.wait_until(Duration::from_secs(20), "the box's refusal", |b| {
        b.text("#box-config-answer")
            .is_some_and(|a| a.contains("desk-9"))
    });
    assert!(!site.config_text().contains("bob"));
    // The fix: its diff, checked, then pushed as version 1.
    set(&format!(
        "{original}\n[acd.agent.bob]\nnumber = \"1002\"\nstation = \"desk-2\"\n"
    ));
    let diff = b.text("#box-config-diff").unwrap();
    assert!(
        diff.contains("+ [acd.agent.bob]") && diff.contains("+ station = \"desk-2\""),
        "{diff}"
    );
    b.click("#box-config-check");
    b.wait_until(Duration::from_secs(20), "the box's check", |b| {
        b.text("#box-config-answer")
            .is_some_and(|a| a.contains("would_apply") && a.contains("acd"))
    });
    b.click("#box-config-push");
    b.wait_until(Duration::from_secs(20), "the box's answer", |b| {
        b.text("#box-config-version")
            .is_some_and(|v| v.contains("Version 1"))
    });
    assert!(
        b.text("#box-config-answer")
            .unwrap()
            .contains("\"applied\"")
    );
    assert!(
        site.config_text().contains("[acd.agent.bob]"),
        "{}",
        site.config_text()
    );
    // Bob is on the box now; alice paused from the page.
    b.click("tr[data-agent='alice'] button.agent-pause");
    b.wait_until(Duration::from_secs(20), "alice paused and bob listed", |b| {
        let paused = b.text("tr[data-agent='alice']").is_some_and(|r| r.contains("paused"));
        if !paused || b.text("tr[data-agent='bob']").is_none() {
            b.eval("document.querySelector('#box-period').dispatchEvent(new Event('change')); return null;");
            std::thread::sleep(Duration::from_millis(500));
        }
        paused && b.text("tr[data-agent='bob']").is_some()
    });

    // Roles: a viewer reads no config and sends nothing; an operator does
    // not restart a box. Each push is audited with its diff.
    let mut viewer = Api::new(s.port, &s.fingerprint);
    assert_eq!(viewer.login("victor", "fleet-viewer-pass").status, 200);
    assert_eq!(
        viewer
            .send("GET", "/api/boxes/test-site/box-d1/config", None)
            .status,
        403
    );
    let pause = r#"{"cmd":"agent","args":{"action":"unpause","agent":"alice"}}"#;
    assert_eq!(
        viewer
            .send("POST", "/api/boxes/test-site/box-d1/command", Some(pause))
            .status,
        403
    );
    let mut op = Api::new(s.port, &s.fingerprint);
    assert_eq!(op.login("oscar", "fleet-operator-pass").status, 200);
    assert_eq!(
        op.send(
            "POST",
            "/api/boxes/test-site/box-d1/command",
            Some(r#"{"cmd":"restart"}"#)
        )
        .status,
        403
    );
    assert_eq!(
        op.send(
            "POST",
            "/api/boxes/test-site/box-d1/command",
            Some(r#"{"cmd":"originate"}"#)
        )
        .status,
        422
    );
    assert_eq!(
        op.send("POST", "/api/boxes/test-site/box-nope/command", Some(pause))
            .status,
        504
    );
    assert!(d.running(), "{}", d.log());
    let mut admin = Api::new(s.port, &s.fingerprint);
    add_user(&db, "ada", "admin", "fleet-admin-pass-1");
    assert_eq!(admin.login("ada", "fleet-admin-pass-1").status, 200);
    let audit = admin.send("GET", "/api/audit", None).json();
    let push = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "config.set")
        .expect("the push audited");
    let detail: Value = serde_json::from_str(push["detail"].as_str().unwrap()).unwrap();
    assert_eq!(
        (
            detail["version"].as_u64(),
            detail["removed"].as_u64(),
            detail["ok"].as_bool()
        ),
        (Some(1), Some(0), Some(true)),
        "{detail}"
    );
    assert!(detail["added"].as_u64() >= Some(3), "{detail}");
    assert!(d.stop().success(), "{}", d.log());
}
