//! The fleet link over TLS with client certificates, as in the field: a
//! mosquitto that requires a certificate from the fleet CA
//! (`require_certificate true`, the certificate's CN as the user name).
//! A box with its fleet certificate gets in and delivers; a box whose
//! certificate comes from another CA never does, and says why.

use std::time::{Duration, Instant};

use callbox_tests::mqtt::{
    Broker, Collector, Daemon, ROOT, Sniffer, add_uplink, outbox_len, record_data, table,
    wait_until,
};
use callbox_tests::{Site, text, write_tone_hz};

const SITE: &str = "branch-tls";
const BOX: &str = "box-7";

/// A site with 2 trunks and 2 desks (agents a1, a2 on queue `sales`), all
/// calls recorded in A-law, and the given `[uplink]` section.
fn site(uplink: &str) -> Site {
    let site = Site::new(1, 0, 0, "");
    write_tone_hz(&site.dir.path().join("caller.wav"), 600.0, 10_000);
    let mut cfg = format!("[site]\nid = \"{SITE}\"\n\n[log]\nlevel = \"info\"\n\n");
    for i in 1..=2 {
        cfg += &format!("[[line]]\nid = \"trunk-{i}\"\nkind = \"trunk\"\n\n");
        cfg += &format!("[[line]]\nid = \"desk-{i}\"\nkind = \"station\"\n\n");
    }
    cfg += "[inbound]\n\n[ivr]\nstart = \"sales\"\n\n[ivr.node.sales]\ntype = \"queue\"\nannounce = []\non_overflow = \"bye\"\n\n[ivr.node.bye]\ntype = \"hangup\"\n\n[acd.queue.sales]\nmembers = { a1 = 0, a2 = 0 }\n\n";
    for i in 1..=2 {
        cfg += &format!("[acd.agent.a{i}]\nstation = \"desk-{i}\"\nlogged_in = true\n\n");
    }
    cfg += "[recording]\nmode = \"always\"\nformat = \"alaw\"\n";
    site.write("site.toml", &cfg);
    add_uplink(&site, uplink);
    site
}

/// Four calls of 8 s in virtual time, to leave records in the outbox.
fn play_calls(site: &Site) {
    let mut sc = String::from(
        "[[call]]\nat = \"1s\"\nfrom = \"2000{n:4}\"\nrepeat = 4\nevery = \"12s\"\nhangup_after = \"8s\"\nscript = [ { play = \"caller.wav\" } ]\n\n",
    );
    for i in 1..=2 {
        sc +=
            &format!("[[agent]]\nname = \"a{i}\"\nline = \"desk-{i}\"\nanswer_after = \"1s\"\n\n");
    }
    let path = site.write("calls.toml", &sc);
    let out = site.run_fast(&path);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(site.records().len(), 4);
}

#[test]
fn harness_tls_broker_takes_fleet_certificates_only() {
    let broker = Broker::start_tls();
    let pki = broker.pki();
    let pub_with = |id: Option<&callbox_tests::mqtt::Identity>| {
        std::process::Command::new("mosquitto_pub")
            .args(broker.client_args(id))
            .args(["-q", "1", "-t", "harness/tls", "-m", "hello"])
            .output()
            .expect("mosquitto_pub (mosquitto-clients) is installed")
    };
    // rumqttc with a fleet certificate sees what mosquitto_pub with
    // another fleet certificate sends.
    let sniff = Sniffer::start(&broker, "harness/#");
    let fleet = pki.client("some-box");
    let out = pub_with(Some(&fleet));
    assert!(out.status.success(), "{}", text(&out));
    sniff.wait_for(Duration::from_secs(10), "harness/tls", |m| {
        m.topic == "harness/tls" && m.payload == b"hello"
    });
    // The key files are private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&fleet.key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The CN became the user name.
    broker.wait_log(Duration::from_secs(10), "u'some-box'", |l| {
        l.contains("u'some-box'")
    });
    // No certificate, or one from another CA: refused.
    assert!(!pub_with(None).status.success());
    let (foreign, _) = pki.foreign_client("intruder");
    assert!(!pub_with(Some(&foreign)).status.success());
    assert_eq!(sniff.on("harness/tls").len(), 1);
}

#[test]
fn a_box_with_its_fleet_certificate_gets_in_and_its_records_arrive() {
    let broker = Broker::start_tls();
    let col = Collector::start(&broker);
    let site = site(&broker.uplink(BOX, ""));
    play_calls(&site);
    let mut d = Daemon::start(&site, &[]);
    let end = Instant::now() + Duration::from_secs(300);
    let delivered = |site: &Site| {
        site.recordings().iter().all(|r| {
            col.recording_file(r["id"].as_str().unwrap())
                .is_some_and(|f| {
                    callbox_tests::mqtt::sha256_file(&f) == r["sha256"].as_str().unwrap_or_default()
                })
        })
    };
    while !(outbox_len(&site.data()) == 0 && delivered(&site)) {
        assert!(
            Instant::now() < end && d.running(),
            "not delivered over TLS ({} records left):\n{}\n{}\n--- broker\n{}",
            outbox_len(&site.data()),
            d.log(),
            col.output(),
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(d.stop().success(), "{}", d.log());
    // The broker knew the box by its certificate.
    assert!(
        broker.log().contains(&format!("u'{BOX}'")),
        "{}",
        broker.log()
    );
    let mut ours: Vec<String> = site
        .records()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let mut theirs: Vec<String> = col
        .export("cdr")
        .iter()
        .map(|r| record_data(r)["id"].as_str().unwrap().to_string())
        .collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
}

#[test]
fn a_box_with_a_certificate_from_another_ca_never_gets_in() {
    let broker = Broker::start_tls();
    let pki = broker.pki();
    let (foreign, _) = pki.foreign_client(BOX);
    // The fleet CA to check the broker, but the box's own certificate is
    // signed by a CA the broker does not trust.
    let uplink = format!(
        "\n[uplink]\nbroker = \"{}\"\nbox = \"{BOX}\"\nbackoff_min = \"200ms\"\nbackoff_max = \"1s\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        broker.url(),
        pki.ca.display(),
        foreign.cert.display(),
        foreign.key.display()
    );
    let site = site(&uplink);
    play_calls(&site);
    let backlog = table(&site.data(), "outbox");
    assert!(backlog.len() >= 4, "{backlog:#?}");
    let sniff = Sniffer::start(&broker, &format!("{ROOT}/#"));

    let mut d = Daemon::start(&site, &[]);
    // Several refused handshakes, each logged by the daemon.
    d.wait_log(Duration::from_secs(60), "a TLS error", |l| {
        let l = l.to_ascii_lowercase();
        l.contains("tls") || l.contains("certificate") || l.contains("handshake")
    });
    wait_until(
        Duration::from_secs(60),
        "three refused handshakes at the broker",
        || {
            broker
                .log()
                .lines()
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    l.contains("openssl error")
                        || l.contains("protocol error")
                        || l.contains("certificate")
                })
                .count()
                >= 3
        },
    );
    assert!(d.running(), "{}", d.log());
    assert!(
        sniff.messages().is_empty(),
        "the box got in: {:?}",
        sniff.messages()
    );
    assert!(
        !broker.log().contains(&format!("u'{BOX}'")),
        "{}",
        broker.log()
    );
    assert!(d.stop().success(), "{}", d.log());
    // Everything that waited still waits (the stop may add its own).
    let after = table(&site.data(), "outbox");
    for row in &backlog {
        assert!(after.contains(row), "{row} left the outbox: {after:#?}");
    }
}
