//! Early media (183 Session Progress with SDP) both ways, end to end with
//! the real daemon: a caller on a SIP trunk hears the box's ringback while
//! the call rings unanswered, and a callee's carrier may open its audio
//! before answering without the box hanging up on its silence.

use std::time::Duration;

use callbox_tests::sip::{
    Daemon, Phone, add_sip_keys, carrier_line, code_job, ended, free_udp_port, require_peers,
    run_sipp, scenario, sip_site, sipp, sipp_one_call,
};
use callbox_tests::{text, tone_level, write_tone_hz};

/// Frames of 20 ms (160 samples) of `x`.
fn frames(x: &[i16]) -> impl Iterator<Item = &[i16]> {
    x.chunks_exact(160)
}

#[test]
fn a_ringing_caller_hears_the_ringback_as_early_media_then_the_answer() {
    require_peers();
    let sip_port = free_udp_port();
    let caller_port = free_udp_port();
    let site = sip_site(
        "sip",
        sip_port,
        10,
        &carrier_line(caller_port, ""),
        "answer_after = \"3s\"\nringback = \"ringback.wav\"\n",
    );
    let prompts = site.dir.path().join("prompts");
    // The ringback at 600 Hz, looped; the greeting after the answer at
    // 425 Hz for 2 s (then the box hangs up: the site has no IVR).
    write_tone_hz(&prompts.join("ringback.wav"), 600.0, 500);
    write_tone_hz(&prompts.join("greeting.wav"), 425.0, 2000);
    write_tone_hz(&site.dir.path().join("quiet.wav"), 1000.0, 60_000);
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);
    // The caller: baresip dialling the box's number from the carrier's
    // address.
    let mut caller = Phone::with_account(
        &site.dir.path().join("caller"),
        "<sip:13900000000@127.0.0.1>;regint=0;audio_codecs=PCMA",
        caller_port,
        &site.dir.path().join("quiet.wav"),
    );
    std::thread::sleep(Duration::from_millis(500));
    caller.command("dial", &format!("sip:4008001234@127.0.0.1:{sip_port}"));
    let recs = ended(&site, &daemon, 1, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    caller.stop();
    let log = daemon.stop();
    let phone_log = std::fs::read_to_string(caller.dir.join("baresip.log")).unwrap_or_default();
    let r = &recs[0];
    assert_eq!(r["disposition"], "answered", "{r}\n{log}");
    // Answered after ringing 3 s, not at once.
    let rang = r["duration_ms"].as_i64().unwrap() - r["answered_ms"].as_i64().unwrap();
    assert!((2800..4500).contains(&rang), "rang {rang} ms: {r}\n{log}");
    assert!(log.contains("ringing with ringback"), "{log}");

    // What the caller heard: the ringback first (early media, before the
    // 200), then the greeting; never the greeting before the ringback.
    let heard = caller.heard();
    let is = |f: &[i16], hz: f64| tone_level(f, hz) > 1000.0;
    let ringback: Vec<usize> = frames(&heard)
        .enumerate()
        .filter(|(_, f)| is(f, 600.0))
        .map(|(i, _)| i)
        .collect();
    let greeting: Vec<usize> = frames(&heard)
        .enumerate()
        .filter(|(_, f)| is(f, 425.0))
        .map(|(i, _)| i)
        .collect();
    assert!(
        ringback.len() >= 100,
        "{} frames of ringback heard (3 s is 150)\n{phone_log}\n{log}",
        ringback.len()
    );
    assert!(
        greeting.len() >= 75,
        "{} frames of greeting heard (2 s is 100)\n{log}",
        greeting.len()
    );
    assert!(
        ringback.last() < greeting.first(),
        "ringback and greeting overlap: {ringback:?} {greeting:?}"
    );
}

#[test]
fn a_caller_silent_while_it_hears_the_ringback_is_answered_not_timed_out() {
    require_peers();
    let sip_port = free_udp_port();
    let carrier = free_udp_port();
    let site = sip_site(
        "sip",
        sip_port,
        10,
        &carrier_line(carrier, ", keepalive = \"off\""),
        "answer_after = \"7s\"\nringback = \"ringback.wav\"\n",
    );
    write_tone_hz(&site.dir.path().join("prompts/ringback.wav"), 600.0, 500);
    // An RTP timeout shorter than the ringing: the caller sends nothing
    // before the answer, which is no reason to hang up on it.
    add_sip_keys(&site, "rtp_timeout = \"5s\"\n");
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);
    let c = sipp_one_call(
        site.dir.path(),
        "carrier-call-early-media.xml",
        sip_port,
        carrier,
    );
    let out = run_sipp(c, Duration::from_secs(60));
    let recs = ended(&site, &daemon, 1, Duration::from_secs(10));
    let log = daemon.stop();
    // sipp got the 183 with SDP before the 200.
    assert!(out.status.success(), "sipp: {}\n{log}", text(&out));
    assert!(!log.contains("no RTP from the far end"), "{log}");
    let r = &recs[0];
    assert_eq!(r["disposition"], "answered", "{r}\n{log}");
    // The box hung up after its greeting (the site has no IVR).
    assert_eq!(r["hangup_side"], "box", "{r}\n{log}");
}

#[test]
fn an_outbound_call_that_gets_183_with_sdp_rings_on_until_the_200_and_runs_its_flow() {
    require_peers();
    let sip_port = free_udp_port();
    let callee_port = free_udp_port();
    let site = sip_site(
        "sip",
        sip_port,
        10,
        &carrier_line(callee_port, ", keepalive = \"off\""),
        &code_job("verify-1", "1s"),
    );
    // An RTP timeout shorter than the callee's 7 s of silent early media.
    add_sip_keys(&site, "rtp_timeout = \"5s\"\n");
    let mut callee = sipp(site.dir.path());
    callee
        .arg("-sf")
        .arg(scenario("callee-early-media.xml"))
        .args(["-i", "127.0.0.1", "-p", &callee_port.to_string()])
        .args(["-mi", "127.0.0.1", "-m", "1"])
        .args(["-timeout", "60s", "-timeout_error"]);
    let callee = std::thread::spawn(move || run_sipp(callee, Duration::from_secs(90)));
    std::thread::sleep(Duration::from_millis(300));
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);
    let recs = ended(&site, &daemon, 1, Duration::from_secs(40));
    let out = callee.join().unwrap();
    let log = daemon.stop();
    assert!(out.status.success(), "sipp: {}\n{log}", text(&out));
    let r = &recs[0];
    assert_eq!(r["direction"], "outbound", "{r}");
    assert_eq!(r["outcome"], "code_said", "{r}\n{log}");
    assert!(!log.contains("no RTP from the far end"), "{log}");
    // The callee answered 7 s into the call (after its early media).
    let before_answer = r["duration_ms"].as_i64().unwrap() - r["answered_ms"].as_i64().unwrap();
    assert!(before_answer >= 6500, "{before_answer} ms: {r}");
}
