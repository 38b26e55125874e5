//! Voicemail boxes end to end on the sim backend: a caller leaves a message
//! for an agent through the IVR; the agent's phone is told a message waits
//! and its dial tone stutters; the agent keys the voicemail code and the
//! box's PIN, hears the message (its probe tone) and deletes or keeps it,
//! and the phone is told again. A queue's box shows on its members'
//! phones; a wrong PIN opens nothing. PINs are argon2id hashes made by
//! `callboxd hash-pin`, and every mistake in `[voicemail]` is named at its
//! place.

use std::io::Write;
use std::process::Stdio;

use callbox_tests::{Site, assert_error_at, cmd, probes, text, write_tone_hz};
use serde_json::Value;

/// `callboxd hash-pin` for `pin`.
fn hash(pin: &str) -> String {
    let mut child = cmd()
        .arg("hash-pin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{pin}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn site_text(alice_pin: &str, sales_pin: &str) -> String {
    format!(
        r#"
[ivr]
start = "main"

[ivr.node.main]
type = "menu"
greeting = "system:beep"
first_digit_timeout = "5s"
options = {{ "1" = "for-alice", "2" = "for-sales" }}

[ivr.node.for-alice]
type = "voicemail"
mailbox = "alice"
max_length = "20s"
next = "bye"

[ivr.node.for-sales]
type = "voicemail"
mailbox = "sales"
max_length = "20s"
next = "bye"

[ivr.node.bye]
type = "hangup"

[acd.agent.alice]
number = "1001"
station = "desk-1"
logged_in = true

[acd.agent.bob]
number = "1002"
station = "desk-2"
logged_in = true

[acd.queue.sales]
members = {{ alice = 0, bob = 0 }}

[dialplan]

[voicemail]

[voicemail.box.alice]
pin = "{alice_pin}"

[voicemail.box.sales]
pin = "{sales_pin}"
number = "500"
"#
    )
}

fn site() -> Site {
    let site = Site::with_config(1, 3, &site_text(&hash("2580"), &hash("1357")));
    write_tone_hz(&site.dir.path().join("message.wav"), 1400.0, 5_000);
    site
}

/// What station `line`'s phone was told of waiting messages, in order.
fn lamp(rep: &Value, line: &str) -> Vec<String> {
    strings(&rep["message_waiting"][line])
}

/// What `line`'s agent heard each time they picked up.
fn tones(rep: &Value, line: &str) -> Vec<String> {
    strings(&rep["dial_tones"][line])
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_message_lights_the_agents_phone_stutters_its_dial_tone_and_is_heard_and_deleted() {
    let site = site();
    let (rep, out) = site.run_heard(
        r#"
# A caller keys 1 (Alice's box) and leaves five seconds of 1400 Hz.
[[call]]
at = "1s"
from = "13900000001"
to = "4001"
script = [{ wait = "2s" }, { press = "1", via = "signal" }, { wait = "2s" }, { play = "message.wav" }]
hangup_after = "12s"

# Alice picks up at 20 s, listens to the dial tone for a second, keys the
# code and her PIN, hears the message and deletes it; at 70 s she picks up
# again.
[[agent]]
name = "alice"
line = "desk-1"
dial = [
  { at = "20s", digits = "*40", listen = "1s", hold = "2s", then = [{ wait = "3s" }, { press = "2580#", via = "signal" }, { wait = "20s" }, { press = "7", via = "signal" }, { wait = "3s" }] },
  { at = "70s", digits = "*74", listen = "1s" },
]

# Bob has no message: his dial tone is steady.
[[agent]]
name = "bob"
line = "desk-2"
dial = [{ at = "20s", digits = "*74", listen = "1s" }]
"#,
    );
    let log = text(&out);
    let vm = site.table("voicemail");
    assert_eq!(vm.len(), 1, "{vm:#?}\n{log}");
    assert_eq!(vm[0]["mailbox"], "alice");
    assert_eq!(vm[0]["caller"], "13900000001");
    assert_eq!(vm[0]["status"], "deleted", "{vm:#?}\n{log}");
    let alice = lamp(&rep, "desk-1");
    let lit = alice.iter().position(|s| s == "1/0");
    assert!(lit.is_some(), "alice's lamp: {alice:?}\n{log}");
    assert_eq!(alice.last().map(String::as_str), Some("0/0"), "{alice:?}");
    assert_eq!(tones(&rep, "desk-1"), ["stutter", "steady"], "{rep:#}");
    assert_eq!(tones(&rep, "desk-2"), ["steady"], "{rep:#}");
    assert!(!lamp(&rep, "desk-2").iter().any(|s| s != "0/0"), "{rep:#}");
    assert!(
        probes(&rep, "desk-1", "1400") > 100,
        "alice hears the message: {rep:#}"
    );
}

#[test]
fn a_queue_box_shows_on_every_member_and_a_wrong_pin_opens_nothing() {
    let site = site();
    let (rep, out) = site.run_heard(
        r#"
[[call]]
at = "1s"
from = "13900000002"
to = "4001"
script = [{ wait = "2s" }, { press = "2", via = "signal" }, { wait = "2s" }, { play = "message.wav" }]
hangup_after = "12s"

# Alice tries the sales box with a wrong PIN three times.
[[agent]]
name = "alice"
line = "desk-1"
dial = [
  { at = "20s", digits = "*40500", hold = "2s", then = [{ wait = "3s" }, { press = "1111#", via = "signal" }, { wait = "4s" }, { press = "2222#", via = "signal" }, { wait = "4s" }, { press = "3333#", via = "signal" }, { wait = "6s" }] },
]

# Bob opens it with the right one and keeps the message with 9.
[[agent]]
name = "bob"
line = "desk-2"
dial = [
  { at = "50s", digits = "*40500", hold = "2s", then = [{ wait = "3s" }, { press = "1357#", via = "signal" }, { wait = "20s" }, { press = "9", via = "signal" }, { wait = "3s" }] },
]
"#,
    );
    let log = text(&out);
    let vm = site.table("voicemail");
    assert_eq!(vm.len(), 1, "{vm:#?}\n{log}");
    assert_eq!(vm[0]["mailbox"], "sales");
    assert_eq!(vm[0]["status"], "saved", "{vm:#?}\n{log}");
    assert_eq!(
        log.matches("voicemail PIN wrong").count(),
        3,
        "three wrong tries logged:\n{log}"
    );
    for desk in ["desk-1", "desk-2"] {
        let l = lamp(&rep, desk);
        assert!(l.contains(&"1/0".to_string()), "{desk}: {l:?}\n{log}");
        assert_eq!(l.last().map(String::as_str), Some("0/1"), "{desk}: {l:?}");
    }
    // The spoken prompts touch 1400 Hz now and then; a message is hundreds
    // of frames of it.
    assert!(
        probes(&rep, "desk-1", "1400") < 30,
        "alice hears no message: {rep:#}"
    );
    assert!(
        probes(&rep, "desk-2", "1400") > 100,
        "bob hears it: {rep:#}"
    );
}

#[test]
fn a_colleague_who_does_not_answer_takes_a_message_in_their_box() {
    let site = site();
    write_tone_hz(&site.dir.path().join("bob.wav"), 1800.0, 4_000);
    let (rep, out) = site.run_heard(
        r#"
[[agent]]
name = "alice"
line = "desk-1"
answers = false

# Bob rings Alice at 1001; after 30 s of ringing he hears the prompt and
# the beep and speaks for 4 s.
[[agent]]
name = "bob"
line = "desk-2"
dial = [{ at = "2s", digits = "1001#", hold = "1s", then = [{ wait = "38s" }, { play = "bob.wav" }] }]
"#,
    );
    let log = text(&out);
    let vm = site.table("voicemail");
    assert_eq!(vm.len(), 1, "{vm:#?}\n{log}");
    assert_eq!(vm[0]["mailbox"], "alice");
    assert_eq!(vm[0]["caller"], "1002", "bob's number: {vm:#?}");
    assert!(vm[0]["duration_ms"].as_i64().unwrap() >= 4_000, "{vm:#?}");
    let recs = site.records();
    let call = recs.iter().find(|r| r["dialled"] == "1001").unwrap();
    assert_eq!(call["direction"], "internal");
    assert_eq!(call["outcome"], "voicemail:alice", "{call:#}");
    assert!(lamp(&rep, "desk-1").contains(&"1/0".to_string()), "{rep:#}");
    // The message holds bob's voice.
    let file = site.data().join(vm[0]["file"].as_str().unwrap());
    let samples = callbox_hal::wav::load_prompt(&file, 8000).unwrap();
    assert!(
        callbox_tests::tone_level(&samples, 1800.0) > 1000.0,
        "bob's 1800 Hz is in the message: {}",
        callbox_tests::tone_level(&samples, 1800.0)
    );
}

#[test]
fn voicemail_mistakes_are_named_at_their_place() {
    let good = hash("2580");
    let site = Site::with_config(1, 3, &site_text(&good, &good));
    let bad = site
        .config_text()
        .replace(
            &format!("pin = \"{good}\"\nnumber"),
            "pin = \"1357\"\nnumber",
        )
        .replace("[voicemail]\n", "[voicemail]\ncode = \"*7\"\n")
        .replace(
            "[voicemail.box.alice]\n",
            "[voicemail.box.alice]\nagents = [\"zed\"]\n",
        );
    site.write("site.toml", &bad);
    let err = site.refused();
    for (needle, msg) in [
        ("pin = \"1357\"", "a PIN in the clear"),
        ("code = ", "collides with the feature code `*71`"),
        ("agents = ", "`zed` is not an agent"),
    ] {
        assert_error_at(&bad, &err, needle, msg);
    }
}

#[test]
fn a_sip_phone_is_told_of_a_new_message_by_a_message_summary_notify() {
    use callbox_tests::sip::{
        Daemon, free_udp_port, require_peers, run_sipp, scenario, sip_site, sipp, sipp_one_call,
    };
    require_peers();
    let (sip_port, carrier, phone_port) = (free_udp_port(), free_udp_port(), free_udp_port());
    let site = sip_site(
        "sip",
        sip_port,
        20,
        &format!(
            r#"[[line]]
id = "carrier"
kind = "trunk"
sip = {{ peer = "127.0.0.1:{carrier}" }}

[[line]]
id = "desk-1"
kind = "station"
sip = {{ username = "agent1", password = "desk-pass-1" }}

"#
        ),
        &format!(
            r#"
[ivr]
language = "en"
timezone = "UTC"
start = "leave"

[ivr.node.leave]
type = "voicemail"
mailbox = "alice"
max_length = "20s"
next = "bye"

[ivr.node.bye]
type = "hangup"

[acd.agent.alice]
number = "1001"
station = "desk-1"
logged_in = true

[voicemail.box.alice]
pin = "{}"
"#,
            hash("2580")
        ),
    );
    let dir = site.dir.path();
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);
    // The phone registers and stays 15 s, answering NOTIFYs (-aa).
    let mut phone = sipp(dir);
    phone
        .arg("-sf")
        .arg(scenario("phone-register-mwi.xml"))
        .arg(format!("127.0.0.1:{sip_port}"))
        .args(["-s", "agent1", "-au", "agent1", "-ap", "desk-pass-1"])
        .args(["-i", "127.0.0.1", "-p", &phone_port.to_string()])
        .args(["-m", "1", "-d", "15000", "-aa", "-trace_msg"])
        .args(["-timeout", "60s", "-timeout_error"]);
    let phone = std::thread::spawn(move || run_sipp(phone, std::time::Duration::from_secs(90)));
    daemon.wait_log("phone registered", std::time::Duration::from_secs(20));
    // A carrier's caller talks for 7 s into alice's box.
    let call = run_sipp(
        sipp_one_call(dir, "carrier-call-talk.xml", sip_port, carrier),
        std::time::Duration::from_secs(60),
    );
    assert!(
        call.status.success(),
        "carrier: {}\n{}",
        text(&call),
        daemon.log()
    );
    daemon.wait_log("new=1 old=0", std::time::Duration::from_secs(20));
    let phone = phone.join().unwrap();
    let log = daemon.stop();
    assert!(phone.status.success(), "phone: {}\n{log}", text(&phone));
    let trace = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with("_messages.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .expect("sipp's message trace");
    let lit = trace
        .split("NOTIFY sip:agent1@")
        .skip(1)
        .find(|n| n.contains("Voice-Message: 1/0"))
        .unwrap_or_else(|| panic!("no NOTIFY with one new message:\n{trace}\n{log}"));
    assert!(lit.contains("Event: message-summary"), "{lit}");
    assert!(lit.contains("Messages-Waiting: yes"), "{lit}");
    assert!(
        lit.contains("Content-Type: application/simple-message-summary"),
        "{lit}"
    );
    assert_eq!(site.table("voicemail").len(), 1, "{log}");
}
