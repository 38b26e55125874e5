//! The box on SIP, end to end: the real daemon on loopback, sipp as the
//! carrier, baresip as agents' phones.

use std::time::Duration;

use callbox_tests::sip::{
    Daemon, free_rtp_range, free_udp_port, require_peers, run_sipp, scenario, sipp,
};
use callbox_tests::{Site, text, tone_level};

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

#[test]
fn a_carrier_call_walks_the_ivr_with_rfc4733_keys_and_its_audio_is_recorded() {
    require_peers();
    let sip_port = free_udp_port();
    let carrier = free_udp_port();
    let site = carrier_site(sip_port, carrier);
    let daemon = Daemon::start(&site.config(), &site.data(), sip_port);

    let mut c = sipp(site.dir.path());
    c.arg("-sf")
        .arg(scenario("carrier-call-keys.xml"))
        .arg(format!("127.0.0.1:{sip_port}"))
        .args([
            "-s",
            "4008001234",
            "-i",
            "127.0.0.1",
            "-p",
            &carrier.to_string(),
        ])
        .args([
            "-mi",
            "127.0.0.1",
            "-m",
            "1",
            "-timeout",
            "60s",
            "-timeout_error",
        ])
        .args([
            "-key",
            "key1_pcap",
            "/usr/share/sip-tester/dtmf_2833_1.pcap",
        ])
        .args([
            "-key",
            "key2_pcap",
            "/usr/share/sip-tester/dtmf_2833_3.pcap",
        ]);
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
    let _ = tone_level;
}
