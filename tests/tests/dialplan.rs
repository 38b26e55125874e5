//! Agents placing calls by the dial plan, end to end: the real daemon in
//! virtual time on simulated lines. An agent rings a colleague by
//! extension and they talk (probe tones each way), dials out after the
//! prefix over a trunk, is refused a class their phone may not call
//! (reorder, a `not_allowed` record), always reaches emergency numbers,
//! and hears "not in service" for a number the plan does not know. Every
//! attempt leaves a record.

use callbox_tests::{Site, assert_error_at, probes, text, write_tone_hz};
use serde_json::Value;

const SITE: &str = r#"
[ivr]
start = "bye"

[ivr.node.bye]
type = "hangup"

[ivr.node.sales-line]
type = "queue"
queue = "sales"
announce = []
on_overflow = "bye"

[acd.agent.alice]
number = "1001"
station = "desk-1"
logged_in = true

[acd.agent.bob]
number = "1002"
station = "desk-2"
logged_in = true

[acd.queue.sales]
members = { alice = 0, bob = 0 }

[dialplan]
outside_prefix = "9"
extensions = { "801" = "desk-3" }
access = { "8000" = "sales-line" }
allow_for = { alice = ["local", "mobile", "national", "tollfree", "international"] }

[recording]
mode = "always"
"#;

/// Two trunks, three desks, the site above; tones for each talker.
fn site() -> Site {
    let site = Site::new(2, 3, 200, "");
    let cfg = std::fs::read_to_string(site.config()).unwrap() + SITE;
    site.write("site.toml", &cfg);
    let dir = site.dir.path();
    write_tone_hz(&dir.join("alice.wav"), 600.0, 20_000);
    write_tone_hz(&dir.join("bob.wav"), 1400.0, 20_000);
    write_tone_hz(&dir.join("far.wav"), 1000.0, 20_000);
    site
}

fn record<'a>(recs: &'a [Value], dialled: &str) -> &'a Value {
    recs.iter()
        .find(|r| r["dialled"] == dialled)
        .unwrap_or_else(|| panic!("no record dialled {dialled}: {recs:#?}"))
}

#[test]
fn an_agent_rings_a_colleague_by_extension_and_they_talk_both_ways() {
    let site = site();
    let (rep, out) = site.run_heard(
        r#"
[[agent]]
name = "alice"
line = "desk-1"
dial = [{ at = "2s", digits = "1002", hold = "15s", then = [{ play = "alice.wav" }] }]

[[agent]]
name = "bob"
line = "desk-2"
answer_after = "2s"
talk = "8s"
script = [{ play = "bob.wav" }]
"#,
    );
    let recs = site.records();
    assert_eq!(recs.len(), 1, "{recs:#?}\n{}", text(&out));
    let r = record(&recs, "1002");
    assert_eq!(r["direction"], "internal", "{r:#}");
    assert_eq!(r["station"], "desk-1");
    assert_eq!(r["agent"], "alice");
    assert_eq!(r["caller"], "1001");
    assert_eq!(r["trunk_line"], Value::Null);
    assert_eq!(r["connected_to"], "desk-2");
    assert_eq!(r["disposition"], "answered");
    assert!(r["answered_ms"].as_i64().unwrap() >= 7000, "{r:#}");
    assert_eq!(r["recordings"].as_array().map(Vec::len), Some(1), "{r:#}");
    // Bob hears Alice's 600 Hz, Alice hears Bob's 1400 Hz, for seconds.
    assert!(probes(&rep, "desk-2", "600") > 200, "{rep:#}");
    assert!(probes(&rep, "desk-1", "1400") > 200, "{rep:#}");
    assert_eq!(
        probes(&rep, "desk-2", "1400"),
        0,
        "bob does not hear himself: {rep:#}"
    );
}

#[test]
fn an_agent_dials_out_after_the_prefix_and_the_callee_answers_over_a_trunk() {
    let site = site();
    let (rep, out) = site.run_heard(
        r#"
[[agent]]
name = "bob"
line = "desk-2"
dial = [{ at = "2s", digits = "913800138000", hold = "20s", then = [{ play = "bob.wav" }] }]

[[callee]]
number = "13800138000"
answer_after = "2s"
hangup_after = "8s"
script = [{ play = "far.wav" }]
"#,
    );
    let recs = site.records();
    assert_eq!(recs.len(), 1, "{recs:#?}\n{}", text(&out));
    let r = record(&recs, "13800138000");
    assert_eq!(r["direction"], "outbound", "{r:#}");
    assert_eq!(r["station"], "desk-2");
    assert_eq!(r["agent"], "bob");
    assert_eq!(r["trunk_line"], "trunk-1");
    assert_eq!(r["disposition"], "answered");
    assert_eq!(r["connected_to"], "trunk-1");
    assert_eq!(r["recordings"].as_array().map(Vec::len), Some(1), "{r:#}");
    assert!(probes(&rep, "desk-2", "1000") > 200, "{rep:#}");
    assert!(probes(&rep, "trunk-1", "1400") > 200, "{rep:#}");
}

#[test]
fn a_forbidden_class_gets_reorder_and_not_allowed_while_emergency_always_goes_out() {
    let site = site();
    let (_, out) = site.run_heard(
        r#"
# Bob may not call abroad; Alice may. Bob's 110 goes out without the prefix.
[[agent]]
name = "bob"
line = "desk-2"
dial = [
  { at = "2s", digits = "90044207946000#", hold = "5s" },
  { at = "30s", digits = "110", hold = "10s" },
]

[[agent]]
name = "alice"
line = "desk-1"
dial = [{ at = "2s", digits = "90044207946000#", hold = "10s" }]

# And a number the plan does not know.
[[agent]]
name = "carol"
line = "desk-3"
dial = [{ at = "2s", digits = "555#", hold = "6s" }]

[[callee]]
number = "0044207946000"
answer_after = "1s"
hangup_after = "3s"

[[callee]]
number = "110"
answer_after = "1s"
hangup_after = "3s"
"#,
    );
    let recs = site.records();
    assert_eq!(recs.len(), 4, "{recs:#?}\n{}", text(&out));
    let abroad: Vec<&Value> = recs
        .iter()
        .filter(|r| r["dialled"] == "0044207946000")
        .collect();
    let bob = abroad.iter().find(|r| r["agent"] == "bob").unwrap();
    assert_eq!(bob["direction"], "outbound", "{bob:#}");
    assert_eq!(bob["disposition"], "rejected");
    assert_eq!(bob["hangup_cause"], "not_allowed");
    assert_eq!(bob["outcome"], "not_allowed");
    assert_eq!(bob["trunk_line"], Value::Null);
    let alice = abroad.iter().find(|r| r["agent"] == "alice").unwrap();
    assert_eq!(alice["disposition"], "answered", "{alice:#}");
    let sos = record(&recs, "110");
    assert_eq!(sos["agent"], "bob");
    assert_eq!(sos["disposition"], "answered", "{sos:#}");
    assert!(sos["trunk_line"].as_str().unwrap().starts_with("trunk-"));
    let unknown = record(&recs, "555");
    assert_eq!(unknown["direction"], "internal");
    assert_eq!(unknown["hangup_cause"], "not_in_service", "{unknown:#}");
    assert_eq!(unknown["station"], "desk-3");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("number not allowed from this phone: reorder"),
        "{log}"
    );
}

#[test]
fn a_bad_dial_plan_is_named_at_its_place() {
    let site = site();
    let bad = site
        .config_text()
        .replace(
            "extensions = { \"801\" = \"desk-3\" }",
            "extensions = { \"801\" = \"desk-9\", \"1001\" = \"desk-3\", \"95\" = \"desk-3\" }",
        )
        .replace(
            "allow_for = { alice = [",
            "allow_for = { zed = [\"local\"], alice = [\"galactic\", ",
        )
        .replace("\"sales-line\" }", "\"sales-lane\" }");
    site.write("site.toml", &bad);
    let err = site.refused();
    for (needle, msg) in [
        ("extensions = ", "`desk-9` is not a station line"),
        ("extensions = ", "also agent `alice`'s number"),
        ("extensions = ", "starts with the outside prefix `9`"),
        (
            "allow_for = ",
            "`zed` is neither a station line nor an agent",
        ),
        ("allow_for = ", "`galactic` is not a class of numbers"),
        ("access = ", "`sales-lane` is not a node under [ivr.node]"),
    ] {
        assert_error_at(&bad, &err, needle, msg);
    }
}

#[test]
fn agents_on_their_own_call_are_offered_no_queue_call_until_it_ends() {
    let site = site();
    let cfg = std::fs::read_to_string(site.config())
        .unwrap()
        .replace("start = \"bye\"", "start = \"sales\"\n\n[ivr.node.sales]\ntype = \"queue\"\nannounce = []\non_overflow = \"bye\"");
    site.write("site.toml", &cfg);
    let (_, out) = site.run_heard(
        r#"
[[agent]]
name = "alice"
line = "desk-1"
answer_after = "1s"
dial = [{ at = "2s", digits = "1002", hold = "15s" }]

[[agent]]
name = "bob"
line = "desk-2"
answer_after = "2s"
talk = "8s"

# A queue caller arrives while the two talk (4 s to 12 s).
[[call]]
at = "5s"
from = "13900000001"
to = "4001"
line = "trunk-1"
patience = "60s"
hangup_after = "30s"
"#,
    );
    let recs = site.records();
    let caller = recs
        .iter()
        .find(|r| r["caller"] == "13900000001")
        .unwrap_or_else(|| panic!("{recs:#?}\n{}", text(&out)));
    assert_eq!(caller["queue_exit"], "connected", "{caller:#}");
    // Connected only once their call was over, at about 12 s.
    assert!(
        caller["queue_wait_ms"].as_i64().unwrap() >= 6000,
        "{caller:#}"
    );
    let log = site.table("queue_log");
    for agent in ["alice", "bob"] {
        let at = |event: &str| {
            log.iter()
                .position(|e| e["event"] == event && e["agent"] == agent)
                .unwrap_or_else(|| panic!("no {event} for {agent}: {log:#?}"))
        };
        let (from, to) = (at("PERSONAL"), at("PERSONAL_END"));
        assert!(from < to, "{log:#?}");
        // Busy with their own call, they were offered nothing.
        assert!(
            !log[from..to]
                .iter()
                .any(|e| e["event"] == "OFFER" && e["agent"] == agent),
            "{agent} offered a call during their own: {log:#?}"
        );
    }
    assert!(
        !log.iter()
            .any(|e| e["event"] == "RINGNOANSWER" || e["event"] == "PAUSE"),
        "{log:#?}"
    );
}

#[test]
fn an_access_number_puts_the_station_in_a_queue_and_an_agent_answers() {
    let site = site();
    write_tone_hz(&site.dir.path().join("carol.wav"), 1000.0, 20_000);
    let (rep, out) = site.run_heard(
        r#"
# Reception (no agent) calls the sales line; alice answers.
[[agent]]
name = "carol"
line = "desk-3"
dial = [{ at = "2s", digits = "8000", hold = "15s", then = [{ play = "carol.wav" }] }]

[[agent]]
name = "alice"
line = "desk-1"
answer_after = "1s"
talk = "6s"
script = [{ play = "alice.wav" }]

[[agent]]
name = "bob"
line = "desk-2"
answers = false
"#,
    );
    let recs = site.records();
    assert_eq!(recs.len(), 1, "{recs:#?}\n{}", text(&out));
    let r = record(&recs, "8000");
    assert_eq!(r["direction"], "internal", "{r:#}");
    assert_eq!(r["station"], "desk-3");
    assert_eq!(r["caller"], "desk-3");
    assert_eq!(r["queue"], "sales");
    assert_eq!(r["agent"], "alice");
    assert_eq!(r["connected_to"], "desk-1");
    assert_eq!(r["queue_exit"], "connected");
    assert!(probes(&rep, "desk-1", "1000") > 100, "{rep:#}");
    assert!(probes(&rep, "desk-3", "600") > 100, "{rep:#}");
}

#[test]
fn routes_send_numbers_to_their_trunks_present_caller_ids_and_fall_back() {
    let site = site();
    let cfg = std::fs::read_to_string(site.config()).unwrap().replace(
        "allow_for = { alice = [",
        "caller_id = \"4008001000\"\ncaller_id_for = { alice = \"4008001234\" }\nallow_for = { desk-3 = [\"international\"], alice = [",
    ) + r#"
[[dialplan.route]]
numbers = ["00."]
trunks = ["trunk-2"]
caller_id = "4008009999"
"#;
    site.write("site.toml", &cfg);
    let (rep, out) = site.run_heard(
        r#"
# Alice calls London on the route's trunk-2, presenting her own number.
[[agent]]
name = "alice"
line = "desk-1"
dial = [{ at = "2s", digits = "90044207946000#", hold = "25s" }]

# Bob calls a mobile on the default trunk-1.
[[agent]]
name = "bob"
line = "desk-2"
dial = [{ at = "2s", digits = "913800138000#", hold = "8s" }]

# Reception calls London while trunk-2 is busy: it falls back to trunk-1.
# Later a number nobody answers: congestion on both groups, then reorder.
[[agent]]
name = "carol"
line = "desk-3"
dial = [
  { at = "12s", digits = "90044207946001#", hold = "8s" },
  { at = "40s", digits = "90044207946002#", hold = "5s" },
]

[[callee]]
number = "0044207946000"
answer_after = "1s"
hangup_after = "20s"

[[callee]]
number = "13800138000"
answer_after = "1s"
hangup_after = "3s"

[[callee]]
number = "0044207946001"
answer_after = "1s"
hangup_after = "3s"
"#,
    );
    let recs = site.records();
    assert_eq!(recs.len(), 4, "{recs:#?}\n{}", text(&out));
    let london = record(&recs, "0044207946000");
    assert_eq!(london["trunk_line"], "trunk-2", "{london:#}");
    assert_eq!(london["disposition"], "answered");
    let mobile = record(&recs, "13800138000");
    assert_eq!(mobile["trunk_line"], "trunk-1", "{mobile:#}");
    let fallback = record(&recs, "0044207946001");
    assert_eq!(fallback["trunk_line"], "trunk-1", "{fallback:#}");
    assert_eq!(fallback["disposition"], "answered");
    assert_eq!(
        fallback["ivr_path"],
        serde_json::json!(["trunk-1=connected:trunk-1"])
    );
    let nobody = record(&recs, "0044207946002");
    assert_eq!(nobody["hangup_cause"], "congestion", "{nobody:#}");
    assert_eq!(
        nobody["ivr_path"],
        serde_json::json!(["trunk-2!congestion", "trunk-1!congestion"])
    );
    assert_eq!(
        rep["presented"],
        serde_json::json!({
            "0044207946000": ["4008001234"],
            "13800138000": ["4008001000"],
            "0044207946001": ["4008001000"],
            "0044207946002": ["4008009999", "4008001000"],
        }),
        "{rep:#}"
    );
}

#[test]
fn a_colleagues_call_ringing_one_phone_is_picked_up_at_another() {
    let site = site();
    let (rep, out) = site.run_heard(
        r#"
# Alice rings Bob (1002), who does not answer; at desk-3 someone keys the
# pickup code and Bob's number and takes the call.
[[agent]]
name = "alice"
line = "desk-1"
dial = [{ at = "2s", digits = "1002", hold = "20s", then = [{ play = "alice.wav" }] }]

[[agent]]
name = "bob"
line = "desk-2"
answers = false

[[agent]]
name = "carol"
line = "desk-3"
dial = [{ at = "8s", digits = "*81002", hold = "12s", then = [{ wait = "2s" }, { play = "far.wav" }] }]
"#,
    );
    let recs = site.records();
    let r = record(&recs, "1002");
    assert_eq!(r["disposition"], "answered", "{r:#}\n{}", text(&out));
    assert_eq!(r["connected_to"], "desk-3", "{r:#}");
    assert_eq!(r["agent"], "alice");
    assert!(
        probes(&rep, "desk-3", "600") > 200,
        "desk-3 hears alice: {rep:#}"
    );
    assert!(
        probes(&rep, "desk-1", "1000") > 200,
        "alice hears desk-3: {rep:#}"
    );
    assert!(
        text(&out).contains("picked up at another phone"),
        "{}",
        text(&out)
    );
}

#[test]
fn an_emergency_call_finding_every_trunk_busy_ends_a_callers_call_when_the_site_says_so() {
    const BUSY_SITE: &str = r#"
[ivr]
start = "wait"

[ivr.node.wait]
type = "menu"
greeting = "system:beep"
first_digit_timeout = "60s"
options = { "1" = "bye" }

[ivr.node.bye]
type = "hangup"

[acd.agent.alice]
number = "1001"
station = "desk-1"
logged_in = true

[dialplan]
emergency_preempt = true
"#;
    let scenario = r#"
# A caller holds the only trunk; Alice dials 110 while he is on it.
[[call]]
at = "1s"
from = "13900000009"
to = "4001"
hangup_after = "50s"

[[agent]]
name = "alice"
line = "desk-1"
dial = [{ at = "10s", digits = "110", hold = "10s" }]

[[callee]]
number = "110"
answer_after = "1s"
hangup_after = "3s"
"#;
    let site = Site::with_config(1, 1, BUSY_SITE);
    let (_, out) = site.run_heard(scenario);
    let recs = site.records();
    let caller = recs.iter().find(|r| r["caller"] == "13900000009").unwrap();
    assert_eq!(
        caller["hangup_cause"],
        "preempted",
        "{caller:#}\n{}",
        text(&out)
    );
    assert_eq!(caller["outcome"], "preempted");
    let sos = record(&recs, "110");
    assert_eq!(sos["disposition"], "answered", "{sos:#}\n{}", text(&out));
    assert_eq!(sos["trunk_line"], "trunk-1");
    assert_eq!(
        sos["ivr_path"],
        serde_json::json!(["trunk-1!preempted", "trunk-1=connected:trunk-1"])
    );

    // Without `emergency_preempt` the caller keeps the trunk and the
    // emergency call gets reorder.
    let site = Site::with_config(1, 1, &BUSY_SITE.replace("emergency_preempt = true\n", ""));
    let (_, out) = site.run_heard(scenario);
    let recs = site.records();
    let caller = recs.iter().find(|r| r["caller"] == "13900000009").unwrap();
    assert_ne!(caller["hangup_cause"], "preempted", "{caller:#}");
    let sos = record(&recs, "110");
    assert_ne!(sos["disposition"], "answered", "{sos:#}\n{}", text(&out));
}
