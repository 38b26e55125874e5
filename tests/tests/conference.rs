//! Conference rooms end to end: five agents dial the room's number, key
//! its PIN and talk; each hears the other four (probe tones) and never
//! themself. A wrong PIN and a full room get their prompt and a record.

use callbox_tests::{Site, assert_error_at, probes, text, write_tone_hz};
use serde_json::Value;

const SITE: &str = r#"
[ivr]
start = "bye"

[[ivr.route]]
dialled = ["4850"]
start = "meet"

[ivr.node.bye]
type = "hangup"

[ivr.node.meet]
type = "conference"
room = "weekly"
on_refused = "bye"

[dialplan]

[conference.weekly]
number = "850"
pin = "2468"
max_parties = 5

[recording]
mode = "never"

[[recording.policy]]
dialled = "850"
mode = "always"
"#;

const HZ: [&str; 5] = ["600", "1000", "1400", "1800", "2200"];

fn site() -> Site {
    let site = Site::with_config(1, 6, SITE);
    for hz in HZ {
        write_tone_hz(
            &site.dir.path().join(format!("{hz}.wav")),
            hz.parse().unwrap(),
            30_000,
        );
    }
    site
}

#[test]
fn five_parties_each_hear_the_other_four_and_not_themselves() {
    let site = site();
    let mut sc = String::new();
    for (i, hz) in HZ.iter().enumerate() {
        // Each joins a second apart, keys the PIN during the prompt and
        // talks with their own tone until 30 s.
        sc += &format!(
            "[[agent]]\nname = \"p{i}\"\nline = \"desk-{}\"\ndial = [{{ at = \"{}s\", digits = \"850\", hold = \"{}s\", then = [{{ wait = \"1s\" }}, {{ press = \"2468#\" }}, {{ play = \"{hz}.wav\" }}] }}]\n\n",
            i + 1,
            2 + i,
            28 - i,
        );
    }
    // A sixth finds the room full.
    sc += "[[agent]]\nname = \"late\"\nline = \"desk-6\"\ndial = [{ at = \"20s\", digits = \"850\", hold = \"10s\", then = [{ wait = \"1s\" }, { press = \"2468#\" }] }]\n";
    let (rep, out) = site.run_heard(&sc);
    for (i, own) in HZ.iter().enumerate() {
        let line = format!("desk-{}", i + 1);
        let heard = &rep["probes_heard"][&line];
        let n = |hz: &str| probes(&rep, &line, hz);
        // The prompts' speech crosses a probe now and then (a few frames);
        // an echo of oneself would be as loud as the others, for seconds.
        assert!(n(own) < 40, "{line} heard itself: {heard}\n{}", text(&out));
        for other in HZ.iter().filter(|h| *h != own) {
            assert!(n(other) > 600, "{line} did not hear {other} Hz: {heard}");
        }
    }
    let recs = site.records();
    let in_room: Vec<&Value> = recs
        .iter()
        .filter(|r| r["outcome"] == "conference:weekly")
        .collect();
    assert_eq!(in_room.len(), 5, "{recs:#?}");
    for r in &in_room {
        assert_eq!(r["direction"], "internal");
        assert_eq!(r["dialled"], "850");
        assert_eq!(r["recordings"].as_array().map(Vec::len), Some(1), "{r:#}");
    }
    let late = recs.iter().find(|r| r["station"] == "desk-6").unwrap();
    assert_eq!(late["outcome"], "conference_full:weekly", "{late:#}");
}

#[test]
fn a_wrong_pin_three_times_is_let_go_and_mute_takes_a_voice_out() {
    let site = site();
    let sc = r#"
[[agent]]
name = "wrong"
line = "desk-1"
dial = [{ at = "2s", digits = "850", hold = "30s", then = [{ wait = "1s" }, { press = "1111#" }, { wait = "6s" }, { press = "2222#" }, { wait = "6s" }, { press = "3333#" }] }]

# Two talk; the first mutes itself with * after joining and stays muted.
[[agent]]
name = "a"
line = "desk-2"
dial = [{ at = "2s", digits = "850", hold = "20s", then = [{ wait = "1s" }, { press = "2468#" }, { wait = "5s" }, { press = "*" }, { play = "600.wav" }] }]

[[agent]]
name = "b"
line = "desk-3"
dial = [{ at = "3s", digits = "850", hold = "19s", then = [{ wait = "1s" }, { press = "2468#" }, { play = "1000.wav" }] }]
"#;
    let (rep, out) = site.run_heard(sc);
    let recs = site.records();
    let wrong = recs.iter().find(|r| r["station"] == "desk-1").unwrap();
    assert_eq!(
        wrong["outcome"],
        "conference_wrong_pin:weekly",
        "{wrong:#}\n{}",
        text(&out)
    );
    // a is muted before it speaks: b does not hear 600 Hz (but for a few
    // frames of the prompts' speech); a hears b.
    assert!(
        probes(&rep, "desk-3", "600") < 40,
        "{rep:#}\n{}",
        text(&out)
    );
    assert!(probes(&rep, "desk-2", "1000") > 400, "{rep:#}");
}

#[test]
fn an_outside_caller_joins_the_room_through_the_ivr() {
    let site = site();
    let (rep, out) = site.run_heard(
        r#"
[[call]]
at = "1s"
from = "13800000009"
to = "4850"
line = "trunk-1"
script = [{ wait = "1s" }, { press = "2468#" }, { play = "600.wav" }]
hangup_after = "25s"

[[agent]]
name = "host"
line = "desk-1"
dial = [{ at = "2s", digits = "850", hold = "22s", then = [{ wait = "1s" }, { press = "2468#" }, { play = "1400.wav" }] }]
"#,
    );
    assert!(
        probes(&rep, "desk-1", "600") > 300,
        "{rep:#}\n{}",
        text(&out)
    );
    assert!(probes(&rep, "trunk-1", "1400") > 300, "{rep:#}");
    let recs = site.records();
    let caller = recs.iter().find(|r| r["caller"] == "13800000009").unwrap();
    assert_eq!(caller["outcome"], "conference:weekly", "{caller:#}");
    assert_eq!(caller["direction"], "inbound");
}

#[test]
fn a_conference_node_naming_no_room_is_refused_at_its_place() {
    let site = site();
    let bad = site
        .config_text()
        .replace("room = \"weekly\"", "room = \"weekyl\"");
    site.write("site.toml", &bad);
    let err = site.refused();
    assert_error_at(
        &bad,
        &err,
        "weekyl",
        "`weekyl` is not a room under [conference]",
    );
}
