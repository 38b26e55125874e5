//! Every line's real state in the box's telemetry, end to end with the
//! real `callboxd`, a real mosquitto and `callbox-hq fleet`: simulated
//! lines are up; a SIP trunk whose carrier does not answer is down with
//! the reason, raises `line_down` after its `down_alarm` and clears it
//! when the carrier answers again; a SIP phone line is down until a real
//! phone (baresip) registers.

use std::time::{Duration, Instant};

use callbox_tests::Site;
use callbox_tests::mqtt::{Broker, Daemon, add_uplink, hq_net, json_lines};
use callbox_tests::sip::{Answering, Phone, carrier_line, free_udp_port, require_peers, sip_site};
use serde_json::Value;

const BOX: &str = "box-lines";

/// The box's entry in `callbox-hq fleet --json` once `f` holds for it.
fn fleet_until(broker: &Broker, d: &Daemon, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + Duration::from_secs(40);
    loop {
        let out = hq_net(broker, &["fleet", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let entry = json_lines(&out.stdout)
            .into_iter()
            .find(|b| b["box"] == BOX);
        if let Some(e) = &entry
            && f(e)
        {
            return e.clone();
        }
        assert!(Instant::now() < end, "{what}: {entry:?}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_simulated_box_reports_every_line_up() {
    let broker = Broker::start();
    let site = Site::new(2, 2, 300, "");
    add_uplink(&site, &broker.uplink(BOX, ""));
    let mut d = Daemon::start(&site, &[]);
    let e = fleet_until(&broker, &d, "every line up", |e| {
        e["lines_total"] == 4 && e["lines_up"] == 4
    });
    assert_eq!(e["lines_down"], serde_json::json!([]), "{e}");
    assert!(d.stop().success(), "{}", d.log());
}

#[test]
fn a_silent_carrier_is_down_with_its_reason_and_alarmed_and_a_phone_line_up_once_registered() {
    require_peers();
    let broker = Broker::start();
    let sip_port = free_udp_port();
    let carrier = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = carrier.local_addr().unwrap().port();
    let lines = carrier_line(peer, ", keepalive = \"5s\"").replace(
        "kind = \"trunk\"\n",
        "kind = \"trunk\"\ndown_alarm = \"5s\"\n",
    ) + "[[line]]\nid = \"desk-1\"\nkind = \"station\"\nsip = { username = \"agent1\", password = \"desk-one-pass\" }\n\n";
    let site = sip_site("sip", sip_port, 10, &lines, "");
    add_uplink(&site, &broker.uplink(BOX, ""));
    let mut d = Daemon::start(&site, &[]);

    // Nobody answers the OPTIONS; no phone has registered.
    let e = fleet_until(&broker, &d, "both lines down", |e| {
        e["lines_total"] == 2 && e["lines_down"].as_array().is_some_and(|a| a.len() == 2)
    });
    let why = |e: &Value, id: &str| {
        e["lines_down"]
            .as_array()
            .and_then(|a| a.iter().find(|l| l["id"] == id))
            .map(|l| l["reason"].as_str().unwrap_or_default().to_string())
    };
    assert!(
        why(&e, "carrier").is_some_and(|r| r.contains("does not answer OPTIONS")),
        "{e}"
    );
    assert_eq!(
        why(&e, "desk-1").as_deref(),
        Some("no phone registered"),
        "{e}"
    );
    let out = hq_net(&broker, &["fleet"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("0/2 (carrier,desk-1 down)"), "{table}");
    // Down for its `down_alarm`: the alarm, with the reason.
    let alarm = |cleared: bool| {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let alarms = site.table("alarms");
            if let Some(a) = alarms
                .iter()
                .find(|a| a["code"] == "line_down:carrier" && a["cleared_ms"].is_null() != cleared)
            {
                return a.clone();
            }
            assert!(Instant::now() < end, "{alarms:#?}\n{}", d.log());
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let raised = alarm(false);
    assert!(
        raised["message"]
            .as_str()
            .is_some_and(|m| m.contains("down for 5 s") && m.contains("does not answer OPTIONS")),
        "{raised}"
    );

    // The carrier answers, a phone registers: both up, the alarm cleared.
    let answering = Answering::start(carrier);
    let source = site.dir.path().join("silence.wav");
    callbox_tests::write_tone_hz(&source, 1000.0, 1000);
    let mut phone = Phone::start(
        &site.dir.path().join("phone"),
        "agent1",
        "desk-one-pass",
        sip_port,
        &source,
    );
    let e = fleet_until(&broker, &d, "both lines up", |e| e["lines_up"] == 2);
    assert_eq!(e["lines_down"], serde_json::json!([]), "{e}");
    alarm(true);
    phone.stop();
    drop(answering);
    assert!(d.stop().success(), "{}", d.log());
}
