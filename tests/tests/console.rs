//! The box's web console end to end: the real `callboxd` on the sim
//! backend in real time, a real Chromium through chromedriver, the API
//! through an HTTPS client that pins the certificate `callboxd console
//! info` printed, and a real mosquitto with a collector for the audit log.

use std::time::Duration;

use callbox_tests::console::{Api, Browser};
use callbox_tests::mqtt::{Broker, Collector, Daemon, add_uplink, free_port, wait_until};
use callbox_tests::{Site, cmd, text};
use serde_json::Value;

/// One trunk, one desk, queue `sales` with agent `a`, agent `b` with no
/// desk, the console on `port`, and `console` extra keys.
fn site(port: u16, console: &str) -> Site {
    site_with(1, port, console)
}

/// [`site`] with `trunks` trunk lines.
fn site_with(trunks: usize, port: u16, console: &str) -> Site {
    Site::with_config(
        trunks,
        1,
        &format!(
            r#"
[ivr]
start = "sales"

[ivr.node.sales]
type = "queue"
announce = []
on_overflow = "bye"

[ivr.node.bye]
type = "hangup"
outcome = "overflow"

[acd.agent.a]
station = "desk-1"
logged_in = true

[acd.agent.b]

[acd.queue.sales]
members = {{ a = 0, b = 0 }}

[console]
listen = ["127.0.0.1:{port}"]
{console}
"#
        ),
    )
}

/// `callboxd console reset-admin`: the one-time password.
fn reset_admin(site: &Site) -> String {
    let out = cmd()
        .args(["console", "reset-admin", "--config"])
        .arg(site.config())
        .arg("--data")
        .arg(site.data())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `callboxd console info`'s fingerprint line.
fn fingerprint(site: &Site) -> String {
    let out = cmd()
        .args(["console", "info", "--config"])
        .arg(site.config())
        .arg("--data")
        .arg(site.data())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("SHA-256 fingerprint: "))
        .unwrap_or_else(|| panic!("no fingerprint in:\n{stdout}"))
        .to_string()
}

fn listening(d: &Daemon) {
    d.wait_log(Duration::from_secs(30), "the console listening", |l| {
        l.contains("web console listening")
    });
}

fn cell(b: &Browser, css: &str) -> String {
    b.text(css).unwrap_or_default()
}

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
fn a_browser_set_to_chinese_gets_the_console_in_chinese() {
    let port = free_port();
    let site = site(port, "");
    let b = Browser::start("zh-CN");
    let d = Daemon::start(&site, &[]);
    listening(&d);
    b.goto(&format!("https://127.0.0.1:{port}/"));
    b.wait_until(Duration::from_secs(10), "the Chinese login", |b| {
        cell(b, "#login-submit") == "登录" && cell(b, "#lang") == "English"
    });
    assert_eq!(b.eval("return document.title"), "callbox 控制台");
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

/// The IVR asks for a product code, then queues the caller to agent `a`;
/// the console has wrap-up codes (one a lead) and a script for `sales`.
const POP_SITE: &str = r#"
[ivr]
start = "product"

[ivr.lookups]
contacts = "contacts.csv"

[ivr.node.product]
type = "collect"
var = "product"
prompt = "system:enter-code"
min = 3
max = 8
recordable = true
next = "sales"

[ivr.node.sales]
type = "queue"
announce = []
on_overflow = "bye"

[ivr.node.bye]
type = "hangup"

[acd.agent.a]
station = "desk-1"
logged_in = true

[acd.queue.sales]
members = { a = 0 }

[console]
listen = ["127.0.0.1:PORT"]

[console.wrap_codes]
"1" = "Information"
"2" = { label = "Quote wanted", lead = true }

[console.scripts]
sales = "Good morning {caller_name}, this is {agent}. I see you asked about product {product}."
"#;

#[test]
fn the_agents_screen_pops_the_caller_with_history_and_ivr_keys_and_the_wrap_up_reaches_headquarters()
 {
    let broker = Broker::start();
    let collector = Collector::start(&broker);
    let port = free_port();
    let site = Site::with_config(1, 1, &POP_SITE.replace("PORT", &port.to_string()));
    site.write("contacts.csv", "number,name\n13800138000,王经理\n");
    add_uplink(&site, &broker.uplink("box-pop", ""));
    // Two earlier calls from the same number, then the one the agent sees
    // ring on their desk.
    let calls = site.write(
        "calls.toml",
        r#"
[[call]]
at = "1s"
from = "13800138000"
hangup_after = "8s"
script = [{ wait = "1s" }, { press = "111#" }]

[[call]]
at = "11s"
from = "13800138000"
hangup_after = "8s"
script = [{ wait = "1s" }, { press = "222#" }]

[[call]]
at = "30s"
from = "13800138000"
hangup_after = "14s"
script = [{ wait = "1s" }, { press = "12345#" }]

[[agent]]
name = "a"
line = "desk-1"
answer_after = "5s"
"#,
    );
    let otp = reset_admin(&site);
    let fp = fingerprint(&site);
    let d = Daemon::with_scenario(&site, &calls);
    listening(&d);
    let mut admin = Api::new(port, &fp);
    assert_eq!(admin.login("admin", &otp).status, 200);
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
    let put = admin.send(
        "POST",
        "/api/users",
        Some(r#"{"name":"a","role":"agent","password":"2468"}"#),
    );
    assert_eq!(put.status, 200, "{:?}", put.json());

    let b = Browser::start("en-US");
    b.goto(&format!("https://127.0.0.1:{port}/"));
    b.fill("#login-name", "a");
    b.fill("#login-password", "2468");
    b.click("#login-submit");
    b.wait_until(Duration::from_secs(10), "agent a's desk", |b| {
        b.text("#my-state").is_some()
    });
    // The third call rings agent a: the screen pop fills before they answer.
    b.wait_until(
        Duration::from_secs(45),
        "the screen pop while the call rings",
        |b| {
            // The first two calls may pop too while the browser logs in.
            b.eval("return document.querySelector('#my-state').dataset.state") == "ringing"
                && b.text("#pop-vars tr[data-var=\"product\"] .value")
                    .as_deref()
                    == Some("12345")
        },
    );
    assert_eq!(cell(&b, "#pop-name"), "王经理");
    assert_eq!(cell(&b, "#pop-caller"), "13800138000");
    assert_eq!(
        cell(&b, "#pop-vars tr[data-var=\"product\"] .value"),
        "12345"
    );
    assert!(
        cell(&b, "#pop-path").contains("product=ok"),
        "{}",
        cell(&b, "#pop-path")
    );
    let earlier = b.eval("return document.querySelectorAll('#pop-history tbody tr').length");
    assert_eq!(earlier, 2, "{}", b.body());
    assert_eq!(
        cell(&b, "#pop-script"),
        "Good morning 王经理, this is a. I see you asked about product 12345."
    );
    // The call ends; the wrap-up form stays for it.
    b.wait_until(
        Duration::from_secs(40),
        "the wrap-up form after the call",
        |b| b.text("#wrap-form").is_some(),
    );
    b.click("#wrap-code option[value=\"2\"]");
    b.fill("#wrap-notes", "wants a quote for 200 units");
    b.click("#wrap-submit");
    b.wait_until(Duration::from_secs(10), "the wrap-up saved", |b| {
        cell(b, "#wrap-status") == "Saved."
    });

    let third = site
        .records()
        .into_iter()
        .find(|r| r["ivr_vars"]["product"] == "12345")
        .expect("the third call's record");
    assert_eq!(third["wrap_code"], "2", "{third:#}");
    assert_eq!(third["notes"], "wants a quote for 200 units");
    let id = third["id"].as_str().unwrap().to_string();
    wait_until(
        Duration::from_secs(30),
        "the wrap-up and the lead at headquarters",
        || {
            let cdr = collector.export("cdr");
            let lead = collector.export("lead");
            cdr.iter().any(|r| {
                r["id"] == id.as_str()
                    && r["notes"] == "wants a quote for 200 units"
                    && r["wrap_code"] == "2"
            }) && lead
                .iter()
                .any(|l| l["call_id"] == id.as_str() && l["label"] == "Quote wanted")
        },
    );

    // Another agent's call is not this agent's to see.
    let mut agent = Api::new(port, &fp);
    assert_eq!(agent.login("a", "2468").status, 200);
    let first = site
        .records()
        .into_iter()
        .find(|r| r["ivr_vars"]["product"] == "111")
        .unwrap();
    // Agent a took it, so it is theirs; an unknown call is not found.
    assert_eq!(
        agent
            .send(
                "GET",
                &format!("/api/calls/{}/pop", first["id"].as_str().unwrap()),
                None
            )
            .status,
        200
    );
    assert_eq!(agent.send("GET", "/api/calls/nope/pop", None).status, 404);
    let bad_code = agent.send(
        "POST",
        &format!("/api/calls/{id}/wrap"),
        Some(r#"{"code":"9"}"#),
    );
    assert_eq!(bad_code.status, 422);
    drop(d);
}

#[test]
fn records_are_searched_exported_as_csv_and_recordings_played_in_the_browser() {
    let port = free_port();
    let site = site(port, "");
    let plain = site.config_text() + "\n[recording]\nmode = \"always\"\nformat = \"pcm16\"\n";
    site.write("site.toml", &plain);
    let scenario = |calls: &[(&str, u32)]| {
        let mut s =
            String::from("[[agent]]\nname = \"a\"\nline = \"desk-1\"\nanswer_after = \"1s\"\n\n");
        for (from, at) in calls {
            s += &format!(
                "[[call]]\nat = \"{at}s\"\nfrom = \"{from}\"\nto = \"4001\"\nhangup_after = \"8s\"\n\n"
            );
        }
        site.write("calls.toml", &s)
    };
    let run = |path: &std::path::Path| {
        let out = site.run_fast(path);
        assert!(out.status.success(), "{}", text(&out));
    };
    run(&scenario(&[
        ("13800000001", 1),
        ("13900000002", 20),
        ("13800000001", 40),
    ]));
    // One more call, its recording encrypted to headquarters' key.
    let keys = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(callbox_tests::callboxd().with_file_name("callbox-hq"))
        .args(["keygen", "--out"])
        .arg(keys.path().join("hq.key"))
        .output()
        .unwrap();
    let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    site.write(
        "site.toml",
        &plain.replace(
            "format = \"pcm16\"\n",
            &format!("format = \"pcm16\"\nrecipients = [\"{public}\"]\n"),
        ),
    );
    run(&scenario(&[("13700000003", 1)]));
    let recs = site.records();
    assert_eq!(recs.len(), 4);

    let otp = reset_admin(&site);
    let fp = fingerprint(&site);
    let d = Daemon::start(&site, &[]);
    listening(&d);
    let mut admin = Api::new(port, &fp);
    assert_eq!(admin.login("admin", &otp).status, 200);
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
    assert_eq!(
        admin
            .send(
                "POST",
                "/api/users",
                Some(r#"{"name":"b","role":"agent","password":"1357"}"#)
            )
            .status,
        200
    );

    let b = Browser::start("en-US");
    b.goto(&format!("https://127.0.0.1:{port}/"));
    b.fill("#login-name", "admin");
    b.fill("#login-password", "office-admin-pass");
    b.click("#login-submit");
    b.wait_until(Duration::from_secs(10), "the wallboard", |b| {
        b.text("#nav-records").is_some()
    });
    b.click("#nav-records");
    let rows = |b: &Browser| b.eval("return document.querySelectorAll('#records tbody tr').length");
    b.wait_until(Duration::from_secs(10), "four calls", |b| rows(b) == 4);
    b.fill("#f-number", "138");
    b.click("#records-submit");
    b.wait_until(Duration::from_secs(10), "the two calls from 138…", |b| {
        rows(b) == 2
    });

    // The CSV the link points at, fetched with the same session's cookie.
    let href = b.eval("return document.querySelector('#records-csv').getAttribute('href')");
    let csv = admin.send("GET", href.as_str().unwrap(), None);
    assert_eq!(csv.status, 200);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = String::from_utf8(csv.body.clone()).unwrap();
    let lines: Vec<&str> = text.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("id,start,direction,caller"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1..].iter().all(|l| l.contains(",13800000001,")),
        "{text}"
    );

    // Play the newest call from 138… in the browser, and seek in it.
    b.click("#records tbody tr:first-child button.play");
    b.wait_until(Duration::from_secs(15), "the recording loaded in the player", |b| {
        b.eval("const a = document.querySelector('audio'); return a ? a.readyState >= 1 && a.duration > 5 : false") == true
    });
    let seeked = b.eval(
        "const a = document.querySelector('audio'); a.pause(); a.currentTime = 4; \
         return a.seekable.length > 0 && a.seekable.end(0) > 4;",
    );
    assert_eq!(seeked, true);
    let channels =
        b.eval("const id = document.querySelector('audio').dataset.recording; return id;");
    let wav = admin.send(
        "GET",
        &format!("/api/recordings/{}", channels.as_str().unwrap()),
        None,
    );
    assert_eq!(wav.status, 200);
    assert_eq!(&wav.body[..4], b"RIFF");
    assert_eq!(
        u16::from_le_bytes([wav.body[22], wav.body[23]]),
        2,
        "stereo"
    );

    // The encrypted one says who can open it.
    b.fill("#f-number", "1370");
    b.click("#records-submit");
    b.wait_until(Duration::from_secs(10), "the encrypted call", |b| {
        rows(b) == 1
    });
    b.click("#records tbody tr:first-child button.play");
    b.wait_until(
        Duration::from_secs(10),
        "the encrypted recording refused",
        |b| {
            b.text(".recording-error")
                .is_some_and(|e| e.contains("only headquarters can open it"))
        },
    );

    // Ranges, downloads and names that are no recording.
    let id = recs[0]["recordings"][0].as_str().unwrap();
    let part = admin
        .try_send(
            "GET",
            &format!("/api/recordings/{id}"),
            None,
            &[("Range", "bytes=0-43")],
        )
        .unwrap();
    assert_eq!(part.status, 206);
    assert_eq!(part.body.len(), 44);
    assert!(
        part.header("content-range")
            .unwrap()
            .starts_with("bytes 0-43/")
    );
    let beyond = admin
        .try_send(
            "GET",
            &format!("/api/recordings/{id}"),
            None,
            &[("Range", "bytes=99999999-")],
        )
        .unwrap();
    assert_eq!(beyond.status, 416);
    let dl = admin.send("GET", &format!("/api/recordings/{id}?download=1"), None);
    assert_eq!(
        dl.header("content-disposition"),
        Some(format!("attachment; filename=\"{id}.wav\"").as_str())
    );
    for bad in ["..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "nope"] {
        assert_eq!(
            admin
                .send("GET", &format!("/api/recordings/{bad}"), None)
                .status,
            404,
            "{bad}"
        );
    }
    assert_eq!(
        admin
            .send("GET", "/api/records?from=yesterday", None)
            .status,
        422
    );

    // Agent b took none of these calls: they see none, and may not play them.
    let mut agent = Api::new(port, &fp);
    assert_eq!(agent.login("b", "1357").status, 200);
    assert_eq!(
        agent.send("GET", "/api/records", None).json()["records"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        agent
            .send("GET", &format!("/api/recordings/{id}"), None)
            .status,
        403
    );
    drop(d);
}

/// Logs `b` in as admin (password set through the API first).
fn admin_in_browser(b: &Browser, api: &mut Api, port: u16, otp: &str) {
    assert_eq!(api.login("admin", otp).status, 200);
    assert_eq!(
        api.send(
            "POST",
            "/api/password",
            Some(r#"{"new":"office-admin-pass"}"#)
        )
        .status,
        200
    );
    b.goto(&format!("https://127.0.0.1:{port}/"));
    b.fill("#login-name", "admin");
    b.fill("#login-password", "office-admin-pass");
    b.click("#login-submit");
    b.wait_until(Duration::from_secs(10), "logged in", |b| {
        b.text("#nav-reports").is_some()
    });
}

#[test]
fn a_report_counts_what_the_records_hold_and_draws_it() {
    let port = free_port();
    let site = site_with(4, port, "");
    // One agent, callers close together: some wait and are answered, some
    // give up waiting.
    let mut s =
        String::from("[[agent]]\nname = \"a\"\nline = \"desk-1\"\nanswer_after = \"2s\"\n\n");
    for i in 0..8 {
        // Every third caller hangs up 3 s after the box answers, while the
        // agent is still on an earlier call.
        let hangup = if i % 3 == 2 { 3 } else { 6 + i };
        s += &format!(
            "[[call]]\nat = \"{}s\"\nfrom = \"1380000000{i}\"\nto = \"400{}\"\nhangup_after = \"{hangup}s\"\n\n",
            1 + i * 2,
            1 + i % 2,
        );
    }
    let path = site.write("calls.toml", &s);
    let out = site.run_fast(&path);
    assert!(out.status.success(), "{}", text(&out));
    let recs = site.records();
    let sales: Vec<&Value> = recs.iter().filter(|r| r["queue"] == "sales").collect();
    let connected: Vec<&Value> = sales
        .iter()
        .copied()
        .filter(|r| r["queue_exit"] == "connected")
        .collect();
    let abandoned = sales
        .iter()
        .filter(|r| r["queue_exit"] == "abandoned")
        .count() as u64;
    assert!(abandoned > 0 && !connected.is_empty(), "{recs:#?}");
    let avg = |f: &str| {
        connected
            .iter()
            .map(|r| r[f].as_u64().unwrap())
            .sum::<u64>()
            / connected.len() as u64
    };
    let (asa, handle) = (avg("queue_wait_ms"), avg("talk_ms"));

    let otp = reset_admin(&site);
    let fp = fingerprint(&site);
    let d = Daemon::start(&site, &[]);
    listening(&d);
    let mut api = Api::new(port, &fp);
    let b = Browser::start("en-US");
    admin_in_browser(&b, &mut api, port, &otp);

    let report = api
        .send("GET", "/api/reports?period=month&by=queue", None)
        .json();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report:#}");
    let r = &rows[0];
    assert_eq!(r["key"], "sales");
    assert_eq!(r["offered"], sales.len() as u64);
    assert_eq!(r["answered"], connected.len() as u64);
    assert_eq!(r["abandoned"], abandoned);
    assert_eq!(r["asa_ms"], asa);
    assert_eq!(r["handle_ms"], handle);
    let in_sl = connected
        .iter()
        .filter(|r| r["queue_wait_ms"].as_u64().unwrap() <= 20_000)
        .count();
    assert_eq!(
        r["service_level"].as_f64().unwrap(),
        in_sl as f64 / connected.len() as f64
    );
    let by_dialled = api
        .send("GET", "/api/reports?period=month&by=dialled", None)
        .json();
    let dialled: u64 = by_dialled["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["key"] == "4001")
        .map(|r| r["offered"].as_u64().unwrap())
        .sum();
    assert_eq!(
        dialled,
        recs.iter().filter(|r| r["dialled"] == "4001").count() as u64
    );
    assert_eq!(
        api.send("GET", "/api/reports?period=year", None).status,
        422
    );
    assert_eq!(
        api.send("GET", "/api/reports?from=2026-12-09&to=2026-12-01", None)
            .status,
        422
    );

    // The page: the table, the chart, the CSV, in English and Chinese.
    b.click("#nav-reports");
    b.click("#r-period option[value=\"month\"]");
    b.click("#report-submit");
    b.wait_until(Duration::from_secs(10), "the report table", |b| {
        b.text("#report-table tr[data-key=\"sales\"] .offered") == Some(sales.len().to_string())
    });
    let bars = b.eval("return [...document.querySelectorAll('#report-chart rect.bar-offered')].map(r => Number(r.dataset.value))");
    assert_eq!(bars, serde_json::json!([sales.len()]));
    let href = b.eval("return document.querySelector('#report-csv').getAttribute('href')");
    let csv = String::from_utf8(api.send("GET", href.as_str().unwrap(), None).body).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].contains(&format!(
            ",sales,{},{},{},",
            sales.len(),
            connected.len(),
            abandoned
        )),
        "{csv}"
    );
    b.click("#lang");
    b.wait_until(Duration::from_secs(10), "the Chinese report", |b| {
        b.body().contains("呼入") && b.body().contains("平均应答")
    });
    drop(d);
}

#[test]
fn the_config_is_edited_in_the_browser_errors_shown_at_their_line_and_a_good_edit_applied_during_a_call()
 {
    let port = free_port();
    let site = site(port, "");
    let calls = site.write(
        "calls.toml",
        r#"
[[call]]
at = "2s"
from = "13800000009"
hangup_after = "30s"

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
    let mut api = Api::new(port, &fp);
    let b = Browser::start("en-US");
    admin_in_browser(&b, &mut api, port, &otp);
    let original = site.config_text();

    b.click("#nav-config");
    b.wait_until(Duration::from_secs(10), "the editor", |b| {
        b.eval("const e = document.querySelector('#config-text'); return e ? e.value : ''")
            == original.as_str()
    });
    let set_text = |text: &str| {
        b.eval(&format!(
            "document.querySelector('#config-text').value = {}; return true;",
            serde_json::to_string(text).unwrap()
        ));
    };
    // A mistake: the checker's line and column, nothing applied.
    let broken = original.replace("on_overflow = \"bye\"", "on_overflow = \"nowhere\"");
    let line = broken.lines().position(|l| l.contains("nowhere")).unwrap() + 1;
    set_text(&broken);
    b.click("#config-apply");
    b.wait_until(Duration::from_secs(10), "the error at its line", |b| {
        b.text(&format!("#config-errors li[data-line=\"{line}\"]"))
            .is_some_and(|e| e.contains("nowhere"))
    });
    assert_eq!(site.config_text(), original, "nothing applied");

    // A good edit while the caller talks to agent a.
    wait_until(Duration::from_secs(20), "the call connected", || {
        d.log().contains("CONNECT")
            || site
                .table("queue_log")
                .iter()
                .any(|e| e["event"] == "CONNECT")
    });
    let good = original.replace(
        "members = { a = 0, b = 0 }",
        "members = { a = 0, b = 0 }\nservice_level = \"30s\"",
    );
    set_text(&good);
    b.click("#config-check");
    b.wait_until(Duration::from_secs(10), "checked", |b| {
        b.text("#config-checked").is_some()
    });
    b.click("#config-apply");
    b.wait_until(Duration::from_secs(15), "applied as version 1", |b| {
        b.eval("const e = document.querySelector('#config-applied'); return e ? e.dataset.version : ''") == "1"
    });
    assert_eq!(site.config_text(), good);
    b.wait_until(Duration::from_secs(10), "version 1 in the history", |b| {
        b.text("#config-history li[data-version=\"1\"]").is_some()
    });
    set_text(&original);
    b.click("#config-history li[data-version=\"1\"] button.diff");
    b.wait_until(Duration::from_secs(10), "the diff", |b| {
        b.text("#config-diff").is_some_and(|t| {
            t.contains("+ service_level = \"30s\"") || t.contains("- service_level = \"30s\"")
        })
    });
    let audit = api.send("GET", "/api/audit", None).json();
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "config.set" && e["detail"]["version"] == 1)
    );

    // Prompts: another rate and stereo is converted; not audio, too big or
    // a path is refused and nothing is stored.
    let mut wav = std::io::Cursor::new(Vec::new());
    {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut wav, spec).unwrap();
        for i in 0..88_200 {
            w.write_sample(((i as f32 * 0.06).sin() * 8000.0) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
    }
    let up = api
        .try_send_bytes(
            "POST",
            "/api/prompts/welcome-2",
            &wav.into_inner(),
            &[("Content-Type", "audio/wav")],
        )
        .unwrap();
    assert_eq!(up.status, 200, "{:?}", up.json());
    assert_eq!(up.json()["converted"], true);
    let stored = hound::WavReader::open(site.dir.path().join("prompts/welcome-2.wav")).unwrap();
    assert_eq!(
        (stored.spec().sample_rate, stored.spec().channels),
        (8000, 1)
    );
    assert_eq!(stored.duration(), 8000);
    let junk = api
        .try_send("POST", "/api/prompts/junk", Some("ID3 this is an mp3"), &[])
        .unwrap();
    assert_eq!(junk.status, 422);
    assert!(
        junk.json()["error"]
            .as_str()
            .unwrap()
            .contains("nothing was stored")
    );
    assert!(!site.dir.path().join("prompts/junk.wav").exists());
    let huge = "\0".repeat(60 * 1024 * 1024);
    let big = api
        .try_send("POST", "/api/prompts/big", Some(&huge), &[])
        .unwrap();
    assert_eq!(big.status, 413);
    assert!(!site.dir.path().join("prompts/big.wav").exists());
    assert_eq!(
        api.send("POST", "/api/prompts/..%2F..%2Fsite", Some("x"))
            .status,
        404
    );
    b.goto(&format!("https://127.0.0.1:{port}/"));
    b.click("#nav-config");
    b.wait_until(Duration::from_secs(10), "the uploaded prompt with a player", |b| {
        b.text("#prompt-list li[data-prompt=\"welcome-2\"]").is_some()
            && b.eval("return !!document.querySelector('#prompt-list li[data-prompt=\"welcome-2\"] audio')") == true
    });

    // The call went on through the change and ended normally.
    let mut d = d;
    wait_until(Duration::from_secs(40), "the call recorded", || {
        site.records()
            .iter()
            .any(|r| r["disposition"] != "in_progress")
    });
    d.stop();
    let recs = site.records();
    assert_eq!(recs[0]["disposition"], "answered", "{:#}", recs[0]);
    assert!(
        recs[0]["talk_ms"].as_u64().unwrap() > 20_000,
        "{:#}",
        recs[0]
    );
}
