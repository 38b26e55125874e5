//! Call recording end to end, in virtual time: which calls are recorded
//! and how (policy, formats, consent, pause, on demand), encryption to
//! headquarters' keys, retention, and a corrupt database. The files are
//! read back with hound and sox; what each channel carries is checked by
//! tone (the caller plays 600 Hz, the agent 1000 Hz).

use std::path::{Path, PathBuf};
use std::process::Command;

use callbox_tests::{Site, by_caller, callboxd, cmd, text, tone_level, write_tone_hz};
use serde_json::Value;

/// A site with 3 trunks, 3 desks (agents alice, bob, carol), queues sales
/// (dialled 4001), support (4002) and billing (4003), a 1400 Hz notice as
/// the consent prompt and the given `[recording]` section.
fn site(recording: &str) -> Site {
    let site = Site::new(3, 3, 0, "");
    write_tone_hz(&site.dir.path().join("prompts/notice.wav"), 1400.0, 1500);
    write_tone_hz(&site.dir.path().join("caller.wav"), 600.0, 30_000);
    write_tone_hz(&site.dir.path().join("agent.wav"), 1000.0, 30_000);
    let cfg = std::fs::read_to_string(site.config()).unwrap();
    let mut cfg = cfg.replace("greeting = \"greeting.wav\"\n", "");
    cfg += r##"
[ivr]
start = "sales"

[[ivr.route]]
dialled = ["4002"]
start = "support"

[[ivr.route]]
dialled = ["4003"]
start = "billing"

[ivr.node.sales]
type = "queue"
announce = []
on_overflow = "bye"

[ivr.node.support]
type = "queue"
announce = []
on_overflow = "bye"

[ivr.node.billing]
type = "queue"
announce = []
on_overflow = "bye"

[ivr.node.bye]
type = "hangup"

[[ivr.route]]
dialled = ["4004"]
start = "direct"

[ivr.node.direct]
type = "transfer"
station = "desk-3"
announce = []
on_no_answer = "bye"

[acd.agent.alice]
station = "desk-1"
logged_in = true

[acd.agent.bob]
station = "desk-2"
logged_in = true

[acd.agent.carol]
station = "desk-3"
logged_in = true

[acd.queue.sales]
members = { alice = 0 }

[acd.queue.support]
members = { bob = 0 }

[acd.queue.billing]
members = { carol = 0 }

"##;
    cfg += recording;
    site.write("site.toml", &cfg);
    site
}

/// A caller dialling `to` at `at` seconds who talks (600 Hz) and hangs up
/// `hangup_s` after the box answers.
fn caller(at: u32, from: &str, to: &str, hangup_s: u32) -> String {
    format!(
        "[[call]]\nat = \"{at}s\"\nfrom = \"{from}\"\nto = \"{to}\"\nhangup_after = \"{hangup_s}s\"\nscript = [ {{ play = \"caller.wav\" }} ]\n\n"
    )
}

/// Agent at desk `n` who answers after 1 s, talks (1000 Hz) and does
/// `then` afterwards (in the same script).
fn agent(name: &str, n: u32, then: &str) -> String {
    format!(
        "[[agent]]\nname = \"{name}\"\nline = \"desk-{n}\"\nanswer_after = \"1s\"\nscript = [ {then} ]\n\n"
    )
}

fn run(site: &Site, scenario: &str) -> Vec<Value> {
    run_with(site, scenario, &[])
}

fn run_with(site: &Site, scenario: &str, extra: &[&str]) -> Vec<Value> {
    let path = site.write("calls.toml", scenario);
    let out = site.run_fast_with(&path, extra);
    assert!(out.status.success(), "{}", text(&out));
    site.records()
}

fn recording_of<'a>(recs: &[Value], rows: &'a [Value], from: &str) -> Option<&'a Value> {
    let call = by_caller(recs, from);
    let ids = call["recordings"].as_array().unwrap();
    assert!(ids.len() <= 1, "{call:#}");
    let id = ids.first()?;
    Some(
        rows.iter()
            .find(|r| &r["id"] == id)
            .expect("the row a record points to"),
    )
}

/// `sox --i` on a file: (encoding, channels, seconds).
fn sox_info(path: &Path) -> (String, u32, f64) {
    let q = |flag: &str| {
        let out = Command::new("sox")
            .args(["--i", flag])
            .arg(path)
            .output()
            .expect("sox is installed (scripts/test-all installs it)");
        assert!(
            out.status.success(),
            "sox --i {flag} {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    (q("-e"), q("-c").parse().unwrap(), q("-D").parse().unwrap())
}

/// Left and right channels of a 16-bit stereo WAV.
fn stereo(path: &Path) -> (Vec<i16>, Vec<i16>) {
    let mut r = hound::WavReader::open(path).expect("hound opens the recording");
    let spec = r.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16)
    );
    let all: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
    (
        all.iter().step_by(2).copied().collect(),
        all.iter().skip(1).step_by(2).copied().collect(),
    )
}

fn file(site: &Site, row: &Value) -> PathBuf {
    site.data().join(row["file"].as_str().unwrap())
}

fn ms(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not a number: {v}"))
}

const POLICIES: &str = r##"
[recording]
mode = "never"
consent_prompt = "notice.wav"

[[recording.policy]]
agent = "carol"
mode = "always"
format = "alaw"

[[recording.policy]]
queue = "sales"
mode = "always"
format = "pcm16"
consent = true

[[recording.policy]]
queue = "support"
mode = "always"
format = "ulaw"

[[recording.policy]]
queue = "billing"
mode = "never"
"##;

#[test]
fn policies_choose_what_is_recorded_and_how_with_the_caller_left_and_the_agent_right() {
    let site = site(POLICIES);
    let mut sc = caller(0, "1001", "4001", 12);
    sc += &caller(0, "1002", "4002", 12);
    sc += &caller(0, "1003", "4003", 12);
    sc += &agent("alice", 1, "{ play = \"agent.wav\" }");
    sc += &agent("bob", 2, "{ play = \"agent.wav\" }");
    sc += &agent("carol", 3, "{ play = \"agent.wav\" }");
    let recs = run(&site, &sc);
    let rows = site.recordings();
    assert_eq!(rows.len(), 3, "{rows:#?}");

    // sales: 16-bit PCM, stereo, from the agent's answer to the hang-up.
    let sales = recording_of(&recs, &rows, "1001").expect("sales is recorded");
    assert_eq!(sales["format"], "pcm16");
    assert_eq!(sales["state"], "complete");
    assert_eq!(sales["channels"], 2);
    let (l, r) = stereo(&file(&site, sales));
    assert_eq!(l.len() as i64 / 8, ms(&sales["duration_ms"]));
    // The caller hears a 1.5 s notice and rings the agent for 1 s; the
    // call lasts 12 s from the box's answer: about 9.5 s of conversation.
    assert!(
        (9000..=10_000).contains(&ms(&sales["duration_ms"])),
        "{sales:#}"
    );
    let mid = |x: &[i16]| x[8000..16000].to_vec();
    assert!(
        tone_level(&mid(&l), 600.0) > 5000.0 && tone_level(&mid(&l), 1000.0) < 50.0,
        "left is the caller"
    );
    assert!(
        tone_level(&mid(&r), 1000.0) > 5000.0 && tone_level(&mid(&r), 600.0) < 50.0,
        "right is the agent"
    );
    let (enc, ch, secs) = sox_info(&file(&site, sales));
    assert_eq!((enc.as_str(), ch), ("Signed Integer PCM", 2));
    assert!((secs * 1000.0 - ms(&sales["duration_ms"]) as f64).abs() < 1.0);

    // support: µ-law; billing: a never policy; carol's agent policy wins
    // over billing's queue policy only where it comes first — here it does.
    let support = recording_of(&recs, &rows, "1002").expect("support is recorded");
    assert_eq!(support["format"], "ulaw");
    assert_eq!(sox_info(&file(&site, support)).0, "u-law");
    let billing = recording_of(&recs, &rows, "1003").expect("carol's calls are recorded");
    assert_eq!(billing["format"], "alaw");
    let (enc, ch, secs) = sox_info(&file(&site, billing));
    assert_eq!((enc.as_str(), ch), ("A-law", 2));
    // No notice on billing: the conversation starts a second after answer.
    assert!((secs - 11.0).abs() < 0.5, "{secs}");

    // The file is where the row says, its checksum is the file's.
    for row in &rows {
        let bytes = std::fs::read(file(&site, row)).unwrap();
        assert_eq!(row["size"], bytes.len());
        let sum = Command::new("sha256sum")
            .arg(file(&site, row))
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&sum.stdout).starts_with(row["sha256"].as_str().unwrap()));
    }
    // Nothing left open.
    let open = site.data().join("recordings/.open");
    assert_eq!(std::fs::read_dir(open).unwrap().count(), 0);

    // The call's event log tells the story.
    let id = by_caller(&recs, "1001")["id"].as_str().unwrap().to_string();
    let out = cmd()
        .args(["records", "--json", "--call", &id, "--data"])
        .arg(site.data())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let call: Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    let events: Vec<&str> = call["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    // In order where one task writes them (the ACD offers the caller
    // while it joins, so `offered` and `queued` share a moment); the
    // recording events come from the writer thread, so only their
    // presence is checked.
    let pos = |e: &str| {
        events
            .iter()
            .position(|x| *x == e)
            .unwrap_or_else(|| panic!("{e} missing from {events:?}"))
    };
    assert!(
        pos("answered") < pos("queued") && pos("queued") < pos("bridged"),
        "{events:?}"
    );
    assert!(
        pos("offered") < pos("bridged") && pos("bridged") < pos("hangup"),
        "{events:?}"
    );
    assert!(events.contains(&"recording_started"), "{events:?}");
    assert!(
        events.contains(&"recording_stopped") && events.contains(&"hangup"),
        "{events:?}"
    );
}

#[test]
fn the_consent_notice_plays_once_before_the_caller_waits() {
    let site = site(POLICIES);
    let mut sc = caller(0, "1001", "4001", 8);
    sc += &caller(0, "1002", "4002", 8);
    sc += &agent("alice", 1, "{ wait = \"1s\" }");
    sc += &agent("bob", 2, "{ wait = \"1s\" }");
    let (rep, _) = site.run_heard(&sc);
    let recs = site.records();
    // Who heard the 1400 Hz notice: the sales caller, for its 1.5 s (75
    // frames), once; the support caller (no consent) never.
    let line_of = |from: &str| {
        by_caller(&recs, from)["trunk_line"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let heard = |line: &str| rep["probes_heard"][line]["1400"].as_u64().unwrap_or(0);
    let sales = heard(&line_of("1001"));
    assert!(
        (70..=76).contains(&sales),
        "sales caller heard {sales} notice frames: {rep:#}"
    );
    assert_eq!(heard(&line_of("1002")), 0, "{rep:#}");
    let path_of = |from: &str| by_caller(&recs, from)["ivr_path"].to_string();
    assert!(path_of("1001").contains("recording_notice"));
    assert!(!path_of("1002").contains("recording_notice"));
}

#[test]
fn pausing_replaces_the_audio_with_silence_and_notes_the_span() {
    let site = site(POLICIES);
    // Alice talks, keys the pause code at 3 s (done 2 s after the last
    // key), keys it again 4 s later.
    let mut sc = caller(0, "1001", "4001", 16);
    sc += &agent(
        "alice",
        1,
        "{ wait = \"3s\" }, { press = \"*4\", via = \"signal\" }, { wait = \"4s\" }, { press = \"*4\", via = \"signal\" }",
    );
    let recs = run(&site, &sc);
    let rows = site.recordings();
    let row = recording_of(&recs, &rows, "1001").unwrap();
    let pauses = row["pauses"].as_array().unwrap();
    assert_eq!(pauses.len(), 1, "{row:#}");
    let (from, to) = (ms(&pauses[0][0]), ms(&pauses[0][1]));
    assert_eq!(ms(&row["paused_ms"]), to - from);
    // The code takes effect 2 s after its last key: paused ≈ 3.2+2 s in,
    // resumed ≈ 4.2 s later.
    assert!((5000..=5600).contains(&from), "{row:#}");
    assert!((4000..=4500).contains(&(to - from)), "{row:#}");
    let (l, _) = stereo(&file(&site, row));
    let span = |a: i64, b: i64| &l[(a * 8) as usize..(b * 8) as usize];
    // Silent where paused (both channels are zero; the caller's tone is
    // strong right before and after).
    assert!(
        span(from + 20, to - 20).iter().all(|&s| s == 0),
        "audio inside the paused span"
    );
    assert!(tone_level(span(from - 1000, from - 20), 600.0) > 5000.0);
    assert!(tone_level(span(to + 20, to + 1000), 600.0) > 5000.0);
    let out = cmd()
        .args([
            "records",
            "--json",
            "--call",
            by_caller(&recs, "1001")["id"].as_str().unwrap(),
            "--data",
        ])
        .arg(site.data())
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("recording_paused") && s.contains("recording_resumed"),
        "{s}"
    );
}

#[test]
fn on_demand_recording_starts_and_stops_with_the_agents_code() {
    let site = site(
        r##"
[recording]
mode = "on_demand"
format = "alaw"
record_code = "*1"
"##,
    );
    // Alice starts recording at 2 s (effective 2 s later) and stops it 3 s
    // after that; bob never asks.
    let mut sc = caller(0, "1001", "4001", 14);
    sc += &caller(0, "1002", "4002", 14);
    sc += &agent(
        "alice",
        1,
        "{ wait = \"2s\" }, { press = \"*1\", via = \"signal\" }, { wait = \"3s\" }, { press = \"*1\", via = \"signal\" }",
    );
    sc += &agent("bob", 2, "{ wait = \"2s\" }");
    let recs = run(&site, &sc);
    let rows = site.recordings();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let row = recording_of(&recs, &rows, "1001").unwrap();
    // From the code taking effect to the second one: about 3.2 s.
    assert!((3000..=3600).contains(&ms(&row["duration_ms"])), "{row:#}");
    assert!(recording_of(&recs, &rows, "1002").is_none());
}

fn hq() -> Command {
    Command::new(callboxd().with_file_name("callbox-hq"))
}

#[test]
fn encrypted_recordings_only_open_with_headquarters_identity() {
    let keys = tempfile::tempdir().unwrap();
    let identity = keys.path().join("hq.key");
    let out = hq()
        .args(["keygen", "--out"])
        .arg(&identity)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(public.starts_with("age1"), "{public}");
    let site = site(&format!(
        "[recording]\nmode = \"always\"\nformat = \"pcm16\"\nrecipients = [\"{public}\"]\n"
    ));
    let mut sc = caller(0, "1001", "4001", 8);
    sc += &agent("alice", 1, "{ play = \"agent.wav\" }");
    let recs = run(&site, &sc);
    let rows = site.recordings();
    let row = recording_of(&recs, &rows, "1001").unwrap();
    assert_eq!(row["encrypted"], true);
    let sealed = file(&site, row);
    assert!(sealed.to_str().unwrap().ends_with(".wav.age"), "{row:#}");
    let bytes = std::fs::read(&sealed).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1"));
    assert!(
        !bytes.windows(4).any(|w| w == b"RIFF"),
        "plaintext WAV inside"
    );
    // No plaintext anywhere in the data directory.
    let out = Command::new("find")
        .arg(site.data())
        .args(["-name", "*.wav"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "plain recordings left"
    );

    // Headquarters decrypts to a playable stereo WAV of the conversation.
    let plain = keys.path().join("call.wav");
    let out = hq()
        .args(["decrypt", "--identity"])
        .arg(&identity)
        .arg(&sealed)
        .arg("-o")
        .arg(&plain)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (l, r) = stereo(&plain);
    assert_eq!(l.len() as i64 / 8, ms(&row["duration_ms"]));
    assert!(tone_level(&r[8000..16000], 1000.0) > 5000.0);

    // Another identity cannot.
    let other = keys.path().join("other.key");
    assert!(
        hq().args(["keygen", "--out"])
            .arg(&other)
            .output()
            .unwrap()
            .status
            .success()
    );
    let out = hq()
        .args(["decrypt", "--identity"])
        .arg(&other)
        .arg(&sealed)
        .arg("-o")
        .arg(keys.path().join("nope.wav"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!keys.path().join("nope.wav").exists());
}

#[test]
fn retention_deletes_old_recordings_then_the_oldest_over_quota_and_keeps_their_rows() {
    let base = "[recording]\nmode = \"always\"\nformat = \"alaw\"\n";
    let site = site(base);
    // Four recorded calls on 1 January, one a day apart... in one run, four
    // calls 10 minutes apart.
    let mut sc = String::new();
    for i in 0..4 {
        sc += &caller(i * 600, &format!("100{i}"), "4001", 6);
    }
    sc += &agent("alice", 1, "{ play = \"agent.wav\" }");
    run_with(&site, &sc, &["--start-at", "2026-01-01T10:00:00Z"]);
    let rows = site.recordings();
    assert_eq!(rows.len(), 4);
    let size = ms(&rows[0]["size"]);

    // A month and a half later, keep = 30 days: every January recording
    // goes at start-up; a new call is recorded and kept.
    let cfg = std::fs::read_to_string(site.config()).unwrap();
    site.write(
        "site.toml",
        &cfg.replace(base, &format!("{base}keep = \"30d\"\n")),
    );
    let recs = run_with(
        &site,
        &(caller(0, "2001", "4001", 6) + &agent("alice", 1, "{ play = \"agent.wav\" }")),
        &["--start-at", "2026-02-15T10:00:00Z"],
    );
    let rows = site.recordings();
    assert_eq!(rows.len(), 5, "{rows:#?}");
    for row in &rows[..4] {
        assert_eq!(row["state"], "deleted", "{row:#}");
        assert!(
            row["deleted_reason"]
                .as_str()
                .unwrap()
                .starts_with("older than"),
            "{row:#}"
        );
        assert!(!file(&site, row).exists());
    }
    let kept = recording_of(&recs, &rows, "2001").unwrap();
    assert_eq!(kept["state"], "complete");
    assert!(file(&site, kept).exists());

    // A quota of two and a half recordings: after three more calls the
    // oldest ones go until the rest fit.
    site.write(
        "site.toml",
        &cfg.replace(base, &format!("{base}quota = \"{}\"\n", size * 5 / 2)),
    );
    let mut sc = String::new();
    for i in 0..3 {
        sc += &caller(i * 20, &format!("300{i}"), "4001", 6);
    }
    // Quota is applied hourly; the run lasts past the first hour's check.
    sc += "[[call]]\nat = \"65m\"\nfrom = \"3999\"\nto = \"4001\"\nhangup_after = \"1s\"\n";
    sc += &agent("alice", 1, "{ play = \"agent.wav\" }");
    let path = site.write("calls.toml", &sc);
    let out = site.run_fast_with(&path, &["--start-at", "2026-02-16T10:00:00Z"]);
    assert!(out.status.success(), "{}", text(&out));
    let rows = site.recordings();
    let live: Vec<&Value> = rows.iter().filter(|r| r["state"] != "deleted").collect();
    let total: i64 = live.iter().map(|r| ms(&r["size"])).sum();
    assert!(total <= size * 5 / 2, "{total} over quota: {rows:#?}");
    assert!(live.len() >= 2, "{rows:#?}");
    // Oldest first: the survivors are the newest.
    let newest: Vec<&Value> = rows.iter().rev().take(live.len()).collect();
    for r in &newest {
        assert_ne!(
            r["state"], "deleted",
            "a newer recording was deleted: {rows:#?}"
        );
    }
    let by_quota = rows
        .iter()
        .filter(|r| {
            r["deleted_reason"]
                .as_str()
                .is_some_and(|s| s.contains("quota"))
        })
        .count();
    assert!(by_quota >= 1, "{rows:#?}");
}

#[test]
fn a_corrupt_database_is_moved_aside_and_the_box_goes_on() {
    let site = site(POLICIES);
    std::fs::create_dir_all(site.data()).unwrap();
    let garbage: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(site.data().join("callbox.db"), &garbage).unwrap();
    let mut sc = caller(0, "1001", "4001", 6);
    sc += &agent("alice", 1, "{ wait = \"1s\" }");
    let path = site.write("calls.toml", &sc);
    let out = site.run_fast(&path);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("moved aside") || text(&out).contains("corrupt"),
        "{}",
        text(&out)
    );
    let aside: Vec<PathBuf> = std::fs::read_dir(site.data())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("callbox.db.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        garbage,
        "the bad file is kept as it was"
    );
    let recs = site.records();
    assert_eq!(recs.len(), 1);
    let alarms = site.table("alarms");
    assert!(
        alarms.iter().any(|a| a["code"] == "database_corrupt"
            && a["message"]
                .as_str()
                .unwrap()
                .contains(aside[0].file_name().unwrap().to_str().unwrap())),
        "{alarms:#?}"
    );
}

#[test]
fn recording_config_mistakes_are_reported_with_their_place() {
    let site = site(
        r##"
[recording]
mode = "sometimes"
format = "mp3"
"##,
    );
    let check = |site: &Site| {
        let out = cmd()
            .arg("check-config")
            .arg(site.config())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = check(&site);
    assert!(e.contains("site.toml:") && e.contains("mp3"), "{e}");
    let site = self::site(
        r##"
[recording]
mode = "sometimes"
recipients = ["age1notakey"]
quota = "lots"
pause_code = "*1"

[[recording.policy]]
queue = "nope"
mode = "always"
consent = true
"##,
    );
    let e = check(&site);
    for want in [
        "unknown recording mode `sometimes`",
        "recipient 1",
        "`lots` is not a size",
        "the pause code `*1` is also the record code",
        "`nope` is not a queue",
        "consent needs `recording.consent_prompt`",
    ] {
        assert!(e.contains(want), "{want} missing from:\n{e}");
    }
    // Every message has its place in the file.
    for line in e
        .lines()
        .filter(|l| l.contains("recording") || l.contains("recipient") || l.contains("lots"))
    {
        assert!(line.contains("site.toml:"), "{line}");
    }
}

#[test]
fn files_left_open_are_repaired_emptied_or_moved_aside_at_start_up() {
    let site = site("[recording]\nmode = \"always\"\nformat = \"pcm16\"\n");
    let open = site.data().join("recordings/.open");
    std::fs::create_dir_all(&open).unwrap();
    // A stereo PCM16 recording whose header was last written with no
    // audio, followed by 3.5 s of audio and a stray byte: what a power cut
    // leaves.
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&36u32.to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&32000u32.to_le_bytes());
    wav.extend_from_slice(&4u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&0u32.to_le_bytes());
    for i in 0..28_000u32 {
        let s = ((i as f64 * std::f64::consts::TAU * 600.0 / 8000.0).sin() * 8000.0) as i16;
        wav.extend_from_slice(&s.to_le_bytes());
        wav.extend_from_slice(&0i16.to_le_bytes());
    }
    wav.push(7);
    let rec = "01a20000-0000-7000-8000-000000000001";
    let call = "01a20000-0000-7000-8000-0000000000c1";
    std::fs::write(open.join(format!("{rec}.{call}.call.wav")), &wav).unwrap();
    // Killed right after creating the file: half a header, no audio.
    std::fs::write(
        open.join(format!(
            "01a20000-0000-7000-8000-000000000002.{call}.call.wav"
        )),
        &wav[..20],
    )
    .unwrap();
    // Something that is not a WAV at all.
    let junk = b"this is not audio, but someone may want it".to_vec();
    let junk_name = format!("01a20000-0000-7000-8000-000000000003.{call}.voicemail.wav");
    std::fs::write(open.join(&junk_name), &junk).unwrap();

    let path = site.write("calls.toml", "");
    let out = site.run_fast(&path);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("repaired=1 empty=1 damaged=1"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_dir(&open).unwrap().count(),
        0,
        "left in .open"
    );

    let rows = site.recordings();
    let row = rows
        .iter()
        .find(|r| r["id"] == rec)
        .expect("the repaired recording has a row");
    assert_eq!(row["state"], "interrupted");
    assert_eq!(row["call_id"], call);
    assert_eq!(ms(&row["duration_ms"]), 3500);
    let (l, _) = stereo(&file(&site, row));
    assert_eq!(l.len(), 28_000);
    assert!(tone_level(&l[8000..16000], 600.0) > 5000.0);
    let (_, ch, secs) = sox_info(&file(&site, row));
    assert_eq!((ch, secs), (2, 3.5));
    let damaged = rows
        .iter()
        .find(|r| r["state"] == "failed")
        .expect("a row for the junk");
    assert_eq!(
        std::fs::read(file(&site, damaged)).unwrap(),
        junk,
        "kept byte for byte"
    );
    assert!(
        damaged["error"]
            .as_str()
            .unwrap()
            .contains("not a recording WAV file"),
        "{damaged:#}"
    );
    assert_eq!(rows.len(), 2, "the empty one leaves no row: {rows:#?}");

    // Retention never touches what was moved aside: a quota smaller than
    // anything deletes the repaired recording, not the junk.
    let cfg = std::fs::read_to_string(site.config()).unwrap();
    site.write(
        "site.toml",
        &cfg.replace(
            "format = \"pcm16\"\n",
            "format = \"pcm16\"\nquota = \"1KB\"\n",
        ),
    );
    let out = site.run_fast(&path);
    assert!(out.status.success(), "{}", text(&out));
    let rows = site.recordings();
    let by_id = |id: &Value| rows.iter().find(|r| &r["id"] == id).unwrap().clone();
    assert_eq!(by_id(&damaged["id"])["state"], "failed");
    assert_eq!(std::fs::read(file(&site, damaged)).unwrap(), junk);
    assert_eq!(by_id(&row["id"])["state"], "deleted");
}

#[test]
fn a_recordings_folder_that_cannot_be_made_is_an_alarm_not_an_outage() {
    let site = site(POLICIES);
    std::fs::create_dir_all(site.data()).unwrap();
    // A file where the folder should be: even root cannot make it.
    std::fs::write(site.data().join("recordings"), b"in the way").unwrap();
    let mut sc = caller(0, "1001", "4001", 6);
    sc += &agent("alice", 1, "{ wait = \"1s\" }");
    let recs = run(&site, &sc);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["disposition"], "answered");
    assert_eq!(recs[0]["agent"], "alice");
    assert!(recs[0]["recordings"].as_array().unwrap().is_empty());
    let alarms = site.table("alarms");
    assert!(
        alarms.iter().any(|a| a["code"] == "recording_failed"
            && a["message"].as_str().unwrap().contains("recordings/.open")),
        "{alarms:#?}"
    );
}

#[test]
fn an_unusable_data_directory_is_refused_with_its_path() {
    let site = site(POLICIES);
    // A file where the data directory should be.
    std::fs::write(site.data(), b"not a folder").unwrap();
    let path = site.write("calls.toml", "");
    let out = site.run_fast(&path);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&site.data().display().to_string()) && err.contains("not a directory"),
        "{err}"
    );
    assert_eq!(std::fs::read(site.data()).unwrap(), b"not a folder");
}

#[test]
fn a_file_stored_just_before_a_crash_gets_its_record_completed_not_lost() {
    let site = site("[recording]\nmode = \"always\"\nformat = \"alaw\"\n");
    let mut sc = caller(0, "1001", "4001", 6);
    sc += &agent("alice", 1, "{ play = \"agent.wav\" }");
    run(&site, &sc);
    let before = site.recordings();
    assert_eq!(before[0]["state"], "complete");
    // The box moved the file to its folder and died before the end of the
    // recording reached the database: the row still says `recording`.
    let db = rusqlite::Connection::open(site.data().join("callbox.db")).unwrap();
    db.execute(
        "UPDATE recordings SET state = 'recording', size = NULL, sha256 = NULL, duration_ms = NULL",
        [],
    )
    .unwrap();
    drop(db);
    let path = site.write("calls.toml", "");
    let out = site.run_fast(&path);
    assert!(out.status.success(), "{}", text(&out));
    let after = site.recordings();
    assert_eq!(after.len(), 1);
    let row = &after[0];
    assert_eq!(row["state"], "interrupted", "{row:#}");
    assert_eq!(row["file"], before[0]["file"]);
    assert_eq!(row["sha256"], before[0]["sha256"]);
    assert_eq!(row["size"], before[0]["size"]);
    assert_eq!(row["duration_ms"], before[0]["duration_ms"]);
    assert!(file(&site, row).exists());
}

#[test]
fn a_station_reached_by_transfer_can_pause_the_recording() {
    let site = site(
        "[recording]\nmode = \"never\"\n\n[[recording.policy]]\nflow = \"direct\"\nmode = \"always\"\nformat = \"pcm16\"\n",
    );
    let mut sc = caller(0, "1001", "4004", 14);
    sc += &agent(
        "carol",
        3,
        "{ wait = \"2s\" }, { press = \"*4\", via = \"signal\" }, { wait = \"3s\" }, { press = \"*4\", via = \"signal\" }",
    );
    let recs = run(&site, &sc);
    assert_eq!(by_caller(&recs, "1001")["connected_to"], "desk-3");
    let rows = site.recordings();
    let row = recording_of(&recs, &rows, "1001").expect("the transfer is recorded");
    let pauses = row["pauses"].as_array().unwrap();
    assert_eq!(pauses.len(), 1, "{row:#}");
    let (from, to) = (ms(&pauses[0][0]), ms(&pauses[0][1]));
    assert!(
        (4000..=4600).contains(&from) && (3000..=3500).contains(&(to - from)),
        "{row:#}"
    );
    let (l, _) = stereo(&file(&site, row));
    assert!(
        l[((from + 20) * 8) as usize..((to - 20) * 8) as usize]
            .iter()
            .all(|&x| x == 0)
    );
}

#[test]
fn records_since_a_time_and_an_unknown_call() {
    let site = site(POLICIES);
    let mut sc = caller(0, "1001", "4001", 4);
    sc += &caller(7200, "1002", "4001", 4);
    sc += &agent("alice", 1, "{ wait = \"1s\" }");
    run_with(&site, &sc, &["--start-at", "2026-01-01T10:00:00Z"]);
    let since = |t: &str| {
        callbox_tests::export(&site.data(), &["records", "--json", "--since", t])
            .iter()
            .map(|r| r["caller"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(since("2026-01-01"), ["1001", "1002"]);
    assert_eq!(since("2026-01-01T11:00:00Z"), ["1002"]);
    assert!(since("2026-01-02").is_empty());
    let out = cmd()
        .args(["records", "--json", "--since", "last tuesday", "--data"])
        .arg(site.data())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("last tuesday"));
    let out = cmd()
        .args(["records", "--json", "--call", "no-such-call", "--data"])
        .arg(site.data())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-call"),
        "{}",
        text(&out)
    );
}
