//! Whole scenarios through the real daemon in virtual time.

use callbox_tests::{RUN_LIMIT, Site, cmd, output_within, text};
use serde_json::Value;

fn str_of<'a>(r: &'a Value, k: &str) -> &'a str {
    r[k].as_str().unwrap_or("")
}

#[test]
fn a_thousand_calls_leave_exactly_a_thousand_records_with_correct_dispositions() {
    let site = Site::new(4, 1, 2000, "answer_after = \"1s\"");
    // Every 4 s: a caller who hears the whole greeting, one who hangs up
    // 500 ms into it, one who gives up while it still rings. Never more
    // than three trunks in use, so every call reaches the box.
    let scenario = site.write(
        "calls.toml",
        r#"
[[call]]
name = "listens"
at = "0s"
from = "100{n:4}"
to = "4000"
repeat = 500
every = "4s"

[[call]]
name = "hangs up"
at = "1s"
from = "200{n:4}"
to = "4001"
hangup_after = "500ms"
repeat = 300
every = "4s"

[[call]]
name = "gives up"
at = "2s"
from = "300{n:4}"
to = "4002"
patience = "500ms"
repeat = 200
every = "4s"
"#,
    );
    let out = site.run_fast(&scenario);
    assert!(out.status.success(), "{}", text(&out));

    let recs = site.records();
    assert_eq!(recs.len(), 1000);
    let mut ids: Vec<&str> = recs.iter().map(|r| str_of(r, "id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "ids are unique");

    let (mut listens, mut hangs_up, mut gives_up) = (0, 0, 0);
    for r in &recs {
        let caller = str_of(r, "caller");
        let ms = |k: &str| r[k].as_i64();
        assert_eq!(r["direction"], "inbound");
        assert!(str_of(r, "trunk_line").starts_with("trunk-"));
        assert!(r["end"].is_string(), "every call ended: {r}");
        match &caller[..3] {
            "100" => {
                listens += 1;
                assert_eq!(str_of(r, "dialled"), "4000");
                assert_eq!(str_of(r, "disposition"), "answered", "{r}");
                assert_eq!(str_of(r, "hangup_side"), "box", "{r}");
                assert_eq!(str_of(r, "hangup_cause"), "normal", "{r}");
                let talk = ms("answered_ms").unwrap();
                assert!(
                    (2000..=2100).contains(&talk),
                    "whole 2 s greeting played: {r}"
                );
                let total = ms("duration_ms").unwrap();
                assert!(
                    (3000..=3100).contains(&total),
                    "1 s ringing + greeting: {r}"
                );
            }
            "200" => {
                hangs_up += 1;
                assert_eq!(str_of(r, "disposition"), "answered", "{r}");
                assert_eq!(str_of(r, "hangup_side"), "caller", "{r}");
                let talk = ms("answered_ms").unwrap();
                assert!((480..=560).contains(&talk), "hung up 500 ms in: {r}");
            }
            "300" => {
                gives_up += 1;
                assert_eq!(str_of(r, "disposition"), "abandoned", "{r}");
                assert_eq!(str_of(r, "hangup_side"), "caller", "{r}");
                assert!(r["answer"].is_null(), "{r}");
                let total = ms("duration_ms").unwrap();
                assert!((480..=560).contains(&total), "gave up after 500 ms: {r}");
            }
            other => panic!("unexpected caller prefix {other}: {r}"),
        }
    }
    assert_eq!((listens, hangs_up, gives_up), (500, 300, 200));

    // Virtual wall time: the last call (listener #499) started 1996 s after the first.
    let first = recs.first().unwrap()["mono_start_ms"].as_i64().unwrap();
    let last = recs.last().unwrap()["mono_start_ms"].as_i64().unwrap();
    assert!((last - first - 1_996_000).abs() < 100, "{first} {last}");
}

#[test]
fn a_call_on_a_trunk_not_configured_for_inbound_is_rejected_and_recorded() {
    let site = Site::new(2, 0, 500, "lines = [\"trunk-1\"]");
    let scenario = site.write(
        "calls.toml",
        "[[call]]\nline = \"trunk-2\"\nfrom = \"555\"\n",
    );
    let out = site.run_fast(&scenario);
    assert!(out.status.success(), "{}", text(&out));
    let recs = site.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["disposition"], "rejected");
    assert_eq!(recs[0]["hangup_cause"], "busy");
    assert_eq!(recs[0]["trunk_line"], "trunk-2");
}

#[test]
fn the_demo_runs_its_built_in_scenario_and_prints_a_summary() {
    let data = tempfile::tempdir().unwrap();
    let mut demo = cmd();
    demo.args(["demo", "--fast", "--data"]).arg(data.path());
    let out = output_within(demo, RUN_LIMIT);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("call arrives"), "{}", text(&out));
    assert!(
        stderr.contains("answered; playing greeting"),
        "{}",
        text(&out)
    );
    assert!(stdout.contains("== summary =="), "{}", text(&out));
    let recorded = stdout
        .lines()
        .find_map(|l| l.strip_prefix("calls recorded"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .expect("a 'calls recorded' line");
    // Every scripted caller reaches the box (six trunks are enough).
    assert_eq!(recorded, 10, "{}", text(&out));
    // The IVR ran: outcomes and the sales caller's survey score.
    assert!(stdout.contains("IVR outcomes"), "{}", text(&out));
    assert!(stdout.contains("connected:alice"), "{}", text(&out));
    assert!(stdout.contains("queue sales"), "{}", text(&out));
    assert!(
        stdout.contains("survey scores        [5]"),
        "{}",
        text(&out)
    );
    assert!(stdout.contains("voicemail:sales"), "{}", text(&out));
    // The sales call's recording holds a conversation: the caller's
    // Mandarin on the left, agent alice on the right.
    let recs = callbox_tests::export(data.path(), &["recordings", "--json"]);
    let file = recs
        .iter()
        .find(|r| r["kind"] == "call" && r["state"] == "complete")
        .and_then(|r| r["file"].as_str())
        .expect("the sales call's recording");
    let path = data.path().join(file);
    for (channel, who) in [("1", "caller"), ("2", "agent")] {
        let o = std::process::Command::new("sox")
            .arg(&path)
            .args(["-n", "remix", channel, "stat"])
            .output()
            .expect("sox is installed (scripts/test-all installs it)");
        let stat = String::from_utf8_lossy(&o.stderr);
        let rms: f64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("RMS     amplitude:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no RMS in {stat}"));
        assert!(
            rms > 0.02,
            "the {who} is silent in the recording (RMS {rms}): {stat}"
        );
    }
}
