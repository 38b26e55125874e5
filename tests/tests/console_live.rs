//! The console's live side end to end, with the real `callboxd` on the sim
//! backend in real time and a real Chromium: callers still in the IVR on
//! the wallboard with the node they are at; a supervisor joining an
//! agent's call from the wallboard (their own phone rings first, and what
//! each phone heard proves whose voice reached whom); do-not-disturb from
//! the agent's desk; a preview campaign's contact on the agent's desk
//! while their phone rings, and its wrap-up onto the contact.

use std::time::Duration;

use callbox_tests::console::{
    Api, Browser, admin_in_browser, cell, fingerprint, listening, reset_admin,
};
use callbox_tests::mqtt::{Daemon, free_port, wait_until};
use callbox_tests::{Site, probes};
use serde_json::Value;

/// A product code in the IVR, then the queue to agent `a` (number 1001);
/// `desk-2` is the supervisor's phone.
const MONITOR_SITE: &str = r#"
[ivr]
start = "product"

[ivr.node.product]
type = "collect"
var = "product"
prompt = "system:enter-code"
min = 3
max = 8
next = "sales"

[ivr.node.sales]
type = "queue"
announce = []
on_overflow = "bye"

[ivr.node.bye]
type = "hangup"

[acd]
supervisors = ["desk-2"]

[acd.agent.a]
number = "1001"
station = "desk-1"
logged_in = true

[acd.agent.b]

[acd.queue.sales]
members = { a = 0, b = 0 }

[console]
listen = ["127.0.0.1:PORT"]
"#;

#[test]
fn the_wallboard_shows_callers_in_the_ivr_and_a_supervisor_whispers_to_an_agent_from_it() {
    let port = free_port();
    let site = Site::with_config(1, 2, &MONITOR_SITE.replace("PORT", &port.to_string()));
    let dir = site.dir.path();
    callbox_tests::write_tone_hz(&dir.join("caller.wav"), 600.0, 90_000);
    callbox_tests::write_tone_hz(&dir.join("sup.wav"), 1800.0, 30_000);
    callbox_tests::write_tone_hz(&dir.join("agent.wav"), 1400.0, 90_000);
    // Each talker has a tone (the supervisor's is one no prompt holds).
    // The caller takes 8 s over the product code, so they sit in the IVR
    // a while; agent a answers and talks; the supervisor's phone answers
    // whatever rings it and speaks.
    let calls = site.write(
        "calls.toml",
        r#"
[[call]]
at = "15s"
from = "13800000001"
hangup_after = "100s"
script = [{ wait = "8s" }, { press = "123#" }, { play = "caller.wav" }]

[[agent]]
name = "a"
line = "desk-1"
answer_after = "1s"
talk = "80s"
script = [{ play = "agent.wav" }]

[[agent]]
name = "sup"
line = "desk-2"
answer_after = "1s"
script = [{ play = "sup.wav" }]
"#,
    );
    let otp = reset_admin(&site);
    let fp = fingerprint(&site);
    let report = dir.join("report.json");
    let mut d = Daemon::start(
        &site,
        &[
            "--scenario",
            calls.to_str().unwrap(),
            "--sim-report",
            report.to_str().unwrap(),
        ],
    );
    listening(&d);
    let mut admin = Api::new(port, &fp);
    let b = Browser::start("en-US");
    admin_in_browser(&b, &mut admin, port, &otp);
    b.goto(&format!("https://127.0.0.1:{port}/#wallboard"));
    b.wait_until(Duration::from_secs(10), "the wallboard", |b| {
        cell(b, "#live") == "Live" && b.text("#my-phone").is_some()
    });

    // In the IVR at the product code, before any queue has them.
    b.wait_until(Duration::from_secs(30), "the caller in the IVR", |b| {
        cell(
            b,
            "#calls tr[data-kind=\"inbound\"][data-state=\"ivr\"] .where",
        ) == "product"
    });
    assert_eq!(
        cell(&b, "#calls tr[data-kind=\"inbound\"] .caller"),
        "13800000001"
    );
    assert_eq!(cell(&b, "tr[data-queue=\"sales\"] .waiting"), "0");
    // Then the queue's: talking with agent a, listed once.
    b.wait_until(Duration::from_secs(30), "the caller talking with a", |b| {
        cell(b, "#calls tr[data-state=\"talking\"] .agent") == "a"
            && cell(b, "#calls tr[data-state=\"talking\"] .where") == "sales"
    });
    assert_eq!(
        b.eval("return document.querySelectorAll('#calls tbody tr').length"),
        1,
        "{}",
        b.body()
    );

    // Refusals, each with its reason; nothing rings.
    let ask = |body: &str, agent: &str| {
        let r = admin.send("POST", &format!("/api/agents/{agent}"), Some(body));
        (
            r.status,
            r.json()["error"].as_str().unwrap_or_default().to_string(),
        )
    };
    let (s, e) = ask(r#"{"action":"listen"}"#, "a");
    assert_eq!(s, 422, "{e}");
    assert!(e.contains("phone"), "{e}");
    let (s, e) = ask(r#"{"action":"listen","station":"desk-1"}"#, "a");
    assert_eq!(s, 422);
    assert!(e.contains("not a supervisor's phone"), "{e}");
    let (s, e) = ask(r#"{"action":"barge","station":"desk-2"}"#, "b");
    assert_eq!(s, 422);
    assert!(e.contains("no `number`"), "{e}");
    let (s, e) = ask(r#"{"action":"spy","station":"desk-2"}"#, "a");
    assert_eq!(s, 422, "{e}");
    // An agent may not join anyone's call, not even their own.
    let put = admin.send(
        "POST",
        "/api/users",
        Some(r#"{"name":"a","role":"agent","password":"2468"}"#),
    );
    assert_eq!(put.status, 200);
    let mut agent = Api::new(port, &fp);
    assert_eq!(agent.login("a", "2468").status, 200);
    let r = agent.send(
        "POST",
        "/api/agents/a",
        Some(r#"{"action":"whisper","station":"desk-2"}"#),
    );
    assert_eq!(r.status, 403);

    // The supervisor chooses their phone, then whispers to agent a.
    b.eval(
        "const s = document.querySelector('#my-phone'); s.value = 'desk-2'; \
         s.dispatchEvent(new Event('change')); return s.value",
    );
    b.click("tr[data-agent=\"a\"] button.whisper");
    wait_until(Duration::from_secs(20), "the supervisor joined", || {
        site.table("queue_log")
            .iter()
            .any(|e| e["event"] == "SUPERVISE" && e["data"]["station"] == "desk-2")
    });
    let sup = site
        .table("queue_log")
        .into_iter()
        .find(|e| e["event"] == "SUPERVISE")
        .unwrap();
    assert_eq!(sup["data"]["mode"], "whisper", "{sup:#}");
    // Long enough for a few hundred frames of the supervisor's voice.
    std::thread::sleep(Duration::from_secs(8));
    let audit = admin.send("GET", "/api/audit", None).json();
    assert!(
        audit["entries"].as_array().is_some_and(|a| a
            .iter()
            .any(|e| e["action"] == "acd.monitor" && e["detail"]["station"] == "desk-2")),
        "{audit:#}"
    );
    drop(b);
    assert!(d.stop().success(), "{}", d.log());

    let rep: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let heard = |line: &str, hz: &str| probes(&rep, line, hz);
    // The supervisor's phone rang showing the agent it joins.
    assert!(
        rep["caller_ids"]["desk-2"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c == "1001 whisper a")),
        "{}",
        rep["caller_ids"]
    );
    let lots = 100;
    assert!(
        heard("desk-2", "600") > lots && heard("desk-2", "1400") > lots,
        "the supervisor hears both sides: {}",
        rep["probes_heard"]
    );
    assert!(
        heard("desk-1", "1800") > lots,
        "the agent hears the whisper: {}",
        rep["probes_heard"]
    );
    assert_eq!(
        heard("trunk-1", "1800"),
        0,
        "the caller does not: {}",
        rep["probes_heard"]
    );
}

/// A preview campaign for agent alice, who starts logged out; the console
/// has a script for the campaign and wrap-up codes.
const PREVIEW_SITE: &str = r#"
[ivr]
language = "en"
start = "bye"

[ivr.node.bye]
type = "hangup"

[ivr.node.callers]
type = "queue"
queue = "sales"
announce = []
on_overflow = "bye"

[acd.agent.alice]
number = "1001"
station = "desk-1"

[acd.queue.sales]
members = { alice = 0 }

[campaign.followup]
number = "4008001234"
mode = "preview"
start = "callers"
list = "followup.csv"
max_lines = 1
preview_ring = "30s"

[campaign.followup.window]
timezone = "Asia/Shanghai"
mon = ["00:00-24:00"]
tue = ["00:00-24:00"]
wed = ["00:00-24:00"]
thu = ["00:00-24:00"]
fri = ["00:00-24:00"]
sat = ["00:00-24:00"]
sun = ["00:00-24:00"]

[console]
listen = ["127.0.0.1:PORT"]

[console.wrap_codes]
"1" = "Not interested"
"2" = { label = "Renewed", lead = true }

[console.scripts]
followup = "Hello {name}, this is {agent} about your {plan} plan."
"#;

#[test]
fn an_agent_sees_a_preview_contact_on_the_desk_while_the_phone_rings_and_wraps_it_up() {
    let port = free_port();
    let site = Site::with_config(1, 1, &PREVIEW_SITE.replace("PORT", &port.to_string()));
    site.write("followup.csv", "number,name,plan\n13900000001,Wang,gold\n");
    // Alice lets the phone ring 8 s (time to read the contact), then
    // talks 6 s; the contact answers at once.
    let calls = site.write(
        "calls.toml",
        r#"
[[agent]]
name = "alice"
line = "desk-1"
answer_after = "8s"
talk = "6s"

[[callee]]
number = "13900000001"
answer_after = "1s"
hangup_after = "60s"
"#,
    );
    let otp = reset_admin(&site);
    let fp = fingerprint(&site);
    let mut d = Daemon::with_scenario(&site, &calls);
    listening(&d);
    let mut admin = Api::new(port, &fp);
    callbox_tests::console::own_admin(&mut admin, &otp);
    let put = admin.send(
        "POST",
        "/api/users",
        Some(r#"{"name":"alice","role":"agent","password":"1357"}"#),
    );
    assert_eq!(put.status, 200);

    let b = Browser::start("en-US");
    b.goto(&format!("https://127.0.0.1:{port}/"));
    b.fill("#login-name", "alice");
    b.fill("#login-password", "1357");
    b.click("#login-submit");
    b.wait_until(Duration::from_secs(10), "alice's desk, logged out", |b| {
        b.eval("return (document.querySelector('#my-state') || {dataset: {}}).dataset.state")
            == "logged_out"
    });
    // Do not disturb, then available: the campaign offers her the contact.
    b.click("#me-available");
    b.wait_until(Duration::from_secs(10), "alice available", |b| {
        b.eval("return document.querySelector('#my-state').dataset.state") == "available"
    });
    b.click("#me-dnd");
    b.wait_until(Duration::from_secs(10), "alice in do-not-disturb", |b| {
        cell(b, "#my-state").starts_with("Do not disturb")
    });
    let now = admin.send("GET", "/api/wallboard", None).json();
    let alice = &now["agents"][0];
    assert_eq!(alice["state"], "dnd", "{now:#}");
    b.click("#me-available");
    b.wait_until(
        Duration::from_secs(20),
        "the contact on the desk while the phone rings",
        |b| {
            cell(b, "#preview-state")
                == "Answer your phone to call this contact; let it ring to skip."
                && cell(b, "#pop-name") == "Wang"
        },
    );
    assert_eq!(cell(&b, "#pop-caller"), "13900000001");
    assert_eq!(cell(&b, "#pop-vars tr[data-var=\"plan\"] .value"), "gold");
    assert_eq!(
        cell(&b, "#pop-script"),
        "Hello Wang, this is alice about your gold plan."
    );
    assert!(cell(&b, "#preview h2").contains("followup"));
    // The supervisor's wallboard lists it as offered to alice.
    let board = admin.send("GET", "/api/wallboard", None).json();
    let offered = board["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "preview")
        .cloned()
        .unwrap_or_else(|| panic!("{board:#}"));
    assert_eq!(offered["state"], "offered");
    assert_eq!(offered["agent"], "alice");
    assert_eq!(offered["caller"], "13900000001");
    // Taken on the phone: talking, then the wrap-up form once it is over.
    b.wait_until(Duration::from_secs(20), "talking with the contact", |b| {
        cell(b, "#preview-state") == "Talking with this contact"
    });
    b.wait_until(Duration::from_secs(30), "the wrap-up form", |b| {
        b.text("#wrap-form").is_some() && b.text("#preview").is_none()
    });
    b.click("#wrap-code option[value=\"2\"]");
    b.fill("#wrap-notes", "renewed for two years");
    b.click("#wrap-submit");
    b.wait_until(Duration::from_secs(10), "the wrap-up saved", |b| {
        cell(b, "#wrap-status") == "Saved."
    });
    drop(b);
    assert!(d.stop().success(), "{}", d.log());

    let recs = site.records();
    assert_eq!(recs.len(), 1, "{recs:#?}");
    let r = &recs[0];
    assert_eq!(r["job"], "followup", "{r:#}");
    assert_eq!(r["agent"], "alice", "{r:#}");
    assert_eq!(r["wrap_code"], "2", "{r:#}");
    assert_eq!(r["notes"], "renewed for two years", "{r:#}");
    let contacts = site.table("campaign_contacts");
    assert_eq!(contacts[0]["wrap_code"], "2", "{contacts:#?}");
    assert_eq!(contacts[0]["state"], "done", "{contacts:#?}\n{}", d.log());
}
