//! Call park end to end: an agent parks the queue caller with the park
//! code, hears the slot and is free; a colleague dials the slot and talks
//! to the caller (probe tones both ways); a call nobody takes rings the
//! agent who parked it again.

use callbox_tests::{Site, by_caller, ivr_path, probes, text, write_tone_hz};

const SITE: &str = r#"
[ivr]
start = "sales"

[ivr.node.sales]
type = "queue"
announce = []
on_overflow = "bye"

[ivr.node.bye]
type = "hangup"

[acd.agent.alice]
number = "1001"
station = "desk-1"
logged_in = true

[acd.queue.sales]
members = { alice = 0 }

[acd.park]
number = "700"
slots = 3
timeout = "20s"

[dialplan]
"#;

fn site() -> Site {
    let site = Site::with_config(1, 3, SITE);
    write_tone_hz(&site.dir.path().join("caller.wav"), 600.0, 60_000);
    write_tone_hz(&site.dir.path().join("bob.wav"), 1400.0, 30_000);
    site
}

#[test]
fn a_parked_caller_is_taken_from_another_station_by_dialling_the_slot() {
    let site = site();
    let (rep, out) = site.run_heard(
        r#"
[[call]]
at = "1s"
from = "13900000001"
to = "4001"
script = [{ play = "caller.wav" }]
hangup_after = "40s"

# Alice answers, talks 3 s and parks the caller with *6.
[[agent]]
name = "alice"
line = "desk-1"
answer_after = "1s"
script = [{ wait = "3s" }, { press = "*6", via = "signal" }]

# Bob takes the call from slot 701 at 15 s and talks.
[[agent]]
name = "bob"
line = "desk-2"
dial = [{ at = "15s", digits = "701", hold = "20s", then = [{ play = "bob.wav" }] }]
"#,
    );
    let recs = site.records();
    let caller = by_caller(&recs, "13900000001");
    let p = ivr_path(caller);
    assert!(p.contains(&"park=701".to_string()), "{p:?}\n{}", text(&out));
    assert!(p.contains(&"park=taken:desk-2".to_string()), "{p:?}");
    assert_eq!(caller["agent"], "alice", "{caller:#}");
    assert_eq!(caller["connected_to"], "desk-2");
    assert_eq!(caller["outcome"], "parked_taken:desk-2");
    assert!(
        probes(&rep, "desk-2", "600") > 300,
        "bob hears the caller: {rep:#}"
    );
    assert!(
        probes(&rep, "trunk-1", "1400") > 300,
        "the caller hears bob: {rep:#}"
    );
    // An empty slot is not in service.
    assert!(!recs.iter().any(|r| r["outcome"] == "park_empty"));
}

#[test]
fn a_parked_call_nobody_takes_rings_the_agent_again_and_an_empty_slot_is_refused() {
    let site = site();
    let (_, out) = site.run_heard(
        r#"
[[call]]
at = "1s"
from = "13900000002"
to = "4001"
hangup_after = "40s"

[[agent]]
name = "alice"
line = "desk-1"
answer_after = "1s"
script = [{ wait = "3s" }, { press = "*6", via = "signal" }]

# Carol tries slot 703, where nobody is parked.
[[agent]]
name = "carol"
line = "desk-3"
dial = [{ at = "10s", digits = "703", hold = "5s" }]
"#,
    );
    let recs = site.records();
    let caller = by_caller(&recs, "13900000002");
    let p = ivr_path(caller);
    assert!(
        p.contains(&"park!timeout".to_string()),
        "{p:?}\n{}",
        text(&out)
    );
    assert!(p.contains(&"park=returned:desk-1".to_string()), "{p:?}");
    let empty = recs.iter().find(|r| r["station"] == "desk-3").unwrap();
    assert_eq!(empty["outcome"], "park_empty", "{empty:#}");
    assert_eq!(empty["hangup_cause"], "not_in_service");
}
