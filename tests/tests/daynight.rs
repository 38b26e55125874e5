//! The day/night switch and the numbers trunks answer for, end to end: the
//! real daemon in virtual time on simulated lines. The switch moves by the
//! `*28` code on a station, by the case's night-mode button and by the
//! business hours in `auto`; an IVR branch on `mode` routes each call by
//! it, and the position survives a restart. (By command and in telemetry:
//! tests/sync.rs.)

use callbox_tests::{Site, assert_error_at, by_caller, text};
use serde_json::Value;

/// Monday 2026-11-23, 10:00 in Shanghai: within business hours.
const OPEN: &str = "2026-11-23T10:00:00+08:00";
/// The same Monday, 20:00: after hours.
const CLOSED: &str = "2026-11-23T20:00:00+08:00";

const IVR: &str = r#"
[ivr]
language = "en"
timezone = "Asia/Shanghai"
start = "switch"
business_hours = "office"

[ivr.hours.office]
mon = ["09:00-18:00"]
tue = ["09:00-18:00"]

[ivr.node.switch]
type = "branch"
cases = [{ mode = "night", goto = "night" }]
default = "day"

[ivr.node.day]
type = "hangup"
outcome = "day"

[ivr.node.night]
type = "hangup"
outcome = "night"
"#;

/// Two trunks, one desk, the IVR above (after `[inbound]`, where the
/// harness puts extras, it opens its own table).
fn site() -> Site {
    Site::new(2, 1, 200, IVR)
}

/// Runs `scenario` starting at `start`; returns the outcome of each call
/// by caller number, in call order.
fn run(site: &Site, scenario: &str, start: &str) -> Vec<(String, String)> {
    let path = site.write("calls.toml", scenario);
    let out = site.run_fast_with(&path, &["--start-at", start]);
    assert!(out.status.success(), "{}", text(&out));
    let mut recs = site.records();
    recs.sort_by_key(|r| r["started_at"].as_str().unwrap_or_default().to_string());
    recs.iter()
        .map(|r: &Value| {
            (
                r["caller"].as_str().unwrap_or_default().to_string(),
                r["outcome"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn call(at: &str, from: &str) -> String {
    format!(
        "[[call]]\nat = \"{at}\"\nfrom = \"{from}\"\nline = \"trunk-1\"\nscript = [{{ wait = \"5s\" }}]\n\n"
    )
}

#[test]
fn the_code_and_the_button_move_the_switch_and_calls_follow_it() {
    let site = site();
    let mut sc = String::new();
    sc += &call("1s", "1001");
    // The agent keys *28: night.
    sc += "[[agent]]\nname = \"alice\"\nline = \"desk-1\"\ndial = [{ at = \"5s\", digits = \"*28\" }, { at = \"40s\", digits = \"*282\" }]\n\n";
    sc += &call("12s", "1002");
    // A short press of the button: day again.
    sc += "[[button]]\nat = \"18s\"\nbutton = \"night_mode\"\nheld = \"200ms\"\n\n";
    sc += &call("22s", "1003");
    // Held for 4 s: back to auto, which is day within business hours.
    sc += "[[button]]\nat = \"28s\"\nbutton = \"night_mode\"\nheld = \"4s\"\n\n";
    sc += &call("36s", "1004");
    // *282 at 40 s: night, whatever the hours.
    sc += &call("48s", "1005");
    let got = run(&site, &sc, OPEN);
    let want: Vec<(String, String)> = [
        ("1001", "day"),
        ("1002", "night"),
        ("1003", "day"),
        ("1004", "day"),
        ("1005", "night"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(
        std::fs::read_to_string(site.data().join("daynight")).unwrap(),
        "night\n"
    );

    // A restart keeps night, even within business hours.
    std::fs::remove_file(site.data().join("callbox.db")).ok();
    let got = run(&site, &call("1s", "2001"), OPEN);
    assert_eq!(
        got.last().unwrap(),
        &("2001".to_string(), "night".to_string())
    );
}

#[test]
fn auto_follows_the_business_hours_and_a_bad_code_changes_nothing() {
    let site = site();
    // After hours, in auto: night. *283 is no position: refused, still
    // auto.
    let mut sc = call("1s", "3001");
    sc += "[[agent]]\nname = \"alice\"\nline = \"desk-1\"\ndial = [{ at = \"5s\", digits = \"*283\" }]\n\n";
    sc += &call("12s", "3002");
    let got = run(&site, &sc, CLOSED);
    assert_eq!(
        got,
        [
            ("3001".to_string(), "night".to_string()),
            ("3002".to_string(), "night".to_string())
        ]
    );
    assert!(!site.data().join("daynight").exists());
    let got = run(&site, &call("1s", "3003"), OPEN);
    assert_eq!(
        got.last().unwrap(),
        &("3003".to_string(), "day".to_string())
    );
}

#[test]
fn a_mode_case_needs_business_hours_and_a_known_mode() {
    let site = site();
    let bad = format!(
        "{}\n",
        site.config_text()
            .replace("business_hours = \"office\"\n", "")
            .replace(
                "{ mode = \"night\", goto = \"night\" }",
                "{ mode = \"night\", goto = \"night\" }, { mode = \"dusk\", goto = \"day\" }"
            )
    );
    site.write("site.toml", &bad);
    let err = site.refused();
    for msg in [
        "name their schedule with `business_hours`",
        "unknown mode `dusk`; use \"day\" or \"night\"",
    ] {
        assert_error_at(&bad, &err, "cases = ", msg);
    }
}

#[test]
fn a_trunk_without_dialled_numbers_answers_for_its_number() {
    let site = Site::new(2, 0, 200, "");
    let cfg = site.config_text().replace(
        "id = \"trunk-1\"\nkind = \"trunk\"\n",
        "id = \"trunk-1\"\nkind = \"trunk\"\nnumber = \"4008001234\"\n",
    ) + r#"
[ivr]
language = "en"
start = "main"

[[ivr.route]]
dialled = ["4008001234"]
start = "hotline"

[ivr.node.main]
type = "hangup"
outcome = "main"

[ivr.node.hotline]
type = "hangup"
outcome = "hotline"
"#;
    site.write("site.toml", &cfg);
    // trunk-1 has a number; trunk-2 has none; a call that brings its own
    // dialled number keeps it.
    let sc = "[[call]]\nat = \"1s\"\nfrom = \"5001\"\nline = \"trunk-1\"\n\n\
              [[call]]\nat = \"2s\"\nfrom = \"5002\"\nline = \"trunk-2\"\n\n\
              [[call]]\nat = \"3s\"\nfrom = \"5003\"\nto = \"4009\"\nline = \"trunk-1\"\n";
    let path = site.write("calls.toml", sc);
    let out = site.run_fast(&path);
    assert!(out.status.success(), "{}", text(&out));
    let recs = site.records();
    let by = |c: &str| by_caller(&recs, c);
    assert_eq!(by("5001")["dialled"], "4008001234");
    assert_eq!(by("5001")["outcome"], "hotline");
    assert_eq!(by("5002")["dialled"], Value::Null);
    assert_eq!(by("5002")["outcome"], "main");
    assert_eq!(by("5003")["dialled"], "4009");
    assert_eq!(by("5003")["outcome"], "main");

    // A number on a station, or one that is not digits, is named at its place.
    let bad = cfg
        .replace("number = \"4008001234\"", "number = \"400-800\"")
        .replace(
            "id = \"trunk-2\"\nkind = \"trunk\"\n",
            "id = \"trunk-2\"\nkind = \"station\"\nnumber = \"4001\"\n",
        );
    site.write("site.toml", &bad);
    let err = site.refused();
    for (needle, msg) in [
        (
            "number = \"400-800\"",
            "number `400-800` must be 1-32 digits",
        ),
        ("number = \"4001\"", "a station has none"),
    ] {
        assert_error_at(&bad, &err, needle, msg);
    }
}

#[test]
fn an_exchange_sending_did_digits_after_the_answer_routes_each_call_by_them() {
    let site = Site::new(1, 0, 200, "");
    let cfg = site.config_text().replace(
        "id = \"trunk-1\"\nkind = \"trunk\"\n",
        "id = \"trunk-1\"\nkind = \"trunk\"\nnumber = \"4008001234\"\ndid_digits = 4\n",
    ) + r#"
[ivr]
language = "en"
start = "main"

[[ivr.route]]
dialled = ["6001"]
start = "sales"

[[ivr.route]]
dialled = ["4008001234"]
start = "hotline"

[ivr.node.main]
type = "hangup"
outcome = "main"

[ivr.node.sales]
type = "hangup"
outcome = "sales"

[ivr.node.hotline]
type = "hangup"
outcome = "hotline"
"#;
    site.write("site.toml", &cfg);
    // The exchange keys 6001 in band just after the answer; then 60 and
    // `#`; then nothing (the line's own number routes that one).
    let sc = r#"
[[call]]
at = "1s"
from = "5001"
script = [{ wait = "200ms" }, { press = "6001", via = "inband" }, { wait = "5s" }]

[[call]]
at = "15s"
from = "5002"
script = [{ wait = "200ms" }, { press = "60#", via = "inband" }, { wait = "5s" }]

[[call]]
at = "30s"
from = "5003"
hangup_after = "12s"
"#;
    let path = site.write("calls.toml", sc);
    let out = site.run_fast(&path);
    assert!(out.status.success(), "{}", text(&out));
    let recs = site.records();
    let by = |c: &str| by_caller(&recs, c);
    assert_eq!(by("5001")["dialled"], "6001", "{}", text(&out));
    assert_eq!(by("5001")["outcome"], "sales");
    assert_eq!(by("5002")["dialled"], "60");
    assert_eq!(by("5002")["outcome"], "main");
    assert_eq!(by("5003")["dialled"], "4008001234");
    assert_eq!(by("5003")["outcome"], "hotline");
    assert!(text(&out).contains("no DID digits from the exchange"));

    // On a station, or out of range, it is named at its place.
    let bad = cfg.replace("did_digits = 4", "did_digits = 40");
    site.write("site.toml", &bad);
    let err = site.refused();
    assert_error_at(
        &bad,
        &err,
        "did_digits = 40",
        "40 DID digits: an exchange sends 1 to 16",
    );
}
