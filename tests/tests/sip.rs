//! The box on a SIP trunk, end to end: the real daemon on loopback, sipp as
//! the carrier (calls in, registrar, bad input), baresip as a callee.
//! Agents' SIP phones are in sip_phones.rs.

use std::time::Duration;

use callbox_tests::sip::{
    Daemon, Phone, best_match, carrier_line, channel, code_job, ended, free_rtp_range,
    free_udp_port, require_peers, rms, run_sipp, scenario, sip_site, sipp, sipp_carrier,
    sipp_one_call, system_prompt,
};
use callbox_tests::{Site, text};

/// A site whose only line is a SIP trunk from the carrier at
/// 127.0.0.1:`carrier`, with a two-level IVR leading to a voicemail box.
fn carrier_site(sip_port: u16, carrier: u16) -> Site {
    let site = Site::new(0, 0, 300, "");
    let (lo, hi) = free_rtp_range(40);
    let cfg = std::fs::read_to_string(site.config()).unwrap();
    let cfg = cfg.replace(
        "[inbound]\n",
        &format!(
            r#"[hal]
backend = "sip"

[sip]
listen = "127.0.0.1:{sip_port}"
rtp_ports = "{lo}-{hi}"

[[line]]
id = "carrier"
kind = "trunk"
sip = {{ peer = "127.0.0.1:{carrier}" }}

[inbound]
"#
        ),
    );
    let cfg = cfg
        + r#"
[ivr]
language = "en"
timezone = "UTC"
start = "main"

[ivr.node.main]
type = "menu"
greeting = "greeting.wav"
options = { "1" = "second" }

[ivr.node.second]
type = "menu"
greeting = "greeting.wav"
options = { "3" = "message" }

[ivr.node.message]
type = "voicemail"
mailbox = "sales"
prompt = "greeting.wav"
max_length = "4s"
next = "bye"

[ivr.node.bye]
type = "hangup"
prompt = "system:goodbye"
outcome = "walked"
"#;
    std::fs::write(site.config(), cfg).unwrap();
    site
}

/// A carrier's call with sipp's `scenario` (and its `-key` arguments)
/// walks the IVR with keys 1 then 3 into voicemail; the record shows each
/// key once and the message holds the caller's speech.
fn walks_the_ivr(scenario_file: &str, keys: &[[&str; 2]]) {
    require_peers();
    let sip_port = free_udp_port();
    let carrier = free_udp_port();
    let site = carrier_site(sip_port, carrier);
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);

    let mut c = sipp_one_call(site.dir.path(), scenario_file, sip_port, carrier);
    for [k, v] in keys {
        c.args(["-key", k, v]);
    }
    let out = run_sipp(c, Duration::from_secs(90));
    let log = daemon.stop();
    assert!(
        out.status.success(),
        "sipp: {}\ncallboxd:\n{log}",
        text(&out)
    );

    let recs = site.records();
    assert_eq!(recs.len(), 1, "{recs:?}");
    let r = &recs[0];
    assert_eq!(r["trunk_line"], "carrier", "{r}");
    assert_eq!(r["caller"], "13800138000", "{r}");
    assert_eq!(r["dialled"], "4008001234", "{r}");
    assert_eq!(r["disposition"], "answered", "{r}");
    assert_eq!(r["outcome"], "voicemail:sales", "{r}\n{log}");
    // Each key arrived once: one menu step per key.
    let path: Vec<&str> = r["ivr_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        path[..5],
        ["main", "main=1", "second", "second=3", "message"],
        "{r}\n{log}"
    );
    assert!(path[5].starts_with("voicemail="), "{r}");
    assert_eq!(path[6..], ["bye"], "{r}");

    // The caller's audio (sipp's g711a.pcap, speech) is in the message.
    let recs = site.recordings();
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["kind"], "voicemail", "{recs:?}");
    let file = site.data().join(recs[0]["file"].as_str().unwrap());
    let mut wav = hound::WavReader::open(&file).unwrap();
    let spec = wav.spec();
    let samples: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
    let caller: Vec<i16> = if spec.channels == 2 {
        samples.iter().step_by(2).copied().collect()
    } else {
        samples
    };
    let loud = caller.chunks(160).filter(|f| {
        let e: f64 = f.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / f.len() as f64;
        e.sqrt() > 300.0
    });
    assert!(
        loud.count() > 60,
        "the caller's speech is not in {}",
        file.display()
    );
}

#[test]
fn a_carrier_call_walks_the_ivr_with_rfc4733_keys_and_its_audio_is_recorded() {
    walks_the_ivr(
        "carrier-call-keys.xml",
        &[
            ["key1_pcap", "/usr/share/sip-tester/dtmf_2833_1.pcap"],
            ["key2_pcap", "/usr/share/sip-tester/dtmf_2833_3.pcap"],
        ],
    );
}

#[test]
fn keys_sent_as_sip_info_walk_the_ivr_the_same_way() {
    walks_the_ivr("carrier-call-info-keys.xml", &[]);
}

/// A site with one trunk that registers at the carrier at
/// 127.0.0.1:`carrier` with `password`.
fn registering_site(sip_port: u16, carrier: u16, password: &str) -> Site {
    let site = Site::new(0, 0, 300, "");
    let (lo, hi) = free_rtp_range(10);
    let cfg = std::fs::read_to_string(site.config()).unwrap();
    let cfg = cfg.replace(
        "[inbound]\n",
        &format!(
            r#"[hal]
backend = "sip"

[sip]
listen = "127.0.0.1:{sip_port}"
rtp_ports = "{lo}-{hi}"

[[line]]
id = "carrier"
kind = "trunk"
sip = {{ peer = "127.0.0.1:{carrier}", domain = "carrier.test", username = "trunkuser", password = "{password}", register = true }}

[inbound]
"#
        ),
    );
    std::fs::write(site.config(), cfg).unwrap();
    site
}

/// sipp as the carrier's registrar running `file`, for one registration,
/// in the background.
fn registrar(dir: &std::path::Path, port: u16, file: &str) -> std::process::Child {
    let mut c = sipp(dir);
    c.arg("-sf")
        .arg(scenario(file))
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m", "1"])
        .args(["-timeout", "30s", "-timeout_error"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c.spawn().expect("starting sipp")
}

fn wait_child(mut c: std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            return st;
        }
        if std::time::Instant::now() > deadline {
            let _ = c.kill();
            panic!("sipp did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_trunk_registers_with_digest_and_a_wrong_password_raises_the_alarm() {
    require_peers();
    // The right password: registered, no alarm.
    let sip_port = free_udp_port();
    let carrier = free_udp_port();
    let site = registering_site(sip_port, carrier, "trunkpass");
    let sipp = registrar(site.dir.path(), carrier, "carrier-registrar.xml");
    std::thread::sleep(Duration::from_millis(300));
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);
    let st = wait_child(sipp, Duration::from_secs(30));
    daemon.wait_log("trunk registered", Duration::from_secs(10));
    let log = daemon.stop();
    assert!(st.success(), "sipp registrar: {st}\n{log}");
    let alarms = site.table("alarms");
    assert!(alarms.is_empty(), "{alarms:?}");

    // A wrong one: the carrier refuses, the line's alarm is raised.
    let sip_port = free_udp_port();
    let carrier = free_udp_port();
    let site = registering_site(sip_port, carrier, "wrongpass");
    let sipp = registrar(site.dir.path(), carrier, "carrier-registrar.xml");
    std::thread::sleep(Duration::from_millis(300));
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);
    wait_child(sipp, Duration::from_secs(30));
    daemon.wait_log("trunk registration failed", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let log = daemon.stop();
    let alarms = site.table("alarms");
    assert!(
        alarms
            .iter()
            .any(|a| a["code"] == "line_unregistered:carrier"
                && a["message"].as_str().unwrap().contains("403")),
        "{alarms:#?}\n{log}"
    );
}

#[test]
fn a_trunk_registers_through_423_a_proxy_challenge_without_qop_and_a_stale_nonce() {
    require_peers();
    let sip_port = free_udp_port();
    let carrier = free_udp_port();
    // The site asks for 60 s; this carrier wants at least 120.
    let site = registering_site(sip_port, carrier, "trunkpass");
    let cfg = std::fs::read_to_string(site.config()).unwrap();
    std::fs::write(
        site.config(),
        cfg.replace("register = true }", "register = true, expires = \"60s\" }"),
    )
    .unwrap();
    let sipp = registrar(site.dir.path(), carrier, "carrier-registrar-strict.xml");
    std::thread::sleep(Duration::from_millis(300));
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);
    let st = wait_child(sipp, Duration::from_secs(30));
    daemon.wait_log("trunk registered", Duration::from_secs(10));
    let log = daemon.stop();
    assert!(st.success(), "sipp registrar: {st}\n{log}");
    assert!(log.contains("longer registration (423)"), "{log}");
    let alarms = site.table("alarms");
    assert!(alarms.is_empty(), "{alarms:?}");
}

#[test]
fn a_verification_code_goes_out_on_the_sip_trunk_and_is_spoken_to_the_callee() {
    require_peers();
    let sip_port = free_udp_port();
    let callee_port = free_udp_port();
    let site = sip_site(
        "sip",
        sip_port,
        10,
        &carrier_line(callee_port, ", caller_id = \"4008001234\""),
        &code_job("verify-1", "2s"),
    );
    // baresip hangs up when its microphone file ends.
    callbox_tests::write_tone_hz(&site.dir.path().join("quiet.wav"), 1000.0, 60_000);
    // The callee: baresip answering whatever the carrier hands it.
    let mut callee = Phone::with_account(
        &site.dir.path().join("callee"),
        "<sip:13700000001@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMA",
        callee_port,
        &site.dir.path().join("quiet.wav"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);
    let recs = ended(&site, &daemon, 1, Duration::from_secs(40));
    std::thread::sleep(Duration::from_millis(500));
    callee.stop();
    let log = daemon.stop();
    let r = &recs[0];
    assert_eq!(r["direction"], "outbound", "{r}\n{log}");
    assert_eq!(r["dialled"], "13700000001", "{r}");
    assert_eq!(r["job"], "verify-1", "{r}");
    assert_eq!(r["trunk_line"], "carrier", "{r}");
    assert_eq!(r["outcome"], "code_said", "{r}\n{log}");

    // The digits 4, 8, 2, 9 are in what the callee heard, in order (the
    // first time; the repeat may be cut by the hang-up in the callee's own
    // jitter buffer).
    let heard = callee.heard();
    let mut last = 0;
    for d in ["4", "8", "2", "9"] {
        let digit = system_prompt(&format!("digit-{d}"));
        // The first digit anywhere; each next one within 2 s of the one
        // before: the first time the code is said.
        let end = if last == 0 {
            heard.len()
        } else {
            heard.len().min(last + 16_000 + digit.len())
        };
        let window = &heard[last..end];
        let (at, c) = best_match(window, &digit);
        assert!(
            c > 0.8,
            "digit {d} not heard after sample {last} (best match {c:.2})"
        );
        last += at + digit.len() / 2;
    }
}

/// A site whose trunk `ch` from the carrier at `localhost:carrier` (a
/// name the box resolves) has `channels` channels (`ch-1`…), plus the
/// `extra` lines, and whose IVR takes a voicemail message from every
/// caller.
fn voicemail_site(sip_port: u16, carrier: u16, channels: usize, extra: &str) -> Site {
    let site = Site::new(0, 0, 300, "");
    let (lo, hi) = free_rtp_range(2 * channels as u16 + 20);
    let lines = format!(
        "[[line]]\nid = \"ch\"\nkind = \"trunk\"\nsip = {{ peer = \"localhost:{carrier}\", channels = {channels} }}\n\n"
    );
    let cfg = std::fs::read_to_string(site.config()).unwrap().replace(
        "[inbound]\n",
        &format!(
            "[hal]\nbackend = \"sip\"\n\n[sip]\nlisten = \"127.0.0.1:{sip_port}\"\nrtp_ports = \"{lo}-{hi}\"\n\n{lines}{extra}[inbound]\n"
        ),
    ) + r#"
[ivr]
language = "en"
timezone = "UTC"
start = "message"

[ivr.node.message]
type = "voicemail"
mailbox = "sales"
prompt = "greeting.wav"
max_length = "30s"
next = "bye"

[ivr.node.bye]
type = "hangup"
"#;
    std::fs::write(site.config(), cfg).unwrap();
    site
}

/// The RTP port range of a site's `[sip]`.
fn site_rtp_ports(site: &Site) -> (u16, u16) {
    let cfg = std::fs::read_to_string(site.config()).unwrap();
    let range = cfg
        .split("rtp_ports = \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let (lo, hi) = range.split_once('-').unwrap();
    (lo.parse().unwrap(), hi.parse().unwrap())
}

#[test]
fn a_call_with_a_late_offer_gets_the_boxs_offer_and_answers_in_the_ack() {
    require_peers();
    let sip_port = free_udp_port();
    let carrier = free_udp_port();
    let site = voicemail_site(sip_port, carrier, 1, "");
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);
    let c = sipp_one_call(
        site.dir.path(),
        "carrier-call-late-offer.xml",
        sip_port,
        carrier,
    );
    let out = run_sipp(c, Duration::from_secs(90));
    let recs = ended(&site, &daemon, 1, Duration::from_secs(10));
    let log = daemon.stop();
    assert!(out.status.success(), "sipp: {}\n{log}", text(&out));
    assert_eq!(recs[0]["outcome"], "voicemail:sales", "{}\n{log}", recs[0]);
    let messages = site.recordings();
    let file = site.data().join(messages[0]["file"].as_str().unwrap());
    assert!(
        rms(&channel(&file, 0)) > 300.0,
        "no speech in the message:\n{log}"
    );
}

#[test]
fn a_hundred_concurrent_sip_calls_each_leave_a_record_and_a_playable_message() {
    require_peers();
    const CALLS: usize = 100;
    let sip_port = free_udp_port();
    let carrier = free_udp_port();
    let site = voicemail_site(sip_port, carrier, CALLS, "");
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);
    let mut c = sipp_carrier(site.dir.path(), "carrier-call-talk.xml", sip_port, carrier);
    c.args([
        "-mi",
        "127.0.0.1",
        "-m",
        &CALLS.to_string(),
        "-l",
        &CALLS.to_string(),
    ])
    .args(["-r", "50", "-timeout", "120s", "-timeout_error"]);
    let out = run_sipp(c, Duration::from_secs(180));
    assert!(
        out.status.success(),
        "sipp: {}\n{}",
        text(&out),
        daemon.log()
    );
    // Under a loaded CI machine a call may end only by RTP timeout (30 s).
    let recs = ended(&site, &daemon, CALLS, Duration::from_secs(60));
    daemon.stop();
    assert!(text(&out).contains("Successful call"), "{}", text(&out));

    assert_eq!(recs.len(), CALLS);
    for r in &recs {
        assert_eq!(r["disposition"], "answered", "{r}");
        assert_eq!(r["outcome"], "voicemail:sales", "{r}");
        assert_eq!(r["recordings"].as_array().map(Vec::len), Some(1), "{r}");
    }
    let messages = site.recordings();
    assert_eq!(messages.len(), CALLS);
    for m in &messages {
        assert_eq!(m["state"], "complete", "{m}");
        let file = site.data().join(m["file"].as_str().unwrap());
        let speech = channel(&file, 0);
        assert!(rms(&speech) > 300.0, "{} holds no speech", file.display());
    }
}

/// sipp as a carrier calling the box with `scenario_file`, in the
/// background, from a port sipp picks (the box knows its carrier by IP
/// address; a port picked here could be taken by a parallel test before
/// sipp binds it).
fn carrier_call(sip_port: u16, site: &Site, scenario_file: &str) -> std::process::Child {
    // Its own signalling and media ports: sipp instances started together
    // on their default ports race for them, and the loser exits 1.
    let (media, _) = free_rtp_range(2);
    let mut c = sipp(site.dir.path());
    c.arg("-sf")
        .arg(scenario(scenario_file))
        .arg(format!("127.0.0.1:{sip_port}"))
        .args(["-s", "4008001234", "-i", "127.0.0.1"])
        .args([
            "-p",
            &free_udp_port().to_string(),
            "-mp",
            &media.to_string(),
        ])
        .args([
            "-mi",
            "127.0.0.1",
            "-m",
            "1",
            "-timeout",
            "100s",
            "-timeout_error",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c.spawn().expect("starting sipp")
}

#[test]
fn session_timers_are_refreshed_by_the_box_or_end_a_call_the_carrier_lets_lapse() {
    require_peers();
    let sip_port = free_udp_port();
    // Three channels from the carrier; calls that last (long messages, no
    // RTP timeout: sipp sends no audio here).
    let site = voicemail_site(sip_port, free_udp_port(), 3, "");
    let cfg = std::fs::read_to_string(site.config()).unwrap();
    let cfg = cfg
        .replace("max_length = \"30s\"", "max_length = \"120s\"")
        .replace("rtp_ports =", "rtp_timeout = \"180s\"\nrtp_ports =");
    std::fs::write(site.config(), cfg).unwrap();
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);

    // Too short an interval: 422 with the box's Min-SE.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap();
    let short = request(
        "INVITE",
        sip_port,
        me,
        "short",
        "Supported: timer\r\nSession-Expires: 30\r\n",
        "",
    );
    sock.send_to(short.as_bytes(), ("127.0.0.1", sip_port))
        .unwrap();
    let got = responses(&sock, Duration::from_secs(1));
    assert!(got.contains(&422), "{got:?}");

    let refreshes = carrier_call(sip_port, &site, "carrier-call-timer-box-refreshes.xml");
    let lapses = carrier_call(sip_port, &site, "carrier-call-timer-lapses.xml");
    // A carrier that allows UPDATE gets the box's refresh as an UPDATE.
    let updates = carrier_call(sip_port, &site, "carrier-call-timer-box-updates.xml");
    let st_refresh = wait_child(refreshes, Duration::from_secs(110));
    let st_lapse = wait_child(lapses, Duration::from_secs(110));
    let st_update = wait_child(updates, Duration::from_secs(110));
    // sipp's own verdicts first: a scenario that failed leaves its call
    // up on the box.
    assert!(
        st_refresh.success() && st_lapse.success() && st_update.success(),
        "sipp: refreshing {st_refresh}, lapsing {st_lapse}, updating {st_update}\n{}",
        daemon.log()
    );
    let recs = ended(&site, &daemon, 3, Duration::from_secs(10));
    let log = daemon.stop();
    assert!(
        st_refresh.success(),
        "box refreshing, with glare: {st_refresh}\n{log}"
    );
    assert!(
        st_lapse.success(),
        "carrier letting it lapse: {st_lapse}\n{log}"
    );
    assert!(log.contains("stopped refreshing the session"), "{log}");
    assert_eq!(recs.len(), 3, "{recs:?}");
}

#[test]
fn a_call_gets_rtcp_sender_reports_on_the_port_above_the_far_ends_rtp() {
    require_peers();
    let sip_port = free_udp_port();
    let carrier = free_udp_port();
    let site = voicemail_site(sip_port, carrier, 1, "");
    // sipp's media on an even port; the test listens on the one above,
    // where RTCP for sipp's stream goes.
    let (media, rtcp) = loop {
        let (lo, _) = free_rtp_range(2);
        if let Ok(s) = std::net::UdpSocket::bind(("127.0.0.1", lo + 1)) {
            break (lo, s);
        }
    };
    rtcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);
    let mut c = sipp_carrier(site.dir.path(), "carrier-call-talk.xml", sip_port, carrier);
    c.args(["-mi", "127.0.0.1", "-mp", &media.to_string(), "-m", "1"])
        .args(["-timeout", "60s", "-timeout_error"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let call = c.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(12);
    let mut buf = [0u8; 1500];
    let mut report = None;
    while report.is_none() && std::time::Instant::now() < deadline {
        if let Ok((n, _)) = rtcp.recv_from(&mut buf) {
            report = Some(buf[..n].to_vec());
        }
    }
    wait_child(call, Duration::from_secs(30));
    ended(&site, &daemon, 1, Duration::from_secs(10));
    let log = daemon.stop();
    let r = report.unwrap_or_else(|| panic!("no RTCP from the box\n{log}"));
    // A sender report with one report block (on sipp's stream), then an
    // SDES with the box's CNAME.
    assert_eq!(r[0] >> 6, 2, "RTP version: {r:?}");
    assert_eq!((r[0] & 0x1f, r[1]), (1, 200), "SR with one block: {r:?}");
    let sr_len = (usize::from(u16::from_be_bytes([r[2], r[3]])) + 1) * 4;
    assert_eq!(sr_len, 52);
    // Cumulative loss in the block: sipp's pcap loses nothing on loopback.
    let lost = i32::from_be_bytes([r[8 + 20 + 5], r[8 + 20 + 6], r[8 + 20 + 7], 0]) >> 8;
    assert!(lost.abs() <= 5, "lost {lost}");
    assert_eq!(r[sr_len + 1], 202, "SDES after the SR");
    assert!(
        String::from_utf8_lossy(&r[sr_len..]).contains("callbox@127.0.0.1"),
        "{r:?}"
    );
    assert!(log.contains("RTCP 1 sent"), "{log}");
}

/// A SIP request from the test's own socket at `from`.
fn request(
    method: &str,
    to: u16,
    from: std::net::SocketAddr,
    call_id: &str,
    extra: &str,
    body: &str,
) -> String {
    format!(
        "{method} sip:4008001234@127.0.0.1:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{call_id}\r\nFrom: <sip:13900000000@{from}>;tag=t{call_id}\r\nTo: <sip:4008001234@127.0.0.1:{to}>\r\nCall-ID: {call_id}@test\r\nCSeq: 1 {method}\r\nContact: <sip:13900000000@{from}>\r\nMax-Forwards: 70\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The status codes of the responses that arrive within `wait`.
fn responses(sock: &std::net::UdpSocket, wait: Duration) -> Vec<u16> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = std::time::Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while std::time::Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            if let Some(code) = text.strip_prefix("SIP/2.0 ").and_then(|r| r.get(..3)) {
                out.push(code.parse().unwrap_or(0));
            }
        }
    }
    out
}

#[test]
fn bad_sip_input_gets_the_right_answer_or_is_dropped_and_the_call_in_progress_goes_on() {
    require_peers();
    let sip_port = free_udp_port();
    let carrier = free_udp_port();
    let site = voicemail_site(
        sip_port,
        carrier,
        1,
        "[[line]]\nid = \"desk-1\"\nkind = \"station\"\nsip = { username = \"agent1\", password = \"desk-pass-1\" }\n\n",
    );
    let (lo, hi) = site_rtp_ports(&site);
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);

    // A real call in progress all along.
    let mut c = sipp_one_call(site.dir.path(), "carrier-call-talk.xml", sip_port, carrier);
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let call = c.spawn().unwrap();
    daemon.wait_log("recording starts", Duration::from_secs(10));

    // RTP from a stranger and with a payload type never agreed, to every
    // port the box may use: dropped.
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for port in (lo..=hi).step_by(2) {
        let mut pkt = vec![0x80, 96, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
        pkt.extend_from_slice(&[0x55; 160]);
        let _ = stranger.send_to(&pkt, ("127.0.0.1", port));
    }

    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap();
    let to = ("127.0.0.1", sip_port);
    // Garbage, a truncated message, an oversized one: dropped.
    sock.send_to(&[0xff, 0x00, 0x13, 0x37], to).unwrap();
    let invite = request("INVITE", sip_port, me, "trunc", "", "");
    sock.send_to(&invite.as_bytes()[..60], to).unwrap();
    let huge = request(
        "OPTIONS",
        sip_port,
        me,
        "huge",
        &format!("X-Pad: {}\r\n", "a".repeat(60_000)),
        "",
    );
    let _ = sock.send_to(huge.as_bytes(), to);
    // RFC 4475-style torture: a request line with an absurd version and
    // one with a header folded over lines and odd spacing.
    sock.send_to(
        b"INVITE sip:x@127.0.0.1 SIP/7.0\r\nVia: SIP/7.0/UDP 127.0.0.1\r\n\r\n",
        to,
    )
    .unwrap();
    let folded = request(
        "OPTIONS",
        sip_port,
        me,
        "fold",
        "Subject:\r\n  folded\r\n   over lines\r\n",
        "",
    );
    sock.send_to(folded.as_bytes(), to).unwrap();
    let got = responses(&sock, Duration::from_secs(1));
    assert!(got.iter().all(|&c| c == 200 || c == 400), "{got:?}");

    // An unknown method: 501.
    sock.send_to(
        request("FROBNICATE", sip_port, me, "unknown", "", "").as_bytes(),
        to,
    )
    .unwrap();
    assert!(responses(&sock, Duration::from_secs(1)).contains(&501));
    // A BYE for no call: 481.
    sock.send_to(
        request("BYE", sip_port, me, "nocall", "", "").as_bytes(),
        to,
    )
    .unwrap();
    assert!(responses(&sock, Duration::from_secs(1)).contains(&481));
    // Bad SDP, and an offer without a codec the box speaks: 488.
    let sdp = "Content-Type: application/sdp\r\n";
    sock.send_to(
        request(
            "INVITE",
            sip_port,
            me,
            "badsdp",
            sdp,
            "v=0\r\nthis is not sdp\r\n",
        )
        .as_bytes(),
        to,
    )
    .unwrap();
    let g729 = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    sock.send_to(
        request("INVITE", sip_port, me, "g729", sdp, g729).as_bytes(),
        to,
    )
    .unwrap();
    let got = responses(&sock, Duration::from_secs(2));
    assert_eq!(got.iter().filter(|&&c| c == 488).count(), 2, "{got:?}");

    // An INVITE flood on the busy trunk: each refused, none taken.
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 8\r\n";
    for i in 0..200 {
        let _ = sock.send_to(
            request("INVITE", sip_port, me, &format!("flood{i}"), sdp, offer).as_bytes(),
            to,
        );
    }
    let got = responses(&sock, Duration::from_secs(3));
    assert!(got.iter().filter(|&&c| c == 486).count() >= 150, "{got:?}");

    // A phone guessing passwords: refused, then locked out, alarm raised.
    let mut auth_refusals = 0;
    for i in 0..7 {
        let reg = |id: &str, extra: &str| {
            format!(
                "REGISTER sip:127.0.0.1:{sip_port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{id}\r\nFrom: <sip:agent1@127.0.0.1>;tag={id}\r\nTo: <sip:agent1@127.0.0.1>\r\nCall-ID: {id}@test\r\nCSeq: 1 REGISTER\r\nContact: <sip:agent1@{me}>\r\n{extra}Content-Length: 0\r\n\r\n"
            )
        };
        let auth = format!(
            "Authorization: Digest username=\"agent1\", realm=\"callbox\", nonce=\"0.0\", uri=\"sip:127.0.0.1:{sip_port}\", response=\"00000000000000000000000000000000\"\r\n"
        );
        sock.send_to(reg(&format!("guess{i}"), &auth).as_bytes(), to)
            .unwrap();
        auth_refusals += responses(&sock, Duration::from_millis(500))
            .iter()
            .filter(|&&c| c == 403)
            .count();
    }
    assert_eq!(auth_refusals, 7);

    // The call in progress ended normally, and the box still answers.
    let out = call.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sipp: {}\n{}",
        text(&out),
        daemon.log()
    );
    sock.send_to(
        request("OPTIONS", sip_port, me, "alive", "", "").as_bytes(),
        to,
    )
    .unwrap();
    assert!(responses(&sock, Duration::from_secs(1)).contains(&200));
    let recs = ended(&site, &daemon, 1, Duration::from_secs(10));
    let log = daemon.stop();
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["hangup_side"], "caller", "{}", recs[0]);
    assert_eq!(recs[0]["outcome"], "voicemail:sales", "{}", recs[0]);
    assert!(
        log.contains("RTP from an unexpected source dropped"),
        "{log}"
    );
    assert!(log.contains("wrong SIP password for agent1"), "{log}");
    let alarms = site.table("alarms");
    assert!(
        alarms
            .iter()
            .any(|a| a["code"] == "line_auth_failures:desk-1"),
        "{alarms:#?}"
    );
}

#[test]
fn a_carrier_that_stops_answering_options_raises_the_alarm_and_clears_it_when_back() {
    let sip_port = free_udp_port();
    let carrier = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = carrier.local_addr().unwrap().port();
    let site = Site::new(0, 0, 300, "");
    let (lo, hi) = free_rtp_range(10);
    let cfg = std::fs::read_to_string(site.config()).unwrap().replace(
        "[inbound]\n",
        &format!(
            "[hal]\nbackend = \"sip\"\n\n[sip]\nlisten = \"127.0.0.1:{sip_port}\"\nrtp_ports = \"{lo}-{hi}\"\n\n\
             [[line]]\nid = \"carrier\"\nkind = \"trunk\"\nsip = {{ peer = \"127.0.0.1:{peer}\", keepalive = \"5s\" }}\n\n[inbound]\n"
        ),
    );
    std::fs::write(site.config(), cfg).unwrap();
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);
    // Silent: the box's OPTIONS go unanswered.
    let alarm = |cleared: bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let alarms = if site.data().join("callbox.db").exists() {
                site.table("alarms")
            } else {
                Vec::new()
            };
            let hit = alarms.iter().any(|a| {
                a["code"] == "line_unreachable:carrier" && a["cleared_ms"].is_null() != cleared
            });
            if hit {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{alarms:#?}\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    alarm(false);
    // Back: every OPTIONS answered 200.
    let answering = callbox_tests::sip::Answering::start(carrier);
    alarm(true);
    drop(answering);
    daemon.stop();
}
