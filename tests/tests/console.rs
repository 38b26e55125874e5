//! The box's web console end to end: the real `callboxd` on the sim
//! backend in real time, a real Chromium through chromedriver, the API
//! through an HTTPS client that pins the certificate `callboxd console
//! info` printed, and a real mosquitto with a collector for the audit log.

use std::time::Duration;

use callbox_tests::cmd;
use callbox_tests::console::{
    Api, Browser, admin_in_browser, cell, fingerprint, listening, reset_admin, site,
};
use callbox_tests::mqtt::{Broker, Collector, Daemon, add_uplink, free_port, wait_until};
use serde_json::Value;

#[test]
fn an_admin_sets_a_password_watches_a_call_on_the_wallboard_acts_on_an_agent_and_reads_chinese() {
    let port = free_port();
    let site = site(port, "");
    // The caller arrives once the browser has had time to log in.
    let calls = site.write(
        "calls.toml",
        r#"
[[call]]
at = "20s"
from = "13800000001"
hangup_after = "8s"

[[agent]]
name = "a"
line = "desk-1"
answer_after = "4s"
"#,
    );
    let otp = reset_admin(&site);
    let b = Browser::start("en-US");
    let d = Daemon::with_scenario(&site, &calls);
    listening(&d);
    let url = format!("https://127.0.0.1:{port}/");
    b.goto(&url);
    b.wait_until(Duration::from_secs(10), "the login form", |b| {
        cell(b, "#login-submit") == "Log in"
    });
    b.fill("#login-name", "admin");
    b.fill("#login-password", "not-the-password");
    b.click("#login-submit");
    b.wait_until(Duration::from_secs(10), "a wrong password refused", |b| {
        cell(b, "#login-error").contains("wrong name or password")
    });
    b.goto(&url);
    b.fill("#login-name", "admin");
    b.fill("#login-password", &otp);
    b.click("#login-submit");
    // The one-time password opens only the password form.
    b.fill("#pw-new", "office-manager-2026");
    b.fill("#pw-new2", "office-manager-2026");
    b.click("#pw-submit");
    b.wait_until(Duration::from_secs(10), "the wallboard", |b| {
        b.text("tr[data-agent=\"a\"] .state").as_deref() == Some("Available")
            && b.text("#live").as_deref() == Some("Live")
    });
    assert_eq!(cell(&b, "tr[data-queue=\"sales\"] .waiting"), "0");

    let seen = b.wait_until(
        Duration::from_secs(40),
        "the caller waiting on the wallboard",
        |b| cell(b, "tr[data-queue=\"sales\"] .waiting") == "1",
    );
    assert!(
        b.text("#calls tr[data-call] .caller")
            .is_some_and(|c| c == "13800000001"),
        "{}",
        b.body()
    );
    b.wait_until(
        Duration::from_secs(15),
        "the call leaving the queue for agent a",
        |b| {
            cell(b, "tr[data-queue=\"sales\"] .waiting") == "0"
                && b.eval("return document.querySelector('tr[data-agent=\"a\"]').dataset.state")
                    == "on_call"
                // The live calls: this caller talking with agent a.
                && cell(b, "#calls tr[data-state=\"talking\"] .agent") == "a"
                && cell(b, "#calls tr[data-state=\"talking\"] .caller") == "13800000001"
        },
    );
    let joined = site
        .table("queue_log")
        .into_iter()
        .find(|e| e["event"] == "ENTERQUEUE")
        .expect("the caller entered the queue");
    let at = joined["at_ms"].as_i64().unwrap();
    let late = seen - at;
    println!("the wallboard showed the waiting caller {late} ms after they joined the queue");
    assert!(
        (0..=1000).contains(&late),
        "shown {late} ms after the event"
    );

    // The supervisor's actions: pause agent a once the call is over, then
    // make them available again.
    b.wait_until(Duration::from_secs(30), "the call over", |b| {
        b.text("tr[data-agent=\"a\"] button.pause").is_some()
            && b.eval("return document.querySelector('tr[data-agent=\"a\"]').dataset.state")
                != "on_call"
    });
    b.click("tr[data-agent=\"a\"] button.pause");
    b.wait_until(Duration::from_secs(10), "agent a paused", |b| {
        cell(b, "tr[data-agent=\"a\"] .state") == "Paused (supervisor)"
    });
    b.click("tr[data-agent=\"a\"] button.unpause");
    b.wait_until(Duration::from_secs(10), "agent a available again", |b| {
        cell(b, "tr[data-agent=\"a\"] .state") == "Available"
    });
    // Reset statistics: armed by the first click, done by the second.
    assert_eq!(cell(&b, "tr[data-queue=\"sales\"] .answered"), "1");
    b.click("#reset-stats");
    b.click("#reset-stats");
    b.wait_until(Duration::from_secs(10), "the statistics reset", |b| {
        cell(b, "tr[data-queue=\"sales\"] .answered") == "0"
            && cell(b, "tr[data-agent=\"a\"] .calls") == "0"
    });

    // The same page in Chinese, and back.
    b.click("#lang");
    b.wait_until(Duration::from_secs(10), "the Chinese wallboard", |b| {
        cell(b, "#nav-wallboard") == "实时监控"
            && cell(b, "tr[data-agent=\"a\"] .state") == "就绪"
            && b.body().contains("排队中")
    });
    assert_eq!(b.eval("return document.documentElement.lang"), "zh-CN");
    b.click("#lang");
    b.wait_until(Duration::from_secs(10), "English again", |b| {
        cell(b, "#nav-wallboard") == "Wallboard"
    });

    // The admin gives agent a a PIN; a logs in on their own desk.
    b.goto(&format!("{url}#users"));
    b.fill("#user-name", "a");
    b.fill("#user-password", "4321");
    b.click("#user-submit");
    b.wait_until(Duration::from_secs(10), "agent a in the user list", |b| {
        b.text("tr[data-user=\"a\"]").is_some()
    });
    b.goto(&format!("{url}#audit"));
    b.wait_until(Duration::from_secs(10), "the audit log", |b| {
        ["login_failed", "login", "password", "agent", "user.add"]
            .iter()
            .all(|a| b.text(&format!("tr[data-action=\"{a}\"]")).is_some())
    });
    b.click("#logout");
    b.fill("#login-name", "a");
    b.fill("#login-password", "4321");
    b.click("#login-submit");
    b.wait_until(Duration::from_secs(10), "agent a's desk", |b| {
        b.text("#my-state")
            .is_some_and(|s| s.starts_with("Available"))
            && b.text("#nav-users").is_none()
    });
    b.click("#me-pause");
    b.wait_until(Duration::from_secs(10), "agent a paused by themself", |b| {
        b.text("#my-state").is_some_and(|s| s.starts_with("Paused"))
    });
    drop(d);
}

/// The Chinese browser gets the Chinese page without asking.
#[test]
fn a_browser_set_to_chinese_gets_the_console_in_chinese_and_it_fits_a_phone() {
    let port = free_port();
    let site = site(port, "");
    let otp = reset_admin(&site);
    let fp = fingerprint(&site);
    // A phone's screen, in Chinese.
    let b = Browser::start_sized("zh-CN", (390, 844));
    let d = Daemon::start(&site, &[]);
    listening(&d);
    b.goto(&format!("https://127.0.0.1:{port}/"));
    b.wait_until(Duration::from_secs(10), "the Chinese login", |b| {
        cell(b, "#login-submit") == "登录" && cell(b, "#lang") == "English"
    });
    assert_eq!(b.eval("return document.title"), "callbox 控制台");
    let mut api = Api::new(port, &fp);
    admin_in_browser(&b, &mut api, port, &otp);
    b.wait_until(Duration::from_secs(10), "the Chinese wallboard", |b| {
        b.text("tr[data-agent=\"a\"] .state").as_deref() == Some("就绪")
    });
    // Nothing wider than the screen: no sideways scrolling.
    let fits = |b: &Browser| {
        b.eval("return document.documentElement.scrollWidth <= window.innerWidth") == true
    };
    assert!(
        fits(&b),
        "the wallboard is wider than a phone: {}",
        b.eval("return [document.documentElement.scrollWidth, window.innerWidth]")
    );
    b.click("#nav-desk, #nav-records");
    b.wait_until(Duration::from_secs(10), "the calls page", |b| {
        b.text("#records-form").is_some()
    });
    assert!(fits(&b), "the calls page is wider than a phone");
    drop(d);
}

#[test]
fn bad_requests_are_refused_logged_and_audited_and_a_call_goes_on() {
    let broker = Broker::start();
    let collector = Collector::start(&broker);
    let port = free_port();
    let http = free_port();
    let site = site(
        port,
        &format!("redirect = [\"127.0.0.1:{http}\"]\nidle_timeout = \"5s\"\nlogin_attempts = 3"),
    );
    add_uplink(&site, &broker.uplink("box-c", ""));
    let calls = site.write(
        "calls.toml",
        r#"
[[call]]
at = "1s"
from = "13800000002"
hangup_after = "12s"

[[agent]]
name = "a"
line = "desk-1"
answer_after = "1s"
"#,
    );
    let otp = reset_admin(&site);
    let fp = fingerprint(&site);
    let d = Daemon::with_scenario(&site, &calls);
    listening(&d);

    // The certificate is the one `console info` showed; another pin fails.
    let wrong = fp.replace(&fp[..2], if &fp[..2] == "00" { "01" } else { "00" });
    assert!(
        Api::new(port, &wrong)
            .try_send("GET", "/", None, &[])
            .is_err()
    );
    let mut admin = Api::new(port, &fp);
    assert_eq!(admin.send("GET", "/", None).status, 200);

    // Plain HTTP only redirects.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
    use std::io::{Read, Write};
    write!(
        tcp,
        "GET /api/users HTTP/1.1\r\nHost: box.local:{http}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains(&format!("location: https://box.local:{port}/api/users")),
        "{answer}"
    );

    // No session, then the one-time password's narrow session.
    assert_eq!(admin.send("GET", "/api/me", None).status, 401);
    assert_eq!(admin.login("admin", &otp).status, 200);
    let a = admin.send("GET", "/api/wallboard", None);
    assert_eq!(
        (a.status, a.json()["error"].as_str()),
        (403, Some("set your own password first"))
    );
    let no_csrf = admin
        .try_send(
            "POST",
            "/api/password",
            Some(r#"{"new":"supervisor-pass-1"}"#),
            &[("X-CSRF-Token", "forged")],
        )
        .unwrap();
    assert_eq!(no_csrf.status, 403, "{:?}", no_csrf.json());
    assert!(no_csrf.json()["error"].as_str().unwrap().contains("CSRF"));
    assert_eq!(
        admin
            .send("POST", "/api/password", Some(r#"{"new":"short"}"#))
            .status,
        422
    );
    assert_eq!(
        admin
            .send(
                "POST",
                "/api/password",
                Some(r#"{"new":"office-admin-pass"}"#)
            )
            .status,
        200
    );
    // The one-time password is spent.
    assert_eq!(Api::new(port, &fp).login("admin", &otp).status, 401);
    assert_eq!(admin.send("GET", "/api/wallboard", None).status, 200);

    // Users: a PIN that is not one, a name that is no agent, then agent a.
    let put = |api: &Api, body: &str| api.send("POST", "/api/users", Some(body));
    assert_eq!(
        put(&admin, r#"{"name":"a","role":"agent","password":"12"}"#).status,
        422
    );
    let nobody = put(&admin, r#"{"name":"zed","role":"agent","password":"1234"}"#);
    assert_eq!(nobody.status, 422);
    assert!(
        nobody.json()["error"]
            .as_str()
            .unwrap()
            .contains("not one of this site's agents")
    );
    assert_eq!(
        put(&admin, r#"{"name":"a","role":"agent","password":"4321"}"#).status,
        200
    );
    assert_eq!(
        put(
            &admin,
            r#"{"name":"../x","role":"admin","password":"long-enough-1"}"#
        )
        .status,
        422
    );
    let malformed = admin.send("POST", "/api/users", Some("{\"name\": "));
    assert!(
        (400..500).contains(&malformed.status),
        "{}",
        malformed.status
    );
    let huge = "x".repeat(1024 * 1024);
    assert_eq!(
        admin
            .send(
                "POST",
                "/api/users",
                Some(&format!("{{\"name\":\"{huge}\"}}"))
            )
            .status,
        413
    );
    assert_eq!(
        admin
            .send("DELETE", "/api/users/..%2F..%2Fetc%2Fpasswd", None)
            .status,
        404
    );
    assert_eq!(admin.send("GET", "/../../etc/passwd", None).status, 404);
    let last = admin.send("DELETE", "/api/users/admin", None);
    assert_eq!(last.status, 422, "the only admin stays: {:?}", last.json());

    // An agent sees their own things only.
    let mut agent = Api::new(port, &fp);
    assert_eq!(agent.login("a", "4321").status, 200);
    assert_eq!(agent.send("GET", "/api/users", None).status, 403);
    assert_eq!(agent.send("GET", "/api/audit", None).status, 403);
    assert_eq!(
        agent
            .send("POST", "/api/agents/b", Some(r#"{"action":"login"}"#))
            .status,
        403
    );
    let board = agent.send("GET", "/api/wallboard", None).json();
    let names: Vec<&str> = board["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["agent"].as_str())
        .collect();
    assert_eq!(names, ["a"]);
    assert_eq!(agent.send("POST", "/api/acd/reset", None).status, 403);
    let act = agent.send("POST", "/api/agents/a", Some(r#"{"action":"dance"}"#));
    assert_eq!(act.status, 422);

    // Wrong passwords: refused, then the address is blocked, even for the
    // right one. The spent one-time password above was the first failure
    // from this address.
    let mut guesser = Api::new(port, &fp);
    for _ in 0..2 {
        assert_eq!(guesser.login("admin", "guess-guess").status, 401);
    }
    let blocked = guesser.login("admin", "office-admin-pass");
    assert_eq!(blocked.status, 429);
    assert!(blocked.header("retry-after").is_some());
    assert_eq!(
        guesser.send("POST", "/api/login", Some("not json")).status,
        422
    );

    // An idle session ends.
    std::thread::sleep(Duration::from_secs(6));
    let expired = agent.send("GET", "/api/me", None);
    assert_eq!(expired.status, 401);
    assert!(
        expired.json()["error"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // Every refusal is in the log with its peer; the audit log has the
    // logins, the failures and the changes, and headquarters gets them.
    let log = d.log();
    assert!(log.contains("console refused a request"), "{log}");
    // The admin's session idled out with the agent's.
    admin.cookie = None;
    admin.csrf = None;
    assert_eq!(
        admin.login("admin", "office-admin-pass").status,
        429,
        "the guesser shares the address"
    );
    let audit: Vec<Value> = site.table("console_audit");
    let actions: Vec<&str> = audit.iter().filter_map(|e| e["action"].as_str()).collect();
    for want in [
        "login",
        "password",
        "user.add",
        "login_failed",
        "login_blocked",
    ] {
        assert!(actions.contains(&want), "{want} not in {actions:?}");
    }
    wait_until(
        Duration::from_secs(30),
        "the audit entries at headquarters",
        || {
            let hq = collector.export("audit");
            hq.iter().any(|e| e["action"] == "login_blocked")
                && hq.iter().any(|e| e["action"] == "user.add")
        },
    );

    // The call in progress all along ended as it should.
    let mut d = d;
    wait_until(Duration::from_secs(30), "the call recorded", || {
        site.records()
            .iter()
            .any(|r| r["disposition"] != "in_progress")
    });
    d.stop();
    let recs = site.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["agent"], "a", "{:?}", recs[0]);
    assert_eq!(recs[0]["disposition"], "answered", "{:?}", recs[0]);
}

#[test]
fn console_mistakes_are_reported_at_their_place() {
    let site = site(
        8443,
        "redirect = [\"127.0.0.1:8443\"]\nidle_timeout = \"1s\"\ncert = \"nope.pem\"",
    );
    let err = site.refused();
    for want in [
        "127.0.0.1:8443 is also in `listen`",
        "`1s` is under 5s",
        "give both `cert` and `key`",
    ] {
        assert!(err.contains(want), "{want} missing:\n{err}");
    }
    let line = |needle: &str| {
        site.config_text()
            .lines()
            .position(|l| l.starts_with(needle))
            .unwrap()
            + 1
    };
    assert!(
        err.contains(&format!("site.toml:{}:", line("idle_timeout"))),
        "{err}"
    );
}

#[test]
fn the_demo_prints_a_console_address_and_a_one_time_password_that_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = cmd()
        .args(["demo", "--seconds", "15", "--data"])
        .arg(dir.path().join("data"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(demo.stdout.take().unwrap());
    let mut line = String::new();
    let how = loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
            "no console line"
        );
        if line.starts_with("Web console:") {
            break line.clone();
        }
    };
    let word_after = |what: &str| {
        how.split(what)
            .nth(1)
            .unwrap()
            .split([' ', ')'])
            .next()
            .unwrap()
            .to_string()
    };
    let url = word_after("Web console: ");
    let port: u16 = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let password = word_after("one-time password ");
    let fp = word_after("SHA-256 ");
    let mut api = Api::new(port, &fp);
    wait_until(Duration::from_secs(20), "the demo's console", || {
        api.try_send("GET", "/", None, &[])
            .is_ok_and(|a| a.status == 200)
    });
    let a = api.login("admin", &password);
    assert_eq!(a.status, 200, "{:?}", a.json());
    assert_eq!(a.json()["must_change"], true);
    let _ = demo.kill();
    let _ = demo.wait();
}
