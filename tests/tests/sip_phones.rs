//! Agents' SIP phones, end to end: the real daemon on loopback, baresip as
//! the phones, sipp as the carrier; a mixed site; the demo.

use std::time::Duration;

use callbox_tests::sip::{
    Daemon, Phone, channel, ended, free_tcp_port, free_udp_port, require_peers, rms, run_sipp,
    scenario, sip_site, sipp, sipp_carrier, sipp_one_call,
};
use callbox_tests::{text, tone_level};

/// Every call recorded, in stereo PCM.
const RECORDING: &str = "\n[recording]\nmode = \"always\"\nformat = \"pcm16\"\n";

/// A SIP site: a trunk from the carrier at 127.0.0.1:`carrier` whose
/// callers queue for alice, an agent on the SIP phone account `agent1`
/// (line `desk-1`); `extra` is appended to the config.
fn queue_site(sip_port: u16, carrier: u16, extra: &str) -> callbox_tests::Site {
    sip_site(
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
        &(r#"
[ivr]
language = "en"
timezone = "UTC"
start = "sales"

[ivr.node.sales]
type = "queue"
on_overflow = "bye"

[ivr.node.bye]
type = "hangup"

[acd.agent.alice]
number = "1001"
station = "desk-1"
logged_in = true

[acd.queue.sales]
members = { alice = 0 }
ring_timeout = "15s"
"#
        .to_string()
            + extra),
    )
}

#[test]
fn an_agents_baresip_phone_answers_a_queued_call_and_both_sides_hear_each_other() {
    require_peers();
    let sip_port = free_udp_port();
    let carrier = free_udp_port();
    let site = queue_site(sip_port, carrier, RECORDING);
    callbox_tests::write_tone_hz(&site.dir.path().join("agent.wav"), 1000.0, 60_000);

    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);
    // baresip's rtcpsummary prints the RTCP it got when the call ends.
    let mut phone = Phone::with_config(
        &site.dir.path().join("phone"),
        &format!(
            "<sip:agent1@127.0.0.1:{sip_port}>;auth_pass=desk-pass-1;regint=60;answermode=auto;audio_codecs=PCMA,PCMU"
        ),
        free_udp_port(),
        &site.dir.path().join("agent.wav"),
        "module rtcpsummary.so\n",
    );
    daemon.wait_log("phone registered", Duration::from_secs(20));

    let c = sipp_one_call(site.dir.path(), "carrier-call-talk.xml", sip_port, carrier);
    let out = run_sipp(c, Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(500));
    phone.stop();
    let log = daemon.stop();
    assert!(
        out.status.success(),
        "sipp: {}\ncallboxd:\n{log}",
        text(&out)
    );

    // RTCP both ways: the box read baresip's reports on its stream, and
    // baresip's summary counts what it got.
    let desk = log
        .lines()
        .find(|l| l.contains("RTP:") && l.contains("line=desk-1"))
        .unwrap_or_else(|| panic!("no RTP summary for desk-1\n{log}"));
    assert!(desk.contains("far end: 0 lost"), "{desk}");
    let phone_log = std::fs::read_to_string(phone.dir.join("baresip.log")).unwrap();
    assert!(phone_log.contains("EX=BareSip;"), "{phone_log}");
    let recs = site.records();
    assert_eq!(recs.len(), 1, "{recs:?}");
    let r = &recs[0];
    assert_eq!(r["queue"], "sales", "{r}\n{log}");
    assert_eq!(r["agent"], "alice", "{r}");
    assert_eq!(r["connected_to"], "desk-1", "{r}");
    assert_eq!(r["queue_exit"], "connected", "{r}");
    assert_eq!(r["hangup_side"], "caller", "{r}");
    let queue_log = site.table("queue_log");
    assert!(
        queue_log
            .iter()
            .any(|e| e["event"] == "CONNECT" && e["agent"] == "alice"),
        "{queue_log:#?}"
    );

    // The agent heard the caller's speech; the caller's side of the
    // recording is that speech and the agent's is baresip's 1000 Hz tone.
    let heard = phone.heard();
    assert!(
        rms(&heard) > 500.0,
        "the phone heard {:.0} RMS",
        rms(&heard)
    );
    let recs = site.recordings();
    assert_eq!(recs.len(), 1, "{recs:?}");
    let file = site.data().join(recs[0]["file"].as_str().unwrap());
    let caller = channel(&file, 0);
    let agent = channel(&file, 1);
    assert!(rms(&caller) > 500.0, "caller side {:.0} RMS", rms(&caller));
    let mid = &agent[agent.len() / 3..agent.len() / 3 + 1600];
    assert!(
        tone_level(mid, 1000.0) > 20.0 * tone_level(mid, 600.0).max(1.0),
        "the agent's side is not baresip's 1000 Hz tone"
    );
}

#[test]
fn an_agents_two_devices_ring_together_and_the_one_that_answers_takes_the_call() {
    require_peers();
    let sip_port = free_udp_port();
    let carrier = free_udp_port();
    let site = queue_site(sip_port, carrier, "");
    callbox_tests::write_tone_hz(&site.dir.path().join("agent.wav"), 1000.0, 60_000);
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);
    // Her desk phone rings until someone picks it up; her softphone
    // answers at once.
    let desk_port = free_udp_port();
    let mut desk = Phone::with_account(
        &site.dir.path().join("desk"),
        &format!(
            "<sip:agent1@127.0.0.1:{sip_port}>;auth_pass=desk-pass-1;regint=60;answermode=manual;audio_codecs=PCMA,PCMU"
        ),
        desk_port,
        &site.dir.path().join("agent.wav"),
    );
    daemon.wait_log("devices=1", Duration::from_secs(20));
    let mut soft = Phone::start(
        &site.dir.path().join("soft"),
        "agent1",
        "desk-pass-1",
        sip_port,
        &site.dir.path().join("agent.wav"),
    );
    daemon.wait_log("devices=2", Duration::from_secs(20));

    let c = sipp_one_call(site.dir.path(), "carrier-call-talk.xml", sip_port, carrier);
    let out = run_sipp(c, Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(500));
    soft.stop();
    desk.stop();
    let log = daemon.stop();
    assert!(
        out.status.success(),
        "sipp: {}\ncallboxd:\n{log}",
        text(&out)
    );
    assert!(log.contains("ringing every device of the phone"), "{log}");

    let recs = site.records();
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["agent"], "alice", "{}\n{log}", recs[0]);
    assert_eq!(recs[0]["queue_exit"], "connected", "{}", recs[0]);
    // The softphone took the call and heard the caller; the desk phone
    // rang and was cancelled.
    assert!(rms(&soft.heard()) > 500.0, "the softphone heard nothing");
    let desk_log = std::fs::read_to_string(desk.dir.join("baresip.log")).unwrap();
    assert!(
        desk_log.contains("Incoming call from:  sip:13800138000"),
        "{desk_log}"
    );
    // libre reports a CANCEL of a ringing call as ECONNRESET.
    assert!(
        desk_log.contains("session closed: Connection reset by peer"),
        "{desk_log}"
    );
}

#[test]
fn an_agents_phone_over_tls_with_srtp_answers_a_queued_call_and_both_sides_hear_each_other() {
    require_peers();
    let sip_port = free_udp_port();
    let tls_port = free_tcp_port();
    let carrier = free_udp_port();
    let site = queue_site(sip_port, carrier, RECORDING);
    let cfg = std::fs::read_to_string(site.config()).unwrap().replace(
        "rtp_ports =",
        &format!("tls_listen = \"127.0.0.1:{tls_port}\"\nrtp_ports ="),
    );
    std::fs::write(site.config(), cfg).unwrap();
    callbox_tests::write_tone_hz(&site.dir.path().join("agent.wav"), 1000.0, 60_000);

    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);
    daemon.wait_log("SIP listening (TLS)", Duration::from_secs(10));
    // The phone trusts the box's self-signed certificate, made on first
    // start, and insists on SRTP.
    let cert = site.data().join("tls/sip.crt");
    assert!(cert.exists(), "no self-signed certificate in the data dir");
    let mut phone = Phone::with_config(
        &site.dir.path().join("phone"),
        &format!(
            "<sip:agent1@127.0.0.1:{tls_port};transport=tls>;auth_pass=desk-pass-1;regint=60;answermode=auto;audio_codecs=PCMA,PCMU;mediaenc=srtp-mand"
        ),
        free_udp_port(),
        &site.dir.path().join("agent.wav"),
        &format!("module srtp.so\nsip_cafile {}\n", cert.display()),
    );
    daemon.wait_log("phone registered", Duration::from_secs(20));

    let c = sipp_one_call(site.dir.path(), "carrier-call-talk.xml", sip_port, carrier);
    let out = run_sipp(c, Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(500));
    phone.stop();
    let log = daemon.stop();
    let phone_log = std::fs::read_to_string(phone.dir.join("baresip.log")).unwrap();
    assert!(
        out.status.success(),
        "sipp: {}\ncallboxd:\n{log}\nphone:\n{phone_log}",
        text(&out)
    );
    let recs = site.records();
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["agent"], "alice", "{}\n{log}\n{phone_log}", recs[0]);
    assert_eq!(recs[0]["queue_exit"], "connected", "{}", recs[0]);
    assert!(log.contains("SRTP"), "{log}");

    // Both ways through SRTP: the phone heard the caller's speech, and the
    // agent's side of the recording is the phone's 1000 Hz tone.
    let heard = phone.heard();
    assert!(
        rms(&heard) > 500.0,
        "the phone heard {:.0} RMS\n{phone_log}",
        rms(&heard)
    );
    let recs = site.recordings();
    let file = site.data().join(recs[0]["file"].as_str().unwrap());
    let agent = channel(&file, 1);
    let mid = &agent[agent.len() / 3..agent.len() / 3 + 1600];
    assert!(
        tone_level(mid, 1000.0) > 20.0 * tone_level(mid, 600.0).max(1.0),
        "the agent's side is not the phone's 1000 Hz tone"
    );
}

#[test]
fn a_mixed_site_connects_a_sip_trunk_to_a_simulated_analog_desk_and_back() {
    require_peers();
    let sip_port = free_udp_port();
    let carrier = free_udp_port();
    let site = sip_site(
        "sim",
        sip_port,
        20,
        &format!(
            r#"[[line]]
id = "analog-trunk"
kind = "trunk"

[[line]]
id = "analog-desk"
kind = "station"

[[line]]
id = "carrier"
kind = "trunk"
sip = {{ peer = "127.0.0.1:{carrier}" }}

[[line]]
id = "sip-desk"
kind = "station"
sip = {{ username = "agent1", password = "desk-pass-1" }}

"#
        ),
        r#"
[ivr]
language = "en"
timezone = "UTC"
start = "to-analog"

[[ivr.route]]
dialled = ["4002"]
start = "to-sip"

[ivr.node.to-analog]
type = "queue"
queue = "analog"
on_overflow = "bye"

[ivr.node.to-sip]
type = "queue"
queue = "sip"
on_overflow = "bye"

[ivr.node.bye]
type = "hangup"

[acd.agent.bob]
number = "1002"
station = "analog-desk"
logged_in = true

[acd.agent.alice]
number = "1001"
station = "sip-desk"
logged_in = true

[acd.queue.analog]
members = { bob = 0 }
ring_timeout = "15s"

[acd.queue.sip]
members = { alice = 0 }
ring_timeout = "15s"
"#,
    );
    let dir = site.dir.path();
    callbox_tests::write_tone_hz(&dir.join("caller.wav"), 600.0, 6_000);
    callbox_tests::write_tone_hz(&dir.join("agent.wav"), 1000.0, 60_000);
    let scenario_file = site.write(
        "calls.toml",
        r#"[[agent]]
name = "bob"
line = "analog-desk"
answer_after = "1s"
talk = "30s"

[[call]]
at = "4s"
from = "01055501234"
to = "4002"
line = "analog-trunk"
hangup_after = "6s"
script = [{ play = "caller.wav" }]
"#,
    );
    let daemon = Daemon::start_with(
        &site.config(),
        &site.data(),
        sip_port,
        &["--scenario", scenario_file.to_str().unwrap()],
    );
    let mut phone = Phone::start(
        &dir.join("phone"),
        "agent1",
        "desk-pass-1",
        sip_port,
        &dir.join("agent.wav"),
    );
    daemon.wait_log("phone registered", Duration::from_secs(20));

    // The carrier's call goes to the analog desk.
    let mut c = sipp(dir);
    c.arg("-sf")
        .arg(scenario("carrier-call-talk.xml"))
        .arg(format!("127.0.0.1:{sip_port}"))
        .args(["-s", "4001", "-i", "127.0.0.1", "-p", &carrier.to_string()])
        .args([
            "-mi",
            "127.0.0.1",
            "-m",
            "1",
            "-timeout",
            "60s",
            "-timeout_error",
        ]);
    let out = run_sipp(c, Duration::from_secs(90));
    let recs = ended(&site, &daemon, 2, Duration::from_secs(40));
    phone.stop();
    let log = daemon.stop();
    assert!(out.status.success(), "sipp: {}\n{log}", text(&out));

    let by_line = |l: &str| {
        recs.iter()
            .find(|r| r["trunk_line"] == l)
            .unwrap_or_else(|| panic!("no call on {l}: {recs:#?}\n{log}"))
    };
    let sip_call = by_line("carrier");
    assert_eq!(sip_call["connected_to"], "analog-desk", "{sip_call}\n{log}");
    assert_eq!(sip_call["agent"], "bob", "{sip_call}");
    let analog_call = by_line("analog-trunk");
    assert_eq!(
        analog_call["connected_to"], "sip-desk",
        "{analog_call}\n{log}"
    );
    assert_eq!(analog_call["agent"], "alice", "{analog_call}");
    // The SIP phone heard the analog caller's 600 Hz tone.
    let heard = phone.heard();
    let loud = heard
        .chunks(800)
        .filter(|c| tone_level(c, 600.0) > 1000.0)
        .count();
    assert!(
        loud > 20,
        "the SIP phone did not hear the analog caller ({loud} loud chunks)"
    );
}

#[test]
fn the_demo_answers_a_softphone_and_registers_carols_phone_with_the_password_it_prints() {
    require_peers();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut demo = callbox_tests::cmd()
        .args(["demo", "--seconds", "20", "--data"])
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The instructions come first, on stdout.
    let mut out = std::io::BufReader::new(demo.stdout.take().unwrap());
    let mut line = String::new();
    let how = loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
            "no SIP instructions"
        );
        if line.contains("softphone") {
            break line.clone();
        }
    };
    let addr = how
        .split("sip:4008001234@")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let password = how
        .split("password ")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches('.')
        .to_string();
    // Read the rest in the background so the demo never blocks on a pipe.
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let mut err = demo.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });

    callbox_tests::write_tone_hz(&dir.path().join("carol.wav"), 1000.0, 60_000);
    let mut phone = Phone::start(
        &dir.path().join("carol"),
        "carol",
        &password,
        port,
        &dir.path().join("carol.wav"),
    );
    let caller_port = free_udp_port();
    let mut c = sipp_carrier(dir.path(), "carrier-call-talk.xml", port, caller_port);
    c.args([
        "-mi",
        "127.0.0.1",
        "-m",
        "1",
        "-timeout",
        "30s",
        "-timeout_error",
    ]);
    let call = run_sipp(c, Duration::from_secs(60));
    let status = demo.wait().unwrap();
    phone.stop();
    let (summary, log) = (rest.join().unwrap(), log.join().unwrap());
    assert!(status.success(), "{summary}\n{log}");
    assert!(call.status.success(), "sipp: {}\n{log}", text(&call));
    assert!(summary.contains("== summary =="), "{summary}");
    assert!(
        log.contains("phone registered") && log.contains("line=desk-3"),
        "{log}"
    );
    let recs = callbox_tests::export(&data, &["records", "--json"]);
    assert!(
        recs.iter()
            .any(|r| r["trunk_line"] == "softphones" && r["disposition"] == "answered"),
        "{recs:#?}"
    );
}

#[test]
fn an_agent_on_a_baresip_phone_holds_resumes_and_transfers_blind_to_another_phone() {
    require_peers();
    let sip_port = free_udp_port();
    let carrier = free_udp_port();
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

[[line]]
id = "desk-2"
kind = "station"
sip = {{ username = "agent2", password = "desk-pass-2" }}

"#
        ),
        r#"
[ivr]
language = "en"
timezone = "UTC"
start = "sales"

[ivr.node.sales]
type = "queue"
on_overflow = "bye"

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
strategy = "linear"
members = { alice = 0, bob = 0 }
ring_timeout = "15s"

[recording]
mode = "always"
format = "pcm16"
"#,
    );
    let dir = site.dir.path();
    callbox_tests::write_tone_hz(&dir.join("alice.wav"), 1000.0, 60_000);
    callbox_tests::write_tone_hz(&dir.join("bob.wav"), 1400.0, 60_000);
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);
    let mut alice = Phone::start(
        &dir.join("alice"),
        "agent1",
        "desk-pass-1",
        sip_port,
        &dir.join("alice.wav"),
    );
    let mut bob = Phone::start(
        &dir.join("bob"),
        "agent2",
        "desk-pass-2",
        sip_port,
        &dir.join("bob.wav"),
    );
    daemon.wait_log("line=desk-1 source", Duration::from_secs(20));
    daemon.wait_log("line=desk-2 source", Duration::from_secs(20));

    let mut c = sipp_one_call(dir, "carrier-call-long.xml", sip_port, carrier);
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let call = c.spawn().unwrap();
    daemon.wait_log("recording starts", Duration::from_secs(15));
    // Hold (re-INVITE sendonly): the caller gets music; then back.
    alice.command("hold", "");
    daemon.wait_log("on_hold=true", Duration::from_secs(8));
    alice.command("resume", "");
    daemon.wait_log("on_hold=false", Duration::from_secs(8));
    // Blind transfer (REFER) to bob's number.
    alice.command("transfer", &format!("sip:1002@127.0.0.1:{sip_port}"));
    let out = call.wait_with_output().unwrap();
    let recs = ended(&site, &daemon, 1, Duration::from_secs(10));
    alice.stop();
    bob.stop();
    let log = daemon.stop();
    assert!(out.status.success(), "sipp: {}\n{log}", text(&out));

    let r = &recs[0];
    let path: Vec<&str> = r["ivr_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        path.iter()
            .any(|p| p.starts_with("sales=transfer:alice>1002")),
        "{r}\n{log}"
    );
    assert!(path.contains(&"sales=connected:bob"), "{r}\n{log}");
    assert_eq!(r["connected_to"], "desk-2", "{r}");
    assert_eq!(r["hangup_side"], "caller", "{r}");
    let queue_log = site.table("queue_log");
    let events: Vec<String> = queue_log
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["event"].as_str().unwrap_or(""),
                e["agent"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(events.contains(&"CONNECT:alice".to_string()), "{events:?}");
    assert!(
        events.iter().any(|e| e.starts_with("TRANSFER")),
        "{events:?}"
    );
    // Alice's 1000 Hz is on the recording's agent side; bob's phone got
    // the caller's audio stream, silence included, for the rest of the
    // call (16 s; RTP never stops while a call is up).
    let files: Vec<_> = site
        .recordings()
        .iter()
        .map(|m| site.data().join(m["file"].as_str().unwrap()))
        .collect();
    let agent_side: Vec<i16> = files.iter().flat_map(|f| channel(f, 1)).collect();
    let alice_chunks = agent_side
        .chunks(800)
        .filter(|c| tone_level(c, 1000.0) > 1000.0)
        .count();
    assert!(alice_chunks >= 3, "alice's tone is not in {files:?}");
    // And bob's 1400 Hz after the transfer: the recording keeps time by
    // the caller's leg, which gives silence once sipp's speech ends, so
    // it runs on to the end of the call.
    let bob_chunks = agent_side
        .chunks(800)
        .filter(|c| tone_level(c, 1400.0) > 1000.0)
        .count();
    assert!(
        bob_chunks >= 30,
        "bob's tone is in {bob_chunks} chunks of {files:?}"
    );
    let heard = bob.heard();
    assert!(
        heard.len() > 8000 * 12,
        "bob's phone got {} samples",
        heard.len()
    );
}
